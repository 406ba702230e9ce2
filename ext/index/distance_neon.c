/*
** distance_neon.c — NEON distance kernels (AArch64 only).
**
** Owns: the "neon" kernel set, annex_kernels_neon. NEON is part of the
** AArch64 base ISA, so this file needs no extra compiler flags and distance.c
** always prefers this set over the portable one on AArch64.
**
** float32: four independent 4-float FMA accumulators, a scalar tail. int8:
** widening multiplies (SMULL, or SSUBL then SMLAL for l2) into int32 lanes,
** summed per block of ANNEX_I8_BLOCK dimensions in int64; the tail is
** zero-padded to sixteen bytes. bit: CNT per byte, widened with UADALP.
*/
#include "distance_internal.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include <string.h>

/* ---------------------------------------------------------------- float32 */

/* Four floats at p; byte loads, so p need not be aligned. */
static float32x4_t f32_ld(const unsigned char *p) {
  return vreinterpretq_f32_u8(vld1q_u8(p));
}

static float f32_at(const unsigned char *p, size_t i) {
  float v;
  memcpy(&v, p + 4 * i, sizeof v);
  return v;
}

static float32x4_t l2_step(float32x4_t acc, float32x4_t x, float32x4_t y) {
  float32x4_t d = vsubq_f32(x, y);
  return vfmaq_f32(acc, d, d);
}

static float f32_sum4(float32x4_t s0, float32x4_t s1, float32x4_t s2,
                      float32x4_t s3) {
  return vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
}

static float f32_l2_neon(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
  float tail = 0.0f;
  size_t i = 0;
  for (; i + 16 <= dims; i += 16) {
    s0 = l2_step(s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
    s1 = l2_step(s1, f32_ld(a + 4 * i + 16), f32_ld(b + 4 * i + 16));
    s2 = l2_step(s2, f32_ld(a + 4 * i + 32), f32_ld(b + 4 * i + 32));
    s3 = l2_step(s3, f32_ld(a + 4 * i + 48), f32_ld(b + 4 * i + 48));
  }
  for (; i + 4 <= dims; i += 4) {
    s0 = l2_step(s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
  }
  for (; i < dims; i++) {
    float d = f32_at(a, i) - f32_at(b, i);
    tail += d * d;
  }
  return f32_sum4(s0, s1, s2, s3) + tail;
}

static float f32_dot_neon(const unsigned char *a, const unsigned char *b,
                          size_t dims) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
  float tail = 0.0f;
  size_t i = 0;
  for (; i + 16 <= dims; i += 16) {
    s0 = vfmaq_f32(s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
    s1 = vfmaq_f32(s1, f32_ld(a + 4 * i + 16), f32_ld(b + 4 * i + 16));
    s2 = vfmaq_f32(s2, f32_ld(a + 4 * i + 32), f32_ld(b + 4 * i + 32));
    s3 = vfmaq_f32(s3, f32_ld(a + 4 * i + 48), f32_ld(b + 4 * i + 48));
  }
  for (; i + 4 <= dims; i += 4) {
    s0 = vfmaq_f32(s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
  }
  for (; i < dims; i++) tail += f32_at(a, i) * f32_at(b, i);
  return f32_sum4(s0, s1, s2, s3) + tail;
}

static float f32_ip_neon(const void *pA, const void *pB, size_t dims) {
  return -f32_dot_neon(pA, pB, dims);
}

/* Running sums of a.b, a.a and b.b for the cosine kernel. */
typedef struct f32_cos_acc {
  float32x4_t ab, aa, bb;
} f32_cos_acc;

static void cos_step(f32_cos_acc *s, float32x4_t x, float32x4_t y) {
  s->ab = vfmaq_f32(s->ab, x, y);
  s->aa = vfmaq_f32(s->aa, x, x);
  s->bb = vfmaq_f32(s->bb, y, y);
}

static float f32_cosine_neon(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  float32x4_t z = vdupq_n_f32(0.0f);
  f32_cos_acc s0 = {z, z, z}, s1 = {z, z, z};
  float tAB = 0.0f, tAA = 0.0f, tBB = 0.0f;
  size_t i = 0;
  for (; i + 8 <= dims; i += 8) {
    cos_step(&s0, f32_ld(a + 4 * i), f32_ld(b + 4 * i));
    cos_step(&s1, f32_ld(a + 4 * i + 16), f32_ld(b + 4 * i + 16));
  }
  for (; i < dims; i++) {
    float x = f32_at(a, i), y = f32_at(b, i);
    tAB += x * y;
    tAA += x * x;
    tBB += y * y;
  }
  return annex_cosine_score(vaddvq_f32(vaddq_f32(s0.ab, s1.ab)) + tAB,
                            vaddvq_f32(vaddq_f32(s0.aa, s1.aa)) + tAA,
                            vaddvq_f32(vaddq_f32(s0.bb, s1.bb)) + tBB);
}

/* ------------------------------------------------------------------- int8 */

/* The last r < 16 int8 at p, zero-padded to sixteen. */
static int8x16_t i8_ld16_tail(const int8_t *p, size_t r) {
  int8_t aBuf[16] = {0};
  memcpy(aBuf, p, r);
  return vld1q_s8(aBuf);
}

static size_t i8_block_len(size_t i, size_t dims) {
  return dims - i < ANNEX_I8_BLOCK ? dims - i : ANNEX_I8_BLOCK;
}

/* acc plus x.y over sixteen pairs, in int32 lanes. */
static int32x4_t i8_dot_step(int32x4_t acc, int8x16_t x, int8x16_t y) {
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(y)));
  return vpadalq_s16(acc, vmull_high_s8(x, y));
}

/* acc plus (x-y)^2 over sixteen pairs, in int32 lanes. */
static int32x4_t i8_l2_step(int32x4_t acc, int8x16_t x, int8x16_t y) {
  int16x8_t lo = vsubl_s8(vget_low_s8(x), vget_low_s8(y));
  int16x8_t hi = vsubl_high_s8(x, y);
  acc = vmlal_s16(acc, vget_low_s16(lo), vget_low_s16(lo));
  acc = vmlal_high_s16(acc, lo, lo);
  acc = vmlal_s16(acc, vget_low_s16(hi), vget_low_s16(hi));
  return vmlal_high_s16(acc, hi, hi);
}

static int32x4_t i8_step(int32x4_t acc, int8x16_t x, int8x16_t y, int bL2) {
  return bL2 ? i8_l2_step(acc, x, y) : i8_dot_step(acc, x, y);
}

/* a.b (or the squared l2 distance when bL2) of n <= ANNEX_I8_BLOCK pairs. */
static int32_t i8_block(const int8_t *a, const int8_t *b, size_t n, int bL2) {
  int32x4_t s0 = vdupq_n_s32(0), s1 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = i8_step(s0, vld1q_s8(a + i), vld1q_s8(b + i), bL2);
    s1 = i8_step(s1, vld1q_s8(a + i + 16), vld1q_s8(b + i + 16), bL2);
  }
  if (i + 16 <= n) {
    s0 = i8_step(s0, vld1q_s8(a + i), vld1q_s8(b + i), bL2);
    i += 16;
  }
  if (i < n) {
    s1 = i8_step(s1, i8_ld16_tail(a + i, n - i), i8_ld16_tail(b + i, n - i),
                 bL2);
  }
  return vaddvq_s32(vaddq_s32(s0, s1));
}

