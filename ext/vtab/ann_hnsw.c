/*
** ann_hnsw.c — index=hnsw: an HNSW graph over the table's vectors, kept in
** a shadow table, searched in memory (the graph itself is ext/index/hnsw.c).
**
**   index=hnsw                 defaults
**   index=hnsw(m=16, ef_construction=200, ef_search=64, codes=1)
**   ... WHERE embedding MATCH ?1 AND k = 10 AND ef_search = 128
**   INSERT INTO t(t) VALUES('rebuild')    -- the graph anew, in parallel
**   INSERT INTO t(t) VALUES('optimize')   -- drop deleted nodes, re-link
**
** Database format (adds to storage.c's; format version 1) for table T:
**
**   T_hnsw(id INTEGER PRIMARY KEY, node BLOB NOT NULL)
**       one row per graph node; id is the global slot of its vector in
**       T_chunks; node is the record documented in ext/index/hnsw.h
**       (level, then per level a u16 count and that many u32 neighbour ids).
**       A node whose row was deleted stays (a tombstone) until 'optimize'.
**   T_config keys
**       hnsw_entry     integer, id of the entry point, -1 when empty
**       hnsw_levels    integer, level of the entry point
**       hnsw_m, hnsw_ef_construction   the build parameters in force
**
** Every live row has a node once its transaction commits. Rows inserted by
** a transaction are buffered in memory and linked into the graph in xSync,
** in parallel when there are many (that is what makes "many INSERTs in one
** transaction" as fast as 'rebuild'); until then searches in that
** transaction score them exactly. UPDATE of a vector re-links its node.
**
** codes=1 (the default) lets queries walk the graph over 8-bit code rows
** of the vectors, kept in memory only and re-ranked with the floats (see
** ext/index/hnsw.c); codes=0 scores floats all the way, for a quarter less
** memory. annex_info's hnsw_codes says whether codes are in use (they need
** float32 storage and >= 32 dimensions).
**
** Memory: the graph in memory is a cache of T_hnsw plus the vectors. It is
** valid while T_config's change counter equals the value it was loaded at
** (or that value + 1 inside this connection's own write transaction), and
** is dropped on any rollback that touched it; nodes then load lazily again,
** one record and one vector per node a search meets. Once all of it is in
** memory it is laid out in search order (bRelayout), and a query on a
** table without tombstones walks without the live bitmap.
*/
#include "ann.h"
#include "../index/alloc.h"
#include "../index/flat.h"
#include "../index/hnsw.h"

#include <stdarg.h>
#include <string.h>

#define HNSW_DEFAULT_M 16
#define HNSW_DEFAULT_EFC 200
#define HNSW_DEFAULT_EFS 64
/* Below this many rows to link, a commit links them one by one, loading
** only the nodes it meets; above, it loads the graph and links in parallel. */
#define HNSW_SERIAL_MAX 2000

typedef struct hnsw_ann {
  annex_ann base;           /* must be first */
  annex_hnsw_params prm;    /* build parameters */
  int efSearch;             /* default ef_search */
  annex_hnsw *g;            /* the graph cache (owned) */
  int bFull;                /* every node of T_hnsw is in g */
  int bRelayout;            /* lay g out before the next search */
  sqlite3_int64 iChanges;   /* change counter g matches; -1: unknown */
  unsigned char *aLive;     /* live slots (owned), valid when bLive */
  sqlite3_int64 *aRowid;    /* rowid of each slot < nLiveBits (owned) */
  unsigned int iDataVersion;/* SQLITE_FCNTL_DATA_VERSION at validation */
  sqlite3_int64 nLiveBits;  /* bits in aLive */
  sqlite3_int64 nLive;      /* set bits */
  int bLive;                /* aLive is loaded */
  uint32_t *aPend;          /* slots written by this transaction (owned) */
  unsigned char *aPendVec;  /* their vectors, szVec each (owned) */
  int nPend, nPendAlloc;
  /* aPend[0..nBase) are linked already (a command linked them inside the
  ** transaction): kept until it ends, since a ROLLBACK TO a savepoint
  ** taken before that link undoes it in the file (found by fuzz_ann) */
  int nBase;
  unsigned char *aPendBits; /* bit per slot: in aPend (owned) */
  unsigned char *aPendDup;  /* bit per slot: in aPend more than once */
  sqlite3_int64 nPendBits;  /* bits in both */
  int *aSave;               /* nPend, nBase at each savepoint (owned) */
  int nSave;
  int bTxnGraph;            /* this transaction changed g or T_hnsw */
  int bTxnOk;               /* validated inside this write transaction */
  sqlite3_int64 nIdLimit;   /* ids records may name: the slot counter */
  unsigned char *aRec;      /* record buffer of the lazy loader (owned) */
  size_t nRecAlloc;
  sqlite3_stmt *pGet, *pPut, *pDel; /* T_hnsw statements (owned) */
} hnsw_ann;

static int hnsw_rc(int rc) {
  switch (rc) {
    case ANNEX_HNSW_OK: return SQLITE_OK;
    case ANNEX_HNSW_NOMEM: return SQLITE_NOMEM;
    case ANNEX_HNSW_CORRUPT:
    case ANNEX_HNSW_RANGE:
    case ANNEX_HNSW_ABSENT: return SQLITE_CORRUPT_VTAB;
  }
  return rc; /* an SQLite code from the io callbacks */
}

/* Parameters ************************************************************/

static int hnsw_params(const annex_config *c, char **pzErr) {
  static const char *azKey[] = {"m", "ef_construction", "ef_search",
                                "codes"};
  int m = HNSW_DEFAULT_M, efc = HNSW_DEFAULT_EFC, efs = HNSW_DEFAULT_EFS;
  int codes = 1, rc = SQLITE_OK;
  for (int i = 0; i < c->nParam; i++) {
    size_t j = 0;
    while (j < 4 && strcmp(c->aParam[i].zKey, azKey[j]) != 0) j++;
    if (j == 4) {
      *pzErr = sqlite3_mprintf("unknown hnsw parameter '%s' (parameters: m, "
                               "ef_construction, ef_search, codes)",
                               c->aParam[i].zKey);
      return SQLITE_ERROR;
    }
  }
  if (c->eElem == ANNEX_ELEM_BIT && c->eMetric != ANNEX_METRIC_HAMMING) {
    rc = SQLITE_INTERNAL; /* config.c already refuses this */
  }
  if (rc == SQLITE_OK) rc = annex_param_int(c, "m", 2, 128, &m, pzErr);
  if (rc == SQLITE_OK) {
    rc = annex_param_int(c, "ef_construction", 1, 4096, &efc, pzErr);
  }
  if (rc == SQLITE_OK) {
    rc = annex_param_int(c, "ef_search", 1, 65536, &efs, pzErr);
  }
  if (rc == SQLITE_OK) rc = annex_param_int(c, "codes", 0, 1, &codes, pzErr);
  return rc;
}

