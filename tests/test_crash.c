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
** The same for index=hnsw, index=ivf (flat, nlist=4, trained by the
** commit that reaches 156 rows) and index=diskann (r=12, l_build=32,
** pq_bytes=8; its node records in T_diskann hold the only copy of the
** vectors): the child also runs 'optimize' and 'rebuild' / 'train' in
** their own transactions and UPDATEs vectors, and the table stops growing at
** CAP rows (then each batch deletes as many as it inserts). After each
** kill, besides the checks above (k-NN equal to brute force for flat and
** ivf), a k-NN through the index is compared with the exact answer
** computed here in double precision: every row returned exists with that
** distance, and recall@10 (by distance) is at least 0.9 for hnsw
** (ef_search=200) and diskann (search_list=200), and 1 for ivf with every
** list probed (flat codes score exactly).
**
** Kills: 16 per journal mode by default (a few seconds), 12 per journal
** mode for each index kind; ANNEX_CRASH_LONG=1 runs 200 per journal mode
** and kind (several minutes). ANNEX_CRASH_ONLY=<cmocka pattern> (e.g.
** test_crash_diskann) runs only the tests it names.
*/
#include <math.h>
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

enum { D = 16, BATCH = 50, K = 10, CAP = 3000 };

/* The table's index: none (flat), hnsw, ivf, diskann. */
typedef enum ekind { KIND_FLAT, KIND_HNSW, KIND_IVF, KIND_DISKANN } ekind;
static const char *const g_azCreate[] = {
    "CREATE VIRTUAL TABLE IF NOT EXISTS t USING annex(v float[16], tag "
    "integer, chunk_size=32)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS t USING annex(v float[16], tag "
    "integer, chunk_size=32, index=hnsw(m=8, ef_construction=64))",
    "CREATE VIRTUAL TABLE IF NOT EXISTS t USING annex(v float[16], tag "
    "integer, chunk_size=32, index=ivf(nlist=4))",
    "CREATE VIRTUAL TABLE IF NOT EXISTS t USING annex(v float[16], tag "
    "integer, chunk_size=32, index=diskann(r=12, l_build=32, pq_bytes=8))",
};
static const char *const g_azKind[] = {"flat", "hnsw", "ivf", "diskann"};
/* check_ann's query per kind: generous knobs (ivf: every list probed) */
static const char *const g_azAnnSql[] = {
    "",
    "SELECT rowid, distance FROM t WHERE v MATCH ? AND k = 10 AND "
    "ef_search = 200",
    "SELECT rowid, distance FROM t WHERE v MATCH ? AND k = 10 AND nprobe = 4",
    "SELECT rowid, distance FROM t WHERE v MATCH ? AND k = 10 AND "
    "search_list = 200",
};

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
static void child_write(const char *zPath, int bWal, ekind eKind,
                        unsigned seed) {
  sqlite3 *db = open_db(zPath);
  sqlite3_stmt *pIns;
  float v[D];
  sqlite3_exec(db, bWal ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE",
               0, 0, 0);
  sqlite3_exec(db, g_azCreate[eKind], 0, 0, 0);
  if (sqlite3_prepare_v2(db, "INSERT INTO t(v, tag) VALUES(?, ?)", -1, &pIns,
                         0) != SQLITE_OK) {
    _exit(3);
  }
  for (unsigned n = 0;; n++) {
    sqlite3_exec(db, "BEGIN", 0, 0, 0);
    if (eKind != KIND_FLAT) { /* at CAP rows: as many out as in */
      sqlite3_exec(db, "DELETE FROM t WHERE rowid IN (SELECT rowid FROM t "
                       "ORDER BY rowid LIMIT (SELECT CASE WHEN count(*) >= "
                       "3000 THEN 50 ELSE 0 END FROM t))", 0, 0, 0);
    }
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
    if (eKind != KIND_FLAT && n % 4 == 1) {
      /* vectors move: each onto the next row's vector. (Moving them all
      ** onto one vector, as this did first, piles up dozens of identical
      ** vectors: the degenerate case of graph indexes, whose recall then
      ** measures the data, not crash safety.) */
      sqlite3_exec(db, "UPDATE t SET v = (SELECT u.v FROM t AS u WHERE "
                       "u.rowid > t.rowid ORDER BY u.rowid LIMIT 1) "
                       "WHERE rowid % 29 = 3 AND rowid < "
                       "(SELECT max(rowid) FROM t)", 0, 0, 0);
    }
    sqlite3_exec(db, "COMMIT", 0, 0, 0);
    if (eKind != KIND_FLAT && n % 5 == 4) {
      sqlite3_exec(db, "INSERT INTO t(t) VALUES('optimize')", 0, 0, 0);
    }
    if (eKind != KIND_FLAT && n % 11 == 10) {
      sqlite3_exec(db, eKind == KIND_IVF ? "INSERT INTO t(t) VALUES('train')"
                                         : "INSERT INTO t(t) VALUES('rebuild')",
                   0, 0, 0);
    }
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

/* k-NN through the index vs the exact answer computed here: every row
** returned exists at the distance it has; recall@K by distance. */
static void check_ann(sqlite3 *db, ekind eKind, unsigned *pSeed,
                      int *pnHit, int *pnWant) {
  sqlite3_stmt *pAll, *pKnn;
  int n = 0, nCap = 1024;
  int64_t *aId = malloc(sizeof(int64_t) * (size_t)nCap);
  float(*aVec)[D] = malloc(sizeof(float[D]) * (size_t)nCap);
  double *aD = NULL;
  float q[D];
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT rowid, v FROM t", -1, &pAll,
                                      0), SQLITE_OK);
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
  aD = malloc(sizeof(double) * (size_t)(n + 1));
  assert_int_equal(sqlite3_prepare_v2(db, g_azAnnSql[eKind], -1, &pKnn, 0),
                   SQLITE_OK);
  for (int iq = 0; iq < 3; iq++) {
    double rKth;
    int nGot = 0, nWant = n < K ? n : K;
    rand_vec(pSeed, q);
    for (int r = 0; r < n; r++) {
      double d = 0;
      for (int c = 0; c < D; c++) d += ((double)aVec[r][c] - q[c]) * ((double)aVec[r][c] - q[c]);
      aD[r] = sqrt(d);
    }
    /* the K-th smallest exact distance (partial selection) */
    rKth = -1;
    {
      double *aS = malloc(sizeof(double) * (size_t)(n + 1));
      memcpy(aS, aD, sizeof(double) * (size_t)n);
      for (int i = 0; i < nWant; i++) {
        int iMin = i;
        for (int j = i + 1; j < n; j++) if (aS[j] < aS[iMin]) iMin = j;
        double t = aS[i]; aS[i] = aS[iMin]; aS[iMin] = t;
        rKth = aS[i];
      }
      free(aS);
    }
    sqlite3_bind_blob(pKnn, 1, q, sizeof(q), SQLITE_STATIC);
    while (sqlite3_step(pKnn) == SQLITE_ROW) {
      int64_t id = sqlite3_column_int64(pKnn, 0);
      double d = sqlite3_column_double(pKnn, 1);
      int r = 0;
      while (r < n && aId[r] != id) r++;
      if (r == n) fail_msg("%s k-NN after a crash: row %lld does not exist",
                           g_azKind[eKind], (long long)id);
      if (fabs(d - aD[r]) > 1e-4 * (1 + aD[r])) {
        fail_msg("%s k-NN after a crash: row %lld at %.6f, its vector is at "
                 "%.6f", g_azKind[eKind], (long long)id, d, aD[r]);
      }
      if (aD[r] <= rKth + 1e-4 * (1 + rKth)) (*pnHit)++;
      nGot++;
    }
    if (sqlite3_reset(pKnn) != SQLITE_OK) {
      fail_msg("%s k-NN after a crash: %s", g_azKind[eKind], sqlite3_errmsg(db));
    }
    if (nGot != nWant) {
      fail_msg("%s k-NN after a crash: %d rows of %d", g_azKind[eKind], nGot,
               nWant);
    }
    *pnWant += nWant;
  }
  sqlite3_finalize(pKnn);
  free(aD);
  free(aId);
  free(aVec);
}

