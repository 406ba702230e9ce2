/*
** test_concurrency.c — one writer process and four reader processes on the
** same WAL database.
**
** The writer commits transactions that insert 20 rows, delete 5 and move
** 5 vectors (every third also writes inside a savepoint it rolls back;
** every seventh is followed by a whole transaction rolled back). Each reader, inside one read transaction (one snapshot), runs
** a k-NN query (every other time with a metadata filter), then reads every
** row and checks that the k-NN answer equals the brute-force top k of that
** same snapshot, and that the row count is the initial count plus whole
** writer transactions (a half-applied write would break it).
**
** The same on index=hnsw, index=ivf (flat codes, nlist=4, trained by the
** commit of the initial rows) and index=diskann (r=12, l_build=48,
** pq_bytes=8) tables (test_writer_and_readers_hnsw, _ivf, _diskann): the
** writer also runs 'optimize' now and then (its own transaction; ivf also
** 'train'), and each reader's k-NN goes through the index, so it is checked
** for consistency with the snapshot instead of equality: every returned
** row exists in the snapshot (read in the same read transaction), its
** returned distance is the one computed here in double precision from that
** row's vector, rows are distinct and in order, the filter holds, an
** unfiltered query returns min(k, rows) rows, and recall@10 (by distance,
** against the exact scan of the same snapshot) averages at least 0.9 per
** reader (hnsw: default ef_search; diskann: search_list=200). ivf probes
** every list (nprobe=4) and flat codes score exactly, so each of its
** answers, filtered or not, must be the exact top k (recall 1 per query).
**
** The parent only forks: the load, the writer, the readers and the final
** integrity-check run in children (see run_writer_and_readers), each of
** which must exit 0 within 2 minutes of its end.
**
** Runs 3 s per table by default; ANNEX_CONCURRENCY_SECONDS=60 for the long
** mode; ANNEX_CONCURRENCY_ONLY=<cmocka pattern> (e.g. *_ivf) runs only the
** tests it names.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <signal.h>
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

enum { D = 16, K = 10, NET = 15, READERS = 4 };

/* The table under test: flat (exact k-NN) or an index kind. */
typedef enum ekind { KIND_FLAT, KIND_HNSW, KIND_IVF, KIND_DISKANN } ekind;
static const char *const g_azCreate[] = {
    "CREATE VIRTUAL TABLE t USING annex(v float[16], tag integer, "
    "chunk_size=64)",
    "CREATE VIRTUAL TABLE t USING annex(v float[16], tag integer, "
    "chunk_size=64, index=hnsw(m=8, ef_construction=64))",
    "CREATE VIRTUAL TABLE t USING annex(v float[16], tag integer, "
    "chunk_size=64, index=ivf(nlist=4, quantizer=flat))",
    "CREATE VIRTUAL TABLE t USING annex(v float[16], tag integer, "
    "chunk_size=64, index=diskann(r=12, l_build=48, pq_bytes=8))",
};
/* the reader's per-query knob (ivf: every list probed, hence exact) */
static const char *const g_azKnob[] = {"", "", " AND nprobe = 4",
                                       " AND search_list = 200"};
static ekind g_eKind;
static int g_nInitial; /* rows loaded before the writer starts */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static sqlite3 *open_db(const char *zPath) {
  sqlite3 *db;
  if (sqlite3_open(zPath, &db) != SQLITE_OK) _exit(10);
  if (sqlite3_annex_init(db, NULL, NULL) != SQLITE_OK) _exit(11);
  sqlite3_busy_timeout(db, 10000);
  return db;
}

static void rand_vec(unsigned *pSeed, float *v) {
  for (int j = 0; j < D; j++) v[j] = (float)(rand_r(pSeed) % 2000) / 100.0f;
}

static int exec_ok(sqlite3 *db, const char *zSql) {
  return sqlite3_exec(db, zSql, 0, 0, 0) == SQLITE_OK;
}

