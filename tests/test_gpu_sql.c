/*
** test_gpu_sql.c — the device knob and the CUDA plugin through SQL (gpu.c).
**
** Always (CI has no GPU):
**   - device= table option and per-query device column: parsing, errors,
**     a user column named "device", writes refused;
**   - the fallback: with the plugin absent (ANNEX_CUDA_PLUGIN=/nonexistent,
**     ctest's test_gpu_fallback) or no device, device=gpu fails saying why
**     and device=auto answers on the CPU, as device=cpu does; annex_info
**     reports the plugin status and what the last query ran on.
** With a CUDA device (the H200, scripts/gpu-sql-bench.sh), else skipped
** with "SKIP: ..." on stdout:
**   - GPU vs CPU equality, rowid for rowid and distance for distance, on
**     random tables (l2, cosine, ip; deleted rows, duplicates, zero
**     vectors), k from 1 to 1000, filters, radius, after writes, inside a
**     write transaction, and the batch function annex_knn;
**   - sift5k (shared dataset): device=gpu against its ground truth;
**   - injected faults (allocation, launch, lost device): same answers from
**     the CPU, counted in annex_info's gpu_fallbacks;
**   - index=ivf (flat codes): the probed lists scanned on the GPU under
**     device=auto, with the CPU's answers (test_gpu_ivf).
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

#include "gpu/annex_cuda.h"
#include "sqltest.h"

/* gpu.c's test hook (declared in ext/vtab/annex_int.h). */
void annex_gpu_test_inject(int eOp, long iArg);

#define MAXK 1000

static uint64_t g_seed = 88172645463325252ull;
static float frand(void) {
  g_seed ^= g_seed << 13;
  g_seed ^= g_seed >> 7;
  g_seed ^= g_seed << 17;
  return (float)((g_seed >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void rand_vec(float *a, int d) {
  for (int i = 0; i < d; i++) a[i] = frand();
}

/* CREATE zName(emb float[d] distance=zMetric, cat integer) zOpt, n random
** rows; every 13th deleted; rows 5..15 duplicate row 1; row 7 is zero. */
static void make_table(sqlite3 *db, const char *zName, int d,
                       const char *zMetric, const char *zOpt, int n) {
  float *a = malloc(sizeof(float) * (size_t)d), *a1 = NULL;
  sqlite3_stmt *s;
  st_exec(db, "CREATE VIRTUAL TABLE \"%w\" USING annex(emb float[%d] "
          "distance=%s, cat integer%s%s)", zName, d, zMetric,
          zOpt ? ", " : "", zOpt ? zOpt : "");
  st_exec(db, "BEGIN");
  s = st_prepare(db, "INSERT INTO \"%w\"(rowid, emb, cat) VALUES(?, ?, ?)",
                 zName);
  a1 = malloc(sizeof(float) * (size_t)d);
  for (int i = 1; i <= n; i++) {
    rand_vec(a, d);
    if (i == 1) memcpy(a1, a, sizeof(float) * (size_t)d);
    if (i >= 5 && i <= 15) memcpy(a, a1, sizeof(float) * (size_t)d);
    if (i == 7) memset(a, 0, sizeof(float) * (size_t)d);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)i * 3 + 1000);
    sqlite3_bind_blob(s, 2, a, d * 4, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, i % 5);
    assert_int_equal(st_run(s), SQLITE_DONE);
  }
  sqlite3_finalize(s);
  st_exec(db, "DELETE FROM \"%w\" WHERE (rowid - 1000) %% 39 = 0", zName);
  st_exec(db, "COMMIT");
  free(a);
  free(a1);
}

/* Rows of one k-NN; zDevice NULL leaves the column out. */
static int knn(sqlite3 *db, const char *zTab, const float *q, int d, int k,
               const char *zDevice, const char *zWhere, sqlite3_int64 *aId,
               double *aDist) {
  char *zSql = sqlite3_mprintf(
      "SELECT rowid, distance FROM \"%w\" WHERE emb MATCH ?1 AND k = ?2 "
      "%s%Q %s", zTab, zDevice ? "AND device = " : "", zDevice,
      zWhere ? zWhere : "");
  int n;
  if (zDevice == NULL) {
    sqlite3_free(zSql);
    zSql = sqlite3_mprintf("SELECT rowid, distance FROM \"%w\" WHERE emb "
                           "MATCH ?1 AND k = ?2 %s", zTab,
                           zWhere ? zWhere : "");
  }
  n = st_knn(db, zSql, q, d * 4, k, aId, aDist, MAXK);
  sqlite3_free(zSql);
  return n;
}

static char *info(sqlite3 *db, const char *zTab, const char *zKey) {
  return st_text(db, "SELECT coalesce((SELECT value FROM annex_info(%Q) "
                 "WHERE key = %Q), '')", zTab, zKey);
}

static void expect_info(sqlite3 *db, const char *zTab, const char *zKey,
                        const char *zPrefix) {
  char *z = info(db, zTab, zKey);
  if (strncmp(z, zPrefix, strlen(zPrefix)) != 0) {
    fail_msg("annex_info(%s).%s = '%s', want '%s...'", zTab, zKey, z, zPrefix);
  }
  sqlite3_free(z);
}

/* The same query on device zDev and on the CPU: identical rows. */
static void same_answer(sqlite3 *db, const char *zTab, const float *q, int d,
                        int k, const char *zDev, const char *zWhere,
                        const char *zWhat) {
  static sqlite3_int64 aId[MAXK], aIdC[MAXK];
  static double aD[MAXK], aDC[MAXK];
  int nc = knn(db, zTab, q, d, k, "cpu", zWhere, aIdC, aDC);
  int n = knn(db, zTab, q, d, k, zDev, zWhere, aId, aD); /* last: info */
  if (n != nc) fail_msg("%s: %d rows on %s, %d on the CPU", zWhat, n, zDev, nc);
  for (int i = 0; i < n; i++) {
    if (aId[i] != aIdC[i] || aD[i] != aDC[i]) {
      fail_msg("%s: row %d is %lld (%.9g) on %s, %lld (%.9g) on the CPU",
               zWhat, i, (long long)aId[i], aD[i], zDev, (long long)aIdC[i],
               aDC[i]);
    }
  }
}

/* A vector as JSON text (sqlite3_free it). */
static char *json_of(const float *a, int d) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  for (int i = 0; i < d; i++) {
    sqlite3_str_appendf(s, "%c%.9g", i ? ',' : '[', (double)a[i]);
  }
  sqlite3_str_appendall(s, "]");
  return sqlite3_str_finish(s);
}

