/*
** hnsw_annex.c — annex through SQL in the HNSW benchmark (bench/hnsw_run.sh).
**
**   hnsw_annex build --ext annex.so --data DIR --db FILE [--threads T]
**                    [--vtab-args ARGS] [--m 16] [--efc 200] [--rebuild]
**                    [--sql-init SQL]
**   hnsw_annex query --ext annex.so --data DIR --db FILE --out DIR
**                    [--ef 10,16,...] [--k 10] [--repeat 3] [--first-ef 64]
**                    [--sql-init SQL]
**
** build: deletes FILE, opens it, loads the extension, runs
**   SELECT annex_threads(T), creates
**   t USING annex(embedding float[D] distance=l2, index=hnsw(m=M,
**   ef_construction=EFC)) (or --vtab-args), and streams DIR/base.fvecs into
**   one prepared INSERT INTO t(rowid, embedding) VALUES(?, ?) inside one
**   BEGIN ... COMMIT (rowid = base row + 1): the way users load data.
**   BUILD phase=insert: seconds from BEGIN to the end of COMMIT. With
**   --rebuild, then INSERT INTO t(t) VALUES('rebuild') on the same
**   connection: BUILD phase=rebuild. rss_kb is VmRSS before closing (the
**   driver streams the base file and holds no copy of it), hwm_kb VmHWM;
**   db_bytes the file (+ journal / wal) after close.
** query: a fresh process. Opens FILE and loads the extension (open_ms),
**   SELECT annex_threads(1), then prepares
**     SELECT rowid, distance FROM t WHERE embedding MATCH ?1 AND k = K
**       AND ef_search = ?2
**   and runs query 0 at --first-ef (first_query_ms: prepare + run, cold
**   SQLite cache, warm OS cache): the REOPEN line. Then, for every ef,
**   5 warm-up queries and --repeat passes over the query set, each query
**   timed alone (bind, step to SQLITE_DONE, reset): QPS = queries / summed
**   latency, median of the passes; SEARCH line, ids of the first pass in
**   OUT/ids/annex.efE.i32 (0-based base rows = rowid - 1; -1 pads).
**   --ef 0 drops the ef_search term (index=flat, for checking the driver).
** Lines are "TAG key=value ..."; bench/hnsw_report.py computes recall.
*/
#define _XOPEN_SOURCE 700
#include "bench_data.h"

#include <sqlite3.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_EF 64

typedef struct hopts {
  const char *zMode, *zExt, *zData, *zDb, *zOut, *zVtabArgs, *zSqlInit;
  int nThreads, m, efc, k, nRepeat, firstEf, bRebuild;
  int aEf[MAX_EF], nEf;
} hopts;

/* CPU seconds of this process (all threads) or of the calling thread. */
static double cpu_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* VmRSS / VmHWM of this process in kB, -1 if not found. */
static long status_kb(const char *zKey) {
  FILE *f = fopen("/proc/self/status", "r");
  char zLine[256];
  long v = -1;
  size_t n = strlen(zKey);
  if (!f) return -1;
  while (fgets(zLine, sizeof(zLine), f)) {
    if (strncmp(zLine, zKey, n) == 0 && zLine[n] == ':') {
      v = atol(zLine + n + 1);
      break;
    }
  }
  fclose(f);
  return v;
}

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

static void usage(void) {
  fputs("usage: hnsw_annex build|query --ext SO --data DIR --db FILE "
        "[--out DIR]\n  [--threads T] [--vtab-args ARGS] [--m 16] "
        "[--efc 200] [--rebuild] [--sql-init SQL]\n  [--ef 10,16,...] "
        "[--k 10] [--repeat 3] [--first-ef 64]\n",
        stderr);
  exit(2);
}

static int to_int(const char *z) {
  char *zEnd;
  long v = strtol(z, &zEnd, 10);
  if (zEnd == z || *zEnd) bench_die("not an integer: %s", z);
  return (int)v;
}

static void parse_ef(hopts *o, const char *z) {
  char zBuf[512], *zTok, *zSave = NULL;
  snprintf(zBuf, sizeof(zBuf), "%s", z);
  o->nEf = 0;
  for (zTok = strtok_r(zBuf, ",", &zSave); zTok && o->nEf < MAX_EF;
       zTok = strtok_r(NULL, ",", &zSave)) {
    o->aEf[o->nEf++] = to_int(zTok);
  }
}

