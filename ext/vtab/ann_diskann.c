/*
** ann_diskann.c — index=diskann: a Vamana graph (ext/index/vamana.c) whose
** nodes live in the SQLite file, searched on PQ codes held in memory with
** a bounded cache of node records (issue 10).
**
**   index=diskann                defaults
**   index=diskann(r=64, l_build=100, alpha=1.2, pq_bytes=32, cache_mb=64,
**                 search_list=100)
**   ... WHERE embedding MATCH ?1 AND k = 10 AND search_list = 200
**   INSERT INTO t(t) VALUES('rebuild')    -- retrain PQ, build anew
**   INSERT INTO t(t) VALUES('optimize')   -- consolidate deletes
**
** float vectors only; metric l2 or cosine.
**
** Database format (adds to storage.c's; diskann format version 1) for
** table T, all integers little-endian:
**
**   T_diskann(id INTEGER PRIMARY KEY, node BLOB NOT NULL)
**       one row per graph node; id is the global slot of its row. node is
**         u32 n             out-degree, 0..r
**         f32 x dims        the full vector (as stored, not normalised)
**         u32 x n           out-neighbours (slots; each has a node)
**       so one hop of a search is one record read. A deleted row's node
**       stays as a tombstone (searches pass through it, never return it)
**       until 'optimize' repairs the lists that name it and drops it.
**   T_diskannpq(id INTEGER PRIMARY KEY, data BLOB NOT NULL)
**       id -1: the PQ codebook, pq.h's layout (m x 256 x dims/m f32)
**       id b >= 0: the codes of slots [1024 b, 1024 b + 1024):
**         1024 bits (128 bytes): slot has a node in T_diskann
**         1024 x m bytes: each slot's code (zero without a node)
**   T_config keys
**       diskann_format   1
**       diskann_entry    slot of the entry point (the medoid), -1: none
**       diskann_pq       m, code bytes (the largest divisor of dims that
**                        is <= pq_bytes)
**       diskann_trained  rows the codebook was trained on (0: untrained)
**   For cosine the codes are of the normalised vectors (l2 tables on the
**   normalised query order like cosine); graph and re-rank use the exact
**   cosine kernel on the stored vectors.
**
** Memory (what annex_info's memory_index counts): the codes (m bytes per
** slot), a node bit and a live bit and a rowid per slot, the codebook, and
** the node cache: a direct-mapped array of at most cache_mb MiB of node
** records (slots are touched only as they fill), with hits and misses in
** annex_info. Nothing else per vector. SQLite's own page cache comes on
** top and follows PRAGMA cache_size (and mmap_size) as set by the user:
** annex changes neither; a cold query costs one B-tree lookup per hop.
**
** Writes: rows a transaction writes are buffered and linked in xSync. When
** there is no trained codebook, when the buffer is more than half the
** nodes, or when the table has grown 4x past the rows the codebook saw,
** xSync trains PQ and builds the whole graph in memory, in parallel (the
** vectors come from T_chunks), with progress in annex_info; otherwise each
** row is inserted FreshDiskANN-style (walk, robust prune, back-edges),
** reading nodes through the cache. Deletes leave tombstones. Validity of
** the memory and rollback follow ann_hnsw.c: everything is dropped on a
** rollback that touched the index and reloaded lazily.
*/
#include "ann.h"
#include "../index/alloc.h"
#include "../index/flat.h"
#include "../index/pq.h"
#include "../index/vamana.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#define DISKANN_FORMAT 1
#define DISKANN_DEFAULT_R 64
#define DISKANN_DEFAULT_L 100
#define DISKANN_DEFAULT_ALPHA 1.2
#define DISKANN_DEFAULT_PQ 32
#define DISKANN_DEFAULT_CACHE_MB 64
#define DISKANN_DEFAULT_SEARCH 100
#define DISKANN_BLOCK 1024          /* slots per code block */
#define DISKANN_BLOCK_BITS 128      /* bytes of node bits per block */
#define DISKANN_TRAIN_CAP 65536     /* PQ training sample cap */
#define DISKANN_IO_ERR 0x10000      /* an io callback failed: see rcIo */

typedef struct diskann_ann {
  annex_ann base;            /* must be first */
  annex_vamana_params prm;   /* graph parameters */
  int nSearch;               /* default search_list */
  int nPqWant;               /* pq_bytes asked for */
  int m;                     /* code bytes in force */
  sqlite3_int64 nCacheMb;    /* cache budget */
  int bCos;                  /* cosine: codes of normalised vectors */
  /* loaded from the file (valid while iChanges matches) */
  int bLoaded;               /* everything below is loaded */
  annex_pq pq;               /* the codebook (aCodebook NULL: none) */
  sqlite3_int64 nTrained;    /* rows the codebook saw */
  sqlite3_int64 iEntry;      /* entry slot, -1: none */
  uint8_t *aCode;            /* m bytes per slot (owned) */
  unsigned char *aNode;      /* bit per slot: has a node (owned) */
  unsigned char *aBlkDirty;  /* byte per block: rewrite at sync (owned) */
  sqlite3_int64 nCap;        /* slots aCode/aNode cover (blocks * 1024) */
  sqlite3_int64 nNodes;      /* set bits of aNode */
  sqlite3_int64 iChanges;    /* change counter the memory matches; -1 */
  unsigned int iDataVersion; /* SQLITE_FCNTL_DATA_VERSION at validation */
  int bTxnOk;                /* validated inside this write transaction */
  int bTxnGraph;             /* this transaction changed the index */
  /* live rows, as ann_hnsw.c */
  unsigned char *aLive;      /* live slots (owned) */
  sqlite3_int64 *aRowid;     /* rowid per slot < nLiveBits (owned) */
  sqlite3_int64 nLiveBits, nLive;
  int bLive;
  /* rows written by this transaction */
  uint32_t *aPend;           /* slots (owned) */
  unsigned char *aPendVec;   /* their vectors (owned) */
  int nPend, nPendAlloc;
  /* aPend[0..nBase) are linked already (a command linked them inside the
  ** transaction): kept until it ends, since a ROLLBACK TO a savepoint
  ** taken before that link undoes it in the file (found by fuzz_ann) */
  int nBase;
  unsigned char *aPendBits;  /* bit per slot: pending (owned) */
  sqlite3_int64 nPendBits;
  int *aSave;                /* nPend, nBase at each savepoint (owned) */
  int nSave;
  /* the node cache: nSlot records of szRec bytes, direct-mapped */
  unsigned char *aCache;     /* (owned; allocated at first use) */
  sqlite3_int64 *aTag;       /* slot id + 1 per cache slot, 0: empty */
  sqlite3_int64 nCacheSlot, nCacheUsed, nHit, nMiss;
  size_t szRec;              /* largest record: 4 + 4 dims + 4 r */
  /* scratch */
  annex_vamana_walk *w;      /* search memory (owned) */
  float *aTab;               /* PQ table, m x 256 (owned) */
  float *aQn;                /* one normalised vector (owned) */
  unsigned char *aRec;       /* a record being read or written (owned) */
  /* optimize: the dead nodes' lists, served by the fetch callback */
  uint32_t *aDeadId;         /* sorted (owned during optimize) */
  uint32_t *aDeadNbr;        /* r + 1 per dead id: count, then list */
  unsigned char *aDeadBits;  /* bit per slot < nCap: dead node */
  size_t nDead;
  int rcIo;                  /* the SQLite code behind DISKANN_IO_ERR */
  sqlite3_stmt *pGet, *pPut, *pDel, *pBlk, *pRange; /* statements (owned) */
} diskann_ann;

static int diskann_rc(int rc) {
  switch (rc) {
    case ANNEX_VAMANA_OK: return SQLITE_OK;
    case ANNEX_VAMANA_NOMEM: return SQLITE_NOMEM;
    case ANNEX_VAMANA_CORRUPT: return SQLITE_CORRUPT_VTAB;
    case ANNEX_VAMANA_STOP: return SQLITE_INTERRUPT;
  }
  return rc; /* an SQLite code from the io callbacks */
}

static int diskann_kmeans_rc(int rc) {
  return rc == ANNEX_KMEANS_OK ? SQLITE_OK
         : rc == ANNEX_KMEANS_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;
}

/* Parameters ************************************************************/

typedef struct diskann_cfg {
  int r, l, pq, cacheMb, search;
  double alpha;
} diskann_cfg;

static int diskann_cfg_read(const annex_config *c, diskann_cfg *g,
                            char **pzErr) {
  int rc;
  g->r = DISKANN_DEFAULT_R;
  g->l = DISKANN_DEFAULT_L;
  g->pq = DISKANN_DEFAULT_PQ;
  g->cacheMb = DISKANN_DEFAULT_CACHE_MB;
  g->search = DISKANN_DEFAULT_SEARCH;
  g->alpha = DISKANN_DEFAULT_ALPHA;
  rc = annex_param_int(c, "r", 4, 256, &g->r, pzErr);
  if (rc == SQLITE_OK) rc = annex_param_int(c, "l_build", 4, 4096, &g->l, pzErr);
  if (rc == SQLITE_OK) rc = annex_param_int(c, "pq_bytes", 1, 4096, &g->pq, pzErr);
  if (rc == SQLITE_OK) {
    rc = annex_param_int(c, "cache_mb", 1, 1 << 20, &g->cacheMb, pzErr);
  }
  if (rc == SQLITE_OK) {
    rc = annex_param_int(c, "search_list", 1, 65536, &g->search, pzErr);
  }
  if (rc == SQLITE_OK) {
    rc = annex_param_double(c, "alpha", 1.0, 4.0, &g->alpha, pzErr);
  }
  return rc;
}

static int diskann_params(const annex_config *c, char **pzErr) {
  static const char *azKey[] = {"r", "l_build", "alpha", "pq_bytes",
                                "cache_mb", "search_list"};
  diskann_cfg g;
  for (int i = 0; i < c->nParam; i++) {
    size_t j = 0;
    while (j < 6 && strcmp(c->aParam[i].zKey, azKey[j]) != 0) j++;
    if (j == 6) {
      *pzErr = sqlite3_mprintf("unknown diskann parameter '%s' (parameters: "
                               "r, l_build, alpha, pq_bytes, cache_mb, "
                               "search_list)", c->aParam[i].zKey);
      return SQLITE_ERROR;
    }
  }
  if (c->eElem != ANNEX_ELEM_FLOAT32 || (c->eMetric != ANNEX_METRIC_L2 &&
                                         c->eMetric != ANNEX_METRIC_COSINE)) {
    *pzErr = sqlite3_mprintf("index=diskann needs a float vector column with "
                             "metric l2 or cosine");
    return SQLITE_ERROR;
  }
  return diskann_cfg_read(c, &g, pzErr);
}

/* The largest divisor of nDim that is <= nWant. */
static int diskann_pq_m(int nDim, int nWant) {
  int m = nWant < nDim ? nWant : nDim;
  while (m > 1 && nDim % m != 0) m--;
  return m < 1 ? 1 : m;
}

