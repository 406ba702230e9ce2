/*
** storage.c — the shadow tables of an annex table, and all I/O on them.
**
** Database format (format version 1) of an annex table named T:
**
**   T_config(key TEXT PRIMARY KEY, value) WITHOUT ROWID
**       format      integer, the format version (1)
**       column      text, the name of the vector column
**       dims        integer, dimensions of the vector column
**       element     text, float | int8 | bit
**       metric      text, l2 | cosine | ip | hamming
**       index       text, the index kind (flat)
**       chunk_size  integer, vectors per chunk (power of two, >= 8)
**       slots       integer, slots ever allocated: the next vector goes to
**                   global slot `slots`; slots are never reused
**       changes     integer, bumped once by every write transaction, so a
**                   connection can tell that its caches are stale
**
**   T_rows(rowid INTEGER PRIMARY KEY, slot INTEGER NOT NULL, c1, c2, ...)
**       one row per stored row. `slot` is the global slot of its vector:
**       chunk = slot / chunk_size, position = slot % chunk_size. Column cI
**       holds user column I (0-based declaration order; the vector column
**       has no cI). Metadata columns carry their declared type (TEXT,
**       INTEGER, REAL) so comparisons follow SQLite's affinity rules.
**
**   T_chunks(chunk INTEGER PRIMARY KEY, data BLOB NOT NULL)
**       one row per chunk of chunk_size slots, `data` laid out as
**         valid    chunk_size/8 bytes: bit (i%8) of byte (i/8) is set when
**                  slot i holds a live row
**         rowids   chunk_size x int64, little-endian: the rowid in each slot
**         metadata for each metadata column M (declaration order among the
**                  metadata columns): chunk_size tag bytes, then
**                  chunk_size x 8-byte little-endian values: the compact
**                  copy of the slot's value of M that filtered scans read
**                  (tag 0 NULL; 1 integer, value int64; 2 real, value the
**                  IEEE double's bits; 3 text, value its id in T_dict;
**                  4 blob, value 0); see ext/index/metafilter.h
**         vectors  chunk_size x vector bytes (dims*4 for float, dims for
**                  int8, dims/8 for bit), in slot order
**                  -- absent when the table's ANN index keeps the vectors
**                  itself (ann.h's xReadVectors; index=diskann, whose node
**                  records are the only full-precision copy): the chunk
**                  then ends after the metadata, and vector reads
**                  (annex_storage_read_vector, annex_chunk_iter_vectors)
**                  go to the index
**       A chunk is created zero-filled when its first slot is allocated and
**       deleted when every one of its slots was allocated and then freed.
**       In a table with an ANN index the deletion waits for 'optimize':
**       the index's tombstones keep their vectors there (ann.h).
**
**   T_dict(id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE)
**       every distinct text value ever stored in a metadata column, so the
**       chunks can hold a fixed-size id in its place. Ids are never reused.
**
** Invariants (checked by 'integrity-check'): every T_rows row's slot is
** below `slots`, its chunk exists, its valid bit is set and its rowid is in
** the rowids array; every set valid bit is matched by exactly one T_rows row;
** every live slot's compact metadata equals its T_rows values.
**
** Writes go through the user's transaction, so SQLite's journal makes them
** atomic. Write blob handles are opened and closed within one xUpdate: an
** open write handle would keep the statement that opened it active and
** stop the transaction from committing.
*/
#include "annex_int.h"
#include "ann.h"
#include "../index/flat.h"

#include <math.h>
#include <string.h>

size_t annex_chunk_valid_bytes(const annex_config *c) {
  return (size_t)c->nChunk / 8;
}
size_t annex_chunk_rowid_offset(const annex_config *c) {
  return annex_chunk_valid_bytes(c);
}
size_t annex_chunk_meta_offset(const annex_config *c) {
  return annex_chunk_rowid_offset(c) + 8 * (size_t)c->nChunk;
}
size_t annex_chunk_vector_offset(const annex_config *c) {
  return annex_chunk_meta_offset(c) + 9 * (size_t)c->nMeta * (size_t)c->nChunk;
}
/* 1 when T_chunks holds the vectors, 0 when the ANN index keeps them. */
static int chunk_has_vectors(const annex_config *c) {
  return c->pAnnOps == NULL || c->pAnnOps->xReadVectors == NULL;
}

size_t annex_chunk_bytes(const annex_config *c) {
  return annex_chunk_vector_offset(c) +
         (chunk_has_vectors(c) ? c->szVec * (size_t)c->nChunk : 0);
}

/* Vectors of slots [iSlot, iSlot + n) from the index that keeps them. */
static int index_vectors(annex_table *p, sqlite3_int64 iSlot, int n,
                         void *out) {
  if (p->pAnn == NULL || p->pAnn->pOps->xReadVectors == NULL) {
    return SQLITE_CORRUPT_VTAB;
  }
  return p->pAnn->pOps->xReadVectors(p->pAnn, iSlot, n, out);
}

/* ", c1, c2": the non-vector columns of %_rows, each after a comma. */
static char *column_list(const annex_config *c) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  for (int i = 0; i < c->nCol; i++) {
    if (c->aCol[i].eKind != ANNEX_COL_VECTOR) {
      sqlite3_str_appendf(s, ", c%d", i);
    }
  }
  return annex_str_finish(s);
}

/* " RETURNING cI, ..." over the metadata columns, or "" without any. */
static char *returning_meta(const annex_config *c) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  int n = 0;
  for (int i = 0; i < c->nCol; i++) {
    if (c->aCol[i].eKind == ANNEX_COL_META) {
      sqlite3_str_appendf(s, "%sc%d", n++ ? ", " : " RETURNING ", i);
    }
  }
  return annex_str_finish(s);
}

