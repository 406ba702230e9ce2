/*
** ann_ivf.c — index=ivf: an inverted-file index over the table's vectors
** (coarse k-means lists; codes flat, sq8 or pq; exact re-ranking), kept in
** shadow tables. The SQLite-free core is ext/index/ivf.c (with kmeans.c,
** pq.c, sq8.c).
**
**   index=ivf                                   defaults below
**   index=ivf(nlist=256, quantizer=pq, m=16, rerank=4, nprobe=16)
**   ... WHERE embedding MATCH ?1 AND k = 10 AND nprobe = 32
**   INSERT INTO t(t) VALUES('train')     -- (re)train, then re-assign all
**   INSERT INTO t(t) VALUES('optimize')  -- drop dead entries from lists
**
** Parameters: nlist (lists; default round(4 sqrt(n)) with n the live rows
** at training time), quantizer = flat | sq8 | pq (default flat), m (pq
** sub-quantizers of 8 bits; must divide the dimensions; default the
** largest divisor <= dims/4), rerank (candidates re-scored exactly =
** rerank x k; default 1 for flat, 2 for sq8, 4 for pq), nprobe (lists a
** query scans by default; default 16; the hidden column nprobe overrides
** it per query).
**
** Training needs at least 39 x nlist live rows (ANNEX_IVF_MIN_PER_LIST).
** Until the index is trained, searches answer exactly (ANNEX_ANN_EXACT)
** and annex_info's ivf_state says why. Training runs on 'train', or
** automatically at the commit (xSync) of a transaction that inserted rows
** and left the table with at least 39 x nlist live rows (with nlist not
** given: 39 x round(4 sqrt(n)) <= n, i.e. n >= 24,336 rows). It is k-means
** on a seeded sample (256 rows per list at most; 10 iterations; fixed
** seed, so reproducible), then every live row is assigned and encoded.
** Only float32 columns are indexed: int8 and bit tables answer exactly.
**
** Database format (adds to storage.c's; ivf format version 1) for table T:
**
**   T_ivfmodel(id INTEGER PRIMARY KEY, data BLOB NOT NULL)
**       id 0: centroids, nlist x dims float32 little-endian;
**       id 1 (sq8): dims float32 minimums then dims float32 steps;
**       id 2 (pq): codebooks, m x 256 x (dims/m) float32 (ext/index/pq.h).
**       Read once per connection, at the first query; lists are not.
**   T_ivflists(id INTEGER PRIMARY KEY, data BLOB NOT NULL)
**       chunks of inverted lists: id = list * 2^32 + seq (seq 0, 1, ... in
**       list order). data = u32 count, u32 0, then room for capacity =
**       (bytes - 8) / entry_size entries of which the first count are
**       used; an entry is a u64 global slot then the code (ext/index/ivf.h),
**       all little-endian. Training writes full chunks of ivf_chunk
**       entries and a tail chunk of exactly the rest; an insert appends in
**       place, doubling a full tail chunk up to ivf_chunk entries, then
**       starting the next seq.
**   T_config keys
**       ivf_format    integer, 1
**       ivf_trained   integer, 0 or 1
**       ivf_nlist     integer, lists of the trained index (0 untrained)
**       ivf_m         integer, pq sub-quantizers of the trained index
**       ivf_chunk     integer, most entries per list chunk
**       ivf_updates   integer, vector UPDATEs since training (each leaves
**                     a stale entry behind; see below)
**       ivf_rows      integer, live rows when last trained
**
** Deletes leave their entries in the lists: a search skips slots that are
** not live (a bitmap loaded from the chunks' valid bits), and slots are
** never reused. An UPDATE of a vector appends a new entry for the slot;
** the old one stays, so a search re-scores candidates from the stored
** vectors and removes duplicate slots whenever ivf_updates > 0. 'optimize'
** rewrites the lists without dead or stale entries; 'train' rebuilds all.
**
** GPU: with flat codes, no stale entry (ivf_updates 0) and no filter, a
** query under device=auto may scan its probed lists on the GPU (gpu.c's
** ranged tables): every list is uploaded once per change counter, list
** after list, live entries marked valid; the candidates come back with a
** bound and are re-scored here from the cached codes, so the answer is
** the CPU's for the same lists (else the CPU scans). The first such query
** after a change loads every list (the whole index in memory).
**
** Memory: the model (centroids, codebooks) and every list a query has read
** are cached per connection; the cache is valid while T_config's change
** counter equals the value it was loaded at (or that + 1 inside this
** connection's own write transaction, whose writes update the cache too),
** and is dropped on ROLLBACK and ROLLBACK TO, to be read again lazily.
*/
#include "ann.h"
#include "../gpu/annex_cuda.h"
#include "../index/alloc.h"
#include "../index/flat.h"
#include "../index/ivf.h"

#include <math.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#define IVF_FORMAT 1
#define IVF_DEFAULT_NPROBE 16
#define IVF_TRAIN_ITER 10
#define IVF_TRAIN_SEED 0x49564649564649ull
/* First capacity of a new tail chunk, in entries, and the largest chunk in
** bytes (ivf_chunk = clamp(IVF_CHUNK_BYTES / entry, 16, 4096)). */
#define IVF_CHUNK_FIRST 16
#define IVF_CHUNK_BYTES (256 * 1024)
#define IVF_MODEL_CENTROIDS 0
#define IVF_MODEL_SQ8 1
#define IVF_MODEL_PQ 2

/* One inverted list as cached in memory. */
typedef struct ivf_list {
  unsigned char *a; /* n entries of szEntry bytes (owned) */
  size_t n;         /* entries */
  size_t nAlloc;    /* capacity in entries */
  int bLoaded;      /* a holds the list as in the file */
} ivf_list;

typedef struct ivf_ann {
  annex_ann base;            /* must be first */
  /* CREATE parameters */
  int nListParam;            /* nlist given, or 0 (default at training) */
  annex_ivf_quant eQuant;    /* flat, sq8, pq */
  int mParam;                /* pq m (resolved default) */
  int nRerank;               /* candidates = nRerank x k */
  int nProbe;                /* default lists per query */
  /* cache state */
  sqlite3_int64 iChanges;    /* change counter the cache matches; -1 none */
  int bModel;                /* ivf_trained and the model below are loaded */
  int bTrained;              /* the file holds a trained index */
  annex_ivf ivf;             /* the model, when bTrained (owned) */
  sqlite3_int64 nUpdates;    /* ivf_updates */
  sqlite3_int64 nTrainRows;  /* ivf_rows */
  int nChunkMax;             /* ivf_chunk */
  ivf_list *aList;           /* ivf.nList cached lists (owned) */
  unsigned char *aLive;      /* live slots (owned), valid when bLive */
  sqlite3_int64 *aRowid;     /* rowid of each slot < nLiveBits (owned) */
  unsigned int iDataVersion; /* SQLITE_FCNTL_DATA_VERSION at validation */
  int bTxnOk;                /* cache checked inside this write txn */
  int bTxnBumped;            /* this txn bumped the change counter */
  sqlite3_int64 nLiveBits;   /* bits in aLive */
  sqlite3_int64 nLive;       /* set bits */
  int bLive;                 /* aLive is loaded */
  int bTxnInsert;            /* this transaction inserted rows */
  int nBusy;                 /* writes in progress that hold cache pointers */
  int bDropPending;          /* a rollback came during one: drop at its end */
  float *aScratch;           /* 3 x dims floats for writes (owned) */
  unsigned char *aEntry;     /* one entry buffer (owned) */
  sqlite3_stmt *pRead;       /* chunks of a list, in order */
  sqlite3_stmt *pTail;       /* last chunk of a list: id, length */
  sqlite3_stmt *pPut;        /* INSERT OR REPLACE a chunk */
  /* The lists on the GPU (flat codes; gpu.c's ranged table): list l holds
  ** positions [aGpuStart[l], aGpuStart[l + 1]) of the copy tagged with
  ** iChanges = iGpuTag (a change to the file moves the counter). */
  sqlite3_int64 *aGpuStart;  /* nGpuList + 1 positions (owned) */
  int nGpuList;
  sqlite3_int64 iGpuTag;     /* -1: nothing uploaded */
} ivf_ann;

static int ivf_core_rc(int rc) {
  switch (rc) {
    case ANNEX_KMEANS_OK: return SQLITE_OK;
    case ANNEX_KMEANS_NOMEM: return SQLITE_NOMEM;
    case ANNEX_KMEANS_TOO_FEW: return SQLITE_ERROR;
    case ANNEX_KMEANS_ABORTED: return SQLITE_INTERRUPT;
  }
  return SQLITE_ERROR;
}

static int ivf_is_float(const annex_config *c) {
  return c->eElem == ANNEX_ELEM_FLOAT32 && c->eMetric != ANNEX_METRIC_HAMMING;
}

/* Parameters ************************************************************/

/* Largest divisor of nDim that is <= max(1, nDim / 4). */
static int ivf_default_m(int nDim) {
  int m = nDim / 4 > 0 ? nDim / 4 : 1;
  while (m > 1 && nDim % m) m--;
  return m;
}

typedef struct ivf_prm {
  int nList, m, nRerank, nProbe;
  annex_ivf_quant eQuant;
} ivf_prm;

static int ivf_params_parse(const annex_config *c, ivf_prm *r, char **pzErr) {
  static const char *azKey[] = {"nlist", "quantizer", "m", "rerank",
                                "nprobe"};
  const char *zQ = annex_config_param(c, "quantizer");
  int rc = SQLITE_OK;
  memset(r, 0, sizeof(*r));
  for (int i = 0; i < c->nParam; i++) {
    size_t j = 0;
    while (j < 5 && strcmp(c->aParam[i].zKey, azKey[j]) != 0) j++;
    if (j == 5) {
      *pzErr = sqlite3_mprintf("unknown ivf parameter '%s' (parameters: "
                               "nlist, quantizer, m, rerank, nprobe)",
                               c->aParam[i].zKey);
      return SQLITE_ERROR;
    }
  }
  r->eQuant = ANNEX_IVF_FLAT;
  if (zQ && sqlite3_stricmp(zQ, "sq8") == 0) r->eQuant = ANNEX_IVF_SQ8;
  else if (zQ && sqlite3_stricmp(zQ, "pq") == 0) r->eQuant = ANNEX_IVF_PQ;
  else if (zQ && sqlite3_stricmp(zQ, "flat") != 0) {
    *pzErr = sqlite3_mprintf("ivf parameter quantizer=%s: expected flat, "
                             "sq8 or pq", zQ);
    return SQLITE_ERROR;
  }
  r->m = ivf_default_m(c->nDim);
  r->nRerank = r->eQuant == ANNEX_IVF_PQ ? 4 : r->eQuant == ANNEX_IVF_SQ8 ? 2
                                                                          : 1;
  r->nProbe = IVF_DEFAULT_NPROBE;
  rc = annex_param_int(c, "nlist", 1, 1 << 20, &r->nList, pzErr);
  if (rc == SQLITE_OK) rc = annex_param_int(c, "m", 1, c->nDim, &r->m, pzErr);
  if (rc == SQLITE_OK) {
    rc = annex_param_int(c, "rerank", 1, 1000, &r->nRerank, pzErr);
  }
  if (rc == SQLITE_OK) {
    rc = annex_param_int(c, "nprobe", 1, 1 << 20, &r->nProbe, pzErr);
  }
  if (rc == SQLITE_OK && annex_config_param(c, "m") &&
      r->eQuant != ANNEX_IVF_PQ) {
    *pzErr = sqlite3_mprintf("ivf parameter m applies to quantizer=pq only");
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK && c->nDim % r->m) {
    *pzErr = sqlite3_mprintf("ivf parameter m=%d must divide the %d "
                             "dimensions", r->m, c->nDim);
    rc = SQLITE_ERROR;
  }
  return rc;
}

