/*
** test_hnsw_sql.c — index=hnsw through SQL.
**
** Recall is measured against exact ground truth computed by brute force in
** double precision (the shared datasets' groundtruth files, or
** st_ref_rank here), never against annex itself:
**   - recall@10 on sift5k and mnist10k at the default ef_search, loaded
**     the way users load (many INSERTs in one transaction), and after
**     'rebuild';
**   - reopen: a new connection answers identically, loading lazily;
**   - ROLLBACK of a bulk insert and ROLLBACK TO a savepoint in the middle
**     of a batch leave no trace in the answers or the file;
**   - deletes are never returned; 'optimize' drops the tombstones;
**   - filtered search at 50%, 10% and 1% selectivity returns k rows with
**     recall@10 >= 0.95 against the exact filtered ranking;
**   - vector UPDATE re-links; rows written by the open transaction are
**     found; knob errors; integrity-check after everything.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "annex.h"
#include "sqltest.h"

typedef struct dataset {
  float *aBase, *aQuery;
  int nBase, nQuery, nDim;
  int32_t *aGt;
  int nGtK;
  float *aGtDist;
} dataset;

static int load_set(const char *zSet, dataset *p) {
  char zRel[256];
  char *z;
  int n, d;
  memset(p, 0, sizeof(*p));
  snprintf(zRel, sizeof(zRel), "%s/base.fvecs", zSet);
  z = st_data_path(zRel);
  p->aBase = st_load_fvecs(z, &p->nBase, &p->nDim);
  free(z);
  snprintf(zRel, sizeof(zRel), "%s/query.fvecs", zSet);
  z = st_data_path(zRel);
  p->aQuery = st_load_fvecs(z, &p->nQuery, &d);
  free(z);
  snprintf(zRel, sizeof(zRel), "%s/groundtruth.ivecs", zSet);
  z = st_data_path(zRel);
  p->aGt = st_load_ivecs(z, &n, &p->nGtK);
  free(z);
  snprintf(zRel, sizeof(zRel), "%s/groundtruth_dist.fvecs", zSet);
  z = st_data_path(zRel);
  p->aGtDist = st_load_fvecs(z, &n, &d);
  free(z);
  return p->aBase && p->aQuery && p->aGt && p->aGtDist ? 0 : -1;
}

static void free_set(dataset *p) {
  free(p->aBase);
  free(p->aQuery);
  free(p->aGt);
  free(p->aGtDist);
}

/* Insert rows [i0, i1) of the base (rowid = row + 1, cat = row % 100). */
static void insert_rows(sqlite3 *db, const dataset *p, int i0, int i1) {
  sqlite3_stmt *s = st_prepare(db, "INSERT INTO t(rowid, v, cat) "
                                   "VALUES(?, ?, ?)");
  for (int i = i0; i < i1; i++) {
    sqlite3_bind_int64(s, 1, i + 1);
    sqlite3_bind_blob(s, 2, p->aBase + (size_t)i * p->nDim, p->nDim * 4,
                      SQLITE_STATIC);
    sqlite3_bind_int(s, 3, i % 100);
    assert_int_equal(st_run(s), SQLITE_DONE);
  }
  sqlite3_finalize(s);
}

static void create_and_load(sqlite3 *db, const dataset *p, const char *zIdx) {
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[%d], index=%s, "
          "cat integer)", p->nDim, zIdx);
  st_exec(db, "BEGIN");
  insert_rows(db, p, 0, p->nBase);
  st_exec(db, "COMMIT");
}

/* Tie-robust recall@10 over nQ queries against the dataset's ground truth:
** a returned row counts if its true distance is within the 10th. */
static double recall_gt(sqlite3 *db, const dataset *p, int nQ, int ef) {
  sqlite3_stmt *s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v "
                                   "MATCH ?1 AND k = 10 AND ef_search = ?2");
  int nHit = 0;
  for (int q = 0; q < nQ; q++) {
    const float *pq = p->aQuery + (size_t)q * p->nDim;
    double kth = p->aGtDist[(size_t)q * p->nGtK + 9];
    sqlite3_int64 aRowid[10];
    double aDist[10];
    int n;
    sqlite3_bind_blob(s, 1, pq, p->nDim * 4, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, ef);
    n = st_collect(s, aRowid, aDist, 10);
    assert_int_equal(n, 10);
    for (int i = 0; i < n; i++) {
      const float *pv = p->aBase + (size_t)(aRowid[i] - 1) * p->nDim;
      double want = st_ref_distance(ST_FLOAT, ST_L2, pv, pq, p->nDim);
      /* distances are exact, whatever the graph found */
      assert_true(aDist[i] <= want * (1 + 1e-5) + 1e-5 &&
                  aDist[i] >= want * (1 - 1e-5) - 1e-5);
      if (want <= kth * (1 + 1e-6) + 1e-6) nHit++;
    }
  }
  sqlite3_finalize(s);
  return nHit / (10.0 * nQ);
}

