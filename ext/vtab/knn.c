/*
** knn.c — exact k-NN over an annex table's chunks.
**
** Reads each chunk's vectors in one contiguous blob read, scores them with
** the flat scan of ext/index/flat.c, and keeps the best k in a bounded heap
** (or, for a radius query without k, every hit within the radius). Chunks
** with no row allowed by the filter bitmap are skipped without reading their
** vectors.
*/
#include "annex_int.h"
#include "../index/flat.h"

#include <math.h>
#include <string.h>

/* Growable hit array for radius queries without k. */
typedef struct hit_vec {
  annex_hit *a;
  size_t n, nAlloc;
} hit_vec;

static int hit_vec_push(hit_vec *v, const annex_hit *h) {
  if (v->n == v->nAlloc) {
    size_t nNew = v->nAlloc ? 2 * v->nAlloc : 256;
    annex_hit *aNew = sqlite3_realloc64(v->a, nNew * sizeof(annex_hit));
    if (aNew == NULL) return SQLITE_NOMEM;
    v->a = aNew;
    v->nAlloc = nNew;
  }
  v->a[v->n++] = *h;
  return SQLITE_OK;
}

/* 1 if any slot of chunk (slots iFirst..iFirst+n-1) is allowed. */
static int chunk_has_allowed(const annex_knn_query *q, sqlite3_int64 iFirst,
                             int n) {
  sqlite3_int64 iEnd = iFirst + n;
  if (q->aAllowed == NULL) return 1;
  if (iFirst >= q->nAllowedSlots) return 0;
  if (iEnd > q->nAllowedSlots) iEnd = q->nAllowedSlots;
  for (sqlite3_int64 i = iFirst; i < iEnd; i++) {
    if ((i & 7) == 0 && i + 8 <= iEnd && q->aAllowed[i >> 3] == 0) {
      i += 7;
      continue;
    }
    if (annex_bit_get(q->aAllowed, i)) return 1;
  }
  return 0;
}

static int within_radius(const annex_knn_query *q, annex_metric m, float s) {
  double d;
  if (!q->bRadius) return 1;
  d = annex_score_to_distance(m, s);
  return q->bRadiusInclusive ? d <= q->rRadius : d < q->rRadius;
}

/* Working state of one scan. */
typedef struct knn_scan {
  annex_table *p;
  const annex_knn_query *q;
  annex_topk heap;     /* bounded case */
  hit_vec all;         /* unbounded (radius only) case */
  void *pVec;          /* chunk vectors buffer */
  float *aScore;       /* per-slot scores */
  annex_hit *aCand;    /* candidates of one chunk */
} knn_scan;

static int scan_chunk(knn_scan *s, annex_chunk_iter *it, const annex_chunk *ch) {
  const annex_config *c = s->p->pConfig;
  annex_flat_block b;
  sqlite3_int64 iFirst = ch->iChunk * c->nChunk;
  float fBound = INFINITY;
  size_t nCand;
  int rc;
  if (s->q->k > 0 && s->heap.nCap == 0) return SQLITE_OK; /* nothing wanted */
  if (!chunk_has_allowed(s->q, iFirst, ch->nSlot)) return SQLITE_OK;
  rc = annex_chunk_iter_vectors(it, 0, ch->nSlot, s->pVec);
  if (rc != SQLITE_OK) return rc;
  b.pVectors = s->pVec;
  b.n = (size_t)ch->nSlot;
  b.aValid = ch->aValid;
  b.aAllowed = s->q->aAllowed;
  b.iFirstSlot = iFirst;
  b.aRowid = ch->aRowid;
  if (s->q->aAllowed && iFirst + ch->nSlot > s->q->nAllowedSlots) {
    b.n = (size_t)(s->q->nAllowedSlots - iFirst); /* bitmap ends earlier */
  }
  if (s->q->k > 0 && annex_topk_full(&s->heap)) fBound = s->heap.a[0].score;
  nCand = annex_flat_block_scan(&b, c->eElem, c->eMetric, s->q->pQuery,
                                (size_t)c->nDim, fBound, s->aScore, s->aCand);
  for (size_t i = 0; i < nCand && rc == SQLITE_OK; i++) {
    if (!within_radius(s->q, c->eMetric, s->aCand[i].score)) continue;
    if (s->q->k > 0) {
      annex_topk_push(&s->heap, s->aCand[i].score, s->aCand[i].rowid);
    } else {
      rc = hit_vec_push(&s->all, &s->aCand[i]);
    }
  }
  return rc;
}

static int scan_setup(knn_scan *s, sqlite3_int64 nSlots) {
  const annex_config *c = s->p->pConfig;
  size_t nChunk = (size_t)c->nChunk;
  s->pVec = sqlite3_malloc64(c->szVec * nChunk);
  s->aScore = sqlite3_malloc64(sizeof(float) * nChunk);
  s->aCand = sqlite3_malloc64(sizeof(annex_hit) * nChunk);
  if (!s->pVec || !s->aScore || !s->aCand) return SQLITE_NOMEM;
  if (s->q->k > 0) {
    sqlite3_int64 nCap = s->q->k;
    sqlite3_int64 nMax = s->q->aAllowed ? s->q->nAllowed : nSlots;
    annex_hit *a;
    if (nCap > nMax) nCap = nMax;
    a = sqlite3_malloc64(sizeof(annex_hit) * (size_t)(nCap > 0 ? nCap : 1));
    if (a == NULL) return SQLITE_NOMEM;
    annex_topk_init(&s->heap, a, (size_t)nCap);
  }
  return SQLITE_OK;
}

int annex_knn_exact(annex_table *p, const annex_knn_query *q,
                    annex_hit **paRes, sqlite3_int64 *pnRes) {
  knn_scan s;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  sqlite3_int64 nSlots = 0;
  int rc;
  memset(&s, 0, sizeof(s));
  s.p = p;
  s.q = q;
  *paRes = NULL;
  *pnRes = 0;
  rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK) rc = scan_setup(&s, nSlots);
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK) {
    rc = annex_chunk_iter_next(it, &ch);
    if (rc == SQLITE_ROW) rc = scan_chunk(&s, it, &ch);
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  annex_chunk_iter_close(it);
  sqlite3_free(s.pVec);
  sqlite3_free(s.aScore);
  sqlite3_free(s.aCand);
  if (rc != SQLITE_OK) {
    sqlite3_free(s.heap.a);
    sqlite3_free(s.all.a);
    return rc;
  }
  if (q->k > 0) {
    annex_topk_sort(&s.heap);
    *paRes = s.heap.a;
    *pnRes = (sqlite3_int64)s.heap.n;
  } else {
    /* Unbounded: the cursor sorts lazily (annex_hits_select). */
    *paRes = s.all.a;
    *pnRes = (sqlite3_int64)s.all.n;
  }
  return SQLITE_OK;
}
