#!/usr/bin/env bash
# scripts/gpu-sql-bench.sh — issue 6's SQL-level GPU tests and benchmark
# (annex.so's side of the CUDA plugin: ext/vtab/gpu.c), for an NVIDIA H200.
# Sibling of scripts/gpu-bench.sh, which tests and times the plugin alone.
#
# Two halves, because the device machine has neither SQLite's headers nor
# cmocka and every second there counts:
#
#   here:   scripts/gpu-sql-bench.sh --stage BUILD
#           BUILD is an annex build configured with
#           -DCMAKE_CUDA_ARCHITECTURES=90 (nvcc 13.0 here, as there) in which
#           annex_cuda, test_gpu_sql and annex_gpu_sql_bench were built. Copies
#           them, the shared libraries the device image lacks (libsqlite3,
#           libcmocka) and the sift5k dataset into .gpucarry/ (ignored through
#           .git/info/exclude).
#   there:  run(command="scripts/gpu-sql-bench.sh", carry=[".gpucarry"])
#           1. if the carried plugin cannot find its libraries, builds ext/gpu
#              for sm_90 there (as gpu-bench.sh does) and uses that one;
#           2. test_gpu_sql with the plugin (GPU vs CPU equality, sift5k,
#              injected faults), with ANNEX_CUDA_PLUGIN=/nonexistent, and with
#              CUDA_VISIBLE_DEVICES= (device absent);
#           3. annex_gpu_sql_bench: one k-NN end to end on 1M x 128, the
#              first upload, annex_knn batches, the device=auto threshold;
#              (ANNEX_GPU_SQL_TESTS_ONLY=1 skips it);
#           4. writes $OUT/gpu-sql-results.md with the logs beside it.
# Exit status: 0 when every test passed and the benchmark ran clean.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
carry=$root/.gpucarry

if [ "${1:-}" = "--stage" ]; then
  b=${2:?usage: scripts/gpu-sql-bench.sh --stage BUILD_DIR}
  grep -qx '/.gpucarry/' .git/info/exclude 2>/dev/null ||
    echo '/.gpucarry/' >>.git/info/exclude
  rm -rf "$carry" && mkdir -p "$carry/lib" "$carry/data/sift5k"
  cp "$b/annex_cuda.so" "$b/tests/test_gpu_sql" \
    "$b/ext/gpu/annex_gpu_sql_bench" "$carry/" || exit 1
  for l in libsqlite3.so.0 libcmocka.so.0; do
    cp -L "$(ldd "$b/tests/test_gpu_sql" | awk -v l=$l '$1 == l {print $3}')" \
      "$carry/lib/" || exit 1
  done
  cp ../shared/data/sift5k/{base,query}.fvecs \
    ../shared/data/sift5k/groundtruth.ivecs "$carry/data/sift5k/" || exit 1
  du -sh "$carry"
  exit 0
fi

out=${OUT:-$root/build-gpu/sql-out}
mkdir -p "$out"
log=$out/gpu-sql-log.txt
: >"$log"
say() { echo "== $*" | tee -a "$log"; }
step() { # step NAME TIMEOUT CMD...: run, log to NAME.txt, keep the status
  local name=$1 t=$2
  shift 2
  say "$name: $*"
  timeout "$t" "$@" 2>&1 | tee -a "$log" "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  say "$name: exit $rc"
  return "$rc"
}

export PATH=/usr/local/cuda/bin:$PATH
wheel=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)/nvidia
export LD_LIBRARY_PATH=$carry/lib:/usr/local/cuda/lib64:$wheel/cublas/lib:${LD_LIBRARY_PATH:-}
date -u +"%Y-%m-%d %H:%M UTC" | tee "$out/date.txt"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem \
    --format=csv 2>&1; nproc; } | tee -a "$log" >"$out/machine.txt"

plugin=$carry/annex_cuda.so
if ldd "$plugin" | grep -q "not found"; then
  say "carried plugin misses libraries; building ext/gpu for sm_90 here"
  ldd "$plugin" | grep "not found" | tee -a "$log"
  cmake -S ext/gpu -B build-gpu -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" \
    -DANNEX_CUBLAS_ROOT="$wheel" >>"$log" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target annex_cuda >>"$log" 2>&1 ||
    { say "plugin build failed"; exit 1; }
  plugin=$root/build-gpu/annex_cuda.so
fi
export ANNEX_DATA_DIR=$carry/data

step test 300 env ANNEX_CUDA_PLUGIN="$plugin" "$carry/test_gpu_sql"
rc_test=$?
step test-noplugin 120 env ANNEX_CUDA_PLUGIN=/nonexistent "$carry/test_gpu_sql"
rc_noplugin=$?
step test-nodevice 120 env CUDA_VISIBLE_DEVICES= ANNEX_CUDA_PLUGIN="$plugin" \
  "$carry/test_gpu_sql"
rc_nodev=$?
rc_bench=0
if [ "${ANNEX_GPU_SQL_TESTS_ONLY:-0}" != 1 ]; then
  step bench 420 env ANNEX_CUDA_PLUGIN="$plugin" "$carry/annex_gpu_sql_bench" \
    --out "$out/sql-bench.md" ${ANNEX_GPU_SQL_BENCH_ARGS:-}
  rc_bench=$?
fi

{
  echo "# annex through SQL on the H200: tests and benchmark"
  echo
  echo "Run $(cat "$out/date.txt") by \`scripts/gpu-sql-bench.sh\` (commit"
  echo "${ANNEX_GIT_REV:-?} plus the working tree)."
  echo
  echo '```'
  cat "$out/machine.txt"
  echo '```'
  echo
  echo "- \`test_gpu_sql\` with the plugin: exit $rc_test; $(grep -E 'PASSED|FAILED|SKIPPED' "$out/test.txt" | tr '\n' ' ')"
  echo "- \`test_gpu_sql\` with ANNEX_CUDA_PLUGIN=/nonexistent: exit $rc_noplugin"
  echo "- \`test_gpu_sql\` with CUDA_VISIBLE_DEVICES= : exit $rc_nodev"
  echo
  cat "$out/sql-bench.md" 2>/dev/null || echo "(benchmark failed: exit $rc_bench)"
} >"$out/gpu-sql-results.md"
rm -f "$out/date.txt" "$out/machine.txt"
say "report: $out/gpu-sql-results.md"
[ $rc_test -eq 0 ] && [ $rc_noplugin -eq 0 ] && [ $rc_nodev -eq 0 ] &&
  [ $rc_bench -eq 0 ]
