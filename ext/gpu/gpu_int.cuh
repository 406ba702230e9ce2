/*
** gpu_int.cuh — what the plugin's .cu files share: the context, error
** plumbing, and the device building blocks of k-selection.
**
** Candidate lists. Every path keeps, per query, a list of (device score,
** slot) pairs (Cand) and a threshold tau: a pair enters the list only when
** its score is < tau, and when the list grows too long it is cut to the
** nCand best by a block-wide radix select (block_select), after which tau is
** the nCand-th score. tau only decreases, and whenever it has a finite value
** some list (or union of lists) holds nCand pairs <= tau, so every pair ever
** left out scores >= the final nCand-th best: the basis of aFloor (see
** annex_cuda.h and margin_floor below).
*/
#ifndef ANNEX_GPU_INT_CUH
#define ANNEX_GPU_INT_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "annex_cuda.h"

/* ---------------------------------------------------------------- host */

/* Grow-only device scratch buffers kept across calls. */
enum {
  SC_QUERY,   /* nQuery x dpad queries */
  SC_QP,      /* per query QParam */
  SC_ALLOWED, /* allowed bitmap (words) */
  SC_HIT,     /* nQuery x nCand annex_cuda_hit */
  SC_NHIT,    /* nQuery int */
  SC_FLOOR,   /* nQuery float */
  SC_DOT,     /* GEMM tile: Qb x Nb floats */
  SC_DOT2,    /* the second one (GEMM of tile t+1 while filtering tile t) */
  SC_BUF,     /* GEMM: per query candidate list */
  SC_CNT,     /* GEMM: per query list length; scan: per block */
  SC_TAU,     /* GEMM: per query threshold; scan: global key */
  SC_BCAND,   /* scan: per block candidates */
  SC_GATHER,  /* scan: merged candidates */
  SC_REDO,    /* TF32 redo: count + list of queries */
  SC_Q2,      /* TF32 redo: their queries */
  SC_QP2,     /* TF32 redo: their QParams */
  SC_OUT2,    /* TF32 redo: their results */
  SC_SEG,     /* ranges: per block [start, end) of slots */
  SC_COUNT
};

struct GpuCtx {
  int iDevice;
  int nSM;
  int lost;               /* sticky: every call returns ANNEX_CUDA_LOST */
  long nFailAlloc;        /* -1, or allocations left before one fails */
  int bFailLaunch;        /* next launch check fails */
  cudaStream_t st;        /* everything, and the GEMMs */
  cudaStream_t st2;       /* GEMM path: the filters, overlapping the GEMMs */
  cudaEvent_t ev0, ev1;   /* timing of xKnn */
  cudaEvent_t evGemm[2], evFilt[2], evFork, evJoin; /* GEMM pipeline */
  cublasHandle_t blas;
  void *pBlasWs;
  size_t nBlasWs;
  char zDevName[256];
  char zErr[512];

  /* The table. */
  int bReady;             /* uploaded and queryable */
  int bBegun;             /* between UploadBegin and UploadEnd */
  int eMetric;
  size_t n, nDim, nDimPad;
  float *dX;              /* n x nDimPad, zero padded */
  float *dXn;             /* l2/ip: |x|^2; cosine: 1/|x| (0 if |x| = 0) */
  unsigned *dValid;       /* bitmap, (n+31)/32 words (+1 spare) */
  int64_t *dRowid;        /* n */
  unsigned *dXmax;        /* 1 word: max |x| over valid rows, float bits */
  unsigned char *hValid;  /* host copy of the bitmap during upload */
  float rXmax;            /* max |x| over valid rows, rounded up */
  size_t nTableBytes;
  double tUploadStart;

  void *aScratch[SC_COUNT];
  size_t anScratch[SC_COUNT];

  annex_cuda_stats stats;

  /* xKmeansAssign (kmeans.cu): vectors held between calls (KM_HOLD_X). */
  float *dKmX;            /* nKmX x nKmDim, or NULL */
  float *dKmXn;           /* |x|^2 of each */
  size_t nKmX, nKmDim;
};

/* Record an error message (printf-style) and return rc. */
int gpu_fail(GpuCtx *p, int rc, const char *zFmt, ...);

/* Map a CUDA error to a code, record "what: cuda message"; detects sticky
** errors (marking the context lost). Returns ANNEX_CUDA_OK when e==0. */
int gpu_cuda_rc(GpuCtx *p, cudaError_t e, const char *zWhat);
int gpu_blas_rc(GpuCtx *p, cublasStatus_t s, const char *zWhat);

/* Check the last launch (and the injected launch failure). */
int gpu_launch_rc(GpuCtx *p, const char *zWhat);

