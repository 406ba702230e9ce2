/*
** test_ivf_sql.c — index=ivf through SQL.
**
** Answers are checked against exact references computed by brute force in
** double precision (the shared datasets' ground truth, or st_ref_rank),
** never against annex itself:
**   - below 39 x nlist rows: exact answers, annex_info's ivf_state says
**     training is pending and why, 'train' refuses with the same reason;
**   - training at the commit that reaches the threshold; recall@10 >= 0.95
**     on sift5k for flat, sq8 and pq (+ re-rank), with exact distances;
**     the nprobe column; 'train' again gives the same answers (seeded);
**   - reopen: a new connection answers identically without retraining;
**   - a row inserted after training is found, inside its transaction and
**     after; deleted rows are never returned; 'optimize';
**   - ROLLBACK of a bulk insert (also one that would have trained) and
**     ROLLBACK TO a savepoint leave searches as they were;
**   - vector UPDATE; filtered search (k rows whenever k match); int8
**     tables answer exactly; integrity-check after everything;
**   - progress of 'train': k-means iterations, then the assignment of
**     every row, through the handler and annex_info on another connection.
*/
#include <math.h>
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

static dataset g_set; /* sift5k, loaded once */

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

static int setup(void **state) {
  (void)state;
  return load_set("sift5k", &g_set);
}

static int teardown(void **state) {
  (void)state;
  free(g_set.aBase);
  free(g_set.aQuery);
  free(g_set.aGt);
  free(g_set.aGtDist);
  return 0;
}

static const float *base_vec(int i) {
  return g_set.aBase + (size_t)i * g_set.nDim;
}
static const float *query_vec(int q) {
  return g_set.aQuery + (size_t)q * g_set.nDim;
}

/* Insert base rows [i0, i1) (rowid = row + 1, cat = row % 100). */
static void insert_rows(sqlite3 *db, int i0, int i1) {
  sqlite3_stmt *s = st_prepare(db, "INSERT INTO t(rowid, v, cat) "
                                   "VALUES(?, ?, ?)");
  for (int i = i0; i < i1; i++) {
    sqlite3_bind_int64(s, 1, i + 1);
    sqlite3_bind_blob(s, 2, base_vec(i), g_set.nDim * 4, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, i % 100);
    assert_int_equal(st_run(s), SQLITE_DONE);
  }
  sqlite3_finalize(s);
}

static void create(sqlite3 *db, const char *zIdx) {
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[%d], index=%s, "
          "cat integer)", g_set.nDim, zIdx);
}

static void load(sqlite3 *db, int i0, int i1) {
  st_exec(db, "BEGIN");
  insert_rows(db, i0, i1);
  st_exec(db, "COMMIT");
}

static char *info(sqlite3 *db, const char *zKey) {
  return st_text(db, "SELECT value FROM annex_info('t') WHERE key = %Q",
                 zKey);
}

static void assert_state_prefix(sqlite3 *db, const char *zPrefix) {
  char *z = info(db, "ivf_state");
  if (z == NULL || strncmp(z, zPrefix, strlen(zPrefix)) != 0) {
    fail_msg("ivf_state '%s', expected '%s...'", z ? z : "(null)", zPrefix);
  }
  sqlite3_free(z);
}

/* Exact reference of q over base rows [0, n) whose aUse is set. */
static int ref_knn(int n, const float *pq, const unsigned char *aUse,
                   st_hit *aOut) {
  sqlite3_int64 *aRowid = malloc(sizeof(sqlite3_int64) * (size_t)n);
  int nRef;
  for (int i = 0; i < n; i++) aRowid[i] = i + 1;
  nRef = st_ref_rank(ST_FLOAT, ST_L2, g_set.nDim, pq, g_set.aBase, aRowid,
                     aUse, n, aOut);
  free(aRowid);
  return nRef;
}

/* k-NN of query vector pq with an optional extra WHERE and nprobe (0:
** default). */
static int knn(sqlite3 *db, const float *pq, int k, int nProbe,
               const char *zWhere, sqlite3_int64 *aRowid, double *aDist) {
  sqlite3_stmt *s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v "
                               "MATCH ?1 AND k = %d %s %s", k, zWhere,
                               nProbe ? "AND nprobe = ?2" : "");
  int n;
  sqlite3_bind_blob(s, 1, pq, g_set.nDim * 4, SQLITE_STATIC);
  if (nProbe) sqlite3_bind_int(s, 2, nProbe);
  n = st_collect(s, aRowid, aDist, k);
  sqlite3_finalize(s);
  return n;
}

