/*
** annex_bench.c — the benchmark driver: exact k-NN through SQL, annex vs.
** sqlite-vec, measured the same way.
**
**   annex_bench --system annex|sqlite-vec --ext PATH_TO_SO
**               --base base.fvecs --query query.fvecs --gt groundtruth.ivecs
**               [--gt-dist groundtruth_dist.fvecs] [--k 10] [--queries N]
**               [--repeat 3] [--warmup 5] [--batch 0] [--max-seconds 0]
**               [--db FILE] [--keep-db] [--vtab-args "embedding float[D]..."]
**               [--sql-init "PRAGMA ...; ..."]
**
** Both extensions are loaded at run time with sqlite3_load_extension into
** the SQLite this program links (the system library), so the host, the
** statement path and the timing are identical. Phases, in one process:
**   1. insert: base rows streamed from the file into a prepared INSERT with
**      BLOB binds (rowid = base row + 1), in one transaction (--batch 0) or
**      committing every --batch rows; the time includes the last COMMIT;
**   2. reopen: close, reopen + load the extension, time the first query;
**   3. queries: --warmup untimed queries, then the query set --repeat times,
**      one query at a time, each timed with CLOCK_MONOTONIC; --max-seconds
**      ends a repeat early;
**   4. check: recall@k and result sanity from the first repeat's answers,
**      true distances recomputed in double from the base file.
** Human-readable lines, then one "RESULT key=value ..." line.
*/
#define _XOPEN_SOURCE 700
#include "bench_data.h"
#include "bench_metrics.h"

#include <sqlite3.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Command-line options. */
typedef struct bench_opts {
  const char *zSystem;   /* "annex" or "sqlite-vec" */
  const char *zExt;      /* path of the extension's .so */
  const char *zBase;     /* base .fvecs */
  const char *zQuery;    /* query .fvecs */
  const char *zGt;       /* ground-truth ids .ivecs (0-based base rows) */
  const char *zGtDist;   /* ground-truth distances .fvecs, or NULL */
  const char *zDb;       /* database file, or NULL for a temporary one */
  const char *zVtabArgs; /* CREATE VIRTUAL TABLE arguments, or NULL */
  const char *zSqlInit;  /* SQL run after every open (pragmas), or NULL */
  int k;                 /* neighbours per query */
  int nQueries;          /* queries used (<= 0: all in the file) */
  int nRepeat;           /* passes over the query set */
  int nWarmup;           /* untimed queries before the first pass */
  int nBatch;            /* rows per transaction (<= 0: one transaction) */
  int bKeepDb;           /* keep the database file at the end */
  double maxSeconds;     /* wall-clock bound of one pass (<= 0: none) */
} bench_opts;

/* Everything measured, in the units named. */
typedef struct bench_run {
  const bench_opts *o;
  char zDb[1024];      /* database path in use */
  bench_vecs q;        /* queries (owned) */
  bench_vecs gt;       /* ground-truth ids (owned) */
  bench_vecs gtDist;   /* ground-truth distances (owned; data NULL if none) */
  int64_t n;           /* base rows */
  int dim;             /* dimensions */
  char zVersion[160];  /* extension version string */
  char zInfo[1024];    /* annex_info('t') as key=value pairs (annex only) */
  double insertS;      /* seconds, BEGIN to the end of the last COMMIT */
  double commitS;      /* seconds of the last COMMIT alone */
  int64_t dbBytes;     /* database file (+ journal / wal) after close */
  double openMs;       /* reopen: sqlite3_open + load extension */
  double firstQueryMs; /* reopen: prepare + run the first query */
  long rssBaseKb;      /* peak RSS before the database was opened */
  long rssInsertKb;    /* peak RSS after the insert phase */
  long rssKb;          /* peak RSS after the query phase */
  double *aLatUs;      /* nRepeat * q.n latencies in microseconds (owned) */
  int *aTimed;         /* queries timed in each pass (owned) */
  double *aQps;        /* queries / summed latency of each pass (owned) */
  int64_t *aRowid;     /* first pass: q.n * (k+1) returned rowids (owned) */
  double *aDist;       /* first pass: matching distances (owned) */
  int *aNRet;          /* first pass: rows returned per query (owned) */
  int64_t nMismatch;   /* later-pass answers whose rowids differ */
  int64_t *aScratchRowid; /* k+1 rowids of the query in flight (owned) */
  double *aScratchDist;   /* k+1 distances of the query in flight (owned) */
  bench_check chk;        /* recall and checks of the first pass */
} bench_run;

