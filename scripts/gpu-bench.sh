#!/usr/bin/env bash
# scripts/gpu-bench.sh — the GPU test suite and benchmark of issue 6, meant
# for an NVIDIA H200 (sm_90). In one go:
#   1. builds ext/gpu standalone for sm_90 with the machine's nvcc
#      (/usr/local/cuda/bin first on PATH);
#   2. runs the correctness + fallback test on the device
#      (annex_cuda_test --require-device), and the device-absent check
#      (CUDA_VISIBLE_DEVICES= annex_cuda_test --expect-nodevice);
#      on a failure, the quick test again under compute-sanitizer;
#   3. runs the benchmark (annex_cuda_bench);
#   4. runs the PyTorch anchor (../shared/peers/gpu_torch_knn.py, or its copy
#      ext/gpu/gpu_torch_knn.py) in the same session;
#   5. with ANNEX_GPU_RACECHECK=1, the quick test under compute-sanitizer
#      --tool racecheck (slow: over 150 s);
#   6. writes $OUT/gpu-results.md (the report), with the logs beside it
#      (at most 8 files: what the device tool brings back).
# From this workspace it runs on the lent machine through the device tool
# (about 150 s there; the machine has no .git, hence ANNEX_GIT_REV):
#   run(command="ANNEX_GIT_REV=<git rev-parse --short HEAD, run here> scripts/gpu-bench.sh")
# Without $OUT it writes to build-gpu/out. Exit status: 0 when the test
# passed and the benchmark ran.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$root/build-gpu/out}
build=${ANNEX_GPU_BUILD:-$root/build-gpu}
mkdir -p "$out" "$build"
export PATH=/usr/local/cuda/bin:$PATH
export PYTHONUNBUFFERED=1
log=$out/gpu-log.txt
: >"$log"
say() { echo "== $*" | tee -a "$log"; }
step() { # step NAME TIMEOUT CMD...: run, log, remember the status
  local name=$1 t=$2
  shift 2
  say "$name: $*"
  local f=$out/$name.txt
  case $name in build*) f=/dev/null ;; esac
  timeout "$t" "$@" 2>&1 | tee -a "$log" "$f"
  local rc=${PIPESTATUS[0]}
  say "$name: exit $rc"
  return "$rc"
}

date -u +"%Y-%m-%d %H:%M UTC" >"$out/date.txt"
say "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem \
    --format=csv 2>&1; nvcc --version | tail -2; cmake --version | head -1
  gcc --version | head -1; nproc; } | tee -a "$log" >"$out/machine.txt"

# cuBLAS from the toolkit, else from the nvidia-cublas wheel PyTorch uses
cublas_root=
nvcc_root=$(dirname "$(dirname "$(command -v nvcc)")")
if ! ls "$nvcc_root"/lib64/libcublas.so* "$nvcc_root"/targets/*/lib/libcublas.so* \
    >/dev/null 2>&1; then
  cublas_root=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)/nvidia
  say "no cuBLAS in $nvcc_root; using $cublas_root"
fi

rc_build=1
step build-configure 120 cmake -S ext/gpu -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" \
  ${cublas_root:+-DANNEX_CUBLAS_ROOT="$cublas_root"} &&
  step build 300 cmake --build "$build" -j "$(nproc)" && rc_build=0
if [ $rc_build -ne 0 ]; then
  say "build failed"
  exit 1
fi
if [ ! -f "$build/annex_cuda_test" ]; then
  say "the plugin was not built (see the configure output above)"
  exit 1
fi
cuobjdump --list-elf "$build/annex_cuda.so" 2>&1 | tee -a "$log"
ldd "$build/annex_cuda.so" | grep -E "cublas|cudart" | tee -a "$log"

step test 150 "$build/annex_cuda_test" --require-device
rc_test=$?
step test-nodevice 60 env CUDA_VISIBLE_DEVICES= "$build/annex_cuda_test" --expect-nodevice
rc_nodev=$?
if [ $rc_test -ne 0 ] && command -v compute-sanitizer >/dev/null; then
  step sanitizer 180 compute-sanitizer --tool memcheck --print-limit 20 \
    "$build/annex_cuda_test" --require-device --quick
fi

step bench 300 "$build/annex_cuda_bench" --out "$out/bench.md"
rc_bench=$?

anchor=../shared/peers/gpu_torch_knn.py
[ -f "$anchor" ] || anchor=ext/gpu/gpu_torch_knn.py
step torch 240 python3 "$anchor"
rc_torch=$?

# shared-memory hazards in the kernels (small tables; slow under the tool)
rc_race="not run (ANNEX_GPU_RACECHECK=1 runs it)"
if [ "${ANNEX_GPU_RACECHECK:-0}" = 1 ] && [ $rc_test -eq 0 ] &&
    command -v compute-sanitizer >/dev/null; then
  step racecheck 150 compute-sanitizer --tool racecheck --print-limit 20 \
    "$build/annex_cuda_test" --require-device --quick
  rc_race="exit $?"
fi

# ------------------------------------------------------------- the report
{
  echo "# annex_cuda on the H200: results"
  echo
  echo "Run $(cat "$out/date.txt") by \`scripts/gpu-bench.sh\` (commit"
  echo "${ANNEX_GIT_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')} plus the working tree)."
  echo "Build: \`cmake -S ext/gpu -B build-gpu -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build build-gpu\`."
  echo
  echo '```'
  cat "$out/machine.txt"
  echo '```'
  echo
  echo "## Tests"
  echo
  echo "- \`annex_cuda_test --require-device\`: exit $rc_test; $(grep -E '^(PASS|FAIL):' "$out/test.txt" | tail -1)"
  echo "- \`CUDA_VISIBLE_DEVICES= annex_cuda_test --expect-nodevice\`: exit $rc_nodev; $(grep -E '^ok:' "$out/test-nodevice.txt" | tail -1)"
  echo "- \`compute-sanitizer --tool racecheck annex_cuda_test --quick\`: $rc_race; $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY|hazard' "$out/racecheck.txt" 2>/dev/null | tail -1)"
  echo
  echo '<details><summary>test output</summary>'
  echo
  echo '```'
  cat "$out/test.txt"
  echo '```'
  echo '</details>'
  echo
  cat "$out/bench.md" 2>/dev/null || echo "(benchmark failed: exit $rc_bench)"
  echo
  echo "## PyTorch anchor (same session): \`python3 $anchor\`, exit $rc_torch"
  echo
  echo '```'
  cat "$out/torch.txt"
  echo '```'
} >"$out/gpu-results.md"
say "report: $out/gpu-results.md"
rm -f "$out/date.txt" "$out/machine.txt"
[ $rc_test -eq 0 ] && [ $rc_nodev -eq 0 ] && [ $rc_bench -eq 0 ]
