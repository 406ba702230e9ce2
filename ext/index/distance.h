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

/* 8-bit code rows: scalar quantization with one range per dimension, shared
** by every row of an index (as FAISS's SQ8). The ranges come from the data
** (annex_code_fit over per-dimension lows and highs); a row holds no
** per-row range, so a 128-d row is exactly two 64-byte lines:
**   u8 c[d], zero-padded to annex_code_bytes(d) (a multiple of 64),
**   and, when the pad has room (annex_code_has_norm), its last 4 bytes
**   f32 norm = sum (step[i] (c[i] - 127.5))^2
** with c[i] = round((x[i] - lo[i]) / step[i]) clamped to 0..255; the row
** decodes to lo[i] + step[i] c[i], within step[i] / 2 of x[i] when x[i]
** lies in the range. The caller allocates rows at multiples of 64 bytes
** from a 64-byte-aligned base, so each row starts a cache line. Floats are
** in host order (rows live in memory only, never on disk).
**
** A query q is prepared once per search (annex_code_query). The integer
** form (ip; l2 when rows have a norm) is
**   f32 C, f32 step, pad to 64 bytes, i16 u[d rounded up to 32, zero pad]
** with u[i] = round(v[i] / step), step = max |v| / 16383, and a kernel
** needs one integer dot product P = sum u[i] c[i]:
**   l2   v = r step, r = q - (lo + 127.5 step), C = sum r^2 + 255 sum v
**        |q - decoded|^2 = C + norm - 2 step P
**   ip   v = q step, C = q . lo
**        -(q . decoded)  = -(C + step P)
** Rounding v to u moves a score by at most step / 2 * sum c (l2: twice
** that): with 15-bit steps, far less than the codes' own error. The float
** form (l2 rows without a norm, e.g. d a multiple of 64) is
**   pad to 64 bytes, f32 r[P], f32 s[P]   r = q - lo, s = step
** (P = d rounded up to 16, the pad zero), scored as
**   |q - decoded|^2 = sum (r[i] - s[i] c[i])^2,
** which costs about twice the integer form's work but reads no norm: rows
** of d = 64k stay exactly k lines. */
#define ANNEX_CODE_ALIGN 64
#define ANNEX_CODE_QUERY_HEADER 64
/* Bytes of one code row: dims rounded up to ANNEX_CODE_ALIGN. */
size_t annex_code_bytes(size_t dims);
/* 1 if a row of dims codes carries its norm (4 bytes free in its pad). */
int annex_code_has_norm(size_t dims);
/* The ranges of dims dimensions from their lows and highs over the data
** (finite): each widened by 1/64 of its span on either side, so values a
** little outside the data seen still code without clamping. aLo and
** aStep may be aMin and aMax (written over in place). */
void annex_code_fit(const float *aMin, const float *aMax, size_t dims,
                    float *aLo, float *aStep);
/* Code x (finite) into row (annex_code_bytes(dims) bytes, pad zeroed,
** norm set). Returns the number of dimensions clamped to the range. */
size_t annex_code_encode(const float *x, const float *aLo, const float *aStep,
                         size_t dims, unsigned char *row);
size_t annex_code_query_bytes(size_t dims);
/* Prepare query q (finite) for the code kernel of (metric, dims) into out:
** annex_code_query_bytes(dims) bytes, aligned for a float (as malloc's
** blocks are). */
void annex_code_query(annex_metric metric, const float *q, const float *aLo,
                      const float *aStep, size_t dims, void *out);
/* The kernel scoring a query prepared for (metric, dims) (a) against a code
** row (b), with the score of the table above on the decoded vector: l2
** for ANNEX_METRIC_L2, -(q.decoded) for ANNEX_METRIC_IP; NULL for any
** other metric. */
annex_dist_fn annex_code_kernel(annex_metric metric, size_t dims);

#endif /* ANNEX_DISTANCE_H */
