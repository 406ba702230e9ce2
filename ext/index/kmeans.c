/*
** kmeans.c — seeded k-means with BLAS assignment; see kmeans.h.
*/
#include "kmeans.h"

#include <math.h>
#include <string.h>

#include "alloc.h"
#include "blas.h"
#include "distance.h"

#ifdef ANNEX_HAVE_OPENMP
#include <omp.h>
#endif

/* Floats of x.c products held at once by the BLAS path (16 MiB). */
#define KMEANS_DOT_FLOATS ((size_t)1 << 22)
/* Relative perturbation of a split centroid. */
#define KMEANS_SPLIT_EPS (1.0f / 1024.0f)

uint64_t annex_kmeans_rand(uint64_t *pState) {
  uint64_t z = (*pState += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform draw in [0, n). */
static size_t kmeans_below(uint64_t *pState, size_t n) {
  return (size_t)(annex_kmeans_rand(pState) % (uint64_t)n);
}

static int kmeans_threads(int nThread) {
#ifdef ANNEX_HAVE_OPENMP
  return nThread > 1 ? nThread : 1;
#else
  (void)nThread;
  return 1;
#endif
}

/* Argmin over one row of scores (first index on ties). */
static void kmeans_argmin(const float *a, size_t k, int32_t *piBest,
                          float *pBest) {
  size_t iBest = 0;
  float best = a[0];
  for (size_t j = 1; j < k; j++) {
    if (a[j] < best) {
      best = a[j];
      iBest = j;
    }
  }
  *piBest = (int32_t)iBest;
  *pBest = best;
}

/* Assignment through cblas_sgemm, nb rows at a time. */
static int kmeans_assign_blas(annex_sgemm_fn xSgemm, const float *aX,
                              size_t n, size_t nDim, const float *aC,
                              size_t k, int bIP, int nThread,
                              int32_t *aAssign, float *aScore) {
  size_t nb = KMEANS_DOT_FLOATS / k;
  float *aDot, *aCNorm;
  if (nb < 1) nb = 1;
  if (nb > n) nb = n;
  aDot = annex_malloc(nb * k * sizeof(float));
  aCNorm = annex_malloc(k * sizeof(float));
  if (aDot == NULL || aCNorm == NULL) {
    annex_free(aDot);
    annex_free(aCNorm);
    return ANNEX_KMEANS_NOMEM;
  }
  for (size_t j = 0; j < k; j++) {
    const float *c = aC + j * nDim;
    float s = 0;
    for (size_t t = 0; t < nDim; t++) s += c[t] * c[t];
    aCNorm[j] = bIP ? 0.0f : s;
  }
  for (size_t i0 = 0; i0 < n; i0 += nb) {
    size_t m = n - i0 < nb ? n - i0 : nb;
    const float *x0 = aX + i0 * nDim;
    /* aDot = -2 X C^T (or -X C^T for ip), then add |c|^2 per column. */
    xSgemm(ANNEX_CBLAS_ROW_MAJOR, ANNEX_CBLAS_NO_TRANS, ANNEX_CBLAS_TRANS,
           (int)m, (int)k, (int)nDim, bIP ? -1.0f : -2.0f, x0, (int)nDim, aC,
           (int)nDim, 0.0f, aDot, (int)k);
    int nt = kmeans_threads(nThread);
    (void)nt;
#ifdef ANNEX_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (long long ii = 0; ii < (long long)m; ii++) {
      size_t i = (size_t)ii;
      float *row = aDot + i * k, best;
      const float *x = x0 + i * nDim;
      float xn = 0;
      for (size_t j = 0; j < k; j++) row[j] += aCNorm[j];
      kmeans_argmin(row, k, &aAssign[i0 + i], &best);
      if (!bIP) {
        for (size_t t = 0; t < nDim; t++) xn += x[t] * x[t];
        best += xn;
        if (best < 0) best = 0;
      }
      if (aScore) aScore[i0 + i] = best;
    }
  }
  annex_free(aDot);
  annex_free(aCNorm);
  return ANNEX_KMEANS_OK;
}

/* Assignment with the SIMD kernels, one row at a time. */
static int kmeans_assign_simd(const float *aX, size_t n, size_t nDim,
                              const float *aC, size_t k, int bIP,
                              int nThread, int32_t *aAssign, float *aScore) {
  int nt = kmeans_threads(nThread);
  float *aTmp = annex_malloc((size_t)nt * k * sizeof(float));
  annex_metric eMetric = bIP ? ANNEX_METRIC_IP : ANNEX_METRIC_L2;
  if (aTmp == NULL) return ANNEX_KMEANS_NOMEM;
  annex_distance_init();
#ifdef ANNEX_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
  for (long long ii = 0; ii < (long long)n; ii++) {
    size_t i = (size_t)ii;
    int iThread = 0;
    float best;
#ifdef ANNEX_HAVE_OPENMP
    iThread = omp_get_thread_num();
#endif
    float *row = aTmp + (size_t)iThread * k;
    annex_distance_many(ANNEX_ELEM_FLOAT32, eMetric, aX + i * nDim, aC, k,
                        nDim, row);
    kmeans_argmin(row, k, &aAssign[i], &best);
    if (aScore) aScore[i] = best;
  }
  annex_free(aTmp);
  return ANNEX_KMEANS_OK;
}

int annex_kmeans_assign(const float *aX, size_t n, size_t nDim,
                        const float *aC, size_t k, int bIP, int nThread,
                        int32_t *aAssign, float *aScore) {
  annex_sgemm_fn xSgemm;
  if (n == 0) return ANNEX_KMEANS_OK;
  if (k == 0) return ANNEX_KMEANS_TOO_FEW;
  xSgemm = annex_blas_sgemm();
  /* A product only pays off against enough centroids. */
  if (xSgemm && k >= 16) {
    return kmeans_assign_blas(xSgemm, aX, n, nDim, aC, k, bIP, nThread,
                              aAssign, aScore);
  }
  return kmeans_assign_simd(aX, n, nDim, aC, k, bIP, nThread, aAssign,
                            aScore);
}

/* The training set: aX itself, or a seeded sample copied to *paOwn. */
static const float *kmeans_sample(const float *aX, size_t n, size_t nDim,
                                  size_t nWant, uint64_t *pRng,
                                  float **paOwn, size_t *pnOut) {
  size_t *aIdx;
  float *aOut;
  *paOwn = NULL;
  *pnOut = n;
  if (n <= nWant) return aX;
  aIdx = annex_malloc(n * sizeof(size_t));
  aOut = annex_malloc(nWant * nDim * sizeof(float));
  if (aIdx == NULL || aOut == NULL) {
    annex_free(aIdx);
    annex_free(aOut);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) aIdx[i] = i;
  for (size_t i = 0; i < nWant; i++) { /* partial Fisher-Yates */
    size_t j = i + kmeans_below(pRng, n - i);
    size_t t = aIdx[i];
    aIdx[i] = aIdx[j];
    aIdx[j] = t;
  }
  for (size_t i = 0; i < nWant; i++) {
    memcpy(aOut + i * nDim, aX + aIdx[i] * nDim, nDim * sizeof(float));
  }
  annex_free(aIdx);
  *paOwn = aOut;
  *pnOut = nWant;
  return aOut;
}

/* k distinct training vectors, drawn with the seeded generator. */
static int kmeans_init_random(const float *aX, size_t n, size_t nDim,
                              size_t k, uint64_t *pRng, float *aC) {
  size_t *aIdx = annex_malloc(n * sizeof(size_t));
  if (aIdx == NULL) return ANNEX_KMEANS_NOMEM;
  for (size_t i = 0; i < n; i++) aIdx[i] = i;
  for (size_t i = 0; i < k; i++) {
    size_t j = i + kmeans_below(pRng, n - i);
    size_t t = aIdx[i];
    aIdx[i] = aIdx[j];
    aIdx[j] = t;
    memcpy(aC + i * nDim, aX + aIdx[i] * nDim, nDim * sizeof(float));
  }
  annex_free(aIdx);
  return ANNEX_KMEANS_OK;
}

/* k-means++ (Arthur & Vassilvitskii): each next centroid is a training
** vector drawn with probability proportional to its squared distance to
** the nearest centroid so far. Over the first n rows of aX (a random
** sample already, see kmeans_sample). */
static int kmeans_init_pp(const float *aX, size_t n, size_t nDim, size_t k,
                          uint64_t *pRng, float *aC) {
  double *aMin = annex_malloc(n * sizeof(double));
  if (aMin == NULL) return ANNEX_KMEANS_NOMEM;
  memcpy(aC, aX + kmeans_below(pRng, n) * nDim, nDim * sizeof(float));
  for (size_t i = 0; i < n; i++) aMin[i] = INFINITY;
  for (size_t c = 1; c < k; c++) {
    const float *pLast = aC + (c - 1) * nDim;
    double tot = 0, r;
    size_t i;
    for (i = 0; i < n; i++) {
      double s = 0;
      for (size_t t = 0; t < nDim; t++) {
        double e = (double)aX[i * nDim + t] - pLast[t];
        s += e * e;
      }
      if (s < aMin[i]) aMin[i] = s;
      tot += aMin[i];
    }
    r = (double)(annex_kmeans_rand(pRng) >> 11) * 0x1.0p-53 * tot;
    for (i = 0; i + 1 < n && (r -= aMin[i]) >= 0;) i++;
    if (tot <= 0) i = kmeans_below(pRng, n); /* all points covered */
    memcpy(aC + c * nDim, aX + i * nDim, nDim * sizeof(float));
  }
  annex_free(aMin);
  return ANNEX_KMEANS_OK;
}

/* k-means++ when its k passes cost at most about KMEANS_PP_FLOPS (over
** the first min(n, 32 k) rows of the shuffled sample), else a random pick:
** both seeded. */
#define KMEANS_PP_FLOPS 2e9
static int kmeans_init(const float *aX, size_t n, size_t nDim, size_t k,
                       int bShuffled, uint64_t *pRng, float *aC) {
  size_t nPP = n < 32 * k ? n : 32 * k;
  if (bShuffled && (double)k * (double)nPP * (double)nDim <= KMEANS_PP_FLOPS) {
    return kmeans_init_pp(aX, nPP, nDim, k, pRng, aC);
  }
  if (!bShuffled && (double)k * (double)n * (double)nDim <= KMEANS_PP_FLOPS) {
    return kmeans_init_pp(aX, n, nDim, k, pRng, aC);
  }
  return kmeans_init_random(aX, n, nDim, k, pRng, aC);
}

/* Give every empty cluster half of a populated one (seeded choice weighted
** by size), perturbing the two copies symmetrically. */
static void kmeans_split_empty(float *aC, size_t *aCount, size_t k,
                               size_t nDim, size_t n, uint64_t *pRng) {
  for (size_t e = 0; e < k; e++) {
    size_t j = 0;
    if (aCount[e] != 0) continue;
    for (;;) { /* weighted draw of a cluster with >= 2 members */
      size_t r = kmeans_below(pRng, n), acc = 0;
      for (j = 0; j < k; j++) {
        acc += aCount[j];
        if (r < acc) break;
      }
      if (j < k && aCount[j] >= 2) break;
    }
    for (size_t t = 0; t < nDim; t++) {
      float v = aC[j * nDim + t];
      float d = KMEANS_SPLIT_EPS * (fabsf(v) + 1e-6f);
      if (t % 2) d = -d;
      aC[e * nDim + t] = v + d;
      aC[j * nDim + t] = v - d;
    }
    aCount[e] = aCount[j] / 2;
    aCount[j] -= aCount[e];
  }
}

/* One update step: centroid = mean of its members (double sums). */
static void kmeans_update(const float *aX, size_t n, size_t nDim,
                          const int32_t *aAssign, size_t k, double *aSum,
                          size_t *aCount, float *aC) {
  memset(aSum, 0, k * nDim * sizeof(double));
  memset(aCount, 0, k * sizeof(size_t));
  for (size_t i = 0; i < n; i++) {
    double *s = aSum + (size_t)aAssign[i] * nDim;
    const float *x = aX + i * nDim;
    for (size_t t = 0; t < nDim; t++) s[t] += x[t];
    aCount[aAssign[i]]++;
  }
  for (size_t j = 0; j < k; j++) {
    if (aCount[j] == 0) continue;
    for (size_t t = 0; t < nDim; t++) {
      aC[j * nDim + t] = (float)(aSum[j * nDim + t] / (double)aCount[j]);
    }
  }
}

int annex_kmeans_train(const float *aX, size_t n, size_t nDim,
                       const annex_kmeans_params *p, float *aCentroid,
                       double *pObjective) {
  size_t k = p->k > 0 ? (size_t)p->k : 0;
  size_t nMax = p->nMaxPerCentroid ? p->nMaxPerCentroid : 256;
  int nIter = p->nIter > 0 ? p->nIter : 20;
  uint64_t rng = p->seed ^ 0x6B6D65616E73ull; /* "kmeans" */
  float *aOwn = NULL, *aScore = NULL;
  int32_t *aAssign = NULL;
  double *aSum = NULL, obj = 0;
  size_t *aCount = NULL, nS;
  const float *aS;
  int rc = ANNEX_KMEANS_NOMEM;
  int bHook = p->xAssign != NULL;

  if (k == 0 || n < k) return ANNEX_KMEANS_TOO_FEW;
  aS = kmeans_sample(aX, n, nDim, k * nMax, &rng, &aOwn, &nS);
  if (aS == NULL) return ANNEX_KMEANS_NOMEM;
  aAssign = annex_malloc(nS * sizeof(int32_t));
  aScore = annex_malloc(nS * sizeof(float));
  aSum = annex_malloc(k * nDim * sizeof(double));
  aCount = annex_malloc(k * sizeof(size_t));
  if (aAssign && aScore && aSum && aCount) {
    rc = kmeans_init(aS, nS, nDim, k, aOwn != NULL, &rng, aCentroid);
  }
  for (int it = 1; rc == ANNEX_KMEANS_OK && it <= nIter; it++) {
    int bDone = 0;
    if (bHook) { /* the sample stays on the device between iterations */
      unsigned f = (it > 1 ? ANNEX_KMEANS_REUSE_X : 0) |
                   (it < nIter ? ANNEX_KMEANS_HOLD_X : 0);
      bDone = p->xAssign(p->pAssignCtx, aS, nS, nDim, aCentroid, k, 0, f,
                         aAssign, aScore) == 0;
      if (!bDone) bHook = 0; /* CPU from here on */
    }
    if (!bDone) {
      rc = annex_kmeans_assign(aS, nS, nDim, aCentroid, k, 0, p->nThread,
                               aAssign, aScore);
    }
    if (rc != ANNEX_KMEANS_OK) break;
    obj = 0;
    for (size_t i = 0; i < nS; i++) obj += aScore[i];
    kmeans_update(aS, nS, nDim, aAssign, k, aSum, aCount, aCentroid);
    kmeans_split_empty(aCentroid, aCount, k, nDim, nS, &rng);
    if (p->xProgress && p->xProgress(p->pProgressCtx, it, nIter, obj)) {
      rc = ANNEX_KMEANS_ABORTED;
    }
  }
  if (pObjective) *pObjective = obj;
  annex_free(aOwn);
  annex_free(aAssign);
  annex_free(aScore);
  annex_free(aSum);
  annex_free(aCount);
  return rc;
}
