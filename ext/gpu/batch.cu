/*
** batch.cu — many queries: dot products by cuBLAS over tiles, followed by a
** filtering / selection kernel per tile.
**
** The queries are cut into blocks of Qb and the table into tiles of Nb
** vectors. For each (query block, tile): one cublasGemmEx (fp32, or TF32
** tensor cores with ANNEX_CUDA_TF32) writes the Qb x Nb dot products to a
** scratch tile small enough to stay mostly in L2; then gemm_filter, one
** block per query, turns each dot product into the expanded score
** (|q|^2 + |x|^2 - 2 q.x, -q.x, or 1 - q.x/(|q||x|)), and appends the pairs
** below the query's threshold to its candidate list in global memory (room:
** nCand + 2 Nb, so a tile can never overflow it). When the list could
** overflow on the next tile (or to seed the threshold after the first), the
** same block cuts it back to nCand by radix select and lowers the
** threshold. After the last tile, gemm_finalize cuts each list to nCand,
** re-scores the candidates directly in fp32, sorts them and writes them with
** the floor (gpu_int.cuh).
*/
#include <stdlib.h>

#include "gpu_int.cuh"

#define FILT_NT 256
#define FIN_NT 256

/* Queries per block: all of a batch up to 16384 (the table is then read
** once). Tile width: about 80M dot products a tile (320 MB; 10000 x 8192
** was the best of the shapes tried on the H200, see RESULTS.md), a
** multiple of 1024 between 4096 and 65536 vectors, so that small batches
** need few launches. */
void gpu_gemm_tiles(size_t nQuery, size_t n, size_t *pQb, size_t *pNb) {
  const char *z;
  size_t qb = 16384, nb, nQB, nMax = (n + 31) & ~(size_t)31;
  if ((z = getenv("ANNEX_CUDA_QB")) && atol(z) > 0) qb = (size_t)atol(z);
  if (nQuery == 0) nQuery = 1;
  if (qb > nQuery) qb = nQuery;
  nQB = (nQuery + qb - 1) / qb;
  qb = (nQuery + nQB - 1) / nQB; /* balanced blocks */
  nb = ((size_t)83886080 / qb) & ~(size_t)1023;
  if (nb < 4096) nb = 4096;
  if (nb > 65536) nb = 65536;
  if ((z = getenv("ANNEX_CUDA_NB")) && atol(z) > 0) {
    nb = ((size_t)atol(z) + 31) & ~(size_t)31;
  }
  if (nb > nMax) nb = nMax;
  if (nb == 0) nb = 32;
  *pQb = qb;
  *pNb = nb;
}

static size_t fin_smem(int c) {
  return (((size_t)c * sizeof(Cand) + 15) & ~(size_t)15) + finish_smem(c);
}

__global__ void gemm_init(int *cnt, float *tau, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    cnt[i] = 0;
    tau[i] = GPU_INF;
  }
}

template <int METRIC>
__device__ __forceinline__ float expanded(float dot, float qa, float qm,
                                          float x) {
  if (METRIC == ANNEX_CUDA_L2) return fmaf(-2.f, dot, qa + x);
  if (METRIC == ANNEX_CUDA_IP) return -dot;
  return 1.f - dot * qm * x;
}