/* Tie-robust recall@10 against the ground truth, distances exact. */
static double recall_gt(sqlite3 *db, int nQ, int nProbe) {
  int nHit = 0;
  for (int q = 0; q < nQ; q++) {
    const float *pq = query_vec(q);
    double kth = g_set.aGtDist[(size_t)q * g_set.nGtK + 9];
    sqlite3_int64 aRowid[10];
    double aDist[10];
    int n = knn(db, pq, 10, nProbe, "", aRowid, aDist);
    assert_int_equal(n, 10);
    for (int i = 0; i < n; i++) {
      double want = st_ref_distance(ST_FLOAT, ST_L2, base_vec((int)aRowid[i] - 1),
                                    pq, g_set.nDim);
      assert_true(aDist[i] <= want * (1 + 1e-5) + 1e-5 &&
                  aDist[i] >= want * (1 - 1e-5) - 1e-5);
      if (want <= kth * (1 + 1e-6) + 1e-6) nHit++;
    }
  }
  return nHit / (10.0 * nQ);
}

/* Exact answers over the first n rows for nQ queries. */
static void check_exact(sqlite3 *db, int n, int nQ, const char *zWhat) {
  st_hit *aRef = malloc(sizeof(st_hit) * (size_t)n);
  for (int q = 0; q < nQ; q++) {
    sqlite3_int64 aRowid[10];
    double aDist[10];
    int nRef = ref_knn(n, query_vec(q), NULL, aRef);
    int nGot = knn(db, query_vec(q), 10, 0, "", aRowid, aDist);
    st_check_knn(aRowid, aDist, nGot, aRef, nRef, 10, 1e-5, zWhat);
  }
  free(aRef);
}

static void test_below_threshold(void **state) {
  sqlite3 *db = st_open(NULL);
  (void)state;
  create(db, "ivf(nlist=64, quantizer=pq, m=16)");
  load(db, 0, 1000); /* 39 x 64 = 2496 needed */
  assert_state_prefix(db, "pending: training needs at least 39 x nlist = "
                          "2496 rows");
  assert_int_equal(st_int(db, "SELECT value FROM annex_info('t') WHERE "
                              "key = 'ivf_trained'"), 0);
  check_exact(db, 1000, 20, "below threshold");
  st_expect_error(db, 0, "training needs at least", "INSERT INTO t(t) "
                  "VALUES('train')");
  /* Default nlist: 4 sqrt(n) lists need 39 x that many rows. */
  st_exec(db, "CREATE VIRTUAL TABLE u USING annex(v float[4], index=ivf)");
  st_exec(db, "INSERT INTO u(rowid, v) VALUES(1, '[1,2,3,4]')");
  {
    char *z = st_text(db, "SELECT value FROM annex_info('u') WHERE key = "
                          "'ivf_state'");
    assert_non_null(strstr(z, "4 sqrt(rows)"));
    sqlite3_free(z);
  }
  st_integrity_ok(db, "t");
  st_close(db);
}

static void test_train_recall(void **state) {
  static const char *azIdx[] = {
      "ivf(nlist=64, quantizer=flat)",
      "ivf(nlist=64, quantizer=sq8)",
      "ivf(nlist=64, quantizer=pq, m=16)",
  };
  (void)state;
  for (size_t i = 0; i < sizeof(azIdx) / sizeof(azIdx[0]); i++) {
    sqlite3 *db = st_open(NULL);
    double r, rAll;
    create(db, azIdx[i]);
    load(db, 0, 2000);
    assert_state_prefix(db, "pending");
    load(db, 2000, g_set.nBase); /* this commit trains */
    assert_state_prefix(db, "trained");
    r = recall_gt(db, g_set.nQuery, 0);
    rAll = recall_gt(db, 50, 64);
    printf("# %-36s recall@10 %.4f (nprobe=16), %.4f (nprobe=64)\n",
           azIdx[i], r, rAll);
    assert_true(r >= 0.95);
    /* Every list: exact for flat and sq8 (+ re-rank); pq's re-rank of 4k
    ** candidates bounds it below 1. */
    assert_true(rAll >= (i < 2 ? 0.99 : 0.97));
    st_integrity_ok(db, "t");
    st_close(db);
  }
}

