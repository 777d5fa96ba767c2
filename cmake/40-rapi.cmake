# Lambda Runtime API client (runtime/rapi.c), its Check suite against the
# Runtime API emulator (tests/emulator/runtime-api.js, run with `node`), and
# the emulator's own Node tests.
target_sources(murmur_core PRIVATE runtime/rapi.c)
mm_add_check(check_rapi tests/check_rapi.c)

find_program(MM_NODE node)
if(MM_NODE)
  add_test(NAME emulator
           COMMAND ${MM_NODE} --test ${CMAKE_SOURCE_DIR}/tests/emulator/emulator.test.js)
  set_tests_properties(emulator PROPERTIES TIMEOUT 120)
endif()
