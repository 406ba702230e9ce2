/*
** distance.c — kernel dispatch and the portable distance kernels.
**
** Owns: CPU feature detection and the choice of kernel set (the one
** dispatch-table pointer below), the public entry points of distance.h, and
** the portable kernel set: plain C, float32 on GCC/Clang four-float vectors,
** int8 and bit on loops the compiler auto-vectorises. The SIMD sets live in
** distance_avx2.c, distance_avx512.c and distance_neon.c.
*/
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "distance.h"
#include "distance_internal.h"

/* Four floats. GCC and Clang lower arithmetic on it to SSE, NEON or scalar
** code as the target allows; plain loops over float arrays vectorise far
** less reliably (a cosine loop ran up to 8x slower at -O3 in GCC 12). */
typedef float f32x4 __attribute__((vector_size(16)));

/* The dispatch table: the kernel set in force, NULL until the first init. */
static _Atomic(const annex_kernels *) g_kernels;

/* ---------------------------------------------------------------- float32 */

static float f32_at(const unsigned char *p, size_t i) {
  float v;
  memcpy(&v, p + 4 * i, sizeof v);
  return v;
}

static f32x4 f32x4_at(const unsigned char *p, size_t i) {
  f32x4 v;
  memcpy(&v, p + 4 * i, sizeof v);
  return v;
}

static float f32x4_sum(f32x4 v) {
  return (v[0] + v[1]) + (v[2] + v[3]);
}

static float f32_l2_portable(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  f32x4 s0 = {0}, s1 = {0};
  float tail = 0.0f;
  size_t i = 0;
  for (; i + 8 <= dims; i += 8) {
    f32x4 d0 = f32x4_at(a, i) - f32x4_at(b, i);
    f32x4 d1 = f32x4_at(a, i + 4) - f32x4_at(b, i + 4);
    s0 += d0 * d0;
    s1 += d1 * d1;
  }
  for (; i < dims; i++) {
    float d = f32_at(a, i) - f32_at(b, i);
    tail += d * d;
  }
  return f32x4_sum(s0 + s1) + tail;
}

static float f32_dot_portable(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  f32x4 s0 = {0}, s1 = {0};
  float tail = 0.0f;
  size_t i = 0;
  for (; i + 8 <= dims; i += 8) {
    s0 += f32x4_at(a, i) * f32x4_at(b, i);
    s1 += f32x4_at(a, i + 4) * f32x4_at(b, i + 4);
  }
  for (; i < dims; i++) tail += f32_at(a, i) * f32_at(b, i);
  return f32x4_sum(s0 + s1) + tail;
}

static float f32_ip_portable(const void *pA, const void *pB, size_t dims) {
  return -f32_dot_portable(pA, pB, dims);
}

/* Running sums of a.b, a.a and b.b for the cosine kernel. */
typedef struct f32_cos_acc {
  f32x4 ab, aa, bb;
} f32_cos_acc;

static void cos_step(f32_cos_acc *s, f32x4 x, f32x4 y) {
  s->ab += x * y;
  s->aa += x * x;
  s->bb += y * y;
}

static float f32_cosine_portable(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  f32_cos_acc s0 = {{0}, {0}, {0}}, s1 = {{0}, {0}, {0}};
  float tAB = 0.0f, tAA = 0.0f, tBB = 0.0f;
  size_t i = 0;
  for (; i + 8 <= dims; i += 8) {
    cos_step(&s0, f32x4_at(a, i), f32x4_at(b, i));
    cos_step(&s1, f32x4_at(a, i + 4), f32x4_at(b, i + 4));
  }
  for (; i < dims; i++) {
    float x = f32_at(a, i), y = f32_at(b, i);
    tAB += x * y;
    tAA += x * x;
    tBB += y * y;
  }
  return annex_cosine_score(f32x4_sum(s0.ab + s1.ab) + tAB,
                            f32x4_sum(s0.aa + s1.aa) + tAA,
                            f32x4_sum(s0.bb + s1.bb) + tBB);
}

