# JSON parser and stream event (runtime/json.c, runtime/event.c).
target_sources(murmur_core PRIVATE runtime/json.c runtime/event.c)
mm_add_check(check_json tests/check_json.c)
mm_add_check(check_event tests/check_event.c)

# The fuzz target's invariants, replayed on the seed corpus and the fixtures
# in every normal test run (same source, a plain main()).
add_executable(fuzz_json_replay tests/fuzz/fuzz_json.c)
target_compile_definitions(fuzz_json_replay PRIVATE MM_FUZZ_REPLAY)
target_link_libraries(fuzz_json_replay PRIVATE murmur_core)
add_test(NAME fuzz_json_replay
         COMMAND fuzz_json_replay ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus_json
                 ${MM_FIXTURES})

# libFuzzer target: configure a separate build dir with
#   -DCMAKE_C_COMPILER=clang -DMM_FUZZ=ON
# then: make fuzz_json && ./fuzz_json -max_total_time=180 corpus_dir seeds
# The parser sources are compiled into the target itself so they carry the
# fuzzer's coverage instrumentation.
if(MM_FUZZ)
  add_executable(fuzz_json tests/fuzz/fuzz_json.c runtime/json.c
                 runtime/event.c runtime/err.c runtime/buf.c)
  target_include_directories(fuzz_json PRIVATE ${CMAKE_SOURCE_DIR}/runtime)
  target_compile_options(fuzz_json PRIVATE -fsanitize=fuzzer,address,undefined
                         -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(fuzz_json PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_json PRIVATE m)
endif()