/* ------------------------------------------------------------ options */

typedef struct opt_def {
  const char *zName; /* "--name" */
  char type;         /* 's' string, 'i' int, 'd' double, 'f' flag */
  void *p;           /* where the value goes */
} opt_def;

static void usage(void) {
  fputs(
      "usage: annex_bench --system annex|sqlite-vec --ext SO --base F "
      "--query F --gt F\n  [--gt-dist F] [--k 10] [--queries N] "
      "[--repeat 3] [--warmup 5] [--batch 0]\n  [--max-seconds 0] "
      "[--db FILE] [--keep-db] [--vtab-args ARGS]\n  [--sql-init SQL]\n",
      stderr);
  exit(2);
}

static void opt_set(const opt_def *d, const char *zVal) {
  char *zEnd = NULL;
  switch (d->type) {
    case 's':
      *(const char **)d->p = zVal;
      return;
    case 'i':
      *(int *)d->p = (int)strtol(zVal, &zEnd, 10);
      break;
    case 'd':
      *(double *)d->p = strtod(zVal, &zEnd);
      break;
  }
  if (zEnd == zVal || *zEnd != '\0')
    bench_die("bad value '%s' for %s", zVal, d->zName);
}

static void opts_parse(bench_opts *o, int argc, char **argv) {
  const opt_def aDef[] = {
      {"--system", 's', &o->zSystem},
      {"--ext", 's', &o->zExt},
      {"--base", 's', &o->zBase},
      {"--query", 's', &o->zQuery},
      {"--gt", 's', &o->zGt},
      {"--gt-dist", 's', &o->zGtDist},
      {"--db", 's', &o->zDb},
      {"--vtab-args", 's', &o->zVtabArgs},
      {"--sql-init", 's', &o->zSqlInit},
      {"--k", 'i', &o->k},
      {"--queries", 'i', &o->nQueries},
      {"--repeat", 'i', &o->nRepeat},
      {"--warmup", 'i', &o->nWarmup},
      {"--batch", 'i', &o->nBatch},
      {"--keep-db", 'f', &o->bKeepDb},
      {"--max-seconds", 'd', &o->maxSeconds},
  };
  const int nDef = (int)(sizeof(aDef) / sizeof(aDef[0]));
  for (int i = 1; i < argc; i++) {
    int j = 0;
    while (j < nDef && strcmp(argv[i], aDef[j].zName) != 0) j++;
    if (j == nDef) usage();
    if (aDef[j].type == 'f') {
      *(int *)aDef[j].p = 1;
    } else {
      if (i + 1 >= argc) usage();
      opt_set(&aDef[j], argv[++i]);
    }
  }
}

static void opts_check(const bench_opts *o) {
  if (!o->zSystem || !o->zExt || !o->zBase || !o->zQuery || !o->zGt) usage();
  if (strcmp(o->zSystem, "annex") != 0 &&
      strcmp(o->zSystem, "sqlite-vec") != 0) {
    bench_die("--system must be annex or sqlite-vec");
  }
  if (o->k < 1 || o->nRepeat < 1 || o->nWarmup < 0) {
    bench_die("--k and --repeat must be >= 1, --warmup >= 0");
  }
}

/* ------------------------------------------------------------ helpers */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss; /* kilobytes on Linux */
}

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (p == NULL) bench_die("out of memory");
  return p;
}

static int is_annex(const bench_opts *o) {
  return strcmp(o->zSystem, "annex") == 0;
}

/* Size of the database file plus any journal, WAL or shm next to it. */
static int64_t db_bytes(const char *zDb) {
  static const char *const azSuffix[] = {"", "-journal", "-wal", "-shm"};
  int64_t total = 0;
  for (int i = 0; i < 4; i++) {
    char zPath[1100];
    struct stat st;
    snprintf(zPath, sizeof(zPath), "%s%s", zDb, azSuffix[i]);
    if (stat(zPath, &st) == 0) total += st.st_size;
  }
  return total;
}

