/*
** vecdot.c — the dot commands that move vectors between files and tables.
**
** Owns:
**   .import-vectors FILE TABLE [COLUMN]   one savepoint (a transaction
**       unless one is open), CREATE VIRTUAL TABLE TABLE USING
**       annex(COLUMN float[D]) when TABLE is missing (COLUMN defaults to
**       "embedding"), one prepared INSERT INTO TABLE(rowid, COLUMN) binding
**       float32 BLOBs; rowid = row number in the file + 1 (after the
**       largest rowid already there, when appending). Progress bar, then
**       rows imported and the rate.
**   .export-vectors TABLE FILE [COLUMN]   every vector in rowid order.
** File formats are vecio.c's; the vector column comes from vcol.c.
** .recall is in recall.c.
*/
#include "progress.h"
#include "shell.h"
#include "vecio.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* 1 when a table, view or virtual table of that name exists in main. */
static int table_exists(shell *sh, const char *zTable) {
  sqlite3_stmt *pStmt = NULL;
  int rc = sqlite3_prepare_v2(sh->db,
                              "SELECT 1 FROM sqlite_schema WHERE type IN "
                              "('table', 'view') AND lower(name) = lower(?1)",
                              -1, &pStmt, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zTable, -1, SQLITE_STATIC);
    rc = sqlite3_step(pStmt);
  }
  sqlite3_finalize(pStmt);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Run one statement without results; 0 or -1 (message in db). */
