/*
** vamana.c — the Vamana graph (see vamana.h for what it owns and the
** papers it follows). No on-disk format here: the caller stores nodes.
**
** Layout of the parts:
**   walk        working memory of one search: visited bitmap, the sorted
**               candidate list (PQ or exact distance), the expanded nodes
**               (id, exact score, optionally a copy of the vector), and
**               the scratch of robust prune
**   prune       robust prune with alpha over candidates with known scores
**   build       in memory over all vectors, two passes, parallel with one
**               lock per node
**   search / insert / repair   through the caller's io
*/
#include "vamana.h"

#include <float.h>
#include <string.h>

#include "alloc.h"
#include "pq.h"

#ifdef ANNEX_HAVE_OPENMP
#include <omp.h>
#endif

/* The walk ***************************************************************/

typedef struct vamana_cand {
  float d;          /* distance to the target (PQ or exact) */
  uint32_t id;      /* node */
  uint32_t bDone;   /* expanded */
} vamana_cand;

struct annex_vamana_walk {
  size_t nDim;             /* floats per vector */
  unsigned char *aSeen;    /* visited bitmap (owned) */
  uint64_t nSeenBits;      /* bits in aSeen */
  uint32_t *aSeenId;       /* ids set in aSeen, to clear them (owned) */
  size_t nSeenId, nSeenAlloc;
  vamana_cand *aList;      /* candidate list, sorted by d (owned) */
  size_t nList, nListAlloc;
  uint32_t *aExpId;        /* expanded nodes (owned) */
  float *aExpD;            /* their exact scores (owned) */
  float *aExpVec;          /* their vectors when kept (owned) */
  size_t nExp, nExpAlloc;
  /* robust prune scratch */
  uint32_t *aPid;          /* candidate ids (owned) */
  float *aPd;              /* their scores to the pruned node (owned) */
  const float **apPvec;    /* their vectors (owned array) */
  unsigned char *aPgone;   /* pruned away (owned) */
  size_t nPAlloc;
  float *aApprox;          /* approximate vectors for repair (owned) */
  size_t nApproxAlloc;     /* vectors aApprox can hold */
  float *aTmpVec;          /* one vector (owned) */
  uint32_t aTmpNbr[ANNEX_VAMANA_MAX_R + 1]; /* one list */
};

static int vamana_grow(void **pp, size_t *pnAlloc, size_t nNeed, size_t sz) {
  size_t n = *pnAlloc ? *pnAlloc : 64;
  void *a;
  if (nNeed <= *pnAlloc) return ANNEX_VAMANA_OK;
  while (n < nNeed) n *= 2;
  a = annex_realloc(*pp, n * sz);
  if (a == NULL) return ANNEX_VAMANA_NOMEM;
  *pp = a;
  *pnAlloc = n;
  return ANNEX_VAMANA_OK;
}

int annex_vamana_walk_new(const annex_vamana_params *prm,
                          annex_vamana_walk **pp) {
  annex_vamana_walk *w = annex_calloc(1, sizeof(*w));
  *pp = NULL;
  if (w == NULL) return ANNEX_VAMANA_NOMEM;
  w->nDim = prm->nDim;
  w->aTmpVec = annex_malloc(sizeof(float) * (prm->nDim ? prm->nDim : 1));
  if (w->aTmpVec == NULL) {
    annex_free(w);
    return ANNEX_VAMANA_NOMEM;
  }
  annex_distance_init();
  *pp = w;
  return ANNEX_VAMANA_OK;
}

void annex_vamana_walk_free(annex_vamana_walk *w) {
  if (w == NULL) return;
  annex_free(w->aSeen);
  annex_free(w->aSeenId);
  annex_free(w->aList);
  annex_free(w->aExpId);
  annex_free(w->aExpD);
  annex_free(w->aExpVec);
  annex_free(w->aPid);
  annex_free(w->aPd);
  annex_free((void *)w->apPvec);
  annex_free(w->aPgone);
  annex_free(w->aApprox);
  annex_free(w->aTmpVec);
  annex_free(w);
}

size_t annex_vamana_walk_memory(const annex_vamana_walk *w) {
  if (w == NULL) return 0;
  return sizeof(*w) + (size_t)w->nSeenBits / 8 + 4 * w->nSeenAlloc +
         sizeof(vamana_cand) * w->nListAlloc +
         (8 + 4 * w->nDim) * w->nExpAlloc +
         (4 + 4 + sizeof(float *) + 1) * w->nPAlloc +
         4 * w->nDim * w->nApproxAlloc;
}