static void diskann_params_read(diskann_ann *d, const annex_config *c) {
  char *zErr = NULL;
  diskann_cfg g;
  diskann_cfg_read(c, &g, &zErr); /* checked at parse time */
  sqlite3_free(zErr);
  memset(&d->prm, 0, sizeof(d->prm));
  d->prm.nDim = (size_t)c->nDim;
  d->prm.eMetric = (annex_metric)c->eMetric;
  d->prm.R = g.r;
  d->prm.L = g.l < g.r ? g.r : g.l;
  d->prm.alpha = (float)g.alpha;
  d->prm.seed = 0x6469736b616e6eULL; /* fixed: builds are reproducible */
  d->nSearch = g.search;
  d->nPqWant = g.pq;
  d->m = diskann_pq_m(c->nDim, g.pq);
  d->nCacheMb = g.cacheMb;
  d->bCos = c->eMetric == ANNEX_METRIC_COSINE;
  d->szRec = 4 + 4 * (size_t)c->nDim + 4 * (size_t)g.r;
}

/* Schema ****************************************************************/

static int diskann_exec(annex_table *p, const char *zFmt, ...) {
  va_list ap;
  char *zSql;
  int rc;
  va_start(ap, zFmt);
  zSql = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_exec(p->db, zSql, 0, 0, 0);
  sqlite3_free(zSql);
  return rc;
}

static int diskann_create(annex_table *p, char **pzErr) {
  diskann_cfg g;
  int rc = diskann_exec(p, "CREATE TABLE \"%w\".\"%w_diskann\"(id INTEGER "
                        "PRIMARY KEY, node BLOB NOT NULL);"
                        "CREATE TABLE \"%w\".\"%w_diskannpq\"(id INTEGER "
                        "PRIMARY KEY, data BLOB NOT NULL)", p->zDb, p->zName,
                        p->zDb, p->zName);
  if (rc == SQLITE_OK) rc = diskann_cfg_read(p->pConfig, &g, pzErr);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "diskann_format", DISKANN_FORMAT);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "diskann_entry", -1);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "diskann_trained", 0);
  if (rc == SQLITE_OK) {
    /* the table's pq_bytes (it was the default, and the loader takes m from
    ** here, so pq_bytes had no effect) */
    rc = annex_storage_config_set_int(p, "diskann_pq",
                                      diskann_pq_m(p->pConfig->nDim, g.pq));
  }
  return rc;
}

static int diskann_destroy(annex_table *p) {
  return diskann_exec(p, "DROP TABLE IF EXISTS \"%w\".\"%w_diskann\";"
                      "DROP TABLE IF EXISTS \"%w\".\"%w_diskannpq\"",
                      p->zDb, p->zName, p->zDb, p->zName);
}

static void diskann_finalize(diskann_ann *d) {
  sqlite3_finalize(d->pGet);
  sqlite3_finalize(d->pPut);
  sqlite3_finalize(d->pDel);
  sqlite3_finalize(d->pBlk);
  sqlite3_finalize(d->pRange);
  d->pGet = d->pPut = d->pDel = d->pBlk = d->pRange = NULL;
}

static int diskann_rename(annex_table *p, const char *zNew) {
  if (p->pAnn) diskann_finalize((diskann_ann *)p->pAnn);
  return diskann_exec(p, "ALTER TABLE \"%w\".\"%w_diskann\" RENAME TO "
                      "\"%w_diskann\";ALTER TABLE \"%w\".\"%w_diskannpq\" "
                      "RENAME TO \"%w_diskannpq\"", p->zDb, p->zName, zNew,
                      p->zDb, p->zName, zNew);
}

static const char *const g_azDiskannShadow[] = {"diskann", "diskannpq", NULL};

static int diskann_stmt(diskann_ann *d, sqlite3_stmt **pp, const char *zFmt) {
  annex_table *p = d->base.pTab;
  char *zSql;
  int rc;
  if (*pp) return SQLITE_OK;
  zSql = sqlite3_mprintf(zFmt, p->zDb, p->zName);
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_prepare_v3(p->db, zSql, -1, SQLITE_PREPARE_PERSISTENT, pp, 0);
  sqlite3_free(zSql);
  /* a shadow table is gone (a corrupt schema): keep the reason, or the
  ** statement fails with "not an error" (as ann_hnsw.c's hnsw_stmt) */
  if (rc != SQLITE_OK) annex_set_error(&p->base, "%s", sqlite3_errmsg(p->db));
  return rc;
}

/* Memory state ************************************************************/

static void diskann_cache_clear(diskann_ann *d) {
  if (d->aTag) memset(d->aTag, 0, sizeof(sqlite3_int64) * (size_t)d->nCacheSlot);
  d->nCacheUsed = 0;
}

static void diskann_drop_live(diskann_ann *d) {
  sqlite3_free(d->aLive);
  sqlite3_free(d->aRowid);
  d->aLive = NULL;
  d->aRowid = NULL;
  d->nLiveBits = d->nLive = 0;
  d->bLive = 0;
}

/* Forget everything loaded from the file. */
static void diskann_drop(diskann_ann *d) {
  annex_pq_free(&d->pq);
  memset(&d->pq, 0, sizeof(d->pq));
  sqlite3_free(d->aCode);
  sqlite3_free(d->aNode);
  sqlite3_free(d->aBlkDirty);
  d->aCode = NULL;
  d->aNode = d->aBlkDirty = NULL;
  d->nCap = d->nNodes = d->nTrained = 0;
  d->iEntry = -1;
  d->bLoaded = 0;
  d->iChanges = -1;
  diskann_cache_clear(d);
}

/* Room for slots below n in aCode / aNode / aBlkDirty. */
static int diskann_grow(diskann_ann *d, sqlite3_int64 n) {
  sqlite3_int64 nBlk = (n + DISKANN_BLOCK - 1) / DISKANN_BLOCK;
  sqlite3_int64 nOld = d->nCap / DISKANN_BLOCK;
  uint8_t *aCode;
  unsigned char *aNode, *aDirty;
  if (nBlk <= nOld) return SQLITE_OK;
  if (nBlk < 2 * nOld) nBlk = 2 * nOld;
  aCode = sqlite3_realloc64(d->aCode, (size_t)(nBlk * DISKANN_BLOCK * d->m));
  if (aCode == NULL) return SQLITE_NOMEM;
  d->aCode = aCode;
  aNode = sqlite3_realloc64(d->aNode, (size_t)(nBlk * DISKANN_BLOCK_BITS));
  if (aNode == NULL) return SQLITE_NOMEM;
  d->aNode = aNode;
  aDirty = sqlite3_realloc64(d->aBlkDirty, (size_t)nBlk);
  if (aDirty == NULL) return SQLITE_NOMEM;
  d->aBlkDirty = aDirty;
  memset(aCode + nOld * DISKANN_BLOCK * d->m, 0,
         (size_t)((nBlk - nOld) * DISKANN_BLOCK * d->m));
  memset(aNode + nOld * DISKANN_BLOCK_BITS, 0,
         (size_t)((nBlk - nOld) * DISKANN_BLOCK_BITS));
  memset(aDirty + nOld, 0, (size_t)(nBlk - nOld));
  d->nCap = nBlk * DISKANN_BLOCK;
  return SQLITE_OK;
}

static int diskann_has_node(const diskann_ann *d, sqlite3_int64 id) {
  return id >= 0 && id < d->nCap && annex_bit_get(d->aNode, id);
}

/* Set or clear slot id's node bit; its block is rewritten at sync. */
static int diskann_mark_node(diskann_ann *d, sqlite3_int64 id, int bOn) {
  int rc = diskann_grow(d, id + 1);
  if (rc != SQLITE_OK) return rc;
  if (annex_bit_get(d->aNode, id) != bOn) {
    d->aNode[id >> 3] ^= (unsigned char)(1u << (id & 7));
    d->nNodes += bOn ? 1 : -1;
  }
  if (!bOn) memset(d->aCode + (size_t)id * d->m, 0, (size_t)d->m);
  d->aBlkDirty[id / DISKANN_BLOCK] = 1;
  return SQLITE_OK;
}

/* Loading ****************************************************************/

/* Read one T_diskannpq row into memory: the codebook or a code block. */
static int diskann_load_row(diskann_ann *d, sqlite3_int64 id,
                            const unsigned char *a, size_t n) {
  size_t nBook = sizeof(float) * 256 * d->prm.nDim;
  size_t nBlk = DISKANN_BLOCK_BITS + (size_t)DISKANN_BLOCK * (size_t)d->m;
  int rc;
  if (id == -1) {
    if (n != nBook || d->pq.aCodebook == NULL) return SQLITE_CORRUPT_VTAB;
    memcpy(d->pq.aCodebook, a, n);
    annex_pq_finish(&d->pq); /* pq.h's derived tables */
    return SQLITE_OK;
  }
  if (id < 0 || id > ((sqlite3_int64)1 << 31) / DISKANN_BLOCK || n != nBlk) {
    return SQLITE_CORRUPT_VTAB;
  }
  rc = diskann_grow(d, (id + 1) * DISKANN_BLOCK);
  if (rc != SQLITE_OK) return rc;
  memcpy(d->aNode + id * DISKANN_BLOCK_BITS, a, DISKANN_BLOCK_BITS);
  memcpy(d->aCode + id * DISKANN_BLOCK * d->m, a + DISKANN_BLOCK_BITS,
         (size_t)DISKANN_BLOCK * (size_t)d->m);
  for (int i = 0; i < DISKANN_BLOCK_BITS; i++) {
    d->nNodes += __builtin_popcount(a[i]);
  }
  return SQLITE_OK;
}

