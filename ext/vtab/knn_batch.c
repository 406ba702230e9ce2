/*
** knn_batch.c — the table-valued function annex_knn(table, queries, k).
**
**   SELECT query, rowid, distance FROM annex_knn('docs', :queries, 10);
**
** :queries is a BLOB of Q x N float32 values, a JSON array of Q vectors, or
** the name of a table whose first column holds the query vectors. Output:
** for each query, its k nearest rows in distance order; `query` is the
** 0-based position of the query in the BLOB or array, or the query table's
** rowid. All queries are answered in one pass over the vectors, with the
** distances of a chunk computed as one matrix product (ext/index/batch.c);
** results equal Q separate single-vector queries. float vectors only.
** Under the table's device= option (auto or gpu) the CUDA plugin may answer
** instead (gpu.c), with the same results.
*/
#include "annex_int.h"
#include "../index/batch.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define KB_COL_QUERY 0
#define KB_COL_ROWID 1
#define KB_COL_DISTANCE 2
#define KB_COL_TABLE 3
#define KB_COL_QUERIES 4
#define KB_COL_K 5

typedef struct kb_vtab {
  sqlite3_vtab base;
  sqlite3 *db;        /* the connection (borrowed) */
  annex_conn *pConn;  /* open annex tables of the connection (borrowed) */
} kb_vtab;

typedef struct kb_row {
  sqlite3_int64 iQuery; /* query id */
  annex_hit hit;        /* neighbour and its kernel score */
} kb_row;

typedef struct kb_cursor {
  sqlite3_vtab_cursor base;
  kb_row *aRow;          /* results, in output order (owned) */
  sqlite3_int64 nRow, iRow;
  annex_metric eMetric;  /* to turn scores into distances */
} kb_cursor;

/* The query vectors of one call. */
typedef struct kb_queries {
  float *a;             /* n x nDim (sqlite3_malloc64) */
  sqlite3_int64 *aId;   /* query ids, or NULL for 0..n-1 */
  int n;                /* queries */
} kb_queries;

static int kb_connect(sqlite3 *db, void *pAux, int argc,
                      const char *const *argv, sqlite3_vtab **pp,
                      char **pzErr) {
  kb_vtab *v;
  int rc;
  (void)argc;
  (void)argv;
  (void)pzErr;
  rc = sqlite3_declare_vtab(db, "CREATE TABLE x(query INTEGER, rowid "
                                "INTEGER, distance REAL, tbl HIDDEN, "
                                "queries HIDDEN, k HIDDEN)");
  if (rc != SQLITE_OK) return rc;
  v = sqlite3_malloc64(sizeof(*v));
  if (v == NULL) return SQLITE_NOMEM;
  memset(v, 0, sizeof(*v));
  v->db = db;
  v->pConn = pAux;
  *pp = &v->base;
  return SQLITE_OK;
}

static int kb_disconnect(sqlite3_vtab *p) {
  sqlite3_free(p);
  return SQLITE_OK;
}

static int kb_best_index(sqlite3_vtab *p, sqlite3_index_info *pInfo) {
  int aArg[3] = {-1, -1, -1};
  (void)p;
  for (int i = 0; i < pInfo->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &pInfo->aConstraint[i];
    if (c->op != SQLITE_INDEX_CONSTRAINT_EQ || c->iColumn < KB_COL_TABLE) {
      continue;
    }
    if (!c->usable) return SQLITE_CONSTRAINT;
    aArg[c->iColumn - KB_COL_TABLE] = i;
  }
  for (int j = 0; j < 3; j++) {
    if (aArg[j] < 0) {
      sqlite3_free(p->zErrMsg);
      p->zErrMsg = sqlite3_mprintf("usage: annex_knn('table', queries, k)");
      return SQLITE_ERROR;
    }
    pInfo->aConstraintUsage[aArg[j]].argvIndex = j + 1;
    pInfo->aConstraintUsage[aArg[j]].omit = 1;
  }
  pInfo->estimatedCost = 1e6;
  return SQLITE_OK;
}

