/*
** hnsw.h — a hierarchical navigable small-world graph (Malkov & Yashunin,
** "Efficient and robust approximate nearest neighbor search using
** Hierarchical Navigable Small World graphs", 2016/2018), in memory, with
** its nodes persisted as one record each by the caller.
**
** Owns: the in-memory graph (levels, neighbour lists, a copy of each node's
** vector), insertion (one at a time, or a batch in parallel with OpenMP),
** search (with an accept bitmap for filters and deleted rows), the repair
** of neighbourhoods around dead nodes, and the byte format of one node
** record. Index code only: nothing here talks to SQLite; memory comes from
** alloc.h.
**
** Node ids are the table's global slots (0 <= id < 2^31). A graph may hold
** only some of its nodes in memory: when the caller installs an
** annex_hnsw_io, a node met during insert or search that is not in memory is
** loaded through it (record + vector), one at a time, on the calling thread.
** That is how the first query after a reopen reads only what it needs.
** Parallel insertion (annex_hnsw_insert_batch) never loads: the caller
** loads every node first (annex_hnsw_load_all).
**
** Node record (little-endian), what the caller stores per node:
**   u8   level L (0 .. ANNEX_HNSW_MAX_LEVEL)
**   for l = 0 .. L:
**     u16  count c (<= 2*M at level 0, <= M above)
**     c x u32  neighbour ids
** A record that does not parse, or names an id >= 2^31 (or the limit set
** with annex_hnsw_set_id_limit), or a count above the bound, or has
** trailing bytes, is ANNEX_HNSW_CORRUPT.
**
** Metrics: l2 and ip use the kernels as they are. cosine stores and queries
** unit-normalised vectors and scores with 1 - dot, which equals the cosine
** score (a zero vector stays zero and scores 1). Scores follow distance.h.
**
** Levels are drawn from a hash of (seed, id), so a rebuild is reproducible
** and parallel insertion needs no shared random state.
*/
#ifndef ANNEX_HNSW_H
#define ANNEX_HNSW_H

#include <stddef.h>
#include <stdint.h>

#include "distance.h"
#include "topk.h"

#define ANNEX_HNSW_MAX_LEVEL 16
#define ANNEX_HNSW_MAX_M 256

/* Return codes: 0 is success. Errors from io callbacks are returned as the
** callback gave them (positive numbers chosen by the caller). */
#define ANNEX_HNSW_OK 0
#define ANNEX_HNSW_NOMEM (-1)
#define ANNEX_HNSW_CORRUPT (-2)
#define ANNEX_HNSW_RANGE (-3) /* an id >= 2^31 */
#define ANNEX_HNSW_ABSENT (-4) /* io: this id has no node record */

typedef struct annex_hnsw annex_hnsw;

typedef struct annex_hnsw_params {
  annex_elem eElem;     /* element type of the vectors */
  annex_metric eMetric; /* l2, ip, cosine (float32, int8) or hamming (bit) */
  size_t nDim;          /* dimensions (bits for bit vectors) */
  int M;                /* links per node above level 0; 2*M at level 0 */
  int efConstruction;   /* candidate list size while inserting */
  uint64_t seed;        /* level draws */
  int bExact;           /* 1: queries score float vectors all the way; 0:
                        ** they walk 8-bit code rows and re-rank (float32
                        ** storage, >= 32 dims; see hnsw.c) */
} annex_hnsw_params;

/* Lazy loading. Both callbacks run on the thread that called into the
** graph, and return 0, ANNEX_HNSW_ABSENT, or an error of the caller's. */
typedef struct annex_hnsw_io {
  void *pCtx;
  /* The record of node id: *pa and *pn give its bytes until the next call. */
  int (*xRecord)(void *pCtx, uint32_t id, const unsigned char **pa,
                 size_t *pn);
  /* The stored vector of id, written to out (annex_vector_bytes bytes).
  ** ANNEX_HNSW_ABSENT here too makes the node absent: a deleted row whose
  ** storage is gone. Absent nodes (and ids a list names that are neither in
  ** memory nor loadable) are skipped by search and insert alike. */
  int (*xVector)(void *pCtx, uint32_t id, void *out);
} annex_hnsw_io;

/* Create an empty graph; *pp is NULL on error (ANNEX_HNSW_RANGE for an
** (element, metric) pair without a kernel or nDim 0). M is clamped to
** [2, ANNEX_HNSW_MAX_M] and efConstruction to >= M. A graph serves one
** call at a time (search keeps scratch in it); batch and repair run their
** own threads inside. */
int annex_hnsw_new(const annex_hnsw_params *p, annex_hnsw **pp);
void annex_hnsw_free(annex_hnsw *g);
/* Install (or, with NULL, remove) the lazy loader; O(1), so it may be
** installed around each query. Ids it answered ABSENT for stay absent
** until put, inserted or reset. */
void annex_hnsw_set_io(annex_hnsw *g, const annex_hnsw_io *io);
const annex_hnsw_params *annex_hnsw_params_of(const annex_hnsw *g);
/* 1 if queries walk 8-bit code rows (then re-rank with the vectors), once
** the rows' ranges are fitted: the first query that finds enough nodes in
** memory fits them, and a query refits them when many rows coded since
** have values outside (data that moved). */
int annex_hnsw_uses_codes(const annex_hnsw *g);
/* 1 while the code ranges are fitted (the next query walks code rows). */
int annex_hnsw_codes_fitted(const annex_hnsw *g);

/* Entry point and top level, as the caller persisted them (-1: empty). */
void annex_hnsw_set_entry(annex_hnsw *g, int64_t entry, int nLevel);
void annex_hnsw_get_entry(const annex_hnsw *g, int64_t *pEntry, int *pnLevel);

