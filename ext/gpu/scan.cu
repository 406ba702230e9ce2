/*
** scan.cu — one query: a streaming scan of the table fused with
** k-selection, then a one-block merge.
**
** scan_kernel: a grid of about one wave of 256-thread blocks; each block
** owns a contiguous range of vectors. A warp scores 4 vectors at a time
** (each lane reads 16-byte pieces of all four, so each vector is one
** coalesced 16*dpad4-byte read; partial sums meet by shuffles), and appends
** (score, slot) to the block's candidate list in shared memory when the
** score is below the block's threshold. Every 128 vectors the block cuts its
** list back to nCand by radix select when it could overflow (or to seed the
** threshold), publishes its threshold to a global atomicMin, and adopts the
** global one when smaller: the whole grid soon filters with nearly the final
** threshold, so the lists stay short and the scan is bandwidth-bound.
**
** scan_merge: one block gathers the blocks' lists (scores <= the global
** threshold), selects the nCand best, re-scores them directly, sorts them
** by (score, rowid) and writes them with the floor (gpu_int.cuh).
**
** Ranges (xKnnRanges, an IVF list scan): the same kernels, each block
** given its [start, end) piece of the query's ranges by a segment array
** instead of an equal share of the table; ranges are cut into pieces of at
** most RANGE_PIECE slots so that long lists still spread over the SMs.
*/
#include "gpu_int.cuh"

#include <stdlib.h>

#define SCAN_NT 256
#define SCAN_V 4
#define SCAN_R 4
#define SCAN_ROUND ((SCAN_NT / 32) * SCAN_V) /* vectors per round: 32 */
#define SCAN_CHECK (SCAN_ROUND * SCAN_R)     /* vectors between checks */
#define MERGE_NT 1024
#define RANGE_PIECE 1024 /* most slots one block scans of a range */

static int scan_cap(int c) { return c + (c > 512 ? c : 512) + SCAN_CHECK; }

static size_t scan_smem(int c) {
  return (size_t)(scan_cap(c) + c) * sizeof(Cand);
}

static size_t merge_smem(int c) {
  size_t a = ((size_t)c * sizeof(Cand) + 15) & ~(size_t)15;
  return a + finish_smem(c);
}

