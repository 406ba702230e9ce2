/*
** gpu.c — exact k-NN on the CUDA plugin, with the CPU as the fallback.
**
** Owns: loading annex_cuda.so (its C ABI is ext/gpu/annex_cuda.h), the
** per-table device context (the table resident on the device plus a host
** copy of the vectors for re-scoring), the device=auto|cpu|gpu decision,
** and the GPU facts of annex_info.
**
** LOADING. The first query that could use the GPU loads the plugin, once
** per process: $ANNEX_CUDA_PLUGIN if set (only that path), else
** annex_cuda.so in the directory of the file holding annex's code (dladdr;
** annex.so, or the program for a static build), else "annex_cuda.so"
** through the dynamic loader's search path. The plugin must export
** ANNEX_CUDA_ENTRY with iVersion >= 1 (newer functions are used only when
** iVersion says they are there). annex.so never
** links CUDA: without the plugin, driver or device, everything runs on the
** CPU, and annex_info says why.
**
** RESIDENCY. Each table opens its own plugin context on first use and
** uploads the table chunk by chunk (slot = global slot, so filter bitmaps
** need no translation). The upload is tagged with the table's change
** counter (T_config 'changes'); each query reads the counter (one cached
** statement) and re-uploads when it moved. Inside a write transaction the
** counter does not move with every write, so the CPU answers there. An
** upload that failed is not retried until the table changes.
**
** EXACTNESS. The plugin returns k + extra candidates per query and aFloor,
** a bound under every other row's CPU score (annex_cuda.h, "THE k-NN
** CONTRACT"). The candidates are re-scored here with the table's own CPU
** kernel (the one the scan uses, on the host copy), sorted by (score,
** rowid), and the first k kept; the answer is certified when fewer than
** nCand came back or the k-th score is < aFloor. Uncertified queries are
** asked again with twice the candidates, then answered by the CPU scan.
** So results equal annex_knn_exact's, scores bit for bit.
**
** FAILURES. NOMEM and LAUNCH answer that call on the CPU (counted); LOST
** closes the context and keeps the table on the CPU for the rest of the
** connection; xOpen's NODEVICE marks the whole process device-less.
**
** INDEX SCANS. An ANN index may keep its own copy on the device in its own
** order and scan ranges of it (annex_gpu_ranged_*, plugin xKnnRanges):
** index=ivf with flat codes uploads its lists one after another and scans
** a query's probed lists there, re-scoring the candidates from its cached
** codes under the same contract, so the answer is the CPU's for the same
** lists. The copy lives in a second context of the table, tagged with the
** index's change counter; under device=auto it is used from
** ANNEX_GPU_RANGED_MIN floats in the probed lists.
**
** device=auto uses the GPU for float tables (l2, cosine, ip) when the work
** of the call, queries x rows x dimensions, reaches ANNEX_GPU_AUTO_MIN
** (measured on the H200, ext/gpu/RESULTS.md), for k-NN with k. Metadata and
** rowid filters become a slot bitmap evaluated on the chunks' compact
** metadata (no vector read); a filter that needs SQL (text ranges, BYTES)
** keeps the query on the CPU under auto, and is built through filter.c's
** SELECT under device=gpu.
*/
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* dladdr */
#endif
#include "annex_int.h"
#include "../gpu/annex_cuda.h"
#include "../index/kmeans.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef ANNEX_HAVE_OPENMP
#include <omp.h>
#endif

#if !defined(_WIN32) && !defined(ANNEX_OMIT_GPU)
#include <dlfcn.h>
#define ANNEX_GPU_DLOPEN 1
#if defined(__GLIBC__) && !defined(__USE_GNU)
/* <dlfcn.h> came in without _GNU_SOURCE (the amalgamation includes it
** earlier): declare glibc's dladdr as <dlfcn.h> would have. */
typedef struct {
  const char *dli_fname;
  void *dli_fbase;
  const char *dli_sname;
  void *dli_saddr;
} Dl_info;
extern int dladdr(const void *, Dl_info *);
#endif
#endif

/* device=auto: the GPU from this much work per call (queries x rows x
** dims). Measured on the H200 through SQL (ext/gpu/RESULTS.md, 2026-11-29):
** one k-NN on 10k x 128 (1.28M) took 0.051 ms on the GPU and 0.48 ms on
** one CPU core, 30k x 128 0.059 vs 1.35 ms; the GPU's fixed cost is about
** 0.05 ms a call, the CPU's rate about 0.37 ms per million floats. Below
** 1M floats the absolute gain is a fraction of a millisecond and does not
** repay the upload (about 0.5 s per GB read out of SQLite) nor the host
** copy the table keeps. */
#ifndef ANNEX_GPU_AUTO_MIN
#define ANNEX_GPU_AUTO_MIN (1024.0 * 1024)
#endif
/* device=auto: an index's list scan (index=ivf, flat codes) on the GPU
** from this many floats in the probed lists. Measured on the H200 through
** SQL (ext/gpu/RESULTS.md, IVF section; 1M x 128, nlist 4000): the GPU
** search costs about 0.3 ms whatever the lists, the CPU scans them at
** about 0.57 ms per million floats (plus the probe both pay): they meet
** near half a million floats. */
#ifndef ANNEX_GPU_RANGED_MIN
#define ANNEX_GPU_RANGED_MIN (512.0 * 1024)
#endif
/* device=auto: k-means assignment (IVF training) on the GPU from this much
** work per call (vectors x centroids x dims): 2^28 multiply-adds, a few
** milliseconds of BLAS on the CPU, against the device's fixed cost of
** moving the vectors once (RESULTS.md, k-means section). */
#ifndef ANNEX_GPU_KMEANS_MIN
#define ANNEX_GPU_KMEANS_MIN (268435456.0)
#endif
/* Queries per xKnn call of a batch (bounds the plugin's scratch). */
#define GPU_QUERY_GROUP 8192
/* Most threads re-scoring a batch's candidates. */
#define GPU_MAX_THREADS 64

/* Process-wide plugin state (gpu_gState: 0 not tried, 1 loaded, 2 missing,
** 3 loaded but no device). Written once under the spin lock. */
static int gpu_gState;
static int gpu_gBusy;
static const annex_cuda_api *gpu_gApi;
static char gpu_gWhy[512];

