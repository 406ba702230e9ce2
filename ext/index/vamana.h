/*
** vamana.h — the Vamana graph of DiskANN (Subramanya et al., NeurIPS 2019)
** with the incremental insert and delete consolidation of FreshDiskANN
** (Singh et al., 2021). Written from the papers.
**
** Owns: robust pruning with alpha; the parallel two-pass build over vectors
** held in memory (pass 1 alpha = 1, pass 2 the given alpha; per-node locks
** under OpenMP); the greedy beam search on PQ distances that reads nodes
** through a fetch callback (so the caller serves them from its own storage
** with a bounded cache) and keeps the full vectors met on the walk for the
** exact re-ranking; insertion of one node with robust prune and back-edges;
** repair of a node's neighbourhood around deleted neighbours.
**
** Ids are the caller's (uint32). The graph keeps no vectors of its own; a
** node as the callback serves it is its full vector plus its out-neighbour
** list (at most R ids). Metrics: l2 and cosine (scores as distance.h: the
** squared l2 distance, 1 - cos); both are squared distances up to a factor
** (1 - cos = |a/|a| - b/|b||^2 / 2), so alpha is applied squared. PQ
** distances are the caller's table (pq.h): the caller normalises vectors
** before encoding for cosine.
**
** Index code only: nothing here talks to SQLite; memory from alloc.h.
*/
#ifndef ANNEX_VAMANA_H
#define ANNEX_VAMANA_H

#include <stddef.h>
#include <stdint.h>

#include "distance.h"
#include "topk.h"

#define ANNEX_VAMANA_OK 0
#define ANNEX_VAMANA_NOMEM 1   /* an allocation failed */
#define ANNEX_VAMANA_CORRUPT 2 /* a node names an id it cannot have */
#define ANNEX_VAMANA_STOP 3    /* the progress callback asked to stop */
/* Other return values are the callbacks' own codes, passed through. */

#define ANNEX_VAMANA_MAX_R 512

typedef struct annex_vamana_params {
  size_t nDim;          /* floats per vector */
  annex_metric eMetric; /* ANNEX_METRIC_L2 or ANNEX_METRIC_COSINE */
  int R;                /* out-degree bound, 2..ANNEX_VAMANA_MAX_R */
  int L;                /* search list while building, >= 1 */
  float alpha;          /* pruning slack, >= 1 */
  uint64_t seed;        /* insertion order of the build */
} annex_vamana_params;

/* One node as the caller serves it; the pointers stay valid until the next
** fetch call. */
typedef struct annex_vamana_node {
  const float *pVec;     /* nDim floats */
  const uint32_t *aNbr;  /* out-neighbours */
  int nNbr;              /* 0..R */
} annex_vamana_node;

/* Storage callbacks. xFetch: node id (an SQLite or other error code is
** passed back). xPut: store node id with vector pVec and list aNbr[0..n).
** xApprox: an approximate vector of id (the decoded PQ code) into out. */
typedef struct annex_vamana_io {
  void *pCtx;
  int (*xFetch)(void *pCtx, uint32_t id, annex_vamana_node *pNode);
  int (*xPut)(void *pCtx, uint32_t id, const float *pVec,
              const uint32_t *aNbr, int nNbr);
  int (*xApprox)(void *pCtx, uint32_t id, float *out);
} annex_vamana_io;

/* Build *****************************************************************/

/* A graph built in memory over n vectors aVec (row-major, borrowed for the
** life of the graph); ids are 0..n-1. */
typedef struct annex_vamana annex_vamana;

typedef int (*annex_vamana_progress_fn)(void *pCtx, size_t nDone,
                                        size_t nTotal);

int annex_vamana_build(const annex_vamana_params *prm, const float *aVec,
                       uint32_t n, int nThread,
                       annex_vamana_progress_fn xProgress, void *pCtx,
                       annex_vamana **pp);
void annex_vamana_free(annex_vamana *g);
/* The entry point (the medoid), and the out-neighbours of node i. */
uint32_t annex_vamana_entry(const annex_vamana *g);
const uint32_t *annex_vamana_neighbours(const annex_vamana *g, uint32_t i,
                                        int *pn);

/* Search ****************************************************************/

/* A walk's working memory, reused across searches (one per thread). */
typedef struct annex_vamana_walk annex_vamana_walk;

int annex_vamana_walk_new(const annex_vamana_params *prm,
                          annex_vamana_walk **pp);
void annex_vamana_walk_free(annex_vamana_walk *w);
/* Bytes the walk holds (for memory reports). */
size_t annex_vamana_walk_memory(const annex_vamana_walk *w);

typedef struct annex_vamana_query {
  const float *pQuery;          /* nDim floats, as stored (not normalised) */
  const float *aTab;            /* PQ table of the query, m * 256 */
  const uint8_t *aCode;         /* PQ codes, m bytes per id */
  int m;                        /* code bytes */
  uint32_t nId;                 /* ids below this have codes */
  uint32_t iEntry;              /* where the walk starts */
  size_t L;                     /* search list */
  const unsigned char *aAccept; /* ids results may hold; NULL: all */
  uint64_t nAccept;             /* bits in aAccept */
} annex_vamana_query;

/* Greedy beam search from q->iEntry on PQ distances; each expanded node's
** full vector is scored exactly. aOut (k entries) gets the k best accepted
** expanded nodes by exact score (rowid = id), sorted; *pnOut their count.
** *pnExpanded (may be NULL) gets the number of nodes read. */
int annex_vamana_search(const annex_vamana_params *prm, annex_vamana_walk *w,
                        const annex_vamana_query *q, const annex_vamana_io *io,
                        size_t k, annex_hit *aOut, size_t *pnOut,
                        size_t *pnExpanded);

/* Insert id (vector pVec, its code already in q->aCode) into a graph served
** by io: walk from q->iEntry (q->pQuery = pVec), prune the walk's nodes to
** its out-list and store it, then add the back-edge id to each neighbour
** (pruned with approximate distances when a list overflows) and store
** that neighbour. id must differ from q->iEntry. */
int annex_vamana_insert(const annex_vamana_params *prm, annex_vamana_walk *w,
                        const annex_vamana_query *q, const annex_vamana_io *io,
                        uint32_t id, const float *pVec);

/* Repair node id (vector pVec, list aNbr[0..nNbr)) after deletes: the live
** neighbours, and the live neighbours of its dead neighbours (aDead bitmap
** of nDead bits; their lists through io->xFetch), pruned with approximate
** vectors (io->xApprox) into aOut (R entries), *pnOut the count. */
int annex_vamana_repair(const annex_vamana_params *prm, annex_vamana_walk *w,
                        const annex_vamana_io *io, uint32_t id,
                        const float *pVec, const uint32_t *aNbr, int nNbr,
                        const unsigned char *aDead, uint64_t nDead,
                        uint32_t *aOut, int *pnOut);

#endif /* ANNEX_VAMANA_H */