static int max_queries(int n) {
  const char *z = getenv("ANNEX_RECALL_MAX_QUERIES");
  int m = z ? atoi(z) : 0;
  return m > 0 && m < n ? m : n;
}

/* zIdx: the index spec; bCodes: whether queries should walk code rows. */
static void recall_on(const char *zSet, int nQMax, const char *zIdx,
                      int bCodes) {
  dataset d;
  sqlite3 *db;
  double r, rLow, rRebuilt;
  if (load_set(zSet, &d)) fail_msg("dataset %s missing", zSet);
  db = st_open(NULL);
  create_and_load(db, &d, zIdx);
  assert_int_equal(st_int(db, "SELECT value FROM annex_info('t') WHERE key = "
                              "'hnsw_codes'"), bCodes);
  if (nQMax > d.nQuery) nQMax = d.nQuery;
  nQMax = max_queries(nQMax);
  r = recall_gt(db, &d, nQMax, 64); /* the default ef_search */
  rLow = recall_gt(db, &d, nQMax, 10);
  printf("# %s, %s: recall@10 %.4f at ef_search=64 (default), %.4f at 10\n",
         zSet, zIdx, r, rLow);
  assert_true(r >= 0.95);
  assert_true(rLow <= r + 1e-9);
  st_integrity_ok(db, "t");
  st_exec(db, "INSERT INTO t(t) VALUES('rebuild')");
  rRebuilt = recall_gt(db, &d, nQMax, 64);
  printf("# %s: recall@10 %.4f after 'rebuild'\n", zSet, rRebuilt);
  assert_true(rRebuilt >= 0.95);
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_hnsw"), d.nBase);
  st_integrity_ok(db, "t");
  st_close(db);
  free_set(&d);
}

static void test_recall_sift5k(void **state) {
  (void)state;
  recall_on("sift5k", 200, "hnsw", 1);
  recall_on("sift5k", 200, "hnsw(codes=0)", 0); /* floats all the way */
}

static void test_recall_mnist10k(void **state) {
  (void)state;
  recall_on("mnist10k", 300, "hnsw", 1);
}

/* Exact reference of q over the live rows of the first n base rows whose
** aUse is set (NULL: all), as rowid = row + 1. */
static int ref_knn(const dataset *p, int n, const float *pq,
                   const unsigned char *aUse, st_hit *aOut) {
  sqlite3_int64 *aRowid = malloc(sizeof(sqlite3_int64) * (size_t)n);
  int nRef;
  for (int i = 0; i < n; i++) aRowid[i] = i + 1;
  nRef = st_ref_rank(ST_FLOAT, ST_L2, p->nDim, pq, p->aBase, aRowid, aUse, n,
                     aOut);
  free(aRowid);
  return nRef;
}

/* Recall@10 of SELECT ... zWhere against the exact ranking over aUse. */
static double recall_ref(sqlite3 *db, const dataset *p, int nRows,
                         const unsigned char *aUse, const char *zWhere,
                         int nQ) {
  st_hit *aRef = malloc(sizeof(st_hit) * (size_t)nRows);
  sqlite3_stmt *s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v "
                                   "MATCH ?1 AND k = 10 %s", zWhere);
  int nHit = 0, nWant = 0;
  for (int q = 0; q < nQ; q++) {
    const float *pq = p->aQuery + (size_t)q * p->nDim;
    sqlite3_int64 aRowid[10];
    int nRef = ref_knn(p, nRows, pq, aUse, aRef), n, w = nRef < 10 ? nRef : 10;
    sqlite3_bind_blob(s, 1, pq, p->nDim * 4, SQLITE_STATIC);
    n = st_collect(s, aRowid, NULL, 10);
    assert_int_equal(n, w); /* k rows whenever k rows match */
    for (int i = 0; i < n; i++) {
      int64_t r = aRowid[i] - 1;
      assert_true(r >= 0 && r < nRows && (aUse == NULL || aUse[r]));
      for (int j = 0; j < w; j++) {
        if (aRef[j].rowid == aRowid[i] ||
            (aRef[j].dist == aRef[w - 1].dist && j == w - 1)) {
          nHit++;
          break;
        }
      }
    }
    nWant += w;
  }
  sqlite3_finalize(s);
  free(aRef);
  return nWant ? (double)nHit / nWant : 1.0;
}