static int ivf_params(const annex_config *c, char **pzErr) {
  ivf_prm r;
  return ivf_params_parse(c, &r, pzErr);
}

/* Schema ****************************************************************/

static int ivf_exec(annex_table *p, char **pzErr, const char *zFmt, ...) {
  va_list ap;
  char *zSql;
  int rc;
  va_start(ap, zFmt);
  zSql = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_exec(p->db, zSql, 0, 0, pzErr);
  sqlite3_free(zSql);
  return rc;
}

static int ivf_chunk_entries(const annex_config *c, annex_ivf_quant e,
                             int m) {
  size_t sz = 8 + (e == ANNEX_IVF_FLAT  ? c->szVec
                   : e == ANNEX_IVF_SQ8 ? (size_t)c->nDim
                                        : (size_t)m);
  size_t n = IVF_CHUNK_BYTES / sz;
  return n < 16 ? 16 : n > 4096 ? 4096 : (int)n;
}

static int ivf_create(annex_table *p, char **pzErr) {
  static const char *azKey[] = {"ivf_trained", "ivf_nlist", "ivf_m",
                                "ivf_updates", "ivf_rows"};
  ivf_prm r;
  int rc = ivf_params_parse(p->pConfig, &r, pzErr);
  if (rc == SQLITE_OK) {
    rc = ivf_exec(p, pzErr, "CREATE TABLE \"%w\".\"%w_ivfmodel\"(id INTEGER "
                  "PRIMARY KEY, data BLOB NOT NULL);"
                  "CREATE TABLE \"%w\".\"%w_ivflists\"(id INTEGER "
                  "PRIMARY KEY, data BLOB NOT NULL)",
                  p->zDb, p->zName, p->zDb, p->zName);
  }
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "ivf_format", 1);
  for (int i = 0; i < 5 && rc == SQLITE_OK; i++) {
    rc = annex_storage_config_set_int(p, azKey[i], 0);
  }
  if (rc == SQLITE_OK) {
    rc = annex_storage_config_set_int(
        p, "ivf_chunk", ivf_chunk_entries(p->pConfig, r.eQuant, r.m));
  }
  return rc;
}

static void ivf_finalize(ivf_ann *h) {
  sqlite3_finalize(h->pRead);
  sqlite3_finalize(h->pTail);
  sqlite3_finalize(h->pPut);
  h->pRead = h->pTail = h->pPut = NULL;
}

static int ivf_destroy(annex_table *p) {
  return ivf_exec(p, NULL, "DROP TABLE IF EXISTS \"%w\".\"%w_ivfmodel\";"
                  "DROP TABLE IF EXISTS \"%w\".\"%w_ivflists\"",
                  p->zDb, p->zName, p->zDb, p->zName);
}

static int ivf_rename(annex_table *p, const char *zNew) {
  if (p->pAnn) ivf_finalize((ivf_ann *)p->pAnn); /* they name the old */
  return ivf_exec(p, NULL, "ALTER TABLE \"%w\".\"%w_ivfmodel\" RENAME TO "
                  "\"%w_ivfmodel\"; ALTER TABLE \"%w\".\"%w_ivflists\" "
                  "RENAME TO \"%w_ivflists\"", p->zDb, p->zName, zNew,
                  p->zDb, p->zName, zNew);
}

static const char *const g_azIvfShadow[] = {"ivfmodel", "ivflists", NULL};

static int ivf_stmt(ivf_ann *h, sqlite3_stmt **pp, const char *zFmt) {
  annex_table *p = h->base.pTab;
  char *zSql;
  int rc;
  if (*pp) return SQLITE_OK;
  zSql = sqlite3_mprintf(zFmt, p->zDb, p->zName);
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_prepare_v3(p->db, zSql, -1, SQLITE_PREPARE_PERSISTENT, pp, 0);
  sqlite3_free(zSql);
  return rc;
}

/* Little-endian float32 arrays in and out of BLOBs. */
static void ivf_floats_from_le(float *out, const unsigned char *a, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(out, a, n * 4);
#else
  for (size_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)a[4 * i] | (uint32_t)a[4 * i + 1] << 8 |
                 (uint32_t)a[4 * i + 2] << 16 | (uint32_t)a[4 * i + 3] << 24;
    memcpy(&out[i], &u, 4);
  }
#endif
}

static void ivf_floats_to_le(unsigned char *a, const float *in, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(a, in, n * 4);
#else
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &in[i], 4);
    for (int b = 0; b < 4; b++) a[4 * i + b] = (unsigned char)(u >> (8 * b));
  }
#endif
}

static uint32_t ivf_get_u32(const unsigned char *a) {
  return (uint32_t)a[0] | (uint32_t)a[1] << 8 | (uint32_t)a[2] << 16 |
         (uint32_t)a[3] << 24;
}

static void ivf_put_u32(unsigned char *a, uint32_t v) {
  for (int b = 0; b < 4; b++) a[b] = (unsigned char)(v >> (8 * b));
}

/* Cache validity ********************************************************/

static void ivf_drop_lists(ivf_ann *h) {
  if (h->aList) {
    for (int i = 0; i < h->ivf.nList; i++) annex_free(h->aList[i].a);
  }
  annex_free(h->aList);
  h->aList = NULL;
}

static void ivf_drop_model(ivf_ann *h) {
  ivf_drop_lists(h);
  if (h->bTrained) annex_ivf_free(&h->ivf);
  memset(&h->ivf, 0, sizeof(h->ivf));
  h->bTrained = 0;
  h->bModel = 0;
}

static void ivf_drop_live(ivf_ann *h) {
  sqlite3_free(h->aLive);
  sqlite3_free(h->aRowid);
  h->aLive = NULL;
  h->aRowid = NULL;
  h->nLiveBits = h->nLive = 0;
  h->bLive = 0;
}

static void ivf_drop_all(ivf_ann *h) {
  ivf_drop_model(h);
  ivf_drop_live(h);
  h->iChanges = -1;
  h->bTxnOk = 0;
}

/* Drop the caches, or, inside a write of this index, when that write ends:
** a nested statement of the write (an INSERT into T_ivflists) that fails
** makes SQLite roll back its statement and call xRollbackTo (or, after some
** errors, xRollback) on every virtual table of the transaction, this one
** included, while the write still walks the cached lists. */
static void ivf_drop_or_defer(ivf_ann *h) {
  if (h->nBusy > 0) h->bDropPending = 1;
  else ivf_drop_all(h);
}

static void ivf_busy(ivf_ann *h) { h->nBusy++; }

static int ivf_unbusy(ivf_ann *h, int rc) {
  if (--h->nBusy == 0 && h->bDropPending) {
    h->bDropPending = 0;
    ivf_drop_all(h);
  }
  return rc;
}

/* Drop the caches if another connection wrote since they were loaded.
** The pager's data version moves with every change to the file: while it
** stands still the counter cannot have moved, and reading it is skipped;
** inside this connection's write transaction nobody else writes. */
static int ivf_validate(ivf_ann *h) {
  annex_table *p = h->base.pTab;
  sqlite3_int64 v;
  unsigned int dv = 0;
  int rc;
  if (h->bTxnOk && h->iChanges >= 0) return SQLITE_OK;
  if (sqlite3_file_control(p->db, p->zDb, SQLITE_FCNTL_DATA_VERSION, &dv) !=
      SQLITE_OK) {
    dv = h->iDataVersion + 1;
  }
  if (h->iChanges >= 0 && dv == h->iDataVersion && !p->bCounterBumped) {
    return SQLITE_OK;
  }
  rc = annex_storage_config_int(p, "changes", &v);
  if (rc != SQLITE_OK) return rc;
  if (h->iChanges < 0 ||
      !(v == h->iChanges || (p->bCounterBumped && v == h->iChanges + 1))) {
    ivf_drop_all(h);
    /* A counter this transaction bumped already counts its own writes. */
    h->iChanges = p->bCounterBumped ? v - 1 : v;
  }
  h->bTxnOk = p->bCounterBumped;
  h->iDataVersion = dv;
  return SQLITE_OK;
}

/* Model blob id into out (n floats); SQLITE_CORRUPT_VTAB if it is missing
** or not n floats long. */
static int ivf_read_model(ivf_ann *h, int id, float *out, size_t n) {
  annex_table *p = h->base.pTab;
  sqlite3_stmt *s = NULL;
  char *zSql = sqlite3_mprintf("SELECT data FROM \"%w\".\"%w_ivfmodel\" "
                               "WHERE id = %d", p->zDb, p->zName, id);
  int rc = zSql ? sqlite3_prepare_v2(p->db, zSql, -1, &s, 0) : SQLITE_NOMEM;
  sqlite3_free(zSql);
  if (rc == SQLITE_OK) {
    if (sqlite3_step(s) == SQLITE_ROW &&
        (size_t)sqlite3_column_bytes(s, 0) == n * 4) {
      ivf_floats_from_le(out, sqlite3_column_blob(s, 0), n);
    } else {
      rc = sqlite3_errcode(p->db);
      if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) {
        rc = SQLITE_CORRUPT_VTAB;
      }
    }
  }
  sqlite3_finalize(s);
  return rc;
}