static int kb_open(sqlite3_vtab *p, sqlite3_vtab_cursor **pp) {
  kb_cursor *c = sqlite3_malloc64(sizeof(*c));
  (void)p;
  if (c == NULL) return SQLITE_NOMEM;
  memset(c, 0, sizeof(*c));
  *pp = &c->base;
  return SQLITE_OK;
}

static int kb_close(sqlite3_vtab_cursor *cur) {
  kb_cursor *c = (kb_cursor *)cur;
  sqlite3_free(c->aRow);
  sqlite3_free(c);
  return SQLITE_OK;
}

static int kb_error(kb_vtab *v, int rc, const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  sqlite3_free(v->base.zErrMsg);
  v->base.zErrMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  return rc;
}

/* The open annex table named zArg ("t" or "schema.t"), connecting it on
** this connection first if no statement has used it yet. */
static int find_table(kb_vtab *v, const char *zArg, annex_table **pp) {
  char zDb[128];
  const char *zTab;
  annex_split_name(zArg, zDb, sizeof(zDb), &zTab);
  for (int iTry = 0; iTry < 2; iTry++) {
    if ((*pp = annex_find_open(v->pConn, zDb, zTab)) != NULL) return SQLITE_OK;
    if (iTry == 0) { /* preparing a statement connects the table */
      sqlite3_stmt *s = NULL;
      char *zSql = sqlite3_mprintf("SELECT 1 FROM \"%w\".\"%w\" WHERE 0", zDb,
                                   zTab);
      int rc;
      if (zSql == NULL) return SQLITE_NOMEM;
      rc = sqlite3_prepare_v2(v->db, zSql, -1, &s, NULL);
      sqlite3_free(zSql);
      sqlite3_finalize(s);
      /* SQLITE_ERROR is a name that is no table; anything else (an I/O
      ** error reading the schema, out of memory while connecting) is
      ** reported as it is, not as a missing table. */
      if (rc != SQLITE_OK && rc != SQLITE_ERROR) {
        return kb_error(v, rc, "annex_knn: %s", sqlite3_errmsg(v->db));
      }
    }
  }
  return kb_error(v, SQLITE_ERROR, "annex_knn: no annex table named %s", zArg);
}

static int queries_push(kb_vtab *v, kb_queries *q, const float *a, int nDim,
                        sqlite3_int64 iId, int *pnAlloc) {
  if (q->n == *pnAlloc) {
    int nNew = *pnAlloc ? 2 * *pnAlloc : 64;
    float *aNew = sqlite3_realloc64(q->a, sizeof(float) * (size_t)nNew * nDim);
    sqlite3_int64 *aIdNew;
    if (aNew == NULL) return SQLITE_NOMEM;
    q->a = aNew;
    aIdNew = sqlite3_realloc64(q->aId, sizeof(sqlite3_int64) * (size_t)nNew);
    if (aIdNew == NULL) return SQLITE_NOMEM;
    q->aId = aIdNew;
    *pnAlloc = nNew;
  }
  (void)v;
  memcpy(q->a + (size_t)q->n * nDim, a, sizeof(float) * (size_t)nDim);
  q->aId[q->n++] = iId;
  return SQLITE_OK;
}

/* Queries from the first column of a table (ids = its rowids). */
static int queries_from_table(kb_vtab *v, const char *zName,
                              const annex_config *c, kb_queries *q) {
  sqlite3_stmt *s = NULL;
  float *aVec = sqlite3_malloc64(c->szVec);
  char *zSql = sqlite3_mprintf("SELECT rowid, * FROM \"%w\"", zName);
  int rc = (aVec && zSql) ? SQLITE_OK : SQLITE_NOMEM, nAlloc = 0;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(v->db, zSql, -1, &s, NULL);
  if (rc == SQLITE_ERROR) {
    rc = kb_error(v, rc, "annex_knn: queries must be a float32 BLOB, a JSON "
                  "array of vectors, or a table name (%s)",
                  sqlite3_errmsg(v->db));
  }
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    char *zErr = NULL;
    rc = annex_vector_parse(sqlite3_column_value(s, 1), c->eElem, c->nDim,
                            "the query table's first column", aVec, &zErr);
    if (rc == SQLITE_ERROR) rc = kb_error(v, rc, "annex_knn: %s", zErr);
    sqlite3_free(zErr);
    if (rc == SQLITE_OK) {
      rc = queries_push(v, q, aVec, c->nDim, sqlite3_column_int64(s, 0),
                        &nAlloc);
    }
  }
  if (s && rc == SQLITE_OK) rc = sqlite3_finalize(s);
  else sqlite3_finalize(s);
  sqlite3_free(zSql);
  sqlite3_free(aVec);
  return rc;
}

