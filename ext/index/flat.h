/*
** flat.h — the exact (flat) scan of one block of stored vectors.
**
** The flat index has no structure of its own: it is the stored vectors,
** scanned in blocks (one chunk of the table at a time). This file scores a
** block against a query and keeps the candidates that can still make the
** top k. Index code only: nothing here talks to SQLite, and memory comes
** from the caller.
*/
#ifndef ANNEX_FLAT_H
#define ANNEX_FLAT_H

#include <stddef.h>
#include <stdint.h>

#include "distance.h"
#include "topk.h"

typedef struct annex_flat_block {
  const void *pVectors;         /* n vectors back to back (borrowed) */
  size_t n;                     /* vectors in the block */
  const unsigned char *aValid;  /* bit i set: vector i is live (borrowed) */
  const unsigned char *aAllowed;/* filter bitmap indexed by iFirstSlot + i,
                                ** or NULL for no filter (borrowed) */
  int64_t iFirstSlot;           /* global slot of vector 0 */
  const int64_t *aRowid;        /* rowid of vector i (borrowed) */
} annex_flat_block;

/* Score every live, allowed vector of the block and write those whose score
** is <= fBound to aOut (capacity b->n) in slot order; return their count.
** aScratch holds b->n floats. */
size_t annex_flat_block_scan(const annex_flat_block *b, annex_elem eElem,
                             annex_metric eMetric, const void *pQuery,
                             size_t nDim, float fBound, float *aScratch,
                             annex_hit *aOut);

/* 1 if bit i of bitmap a is set. */
static inline int annex_bit_get(const unsigned char *a, int64_t i) {
  return (a[i >> 3] >> (i & 7)) & 1;
}

#endif /* ANNEX_FLAT_H */