static int exec1(shell *sh, const char *zSql) {
  return sqlite3_exec(sh->db, zSql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* The single integer zSql returns; -1 on error. */
static int64_t query_int(shell *sh, const char *zSql) {
  sqlite3_stmt *pStmt = NULL;
  int64_t v = -1;
  if (sqlite3_prepare_v2(sh->db, zSql, -1, &pStmt, NULL) == SQLITE_OK &&
      sqlite3_step(pStmt) == SQLITE_ROW) {
    v = sqlite3_column_int64(pStmt, 0);
  }
  sqlite3_finalize(pStmt);
  return v;
}

static void fmt_thousands(char *z, size_t n, int64_t v) {
  char t[32];
  int len = snprintf(t, sizeof t, "%lld", (long long)v), o = 0;
  for (int i = 0; i < len && (size_t)o + 2 < n; i++) {
    if (i > 0 && t[i - 1] != '-' && (len - i) % 3 == 0) z[o++] = ',';
    z[o++] = t[i];
  }
  z[o] = 0;
}

/* ------------------------------------------------------------ import */

void dot_import_vectors(shell *sh, int nArg, char **azArg) {
  const char *zFile = azArg[1], *zTable = azArg[2];
  const char *zCol = nArg > 3 ? azArg[3] : NULL;
  char *zErr = NULL, *zSql = NULL;
  vecreader *r;
  vcol v;
  sqlite3_stmt *pIns = NULL;
  float *aVec = NULL;
  int dim, found, rc = 0, bSavepoint = 0;
  int64_t nRows, nDone = 0, iBase = 0;
  double t0 = shell_now(), dt;
  progress pb;
  char zN[32], zRate[32];

  r = vecreader_open(zFile, &zErr);
  if (r == NULL) {
    shell_error(sh, "%s", zErr);
    sqlite3_free(zErr);
    return;
  }
  dim = vecreader_dim(r);
  nRows = vecreader_rows(r);
  aVec = malloc(sizeof(float) * (size_t)dim);
  if (aVec == NULL) {
    shell_error(sh, "out of memory");
    goto done;
  }
  found = vcol_find(sh->db, NULL, zTable, &v);
  if (found < 0) {
    shell_error(sh, "%s", sqlite3_errmsg(sh->db));
    goto done;
  }
  if (found == 0 && table_exists(sh, zTable) != 0) {
    shell_error(sh, "\"%s\" exists and is not an annex table", zTable);
    goto done;
  }
  if (found) {
    if (vcol_require(sh, zTable, zCol, &v) != 0) goto done;
    if (v.eElem != VCOL_FLOAT) {
      shell_error(sh, "%s.%s is %s[%d]: .import-vectors writes float vectors",
                  zTable, v.zName, vcol_elem_name(v.eElem), v.nDim);
      goto done;
    }
    if (v.nDim != dim) {
      shell_error(sh, "%s has %d dimensions, %s.%s has %d", zFile, dim,
                  zTable, v.zName, v.nDim);
      goto done;
    }
  } else {
    snprintf(v.zName, sizeof v.zName, "%s", zCol ? zCol : "embedding");
  }

  /* one savepoint: a transaction of its own, or nested in the user's */
  if (exec1(sh, "SAVEPOINT annex_import") != 0) {
    shell_error(sh, "%s", sqlite3_errmsg(sh->db));
    goto done;
  }
  bSavepoint = 1;
  if (!found) {
    zSql = sqlite3_mprintf("CREATE VIRTUAL TABLE \"%w\" USING annex(\"%w\" "
                           "float[%d])", zTable, v.zName, dim);
    if (zSql == NULL || exec1(sh, zSql) != 0) goto sql_error;
    sqlite3_free(zSql);
  } else {
    zSql = sqlite3_mprintf("SELECT coalesce(max(rowid), 0) FROM \"%w\"",
                           zTable);
    if (zSql == NULL || (iBase = query_int(sh, zSql)) < 0) goto sql_error;
    sqlite3_free(zSql);
  }
  zSql = sqlite3_mprintf("INSERT INTO \"%w\"(rowid, \"%w\") VALUES(?1, ?2)",
                         zTable, v.zName);
  if (zSql == NULL ||
      sqlite3_prepare_v2(sh->db, zSql, -1, &pIns, NULL) != SQLITE_OK) {
    goto sql_error;
  }
  sqlite3_free(zSql);
  zSql = NULL;

  progress_begin(&pb, "import", nRows >= 0 ? (double)nRows
                                           : (double)vecreader_size(r),
                 "rows");
  while ((rc = vecreader_next(r, aVec, &zErr)) == 1) {
    if (shell_interrupted()) {
      progress_end(&pb);
      shell_error(sh, "interrupted after %lld rows; nothing imported",
                  (long long)nDone);
      goto rollback;
    }
    sqlite3_bind_int64(pIns, 1, iBase + nDone + 1);
    sqlite3_bind_blob(pIns, 2, aVec, (int)(sizeof(float) * (size_t)dim),
                      SQLITE_STATIC);
    if (sqlite3_step(pIns) != SQLITE_DONE) {
      progress_end(&pb);
      if (shell_interrupted()) {
        shell_error(sh, "interrupted after %lld rows; nothing imported",
                    (long long)nDone);
      } else {
        shell_error(sh, "%s row %lld: %s", zFile, (long long)nDone + 1,
                    sqlite3_errmsg(sh->db));
      }
      goto rollback;
    }
    sqlite3_reset(pIns);
    nDone++;
    progress_step(&pb, nRows >= 0 ? (double)nDone
                                  : (double)vecreader_offset(r), nDone);
  }
  if (rc < 0) {
    progress_end(&pb);
    shell_error(sh, "%s", zErr);
    sqlite3_free(zErr);
    goto rollback;
  }
  sqlite3_finalize(pIns);
  pIns = NULL;
  progress_label(&pb, "commit");
  if (exec1(sh, "RELEASE annex_import") != 0) {
    progress_end(&pb);
    shell_error(sh, "commit: %s", sqlite3_errmsg(sh->db));
    goto rollback;
  }
  bSavepoint = 0;
  progress_end(&pb);
  dt = shell_now() - t0;
  fmt_thousands(zN, sizeof zN, nDone);
  fmt_thousands(zRate, sizeof zRate, (int64_t)(dt > 0 ? nDone / dt : 0));
  fprintf(sh->out, "imported %s rows (%d dimensions, %s) into %s in %.2f s: "
          "%s rows/s\n", zN, dim, vecfmt_name(vecreader_format(r)), zTable,
          dt, zRate);
  goto done;

sql_error:
  shell_error(sh, "%s", zSql ? sqlite3_errmsg(sh->db) : "out of memory");
rollback:
  sqlite3_finalize(pIns);
  pIns = NULL;
  if (bSavepoint) {
    /* ROLLBACK TO keeps the savepoint open; RELEASE then ends it */
    if (exec1(sh, "ROLLBACK TO annex_import") != 0 ||
        exec1(sh, "RELEASE annex_import") != 0) {
      shell_error(sh, "rollback: %s", sqlite3_errmsg(sh->db));
    }
  }
done:
  sqlite3_finalize(pIns);
  sqlite3_free(zSql);
  free(aVec);
  vecreader_close(r);
}

/* ------------------------------------------------------------ export */

void dot_export_vectors(shell *sh, int nArg, char **azArg) {
  const char *zTable = azArg[1], *zFile = azArg[2];
  const char *zCol = nArg > 3 ? azArg[3] : NULL;
  vcol v;
  char *zSql = NULL, *zErr = NULL;
  sqlite3_stmt *pStmt = NULL;
  vecwriter *w = NULL;
  float *aVec = NULL;
  int64_t nRows, nDone = 0;
  int rc;
  progress pb;
  char zN[32];

  if (vcol_require(sh, zTable, zCol, &v) != 0) return;
  if (v.eElem == VCOL_BIT) {
    shell_error(sh, "%s.%s is bit[%d]: .export-vectors writes float or int8 "
                "columns", zTable, v.zName, v.nDim);
    return;
  }
  zSql = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", zTable);
  if (zSql == NULL || (nRows = query_int(sh, zSql)) < 0) goto sql_error;
  sqlite3_free(zSql);
  zSql = sqlite3_mprintf("SELECT \"%w\" FROM \"%w\" ORDER BY rowid", v.zName,
                         zTable);
  if (zSql == NULL ||
      sqlite3_prepare_v2(sh->db, zSql, -1, &pStmt, NULL) != SQLITE_OK) {
    goto sql_error;
  }
  aVec = malloc(sizeof(float) * (size_t)v.nDim);
  if (aVec == NULL) {
    shell_error(sh, "out of memory");
    goto done;
  }
  w = vecwriter_open(zFile, v.nDim, nRows, &zErr);
  if (w == NULL) goto io_error;
  progress_begin(&pb, "export", (double)nRows, "rows");
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const unsigned char *a = sqlite3_column_blob(pStmt, 0);
    if (shell_interrupted()) {
      progress_end(&pb);
      shell_error(sh, "interrupted; %s removed", zFile);
      goto fail;
    }
    if (sqlite3_column_bytes(pStmt, 0) != vcol_bytes(&v) || a == NULL) {
      progress_end(&pb);
      shell_error(sh, "%s: row %lld is not a %s[%d] vector", zTable,
                  (long long)nDone + 1, vcol_elem_name(v.eElem), v.nDim);
      goto fail;
    }
    if (v.eElem == VCOL_FLOAT) memcpy(aVec, a, sizeof(float) * (size_t)v.nDim);
    else for (int i = 0; i < v.nDim; i++) aVec[i] = (float)(signed char)a[i];
    if (vecwriter_put(w, aVec, &zErr) != 0) {
      progress_end(&pb);
      goto io_error;
    }
    nDone++;
    progress_step(&pb, (double)nDone, nDone);
  }
  progress_end(&pb);
  if (rc != SQLITE_DONE) {
    shell_error(sh, "%s", sqlite3_errmsg(sh->db));
    goto fail;
  }
  rc = vecwriter_close(w, &zErr);
  w = NULL;
  if (rc != 0) goto io_error;
  fmt_thousands(zN, sizeof zN, nDone);
  fprintf(sh->out, "exported %s rows (%d dimensions) to %s\n", zN, v.nDim,
          zFile);
  goto done;

io_error:
  shell_error(sh, "%s", zErr ? zErr : "out of memory");
  sqlite3_free(zErr);
  goto fail;
sql_error:
  shell_error(sh, "%s", zSql ? sqlite3_errmsg(sh->db) : "out of memory");
fail:
  vecwriter_abort(w);
done:
  sqlite3_finalize(pStmt);
  sqlite3_free(zSql);
  free(aVec);
}