/* Rowids and distances of nQ queries, k = 10 (caller frees). */
static void answers(sqlite3 *db, int nQ, sqlite3_int64 *aRowid,
                    double *aDist) {
  for (int q = 0; q < nQ; q++) {
    int n = knn(db, query_vec(q), 10, 0, "", aRowid + 10 * q, aDist + 10 * q);
    assert_int_equal(n, 10);
  }
}

static void test_retrain_and_reopen(void **state) {
  enum { NQ = 40 };
  char *zDir = st_tempdir(), zPath[512];
  sqlite3_int64 aR1[10 * NQ], aR2[10 * NQ], nChanges;
  double aD1[10 * NQ], aD2[10 * NQ];
  sqlite3 *db;
  (void)state;
  snprintf(zPath, sizeof(zPath), "%s/ivf.db", zDir);
  db = st_open(zPath);
  create(db, "ivf(nlist=50, quantizer=pq, m=16)");
  load(db, 0, g_set.nBase);
  answers(db, NQ, aR1, aD1);
  /* Seeded: training again gives the same index. */
  st_exec(db, "INSERT INTO t(t) VALUES('train')");
  answers(db, NQ, aR2, aD2);
  assert_memory_equal(aR1, aR2, sizeof(aR1));
  assert_memory_equal(aD1, aD2, sizeof(aD1));
  nChanges = st_int(db, "SELECT value FROM annex_info('t') WHERE key = "
                        "'changes'");
  st_close(db);
  db = st_open(zPath);
  answers(db, NQ, aR2, aD2);
  assert_memory_equal(aR1, aR2, sizeof(aR1));
  assert_memory_equal(aD1, aD2, sizeof(aD1));
  /* Nothing was written: no retraining on open or query. */
  assert_int_equal(st_int(db, "SELECT value FROM annex_info('t') WHERE key "
                              "= 'changes'"), nChanges);
  assert_true(st_int(db, "SELECT value FROM annex_info('t') WHERE key = "
                         "'ivf_lists_in_memory'") > 0);
  st_integrity_ok(db, "t");
  st_close(db);
  st_rmdir(zDir);
  free(zDir);
}

/* A trained table of every base row except the last 300. */
static sqlite3 *trained(const char *zPath, const char *zIdx) {
  sqlite3 *db = st_open(zPath);
  create(db, zIdx);
  load(db, 0, g_set.nBase - 300);
  assert_state_prefix(db, "trained");
  return db;
}

/* k = 1 for query q: the rowid, distance in *pr. */
static sqlite3_int64 nearest(sqlite3 *db, const float *pq, double *pr) {
  sqlite3_int64 aRowid[1];
  double aDist[1];
  assert_int_equal(knn(db, pq, 1, 0, "", aRowid, aDist), 1);
  if (pr) *pr = aDist[0];
  return aRowid[0];
}

static void insert_vec(sqlite3 *db, sqlite3_int64 iRowid, const float *pv) {
  sqlite3_stmt *s = st_prepare(db, "INSERT INTO t(rowid, v, cat) VALUES(?, "
                                   "?, 1000)");
  sqlite3_bind_int64(s, 1, iRowid);
  sqlite3_bind_blob(s, 2, pv, g_set.nDim * 4, SQLITE_STATIC);
  assert_int_equal(st_run(s), SQLITE_DONE);
  sqlite3_finalize(s);
}

static void test_insert_after_train(void **state) {
  char *zDir = st_tempdir(), zPath[512];
  sqlite3 *db;
  double r;
  (void)state;
  snprintf(zPath, sizeof(zPath), "%s/ivf.db", zDir);
  for (int iq = 0; iq < 3; iq++) {
    static const char *azIdx[] = {"ivf(nlist=40, quantizer=flat)",
                                  "ivf(nlist=40, quantizer=sq8)",
                                  "ivf(nlist=40, quantizer=pq, m=32)"};
    db = trained(zPath, azIdx[iq]);
    st_exec(db, "BEGIN");
    insert_vec(db, 100000, query_vec(0));
    assert_int_equal(nearest(db, query_vec(0), &r), 100000); /* in txn */
    assert_true(r == 0.0);
    st_exec(db, "COMMIT");
    insert_vec(db, 100001, query_vec(1)); /* autocommit */
    insert_rows(db, g_set.nBase - 300, g_set.nBase);
    st_close(db);
    db = st_open(zPath);
    assert_int_equal(nearest(db, query_vec(0), NULL), 100000);
    assert_int_equal(nearest(db, query_vec(1), NULL), 100001);
    st_exec(db, "DELETE FROM t WHERE rowid >= 100000");
    /* the late rows are in the lists: recall over every row holds */
    r = recall_gt(db, 100, 0);
    assert_true(r >= 0.95);
    st_integrity_ok(db, "t");
    st_close(db);
    remove(zPath);
  }
  st_rmdir(zDir);
  free(zDir);
}

