/*
** diskann_annex.c — annex index=diskann through SQL (bench/diskann_run.sh).
**
**   diskann_annex build --ext annex.so --data DIR --db FILE [--rows N]
**                       [--threads T] [--vtab-args ARGS]
**   diskann_annex query --ext annex.so --data DIR --db FILE [--rows N]
**                       [--lists 50,100,...] [--repeat 2] [--cold]
**                       [--sql-init SQL]
**
** build: deletes FILE, creates t USING annex(embedding float[D], index=
**   diskann(...)) (ARGS replaces the arguments), streams the first N rows
**   of DIR/base.fvecs (all by default) into one prepared INSERT inside one
**   BEGIN ... COMMIT (rowid = row + 1), in WAL mode so that the progress
**   watcher can read meanwhile; the graph is built at COMMIT on T
**   threads (SELECT annex_threads(T)). A second thread prints annex's
**   progress (annex_progress_handler is not exported, so it polls
**   annex_info on its own connection) every 10 s. Prints
**   "BUILD rows= seconds= rss_kb= hwm_kb= db_bytes= raw_bytes= ratio=".
** query: a fresh process. --cold first asks the kernel to drop the file's
**   pages (posix_fadvise DONTNEED: clean pages of a file we may read are
**   dropped without root). Opens FILE with the default page cache (or
**   --sql-init), one thread. For each search_list L: one pass over the
**   queries, each timed alone; the first pass of the first L is the cold
**   one. Recall@10 is tie-robust against DIR/groundtruth(_dist) or, with
**   --rows below the base size, against brute force computed here over the
**   first N rows. Prints "SEARCH list= pass= qps= recall= rss_kb=" and
**   the cache counters of annex_info.
*/
#define _XOPEN_SOURCE 700
#include "bench_data.h"

#include <sqlite3.h>

#include <fcntl.h>
#include <float.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct dopts {
  const char *zMode, *zExt, *zData, *zDb, *zVtabArgs, *zSqlInit, *zLists;
  int nRows, nThreads, nRepeat, bCold;
} dopts;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

static void exec_or_die(sqlite3 *db, const char *zSql) {
  char *zErr = NULL;
  if (sqlite3_exec(db, zSql, 0, 0, &zErr) != SQLITE_OK) {
    bench_die("%s: %s", zSql, zErr ? zErr : sqlite3_errmsg(db));
  }
}

static sqlite3 *open_db(const dopts *o) {
  sqlite3 *db;
  char *zErr = NULL;
  if (sqlite3_open(o->zDb, &db) != SQLITE_OK) bench_die("open %s", o->zDb);
  sqlite3_enable_load_extension(db, 1);
  if (sqlite3_load_extension(db, o->zExt, 0, &zErr) != SQLITE_OK) {
    bench_die("load %s: %s", o->zExt, zErr);
  }
  if (o->zSqlInit) exec_or_die(db, o->zSqlInit);
  return db;
}

/* Build ******************************************************************/

typedef struct watch {
  const dopts *o;
  volatile int bStop;
} watch;