static char *stmt_sql(annex_table *p, annex_stmt_id id) {
  const char *zDb = p->zDb, *zT = p->zName;
  const annex_config *c = p->pConfig;
  char *zCols, *zSql = NULL;
  switch (id) {
    case ANNEX_STMT_CONFIG_GET:
      return sqlite3_mprintf("SELECT value FROM \"%w\".\"%w_config\" "
                             "WHERE key=?", zDb, zT);
    case ANNEX_STMT_CONFIG_SET:
      return sqlite3_mprintf("INSERT OR REPLACE INTO \"%w\".\"%w_config\""
                             "(key, value) VALUES(?, ?)", zDb, zT);
    case ANNEX_STMT_ROWS_INSERT: {
      sqlite3_str *s = sqlite3_str_new(NULL);
      int n = 3;
      zCols = column_list(c);
      for (int i = 0; i < c->nCol; i++) {
        if (c->aCol[i].eKind != ANNEX_COL_VECTOR) {
          sqlite3_str_appendf(s, ", ?%d", n++);
        }
      }
      {
        char *zVals = annex_str_finish(s);
        char *zRet = returning_meta(c);
        if (zCols && zVals && zRet) {
          zSql = sqlite3_mprintf("INSERT INTO \"%w\".\"%w_rows\"(rowid, slot%s)"
                                 " VALUES(?1, ?2%s)%s", zDb, zT, zCols, zVals,
                                 zRet);
        }
        sqlite3_free(zVals);
        sqlite3_free(zRet);
      }
      sqlite3_free(zCols);
      return zSql;
    }
    case ANNEX_STMT_ROWS_DELETE:
      return sqlite3_mprintf("DELETE FROM \"%w\".\"%w_rows\" WHERE rowid=?",
                             zDb, zT);
    case ANNEX_STMT_ROWS_LOCATE:
      return sqlite3_mprintf("SELECT slot FROM \"%w\".\"%w_rows\" "
                             "WHERE rowid=?", zDb, zT);
    case ANNEX_STMT_ROWS_UPDATE: {
      sqlite3_str *s = sqlite3_str_new(NULL);
      int n = 2;
      sqlite3_str_appendf(s, "UPDATE \"%w\".\"%w_rows\" SET slot=slot", zDb,
                          zT);
      for (int i = 0; i < c->nCol; i++) {
        if (c->aCol[i].eKind != ANNEX_COL_VECTOR) {
          sqlite3_str_appendf(s, ", c%d=?%d", i, n++);
        }
      }
      sqlite3_str_appendall(s, " WHERE rowid=?1");
      zCols = returning_meta(c);
      if (zCols == NULL) {
        /* Out of memory: without its RETURNING clause the statement would
        ** still prepare, be cached, and every later UPDATE would find no
        ** row returned (SQLITE_CORRUPT_VTAB) for the connection's life. */
        sqlite3_free(sqlite3_str_finish(s));
        return NULL;
      }
      sqlite3_str_appendall(s, zCols);
      sqlite3_free(zCols);
      return annex_str_finish(s);
    }
    case ANNEX_STMT_ROWS_REKEY:
      return sqlite3_mprintf("UPDATE \"%w\".\"%w_rows\" SET rowid=?2 "
                             "WHERE rowid=?1", zDb, zT);
    case ANNEX_STMT_ROWS_FETCH:
      zCols = column_list(c);
      if (zCols) {
        zSql = sqlite3_mprintf("SELECT slot%s FROM \"%w\".\"%w_rows\" "
                               "WHERE rowid=?", zCols, zDb, zT);
      }
      sqlite3_free(zCols);
      return zSql;
    case ANNEX_STMT_CHUNK_INSERT:
      return sqlite3_mprintf("INSERT INTO \"%w\".\"%w_chunks\"(chunk, data) "
                             "VALUES(?, zeroblob(?))", zDb, zT);
    case ANNEX_STMT_CHUNK_DELETE:
      return sqlite3_mprintf("DELETE FROM \"%w\".\"%w_chunks\" WHERE chunk=?",
                             zDb, zT);
    case ANNEX_STMT_DICT_GET:
      return sqlite3_mprintf("SELECT id FROM \"%w\".\"%w_dict\" WHERE "
                             "value=?", zDb, zT);
    case ANNEX_STMT_DICT_PUT:
      return sqlite3_mprintf("INSERT INTO \"%w\".\"%w_dict\"(value) "
                             "VALUES(?)", zDb, zT);
    case ANNEX_STMT_COUNT:
      break;
  }
  return NULL;
}

/* Keep the message of a failed prepare (a shadow table dropped or altered
** behind annex's back): the cleanup that follows (finalizing other
** statements) would reset the connection's message to "not an error". */
static int prepare_error(annex_table *p, int rc) {
  if (rc != SQLITE_NOMEM && p->base.zErrMsg == NULL) {
    annex_set_error(&p->base, "annex table %s: %s", p->zName,
                    sqlite3_errmsg(p->db));
  }
  return rc;
}

int annex_storage_stmt(annex_table *p, annex_stmt_id id, sqlite3_stmt **pp) {
  if (p->aStmt[id] == NULL) {
    char *zSql = stmt_sql(p, id);
    int rc;
    if (zSql == NULL) return SQLITE_NOMEM;
    rc = sqlite3_prepare_v3(p->db, zSql, -1, SQLITE_PREPARE_PERSISTENT,
                            &p->aStmt[id], NULL);
    sqlite3_free(zSql);
    if (rc != SQLITE_OK) return prepare_error(p, rc);
  }
  *pp = p->aStmt[id];
  return SQLITE_OK;
}

void annex_storage_reset_blobs(annex_table *p) {
  sqlite3_blob *b = p->pReadBlob;
  /* Cleared first: closing can finalize a statement whose failure rolls
  ** the transaction back, and xRollback comes here again. */
  p->pReadBlob = NULL;
  if (b) sqlite3_blob_close(b);
}

void annex_storage_close(annex_table *p) {
  annex_storage_reset_blobs(p);
  for (int i = 0; i < ANNEX_STMT_COUNT; i++) {
    sqlite3_finalize(p->aStmt[i]);
    p->aStmt[i] = NULL;
  }
}

void annex_storage_end_txn(annex_table *p) {
  annex_storage_reset_blobs(p);
  p->bSlotCache = 0;
  p->bCounterBumped = 0;
}

static int exec_fmt(sqlite3 *db, char **pzErr, const char *zFmt, ...) {
  va_list ap;
  char *zSql;
  int rc;
  va_start(ap, zFmt);
  zSql = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_exec(db, zSql, NULL, NULL, pzErr);
  sqlite3_free(zSql);
  return rc;
}

static int config_set_text(annex_table *p, const char *zKey, const char *zVal) {
  sqlite3_stmt *s;
  int rc = annex_storage_stmt(p, ANNEX_STMT_CONFIG_SET, &s);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text(s, 1, zKey, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, zVal, -1, SQLITE_STATIC);
  sqlite3_step(s);
  return sqlite3_reset(s);
}

int annex_storage_config_set_int(annex_table *p, const char *zKey,
                                 sqlite3_int64 v) {
  sqlite3_stmt *s;
  int rc = annex_storage_stmt(p, ANNEX_STMT_CONFIG_SET, &s);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text(s, 1, zKey, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, v);
  sqlite3_step(s);
  return sqlite3_reset(s);
}

int annex_storage_config_int(annex_table *p, const char *zKey,
                             sqlite3_int64 *pv) {
  sqlite3_stmt *s;
  int rc = annex_storage_stmt(p, ANNEX_STMT_CONFIG_GET, &s);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text(s, 1, zKey, -1, SQLITE_STATIC);
  if (sqlite3_step(s) == SQLITE_ROW) {
    if (sqlite3_column_type(s, 0) == SQLITE_INTEGER) {
      *pv = sqlite3_column_int64(s, 0);
    } else {
      rc = SQLITE_CORRUPT_VTAB;
    }
  } else {
    rc = SQLITE_CORRUPT_VTAB; /* no such key, unless the step failed: */
  }
  {
    /* reset returns the step's error (out of memory, I/O), which wins over
    ** "missing". Only the first reset reports it: a second returns OK. */
    int rc2 = sqlite3_reset(s);
    if (rc2 != SQLITE_OK) rc = rc2;
  }
  if (rc == SQLITE_CORRUPT_VTAB) {
    annex_set_error(&p->base, "annex table %s: config value '%s' is missing "
                    "or not an integer", p->zName, zKey);
  }
  return rc;
}