template <int METRIC>
__global__ void __launch_bounds__(SCAN_NT)
    scan_kernel(const float4 *__restrict__ X, const float *__restrict__ xn,
                const unsigned *__restrict__ valid,
                const unsigned *__restrict__ allowed, size_t n, int dpad4,
                const float4 *__restrict__ q, const QParam *__restrict__ qp,
                int c, int cap, size_t per,
                const unsigned long long *__restrict__ seg,
                Cand *__restrict__ bcand, int *__restrict__ bcnt,
                unsigned *gtau) {
  extern __shared__ __align__(16) unsigned char smem[];
  Cand *buf = (Cand *)smem;
  Cand *tmp = buf + cap;
  __shared__ SelShared sel;
  __shared__ int sCnt;
  __shared__ float sTau;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  /* the block's slots: its piece of the ranges, or its share of all */
  const size_t b0 = seg ? (size_t)seg[2 * blockIdx.x] : (size_t)blockIdx.x * per;
  const size_t b1 = seg   ? (size_t)seg[2 * blockIdx.x + 1]
                    : b0 + per < n ? b0 + per
                                   : n;
  const float rq = qp->rq;
  if (tid == 0) {
    sCnt = 0;
    sTau = GPU_INF;
  }
  __syncthreads();
  for (size_t base = b0; base < b1; base += SCAN_CHECK) {
#pragma unroll 1
    for (int r = 0; r < SCAN_R; r++) {
      const size_t v0 = base + (size_t)(r * (SCAN_NT / 32) + warp) * SCAN_V;
      if (v0 >= b1) break; /* warp-uniform */
      float acc[SCAN_V];
#pragma unroll
      for (int u = 0; u < SCAN_V; u++) acc[u] = 0.f;
      const float4 *xb = X + v0 * dpad4;
      const int nu = b1 - v0 < SCAN_V ? (int)(b1 - v0) : SCAN_V;
      for (int j = lane; j < dpad4; j += 32) {
        const float4 qv = q[j];
        float4 xv[SCAN_V];
#pragma unroll
        for (int u = 0; u < SCAN_V; u++) {
          if (u < nu) xv[u] = __ldg(xb + (size_t)u * dpad4 + j);
        }
#pragma unroll
        for (int u = 0; u < SCAN_V; u++) {
          if (u < nu) {
            if (METRIC == ANNEX_CUDA_L2) {
              float t0 = xv[u].x - qv.x, t1 = xv[u].y - qv.y,
                    t2 = xv[u].z - qv.z, t3 = xv[u].w - qv.w;
              acc[u] = fmaf(t0, t0, acc[u]);
              acc[u] = fmaf(t1, t1, acc[u]);
              acc[u] = fmaf(t2, t2, acc[u]);
              acc[u] = fmaf(t3, t3, acc[u]);
            } else {
              acc[u] = fmaf(xv[u].x, qv.x, acc[u]);
              acc[u] = fmaf(xv[u].y, qv.y, acc[u]);
              acc[u] = fmaf(xv[u].z, qv.z, acc[u]);
              acc[u] = fmaf(xv[u].w, qv.w, acc[u]);
            }
          }
        }
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) {
#pragma unroll
        for (int u = 0; u < SCAN_V; u++) {
          acc[u] += __shfl_xor_sync(0xffffffffu, acc[u], off);
        }
      }
      float a = acc[0];
#pragma unroll
      for (int u = 1; u < SCAN_V; u++) {
        if (lane == u) a = acc[u];
      }
      if (lane < nu) {
        const size_t v = v0 + lane;
        float e;
        if (METRIC == ANNEX_CUDA_L2) {
          e = a;
        } else if (METRIC == ANNEX_CUDA_IP) {
          e = -a;
        } else {
          e = 1.f - a * rq * xn[v];
        }
        if (e < sTau && bit_set(valid, v) && (!allowed || bit_set(allowed, v))) {
          int pos = atomicAdd(&sCnt, 1);
          buf[pos].e = e;
          buf[pos].slot = (unsigned)v;
        }
      }
    }
    __syncthreads();
    const int cnt = sCnt;
    if (cnt > cap - SCAN_CHECK || (sTau == GPU_INF && cnt > c)) {
      float kth = block_select(buf, cnt, c, tmp, sel);
      for (int i = tid; i < c; i += SCAN_NT) buf[i] = tmp[i];
      if (tid == 0) {
        sCnt = c;
        sTau = kth;
        atomicMin(gtau, fkey(kth));
      }
    }
    if (tid == 0) {
      unsigned g = *(volatile unsigned *)gtau;
      if (g != 0xffffffffu) {
        float gt = fkey_inv(g);
        if (gt < sTau) sTau = gt;
      }
    }
    __syncthreads();
  }
  const int cnt = sCnt;
  Cand *out = bcand + (size_t)blockIdx.x * c;
  if (cnt > c) {
    float kth = block_select(buf, cnt, c, out, sel);
    if (tid == 0) {
      bcnt[blockIdx.x] = c;
      atomicMin(gtau, fkey(kth));
    }
  } else {
    for (int i = tid; i < cnt; i += SCAN_NT) out[i] = buf[i];
    if (tid == 0) bcnt[blockIdx.x] = cnt;
  }
}

