# JSON parser and stream event (runtime/json.c, runtime/event.c).
target_sources(murmur_core PRIVATE runtime/json.c runtime/event.c)
mm_add_check(check_json tests/check_json.c)
mm_add_check(check_event tests/check_event.c)
