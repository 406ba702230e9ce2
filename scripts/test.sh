#!/usr/bin/env bash
# test.sh — build annex and run every test: the release build, the whole
# suite again under AddressSanitizer + UBSan, the amalgamation, the install
# rules, the Python and Node examples, three dqlite nodes (node/), and (on
# x86-64) the suite once more cross-built for ARM64 under qemu. Exits
# non-zero when any test fails. Run
# from anywhere; builds into build/, build-asan/ and build-arm64/.
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
# The whole suite. The fault loops of the "slow" tests (tests/fault.h) are
# sampled here, about 40 runs per loop instead of the release build's 400,
# every operation class still faulted under the sanitizers (about 5 minutes
# of CPU in all); ANNEX_TEST_LONG=1 runs them in full.
asan_env=(ANNEX_FAULT_RUNS=40)
[ "${ANNEX_TEST_LONG:-0}" = 1 ] && asan_env=()
(cd build-asan && env "${asan_env[@]}" ASAN_OPTIONS=detect_leaks=1 \
   UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j "$jobs")
# libFuzzer targets, 60 s each (fuzz/run.sh; needs clang, else skipped).
echo "== fuzz: each libFuzzer target for 60 s"
if command -v clang >/dev/null || command -v clang-14 >/dev/null; then
  fuzz/run.sh quick
else
  echo "== fuzz: SKIPPED, clang is not installed (apt-get install clang)"
fi
echo "== amalgamation: the single-file build, the C tests against it, dispatch"
amalgamation/test.sh
echo "== install: cmake --install, then pkg-config and find_package consumers"
examples/install-check.sh
echo "== clients: Python sqlite3 + NumPy, Node better-sqlite3"
examples/run.sh
# annex replicated on dqlite: three annex-node processes, leader failover and
# catch-up (installs libdqlite-dev; says SKIPPED when it cannot).
echo "== replicated: annex-node x3 on dqlite, failover and catch-up (node/test.sh)"
node/test.sh build

# The NEON kernels and the whole suite again, cross-built for ARM64 and run
# under qemu-aarch64 (about 5-10 minutes). ANNEX_TEST_ARM64=0 skips it; an
# ARM64 host has already run the suite natively above.
if [ "${ANNEX_TEST_ARM64:-1}" = 1 ] && [ "$(uname -m)" = x86_64 ]; then
  echo "== ARM64 (NEON) cross build, the suite under qemu-aarch64"
  scripts/test-arm64.sh
fi
echo "all tests passed"
