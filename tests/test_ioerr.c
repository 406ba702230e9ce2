/*
** test_ioerr.c — annex under I/O errors and a full disk: every operation
** class, with the Nth call of a file method failing, for N = 1, 2, 3, ...
** until a run completes without a fault (SQLite's test/malloc_common.tcl
** method, with a VFS shim like src/test_vfs.c).
**
** fault.c's VFS shim is the default VFS, so every file SQLite opens (the
** database, its rollback journal, its WAL) goes through it. Fault kinds:
** xRead, xWrite, xSync and xTruncate failing with their SQLITE_IOERR_*
** code, and xWrite failing with SQLITE_FULL; each once (only the Nth call
** fails) and persistent (the Nth and every later call fail). The faults
** stay armed while the connection closes, since the close of a WAL
** database checkpoints and truncates. Three journal modes: rollback
** (journal_mode=DELETE), rollback with the journal truncated at commit
** (journal_mode=TRUNCATE, where xTruncate is on the commit path) and WAL.
**
** After every run (fault.h has the details): the result is SQLITE_OK or an
** SQLITE_IOERR_* / SQLITE_FULL error; no allocation is left outstanding
** once the connection closes; the database, reopened through the plain VFS
** without faults (which rolls back a hot journal or recovers the WAL),
** passes PRAGMA integrity_check and annex's integrity-check and holds
** exactly the state before or after the operation; a run that succeeded
** despite a fault returned exactly the fault-free rows.
**
** The operations are those of test_oom.c (fault.c, fault_ops). Their
** fault-free runs make at most a few dozen calls of each method, so every
** N is tested; ANNEX_FAULT_LONG=1 changes nothing here.
** ANNEX_FAULT_ONLY=pattern runs only the matching tests ("ioerr wal
** DELETE", "*query*"; cmocka's wildcards); ANNEX_FAULT_VERBOSE=1 prints one
** line per run.
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
#include "fault.h"
#include "sqltest.h"

#define MAX_OPS 64
#define N_JMODE 3
#define N_KIND 10

static const char *azJmode[N_JMODE] = {"rollback", "truncate", "wal"};
static fault_env g_aEnv[N_JMODE];
static fault_stats g_aStats[MAX_OPS][N_JMODE][N_KIND];

/* What a kind arms. */
typedef struct io_spec {
  int mOps;
  int rcErr;
  int bPersist;
} io_spec;

