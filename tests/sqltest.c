/*
** sqltest.c — helpers for SQL-level annex tests; see sqltest.h.
*/
#define _XOPEN_SOURCE 700 /* mkdtemp, with or without compiler extensions */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "annex.h"
#include "sqltest.h"

/* Connections ***********************************************************/

sqlite3 *st_open(const char *zPath) {
  sqlite3 *db = NULL;
  char *zErr = NULL;
  int rc = sqlite3_open(zPath ? zPath : ":memory:", &db);
  if (rc != SQLITE_OK) {
    fail_msg("cannot open %s: %s", zPath ? zPath : ":memory:",
             db ? sqlite3_errmsg(db) : "out of memory");
  }
  sqlite3_extended_result_codes(db, 1);
  rc = sqlite3_annex_init(db, &zErr, NULL);
  if (rc != SQLITE_OK) {
    fail_msg("sqlite3_annex_init: %s", zErr ? zErr : "(no message)");
  }
  return db;
}

void st_close(sqlite3 *db) {
  int rc = sqlite3_close(db);
  if (rc != SQLITE_OK) fail_msg("sqlite3_close: %s", sqlite3_errmsg(db));
}

char *st_tempdir(void) {
  const char *zTmp = getenv("TMPDIR");
  char *z;
  size_t n;
  if (zTmp == NULL || zTmp[0] == 0) zTmp = "/tmp";
  n = strlen(zTmp) + 32;
  z = malloc(n);
  assert_non_null(z);
  snprintf(z, n, "%s/annex-test-XXXXXX", zTmp);
  if (mkdtemp(z) == NULL) fail_msg("mkdtemp(%s) failed", z);
  return z;
}

void st_rmdir(const char *zDir) {
  DIR *d = opendir(zDir);
  struct dirent *e;
  if (d == NULL) return;
  while ((e = readdir(d)) != NULL) {
    char zPath[4096];
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(zPath, sizeof(zPath), "%s/%s", zDir, e->d_name);
    unlink(zPath);
  }
  closedir(d);
  rmdir(zDir);
}

/* Statements ************************************************************/

static int exec_sql(sqlite3 *db, const char *zSql) {
  const char *zTail = zSql;
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK && zTail && *zTail) {
    sqlite3_stmt *s = NULL;
    rc = sqlite3_prepare_v2(db, zTail, -1, &s, &zTail);
    if (rc != SQLITE_OK || s == NULL) break;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    /* finalize keeps the step's error message in the connection */
    sqlite3_finalize(s);
  }
  return rc;
}

void st_exec(sqlite3 *db, const char *zFmt, ...) {
  va_list ap;
  char *zSql;
  int rc;
  va_start(ap, zFmt);
  zSql = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  assert_non_null(zSql);
  rc = exec_sql(db, zSql);
  if (rc != SQLITE_OK) {
    print_error("SQL: %s\n", zSql);
    sqlite3_free(zSql);
    fail_msg("error %d: %s", rc, sqlite3_errmsg(db));
  }
  sqlite3_free(zSql);
}

int st_try(sqlite3 *db, const char *zFmt, ...) {
  va_list ap;
  char *zSql;
  int rc;
  va_start(ap, zFmt);
  zSql = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  assert_non_null(zSql);
  rc = exec_sql(db, zSql);
  sqlite3_free(zSql);
  return rc;
}

static sqlite3_stmt *prepare_v(sqlite3 *db, const char *zFmt, va_list ap) {
  sqlite3_stmt *s = NULL;
  char *zSql = sqlite3_vmprintf(zFmt, ap);
  int rc;
  assert_non_null(zSql);
  rc = sqlite3_prepare_v2(db, zSql, -1, &s, NULL);
  if (rc != SQLITE_OK) {
    print_error("SQL: %s\n", zSql);
    sqlite3_free(zSql);
    fail_msg("prepare error %d: %s", rc, sqlite3_errmsg(db));
  }
  sqlite3_free(zSql);
  return s;
}