/* Clear the visited set and lists; make room for ids below nId. */
static int vamana_walk_reset(annex_vamana_walk *w, uint64_t nId) {
  for (size_t i = 0; i < w->nSeenId; i++) {
    w->aSeen[w->aSeenId[i] >> 3] = 0;
  }
  w->nSeenId = 0;
  w->nList = 0;
  w->nExp = 0;
  if (nId > w->nSeenBits) {
    uint64_t nBits = (nId + 63) / 64 * 64 + 1024;
    unsigned char *a = annex_realloc(w->aSeen, (size_t)nBits / 8);
    if (a == NULL) return ANNEX_VAMANA_NOMEM;
    memset(a, 0, (size_t)nBits / 8);
    w->aSeen = a;
    w->nSeenBits = nBits;
  }
  return ANNEX_VAMANA_OK;
}

/* Mark id visited; 1 if it was not before, 0 if it was, or NOMEM (< 0). */
static int vamana_visit(annex_vamana_walk *w, uint32_t id) {
  unsigned char m = (unsigned char)(1u << (id & 7));
  if (w->aSeen[id >> 3] & m) return 0;
  if (vamana_grow((void **)&w->aSeenId, &w->nSeenAlloc, w->nSeenId + 1, 4)) {
    return -1;
  }
  w->aSeen[id >> 3] |= m;
  w->aSeenId[w->nSeenId++] = id;
  return 1;
}

/* Offer (d, id) to the list of at most L; keeps it sorted by (d, id). */
static void vamana_list_offer(annex_vamana_walk *w, size_t L, float d,
                              uint32_t id) {
  size_t i;
  if (w->nList == L) {
    const vamana_cand *pLast = &w->aList[L - 1];
    if (d > pLast->d || (d == pLast->d && id > pLast->id)) return;
    w->nList--;
  }
  i = w->nList;
  while (i > 0 && (w->aList[i - 1].d > d ||
                   (w->aList[i - 1].d == d && w->aList[i - 1].id > id))) {
    w->aList[i] = w->aList[i - 1];
    i--;
  }
  w->aList[i].d = d;
  w->aList[i].id = id;
  w->aList[i].bDone = 0;
  w->nList++;
}

/* Index of the best unexpanded candidate, or nList. */
static size_t vamana_list_next(const annex_vamana_walk *w) {
  size_t i = 0;
  while (i < w->nList && w->aList[i].bDone) i++;
  return i;
}

/* Record an expanded node (and a copy of its vector if pVec). */
static int vamana_expanded(annex_vamana_walk *w, uint32_t id, float d,
                           const float *pVec) {
  size_t nOld = w->nExpAlloc;
  if (w->nExp == nOld) {
    size_t nNew = nOld ? 2 * nOld : 64;
    uint32_t *aId = annex_realloc(w->aExpId, 4 * nNew);
    float *aD;
    if (aId == NULL) return ANNEX_VAMANA_NOMEM;
    w->aExpId = aId;
    aD = annex_realloc(w->aExpD, 4 * nNew);
    if (aD == NULL) return ANNEX_VAMANA_NOMEM;
    w->aExpD = aD;
    if (pVec || w->aExpVec) {
      float *aV = annex_realloc(w->aExpVec, 4 * w->nDim * nNew);
      if (aV == NULL) return ANNEX_VAMANA_NOMEM;
      w->aExpVec = aV;
    }
    w->nExpAlloc = nNew;
  }
  if (pVec) {
    if (w->aExpVec == NULL) {
      w->aExpVec = annex_malloc(4 * w->nDim * w->nExpAlloc);
      if (w->aExpVec == NULL) return ANNEX_VAMANA_NOMEM;
    }
    memcpy(w->aExpVec + w->nDim * w->nExp, pVec, 4 * w->nDim);
  }
  w->aExpId[w->nExp] = id;
  w->aExpD[w->nExp] = d;
  w->nExp++;
  return ANNEX_VAMANA_OK;
}

/* Robust prune **********************************************************/

static int vamana_prune_room(annex_vamana_walk *w, size_t n) {
  size_t nA = w->nPAlloc;
  int rc = vamana_grow((void **)&w->aPid, &nA, n, 4);
  if (rc == ANNEX_VAMANA_OK && nA != w->nPAlloc) {
    float *aD = annex_realloc(w->aPd, 4 * nA);
    const float **ap;
    unsigned char *ag;
    if (aD == NULL) return ANNEX_VAMANA_NOMEM;
    w->aPd = aD;
    ap = annex_realloc((void *)w->apPvec, sizeof(float *) * nA);
    if (ap == NULL) return ANNEX_VAMANA_NOMEM;
    w->apPvec = ap;
    ag = annex_realloc(w->aPgone, nA);
    if (ag == NULL) return ANNEX_VAMANA_NOMEM;
    w->aPgone = ag;
    w->nPAlloc = nA;
  }
  return rc;
}