/* cudaMalloc with fault injection; 0 or ANNEX_CUDA_NOMEM/LOST. */
int gpu_malloc(GpuCtx *p, void **pp, size_t nByte, const char *zWhat);

/* Scratch buffer iSlot of at least nByte bytes (contents undefined). */
int gpu_scratch(GpuCtx *p, int iSlot, size_t nByte, void **pp);

/* kmeans.cu: xKmeansAssign after enter(); gpu_kmeans_release frees the held
** vectors (xClose, failures). */
int gpu_kmeans_assign(GpuCtx *p, const float *aX, size_t n, size_t nDim,
                      const float *aC, size_t k, unsigned flags,
                      int32_t *aAssign, float *aScore);
void gpu_kmeans_release(GpuCtx *p);

/* Per-query parameters computed on the device (qprep). */
struct QParam {
  float qn2;    /* |q|^2, rounded to nearest */
  float qnorm;  /* |q|, rounded up */
  float rq;     /* 1/|q| (0 if |q| = 0) */
  float pad;
};

struct Cand {
  float e;
  unsigned slot;
};

/* Entry points of scan.cu and batch.cu (queries, qp, allowed and outputs
** already on the device). */
int gpu_knn_scan(GpuCtx *p, const float *dQ, const QParam *dQp, size_t nQuery,
                 int nCand, const unsigned *dAllowed, annex_cuda_hit *dHit,
                 int *dNHit, float *dFloor);
/* The scan restricted to ranges of slots (xKnnRanges; aRange on the host,
** checked by the caller). */
int gpu_knn_ranges(GpuCtx *p, const float *dQ, const QParam *dQp,
                   size_t nQuery, int nCand, const uint64_t *aRange,
                   size_t nRange, annex_cuda_hit *dHit, int *dNHit,
                   float *dFloor);
int gpu_knn_gemm(GpuCtx *p, const float *dQ, const QParam *dQp, size_t nQuery,
                 int nCand, int bTf32, const unsigned *dAllowed,
                 annex_cuda_hit *dHit, int *dNHit, float *dFloor);

/* Tile sizes of the GEMM path for nQuery queries against n vectors
** (ANNEX_CUDA_QB / ANNEX_CUDA_NB override). */
void gpu_gemm_tiles(size_t nQuery, size_t n, size_t *pQb, size_t *pNb);

/* After a TF32 pass: recompute in fp32 the queries whose answers the device
** cannot prove certifiable for k (annex_cuda.h); *pnRedo = how many. */
int gpu_tf32_redo(GpuCtx *p, const float *dQ, const QParam *dQp,
                  size_t nQuery, int k, int nCand, const unsigned *dAllowed,
                  annex_cuda_hit *dHit, int *dNHit, float *dFloor,
                  size_t *pnRedo);

/* Dynamic shared memory limits are raised once per process. */
void gpu_scan_init_attrs(void);
void gpu_gemm_init_attrs(void);

#define GPU_DEVICE_PATH_SCAN 0
#define GPU_DEVICE_PATH_FP32 1
#define GPU_DEVICE_PATH_TF32 2

/* -------------------------------------------------------------- device */

#define GPU_INF __int_as_float(0x7f800000)

