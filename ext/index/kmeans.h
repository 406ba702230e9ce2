/*
** kmeans.h — seeded, reproducible k-means (Lloyd) for float32 vectors.
**
** Owns: training k centroids on a sample of the input (the IVF coarse
** quantizer, and each PQ sub-quantizer), and nearest-centroid assignment.
**
**   - Init: k-means++ over (a seeded sample of up to 32 k of) the training
**     vectors when its k passes cost at most ~2 GFLOP (PQ sub-quantizers,
**     small nlist); otherwise, as FAISS does by default, a seeded random
**     pick of k distinct training vectors (k-means++ is k serial passes:
**     too slow for nlist in the thousands). The training set itself is a
**     seeded sample of at most k * nMaxPerCentroid vectors.
**     Same input, same parameters, same seed: same centroids, bit for bit
**     (with the same BLAS and thread count).
**   - Assignment: |x|^2 + |c|^2 - 2 x.c with x.c from one matrix product
**     (cblas_sgemm found at run time, blas.h) per block of vectors; without
**     a BLAS (ANNEX_BLAS_LIBRARY=none) the SIMD l2 kernel scores each pair.
**     The per-row argmin runs in parallel with OpenMP when built with it.
**     With p->xAssign set (the GPU), the training loop asks it first (the
**     training sample stays on the device across iterations) and falls
**     back to the CPU on any failure; assignments then equal the CPU's up
**     to scores tied within float rounding, so centroids may differ in the
**     last bits from a CPU-only run (not bit for bit).
**   - Update: centroid = mean of its vectors, summed in double, serially
**     (deterministic). An empty cluster takes half of a populated cluster:
**     it copies that centroid with a small symmetric perturbation (the
**     split FAISS uses), chosen by a seeded draw weighted by cluster size.
**   - Progress: a callback after every iteration; non-zero aborts.
**
** Index code only: nothing here talks to SQLite; memory from alloc.h.
*/
#ifndef ANNEX_KMEANS_H
#define ANNEX_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#define ANNEX_KMEANS_OK 0
#define ANNEX_KMEANS_NOMEM (-1)
#define ANNEX_KMEANS_TOO_FEW (-2) /* fewer vectors than clusters, or k < 1 */
#define ANNEX_KMEANS_ABORTED (-3) /* the progress callback said stop */

/* Called after iteration iIter (1-based) of nIter with the objective (sum of
** squared distances to the assigned centroids over the training sample).
** Return non-zero to abort. */
typedef int (*annex_kmeans_progress_fn)(void *pCtx, int iIter, int nIter,
                                        double rObjective);

/* Optional assignment on another engine (the GPU, ext/vtab/gpu.c): the
** nearest of the k centroids aC for the n vectors aX, as
** annex_kmeans_assign (bIP, aAssign, aScore alike). flags: HOLD_X, keep aX
** for the next call; REUSE_X, aX is the previous call's (made with HOLD_X),
** unchanged. Returns 0 when it did the work; non-zero means "not done": the
** caller then assigns on the CPU, and does not call it again in this
** training (it may have dropped what it held). */
#define ANNEX_KMEANS_HOLD_X 0x2
#define ANNEX_KMEANS_REUSE_X 0x4
typedef int (*annex_kmeans_assign_fn)(void *pCtx, const float *aX, size_t n,
                                      size_t nDim, const float *aC, size_t k,
                                      int bIP, unsigned flags,
                                      int32_t *aAssign, float *aScore);

typedef struct annex_kmeans_params {
  int k;                  /* clusters, >= 1 */
  int nIter;              /* Lloyd iterations (<= 0: 20) */
  uint64_t seed;          /* init and sampling draws */
  size_t nMaxPerCentroid; /* sample cap: k * this vectors (0: 256) */
  int nThread;            /* OpenMP threads for assignment (<= 1: serial) */
  annex_kmeans_progress_fn xProgress; /* or NULL */
  void *pProgressCtx;     /* first argument of xProgress */
  annex_kmeans_assign_fn xAssign; /* or NULL: assignment on the CPU */
  void *pAssignCtx;       /* first argument of xAssign */
} annex_kmeans_params;

/* Train p->k centroids of nDim floats on the n vectors aX (row-major) into
** aCentroid (k * nDim floats). *pObjective (may be NULL) gets the final
** objective over the sample. Returns an ANNEX_KMEANS_* code. */
int annex_kmeans_train(const float *aX, size_t n, size_t nDim,
                       const annex_kmeans_params *p, float *aCentroid,
                       double *pObjective);

/* For each of the n vectors aX, the nearest of the k centroids aC: by l2
** (bIP == 0) or by largest inner product (bIP != 0). aAssign[i] gets its
** index; aScore (may be NULL) the squared l2 distance, or -x.c for bIP.
** Returns ANNEX_KMEANS_OK or ANNEX_KMEANS_NOMEM. */
int annex_kmeans_assign(const float *aX, size_t n, size_t nDim,
                        const float *aC, size_t k, int bIP, int nThread,
                        int32_t *aAssign, float *aScore);

/* Seeded generator used by index code: splitmix64 step. */
uint64_t annex_kmeans_rand(uint64_t *pState);

#endif /* ANNEX_KMEANS_H */
