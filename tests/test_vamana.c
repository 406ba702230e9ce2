/*
** test_vamana.c — the Vamana graph core (ext/index/vamana.h) on its own.
**
** Every check is against exact answers: the sift5k ground truth
** ($ANNEX_DATA_DIR, ../shared/data by default) or brute force here.
**   - build serially and on 2 threads, search on PQ distances through an io
**     with exact re-ranking: recall@10 >= 0.95 at L = 100, distances exact;
**   - insert the last 1000 vectors one by one through the io: recall holds;
**   - delete 30%, repair every node that pointed at a deleted one: recall
**     over the live vectors holds, and no list names a deleted node;
**   - filtered search (accept bitmap) returns only accepted ids;
**   - out of memory at every allocation of a small build + search + insert.
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

#include "index/alloc.h"
#include "index/pq.h"
#include "index/vamana.h"

/* The data set ***********************************************************/

typedef struct tset {
  float *aBase, *aQuery;
  int nBase, nQuery, nDim;
  int32_t *aGt;
  int nGtK;
} tset;

static float *load_vecs(const char *zName, int *pn, int *pd) {
  const char *zDir = getenv("ANNEX_DATA_DIR");
  char zPath[1024];
  FILE *f;
  float *a = NULL;
  int d = 0, n = 0;
  snprintf(zPath, sizeof(zPath), "%s/sift5k/%s", zDir ? zDir : "../shared/data",
           zName);
  f = fopen(zPath, "rb");
  if (f == NULL) return NULL;
  while (fread(&d, 4, 1, f) == 1) {
    a = realloc(a, 4 * (size_t)d * (size_t)(n + 1));
    if (fread(a + (size_t)d * n, 4, (size_t)d, f) != (size_t)d) break;
    n++;
  }
  fclose(f);
  *pn = n;
  *pd = d;
  return a;
}

static void load_set(tset *t) {
  int d;
  memset(t, 0, sizeof(*t));
  t->aBase = load_vecs("base.fvecs", &t->nBase, &t->nDim);
  t->aQuery = load_vecs("query.fvecs", &t->nQuery, &d);
  t->aGt = (int32_t *)load_vecs("groundtruth.ivecs", &d, &t->nGtK);
  if (!t->aBase || !t->aQuery || !t->aGt) fail_msg("sift5k missing");
}

static void free_set(tset *t) {
  free(t->aBase);
  free(t->aQuery);
  free(t->aGt);
}

/* An io over memory *******************************************************/

typedef struct tstore {
  const float *aVec;   /* vectors by id */
  uint32_t *aNbr;      /* R per id */
  int *aDeg;           /* -1: no node */
  int R;
  size_t nDim;
  const annex_pq *pq;
  const uint8_t *aCode;
  long nFetch;
} tstore;

static int st_fetch(void *pCtx, uint32_t id, annex_vamana_node *pNode) {
  tstore *s = pCtx;
  if (s->aDeg[id] < 0) return 99;
  s->nFetch++;
  pNode->pVec = s->aVec + s->nDim * id;
  pNode->aNbr = s->aNbr + (size_t)s->R * id;
  pNode->nNbr = s->aDeg[id];
  return 0;
}

static int st_put(void *pCtx, uint32_t id, const float *pVec,
                  const uint32_t *aNbr, int n) {
  tstore *s = pCtx;
  assert_true(memcmp(pVec, s->aVec + s->nDim * id, 4 * s->nDim) == 0);
  assert_true(n >= 0 && n <= s->R);
  memcpy(s->aNbr + (size_t)s->R * id, aNbr, 4 * (size_t)n);
  s->aDeg[id] = n;
  return 0;
}

static int st_approx(void *pCtx, uint32_t id, float *out) {
  tstore *s = pCtx;
  if (s->pq == NULL) { /* exact vectors stand in */
    memcpy(out, s->aVec + s->nDim * id, 4 * s->nDim);
    return 0;
  }
  annex_pq_decode(s->pq, s->aCode + (size_t)s->pq->m * id, out);
  return 0;
}

