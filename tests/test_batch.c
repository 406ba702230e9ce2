/*
** test_batch.c — annex_knn(table, queries, k), the batch k-NN function.
**
** The batch path computes distances by matrix product and re-scores its
** candidates, so its answers must be identical (same rowids, same order,
** bit-identical distances) to one single-vector query per query vector.
** Checked on random data for l2, ip and cosine, on real data (sift5k), with
** deleted rows, with every query input form, and for its errors.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "annex.h"

static sqlite3 *open_db(void) {
  sqlite3 *db;
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  assert_int_equal(sqlite3_annex_init(db, NULL, NULL), SQLITE_OK);
  return db;
}

static void exec(sqlite3 *db, const char *zSql) {
  char *zErr = NULL;
  if (sqlite3_exec(db, zSql, NULL, NULL, &zErr) != SQLITE_OK) {
    fail_msg("%s: %s", zSql, zErr);
  }
}

/* Random vectors with many near-equal distances: a coarse grid whose
** values (multiples of 0.1) make float products round. */
static float *random_vectors(int n, int d, unsigned seed) {
  float *a = malloc(sizeof(float) * (size_t)n * d);
  srand(seed);
  for (int i = 0; i < n * d; i++) a[i] = ((float)(rand() % 7) - 3.0f) * 0.1f;
  return a;
}

static void load(sqlite3 *db, const float *a, int n, int d) {
  sqlite3_stmt *s;
  exec(db, "BEGIN");
  assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t(rowid, v) "
                                          "VALUES(?, ?)", -1, &s, 0),
                   SQLITE_OK);
  for (int i = 0; i < n; i++) {
    sqlite3_bind_int(s, 1, i + 1);
    sqlite3_bind_blob(s, 2, a + (size_t)i * d, d * 4, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_reset(s);
  }
  sqlite3_finalize(s);
  exec(db, "COMMIT");
}

/* Compare annex_knn over Q queries with Q single queries. */
static void check_batch_equals_single(sqlite3 *db, const float *aQ, int nQ,
                                      int d, int k) {
  sqlite3_stmt *pBatch, *pOne;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT query, rowid, distance FROM "
                                          "annex_knn('t', ?, ?)",
                                      -1, &pBatch, 0),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT rowid, distance FROM t "
                                          "WHERE v MATCH ? AND k = ?",
                                      -1, &pOne, 0),
                   SQLITE_OK);
  sqlite3_bind_blob(pBatch, 1, aQ, nQ * d * 4, SQLITE_STATIC);
  sqlite3_bind_int(pBatch, 2, k);
  sqlite3_bind_int(pOne, 2, k);
  for (int q = 0; q < nQ; q++) {
    sqlite3_bind_blob(pOne, 1, aQ + (size_t)q * d, d * 4, SQLITE_STATIC);
    while (sqlite3_step(pOne) == SQLITE_ROW) {
      assert_int_equal(sqlite3_step(pBatch), SQLITE_ROW);
      assert_int_equal(sqlite3_column_int(pBatch, 0), q);
      assert_int_equal(sqlite3_column_int64(pBatch, 1),
                       sqlite3_column_int64(pOne, 0));
      assert_true(sqlite3_column_double(pBatch, 2) ==
                  sqlite3_column_double(pOne, 1));
    }
    assert_int_equal(sqlite3_reset(pOne), SQLITE_OK);
  }
  assert_int_equal(sqlite3_step(pBatch), SQLITE_DONE);
  sqlite3_finalize(pBatch);
  sqlite3_finalize(pOne);
}

