/*
** test_ann_txn.c — transaction edge cases every index kind must get right,
** run on index=hnsw, index=diskann and index=ivf (flat and pq) alike.
**
** Each case writes through a transaction shape SQLite reports to a virtual
** table in its own way, then checks every k-NN row against the distance of
** its stored vector (computed here) and that rolled-back rows are gone:
**   - ROLLBACK TO the SAVEPOINT that began the transaction: SQLite passes
**     savepoint -1 to xRollbackTo (it does not count that savepoint), and
**     the index must drop everything it buffered since BEGIN (fuzz_ann
**     found HNSW and DiskANN linking a rolled-back UPDATE at COMMIT);
**   - the same with writes after the ROLLBACK TO, then RELEASE;
**   - a nested savepoint rolled back inside an explicit BEGIN;
**   - a command ('optimize', 'rebuild' / 'train') inside a savepoint that is
**     then rolled back: the command links the buffered rows and writes the
**     index; the ROLLBACK TO undoes that in the file, so rows buffered
**     before the savepoint must be linked again at COMMIT (fuzz_ann found
**     HNSW and DiskANN losing them: integrity-check reported live rows
**     without a node); and an empty savepoint rolled back after a command
**     in the same transaction (HNSW dropped its graph but kept trusting the
**     cache, then wrote an entry point of -1);
**   - a process forked after a parallel build builds again (GNU OpenMP's
**     thread pool does not survive fork: the child hung in 'train' until
**     threads.c made a forked child single-threaded).
*/
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <sys/wait.h>
#include <unistd.h>

#include "annex.h"
#include "sqltest.h"

static const char *azIndex[] = {
    "hnsw", "diskann", "ivf(nlist=2, quantizer=flat)",
    "ivf(nlist=2, quantizer=pq, m=2)"};

#define QUERY "[0.5,-1,1,0.25]"
#define K 10

/* rows 1..n: an integer grid, so every distance is distinct enough */
static void fill(sqlite3 *db, int n) {
  st_exec(db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
              "WHERE i < %d) INSERT INTO t(rowid, v) SELECT i, json_array("
              "i %% 5, i * 7 %% 11, i %% 3, i %% 13) FROM c", n);
}

/* Every row of a k-NN through the index (k small enough that no index
** hands it to the exact scan) is a distinct row at its stored vector's
** distance, in order. */
static void check_exact(sqlite3 *db, const char *zIndex) {
  sqlite3_int64 aRowid[K];
  double aDist[K];
  int n = st_knn(db, "SELECT rowid, distance FROM t WHERE v MATCH '" QUERY
                     "' AND k = 10", NULL, 0, 0, aRowid, aDist, K);
  if (n != K) fail_msg("%s: k-NN gave %d rows of %d", zIndex, n, K);
  for (int i = 0; i < n; i++) {
    double e = st_double(db, "SELECT annex_distance(v, '" QUERY "') FROM t "
                             "WHERE rowid = %lld", aRowid[i]);
    if (fabs(aDist[i] - e) > 1e-5 * (1 + e)) {
      fail_msg("%s: row %lld at %g, its stored vector is at %g", zIndex,
               aRowid[i], aDist[i], e);
    }
    if (i > 0 && aDist[i] < aDist[i - 1]) fail_msg("%s: out of order", zIndex);
    for (int j = 0; j < i; j++) {
      if (aRowid[j] == aRowid[i]) fail_msg("%s: row %lld twice", zIndex, aRowid[i]);
    }
  }
}

static sqlite3 *open_table(const char *zIndex, int nRow) {
  sqlite3 *db = st_open(NULL);
  st_exec(db, "SELECT annex_threads(1)");
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[4], chunk_size=8, "
              "index=%s)", zIndex);
  fill(db, nRow);
  return db;
}

