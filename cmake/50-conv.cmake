# AttributeValue -> Lua conversion (runtime/conv.c), the murmur.core module
# (runtime/murmur_lua.c, behind lua/murmur.lua) and their Check suites.
target_sources(murmur_core PRIVATE runtime/conv.c runtime/murmur_lua.c)
mm_add_check(check_conv tests/check_conv.c)
mm_add_check(check_murmur tests/check_murmur.c)
