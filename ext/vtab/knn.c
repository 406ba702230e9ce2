/*
** knn.c — exact k-NN over an annex table's chunks.
**
** Each chunk's vectors come in with one contiguous blob read and are scored
** by the flat scan of ext/index/flat.c; a bounded heap keeps the best k (or,
** for a query without k, every hit, which the cursor sorts lazily). Chunks
** with no row allowed by the filter bitmap are skipped without reading
** their vectors.
**
** Large tables can be scanned in parallel (OpenMP): the calling thread,
** the only one that may touch SQLite, reads chunks while the other threads
** score them into per-thread heaps; the heaps are merged at the end. The
** result is identical to the serial scan's, since (score, rowid) is a total
** order.
*/
#include "annex_int.h"
#include "../index/flat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef ANNEX_HAVE_OPENMP
#include <omp.h>
#endif

/* Tables smaller than this are scanned on one thread. */
#define KNN_PARALLEL_MIN_BYTES (16 * 1024 * 1024)

/* Growable hit array for queries without k. */
typedef struct hit_vec {
  annex_hit *a;
  size_t n, nAlloc;
} hit_vec;

/* One chunk read into memory. */
typedef struct knn_slot {
  sqlite3_int64 iChunk;   /* chunk id */
  int nSlot;              /* slots allocated in it */
  unsigned char *aValid;  /* validity bitmap copy */
  int64_t *aRowid;        /* rowids copy */
  void *pVec;             /* buffer the vectors are read into (owned) */
  const void *pView;      /* the vectors: pVec, or the chunk cache's copy */
} knn_slot;

/* Per-thread scoring state. */
typedef struct knn_worker {
  annex_topk heap;        /* best k seen by this thread */
  float *aScore;          /* per-slot scores of one chunk */
  annex_hit *aCand;       /* candidates of one chunk */
} knn_worker;

/* The whole scan. */
typedef struct knn_scan {
  annex_table *p;
  const annex_knn_query *q;
  int nWorker;            /* threads */
  knn_worker *aWorker;    /* nWorker workers */
  knn_slot *aSlot;        /* chunk buffers: 1, or 2 x nWorker (a ring) */
  hit_vec all;            /* queries without k */
  size_t nHeapCap;        /* heap capacity per worker */
} knn_scan;

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

static int within_radius(const annex_knn_query *q, annex_metric m, float s) {
  double d;
  if (!q->bRadius) return 1;
  d = annex_score_to_distance(m, s);
  return q->bRadiusInclusive ? d <= q->rRadius : d < q->rRadius;
}

/* Score one loaded chunk into worker w; candidates are left in w->aCand.
** Returns their count. Touches no SQLite state and allocates nothing, so
** any thread may run it. */
static size_t score_slot(const knn_scan *s, knn_worker *w,
                         const knn_slot *pSlot) {
  const annex_config *c = s->p->pConfig;
  annex_flat_block b;
  float fBound = INFINITY;
  b.pVectors = pSlot->pView;
  b.n = (size_t)pSlot->nSlot;
  b.aValid = pSlot->aValid; /* live and allowed by the filter */
  b.aAllowed = NULL;
  b.iFirstSlot = pSlot->iChunk * c->nChunk;
  b.aRowid = pSlot->aRowid;
  if (s->q->k > 0 && annex_topk_full(&w->heap)) fBound = w->heap.a[0].score;
  return annex_flat_block_scan(&b, c->eElem, c->eMetric, s->q->pQuery,
                               (size_t)c->nDim, fBound, w->aScore, w->aCand);
}

/* Score a chunk and keep its hits (bounded: into the worker's heap). */
static void score_into_heap(const knn_scan *s, knn_worker *w,
                            const knn_slot *pSlot) {
  size_t nCand = score_slot(s, w, pSlot);
  for (size_t i = 0; i < nCand; i++) {
    if (within_radius(s->q, s->p->pConfig->eMetric, w->aCand[i].score)) {
      annex_topk_push(&w->heap, w->aCand[i].score, w->aCand[i].rowid);
    }
  }
}