static void run_metric(const char *zMetric) {
  enum { N = 3000, D = 24, Q = 40 };
  sqlite3 *db = open_db();
  float *a = random_vectors(N, D, 5), *q = random_vectors(Q, D, 6);
  char zSql[128];
  snprintf(zSql, sizeof(zSql), "CREATE VIRTUAL TABLE t USING annex(v "
           "float[%d] distance=%s, chunk_size=256)", D, zMetric);
  exec(db, zSql);
  load(db, a, N, D);
  exec(db, "DELETE FROM t WHERE rowid % 7 = 0");
  check_batch_equals_single(db, q, Q, D, 1);
  check_batch_equals_single(db, q, Q, D, 10);
  check_batch_equals_single(db, q, Q, D, 250);
  check_batch_equals_single(db, q, Q, D, 5000); /* k above the row count */
  sqlite3_close(db);
  free(a);
  free(q);
}

static void test_l2(void **state) {
  (void)state;
  run_metric("l2");
}
static void test_ip(void **state) {
  (void)state;
  run_metric("ip");
}
static void test_cosine(void **state) {
  (void)state;
  run_metric("cosine");
}

/* Real data: SIFT descriptors have large norms (about 512), the hard case
** for the expanded l2 form's cancellation. */
static void test_sift5k(void **state) {
  const char *zDir = getenv("ANNEX_DATA_DIR");
  char zPath[1024];
  FILE *f;
  float *a, *q;
  int n = 0, d = 128;
  sqlite3 *db;
  (void)state;
  snprintf(zPath, sizeof(zPath), "%s/sift5k/base.fvecs",
           zDir ? zDir : "../shared/data");
  f = fopen(zPath, "rb");
  if (f == NULL) fail_msg("cannot open %s (set ANNEX_DATA_DIR)", zPath);
  a = malloc(sizeof(float) * 4800 * 128);
  for (int32_t dd; n < 4800 && fread(&dd, 4, 1, f) == 1; n++) {
    assert_int_equal(dd, 128);
    assert_int_equal(fread(a + (size_t)n * d, 4, 128, f), 128);
  }
  fclose(f);
  db = open_db();
  exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[128])");
  load(db, a, n, d);
  q = malloc(sizeof(float) * 100 * 128);
  for (int i = 0; i < 100 * 128; i++) q[i] = a[i * 37 % (n * d)] * 1.001f + 0.37f;
  check_batch_equals_single(db, q, 100, d, 10);
  sqlite3_close(db);
  free(a);
  free(q);
}

static int count_rows(sqlite3 *db, const char *zSql) {
  sqlite3_stmt *s;
  int n = 0;
  assert_int_equal(sqlite3_prepare_v2(db, zSql, -1, &s, 0), SQLITE_OK);
  while (sqlite3_step(s) == SQLITE_ROW) n++;
  sqlite3_finalize(s);
  return n;
}

static void test_query_forms(void **state) {
  sqlite3 *db = open_db();
  (void)state;
  exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[2]);"
           "INSERT INTO t(rowid, v) VALUES (1,'[0,0]'),(2,'[1,0]'),(3,'[5,5]');"
           "CREATE TABLE qs(vec); INSERT INTO qs(rowid, vec) VALUES "
           "(10, '[0,0]'), (20, '[5,4]');");
  assert_int_equal(count_rows(db, "SELECT * FROM annex_knn('t', "
                                  "'[[0,0],[5,4],[1,1]]', 2)"),
                   6);
  {
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT query, rowid FROM "
                                            "annex_knn('t', 'qs', 1)",
                                        -1, &s, 0),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 10);
    assert_int_equal(sqlite3_column_int(s, 1), 1);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 20);
    assert_int_equal(sqlite3_column_int(s, 1), 3);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
  }
  assert_int_equal(count_rows(db, "SELECT * FROM annex_knn('main.t', "
                                  "annex_vector('[1,1]'), 10)"),
                   3);
  sqlite3_close(db);
}