/* Recall@10 of nQ queries against the ground truth (live ids only when
** aLive: then against brute force over them). */
static double recall(const annex_vamana_params *prm, const tset *t,
                     tstore *s, uint32_t iEntry, uint32_t nId,
                     const unsigned char *aLive, size_t L) {
  annex_vamana_walk *w = NULL;
  annex_vamana_io io = {s, st_fetch, st_put, st_approx};
  float *aTab = malloc(sizeof(float) * 256 * (size_t)s->pq->m);
  int nHit = 0;
  assert_int_equal(annex_vamana_walk_new(prm, &w), 0);
  for (int q = 0; q < t->nQuery; q++) {
    const float *pq = t->aQuery + (size_t)t->nDim * q;
    annex_vamana_query vq = {pq, aTab, s->aCode, s->pq->m, nId, iEntry, L,
                             aLive, nId};
    annex_hit aOut[10];
    size_t nOut = 0;
    int aTruth[10], nT = 0;
    annex_pq_table(s->pq, pq, 0, aTab);
    assert_int_equal(annex_vamana_search(prm, w, &vq, &io, 10, aOut, &nOut, NULL), 0);
    assert_int_equal(nOut, 10);
    if (aLive == NULL) {
      for (int i = 0; i < 10; i++) aTruth[nT++] = t->aGt[(size_t)t->nGtK * q + i];
    } else { /* brute force over the live ids */
      float aBest[10];
      for (uint32_t i = 0; i < nId; i++) {
        float d = 0;
        int j;
        if (!(aLive[i >> 3] & (1u << (i & 7)))) continue;
        for (size_t x = 0; x < s->nDim; x++) {
          float e = pq[x] - s->aVec[s->nDim * i + x];
          d += e * e;
        }
        if (nT == 10 && d >= aBest[9]) continue;
        j = nT < 10 ? nT++ : 9;
        while (j > 0 && aBest[j - 1] > d) {
          aBest[j] = aBest[j - 1];
          aTruth[j] = aTruth[j - 1];
          j--;
        }
        aBest[j] = d;
        aTruth[j] = (int)i;
      }
    }
    for (int i = 0; i < 10; i++) {
      const float *v = s->aVec + s->nDim * (size_t)aOut[i].rowid;
      float d = 0;
      for (size_t x = 0; x < s->nDim; x++) d += (pq[x] - v[x]) * (pq[x] - v[x]);
      assert_true(fabsf(d - aOut[i].score) <= 1e-3f * (d + 1));
      if (aLive) assert_true(aLive[aOut[i].rowid >> 3] & (1u << (aOut[i].rowid & 7)));
      for (int j = 0; j < nT; j++) nHit += aTruth[j] == (int)aOut[i].rowid;
    }
  }
  annex_vamana_walk_free(w);
  free(aTab);
  return nHit / (10.0 * t->nQuery);
}

static void train_pq(annex_pq *pq, const tset *t, uint8_t **paCode) {
  annex_kmeans_params kp;
  memset(&kp, 0, sizeof(kp));
  kp.k = 256;
  kp.nIter = 10;
  kp.seed = 7;
  kp.nThread = 2;
  assert_int_equal(annex_pq_init(pq, (size_t)t->nDim, 32), 0);
  assert_int_equal(annex_pq_train(pq, t->aBase, (size_t)t->nBase, &kp), 0);
  *paCode = malloc((size_t)t->nBase * 32);
  assert_int_equal(annex_pq_encode_many(pq, t->aBase, (size_t)t->nBase, 2,
                                        *paCode), 0);
}

/* Copy a built graph into a store. */
static void store_from(tstore *s, const annex_vamana *g, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    int nn;
    const uint32_t *a = annex_vamana_neighbours(g, i, &nn);
    assert_true(nn > 0 && nn <= s->R);
    memcpy(s->aNbr + (size_t)s->R * i, a, 4 * (size_t)nn);
    s->aDeg[i] = nn;
  }
}