/* Queries from a JSON array of vectors: each element parsed as a vector. */
static int queries_from_json(kb_vtab *v, const char *zJson,
                             const annex_config *c, kb_queries *q) {
  sqlite3_stmt *s = NULL;
  float *aVec = sqlite3_malloc64(c->szVec);
  int rc = aVec ? SQLITE_OK : SQLITE_NOMEM, nAlloc = 0;
  if (rc == SQLITE_OK) {
    rc = sqlite3_prepare_v2(v->db, "SELECT key, value FROM json_each(?)", -1,
                            &s, NULL);
  }
  if (rc == SQLITE_OK) sqlite3_bind_text(s, 1, zJson, -1, SQLITE_STATIC);
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    char *zErr = NULL;
    rc = annex_vector_parse(sqlite3_column_value(s, 1), c->eElem, c->nDim,
                            "query", aVec, &zErr);
    if (rc == SQLITE_ERROR) {
      rc = kb_error(v, rc, "annex_knn: query %lld: %s",
                    sqlite3_column_int64(s, 0), zErr);
    }
    sqlite3_free(zErr);
    if (rc == SQLITE_OK) {
      rc = queries_push(v, q, aVec, c->nDim, sqlite3_column_int64(s, 0),
                        &nAlloc);
    }
  }
  if (s && rc == SQLITE_OK) {
    rc = sqlite3_finalize(s);
    if (rc != SQLITE_OK) {
      rc = kb_error(v, rc, "annex_knn: queries are not a JSON array of "
                    "vectors (%s)", sqlite3_errmsg(v->db));
    }
  } else {
    sqlite3_finalize(s);
  }
  sqlite3_free(aVec);
  return rc;
}

static int read_queries(kb_vtab *v, sqlite3_value *pVal, const annex_config *c,
                        kb_queries *q) {
  memset(q, 0, sizeof(*q));
  if (sqlite3_value_type(pVal) == SQLITE_BLOB) {
    int nByte = sqlite3_value_bytes(pVal);
    if (nByte == 0 || (size_t)nByte % c->szVec != 0) {
      return kb_error(v, SQLITE_ERROR, "annex_knn: a queries BLOB holds Q x "
                      "%d float32 values (a multiple of %d bytes), got %d "
                      "bytes", c->nDim, (int)c->szVec, nByte);
    }
    q->n = (int)((size_t)nByte / c->szVec);
    q->a = sqlite3_malloc64((size_t)nByte);
    if (q->a == NULL) return SQLITE_NOMEM;
    memcpy(q->a, sqlite3_value_blob(pVal), (size_t)nByte);
    for (int i = 0; i < q->n * c->nDim; i++) {
      if (q->a[i] != q->a[i] || q->a[i] - q->a[i] != 0) {
        return kb_error(v, SQLITE_ERROR, "annex_knn: query %d holds NaN or "
                        "infinity", i / c->nDim);
      }
    }
    return SQLITE_OK;
  }
  if (sqlite3_value_type(pVal) == SQLITE_TEXT) {
    const char *z = (const char *)sqlite3_value_text(pVal);
    while (z && (*z == ' ' || *z == '\n' || *z == '\t')) z++;
    if (z && *z == '[') return queries_from_json(v, z, c, q);
    if (z) return queries_from_table(v, z, c, q);
  }
  return kb_error(v, SQLITE_ERROR, "annex_knn: queries must be a float32 "
                  "BLOB, a JSON array of vectors, or a table name");
}