static void hnsw_params_read(const annex_config *c, annex_hnsw_params *prm,
                             int *pefSearch) {
  char *zErr = NULL;
  int m = HNSW_DEFAULT_M, efc = HNSW_DEFAULT_EFC, efs = HNSW_DEFAULT_EFS;
  int codes = 1;
  /* Checked by hnsw_params at parse time: no error can come back. */
  annex_param_int(c, "m", 2, 128, &m, &zErr);
  annex_param_int(c, "ef_construction", 1, 4096, &efc, &zErr);
  annex_param_int(c, "ef_search", 1, 65536, &efs, &zErr);
  annex_param_int(c, "codes", 0, 1, &codes, &zErr);
  sqlite3_free(zErr);
  memset(prm, 0, sizeof(*prm));
  prm->eElem = c->eElem;
  prm->eMetric = c->eMetric;
  prm->nDim = (size_t)c->nDim;
  prm->M = m;
  prm->efConstruction = efc < m ? m : efc;
  prm->seed = 0x616e6e6578ULL; /* fixed: rebuilds are reproducible */
  prm->bExact = !codes;
  *pefSearch = efs;
}

/* Schema ****************************************************************/

static int hnsw_exec(annex_table *p, char **pzErr, const char *zFmt, ...) {
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

static int hnsw_create(annex_table *p, char **pzErr) {
  annex_hnsw_params prm;
  int efs, rc;
  hnsw_params_read(p->pConfig, &prm, &efs);
  rc = hnsw_exec(p, pzErr, "CREATE TABLE \"%w\".\"%w_hnsw\"(id INTEGER "
                 "PRIMARY KEY, node BLOB NOT NULL)", p->zDb, p->zName);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "hnsw_entry", -1);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "hnsw_levels", 0);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "hnsw_m", prm.M);
  if (rc == SQLITE_OK) {
    rc = annex_storage_config_set_int(p, "hnsw_ef_construction",
                                      prm.efConstruction);
  }
  return rc;
}

static int hnsw_destroy(annex_table *p) {
  return hnsw_exec(p, NULL, "DROP TABLE IF EXISTS \"%w\".\"%w_hnsw\"",
                   p->zDb, p->zName);
}

static int hnsw_rename(annex_table *p, const char *zNew) {
  hnsw_ann *h = (hnsw_ann *)p->pAnn;
  if (h) { /* statements name the old table */
    sqlite3_finalize(h->pGet);
    sqlite3_finalize(h->pPut);
    sqlite3_finalize(h->pDel);
    h->pGet = h->pPut = h->pDel = NULL;
  }
  return hnsw_exec(p, NULL, "ALTER TABLE \"%w\".\"%w_hnsw\" RENAME TO "
                   "\"%w_hnsw\"", p->zDb, p->zName, zNew);
}

static const char *const g_azHnswShadow[] = {"hnsw", NULL};

/* Statements ************************************************************/

static int hnsw_stmt(hnsw_ann *h, sqlite3_stmt **pp, const char *zFmt) {
  annex_table *p = h->base.pTab;
  char *zSql;
  int rc;
  if (*pp) return SQLITE_OK;
  zSql = sqlite3_mprintf(zFmt, p->zDb, p->zName);
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_prepare_v3(p->db, zSql, -1, SQLITE_PREPARE_PERSISTENT, pp, 0);
  sqlite3_free(zSql);
  /* T_hnsw is gone (a corrupt schema): keep the reason, which a failing
  ** xSync would otherwise lose. */
  if (rc != SQLITE_OK) annex_set_error(&p->base, "%s", sqlite3_errmsg(p->db));
  return rc;
}

static int hnsw_put_record(hnsw_ann *h, uint32_t id) {
  size_t n = 0;
  int rc = hnsw_rc(annex_hnsw_record(h->g, id, NULL, &n));
  if (rc == SQLITE_OK && n > h->nRecAlloc) {
    unsigned char *a = sqlite3_realloc64(h->aRec, n);
    if (a == NULL) return SQLITE_NOMEM;
    h->aRec = a;
    h->nRecAlloc = n;
  }
  if (rc == SQLITE_OK) rc = hnsw_rc(annex_hnsw_record(h->g, id, h->aRec, &n));
  if (rc == SQLITE_OK) {
    rc = hnsw_stmt(h, &h->pPut, "INSERT OR REPLACE INTO \"%w\".\"%w_hnsw\""
                   "(id, node) VALUES(?, ?)");
  }
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(h->pPut, 1, id);
    sqlite3_bind_blob(h->pPut, 2, h->aRec, (int)n, SQLITE_STATIC);
    sqlite3_step(h->pPut);
    rc = sqlite3_reset(h->pPut);
  }
  return rc;
}

static int hnsw_del_record(hnsw_ann *h, uint32_t id) {
  int rc = hnsw_stmt(h, &h->pDel, "DELETE FROM \"%w\".\"%w_hnsw\" WHERE "
                     "id = ?");
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(h->pDel, 1, id);
    sqlite3_step(h->pDel);
    rc = sqlite3_reset(h->pDel);
  }
  return rc;
}

/* Lazy loading (annex_hnsw_io) ******************************************/

static int hnsw_io_record(void *pCtx, uint32_t id, const unsigned char **pa,
                          size_t *pn) {
  hnsw_ann *h = (hnsw_ann *)pCtx;
  int rc = hnsw_stmt(h, &h->pGet, "SELECT node FROM \"%w\".\"%w_hnsw\" "
                     "WHERE id = ?");
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(h->pGet, 1, id);
  if (sqlite3_step(h->pGet) == SQLITE_ROW) {
    size_t n = (size_t)sqlite3_column_bytes(h->pGet, 0);
    const void *a = sqlite3_column_blob(h->pGet, 0);
    if (n > h->nRecAlloc) {
      unsigned char *aNew = sqlite3_realloc64(h->aRec, n);
      if (aNew == NULL) {
        sqlite3_reset(h->pGet);
        return SQLITE_NOMEM;
      }
      h->aRec = aNew;
      h->nRecAlloc = n;
    }
    if (n) memcpy(h->aRec, a, n);
    *pa = h->aRec;
    *pn = n;
    return sqlite3_reset(h->pGet);
  }
  rc = sqlite3_reset(h->pGet);
  return rc == SQLITE_OK ? ANNEX_HNSW_ABSENT : rc;
}

static int hnsw_io_vector(void *pCtx, uint32_t id, void *out) {
  hnsw_ann *h = (hnsw_ann *)pCtx;
  annex_table *p = h->base.pTab;
  int rc = annex_storage_read_vector(p, id, out);
  /* A tombstone whose chunk is gone: every slot of it was deleted. */
  if (rc == SQLITE_CORRUPT_VTAB && p->pReadBlob == NULL) {
    return ANNEX_HNSW_ABSENT;
  }
  return rc;
}

/* Cache validity ********************************************************/

static void hnsw_drop_live(hnsw_ann *h) {
  sqlite3_free(h->aLive);
  sqlite3_free(h->aRowid);
  h->aLive = NULL;
  h->aRowid = NULL;
  h->nLiveBits = h->nLive = 0;
  h->bLive = 0;
}

static void hnsw_drop_graph(hnsw_ann *h) {
  annex_hnsw_reset(h->g);
  annex_hnsw_clear_dirty(h->g);
  h->bFull = 0;
  h->bRelayout = 0;
  h->iChanges = -1;
  /* validate must reload the entry point, inside a write transaction too
  ** (a ROLLBACK TO that dropped the graph left it at -1: fuzz_ann) */
  h->bTxnOk = 0;
}

