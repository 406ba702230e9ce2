/*
** test_diskann_sql.c — index=diskann through SQL.
**
** Recall is measured against exact ground truth computed by brute force in
** double precision (the shared datasets' groundtruth files, or
** st_ref_rank here), never against annex itself:
**   - recall@10 on sift5k at the default search_list (100), loaded the
**     way users load (many INSERTs in one transaction), and after
**     'rebuild'; cosine on a part of it against brute force;
**   - reopen: a new connection answers identically, reading only the nodes
**     its walks meet (the node cache fills partly); file size reported;
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
                                   "MATCH ?1 AND k = 10 AND search_list = ?2");
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

static void recall_on(const char *zSet, int nQMax) {
  dataset d;
  sqlite3 *db;
  double r, rLow, rRebuilt;
  if (load_set(zSet, &d)) fail_msg("dataset %s missing", zSet);
  db = st_open(NULL);
  create_and_load(db, &d, "diskann");
  if (nQMax > d.nQuery) nQMax = d.nQuery;
  nQMax = max_queries(nQMax);
  r = recall_gt(db, &d, nQMax, 100); /* the default search_list */
  rLow = recall_gt(db, &d, nQMax, 10);
  printf("# %s: recall@10 %.4f at search_list=100 (default), %.4f at 10\n",
         zSet, r, rLow);
  assert_true(r >= 0.95);
  assert_true(rLow <= r + 1e-9);
  st_integrity_ok(db, "t");
  st_exec(db, "INSERT INTO t(t) VALUES('rebuild')");
  rRebuilt = recall_gt(db, &d, nQMax, 100);
  printf("# %s: recall@10 %.4f after 'rebuild'\n", zSet, rRebuilt);
  assert_true(rRebuilt >= 0.95);
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_diskann"), d.nBase);
  st_integrity_ok(db, "t");
  st_close(db);
  free_set(&d);
}

static void test_recall_sift5k(void **state) {
  (void)state;
  recall_on("sift5k", 200);
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
  create_and_load(db, &d, "diskann(r=32, l_build=64, cache_mb=2)");
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
                              "'diskann_pq'"), 32);
  s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v MATCH ?1 AND "
                     "k = 10");
  for (int q = 0; q < 20; q++) {
    sqlite3_bind_blob(s, 1, d.aQuery + (size_t)q * d.nDim, d.nDim * 4,
                      SQLITE_STATIC);
    assert_int_equal(st_collect(s, aAfter + 10 * q, aDa + 10 * q, 10), 10);
    if (q == 0) {
      sqlite3_int64 nMem = st_int(db, "SELECT value FROM annex_info('t') "
                                      "WHERE key = 'diskann_cache_used'");
      printf("# reopen: first query read %lld of %d nodes\n", nMem,
             d.nBase);
      assert_true(nMem > 0 && nMem < d.nBase / 2);
    }
  }
  sqlite3_finalize(s);
  {
    double nFile = (double)st_int(db, "SELECT page_count * page_size FROM "
                                      "pragma_page_count, pragma_page_size");
    double nRaw = (double)d.nBase * d.nDim * 4;
    printf("# file %.0f bytes = %.2fx the raw vectors (r=32); cache hits "
           "%lld, misses %lld\n", nFile, nFile / nRaw,
           st_int(db, "SELECT value FROM annex_info('t') WHERE key = "
                      "'diskann_cache_hits'"),
           st_int(db, "SELECT value FROM annex_info('t') WHERE key = "
                      "'diskann_cache_misses'"));
    /* the bound: node records are the only copy of the vectors */
    assert_true(nFile <= 2.0 * nRaw);
  }
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
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[%d], index=diskann, "
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
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_diskann"), n0);
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
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_diskann"), n0 + 1000);
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
  create_and_load(db, &d, "diskann");
  /* delete a third, and every row of the first two chunks' worth, so some
  ** chunks disappear with their tombstones' vectors */
  st_exec(db, "DELETE FROM t WHERE rowid %% 3 = 0 OR rowid <= 1100");
  for (int i = 0; i < d.nBase; i++) aUse[i] = ((i + 1) % 3 != 0 && i >= 1100);
  r = recall_ref(db, &d, d.nBase, aUse, "", nQ);
  printf("# recall@10 with tombstones %.4f\n", r);
  assert_true(r >= 0.95);
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_diskann"), d.nBase);
  st_integrity_ok(db, "t");
  st_exec(db, "INSERT INTO t(t) VALUES('optimize')");
  assert_int_equal(st_int(db, "SELECT count(*) FROM t_diskann"),
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
  create_and_load(db, &d, "diskann");
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

/* Cosine on the first 2000 rows: recall against brute force in double. */
static void test_cosine(void **state) {
  dataset d;
  sqlite3 *db;
  sqlite3_stmt *s;
  st_hit *aRef;
  sqlite3_int64 *aId;
  int n = 2000, nQ = 50, nHit = 0;
  (void)state;
  if (load_set("sift5k", &d)) fail_msg("dataset sift5k missing");
  db = st_open(NULL);
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[%d] distance=cosine, "
          "index=diskann(r=32), cat integer)", d.nDim);
  st_exec(db, "BEGIN");
  insert_rows(db, &d, 0, n);
  st_exec(db, "COMMIT");
  aRef = malloc(sizeof(st_hit) * (size_t)n);
  aId = malloc(sizeof(sqlite3_int64) * (size_t)n);
  for (int i = 0; i < n; i++) aId[i] = i + 1;
  s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v MATCH ?1 AND k = 10");
  for (int q = 0; q < nQ; q++) {
    const float *pq = d.aQuery + (size_t)q * d.nDim;
    sqlite3_int64 aRowid[10];
    double aDist[10];
    int nRef = st_ref_rank(ST_FLOAT, ST_COSINE, d.nDim, pq, d.aBase, aId,
                           NULL, n, aRef);
    sqlite3_bind_blob(s, 1, pq, d.nDim * 4, SQLITE_STATIC);
    assert_int_equal(st_collect(s, aRowid, aDist, 10), 10);
    for (int i = 0; i < 10; i++) {
      for (int j = 0; j < 10 && j < nRef; j++) {
        if (aRef[j].rowid == aRowid[i] || aDist[i] <= aRef[9].dist + 1e-6) {
          nHit++;
          break;
        }
      }
    }
  }
  sqlite3_finalize(s);
  printf("# cosine: recall@10 %.4f\n", nHit / (10.0 * nQ));
  assert_true(nHit >= 0.95 * 10 * nQ);
  st_integrity_ok(db, "t");
  free(aRef);
  free(aId);
  st_close(db);
  free_set(&d);
}