static void test_delete(void **state) {
  sqlite3 *db = trained(NULL, "ivf(nlist=40, quantizer=pq, m=16)");
  unsigned char *aDead = calloc(200000, 1);
  (void)state;
  /* Delete the 3 nearest of every query, then half of all rows. */
  for (int q = 0; q < 50; q++) {
    sqlite3_int64 aRowid[3];
    double aDist[3];
    int n = knn(db, query_vec(q), 3, 0, "", aRowid, aDist);
    for (int i = 0; i < n; i++) {
      st_exec(db, "DELETE FROM t WHERE rowid = %lld", aRowid[i]);
      aDead[aRowid[i]] = 1;
    }
  }
  st_exec(db, "DELETE FROM t WHERE rowid %% 2 = 0");
  for (int i = 2; i < 200000; i += 2) aDead[i] = 1;
  for (int pass = 0; pass < 2; pass++) {
    for (int q = 0; q < 50; q++) {
      sqlite3_int64 aRowid[10];
      double aDist[10];
      int n = knn(db, query_vec(q), 10, 0, "", aRowid, aDist);
      assert_int_equal(n, 10);
      for (int i = 0; i < n; i++) assert_false(aDead[aRowid[i]]);
    }
    st_integrity_ok(db, "t");
    st_exec(db, "INSERT INTO t(t) VALUES('optimize')");
  }
  free(aDead);
  st_close(db);
}

static void test_rollback(void **state) {
  enum { NQ = 20 };
  sqlite3_int64 aR1[10 * NQ], aR2[10 * NQ];
  double aD1[10 * NQ], aD2[10 * NQ];
  sqlite3 *db = trained(NULL, "ivf(nlist=40, quantizer=sq8)");
  (void)state;
  answers(db, NQ, aR1, aD1);
  /* ROLLBACK of a bulk insert that the searches in it saw. */
  st_exec(db, "BEGIN");
  insert_rows(db, g_set.nBase - 300, g_set.nBase);
  for (int q = 0; q < NQ; q++) insert_vec(db, 200000 + q, query_vec(q));
  assert_int_equal(nearest(db, query_vec(3), NULL), 200003);
  st_exec(db, "ROLLBACK");
  answers(db, NQ, aR2, aD2);
  assert_memory_equal(aR1, aR2, sizeof(aR1));
  assert_memory_equal(aD1, aD2, sizeof(aD1));
  /* ROLLBACK TO: rows before the savepoint stay, rows after go. */
  st_exec(db, "BEGIN");
  insert_vec(db, 300000, query_vec(4));
  st_exec(db, "SAVEPOINT s");
  insert_vec(db, 300001, query_vec(5));
  st_exec(db, "DELETE FROM t WHERE rowid = 300000");
  assert_int_equal(nearest(db, query_vec(5), NULL), 300001);
  st_exec(db, "ROLLBACK TO s");
  assert_int_equal(nearest(db, query_vec(4), NULL), 300000);
  assert_true(nearest(db, query_vec(5), NULL) != 300001);
  st_exec(db, "RELEASE s");
  st_exec(db, "COMMIT");
  assert_int_equal(nearest(db, query_vec(4), NULL), 300000);
  st_exec(db, "DELETE FROM t WHERE rowid = 300000");
  answers(db, NQ, aR2, aD2);
  assert_memory_equal(aR1, aR2, sizeof(aR1));
  st_integrity_ok(db, "t");
  st_close(db);
  /* ROLLBACK of the transaction whose commit would have trained. */
  db = st_open(NULL);
  create(db, "ivf(nlist=64, quantizer=flat)");
  load(db, 0, 2000);
  st_exec(db, "BEGIN");
  insert_rows(db, 2000, g_set.nBase);
  st_exec(db, "ROLLBACK");
  assert_state_prefix(db, "pending: training needs");
  check_exact(db, 2000, 10, "after rollback");
  st_close(db);
}

