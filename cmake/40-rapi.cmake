# Lambda Runtime API client (runtime/rapi.c), its Check suite against the
# Runtime API emulator (tests/emulator/runtime-api.js, run with `node`), and
# the emulator's own Node tests.
target_sources(murmur_core PRIVATE runtime/rapi.c)
mm_add_check(check_rapi tests/check_rapi.c)

if(MM_NODE)
  add_test(NAME emulator
           COMMAND ${MM_NODE} --test ${CMAKE_SOURCE_DIR}/tests/emulator/emulator.test.js)
  set_tests_properties(emulator PROPERTIES TIMEOUT 120)
endif()

# The Lambda entry point, at the build directory's root.
add_executable(bootstrap runtime/bootstrap.c)
target_link_libraries(bootstrap PRIVATE murmur_core)
mm_lto(bootstrap)
set_target_properties(bootstrap PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
if(MM_NODE)
  add_test(NAME bootstrap_e2e
           COMMAND ${MM_NODE} --test ${CMAKE_SOURCE_DIR}/tests/emulator/bootstrap.test.js)
  set_tests_properties(bootstrap_e2e PROPERTIES TIMEOUT 180
                       ENVIRONMENT "MM_BOOTSTRAP=$<TARGET_FILE:bootstrap>")
endif()