/* Load ivf_* config and, when trained, the centroids and codebooks. */
static int ivf_load_model(ivf_ann *h) {
  annex_table *p = h->base.pTab;
  const annex_config *c = p->pConfig;
  sqlite3_int64 bTrained = 0, nList = 0, m = 0, nChunk = 0, nFormat = 0;
  int rc;
  if (h->bModel) return SQLITE_OK;
  rc = annex_storage_config_int(p, "ivf_trained", &bTrained);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "ivf_nlist", &nList);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "ivf_m", &m);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "ivf_chunk", &nChunk);
  if (rc == SQLITE_OK) {
    rc = annex_storage_config_int(p, "ivf_updates", &h->nUpdates);
  }
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "ivf_rows", &h->nTrainRows);
  if (rc == SQLITE_OK && (nChunk < 1 || nChunk > 65536)) rc = SQLITE_CORRUPT_VTAB;
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "ivf_format", &nFormat);
  /* ivf_format is 1; ivf_trained is 0 or 1; ivf_updates counts UPDATEs (and
  ** is incremented without overflow checks: 2^62 cannot be reached) */
  if (rc == SQLITE_OK && (nFormat != IVF_FORMAT || bTrained < 0 ||
                          bTrained > 1 || h->nUpdates < 0 ||
                          h->nUpdates > ((sqlite3_int64)1 << 62))) {
    rc = SQLITE_CORRUPT_VTAB;
  }
  if (rc != SQLITE_OK) return rc;
  h->nChunkMax = (int)nChunk;
  if (bTrained && ivf_is_float(c)) {
    if (nList < 1 || nList > (1 << 20) || m < 1 || m > c->nDim) {
      return SQLITE_CORRUPT_VTAB;
    }
    rc = ivf_core_rc(annex_ivf_init(&h->ivf, h->eQuant, c->eMetric,
                                    (size_t)c->nDim, (int)nList, (int)m));
    if (rc == SQLITE_ERROR) rc = SQLITE_CORRUPT_VTAB; /* m vs dims */
    if (rc != SQLITE_OK) return rc;
    h->bTrained = 1;
    rc = ivf_read_model(h, IVF_MODEL_CENTROIDS, h->ivf.aCentroid,
                        (size_t)nList * (size_t)c->nDim);
    if (rc == SQLITE_OK && h->eQuant == ANNEX_IVF_SQ8) {
      rc = ivf_read_model(h, IVF_MODEL_SQ8, h->ivf.sq.aMin,
                          2 * (size_t)c->nDim);
    }
    if (rc == SQLITE_OK && h->eQuant == ANNEX_IVF_PQ) {
      rc = ivf_read_model(h, IVF_MODEL_PQ, h->ivf.pq.aCodebook,
                          (size_t)ANNEX_PQ_KSUB * (size_t)c->nDim);
      if (rc == SQLITE_OK) annex_pq_finish(&h->ivf.pq);
    }
    if (rc == SQLITE_OK) {
      h->aList = annex_calloc((size_t)nList, sizeof(ivf_list));
      if (h->aList == NULL) rc = SQLITE_NOMEM;
    }
    if (rc != SQLITE_OK) {
      ivf_drop_model(h);
      return rc;
    }
  }
  h->bModel = 1;
  return SQLITE_OK;
}

/* The live-slot bitmap, from the chunks' valid bitmaps. */
static int ivf_load_live(ivf_ann *h) {
  annex_table *p = h->base.pTab;
  const annex_config *c = p->pConfig;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  sqlite3_int64 nSlots;
  int rc;
  if (h->bLive) return SQLITE_OK;
  rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK) {
    h->nLiveBits = (nSlots + 7) / 8 * 8 + 64;
    h->aLive = sqlite3_malloc64((size_t)h->nLiveBits / 8);
    h->aRowid = sqlite3_malloc64(sizeof(sqlite3_int64) * (size_t)h->nLiveBits);
    if (h->aLive == NULL || h->aRowid == NULL) rc = SQLITE_NOMEM;
    else memset(h->aLive, 0, (size_t)h->nLiveBits / 8);
  }
  h->nLive = 0;
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK &&
         (rc = annex_chunk_iter_next(it, &ch)) == SQLITE_ROW) {
    sqlite3_int64 i0 = ch.iChunk * c->nChunk;
    rc = SQLITE_OK;
    if (i0 + ch.nSlot > nSlots) rc = SQLITE_CORRUPT_VTAB;
    for (int i = 0; i < ch.nSlot && rc == SQLITE_OK; i++) {
      if (annex_bit_get(ch.aValid, i)) {
        h->aLive[(i0 + i) >> 3] |= (unsigned char)(1u << ((i0 + i) & 7));
        h->aRowid[i0 + i] = ch.aRowid[i];
        h->nLive++;
      }
    }
  }
  annex_chunk_iter_close(it);
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc == SQLITE_OK) h->bLive = 1;
  else ivf_drop_live(h);
  return rc;
}

static int ivf_set_live(ivf_ann *h, sqlite3_int64 iSlot, int bOn) {
  if (iSlot >= h->nLiveBits) {
    sqlite3_int64 nNew = ((iSlot + 1) * 2 + 64 + 7) / 8 * 8;
    unsigned char *a = sqlite3_realloc64(h->aLive, (size_t)nNew / 8);
    sqlite3_int64 *r;
    if (a == NULL) return SQLITE_NOMEM;
    memset(a + h->nLiveBits / 8, 0, (size_t)((nNew - h->nLiveBits) / 8));
    h->aLive = a;
    r = sqlite3_realloc64(h->aRowid, sizeof(sqlite3_int64) * (size_t)nNew);
    if (r == NULL) return SQLITE_NOMEM; /* aLive's new bits are all clear */
    h->aRowid = r;
    h->nLiveBits = nNew;
  }
  if (annex_bit_get(h->aLive, iSlot) != bOn) {
    h->aLive[iSlot >> 3] ^= (unsigned char)(1u << (iSlot & 7));
    h->nLive += bOn ? 1 : -1;
  }
  return SQLITE_OK;
}

/* Every cache ready for a write or a search. */
static int ivf_ready(ivf_ann *h) {
  int rc = ivf_validate(h);
  if (rc == SQLITE_OK) rc = ivf_load_model(h);
  if (rc == SQLITE_OK) rc = ivf_load_live(h);
  return rc;
}

/* Make room for n more entries in cached list l. */
static int ivf_list_reserve(ivf_ann *h, ivf_list *l, size_t n) {
  size_t sz = h->ivf.szEntry;
  if (l->n + n > l->nAlloc) {
    size_t nNew = l->nAlloc ? l->nAlloc : 16;
    unsigned char *a;
    while (nNew < l->n + n) nNew *= 2;
    a = annex_realloc(l->a, nNew * sz);
    if (a == NULL) return SQLITE_NOMEM;
    l->a = a;
    l->nAlloc = nNew;
  }
  return SQLITE_OK;
}

/* Read list iList from T_ivflists into the cache. */
static int ivf_load_list(ivf_ann *h, int iList) {
  ivf_list *l = &h->aList[iList];
  size_t sz = h->ivf.szEntry;
  int rc;
  if (l->bLoaded) return SQLITE_OK;
  l->n = 0;
  rc = ivf_stmt(h, &h->pRead, "SELECT data FROM \"%w\".\"%w_ivflists\" "
                "WHERE id >= ?1 AND id < ?2 ORDER BY id");
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(h->pRead, 1, (sqlite3_int64)iList << 32);
  sqlite3_bind_int64(h->pRead, 2, (sqlite3_int64)(iList + 1) << 32);
  while (rc == SQLITE_OK && sqlite3_step(h->pRead) == SQLITE_ROW) {
    const unsigned char *a = sqlite3_column_blob(h->pRead, 0);
    size_t nByte = (size_t)sqlite3_column_bytes(h->pRead, 0), n;
    if (nByte < 8) {
      rc = SQLITE_CORRUPT_VTAB;
      break;
    }
    n = ivf_get_u32(a);
    if (8 + n * sz > nByte) {
      rc = SQLITE_CORRUPT_VTAB;
      break;
    }
    rc = ivf_list_reserve(h, l, n);
    if (rc == SQLITE_OK && n) {
      memcpy(l->a + l->n * sz, a + 8, n * sz);
      l->n += n;
    }
  }
  {
    int rc2 = sqlite3_reset(h->pRead);
    if (rc == SQLITE_OK) rc = rc2;
  }
  if (rc == SQLITE_OK) l->bLoaded = 1;
  return rc;
}

/* Writes ****************************************************************/

/* Insert or replace chunk iId with nCap entries of room holding the n
** entries at a. */
static int ivf_put_chunk(ivf_ann *h, sqlite3_int64 iId, const unsigned char *a,
                         size_t n, size_t nCap) {
  size_t sz = h->ivf.szEntry, nByte = 8 + nCap * sz;
  unsigned char *aBuf;
  int rc = ivf_stmt(h, &h->pPut, "INSERT OR REPLACE INTO \"%w\".\"%w_ivflists\""
                    "(id, data) VALUES(?1, ?2)");
  if (rc != SQLITE_OK) return rc;
  aBuf = sqlite3_malloc64(nByte);
  if (aBuf == NULL) return SQLITE_NOMEM;
  memset(aBuf, 0, nByte);
  ivf_put_u32(aBuf, (uint32_t)n);
  if (n) memcpy(aBuf + 8, a, n * sz);
  sqlite3_bind_int64(h->pPut, 1, iId);
  sqlite3_bind_blob64(h->pPut, 2, aBuf, nByte, sqlite3_free);
  sqlite3_step(h->pPut);
  rc = sqlite3_reset(h->pPut);
  sqlite3_bind_null(h->pPut, 2);
  return rc;
}

/* The tail chunk of list iList: *piId and its byte size, or *piId = -1. */
static int ivf_tail(ivf_ann *h, int iList, sqlite3_int64 *piId,
                    sqlite3_int64 *pnByte) {
  int rc = ivf_stmt(h, &h->pTail, "SELECT id, length(data) FROM "
                    "\"%w\".\"%w_ivflists\" WHERE id >= ?1 AND id < ?2 "
                    "ORDER BY id DESC LIMIT 1");
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(h->pTail, 1, (sqlite3_int64)iList << 32);
  sqlite3_bind_int64(h->pTail, 2, (sqlite3_int64)(iList + 1) << 32);
  *piId = -1;
  if (sqlite3_step(h->pTail) == SQLITE_ROW) {
    *piId = sqlite3_column_int64(h->pTail, 0);
    *pnByte = sqlite3_column_int64(h->pTail, 1);
  }
  return sqlite3_reset(h->pTail);
}

