/*
** gpu_bench.c — the GPU benchmark of issue 6 (run by scripts/gpu-bench.sh).
**
**   annex_cuda_bench [--plugin PATH] [--out FILE.md] [--quick]
**
** Clustered fp32 data like the PyTorch anchor's (1000 centres ~ N(0, 9),
** points = centre + N(0, 1); queries from other centres), k = 10,
** nCand = k + ANNEX_CUDA_EXTRA(k) = 26 (xKnn is given k, so TF32 answers
** the device cannot prove are redone in fp32), exact results through the contract
** of annex_cuda.h (the CPU re-scores the candidates; "certified" counts the
** queries whose answer is thereby proven identical to the CPU scan).
**   (a) 1M x 128, one query: device time (CUDA events around the whole
**       call: query upload, kernels, result download), median of 500;
**   (b) 1M x 128, 10,000 queries; (c) 1M x 768, 10,000; (d) 10M x 128,
**       10,000: fp32 and TF32, several tile shapes, QPS from wall time of
**       the synchronous call (and from device time);
**   the first upload of each table; batch sizes 1..10,000 for the
**   scan/GEMM threshold; the ceilings (copy, read, SGEMM, TF32) measured in
**   the same run. Writes a markdown report (--out) and prints it.
*/
#include <stdarg.h>

#include "gpu_common.h"

static const annex_cuda_api *api;
static void *ctx;
static FILE *md;
static double gCopy, gRead, gSgemm, gTf32;

#define K 10

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *a, int n) {
  qsort(a, n, sizeof(double), cmp_d);
  return n % 2 ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2]);
}

static void out(const char *zFmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  vprintf(zFmt, ap);
  va_end(ap);
  if (md) {
    va_start(ap, zFmt);
    vfprintf(md, zFmt, ap);
    va_end(ap);
    fflush(md);
  }
  fflush(stdout);
}

typedef struct Work {
  size_t n, d, nQ;
  float *X, *Q;
  DRes *ref;  /* nRef x K exact top-k of the first nRef queries */
  size_t nRef;
} Work;

/* Verify an answer: certified count over all queries; agreement with the
** exact (double) top-k on the sampled ones. */
static void verify(const Work *w, const annex_cuda_hit *aHit,
                   const size_t *anHit, const float *aFloor, size_t nQ,
                   size_t nCand, long *pnCert, long *pnRefOk) {
  long nCert = 0, nOk = 0;
#pragma omp parallel for reduction(+ : nCert) schedule(dynamic, 64)
  for (long q = 0; q < (long)nQ; q++) {
    Res r[K];
    size_t nr;
    nCert += cpu_certify(ANNEX_CUDA_L2, w->Q + (size_t)q * w->d, w->X, w->d,
                         aHit + (size_t)q * nCand, anHit[q], aFloor[q], K, r,
                         &nr);
  }
  for (size_t q = 0; q < w->nRef && q < nQ; q++) {
    Res r[K];
    size_t nr;
    int ok = 1;
    cpu_certify(ANNEX_CUDA_L2, w->Q + q * w->d, w->X, w->d, aHit + q * nCand,
                anHit[q], aFloor[q], K, r, &nr);
    for (size_t i = 0; i < K; i++) {
      double a = ref_score(ANNEX_CUDA_L2, w->Q + q * w->d,
                           w->X + (size_t)r[i].slot * w->d, w->d);
      double b = w->ref[q * K + i].s;
      if (nr != K || fabs(a - b) > 1e-5 * fabs(b)) ok = 0;
    }
    nOk += ok;
  }
  *pnCert = nCert;
  *pnRefOk = nOk;
}