sqlite3_stmt *st_prepare(sqlite3 *db, const char *zFmt, ...) {
  va_list ap;
  sqlite3_stmt *s;
  va_start(ap, zFmt);
  s = prepare_v(db, zFmt, ap);
  va_end(ap);
  return s;
}

int st_run(sqlite3_stmt *s) {
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
  }
  sqlite3_reset(s);
  return rc;
}

/* Step a freshly prepared single-value query to its first row. */
static sqlite3_stmt *first_row(sqlite3 *db, const char *zFmt, va_list ap) {
  sqlite3_stmt *s = prepare_v(db, zFmt, ap);
  int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW) {
    char *zSql = sqlite3_mprintf("%s", sqlite3_sql(s));
    sqlite3_finalize(s);
    print_error("SQL: %s\n", zSql);
    sqlite3_free(zSql);
    if (rc == SQLITE_DONE) fail_msg("query returned no row");
    fail_msg("error %d: %s", rc, sqlite3_errmsg(db));
  }
  return s;
}

sqlite3_int64 st_int(sqlite3 *db, const char *zFmt, ...) {
  va_list ap;
  sqlite3_stmt *s;
  sqlite3_int64 v;
  va_start(ap, zFmt);
  s = first_row(db, zFmt, ap);
  va_end(ap);
  v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

double st_double(sqlite3 *db, const char *zFmt, ...) {
  va_list ap;
  sqlite3_stmt *s;
  double v;
  va_start(ap, zFmt);
  s = first_row(db, zFmt, ap);
  va_end(ap);
  v = sqlite3_column_double(s, 0);
  sqlite3_finalize(s);
  return v;
}

char *st_text(sqlite3 *db, const char *zFmt, ...) {
  va_list ap;
  sqlite3_stmt *s;
  char *z = NULL;
  va_start(ap, zFmt);
  s = first_row(db, zFmt, ap);
  va_end(ap);
  if (sqlite3_column_type(s, 0) != SQLITE_NULL) {
    z = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(s, 0));
    assert_non_null(z);
  }
  sqlite3_finalize(s);
  return z;
}

static void check_error(int rcGot, const char *zMsg, int rc,
                        const char *zSubstr, const char *zSql) {
  if (rcGot == SQLITE_OK || rcGot == SQLITE_DONE || rcGot == SQLITE_ROW) {
    print_error("SQL: %s\n", zSql);
    fail_msg("expected an error containing '%s', but it succeeded",
             zSubstr ? zSubstr : "");
  }
  if (rc != 0 && rcGot != rc) {
    print_error("SQL: %s\n", zSql);
    fail_msg("expected error code %d, got %d (%s)", rc, rcGot, zMsg);
  }
  if (zSubstr && strstr(zMsg, zSubstr) == NULL) {
    print_error("SQL: %s\n", zSql);
    fail_msg("expected an error containing '%s', got '%s'", zSubstr, zMsg);
  }
}

void st_expect_error(sqlite3 *db, int rc, const char *zSubstr,
                     const char *zFmt, ...) {
  va_list ap;
  char *zSql;
  int rcGot;
  va_start(ap, zFmt);
  zSql = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  assert_non_null(zSql);
  rcGot = exec_sql(db, zSql);
  check_error(rcGot, sqlite3_errmsg(db), rc, zSubstr, zSql);
  sqlite3_free(zSql);
}

void st_expect_stmt_error(sqlite3_stmt *s, int rc, const char *zSubstr) {
  int rcGot = st_run(s);
  check_error(rcGot, sqlite3_errmsg(sqlite3_db_handle(s)), rc, zSubstr,
              sqlite3_sql(s));
}

/* k-NN ******************************************************************/

