/*
** annex_cuda.cu — the plugin: context, errors, upload, the ABI table.
**
** The k-NN paths live in scan.cu (one query: a streaming scan fused with
** k-selection) and batch.cu (many queries: cuBLAS products over tiles of
** the table, each followed by a filtering/selection kernel). The selection
** building blocks and the error bound are in gpu_int.cuh; the contract is in
** annex_cuda.h.
*/
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_int.cuh"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ------------------------------------------------------------ errors */

int gpu_fail(GpuCtx *p, int rc, const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  vsnprintf(p->zErr, sizeof(p->zErr), zFmt, ap);
  va_end(ap);
  if (rc == ANNEX_CUDA_LOST) p->lost = 1;
  p->stats.nError++;
  return rc;
}

static int is_sticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorECCUncorrectable:
    case cudaErrorLaunchTimeout:
    case cudaErrorContextIsDestroyed:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoDevice:
    case cudaErrorCudartUnloading:
    case cudaErrorUnknown:
      return 1;
    default:
      return 0;
  }
}

int gpu_cuda_rc(GpuCtx *p, cudaError_t e, const char *zWhat) {
  int rc;
  if (e == cudaSuccess) return ANNEX_CUDA_OK;
  (void)cudaGetLastError(); /* clears a non-sticky error */
  if (e == cudaErrorMemoryAllocation) {
    rc = ANNEX_CUDA_NOMEM;
  } else if (is_sticky(e)) {
    rc = ANNEX_CUDA_LOST;
  } else {
    rc = ANNEX_CUDA_LAUNCH;
  }
  if (rc != ANNEX_CUDA_LOST) {
    /* A sticky error shows up again on a synchronising call. */
    cudaError_t e2 = cudaStreamSynchronize(p->st);
    if (e2 != cudaSuccess) {
      (void)cudaGetLastError();
      if (is_sticky(e2) || cudaPeekAtLastError() != cudaSuccess) {
        rc = ANNEX_CUDA_LOST;
      }
    }
  }
  return gpu_fail(p, rc, "%s: %s (%s)%s", zWhat, cudaGetErrorString(e),
                  cudaGetErrorName(e),
                  rc == ANNEX_CUDA_LOST ? "; device context lost" : "");
}

int gpu_blas_rc(GpuCtx *p, cublasStatus_t s, const char *zWhat) {
  if (s == CUBLAS_STATUS_SUCCESS) return ANNEX_CUDA_OK;
  if (s == CUBLAS_STATUS_ALLOC_FAILED) {
    return gpu_fail(p, ANNEX_CUDA_NOMEM, "%s: cuBLAS out of memory", zWhat);
  }
  /* Find out whether the context survived. */
  cudaError_t e = cudaStreamSynchronize(p->st);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, zWhat);
  return gpu_fail(p, ANNEX_CUDA_LAUNCH, "%s: cuBLAS status %d", zWhat, (int)s);
}

int gpu_launch_rc(GpuCtx *p, const char *zWhat) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, zWhat);
  if (p->bFailLaunch) {
    p->bFailLaunch = 0;
    (void)cudaStreamSynchronize(p->st);
    return gpu_fail(p, ANNEX_CUDA_LAUNCH, "%s: injected launch failure",
                    zWhat);
  }
  return ANNEX_CUDA_OK;
}

/* ------------------------------------------------------------ memory */

static int take_fault(GpuCtx *p) {
  if (p->nFailAlloc < 0) return 0;
  if (p->nFailAlloc == 0) {
    p->nFailAlloc = -1;
    return 1;
  }
  p->nFailAlloc--;
  return 0;
}

int gpu_malloc(GpuCtx *p, void **pp, size_t nByte, const char *zWhat) {
  cudaError_t e;
  *pp = NULL;
  if (take_fault(p)) {
    return gpu_fail(p, ANNEX_CUDA_NOMEM,
                    "%s: out of device memory (injected failure, %zu bytes)",
                    zWhat, nByte);
  }
  e = cudaMalloc(pp, nByte ? nByte : 16);
  if (e != cudaSuccess) {
    *pp = NULL;
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return gpu_fail(p, ANNEX_CUDA_NOMEM,
                      "%s: out of device memory (%zu bytes)", zWhat, nByte);
    }
    return gpu_cuda_rc(p, e, zWhat);
  }
  return ANNEX_CUDA_OK;
}

static void gpu_free(void *d) {
  if (d) (void)cudaFree(d);
}

int gpu_scratch(GpuCtx *p, int iSlot, size_t nByte, void **pp) {
  int rc;
  if (nByte == 0) nByte = 16;
  if (p->anScratch[iSlot] >= nByte) {
    *pp = p->aScratch[iSlot];
    return ANNEX_CUDA_OK;
  }
  gpu_free(p->aScratch[iSlot]);
  p->aScratch[iSlot] = NULL;
  p->anScratch[iSlot] = 0;
  nByte += nByte / 4; /* grow with room, so that growth is rare */
  rc = gpu_malloc(p, &p->aScratch[iSlot], nByte, "scratch");
  if (rc) return rc;
  p->anScratch[iSlot] = nByte;
  *pp = p->aScratch[iSlot];
  return ANNEX_CUDA_OK;
}

