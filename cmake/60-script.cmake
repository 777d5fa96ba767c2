# Lua host: state, sandbox, limits, pipeline table (runtime/script.c).
target_sources(murmur_core PRIVATE runtime/script.c runtime/watch.c)
mm_add_check(check_script tests/check_script.c)
