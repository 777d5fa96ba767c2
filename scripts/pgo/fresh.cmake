# scripts/pgo/fresh.cmake - run by the build (CMakeLists.txt, MM_PGO=use)
# before it compiles anything: fails, saying what to do, when a source is
# newer than the profile's KEY (scripts/lib.sh writes or refreshes it
# whenever it trains or finds the profile current). gcc cannot use a
# profile of other sources: a changed function loses its counts, and its
# callers then fail with "Missing counts for called function" (a warning
# no option turns off, an error under -Werror).
# Arguments: -DKEY=<profile dir>/KEY -DSOURCES=<;-list of files>
if(NOT EXISTS "${KEY}")
  message(FATAL_ERROR "MM_PGO=use but ${KEY} is missing: build with scripts/test, "
                      "scripts/demo or scripts/bench (they train), or configure with -DMM_PGO=")
endif()
foreach(f IN LISTS SOURCES)
  if("${f}" IS_NEWER_THAN "${KEY}")
    message(FATAL_ERROR "${f} changed after the profile in ${KEY} was made: build with "
                        "scripts/test, scripts/demo or scripts/bench (they train again), "
                        "or configure with -DMM_PGO= to build without a profile")
  endif()
endforeach()