/* Pinned host staging, grow-only. */
static int host_stage(GpuCtx *p, void **pp, size_t *pn, size_t nByte) {
  cudaError_t e;
  if (*pn >= nByte) return ANNEX_CUDA_OK;
  if (*pp) cudaFreeHost(*pp);
  *pp = NULL;
  *pn = 0;
  nByte += nByte / 4 + 4096;
  if (take_fault(p)) {
    return gpu_fail(p, ANNEX_CUDA_NOMEM,
                    "pinned staging: out of memory (injected failure)");
  }
  e = cudaMallocHost(pp, nByte);
  if (e != cudaSuccess) {
    *pp = NULL;
    return gpu_cuda_rc(p, e, "pinned staging");
  }
  *pn = nByte;
  return ANNEX_CUDA_OK;
}

/* Pinned buffers (kept outside GpuCtx's scratch: host memory). */
struct HostBufs {
  void *pIn;
  size_t nIn;
  void *pOut;
  size_t nOut;
};

struct Ctx {
  GpuCtx g;
  HostBufs h;
};

static size_t scratch_bytes(const GpuCtx *p) {
  size_t t = 0;
  for (int i = 0; i < SC_COUNT; i++) t += p->anScratch[i];
  return t;
}

static void table_free(GpuCtx *p) {
  gpu_free(p->dX);
  gpu_free(p->dXn);
  gpu_free(p->dValid);
  gpu_free(p->dRowid);
  gpu_free(p->dXmax);
  free(p->hValid);
  p->dX = p->dXn = NULL;
  p->dValid = p->dXmax = NULL;
  p->dRowid = NULL;
  p->hValid = NULL;
  p->bReady = p->bBegun = 0;
  p->n = p->nDim = p->nDimPad = 0;
  p->nTableBytes = 0;
  p->rXmax = 0.f;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* ----------------------------------------------------------- kernels */

__global__ void probe_kernel(int *p) {
  if (p) *p = 1;
}

__global__ void iota_rowid(int64_t *a, size_t iFirst, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) a[i] = (int64_t)(iFirst + i);
}

/* Per vector: |x|^2 (l2, ip) or 1/|x| (cosine), summed in double; the
** largest |x| of the valid vectors (rounded up) into *xmax. */
__global__ void norms_kernel(const float4 *X, size_t n, int dpad4,
                             const unsigned *valid, int eMetric, float *xn,
                             unsigned *xmax) {
  const int lane = threadIdx.x & 31;
  size_t v = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
  const size_t nWarp = (gridDim.x * (size_t)blockDim.x) >> 5;
  float mx = 0.f;
  for (; v < n; v += nWarp) {
    const float4 *x = X + v * dpad4;
    double s = 0;
    for (int j = lane; j < dpad4; j += 32) {
      float4 a = x[j];
      s += (double)a.x * a.x + (double)a.y * a.y + (double)a.z * a.z +
           (double)a.w * a.w;
    }
    for (int off = 16; off > 0; off >>= 1) {
      s += __shfl_xor_sync(0xffffffffu, s, off);
    }
    if (lane == 0) {
      if (eMetric == ANNEX_CUDA_COSINE) {
        xn[v] = s > 0 ? (float)(1.0 / sqrt(s)) : 0.f;
      } else {
        xn[v] = (float)s;
      }
      if (bit_set(valid, v)) mx = fmaxf(mx, __double2float_ru(sqrt(s)));
    }
  }
  if (lane == 0 && mx > 0.f) atomicMax(xmax, __float_as_uint(mx));
}

__global__ void invalidate_kernel(unsigned *valid, const int64_t *aSlot,
                                  size_t nSlot, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < nSlot) {
    int64_t s = aSlot[i];
    if (s >= 0 && (size_t)s < n) {
      atomicAnd(&valid[s >> 5], ~(1u << (s & 31)));
    }
  }
}

/* One warp per query: norms in double. */
__global__ void qprep_kernel(const float4 *Q, size_t nQ, int dpad4,
                             QParam *qp) {
  const int lane = threadIdx.x & 31;
  size_t q = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
  if (q >= nQ) return;
  const float4 *x = Q + q * dpad4;
  double s = 0;
  for (int j = lane; j < dpad4; j += 32) {
    float4 a = x[j];
    s += (double)a.x * a.x + (double)a.y * a.y + (double)a.z * a.z +
         (double)a.w * a.w;
  }
  for (int off = 16; off > 0; off >>= 1) {
    s += __shfl_xor_sync(0xffffffffu, s, off);
  }
  if (lane == 0) {
    QParam r;
    r.qn2 = (float)s;
    r.qnorm = __double2float_ru(sqrt(s));
    r.rq = s > 0 ? (float)(1.0 / sqrt(s)) : 0.f;
    r.pad = 0.f;
    qp[q] = r;
  }
}

/* Deterministic pseudo-random fill in [-1, 1) (for xMeasure). */
__global__ void fill_kernel(float *a, size_t n, unsigned seed) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  const size_t stride = gridDim.x * (size_t)blockDim.x;
  for (; i < n; i += stride) {
    unsigned long long z = (i + 1) * 0x9E3779B97F4A7C15ull + seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    a[i] = (float)((z >> 40) * (1.0 / 8388608.0)) - 1.0f;
  }
}