/* Read the entry point from T_config into the graph. */
static int hnsw_load_entry(hnsw_ann *h) {
  annex_table *p = h->base.pTab;
  sqlite3_int64 iEntry = -1, nLevel = 0;
  int rc = annex_storage_config_int(p, "hnsw_entry", &iEntry);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "hnsw_levels", &nLevel);
  if (rc == SQLITE_OK && (iEntry < -1 || iEntry >= ((sqlite3_int64)1 << 31) ||
                          nLevel < 0 || nLevel > ANNEX_HNSW_MAX_LEVEL)) {
    rc = SQLITE_CORRUPT_VTAB;
  }
  if (rc == SQLITE_OK) annex_hnsw_set_entry(h->g, iEntry, (int)nLevel);
  return rc;
}

/* Make the graph cache agree with the file: drop it if another connection
** wrote since it was loaded. Called before every use. */
static int hnsw_validate(hnsw_ann *h) {
  annex_table *p = h->base.pTab;
  sqlite3_int64 v;
  unsigned int dv = 0;
  int rc;
  if (h->bTxnOk) return SQLITE_OK; /* nobody else writes until we end */
  /* The pager's data version moves with every change to the file: while it
  ** stands still the counter cannot have moved, and reading it is skipped. */
  if (sqlite3_file_control(p->db, p->zDb, SQLITE_FCNTL_DATA_VERSION, &dv) !=
      SQLITE_OK) {
    dv = h->iDataVersion + 1;
  }
  if (h->iChanges >= 0 && dv == h->iDataVersion && !p->bCounterBumped) {
    return SQLITE_OK;
  }
  rc = annex_storage_config_int(p, "changes", &v);
  if (rc != SQLITE_OK) return rc;
  if (h->iChanges >= 0 &&
      (v == h->iChanges || (p->bCounterBumped && v == h->iChanges + 1))) {
    h->bTxnOk = p->bCounterBumped;
    h->iDataVersion = dv;
    return SQLITE_OK;
  }
  /* Another writer while this transaction has rows to link cannot be (a
  ** cache this transaction dropped itself, iChanges -1, is reloaded). */
  if (h->nPend > h->nBase && h->iChanges >= 0) return SQLITE_CORRUPT_VTAB;
  hnsw_drop_graph(h);
  hnsw_drop_live(h);
  rc = hnsw_load_entry(h);
  /* A counter already bumped by this transaction's first write belongs to
  ** the state the cache is loaded from plus this transaction. */
  if (rc == SQLITE_OK) h->iChanges = p->bCounterBumped ? v - 1 : v;
  if (rc == SQLITE_OK) h->bTxnOk = p->bCounterBumped;
  h->iDataVersion = dv;
  return rc;
}

/* The live-slot bitmap, from the chunks' valid bitmaps. */
static int hnsw_load_live(hnsw_ann *h) {
  annex_table *p = h->base.pTab;
  const annex_config *c = p->pConfig;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  sqlite3_int64 nSlots;
  int rc;
  if (h->bLive) return SQLITE_OK;
  rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK) {
    /* Records name slots below the counter: a corrupt one naming more
    ** must not make the graph reserve room for ids that do not exist. */
    h->nIdLimit = nSlots;
    annex_hnsw_set_id_limit(h->g, (uint64_t)nSlots);
    /* Room for every slot at once: the graph's large arrays are then
    ** allocated once, at their size, and can be backed by huge pages
    ** (grown piecemeal by lazy loads, they are moved and split). */
    rc = hnsw_rc(annex_hnsw_reserve(h->g, (uint32_t)nSlots));
  }
  if (rc == SQLITE_OK) {
    h->nLiveBits = (nSlots + 7) / 8 * 8 + 64;
    h->aLive = sqlite3_malloc64((size_t)h->nLiveBits / 8);
    h->aRowid = sqlite3_malloc64(sizeof(sqlite3_int64) * (size_t)h->nLiveBits);
    if (h->aLive == NULL || h->aRowid == NULL) rc = SQLITE_NOMEM;
    else memset(h->aLive, 0, (size_t)h->nLiveBits / 8);
  }
  h->nLive = 0;
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK && (rc = annex_chunk_iter_next(it, &ch)) == SQLITE_ROW) {
    sqlite3_int64 i0 = ch.iChunk * c->nChunk;
    rc = SQLITE_OK;
    for (int i = 0; i < ch.nSlot; i++) {
      h->aRowid[i0 + i] = ch.aRowid[i];
      if (annex_bit_get(ch.aValid, i)) {
        h->aLive[(i0 + i) >> 3] |= (unsigned char)(1u << ((i0 + i) & 7));
        h->nLive++;
      }
    }
  }
  annex_chunk_iter_close(it);
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc == SQLITE_OK) h->bLive = 1;
  else hnsw_drop_live(h);
  return rc;
}

