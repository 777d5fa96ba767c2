# Shared plumbing: errors and buffers.
target_sources(murmur_core PRIVATE runtime/err.c runtime/buf.c)
