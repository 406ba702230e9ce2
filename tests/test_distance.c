/*
** test_distance.c — cmocka unit tests for ext/index/distance.{h,c}.
**
** Owns: the checks that every kernel of every kernel set this CPU can run
** ("portable", "avx2", "avx512", "neon") agrees with a double-precision (or
** exact integer) reference on random inputs of every dimension from 1 to 70
** and some large ones, from unaligned starts; that annex_distance_many
** matches the per-pair kernel; and the small API contracts of distance.h
** (NULL kernels for invalid combinations, score to distance, vector sizes,
** cosine of a zero vector, forcing kernel sets by name); and that 8-bit code
** rows decode within half a step of the vector and every set scores them
** as the reference scores the decoded vector.
**
** Build (CMake, after include(ext/index/kernels.cmake), which gives the SIMD
** files their ISA flags):
**   add_executable(test_distance tests/test_distance.c ${ANNEX_KERNEL_SOURCES})
**   target_link_libraries(test_distance cmocka m)
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../ext/index/distance.h"

#define N_SETS 4
#define N_KERNELS 7
#define MAX_OFFSET 3

static const char *const azSet[N_SETS] = {"portable", "avx2", "avx512", "neon"};

/* One (element type, metric) combination under test. */
typedef struct kernel_case {
  const char *zName;
  annex_elem elem;
  annex_metric metric;
} kernel_case;

static const kernel_case aKernel[N_KERNELS] = {
  {"f32_l2", ANNEX_ELEM_FLOAT32, ANNEX_METRIC_L2},
  {"f32_cosine", ANNEX_ELEM_FLOAT32, ANNEX_METRIC_COSINE},
  {"f32_ip", ANNEX_ELEM_FLOAT32, ANNEX_METRIC_IP},
  {"i8_l2", ANNEX_ELEM_INT8, ANNEX_METRIC_L2},
  {"i8_cosine", ANNEX_ELEM_INT8, ANNEX_METRIC_COSINE},
  {"i8_ip", ANNEX_ELEM_INT8, ANNEX_METRIC_IP},
  {"bit_hamming", ANNEX_ELEM_BIT, ANNEX_METRIC_HAMMING},
};

/* State of one parametrised test: a kernel set and, for per-kernel tests,
** the kernel. */
typedef struct test_param {
  const char *zSet;
  const kernel_case *pKernel;
} test_param;

/* Large dimensions tested after every dimension from 1 to 70. */
static const size_t aLargeDims[] = {128, 384, 768, 1536, 4099};

/* ------------------------------------------------------------- utilities */

static uint64_t rng_next(uint64_t *pState) {
  uint64_t x = *pState;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *pState = x;
  return x;
}

static float rng_float(uint64_t *pState) {
  return (float)((double)(rng_next(pState) >> 11) / 9007199254740992.0 * 2.0 -
                 1.0);
}

/* Forces set zSet; returns 0 (after printing why) if this CPU cannot run it. */
static int use_set(const char *zSet) {
  if (annex_kernel_set_force(zSet) != 0) {
    print_message("[   SKIP   ] kernel set \"%s\" not available here\n", zSet);
    return 0;
  }
  assert_string_equal(annex_kernel_set(), zSet);
  return 1;
}

/* Random vector of dims elements of type elem written at p. */
static void fill_random(unsigned char *p, annex_elem elem, size_t dims,
                        uint64_t *pRng) {
  size_t nByte = annex_vector_bytes(elem, dims);
  if (elem == ANNEX_ELEM_FLOAT32) {
    for (size_t i = 0; i < dims; i++) {
      float v = rng_float(pRng);
      memcpy(p + 4 * i, &v, 4);
    }
    return;
  }
  for (size_t i = 0; i < nByte; i++) p[i] = (unsigned char)rng_next(pRng);
}

static double f32_at(const unsigned char *p, size_t i) {
  float v;
  memcpy(&v, p + 4 * i, 4);
  return v;
}

/* Clamped 1 - dot/sqrt(aa*bb), or 1 for a zero norm, as distance.h says. */
static double ref_cosine(double dot, double aa, double bb) {
  double s;
  if (aa <= 0.0 || bb <= 0.0) return 1.0;
  s = 1.0 - dot / sqrt(aa * bb);
  return s < 0.0 ? 0.0 : (s > 2.0 ? 2.0 : s);
}

/* --------------------------------------------------------- references */

