# JSON parser and stream event (runtime/json.c, runtime/event.c).
target_sources(murmur_core PRIVATE runtime/json.c runtime/event.c)