/* ROLLBACK TO the transaction's own savepoint, then COMMIT. */
static void test_rollback_to_first(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(azIndex) / sizeof(azIndex[0]); i++) {
    sqlite3 *db = open_table(azIndex[i], 100);
    st_exec(db, "SAVEPOINT s0");
    st_exec(db, "UPDATE t SET v = '[-3,0,0,0]' WHERE rowid %% 7 = 0");
    st_exec(db, "INSERT INTO t(rowid, v) VALUES(500, '" QUERY "')");
    st_exec(db, "ROLLBACK TO s0");
    st_exec(db, "COMMIT");
    assert_int_equal(st_int(db, "SELECT count(*) FROM t"), 100);
    check_exact(db, azIndex[i]);
    st_integrity_ok(db, "t");
    st_close(db);
  }
}

/* Writes after the ROLLBACK TO stay; RELEASE ends the transaction. */
static void test_rollback_to_first_then_write(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(azIndex) / sizeof(azIndex[0]); i++) {
    sqlite3 *db = open_table(azIndex[i], 100);
    st_exec(db, "SAVEPOINT s0");
    st_exec(db, "UPDATE t SET v = '[9,9,9,9]' WHERE rowid %% 3 = 0");
    st_exec(db, "DELETE FROM t WHERE rowid %% 10 = 1");
    st_exec(db, "ROLLBACK TO s0");
    st_exec(db, "INSERT INTO t(rowid, v) VALUES(501, '[1,1,1,1]')");
    st_exec(db, "UPDATE t SET v = '[0.5,-1,1,0.5]' WHERE rowid = 4");
    st_exec(db, "RELEASE s0");
    assert_int_equal(st_int(db, "SELECT count(*) FROM t"), 101);
    check_exact(db, azIndex[i]);
    assert_int_equal(st_int(db, "SELECT rowid FROM t WHERE v MATCH '" QUERY
                                "' AND k = 1"), 4);
    st_integrity_ok(db, "t");
    st_close(db);
  }
}

/* A nested savepoint inside BEGIN: its writes go, the earlier ones stay. */
static void test_nested_savepoint(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(azIndex) / sizeof(azIndex[0]); i++) {
    sqlite3 *db = open_table(azIndex[i], 100);
    st_exec(db, "BEGIN");
    st_exec(db, "INSERT INTO t(rowid, v) VALUES(600, '[2,2,2,2]')");
    st_exec(db, "SAVEPOINT a");
    st_exec(db, "UPDATE t SET v = '" QUERY "' WHERE rowid = 600");
    st_exec(db, "SAVEPOINT b");
    st_exec(db, "INSERT INTO t(rowid, v) VALUES(601, '" QUERY "')");
    st_exec(db, "ROLLBACK TO a");
    st_exec(db, "COMMIT");
    assert_int_equal(st_int(db, "SELECT count(*) FROM t"), 101);
    assert_int_equal(st_int(db, "SELECT count(*) FROM t WHERE rowid = 601"), 0);
    check_exact(db, azIndex[i]);
    st_integrity_ok(db, "t");
    st_close(db);
  }
}

/* A command inside a savepoint, rolled back; rows written before it stay. */
static void test_command_in_savepoint(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(azIndex) / sizeof(azIndex[0]); i++) {
    for (int iCmd = 0; iCmd < 2; iCmd++) {
      const char *zCmd = iCmd == 0 ? "optimize"
                         : azIndex[i][0] == 'i' ? "train" : "rebuild";
      sqlite3 *db = open_table(azIndex[i], 100);
      st_exec(db, "SAVEPOINT a");
      st_exec(db, "INSERT INTO t(rowid, v) VALUES(200, '[0.5,-1,1,0.5]')");
      st_exec(db, "DELETE FROM t WHERE rowid = 3");
      st_exec(db, "SAVEPOINT b");
      st_exec(db, "INSERT INTO t(rowid, v) VALUES(201, '[0.5,-1,1,0.3]')");
      st_exec(db, "INSERT INTO t(t) VALUES('%s')", zCmd);
      st_exec(db, "INSERT INTO t(rowid, v) VALUES(202, '[0.5,-1,1,0.2]')");
      st_exec(db, "ROLLBACK TO b");
      st_exec(db, "INSERT INTO t(rowid, v) VALUES(203, '[9,9,9,9]')");
      st_exec(db, "RELEASE a");
      assert_int_equal(st_int(db, "SELECT count(*) FROM t"), 101);
      st_integrity_ok(db, "t");
      check_exact(db, azIndex[i]);
      /* row 200 is the query's nearest: it must be found */
      assert_int_equal(st_int(db, "SELECT rowid FROM t WHERE v MATCH '"
                                  QUERY "' AND k = 1"), 200);
      st_close(db);
    }
  }
}

