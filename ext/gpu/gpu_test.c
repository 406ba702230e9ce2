/*
** gpu_test.c — correctness and fallback test of annex_cuda.so, through its
** C ABI and dlopen(), the way annex.so uses it.
**
**   annex_cuda_test [--plugin PATH] [--require-device] [--expect-nodevice]
**                   [--quick]
**
** Without a CUDA device it prints "SKIP: ..." and exits 0 (CI); with
** --require-device it exits 1 instead. --expect-nodevice (run with
** CUDA_VISIBLE_DEVICES= to hide the device) checks that xOpen fails cleanly
** with ANNEX_CUDA_NODEVICE. --quick: small tables only (for
** compute-sanitizer). Every other failure exits 1.
**
** What is checked, for l2 / ip / cosine, random and clustered data, sizes
** that are not multiples of anything (dims 37 and 128), k = 1, 10, 100, the
** scan path, the fp32 GEMM path and the TF32 GEMM path (with the fp32 redo
** of unproven queries, and raw with k = 0), with default and with tiny tiles
** (many tiles and list cuts), with deleted rows
** (some holding NaN), duplicated rows, zero vectors and an allowed-bitmap,
** and xKnnRanges (random ranges a query, as an IVF list scan asks):
**   - hit counts, slots, rowids, order, no deleted / disallowed row returned;
**   - device scores against the CPU float kernel;
**   - aFloor: no non-returned valid row has a CPU score below it (the whole
**     table is scored on the CPU for this);
**   - the CPU side of the contract: when certified, the k rowids are exactly
**     the CPU float scan's, in order; all but the raw TF32 path must certify
**     >= 95% of queries;
**   - the double-precision top k agrees except for near-ties.
** Fallbacks: device absent, injected allocation failures (upload, query,
** xOpen via ANNEX_CUDA_FAIL_ALLOC), a real out-of-memory, an injected launch
** failure, a lost device, misuse codes, invalidation.
*/
#include "gpu_common.h"

static const annex_cuda_api *api;
static int nFail = 0;
static long nCheck = 0;

#define CHECK(cond, ...)                                 \
  do {                                                   \
    nCheck++;                                            \
    if (!(cond)) {                                       \
      nFail++;                                           \
      if (nFail < 40) {                                  \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                    \
        fprintf(stderr, "\n");                           \
      }                                                  \
    }                                                    \
  } while (0)

typedef struct Table {
  size_t n, d;
  int metric;
  float *X;
  int64_t *rowid;
  unsigned char *valid;
  unsigned char *allowed;
} Table;

static int bit(const unsigned char *a, size_t i) {
  return a ? (a[i >> 3] >> (i & 7)) & 1 : 1;
}

static void make_table(Table *t, size_t n, size_t d, int metric, int bClust,
                       uint64_t seed) {
  t->n = n;
  t->d = d;
  t->metric = metric;
  t->X = malloc(sizeof(float) * n * d);
  t->rowid = malloc(sizeof(int64_t) * n);
  t->valid = calloc((n + 7) / 8 + 1, 1);
  t->allowed = calloc((n + 7) / 8 + 1, 1);
  if (bClust) {
    gen_clustered(t->X, n, d, 50, seed);
  } else {
    gen_uniform(t->X, n, d, seed);
  }
  /* rowids: a permutation, so that rowid order != slot order */
  size_t P = 7919;
  while (n % P == 0) P += 2;
  for (size_t i = 0; i < n; i++) {
    t->rowid[i] = 1000000000000LL + (int64_t)((i * P) % n);
  }
  for (size_t i = 0; i < n; i++) {
    int v = unif(seed + 5, i) >= 0.1;
    if (v) t->valid[i >> 3] |= 1 << (i & 7);
    if (unif(seed + 6, i) < 0.6) t->allowed[i >> 3] |= 1 << (i & 7);
    if (!v && unif(seed + 7, i) < 0.3) {
      for (size_t j = 0; j < d; j++) t->X[i * d + j] = NAN;
    }
  }
  /* duplicates: exact ties with different rowids */
  for (size_t i = 0; i + 1 < n && i < 40; i += 2) {
    size_t a = (size_t)(unif(seed + 8, i) * n), b = (size_t)(unif(seed + 8, i + 1) * n);
    if (bit(t->valid, a) && bit(t->valid, b)) {
      memcpy(t->X + b * d, t->X + a * d, sizeof(float) * d);
    }
  }
  /* zero vectors (valid), which cosine scores as 1 */
  for (size_t i = 3; i < n && i < 30; i += 13) {
    if (bit(t->valid, i)) memset(t->X + i * d, 0, sizeof(float) * d);
  }
}