/* Unbounded: every hit goes to the growable array (calling thread only). */
static int score_into_all(knn_scan *s, const knn_slot *pSlot) {
  knn_worker *w = &s->aWorker[0];
  size_t nCand = score_slot(s, w, pSlot);
  int rc = SQLITE_OK;
  for (size_t i = 0; i < nCand && rc == SQLITE_OK; i++) {
    if (within_radius(s->q, s->p->pConfig->eMetric, w->aCand[i].score)) {
      rc = hit_vec_push(&s->all, &w->aCand[i]);
    }
  }
  return rc;
}

/* The slots of a chunk the query wants: live, and allowed by the filter
** (compiled, evaluated here on the chunk's compact metadata; or a bitmap
** of global slots from SQL), into pSlot->aValid. Returns how many, or -1
** when the compiled filter cannot decide (ANNEX_NEED_SQL_FILTER). */
static int wanted_slots(const knn_scan *s, const annex_chunk *ch,
                        knn_slot *pSlot) {
  const annex_config *c = s->p->pConfig;
  const annex_knn_query *q = s->q;
  sqlite3_int64 iFirst = ch->iChunk * c->nChunk;
  int nByte = (ch->nSlot + 7) / 8, n = 0;
  unsigned char *a = pSlot->aValid;
  if (q->pFilter) {
    if (annex_mfilter_eval(q->pFilter, ch->pMeta, c->nChunk, ch->aRowid,
                           ch->nSlot, a) != 0) {
      return -1;
    }
  } else {
    memset(a, 0xff, (size_t)nByte);
  }
  for (int i = 0; i < nByte; i++) {
    a[i] &= ch->aValid[i];
    if (q->aAllowed) { /* chunk sizes are multiples of 8: bytes line up */
      sqlite3_int64 iByte = (iFirst >> 3) + i;
      a[i] &= iByte < (q->nAllowedSlots + 7) / 8 ? q->aAllowed[iByte] : 0;
    }
    if (ch->nSlot - 8 * i < 8) a[i] &= (unsigned char)((1u << (ch->nSlot & 7)) - 1);
    n += __builtin_popcount(a[i]);
  }
  return n;
}

/* A chunk's vectors: where they lie in the chunk cache, else read in one
** run, or, when few are wanted (under a quarter), one by one so the others
** are never read. Unread slots keep stale bytes; the scan skips them by
** the same bitmap. */
static int read_vectors(const knn_scan *s, annex_chunk_iter *it,
                        knn_slot *pSlot, int nWanted) {
  const annex_config *c = s->p->pConfig;
  int rc = SQLITE_OK;
  pSlot->pView = annex_chunk_iter_cached_vectors(it);
  if (pSlot->pView) return SQLITE_OK;
  pSlot->pView = pSlot->pVec;
  if (4 * nWanted >= pSlot->nSlot) {
    return annex_chunk_iter_vectors(it, 0, pSlot->nSlot, pSlot->pVec);
  }
  for (int i = 0; i < pSlot->nSlot && rc == SQLITE_OK; i++) {
    if (!annex_bit_get(pSlot->aValid, i)) continue;
    rc = annex_chunk_iter_vectors(it, i, 1,
                                  (char *)pSlot->pVec + c->szVec * (size_t)i);
  }
  return rc;
}

/* Read the next chunk with wanted rows into pSlot; *pn is 1 if one was
** read, else 0. SQLITE_DONE once the iterator is exhausted. */
static int load_group(knn_scan *s, annex_chunk_iter *it, knn_slot *pSlot,
                      int *pn) {
  annex_chunk ch;
  int rc, nWanted = 0;
  *pn = 0;
  while (nWanted == 0) {
    rc = annex_chunk_iter_next(it, &ch);
    if (rc != SQLITE_ROW) return rc;
    nWanted = wanted_slots(s, &ch, pSlot);
    if (nWanted < 0) return ANNEX_NEED_SQL_FILTER;
  }
  pSlot->iChunk = ch.iChunk;
  pSlot->nSlot = ch.nSlot;
  memcpy(pSlot->aRowid, ch.aRowid, 8 * (size_t)ch.nSlot);
  rc = read_vectors(s, it, pSlot, nWanted);
  if (rc == SQLITE_OK) *pn = 1;
  return rc;
}