static int hnsw_set_live(hnsw_ann *h, sqlite3_int64 iSlot, int bOn) {
  if (iSlot >= h->nLiveBits) {
    sqlite3_int64 nNew = ((iSlot + 1) * 2 + 64 + 7) / 8 * 8;
    unsigned char *a = sqlite3_realloc64(h->aLive, (size_t)nNew / 8);
    sqlite3_int64 *r;
    if (a == NULL) return SQLITE_NOMEM;
    memset(a + h->nLiveBits / 8, 0, (size_t)(nNew - h->nLiveBits) / 8);
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

/* Both caches ready for a write or a search. */
static int hnsw_ready(hnsw_ann *h) {
  int rc = hnsw_validate(h);
  if (rc == SQLITE_OK) rc = hnsw_load_live(h);
  return rc;
}

/* Writes ****************************************************************/

static int hnsw_pend_bits_grow(hnsw_ann *h, sqlite3_int64 iSlot) {
  sqlite3_int64 nNew = (iSlot + 1) * 2 + 64;
  size_t nOld = (size_t)h->nPendBits / 8, nByte = (size_t)(nNew + 7) / 8;
  unsigned char *a = sqlite3_realloc64(h->aPendBits, nByte);
  unsigned char *d;
  if (a == NULL) return SQLITE_NOMEM;
  h->aPendBits = a;
  d = sqlite3_realloc64(h->aPendDup, nByte);
  if (d == NULL) return SQLITE_NOMEM;
  h->aPendDup = d;
  memset(a + nOld, 0, nByte - nOld);
  memset(d + nOld, 0, nByte - nOld);
  h->nPendBits = (sqlite3_int64)nByte * 8;
  return SQLITE_OK;
}

static void hnsw_pend_mark(hnsw_ann *h, uint32_t id) {
  unsigned char m = (unsigned char)(1u << (id & 7));
  if (h->aPendBits[id >> 3] & m) h->aPendDup[id >> 3] |= m;
  h->aPendBits[id >> 3] |= m;
}

/* Rebuild the pending bitmaps from aPend (after a ROLLBACK TO). */
static void hnsw_pend_remark(hnsw_ann *h) {
  if (h->nPendBits == 0) return;
  memset(h->aPendBits, 0, (size_t)h->nPendBits / 8);
  memset(h->aPendDup, 0, (size_t)h->nPendBits / 8);
  for (int i = h->nBase; i < h->nPend; i++) hnsw_pend_mark(h, h->aPend[i]);
}

static int hnsw_is_pending(const hnsw_ann *h, uint32_t id) {
  return id < h->nPendBits && annex_bit_get(h->aPendBits, id);
}

/* Remember slot iSlot (vector pVec) to be linked at commit. */
static int hnsw_pend(hnsw_ann *h, sqlite3_int64 iSlot, const void *pVec) {
  size_t szVec = h->base.pTab->pConfig->szVec;
  if (iSlot >= ((sqlite3_int64)1 << 31)) {
    return annex_set_error(&h->base.pTab->base, "hnsw: slot %lld is beyond "
                           "the 2^31 nodes a graph can address; run "
                           "'rebuild' on a VACUUMed copy", iSlot);
  }
  if (h->nPend == h->nPendAlloc) {
    int nNew = h->nPendAlloc ? 2 * h->nPendAlloc : 64;
    uint32_t *a = sqlite3_realloc64(h->aPend, sizeof(uint32_t) * (size_t)nNew);
    unsigned char *v;
    if (a == NULL) return SQLITE_NOMEM;
    h->aPend = a;
    v = sqlite3_realloc64(h->aPendVec, szVec * (size_t)nNew);
    if (v == NULL) return SQLITE_NOMEM;
    h->aPendVec = v;
    h->nPendAlloc = nNew;
  }
  if (iSlot >= h->nPendBits && hnsw_pend_bits_grow(h, iSlot) != SQLITE_OK) {
    return SQLITE_NOMEM;
  }
  hnsw_pend_mark(h, (uint32_t)iSlot);
  h->aPend[h->nPend] = (uint32_t)iSlot;
  memcpy(h->aPendVec + szVec * (size_t)h->nPend, pVec, szVec);
  h->nPend++;
  return SQLITE_OK;
}

static int hnsw_insert(annex_ann *a, sqlite3_int64 iSlot, const void *pVec) {
  hnsw_ann *h = (hnsw_ann *)a;
  int rc = hnsw_ready(h);
  if (rc == SQLITE_OK) rc = hnsw_pend(h, iSlot, pVec);
  if (rc == SQLITE_OK) rc = hnsw_set_live(h, iSlot, 1);
  if (rc == SQLITE_OK && iSlot >= h->nIdLimit) {
    h->nIdLimit = iSlot + 1;
    annex_hnsw_set_id_limit(h->g, (uint64_t)h->nIdLimit);
  }
  return rc;
}

static int hnsw_delete(annex_ann *a, sqlite3_int64 iSlot) {
  hnsw_ann *h = (hnsw_ann *)a;
  int rc = hnsw_ready(h);
  /* The node stays as a tombstone: searches skip it ('optimize' drops it). */
  if (rc == SQLITE_OK) rc = hnsw_set_live(h, iSlot, 0);
  return rc;
}

static int hnsw_set_rowid(annex_ann *a, sqlite3_int64 iSlot,
                          sqlite3_int64 iRowid) {
  hnsw_ann *h = (hnsw_ann *)a;
  int rc = hnsw_ready(h);
  if (rc == SQLITE_OK && iSlot >= h->nLiveBits) rc = SQLITE_CORRUPT_VTAB;
  if (rc == SQLITE_OK) h->aRowid[iSlot] = iRowid;
  return rc;
}

/* Slots to rowids; a hit that is not a live row means the index lost a
** write. */
static int hnsw_rowids(annex_ann *a, annex_hit *aHit, sqlite3_int64 nHit) {
  hnsw_ann *h = (hnsw_ann *)a;
  for (sqlite3_int64 i = 0; i < nHit; i++) {
    sqlite3_int64 s = aHit[i].rowid;
    if (s < 0 || s >= h->nLiveBits || !annex_bit_get(h->aLive, s)) {
      return SQLITE_CORRUPT_VTAB;
    }
    aHit[i].rowid = h->aRowid[s];
  }
  return SQLITE_OK;
}

static int hnsw_update_vector(annex_ann *a, sqlite3_int64 iSlot,
                              const void *pVec) {
  hnsw_ann *h = (hnsw_ann *)a;
  int rc = hnsw_ready(h);
  if (rc == SQLITE_OK) rc = hnsw_pend(h, iSlot, pVec); /* re-linked at sync */
  /* A node loaded from now on in this transaction gets the new vector from
  ** T_chunks: a rollback must not leave it in the cache (found by
  ** fuzz_ann: after ROLLBACK the row came back at its discarded distance). */
  h->bTxnGraph = 1;
  return rc;
}

/* Transactions **********************************************************/

/* Free the write buffer after a big transaction (a bulk load's copy of its
** vectors); small ones keep it for the next transaction. */
static void hnsw_pend_release(hnsw_ann *h) {
  if (h->nPendAlloc <= 4096) return;
  sqlite3_free(h->aPend);
  sqlite3_free(h->aPendVec);
  sqlite3_free(h->aPendBits);
  sqlite3_free(h->aPendDup);
  h->aPend = NULL;
  h->aPendVec = NULL;
  h->aPendBits = h->aPendDup = NULL;
  h->nPendAlloc = 0;
  h->nPendBits = 0;
}

static void hnsw_end_txn(hnsw_ann *h) {
  h->bTxnOk = 0;
  h->nPend = h->nBase = 0;
  hnsw_pend_release(h);
  hnsw_pend_remark(h);
  h->nSave = 0;
  h->bTxnGraph = 0;
}

static void hnsw_commit(annex_ann *a) { hnsw_end_txn((hnsw_ann *)a); }

static void hnsw_rollback(annex_ann *a) {
  hnsw_ann *h = (hnsw_ann *)a;
  if (h->bTxnGraph) hnsw_drop_graph(h);
  hnsw_drop_live(h);
  hnsw_end_txn(h);
}

static int hnsw_savepoint(annex_ann *a, int iSavepoint) {
  hnsw_ann *h = (hnsw_ann *)a;
  if (iSavepoint < 0) return SQLITE_OK;
  if (iSavepoint >= h->nSave) {
    int *aNew = sqlite3_realloc64(h->aSave,
                                  2 * sizeof(int) * (size_t)(iSavepoint + 1));
    if (aNew == NULL) return SQLITE_NOMEM;
    for (int i = h->nSave; i < iSavepoint; i++) {
      aNew[2 * i] = h->nPend;
      aNew[2 * i + 1] = h->nBase;
    }
    h->aSave = aNew;
    h->nSave = iSavepoint + 1;
  }
  h->aSave[2 * iSavepoint] = h->nPend;
  h->aSave[2 * iSavepoint + 1] = h->nBase;
  return SQLITE_OK;
}

static void hnsw_rollback_to(annex_ann *a, int iSavepoint) {
  hnsw_ann *h = (hnsw_ann *)a;
  if (iSavepoint < h->nSave) {
    /* -1: the savepoint that began the transaction (found by fuzz_ann: the
    ** rolled-back rows were linked at COMMIT) */
    h->nPend = iSavepoint < 0 ? 0 : h->aSave[2 * iSavepoint];
    h->nBase = iSavepoint < 0 ? 0 : h->aSave[2 * iSavepoint + 1];
    hnsw_pend_remark(h);
  }
  if (h->bTxnGraph) {
    /* A command changed the graph; what it did may be undone now. */
    hnsw_drop_graph(h);
  }
  hnsw_drop_live(h);
}

/* Linking and writing back ************************************************/

/* Progress of a build, shown by annex_info and the shell. */
static int hnsw_progress(void *pCtx, size_t nDone, size_t nTotal) {
  hnsw_ann *h = (hnsw_ann *)pCtx;
  annex_progress_set(h->base.pTab, "hnsw build", (sqlite3_int64)nDone,
                     (sqlite3_int64)nTotal);
  return 0;
}

/* An empty record of the level id draws (for nodes about to be linked). */
static size_t hnsw_empty_record(hnsw_ann *h, uint32_t id, unsigned char *a) {
  int nLevel = annex_hnsw_random_level(h->g, id);
  a[0] = (unsigned char)nLevel;
  memset(a + 1, 0, 2 * (size_t)(nLevel + 1));
  return 1 + 2 * (size_t)(nLevel + 1);
}

/* Load every node of T_hnsw with its vector (the parallel paths need the
** whole graph in memory): the records in id order, merged with one pass
** over the chunks, each chunk's vectors read at once. Nodes already in
** memory are kept; tombstones whose chunk is gone stay out. */
static int hnsw_load_all(hnsw_ann *h) {
  annex_table *p = h->base.pTab;
  const annex_config *c = p->pConfig;
  sqlite3_stmt *s = NULL;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  unsigned char *aVec = NULL;
  sqlite3_int64 nSlots, iHave = -1; /* chunk whose vectors are in aVec */
  memset(&ch, 0, sizeof(ch));
  int rc, rcIt = SQLITE_ROW;
  char *zSql;
  if (h->bFull) return SQLITE_OK;
  rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK) rc = hnsw_rc(annex_hnsw_reserve(h->g, (uint32_t)nSlots));
  aVec = sqlite3_malloc64(c->szVec * (size_t)c->nChunk);
  zSql = sqlite3_mprintf("SELECT id, node FROM \"%w\".\"%w_hnsw\" ORDER BY id",
                         p->zDb, p->zName);
  if (zSql == NULL || aVec == NULL) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(p->db, zSql, -1, &s, 0);
  sqlite3_free(zSql);
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0), iChunk = id / c->nChunk;
    if (id < 0 || id >= nSlots) {
      rc = SQLITE_CORRUPT_VTAB;
      break;
    }
    while (rcIt == SQLITE_ROW && iHave < iChunk) {
      rcIt = annex_chunk_iter_next(it, &ch);
      if (rcIt == SQLITE_ROW) {
        rcIt = annex_chunk_iter_vectors(it, 0, ch.nSlot, aVec);
        if (rcIt == SQLITE_OK) rcIt = SQLITE_ROW;
        iHave = ch.iChunk;
      }
    }
    if (rcIt != SQLITE_ROW && rcIt != SQLITE_DONE) rc = rcIt;
    if (rc != SQLITE_OK || iHave != iChunk) continue; /* chunk gone */
    if (!annex_hnsw_has(h->g, (uint32_t)id)) {
      rc = hnsw_rc(annex_hnsw_put(h->g, (uint32_t)id,
                                  sqlite3_column_blob(s, 1),
                                  (size_t)sqlite3_column_bytes(s, 1),
                                  aVec + c->szVec * (size_t)(id % c->nChunk)));
    }
  }
  annex_chunk_iter_close(it);
  sqlite3_free(aVec);
  if (s) {
    int rc2 = sqlite3_finalize(s);
    if (rc == SQLITE_OK) rc = rc2;
  }
  if (rc == SQLITE_OK) {
    h->bFull = 1;
    h->bRelayout = 1;
  }
  return rc;
}