/* Exact a.b, or the squared l2 distance when bL2. */
static int64_t i8_sum(const int8_t *a, const int8_t *b, size_t dims, int bL2) {
  int64_t s = 0;
  for (size_t i = 0; i < dims; i += ANNEX_I8_BLOCK) {
    s += i8_block(a + i, b + i, i8_block_len(i, dims), bL2);
  }
  return s;
}

static float i8_l2_neon(const void *pA, const void *pB, size_t dims) {
  return (float)i8_sum(pA, pB, dims, 1);
}

static float i8_ip_neon(const void *pA, const void *pB, size_t dims) {
  return (float)-i8_sum(pA, pB, dims, 0);
}

/* Running sums of a.b, a.a and b.b for the int8 cosine kernel. */
typedef struct i8_cos_acc {
  int32x4_t ab, aa, bb;
} i8_cos_acc;

static void i8_cos_step(i8_cos_acc *s, int8x16_t x, int8x16_t y) {
  s->ab = i8_dot_step(s->ab, x, y);
  s->aa = i8_dot_step(s->aa, x, x);
  s->bb = i8_dot_step(s->bb, y, y);
}

/* Adds a.b, a.a and b.b of n <= ANNEX_I8_BLOCK pairs to *pAB, *pAA, *pBB. */
static void i8_cos_block(const int8_t *a, const int8_t *b, size_t n,
                         int64_t *pAB, int64_t *pAA, int64_t *pBB) {
  int32x4_t z = vdupq_n_s32(0);
  i8_cos_acc s = {z, z, z};
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    i8_cos_step(&s, vld1q_s8(a + i), vld1q_s8(b + i));
  }
  if (i < n) {
    i8_cos_step(&s, i8_ld16_tail(a + i, n - i), i8_ld16_tail(b + i, n - i));
  }
  *pAB += vaddvq_s32(s.ab);
  *pAA += vaddvq_s32(s.aa);
  *pBB += vaddvq_s32(s.bb);
}

static float i8_cosine_neon(const void *pA, const void *pB, size_t dims) {
  const int8_t *a = pA, *b = pB;
  int64_t ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < dims; i += ANNEX_I8_BLOCK) {
    i8_cos_block(a + i, b + i, i8_block_len(i, dims), &ab, &aa, &bb);
  }
  return annex_cosine_score((double)ab, (double)aa, (double)bb);
}

/* -------------------------------------------------------------------- bit */

/* acc plus the popcount of x xor y, in uint32 lanes. */
static uint32x4_t popcnt_step(uint32x4_t acc, uint8x16_t x, uint8x16_t y) {
  return vpadalq_u16(acc, vpaddlq_u8(vcntq_u8(veorq_u8(x, y))));
}

static float bit_hamming_neon(const void *pA, const void *pB, size_t dims) {
  const unsigned char *a = pA, *b = pB;
  size_t n = dims / 8, i = 0;
  uint32x4_t s0 = vdupq_n_u32(0), s1 = s0;
  uint64_t cnt;
  for (; i + 32 <= n; i += 32) {
    s0 = popcnt_step(s0, vld1q_u8(a + i), vld1q_u8(b + i));
    s1 = popcnt_step(s1, vld1q_u8(a + i + 16), vld1q_u8(b + i + 16));
  }
  for (; i + 16 <= n; i += 16) {
    s0 = popcnt_step(s0, vld1q_u8(a + i), vld1q_u8(b + i));
  }
  cnt = vaddlvq_u32(vaddq_u32(s0, s1));
  for (; i < n; i++) cnt += (uint64_t)__builtin_popcount((unsigned)(a[i] ^ b[i]));
  return (float)cnt;
}

const annex_kernels annex_kernels_neon = {
  "neon",
  f32_l2_neon, f32_cosine_neon, f32_ip_neon,
  i8_l2_neon, i8_cosine_neon, i8_ip_neon,
  bit_hamming_neon,
  annex_code_l2_portable, annex_code_l2f_portable,
  annex_code_ip_portable /* NEON's own: not yet */
};

#else

typedef int annex_distance_neon_unused;

#endif /* __aarch64__ */
