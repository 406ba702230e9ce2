/*
** kmeans.cu — xKmeansAssign: nearest of k centroids for n vectors
** (annex_cuda.h, version 2), the assignment step of annex's k-means
** (ext/index/kmeans.c) on the device.
**
** Same formula as kmeans.c's BLAS path: for a block of m vectors, one fp32
** cuBLAS product D = -2 C X^T (ip: -C X^T; CUBLAS_COMPUTE_32F, never TF32)
** into a k x m column-major tile (vector i's k scores contiguous), then one
** warp per vector adds |c_j|^2 (l2) and takes the argmin (first index on
** ties), and adds |x|^2 (clamped at 0). The CPU differs only in summation
** order, so an assignment differs only where two scores tie within float
** rounding.
**
** Memory per call: the centroids (k x nDim) and their norms, the vectors
** (n x nDim, kept between calls with KM_HOLD_X) and their norms, one tile
** of at most KM_TILE_FLOATS products, and the outputs (n x 8 bytes).
** Bytes moved per call: the vectors once (skipped with KM_REUSE_X), the
** tile written by the GEMM and read by the argmin: 8 n k bytes in all.
*/
#include "gpu_int.cuh"

#include <stdlib.h>

/* Products held at once (256 MiB of floats). */
#define KM_TILE_FLOATS ((size_t)1 << 26)

/* |row|^2 of n rows of d floats: one warp per row. */
__global__ void km_norms(const float *__restrict__ a, size_t n, int d,
                         float *__restrict__ out) {
  size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  int lane = threadIdx.x & 31;
  if (w >= n) return;
  const float *r = a + w * (size_t)d;
  float s = 0;
  for (int t = lane; t < d; t += 32) s = fmaf(r[t], r[t], s);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) out[w] = s;
}