/* One block per query row of the tile. */
template <int METRIC>
__global__ void __launch_bounds__(FILT_NT)
    gemm_filter(const float *__restrict__ D, int ldd, int nb, size_t n0,
                const float *__restrict__ xn,
                const unsigned *__restrict__ valid,
                const unsigned *__restrict__ allowed,
                const QParam *__restrict__ qp, Cand *__restrict__ buf, int cap,
                int *__restrict__ cnt, float *__restrict__ tau, int c,
                int Nb) {
  extern __shared__ __align__(16) unsigned char smem[];
  Cand *tmp = (Cand *)smem;
  __shared__ SelShared sel;
  __shared__ int sCnt;
  const int r = blockIdx.x, tid = threadIdx.x, lane = tid & 31;
  const float4 *row = (const float4 *)(D + (size_t)r * ldd);
  Cand *b = buf + (size_t)r * cap;
  const float t = tau[r];
  const QParam P = qp[r];
  const float qa = P.qn2, qm = P.rq;
  if (tid == 0) sCnt = cnt[r];
  __syncthreads();
  const int nb4 = nb >> 2;
  for (int base = 0; base < nb4; base += FILT_NT) {
    const int j4 = base + tid;
    float ev[4];
    unsigned ok = 0;
    if (j4 < nb4) {
      const float4 d = row[j4];
      const size_t s = n0 + 4 * (size_t)j4;
      unsigned w = valid[s >> 5];
      if (allowed) w &= allowed[s >> 5];
      w = (w >> (s & 31)) & 0xfu;
      if (w) {
        const float4 x = *(const float4 *)(xn + s);
        ev[0] = expanded<METRIC>(d.x, qa, qm, x.x);
        ev[1] = expanded<METRIC>(d.y, qa, qm, x.y);
        ev[2] = expanded<METRIC>(d.z, qa, qm, x.z);
        ev[3] = expanded<METRIC>(d.w, qa, qm, x.w);
#pragma unroll
        for (int u = 0; u < 4; u++) {
          if (((w >> u) & 1u) && ev[u] < t) ok |= 1u << u;
        }
      }
    }
    /* Warp-aggregated append: one shared atomic per warp with survivors. */
    const unsigned any = __ballot_sync(0xffffffffu, ok != 0);
    if (any) {
      const int mine = __popc(ok);
      int incl = mine;
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        int v = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += v;
      }
      int basePos = 0;
      if (lane == 31) basePos = atomicAdd(&sCnt, incl);
      basePos = __shfl_sync(0xffffffffu, basePos, 31);
      int pos = basePos + incl - mine;
      const unsigned s0 = (unsigned)(n0 + 4 * (size_t)j4);
#pragma unroll
      for (int u = 0; u < 4; u++) {
        if ((ok >> u) & 1u) {
          b[pos].e = ev[u];
          b[pos].slot = s0 + u;
          pos++;
        }
      }
    }
  }
  /* Tail of a tile whose width is not a multiple of 4. */
  for (int j = nb4 * 4 + tid; j < nb; j += FILT_NT) {
    const size_t s = n0 + j;
    if (bit_set(valid, s) && (!allowed || bit_set(allowed, s))) {
      float e = expanded<METRIC>(D[(size_t)r * ldd + j], qa, qm, xn[s]);
      if (e < t) {
        int pos = atomicAdd(&sCnt, 1);
        b[pos].e = e;
        b[pos].slot = (unsigned)s;
      }
    }
  }
  __syncthreads();
  const int cc = sCnt;
  if (cc > cap - Nb || (t == GPU_INF && cc > c)) {
    float kth = block_select(b, cc, c, tmp, sel);
    for (int i = tid; i < c; i += FILT_NT) b[i] = tmp[i];
    if (tid == 0) {
      cnt[r] = c;
      tau[r] = kth;
    }
  } else if (tid == 0) {
    cnt[r] = cc;
  }
}

template <int METRIC>
__global__ void __launch_bounds__(FIN_NT)
    gemm_finalize(const Cand *__restrict__ buf, int cap,
                  const int *__restrict__ cnt, const float *__restrict__ tau,
                  int c, int ePath, const float4 *__restrict__ X, int dpad4,
                  const int64_t *__restrict__ rowid,
                  const float4 *__restrict__ Q, const QParam *__restrict__ qp,
                  float xmax, int nDim, annex_cuda_hit *out, int *nOut,
                  float *pFloor) {
  extern __shared__ __align__(16) unsigned char smem[];
  Cand *cand = (Cand *)smem;
  SortHit *sh = (SortHit *)(smem + (((size_t)c * sizeof(Cand) + 15) & ~15));
  __shared__ SelShared sel;
  __shared__ float red[32];
  const int r = blockIdx.x, tid = threadIdx.x;
  const Cand *b = buf + (size_t)r * cap;
  const int cc = cnt[r];
  const bool tauSet = tau[r] < GPU_INF;
  int n;
  if (cc > c) {
    block_select(b, cc, c, cand, sel);
    n = c;
  } else {
    for (int i = tid; i < cc; i += FIN_NT) cand[i] = b[i];
    n = cc;
  }
  __syncthreads();
  float floorv = GPU_INF;
  if (tauSet || cc > c) {
    float m = -GPU_INF;
    for (int i = tid; i < n; i += FIN_NT) m = fmaxf(m, cand[i].e);
    m = block_max(m, red);
    floorv = margin_floor(METRIC, ePath, m, qp[r].qnorm, xmax, nDim);
  }
  finish_query<METRIC>(cand, n, X, dpad4, rowid, Q + (size_t)r * dpad4, sh,
                       out + (size_t)r * c, nOut + r, pFloor + r, floorv);
}