/* Per-table state. */
typedef struct annex_gpu {
  void *ctx;                 /* plugin context, or NULL */
  int bDead;                 /* lost or unopenable: CPU from now on */
  char zDead[256];           /* why */
  sqlite3_int64 iChanges;    /* change counter of the resident table; -1 */
  sqlite3_int64 iFailed;     /* an upload failed at this counter; -1 */
  float *aHost;              /* host copy, nSlot x nDim (malloc) */
  size_t nSlot;              /* slots resident */
  double rUploadMs;          /* last upload, read + copy, host wall time */
  const char *zLast;         /* "gpu", "cpu" or "none" */
  char zWhy[512];            /* why the last call ran on the CPU */
  sqlite3_int64 nGpu;        /* calls answered on the GPU */
  sqlite3_int64 nCpu;        /* calls answered on the CPU */
  sqlite3_int64 nFallback;   /* of them, after a device failure */
  sqlite3_int64 nUncertified;/* queries the CPU scan redid */
  sqlite3_int64 nUpload;     /* uploads */
  int bFault;                /* this call met a device failure */
  double rCallMs;            /* last GPU call: host wall, whole call */
  double rKnnMs;             /* ... in xKnn (host wall) */
  double rDeviceMs;          /* ... device time of its xKnn (events) */
  double rCertifyMs;         /* ... re-scoring on the CPU */
  /* The index's ranged table (IVF-Flat lists, annex_gpu_ranged_*): a
  ** second context so that it and the exact table can both stay resident. */
  void *ctxR;                /* plugin context, or NULL */
  sqlite3_int64 iTagR;       /* the index's tag of the resident copy; -1 */
  sqlite3_int64 iFailedR;    /* an upload failed at this tag; -1 */
  size_t nRowsR;             /* rows resident */
  sqlite3_int64 nRangedGpu;  /* index searches answered on the GPU */
  sqlite3_int64 nKmGpu;      /* k-means assignments done on the GPU */
  sqlite3_int64 nKmFail;     /* ... tried there and failed (CPU did them) */
  double rKmMs;              /* host wall time in the GPU assignments */
} annex_gpu;

static int gpu_gInject;
static long gpu_gInjectArg;

void annex_gpu_test_inject(int eOp, long iArg) {
  gpu_gInject = eOp;
  gpu_gInjectArg = iArg;
}

int annex_device_parse(const char *z, int *pe) {
  static const char *az[] = {"auto", "cpu", "gpu"};
  for (int i = 0; z && i < 3; i++) {
    if (sqlite3_stricmp(z, az[i]) == 0) {
      *pe = i;
      return 0;
    }
  }
  return -1;
}

const char *annex_device_name(int e) {
  return e == ANNEX_DEVICE_CPU ? "cpu" : e == ANNEX_DEVICE_GPU ? "gpu" : "auto";
}

static double gpu_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Loading ****************************************************************/

#ifdef ANNEX_GPU_DLOPEN
/* dlopen zPath and check the entry point; 0 on success, else zWhy set. */
static int gpu_try_plugin(const char *zPath) {
  void *h = dlopen(zPath, RTLD_NOW | RTLD_LOCAL);
  annex_cuda_entry_fn xEntry;
  const annex_cuda_api *api;
  void *f;
  if (h == NULL) {
    snprintf(gpu_gWhy, sizeof(gpu_gWhy), "dlopen(%s): %s", zPath, dlerror());
    return -1;
  }
  f = dlsym(h, ANNEX_CUDA_ENTRY);
  if (f == NULL) {
    snprintf(gpu_gWhy, sizeof(gpu_gWhy), "%s has no %s", zPath,
             ANNEX_CUDA_ENTRY);
    dlclose(h);
    return -1;
  }
  *(void **)&xEntry = f;
  api = xEntry();
  /* Version 1 has the k-NN; later functions are checked where used
  ** (k-means: ANNEX_CUDA_ABI_KMEANS, index scans: ANNEX_CUDA_ABI_RANGES). */
  if (api == NULL || api->iVersion < 1) {
    snprintf(gpu_gWhy, sizeof(gpu_gWhy),
             "%s has ABI version %d; annex needs 1 to %d",
             zPath, api ? api->iVersion : -1, ANNEX_CUDA_ABI_VERSION);
    dlclose(h);
    return -1;
  }
  gpu_gApi = api; /* the handle stays open for the life of the process */
  snprintf(gpu_gWhy, sizeof(gpu_gWhy), "%s (%s)", zPath, api->xInfo());
  return 0;
}

static void gpu_load_plugin(void) {
  const char *zEnv = getenv("ANNEX_CUDA_PLUGIN");
  Dl_info info;
  char zNext[1024], zFirst[sizeof(gpu_gWhy)];
  if (zEnv && zEnv[0]) {
    gpu_gState = gpu_try_plugin(zEnv) == 0 ? 1 : 2;
    return;
  }
  zFirst[0] = 0;
  if (dladdr((void *)&annex_device_parse, &info) && info.dli_fname) {
    const char *zSlash = strrchr(info.dli_fname, '/');
    int nDir = zSlash ? (int)(zSlash - info.dli_fname) : 1;
    snprintf(zNext, sizeof(zNext), "%.*s/annex_cuda.so", nDir,
             zSlash ? info.dli_fname : ".");
    if (gpu_try_plugin(zNext) == 0) {
      gpu_gState = 1;
      return;
    }
    snprintf(zFirst, sizeof(zFirst), "%s", gpu_gWhy);
  }
  if (gpu_try_plugin("annex_cuda.so") == 0) {
    gpu_gState = 1;
    return;
  }
  if (zFirst[0]) memcpy(gpu_gWhy, zFirst, sizeof(zFirst));
  gpu_gState = 2;
}
#else
static void gpu_load_plugin(void) {
  snprintf(gpu_gWhy, sizeof(gpu_gWhy), "this build has no GPU support");
  gpu_gState = 2;
}
#endif

/* The plugin, or NULL (then gpu_gWhy says why). */
static const annex_cuda_api *gpu_plugin(void) {
  if (__atomic_load_n(&gpu_gState, __ATOMIC_ACQUIRE) == 0) {
    while (__atomic_exchange_n(&gpu_gBusy, 1, __ATOMIC_ACQUIRE)) {
    }
    if (gpu_gState == 0) {
      gpu_load_plugin();
      __atomic_thread_fence(__ATOMIC_RELEASE);
    }
    __atomic_store_n(&gpu_gBusy, 0, __ATOMIC_RELEASE);
  }
  return __atomic_load_n(&gpu_gState, __ATOMIC_ACQUIRE) == 1 ? gpu_gApi : NULL;
}

/* Per-table context ******************************************************/

static annex_gpu *gpu_state(annex_table *p) {
  if (p->pGpu == NULL) {
    annex_gpu *g = sqlite3_malloc64(sizeof(*g));
    if (g == NULL) return NULL;
    memset(g, 0, sizeof(*g));
    g->iChanges = g->iFailed = g->iTagR = g->iFailedR = -1;
    g->zLast = "none";
    p->pGpu = g;
  }
  return p->pGpu;
}

static void gpu_drop_resident(annex_gpu *g) {
  free(g->aHost);
  g->aHost = NULL;
  g->nSlot = 0;
  g->iChanges = -1;
}

void annex_gpu_free(annex_gpu *g) {
  if (g == NULL) return;
  if (g->ctx) gpu_gApi->xClose(g->ctx);
  if (g->ctxR) gpu_gApi->xClose(g->ctxR);
  gpu_drop_resident(g);
  sqlite3_free(g);
}

/* The context is broken: close it, CPU for the rest of the connection. */
static void gpu_mark_dead(annex_gpu *g, const char *zWhat) {
  snprintf(g->zDead, sizeof(g->zDead), "device lost during %s: %s", zWhat,
           g->ctx ? gpu_gApi->xErrmsg(g->ctx) : "?");
  if (g->ctx) gpu_gApi->xClose(g->ctx);
  if (g->ctxR) gpu_gApi->xClose(g->ctxR);
  g->ctx = g->ctxR = NULL;
  g->iTagR = -1;
  g->nRowsR = 0;
  g->bDead = 1;
  gpu_drop_resident(g);
}