static void test_build_insert_repair(void **state) {
  tset t;
  annex_pq pq;
  uint8_t *aCode;
  annex_vamana_params prm = {0, ANNEX_METRIC_L2, 32, 64, 1.2f, 1};
  annex_vamana *g = NULL;
  tstore s;
  double r;
  uint32_t nFirst;
  (void)state;
  load_set(&t);
  prm.nDim = (size_t)t.nDim;
  train_pq(&pq, &t, &aCode);
  memset(&s, 0, sizeof(s));
  s.aVec = t.aBase;
  s.R = prm.R;
  s.nDim = prm.nDim;
  s.pq = &pq;
  s.aCode = aCode;
  s.aNbr = malloc(4 * (size_t)prm.R * (size_t)t.nBase);
  s.aDeg = malloc(sizeof(int) * (size_t)t.nBase);
  /* serial and parallel builds of everything */
  for (int nThread = 1; nThread <= 2; nThread++) {
    assert_int_equal(annex_vamana_build(&prm, t.aBase, (uint32_t)t.nBase,
                                        nThread, NULL, NULL, &g), 0);
    store_from(&s, g, (uint32_t)t.nBase);
    s.nFetch = 0;
    r = recall(&prm, &t, &s, annex_vamana_entry(g), (uint32_t)t.nBase, NULL, 100);
    printf("# build on %d thread(s): recall@10 %.4f at L=100, %.1f nodes read "
           "per query\n", nThread, r, (double)s.nFetch / t.nQuery);
    assert_true(r >= 0.95);
    annex_vamana_free(g);
  }
  /* build on 4000, insert 1000 through the io */
  nFirst = (uint32_t)t.nBase - 1000;
  for (int i = 0; i < t.nBase; i++) s.aDeg[i] = -1;
  assert_int_equal(annex_vamana_build(&prm, t.aBase, nFirst, 2, NULL, NULL, &g), 0);
  store_from(&s, g, nFirst);
  {
    annex_vamana_walk *w = NULL;
    annex_vamana_io io = {&s, st_fetch, st_put, st_approx};
    float *aTab = malloc(sizeof(float) * 256 * 32);
    uint32_t iEntry = annex_vamana_entry(g);
    assert_int_equal(annex_vamana_walk_new(&prm, &w), 0);
    for (uint32_t i = nFirst; i < (uint32_t)t.nBase; i++) {
      const float *v = t.aBase + prm.nDim * i;
      annex_vamana_query vq = {v, aTab, aCode, 32, (uint32_t)t.nBase, iEntry,
                               (size_t)prm.L, NULL, 0};
      annex_pq_table(&pq, v, 0, aTab);
      assert_int_equal(annex_vamana_insert(&prm, w, &vq, &io, i, v), 0);
    }
    r = recall(&prm, &t, &s, iEntry, (uint32_t)t.nBase, NULL, 100);
    printf("# 1000 inserted: recall@10 %.4f\n", r);
    assert_true(r >= 0.95);
    /* delete 30% (never the entry), repair */
    {
      unsigned char *aDead = calloc((size_t)t.nBase / 8 + 1, 1);
      unsigned char *aLive = calloc((size_t)t.nBase / 8 + 1, 1);
      uint32_t aOut[64];
      int nOut;
      for (uint32_t i = 0; i < (uint32_t)t.nBase; i++) {
        if (i % 10 < 3 && i != iEntry) aDead[i >> 3] |= (unsigned char)(1u << (i & 7));
        else aLive[i >> 3] |= (unsigned char)(1u << (i & 7));
      }
      for (uint32_t i = 0; i < (uint32_t)t.nBase; i++) {
        int bAny = 0;
        if (aDead[i >> 3] & (1u << (i & 7))) continue;
        for (int j = 0; j < s.aDeg[i]; j++) {
          uint32_t c = s.aNbr[(size_t)s.R * i + j];
          bAny |= (aDead[c >> 3] >> (c & 7)) & 1;
        }
        if (!bAny) continue;
        assert_int_equal(annex_vamana_repair(&prm, w, &io, i, t.aBase + prm.nDim * i,
                                             s.aNbr + (size_t)s.R * i, s.aDeg[i],
                                             aDead, (uint64_t)t.nBase, aOut,
                                             &nOut), 0);
        /* dead nodes keep their lists: later repairs still read them */
        memcpy(s.aNbr + (size_t)s.R * i, aOut, 4 * (size_t)nOut);
        s.aDeg[i] = nOut;
      }
      for (uint32_t i = 0; i < (uint32_t)t.nBase; i++) {
        if (aDead[i >> 3] & (1u << (i & 7))) continue;
        for (int j = 0; j < s.aDeg[i]; j++) {
          uint32_t c = s.aNbr[(size_t)s.R * i + j];
          assert_false((aDead[c >> 3] >> (c & 7)) & 1);
        }
      }
      r = recall(&prm, &t, &s, iEntry, (uint32_t)t.nBase, aLive, 100);
      printf("# 30%% deleted and repaired: recall@10 %.4f\n", r);
      assert_true(r >= 0.95);
      free(aDead);
      free(aLive);
    }
    annex_vamana_walk_free(w);
    free(aTab);
  }
  annex_vamana_free(g);
  free(s.aNbr);
  free(s.aDeg);
  free(aCode);
  annex_pq_free(&pq);
  free_set(&t);
}

