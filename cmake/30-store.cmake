# Stores and dedup (helper "store"): the interface, URL dispatch and the
# in-process backends (memory://, sqlite://PATH).
target_sources(murmur_core PRIVATE
  runtime/store.c runtime/store_memory.c runtime/store_sqlite.c
  runtime/dedup.c runtime/dedup_memory.c runtime/dedup_sqlite.c)
mm_add_check(check_store tests/check_store.c)
mm_add_check(check_dedup tests/check_dedup.c)