static int setup(Work *w, size_t n, size_t d, size_t nQ, uint64_t seed) {
  double t0, t1;
  int rc;
  double *tmp;
  annex_cuda_stats st;
  w->n = n;
  w->d = d;
  w->nQ = nQ;
  w->X = malloc(sizeof(float) * n * d);
  w->Q = malloc(sizeof(float) * nQ * d);
  if (!w->X || !w->Q) {
    out("out of host memory\n");
    return 1;
  }
  t0 = wall_ms();
  gen_clustered(w->X, n, d, 1000, seed);
  gen_clustered(w->Q, nQ, d, 1000, seed + 17);
  t1 = wall_ms();
  printf("  generated %zu x %zu in %.0f ms\n", n, d, t1 - t0);
  t0 = wall_ms();
  rc = api->xUploadBegin(ctx, n, d, ANNEX_CUDA_L2);
  if (!rc) rc = api->xUploadChunk(ctx, 0, n, w->X, NULL, NULL);
  if (!rc) rc = api->xUploadEnd(ctx);
  t1 = wall_ms();
  if (rc) {
    out("upload failed: %d %s\n", rc, api->xErrmsg(ctx));
    return 1;
  }
  api->xStats(ctx, &st);
  out("\nTable %zu x %zu (%.2f GB): first upload %.1f ms (%.1f GB/s from "
      "pageable host memory, norms included); %.2f GB resident\n",
      n, d, n * d * 4e-9, t1 - t0, n * d * 4 / ((t1 - t0) * 1e6),
      st.nResident * 1e-9);
  /* the exact top-k of a sample of queries */
  w->nRef = 16;
  w->ref = malloc(sizeof(DRes) * w->nRef * K);
  tmp = malloc(sizeof(double) * n);
  t0 = wall_ms();
  for (size_t q = 0; q < w->nRef; q++) {
    size_t nr;
    ref_topk(ANNEX_CUDA_L2, w->Q + q * d, w->X, n, d, NULL, K,
             w->ref + q * K, &nr, tmp);
  }
  free(tmp);
  printf("  double-precision reference of %zu queries in %.0f ms\n", w->nRef,
         wall_ms() - t0);
  return 0;
}

static void teardown(Work *w) {
  free(w->X);
  free(w->Q);
  free(w->ref);
  memset(w, 0, sizeof(*w));
}

/* Batch of nQ queries: median wall and device ms of nRep calls after one
** warm-up. Returns 0 on success. */
static int run_batch(const Work *w, size_t nQ, unsigned flags, int nRep,
                     double *pWall, double *pDev, annex_cuda_hit *aHit,
                     size_t *anHit, float *aFloor) {
  const size_t nCand = K + ANNEX_CUDA_EXTRA(K);
  double tw[16], td[16];
  if (nRep > 16) nRep = 16;
  for (int r = -1; r < nRep; r++) {
    annex_cuda_stats st;
    double t0 = wall_ms();
    int rc = api->xKnn(ctx, w->Q, nQ, K, nCand, flags, NULL, aHit, anHit,
                       aFloor);
    double t1 = wall_ms();
    if (rc) {
      out("xKnn failed: %d %s\n", rc, api->xErrmsg(ctx));
      return rc;
    }
    api->xStats(ctx, &st);
    if (r >= 0) {
      tw[r] = t1 - t0;
      td[r] = st.rLastMs;
    }
  }
  *pWall = median(tw, nRep);
  *pDev = median(td, nRep);
  return 0;
}