/* ------------------------------------------------------------------- int8 */

/* The int8 loops sum blocks of ANNEX_I8_BLOCK dimensions in int32 (which the
** compiler vectorises) and add the block sums in int64. */

static int32_t i8_l2_block(const int8_t *a, const int8_t *b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t d = (int32_t)a[i] - (int32_t)b[i];
    s += d * d;
  }
  return s;
}

static int32_t i8_dot_block(const int8_t *a, const int8_t *b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; i++) s += (int32_t)a[i] * (int32_t)b[i];
  return s;
}

/* Adds a.b, a.a and b.b of n <= ANNEX_I8_BLOCK pairs to *pAB, *pAA, *pBB. */
static void i8_cos_block(const int8_t *a, const int8_t *b, size_t n,
                         int64_t *pAB, int64_t *pAA, int64_t *pBB) {
  int32_t ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t x = a[i], y = b[i];
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  *pAB += ab;
  *pAA += aa;
  *pBB += bb;
}

static size_t i8_block_len(size_t i, size_t dims) {
  return dims - i < ANNEX_I8_BLOCK ? dims - i : ANNEX_I8_BLOCK;
}

static float i8_l2_portable(const void *pA, const void *pB, size_t dims) {
  const int8_t *a = pA, *b = pB;
  int64_t s = 0;
  for (size_t i = 0; i < dims; i += ANNEX_I8_BLOCK) {
    s += i8_l2_block(a + i, b + i, i8_block_len(i, dims));
  }
  return (float)s;
}

static float i8_ip_portable(const void *pA, const void *pB, size_t dims) {
  const int8_t *a = pA, *b = pB;
  int64_t s = 0;
  for (size_t i = 0; i < dims; i += ANNEX_I8_BLOCK) {
    s += i8_dot_block(a + i, b + i, i8_block_len(i, dims));
  }
  return (float)-s;
}

static float i8_cosine_portable(const void *pA, const void *pB, size_t dims) {
  const int8_t *a = pA, *b = pB;
  int64_t ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < dims; i += ANNEX_I8_BLOCK) {
    i8_cos_block(a + i, b + i, i8_block_len(i, dims), &ab, &aa, &bb);
  }
  return annex_cosine_score((double)ab, (double)aa, (double)bb);
}

/* -------------------------------------------------------------------- bit */

static float bit_hamming_portable(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  size_t n = dims / 8, i = 0;
  uint64_t cnt = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    memcpy(&x, a + i, 8);
    memcpy(&y, b + i, 8);
    cnt += (uint64_t)__builtin_popcountll(x ^ y);
  }
  for (; i < n; i++) cnt += (uint64_t)__builtin_popcount((unsigned)(a[i] ^ b[i]));
  return (float)cnt;
}

/* ------------------------------------------------------------ code rows */

/* P = sum u[i] * c[i]: four 32-bit partial sums per block. */
static inline __attribute__((always_inline)) int64_t code_dot_portable(
    const int16_t *u, const unsigned char *c, size_t dims) {
  int64_t tot = 0;
  size_t i = 0;
  while (i < dims) {
    size_t end = dims - i < ANNEX_CODE_BLOCK ? dims : i + ANNEX_CODE_BLOCK;
    int32_t s[4] = {0, 0, 0, 0};
    for (; i + 4 <= end; i += 4) {
      for (int l = 0; l < 4; l++) s[l] += (int32_t)u[i + l] * c[i + l];
    }
    for (; i < end; i++) s[0] += (int32_t)u[i] * c[i];
    tot += (int64_t)s[0] + s[1] + s[2] + s[3];
  }
  return tot;
}

float annex_code_l2_portable(const void *pQ, const void *pRow, size_t dims) {
  const unsigned char *row = pRow;
  return annex_code_l2_score(pQ, row, dims,
                             code_dot_portable(annex_code_steps(pQ), row, dims));
}

