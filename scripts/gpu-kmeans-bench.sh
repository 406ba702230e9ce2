#!/usr/bin/env bash
# scripts/gpu-kmeans-bench.sh — issue 6's k-means on the device (IVF
# training): ext/gpu/gpu_kmeans_bench.c on an NVIDIA H200.
#   here:   scripts/gpu-kmeans-bench.sh --stage BUILD   (an annex build with
#           -DCMAKE_CUDA_ARCHITECTURES=90 where annex_cuda and
#           annex_gpu_kmeans_bench were built; copies them and libsqlite3
#           into .gpucarry/, ignored through .git/info/exclude)
#   there:  run(command="scripts/gpu-kmeans-bench.sh", carry=[".gpucarry"])
#           runs the check and the benchmark (args: ANNEX_GPU_KMEANS_ARGS),
#           log in $OUT/gpu-kmeans.txt. Exit 0 when everything passed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
carry=$root/.gpucarry
if [ "${1:-}" = "--stage" ]; then
  b=${2:?usage: scripts/gpu-kmeans-bench.sh --stage BUILD_DIR}
  grep -qx '/.gpucarry/' .git/info/exclude 2>/dev/null ||
    echo '/.gpucarry/' >>.git/info/exclude
  mkdir -p "$carry/lib"
  cp "$b/annex_cuda.so" "$b/ext/gpu/annex_gpu_kmeans_bench" "$carry/" || exit 1
  # libsqlite3, OpenMP, and the CPU's BLAS (kmeans.c dlopens
  # libopenblas.so.0: without it the CPU side would time its SIMD path)
  for l in libsqlite3.so.0 libgomp.so.1; do
    cp -L "$(ldd "$b/ext/gpu/annex_gpu_kmeans_bench" |
      awk -v l=$l '$1 == l {print $3}')" "$carry/lib/" || exit 1
  done
  o=$(ldconfig -p | awk '$1 == "libopenblas.so.0" {print $NF; exit}')
  cp -L "$o" "$carry/lib/" || exit 1
  for l in libgfortran.so.5 libquadmath.so.0; do
    cp -L "$(ldd "$o" | awk -v l=$l '$1 == l {print $3}')" "$carry/lib/"
  done
  du -sh "$carry"
  exit 0
fi
out=${OUT:-$root/build-gpu/kmeans-out}
mkdir -p "$out"
export PATH=/usr/local/cuda/bin:$PATH
wheel=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)/nvidia
export LD_LIBRARY_PATH=$carry/lib:/usr/local/cuda/lib64:$wheel/cublas/lib:${LD_LIBRARY_PATH:-}
{ date -u +"%Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
  echo "cpus: $(nproc)"; } 2>&1 | tee "$out/gpu-kmeans.txt"
ldd "$carry/annex_cuda.so" "$carry/lib/libopenblas.so.0" | grep "not found" |
  tee -a "$out/gpu-kmeans.txt"
ANNEX_CUDA_PLUGIN=$carry/annex_cuda.so timeout 560 \
  "$carry/annex_gpu_kmeans_bench" ${ANNEX_GPU_KMEANS_ARGS:-} 2>&1 |
  tee -a "$out/gpu-kmeans.txt"