/* Append one entry to list iList in the file (and the cache if loaded). */
static int ivf_append(ivf_ann *h, int iList, const unsigned char *pEntry) {
  annex_table *p = h->base.pTab;
  size_t sz = h->ivf.szEntry, nCap;
  sqlite3_int64 iId, nByte = 0;
  sqlite3_blob *b = NULL;
  unsigned char aHdr[8];
  char *zTab;
  uint32_t n;
  int rc = ivf_tail(h, iList, &iId, &nByte);
  if (rc != SQLITE_OK) return rc;
  if (iId < 0) { /* the list's first chunk */
    rc = ivf_put_chunk(h, (sqlite3_int64)iList << 32, pEntry, 1,
                       IVF_CHUNK_FIRST);
    goto cache;
  }
  if (nByte < 8 || (size_t)(nByte - 8) % sz) return SQLITE_CORRUPT_VTAB;
  nCap = (size_t)(nByte - 8) / sz;
  zTab = sqlite3_mprintf("%s_ivflists", p->zName);
  if (zTab == NULL) return SQLITE_NOMEM;
  rc = sqlite3_blob_open(p->db, p->zDb, zTab, "data", iId, 1, &b);
  sqlite3_free(zTab);
  if (rc == SQLITE_OK) rc = sqlite3_blob_read(b, aHdr, 8, 0);
  n = ivf_get_u32(aHdr);
  if (rc == SQLITE_OK && n > nCap) rc = SQLITE_CORRUPT_VTAB;
  if (rc == SQLITE_OK && n < nCap) { /* room in place */
    rc = sqlite3_blob_write(b, pEntry, (int)sz, (int)(8 + n * sz));
    ivf_put_u32(aHdr, n + 1);
    if (rc == SQLITE_OK) rc = sqlite3_blob_write(b, aHdr, 4, 0);
    sqlite3_blob_close(b);
    goto cache;
  }
  if (rc == SQLITE_OK && nCap < (size_t)h->nChunkMax) { /* grow the tail */
    size_t nNew = nCap * 2 > (size_t)h->nChunkMax ? (size_t)h->nChunkMax
                                                  : nCap * 2;
    unsigned char *a;
    /* a corrupt chunk of no room (8 bytes) would double to none: at
    ** least the entries it will hold (n <= nCap < nChunkMax) */
    if (nNew < n + 1) nNew = n + 1;
    a = sqlite3_malloc64((n + 1) * sz);
    if (a == NULL) rc = SQLITE_NOMEM;
    if (rc == SQLITE_OK) rc = sqlite3_blob_read(b, a, (int)(n * sz), 8);
    sqlite3_blob_close(b);
    b = NULL;
    if (rc == SQLITE_OK) {
      memcpy(a + n * sz, pEntry, sz);
      rc = ivf_put_chunk(h, iId, a, n + 1, nNew);
    }
    sqlite3_free(a);
    goto cache;
  }
  sqlite3_blob_close(b);
  if (rc == SQLITE_OK) { /* the tail is full: a new one */
    if ((iId & 0xffffffff) == 0xffffffff) return SQLITE_FULL;
    rc = ivf_put_chunk(h, iId + 1, pEntry, 1, IVF_CHUNK_FIRST);
  }
cache:
  if (rc == SQLITE_OK && h->aList[iList].bLoaded) {
    ivf_list *l = &h->aList[iList];
    rc = ivf_list_reserve(h, l, 1);
    if (rc == SQLITE_OK) memcpy(l->a + l->n++ * sz, pEntry, sz);
    /* A failed reserve leaves the cache short: reload it next time. */
    if (rc != SQLITE_OK) l->bLoaded = 0;
  }
  return rc;
}

/* Assign, encode and append vector pVec of slot iSlot. */
static int ivf_add(ivf_ann *h, sqlite3_int64 iSlot, const void *pVec) {
  size_t d = h->ivf.nDim;
  float *x = h->aScratch, *xp = x + d, *tmp = xp + d;
  int32_t iList = 0;
  int rc;
  memcpy(x, pVec, d * sizeof(float)); /* the caller's copy may be unaligned */
  annex_ivf_prepare(&h->ivf, x, xp);
  rc = ivf_core_rc(annex_ivf_assign(&h->ivf, xp, 1, 1, &iList));
  if (rc != SQLITE_OK) return rc;
  annex_ivf_put_u64(h->aEntry, (uint64_t)iSlot);
  annex_ivf_encode(&h->ivf, x, xp, iList, tmp, h->aEntry + 8);
  return ivf_append(h, iList, h->aEntry);
}

/* Buffers sized for the trained model. */
static int ivf_write_buffers(ivf_ann *h) {
  size_t d = (size_t)h->base.pTab->pConfig->nDim;
  /* each on its own: after a failed allocation the other one is kept */
  if (h->aScratch == NULL) h->aScratch = sqlite3_malloc64(3 * d * sizeof(float));
  if (h->aEntry == NULL) h->aEntry = sqlite3_malloc64(8 + d * sizeof(float));
  return h->aScratch && h->aEntry ? SQLITE_OK : SQLITE_NOMEM;
}

static int ivf_insert(annex_ann *a, sqlite3_int64 iSlot, const void *pVec) {
  ivf_ann *h = (ivf_ann *)a;
  int rc;
  if (!ivf_is_float(a->pTab->pConfig)) return SQLITE_OK;
  ivf_busy(h);
  rc = ivf_ready(h);
  if (rc == SQLITE_OK) rc = ivf_set_live(h, iSlot, 1);
  if (rc == SQLITE_OK && h->bTrained) {
    rc = ivf_write_buffers(h);
    if (rc == SQLITE_OK) rc = ivf_add(h, iSlot, pVec);
  }
  if (rc == SQLITE_OK) h->bTxnInsert = 1;
  return ivf_unbusy(h, rc);
}

static int ivf_delete(annex_ann *a, sqlite3_int64 iSlot) {
  ivf_ann *h = (ivf_ann *)a;
  int rc;
  if (!ivf_is_float(a->pTab->pConfig)) return SQLITE_OK;
  rc = ivf_ready(h);
  /* The entry stays in its list; searches skip slots that are not live. */
  if (rc == SQLITE_OK) rc = ivf_set_live(h, iSlot, 0);
  return rc;
}

static int ivf_update_vector(annex_ann *a, sqlite3_int64 iSlot,
                             const void *pVec) {
  ivf_ann *h = (ivf_ann *)a;
  int rc;
  if (!ivf_is_float(a->pTab->pConfig)) return SQLITE_OK;
  ivf_busy(h);
  rc = ivf_ready(h);
  if (rc != SQLITE_OK || !h->bTrained) return ivf_unbusy(h, rc);
  rc = ivf_write_buffers(h);
  if (rc == SQLITE_OK) rc = ivf_add(h, iSlot, pVec);
  if (rc == SQLITE_OK) {
    rc = annex_storage_config_set_int(a->pTab, "ivf_updates",
                                      h->nUpdates + 1);
  }
  if (rc == SQLITE_OK) h->nUpdates++;
  return ivf_unbusy(h, rc);
}

/* Training **************************************************************/

/* nlist training would use for n rows. */
static int ivf_nlist_for(const ivf_ann *h, sqlite3_int64 n) {
  return h->nListParam ? h->nListParam : annex_ivf_default_nlist(n);
}

/* Why the index is not trained yet, or NULL when it could be. */
static char *ivf_pending_reason(const ivf_ann *h) {
  const annex_config *c = h->base.pTab->pConfig;
  int nList = ivf_nlist_for(h, h->nLive);
  sqlite3_int64 nNeed = (sqlite3_int64)ANNEX_IVF_MIN_PER_LIST * nList;
  if (!ivf_is_float(c)) {
    return sqlite3_mprintf("ivf indexes float vectors only: this %s table "
                           "answers every query exactly",
                           annex_elem_name(c->eElem));
  }
  if (h->nLive >= nNeed) return NULL;
  return sqlite3_mprintf("pending: training needs at least %d x nlist = %lld "
                         "rows (nlist %d%s), the table has %lld; until then "
                         "queries are answered exactly", ANNEX_IVF_MIN_PER_LIST,
                         nNeed, nList, h->nListParam ? "" : " = 4 sqrt(rows)",
                         h->nLive);
}

/* The live rows: slots and float vectors (sqlite3_malloc64). */
static int ivf_gather(ivf_ann *h, sqlite3_int64 **paSlot, float **paVec,
                      size_t *pn) {
  annex_table *p = h->base.pTab;
  const annex_config *c = p->pConfig;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  size_t n = 0, nMax = (size_t)h->nLive, d = (size_t)c->nDim;
  sqlite3_int64 *aSlot = sqlite3_malloc64(sizeof(sqlite3_int64) * (nMax + 1));
  float *aVec = sqlite3_malloc64(sizeof(float) * d * (nMax + 1));
  float *aChunk = sqlite3_malloc64(c->szVec * (size_t)c->nChunk);
  int rc = aSlot && aVec && aChunk ? SQLITE_OK : SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK &&
         (rc = annex_chunk_iter_next(it, &ch)) == SQLITE_ROW) {
    rc = annex_chunk_iter_vectors(it, 0, ch.nSlot, aChunk);
    for (int i = 0; i < ch.nSlot && rc == SQLITE_OK; i++) {
      if (!annex_bit_get(ch.aValid, i)) continue;
      if (n >= nMax) {
        rc = SQLITE_CORRUPT_VTAB; /* more live rows than the bitmap says */
        break;
      }
      aSlot[n] = ch.iChunk * c->nChunk + i;
      memcpy(aVec + n * d, aChunk + (size_t)i * d, d * sizeof(float));
      n++;
    }
  }
  annex_chunk_iter_close(it);
  sqlite3_free(aChunk);
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc != SQLITE_OK) {
    sqlite3_free(aSlot);
    sqlite3_free(aVec);
    return rc;
  }
  *paSlot = aSlot;
  *paVec = aVec;
  *pn = n;
  return SQLITE_OK;
}

static int ivf_train_progress(void *pCtx, int iIter, int nIter, double r) {
  ivf_ann *h = (ivf_ann *)pCtx;
  (void)r;
  annex_progress_set(h->base.pTab, "ivf train", iIter, nIter);
  return 0;
}

