/*
** test_crash.c — crash safety: a writer killed with SIGKILL at random
** moments leaves a database that opens, passes both integrity checks, and
** answers k-NN exactly.
**
** A child process loads an annex table in transactions of BATCH rows (an
** insert-only load, then deletes and updates mixed in) until it is killed;
** the parent kills it after a random delay, reopens the file, and checks:
** PRAGMA integrity_check, annex's integrity-check, that the row count is
** whole transactions only (atomic commits), and that k-NN queries through
** SQL return exactly the brute-force top k computed here from the stored
** vectors. Rollback-journal and WAL modes alternate.
**
** Kills: 16 per journal mode by default (a few seconds);
** ANNEX_CRASH_LONG=1 runs 200 per journal mode (about 30 s).
*/
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "annex.h"

enum { D = 16, BATCH = 50, K = 10 };

static sqlite3 *open_db(const char *zPath) {
  sqlite3 *db;
  if (sqlite3_open(zPath, &db) != SQLITE_OK) fail_msg("open %s", zPath);
  assert_int_equal(sqlite3_annex_init(db, NULL, NULL), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  return db;
}

static void rand_vec(unsigned *pSeed, float *v) {
  for (int j = 0; j < D; j++) v[j] = (float)(rand_r(pSeed) % 2000) / 100.0f;
}

/* The child: write until killed. Never returns. */
static void child_write(const char *zPath, int bWal, unsigned seed) {
  sqlite3 *db = open_db(zPath);
  sqlite3_stmt *pIns;
  float v[D];
  sqlite3_exec(db, bWal ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE",
               0, 0, 0);
  sqlite3_exec(db, "CREATE VIRTUAL TABLE IF NOT EXISTS t USING annex("
                   "v float[16], tag integer, chunk_size=32)", 0, 0, 0);
  if (sqlite3_prepare_v2(db, "INSERT INTO t(v, tag) VALUES(?, ?)", -1, &pIns,
                         0) != SQLITE_OK) {
    _exit(3);
  }
  for (unsigned n = 0;; n++) {
    sqlite3_exec(db, "BEGIN", 0, 0, 0);
    for (int i = 0; i < BATCH; i++) {
      rand_vec(&seed, v);
      sqlite3_bind_blob(pIns, 1, v, sizeof(v), SQLITE_STATIC);
      sqlite3_bind_int(pIns, 2, (int)(seed % 7));
      if (sqlite3_step(pIns) != SQLITE_DONE) _exit(4);
      sqlite3_reset(pIns);
    }
    if (n % 3 == 2) { /* deletes and updates, balanced by count */
      sqlite3_exec(db, "UPDATE t SET tag = tag + 1 WHERE rowid % 13 = 0;"
                       "DELETE FROM t WHERE rowid IN (SELECT rowid FROM t "
                       "ORDER BY rowid LIMIT 10);"
                       "INSERT INTO t(v, tag) SELECT v, tag FROM t "
                       "ORDER BY rowid DESC LIMIT 10;",
                   0, 0, 0);
    }
    sqlite3_exec(db, "COMMIT", 0, 0, 0);
  }
}

static long long int_of(sqlite3 *db, const char *zSql) {
  sqlite3_stmt *s;
  long long v = -1;
  if (sqlite3_prepare_v2(db, zSql, -1, &s, 0) != SQLITE_OK) {
    fail_msg("%s: %s", zSql, sqlite3_errmsg(db));
  }
  if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

/* k-NN through SQL must equal brute force over the stored vectors. */
static void check_knn(sqlite3 *db, unsigned *pSeed) {
  sqlite3_stmt *pAll, *pKnn;
  int n = 0, nCap = 1024;
  /* (aBestId only orders equal distances; the check is on distances) */
  int64_t *aId = malloc(sizeof(int64_t) * (size_t)nCap);
  float(*aVec)[D] = malloc(sizeof(float[D]) * (size_t)nCap);
  float q[D];
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT rowid, v FROM t", -1, &pAll,
                                      0),
                   SQLITE_OK);
  while (sqlite3_step(pAll) == SQLITE_ROW) {
    if (n == nCap) {
      nCap *= 2;
      aId = realloc(aId, sizeof(int64_t) * (size_t)nCap);
      aVec = realloc(aVec, sizeof(float[D]) * (size_t)nCap);
    }
    aId[n] = sqlite3_column_int64(pAll, 0);
    assert_int_equal(sqlite3_column_bytes(pAll, 1), (int)sizeof(aVec[0]));
    memcpy(aVec[n], sqlite3_column_blob(pAll, 1), sizeof(aVec[0]));
    n++;
  }
  sqlite3_finalize(pAll);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT rowid FROM t WHERE v MATCH ? "
                                          "AND k = 10",
                                      -1, &pKnn, 0),
                   SQLITE_OK);
  for (int iq = 0; iq < 3; iq++) {
    double aBest[K];
    int64_t aBestId[K];
    int nBest = 0, i = 0;
    rand_vec(pSeed, q);
    for (int r = 0; r < n; r++) { /* insertion into a sorted top K */
      double d = 0;
      int j;
      for (int c = 0; c < D; c++) d += ((double)aVec[r][c] - q[c]) * ((double)aVec[r][c] - q[c]);
      for (j = nBest; j > 0 && (aBest[j - 1] > d ||
                                (aBest[j - 1] == d && aBestId[j - 1] > aId[r]));
           j--) {
        if (j < K) {
          aBest[j] = aBest[j - 1];
          aBestId[j] = aBestId[j - 1];
        }
      }
      if (j < K) {
        aBest[j] = d;
        aBestId[j] = aId[r];
        if (nBest < K) nBest++;
      }
    }
    sqlite3_bind_blob(pKnn, 1, q, sizeof(q), SQLITE_STATIC);
    while (sqlite3_step(pKnn) == SQLITE_ROW) {
      /* Rows at equal distance may come in either order (annex computes
      ** in float, this in double): compare the distance at each rank. */
      int64_t id = sqlite3_column_int64(pKnn, 0);
      double d = -1;
      for (int r = 0; r < n; r++) {
        if (aId[r] != id) continue;
        d = 0;
        for (int c = 0; c < D; c++) d += ((double)aVec[r][c] - q[c]) * ((double)aVec[r][c] - q[c]);
      }
      if (i >= nBest || d < 0 || d - aBest[i] > 1e-4 * (aBest[i] + 1) ||
          aBest[i] - d > 1e-4 * (aBest[i] + 1)) {
        fail_msg("k-NN after a crash: rank %d is row %lld at %.6f, brute "
                 "force has %.6f there", i, (long long)id, d,
                 i < nBest ? aBest[i] : -1.0);
      }
      i++;
    }
    assert_int_equal(i, nBest);
    sqlite3_reset(pKnn);
  }
  sqlite3_finalize(pKnn);
  free(aId);
  free(aVec);
}

