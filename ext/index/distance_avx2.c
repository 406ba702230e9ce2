/*
** distance_avx2.c — AVX2 + FMA distance kernels (x86-64 only).
**
** Owns: the "avx2" kernel set, annex_kernels_avx2. This file alone is
** compiled with -mavx2 -mfma; distance.c hands its kernels out only after
** checking that the CPU has AVX2 and FMA.
**
** float32: four independent 8-float FMA accumulators, masked loads for the
** tail. int8: bytes widened to int16 and multiplied with VPMADDWD into int32
** lanes, summed per block of ANNEX_I8_BLOCK dimensions in int64. bit: nibble
** lookup popcount (VPSHUFB) summed with VPSADBW.
*/
#include "distance_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

/* ---------------------------------------------------------------- float32 */

/* Lanes below r are set: a sliding window over eight -1s then eight 0s. */
static __m256i f32_tail_mask(size_t r) {
  static const int32_t aWin[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                   0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256((const __m256i *)(aWin + 8 - r));
}

static __m256 f32_ld(const unsigned char *p) {
  return _mm256_loadu_ps((const float *)p);
}

static __m256 f32_ld_tail(const unsigned char *p, size_t r) {
  return _mm256_maskload_ps((const float *)p, f32_tail_mask(r));
}

static float f32_hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static __m256 l2_step(__m256 acc, __m256 x, __m256 y) {
  __m256 d = _mm256_sub_ps(x, y);
  return _mm256_fmadd_ps(d, d, acc);
}

static float f32_l2_avx2(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= dims; i += 32) {
    s0 = l2_step(s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
    s1 = l2_step(s1, f32_ld(a + 4 * i + 32), f32_ld(b + 4 * i + 32));
    s2 = l2_step(s2, f32_ld(a + 4 * i + 64), f32_ld(b + 4 * i + 64));
    s3 = l2_step(s3, f32_ld(a + 4 * i + 96), f32_ld(b + 4 * i + 96));
  }
  for (; i + 8 <= dims; i += 8) {
    s0 = l2_step(s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
  }
  if (i < dims) {
    s1 = l2_step(s1, f32_ld_tail(a + 4 * i, dims - i),
                 f32_ld_tail(b + 4 * i, dims - i));
  }
  return f32_hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static float f32_dot_avx2(const unsigned char *a, const unsigned char *b,
                          size_t dims) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= dims; i += 32) {
    s0 = _mm256_fmadd_ps(f32_ld(a + 4 * i), f32_ld(b + 4 * i), s0);
    s1 = _mm256_fmadd_ps(f32_ld(a + 4 * i + 32), f32_ld(b + 4 * i + 32), s1);
    s2 = _mm256_fmadd_ps(f32_ld(a + 4 * i + 64), f32_ld(b + 4 * i + 64), s2);
    s3 = _mm256_fmadd_ps(f32_ld(a + 4 * i + 96), f32_ld(b + 4 * i + 96), s3);
  }
  for (; i + 8 <= dims; i += 8) {
    s0 = _mm256_fmadd_ps(f32_ld(a + 4 * i), f32_ld(b + 4 * i), s0);
  }
  if (i < dims) {
    s1 = _mm256_fmadd_ps(f32_ld_tail(a + 4 * i, dims - i),
                         f32_ld_tail(b + 4 * i, dims - i), s1);
  }
  return f32_hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static float f32_ip_avx2(const void *pA, const void *pB, size_t dims) {
  return -f32_dot_avx2(pA, pB, dims);
}

/* Running sums of a.b, a.a and b.b for the cosine kernel. */
typedef struct f32_cos_acc {
  __m256 ab, aa, bb;
} f32_cos_acc;

static void cos_step(f32_cos_acc *s, __m256 x, __m256 y) {
  s->ab = _mm256_fmadd_ps(x, y, s->ab);
  s->aa = _mm256_fmadd_ps(x, x, s->aa);
  s->bb = _mm256_fmadd_ps(y, y, s->bb);
}

static float f32_cosine_avx2(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  __m256 z = _mm256_setzero_ps();
  f32_cos_acc s0 = {z, z, z}, s1 = {z, z, z};
  size_t i = 0;
  for (; i + 16 <= dims; i += 16) {
    cos_step(&s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
    cos_step(&s1, f32_ld(a + 4 * i + 32), f32_ld(b + 4 * i + 32));
  }
  for (; i + 8 <= dims; i += 8) {
    cos_step(&s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
  }
  if (i < dims) {
    cos_step(&s1, f32_ld_tail(a + 4 * i, dims - i),
             f32_ld_tail(b + 4 * i, dims - i));
  }
  return annex_cosine_score(f32_hsum(_mm256_add_ps(s0.ab, s1.ab)),
                            f32_hsum(_mm256_add_ps(s0.aa, s1.aa)),
                            f32_hsum(_mm256_add_ps(s0.bb, s1.bb)));
}

/* ------------------------------------------------------------------- int8 */

/* Sixteen int8 at p, sign-extended to int16. */
static __m256i i8_ld16(const int8_t *p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
}

/* The last r < 16 int8 at p, zero-padded to sixteen and widened. */
static __m256i i8_ld16_tail(const int8_t *p, size_t r) {
  int8_t aBuf[16] = {0};
  memcpy(aBuf, p, r);
  return i8_ld16(aBuf);
}

static int32_t i32_hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v),
                            _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

static size_t i8_block_len(size_t i, size_t dims) {
  return dims - i < ANNEX_I8_BLOCK ? dims - i : ANNEX_I8_BLOCK;
}

/* acc plus the pairwise products x.y (or (x-y)^2 when bL2) as int32. */
static __m256i i8_step(__m256i acc, __m256i x, __m256i y, int bL2) {
  if (bL2) {
    x = _mm256_sub_epi16(x, y);
    y = x;
  }
  return _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
}

/* a.b (or the squared l2 distance when bL2) of n <= ANNEX_I8_BLOCK pairs. */
static int32_t i8_block(const int8_t *a, const int8_t *b, size_t n, int bL2) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = i8_step(s0, i8_ld16(a + i), i8_ld16(b + i), bL2);
    s1 = i8_step(s1, i8_ld16(a + i + 16), i8_ld16(b + i + 16), bL2);
  }
  if (i + 16 <= n) {
    s0 = i8_step(s0, i8_ld16(a + i), i8_ld16(b + i), bL2);
    i += 16;
  }
  if (i < n) {
    s1 = i8_step(s1, i8_ld16_tail(a + i, n - i), i8_ld16_tail(b + i, n - i),
                 bL2);
  }
  return i32_hsum(_mm256_add_epi32(s0, s1));
}

/* Exact a.b, or the squared l2 distance when bL2. */
static int64_t i8_sum(const int8_t *a, const int8_t *b, size_t dims, int bL2) {
  int64_t s = 0;
  for (size_t i = 0; i < dims; i += ANNEX_I8_BLOCK) {
    s += i8_block(a + i, b + i, i8_block_len(i, dims), bL2);
  }
  return s;
}

static float i8_l2_avx2(const void *pA, const void *pB, size_t dims) {
  return (float)i8_sum(pA, pB, dims, 1);
}

static float i8_ip_avx2(const void *pA, const void *pB, size_t dims) {
  return (float)-i8_sum(pA, pB, dims, 0);
}

/* Running sums of a.b, a.a and b.b for the int8 cosine kernel. */
typedef struct i8_cos_acc {
  __m256i ab, aa, bb;
} i8_cos_acc;

static void i8_cos_step(i8_cos_acc *s, __m256i x, __m256i y) {
  s->ab = _mm256_add_epi32(s->ab, _mm256_madd_epi16(x, y));
  s->aa = _mm256_add_epi32(s->aa, _mm256_madd_epi16(x, x));
  s->bb = _mm256_add_epi32(s->bb, _mm256_madd_epi16(y, y));
}

/* Adds a.b, a.a and b.b of n <= ANNEX_I8_BLOCK pairs to *pAB, *pAA, *pBB. */
static void i8_cos_block(const int8_t *a, const int8_t *b, size_t n,
                         int64_t *pAB, int64_t *pAA, int64_t *pBB) {
  __m256i z = _mm256_setzero_si256();
  i8_cos_acc s = {z, z, z};
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    i8_cos_step(&s, i8_ld16(a + i), i8_ld16(b + i));
  }
  if (i < n) {
    i8_cos_step(&s, i8_ld16_tail(a + i, n - i), i8_ld16_tail(b + i, n - i));
  }
  *pAB += i32_hsum(s.ab);
  *pAA += i32_hsum(s.aa);
  *pBB += i32_hsum(s.bb);
}