/* Order-preserving map of floats to unsigned keys (NaN never occurs in
** lists: a NaN score fails every `< tau` test). */
__device__ __forceinline__ unsigned fkey(float f) {
  unsigned u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float fkey_inv(unsigned k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ __forceinline__ int bit_set(const unsigned *a, size_t i) {
  return (a[i >> 5] >> (i & 31)) & 1u;
}

struct SelShared {
  unsigned hist[256];
  unsigned prefix, mask, want, nLess, nEq;
};

/* Block-wide: the c smallest of src[0..cnt) (cnt > c) into dst[0..c), in
** no particular order; returns the c-th smallest score. All threads of the
** block must call it; src and dst may be global or shared, not overlapping.
** Radix select on 8-bit digits, most significant first. */
__device__ __forceinline__ float block_select(const Cand *src, int cnt, int c,
                                              Cand *dst, SelShared &sh) {
  const int tid = threadIdx.x, nt = blockDim.x;
  if (tid == 0) {
    sh.prefix = 0;
    sh.mask = 0;
    sh.want = (unsigned)c;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += nt) sh.hist[i] = 0;
    __syncthreads();
    const unsigned prefix = sh.prefix, mask = sh.mask;
    /* Warp-aggregated: keys of a list mostly share their high digits, and
    ** plain shared atomics on one bin would serialise. The loop bound is
    ** uniform across the block so that whole warps take part. */
    for (int i0 = 0; i0 < cnt; i0 += nt) {
      const int i = i0 + tid;
      unsigned bin = 256u;
      if (i < cnt) {
        unsigned k = fkey(src[i].e);
        if ((k & mask) == prefix) bin = (k >> shift) & 255u;
      }
      const unsigned peers = __match_any_sync(0xffffffffu, bin);
      if (bin < 256u && (tid & 31) == __ffs(peers) - 1) {
        atomicAdd(&sh.hist[bin], (unsigned)__popc(peers));
      }
    }
    __syncthreads();
    if (tid < 32) {
      const unsigned want = sh.want;
      unsigned h[8], sum = 0;
#pragma unroll
      for (int t = 0; t < 8; t++) {
        h[t] = sh.hist[tid * 8 + t];
        sum += h[t];
      }
      unsigned incl = sum;
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        unsigned v = __shfl_up_sync(0xffffffffu, incl, off);
        if (tid >= off) incl += v;
      }
      const unsigned excl = incl - sum;
      __syncwarp(); /* every lane has read sh.want before one writes it */
      if (excl < want && want <= incl) {
        unsigned acc = excl;
#pragma unroll
        for (int t = 0; t < 8; t++) {
          if (acc + h[t] >= want) {
            sh.want = want - acc;
            sh.prefix = prefix | ((unsigned)(tid * 8 + t) << shift);
            sh.mask = mask | (255u << shift);
            break;
          }
          acc += h[t];
        }
      }
    }
    __syncthreads();
  }
  if (tid == 0) {
    sh.nLess = 0;
    sh.nEq = 0;
  }
  __syncthreads();
  const unsigned kth = sh.prefix, want = sh.want;
  const unsigned nLess = (unsigned)c - want;
  for (int i = tid; i < cnt; i += nt) {
    Cand x = src[i];
    unsigned k = fkey(x.e);
    if (k < kth) {
      dst[atomicAdd(&sh.nLess, 1u)] = x;
    } else if (k == kth) {
      unsigned j = atomicAdd(&sh.nEq, 1u);
      if (j < want) dst[nLess + j] = x;
    }
  }
  __syncthreads();
  return fkey_inv(kth);
}

/* Unit roundoff of fp32 and the bound's pieces (see annex_cuda.h). */
#define GPU_U 5.9604644775390625e-8 /* 2^-24 */

/* Rigorous lower bound on the CPU score of every left-out vector, given
** that every left-out vector has device score >= basis. qnorm = |q| and
** xmax = max |x| (both rounded up). Computed in double, rounded down. */
__device__ __forceinline__ float margin_floor(int eMetric, int ePath,
                                              float basis, float qnorm,
                                              float xmax, int nDim) {
  if (!(basis < GPU_INF)) return GPU_INF;
  const double u = GPU_U, d = (double)nDim;
  const double gc = (d + 4.0) * u; /* CPU kernel */
  double gd;                       /* device dot product, relative |q||x| */
  if (ePath == GPU_DEVICE_PATH_TF32) {
    gd = 1.0 / 512.0 + 1.0 / 524288.0 + (d + 4.0) * (1.0 / 2097152.0);
  } else {
    gd = (d + 4.0) * u;
  }
  const double b = (double)basis, qn = (double)qnorm, xm = (double)xmax;
  double v;
  if (eMetric == ANNEX_CUDA_L2) {
    if (ePath == GPU_DEVICE_PATH_SCAN) {
      /* direct sums of non-negative terms: relative bounds on both sides */
      v = b * (1.0 - 2.5 * gc) - 1e-30;
    } else {
      double s = qn + xm;
      v = b - 1.25 * (2.0 * gd * qn * xm + (gc + 8.0 * u) * s * s) - 1e-30;
    }
  } else if (eMetric == ANNEX_CUDA_IP) {
    v = b - 1.25 * (gd + gc + 4.0 * u) * qn * xm - 1e-30;
  } else {
    v = b - 1.25 * (gd + 2.0 * gc + 8.0 * u) - 1e-7;
  }
  return __double2float_rd(v);
}

/* Sorted-output entry. */
struct SortHit {
  float s;
  unsigned slot;
  long long rowid;
};

__device__ __forceinline__ bool hit_less(const SortHit &a, const SortHit &b) {
  return a.s < b.s || (a.s == b.s && a.rowid < b.rowid);
}

