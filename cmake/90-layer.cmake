# The Lambda layer (helper "layer"): the layer's own builds of bootstrap and
# murmur-ddb (same sources, linked with a DT_RPATH into the bundled lib/),
# the zip (target `layer`, built by default), and the tests: the example
# pipelines and `invoke --watch` (every build), the layer check (glibc
# symbol versions, bundled libraries, an end-to-end run of the unzipped
# layer under a Lambda-like environment; unsanitized native builds only).
find_program(MM_ZIP zip)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(MM_LAYER_ARCH arm64)
else()
  set(MM_LAYER_ARCH x86_64)
endif()
set(MM_LAYER_ZIP ${CMAKE_BINARY_DIR}/dist/murmur-ddb-layer-${MM_LAYER_ARCH}.zip)

# The example pipelines through the real murmur-ddb, and --watch (native
# builds: the test runs the binary).
if(MM_NODE AND NOT CMAKE_CROSSCOMPILING)
  add_test(NAME examples
           COMMAND ${MM_NODE} --test ${CMAKE_SOURCE_DIR}/tests/layer/examples.test.js)
  set_tests_properties(examples PROPERTIES TIMEOUT 120
                       ENVIRONMENT "MM_CLI=$<TARGET_FILE:murmur-ddb>")
  # layer/template.yaml against what the runtime issues (needs python3-yaml
  # to read the YAML; skips without it).
  add_test(NAME layer_template
           COMMAND ${MM_NODE} --test ${CMAKE_SOURCE_DIR}/tests/layer/template.test.js)
  set_tests_properties(layer_template PROPERTIES TIMEOUT 60)
endif()

# Sanitized and fuzzing builds link runtime libraries no Lambda host has:
# no layer from them.
if(MM_SANITIZE OR MM_FUZZ)
  return()
endif()
if(NOT MM_ZIP OR NOT CMAKE_OBJDUMP OR NOT CMAKE_STRIP)
  message(STATUS "layer: zip, objdump or strip not found; the layer zip is not built")
  return()
endif()

# A DT_RPATH (not RUNPATH): searched before LD_LIBRARY_PATH, whose /lib64
# comes before /opt/lib in Lambda, and inherited by the bundled libraries'
# own lookups.
add_executable(mm_layer_bootstrap runtime/bootstrap.c)
add_executable(mm_layer_cli runtime/cli.c)
foreach(t mm_layer_bootstrap mm_layer_cli)
  target_link_libraries(${t} PRIVATE murmur_core)
  target_link_options(${t} PRIVATE "LINKER:--disable-new-dtags")
endforeach()
mm_lto(mm_layer_bootstrap mm_layer_cli)
set_target_properties(mm_layer_bootstrap PROPERTIES
  OUTPUT_NAME bootstrap RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/layer
  BUILD_RPATH "\$ORIGIN/lib")
set_target_properties(mm_layer_cli PROPERTIES
  OUTPUT_NAME murmur-ddb RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/layer/bin
  BUILD_RPATH "\$ORIGIN/../lib")

add_custom_command(
  OUTPUT ${MM_LAYER_ZIP}
  COMMAND ${CMAKE_SOURCE_DIR}/layer/package.sh --arch ${MM_LAYER_ARCH}
          --bootstrap $<TARGET_FILE:mm_layer_bootstrap> --cli $<TARGET_FILE:mm_layer_cli>
          --lua ${CMAKE_SOURCE_DIR}/lua --out ${MM_LAYER_ZIP}
          --objdump ${CMAKE_OBJDUMP} --strip ${CMAKE_STRIP}
  DEPENDS mm_layer_bootstrap mm_layer_cli ${CMAKE_SOURCE_DIR}/layer/package.sh
          ${CMAKE_SOURCE_DIR}/lua/murmur.lua
  COMMENT "Packaging the Lambda layer ${MM_LAYER_ZIP}"
  VERBATIM)
add_custom_target(layer ALL DEPENDS ${MM_LAYER_ZIP})

# In a cross build the runtime half of the check needs an emulator
# (CMAKE_CROSSCOMPILING_EMULATOR, e.g. qemu-aarch64); without one only the
# static checks run. The other tests of a cross build cannot run here:
# layer/build runs this one alone (ctest -R '^layer_check$').
if(MM_NODE)
  string(REPLACE ";" " " mm_layer_exec "${CMAKE_CROSSCOMPILING_EMULATOR}")
  add_test(NAME layer_check
           COMMAND ${MM_NODE} --test ${CMAKE_SOURCE_DIR}/tests/layer/layer.test.js)
  set_tests_properties(layer_check PROPERTIES TIMEOUT 180
                       ENVIRONMENT "MM_LAYER_ZIP=${MM_LAYER_ZIP};MM_LAYER_ARCH=${MM_LAYER_ARCH};MM_OBJDUMP=${CMAKE_OBJDUMP};MM_LAYER_EXEC=${mm_layer_exec}")
endif()