template <int METRIC>
__global__ void __launch_bounds__(MERGE_NT)
    scan_merge(const Cand *__restrict__ bcand, const int *__restrict__ bcnt,
               int nBlock, int c, const unsigned *gtau, Cand *gath,
               const float4 *__restrict__ X, int dpad4,
               const int64_t *__restrict__ rowid, const float4 *__restrict__ q,
               const QParam *__restrict__ qp, float xmax, int nDim,
               annex_cuda_hit *out, int *nOut, float *pFloor) {
  extern __shared__ __align__(16) unsigned char smem[];
  Cand *cand = (Cand *)smem;
  SortHit *sh = (SortHit *)(smem + (((size_t)c * sizeof(Cand) + 15) & ~15));
  __shared__ SelShared sel;
  __shared__ unsigned sTotal;
  __shared__ float red[32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const unsigned gk = *gtau;
  const bool tauSet = gk != 0xffffffffu;
  const float tg = tauSet ? fkey_inv(gk) : GPU_INF;
  if (tid == 0) sTotal = 0;
  __syncthreads();
  for (int b = warp; b < nBlock; b += MERGE_NT / 32) {
    const int cnt = bcnt[b];
    for (int i = lane; i < cnt; i += 32) {
      Cand x = bcand[(size_t)b * c + i];
      if (x.e <= tg) gath[atomicAdd(&sTotal, 1u)] = x;
    }
  }
  __syncthreads();
  const int total = (int)sTotal;
  int n;
  if (total > c) {
    block_select(gath, total, c, cand, sel);
    n = c;
  } else {
    for (int i = tid; i < total; i += MERGE_NT) cand[i] = gath[i];
    n = total;
  }
  __syncthreads();
  float floorv = GPU_INF;
  if (tauSet || total > c) {
    float m = -GPU_INF;
    for (int i = tid; i < n; i += MERGE_NT) m = fmaxf(m, cand[i].e);
    m = block_max(m, red);
    floorv = margin_floor(METRIC, GPU_DEVICE_PATH_SCAN, m, qp->qnorm, xmax,
                          nDim);
  }
  finish_query<METRIC>(cand, n, X, dpad4, rowid, q, sh, out, nOut, pFloor,
                       floorv);
}

template <int METRIC>
static void set_attrs(void) {
  cudaFuncSetAttribute(scan_kernel<METRIC>,
                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                       (int)scan_smem(ANNEX_CUDA_MAX_CAND));
  cudaFuncSetAttribute(scan_merge<METRIC>,
                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                       (int)merge_smem(ANNEX_CUDA_MAX_CAND));
}

void gpu_scan_init_attrs(void) {
  set_attrs<ANNEX_CUDA_L2>();
  set_attrs<ANNEX_CUDA_IP>();
  set_attrs<ANNEX_CUDA_COSINE>();
}

template <int METRIC>
static int scan_all(GpuCtx *p, const float *dQ, const QParam *dQp,
                    size_t nQuery, int c, const unsigned *dAllowed,
                    annex_cuda_hit *dHit, int *dNHit, float *dFloor) {
  int rc, nPerSM = 0, nBlock;
  size_t per, smem = scan_smem(c);
  Cand *bcand, *gath;
  int *bcnt;
  unsigned *gtau;
  const int dpad4 = (int)(p->nDimPad / 4);
  cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &nPerSM, scan_kernel<METRIC>, SCAN_NT, smem);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "occupancy");
  if (nPerSM < 1) nPerSM = 1;
  nBlock = p->nSM * nPerSM;
  {
    size_t want = (p->n + SCAN_CHECK - 1) / SCAN_CHECK;
    if (want < (size_t)nBlock) nBlock = want > 0 ? (int)want : 1;
  }
  per = (p->n + nBlock - 1) / nBlock;
  rc = gpu_scratch(p, SC_BCAND, (size_t)nBlock * c * sizeof(Cand),
                   (void **)&bcand);
  if (!rc) rc = gpu_scratch(p, SC_GATHER, (size_t)nBlock * c * sizeof(Cand),
                            (void **)&gath);
  if (!rc) rc = gpu_scratch(p, SC_CNT, (size_t)nBlock * sizeof(int),
                            (void **)&bcnt);
  if (!rc) rc = gpu_scratch(p, SC_TAU, nQuery * sizeof(unsigned),
                            (void **)&gtau);
  if (rc) return rc;
  e = cudaMemsetAsync(gtau, 0xff, nQuery * sizeof(unsigned), p->st);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "memset");
  for (size_t qi = 0; qi < nQuery; qi++) {
    const float4 *q = (const float4 *)(dQ + qi * p->nDimPad);
    scan_kernel<METRIC><<<nBlock, SCAN_NT, smem, p->st>>>(
        (const float4 *)p->dX, p->dXn, p->dValid, dAllowed, p->n, dpad4, q,
        dQp + qi, c, scan_cap(c), per, NULL, bcand, bcnt, gtau + qi);
    rc = gpu_launch_rc(p, "scan");
    if (rc) return rc;
    scan_merge<METRIC><<<1, MERGE_NT, merge_smem(c), p->st>>>(
        bcand, bcnt, nBlock, c, gtau + qi, gath, (const float4 *)p->dX, dpad4,
        p->dRowid, q, dQp + qi, p->rXmax, (int)p->nDim, dHit + qi * c,
        dNHit + qi, dFloor + qi);
    rc = gpu_launch_rc(p, "scan merge");
    if (rc) return rc;
  }
  return ANNEX_CUDA_OK;
}

