/*
** info.c — the table-valued function annex_info('table').
**
**   SELECT key, value FROM annex_info('docs');        -- or 'schema.docs'
**
** One row per fact: version and kernel set of the extension; the table's
** declaration (dimensions, element, metric, index, chunk_size, format);
** its contents (rows, chunks, slots, changes); bytes on disk of each shadow
** table (from dbstat when the SQLite build has it); memory held; the
** device knob, the CUDA plugin's status, bytes resident on the GPU, what
** the last k-NN ran on and the fallback counts (gpu.c).
** Reads the shadow tables through SQL, so it works from any connection.
*/
#include "annex_int.h"
#include "ann.h"

#include <string.h>

typedef struct info_row {
  char *zKey;            /* fact name (owned) */
  sqlite3_value *pValue; /* its value (owned, sqlite3_value_dup) */
} info_row;

typedef struct info_cursor {
  sqlite3_vtab_cursor base;
  info_row *aRow; /* facts (owned) */
  int nRow, nAlloc, iRow;
} info_cursor;

typedef struct info_vtab {
  sqlite3_vtab base;
  sqlite3 *db;
  annex_conn *pConn;
} info_vtab;

#define INFO_COL_KEY 0
#define INFO_COL_VALUE 1
#define INFO_COL_TABLE 2

static int info_connect(sqlite3 *db, void *pAux, int argc,
                        const char *const *argv, sqlite3_vtab **pp,
                        char **pzErr) {
  info_vtab *v;
  int rc;
  (void)argc;
  (void)argv;
  (void)pzErr;
  rc = sqlite3_declare_vtab(db, "CREATE TABLE x(key TEXT, value, "
                                "table_name HIDDEN)");
  if (rc != SQLITE_OK) return rc;
  v = sqlite3_malloc64(sizeof(*v));
  if (v == NULL) return SQLITE_NOMEM;
  memset(v, 0, sizeof(*v));
  v->db = db;
  v->pConn = pAux;
  *pp = &v->base;
  return SQLITE_OK;
}

static int info_disconnect(sqlite3_vtab *p) {
  sqlite3_free(p);
  return SQLITE_OK;
}

static int info_best_index(sqlite3_vtab *p, sqlite3_index_info *pInfo) {
  (void)p;
  for (int i = 0; i < pInfo->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &pInfo->aConstraint[i];
    if (c->iColumn == INFO_COL_TABLE && c->op == SQLITE_INDEX_CONSTRAINT_EQ) {
      if (!c->usable) return SQLITE_CONSTRAINT;
      pInfo->aConstraintUsage[i].argvIndex = 1;
      pInfo->aConstraintUsage[i].omit = 1;
      pInfo->idxNum = 1;
    }
  }
  pInfo->estimatedCost = 100;
  return SQLITE_OK;
}

static int info_open(sqlite3_vtab *p, sqlite3_vtab_cursor **pp) {
  info_cursor *c = sqlite3_malloc64(sizeof(*c));
  (void)p;
  if (c == NULL) return SQLITE_NOMEM;
  memset(c, 0, sizeof(*c));
  *pp = &c->base;
  return SQLITE_OK;
}

static void info_clear(info_cursor *c) {
  for (int i = 0; i < c->nRow; i++) {
    sqlite3_free(c->aRow[i].zKey);
    sqlite3_value_free(c->aRow[i].pValue);
  }
  c->nRow = c->iRow = 0;
}

static int info_close(sqlite3_vtab_cursor *cur) {
  info_cursor *c = (info_cursor *)cur;
  info_clear(c);
  sqlite3_free(c->aRow);
  sqlite3_free(c);
  return SQLITE_OK;
}