static void db_remove(const char *zDb) {
  static const char *const azSuffix[] = {"", "-journal", "-wal", "-shm"};
  for (int i = 0; i < 4; i++) {
    char zPath[1100];
    snprintf(zPath, sizeof(zPath), "%s%s", zDb, azSuffix[i]);
    unlink(zPath);
  }
}

/* ------------------------------------------------------------ SQL */

static void sql_exec(sqlite3 *db, const char *zSql) {
  char *zErr = NULL;
  if (sqlite3_exec(db, zSql, NULL, NULL, &zErr) != SQLITE_OK) {
    bench_die("SQL error in \"%s\": %s", zSql, zErr ? zErr : "?");
  }
}

static sqlite3_stmt *sql_prepare(sqlite3 *db, const char *zSql) {
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db, zSql, -1, &s, NULL) != SQLITE_OK) {
    bench_die("cannot prepare \"%s\": %s", zSql, sqlite3_errmsg(db));
  }
  return s;
}

/* First column of the first row as text into zOut ("" if no row). */
static void sql_text(sqlite3 *db, const char *zSql, char *zOut, size_t nOut) {
  sqlite3_stmt *s = sql_prepare(db, zSql);
  zOut[0] = '\0';
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0)) {
    snprintf(zOut, nOut, "%s", (const char *)sqlite3_column_text(s, 0));
  }
  sqlite3_finalize(s);
}

/* Open the database and load the system's extension into it. */
static sqlite3 *db_open(const bench_opts *o, const char *zDb) {
  const char *zEntry = is_annex(o) ? "sqlite3_annex_init" : "sqlite3_vec_init";
  sqlite3 *db = NULL;
  char *zErr = NULL;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  if (sqlite3_open_v2(zDb, &db, flags, NULL) != SQLITE_OK) {
    bench_die("cannot open %s: %s", zDb, sqlite3_errmsg(db));
  }
  sqlite3_enable_load_extension(db, 1);
  if (sqlite3_load_extension(db, o->zExt, zEntry, &zErr) != SQLITE_OK) {
    bench_die("cannot load %s (%s): %s", o->zExt, zEntry, zErr ? zErr : "?");
  }
  if (o->zSqlInit) sql_exec(db, o->zSqlInit);
  return db;
}

static void create_table(sqlite3 *db, const bench_opts *o, int dim) {
  char zArgs[512], *zSql;
  if (o->zVtabArgs) {
    snprintf(zArgs, sizeof(zArgs), "%s", o->zVtabArgs);
  } else if (is_annex(o)) {
    snprintf(zArgs, sizeof(zArgs), "embedding float[%d] distance=l2", dim);
  } else {
    snprintf(zArgs, sizeof(zArgs), "embedding float[%d]", dim);
  }
  zSql = sqlite3_mprintf("CREATE VIRTUAL TABLE t USING %s(%s)",
                         is_annex(o) ? "annex" : "vec0", zArgs);
  printf("create: %s\n", zSql);
  sql_exec(db, zSql);
  sqlite3_free(zSql);
}

/* ------------------------------------------------------------ phases */

static void load_inputs(bench_run *r) {
  const bench_opts *o = r->o;
  bench_vecs_read(o->zQuery, o->nQueries, &r->q);
  bench_vecs_read(o->zGt, r->q.n, &r->gt);
  if (o->zGtDist) bench_vecs_read(o->zGtDist, r->q.n, &r->gtDist);
  if (r->gt.n < r->q.n) bench_die("%s: fewer rows than queries", o->zGt);
  if (r->gt.dim < o->k)
    bench_die("%s: ground truth has only %d per query", o->zGt, r->gt.dim);
  if (o->zGtDist && (r->gtDist.n < r->q.n || r->gtDist.dim < o->k)) {
    bench_die("%s: does not match the ground-truth ids", o->zGtDist);
  }
}

static void insert_one(sqlite3 *db, sqlite3_stmt *s, int64_t rowid,
                       const float *v, int dim) {
  sqlite3_bind_int64(s, 1, rowid);
  sqlite3_bind_blob(s, 2, v, dim * 4, SQLITE_STATIC);
  if (sqlite3_step(s) != SQLITE_DONE) {
    bench_die("insert of rowid %lld failed: %s", (long long)rowid,
              sqlite3_errmsg(db));
  }
  sqlite3_reset(s);
}

