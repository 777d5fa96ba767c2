#!/usr/bin/env bash
# tests/fuzz/json_diff.sh [-r REV] [-n COUNT] [-t SECONDS] [-s SEED] [PATH...] -
# builds json_diff.c (runtime/json.c against runtime/json.c as it was at
# commit REV, default ca27cf9, the parser before its fast paths were
# reworked; taken from git into the build dir as json_ref.c) with each
# build of the parser that matters and runs every one on the same seeds.
# Run it after any change to the parser that means to keep its behaviour,
# with REV the commit before the change:
#   sse2   runtime/json.c as shipped on x86-64 (SSE2 block masks)
#   swar   without SSE2 (__SSE2__ undefined): the SWAR masks arm64 uses
#   grow   a tape that starts at one node and grows (MM_JSON_TAPE_FIXED_MAX=0,
#          MM_JSON_TAPE_START(n)=1), so that pushes anywhere move it
#   asan   the sse2 build under AddressSanitizer and UBSan
#   asan-swar the swar build under both
# Without PATHs the seeds are the seed corpus, ../shared/fixtures and, when
# node is there, a few small orders events from bench/gen-orders-event.js.
# COUNT (default 1000000) and SECONDS (default 60) apply to each build;
# the asan builds run a quarter of them. Builds go to $TMPDIR/json_diff.
# Exits non-zero on the first difference (the input and what differed are
# printed) or a build failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
count=1000000 secs=60 seed=1 rev=ca27cf9
while [ $# -gt 0 ]; do
  case $1 in
    -r) rev=$2; shift 2 ;;
    -n) count=$2; shift 2 ;;
    -t) secs=$2; shift 2 ;;
    -s) seed=$2; shift 2 ;;
    *) break ;;
  esac
done
out=${TMPDIR:-/tmp}/json_diff
mkdir -p "$out"
git -C "$root" show "$rev:runtime/json.c" >"$out/json_ref.c"
seeds=("$@")
if [ ${#seeds[@]} -eq 0 ]; then
  seeds=("$here/corpus_json")
  [ -d "$root/../shared/fixtures" ] && seeds+=("$root/../shared/fixtures")
  if command -v node >/dev/null 2>&1; then
    mkdir -p "$out/orders"
    for spec in "1 3" "2 5" "4 9" "8 13"; do
      set -- $spec
      f="$out/orders/orders-$1-seed$2.json"
      [ -s "$f" ] || node "$root/bench/gen-orders-event.js" --records "$1" --seed "$2" >"$f"
    done
    seeds+=("$out/orders")
  fi
fi
cc=${CC:-cc}
common=(-std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
        -I"$root/runtime" -I"$here" -I"$out")
build() { # NAME [flags for json.c] -- [flags for everything]
  local name=$1 jflags=() flags=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do jflags+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  flags=("$@")
  "$cc" "${common[@]}" "${flags[@]}" "${jflags[@]}" -c "$root/runtime/json.c" -o "$out/json-$name.o"
  "$cc" "${common[@]}" "${flags[@]}" "$here/json_diff.c" "$out/json-$name.o" \
    "$root/runtime/err.c" "$root/runtime/buf.c" -lm -o "$out/json_diff-$name"
}
san=(-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
build sse2 -- -O2 -g
build swar -U__SSE2__ -- -O2 -g
build grow -DMM_JSON_TAPE_FIXED_MAX=0 '-DMM_JSON_TAPE_START(n)=1' -- -O2 -g
build asan -- "${san[@]}"
build asan-swar -U__SSE2__ -- "${san[@]}"
for v in sse2 swar grow; do
  echo "== $v"
  "$out/json_diff-$v" -n "$count" -t "$secs" -s "$seed" "${seeds[@]}"
done
for v in asan asan-swar; do
  echo "== $v"
  "$out/json_diff-$v" -n $(((count + 3) / 4)) -t "$(awk "BEGIN{print $secs/4}")" -s "$seed" "${seeds[@]}"
done