/* Block-wide: finish one query. cand[0..cnt) (cnt <= nCand) are its
** candidates (shared memory); sh is scratch of >= pow2(cnt) SortHits.
** Re-scores each candidate by the direct formula, sorts by (score, rowid),
** writes hits, count and floor. */
template <int METRIC>
__device__ void finish_query(const Cand *cand, int cnt, const float4 *X,
                             int dpad4, const int64_t *rowid, const float4 *q,
                             SortHit *sh, annex_cuda_hit *out, int *pnOut,
                             float *pFloor, float floorv) {
  const int tid = threadIdx.x, nt = blockDim.x;
  const int lane = tid & 31, warp = tid >> 5, nw = nt >> 5;
  int P = 1;
  while (P < cnt) P <<= 1;
  for (int i = warp; i < cnt; i += nw) {
    const unsigned slot = cand[i].slot;
    const float4 *x = X + (size_t)slot * dpad4;
    float a = 0.f, xx = 0.f, qq = 0.f;
    for (int j = lane; j < dpad4; j += 32) {
      float4 xv = x[j], qv = q[j];
      if (METRIC == ANNEX_CUDA_L2) {
        float t0 = xv.x - qv.x, t1 = xv.y - qv.y, t2 = xv.z - qv.z,
              t3 = xv.w - qv.w;
        a = fmaf(t0, t0, a);
        a = fmaf(t1, t1, a);
        a = fmaf(t2, t2, a);
        a = fmaf(t3, t3, a);
      } else {
        a = fmaf(xv.x, qv.x, a);
        a = fmaf(xv.y, qv.y, a);
        a = fmaf(xv.z, qv.z, a);
        a = fmaf(xv.w, qv.w, a);
        if (METRIC == ANNEX_CUDA_COSINE) {
          xx = fmaf(xv.x, xv.x, xx);
          xx = fmaf(xv.y, xv.y, xx);
          xx = fmaf(xv.z, xv.z, xx);
          xx = fmaf(xv.w, xv.w, xx);
          qq = fmaf(qv.x, qv.x, qq);
          qq = fmaf(qv.y, qv.y, qq);
          qq = fmaf(qv.z, qv.z, qq);
          qq = fmaf(qv.w, qv.w, qq);
        }
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      a += __shfl_xor_sync(0xffffffffu, a, off);
      if (METRIC == ANNEX_CUDA_COSINE) {
        xx += __shfl_xor_sync(0xffffffffu, xx, off);
        qq += __shfl_xor_sync(0xffffffffu, qq, off);
      }
    }
    if (lane == 0) {
      float s;
      if (METRIC == ANNEX_CUDA_L2) {
        s = a;
      } else if (METRIC == ANNEX_CUDA_IP) {
        s = -a;
      } else {
        s = (xx == 0.f || qq == 0.f)
                ? 1.0f
                : (float)(1.0 - (double)a / sqrt((double)xx * (double)qq));
      }
      sh[i].s = s;
      sh[i].slot = slot;
      sh[i].rowid = (long long)rowid[slot];
    }
  }
  for (int i = cnt + tid; i < P; i += nt) {
    sh[i].s = GPU_INF;
    sh[i].slot = 0xffffffffu;
    sh[i].rowid = 0x7fffffffffffffffLL;
  }
  __syncthreads();
  for (int k = 2; k <= P; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = tid; i < P; i += nt) {
        int ixj = i ^ j;
        if (ixj > i) {
          bool up = (i & k) == 0;
          SortHit a = sh[i], b = sh[ixj];
          if (hit_less(b, a) == up) {
            sh[i] = b;
            sh[ixj] = a;
          }
        }
      }
      __syncthreads();
    }
  }
  for (int i = tid; i < cnt; i += nt) {
    annex_cuda_hit h;
    h.rowid = sh[i].rowid;
    h.slot = sh[i].slot;
    h.score = sh[i].s;
    h.reserved = 0.f;
    out[i] = h;
  }
  if (tid == 0) {
    *pnOut = cnt;
    *pFloor = floorv;
  }
}

/* Block-wide max of v over the block (result valid in all threads). */
__device__ __forceinline__ float block_max(float v, float *red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int off = 16; off > 0; off >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float w = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : -GPU_INF;
    for (int off = 16; off > 0; off >>= 1)
      w = fmaxf(w, __shfl_xor_sync(0xffffffffu, w, off));
    if (threadIdx.x == 0) red[0] = w;
  }
  __syncthreads();
  float r = red[0];
  __syncthreads();
  return r;
}

/* Shared memory that finish_query needs for cnt <= nCand candidates. */
static inline size_t finish_smem(int nCand) {
  size_t P = 1;
  while (P < (size_t)nCand) P <<= 1;
  return P * sizeof(SortHit);
}

#endif /* ANNEX_GPU_INT_CUH */
