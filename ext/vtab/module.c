/*
** module.c — the annex virtual table module: lifecycle, writes,
** transactions, and the sqlite3_module that ties the other files together.
**
** Declared schema of a table (what SELECT * and INSERT see):
**   user columns in declaration order, then the hidden columns
**   distance (k-NN result distance), k (k-NN constraint), a column named
**   like the table, which receives FTS5-style commands, for a table
**   with an ANN index the index's per-query knob (ef_search, nprobe, ...),
**   and device (auto/cpu/gpu for one query; gpu.c).
**
** Transactions: all state lives in the shadow tables, so SQLite's journal
** makes writes atomic. The table's own in-memory state that outlives a
** statement is the slot counter cache and the "change counter bumped"
** flag; both are dropped at every commit, rollback and ROLLBACK TO. An ANN
** index (ann.h) hears every write and every transaction boundary and keeps
** its own memory in step.
*/
#include "annex_int.h"
#include "ann.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int annex_set_error(sqlite3_vtab *pVtab, const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  sqlite3_free(pVtab->zErrMsg);
  pVtab->zErrMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  return SQLITE_ERROR;
}

char *annex_str_finish(sqlite3_str *s) {
  int bEmpty = sqlite3_str_length(s) == 0 && sqlite3_str_errcode(s) == 0;
  char *z = sqlite3_str_finish(s);
  if (z == NULL && bEmpty) z = sqlite3_mprintf("");
  return z;
}

/* When a nested SQLite call failed without annex setting a message, carry
** the connection's message up so the user sees what went wrong. */
static int carry_error(annex_table *p, int rc) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && p->base.zErrMsg == NULL) {
    if (rc == SQLITE_CORRUPT_VTAB) {
      annex_set_error(&p->base, "annex table %s is corrupt", p->zName);
    } else if (rc != SQLITE_NOMEM) {
      annex_set_error(&p->base, "%s", sqlite3_errmsg(p->db));
    }
  }
  return rc;
}

static int has_column(const annex_config *c, const char *zName) {
  for (int i = 0; i < c->nCol; i++) {
    if (sqlite3_stricmp(c->aCol[i].zName, zName) == 0) return 1;
  }
  return 0;
}

static char *declare_sql(const annex_table *p) {
  const annex_config *c = p->pConfig;
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendall(s, "CREATE TABLE x(");
  /* Metadata columns are declared with their type, so that SQLite's own
  ** comparisons (full scans, rowid lookups) apply the same affinity as the
  ** k-NN filters, which run on the typed columns of T_rows. */
  for (int i = 0; i < c->nCol; i++) {
    sqlite3_str_appendf(s, "\"%w\" %s, ", c->aCol[i].zName,
                        c->aCol[i].eKind == ANNEX_COL_META ? c->aCol[i].zType
                                                           : "");
  }
  sqlite3_str_appendf(s, "distance HIDDEN, k HIDDEN, \"%w\" HIDDEN",
                      p->zName);
  if (c->pAnnOps) sqlite3_str_appendf(s, ", %s HIDDEN", c->pAnnOps->zKnob);
  /* the per-query device (gpu.c), unless a user column took the name */
  if (!has_column(c, "device")) sqlite3_str_appendall(s, ", device HIDDEN");
  sqlite3_str_appendall(s, ")");
  return annex_str_finish(s);
}

static void table_free(annex_table *p) {
  if (p == NULL) return;
  if (p->pAnn) p->pAnn->pOps->xClose(p->pAnn);
  annex_gpu_free(p->pGpu);
  sqlite3_free(p->pVecBuf);
  annex_cache_drop(p);
  annex_storage_close(p);
  annex_config_free(p->pConfig);
  sqlite3_free(p->zDb);
  sqlite3_free(p->zName);
  /* A message set while xCreate/xConnect failed: SQLite reads *pzErr
  ** there, never this one, so it is ours to free. */
  sqlite3_free(p->base.zErrMsg);
  sqlite3_free(p);
}