/* Open the table's context. 0, or -1 with the reason in g->zDead or the
** process-wide gpu_gWhy (no device). */
static int gpu_open_context(annex_gpu *g) {
  char zErr[256];
  int rc;
  if (g->ctx) return 0;
  if (g->bDead || gpu_gState == 3) return -1;
  zErr[0] = 0;
  rc = gpu_gApi->xOpen(-1, zErr, sizeof(zErr), &g->ctx);
  if (rc == ANNEX_CUDA_OK) return 0;
  g->ctx = NULL;
  if (rc == ANNEX_CUDA_NODEVICE) {
    snprintf(gpu_gWhy, sizeof(gpu_gWhy), "%s", zErr);
    __atomic_store_n(&gpu_gState, 3, __ATOMIC_RELEASE);
  } else {
    snprintf(g->zDead, sizeof(g->zDead), "opening the device failed: %.200s",
             zErr);
    g->bDead = 1;
  }
  return -1;
}

/* Apply a pending test fault to a context of the table. */
static void gpu_inject_into(void *ctx) {
  if (gpu_gInject && ctx) {
    gpu_gApi->xTestControl(ctx, gpu_gInject, gpu_gInjectArg);
    gpu_gInject = 0;
  }
}

static void gpu_apply_injection(annex_gpu *g) { gpu_inject_into(g->ctx); }

/* Uploading **************************************************************/

/* Read every chunk into the host copy and send it to the device. Returns
** SQLITE_OK, an SQLite error (reading the table), or ANNEX_GPU_USE_CPU
** with g->zWhy set (device failure; *pbLost when the context broke). */
static int gpu_upload_chunks(annex_table *p, annex_gpu *g, size_t nSlot,
                         int *pbLost) {
  const annex_config *c = p->pConfig;
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  int rc = annex_chunk_iter_open(p, &it), e = ANNEX_CUDA_OK;
  while (rc == SQLITE_OK && e == ANNEX_CUDA_OK) {
    size_t iFirst;
    float *aVec;
    rc = annex_chunk_iter_next(it, &ch);
    if (rc != SQLITE_ROW) break;
    rc = SQLITE_OK;
    iFirst = (size_t)ch.iChunk * (size_t)c->nChunk;
    if (ch.iChunk < 0 || iFirst + (size_t)ch.nSlot > nSlot) {
      rc = SQLITE_CORRUPT_VTAB; /* a chunk beyond the slot counter */
      break;
    }
    aVec = g->aHost + iFirst * (size_t)c->nDim;
    rc = annex_chunk_iter_vectors(it, 0, ch.nSlot, aVec);
    if (rc == SQLITE_OK) {
      e = gpu_gApi->xUploadChunk(g->ctx, iFirst, (size_t)ch.nSlot, aVec,
                              ch.aRowid, ch.aValid);
    }
  }
  annex_chunk_iter_close(it);
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc == SQLITE_OK && e == ANNEX_CUDA_OK) e = gpu_gApi->xUploadEnd(g->ctx);
  if (rc != SQLITE_OK) return rc;
  if (e != ANNEX_CUDA_OK) {
    snprintf(g->zWhy, sizeof(g->zWhy), "upload failed (code %d): %s", e,
             gpu_gApi->xErrmsg(g->ctx));
    *pbLost = e == ANNEX_CUDA_LOST;
    g->bFault = 1;
    return ANNEX_GPU_USE_CPU;
  }
  return SQLITE_OK;
}

/* Make the device hold the table as of change counter iChanges. */
static int gpu_upload(annex_table *p, annex_gpu *g, sqlite3_int64 iChanges) {
  const annex_config *c = p->pConfig;
  sqlite3_int64 nSlot = 0;
  double t0 = gpu_now_ms();
  int rc = annex_storage_slots(p, &nSlot), e, bLost = 0;
  if (rc != SQLITE_OK) return rc;
  gpu_drop_resident(g);
  if (nSlot == 0 || (uint64_t)nSlot > ANNEX_CUDA_MAX_ROWS) {
    snprintf(g->zWhy, sizeof(g->zWhy), "%s table", nSlot ? "too large a"
                                                           : "empty");
    return ANNEX_GPU_USE_CPU;
  }
  g->aHost = calloc((size_t)nSlot * (size_t)c->nDim, sizeof(float));
  if (g->aHost == NULL) {
    snprintf(g->zWhy, sizeof(g->zWhy), "no host memory for the table copy");
    g->iFailed = iChanges;
    return ANNEX_GPU_USE_CPU;
  }
  gpu_apply_injection(g);
  e = gpu_gApi->xUploadBegin(g->ctx, (size_t)nSlot, (size_t)c->nDim,
                          (int)c->eMetric);
  if (e != ANNEX_CUDA_OK) {
    snprintf(g->zWhy, sizeof(g->zWhy), "upload failed (code %d): %s", e,
             gpu_gApi->xErrmsg(g->ctx));
    bLost = e == ANNEX_CUDA_LOST;
    g->bFault = 1;
    rc = ANNEX_GPU_USE_CPU;
  } else {
    rc = gpu_upload_chunks(p, g, (size_t)nSlot, &bLost);
  }
  if (rc != SQLITE_OK) {
    gpu_drop_resident(g);
    if (bLost) gpu_mark_dead(g, "upload");
    if (rc == ANNEX_GPU_USE_CPU) g->iFailed = iChanges;
    return rc;
  }
  g->nSlot = (size_t)nSlot;
  g->iChanges = iChanges;
  g->iFailed = -1;
  g->nUpload++;
  g->rUploadMs = gpu_now_ms() - t0;
  return SQLITE_OK;
}

/* The device holds the table as it is now: SQLITE_OK, ANNEX_GPU_USE_CPU
** (g->zWhy set), or an SQLite error. */
static int gpu_make_resident(annex_table *p, annex_gpu *g) {
  sqlite3_int64 iChanges;
  int rc;
  if (sqlite3_txn_state(p->db, p->zDb) == SQLITE_TXN_WRITE) {
    snprintf(g->zWhy, sizeof(g->zWhy), "inside a write transaction");
    return ANNEX_GPU_USE_CPU;
  }
  rc = annex_storage_config_int(p, "changes", &iChanges);
  if (rc != SQLITE_OK) return rc;
  if (g->aHost && iChanges == g->iChanges) return SQLITE_OK;
  if (iChanges == g->iFailed) {
    snprintf(g->zWhy, sizeof(g->zWhy), "the upload failed and the table has "
             "not changed since");
    return ANNEX_GPU_USE_CPU;
  }
  return gpu_upload(p, g, iChanges);
}

/* Queries ****************************************************************/

/* A device call failed with plugin code e: remember why; the caller
** answers on the CPU. */
static int gpu_device_failed(annex_gpu *g, int e, const char *zWhat) {
  snprintf(g->zWhy, sizeof(g->zWhy), "%s failed (code %d): %s", zWhat, e,
           g->ctx ? gpu_gApi->xErrmsg(g->ctx) : "");
  g->bFault = 1;
  if (e == ANNEX_CUDA_LOST) gpu_mark_dead(g, zWhat);
  else if (e == ANNEX_CUDA_EMPTY) gpu_drop_resident(g);
  return ANNEX_GPU_USE_CPU;
}