/* Reopen: a new connection gives the same rows and distances, and the first
** query loads only part of the graph. */
static void test_reopen(void **state) {
  dataset d;
  char *zDir = st_tempdir(), zPath[512];
  sqlite3 *db;
  sqlite3_int64 aBefore[20 * 10], aAfter[20 * 10];
  double aDb[20 * 10], aDa[20 * 10];
  sqlite3_stmt *s;
  (void)state;
  if (load_set("sift5k", &d)) fail_msg("dataset sift5k missing");
  snprintf(zPath, sizeof(zPath), "%s/h.db", zDir);
  db = st_open(zPath);
  create_and_load(db, &d, "hnsw(m=12, ef_construction=100)");
  s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v MATCH ?1 AND "
                     "k = 10");
  for (int q = 0; q < 20; q++) {
    sqlite3_bind_blob(s, 1, d.aQuery + (size_t)q * d.nDim, d.nDim * 4,
                      SQLITE_STATIC);
    assert_int_equal(st_collect(s, aBefore + 10 * q, aDb + 10 * q, 10), 10);
  }
  sqlite3_finalize(s);
  st_close(db);
  db = st_open(zPath);
  assert_int_equal(st_int(db, "SELECT value FROM annex_info('t') WHERE key = "
                              "'hnsw_m'"), 12);
  s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v MATCH ?1 AND "
                     "k = 10");
  for (int q = 0; q < 20; q++) {
    sqlite3_bind_blob(s, 1, d.aQuery + (size_t)q * d.nDim, d.nDim * 4,
                      SQLITE_STATIC);
    assert_int_equal(st_collect(s, aAfter + 10 * q, aDa + 10 * q, 10), 10);
    if (q == 0) {
      sqlite3_int64 nMem = st_int(db, "SELECT value FROM annex_info('t') "
                                      "WHERE key = 'hnsw_nodes_in_memory'");
      printf("# reopen: first query loaded %lld of %d nodes\n", nMem,
             d.nBase);
      assert_true(nMem > 0 && nMem < d.nBase / 2);
    }
  }
  sqlite3_finalize(s);
  assert_memory_equal(aBefore, aAfter, sizeof(aBefore));
  assert_memory_equal(aDb, aDa, sizeof(aDb));
  st_integrity_ok(db, "t");
  st_close(db);
  st_rmdir(zDir);
  free(zDir);
  free_set(&d);
}

/* ROLLBACK of a bulk insert; ROLLBACK TO a savepoint mid-batch. */
static void test_rollback(void **state) {
  dataset d;
  sqlite3 *db;
  unsigned char *aUse;
  int n0 = 2000, nQ = 30;
  (void)state;
  if (load_set("sift5k", &d)) fail_msg("dataset sift5k missing");
  aUse = calloc((size_t)d.nBase, 1);
  db = st_open(NULL);
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[%d], index=hnsw, "
          "cat integer)", d.nDim);
  st_exec(db, "BEGIN");
  insert_rows(db, &d, 0, n0);
  st_exec(db, "COMMIT");
  for (int i = 0; i < n0; i++) aUse[i] = 1;
  /* a bulk insert rolled back: above the parallel-link threshold */
  st_exec(db, "BEGIN");
  insert_rows(db, &d, n0, d.nBase);
  assert_true(recall_ref(db, &d, d.nBase, NULL, "", 5) >= 0.9);
  st_exec(db, "ROLLBACK");
  assert_int_equal(st_int(db, "SELECT count(*) FROM t"), n0);
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_hnsw"), n0);
  assert_true(recall_ref(db, &d, d.nBase, aUse, "", nQ) >= 0.95);
  st_integrity_ok(db, "t");
  /* savepoint in the middle of a batch: keep [n0, n0+500) and
  ** [n0+1000, n0+1500), lose [n0+500, n0+1000) */
  st_exec(db, "BEGIN");
  insert_rows(db, &d, n0, n0 + 500);
  st_exec(db, "SAVEPOINT s");
  insert_rows(db, &d, n0 + 500, n0 + 1000);
  st_exec(db, "ROLLBACK TO s");
  insert_rows(db, &d, n0 + 1000, n0 + 1500);
  st_exec(db, "RELEASE s");
  for (int i = n0; i < n0 + 500; i++) aUse[i] = 1;
  for (int i = n0 + 1000; i < n0 + 1500; i++) aUse[i] = 1;
  /* inside the transaction: the buffered rows are found */
  assert_true(recall_ref(db, &d, d.nBase, aUse, "", nQ) >= 0.95);
  st_exec(db, "COMMIT");
  assert_int_equal(st_int(db, "SELECT count(*) FROM t"), n0 + 1000);
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_hnsw"), n0 + 1000);
  assert_true(recall_ref(db, &d, d.nBase, aUse, "", nQ) >= 0.95);
  st_integrity_ok(db, "t");
  st_close(db);
  free(aUse);
  free_set(&d);
}

