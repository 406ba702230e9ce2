/*
** test_oom.c — annex under out-of-memory: every operation class, with the
** Nth allocation failing, for N = 1, 2, 3, ... until a run completes
** without a fault (the method of SQLite's test/malloc_common.tcl).
**
** The allocator of fault.c is installed before SQLite initializes; annex
** allocates through sqlite3_malloc64, so annex's allocations fail as well
** as SQLite's. Two modes per operation: "once" (only the Nth allocation
** fails) and "persistent" (the Nth and every later one fail, until the
** connection is closed). After every run (fault.h has the details): the
** result is SQLITE_OK or SQLITE_NOMEM; no allocation is left outstanding
** once the connection closes; the file database, reopened without faults,
** passes PRAGMA integrity_check and annex's integrity-check and holds
** exactly the state before or after the operation; a run that succeeded
** despite a fault returned exactly the fault-free rows; and a failed
** operation, run again on the same connection without faults, succeeds
** exactly as the fault-free run did (nothing annex caches per connection
** is left broken by the fault).
**
** The operations (fault.c, fault_ops) run on a copy of one template: an
** annex table of 39 rows in chunks of 8, so every write touches several
** chunks. Their fault-free runs make from about 130 to several thousand
** allocations. By default a loop tests every N up to 150, then steps by
** the whole-number stride that keeps it near 400 runs: that stride is 1 up
** to 650 allocations, so only the longest loops (CREATE, INSERT SELECT,
** annex_info, RENAME) are sampled; the first N past the fault-free count is
** always run. ANNEX_FAULT_LONG=1 tests every N of every loop (about two
** minutes).
** ANNEX_FAULT_ONLY=pattern runs only the matching tests ("oom DELETE",
** "*query*"; cmocka's wildcards); ANNEX_FAULT_VERBOSE=1 prints one line
** per run (fault.h lists the variables).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "annex.h"
#include "fault.h"
#include "sqltest.h"

#define MAX_OPS 64

static fault_env g_env;
static fault_stats g_aStats[MAX_OPS][2];

static void oom_arm(void *pArg, int iNth) {
  fault_malloc_arm(iNth, *(const int *)pArg);
}
static int oom_disarm(void *pArg) {
  (void)pArg;
  return fault_malloc_disarm();
}
static int oom_calls(void *pArg) {
  (void)pArg;
  return fault_malloc_calls();
}
static int oom_explains(int rc) { return (rc & 0xff) == SQLITE_NOMEM; }

static const int g_aPersist[2] = {0, 1};
static const fault_kind g_aKind[2] = {
    {"once", oom_arm, oom_disarm, oom_calls, (void *)&g_aPersist[0],
     oom_explains, 1, 1},
    {"persistent", oom_arm, oom_disarm, oom_calls, (void *)&g_aPersist[1],
     oom_explains, 1, 1},
};

static int group_setup(void **state) {
  char *zSetup = fault_setup_sql(NULL);
  (void)state;
  assert_non_null(zSetup);
  fault_env_init(&g_env, zSetup, NULL, NULL);
  sqlite3_free(zSetup);
  g_env.nStrideAfter = 150;
  g_env.nMaxRuns = 400;
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  fault_env_free(&g_env);
  return 0;
}

static void test_op(void **state) {
  int iOp = *(const int *)*state, nOp;
  const fault_op *aOp = fault_ops(&nOp);
  for (int m = 0; m < 2; m++) {
    fault_loop(&g_env, &aOp[iOp], &g_aKind[m], &g_aStats[iOp][m]);
  }
}

/* The leak check itself: an allocation made under the armed allocator and
** never freed must show in the outstanding counts. */
static void test_allocator_counts(void **state) {
  sqlite3_int64 n0, b0, n1, b1;
  void *p;
  (void)state;
  fault_malloc_usage(&n0, &b0);
  p = sqlite3_malloc64(100);
  assert_non_null(p);
  fault_malloc_usage(&n1, &b1);
  assert_int_equal(n1, n0 + 1);
  assert_true(b1 >= b0 + 100);
  p = sqlite3_realloc64(p, 5000);
  assert_non_null(p);
  fault_malloc_arm(1, 0);
  assert_null(sqlite3_malloc64(10)); /* the first allocation fails */
  assert_non_null(p = sqlite3_realloc64(p, 6000)); /* once: then succeeds */
  assert_int_equal(fault_malloc_disarm(), 1);
  fault_malloc_arm(2, 1);
  {
    void *q = sqlite3_malloc64(10); /* the first succeeds */
    assert_non_null(q);
    assert_null(sqlite3_malloc64(10));
    assert_null(sqlite3_malloc64(10)); /* persistent */
    sqlite3_free(q);
  }
  assert_int_equal(fault_malloc_disarm(), 2);
  sqlite3_free(p);
  fault_malloc_usage(&n1, &b1);
  assert_int_equal(n1, n0);
  assert_int_equal(b1, b0);
}