/* Re-score query q's nHit candidates with the CPU kernel on the host copy,
** keep the best k in aOut; returns 1 when certified (see the header). */
static int gpu_certify(annex_table *p, annex_gpu *g, const float *pQ,
                   const annex_cuda_hit *aHit, size_t nHit, size_t nCand,
                   float fFloor, size_t k, annex_hit *aTmp, annex_hit *aOut,
                   sqlite3_int64 *pnOut) {
  size_t nDim = (size_t)p->pConfig->nDim, nKeep = nHit < k ? nHit : k;
  for (size_t i = 0; i < nHit; i++) {
    aTmp[i].score = p->xScore(pQ, g->aHost + (size_t)aHit[i].slot * nDim,
                              nDim);
    aTmp[i].rowid = aHit[i].rowid;
  }
  annex_hits_sort(aTmp, nHit);
  memcpy(aOut, aTmp, sizeof(annex_hit) * nKeep);
  *pnOut = (sqlite3_int64)nKeep;
  return nHit < nCand || (nKeep == k && aTmp[k - 1].score < fFloor);
}

/* Scratch of one xKnn call. */
typedef struct gpu_knn_scratch {
  annex_cuda_hit *aHit;  /* nQ x nCand */
  size_t *anHit;         /* nQ */
  float *aFloor;         /* nQ */
  annex_hit *aTmp;       /* nCand */
} gpu_knn_scratch;

static void gpu_scratch_free(gpu_knn_scratch *s) {
  sqlite3_free(s->aHit);
  sqlite3_free(s->anHit);
  sqlite3_free(s->aFloor);
  sqlite3_free(s->aTmp);
}

static int gpu_scratch_alloc(gpu_knn_scratch *s, size_t nQ, size_t nCand) {
  s->aHit = sqlite3_malloc64(sizeof(annex_cuda_hit) * nQ * nCand);
  s->anHit = sqlite3_malloc64(sizeof(size_t) * nQ);
  s->aFloor = sqlite3_malloc64(sizeof(float) * nQ);
  s->aTmp = sqlite3_malloc64(sizeof(annex_hit) * nCand * GPU_MAX_THREADS);
  if (s->aHit && s->anHit && s->aFloor && s->aTmp) return SQLITE_OK;
  gpu_scratch_free(s);
  return SQLITE_NOMEM;
}

/* Certify n queries of one xKnn call (query j is aQ[j], its answer goes
** to slot aIdx[j], or i0 + j). Large batches use every core: the re-score
** reads 4 x nCand x nDim bytes of scattered host memory per query. */
static void gpu_certify_all(annex_table *p, annex_gpu *g, const float *aQ,
                            const size_t *aIdx, size_t i0, size_t n,
                            size_t k, size_t nCand, gpu_knn_scratch *s,
                            annex_hit *aOut, sqlite3_int64 *anOut,
                            unsigned char *abCert) {
  size_t nDim = (size_t)p->pConfig->nDim;
  const char *zEnv = getenv("ANNEX_GPU_RESCORE_THREADS"); /* experiments */
  int nThread = zEnv ? atoi(zEnv) : n >= 256 ? annex_build_threads() : 1;
  if (nThread < 1) nThread = 1;
  if (nThread > GPU_MAX_THREADS) nThread = GPU_MAX_THREADS;
#ifdef ANNEX_HAVE_OPENMP
#pragma omp parallel for num_threads(nThread) schedule(static) if (nThread > 1)
#endif
  for (size_t j = 0; j < n; j++) {
    size_t iq = aIdx ? aIdx[j] : i0 + j;
    int t = 0;
#ifdef ANNEX_HAVE_OPENMP
    t = omp_get_thread_num();
#endif
    abCert[iq] = (unsigned char)gpu_certify(
        p, g, aQ + j * nDim, s->aHit + j * nCand, s->anHit[j], nCand,
        s->aFloor[j], k, s->aTmp + (size_t)t * nCand, aOut + iq * k,
        &anOut[iq]);
  }
  (void)nThread;
}

/* Queries aIdx[0..nQ) of aQuery (all when aIdx is NULL) on the device with
** nCand candidates; the certified ones get their answer in aOut/anOut
** (stride k) and abCert[i] = 1. SQLITE_OK, SQLITE_NOMEM (host), or
** ANNEX_GPU_USE_CPU after a device failure. */
static int gpu_device_pass(annex_table *p, annex_gpu *g, const float *aQuery,
                       const size_t *aIdx, size_t nQ, size_t k, size_t nCand,
                       const unsigned char *aAllowed, annex_hit *aOut,
                       sqlite3_int64 *anOut, unsigned char *abCert) {
  size_t nDim = (size_t)p->pConfig->nDim;
  size_t nGroup = nQ < GPU_QUERY_GROUP ? nQ : GPU_QUERY_GROUP;
  gpu_knn_scratch s;
  annex_cuda_stats st;
  double t0;
  float *aGather = NULL;
  int rc = gpu_scratch_alloc(&s, nGroup, nCand);
  if (rc == SQLITE_OK && aIdx) {
    aGather = sqlite3_malloc64(sizeof(float) * nDim * nGroup);
    if (aGather == NULL) rc = SQLITE_NOMEM;
  }
  for (size_t i0 = 0; rc == SQLITE_OK && i0 < nQ; i0 += nGroup) {
    size_t n = nQ - i0 < nGroup ? nQ - i0 : nGroup, e;
    const float *aQ = aQuery + i0 * nDim;
    unsigned flags = n >= ANNEX_CUDA_SCAN_BELOW ? ANNEX_CUDA_TF32 : 0;
    if (aIdx) {
      for (size_t j = 0; j < n; j++) {
        memcpy(aGather + j * nDim, aQuery + aIdx[i0 + j] * nDim,
               sizeof(float) * nDim);
      }
      aQ = aGather;
    }
    gpu_apply_injection(g);
    t0 = gpu_now_ms();
    e = (size_t)gpu_gApi->xKnn(g->ctx, aQ, n, k, nCand, flags, aAllowed, s.aHit,
                            s.anHit, s.aFloor);
    if (e != ANNEX_CUDA_OK) {
      rc = gpu_device_failed(g, (int)e, "k-NN");
      break;
    }
    g->rKnnMs += gpu_now_ms() - t0;
    if (gpu_gApi->xStats(g->ctx, &st) == ANNEX_CUDA_OK) {
      g->rDeviceMs += st.rLastMs;
    }
    t0 = gpu_now_ms();
    gpu_certify_all(p, g, aQ, aIdx ? aIdx + i0 : NULL, i0, n, k, nCand, &s,
                    aOut, anOut, abCert);
    g->rCertifyMs += gpu_now_ms() - t0;
  }
  sqlite3_free(aGather);
  gpu_scratch_free(&s);
  return rc;
}

