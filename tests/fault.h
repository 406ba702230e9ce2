/*
** fault.h — fault injection for annex's reliability tests (test_oom.c,
** test_ioerr.c): a failing allocator, a failing VFS, and the loop that runs
** one operation under the Nth fault for N = 1, 2, 3, ... and checks what it
** leaves behind.
**
** The method is SQLite's own (src/test_malloc.c, src/test_vfs.c,
** test/malloc_common.tcl):
**
**   allocator  fault_malloc_install() wraps the allocator SQLite would use
**              (SQLITE_CONFIG_GETMALLOC) with one that counts outstanding
**              allocations and bytes and, once armed, fails the Nth
**              allocation: once, or that one and every later one
**              (persistent). It must run before sqlite3_initialize(), so
**              call it first thing in main(). annex allocates through
**              sqlite3_malloc64, so its allocations are counted and failed
**              too; OpenMP and BLAS allocate elsewhere.
**   VFS        fault_vfs_install() registers "annexfault" as the default
**              VFS, a shim over the previous default that, once armed,
**              fails the Nth call of the selected methods (xRead, xWrite,
**              xSync, xTruncate) with a chosen error: SQLITE_IOERR_* (the
**              extended code of the method) or SQLITE_FULL. Once or
**              persistent. fault_vfs_plain() names the VFS underneath, for
**              checks that must not see faults.
**   loop       fault_loop() runs one operation (fault_op) on a copy of a
**              template database file for N = 1, 2, ... until a run
**              injects no fault, and after every run requires: a result
**              code that is SQLITE_OK or one the fault explains; no leaked
**              allocation once the connection is closed; a database that,
**              reopened through the plain VFS without faults, passes
**              PRAGMA integrity_check and annex's integrity-check on every
**              annex table, and holds exactly the state before the
**              operation or exactly the state after it (every table's
**              rows, shadow tables included, and the schema); and, when the
**              operation succeeded, the same rows as a fault-free run.
**              With fault_kind.bRetry, a failed operation is then run again
**              on the same connection without faults, and must succeed
**              exactly as the fault-free run did: a fault may not leave
**              broken state cached on the connection (unless the failed
**              operation took effect: an I/O error after the commit point).
**              (A database file byte-identical to the file of the state
**              before or after, with no journal or WAL beside it, is taken
**              to be that state without reopening it: both were checked in
**              full when recorded.)
**
** Environment:
**   ANNEX_FAULT_LONG=1     every N of every loop (the default strides over
**                          the loops of more than fault_env.nMaxRuns sites)
**   ANNEX_FAULT_RUNS=n     about n runs per loop (every N up to n/2, then a
**                          stride), whatever the test's own budget: how
**                          the sanitizer stage keeps the loops short
**   ANNEX_FAULT_ONLY=pat   run only the cmocka tests matching pat
**   ANNEX_FAULT_VERBOSE=1  one line per run: N, result code, message
**   ANNEX_FAULT_DIR=dir    where the databases live (default /dev/shm when
**                          writable, else $TMPDIR or /tmp)
**
** Every function that can fail a test does so through cmocka, so call them
** from inside a running cmocka test.
*/
#ifndef ANNEX_FAULT_H
#define ANNEX_FAULT_H

#include <stddef.h>

#include <sqlite3.h>

/* Allocator *************************************************************/

/* Install the counting, failing allocator. Before sqlite3_initialize().
** Returns SQLITE_OK or the error of sqlite3_config. */
int fault_malloc_install(void);
/* From now on, allocation number iNth (1 = the next) fails; with bPersist
** every allocation after it fails too. */
void fault_malloc_arm(int iNth, int bPersist);
/* Stop failing; returns the number of allocations failed since the arm. */
int fault_malloc_disarm(void);
/* Allocations made (attempted) since the last arm or disarm. */
int fault_malloc_calls(void);
/* Outstanding allocations and bytes right now. */
void fault_malloc_usage(sqlite3_int64 *pnAlloc, sqlite3_int64 *pnByte);

/* VFS *******************************************************************/

#define FAULT_IO_READ 0x01
#define FAULT_IO_WRITE 0x02
#define FAULT_IO_SYNC 0x04
#define FAULT_IO_TRUNCATE 0x08

/* Register the shim as the default VFS. Returns SQLITE_OK or an error. */
int fault_vfs_install(void);
/* Name of the VFS the shim wraps (the previous default). */
const char *fault_vfs_plain(void);
/* From now on, the iNth call (1 = the next) of the methods in mOps fails
** with rcErr; with bPersist every later call of them fails too. rcErr
** SQLITE_IOERR is returned as the method's extended code (IOERR_READ,
** IOERR_WRITE, IOERR_FSYNC, IOERR_TRUNCATE). */
void fault_vfs_arm(int mOps, int rcErr, int iNth, int bPersist);
/* Stop failing; returns the number of calls failed since the arm. */
int fault_vfs_disarm(void);
/* Calls of the armed methods since the last arm. */
int fault_vfs_calls(void);