/* Regression (module.c, table_free): a table whose %_config is damaged
** fails to connect, and the message annex set on its half-built table
** object while failing is freed with the object. Found by the "reopen" loop,
** where an allocation failing inside xConnect looked like a missing config
** value; a damaged file takes the same path without any fault. */
static void test_connect_error_frees_message(void **state) {
  char *zDir = st_tempdir();
  char zPath[4096];
  sqlite3 *db;
  sqlite3_int64 n0, b0, n1, b1;
  (void)state;
  snprintf(zPath, sizeof(zPath), "%s/damaged.db", zDir);
  db = st_open(zPath);
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(emb float[4], cat text, "
              "chunk_size=8);"
              "INSERT INTO t(rowid, emb, cat) VALUES(1, '[1,2,3,4]', 'a');"
              "DELETE FROM t_config WHERE key = 'format'");
  st_close(db);
  fault_malloc_usage(&n0, &b0);
  db = st_open(zPath);
  st_expect_error(db, 0, "disagrees", "SELECT * FROM t");
  st_close(db);
  fault_malloc_usage(&n1, &b1);
  if (n1 != n0 || b1 != b0) {
    fail_msg("a failed connect leaked %lld allocations (%lld bytes)",
             (long long)(n1 - n0), (long long)(b1 - b0));
  }
  unlink(zPath);
  st_rmdir(zDir);
  free(zDir);
}

static void print_summary(void) {
  int nOp;
  const fault_op *aOp = fault_ops(&nOp);
  int aTot[6] = {0};
  print_message("%-18s %-10s %7s %6s %8s %7s %7s %7s %7s\n", "operation",
                "mode", "allocs", "runs", "injected", "errors", "benign",
                "before", "after");
  for (int i = 0; i < nOp; i++) {
    for (int m = 0; m < 2; m++) {
      const fault_stats *s = &g_aStats[i][m];
      if (s->nRun == 0) continue; /* not run (ANNEX_FAULT_ONLY) */
      print_message("%-18s %-10s %7d %6d %8d %7d %7d %7d %7d\n", aOp[i].zName,
                    g_aKind[m].zName, s->nCalls, s->nRun, s->nInjected,
                    s->nError, s->nBenign, s->nBefore, s->nAfter);
      aTot[0] += s->nRun;
      aTot[1] += s->nInjected;
      aTot[2] += s->nError;
      aTot[3] += s->nBenign;
      aTot[4] += s->nFaulted;
    }
  }
  print_message("total: %d runs, %d with a fault (%d faults injected): %d "
                "failed cleanly, %d succeeded anyway\n", aTot[0], aTot[4],
                aTot[1], aTot[2], aTot[3]);
}

int main(void) {
  static int aIndex[MAX_OPS];
  struct CMUnitTest aTest[MAX_OPS + 2];
  char azName[MAX_OPS][64];
  int nOp, rc;
  const fault_op *aOp;
  /* Before anything initializes SQLite. */
  if (fault_malloc_install() != SQLITE_OK) {
    fprintf(stderr, "test_oom: cannot install the fault allocator\n");
    return 1;
  }
  if (getenv("ANNEX_FAULT_ONLY")) {
    cmocka_set_test_filter(getenv("ANNEX_FAULT_ONLY"));
  }
  aOp = fault_ops(&nOp);
  assert_true(nOp <= MAX_OPS);
  memset(aTest, 0, sizeof(aTest));
  aTest[0].name = "allocator_counts";
  aTest[0].test_func = test_allocator_counts;
  aTest[1].name = "connect_error_frees_message";
  aTest[1].test_func = test_connect_error_frees_message;
  for (int i = 0; i < nOp; i++) {
    aIndex[i] = i;
    snprintf(azName[i], sizeof(azName[i]), "oom %s", aOp[i].zName);
    aTest[i + 2].name = azName[i];
    aTest[i + 2].test_func = test_op;
    aTest[i + 2].initial_state = &aIndex[i];
  }
  rc = _cmocka_run_group_tests("test_oom", aTest, (size_t)nOp + 2,
                               group_setup, group_teardown);
  print_summary();
  return rc;
}