static int add_fact(info_cursor *c, const char *zKey, sqlite3_value *pVal) {
  if (c->nRow == c->nAlloc) {
    int nNew = c->nAlloc ? 2 * c->nAlloc : 32;
    info_row *aNew = sqlite3_realloc64(c->aRow, sizeof(info_row) * (size_t)nNew);
    if (aNew == NULL) return SQLITE_NOMEM;
    c->aRow = aNew;
    c->nAlloc = nNew;
  }
  c->aRow[c->nRow].zKey = sqlite3_mprintf("%s", zKey);
  c->aRow[c->nRow].pValue = sqlite3_value_dup(pVal);
  c->nRow++;
  if (c->aRow[c->nRow - 1].zKey == NULL) return SQLITE_NOMEM;
  if (pVal && c->aRow[c->nRow - 1].pValue == NULL) return SQLITE_NOMEM;
  return SQLITE_OK;
}

/* Run zSql (key, value rows) and add every row as a fact. */
static int add_query(info_cursor *c, sqlite3 *db, char *zSql) {
  sqlite3_stmt *s = NULL;
  int rc;
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_prepare_v2(db, zSql, -1, &s, NULL);
  sqlite3_free(zSql);
  while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    rc = add_fact(c, (const char *)sqlite3_column_text(s, 0),
                  sqlite3_column_value(s, 1));
  }
  if (rc == SQLITE_OK) rc = sqlite3_finalize(s);
  else sqlite3_finalize(s);
  return rc;
}

static int add_text(info_cursor *c, sqlite3 *db, const char *zKey,
                    const char *zVal) {
  return add_query(c, db, sqlite3_mprintf("SELECT %Q, %Q", zKey, zVal));
}