/* Assign and encode every gathered row into per-list entry arrays: the
** lists of the new model, in memory (h->aList). */
static int ivf_fill_lists(ivf_ann *h, const sqlite3_int64 *aSlot,
                          const float *aVec, size_t n) {
  annex_table *p = h->base.pTab;
  size_t d = h->ivf.nDim, sz = h->ivf.szEntry, nB = 1024;
  /* Under device=auto|gpu, blocks large enough for the GPU's assignment
  ** (annex_gpu_kmeans_assign; about 16 MiB of prepared vectors). */
  int bGpu = p->pConfig->eDevice != ANNEX_DEVICE_CPU;
  if (bGpu) nB = (size_t)1 << 22 >= d * 1024 ? ((size_t)1 << 22) / d : 1024;
  int32_t *aL = sqlite3_malloc64(sizeof(int32_t) * nB);
  float *aP = sqlite3_malloc64(sizeof(float) * d * nB);
  int rc = aL && aP ? ivf_write_buffers(h) : SQLITE_NOMEM;
  h->aList = annex_calloc((size_t)h->ivf.nList, sizeof(ivf_list));
  if (h->aList == NULL) rc = SQLITE_NOMEM;
  for (size_t i0 = 0; i0 < n && rc == SQLITE_OK; i0 += nB) {
    size_t m = n - i0 < nB ? n - i0 : nB;
    for (size_t i = 0; i < m; i++) {
      annex_ivf_prepare(&h->ivf, aVec + (i0 + i) * d, aP + i * d);
    }
    if (!bGpu || annex_gpu_kmeans_assign(p, aP, m, d, h->ivf.aCentroid,
                                         (size_t)h->ivf.nList,
                                         h->ivf.eMetric == ANNEX_METRIC_IP, 0,
                                         aL, NULL) != 0) {
      bGpu = 0; /* CPU from here on */
      rc = ivf_core_rc(annex_ivf_assign(&h->ivf, aP, m,
                                        annex_build_threads(), aL));
    }
    for (size_t i = 0; i < m && rc == SQLITE_OK; i++) {
      ivf_list *l = &h->aList[aL[i]];
      rc = ivf_list_reserve(h, l, 1);
      if (rc != SQLITE_OK) break;
      annex_ivf_put_u64(l->a + l->n * sz, (uint64_t)aSlot[i0 + i]);
      annex_ivf_encode(&h->ivf, aVec + (i0 + i) * d, aP + i * d, aL[i],
                       h->aScratch, l->a + l->n * sz + 8);
      l->n++;
    }
    annex_progress_set(p, "ivf assign", (sqlite3_int64)(i0 + m),
                       (sqlite3_int64)n);
  }
  for (int i = 0; rc == SQLITE_OK && i < h->ivf.nList; i++) {
    h->aList[i].bLoaded = 1;
  }
  sqlite3_free(aL);
  sqlite3_free(aP);
  return rc;
}

/* Write the model blobs and every cached list; replaces what was there. */
static int ivf_write_all(ivf_ann *h) {
  annex_table *p = h->base.pTab;
  const annex_config *c = p->pConfig;
  size_t sz = h->ivf.szEntry, nMax = (size_t)h->nChunkMax;
  int rc = ivf_exec(p, NULL, "DELETE FROM \"%w\".\"%w_ivflists\"; DELETE FROM "
                    "\"%w\".\"%w_ivfmodel\"", p->zDb, p->zName, p->zDb,
                    p->zName);
  struct { int id; const float *a; size_t n; } aM[2] = {
      {IVF_MODEL_CENTROIDS, h->ivf.aCentroid,
       (size_t)h->ivf.nList * (size_t)c->nDim},
      {h->eQuant == ANNEX_IVF_PQ ? IVF_MODEL_PQ : IVF_MODEL_SQ8,
       h->eQuant == ANNEX_IVF_PQ ? h->ivf.pq.aCodebook : h->ivf.sq.aMin,
       h->eQuant == ANNEX_IVF_PQ ? (size_t)ANNEX_PQ_KSUB * (size_t)c->nDim
                                 : 2 * (size_t)c->nDim}};
  for (int i = 0; i < (h->eQuant == ANNEX_IVF_FLAT ? 1 : 2) && rc == SQLITE_OK;
       i++) {
    sqlite3_stmt *s = NULL;
    unsigned char *a = sqlite3_malloc64(aM[i].n * 4);
    char *zSql = sqlite3_mprintf("INSERT INTO \"%w\".\"%w_ivfmodel\"(id, data) "
                                 "VALUES(%d, ?)", p->zDb, p->zName, aM[i].id);
    rc = a && zSql ? sqlite3_prepare_v2(p->db, zSql, -1, &s, 0) : SQLITE_NOMEM;
    sqlite3_free(zSql);
    if (rc == SQLITE_OK) {
      ivf_floats_to_le(a, aM[i].a, aM[i].n);
      sqlite3_bind_blob64(s, 1, a, aM[i].n * 4, SQLITE_STATIC);
      sqlite3_step(s);
    }
    if (s) rc = sqlite3_finalize(s);
    sqlite3_free(a);
  }
  for (int iL = 0; iL < h->ivf.nList && rc == SQLITE_OK; iL++) {
    const ivf_list *l = &h->aList[iL];
    for (size_t j = 0, seq = 0; j < l->n && rc == SQLITE_OK; j += nMax, seq++) {
      size_t m = l->n - j < nMax ? l->n - j : nMax;
      rc = ivf_put_chunk(h, ((sqlite3_int64)iL << 32) + (sqlite3_int64)seq,
                         l->a + j * sz, m, m);
    }
  }
  return rc;
}

/* Record the trained state in T_config. */
static int ivf_write_config(ivf_ann *h, sqlite3_int64 nRows) {
  annex_table *p = h->base.pTab;
  int rc = annex_storage_config_set_int(p, "ivf_trained", 1);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "ivf_nlist", h->ivf.nList);
  if (rc == SQLITE_OK) {
    rc = annex_storage_config_set_int(p, "ivf_m", h->eQuant == ANNEX_IVF_PQ
                                                      ? h->ivf.pq.m : 1);
  }
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "ivf_updates", 0);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "ivf_rows", nRows);
  if (rc == SQLITE_OK) {
    h->nUpdates = 0;
    h->nTrainRows = nRows;
  }
  return rc;
}

/* Train a new model on the live rows, assign them all, write everything.
** With bAuto, too few rows is not an error (nothing happens). */
static int ivf_train(ivf_ann *h, int bAuto) {
  annex_table *p = h->base.pTab;
  const annex_config *c = p->pConfig;
  sqlite3_int64 *aSlot = NULL;
  float *aVec = NULL;
  size_t n = 0;
  char *zWhy;
  annex_kmeans_params kp;
  int rc = ivf_ready(h);
  if (rc != SQLITE_OK) return rc;
  zWhy = ivf_pending_reason(h);
  if (zWhy) {
    if (!bAuto) annex_set_error(&p->base, "ivf train: %s", zWhy);
    sqlite3_free(zWhy);
    return bAuto ? SQLITE_OK : SQLITE_ERROR;
  }
  rc = annex_storage_bump_counter(p);
  if (rc == SQLITE_OK) rc = ivf_gather(h, &aSlot, &aVec, &n);
  if (rc != SQLITE_OK) return rc;
  ivf_drop_model(h); /* from here on, memory is the new model or nothing */
  h->iChanges = -1;
  rc = ivf_core_rc(annex_ivf_init(&h->ivf, h->eQuant, c->eMetric,
                                  (size_t)c->nDim, ivf_nlist_for(h, (sqlite3_int64)n),
                                  h->mParam));
  if (rc == SQLITE_OK) {
    h->bTrained = 1;
    memset(&kp, 0, sizeof(kp));
    kp.nIter = IVF_TRAIN_ITER;
    kp.seed = IVF_TRAIN_SEED;
    kp.nThread = annex_build_threads();
    kp.xProgress = ivf_train_progress;
    kp.pProgressCtx = h;
    kp.xAssign = annex_gpu_kmeans_assign; /* the GPU when it pays (gpu.c) */
    kp.pAssignCtx = p;
    annex_progress_set(p, "ivf train", 0,
                       annex_ivf_train_steps(&h->ivf, IVF_TRAIN_ITER));
    rc = ivf_core_rc(annex_ivf_train(&h->ivf, aVec, n, &kp));
  }
  if (rc == SQLITE_OK) rc = ivf_fill_lists(h, aSlot, aVec, n);
  sqlite3_free(aSlot);
  sqlite3_free(aVec);
  if (rc == SQLITE_OK) rc = ivf_write_all(h);
  if (rc == SQLITE_OK) rc = ivf_write_config(h, (sqlite3_int64)n);
  annex_progress_clear(p);
  if (rc == SQLITE_OK) {
    sqlite3_int64 v;
    h->bModel = 1;
    rc = annex_storage_config_int(p, "changes", &v);
    if (rc == SQLITE_OK) h->iChanges = v - 1; /* bumped by this txn */
  }
  if (rc != SQLITE_OK) ivf_drop_all(h);
  return rc;
}

/* Re-assign every live row with the current model (no new training). */
static int ivf_reassign(ivf_ann *h) {
  sqlite3_int64 *aSlot = NULL;
  float *aVec = NULL;
  size_t n = 0;
  int rc = ivf_gather(h, &aSlot, &aVec, &n);
  if (rc == SQLITE_OK) {
    ivf_drop_lists(h);
    rc = ivf_fill_lists(h, aSlot, aVec, n);
  }
  sqlite3_free(aSlot);
  sqlite3_free(aVec);
  annex_progress_clear(h->base.pTab);
  if (rc == SQLITE_OK) rc = ivf_write_all(h);
  if (rc == SQLITE_OK) rc = ivf_write_config(h, h->nTrainRows);
  return rc;
}

/* Rewrite the lists without the entries of deleted rows; after vector
** UPDATEs (a slot may then have entries in two lists), re-assign all. */
static int ivf_optimize(ivf_ann *h) {
  annex_table *p = h->base.pTab;
  size_t sz;
  int rc = ivf_ready(h);
  if (rc != SQLITE_OK || !h->bTrained) return rc;
  rc = annex_storage_bump_counter(p);
  if (rc == SQLITE_OK && h->nUpdates > 0) {
    rc = ivf_reassign(h);
    if (rc != SQLITE_OK) ivf_drop_all(h);
    return rc;
  }
  for (int i = 0; i < h->ivf.nList && rc == SQLITE_OK; i++) {
    rc = ivf_load_list(h, i);
  }
  sz = h->ivf.szEntry;
  for (int i = 0; i < h->ivf.nList && rc == SQLITE_OK; i++) {
    ivf_list *l = &h->aList[i];
    size_t nKeep = 0;
    for (size_t j = 0; j < l->n; j++) {
      int64_t s = (int64_t)annex_ivf_get_u64(l->a + j * sz);
      if (s < 0 || s >= h->nLiveBits || !annex_bit_get(h->aLive, s)) continue;
      if (nKeep != j) memmove(l->a + nKeep * sz, l->a + j * sz, sz);
      nKeep++;
    }
    l->n = nKeep;
  }
  if (rc == SQLITE_OK) rc = ivf_write_all(h);
  if (rc != SQLITE_OK) ivf_drop_all(h);
  return rc;
}

/* Transactions **********************************************************/