/* Write every dirty node, delete every removed one, store the entry. */
static int hnsw_write_back(hnsw_ann *h) {
  annex_table *p = h->base.pTab;
  int64_t iEntry;
  int nLevel, rc = SQLITE_OK;
  uint32_t id = 0;
  h->bTxnGraph = 1;
  while (rc == SQLITE_OK && annex_hnsw_next_dirty(h->g, id, &id) == 1) {
    rc = hnsw_put_record(h, id);
    id++;
  }
  id = 0;
  while (rc == SQLITE_OK && annex_hnsw_next_removed(h->g, id, &id) == 1) {
    rc = hnsw_del_record(h, id);
    id++;
  }
  annex_hnsw_get_entry(h->g, &iEntry, &nLevel);
  if (iEntry < 0 || nLevel < 0) { /* an empty graph */
    iEntry = -1;
    nLevel = 0;
  }
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "hnsw_entry", iEntry);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "hnsw_levels", nLevel);
  if (rc == SQLITE_OK) annex_hnsw_clear_dirty(h->g);
  return rc;
}

/* Link aId[0..n) (their vectors aVec, or already put when aVec is NULL)
** in parallel; the whole graph must be in memory. */
static int hnsw_link_batch(hnsw_ann *h, uint32_t *aId, size_t n,
                           const void *aVec) {
  int rc = hnsw_rc(annex_hnsw_insert_batch(h->g, aId, n, aVec,
                                           annex_build_threads(),
                                           hnsw_progress, h));
  annex_progress_clear(h->base.pTab);
  if (rc == SQLITE_OK && n * 8 >= annex_hnsw_count(h->g)) h->bRelayout = 1;
  return rc;
}

