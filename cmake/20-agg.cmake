# Aggregates: exact decimals, sketches, merge/render rules (helper "agg").
target_sources(murmur_core PRIVATE runtime/decimal.c runtime/sketch.c runtime/agg.c)