int st_collect(sqlite3_stmt *s, sqlite3_int64 *aRowid, double *aDist,
               int nMax) {
  int n = 0, rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (n >= nMax) {
      print_error("SQL: %s\n", sqlite3_sql(s));
      sqlite3_reset(s);
      fail_msg("more than %d rows", nMax);
    }
    aRowid[n] = sqlite3_column_int64(s, 0);
    if (aDist) aDist[n] = sqlite3_column_double(s, 1);
    n++;
  }
  if (rc != SQLITE_DONE) {
    sqlite3 *db = sqlite3_db_handle(s);
    print_error("SQL: %s\n", sqlite3_sql(s));
    sqlite3_reset(s);
    fail_msg("error %d: %s", rc, sqlite3_errmsg(db));
  }
  sqlite3_reset(s);
  return n;
}

int st_knn(sqlite3 *db, const char *zSql, const void *pQuery, int nQuery,
           sqlite3_int64 k, sqlite3_int64 *aRowid, double *aDist, int nMax) {
  sqlite3_stmt *s = NULL;
  int n;
  int rc = sqlite3_prepare_v2(db, zSql, -1, &s, NULL);
  if (rc != SQLITE_OK) {
    print_error("SQL: %s\n", zSql);
    fail_msg("prepare error %d: %s", rc, sqlite3_errmsg(db));
  }
  if (pQuery) sqlite3_bind_blob(s, 1, pQuery, nQuery, SQLITE_TRANSIENT);
  if (sqlite3_bind_parameter_count(s) >= 2) sqlite3_bind_int64(s, 2, k);
  n = st_collect(s, aRowid, aDist, nMax);
  sqlite3_finalize(s);
  return n;
}

/* Snapshots *************************************************************/

static void snap_put(st_snapshot *p, const void *a, size_t n) {
  if (p->n + n > p->nAlloc) {
    size_t nNew = p->nAlloc ? 2 * p->nAlloc : 4096;
    while (nNew < p->n + n) nNew *= 2;
    p->a = realloc(p->a, nNew);
    assert_non_null(p->a);
    p->nAlloc = nNew;
  }
  memcpy(p->a + p->n, a, n);
  p->n += n;
}

st_snapshot *st_snapshot_take(sqlite3 *db, const char *zTable) {
  st_snapshot *p = calloc(1, sizeof(*p));
  sqlite3_stmt *s;
  int rc;
  assert_non_null(p);
  s = st_prepare(db, "SELECT rowid, * FROM \"%w\" ORDER BY rowid", zTable);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    int nCol = sqlite3_column_count(s);
    for (int i = 0; i < nCol; i++) {
      unsigned char t = (unsigned char)sqlite3_column_type(s, i);
      snap_put(p, &t, 1);
      if (t == SQLITE_INTEGER) {
        sqlite3_int64 v = sqlite3_column_int64(s, i);
        snap_put(p, &v, sizeof(v));
      } else if (t == SQLITE_FLOAT) {
        double v = sqlite3_column_double(s, i);
        snap_put(p, &v, sizeof(v));
      } else if (t == SQLITE_TEXT || t == SQLITE_BLOB) {
        const void *z = t == SQLITE_TEXT
                            ? (const void *)sqlite3_column_text(s, i)
                            : sqlite3_column_blob(s, i);
        int n = sqlite3_column_bytes(s, i);
        snap_put(p, &n, sizeof(n));
        if (n > 0) snap_put(p, z, (size_t)n);
      }
    }
    p->nRow++;
  }
  if (rc != SQLITE_DONE) {
    sqlite3_finalize(s);
    fail_msg("snapshot of %s: error %d: %s", zTable, rc, sqlite3_errmsg(db));
  }
  sqlite3_finalize(s);
  return p;
}

int st_snapshot_equal(const st_snapshot *a, const st_snapshot *b) {
  return a->nRow == b->nRow && a->n == b->n &&
         (a->n == 0 || memcmp(a->a, b->a, a->n) == 0);
}

void st_snapshot_free(st_snapshot *p) {
  if (p == NULL) return;
  free(p->a);
  free(p);
}

