/*
** ivf.h — the inverted-file (IVF) index core: coarse quantizer, codes, and
** the scan of inverted-list entries with lookup tables.
**
** Owns: an IVF codec (nList centroids trained with kmeans.h, plus the
** quantizer of the stored codes: flat, sq8.h or pq.h), the assignment of a
** vector to its list, its code, the choice of the lists a query probes,
** and the scoring of a block of list entries into a top-k.
**
**   quantizer  code (szCode bytes)                      scores
**   flat       the vector as given, nDim float32         exact (kernel)
**   sq8        residual x' - c, 1 byte per dimension     approximate
**   pq         residual x' - c, m bytes (pq.h)           approximate (ADC)
**
** x' is the vector itself for l2 and ip, and the vector scaled to unit
** norm for cosine (k-means then runs on the sphere, and the approximate
** cosine score is |q' - x'|^2 / 2 = 1 - cos). Lists are chosen by l2 to
** the centroid (l2, cosine) or by largest inner product (ip). Scores follow
** distance.h (smaller is nearer), so sq8/pq candidates are re-scored
** exactly by the caller when it wants exact distances.
**
** pq with l2 or cosine splits the score of a code r in list c the way FAISS
** does ("precomputed tables"):
**   |q' - c - r|^2 = |q' - c|^2 + (|r|^2 + 2 c.r) - 2 q'.r
** The middle term depends on the list and the code only: its m x 256 table
** is computed once per list, when a query first probes the list, and kept
** with the codec (annex_ivf.apPre, up to ANNEX_IVF_PRE_MAX_BYTES in all);
** the last term's table is computed once per query. A probed list then
** costs m x 256 additions instead of a 256 x nDim table.
**
** List entry (the byte layout the caller stores): u64 little-endian global
** slot, then the code; szEntry = 8 + szCode bytes.
**
** float32 vectors only; int8 and bit tables are not indexed (the SQL glue
** answers them exactly). Index code only: nothing here talks to SQLite;
** memory from alloc.h.
*/
#ifndef ANNEX_IVF_H
#define ANNEX_IVF_H

#include <stddef.h>
#include <stdint.h>

#include "distance.h"
#include "kmeans.h"
#include "pq.h"
#include "sq8.h"
#include "topk.h"

/* Most bytes of precomputed per-list pq tables a codec keeps (lists past
** it build their table per query). */
#define ANNEX_IVF_PRE_MAX_BYTES ((size_t)256 << 20)

/* Training needs this many vectors per list (the design document's rule). */
#define ANNEX_IVF_MIN_PER_LIST 39

typedef enum annex_ivf_quant {
  ANNEX_IVF_FLAT = 1,
  ANNEX_IVF_SQ8 = 2,
  ANNEX_IVF_PQ = 3
} annex_ivf_quant;

typedef struct annex_ivf {
  annex_ivf_quant eQuant; /* what the codes are */
  annex_metric eMetric;   /* l2, ip or cosine */
  size_t nDim;            /* dimensions */
  int nList;              /* inverted lists = centroids */
  float *aCentroid;       /* nList x nDim (owned) */
  annex_pq pq;            /* eQuant == PQ: codebooks of residuals */
  annex_sq8 sq;           /* eQuant == SQ8: ranges of residuals */
  size_t szCode;          /* bytes per code */
  size_t szEntry;         /* 8 + szCode */
  /* pq, l2 or cosine: per list, NULL or its m x 256 table of |r|^2 + 2 c.r
  ** (owned; filled lazily by annex_ivf_scan_list; nList pointers) */
  float **apPre;
  size_t nPreBytes;       /* bytes of the tables in apPre */
} annex_ivf;

/* nlist when none is given: about 4 sqrt(n), at least 1. */
int annex_ivf_default_nlist(int64_t n);

/* Set up an untrained codec. m is PQ's sub-quantizer count (ignored
** otherwise). Returns ANNEX_KMEANS_OK, _NOMEM or _TOO_FEW (bad shape:
** m does not divide nDim, nList < 1, a metric other than l2/ip/cosine). */
int annex_ivf_init(annex_ivf *v, annex_ivf_quant eQuant,
                   annex_metric eMetric, size_t nDim, int nList, int m);
void annex_ivf_free(annex_ivf *v);

/* Train centroids (and the sq8/pq quantizer on residuals) on n vectors.
** p: iterations, seed, sample cap, threads, progress (p->k is ignored).
** Progress counts the k-means iterations of every stage as one run of
** annex_ivf_train_steps(v, p->nIter) steps: p->xProgress(ctx, done, total,
** objective of that iteration), done rising by one per call.
** Needs n >= nList. */
int annex_ivf_train(annex_ivf *v, const float *aX, size_t n,
                    const annex_kmeans_params *p);

/* k-means iterations annex_ivf_train runs with nIter per k-means: the
** coarse quantizer's, then (pq) each sub-quantizer's. */
int annex_ivf_train_steps(const annex_ivf *v, int nIter);

/* x' of x (see above) into out (nDim floats). */
void annex_ivf_prepare(const annex_ivf *v, const float *x, float *out);
/* List of each of n prepared vectors. */
int annex_ivf_assign(const annex_ivf *v, const float *aPrep, size_t n,
                     int nThread, int32_t *aList);
/* Code of vector x (raw) whose prepared form is xPrep, in list iList.
** aScratch: nDim floats. */
void annex_ivf_encode(const annex_ivf *v, const float *x, const float *xPrep,
                      int iList, float *aScratch, uint8_t *aCode);

/* One query's scan state. */
typedef struct annex_ivf_scan {
  const annex_ivf *pIvf;  /* the codec (borrowed) */
  const float *pQuery;    /* the query as given (borrowed) */
  annex_dist_fn xScore;   /* flat: the exact kernel */
  float *aQ;              /* prepared query q' (owned, with the rest) */
  float *aRes;            /* q' - centroid of the current list */
  float *aTab;            /* pq: m x 256 table; sq8: prepared query */
  float *aQTab;           /* pq l2/cosine: m x 256 table of -2 q'.r */
  float fConst;           /* added to every score in the current list */
  float fScale;           /* 0.5 for cosine (l2 on the sphere), else 1 */
  int64_t nScored;        /* entries scored so far (statistics) */
} annex_ivf_scan;

int annex_ivf_scan_init(annex_ivf_scan *s, const annex_ivf *v,
                        const float *pQuery);
void annex_ivf_scan_free(annex_ivf_scan *s);
/* The nProbe lists nearest the query, nearest first, into aList; returns
** how many (min(nProbe, nList)), or -1 when out of memory. */
int annex_ivf_probe(const annex_ivf_scan *s, int nProbe, int32_t *aList);
/* Prepare the tables for list iList. Returns ANNEX_KMEANS_OK, or
** ANNEX_KMEANS_NOMEM when a precomputed table could not be allocated. */
int annex_ivf_scan_list(annex_ivf_scan *s, int iList);
/* Score n entries of the current list into h (rowid = slot). With aAllowed
** (a bitmap of nAllowedSlots bits), entries whose slot is not set are
** skipped. */
void annex_ivf_scan_block(annex_ivf_scan *s, const unsigned char *aEntry,
                          size_t n, const unsigned char *aAllowed,
                          int64_t nAllowedSlots, annex_topk *h);

/* Little-endian u64 at p. */
static inline uint64_t annex_ivf_get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static inline void annex_ivf_put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

#endif /* ANNEX_IVF_H */