/* 1 when device=gpu answers here; else prints SKIP with the reason. */
static int gpu_present(const char *zTest) {
  sqlite3 *db = st_open(NULL);
  float q[4] = {1, 2, 3, 4};
  sqlite3_stmt *s;
  int rc;
  st_exec(db, "CREATE VIRTUAL TABLE p USING annex(emb float[4])");
  st_exec(db, "INSERT INTO p(emb) VALUES('[1,2,3,4]')");
  s = st_prepare(db, "SELECT rowid FROM p WHERE emb MATCH ? AND k = 1 AND "
                 "device = 'gpu'");
  sqlite3_bind_blob(s, 1, q, 16, SQLITE_STATIC);
  rc = st_run(s);
  if (rc != SQLITE_DONE) {
    printf("SKIP: %s: no GPU here (%s)\n", zTest, sqlite3_errmsg(db));
  }
  sqlite3_finalize(s);
  st_close(db);
  return rc == SQLITE_DONE;
}

static void test_knobs(void **state) {
  sqlite3 *db = st_open(NULL);
  float q[4] = {0, 0, 0, 1};
  sqlite3_int64 aId[4];
  (void)state;
  st_expect_error(db, 0, "bad device in \"device=tpu\"", "CREATE VIRTUAL "
                  "TABLE x USING annex(emb float[4], device=tpu)");
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(emb float[4], device=CPU)");
  st_exec(db, "INSERT INTO t(emb) VALUES('[1,2,3,4]'), ('[0,0,0,1]')");
  expect_info(db, "t", "device", "cpu");
  st_expect_error(db, 0, "device must be 'auto', 'cpu' or 'gpu'",
                  "SELECT rowid FROM t WHERE emb MATCH '[0,0,0,1]' AND k = 1 "
                  "AND device = 'tpu'");
  st_expect_error(db, 0, "need a MATCH", "SELECT rowid FROM t WHERE "
                  "device = 'gpu'");
  st_expect_error(db, 0, "device is a query-only column",
                  "INSERT INTO t(emb, device) VALUES('[1,1,1,1]', 'gpu')");
  assert_int_equal(knn(db, "t", q, 4, 1, "auto", NULL, aId, NULL), 1);
  assert_int_equal(aId[0], 2);
  expect_info(db, "t", "last_device", "cpu");
  /* a user column named device: no hidden column, the option still works */
  st_exec(db, "CREATE VIRTUAL TABLE u USING annex(emb float[4], device text, "
          "device=cpu)");
  st_exec(db, "INSERT INTO u(emb, device) VALUES('[0,0,0,1]', 'phone')");
  assert_int_equal(st_int(db, "SELECT count(*) FROM u WHERE emb MATCH "
                          "'[0,0,0,1]' AND k = 1 AND device = 'phone'"), 1);
  /* int8 tables: device=gpu says the GPU does not take them */
  st_exec(db, "CREATE VIRTUAL TABLE i8 USING annex(emb int8[4])");
  st_exec(db, "INSERT INTO i8(emb) VALUES(annex_int8('[1,2,3,4]'))");
  st_expect_error(db, 0, "float vectors", "SELECT rowid FROM i8 WHERE emb "
                  "MATCH annex_int8('[1,2,3,4]') AND k = 1 AND device='gpu'");
  st_close(db);
}