int annex_storage_create(annex_table *p, char **pzErr) {
  const annex_config *c = p->pConfig;
  char *zCols;
  int rc;
  /* Declared types carry affinity into the metadata columns. */
  {
    sqlite3_str *s = sqlite3_str_new(NULL);
    for (int i = 0; i < c->nCol; i++) {
      if (c->aCol[i].eKind == ANNEX_COL_VECTOR) continue;
      sqlite3_str_appendf(s, ", c%d %s", i,
                          c->aCol[i].eKind == ANNEX_COL_META ? c->aCol[i].zType
                                                             : "");
    }
    zCols = annex_str_finish(s);
    if (zCols == NULL) return SQLITE_NOMEM;
  }
  rc = exec_fmt(p->db, pzErr,
                "CREATE TABLE \"%w\".\"%w_config\"(key TEXT PRIMARY KEY, "
                "value) WITHOUT ROWID;"
                "CREATE TABLE \"%w\".\"%w_rows\"(rowid INTEGER PRIMARY KEY, "
                "slot INTEGER NOT NULL%s);"
                "CREATE TABLE \"%w\".\"%w_chunks\"(chunk INTEGER PRIMARY KEY, "
                "data BLOB NOT NULL);"
                "CREATE TABLE \"%w\".\"%w_dict\"(id INTEGER PRIMARY KEY, "
                "value TEXT NOT NULL UNIQUE);",
                p->zDb, p->zName, p->zDb, p->zName, zCols, p->zDb, p->zName,
                p->zDb, p->zName);
  sqlite3_free(zCols);
  if (rc == SQLITE_OK) {
    rc = annex_storage_config_set_int(p, "format", ANNEX_FORMAT_VERSION);
  }
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "dims", c->nDim);
  if (rc == SQLITE_OK) {
    rc = config_set_text(p, "column", c->aCol[c->iVecCol].zName);
  }
  if (rc == SQLITE_OK) rc = config_set_text(p, "element",
                                            annex_elem_name(c->eElem));
  if (rc == SQLITE_OK) rc = config_set_text(p, "metric",
                                            annex_metric_name(c->eMetric));
  if (rc == SQLITE_OK) rc = config_set_text(p, "index",
                                            annex_index_name(c));
  if (rc == SQLITE_OK) {
    rc = annex_storage_config_set_int(p, "chunk_size", c->nChunk);
  }
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "slots", 0);
  if (rc == SQLITE_OK) rc = annex_storage_config_set_int(p, "changes", 0);
  return rc;
}

int annex_storage_check_format(annex_table *p, char **pzErr) {
  sqlite3_int64 v = 0;
  int rc = annex_storage_config_int(p, "format", &v);
  if (rc == SQLITE_OK && v != ANNEX_FORMAT_VERSION) {
    *pzErr = sqlite3_mprintf("annex table %s has format version %lld; this "
                             "build of annex (%s) reads version %d",
                             p->zName, v, ANNEX_VERSION, ANNEX_FORMAT_VERSION);
    return SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "dims", &v);
  if (rc == SQLITE_OK && v != p->pConfig->nDim) rc = SQLITE_CORRUPT_VTAB;
  /* The stored chunk size is authoritative: defaults may change. */
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "chunk_size", &v);
  if (rc == SQLITE_OK) {
    if (v < ANNEX_CHUNK_MIN || v > ANNEX_CHUNK_MAX || (v & (v - 1)) != 0) {
      rc = SQLITE_CORRUPT_VTAB;
    } else {
      p->pConfig->nChunk = (int)v;
    }
  }
  if (rc == SQLITE_CORRUPT_VTAB) {
    *pzErr = sqlite3_mprintf("annex table %s: %s_config disagrees with the "
                             "table's declaration (database corrupt)",
                             p->zName, p->zName);
  } else if (rc != SQLITE_OK && rc != SQLITE_ERROR) {
    *pzErr = sqlite3_mprintf("%s", sqlite3_errmsg(p->db));
  }
  return rc;
}

/* Config text value zKey must equal zWant (NULL: be any text). */
static int config_text_is(annex_table *p, const char *zKey, const char *zWant) {
  sqlite3_stmt *s;
  int rc = annex_storage_stmt(p, ANNEX_STMT_CONFIG_GET, &s), bOk = 0;
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text(s, 1, zKey, -1, SQLITE_STATIC);
  if (sqlite3_step(s) == SQLITE_ROW &&
      sqlite3_column_type(s, 0) == SQLITE_TEXT) {
    const char *z = (const char *)sqlite3_column_text(s, 0);
    bOk = z && (zWant == NULL || strcmp(z, zWant) == 0);
  }
  rc = sqlite3_reset(s);
  if (rc == SQLITE_OK && !bOk) {
    annex_set_error(&p->base, "annex integrity-check of %s: %s_config value "
                    "'%s' is missing or disagrees with the table's "
                    "declaration", p->zName, p->zName, zKey);
    rc = SQLITE_CORRUPT_VTAB;
  }
  return rc;
}

/* Config integer value zKey must be present, not negative and, unless
** bAny, equal want. */
static int config_int_is(annex_table *p, const char *zKey, int bAny,
                         sqlite3_int64 want) {
  sqlite3_int64 v = 0;
  int rc = annex_storage_config_int(p, zKey, &v);
  if (rc == SQLITE_OK && ((!bAny && v != want) || v < 0)) {
    annex_set_error(&p->base, "annex integrity-check of %s: %s_config says "
                    "%s = %lld, expected %lld", p->zName, p->zName, zKey, v,
                    want);
    rc = SQLITE_CORRUPT_VTAB;
  }
  return rc;
}

int annex_storage_check_config(annex_table *p) {
  const annex_config *c = p->pConfig;
  sqlite3_int64 nChanges = 0;
  int rc = config_int_is(p, "format", 0, ANNEX_FORMAT_VERSION);
  if (rc == SQLITE_OK) rc = config_int_is(p, "dims", 0, c->nDim);
  if (rc == SQLITE_OK) rc = config_int_is(p, "chunk_size", 0, c->nChunk);
  if (rc == SQLITE_OK) {
    rc = config_text_is(p, "column", c->aCol[c->iVecCol].zName);
  }
  if (rc == SQLITE_OK) rc = config_text_is(p, "element",
                                           annex_elem_name(c->eElem));
  if (rc == SQLITE_OK) rc = config_text_is(p, "metric",
                                           annex_metric_name(c->eMetric));
  /* (the spelling of the index kind is config.c's; it must be text) */
  if (rc == SQLITE_OK) rc = config_text_is(p, "index", NULL);
  if (rc == SQLITE_OK) rc = config_int_is(p, "slots", 1, 0);
  if (rc == SQLITE_OK) rc = annex_storage_config_int(p, "changes", &nChanges);
  return rc;
}

int annex_storage_destroy(annex_table *p) {
  annex_storage_close(p);
  return exec_fmt(p->db, NULL,
                  "DROP TABLE IF EXISTS \"%w\".\"%w_config\";"
                  "DROP TABLE IF EXISTS \"%w\".\"%w_rows\";"
                  "DROP TABLE IF EXISTS \"%w\".\"%w_chunks\";"
                  "DROP TABLE IF EXISTS \"%w\".\"%w_dict\";",
                  p->zDb, p->zName, p->zDb, p->zName, p->zDb, p->zName,
                  p->zDb, p->zName);
}

int annex_storage_rename(annex_table *p, const char *zNew) {
  static const char *azSuffix[] = {"config", "rows", "chunks", "dict"};
  int rc = SQLITE_OK;
  annex_storage_close(p);
  for (int i = 0; i < 4 && rc == SQLITE_OK; i++) {
    rc = exec_fmt(p->db, NULL,
                  "ALTER TABLE \"%w\".\"%w_%s\" RENAME TO \"%w_%s\"", p->zDb,
                  p->zName, azSuffix[i], zNew, azSuffix[i]);
  }
  return rc;
}

int annex_storage_bump_counter(annex_table *p) {
  sqlite3_int64 n = 0;
  int rc;
  if (p->bCounterBumped) return SQLITE_OK;
  rc = annex_storage_config_int(p, "changes", &n);
  /* (wraps: the counter only has to differ; a corrupt one may be at max) */
  if (rc == SQLITE_OK) {
    rc = annex_storage_config_set_int(p, "changes", n == INT64_MAX ? 0 : n + 1);
  }
  if (rc == SQLITE_OK) p->bCounterBumped = 1;
  return rc;
}