/* Load T_config's keys, the codebook and every code block. */
static int diskann_load(diskann_ann *d) {
  annex_table *p = d->base.pTab;
  sqlite3_int64 iFmt = 0, iEntry = -1, nTrained = 0, m = 0;
  sqlite3_stmt *s = NULL;
  char *zSql;
  int rc, bBook = 0;
  if (d->bLoaded) return SQLITE_OK;
  rc = annex_storage_config_int(p, "diskann_format", &iFmt);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "diskann_entry", &iEntry);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "diskann_trained", &nTrained);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "diskann_pq", &m);
  if (rc == SQLITE_OK && (iFmt != DISKANN_FORMAT || iEntry < -1 ||
                          iEntry >= ((sqlite3_int64)1 << 31) || nTrained < 0 ||
                          m < 1 || m > p->pConfig->nDim ||
                          p->pConfig->nDim % m != 0)) {
    rc = SQLITE_CORRUPT_VTAB;
  }
  if (rc != SQLITE_OK) return rc;
  d->m = (int)m;
  d->iEntry = iEntry;
  d->nTrained = nTrained;
  if (nTrained > 0) {
    rc = diskann_kmeans_rc(annex_pq_init(&d->pq, d->prm.nDim, d->m));
  }
  zSql = sqlite3_mprintf("SELECT id, data FROM \"%w\".\"%w_diskannpq\"",
                         p->zDb, p->zName);
  if (zSql == NULL) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(p->db, zSql, -1, &s, 0);
  sqlite3_free(zSql);
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    bBook |= sqlite3_column_int64(s, 0) == -1;
    rc = diskann_load_row(d, sqlite3_column_int64(s, 0),
                          sqlite3_column_blob(s, 1),
                          (size_t)sqlite3_column_bytes(s, 1));
  }
  if (s) {
    int rc2 = sqlite3_finalize(s);
    if (rc == SQLITE_OK) rc = rc2;
  }
  if (rc == SQLITE_OK && ((iEntry >= 0 && !diskann_has_node(d, iEntry)) ||
                          (iEntry < 0 && d->nNodes > 0) ||
                          (d->nNodes > 0 && d->pq.aCodebook == NULL) ||
                          (nTrained > 0 && !bBook))) {
    /* trained without a codebook row: pq_init's zeroed codebook would
    ** have served every search */
    rc = SQLITE_CORRUPT_VTAB;
  }
  if (rc == SQLITE_OK) d->bLoaded = 1;
  else {
    sqlite3_int64 iCh = d->iChanges;
    diskann_drop(d);
    d->iChanges = iCh;
  }
  return rc;
}

/* Make memory agree with the file (as ann_hnsw.c's hnsw_validate). */
static int diskann_validate(diskann_ann *d) {
  annex_table *p = d->base.pTab;
  sqlite3_int64 v;
  unsigned int dv = 0;
  int rc;
  if (d->bTxnOk) return SQLITE_OK;
  if (sqlite3_file_control(p->db, p->zDb, SQLITE_FCNTL_DATA_VERSION, &dv) !=
      SQLITE_OK) {
    dv = d->iDataVersion + 1;
  }
  if (d->iChanges >= 0 && dv == d->iDataVersion && !p->bCounterBumped) {
    return SQLITE_OK;
  }
  rc = annex_storage_config_int(p, "changes", &v);
  if (rc != SQLITE_OK) return rc;
  if (d->iChanges >= 0 &&
      (v == d->iChanges || (p->bCounterBumped && v == d->iChanges + 1))) {
    d->bTxnOk = p->bCounterBumped;
    d->iDataVersion = dv;
    return SQLITE_OK;
  }
  if (d->nPend > d->nBase) return SQLITE_CORRUPT_VTAB; /* cannot happen */
  diskann_drop(d);
  diskann_drop_live(d);
  d->iChanges = p->bCounterBumped ? v - 1 : v;
  d->bTxnOk = p->bCounterBumped;
  d->iDataVersion = dv;
  return SQLITE_OK;
}

/* The live-slot bitmap and rowids, from the chunks. */
static int diskann_load_live(diskann_ann *d) {
  annex_table *p = d->base.pTab;
  const annex_config *c = p->pConfig;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  sqlite3_int64 nSlots;
  int rc;
  if (d->bLive) return SQLITE_OK;
  rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK) {
    d->nLiveBits = (nSlots + 7) / 8 * 8 + 64;
    d->aLive = sqlite3_malloc64((size_t)d->nLiveBits / 8);
    d->aRowid = sqlite3_malloc64(sizeof(sqlite3_int64) * (size_t)d->nLiveBits);
    if (d->aLive == NULL || d->aRowid == NULL) rc = SQLITE_NOMEM;
    else memset(d->aLive, 0, (size_t)d->nLiveBits / 8);
  }
  d->nLive = 0;
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK && (rc = annex_chunk_iter_next(it, &ch)) == SQLITE_ROW) {
    sqlite3_int64 i0 = ch.iChunk * c->nChunk;
    rc = SQLITE_OK;
    if (i0 + ch.nSlot > nSlots) {
      rc = SQLITE_CORRUPT_VTAB;
      break;
    }
    for (int i = 0; i < ch.nSlot; i++) {
      d->aRowid[i0 + i] = ch.aRowid[i];
      if (annex_bit_get(ch.aValid, i)) {
        d->aLive[(i0 + i) >> 3] |= (unsigned char)(1u << ((i0 + i) & 7));
        d->nLive++;
      }
    }
  }
  annex_chunk_iter_close(it);
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc == SQLITE_OK) d->bLive = 1;
  else diskann_drop_live(d);
  return rc;
}

static int diskann_set_live(diskann_ann *d, sqlite3_int64 iSlot, int bOn) {
  if (iSlot >= d->nLiveBits) {
    sqlite3_int64 nNew = ((iSlot + 1) * 2 + 64 + 7) / 8 * 8;
    unsigned char *a = sqlite3_realloc64(d->aLive, (size_t)nNew / 8);
    sqlite3_int64 *r;
    if (a == NULL) return SQLITE_NOMEM;
    memset(a + d->nLiveBits / 8, 0, (size_t)(nNew - d->nLiveBits) / 8);
    d->aLive = a;
    r = sqlite3_realloc64(d->aRowid, sizeof(sqlite3_int64) * (size_t)nNew);
    if (r == NULL) return SQLITE_NOMEM;
    d->aRowid = r;
    d->nLiveBits = nNew;
  }
  if (annex_bit_get(d->aLive, iSlot) != bOn) {
    d->aLive[iSlot >> 3] ^= (unsigned char)(1u << (iSlot & 7));
    d->nLive += bOn ? 1 : -1;
  }
  return SQLITE_OK;
}

static int diskann_ready(diskann_ann *d) {
  int rc = diskann_validate(d);
  if (rc == SQLITE_OK) rc = diskann_load(d);
  if (rc == SQLITE_OK) rc = diskann_load_live(d);
  return rc;
}

/* The node cache and the io ***********************************************/

static int diskann_cache_init(diskann_ann *d) {
  sqlite3_int64 n;
  if (d->aCache) return SQLITE_OK;
  n = d->nCacheMb * 1048576 / (sqlite3_int64)(d->szRec + 8);
  if (n < 16) n = 16;
  d->aTag = sqlite3_malloc64(sizeof(sqlite3_int64) * (size_t)n);
  d->aCache = sqlite3_malloc64(d->szRec * (size_t)n);
  if (d->aTag == NULL || d->aCache == NULL) {
    sqlite3_free(d->aTag);
    sqlite3_free(d->aCache);
    d->aTag = NULL;
    d->aCache = NULL;
    return SQLITE_NOMEM;
  }
  d->nCacheSlot = n;
  diskann_cache_clear(d);
  return SQLITE_OK;
}

static sqlite3_int64 diskann_cache_slot(const diskann_ann *d, uint32_t id) {
  uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
  return (sqlite3_int64)((h >> 17) % (uint64_t)d->nCacheSlot);
}

/* Point *pNode into a record of n bytes (checked). */
static int diskann_parse(const diskann_ann *d, const unsigned char *a,
                         size_t n, annex_vamana_node *pNode) {
  uint32_t nNbr;
  if (n < 4) return SQLITE_CORRUPT_VTAB;
  memcpy(&nNbr, a, 4);
  if (nNbr > (uint32_t)d->prm.R ||
      n != 4 + 4 * d->prm.nDim + 4 * (size_t)nNbr) {
    return SQLITE_CORRUPT_VTAB;
  }
  pNode->pVec = (const float *)(a + 4);
  pNode->aNbr = (const uint32_t *)(a + 4 + 4 * d->prm.nDim);
  pNode->nNbr = (int)nNbr;
  for (uint32_t i = 0; i < nNbr; i++) {
    if (!diskann_has_node(d, pNode->aNbr[i])) return SQLITE_CORRUPT_VTAB;
  }
  return SQLITE_OK;
}

