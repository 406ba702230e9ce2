/*
** flat.c — exact scan of a block of vectors; see flat.h.
**
** The block is scored in one call to annex_distance_many, which streams the
** vectors once; filtering by validity, filter bitmap and bound happens on
** the scores afterwards, so the distance loop has no branches.
*/
#include "flat.h"

size_t annex_flat_block_scan(const annex_flat_block *b, annex_elem eElem,
                             annex_metric eMetric, const void *pQuery,
                             size_t nDim, float fBound, float *aScratch,
                             annex_hit *aOut) {
  size_t nOut = 0;
  annex_distance_many(eElem, eMetric, pQuery, b->pVectors, b->n, nDim,
                      aScratch);
  for (size_t i = 0; i < b->n; i++) {
    if (!annex_bit_get(b->aValid, (int64_t)i)) continue;
    if (aScratch[i] > fBound) continue;
    if (b->aAllowed && !annex_bit_get(b->aAllowed, b->iFirstSlot + (int64_t)i)) {
      continue;
    }
    aOut[nOut].score = aScratch[i];
    aOut[nOut].rowid = b->aRowid[i];
    nOut++;
  }
  return nOut;
}