/* Of the slots to link (aPend[nBase..nPend)), the last write of each live
** one, in order, into *paId / *paVec (*pn of them). In place when no
** savepoint was opened in this transaction (nPend drops to nBase + *pn; a
** bulk load must not double its memory); else into new arrays (*pbOwned:
** sqlite3_free them), since a savepoint's ROLLBACK TO needs the buffer as
** it was. */
static int hnsw_pending_compact(hnsw_ann *h, uint32_t **paId,
                                unsigned char **paVec, int *pn, int *pbOwned) {
  size_t szVec = h->base.pTab->pConfig->szVec;
  int nAll = h->nPend - h->nBase, n = 0, bOwn = h->nSave > 0;
  sqlite3_int64 nMax = 0;
  uint32_t *aId = bOwn ? sqlite3_malloc64(sizeof(uint32_t) * (size_t)(nAll + 1))
                       : h->aPend + h->nBase;
  unsigned char *aVec = bOwn ? sqlite3_malloc64(szVec * (size_t)(nAll + 1))
                             : h->aPendVec + szVec * (size_t)h->nBase;
  unsigned char *aSeen;
  for (int i = h->nBase; i < h->nPend; i++) {
    if (h->aPend[i] >= nMax) nMax = (sqlite3_int64)h->aPend[i] + 1;
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
  for (int i = h->nPend - 1; i >= h->nBase; i--) {
    uint32_t id = h->aPend[i];
    if (annex_bit_get(aSeen, id)) continue;
    aSeen[id >> 3] |= (unsigned char)(1u << (id & 7));
    if (id >= h->nLiveBits || !annex_bit_get(h->aLive, id)) continue;
    n++;
    aId[nAll - n] = id;
    memmove(aVec + szVec * (size_t)(nAll - n),
            h->aPendVec + szVec * (size_t)i, szVec);
  }
  memmove(aId, aId + nAll - n, sizeof(uint32_t) * (size_t)n);
  memmove(aVec, aVec + szVec * (size_t)(nAll - n), szVec * (size_t)n);
  sqlite3_free(aSeen);
  if (!bOwn) h->nPend = h->nBase + n;
  *paId = aId;
  *paVec = aVec;
  *pn = n;
  *pbOwned = bOwn;
  return SQLITE_OK;
}

/* After a write-back: g matches the file as this transaction leaves it. */
static int hnsw_settle(hnsw_ann *h) {
  sqlite3_int64 v;
  int rc = annex_storage_config_int(h->base.pTab, "changes", &v);
  if (rc == SQLITE_OK) h->iChanges = v;
  h->nBase = h->nPend; /* linked; kept for savepoints until the end */
  hnsw_pend_remark(h);
  return rc;
}

static int hnsw_sync(annex_ann *a) {
  hnsw_ann *h = (hnsw_ann *)a;
  size_t szVec = h->base.pTab->pConfig->szVec;
  int n = 0, bOwned = 0, rc;
  uint32_t *aId = NULL;
  unsigned char *aVec = NULL;
  if (h->nPend == h->nBase) return SQLITE_OK;
  rc = hnsw_ready(h);
  if (rc == SQLITE_OK) rc = hnsw_pending_compact(h, &aId, &aVec, &n, &bOwned);
  h->bTxnGraph = 1; /* from here on a failure leaves g unlike the file */
  if (rc == SQLITE_OK && (n > HNSW_SERIAL_MAX || h->bFull)) {
    rc = hnsw_load_all(h);
    if (rc == SQLITE_OK) rc = hnsw_link_batch(h, aId, (size_t)n, aVec);
  } else if (rc == SQLITE_OK) {
    /* One by one, loading the nodes each insertion meets. */
    annex_hnsw_io io = {h, hnsw_io_record, hnsw_io_vector};
    annex_hnsw_set_io(h->g, &io);
    for (int i = 0; i < n && rc == SQLITE_OK; i++) {
      rc = hnsw_rc(annex_hnsw_insert(h->g, aId[i], aVec + szVec * (size_t)i));
    }
    annex_hnsw_set_io(h->g, NULL);
  }
  if (bOwned) {
    sqlite3_free(aId);
    sqlite3_free(aVec);
  }
  if (rc == SQLITE_OK) rc = hnsw_write_back(h);
  if (rc == SQLITE_OK) rc = hnsw_settle(h);
  return rc;
}

/* Search ****************************************************************/

/* Score the rows this transaction wrote (not in the graph yet) exactly. */
static void hnsw_search_pending(hnsw_ann *h, const annex_ann_query *q,
                                const void *pQuery, annex_topk *top) {
  annex_table *p = h->base.pTab;
  size_t szVec = p->pConfig->szVec;
  for (int i = h->nPend - 1; i >= h->nBase; i--) {
    uint32_t id = h->aPend[i];
    int bLater = 0;
    float f;
    if (annex_bit_get(h->aPendDup, id)) { /* rare: the slot was rewritten */
      for (int j = i + 1; j < h->nPend && !bLater; j++) {
        bLater = h->aPend[j] == id;
      }
    }
    if (bLater) continue; /* a later write of the slot counts */
    if (id >= h->nLiveBits || !annex_bit_get(h->aLive, id)) continue;
    if (q->aAllowed && (id >= q->nAllowedSlots || !annex_bit_get(q->aAllowed, id))) {
      continue;
    }
    f = p->xScore(pQuery, h->aPendVec + szVec * (size_t)i, (size_t)p->pConfig->nDim);
    annex_topk_push(top, f, id);
  }
}

/* The ef a query runs with: the knob or the default, at least k, widened
** when a filter accepts only part of the rows (fewer accepted nodes are
** met per step, so the list must be longer to hold k of them). */
static size_t hnsw_ef(hnsw_ann *h, const annex_ann_query *q, double rSel) {
  double ef = (double)(q->nKnob > 0 ? q->nKnob : h->efSearch);
  if (ef < (double)q->k) ef = (double)q->k;
  if (rSel < 1.0) ef /= rSel > 0.05 ? rSel : 0.05;
  return ef > 1e6 ? 1000000 : (size_t)ef;
}

static int hnsw_search(annex_ann *a, const annex_ann_query *q,
                       annex_hit **paHit, sqlite3_int64 *pnHit) {
  hnsw_ann *h = (hnsw_ann *)a;
  annex_table *p = h->base.pTab;
  const unsigned char *aAccept;
  uint64_t nAccept;
  double rSel = 1.0;
  size_t ef, nOut = 0;
  annex_hit *aOut = NULL;
  int rc = hnsw_ready(h);
  if (rc != SQLITE_OK) return rc;
  aAccept = h->aLive;
  nAccept = (uint64_t)h->nLiveBits;
  if (q->aAllowed) {
    /* Exact beats the graph when the allowed rows are fewer than the
    ** distances a filtered walk would compute: about ef * 2M / selectivity,
    ** i.e. when nAllowed^2 < ef * 2M * nLive. */
    double nAllowed = (double)q->nAllowed, nLive = (double)(h->nLive + 1);
    rSel = nAllowed / nLive;
    ef = hnsw_ef(h, q, 1.0);
    if (nAllowed * nAllowed < (double)ef * 2.0 * h->prm.M * nLive) {
      return ANNEX_ANN_EXACT;
    }
    aAccept = q->aAllowed;
    nAccept = (uint64_t)q->nAllowedSlots;
  }
  ef = hnsw_ef(h, q, rSel);
  /* Lazy loading reads a node at a time; once the queries have pulled in
  ** an eighth of the graph, one sequential pass loads the rest. */
  if (!h->bFull && annex_hnsw_count(h->g) * 8 > (size_t)h->nLive) {
    rc = hnsw_load_all(h);
    if (rc != SQLITE_OK) return rc;
  }
  /* The graph is laid out in memory in search order (annex_hnsw_reorder)
  ** once most of it is in place: after a full load, after a batch that
  ** linked an eighth of its nodes (a smaller one leaves its new nodes at
  ** the end). Here, not there, so a commit that loads and links lays it
  ** out once, and only if it is searched. Without the scratch the graph
  ** keeps its layout: nothing is lost, queries are a little slower. */
  if (h->bRelayout) {
    h->bRelayout = 0;
    (void)annex_hnsw_reorder(h->g);
  }
  /* Every node in memory, no unlinked write, as many nodes as live rows:
  ** every live row has its node after a commit, so no node is a tombstone
  ** and the walk needs no bitmap (checking one costs a lookup of each
  ** result's id: 1M x 128, 0.88x the queries per second). */
  if (aAccept == h->aLive && h->bFull && h->nPend == h->nBase &&
      annex_hnsw_count(h->g) == (size_t)h->nLive) {
    aAccept = NULL;
    nAccept = 0;
  }
  aOut = sqlite3_malloc64(sizeof(annex_hit) * (size_t)(2 * q->k + 1));
  if (aOut == NULL) return SQLITE_NOMEM;
  {
    annex_hnsw_io io = {h, hnsw_io_record, hnsw_io_vector};
    annex_hnsw_set_io(h->g, h->bFull ? NULL : &io);
    rc = hnsw_rc(annex_hnsw_search(h->g, q->pQuery, (size_t)q->k, ef, aAccept,
                                   nAccept, aOut, &nOut));
    annex_hnsw_set_io(h->g, NULL);
  }
  if (rc == SQLITE_OK && h->nPend > h->nBase) {
    /* Merge the exact scores of this transaction's rows; drop graph hits of
    ** slots it rewrote (their graph vector is the old one). */
    annex_topk top;
    annex_hit *aHeap;
    size_t nKeep = 0;
    for (size_t i = 0; i < nOut; i++) {
      if (!hnsw_is_pending(h, (uint32_t)aOut[i].rowid)) aOut[nKeep++] = aOut[i];
    }
    nOut = nKeep;
    aHeap = aOut + nOut;
    annex_topk_init(&top, aHeap, (size_t)q->k);
    for (size_t i = 0; i < nOut; i++) annex_topk_push(&top, aOut[i].score, aOut[i].rowid);
    hnsw_search_pending(h, q, q->pQuery, &top);
    annex_topk_sort(&top);
    memmove(aOut, top.a, sizeof(annex_hit) * top.n);
    nOut = top.n;
  }
  if (rc == SQLITE_OK && nOut < (size_t)q->k && q->aAllowed == NULL &&
      (sqlite3_int64)nOut < h->nLive) {
    rc = ANNEX_ANN_EXACT; /* the graph could not reach k live rows */
  }
  if (rc != SQLITE_OK) {
    sqlite3_free(aOut);
    return rc;
  }
  (void)p;
  *paHit = aOut;
  *pnHit = (sqlite3_int64)nOut;
  return SQLITE_OK;
}

/* Commands **************************************************************/

/* Put every live row into an empty graph and link them all in parallel. */
static int hnsw_rebuild(hnsw_ann *h) {
  annex_table *p = h->base.pTab;
  const annex_config *c = p->pConfig;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  unsigned char *aVec = NULL, aRec[1 + 2 * (ANNEX_HNSW_MAX_LEVEL + 1)];
  uint32_t *aId = NULL;
  sqlite3_int64 nSlots;
  size_t n = 0;
  int rc = hnsw_ready(h);
  if (rc == SQLITE_OK) rc = annex_storage_bump_counter(p);
  if (rc == SQLITE_OK) rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK && nSlots >= ((sqlite3_int64)1 << 31)) rc = SQLITE_FULL;
  h->bTxnGraph = 1;
  annex_hnsw_reset(h->g);
  annex_hnsw_set_entry(h->g, -1, 0);
  h->bFull = 1;
  if (rc == SQLITE_OK) rc = hnsw_rc(annex_hnsw_reserve(h->g, (uint32_t)nSlots));
  if (rc == SQLITE_OK) {
    rc = hnsw_exec(p, NULL, "DELETE FROM \"%w\".\"%w_hnsw\"", p->zDb, p->zName);
  }
  if (rc == SQLITE_OK) {
    aId = sqlite3_malloc64(sizeof(uint32_t) * (size_t)(h->nLive + 1));
    aVec = sqlite3_malloc64(c->szVec * (size_t)c->nChunk);
    if (aId == NULL || aVec == NULL) rc = SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK && (rc = annex_chunk_iter_next(it, &ch)) == SQLITE_ROW) {
    rc = annex_chunk_iter_vectors(it, 0, ch.nSlot, aVec);
    for (int i = 0; i < ch.nSlot && rc == SQLITE_OK; i++) {
      uint32_t id = (uint32_t)(ch.iChunk * c->nChunk + i);
      if (!annex_bit_get(ch.aValid, i)) continue;
      if (n > (size_t)h->nLive) rc = SQLITE_CORRUPT_VTAB;
      else {
        rc = hnsw_rc(annex_hnsw_put(h->g, id, aRec, hnsw_empty_record(h, id, aRec),
                                    aVec + c->szVec * (size_t)i));
        aId[n++] = id;
      }
    }
  }
  annex_chunk_iter_close(it);
  sqlite3_free(aVec);
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc == SQLITE_OK) rc = hnsw_link_batch(h, aId, n, NULL);
  sqlite3_free(aId);
  if (rc == SQLITE_OK) rc = hnsw_write_back(h);
  if (rc == SQLITE_OK) rc = hnsw_settle(h);
  return rc;
}