static void free_table(Table *t) {
  free(t->X);
  free(t->rowid);
  free(t->valid);
  free(t->allowed);
}

/* Upload in uneven chunks (iFirst not a multiple of 8). */
static int upload(void *ctx, const Table *t) {
  int rc = api->xUploadBegin(ctx, t->n, t->d, t->metric);
  size_t step = 1237;
  unsigned char *bits = malloc(step / 8 + 2);
  for (size_t i0 = 0; rc == 0 && i0 < t->n; i0 += step) {
    size_t m = t->n - i0 < step ? t->n - i0 : step;
    memset(bits, 0, step / 8 + 2);
    for (size_t i = 0; i < m; i++) {
      if (bit(t->valid, i0 + i)) bits[i >> 3] |= 1 << (i & 7);
    }
    rc = api->xUploadChunk(ctx, i0, m, t->X + i0 * t->d, t->rowid + i0, bits);
  }
  free(bits);
  if (rc == 0) rc = api->xUploadEnd(ctx);
  return rc;
}

typedef struct Stat {
  long nQuery, nCert;
} Stat;

/* Check one xKnn answer of nQ queries against the CPU (aCpu: nQ x n CPU
** float scores; aRef: nQ x n double scores). */
static void check_answer(const Table *t, const float *Q, size_t nQ, size_t k,
                         size_t nCand, const unsigned char *allowed,
                         const annex_cuda_hit *aHit, const size_t *anHit,
                         const float *aFloor, const float *aCpu,
                         const double *aRef, const char *zWhat, Stat *st) {
  const size_t n = t->n, d = t->d;
  size_t nAllowed = 0;
  unsigned char *seen = malloc(n);
  Res *cert = malloc(sizeof(Res) * nCand), *brute = malloc(sizeof(Res) * k);
  for (size_t i = 0; i < n; i++) nAllowed += bit(t->valid, i) && bit(allowed, i);
  for (size_t q = 0; q < nQ; q++) {
    const annex_cuda_hit *h = aHit + q * nCand;
    const size_t m = anHit[q];
    const float fl = aFloor[q];
    const float *cpu = aCpu + q * n;
    const double *ref = aRef + q * n;
    size_t want = nCand < nAllowed ? nCand : nAllowed, nb = 0, nc;
    int bad = 0;
    CHECK(m == want, "%s q%zu: %zu hits, want %zu", zWhat, q, m, want);
    memset(seen, 0, n);
    for (size_t i = 0; i < m && !bad; i++) {
      int64_t s = h[i].slot;
      if (s < 0 || (size_t)s >= n) {
        CHECK(0, "%s q%zu: slot %lld out of range", zWhat, q, (long long)s);
        bad = 1;
        break;
      }
      CHECK(!seen[s], "%s q%zu: slot %lld twice", zWhat, q, (long long)s);
      seen[s] = 1;
      CHECK(bit(t->valid, s), "%s q%zu: deleted slot %lld returned", zWhat, q,
            (long long)s);
      CHECK(bit(allowed, s), "%s q%zu: disallowed slot %lld returned", zWhat,
            q, (long long)s);
      CHECK(h[i].rowid == t->rowid[s], "%s q%zu: rowid mismatch", zWhat, q);
      if (i > 0) {
        CHECK(h[i - 1].score < h[i].score ||
                  (h[i - 1].score == h[i].score && h[i - 1].rowid < h[i].rowid),
              "%s q%zu: hits not sorted at %zu", zWhat, q, i);
      }
      {
        /* both within (d+4) u S of the exact score (annex_cuda.h) */
        double c = cpu[s], g = h[i].score, qn = 0, xn = 0, S;
        for (size_t j = 0; j < d; j++) {
          qn += (double)Q[q * d + j] * Q[q * d + j];
          xn += (double)t->X[s * d + j] * t->X[s * d + j];
        }
        qn = sqrt(qn);
        xn = sqrt(xn);
        S = t->metric == ANNEX_CUDA_L2 ? (qn + xn) * (qn + xn)
            : t->metric == ANNEX_CUDA_IP ? qn * xn : 2.0;
        double tol = 4.0 * (d + 4) * 5.96e-8 * S + 1e-12;
        CHECK(fabs(c - g) <= tol, "%s q%zu: device score %.9g vs CPU %.9g",
              zWhat, q, g, c);
      }
    }
    /* the floor: no left-out row scores below it on the CPU */
    for (size_t i = 0; i < n; i++) {
      if (seen[i] || !bit(t->valid, i) || !bit(allowed, i)) continue;
      if (!(cpu[i] >= fl)) {
        CHECK(0, "%s q%zu: row %zu left out with CPU score %.9g < floor %.9g",
              zWhat, q, i, cpu[i], fl);
        break;
      }
    }
    /* the CPU side of the contract */
    st->nQuery++;
    if (cpu_certify(t->metric, Q + q * d, t->X, d, h, m, fl, k, cert, &nc)) {
      st->nCert++;
      /* brute force with the same CPU kernel, (score, rowid) order */
      for (size_t i = 0; i < n; i++) {
        if (!bit(t->valid, i) || !bit(allowed, i)) continue;
        Res r = {cpu[i], t->rowid[i], (int64_t)i};
        if (nb == k && res_cmp(&r, &brute[k - 1]) >= 0) continue;
        size_t j = nb < k ? nb++ : k - 1;
        while (j > 0 && res_cmp(&r, &brute[j - 1]) < 0) {
          brute[j] = brute[j - 1];
          j--;
        }
        brute[j] = r;
      }
      CHECK(nb == nc, "%s q%zu: certified %zu results, CPU scan %zu", zWhat, q,
            nc, nb);
      for (size_t i = 0; i < nb && i < nc; i++) {
        if (cert[i].rowid != brute[i].rowid) {
          CHECK(0, "%s q%zu: certified result %zu is rowid %lld, CPU scan %lld",
                zWhat, q, i, (long long)cert[i].rowid,
                (long long)brute[i].rowid);
          break;
        }
      }
      /* double precision: the i-th result's exact score is the i-th
      ** smallest exact score, up to float rounding (near-ties) */
      {
        DRes *tr = malloc(sizeof(DRes) * k);
        size_t nt = 0;
        for (size_t i = 0; i < n; i++) {
          if (!bit(t->valid, i) || !bit(allowed, i)) continue;
          double s = ref[i];
          if (nt == k && !(s < tr[k - 1].s)) continue;
          size_t j = nt < k ? nt++ : k - 1;
          while (j > 0 && tr[j - 1].s > s) {
            tr[j] = tr[j - 1];
            j--;
          }
          tr[j].s = s;
          tr[j].slot = (int64_t)i;
        }
        for (size_t i = 0; i < nt && i < nc; i++) {
          double a = ref[cert[i].slot], b = tr[i].s;
          CHECK(fabs(a - b) <= 1e-5 * (fabs(b) + 1.0),
                "%s q%zu: exact score of result %zu %.12g, true %.12g", zWhat,
                q, i, a, b);
        }
        free(tr);
      }
    }
  }
  free(seen);
  free(cert);
  free(brute);
}