static void parse_opts(hopts *o, int argc, char **argv) {
  if (argc < 2) usage();
  o->zMode = argv[1];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v;
    if (strcmp(a, "--rebuild") == 0) {
      o->bRebuild = 1;
      continue;
    }
    if (i + 1 >= argc) usage();
    v = argv[++i];
    if (strcmp(a, "--ext") == 0) o->zExt = v;
    else if (strcmp(a, "--data") == 0) o->zData = v;
    else if (strcmp(a, "--db") == 0) o->zDb = v;
    else if (strcmp(a, "--out") == 0) o->zOut = v;
    else if (strcmp(a, "--vtab-args") == 0) o->zVtabArgs = v;
    else if (strcmp(a, "--sql-init") == 0) o->zSqlInit = v;
    else if (strcmp(a, "--threads") == 0) o->nThreads = to_int(v);
    else if (strcmp(a, "--m") == 0) o->m = to_int(v);
    else if (strcmp(a, "--efc") == 0) o->efc = to_int(v);
    else if (strcmp(a, "--k") == 0) o->k = to_int(v);
    else if (strcmp(a, "--repeat") == 0) o->nRepeat = to_int(v);
    else if (strcmp(a, "--first-ef") == 0) o->firstEf = to_int(v);
    else if (strcmp(a, "--ef") == 0) parse_ef(o, v);
    else usage();
  }
  if (!o->zExt || !o->zData || !o->zDb) usage();
  if (strcmp(o->zMode, "build") != 0 && strcmp(o->zMode, "query") != 0)
    usage();
  if (strcmp(o->zMode, "query") == 0 && !o->zOut) usage();
  if (o->k < 1 || o->nRepeat < 1 || o->nEf < 1) usage();
}

/* ------------------------------------------------------------ SQL */

static void sql_exec(sqlite3 *db, const char *zSql) {
  char *zErr = NULL;
  if (sqlite3_exec(db, zSql, NULL, NULL, &zErr) != SQLITE_OK)
    bench_die("SQL error in \"%s\": %s", zSql, zErr ? zErr : "?");
}

static sqlite3_stmt *sql_prepare(sqlite3 *db, const char *zSql) {
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db, zSql, -1, &s, NULL) != SQLITE_OK)
    bench_die("cannot prepare \"%s\": %s", zSql, sqlite3_errmsg(db));
  return s;
}

static sqlite3 *db_open(const hopts *o) {
  sqlite3 *db = NULL;
  char *zErr = NULL;
  if (sqlite3_open_v2(o->zDb, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      NULL) != SQLITE_OK)
    bench_die("cannot open %s: %s", o->zDb, sqlite3_errmsg(db));
  sqlite3_enable_load_extension(db, 1);
  if (sqlite3_load_extension(db, o->zExt, "sqlite3_annex_init", &zErr) !=
      SQLITE_OK)
    bench_die("cannot load %s: %s", o->zExt, zErr ? zErr : "?");
  if (o->zSqlInit) sql_exec(db, o->zSqlInit);
  return db;
}

static void set_threads(sqlite3 *db, int n) {
  char zSql[64];
  snprintf(zSql, sizeof(zSql), "SELECT annex_threads(%d)", n);
  sql_exec(db, zSql);
}

/* annex_info('t') as one INFO line (the parameters in force). */
static void print_info(sqlite3 *db) {
  sqlite3_stmt *s = sql_prepare(db, "SELECT key, value FROM annex_info('t')");
  printf("INFO system=annex sqlite=%s", sqlite3_libversion());
  while (sqlite3_step(s) == SQLITE_ROW) {
    const char *zK = (const char *)sqlite3_column_text(s, 0);
    const char *zV = (const char *)sqlite3_column_text(s, 1);
    printf(" %s=", zK ? zK : "?");
    for (const char *c = zV ? zV : ""; *c; c++) putchar(*c == ' ' ? '_' : *c);
  }
  printf("\n");
  fflush(stdout);
  sqlite3_finalize(s);
}

/* ------------------------------------------------------------ build */

static void print_build(const hopts *o, const char *zPhase, int64_t n,
                        int dim, double s, double c) {
  printf("BUILD system=annex phase=%s threads=%d n=%lld dim=%d m=%d efc=%d "
         "build_s=%.3f cpu_s=%.3f raw_bytes=%lld rss_kb=%ld hwm_kb=%ld\n",
         zPhase, o->nThreads, (long long)n, dim, o->m, o->efc, s, c,
         (long long)(n * dim * 4), status_kb("VmRSS"), status_kb("VmHWM"));
  fflush(stdout);
}

