/*
** batch.c — many-query exact k-NN by matrix product; see batch.h for the
** method and why its answers equal the single-query scan's.
*/
#include "batch.h"

#include <math.h>
#include <string.h>

#include "blas.h"
#ifdef ANNEX_HAVE_OPENMP
#include <omp.h>
#endif

/* Unit roundoff of float32. */
#define F32_U 5.9604645e-8

/* A float dot product of d terms is off by at most d*u*sum|q_i x_i| <=
** d*u*|q||x|; each norm likewise; the kernel's own score is off from the
** true value by the same order. Factor 4 covers all of them summed. */
static double unit_margin(size_t nDim) {
  return 4.0 * ((double)nDim + 4.0) * F32_U;
}

double annex_batch_margin(annex_metric eMetric, size_t nDim, double qNorm,
                          double xNorm) {
  double g = unit_margin(nDim);
  switch (eMetric) {
    case ANNEX_METRIC_L2:
      return g * (qNorm + xNorm + 2.0 * sqrt(qNorm * xNorm)) + 1e-30;
    case ANNEX_METRIC_IP:
      return g * sqrt(qNorm * xNorm) + 1e-30;
    default: /* cosine: |q.x| / (|q||x|) <= 1 */
      return g * 2.0 + 1e-7;
  }
}

/* Norm of v as the metric needs it (see annex_batch.aQNorm). */
static float vec_norm(annex_metric eMetric, const float *v, size_t nDim) {
  double s = 0;
  for (size_t i = 0; i < nDim; i++) s += (double)v[i] * v[i];
  return (float)(eMetric == ANNEX_METRIC_COSINE ? sqrt(s) : s);
}

int annex_batch_init(annex_batch *b, annex_metric eMetric, size_t nDim,
                     const float *aQuery, size_t nQuery, size_t k,
                     size_t nBlockMax, int nThread,
                     void *(*xMalloc)(size_t), void (*xFree)(void *)) {
  size_t kk = k > 0 ? k : 1;
  memset(b, 0, sizeof(*b));
  b->eMetric = eMetric;
  b->nDim = nDim;
  b->nQuery = nQuery;
  b->k = k;
  b->nBlockMax = nBlockMax;
  b->aQuery = aQuery;
  b->nThread = nThread > 0 ? nThread : 1;
  b->xFree = xFree;
  b->xScore = annex_distance_kernel(ANNEX_ELEM_FLOAT32, eMetric);
  b->xSgemm = annex_blas_sgemm();
  b->aQNorm = xMalloc(sizeof(float) * (nQuery ? nQuery : 1));
  b->aXNorm = xMalloc(sizeof(float) * nBlockMax);
  b->aLo = xMalloc(sizeof(float) * nBlockMax * (size_t)b->nThread);
  b->aDot = xMalloc(sizeof(float) * (nQuery ? nQuery : 1) * nBlockMax);
  b->aExact = xMalloc(sizeof(annex_topk) * 2 * (nQuery ? nQuery : 1));
  b->aMem = xMalloc(sizeof(annex_hit) * 2 * kk * (nQuery ? nQuery : 1));
  if (!b->aQNorm || !b->aXNorm || !b->aLo || !b->aDot || !b->aExact || !b->aMem ||
      !b->xScore) {
    annex_batch_free(b);
    return -1;
  }
  b->aUpper = b->aExact + nQuery;
  for (size_t q = 0; q < nQuery; q++) {
    annex_topk_init(&b->aExact[q], b->aMem + 2 * kk * q, k);
    annex_topk_init(&b->aUpper[q], b->aMem + 2 * kk * q + kk, k);
    b->aQNorm[q] = vec_norm(eMetric, aQuery + q * nDim, nDim);
  }
  return 0;
}

/* aDot[q * n + i] = query q . vector i, for one query, with the SIMD
** inner-product kernel (its score is -dot). */
static void query_dots(annex_batch *b, size_t q, const float *aVec, size_t n) {
  const float *pq = b->aQuery + q * b->nDim;
  annex_dist_fn xIp = annex_distance_kernel(ANNEX_ELEM_FLOAT32,
                                            ANNEX_METRIC_IP);
  for (size_t i = 0; i < n; i++) {
    b->aDot[q * n + i] = -xIp(pq, aVec + i * b->nDim, b->nDim);
  }
}

/* Expanded score of (q, x) from their dot product and norms. */
static double expanded(annex_metric m, double dot, double qn, double xn) {
  if (m == ANNEX_METRIC_L2) return qn + xn - 2.0 * dot;
  if (m == ANNEX_METRIC_IP) return -dot;
  if (qn == 0 || xn == 0) return 1.0;
  return 1.0 - dot / (qn * xn);
}

/* The smallest float >= v. */
static float round_up(double v) {
  float f = (float)v;
  return (double)f < v ? nextafterf(f, INFINITY) : f;
}

