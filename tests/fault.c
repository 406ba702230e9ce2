/*
** fault.c — fault injection for the reliability tests; see fault.h.
*/
#define _XOPEN_SOURCE 700 /* mkdtemp */
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
#include "index/threads.h"
#include "fault.h"
#include "sqltest.h"

/* A crash under a fault must end in AddressSanitizer's report, not in
** cmocka's signal handler: that one longjmps out of SQLite with its
** allocator mutex held, and the next test then hangs. (Only an ASan build
** calls this.) */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "allow_user_segv_handler=0";
}

/* Allocator **************************************************************/

static struct {
  sqlite3_mem_methods real; /* the allocator SQLite would have used */
  int bInstalled;
  int bArmed;               /* faults are scheduled */
  int bPersist;             /* every allocation after the first fault fails */
  int bTripped;             /* the first fault happened */
  int iCountdown;           /* allocations left before the fault */
  int nFail;                /* faults since the arm */
  int nCalls;               /* allocations attempted since the arm */
  sqlite3_int64 nOut;       /* outstanding allocations */
  sqlite3_int64 nByte;      /* outstanding bytes */
} g_mem;

/* 1 if this allocation must fail. */
static int mem_fault(void) {
  g_mem.nCalls++;
  if (!g_mem.bArmed) return 0;
  if (g_mem.bTripped) { /* only a persistent fault stays armed */
    g_mem.nFail++;
    return 1;
  }
  if (--g_mem.iCountdown > 0) return 0;
  g_mem.bTripped = 1;
  g_mem.nFail++;
  if (!g_mem.bPersist) g_mem.bArmed = 0;
  return 1;
}

static void *mem_malloc(int n) {
  void *p;
  if (mem_fault()) return NULL;
  p = g_mem.real.xMalloc(n);
  if (p) {
    g_mem.nOut++;
    g_mem.nByte += g_mem.real.xSize(p);
  }
  return p;
}

static void mem_free(void *p) {
  if (p) {
    g_mem.nOut--;
    g_mem.nByte -= g_mem.real.xSize(p);
  }
  g_mem.real.xFree(p);
}

static void *mem_realloc(void *p, int n) {
  int nOld;
  void *pNew;
  if (mem_fault()) return NULL; /* p stays valid, as realloc() leaves it */
  nOld = p ? g_mem.real.xSize(p) : 0;
  pNew = g_mem.real.xRealloc(p, n);
  if (pNew) {
    if (p == NULL) g_mem.nOut++;
    g_mem.nByte += g_mem.real.xSize(pNew) - nOld;
  }
  return pNew;
}

int fault_malloc_install(void) {
  sqlite3_mem_methods m;
  int rc;
  if (g_mem.bInstalled) return SQLITE_OK;
  rc = sqlite3_config(SQLITE_CONFIG_GETMALLOC, &g_mem.real);
  if (rc != SQLITE_OK) return rc;
  m = g_mem.real;
  m.xMalloc = mem_malloc;
  m.xFree = mem_free;
  m.xRealloc = mem_realloc;
  rc = sqlite3_config(SQLITE_CONFIG_MALLOC, &m);
  if (rc == SQLITE_OK) g_mem.bInstalled = 1;
  return rc;
}

void fault_malloc_arm(int iNth, int bPersist) {
  g_mem.iCountdown = iNth;
  g_mem.bPersist = bPersist;
  g_mem.bTripped = 0;
  g_mem.nFail = 0;
  g_mem.nCalls = 0;
  g_mem.bArmed = 1;
}

int fault_malloc_disarm(void) {
  int n = g_mem.nFail;
  g_mem.bArmed = 0;
  g_mem.bTripped = 0;
  g_mem.nFail = 0;
  g_mem.nCalls = 0;
  return n;
}

int fault_malloc_calls(void) { return g_mem.nCalls; }

void fault_malloc_usage(sqlite3_int64 *pnAlloc, sqlite3_int64 *pnByte) {
  *pnAlloc = g_mem.nOut;
  *pnByte = g_mem.nByte;
}

/* VFS ********************************************************************/

typedef struct ff_file {
  sqlite3_file base;    /* base class: must be first */
  sqlite3_file *pReal;  /* the wrapped file, allocated just after this */
} ff_file;

static struct {
  sqlite3_vfs *pReal;   /* the wrapped VFS */
  int mOps;             /* FAULT_IO_* methods that may fail */
  int rcErr;            /* SQLITE_IOERR or SQLITE_FULL */
  int bArmed, bPersist, bTripped;
  int iCountdown, nFail, nCalls;
} g_io;

/* The error for this call of method eOp, or SQLITE_OK. */
static int io_fault(int eOp) {
  if (!g_io.bArmed || (g_io.mOps & eOp) == 0) return SQLITE_OK;
  g_io.nCalls++;
  if (!g_io.bTripped) {
    if (--g_io.iCountdown > 0) return SQLITE_OK;
    g_io.bTripped = 1;
    if (!g_io.bPersist) g_io.bArmed = 0;
  }
  g_io.nFail++;
  if (g_io.rcErr != SQLITE_IOERR) return g_io.rcErr;
  switch (eOp) {
    case FAULT_IO_READ: return SQLITE_IOERR_READ;
    case FAULT_IO_WRITE: return SQLITE_IOERR_WRITE;
    case FAULT_IO_SYNC: return SQLITE_IOERR_FSYNC;
    case FAULT_IO_TRUNCATE: return SQLITE_IOERR_TRUNCATE;
  }
  return SQLITE_IOERR;
}

#define REAL(f) (((ff_file *)(f))->pReal)