/* Stream every base row into t; returns seconds of the last COMMIT. */
static double insert_rows(sqlite3 *db, bench_base *b, int nBatch) {
  sqlite3_stmt *s =
      sql_prepare(db, "INSERT INTO t(rowid, embedding) VALUES(?, ?)");
  const float *v;
  int64_t i = 0, step = b->n >= 100000 ? b->n / 10 : 0;
  double t0;
  sql_exec(db, "BEGIN");
  while ((v = bench_base_next(b)) != NULL) {
    insert_one(db, s, i + 1, v, b->dim);
    i++;
    if (nBatch > 0 && i % nBatch == 0 && i < b->n)
      sql_exec(db, "COMMIT; BEGIN");
    if (step && i % step == 0)
      fprintf(stderr, "  inserted %lld rows\n", (long long)i);
  }
  sqlite3_finalize(s);
  t0 = now_s();
  sql_exec(db, "COMMIT");
  return now_s() - t0;
}

static void phase_insert(bench_run *r) {
  bench_base b;
  sqlite3 *db;
  double t0;
  bench_base_open(r->o->zBase, &b);
  if (b.dim != r->q.dim)
    bench_die("base dim %d != query dim %d", b.dim, r->q.dim);
  r->n = b.n;
  r->dim = b.dim;
  db = db_open(r->o, r->zDb);
  create_table(db, r->o, r->dim);
  t0 = now_s();
  r->commitS = insert_rows(db, &b, r->o->nBatch);
  r->insertS = now_s() - t0;
  bench_base_close(&b);
  if (sqlite3_close(db) != SQLITE_OK)
    bench_die("close: %s", sqlite3_errmsg(db));
  r->rssInsertKb = peak_rss_kb();
  r->dbBytes = db_bytes(r->zDb);
}

/* Run one query; returns the rows read (at most k+1: more is an error that
** the check reports, not a reason to read on). */
static int run_query(sqlite3 *db, sqlite3_stmt *s, const float *q, int dim,
                     int k, int64_t *aRowid, double *aDist) {
  int n = 0, rc;
  sqlite3_bind_blob(s, 1, q, dim * 4, SQLITE_STATIC);
  sqlite3_bind_int(s, 2, k);
  while (n <= k && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    aRowid[n] = sqlite3_column_int64(s, 0);
    aDist[n] = sqlite3_column_double(s, 1);
    n++;
  }
  if (n <= k && rc != SQLITE_DONE)
    bench_die("query failed: %s", sqlite3_errmsg(db));
  sqlite3_reset(s);
  return n;
}

static const char *zQuerySql =
    "SELECT rowid, distance FROM t WHERE embedding MATCH ? AND k = ?";

static void read_version(bench_run *r, sqlite3 *db) {
  char zA[64], zB[64];
  if (is_annex(r->o)) {
    sql_text(db, "SELECT value FROM annex_info('t') WHERE key='version'", zA,
             sizeof(zA));
    sql_text(db, "SELECT value FROM annex_info('t') WHERE key='kernels'", zB,
             sizeof(zB));
    snprintf(r->zVersion, sizeof(r->zVersion), "annex-%s/%s", zA, zB);
    sql_text(db,
             "SELECT group_concat(key || '=' || value, ' ') "
             "FROM annex_info('t')",
             r->zInfo, sizeof(r->zInfo));
  } else {
    sql_text(db, "SELECT vec_version()", zA, sizeof(zA));
    snprintf(r->zVersion, sizeof(r->zVersion), "sqlite-vec-%s", zA);
  }
}

/* Reopen, time the first query; returns the open connection. */
static sqlite3 *phase_reopen(bench_run *r, sqlite3_stmt **ps) {
  double t0 = now_s(), t1;
  sqlite3 *db = db_open(r->o, r->zDb);
  t1 = now_s();
  *ps = sql_prepare(db, zQuerySql);
  run_query(db, *ps, bench_vecs_frow(&r->q, 0), r->dim, r->o->k,
            r->aScratchRowid, r->aScratchDist);
  r->firstQueryMs = 1e3 * (now_s() - t1);
  r->openMs = 1e3 * (t1 - t0);
  read_version(r, db);
  return db;
}