/* Out of memory ***********************************************************/

static long g_nCalls, g_nFailAt, g_nLive;

static void *oom_malloc(size_t n) {
  void *p;
  if (g_nFailAt > 0 && __atomic_add_fetch(&g_nCalls, 1, __ATOMIC_RELAXED) >= g_nFailAt) {
    return NULL;
  }
  p = malloc(n);
  if (p) __atomic_add_fetch(&g_nLive, 1, __ATOMIC_RELAXED);
  return p;
}
static void *oom_realloc(void *p, size_t n) {
  if (g_nFailAt > 0 && __atomic_add_fetch(&g_nCalls, 1, __ATOMIC_RELAXED) >= g_nFailAt) {
    return NULL;
  }
  if (p == NULL) return oom_malloc(n);
  return realloc(p, n);
}
static void oom_free(void *p) {
  if (p) __atomic_sub_fetch(&g_nLive, 1, __ATOMIC_RELAXED);
  free(p);
}

static void test_oom(void **state) {
  static const annex_allocator a = {oom_malloc, oom_realloc, oom_free};
  enum { N = 300, D = 8 };
  float *aVec = malloc(sizeof(float) * N * D);
  uint8_t aCode[N * 4];
  float aTab[4 * 256];
  annex_vamana_params prm = {D, ANNEX_METRIC_L2, 8, 16, 1.2f, 3};
  int nOk = 0;
  (void)state;
  for (int i = 0; i < N * D; i++) aVec[i] = (float)((i * 7919) % 101) / 10.0f;
  for (int i = 0; i < N * 4; i++) aCode[i] = (uint8_t)(i * 31);
  for (int i = 0; i < 4 * 256; i++) aTab[i] = (float)(i % 17);
  annex_alloc_set(&a);
  for (g_nFailAt = 1; nOk == 0; g_nFailAt++) {
    annex_vamana *g = NULL;
    annex_vamana_walk *w = NULL;
    int rc;
    g_nCalls = 0;
    g_nLive = 0;
    rc = annex_vamana_build(&prm, aVec, N, 1, NULL, NULL, &g);
    if (rc == 0) rc = annex_vamana_walk_new(&prm, &w);
    if (rc == 0) {
      uint32_t *aNbr = malloc(4 * 8 * N);
      int aDeg[N];
      tstore s = {aVec, aNbr, aDeg, 8, D, NULL, aCode, 0};
      annex_vamana_io io = {&s, st_fetch, st_put, st_approx};
      annex_vamana_query q = {aVec, aTab, aCode, 4, N - 1,
                              annex_vamana_entry(g), 20, NULL, 0};
      annex_hit aOut[5];
      size_t nOut;
      store_from(&s, g, N - 1);
      aDeg[N - 1] = -1;
      rc = annex_vamana_search(&prm, w, &q, &io, 5, aOut, &nOut, NULL);
      q.nId = N;
      q.pQuery = aVec + (N - 1) * D;
      if (rc == 0) rc = annex_vamana_insert(&prm, w, &q, &io, N - 1, q.pQuery);
      if (rc == 0) nOk = 1;
      free(aNbr);
    }
    assert_true(rc == 0 || rc == ANNEX_VAMANA_NOMEM);
    annex_vamana_walk_free(w);
    annex_vamana_free(g);
    assert_int_equal(g_nLive, 0);
  }
  printf("# out of memory at each of %ld allocations: no leak, no crash\n",
         g_nFailAt - 1);
  annex_alloc_set(NULL);
  free(aVec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_oom),
      cmocka_unit_test(test_build_insert_repair),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
