# Reading aggregates back (runtime/query.c: rows, one bucket, --last
# windows) and its Check suite; the DynamoDB end-to-end tests (helper
# "ddb2"): the real bootstrap under the Runtime API emulator against
# dynalite (tests/servers, installed by scripts/test with npm ci), read back
# with a plain signed Scan and through query.h (tests/e2e/query_tool.c).
target_sources(murmur_core PRIVATE runtime/query.c)
mm_add_check(check_query tests/check_query.c)

add_executable(mm_query_tool tests/e2e/query_tool.c)
target_link_libraries(mm_query_tool PRIVATE murmur_core)

# The DynamoDB benchmark behind scripts/bench (concurrent vs sequential).
add_executable(ddb_bench bench/ddb_bench.c)
target_link_libraries(ddb_bench PRIVATE murmur_core)
mm_lto(ddb_bench)

# The real bootstrap (cmake/40-rapi.cmake) against dynalite. Sanitizer
# builds run fewer records and batches (MM_E2E_QUICK).
if(MM_NODE)
  set(quick 0)
  if(MM_SANITIZE)
    set(quick 1)
  endif()
  foreach(t aggregates faults deadline)
    add_test(NAME ddb_e2e_${t}
             COMMAND ${MM_NODE} --test ${CMAKE_SOURCE_DIR}/tests/e2e/ddb-${t}.test.js)
    set_tests_properties(ddb_e2e_${t} PROPERTIES TIMEOUT 600
      ENVIRONMENT "MM_BOOTSTRAP=$<TARGET_FILE:bootstrap>;MM_QUERY_TOOL=$<TARGET_FILE:mm_query_tool>;MM_E2E_QUICK=${quick}")
  endforeach()
endif()