static void check_after_crash(const char *zPath, unsigned *pSeed) {
  sqlite3 *db = open_db(zPath);
  char *zErr = NULL;
  sqlite3_stmt *s;
  long long nRows;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, 0),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
  sqlite3_finalize(s);
  if (int_of(db, "SELECT count(*) FROM sqlite_schema WHERE name = 't'") == 1) {
    if (sqlite3_exec(db, "INSERT INTO t(t) VALUES('integrity-check')", 0, 0,
                     &zErr) != SQLITE_OK) {
      fail_msg("annex integrity-check after a crash: %s", zErr);
    }
    /* Every transaction adds BATCH rows net: a partial one would show. */
    nRows = int_of(db, "SELECT count(*) FROM t");
    if (nRows % BATCH != 0) {
      fail_msg("%lld rows: a transaction was half applied", nRows);
    }
    check_knn(db, pSeed);
  }
  sqlite3_close(db);
}

static void run_mode(int bWal) {
  char zDir[] = "/tmp/annex-crash-XXXXXX";
  char zPath[64];
  const char *zLong = getenv("ANNEX_CRASH_LONG");
  int nKill = (zLong && atoi(zLong)) ? 200 : 16;
  unsigned seed = 12345u + (unsigned)bWal;
  assert_non_null(mkdtemp(zDir));
  snprintf(zPath, sizeof(zPath), "%s/crash.db", zDir);
  for (int i = 0; i < nKill; i++) {
    pid_t pid = fork();
    int status;
    assert_true(pid >= 0);
    if (pid == 0) child_write(zPath, bWal, seed + (unsigned)i * 7919u);
    usleep((useconds_t)(5000 + rand_r(&seed) % 60000));
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status)) fail_msg("writer exited early (status %d)", status);
    check_after_crash(zPath, &seed);
  }
  {
    sqlite3 *db = open_db(zPath);
    printf("# %s: %d kills survived, %lld rows at the end\n",
           bWal ? "WAL" : "rollback journal", nKill,
           int_of(db, "SELECT count(*) FROM t"));
    sqlite3_close(db);
  }
  {
    char zCmd[128];
    snprintf(zCmd, sizeof(zCmd), "rm -rf %s", zDir);
    if (system(zCmd) != 0) fail_msg("cannot remove %s", zDir);
  }
}

static void test_crash_rollback_journal(void **state) {
  (void)state;
  run_mode(0);
}

static void test_crash_wal(void **state) {
  (void)state;
  run_mode(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crash_rollback_journal),
      cmocka_unit_test(test_crash_wal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