/* xKnnRanges: each query gets RANGES ranges (one of them empty, one
** reaching the last row) at random places; its answer is checked as an
** xKnn answer over the rows of its ranges (the allowed bitmap). */
#define RANGES 6
static void check_ranges(void *ctx, const Table *t, const float *Q, size_t nQ,
                         size_t k, size_t nCand, const float *aCpu,
                         const double *aRef, int bClust, const char *zM,
                         uint64_t seed) {
  const size_t n = t->n;
  uint64_t *aRange = malloc(sizeof(uint64_t) * 2 * RANGES * nQ);
  annex_cuda_hit *aHit = malloc(sizeof(annex_cuda_hit) * nQ * nCand);
  size_t *anHit = malloc(sizeof(size_t) * nQ);
  float *aFloor = malloc(sizeof(float) * nQ);
  unsigned char *in = malloc(n / 8 + 2);
  char zWhat[160];
  Stat st = {0, 0};
  int rc;
  for (size_t q = 0; q < nQ; q++) {
    /* cut [0, n) at sorted random points; keep every other piece */
    size_t cut[2 * RANGES];
    for (int i = 0; i < 2 * RANGES; i++) {
      cut[i] = (size_t)(unif(seed + 11, q * 64 + (size_t)i) * n);
    }
    for (int i = 1; i < 2 * RANGES; i++) { /* insertion sort */
      for (int j = i; j > 0 && cut[j - 1] > cut[j]; j--) {
        size_t x = cut[j];
        cut[j] = cut[j - 1];
        cut[j - 1] = x;
      }
    }
    cut[2] = cut[3];         /* one empty range */
    cut[2 * RANGES - 1] = n; /* one that ends at the last row */
    for (int i = 0; i < 2 * RANGES; i++) aRange[2 * RANGES * q + i] = cut[i];
  }
  snprintf(zWhat, sizeof(zWhat), "%s %s n=%zu d=%zu k=%zu ranges",
           bClust ? "clustered" : "random", zM, n, t->d, k);
  rc = api->xKnnRanges(ctx, Q, nQ, nCand, aRange, RANGES, aHit, anHit, aFloor);
  CHECK(rc == 0, "%s: xKnnRanges %d %s", zWhat, rc, api->xErrmsg(ctx));
  for (size_t q = 0; rc == 0 && q < nQ; q++) {
    memset(in, 0, n / 8 + 2);
    for (int r = 0; r < RANGES; r++) {
      for (uint64_t i = aRange[2 * (RANGES * q + r)];
           i < aRange[2 * (RANGES * q + r) + 1]; i++) {
        in[i >> 3] |= (unsigned char)(1u << (i & 7));
      }
    }
    check_answer(t, Q + q * t->d, 1, k, nCand, in, aHit + q * nCand,
                 anHit + q, aFloor + q, aCpu + q * n, aRef + q * n, zWhat,
                 &st);
  }
  if (rc == 0) {
    printf("  %-58s certified %ld/%ld\n", zWhat, st.nCert, st.nQuery);
    CHECK(st.nCert * 100 >= st.nQuery * 95, "%s: only %ld/%ld certified",
          zWhat, st.nCert, st.nQuery);
  }
  /* misuse: a range past the table */
  aRange[1] = n + 1;
  CHECK(api->xKnnRanges(ctx, Q, 1, nCand, aRange, RANGES, aHit, anHit,
                        aFloor) == ANNEX_CUDA_RANGE,
        "%s: a range past the table is not refused", zWhat);
  free(aRange);
  free(aHit);
  free(anHit);
  free(aFloor);
  free(in);
}