/* annex_knn(zTab, nQ random queries, k) equals nQ CPU single queries
** (asked first, so that annex_info describes the batch). */
static void batch_same(sqlite3 *db, const char *zTab, int nQ, int d, int k,
                       const char *zWhat) {
  float *aQ = malloc(sizeof(float) * (size_t)nQ * (size_t)d);
  sqlite3_int64 *aIdC = malloc(sizeof(sqlite3_int64) * (size_t)nQ * k);
  double *aDC = malloc(sizeof(double) * (size_t)nQ * k);
  int *anC = malloc(sizeof(int) * (size_t)nQ), *anGot = calloc(nQ, sizeof(int));
  sqlite3_stmt *s;
  for (int i = 0; i < nQ * d; i++) aQ[i] = frand();
  for (int i = 0; i < nQ; i++) {
    anC[i] = knn(db, zTab, aQ + (size_t)i * d, d, k, "cpu", NULL,
                 aIdC + (size_t)i * k, aDC + (size_t)i * k);
  }
  s = st_prepare(db, "SELECT query, rowid, distance FROM annex_knn(%Q, ?, %d)",
                 zTab, k);
  sqlite3_bind_blob(s, 1, aQ, nQ * d * 4, SQLITE_STATIC);
  for (;;) {
    int rc = sqlite3_step(s), iQ, j;
    if (rc != SQLITE_ROW) {
      if (rc != SQLITE_DONE) fail_msg("%s: %s", zWhat, sqlite3_errmsg(db));
      break;
    }
    iQ = sqlite3_column_int(s, 0);
    if (iQ < 0 || iQ >= nQ || anGot[iQ] >= anC[iQ]) {
      fail_msg("%s: unexpected row for query %d", zWhat, iQ);
    }
    j = anGot[iQ]++;
    if (sqlite3_column_int64(s, 1) != aIdC[(size_t)iQ * k + j] ||
        sqlite3_column_double(s, 2) != aDC[(size_t)iQ * k + j]) {
      fail_msg("%s: query %d row %d: %lld (%.9g), CPU %lld (%.9g)", zWhat, iQ,
               j, sqlite3_column_int64(s, 1), sqlite3_column_double(s, 2),
               (long long)aIdC[(size_t)iQ * k + j], aDC[(size_t)iQ * k + j]);
    }
  }
  for (int i = 0; i < nQ; i++) {
    if (anGot[i] != anC[i]) {
      fail_msg("%s: query %d: %d rows, CPU %d", zWhat, i, anGot[i], anC[i]);
    }
  }
  sqlite3_finalize(s);
  free(aQ);
  free(aIdC);
  free(aDC);
  free(anC);
  free(anGot);
}