static int ivf_sync(annex_ann *a) {
  ivf_ann *h = (ivf_ann *)a;
  int rc = SQLITE_OK;
  if (h->bTxnInsert && ivf_is_float(a->pTab->pConfig)) {
    ivf_busy(h);
    rc = ivf_ready(h);
    if (rc == SQLITE_OK && !h->bTrained) rc = ivf_train(h, 1);
    rc = ivf_unbusy(h, rc);
  }
  h->bTxnInsert = 0;
  h->bTxnBumped = a->pTab->bCounterBumped;
  return rc;
}

/* The cache holds this transaction's writes: after COMMIT it matches the
** counter this transaction bumped (no reload of the lists). */
static void ivf_commit(annex_ann *a) {
  ivf_ann *h = (ivf_ann *)a;
  if (h->bTxnBumped && h->iChanges >= 0) h->iChanges++;
  h->bTxnInsert = h->bTxnBumped = h->bTxnOk = 0;
}

static void ivf_rollback(annex_ann *a) {
  ivf_ann *h = (ivf_ann *)a;
  h->bTxnInsert = h->bTxnBumped = 0;
  ivf_drop_or_defer(h); /* read again from the file, lazily */
}

static int ivf_savepoint(annex_ann *a, int iSavepoint) {
  (void)a;
  (void)iSavepoint;
  return SQLITE_OK;
}

static void ivf_rollback_to(annex_ann *a, int iSavepoint) {
  (void)iSavepoint;
  ivf_drop_or_defer((ivf_ann *)a);
}

/* Search ****************************************************************/

/* Lists a query scans: the knob, else the default; at most nlist. */
static int ivf_nprobe(const ivf_ann *h, const annex_ann_query *q) {
  sqlite3_int64 n = q->nKnob > 0 ? q->nKnob : h->nProbe;
  return n > h->ivf.nList ? h->ivf.nList : (int)n;
}

/* Scan lists aOrder[*piFrom..nOrder) until nWant entries were scored. */
static int ivf_scan_lists(ivf_ann *h, annex_ivf_scan *s, const int32_t *aOrder,
                          int nOrder, int *piFrom, int64_t nWant,
                          const unsigned char *aAccept, int64_t nAccept,
                          annex_topk *top) {
  int rc = SQLITE_OK;
  for (; *piFrom < nOrder && rc == SQLITE_OK; (*piFrom)++) {
    int iL = aOrder[*piFrom];
    if (s->nScored >= nWant) break;
    rc = ivf_load_list(h, iL);
    if (rc != SQLITE_OK) break;
    if (h->aList[iL].n == 0) continue;
    rc = ivf_core_rc(annex_ivf_scan_list(s, iL));
    if (rc != SQLITE_OK) break;
    annex_ivf_scan_block(s, h->aList[iL].a, h->aList[iL].n, aAccept, nAccept,
                         top);
  }
  return rc;
}

/* Re-score candidates with their stored vectors, drop duplicate slots,
** keep the best k in aOut (sorted). Returns the count in *pn. */
static int ivf_rerank(ivf_ann *h, const annex_ann_query *q, annex_hit *aCand,
                      size_t nCand, annex_hit *aOut, size_t *pn) {
  annex_table *p = h->base.pTab;
  annex_topk top;
  size_t nDim = (size_t)p->pConfig->nDim;
  int rc = SQLITE_OK;
  annex_topk_init(&top, aOut, (size_t)q->k);
  /* By slot, so duplicates are adjacent (annex_hits_sort orders by score
  ** first: give every hit the same score for this sort). */
  for (size_t i = 0; i < nCand; i++) aCand[i].score = 0;
  annex_hits_sort(aCand, nCand);
  for (size_t i = 0; i < nCand && rc == SQLITE_OK; i++) {
    if (i > 0 && aCand[i].rowid == aCand[i - 1].rowid) continue;
    rc = annex_storage_read_vector(p, aCand[i].rowid, p->pVecBuf);
    if (rc == SQLITE_OK) {
      annex_topk_push(&top, p->xScore(q->pQuery, p->pVecBuf, nDim),
                      aCand[i].rowid);
    }
  }
  annex_topk_sort(&top);
  *pn = top.n;
  return rc;
}

static int ivf_cmp_slot(const void *pA, const void *pB) {
  sqlite3_int64 x = *(const sqlite3_int64 *)pA, y = *(const sqlite3_int64 *)pB;
  return x < y ? -1 : x > y;
}

/* Drop repeated slots from sorted hits (keeping the first). A slot has one
** entry unless an UPDATE left a stale one (then the hits are re-ranked and
** deduplicated there); a corrupt list may still name a slot twice, and a
** k-NN must never return a row twice. */
static int ivf_dedupe(annex_hit *aHit, size_t *pn) {
  size_t n = *pn, nKeep = 0;
  sqlite3_int64 *aSlot;
  int bDup = 0;
  if (n < 2) return SQLITE_OK;
  aSlot = sqlite3_malloc64(sizeof(sqlite3_int64) * n);
  if (aSlot == NULL) return SQLITE_NOMEM;
  for (size_t i = 0; i < n; i++) aSlot[i] = aHit[i].rowid;
  qsort(aSlot, n, sizeof(aSlot[0]), ivf_cmp_slot);
  for (size_t i = 1; i < n && !bDup; i++) bDup = aSlot[i] == aSlot[i - 1];
  sqlite3_free(aSlot);
  if (!bDup) return SQLITE_OK;
  for (size_t i = 0; i < n; i++) { /* rare (corrupt): quadratic is fine */
    size_t j = 0;
    while (j < nKeep && aHit[j].rowid != aHit[i].rowid) j++;
    if (j == nKeep) aHit[nKeep++] = aHit[i];
  }
  *pn = nKeep;
  return SQLITE_OK;
}

/* The GPU ***************************************************************/

/* Send every list to the GPU, list after list (only live entries count as
** valid), and remember where each starts. SQLITE_OK, ANNEX_GPU_USE_CPU or
** an SQLite error (reading the lists). */
static int ivf_gpu_upload(ivf_ann *h) {
  annex_table *p = h->base.pTab;
  size_t nDim = (size_t)p->pConfig->nDim, sz = h->ivf.szEntry, nMax = 0;
  int nList = h->ivf.nList, rc = SQLITE_OK;
  sqlite3_int64 *aStart, nTotal = 0, *aSlot = NULL;
  float *aVec = NULL;
  unsigned char *aValid = NULL;
  h->iGpuTag = -1;
  aStart = sqlite3_realloc64(h->aGpuStart, sizeof(sqlite3_int64) * (nList + 1));
  if (aStart == NULL) return SQLITE_NOMEM;
  h->aGpuStart = aStart;
  h->nGpuList = nList;
  for (int l = 0; l < nList && rc == SQLITE_OK; l++) {
    rc = ivf_load_list(h, l);
    aStart[l] = nTotal;
    if (rc == SQLITE_OK) nTotal += (sqlite3_int64)h->aList[l].n;
    if (rc == SQLITE_OK && h->aList[l].n > nMax) nMax = h->aList[l].n;
  }
  if (rc != SQLITE_OK) return rc;
  aStart[nList] = nTotal;
  if (nTotal == 0) return ANNEX_GPU_USE_CPU;
  aVec = sqlite3_malloc64(sizeof(float) * nDim * nMax);
  aSlot = sqlite3_malloc64(sizeof(sqlite3_int64) * nMax);
  aValid = sqlite3_malloc64(nMax / 8 + 1);
  if (aVec == NULL || aSlot == NULL || aValid == NULL) rc = SQLITE_NOMEM;
  for (int l = 0; l < nList && rc == SQLITE_OK; l++) {
    const ivf_list *L = &h->aList[l];
    if (L->n == 0) continue;
    memset(aValid, 0, L->n / 8 + 1);
    for (size_t i = 0; i < L->n; i++) {
      const unsigned char *e = L->a + i * sz;
      sqlite3_int64 iSlot = (sqlite3_int64)annex_ivf_get_u64(e);
      aSlot[i] = iSlot;
      ivf_floats_from_le(aVec + i * nDim, e + 8, nDim);
      if (iSlot >= 0 && iSlot < h->nLiveBits && annex_bit_get(h->aLive, iSlot)) {
        aValid[i >> 3] |= (unsigned char)(1u << (i & 7));
      }
    }
    rc = annex_gpu_ranged_upload(p, (size_t)aStart[l], L->n, aVec, aSlot,
                                 aValid, (size_t)nTotal, h->iChanges);
  }
  sqlite3_free(aVec);
  sqlite3_free(aSlot);
  sqlite3_free(aValid);
  if (rc == SQLITE_OK) h->iGpuTag = h->iChanges;
  return rc;
}

/* The cached list entry at GPU position iPos, or NULL when the copy and
** the cache disagree (then the GPU copy is not trusted). */
static const unsigned char *ivf_gpu_entry(const ivf_ann *h, int64_t iPos) {
  int lo = 0, hi = h->nGpuList; /* the list l with start[l] <= iPos */
  if (iPos < 0 || iPos >= h->aGpuStart[h->nGpuList]) return NULL;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (h->aGpuStart[mid] <= iPos) lo = mid;
    else hi = mid;
  }
  iPos -= h->aGpuStart[lo];
  if (!h->aList[lo].bLoaded || (size_t)iPos >= h->aList[lo].n) return NULL;
  return h->aList[lo].a + (size_t)iPos * h->ivf.szEntry;
}

/* Re-score the GPU's candidates with the CPU kernel from the cached flat
** codes, keep the best k in aOut. 1: certified (annex_cuda.h's contract:
** the k equal the CPU scan's of the same lists); 0: not; -1: the copy and
** the cache disagree. */
static int ivf_gpu_certify(const ivf_ann *h, const annex_ivf_scan *s,
                           const annex_cuda_hit *aHit, size_t nHit,
                           size_t nCand, float fFloor, size_t k,
                           annex_hit *aTmp, annex_hit *aOut, size_t *pnOut) {
  size_t nDim = (size_t)h->ivf.nDim;
  for (size_t i = 0; i < nHit; i++) {
    const unsigned char *e = ivf_gpu_entry(h, aHit[i].slot);
    if (e == NULL || (int64_t)annex_ivf_get_u64(e) != aHit[i].rowid) return -1;
    aTmp[i].score = s->xScore(s->pQuery, (const float *)(e + 8), nDim);
    aTmp[i].rowid = aHit[i].rowid;
  }
  annex_hits_sort(aTmp, nHit);
  *pnOut = nHit < k ? nHit : k;
  memcpy(aOut, aTmp, sizeof(annex_hit) * *pnOut);
  return nHit < nCand || (nHit >= k && aTmp[k - 1].score < fFloor);
}