/* The node records are the only copy of the vectors (T_chunks has no
** vector region): every way of reading a vector returns what was written,
** inside a transaction, after ROLLBACK TO, UPDATE, delete, 'optimize',
** 'rebuild' and reopen; exact scans and annex_knn agree with brute force. */
static void check_vectors(sqlite3 *db, const float *aVec, const int *aLive,
                          int n) {
  sqlite3_stmt *s = st_prepare(db, "SELECT rowid, v FROM t ORDER BY rowid");
  int i = 0, nRow = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 r = sqlite3_column_int64(s, 0);
    while (i < n && !aLive[i]) i++;
    assert_true(i < n && r == i + 1);
    assert_int_equal(sqlite3_column_bytes(s, 1), 8 * 4);
    assert_memory_equal(sqlite3_column_blob(s, 1), aVec + 8 * i, 8 * 4);
    i++;
    nRow++;
  }
  sqlite3_finalize(s);
  for (; i < n; i++) assert_false(aLive[i]);
  /* exact scan (no k): the nearest row to row 5's vector is itself, and
  ** annex_knn (batch) agrees */
  for (int j = 0; j < n; j++) {
    if (!aLive[j]) continue;
    s = st_prepare(db, "SELECT rowid, distance FROM t WHERE v MATCH ?1 "
                       "ORDER BY distance LIMIT 1");
    sqlite3_bind_blob(s, 1, aVec + 8 * j, 32, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_true(sqlite3_column_double(s, 1) == 0.0);
    sqlite3_finalize(s);
    s = st_prepare(db, "SELECT rowid, distance FROM annex_knn('t', ?1, 1)");
    sqlite3_bind_blob(s, 1, aVec + 8 * j, 32, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_true(sqlite3_column_double(s, 1) == 0.0);
    sqlite3_finalize(s);
    break;
  }
  (void)nRow;
}

static void test_vectors_in_index(void **state) {
  enum { N = 600 };
  static float aVec[N * 8];
  static int aLive[N];
  char *zDir = st_tempdir(), zPath[512];
  sqlite3 *db;
  sqlite3_stmt *s;
  (void)state;
  for (int i = 0; i < N * 8; i++) aVec[i] = (float)((i * 7919 + 13) % 1009) / 64.0f;
  snprintf(zPath, sizeof(zPath), "%s/v.db", zDir);
  db = st_open(zPath);
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[8], "
              "index=diskann(r=8, l_build=16, pq_bytes=4), chunk_size=64)");
  /* no vector region: valid bits + rowids only */
  s = st_prepare(db, "INSERT INTO t(rowid, v) VALUES(?, ?)");
  st_exec(db, "BEGIN");
  for (int i = 0; i < 400; i++) {
    sqlite3_bind_int64(s, 1, i + 1);
    sqlite3_bind_blob(s, 2, aVec + 8 * i, 32, SQLITE_STATIC);
    assert_int_equal(st_run(s), SQLITE_DONE);
    aLive[i] = 1;
  }
  check_vectors(db, aVec, aLive, N); /* pending, not linked yet */
  st_exec(db, "COMMIT");
  assert_int_equal(st_int(db, "SELECT max(length(data)) FROM t_chunks"),
                   64 / 8 + 8 * 64);
  check_vectors(db, aVec, aLive, N);
  /* a savepoint: keep [400, 450), lose [450, 500) */
  st_exec(db, "BEGIN");
  for (int i = 400; i < 500; i++) {
    if (i == 450) st_exec(db, "SAVEPOINT x");
    sqlite3_bind_int64(s, 1, i + 1);
    sqlite3_bind_blob(s, 2, aVec + 8 * i, 32, SQLITE_STATIC);
    assert_int_equal(st_run(s), SQLITE_DONE);
  }
  st_exec(db, "ROLLBACK TO x");
  for (int i = 400; i < 450; i++) aLive[i] = 1;
  check_vectors(db, aVec, aLive, N);
  st_exec(db, "COMMIT");
  check_vectors(db, aVec, aLive, N);
  sqlite3_finalize(s);
  /* UPDATE a vector, delete some; a rolled-back UPDATE leaves no trace */
  s = st_prepare(db, "UPDATE t SET v = ?1 WHERE rowid = 7");
  sqlite3_bind_blob(s, 1, aVec + 8 * 599, 32, SQLITE_STATIC);
  st_exec(db, "BEGIN");
  assert_int_equal(st_run(s), SQLITE_DONE);
  st_exec(db, "ROLLBACK");
  check_vectors(db, aVec, aLive, N);
  assert_int_equal(st_run(s), SQLITE_DONE);
  sqlite3_finalize(s);
  memcpy(aVec + 8 * 6, aVec + 8 * 599, 32);
  st_exec(db, "DELETE FROM t WHERE rowid %% 5 = 0");
  for (int i = 0; i < N; i++) if ((i + 1) % 5 == 0) aLive[i] = 0;
  check_vectors(db, aVec, aLive, N);
  st_integrity_ok(db, "t");
  st_exec(db, "INSERT INTO t(t) VALUES('optimize')");
  check_vectors(db, aVec, aLive, N);
  st_exec(db, "INSERT INTO t(t) VALUES('rebuild')");
  check_vectors(db, aVec, aLive, N);
  st_integrity_ok(db, "t");
  st_close(db);
  db = st_open(zPath);
  check_vectors(db, aVec, aLive, N);
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
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[4], index=diskann)");
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
  st_expect_error(db, SQLITE_ERROR, "search_list must be a positive integer",
                  "SELECT rowid FROM t WHERE v MATCH '[0,0,0,0]' AND k = 2 "
                  "AND search_list = 0");
  st_expect_error(db, SQLITE_ERROR, "need a MATCH",
                  "SELECT rowid FROM t WHERE search_list = 10");
  st_expect_error(db, SQLITE_ERROR, "cannot be written",
                  "INSERT INTO t(rowid, v, search_list) VALUES(9, '[0,0,0,0]', "
                  "3)");
  /* insert then delete inside one transaction: never returned */
  st_exec(db, "BEGIN; INSERT INTO t(rowid, v) VALUES(4, '[0,0,0,0]'); "
              "DELETE FROM t WHERE rowid = 4; COMMIT");
  assert_int_equal(st_knn(db, "SELECT rowid FROM t WHERE v MATCH ?1 AND "
                              "k = ?2", q, 16, 1, aRowid, NULL, 10), 1);
  assert_int_equal(aRowid[0], 1);
  /* defensive mode: the graph's shadow table refuses direct writes */
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)0);
  st_expect_error(db, 0, NULL, "DELETE FROM t_diskann");
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
  assert_string_equal(zPhase, "diskann build");
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
  create_and_load(db, &d, "diskann(r=16, l_build=32)");
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
  assert_int_equal(log.nLast, 3 * d.nBase); /* two passes, then writes */
  assert_int_equal(log.nTotal, 3 * d.nBase);
  assert_int_equal(log.nInfo, log.nCall);
  st_progress_finish(log.dbOther, db, zDir);
  free_set(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_edges),
      cmocka_unit_test(test_vectors_in_index),
      cmocka_unit_test(test_progress),
      cmocka_unit_test(test_recall_sift5k),
      cmocka_unit_test(test_cosine),
      cmocka_unit_test(test_reopen),
      cmocka_unit_test(test_rollback),
      cmocka_unit_test(test_delete_optimize),
      cmocka_unit_test(test_filtered),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