/* The dead node id's list during 'optimize', or NULL. */
static const uint32_t *diskann_dead_list(const diskann_ann *d, uint32_t id) {
  size_t lo = 0, hi = d->nDead;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (d->aDeadId[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  if (lo < d->nDead && d->aDeadId[lo] == id) {
    return d->aDeadNbr + (size_t)(d->prm.R + 1) * lo;
  }
  return NULL;
}

static int diskann_io_fetch(void *pCtx, uint32_t id, annex_vamana_node *pNode) {
  diskann_ann *d = (diskann_ann *)pCtx;
  sqlite3_int64 iSlot;
  unsigned char *pRec;
  size_t n;
  int rc;
  if (d->nDead) {
    const uint32_t *a = diskann_dead_list(d, id);
    if (a) {
      pNode->pVec = d->aQn; /* not read by repair */
      pNode->nNbr = (int)a[0];
      pNode->aNbr = a + 1;
      return SQLITE_OK;
    }
  }
  if (!diskann_has_node(d, id)) return SQLITE_CORRUPT_VTAB;
  rc = diskann_cache_init(d);
  if (rc != SQLITE_OK) return rc;
  iSlot = diskann_cache_slot(d, id);
  pRec = d->aCache + d->szRec * (size_t)iSlot;
  if (d->aTag[iSlot] == (sqlite3_int64)id + 1) {
    uint32_t nNbr;
    d->nHit++;
    memcpy(&nNbr, pRec, 4);
    return diskann_parse(d, pRec, 4 + 4 * d->prm.nDim + 4 * (size_t)nNbr, pNode);
  }
  d->nMiss++;
  rc = diskann_stmt(d, &d->pGet, "SELECT node FROM \"%w\".\"%w_diskann\" "
                    "WHERE id = ?");
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(d->pGet, 1, id);
  if (sqlite3_step(d->pGet) != SQLITE_ROW) {
    rc = sqlite3_reset(d->pGet);
    return rc == SQLITE_OK ? SQLITE_CORRUPT_VTAB : rc;
  }
  n = (size_t)sqlite3_column_bytes(d->pGet, 0);
  if (n > d->szRec) {
    sqlite3_reset(d->pGet);
    return SQLITE_CORRUPT_VTAB;
  }
  if (d->aTag[iSlot] == 0) d->nCacheUsed++;
  d->aTag[iSlot] = 0;
  if (n) memcpy(pRec, sqlite3_column_blob(d->pGet, 0), n);
  rc = sqlite3_reset(d->pGet);
  if (rc == SQLITE_OK) rc = diskann_parse(d, pRec, n, pNode);
  if (rc == SQLITE_OK) d->aTag[iSlot] = (sqlite3_int64)id + 1;
  return rc;
}

/* Write node id's record (and keep the cache in step). */
static int diskann_io_put(void *pCtx, uint32_t id, const float *pVec,
                          const uint32_t *aNbr, int nNbr) {
  diskann_ann *d = (diskann_ann *)pCtx;
  size_t nVec = 4 * d->prm.nDim, n = 4 + nVec + 4 * (size_t)nNbr;
  uint32_t u = (uint32_t)nNbr;
  int rc = diskann_stmt(d, &d->pPut, "INSERT OR REPLACE INTO \"%w\".\"%w_"
                        "diskann\"(id, node) VALUES(?, ?)");
  if (rc != SQLITE_OK) return rc;
  memcpy(d->aRec, &u, 4);
  memmove(d->aRec + 4, pVec, nVec);
  memmove(d->aRec + 4 + nVec, aNbr, 4 * (size_t)nNbr);
  if (d->aTag) { /* the cached copy, if any, is stale now */
    sqlite3_int64 iSlot = diskann_cache_slot(d, id);
    if (d->aTag[iSlot] == (sqlite3_int64)id + 1) {
      memcpy(d->aCache + d->szRec * (size_t)iSlot, d->aRec, n);
    }
  }
  sqlite3_bind_int64(d->pPut, 1, id);
  sqlite3_bind_blob(d->pPut, 2, d->aRec, (int)n, SQLITE_STATIC);
  sqlite3_step(d->pPut);
  return sqlite3_reset(d->pPut);
}

static int diskann_io_approx(void *pCtx, uint32_t id, float *out) {
  diskann_ann *d = (diskann_ann *)pCtx;
  if (!diskann_has_node(d, id)) return SQLITE_CORRUPT_VTAB;
  annex_pq_decode(&d->pq, d->aCode + (size_t)id * d->m, out);
  return SQLITE_OK;
}

/* The io as vamana.c calls it. Its own codes 1..3 are SQLITE_ERROR,
** SQLITE_INTERNAL and SQLITE_PERM too (a dropped T_diskann made a search
** fail with "out of memory"), so an SQLite error is kept in rcIo and
** vamana.c sees DISKANN_IO_ERR; diskann_vrc gives the code back. */
static int diskann_io_err(diskann_ann *d, int rc) {
  if (rc == SQLITE_OK) return SQLITE_OK;
  d->rcIo = rc;
  return DISKANN_IO_ERR;
}

static int diskann_vio_fetch(void *pCtx, uint32_t id, annex_vamana_node *pNode) {
  return diskann_io_err((diskann_ann *)pCtx, diskann_io_fetch(pCtx, id, pNode));
}

static int diskann_vio_put(void *pCtx, uint32_t id, const float *pVec,
                           const uint32_t *aNbr, int nNbr) {
  return diskann_io_err((diskann_ann *)pCtx,
                        diskann_io_put(pCtx, id, pVec, aNbr, nNbr));
}

static int diskann_vio_approx(void *pCtx, uint32_t id, float *out) {
  return diskann_io_err((diskann_ann *)pCtx, diskann_io_approx(pCtx, id, out));
}

static int diskann_vrc(diskann_ann *d, int rc) {
  return rc == DISKANN_IO_ERR ? d->rcIo : diskann_rc(rc);
}

static int diskann_del_record(diskann_ann *d, uint32_t id) {
  int rc = diskann_stmt(d, &d->pDel, "DELETE FROM \"%w\".\"%w_diskann\" "
                        "WHERE id = ?");
  if (rc != SQLITE_OK) return rc;
  if (d->aTag) {
    sqlite3_int64 iSlot = diskann_cache_slot(d, id);
    if (d->aTag[iSlot] == (sqlite3_int64)id + 1) {
      d->aTag[iSlot] = 0;
      d->nCacheUsed--;
    }
  }
  sqlite3_bind_int64(d->pDel, 1, id);
  sqlite3_step(d->pDel);
  return sqlite3_reset(d->pDel);
}

/* Write every dirty code block, and the entry point. */
static int diskann_flush(diskann_ann *d) {
  annex_table *p = d->base.pTab;
  size_t nBlk = DISKANN_BLOCK_BITS + (size_t)DISKANN_BLOCK * (size_t)d->m;
  unsigned char *a = NULL;
  int rc = diskann_stmt(d, &d->pBlk, "INSERT OR REPLACE INTO \"%w\".\"%w_"
                        "diskannpq\"(id, data) VALUES(?, ?)");
  for (sqlite3_int64 b = 0; rc == SQLITE_OK && b < d->nCap / DISKANN_BLOCK; b++) {
    if (!d->aBlkDirty[b]) continue;
    if (a == NULL && (a = sqlite3_malloc64(nBlk)) == NULL) {
      rc = SQLITE_NOMEM;
      break;
    }
    memcpy(a, d->aNode + b * DISKANN_BLOCK_BITS, DISKANN_BLOCK_BITS);
    memcpy(a + DISKANN_BLOCK_BITS, d->aCode + b * DISKANN_BLOCK * d->m,
           (size_t)DISKANN_BLOCK * (size_t)d->m);
    sqlite3_bind_int64(d->pBlk, 1, b);
    sqlite3_bind_blob(d->pBlk, 2, a, (int)nBlk, SQLITE_STATIC);
    sqlite3_step(d->pBlk);
    rc = sqlite3_reset(d->pBlk);
    if (rc == SQLITE_OK) d->aBlkDirty[b] = 0;
  }
  sqlite3_free(a);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "diskann_entry", d->iEntry);
  return rc;
}

/* Store the codebook and the count it was trained on. */
static int diskann_put_codebook(diskann_ann *d) {
  annex_table *p = d->base.pTab;
  int rc = diskann_stmt(d, &d->pBlk, "INSERT OR REPLACE INTO \"%w\".\"%w_"
                        "diskannpq\"(id, data) VALUES(?, ?)");
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(d->pBlk, 1, -1);
    sqlite3_bind_blob(d->pBlk, 2, d->pq.aCodebook,
                      (int)(sizeof(float) * 256 * d->prm.nDim), SQLITE_STATIC);
    sqlite3_step(d->pBlk);
    rc = sqlite3_reset(d->pBlk);
  }
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "diskann_trained", d->nTrained);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "diskann_pq", d->m);
  return rc;
}

/* Code of vector pVec for slot id (normalised first for cosine). */
static void diskann_encode(diskann_ann *d, sqlite3_int64 id, const float *pVec) {
  const float *x = pVec;
  if (d->bCos) {
    double s = 0;
    for (size_t i = 0; i < d->prm.nDim; i++) s += (double)pVec[i] * pVec[i];
    s = s > 0 ? 1.0 / sqrt(s) : 0;
    for (size_t i = 0; i < d->prm.nDim; i++) d->aQn[i] = (float)(pVec[i] * s);
    x = d->aQn;
  }
  annex_pq_encode(&d->pq, x, d->aCode + (size_t)id * d->m);
}

/* Row writes ****************************************************************/

static int diskann_pend_bits_grow(diskann_ann *d, sqlite3_int64 iSlot) {
  sqlite3_int64 nNew = (iSlot + 1) * 2 + 64;
  size_t nOld = (size_t)d->nPendBits / 8, nByte = (size_t)(nNew + 7) / 8;
  unsigned char *a = sqlite3_realloc64(d->aPendBits, nByte);
  if (a == NULL) return SQLITE_NOMEM;
  d->aPendBits = a;
  memset(a + nOld, 0, nByte - nOld);
  d->nPendBits = (sqlite3_int64)nByte * 8;
  return SQLITE_OK;
}

static void diskann_pend_remark(diskann_ann *d) {
  if (d->nPendBits == 0) return;
  memset(d->aPendBits, 0, (size_t)d->nPendBits / 8);
  for (int i = d->nBase; i < d->nPend; i++) {
    d->aPendBits[d->aPend[i] >> 3] |= (unsigned char)(1u << (d->aPend[i] & 7));
  }
}

static int diskann_is_pending(const diskann_ann *d, sqlite3_int64 id) {
  return id < d->nPendBits && annex_bit_get(d->aPendBits, id);
}

static int diskann_pend(diskann_ann *d, sqlite3_int64 iSlot, const void *pVec) {
  size_t szVec = d->base.pTab->pConfig->szVec;
  if (iSlot >= ((sqlite3_int64)1 << 31)) {
    return annex_set_error(&d->base.pTab->base, "diskann: slot %lld is beyond "
                           "the 2^31 nodes a graph can address", iSlot);
  }
  if (d->nPend == d->nPendAlloc) {
    int nNew = d->nPendAlloc ? 2 * d->nPendAlloc : 64;
    uint32_t *a = sqlite3_realloc64(d->aPend, sizeof(uint32_t) * (size_t)nNew);
    unsigned char *v;
    if (a == NULL) return SQLITE_NOMEM;
    d->aPend = a;
    v = sqlite3_realloc64(d->aPendVec, szVec * (size_t)nNew);
    if (v == NULL) return SQLITE_NOMEM;
    d->aPendVec = v;
    d->nPendAlloc = nNew;
  }
  if (iSlot >= d->nPendBits && diskann_pend_bits_grow(d, iSlot) != SQLITE_OK) {
    return SQLITE_NOMEM;
  }
  d->aPendBits[iSlot >> 3] |= (unsigned char)(1u << (iSlot & 7));
  d->aPend[d->nPend] = (uint32_t)iSlot;
  memcpy(d->aPendVec + szVec * (size_t)d->nPend, pVec, szVec);
  d->nPend++;
  return SQLITE_OK;
}

static int diskann_insert(annex_ann *a, sqlite3_int64 iSlot, const void *pVec) {
  diskann_ann *d = (diskann_ann *)a;
  int rc = diskann_ready(d);
  if (rc == SQLITE_OK) rc = diskann_pend(d, iSlot, pVec);
  if (rc == SQLITE_OK) rc = diskann_set_live(d, iSlot, 1);
  return rc;
}

static int diskann_delete(annex_ann *a, sqlite3_int64 iSlot) {
  diskann_ann *d = (diskann_ann *)a;
  int rc = diskann_ready(d);
  /* The node stays as a tombstone until 'optimize'. */
  if (rc == SQLITE_OK) rc = diskann_set_live(d, iSlot, 0);
  return rc;
}

static int diskann_update_vector(annex_ann *a, sqlite3_int64 iSlot,
                                 const void *pVec) {
  diskann_ann *d = (diskann_ann *)a;
  int rc = diskann_ready(d);
  if (rc == SQLITE_OK) rc = diskann_pend(d, iSlot, pVec);
  return rc;
}

static int diskann_set_rowid(annex_ann *a, sqlite3_int64 iSlot,
                             sqlite3_int64 iRowid) {
  diskann_ann *d = (diskann_ann *)a;
  int rc = diskann_ready(d);
  if (rc == SQLITE_OK && iSlot >= d->nLiveBits) rc = SQLITE_CORRUPT_VTAB;
  if (rc == SQLITE_OK) d->aRowid[iSlot] = iRowid;
  return rc;
}

static int diskann_rowids(annex_ann *a, annex_hit *aHit, sqlite3_int64 nHit) {
  diskann_ann *d = (diskann_ann *)a;
  for (sqlite3_int64 i = 0; i < nHit; i++) {
    sqlite3_int64 s = aHit[i].rowid;
    if (s < 0 || s >= d->nLiveBits || !annex_bit_get(d->aLive, s)) {
      return SQLITE_CORRUPT_VTAB;
    }
    aHit[i].rowid = d->aRowid[s];
  }
  return SQLITE_OK;
}

