/*
** distance_avx512.c — AVX-512 distance kernels (x86-64 only).
**
** Owns: the "avx512" kernel set, returned by annex_kernels_avx512(). This
** file alone is compiled with -mavx512f -mavx512bw -mavx512vl; distance.c
** hands its kernels out only after checking the CPU has AVX512F, BW and VL.
** The one kernel that needs VPOPCNTQ carries its own target attribute and is
** chosen only when the CPU has AVX512_VPOPCNTDQ.
**
** Every kernel handles the tail with masked loads, so any dims works without
** reading past the end of either vector. float32: four independent 16-float
** FMA accumulators. int8: bytes widened to int16 and multiplied with
** VPMADDWD into int32 lanes, summed per block of ANNEX_I8_BLOCK dimensions in
** int64. bit: VPOPCNTQ, or a nibble-lookup popcount (VPSHUFB + VPSADBW).
*/
#include "distance_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>

/* ---------------------------------------------------------------- float32 */

static __m512 f32_ld(const unsigned char *p) {
  return _mm512_loadu_ps(p);
}

/* The first r < 16 floats at p, the other lanes zero. */
static __m512 f32_ld_tail(const unsigned char *p, size_t r) {
  return _mm512_maskz_loadu_ps((__mmask16)((1u << r) - 1u), p);
}

static __m512 l2_step(__m512 acc, __m512 x, __m512 y) {
  __m512 d = _mm512_sub_ps(x, y);
  return _mm512_fmadd_ps(d, d, acc);
}

static float f32_l2_avx512(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 64 <= dims; i += 64) {
    s0 = l2_step(s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
    s1 = l2_step(s1, f32_ld(a + 4 * i + 64), f32_ld(b + 4 * i + 64));
    s2 = l2_step(s2, f32_ld(a + 4 * i + 128), f32_ld(b + 4 * i + 128));
    s3 = l2_step(s3, f32_ld(a + 4 * i + 192), f32_ld(b + 4 * i + 192));
  }
  for (; i + 16 <= dims; i += 16) {
    s0 = l2_step(s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
  }
  if (i < dims) {
    s1 = l2_step(s1, f32_ld_tail(a + 4 * i, dims - i),
                 f32_ld_tail(b + 4 * i, dims - i));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1),
                                            _mm512_add_ps(s2, s3)));
}

static float f32_dot_avx512(const unsigned char *a, const unsigned char *b,
                            size_t dims) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 64 <= dims; i += 64) {
    s0 = _mm512_fmadd_ps(f32_ld(a + 4 * i), f32_ld(b + 4 * i), s0);
    s1 = _mm512_fmadd_ps(f32_ld(a + 4 * i + 64), f32_ld(b + 4 * i + 64), s1);
    s2 = _mm512_fmadd_ps(f32_ld(a + 4 * i + 128), f32_ld(b + 4 * i + 128), s2);
    s3 = _mm512_fmadd_ps(f32_ld(a + 4 * i + 192), f32_ld(b + 4 * i + 192), s3);
  }
  for (; i + 16 <= dims; i += 16) {
    s0 = _mm512_fmadd_ps(f32_ld(a + 4 * i), f32_ld(b + 4 * i), s0);
  }
  if (i < dims) {
    s1 = _mm512_fmadd_ps(f32_ld_tail(a + 4 * i, dims - i),
                         f32_ld_tail(b + 4 * i, dims - i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1),
                                            _mm512_add_ps(s2, s3)));
}

static float f32_ip_avx512(const void *pA, const void *pB, size_t dims) {
  return -f32_dot_avx512(pA, pB, dims);
}

/* Running sums of a.b, a.a and b.b for the cosine kernel. */
typedef struct f32_cos_acc {
  __m512 ab, aa, bb;
} f32_cos_acc;

static void cos_step(f32_cos_acc *s, __m512 x, __m512 y) {
  s->ab = _mm512_fmadd_ps(x, y, s->ab);
  s->aa = _mm512_fmadd_ps(x, x, s->aa);
  s->bb = _mm512_fmadd_ps(y, y, s->bb);
}