/* device=auto on a table big enough for the GPU: the CPU answers when the
** GPU cannot, and device=gpu says why. */
static void test_fallback(void **state) {
  const char *zEnv = getenv("ANNEX_CUDA_PLUGIN");
  int bMissing = zEnv && strcmp(zEnv, "/nonexistent") == 0;
  int bGpu = !bMissing && gpu_present("test_fallback (GPU part)");
  sqlite3 *db = st_open(NULL);
  float q[128];
  (void)state;
  make_table(db, "big", 128, "l2", NULL, 10000); /* 1.28M floats: auto */
  for (int i = 0; i < 3; i++) {
    rand_vec(q, 128);
    same_answer(db, "big", q, 128, 10, "auto", NULL, "fallback auto");
    same_answer(db, "big", q, 128, 10, NULL, NULL, "fallback default");
  }
  expect_info(db, "big", "last_device", bGpu ? "gpu" : "cpu");
  /* a filter the compact metadata can judge: the GPU under auto too */
  same_answer(db, "big", q, 128, 10, "auto", "AND cat = 3 AND rowid > 5000",
              "auto, filtered");
  expect_info(db, "big", "last_device", bGpu ? "gpu" : "cpu");
  batch_same(db, "big", 20, 128, 10, "fallback batch");
  if (!bGpu) {
    st_expect_error(db, 0, "device=gpu: ", "SELECT rowid FROM big WHERE emb "
                    "MATCH (SELECT emb FROM big LIMIT 1) AND k = 3 AND "
                    "device = 'gpu'");
    printf("fallback: device=gpu refused with: %s\n", sqlite3_errmsg(db));
    expect_info(db, "big", "gpu_plugin",
                bMissing ? "missing: dlopen(/nonexistent)" : "");
    expect_info(db, "big", "last_device", "cpu");
    st_exec(db, "CREATE VIRTUAL TABLE bg USING annex(emb float[4], "
            "device=gpu)");
    st_exec(db, "INSERT INTO bg(emb) VALUES('[1,2,3,4]')");
    st_expect_error(db, 0, "annex_knn: device=gpu: ", "SELECT * FROM "
                    "annex_knn('bg', '[[1,2,3,4]]', 1)");
  }
  st_close(db);
}

/* A filter that needs SQL (a text range): device=gpu builds its bitmap
** through SQL, device=auto leaves it to the CPU. */
static void text_filters(sqlite3 *db) {
  float q[8];
  sqlite3_stmt *s;
  st_exec(db, "CREATE VIRTUAL TABLE tx USING annex(emb float[8], name text)");
  st_exec(db, "BEGIN");
  s = st_prepare(db, "INSERT INTO tx(emb, name) VALUES(?, ?)");
  for (int i = 0; i < 3000; i++) {
    char zName[16];
    rand_vec(q, 8);
    snprintf(zName, sizeof(zName), "n%c%d", 'a' + i % 26, i);
    sqlite3_bind_blob(s, 1, q, 32, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, zName, -1, SQLITE_TRANSIENT);
    assert_int_equal(st_run(s), SQLITE_DONE);
  }
  sqlite3_finalize(s);
  st_exec(db, "COMMIT");
  rand_vec(q, 8);
  same_answer(db, "tx", q, 8, 20, "gpu", "AND name > 'nm'", "text range");
  expect_info(db, "tx", "last_device", "gpu");
  same_answer(db, "tx", q, 8, 20, "gpu", "AND name = 'nc2'", "text =");
  same_answer(db, "tx", q, 8, 20, "auto", "AND name > 'nm'", "text, auto");
  expect_info(db, "tx", "last_device", "cpu");
  st_exec(db, "DROP TABLE tx");
}