/* The loop **************************************************************/

/* One operation. */
typedef struct fault_op {
  const char *zName;  /* for messages: "INSERT", "k-NN query", ... */
  const char *zWarm;  /* SQL run on the fresh connection before the faults
                      ** are armed (NULL: nothing). */
  const char *zSql;   /* the operation: its statements run in order, every
                      ** row of every statement is kept as its result */
  int bReopen;        /* the operation is: close the connection, open a
                      ** new one (registering annex), then run zSql */
  const char *zFinally; /* SQL run after zSql even when zSql failed, as an
                      ** application that ignores an error would (NULL:
                      ** none): "COMMIT" after "BEGIN; <one write>". Its
                      ** error counts only when zSql succeeded. */
} fault_op;

/* How faults are injected, and which errors they may cause. */
typedef struct fault_kind {
  const char *zName;              /* "once", "persistent", "xWrite FULL" */
  void (*xArm)(void *pArg, int iNth);
  int (*xDisarm)(void *pArg);     /* returns faults injected */
  int (*xCalls)(void *pArg);      /* calls that could fail, since the arm */
  void *pArg;
  /* 1 if rc is an error this kind of fault explains (SQLITE_NOMEM, ...) */
  int (*xExplains)(int rc);
  int bThroughClose;  /* keep the faults armed while the connection closes */
  int bRetry;         /* after a failed run, disarm, check what it left,
                      ** and run the operation again on the same connection:
                      ** it must succeed, exactly as without faults */
} fault_kind;

/* Where the databases live. */
typedef struct fault_env {
  char *zDir;          /* temporary directory (owned) */
  char *zTemplate;     /* the template database, never modified (owned) */
  char *zWork;         /* the database an operation runs on (owned) */
  const char *zVfs;    /* VFS of the operation's connections (NULL: the
                       ** default) */
  const char *zPlain;  /* VFS of the checking connections (NULL: default) */
  const char *zConnSql; /* run on every connection of the operation as it
                       ** opens, e.g. "PRAGMA journal_mode=TRUNCATE" (a
                       ** setting the file does not keep); NULL: none */
  int nStrideAfter;    /* test every N up to this, then a stride (0: every
                       ** N); see fault_loop */
  int nMaxRuns;        /* runs per loop the stride aims at */
} fault_env;

/* What one loop did. */
typedef struct fault_stats {
  int nRun;       /* runs with a fault armed */
  int nFaulted;   /* runs in which at least one fault was injected */
  int nInjected;  /* faults injected, all runs together */
  int nError;     /* runs that ended in an error the fault explains */
  int nBenign;    /* runs with a fault that still succeeded (and returned
                  ** exactly the fault-free result) */
  int nBefore;    /* failed runs that left the before state */
  int nAfter;     /* failed runs that left the after state */
  int nCalls;     /* fault sites of the fault-free run */
} fault_stats;

/* A temporary directory holding zTemplate, built by running zSetup (many
** statements) on a new database with annex registered, through zVfs. */
void fault_env_init(fault_env *pEnv, const char *zSetup, const char *zVfs,
                    const char *zPlain);
void fault_env_free(fault_env *pEnv);

/* Run pOp under pKind for N = 1, 2, ... until a run injects no fault;
** fail the test at the first run that breaks a rule (see the top of this
** file). With pEnv->nStrideAfter > 0, N steps by 1 up to nStrideAfter, then
** by the stride that keeps the runs near nMaxRuns for the fault sites the
** fault-free run counted, and the last N is always one past that count.
** Adds to *pStats. */
void fault_loop(fault_env *pEnv, const fault_op *pOp, const fault_kind *pKind,
                fault_stats *pStats);

/* The workload ***********************************************************/

/* SQL that builds the template: annex table t (emb float[8], cat text,
** year integer, score real, +body text, chunk_size=8) with rows 1..40
** except 13, in five chunks; ordinary tables src (20 rows to insert) and
** qtab (query vectors for annex_knn). zPragma (may be NULL) runs first,
** e.g. "PRAGMA journal_mode=WAL". sqlite3_free() the result. */
char *fault_setup_sql(const char *zPragma);
/* The operation classes, one fault_op each: CREATE, INSERT, INSERT SELECT,
** REPLACE, UPDATE vector / metadata / rowid, DELETE, k-NN, filtered k-NN,
** annex_knn, radius, integrity-check, annex_info, a full scan and a rowid
** lookup, the vector functions, reopen, DROP, RENAME, and
** an INSERT and a DELETE inside BEGIN ... COMMIT where the COMMIT runs even
** after the write failed. *pn gets the count. */
const fault_op *fault_ops(int *pn);

/* 1 when ANNEX_FAULT_LONG is set to a non-zero value: exhaustive loops. */
int fault_long_mode(void);

/* Open zPath through zVfs (NULL: default) with extended result codes and
** annex registered. Returns the error (after closing) or SQLITE_OK. */
int fault_open(const char *zPath, const char *zVfs, sqlite3 **pDb);

#endif /* ANNEX_FAULT_H */