int annex_storage_slots(annex_table *p, sqlite3_int64 *pn) {
  int rc;
  if (p->bSlotCache) {
    *pn = p->nSlotCache;
    return SQLITE_OK;
  }
  rc = annex_storage_config_int(p, "slots", pn);
  if (rc == SQLITE_OK && *pn < 0) rc = SQLITE_CORRUPT_VTAB;
  return rc;
}

int annex_storage_locate(annex_table *p, sqlite3_int64 iRowid,
                         sqlite3_int64 *piSlot) {
  sqlite3_stmt *s;
  int rc = annex_storage_stmt(p, ANNEX_STMT_ROWS_LOCATE, &s);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(s, 1, iRowid);
  if (sqlite3_step(s) == SQLITE_ROW) {
    *piSlot = sqlite3_column_int64(s, 0);
    rc = SQLITE_OK;
    if (*piSlot < 0) { /* would index before the chunk's arrays */
      annex_set_error(&p->base, "annex table %s: row %lld has slot %lld "
                      "(database corrupt)", p->zName, iRowid, *piSlot);
      rc = SQLITE_CORRUPT_VTAB;
    }
  } else {
    rc = SQLITE_DONE; /* no such row, unless the step failed: */
  }
  {
    /* reset returns the step's error; only the first reset reports it. */
    int rc2 = sqlite3_reset(s);
    if (rc2 != SQLITE_OK) rc = rc2;
  }
  return rc;
}

/* Point the cached read handle at chunk iChunk. */
static int read_blob_seek(annex_table *p, sqlite3_int64 iChunk) {
  int rc = SQLITE_OK;
  if (p->pReadBlob) {
    rc = sqlite3_blob_reopen(p->pReadBlob, iChunk);
    if (rc != SQLITE_OK) annex_storage_reset_blobs(p);
  }
  if (p->pReadBlob == NULL) {
    char *zTab = sqlite3_mprintf("%s_chunks", p->zName);
    if (zTab == NULL) return SQLITE_NOMEM;
    rc = sqlite3_blob_open(p->db, p->zDb, zTab, "data", iChunk, 0,
                           &p->pReadBlob);
    sqlite3_free(zTab);
    if (rc != SQLITE_OK) annex_storage_reset_blobs(p);
  }
  if (rc == SQLITE_ERROR) rc = SQLITE_CORRUPT_VTAB; /* chunk row missing */
  if (rc == SQLITE_OK &&
      (size_t)sqlite3_blob_bytes(p->pReadBlob) !=
          annex_chunk_bytes(p->pConfig)) {
    rc = SQLITE_CORRUPT_VTAB;
  }
  return rc;
}

int annex_storage_read_vector(annex_table *p, sqlite3_int64 iSlot, void *out) {
  const annex_config *c = p->pConfig;
  sqlite3_int64 iChunk = iSlot / c->nChunk;
  int iPos = (int)(iSlot % c->nChunk);
  int rc;
  if (!chunk_has_vectors(c)) return index_vectors(p, iSlot, 1, out);
  rc = read_blob_seek(p, iChunk);
  if (rc == SQLITE_OK) {
    rc = sqlite3_blob_read(p->pReadBlob, out, (int)c->szVec,
                           (int)(annex_chunk_vector_offset(c) +
                                 c->szVec * (size_t)iPos));
  }
  return rc;
}

int annex_storage_slot_info(annex_table *p, sqlite3_int64 iSlot,
                            sqlite3_int64 *piRowid, int *pbLive) {
  const annex_config *c = p->pConfig;
  int iPos = (int)(iSlot % c->nChunk);
  unsigned char aRowid[8], byte = 0;
  uint64_t u = 0;
  int rc = read_blob_seek(p, iSlot / c->nChunk);
  /* A chunk whose slots were all freed is deleted: no row lives there. */
  if (rc == SQLITE_CORRUPT_VTAB && p->pReadBlob == NULL) rc = SQLITE_DONE;
  if (rc == SQLITE_OK) {
    rc = sqlite3_blob_read(p->pReadBlob, &byte, 1, iPos / 8);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_blob_read(p->pReadBlob, aRowid, 8,
                           (int)(annex_chunk_rowid_offset(c) +
                                 8 * (size_t)iPos));
  }
  if (rc != SQLITE_OK) return rc;
  for (int b = 7; b >= 0; b--) u = (u << 8) | aRowid[b];
  *piRowid = (sqlite3_int64)u;
  *pbLive = (byte >> (iPos % 8)) & 1;
  return SQLITE_OK;
}

/* Before a write through row iRowid's slot: the slot must be allocated,
** live, and hold that rowid. Otherwise T_rows points elsewhere (corrupt),
** and writing there would spread the damage to another row's slot. */
static int check_owner(annex_table *p, sqlite3_int64 iRowid,
                       sqlite3_int64 iSlot) {
  const annex_config *c = p->pConfig;
  int iPos = (int)(iSlot % c->nChunk);
  unsigned char valid, aRowid[8];
  sqlite3_int64 nSlots = 0;
  uint64_t u = 0;
  int rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK && iSlot >= nSlots) rc = SQLITE_CORRUPT_VTAB;
  if (rc == SQLITE_OK) rc = read_blob_seek(p, iSlot / c->nChunk);
  if (rc == SQLITE_OK) rc = sqlite3_blob_read(p->pReadBlob, &valid, 1, iPos / 8);
  if (rc == SQLITE_OK) {
    rc = sqlite3_blob_read(p->pReadBlob, aRowid, 8,
                           (int)(annex_chunk_rowid_offset(c) + 8 * (size_t)iPos));
  }
  annex_storage_reset_blobs(p);
  for (int b = 7; b >= 0; b--) u = (u << 8) | aRowid[b];
  if (rc == SQLITE_OK &&
      (!(valid & (1u << (iPos % 8))) || (sqlite3_int64)u != iRowid)) {
    rc = SQLITE_CORRUPT_VTAB;
  }
  if (rc == SQLITE_CORRUPT_VTAB && p->base.zErrMsg == NULL) {
    annex_set_error(&p->base, "annex table %s: row %lld points at slot %lld, "
                    "which does not hold it (database corrupt)", p->zName,
                    iRowid, iSlot);
  }
  return rc;
}

/* Open a write handle on chunk iChunk's data; the caller closes it. */
static int write_blob_open(annex_table *p, sqlite3_int64 iChunk,
                           sqlite3_blob **pp) {
  char *zTab = sqlite3_mprintf("%s_chunks", p->zName);
  int rc;
  *pp = NULL;
  if (zTab == NULL) return SQLITE_NOMEM;
  rc = sqlite3_blob_open(p->db, p->zDb, zTab, "data", iChunk, 1, pp);
  sqlite3_free(zTab);
  if (rc == SQLITE_ERROR) rc = SQLITE_CORRUPT_VTAB;
  if (rc == SQLITE_OK &&
      (size_t)sqlite3_blob_bytes(*pp) != annex_chunk_bytes(p->pConfig)) {
    rc = SQLITE_CORRUPT_VTAB;
  }
  if (rc != SQLITE_OK && *pp) {
    sqlite3_blob_close(*pp);
    *pp = NULL;
  }
  return rc;
}

/* Set or clear the valid bit of slot iPos through handle b. */
static int write_valid_bit(sqlite3_blob *b, int iPos, int bOn) {
  unsigned char byte;
  int rc = sqlite3_blob_read(b, &byte, 1, iPos / 8);
  if (rc != SQLITE_OK) return rc;
  if (bOn) byte |= (unsigned char)(1u << (iPos % 8));
  else byte &= (unsigned char)~(1u << (iPos % 8));
  return sqlite3_blob_write(b, &byte, 1, iPos / 8);
}

static void put_le64(unsigned char *a, int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++) a[i] = (unsigned char)(u >> (8 * i));
}