/* Insert n random rows. */
static int insert_rows(sqlite3 *db, unsigned *pSeed, int n) {
  sqlite3_stmt *s;
  float v[D];
  int ok = sqlite3_prepare_v2(db, "INSERT INTO t(v, tag) VALUES(?, ?)", -1,
                              &s, 0) == SQLITE_OK;
  for (int i = 0; ok && i < n; i++) {
    rand_vec(pSeed, v);
    sqlite3_bind_blob(s, 1, v, sizeof(v), SQLITE_STATIC);
    sqlite3_bind_int(s, 2, (int)(rand_r(pSeed) % 4));
    ok = sqlite3_step(s) == SQLITE_DONE;
    sqlite3_reset(s);
  }
  sqlite3_finalize(s);
  return ok;
}

static void writer(const char *zPath, double tEnd) {
  sqlite3 *db = open_db(zPath);
  unsigned seed = 99;
  long nTxn = 0;
  while (now() < tEnd) {
    char *zSql;
    float v[D];
    int ok = exec_ok(db, "BEGIN IMMEDIATE") && insert_rows(db, &seed, 20) &&
             exec_ok(db, "DELETE FROM t WHERE rowid IN (SELECT rowid FROM t "
                         "ORDER BY random() LIMIT 5)");
    rand_vec(&seed, v);
    zSql = sqlite3_mprintf("UPDATE t SET v = '[%g,%g,%g,%g,%g,%g,%g,%g,"
                           "%g,%g,%g,%g,%g,%g,%g,%g]' WHERE rowid IN (SELECT "
                           "rowid FROM t ORDER BY random() LIMIT 5)",
                           v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                           v[8], v[9], v[10], v[11], v[12], v[13], v[14],
                           v[15]);
    /* every third transaction also writes inside a savepoint it rolls
    ** back: those rows must never be seen */
    if (ok && nTxn % 3 == 1) {
      ok = exec_ok(db, "SAVEPOINT sp") && insert_rows(db, &seed, 7) &&
           exec_ok(db, "DELETE FROM t WHERE rowid IN (SELECT rowid FROM t "
                       "ORDER BY random() LIMIT 3)") &&
           exec_ok(db, "ROLLBACK TO sp") && exec_ok(db, "RELEASE sp");
    }
    ok = ok && zSql && exec_ok(db, zSql) && exec_ok(db, "COMMIT");
    sqlite3_free(zSql);
    /* and every seventh, a whole transaction rolled back */
    if (ok && nTxn % 7 == 3) {
      ok = exec_ok(db, "BEGIN IMMEDIATE") && insert_rows(db, &seed, 20) &&
           exec_ok(db, "DELETE FROM t WHERE rowid IN (SELECT rowid FROM t "
                       "ORDER BY random() LIMIT 5)") &&
           exec_ok(db, "ROLLBACK");
    }
    /* indexes: drop the tombstones / dead entries and re-link now and
    ** then, so readers' cached indexes go stale in that way too; ivf also
    ** retrains (every list re-assigned) */
    if (ok && g_eKind != KIND_FLAT && nTxn % 25 == 24) {
      ok = exec_ok(db, "INSERT INTO t(t) VALUES('optimize')");
    }
    if (ok && g_eKind == KIND_IVF && nTxn % 40 == 12) {
      ok = exec_ok(db, "INSERT INTO t(t) VALUES('train')");
    }
    if (!ok) {
      fprintf(stderr, "writer: %s\n", sqlite3_errmsg(db));
      _exit(2);
    }
    nTxn++;
  }
  sqlite3_close(db);
  printf("# writer: %ld transactions committed\n", nTxn);
  fflush(stdout);
  _exit(nTxn > 0 ? 0 : 6);
}

/* Brute-force top k distances of the current snapshot (optionally tag = 1
** only), ascending, into aBest; the rows' vectors into the map for lookup. */
static int brute_force(sqlite3 *db, const float *q, int bFilter,
                       double *aBest, long long *pnRows) {
  sqlite3_stmt *s;
  int nBest = 0;
  *pnRows = 0;
  if (sqlite3_prepare_v2(db, "SELECT v, tag FROM t", -1, &s, 0)) _exit(3);
  while (sqlite3_step(s) == SQLITE_ROW) {
    const float *x = sqlite3_column_blob(s, 0);
    double d = 0;
    int j;
    (*pnRows)++;
    if (bFilter && sqlite3_column_int(s, 1) != 1) continue;
    for (int c = 0; c < D; c++) d += ((double)x[c] - q[c]) * ((double)x[c] - q[c]);
    for (j = nBest; j > 0 && aBest[j - 1] > d; j--) {
      if (j < K) aBest[j] = aBest[j - 1];
    }
    if (j < K) {
      aBest[j] = d;
      if (nBest < K) nBest++;
    }
  }
  sqlite3_finalize(s);
  return nBest;
}