/* The nProbe lists nearest the query scanned on the GPU: SQLITE_OK with
** the answer in aOut, ANNEX_GPU_USE_CPU (not worth it, no device, fewer
** than k entries, not certified: the CPU scans), or an SQLite error. The
** cheap checks come before the probe, which the CPU path would repeat. */
static int ivf_gpu_search(ivf_ann *h, const annex_ann_query *q, int nProbe,
                          int32_t *aOrder, annex_hit *aOut, size_t *pnOut) {
  annex_table *p = h->base.pTab;
  size_t k = (size_t)q->k, nCand = k + ANNEX_CUDA_EXTRA(k), nHit = 0;
  double rWork = (double)nProbe * (double)h->nLive / h->ivf.nList *
                 (double)h->ivf.nDim;
  annex_cuda_hit *aHit = NULL;
  annex_hit *aTmp = NULL;
  uint64_t *aRange = NULL;
  const char *zWhy = "the GPU could not certify the answer";
  float fFloor = 0;
  int bUpload = 0, bCert = 0, nOrder = 0, bScan = 0;
  annex_ivf_scan sc, *s = &sc;
  int rc = annex_gpu_ranged_use(p, q->eDevice, rWork, q->k, h->iChanges,
                                &bUpload);
  if (rc != SQLITE_OK) return rc;
  if (bUpload || h->iGpuTag != h->iChanges || h->nGpuList != h->ivf.nList) {
    rc = ivf_gpu_upload(h);
  }
  if (rc == SQLITE_OK) {
    rc = ivf_core_rc(annex_ivf_scan_init(s, &h->ivf, q->pQuery));
    bScan = rc == SQLITE_OK;
  }
  if (rc == SQLITE_OK) {
    nOrder = annex_ivf_probe(s, nProbe, aOrder);
    if (nOrder < 0) rc = SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK) {
    aRange = sqlite3_malloc64(sizeof(uint64_t) * 2 * (size_t)nOrder);
    aHit = sqlite3_malloc64(sizeof(annex_cuda_hit) * 2 * nCand);
    aTmp = sqlite3_malloc64(sizeof(annex_hit) * 2 * nCand);
    if (aRange == NULL || aHit == NULL || aTmp == NULL) rc = SQLITE_NOMEM;
  }
  for (int i = 0; rc == SQLITE_OK && i < nOrder; i++) {
    aRange[2 * i] = (uint64_t)h->aGpuStart[aOrder[i]];
    aRange[2 * i + 1] = (uint64_t)h->aGpuStart[aOrder[i] + 1];
  }
  /* nCand candidates, then twice as many, then the CPU */
  for (int iTry = 0; rc == SQLITE_OK && !bCert && iTry < 2; iTry++) {
    if (iTry) nCand *= 2;
    if (nCand > ANNEX_CUDA_MAX_CAND) break;
    rc = annex_gpu_ranged_knn(p, (const float *)q->pQuery, nCand, aRange,
                              (size_t)nOrder, aHit, &nHit, &fFloor);
    if (rc != SQLITE_OK) break;
    if (nHit < k) { /* the lists hold fewer: the CPU widens the probe */
      zWhy = "fewer than k entries in the probed lists";
      break;
    }
    bCert = ivf_gpu_certify(h, s, aHit, nHit, nCand, fFloor, k, aTmp, aOut,
                            pnOut);
    if (bCert < 0) { /* never expected: trust the CPU from here on */
      h->iGpuTag = -1;
      zWhy = "the GPU copy disagreed with the lists";
      bCert = 0;
      break;
    }
  }
  if (bScan) annex_ivf_scan_free(s);
  sqlite3_free(aRange);
  sqlite3_free(aHit);
  sqlite3_free(aTmp);
  if (rc == SQLITE_OK) {
    annex_gpu_ranged_done(p, bCert, zWhy);
    if (!bCert) rc = ANNEX_GPU_USE_CPU;
  }
  return rc;
}

/* Search ****************************************************************/

static int ivf_search(annex_ann *a, const annex_ann_query *q,
                      annex_hit **paHit, sqlite3_int64 *pnHit) {
  ivf_ann *h = (ivf_ann *)a;
  const unsigned char *aAccept;
  int64_t nAccept, nMatch, nScored = 0;
  int nProbe, nOrder, iFrom = 0, bExactScores;
  size_t nCand, nOut = 0;
  annex_hit *aCand = NULL, *aOut = NULL;
  int32_t *aOrder = NULL;
  annex_ivf_scan s;
  annex_topk top;
  int rc;
  if (!ivf_is_float(a->pTab->pConfig)) return ANNEX_ANN_EXACT;
  rc = ivf_ready(h);
  if (rc != SQLITE_OK) return rc;
  if (!h->bTrained) return ANNEX_ANN_EXACT;
  nProbe = ivf_nprobe(h, q);
  aAccept = h->aLive;
  nAccept = h->nLiveBits;
  nMatch = h->nLive;
  if (q->aAllowed) {
    /* An exact scan of the allowed rows beats scanning lists when they are
    ** no more than the entries nprobe lists hold. */
    if ((double)q->nAllowed * h->ivf.nList <=
        (double)nProbe * (double)(h->nLive + 1)) {
      return ANNEX_ANN_EXACT;
    }
    aAccept = q->aAllowed;
    nAccept = q->nAllowedSlots;
    nMatch = q->nAllowed;
  }
  /* Exact scores come from the flat codes unless an UPDATE left a stale
  ** entry; otherwise candidates are re-scored from the stored vectors. */
  bExactScores = h->eQuant == ANNEX_IVF_FLAT && h->nUpdates == 0;
  nCand = (size_t)q->k * (bExactScores ? 1 : (size_t)h->nRerank);
  if (h->nUpdates > 0) nCand += (size_t)q->k; /* room for duplicates */
  aCand = sqlite3_malloc64(sizeof(annex_hit) * nCand);
  aOut = sqlite3_malloc64(sizeof(annex_hit) * (size_t)q->k);
  aOrder = sqlite3_malloc64(sizeof(int32_t) * (size_t)h->ivf.nList);
  if (aCand == NULL || aOut == NULL || aOrder == NULL) rc = SQLITE_NOMEM;
  /* Flat codes score exactly: the GPU may scan the same lists, with the
  ** same answer (device=auto and enough work; gpu.c). */
  if (rc == SQLITE_OK && bExactScores && q->aAllowed == NULL &&
      q->eDevice != ANNEX_DEVICE_CPU) {
    rc = ivf_gpu_search(h, q, nProbe, aOrder, aOut, &nOut);
    if (rc == SQLITE_OK) goto done;
    if (rc == ANNEX_GPU_USE_CPU) rc = SQLITE_OK;
  }
again:
  if (rc == SQLITE_OK) {
    rc = ivf_core_rc(annex_ivf_scan_init(&s, &h->ivf, q->pQuery));
  }
  if (rc == SQLITE_OK) {
    iFrom = 0;
    annex_topk_init(&top, aCand, nCand);
    nOrder = annex_ivf_probe(&s, nProbe, aOrder);
    if (nOrder < 0) rc = SQLITE_NOMEM;
    if (rc == SQLITE_OK) {
      rc = ivf_scan_lists(h, &s, aOrder, nOrder, &iFrom, INT64_MAX, aAccept,
                          nAccept, &top);
    }
    /* Too few entries in the probed lists (small lists, a filter): go on
    ** to the next nearest lists until enough candidates are scored. */
    if (rc == SQLITE_OK && s.nScored < (int64_t)nCand && nOrder < h->ivf.nList) {
      nOrder = annex_ivf_probe(&s, h->ivf.nList, aOrder);
      if (nOrder < 0) rc = SQLITE_NOMEM;
      if (rc == SQLITE_OK) {
        rc = ivf_scan_lists(h, &s, aOrder, nOrder, &iFrom, (int64_t)nCand,
                            aAccept, nAccept, &top);
      }
    }
    nScored = s.nScored;
    annex_ivf_scan_free(&s);
  }
  if (rc == SQLITE_OK) {
    if (bExactScores) {
      annex_topk_sort(&top);
      nOut = top.n < (size_t)q->k ? top.n : (size_t)q->k;
      memcpy(aOut, top.a, nOut * sizeof(annex_hit));
      rc = ivf_dedupe(aOut, &nOut);
    } else {
      /* Flat codes after UPDATEs: a live row's own entry scores exactly,
      ** a stale entry (the vector before an UPDATE) does not, and stale
      ** entries can crowd the candidates (rows updated to one vector leave
      ** their old codes all over). The answer is exact over the scanned
      ** lists when the k-th re-scored hit is no worse than every entry left
      ** out (each scores at least the worst candidate); else scan again
      ** with 4x the candidates. */
      int bSome = h->eQuant == ANNEX_IVF_FLAT && top.n == nCand &&
                  nScored > (int64_t)nCand;
      float fWorst = bSome ? top.a[0].score : 0;
      rc = ivf_rerank(h, q, top.a, top.n, aOut, &nOut);
      if (rc == SQLITE_OK && bSome &&
          (nOut < (size_t)q->k || aOut[nOut - 1].score > fWorst)) {
        annex_hit *aNew =
            sqlite3_realloc64(aCand, sizeof(annex_hit) * nCand * 4);
        if (aNew == NULL) {
          rc = SQLITE_NOMEM;
        } else {
          aCand = aNew;
          nCand *= 4;
          nOut = 0;
          goto again;
        }
      }
    }
  }
done:
  sqlite3_free(aCand);
  sqlite3_free(aOrder);
  /* Fewer than k although more rows match: let the exact scan answer. */
  if (rc == SQLITE_OK && nOut < (size_t)q->k && (int64_t)nOut < nMatch) {
    rc = ANNEX_ANN_EXACT;
  }
  if (rc != SQLITE_OK) {
    sqlite3_free(aOut);
    return rc;
  }
  *paHit = aOut;
  *pnHit = (sqlite3_int64)nOut;
  return SQLITE_OK;
}

/* Slot iSlot holds row iRowid (after every insert, and rowid UPDATEs). */
static int ivf_set_rowid(annex_ann *a, sqlite3_int64 iSlot,
                         sqlite3_int64 iRowid) {
  ivf_ann *h = (ivf_ann *)a;
  int rc;
  if (!ivf_is_float(a->pTab->pConfig)) return SQLITE_OK;
  rc = ivf_ready(h);
  if (rc == SQLITE_OK && iSlot >= h->nLiveBits) rc = SQLITE_CORRUPT_VTAB;
  if (rc == SQLITE_OK) h->aRowid[iSlot] = iRowid;
  return rc;
}