static void conn_link(annex_table *p) {
  p->pNextOpen = p->pConn->pOpen;
  p->pConn->pOpen = p;
}

static void conn_unlink(annex_table *p) {
  annex_table **pp = &p->pConn->pOpen;
  while (*pp && *pp != p) pp = &(*pp)->pNextOpen;
  if (*pp) *pp = p->pNextOpen;
}

static int annex_init(sqlite3 *db, void *pAux, int argc,
                      const char *const *argv, sqlite3_vtab **ppVtab,
                      char **pzErr, int bCreate) {
  annex_table *p;
  char *zSql;
  int rc;
  *ppVtab = NULL;
  p = sqlite3_malloc64(sizeof(*p));
  if (p == NULL) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  p->cache.iChanges = -1;
  p->db = db;
  p->pConn = pAux;
  p->zDb = sqlite3_mprintf("%s", argv[1]);
  p->zName = sqlite3_mprintf("%s", argv[2]);
  if (p->zDb == NULL || p->zName == NULL) rc = SQLITE_NOMEM;
  else rc = annex_config_parse(argc, argv, &p->pConfig, pzErr);
  if (rc == SQLITE_OK) {
    const annex_config *c = p->pConfig;
    p->iHiddenBase = c->nCol;
    annex_distance_init();
    p->xScore = annex_distance_kernel(c->eElem, c->eMetric);
    if (p->xScore == NULL) rc = SQLITE_INTERNAL;
  }
  if (rc == SQLITE_OK) {
    zSql = declare_sql(p);
    rc = zSql ? sqlite3_declare_vtab(db, zSql) : SQLITE_NOMEM;
    sqlite3_free(zSql);
  }
  if (rc == SQLITE_OK) {
    rc = bCreate ? annex_storage_create(p, pzErr)
                 : annex_storage_check_format(p, pzErr);
  }
  if (rc == SQLITE_OK && p->pConfig->pAnnOps) {
    const annex_ann_ops *pOps = p->pConfig->pAnnOps;
    if (bCreate) rc = pOps->xCreate(p, pzErr);
    if (rc == SQLITE_OK) rc = pOps->xOpen(p, &p->pAnn);
    if (rc == SQLITE_OK) {
      p->pVecBuf = sqlite3_malloc64(p->pConfig->szVec);
      if (p->pVecBuf == NULL) rc = SQLITE_NOMEM;
    }
  }
  if (rc == SQLITE_OK) {
    sqlite3_vtab_config(db, SQLITE_VTAB_CONSTRAINT_SUPPORT, 1);
  }
  if (rc != SQLITE_OK) {
    if (*pzErr == NULL && rc != SQLITE_NOMEM) {
      *pzErr = sqlite3_mprintf("%s", sqlite3_errmsg(db));
    }
    table_free(p);
    return rc;
  }
  annex_storage_close(p); /* statements prepared during create are stale */
  conn_link(p);
  *ppVtab = &p->base;
  return SQLITE_OK;
}

static int annex_create(sqlite3 *db, void *pAux, int argc,
                        const char *const *argv, sqlite3_vtab **ppVtab,
                        char **pzErr) {
  return annex_init(db, pAux, argc, argv, ppVtab, pzErr, 1);
}

static int annex_connect(sqlite3 *db, void *pAux, int argc,
                         const char *const *argv, sqlite3_vtab **ppVtab,
                         char **pzErr) {
  return annex_init(db, pAux, argc, argv, ppVtab, pzErr, 0);
}

static int annex_disconnect(sqlite3_vtab *pVtab) {
  annex_table *p = (annex_table *)pVtab;
  conn_unlink(p);
  table_free(p);
  return SQLITE_OK;
}