/* Sort the n prune candidates by (score, id) (insertion sort: n is a few
** hundred at most) and drop repeated ids. Returns the new count. */
static size_t vamana_prune_sort(annex_vamana_walk *w, size_t n) {
  size_t nOut = 0;
  for (size_t i = 1; i < n; i++) {
    uint32_t id = w->aPid[i];
    float d = w->aPd[i];
    const float *v = w->apPvec[i];
    size_t j = i;
    while (j > 0 && (w->aPd[j - 1] > d ||
                     (w->aPd[j - 1] == d && w->aPid[j - 1] > id))) {
      w->aPid[j] = w->aPid[j - 1];
      w->aPd[j] = w->aPd[j - 1];
      w->apPvec[j] = w->apPvec[j - 1];
      j--;
    }
    w->aPid[j] = id;
    w->aPd[j] = d;
    w->apPvec[j] = v;
  }
  for (size_t i = 0; i < n; i++) {
    if (nOut > 0 && w->aPid[nOut - 1] == w->aPid[i]) continue;
    w->aPid[nOut] = w->aPid[i];
    w->aPd[nOut] = w->aPd[i];
    w->apPvec[nOut] = w->apPvec[i];
    nOut++;
  }
  return nOut;
}

/* Robust prune of the n candidates in the prune scratch (ids, scores to the
** node, vectors): keep the nearest, drop every candidate it covers (alpha^2
** d(kept, c) <= d(node, c) in squared distances), repeat. Up to R ids go to
** aOut; returns their count. */
static int vamana_prune(const annex_vamana_params *prm, annex_dist_fn xDist,
                        annex_vamana_walk *w, size_t n, float alpha,
                        uint32_t *aOut) {
  float a2 = alpha * alpha;
  int nOut = 0;
  n = vamana_prune_sort(w, n);
  memset(w->aPgone, 0, n);
  for (size_t i = 0; i < n && nOut < prm->R; i++) {
    if (w->aPgone[i]) continue;
    aOut[nOut++] = w->aPid[i];
    for (size_t j = i + 1; j < n; j++) {
      if (w->aPgone[j]) continue;
      if (a2 * xDist(w->apPvec[i], w->apPvec[j], prm->nDim) <= w->aPd[j]) {
        w->aPgone[j] = 1;
      }
    }
  }
  return nOut;
}

/* The in-memory graph and its build *************************************/

struct annex_vamana {
  annex_vamana_params prm; /* parameters */
  annex_dist_fn xDist;     /* exact score */
  const float *aVec;       /* n * nDim (borrowed) */
  uint32_t n;              /* nodes */
  int nCap;                /* list capacity: R plus slack, pruned to R when
                           ** a back-edge finds it full */
  uint32_t *aNbr;          /* n * nCap out-lists (owned) */
  uint16_t *aDeg;          /* n list lengths (owned) */
  uint32_t iEntry;         /* the medoid */
#ifdef ANNEX_HAVE_OPENMP
  omp_lock_t *aLock;       /* one per node (owned) */
#endif
};

static void vamana_lock(annex_vamana *g, uint32_t i) {
#ifdef ANNEX_HAVE_OPENMP
  if (g->aLock) omp_set_lock(&g->aLock[i]);
#else
  (void)g;
  (void)i;
#endif
}

static void vamana_unlock(annex_vamana *g, uint32_t i) {
#ifdef ANNEX_HAVE_OPENMP
  if (g->aLock) omp_unset_lock(&g->aLock[i]);
#else
  (void)g;
  (void)i;
#endif
}

static const float *vamana_vec(const annex_vamana *g, uint32_t i) {
  return g->aVec + g->prm.nDim * (size_t)i;
}

/* The point nearest the mean. */
static uint32_t vamana_medoid(const annex_vamana *g, float *aMean) {
  size_t d = g->prm.nDim;
  uint32_t iBest = 0;
  float best = FLT_MAX;
  for (size_t j = 0; j < d; j++) {
    double s = 0;
    for (uint32_t i = 0; i < g->n; i++) s += vamana_vec(g, i)[j];
    aMean[j] = (float)(s / g->n);
  }
  for (uint32_t i = 0; i < g->n; i++) {
    float f = g->xDist(aMean, vamana_vec(g, i), d);
    if (f < best) {
      best = f;
      iBest = i;
    }
  }
  return iBest;
}