static void *watch_main(void *pArg) {
  watch *w = (watch *)pArg;
  sqlite3 *db = open_db(w->o);
  double t0 = now_s();
  while (!w->bStop) {
    sqlite3_stmt *s = NULL;
    for (int i = 0; i < 100 && !w->bStop; i++) {
      struct timespec ts = {0, 100000000};
      nanosleep(&ts, NULL);
    }
    if (w->bStop) break;
    if (sqlite3_prepare_v2(db, "SELECT group_concat(key || '=' || value, ' ') "
                           "FROM annex_info('t') WHERE key LIKE 'progress%'",
                           -1, &s, 0) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0)) {
      printf("PROGRESS t=%.0f %s\n", now_s() - t0, sqlite3_column_text(s, 0));
      fflush(stdout);
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return NULL;
}

static void run_build(const dopts *o) {
  bench_base b;
  sqlite3 *db;
  sqlite3_stmt *s;
  char zSql[1024];
  const float *row;
  int64_t n = 0;
  double t0, t1;
  struct stat st;
  watch w = {o, 0};
  pthread_t th;
  unlink(o->zDb);
  bench_base_open(o->zData, &b);
  db = open_db(o);
  /* WAL: the progress watcher's connection can read while the build
  ** transaction writes (a rollback journal would lock it out) */
  exec_or_die(db, "PRAGMA journal_mode=WAL");
  snprintf(zSql, sizeof(zSql), "SELECT annex_threads(%d)", o->nThreads);
  exec_or_die(db, zSql);
  snprintf(zSql, sizeof(zSql), "CREATE VIRTUAL TABLE t USING annex(%s)",
           o->zVtabArgs ? o->zVtabArgs : "embedding float[128] distance=l2, "
           "index=diskann(r=64, l_build=100, alpha=1.2, pq_bytes=32, "
           "cache_mb=16)");
  exec_or_die(db, zSql);
  if (sqlite3_prepare_v2(db, "INSERT INTO t(rowid, embedding) VALUES(?, ?)",
                         -1, &s, 0) != SQLITE_OK) {
    bench_die("prepare: %s", sqlite3_errmsg(db));
  }
  pthread_create(&th, NULL, watch_main, &w);
  t0 = now_s();
  exec_or_die(db, "BEGIN");
  while ((o->nRows <= 0 || n < o->nRows) && (row = bench_base_next(&b))) {
    sqlite3_bind_int64(s, 1, n + 1);
    sqlite3_bind_blob(s, 2, row, b.dim * 4, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) bench_die("insert: %s", sqlite3_errmsg(db));
    sqlite3_reset(s);
    n++;
  }
  t1 = now_s();
  exec_or_die(db, "COMMIT");
  printf("LOAD rows=%lld insert_seconds=%.1f commit_seconds=%.1f\n",
         (long long)n, t1 - t0, now_s() - t1);
  t1 = now_s() - t0;
  w.bStop = 1;
  pthread_join(th, NULL);
  sqlite3_finalize(s);
  printf("BUILD rows=%lld seconds=%.1f threads=%d rss_kb=%ld hwm_kb=%ld ",
         (long long)n, t1, o->nThreads, status_kb("VmRSS"), status_kb("VmHWM"));
  sqlite3_close(db);
  stat(o->zDb, &st);
  printf("db_bytes=%lld raw_bytes=%lld ratio=%.2f\n", (long long)st.st_size,
         (long long)n * b.dim * 4, (double)st.st_size / ((double)n * b.dim * 4));
  bench_base_close(&b);
}

/* Query ******************************************************************/

/* True top-10 distances (squared) of each query over the first n rows. */
static float *brute_kth(const dopts *o, const bench_vecs *q, int n) {
  bench_base b;
  float *aBest = malloc(sizeof(float) * 10 * (size_t)q->n);
  char zPath[600];
  snprintf(zPath, sizeof(zPath), "%s/base.fvecs", o->zData);
  bench_base_open(zPath, &b);
  for (int i = 0; i < 10 * q->n; i++) aBest[i] = FLT_MAX;
  for (int r = 0; r < n; r++) {
    const float *v = bench_base_next(&b);
    for (int j = 0; j < q->n; j++) {
      const float *x = bench_vecs_frow(q, j);
      float *a = aBest + 10 * j, d = 0;
      int k;
      for (int t = 0; t < b.dim; t++) d += (x[t] - v[t]) * (x[t] - v[t]);
      if (d >= a[9]) continue;
      for (k = 9; k > 0 && a[k - 1] > d; k--) a[k] = a[k - 1];
      a[k] = d;
    }
  }
  bench_base_close(&b);
  return aBest;
}

static void drop_cache(const char *zPath) {
  int fd = open(zPath, O_RDONLY);
  if (fd >= 0) {
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
}

static void print_info(sqlite3 *db) {
  sqlite3_stmt *s;
  printf("INFO");
  if (sqlite3_prepare_v2(db, "SELECT key, value FROM annex_info('t') WHERE "
                         "key LIKE 'diskann_cache%' OR key = 'memory_index'",
                         -1, &s, 0) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      printf(" %s=%s", sqlite3_column_text(s, 0), sqlite3_column_text(s, 1));
    }
  }
  sqlite3_finalize(s);
  printf("\n");
}

static void run_query(const dopts *o) {
  char zPath[600];
  bench_vecs q, gt, gtd;
  float *aKth = NULL;
  sqlite3 *db;
  sqlite3_stmt *s;
  const char *z = o->zLists;
  int nFirst = 1;
  double t0;
  snprintf(zPath, sizeof(zPath), "%s/query.fvecs", o->zData);
  bench_vecs_read(zPath, 0, &q);
  memset(&gt, 0, sizeof(gt));
  memset(&gtd, 0, sizeof(gtd));
  if (o->nRows > 0) {
    aKth = brute_kth(o, &q, o->nRows);
  } else {
    snprintf(zPath, sizeof(zPath), "%s/groundtruth_dist.fvecs", o->zData);
    bench_vecs_read(zPath, 0, &gtd);
  }
  if (o->bCold) drop_cache(o->zDb);
  t0 = now_s();
  db = open_db(o);
  if (sqlite3_prepare_v2(db, "SELECT rowid, distance FROM t WHERE embedding "
                         "MATCH ?1 AND k = 10 AND search_list = ?2", -1, &s,
                         0) != SQLITE_OK) {
    bench_die("prepare: %s", sqlite3_errmsg(db));
  }
  printf("OPEN ms=%.1f rss_kb=%ld cold=%d\n", 1e3 * (now_s() - t0),
         status_kb("VmRSS"), o->bCold);
  while (*z) {
    int L = atoi(z);
    for (int pass = 0; pass < (nFirst ? o->nRepeat + 1 : o->nRepeat); pass++) {
      double tSum = 0, nHit = 0;
      for (int i = 0; i < q.n; i++) {
        double kth, t1 = now_s();
        sqlite3_bind_blob(s, 1, bench_vecs_frow(&q, i), q.dim * 4, SQLITE_STATIC);
        sqlite3_bind_int(s, 2, L);
        while (sqlite3_step(s) == SQLITE_ROW) {
          double dd = sqlite3_column_double(s, 1);
          kth = aKth ? aKth[10 * i + 9]
                     : (double)((const float *)gtd.data)[(size_t)gtd.dim * i + 9] *
                           ((const float *)gtd.data)[(size_t)gtd.dim * i + 9];
          if (dd * dd <= kth * (1 + 1e-5) + 1e-6) nHit++;
        }
        if (sqlite3_reset(s) != SQLITE_OK) bench_die("query: %s", sqlite3_errmsg(db));
        tSum += now_s() - t1;
      }
      printf("SEARCH list=%d pass=%s qps=%.1f recall=%.4f rss_kb=%ld\n", L,
             nFirst && pass == 0 ? (o->bCold ? "cold" : "first") : "warm",
             q.n / tSum, nHit / (10.0 * q.n), status_kb("VmRSS"));
      fflush(stdout);
    }
    nFirst = 0;
    while (*z && *z != ',') z++;
    if (*z == ',') z++;
  }
  print_info(db);
  printf("END rss_kb=%ld hwm_kb=%ld\n", status_kb("VmRSS"), status_kb("VmHWM"));
  sqlite3_finalize(s);
  sqlite3_close(db);
  free(aKth);
  bench_vecs_free(&q);
  if (gtd.data) bench_vecs_free(&gtd);
}

int main(int argc, char **argv) {
  dopts o;
  char zBase[600];
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach the log as they come */
  memset(&o, 0, sizeof(o));
  o.nThreads = 2;
  o.nRepeat = 2;
  o.zLists = "100";
  if (argc < 2) bench_die("usage: diskann_annex build|query --ext SO --data DIR --db FILE ...");
  o.zMode = argv[1];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--cold") == 0) { o.bCold = 1; continue; }
    if (v == NULL) bench_die("%s needs a value", a);
    i++;
    if (strcmp(a, "--ext") == 0) o.zExt = v;
    else if (strcmp(a, "--data") == 0) o.zData = v;
    else if (strcmp(a, "--db") == 0) o.zDb = v;
    else if (strcmp(a, "--rows") == 0) o.nRows = atoi(v);
    else if (strcmp(a, "--threads") == 0) o.nThreads = atoi(v);
    else if (strcmp(a, "--repeat") == 0) o.nRepeat = atoi(v);
    else if (strcmp(a, "--lists") == 0) o.zLists = v;
    else if (strcmp(a, "--vtab-args") == 0) o.zVtabArgs = v;
    else if (strcmp(a, "--sql-init") == 0) o.zSqlInit = v;
    else bench_die("unknown option %s", a);
  }
  if (!o.zExt || !o.zData || !o.zDb) bench_die("--ext, --data and --db are required");
  if (strcmp(o.zMode, "build") == 0) {
    snprintf(zBase, sizeof(zBase), "%s/base.fvecs", o.zData);
    o.zData = zBase;
    run_build(&o);
  } else if (strcmp(o.zMode, "query") == 0) {
    run_query(&o);
  } else {
    bench_die("mode must be build or query");
  }
  return 0;
}