void st_assert_unchanged(sqlite3 *db, const char *zTable,
                         const st_snapshot *pBefore) {
  st_snapshot *pNow = st_snapshot_take(db, zTable);
  int bEq = st_snapshot_equal(pBefore, pNow);
  int nRowNow = pNow->nRow;
  st_snapshot_free(pNow);
  if (!bEq) {
    fail_msg("table %s changed (%d rows before, %d now)", zTable,
             pBefore->nRow, nRowNow);
  }
}

void st_integrity_ok(sqlite3 *db, const char *zTable) {
  int rc = st_try(db, "INSERT INTO \"%w\"(\"%w\") VALUES('integrity-check')",
                  zTable, zTable);
  if (rc != SQLITE_OK) {
    fail_msg("integrity-check of %s failed (%d): %s", zTable, rc,
             sqlite3_errmsg(db));
  }
}

/* Datasets **************************************************************/

char *st_data_path(const char *zRel) {
  const char *zDir = getenv("ANNEX_DATA_DIR");
  size_t n;
  char *z;
  if (zDir == NULL || zDir[0] == 0) zDir = "../shared/data";
  n = strlen(zDir) + strlen(zRel) + 2;
  z = malloc(n);
  assert_non_null(z);
  snprintf(z, n, "%s/%s", zDir, zRel);
  return z;
}

/* Rows of (int32 d, d x 4 bytes). */
static void *load_vecs(const char *zPath, int *pnVec, int *pnDim) {
  FILE *f = fopen(zPath, "rb");
  int32_t d = 0;
  long sz;
  size_t nRow;
  unsigned char *a = NULL;
  *pnVec = *pnDim = 0;
  if (f == NULL) return NULL;
  if (fread(&d, 4, 1, f) != 1 || d <= 0 || fseek(f, 0, SEEK_END) != 0 ||
      (sz = ftell(f)) < 0 || sz % (4 * ((long)d + 1)) != 0) {
    fclose(f);
    return NULL;
  }
  nRow = (size_t)(sz / (4 * ((long)d + 1)));
  a = malloc(nRow * (size_t)d * 4 + 1);
  if (a == NULL || fseek(f, 0, SEEK_SET) != 0) goto bad;
  for (size_t i = 0; i < nRow; i++) {
    int32_t dd;
    if (fread(&dd, 4, 1, f) != 1 || dd != d ||
        fread(a + i * (size_t)d * 4, 4, (size_t)d, f) != (size_t)d) {
      goto bad;
    }
  }
  fclose(f);
  *pnVec = (int)nRow;
  *pnDim = d;
  return a;
bad:
  free(a);
  fclose(f);
  return NULL;
}

float *st_load_fvecs(const char *zPath, int *pnVec, int *pnDim) {
  return load_vecs(zPath, pnVec, pnDim);
}

int32_t *st_load_ivecs(const char *zPath, int *pnVec, int *pnDim) {
  return load_vecs(zPath, pnVec, pnDim);
}

/* Reference k-NN ********************************************************/

size_t st_vec_bytes(st_elem e, int nDim) {
  switch (e) {
    case ST_FLOAT: return 4 * (size_t)nDim;
    case ST_INT8: return (size_t)nDim;
    case ST_BIT: return (size_t)nDim / 8;
  }
  return 0;
}

static double elem_at(st_elem e, const void *p, int i) {
  if (e == ST_FLOAT) {
    float f;
    memcpy(&f, (const unsigned char *)p + 4 * (size_t)i, 4);
    return f;
  }
  return ((const signed char *)p)[i];
}