/* The squared distance from q of the row annex returned (same snapshot). */
static double row_dist(sqlite3 *db, int64_t iRowid, const float *q) {
  sqlite3_stmt *s;
  double d = -1;
  if (sqlite3_prepare_v2(db, "SELECT v FROM t WHERE rowid = ?", -1, &s, 0)) {
    _exit(7);
  }
  sqlite3_bind_int64(s, 1, iRowid);
  if (sqlite3_step(s) == SQLITE_ROW) {
    const float *x = sqlite3_column_blob(s, 0);
    d = 0;
    for (int c = 0; c < D; c++) d += ((double)x[c] - q[c]) * ((double)x[c] - q[c]);
  }
  sqlite3_finalize(s);
  return d;
}

/* One snapshot: k-NN, then the brute force of the same snapshot. Rows at
** equal distance may come in either order (float vs double rounding), so
** the check is on distances: rank i's row must be at the i-th smallest
** distance of the snapshot, to float precision. */
static int read_once(sqlite3 *db, unsigned *pSeed, int bFilter) {
  sqlite3_stmt *s;
  float q[D];
  double aWant[K];
  long long nRows;
  int n = 0, nWant;
  rand_vec(pSeed, q);
  if (!exec_ok(db, "BEGIN")) return 0;
  if (sqlite3_prepare_v2(db, bFilter ? "SELECT rowid FROM t WHERE v MATCH ? "
                                       "AND k = 10 AND tag = 1"
                                     : "SELECT rowid FROM t WHERE v MATCH ? "
                                       "AND k = 10",
                         -1, &s, 0) != SQLITE_OK) {
    return 0;
  }
  sqlite3_bind_blob(s, 1, q, sizeof(q), SQLITE_STATIC);
  nWant = brute_force(db, q, bFilter, aWant, &nRows);
  while (sqlite3_step(s) == SQLITE_ROW) {
    double d = row_dist(db, sqlite3_column_int64(s, 0), q);
    if (n >= nWant || d < 0 || d - aWant[n] > 1e-4 * (aWant[n] + 1) ||
        aWant[n] - d > 1e-4 * (aWant[n] + 1)) {
      fprintf(stderr, "reader: rank %d is row %lld at %.6f, the snapshot's "
              "rank %d is at %.6f\n", n,
              (long long)sqlite3_column_int64(s, 0), d, n,
              n < nWant ? aWant[n] : -1.0);
      return 0;
    }
    n++;
  }
  sqlite3_finalize(s);
  if (n != nWant || (nRows - g_nInitial) % NET != 0) {
    fprintf(stderr, "reader: %d of %d rows, %lld rows in the snapshot\n", n,
            nWant, nRows);
    return 0;
  }
  return exec_ok(db, "COMMIT");
}

/* The row's tag, or -1 when the snapshot has no such row. */
static int row_tag(sqlite3 *db, int64_t iRowid) {
  sqlite3_stmt *s;
  int t = -1;
  if (sqlite3_prepare_v2(db, "SELECT tag FROM t WHERE rowid = ?", -1, &s, 0)) {
    _exit(7);
  }
  sqlite3_bind_int64(s, 1, iRowid);
  if (sqlite3_step(s) == SQLITE_ROW) t = sqlite3_column_int(s, 0);
  sqlite3_finalize(s);
  return t;
}