/* Double-precision reference for a float32 kernel; *pTol gets the tolerance
** 1e-4 * (|ref| + sum of |terms|), terms normalised by |a||b| for cosine. */
static double ref_f32(annex_metric m, const unsigned char *a,
                      const unsigned char *b, size_t dims, double *pTol) {
  double dot = 0, aa = 0, bb = 0, l2 = 0, absDot = 0, ref;
  for (size_t i = 0; i < dims; i++) {
    double x = f32_at(a, i), y = f32_at(b, i);
    dot += x * y;
    absDot += fabs(x * y);
    aa += x * x;
    bb += y * y;
    l2 += (x - y) * (x - y);
  }
  if (m == ANNEX_METRIC_L2) {
    *pTol = 1e-4 * 2.0 * l2;
    return l2;
  }
  if (m == ANNEX_METRIC_IP) {
    *pTol = 1e-4 * (fabs(dot) + absDot);
    return -dot;
  }
  ref = ref_cosine(dot, aa, bb);
  *pTol = 1e-4 * (fabs(ref) + (aa > 0 && bb > 0 ? absDot / sqrt(aa * bb) : 0));
  return ref;
}

/* Exact integer reference for an int8 kernel, as the float it must return. */
static float ref_i8(annex_metric m, const int8_t *a, const int8_t *b,
                    size_t dims) {
  int64_t dot = 0, aa = 0, bb = 0, l2 = 0;
  for (size_t i = 0; i < dims; i++) {
    int64_t x = a[i], y = b[i];
    dot += x * y;
    aa += x * x;
    bb += y * y;
    l2 += (x - y) * (x - y);
  }
  if (m == ANNEX_METRIC_L2) return (float)l2;
  if (m == ANNEX_METRIC_IP) return (float)-dot;
  return (float)ref_cosine((double)dot, (double)aa, (double)bb);
}

static float ref_hamming(const unsigned char *a, const unsigned char *b,
                         size_t dims) {
  uint64_t n = 0;
  for (size_t i = 0; i < dims / 8; i++) {
    for (unsigned x = (unsigned)(a[i] ^ b[i]); x; x >>= 1) n += x & 1u;
  }
  return (float)n;
}

/* Checks kernel f on (a, b) against the reference; identifies the failing
** case (set, kernel, dims, offsets) in the message. */
static void check_pair(const test_param *p, annex_dist_fn f,
                       const unsigned char *a, const unsigned char *b,
                       size_t dims) {
  const kernel_case *k = p->pKernel;
  float got = f(a, b, dims);
  if (k->elem == ANNEX_ELEM_FLOAT32) {
    double tol, ref = ref_f32(k->metric, a, b, dims, &tol);
    if (!(fabs((double)got - ref) <= tol)) {
      fail_msg("%s/%s dims=%zu offsets=%u,%u: got %.9g want %.9g (tol %.3g)",
               p->zSet, k->zName, dims, (unsigned)((uintptr_t)a % 16),
               (unsigned)((uintptr_t)b % 16), (double)got, ref, tol);
    }
    return;
  }
  float want = k->elem == ANNEX_ELEM_INT8
                   ? ref_i8(k->metric, (const int8_t *)a, (const int8_t *)b, dims)
                   : ref_hamming(a, b, dims);
  if (got != want) {
    fail_msg("%s/%s dims=%zu: got %.9g want %.9g (must be exact)", p->zSet,
             k->zName, dims, (double)got, (double)want);
  }
}

/* Random pairs at every start offset 0..MAX_OFFSET (elements, or bytes for
** float32), for one dims. Bit vectors use dims = 8 * n. */
static void check_dims(const test_param *p, annex_dist_fn f, size_t n,
                       uint64_t *pRng) {
  const kernel_case *k = p->pKernel;
  size_t dims = k->elem == ANNEX_ELEM_BIT ? 8 * n : n;
  size_t nByte = annex_vector_bytes(k->elem, dims);
  for (size_t off = 0; off <= MAX_OFFSET; off++) {
    size_t offB = (off + 1) % (MAX_OFFSET + 1);
    unsigned char *bufA = malloc(nByte + MAX_OFFSET);
    unsigned char *bufB = malloc(nByte + MAX_OFFSET);
    assert_non_null(bufA);
    assert_non_null(bufB);
    fill_random(bufA + off, k->elem, dims, pRng);
    fill_random(bufB + offB, k->elem, dims, pRng);
    check_pair(p, f, bufA + off, bufB + offB, dims);
    check_pair(p, f, bufA + off, bufA + off, dims);
    free(bufA);
    free(bufB);
  }
}

