/*
** hnsw.c — the HNSW graph core declared in hnsw.h.
**
** Owns: the in-memory layout of the graph, the search of one layer
** (Malkov & Yashunin, Algorithm 2) with binary heaps and epoch-tagged
** visited sets, a query's way down (greedy above level 1, a small beam at
** level 1 whose nodes all enter level 0), the neighbour-selection
** heuristic (Algorithm 4), insertion
** (Algorithm 1; serial, or a batch in parallel with per-node spinlocks),
** lazy loading through annex_hnsw_io, the repair of neighbourhoods around
** dead nodes, dirty/removed bookkeeping, the node record codec and the
** order of the nodes in memory (annex_hnsw_reorder).
**
** Positions. Inside this file a node is named by its position in the
** arrays below; the API names it by its id (the table's slot). aPosOf[id]
** and aIdOf[pos] map between them: the identity until annex_hnsw_reorder
** moves the nodes into breadth-first order of level 0, so that a search's
** nodes share DRAM pages, TLB entries and visited-tag lines (1M x 128:
** 1.10x the queries per second of the graph core alone, 1.04x through
** SQL, hnsw_pair). Lists hold positions; records hold ids (the codec
** translates); the dirty/removed bitmaps, the entry point and the accept
** bitmaps of searches and repair are by id. Nothing the graph decides may
** depend on positions: ties in sorts fall to the smaller id
** (hnsw_sort), the code ranges sample nodes in id order, a new entry
** point is the smallest id of the highest level. test_reorder checks that
** a reordered graph keeps the records and answers of one that is not.
**
** Layout, every array indexed by position (capacity nCap):
**   aState   one byte: HNSW_ST_* (what a batch's searches check before
**            scoring a neighbour)
**   aLiveBit bitmap: state == HNSW_ST_LIVE, kept with aState by
**            hnsw_set_state (what serial searches check: 1/8 of the bytes,
**            so it stays in cache where aState's random lines do not)
**   aLevel   one byte: the node's top level
**   aL0      level-0 lists, fixed stride 1 + 2M u32: count, then positions
**   apUp     per node, one block of L lists of stride 1 + M (levels 1..L)
**   aVec     stored vectors, fixed stride (cosine: unit-normalised float32)
**   aCode    per node, the 8-bit code row of its stored vector (distance.h),
**            line-aligned, when queries use codes (float32 storage, l2 or
**            dot, at least HNSW_CODE_MIN_DIM dims, params.bExact 0), else
**            NULL; the rows are valid while bCoded (ranges fitted)
**   aIdOf    the id at each position
** and indexed by id: aPosOf, and the bitmaps aDirty, aRemoved.
** Invariant: every position named in any list is < nCap, so the search
** loop needs no range check (annex_hnsw_put reserves up to the largest id
** it names; ids and positions below nCap map one to one).
**
** Queries with codes prepare the query once (annex_code_query) and walk
** every level scoring code rows (a quarter of the vector's bytes, one
** range per dimension shared by all rows, fitted to a sample of the nodes:
** hnsw_codes_ready), then re-score the ef nodes they end with against the
** float vectors, so every score returned is exact and only the order of
** the walk is approximate. Insertion always scores float vectors: the
** graph is the exact one.
**
** Threads: a graph is used by one thread at a time, except inside
** annex_hnsw_insert_batch / annex_hnsw_repair, which run their own OpenMP
** team. During a batch every list is read and written under its node's
** spinlock and the entry point under a graph-wide one; insertion first
** plans all its links (searches, which may allocate) and then writes them
** (which never allocates), so an error leaves no half-linked node.
*/
#include "hnsw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#ifdef ANNEX_HAVE_OPENMP
#include <omp.h>
#endif

#define HNSW_ID_LIMIT 0x80000000u

/* aState values. */
#define HNSW_ST_NONE 0    /* not in memory (io may load it) */
#define HNSW_ST_LIVE 1    /* in memory and linked */
#define HNSW_ST_NOREC 2   /* io said it has no record: do not ask again */
#define HNSW_ST_PENDNEW 3 /* batch: vector stored, not linked yet (new) */
#define HNSW_ST_PENDOLD 4 /* batch: in memory, lists dropped, not relinked */

#define HNSW_RELAXED __ATOMIC_RELAXED

/* Bytes of each neighbour's vector requested while a list is filtered
** (HEAD), and up to where the rest is requested one neighbour ahead of its
** scoring (ALL): past that the hardware's stream prefetcher follows the
** kernel's sequential reads, and more prefetch instructions only cost
** (784-d vectors: 3-5% QPS on mnist10k). */
#ifndef HNSW_PREFETCH_HEAD
#define HNSW_PREFETCH_HEAD 128
#endif
#ifndef HNSW_PREFETCH_ALL
#define HNSW_PREFETCH_ALL 512
#endif

/* A query searches level 1 with a beam ef / HNSW_BEAM_DIV wide (at most
** HNSW_BEAM_MAX; greedily when under 2), all of which enters level 0. */
#ifndef HNSW_BEAM_DIV
#define HNSW_BEAM_DIV 8
#endif
#define HNSW_BEAM_MAX 64

/* Queries use code rows from this many dimensions on: below it a float
** vector spans at most one more cache line than its code row does. */
#ifndef HNSW_CODE_MIN_DIM
#define HNSW_CODE_MIN_DIM 32
#endif

/* Code ranges are fitted once this many nodes are in memory (until then
** queries walk the floats, which a graph this small keeps in cache), over
** a sample of at most HNSW_CODE_SAMPLE nodes (at least half that once
** there are more): each dimension's range runs from its second smallest to
** its second largest value in a full sample, from the extremes of a
** smaller one. Leaving out the one most extreme value on each side lets a
** heavy tail clamp a few values instead of coarsening every step (data
** with Student-t(3) tails, 200k x 96: recall@10 at ef 16 0.945 against
** 0.939 with the extremes; light tails do not notice). They are fitted
** again when the rows coded since number 1/HNSW_CODE_REFIT of the nodes
** and clamp values four times as often as the fit did, plus 1/1024 (the
** data moved out of the ranges). */
#ifndef HNSW_CODE_MIN_NODES
#define HNSW_CODE_MIN_NODES 1024
#endif
#define HNSW_CODE_SAMPLE 16384
#define HNSW_CODE_REFIT 8

/* A query walking code rows re-scores the nodes it ends with against the
** floats, best code score first, until no code score left is within this
** many standard deviations of its coding error of the k-th exact score
** (hnsw_code_slack). */
#ifndef HNSW_RESCORE_Z
#define HNSW_RESCORE_Z 4.0
#endif

/* One (score, id) pair of the heaps. */
typedef struct hnsw_pair {
  float d;     /* internal score (cosine: -dot) */
  uint32_t id; /* node */
} hnsw_pair;

/* A visited tag. One byte: the tags of 1M ids then take 1 MiB, which the
** caches keep far better than 2 (bench/hnsw_pair, 1M x 128: +1.3% and
** +2.8%); the array is wiped every 255 traversals instead of every 65535. */
typedef uint8_t hnsw_tag;

/* Scratch of one thread: visited tags, heaps and insertion plans. */
typedef struct hnsw_ctx {
  hnsw_tag *aTag;    /* visited tag per id (nTag ids) */
  uint32_t nTag;     /* ids aTag covers */
  hnsw_tag iEpoch;   /* tag of the current traversal */
  hnsw_pair *aCand;  /* candidate min-heap */
  size_t nCandCap;   /* its capacity */
  hnsw_pair *aRes;   /* result max-heap (then sorted list W) */
  size_t nResCap;    /* its capacity */
  hnsw_pair *aScr;   /* shrink/repair candidates */
  size_t nScrCap;    /* its capacity */
  uint32_t *aSel;    /* planned links: M ids per level */
  int anSel[ANNEX_HNSW_MAX_LEVEL + 1]; /* planned links per level */
  uint32_t *aCopy;   /* a copy of one list, read under its lock */
  unsigned char *aQ; /* one vector in stored form (the query) */
  unsigned char *aQC; /* the query prepared for code rows, or NULL */
} hnsw_ctx;

struct annex_hnsw {
  annex_hnsw_params p;   /* parameters, M and efConstruction clamped */
  annex_dist_fn xDist;   /* kernel over stored-form vectors */
  annex_dist_fn xCode;   /* kernel over code rows, NULL: no codes */
  annex_metric eCode;    /* its metric (l2 or ip) */
  size_t nCB;            /* bytes of one code row (0: no codes) */
  float *aLo;            /* codes: per-dimension ranges, lo then step */
  float *aStep;          /*   (annex_code_fit; 2 x nDim floats, one block) */
  int bCoded;            /* ranges fitted: every node in memory has a row */
  double rFitClamp;      /* share of values clamped when they were fitted */
  size_t nFitNodes;      /* nodes in memory at the fit */
  double rStepMax;       /* the largest step of the fit */
  double rStep2;         /* the sum of its squared steps */
  size_t nCodedNew;      /* rows coded since */
  size_t nClampNew;      /* values those rows clamped */
  int bCos;              /* cosine: stored unit-normalised float32 */
  size_t nVB;            /* bytes of one stored vector */
  size_t nIn;            /* bytes of one caller vector */
  size_t nKDim;          /* dims handed to the kernel */
  uint32_t nM;           /* M: list bound above level 0 */
  uint32_t nM0;          /* 2M: list bound at level 0 */
  size_t nS0;            /* u32 per level-0 list: 1 + 2M */
  size_t nSU;            /* u32 per upper list: 1 + M */
  double mL;             /* level multiplier 1/ln(M) */
  uint32_t nCap;         /* ids the arrays cover */
  size_t nNode;          /* nodes in memory (HNSW_ST_LIVE) */
  size_t nUpBytes;       /* bytes held by the apUp blocks */
  unsigned char *aState; /* HNSW_ST_* per id */
  unsigned char *aLiveBit; /* bitmap: aState is HNSW_ST_LIVE */
  unsigned char *aLevel; /* top level per id */
  uint32_t *aL0;         /* level-0 lists */
  uint32_t **apUp;       /* upper lists per id, or NULL */
  unsigned char *aVec;   /* stored vectors */
  unsigned char *aCode;  /* code rows, ANNEX_CODE_ALIGN-aligned, or NULL */
  unsigned char *pCodeRaw; /* the block aCode lies in */
  unsigned char *aDirty; /* bitmap: record changed since last clear */
  unsigned char *aRemoved; /* bitmap: removed by repair */
  unsigned char *aLock;  /* per-position spinlocks during a batch, else NULL */
  uint32_t *aPosOf;      /* position of each id (nCap; identity until */
  uint32_t *aIdOf;       /*   annex_hnsw_reorder), and the id at each */
  unsigned char bEntryLock; /* spinlock over iEntry/nTop during a batch */
  int64_t iEntry;        /* entry point (an id), -1 when empty */
  int nTop;              /* its level, -1 when empty */
  uint32_t nIdLimit;     /* records naming ids >= this are corrupt */
  annex_hnsw_io io;      /* lazy loader */
  int bIo;               /* io installed */
  unsigned char *pIn;    /* one caller-format vector (io loads) */
  hnsw_ctx ctx0;         /* scratch of the calling thread */
};

/* ---------------------------------------------------------------- utils */

static inline int hnsw_bit(const unsigned char *a, uint32_t i) {
  return (a[i >> 3] >> (i & 7)) & 1;
}

/* Position of id (< nCap) in the arrays, and the id at position p. */
static inline uint32_t hnsw_pos(const annex_hnsw *g, uint32_t id) {
  return g->aPosOf[id];
}

static inline uint32_t hnsw_id(const annex_hnsw *g, uint32_t p) {
  return g->aIdOf[p];
}

