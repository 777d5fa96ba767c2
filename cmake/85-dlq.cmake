# Dead-letter queue (helper "dlq"): poison pills parked in SQS or a JSON
# lines file (runtime/dlq.c), `murmur-ddb replay` (runtime/replay.c), and
# their Check suite, which starts the SQS-compatible server of
# tests/servers-sqs (installed by scripts/test with npm ci).
target_sources(murmur_core PRIVATE runtime/dlq.c runtime/replay.c)
mm_add_check(check_dlq tests/check_dlq.c)
