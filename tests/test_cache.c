/*
** test_cache.c — the chunk cache of exact scans (ext/vtab/chunk_cache.c).
**
** A scan that reads chunks from the connection's cache must answer exactly
** what a scan of the file answers, whatever happened since the cache was
** filled. Every k-NN here is checked against a double-precision brute force
** over a mirror of the table kept by the test (sqltest.h's st_ref_rank),
** never against annex itself:
**   - the first scan only marks the table; the second fills the cache with
**     every chunk, byte sizes as annex_info reports them;
**   - another connection's INSERT, DELETE and vector UPDATE are seen;
**   - this connection's own writes are seen inside the transaction (the
**     cache steps aside), and gone after ROLLBACK or ROLLBACK TO;
**   - the budget: 0 turns it off, a small budget caches part of the table;
**   - filtered scans read the compact metadata from the cached chunks;
**   - a table above the per-scan fill is cached over several scans;
**   - annex_knn batches and the two-thread scan read it too.
*/
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "annex.h"
#include "sqltest.h"

#define K 10
#define MAXROW 70000

/* The test's own copy of table t: what a correct annex must answer from. */
typedef struct mirror {
  int nDim;
  int n;                    /* entries used (rowid = index + 1) */
  float *a;                 /* n x nDim */
  sqlite3_int64 *aRowid;
  unsigned char *aLive;
  int *aTag;                /* metadata column `tag` (0..4) */
} mirror;

static unsigned int g_seed = 12345;
static float frand(void) {
  g_seed = g_seed * 1103515245u + 12345u;
  return (float)((g_seed >> 8) & 0xffff) / 65536.0f - 0.5f;
}

static mirror *mirror_new(int nDim) {
  mirror *m = calloc(1, sizeof(*m));
  m->nDim = nDim;
  m->a = malloc(sizeof(float) * (size_t)nDim * MAXROW);
  m->aRowid = malloc(sizeof(sqlite3_int64) * MAXROW);
  m->aLive = calloc(MAXROW, 1);
  m->aTag = calloc(MAXROW, sizeof(int));
  return m;
}

static void mirror_free(mirror *m) {
  free(m->a);
  free(m->aRowid);
  free(m->aLive);
  free(m->aTag);
  free(m);
}

/* What a rollback restores: the row count and the live flags. */
typedef struct mirror_mark {
  int n;
  unsigned char aLive[MAXROW];
} mirror_mark;

static void mark_take(const mirror *m, mirror_mark *k) {
  k->n = m->n;
  memcpy(k->aLive, m->aLive, MAXROW);
}

static void mark_restore(mirror *m, const mirror_mark *k) {
  m->n = k->n;
  memcpy(m->aLive, k->aLive, MAXROW);
}

static void random_vec(int nDim, float *v) {
  for (int i = 0; i < nDim; i++) v[i] = frand();
}

/* Insert n random rows into t through db, and into the mirror. */
static void add_rows(sqlite3 *db, mirror *m, int n) {
  sqlite3_stmt *s =
      st_prepare(db, "INSERT INTO t(rowid, v, tag) VALUES(?1, ?2, ?3)");
  assert_true(m->n + n <= MAXROW);
  for (int i = 0; i < n; i++) {
    int j = m->n++;
    float *v = m->a + (size_t)j * m->nDim;
    random_vec(m->nDim, v);
    m->aRowid[j] = j + 1;
    m->aLive[j] = 1;
    m->aTag[j] = j % 5;
    sqlite3_bind_int64(s, 1, j + 1);
    sqlite3_bind_blob(s, 2, v, 4 * m->nDim, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, m->aTag[j]);
    assert_int_equal(st_run(s), SQLITE_DONE);
  }
  sqlite3_finalize(s);
}

static void del_row(sqlite3 *db, mirror *m, int j) {
  st_exec(db, "DELETE FROM t WHERE rowid = %lld", m->aRowid[j]);
  m->aLive[j] = 0;
}

static void update_row(sqlite3 *db, mirror *m, int j) {
  sqlite3_stmt *s = st_prepare(db, "UPDATE t SET v = ?1 WHERE rowid = ?2");
  float *v = m->a + (size_t)j * m->nDim;
  random_vec(m->nDim, v);
  sqlite3_bind_blob(s, 1, v, 4 * m->nDim, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, m->aRowid[j]);
  assert_int_equal(st_run(s), SQLITE_DONE);
  sqlite3_finalize(s);
}

