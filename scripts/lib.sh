# scripts/lib.sh - shared by scripts/demo, scripts/test and scripts/bench.
# Sourced, not run. Installs what is missing (Debian packages with apt-get,
# test servers with `npm ci` from committed lock files) and builds.
set -euo pipefail

MM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MM_JOBS=${MM_JOBS:-$(nproc 2>/dev/null || echo 2)}

# Debian packages the build and tests need.
MM_PACKAGES=(gcc make cmake pkg-config liblua5.4-dev lua-cjson-dev
  libcurl4-openssl-dev check libsqlite3-dev zip unzip binutils valgrind python3-yaml
  libssl-dev dpkg-dev xz-utils)

mm_log() { printf '==> %s\n' "$*" >&2; }

# Installs the packages in "$@" that are not installed yet.
mm_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  mm_log "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

mm_deps() {
  mm_apt "${MM_PACKAGES[@]}"
  if ! command -v node >/dev/null 2>&1; then mm_apt nodejs npm; fi
  mm_curl
  mm_lua
}

# The minimal static libcurl (scripts/curl-min), built once into
# build-deps/ (keyed by the contents of the scripts and the toolchain file) and
# used by every mm_build through MM_CURL_ROOT. When Debian's source archive
# cannot be reached the build falls back to the system libcurl (same API,
# slower cold start, and a layer that bundles lib/); MM_CURL=system chooses
# that fallback on purpose.
MM_CURL_ROOT=""
mm_curl() { MM_CURL_ROOT=$(mm_curl_root); }

# mm_curl_root [TOOLCHAIN_FILE]: prints the minimal libcurl's install
# prefix for the host (or for the toolchain's target), building it when
# missing; prints nothing when it cannot be built or MM_CURL=system.
mm_curl_root() {
  [ "${MM_CURL:-minimal}" = system ] && return 0
  local tc=${1:-} key prefix
  key=$(cat "$MM_ROOT/scripts/curl-min" "$MM_ROOT/scripts/deb-source" ${tc:+"$tc"} | sha256sum | cut -c1-12)
  prefix="$MM_ROOT/build-deps/curl-min-${tc:+$(basename "$tc" .cmake)-}$key"
  if [ ! -f "$prefix/lib/libcurl.a" ]; then
    mm_log "minimal libcurl from Debian's curl source (scripts/curl-min${tc:+, $(basename "$tc")})"
    if ! "$MM_ROOT/scripts/curl-min" ${tc:+--toolchain "$tc"} "$prefix" >&2; then
      mm_log "WARNING: could not build the minimal libcurl; using the system libcurl"
      return 0
    fi
  fi
  printf '%s\n' "$prefix"
}

# Lua, compiled by every mm_build (CMakeLists.txt, MM_LUA_SRC) from Debian's
# lua5.4 source package with Debian's patches, fetched once into
# build-deps/ by scripts/deb-source (keyed by that script's contents).
# When Debian's source archive cannot be reached the build falls back to
# Debian's prebuilt liblua5.4.a (the same Lua, built by Debian);
# MM_LUA=system chooses that fallback on purpose.
MM_LUA_SRC=""
mm_lua() {
  if [ "${MM_LUA:-source}" = system ]; then
    mm_log "Lua: Debian's liblua5.4.a (MM_LUA=system)"
    return 0
  fi
  local dir tmp
  dir="$MM_ROOT/build-deps/lua5.4-src-$(sha256sum <"$MM_ROOT/scripts/deb-source" | cut -c1-12)"
  if [ ! -f "$dir/src/src/lua.h" ]; then
    mm_log "Lua from Debian's lua5.4 source (scripts/deb-source)"
    mkdir -p "$MM_ROOT/build-deps"
    tmp=$(mktemp -d "$dir.XXXXXX")
    if ! "$MM_ROOT/scripts/deb-source" lua5.4 "$tmp" >&2; then
      rm -rf "$tmp"
      mm_log "WARNING: could not fetch Lua's source; using Debian's liblua5.4.a"
      return 0
    fi
    chmod 755 "$tmp"
    # A concurrent build may have got there first: keep its copy.
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
  fi
  MM_LUA_SRC="$dir/src"
}