__global__ void read_kernel(const float4 *a, size_t n4, float *out) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  const size_t stride = gridDim.x * (size_t)blockDim.x;
  float s = 0.f;
  for (; i + 3 * stride < n4; i += 4 * stride) {
    float4 x0 = __ldcs(a + i), x1 = __ldcs(a + i + stride),
           x2 = __ldcs(a + i + 2 * stride), x3 = __ldcs(a + i + 3 * stride);
    s += x0.x + x1.y + x2.z + x3.w;
  }
  for (; i < n4; i += stride) s += __ldcs(a + i).x;
  if (s == 12345.678f) *out = s; /* keeps the loads */
}

/* ------------------------------------------------------------- API */

static const char *plugin_info(void) {
  static char z[256];
  if (!z[0]) {
    int rt = 0, bMaj = 0, bMin = 0, bPat = 0;
    (void)cudaRuntimeGetVersion(&rt);
    (void)cublasGetProperty(MAJOR_VERSION, &bMaj);
    (void)cublasGetProperty(MINOR_VERSION, &bMin);
    (void)cublasGetProperty(PATCH_LEVEL, &bPat);
    snprintf(z, sizeof(z),
             "annex_cuda ABI %d; CUDA runtime %d.%d; cuBLAS %d.%d.%d; "
             "__CUDA_ARCH_LIST__ " STR(__CUDA_ARCH_LIST__) " (nvcc %d.%d)",
             ANNEX_CUDA_ABI_VERSION, rt / 1000, (rt % 1000) / 10, bMaj, bMin,
             bPat, __CUDACC_VER_MAJOR__, __CUDACC_VER_MINOR__);
  }
  return z;
}

static void set_err(char *zErr, size_t nErr, const char *zFmt, ...) {
  va_list ap;
  if (!zErr || nErr == 0) return;
  va_start(ap, zFmt);
  vsnprintf(zErr, nErr, zFmt, ap);
  va_end(ap);
}

static void ctx_destroy(Ctx *c) {
  GpuCtx *p = &c->g;
  (void)cudaSetDevice(p->iDevice);
  if (p->st) (void)cudaStreamSynchronize(p->st);
  if (p->st2) (void)cudaStreamSynchronize(p->st2);
  table_free(p);
  gpu_kmeans_release(p);
  for (int i = 0; i < SC_COUNT; i++) gpu_free(p->aScratch[i]);
  if (c->h.pIn) cudaFreeHost(c->h.pIn);
  if (c->h.pOut) cudaFreeHost(c->h.pOut);
  if (p->blas) cublasDestroy(p->blas);
  gpu_free(p->pBlasWs);
  if (p->ev0) cudaEventDestroy(p->ev0);
  if (p->ev1) cudaEventDestroy(p->ev1);
  for (int i = 0; i < 2; i++) {
    if (p->evGemm[i]) cudaEventDestroy(p->evGemm[i]);
    if (p->evFilt[i]) cudaEventDestroy(p->evFilt[i]);
  }
  if (p->evFork) cudaEventDestroy(p->evFork);
  if (p->evJoin) cudaEventDestroy(p->evJoin);
  if (p->st2) cudaStreamDestroy(p->st2);
  if (p->st) cudaStreamDestroy(p->st);
  (void)cudaGetLastError();
  free(c);
}