/* The table's vectors (T_chunks has none: see storage.c). Records hold
** live rows' and tombstones' vectors; this transaction's rows not linked
** yet come from the pending buffer, the last write of a slot winning. */
static int diskann_read_vectors(annex_ann *a, sqlite3_int64 iSlot, int n,
                                void *out) {
  diskann_ann *d = (diskann_ann *)a;
  size_t nVec = 4 * d->prm.nDim;
  unsigned char *o = (unsigned char *)out;
  int rc;
  memset(out, 0, nVec * (size_t)n);
  if (n == 1) {
    rc = diskann_stmt(d, &d->pGet, "SELECT node FROM \"%w\".\"%w_diskann\" "
                      "WHERE id = ?");
  } else {
    rc = diskann_stmt(d, &d->pRange, "SELECT id, node FROM \"%w\".\"%w_"
                      "diskann\" WHERE id >= ?1 AND id < ?2");
  }
  if (rc == SQLITE_OK && n == 1) {
    sqlite3_bind_int64(d->pGet, 1, iSlot);
    if (sqlite3_step(d->pGet) == SQLITE_ROW) {
      if ((size_t)sqlite3_column_bytes(d->pGet, 0) < 4 + nVec) rc = SQLITE_CORRUPT_VTAB;
      else memcpy(o, (const unsigned char *)sqlite3_column_blob(d->pGet, 0) + 4, nVec);
    }
    if (rc == SQLITE_OK) rc = sqlite3_reset(d->pGet);
    else sqlite3_reset(d->pGet);
  } else if (rc == SQLITE_OK) {
    sqlite3_bind_int64(d->pRange, 1, iSlot);
    sqlite3_bind_int64(d->pRange, 2, iSlot + n);
    while (rc == SQLITE_OK && sqlite3_step(d->pRange) == SQLITE_ROW) {
      sqlite3_int64 id = sqlite3_column_int64(d->pRange, 0);
      if (id < iSlot || id >= iSlot + n ||
          (size_t)sqlite3_column_bytes(d->pRange, 1) < 4 + nVec) {
        rc = SQLITE_CORRUPT_VTAB;
      } else {
        memcpy(o + nVec * (size_t)(id - iSlot),
               (const unsigned char *)sqlite3_column_blob(d->pRange, 1) + 4, nVec);
      }
    }
    if (rc == SQLITE_OK) rc = sqlite3_reset(d->pRange);
    else sqlite3_reset(d->pRange);
  }
  for (int i = d->nBase; i < d->nPend && rc == SQLITE_OK; i++) {
    sqlite3_int64 id = d->aPend[i];
    if (id >= iSlot && id < iSlot + n) {
      memcpy(o + nVec * (size_t)(id - iSlot), d->aPendVec + nVec * (size_t)i, nVec);
    }
  }
  return rc;
}

/* Transactions **************************************************************/

static void diskann_end_txn(diskann_ann *d) {
  d->bTxnOk = 0;
  d->nPend = d->nBase = 0;
  diskann_pend_remark(d);
  d->nSave = 0;
  d->bTxnGraph = 0;
}

static void diskann_commit(annex_ann *a) { diskann_end_txn((diskann_ann *)a); }

static void diskann_rollback(annex_ann *a) {
  diskann_ann *d = (diskann_ann *)a;
  if (d->bTxnGraph) diskann_drop(d);
  diskann_drop_live(d);
  diskann_end_txn(d);
}

static int diskann_savepoint(annex_ann *a, int iSavepoint) {
  diskann_ann *d = (diskann_ann *)a;
  if (iSavepoint < 0) return SQLITE_OK;
  if (iSavepoint >= d->nSave) {
    int *aNew = sqlite3_realloc64(d->aSave,
                                  2 * sizeof(int) * (size_t)(iSavepoint + 1));
    if (aNew == NULL) return SQLITE_NOMEM;
    for (int i = d->nSave; i < iSavepoint; i++) {
      aNew[2 * i] = d->nPend;
      aNew[2 * i + 1] = d->nBase;
    }
    d->aSave = aNew;
    d->nSave = iSavepoint + 1;
  }
  d->aSave[2 * iSavepoint] = d->nPend;
  d->aSave[2 * iSavepoint + 1] = d->nBase;
  return SQLITE_OK;
}

static void diskann_rollback_to(annex_ann *a, int iSavepoint) {
  diskann_ann *d = (diskann_ann *)a;
  if (iSavepoint < d->nSave) {
    /* -1: the savepoint that began the transaction (found by fuzz_ann: the
    ** rolled-back rows were linked at COMMIT) */
    d->nPend = iSavepoint < 0 ? 0 : d->aSave[2 * iSavepoint];
    d->nBase = iSavepoint < 0 ? 0 : d->aSave[2 * iSavepoint + 1];
    diskann_pend_remark(d);
  }
  if (d->bTxnGraph) {
    /* A sync or command wrote the index; the file may have undone it. */
    sqlite3_int64 iCh = d->iChanges;
    diskann_drop(d);
    d->iChanges = iCh;
  }
  diskann_drop_live(d);
}

/* The whole build ***********************************************************/

static int diskann_progress(void *pCtx, size_t nDone, size_t nTotal) {
  diskann_ann *d = (diskann_ann *)pCtx;
  /* one phase over 3n steps: the graph's two passes, then the writes */
  annex_progress_set(d->base.pTab, "diskann build", (sqlite3_int64)nDone,
                     (sqlite3_int64)nTotal / 2 * 3);
  return 0;
}

/* Every live row's slot and vector, from the chunks. */
static int diskann_read_live(diskann_ann *d, uint32_t **paId, float **paVec,
                             size_t *pn) {
  annex_table *p = d->base.pTab;
  const annex_config *c = p->pConfig;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  size_t n = 0, nMax = (size_t)d->nLive;
  uint32_t *aId = sqlite3_malloc64(sizeof(uint32_t) * (nMax + 1));
  float *aVec = sqlite3_malloc64(c->szVec * (nMax + 1));
  unsigned char *aBuf = sqlite3_malloc64(c->szVec * (size_t)c->nChunk);
  int rc = aId && aVec && aBuf ? SQLITE_OK : SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK && (rc = annex_chunk_iter_next(it, &ch)) == SQLITE_ROW) {
    rc = annex_chunk_iter_vectors(it, 0, ch.nSlot, aBuf);
    for (int i = 0; i < ch.nSlot && rc == SQLITE_OK; i++) {
      if (!annex_bit_get(ch.aValid, i)) continue;
      if (n >= nMax) {
        rc = SQLITE_CORRUPT_VTAB;
        break;
      }
      aId[n] = (uint32_t)(ch.iChunk * c->nChunk + i);
      memcpy((unsigned char *)aVec + c->szVec * n, aBuf + c->szVec * (size_t)i,
             c->szVec);
      n++;
    }
  }
  annex_chunk_iter_close(it);
  sqlite3_free(aBuf);
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc != SQLITE_OK) {
    sqlite3_free(aId);
    sqlite3_free(aVec);
    return rc;
  }
  *paId = aId;
  *paVec = aVec;
  *pn = n;
  return SQLITE_OK;
}

/* Train the codebook on (a sample of) aVec and encode every vector. */
static int diskann_train(diskann_ann *d, const uint32_t *aId,
                         const float *aVec, size_t n) {
  size_t nDim = d->prm.nDim, nS = n < DISKANN_TRAIN_CAP ? n : DISKANN_TRAIN_CAP;
  float *aS = sqlite3_malloc64(sizeof(float) * nDim * (nS + 1));
  annex_kmeans_params kp;
  int rc = aS ? SQLITE_OK : SQLITE_NOMEM;
  annex_pq_free(&d->pq);
  memset(&d->pq, 0, sizeof(d->pq));
  if (rc == SQLITE_OK) rc = diskann_kmeans_rc(annex_pq_init(&d->pq, nDim, d->m));
  /* an evenly spaced sample, normalised for cosine */
  for (size_t i = 0; i < nS && rc == SQLITE_OK; i++) {
    const float *x = aVec + nDim * (i * n / nS);
    double s = 0;
    for (size_t j = 0; j < nDim; j++) s += d->bCos ? (double)x[j] * x[j] : 0;
    s = !d->bCos ? 1.0 : s > 0 ? 1.0 / sqrt(s) : 0;
    for (size_t j = 0; j < nDim; j++) aS[nDim * i + j] = (float)(x[j] * s);
  }
  memset(&kp, 0, sizeof(kp));
  kp.k = 256;
  kp.nIter = 12;
  kp.seed = d->prm.seed;
  kp.nThread = annex_build_threads();
  annex_progress_set(d->base.pTab, "diskann build", 0, 3 * (sqlite3_int64)n);
  if (rc == SQLITE_OK) rc = diskann_kmeans_rc(annex_pq_train(&d->pq, aS, nS, &kp));
  sqlite3_free(aS);
  if (rc == SQLITE_OK && n > 0) rc = diskann_grow(d, (sqlite3_int64)aId[n - 1] + 1);
  for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
    diskann_encode(d, aId[i], aVec + nDim * i);
  }
  if (rc == SQLITE_OK) d->nTrained = (sqlite3_int64)n;
  return rc;
}

/* Drop the index's rows and memory, train, build in memory in parallel,
** write every node and code block. */
static int diskann_build_all(diskann_ann *d) {
  annex_table *p = d->base.pTab;
  uint32_t *aId = NULL;
  float *aVec = NULL;
  annex_vamana *g = NULL;
  size_t n = 0;
  int rc;
  d->bTxnGraph = 1;
  /* the vectors first: T_diskann (and this transaction's rows) hold them */
  rc = diskann_read_live(d, &aId, &aVec, &n);
  if (rc == SQLITE_OK) {
    rc = diskann_exec(p, "DELETE FROM \"%w\".\"%w_diskann\";DELETE FROM "
                      "\"%w\".\"%w_diskannpq\"", p->zDb, p->zName,
                      p->zDb, p->zName);
  }
  diskann_drop(d);
  d->bLoaded = 1; /* empty, and filled below */
  if (rc == SQLITE_OK && n == 0) {
    rc = diskann_flush(d); /* entry -1, untrained */
    if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "diskann_trained", 0);
    sqlite3_free(aId);
    sqlite3_free(aVec);
    return rc;
  }
  if (rc == SQLITE_OK) rc = diskann_train(d, aId, aVec, n);
  if (rc == SQLITE_OK) {
    rc = diskann_rc(annex_vamana_build(&d->prm, aVec, (uint32_t)n,
                                       annex_build_threads(), diskann_progress,
                                       d, &g));
  }
  for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
    int nNbr;
    const uint32_t *a = annex_vamana_neighbours(g, (uint32_t)i, &nNbr);
    uint32_t aNbr[ANNEX_VAMANA_MAX_R];
    for (int j = 0; j < nNbr; j++) aNbr[j] = aId[a[j]];
    rc = diskann_io_put(d, aId[i], aVec + d->prm.nDim * i, aNbr, nNbr);
    if (rc == SQLITE_OK) rc = diskann_mark_node(d, aId[i], 1); /* coded */
    if (rc == SQLITE_OK && (i & 4095) == 0) {
      annex_progress_set(p, "diskann build", 2 * (sqlite3_int64)n + (sqlite3_int64)i,
                         3 * (sqlite3_int64)n);
    }
  }
  if (rc == SQLITE_OK) {
    annex_progress_set(p, "diskann build", 3 * (sqlite3_int64)n, 3 * (sqlite3_int64)n);
  }
  if (rc == SQLITE_OK) d->iEntry = aId[annex_vamana_entry(g)];
  annex_vamana_free(g);
  sqlite3_free(aId);
  sqlite3_free(aVec);
  if (rc == SQLITE_OK) rc = diskann_put_codebook(d);
  if (rc == SQLITE_OK) rc = diskann_flush(d);
  annex_progress_clear(p);
  return rc;
}

