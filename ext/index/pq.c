/*
** pq.c — product quantizer training, codes and ADC tables; see pq.h.
*/
#include "pq.h"

#include <string.h>

#include "alloc.h"
#include "distance.h"

int annex_pq_init(annex_pq *pq, size_t nDim, int m) {
  memset(pq, 0, sizeof(*pq));
  if (m < 1 || nDim == 0 || nDim % (size_t)m) return ANNEX_KMEANS_TOO_FEW;
  pq->nDim = nDim;
  pq->m = m;
  pq->dsub = nDim / (size_t)m;
  pq->aCodebook = annex_calloc((size_t)ANNEX_PQ_KSUB * nDim, sizeof(float));
  pq->aCodeT = annex_calloc((size_t)ANNEX_PQ_KSUB * (nDim + (size_t)m),
                            sizeof(float));
  if (pq->aCodebook == NULL || pq->aCodeT == NULL) {
    annex_pq_free(pq);
    return ANNEX_KMEANS_NOMEM;
  }
  pq->aNorm = pq->aCodeT + (size_t)ANNEX_PQ_KSUB * nDim;
  return ANNEX_KMEANS_OK;
}

void annex_pq_free(annex_pq *pq) {
  annex_free(pq->aCodebook);
  annex_free(pq->aCodeT);
  memset(pq, 0, sizeof(*pq));
}

static void pq_sub_scores(const annex_pq *pq, int j, const float *qj, int bIP,
                          float *o);

/* Codebook block of sub-quantizer j. */
static float *pq_block(const annex_pq *pq, int j) {
  return pq->aCodebook + (size_t)j * ANNEX_PQ_KSUB * pq->dsub;
}

int annex_pq_train(annex_pq *pq, const float *aX, size_t n,
                   const annex_kmeans_params *p) {
  size_t ds = pq->dsub;
  float *aSub;
  int rc = ANNEX_KMEANS_OK;
  if (n == 0) return ANNEX_KMEANS_TOO_FEW;
  aSub = annex_malloc(n * ds * sizeof(float));
  if (aSub == NULL) return ANNEX_KMEANS_NOMEM;
  for (int j = 0; j < pq->m && rc == ANNEX_KMEANS_OK; j++) {
    annex_kmeans_params q = *p;
    float *aBlock = pq_block(pq, j);
    q.k = n < ANNEX_PQ_KSUB ? (int)n : ANNEX_PQ_KSUB;
    q.seed = p->seed + (uint64_t)j;
    for (size_t i = 0; i < n; i++) {
      memcpy(aSub + i * ds, aX + i * pq->nDim + (size_t)j * ds,
             ds * sizeof(float));
    }
    rc = annex_kmeans_train(aSub, n, ds, &q, aBlock, NULL);
    for (int c = q.k; rc == ANNEX_KMEANS_OK && c < ANNEX_PQ_KSUB; c++) {
      memcpy(aBlock + (size_t)c * ds, aBlock + (size_t)(q.k - 1) * ds,
             ds * sizeof(float));
    }
  }
  annex_free(aSub);
  if (rc == ANNEX_KMEANS_OK) annex_pq_finish(pq);
  return rc;
}

void annex_pq_finish(annex_pq *pq) {
  size_t ds = pq->dsub, K = ANNEX_PQ_KSUB;
  for (int j = 0; j < pq->m; j++) {
    const float *b = pq_block(pq, j);
    float *t = pq->aCodeT + (size_t)j * K * ds, *nrm = pq->aNorm + j * K;
    for (size_t c = 0; c < K; c++) {
      float s = 0;
      for (size_t u = 0; u < ds; u++) {
        t[u * K + c] = b[c * ds + u];
        s += b[c * ds + u] * b[c * ds + u];
      }
      nrm[c] = s;
    }
  }
}

void annex_pq_encode(const annex_pq *pq, const float *x, uint8_t *aCode) {
  float aScore[ANNEX_PQ_KSUB];
  for (int j = 0; j < pq->m; j++) {
    int iBest = 0;
    pq_sub_scores(pq, j, x + (size_t)j * pq->dsub, 0, aScore);
    for (int c = 1; c < ANNEX_PQ_KSUB; c++) {
      if (aScore[c] < aScore[iBest]) iBest = c;
    }
    aCode[j] = (uint8_t)iBest;
  }
}

int annex_pq_encode_many(const annex_pq *pq, const float *aX, size_t n,
                         int nThread, uint8_t *aCode) {
  int nt = nThread > 1 ? nThread : 1;
  (void)nt;
  annex_distance_init();
#ifdef ANNEX_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
  for (long long i = 0; i < (long long)n; i++) {
    annex_pq_encode(pq, aX + (size_t)i * pq->nDim,
                    aCode + (size_t)i * (size_t)pq->m);
  }
  return ANNEX_KMEANS_OK;
}

void annex_pq_decode(const annex_pq *pq, const uint8_t *aCode, float *out) {
  for (int j = 0; j < pq->m; j++) {
    memcpy(out + (size_t)j * pq->dsub,
           pq_block(pq, j) + (size_t)aCode[j] * pq->dsub,
           pq->dsub * sizeof(float));
  }
}

/* Scores of q_j (dsub floats) against the 256 codewords of sub-quantizer
** j: squared l2 (bIP == 0) or -dot, into o[256]. */
static void pq_sub_scores(const annex_pq *pq, int j, const float *qj, int bIP,
                          float *o) {
  size_t ds = pq->dsub, K = ANNEX_PQ_KSUB;
  const float *t = pq->aCodeT + (size_t)j * K * ds;
  float qq = 0;
  /* o[c] = q_j . codeword c, a row of 256 at a time (vectorises). */
  for (size_t c = 0; c < K; c++) o[c] = 0;
  for (size_t u = 0; u < ds; u++) {
    const float *row = t + u * K;
    float x = qj[u];
    for (size_t c = 0; c < K; c++) o[c] += x * row[c];
    qq += x * x;
  }
  if (bIP) {
    for (size_t c = 0; c < K; c++) o[c] = -o[c];
  } else {
    const float *nrm = pq->aNorm + (size_t)j * K;
    for (size_t c = 0; c < K; c++) {
      float v = qq + nrm[c] - 2.0f * o[c];
      o[c] = v > 0 ? v : 0;
    }
  }
}

void annex_pq_table(const annex_pq *pq, const float *q, int bIP,
                    float *aTab) {
  for (int j = 0; j < pq->m; j++) {
    pq_sub_scores(pq, j, q + (size_t)j * pq->dsub, bIP,
                  aTab + (size_t)j * ANNEX_PQ_KSUB);
  }
}