/* GPU vs CPU on random tables of each metric. */
static void test_gpu_equal(void **state) {
  static const char *azMetric[] = {"l2", "cosine", "ip"};
  static const int aK[] = {1, 10, 100, 1000};
  float q[37];
  (void)state;
  if (!gpu_present("test_gpu_equal")) skip();
  for (int m = 0; m < 3; m++) {
    sqlite3 *db = st_open(NULL);
    char zWhat[64];
    make_table(db, "r", 37, azMetric[m], NULL, 20011);
    for (int ik = 0; ik < 4; ik++) {
      for (int i = 0; i < 8; i++) {
        snprintf(zWhat, sizeof(zWhat), "%s k=%d q%d", azMetric[m], aK[ik], i);
        rand_vec(q, 37);
        if (i == 0) memset(q, 0, sizeof(q)); /* zero query */
        same_answer(db, "r", q, 37, aK[ik], "gpu", NULL, zWhat);
      }
    }
    expect_info(db, "r", "last_device", "gpu");
    rand_vec(q, 37);
    same_answer(db, "r", q, 37, 50, "gpu", "AND cat = 2", "filter cat");
    same_answer(db, "r", q, 37, 20, "gpu", "AND rowid IN (1003, 1006, 9999, "
                "1000000)", "filter rowid IN");
    same_answer(db, "r", q, 37, 20, "gpu", "AND cat = 7", "filter none");
    same_answer(db, "r", q, 37, 100, "gpu", "AND distance < 0.3",
                "radius");
    expect_info(db, "r", "last_device", "gpu");
    if (m == 0) text_filters(db);
    /* writes: the device copy follows them */
    {
      sqlite3_int64 aId[5];
      int n = knn(db, "r", q, 37, 5, "cpu", NULL, aId, NULL);
      for (int i = 0; i < n; i++) {
        st_exec(db, "DELETE FROM r WHERE rowid = %lld", (long long)aId[i]);
      }
    }
    same_answer(db, "r", q, 37, 10, "gpu", NULL, "after delete");
    st_exec(db, "BEGIN");
    {
      char *zJson = json_of(q, 37);
      st_exec(db, "INSERT INTO r(rowid, emb, cat) VALUES(1, %Q, 1)", zJson);
      sqlite3_free(zJson);
    }
    same_answer(db, "r", q, 37, 10, "gpu", NULL, "in write txn");
    expect_info(db, "r", "last_cpu_reason", "inside a write transaction");
    st_exec(db, "COMMIT");
    same_answer(db, "r", q, 37, 10, "gpu", NULL, "after commit");
    expect_info(db, "r", "last_device", "gpu");
    st_exec(db, "DROP TABLE r");
    make_table(db, "b", 37, azMetric[m], "device=gpu", 5003);
    batch_same(db, "b", 300, 37, 10, "batch gpu");
    batch_same(db, "b", 3, 37, 100, "batch gpu, scan path");
    expect_info(db, "b", "last_device", "gpu");
    expect_info(db, "b", "gpu_fallbacks", "0");
    st_close(db);
  }
}

/* sift5k through device=gpu: the ground truth, and the CPU's answers. */
static void test_gpu_sift(void **state) {
  char *zBase = st_data_path("sift5k/base.fvecs");
  char *zQuery = st_data_path("sift5k/query.fvecs");
  char *zGt = st_data_path("sift5k/groundtruth.ivecs");
  int nBase = 0, nQ = 0, d = 0, dq = 0, nGt = 0, kGt = 0, nMiss = 0;
  float *aBase = st_load_fvecs(zBase, &nBase, &d);
  float *aQ = st_load_fvecs(zQuery, &nQ, &dq);
  int32_t *aGt = st_load_ivecs(zGt, &nGt, &kGt);
  sqlite3 *db = NULL;
  sqlite3_stmt *s;
  (void)state;
  free(zBase);
  free(zQuery);
  free(zGt);
  if (aBase == NULL || aQ == NULL || aGt == NULL) {
    printf("SKIP: test_gpu_sift: sift5k not found (ANNEX_DATA_DIR)\n");
    free(aBase);
    free(aQ);
    free(aGt);
    skip();
  }
  if (!gpu_present("test_gpu_sift")) {
    free(aBase);
    free(aQ);
    free(aGt);
    skip();
  }
  db = st_open(NULL);
  st_exec(db, "CREATE VIRTUAL TABLE s USING annex(emb float[%d])", d);
  st_exec(db, "BEGIN");
  s = st_prepare(db, "INSERT INTO s(rowid, emb) VALUES(?, ?)");
  for (int i = 0; i < nBase; i++) {
    sqlite3_bind_int64(s, 1, i);
    sqlite3_bind_blob(s, 2, aBase + (size_t)i * d, d * 4, SQLITE_STATIC);
    assert_int_equal(st_run(s), SQLITE_DONE);
  }
  sqlite3_finalize(s);
  st_exec(db, "COMMIT");
  for (int i = 0; i < nQ; i++) {
    sqlite3_int64 aId[10];
    int n = knn(db, "s", aQ + (size_t)i * d, d, 10, "gpu", NULL, aId, NULL);
    assert_int_equal(n, 10);
    for (int j = 0; j < 10; j++) nMiss += aId[j] != aGt[(size_t)i * kGt + j];
    same_answer(db, "s", aQ + (size_t)i * d, d, 10, "gpu", NULL, "sift5k");
  }
  expect_info(db, "s", "last_device", "gpu");
  printf("sift5k: %d queries on the GPU, %d of %d ranks differ from the "
         "ground truth (float32 near-ties), all equal to the CPU's\n", nQ,
         nMiss, nQ * 10);
  assert_true(nMiss <= nQ / 10);
  st_close(db);
  free(aBase);
  free(aQ);
  free(aGt);
}

