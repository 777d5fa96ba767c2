# scripts/pgo/fresh.cmake - run by the build (CMakeLists.txt, MM_PGO=use)
# before it compiles anything: fails, saying what to do, when a source is
# newer than the profile's KEY (scripts/lib.sh writes or refreshes it
# whenever it trains or finds the profile current). gcc cannot use a
# profile of other sources: a changed function loses its counts, and its
# callers then fail with "Missing counts for called function" (a warning
# no option turns off, an error under -Werror).
# Arguments: -DKEY=<build dir>/pgo/KEY -DSOURCES=<;-list of files>
get_filename_component(dir "${KEY}" DIRECTORY)
get_filename_component(dir "${dir}" DIRECTORY)
get_filename_component(root "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
if(dir STREQUAL "${root}/build")
  set(train "scripts/demo, scripts/test or scripts/bench")
else()
  set(train "bash -c 'source ${root}/scripts/lib.sh; mm_deps; mm_build ${dir} -DCMAKE_BUILD_TYPE=Release'")
endif()
set(todo "train and build with ${train}, or configure with -DMM_PGO= to build without a profile")
if(NOT EXISTS "${KEY}")
  message(FATAL_ERROR "MM_PGO=use but ${KEY} is missing: ${todo}")
endif()
foreach(f IN LISTS SOURCES)
  if("${f}" IS_NEWER_THAN "${KEY}")
    message(FATAL_ERROR "${f} changed after the profile in ${KEY} was made: ${todo}")
  endif()
endforeach()