static int x_open(int iDevice, char *zErr, size_t nErr, void **ppCtx) {
  int nDev = 0, rc;
  cudaError_t e;
  cudaDeviceProp prop;
  Ctx *c;
  GpuCtx *p;
  if (!ppCtx) return ANNEX_CUDA_ERROR;
  *ppCtx = NULL;
  e = cudaGetDeviceCount(&nDev);
  if (e != cudaSuccess || nDev == 0) {
    (void)cudaGetLastError();
    set_err(zErr, nErr, "no CUDA device: %s",
            e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    return ANNEX_CUDA_NODEVICE;
  }
  if (iDevice < 0) iDevice = 0;
  if (iDevice >= nDev) {
    set_err(zErr, nErr, "no CUDA device %d (%d present)", iDevice, nDev);
    return ANNEX_CUDA_NODEVICE;
  }
  e = cudaSetDevice(iDevice);
  if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, iDevice);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    set_err(zErr, nErr, "CUDA device %d unusable: %s", iDevice,
            cudaGetErrorString(e));
    return ANNEX_CUDA_NODEVICE;
  }
  c = (Ctx *)calloc(1, sizeof(Ctx));
  if (!c) {
    set_err(zErr, nErr, "out of host memory");
    return ANNEX_CUDA_NOMEM;
  }
  p = &c->g;
  p->iDevice = iDevice;
  p->nSM = prop.multiProcessorCount;
  p->nFailAlloc = -1;
  p->stats.iDevice = iDevice;
  snprintf(p->zDevName, sizeof(p->zDevName), "%.200s (sm_%d%d, %d SMs, %.1f GiB)",
           prop.name, prop.major, prop.minor, prop.multiProcessorCount,
           prop.totalGlobalMem / 1073741824.0);
  {
    const char *z = getenv("ANNEX_CUDA_FAIL_ALLOC");
    if (z && *z) p->nFailAlloc = atol(z);
  }
  /* A kernel built for another architecture fails here, not mid-query. */
  probe_kernel<<<1, 1>>>(NULL);
  e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    set_err(zErr, nErr, "CUDA device %d (%s): %s (plugin %s)", iDevice,
            prop.name, cudaGetErrorString(e), plugin_info());
    free(c);
    return ANNEX_CUDA_NODEVICE;
  }
  e = cudaStreamCreateWithFlags(&p->st, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaEventCreate(&p->ev0);
  if (e == cudaSuccess) e = cudaEventCreate(&p->ev1);
  if (e == cudaSuccess) {
    e = cudaStreamCreateWithFlags(&p->st2, cudaStreamNonBlocking);
  }
  for (int i = 0; i < 2 && e == cudaSuccess; i++) {
    e = cudaEventCreateWithFlags(&p->evGemm[i], cudaEventDisableTiming);
    if (e == cudaSuccess) {
      e = cudaEventCreateWithFlags(&p->evFilt[i], cudaEventDisableTiming);
    }
  }
  if (e == cudaSuccess) {
    e = cudaEventCreateWithFlags(&p->evFork, cudaEventDisableTiming);
  }
  if (e == cudaSuccess) {
    e = cudaEventCreateWithFlags(&p->evJoin, cudaEventDisableTiming);
  }
  if (e != cudaSuccess) {
    rc = gpu_cuda_rc(p, e, "stream");
    goto fail;
  }
  {
    cublasStatus_t s = cublasCreate(&p->blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
      p->blas = NULL;
      rc = gpu_blas_rc(p, s, "cublasCreate");
      goto fail;
    }
  }
  p->nBlasWs = 32u << 20;
  rc = gpu_malloc(p, &p->pBlasWs, p->nBlasWs, "cuBLAS workspace");
  if (rc) goto fail;
  if (cublasSetStream(p->blas, p->st) != CUBLAS_STATUS_SUCCESS ||
      cublasSetWorkspace(p->blas, p->pBlasWs, p->nBlasWs) !=
          CUBLAS_STATUS_SUCCESS) {
    rc = gpu_fail(p, ANNEX_CUDA_LAUNCH, "cuBLAS setup failed");
    goto fail;
  }
  gpu_scan_init_attrs();
  gpu_gemm_init_attrs();
  e = cudaGetLastError();
  if (e != cudaSuccess) {
    rc = gpu_cuda_rc(p, e, "kernel attributes");
    goto fail;
  }
  p->stats.nError = 0;
  *ppCtx = c;
  return ANNEX_CUDA_OK;
fail:
  set_err(zErr, nErr, "%s", p->zErr);
  ctx_destroy(c);
  return rc == ANNEX_CUDA_OK ? ANNEX_CUDA_ERROR : rc;
}

static void x_close(void *ctx) {
  if (ctx) ctx_destroy((Ctx *)ctx);
}

static const char *x_errmsg(void *ctx) {
  return ctx ? ((Ctx *)ctx)->g.zErr : "";
}

/* Common prologue: the context is alive and current on this thread. */
static int enter(GpuCtx *p) {
  cudaError_t e;
  p->zErr[0] = 0;
  if (p->lost) {
    p->stats.nError++;
    snprintf(p->zErr, sizeof(p->zErr), "CUDA device context lost");
    return ANNEX_CUDA_LOST;
  }
  e = cudaSetDevice(p->iDevice);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "cudaSetDevice");
  return ANNEX_CUDA_OK;
}

static int x_device(void *ctx, char *zName, size_t nName, size_t *pnFree,
                    size_t *pnTotal) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  size_t f = 0, t = 0;
  int rc = enter(p);
  if (rc) return rc;
  if (zName && nName) snprintf(zName, nName, "%s", p->zDevName);
  cudaError_t e = cudaMemGetInfo(&f, &t);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "cudaMemGetInfo");
  if (pnFree) *pnFree = f;
  if (pnTotal) *pnTotal = t;
  return ANNEX_CUDA_OK;
}

