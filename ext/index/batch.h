/*
** batch.h — exact k-NN for many float32 queries at once.
**
** Distances of a block of queries against a block of stored vectors come
** from one matrix product (cblas_sgemm when a BLAS is found at run time,
** see blas.h; the SIMD inner-product kernel otherwise): |q - x|^2 = |q|^2 + |x|^2 - 2 q.x, or the dot
** product alone for ip and cosine. Those expanded distances carry rounding
** error, so they only decide which vectors can still enter a query's top k:
** each candidate is re-scored with the same kernel the single-query scan
** uses, and the top k is kept on those exact scores. The results are
** therefore identical, rowid for rowid and bit for bit, to Q single
** queries.
**
** Why that is safe: for every pair the expanded score e and the kernel
** score s satisfy |e - s| <= m, with m from the standard bound on float
** dot products (annex_batch_margin). A vector is skipped only when
** e - m > U, where U is the k-th smallest upper bound e + m seen so far for
** that query; then s >= e - m > U >= the final k-th kernel score, so the
** vector cannot be among the k best.
**
** Index code only: nothing here talks to SQLite; memory comes from the
** caller's allocator.
*/
#ifndef ANNEX_BATCH_H
#define ANNEX_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "blas.h"
#include "distance.h"
#include "topk.h"

typedef struct annex_batch {
  annex_metric eMetric;   /* l2, ip or cosine */
  size_t nDim;            /* dimensions */
  size_t nQuery;          /* queries */
  size_t k;               /* neighbours per query */
  size_t nBlockMax;       /* most vectors per annex_batch_block call */
  const float *aQuery;    /* nQuery x nDim, row-major (borrowed) */
  annex_dist_fn xScore;   /* the single-query kernel */
  annex_sgemm_fn xSgemm;  /* BLAS found at run time, or NULL */
  int nThread;            /* OpenMP threads for the per-query work */
  float *aQNorm;          /* per query: |q|^2 (l2, ip) or |q| (cosine) */
  float *aXNorm;          /* per vector of the block, same meaning */
  float *aLo;             /* per thread: nBlockMax lower bounds */
  float *aDot;            /* nQuery x nBlockMax dot products */
  annex_topk *aExact;     /* per query: best k on kernel scores */
  annex_topk *aUpper;     /* per query: k smallest upper bounds */
  annex_hit *aMem;        /* storage of both heap arrays */
  void (*xFree)(void *);  /* frees what xMalloc returned */
} annex_batch;

/* Prepare a batch. xMalloc returns NULL on failure. Returns 0, or -1 when
** out of memory (nothing is left allocated). */
int annex_batch_init(annex_batch *b, annex_metric eMetric, size_t nDim,
                     const float *aQuery, size_t nQuery, size_t k,
                     size_t nBlockMax, int nThread,
                     void *(*xMalloc)(size_t), void (*xFree)(void *));

/* Score one block of n <= nBlockMax vectors (row-major, n x nDim). Vector i
** takes part when bit i of aValid is set and, if aAllowed is not NULL, bit
** (iFirstSlot + i) of aAllowed. */
void annex_batch_block(annex_batch *b, const float *aVec, size_t n,
                       const unsigned char *aValid,
                       const unsigned char *aAllowed, int64_t iFirstSlot,
                       const int64_t *aRowid);

/* Sort every query's results; afterwards b->aExact[q].a[0..n) is query q's
** answer in (score, rowid) order. */
void annex_batch_finish(annex_batch *b);

void annex_batch_free(annex_batch *b);

/* Largest possible |expanded score - kernel score| for one pair, given the
** two norms (squared for l2/ip, plain for cosine). Exposed for tests. */
double annex_batch_margin(annex_metric eMetric, size_t nDim, double qNorm,
                          double xNorm);

#endif /* ANNEX_BATCH_H */