/* Deletes are never returned; optimize drops tombstones and keeps recall. */
static void test_delete_optimize(void **state) {
  dataset d;
  sqlite3 *db;
  unsigned char *aUse;
  int nQ = 40;
  double r;
  (void)state;
  if (load_set("sift5k", &d)) fail_msg("dataset sift5k missing");
  aUse = calloc((size_t)d.nBase, 1);
  db = st_open(NULL);
  create_and_load(db, &d, "hnsw");
  /* delete a third, and every row of the first two chunks' worth, so some
  ** chunks disappear with their tombstones' vectors */
  st_exec(db, "DELETE FROM t WHERE rowid %% 3 = 0 OR rowid <= 1100");
  for (int i = 0; i < d.nBase; i++) aUse[i] = ((i + 1) % 3 != 0 && i >= 1100);
  r = recall_ref(db, &d, d.nBase, aUse, "", nQ);
  printf("# recall@10 with tombstones %.4f\n", r);
  assert_true(r >= 0.95);
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_hnsw"), d.nBase);
  st_integrity_ok(db, "t");
  st_exec(db, "INSERT INTO t(t) VALUES('optimize')");
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_hnsw"),
                   st_int(db, "SELECT count(*) FROM t"));
  r = recall_ref(db, &d, d.nBase, aUse, "", nQ);
  printf("# recall@10 after optimize %.4f\n", r);
  assert_true(r >= 0.95);
  st_integrity_ok(db, "t");
  /* an update re-links: a row moved onto a query is its nearest */
  {
    sqlite3_stmt *s = st_prepare(db, "UPDATE t SET v = ?1 WHERE rowid = 1102");
    sqlite3_int64 aRowid[1];
    double aDist[1];
    sqlite3_bind_blob(s, 1, d.aQuery, d.nDim * 4, SQLITE_STATIC);
    assert_int_equal(st_run(s), SQLITE_DONE);
    sqlite3_finalize(s);
    s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v MATCH ?1 AND "
                       "k = 1");
    sqlite3_bind_blob(s, 1, d.aQuery, d.nDim * 4, SQLITE_STATIC);
    assert_int_equal(st_collect(s, aRowid, aDist, 1), 1);
    assert_int_equal(aRowid[0], 1102);
    assert_true(aDist[0] == 0.0);
    sqlite3_finalize(s);
  }
  st_integrity_ok(db, "t");
  st_close(db);
  free(aUse);
  free_set(&d);
}

/* Filters at 50%, 10% and 1%: k rows, recall@10 >= 0.95 vs exact. */
static void test_filtered(void **state) {
  static const struct { const char *zWhere; int nMod; } aCase[] = {
      {"AND cat < 50", 50}, {"AND cat < 10", 10}, {"AND cat = 7", -7},
      {"AND cat IN (3, 4) AND rowid > 100", -34},
  };
  dataset d;
  sqlite3 *db;
  unsigned char *aUse;
  (void)state;
  if (load_set("sift5k", &d)) fail_msg("dataset sift5k missing");
  aUse = malloc((size_t)d.nBase);
  db = st_open(NULL);
  create_and_load(db, &d, "hnsw");
  for (size_t c = 0; c < sizeof(aCase) / sizeof(aCase[0]); c++) {
    double r;
    for (int i = 0; i < d.nBase; i++) {
      int cat = i % 100;
      if (aCase[c].nMod > 0) aUse[i] = cat < aCase[c].nMod;
      else if (aCase[c].nMod == -7) aUse[i] = cat == 7;
      else aUse[i] = (cat == 3 || cat == 4) && i + 1 > 100;
    }
    r = recall_ref(db, &d, d.nBase, aUse, aCase[c].zWhere, 50);
    printf("# filtered %-36s recall@10 %.4f\n", aCase[c].zWhere, r);
    assert_true(r >= 0.95);
  }
  st_close(db);
  free(aUse);
  free_set(&d);
}