static void run_config(void *ctx, size_t n, size_t d, int metric, int bClust,
                       uint64_t seed) {
  Table t;
  const size_t nQ = 24;
  float *Q = malloc(sizeof(float) * nQ * d);
  float *aCpu = malloc(sizeof(float) * nQ * n);
  double *aRef = malloc(sizeof(double) * nQ * n);
  const size_t ks[] = {1, 10, 100};
  const char *zM = metric == ANNEX_CUDA_L2 ? "l2"
                   : metric == ANNEX_CUDA_IP ? "ip" : "cosine";
  char zWhat[160];
  int rc;
  make_table(&t, n, d, metric, bClust, seed);
  /* queries: half near data rows (some exactly on one), half fresh */
  if (bClust) {
    gen_clustered(Q, nQ, d, 50, seed);
  } else {
    gen_uniform(Q, nQ, d, seed + 100);
  }
  for (size_t q = 0; q < nQ / 2; q++) {
    size_t r = (size_t)(unif(seed + 9, q) * n);
    for (size_t j = 0; j < d; j++) {
      float x = t.X[r * d + j];
      if (isnan(x)) x = 0.f;
      Q[q * d + j] = (q % 3 == 0) ? x : x + 0.05f * gauss(seed + 10, q * d + j);
    }
  }
#pragma omp parallel for schedule(static)
  for (long qi = 0; qi < (long)(nQ * n); qi++) {
    size_t q = (size_t)qi / n, i = (size_t)qi % n;
    aCpu[qi] = cpu_score(metric, Q + q * d, t.X + i * d, d);
    aRef[qi] = ref_score(metric, Q + q * d, t.X + i * d, d);
  }
  rc = upload(ctx, &t);
  CHECK(rc == 0, "upload %zu x %zu: %d %s", n, d, rc, api->xErrmsg(ctx));
  if (rc) goto done;
  for (int ik = 0; ik < 3; ik++) {
    const size_t k = ks[ik], nCand = k + ANNEX_CUDA_EXTRA(k);
    annex_cuda_hit *aHit = malloc(sizeof(annex_cuda_hit) * nQ * nCand);
    size_t *anHit = malloc(sizeof(size_t) * nQ);
    float *aFloor = malloc(sizeof(float) * nQ);
    static const struct {
      unsigned flags;
      const char *z;
      int bTiny, bAllowed;
    } aPath[] = {
        {ANNEX_CUDA_FORCE_SCAN, "scan", 0, 0},
        {ANNEX_CUDA_FORCE_GEMM, "gemm-fp32", 0, 0},
        {ANNEX_CUDA_FORCE_GEMM | ANNEX_CUDA_TF32, "gemm-tf32", 0, 0},
        {ANNEX_CUDA_FORCE_GEMM | ANNEX_CUDA_TF32, "gemm-tf32-raw", 0, 0},
        {ANNEX_CUDA_FORCE_GEMM | ANNEX_CUDA_TF32, "gemm-tf32-tiny-tiles", 1, 0},
        {ANNEX_CUDA_FORCE_GEMM, "gemm-fp32-tiny-tiles", 1, 0},
        {ANNEX_CUDA_FORCE_SCAN, "scan-allowed", 0, 1},
        {ANNEX_CUDA_FORCE_GEMM, "gemm-fp32-allowed", 0, 1},
    };
    for (size_t ip = 0; ip < sizeof(aPath) / sizeof(aPath[0]); ip++) {
      Stat st = {0, 0};
      const unsigned char *allowed = aPath[ip].bAllowed ? t.allowed : NULL;
      if (aPath[ip].bTiny) {
        setenv("ANNEX_CUDA_QB", "7", 1);
        setenv("ANNEX_CUDA_NB", "96", 1);
      }
      for (size_t i = 0; i < nQ * nCand; i++) {
        aHit[i].rowid = -7; /* poison */
        aHit[i].slot = -7;
        aHit[i].score = NAN;
      }
      const int bRaw = strstr(aPath[ip].z, "raw") != NULL;
      annex_cuda_stats stat;
      rc = api->xKnn(ctx, Q, nQ, bRaw ? 0 : k, nCand, aPath[ip].flags, allowed,
                     aHit, anHit, aFloor);
      api->xStats(ctx, &stat);
      unsetenv("ANNEX_CUDA_QB");
      unsetenv("ANNEX_CUDA_NB");
      snprintf(zWhat, sizeof(zWhat), "%s %s n=%zu d=%zu k=%zu %s",
               bClust ? "clustered" : "random", zM, n, d, k, aPath[ip].z);
      CHECK(rc == 0, "%s: xKnn %d %s", zWhat, rc, api->xErrmsg(ctx));
      if (rc) continue;
      check_answer(&t, Q, nQ, k, nCand, allowed, aHit, anHit, aFloor, aCpu,
                   aRef, zWhat, &st);
      printf("  %-58s certified %ld/%ld", zWhat, st.nCert, st.nQuery);
      if (aPath[ip].flags & ANNEX_CUDA_TF32) {
        printf(" (%llu redone in fp32)", (unsigned long long)stat.nLastRedo);
      }
      printf("\n");
      if (!bRaw) {
        CHECK(st.nCert * 100 >= st.nQuery * 95,
              "%s: only %ld/%ld queries certified", zWhat, st.nCert,
              st.nQuery);
      }
    }
    check_ranges(ctx, &t, Q, nQ, k, nCand, aCpu, aRef, bClust, zM, seed);
    free(aHit);
    free(anHit);
    free(aFloor);
  }
done:
  free_table(&t);
  free(Q);
  free(aCpu);
  free(aRef);
}

