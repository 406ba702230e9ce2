/*
** gpu_sql_bench.c — what a SQLite user sees of the GPU: k-NN through SQL
** with annex (static build) and the CUDA plugin, from the host process.
**
**   annex_gpu_sql_bench [--rows N] [--dim D] [--out FILE.md] [--quick]
**                       [--ivf-only]
**
** Builds a clustered float table of N x D (default 1M x 128) in a file
** database under $TMPDIR (mmap on), then measures, k = 10:
**   - index=ivf (flat codes, nlist 4 sqrt(N)) at nprobe 8, 32, 128: one
**     k-NN with the probed lists scanned on the CPU and on the GPU (same
**     rowids required), recall@10 against the exact answer (--ivf-only:
**     this section alone);
**   - one k-NN, end to end (bind, step every row): device=cpu at 1 thread
**     and at every core (annex_threads), device=gpu; the first GPU query
**     (the upload) separately; GPU answers compared with the CPU's;
**   - the batch function annex_knn with 100, 1000 and 10000 queries;
**   - the device=auto threshold: CPU vs GPU single-query latency at
**     10k..300k rows.
** Writes a markdown report (--out) and prints it. Exit 1 when a GPU answer
** differs from the CPU's or the GPU did not answer.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

int sqlite3_annex_init(sqlite3 *, char **, const void *);

static FILE *g_out;
static int g_bad;

static void say(const char *zFmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void say(const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  vprintf(zFmt, ap);
  va_end(ap);
  if (g_out) {
    va_start(ap, zFmt);
    vfprintf(g_out, zFmt, ap);
    va_end(ap);
  }
  fflush(stdout);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double unif(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (double)(g_rng >> 11) / 9007199254740992.0;
}
static float gauss(void) {
  double u = unif() + 1e-12, v = unif();
  return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* Clustered data: 100 centres in [-1,1]^d, points at sigma 0.3. */
static float *g_centre;
static void clustered(float *a, int d) {
  int c = (int)(unif() * 100);
  for (int j = 0; j < d; j++) a[j] = g_centre[c * d + j] + 0.3f * gauss();
}

static void exec(sqlite3 *db, const char *zSql) {
  char *zErr = NULL;
  if (sqlite3_exec(db, zSql, NULL, NULL, &zErr) != SQLITE_OK) {
    fprintf(stderr, "%s: %s\n", zSql, zErr);
    exit(1);
  }
}

static sqlite3_stmt *prep(sqlite3 *db, const char *zSql) {
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db, zSql, -1, &s, NULL) != SQLITE_OK) {
    fprintf(stderr, "%s: %s\n", zSql, sqlite3_errmsg(db));
    exit(1);
  }
  return s;
}

static char *info(sqlite3 *db, const char *zTab, const char *zKey) {
  static char az[4][512]; /* several may appear in one say() */
  static int i;
  char *z = az[i++ & 3];
  char *zSql = sqlite3_mprintf("SELECT value FROM annex_info(%Q) WHERE key "
                               "= %Q", zTab, zKey);
  sqlite3_stmt *s = prep(db, zSql);
  z[0] = 0;
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0)) {
    snprintf(z, sizeof(az[0]), "%s", sqlite3_column_text(s, 0));
  }
  sqlite3_finalize(s);
  sqlite3_free(zSql);
  return z;
}

static void make_table(sqlite3 *db, const char *zTab, int n, int d) {
  float *a = malloc(sizeof(float) * (size_t)d);
  char *zSql = sqlite3_mprintf("CREATE VIRTUAL TABLE %s USING annex(emb "
                               "float[%d])", zTab, d);
  sqlite3_stmt *s;
  double t0 = now_ms();
  exec(db, zSql);
  sqlite3_free(zSql);
  exec(db, "BEGIN");
  zSql = sqlite3_mprintf("INSERT INTO %s(emb) VALUES(?)", zTab);
  s = prep(db, zSql);
  sqlite3_free(zSql);
  for (int i = 0; i < n; i++) {
    clustered(a, d);
    sqlite3_bind_blob(s, 1, a, d * 4, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) {
      fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db));
      exit(1);
    }
    sqlite3_reset(s);
  }
  sqlite3_finalize(s);
  exec(db, "COMMIT");
  free(a);
  say("- table %s: %d x %d inserted in %.1f s\n", zTab, n, d,
      (now_ms() - t0) / 1e3);
}

