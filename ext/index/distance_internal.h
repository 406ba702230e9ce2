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
  annex_dist_fn code_l2; /* float32 query against an 8-bit code row */
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
float annex_code_ip_portable(const void *pQ, const void *pRow, size_t dims);

/* Elements a code kernel reads: dims rounded up to 16. The prepared
** query's pad is zero and so is the row's, so the pad adds nothing. */
static inline size_t annex_code_lanes(size_t dims) {
  return (dims + 15) & ~(size_t)15;
}

/* The float arrays of a prepared query (distance.h): l2 r then s, ip w. */
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
