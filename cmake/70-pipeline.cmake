# The invocation pipeline and the murmur-ddb command.
target_sources(murmur_core PRIVATE runtime/pipeline.c)
add_executable(murmur-ddb runtime/cli.c)
target_link_libraries(murmur-ddb PRIVATE murmur_core)
mm_lto(murmur-ddb)
mm_add_check(check_pipeline tests/check_pipeline.c)
# Measurements behind scripts/bench.
add_executable(mm_bench bench/mm_bench.c)
target_link_libraries(mm_bench PRIVATE murmur_core)
mm_lto(mm_bench)