/* One k-NN through SQL; rowids into aId (k of them). Returns ms. */
static double knn(sqlite3_stmt *s, const float *q, int d, const char *zDev,
                  sqlite3_int64 *aId) {
  double t0 = now_ms();
  int n = 0, rc;
  sqlite3_bind_blob(s, 1, q, d * 4, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, zDev, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (aId && n < 10) aId[n] = sqlite3_column_int64(s, 0);
    n++;
  }
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "k-NN on %s: %s\n", zDev,
            sqlite3_errmsg(sqlite3_db_handle(s)));
    g_bad = 1;
  }
  sqlite3_reset(s);
  return now_ms() - t0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
static double pct(double *a, int n, double p) {
  qsort(a, (size_t)n, sizeof(double), cmp_d);
  return a[(int)(p * (n - 1) + 0.5)];
}

/* Median and p90 of nRep single queries on zDev; compares rowids with
** aRef (nRep x 10) when given, else fills it. */
static void single(sqlite3 *db, const char *zTab, const float *aQ, int d,
                   int nRep, const char *zDev, sqlite3_int64 *aRef,
                   double *pMed, double *pP90) {
  char *zSql = sqlite3_mprintf("SELECT rowid, distance FROM %s WHERE emb "
                               "MATCH ?1 AND k = 10 AND device = ?2", zTab);
  sqlite3_stmt *s = prep(db, zSql);
  double *aT = malloc(sizeof(double) * (size_t)nRep);
  sqlite3_free(zSql);
  for (int i = 0; i < nRep; i++) {
    sqlite3_int64 aId[10];
    memset(aId, 0, sizeof(aId));
    aT[i] = knn(s, aQ + (size_t)i * d, d, zDev, aId);
    if (aRef && aRef[i * 10] != 0) {
      if (memcmp(aRef + i * 10, aId, sizeof(aId)) != 0) {
        say("  MISMATCH: query %d on %s differs from the CPU\n", i, zDev);
        g_bad = 1;
      }
    } else if (aRef) {
      memcpy(aRef + i * 10, aId, sizeof(aId));
    }
  }
  *pMed = pct(aT, nRep, 0.5);
  *pP90 = pct(aT, nRep, 0.9);
  sqlite3_finalize(s);
  free(aT);
}

/* annex_knn with nQ queries: wall ms of the statement, every row read. */
static double batch(sqlite3 *db, const char *zTab, const float *aQ, int nQ,
                    int d, sqlite3_int64 *pnRow) {
  char *zSql = sqlite3_mprintf("SELECT query, rowid, distance FROM "
                               "annex_knn('%s', ?, 10)", zTab);
  sqlite3_stmt *s = prep(db, zSql);
  double t0 = now_ms();
  int rc;
  sqlite3_free(zSql);
  *pnRow = 0;
  sqlite3_bind_blob(s, 1, aQ, nQ * d * 4, SQLITE_STATIC);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) (*pnRow)++;
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "annex_knn: %s\n", sqlite3_errmsg(db));
    g_bad = 1;
  }
  sqlite3_finalize(s);
  return now_ms() - t0;
}