/* One snapshot of an indexed table: the k-NN through the index, then the
** exact scan of the same snapshot; every returned row is checked against
** the snapshot, and the hits (rows within the k-th exact distance) are
** added to *pnHit of *pnWant. ivf (every list probed) must be exact. */
static int read_once_ann(sqlite3 *db, unsigned *pSeed, int bFilter,
                         long *pnHit, long *pnWant) {
  sqlite3_stmt *s;
  float q[D];
  double aWant[K], rKth, rPrev = -1;
  int64_t aGot[K];
  long long nRows;
  int n = 0, nWant, nHit = 0, rc;
  char *zSql = sqlite3_mprintf("SELECT rowid, distance FROM t WHERE v MATCH "
                               "? AND k = 10%s%s", g_azKnob[g_eKind],
                               bFilter ? " AND tag = 1" : "");
  rand_vec(pSeed, q);
  if (!zSql || !exec_ok(db, "BEGIN")) return 0;
  rc = sqlite3_prepare_v2(db, zSql, -1, &s, 0);
  sqlite3_free(zSql);
  if (rc != SQLITE_OK) return 0;
  sqlite3_bind_blob(s, 1, q, sizeof(q), SQLITE_STATIC);
  nWant = brute_force(db, q, bFilter, aWant, &nRows);
  rKth = nWant > 0 ? aWant[nWant - 1] : 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(s, 0);
    double rGot = sqlite3_column_double(s, 1);
    double d = row_dist(db, id, q), r = d < 0 ? -1 : sqrt(d);
    if (n >= K || d < 0 || fabs(rGot - r) > 1e-4 * (1 + r) ||
        rGot < rPrev - 1e-6 * (1 + rPrev) ||
        (bFilter && row_tag(db, id) != 1)) {
      fprintf(stderr, "reader: rank %d is row %lld at distance %.6f; in the "
              "snapshot it is %s at %.6f (previous rank at %.6f)\n", n,
              (long long)id, rGot, d < 0 ? "missing" : "present", r, rPrev);
      return 0;
    }
    for (int i = 0; i < n; i++) {
      if (aGot[i] == id) {
        fprintf(stderr, "reader: row %lld returned twice\n", (long long)id);
        return 0;
      }
    }
    aGot[n++] = id;
    rPrev = rGot;
    if (d <= rKth + 1e-5 * (1 + rKth)) nHit++;
  }
  if (sqlite3_finalize(s) != SQLITE_OK) {
    fprintf(stderr, "reader: k-NN: %s\n", sqlite3_errmsg(db));
    return 0;
  }
  if (g_eKind == KIND_IVF && (n != nWant || nHit != nWant)) {
    fprintf(stderr, "reader: ivf with every list probed: %d rows, %d of the "
            "exact top %d (filter %d)\n", n, nHit, nWant, bFilter);
    return 0;
  }
  *pnHit += nHit;
  *pnWant += nWant;
  if ((!bFilter && n != nWant) || n > nWant ||
      (nRows - g_nInitial) % NET != 0) {
    fprintf(stderr, "reader: %d of %d rows, %lld rows in the snapshot\n", n,
            nWant, nRows);
    return 0;
  }
  return exec_ok(db, "COMMIT");
}

static void reader(const char *zPath, double tEnd, unsigned seed) {
  sqlite3 *db = open_db(zPath);
  long n = 0, nHit = 0, nWant = 0;
  while (now() < tEnd) {
    int ok = g_eKind != KIND_FLAT
                 ? read_once_ann(db, &seed, (int)(n & 1), &nHit, &nWant)
                 : read_once(db, &seed, (int)(n & 1));
    if (!ok) _exit(4);
    n++;
  }
  sqlite3_close(db);
  if (g_eKind != KIND_FLAT) {
    double r = nWant ? (double)nHit / (double)nWant : 0;
    printf("# reader: %ld snapshots checked, recall@10 %.4f (%ld of %ld)\n",
           n, r, nHit, nWant);
    fflush(stdout);
    if (r < 0.9) _exit(8);
  } else {
    printf("# reader: %ld snapshots checked\n", n);
    fflush(stdout);
  }
  _exit(n > 0 ? 0 : 5);
}

/* Child: create the table and load the initial rows. */
static void load(const char *zPath) {
  sqlite3 *db = open_db(zPath);
  unsigned seed = 1;
  int ok = exec_ok(db, "PRAGMA journal_mode=WAL") &&
           exec_ok(db, g_azCreate[g_eKind]) && exec_ok(db, "BEGIN") &&
           insert_rows(db, &seed, g_nInitial) && exec_ok(db, "COMMIT");
  if (!ok) fprintf(stderr, "load: %s\n", sqlite3_errmsg(db));
  sqlite3_close(db);
  _exit(ok ? 0 : 9);
}