/* k-NN of nQuery random queries (with `tag = iTag` when iTag >= 0),
** each checked against the mirror's brute force. */
static void check(sqlite3 *db, const mirror *m, int nQuery, int iTag,
                  const char *zWhat) {
  float *q = malloc(sizeof(float) * (size_t)m->nDim);
  st_hit *aRef = malloc(sizeof(st_hit) * (size_t)(m->n ? m->n : 1));
  unsigned char *aUse = malloc((size_t)(m->n ? m->n : 1));
  sqlite3_int64 aRowid[K];
  double aDist[K];
  char zSql[160], zName[96];
  snprintf(zSql, sizeof(zSql), "SELECT rowid, distance FROM t WHERE v MATCH "
           "?1 AND k = ?2%s", iTag >= 0 ? " AND tag = ?3" : "");
  for (int j = 0; j < m->n; j++) {
    aUse[j] = m->aLive[j] && (iTag < 0 || m->aTag[j] == iTag);
  }
  for (int i = 0; i < nQuery; i++) {
    sqlite3_stmt *s = st_prepare(db, "%s", zSql);
    int nRef, nGot;
    random_vec(m->nDim, q);
    sqlite3_bind_blob(s, 1, q, 4 * m->nDim, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, K);
    if (iTag >= 0) sqlite3_bind_int(s, 3, iTag);
    nGot = st_collect(s, aRowid, aDist, K);
    sqlite3_finalize(s);
    nRef = st_ref_rank(ST_FLOAT, ST_L2, m->nDim, q, m->a, m->aRowid, aUse,
                       m->n, aRef);
    snprintf(zName, sizeof(zName), "%s, query %d", zWhat, i);
    st_check_knn(aRowid, aDist, nGot, aRef, nRef, nRef < K ? nRef : K, 1e-4,
                 zName);
  }
  free(q);
  free(aRef);
  free(aUse);
}

static sqlite3_int64 info_int(sqlite3 *db, const char *zKey) {
  return st_int(db, "SELECT value FROM annex_info('t') WHERE key = %Q", zKey);
}

/* Bytes of one chunk of t: valid bits, rowids, one metadata column, the
** vectors (storage.c's layout). */
static sqlite3_int64 chunk_bytes(sqlite3 *db, int nDim) {
  sqlite3_int64 n = info_int(db, "chunk_size");
  return n / 8 + 8 * n + 9 * n + 4 * (sqlite3_int64)nDim * n;
}

static sqlite3 *open_table(const char *zPath, int nDim, int nChunk) {
  sqlite3 *db = st_open(zPath);
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[%d], tag integer, "
              "chunk_size=%d)", nDim, nChunk);
  return db;
}

/* The first scan fills nothing, the second fills the cache with every
** chunk; later scans answer the same from it. */
static void test_fill_and_reuse(void **state) {
  sqlite3 *db = open_table(NULL, 16, 64);
  mirror *m = mirror_new(16);
  (void)state;
  add_rows(db, m, 2000);
  assert_int_equal(info_int(db, "cache_bytes"), 0);
  check(db, m, 1, -1, "first scan");
  assert_int_equal(info_int(db, "cache_bytes"), 0); /* it only marks */
  check(db, m, 2, -1, "second scan");
  assert_int_equal(info_int(db, "cache_bytes"),
                   info_int(db, "chunks") * chunk_bytes(db, 16));
  assert_int_equal(info_int(db, "cache_used"), info_int(db, "cache_bytes"));
  check(db, m, 5, -1, "from the cache");
  check(db, m, 5, 3, "filtered, from the cache");
  st_close(db);
  /* a closed table gives its bytes back to the process-wide budget */
  db = open_table(NULL, 16, 64);
  assert_int_equal(info_int(db, "cache_used"), 0);
  st_close(db);
  mirror_free(m);
}