/* The queries the device has not certified, answered by the CPU scan. */
static int gpu_redo_on_cpu(annex_table *p, annex_gpu *g, const float *aQuery,
                       size_t nQ, size_t k, const annex_knn_query *pTmpl,
                       const unsigned char *abCert, annex_hit *aOut,
                       sqlite3_int64 *anOut) {
  int rc = SQLITE_OK;
  for (size_t i = 0; rc == SQLITE_OK && i < nQ; i++) {
    annex_knn_query kq = *pTmpl;
    annex_hit *aRes = NULL;
    sqlite3_int64 nRes = 0;
    if (abCert[i]) continue;
    kq.pQuery = aQuery + i * (size_t)p->pConfig->nDim;
    kq.k = (sqlite3_int64)k;
    kq.bRadius = 0;
    rc = annex_knn_exact(p, &kq, &aRes, &nRes);
    if (rc == SQLITE_OK) {
      memcpy(aOut + i * k, aRes, sizeof(annex_hit) * (size_t)nRes);
      anOut[i] = nRes;
      g->nUncertified++;
    }
    sqlite3_free(aRes);
  }
  return rc;
}

/* nQ queries, k each, exact: the device, a second device pass with twice
** the candidates for what it could not certify, then the CPU scan. */
static int gpu_run_queries(annex_table *p, annex_gpu *g, const float *aQuery,
                       size_t nQ, size_t k, const annex_knn_query *pTmpl,
                       const unsigned char *aAllowed, annex_hit *aOut,
                       sqlite3_int64 *anOut) {
  size_t nMax = (size_t)gpu_gApi->nMaxCand, nCand = k + ANNEX_CUDA_EXTRA(k);
  size_t *aIdx = NULL, nLeft = 0;
  unsigned char *abCert = sqlite3_malloc64(nQ);
  int rc = abCert ? SQLITE_OK : SQLITE_NOMEM;
  double t0 = gpu_now_ms();
  g->rKnnMs = g->rDeviceMs = g->rCertifyMs = 0;
  if (nCand > nMax) nCand = nMax;
  if (rc == SQLITE_OK) {
    memset(abCert, 0, nQ);
    rc = gpu_device_pass(p, g, aQuery, NULL, nQ, k, nCand, aAllowed, aOut,
                         anOut, abCert);
  }
  for (size_t i = 0; rc == SQLITE_OK && i < nQ; i++) nLeft += !abCert[i];
  if (rc == SQLITE_OK && nLeft > 0 && nCand < nMax) {
    aIdx = sqlite3_malloc64(sizeof(size_t) * nLeft);
    if (aIdx == NULL) rc = SQLITE_NOMEM;
    for (size_t i = 0, j = 0; rc == SQLITE_OK && i < nQ; i++) {
      if (!abCert[i]) aIdx[j++] = i;
    }
    if (rc == SQLITE_OK) {
      rc = gpu_device_pass(p, g, aQuery, aIdx, nLeft, k,
                           2 * nCand < nMax ? 2 * nCand : nMax, aAllowed,
                           aOut, anOut, abCert);
    }
  }
  if (rc == SQLITE_OK) {
    rc = gpu_redo_on_cpu(p, g, aQuery, nQ, k, pTmpl, abCert, aOut, anOut);
  }
  sqlite3_free(aIdx);
  sqlite3_free(abCert);
  g->rCallMs = gpu_now_ms() - t0;
  return rc;
}

/* Whether this call may use the GPU. SQLITE_OK: yes, *pg ready (context
** open); ANNEX_GPU_USE_CPU: no, g->zWhy says why; SQLITE_ERROR with *pzErr
** under device=gpu when the GPU cannot answer. */
static int gpu_choose(annex_table *p, int eDevice, double rWork,
                      double rMin, sqlite3_int64 k, int bFilter,
                      annex_gpu **pg, char **pzErr) {
  const annex_config *c = p->pConfig;
  annex_gpu *g = gpu_state(p);
  int bGpu = eDevice == ANNEX_DEVICE_GPU;
  const char *zWhy = NULL;
  char zBuf[512];
  *pg = g;
  if (g == NULL) return SQLITE_NOMEM;
  g->bFault = 0;
  if (eDevice == ANNEX_DEVICE_CPU) zWhy = "device=cpu";
  else if (c->eElem != ANNEX_ELEM_FLOAT32 ||
           c->eMetric == ANNEX_METRIC_HAMMING) {
    zWhy = "the GPU answers float vectors with l2, cosine or ip only";
  } else if (k <= 0 || k + ANNEX_CUDA_EXTRA(k) > ANNEX_CUDA_MAX_CAND) {
    zWhy = "the GPU answers k-NN with k (or a LIMIT) from 1 to 1638";
  } else if (!bGpu && bFilter) {
    zWhy = "under device=auto, filters on text ranges or bytes run on the "
           "CPU";
  } else if (!bGpu && rWork < rMin) {
    zWhy = "too little work to pay for the GPU (device=auto)";
  } else if (gpu_plugin() == NULL || gpu_open_context(g) != 0) {
    snprintf(zBuf, sizeof(zBuf), "%s%.400s",
             g->bDead           ? "GPU disabled for this table: "
             : gpu_gState == 3 ? ""
                               : "CUDA plugin not available: ",
             g->bDead ? g->zDead : gpu_gWhy);
    zWhy = zBuf;
  }
  if (zWhy == NULL) return SQLITE_OK;
  snprintf(g->zWhy, sizeof(g->zWhy), "%s", zWhy);
  if (bGpu) {
    *pzErr = sqlite3_mprintf("device=gpu: %s", zWhy);
    return *pzErr ? SQLITE_ERROR : SQLITE_NOMEM;
  }
  return ANNEX_GPU_USE_CPU;
}

/* Book-keeping at the end of a call that chose the GPU. */
static int gpu_finish(annex_gpu *g, int rc) {
  if (rc == SQLITE_OK) {
    g->zLast = "gpu";
    g->zWhy[0] = 0;
    g->nGpu++;
  } else if (rc == ANNEX_GPU_USE_CPU) {
    if (g->bFault) g->nFallback++;
  }
  return rc;
}

/* Note a call the CPU answers (any reason). */
static int gpu_to_cpu(annex_gpu *g, int rc) {
  if (g && rc == ANNEX_GPU_USE_CPU) {
    g->zLast = "cpu";
    g->nCpu++;
  }
  return rc;
}

static int gpu_has_filter(const annex_term *aTerm, int nTerm) {
  for (int i = 0; i < nTerm; i++) {
    char op = aTerm[i].cOp;
    if ((op >= 'a' && op <= 'k') || op == 'P' || op == 'Q') return 1;
  }
  return 0;
}

