/*
** sq8.h — 8-bit scalar quantizer with a per-dimension range.
**
** Owns: training (per-dimension min and max over the training vectors),
** encoding (one byte per dimension: round((x - min) / step), clamped, with
** step = (max - min) / 255) and asymmetric distances: the float query
** against the decoded code, min + code * step, computed on the fly (a
** per-dimension table of 256 entries would be nDim KiB: larger than the
** arithmetic it saves). The decoding error per dimension is at most step/2
** for values inside the trained range.
**
** On-disk layout the IVF glue stores: nDim float32 minimums, then nDim
** float32 steps (little-endian).
**
** Index code only: nothing here talks to SQLite; memory from alloc.h.
*/
#ifndef ANNEX_SQ8_H
#define ANNEX_SQ8_H

#include <stddef.h>
#include <stdint.h>

typedef struct annex_sq8 {
  size_t nDim;  /* dimensions */
  float *aMin;  /* per dimension: lowest trained value (owned, 2*nDim) */
  float *aStep; /* per dimension: (max - min) / 255, > 0; aMin + nDim */
} annex_sq8;

/* Returns 0, or -1 when out of memory. */
int annex_sq8_init(annex_sq8 *sq, size_t nDim);
void annex_sq8_free(annex_sq8 *sq);
/* Per-dimension ranges of n vectors (n >= 1). */
void annex_sq8_train(annex_sq8 *sq, const float *aX, size_t n);
void annex_sq8_encode(const annex_sq8 *sq, const float *x, uint8_t *aCode);
void annex_sq8_decode(const annex_sq8 *sq, const uint8_t *aCode, float *out);

/* Query prepared for scoring codes: for l2, qm = q - min (nDim floats);
** for ip, qs = q * step and the constant q . min. aPrep holds nDim floats. */
void annex_sq8_prepare(const annex_sq8 *sq, const float *q, int bIP,
                       float *aPrep, float *pConst);
/* Squared l2 distance of the prepared query to the decoded code. */
float annex_sq8_l2(const annex_sq8 *sq, const float *aPrep,
                   const uint8_t *aCode);
/* -(q . decoded code) from the prepared query and its constant. */
float annex_sq8_ip(const annex_sq8 *sq, const float *aPrep, float fConst,
                   const uint8_t *aCode);

#endif /* ANNEX_SQ8_H */
