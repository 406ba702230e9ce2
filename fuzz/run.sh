#!/usr/bin/env bash
# run.sh — build and run annex's libFuzzer targets (issue 8 part 5).
#
#   fuzz/run.sh quick     each target for 60 s (CI; FUZZ_SECONDS overrides)
#   fuzz/run.sh long      each target for 1 hour: the long mode; run it
#                         before a release and after changing a parser, the
#                         planner or storage (FUZZ_SECONDS overrides)
#   fuzz/run.sh build     only build
#
# Targets (fuzz/fuzz_*.c): vector (JSON and BLOB parsing), options (the
# CREATE argument parser), query (constraint combinations), ops (operation
# sequences with savepoints, checked against integrity-check and a brute
# force k-NN), ann (the same on index=hnsw, index=diskann and index=ivf tables, with
# 'optimize' / 'rebuild' / 'train' and knob queries, every k-NN checked
# against distances computed in the target). Seeds are
# fuzz/corpus/<target>/; new inputs go to a scratch
# corpus under the build folder, not into the repository. A crash, leak,
# sanitizer report or timeout fails the run and leaves the input as
# crash-*/leak-*/timeout-* in the build folder's fuzz/artifacts/: add it
# to fuzz/corpus/<target>/ once fixed. Needs clang (Debian clang-14).
# Builds into build-fuzz/ (FUZZ_BUILD overrides).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-quick}
case "$mode" in
  quick) secs=${FUZZ_SECONDS:-60} ;;
  long) secs=${FUZZ_SECONDS:-3600} ;;
  build) secs=0 ;;
  *) echo "usage: fuzz/run.sh quick|long|build" >&2; exit 2 ;;
esac
cc=$(command -v clang || command -v clang-14 || true)
if [ -z "$cc" ]; then
  echo "fuzz/run.sh: clang is not installed" >&2
  exit 3
fi
build=${FUZZ_BUILD:-$root/build-fuzz}
CC=$cc cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DANNEX_FUZZ=ON >/dev/null
targets="vector options query ops ann"
for t in $targets; do
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target "fuzz_$t" \
    >/dev/null
done
[ "$secs" = 0 ] && exit 0
mkdir -p "$build/fuzz/artifacts"
status=0
for t in $targets; do
  work="$build/fuzz/corpus-$t"
  mkdir -p "$work"
  log="$build/fuzz/$t.log"
  echo "== fuzz_$t for $secs s"
  # One process; a finding stops it with a non-zero status.
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 \
      -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
      -artifact_prefix="$build/fuzz/artifacts/$t-" \
      "$work" "$root/fuzz/corpus/$t" >"$log" 2>&1; then
    echo "fuzz_$t FAILED (log: $log)"
    tail -40 "$log"
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$log" || true
done
exit $status