static void single_query(const Work *w) {
  const size_t nCand = K + ANNEX_CUDA_EXTRA(K);
  const int nRun = 500;
  double *td = malloc(sizeof(double) * nRun), *tw = malloc(sizeof(double) * nRun);
  annex_cuda_hit h[64];
  size_t nh;
  float fl;
  long nCert = 0, nOk = 0;
  for (int i = -20; i < nRun; i++) {
    annex_cuda_stats st;
    const size_t q = (size_t)((i + 20) % 100);
    double t0 = wall_ms();
    int rc = api->xKnn(ctx, w->Q + q * w->d, 1, K, nCand, 0, NULL, h, &nh,
                       &fl);
    double t1 = wall_ms();
    if (rc) {
      out("single query failed: %d %s\n", rc, api->xErrmsg(ctx));
      return;
    }
    api->xStats(ctx, &st);
    if (i >= 0) {
      td[i] = st.rLastMs;
      tw[i] = t1 - t0;
    }
  }
  for (size_t q = 0; q < w->nRef; q++) {
    long c;
    api->xKnn(ctx, w->Q + q * w->d, 1, K, nCand, 0, NULL, h, &nh, &fl);
    {
      Res r[K];
      size_t nr;
      int ok = 1;
      c = cpu_certify(ANNEX_CUDA_L2, w->Q + q * w->d, w->X, w->d, h, nh, fl,
                      K, r, &nr);
      for (size_t i = 0; i < K; i++) {
        double a = ref_score(ANNEX_CUDA_L2, w->Q + q * w->d,
                             w->X + (size_t)r[i].slot * w->d, w->d);
        double b = w->ref[q * K + i].s;
        if (nr != K || fabs(a - b) > 1e-5 * fabs(b)) ok = 0;
      }
      nCert += c;
      nOk += ok;
    }
  }
  {
    double dev = median(td, nRun), wl = median(tw, nRun);
    double p10 = td[nRun / 10], p90 = td[nRun * 9 / 10];
    double bytes = (double)w->n * w->d * 4;
    out("\n### (a) %zu x %zu, one query, k=%d\n\n", w->n, w->d, K);
    out("| measure | value |\n|---|---|\n");
    out("| device time, median of %d (p10 / p90) | **%.3f ms** (%.3f / %.3f) |\n",
        nRun, dev, p10, p90);
    out("| host wall time per call, median | %.3f ms |\n", wl);
    out("| bytes read (table once) | %.0f MB |\n", bytes * 1e-6);
    out("| effective bandwidth | %.2f TB/s |\n", bytes / (dev * 1e-3) * 1e-12);
    out("| floor: bytes / measured copy bandwidth (%.2f TB/s) | %.3f ms -> "
        "**%.0f%%** of it |\n",
        gCopy * 1e-3, bytes / (gCopy * 1e9) * 1e3,
        100.0 * (bytes / (gCopy * 1e9) * 1e3) / dev);
    out("| floor: bytes / measured read bandwidth (%.2f TB/s) | %.3f ms -> "
        "%.0f%% of it |\n",
        gRead * 1e-3, bytes / (gRead * 1e9) * 1e3,
        100.0 * (bytes / (gRead * 1e9) * 1e3) / dev);
    out("| certified exact (CPU re-score) / agrees with fp64 top-10 | %ld/%zu "
        "/ %ld/%zu |\n",
        nCert, w->nRef, nOk, w->nRef);
  }
  free(td);
  free(tw);
}

typedef struct Tile {
  int qb, nb; /* 0: the plugin's default */
  int bPipe;  /* GEMMs overlapped with the filters (the default) */
} Tile;

