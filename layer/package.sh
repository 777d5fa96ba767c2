#!/usr/bin/env bash
# layer/package.sh - stages and zips the Lambda layer (run by the `layer`
# build target of cmake/90-layer.cmake; layer/build drives it).
#
#   package.sh --arch x86_64|arm64 --bootstrap FILE --cli FILE --lua DIR
#              --out ZIP [--objdump PROG] [--strip PROG] [--libdirs "D1 D2 ..."]
#
# The zip, unpacked at /opt by Lambda:
#   bootstrap            the runtime (mode 755), RPATH $ORIGIN/lib
#   bin/murmur-ddb       the local tool, RPATH $ORIGIN/../lib
#   lua/murmur.lua       the murmur module (found relative to the executables)
#   lib/*.so*            every shared library the two binaries need, directly
#                        or through another library, except glibc's own:
#                        none in the usual build (static libcurl, OpenSSL
#                        and SQLite, MM_CURL_ROOT); the rest of this comment
#                        is about a build against the system's libcurl
#
# Why everything but glibc is bundled: the provided.al2023 image is the
# AL2023 *minimal* container image, whose package set AWS does not document
# as stable; Debian's libcurl exports versioned symbols (CURL_OPENSSL_4) that
# Amazon Linux's libcurl-minimal does not define; and Lambda's
# LD_LIBRARY_PATH puts /lib64 before /opt/lib. So the binaries carry a
# DT_RPATH (searched before LD_LIBRARY_PATH, and used for the libraries'
# own dependencies too) naming the bundled lib/, and the only libraries left
# to the host are glibc's (libc, libm, libresolv, ... and the dynamic
# loader), whose versions the layer check holds to GLIBC_2.34.
#
# Reproducible: fixed file order, modes and timestamps, no extra attributes.
set -euo pipefail

arch="" bootstrap="" cli="" luadir="" out=""
objdump=objdump strip=strip libdirs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --bootstrap) bootstrap=$2; shift 2 ;;
    --cli) cli=$2; shift 2 ;;
    --lua) luadir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --objdump) objdump=$2; shift 2 ;;
    --strip) strip=$2; shift 2 ;;
    --libdirs) libdirs=$2; shift 2 ;;
    *) echo "package.sh: unexpected argument '$1'" >&2; exit 2 ;;
  esac
done
for v in arch bootstrap cli luadir out; do
  [ -n "${!v}" ] || { echo "package.sh: --$v is required" >&2; exit 2; }
done
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

case "$arch" in
  x86_64) triplet=x86_64-linux-gnu ;;
  arm64) triplet=aarch64-linux-gnu ;;
  *) echo "package.sh: unknown --arch '$arch' (x86_64 or arm64)" >&2; exit 2 ;;
esac
[ -n "$libdirs" ] || libdirs="/lib/$triplet /usr/lib/$triplet /lib /usr/lib"

# Libraries of glibc 2.34 (Amazon Linux 2023), left to the host. Anything
# else a binary needs is bundled.
declare -A glibc=()
for so in libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libresolv.so.2 \
  libutil.so.1 libanl.so.1 libBrokenLocale.so.1 libnsl.so.1 ld-linux-x86-64.so.2 \
  ld-linux-aarch64.so.1; do
  glibc[$so]=1
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/lua"

install -m 755 "$bootstrap" "$stage/bootstrap"
install -m 755 "$cli" "$stage/bin/murmur-ddb"
install -m 644 "$luadir/murmur.lua" "$stage/lua/murmur.lua"
"$strip" --strip-unneeded "$stage/bootstrap" "$stage/bin/murmur-ddb"

# needed FILE: the DT_NEEDED sonames of an ELF file.
needed() { "$objdump" -p "$1" | awk '$1 == "NEEDED" { print $2 }'; }

# find_lib SONAME: its path in the first library directory holding it.
find_lib() {
  local d
  for d in $libdirs; do
    if [ -e "$d/$1" ]; then printf '%s\n' "$d/$1"; return 0; fi
  done
  return 1
}

# Breadth-first over the dependency graph of both binaries.
queue=("$stage/bootstrap" "$stage/bin/murmur-ddb")
declare -A seen=()
while [ ${#queue[@]} -gt 0 ]; do
  f=${queue[0]}
  queue=("${queue[@]:1}")
  for so in $(needed "$f"); do
    [ -n "${glibc[$so]:-}" ] && continue
    [ -n "${seen[$so]:-}" ] && continue
    seen[$so]=1
    src=$(find_lib "$so") || { echo "package.sh: $so (needed by ${f##*/}) not found in: $libdirs" >&2; exit 1; }
    # cp -L: the file itself under its soname, never a symlink.
    cp -L "$src" "$stage/lib/$so"
    chmod 644 "$stage/lib/$so"
    queue+=("$stage/lib/$so")
  done
done

# Fixed timestamps (zip stores local time: use UTC) and order.
export TZ=UTC
find "$stage" -exec touch -h -d "2000-01-01 00:00:00" {} +
mkdir -p "$(dirname "$out")"
tmpzip="$out.tmp.$$"
rm -f "$tmpzip"
(cd "$stage" && find . -mindepth 1 -not -type d | LC_ALL=C sort | sed 's|^\./||' |
  zip -q -X -9 "$tmpzip" -@)
mv -f "$tmpzip" "$out"
echo "package.sh: $out ($(stat -c %s "$out") bytes; lib: $(printf '%s\n' "${!seen[@]}" | LC_ALL=C sort | tr '\n' ' '))"