/* Write the compact metadata of slot iPos through handle b. */
static int write_meta(const annex_config *c, sqlite3_blob *b, int iPos,
                      const annex_mvalue *aMeta) {
  size_t iBase = annex_chunk_meta_offset(c);
  int rc = SQLITE_OK;
  for (int m = 0; m < c->nMeta && rc == SQLITE_OK; m++) {
    unsigned char tag = (unsigned char)aMeta[m].tag, aVal[8];
    put_le64(aVal, aMeta[m].v);
    rc = sqlite3_blob_write(b, &tag, 1,
                            (int)(iBase + annex_meta_tags_offset(m, c->nChunk) +
                                  (size_t)iPos));
    if (rc == SQLITE_OK) {
      rc = sqlite3_blob_write(
          b, aVal, 8,
          (int)(iBase + annex_meta_values_offset(m, c->nChunk) +
                8 * (size_t)iPos));
    }
  }
  return rc;
}

/* Write rowid, vector (unless NULL), compact metadata (unless NULL) and
** the valid bit of a slot through one write handle. */
static int write_slot(annex_table *p, sqlite3_int64 iSlot, sqlite3_int64 iRowid,
                      const void *pVec, const annex_mvalue *aMeta) {
  const annex_config *c = p->pConfig;
  sqlite3_int64 iChunk = iSlot / c->nChunk;
  int iPos = (int)(iSlot % c->nChunk);
  unsigned char aRowid[8];
  sqlite3_blob *b;
  int rc = write_blob_open(p, iChunk, &b);
  if (rc != SQLITE_OK) return rc;
  put_le64(aRowid, iRowid);
  rc = sqlite3_blob_write(b, aRowid, 8,
                          (int)(annex_chunk_rowid_offset(c) + 8 * (size_t)iPos));
  if (rc == SQLITE_OK && pVec && chunk_has_vectors(c)) {
    rc = sqlite3_blob_write(b, pVec, (int)c->szVec,
                            (int)(annex_chunk_vector_offset(c) +
                                  c->szVec * (size_t)iPos));
  }
  if (rc == SQLITE_OK && aMeta) rc = write_meta(c, b, iPos, aMeta);
  if (rc == SQLITE_OK) rc = write_valid_bit(b, iPos, 1);
  sqlite3_blob_close(b);
  return rc;
}

int annex_meta_encode(annex_table *p, int iCol, sqlite3_value *v, int bCreate,
                      annex_mvalue *pOut) {
  sqlite3_stmt *s;
  int rc;
  pOut->v = 0;
  switch (sqlite3_value_type(v)) {
    case SQLITE_NULL: pOut->tag = ANNEX_MT_NULL; return SQLITE_OK;
    case SQLITE_INTEGER:
      /* A REAL column holds every number as a real; SQLite may hand an
      ** integral one over as an integer (RETURNING does). */
      if (iCol >= 0 && sqlite3_stricmp(p->pConfig->aCol[iCol].zType,
                                       "REAL") == 0) {
        double d = (double)sqlite3_value_int64(v);
        pOut->tag = ANNEX_MT_REAL;
        memcpy(&pOut->v, &d, 8);
        return SQLITE_OK;
      }
      pOut->tag = ANNEX_MT_INT;
      pOut->v = sqlite3_value_int64(v);
      return SQLITE_OK;
    case SQLITE_FLOAT: {
      double d = sqlite3_value_double(v);
      pOut->tag = ANNEX_MT_REAL;
      memcpy(&pOut->v, &d, 8);
      return SQLITE_OK;
    }
    case SQLITE_BLOB: pOut->tag = ANNEX_MT_BLOB; return SQLITE_OK;
  }
  pOut->tag = ANNEX_MT_TEXT;
  pOut->v = -1;
  rc = annex_storage_stmt(p, ANNEX_STMT_DICT_GET, &s);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_value(s, 1, v);
  if (sqlite3_step(s) == SQLITE_ROW) pOut->v = sqlite3_column_int64(s, 0);
  rc = sqlite3_reset(s);
  if (rc != SQLITE_OK || pOut->v >= 0 || !bCreate) return rc;
  rc = annex_storage_stmt(p, ANNEX_STMT_DICT_PUT, &s);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_value(s, 1, v);
  sqlite3_step(s);
  rc = sqlite3_reset(s);
  if (rc == SQLITE_OK) pOut->v = sqlite3_last_insert_rowid(p->db);
  return rc;
}

/* Finish a statement whose RETURNING clause yields the metadata columns
** (after its first sqlite3_step returned rcStep) and encode them into
** aMeta. SQLITE_CORRUPT_VTAB if it returned no row. */
static int finish_returning(annex_table *p, sqlite3_stmt *s, int rcStep,
                            annex_mvalue *aMeta) {
  const annex_config *c = p->pConfig;
  sqlite3_value *apDup[64], **ap = apDup;
  int rc = SQLITE_OK, n = c->nMeta;
  if (n > 64) ap = sqlite3_malloc64(sizeof(sqlite3_value *) * (size_t)n);
  if (ap == NULL) rc = SQLITE_NOMEM;
  for (int m = 0; m < n && rc == SQLITE_OK; m++) ap[m] = NULL;
  if (rc == SQLITE_OK && n > 0) {
    if (rcStep != SQLITE_ROW) rc = SQLITE_CORRUPT_VTAB;
    for (int m = 0; m < n && rc == SQLITE_OK; m++) {
      ap[m] = sqlite3_value_dup(sqlite3_column_value(s, m));
      if (ap[m] == NULL) rc = SQLITE_NOMEM;
    }
    if (rc == SQLITE_OK) sqlite3_step(s); /* runs to the end */
  }
  {
    /* reset returns the step's error, which wins over "no row"; only the
    ** first reset reports it: a second returns OK, and ap[] would then be
    ** read full of NULLs. */
    int rc2 = sqlite3_reset(s);
    if (rc2 != SQLITE_OK) rc = rc2;
  }
  for (int i = 0; i < c->nCol && rc == SQLITE_OK; i++) {
    int m = c->aCol[i].iMeta;
    if (m >= 0) rc = annex_meta_encode(p, i, ap[m], 1, &aMeta[m]);
  }
  for (int m = 0; ap && m < n; m++) sqlite3_value_free(ap[m]);
  if (ap != apDup) sqlite3_free(ap);
  return rc;
}

/* Allocate the next global slot, creating its chunk when needed. */
static int alloc_slot(annex_table *p, sqlite3_int64 *piSlot) {
  const annex_config *c = p->pConfig;
  sqlite3_int64 n;
  int rc = annex_storage_slots(p, &n);
  if (rc != SQLITE_OK) return rc;
  if (n == INT64_MAX) return SQLITE_CORRUPT_VTAB; /* no next slot */
  if (n % c->nChunk == 0) {
    sqlite3_stmt *s;
    rc = annex_storage_stmt(p, ANNEX_STMT_CHUNK_INSERT, &s);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(s, 1, n / c->nChunk);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)annex_chunk_bytes(c));
    sqlite3_step(s);
    rc = sqlite3_reset(s);
    if (rc == SQLITE_CONSTRAINT) rc = SQLITE_CORRUPT_VTAB;
    if (rc != SQLITE_OK) return rc;
  }
  rc = annex_storage_config_set_int(p, "slots", n + 1);
  if (rc != SQLITE_OK) return rc;
  p->nSlotCache = n + 1;
  p->bSlotCache = 1;
  *piSlot = n;
  return SQLITE_OK;
}