static int ff_close(sqlite3_file *f) {
  int rc = REAL(f)->pMethods->xClose(REAL(f));
  f->pMethods = NULL;
  return rc;
}
static int ff_read(sqlite3_file *f, void *p, int n, sqlite3_int64 o) {
  int rc = io_fault(FAULT_IO_READ);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xRead(REAL(f), p, n, o);
}
static int ff_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 o) {
  int rc = io_fault(FAULT_IO_WRITE);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xWrite(REAL(f), p, n, o);
}
static int ff_truncate(sqlite3_file *f, sqlite3_int64 n) {
  int rc = io_fault(FAULT_IO_TRUNCATE);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xTruncate(REAL(f), n);
}
static int ff_sync(sqlite3_file *f, int flags) {
  int rc = io_fault(FAULT_IO_SYNC);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int ff_file_size(sqlite3_file *f, sqlite3_int64 *p) {
  return REAL(f)->pMethods->xFileSize(REAL(f), p);
}
static int ff_lock(sqlite3_file *f, int e) {
  return REAL(f)->pMethods->xLock(REAL(f), e);
}
static int ff_unlock(sqlite3_file *f, int e) {
  return REAL(f)->pMethods->xUnlock(REAL(f), e);
}
static int ff_check_reserved(sqlite3_file *f, int *p) {
  return REAL(f)->pMethods->xCheckReservedLock(REAL(f), p);
}
static int ff_file_control(sqlite3_file *f, int op, void *p) {
  return REAL(f)->pMethods->xFileControl(REAL(f), op, p);
}
static int ff_sector_size(sqlite3_file *f) {
  return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int ff_device_chars(sqlite3_file *f) {
  return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int ff_shm_map(sqlite3_file *f, int i, int sz, int b,
                      void volatile **pp) {
  return REAL(f)->pMethods->xShmMap(REAL(f), i, sz, b, pp);
}
static int ff_shm_lock(sqlite3_file *f, int o, int n, int flags) {
  return REAL(f)->pMethods->xShmLock(REAL(f), o, n, flags);
}
static void ff_shm_barrier(sqlite3_file *f) {
  REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int ff_shm_unmap(sqlite3_file *f, int bDelete) {
  return REAL(f)->pMethods->xShmUnmap(REAL(f), bDelete);
}
static int ff_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp) {
  return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int ff_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p) {
  return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

/* One table per io_methods version, so SQLite never calls a method the
** wrapped file lacks. */
static sqlite3_io_methods g_aIo[3];

static void io_methods_init(void) {
  sqlite3_io_methods m = {
      3,               ff_close,       ff_read,          ff_write,
      ff_truncate,     ff_sync,        ff_file_size,     ff_lock,
      ff_unlock,       ff_check_reserved, ff_file_control, ff_sector_size,
      ff_device_chars, ff_shm_map,     ff_shm_lock,      ff_shm_barrier,
      ff_shm_unmap,    ff_fetch,       ff_unfetch};
  for (int i = 0; i < 3; i++) {
    g_aIo[i] = m;
    g_aIo[i].iVersion = i + 1;
  }
}

static int ff_open(sqlite3_vfs *pVfs, const char *zName, sqlite3_file *f,
                   int flags, int *pOutFlags) {
  sqlite3_file *pReal = (sqlite3_file *)&((ff_file *)f)[1];
  int rc;
  (void)pVfs;
  memset(pReal, 0, (size_t)g_io.pReal->szOsFile);
  ((ff_file *)f)->pReal = pReal;
  rc = g_io.pReal->xOpen(g_io.pReal, zName, pReal, flags, pOutFlags);
  if (pReal->pMethods) {
    int v = pReal->pMethods->iVersion;
    f->pMethods = &g_aIo[(v < 1 ? 1 : v > 3 ? 3 : v) - 1];
  } else {
    f->pMethods = NULL;
  }
  return rc;
}
static int ff_delete(sqlite3_vfs *v, const char *z, int bSync) {
  (void)v;
  return g_io.pReal->xDelete(g_io.pReal, z, bSync);
}
static int ff_access(sqlite3_vfs *v, const char *z, int flags, int *pOut) {
  (void)v;
  return g_io.pReal->xAccess(g_io.pReal, z, flags, pOut);
}
static int ff_full_pathname(sqlite3_vfs *v, const char *z, int n, char *zOut) {
  (void)v;
  return g_io.pReal->xFullPathname(g_io.pReal, z, n, zOut);
}
static void *ff_dlopen(sqlite3_vfs *v, const char *z) {
  (void)v;
  return g_io.pReal->xDlOpen(g_io.pReal, z);
}
static void ff_dlerror(sqlite3_vfs *v, int n, char *z) {
  (void)v;
  g_io.pReal->xDlError(g_io.pReal, n, z);
}
static void (*ff_dlsym(sqlite3_vfs *v, void *p, const char *z))(void) {
  (void)v;
  return g_io.pReal->xDlSym(g_io.pReal, p, z);
}
static void ff_dlclose(sqlite3_vfs *v, void *p) {
  (void)v;
  g_io.pReal->xDlClose(g_io.pReal, p);
}
static int ff_randomness(sqlite3_vfs *v, int n, char *z) {
  (void)v;
  return g_io.pReal->xRandomness(g_io.pReal, n, z);
}
static int ff_sleep(sqlite3_vfs *v, int n) {
  (void)v;
  return g_io.pReal->xSleep(g_io.pReal, n);
}
static int ff_current_time(sqlite3_vfs *v, double *p) {
  (void)v;
  return g_io.pReal->xCurrentTime(g_io.pReal, p);
}
static int ff_last_error(sqlite3_vfs *v, int n, char *z) {
  (void)v;
  return g_io.pReal->xGetLastError(g_io.pReal, n, z);
}
static int ff_current_time64(sqlite3_vfs *v, sqlite3_int64 *p) {
  (void)v;
  return g_io.pReal->xCurrentTimeInt64(g_io.pReal, p);
}

static sqlite3_vfs g_vfs;

int fault_vfs_install(void) {
  if (g_io.pReal) return SQLITE_OK;
  g_io.pReal = sqlite3_vfs_find(NULL);
  if (g_io.pReal == NULL) return SQLITE_ERROR;
  io_methods_init();
  memset(&g_vfs, 0, sizeof(g_vfs));
  /* Version 2 at most: the system-call overrides of version 3 stay with
  ** the real VFS. */
  g_vfs.iVersion = g_io.pReal->iVersion >= 2 ? 2 : 1;
  g_vfs.szOsFile = (int)sizeof(ff_file) + g_io.pReal->szOsFile;
  g_vfs.mxPathname = g_io.pReal->mxPathname;
  g_vfs.zName = "annexfault";
  g_vfs.xOpen = ff_open;
  g_vfs.xDelete = ff_delete;
  g_vfs.xAccess = ff_access;
  g_vfs.xFullPathname = ff_full_pathname;
  g_vfs.xDlOpen = ff_dlopen;
  g_vfs.xDlError = ff_dlerror;
  g_vfs.xDlSym = ff_dlsym;
  g_vfs.xDlClose = ff_dlclose;
  g_vfs.xRandomness = ff_randomness;
  g_vfs.xSleep = ff_sleep;
  g_vfs.xCurrentTime = ff_current_time;
  g_vfs.xGetLastError = ff_last_error;
  if (g_vfs.iVersion >= 2) g_vfs.xCurrentTimeInt64 = ff_current_time64;
  return sqlite3_vfs_register(&g_vfs, 1);
}

const char *fault_vfs_plain(void) {
  return g_io.pReal ? g_io.pReal->zName : NULL;
}

void fault_vfs_arm(int mOps, int rcErr, int iNth, int bPersist) {
  g_io.mOps = mOps;
  g_io.rcErr = rcErr;
  g_io.iCountdown = iNth;
  g_io.bPersist = bPersist;
  g_io.bTripped = 0;
  g_io.nFail = 0;
  g_io.nCalls = 0;
  g_io.bArmed = 1;
}

int fault_vfs_disarm(void) {
  int n = g_io.nFail;
  g_io.bArmed = 0;
  g_io.bTripped = 0;
  g_io.nFail = 0;
  return n;
}

int fault_vfs_calls(void) { return g_io.nCalls; }

/* Digests: everything a run produced or left, serialized *****************/

typedef struct digest {
  unsigned char *a;
  size_t n, nAlloc;
} digest;

static void dg_put(digest *d, const void *p, size_t n) {
  if (d->n + n > d->nAlloc) {
    size_t nNew = d->nAlloc ? 2 * d->nAlloc : 4096;
    while (nNew < d->n + n) nNew *= 2;
    d->a = realloc(d->a, nNew);
    assert_non_null(d->a);
    d->nAlloc = nNew;
  }
  if (n) memcpy(d->a + d->n, p, n);
  d->n += n;
}

static void dg_reset(digest *d) { d->n = 0; }
static void dg_free(digest *d) {
  free(d->a);
  memset(d, 0, sizeof(*d));
}
static int dg_equal(const digest *a, const digest *b) {
  return a->n == b->n && (a->n == 0 || memcmp(a->a, b->a, a->n) == 0);
}

/* Append the current row of s, every column with its type and bytes. */
static void dg_row(digest *d, sqlite3_stmt *s) {
  int nCol = sqlite3_column_count(s);
  dg_put(d, "R", 1);
  for (int i = 0; i < nCol; i++) {
    unsigned char t = (unsigned char)sqlite3_column_type(s, i);
    dg_put(d, &t, 1);
    if (t == SQLITE_INTEGER) {
      sqlite3_int64 v = sqlite3_column_int64(s, i);
      dg_put(d, &v, sizeof(v));
    } else if (t == SQLITE_FLOAT) {
      double v = sqlite3_column_double(s, i);
      dg_put(d, &v, sizeof(v));
    } else if (t == SQLITE_TEXT || t == SQLITE_BLOB) {
      const void *z = t == SQLITE_TEXT ? (const void *)sqlite3_column_text(s, i)
                                       : sqlite3_column_blob(s, i);
      int n = sqlite3_column_bytes(s, i);
      dg_put(d, &n, sizeof(n));
      dg_put(d, z, (size_t)n);
    }
  }
}

/* Run every statement of zSql; rows go to d (may be NULL). Returns the
** extended result code of the first failure, or SQLITE_OK. The message of
** a failure is copied to zErr. */
static int run_sql(sqlite3 *db, const char *zSql, digest *d, char *zErr,
                   size_t nErr) {
  const char *zTail = zSql;
  int rc = SQLITE_OK;
  if (zErr && nErr) zErr[0] = 0;
  while (rc == SQLITE_OK && zTail && *zTail) {
    sqlite3_stmt *s = NULL;
    rc = sqlite3_prepare_v2(db, zTail, -1, &s, &zTail);
    if (rc != SQLITE_OK || s == NULL) break;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (d) dg_row(d, s);
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    sqlite3_finalize(s);
    if (d) dg_put(d, ";", 1);
  }
  if (rc != SQLITE_OK && zErr && nErr) {
    snprintf(zErr, nErr, "%s", sqlite3_errmsg(db));
  }
  return rc;
}

int fault_open(const char *zPath, const char *zVfs, sqlite3 **pDb) {
  sqlite3 *db = NULL;
  char *zErr = NULL;
  /* One thread: graph builds are then deterministic, so the state after a
  ** faulted run can be compared byte for byte with a clean run's. */
  annex_thread_set(1);
  int rc = sqlite3_open_v2(zPath, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, zVfs);
  *pDb = NULL;
  if (rc == SQLITE_OK) {
    sqlite3_extended_result_codes(db, 1);
    rc = sqlite3_annex_init(db, &zErr, NULL);
    sqlite3_free(zErr);
  }
  if (rc != SQLITE_OK) {
    sqlite3_close(db);
    return rc;
  }
  *pDb = db;
  return SQLITE_OK;
}

static void close_or_fail(sqlite3 *db, const char *zWhat) {
  int rc = sqlite3_close(db);
  if (rc != SQLITE_OK) {
    /* Statements left unfinalized: a leak of prepared statements. */
    sqlite3_stmt *s = sqlite3_next_stmt(db, NULL);
    fail_msg("%s: sqlite3_close returned %d; unfinalized statement: %s",
             zWhat, rc, s ? sqlite3_sql(s) : "(none)");
  }
}

/* The state of the database at zPath, read through zVfs without faults:
** the schema, then every table's rows (annex tables through annex, which
** must pass its integrity-check; shadow and ordinary tables directly).
** Fails the test if the database does not pass its integrity checks. */
static void state_digest(const char *zPath, const char *zVfs, digest *d,
                         const char *zWhat) {
  sqlite3 *db;
  sqlite3_stmt *s;
  digest ic = {0};
  char zErr[512];
  int rc = fault_open(zPath, zVfs, &db);
  if (rc != SQLITE_OK) fail_msg("%s: reopening the database: %d", zWhat, rc);
  dg_reset(d);
  rc = run_sql(db, "PRAGMA integrity_check", &ic, zErr, sizeof(zErr));
  if (rc != SQLITE_OK) {
    fail_msg("%s: PRAGMA integrity_check failed (%d): %s", zWhat, rc, zErr);
  }
  {
    /* one row, one text column "ok": R, type, length, "ok", ";" */
    static const unsigned char aOk[] = {'R', SQLITE_TEXT, 2, 0, 0, 0,
                                        'o', 'k', ';'};
    if (ic.n != sizeof(aOk) || memcmp(ic.a, aOk, sizeof(aOk)) != 0) {
      char *z = NULL;
      s = NULL;
      sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL);
      if (s && sqlite3_step(s) == SQLITE_ROW) {
        z = sqlite3_mprintf("%s", sqlite3_column_text(s, 0));
      }
      sqlite3_finalize(s);
      fail_msg("%s: PRAGMA integrity_check: %s", zWhat, z ? z : "?");
    }
  }
  dg_free(&ic);
  rc = sqlite3_prepare_v2(db,
                          "SELECT type, name, tbl_name, sql FROM sqlite_schema "
                          "ORDER BY type, name", -1, &s, NULL);
  assert_int_equal(rc, SQLITE_OK);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    const char *zType = (const char *)sqlite3_column_text(s, 0);
    const char *zName = (const char *)sqlite3_column_text(s, 1);
    const char *zSql = (const char *)sqlite3_column_text(s, 3);
    char *zQ;
    dg_row(d, s);
    if (strcmp(zType, "table") != 0 || zSql == NULL) continue;
    if (sqlite3_strnicmp(zSql, "CREATE VIRTUAL TABLE", 20) == 0) {
      zQ = sqlite3_mprintf("INSERT INTO \"%w\"(\"%w\") "
                           "VALUES('integrity-check')", zName, zName);
      rc = run_sql(db, zQ, NULL, zErr, sizeof(zErr));
      sqlite3_free(zQ);
      if (rc != SQLITE_OK) {
        fail_msg("%s: annex integrity-check of %s failed (%d): %s", zWhat,
                 zName, rc, zErr);
      }
      zQ = sqlite3_mprintf("SELECT rowid, * FROM \"%w\" ORDER BY rowid",
                           zName);
    } else {
      zQ = sqlite3_mprintf("SELECT * FROM \"%w\"", zName);
    }
    rc = run_sql(db, zQ, d, zErr, sizeof(zErr));
    sqlite3_free(zQ);
    if (rc != SQLITE_OK) {
      fail_msg("%s: reading table %s failed (%d): %s", zWhat, zName, rc, zErr);
    }
  }
  assert_int_equal(rc, SQLITE_DONE);
  sqlite3_finalize(s);
  close_or_fail(db, zWhat);
}

/* Environment ************************************************************/

static void remove_db_files(const char *zPath) {
  static const char *azSuffix[] = {"", "-journal", "-wal", "-shm"};
  for (size_t i = 0; i < sizeof(azSuffix) / sizeof(azSuffix[0]); i++) {
    char z[4096];
    snprintf(z, sizeof(z), "%s%s", zPath, azSuffix[i]);
    unlink(z);
  }
}

/* The work database becomes a copy of the template (no journal, no WAL). */
static void copy_template(const fault_env *pEnv) {
  FILE *in, *out;
  char aBuf[65536];
  size_t n;
  remove_db_files(pEnv->zWork);
  in = fopen(pEnv->zTemplate, "rb");
  out = fopen(pEnv->zWork, "wb");
  assert_non_null(in);
  assert_non_null(out);
  while ((n = fread(aBuf, 1, sizeof(aBuf), in)) > 0) {
    assert_int_equal(fwrite(aBuf, 1, n, out), n);
  }
  fclose(in);
  assert_int_equal(fclose(out), 0);
}

/* The bytes of file zPath (empty if there is none). */
static void read_file(const char *zPath, digest *d) {
  FILE *in = fopen(zPath, "rb");
  char aBuf[65536];
  size_t n;
  dg_reset(d);
  if (in == NULL) return;
  while ((n = fread(aBuf, 1, sizeof(aBuf), in)) > 0) dg_put(d, aBuf, n);
  fclose(in);
}

/* 1 if zPath has a rollback journal or a WAL file beside it. */
static int has_journal(const char *zPath) {
  char z[4096];
  snprintf(z, sizeof(z), "%s-journal", zPath);
  if (access(z, F_OK) == 0) return 1;
  snprintf(z, sizeof(z), "%s-wal", zPath);
  return access(z, F_OK) == 0;
}

static char *path_join(const char *zDir, const char *zFile) {
  size_t n = strlen(zDir) + strlen(zFile) + 2;
  char *z = malloc(n);
  assert_non_null(z);
  snprintf(z, n, "%s/%s", zDir, zFile);
  return z;
}

/* A new empty directory: under $ANNEX_FAULT_DIR if set, else /dev/shm
** when it is writable (thousands of runs, each with a few fsyncs: a disk
** makes the loops wait), else st_tempdir's. free() the result. */
static char *fault_tempdir(void) {
  const char *zBase = getenv("ANNEX_FAULT_DIR");
  char *z;
  size_t n;
  if (zBase == NULL || zBase[0] == 0) {
    if (access("/dev/shm", W_OK | X_OK) != 0) return st_tempdir();
    zBase = "/dev/shm";
  }
  n = strlen(zBase) + 32;
  z = malloc(n);
  assert_non_null(z);
  snprintf(z, n, "%s/annex-fault-XXXXXX", zBase);
  if (mkdtemp(z) == NULL) fail_msg("mkdtemp(%s) failed", z);
  return z;
}

void fault_env_init(fault_env *pEnv, const char *zSetup, const char *zVfs,
                    const char *zPlain) {
  sqlite3 *db;
  char zErr[512];
  int rc;
  memset(pEnv, 0, sizeof(*pEnv));
  pEnv->zDir = fault_tempdir();
  pEnv->zTemplate = path_join(pEnv->zDir, "template.db");
  pEnv->zWork = path_join(pEnv->zDir, "work.db");
  pEnv->zVfs = zVfs;
  pEnv->zPlain = zPlain;
  rc = fault_open(pEnv->zTemplate, zPlain, &db);
  assert_int_equal(rc, SQLITE_OK);
  rc = run_sql(db, zSetup, NULL, zErr, sizeof(zErr));
  if (rc != SQLITE_OK) fail_msg("template setup failed (%d): %s", rc, zErr);
  close_or_fail(db, "template");
}

void fault_env_free(fault_env *pEnv) {
  remove_db_files(pEnv->zWork);
  remove_db_files(pEnv->zTemplate);
  st_rmdir(pEnv->zDir);
  free(pEnv->zDir);
  free(pEnv->zTemplate);
  free(pEnv->zWork);
  memset(pEnv, 0, sizeof(*pEnv));
}

int fault_long_mode(void) {
  const char *z = getenv("ANNEX_FAULT_LONG");
  return z && z[0] && strcmp(z, "0") != 0;
}

/* The stride of a loop of pEnv: its own (nStrideAfter, nMaxRuns), or, with
** ANNEX_FAULT_RUNS=n (n >= 10), about n runs per loop, every N up to n/2
** (the sanitizer stage of scripts/test.sh: the same sites, sampled). */
static void fault_budget(const fault_env *pEnv, int *pnAfter, int *pnMax) {
  const char *z = getenv("ANNEX_FAULT_RUNS");
  int n = z ? atoi(z) : 0;
  *pnAfter = pEnv->nStrideAfter;
  *pnMax = pEnv->nMaxRuns;
  if (n >= 10) {
    *pnMax = n;
    if (*pnAfter <= 0 || *pnAfter > n / 2) *pnAfter = n / 2;
  }
}

/* The loop ***************************************************************/

/* Run the operation on *pDb (the warm connection). For a reopen, *pDb is
** closed and replaced (NULL if the new open failed). */
static int run_op(const fault_env *pEnv, const fault_op *pOp, sqlite3 **pDb,
                  digest *d, char *zErr, size_t nErr) {
  zErr[0] = 0;
  if (pOp->bReopen) {
    int rc = sqlite3_close(*pDb);
    if (rc != SQLITE_OK) {
      snprintf(zErr, nErr, "sqlite3_close: %d", rc);
      return rc;
    }
    *pDb = NULL;
    rc = fault_open(pEnv->zWork, pEnv->zVfs, pDb);
    if (rc != SQLITE_OK) {
      snprintf(zErr, nErr, "open: %s", sqlite3_errstr(rc));
      return rc;
    }
    if (pEnv->zConnSql) {
      rc = run_sql(*pDb, pEnv->zConnSql, NULL, zErr, nErr);
      if (rc != SQLITE_OK) return rc;
    }
  }
  {
    int rc = run_sql(*pDb, pOp->zSql, d, zErr, nErr);
    if (pOp->zFinally) {
      char zErr2[512];
      int rc2 = run_sql(*pDb, pOp->zFinally, d, zErr2, sizeof(zErr2));
      if (rc == SQLITE_OK && rc2 != SQLITE_OK) {
        rc = rc2;
        snprintf(zErr, nErr, "%s", zErr2);
      }
    }
    return rc;
  }
}

/* Open the work database and run the warm-up SQL; no faults are armed. */
static sqlite3 *open_warm(const fault_env *pEnv, const fault_op *pOp) {
  sqlite3 *db;
  char zErr[512];
  int rc = fault_open(pEnv->zWork, pEnv->zVfs, &db);
  if (rc != SQLITE_OK) fail_msg("%s: open failed: %d", pOp->zName, rc);
  if (pEnv->zConnSql) {
    rc = run_sql(db, pEnv->zConnSql, NULL, zErr, sizeof(zErr));
    if (rc != SQLITE_OK) {
      fail_msg("%s: %s failed (%d): %s", pOp->zName, pEnv->zConnSql, rc, zErr);
    }
  }
  if (pOp->zWarm) {
    rc = run_sql(db, pOp->zWarm, NULL, zErr, sizeof(zErr));
    if (rc != SQLITE_OK) {
      fail_msg("%s: warm-up failed (%d): %s", pOp->zName, rc, zErr);
    }
  }
  return db;
}

/* The two states a run may leave, each as a digest (state_digest) and,
** for a quick first comparison, as the bytes of the database file. */
typedef struct fault_states {
  digest before, after;       /* state_digest of each */
  digest fileBefore, fileAfter; /* the database file of each (empty: none) */
  digest file, state;         /* scratch */
} fault_states;

#define STATE_BEFORE 1
#define STATE_AFTER 2

/* Which state the work database holds: STATE_BEFORE, STATE_AFTER, both
** (an operation that changes nothing) or 0. A file byte-identical to one
** known state (with no journal or WAL beside it to replay) is that state:
** its integrity was checked when the state was recorded. Anything else is
** reopened and checked in full. */
static int classify_state(const fault_env *pEnv, fault_states *p,
                          const char *zWhat) {
  int bSame = dg_equal(&p->before, &p->after);
  int eState = 0;
  if (!has_journal(pEnv->zWork)) {
    read_file(pEnv->zWork, &p->file);
    if (p->fileBefore.n && dg_equal(&p->file, &p->fileBefore)) {
      eState = STATE_BEFORE;
    } else if (p->fileAfter.n && dg_equal(&p->file, &p->fileAfter)) {
      eState = STATE_AFTER;
    }
  }
  if (eState == 0) {
    state_digest(pEnv->zWork, pEnv->zPlain, &p->state, zWhat);
    if (dg_equal(&p->state, &p->before)) eState = STATE_BEFORE;
    else if (dg_equal(&p->state, &p->after)) eState = STATE_AFTER;
  }
  return eState && bSame ? STATE_BEFORE | STATE_AFTER : eState;
}

/* ANNEX_FAULT_VERBOSE=1: one line per run. */
static int g_bVerbose = -1;

void fault_loop(fault_env *pEnv, const fault_op *pOp, const fault_kind *pKind,
                fault_stats *pStats) {
  fault_states st;
  digest result = {0}, got = {0};
  sqlite3 *db;
  char zErr[512], zWhat[256];
  int rc, nCalls = 0, nStride = 1, bLong = fault_long_mode();
  int nAfter = 0, nMax = 0;
  sqlite3_int64 nOut0, nByte0, nOut, nByte;
  memset(&st, 0, sizeof(st));
  if (g_bVerbose < 0) {
    const char *z = getenv("ANNEX_FAULT_VERBOSE");
    g_bVerbose = z && z[0] && strcmp(z, "0") != 0;
  }

  /* The state before, and the fault-free run: result and state after. */
  copy_template(pEnv);
  read_file(pEnv->zWork, &st.fileBefore);
  snprintf(zWhat, sizeof(zWhat), "%s: before", pOp->zName);
  state_digest(pEnv->zWork, pEnv->zPlain, &st.before, zWhat);
  db = open_warm(pEnv, pOp);
  pKind->xArm(pKind->pArg, 0x7fffffff); /* counts sites, never fails */
  rc = run_op(pEnv, pOp, &db, &result, zErr, sizeof(zErr));
  if (!pKind->bThroughClose) nCalls = pKind->xCalls(pKind->pArg);
  close_or_fail(db, pOp->zName);
  if (pKind->bThroughClose) nCalls = pKind->xCalls(pKind->pArg);
  assert_int_equal(pKind->xDisarm(pKind->pArg), 0);
  if (rc != SQLITE_OK) {
    fail_msg("%s: fails without faults (%d): %s", pOp->zName, rc, zErr);
  }
  if (!has_journal(pEnv->zWork)) read_file(pEnv->zWork, &st.fileAfter);
  snprintf(zWhat, sizeof(zWhat), "%s: after", pOp->zName);
  state_digest(pEnv->zWork, pEnv->zPlain, &st.after, zWhat);
  pStats->nCalls += nCalls;
  fault_budget(pEnv, &nAfter, &nMax);
  if (!bLong && nAfter > 0 && nCalls > nMax) {
    nStride = (nCalls - nAfter) / (nMax - nAfter);
    if (nStride < 1) nStride = 1;
  }

  for (int iNth = 1;;) {
    int nFault = 0, bDisarmed = 0, bRetried = 0, eState = 0;
    snprintf(zWhat, sizeof(zWhat), "%s, %s fault at %d", pOp->zName,
             pKind->zName, iNth);
    copy_template(pEnv);
    fault_malloc_usage(&nOut0, &nByte0);
    db = open_warm(pEnv, pOp);
    dg_reset(&got);
    pKind->xArm(pKind->pArg, iNth);
    rc = run_op(pEnv, pOp, &db, &got, zErr, sizeof(zErr));
    if (!pKind->bThroughClose || (rc != SQLITE_OK && pKind->bRetry)) {
      nFault = pKind->xDisarm(pKind->pArg);
      bDisarmed = 1;
    }
    if (g_bVerbose) {
      print_message("%s: rc %d%s%s\n", zWhat, rc, zErr[0] ? ": " : "", zErr);
    }
    pStats->nRun++;
    if (rc != SQLITE_OK) {
      if (bDisarmed && nFault == 0) {
        fail_msg("%s: failed (%d: %s) although no fault was injected", zWhat,
                 rc, zErr);
      }
      if (!pKind->xExplains(rc)) {
        fail_msg("%s: failed with error %d (%s), which the fault does not "
                 "explain", zWhat, rc, zErr);
      }
      pStats->nError++;
    }
    if (rc != SQLITE_OK && pKind->bRetry) {
      /* What the failure left, seen from another connection; then, unless
      ** the operation took effect after all (an I/O error after the commit
      ** point), the same operation again on the failed connection, without
      ** faults: it must work as if nothing had happened (no state of
      ** annex's, cached on the connection, may be left broken by the
      ** fault). A transaction the failure left open (its COMMIT failed
      ** to prepare) is rolled back first, as the application would. */
      if (db && !sqlite3_get_autocommit(db)) {
        char zErr2[512];
        if (run_sql(db, "ROLLBACK", NULL, zErr2, sizeof(zErr2)) != SQLITE_OK) {
          fail_msg("%s: ROLLBACK after the failure failed: %s", zWhat, zErr2);
        }
      }
      eState = classify_state(pEnv, &st, zWhat);
      if (eState & STATE_BEFORE) pStats->nBefore++;
      else if (eState & STATE_AFTER) pStats->nAfter++;
      else fail_msg("%s: failed (%d: %s) and left a database that holds "
                    "neither the state before nor the state after", zWhat,
                    rc, zErr);
    }
    if (rc != SQLITE_OK && pKind->bRetry && (eState & STATE_BEFORE)) {
      dg_reset(&got);
      rc = run_op(pEnv, pOp, &db, &got, zErr, sizeof(zErr));
      if (rc != SQLITE_OK) {
        fail_msg("%s: the same operation, retried without faults on the same "
                 "connection, failed (%d: %s)", zWhat, rc, zErr);
      }
      bRetried = 1;
    }
    if (db) close_or_fail(db, zWhat);
    if (!bDisarmed) nFault = pKind->xDisarm(pKind->pArg);
    fault_malloc_usage(&nOut, &nByte);
    if (nOut != nOut0 || nByte != nByte0) {
      fail_msg("%s: leak: %lld allocations (%lld bytes) outstanding after "
               "close (rc %d: %s)", zWhat, (long long)(nOut - nOut0),
               (long long)(nByte - nByte0), rc, zErr);
    }
    eState = classify_state(pEnv, &st, zWhat);
    if (rc == SQLITE_OK) {
      if (!dg_equal(&got, &result)) {
        fail_msg("%s: %s with a result that differs from the fault-free run",
                 zWhat, bRetried ? "the retry succeeded" : "succeeded");
      }
      if ((eState & STATE_AFTER) == 0) {
        fail_msg("%s: %s but the database does not hold the state after "
                 "the operation%s", zWhat,
                 bRetried ? "the retry succeeded" : "succeeded",
                 eState == STATE_BEFORE ? " (it holds the state before)" : "");
      }
      if (nFault > 0 && !bRetried) pStats->nBenign++;
    } else {
      if (nFault == 0) {
        fail_msg("%s: failed (%d: %s) although no fault was injected", zWhat,
                 rc, zErr);
      }
      if (pKind->bRetry) {
        /* counted above; the failed operation took effect */
        if ((eState & STATE_AFTER) == 0) {
          fail_msg("%s: failed (%d: %s) after the commit, but the database "
                   "does not hold the state after", zWhat, rc, zErr);
        }
      } else if (eState & STATE_BEFORE) pStats->nBefore++;
      else if (eState & STATE_AFTER) pStats->nAfter++;
      else fail_msg("%s: failed (%d: %s) and left a database that holds "
                    "neither the state before nor the state after", zWhat,
                    rc, zErr);
    }
    if (nFault == 0) break;
    pStats->nFaulted++;
    pStats->nInjected += nFault;
    if (iNth > 4 * (nCalls + 100)) {
      fail_msg("%s: still faulting far past the %d fault sites of the "
               "fault-free run", zWhat, nCalls);
    }
    if (nStride > 1 && iNth >= nAfter) {
      int iNext = iNth + nStride;
      /* Always finish with the first N past the fault-free run's sites. */
      if (iNth <= nCalls && iNext > nCalls + 1) iNext = nCalls + 1;
      if (iNth > nCalls) iNext = iNth + 1;
      iNth = iNext;
    } else {
      iNth++;
    }
  }
  dg_free(&st.before);
  dg_free(&st.after);
  dg_free(&st.fileBefore);
  dg_free(&st.fileAfter);
  dg_free(&st.file);
  dg_free(&st.state);
  dg_free(&result);
  dg_free(&got);
}

/* The workload ***********************************************************/

/* Deterministic vector number i, as JSON. */
static void append_vec(sqlite3_str *s, unsigned i) {
  uint64_t x = 0x9E3779B97F4A7C15ull * (i + 1);
  sqlite3_str_appendall(s, "'[");
  for (int d = 0; d < 8; d++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    /* multiples of 1/64 in [-1, 1): exact in float32 and in JSON */
    sqlite3_str_appendf(s, "%s%.9g", d ? "," : "",
                        (int)(x % 128) / 64.0 - 1.0);
  }
  sqlite3_str_appendall(s, "]'");
}

char *fault_setup_sql(const char *zPragma) {
  static const char *azCat[] = {"news", "tech", "arts", "sports", NULL};
  sqlite3_str *s = sqlite3_str_new(NULL);
  if (zPragma) sqlite3_str_appendf(s, "%s;\n", zPragma);
  sqlite3_str_appendall(
      s, "CREATE VIRTUAL TABLE t USING annex(emb float[8], cat text, "
         "year integer, score real, +body text, chunk_size=8);\n"
         "CREATE TABLE src(v, cat, year, score, body);\n"
         "CREATE TABLE qtab(v);\n");
  for (unsigned i = 1; i <= 40; i++) {
    const char *zCat = azCat[i % 5];
    sqlite3_str_appendf(s, "INSERT INTO t(rowid, emb, cat, year, score, body) "
                           "VALUES(%u, ", i);
    append_vec(s, i);
    sqlite3_str_appendf(s, ", %Q, %u, %g, 'body of row %u');\n", zCat,
                        2000 + i % 7, i * 0.25, i);
  }
  sqlite3_str_appendall(s, "DELETE FROM t WHERE rowid = 13;\n");
  /* The same rows in a table with an HNSW graph (tiny m so the graph has
  ** several levels and full neighbour lists). */
  sqlite3_str_appendall(
      s, "CREATE VIRTUAL TABLE h USING annex(emb float[8], cat text, "
         "index=hnsw(m=4, ef_construction=16), chunk_size=8);\n"
         "INSERT INTO h(rowid, emb, cat) SELECT rowid, emb, cat FROM t;\n"
         "DELETE FROM h WHERE rowid IN (2, 9);\n");
  /* And with a DiskANN graph (tiny r and PQ so lists fill and prune). */
  sqlite3_str_appendall(
      s, "CREATE VIRTUAL TABLE g USING annex(emb float[8], cat text, "
         "index=diskann(r=4, l_build=8, pq_bytes=2, cache_mb=1), "
         "chunk_size=8);\n"
         "INSERT INTO g(rowid, emb, cat) SELECT rowid, emb, cat FROM t;\n"
         "DELETE FROM g WHERE rowid IN (2, 9);\n");
  /* And with an IVF index: nlist=2 trains at 78 live rows, here at the
  ** commit of the insert that reaches them (pq, so k-means runs for the
  ** lists and the codebooks); w stays one row short of training. */
  sqlite3_str_appendall(
      s, "CREATE VIRTUAL TABLE v USING annex(emb float[8], cat text, "
         "index=ivf(nlist=2, quantizer=pq, m=2, nprobe=1), chunk_size=8);\n"
         "INSERT INTO v(rowid, emb, cat) SELECT rowid, emb, cat FROM t;\n");
  for (unsigned i = 301; i <= 350; i++) {
    sqlite3_str_appendf(s, "INSERT INTO v(rowid, emb, cat) VALUES(%u, ", i);
    append_vec(s, i);
    sqlite3_str_appendf(s, ", %Q);\n", azCat[i % 5]);
  }
  sqlite3_str_appendall(
      s, "DELETE FROM v WHERE rowid IN (2, 9);\n"
         "CREATE VIRTUAL TABLE w USING annex(emb float[8], cat text, "
         "index=ivf(nlist=2), chunk_size=8);\n"
         "INSERT INTO w(rowid, emb, cat) SELECT rowid, emb, cat FROM v "
         "ORDER BY rowid LIMIT 77;\n");
  for (unsigned i = 100; i < 120; i++) {
    sqlite3_str_appendall(s, "INSERT INTO src VALUES(annex_vector(");
    append_vec(s, i);
    sqlite3_str_appendf(s, "), %Q, %u, %g, 'copied row %u');\n", azCat[i % 5],
                        1990 + i % 11, i * 0.5, i);
  }
  for (unsigned i = 200; i < 203; i++) {
    sqlite3_str_appendall(s, "INSERT INTO qtab VALUES(annex_vector(");
    append_vec(s, i);
    sqlite3_str_appendall(s, "));\n");
  }
  return sqlite3_str_finish(s);
}

#define Q "'[0.125,-0.25,0.375,0.0625,-0.5,0.25,0,0.1875]'"
#define Q2 "[-0.5,0.5,0.25,-0.125,0,0.75,-0.25,0.5]"
#define WARM_CONNECT "SELECT count(*) FROM t WHERE rowid = 1"
#define WARM_SCHEMA "SELECT count(*) FROM sqlite_schema"
#define WARM_HNSW "SELECT count(*) FROM h WHERE rowid = 1"
#define WARM_DISKANN "SELECT count(*) FROM g WHERE rowid = 1"
#define WARM_IVF "SELECT count(*) FROM v WHERE rowid = 1"

static const fault_op g_aOp[] = {
    {"CREATE", WARM_SCHEMA,
     "CREATE VIRTUAL TABLE t2 USING annex(emb float[8], cat text, +note, "
     "chunk_size=8)", 0, NULL},
    {"INSERT", WARM_CONNECT,
     "INSERT INTO t(rowid, emb, cat, year, score, body) VALUES(41, " Q
     ", 'news', 2024, 1.5, 'a new row')", 0, NULL},
    {"INSERT SELECT", WARM_CONNECT,
     "INSERT INTO t(emb, cat, year, score, body) "
     "SELECT v, cat, year, score, body FROM src", 0, NULL},
    {"INSERT OR REPLACE", WARM_CONNECT,
     "INSERT OR REPLACE INTO t(rowid, emb, cat, year, score, body) "
     "VALUES(3, " Q ", 'tech', 1999, -2.5, 'replaced')", 0, NULL},
    {"UPDATE vector", WARM_CONNECT,
     "UPDATE t SET emb = '" Q2 "' WHERE rowid IN (2, 17, 40)", 0, NULL},
    {"UPDATE metadata", WARM_CONNECT,
     "UPDATE t SET cat = 'arts', year = year + 1, body = 'changed' "
     "WHERE rowid % 4 = 0", 0, NULL},
    {"UPDATE rowid", WARM_CONNECT,
     "UPDATE OR REPLACE t SET rowid = rowid + 1 WHERE rowid IN (5, 22, 31)",
     0, NULL},
    {"DELETE", WARM_CONNECT,
     "DELETE FROM t WHERE rowid <= 8 OR rowid IN (20, 33)", 0, NULL},
    {"k-NN query", WARM_CONNECT,
     "SELECT rowid, distance, emb, cat, year, score, body FROM t "
     "WHERE emb MATCH " Q " AND k = 5;"
     "SELECT rowid, distance FROM t WHERE emb MATCH " Q
     " ORDER BY distance LIMIT 3", 0, NULL},
    {"filtered query", WARM_CONNECT,
     "SELECT rowid, distance, cat, year FROM t "
     "WHERE emb MATCH annex_vector(" Q ") AND k = 4 "
     "AND cat IN ('news', 'tech', 'arts') AND year >= 2002 "
     "AND rowid IN (1, 2, 3, 4, 6, 7, 9, 10, 11, 12, 14, 15, 16, 18, 19, 21, "
     "22, 23, 24, 26, 27, 28, 29, 30, 31, 32, 34, 36, 38, 39)", 0, NULL},
    {"batch query", WARM_SCHEMA,
     "SELECT query, rowid, distance FROM annex_knn('t', '[" Q2 "," Q2 "]', "
     "3);"
     "SELECT query, rowid, distance FROM annex_knn('t', 'qtab', 2)", 0, NULL},
    {"radius query", WARM_CONNECT,
     "SELECT rowid, distance FROM t WHERE emb MATCH " Q
     " AND distance < 1.6 ORDER BY distance", 0, NULL},
    {"integrity-check", WARM_CONNECT,
     "INSERT INTO t(t) VALUES('integrity-check')", 0, NULL},
    {"annex_info", WARM_SCHEMA,
     "SELECT key, value FROM annex_info('t') WHERE key <> 'memory_sqlite'", 0, NULL},
    {"scan and lookup", WARM_CONNECT,
     "SELECT rowid, emb, cat, year, score, body FROM t WHERE rowid = 7;"
     "SELECT rowid, cat, year FROM t WHERE year > 2003 ORDER BY rowid", 0,
     NULL},
    {"vector functions", WARM_CONNECT,
     "SELECT annex_json(emb), annex_dims(emb), annex_distance(emb, " Q "), "
     "annex_distance(emb, " Q ", 'cosine'), annex_normalize(emb), "
     "annex_vector(annex_json(emb)) = emb, annex_int8('[1,-2,3]'), "
     "annex_bit('[1,0,1,1,0,0,0,1]') FROM t WHERE rowid IN (1, 2, 3)", 0,
     NULL},
    {"reopen", WARM_CONNECT,
     "SELECT rowid, distance FROM t WHERE emb MATCH " Q " AND k = 3", 1, NULL},
    {"DROP", WARM_SCHEMA, "DROP TABLE t", 0, NULL},
    {"RENAME", WARM_SCHEMA, "ALTER TABLE t RENAME TO u", 0, NULL},
    /* One write in a transaction that is committed even when the write
    ** failed: SQLite rolls the whole transaction back after an out-of-
    ** memory or I/O error in a statement without a statement journal (a
    ** one-row INSERT), or just the statement (a many-row DELETE: annex's
    ** xSavepoint / xRollbackTo); an error code that is not one of those,
    ** returned after a partial write, would be committed half done. */
    {"txn INSERT", WARM_CONNECT,
     "BEGIN; INSERT INTO t(rowid, emb, cat, year, score, body) VALUES(41, " Q
     ", 'news', 2024, 1.5, 'a new row')", 0, "COMMIT"},
    {"txn DELETE", WARM_CONNECT,
     "BEGIN; DELETE FROM t WHERE rowid <= 8 OR rowid IN (20, 33)", 0,
     "COMMIT"},
    /* index=hnsw: writes link at commit, commands rebuild the graph */
    {"hnsw INSERT", WARM_HNSW,
     "INSERT INTO h(rowid, emb, cat) VALUES(41, " Q ", 'news')", 0, NULL},
    {"hnsw INSERT SELECT", WARM_HNSW,
     "INSERT INTO h(emb, cat) SELECT v, cat FROM src", 0, NULL},
    {"hnsw UPDATE vector", WARM_HNSW,
     "UPDATE h SET emb = '" Q2 "' WHERE rowid IN (3, 17, 40)", 0, NULL},
    {"hnsw DELETE", WARM_HNSW,
     "DELETE FROM h WHERE rowid <= 8 OR rowid IN (20, 33)", 0, NULL},
    {"hnsw k-NN query", WARM_HNSW,
     "SELECT rowid, distance, cat FROM h WHERE emb MATCH " Q " AND k = 5 "
     "AND ef_search = 8;"
     "SELECT rowid, distance FROM h WHERE emb MATCH " Q " AND k = 3 "
     "AND cat IN ('news', 'tech') AND rowid > 4", 0, NULL},
    {"hnsw reopen", WARM_HNSW,
     "SELECT rowid, distance FROM h WHERE emb MATCH " Q " AND k = 4", 1,
     NULL},
    {"hnsw rebuild", WARM_HNSW, "INSERT INTO h(h) VALUES('rebuild')", 0,
     NULL},
    {"hnsw optimize", WARM_HNSW, "INSERT INTO h(h) VALUES('optimize')", 0,
     NULL},
    {"hnsw txn INSERT", WARM_HNSW,
     "BEGIN; INSERT INTO h(emb, cat) SELECT v, cat FROM src; "
     "SELECT rowid, distance FROM h WHERE emb MATCH " Q " AND k = 3", 0,
     "COMMIT"},
    {"hnsw DROP", WARM_SCHEMA, "DROP TABLE h", 0, NULL},
    /* index=diskann: small writes link one by one, big ones rebuild */
    {"diskann INSERT", WARM_DISKANN,
     "INSERT INTO g(rowid, emb, cat) VALUES(41, " Q ", 'news')", 0, NULL},
    {"diskann INSERT SELECT", WARM_DISKANN,
     "INSERT INTO g(emb, cat) SELECT v, cat FROM src", 0, NULL},
    {"diskann UPDATE vector", WARM_DISKANN,
     "UPDATE g SET emb = '" Q2 "' WHERE rowid IN (3, 17, 40)", 0, NULL},
    {"diskann DELETE", WARM_DISKANN,
     "DELETE FROM g WHERE rowid <= 8 OR rowid IN (20, 33)", 0, NULL},
    {"diskann k-NN query", WARM_DISKANN,
     "SELECT rowid, distance, cat FROM g WHERE emb MATCH " Q " AND k = 5 "
     "AND search_list = 8;"
     "SELECT rowid, distance FROM g WHERE emb MATCH " Q " AND k = 3 "
     "AND cat IN ('news', 'tech') AND rowid > 4", 0, NULL},
    {"diskann reopen", WARM_DISKANN,
     "SELECT rowid, distance FROM g WHERE emb MATCH " Q " AND k = 4", 1,
     NULL},
    {"diskann rebuild", WARM_DISKANN, "INSERT INTO g(g) VALUES('rebuild')", 0,
     NULL},
    {"diskann optimize", WARM_DISKANN, "INSERT INTO g(g) VALUES('optimize')",
     0, NULL},
    {"diskann txn INSERT", WARM_DISKANN,
     "BEGIN; INSERT INTO g(rowid, emb, cat) VALUES(41, " Q ", 'news'); "
     "SELECT rowid, distance FROM g WHERE emb MATCH " Q " AND k = 3", 0,
     "COMMIT"},
    {"diskann integrity-check", WARM_DISKANN,
     "INSERT INTO g(g) VALUES('integrity-check')", 0, NULL},
    {"diskann DROP", WARM_SCHEMA, "DROP TABLE g", 0, NULL},
    /* index=ivf: trained lists (pq), writes append to them */
    {"ivf INSERT", WARM_IVF,
     "INSERT INTO v(rowid, emb, cat) VALUES(41, " Q ", 'news')", 0, NULL},
    {"ivf INSERT SELECT", WARM_IVF,
     "INSERT INTO v(emb, cat) SELECT v, cat FROM src", 0, NULL},
    {"ivf UPDATE vector", WARM_IVF,
     "UPDATE v SET emb = '" Q2 "' WHERE rowid IN (3, 17, 40)", 0, NULL},
    {"ivf DELETE", WARM_IVF,
     "DELETE FROM v WHERE rowid <= 8 OR rowid IN (20, 33, 310)", 0, NULL},
    {"ivf k-NN query", WARM_IVF,
     "SELECT rowid, distance, cat FROM v WHERE emb MATCH " Q " AND k = 5;"
     "SELECT rowid, distance FROM v WHERE emb MATCH " Q " AND k = 4 "
     "AND nprobe = 2", 0, NULL},
    {"ivf filtered query", WARM_IVF,
     "SELECT rowid, distance FROM v WHERE emb MATCH " Q " AND k = 3 "
     "AND cat IN ('news', 'tech') AND rowid > 4;"
     "SELECT rowid, distance FROM v WHERE emb MATCH " Q " AND k = 2 "
     "AND nprobe = 2 AND rowid IN (1, 3, 5, 7, 11, 301, 302)", 0, NULL},
    {"ivf reopen", WARM_IVF,
     "SELECT rowid, distance FROM v WHERE emb MATCH " Q " AND k = 4", 1,
     NULL},
    {"ivf train", WARM_IVF, "INSERT INTO v(v) VALUES('train')", 0, NULL},
    {"ivf optimize", WARM_IVF, "INSERT INTO v(v) VALUES('optimize')", 0,
     NULL},
    {"ivf txn INSERT", WARM_IVF,
     "BEGIN; INSERT INTO v(emb, cat) SELECT v, cat FROM src; "
     "SELECT rowid, distance FROM v WHERE emb MATCH " Q " AND k = 3", 0,
     "COMMIT"},
    {"ivf auto-train", "SELECT count(*) FROM w WHERE rowid = 1",
     "INSERT INTO w(rowid, emb, cat) VALUES(500, " Q ", 'news')", 0, NULL},
    {"ivf integrity-check", WARM_IVF,
     "INSERT INTO v(v) VALUES('integrity-check')", 0, NULL},
    {"ivf DROP", WARM_SCHEMA, "DROP TABLE v", 0, NULL},
};

const fault_op *fault_ops(int *pn) {
  *pn = (int)(sizeof(g_aOp) / sizeof(g_aOp[0]));
  return g_aOp;
}
