#!/usr/bin/env bash
# test.sh — build annex and run every test: the release build, then the
# whole suite again under AddressSanitizer + UBSan. Exits non-zero when any
# test fails. Run from anywhere; builds into build/ and build-asan/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/deps.sh test

jobs=$(nproc 2>/dev/null || echo 2)
export ANNEX_DATA_DIR=${ANNEX_DATA_DIR:-$root/../shared/data}
if [ ! -d "$ANNEX_DATA_DIR" ]; then
  echo "test.sh: the shared datasets are missing at $ANNEX_DATA_DIR" >&2
  echo "         (set ANNEX_DATA_DIR to the folder holding sift5k/, mnist10k/...)" >&2
  exit 1
fi

echo "== release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DANNEX_DATA_DIR="$ANNEX_DATA_DIR" >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

echo "== ASan + UBSan build and tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DANNEX_SANITIZE=ON \
      -DANNEX_DATA_DIR="$ANNEX_DATA_DIR" >/dev/null
cmake --build build-asan -j "$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j "$jobs")
echo "all tests passed"