float annex_code_ip_portable(const void *pQ, const void *pRow, size_t dims) {
  return annex_code_ip_score(
      pQ, code_dot_portable(annex_code_steps(pQ), pRow, dims));
}

/* The float form: a plain loop over the padded lanes (compilers vectorise
** it). */
float annex_code_l2f_portable(const void *pQ, const void *pRow, size_t dims) {
  const unsigned char *c = pRow;
  const size_t n = annex_code_lanes(dims);
  const float *r = annex_code_qv(pQ), *st = r + n;
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (size_t i = 0; i < n; i += 4) {
    for (int l = 0; l < 4; l++) {
      float e = r[i + l] - st[i + l] * (float)c[i + l];
      s[l] += e * e;
    }
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

const annex_kernels annex_kernels_portable = {
  "portable",
  f32_l2_portable, f32_cosine_portable, f32_ip_portable,
  i8_l2_portable, i8_cosine_portable, i8_ip_portable,
  bit_hamming_portable,
  annex_code_l2_portable, annex_code_l2f_portable, annex_code_ip_portable
};

/* --------------------------------------------------------------- dispatch */

#if defined(__x86_64__)
static int cpu_has_avx2(void) {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int cpu_has_avx512(void) {
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}
#endif

/* The kernel set called zName if this CPU can run it, else NULL. */
static const annex_kernels *kernels_by_name(const char *zName) {
  if (zName == 0) return 0;
  if (strcmp(zName, "portable") == 0) return &annex_kernels_portable;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (strcmp(zName, "avx2") == 0) {
    return cpu_has_avx2() ? &annex_kernels_avx2 : 0;
  }
  if (strcmp(zName, "avx512") == 0) {
    if (!cpu_has_avx512()) return 0;
    return annex_kernels_avx512(__builtin_cpu_supports("avx512vpopcntdq"));
  }
#endif
#if defined(__aarch64__)
  if (strcmp(zName, "neon") == 0) return &annex_kernels_neon;
#endif
  return 0;
}

/* The best kernel set this CPU can run. */
static const annex_kernels *kernels_best(void) {
  static const char *const azPref[] = {"avx512", "avx2", "neon"};
  for (size_t i = 0; i < sizeof azPref / sizeof azPref[0]; i++) {
    const annex_kernels *k = kernels_by_name(azPref[i]);
    if (k) return k;
  }
  return &annex_kernels_portable;
}

static const annex_kernels *kernels_active(void) {
  const annex_kernels *k = atomic_load_explicit(&g_kernels, memory_order_acquire);
  if (k == 0) {
    annex_distance_init();
    k = atomic_load_explicit(&g_kernels, memory_order_acquire);
  }
  return k;
}

void annex_distance_init(void) {
  const annex_kernels *expected = 0;
  if (atomic_load_explicit(&g_kernels, memory_order_acquire)) return;
  atomic_compare_exchange_strong_explicit(&g_kernels, &expected, kernels_best(),
                                          memory_order_acq_rel,
                                          memory_order_acquire);
}

const char *annex_kernel_set(void) {
  return kernels_active()->zName;
}

int annex_kernel_set_force(const char *zName) {
  const annex_kernels *k = kernels_by_name(zName);
  if (k == 0) return -1;
  atomic_store_explicit(&g_kernels, k, memory_order_release);
  return 0;
}

annex_dist_fn annex_distance_kernel(annex_elem elem, annex_metric metric) {
  const annex_kernels *k = kernels_active();
  switch (elem) {
    case ANNEX_ELEM_FLOAT32:
      if (metric == ANNEX_METRIC_L2) return k->f32_l2;
      if (metric == ANNEX_METRIC_COSINE) return k->f32_cosine;
      if (metric == ANNEX_METRIC_IP) return k->f32_ip;
      return 0;
    case ANNEX_ELEM_INT8:
      if (metric == ANNEX_METRIC_L2) return k->i8_l2;
      if (metric == ANNEX_METRIC_COSINE) return k->i8_cosine;
      if (metric == ANNEX_METRIC_IP) return k->i8_ip;
      return 0;
    case ANNEX_ELEM_BIT:
      return metric == ANNEX_METRIC_HAMMING ? k->bit_hamming : 0;
  }
  return 0;
}

double annex_score_to_distance(annex_metric metric, float score) {
  if (metric == ANNEX_METRIC_L2) return score > 0.0f ? sqrt((double)score) : 0.0;
  return (double)score;
}

size_t annex_vector_bytes(annex_elem elem, size_t dims) {
  switch (elem) {
    case ANNEX_ELEM_FLOAT32: return dims * sizeof(float);
    case ANNEX_ELEM_INT8: return dims;
    case ANNEX_ELEM_BIT: return dims / 8;
  }
  return 0;
}

size_t annex_code_bytes(size_t dims) {
  return (dims + ANNEX_CODE_ALIGN - 1) & ~(size_t)(ANNEX_CODE_ALIGN - 1);
}

void annex_code_fit(const float *aMin, const float *aMax, size_t dims,
                    float *aLo, float *aStep) {
  for (size_t i = 0; i < dims; i++) {
    double span = (double)aMax[i] - aMin[i];
    double lo = aMin[i] - span / 64.0, st = span * (1.0 + 2.0 / 64.0) / 255.0;
    /* A constant dimension (or one too narrow to divide) codes as 0. */
    aLo[i] = (float)(span > 0.0 ? lo : aMin[i]);
    aStep[i] = (float)st;
    if (!(aStep[i] > 0.0f) || !isfinite(1.0f / aStep[i])) aStep[i] = 0.0f;
  }
}

int annex_code_has_norm(size_t dims) {
  return annex_code_bytes(dims) >= ((dims + 3) & ~(size_t)3) + sizeof(float);
}

/* Half the code range: rows and queries are centred on each range's middle
** (lo + ANNEX_CODE_MID * step), which keeps the l2 sums small. */
#define ANNEX_CODE_MID 127.5

size_t annex_code_encode(const float *x, const float *aLo, const float *aStep,
                         size_t dims, unsigned char *row) {
  const size_t nB = annex_code_bytes(dims);
  size_t nClamp = 0;
  double n2 = 0.0;
  for (size_t i = 0; i < dims; i++) {
    float v = aStep[i] > 0.0f ? (x[i] - aLo[i]) / aStep[i] + 0.5f : 0.0f;
    double y;
    if (v < 0.0f || v >= 256.0f || (aStep[i] == 0.0f && x[i] != aLo[i])) {
      nClamp++;
    }
    row[i] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (unsigned char)v;
    y = (double)aStep[i] * (row[i] - ANNEX_CODE_MID);
    n2 += y * y;
  }
  memset(row + dims, 0, nB - dims);
  if (annex_code_has_norm(dims)) {
    float n = (float)n2;
    memcpy(row + nB - sizeof n, &n, sizeof n);
  }
  return nClamp;
}

/* Largest |u[i]| of an integer-form query, 2^14 - 1: the bound
** ANNEX_CODE_BLOCK is sized for. */
#define ANNEX_CODE_STEPS 16383

static size_t code_int_bytes(size_t dims) {
  return ANNEX_CODE_QUERY_HEADER + sizeof(int16_t) * ((dims + 31) & ~(size_t)31);
}

static size_t code_float_bytes(size_t dims) {
  return ANNEX_CODE_QUERY_HEADER + 2 * sizeof(float) * annex_code_lanes(dims);
}

size_t annex_code_query_bytes(size_t dims) {
  size_t a = code_int_bytes(dims), b = code_float_bytes(dims);
  return a > b ? a : b;
}

/* v[i] of the integer form (distance.h): l2 (q - middle) step, ip q step. */
static inline double code_query_v(annex_metric metric, const float *q,
                                  const float *aLo, const float *aStep,
                                  size_t i) {
  if (metric == ANNEX_METRIC_L2) {
    return ((double)q[i] - aLo[i] - ANNEX_CODE_MID * aStep[i]) * aStep[i];
  }
  return (double)q[i] * aStep[i];
}

/* The float form: r = q - lo, s = step, both zero-padded to the lanes. */
static void code_query_float(const float *q, const float *aLo,
                             const float *aStep, size_t dims, void *out) {
  const size_t n = annex_code_lanes(dims);
  float *r = (float *)((unsigned char *)out + ANNEX_CODE_QUERY_HEADER);
  memset(out, 0, ANNEX_CODE_QUERY_HEADER);
  for (size_t i = 0; i < dims; i++) {
    r[i] = q[i] - aLo[i];
    r[n + i] = aStep[i];
  }
  for (size_t i = dims; i < n; i++) r[i] = r[n + i] = 0.0f;
}

void annex_code_query(annex_metric metric, const float *q, const float *aLo,
                      const float *aStep, size_t dims, void *out) {
  int16_t *u = (int16_t *)((unsigned char *)out + ANNEX_CODE_QUERY_HEADER);
  float h[ANNEX_CODE_QUERY_HEADER / sizeof(float)] = {0};
  double c = 0.0, mx = 0.0;
  float step, inv;
  if (metric == ANNEX_METRIC_L2 && !annex_code_has_norm(dims)) {
    code_query_float(q, aLo, aStep, dims, out);
    return;
  }
  for (size_t i = 0; i < dims; i++) { /* C (distance.h) and max |v| */
    double v = code_query_v(metric, q, aLo, aStep, i);
    if (metric == ANNEX_METRIC_L2) {
      double r = (double)q[i] - aLo[i] - ANNEX_CODE_MID * aStep[i];
      c += r * r + 2.0 * ANNEX_CODE_MID * v;
    } else {
      c += (double)q[i] * aLo[i];
    }
    if (fabs(v) > mx) mx = fabs(v);
  }
  step = (float)mx / (float)ANNEX_CODE_STEPS;
  /* All steps zero (a zero or vanishing query): P is 0, C exact. */
  inv = step > 0.0f && isfinite(1.0f / step) ? 1.0f / step : 0.0f;
  for (size_t i = 0; i < dims; i++) {
    long k = lrintf((float)code_query_v(metric, q, aLo, aStep, i) * inv);
    if (k > ANNEX_CODE_STEPS) k = ANNEX_CODE_STEPS;
    if (k < -ANNEX_CODE_STEPS) k = -ANNEX_CODE_STEPS;
    u[i] = (int16_t)k;
  }
  for (size_t i = dims; i < ((dims + 31) & ~(size_t)31); i++) u[i] = 0;
  h[0] = (float)c;
  h[1] = inv > 0.0f ? step : 0.0f;
  memcpy(out, h, sizeof h);
}

annex_dist_fn annex_code_kernel(annex_metric metric, size_t dims) {
  const annex_kernels *k = kernels_active();
  if (metric == ANNEX_METRIC_L2) {
    return annex_code_has_norm(dims) ? k->code_l2 : k->code_l2f;
  }
  if (metric == ANNEX_METRIC_IP) return k->code_ip;
  return 0;
}

/* The vectors are read in order, which hardware prefetchers follow well:
** software prefetch of the next vector measured slower, so there is none. */
void annex_distance_many(annex_elem elem, annex_metric metric,
                         const void *query, const void *base, size_t n,
                         size_t dims, float *out) {
  annex_dist_fn f = annex_distance_kernel(elem, metric);
  size_t stride = annex_vector_bytes(elem, dims);
  const unsigned char *p = base;
  for (size_t i = 0; i < n; i++) {
    out[i] = f ? f(query, p + i * stride, dims) : NAN;
  }
}