/* A vector UPDATE rolled back after a query in the same transaction loaded
** the node with its new vector: the cache must forget it (fuzz_ann). */
static void test_update_rollback(void **state) {
  char *zDir = st_tempdir(), zPath[512];
  sqlite3 *db;
  sqlite3_int64 aRowid[3];
  double aDist[3];
  (void)state;
  snprintf(zPath, sizeof(zPath), "%s/u.db", zDir);
  db = st_open(zPath);
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[4], index=hnsw)");
  st_exec(db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
              "WHERE i < 50) INSERT INTO t(rowid, v) SELECT i, json_array(i, "
              "i %% 7, i %% 3, 1) FROM c");
  st_close(db);
  db = st_open(zPath); /* nothing of the graph in memory */
  st_exec(db, "BEGIN; UPDATE t SET v = '[90,90,90,90]' WHERE rowid = 1");
  assert_int_equal(st_knn(db, "SELECT rowid, distance FROM t WHERE v MATCH "
                              "'[1,1,1,1]' AND k = 3", NULL, 0, 0, aRowid,
                          aDist, 3), 3);
  assert_true(aRowid[0] != 1);
  st_exec(db, "ROLLBACK");
  assert_int_equal(st_knn(db, "SELECT rowid, distance FROM t WHERE v MATCH "
                              "'[1,1,1,1]' AND k = 3", NULL, 0, 0, aRowid,
                          aDist, 3), 3);
  assert_int_equal(aRowid[0], 1);
  assert_true(aDist[0] == 0.0);
  st_integrity_ok(db, "t");
  st_close(db);
  st_rmdir(zDir);
  free(zDir);
}

/* Errors and small cases: knob values, empty table, fewer rows than k. */
static void test_edges(void **state) {
  sqlite3 *db = st_open(NULL);
  sqlite3_int64 aRowid[10];
  float q[4] = {0, 0, 0, 0};
  (void)state;
  st_expect_error(db, SQLITE_ERROR, "codes",
                  "CREATE VIRTUAL TABLE c USING annex(v float[32], "
                  "index=hnsw(codes=2))");
  st_exec(db, "CREATE VIRTUAL TABLE c USING annex(v float[4], index=hnsw)");
  assert_int_equal(st_int(db, "SELECT value FROM annex_info('c') WHERE key = "
                              "'hnsw_codes'"), 0); /* too few dimensions */
  st_exec(db, "DROP TABLE c");
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[4], index=hnsw)");
  st_exec(db, "INSERT INTO t(t) VALUES('rebuild')"); /* of nothing */
  st_integrity_ok(db, "t");
  assert_int_equal(st_knn(db, "SELECT rowid FROM t WHERE v MATCH ?1 AND "
                              "k = ?2", q, 16, 5, aRowid, NULL, 10), 0);
  st_exec(db, "INSERT INTO t(rowid, v) VALUES(1, '[1,0,0,0]'), "
              "(2, '[2,0,0,0]'), (3, '[3,0,0,0]')");
  assert_int_equal(st_knn(db, "SELECT rowid FROM t WHERE v MATCH ?1 AND "
                              "k = ?2", q, 16, 5, aRowid, NULL, 10), 3);
  assert_int_equal(aRowid[0], 1);
  assert_int_equal(aRowid[2], 3);
  st_expect_error(db, SQLITE_ERROR, "ef_search must be a positive integer",
                  "SELECT rowid FROM t WHERE v MATCH '[0,0,0,0]' AND k = 2 "
                  "AND ef_search = 0");
  st_expect_error(db, SQLITE_ERROR, "need a MATCH",
                  "SELECT rowid FROM t WHERE ef_search = 10");
  st_expect_error(db, SQLITE_ERROR, "cannot be written",
                  "INSERT INTO t(rowid, v, ef_search) VALUES(9, '[0,0,0,0]', "
                  "3)");
  /* insert then delete inside one transaction: never returned */
  st_exec(db, "BEGIN; INSERT INTO t(rowid, v) VALUES(4, '[0,0,0,0]'); "
              "DELETE FROM t WHERE rowid = 4; COMMIT");
  assert_int_equal(st_knn(db, "SELECT rowid FROM t WHERE v MATCH ?1 AND "
                              "k = ?2", q, 16, 1, aRowid, NULL, 10), 1);
  assert_int_equal(aRowid[0], 1);
  /* defensive mode: the graph's shadow table refuses direct writes */
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)0);
  st_expect_error(db, 0, NULL, "DELETE FROM t_hnsw");
  st_exec(db, "INSERT INTO t(t) VALUES('optimize')");
  st_integrity_ok(db, "t");
  st_exec(db, "DROP TABLE t");
  assert_int_equal(st_int(db, "SELECT count(*) FROM sqlite_schema WHERE "
                              "name LIKE 't_%%'"), 0);
  st_close(db);
}

