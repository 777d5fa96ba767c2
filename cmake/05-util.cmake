# Utilities (helper "util"): retry/clocks, config, log, metrics.
target_sources(murmur_core PRIVATE
  runtime/retry.c runtime/config.c runtime/log.c runtime/metrics.c)
mm_add_check(check_retry tests/check_retry.c)
mm_add_check(check_config tests/check_config.c)
mm_add_check(check_log tests/check_log.c tests/util_luajson.c)
mm_add_check(check_metrics tests/check_metrics.c tests/util_luajson.c)