static void io_arm(void *pArg, int iNth) {
  const io_spec *p = pArg;
  fault_vfs_arm(p->mOps, p->rcErr, iNth, p->bPersist);
}
static int io_disarm(void *pArg) {
  (void)pArg;
  return fault_vfs_disarm();
}
static int io_calls(void *pArg) {
  (void)pArg;
  return fault_vfs_calls();
}
static int io_explains(int rc) {
  return (rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_FULL;
}

static const io_spec g_aSpec[N_KIND] = {
    {FAULT_IO_READ, SQLITE_IOERR, 0},     {FAULT_IO_READ, SQLITE_IOERR, 1},
    {FAULT_IO_WRITE, SQLITE_IOERR, 0},    {FAULT_IO_WRITE, SQLITE_IOERR, 1},
    {FAULT_IO_SYNC, SQLITE_IOERR, 0},     {FAULT_IO_SYNC, SQLITE_IOERR, 1},
    {FAULT_IO_TRUNCATE, SQLITE_IOERR, 0}, {FAULT_IO_TRUNCATE, SQLITE_IOERR, 1},
    {FAULT_IO_WRITE, SQLITE_FULL, 0},     {FAULT_IO_WRITE, SQLITE_FULL, 1},
};

#define KIND(zName, i) \
  {zName, io_arm, io_disarm, io_calls, (void *)&g_aSpec[i], io_explains, 1, 1}
static const fault_kind g_aKind[N_KIND] = {
    KIND("xRead once", 0),     KIND("xRead persistent", 1),
    KIND("xWrite once", 2),    KIND("xWrite persistent", 3),
    KIND("xSync once", 4),     KIND("xSync persistent", 5),
    KIND("xTruncate once", 6), KIND("xTruncate persistent", 7),
    KIND("FULL once", 8),      KIND("FULL persistent", 9),
};

static int group_setup(void **state) {
  static const char *azPragma[N_JMODE] = {"PRAGMA journal_mode=DELETE",
                                          "PRAGMA journal_mode=DELETE",
                                          "PRAGMA journal_mode=WAL"};
  (void)state;
  for (int j = 0; j < N_JMODE; j++) {
    char *zSetup = fault_setup_sql(azPragma[j]);
    assert_non_null(zSetup);
    /* Operations go through the shim (the default VFS); checks and the
    ** template through the VFS underneath. */
    fault_env_init(&g_aEnv[j], zSetup, NULL, fault_vfs_plain());
    sqlite3_free(zSetup);
  }
  /* A rollback journal that is truncated rather than deleted at commit:
  ** the journal mode a file does not keep, so set on every connection. */
  g_aEnv[1].zConnSql = "PRAGMA journal_mode=TRUNCATE";
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  for (int j = 0; j < N_JMODE; j++) fault_env_free(&g_aEnv[j]);
  return 0;
}

/* The template really is in the journal mode its name says. */
static void test_journal_modes(void **state) {
  static const char *azWant[N_JMODE] = {"delete", "truncate", "wal"};
  (void)state;
  for (int j = 0; j < N_JMODE; j++) {
    sqlite3 *db;
    char *z;
    assert_int_equal(fault_open(g_aEnv[j].zTemplate, fault_vfs_plain(), &db),
                     SQLITE_OK);
    if (g_aEnv[j].zConnSql) st_exec(db, "%s", g_aEnv[j].zConnSql);
    z = st_text(db, "PRAGMA journal_mode");
    assert_string_equal(z, azWant[j]);
    sqlite3_free(z);
    st_close(db);
  }
}

/* The shim fails what it is told to, once or persistently, and nothing
** else. */
static void test_vfs_shim(void **state) {
  sqlite3 *db;
  int rc;
  (void)state;
  assert_int_equal(fault_open(":memory:", NULL, &db), SQLITE_OK);
  st_close(db);
  assert_int_equal(fault_open(g_aEnv[0].zTemplate, NULL, &db), SQLITE_OK);
  fault_vfs_arm(FAULT_IO_READ, SQLITE_IOERR, 1, 0);
  rc = st_try(db, "SELECT count(*) FROM src");
  assert_int_equal(rc, SQLITE_IOERR_READ);
  assert_int_equal(fault_vfs_disarm(), 1);
  assert_int_equal(st_int(db, "SELECT count(*) FROM src"), 20);
  fault_vfs_arm(FAULT_IO_WRITE, SQLITE_FULL, 1, 1);
  rc = st_try(db, "BEGIN; CREATE TABLE never(x); COMMIT");
  assert_int_equal(rc & 0xff, SQLITE_FULL);
  assert_true(fault_vfs_disarm() >= 1);
  st_try(db, "ROLLBACK");
  st_close(db);
}

static void test_op(void **state) {
  int iArg = *(const int *)*state, nOp;
  int iOp = iArg / N_JMODE, j = iArg % N_JMODE;
  const fault_op *aOp = fault_ops(&nOp);
  for (int k = 0; k < N_KIND; k++) {
    fault_loop(&g_aEnv[j], &aOp[iOp], &g_aKind[k], &g_aStats[iOp][j][k]);
  }
}

static void print_summary(void) {
  int nOp, nRun = 0, nFaulted = 0, nInjected = 0, nError = 0, nBenign = 0;
  int nAfter = 0;
  const fault_op *aOp = fault_ops(&nOp);
  print_message("%-18s %-8s %-20s %5s %5s %8s %6s %6s %6s %5s\n",
                "operation", "journal", "fault", "calls", "runs", "injected",
                "errors", "benign", "before", "after");
  for (int i = 0; i < nOp; i++) {
    for (int j = 0; j < N_JMODE; j++) {
      for (int k = 0; k < N_KIND; k++) {
        const fault_stats *s = &g_aStats[i][j][k];
        if (s->nRun == 0) continue;
        nRun += s->nRun;
        nFaulted += s->nFaulted;
        nInjected += s->nInjected;
        nError += s->nError;
        nBenign += s->nBenign;
        nAfter += s->nAfter;
        if (s->nFaulted == 0) continue; /* no call of that method */
        print_message("%-18s %-8s %-20s %5d %5d %8d %6d %6d %6d %5d\n",
                      aOp[i].zName, azJmode[j], g_aKind[k].zName, s->nCalls,
                      s->nRun, s->nInjected, s->nError, s->nBenign,
                      s->nBefore, s->nAfter);
      }
    }
  }
  print_message("total: %d runs, %d with a fault (%d faults injected): %d "
                "failed cleanly (%d of them after the commit), %d succeeded "
                "anyway\n", nRun, nFaulted, nInjected, nError, nAfter,
                nBenign);
}

int main(void) {
  static int aIndex[MAX_OPS * N_JMODE];
  struct CMUnitTest aTest[MAX_OPS * N_JMODE + 2];
  static char azName[MAX_OPS * N_JMODE][64];
  int nOp, nTest = 0, rc;
  const fault_op *aOp;
  /* The counting allocator (for the leak checks) must come before anything
  ** initializes SQLite; no allocation fails in this test. */
  if (fault_malloc_install() != SQLITE_OK || fault_vfs_install() != SQLITE_OK) {
    fprintf(stderr, "test_ioerr: cannot install the fault allocator/VFS\n");
    return 1;
  }
  if (getenv("ANNEX_FAULT_ONLY")) {
    cmocka_set_test_filter(getenv("ANNEX_FAULT_ONLY"));
  }
  aOp = fault_ops(&nOp);
  assert_true(nOp <= MAX_OPS);
  memset(aTest, 0, sizeof(aTest));
  aTest[nTest].name = "journal_modes";
  aTest[nTest++].test_func = test_journal_modes;
  aTest[nTest].name = "vfs_shim";
  aTest[nTest++].test_func = test_vfs_shim;
  for (int i = 0; i < nOp; i++) {
    for (int j = 0; j < N_JMODE; j++) {
      int iArg = i * N_JMODE + j;
      aIndex[iArg] = iArg;
      snprintf(azName[iArg], sizeof(azName[iArg]), "ioerr %s %s", azJmode[j],
               aOp[i].zName);
      aTest[nTest].name = azName[iArg];
      aTest[nTest].test_func = test_op;
      aTest[nTest++].initial_state = &aIndex[iArg];
    }
  }
  rc = _cmocka_run_group_tests("test_ioerr", aTest, (size_t)nTest,
                               group_setup, group_teardown);
  print_summary();
  return rc;
}
