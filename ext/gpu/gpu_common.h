/*
** gpu_common.h — shared by gpu_test.c and gpu_bench.c (plain C, no CUDA):
** loading the plugin the way annex.so will, deterministic data, the CPU
** reference kernels and the CPU side of the k-NN contract (annex_cuda.h).
*/
#ifndef ANNEX_GPU_COMMON_H
#define ANNEX_GPU_COMMON_H

#include <dlfcn.h>
#include <float.h>
#include <libgen.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "annex_cuda.h"

/* ------------------------------------------------------------ plugin */

/* Load annex_cuda.so: zPath, else $ANNEX_CUDA_PLUGIN, else the one this
** program was built with, else the file next to this executable. NULL on failure, with the reason in zErr. */
static inline const annex_cuda_api *load_plugin(const char *zPath, char *zErr,
                                         size_t nErr) {
  char buf[4096];
  void *h;
  annex_cuda_entry_fn xEntry;
  const annex_cuda_api *api;
  if (!zPath) zPath = getenv("ANNEX_CUDA_PLUGIN");
#ifdef ANNEX_CUDA_DEFAULT_PLUGIN
  if (!zPath && access(ANNEX_CUDA_DEFAULT_PLUGIN, R_OK) == 0) {
    zPath = ANNEX_CUDA_DEFAULT_PLUGIN;
  }
#endif
  if (!zPath) {
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 32);
    if (n <= 0) {
      snprintf(zErr, nErr, "cannot locate the executable");
      return NULL;
    }
    buf[n] = 0;
    {
      char *d = dirname(buf);
      memmove(buf, d, strlen(d) + 1);
    }
    strcat(buf, "/annex_cuda.so");
    zPath = buf;
  }
  h = dlopen(zPath, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(zErr, nErr, "dlopen(%s): %s", zPath, dlerror());
    return NULL;
  }
  *(void **)(&xEntry) = dlsym(h, ANNEX_CUDA_ENTRY);
  if (!xEntry) {
    snprintf(zErr, nErr, "%s: no symbol %s", zPath, ANNEX_CUDA_ENTRY);
    return NULL;
  }
  api = xEntry();
  if (!api || api->iVersion < ANNEX_CUDA_ABI_VERSION) {
    snprintf(zErr, nErr, "%s: ABI version %d < %d", zPath,
             api ? api->iVersion : -1, ANNEX_CUDA_ABI_VERSION);
    return NULL;
  }
  return api;
}

static inline double wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* -------------------------------------------------------------- data */

static inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in (0, 1), from a counter. */
static inline double unif(uint64_t seed, uint64_t i) {
  return ((mix64(seed * 0x632BE59BD9B4E019ull ^ i) >> 11) + 0.5) *
         (1.0 / 9007199254740992.0);
}

