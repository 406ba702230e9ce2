/*
** pq.h — product quantizer: m sub-quantizers of 256 codewords (8 bits).
**
** Owns: training the codebooks (k-means per sub-space, kmeans.h), encoding
** a vector as m bytes, decoding, and asymmetric distance computation (ADC):
** per query, a table of m x 256 partial scores against every codeword, so
** the score of a code is m table look-ups.
**
** The vector of nDim floats is cut into m contiguous sub-vectors of
** nDim / m floats (m must divide nDim). Codebook layout (also the on-disk
** layout the IVF glue stores, as little-endian float32): m blocks, block j
** holding 256 codewords of dsub floats, codeword c of block j at
** aCodebook[(j * 256 + c) * dsub].
**
** Tables: l2 entries are squared distances of the query's sub-vector to the
** codeword; ip entries are -(q_j . codeword), so a code's score is the sum
** in both cases and follows distance.h's convention (smaller is nearer).
** ADC of a code equals the exact score of the query against the decoded
** vector, up to float rounding.
**
** Index code only: nothing here talks to SQLite; memory from alloc.h.
*/
#ifndef ANNEX_PQ_H
#define ANNEX_PQ_H

#include <stddef.h>
#include <stdint.h>

#include "kmeans.h"

#define ANNEX_PQ_KSUB 256 /* codewords per sub-quantizer (8 bits) */

typedef struct annex_pq {
  size_t nDim;     /* dimensions of a whole vector */
  int m;           /* sub-quantizers = code bytes */
  size_t dsub;     /* nDim / m */
  float *aCodebook;/* m * 256 * dsub floats (owned) */
  float *aCodeT;   /* the same, transposed per sub-quantizer: block j is
                   ** dsub rows of 256 (owned; set by annex_pq_finish) */
  float *aNorm;    /* m * 256 squared codeword norms (inside aCodeT) */
} annex_pq;

/* Set up an untrained quantizer (codebook zeroed). Returns
** ANNEX_KMEANS_OK, ANNEX_KMEANS_NOMEM, or ANNEX_KMEANS_TOO_FEW when m does
** not divide nDim or m < 1. */
int annex_pq_init(annex_pq *pq, size_t nDim, int m);
void annex_pq_free(annex_pq *pq);

/* Train on n vectors (row-major). p gives iterations, seed, sample cap,
** threads and progress (p->k is ignored: 256, or n when n < 256, in which
** case the remaining codewords repeat the last trained one). The seed of
** sub-quantizer j is p->seed + j. */
int annex_pq_train(annex_pq *pq, const float *aX, size_t n,
                   const annex_kmeans_params *p);

/* Derive aCodeT and aNorm from aCodebook: after loading a codebook
** (annex_pq_train calls it itself). */
void annex_pq_finish(annex_pq *pq);

/* Encode one vector into m bytes (nearest codeword per sub-vector; needs
** annex_pq_finish). */
void annex_pq_encode(const annex_pq *pq, const float *x, uint8_t *aCode);
/* Encode n vectors (codes back to back), in parallel with nThread. */
int annex_pq_encode_many(const annex_pq *pq, const float *aX, size_t n,
                         int nThread, uint8_t *aCode);
void annex_pq_decode(const annex_pq *pq, const uint8_t *aCode, float *out);

/* The m x 256 ADC table of query q: l2 (bIP == 0) or -dot (bIP != 0),
** as |c|^2 - 2 q.c (+ |q_j|^2) and -q.c from the transposed codebook: one
** vectorisable pass of 256 x nDim multiply-adds. */
void annex_pq_table(const annex_pq *pq, const float *q, int bIP,
                    float *aTab);

/* Score of one code against a table. */
static inline float annex_pq_adc(const float *aTab, const uint8_t *aCode,
                                 int m) {
  float s = 0;
  int j = 0;
  for (; j + 4 <= m; j += 4) {
    s += aTab[(j + 0) * ANNEX_PQ_KSUB + aCode[j + 0]] +
         aTab[(j + 1) * ANNEX_PQ_KSUB + aCode[j + 1]] +
         aTab[(j + 2) * ANNEX_PQ_KSUB + aCode[j + 2]] +
         aTab[(j + 3) * ANNEX_PQ_KSUB + aCode[j + 3]];
  }
  for (; j < m; j++) s += aTab[j * ANNEX_PQ_KSUB + aCode[j]];
  return s;
}

#endif /* ANNEX_PQ_H */