static void check_after_crash(const char *zPath, unsigned *pSeed,
                              ekind eKind, int *pnHit, int *pnWant) {
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
    /* ivf probes every list by default here (nlist=4 < nprobe=16): exact;
    ** the graph indexes are approximate (check_ann) */
    if (eKind == KIND_FLAT || eKind == KIND_IVF) check_knn(db, pSeed);
    if (eKind != KIND_FLAT) check_ann(db, eKind, pSeed, pnHit, pnWant);
  }
  sqlite3_close(db);
}

static void run_mode(int bWal, ekind eKind) {
  char zDir[] = "/tmp/annex-crash-XXXXXX";
  char zPath[64];
  const char *zLong = getenv("ANNEX_CRASH_LONG");
  int nKill = (zLong && atoi(zLong)) ? 200 : eKind == KIND_FLAT ? 16 : 12;
  int nHit = 0, nWant = 0;
  unsigned seed = 12345u + (unsigned)bWal + 101u * (unsigned)eKind;
  assert_non_null(mkdtemp(zDir));
  snprintf(zPath, sizeof(zPath), "%s/crash.db", zDir);
  for (int i = 0; i < nKill; i++) {
    pid_t pid = fork();
    int status;
    assert_true(pid >= 0);
    if (pid == 0) child_write(zPath, bWal, eKind, seed + (unsigned)i * 7919u);
    /* index kinds: longer, so that commands and training are reached */
    usleep((useconds_t)(5000 + rand_r(&seed) % (eKind == KIND_FLAT ? 60000
                                                                    : 400000)));
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status)) fail_msg("writer exited early (status %d)", status);
    check_after_crash(zPath, &seed, eKind, &nHit, &nWant);
  }
  if (nWant > 0) {
    double r = (double)nHit / nWant;
    printf("# %s %s: recall@%d %.4f over %d queries\n", g_azKind[eKind],
           bWal ? "WAL" : "rollback journal", K, r, nWant / K);
    if (r < (eKind == KIND_IVF ? 0.999 : 0.9)) {
      fail_msg("%s recall after crashes %.4f", g_azKind[eKind], r);
    }
  }
  {
    sqlite3 *db = open_db(zPath);
    /* (a writer slowed down, under valgrind, may never have created t) */
    int bTable = int_of(db, "SELECT count(*) FROM sqlite_schema WHERE name "
                            "= 't'") == 1;
    printf("# %s %s: %d kills survived, %lld rows at the end\n",
           g_azKind[eKind], bWal ? "WAL" : "rollback journal", nKill,
           bTable ? int_of(db, "SELECT count(*) FROM t") : 0LL);
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
  run_mode(0, KIND_FLAT);
}

static void test_crash_wal(void **state) {
  (void)state;
  run_mode(1, KIND_FLAT);
}

static void test_crash_hnsw(void **state) {
  (void)state;
  run_mode(0, KIND_HNSW);
  run_mode(1, KIND_HNSW);
}

static void test_crash_ivf(void **state) {
  (void)state;
  run_mode(0, KIND_IVF);
  run_mode(1, KIND_IVF);
}

static void test_crash_diskann(void **state) {
  (void)state;
  run_mode(0, KIND_DISKANN);
  run_mode(1, KIND_DISKANN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crash_rollback_journal),
      cmocka_unit_test(test_crash_wal),
      cmocka_unit_test(test_crash_hnsw),
      cmocka_unit_test(test_crash_ivf),
      cmocka_unit_test(test_crash_diskann),
  };
  /* ANNEX_CRASH_ONLY=test_crash_ivf (a cmocka pattern) runs one kind */
  if (getenv("ANNEX_CRASH_ONLY")) cmocka_set_test_filter(getenv("ANNEX_CRASH_ONLY"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