template <int METRIC>
static void set_attrs(void) {
  cudaFuncSetAttribute(gemm_filter<METRIC>,
                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                       (int)(ANNEX_CUDA_MAX_CAND * sizeof(Cand)));
  cudaFuncSetAttribute(gemm_finalize<METRIC>,
                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                       (int)fin_smem(ANNEX_CUDA_MAX_CAND));
}

void gpu_gemm_init_attrs(void) {
  set_attrs<ANNEX_CUDA_L2>();
  set_attrs<ANNEX_CUDA_IP>();
  set_attrs<ANNEX_CUDA_COSINE>();
}

template <int METRIC>
static int gemm_all(GpuCtx *p, const float *dQ, const QParam *dQp,
                    size_t nQuery, int c, int bTf32, const unsigned *dAllowed,
                    annex_cuda_hit *dHit, int *dNHit, float *dFloor) {
  size_t Qb, Nb, cap;
  int rc;
  float *aDot[2], *tau;
  Cand *buf;
  int *cnt;
  const size_t dpad = p->nDimPad, n = p->n;
  const float one = 1.f, zero = 0.f;
  const cublasComputeType_t ct =
      bTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const int ePath = bTf32 ? GPU_DEVICE_PATH_TF32 : GPU_DEVICE_PATH_FP32;
  gpu_gemm_tiles(nQuery, n, &Qb, &Nb);
  for (;;) {
    cap = (size_t)c + 2 * Nb;
    rc = gpu_scratch(p, SC_DOT, Qb * Nb * sizeof(float), (void **)&aDot[0]);
    if (!rc) rc = gpu_scratch(p, SC_DOT2, Qb * Nb * sizeof(float),
                              (void **)&aDot[1]);
    if (!rc) rc = gpu_scratch(p, SC_BUF, Qb * cap * sizeof(Cand), (void **)&buf);
    if (!rc) rc = gpu_scratch(p, SC_CNT, Qb * sizeof(int), (void **)&cnt);
    if (!rc) rc = gpu_scratch(p, SC_TAU, Qb * sizeof(float), (void **)&tau);
    /* short of device memory: smaller query blocks before giving up */
    if (rc != ANNEX_CUDA_NOMEM || Qb <= 256) break;
    Qb = (Qb + 1) / 2;
    p->stats.nError--;
  }
  if (rc) return rc;
  /* Two streams: the GEMMs on st, the filters (which must run in order:
  ** they share the candidate lists) on sF. GEMM t writes aDot[t % 2] once
  ** filter t-2 has read it; filter t waits for GEMM t. ANNEX_CUDA_PIPELINE=0
  ** runs everything on one stream. */
  cudaStream_t sG = p->st, sF = p->st2;
  cudaError_t e;
  {
    const char *z = getenv("ANNEX_CUDA_PIPELINE");
    if (z && z[0] == '0') sF = sG;
  }
  e = cudaEventRecord(p->evFork, sG);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(sF, p->evFork, 0);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "pipeline");
  size_t t = 0;
  for (size_t q0 = 0; q0 < nQuery; q0 += Qb) {
    const size_t qn = nQuery - q0 < Qb ? nQuery - q0 : Qb;
    gemm_init<<<(unsigned)((qn + 255) / 256), 256, 0, sF>>>(cnt, tau,
                                                            (int)qn);
    rc = gpu_launch_rc(p, "gemm init");
    if (rc) goto fail;
    for (size_t n0 = 0; n0 < n; n0 += Nb, t++) {
      const size_t nb = n - n0 < Nb ? n - n0 : Nb;
      const int ib = (int)(t & 1);
      float *dot = aDot[ib];
      if (t >= 2) {
        e = cudaStreamWaitEvent(sG, p->evFilt[ib], 0);
        if (e != cudaSuccess) {
          rc = gpu_cuda_rc(p, e, "pipeline");
          goto fail;
        }
      }
      cublasStatus_t s = cublasGemmEx(
          p->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nb, (int)qn, (int)dpad, &one,
          p->dX + n0 * dpad, CUDA_R_32F, (int)dpad, dQ + q0 * dpad, CUDA_R_32F,
          (int)dpad, &zero, dot, CUDA_R_32F, (int)Nb, ct, CUBLAS_GEMM_DEFAULT);
      if (s != CUBLAS_STATUS_SUCCESS) {
        rc = gpu_blas_rc(p, s, "cublasGemmEx");
        goto fail;
      }
      e = cudaEventRecord(p->evGemm[ib], sG);
      if (e == cudaSuccess) e = cudaStreamWaitEvent(sF, p->evGemm[ib], 0);
      if (e != cudaSuccess) {
        rc = gpu_cuda_rc(p, e, "pipeline");
        goto fail;
      }
      gemm_filter<METRIC><<<(unsigned)qn, FILT_NT, c * sizeof(Cand), sF>>>(
          dot, (int)Nb, (int)nb, n0, p->dXn, p->dValid, dAllowed, dQp + q0,
          buf, (int)cap, cnt, tau, c, (int)Nb);
      rc = gpu_launch_rc(p, "gemm filter");
      if (rc) goto fail;
      e = cudaEventRecord(p->evFilt[ib], sF);
      if (e != cudaSuccess) {
        rc = gpu_cuda_rc(p, e, "pipeline");
        goto fail;
      }
    }
    gemm_finalize<METRIC><<<(unsigned)qn, FIN_NT, fin_smem(c), sF>>>(
        buf, (int)cap, cnt, tau, c, ePath, (const float4 *)p->dX,
        (int)(dpad / 4), p->dRowid, (const float4 *)(dQ + q0 * dpad),
        dQp + q0, p->rXmax, (int)p->nDim, dHit + q0 * c, dNHit + q0,
        dFloor + q0);
    rc = gpu_launch_rc(p, "gemm finalize");
    if (rc) goto fail;
  }
  e = cudaEventRecord(p->evJoin, sF);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(sG, p->evJoin, 0);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "pipeline");
  return ANNEX_CUDA_OK;
