/*
** gpu_kmeans_bench.c — issue 6's k-means on the device: checks and timings
** (scripts/gpu-kmeans-bench.sh runs it on the H200).
**
**   1. xKmeansAssign (annex_cuda.h v2) against the CPU's annex_kmeans_assign
**      on clustered data (l2 and ip; dims 128 and 100): every assignment
**      that differs must be a tie within float rounding, i.e. the two
**      centroids' exact (double) scores differ by at most
**      4 (d+4) u (|x| + max|c|)^2 (l2) or 4 (d+4) u |x| max|c| (ip),
**      u = 2^-24; the scores must agree within the same bound.
**   2. k-means training (annex_kmeans_train, 10 iterations, seeded) on
**      n x dims, nlist centroids, with the CPU assignment (BLAS, all cores)
**      and with the GPU hook (the sample resident on the device): wall
**      time of each and the objectives.
**   3. Through SQL: index=ivf trained on a table under device=cpu and one
**      under device=auto, annex_info's gpu_kmeans, and top-10 agreement of
**      the two at the same nprobe.
** Without a device: prints "SKIP: no CUDA device" and exits 0.
** Options: --n N --dim D --nlist K (part 2; default 1000000 128 4096),
**          --quick (part 2 at 100000 x 128, nlist 1024).
*/
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../index/kmeans.h"
#include "annex_cuda.h"

int sqlite3_annex_init(sqlite3 *, char **, const void *);

static const annex_cuda_api *api;
static void *gctx;
static int nFail;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static uint64_t rng = 0x1234567;
static double unif(void) {
  return (double)(annex_kmeans_rand(&rng) >> 11) * 0x1.0p-53;
}
static float gauss(void) {
  double u = unif() + 1e-300, v = unif();
  return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}
/* n x d, around nC random centres (spread 1, noise 0.3). */
static float *clustered(size_t n, size_t d, size_t nC) {
  float *c = malloc(nC * d * sizeof(float)), *x = malloc(n * d * sizeof(float));
  for (size_t i = 0; i < nC * d; i++) c[i] = gauss();
  for (size_t i = 0; i < n; i++) {
    const float *cc = c + (annex_kmeans_rand(&rng) % nC) * d;
    for (size_t t = 0; t < d; t++) x[i * d + t] = cc[t] + 0.3f * gauss();
  }
  free(c);
  return x;
}

static double dscore(const float *x, const float *c, size_t d, int bIP) {
  double s = 0;
  for (size_t t = 0; t < d; t++) {
    s += bIP ? -(double)x[t] * c[t] : ((double)x[t] - c[t]) * ((double)x[t] - c[t]);
  }
  return s;
}