/* Another connection's writes are seen at once. */
static void test_other_connection(void **state) {
  char *zDir = st_tempdir();
  char zPath[512];
  sqlite3 *db1, *db2;
  mirror *m = mirror_new(8);
  (void)state;
  snprintf(zPath, sizeof(zPath), "%s/cache.db", zDir);
  db1 = open_table(zPath, 8, 32);
  db2 = st_open(zPath);
  add_rows(db1, m, 1000);
  check(db1, m, 3, -1, "filled");
  add_rows(db2, m, 300);
  check(db1, m, 3, -1, "after the other's INSERT");
  for (int j = 0; j < 1300; j += 3) del_row(db2, m, j);
  check(db1, m, 3, -1, "after the other's DELETE");
  st_exec(db2, "BEGIN");
  for (int j = 1; j < 1300; j += 7) update_row(db2, m, j);
  st_exec(db2, "COMMIT");
  check(db1, m, 3, -1, "after the other's UPDATE");
  check(db1, m, 3, 2, "filtered, after the other's UPDATE");
  assert_int_equal(info_int(db1, "cache_bytes"),
                   info_int(db1, "chunks") * chunk_bytes(db1, 8));
  st_close(db2);
  st_close(db1);
  st_rmdir(zDir);
  free(zDir);
  mirror_free(m);
}

/* This connection's writes: seen inside the transaction, gone after a
** rollback, kept after a commit. */
static void test_own_transaction(void **state) {
  sqlite3 *db = open_table(NULL, 8, 32);
  mirror *m = mirror_new(8);
  mirror_mark *k = malloc(sizeof(*k));
  (void)state;
  add_rows(db, m, 800);
  check(db, m, 2, -1, "filled");
  mark_take(m, k);

  st_exec(db, "BEGIN");
  add_rows(db, m, 100);
  del_row(db, m, 5);
  check(db, m, 3, -1, "inside the transaction");
  assert_int_equal(info_int(db, "cache_bytes"), 0);
  st_exec(db, "ROLLBACK");
  mark_restore(m, k);
  check(db, m, 3, -1, "after ROLLBACK");

  st_exec(db, "BEGIN");
  add_rows(db, m, 50);
  st_exec(db, "SAVEPOINT s");
  mark_take(m, k);
  add_rows(db, m, 50);
  del_row(db, m, 7);
  check(db, m, 2, -1, "inside the savepoint");
  st_exec(db, "ROLLBACK TO s");
  mark_restore(m, k);
  check(db, m, 2, -1, "after ROLLBACK TO");
  st_exec(db, "COMMIT");
  check(db, m, 3, -1, "after COMMIT");
  assert_true(info_int(db, "cache_bytes") > 0);

  /* A ROLLBACK TO does not end the transaction's writes: a scan after it
  ** must not fill the cache from the transaction's rows, or a later
  ** ROLLBACK TO would leave the cache ahead of or behind the file (the
  ** first version keyed this on the change-counter bump, which ROLLBACK TO
  ** resets, and test_sql's savepoint test caught it). */
  st_exec(db, "BEGIN");
  add_rows(db, m, 20);
  st_exec(db, "SAVEPOINT s1");
  mark_take(m, k);
  add_rows(db, m, 20);
  st_exec(db, "ROLLBACK TO s1");
  mark_restore(m, k);
  check(db, m, 2, -1, "after ROLLBACK TO s1");
  add_rows(db, m, 40);
  st_exec(db, "SAVEPOINT s2");
  mark_take(m, k);
  del_row(db, m, 3);
  add_rows(db, m, 5);
  st_exec(db, "ROLLBACK TO s2");
  mark_restore(m, k);
  check(db, m, 4, -1, "after ROLLBACK TO s2");
  assert_int_equal(info_int(db, "cache_bytes"), 0);
  st_exec(db, "COMMIT");
  check(db, m, 3, -1, "after the second COMMIT");
  st_close(db);
  free(k);
  mirror_free(m);
}

/* annex_cache_size: 0 keeps nothing, a small budget part of the table. */
static void test_budget(void **state) {
  sqlite3 *db = open_table(NULL, 16, 64);
  mirror *m = mirror_new(16);
  sqlite3_int64 nChunk;
  (void)state;
  add_rows(db, m, 3000);
  nChunk = chunk_bytes(db, 16);
  assert_int_equal(st_int(db, "SELECT annex_cache_size(0)"), 0);
  check(db, m, 3, -1, "budget 0");
  assert_int_equal(info_int(db, "cache_bytes"), 0);
  assert_int_equal(st_int(db, "SELECT annex_cache_size(%lld)", 10 * nChunk),
                   10 * nChunk);
  check(db, m, 3, -1, "budget of 10 chunks");
  assert_int_equal(info_int(db, "cache_bytes"), 10 * nChunk);
  check(db, m, 3, 1, "filtered, budget of 10 chunks");
  /* lowering the budget to 0 drops what is held at the next scan */
  st_int(db, "SELECT annex_cache_size(0)");
  check(db, m, 1, -1, "budget back to 0");
  assert_int_equal(info_int(db, "cache_bytes"), 0);
  assert_true(st_int(db, "SELECT annex_cache_size(-1)") > 0);
  st_expect_error(db, 0, "expected an integer",
                  "SELECT annex_cache_size('lots')");
  st_close(db);
  mirror_free(m);
}