fail:
  /* leave nothing running that could touch the scratch buffers */
  (void)cudaStreamSynchronize(sF);
  (void)cudaStreamSynchronize(sG);
  return rc;
}

int gpu_knn_gemm(GpuCtx *p, const float *dQ, const QParam *dQp, size_t nQuery,
                 int nCand, int bTf32, const unsigned *dAllowed,
                 annex_cuda_hit *dHit, int *dNHit, float *dFloor) {
  switch (p->eMetric) {
    case ANNEX_CUDA_L2:
      return gemm_all<ANNEX_CUDA_L2>(p, dQ, dQp, nQuery, nCand, bTf32,
                                     dAllowed, dHit, dNHit, dFloor);
    case ANNEX_CUDA_IP:
      return gemm_all<ANNEX_CUDA_IP>(p, dQ, dQp, nQuery, nCand, bTf32,
                                     dAllowed, dHit, dNHit, dFloor);
    default:
      return gemm_all<ANNEX_CUDA_COSINE>(p, dQ, dQp, nQuery, nCand, bTf32,
                                         dAllowed, dHit, dNHit, dFloor);
  }
}

/* ------------------------------------------------------ TF32 redo */

/* One thread per query: can the device prove that the CPU will certify
** this answer for k (annex_cuda.h)? If not, list the query. */
template <int METRIC>
__global__ void check_kernel(const annex_cuda_hit *__restrict__ hits,
                             const int *__restrict__ nhit,
                             const float *__restrict__ floorv,
                             const QParam *__restrict__ qp, float xmax,
                             int nDim, int k, int c, int nQ, int *list,
                             int *count) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= nQ) return;
  const int m = nhit[q];
  const float fl = floorv[q];
  bool ok;
  if (m < k) {
    ok = !(fl < GPU_INF);
  } else {
    const double g = hits[(size_t)q * c + k - 1].score;
    const double gc = ((double)nDim + 4.0) * GPU_U;
    double b;
    if (METRIC == ANNEX_CUDA_L2) {
      b = g * (1.0 + 2.5 * gc) + 1e-30;
    } else if (METRIC == ANNEX_CUDA_IP) {
      b = g + 2.5 * gc * (double)qp[q].qnorm * (double)xmax + 1e-30;
    } else {
      b = g + 5.0 * gc + 1e-7;
    }
    ok = b < (double)fl;
  }
  if (!ok) list[atomicAdd(count, 1)] = q;
}

__global__ void gather_queries(const float4 *__restrict__ Q,
                               const QParam *__restrict__ qp,
                               const int *__restrict__ list, int dpad4,
                               float4 *Q2, QParam *qp2) {
  const int i = blockIdx.x, q = list[i];
  for (int j = threadIdx.x; j < dpad4; j += blockDim.x) {
    Q2[(size_t)i * dpad4 + j] = Q[(size_t)q * dpad4 + j];
  }
  if (threadIdx.x == 0) qp2[i] = qp[q];
}

