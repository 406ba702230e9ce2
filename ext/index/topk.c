/*
** topk.c — bounded max-heap of the k best hits; see topk.h.
**
** The root holds the worst hit kept, so a candidate is rejected with one
** comparison once the heap is full: the scan loop's common case.
*/
#include "topk.h"

#include <stdlib.h>

void annex_topk_init(annex_topk *h, annex_hit *aStorage, size_t k) {
  h->a = aStorage;
  h->n = 0;
  h->nCap = k;
}

/* 1 if hit i orders after hit j (max-heap: worse hits rise). */
static int hit_worse(const annex_hit *a, size_t i, size_t j) {
  return annex_hit_less(a[j].score, a[j].rowid, a[i].score, a[i].rowid);
}

static void hit_swap(annex_hit *a, size_t i, size_t j) {
  annex_hit t = a[i];
  a[i] = a[j];
  a[j] = t;
}

static void sift_up(annex_hit *a, size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!hit_worse(a, i, parent)) break;
    hit_swap(a, i, parent);
    i = parent;
  }
}

static void sift_down(annex_hit *a, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && hit_worse(a, l, m)) m = l;
    if (r < n && hit_worse(a, r, m)) m = r;
    if (m == i) break;
    hit_swap(a, i, m);
    i = m;
  }
}

int annex_topk_push(annex_topk *h, float score, int64_t rowid) {
  if (h->nCap == 0) return 0;
  if (h->n < h->nCap) {
    h->a[h->n].score = score;
    h->a[h->n].rowid = rowid;
    sift_up(h->a, h->n);
    h->n++;
    return 1;
  }
  if (!annex_hit_less(score, rowid, h->a[0].score, h->a[0].rowid)) return 0;
  h->a[0].score = score;
  h->a[0].rowid = rowid;
  sift_down(h->a, h->n, 0);
  return 1;
}

void annex_topk_sort(annex_topk *h) {
  /* Heap sort: repeatedly move the worst to the end. */
  size_t n = h->n;
  while (n > 1) {
    hit_swap(h->a, 0, n - 1);
    n--;
    sift_down(h->a, n, 0);
  }
}

static int hit_cmp(const void *pa, const void *pb) {
  const annex_hit *a = pa, *b = pb;
  if (annex_hit_less(a->score, a->rowid, b->score, b->rowid)) return -1;
  if (annex_hit_less(b->score, b->rowid, a->score, a->rowid)) return 1;
  return 0;
}

void annex_hits_sort(annex_hit *a, size_t n) {
  if (n > 1) qsort(a, n, sizeof(*a), hit_cmp);
}

void annex_topk_merge(annex_topk *dst, const annex_topk *src) {
  for (size_t i = 0; i < src->n; i++) {
    annex_topk_push(dst, src->a[i].score, src->a[i].rowid);
  }
}

/* Partition a[lo..hi] around a median-of-three pivot; returns its index. */
static size_t partition(annex_hit *a, size_t lo, size_t hi) {
  size_t mid = lo + (hi - lo) / 2, store = lo;
  annex_hit pivot;
  if (hit_cmp(&a[mid], &a[lo]) < 0) hit_swap(a, mid, lo);
  if (hit_cmp(&a[hi], &a[lo]) < 0) hit_swap(a, hi, lo);
  if (hit_cmp(&a[mid], &a[hi]) < 0) hit_swap(a, mid, hi);
  pivot = a[hi]; /* the median of the three */
  for (size_t i = lo; i < hi; i++) {
    if (hit_cmp(&a[i], &pivot) < 0) hit_swap(a, i, store++);
  }
  hit_swap(a, store, hi);
  return store;
}

void annex_hits_select(annex_hit *a, size_t n, size_t iFrom, size_t nWant) {
  size_t lo = iFrom, hi, kth;
  if (iFrom >= n || nWant == 0) return;
  if (nWant > n - iFrom) nWant = n - iFrom;
  kth = iFrom + nWant - 1;
  hi = n - 1;
  while (lo < hi) { /* quickselect: a[kth] ends in its sorted place */
    size_t p = partition(a, lo, hi);
    if (p == kth) break;
    if (p < kth) lo = p + 1;
    else hi = p - 1;
  }
  annex_hits_sort(a + iFrom, nWant);
}