/* Linking at commit ********************************************************/

/* Of the slots to link (aPend[nBase..nPend)), the last write of each live
** one, in order, into *paId / *paVec (*pn of them). In place when no
** savepoint was opened in this transaction (nPend drops to nBase + *pn; a
** bulk load must not double its memory); else into new arrays (*pbOwned:
** sqlite3_free them), since a savepoint's ROLLBACK TO needs the buffer as
** it was. */
static int diskann_pending_compact(diskann_ann *d, uint32_t **paId,
                                   unsigned char **paVec, int *pn,
                                   int *pbOwned) {
  size_t szVec = d->base.pTab->pConfig->szVec;
  int nAll = d->nPend - d->nBase, n = 0, bOwn = d->nSave > 0;
  sqlite3_int64 nMax = 0;
  uint32_t *aId = bOwn ? sqlite3_malloc64(sizeof(uint32_t) * (size_t)(nAll + 1))
                       : d->aPend + d->nBase;
  unsigned char *aVec = bOwn ? sqlite3_malloc64(szVec * (size_t)(nAll + 1))
                             : d->aPendVec + szVec * (size_t)d->nBase;
  unsigned char *aSeen;
  for (int i = d->nBase; i < d->nPend; i++) {
    if (d->aPend[i] >= nMax) nMax = (sqlite3_int64)d->aPend[i] + 1;
  }
  aSeen = sqlite3_malloc64((size_t)(nMax + 7) / 8 + 1);
  if (aId == NULL || aVec == NULL || aSeen == NULL) {
    if (bOwn) sqlite3_free(aId);
    if (bOwn) sqlite3_free(aVec);
    sqlite3_free(aSeen);
    return SQLITE_NOMEM;
  }
  memset(aSeen, 0, (size_t)(nMax + 7) / 8 + 1);
  /* Walk backwards so the last vector of a slot wins, filling from the end
  ** (in place, never over an entry not read yet); then move to the front. */
  for (int i = d->nPend - 1; i >= d->nBase; i--) {
    uint32_t id = d->aPend[i];
    if (annex_bit_get(aSeen, id)) continue;
    aSeen[id >> 3] |= (unsigned char)(1u << (id & 7));
    if (id >= d->nLiveBits || !annex_bit_get(d->aLive, id)) continue;
    n++;
    aId[nAll - n] = id;
    memmove(aVec + szVec * (size_t)(nAll - n),
            d->aPendVec + szVec * (size_t)i, szVec);
  }
  memmove(aId, aId + nAll - n, sizeof(uint32_t) * (size_t)n);
  memmove(aVec, aVec + szVec * (size_t)(nAll - n), szVec * (size_t)n);
  sqlite3_free(aSeen);
  if (!bOwn) d->nPend = d->nBase + n;
  *paId = aId;
  *paVec = aVec;
  *pn = n;
  *pbOwned = bOwn;
  return SQLITE_OK;
}

/* Insert one row into the graph through the cache. */
static int diskann_link_one(diskann_ann *d, uint32_t id, const float *pVec) {
  annex_vamana_io io = {d, diskann_vio_fetch, diskann_vio_put, diskann_vio_approx};
  annex_vamana_query q;
  int rc = diskann_grow(d, (sqlite3_int64)id + 1);
  if (rc != SQLITE_OK) return rc;
  diskann_encode(d, id, pVec);
  rc = diskann_mark_node(d, id, 1);
  if (rc != SQLITE_OK) return rc;
  if (d->iEntry < 0 || d->iEntry == id) { /* the first node, or re-linked */
    if (d->iEntry < 0) d->iEntry = id;
    if (d->nNodes == 1) return diskann_io_put(d, id, pVec, NULL, 0);
  }
  memset(&q, 0, sizeof(q));
  q.pQuery = pVec;
  q.aTab = d->aTab;
  q.aCode = d->aCode;
  q.m = d->m;
  q.nId = (uint32_t)(d->nCap > ((sqlite3_int64)1 << 31) ? (1u << 31) : d->nCap);
  q.iEntry = (uint32_t)d->iEntry;
  q.L = (size_t)d->prm.L;
  if (d->bCos) {
    diskann_encode(d, id, pVec); /* leaves the normalised vector in aQn */
    annex_pq_table(&d->pq, d->aQn, 0, d->aTab);
  } else {
    annex_pq_table(&d->pq, pVec, 0, d->aTab);
  }
  if (q.iEntry == id) {
    /* an updated entry point: walk from one of its neighbours instead */
    annex_vamana_node nd;
    rc = diskann_io_fetch(d, id, &nd);
    if (rc != SQLITE_OK) return rc;
    if (nd.nNbr == 0) return diskann_io_put(d, id, pVec, NULL, 0);
    q.iEntry = nd.aNbr[0];
  }
  return diskann_vrc(d, annex_vamana_insert(&d->prm, d->w, &q, &io, id, pVec));
}

/* After a write-back: memory matches the file as this transaction leaves it. */
static int diskann_settle(diskann_ann *d) {
  sqlite3_int64 v;
  int rc = annex_storage_config_int(d->base.pTab, "changes", &v);
  if (rc == SQLITE_OK) d->iChanges = v;
  d->nBase = d->nPend; /* linked; kept for savepoints until the end */
  diskann_pend_remark(d);
  return rc;
}

static int diskann_sync(annex_ann *a) {
  diskann_ann *d = (diskann_ann *)a;
  size_t szVec = d->base.pTab->pConfig->szVec;
  int n = 0, bOwned = 0, rc;
  uint32_t *aId = NULL;
  unsigned char *aVec = NULL;
  if (d->nPend == d->nBase) {
    /* Deletes only: memory already agrees with the file as this
    ** transaction leaves it; take the counter so that no reload follows. */
    return d->bTxnOk ? annex_storage_config_int(d->base.pTab, "changes",
                                                &d->iChanges)
                     : SQLITE_OK;
  }
  rc = diskann_ready(d);
  if (rc == SQLITE_OK) rc = diskann_pending_compact(d, &aId, &aVec, &n, &bOwned);
  d->bTxnGraph = 1; /* from here on a failure leaves memory unlike the file */
  if (rc == SQLITE_OK && n > 0) {
    int bAll = d->nTrained == 0 || (sqlite3_int64)n * 2 > d->nNodes ||
               (d->nTrained < DISKANN_TRAIN_CAP && d->nLive > 4 * d->nTrained);
    if (bAll) {
      rc = diskann_build_all(d);
    } else {
      for (int i = 0; i < n && rc == SQLITE_OK; i++) {
        rc = diskann_link_one(d, aId[i],
                              (const float *)(aVec + szVec * (size_t)i));
      }
      if (rc == SQLITE_OK) rc = diskann_flush(d);
    }
  }
  if (bOwned) {
    sqlite3_free(aId);
    sqlite3_free(aVec);
  }
  if (rc == SQLITE_OK) rc = diskann_settle(d);
  return rc;
}

/* Search ******************************************************************/

/* Score the rows this transaction wrote (not in the graph yet) exactly. */
static void diskann_search_pending(diskann_ann *d, const annex_ann_query *q,
                                   annex_topk *top) {
  annex_table *p = d->base.pTab;
  size_t szVec = p->pConfig->szVec;
  for (int i = d->nPend - 1; i >= d->nBase; i--) {
    uint32_t id = d->aPend[i];
    int bLater = 0;
    for (int j = i + 1; j < d->nPend && !bLater; j++) bLater = d->aPend[j] == id;
    if (bLater) continue; /* a later write of the slot counts */
    if (id >= d->nLiveBits || !annex_bit_get(d->aLive, id)) continue;
    if (q->aAllowed && (id >= q->nAllowedSlots || !annex_bit_get(q->aAllowed, id))) {
      continue;
    }
    annex_topk_push(top, p->xScore(q->pQuery, d->aPendVec + szVec * (size_t)i,
                                   (size_t)p->pConfig->nDim), id);
  }
}

/* The search list: the knob or the default, at least k, widened when a
** filter accepts only part of the rows. */
static size_t diskann_list(diskann_ann *d, const annex_ann_query *q, double rSel) {
  double L = (double)(q->nKnob > 0 ? q->nKnob : d->nSearch);
  if (L < (double)q->k) L = (double)q->k;
  if (rSel < 1.0) L /= rSel > 0.05 ? rSel : 0.05;
  return L > 1e6 ? 1000000 : (size_t)L;
}

/* Merge the pending rows' exact scores into aOut[0..*pn) (k at most). */
static int diskann_merge_pending(diskann_ann *d, const annex_ann_query *q,
                                 annex_hit *aOut, size_t *pn) {
  annex_topk top;
  annex_hit *aHeap = aOut + q->k;
  size_t nKeep = 0;
  for (size_t i = 0; i < *pn; i++) {
    if (!diskann_is_pending(d, aOut[i].rowid)) aOut[nKeep++] = aOut[i];
  }
  annex_topk_init(&top, aHeap, (size_t)q->k);
  for (size_t i = 0; i < nKeep; i++) annex_topk_push(&top, aOut[i].score, aOut[i].rowid);
  diskann_search_pending(d, q, &top);
  annex_topk_sort(&top);
  memmove(aOut, top.a, sizeof(annex_hit) * top.n);
  *pn = top.n;
  return SQLITE_OK;
}