static int x_upload_begin(void *ctx, size_t n, size_t nDim, int eMetric) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  int rc = enter(p);
  size_t nWord;
  if (rc) return rc;
  table_free(p);
  if (nDim < 1 || nDim > ANNEX_CUDA_MAX_DIM || n > ANNEX_CUDA_MAX_ROWS) {
    return gpu_fail(p, ANNEX_CUDA_RANGE, "table of %zu x %zu out of range", n,
                    nDim);
  }
  if (eMetric != ANNEX_CUDA_L2 && eMetric != ANNEX_CUDA_IP &&
      eMetric != ANNEX_CUDA_COSINE) {
    return gpu_fail(p, ANNEX_CUDA_ERROR, "unknown metric %d", eMetric);
  }
  p->tUploadStart = now_ms();
  p->eMetric = eMetric;
  p->n = n;
  p->nDim = nDim;
  p->nDimPad = (nDim + 3) & ~(size_t)3;
  nWord = (n + 31) / 32 + 1;
  p->hValid = (unsigned char *)calloc(nWord, 4);
  if (!p->hValid) {
    table_free(p);
    return gpu_fail(p, ANNEX_CUDA_NOMEM, "out of host memory");
  }
  rc = gpu_malloc(p, (void **)&p->dX, n * p->nDimPad * sizeof(float) + 16,
                  "table vectors");
  if (!rc) rc = gpu_malloc(p, (void **)&p->dXn, n * sizeof(float) + 16,
                           "table norms");
  if (!rc) rc = gpu_malloc(p, (void **)&p->dValid, nWord * 4, "table bits");
  if (!rc) rc = gpu_malloc(p, (void **)&p->dRowid, n * 8 + 16,
                           "table rowids");
  if (!rc) rc = gpu_malloc(p, (void **)&p->dXmax, 16, "table max norm");
  if (!rc && p->nDimPad != nDim) {
    rc = gpu_cuda_rc(p, cudaMemsetAsync(p->dX, 0,
                                        n * p->nDimPad * sizeof(float), p->st),
                     "memset");
  }
  if (rc) {
    table_free(p);
    return rc;
  }
  p->nTableBytes = n * p->nDimPad * 4 + n * 4 + nWord * 4 + n * 8 + 16;
  p->bBegun = 1;
  return ANNEX_CUDA_OK;
}

static int x_upload_chunk(void *ctx, size_t iFirst, size_t n,
                          const float *aVec, const int64_t *aRowid,
                          const unsigned char *aValid) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  int rc = enter(p);
  cudaError_t e;
  if (rc) return rc;
  if (!p->bBegun) return gpu_fail(p, ANNEX_CUDA_ERROR, "no upload begun");
  if (iFirst > p->n || n > p->n - iFirst || (n && !aVec)) {
    table_free(p);
    return gpu_fail(p, ANNEX_CUDA_ERROR, "chunk %zu+%zu outside table of %zu",
                    iFirst, n, p->n);
  }
  if (n == 0) return ANNEX_CUDA_OK;
  e = cudaMemcpy2DAsync(p->dX + iFirst * p->nDimPad, p->nDimPad * 4, aVec,
                        p->nDim * 4, p->nDim * 4, n, cudaMemcpyHostToDevice,
                        p->st);
  if (e == cudaSuccess) {
    if (aRowid) {
      e = cudaMemcpyAsync(p->dRowid + iFirst, aRowid, n * 8,
                          cudaMemcpyHostToDevice, p->st);
    } else {
      iota_rowid<<<(unsigned)((n + 255) / 256), 256, 0, p->st>>>(
          p->dRowid + iFirst, iFirst, n);
      e = cudaGetLastError();
    }
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(p->st);
  if (e != cudaSuccess) {
    rc = gpu_cuda_rc(p, e, "upload");
    table_free(p);
    return rc;
  }
  for (size_t i = 0; i < n; i++) {
    size_t s = iFirst + i;
    int v = aValid ? (aValid[i >> 3] >> (i & 7)) & 1 : 1;
    if (v) {
      p->hValid[s >> 3] |= (unsigned char)(1u << (s & 7));
    } else {
      p->hValid[s >> 3] &= (unsigned char)~(1u << (s & 7));
    }
  }
  return ANNEX_CUDA_OK;
}

static int x_upload_end(void *ctx) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  int rc = enter(p);
  cudaError_t e;
  unsigned xm = 0;
  size_t nWord;
  if (rc) return rc;
  if (!p->bBegun) return gpu_fail(p, ANNEX_CUDA_ERROR, "no upload begun");
  nWord = (p->n + 31) / 32 + 1;
  e = cudaMemcpyAsync(p->dValid, p->hValid, nWord * 4, cudaMemcpyHostToDevice,
                      p->st);
  if (e == cudaSuccess) e = cudaMemsetAsync(p->dXmax, 0, 4, p->st);
  if (e == cudaSuccess && p->n) {
    unsigned nBlk = (unsigned)((p->n + 7) / 8);
    if (nBlk > (unsigned)p->nSM * 64) nBlk = (unsigned)p->nSM * 64;
    norms_kernel<<<nBlk, 256, 0, p->st>>>(
        (const float4 *)p->dX, p->n, (int)(p->nDimPad / 4), p->dValid,
        p->eMetric, p->dXn, p->dXmax);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) {
    e = cudaMemcpyAsync(&xm, p->dXmax, 4, cudaMemcpyDeviceToHost, p->st);
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(p->st);
  if (e != cudaSuccess) {
    rc = gpu_cuda_rc(p, e, "upload end");
    table_free(p);
    return rc;
  }
  rc = gpu_launch_rc(p, "norms");
  if (rc) {
    table_free(p);
    return rc;
  }
  memcpy(&p->rXmax, &xm, 4);
  free(p->hValid);
  p->hValid = NULL;
  p->bBegun = 0;
  p->bReady = 1;
  p->stats.rUploadMs = now_ms() - p->tUploadStart;
  return ANNEX_CUDA_OK;
}