static int annex_destroy(sqlite3_vtab *pVtab) {
  annex_table *p = (annex_table *)pVtab;
  int rc = SQLITE_OK;
  if (p->pConfig->pAnnOps) rc = p->pConfig->pAnnOps->xDestroy(p);
  if (rc == SQLITE_OK) rc = annex_storage_destroy(p);
  if (rc != SQLITE_OK) return carry_error(p, rc);
  return annex_disconnect(pVtab);
}

void annex_split_name(const char *zArg, char *zDb, size_t nDb,
                      const char **pzTab) {
  const char *zDot = strchr(zArg, '.');
  snprintf(zDb, nDb, "main");
  *pzTab = zArg;
  if (zDot && (size_t)(zDot - zArg) < nDb) {
    memcpy(zDb, zArg, (size_t)(zDot - zArg));
    zDb[zDot - zArg] = 0;
    *pzTab = zDot + 1;
  }
}

annex_table *annex_find_open(annex_conn *pConn, const char *zDb,
                             const char *zTab) {
  for (annex_table *p = pConn->pOpen; p; p = p->pNextOpen) {
    if (sqlite3_stricmp(p->zName, zTab) == 0 &&
        sqlite3_stricmp(p->zDb, zDb) == 0) {
      return p;
    }
  }
  return NULL;
}

/* Write paths ************************************************************/

/* The command column of an INSERT, or NULL when the INSERT is a row. */
static sqlite3_value *command_value(annex_table *p, int argc,
                                    sqlite3_value **argv) {
  int i = 2 + p->iHiddenBase + ANNEX_HID_COMMAND;
  if (argc > i && sqlite3_value_type(argv[i]) != SQLITE_NULL) return argv[i];
  return NULL;
}

static int check_hidden_unset(annex_table *p, int argc,
                              sqlite3_value **argv) {
  int iDist = 2 + p->iHiddenBase + ANNEX_HID_DISTANCE;
  int iK = 2 + p->iHiddenBase + ANNEX_HID_K;
  int iKnob = 2 + p->iHiddenBase + ANNEX_HID_KNOB;
  int iDev = 2 + p->iHiddenBase + ANNEX_HID_DEVICE(p);
  if (iDev < argc && sqlite3_value_type(argv[iDev]) != SQLITE_NULL) {
    return annex_set_error(&p->base, "device is a query-only column of %s "
                           "and cannot be written", p->zName);
  }
  if (p->pConfig->pAnnOps == NULL) iKnob = argc; /* no knob column */
  if (sqlite3_value_type(argv[iDist]) != SQLITE_NULL ||
      sqlite3_value_type(argv[iK]) != SQLITE_NULL ||
      (iKnob < argc && sqlite3_value_type(argv[iKnob]) != SQLITE_NULL)) {
    return annex_set_error(&p->base, "distance, k%s%s are query-only columns "
                           "of %s and cannot be written",
                           iKnob < argc ? " and " : "",
                           iKnob < argc ? p->pConfig->pAnnOps->zKnob : "",
                           p->zName);
  }
  return SQLITE_OK;
}

/* Tell the ANN index, if any, about a row write. */
static int ann_set_rowid(annex_table *p, sqlite3_int64 iSlot,
                         sqlite3_int64 iRowid) {
  if (p->pAnn == NULL || p->pAnn->pOps->xSetRowid == NULL) return SQLITE_OK;
  return p->pAnn->pOps->xSetRowid(p->pAnn, iSlot, iRowid);
}
static int ann_after_insert(annex_table *p, sqlite3_int64 iSlot,
                            sqlite3_int64 iRowid) {
  int rc;
  if (p->pAnn == NULL) return SQLITE_OK;
  rc = p->pAnn->pOps->xInsert(p->pAnn, iSlot, p->pVecBuf);
  if (rc == SQLITE_OK) rc = ann_set_rowid(p, iSlot, iRowid);
  return rc;
}
static int ann_after_delete(annex_table *p, sqlite3_int64 iSlot) {
  if (p->pAnn == NULL || iSlot < 0) return SQLITE_OK;
  return p->pAnn->pOps->xDelete(p->pAnn, iSlot);
}