__global__ void scatter_results(const annex_cuda_hit *__restrict__ h2,
                                const int *__restrict__ n2,
                                const float *__restrict__ f2,
                                const int *__restrict__ list, int c,
                                annex_cuda_hit *h, int *nh, float *fl) {
  const int i = blockIdx.x, q = list[i];
  const int m = n2[i];
  for (int j = threadIdx.x; j < m; j += blockDim.x) {
    h[(size_t)q * c + j] = h2[(size_t)i * c + j];
  }
  if (threadIdx.x == 0) {
    nh[q] = m;
    fl[q] = f2[i];
  }
}

int gpu_tf32_redo(GpuCtx *p, const float *dQ, const QParam *dQp,
                  size_t nQuery, int k, int c, const unsigned *dAllowed,
                  annex_cuda_hit *dHit, int *dNHit, float *dFloor,
                  size_t *pnRedo) {
  int *dRedo, nRedo = 0, rc;
  const int dpad4 = (int)(p->nDimPad / 4);
  const unsigned nb = (unsigned)((nQuery + 255) / 256);
  cudaError_t e;
  float *dQ2;
  QParam *dQp2;
  unsigned char *dOut2;
  size_t offN, offF, nOut;
  *pnRedo = 0;
  rc = gpu_scratch(p, SC_REDO, (nQuery + 1) * sizeof(int), (void **)&dRedo);
  if (rc) return rc;
  e = cudaMemsetAsync(dRedo, 0, sizeof(int), p->st);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "memset");
  switch (p->eMetric) {
    case ANNEX_CUDA_L2:
      check_kernel<ANNEX_CUDA_L2><<<nb, 256, 0, p->st>>>(
          dHit, dNHit, dFloor, dQp, p->rXmax, (int)p->nDim, k, c,
          (int)nQuery, dRedo + 1, dRedo);
      break;
    case ANNEX_CUDA_IP:
      check_kernel<ANNEX_CUDA_IP><<<nb, 256, 0, p->st>>>(
          dHit, dNHit, dFloor, dQp, p->rXmax, (int)p->nDim, k, c,
          (int)nQuery, dRedo + 1, dRedo);
      break;
    default:
      check_kernel<ANNEX_CUDA_COSINE><<<nb, 256, 0, p->st>>>(
          dHit, dNHit, dFloor, dQp, p->rXmax, (int)p->nDim, k, c,
          (int)nQuery, dRedo + 1, dRedo);
      break;
  }
  rc = gpu_launch_rc(p, "check");
  if (rc) return rc;
  e = cudaMemcpyAsync(&nRedo, dRedo, sizeof(int), cudaMemcpyDeviceToHost,
                      p->st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(p->st);
  if (e != cudaSuccess) return gpu_cuda_rc(p, e, "check");
  if (nRedo <= 0) return ANNEX_CUDA_OK;
  offN = (size_t)nRedo * c * sizeof(annex_cuda_hit);
  offF = offN + (((size_t)nRedo * 4 + 15) & ~(size_t)15);
  nOut = offF + (size_t)nRedo * 4;
  rc = gpu_scratch(p, SC_Q2, (size_t)nRedo * p->nDimPad * 4, (void **)&dQ2);
  if (!rc) rc = gpu_scratch(p, SC_QP2, nRedo * sizeof(QParam), (void **)&dQp2);
  if (!rc) rc = gpu_scratch(p, SC_OUT2, nOut, (void **)&dOut2);
  if (rc) return rc;
  gather_queries<<<nRedo, 128, 0, p->st>>>((const float4 *)dQ, dQp, dRedo + 1,
                                           dpad4, (float4 *)dQ2, dQp2);
  rc = gpu_launch_rc(p, "gather");
  if (rc) return rc;
  if (nRedo < ANNEX_CUDA_SCAN_BELOW) {
    rc = gpu_knn_scan(p, dQ2, dQp2, nRedo, c, dAllowed,
                      (annex_cuda_hit *)dOut2, (int *)(dOut2 + offN),
                      (float *)(dOut2 + offF));
  } else {
    rc = gpu_knn_gemm(p, dQ2, dQp2, nRedo, c, 0, dAllowed,
                      (annex_cuda_hit *)dOut2, (int *)(dOut2 + offN),
                      (float *)(dOut2 + offF));
  }
  if (rc) return rc;
  scatter_results<<<nRedo, 128, 0, p->st>>>(
      (const annex_cuda_hit *)dOut2, (const int *)(dOut2 + offN),
      (const float *)(dOut2 + offF), dRedo + 1, c, dHit, dNHit, dFloor);
  rc = gpu_launch_rc(p, "scatter");
  if (rc) return rc;
  *pnRedo = (size_t)nRedo;
  return ANNEX_CUDA_OK;
}