static sqlite3_int64 fallbacks(sqlite3 *db, const char *zTab) {
  return st_int(db, "SELECT value FROM annex_info(%Q) WHERE key = "
                "'gpu_fallbacks'", zTab);
}

/* Injected device faults: the CPU answers the same and counts them. */
static void test_gpu_faults(void **state) {
  sqlite3 *db;
  float q[64];
  (void)state;
  if (!gpu_present("test_gpu_faults")) skip();
  db = st_open(NULL);
  make_table(db, "f", 64, "l2", NULL, 9000);
  rand_vec(q, 64);
  /* the upload's first allocation fails */
  annex_gpu_test_inject(ANNEX_CUDA_TEST_FAIL_ALLOC, 0);
  same_answer(db, "f", q, 64, 10, "gpu", NULL, "alloc fault at upload");
  assert_int_equal(fallbacks(db, "f"), 1);
  expect_info(db, "f", "last_device", "cpu");
  /* not retried until the table changes */
  same_answer(db, "f", q, 64, 10, "gpu", NULL, "after a failed upload");
  expect_info(db, "f", "last_cpu_reason", "the upload failed");
  st_exec(db, "DELETE FROM f WHERE rowid = 1003");
  same_answer(db, "f", q, 64, 10, "gpu", NULL, "upload after a change");
  expect_info(db, "f", "last_device", "gpu");
  /* a query-time allocation (the resident table is there already) */
  annex_gpu_test_inject(ANNEX_CUDA_TEST_FAIL_ALLOC, 0);
  same_answer(db, "f", q, 64, 500, "gpu", NULL, "alloc fault at query");
  annex_gpu_test_inject(ANNEX_CUDA_TEST_FAIL_ALLOC, -1); /* if still due */
  same_answer(db, "f", q, 64, 10, "gpu", NULL, "fault cancelled");
  /* a kernel launch */
  annex_gpu_test_inject(ANNEX_CUDA_TEST_FAIL_LAUNCH, 0);
  same_answer(db, "f", q, 64, 10, "gpu", NULL, "launch fault");
  expect_info(db, "f", "last_device", "cpu");
  same_answer(db, "f", q, 64, 10, "gpu", NULL, "after the launch fault");
  expect_info(db, "f", "last_device", "gpu");
  printf("faults: %lld fallbacks counted\n", (long long)fallbacks(db, "f"));
  assert_true(fallbacks(db, "f") >= 2);
  /* a lost device: this query on the CPU, then the table stays there */
  annex_gpu_test_inject(ANNEX_CUDA_TEST_LOSE_DEVICE, 0);
  same_answer(db, "f", q, 64, 10, "gpu", NULL, "lost device");
  st_expect_error(db, 0, "GPU disabled for this table", "SELECT rowid FROM f "
                  "WHERE emb MATCH (SELECT emb FROM f LIMIT 1) AND k = 3 AND "
                  "device = 'gpu'");
  expect_info(db, "f", "gpu_device", "device lost");
  st_close(db);
}

/* The last k-NN on table v ran on the GPU; else fail with the reason. */
static void expect_gpu_ran(sqlite3 *db, const char *zWhat) {
  char *z = info(db, "v", "last_device");
  if (strcmp(z, "gpu") != 0) {
    char *zWhy = info(db, "v", "last_cpu_reason");
    fail_msg("%s: ran on the %s: %s", zWhat, z, zWhy);
  }
  sqlite3_free(z);
}

static sqlite3_int64 index_searches(sqlite3 *db, const char *zTab) {
  char *z = info(db, zTab, "gpu_index"), *zS = strstr(z, "searches=");
  sqlite3_int64 n = zS ? atoll(zS + 9) : -1;
  sqlite3_free(z);
  return n;
}