static void section_single(sqlite3 *db, const float *aQ, int n, int d,
                           int nRep) {
  sqlite3_int64 *aRef = calloc((size_t)nRep * 10, sizeof(sqlite3_int64));
  double m1, p1, mN, pN, mG, pG, tFirst;
  int nCore = (int)sysconf(_SC_NPROCESSORS_ONLN);
  char zSql[64];
  single(db, "v", aQ, d, nRep, "cpu", aRef, &m1, &p1);
  snprintf(zSql, sizeof(zSql), "SELECT annex_threads(%d)", nCore);
  exec(db, zSql);
  single(db, "v", aQ, d, nRep, "cpu", aRef, &mN, &pN);
  exec(db, "SELECT annex_threads(1)");
  tFirst = now_ms();
  single(db, "v", aQ + (size_t)nRep * d, d, 1, "gpu", NULL, &mG, &pG);
  tFirst = now_ms() - tFirst;
  if (g_bad) {
    say("\nThe GPU did not answer: %s\n", info(db, "v", "gpu_plugin"));
    exit(1);
  }
  say("\n## One k-NN through SQL, %d x %d, k = 10 (%d queries each)\n\n", n, d,
      nRep);
  say("First GPU query (opens the device, reads the table out of SQLite, "
      "uploads it): %.1f ms; annex_info gpu_upload_ms = %s, "
      "gpu_bytes_resident = %s, gpu_host_bytes = %s\n\n", tFirst,
      info(db, "v", "gpu_upload_ms"), info(db, "v", "gpu_bytes_resident"),
      info(db, "v", "gpu_host_bytes"));
  single(db, "v", aQ, d, nRep, "gpu", aRef, &mG, &pG);
  say("| device | median ms | p90 ms | speed-up vs 1 CPU thread |\n");
  say("|---|---|---|---|\n");
  say("| cpu, 1 thread (default) | %.3f | %.3f | 1.0x |\n", m1, p1);
  say("| cpu, %d threads | %.3f | %.3f | %.1fx |\n", nCore, mN, pN, m1 / mN);
  say("| gpu | %.3f | %.3f | %.1fx |\n\n", mG, pG, m1 / mG);
  say("GPU rowids equal to the CPU's for all %d queries: %s; last_device = "
      "%s; %s\n", nRep, g_bad ? "NO" : "yes", info(db, "v", "last_device"),
      info(db, "v", "gpu_counts"));
  free(aRef);
}

static void section_batch(sqlite3 *db, const float *aQ, int d,
                          const char *zThreads) {
  static const int aN[] = {100, 1000, 10000};
  setenv("ANNEX_GPU_RESCORE_THREADS", zThreads, 1);
  say("\n## Batch: annex_knn('v', Q queries, 10), every row read; CPU "
      "re-score on %s thread(s)\n\n", zThreads);
  say("| Q | wall ms (best of 3) | QPS | rows | inside annex_gpu_batch "
      "(annex_info gpu_last_ms) |\n|---|---|---|---|---|\n");
  for (int i = 0; i < 3; i++) {
    double best = 1e30;
    sqlite3_int64 nRow = 0;
    for (int r = 0; r < 3; r++) {
      double t = batch(db, "v", aQ, aN[i], d, &nRow);
      if (t < best) best = t;
    }
    say("| %d | %.1f | %.0f | %lld | %s |\n", aN[i], best,
        aN[i] / best * 1e3, (long long)nRow, info(db, "v", "gpu_last_ms"));
  }
  say("\nlast_device = %s; %s\n", info(db, "v", "last_device"),
      info(db, "v", "gpu_counts"));
}

/* device=auto's threshold: CPU vs GPU at growing sizes. */
static void section_threshold(sqlite3 *db, const float *aQ, int d) {
  static const int aN[] = {10000, 30000, 100000, 300000};
  say("\n## Where the GPU starts to pay (one k-NN through SQL, k = 10, "
      "d = %d, median of 50)\n\n", d);
  say("| rows | rows x dims | cpu ms (1 thread) | gpu ms | cpu/gpu |\n");
  say("|---|---|---|---|---|\n");
  for (int i = 0; i < 4; i++) {
    char zTab[32];
    double mc, pc, mg, pg;
    sqlite3_int64 *aRef = calloc(500, sizeof(sqlite3_int64));
    snprintf(zTab, sizeof(zTab), "t%d", aN[i]);
    make_table(db, zTab, aN[i], d);
    single(db, zTab, aQ, d, 50, "cpu", aRef, &mc, &pc);
    single(db, zTab, aQ, d, 1, "gpu", NULL, &mg, &pg); /* upload */
    single(db, zTab, aQ, d, 50, "gpu", aRef, &mg, &pg);
    say("| %d | %.2fM | %.3f | %.3f | %.2fx |\n", aN[i],
        (double)aN[i] * d / 1e6, mc, mg, mc / mg);
    free(aRef);
  }
}