static int delete_row(annex_table *p, sqlite3_int64 iRowid) {
  sqlite3_int64 iSlot;
  int rc = annex_storage_delete(p, iRowid, &iSlot);
  if (rc == SQLITE_OK) rc = ann_after_delete(p, iSlot);
  return rc;
}

/* Parse pVec as a vector of the table's column, only for its error. */
static int check_vector(annex_table *p, sqlite3_value *pVec) {
  const annex_config *c = p->pConfig;
  char *zErr = NULL;
  void *pBuf = sqlite3_malloc64(c->szVec);
  int rc;
  if (pBuf == NULL) return SQLITE_NOMEM;
  rc = annex_vector_parse(pVec, c->eElem, c->nDim, c->aCol[c->iVecCol].zName,
                          pBuf, &zErr);
  if (rc == SQLITE_ERROR) annex_set_error(&p->base, "%s", zErr);
  sqlite3_free(zErr);
  sqlite3_free(pBuf);
  return rc;
}

/* A row with rowid iRowid exists: apply the statement's conflict policy.
** REPLACE checks the new vector (pVec, NULL if unchanged) before it deletes
** the old row: a single-row statement has no statement journal, so a failure
** after the delete would leave the row deleted. Under OR IGNORE the
** constraint error is returned too: SQLite then skips the row without
** counting it in sqlite3_changes(), which it would do for an SQLITE_OK. */
static int resolve_conflict(annex_table *p, sqlite3_int64 iRowid,
                            sqlite3_value *pVec) {
  if (sqlite3_vtab_on_conflict(p->db) == SQLITE_REPLACE) {
    int rc = pVec ? check_vector(p, pVec) : SQLITE_OK;
    return rc == SQLITE_OK ? delete_row(p, iRowid) : rc;
  }
  annex_set_error(&p->base, "UNIQUE constraint failed: %s.rowid", p->zName);
  return SQLITE_CONSTRAINT;
}

static int do_insert(annex_table *p, sqlite3_value *pRowid,
                     sqlite3_value **apCol, sqlite3_int64 *piRowid) {
  int rc = SQLITE_OK;
  if (sqlite3_value_type(pRowid) != SQLITE_NULL) {
    sqlite3_int64 iSlot;
    if (sqlite3_value_numeric_type(pRowid) != SQLITE_INTEGER) {
      return annex_set_error(&p->base, "rowid must be an integer");
    }
    rc = annex_storage_locate(p, sqlite3_value_int64(pRowid), &iSlot);
    if (rc == SQLITE_OK) {
      rc = resolve_conflict(p, sqlite3_value_int64(pRowid),
                            apCol[p->pConfig->iVecCol]);
    } else if (rc == SQLITE_DONE) {
      rc = SQLITE_OK;
    }
  }
  if (rc == SQLITE_OK) {
    sqlite3_int64 iSlot;
    rc = annex_storage_insert(p, pRowid, apCol, piRowid, &iSlot, p->pVecBuf);
    if (rc == SQLITE_OK) rc = ann_after_insert(p, iSlot, *piRowid);
  }
  return rc;
}