/* The compiled filter f evaluated on every chunk's compact metadata (no
** vector is read) into a bitmap of g->nSlot bits, live rows only.
** ANNEX_NEED_SQL_FILTER when a chunk holds a value f cannot judge. */
static int gpu_meta_bitmap(annex_table *p, annex_gpu *g,
                           const annex_mfilter *f, unsigned char **paOut,
                           annex_knn_query *q) {
  const annex_config *c = p->pConfig;
  size_t nByte = (g->nSlot + 7) / 8;
  unsigned char *a = sqlite3_malloc64(nByte ? nByte : 1);
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  int rc = a ? annex_chunk_iter_open(p, &it) : SQLITE_NOMEM;
  *paOut = a;
  if (a) memset(a, 0, nByte);
  q->nAllowed = 0;
  q->nAllowedSlots = (sqlite3_int64)g->nSlot;
  while (rc == SQLITE_OK &&
         (rc = annex_chunk_iter_next(it, &ch)) == SQLITE_ROW) {
    size_t iFirst = (size_t)ch.iChunk * (size_t)c->nChunk; /* multiple of 8 */
    unsigned char *m = a + iFirst / 8;
    rc = SQLITE_OK;
    if (iFirst + (size_t)ch.nSlot > g->nSlot) rc = SQLITE_CORRUPT_VTAB;
    else if (annex_mfilter_eval(f, ch.pMeta, c->nChunk, ch.aRowid, ch.nSlot,
                                m) != 0) {
      rc = ANNEX_NEED_SQL_FILTER;
    }
    for (int i = 0; rc == SQLITE_OK && i < (ch.nSlot + 7) / 8; i++) {
      m[i] &= ch.aValid[i];
      if (ch.nSlot - 8 * i < 8) {
        m[i] &= (unsigned char)((1u << (ch.nSlot & 7)) - 1);
      }
      q->nAllowed += __builtin_popcount(m[i]);
    }
  }
  annex_chunk_iter_close(it);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The filter as a bitmap of g->nSlot bits through SQL (filter.c); NULL
** when nothing filters. */
static int gpu_allowed_bitmap(annex_table *p, annex_gpu *g,
                              const annex_term *aTerm, int nTerm,
                              sqlite3_value **argv, unsigned char **paOut,
                              annex_knn_query *q) {
  unsigned char *a = NULL, *aPad;
  size_t nByte = (g->nSlot + 7) / 8;
  int rc = annex_filter_build(p, aTerm, nTerm, argv, &a, &q->nAllowedSlots,
                              &q->nAllowed);
  *paOut = a;
  if (rc != SQLITE_OK || a == NULL ||
      (size_t)(q->nAllowedSlots + 7) / 8 >= nByte) {
    return rc;
  }
  aPad = sqlite3_malloc64(nByte);
  if (aPad == NULL) return SQLITE_NOMEM;
  memset(aPad, 0, nByte);
  memcpy(aPad, a, (size_t)(q->nAllowedSlots + 7) / 8);
  sqlite3_free(a);
  *paOut = aPad;
  return SQLITE_OK;
}

/* Drop the hits beyond the radius (they come last: distance grows with
** the score). */
static void gpu_cut_radius(const annex_table *p, const annex_knn_query *q,
                       annex_hit *a, sqlite3_int64 *pn) {
  while (q->bRadius && *pn > 0) {
    double d = annex_score_to_distance(p->pConfig->eMetric, a[*pn - 1].score);
    if (q->bRadiusInclusive ? d <= q->rRadius : d < q->rRadius) break;
    (*pn)--;
  }
}

/* The filter of a query as a slot bitmap: from the compact metadata when
** it compiled and every chunk can judge it, else (device=gpu only) through
** SQL. ANNEX_GPU_USE_CPU under device=auto when SQL would be needed. */
static int gpu_filter(annex_table *p, annex_gpu *g, int eDevice,
                      const annex_mfilter *f, const annex_term *aTerm,
                      int nTerm, sqlite3_value **argv,
                      unsigned char **paAllowed, annex_knn_query *q) {
  int rc = SQLITE_OK;
  *paAllowed = NULL;
  if (!gpu_has_filter(aTerm, nTerm)) return SQLITE_OK;
  if (f) {
    rc = gpu_meta_bitmap(p, g, f, paAllowed, q);
    if (rc != ANNEX_NEED_SQL_FILTER) return rc;
    sqlite3_free(*paAllowed);
    *paAllowed = NULL;
  }
  if (eDevice != ANNEX_DEVICE_GPU) {
    snprintf(g->zWhy, sizeof(g->zWhy), "under device=auto, filters on text "
             "ranges or bytes run on the CPU");
    return ANNEX_GPU_USE_CPU;
  }
  return gpu_allowed_bitmap(p, g, aTerm, nTerm, argv, paAllowed, q);
}

int annex_gpu_knn(annex_table *p, int eDevice, const annex_knn_query *q,
                  const annex_term *aTerm, int nTerm, sqlite3_value **argv,
                  annex_hit **paRes, sqlite3_int64 *pnRes, char **pzErr) {
  sqlite3_int64 nSlot = 0;
  annex_gpu *g = NULL;
  annex_knn_query kq = *q;
  unsigned char *aAllowed = NULL;
  annex_hit *aOut = NULL;
  annex_mfilter *f = NULL;
  int rc = annex_storage_slots(p, &nSlot);
  if (rc == SQLITE_OK) rc = annex_filter_compile(p, aTerm, nTerm, argv, &f);
  if (rc != SQLITE_OK) return rc;
  rc = gpu_choose(p, eDevice, (double)nSlot * p->pConfig->nDim,
                  ANNEX_GPU_AUTO_MIN, q->k,
                  gpu_has_filter(aTerm, nTerm) && f == NULL, &g, pzErr);
  if (rc == SQLITE_OK) rc = gpu_make_resident(p, g);
  if (rc == SQLITE_OK) {
    rc = gpu_filter(p, g, eDevice, f, aTerm, nTerm, argv, &aAllowed, &kq);
    kq.aAllowed = aAllowed;
  }
  annex_filter_free(f);
  if (rc == SQLITE_OK) {
    aOut = sqlite3_malloc64(sizeof(annex_hit) * (size_t)q->k);
    if (aOut == NULL) rc = SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK && aAllowed && kq.nAllowed == 0) {
    *pnRes = 0; /* nothing passes the filter */
  } else if (rc == SQLITE_OK) {
    rc = gpu_run_queries(p, g, q->pQuery, 1, (size_t)q->k, &kq, aAllowed,
                         aOut, pnRes);
  }
  sqlite3_free(aAllowed);
  if (rc == SQLITE_OK) {
    gpu_cut_radius(p, q, aOut, pnRes);
    *paRes = aOut;
  } else {
    sqlite3_free(aOut);
  }
  if (g && rc == SQLITE_OK) gpu_finish(g, rc);
  else if (g && rc == ANNEX_GPU_USE_CPU) gpu_to_cpu(g, gpu_finish(g, rc));
  return rc;
}

int annex_gpu_batch(annex_table *p, int eDevice, const float *aQuery,
                    int nQuery, sqlite3_int64 k, annex_hit **paHit,
                    sqlite3_int64 **panHit, char **pzErr) {
  sqlite3_int64 nSlot = 0;
  annex_gpu *g = NULL;
  annex_knn_query kq;
  annex_hit *aOut = NULL;
  sqlite3_int64 *anOut = NULL;
  int rc = annex_storage_slots(p, &nSlot);
  if (rc != SQLITE_OK) return rc;
  rc = gpu_choose(p, eDevice, (double)nQuery * (double)nSlot * p->pConfig->nDim,
                  ANNEX_GPU_AUTO_MIN, k, 0, &g, pzErr);
  if (rc == SQLITE_OK) rc = gpu_make_resident(p, g);
  if (rc == SQLITE_OK) {
    aOut = sqlite3_malloc64(sizeof(annex_hit) * (size_t)nQuery * (size_t)k);
    anOut = sqlite3_malloc64(sizeof(sqlite3_int64) * (size_t)nQuery);
    if (aOut == NULL || anOut == NULL) rc = SQLITE_NOMEM;
  }
  memset(&kq, 0, sizeof(kq));
  if (rc == SQLITE_OK) {
    rc = gpu_run_queries(p, g, aQuery, (size_t)nQuery, (size_t)k, &kq, NULL,
                         aOut, anOut);
  }
  if (rc == SQLITE_OK) {
    *paHit = aOut;
    *panHit = anOut;
  } else {
    sqlite3_free(aOut);
    sqlite3_free(anOut);
  }
  if (g && rc == SQLITE_OK) gpu_finish(g, rc);
  else if (g && rc == ANNEX_GPU_USE_CPU) gpu_to_cpu(g, gpu_finish(g, rc));
  return rc;
}

/* Ranged tables (an index's vectors in its own order) *******************/

/* A ranged-table call failed with plugin code e (the caller answers on the
** CPU): the copy is dropped unless only the launch failed. */
static int gpu_ranged_failed(annex_gpu *g, int e, const char *zWhat) {
  snprintf(g->zWhy, sizeof(g->zWhy), "%s failed (code %d): %s", zWhat, e,
           g->ctxR ? gpu_gApi->xErrmsg(g->ctxR) : "");
  g->bFault = 1;
  g->nFallback++;
  if (e == ANNEX_CUDA_LOST) {
    gpu_mark_dead(g, zWhat);
  } else if (e != ANNEX_CUDA_LAUNCH) {
    g->iTagR = -1;
    g->nRowsR = 0;
  }
  return ANNEX_GPU_USE_CPU;
}

int annex_gpu_ranged_use(annex_table *p, int eDevice, double rWork,
                         sqlite3_int64 k, sqlite3_int64 iTag,
                         int *pbUpload) {
  annex_gpu *g = NULL;
  char *zErr = NULL;
  int rc;
  *pbUpload = 0;
  if (eDevice == ANNEX_DEVICE_GPU) eDevice = ANNEX_DEVICE_AUTO; /* no errors */
  rc = gpu_choose(p, eDevice, rWork, ANNEX_GPU_RANGED_MIN, k, 0, &g, &zErr);
  sqlite3_free(zErr);
  if (rc == SQLITE_OK && gpu_gApi->iVersion < ANNEX_CUDA_ABI_RANGES) {
    snprintf(g->zWhy, sizeof(g->zWhy), "the CUDA plugin predates index "
             "scans (ABI %d)", gpu_gApi->iVersion);
    rc = ANNEX_GPU_USE_CPU;
  }
  if (rc == SQLITE_OK &&
      sqlite3_txn_state(p->db, p->zDb) == SQLITE_TXN_WRITE) {
    snprintf(g->zWhy, sizeof(g->zWhy), "inside a write transaction");
    rc = ANNEX_GPU_USE_CPU;
  }
  if (rc == SQLITE_OK && iTag == g->iFailedR) {
    snprintf(g->zWhy, sizeof(g->zWhy), "the index upload failed and the "
             "table has not changed since");
    rc = ANNEX_GPU_USE_CPU;
  }
  if (rc == SQLITE_OK && g->ctxR == NULL) {
    char zOpen[256];
    zOpen[0] = 0;
    if (gpu_gApi->xOpen(-1, zOpen, sizeof(zOpen), &g->ctxR) != ANNEX_CUDA_OK) {
      g->ctxR = NULL;
      snprintf(g->zWhy, sizeof(g->zWhy), "opening the device failed: %.200s",
               zOpen);
      rc = ANNEX_GPU_USE_CPU;
    }
  }
  if (rc == SQLITE_OK) *pbUpload = g->iTagR != iTag;
  if (rc == ANNEX_GPU_USE_CPU) gpu_to_cpu(g, rc);
  return rc; /* SQLITE_OK, ANNEX_GPU_USE_CPU or SQLITE_NOMEM */
}

int annex_gpu_ranged_upload(annex_table *p, size_t iFirst, size_t n,
                            const float *aVec, const sqlite3_int64 *aSlot,
                            const unsigned char *aValid, size_t nTotal,
                            sqlite3_int64 iTag) {
  annex_gpu *g = p->pGpu;
  const annex_config *c = p->pConfig;
  int e = ANNEX_CUDA_OK;
  if (iFirst == 0) {
    g->iTagR = -1;
    g->nRowsR = 0;
    gpu_inject_into(g->ctxR);
    e = gpu_gApi->xUploadBegin(g->ctxR, nTotal, (size_t)c->nDim,
                               (int)c->eMetric);
  }
  if (e == ANNEX_CUDA_OK && n > 0) {
    e = gpu_gApi->xUploadChunk(g->ctxR, iFirst, n, aVec,
                               (const int64_t *)aSlot, aValid);
  }
  if (e == ANNEX_CUDA_OK && iFirst + n == nTotal) {
    e = gpu_gApi->xUploadEnd(g->ctxR);
    if (e == ANNEX_CUDA_OK) {
      g->iTagR = iTag;
      g->nRowsR = nTotal;
      g->nUpload++;
    }
  }
  if (e != ANNEX_CUDA_OK) {
    g->iFailedR = iTag; /* not tried again until the table changes */
    gpu_to_cpu(g, gpu_ranged_failed(g, e, "index upload"));
    return ANNEX_GPU_USE_CPU;
  }
  return SQLITE_OK;
}

int annex_gpu_ranged_knn(annex_table *p, const float *pQuery, size_t nCand,
                         const uint64_t *aRange, size_t nRange,
                         annex_cuda_hit *aHit, size_t *pnHit, float *pFloor) {
  annex_gpu *g = p->pGpu;
  annex_cuda_stats st;
  double t0 = gpu_now_ms();
  int e;
  gpu_inject_into(g->ctxR);
  e = gpu_gApi->xKnnRanges(g->ctxR, pQuery, 1, nCand, aRange, nRange, aHit,
                           pnHit, pFloor);
  g->rKnnMs = gpu_now_ms() - t0;
  if (e != ANNEX_CUDA_OK) {
    gpu_to_cpu(g, gpu_ranged_failed(g, e, "index scan"));
    return ANNEX_GPU_USE_CPU;
  }
  if (gpu_gApi->xStats(g->ctxR, &st) == ANNEX_CUDA_OK) {
    g->rDeviceMs = st.rLastMs;
  }
  return SQLITE_OK;
}

void annex_gpu_ranged_done(annex_table *p, int bGpu, const char *zWhy) {
  annex_gpu *g = p->pGpu;
  if (g == NULL) return;
  if (bGpu) {
    g->nRangedGpu++;
    gpu_finish(g, SQLITE_OK);
  } else {
    snprintf(g->zWhy, sizeof(g->zWhy), "%s", zWhy);
    gpu_to_cpu(g, ANNEX_GPU_USE_CPU);
  }
}

/* k-means assignment (IVF training) **************************************/

/* The kmeans.h assignment hook (annex_kmeans_assign_fn) for table pTab:
** 0 when the GPU did it, non-zero when the CPU must (device=cpu, too little
** work under auto, no plugin/device, a plugin older than the kmeans ABI,
** or a device failure; LOST also closes the table's context). */
int annex_gpu_kmeans_assign(void *pTab, const float *aX, size_t n,
                            size_t nDim, const float *aC, size_t k, int bIP,
                            unsigned flags, int32_t *aAssign, float *aScore) {
  annex_table *p = (annex_table *)pTab;
  int eDevice = p->pConfig->eDevice;
  annex_gpu *g;
  double t0;
  unsigned f = (bIP ? ANNEX_CUDA_KM_IP : 0) |
               (flags & ANNEX_KMEANS_HOLD_X ? ANNEX_CUDA_KM_HOLD_X : 0) |
               (flags & ANNEX_KMEANS_REUSE_X ? ANNEX_CUDA_KM_REUSE_X : 0);
  int rc;
  if (eDevice == ANNEX_DEVICE_CPU) return -1;
  if (eDevice == ANNEX_DEVICE_AUTO &&
      (double)n * (double)k * (double)nDim < ANNEX_GPU_KMEANS_MIN) {
    return -1;
  }
  g = gpu_state(p);
  if (g == NULL || gpu_plugin() == NULL ||
      gpu_gApi->iVersion < ANNEX_CUDA_ABI_KMEANS || gpu_open_context(g) != 0) {
    return -1;
  }
  gpu_apply_injection(g);
  t0 = gpu_now_ms();
  rc = gpu_gApi->xKmeansAssign(g->ctx, aX, n, nDim, aC, k, f, aAssign, aScore);
  g->rKmMs += gpu_now_ms() - t0;
  if (rc == ANNEX_CUDA_OK) {
    g->nKmGpu++;
    return 0;
  }
  g->nKmFail++;
  if (rc == ANNEX_CUDA_LOST) gpu_mark_dead(g, "k-means assignment");
  return -1;
}

/* annex_info *************************************************************/

static const char *plugin_status(void) {
  switch (__atomic_load_n(&gpu_gState, __ATOMIC_ACQUIRE)) {
    case 1: return "loaded";
    case 2: return "missing";
    case 3: return "no device";
  }
  return "not loaded (no query has needed it)";
}

/* One fact: xGpuFact(pCtx, zKey, SQL literal of the value). */
static int gpu_fact(void *pCtx,
                    int (*xGpuFact)(void *, const char *, const char *),
                    const char *zKey, char *zSql) {
  int rc = zSql ? xGpuFact(pCtx, zKey, zSql) : SQLITE_NOMEM;
  sqlite3_free(zSql);
  return rc;
}

int annex_gpu_info(annex_table *p, int eDevice, void *pCtx,
                   int (*xGpuFact)(void *, const char *, const char *)) {
  annex_gpu *g = p ? p->pGpu : NULL;
  char zName[128] = "";
  size_t nFree = 0, nTotal = 0, nRes = 0;
  int rc;
  if (g && g->ctx) {
    gpu_gApi->xDevice(g->ctx, zName, sizeof(zName), &nFree, &nTotal);
    nRes = gpu_gApi->xResidentBytes(g->ctx);
  }
  rc = gpu_fact(pCtx, xGpuFact, "device", sqlite3_mprintf("%Q",
                                                  annex_device_name(eDevice)));
  if (rc == SQLITE_OK) {
    rc = gpu_fact(pCtx, xGpuFact, "gpu_plugin", sqlite3_mprintf(
        "'%q%s%q'", plugin_status(), gpu_gState ? ": " : "",
        gpu_gState ? gpu_gWhy : ""));
  }
  if (rc == SQLITE_OK && g && (g->ctx || g->bDead)) {
    rc = gpu_fact(pCtx, xGpuFact, "gpu_device",
              sqlite3_mprintf("%Q", g->bDead ? g->zDead : zName));
  }
  if (rc == SQLITE_OK) {
    rc = gpu_fact(pCtx, xGpuFact, "gpu_bytes_resident",
              sqlite3_mprintf("%lld", (long long)nRes));
  }
  if (rc == SQLITE_OK && g) {
    rc = gpu_fact(pCtx, xGpuFact, "gpu_rows_resident",
              sqlite3_mprintf("%lld", (long long)g->nSlot));
    if (rc == SQLITE_OK) {
      rc = gpu_fact(pCtx, xGpuFact, "gpu_host_bytes", sqlite3_mprintf("%lld",
                (long long)(g->nSlot * (size_t)p->pConfig->nDim * 4)));
    }
    if (rc == SQLITE_OK) {
      rc = gpu_fact(pCtx, xGpuFact, "gpu_upload_ms",
                sqlite3_mprintf("%.3f", g->rUploadMs));
    }
  }
  if (rc == SQLITE_OK) {
    rc = gpu_fact(pCtx, xGpuFact, "last_device",
              sqlite3_mprintf("%Q", g ? g->zLast : "none"));
  }
  if (rc == SQLITE_OK && g && g->zLast[0] == 'c') {
    rc = gpu_fact(pCtx, xGpuFact, "last_cpu_reason",
                  sqlite3_mprintf("%Q", g->zWhy));
  }
  if (rc == SQLITE_OK) {
    rc = gpu_fact(pCtx, xGpuFact, "gpu_counts", sqlite3_mprintf(
        "'gpu=%lld cpu=%lld fallbacks=%lld uncertified=%lld uploads=%lld'",
        g ? g->nGpu : 0LL, g ? g->nCpu : 0LL, g ? g->nFallback : 0LL,
        g ? g->nUncertified : 0LL, g ? g->nUpload : 0LL));
  }
  if (rc == SQLITE_OK && g) {
    rc = gpu_fact(pCtx, xGpuFact, "gpu_last_ms", sqlite3_mprintf(
        "'call=%.3f knn=%.3f device=%.3f certify=%.3f'", g->rCallMs,
        g->rKnnMs, g->rDeviceMs, g->rCertifyMs));
  }
  if (rc == SQLITE_OK && g && (g->ctxR || g->nRangedGpu)) {
    rc = gpu_fact(pCtx, xGpuFact, "gpu_index", sqlite3_mprintf(
        "'rows=%lld bytes=%lld searches=%lld'", (long long)g->nRowsR,
        (long long)(g->ctxR ? gpu_gApi->xResidentBytes(g->ctxR) : 0),
        g->nRangedGpu));
  }
  if (rc == SQLITE_OK && g && (g->nKmGpu || g->nKmFail)) {
    rc = gpu_fact(pCtx, xGpuFact, "gpu_kmeans", sqlite3_mprintf(
        "'assignments=%lld failed=%lld ms=%.1f'", g->nKmGpu, g->nKmFail,
        g->rKmMs));
  }
  if (rc == SQLITE_OK) {
    rc = gpu_fact(pCtx, xGpuFact, "gpu_fallbacks",
              sqlite3_mprintf("%lld", g ? g->nFallback : 0LL));
  }
  return rc;
}