/* One warp per vector i of the block: argmin_j D[i*k + j] + cn[j]. */
__global__ void km_argmin(const float *__restrict__ D, int k, size_t m,
                          const float *__restrict__ cn,
                          const float *__restrict__ xn, int bIP,
                          int32_t *__restrict__ aAssign,
                          float *__restrict__ aScore) {
  size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  int lane = threadIdx.x & 31;
  if (i >= m) return;
  const float *row = D + i * (size_t)k;
  float best = INFINITY;
  int ib = 0x7fffffff;
  for (int j = lane; j < k; j += 32) {
    float v = row[j] + (bIP ? 0.0f : cn[j]);
    if (v < best || (v == best && j < ib)) { /* NaN never wins */
      best = v;
      ib = j;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    float b2 = __shfl_xor_sync(0xffffffffu, best, o);
    int i2 = __shfl_xor_sync(0xffffffffu, ib, o);
    if (b2 < best || (b2 == best && i2 < ib)) {
      best = b2;
      ib = i2;
    }
  }
  if (lane == 0) {
    if (ib == 0x7fffffff) { /* every score NaN: the CPU keeps index 0 */
      ib = 0;
      best = row[0] + (bIP ? 0.0f : cn[0]);
    }
    if (!bIP) {
      best += xn[i];
      if (best < 0) best = 0;
    }
    aAssign[i] = ib;
    aScore[i] = best;
  }
}

void gpu_kmeans_release(GpuCtx *p) {
  if (p->dKmX) (void)cudaFree(p->dKmX);
  if (p->dKmXn) (void)cudaFree(p->dKmXn);
  p->dKmX = p->dKmXn = NULL;
  p->nKmX = p->nKmDim = 0;
}

int gpu_kmeans_assign(GpuCtx *p, const float *aX, size_t n, size_t nDim,
                      const float *aC, size_t k, unsigned flags,
                      int32_t *aAssign, float *aScore) {
  const int bIP = (flags & ANNEX_CUDA_KM_IP) != 0;
  const int bReuse = (flags & ANNEX_CUDA_KM_REUSE_X) != 0;
  const float alpha = bIP ? -1.0f : -2.0f, zero = 0.0f;
  float *dC = NULL, *dCn = NULL, *dD = NULL, *dScore = NULL;
  int32_t *dAssign = NULL;
  size_t nb;
  cudaError_t e;
  int rc;
  if (n == 0) return ANNEX_CUDA_OK;
  if (k == 0 || nDim == 0 || nDim > ANNEX_CUDA_MAX_DIM || k > 0x7fffffff ||
      aAssign == NULL || (!bReuse && aX == NULL) || aC == NULL) {
    return gpu_fail(p, ANNEX_CUDA_RANGE,
                    "kmeans assign: bad shape (n %zu, k %zu, dims %zu)", n, k,
                    nDim);
  }
  if (bReuse && (p->dKmX == NULL || p->nKmX != n || p->nKmDim != nDim)) {
    return gpu_fail(p, ANNEX_CUDA_ERROR,
                    "kmeans assign: KM_REUSE_X without matching held vectors");
  }
  if (!bReuse) {
    gpu_kmeans_release(p);
    rc = gpu_malloc(p, (void **)&p->dKmX, n * nDim * sizeof(float),
                    "kmeans vectors");
    if (!rc) rc = gpu_malloc(p, (void **)&p->dKmXn, n * sizeof(float),
                             "kmeans norms");
    if (rc) goto fail;
    p->nKmX = n;
    p->nKmDim = nDim;
    e = cudaMemcpyAsync(p->dKmX, aX, n * nDim * sizeof(float),
                        cudaMemcpyHostToDevice, p->st);
    if (e != cudaSuccess) {
      rc = gpu_cuda_rc(p, e, "kmeans upload");
      goto fail;
    }
    km_norms<<<(unsigned)((n * 32 + 255) / 256), 256, 0, p->st>>>(
        p->dKmX, n, (int)nDim, p->dKmXn);
    rc = gpu_launch_rc(p, "kmeans norms");
    if (rc) goto fail;
  }
  nb = KM_TILE_FLOATS / k;
  if (nb < 1) nb = 1;
  if (nb > n) nb = n;
  rc = gpu_malloc(p, (void **)&dC, k * nDim * sizeof(float), "kmeans centroids");
  if (!rc) rc = gpu_malloc(p, (void **)&dCn, k * sizeof(float), "kmeans cnorm");
  if (!rc) rc = gpu_malloc(p, (void **)&dD, nb * k * sizeof(float), "kmeans tile");
  if (!rc) rc = gpu_malloc(p, (void **)&dAssign, n * sizeof(int32_t), "kmeans out");
  if (!rc) rc = gpu_malloc(p, (void **)&dScore, n * sizeof(float), "kmeans out");
  if (rc) goto fail;
  e = cudaMemcpyAsync(dC, aC, k * nDim * sizeof(float), cudaMemcpyHostToDevice,
                      p->st);
  if (e != cudaSuccess) {
    rc = gpu_cuda_rc(p, e, "kmeans centroids");
    goto fail;
  }
  km_norms<<<(unsigned)((k * 32 + 255) / 256), 256, 0, p->st>>>(dC, k,
                                                               (int)nDim, dCn);
  rc = gpu_launch_rc(p, "kmeans norms");
  if (rc) goto fail;
  for (size_t i0 = 0; i0 < n; i0 += nb) {
    size_t m = n - i0 < nb ? n - i0 : nb;
    cublasStatus_t s = cublasGemmEx(
        p->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)k, (int)m, (int)nDim, &alpha,
        dC, CUDA_R_32F, (int)nDim, p->dKmX + i0 * nDim, CUDA_R_32F, (int)nDim,
        &zero, dD, CUDA_R_32F, (int)k, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
      rc = gpu_blas_rc(p, s, "kmeans cublasGemmEx");
      goto fail;
    }
    km_argmin<<<(unsigned)((m * 32 + 255) / 256), 256, 0, p->st>>>(
        dD, (int)k, m, dCn, p->dKmXn + i0, bIP, dAssign + i0, dScore + i0);
    rc = gpu_launch_rc(p, "kmeans argmin");
    if (rc) goto fail;
  }
  e = cudaMemcpyAsync(aAssign, dAssign, n * sizeof(int32_t),
                      cudaMemcpyDeviceToHost, p->st);
  if (e == cudaSuccess && aScore) {
    e = cudaMemcpyAsync(aScore, dScore, n * sizeof(float),
                        cudaMemcpyDeviceToHost, p->st);
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(p->st);
  if (e != cudaSuccess) {
    rc = gpu_cuda_rc(p, e, "kmeans download");
    goto fail;
  }
fail:
  if (rc) (void)cudaStreamSynchronize(p->st);
  if (dC) (void)cudaFree(dC);
  if (dCn) (void)cudaFree(dCn);
  if (dD) (void)cudaFree(dD);
  if (dAssign) (void)cudaFree(dAssign);
  if (dScore) (void)cudaFree(dScore);
  if (rc || !(flags & ANNEX_CUDA_KM_HOLD_X)) gpu_kmeans_release(p);
  return rc;
}