/* Greedy search for node p's own vector with exact scores (the build);
** the expanded nodes end in w->aExpId / aExpD. */
static int vamana_build_walk(annex_vamana *g, annex_vamana_walk *w,
                             uint32_t p) {
  const float *pq = vamana_vec(g, p);
  size_t L = (size_t)g->prm.L;
  int rc = vamana_walk_reset(w, g->n);
  if (rc == ANNEX_VAMANA_OK) rc = vamana_grow((void **)&w->aList,
                                              &w->nListAlloc, L, sizeof(vamana_cand));
  if (rc != ANNEX_VAMANA_OK) return rc;
  if (vamana_visit(w, g->iEntry) < 0) return ANNEX_VAMANA_NOMEM;
  vamana_list_offer(w, L, g->xDist(pq, vamana_vec(g, g->iEntry), g->prm.nDim),
                    g->iEntry);
  for (;;) {
    size_t i = vamana_list_next(w);
    uint32_t id;
    int nNbr;
    if (i == w->nList) break;
    w->aList[i].bDone = 1;
    id = w->aList[i].id;
    if (id != p) {
      rc = vamana_expanded(w, id, w->aList[i].d, NULL);
      if (rc) return rc;
    }
    vamana_lock(g, id);
    nNbr = g->aDeg[id];
    memcpy(w->aTmpNbr, g->aNbr + (size_t)g->nCap * id, 4 * (size_t)nNbr);
    vamana_unlock(g, id);
    for (int j = 0; j < nNbr; j++) {
      uint32_t c = w->aTmpNbr[j];
      int v = vamana_visit(w, c);
      if (v < 0) return ANNEX_VAMANA_NOMEM;
      if (v) vamana_list_offer(w, L, g->xDist(pq, vamana_vec(g, c), g->prm.nDim), c);
    }
  }
  return ANNEX_VAMANA_OK;
}

/* Add the back-edge p to node j's list, pruning it when full. */
static int vamana_back_edge(annex_vamana *g, annex_vamana_walk *w, uint32_t j,
                            uint32_t p, float alpha) {
  int R = g->nCap, rc = ANNEX_VAMANA_OK;
  uint32_t *aL;
  vamana_lock(g, j);
  aL = g->aNbr + (size_t)R * j;
  for (int i = 0; i < g->aDeg[j]; i++) {
    if (aL[i] == p) {
      vamana_unlock(g, j);
      return ANNEX_VAMANA_OK;
    }
  }
  if (g->aDeg[j] < R) {
    aL[g->aDeg[j]++] = p;
  } else {
    rc = vamana_prune_room(w, (size_t)R + 1);
    if (rc == ANNEX_VAMANA_OK) {
      const float *pj = vamana_vec(g, j);
      for (int i = 0; i <= R; i++) {
        uint32_t c = i < R ? aL[i] : p;
        w->aPid[i] = c;
        w->apPvec[i] = vamana_vec(g, c);
        w->aPd[i] = g->xDist(pj, w->apPvec[i], g->prm.nDim);
      }
      g->aDeg[j] = (uint16_t)vamana_prune(&g->prm, g->xDist, w, (size_t)R + 1,
                                          alpha, aL);
    }
  }
  vamana_unlock(g, j);
  return rc;
}

/* Link node p: walk, prune the walk plus its list, then the back-edges. */
static int vamana_link(annex_vamana *g, annex_vamana_walk *w, uint32_t p,
                       float alpha) {
  int R = g->nCap, nOut, nOld;
  uint32_t aOut[ANNEX_VAMANA_MAX_R];
  size_t n;
  int rc = vamana_build_walk(g, w, p);
  if (rc) return rc;
  rc = vamana_prune_room(w, w->nExp + (size_t)R);
  if (rc) return rc;
  n = 0;
  for (size_t i = 0; i < w->nExp; i++) {
    w->aPid[n] = w->aExpId[i];
    w->aPd[n] = w->aExpD[i];
    w->apPvec[n++] = vamana_vec(g, w->aExpId[i]);
  }
  vamana_lock(g, p);
  nOld = g->aDeg[p];
  memcpy(w->aTmpNbr, g->aNbr + (size_t)R * p, 4 * (size_t)nOld);
  vamana_unlock(g, p);
  for (int i = 0; i < nOld; i++) {
    w->aPid[n] = w->aTmpNbr[i];
    w->apPvec[n] = vamana_vec(g, w->aTmpNbr[i]);
    w->aPd[n] = g->xDist(vamana_vec(g, p), w->apPvec[n], g->prm.nDim);
    n++;
  }
  nOut = vamana_prune(&g->prm, g->xDist, w, n, alpha, aOut);
  vamana_lock(g, p);
  memcpy(g->aNbr + (size_t)R * p, aOut, 4 * (size_t)nOut);
  g->aDeg[p] = (uint16_t)nOut;
  vamana_unlock(g, p);
  for (int i = 0; i < nOut && rc == ANNEX_VAMANA_OK; i++) {
    rc = vamana_back_edge(g, w, aOut[i], p, alpha);
  }
  return rc;
}