static int x_invalidate(void *ctx, const int64_t *aSlot, size_t n) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  int rc = enter(p);
  int64_t *d;
  if (rc) return rc;
  if (!p->bReady) return gpu_fail(p, ANNEX_CUDA_EMPTY, "no table resident");
  if (n == 0) return ANNEX_CUDA_OK;
  rc = gpu_scratch(p, SC_ALLOWED, n * 8, (void **)&d);
  if (rc) return rc;
  cudaError_t e = cudaMemcpyAsync(d, aSlot, n * 8, cudaMemcpyHostToDevice,
                                  p->st);
  if (e == cudaSuccess) {
    invalidate_kernel<<<(unsigned)((n + 255) / 256), 256, 0, p->st>>>(
        p->dValid, d, n, p->n);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(p->st);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "invalidate");
  return gpu_launch_rc(p, "invalidate");
}

/* xKnn, and xKnnRanges when aRange is not NULL (nRange ranges a query). */
static int knn_run(Ctx *c, const float *aQuery, size_t nQuery, size_t k,
                   size_t nCand, unsigned flags, const unsigned char *aAllowed,
                   const uint64_t *aRange, size_t nRange, annex_cuda_hit *aHit,
                   size_t *anHit, float *aFloor) {
  GpuCtx *p = &c->g;
  int rc = enter(p);
  cudaError_t e;
  size_t dpad, nHitB, nOutB, offN, offF;
  float *dQ;
  QParam *dQp;
  unsigned *dAllowed = NULL;
  unsigned char *dOut;
  int path;
  if (rc) return rc;
  if (!p->bReady) return gpu_fail(p, ANNEX_CUDA_EMPTY, "no table resident");
  if (nCand < 1 || nCand > ANNEX_CUDA_MAX_CAND) {
    return gpu_fail(p, ANNEX_CUDA_RANGE, "nCand %zu outside 1..%d", nCand,
                    ANNEX_CUDA_MAX_CAND);
  }
  if (k > nCand) {
    return gpu_fail(p, ANNEX_CUDA_RANGE, "k %zu > nCand %zu", k, nCand);
  }
  if (nQuery == 0) return ANNEX_CUDA_OK;
  if (!aQuery || !aHit || !anHit) {
    return gpu_fail(p, ANNEX_CUDA_ERROR, "NULL argument");
  }
  for (size_t i = 0; aRange && i < nQuery * nRange; i++) {
    if (aRange[2 * i] > aRange[2 * i + 1] || aRange[2 * i + 1] > p->n) {
      return gpu_fail(p, ANNEX_CUDA_RANGE, "range [%llu, %llu) outside the "
                      "%zu rows", (unsigned long long)aRange[2 * i],
                      (unsigned long long)aRange[2 * i + 1], p->n);
    }
  }
  dpad = p->nDimPad;
  nHitB = nQuery * nCand * sizeof(annex_cuda_hit);
  offN = nHitB;
  offF = offN + ((nQuery * 4 + 15) & ~(size_t)15);
  nOutB = offF + nQuery * 4;

  /* Inputs through pinned staging (one copy each way). */
  rc = host_stage(p, &c->h.pIn, &c->h.nIn, nQuery * dpad * 4);
  if (!rc) rc = host_stage(p, &c->h.pOut, &c->h.nOut, nOutB);
  if (!rc) rc = gpu_scratch(p, SC_QUERY, nQuery * dpad * 4, (void **)&dQ);
  if (!rc) rc = gpu_scratch(p, SC_QP, nQuery * sizeof(QParam), (void **)&dQp);
  if (!rc) rc = gpu_scratch(p, SC_HIT, nOutB, (void **)&dOut);
  if (!rc && aAllowed) {
    rc = gpu_scratch(p, SC_ALLOWED, ((p->n + 31) / 32 + 1) * 4,
                     (void **)&dAllowed);
  }
  if (rc) return rc;
  {
    float *h = (float *)c->h.pIn;
    if (dpad == p->nDim) {
      memcpy(h, aQuery, nQuery * dpad * 4);
    } else {
      for (size_t q = 0; q < nQuery; q++) {
        memcpy(h + q * dpad, aQuery + q * p->nDim, p->nDim * 4);
        memset(h + q * dpad + p->nDim, 0, (dpad - p->nDim) * 4);
      }
    }
  }
  e = cudaEventRecord(p->ev0, p->st);
  if (e == cudaSuccess) {
    e = cudaMemcpyAsync(dQ, c->h.pIn, nQuery * dpad * 4,
                        cudaMemcpyHostToDevice, p->st);
  }
  if (e == cudaSuccess && aAllowed) {
    e = cudaMemcpyAsync(dAllowed, aAllowed, (p->n + 7) / 8,
                        cudaMemcpyHostToDevice, p->st);
  }
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "query upload");
  qprep_kernel<<<(unsigned)((nQuery * 32 + 255) / 256), 256, 0, p->st>>>(
      (const float4 *)dQ, nQuery, (int)(dpad / 4), dQp);
  rc = gpu_launch_rc(p, "qprep");
  if (rc) return rc;

  if (aRange) {
    path = ANNEX_CUDA_PATH_SCAN;
    rc = gpu_knn_ranges(p, dQ, dQp, nQuery, (int)nCand, aRange, nRange,
                        (annex_cuda_hit *)dOut, (int *)(dOut + offN),
                        (float *)(dOut + offF));
  } else if ((flags & ANNEX_CUDA_FORCE_SCAN) ||
             (!(flags & ANNEX_CUDA_FORCE_GEMM) &&
              nQuery < ANNEX_CUDA_SCAN_BELOW)) {
    path = ANNEX_CUDA_PATH_SCAN;
    rc = gpu_knn_scan(p, dQ, dQp, nQuery, (int)nCand, dAllowed,
                      (annex_cuda_hit *)dOut, (int *)(dOut + offN),
                      (float *)(dOut + offF));
  } else {
    int bTf32 = (flags & ANNEX_CUDA_TF32) != 0;
    path = bTf32 ? ANNEX_CUDA_PATH_GEMM_TF32 : ANNEX_CUDA_PATH_GEMM_FP32;
    rc = gpu_knn_gemm(p, dQ, dQp, nQuery, (int)nCand, bTf32, dAllowed,
                      (annex_cuda_hit *)dOut, (int *)(dOut + offN),
                      (float *)(dOut + offF));
  }
  if (rc) return rc;
  p->stats.nLastRedo = 0;
  if (path == ANNEX_CUDA_PATH_GEMM_TF32 && k > 0) {
    size_t nRedo = 0;
    rc = gpu_tf32_redo(p, dQ, dQp, nQuery, (int)k, (int)nCand, dAllowed,
                       (annex_cuda_hit *)dOut, (int *)(dOut + offN),
                       (float *)(dOut + offF), &nRedo);
    if (rc) return rc;
    p->stats.nLastRedo = nRedo;
    p->stats.nRedo += nRedo;
  }
  e = cudaMemcpyAsync(c->h.pOut, dOut, nOutB, cudaMemcpyDeviceToHost, p->st);
  if (e == cudaSuccess) e = cudaEventRecord(p->ev1, p->st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(p->st);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "k-NN");
  {
    float ms = 0.f;
    if (cudaEventElapsedTime(&ms, p->ev0, p->ev1) == cudaSuccess) {
      p->stats.rLastMs = ms;
    }
  }
  {
    const unsigned char *h = (const unsigned char *)c->h.pOut;
    const int *nh = (const int *)(h + offN);
    const float *fl = (const float *)(h + offF);
    memcpy(aHit, h, nHitB);
    for (size_t q = 0; q < nQuery; q++) {
      anHit[q] = (size_t)nh[q];
      if (aFloor) aFloor[q] = fl[q];
    }
  }
  p->stats.iLastPath = path;
  p->stats.nKnnCall++;
  p->stats.nQuery += nQuery;
  return ANNEX_CUDA_OK;
}