static float f32_cosine_avx512(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  __m512 z = _mm512_setzero_ps();
  f32_cos_acc s0 = {z, z, z}, s1 = {z, z, z};
  size_t i = 0;
  for (; i + 32 <= dims; i += 32) {
    cos_step(&s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
    cos_step(&s1, f32_ld(a + 4 * i + 64), f32_ld(b + 4 * i + 64));
  }
  for (; i + 16 <= dims; i += 16) {
    cos_step(&s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
  }
  if (i < dims) {
    cos_step(&s1, f32_ld_tail(a + 4 * i, dims - i),
             f32_ld_tail(b + 4 * i, dims - i));
  }
  return annex_cosine_score(_mm512_reduce_add_ps(_mm512_add_ps(s0.ab, s1.ab)),
                            _mm512_reduce_add_ps(_mm512_add_ps(s0.aa, s1.aa)),
                            _mm512_reduce_add_ps(_mm512_add_ps(s0.bb, s1.bb)));
}

/* ------------------------------------------------------------------- int8 */

/* Thirty-two int8 at p, sign-extended to int16. */
static __m512i i8_ld32(const int8_t *p) {
  return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
}

/* The first r < 32 int8 at p, zero-padded to thirty-two and widened. */
static __m512i i8_ld32_tail(const int8_t *p, size_t r) {
  __mmask32 m = (__mmask32)((1u << r) - 1u);
  return _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, p));
}

static size_t i8_block_len(size_t i, size_t dims) {
  return dims - i < ANNEX_I8_BLOCK ? dims - i : ANNEX_I8_BLOCK;
}

/* acc plus the pairwise products x.y (or (x-y)^2 when bL2) as int32. */
static __m512i i8_step(__m512i acc, __m512i x, __m512i y, int bL2) {
  if (bL2) {
    x = _mm512_sub_epi16(x, y);
    y = x;
  }
  return _mm512_add_epi32(acc, _mm512_madd_epi16(x, y));
}

/* a.b (or the squared l2 distance when bL2) of n <= ANNEX_I8_BLOCK pairs. */
static int32_t i8_block(const int8_t *a, const int8_t *b, size_t n, int bL2) {
  __m512i s0 = _mm512_setzero_si512(), s1 = s0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = i8_step(s0, i8_ld32(a + i), i8_ld32(b + i), bL2);
    s1 = i8_step(s1, i8_ld32(a + i + 32), i8_ld32(b + i + 32), bL2);
  }
  if (i + 32 <= n) {
    s0 = i8_step(s0, i8_ld32(a + i), i8_ld32(b + i), bL2);
    i += 32;
  }
  if (i < n) {
    s1 = i8_step(s1, i8_ld32_tail(a + i, n - i), i8_ld32_tail(b + i, n - i),
                 bL2);
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
}

/* Exact a.b, or the squared l2 distance when bL2. */
static int64_t i8_sum(const int8_t *a, const int8_t *b, size_t dims, int bL2) {
  int64_t s = 0;
  for (size_t i = 0; i < dims; i += ANNEX_I8_BLOCK) {
    s += i8_block(a + i, b + i, i8_block_len(i, dims), bL2);
  }
  return s;
}

static float i8_l2_avx512(const void *pA, const void *pB, size_t dims) {
  return (float)i8_sum(pA, pB, dims, 1);
}

static float i8_ip_avx512(const void *pA, const void *pB, size_t dims) {
  return (float)-i8_sum(pA, pB, dims, 0);
}

/* Running sums of a.b, a.a and b.b for the int8 cosine kernel. */
typedef struct i8_cos_acc {
  __m512i ab, aa, bb;
} i8_cos_acc;

static void i8_cos_step(i8_cos_acc *s, __m512i x, __m512i y) {
  s->ab = _mm512_add_epi32(s->ab, _mm512_madd_epi16(x, y));
  s->aa = _mm512_add_epi32(s->aa, _mm512_madd_epi16(x, x));
  s->bb = _mm512_add_epi32(s->bb, _mm512_madd_epi16(y, y));
}