/* Standard normal, from a counter (Box-Muller on two uniforms). */
static inline float gauss(uint64_t seed, uint64_t i) {
  double u1 = unif(seed, 2 * i), u2 = unif(seed, 2 * i + 1);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* n x d points around nC centres ~ N(0, 3^2), each point its centre plus
** N(0, 1) noise: the PyTorch anchor's clustered data
** (../shared/peers/gpu_torch_knn.py), with this file's generator. */
static inline void gen_clustered(float *a, size_t n, size_t d, size_t nC,
                          uint64_t seed) {
  float *cent = malloc(sizeof(float) * nC * d);
  for (size_t i = 0; i < nC * d; i++) cent[i] = 3.0f * gauss(seed, i);
#pragma omp parallel for schedule(static)
  for (long r = 0; r < (long)n; r++) {
    size_t c = mix64(seed * 31 + 7 + (uint64_t)r) % nC;
    float *row = a + (size_t)r * d;
    const float *cr = cent + c * d;
    /* Box-Muller gives two normals per pair of uniforms */
    for (size_t j = 0; j < d; j += 2) {
      uint64_t i = ((uint64_t)r * d + j) / 2;
      double u1 = unif(seed + 1000003, 2 * i), u2 = unif(seed + 1000003, 2 * i + 1);
      double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
      row[j] = cr[j] + (float)(rad * cos(th));
      if (j + 1 < d) row[j + 1] = cr[j + 1] + (float)(rad * sin(th));
    }
  }
  free(cent);
}

static inline void gen_uniform(float *a, size_t n, size_t d, uint64_t seed) {
#pragma omp parallel for schedule(static)
  for (long r = 0; r < (long)n; r++) {
    for (size_t j = 0; j < d; j++) {
      a[r * d + j] = (float)(2.0 * unif(seed, (uint64_t)r * d + j) - 1.0);
    }
  }
}

/* --------------------------------------------------- CPU references */

/* A float32 kernel like annex's portable one: sequential float sums. */
static inline float cpu_score(int m, const float *a, const float *b, size_t d) {
  if (m == ANNEX_CUDA_L2) {
    float s = 0.f;
    for (size_t i = 0; i < d; i++) {
      float t = a[i] - b[i];
      s += t * t;
    }
    return s;
  } else if (m == ANNEX_CUDA_IP) {
    float s = 0.f;
    for (size_t i = 0; i < d; i++) s += a[i] * b[i];
    return -s;
  } else {
    float ab = 0.f, aa = 0.f, bb = 0.f;
    double s;
    for (size_t i = 0; i < d; i++) {
      ab += a[i] * b[i];
      aa += a[i] * a[i];
      bb += b[i] * b[i];
    }
    if (aa <= 0.f || bb <= 0.f) return 1.0f;
    s = 1.0 - (double)ab / sqrt((double)aa * (double)bb);
    if (s < 0.0) s = 0.0;
    if (s > 2.0) s = 2.0;
    return (float)s;
  }
}

/* The exact score, in double. */
static inline double ref_score(int m, const float *a, const float *b, size_t d) {
  double ab = 0, aa = 0, bb = 0, l2 = 0;
  for (size_t i = 0; i < d; i++) {
    double x = a[i], y = b[i];
    ab += x * y;
    aa += x * x;
    bb += y * y;
    l2 += (x - y) * (x - y);
  }
  if (m == ANNEX_CUDA_L2) return l2;
  if (m == ANNEX_CUDA_IP) return -ab;
  if (aa <= 0 || bb <= 0) return 1.0;
  return 1.0 - ab / sqrt(aa * bb);
}

typedef struct Res {
  float s;
  int64_t rowid;
  int64_t slot;
} Res;

static inline int res_cmp(const void *pa, const void *pb) {
  const Res *a = pa, *b = pb;
  if (a->s < b->s) return -1;
  if (a->s > b->s) return 1;
  return (a->rowid > b->rowid) - (a->rowid < b->rowid);
}

/* The CPU side of the contract: re-score hits with cpu_score, keep the best
** k in (score, rowid) order into out[0..*pnOut). Returns 1 if certified
** (identical to the CPU scan), 0 if not. */
static inline int cpu_certify(int m, const float *q, const float *X, size_t d,
                       const annex_cuda_hit *h, size_t nh, float floorv,
                       size_t k, Res *out, size_t *pnOut) {
  Res *r = malloc(sizeof(Res) * (nh ? nh : 1));
  size_t n;
  int ok;
  for (size_t i = 0; i < nh; i++) {
    r[i].s = cpu_score(m, q, X + (size_t)h[i].slot * d, d);
    r[i].rowid = h[i].rowid;
    r[i].slot = h[i].slot;
  }
  qsort(r, nh, sizeof(Res), res_cmp);
  n = nh < k ? nh : k;
  memcpy(out, r, sizeof(Res) * n);
  *pnOut = n;
  ok = n < k ? (floorv == INFINITY) : (r[k - 1].s < floorv);
  free(r);
  return ok;
}

/* Top k of one query by the double-precision score (ties by slot). */
typedef struct DRes {
  double s;
  int64_t slot;
} DRes;

static inline void ref_topk(int m, const float *q, const float *X, size_t n, size_t d,
                     const unsigned char *aValid, size_t k, DRes *out,
                     size_t *pnOut, double *aTmp) {
  size_t nOut = 0;
#pragma omp parallel for schedule(static)
  for (long i = 0; i < (long)n; i++) {
    aTmp[i] = ref_score(m, q, X + (size_t)i * d, d);
  }
  /* insertion into a sorted array of k: fine for small k */
  for (size_t i = 0; i < n; i++) {
    if (aValid && !((aValid[i >> 3] >> (i & 7)) & 1)) continue;
    double s = aTmp[i];
    if (nOut == k && !(s < out[k - 1].s)) continue;
    size_t j = nOut < k ? nOut++ : k - 1;
    while (j > 0 && out[j - 1].s > s) {
      out[j] = out[j - 1];
      j--;
    }
    out[j].s = s;
    out[j].slot = (int64_t)i;
  }
  *pnOut = nOut;
}

#endif /* ANNEX_GPU_COMMON_H */