static int x_knn(void *ctx, const float *aQuery, size_t nQuery, size_t k,
                 size_t nCand, unsigned flags, const unsigned char *aAllowed,
                 annex_cuda_hit *aHit, size_t *anHit, float *aFloor) {
  return knn_run((Ctx *)ctx, aQuery, nQuery, k, nCand, flags, aAllowed, NULL,
                 0, aHit, anHit, aFloor);
}

static int x_knn_ranges(void *ctx, const float *aQuery, size_t nQuery,
                        size_t nCand, const uint64_t *aRange, size_t nRange,
                        annex_cuda_hit *aHit, size_t *anHit, float *aFloor) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  if (nQuery > 0 && (aRange == NULL || nRange == 0)) {
    return gpu_fail(p, ANNEX_CUDA_ERROR, "xKnnRanges without ranges");
  }
  return knn_run((Ctx *)ctx, aQuery, nQuery, 0, nCand, 0, NULL, aRange,
                 nRange, aHit, anHit, aFloor);
}

static size_t x_resident(void *ctx) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  return p->nTableBytes + scratch_bytes(p) + p->nBlasWs;
}

static int x_stats(void *ctx, annex_cuda_stats *s) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  p->stats.nTableBytes = p->bReady ? p->nTableBytes : 0;
  p->stats.nRows = p->bReady ? p->n : 0;
  p->stats.nResident = x_resident(ctx);
  *s = p->stats;
  return ANNEX_CUDA_OK;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