static int same_answer(const bench_run *r, int iq, const int64_t *aRowid,
                       int n) {
  const int64_t *aRef = r->aRowid + (size_t)iq * (size_t)(r->o->k + 1);
  if (n != r->aNRet[iq]) return 0;
  return memcmp(aRef, aRowid, (size_t)n * sizeof(*aRowid)) == 0;
}

/* One timed pass over the query set; pass 0 keeps its answers. */
static void query_pass(bench_run *r, sqlite3 *db, sqlite3_stmt *s, int iPass) {
  int k = r->o->k, nTimed = 0;
  double tStart = now_s(), sumS = 0.0;
  int64_t *aRowid = r->aScratchRowid;
  double *aDist = r->aScratchDist;
  for (int iq = 0; iq < r->q.n; iq++) {
    double t0 = now_s(), dt;
    int n =
        run_query(db, s, bench_vecs_frow(&r->q, iq), r->dim, k, aRowid, aDist);
    dt = now_s() - t0;
    r->aLatUs[(size_t)iPass * (size_t)r->q.n + (size_t)iq] = 1e6 * dt;
    sumS += dt;
    nTimed++;
    if (iPass == 0) {
      size_t off = (size_t)iq * (size_t)(k + 1);
      memcpy(r->aRowid + off, aRowid, (size_t)n * sizeof(*aRowid));
      memcpy(r->aDist + off, aDist, (size_t)n * sizeof(*aDist));
      r->aNRet[iq] = n;
    } else if (iq < r->aTimed[0] && !same_answer(r, iq, aRowid, n)) {
      r->nMismatch++;
    }
    if (r->o->maxSeconds > 0 && now_s() - tStart >= r->o->maxSeconds) break;
  }
  r->aTimed[iPass] = nTimed;
  r->aQps[iPass] = nTimed / sumS;
}

static void phase_queries(bench_run *r, sqlite3 *db, sqlite3_stmt *s) {
  int k = r->o->k, nq = r->q.n;
  r->aLatUs = xcalloc((size_t)r->o->nRepeat * (size_t)nq, sizeof(double));
  r->aTimed = xcalloc((size_t)r->o->nRepeat, sizeof(int));
  r->aQps = xcalloc((size_t)r->o->nRepeat, sizeof(double));
  r->aRowid = xcalloc((size_t)nq * (size_t)(k + 1), sizeof(int64_t));
  r->aDist = xcalloc((size_t)nq * (size_t)(k + 1), sizeof(double));
  r->aNRet = xcalloc((size_t)nq, sizeof(int));
  for (int i = 0; i < r->o->nWarmup; i++) {
    run_query(db, s, bench_vecs_frow(&r->q, i % nq), r->dim, k,
              r->aScratchRowid, r->aScratchDist);
  }
  for (int iPass = 0; iPass < r->o->nRepeat; iPass++) {
    query_pass(r, db, s, iPass);
    fprintf(stderr, "  pass %d: %d queries, %.2f QPS\n", iPass + 1,
            r->aTimed[iPass], r->aQps[iPass]);
  }
  r->rssKb = peak_rss_kb();
}

/* Recall and checks over the first pass's answers. */
static void phase_check(bench_run *r) {
  bench_base b;
  int k = r->o->k;
  bench_base_open(r->o->zBase, &b);
  for (int iq = 0; iq < r->aTimed[0]; iq++) {
    size_t off = (size_t)iq * (size_t)(k + 1);
    bench_answer ans = {r->aRowid + off, r->aDist + off, r->aNRet[iq]};
    bench_truth gt = {bench_vecs_irow(&r->gt, iq),
                      r->gtDist.data ? bench_vecs_frow(&r->gtDist, iq) : NULL};
    bench_check_query(&r->chk, &b, bench_vecs_frow(&r->q, iq), &ans, &gt, k);
  }
  bench_base_close(&b);
}

/* ------------------------------------------------------------ report */