static void batch(const Work *w, const char *zLabel, const Tile *aTile,
                  int nTile, int nRep) {
  const size_t nCand = K + ANNEX_CUDA_EXTRA(K), nQ = w->nQ;
  annex_cuda_hit *aHit = malloc(sizeof(annex_cuda_hit) * nQ * nCand);
  size_t *anHit = malloc(sizeof(size_t) * nQ);
  float *aFloor = malloc(sizeof(float) * nQ);
  const double flops = 2.0 * w->n * w->d * nQ;
  char zBuf[64];
  out("\n### %s %zu x %zu, batch of %zu queries, k=%d\n\n", zLabel, w->n,
      w->d, nQ, K);
  out("| precision | tiles Qb x Nb | wall ms | QPS (wall) | device ms | QPS "
      "(device) | TFLOP/s | redone fp32 | certified | fp64 top-10 ok |\n");
  out("|---|---|---|---|---|---|---|---|---|---|\n");
  for (int prec = 0; prec < 2; prec++) {
    unsigned flags = ANNEX_CUDA_FORCE_GEMM | (prec ? ANNEX_CUDA_TF32 : 0);
    double best = 1e30, bestDev = 0;
    int iBest = -1;
    char zBest[64] = "";
    for (int it = 0; it < nTile; it++) {
      double wl, dv;
      long nCert = 0, nOk = 0;
      annex_cuda_stats st;
      char zTile[64];
      if (aTile[it].qb) {
        snprintf(zBuf, sizeof(zBuf), "%d", aTile[it].qb);
        setenv("ANNEX_CUDA_QB", zBuf, 1);
        snprintf(zBuf, sizeof(zBuf), "%d", aTile[it].nb);
        setenv("ANNEX_CUDA_NB", zBuf, 1);
        snprintf(zTile, sizeof(zTile), "%d x %d", aTile[it].qb, aTile[it].nb);
      } else {
        unsetenv("ANNEX_CUDA_QB");
        unsetenv("ANNEX_CUDA_NB");
        snprintf(zTile, sizeof(zTile), "default");
      }
      if (aTile[it].bPipe) {
        unsetenv("ANNEX_CUDA_PIPELINE");
      } else {
        setenv("ANNEX_CUDA_PIPELINE", "0", 1);
        strcat(zTile, ", one stream");
      }
      if (run_batch(w, nQ, flags, nRep, &wl, &dv, aHit, anHit, aFloor)) {
        break;
      }
      api->xStats(ctx, &st);
      verify(w, aHit, anHit, aFloor, nQ, nCand, &nCert, &nOk);
      out("| %s | %s | %.1f | %.0f | %.1f | %.0f | %.1f | %llu | %ld/%zu | "
          "%ld/%zu |\n",
          prec ? "TF32" : "fp32", zTile, wl, nQ / (wl * 1e-3), dv,
          nQ / (dv * 1e-3), flops / (dv * 1e-3) * 1e-12,
          (unsigned long long)st.nLastRedo, nCert, nQ, nOk, w->nRef);
      if (wl < best) {
        best = wl;
        snprintf(zBest, sizeof(zBest), "%s", zTile);
        bestDev = dv;
        iBest = it;
      }
    }
    if (iBest >= 0) {
      double rate = prec ? gTf32 : gSgemm;
      double fl = flops / (rate * 1e12) * 1e3;
      out("| **%s best** | %s | **%.1f** | **%.0f** | %.1f | %.0f | | | | |\n",
          prec ? "TF32" : "fp32", zBest, best,
          nQ / (best * 1e-3), bestDev, nQ / (bestDev * 1e-3));
      out("| floor | FLOPs / measured %s rate (%.0f TFLOP/s) | %.1f | %.0f | "
          "| | floor is %.0f%% of best wall | | | |\n",
          prec ? "TF32" : "SGEMM", rate, fl, nQ / (fl * 1e-3),
          100.0 * fl / best);
    }
  }
  unsetenv("ANNEX_CUDA_QB");
  unsetenv("ANNEX_CUDA_NB");
  unsetenv("ANNEX_CUDA_PIPELINE");
  free(aHit);
  free(anHit);
  free(aFloor);
}

/* QPS by batch size and path, for the scan/GEMM threshold of device=auto. */
static void batch_sizes(const Work *w) {
  static const size_t aN[] = {1, 2, 4, 8, 16, 64, 100, 256, 1000, 10000};
  const size_t nCand = K + ANNEX_CUDA_EXTRA(K);
  annex_cuda_hit *aHit = malloc(sizeof(annex_cuda_hit) * w->nQ * nCand);
  size_t *anHit = malloc(sizeof(size_t) * w->nQ);
  float *aFloor = malloc(sizeof(float) * w->nQ);
  out("\n### Batch size vs path, %zu x %zu, k=%d (device ms per call, median "
      "of 5; default tiles)\n\n",
      w->n, w->d, K);
  out("| queries | scan (one pass per query) | GEMM fp32 | GEMM TF32 |\n");
  out("|---|---|---|---|\n");
  for (size_t i = 0; i < sizeof(aN) / sizeof(aN[0]); i++) {
    size_t nQ = aN[i];
    double v[3];
    static const unsigned fl[3] = {ANNEX_CUDA_FORCE_SCAN, ANNEX_CUDA_FORCE_GEMM,
                                   ANNEX_CUDA_FORCE_GEMM | ANNEX_CUDA_TF32};
    if (nQ > w->nQ) break;
    for (int p = 0; p < 3; p++) {
      double wl;
      v[p] = -1;
      if (p == 0 && nQ > 100) continue;
      if (run_batch(w, nQ, fl[p], 5, &wl, &v[p], aHit, anHit, aFloor)) {
        v[p] = -1;
      }
    }
    out("| %zu |", nQ);
    for (int p = 0; p < 3; p++) {
      if (v[p] < 0) {
        out(" - |");
      } else {
        out(" %.3f ms (%.0f QPS) |", v[p], nQ / (v[p] * 1e-3));
      }
    }
    out("\n");
  }
  free(aHit);
  free(anHit);
  free(aFloor);
}

