# Shared plumbing: errors, buffers and the batch arena.
target_sources(murmur_core PRIVATE runtime/err.c runtime/buf.c runtime/arena.c)
mm_add_check(check_arena tests/check_arena.c)