typedef struct bench_summary {
  int nTimedAll;       /* timed queries over all passes */
  double qps;          /* median over passes of each pass's QPS */
  double p50Us, p99Us; /* latency percentiles over all timed queries */
  double minUs, maxUs; /* fastest and slowest timed query */
  double recallIds;    /* |returned ∩ true top-k| / k, averaged */
  double recallTie;    /* tie-tolerant recall, or -1 without --gt-dist */
  int bChecksOk;       /* every check passed */
} bench_summary;

static void summarize_latency(const bench_run *r, bench_summary *m) {
  double *aLat =
      xcalloc((size_t)r->o->nRepeat * (size_t)r->q.n, sizeof(double));
  double *aQps = xcalloc((size_t)r->o->nRepeat, sizeof(double));
  m->nTimedAll = 0;
  for (int p = 0; p < r->o->nRepeat; p++) {
    memcpy(aLat + m->nTimedAll, r->aLatUs + (size_t)p * (size_t)r->q.n,
           (size_t)r->aTimed[p] * sizeof(double));
    m->nTimedAll += r->aTimed[p];
    aQps[p] = r->aQps[p];
  }
  bench_sort(aLat, m->nTimedAll);
  m->p50Us = bench_percentile(aLat, m->nTimedAll, 0.50);
  m->p99Us = bench_percentile(aLat, m->nTimedAll, 0.99);
  m->minUs = aLat[0];
  m->maxUs = aLat[m->nTimedAll - 1];
  m->qps = bench_median(aQps, r->o->nRepeat);
  free(aLat);
  free(aQps);
}

static void summarize(const bench_run *r, bench_summary *m) {
  const bench_check *c = &r->chk;
  double denom = (double)c->nQueries * r->o->k;
  summarize_latency(r, m);
  m->recallIds = (double)c->hitsIds / denom;
  m->recallTie = r->gtDist.data ? (double)c->hitsTie / denom : -1.0;
  m->bChecksOk = c->nWrongCount == 0 && c->nBadRowid == 0 && c->nDup == 0 &&
                 c->nUnsorted == 0 && c->nDistWrong == 0 && r->nMismatch == 0;
}

static void print_insert(const bench_run *r) {
  char zMode[64];
  if (r->o->nBatch > 0) {
    snprintf(zMode, sizeof(zMode), "commit every %d rows", r->o->nBatch);
  } else {
    snprintf(zMode, sizeof(zMode), "one transaction");
  }
  printf("insert: %lld rows, %s: %.3f s = %.0f rows/s (last COMMIT %.3f s)\n",
         (long long)r->n, zMode, r->insertS, (double)r->n / r->insertS,
         r->commitS);
  printf("db: %lld bytes (%.1f MB; file + journal/wal after close)\n",
         (long long)r->dbBytes, (double)r->dbBytes / 1e6);
  printf(
      "reopen: open + load extension %.3f ms; first query (prepare + run) "
      "%.3f ms\n",
      r->openMs, r->firstQueryMs);
}

static void print_queries(const bench_run *r, const bench_summary *m) {
  printf("queries: %d passes, %d warm-up, max %.0f s per pass (0 = no limit)\n",
         r->o->nRepeat, r->o->nWarmup, r->o->maxSeconds);
  for (int p = 0; p < r->o->nRepeat; p++) {
    printf("  pass %d: %d of %d queries timed, %.2f QPS\n", p + 1, r->aTimed[p],
           r->q.n, r->aQps[p]);
  }
  printf(
      "  QPS (median of passes) %.2f; latency over %d queries: p50 %.1f us, "
      "p99 %.1f us, min %.1f us, max %.1f us\n",
      m->qps, m->nTimedAll, m->p50Us, m->p99Us, m->minUs, m->maxUs);
}

static void print_checks(const bench_run *r, const bench_summary *m) {
  const bench_check *c = &r->chk;
  printf("recall@%d over %d queries (pass 1): ids %.4f", r->o->k, c->nQueries,
         m->recallIds);
  if (m->recallTie >= 0) printf(", tie-tolerant %.4f", m->recallTie);
  printf(
      "\nchecks: %s; wrong row count %lld, bad rowid %lld, duplicate %lld, "
      "out of order %lld, wrong distance %lld, pass mismatch %lld; "
      "max |dist err| %.3g (rel %.3g)\n",
      m->bChecksOk ? "ok" : "FAILED", (long long)c->nWrongCount,
      (long long)c->nBadRowid, (long long)c->nDup, (long long)c->nUnsorted,
      (long long)c->nDistWrong, (long long)r->nMismatch, c->maxAbsErr,
      c->maxRelErr);
  printf("memory: peak RSS %ld kB (before DB %ld kB, after insert %ld kB)\n",
         r->rssKb, r->rssBaseKb, r->rssInsertKb);
}