/* 1 if the node at position p is accepted by the id bitmap aAcc (NULL:
** every node). */
static inline int hnsw_accepts(const annex_hnsw *g, const unsigned char *aAcc,
                               uint64_t nAcc, uint32_t p) {
  uint32_t id;
  if (!aAcc) return 1;
  id = hnsw_id(g, p);
  return id < nAcc && hnsw_bit(aAcc, id);
}

static inline void hnsw_set_bit_atomic(unsigned char *a, uint32_t i) {
  __atomic_fetch_or(&a[i >> 3], (unsigned char)(1u << (i & 7)), HNSW_RELAXED);
}

static inline void hnsw_lock(unsigned char *p) {
  while (__atomic_test_and_set(p, __ATOMIC_ACQUIRE)) {
    while (__atomic_load_n(p, HNSW_RELAXED)) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
}

static inline void hnsw_unlock(unsigned char *p) {
  __atomic_clear(p, __ATOMIC_RELEASE);
}

static inline unsigned hnsw_state(const annex_hnsw *g, uint32_t id) {
  return __atomic_load_n(&g->aState[id], HNSW_RELAXED);
}

/* Set id's state and its live bit (outside a batch's team: serial). */
static inline void hnsw_set_state(annex_hnsw *g, uint32_t id, unsigned st) {
  unsigned char m = (unsigned char)(1u << (id & 7));
  g->aState[id] = (unsigned char)st;
  if (st == HNSW_ST_LIVE) {
    g->aLiveBit[id >> 3] |= m;
  } else {
    g->aLiveBit[id >> 3] &= (unsigned char)~m;
  }
}

static inline const unsigned char *hnsw_vec(const annex_hnsw *g, uint32_t id) {
  return g->aVec + (size_t)id * g->nVB;
}

/* After id's stored vector is written: its code row, once the ranges are
** fitted (before, hnsw_code_fit codes every node). A row with a value
** outside the ranges counts towards a refit. Safe in a batch's threads. */
static inline void hnsw_encode(annex_hnsw *g, uint32_t id) {
  if (g->bCoded) {
    size_t n = annex_code_encode((const float *)hnsw_vec(g, id), g->aLo,
                                 g->aStep, g->p.nDim,
                                 g->aCode + (size_t)id * g->nCB);
    __atomic_fetch_add(&g->nCodedNew, 1, HNSW_RELAXED);
    if (n) __atomic_fetch_add(&g->nClampNew, n, HNSW_RELAXED);
  }
}

/* States whose node holds its vector in aVec. */
static inline int hnsw_has_vec(unsigned st) {
  return st == HNSW_ST_LIVE || st == HNSW_ST_PENDNEW || st == HNSW_ST_PENDOLD;
}

/* The k-th smallest of a[0..n) (reorders a): Hoare's FIND, as Wirth
** writes it. */
static float hnsw_select(float *a, size_t n, size_t k) {
  ptrdiff_t l = 0, r = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
  while (l < r) {
    float x = a[kk];
    ptrdiff_t i = l, j = r;
    do {
      while (a[i] < x) i++;
      while (x < a[j]) j--;
      if (i <= j) {
        float t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    } while (i <= j);
    if (j < kk) l = i;
    if (kk < i) r = j;
  }
  return a[kk];
}

/* Fit the code ranges to a sample of the nodes in memory and code every
** one. 0 (nothing changed) when the scratch cannot be had or no node is. */
static int hnsw_codes_fit(annex_hnsw *g) {
  const size_t d = g->p.nDim;
  size_t nVec = 0, nS = 0, nStep, k, nClamp = 0;
  uint32_t *aPos;
  float *aCol;
  for (uint32_t id = 0; id < g->nCap; id++) nVec += hnsw_has_vec(g->aState[id]);
  if (nVec == 0) return 0;
  nStep = (nVec + HNSW_CODE_SAMPLE - 1) / HNSW_CODE_SAMPLE;
  aPos = annex_malloc(sizeof(uint32_t) * (nVec / nStep + 1));
  aCol = annex_malloc(sizeof(float) * (nVec / nStep + 1));
  if (aPos == NULL || aCol == NULL) {
    annex_free(aPos);
    annex_free(aCol);
    return 0;
  }
  /* In id order: the same sample whatever the layout. */
  for (uint32_t id = 0, j = 0; id < g->nCap; id++) {
    uint32_t p = hnsw_pos(g, id);
    if (hnsw_has_vec(g->aState[p]) && j++ % nStep == 0) aPos[nS++] = p;
  }
  k = nS >= HNSW_CODE_SAMPLE / 2; /* a full sample: its second extremes */
  for (size_t i = 0; i < d; i++) { /* lows into aLo, highs into aStep */
    for (size_t j = 0; j < nS; j++) {
      aCol[j] = ((const float *)hnsw_vec(g, aPos[j]))[i];
    }
    g->aLo[i] = hnsw_select(aCol, nS, k);
    g->aStep[i] = hnsw_select(aCol, nS, nS - 1 - k);
  }
  annex_free(aPos);
  annex_free(aCol);
  annex_code_fit(g->aLo, g->aStep, d, g->aLo, g->aStep);
  for (uint32_t id = 0; id < g->nCap; id++) {
    if (hnsw_has_vec(g->aState[id])) {
      nClamp += annex_code_encode((const float *)hnsw_vec(g, id), g->aLo,
                                  g->aStep, d, g->aCode + (size_t)id * g->nCB);
    }
  }
  g->rFitClamp = (double)nClamp / ((double)nVec * (double)d);
  g->nCodedNew = g->nClampNew = 0;
  g->nFitNodes = nVec;
  g->rStepMax = g->rStep2 = 0.0;
  for (size_t i = 0; i < d; i++) {
    if (g->aStep[i] > g->rStepMax) g->rStepMax = g->aStep[i];
    g->rStep2 += (double)g->aStep[i] * g->aStep[i];
  }
  g->bCoded = 1;
  return 1;
}

/* Whether the fit is stale: it had fewer than HNSW_CODE_SAMPLE nodes to
** sample and the graph has four times as many now (lazy loading, a growing
** table), or the rows coded since say the data moved out of it. */
static int hnsw_codes_stale(const annex_hnsw *g) {
  double nNew = (double)g->nCodedNew;
  if (g->nFitNodes < HNSW_CODE_SAMPLE && g->nNode >= 4 * g->nFitNodes) {
    return 1;
  }
  if (nNew * HNSW_CODE_REFIT < (double)g->nNode || nNew == 0.0) return 0;
  return (double)g->nClampNew / (nNew * (double)g->p.nDim) >
         4.0 * g->rFitClamp + 1.0 / 1024.0;
}

/* Whether queries walk code rows now, after fitting their ranges when due.
** Serial only. */
static int hnsw_codes_ready(annex_hnsw *g) {
  if (g->xCode == NULL) return 0;
  if (g->bCoded ? hnsw_codes_stale(g) : g->nNode >= HNSW_CODE_MIN_NODES) {
    hnsw_codes_fit(g);
  }
  return g->bCoded;
}

/* Score of the prepared query q (annex_code_query) against id's code row. */
static inline float hnsw_code_dist(const annex_hnsw *g, const void *q,
                                   uint32_t id) {
  return g->xCode(q, g->aCode + (size_t)id * g->nCB, g->nKDim);
}

/* The list of id at level lev (the node must have that level). */
static inline uint32_t *hnsw_list(const annex_hnsw *g, uint32_t id, int lev) {
  if (lev == 0) return g->aL0 + (size_t)id * g->nS0;
  return g->apUp[id] + (size_t)(lev - 1) * g->nSU;
}

/* Ask for the cache lines of bytes [from, to) of the block at p. */
static inline void hnsw_prefetch(const void *p, size_t from, size_t to) {
  const char *z = (const char *)p;
  for (size_t o = from; o < to; o += 64) __builtin_prefetch(z + o);
}

/* Ask for every cache line of id's list at lev (a level-0 list of 1 + 2M
** u32 spans two or three lines). */
static inline void hnsw_prefetch_list(const annex_hnsw *g, uint32_t id,
                                      int lev) {
  const char *p = (const char *)hnsw_list(g, id, lev);
  size_t off = (uintptr_t)p & 63;
  hnsw_prefetch(p - off, 0, off + (lev ? g->nSU : g->nS0) * sizeof(uint32_t));
}

/* Grow *pp (elements of sz bytes) to hold at least need. */
static int hnsw_grow(void **pp, size_t *pCap, size_t need, size_t sz) {
  size_t n = *pCap ? *pCap : 16;
  void *p;
  if (need <= *pCap) return ANNEX_HNSW_OK;
  while (n < need) n *= 2;
  p = annex_realloc(*pp, n * sz);
  if (p == NULL) return ANNEX_HNSW_NOMEM;
  *pp = p;
  *pCap = n;
  return ANNEX_HNSW_OK;
}

static int hnsw_pair_cmp(const void *pa, const void *pb) {
  const hnsw_pair *a = pa, *b = pb;
  if (a->d < b->d) return -1;
  if (a->d > b->d) return 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

/* Sift a[i] down the max-heap a[0..n) ordered by id. */
static void hnsw_id_sift(const annex_hnsw *g, hnsw_pair *a, size_t i,
                         size_t n) {
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    hnsw_pair t;
    if (l < n && hnsw_id(g, a[l].id) > hnsw_id(g, a[m].id)) m = l;
    if (l + 1 < n && hnsw_id(g, a[l + 1].id) > hnsw_id(g, a[m].id)) m = l + 1;
    if (m == i) return;
    t = a[i];
    a[i] = a[m];
    a[m] = t;
    i = m;
  }
}

/* Sort a run of pairs by id (heapsort: a run of many equal scores, say
** duplicate vectors, stays O(n log n)). */
static void hnsw_sort_ids(const annex_hnsw *g, hnsw_pair *a, size_t n) {
  for (size_t i = n / 2; i-- > 0;) hnsw_id_sift(g, a, i, n);
  for (size_t m = n; m-- > 1;) {
    hnsw_pair t = a[0];
    a[0] = a[m];
    a[m] = t;
    hnsw_id_sift(g, a, 0, m);
  }
}

/* Sort pairs ascending by (d, id): by (d, position), insertion sort for
** the short lists, then each run of equal d by id, so that what the graph
** does never depends on where its nodes sit in memory. */
static void hnsw_sort(const annex_hnsw *g, hnsw_pair *a, size_t n) {
  if (n > 32) {
    qsort(a, n, sizeof *a, hnsw_pair_cmp);
  } else {
    for (size_t i = 1; i < n; i++) {
      hnsw_pair x = a[i];
      size_t j = i;
      while (j > 0 && hnsw_pair_cmp(&a[j - 1], &x) > 0) {
        a[j] = a[j - 1];
        j--;
      }
      a[j] = x;
    }
  }
  for (size_t i = 0; i + 1 < n;) {
    size_t j = i + 1;
    while (j < n && a[j].d == a[i].d) j++;
    if (j - i > 1) hnsw_sort_ids(g, a + i, j - i);
    i = j;
  }
}

/* ---------------------------------------------------------------- heaps */

static inline void hnsw_minheap_push(hnsw_pair *h, size_t *pn, hnsw_pair x) {
  size_t i = (*pn)++;
  while (i > 0) {
    size_t up = (i - 1) >> 1;
    if (h[up].d <= x.d) break;
    h[i] = h[up];
    i = up;
  }
  h[i] = x;
}

static inline void hnsw_minheap_pop(hnsw_pair *h, size_t *pn) {
  size_t n = --*pn, i = 0;
  hnsw_pair x = h[n];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && h[c + 1].d < h[c].d) c++;
    if (x.d <= h[c].d) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

static inline void hnsw_maxheap_push(hnsw_pair *h, size_t *pn, hnsw_pair x) {
  size_t i = (*pn)++;
  while (i > 0) {
    size_t up = (i - 1) >> 1;
    if (h[up].d >= x.d) break;
    h[i] = h[up];
    i = up;
  }
  h[i] = x;
}

/* Replace the max of a non-empty max-heap with x. */
static inline void hnsw_maxheap_replace(hnsw_pair *h, size_t n, hnsw_pair x) {
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && h[c + 1].d > h[c].d) c++;
    if (x.d >= h[c].d) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

/* ----------------------------------------------------------- vectors */

/* The caller's vector in, the stored form out (cosine: unit float32). */
static void hnsw_prepare(const annex_hnsw *g, const void *pIn, void *pOut) {
  if (!g->bCos) {
    memcpy(pOut, pIn, g->nVB);
    return;
  }
  float *o = pOut;
  double s = 0;
  size_t n = g->p.nDim;
  for (size_t i = 0; i < n; i++) {
    float v;
    if (g->p.eElem == ANNEX_ELEM_INT8) {
      v = (float)((const signed char *)pIn)[i];
    } else {
      memcpy(&v, (const unsigned char *)pIn + 4 * i, 4);
    }
    o[i] = v;
    s += (double)v * (double)v;
  }
  if (s > 0) {
    double r = 1.0 / sqrt(s);
    for (size_t i = 0; i < n; i++) o[i] = (float)(o[i] * r);
  }
}

static inline float hnsw_dist(const annex_hnsw *g, const void *a,
                              const void *b) {
  return g->xDist(a, b, g->nKDim);
}

/* Internal score -> the score distance.h defines. */
static inline float hnsw_score_out(const annex_hnsw *g, float d) {
  return g->bCos ? 1.0f + d : d;
}

/* ------------------------------------------------------------- contexts */

static void hnsw_ctx_free(hnsw_ctx *c) {
  annex_free(c->aTag);
  annex_free(c->aCand);
  annex_free(c->aRes);
  annex_free(c->aScr);
  annex_free(c->aSel);
  annex_free(c->aCopy);
  annex_free(c->aQ);
  annex_free(c->aQC);
  memset(c, 0, sizeof *c);
}

/* Allocate a context's fixed parts; tags for nTag ids when nTag > 0. */
static int hnsw_ctx_init(const annex_hnsw *g, hnsw_ctx *c, uint32_t nTag) {
  memset(c, 0, sizeof *c);
  c->aSel = annex_malloc(sizeof(uint32_t) * (ANNEX_HNSW_MAX_LEVEL + 1) * g->nM);
  c->aCopy = annex_malloc(sizeof(uint32_t) * (g->nS0 + 1));
  c->aQ = annex_malloc(g->nVB);
  if (g->xCode) c->aQC = annex_malloc(annex_code_query_bytes(g->p.nDim));
  if (nTag) c->aTag = annex_calloc(nTag, sizeof(hnsw_tag));
  if (!c->aSel || !c->aCopy || !c->aQ || (g->xCode && !c->aQC) ||
      (nTag && !c->aTag) ||
      hnsw_grow((void **)&c->aScr, &c->nScrCap, g->nM0 + 1, sizeof(hnsw_pair))) {
    hnsw_ctx_free(c);
    return ANNEX_HNSW_NOMEM;
  }
  c->nTag = nTag;
  return ANNEX_HNSW_OK;
}

/* Start a traversal: a fresh epoch (tags wiped when it wraps). */
static void hnsw_ctx_epoch(hnsw_ctx *c) {
  if (++c->iEpoch == 0) {
    memset(c->aTag, 0, sizeof(hnsw_tag) * c->nTag);
    c->iEpoch = 1;
  }
}

/* ------------------------------------------------------------ lifecycle */

int annex_hnsw_new(const annex_hnsw_params *p, annex_hnsw **pp) {
  annex_hnsw *g;
  annex_elem eStore;
  annex_metric eKernel;
  *pp = NULL;
  if (p == NULL || p->nDim == 0) return ANNEX_HNSW_RANGE;
  annex_distance_init();
  if (annex_distance_kernel(p->eElem, p->eMetric) == NULL) {
    return ANNEX_HNSW_RANGE;
  }
  if (p->eElem == ANNEX_ELEM_BIT && p->nDim % 8) return ANNEX_HNSW_RANGE;
  g = annex_calloc(1, sizeof *g);
  if (g == NULL) return ANNEX_HNSW_NOMEM;
  g->p = *p;
  if (g->p.M < 2) g->p.M = 2;
  if (g->p.M > ANNEX_HNSW_MAX_M) g->p.M = ANNEX_HNSW_MAX_M;
  if (g->p.efConstruction < g->p.M) g->p.efConstruction = g->p.M;
  g->bCos = p->eMetric == ANNEX_METRIC_COSINE;
  eStore = g->bCos ? ANNEX_ELEM_FLOAT32 : p->eElem;
  eKernel = g->bCos ? ANNEX_METRIC_IP : p->eMetric;
  g->xDist = annex_distance_kernel(eStore, eKernel);
  if (eStore == ANNEX_ELEM_FLOAT32 && !p->bExact &&
      p->nDim >= HNSW_CODE_MIN_DIM) {
    g->xCode = annex_code_kernel(eKernel, p->nDim);
    g->eCode = eKernel;
    g->nCB = g->xCode ? annex_code_bytes(p->nDim) : 0;
  }
  g->nKDim = p->nDim;
  g->nVB = annex_vector_bytes(eStore, p->nDim);
  g->nIn = annex_vector_bytes(p->eElem, p->nDim);
  g->nM = (uint32_t)g->p.M;
  g->nM0 = 2 * g->nM;
  g->nS0 = 1 + (size_t)g->nM0;
  g->nSU = 1 + (size_t)g->nM;
  g->mL = 1.0 / log((double)g->p.M);
  g->nIdLimit = HNSW_ID_LIMIT;
  g->iEntry = -1;
  g->nTop = -1;
  g->pIn = annex_malloc(g->nIn);
  if (g->xCode) {
    g->aLo = annex_calloc(2 * p->nDim, sizeof(float));
    g->aStep = g->aLo ? g->aLo + p->nDim : NULL;
  }
  if (g->pIn == NULL || (g->xCode && g->aLo == NULL) ||
      hnsw_ctx_init(g, &g->ctx0, 0)) {
    annex_hnsw_free(g);
    return ANNEX_HNSW_NOMEM;
  }
  *pp = g;
  return ANNEX_HNSW_OK;
}

void annex_hnsw_free(annex_hnsw *g) {
  if (g == NULL) return;
  if (g->apUp) {
    for (uint32_t i = 0; i < g->nCap; i++) annex_free(g->apUp[i]);
  }
  annex_free(g->aState);
  annex_free(g->aLevel);
  annex_free(g->aL0);
  annex_free(g->apUp);
  annex_free(g->aVec);
  annex_free(g->pCodeRaw);
  annex_free(g->aLo);
  annex_free(g->aDirty);
  annex_free(g->aLiveBit);
  annex_free(g->aRemoved);
  annex_free(g->aLock);
  annex_free(g->aPosOf);
  annex_free(g->aIdOf);
  annex_free(g->pIn);
  hnsw_ctx_free(&g->ctx0);
  annex_free(g);
}

void annex_hnsw_set_io(annex_hnsw *g, const annex_hnsw_io *io) {
  if (io) {
    g->io = *io;
    g->bIo = 1;
  } else {
    memset(&g->io, 0, sizeof g->io);
    g->bIo = 0;
  }
  /* O(1): callers install the loader around each query. Ids found absent
  ** stay absent until put, inserted or reset. */
}

const annex_hnsw_params *annex_hnsw_params_of(const annex_hnsw *g) {
  return &g->p;
}

int annex_hnsw_uses_codes(const annex_hnsw *g) { return g->xCode != NULL; }

int annex_hnsw_codes_fitted(const annex_hnsw *g) { return g->bCoded; }

void annex_hnsw_set_entry(annex_hnsw *g, int64_t entry, int nLevel) {
  if (entry < 0 || entry >= (int64_t)HNSW_ID_LIMIT) {
    g->iEntry = -1;
    g->nTop = -1;
    return;
  }
  g->iEntry = entry;
  g->nTop = nLevel < 0 ? 0
            : nLevel > ANNEX_HNSW_MAX_LEVEL ? ANNEX_HNSW_MAX_LEVEL
                                            : nLevel;
}

void annex_hnsw_get_entry(const annex_hnsw *g, int64_t *pEntry, int *pnLevel) {
  if (pEntry) *pEntry = g->iEntry;
  if (pnLevel) *pnLevel = g->iEntry < 0 ? -1 : g->nTop;
}

static uint64_t hnsw_mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

int annex_hnsw_random_level(const annex_hnsw *g, uint32_t id) {
  uint64_t h = hnsw_mix64(g->p.seed ^ hnsw_mix64((uint64_t)id));
  double u = (double)((h >> 11) + 1) * (1.0 / 9007199254740992.0); /* (0,1] */
  double l = -log(u) * g->mL;
  return l >= ANNEX_HNSW_MAX_LEVEL ? ANNEX_HNSW_MAX_LEVEL : (int)l;
}

/* ---------------------------------------------------------- capacity */

/* Grow one array from nOld to nNew elements of sz bytes, zeroing the tail. */
static int hnsw_grow_array(void **pp, size_t nOld, size_t nNew, size_t sz) {
  void *p;
  if (nNew > SIZE_MAX / sz) return ANNEX_HNSW_NOMEM;
  p = annex_realloc(*pp, nNew * sz);
  if (p == NULL) return ANNEX_HNSW_NOMEM;
  annex_advise_huge(p, nNew * sz); /* before the new tail is touched */
  memset((char *)p + nOld * sz, 0, (nNew - nOld) * sz);
  *pp = p;
  return ANNEX_HNSW_OK;
}

/* Grow the code rows from nOld to nNew, each starting a cache line (which
** realloc's blocks do not promise): a new block, the rows copied. */
static int hnsw_grow_codes(annex_hnsw *g, size_t nOld, size_t nNew) {
  unsigned char *pRaw, *p;
  size_t nB;
  if (nNew > (SIZE_MAX - ANNEX_CODE_ALIGN) / g->nCB) return ANNEX_HNSW_NOMEM;
  nB = nNew * g->nCB + ANNEX_CODE_ALIGN;
  pRaw = annex_malloc(nB);
  if (pRaw == NULL) return ANNEX_HNSW_NOMEM;
  annex_advise_huge(pRaw, nB);
  p = pRaw + (-(uintptr_t)pRaw & (ANNEX_CODE_ALIGN - 1));
  if (nOld) memcpy(p, g->aCode, nOld * g->nCB);
  memset(p + nOld * g->nCB, 0, (nNew - nOld) * g->nCB);
  annex_free(g->pCodeRaw);
  g->pCodeRaw = pRaw;
  g->aCode = p;
  return ANNEX_HNSW_OK;
}

int annex_hnsw_reserve(annex_hnsw *g, uint32_t n) {
  uint32_t nOld = g->nCap, nNew;
  size_t b0, b1;
  if (n > HNSW_ID_LIMIT) return ANNEX_HNSW_RANGE;
  if (n <= nOld) return ANNEX_HNSW_OK;
  nNew = nOld < 64 ? 64 : nOld + nOld / 2;
  if (nNew < n) nNew = n;
  if (nNew > HNSW_ID_LIMIT) nNew = HNSW_ID_LIMIT;
  b0 = ((size_t)nOld + 7) / 8;
  b1 = ((size_t)nNew + 7) / 8;
  /* Each array keeps its old contents on failure; nCap moves only when
  ** every array has grown, so a failure leaves the graph as it was. */
  if (hnsw_grow_array((void **)&g->aState, nOld, nNew, 1) ||
      hnsw_grow_array((void **)&g->aLevel, nOld, nNew, 1) ||
      hnsw_grow_array((void **)&g->aL0, nOld * g->nS0, nNew * g->nS0, 4) ||
      hnsw_grow_array((void **)&g->apUp, nOld, nNew, sizeof(uint32_t *)) ||
      hnsw_grow_array((void **)&g->aVec, nOld, nNew, g->nVB) ||
      (g->nCB && hnsw_grow_codes(g, nOld, nNew)) ||
      hnsw_grow_array((void **)&g->aDirty, b0, b1, 1) ||
      hnsw_grow_array((void **)&g->aLiveBit, b0, b1, 1) ||
      hnsw_grow_array((void **)&g->aRemoved, b0, b1, 1) ||
      hnsw_grow_array((void **)&g->aPosOf, nOld, nNew, sizeof(uint32_t)) ||
      hnsw_grow_array((void **)&g->aIdOf, nOld, nNew, sizeof(uint32_t)) ||
      hnsw_grow_array((void **)&g->ctx0.aTag, g->ctx0.nTag, nNew,
                      sizeof(hnsw_tag))) {
    return ANNEX_HNSW_NOMEM;
  }
  /* Positions [0, nOld) hold ids [0, nOld): the new ids take the new
  ** positions as they are. */
  for (uint32_t i = nOld; i < nNew; i++) g->aPosOf[i] = g->aIdOf[i] = i;
  g->ctx0.nTag = nNew;
  g->nCap = nNew;
  return ANNEX_HNSW_OK;
}

int annex_hnsw_has(const annex_hnsw *g, uint32_t id) {
  return id < g->nCap && g->aState[hnsw_pos(g, id)] == HNSW_ST_LIVE;
}

size_t annex_hnsw_count(const annex_hnsw *g) { return g->nNode; }

int annex_hnsw_consistent(const annex_hnsw *g) {
  size_t nLive = 0;
  for (uint32_t i = 0; i < g->nCap; i++) {
    int bLive = g->aState[i] == HNSW_ST_LIVE;
    if (bLive != hnsw_bit(g->aLiveBit, i)) return 0;
    if (g->aPosOf[i] >= g->nCap || g->aIdOf[g->aPosOf[i]] != i) return 0;
    nLive += (size_t)bLive;
  }
  return nLive == g->nNode;
}

size_t annex_hnsw_memory(const annex_hnsw *g) {
  size_t n = g->nCap;
  return sizeof *g +
         n * (2 + g->nS0 * 4 + sizeof(uint32_t *) + g->nVB + g->nCB +
              2 * sizeof(uint32_t) + sizeof(hnsw_tag)) +
         3 * ((n + 7) / 8) + g->nUpBytes + g->nIn + g->nVB +
         (g->aLo ? 2 * sizeof(float) * g->p.nDim : 0) +
         g->ctx0.nCandCap * sizeof(hnsw_pair) +
         g->ctx0.nResCap * sizeof(hnsw_pair);
}

/* Give id an upper block for level L (old one freed). No change on NOMEM. */
static int hnsw_set_levels(annex_hnsw *g, uint32_t id, int L) {
  uint32_t *p = NULL;
  size_t nOld = (size_t)g->aLevel[id] * g->nSU * 4;
  if (L > 0) {
    p = annex_calloc((size_t)L * g->nSU, 4);
    if (p == NULL) return ANNEX_HNSW_NOMEM;
  }
  if (g->apUp[id] == NULL) nOld = 0;
  annex_free(g->apUp[id]);
  g->nUpBytes -= nOld;
  g->apUp[id] = p;
  g->aLevel[id] = (unsigned char)L;
  g->nUpBytes += (size_t)L * g->nSU * 4;
  g->aL0[(size_t)id * g->nS0] = 0;
  return ANNEX_HNSW_OK;
}

/* Drop the node at position p from memory (its arrays stay). */
static void hnsw_forget(annex_hnsw *g, uint32_t p) {
  if (g->apUp[p]) {
    g->nUpBytes -= (size_t)g->aLevel[p] * g->nSU * 4;
    annex_free(g->apUp[p]);
    g->apUp[p] = NULL;
  }
  if (g->aState[p] == HNSW_ST_LIVE) g->nNode--;
  hnsw_set_state(g, p, HNSW_ST_NONE);
  g->aDirty[hnsw_id(g, p) >> 3] &= (unsigned char)~(1u << (hnsw_id(g, p) & 7));
  g->aLevel[p] = 0;
  g->aL0[(size_t)p * g->nS0] = 0;
}

void annex_hnsw_reset(annex_hnsw *g) {
  for (uint32_t i = 0; i < g->nCap; i++) hnsw_forget(g, i);
  if (g->nCap) {
    memset(g->aDirty, 0, ((size_t)g->nCap + 7) / 8);
    memset(g->aRemoved, 0, ((size_t)g->nCap + 7) / 8);
  }
  g->nNode = 0;
  g->iEntry = -1;
  g->nTop = -1;
  g->bCoded = 0;
  g->nCodedNew = g->nClampNew = 0;
}

/* ------------------------------------------------------------- records */

/* Parse a record: level, per-level counts and the largest id named. */
static int hnsw_parse(const annex_hnsw *g, const unsigned char *a, size_t n,
                      int *pL, uint32_t *pMax) {
  size_t off = 1;
  uint32_t mx = 0;
  int L;
  if (a == NULL || n < 1) return ANNEX_HNSW_CORRUPT;
  L = a[0];
  if (L > ANNEX_HNSW_MAX_LEVEL) return ANNEX_HNSW_CORRUPT;
  for (int l = 0; l <= L; l++) {
    uint32_t c, bound = l ? g->nM : g->nM0;
    if (n - off < 2) return ANNEX_HNSW_CORRUPT;
    c = (uint32_t)a[off] | (uint32_t)a[off + 1] << 8;
    off += 2;
    if (c > bound || (n - off) / 4 < c) return ANNEX_HNSW_CORRUPT;
    for (uint32_t j = 0; j < c; j++, off += 4) {
      uint32_t v = (uint32_t)a[off] | (uint32_t)a[off + 1] << 8 |
                   (uint32_t)a[off + 2] << 16 | (uint32_t)a[off + 3] << 24;
      if (v >= g->nIdLimit) return ANNEX_HNSW_CORRUPT;
      if (v > mx) mx = v;
    }
  }
  if (off != n) return ANNEX_HNSW_CORRUPT;
  *pL = L;
  if (pMax) *pMax = mx;
  return ANNEX_HNSW_OK;
}

int annex_hnsw_record_check(const annex_hnsw *g, const unsigned char *a,
                            size_t n, int *pnLevel) {
  int L = 0;
  int rc = hnsw_parse(g, a, n, &L, NULL);
  if (rc == ANNEX_HNSW_OK && pnLevel) *pnLevel = L;
  return rc;
}

void annex_hnsw_set_id_limit(annex_hnsw *g, uint64_t n) {
  g->nIdLimit = n < HNSW_ID_LIMIT ? (uint32_t)n : HNSW_ID_LIMIT;
}

int annex_hnsw_record(const annex_hnsw *g, uint32_t id, unsigned char *aOut,
                      size_t *pn) {
  size_t n = 1, off = 1;
  int L;
  uint32_t p;
  if (id >= HNSW_ID_LIMIT) return ANNEX_HNSW_RANGE;
  if (!annex_hnsw_has(g, id)) return ANNEX_HNSW_ABSENT;
  p = hnsw_pos(g, id);
  L = g->aLevel[p];
  for (int l = 0; l <= L; l++) n += 2 + 4 * (size_t)hnsw_list(g, p, l)[0];
  *pn = n;
  if (aOut == NULL) return ANNEX_HNSW_OK;
  aOut[0] = (unsigned char)L;
  for (int l = 0; l <= L; l++) {
    const uint32_t *list = hnsw_list(g, p, l);
    uint32_t c = list[0];
    aOut[off++] = (unsigned char)(c & 0xff);
    aOut[off++] = (unsigned char)(c >> 8);
    for (uint32_t j = 1; j <= c; j++) {
      uint32_t v = hnsw_id(g, list[j]);
      aOut[off++] = (unsigned char)v;
      aOut[off++] = (unsigned char)(v >> 8);
      aOut[off++] = (unsigned char)(v >> 16);
      aOut[off++] = (unsigned char)(v >> 24);
    }
  }
  return ANNEX_HNSW_OK;
}

int annex_hnsw_put(annex_hnsw *g, uint32_t id, const unsigned char *aRec,
                   size_t nRec, const void *pVec) {
  int L = 0, rc;
  uint32_t mx = 0, need, p;
  size_t off = 1;
  if (id >= HNSW_ID_LIMIT) return ANNEX_HNSW_RANGE;
  rc = hnsw_parse(g, aRec, nRec, &L, &mx);
  if (rc) return rc;
  need = (mx > id ? mx : id) + 1;
  rc = annex_hnsw_reserve(g, need);
  if (rc) return rc;
  p = hnsw_pos(g, id);
  rc = hnsw_set_levels(g, p, L);
  if (rc) return rc;
  for (int l = 0; l <= L; l++) {
    uint32_t *list = hnsw_list(g, p, l);
    uint32_t c = (uint32_t)aRec[off] | (uint32_t)aRec[off + 1] << 8;
    off += 2;
    list[0] = c;
    for (uint32_t j = 1; j <= c; j++, off += 4) {
      list[j] = hnsw_pos(g, (uint32_t)aRec[off] | (uint32_t)aRec[off + 1] << 8 |
                                (uint32_t)aRec[off + 2] << 16 |
                                (uint32_t)aRec[off + 3] << 24);
    }
  }
  hnsw_prepare(g, pVec, g->aVec + (size_t)p * g->nVB);
  hnsw_encode(g, p);
  if (g->aState[p] != HNSW_ST_LIVE) g->nNode++;
  hnsw_set_state(g, p, HNSW_ST_LIVE);
  return ANNEX_HNSW_OK;
}

int annex_hnsw_load(annex_hnsw *g, uint32_t id) {
  const unsigned char *a = NULL;
  size_t n = 0;
  int rc;
  if (id >= HNSW_ID_LIMIT) return ANNEX_HNSW_RANGE;
  if (id < g->nCap && g->aState[hnsw_pos(g, id)] == HNSW_ST_LIVE) {
    return ANNEX_HNSW_OK;
  }
  if (!g->bIo) return ANNEX_HNSW_ABSENT;
  if (id < g->nCap && g->aState[hnsw_pos(g, id)] == HNSW_ST_NOREC) {
    return ANNEX_HNSW_ABSENT;
  }
  /* Vector first: the record's bytes live only until the next call. */
  rc = g->io.xVector(g->io.pCtx, id, g->pIn);
  if (rc == ANNEX_HNSW_OK) rc = g->io.xRecord(g->io.pCtx, id, &a, &n);
  if (rc == ANNEX_HNSW_ABSENT) {
    if (id < g->nCap) hnsw_set_state(g, hnsw_pos(g, id), HNSW_ST_NOREC);
    return rc;
  }
  if (rc) return rc;
  return annex_hnsw_put(g, id, a, n, g->pIn);
}

/* Load every not-yet-loaded neighbour of id at lev (serial, io set). */
static int hnsw_ensure(annex_hnsw *g, uint32_t id, int lev) {
  for (uint32_t j = 1;; j++) {
    const uint32_t *list = hnsw_list(g, id, lev); /* may move on load */
    uint32_t nb;
    int rc;
    if (j > list[0]) break;
    nb = list[j];
    if (g->aState[nb] != HNSW_ST_NONE) continue;
    rc = annex_hnsw_load(g, hnsw_id(g, nb));
    if (rc && rc != ANNEX_HNSW_ABSENT) return rc;
  }
  return ANNEX_HNSW_OK;
}

/* ------------------------------------------------------------- search */

/* The list of id at lev, for reading: a copy taken under the node's lock
** during a batch, the list itself otherwise. */
static inline const uint32_t *hnsw_read_list(annex_hnsw *g, hnsw_ctx *c,
                                             uint32_t id, int lev, int bPar) {
  const uint32_t *list = hnsw_list(g, id, lev);
  if (!bPar) return list;
  hnsw_lock(&g->aLock[id]);
  memcpy(c->aCopy, list, sizeof(uint32_t) * (1 + list[0]));
  hnsw_unlock(&g->aLock[id]);
  return c->aCopy;
}

/* Greedy descent at level lev from *pCur (Algorithm 2 with ef = 1),
** scoring code rows when bCode. */
static int hnsw_greedy(annex_hnsw *g, hnsw_ctx *c, const void *q,
                       hnsw_pair *pCur, int lev, int bPar, int bCode) {
  const size_t nRow = bCode ? g->nCB : g->nVB;
  const size_t nHead = nRow < HNSW_PREFETCH_HEAD ? nRow : HNSW_PREFETCH_HEAD;
  int bMoved = 1;
  while (bMoved) {
    const uint32_t *list;
    const unsigned char *aRow;
    bMoved = 0;
    if (g->bIo && !bPar) {
      int rc = hnsw_ensure(g, pCur->id, lev);
      if (rc) return rc;
    }
    list = hnsw_read_list(g, c, pCur->id, lev, bPar);
    aRow = bCode ? g->aCode : g->aVec; /* after loads, which may move it */
    /* Each step waits for its list's neighbours: ask for all at once. */
    for (uint32_t j = 1; j <= list[0]; j++) {
      __builtin_prefetch(g->aLevel + list[j]);
      hnsw_prefetch(aRow + (size_t)list[j] * nRow, 0, nHead);
    }
    for (uint32_t j = 1; j <= list[0]; j++) {
      uint32_t nb = list[j];
      float d;
      if ((bPar ? hnsw_state(g, nb) != HNSW_ST_LIVE
                : !hnsw_bit(g->aLiveBit, nb)) ||
          g->aLevel[nb] < lev) {
        continue;
      }
      d = bCode ? hnsw_code_dist(g, q, nb) : hnsw_dist(g, q, hnsw_vec(g, nb));
      if (d < pCur->d) {
        pCur->d = d;
        pCur->id = nb;
        bMoved = 1;
      }
    }
  }
  return ANNEX_HNSW_OK;
}

/* Algorithm 2: the ef nearest (accepted) nodes to q at level lev, from the
** entry points aEp (live, level >= lev, scores known). The result is left
** as a max-heap in c->aRes[0..*pnRes). bCode: q is a stored-form query
** scored against code rows (the scores of aEp are code scores too).
** Inlined into specialised callers. */
static inline __attribute__((always_inline)) int hnsw_search_layer(
    annex_hnsw *g, hnsw_ctx *c, const void *q, const hnsw_pair *aEp,
    size_t nEp, int lev, size_t ef, const unsigned char *aAcc, uint64_t nAcc,
    int bPar, int bCode, size_t *pnRes) {
  size_t nCand = 0, nRes = 0;
  float lower = INFINITY;
  const annex_dist_fn xDist = bCode ? g->xCode : g->xDist;
  const size_t nKDim = g->nKDim, nVB = bCode ? g->nCB : g->nVB;
  const size_t nHead = nVB < HNSW_PREFETCH_HEAD ? nVB : HNSW_PREFETCH_HEAD;
  const size_t nTail = nVB < HNSW_PREFETCH_ALL ? nVB : HNSW_PREFETCH_ALL;
  int rc;
  if (ef < 1) ef = 1;
  rc = hnsw_grow((void **)&c->aRes, &c->nResCap, ef + 1, sizeof(hnsw_pair));
  if (rc == ANNEX_HNSW_OK && c->nCandCap < ef + nEp) {
    rc = hnsw_grow((void **)&c->aCand, &c->nCandCap, ef + nEp,
                   sizeof(hnsw_pair));
  }
  if (rc) return rc;
  hnsw_ctx_epoch(c);
  for (size_t i = 0; i < nEp; i++) {
    uint32_t id = aEp[i].id;
    if (c->aTag[id] == c->iEpoch) continue;
    c->aTag[id] = c->iEpoch;
    hnsw_minheap_push(c->aCand, &nCand, aEp[i]);
    if (hnsw_accepts(g, aAcc, nAcc, id)) {
      if (nRes < ef) {
        hnsw_maxheap_push(c->aRes, &nRes, aEp[i]);
      } else if (aEp[i].d < c->aRes[0].d) {
        hnsw_maxheap_replace(c->aRes, nRes, aEp[i]);
      }
      if (nRes >= ef) lower = c->aRes[0].d;
    }
  }
  while (nCand > 0) {
    hnsw_pair cur = c->aCand[0];
    const uint32_t *list;
    const unsigned char *aVec, *aState;
    hnsw_tag *aTag, iEpoch;
    uint32_t cnt, nNb, aNb[2 * ANNEX_HNSW_MAX_M];
    if (cur.d > lower) break;
    hnsw_minheap_pop(c->aCand, &nCand);
    if (nCand > 0) {
      hnsw_prefetch_list(g, c->aCand[0].id, lev);
    }
    if (g->bIo && !bPar) {
      rc = hnsw_ensure(g, cur.id, lev); /* arrays may move */
      if (rc) return rc;
    }
    list = hnsw_read_list(g, c, cur.id, lev, bPar);
    aVec = bCode ? g->aCode : g->aVec;
    aState = g->aState;
    aTag = c->aTag;
    iEpoch = c->iEpoch;
    cnt = list[0];
    /* Two passes over the list. The first keeps the unvisited live
    ** neighbours and asks for the head of each one's vector as it is
    ** found, so the memory system fetches them side by side (the visited
    ** tags and states were asked for first, for the same reason); the
    ** second scores them, asking for the next one's remaining lines. At 1M
    ** x 128 a query is mostly waiting for these lines. */
    for (uint32_t j = 1; j <= cnt; j++) {
      __builtin_prefetch(aTag + list[j]);
      if (bPar) __builtin_prefetch(aState + list[j]);
    }
    nNb = 0;
    for (uint32_t j = 1; j <= cnt; j++) {
      uint32_t nb = list[j];
      if (aTag[nb] == iEpoch) continue;
      aTag[nb] = iEpoch;
      if (bPar ? __atomic_load_n(&aState[nb], HNSW_RELAXED) != HNSW_ST_LIVE
               : !hnsw_bit(g->aLiveBit, nb)) {
        continue;
      }
      if (lev > 0 && g->aLevel[nb] < lev) continue;
      aNb[nNb++] = nb;
      hnsw_prefetch(aVec + (size_t)nb * nVB, 0, nHead);
    }
    for (uint32_t i = 0; i < nNb; i++) {
      uint32_t nb = aNb[i];
      float d;
      if (i + 1 < nNb) hnsw_prefetch(aVec + (size_t)aNb[i + 1] * nVB, nHead, nTail);
      d = xDist(q, aVec + (size_t)nb * nVB, nKDim);
      if (nRes < ef || d < lower) {
        hnsw_pair x = {d, nb};
        if (nCand == c->nCandCap) {
          rc = hnsw_grow((void **)&c->aCand, &c->nCandCap, nCand + 1,
                         sizeof(hnsw_pair));
          if (rc) return rc;
        }
        hnsw_minheap_push(c->aCand, &nCand, x);
        hnsw_prefetch_list(g, c->aCand[0].id, lev);
        if (hnsw_accepts(g, aAcc, nAcc, nb)) {
          if (nRes < ef) {
            hnsw_maxheap_push(c->aRes, &nRes, x);
          } else {
            hnsw_maxheap_replace(c->aRes, nRes, x);
          }
          if (nRes >= ef) lower = c->aRes[0].d;
        }
      }
    }
  }
  *pnRes = nRes;
  return ANNEX_HNSW_OK;
}

/* A query's search of one level, serial: the hot path, specialised for
** code rows and for float vectors. */
static int hnsw_search_query(annex_hnsw *g, hnsw_ctx *c, const void *q,
                             const hnsw_pair *aEp, size_t nEp, int lev,
                             size_t ef, const unsigned char *aAcc,
                             uint64_t nAcc, int bCode, size_t *pnRes) {
  if (bCode) {
    return hnsw_search_layer(g, c, q, aEp, nEp, lev, ef, aAcc, nAcc, 0, 1,
                             pnRes);
  }
  return hnsw_search_layer(g, c, q, aEp, nEp, lev, ef, aAcc, nAcc, 0, 0,
                           pnRes);
}

/* Insertion's search of any level, serial or parallel: float vectors. */
static int hnsw_search_any(annex_hnsw *g, hnsw_ctx *c, const void *q,
                           hnsw_pair ep, int lev, size_t ef, int bPar,
                           size_t *pnRes) {
  if (bPar) {
    return hnsw_search_layer(g, c, q, &ep, 1, lev, ef, NULL, 0, 1, 0, pnRes);
  }
  return hnsw_search_layer(g, c, q, &ep, 1, lev, ef, NULL, 0, 0, 0, pnRes);
}

static void hnsw_repair_entry(annex_hnsw *g);

/* The entry point's position, loaded, with its usable top level (*pTop =
** -1: the graph is empty). An entry that cannot be loaded (its row is gone) is
** replaced by the highest node in memory; ANNEX_HNSW_ABSENT, with the
** entry left as it was, when no node is in memory. */
static int hnsw_entry(annex_hnsw *g, uint32_t *pId, int *pTop) {
  uint32_t e;
  int rc, top;
  if (g->iEntry >= 0) {
    rc = annex_hnsw_load(g, (uint32_t)g->iEntry);
    if (rc == ANNEX_HNSW_ABSENT) {
      int64_t iOld = g->iEntry;
      int nOld = g->nTop;
      hnsw_repair_entry(g);
      if (g->iEntry < 0) {
        g->iEntry = iOld;
        g->nTop = nOld;
        return ANNEX_HNSW_ABSENT;
      }
    } else if (rc) {
      return rc;
    }
  }
  if (g->iEntry < 0) {
    *pTop = -1;
    return ANNEX_HNSW_OK;
  }
  e = hnsw_pos(g, (uint32_t)g->iEntry);
  top = g->nTop < g->aLevel[e] ? g->nTop : g->aLevel[e];
  *pId = e;
  *pTop = top;
  return ANNEX_HNSW_OK;
}

/* A query's way down from the entry cur at level top, then its level-0
** search (ef, accepted ids aAcc), result left in c->aRes as a max-heap.
** Greedy descent (Algorithm 5) stops in a local minimum of each level; on
** clustered data the one at level 1 can sit in the wrong cluster and trap
** the level-0 search. So level 1 gets a small beam, ef / HNSW_BEAM_DIV
** wide, and all of it enters level 0: a few more distances per query (level
** 1 holds 1/M of the nodes) for several independent starting points. */
static int hnsw_descend(annex_hnsw *g, hnsw_ctx *c, const void *q,
                        hnsw_pair cur, int top, size_t ef,
                        const unsigned char *aAcc, uint64_t nAcc, int bCode,
                        size_t *pnRes) {
  size_t nBeam = ef / HNSW_BEAM_DIV, nEp = 0;
  hnsw_pair aEp[HNSW_BEAM_MAX];
  int rc;
  if (nBeam > HNSW_BEAM_MAX) nBeam = HNSW_BEAM_MAX;
  for (int l = top; l > (nBeam >= 2 ? 1 : 0); l--) {
    rc = hnsw_greedy(g, c, q, &cur, l, 0, bCode);
    if (rc) return rc;
  }
  if (nBeam < 2 || top < 1) {
    return hnsw_search_query(g, c, q, &cur, 1, 0, ef, aAcc, nAcc, bCode,
                             pnRes);
  }
  rc = hnsw_search_query(g, c, q, &cur, 1, 1, nBeam, NULL, 0, bCode, &nEp);
  if (rc) return rc;
  memcpy(aEp, c->aRes, sizeof(hnsw_pair) * nEp);
  return hnsw_search_query(g, c, q, aEp, nEp, 0, ef, aAcc, nAcc, bCode, pnRes);
}

/* How far below its code score a node's exact score can lie, at most
** HNSW_RESCORE_Z standard deviations of the coding error: a value off by e
** (|e| <= step / 2, uniform) moves an l2 score by -2 (q - x) e + e^2, whose
** deviation is at most 2 |q - x| smax / sqrt(12), plus at most sum step^2
** / 4; an ip score by -q.e, at most |q| smax / sqrt(12). */
static float hnsw_code_slack(const annex_hnsw *g, float d, float qNorm) {
  const double z = HNSW_RESCORE_Z / sqrt(12.0);
  if (g->eCode == ANNEX_METRIC_L2) {
    return (float)(z * 2.0 * sqrt(d > 0.0f ? d : 0.0f) * g->rStepMax +
                   g->rStep2 / 4.0);
  }
  return (float)(z * qNorm * g->rStepMax);
}

/* Exact scores for the n nodes a walk over code rows ended with (c->aRes),
** best code score first, their vectors asked for a few ahead; stops once
** k are exact and the next code score, less its slack, lies beyond the
** k-th best exact one. Returns how many are exact (the rest are dropped). */
static size_t hnsw_rescore(annex_hnsw *g, hnsw_ctx *c, const void *q,
                           size_t k, size_t n) {
  const size_t nAhead = 8, nPf = g->nVB < HNSW_PREFETCH_ALL ? g->nVB
                                                            : HNSW_PREFETCH_ALL;
  hnsw_pair *a = c->aRes, *h;
  size_t m = 0, nH = 0;
  float qNorm = 0.0f;
  if (hnsw_grow((void **)&c->aScr, &c->nScrCap, k + 1, sizeof(hnsw_pair))) {
    k = n; /* no room for the heap: score them all */
  }
  h = c->aScr;
  if (g->eCode == ANNEX_METRIC_IP) {
    const float *v = (const float *)q;
    double s2 = 0.0;
    for (size_t i = 0; i < g->p.nDim; i++) s2 += (double)v[i] * v[i];
    qNorm = (float)sqrt(s2);
  }
  hnsw_sort(g, a, n);
  for (size_t i = 0; i < n && i < nAhead; i++) {
    hnsw_prefetch(hnsw_vec(g, a[i].id), 0, nPf);
  }
  for (; m < n; m++) {
    if (nH == k && k < n &&
        a[m].d - hnsw_code_slack(g, a[m].d, qNorm) > h[0].d) {
      break;
    }
    if (m + nAhead < n) hnsw_prefetch(hnsw_vec(g, a[m + nAhead].id), 0, nPf);
    a[m].d = hnsw_dist(g, q, hnsw_vec(g, a[m].id));
    if (k < n) {
      if (nH < k) hnsw_maxheap_push(h, &nH, a[m]);
      else if (a[m].d < h[0].d) hnsw_maxheap_replace(h, nH, a[m]);
    }
  }
  return m;
}

int annex_hnsw_search(annex_hnsw *g, const void *pQuery, size_t k, size_t ef,
                      const unsigned char *aAccept, uint64_t nAcceptBits,
                      annex_hit *aOut, size_t *pnOut) {
  hnsw_ctx *c = &g->ctx0;
  hnsw_pair cur;
  size_t nRes = 0;
  uint32_t e = 0;
  int top, rc, bCode;
  *pnOut = 0;
  if (k == 0) return ANNEX_HNSW_OK;
  rc = hnsw_entry(g, &e, &top);
  if (rc == ANNEX_HNSW_ABSENT) return ANNEX_HNSW_OK; /* nothing reachable */
  if (rc || top < 0) return rc;
  if (ef < k) ef = k;
  bCode = hnsw_codes_ready(g);
  hnsw_prepare(g, pQuery, c->aQ);
  cur.id = e;
  if (bCode) {
    annex_code_query(g->eCode, (const float *)c->aQ, g->aLo, g->aStep,
                     g->p.nDim, c->aQC);
    cur.d = hnsw_code_dist(g, c->aQC, e);
  } else {
    cur.d = hnsw_dist(g, c->aQ, hnsw_vec(g, e));
  }
  rc = hnsw_descend(g, c, bCode ? c->aQC : c->aQ, cur, top, ef, aAccept,
                    nAcceptBits, bCode, &nRes);
  if (rc) return rc;
  if (bCode) nRes = hnsw_rescore(g, c, c->aQ, k, nRes);
  hnsw_sort(g, c->aRes, nRes);
  if (nRes > k) nRes = k;
  for (size_t i = 0; i < nRes; i++) {
    aOut[i].score = hnsw_score_out(g, c->aRes[i].d);
    aOut[i].rowid = hnsw_id(g, c->aRes[i].id);
  }
  *pnOut = nRes;
  return ANNEX_HNSW_OK;
}

/* ------------------------------------------------------------ insertion */

/* Algorithm 4 (no extension, no kept pruned links): from a, sorted by
** distance to the base, keep those closer to the base than to any kept. */
static uint32_t hnsw_heuristic(const annex_hnsw *g, const hnsw_pair *a,
                               size_t n, uint32_t m, uint32_t *out) {
  uint32_t r = 0;
  if (n < m) {
    for (size_t i = 0; i < n; i++) out[i] = a[i].id;
    return (uint32_t)n;
  }
  for (size_t i = 0; i < n && r < m; i++) {
    const unsigned char *v = hnsw_vec(g, a[i].id);
    int bKeep = 1;
    for (uint32_t j = 0; j < r; j++) {
      if (hnsw_dist(g, v, hnsw_vec(g, out[j])) < a[i].d) {
        bKeep = 0;
        break;
      }
    }
    if (bKeep) out[r++] = a[i].id;
  }
  return r;
}

/* Phase A of insertion: search every level from the entry point and plan
** id's links in c->aSel (M per level). Changes nothing but lazy loads. */
static int hnsw_plan(annex_hnsw *g, hnsw_ctx *c, uint32_t id, const void *q,
                     int L, uint32_t e, int top, int bPar) {
  hnsw_pair cur;
  int rc;
  cur.id = e;
  cur.d = hnsw_dist(g, q, hnsw_vec(g, e));
  for (int l = 0; l <= ANNEX_HNSW_MAX_LEVEL; l++) c->anSel[l] = 0;
  for (int l = top; l > L; l--) {
    rc = hnsw_greedy(g, c, q, &cur, l, bPar, 0);
    if (rc) return rc;
  }
  for (int l = (L < top ? L : top); l >= 0; l--) {
    size_t n = 0, w = 0;
    rc = hnsw_search_any(g, c, q, cur, l, (size_t)g->p.efConstruction, bPar,
                         &n);
    if (rc) return rc;
    hnsw_sort(g, c->aRes, n);
    for (size_t i = 0; i < n; i++) { /* a re-linked node is not its own */
      if (c->aRes[i].id != id) c->aRes[w++] = c->aRes[i];
    }
    if (w > 0) cur = c->aRes[0];
    c->anSel[l] = (int)hnsw_heuristic(g, c->aRes, w, g->nM,
                                      c->aSel + (size_t)l * g->nM);
  }
  return ANNEX_HNSW_OK;
}

/* Mark the record of the node at position p changed (the bitmap is by
** id: the caller writes records back by id). */
static inline void hnsw_mark_dirty(annex_hnsw *g, uint32_t p, int bPar) {
  uint32_t id = hnsw_id(g, p);
  if (bPar) {
    hnsw_set_bit_atomic(g->aDirty, id);
  } else {
    g->aDirty[id >> 3] |= (unsigned char)(1u << (id & 7));
  }
}

/* Add x to n's list at lev, shrinking it with the heuristic when full.
** Never allocates. */
static void hnsw_add_link(annex_hnsw *g, hnsw_ctx *c, uint32_t n, uint32_t x,
                          int lev, int bPar) {
  uint32_t *list, cnt, mx = lev ? g->nM : g->nM0;
  if (g->aLevel[n] < lev) return;
  if (bPar) hnsw_lock(&g->aLock[n]);
  list = hnsw_list(g, n, lev);
  cnt = list[0];
  for (uint32_t j = 1; j <= cnt; j++) {
    if (list[j] == x) goto done;
  }
  if (cnt < mx) {
    list[++list[0]] = x;
  } else {
    const unsigned char *v = hnsw_vec(g, n);
    hnsw_pair *a = c->aScr;
    for (uint32_t j = 0; j < cnt; j++) {
      a[j].id = list[j + 1];
      a[j].d = hnsw_dist(g, v, hnsw_vec(g, a[j].id));
    }
    a[cnt].id = x;
    a[cnt].d = hnsw_dist(g, v, hnsw_vec(g, x));
    hnsw_sort(g, a, cnt + 1);
    list[0] = hnsw_heuristic(g, a, cnt + 1, mx, list + 1);
  }
  hnsw_mark_dirty(g, n, bPar);
done:
  if (bPar) hnsw_unlock(&g->aLock[n]);
}

/* Phase B: write id's planned lists, make it live, link back. */
static void hnsw_link(annex_hnsw *g, hnsw_ctx *c, uint32_t id, int L,
                      int top, int bPar) {
  if (bPar) hnsw_lock(&g->aLock[id]);
  for (int l = 0; l <= L; l++) {
    uint32_t *list = hnsw_list(g, id, l);
    uint32_t n = (uint32_t)c->anSel[l];
    list[0] = n;
    memcpy(list + 1, c->aSel + (size_t)l * g->nM, sizeof(uint32_t) * n);
  }
  if (bPar) hnsw_unlock(&g->aLock[id]);
  hnsw_mark_dirty(g, id, bPar);
  __atomic_store_n(&g->aState[id], HNSW_ST_LIVE, __ATOMIC_RELEASE);
  hnsw_set_bit_atomic(g->aLiveBit, id);
  for (int l = 0; l <= L && l <= top; l++) {
    const uint32_t *sel = c->aSel + (size_t)l * g->nM;
    for (int j = 0; j < c->anSel[l]; j++) hnsw_add_link(g, c, sel[j], id, l, bPar);
  }
}

/* Insert id (level L, stored-form vector q, stored at id already in a
** batch). Serial: bPar = 0. Returns with the graph consistent on error. */
static int hnsw_insert_one(annex_hnsw *g, hnsw_ctx *c, uint32_t id,
                           const void *q, int L, int bPar) {
  uint32_t e = 0;
  int top, rc, bHold;
  if (bPar) {
    hnsw_lock(&g->bEntryLock);
    top = g->iEntry < 0 ? -1 : g->nTop;
    if (top >= 0) {
      e = hnsw_pos(g, (uint32_t)g->iEntry);
      if (g->aLevel[e] < top) top = g->aLevel[e];
    }
    bHold = L > top; /* a new top level: hold the entry until linked */
    if (!bHold) hnsw_unlock(&g->bEntryLock);
  } else {
    rc = hnsw_entry(g, &e, &top);
    if (rc) return rc;
    bHold = L > top;
  }
  if (top >= 0) {
    rc = hnsw_plan(g, c, id, q, L, e, top, bPar);
    if (rc) {
      if (bPar && bHold) hnsw_unlock(&g->bEntryLock);
      return rc;
    }
  } else {
    for (int l = 0; l <= ANNEX_HNSW_MAX_LEVEL; l++) c->anSel[l] = 0;
    top = -1;
  }
  if (q != hnsw_vec(g, id)) {
    memcpy(g->aVec + (size_t)id * g->nVB, q, g->nVB);
    hnsw_encode(g, id);
  }
  if (hnsw_state(g, id) != HNSW_ST_LIVE) {
    if (bPar) {
      __atomic_fetch_add(&g->nNode, 1, HNSW_RELAXED);
    } else {
      g->nNode++;
    }
  }
  hnsw_link(g, c, id, L, top, bPar);
  if (bHold) {
    g->iEntry = hnsw_id(g, id);
    g->nTop = L;
    if (bPar) hnsw_unlock(&g->bEntryLock);
  }
  return ANNEX_HNSW_OK;
}

int annex_hnsw_insert(annex_hnsw *g, uint32_t id, const void *pVec) {
  int rc, L, bNew;
  uint32_t p;
  if (id >= HNSW_ID_LIMIT) return ANNEX_HNSW_RANGE;
  rc = annex_hnsw_reserve(g, id + 1);
  if (rc) return rc;
  p = hnsw_pos(g, id);
  if (g->aState[p] == HNSW_ST_NONE && g->bIo) {
    rc = annex_hnsw_load(g, id); /* a stored node keeps its level */
    if (rc && rc != ANNEX_HNSW_ABSENT) return rc;
  }
  bNew = g->aState[p] != HNSW_ST_LIVE;
  if (bNew) {
    L = annex_hnsw_random_level(g, id);
    rc = hnsw_set_levels(g, p, L);
    if (rc) return rc;
  } else {
    L = g->aLevel[p];
  }
  hnsw_prepare(g, pVec, g->ctx0.aQ);
  return hnsw_insert_one(g, &g->ctx0, p, g->ctx0.aQ, L, 0);
}

/* ---------------------------------------------------------------- batch */

/* Per-batch state shared by the team. */
typedef struct hnsw_batch {
  const uint32_t *aPos; /* positions of the nodes to insert */
  size_t n;             /* how many */
  unsigned char *aDone; /* per item: 0 to do, 1 done, 2 duplicate */
  hnsw_ctx *aCtx;       /* contexts of threads 1.. (thread 0: ctx0) */
  size_t iNext;         /* next item to claim (atomic) */
  size_t nDone;         /* items inserted (atomic) */
  int rcStop;           /* first error or progress stop (atomic) */
  int (*xProgress)(void *, size_t, size_t); /* progress callback */
  void *pProgressCtx;   /* its context */
} hnsw_batch;

/* Allocate threads 1..nThread-1's contexts and the lock array. */
static int hnsw_batch_alloc(annex_hnsw *g, hnsw_batch *b, int nThread) {
  b->aCtx = annex_calloc((size_t)nThread, sizeof(hnsw_ctx));
  g->aLock = annex_calloc(g->nCap, 1);
  b->aDone = annex_calloc(b->n, 1);
  if (!b->aCtx || !g->aLock || !b->aDone) return ANNEX_HNSW_NOMEM;
  for (int t = 1; t < nThread; t++) {
    if (hnsw_ctx_init(g, &b->aCtx[t], g->nCap)) return ANNEX_HNSW_NOMEM;
  }
  return ANNEX_HNSW_OK;
}

static void hnsw_batch_release(annex_hnsw *g, hnsw_batch *b, int nThread) {
  if (b->aCtx) {
    for (int t = 1; t < nThread; t++) hnsw_ctx_free(&b->aCtx[t]);
  }
  annex_free(b->aCtx);
  annex_free(b->aDone);
  annex_free(g->aLock);
  g->aLock = NULL;
}

/* Serial preparation: duplicates, upper blocks for new nodes (the only
** step that allocates), then vectors and pending states. */
static int hnsw_batch_prepare(annex_hnsw *g, hnsw_batch *b, const void *aVec) {
  unsigned char *aSeen = g->aLock; /* zeroed, nCap bytes: reused as marks */
  for (size_t i = 0; i < b->n; i++) {
    uint32_t p = b->aPos[i];
    if (aSeen[p]) {
      b->aDone[i] = 2;
      continue;
    }
    aSeen[p] = 1;
    if (aVec && g->aState[p] != HNSW_ST_LIVE) {
      int rc = hnsw_set_levels(g, p, annex_hnsw_random_level(g, hnsw_id(g, p)));
      if (rc) return rc;
    }
  }
  memset(aSeen, 0, g->nCap);
  for (size_t i = 0; i < b->n; i++) {
    uint32_t p = b->aPos[i];
    if (b->aDone[i]) continue;
    if (aVec) {
      hnsw_prepare(g, (const unsigned char *)aVec + i * g->nIn,
                   g->aVec + (size_t)p * g->nVB);
      hnsw_encode(g, p);
      if (g->aState[p] != HNSW_ST_LIVE) hnsw_set_state(g, p, HNSW_ST_PENDNEW);
    } else {
      for (int l = 0; l <= g->aLevel[p]; l++) hnsw_list(g, p, l)[0] = 0;
      hnsw_set_state(g, p, HNSW_ST_PENDOLD);
      g->nNode--;
      if (g->iEntry == (int64_t)hnsw_id(g, p)) g->iEntry = -1, g->nTop = -1;
    }
  }
  return ANNEX_HNSW_OK;
}

/* After the team: items left pending go back to what they were. */
static void hnsw_batch_restore(annex_hnsw *g, hnsw_batch *b) {
  for (size_t i = 0; i < b->n; i++) {
    uint32_t p = b->aPos[i];
    if (b->aDone[i]) continue;
    if (g->aState[p] == HNSW_ST_PENDNEW) {
      hnsw_forget(g, p);
    } else if (g->aState[p] == HNSW_ST_PENDOLD) {
      hnsw_set_state(g, p, HNSW_ST_LIVE); /* in memory, lists empty */
      g->nNode++;
      hnsw_mark_dirty(g, p, 0);
      if (g->iEntry < 0 || g->aLevel[p] > g->nTop) {
        g->iEntry = hnsw_id(g, p);
        g->nTop = g->aLevel[p];
      }
    }
  }
}

/* One thread's share: claim items until none are left or a stop. */
static void hnsw_batch_work(annex_hnsw *g, hnsw_batch *b, hnsw_ctx *c,
                            int bMain, int bPar) {
  size_t nReported = 0;
  for (;;) {
    size_t i;
    uint32_t id;
    int rc;
    if (__atomic_load_n(&b->rcStop, HNSW_RELAXED)) break;
    i = __atomic_fetch_add(&b->iNext, 1, HNSW_RELAXED);
    if (i >= b->n) break;
    if (b->aDone[i] == 2) continue;
    id = b->aPos[i];
    rc = hnsw_insert_one(g, c, id, hnsw_vec(g, id), g->aLevel[id], bPar);
    if (rc == ANNEX_HNSW_OK) {
      b->aDone[i] = 1;
      __atomic_fetch_add(&b->nDone, 1, HNSW_RELAXED);
    } else {
      int zero = 0;
      __atomic_compare_exchange_n(&b->rcStop, &zero, rc, 0, HNSW_RELAXED,
                                  HNSW_RELAXED);
    }
    if (bMain && b->xProgress) {
      size_t nDone = __atomic_load_n(&b->nDone, HNSW_RELAXED);
      if (nDone - nReported >= 256) {
        int zero = 0;
        nReported = nDone;
        rc = b->xProgress(b->pProgressCtx, nDone, b->n);
        if (rc) {
          __atomic_compare_exchange_n(&b->rcStop, &zero, rc, 0, HNSW_RELAXED,
                                      HNSW_RELAXED);
        }
      }
    }
  }
}

int annex_hnsw_insert_batch(annex_hnsw *g, const uint32_t *aId, size_t n,
                            const void *aVec, int nThread,
                            int (*xProgress)(void *, size_t, size_t),
                            void *pProgressCtx) {
  hnsw_batch b;
  uint32_t mx = 0, *aPos = NULL;
  int rc;
  if (n == 0) return ANNEX_HNSW_OK;
  memset(&b, 0, sizeof b);
  b.n = n;
  b.xProgress = xProgress;
  b.pProgressCtx = pProgressCtx;
  for (size_t i = 0; i < n; i++) {
    if (aId[i] >= HNSW_ID_LIMIT) return ANNEX_HNSW_RANGE;
    if (!aVec && !annex_hnsw_has(g, aId[i])) return ANNEX_HNSW_ABSENT;
    if (aId[i] > mx) mx = aId[i];
  }
#ifdef ANNEX_HAVE_OPENMP
  if (nThread < 1) nThread = 1;
  if ((size_t)nThread > n) nThread = n ? (int)n : 1;
#else
  nThread = 1;
#endif
  if (n > 0) {
    uint32_t e;
    int top;
    rc = hnsw_entry(g, &e, &top);
    if (rc) return rc;
  }
  rc = n ? annex_hnsw_reserve(g, mx + 1) : ANNEX_HNSW_OK;
  if (rc == ANNEX_HNSW_OK) {
    aPos = annex_malloc(sizeof(uint32_t) * n);
    if (aPos == NULL) return ANNEX_HNSW_NOMEM;
    for (size_t i = 0; i < n; i++) aPos[i] = hnsw_pos(g, aId[i]);
    b.aPos = aPos;
    rc = hnsw_batch_alloc(g, &b, nThread);
  }
  if (rc == ANNEX_HNSW_OK) rc = hnsw_batch_prepare(g, &b, aVec);
  if (rc) {
    if (g->aLock && b.aDone) hnsw_batch_restore(g, &b);
    hnsw_batch_release(g, &b, nThread);
    annex_free(aPos);
    return rc;
  }
#ifdef ANNEX_HAVE_OPENMP
  if (nThread > 1) {
#pragma omp parallel num_threads(nThread)
    {
      int t = omp_get_thread_num();
      hnsw_batch_work(g, &b, t ? &b.aCtx[t] : &g->ctx0, t == 0, 1);
    }
  } else
#endif
  {
    hnsw_batch_work(g, &b, &g->ctx0, 1, 0);
  }
  hnsw_batch_restore(g, &b);
  hnsw_batch_release(g, &b, nThread);
  annex_free(aPos);
  rc = b.rcStop;
  if (rc == ANNEX_HNSW_OK && xProgress) rc = xProgress(pProgressCtx, b.nDone, n);
  return rc;
}

/* --------------------------------------------------------------- repair */

/* 1 if the node at position p is not in memory or its id is not in the
** id bitmap aLive. */
static inline int hnsw_dead(const annex_hnsw *g, const unsigned char *aLive,
                            uint64_t nLive, uint32_t p) {
  uint32_t id = hnsw_id(g, p);
  return g->aState[p] != HNSW_ST_LIVE || id >= nLive || !hnsw_bit(aLive, id);
}

/* Re-link live node v at level lev if its list names a dead node. */
static void hnsw_repair_list(annex_hnsw *g, hnsw_ctx *c, uint32_t v, int lev,
                             const unsigned char *aLive, uint64_t nLive) {
  uint32_t *list = hnsw_list(g, v, lev), cnt = list[0], mx;
  const unsigned char *pv = hnsw_vec(g, v);
  size_t n = 0;
  int bDead = 0;
  for (uint32_t j = 1; j <= cnt && !bDead; j++) {
    bDead = hnsw_dead(g, aLive, nLive, list[j]);
  }
  if (!bDead) return;
  hnsw_ctx_epoch(c);
  c->aTag[v] = c->iEpoch;
  for (uint32_t j = 1; j <= cnt; j++) {
    uint32_t nb = list[j];
    if (!hnsw_dead(g, aLive, nLive, nb)) {
      if (c->aTag[nb] == c->iEpoch) continue;
      c->aTag[nb] = c->iEpoch;
      c->aScr[n].id = nb;
      c->aScr[n++].d = hnsw_dist(g, pv, hnsw_vec(g, nb));
    } else if (g->aState[nb] == HNSW_ST_LIVE && g->aLevel[nb] >= lev) {
      const uint32_t *l2 = hnsw_list(g, nb, lev);
      for (uint32_t i = 1; i <= l2[0]; i++) {
        uint32_t x = l2[i];
        if (hnsw_dead(g, aLive, nLive, x) || c->aTag[x] == c->iEpoch) continue;
        c->aTag[x] = c->iEpoch;
        c->aScr[n].id = x;
        c->aScr[n++].d = hnsw_dist(g, pv, hnsw_vec(g, x));
      }
    }
  }
  hnsw_sort(g, c->aScr, n);
  mx = lev ? g->nM : g->nM0;
  list[0] = hnsw_heuristic(g, c->aScr, n, mx, list + 1);
  hnsw_set_bit_atomic(g->aDirty, hnsw_id(g, v));
}

/* A new entry point when the old one died: the highest live node. */
static void hnsw_repair_entry(annex_hnsw *g) {
  int64_t best = -1;
  int top = -1;
  if (g->iEntry >= 0 && (uint64_t)g->iEntry < g->nCap &&
      g->aState[hnsw_pos(g, (uint32_t)g->iEntry)] == HNSW_ST_LIVE) {
    return;
  }
  for (uint32_t i = 0; i < g->nCap; i++) { /* ties: the smallest id */
    if (g->aState[i] == HNSW_ST_LIVE &&
        ((int)g->aLevel[i] > top ||
         ((int)g->aLevel[i] == top && hnsw_id(g, i) < best))) {
      top = g->aLevel[i];
      best = hnsw_id(g, i);
    }
  }
  g->iEntry = best;
  g->nTop = top;
}

int annex_hnsw_repair(annex_hnsw *g, const unsigned char *aLive,
                      uint64_t nLiveBits, int nThread) {
  hnsw_ctx *aCtx;
  size_t nScr = (size_t)g->nM0 * (1 + g->nM0) + 1;
  int rc = ANNEX_HNSW_OK;
#ifdef ANNEX_HAVE_OPENMP
  if (nThread < 1) nThread = 1;
#else
  nThread = 1;
#endif
  if (g->nCap == 0) return ANNEX_HNSW_OK;
  aCtx = annex_calloc((size_t)nThread, sizeof(hnsw_ctx));
  if (aCtx == NULL) return ANNEX_HNSW_NOMEM;
  for (int t = 1; t < nThread && rc == ANNEX_HNSW_OK; t++) {
    rc = hnsw_ctx_init(g, &aCtx[t], g->nCap);
  }
  for (int t = 0; t < nThread && rc == ANNEX_HNSW_OK; t++) {
    hnsw_ctx *c = t ? &aCtx[t] : &g->ctx0;
    rc = hnsw_grow((void **)&c->aScr, &c->nScrCap, nScr, sizeof(hnsw_pair));
  }
  if (rc == ANNEX_HNSW_OK) {
    /* Phase 1: each live node rewrites only its own lists and reads only
    ** dead nodes' lists, which nobody writes: no locks. */
    long long nCap = g->nCap;
#ifdef ANNEX_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 256) num_threads(nThread) if (nThread > 1)
#endif
    for (long long i = 0; i < nCap; i++) {
      uint32_t v = (uint32_t)i;
      int t = 0;
#ifdef ANNEX_HAVE_OPENMP
      t = omp_get_thread_num();
#endif
      if (hnsw_dead(g, aLive, nLiveBits, v)) continue;
      for (int l = 0; l <= g->aLevel[v]; l++) {
        hnsw_repair_list(g, t ? &aCtx[t] : &g->ctx0, v, l, aLive, nLiveBits);
      }
    }
    /* Phase 2: forget the dead. */
    for (uint32_t i = 0; i < g->nCap; i++) {
      uint32_t id = hnsw_id(g, i);
      if (g->aState[i] != HNSW_ST_LIVE || !hnsw_dead(g, aLive, nLiveBits, i)) {
        continue;
      }
      hnsw_forget(g, i);
      g->aRemoved[id >> 3] |= (unsigned char)(1u << (id & 7));
    }
    hnsw_repair_entry(g);
  }
  for (int t = 1; t < nThread; t++) hnsw_ctx_free(&aCtx[t]);
  annex_free(aCtx);
  return rc;
}

/* -------------------------------------------------------------- layout */

/* Move element i of the array a (n elements of sz bytes) to aNew[i], in
** place, cycle by cycle; aDone (n bits) and t0, t1 (sz bytes each) are
** scratch. */
static void hnsw_permute(void *a, size_t sz, const uint32_t *aNew, uint32_t n,
                         unsigned char *aDone, unsigned char *t0,
                         unsigned char *t1) {
  unsigned char *z = a;
  memset(aDone, 0, ((size_t)n + 7) / 8);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t j = i;
    if (hnsw_bit(aDone, i) || aNew[i] == i) continue;
    memcpy(t0, z + (size_t)i * sz, sz); /* carried: goes to aNew[j] */
    do {
      uint32_t k = aNew[j];
      unsigned char *t = t0;
      memcpy(t1, z + (size_t)k * sz, sz);
      memcpy(z + (size_t)k * sz, t0, sz);
      t0 = t1;
      t1 = t;
      aDone[k >> 3] |= (unsigned char)(1u << (k & 7));
      j = k;
    } while (j != i);
  }
}

/* The new position of every position: breadth-first over level 0 from the
** entry point (then from each live node not reached yet), nodes not in
** memory last, in their old order. aOrder and aSeen are scratch. */
static void hnsw_layout_order(const annex_hnsw *g, uint32_t *aNew,
                              uint32_t *aOrder, unsigned char *aSeen) {
  const uint32_t n = g->nCap;
  size_t nOrd = 0, iHead = 0;
  uint32_t iRoot = 0;
  memset(aSeen, 0, ((size_t)n + 7) / 8);
  if (g->iEntry >= 0 && (uint64_t)g->iEntry < n) {
    uint32_t e = hnsw_pos(g, (uint32_t)g->iEntry);
    if (g->aState[e] == HNSW_ST_LIVE) {
      aSeen[e >> 3] |= (unsigned char)(1u << (e & 7));
      aOrder[nOrd++] = e;
    }
  }
  for (;;) {
    while (iHead < nOrd) {
      const uint32_t *list = hnsw_list(g, aOrder[iHead++], 0);
      for (uint32_t j = 1; j <= list[0]; j++) {
        uint32_t x = list[j];
        if (hnsw_bit(aSeen, x) || g->aState[x] != HNSW_ST_LIVE) continue;
        aSeen[x >> 3] |= (unsigned char)(1u << (x & 7));
        aOrder[nOrd++] = x;
      }
    }
    while (iRoot < n && (hnsw_bit(aSeen, iRoot) ||
                         g->aState[iRoot] != HNSW_ST_LIVE)) {
      iRoot++;
    }
    if (iRoot == n) break;
    aSeen[iRoot >> 3] |= (unsigned char)(1u << (iRoot & 7));
    aOrder[nOrd++] = iRoot;
  }
  for (uint32_t i = 0; i < n; i++) {
    if (!hnsw_bit(aSeen, i)) aOrder[nOrd++] = i;
  }
  for (uint32_t k = 0; k < n; k++) aNew[aOrder[k]] = k;
}

int annex_hnsw_reorder(annex_hnsw *g) {
  const uint32_t n = g->nCap;
  size_t nRow = g->nVB, nL0 = g->nS0 * sizeof(uint32_t);
  uint32_t *aNew, *aOrder;
  unsigned char *aBits, *t0, *t1;
  if (n == 0) return ANNEX_HNSW_OK;
  if (nRow < nL0) nRow = nL0;
  if (nRow < g->nCB) nRow = g->nCB;
  if (nRow < sizeof(uint32_t *)) nRow = sizeof(uint32_t *);
  aNew = annex_malloc(sizeof(uint32_t) * n);
  aOrder = annex_malloc(sizeof(uint32_t) * n);
  aBits = annex_malloc(((size_t)n + 7) / 8);
  t0 = annex_malloc(2 * nRow);
  if (!aNew || !aOrder || !aBits || !t0) {
    annex_free(aNew);
    annex_free(aOrder);
    annex_free(aBits);
    annex_free(t0);
    return ANNEX_HNSW_NOMEM;
  }
  t1 = t0 + nRow;
  hnsw_layout_order(g, aNew, aOrder, aBits);
  annex_free(aOrder);
  hnsw_permute(g->aState, 1, aNew, n, aBits, t0, t1);
  hnsw_permute(g->aLevel, 1, aNew, n, aBits, t0, t1);
  hnsw_permute(g->aL0, nL0, aNew, n, aBits, t0, t1);
  hnsw_permute(g->apUp, sizeof(uint32_t *), aNew, n, aBits, t0, t1);
  hnsw_permute(g->aVec, g->nVB, aNew, n, aBits, t0, t1);
  if (g->nCB) hnsw_permute(g->aCode, g->nCB, aNew, n, aBits, t0, t1);
  hnsw_permute(g->aIdOf, sizeof(uint32_t), aNew, n, aBits, t0, t1);
  for (uint32_t id = 0; id < n; id++) g->aPosOf[id] = aNew[g->aPosOf[id]];
  memset(g->aLiveBit, 0, ((size_t)n + 7) / 8);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t *list = hnsw_list(g, i, 0);
    for (uint32_t j = 1; j <= list[0]; j++) list[j] = aNew[list[j]];
    for (int l = 1; g->apUp[i] && l <= g->aLevel[i]; l++) {
      list = hnsw_list(g, i, l);
      for (uint32_t j = 1; j <= list[0]; j++) list[j] = aNew[list[j]];
    }
    if (g->aState[i] == HNSW_ST_LIVE) {
      g->aLiveBit[i >> 3] |= (unsigned char)(1u << (i & 7));
    }
  }
  /* Tags were by the old positions: start from clean ones. */
  if (g->ctx0.aTag) memset(g->ctx0.aTag, 0, sizeof(hnsw_tag) * g->ctx0.nTag);
  g->ctx0.iEpoch = 0;
  annex_free(aNew);
  annex_free(aBits);
  annex_free(t0);
  return ANNEX_HNSW_OK;
}

/* ------------------------------------------------------- dirty/removed */

static int hnsw_next_bit(const unsigned char *a, uint32_t nCap, uint32_t i,
                         uint32_t *pId) {
  while (i < nCap) {
    if ((i & 7) == 0 && a[i >> 3] == 0) {
      i += 8;
      continue;
    }
    if (hnsw_bit(a, i)) {
      *pId = i;
      return 1;
    }
    i++;
  }
  return 0;
}

int annex_hnsw_next_dirty(const annex_hnsw *g, uint32_t iFrom, uint32_t *pId) {
  return hnsw_next_bit(g->aDirty, g->nCap, iFrom, pId);
}

int annex_hnsw_next_removed(const annex_hnsw *g, uint32_t iFrom,
                            uint32_t *pId) {
  return hnsw_next_bit(g->aRemoved, g->nCap, iFrom, pId);
}

void annex_hnsw_clear_dirty(annex_hnsw *g) {
  if (g->nCap == 0) return;
  memset(g->aDirty, 0, ((size_t)g->nCap + 7) / 8);
  memset(g->aRemoved, 0, ((size_t)g->nCap + 7) / 8);
}
