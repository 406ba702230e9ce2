#!/usr/bin/env bash
# valgrind.sh — the long mode of issue 8 part 6: every ctest test run under
# valgrind memcheck (--leak-check=full, errors fail the test) on a build
# without sanitizers (ASan and valgrind do not mix). Slow: expect 20-60
# minutes on 2 cores. Builds into build-valgrind/ (or $ANNEX_VALGRIND_BUILD).
#
#   scripts/valgrind.sh                 # the whole suite
#   scripts/valgrind.sh -R test_sql     # extra arguments go to ctest
#
# test_crash and test_concurrency fork children that are killed or time
# their runs; they run under valgrind too, with their short defaults.
# OpenMP and OpenBLAS keep thread pools alive until exit: those "possibly
# lost" blocks are not counted (only definite and indirect leaks fail).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${ANNEX_VALGRIND_BUILD:-build-valgrind}
jobs=$(nproc 2>/dev/null || echo 2)
export ANNEX_DATA_DIR=${ANNEX_DATA_DIR:-$root/../shared/data}

if ! command -v valgrind >/dev/null; then
  echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2
  exit 1
fi
supp="$root/scripts/valgrind.supp"
opts="--error-exitcode=1;--leak-check=full;--errors-for-leak-kinds=definite,indirect"
opts="$opts;--show-leak-kinds=definite,indirect;--num-callers=30"
[ -f "$supp" ] && opts="$opts;--suppressions=$supp"
# CMAKE_CROSSCOMPILING_EMULATOR prefixes every test command (as the ARM64
# step does with qemu), so each test runs under valgrind and a memcheck
# error or leak fails it through --error-exitcode. RelWithDebInfo: -O2 with
# line numbers; no sanitizers. Forked children are checked too.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DANNEX_SANITIZE=OFF \
      -DANNEX_DATA_DIR="$ANNEX_DATA_DIR" \
      "-DCMAKE_CROSSCOMPILING_EMULATOR=valgrind;$opts" >/dev/null
cmake --build "$build" -j "$jobs"
cd "$build"
ctest --output-on-failure -j "$jobs" --timeout 3600 "$@"
echo "valgrind.sh: every test passed under valgrind memcheck"