/* ------------------------------------------------------------------ tests */

/* One kernel of one set, against the reference on all dimensions. */
static void test_kernel(void **state) {
  const test_param *p = *state;
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  annex_dist_fn f;
  if (!use_set(p->zSet)) {
    skip();
  }
  f = annex_distance_kernel(p->pKernel->elem, p->pKernel->metric);
  assert_non_null(f);
  for (size_t n = 1; n <= 70; n++) check_dims(p, f, n, &rng);
  for (size_t i = 0; i < sizeof aLargeDims / sizeof aLargeDims[0]; i++) {
    check_dims(p, f, aLargeDims[i], &rng);
  }
}

/* int8 sums far beyond 2^31 (all -128 against all 127) must stay exact. */
static void test_i8_no_overflow(void **state) {
  const test_param *p = *state;
  const size_t dims = 70001;
  int8_t *a, *b;
  if (!use_set(p->zSet)) skip();
  a = malloc(dims);
  b = malloc(dims);
  assert_non_null(a);
  assert_non_null(b);
  memset(a, 0x80, dims);
  memset(b, 0x7f, dims);
  for (size_t k = 0; k < N_KERNELS; k++) {
    const kernel_case *kc = &aKernel[k];
    annex_dist_fn f = annex_distance_kernel(kc->elem, kc->metric);
    if (kc->elem != ANNEX_ELEM_INT8) continue;
    assert_true(f(a, b, dims) == ref_i8(kc->metric, a, b, dims));
    assert_true(f(a, a, dims) == ref_i8(kc->metric, a, a, dims));
  }
  free(a);
  free(b);
}

/* annex_distance_many equals the per-pair kernel for every combination. */
static void test_many(void **state) {
  const test_param *p = *state;
  static const size_t aDims[] = {8, 24, 64, 72, 128, 136, 768};
  const size_t nVec = 37;
  uint64_t rng = 42;
  if (!use_set(p->zSet)) skip();
  for (size_t d = 0; d < sizeof aDims / sizeof aDims[0]; d++) {
    for (size_t k = 0; k < N_KERNELS; k++) {
      const kernel_case *kc = &aKernel[k];
      annex_dist_fn f = annex_distance_kernel(kc->elem, kc->metric);
      size_t stride = annex_vector_bytes(kc->elem, aDims[d]);
      unsigned char *q = malloc(stride + 1);
      unsigned char *base = malloc(stride * nVec + 1);
      float out[37];
      assert_non_null(q);
      assert_non_null(base);
      fill_random(q + 1, kc->elem, aDims[d], &rng);
      for (size_t i = 0; i < nVec; i++) {
        fill_random(base + 1 + i * stride, kc->elem, aDims[d], &rng);
      }
      annex_distance_many(kc->elem, kc->metric, q + 1, base + 1, nVec, aDims[d],
                          out);
      for (size_t i = 0; i < nVec; i++) {
        assert_true(out[i] == f(q + 1, base + 1 + i * stride, aDims[d]));
      }
      free(q);
      free(base);
    }
  }
}

/* Bound on the float error of one code-kernel term whose operands are
** about as large as mag: a few roundings of 2^-24 relative each. */
static double code_eps(double mag) { return 8.0 * ldexp(mag, -24); }