static int read_k(kb_vtab *v, sqlite3_value *pVal, sqlite3_int64 *pk) {
  char *zErr = NULL;
  int rc = annex_read_k(pVal, pk, &zErr);
  if (rc == SQLITE_ERROR) rc = kb_error(v, rc, "annex_knn: %s", zErr);
  sqlite3_free(zErr);
  return rc;
}

static void *kb_malloc(size_t n) { return sqlite3_malloc64(n); }

/* One pass over the table's chunks for every query. */
static int run_batch(annex_table *p, const kb_queries *q, sqlite3_int64 k,
                     annex_batch *b) {
  const annex_config *c = p->pConfig;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  sqlite3_int64 nSlots = 0;
  float *aVec = sqlite3_malloc64(c->szVec * (size_t)c->nChunk);
  int rc = aVec ? annex_storage_slots(p, &nSlots) : SQLITE_NOMEM;
  if (rc == SQLITE_OK && k > nSlots) k = nSlots;
  if (rc == SQLITE_OK &&
      annex_batch_init(b, c->eMetric, (size_t)c->nDim, q->a, (size_t)q->n,
                       (size_t)k, (size_t)c->nChunk, annex_thread_count(),
                       kb_malloc, sqlite3_free) != 0) {
    rc = SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open_cached(p, &it);
  while (rc == SQLITE_OK) {
    const void *pVec;
    rc = annex_chunk_iter_next(it, &ch);
    if (rc != SQLITE_ROW) break;
    pVec = annex_chunk_iter_cached_vectors(it);
    rc = SQLITE_OK;
    if (pVec == NULL) {
      rc = annex_chunk_iter_vectors(it, 0, ch.nSlot, aVec);
      pVec = aVec;
    }
    if (rc == SQLITE_OK) {
      annex_batch_block(b, pVec, (size_t)ch.nSlot, ch.aValid, NULL,
                        ch.iChunk * c->nChunk, ch.aRowid);
    }
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  annex_chunk_iter_close(it);
  sqlite3_free(aVec);
  if (rc == SQLITE_OK) annex_batch_finish(b);
  return rc;
}

/* Flatten the per-query results into the cursor's rows. */
static int collect_rows(kb_cursor *cur, const kb_queries *q,
                        const annex_batch *b) {
  sqlite3_int64 n = 0;
  for (int i = 0; i < q->n; i++) n += (sqlite3_int64)b->aExact[i].n;
  cur->aRow = sqlite3_malloc64(sizeof(kb_row) * (size_t)(n ? n : 1));
  if (cur->aRow == NULL) return SQLITE_NOMEM;
  for (int i = 0; i < q->n; i++) {
    for (size_t j = 0; j < b->aExact[i].n; j++) {
      kb_row *r = &cur->aRow[cur->nRow++];
      r->iQuery = q->aId ? q->aId[i] : i;
      r->hit = b->aExact[i].a[j];
    }
  }
  return SQLITE_OK;
}

/* The batch on the GPU (gpu.c), its rows straight into the cursor;
** ANNEX_GPU_USE_CPU when the CPU is to answer. k <= the table's slots. */
static int batch_gpu(kb_vtab *v, kb_cursor *cur, annex_table *p,
                     const kb_queries *q, sqlite3_int64 k) {
  annex_hit *aHit = NULL;
  sqlite3_int64 *anHit = NULL, n = 0;
  char *zErr = NULL;
  int rc = annex_gpu_batch(p, p->pConfig->eDevice, q->a, q->n, k, &aHit,
                           &anHit, &zErr);
  if (zErr) kb_error(v, rc, "annex_knn: %s", zErr);
  sqlite3_free(zErr);
  if (rc != SQLITE_OK) return rc;
  for (int i = 0; i < q->n; i++) n += anHit[i];
  cur->aRow = sqlite3_malloc64(sizeof(kb_row) * (size_t)(n ? n : 1));
  for (int i = 0; cur->aRow && i < q->n; i++) {
    for (sqlite3_int64 j = 0; j < anHit[i]; j++) {
      kb_row *r = &cur->aRow[cur->nRow++];
      r->iQuery = q->aId ? q->aId[i] : i;
      r->hit = aHit[(size_t)i * (size_t)k + (size_t)j];
    }
  }
  sqlite3_free(aHit);
  sqlite3_free(anHit);
  return cur->aRow ? SQLITE_OK : SQLITE_NOMEM;
}

static int kb_filter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr,
                     int argc, sqlite3_value **argv) {
  kb_cursor *c = (kb_cursor *)cur;
  kb_vtab *v = (kb_vtab *)cur->pVtab;
  annex_table *p = NULL;
  kb_queries q;
  annex_batch b;
  sqlite3_int64 k = 0;
  const char *zTab = (const char *)sqlite3_value_text(argv[0]);
  int rc;
  (void)idxNum;
  (void)idxStr;
  (void)argc;
  memset(&q, 0, sizeof(q));
  memset(&b, 0, sizeof(b));
  sqlite3_free(c->aRow);
  c->aRow = NULL;
  c->nRow = c->iRow = 0;
  rc = zTab ? find_table(v, zTab, &p) : kb_error(v, SQLITE_ERROR,
                                                 "annex_knn: table name is "
                                                 "NULL");
  if (rc == SQLITE_OK && p->pConfig->eElem != ANNEX_ELEM_FLOAT32) {
    rc = kb_error(v, SQLITE_ERROR, "annex_knn supports float vectors; %s "
                  "holds %s vectors", p->zName,
                  annex_elem_name(p->pConfig->eElem));
  }
  if (rc == SQLITE_OK) rc = read_k(v, argv[2], &k);
  if (rc == SQLITE_OK) rc = read_queries(v, argv[1], p->pConfig, &q);
  if (rc == SQLITE_OK) {
    sqlite3_int64 nSlots = 0;
    rc = annex_storage_slots(p, &nSlots);
    if (rc == SQLITE_OK && k > nSlots) k = nSlots;
  }
  if (rc == SQLITE_OK) rc = batch_gpu(v, c, p, &q, k);
  if (rc == ANNEX_GPU_USE_CPU) {
    rc = run_batch(p, &q, k, &b);
    if (rc == SQLITE_OK) rc = collect_rows(c, &q, &b);
  }
  if (rc == SQLITE_OK) c->eMetric = p->pConfig->eMetric;
  annex_batch_free(&b);
  sqlite3_free(q.a);
  sqlite3_free(q.aId);
  if (rc != SQLITE_OK && rc != SQLITE_NOMEM && v->base.zErrMsg == NULL) {
    kb_error(v, rc, "annex_knn: %s", sqlite3_errmsg(v->db));
  }
  return rc;
}

static int kb_next(sqlite3_vtab_cursor *cur) {
  ((kb_cursor *)cur)->iRow++;
  return SQLITE_OK;
}

static int kb_eof(sqlite3_vtab_cursor *cur) {
  kb_cursor *c = (kb_cursor *)cur;
  return c->iRow >= c->nRow;
}

static int kb_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  kb_cursor *c = (kb_cursor *)cur;
  const kb_row *r = &c->aRow[c->iRow];
  switch (i) {
    case KB_COL_QUERY: sqlite3_result_int64(ctx, r->iQuery); break;
    case KB_COL_ROWID: sqlite3_result_int64(ctx, r->hit.rowid); break;
    case KB_COL_DISTANCE:
      sqlite3_result_double(ctx,
                            annex_score_to_distance(c->eMetric, r->hit.score));
      break;
  }
  return SQLITE_OK;
}

static int kb_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *pRowid) {
  *pRowid = ((kb_cursor *)cur)->iRow + 1;
  return SQLITE_OK;
}

static sqlite3_module kb_module = {
    0,         NULL,      kb_connect, kb_best_index, kb_disconnect,
    NULL,      kb_open,   kb_close,   kb_filter,     kb_next,
    kb_eof,    kb_column, kb_rowid,   NULL,          NULL,
    NULL,      NULL,      NULL,       NULL,          NULL,
    NULL,      NULL,      NULL,       NULL,
#if SQLITE_VERSION_NUMBER >= 3044000
    NULL,
#endif
};

int annex_register_knn_batch(sqlite3 *db, annex_conn *pConn) {
  return sqlite3_create_module_v2(db, "annex_knn", &kb_module, pConn, NULL);
}