/* Bind the non-vector user columns from apVal, from parameter iFirst on. */
static void bind_columns(annex_table *p, sqlite3_stmt *s, int iFirst,
                         sqlite3_value **apVal) {
  const annex_config *c = p->pConfig;
  int n = iFirst;
  for (int i = 0; i < c->nCol; i++) {
    if (c->aCol[i].eKind == ANNEX_COL_VECTOR) continue;
    sqlite3_bind_value(s, n++, apVal[i]);
  }
}

/* Insert the t_rows row; *piRowid gets the rowid SQLite chose if pRowid is
** NULL, aMeta the compact form of the stored metadata. */
static int rows_insert(annex_table *p, sqlite3_value *pRowid,
                       sqlite3_int64 iSlot, sqlite3_value **apVal,
                       sqlite3_int64 *piRowid, annex_mvalue *aMeta) {
  sqlite3_stmt *s;
  int rc = annex_storage_stmt(p, ANNEX_STMT_ROWS_INSERT, &s);
  if (rc != SQLITE_OK) return rc;
  if (pRowid && sqlite3_value_type(pRowid) != SQLITE_NULL) {
    sqlite3_bind_int64(s, 1, sqlite3_value_int64(pRowid));
  } else {
    sqlite3_bind_null(s, 1);
  }
  sqlite3_bind_int64(s, 2, iSlot);
  bind_columns(p, s, 3, apVal);
  rc = sqlite3_step(s);
  /* Read the rowid now: dictionary inserts below move last_insert_rowid. */
  *piRowid = sqlite3_last_insert_rowid(p->db);
  return finish_returning(p, s, rc, aMeta);
}

int annex_storage_insert(annex_table *p, sqlite3_value *pRowid,
                         sqlite3_value **apVal, sqlite3_int64 *piRowid,
                         sqlite3_int64 *piSlot, void *pVecOut) {
  const annex_config *c = p->pConfig;
  char *zErr = NULL;
  void *pVec = sqlite3_malloc64(c->szVec);
  annex_mvalue *aMeta = sqlite3_malloc64(sizeof(annex_mvalue) *
                                         (size_t)(c->nMeta + 1));
  sqlite3_int64 iSlot = 0;
  int rc;
  if (pVec == NULL || aMeta == NULL) {
    sqlite3_free(pVec);
    sqlite3_free(aMeta);
    return SQLITE_NOMEM;
  }
  rc = annex_vector_parse(apVal[c->iVecCol], c->eElem, c->nDim,
                          c->aCol[c->iVecCol].zName, pVec, &zErr);
  if (rc == SQLITE_ERROR) {
    annex_set_error(&p->base, "%s", zErr);
  }
  sqlite3_free(zErr);
  annex_storage_reset_blobs(p);
  if (rc == SQLITE_OK) rc = annex_storage_bump_counter(p);
  if (rc == SQLITE_OK) rc = alloc_slot(p, &iSlot);
  if (rc == SQLITE_OK) {
    rc = rows_insert(p, pRowid, iSlot, apVal, piRowid, aMeta);
  }
  if (rc == SQLITE_OK) rc = write_slot(p, iSlot, *piRowid, pVec, aMeta);
  if (rc == SQLITE_OK) {
    *piSlot = iSlot;
    if (pVecOut) memcpy(pVecOut, pVec, c->szVec);
  }
  sqlite3_free(pVec);
  sqlite3_free(aMeta);
  return rc;
}

/* Delete chunk iChunk when all its slots were allocated and are now free.
** The handle *pb on the chunk is closed first (its row goes away), and *pb
** cleared then, so the caller never closes it twice, whatever fails next. */
static int maybe_drop_chunk(annex_table *p, sqlite3_blob **pb,
                            sqlite3_int64 iChunk) {
  const annex_config *c = p->pConfig;
  size_t nValid = annex_chunk_valid_bytes(c);
  unsigned char aValid[ANNEX_CHUNK_MAX / 8];
  sqlite3_int64 nSlots;
  sqlite3_stmt *s;
  int rc = annex_storage_slots(p, &nSlots);
  if (rc != SQLITE_OK) return rc;
  if ((iChunk + 1) * c->nChunk > nSlots) return SQLITE_OK; /* still filling */
  rc = sqlite3_blob_read(*pb, aValid, (int)nValid, 0);
  if (rc != SQLITE_OK) return rc;
  for (size_t i = 0; i < nValid; i++) {
    if (aValid[i]) return SQLITE_OK;
  }
  sqlite3_blob_close(*pb);
  *pb = NULL;
  rc = annex_storage_stmt(p, ANNEX_STMT_CHUNK_DELETE, &s);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(s, 1, iChunk);
  sqlite3_step(s);
  /* (one reset: a second would return SQLITE_OK and lose the error) */
  return sqlite3_reset(s);
}

int annex_storage_drop_empty_chunks(annex_table *p) {
  const annex_config *c = p->pConfig;
  sqlite3_int64 nSlots, nChunk;
  int rc;
  annex_storage_reset_blobs(p);
  rc = annex_storage_slots(p, &nSlots);
  nChunk = nSlots / c->nChunk; /* chunks whose slots were all allocated */
  for (sqlite3_int64 i = 0; i < nChunk && rc == SQLITE_OK; i++) {
    sqlite3_blob *b = NULL;
    rc = write_blob_open(p, i, &b);
    if (rc == SQLITE_CORRUPT_VTAB && b == NULL) {
      rc = SQLITE_OK; /* already gone */
      continue;
    }
    if (rc == SQLITE_OK) rc = maybe_drop_chunk(p, &b, i);
    if (b) sqlite3_blob_close(b);
  }
  return rc;
}

int annex_storage_delete(annex_table *p, sqlite3_int64 iRowid,
                         sqlite3_int64 *piSlot) {
  const annex_config *c = p->pConfig;
  sqlite3_int64 iSlot;
  sqlite3_blob *b = NULL;
  sqlite3_stmt *s;
  int rc;
  *piSlot = -1;
  annex_storage_reset_blobs(p);
  rc = annex_storage_locate(p, iRowid, &iSlot);
  if (rc == SQLITE_DONE) return SQLITE_OK; /* nothing to delete */
  if (rc == SQLITE_OK) rc = check_owner(p, iRowid, iSlot);
  if (rc == SQLITE_OK) rc = annex_storage_bump_counter(p);
  if (rc == SQLITE_OK) rc = write_blob_open(p, iSlot / c->nChunk, &b);
  if (rc == SQLITE_OK) rc = write_valid_bit(b, (int)(iSlot % c->nChunk), 0);
  if (rc == SQLITE_OK && p->pAnn == NULL) {
    rc = maybe_drop_chunk(p, &b, iSlot / c->nChunk);
  }
  if (b) sqlite3_blob_close(b);
  if (rc == SQLITE_OK) rc = annex_storage_stmt(p, ANNEX_STMT_ROWS_DELETE, &s);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, iRowid);
    sqlite3_step(s);
    rc = sqlite3_reset(s);
  }
  if (rc == SQLITE_OK) *piSlot = iSlot;
  return rc;
}

/* Rewrite the rowid stored in a slot (rowid change by UPDATE). */
static int rekey(annex_table *p, sqlite3_int64 iOld, sqlite3_int64 iNew,
                 sqlite3_int64 iSlot) {
  sqlite3_stmt *s;
  int rc = annex_storage_stmt(p, ANNEX_STMT_ROWS_REKEY, &s);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(s, 1, iOld);
  sqlite3_bind_int64(s, 2, iNew);
  sqlite3_step(s);
  rc = sqlite3_reset(s);
  if (rc == SQLITE_OK) rc = write_slot(p, iSlot, iNew, NULL, NULL);
  return rc;
}

