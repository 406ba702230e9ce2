#!/usr/bin/env bash
# test-arm64.sh — cross-compile annex for ARM64 (AArch64, NEON kernels) and
# run the whole test suite under qemu-aarch64. Exits non-zero when the build
# or any test fails, or when the NEON kernel set is not the one in force.
#
#   scripts/test-arm64.sh
#
# Run from anywhere; builds into build-arm64/ with the toolchain file
# cmake/aarch64-linux-gnu.cmake, whose CMAKE_CROSSCOMPILING_EMULATOR makes
# ctest run every test through qemu-aarch64.
#
# As root it installs what is missing (idempotent): the arm64 architecture
# for dpkg, gcc-aarch64-linux-gnu, qemu-user, and libsqlite3-dev:arm64
# libcmocka-dev:arm64 (required), libopenblas-dev:arm64 (optional: without
# it annex builds without BLAS, and says so). Otherwise it prints the
# commands to run as root and exits 1.
#
# Environment:
#   ANNEX_DATA_DIR            the shared datasets (default ../shared/data
#                             from the repository root)
#   ANNEX_ARM64_BUILD         build folder (default build-arm64)
#   ANNEX_ARM64_TEST_TIMEOUT  per-test limit in seconds under qemu
#                             (default 1200; the slowest test, test_recall,
#                             takes 3-4 minutes on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

triple=aarch64-linux-gnu
build=${ANNEX_ARM64_BUILD:-build-arm64}
toolchain=$root/cmake/$triple.cmake
jobs=$(nproc 2>/dev/null || echo 2)
timeout=${ANNEX_ARM64_TEST_TIMEOUT:-1200}
export ANNEX_DATA_DIR=${ANNEX_DATA_DIR:-$root/../shared/data}