int gpu_knn_scan(GpuCtx *p, const float *dQ, const QParam *dQp, size_t nQuery,
                 int nCand, const unsigned *dAllowed, annex_cuda_hit *dHit,
                 int *dNHit, float *dFloor) {
  switch (p->eMetric) {
    case ANNEX_CUDA_L2:
      return scan_all<ANNEX_CUDA_L2>(p, dQ, dQp, nQuery, nCand, dAllowed, dHit,
                                     dNHit, dFloor);
    case ANNEX_CUDA_IP:
      return scan_all<ANNEX_CUDA_IP>(p, dQ, dQp, nQuery, nCand, dAllowed, dHit,
                                     dNHit, dFloor);
    default:
      return scan_all<ANNEX_CUDA_COSINE>(p, dQ, dQp, nQuery, nCand, dAllowed,
                                         dHit, dNHit, dFloor);
  }
}

/* Ranges *****************************************************************/

/* Cut query qi's ranges into pieces of at most RANGE_PIECE slots, appended
** to aSeg (start, end pairs); returns how many. */
static size_t range_pieces(const uint64_t *aRange, size_t nRange,
                           unsigned long long *aSeg) {
  size_t n = 0;
  for (size_t r = 0; r < nRange; r++) {
    for (uint64_t a = aRange[2 * r]; a < aRange[2 * r + 1]; a += RANGE_PIECE) {
      uint64_t b = a + RANGE_PIECE;
      aSeg[2 * n] = a;
      aSeg[2 * n + 1] = b < aRange[2 * r + 1] ? b : aRange[2 * r + 1];
      n++;
    }
  }
  return n;
}