/* Fallback paths. */
static void test_faults(void) {
  void *ctx = NULL, *ctx2 = NULL;
  char zErr[512];
  int rc;
  Table t;
  const size_t n = 3000, d = 16, nC = 8;
  float Q[64 * 16];
  annex_cuda_hit aHit[64 * 8];
  size_t anHit[64];
  float aFloor[64];

  rc = api->xOpen(99, zErr, sizeof(zErr), &ctx2);
  CHECK(rc == ANNEX_CUDA_NODEVICE && ctx2 == NULL,
        "xOpen(99) = %d, want NODEVICE", rc);
  printf("  absent device 99: %s\n", zErr);

  setenv("ANNEX_CUDA_FAIL_ALLOC", "0", 1);
  rc = api->xOpen(0, zErr, sizeof(zErr), &ctx2);
  unsetenv("ANNEX_CUDA_FAIL_ALLOC");
  CHECK(rc == ANNEX_CUDA_NOMEM && ctx2 == NULL,
        "xOpen with ANNEX_CUDA_FAIL_ALLOC=0 = %d", rc);
  printf("  xOpen, allocation failure injected: %s\n", zErr);

  rc = api->xOpen(0, zErr, sizeof(zErr), &ctx);
  CHECK(rc == 0, "xOpen: %s", zErr);
  if (rc) return;
  gen_uniform(Q, 64, d, 77);
  rc = api->xKnn(ctx, Q, 1, 1, nC, 0, NULL, aHit, anHit, aFloor);
  CHECK(rc == ANNEX_CUDA_EMPTY, "xKnn before upload = %d", rc);

  make_table(&t, n, d, ANNEX_CUDA_L2, 0, 99);
  api->xTestControl(ctx, ANNEX_CUDA_TEST_FAIL_ALLOC, 0);
  rc = upload(ctx, &t);
  CHECK(rc == ANNEX_CUDA_NOMEM, "upload with failed allocation = %d", rc);
  printf("  upload, allocation failure injected: %s\n", api->xErrmsg(ctx));
  rc = api->xKnn(ctx, Q, 1, 1, nC, 0, NULL, aHit, anHit, aFloor);
  CHECK(rc == ANNEX_CUDA_EMPTY, "xKnn after failed upload = %d", rc);
  api->xTestControl(ctx, ANNEX_CUDA_TEST_FAIL_ALLOC, 3);
  rc = upload(ctx, &t);
  CHECK(rc == ANNEX_CUDA_NOMEM, "upload, 4th allocation failing = %d", rc);
  rc = upload(ctx, &t);
  CHECK(rc == 0, "upload after failures = %d %s", rc, api->xErrmsg(ctx));

  rc = api->xKnn(ctx, Q, 1, 0, 0, 0, NULL, aHit, anHit, aFloor);
  CHECK(rc == ANNEX_CUDA_RANGE, "nCand 0 = %d", rc);
  rc = api->xKnn(ctx, Q, 1, 5, 4, 0, NULL, aHit, anHit, aFloor);
  CHECK(rc == ANNEX_CUDA_RANGE, "k > nCand = %d", rc);
  rc = api->xKnn(ctx, Q, 20, 0, 4, ANNEX_CUDA_TF32, NULL, aHit, anHit, aFloor);
  CHECK(rc == 0 && anHit[19] == 4, "k 0 = %d", rc);
  rc = api->xKnn(ctx, Q, 1, 1, ANNEX_CUDA_MAX_CAND + 1, 0, NULL, aHit, anHit,
                 aFloor);
  CHECK(rc == ANNEX_CUDA_RANGE, "nCand too large = %d", rc);

  rc = api->xKnn(ctx, Q, 4, 1, nC, ANNEX_CUDA_FORCE_GEMM, NULL, aHit, anHit,
                 aFloor);
  CHECK(rc == 0, "xKnn 4: %d %s", rc, api->xErrmsg(ctx));
  /* more queries than ever: scratch must grow, and that allocation fails */
  api->xTestControl(ctx, ANNEX_CUDA_TEST_FAIL_ALLOC, 0);
  rc = api->xKnn(ctx, Q, 64, 1, nC, ANNEX_CUDA_FORCE_GEMM, NULL, aHit, anHit,
                 aFloor);
  CHECK(rc == ANNEX_CUDA_NOMEM, "xKnn with failed scratch = %d", rc);
  printf("  query, allocation failure injected: %s\n", api->xErrmsg(ctx));
  rc = api->xKnn(ctx, Q, 64, 1, nC, ANNEX_CUDA_FORCE_GEMM, NULL, aHit, anHit,
                 aFloor);
  CHECK(rc == 0 && anHit[63] == nC, "xKnn after failure = %d %s", rc,
        api->xErrmsg(ctx));

  api->xTestControl(ctx, ANNEX_CUDA_TEST_FAIL_LAUNCH, 0);
  rc = api->xKnn(ctx, Q, 1, 1, nC, 0, NULL, aHit, anHit, aFloor);
  CHECK(rc == ANNEX_CUDA_LAUNCH, "xKnn with failed launch = %d", rc);
  printf("  launch failure injected: %s\n", api->xErrmsg(ctx));
  rc = api->xKnn(ctx, Q, 1, 1, nC, 0, NULL, aHit, anHit, aFloor);
  CHECK(rc == 0 && anHit[0] == nC, "xKnn after launch failure = %d", rc);

  /* invalidation: the best hit disappears */
  {
    int64_t s = aHit[0].slot, s0 = aHit[0].slot;
    rc = api->xInvalidate(ctx, &s, 1);
    CHECK(rc == 0, "xInvalidate = %d", rc);
    rc = api->xKnn(ctx, Q, 1, 1, nC, 0, NULL, aHit, anHit, aFloor);
    CHECK(rc == 0, "xKnn after invalidate = %d", rc);
    for (size_t i = 0; i < anHit[0]; i++) {
      CHECK(aHit[i].slot != s0, "invalidated slot returned");
    }
  }

  /* a real out-of-memory: a table far larger than any device */
  rc = api->xUploadBegin(ctx, (size_t)2000000000, 8192, ANNEX_CUDA_L2);
  CHECK(rc == ANNEX_CUDA_NOMEM, "huge table = %d", rc);
  printf("  real out-of-memory: %s\n", api->xErrmsg(ctx));
  rc = upload(ctx, &t);
  CHECK(rc == 0, "upload after real OOM = %d %s", rc, api->xErrmsg(ctx));

  /* fewer valid rows than nCand: all come back, floor +inf */
  {
    Table s;
    annex_cuda_hit h[200];
    size_t nh;
    float fl;
    make_table(&s, 60, d, ANNEX_CUDA_COSINE, 0, 5);
    size_t nv = 0;
    for (size_t i = 0; i < 60; i++) nv += bit(s.valid, i);
    rc = upload(ctx, &s);
    CHECK(rc == 0, "small upload = %d", rc);
    for (int f = 0; f < 2; f++) {
      rc = api->xKnn(ctx, Q, 1, 1, 200,
                     f ? ANNEX_CUDA_FORCE_GEMM : ANNEX_CUDA_FORCE_SCAN, NULL,
                     h, &nh, &fl);
      CHECK(rc == 0 && nh == nv && fl == INFINITY,
            "small table: rc %d, %zu hits of %zu valid, floor %g", rc, nh, nv,
            fl);
    }
    free_table(&s);
  }

  api->xTestControl(ctx, ANNEX_CUDA_TEST_LOSE_DEVICE, 0);
  rc = api->xKnn(ctx, Q, 1, 1, nC, 0, NULL, aHit, anHit, aFloor);
  CHECK(rc == ANNEX_CUDA_LOST, "xKnn on lost device = %d", rc);
  rc = upload(ctx, &t);
  CHECK(rc == ANNEX_CUDA_LOST, "upload on lost device = %d", rc);
  printf("  lost device injected: %s\n", api->xErrmsg(ctx));
  api->xClose(ctx);
  rc = api->xOpen(0, zErr, sizeof(zErr), &ctx);
  CHECK(rc == 0, "reopen after lost: %s", zErr);
  if (rc == 0) {
    annex_cuda_stats s;
    rc = upload(ctx, &t);
    CHECK(rc == 0, "upload after reopen = %d", rc);
    api->xStats(ctx, &s);
    CHECK(s.nRows == n && s.nResident > s.nTableBytes, "stats");
    api->xClose(ctx);
  }
  free_table(&t);
}