say() { echo "test-arm64.sh: $*"; }
die() { echo "test-arm64.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------ 1. packages

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

host_pkgs=(cmake make gcc-aarch64-linux-gnu)
arm_pkgs=(libsqlite3-dev:arm64 libcmocka-dev:arm64)
blas_pkg=libopenblas-dev:arm64

need_arch=0
dpkg --print-foreign-architectures | grep -qx arm64 || need_arch=1
missing=()
for p in "${host_pkgs[@]}" "${arm_pkgs[@]}"; do
  installed "$p" || missing+=("$p")
done
# Either qemu-user or qemu-user-static provides the emulator.
if ! command -v qemu-aarch64 >/dev/null && ! command -v qemu-aarch64-static >/dev/null; then
  missing+=(qemu-user)
fi
want_blas=0
installed "$blas_pkg" || want_blas=1

if [ "$need_arch" -eq 1 ] || [ ${#missing[@]} -gt 0 ] || [ "$want_blas" -eq 1 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    if [ "$need_arch" -eq 1 ] || [ ${#missing[@]} -gt 0 ]; then
      echo "test-arm64.sh needs, as root:" >&2
      [ "$need_arch" -eq 0 ] || echo "  dpkg --add-architecture arm64 && apt-get update" >&2
      echo "  apt-get install --no-install-recommends ${missing[*]} $blas_pkg" >&2
      echo "  ($blas_pkg is optional: without it annex builds without BLAS)" >&2
      exit 1
    fi
    say "$blas_pkg is not installed (not root): building without BLAS"
  else
    export DEBIAN_FRONTEND=noninteractive
    if [ "$need_arch" -eq 1 ]; then
      say "enabling the arm64 architecture (dpkg multiarch)"
      dpkg --add-architecture arm64
    fi
    # A third-party repository without arm64 indexes only warns; a real
    # failure shows up in apt-get install below.
    apt-get update -qq || say "apt-get update reported errors; trying to install anyway"
    if [ ${#missing[@]} -gt 0 ]; then
      say "installing: ${missing[*]}"
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if [ "$want_blas" -eq 1 ]; then
      say "installing (optional): $blas_pkg"
      if ! apt-get install -y -qq --no-install-recommends "$blas_pkg" >/dev/null; then
        say "WARNING: $blas_pkg did not install; building without BLAS"
      fi
    fi
  fi
fi

if [ ! -d "$ANNEX_DATA_DIR" ]; then
  die "the shared datasets are missing at $ANNEX_DATA_DIR (set ANNEX_DATA_DIR)"
fi

# -------------------------------------------------------- 2. configure

cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }

# A build folder configured without this toolchain (by hand, natively) would
# keep its compiler: start it afresh.
if [ -f "$build/CMakeCache.txt" ] &&
   [ "$(basename "$(cache CMAKE_TOOLCHAIN_FILE)")" != "$triple.cmake" ]; then
  say "$build/ was not configured with $triple.cmake; reconfiguring from scratch"
  rm -rf "$build"
fi

echo "== configure ($build, cross $triple)"
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
      -DCMAKE_BUILD_TYPE=Release -DANNEX_DATA_DIR="$ANNEX_DATA_DIR" >/dev/null

blas=$(cache ANNEX_OPENBLAS_LIB)
case "$blas" in
  ""|*NOTFOUND) say "OpenBLAS: not found, building without BLAS (batch k-NN uses the scan)" ;;
  *) say "OpenBLAS: $blas" ;;
esac
if grep -q '^OpenMP_C_FLAGS:STRING=-fopenmp' "$build/CMakeCache.txt"; then
  say "OpenMP: yes"
else
  say "OpenMP: no"
fi
emu=$(cache ANNEX_QEMU_AARCH64)
case "$emu" in
  ""|*NOTFOUND) die "no qemu-aarch64 or qemu-aarch64-static on PATH" ;;
esac
say "emulator: $emu ($("$emu" --version | head -n 1))"

# ------------------------------------------------------------ 3. build

echo "== build"
cmake --build "$build" -j "$jobs"

# ------------------------------------------------------------- 4. tests

# The kernel tests first, verbosely, to show which kernel set is in force:
# the NEON set must be the default, and none of its tests may be skipped.
echo "== kernel tests under qemu (test_distance)"
klog=$build/test_distance-arm64.log
set +e
(cd "$build" && ctest -R '^test_distance$' -V --timeout "$timeout") >"$klog" 2>&1
krc=$?
set -e
grep -E 'INFO|FAILED|ERROR' "$klog" | sed 's/^[0-9]*: //' || true
# Tests of set $1 that cmocka reported as $2 (OK, FAILED, SKIPPED); cmocka
# lists skipped and failed tests twice, hence sort -u.
count() { grep -o "$2 \] $1/[a-z0-9_]*" "$klog" | sort -u | wc -l; }
for set in portable avx2 avx512 neon; do
  echo "  kernel set $set: $(count "$set" OK) passed, $(count "$set" FAILED)" \
       "failed, $(count "$set" SKIPPED) skipped"
done
active=$(sed -n 's/.*default kernel set: \([a-z0-9]*\).*/\1/p' "$klog" | head -n 1)
[ "$krc" -eq 0 ] || die "test_distance failed under qemu (full output: $klog)"
[ "$active" = neon ] || die "the default kernel set is '${active:-unknown}', not neon"
if grep -q 'SKIPPED \] neon/' "$klog"; then
  die "NEON kernel tests were skipped (see $klog)"
fi
say "active kernel set: $active (every neon/* test passed against the reference)"

echo "== full suite under qemu (ctest -j $jobs, per-test limit ${timeout}s)"
# qemu runs float SIMD about 60x slower: the recall test checks 200 queries
# per dataset here (every query natively).
export ANNEX_RECALL_MAX_QUERIES=${ANNEX_RECALL_MAX_QUERIES:-200}
start=$SECONDS
# (tests labelled "slow" run natively; under qemu only with ANNEX_TEST_LONG=1;
# those labelled "reliability" test processor-neutral storage logic and run
# natively only: see tests/CMakeLists.txt)
# test_hnsw_sql too: its graphs take 300 s of the 450 under qemu, and what
# it adds to test_hnsw_core here (the SQL glue) is the same on every
# processor; the kernels its queries use are test_distance's and
# test_hnsw_core's, which run here.
slow_skip=(-LE '^(slow|reliability)$' -E '^test_hnsw_sql$')
[ "${ANNEX_TEST_LONG:-0}" = 1 ] && slow_skip=(-LE '^reliability$')
(cd "$build" && ctest --output-on-failure -j "$jobs" --timeout "$timeout" \
   "${slow_skip[@]}")
say "suite passed under qemu in $((SECONDS - start)) s (kernel set: $active)"