/* Slots to rowids; a hit that is not a live row means a lost write. */
static int ivf_rowids(annex_ann *a, annex_hit *aHit, sqlite3_int64 nHit) {
  ivf_ann *h = (ivf_ann *)a;
  for (sqlite3_int64 i = 0; i < nHit; i++) {
    sqlite3_int64 s = aHit[i].rowid;
    if (s < 0 || s >= h->nLiveBits || !annex_bit_get(h->aLive, s)) {
      return SQLITE_CORRUPT_VTAB;
    }
    aHit[i].rowid = h->aRowid[s];
  }
  return SQLITE_OK;
}

/* Commands **************************************************************/

static int ivf_command(annex_ann *a, const char *zCmd, int *pbDone) {
  ivf_ann *h = (ivf_ann *)a;
  *pbDone = 1;
  if (sqlite3_stricmp(zCmd, "train") == 0 ||
      sqlite3_stricmp(zCmd, "rebuild") == 0) {
    ivf_busy(h);
    return ivf_unbusy(h, ivf_train(h, 0));
  }
  if (sqlite3_stricmp(zCmd, "optimize") == 0) {
    ivf_busy(h);
    return ivf_unbusy(h, ivf_optimize(h));
  }
  *pbDone = 0;
  return SQLITE_OK;
}

/* annex_info and integrity-check ****************************************/

static int ivf_info(annex_ann *a, void *pCtx,
                    int (*xAdd)(void *, const char *, const char *)) {
  ivf_ann *h = (ivf_ann *)a;
  static const char *azQ[] = {"", "flat", "sq8", "pq"};
  char z[64];
  char *zState = NULL;
  sqlite3_int64 nCached = 0, nMem = 0;
  int rc = ivf_ready(h);
  if (rc != SQLITE_OK) return rc;
  if (h->bTrained) {
    zState = sqlite3_mprintf("'trained'");
    for (int i = 0; i < h->ivf.nList; i++) {
      if (h->aList[i].bLoaded) {
        nCached++;
        nMem += (sqlite3_int64)(h->aList[i].nAlloc * h->ivf.szEntry);
      }
    }
    nMem += (sqlite3_int64)h->ivf.nList * h->ivf.nDim * 4;
    if (h->eQuant == ANNEX_IVF_PQ) nMem += ANNEX_PQ_KSUB * h->ivf.nDim * 4;
    if (h->eQuant == ANNEX_IVF_SQ8) nMem += 2 * h->ivf.nDim * 4;
    nMem += (sqlite3_int64)h->ivf.nPreBytes; /* pq's per-list tables */
  } else {
    char *zWhy = ivf_pending_reason(h);
    zState = sqlite3_mprintf("%Q", zWhy ? zWhy
                                        : "pending: enough rows; training "
                                          "runs at the next commit that "
                                          "inserts, or on 'train'");
    sqlite3_free(zWhy);
  }
  if (zState == NULL) return SQLITE_NOMEM;
  rc = xAdd(pCtx, "ivf_state", zState);
  sqlite3_free(zState);
  if (rc == SQLITE_OK) {
    sqlite3_snprintf(sizeof(z), z, "'%s'", azQ[h->eQuant]);
    rc = xAdd(pCtx, "ivf_quantizer", z);
  }
  {
    struct { const char *zKey; sqlite3_int64 v; } aFact[] = {
        /* (ivf_nlist, ivf_m, ivf_rows, ivf_updates: T_config's keys) */
        {"ivf_nprobe", h->nProbe},
        {"ivf_rerank", h->nRerank},
        {"ivf_lists_in_memory", nCached},
        {"ivf_code_bytes", h->bTrained ? (sqlite3_int64)h->ivf.szCode : 0},
        {"memory_index", nMem + h->nLiveBits / 8},
    };
    for (size_t i = 0; i < sizeof(aFact) / sizeof(aFact[0]) && rc == SQLITE_OK;
         i++) {
      sqlite3_snprintf(sizeof(z), z, "%lld", aFact[i].v);
      rc = xAdd(pCtx, aFact[i].zKey, z);
    }
  }
  return rc;
}

static int ivf_corrupt(ivf_ann *h, const char *zFmt, sqlite3_int64 v) {
  annex_table *p = h->base.pTab;
  char *z = sqlite3_mprintf(zFmt, v);
  annex_set_error(&p->base, "annex table %s is corrupt: %s", p->zName,
                  z ? z : "ivf index");
  sqlite3_free(z);
  return SQLITE_CORRUPT_VTAB;
}

/* Every list chunk parses and names a list below nlist and slots below the
** slot counter; every live row has an entry. */
static int ivf_integrity(annex_ann *a) {
  ivf_ann *h = (ivf_ann *)a;
  annex_table *p = h->base.pTab;
  unsigned char *aSeen = NULL;
  sqlite3_stmt *s = NULL;
  sqlite3_int64 nSlots, nSeen = 0;
  char *zSql;
  int rc = ivf_ready(h);
  if (rc != SQLITE_OK || !h->bTrained) return rc;
  rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK) {
    aSeen = sqlite3_malloc64((size_t)h->nLiveBits / 8 + 1);
    if (aSeen == NULL) rc = SQLITE_NOMEM;
    else memset(aSeen, 0, (size_t)h->nLiveBits / 8 + 1);
  }
  zSql = sqlite3_mprintf("SELECT id, data FROM \"%w\".\"%w_ivflists\"",
                         p->zDb, p->zName);
  if (zSql == NULL && rc == SQLITE_OK) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(p->db, zSql, -1, &s, 0);
  sqlite3_free(zSql);
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    const unsigned char *d = sqlite3_column_blob(s, 1);
    size_t nByte = (size_t)sqlite3_column_bytes(s, 1), sz = h->ivf.szEntry, n;
    if (id < 0 || (id >> 32) >= h->ivf.nList) {
      rc = ivf_corrupt(h, "ivf list chunk %lld names no list", id);
      break;
    }
    if (nByte < 8 || (nByte - 8) % sz || 8 + (n = ivf_get_u32(d)) * sz > nByte) {
      rc = ivf_corrupt(h, "ivf list chunk %lld does not parse", id);
      break;
    }
    for (size_t j = 0; j < n; j++) {
      int64_t iSlot = (int64_t)annex_ivf_get_u64(d + 8 + j * sz);
      if (iSlot < 0 || iSlot >= nSlots) {
        rc = ivf_corrupt(h, "ivf list entry names slot %lld, beyond the "
                         "slot counter", iSlot);
        break;
      }
      if (iSlot < h->nLiveBits && annex_bit_get(h->aLive, iSlot)) {
        /* Without UPDATEs since training a live row has one entry (a
        ** search would return it twice), and a flat code is the row's
        ** vector (a search takes its distance from the code). */
        if (annex_bit_get(aSeen, iSlot) && h->nUpdates == 0) {
          rc = ivf_corrupt(h, "slot %lld has two ivf list entries", iSlot);
          break;
        }
        if (h->eQuant == ANNEX_IVF_FLAT && h->nUpdates == 0) {
          rc = annex_storage_read_vector(p, iSlot, p->pVecBuf);
          if (rc == SQLITE_OK &&
              memcmp(p->pVecBuf, d + 8 + j * sz + 8, sz - 8) != 0) {
            rc = ivf_corrupt(h, "the ivf list entry of slot %lld is not its "
                             "vector", iSlot);
          }
          if (rc != SQLITE_OK) break;
        }
        if (!annex_bit_get(aSeen, iSlot)) nSeen++;
        aSeen[iSlot >> 3] |= (unsigned char)(1u << (iSlot & 7));
      }
    }
  }
  if (s) {
    int rc2 = sqlite3_finalize(s);
    if (rc == SQLITE_OK) rc = rc2;
  }
  sqlite3_free(aSeen);
  if (rc == SQLITE_OK && nSeen != h->nLive) {
    annex_set_error(&p->base, "annex table %s is corrupt: %lld live rows but "
                    "%lld of them are in an ivf list", p->zName, h->nLive,
                    nSeen);
    rc = SQLITE_CORRUPT_VTAB;
  }
  return rc;
}

/* Lifecycle *************************************************************/

static int ivf_open(annex_table *p, annex_ann **pp) {
  ivf_ann *h = sqlite3_malloc64(sizeof(*h));
  ivf_prm r;
  char *zErr = NULL;
  int rc;
  *pp = NULL;
  if (h == NULL) return SQLITE_NOMEM;
  memset(h, 0, sizeof(*h));
  rc = ivf_params_parse(p->pConfig, &r, &zErr); /* checked at CREATE */
  sqlite3_free(zErr);
  if (rc != SQLITE_OK) {
    sqlite3_free(h);
    return SQLITE_CORRUPT_VTAB;
  }
  h->base.pOps = &annex_ivf_ops;
  h->base.pTab = p;
  h->iChanges = -1;
  h->iGpuTag = -1;
  h->nListParam = r.nList;
  h->eQuant = r.eQuant;
  h->mParam = r.m;
  h->nRerank = r.nRerank;
  h->nProbe = r.nProbe;
  *pp = &h->base;
  return SQLITE_OK;
}

static void ivf_close(annex_ann *a) {
  ivf_ann *h = (ivf_ann *)a;
  if (h == NULL) return;
  ivf_drop_all(h);
  ivf_finalize(h);
  sqlite3_free(h->aGpuStart);
  sqlite3_free(h->aScratch);
  sqlite3_free(h->aEntry);
  sqlite3_free(h);
}

const annex_ann_ops annex_ivf_ops = {
    /* zKind         */ "ivf",
    /* zKnob         */ "nprobe",
    /* xParams       */ ivf_params,
    /* xCreate       */ ivf_create,
    /* xDestroy      */ ivf_destroy,
    /* xRename       */ ivf_rename,
    /* azShadow      */ g_azIvfShadow,
    /* xOpen         */ ivf_open,
    /* xClose        */ ivf_close,
    /* xInsert       */ ivf_insert,
    /* xDelete       */ ivf_delete,
    /* xUpdateVector */ ivf_update_vector,
    /* xSync         */ ivf_sync,
    /* xCommit       */ ivf_commit,
    /* xRollback     */ ivf_rollback,
    /* xSavepoint    */ ivf_savepoint,
    /* xRollbackTo   */ ivf_rollback_to,
    /* xSearch       */ ivf_search,
    /* xCommand      */ ivf_command,
    /* xInfo         */ ivf_info,
    /* xIntegrity    */ ivf_integrity,
    /* xSetRowid     */ ivf_set_rowid,
    /* xRowids       */ ivf_rowids,
    /* xReadVectors  */ NULL,
};