/* The level node id gets: a deterministic draw from (seed, id) with the
** paper's mL = 1/ln(M), capped at ANNEX_HNSW_MAX_LEVEL. */
int annex_hnsw_random_level(const annex_hnsw *g, uint32_t id);

/* Make room for ids below n (grows the arrays; never shrinks). */
int annex_hnsw_reserve(annex_hnsw *g, uint32_t n);

/* Load node id through io if it is not in memory (record and vector).
** ANNEX_HNSW_ABSENT when the io says it has no node. */
int annex_hnsw_load(annex_hnsw *g, uint32_t id);
/* Put a node in memory from a record and its vector (the io's bytes or a
** bulk loader's); replaces what was there; does not mark it dirty. */
int annex_hnsw_put(annex_hnsw *g, uint32_t id, const unsigned char *aRec,
                   size_t nRec, const void *pVec);
/* 1 if node id is in memory. */
int annex_hnsw_has(const annex_hnsw *g, uint32_t id);
/* Nodes in memory. */
size_t annex_hnsw_count(const annex_hnsw *g);
/* 1 when the graph's bookkeeping agrees with itself (each id's live bit
** with its state, the node count with the live states), else 0: for tests. */
int annex_hnsw_consistent(const annex_hnsw *g);
/* Bytes of memory the graph holds (arrays, lists, vectors). */
size_t annex_hnsw_memory(const annex_hnsw *g);

/* Insert node id with vector pVec (or, if id is already a node, give it
** this vector and re-link it: its old out-links are dropped and chosen
** afresh). Neighbours met along the way are loaded through io. */
int annex_hnsw_insert(annex_hnsw *g, uint32_t id, const void *pVec);

/* Insert n nodes with OpenMP on nThread threads. Every node the insertions
** can meet must be in memory already (annex_hnsw_put for each), and the
** vectors of aId[] given in aVec (n back-to-back vectors, or NULL when the
** nodes were put with their vectors and only need linking: then their
** records' lists are ignored and rebuilt). xProgress, if set, is called on
** the calling thread with (done, n) every so often and at the end; a
** non-zero return stops the batch (the graph is then consistent, with some
** of aId not inserted) and is returned. */
int annex_hnsw_insert_batch(annex_hnsw *g, const uint32_t *aId, size_t n,
                            const void *aVec, int nThread,
                            int (*xProgress)(void *, size_t, size_t),
                            void *pProgressCtx);

/* Search: the k nearest accepted nodes to pQuery, found with a candidate
** list of max(ef, k). aAccept is a bitmap over ids (bit id%8 of byte id/8;
** ids >= nAcceptBits are not accepted), or NULL to accept every node.
** Nodes not accepted are still traversed. aOut (capacity k) receives
** (score, id) pairs sorted by (score, id); *pnOut may be < k. An entry
** point that io cannot load is replaced by the highest node in memory; with
** none, search finds nothing and insert returns ANNEX_HNSW_ABSENT. */
int annex_hnsw_search(annex_hnsw *g, const void *pQuery, size_t k, size_t ef,
                      const unsigned char *aAccept, uint64_t nAcceptBits,
                      annex_hit *aOut, size_t *pnOut);

/* Remove dead nodes (bit clear in aLive, or id >= nLiveBits) from the
** graph: each live node that linked to a dead one is re-linked from its
** live neighbours and the dead ones' live neighbours (the paper's
** heuristic), in parallel on nThread threads; the dead nodes are then
** forgotten, and a dead entry point replaced. Every node must be in memory.
** Changed nodes are marked dirty; removed ids are reported through
** annex_hnsw_next_removed. */
int annex_hnsw_repair(annex_hnsw *g, const unsigned char *aLive,
                      uint64_t nLiveBits, int nThread);

/* Dirty nodes (records changed since the last clear), in increasing id:
** 1 with *pId = the first one >= iFrom, 0 when there is none (same for
** next_removed). */
int annex_hnsw_next_dirty(const annex_hnsw *g, uint32_t iFrom, uint32_t *pId);
/* Nodes removed by repair since the last clear. */
int annex_hnsw_next_removed(const annex_hnsw *g, uint32_t iFrom,
                            uint32_t *pId);
void annex_hnsw_clear_dirty(annex_hnsw *g);

/* The record of node id: *pn bytes written to aOut when aOut is not NULL
** (call with NULL first for the size). */
int annex_hnsw_record(const annex_hnsw *g, uint32_t id, unsigned char *aOut,
                      size_t *pn);
/* Check a record's syntax against M without storing it. */
int annex_hnsw_record_check(const annex_hnsw *g, const unsigned char *a,
                            size_t n, int *pnLevel);

/* Ids a record may name: a record (put, load, record_check) naming a
** neighbour >= n is ANNEX_HNSW_CORRUPT. Default (and most) 2^31. The
** caller sets its slot counter, so a corrupt record cannot make the graph
** reserve room for ids that do not exist. */
void annex_hnsw_set_id_limit(annex_hnsw *g, uint64_t n);

/* Lay the nodes out in memory in breadth-first order of the level-0 graph
** from the entry point, so that nodes a search meets together sit close
** together in every array (1M x 128: 1.10x the queries per second of
** slot order in the core, 1.04x through SQL; 0.7 s). Only memory
** positions move: ids, records, results and the dirty/removed sets stay
** as they were, and so does everything the graph does later. Serial;
** O(nodes) moves of each node's vector, code row and lists, no extra copy
** of them. On ANNEX_HNSW_NOMEM (scratch of 8 bytes a node) the graph is
** unchanged. */
int annex_hnsw_reorder(annex_hnsw *g);

/* Forget every node (the arrays stay allocated). */
void annex_hnsw_reset(annex_hnsw *g);

#endif /* ANNEX_HNSW_H */
