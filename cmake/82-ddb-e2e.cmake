# Reading aggregates back (runtime/query.c: rows, one bucket, --last
# windows) and its Check suite (helper "ddb2").
target_sources(murmur_core PRIVATE runtime/query.c)
mm_add_check(check_query tests/check_query.c)