static void check_assign(size_t n, size_t d, size_t k, int bIP) {
  float *x = clustered(n, d, 64), *c = malloc(k * d * sizeof(float));
  int32_t *a1 = malloc(n * 4), *a2 = malloc(n * 4);
  float *s1 = malloc(n * 4), *s2 = malloc(n * 4);
  double cmax = 0, t0, tc, tg;
  size_t nDiff = 0, nBad = 0, nScoreBad = 0;
  for (size_t j = 0; j < k; j++) { /* centroids: data points + noise */
    const float *src = x + (annex_kmeans_rand(&rng) % n) * d;
    double s = 0;
    for (size_t t = 0; t < d; t++) {
      c[j * d + t] = src[t] + 0.05f * gauss();
      s += (double)c[j * d + t] * c[j * d + t];
    }
    if (sqrt(s) > cmax) cmax = sqrt(s);
  }
  for (size_t i = 0; i < n; i++) a2[i] = -7, s2[i] = NAN; /* poison */
  t0 = now_ms();
  annex_kmeans_assign(x, n, d, c, k, bIP, (int)sysconf(_SC_NPROCESSORS_ONLN),
                      a1, s1);
  tc = now_ms() - t0;
  t0 = now_ms();
  int rc = api->xKmeansAssign(gctx, x, n, d, c, k, bIP ? ANNEX_CUDA_KM_IP : 0,
                              a2, s2);
  tg = now_ms() - t0;
  if (rc) {
    printf("FAIL assign: xKmeansAssign rc %d: %s\n", rc, api->xErrmsg(gctx));
    nFail++;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    const float *xi = x + i * d;
    double xn = sqrt(dscore(xi, xi, d, 1) * -1);
    double tol = bIP ? 4.0 * (d + 4) * 0x1p-24 * xn * cmax
                     : 4.0 * (d + 4) * 0x1p-24 * (xn + cmax) * (xn + cmax);
    if (a2[i] < 0 || a2[i] >= (int32_t)k || !(s2[i] == s2[i])) {
      nBad++;
      continue;
    }
    if (fabs((double)s1[i] - s2[i]) > tol) nScoreBad++;
    if (a1[i] != a2[i]) {
      double e1 = dscore(xi, c + (size_t)a1[i] * d, d, bIP);
      double e2 = dscore(xi, c + (size_t)a2[i] * d, d, bIP);
      nDiff++;
      if (fabs(e1 - e2) > tol) nBad++;
    }
  }
  printf("%s assign %zu x %zu, k=%zu, %s: %zu differ from the CPU (all "
         "ties within rounding: %s), %zu beyond the tie bound, %zu scores "
         "off; CPU %.1f ms, GPU %.1f ms (incl. transfers)\n",
         nBad || nScoreBad ? "FAIL" : "ok", n, d, k, bIP ? "ip" : "l2", nDiff,
         nBad ? "no" : "yes", nBad, nScoreBad, tc, tg);
  if (nBad || nScoreBad) nFail++;
  free(x), free(c), free(a1), free(a2), free(s1), free(s2);
}

static int hook(void *p, const float *aX, size_t n, size_t nDim,
                const float *aC, size_t k, int bIP, unsigned flags,
                int32_t *aAssign, float *aScore) {
  unsigned f = (bIP ? ANNEX_CUDA_KM_IP : 0) |
               (flags & ANNEX_KMEANS_HOLD_X ? ANNEX_CUDA_KM_HOLD_X : 0) |
               (flags & ANNEX_KMEANS_REUSE_X ? ANNEX_CUDA_KM_REUSE_X : 0);
  int rc = api->xKmeansAssign(gctx, aX, n, nDim, aC, k, f, aAssign, aScore);
  if (rc) fprintf(stderr, "hook: %s\n", api->xErrmsg(gctx));
  (*(int *)p)++;
  return rc;
}

static void train(size_t n, size_t d, int k) {
  float *x = clustered(n, d, 1000), *c1 = malloc((size_t)k * d * 4),
        *c2 = malloc((size_t)k * d * 4);
  annex_kmeans_params p;
  double o1 = 0, o2 = 0, t0, tc, tg;
  int nCall = 0, nt = (int)sysconf(_SC_NPROCESSORS_ONLN);
  memset(&p, 0, sizeof(p));
  p.k = k;
  p.nIter = 10;
  p.seed = 42;
  p.nThread = nt;
  t0 = now_ms();
  int rc1 = annex_kmeans_train(x, n, d, &p, c1, &o1);
  tc = now_ms() - t0;
  p.xAssign = hook;
  p.pAssignCtx = &nCall;
  t0 = now_ms();
  int rc2 = annex_kmeans_train(x, n, d, &p, c2, &o2);
  tg = now_ms() - t0;
  double dmax = 0;
  for (size_t i = 0; i < (size_t)k * d; i++) {
    if (fabs(c1[i] - c2[i]) > dmax) dmax = fabs(c1[i] - c2[i]);
  }
  printf("%s train %zu x %zu, nlist=%d, 10 iterations, %d threads: CPU %.0f "
         "ms (objective %.6e), GPU assignment %.0f ms (objective %.6e, %d "
         "device calls), speed-up %.1fx; objective rel. diff %.2e, largest "
         "centroid coordinate diff %.3g\n",
         rc1 || rc2 || nCall != 10 || fabs(o1 - o2) > 1e-3 * o1 ? "FAIL"
                                                                : "ok",
         n, d, k, nt, tc, o1, tg, o2, nCall, tc / tg, fabs(o1 - o2) / o1,
         dmax);
  if (rc1 || rc2 || nCall != 10 || fabs(o1 - o2) > 1e-3 * o1) nFail++;
  free(x), free(c1), free(c2);
}

