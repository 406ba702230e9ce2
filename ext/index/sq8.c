/*
** sq8.c — 8-bit scalar quantizer; see sq8.h.
*/
#include "sq8.h"

#include <math.h>
#include <string.h>

#include "alloc.h"

int annex_sq8_init(annex_sq8 *sq, size_t nDim) {
  sq->nDim = nDim;
  sq->aMin = annex_calloc(2 * nDim, sizeof(float));
  sq->aStep = sq->aMin ? sq->aMin + nDim : NULL;
  if (sq->aMin == NULL) return -1;
  for (size_t i = 0; i < nDim; i++) sq->aStep[i] = 1.0f;
  return 0;
}

void annex_sq8_free(annex_sq8 *sq) {
  annex_free(sq->aMin);
  memset(sq, 0, sizeof(*sq));
}

void annex_sq8_train(annex_sq8 *sq, const float *aX, size_t n) {
  size_t d = sq->nDim;
  float *lo = sq->aMin, *st = sq->aStep;
  memcpy(lo, aX, d * sizeof(float));
  memcpy(st, aX, d * sizeof(float)); /* max, for now */
  for (size_t i = 1; i < n; i++) {
    const float *x = aX + i * d;
    for (size_t t = 0; t < d; t++) {
      if (x[t] < lo[t]) lo[t] = x[t];
      if (x[t] > st[t]) st[t] = x[t];
    }
  }
  for (size_t t = 0; t < d; t++) {
    float s = (st[t] - lo[t]) / 255.0f;
    /* A constant dimension still needs a usable step. */
    st[t] = s > 0 ? s : (fabsf(lo[t]) + 1.0f) * 1e-6f;
  }
}

void annex_sq8_encode(const annex_sq8 *sq, const float *x, uint8_t *aCode) {
  for (size_t t = 0; t < sq->nDim; t++) {
    float v = (x[t] - sq->aMin[t]) / sq->aStep[t] + 0.5f;
    aCode[t] = v <= 0 ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
  }
}

void annex_sq8_decode(const annex_sq8 *sq, const uint8_t *aCode,
                      float *out) {
  for (size_t t = 0; t < sq->nDim; t++) {
    out[t] = sq->aMin[t] + (float)aCode[t] * sq->aStep[t];
  }
}

void annex_sq8_prepare(const annex_sq8 *sq, const float *q, int bIP,
                       float *aPrep, float *pConst) {
  float c = 0;
  for (size_t t = 0; t < sq->nDim; t++) {
    if (bIP) {
      aPrep[t] = q[t] * sq->aStep[t];
      c += q[t] * sq->aMin[t];
    } else {
      aPrep[t] = q[t] - sq->aMin[t];
    }
  }
  *pConst = c;
}

float annex_sq8_l2(const annex_sq8 *sq, const float *aPrep,
                   const uint8_t *aCode) {
  const float *st = sq->aStep;
  float acc[8] = {0}, s = 0;
  size_t t = 0, d = sq->nDim;
  /* Eight independent sums, so the compiler can vectorise without
  ** reassociating one sum. */
  for (; t + 8 <= d; t += 8) {
    for (int l = 0; l < 8; l++) {
      float e = aPrep[t + l] - (float)aCode[t + l] * st[t + l];
      acc[l] += e * e;
    }
  }
  for (; t < d; t++) {
    float e = aPrep[t] - (float)aCode[t] * st[t];
    s += e * e;
  }
  for (int l = 0; l < 8; l++) s += acc[l];
  return s;
}

float annex_sq8_ip(const annex_sq8 *sq, const float *aPrep, float fConst,
                   const uint8_t *aCode) {
  float acc[8] = {0}, s = 0;
  size_t t = 0, d = sq->nDim;
  for (; t + 8 <= d; t += 8) {
    for (int l = 0; l < 8; l++) acc[l] += aPrep[t + l] * (float)aCode[t + l];
  }
  for (; t < d; t++) s += aPrep[t] * (float)aCode[t];
  for (int l = 0; l < 8; l++) s += acc[l];
  return -(fConst + s);
}