static void print_result_line(const bench_run *r, const bench_summary *m) {
  double recall = m->recallTie >= 0 ? m->recallTie : m->recallIds;
  printf(
      "RESULT system=%s version=%s n=%lld dim=%d k=%d queries=%d repeats=%d "
      "timed=%d recall=%.4f recall_ids=%.4f qps=%.2f p50_us=%.1f "
      "p99_us=%.1f insert_rows_s=%.0f insert_s=%.3f batch=%d db_bytes=%lld "
      "rss_kb=%ld rss_base_kb=%ld open_ms=%.3f first_query_ms=%.3f "
      "checks=%s\n",
      r->o->zSystem, r->zVersion, (long long)r->n, r->dim, r->o->k,
      r->aTimed[0], r->o->nRepeat, m->nTimedAll, recall, m->recallIds, m->qps,
      m->p50Us, m->p99Us, (double)r->n / r->insertS, r->insertS,
      r->o->nBatch > 0 ? r->o->nBatch : 0, (long long)r->dbBytes, r->rssKb,
      r->rssBaseKb, r->openMs, r->firstQueryMs, m->bChecksOk ? "ok" : "FAILED");
}

static void report(const bench_run *r) {
  bench_summary m;
  summarize(r, &m);
  printf("system: %s (%s), SQLite %s\n", r->o->zSystem, r->zVersion,
         sqlite3_libversion());
  if (r->zInfo[0]) printf("annex_info: %s\n", r->zInfo);
  if (r->o->zSqlInit) printf("sql-init: %s\n", r->o->zSqlInit);
  printf("data: n=%lld dim=%d queries=%d k=%d; rowid = base row + 1\n",
         (long long)r->n, r->dim, r->q.n, r->o->k);
  print_insert(r);
  print_queries(r, &m);
  print_checks(r, &m);
  print_result_line(r, &m);
}

/* ------------------------------------------------------------ main */

static void default_db_path(bench_run *r) {
  const char *zTmp = getenv("TMPDIR");
  if (r->o->zDb) {
    snprintf(r->zDb, sizeof(r->zDb), "%s", r->o->zDb);
  } else {
    snprintf(r->zDb, sizeof(r->zDb), "%s/annex_bench.%s.%ld.db",
             zTmp && *zTmp ? zTmp : "/tmp", r->o->zSystem, (long)getpid());
  }
}

static void run_free(bench_run *r) {
  bench_vecs_free(&r->q);
  bench_vecs_free(&r->gt);
  bench_vecs_free(&r->gtDist);
  free(r->aLatUs);
  free(r->aTimed);
  free(r->aQps);
  free(r->aRowid);
  free(r->aDist);
  free(r->aNRet);
  free(r->aScratchRowid);
  free(r->aScratchDist);
}

int main(int argc, char **argv) {
  bench_opts o = {.k = 10, .nRepeat = 3, .nWarmup = 5};
  bench_run r;
  sqlite3 *db;
  sqlite3_stmt *s;
  opts_parse(&o, argc, argv);
  opts_check(&o);
  memset(&r, 0, sizeof(r));
  r.o = &o;
  default_db_path(&r);
  load_inputs(&r);
  r.aScratchRowid = xcalloc((size_t)o.k + 1, sizeof(int64_t));
  r.aScratchDist = xcalloc((size_t)o.k + 1, sizeof(double));
  r.rssBaseKb = peak_rss_kb();
  db_remove(r.zDb);
  phase_insert(&r);
  db = phase_reopen(&r, &s);
  phase_queries(&r, db, s);
  sqlite3_finalize(s);
  sqlite3_close(db);
  phase_check(&r);
  report(&r);
  if (!o.bKeepDb) db_remove(r.zDb);
  run_free(&r);
  return 0;
}