int annex_storage_update(annex_table *p, sqlite3_int64 iOld,
                         sqlite3_int64 iNew, sqlite3_value **apVal,
                         sqlite3_int64 *piSlot, void *pVecOut, int *pbVec) {
  const annex_config *c = p->pConfig;
  sqlite3_value *pVecVal = apVal[c->iVecCol];
  void *pVec = NULL;
  annex_mvalue *aMeta;
  sqlite3_int64 iSlot;
  sqlite3_stmt *s;
  int rc;
  annex_storage_reset_blobs(p);
  if (!sqlite3_value_nochange(pVecVal)) {
    char *zErr = NULL;
    pVec = sqlite3_malloc64(c->szVec);
    if (pVec == NULL) return SQLITE_NOMEM;
    rc = annex_vector_parse(pVecVal, c->eElem, c->nDim,
                            c->aCol[c->iVecCol].zName, pVec, &zErr);
    if (rc == SQLITE_ERROR) annex_set_error(&p->base, "%s", zErr);
    sqlite3_free(zErr);
    if (rc != SQLITE_OK) {
      sqlite3_free(pVec);
      return rc;
    }
  }
  aMeta = sqlite3_malloc64(sizeof(annex_mvalue) * (size_t)(c->nMeta + 1));
  rc = aMeta ? annex_storage_locate(p, iOld, &iSlot) : SQLITE_NOMEM;
  if (rc == SQLITE_DONE) rc = SQLITE_CORRUPT_VTAB;
  if (rc == SQLITE_OK) rc = check_owner(p, iOld, iSlot);
  if (rc == SQLITE_OK) rc = annex_storage_bump_counter(p);
  if (rc == SQLITE_OK && iNew != iOld) rc = rekey(p, iOld, iNew, iSlot);
  if (rc == SQLITE_OK) rc = annex_storage_stmt(p, ANNEX_STMT_ROWS_UPDATE, &s);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, iNew);
    bind_columns(p, s, 2, apVal);
    rc = finish_returning(p, s, sqlite3_step(s), aMeta);
  }
  if (rc == SQLITE_OK) rc = write_slot(p, iSlot, iNew, pVec, aMeta);
  if (rc == SQLITE_OK) {
    *piSlot = iSlot;
    *pbVec = pVec != NULL;
    if (pVec && pVecOut) memcpy(pVecOut, pVec, c->szVec);
  }
  sqlite3_free(pVec);
  sqlite3_free(aMeta);
  return rc;
}

/**************************************************************************
** Chunk iteration.
*/

struct annex_chunk_iter {
  annex_table *p;         /* the table (borrowed) */
  sqlite3_stmt *pList;    /* "SELECT chunk ... ORDER BY chunk" (owned) */
  sqlite3_blob *pBlob;    /* read handle on the current chunk (owned) */
  sqlite3_int64 nSlots;   /* global slot counter at open */
  unsigned char *aHead;   /* valid bitmap + rowids of the current chunk */
  int64_t *aRowid;        /* aligned rowids of the current chunk */
  sqlite3_int64 iLast;    /* id of the last chunk returned, -1 before */
  int bCache;             /* read through the connection's chunk cache */
  size_t nFillLeft;       /* bytes this scan may still add to the cache */
  const unsigned char *pCached; /* the current chunk's cached copy, or NULL */
};

int annex_chunk_iter_open(annex_table *p, annex_chunk_iter **pp) {
  const annex_config *c = p->pConfig;
  annex_chunk_iter *it;
  char *zSql;
  int rc;
  *pp = NULL;
  it = sqlite3_malloc64(sizeof(*it));
  if (it == NULL) return SQLITE_NOMEM;
  memset(it, 0, sizeof(*it));
  it->p = p;
  it->iLast = -1;
  it->aHead = sqlite3_malloc64(annex_chunk_vector_offset(c));
  it->aRowid = sqlite3_malloc64(8 * (size_t)c->nChunk);
  if (it->aHead == NULL || it->aRowid == NULL) {
    annex_chunk_iter_close(it);
    return SQLITE_NOMEM;
  }
  rc = annex_storage_slots(p, &it->nSlots);
  zSql = sqlite3_mprintf("SELECT chunk FROM \"%w\".\"%w_chunks\" ORDER BY "
                         "chunk", p->zDb, p->zName);
  if (zSql == NULL) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) {
    rc = sqlite3_prepare_v2(p->db, zSql, -1, &it->pList, 0);
    if (rc != SQLITE_OK) prepare_error(p, rc);
  }
  sqlite3_free(zSql);
  if (rc != SQLITE_OK) {
    annex_chunk_iter_close(it);
    return rc;
  }
  *pp = it;
  return SQLITE_OK;
}

int annex_chunk_iter_open_cached(annex_table *p, annex_chunk_iter **pp) {
  int bUse = 0;
  int rc = chunk_has_vectors(p->pConfig) ? annex_cache_validate(p, &bUse)
                                         : SQLITE_OK;
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, pp);
  if (rc == SQLITE_OK && bUse) {
    /* The first scan since the cache was (re)started only marks the table
    ** as scanned: a one-off query pays nothing for a cache it never uses,
    ** and a table rewritten between every two scans is never filled. */
    (*pp)->bCache = 1;
    (*pp)->nFillLeft = p->cache.bScanned ? ANNEX_CACHE_FILL_PER_SCAN : 0;
    p->cache.bScanned = 1;
  }
  return rc;
}

/* Decode n little-endian int64 rowids. */
static void rowids_decode(int64_t *aOut, const unsigned char *a, int n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(aOut, a, 8 * (size_t)n); /* already in host order */
#else
  for (int i = 0; i < n; i++) {
    uint64_t u = 0;
    for (int b = 7; b >= 0; b--) u = (u << 8) | a[8 * i + b];
    aOut[i] = (int64_t)u;
  }
#endif
}

/* Read chunk iChunk's whole blob into a new cache entry, if the budget
** allows: SQLITE_OK with it->pCached set, or left NULL to read it the
** uncached way. */
static int iter_fill_cache(annex_chunk_iter *it, sqlite3_int64 iChunk) {
  size_t nByte = annex_chunk_bytes(it->p->pConfig);
  unsigned char *a;
  int rc;
  /* at least one chunk, however large, so every table can be cached */
  if (nByte > it->nFillLeft && it->nFillLeft < ANNEX_CACHE_FILL_PER_SCAN) {
    return SQLITE_OK;
  }
  it->nFillLeft = nByte > it->nFillLeft ? 0 : it->nFillLeft - nByte;
  a = annex_cache_alloc(it->p, iChunk, nByte);
  if (a == NULL) return SQLITE_OK;
  rc = sqlite3_blob_read(it->pBlob, a, (int)nByte, 0);
  if (rc != SQLITE_OK) annex_cache_forget(it->p, iChunk, nByte);
  else it->pCached = a;
  return rc;
}

