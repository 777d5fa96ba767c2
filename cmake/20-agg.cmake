# Aggregates: exact decimals, sketches, merge/render rules (helper "agg").
target_sources(murmur_core PRIVATE runtime/decimal.c runtime/sketch.c runtime/agg.c)
mm_add_check(check_decimal tests/check_decimal.c)
mm_add_check(check_sketch tests/check_sketch.c)
mm_add_check(check_agg tests/check_agg.c)