int main(int argc, char **argv) {
  const char *zPlugin = NULL, *zOut = NULL;
  int bQuick = 0, rc;
  char zErr[1024], zName[256];
  Work w;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--plugin") && i + 1 < argc) {
      zPlugin = argv[++i];
    } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
      zOut = argv[++i];
    } else if (!strcmp(argv[i], "--quick")) {
      bQuick = 1;
    } else {
      fprintf(stderr, "usage: %s [--plugin PATH] [--out FILE] [--quick]\n",
              argv[0]);
      return 2;
    }
  }
  api = load_plugin(zPlugin, zErr, sizeof(zErr));
  if (!api) {
    fprintf(stderr, "cannot load the CUDA plugin: %s\n", zErr);
    return 1;
  }
  rc = api->xOpen(0, zErr, sizeof(zErr), &ctx);
  if (rc) {
    fprintf(stderr, "xOpen: %d %s\n", rc, zErr);
    return rc == ANNEX_CUDA_NODEVICE ? 77 : 1;
  }
  if (zOut) md = fopen(zOut, "w");
  api->xDevice(ctx, zName, sizeof(zName), NULL, NULL);
  out("## annex_cuda benchmark\n\n");
  out("Device: %s. Plugin: %s.\n\n", zName, api->xInfo());
  api->xMeasure(ctx, ANNEX_CUDA_MEASURE_COPY_GBPS, &gCopy);
  api->xMeasure(ctx, ANNEX_CUDA_MEASURE_READ_GBPS, &gRead);
  api->xMeasure(ctx, ANNEX_CUDA_MEASURE_SGEMM_TFLOPS, &gSgemm);
  api->xMeasure(ctx, ANNEX_CUDA_MEASURE_TF32_TFLOPS, &gTf32);
  out("Ceilings measured in this run: device-to-device copy %.2f TB/s "
      "(read+write bytes, 2 GiB buffers, median of 10); streaming read "
      "%.2f TB/s; cuBLAS SGEMM 8192^3 %.1f TFLOP/s; cuBLAS TF32 8192^3 "
      "%.1f TFLOP/s.\n",
      gCopy * 1e-3, gRead * 1e-3, gSgemm, gTf32);
  if (gCopy <= 0) gCopy = 1;
  if (gRead <= 0) gRead = 1;
  if (gSgemm <= 0) gSgemm = 1;
  if (gTf32 <= 0) gTf32 = 1;
  {
    static const Tile aTile1[] = {{0, 0, 1}, {0, 0, 0}, {2048, 16384, 1},
                                  {10000, 4096, 1}};
    static const Tile aTile2[] = {{0, 0, 1}, {0, 0, 0}, {10000, 4096, 1}};
    size_t n1 = bQuick ? 100000 : 1000000, nQ = bQuick ? 1000 : 10000;
    if (setup(&w, n1, 128, nQ, 11) == 0) {
      single_query(&w);
      batch(&w, "(b)", aTile1, 4, 3);
      batch_sizes(&w);
    }
    teardown(&w);
    if (setup(&w, n1, 768, nQ, 21) == 0) {
      batch(&w, "(c)", aTile2, 3, 3);
    }
    teardown(&w);
    if (setup(&w, n1 * 10, 128, nQ, 31) == 0) {
      batch(&w, "(d)", aTile2, 3, 3);
    }
    teardown(&w);
  }
  api->xClose(ctx);
  if (md) fclose(md);
  return 0;
}