/* 8-bit code rows with per-dimension ranges fitted to a sample of vectors:
** each value of a vector inside the sample's ranges decodes within step / 2,
** the row's pad is zero, and the code kernels score a prepared query
** against the row as a double-precision reference scores the query against
** the decoded vector, within the float rounding of their terms. For every
** dims from 1 to 70 and the large ones, from unaligned row starts, near and
** far from the origin. */
static void check_code_row(size_t dims, size_t off, float shift,
                           uint64_t *pRng) {
  const size_t nB = annex_code_bytes(dims);
  unsigned char *row = malloc(nB + MAX_OFFSET), *r;
  unsigned char *pL2 = malloc(annex_code_query_bytes(dims));
  unsigned char *pIp = malloc(annex_code_query_bytes(dims));
  float *aMin = malloc(dims * sizeof(float)), *aMax = malloc(dims * sizeof(float));
  float *aLo = malloc(dims * sizeof(float)), *aSt = malloc(dims * sizeof(float));
  float *x = malloc(dims * sizeof(float)), *q = malloc(dims * sizeof(float));
  double l2 = 0, e2 = 0, dot = 0, sLo = 0, sWc = 0, n2 = 0;
  annex_dist_fn fL2 = annex_code_kernel(ANNEX_METRIC_L2, dims);
  annex_dist_fn fIp = annex_code_kernel(ANNEX_METRIC_IP, dims);
  const int bNorm = annex_code_has_norm(dims);
  float hL2[2], hIp[2];
  double sc = 0, mag = 0;
  assert_true(row && pL2 && pIp && aMin && aMax && aLo && aSt && x && q);
  assert_true(fL2 && fIp);
  assert_null(annex_code_kernel(ANNEX_METRIC_COSINE, dims));
  assert_true(nB >= dims && nB % ANNEX_CODE_ALIGN == 0);
  r = row + off;
  for (size_t i = 0; i < dims; i++) {
    float a = shift + 3.0f * rng_float(pRng), b = shift + 3.0f * rng_float(pRng);
    aMin[i] = a < b ? a : b;
    aMax[i] = a < b ? b : a;
    x[i] = aMin[i] + (aMax[i] - aMin[i]) * (0.5f + 0.5f * rng_float(pRng));
    q[i] = shift + 3.0f * rng_float(pRng);
  }
  annex_code_fit(aMin, aMax, dims, aLo, aSt);
  memset(r, 0xAB, nB);
  assert_int_equal(annex_code_encode(x, aLo, aSt, dims, r), 0);
  for (size_t i = dims; i < nB - (bNorm ? 4 : 0); i++) assert_int_equal(r[i], 0);
  /* Prepared queries are aligned (distance.h); rows need not be. */
  annex_code_query(ANNEX_METRIC_L2, q, aLo, aSt, dims, pL2);
  annex_code_query(ANNEX_METRIC_IP, q, aLo, aSt, dims, pIp);
  memcpy(hL2, pL2, sizeof hL2);
  memcpy(hIp, pIp, sizeof hIp);
  for (size_t i = 0; i < dims; i++) {
    double v = (double)aLo[i] + (double)aSt[i] * r[i], a = (double)q[i] - v;
    double mag = fabs(q[i]) + fabs(aLo[i]) + fabs((double)aSt[i] * r[i]);
    assert_true(aLo[i] <= aMin[i] && aLo[i] + 255.0 * aSt[i] >= aMax[i]);
    assert_true(fabs(v - x[i]) <= 0.5 * aSt[i] + code_eps(fabs(x[i]) + 1.0));
    l2 += a * a;
    e2 += 2.0 * fabs(a) * code_eps(mag) + code_eps(a * a);
    double w = (double)aSt[i] * (r[i] - 127.5), m = (double)q[i] - aLo[i] -
                                                     127.5 * aSt[i];
    dot += (double)q[i] * v;
    sLo += fabs((double)q[i] * aLo[i]);
    sWc += fabs((double)q[i] * aSt[i] * r[i]);
    sc += r[i];
    n2 += w * w;
    mag += m * m + fabs(255.0 * m * aSt[i]) + w * w;
  }
  if (bNorm) { /* the norm, and the integer form's bound (distance.h) */
    float n;
    memcpy(&n, r + nB - 4, sizeof n);
    assert_true(fabs(n - n2) <= code_eps(n2) + 1e-30);
    assert_true(fabs(fL2(pL2, r, dims) - l2) <=
                (double)hL2[1] * sc + code_eps(mag) + 1e-6);
  } else { /* the float form: float rounding of its terms and sum */
    e2 += code_eps(l2) * (double)dims;
    assert_true(fabs(fL2(pL2, r, dims) - l2) <= e2 + 1e-6);
  }
  assert_true(fabs(fIp(pIp, r, dims) + dot) <=
              0.5 * (double)hIp[1] * sc + code_eps(sLo) + code_eps(sWc) + 1e-6);
  free(row);
  free(pL2);
  free(pIp);
  free(aMin);
  free(aMax);
  free(aLo);
  free(aSt);
  free(x);
  free(q);
}