static void run_build(const hopts *o) {
  char zPath[1024], zArgs[512], *zSql;
  bench_base b;
  sqlite3 *db;
  sqlite3_stmt *s;
  const float *v;
  int64_t i = 0;
  double t0, c0;
  snprintf(zPath, sizeof(zPath), "%s/base.fvecs", o->zData);
  bench_base_open(zPath, &b);
  db_remove(o->zDb);
  db = db_open(o);
  set_threads(db, o->nThreads);
  if (o->zVtabArgs) {
    snprintf(zArgs, sizeof(zArgs), "%s", o->zVtabArgs);
  } else {
    snprintf(zArgs, sizeof(zArgs),
             "embedding float[%d] distance=l2, "
             "index=hnsw(m=%d, ef_construction=%d)",
             b.dim, o->m, o->efc);
  }
  zSql = sqlite3_mprintf("CREATE VIRTUAL TABLE t USING annex(%s)", zArgs);
  printf("CREATE sql=\"%s\"\n", zSql);
  sql_exec(db, zSql);
  sqlite3_free(zSql);
  s = sql_prepare(db, "INSERT INTO t(rowid, embedding) VALUES(?, ?)");
  t0 = now_s();
  c0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
  sql_exec(db, "BEGIN");
  while ((v = bench_base_next(&b)) != NULL) {
    sqlite3_bind_int64(s, 1, i + 1);
    sqlite3_bind_blob(s, 2, v, b.dim * 4, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
      bench_die("insert of row %lld: %s", (long long)i, sqlite3_errmsg(db));
    sqlite3_reset(s);
    i++;
  }
  sqlite3_finalize(s);
  sql_exec(db, "COMMIT");
  print_build(o, "insert", b.n, b.dim, now_s() - t0,
              cpu_s(CLOCK_PROCESS_CPUTIME_ID) - c0);
  if (o->bRebuild) {
    t0 = now_s();
    c0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    sql_exec(db, "INSERT INTO t(t) VALUES('rebuild')");
    print_build(o, "rebuild", b.n, b.dim, now_s() - t0,
                cpu_s(CLOCK_PROCESS_CPUTIME_ID) - c0);
  }
  print_info(db);
  bench_base_close(&b);
  if (sqlite3_close(db) != SQLITE_OK)
    bench_die("close: %s", sqlite3_errmsg(db));
  printf("SIZE system=annex db_bytes=%lld\n", (long long)db_bytes(o->zDb));
}

/* ------------------------------------------------------------ query */

/* One query: the first k rows into aId (0-based rows, -1 padded). */
static void run_query(sqlite3 *db, sqlite3_stmt *s, const float *q, int dim,
                      int ef, int k, int32_t *aId) {
  int n = 0, rc;
  sqlite3_bind_blob(s, 1, q, dim * 4, SQLITE_STATIC);
  if (ef > 0) sqlite3_bind_int(s, 2, ef);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (n < k) aId[n] = (int32_t)(sqlite3_column_int64(s, 0) - 1);
    n++;
  }
  if (rc != SQLITE_DONE) bench_die("query failed: %s", sqlite3_errmsg(db));
  sqlite3_reset(s);
  for (; n < k; n++) aId[n] = -1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void run_sweep(const hopts *o, sqlite3 *db, sqlite3_stmt *s,
                      const bench_vecs *qs) {
  int k = o->k, nq = qs->n;
  int32_t *aIds = calloc((size_t)nq * (size_t)k, sizeof(int32_t));
  int32_t *aScratch = calloc((size_t)k, sizeof(int32_t));
  double *aLat = calloc((size_t)nq * (size_t)o->nRepeat, sizeof(double));
  double *aQps = calloc((size_t)o->nRepeat, sizeof(double));
  double *aQpsSorted = calloc((size_t)o->nRepeat, sizeof(double));
  double *aQpsCpu = calloc((size_t)o->nRepeat, sizeof(double));
  if (!aIds || !aScratch || !aLat || !aQps || !aQpsSorted || !aQpsCpu)
    bench_die("out of memory");
  for (int e = 0; e < o->nEf; e++) {
    int ef = o->aEf[e];
    char zPath[1100];
    FILE *f;
    size_t nLat = (size_t)nq * (size_t)o->nRepeat;
    for (int w = 0; w < 5; w++)
      run_query(db, s, bench_vecs_frow(qs, w % nq), qs->dim, ef, k, aScratch);
    for (int p = 0; p < o->nRepeat; p++) {
      double sum = 0, c0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
      for (int i = 0; i < nq; i++) {
        int32_t *aDst = p == 0 ? aIds + (size_t)i * (size_t)k : aScratch;
        double t0 = now_s(), dt;
        run_query(db, s, bench_vecs_frow(qs, i), qs->dim, ef, k, aDst);
        dt = now_s() - t0;
        aLat[(size_t)p * (size_t)nq + (size_t)i] = 1e6 * dt;
        sum += dt;
      }
      aQps[p] = nq / sum;
      aQpsCpu[p] = nq / (cpu_s(CLOCK_THREAD_CPUTIME_ID) - c0);
    }
    qsort(aQpsCpu, (size_t)o->nRepeat, sizeof(double), cmp_double);
    memcpy(aQpsSorted, aQps, (size_t)o->nRepeat * sizeof(double));
    qsort(aQpsSorted, (size_t)o->nRepeat, sizeof(double), cmp_double);
    qsort(aLat, nLat, sizeof(double), cmp_double);
    snprintf(zPath, sizeof(zPath), "%s/ids/annex.ef%d.i32", o->zOut, ef);
    f = fopen(zPath, "wb");
    if (!f || fwrite(aIds, 4, (size_t)nq * (size_t)k, f) != (size_t)nq * k)
      bench_die("cannot write %s", zPath);
    fclose(f);
    printf("SEARCH system=annex ef=%d queries=%d k=%d qps=%.1f qps_passes=",
           ef, nq, k, aQpsSorted[o->nRepeat / 2]);
    for (int p = 0; p < o->nRepeat; p++) printf("%s%.1f", p ? "," : "", aQps[p]);
    printf(" qps_cpu=%.1f p50_us=%.1f p99_us=%.1f ids=%s\n",
           aQpsCpu[o->nRepeat / 2], aLat[(size_t)(0.50 * (double)(nLat - 1))],
           aLat[(size_t)(0.99 * (double)(nLat - 1))], zPath);
    fflush(stdout);
  }
  free(aIds);
  free(aScratch);
  free(aLat);
  free(aQps);
  free(aQpsSorted);
  free(aQpsCpu);
}

static void run_queries(const hopts *o) {
  char zPath[1100], *zSql;
  bench_vecs qs;
  sqlite3 *db;
  sqlite3_stmt *s;
  int32_t *aOne;
  int bKnob = o->aEf[0] > 0;
  double t0, t1, t2;
  snprintf(zPath, sizeof(zPath), "%s/query.fvecs", o->zData);
  bench_vecs_read(zPath, 0, &qs);
  snprintf(zPath, sizeof(zPath), "%s/ids", o->zOut);
  mkdir(o->zOut, 0755);
  mkdir(zPath, 0755);
  aOne = calloc((size_t)o->k, sizeof(int32_t));
  if (!aOne) bench_die("out of memory");
  t0 = now_s();
  db = db_open(o);
  t1 = now_s();
  set_threads(db, 1);
  zSql = sqlite3_mprintf(
      "SELECT rowid, distance FROM t WHERE embedding MATCH ?1 AND k = %d%s",
      o->k, bKnob ? " AND ef_search = ?2" : "");
  t2 = now_s();
  s = sql_prepare(db, zSql);
  run_query(db, s, bench_vecs_frow(&qs, 0), qs.dim, bKnob ? o->firstEf : 0,
            o->k, aOne);
  printf("REOPEN system=annex index_bytes=%lld open_ms=%.3f "
         "first_query_ms=%.3f first_ef=%d\n",
         (long long)db_bytes(o->zDb), 1e3 * (t1 - t0), 1e3 * (now_s() - t2),
         bKnob ? o->firstEf : 0);
  printf("QUERY sql=\"%s\"\n", zSql);
  fflush(stdout);
  sqlite3_free(zSql);
  run_sweep(o, db, s, &qs);
  print_info(db);
  printf("MEMORY system=annex rss_kb=%ld hwm_kb=%ld\n", status_kb("VmRSS"),
         status_kb("VmHWM"));
  sqlite3_finalize(s);
  sqlite3_close(db);
  bench_vecs_free(&qs);
  free(aOne);
}

int main(int argc, char **argv) {
  hopts o;
  memset(&o, 0, sizeof(o));
  o.nThreads = 1;
  o.m = 16;
  o.efc = 200;
  o.k = 10;
  o.nRepeat = 3;
  o.firstEf = 64;
  parse_ef(&o, "10,16,24,32,40,48,64,96,128,192,256");
  parse_opts(&o, argc, argv);
  if (strcmp(o.zMode, "build") == 0) run_build(&o);
  else run_queries(&o);
  return 0;
}