/* index=ivf with flat codes: under device=auto the probed lists are
** scanned on the GPU (gpu.c's ranged table) with the CPU's answer, for
** every metric; after deletes (a new upload), inside a write transaction
** (the CPU), with a filter (the CPU), and after injected faults. */
static void test_gpu_ivf(void **state) {
  static const char *azMetric[] = {"l2", "cosine", "ip"};
  const int d = 128, n = 20000;
  float q[128];
  char zWhat[96];
  (void)state;
  if (!gpu_present("test_gpu_ivf")) skip();
  for (int im = 0; im < 3; im++) {
    sqlite3 *db = st_open(NULL);
    sqlite3_int64 n0;
    /* nlist 50: about 400 rows a list; nprobe 30 scores ~1.5M floats,
    ** above device=auto's threshold, nprobe 1 50k, below it */
    make_table(db, "v", d, azMetric[im], "index=ivf(nlist=50)", n);
    assert_int_equal(st_int(db, "SELECT value FROM annex_info('v') WHERE key "
                                "= 'ivf_trained'"), 1);
    for (int i = 0; i < 20; i++) {
      int k = i % 4 == 0 ? 1 : i % 4 == 1 ? 10 : i % 4 == 2 ? 100 : 500;
      rand_vec(q, d);
      snprintf(zWhat, sizeof(zWhat), "ivf %s query %d k=%d", azMetric[im], i, k);
      same_answer(db, "v", q, d, k, "auto", "AND nprobe = 30", zWhat);
    }
    /* a large k on uniform data can miss certification (its candidates'
    ** scores are too close to the bound): the CPU answers those */
    n0 = index_searches(db, "v");
    printf("ivf %s: %lld of 20 searches on the GPU\n", azMetric[im],
           (long long)n0);
    assert_true(n0 >= 15);
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30", "k = 10");
    expect_gpu_ran(db, "k = 10");
    n0 = index_searches(db, "v");
    /* deletes move the counter: a new upload, the same answers */
    st_exec(db, "DELETE FROM v WHERE rowid %% 7 = 0");
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30", "after deletes");
    assert_int_equal(index_searches(db, "v"), n0 + 1);
    /* inside a write transaction, and with a filter: the CPU */
    st_exec(db, "BEGIN; INSERT INTO v(emb) SELECT emb FROM v LIMIT 3");
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30", "in a write");
    expect_info(db, "v", "last_device", "cpu");
    st_exec(db, "COMMIT");
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30 AND cat = 2",
                "filtered");
    /* too little work under auto: the CPU */
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 1", "nprobe 1");
    expect_info(db, "v", "last_device", "cpu");
    /* the commit moved the counter: a new upload */
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30", "after commit");
    expect_gpu_ran(db, "after the commit");
    /* faults: the CPU answers the same and counts them */
    annex_gpu_test_inject(ANNEX_CUDA_TEST_FAIL_LAUNCH, 0);
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30", "launch fault");
    expect_info(db, "v", "last_device", "cpu");
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30", "after it");
    expect_gpu_ran(db, "after the launch fault");
    st_exec(db, "DELETE FROM v WHERE rowid = 1006");
    annex_gpu_test_inject(ANNEX_CUDA_TEST_FAIL_ALLOC, 0);
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30", "upload fault");
    assert_true(fallbacks(db, "v") >= 2);
    /* a failed upload is not retried until the table changes */
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30", "no retry");
    expect_info(db, "v", "last_cpu_reason", "the index upload failed");
    st_exec(db, "DELETE FROM v WHERE rowid = 1009");
    same_answer(db, "v", q, d, 10, "auto", "AND nprobe = 30", "re-upload");
    expect_gpu_ran(db, "re-upload");
    printf("ivf %s: %lld index searches on the GPU, all equal to the CPU's\n",
           azMetric[im], (long long)index_searches(db, "v"));
    st_close(db);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gpu_ivf),
      cmocka_unit_test(test_knobs),      cmocka_unit_test(test_fallback),
      cmocka_unit_test(test_gpu_equal),  cmocka_unit_test(test_gpu_sift),
      cmocka_unit_test(test_gpu_faults),
  };
  setvbuf(stdout, NULL, _IONBF, 0);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