static int x_measure(void *ctx, int eWhat, double *pValue) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  int rc = enter(p);
  float t[16];
  const int nRep = 10;
  void *a = NULL, *b = NULL, *cc = NULL;
  size_t nByte;
  cudaError_t e = cudaSuccess;
  if (rc) return rc;
  *pValue = 0;
  if (eWhat == ANNEX_CUDA_MEASURE_COPY_GBPS ||
      eWhat == ANNEX_CUDA_MEASURE_READ_GBPS) {
    nByte = (size_t)2 << 30;
    rc = gpu_malloc(p, &a, nByte, "measure");
    if (!rc) rc = gpu_malloc(p, &b, nByte, "measure");
    if (rc) goto done;
    fill_kernel<<<p->nSM * 8, 256, 0, p->st>>>((float *)a, nByte / 4, 1);
    for (int r = -3; r < nRep; r++) {
      e = cudaEventRecord(p->ev0, p->st);
      if (eWhat == ANNEX_CUDA_MEASURE_COPY_GBPS) {
        if (e == cudaSuccess) {
          e = cudaMemcpyAsync(b, a, nByte, cudaMemcpyDeviceToDevice, p->st);
        }
      } else {
        read_kernel<<<p->nSM * 8, 512, 0, p->st>>>((const float4 *)a,
                                                   nByte / 16, (float *)b);
        if (e == cudaSuccess) e = cudaGetLastError();
      }
      if (e == cudaSuccess) e = cudaEventRecord(p->ev1, p->st);
      if (e == cudaSuccess) e = cudaEventSynchronize(p->ev1);
      if (e != cudaSuccess) break;
      if (r >= 0) cudaEventElapsedTime(&t[r], p->ev0, p->ev1);
    }
    if (e != cudaSuccess) {
      rc = gpu_cuda_rc(p, e, "measure");
      goto done;
    }
    qsort(t, nRep, sizeof(float), cmp_float);
    *pValue = (eWhat == ANNEX_CUDA_MEASURE_COPY_GBPS ? 2.0 : 1.0) * nByte /
              (t[nRep / 2] * 1e-3) / 1e9;
  } else if (eWhat == ANNEX_CUDA_MEASURE_SGEMM_TFLOPS ||
             eWhat == ANNEX_CUDA_MEASURE_TF32_TFLOPS) {
    const int N = 8192;
    const float one = 1.f, zero = 0.f;
    cublasComputeType_t ct = eWhat == ANNEX_CUDA_MEASURE_TF32_TFLOPS
                                 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                 : CUBLAS_COMPUTE_32F;
    nByte = (size_t)N * N * 4;
    rc = gpu_malloc(p, &a, nByte, "measure");
    if (!rc) rc = gpu_malloc(p, &b, nByte, "measure");
    if (!rc) rc = gpu_malloc(p, &cc, nByte, "measure");
    if (rc) goto done;
    fill_kernel<<<p->nSM * 8, 256, 0, p->st>>>((float *)a, nByte / 4, 2);
    fill_kernel<<<p->nSM * 8, 256, 0, p->st>>>((float *)b, nByte / 4, 3);
    for (int r = -2; r < nRep; r++) {
      cublasStatus_t s;
      cudaEventRecord(p->ev0, p->st);
      s = cublasGemmEx(p->blas, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, a,
                       CUDA_R_32F, N, b, CUDA_R_32F, N, &zero, cc, CUDA_R_32F,
                       N, ct, CUBLAS_GEMM_DEFAULT);
      if (s != CUBLAS_STATUS_SUCCESS) {
        rc = gpu_blas_rc(p, s, "measure gemm");
        goto done;
      }
      cudaEventRecord(p->ev1, p->st);
      e = cudaEventSynchronize(p->ev1);
      if (e != cudaSuccess) {
        rc = gpu_cuda_rc(p, e, "measure");
        goto done;
      }
      if (r >= 0) cudaEventElapsedTime(&t[r], p->ev0, p->ev1);
    }
    qsort(t, nRep, sizeof(float), cmp_float);
    *pValue = 2.0 * N * (double)N * N / (t[nRep / 2] * 1e-3) / 1e12;
  } else {
    rc = gpu_fail(p, ANNEX_CUDA_ERROR, "unknown measurement %d", eWhat);
  }
done:
  (void)cudaStreamSynchronize(p->st);
  gpu_free(a);
  gpu_free(b);
  gpu_free(cc);
  return rc;
}

static int x_test_control(void *ctx, int eOp, long iArg) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  switch (eOp) {
    case ANNEX_CUDA_TEST_FAIL_ALLOC:
      p->nFailAlloc = iArg;
      return ANNEX_CUDA_OK;
    case ANNEX_CUDA_TEST_FAIL_LAUNCH:
      p->bFailLaunch = 1;
      return ANNEX_CUDA_OK;
    case ANNEX_CUDA_TEST_LOSE_DEVICE:
      p->lost = 1;
      snprintf(p->zErr, sizeof(p->zErr), "CUDA device context lost (injected)");
      return ANNEX_CUDA_OK;
    default:
      return gpu_fail(p, ANNEX_CUDA_ERROR, "unknown test op %d", eOp);
  }
}

static int x_kmeans_assign(void *ctx, const float *aX, size_t n,
                           size_t nDim, const float *aC, size_t k,
                           unsigned flags, int32_t *aAssign, float *aScore) {
  GpuCtx *p = &((Ctx *)ctx)->g;
  int rc = enter(p);
  if (rc) return rc;
  return gpu_kmeans_assign(p, aX, n, nDim, aC, k, flags, aAssign, aScore);
}

static const annex_cuda_api g_api = {
    ANNEX_CUDA_ABI_VERSION,
    ANNEX_CUDA_MAX_CAND,
    plugin_info,
    x_open,
    x_close,
    x_errmsg,
    x_device,
    x_upload_begin,
    x_upload_chunk,
    x_upload_end,
    x_invalidate,
    x_knn,
    x_resident,
    x_stats,
    x_measure,
    x_test_control,
    x_kmeans_assign,
    x_knn_ranges,
};

extern "C" __attribute__((visibility("default"))) const annex_cuda_api *
annex_cuda_plugin(void) {
  return &g_api;
}