template <int METRIC>
static int ranges_all(GpuCtx *p, const float *dQ, const QParam *dQp,
                      size_t nQuery, int c, const uint64_t *aRange,
                      size_t nRange, annex_cuda_hit *dHit, int *dNHit,
                      float *dFloor) {
  const int dpad4 = (int)(p->nDimPad / 4);
  size_t nPiece = 0, nMax = 0;
  size_t *aFirst = (size_t *)malloc(sizeof(size_t) * (nQuery + 1));
  unsigned long long *aSeg = NULL, *dSeg;
  Cand *bcand, *gath;
  int *bcnt, rc;
  unsigned *gtau;
  cudaError_t e;
  if (aFirst == NULL) return gpu_fail(p, ANNEX_CUDA_NOMEM, "host memory");
  for (size_t qi = 0; qi < nQuery; qi++) { /* count the pieces */
    size_t m = 0;
    for (size_t r = 0; r < nRange; r++) {
      const uint64_t *g = aRange + 2 * (qi * nRange + r);
      m += (size_t)((g[1] - g[0] + RANGE_PIECE - 1) / RANGE_PIECE);
    }
    aFirst[qi] = nPiece;
    nPiece += m;
    if (m > nMax) nMax = m;
  }
  aFirst[nQuery] = nPiece;
  aSeg = (unsigned long long *)malloc(sizeof(*aSeg) * 2 * (nPiece + 1));
  if (aSeg == NULL) {
    free(aFirst);
    return gpu_fail(p, ANNEX_CUDA_NOMEM, "host memory");
  }
  for (size_t qi = 0; qi < nQuery; qi++) {
    range_pieces(aRange + 2 * qi * nRange, nRange, aSeg + 2 * aFirst[qi]);
  }
  if (nMax == 0) nMax = 1;
  rc = gpu_scratch(p, SC_SEG, sizeof(*aSeg) * 2 * (nPiece + 1), (void **)&dSeg);
  if (!rc) rc = gpu_scratch(p, SC_BCAND, nMax * c * sizeof(Cand), (void **)&bcand);
  if (!rc) rc = gpu_scratch(p, SC_GATHER, nMax * c * sizeof(Cand), (void **)&gath);
  if (!rc) rc = gpu_scratch(p, SC_CNT, nMax * sizeof(int), (void **)&bcnt);
  if (!rc) rc = gpu_scratch(p, SC_TAU, nQuery * sizeof(unsigned), (void **)&gtau);
  if (!rc) {
    e = cudaMemcpyAsync(dSeg, aSeg, sizeof(*aSeg) * 2 * (nPiece + 1),
                        cudaMemcpyHostToDevice, p->st);
    if (e == cudaSuccess) {
      e = cudaMemsetAsync(gtau, 0xff, nQuery * sizeof(unsigned), p->st);
    }
    /* the pageable copy must finish before aSeg is freed */
    if (e == cudaSuccess) e = cudaStreamSynchronize(p->st);
    if (e != cudaSuccess) rc = gpu_cuda_rc(p, e, "ranges upload");
  }
  free(aSeg);
  for (size_t qi = 0; !rc && qi < nQuery; qi++) {
    const float4 *q = (const float4 *)(dQ + qi * p->nDimPad);
    const int nBlock = (int)(aFirst[qi + 1] - aFirst[qi]);
    if (nBlock > 0) {
      scan_kernel<METRIC><<<nBlock, SCAN_NT, scan_smem(c), p->st>>>(
          (const float4 *)p->dX, p->dXn, p->dValid, NULL, p->n, dpad4, q,
          dQp + qi, c, scan_cap(c), 0, dSeg + 2 * aFirst[qi], bcand, bcnt,
          gtau + qi);
      rc = gpu_launch_rc(p, "ranges scan");
      if (rc) break;
    }
    /* with no piece the merge writes an empty answer and floor +inf */
    scan_merge<METRIC><<<1, MERGE_NT, merge_smem(c), p->st>>>(
        bcand, bcnt, nBlock, c, gtau + qi, gath, (const float4 *)p->dX, dpad4,
        p->dRowid, q, dQp + qi, p->rXmax, (int)p->nDim, dHit + qi * c,
        dNHit + qi, dFloor + qi);
    rc = gpu_launch_rc(p, "ranges merge");
  }
  free(aFirst);
  return rc;
}

int gpu_knn_ranges(GpuCtx *p, const float *dQ, const QParam *dQp,
                   size_t nQuery, int nCand, const uint64_t *aRange,
                   size_t nRange, annex_cuda_hit *dHit, int *dNHit,
                   float *dFloor) {
  switch (p->eMetric) {
    case ANNEX_CUDA_L2:
      return ranges_all<ANNEX_CUDA_L2>(p, dQ, dQp, nQuery, nCand, aRange,
                                       nRange, dHit, dNHit, dFloor);
    case ANNEX_CUDA_IP:
      return ranges_all<ANNEX_CUDA_IP>(p, dQ, dQp, nQuery, nCand, aRange,
                                       nRange, dHit, dNHit, dFloor);
    default:
      return ranges_all<ANNEX_CUDA_COSINE>(p, dQ, dQp, nQuery, nCand, aRange,
                                           nRange, dHit, dNHit, dFloor);
  }
}