/* Bytes of each shadow table, when dbstat is compiled in. */
static int add_sizes(info_cursor *c, sqlite3 *db, const char *zDb,
                     const char *zTab) {
  static const char *azSuffix[] = {"config", "rows", "chunks", "dict"};
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM dbstat LIMIT 0", -1, &s, 0) !=
      SQLITE_OK) {
    sqlite3_finalize(s);
    return add_text(c, db, "bytes", "unknown: SQLite built without dbstat");
  }
  sqlite3_finalize(s);
  for (int i = 0; i < 4; i++) {
    int rc = add_query(c, db, sqlite3_mprintf(
        "SELECT 'bytes_%s', coalesce(sum(pgsize), 0) FROM dbstat(%Q) "
        "WHERE name = '%q_%s'", azSuffix[i], zDb, zTab, azSuffix[i]));
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

/* Connect the table on this connection if it is not yet (preparing a
** statement on it does), so its in-memory facts are there from the start. */
static int connect_table(sqlite3 *db, annex_conn *pConn, const char *zDb,
                         const char *zTab) {
  sqlite3_stmt *s = NULL;
  char *zSql;
  int rc;
  if (annex_find_open(pConn, zDb, zTab)) return SQLITE_OK;
  zSql = sqlite3_mprintf("SELECT rowid FROM \"%w\".\"%w\" LIMIT 0", zDb,
                         zTab);
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_prepare_v2(db, zSql, -1, &s, 0);
  sqlite3_free(zSql);
  sqlite3_finalize(s);
  /* a table that does not connect (corrupt, say) shows no memory facts */
  return rc == SQLITE_NOMEM ? rc : SQLITE_OK;
}

static int add_memory(info_cursor *c, sqlite3 *db, annex_conn *pConn,
                      const char *zDb, const char *zTab) {
  annex_table *p = annex_find_open(pConn, zDb, zTab);
  /* What a table holds besides its index: its object and parsed
  ** declaration, and the chunks its exact scans cached (chunk_cache.c). */
  sqlite3_int64 n = p ? (sqlite3_int64)(sizeof(*p) + sizeof(*p->pConfig) +
                                        sizeof(annex_column) *
                                            (size_t)p->pConfig->nCol)
                      : 0;
  sqlite3_int64 nCache = p ? (sqlite3_int64)p->cache.nByte : 0;
  int rc = add_query(c, db, sqlite3_mprintf("SELECT 'memory_table', %lld", n));
  if (rc == SQLITE_OK) {
    rc = add_query(c, db, sqlite3_mprintf("SELECT 'cache_bytes', %lld",
                                          nCache));
  }
  if (rc == SQLITE_OK) {
    rc = add_query(c, db, sqlite3_mprintf(
        "SELECT 'cache_limit', %lld UNION ALL SELECT 'cache_used', %lld",
        annex_cache_limit(), annex_cache_used()));
  }
  if (rc == SQLITE_OK) {
    rc = add_query(c, db, sqlite3_mprintf("SELECT 'memory_sqlite', %lld",
                                          sqlite3_memory_used()));
  }
  return rc;
}

typedef struct info_add_ctx {
  info_cursor *c;
  sqlite3 *db;
} info_add_ctx;

static int add_ann_fact(void *pCtx, const char *zKey, const char *zSqlValue) {
  info_add_ctx *x = (info_add_ctx *)pCtx;
  return add_query(x->c, x->db, sqlite3_mprintf("SELECT %Q, %s", zKey,
                                                zSqlValue));
}

/* The ANN index's own facts (when this connection has the table open) and
** the progress of a long operation on it (from any connection). */
static int add_index(info_cursor *c, sqlite3 *db, annex_conn *pConn,
                     const char *zDb, const char *zTab) {
  annex_table *p = annex_find_open(pConn, zDb, zTab);
  char zPhase[32];
  sqlite3_int64 nDone, nTotal;
  int rc = SQLITE_OK;
  info_add_ctx x;
  x.c = c;
  x.db = db;
  if (p && p->pAnn) rc = p->pAnn->pOps->xInfo(p->pAnn, &x, add_ann_fact);
  if (rc == SQLITE_OK && annex_progress_get(db, zDb, zTab, zPhase,
                                            sizeof(zPhase), &nDone,
                                            &nTotal)) {
    rc = add_query(c, db, sqlite3_mprintf(
        "SELECT 'progress_phase', %Q UNION ALL SELECT 'progress_done', %lld "
        "UNION ALL SELECT 'progress_total', %lld", zPhase, nDone, nTotal));
  }
  return rc;
}

/* The GPU facts of gpu.c. The table is connected first (preparing a
** statement on it does that) so its device= option is known. */
static int add_gpu(info_cursor *c, sqlite3 *db, annex_conn *pConn,
                   const char *zDb, const char *zTab) {
  annex_table *p = annex_find_open(pConn, zDb, zTab);
  info_add_ctx x;
  x.c = c;
  x.db = db;
  if (p == NULL) {
    sqlite3_stmt *s = NULL;
    char *zSql = sqlite3_mprintf("SELECT 1 FROM \"%w\".\"%w\" WHERE 0", zDb,
                                 zTab);
    int rc;
    if (zSql == NULL) return SQLITE_NOMEM;
    rc = sqlite3_prepare_v2(db, zSql, -1, &s, NULL);
    sqlite3_finalize(s);
    sqlite3_free(zSql);
    /* out of memory or an I/O error is this call's failure; a table that
    ** cannot connect (corrupt) just has no GPU state to show */
    if ((rc & 0xff) == SQLITE_NOMEM || (rc & 0xff) == SQLITE_IOERR) return rc;
    p = annex_find_open(pConn, zDb, zTab);
  }
  return annex_gpu_info(p, p ? p->pConfig->eDevice : ANNEX_DEVICE_AUTO, &x,
                        add_ann_fact);
}

static int info_collect(info_vtab *v, info_cursor *c, const char *zArg) {
  sqlite3 *db = v->db;
  char zDb[128];
  const char *zTab;
  int rc;
  annex_split_name(zArg, zDb, sizeof(zDb), &zTab);
  rc = add_query(c, db, sqlite3_mprintf(
      "SELECT 'table', %Q UNION ALL "
      "SELECT CASE key WHEN 'dims' THEN 'dimensions' ELSE key END, value "
      "FROM \"%w\".\"%w_config\"", zTab, zDb, zTab));
  if (rc == SQLITE_ERROR) {
    sqlite3_free(v->base.zErrMsg);
    v->base.zErrMsg = sqlite3_mprintf("annex_info: no annex table named %s",
                                      zArg);
    return rc;
  }
  if (rc == SQLITE_OK) rc = add_text(c, db, "version", ANNEX_VERSION);
  if (rc == SQLITE_OK) rc = add_text(c, db, "kernels", annex_kernel_set());
  if (rc == SQLITE_OK) {
    rc = add_query(c, db, sqlite3_mprintf("SELECT 'threads', %d",
                                          annex_thread_count()));
  }
  if (rc == SQLITE_OK) {
    rc = add_query(c, db, sqlite3_mprintf(
        "SELECT 'rows', count(*) FROM \"%w\".\"%w_rows\" UNION ALL "
        "SELECT 'chunks', count(*) FROM \"%w\".\"%w_chunks\"",
        zDb, zTab, zDb, zTab));
  }
  if (rc == SQLITE_OK) rc = add_sizes(c, db, zDb, zTab);
  if (rc == SQLITE_OK) rc = connect_table(db, v->pConn, zDb, zTab);
  if (rc == SQLITE_OK) rc = add_memory(c, db, v->pConn, zDb, zTab);
  if (rc == SQLITE_OK) rc = add_index(c, db, v->pConn, zDb, zTab);
  if (rc == SQLITE_OK) rc = add_gpu(c, db, v->pConn, zDb, zTab);
  return rc;
}

static int info_filter(sqlite3_vtab_cursor *cur, int idxNum,
                       const char *idxStr, int argc, sqlite3_value **argv) {
  info_cursor *c = (info_cursor *)cur;
  info_vtab *v = (info_vtab *)cur->pVtab;
  const char *zArg;
  (void)idxStr;
  info_clear(c);
  if (idxNum != 1 || argc < 1 ||
      (zArg = (const char *)sqlite3_value_text(argv[0])) == NULL) {
    sqlite3_free(v->base.zErrMsg);
    v->base.zErrMsg = sqlite3_mprintf("usage: SELECT * FROM "
                                      "annex_info('table')");
    return SQLITE_ERROR;
  }
  annex_distance_init();
  return info_collect(v, c, zArg);
}

static int info_next(sqlite3_vtab_cursor *cur) {
  ((info_cursor *)cur)->iRow++;
  return SQLITE_OK;
}

static int info_eof(sqlite3_vtab_cursor *cur) {
  info_cursor *c = (info_cursor *)cur;
  return c->iRow >= c->nRow;
}

static int info_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  info_cursor *c = (info_cursor *)cur;
  if (i == INFO_COL_KEY) {
    sqlite3_result_text(ctx, c->aRow[c->iRow].zKey, -1, SQLITE_TRANSIENT);
  } else if (i == INFO_COL_VALUE && c->aRow[c->iRow].pValue) {
    sqlite3_result_value(ctx, c->aRow[c->iRow].pValue);
  }
  return SQLITE_OK;
}

static int info_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *pRowid) {
  *pRowid = ((info_cursor *)cur)->iRow + 1;
  return SQLITE_OK;
}

static sqlite3_module info_module = {
    0,           NULL,        info_connect, info_best_index, info_disconnect,
    NULL,        info_open,   info_close,   info_filter,     info_next,
    info_eof,    info_column, info_rowid,   NULL,            NULL,
    NULL,        NULL,        NULL,         NULL,            NULL,
    NULL,        NULL,        NULL,         NULL,
#if SQLITE_VERSION_NUMBER >= 3044000
    NULL,
#endif
};

int annex_register_info(sqlite3 *db, annex_conn *pConn) {
  return sqlite3_create_module_v2(db, "annex_info", &info_module, pConn, NULL);
}