static int diskann_search(annex_ann *a, const annex_ann_query *q,
                          annex_hit **paHit, sqlite3_int64 *pnHit) {
  diskann_ann *d = (diskann_ann *)a;
  annex_vamana_io io = {d, diskann_vio_fetch, diskann_vio_put, diskann_vio_approx};
  annex_vamana_query vq;
  double rSel = 1.0, nAccepted;
  size_t nOut = 0;
  annex_hit *aOut;
  int rc = diskann_ready(d);
  if (rc != SQLITE_OK) return rc;
  if (d->iEntry < 0 || d->pq.aCodebook == NULL) {
    return d->nLive > 0 ? ANNEX_ANN_EXACT : SQLITE_OK;
  }
  nAccepted = (double)d->nLive;
  memset(&vq, 0, sizeof(vq));
  vq.aAccept = d->aLive;
  vq.nAccept = (uint64_t)d->nLiveBits;
  if (q->aAllowed) {
    /* exact beats the walk when the allowed rows are fewer than the codes
    ** a filtered walk would score: about L * R / selectivity */
    double nAllowed = (double)q->nAllowed, nLive = (double)(d->nLive + 1);
    rSel = nAllowed / nLive;
    if (nAllowed * nAllowed < (double)diskann_list(d, q, 1.0) * d->prm.R * nLive) {
      return ANNEX_ANN_EXACT;
    }
    vq.aAccept = q->aAllowed;
    vq.nAccept = (uint64_t)q->nAllowedSlots;
    nAccepted = nAllowed;
  }
  aOut = sqlite3_malloc64(sizeof(annex_hit) * (size_t)(2 * q->k + 1));
  if (aOut == NULL) return SQLITE_NOMEM;
  vq.pQuery = (const float *)q->pQuery;
  vq.aTab = d->aTab;
  vq.aCode = d->aCode;
  vq.m = d->m;
  vq.nId = (uint32_t)(d->nCap > ((sqlite3_int64)1 << 31) ? (1u << 31) : d->nCap);
  vq.iEntry = (uint32_t)d->iEntry;
  vq.L = diskann_list(d, q, rSel);
  if (d->bCos) {
    const float *x = (const float *)q->pQuery;
    double s = 0;
    for (size_t i = 0; i < d->prm.nDim; i++) s += (double)x[i] * x[i];
    s = s > 0 ? 1.0 / sqrt(s) : 0;
    for (size_t i = 0; i < d->prm.nDim; i++) d->aQn[i] = (float)(x[i] * s);
    annex_pq_table(&d->pq, d->aQn, 0, d->aTab);
  } else {
    annex_pq_table(&d->pq, vq.pQuery, 0, d->aTab);
  }
  rc = diskann_vrc(d, annex_vamana_search(&d->prm, d->w, &vq, &io, (size_t)q->k,
                                      aOut, &nOut, NULL));
  if (rc == SQLITE_OK && d->nPend > d->nBase) {
    rc = diskann_merge_pending(d, q, aOut, &nOut);
  }
  if (rc == SQLITE_OK && nOut < (size_t)q->k && (double)nOut < nAccepted) {
    rc = ANNEX_ANN_EXACT; /* the walk could not reach k accepted rows */
  }
  if (rc != SQLITE_OK) {
    sqlite3_free(aOut);
    return rc;
  }
  *paHit = aOut;
  *pnHit = (sqlite3_int64)nOut;
  return SQLITE_OK;
}

/* Commands ******************************************************************/

static int diskann_rebuild(diskann_ann *d) {
  int rc = diskann_ready(d);
  if (rc == SQLITE_OK) rc = annex_storage_bump_counter(d->base.pTab);
  if (rc == SQLITE_OK) rc = diskann_build_all(d);
  if (rc == SQLITE_OK) rc = diskann_settle(d);
  return rc;
}

/* Load the dead nodes' lists (tombstones) for the repair callbacks, and
** the entry point's vector when it is dead (into aQn). */
static int diskann_load_dead(diskann_ann *d) {
  size_t nStride = (size_t)d->prm.R + 1, n = 0;
  for (sqlite3_int64 i = 0; i < d->nCap; i++) {
    if (annex_bit_get(d->aNode, i) && !(i < d->nLiveBits && annex_bit_get(d->aLive, i))) n++;
  }
  if (n == 0) return SQLITE_OK;
  d->aDeadId = sqlite3_malloc64(sizeof(uint32_t) * n);
  d->aDeadNbr = sqlite3_malloc64(sizeof(uint32_t) * nStride * n);
  d->aDeadBits = sqlite3_malloc64((size_t)d->nCap / 8);
  if (d->aDeadId == NULL || d->aDeadNbr == NULL || d->aDeadBits == NULL) {
    return SQLITE_NOMEM;
  }
  memset(d->aDeadBits, 0, (size_t)d->nCap / 8);
  for (sqlite3_int64 i = 0; i < d->nCap; i++) {
    annex_vamana_node nd;
    int rc;
    if (!annex_bit_get(d->aNode, i) || (i < d->nLiveBits && annex_bit_get(d->aLive, i))) {
      continue;
    }
    rc = diskann_io_fetch(d, (uint32_t)i, &nd);
    if (rc != SQLITE_OK) return rc;
    if (i == d->iEntry) memcpy(d->aQn, nd.pVec, 4 * d->prm.nDim);
    d->aDeadBits[i >> 3] |= (unsigned char)(1u << (i & 7));
    d->aDeadId[d->nDead] = (uint32_t)i;
    d->aDeadNbr[nStride * d->nDead] = (uint32_t)nd.nNbr;
    memcpy(d->aDeadNbr + nStride * d->nDead + 1, nd.aNbr, 4 * (size_t)nd.nNbr);
    d->nDead++;
  }
  return SQLITE_OK;
}

static void diskann_free_dead(diskann_ann *d) {
  sqlite3_free(d->aDeadId);
  sqlite3_free(d->aDeadNbr);
  sqlite3_free(d->aDeadBits);
  d->aDeadId = d->aDeadNbr = NULL;
  d->aDeadBits = NULL;
  d->nDead = 0;
}

/* New entry point for a dead one: the live node whose code is nearest the
** old entry's vector (in aQn). */
static void diskann_new_entry(diskann_ann *d) {
  sqlite3_int64 iBest = -1;
  float best = 0;
  annex_pq_table(&d->pq, d->aQn, 0, d->aTab);
  for (sqlite3_int64 i = 0; i < d->nCap; i++) {
    float f;
    if (!annex_bit_get(d->aNode, i) || diskann_dead_list(d, (uint32_t)i)) continue;
    f = annex_pq_adc(d->aTab, d->aCode + (size_t)i * d->m, d->m);
    if (iBest < 0 || f < best) {
      best = f;
      iBest = i;
    }
  }
  d->iEntry = iBest;
}

/* One pass over the live nodes: repair each list that names a dead node;
** the new lists are buffered (ids and lists) and written after the pass. */
static int diskann_repair_all(diskann_ann *d, uint32_t **paId,
                              uint32_t **paNbr, size_t *pn) {
  annex_table *p = d->base.pTab;
  annex_vamana_io io = {d, diskann_vio_fetch, diskann_vio_put, diskann_vio_approx};
  size_t nStride = (size_t)d->prm.R + 1, n = 0, nAlloc = 0;
  uint32_t *aId = NULL, *aNbr = NULL;
  sqlite3_stmt *s = NULL;
  unsigned char *aRow = sqlite3_malloc64(d->szRec); /* aligned copy */
  char *zSql = sqlite3_mprintf("SELECT id, node FROM \"%w\".\"%w_diskann\"",
                               p->zDb, p->zName);
  int rc = zSql && aRow ? sqlite3_prepare_v2(p->db, zSql, -1, &s, 0) : SQLITE_NOMEM;
  sqlite3_free(zSql);
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    annex_vamana_node nd;
    int bAny = 0, nOut = 0;
    if (!diskann_has_node(d, id)) {
      rc = SQLITE_CORRUPT_VTAB;
      break;
    }
    if (diskann_dead_list(d, (uint32_t)id)) continue;
    if ((size_t)sqlite3_column_bytes(s, 1) > d->szRec) {
      rc = SQLITE_CORRUPT_VTAB;
      break;
    }
    /* an empty record's blob is NULL: no memcpy from it (UBSan) */
    if (sqlite3_column_bytes(s, 1) > 0) {
      memcpy(aRow, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1));
    }
    rc = diskann_parse(d, aRow, (size_t)sqlite3_column_bytes(s, 1), &nd);
    for (int j = 0; rc == SQLITE_OK && j < nd.nNbr && !bAny; j++) {
      bAny = diskann_dead_list(d, nd.aNbr[j]) != NULL;
    }
    if (rc != SQLITE_OK || !bAny) continue;
    if (n == nAlloc) {
      size_t nNew = nAlloc ? 2 * nAlloc : 256;
      uint32_t *a1 = sqlite3_realloc64(aId, sizeof(uint32_t) * nNew);
      uint32_t *a2 = a1 ? sqlite3_realloc64(aNbr, sizeof(uint32_t) * nStride * nNew) : NULL;
      if (a1) aId = a1;
      if (a2 == NULL) {
        rc = SQLITE_NOMEM;
        break;
      }
      aNbr = a2;
      nAlloc = nNew;
    }
    rc = diskann_vrc(d, annex_vamana_repair(&d->prm, d->w, &io, (uint32_t)id,
                                        nd.pVec, nd.aNbr, nd.nNbr,
                                        d->aDeadBits, (uint64_t)d->nCap,
                                        aNbr + nStride * n + 1, &nOut));
    aId[n] = (uint32_t)id;
    aNbr[nStride * n] = (uint32_t)nOut;
    if (rc == SQLITE_OK) n++;
  }
  if (s) {
    int rc2 = sqlite3_finalize(s);
    if (rc == SQLITE_OK) rc = rc2;
  }
  sqlite3_free(aRow);
  *paId = aId;
  *paNbr = aNbr;
  *pn = n;
  return rc;
}

/* FreshDiskANN's consolidation: repair every list that names a deleted
** node, drop the tombstones, move a dead entry point. */
static int diskann_optimize(diskann_ann *d) {
  annex_table *p = d->base.pTab;
  uint32_t *aId = NULL, *aNbr = NULL;
  size_t n = 0, nStride = (size_t)d->prm.R + 1;
  int rc = diskann_ready(d);
  if (rc == SQLITE_OK) rc = annex_storage_bump_counter(p);
  if (rc == SQLITE_OK) rc = diskann_sync(&d->base); /* link pending rows */
  if (rc == SQLITE_OK) rc = diskann_ready(d);
  d->bTxnGraph = 1;
  if (rc == SQLITE_OK) rc = diskann_load_dead(d);
  if (rc == SQLITE_OK && d->nDead > 0) {
    annex_progress_set(p, "diskann optimize", 0, d->nNodes);
    /* load_dead left a dead entry point's vector in aQn */
    if (diskann_dead_list(d, (uint32_t)d->iEntry)) diskann_new_entry(d);
    rc = diskann_repair_all(d, &aId, &aNbr, &n);
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
      annex_vamana_node nd;
      rc = diskann_io_fetch(d, aId[i], &nd);
      if (rc == SQLITE_OK) memcpy(d->aQn, nd.pVec, 4 * d->prm.nDim);
      if (rc == SQLITE_OK) {
        rc = diskann_io_put(d, aId[i], d->aQn, aNbr + nStride * i + 1,
                            (int)aNbr[nStride * i]);
      }
    }
    for (size_t i = 0; i < d->nDead && rc == SQLITE_OK; i++) {
      rc = diskann_del_record(d, d->aDeadId[i]);
      if (rc == SQLITE_OK) rc = diskann_mark_node(d, d->aDeadId[i], 0);
    }
    annex_progress_clear(p);
  }
  sqlite3_free(aId);
  sqlite3_free(aNbr);
  if (rc == SQLITE_OK) rc = diskann_flush(d);
  diskann_free_dead(d);
  if (rc == SQLITE_OK) rc = annex_storage_drop_empty_chunks(p);
  if (rc == SQLITE_OK) rc = diskann_settle(d);
  return rc;
}