/* Ids of T_hnsw rows whose slot is not live (tombstones). */
static int hnsw_dead_ids(hnsw_ann *h, uint32_t **paId, size_t *pn) {
  annex_table *p = h->base.pTab;
  sqlite3_stmt *s = NULL;
  uint32_t *a = NULL;
  size_t n = 0, nAlloc = 0;
  char *zSql = sqlite3_mprintf("SELECT id FROM \"%w\".\"%w_hnsw\"", p->zDb,
                               p->zName);
  int rc = zSql ? sqlite3_prepare_v2(p->db, zSql, -1, &s, 0) : SQLITE_NOMEM;
  sqlite3_free(zSql);
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    if (id >= 0 && id < h->nLiveBits && annex_bit_get(h->aLive, id)) continue;
    if (n == nAlloc) {
      uint32_t *aNew;
      nAlloc = nAlloc ? 2 * nAlloc : 256;
      aNew = sqlite3_realloc64(a, sizeof(uint32_t) * nAlloc);
      if (aNew == NULL) {
        rc = SQLITE_NOMEM;
        break;
      }
      a = aNew;
    }
    a[n++] = (uint32_t)id;
  }
  if (s) {
    int rc2 = sqlite3_finalize(s);
    if (rc == SQLITE_OK) rc = rc2;
  }
  if (rc != SQLITE_OK) {
    sqlite3_free(a);
    return rc;
  }
  *paId = a;
  *pn = n;
  return SQLITE_OK;
}

/* Drop the tombstones and re-link the nodes that pointed at them. */
static int hnsw_optimize(hnsw_ann *h) {
  annex_table *p = h->base.pTab;
  uint32_t *aDead = NULL;
  size_t nDead = 0;
  int rc = hnsw_ready(h);
  if (rc == SQLITE_OK) rc = annex_storage_bump_counter(p);
  if (rc == SQLITE_OK) rc = hnsw_sync(&h->base); /* link pending rows first */
  if (rc == SQLITE_OK) rc = hnsw_load_all(h);
  h->bTxnGraph = 1;
  if (rc == SQLITE_OK) {
    annex_progress_set(p, "hnsw optimize", 0, h->nLive);
    rc = hnsw_rc(annex_hnsw_repair(h->g, h->aLive, (uint64_t)h->nLiveBits,
                                   annex_build_threads()));
    annex_progress_clear(p);
  }
  if (rc == SQLITE_OK) rc = hnsw_write_back(h);
  /* Tombstones the graph never loaded (their chunk is gone) go too. */
  if (rc == SQLITE_OK) rc = hnsw_dead_ids(h, &aDead, &nDead);
  for (size_t i = 0; i < nDead && rc == SQLITE_OK; i++) {
    rc = hnsw_del_record(h, aDead[i]);
  }
  sqlite3_free(aDead);
  /* The tombstones' vectors are no longer needed: free their chunks. */
  if (rc == SQLITE_OK) rc = annex_storage_drop_empty_chunks(p);
  if (rc == SQLITE_OK) rc = hnsw_settle(h);
  return rc;
}

static int hnsw_command(annex_ann *a, const char *zCmd, int *pbDone) {
  hnsw_ann *h = (hnsw_ann *)a;
  *pbDone = 1;
  if (sqlite3_stricmp(zCmd, "rebuild") == 0) return hnsw_rebuild(h);
  if (sqlite3_stricmp(zCmd, "optimize") == 0) return hnsw_optimize(h);
  *pbDone = 0;
  return SQLITE_OK;
}

/* annex_info and integrity-check ****************************************/