/* Adds a.b, a.a and b.b of n <= ANNEX_I8_BLOCK pairs to *pAB, *pAA, *pBB. */
static void i8_cos_block(const int8_t *a, const int8_t *b, size_t n,
                         int64_t *pAB, int64_t *pAA, int64_t *pBB) {
  __m512i z = _mm512_setzero_si512();
  i8_cos_acc s = {z, z, z};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    i8_cos_step(&s, i8_ld32(a + i), i8_ld32(b + i));
  }
  if (i < n) {
    i8_cos_step(&s, i8_ld32_tail(a + i, n - i), i8_ld32_tail(b + i, n - i));
  }
  *pAB += _mm512_reduce_add_epi32(s.ab);
  *pAA += _mm512_reduce_add_epi32(s.aa);
  *pBB += _mm512_reduce_add_epi32(s.bb);
}

static float i8_cosine_avx512(const void *pA, const void *pB, size_t dims) {
  const int8_t *a = pA, *b = pB;
  int64_t ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < dims; i += ANNEX_I8_BLOCK) {
    i8_cos_block(a + i, b + i, i8_block_len(i, dims), &ab, &aa, &bb);
  }
  return annex_cosine_score((double)ab, (double)aa, (double)bb);
}

/* -------------------------------------------------------------------- bit */

static __m512i xor_ld64(const unsigned char *a, const unsigned char *b) {
  return _mm512_xor_si512(_mm512_loadu_si512(a), _mm512_loadu_si512(b));
}

/* a xor b over the first r < 64 bytes, the other bytes zero. */
static __m512i xor_ld64_tail(const unsigned char *a, const unsigned char *b,
                             size_t r) {
  __mmask64 m = (__mmask64)((1ull << r) - 1ull);
  return _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, a),
                          _mm512_maskz_loadu_epi8(m, b));
}

/* Per-64-bit-lane popcount of v, by nibble table lookup and VPSADBW. */
static __m512i popcnt_lanes(__m512i v) {
  const __m512i lut = _mm512_broadcast_i32x4(
      _mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
  const __m512i lo4 = _mm512_set1_epi8(0x0f);
  __m512i lo = _mm512_and_si512(v, lo4);
  __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
  __m512i cnt = _mm512_add_epi8(_mm512_shuffle_epi8(lut, lo),
                                _mm512_shuffle_epi8(lut, hi));
  return _mm512_sad_epu8(cnt, _mm512_setzero_si512());
}

static float bit_hamming_avx512(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  size_t n = dims / 8, i = 0;
  __m512i s0 = _mm512_setzero_si512(), s1 = s0;
  for (; i + 128 <= n; i += 128) {
    s0 = _mm512_add_epi64(s0, popcnt_lanes(xor_ld64(a + i, b + i)));
    s1 = _mm512_add_epi64(s1, popcnt_lanes(xor_ld64(a + i + 64, b + i + 64)));
  }
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_add_epi64(s0, popcnt_lanes(xor_ld64(a + i, b + i)));
  }
  if (i < n) {
    s1 = _mm512_add_epi64(s1, popcnt_lanes(xor_ld64_tail(a + i, b + i, n - i)));
  }
  return (float)(uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(s0, s1));
}

__attribute__((target("avx512vpopcntdq")))
static float bit_hamming_avx512_vpopcnt(const void *pA, const void *pB,
                                        size_t dims) {
  const unsigned char *a = pA, *b = pB;
  size_t n = dims / 8, i = 0;
  __m512i s0 = _mm512_setzero_si512(), s1 = s0;
  for (; i + 128 <= n; i += 128) {
    s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(xor_ld64(a + i, b + i)));
    s1 = _mm512_add_epi64(
        s1, _mm512_popcnt_epi64(xor_ld64(a + i + 64, b + i + 64)));
  }
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(xor_ld64(a + i, b + i)));
  }
  if (i < n) {
    s1 = _mm512_add_epi64(
        s1, _mm512_popcnt_epi64(xor_ld64_tail(a + i, b + i, n - i)));
  }
  return (float)(uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(s0, s1));
}

/* ------------------------------------------------------------ code rows */

