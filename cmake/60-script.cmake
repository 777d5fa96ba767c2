# Lua host: state, sandbox, limits, pipeline table (runtime/script.c).
target_sources(murmur_core PRIVATE runtime/script.c)