static int hnsw_info(annex_ann *a, void *pCtx,
                     int (*xAdd)(void *, const char *, const char *)) {
  hnsw_ann *h = (hnsw_ann *)a;
  char z[64];
  int rc = SQLITE_OK;
  struct { const char *zKey; sqlite3_int64 v; } aFact[] = {
      /* (m and ef_construction come from T_config) */
      {"hnsw_ef_search", h->efSearch},
      {"hnsw_codes", annex_hnsw_uses_codes(h->g)},
      {"hnsw_nodes_in_memory", (sqlite3_int64)annex_hnsw_count(h->g)},
      {"hnsw_pending", h->nPend - h->nBase},
      {"memory_index", (sqlite3_int64)annex_hnsw_memory(h->g) +
                           h->nLiveBits / 8},
  };
  for (size_t i = 0; i < sizeof(aFact) / sizeof(aFact[0]) && rc == SQLITE_OK;
       i++) {
    sqlite3_snprintf(sizeof(z), z, "%lld", aFact[i].v);
    rc = xAdd(pCtx, aFact[i].zKey, z);
  }
  return rc;
}

static int hnsw_corrupt(hnsw_ann *h, const char *zWhat, sqlite3_int64 id) {
  annex_table *p = h->base.pTab;
  annex_set_error(&p->base, "annex table %s is corrupt: %s_hnsw node %lld %s",
                  p->zName, p->zName, id, zWhat);
  return SQLITE_CORRUPT_VTAB;
}

/* Every record parses, names ids below the slot counter (its own and its
** neighbours'), every live row has a node, and hnsw_entry names a node
** (-1 exactly when there is none) whose level is hnsw_levels. */
static int hnsw_integrity(annex_ann *a) {
  hnsw_ann *h = (hnsw_ann *)a;
  annex_table *p = h->base.pTab;
  sqlite3_stmt *s = NULL;
  sqlite3_int64 nSlots, nLiveNodes = 0, nNode = 0, iEntry = -1, nLevels = 0;
  int nEntryLevel = -1;
  char *zSql;
  int rc = hnsw_ready(h);
  if (rc == SQLITE_OK) rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "hnsw_entry", &iEntry);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "hnsw_levels", &nLevels);
  /* the neighbours too: records name ids below the slot counter */
  if (rc == SQLITE_OK && nSlots > h->nIdLimit) {
    h->nIdLimit = nSlots;
    annex_hnsw_set_id_limit(h->g, (uint64_t)nSlots);
  }
  zSql = sqlite3_mprintf("SELECT id, node FROM \"%w\".\"%w_hnsw\"", p->zDb,
                         p->zName);
  if (zSql == NULL) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(p->db, zSql, -1, &s, 0);
  sqlite3_free(zSql);
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    const unsigned char *aRec = sqlite3_column_blob(s, 1);
    int nLevel;
    if (id < 0 || id >= nSlots) {
      rc = hnsw_corrupt(h, "is beyond the slot counter", id);
    } else if (annex_hnsw_record_check(h->g, aRec, (size_t)sqlite3_column_bytes(s, 1),
                                       &nLevel) != ANNEX_HNSW_OK) {
      rc = hnsw_corrupt(h, "does not parse", id);
    } else {
      nNode++;
      if (id == iEntry) nEntryLevel = nLevel;
      if (id < h->nLiveBits && annex_bit_get(h->aLive, id)) nLiveNodes++;
    }
  }
  if (s) {
    int rc2 = sqlite3_finalize(s);
    if (rc == SQLITE_OK) rc = rc2;
  }
  if (rc == SQLITE_OK && (iEntry == -1) != (nNode == 0)) {
    annex_set_error(&p->base, "annex table %s is corrupt: hnsw_entry is %lld "
                    "with %lld nodes in %s_hnsw", p->zName, iEntry, nNode,
                    p->zName);
    rc = SQLITE_CORRUPT_VTAB;
  }
  if (rc == SQLITE_OK && iEntry != -1 && nEntryLevel != nLevels) {
    annex_set_error(&p->base, "annex table %s is corrupt: hnsw_entry %lld %s "
                    "(hnsw_levels %lld)", p->zName, iEntry,
                    nEntryLevel < 0 ? "has no node" : "is not at hnsw_levels",
                    nLevels);
    rc = SQLITE_CORRUPT_VTAB;
  }
  /* Rows of this transaction get their nodes at commit. */
  if (rc == SQLITE_OK && h->nPend == h->nBase && nLiveNodes != h->nLive) {
    annex_set_error(&p->base, "annex table %s is corrupt: %lld live rows but "
                    "%lld of them have a node in %s_hnsw", p->zName, h->nLive,
                    nLiveNodes, p->zName);
    rc = SQLITE_CORRUPT_VTAB;
  }
  return rc;
}

/* Lifecycle *************************************************************/

static int hnsw_open(annex_table *p, annex_ann **pp) {
  hnsw_ann *h = sqlite3_malloc64(sizeof(*h));
  int rc;
  *pp = NULL;
  if (h == NULL) return SQLITE_NOMEM;
  memset(h, 0, sizeof(*h));
  h->base.pOps = &annex_hnsw_ops;
  h->base.pTab = p;
  h->iChanges = -1;
  hnsw_params_read(p->pConfig, &h->prm, &h->efSearch);
  rc = hnsw_rc(annex_hnsw_new(&h->prm, &h->g));
  if (rc != SQLITE_OK) {
    sqlite3_free(h);
    return rc;
  }
  *pp = &h->base;
  return SQLITE_OK;
}

static void hnsw_close(annex_ann *a) {
  hnsw_ann *h = (hnsw_ann *)a;
  if (h == NULL) return;
  annex_hnsw_free(h->g);
  sqlite3_finalize(h->pGet);
  sqlite3_finalize(h->pPut);
  sqlite3_finalize(h->pDel);
  sqlite3_free(h->aLive);
  sqlite3_free(h->aRowid);
  sqlite3_free(h->aPend);
  sqlite3_free(h->aPendVec);
  sqlite3_free(h->aPendBits);
  sqlite3_free(h->aPendDup);
  sqlite3_free(h->aSave);
  sqlite3_free(h->aRec);
  sqlite3_free(h);
}

const annex_ann_ops annex_hnsw_ops = {
    /* zKind         */ "hnsw",
    /* zKnob         */ "ef_search",
    /* xParams       */ hnsw_params,
    /* xCreate       */ hnsw_create,
    /* xDestroy      */ hnsw_destroy,
    /* xRename       */ hnsw_rename,
    /* azShadow      */ g_azHnswShadow,
    /* xOpen         */ hnsw_open,
    /* xClose        */ hnsw_close,
    /* xInsert       */ hnsw_insert,
    /* xDelete       */ hnsw_delete,
    /* xUpdateVector */ hnsw_update_vector,
    /* xSync         */ hnsw_sync,
    /* xCommit       */ hnsw_commit,
    /* xRollback     */ hnsw_rollback,
    /* xSavepoint    */ hnsw_savepoint,
    /* xRollbackTo   */ hnsw_rollback_to,
    /* xSearch       */ hnsw_search,
    /* xCommand      */ hnsw_command,
    /* xInfo         */ hnsw_info,
    /* xIntegrity    */ hnsw_integrity,
    /* xSetRowid     */ hnsw_set_rowid,
    /* xRowids       */ hnsw_rowids,
    /* xReadVectors  */ NULL,
};