/* Progress: the handler sees the build advance and end, and annex_info on
** another connection of the process shows it while it runs. */
typedef struct progress_log {
  sqlite3 *dbOther;       /* a second connection to the same file */
  int nCall, nEnd, nInfo; /* handler calls, ends, info rows seen */
  sqlite3_int64 nLast, nTotal;
  int bMonotonic;
} progress_log;

static void on_progress(void *pArg, const char *zTable, const char *zPhase,
                        sqlite3_int64 nDone, sqlite3_int64 nTotal) {
  progress_log *p = (progress_log *)pArg;
  sqlite3_stmt *s;
  assert_string_equal(zTable, "t");
  assert_string_equal(zPhase, "hnsw build");
  if (nTotal < 0) {
    p->nEnd++;
    return;
  }
  if (nDone < p->nLast) p->bMonotonic = 0;
  p->nLast = nDone;
  p->nTotal = nTotal;
  p->nCall++;
  if (sqlite3_prepare_v2(p->dbOther, "SELECT value FROM annex_info('t') "
                         "WHERE key = 'progress_done'", -1, &s, 0) ==
      SQLITE_OK) {
    if (sqlite3_step(s) == SQLITE_ROW) {
      assert_int_equal(sqlite3_column_int64(s, 0), nDone);
      p->nInfo++;
    }
  }
  sqlite3_finalize(s);
}

static void test_progress(void **state) {
  dataset d;
  char *zDir = st_tempdir(), zPath[512];
  sqlite3 *db;
  progress_log log;
  (void)state;
  if (load_set("sift5k", &d)) fail_msg("dataset sift5k missing");
  snprintf(zPath, sizeof(zPath), "%s/p.db", zDir);
  db = st_open(zPath);
  st_exec(db, "PRAGMA journal_mode=WAL");
  create_and_load(db, &d, "hnsw(m=8, ef_construction=40)");
  memset(&log, 0, sizeof(log));
  log.bMonotonic = 1;
  log.dbOther = st_open(zPath);
  annex_progress_handler(on_progress, &log);
  st_exec(db, "INSERT INTO t(t) VALUES('rebuild')");
  annex_progress_handler(NULL, NULL);
  printf("# progress: %d calls, %d seen by annex_info on another "
         "connection, last %lld of %lld\n", log.nCall, log.nInfo, log.nLast,
         log.nTotal);
  assert_true(log.nCall >= 2);
  assert_true(log.bMonotonic);
  assert_int_equal(log.nEnd, 1);
  assert_int_equal(log.nLast, d.nBase);
  assert_int_equal(log.nTotal, d.nBase);
  assert_int_equal(log.nInfo, log.nCall);
  st_progress_finish(log.dbOther, db, zDir);
  free_set(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_edges),
      cmocka_unit_test(test_progress),
      cmocka_unit_test(test_update_rollback),
      cmocka_unit_test(test_recall_sift5k),
      cmocka_unit_test(test_recall_mnist10k),
      cmocka_unit_test(test_reopen),
      cmocka_unit_test(test_rollback),
      cmocka_unit_test(test_delete_optimize),
      cmocka_unit_test(test_filtered),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
