/*
** distance_internal.h — declarations shared by the distance kernel files.
**
** Owns: the annex_kernels table type (one function pointer per valid
** (element, metric) pair), the tables each kernel set exports, and the small
** helpers every set uses to finish a score (cosine from dot and norms, the
** block size that keeps int8 integer sums from overflowing).
**
** Only distance.c, distance_avx2.c, distance_avx512.c and distance_neon.c
** include this header.
*/
#ifndef ANNEX_DISTANCE_INTERNAL_H
#define ANNEX_DISTANCE_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "distance.h"

/* One kernel set: a name and a kernel per valid (element, metric) pair. */
typedef struct annex_kernels {
  const char *zName;
  annex_dist_fn f32_l2;
  annex_dist_fn f32_cosine;
  annex_dist_fn f32_ip;
  annex_dist_fn i8_l2;
  annex_dist_fn i8_cosine;
  annex_dist_fn i8_ip;
  annex_dist_fn bit_hamming;
  annex_dist_fn code_l2;  /* code rows with a norm (integer query) */
  annex_dist_fn code_l2f; /* code rows without (float query) */
  annex_dist_fn code_ip;
} annex_kernels;

/* int8 kernels sum at most this many dimensions in 32-bit integers before
** moving the partial sum to 64 bits: 16384 * 255^2 < 2^31. */
#define ANNEX_I8_BLOCK 16384

/* Score for cosine from the dot product and the two squared norms: 1 when
** either norm is 0, otherwise 1 - cos clamped to [0, 2] so rounding never
** yields a negative distance. */
static inline float annex_cosine_score(double dot, double nA, double nB) {
  double s;
  if (nA <= 0.0 || nB <= 0.0) return 1.0f;
  s = 1.0 - dot / sqrt(nA * nB);
  if (s < 0.0) s = 0.0;
  if (s > 2.0) s = 2.0;
  return (float)s;
}

extern const annex_kernels annex_kernels_portable;
/* The portable code-row kernels, for sets without their own. */
float annex_code_l2_portable(const void *pQ, const void *pRow, size_t dims);
float annex_code_l2f_portable(const void *pQ, const void *pRow, size_t dims);
float annex_code_ip_portable(const void *pQ, const void *pRow, size_t dims);

/* Integer kernels sum the products u[i] * c[i] of at most this many dims
** in 32-bit integers before moving the sum to 64 bits: a whole block's sum
** fits, 512 * 16383 * 255 < 2^31. */
#define ANNEX_CODE_BLOCK 512

/* The i16 steps of an integer-form prepared query (distance.h). */
static inline const int16_t *annex_code_steps(const void *pQ) {
  return (const int16_t *)((const unsigned char *)pQ + ANNEX_CODE_QUERY_HEADER);
}

/* Scores from an integer-form query's header (C, step), the row's norm
** (l2) and P = sum u[i] c[i]. */
static inline float annex_code_l2_score(const void *pQ, const unsigned char *row,
                                        size_t dims, int64_t P) {
  const float *h = (const float *)pQ;
  float n;
  memcpy(&n, row + annex_code_bytes(dims) - sizeof n, sizeof n);
  return h[0] + n - 2.0f * h[1] * (float)P;
}

static inline float annex_code_ip_score(const void *pQ, int64_t P) {
  const float *h = (const float *)pQ;
  return -(h[0] + h[1] * (float)P);
}

/* Elements a float-form code kernel reads: dims rounded up to 16. The prepared
** query's pad is zero and so is the row's, so the pad adds nothing. */
static inline size_t annex_code_lanes(size_t dims) {
  return (dims + 15) & ~(size_t)15;
}

/* The float arrays of a float-form prepared query (distance.h): r, s. */
static inline const float *annex_code_qv(const void *pQ) {
  return (const float *)((const unsigned char *)pQ + ANNEX_CODE_QUERY_HEADER);
}

#if defined(__x86_64__)
extern const annex_kernels annex_kernels_avx2;
/* AVX-512 set; bVpopcnt selects the hamming kernel that uses VPOPCNTQ. */
const annex_kernels *annex_kernels_avx512(int bVpopcnt);
#endif

#if defined(__aarch64__)
extern const annex_kernels annex_kernels_neon;
#endif

#endif /* ANNEX_DISTANCE_INTERNAL_H */