static void test_update_vector(void **state) {
  sqlite3 *db = trained(NULL, "ivf(nlist=40, quantizer=flat)");
  sqlite3_stmt *s;
  double r;
  (void)state;
  /* Row 7 takes query 2's vector: found at distance 0, once. */
  s = st_prepare(db, "UPDATE t SET v = ?1 WHERE rowid = 7");
  sqlite3_bind_blob(s, 1, query_vec(2), g_set.nDim * 4, SQLITE_STATIC);
  assert_int_equal(st_run(s), SQLITE_DONE);
  sqlite3_finalize(s);
  assert_int_equal(nearest(db, query_vec(2), &r), 7);
  assert_true(r == 0.0);
  assert_int_equal(st_int(db, "SELECT value FROM annex_info('t') WHERE key "
                              "= 'ivf_updates'"), 1);
  /* Its old vector no longer finds it at distance 0. */
  assert_true(nearest(db, base_vec(6), &r) != 7 || r > 0);
  {
    sqlite3_int64 aRowid[10];
    double aDist[10];
    int n = knn(db, query_vec(2), 10, 0, "", aRowid, aDist);
    for (int i = 1; i < n; i++) assert_true(aRowid[i] != 7);
  }
  st_exec(db, "INSERT INTO t(t) VALUES('optimize')");
  assert_int_equal(st_int(db, "SELECT value FROM annex_info('t') WHERE key "
                              "= 'ivf_updates'"), 0);
  assert_int_equal(nearest(db, query_vec(2), NULL), 7);
  st_integrity_ok(db, "t");
  st_close(db);
}

/* Stale entries crowding the candidates: 300 of 400 rows UPDATEd to one
** far vector leave their old flat codes where they were, so a query near
** them finds mostly stale entries among its k + k candidates. Re-scored,
** those rows are far: with every list probed the answer must still be the
** exact one (the search widens the candidates until the k-th re-scored hit
** beats every entry left out). Found by test_crash's long mode. */
static void test_update_stale_crowd(void **state) {
  enum { N = 400, DIM = 8 };
  static float aV[N][DIM];
  sqlite3 *db = st_open(NULL);
  sqlite3_stmt *s;
  unsigned seed = 7;
  (void)state;
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[8], "
              "index=ivf(nlist=4, quantizer=flat))");
  st_exec(db, "BEGIN");
  s = st_prepare(db, "INSERT INTO t(rowid, v) VALUES(?1, ?2)");
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < DIM; j++) aV[i][j] = (float)(rand_r(&seed) % 1000) / 100.0f;
    sqlite3_bind_int(s, 1, i + 1);
    sqlite3_bind_blob(s, 2, aV[i], sizeof(aV[i]), SQLITE_STATIC);
    assert_int_equal(st_run(s), SQLITE_DONE);
  }
  sqlite3_finalize(s);
  st_exec(db, "COMMIT");
  st_exec(db, "INSERT INTO t(t) VALUES('train')");
  st_exec(db, "UPDATE t SET v = '[100,100,100,100,100,100,100,100]' WHERE "
              "rowid %% 4 != 0");
  for (int i = 0; i < N; i++) {
    if ((i + 1) % 4 != 0) for (int j = 0; j < DIM; j++) aV[i][j] = 100.0f;
  }
  assert_true(st_int(db, "SELECT value FROM annex_info('t') WHERE key = "
                         "'ivf_updates'") > 0);
  s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v MATCH ?1 AND "
                     "k = 10 AND nprobe = 4");
  for (int iq = 0; iq < 20; iq++) {
    float q[DIM];
    double aD[N], aBest[10];
    sqlite3_int64 aRowid[10];
    double aDist[10];
    int n;
    for (int j = 0; j < DIM; j++) q[j] = (float)(rand_r(&seed) % 1000) / 100.0f;
    for (int i = 0; i < N; i++) {
      double d = 0;
      for (int j = 0; j < DIM; j++) d += ((double)aV[i][j] - q[j]) * ((double)aV[i][j] - q[j]);
      aD[i] = sqrt(d);
    }
    for (int r = 0; r < 10; r++) { /* the 10 smallest, in order */
      int b = -1;
      for (int i = 0; i < N; i++) if (aD[i] >= 0 && (b < 0 || aD[i] < aD[b])) b = i;
      aBest[r] = aD[b];
      aD[b] = -1;
    }
    sqlite3_bind_blob(s, 1, q, sizeof(q), SQLITE_STATIC);
    n = st_collect(s, aRowid, aDist, 10);
    assert_int_equal(n, 10);
    for (int r = 0; r < 10; r++) {
      if (fabs(aDist[r] - aBest[r]) > 1e-4 * (1 + aBest[r])) {
        fail_msg("query %d rank %d: row %lld at %g, exact %g", iq, r,
                 (long long)aRowid[r], aDist[r], aBest[r]);
      }
    }
  }
  sqlite3_finalize(s);
  st_integrity_ok(db, "t");
  st_close(db);
}