/* Values outside the ranges clamp to the ends and are counted; a constant
** dimension (step 0) decodes its value exactly and counts any other; the
** fit may write over its inputs; sizes are the documented ones. */
static void check_code_edges(void) {
  float aMin[5] = {0.0f, -1.0f, 2.5f, 10.0f, 0.0f};
  float aMax[5] = {1.0f, 1.0f, 2.5f, 20.0f, 0.0f};
  float aLo[5], aSt[5], aQ[192 / sizeof(float)]; /* aligned */
  float x[5] = {-5.0f, 9.0f, 2.5f, 15.0f, 0.0f}, y[5] = {0.5f, 0, 2.6f, 15, 0};
  unsigned char row[64];
  annex_code_fit(aMin, aMax, 5, aLo, aSt);
  assert_true(aSt[2] == 0.0f && aLo[2] == 2.5f && aSt[4] == 0.0f);
  assert_int_equal(annex_code_encode(x, aLo, aSt, 5, row), 2);
  assert_int_equal(row[0], 0);
  assert_int_equal(row[1], 255);
  assert_int_equal(annex_code_encode(y, aLo, aSt, 5, row), 1);
  annex_code_fit(aMax + 2, aMax + 2, 3, aLo, aSt); /* 2.5, 20, 0: constant */
  assert_int_equal(annex_code_encode(aMax + 2, aLo, aSt, 3, row), 0);
  annex_code_query(ANNEX_METRIC_L2, aMax + 2, aLo, aSt, 3, aQ);
  assert_true(annex_code_kernel(ANNEX_METRIC_L2, 3)(aQ, row, 3) == 0.0f);
  annex_code_fit(aMin, aMax, 5, aLo, aSt);
  annex_code_fit(aMin, aMax, 5, aMin, aMax); /* in place */
  assert_memory_equal(aMin, aLo, sizeof aLo);
  assert_memory_equal(aMax, aSt, sizeof aSt);
  assert_int_equal(annex_code_bytes(5), sizeof row);
  assert_int_equal(annex_code_bytes(64), 64);
  assert_int_equal(annex_code_bytes(65), 128);
  assert_int_equal(annex_code_query_bytes(5), sizeof aQ);
}

static void test_code_rows(void **state) {
  const test_param *p = *state;
  uint64_t rng = 7;
  if (!use_set(p->zSet)) skip();
  for (size_t n = 1; n <= 70; n++) {
    check_code_row(n, n % (MAX_OFFSET + 1), 0.0f, &rng);
    check_code_row(n, 0, 40.0f, &rng);
    check_code_row(n, 1, 1000.0f, &rng);
  }
  for (size_t i = 0; i < sizeof aLargeDims / sizeof aLargeDims[0]; i++) {
    check_code_row(aLargeDims[i], 1, -5.0f, &rng);
    check_code_row(aLargeDims[i], 3, 100.0f, &rng);
  }
  check_code_edges();
}

/* Cosine with a zero vector is 1, not NaN; cosine(a, a) is 0 or just above. */
static void test_cosine_zero(void **state) {
  const test_param *p = *state;
  float zf[19] = {0}, xf[19];
  int8_t zi[19] = {0}, xi[19];
  annex_dist_fn ff, fi;
  if (!use_set(p->zSet)) skip();
  for (int i = 0; i < 19; i++) {
    xf[i] = (float)(i - 7) * 0.25f;
    xi[i] = (int8_t)(i * 13 - 120);
  }
  ff = annex_distance_kernel(ANNEX_ELEM_FLOAT32, ANNEX_METRIC_COSINE);
  fi = annex_distance_kernel(ANNEX_ELEM_INT8, ANNEX_METRIC_COSINE);
  assert_true(ff(zf, xf, 19) == 1.0f);
  assert_true(ff(xf, zf, 19) == 1.0f);
  assert_true(ff(zf, zf, 19) == 1.0f);
  assert_true(fi(zi, xi, 19) == 1.0f);
  assert_true(fi(xi, zi, 19) == 1.0f);
  assert_true(fi(zi, zi, 19) == 1.0f);
  assert_true(ff(xf, xf, 19) >= 0.0f && ff(xf, xf, 19) < 1e-6f);
  assert_true(fi(xi, xi, 19) >= 0.0f && fi(xi, xi, 19) < 1e-6f);
}

static void test_invalid_combinations(void **state) {
  (void)state;
  assert_null(annex_distance_kernel(ANNEX_ELEM_FLOAT32, ANNEX_METRIC_HAMMING));
  assert_null(annex_distance_kernel(ANNEX_ELEM_INT8, ANNEX_METRIC_HAMMING));
  assert_null(annex_distance_kernel(ANNEX_ELEM_BIT, ANNEX_METRIC_L2));
  assert_null(annex_distance_kernel(ANNEX_ELEM_BIT, ANNEX_METRIC_COSINE));
  assert_null(annex_distance_kernel(ANNEX_ELEM_BIT, ANNEX_METRIC_IP));
  assert_null(annex_distance_kernel((annex_elem)0, ANNEX_METRIC_L2));
  assert_null(annex_distance_kernel(ANNEX_ELEM_FLOAT32, (annex_metric)99));
  for (size_t k = 0; k < N_KERNELS; k++) {
    assert_non_null(annex_distance_kernel(aKernel[k].elem, aKernel[k].metric));
  }
}