/* One thread: read a chunk, score it, repeat. */
static int scan_serial(knn_scan *s, annex_chunk_iter *it) {
  int rc = SQLITE_OK, n = 1;
  while (rc == SQLITE_OK && n > 0) {
    rc = load_group(s, it, s->aSlot, &n);
    if (n == 0 || (rc != SQLITE_OK && rc != SQLITE_DONE)) break;
    if (s->q->k > 0) score_into_heap(s, &s->aWorker[0], &s->aSlot[0]);
    else if (score_into_all(s, &s->aSlot[0]) != SQLITE_OK) return SQLITE_NOMEM;
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

#ifdef ANNEX_HAVE_OPENMP
/* Many threads. Only the calling thread may touch SQLite (it holds the
** connection's mutex for the whole statement), so it reads chunks into a
** ring of 2 x nWorker buffers while tasks score the chunks already read on
** every thread; the reader joins the scoring at each taskwait. */
static int scan_parallel(knn_scan *s, annex_chunk_iter *it) {
  int rc = SQLITE_OK;
#pragma omp parallel num_threads(s->nWorker)
#pragma omp master
  {
    int nHalf = s->nWorker, iHalf = 0;
    while (rc == SQLITE_OK) {
      knn_slot *aHalf = s->aSlot + iHalf * nHalf;
      int nRead = 0;
      while (nRead < nHalf && rc == SQLITE_OK) {
        int n = 0;
        rc = load_group(s, it, &aHalf[nRead], &n);
        if (n == 0) break;
#pragma omp task firstprivate(nRead, aHalf)
        score_into_heap(s, &s->aWorker[omp_get_thread_num()], &aHalf[nRead]);
        nRead++;
      }
      /* Buffers of the other half were scored before they are refilled. */
      iHalf = 1 - iHalf;
      if (iHalf == 0 || rc != SQLITE_OK) {
#pragma omp taskwait
      }
    }
#pragma omp taskwait
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}
#endif

/* Threads for this scan: one per configured thread for large bounded
** queries, else one. */
static void plan_threads(knn_scan *s, sqlite3_int64 nSlots) {
  s->nWorker = 1;
#ifdef ANNEX_HAVE_OPENMP
  if (s->q->k > 0 &&
      (size_t)nSlots * s->p->pConfig->szVec >= KNN_PARALLEL_MIN_BYTES) {
    s->nWorker = annex_thread_count();
  }
#else
  (void)nSlots;
#endif
}

static int scan_setup(knn_scan *s, sqlite3_int64 nSlots) {
  const annex_config *c = s->p->pConfig;
  size_t nChunk = (size_t)c->nChunk;
  int nSlotBuf;
  plan_threads(s, nSlots);
  nSlotBuf = s->nWorker > 1 ? 2 * s->nWorker : 1;
  if (s->q->k > 0) {
    sqlite3_int64 nMax = s->q->aAllowed ? s->q->nAllowed : nSlots;
    s->nHeapCap = (size_t)(s->q->k < nMax ? s->q->k : nMax);
  }
  s->aWorker = sqlite3_malloc64(sizeof(knn_worker) * (size_t)s->nWorker);
  s->aSlot = sqlite3_malloc64(sizeof(knn_slot) * (size_t)nSlotBuf);
  /* Zero each array that was allocated before giving up on the other:
  ** scan_cleanup frees the members of both. */
  if (s->aWorker) {
    memset(s->aWorker, 0, sizeof(knn_worker) * (size_t)s->nWorker);
  }
  if (s->aSlot) memset(s->aSlot, 0, sizeof(knn_slot) * (size_t)nSlotBuf);
  if (!s->aWorker || !s->aSlot) return SQLITE_NOMEM;
  for (int i = 0; i < s->nWorker; i++) {
    knn_worker *w = &s->aWorker[i];
    annex_hit *aMem = sqlite3_malloc64(sizeof(annex_hit) * (s->nHeapCap + 1));
    w->aScore = sqlite3_malloc64(sizeof(float) * nChunk);
    w->aCand = sqlite3_malloc64(sizeof(annex_hit) * nChunk);
    if (!aMem || !w->aScore || !w->aCand) {
      sqlite3_free(aMem);
      return SQLITE_NOMEM;
    }
    annex_topk_init(&w->heap, aMem, s->nHeapCap);
  }
  for (int i = 0; i < nSlotBuf; i++) {
    knn_slot *pSlot = &s->aSlot[i];
    pSlot->aValid = sqlite3_malloc64(annex_chunk_valid_bytes(c));
    pSlot->aRowid = sqlite3_malloc64(8 * nChunk);
    pSlot->pVec = sqlite3_malloc64(c->szVec * nChunk);
    if (!pSlot->aValid || !pSlot->aRowid || !pSlot->pVec) return SQLITE_NOMEM;
    /* Slots read_vectors skips are scored too (and their scores dropped by
    ** the bitmap): zeroed, they are never uninitialised memory (valgrind
    ** reported the cosine kernel branching on such bytes). */
    memset(pSlot->pVec, 0, c->szVec * nChunk);
  }
  return SQLITE_OK;
}

/* Free everything but worker 0's heap when bKeepHeap (it is the result). */
static void scan_cleanup(knn_scan *s, int bKeepHeap) {
  int nSlotBuf = s->nWorker > 1 ? 2 * s->nWorker : 1;
  for (int i = 0; s->aWorker && i < s->nWorker; i++) {
    if (i > 0 || !bKeepHeap) sqlite3_free(s->aWorker[i].heap.a);
    sqlite3_free(s->aWorker[i].aScore);
    sqlite3_free(s->aWorker[i].aCand);
  }
  for (int i = 0; s->aSlot && i < nSlotBuf; i++) {
    sqlite3_free(s->aSlot[i].aValid);
    sqlite3_free(s->aSlot[i].aRowid);
    sqlite3_free(s->aSlot[i].pVec);
  }
  sqlite3_free(s->aWorker);
  sqlite3_free(s->aSlot);
}

static int cmp_rowid(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* A rowid twice among the k best means two live slots claim one row (a
** corrupt chunk): SQLITE_CORRUPT_VTAB rather than a duplicated answer. */
static int check_distinct(annex_table *p, const annex_hit *a, size_t n) {
  int64_t *aId;
  int rc = SQLITE_OK;
  if (n < 2) return SQLITE_OK;
  aId = sqlite3_malloc64(sizeof(int64_t) * n);
  if (aId == NULL) return SQLITE_NOMEM;
  for (size_t i = 0; i < n; i++) aId[i] = a[i].rowid;
  qsort(aId, n, sizeof(int64_t), cmp_rowid);
  for (size_t i = 1; i < n && rc == SQLITE_OK; i++) {
    if (aId[i] == aId[i - 1]) {
      annex_set_error(&p->base, "annex table %s: two slots hold rowid %lld "
                      "(database corrupt)", p->zName, (long long)aId[i]);
      rc = SQLITE_CORRUPT_VTAB;
    }
  }
  sqlite3_free(aId);
  return rc;
}

int annex_knn_exact(annex_table *p, const annex_knn_query *q,
                    annex_hit **paRes, sqlite3_int64 *pnRes) {
  knn_scan s;
  annex_chunk_iter *it = NULL;
  sqlite3_int64 nSlots = 0;
  int rc;
  memset(&s, 0, sizeof(s));
  s.p = p;
  s.q = q;
  *paRes = NULL;
  *pnRes = 0;
  rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK) rc = scan_setup(&s, nSlots);
  if (rc == SQLITE_OK && (q->k == 0 || s.nHeapCap > 0)) {
    rc = annex_chunk_iter_open_cached(p, &it);
#ifdef ANNEX_HAVE_OPENMP
    if (rc == SQLITE_OK && s.nWorker > 1) rc = scan_parallel(&s, it);
    else
#endif
    if (rc == SQLITE_OK) rc = scan_serial(&s, it);
    annex_chunk_iter_close(it);
  }
  if (rc != SQLITE_OK) {
    scan_cleanup(&s, 0);
    sqlite3_free(s.all.a);
    return rc;
  }
  if (q->k > 0) {
    annex_topk *h = &s.aWorker[0].heap;
    for (int i = 1; i < s.nWorker; i++) annex_topk_merge(h, &s.aWorker[i].heap);
    annex_topk_sort(h);
    rc = check_distinct(p, h->a, h->n);
    if (rc != SQLITE_OK) {
      scan_cleanup(&s, 0);
      return rc;
    }
    *paRes = h->a;
    *pnRes = (sqlite3_int64)h->n;
  } else {
    *paRes = s.all.a; /* unsorted: the cursor sorts lazily */
    *pnRes = (sqlite3_int64)s.all.n;
  }
  scan_cleanup(&s, q->k > 0);
  return SQLITE_OK;
}