/* annex_knn over cached chunks answers each query as a single query does.
** chunk_size=8 with a metadata column puts the vectors at byte 137 of the
** blob: the cache must still hand them over float-aligned (batch.c reads
** float arrays; UBSan in CI caught the first version). */
static void batch_case(int nChunk) {
  sqlite3 *db = open_table(NULL, 16, nChunk);
  mirror *m = mirror_new(16);
  float q[3 * 16];
  add_rows(db, m, 1500);
  check(db, m, 2, -1, "fill");
  random_vec(3 * 16, q);
  for (int pass = 0; pass < 2; pass++) {
    sqlite3_stmt *s = st_prepare(
        db, "SELECT query, rowid, distance FROM annex_knn('t', ?1, %d)", K);
    sqlite3_int64 aRowid[3][K];
    int aN[3] = {0, 0, 0};
    if (pass == 1) st_int(db, "SELECT annex_cache_size(0)");
    sqlite3_bind_blob(s, 1, q, (int)sizeof(q), SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
      int iq = sqlite3_column_int(s, 0);
      assert_true(iq >= 0 && iq < 3 && aN[iq] < K);
      aRowid[iq][aN[iq]++] = sqlite3_column_int64(s, 1);
    }
    assert_int_equal(sqlite3_finalize(s), SQLITE_OK);
    for (int iq = 0; iq < 3; iq++) {
      sqlite3_int64 aOne[K];
      int n = st_knn(db, "SELECT rowid FROM t WHERE v MATCH ?1 AND k = ?2",
                     q + 16 * iq, 16 * 4, K, aOne, NULL, K);
      assert_int_equal(n, aN[iq]);
      for (int i = 0; i < n; i++) assert_int_equal(aOne[i], aRowid[iq][i]);
    }
  }
  st_int(db, "SELECT annex_cache_size(-1)");
  st_close(db);
  mirror_free(m);
}

static void test_batch(void **state) {
  (void)state;
  batch_case(64);
  batch_case(8);
}

/* Two threads score cached chunks in place (tables of 16 MiB and more). */
static void test_two_threads(void **state) {
  sqlite3 *db = open_table(NULL, 256, 256);
  mirror *m = mirror_new(256);
  (void)state;
  st_exec(db, "BEGIN");
  add_rows(db, m, 17000); /* 17.4 MB of vectors */
  st_exec(db, "COMMIT");
  st_int(db, "SELECT annex_threads(2)");
  check(db, m, 2, -1, "two threads, filling");
  check(db, m, 3, -1, "two threads, cached");
  check(db, m, 2, 4, "two threads, cached, filtered");
  st_int(db, "SELECT annex_threads(0)");
  check(db, m, 2, -1, "one thread, cached");
  st_close(db);
  mirror_free(m);
}

/* The first scan fills nothing; a table above the per-scan fill (64 MiB)
** is then cached over several scans, each answer exact. */
static void test_fill_per_scan(void **state) {
  sqlite3 *db = open_table(NULL, 256, 256);
  mirror *m = mirror_new(256);
  sqlite3_int64 nAll, nFirst;
  (void)state;
  st_exec(db, "BEGIN");
  add_rows(db, m, 70000); /* 71.7 MB of vectors */
  st_exec(db, "COMMIT");
  nAll = info_int(db, "chunks") * chunk_bytes(db, 256);
  check(db, m, 1, -1, "first scan");
  assert_int_equal(info_int(db, "cache_bytes"), 0); /* it only marks */
  check(db, m, 1, -1, "second scan");
  nFirst = info_int(db, "cache_bytes");
  assert_true(nFirst > 0 && nFirst <= (64 << 20) && nFirst < nAll);
  check(db, m, 1, -1, "third scan");
  assert_int_equal(info_int(db, "cache_bytes"), nAll);
  check(db, m, 2, 0, "cached, filtered");
  st_close(db);
  mirror_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fill_and_reuse),
      cmocka_unit_test(test_other_connection),
      cmocka_unit_test(test_own_transaction),
      cmocka_unit_test(test_budget),
      cmocka_unit_test(test_batch),
      cmocka_unit_test(test_two_threads),
      cmocka_unit_test(test_fill_per_scan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