/* P = sum u[i] * c[i] over at most ANNEX_CODE_BLOCK dims: codes widened
** to int16 and multiplied with VPMADDWD into int32 lanes; the tail is a
** masked load (u is zero-padded to 32). */
static inline __attribute__((always_inline)) int32_t code_dot_block_avx512(
    const int16_t *u, const unsigned char *c, size_t dims) {
  __m512i s0 = _mm512_setzero_si512(), s1 = s0;
  size_t i = 0;
  for (; i + 64 <= dims; i += 64) {
    __m512i c0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(c + i)));
    __m512i c1 = _mm512_cvtepu8_epi16(
        _mm256_loadu_si256((const __m256i *)(c + i + 32)));
    s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(c0, _mm512_loadu_si512(u + i)));
    s1 = _mm512_add_epi32(s1, _mm512_madd_epi16(c1, _mm512_loadu_si512(u + i + 32)));
  }
  for (; i < dims; i += 32) {
    size_t r = dims - i < 32 ? dims - i : 32;
    __mmask32 m = r == 32 ? ~(__mmask32)0 : (((__mmask32)1 << r) - 1u);
    __m512i c0 = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, c + i));
    s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(c0, _mm512_loadu_si512(u + i)));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
}

/* P over any dims: blocks summed in int64. */
static inline __attribute__((always_inline)) int64_t code_dot_avx512(
    const int16_t *u, const unsigned char *c, size_t dims) {
  int64_t tot = 0;
  if (dims <= ANNEX_CODE_BLOCK) return code_dot_block_avx512(u, c, dims);
  for (size_t i = 0; i < dims; i += ANNEX_CODE_BLOCK) {
    size_t n = dims - i < ANNEX_CODE_BLOCK ? dims - i : ANNEX_CODE_BLOCK;
    tot += code_dot_block_avx512(u + i, c + i, n);
  }
  return tot;
}

static float code_l2_avx512(const void *pQ, const void *pRow, size_t dims) {
  const unsigned char *row = pRow;
  return annex_code_l2_score(pQ, row, dims,
                             code_dot_avx512(annex_code_steps(pQ), row, dims));
}

static float code_ip_avx512(const void *pQ, const void *pRow, size_t dims) {
  return annex_code_ip_score(pQ,
                             code_dot_avx512(annex_code_steps(pQ), pRow, dims));
}

/* 16 codes from c, widened to floats. */
static inline __attribute__((always_inline)) __m512 code_ld16_avx512(
    const unsigned char *c) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)c)));
}

/* sum (r[i] - s[i] c[i])^2 over the padded lanes, two chains. */
static float code_l2f_avx512(const void *pQ, const void *pRow, size_t dims) {
  const unsigned char *c = pRow;
  const size_t n = annex_code_lanes(dims);
  const float *r = annex_code_qv(pQ), *st = r + n;
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 e0 = _mm512_fnmadd_ps(_mm512_loadu_ps(st + i), code_ld16_avx512(c + i),
                                 _mm512_loadu_ps(r + i));
    __m512 e1 = _mm512_fnmadd_ps(_mm512_loadu_ps(st + i + 16),
                                 code_ld16_avx512(c + i + 16),
                                 _mm512_loadu_ps(r + i + 16));
    s0 = _mm512_fmadd_ps(e0, e0, s0);
    s1 = _mm512_fmadd_ps(e1, e1, s1);
  }
  if (i < n) {
    __m512 e0 = _mm512_fnmadd_ps(_mm512_loadu_ps(st + i), code_ld16_avx512(c + i),
                                 _mm512_loadu_ps(r + i));
    s0 = _mm512_fmadd_ps(e0, e0, s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static const annex_kernels kernels_avx512 = {
  "avx512",
  f32_l2_avx512, f32_cosine_avx512, f32_ip_avx512,
  i8_l2_avx512, i8_cosine_avx512, i8_ip_avx512,
  bit_hamming_avx512,
  code_l2_avx512, code_l2f_avx512, code_ip_avx512
};

static const annex_kernels kernels_avx512_vpopcnt = {
  "avx512",
  f32_l2_avx512, f32_cosine_avx512, f32_ip_avx512,
  i8_l2_avx512, i8_cosine_avx512, i8_ip_avx512,
  bit_hamming_avx512_vpopcnt,
  code_l2_avx512, code_l2f_avx512, code_ip_avx512
};

const annex_kernels *annex_kernels_avx512(int bVpopcnt) {
  return bVpopcnt ? &kernels_avx512_vpopcnt : &kernels_avx512;
}

#else

typedef int annex_distance_avx512_unused;

#endif /* __x86_64__ */