# npm ci in a directory holding a committed package-lock.json, once per lock.
mm_npm_ci() {
  local dir=$1
  [ -f "$dir/package-lock.json" ] || return 0
  if [ ! -f "$dir/node_modules/.mm-lock" ] || ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.mm-lock"; then
    mm_log "npm ci in ${dir#"$MM_ROOT"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$dir/package-lock.json" "$dir/node_modules/.mm-lock"
  fi
}

# mm_build DIR [cmake args...]: configures and builds. A native Release
# build (-DCMAKE_BUILD_TYPE=Release among the args, no toolchain file) is
# profile-guided (mm_pgo) unless MM_PGO=off.
mm_build() {
  local dir=$1 a release=0 cross=0 pgo=""
  shift
  for a in "$@"; do
    case $a in
      -DCMAKE_BUILD_TYPE=Release) release=1 ;;
      -DCMAKE_TOOLCHAIN_FILE=*) cross=1 ;;
    esac
  done
  if [ $release -eq 1 ] && [ $cross -eq 0 ] && [ "${MM_PGO:-on}" != off ]; then
    mm_pgo "$dir" "$@" && pgo=use
  fi
  mm_configure "$dir" "$@" "-DMM_PGO=$pgo"
  cmake --build "$dir" -j "$MM_JOBS" >/dev/null
}

mm_configure() {
  local dir=$1
  shift
  cmake -S "$MM_ROOT" -B "$dir" "-DMM_CURL_ROOT=$MM_CURL_ROOT" "-DMM_LUA_SRC=$MM_LUA_SRC" "$@" >/dev/null
}

# mm_pgo DIR [cmake args...]: makes DIR's profile for a profile-guided
# build (CMakeLists.txt, MM_PGO): an instrumented mm_bench runs
# scripts/pgo/train, whose .gcda files land in DIR/pgo. The profile is
# kept while nothing that goes into the build changed (a key of the
# sources, the scripts, the dependencies and the compiler); otherwise it
# is made anew, which costs one more build of mm_bench and a few seconds of
# training. Returns non-zero (after a WARNING) when the instrumented build
# or the training fails or leaves no profile: the build then goes without
# one. (Called in an `&&` list, so `set -e` does not stop it: every step
# is checked here.)
mm_pgo() {
  local dir=$1 key
  shift
  key=$( {
    cat "$MM_ROOT"/CMakeLists.txt "$MM_ROOT"/cmake/*.cmake "$MM_ROOT"/runtime/*.[ch] \
      "$MM_ROOT"/bench/*.c "$MM_ROOT"/scripts/pgo/* "$MM_ROOT"/lua/murmur.lua
    printf '%s\n' "$MM_CURL_ROOT" "$MM_LUA_SRC" "$*"
    "${CC:-cc}" --version
  } | sha256sum | cut -c1-16)
  if [ -f "$dir/pgo/KEY" ] && [ "$(cat "$dir/pgo/KEY")" = "$key" ]; then
    touch "$dir/pgo/KEY" # the same sources: newer times (a checkout) are fine
    return 0
  fi
  mm_log "profile-guided build: training run (scripts/pgo/train) in ${dir#"$MM_ROOT"/}"
  rm -rf "$dir/pgo"
  if ! mm_configure "$dir" "$@" -DMM_PGO=generate ||
    ! cmake --build "$dir" -j "$MM_JOBS" --target mm_bench >/dev/null; then
    mm_log "WARNING: the instrumented build of mm_bench failed (above); building without a profile"
    return 1
  fi
  if ! "$MM_ROOT/scripts/pgo/train" "$dir/mm_bench" "$dir/pgo-events" ||
    ! compgen -G "$dir/pgo/*.gcda" >/dev/null; then
    mm_log "WARNING: the training run failed or wrote no profile to ${dir#"$MM_ROOT"/}/pgo; building without a profile"
    rm -rf "$dir/pgo"
    return 1
  fi
  echo "$key" >"$dir/pgo/KEY"
}