/* Searches of table w's index that ran on the GPU so far. */
static long long searches(sqlite3 *db) {
  char *z = info(db, "w", "gpu_index"), *zS = strstr(z, "searches=");
  return zS ? atoll(zS + 9) : 0;
}

/* index=ivf (flat codes): the same probed lists scanned on the CPU
** (device=cpu) and on the GPU (device=auto), so equal recall by
** construction (the rowids are compared); recall@10 against the exact
** answer (device=gpu skips the index). */
static void section_ivf(sqlite3 *db, const float *aQ, int n, int d, int nRep,
                        int nList) {
  static const int aProbe[] = {8, 32, 128};
  char zSql[256];
  double t0 = now_ms();
  sqlite3_int64 *aExact = calloc((size_t)nRep * 10, sizeof(sqlite3_int64));
  float *a = malloc(sizeof(float) * (size_t)d);
  sqlite3_stmt *s;
  snprintf(zSql, sizeof(zSql), "CREATE VIRTUAL TABLE w USING annex(emb "
           "float[%d], index=ivf(nlist=%d))", d, nList);
  exec(db, zSql);
  exec(db, "BEGIN");
  s = prep(db, "INSERT INTO w(emb) VALUES(?)");
  for (int i = 0; i < n; i++) {
    clustered(a, d);
    sqlite3_bind_blob(s, 1, a, d * 4, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) g_bad = 1;
    sqlite3_reset(s);
  }
  sqlite3_finalize(s);
  exec(db, "COMMIT"); /* trains: k-means, assignment on the GPU under auto */
  say("\n## index=ivf (flat codes), %d x %d, nlist = %d: the probed lists "
      "on the CPU and on the GPU\n\n", n, d, nList);
  say("Insert + training at COMMIT: %.1f s (ivf_state = %s; %s)\n\n",
      (now_ms() - t0) / 1e3, info(db, "w", "ivf_state"),
      info(db, "w", "gpu_kmeans"));
  s = prep(db, "SELECT rowid FROM w WHERE emb MATCH ?1 AND k = 10 AND "
               "device = ?2");
  for (int i = 0; i < nRep; i++) { /* the exact answer (GPU, no index) */
    knn(s, aQ + (size_t)i * d, d, "gpu", aExact + (size_t)i * 10);
  }
  sqlite3_finalize(s);
  say("| nprobe | recall@10 | cpu median ms | cpu p90 | auto median ms | "
      "auto p90 | cpu/auto | auto ran on the GPU | first auto query ms |\n"
      "|---|---|---|---|---|---|---|---|---|\n");
  for (int ip = 0; ip < 3; ip++) {
    sqlite3_int64 *aCpu = calloc((size_t)nRep * 10, sizeof(sqlite3_int64));
    sqlite3_int64 *aGpu = calloc((size_t)nRep * 10, sizeof(sqlite3_int64));
    double *aTc = malloc(sizeof(double) * (size_t)nRep);
    double *aTg = malloc(sizeof(double) * (size_t)nRep);
    double tFirst;
    int nHit = 0;
    long long nGpu0;
    snprintf(zSql, sizeof(zSql), "SELECT rowid FROM w WHERE emb MATCH ?1 "
             "AND k = 10 AND device = ?2 AND nprobe = %d", aProbe[ip]);
    s = prep(db, zSql);
    tFirst = knn(s, aQ, d, "auto", NULL); /* ip 0: the upload */
    nGpu0 = searches(db);
    for (int i = 0; i < nRep; i++) {
      const float *q = aQ + (size_t)i * d;
      aTc[i] = knn(s, q, d, "cpu", aCpu + (size_t)i * 10);
      aTg[i] = knn(s, q, d, "auto", aGpu + (size_t)i * 10);
      if (memcmp(aCpu + (size_t)i * 10, aGpu + (size_t)i * 10,
                 10 * sizeof(sqlite3_int64)) != 0) {
        say("  MISMATCH: ivf query %d, nprobe %d: GPU differs from CPU\n", i,
            aProbe[ip]);
        g_bad = 1;
      }
      for (int j = 0; j < 10; j++) {
        for (int k = 0; k < 10; k++) {
          nHit += aCpu[(size_t)i * 10 + j] == aExact[(size_t)i * 10 + k];
        }
      }
    }
    sqlite3_finalize(s);
    {
      double mc = pct(aTc, nRep, 0.5), pc = pct(aTc, nRep, 0.9);
      double mg = pct(aTg, nRep, 0.5), pg = pct(aTg, nRep, 0.9);
      say("| %d | %.4f | %.3f | %.3f | %.3f | %.3f | %.1fx | %lld of %d | "
          "%.1f |\n", aProbe[ip], nHit / (10.0 * nRep), mc, pc, mg, pg,
          mc / mg, searches(db) - nGpu0, nRep, tFirst);
    }
    free(aCpu);
    free(aGpu);
    free(aTc);
    free(aTg);
  }
  say("\nGPU rowids equal to the CPU's at every nprobe: %s; last_device = "
      "%s; gpu_index = %s; %s\n", g_bad ? "NO" : "yes",
      info(db, "w", "last_device"), info(db, "w", "gpu_index"),
      info(db, "w", "gpu_counts"));
  free(aExact);
  free(a);
}