static int iter_load(annex_chunk_iter *it, sqlite3_int64 iChunk) {
  annex_table *p = it->p;
  const annex_config *c = p->pConfig;
  const unsigned char *aHead;
  char *zTab;
  int rc = SQLITE_OK;
  it->pCached = it->bCache ? annex_cache_get(p, iChunk) : NULL;
  if (it->pCached) {
    rowids_decode(it->aRowid, it->pCached + annex_chunk_rowid_offset(c),
                  c->nChunk);
    return SQLITE_OK;
  }
  if (it->pBlob) {
    rc = sqlite3_blob_reopen(it->pBlob, iChunk);
  } else {
    zTab = sqlite3_mprintf("%s_chunks", p->zName);
    if (zTab == NULL) return SQLITE_NOMEM;
    rc = sqlite3_blob_open(p->db, p->zDb, zTab, "data", iChunk, 0, &it->pBlob);
    sqlite3_free(zTab);
  }
  /* The row was just listed, so SQLITE_ERROR means its data is not a blob
  ** (or text): "cannot open value of type integer". */
  if (rc == SQLITE_ERROR) rc = SQLITE_CORRUPT_VTAB;
  if (rc == SQLITE_OK &&
      (size_t)sqlite3_blob_bytes(it->pBlob) != annex_chunk_bytes(c)) {
    rc = SQLITE_CORRUPT_VTAB;
  }
  if (rc == SQLITE_OK && it->bCache) rc = iter_fill_cache(it, iChunk);
  if (rc == SQLITE_OK && it->pCached == NULL) {
    rc = sqlite3_blob_read(it->pBlob, it->aHead,
                           (int)annex_chunk_vector_offset(c), 0);
  }
  aHead = it->pCached ? it->pCached : it->aHead;
  if (rc == SQLITE_OK) {
    rowids_decode(it->aRowid, aHead + annex_chunk_rowid_offset(c), c->nChunk);
  }
  return rc;
}

int annex_chunk_iter_next(annex_chunk_iter *it, annex_chunk *pChunk) {
  const annex_config *c = it->p->pConfig;
  sqlite3_int64 iChunk, nLeft;
  int rc = sqlite3_step(it->pList);
  if (rc != SQLITE_ROW) {
    rc = sqlite3_reset(it->pList);
    return rc == SQLITE_OK ? SQLITE_DONE : rc;
  }
  iChunk = sqlite3_column_int64(it->pList, 0);
  /* Bound the id before multiplying: a corrupt one may be huge. */
  if (iChunk < 0 || iChunk > it->nSlots / c->nChunk) return SQLITE_CORRUPT_VTAB;
  nLeft = it->nSlots - iChunk * c->nChunk;
  if (nLeft <= 0) return SQLITE_CORRUPT_VTAB;
  rc = iter_load(it, iChunk);
  if (rc != SQLITE_OK) return rc;
  it->iLast = iChunk;
  pChunk->iChunk = iChunk;
  pChunk->nSlot = nLeft < c->nChunk ? (int)nLeft : c->nChunk;
  pChunk->aValid = it->pCached ? it->pCached : it->aHead;
  pChunk->aRowid = it->aRowid;
  pChunk->pMeta = pChunk->aValid + annex_chunk_meta_offset(c);
  return SQLITE_ROW;
}

const void *annex_chunk_iter_cached_vectors(annex_chunk_iter *it) {
  if (it->pCached == NULL) return NULL;
  return it->pCached + annex_chunk_vector_offset(it->p->pConfig);
}

int annex_chunk_iter_vectors(annex_chunk_iter *it, int iSlot, int nVec,
                             void *out) {
  const annex_config *c = it->p->pConfig;
  size_t iOff = annex_chunk_vector_offset(c) + c->szVec * (size_t)iSlot;
  if (!chunk_has_vectors(c)) {
    return index_vectors(it->p, it->iLast * c->nChunk + iSlot, nVec, out);
  }
  if (it->pCached) {
    memcpy(out, it->pCached + iOff, c->szVec * (size_t)nVec);
    return SQLITE_OK;
  }
  return sqlite3_blob_read(it->pBlob, out, (int)(c->szVec * (size_t)nVec),
                           (int)iOff);
}

static int chunk_corrupt(annex_table *p, sqlite3_int64 iChunk,
                         const char *zWhat, int iPos) {
  annex_set_error(&p->base, "annex integrity-check of %s: chunk %lld %s%d",
                  p->zName, iChunk, zWhat, iPos);
  return SQLITE_CORRUPT_VTAB;
}

/* The live float vectors of a chunk are finite (the parser refuses NaN and
** infinity, so one that is not was never written by annex). */
static int check_vectors(annex_chunk_iter *it, const annex_chunk *ch) {
  const annex_config *c = it->p->pConfig;
  size_t nFloat = c->szVec / 4;
  float *a;
  int rc;
  if (c->eElem != ANNEX_ELEM_FLOAT32) return SQLITE_OK;
  a = sqlite3_malloc64(c->szVec * (size_t)ch->nSlot + 1);
  if (a == NULL) return SQLITE_NOMEM;
  rc = annex_chunk_iter_vectors(it, 0, ch->nSlot, a);
  for (int i = 0; i < ch->nSlot && rc == SQLITE_OK; i++) {
    if (!annex_bit_get(ch->aValid, i)) continue;
    for (size_t j = 0; j < nFloat; j++) {
      if (!isfinite(a[nFloat * (size_t)i + j])) {
        rc = chunk_corrupt(it->p, ch->iChunk,
                           "holds NaN or infinity in the vector of slot ", i);
        break;
      }
    }
  }
  sqlite3_free(a);
  return rc;
}

/* The metadata of live slots: known tags, and 0 under NULL and BLOB. */
static int check_meta_tags(annex_chunk_iter *it, const annex_chunk *ch) {
  static const unsigned char aZero[8];
  const annex_config *c = it->p->pConfig;
  for (int m = 0; m < c->nMeta; m++) {
    const unsigned char *aTag, *aVal;
    aTag = ch->pMeta + annex_meta_tags_offset(m, c->nChunk);
    aVal = ch->pMeta + annex_meta_values_offset(m, c->nChunk);
    for (int i = 0; i < ch->nSlot; i++) {
      if (!annex_bit_get(ch->aValid, i)) continue;
      if (aTag[i] > ANNEX_MT_BLOB) {
        return chunk_corrupt(it->p, ch->iChunk, "has an unknown metadata tag "
                             "in slot ", i);
      }
      if ((aTag[i] == ANNEX_MT_NULL || aTag[i] == ANNEX_MT_BLOB) &&
          memcmp(aVal + 8 * (size_t)i, aZero, 8) != 0) {
        return chunk_corrupt(it->p, ch->iChunk, "has a value under a NULL or "
                             "BLOB tag in slot ", i);
      }
    }
  }
  return SQLITE_OK;
}

int annex_chunk_check(annex_chunk_iter *it, const annex_chunk *ch) {
  const annex_config *c = it->p->pConfig;
  int nLive = 0, rc;
  for (int i = 0; i < c->nChunk; i++) nLive += annex_bit_get(ch->aValid, i);
  if (nLive == 0 && ch->nSlot == c->nChunk && it->p->pAnn == NULL) {
    /* it is deleted when its last slot is freed (with an ANN index, by
    ** 'optimize': the index's tombstones keep their vectors there) */
    return chunk_corrupt(it->p, ch->iChunk, "has every slot allocated and "
                         "none live, so should not exist (slots: ", 0);
  }
  rc = check_meta_tags(it, ch);
  if (rc == SQLITE_OK) rc = check_vectors(it, ch);
  return rc;
}

int annex_chunk_iter_check_end(annex_chunk_iter *it) {
  sqlite3_int64 n = it->p->pConfig->nChunk;
  if (it->nSlots % n != 0 && it->iLast != it->nSlots / n) {
    /* the chunk still filling is never deleted */
    return chunk_corrupt(it->p, it->nSlots / n, "is missing, though the next "
                         "slot goes into it at position ",
                         (int)(it->nSlots % n));
  }
  return SQLITE_DONE;
}

void annex_chunk_iter_close(annex_chunk_iter *it) {
  if (it == NULL) return;
  sqlite3_finalize(it->pList);
  if (it->pBlob) sqlite3_blob_close(it->pBlob);
  sqlite3_free(it->aHead);
  sqlite3_free(it->aRowid);
  sqlite3_free(it);
}