static float i8_cosine_avx2(const void *pA, const void *pB, size_t dims) {
  const int8_t *a = pA, *b = pB;
  int64_t ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < dims; i += ANNEX_I8_BLOCK) {
    i8_cos_block(a + i, b + i, i8_block_len(i, dims), &ab, &aa, &bb);
  }
  return annex_cosine_score((double)ab, (double)aa, (double)bb);
}

/* -------------------------------------------------------------------- bit */

/* Per-64-bit-lane popcount of v, by nibble table lookup and VPSADBW. */
static __m256i popcnt_lanes(__m256i v) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
                                       3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                       2, 3, 2, 3, 3, 4);
  const __m256i lo4 = _mm256_set1_epi8(0x0f);
  __m256i lo = _mm256_and_si256(v, lo4);
  __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
  __m256i cnt = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo),
                                _mm256_shuffle_epi8(lut, hi));
  return _mm256_sad_epu8(cnt, _mm256_setzero_si256());
}

static __m256i xor_ld32(const unsigned char *a, const unsigned char *b) {
  return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)a),
                          _mm256_loadu_si256((const __m256i *)b));
}

static uint64_t u64_hsum(__m256i v) {
  __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v),
                            _mm256_extracti128_si256(v, 1));
  return (uint64_t)_mm_cvtsi128_si64(s) + (uint64_t)_mm_extract_epi64(s, 1);
}