/* Lower bounds e - m of every vector of the block for query q, into aLo.
** A cheap, vectorisable pass: most vectors fail the bound test on it alone.
** The margin is doubled here to absorb this pass's own float rounding. */
static void lower_bounds(const annex_batch *b, size_t q, size_t n,
                         float *aLo) {
  const float *pDot = b->aDot + q * n, *aX = b->aXNorm;
  float qn = b->aQNorm[q];
  float g = (float)(2.0 * unit_margin(b->nDim));
  if (b->eMetric == ANNEX_METRIC_L2) {
    float sq = sqrtf(qn);
    for (size_t i = 0; i < n; i++) {
      float sx = sqrtf(aX[i]);
      aLo[i] = qn + aX[i] - 2.0f * pDot[i] - g * (sq + sx) * (sq + sx);
    }
  } else if (b->eMetric == ANNEX_METRIC_IP) {
    float sq = sqrtf(qn);
    for (size_t i = 0; i < n; i++) {
      aLo[i] = -pDot[i] - g * sq * sqrtf(aX[i]);
    }
  } else {
    float m2 = (float)(2.0 * annex_batch_margin(ANNEX_METRIC_COSINE, b->nDim,
                                                1.0, 1.0));
    for (size_t i = 0; i < n; i++) {
      float c = (qn == 0 || aX[i] == 0) ? 0.0f : pDot[i] / (qn * aX[i]);
      aLo[i] = 1.0f - c - m2;
    }
  }
}

/* One query against the block. */
static void block_query(annex_batch *b, size_t q, const float *aVec, size_t n,
                        const unsigned char *aValid,
                        const unsigned char *aAllowed, int64_t iFirstSlot,
                        const int64_t *aRowid, float *aLo) {
  annex_topk *pUp = &b->aUpper[q], *pEx = &b->aExact[q];
  const float *pDot = b->aDot + q * n;
  const float *pq = b->aQuery + q * b->nDim;
  double qn = b->aQNorm[q];
  lower_bounds(b, q, n, aLo);
  for (size_t i = 0; i < n; i++) {
    int64_t iSlot = iFirstSlot + (int64_t)i;
    double e, m;
    if (annex_topk_full(pUp) && aLo[i] > pUp->a[0].score) continue;
    if (!((aValid[i >> 3] >> (i & 7)) & 1)) continue;
    if (aAllowed && !((aAllowed[iSlot >> 3] >> (iSlot & 7)) & 1)) continue;
    e = expanded(b->eMetric, pDot[i], qn, b->aXNorm[i]);
    m = annex_batch_margin(b->eMetric, b->nDim, qn, b->aXNorm[i]);
    if (annex_topk_full(pUp) && e - m > pUp->a[0].score) continue;
    annex_topk_push(pUp, round_up(e + m), 0);
    annex_topk_push(pEx, b->xScore(pq, aVec + i * b->nDim, b->nDim),
                    aRowid[i]);
  }
}

void annex_batch_block(annex_batch *b, const float *aVec, size_t n,
                       const unsigned char *aValid,
                       const unsigned char *aAllowed, int64_t iFirstSlot,
                       const int64_t *aRowid) {
  if (b->k == 0 || n == 0 || b->nQuery == 0) return;
  for (size_t i = 0; i < n; i++) {
    b->aXNorm[i] = vec_norm(b->eMetric, aVec + i * b->nDim, b->nDim);
  }
  if (b->xSgemm) {
    /* One product for the whole block; BLAS spreads it over the cores, and
    ** the per-query selection that follows is a small part of the work, so
    ** it runs on this thread rather than competing with BLAS's threads. */
    b->xSgemm(ANNEX_CBLAS_ROW_MAJOR, ANNEX_CBLAS_NO_TRANS, ANNEX_CBLAS_TRANS,
              (int)b->nQuery, (int)n, (int)b->nDim, 1.0f, b->aQuery,
              (int)b->nDim, aVec, (int)b->nDim, 0.0f, b->aDot, (int)n);
    for (size_t q = 0; q < b->nQuery; q++) {
      block_query(b, q, aVec, n, aValid, aAllowed, iFirstSlot, aRowid, b->aLo);
    }
    return;
  }
#ifdef ANNEX_HAVE_OPENMP
#pragma omp parallel num_threads(b->nThread)
#endif
  {
#ifdef ANNEX_HAVE_OPENMP
    float *aLo = b->aLo + (size_t)omp_get_thread_num() * b->nBlockMax;
#pragma omp for schedule(dynamic, 16)
#else
    float *aLo = b->aLo;
#endif
    for (long q = 0; q < (long)b->nQuery; q++) {
      query_dots(b, (size_t)q, aVec, n);
      block_query(b, (size_t)q, aVec, n, aValid, aAllowed, iFirstSlot, aRowid,
                  aLo);
    }
  }
}

void annex_batch_finish(annex_batch *b) {
  for (size_t q = 0; q < b->nQuery; q++) annex_topk_sort(&b->aExact[q]);
}

void annex_batch_free(annex_batch *b) {
  if (b->xFree == NULL) return;
  b->xFree(b->aQNorm);
  b->xFree(b->aXNorm);
  b->xFree(b->aLo);
  b->xFree(b->aDot);
  b->xFree(b->aExact);
  b->xFree(b->aMem);
  memset(b, 0, sizeof(*b));
}