int main(int argc, char **argv) {
  int n = 1000000, d = 128, nRep = 50, bIvfOnly = 0;
  const char *zOut = NULL;
  char zPath[512];
  sqlite3 *db;
  float *aQ;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--rows") && i + 1 < argc) n = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--dim") && i + 1 < argc) d = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) zOut = argv[++i];
    else if (!strcmp(argv[i], "--quick")) n = 100000, nRep = 10;
    else if (!strcmp(argv[i], "--ivf-only")) bIvfOnly = 1;
  }
  if (zOut && (g_out = fopen(zOut, "w")) == NULL) return 1;
  sqlite3_auto_extension((void (*)(void))sqlite3_annex_init);
  snprintf(zPath, sizeof(zPath), "%s/annex-gpu-sql-bench.db",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  unlink(zPath);
  if (sqlite3_open(zPath, &db) != SQLITE_OK) return 1;
  exec(db, "PRAGMA mmap_size = 17179869184; PRAGMA journal_mode = OFF; "
       "PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000");
  g_centre = malloc(sizeof(float) * 100 * (size_t)d);
  for (int i = 0; i < 100 * d; i++) g_centre[i] = (float)(2 * unif() - 1);
  aQ = malloc(sizeof(float) * 10000 * (size_t)d);
  for (int i = 0; i < 10000; i++) clustered(aQ + (size_t)i * d, d);
  say("# annex through SQL on the GPU (annex_gpu_sql_bench)\n\n");
  say("SQLite %s; plugin: %s\n\n", sqlite3_libversion(),
      getenv("ANNEX_CUDA_PLUGIN") ? getenv("ANNEX_CUDA_PLUGIN") : "default");
  /* nlist 4 sqrt(n), annex's default rule, fixed here for the record */
  section_ivf(db, aQ, n, d, nRep, (int)(4 * sqrt((double)n)));
  if (bIvfOnly) goto done;
  make_table(db, "v", n, d);
  section_single(db, aQ, n, d, nRep);
  say("\nannex_info: gpu_plugin = %s; gpu_device = %s\n",
      info(db, "v", "gpu_plugin"), info(db, "v", "gpu_device"));
  {
    char zCore[16];
    snprintf(zCore, sizeof(zCore), "%d", (int)sysconf(_SC_NPROCESSORS_ONLN));
    section_batch(db, aQ, d, "1");
    section_batch(db, aQ, d, zCore); /* the default: annex_build_threads() */
    unsetenv("ANNEX_GPU_RESCORE_THREADS");
  }
  section_threshold(db, aQ, d);
done:
  say("\n%s\n", g_bad ? "FAILED: see above" : "ok: every GPU answer equal to "
                                               "the CPU's");
  sqlite3_close(db);
  unlink(zPath);
  if (g_out) fclose(g_out);
  return g_bad;
}