double st_ref_distance(st_elem e, st_metric m, const void *a, const void *b,
                       int nDim) {
  double ab = 0, aa = 0, bb = 0, l2 = 0;
  if (m == ST_HAMMING || e == ST_BIT) {
    const unsigned char *x = a, *y = b;
    int n = 0;
    for (int i = 0; i < nDim / 8; i++) {
      unsigned v = (unsigned)(x[i] ^ y[i]);
      while (v) {
        n += (int)(v & 1);
        v >>= 1;
      }
    }
    return n;
  }
  for (int i = 0; i < nDim; i++) {
    double x = elem_at(e, a, i), y = elem_at(e, b, i);
    ab += x * y;
    aa += x * x;
    bb += y * y;
    l2 += (x - y) * (x - y);
  }
  switch (m) {
    case ST_L2: return sqrt(l2);
    case ST_COSINE:
      return (aa == 0 || bb == 0) ? 1.0 : 1.0 - ab / sqrt(aa * bb);
    case ST_IP: return -ab;
    case ST_HAMMING: break;
  }
  return 0;
}

static int hit_cmp(const void *pa, const void *pb) {
  const st_hit *a = pa, *b = pb;
  if (a->dist < b->dist) return -1;
  if (a->dist > b->dist) return 1;
  return (a->rowid > b->rowid) - (a->rowid < b->rowid);
}

int st_ref_rank(st_elem e, st_metric m, int nDim, const void *pQuery,
                const void *aVec, const sqlite3_int64 *aRowid,
                const unsigned char *aUse, int n, st_hit *aOut) {
  size_t sz = st_vec_bytes(e, nDim);
  int nOut = 0;
  for (int i = 0; i < n; i++) {
    if (aUse && !aUse[i]) continue;
    aOut[nOut].dist = st_ref_distance(e, m, pQuery,
                                      (const unsigned char *)aVec + sz * i,
                                      nDim);
    aOut[nOut].rowid = aRowid[i];
    nOut++;
  }
  qsort(aOut, (size_t)nOut, sizeof(st_hit), hit_cmp);
  return nOut;
}

static int near(double a, double b, double tol) {
  return fabs(a - b) <= tol * fmax(1.0, fabs(b));
}

void st_check_knn(const sqlite3_int64 *aRowid, const double *aDist, int nGot,
                  const st_hit *aRef, int nRef, int nWant, double tol,
                  const char *zWhat) {
  if (nWant > nRef) nWant = nRef;
  if (nGot != nWant) {
    fail_msg("%s: %d rows, expected %d", zWhat, nGot, nWant);
  }
  for (int i = 0; i < nGot; i++) {
    int j;
    for (j = 0; j < nRef && aRef[j].rowid != aRowid[i]; j++) {
    }
    if (j == nRef) {
      fail_msg("%s: row %d is rowid %lld, which the query must not return",
               zWhat, i, (long long)aRowid[i]);
    }
    for (int i2 = 0; i2 < i; i2++) {
      if (aRowid[i2] == aRowid[i]) {
        fail_msg("%s: rowid %lld returned twice", zWhat, (long long)aRowid[i]);
      }
    }
    if (aDist && !near(aDist[i], aRef[i].dist, tol)) {
      fail_msg("%s: row %d (rowid %lld) has distance %.9g, expected %.9g",
               zWhat, i, (long long)aRowid[i], aDist[i], aRef[i].dist);
    }
    if (aRowid[i] != aRef[i].rowid &&
        (aRef[j].dist == aRef[i].dist ||
         !near(aRef[j].dist, aRef[i].dist, tol))) {
      fail_msg("%s: row %d is rowid %lld (true distance %.9g), expected "
               "rowid %lld (true distance %.9g)", zWhat, i,
               (long long)aRowid[i], aRef[j].dist, (long long)aRef[i].rowid,
               aRef[i].dist);
    }
  }
}

void st_progress_finish(sqlite3 *dbOther, sqlite3 *db, char *zDir) {
  assert_int_equal(st_int(dbOther, "SELECT count(*) FROM annex_info('t') "
                                   "WHERE key LIKE 'progress%%'"), 0);
  st_close(dbOther);
  st_close(db);
  st_rmdir(zDir);
  free(zDir);
}