int main(int argc, char **argv) {
  const char *zPlugin = NULL;
  int bRequire = 0, bExpectNone = 0, bQuick = 0;
  char zErr[1024], zName[256];
  void *ctx = NULL;
  int rc;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--plugin") && i + 1 < argc) {
      zPlugin = argv[++i];
    } else if (!strcmp(argv[i], "--require-device")) {
      bRequire = 1;
    } else if (!strcmp(argv[i], "--expect-nodevice")) {
      bExpectNone = 1;
    } else if (!strcmp(argv[i], "--quick")) {
      bQuick = 1;
    } else {
      fprintf(stderr,
              "usage: %s [--plugin PATH] [--require-device] "
              "[--expect-nodevice] [--quick]\n",
              argv[0]);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  api = load_plugin(zPlugin, zErr, sizeof(zErr));
  if (!api) {
    fprintf(stderr, "FAIL: cannot load the CUDA plugin: %s\n", zErr);
    return 1;
  }
  printf("plugin: %s\n", api->xInfo());
  rc = api->xOpen(0, zErr, sizeof(zErr), &ctx);
  if (bExpectNone) {
    if (rc == ANNEX_CUDA_NODEVICE && ctx == NULL && zErr[0]) {
      printf("ok: no device visible, xOpen says: %s\n", zErr);
      return 0;
    }
    fprintf(stderr, "FAIL: expected ANNEX_CUDA_NODEVICE, got %d (%s)\n", rc,
            zErr);
    if (ctx) api->xClose(ctx);
    return 1;
  }
  if (rc == ANNEX_CUDA_NODEVICE) {
    if (bRequire) {
      fprintf(stderr, "FAIL: %s (--require-device)\n", zErr);
      return 1;
    }
    printf("SKIP: no CUDA device (%s); GPU tests not run\n", zErr);
    return 0;
  }
  if (rc) {
    fprintf(stderr, "FAIL: xOpen = %d: %s\n", rc, zErr);
    return 1;
  }
  {
    size_t f = 0, t = 0;
    api->xDevice(ctx, zName, sizeof(zName), &f, &t);
    printf("device: %s, %.1f of %.1f GiB free\n", zName, f / 1073741824.0,
           t / 1073741824.0);
  }
  printf("correctness:\n");
  {
    static const int aMetric[] = {ANNEX_CUDA_L2, ANNEX_CUDA_IP,
                                  ANNEX_CUDA_COSINE};
    uint64_t seed = 1;
    for (int bClust = 0; bClust < 2; bClust++) {
      for (int im = 0; im < 3; im++) {
        run_config(ctx, 5003, 37, aMetric[im], bClust, seed++);
        if (!bQuick) run_config(ctx, 70001, 128, aMetric[im], bClust, seed++);
      }
    }
  }
  api->xClose(ctx);
  printf("fallbacks:\n");
  test_faults();
  printf("%s: %ld checks, %d failed\n", nFail ? "FAIL" : "PASS", nCheck,
         nFail);
  return nFail ? 1 : 0;
}