static int diskann_command(annex_ann *a, const char *zCmd, int *pbDone) {
  diskann_ann *d = (diskann_ann *)a;
  *pbDone = 1;
  if (sqlite3_stricmp(zCmd, "rebuild") == 0) return diskann_rebuild(d);
  if (sqlite3_stricmp(zCmd, "optimize") == 0) return diskann_optimize(d);
  *pbDone = 0;
  return SQLITE_OK;
}

/* annex_info and integrity-check ******************************************/

/* Nodes whose row is gone (kept for navigation until 'optimize'). */
static sqlite3_int64 diskann_count_dead(const diskann_ann *d) {
  sqlite3_int64 n = 0;
  if (!d->bLoaded || !d->bLive) return 0;
  for (sqlite3_int64 i = 0; i < d->nCap; i++) {
    if (annex_bit_get(d->aNode, i) &&
        !(i < d->nLiveBits && annex_bit_get(d->aLive, i))) {
      n++;
    }
  }
  return n;
}

static int diskann_info(annex_ann *a, void *pCtx,
                        int (*xAdd)(void *, const char *, const char *)) {
  diskann_ann *d = (diskann_ann *)a;
  char z[64];
  int rc = SQLITE_OK;
  sqlite3_int64 nCacheMem = d->nCacheUsed * (sqlite3_int64)(d->szRec + 8);
  sqlite3_int64 nMem = d->nCap * d->m + d->nCap / 8 + d->nLiveBits / 8 +
                       d->nLiveBits * 8 + (sqlite3_int64)(d->pq.aCodebook ?
                       4 * 256 * d->prm.nDim : 0) + nCacheMem +
                       (sqlite3_int64)annex_vamana_walk_memory(d->w);
  struct { const char *zKey; sqlite3_int64 v; } aFact[] = {
      {"diskann_r", d->prm.R},
      {"diskann_l_build", d->prm.L},
      {"diskann_pq_bytes", d->m},
      {"diskann_search_list", d->nSearch},
      {"diskann_cache_mb", d->nCacheMb},
      {"diskann_cache_slots", d->nCacheSlot},
      {"diskann_cache_used", d->nCacheUsed},
      {"diskann_cache_hits", d->nHit},
      {"diskann_cache_misses", d->nMiss},
      {"diskann_nodes", d->nNodes},
      {"diskann_tombstones", diskann_count_dead(d)},
      {"diskann_trained_on", d->nTrained},
      {"diskann_pending", d->nPend - d->nBase},
      {"diskann_codes_loaded", d->bLoaded},
      {"memory_index", nMem},
  };
  for (size_t i = 0; i < sizeof(aFact) / sizeof(aFact[0]) && rc == SQLITE_OK; i++) {
    sqlite3_snprintf(sizeof(z), z, "%lld", aFact[i].v);
    rc = xAdd(pCtx, aFact[i].zKey, z);
  }
  if (rc == SQLITE_OK) {
    sqlite3_snprintf(sizeof(z), z, "%.17g", (double)d->prm.alpha);
    rc = xAdd(pCtx, "diskann_alpha", z);
  }
  return rc;
}

static int diskann_corrupt(diskann_ann *d, const char *zWhat, sqlite3_int64 id) {
  annex_table *p = d->base.pTab;
  annex_set_error(&p->base, "annex table %s is corrupt: %s_diskann node %lld %s",
                  p->zName, p->zName, id, zWhat);
  return SQLITE_CORRUPT_VTAB;
}

/* The format's "zero without a node": a slot without a node bit has an
** all-zero code. */
static int diskann_check_codes(diskann_ann *d) {
  annex_table *p = d->base.pTab;
  for (sqlite3_int64 i = 0; i < d->nCap; i++) {
    const uint8_t *c = d->aCode + (size_t)i * d->m;
    if (annex_bit_get(d->aNode, i)) continue;
    for (int j = 0; j < d->m; j++) {
      if (c[j]) {
        annex_set_error(&p->base, "annex table %s is corrupt: slot %lld has a "
                        "code but no node in %s_diskannpq", p->zName, i,
                        p->zName);
        return SQLITE_CORRUPT_VTAB;
      }
    }
  }
  return SQLITE_OK;
}

/* Every record parses, sits on a slot with a node bit, names only nodes;
** every node bit has a record; every live row has a node; a slot without
** a node has a zero code. */
static int diskann_integrity(annex_ann *a) {
  diskann_ann *d = (diskann_ann *)a;
  annex_table *p = d->base.pTab;
  sqlite3_stmt *s = NULL;
  sqlite3_int64 nSlots, nRec = 0, nLiveNodes = 0;
  unsigned char *aRow = NULL;
  char *zSql;
  int rc = diskann_ready(d);
  if (rc == SQLITE_OK) rc = annex_storage_slots(p, &nSlots);
  zSql = sqlite3_mprintf("SELECT id, node FROM \"%w\".\"%w_diskann\"", p->zDb,
                         p->zName);
  aRow = sqlite3_malloc64(d->szRec);
  if (zSql == NULL || aRow == NULL) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(p->db, zSql, -1, &s, 0);
  sqlite3_free(zSql);
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    size_t n = (size_t)sqlite3_column_bytes(s, 1);
    annex_vamana_node nd;
    if (id < 0 || id >= nSlots) {
      rc = diskann_corrupt(d, "is beyond the slot counter", id);
    } else if (!diskann_has_node(d, id)) {
      rc = diskann_corrupt(d, "has no node bit in its code block", id);
    } else if (n > d->szRec) {
      rc = diskann_corrupt(d, "does not parse", id);
    } else {
      if (n) memcpy(aRow, sqlite3_column_blob(s, 1), n);
      if (diskann_parse(d, aRow, n, &nd) != SQLITE_OK) {
        rc = diskann_corrupt(d, "does not parse or names a missing node", id);
      }
    }
    nRec++;
    if (rc == SQLITE_OK && id < d->nLiveBits && annex_bit_get(d->aLive, id)) {
      nLiveNodes++;
    }
  }
  if (s) {
    int rc2 = sqlite3_finalize(s);
    if (rc == SQLITE_OK) rc = rc2;
  }
  sqlite3_free(aRow);
  if (rc == SQLITE_OK && nRec != d->nNodes) {
    annex_set_error(&p->base, "annex table %s is corrupt: %lld node bits but "
                    "%lld records in %s_diskann", p->zName, d->nNodes, nRec,
                    p->zName);
    rc = SQLITE_CORRUPT_VTAB;
  }
  if (rc == SQLITE_OK) rc = diskann_check_codes(d);
  /* (whatever diskann_trained says: a sync links every row it writes, and
  ** a live row's record is its vector's only copy) */
  if (rc == SQLITE_OK && d->nPend == d->nBase && nLiveNodes != d->nLive) {
    annex_set_error(&p->base, "annex table %s is corrupt: %lld live rows but "
                    "%lld of them have a node in %s_diskann", p->zName,
                    d->nLive, nLiveNodes, p->zName);
    rc = SQLITE_CORRUPT_VTAB;
  }
  return rc;
}

/* Lifecycle *****************************************************************/

static void diskann_close(annex_ann *a) {
  diskann_ann *d = (diskann_ann *)a;
  if (d == NULL) return;
  diskann_drop(d);
  diskann_drop_live(d);
  diskann_finalize(d);
  diskann_free_dead(d);
  annex_vamana_walk_free(d->w);
  sqlite3_free(d->aCache);
  sqlite3_free(d->aTag);
  sqlite3_free(d->aPend);
  sqlite3_free(d->aPendVec);
  sqlite3_free(d->aPendBits);
  sqlite3_free(d->aSave);
  sqlite3_free(d->aTab);
  sqlite3_free(d->aQn);
  sqlite3_free(d->aRec);
  sqlite3_free(d);
}

static int diskann_open(annex_table *p, annex_ann **pp) {
  diskann_ann *d = sqlite3_malloc64(sizeof(*d));
  size_t nDim;
  int rc;
  *pp = NULL;
  if (d == NULL) return SQLITE_NOMEM;
  memset(d, 0, sizeof(*d));
  d->base.pOps = &annex_diskann_ops;
  d->base.pTab = p;
  d->iChanges = -1;
  d->iEntry = -1;
  diskann_params_read(d, p->pConfig);
  nDim = d->prm.nDim;
  rc = diskann_rc(annex_vamana_walk_new(&d->prm, &d->w));
  /* the table is sized for the largest m (nDim) a file may hold */
  d->aTab = sqlite3_malloc64(sizeof(float) * 256 * nDim);
  d->aQn = sqlite3_malloc64(sizeof(float) * nDim);
  d->aRec = sqlite3_malloc64(d->szRec);
  if (rc == SQLITE_OK && (!d->aTab || !d->aQn || !d->aRec)) rc = SQLITE_NOMEM;
  if (rc != SQLITE_OK) {
    diskann_close(&d->base);
    return rc;
  }
  *pp = &d->base;
  return SQLITE_OK;
}

const annex_ann_ops annex_diskann_ops = {
    /* zKind         */ "diskann",
    /* zKnob         */ "search_list",
    /* xParams       */ diskann_params,
    /* xCreate       */ diskann_create,
    /* xDestroy      */ diskann_destroy,
    /* xRename       */ diskann_rename,
    /* azShadow      */ g_azDiskannShadow,
    /* xOpen         */ diskann_open,
    /* xClose        */ diskann_close,
    /* xInsert       */ diskann_insert,
    /* xDelete       */ diskann_delete,
    /* xUpdateVector */ diskann_update_vector,
    /* xSync         */ diskann_sync,
    /* xCommit       */ diskann_commit,
    /* xRollback     */ diskann_rollback,
    /* xSavepoint    */ diskann_savepoint,
    /* xRollbackTo   */ diskann_rollback_to,
    /* xSearch       */ diskann_search,
    /* xCommand      */ diskann_command,
    /* xInfo         */ diskann_info,
    /* xIntegrity    */ diskann_integrity,
    /* xSetRowid     */ diskann_set_rowid,
    /* xRowids       */ diskann_rowids,
    /* xReadVectors  */ diskann_read_vectors,
};