static void expect_error(sqlite3 *db, const char *zSql, const char *zNeedle) {
  sqlite3_stmt *s = NULL;
  int rc = sqlite3_prepare_v2(db, zSql, -1, &s, 0);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    }
  }
  if (rc == SQLITE_DONE) fail_msg("%s: no error", zSql);
  if (strstr(sqlite3_errmsg(db), zNeedle) == NULL) {
    fail_msg("%s: error \"%s\" lacks \"%s\"", zSql, sqlite3_errmsg(db),
             zNeedle);
  }
  sqlite3_finalize(s);
}

static void test_errors(void **state) {
  sqlite3 *db = open_db();
  (void)state;
  exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[2]);"
           "CREATE VIRTUAL TABLE b USING annex(v bit[8]);"
           "INSERT INTO t(rowid, v) VALUES (1, '[0,0]');");
  expect_error(db, "SELECT * FROM annex_knn('nope', '[[0,0]]', 1)",
               "no annex table named nope");
  expect_error(db, "SELECT * FROM annex_knn('t', '[[0,0]]', 0)",
               "k must be a positive integer");
  expect_error(db, "SELECT * FROM annex_knn('t', '[[0,0]]', 'x')",
               "k must be a positive integer");
  expect_error(db, "SELECT * FROM annex_knn('t', x'0000803f00', 1)",
               "multiple of 8 bytes");
  expect_error(db, "SELECT * FROM annex_knn('t', '[[0,0],[1]]', 1)",
               "the vector has 1 dimensions, the column expects 2");
  expect_error(db, "SELECT * FROM annex_knn('t', x'0000c07f0000803f', 1)",
               "NaN");
  expect_error(db, "SELECT * FROM annex_knn('t', 'no_such_table', 1)",
               "no such table");
  expect_error(db, "SELECT * FROM annex_knn('b', '[[0,0]]', 1)",
               "supports float vectors");
  expect_error(db, "SELECT * FROM annex_knn('t')", "usage: annex_knn");
  sqlite3_close(db);
}

/* The parallel single-query scan (annex_threads > 1, tables over 16 MiB)
** must return exactly what the serial scan returns. */
static void test_parallel_scan(void **state) {
  enum { N = 36000, D = 128, Q = 12 };
  sqlite3 *db = open_db();
  float *a = random_vectors(N, D, 9), *q = random_vectors(Q, D, 10);
  sqlite3_stmt *s;
  int64_t aSerial[Q][20];
  double aDist[Q][20];
  (void)state;
  exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[128])");
  load(db, a, N, D);
  exec(db, "DELETE FROM t WHERE rowid % 5 = 0");
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT rowid, distance FROM t "
                                          "WHERE v MATCH ? AND k = 20",
                                      -1, &s, 0),
                   SQLITE_OK);
  for (int pass = 0; pass < 3; pass++) {
    exec(db, pass == 0 ? "SELECT annex_threads(1)"
             : pass == 1 ? "SELECT annex_threads(2)"
                         : "SELECT annex_threads(3)");
    for (int i = 0; i < Q; i++) {
      int n = 0;
      sqlite3_bind_blob(s, 1, q + (size_t)i * D, D * 4, SQLITE_STATIC);
      while (sqlite3_step(s) == SQLITE_ROW) {
        if (pass == 0) {
          aSerial[i][n] = sqlite3_column_int64(s, 0);
          aDist[i][n] = sqlite3_column_double(s, 1);
        } else {
          assert_int_equal(sqlite3_column_int64(s, 0), aSerial[i][n]);
          assert_true(sqlite3_column_double(s, 1) == aDist[i][n]);
        }
        n++;
      }
      assert_int_equal(n, 20);
      sqlite3_reset(s);
    }
  }
  exec(db, "SELECT annex_threads(0)");
  sqlite3_finalize(s);
  sqlite3_close(db);
  free(a);
  free(q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_l2),          cmocka_unit_test(test_ip),
      cmocka_unit_test(test_cosine),      cmocka_unit_test(test_sift5k),
      cmocka_unit_test(test_query_forms), cmocka_unit_test(test_errors),
      cmocka_unit_test(test_parallel_scan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