static void exec(sqlite3 *db, const char *z) {
  char *zErr = NULL;
  if (sqlite3_exec(db, z, 0, 0, &zErr) != SQLITE_OK) {
    printf("FAIL sql: %s: %s\n", z, zErr);
    exit(1);
  }
}

static void sql_part(void) {
  const int n = 100000, d = 64, nQ = 200;
  float *x = clustered(n, d, 300), *q = clustered(nQ, d, 300);
  sqlite3 *db;
  sqlite3_stmt *s;
  double tt[2];
  sqlite3_int64 aHit[2][200 * 10];
  char zInfo[256] = "";
  sqlite3_open(":memory:", &db);
  for (int b = 0; b < 2; b++) {
    char *z = sqlite3_mprintf("CREATE VIRTUAL TABLE t%d USING annex(emb "
                              "float[%d], index=ivf(nlist=256), device=%s)",
                              b, d, b ? "auto" : "cpu");
    exec(db, z);
    sqlite3_free(z);
    exec(db, "BEGIN");
    z = sqlite3_mprintf("INSERT INTO t%d(emb) VALUES(?)", b);
    sqlite3_prepare_v2(db, z, -1, &s, 0);
    sqlite3_free(z);
    for (int i = 0; i < n; i++) {
      sqlite3_bind_blob(s, 1, x + (size_t)i * d, d * 4, SQLITE_STATIC);
      sqlite3_step(s);
      sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    double t0 = now_ms();
    exec(db, "COMMIT"); /* trains (xSync) */
    z = sqlite3_mprintf("INSERT INTO t%d(t%d) VALUES('train')", b, b);
    t0 = now_ms();
    exec(db, z);
    tt[b] = now_ms() - t0;
    sqlite3_free(z);
    z = sqlite3_mprintf("SELECT rowid FROM t%d WHERE emb MATCH ? AND k = 10 "
                        "AND nprobe = 16", b);
    sqlite3_prepare_v2(db, z, -1, &s, 0);
    sqlite3_free(z);
    for (int i = 0; i < nQ; i++) {
      int j = 0;
      sqlite3_bind_blob(s, 1, q + (size_t)i * d, d * 4, SQLITE_STATIC);
      while (sqlite3_step(s) == SQLITE_ROW && j < 10) {
        aHit[b][i * 10 + j++] = sqlite3_column_int64(s, 0);
      }
      for (; j < 10; j++) aHit[b][i * 10 + j] = -1;
      sqlite3_reset(s);
    }
    sqlite3_finalize(s);
  }
  sqlite3_prepare_v2(db, "SELECT value FROM annex_info('t1') WHERE key = "
                         "'gpu_kmeans'", -1, &s, 0);
  if (sqlite3_step(s) == SQLITE_ROW) {
    snprintf(zInfo, sizeof(zInfo), "%s", sqlite3_column_text(s, 0));
  }
  sqlite3_finalize(s);
  int nSame = 0, nQSame = 0;
  for (int i = 0; i < nQ; i++) {
    int same = 1;
    for (int j = 0; j < 10; j++) {
      int f = 0;
      for (int l = 0; l < 10; l++) f |= aHit[0][i * 10 + j] == aHit[1][i * 10 + l];
      nSame += f;
      same &= aHit[0][i * 10 + j] == aHit[1][i * 10 + j];
    }
    nQSame += same;
  }
  int ok = zInfo[0] && strstr(zInfo, "assignments=0") == NULL &&
           nSame >= 0.99 * nQ * 10;
  printf("%s sql: %d x %d index=ivf(nlist=256) 'train': device=cpu %.0f ms, "
         "device=auto %.0f ms; annex_info gpu_kmeans = '%s'; top-10 at "
         "nprobe=16: %d/%d queries identical, %.4f of ids shared\n",
         ok ? "ok" : "FAIL", n, d, tt[0], tt[1], zInfo, nQSame, nQ,
         nSame / (double)(nQ * 10));
  if (!ok) nFail++;
  sqlite3_close(db);
  free(x), free(q);
}

int main(int argc, char **argv) {
  size_t n = 1000000, d = 128;
  int k = 4096;
  const char *zPlugin = getenv("ANNEX_CUDA_PLUGIN");
  char zErr[256] = "";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--n") && i + 1 < argc) n = strtoull(argv[++i], 0, 10);
    else if (!strcmp(argv[i], "--dim") && i + 1 < argc) d = strtoull(argv[++i], 0, 10);
    else if (!strcmp(argv[i], "--nlist") && i + 1 < argc) k = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--quick")) n = 100000, k = 1024;
  }
  void *h = dlopen(zPlugin ? zPlugin : "annex_cuda.so", RTLD_NOW);
  if (h == NULL) {
    printf("SKIP: no CUDA device (plugin: %s)\n", dlerror());
    return 0;
  }
  api = ((annex_cuda_entry_fn)dlsym(h, ANNEX_CUDA_ENTRY))();
  if (api->iVersion < ANNEX_CUDA_ABI_KMEANS) {
    printf("FAIL: plugin ABI %d < %d\n", api->iVersion, ANNEX_CUDA_ABI_KMEANS);
    return 1;
  }
  if (api->xOpen(-1, zErr, sizeof(zErr), &gctx) != ANNEX_CUDA_OK) {
    printf("SKIP: no CUDA device (%s)\n", zErr);
    return 0;
  }
  sqlite3_auto_extension((void (*)(void))sqlite3_annex_init);
  check_assign(200000, 128, 1024, 0);
  check_assign(200000, 128, 1024, 1);
  check_assign(100000, 100, 300, 0);
  check_assign(1000, 16, 7, 0);
  /* fault injection: the next allocation fails -> NOMEM, context usable */
  {
    int32_t a[4];
    float xx[4 * 8] = {1, 2, 3}, cc[2 * 8] = {0};
    api->xTestControl(gctx, ANNEX_CUDA_TEST_FAIL_ALLOC, 0);
    int rc1 = api->xKmeansAssign(gctx, xx, 4, 8, cc, 2, 0, a, NULL);
    int rc2 = api->xKmeansAssign(gctx, xx, 4, 8, cc, 2, ANNEX_CUDA_KM_REUSE_X,
                                 a, NULL);
    int rc3 = api->xKmeansAssign(gctx, xx, 4, 8, cc, 2, 0, a, NULL);
    printf("%s faults: injected alloc failure -> %d (NOMEM %d), REUSE "
           "without held vectors -> %d, then ok -> %d\n",
           rc1 == ANNEX_CUDA_NOMEM && rc2 == ANNEX_CUDA_ERROR && rc3 == 0
               ? "ok" : "FAIL",
           rc1, ANNEX_CUDA_NOMEM, rc2, rc3);
    if (!(rc1 == ANNEX_CUDA_NOMEM && rc2 == ANNEX_CUDA_ERROR && rc3 == 0)) nFail++;
  }
  fflush(stdout);
  sql_part();
  fflush(stdout);
  train(n, d, k);
  api->xClose(gctx);
  printf("%s: %d failure(s)\n", nFail ? "FAILED" : "PASSED", nFail);
  return nFail ? 1 : 0;
}