static int do_update(annex_table *p, sqlite3_int64 iOld, sqlite3_value *pNew,
                     sqlite3_value **apCol) {
  sqlite3_int64 iNew, iSlot;
  int rc = SQLITE_OK;
  if (sqlite3_value_numeric_type(pNew) != SQLITE_INTEGER) {
    return annex_set_error(&p->base, "rowid must be an integer");
  }
  iNew = sqlite3_value_int64(pNew);
  if (iNew != iOld) {
    rc = annex_storage_locate(p, iNew, &iSlot);
    if (rc == SQLITE_OK) {
      sqlite3_value *pVec = apCol[p->pConfig->iVecCol];
      if (sqlite3_value_nochange(pVec)) pVec = NULL;
      rc = resolve_conflict(p, iNew, pVec);
    } else if (rc == SQLITE_DONE) {
      rc = SQLITE_OK;
    }
  }
  if (rc == SQLITE_OK) {
    int bVec = 0;
    rc = annex_storage_update(p, iOld, iNew, apCol, &iSlot, p->pVecBuf,
                              &bVec);
    if (rc == SQLITE_OK && bVec && p->pAnn) {
      rc = p->pAnn->pOps->xUpdateVector(p->pAnn, iSlot, p->pVecBuf);
    }
    if (rc == SQLITE_OK && iNew != iOld) rc = ann_set_rowid(p, iSlot, iNew);
  }
  return rc;
}

static int annex_update(sqlite3_vtab *pVtab, int argc, sqlite3_value **argv,
                        sqlite3_int64 *pRowid) {
  annex_table *p = (annex_table *)pVtab;
  int rc;
  sqlite3_value *pCmd;
  p->bTxnWrote = 1; /* until the transaction ends (chunk_cache.c) */
  if (argc == 1) {
    rc = delete_row(p, sqlite3_value_int64(argv[0]));
  } else if ((pCmd = command_value(p, argc, argv)) != NULL) {
    if (sqlite3_value_type(argv[0]) != SQLITE_NULL) {
      rc = annex_set_error(pVtab, "commands are given with INSERT: INSERT "
                           "INTO %s(%s) VALUES('command')", p->zName, p->zName);
    } else {
      rc = annex_command(p, pCmd);
    }
  } else {
    rc = check_hidden_unset(p, argc, argv);
    if (rc == SQLITE_OK && sqlite3_value_type(argv[0]) == SQLITE_NULL) {
      rc = do_insert(p, argv[1], argv + 2, pRowid);
    } else if (rc == SQLITE_OK) {
      rc = do_update(p, sqlite3_value_int64(argv[0]), argv[1], argv + 2);
    }
  }
  if (rc != SQLITE_OK) p->bSlotCache = 0; /* the statement may roll back */
  return carry_error(p, rc);
}

/* Transactions ***********************************************************/

#define ANN(p) (((annex_table *)(p))->pAnn)

static int annex_begin(sqlite3_vtab *pVtab) {
  annex_storage_end_txn((annex_table *)pVtab);
  ((annex_table *)pVtab)->bTxnWrote = 0;
  return SQLITE_OK;
}

static int annex_sync(sqlite3_vtab *pVtab) {
  annex_table *p = (annex_table *)pVtab;
  int rc = SQLITE_OK;
  annex_storage_reset_blobs(p);
  /* The index writes what it buffered: this is the last moment the
  ** transaction can still take writes (FTS5 flushes here too). */
  if (p->pAnn) rc = p->pAnn->pOps->xSync(p->pAnn);
  annex_storage_reset_blobs(p);
  return carry_error(p, rc);
}

static int annex_commit(sqlite3_vtab *pVtab) {
  annex_storage_end_txn((annex_table *)pVtab);
  ((annex_table *)pVtab)->bTxnWrote = 0;
  if (ANN(pVtab)) ANN(pVtab)->pOps->xCommit(ANN(pVtab));
  return SQLITE_OK;
}

static int annex_rollback(sqlite3_vtab *pVtab) {
  annex_storage_end_txn((annex_table *)pVtab);
  ((annex_table *)pVtab)->bTxnWrote = 0;
  if (ANN(pVtab)) ANN(pVtab)->pOps->xRollback(ANN(pVtab));
  return SQLITE_OK;
}

static int annex_savepoint(sqlite3_vtab *pVtab, int iSavepoint) {
  annex_storage_reset_blobs((annex_table *)pVtab);
  if (ANN(pVtab)) {
    return carry_error((annex_table *)pVtab,
                       ANN(pVtab)->pOps->xSavepoint(ANN(pVtab), iSavepoint));
  }
  return SQLITE_OK;
}

