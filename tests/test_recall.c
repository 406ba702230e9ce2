/*
** test_recall.c — exact k-NN through SQL against the shared datasets'
** ground truth (../shared/data, computed by brute force in double precision
** by a separate tool, never by annex).
**
** For each dataset: load base.fvecs into an annex table (rowid = row + 1),
** run every query with k = 10 and k = 100, and require for every query that
**  - k rows come back, sorted by distance;
**  - each returned row's true distance (recomputed here in double) is
**    within the k-th ground-truth distance (tie-tolerant recall = 1, as
**    ../shared/data/README.md defines it);
**  - each returned distance equals the true distance to float precision.
** The data folder comes from $ANNEX_DATA_DIR (set by ctest).
** $ANNEX_RECALL_MAX_QUERIES caps the queries per dataset (the ARM64 run
** under qemu, about 60x slower at float SIMD, sets it to 200).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "annex.h"

/* An .fvecs or .ivecs file: n rows of d 4-byte values. */
typedef struct vecs {
  int n, d;
  void *a; /* n * d values */
} vecs;

static int read_vecs(const char *zDir, const char *zSet, const char *zFile,
                     vecs *v) {
  char zPath[1024];
  FILE *f;
  long sz;
  int32_t d;
  snprintf(zPath, sizeof(zPath), "%s/%s/%s", zDir, zSet, zFile);
  f = fopen(zPath, "rb");
  if (f == NULL) return -1;
  if (fread(&d, 4, 1, f) != 1 || d <= 0) {
    fclose(f);
    return -1;
  }
  fseek(f, 0, SEEK_END);
  sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  v->d = d;
  v->n = (int)(sz / (4 * (d + 1)));
  v->a = malloc((size_t)v->n * (size_t)d * 4);
  for (int i = 0; i < v->n; i++) {
    int32_t dd;
    if (fread(&dd, 4, 1, f) != 1 || dd != d ||
        fread((char *)v->a + (size_t)i * d * 4, 4, (size_t)d, f) != (size_t)d) {
      fclose(f);
      return -1;
    }
  }
  fclose(f);
  return 0;
}

static const char *data_dir(void) {
  const char *z = getenv("ANNEX_DATA_DIR");
  return z ? z : "../shared/data";
}

static int max_queries(int n) {
  const char *z = getenv("ANNEX_RECALL_MAX_QUERIES");
  int m = z ? atoi(z) : 0;
  return m > 0 && m < n ? m : n;
}

static double true_dist(const float *a, const float *b, int d) {
  double s = 0;
  for (int i = 0; i < d; i++) {
    double t = (double)a[i] - (double)b[i];
    s += t * t;
  }
  return sqrt(s);
}

static void load_table(sqlite3 *db, const vecs *base) {
  sqlite3_stmt *s;
  char zSql[128];
  snprintf(zSql, sizeof(zSql),
           "CREATE VIRTUAL TABLE t USING annex(v float[%d])", base->d);
  assert_int_equal(sqlite3_exec(db, zSql, 0, 0, 0), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "BEGIN", 0, 0, 0), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t(rowid, v) "
                                          "VALUES(?, ?)", -1, &s, 0),
                   SQLITE_OK);
  for (int i = 0; i < base->n; i++) {
    sqlite3_bind_int64(s, 1, i + 1);
    sqlite3_bind_blob(s, 2, (float *)base->a + (size_t)i * base->d,
                      base->d * 4, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_reset(s);
  }
  sqlite3_finalize(s);
  assert_int_equal(sqlite3_exec(db, "COMMIT", 0, 0, 0), SQLITE_OK);
}

/* Check one query's k results; returns exact id matches (for the log). */
static int check_query(sqlite3_stmt *s, const vecs *base, const float *q,
                       const int32_t *gt, const float *gtDist, int k) {
  int n = 0, nExact = 0;
  double prev = -1, kth = gtDist[k - 1];
  while (sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0) - 1;
    double got = sqlite3_column_double(s, 1), want;
    assert_true(id >= 0 && id < base->n);
    want = true_dist((const float *)base->a + (size_t)id * base->d, q, base->d);
    if (want > kth * (1 + 1e-6) + 1e-6) {
      fail_msg("row %lld at rank %d has distance %.6f beyond the k-th true "
               "distance %.6f", id, n, want, kth);
    }
    assert_true(fabs(got - want) <= 1e-4 * (want + 1));
    assert_true(got >= prev);
    prev = got;
    for (int j = 0; j < k; j++) nExact += gt[j] == id;
    n++;
  }
  assert_int_equal(n, k);
  sqlite3_reset(s);
  return nExact;
}

static void run_dataset(const char *zSet) {
  vecs base, query, gt, gtd;
  sqlite3 *db;
  sqlite3_stmt *s;
  const char *zDir = data_dir();
  static const int aK[] = {10, 100};
  if (read_vecs(zDir, zSet, "base.fvecs", &base) ||
      read_vecs(zDir, zSet, "query.fvecs", &query) ||
      read_vecs(zDir, zSet, "groundtruth.ivecs", &gt) ||
      read_vecs(zDir, zSet, "groundtruth_dist.fvecs", &gtd)) {
    fail_msg("cannot read dataset %s under %s (set ANNEX_DATA_DIR)", zSet,
             zDir);
  }
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  assert_int_equal(sqlite3_annex_init(db, NULL, NULL), SQLITE_OK);
  load_table(db, &base);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT rowid, distance FROM t "
                                          "WHERE v MATCH ? AND k = ?",
                                      -1, &s, 0),
                   SQLITE_OK);
  for (size_t ik = 0; ik < sizeof(aK) / sizeof(aK[0]); ik++) {
    long nExact = 0;
    int nQuery = max_queries(query.n);
    for (int i = 0; i < nQuery; i++) {
      const float *q = (const float *)query.a + (size_t)i * query.d;
      sqlite3_bind_blob(s, 1, q, query.d * 4, SQLITE_STATIC);
      sqlite3_bind_int(s, 2, aK[ik]);
      nExact += check_query(s, &base, q, (const int32_t *)gt.a + (size_t)i * gt.d,
                            (const float *)gtd.a + (size_t)i * gtd.d, aK[ik]);
    }
    printf("# %s k=%d: %d queries, tie-tolerant recall 1.000, exact id "
           "matches %.4f\n", zSet, aK[ik], nQuery,
           (double)nExact / ((double)nQuery * aK[ik]));
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  free(base.a);
  free(query.a);
  free(gt.a);
  free(gtd.a);
}

static void test_sift5k(void **state) {
  (void)state;
  run_dataset("sift5k");
}

static void test_mnist10k(void **state) {
  (void)state;
  run_dataset("mnist10k");
}

static void test_digits1797(void **state) {
  (void)state;
  run_dataset("digits1797"); /* many exact ties */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sift5k),
      cmocka_unit_test(test_mnist10k),
      cmocka_unit_test(test_digits1797),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
