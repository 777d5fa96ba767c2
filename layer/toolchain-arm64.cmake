# CMake toolchain: cross-compile for arm64 (Graviton) with Debian's cross
# toolchain and multiarch libraries (layer/build --arch arm64 installs them:
# gcc-aarch64-linux-gnu, and liblua5.4-dev, lua-cjson-dev,
# libcurl4-openssl-dev, libsqlite3-dev for the arm64 architecture).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Libraries and pkg-config files of the target architecture only; headers
# may be shared (/usr/include/lua5.4 is architecture-independent).
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# Runs arm64 executables on an x86_64 host (the layer check's end-to-end
# half) when qemu-user is installed.
find_program(MM_QEMU_AARCH64 qemu-aarch64)
if(MM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${MM_QEMU_AARCH64})
endif()