static void test_filtered(void **state) {
  static const struct { const char *zWhere; int nMod; } aCase[] = {
      {"AND cat < 50", 50}, {"AND cat < 20", 20}, {"AND cat = 7", -7}};
  sqlite3 *db = st_open(NULL);
  int n = g_set.nBase;
  unsigned char *aUse = malloc((size_t)n);
  st_hit *aRef = malloc(sizeof(st_hit) * (size_t)n);
  (void)state;
  create(db, "ivf(nlist=64, quantizer=pq, m=16)");
  load(db, 0, n);
  for (size_t c = 0; c < sizeof(aCase) / sizeof(aCase[0]); c++) {
    int nHit = 0;
    for (int i = 0; i < n; i++) {
      aUse[i] = aCase[c].nMod > 0 ? i % 100 < aCase[c].nMod : i % 100 == 7;
    }
    for (int q = 0; q < 50; q++) {
      sqlite3_int64 aRowid[10];
      double aDist[10];
      int nRef = ref_knn(n, query_vec(q), aUse, aRef);
      int nGot = knn(db, query_vec(q), 10, 0, aCase[c].zWhere, aRowid, aDist);
      assert_int_equal(nGot, nRef < 10 ? nRef : 10); /* k rows when k match */
      for (int i = 0; i < nGot; i++) {
        assert_true(aUse[aRowid[i] - 1]);
        for (int j = 0; j < 10; j++) {
          if (aRef[j].rowid == aRowid[i]) {
            nHit++;
            break;
          }
        }
      }
    }
    printf("# filtered %-14s recall@10 %.3f\n", aCase[c].zWhere,
           nHit / 500.0);
    assert_true(nHit >= 450);
  }
  free(aUse);
  free(aRef);
  st_close(db);
}

static void test_int8_exact(void **state) {
  sqlite3 *db = st_open(NULL);
  char *z;
  (void)state;
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v int8[4], index=ivf(nlist=2))");
  for (int i = 0; i < 200; i++) {
    st_exec(db, "INSERT INTO t(rowid, v) VALUES(%d, annex_int8('[%d,%d,%d,%d]'))",
            i + 1, i % 100, -(i % 50), i % 7, 3);
  }
  z = st_text(db, "SELECT value FROM annex_info('t') WHERE key = 'ivf_state'");
  assert_non_null(strstr(z, "float vectors only"));
  sqlite3_free(z);
  assert_int_equal(st_int(db, "SELECT rowid FROM t WHERE v MATCH "
                              "annex_int8('[10,-10,3,3]') AND k = 1"), 11);
  st_close(db);
}

static void test_params(void **state) {
  sqlite3 *db = st_open(NULL);
  (void)state;
  st_expect_error(db, 0, "unknown ivf parameter", "CREATE VIRTUAL TABLE a "
                  "USING annex(v float[8], index=ivf(lists=3))");
  st_expect_error(db, 0, "flat, sq8 or pq", "CREATE VIRTUAL TABLE a USING "
                  "annex(v float[8], index=ivf(quantizer=opq))");
  st_expect_error(db, 0, "must divide", "CREATE VIRTUAL TABLE a USING "
                  "annex(v float[8], index=ivf(quantizer=pq, m=3))");
  st_expect_error(db, 0, "pq only", "CREATE VIRTUAL TABLE a USING "
                  "annex(v float[8], index=ivf(m=2))");
  st_close(db);
}

