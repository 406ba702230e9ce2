/*
** topk.h — bounded selection of the k best (distance, rowid) pairs.
**
** Owns: the hit type every search returns, and a bounded max-heap that keeps
** the k smallest hits seen so far. Order is lexicographic on (distance,
** rowid), so ties are broken by the smaller rowid and results are
** deterministic. Index code only: nothing here talks to SQLite.
*/
#ifndef ANNEX_TOPK_H
#define ANNEX_TOPK_H

#include <stdint.h>
#include <stddef.h>

typedef struct annex_hit {
  float score;   /* kernel score (see distance.h); order = distance order */
  int64_t rowid; /* the row */
} annex_hit;

typedef struct annex_topk {
  annex_hit *a;  /* heap storage, capacity nCap (owned by the caller) */
  size_t n;      /* hits held */
  size_t nCap;   /* k */
} annex_topk;

/* Initialise over caller-provided storage for k hits. */
void annex_topk_init(annex_topk *h, annex_hit *aStorage, size_t k);

/* 1 if (a) orders strictly before (b). */
static inline int annex_hit_less(float sa, int64_t ra, float sb, int64_t rb) {
  return sa < sb || (sa == sb && ra < rb);
}

/* Score a candidate would need to beat to enter (only meaningful when full). */
static inline int annex_topk_full(const annex_topk *h) { return h->n == h->nCap; }

/* Offer one hit. Returns 1 if it was kept. */
int annex_topk_push(annex_topk *h, float score, int64_t rowid);

/* Cheap rejection test for the scan loop: 1 if (score,rowid) cannot enter. */
static inline int annex_topk_rejects(const annex_topk *h, float score,
                                     int64_t rowid) {
  return h->n == h->nCap &&
         !annex_hit_less(score, rowid, h->a[0].score, h->a[0].rowid);
}

/* Sort the held hits ascending, in place; the heap is spent afterwards. */
void annex_topk_sort(annex_topk *h);

/* Sort an arbitrary array of hits ascending by (score, rowid). */
void annex_hits_sort(annex_hit *a, size_t n);

/* Rearrange a[iFrom..n) so that a[iFrom..iFrom+nWant) holds its nWant
** smallest hits, sorted; the rest stay after them in some order. Expected
** O(n - iFrom + nWant log nWant): lets a cursor hand out an unbounded k-NN
** result in order while sorting only what it is asked for. */
void annex_hits_select(annex_hit *a, size_t n, size_t iFrom, size_t nWant);

/* Merge: push every hit of src into dst. */
void annex_topk_merge(annex_topk *dst, const annex_topk *src);

#endif /* ANNEX_TOPK_H */
