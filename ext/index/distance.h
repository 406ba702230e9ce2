/*
** distance.h — distance kernels with run-time SIMD dispatch.
**
** Owns: the element types and metrics annex knows, and the per-pair
** distance kernels for each (element type, metric) combination. Kernels are
** picked once, at load time, from the CPU's features (AVX-512, AVX2+FMA,
** NEON, or a portable fallback); annex_kernel_set() names the set in force.
**
** A kernel returns a *score*: a number whose order is the order of the true
** distance, cheap to compute in the scan loop. annex_score_to_distance()
** turns a score into the distance users see:
**
**   metric   element         score                    distance
**   l2       float32, int8   sum (a_i - b_i)^2        sqrt(score)
**   cosine   float32, int8   1 - a.b / (|a| |b|)      score  (1 when a norm is 0)
**   ip       float32, int8   -(a.b)                   score
**   hamming  bit             popcount(a xor b)        score
**
** Also owns the 8-bit code row, a compact form of a float32 vector that a
** graph search can score instead of the vector (see annex_code_encode).
**
** Index code only: nothing here talks to SQLite.
*/
#ifndef ANNEX_DISTANCE_H
#define ANNEX_DISTANCE_H

#include <stddef.h>

typedef enum annex_elem {
  ANNEX_ELEM_FLOAT32 = 1, /* 4 bytes per dimension, little-endian IEEE-754 */
  ANNEX_ELEM_INT8 = 2,    /* 1 signed byte per dimension */
  ANNEX_ELEM_BIT = 3      /* 1 bit per dimension, dims is a multiple of 8 */
} annex_elem;

typedef enum annex_metric {
  ANNEX_METRIC_L2 = 1,
  ANNEX_METRIC_COSINE = 2,
  ANNEX_METRIC_IP = 3,
  ANNEX_METRIC_HAMMING = 4
} annex_metric;

/* Score of the pair (a, b), each `dims` elements long (for bit vectors,
** dims is the number of bits). Neither pointer need be aligned. */
typedef float (*annex_dist_fn)(const void *a, const void *b, size_t dims);

/* Detect CPU features and select the kernel set. Idempotent and cheap after
** the first call; safe to call from several threads. */
void annex_distance_init(void);

/* Name of the kernel set in force: "avx512", "avx2", "neon" or "portable". */
const char *annex_kernel_set(void);

/* Force a kernel set by name (for tests and benchmarks). Returns 0 on
** success, -1 if the set is unknown or this CPU cannot run it. */
int annex_kernel_set_force(const char *zName);

/* The kernel for (elem, metric), or NULL if the combination is invalid
** (hamming is for bit only; bit supports only hamming). */
annex_dist_fn annex_distance_kernel(annex_elem elem, annex_metric metric);

/* Distance as users see it, from a kernel's score. */
double annex_score_to_distance(annex_metric metric, float score);

/* Bytes one vector of `dims` elements of type `elem` occupies. */
size_t annex_vector_bytes(annex_elem elem, size_t dims);

/* Scores of one query against `n` vectors stored back to back at `base`
** (stride = annex_vector_bytes(elem, dims)), written to out[0..n-1]. The
** bulk form lets a kernel set keep the query in registers across vectors. */
void annex_distance_many(annex_elem elem, annex_metric metric,
                         const void *query, const void *base, size_t n,
                         size_t dims, float *out);

/* 8-bit code rows: locally-adaptive scalar quantization (each vector its
** own range; Aguerrebere et al., "Similarity search in the blink of an eye
** with compressed indices", VLDB 2023). A float32 vector x of d dims is
** coded relative to a centre m that the caller keeps fixed for every row and
** query scored together (NULL: the origin):
**   f32 lo, f32 delta, f32 norm2, d x u8 c   (ANNEX_CODE_HEADER + d bytes)
** with w = x - m, lo = min w, delta = (max w - lo) / 255, c[i] = round((w[i]
** - lo) / delta) and norm2 = sum (lo + delta * c[i])^2; the row decodes to
** m[i] + lo + delta * c[i], within delta / 2 of x[i]. A centre near the data
** (for example one of its vectors) keeps the l2 sums below free of
** cancellation when the data lies far from the origin. The floats are in
** host order (rows live in memory only, never on disk).
**
** A query is prepared once per search (annex_code_query) into
**   f32 q2, f32 q1, f32 step, f32 qm, i16 u[d rounded up to 32, zero-padded]
** where v = q - m for l2 and v = q for ip, u[i] = round(v[i] / step) with
** step = max |v| / 16383, q1 = sum v, q2 = sum v^2 (exact values) and qm =
** q.m (ip with a centre). A kernel then needs one integer dot product P =
** sum u[i] * c[i]:
**   l2   |q - decoded|^2 = q2 + norm2 - 2 (lo q1 + delta step P)
**   ip   -(q . decoded)  = -(qm + lo q1 + delta step P)
** Rounding v to u moves a score by at most delta * step / 2 * sum c (l2:
** twice that): with 15-bit steps, far less than the codes' own error. */
#define ANNEX_CODE_HEADER 12
#define ANNEX_CODE_QUERY_HEADER 16
size_t annex_code_bytes(size_t dims);
/* x (and centre) must be finite. */
void annex_code_encode(const float *x, const float *centre, size_t dims,
                       unsigned char *row);
size_t annex_code_query_bytes(size_t dims);
/* Prepare query q (finite) for the code kernel of metric (l2 or ip) into
** out: annex_code_query_bytes(dims) bytes, aligned for a float (as
** malloc's blocks are). */
void annex_code_query(annex_metric metric, const float *q,
                      const float *centre, size_t dims, void *out);
/* The kernel scoring a prepared query (a) against a code row (b), with the
** score of the table above on the decoded vector: l2 for ANNEX_METRIC_L2,
** -(q.decoded) for ANNEX_METRIC_IP; NULL for any other metric. */
annex_dist_fn annex_code_kernel(annex_metric metric);

#endif /* ANNEX_DISTANCE_H */