static int annex_release(sqlite3_vtab *pVtab, int iSavepoint) {
  (void)iSavepoint;
  annex_storage_reset_blobs((annex_table *)pVtab);
  return SQLITE_OK;
}

static int annex_rollback_to(sqlite3_vtab *pVtab, int iSavepoint) {
  annex_storage_end_txn((annex_table *)pVtab);
  if (ANN(pVtab)) ANN(pVtab)->pOps->xRollbackTo(ANN(pVtab), iSavepoint);
  return SQLITE_OK;
}

/* Schema *****************************************************************/

static int annex_rename(sqlite3_vtab *pVtab, const char *zNew) {
  annex_table *p = (annex_table *)pVtab;
  int rc = SQLITE_OK;
  if (p->pConfig->pAnnOps) rc = p->pConfig->pAnnOps->xRename(p, zNew);
  if (rc == SQLITE_OK) rc = annex_storage_rename(p, zNew);
  if (rc == SQLITE_OK) {
    char *z = sqlite3_mprintf("%s", zNew);
    if (z == NULL) return SQLITE_NOMEM;
    sqlite3_free(p->zName);
    p->zName = z;
  }
  return carry_error(p, rc);
}

static int annex_shadow_name(const char *zSuffix) {
  static const char *azShadow[] = {"config", "rows", "chunks", "dict"};
  for (size_t i = 0; i < sizeof(azShadow) / sizeof(azShadow[0]); i++) {
    if (sqlite3_stricmp(zSuffix, azShadow[i]) == 0) return 1;
  }
  return annex_ann_shadow_name(zSuffix);
}

/* Reads ******************************************************************/

static int annex_filter(sqlite3_vtab_cursor *cur, int idxNum,
                        const char *idxStr, int argc, sqlite3_value **argv) {
  int rc = annex_cursor_filter(cur, idxNum, idxStr, argc, argv);
  return carry_error((annex_table *)cur->pVtab, rc);
}

static int annex_next(sqlite3_vtab_cursor *cur) {
  return carry_error((annex_table *)cur->pVtab, annex_cursor_next(cur));
}

static int annex_xcolumn(sqlite3_vtab_cursor *cur, sqlite3_context *ctx,
                        int i) {
  return carry_error((annex_table *)cur->pVtab,
                     annex_cursor_column(cur, ctx, i));
}

static sqlite3_module annex_module = {
    /* iVersion      */ 3,
    /* xCreate       */ annex_create,
    /* xConnect      */ annex_connect,
    /* xBestIndex    */ annex_best_index,
    /* xDisconnect   */ annex_disconnect,
    /* xDestroy      */ annex_destroy,
    /* xOpen         */ annex_cursor_open,
    /* xClose        */ annex_cursor_close,
    /* xFilter       */ annex_filter,
    /* xNext         */ annex_next,
    /* xEof          */ annex_cursor_eof,
    /* xColumn       */ annex_xcolumn,
    /* xRowid        */ annex_cursor_rowid,
    /* xUpdate       */ annex_update,
    /* xBegin        */ annex_begin,
    /* xSync         */ annex_sync,
    /* xCommit       */ annex_commit,
    /* xRollback     */ annex_rollback,
    /* xFindFunction */ NULL,
    /* xRename       */ annex_rename,
    /* xSavepoint    */ annex_savepoint,
    /* xRelease      */ annex_release,
    /* xRollbackTo   */ annex_rollback_to,
    /* xShadowName   */ annex_shadow_name,
#if SQLITE_VERSION_NUMBER >= 3044000
    /* xIntegrity    */ NULL,
#endif
};

int annex_register_module(sqlite3 *db, annex_conn *pConn) {
  /* pConn is freed with the module, when the connection closes. */
  return sqlite3_create_module_v2(db, "annex", &annex_module, pConn,
                                  sqlite3_free);
}