static void test_score_to_distance(void **state) {
  (void)state;
  assert_true(annex_score_to_distance(ANNEX_METRIC_L2, 16.0f) == 4.0);
  assert_true(annex_score_to_distance(ANNEX_METRIC_L2, 2.0f) == sqrt(2.0));
  assert_true(annex_score_to_distance(ANNEX_METRIC_L2, 0.0f) == 0.0);
  assert_true(annex_score_to_distance(ANNEX_METRIC_COSINE, 0.25f) == 0.25);
  assert_true(annex_score_to_distance(ANNEX_METRIC_IP, -3.5f) == -3.5);
  assert_true(annex_score_to_distance(ANNEX_METRIC_HAMMING, 7.0f) == 7.0);
}

static void test_vector_bytes(void **state) {
  (void)state;
  assert_int_equal(annex_vector_bytes(ANNEX_ELEM_FLOAT32, 3), 12);
  assert_int_equal(annex_vector_bytes(ANNEX_ELEM_INT8, 3), 3);
  assert_int_equal(annex_vector_bytes(ANNEX_ELEM_BIT, 64), 8);
  assert_int_equal(annex_vector_bytes(ANNEX_ELEM_BIT, 8), 1);
}

/* Init is idempotent, picks a set by name, and forcing rejects unknown or
** unsupported names without changing the set in force. */
static void test_init_and_force(void **state) {
  const char *zBest;
  (void)state;
  annex_distance_init();
  zBest = annex_kernel_set();
  annex_distance_init();
  assert_string_equal(annex_kernel_set(), zBest);
  print_message("[   INFO   ] default kernel set: %s\n", zBest);
  assert_int_equal(annex_kernel_set_force("portable"), 0);
  assert_string_equal(annex_kernel_set(), "portable");
  assert_int_equal(annex_kernel_set_force("no-such-set"), -1);
  assert_int_equal(annex_kernel_set_force(NULL), -1);
  assert_string_equal(annex_kernel_set(), "portable");
  assert_int_equal(annex_kernel_set_force(zBest), 0);
  assert_string_equal(annex_kernel_set(), zBest);
}

/* ------------------------------------------------------------------- main */

#define N_PER_SET_TESTS 4
#define N_GLOBAL_TESTS 4
#define N_TESTS \
  (N_GLOBAL_TESTS + N_SETS * (N_KERNELS + N_PER_SET_TESTS))
#define NAME_LEN 48

int main(void) {
  static test_param aParam[N_SETS * (N_KERNELS + 1)];
  static char azName[N_TESTS][NAME_LEN];
  struct CMUnitTest aTest[N_TESTS] = {
    cmocka_unit_test(test_init_and_force),
    cmocka_unit_test(test_invalid_combinations),
    cmocka_unit_test(test_score_to_distance),
    cmocka_unit_test(test_vector_bytes),
  };
  size_t nTest = N_GLOBAL_TESTS, nParam = 0;
  static const struct {
    const char *zName;
    CMUnitTestFunction x;
  } aPerSet[N_PER_SET_TESTS] = {{"many", test_many},
                                {"i8_no_overflow", test_i8_no_overflow},
                                {"cosine_zero", test_cosine_zero},
                                {"code_rows", test_code_rows}};
  for (size_t s = 0; s < N_SETS; s++) {
    for (size_t k = 0; k < N_KERNELS; k++) {
      aParam[nParam] = (test_param){azSet[s], &aKernel[k]};
      snprintf(azName[nTest], NAME_LEN, "%s/%s", azSet[s], aKernel[k].zName);
      aTest[nTest] = (struct CMUnitTest){azName[nTest], test_kernel, NULL,
                                         NULL, &aParam[nParam++]};
      nTest++;
    }
    aParam[nParam] = (test_param){azSet[s], NULL};
    for (size_t t = 0; t < N_PER_SET_TESTS; t++) {
      snprintf(azName[nTest], NAME_LEN, "%s/%s", azSet[s], aPerSet[t].zName);
      aTest[nTest] = (struct CMUnitTest){azName[nTest], aPerSet[t].x, NULL,
                                         NULL, &aParam[nParam]};
      nTest++;
    }
    nParam++;
  }
  assert_int_equal(nTest, N_TESTS);
  return cmocka_run_group_tests(aTest, NULL, NULL);
}