/* A fixed pseudo-random order of 0..n-1 (xorshift, Fisher-Yates). */
static void vamana_shuffle(uint32_t *a, uint32_t n, uint64_t seed) {
  uint64_t x = seed ? seed : 0x9E3779B97F4A7C15ull;
  for (uint32_t i = 0; i < n; i++) a[i] = i;
  for (uint32_t i = n; i > 1; i--) {
    uint32_t j, t;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    j = (uint32_t)(x % i);
    t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}

/* One pass over the nodes in aOrder, nThread threads. */
static int vamana_pass(annex_vamana *g, const uint32_t *aOrder, float alpha,
                       int nThread, annex_vamana_progress_fn xProgress,
                       void *pCtx, size_t nBase, size_t nTotal) {
  int rcAll = ANNEX_VAMANA_OK;
  size_t nDone = 0;
#ifdef ANNEX_HAVE_OPENMP
#pragma omp parallel num_threads(nThread) if (nThread > 1)
#endif
  {
    annex_vamana_walk *w = NULL;
    int rc = annex_vamana_walk_new(&g->prm, &w);
    int bMain = 1;
#ifdef ANNEX_HAVE_OPENMP
    bMain = omp_get_thread_num() == 0;
#pragma omp for schedule(dynamic, 64)
#endif
    for (int64_t i = 0; i < (int64_t)g->n; i++) {
      size_t nNow;
      if (rc != ANNEX_VAMANA_OK ||
          __atomic_load_n(&rcAll, __ATOMIC_RELAXED) != ANNEX_VAMANA_OK) {
        continue;
      }
      rc = vamana_link(g, w, aOrder[i], alpha);
      nNow = __atomic_add_fetch(&nDone, 1, __ATOMIC_RELAXED);
      if (rc == ANNEX_VAMANA_OK && bMain && xProgress && (nNow & 1023) == 0 &&
          xProgress(pCtx, nBase + nNow, nTotal)) {
        rc = ANNEX_VAMANA_STOP;
      }
      if (rc != ANNEX_VAMANA_OK) {
        int zero = ANNEX_VAMANA_OK;
        __atomic_compare_exchange_n(&rcAll, &zero, rc, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
      }
    }
    if (rc != ANNEX_VAMANA_OK) {
      int zero = ANNEX_VAMANA_OK;
      __atomic_compare_exchange_n(&rcAll, &zero, rc, 0, __ATOMIC_RELAXED,
                                  __ATOMIC_RELAXED);
    }
    annex_vamana_walk_free(w);
  }
  (void)nThread;
  return rcAll;
}

/* Prune every list longer than R (the build's slack) down to R. */
static int vamana_finish(annex_vamana *g, int nThread) {
  int rcAll = ANNEX_VAMANA_OK;
#ifdef ANNEX_HAVE_OPENMP
#pragma omp parallel num_threads(nThread) if (nThread > 1)
#endif
  {
    annex_vamana_walk *w = NULL;
    int rc = annex_vamana_walk_new(&g->prm, &w);
    if (rc == ANNEX_VAMANA_OK) rc = vamana_prune_room(w, (size_t)g->nCap);
#ifdef ANNEX_HAVE_OPENMP
#pragma omp for schedule(dynamic, 256)
#endif
    for (int64_t i = 0; i < (int64_t)g->n; i++) {
      uint32_t *aL = g->aNbr + (size_t)g->nCap * (size_t)i;
      int nDeg = g->aDeg[i];
      if (rc != ANNEX_VAMANA_OK || nDeg <= g->prm.R) continue;
      for (int j = 0; j < nDeg; j++) {
        w->aPid[j] = aL[j];
        w->apPvec[j] = vamana_vec(g, aL[j]);
        w->aPd[j] = g->xDist(vamana_vec(g, (uint32_t)i), w->apPvec[j],
                             g->prm.nDim);
      }
      g->aDeg[i] = (uint16_t)vamana_prune(&g->prm, g->xDist, w, (size_t)nDeg,
                                          g->prm.alpha, w->aTmpNbr);
      memcpy(aL, w->aTmpNbr, 4 * (size_t)g->aDeg[i]);
    }
    if (rc != ANNEX_VAMANA_OK) {
      int zero = ANNEX_VAMANA_OK;
      __atomic_compare_exchange_n(&rcAll, &zero, rc, 0, __ATOMIC_RELAXED,
                                  __ATOMIC_RELAXED);
    }
    annex_vamana_walk_free(w);
  }
  (void)nThread;
  return rcAll;
}

void annex_vamana_free(annex_vamana *g) {
  if (g == NULL) return;
#ifdef ANNEX_HAVE_OPENMP
  if (g->aLock) {
    for (uint32_t i = 0; i < g->n; i++) omp_destroy_lock(&g->aLock[i]);
    annex_free(g->aLock);
  }
#endif
  annex_free(g->aNbr);
  annex_free(g->aDeg);
  annex_free(g);
}

static int vamana_alloc(const annex_vamana_params *prm, const float *aVec,
                        uint32_t n, int nThread, annex_vamana **pp) {
  annex_vamana *g = annex_calloc(1, sizeof(*g));
  *pp = NULL;
  if (g == NULL) return ANNEX_VAMANA_NOMEM;
  annex_distance_init();
  g->prm = *prm;
  g->xDist = annex_distance_kernel(ANNEX_ELEM_FLOAT32, prm->eMetric);
  g->aVec = aVec;
  g->n = n;
  g->nCap = prm->R + prm->R / 3;
  if (g->nCap > ANNEX_VAMANA_MAX_R) g->nCap = ANNEX_VAMANA_MAX_R;
  g->aNbr = annex_malloc(4 * (size_t)g->nCap * (n ? n : 1));
  g->aDeg = annex_calloc(n ? n : 1, sizeof(uint16_t));
  if (g->aNbr == NULL || g->aDeg == NULL || g->xDist == NULL) {
    annex_vamana_free(g);
    return ANNEX_VAMANA_NOMEM;
  }
#ifdef ANNEX_HAVE_OPENMP
  if (nThread > 1) {
    g->aLock = annex_malloc(sizeof(omp_lock_t) * (n ? n : 1));
    if (g->aLock == NULL) {
      annex_vamana_free(g);
      return ANNEX_VAMANA_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) omp_init_lock(&g->aLock[i]);
  }
#else
  (void)nThread;
#endif
  *pp = g;
  return ANNEX_VAMANA_OK;
}

int annex_vamana_build(const annex_vamana_params *prm, const float *aVec,
                       uint32_t n, int nThread,
                       annex_vamana_progress_fn xProgress, void *pCtx,
                       annex_vamana **pp) {
  annex_vamana *g = NULL;
  uint32_t *aOrder = NULL;
  float *aMean = NULL;
  int rc;
  *pp = NULL;
  if (prm->R < 2 || prm->R > ANNEX_VAMANA_MAX_R || prm->L < 1 ||
      !(prm->alpha >= 1.0f) || prm->nDim == 0) {
    return ANNEX_VAMANA_CORRUPT;
  }
  if (nThread < 1) nThread = 1;
  rc = vamana_alloc(prm, aVec, n, nThread, &g);
  if (rc) return rc;
  aOrder = annex_malloc(4 * (size_t)(n ? n : 1));
  aMean = annex_malloc(4 * prm->nDim);
  if (aOrder == NULL || aMean == NULL) rc = ANNEX_VAMANA_NOMEM;
  if (rc == ANNEX_VAMANA_OK && n > 0) {
    g->iEntry = vamana_medoid(g, aMean);
    vamana_shuffle(aOrder, n, prm->seed);
    rc = vamana_pass(g, aOrder, 1.0f, nThread, xProgress, pCtx, 0,
                     2 * (size_t)n);
    if (rc == ANNEX_VAMANA_OK && prm->alpha > 1.0f) {
      rc = vamana_pass(g, aOrder, prm->alpha, nThread, xProgress, pCtx, n,
                       2 * (size_t)n);
    }
    if (rc == ANNEX_VAMANA_OK) rc = vamana_finish(g, nThread);
  }
  annex_free(aOrder);
  annex_free(aMean);
  if (rc != ANNEX_VAMANA_OK) {
    annex_vamana_free(g);
    return rc;
  }
  *pp = g;
  return ANNEX_VAMANA_OK;
}

uint32_t annex_vamana_entry(const annex_vamana *g) { return g->iEntry; }

const uint32_t *annex_vamana_neighbours(const annex_vamana *g, uint32_t i,
                                        int *pn) {
  *pn = g->aDeg[i];
  return g->aNbr + (size_t)g->nCap * i;
}

/* Search through the io *************************************************/

/* The PQ score of id, or +inf when it has no code (a corrupt list). */
static float vamana_pq(const annex_vamana_query *q, uint32_t id) {
  return annex_pq_adc(q->aTab, q->aCode + (size_t)q->m * id, q->m);
}

/* Walk from the entry on PQ scores; every expanded node is scored exactly
** and (when bKeep) its vector copied. Expanded nodes end in w->aExp*. */
static int vamana_io_walk(const annex_vamana_params *prm, annex_vamana_walk *w,
                          const annex_vamana_query *q,
                          const annex_vamana_io *io, int bKeep) {
  annex_dist_fn xDist = annex_distance_kernel(ANNEX_ELEM_FLOAT32, prm->eMetric);
  size_t L = q->L ? q->L : 1;
  int rc = vamana_walk_reset(w, q->nId);
  if (rc == ANNEX_VAMANA_OK) rc = vamana_grow((void **)&w->aList,
                                              &w->nListAlloc, L, sizeof(vamana_cand));
  if (rc != ANNEX_VAMANA_OK) return rc;
  if (q->iEntry >= q->nId) return ANNEX_VAMANA_CORRUPT;
  if (vamana_visit(w, q->iEntry) < 0) return ANNEX_VAMANA_NOMEM;
  vamana_list_offer(w, L, vamana_pq(q, q->iEntry), q->iEntry);
  for (;;) {
    size_t i = vamana_list_next(w);
    annex_vamana_node nd;
    uint32_t id;
    if (i == w->nList) break;
    w->aList[i].bDone = 1;
    id = w->aList[i].id;
    rc = io->xFetch(io->pCtx, id, &nd);
    if (rc != ANNEX_VAMANA_OK) return rc;
    if (nd.nNbr < 0 || nd.nNbr > prm->R) return ANNEX_VAMANA_CORRUPT;
    rc = vamana_expanded(w, id, xDist(q->pQuery, nd.pVec, prm->nDim),
                         bKeep ? nd.pVec : NULL);
    if (rc != ANNEX_VAMANA_OK) return rc;
    for (int j = 0; j < nd.nNbr; j++) {
      uint32_t c = nd.aNbr[j];
      int v;
      if (c >= q->nId) return ANNEX_VAMANA_CORRUPT;
      v = vamana_visit(w, c);
      if (v < 0) return ANNEX_VAMANA_NOMEM;
      if (v) vamana_list_offer(w, L, vamana_pq(q, c), c);
    }
  }
  return ANNEX_VAMANA_OK;
}

int annex_vamana_search(const annex_vamana_params *prm, annex_vamana_walk *w,
                        const annex_vamana_query *q, const annex_vamana_io *io,
                        size_t k, annex_hit *aOut, size_t *pnOut,
                        size_t *pnExpanded) {
  annex_topk top;
  int rc = vamana_io_walk(prm, w, q, io, 0);
  *pnOut = 0;
  if (pnExpanded) *pnExpanded = w->nExp;
  if (rc != ANNEX_VAMANA_OK) return rc;
  annex_topk_init(&top, aOut, k);
  for (size_t i = 0; i < w->nExp; i++) {
    uint32_t id = w->aExpId[i];
    if (q->aAccept && (id >= q->nAccept ||
                       !(q->aAccept[id >> 3] & (1u << (id & 7))))) {
      continue;
    }
    annex_topk_push(&top, w->aExpD[i], id);
  }
  annex_topk_sort(&top);
  *pnOut = top.n;
  return ANNEX_VAMANA_OK;
}

/* Insert and repair through the io **************************************/

/* Put approximate vectors of the prune candidates [i0, n) into aApprox and
** score them against pVec. */
static int vamana_approx(const annex_vamana_params *prm, annex_dist_fn xDist,
                         annex_vamana_walk *w, const annex_vamana_io *io,
                         const float *pVec, size_t i0, size_t n) {
  size_t nNeed = n - i0;
  if (nNeed > w->nApproxAlloc) {
    float *a = annex_realloc(w->aApprox, 4 * prm->nDim * nNeed);
    if (a == NULL) return ANNEX_VAMANA_NOMEM;
    w->aApprox = a;
    w->nApproxAlloc = nNeed;
  }
  for (size_t i = i0; i < n; i++) {
    float *v = w->aApprox + prm->nDim * (i - i0);
    int rc = io->xApprox(io->pCtx, w->aPid[i], v);
    if (rc != ANNEX_VAMANA_OK) return rc;
    w->apPvec[i] = v;
    w->aPd[i] = xDist(pVec, v, prm->nDim);
  }
  return ANNEX_VAMANA_OK;
}

/* The back-edge id -> j through the io; an overflowing list is pruned with
** j's exact vector against approximate ones. */
static int vamana_io_back_edge(const annex_vamana_params *prm,
                               annex_dist_fn xDist, annex_vamana_walk *w,
                               const annex_vamana_io *io, uint32_t j,
                               uint32_t id) {
  annex_vamana_node nd;
  uint32_t aOut[ANNEX_VAMANA_MAX_R];
  int n, rc = io->xFetch(io->pCtx, j, &nd);
  if (rc != ANNEX_VAMANA_OK) return rc;
  if (nd.nNbr < 0 || nd.nNbr > prm->R) return ANNEX_VAMANA_CORRUPT;
  for (int i = 0; i < nd.nNbr; i++) {
    if (nd.aNbr[i] == id) return ANNEX_VAMANA_OK;
  }
  memcpy(w->aTmpVec, nd.pVec, 4 * prm->nDim);
  n = nd.nNbr;
  memcpy(w->aTmpNbr, nd.aNbr, 4 * (size_t)n);
  w->aTmpNbr[n++] = id;
  if (n > prm->R) {
    rc = vamana_prune_room(w, (size_t)n);
    for (int i = 0; i < n && rc == ANNEX_VAMANA_OK; i++) w->aPid[i] = w->aTmpNbr[i];
    if (rc == ANNEX_VAMANA_OK) rc = vamana_approx(prm, xDist, w, io, w->aTmpVec, 0, (size_t)n);
    if (rc != ANNEX_VAMANA_OK) return rc;
    n = vamana_prune(prm, xDist, w, (size_t)n, prm->alpha, aOut);
    memcpy(w->aTmpNbr, aOut, 4 * (size_t)n);
  }
  return io->xPut(io->pCtx, j, w->aTmpVec, w->aTmpNbr, n);
}

int annex_vamana_insert(const annex_vamana_params *prm, annex_vamana_walk *w,
                        const annex_vamana_query *q, const annex_vamana_io *io,
                        uint32_t id, const float *pVec) {
  annex_dist_fn xDist = annex_distance_kernel(ANNEX_ELEM_FLOAT32, prm->eMetric);
  uint32_t aOut[ANNEX_VAMANA_MAX_R];
  size_t n = 0;
  int nOut, rc = vamana_io_walk(prm, w, q, io, 1);
  if (rc == ANNEX_VAMANA_OK) rc = vamana_prune_room(w, w->nExp);
  if (rc != ANNEX_VAMANA_OK) return rc;
  for (size_t i = 0; i < w->nExp; i++) {
    if (w->aExpId[i] == id) continue; /* re-linking an updated node */
    w->aPid[n] = w->aExpId[i];
    w->aPd[n] = w->aExpD[i];
    w->apPvec[n++] = w->aExpVec + prm->nDim * i;
  }
  nOut = vamana_prune(prm, xDist, w, n, prm->alpha, aOut);
  rc = io->xPut(io->pCtx, id, pVec, aOut, nOut);
  for (int i = 0; i < nOut && rc == ANNEX_VAMANA_OK; i++) {
    rc = vamana_io_back_edge(prm, xDist, w, io, aOut[i], id);
  }
  return rc;
}

static int vamana_dead(const unsigned char *aDead, uint64_t nDead,
                       uint32_t id) {
  return id < nDead && (aDead[id >> 3] & (1u << (id & 7)));
}

int annex_vamana_repair(const annex_vamana_params *prm, annex_vamana_walk *w,
                        const annex_vamana_io *io, uint32_t id,
                        const float *pVec, const uint32_t *aNbr, int nNbr,
                        const unsigned char *aDead, uint64_t nDead,
                        uint32_t *aOut, int *pnOut) {
  annex_dist_fn xDist = annex_distance_kernel(ANNEX_ELEM_FLOAT32, prm->eMetric);
  uint32_t aMine[ANNEX_VAMANA_MAX_R];
  size_t n = 0;
  int rc;
  if (nNbr < 0 || nNbr > prm->R) return ANNEX_VAMANA_CORRUPT;
  memcpy(aMine, aNbr, 4 * (size_t)nNbr); /* aNbr may live in the io's cache */
  for (int i = 0; i < nNbr; i++) {
    annex_vamana_node nd;
    if (!vamana_dead(aDead, nDead, aMine[i])) {
      rc = vamana_prune_room(w, n + 1);
      if (rc != ANNEX_VAMANA_OK) return rc;
      w->aPid[n++] = aMine[i];
      continue;
    }
    rc = io->xFetch(io->pCtx, aMine[i], &nd);
    if (rc != ANNEX_VAMANA_OK) return rc;
    if (nd.nNbr < 0 || nd.nNbr > prm->R) return ANNEX_VAMANA_CORRUPT;
    rc = vamana_prune_room(w, n + (size_t)nd.nNbr);
    if (rc != ANNEX_VAMANA_OK) return rc;
    for (int j = 0; j < nd.nNbr; j++) {
      uint32_t c = nd.aNbr[j];
      if (c != id && !vamana_dead(aDead, nDead, c)) w->aPid[n++] = c;
    }
  }
  rc = vamana_approx(prm, xDist, w, io, pVec, 0, n);
  if (rc != ANNEX_VAMANA_OK) return rc;
  n = vamana_prune_sort(w, n);
  if (n <= (size_t)prm->R) {
    memcpy(aOut, w->aPid, 4 * n);
    *pnOut = (int)n;
  } else {
    *pnOut = vamana_prune(prm, xDist, w, n, prm->alpha, aOut);
  }
  return ANNEX_VAMANA_OK;
}