/* A command, writes, then a savepoint rolled back with nothing in it. */
static void test_empty_savepoint_after_command(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(azIndex) / sizeof(azIndex[0]); i++) {
    const char *zCmd = azIndex[i][0] == 'i' ? "train" : "rebuild";
    sqlite3 *db = open_table(azIndex[i], 100);
    st_exec(db, "DELETE FROM t WHERE rowid %% 6 = 0");
    st_exec(db, "BEGIN");
    st_exec(db, "INSERT INTO t(t) VALUES('%s')", zCmd);
    st_exec(db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                "FROM c WHERE i < 20) INSERT INTO t(rowid, v) SELECT i + 1000, "
                "json_array(i %% 5, 1, 2, 3) FROM c");
    st_exec(db, "DELETE FROM t WHERE rowid > 1000");
    st_exec(db, "SAVEPOINT s0");
    st_exec(db, "ROLLBACK TO s0");
    st_exec(db, "COMMIT");
    assert_int_equal(st_int(db, "SELECT count(*) FROM t"), 84);
    st_integrity_ok(db, "t");
    check_exact(db, azIndex[i]);
    /* the graph is whole: the nearest row is found */
    assert_int_equal(st_int(db, "SELECT rowid FROM t WHERE v MATCH '" QUERY
                                "' AND k = 1"),
                     st_int(db, "SELECT rowid FROM t ORDER BY annex_distance("
                                "v, '" QUERY "'), rowid LIMIT 1"));
    st_close(db);
  }
}

/* fork() after a parallel build: the child's builds must finish (an alarm
** kills a hung child and fails the test). */
static void test_fork_after_parallel_build(void **state) {
  char *zDir = st_tempdir(), zPath[512];
  sqlite3 *db;
  pid_t pid;
  int status = 0;
  (void)state;
  snprintf(zPath, sizeof(zPath), "%s/f.db", zDir);
  db = st_open(zPath);
  st_exec(db, "SELECT annex_threads(2)"); /* OpenMP regions of 2 threads */
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(v float[4], index=ivf("
              "nlist=4))");
  fill(db, 1000); /* trains at the commit: k-means on 2 threads */
  st_exec(db, "INSERT INTO t(t) VALUES('train')");
  st_close(db); /* the child owns nothing of the parent's (valgrind) */
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    sqlite3 *dbc = NULL;
    alarm(120); /* generous: valgrind runs this too */
    if (sqlite3_open(zPath, &dbc) != SQLITE_OK) _exit(2);
    if (sqlite3_annex_init(dbc, NULL, NULL) != SQLITE_OK) _exit(4);
    if (sqlite3_exec(dbc, "SELECT annex_threads(2); INSERT INTO t(t) "
                          "VALUES('train'); CREATE VIRTUAL TABLE h USING "
                          "annex(v float[4], index=hnsw); INSERT INTO h(rowid, "
                          "v) SELECT rowid, v FROM t; INSERT INTO h(h) "
                          "VALUES('rebuild')", NULL, NULL, NULL) != SQLITE_OK) {
      _exit(3);
    }
    sqlite3_close(dbc);
    free(zDir);
    _exit(0);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  db = st_open(zPath);
  if (WIFSIGNALED(status)) {
    fail_msg("the forked child died of signal %d (SIGALRM %d: it hung)",
             WTERMSIG(status), SIGALRM);
  }
  assert_int_equal(WEXITSTATUS(status), 0);
  st_integrity_ok(db, "t");
  st_integrity_ok(db, "h");
  st_exec(db, "SELECT annex_threads(0)");
  st_close(db);
  st_rmdir(zDir);
  free(zDir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rollback_to_first),
      cmocka_unit_test(test_rollback_to_first_then_write),
      cmocka_unit_test(test_nested_savepoint),
      cmocka_unit_test(test_command_in_savepoint),
      cmocka_unit_test(test_empty_savepoint_after_command),
      cmocka_unit_test(test_fork_after_parallel_build),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