static float bit_hamming_avx2(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  size_t n = dims / 8, i = 0;
  __m256i s0 = _mm256_setzero_si256(), s1 = s0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm256_add_epi64(s0, popcnt_lanes(xor_ld32(a + i, b + i)));
    s1 = _mm256_add_epi64(s1, popcnt_lanes(xor_ld32(a + i + 32, b + i + 32)));
  }
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_add_epi64(s0, popcnt_lanes(xor_ld32(a + i, b + i)));
  }
  if (i < n) {
    unsigned char aX[32] = {0}, aY[32] = {0};
    memcpy(aX, a + i, n - i);
    memcpy(aY, b + i, n - i);
    s1 = _mm256_add_epi64(s1, popcnt_lanes(xor_ld32(aX, aY)));
  }
  return (float)u64_hsum(_mm256_add_epi64(s0, s1));
}

/* ------------------------------------------------------------ code rows */

/* P = sum u[i] * c[i] over at most ANNEX_CODE_BLOCK dims: codes widened
** to int16 and multiplied with VPMADDWD into int32 lanes; a tail of under
** 16 codes is copied into a zeroed buffer (u is zero-padded to 32). */
static inline __attribute__((always_inline)) int32_t code_dot_block_avx2(
    const int16_t *u, const unsigned char *c, size_t dims) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0;
  size_t i = 0;
  for (; i + 32 <= dims; i += 32) {
    __m256i c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(c + i)));
    __m256i c1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(c + i + 16)));
    s0 = _mm256_add_epi32(
        s0, _mm256_madd_epi16(c0, _mm256_loadu_si256((const __m256i *)(u + i))));
    s1 = _mm256_add_epi32(
        s1, _mm256_madd_epi16(c1, _mm256_loadu_si256((const __m256i *)(u + i + 16))));
  }
  for (; i < dims; i += 16) {
    unsigned char aTail[16] = {0};
    const unsigned char *p = c + i;
    if (dims - i < 16) {
      memcpy(aTail, c + i, dims - i);
      p = aTail;
    }
    s0 = _mm256_add_epi32(
        s0, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p)),
                              _mm256_loadu_si256((const __m256i *)(u + i))));
  }
  return i32_hsum(_mm256_add_epi32(s0, s1));
}

/* P over any dims: blocks summed in int64. */
static inline __attribute__((always_inline)) int64_t code_dot_avx2(
    const int16_t *u, const unsigned char *c, size_t dims) {
  int64_t tot = 0;
  if (dims <= ANNEX_CODE_BLOCK) return code_dot_block_avx2(u, c, dims);
  for (size_t i = 0; i < dims; i += ANNEX_CODE_BLOCK) {
    size_t n = dims - i < ANNEX_CODE_BLOCK ? dims - i : ANNEX_CODE_BLOCK;
    tot += code_dot_block_avx2(u + i, c + i, n);
  }
  return tot;
}

static float code_l2_avx2(const void *pQ, const void *pRow, size_t dims) {
  const unsigned char *row = pRow;
  return annex_code_l2_score(pQ, row, dims,
                             code_dot_avx2(annex_code_steps(pQ), row, dims));
}

static float code_ip_avx2(const void *pQ, const void *pRow, size_t dims) {
  return annex_code_ip_score(pQ, code_dot_avx2(annex_code_steps(pQ), pRow, dims));
}

/* 8 codes from c, widened to floats. */
static inline __attribute__((always_inline)) __m256 code_ld8_avx2(
    const unsigned char *c) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)c)));
}

/* sum (r[i] - s[i] c[i])^2 over the padded lanes (a multiple of 16). */
static float code_l2f_avx2(const void *pQ, const void *pRow, size_t dims) {
  const unsigned char *c = pRow;
  const size_t n = annex_code_lanes(dims);
  const float *r = annex_code_qv(pQ), *st = r + n;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  for (size_t i = 0; i < n; i += 16) {
    __m256 e0 = _mm256_fnmadd_ps(_mm256_loadu_ps(st + i), code_ld8_avx2(c + i),
                                 _mm256_loadu_ps(r + i));
    __m256 e1 = _mm256_fnmadd_ps(_mm256_loadu_ps(st + i + 8), code_ld8_avx2(c + i + 8),
                                 _mm256_loadu_ps(r + i + 8));
    s0 = _mm256_fmadd_ps(e0, e0, s0);
    s1 = _mm256_fmadd_ps(e1, e1, s1);
  }
  return f32_hsum(_mm256_add_ps(s0, s1));
}

const annex_kernels annex_kernels_avx2 = {
  "avx2",
  f32_l2_avx2, f32_cosine_avx2, f32_ip_avx2,
  i8_l2_avx2, i8_cosine_avx2, i8_ip_avx2,
  bit_hamming_avx2,
  code_l2_avx2, code_l2f_avx2, code_ip_avx2
};

#else

typedef int annex_distance_avx2_unused;

#endif /* __x86_64__ */