/* Child: annex's integrity-check of the table the processes left. */
static void check_integrity(const char *zPath) {
  sqlite3 *db = open_db(zPath);
  char *zErr = NULL;
  int ok = sqlite3_exec(db, "INSERT INTO t(t) VALUES('integrity-check')", 0,
                        0, &zErr) == SQLITE_OK;
  if (!ok) fprintf(stderr, "integrity-check: %s\n", zErr);
  sqlite3_close(db);
  _exit(ok ? 0 : 12);
}

/* Wait for the n children (zWhat: what they are); each must exit 0 by
** tDeadline, else all that are left are killed: a hang fails the test
** instead of blocking the suite. */
static void wait_all(const char *zWhat, pid_t *aPid, int n,
                     double tDeadline) {
  for (int i = 0; i < n; i++) {
    int status;
    pid_t r;
    while ((r = waitpid(aPid[i], &status, WNOHANG)) == 0 && now() < tDeadline) {
      usleep(10000);
    }
    if (r == 0) {
      for (int j = i; j < n; j++) kill(aPid[j], SIGKILL);
      for (int j = i; j < n; j++) waitpid(aPid[j], &status, 0);
      fail_msg("%s %d hung: killed at its deadline", zWhat, i);
    }
    assert_int_equal(r, aPid[i]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fail_msg("%s %d failed (status %d)", zWhat, i, status);
    }
  }
}

/* Fork a child that runs xChild(zPath) and wait for it (2 minutes). */
static void in_child(void (*xChild)(const char *), const char *zPath,
                     const char *zWhat) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) xChild(zPath);
  wait_all(zWhat, &pid, 1, now() + 120);
}

/* The parent never runs annex itself, only forks: a process that has run
** an OpenMP region (training, parallel builds) hangs in a forked child's
** next one (libgomp's thread pool does not survive fork). */
static void run_writer_and_readers(ekind eKind) {
  char zDir[] = "/tmp/annex-conc-XXXXXX";
  char zPath[64];
  const char *zSec = getenv("ANNEX_CONCURRENCY_SECONDS");
  double tEnd;
  pid_t aPid[READERS + 1];
  g_eKind = eKind;
  g_nInitial = eKind != KIND_FLAT ? 1000 : 100;
  assert_non_null(mkdtemp(zDir));
  snprintf(zPath, sizeof(zPath), "%s/conc.db", zDir);
  in_child(load, zPath, "load");
  tEnd = now() + (zSec ? atof(zSec) : 3.0);
  for (int i = 0; i <= READERS; i++) {
    aPid[i] = fork();
    assert_true(aPid[i] >= 0);
    if (aPid[i] == 0) {
      if (i == 0) writer(zPath, tEnd);
      reader(zPath, tEnd, 1000u + (unsigned)i);
    }
  }
  wait_all("writer (0) or reader", aPid, READERS + 1, tEnd + 120);
  in_child(check_integrity, zPath, "integrity-check");
  {
    char zCmd[128];
    snprintf(zCmd, sizeof(zCmd), "rm -rf %s", zDir);
    if (system(zCmd) != 0) fail_msg("cannot remove %s", zDir);
  }
}

static void test_writer_and_readers(void **state) {
  (void)state;
  run_writer_and_readers(KIND_FLAT);
}

static void test_writer_and_readers_hnsw(void **state) {
  (void)state;
  run_writer_and_readers(KIND_HNSW);
}

static void test_writer_and_readers_ivf(void **state) {
  (void)state;
  run_writer_and_readers(KIND_IVF);
}

static void test_writer_and_readers_diskann(void **state) {
  (void)state;
  run_writer_and_readers(KIND_DISKANN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writer_and_readers),
      cmocka_unit_test(test_writer_and_readers_hnsw),
      cmocka_unit_test(test_writer_and_readers_ivf),
      cmocka_unit_test(test_writer_and_readers_diskann),
  };
  /* ANNEX_CONCURRENCY_ONLY=*_diskann (a cmocka pattern) runs one kind */
  if (getenv("ANNEX_CONCURRENCY_ONLY")) {
    cmocka_set_test_filter(getenv("ANNEX_CONCURRENCY_ONLY"));
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