/* Progress of 'train': "ivf train" (k-means iterations, up to all of them)
** and then "ivf assign" (rows, up to every row), each phase monotonic; the
** handler's numbers are what annex_info shows another connection of the
** process at that moment; one end call, and no progress rows afterwards. */
typedef struct progress_log {
  sqlite3 *dbOther;     /* a second connection to the same file */
  int nTrain, nAssign;  /* handler calls per phase */
  int nEnd, nInfo;      /* end calls; calls annex_info agreed with */
  int bMonotonic, bOrdered;
  sqlite3_int64 nTrainLast, nTrainTotal, nAssignLast, nAssignTotal;
} progress_log;

static void on_progress(void *pArg, const char *zTable, const char *zPhase,
                        sqlite3_int64 nDone, sqlite3_int64 nTotal) {
  progress_log *p = (progress_log *)pArg;
  sqlite3_int64 *pLast, *pTotal;
  char *zSeen;
  assert_string_equal(zTable, "t");
  if (nTotal < 0) {
    p->nEnd++;
    return;
  }
  if (strcmp(zPhase, "ivf train") == 0) {
    if (p->nAssign > 0) p->bOrdered = 0; /* training comes first */
    p->nTrain++;
    pLast = &p->nTrainLast;
    pTotal = &p->nTrainTotal;
  } else {
    assert_string_equal(zPhase, "ivf assign");
    p->nAssign++;
    pLast = &p->nAssignLast;
    pTotal = &p->nAssignTotal;
  }
  if (nDone < *pLast || nDone > nTotal) p->bMonotonic = 0;
  *pLast = nDone;
  *pTotal = nTotal;
  zSeen = st_text(p->dbOther, "SELECT group_concat(value, '|') FROM "
                  "annex_info('t') WHERE key LIKE 'progress%%'");
  if (zSeen) {
    char zWant[128];
    snprintf(zWant, sizeof(zWant), "%s|%lld|%lld", zPhase, (long long)nDone,
             (long long)nTotal);
    if (strcmp(zSeen, zWant) == 0) p->nInfo++;
    sqlite3_free(zSeen);
  }
}

static void test_progress(void **state) {
  char *zDir = st_tempdir(), zPath[512];
  sqlite3 *db;
  progress_log log;
  (void)state;
  snprintf(zPath, sizeof(zPath), "%s/p.db", zDir);
  db = st_open(zPath);
  st_exec(db, "PRAGMA journal_mode=WAL");
  create(db, "ivf(nlist=32, quantizer=pq, m=16)");
  load(db, 0, g_set.nBase); /* trains at this commit */
  assert_state_prefix(db, "trained");
  memset(&log, 0, sizeof(log));
  log.bMonotonic = log.bOrdered = 1;
  log.dbOther = st_open(zPath);
  annex_progress_handler(on_progress, &log);
  st_exec(db, "INSERT INTO t(t) VALUES('train')");
  annex_progress_handler(NULL, NULL);
  printf("# progress: train %d calls (last %lld of %lld), assign %d calls "
         "(last %lld of %lld), %d seen by annex_info on another connection\n",
         log.nTrain, (long long)log.nTrainLast, (long long)log.nTrainTotal,
         log.nAssign, (long long)log.nAssignLast,
         (long long)log.nAssignTotal, log.nInfo);
  assert_true(log.nTrain >= 2);
  assert_true(log.nAssign >= 1);
  assert_true(log.bMonotonic);
  assert_true(log.bOrdered);
  assert_int_equal(log.nTrainLast, log.nTrainTotal);
  assert_int_equal(log.nAssignLast, g_set.nBase);
  assert_int_equal(log.nAssignTotal, g_set.nBase);
  assert_int_equal(log.nEnd, 1);
  assert_int_equal(log.nInfo, log.nTrain + log.nAssign);
  st_progress_finish(log.dbOther, db, zDir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_params),
      cmocka_unit_test(test_update_stale_crowd),
      cmocka_unit_test(test_below_threshold),
      cmocka_unit_test(test_train_recall),
      cmocka_unit_test(test_retrain_and_reopen),
      cmocka_unit_test(test_insert_after_train),
      cmocka_unit_test(test_delete),
      cmocka_unit_test(test_rollback),
      cmocka_unit_test(test_update_vector),
      cmocka_unit_test(test_filtered),
      cmocka_unit_test(test_int8_exact),
      cmocka_unit_test(test_progress),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
