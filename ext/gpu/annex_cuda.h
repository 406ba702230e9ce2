/*
** annex_cuda.h — the C ABI of the CUDA plugin (annex_cuda.so).
**
** annex.so never links CUDA. It dlopen()s annex_cuda.so, looks up the one
** exported symbol ANNEX_CUDA_ENTRY ("annex_cuda_plugin"), calls it, and talks
** to the device only through the table of functions it returns. This header
** is plain C: no CUDA type appears in it, so annex.so includes it without
** the toolkit.
**
** VERSIONING. annex_cuda_api.iVersion is ANNEX_CUDA_ABI_VERSION of the
** plugin's build. Functions are only ever appended to the table; a caller
** built against version V may use a plugin whose iVersion >= V, and must
** refuse (fall back to the CPU) one with a smaller iVersion.
**
** ERRORS. Every function that can fail returns one of the ANNEX_CUDA_* codes
** below, never aborts, never exits, never prints. The message of the last
** failure of a context is xErrmsg(ctx) (xOpen writes its own to zErr).
** Out-of-memory, launch failures and a lost device are reported, so that the
** caller can answer the same query on the CPU:
**   ANNEX_CUDA_NOMEM    device memory exhausted (real, or injected by a test):
**                       the context stays usable; nothing was half-done
**                       (a failed upload leaves no table resident).
**   ANNEX_CUDA_LAUNCH   a kernel or cuBLAS call failed without poisoning the
**                       context: the context stays usable.
**   ANNEX_CUDA_LOST     the CUDA context is broken (sticky error, device
**                       fell off the bus, ...): every later call on this
**                       context returns ANNEX_CUDA_LOST; xClose it and use
**                       the CPU (a new xOpen may or may not succeed).
**   ANNEX_CUDA_NODEVICE xOpen only: no driver, no device, or no kernel image
**                       for this device's architecture.
**
** THREADS. One context is used by one thread at a time (the caller
** serialises); distinct contexts may be used concurrently.
**
** MEMORY. Device memory is taken with plain cudaMalloc (never managed
** memory): the table (n x dim floats padded to a multiple of 4, plus 16 bytes
** a vector of norms/rowids/bits) stays resident until the next upload or
** xClose; per-query scratch grows on demand and is kept for the next call.
**
** ------------------------------------------------------------------------
** THE k-NN CONTRACT (what makes GPU answers identical to the CPU's)
**
** Scores follow annex's CPU kernels (ext/index/distance.h):
**   l2      sum (q_i - x_i)^2          ip   -(q.x)
**   cosine  1 - q.x / (|q| |x|), or 1 when either norm is 0
** xKnn returns, for each query q, the nCand valid (and allowed) vectors with
** the smallest *device scores* e(q,x): an fp32 direct scan for the scan
** path, or |q|^2 + |x|^2 - 2 q.x (l2) / -q.x (ip) / 1 - q.x/(|q||x|)
** (cosine) with q.x from an fp32 or TF32 matrix product for the GEMM path.
** The hits of a query come sorted by (score, rowid), where `score` is the
** candidate re-scored on the device in fp32 by the direct formula above
** (summation order differs from the CPU kernels: equal to within float
** rounding, not bit for bit).
**
** With the hits comes aFloor[q], a rigorous lower bound on the score that
** ANY annex CPU kernel assigns to ANY valid, allowed vector NOT among the
** returned hits:
**      for every such x:  s_cpu(q, x) >= aFloor[q]
** (aFloor[q] = +INFINITY when every valid vector was returned). A "CPU
** kernel" is any float32 evaluation of the score formula whose error is
** within the standard bound: l2 |s - S| <= (d+4) u S, ip |s - S| <=
** (d+4) u |q||x|, cosine |s - S| <= 2 (d+4) u, with S the exact score,
** u = 2^-24, d = dimensions; annex's SIMD and portable kernels are. The
** bound adds that CPU error to the device's own error bound (fp32: (d+4) u
** |q||x| on a dot product; TF32: 2^-9 + 2^-19 + (d+4) 2^-21 of |q||x|,
** which covers operands truncated to TF32's 10-bit mantissa, exact products
** and fp32 accumulation with up to 4 ulp per addition); it uses |q| and the
** largest |x| of the table, and is rounded down.
**
** How the caller gets results identical to the CPU scan (what annex does):
**   1. ask for nCand = k + extra candidates (extra: see ANNEX_CUDA_EXTRA);
**   2. re-score the returned hits with the CPU kernel, sort by (score, rowid)
**      and keep the first k;
**   3. if fewer than k hits came back, or the k-th CPU score is < aFloor[q]
**      (strictly), those k are exactly what the CPU scan returns: every other
**      vector scores >= aFloor[q] > the k-th, so it cannot enter or tie.
**      Otherwise the query is "uncertified": ask again with a larger nCand
**      (doubling), or answer it on the CPU.
** With fp32 the bound is tight enough that uncertified queries are rare.
** With TF32 (flag ANNEX_CUDA_TF32) it is about 2^-9 |q| max|x| wide, and on
** clustered data a few percent of queries fail step 3 (6% of 1M x 768 on
** the H200). So xKnn takes k too: when k > 0, the device checks each TF32
** answer with its own fp32 re-scores g (sorted): with d_k the k-th, it
** proves step 3 will pass when d_k + delta < aFloor[q], delta bounding
** |g - CPU score| (l2: d_k * 2.5 (d+4) u; ip: 2.5 (d+4) u |q| max|x|;
** cosine: 5 (d+4) u + 1e-7), or when fewer than k hits came back with
** aFloor[q] = +inf. The queries it cannot prove are recomputed on the fp32
** path before xKnn returns (counted in annex_cuda_stats.nRedo), so TF32
** speed comes with fp32's certification rate. The test (gpu_test.c)
** checks the bound against the CPU score of every non-returned vector.
** ------------------------------------------------------------------------
*/
#ifndef ANNEX_CUDA_H
#define ANNEX_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ANNEX_CUDA_ABI_VERSION 3
/* Version history: 1 k-NN (xInfo .. xTestControl); 2 appends
** xKmeansAssign; 3 appends xKnnRanges. A caller that needs a function of
** version V checks iVersion >= V before using it (older plugins lack the
** member). */
#define ANNEX_CUDA_ABI_KMEANS 2
#define ANNEX_CUDA_ABI_RANGES 3
#define ANNEX_CUDA_ENTRY "annex_cuda_plugin"

/* Result codes. */
#define ANNEX_CUDA_OK 0
#define ANNEX_CUDA_ERROR 1    /* misuse: bad argument or call order */
#define ANNEX_CUDA_NOMEM 2    /* out of device memory; context usable */
#define ANNEX_CUDA_NODEVICE 3 /* xOpen: no driver / device / kernel image */
#define ANNEX_CUDA_LAUNCH 4   /* kernel or cuBLAS failure; context usable */
#define ANNEX_CUDA_LOST 5     /* context broken: close it, use the CPU */
#define ANNEX_CUDA_RANGE 6    /* size out of range (nCand, dim, n) */
#define ANNEX_CUDA_EMPTY 7    /* xKnn before a completed upload */

/* Metrics: the values of annex_metric (ext/index/distance.h). */
#define ANNEX_CUDA_L2 1
#define ANNEX_CUDA_COSINE 2
#define ANNEX_CUDA_IP 3

/* Limits. */
#define ANNEX_CUDA_MAX_CAND 2048    /* nCand <= this (so k <= 2048 - extra) */
#define ANNEX_CUDA_MAX_DIM 65536    /* dimensions */
#define ANNEX_CUDA_MAX_ROWS 4294967294u /* vectors in one table (32-bit slots) */
/* Suggested extra candidates (step 1 of the contract): k + max(16, k/4). */
#define ANNEX_CUDA_EXTRA(k) ((k) / 4 > 16 ? (k) / 4 : 16)

/* xKnn flags. */
#define ANNEX_CUDA_TF32 0x1       /* GEMM path on TF32 tensor cores (with
                                  ** k > 0: unproven queries redone fp32) */
#define ANNEX_CUDA_FORCE_SCAN 0x2 /* always the scan path (one query a pass) */
#define ANNEX_CUDA_FORCE_GEMM 0x4 /* always the GEMM path */
/* Without FORCE_*, batches of fewer than ANNEX_CUDA_SCAN_BELOW queries use
** the scan path, larger ones the GEMM path (crossover measured on the H200,
** 1M x 128: one scan pass costs 0.18 ms a query, a GEMM call about 1.5 ms
** for up to 64 queries; see RESULTS.md). */
#define ANNEX_CUDA_SCAN_BELOW 10

/* Paths, as reported in annex_cuda_stats.iLastPath. */
#define ANNEX_CUDA_PATH_NONE 0
#define ANNEX_CUDA_PATH_SCAN 1
#define ANNEX_CUDA_PATH_GEMM_FP32 2
#define ANNEX_CUDA_PATH_GEMM_TF32 3

/* xMeasure: hardware ceilings measured on this device (for floors in
** benchmarks and for calibrating device=auto). Each takes a second or less
** and about 4 GiB of device memory, released afterwards. */
#define ANNEX_CUDA_MEASURE_COPY_GBPS 1   /* D2D copy, (read+write bytes)/s */
#define ANNEX_CUDA_MEASURE_READ_GBPS 2   /* read-only streaming kernel */
#define ANNEX_CUDA_MEASURE_SGEMM_TFLOPS 3 /* cuBLAS fp32 8192^3 */
#define ANNEX_CUDA_MEASURE_TF32_TFLOPS 4  /* cuBLAS TF32 8192^3 */

/* xTestControl: fault injection for tests of the CPU fallback. */
#define ANNEX_CUDA_TEST_FAIL_ALLOC 1  /* arg N: the N-th next device
                                      ** allocation (0 = the next) fails with
                                      ** ANNEX_CUDA_NOMEM; -1 cancels */
#define ANNEX_CUDA_TEST_FAIL_LAUNCH 2 /* the next kernel launch fails with
                                      ** ANNEX_CUDA_LAUNCH */
#define ANNEX_CUDA_TEST_LOSE_DEVICE 3 /* behave as a lost device from now */
/* Environment, read by xOpen: ANNEX_CUDA_FAIL_ALLOC=N acts as
** TEST_FAIL_ALLOC N from the start (xOpen's own allocations count). */

/* xKmeansAssign flags. */
#define ANNEX_CUDA_KM_IP 0x1     /* nearest = largest inner product */
#define ANNEX_CUDA_KM_HOLD_X 0x2 /* keep the vectors resident after the
                                 ** call, for a later ANNEX_CUDA_KM_REUSE_X */
#define ANNEX_CUDA_KM_REUSE_X 0x4 /* aX is what the previous call (made with
                                 ** KM_HOLD_X, same n and nDim) uploaded:
                                 ** use the resident copy, aX is not read */

/* One result. 24 bytes; the device writes this layout directly. */
typedef struct annex_cuda_hit {
  int64_t rowid;   /* aRowid[slot] given at upload (slot if none given) */
  int64_t slot;    /* position in upload order, 0-based */
  float score;     /* device fp32 re-score, direct formula (see above) */
  float reserved;  /* 0 */
} annex_cuda_hit;

typedef struct annex_cuda_stats {
  double rLastMs;        /* device time of the last xKnn (CUDA events, from
                         ** the query upload to the results' download) */
  double rUploadMs;      /* host wall time of the last upload, Begin..End */
  uint64_t nKnnCall;     /* successful xKnn calls */
  uint64_t nQuery;       /* queries answered */
  uint64_t nError;       /* calls that returned an error */
  size_t nResident;      /* device bytes held (table + scratch) */
  size_t nTableBytes;    /* device bytes of the resident table */
  size_t nRows;          /* vectors resident (0: none) */
  int iLastPath;         /* ANNEX_CUDA_PATH_* of the last xKnn */
  int iDevice;           /* CUDA ordinal */
  uint64_t nRedo;        /* TF32 queries recomputed in fp32 (see contract) */
  uint64_t nLastRedo;    /* of them, in the last xKnn */
} annex_cuda_stats;

typedef struct annex_cuda_api {
  int iVersion;   /* ANNEX_CUDA_ABI_VERSION of the plugin */
  int nMaxCand;   /* ANNEX_CUDA_MAX_CAND of the plugin */

  /* Static description of the build: plugin version, CUDA runtime and
  ** cuBLAS versions, architectures compiled in. Never fails. */
  const char *(*xInfo)(void);

  /* Open device iDevice (< 0: device 0). On success *ppCtx is set and 0 is
  ** returned; otherwise *ppCtx is NULL, a code is returned and zErr (nErr
  ** bytes, may be NULL) says why, e.g. "no CUDA device: ...". */
  int (*xOpen)(int iDevice, char *zErr, size_t nErr, void **ppCtx);

  /* Release everything the context holds on the device. NULL is a no-op. */
  void (*xClose)(void *ctx);

  /* Message of the context's last failure ("" if none). Valid until the
  ** next call on the context. */
  const char *(*xErrmsg)(void *ctx);

  /* Device name (into zName, nName bytes), free and total device memory. */
  int (*xDevice)(void *ctx, char *zName, size_t nName, size_t *pnFree,
                 size_t *pnTotal);

  /* Upload a table in three steps, so that it can come chunk by chunk:
  **   xUploadBegin  drops any resident table and takes device memory for
  **                 n vectors of nDim floats (metric ANNEX_CUDA_*);
  **   xUploadChunk  copies n vectors, row-major, to slots iFirst..iFirst+n;
  **                 aRowid (n, may be NULL: rowid = slot) and aValid (bitmap,
  **                 bit i of byte i/8 for the chunk's vector i; NULL: all
  **                 valid). Slots never written are invalid. Vectors must be
  **                 finite;
  **   xUploadEnd    computes norms and makes the table queryable.
  ** Any failure leaves no table resident (xKnn then returns EMPTY). */
  int (*xUploadBegin)(void *ctx, size_t n, size_t nDim, int eMetric);
  int (*xUploadChunk)(void *ctx, size_t iFirst, size_t n, const float *aVec,
                      const int64_t *aRowid, const unsigned char *aValid);
  int (*xUploadEnd)(void *ctx);

  /* Mark slots invalid (deleted rows) without re-uploading. */
  int (*xInvalidate)(void *ctx, const int64_t *aSlot, size_t n);

  /* Exact k-NN candidates for nQuery queries (row-major nQuery x nDim).
  ** k: the k the caller will keep (0 <= k <= nCand; 0: no device-side
  ** check, see the contract; with ANNEX_CUDA_TF32 pass k).
  ** aAllowed: NULL, or a bitmap over slots (bit s of byte s/8) that further
  ** restricts the vectors considered (metadata filters). Output:
  **   aHit[q * nCand + i], i < anHit[q]: query q's hits sorted by
  **                 (score, rowid); anHit[q] = min(nCand, vectors allowed);
  **   aFloor[q]     the bound of the contract above (may be NULL).
  ** 1 <= nCand <= ANNEX_CUDA_MAX_CAND. flags: ANNEX_CUDA_TF32 | FORCE_*.
  ** Synchronous: returns when the results are in the caller's arrays. */
  int (*xKnn)(void *ctx, const float *aQuery, size_t nQuery, size_t k,
              size_t nCand, unsigned flags, const unsigned char *aAllowed,
              annex_cuda_hit *aHit, size_t *anHit, float *aFloor);

  /* Device bytes held by the context (table + scratch). */
  size_t (*xResidentBytes)(void *ctx);

  /* Counters and the last call's device time. */
  int (*xStats)(void *ctx, annex_cuda_stats *pStats);

  /* Measure a hardware ceiling (ANNEX_CUDA_MEASURE_*) into *pValue. */
  int (*xMeasure)(void *ctx, int eWhat, double *pValue);

  /* Fault injection (ANNEX_CUDA_TEST_*). */
  int (*xTestControl)(void *ctx, int eOp, long iArg);

  /* ---- version 2 (ANNEX_CUDA_ABI_KMEANS) ---- */

  /* k-means assignment: for each of the n vectors aX (row-major, n x nDim)
  ** the nearest of the k centroids aC (k x nDim), as annex_kmeans_assign
  ** (ext/index/kmeans.h) computes it: by l2, score |x|^2 + min_j (|c_j|^2
  ** - 2 x.c_j) clamped at 0, or with ANNEX_CUDA_KM_IP the largest x.c_j,
  ** score -x.c_j; x.c from one fp32 cuBLAS product (no TF32), first index
  ** on ties. aAssign[i] gets the index, aScore[i] (may be NULL) the score.
  ** The result equals the CPU's except where two centroids' scores for a
  ** vector are equal within float rounding (the summation orders differ).
  ** Independent of the k-NN table (neither is touched). Memory: the
  ** vectors, the centroids and a block of products, taken per call (and
  ** the vectors kept with ANNEX_CUDA_KM_HOLD_X until the next call without
  ** KM_REUSE_X, or xClose). Synchronous. NOMEM/LAUNCH leave the context
  ** usable (and drop any held vectors). */
  int (*xKmeansAssign)(void *ctx, const float *aX, size_t n, size_t nDim,
                       const float *aC, size_t k, unsigned flags,
                       int32_t *aAssign, float *aScore);

  /* ---- version 3 (ANNEX_CUDA_ABI_RANGES) ---- */

  /* xKnn on the scan path restricted, per query, to nRange ranges of slots
  ** of the resident table: query q considers the valid vectors of slots
  ** [aRange[2 (q nRange + r)], aRange[2 (q nRange + r) + 1]) for r <
  ** nRange (start <= end <= rows; empty ranges allowed; ranges must not
  ** overlap). This is an IVF list scan when the table was uploaded list by
  ** list (annex's index=ivf with flat codes: ann_ivf.c). Outputs and the
  ** contract are xKnn's, with "valid vectors" read as "valid vectors in
  ** the query's ranges": aFloor[q] bounds every such vector not returned.
  ** No filter bitmap; no TF32. Synchronous. */
  int (*xKnnRanges)(void *ctx, const float *aQuery, size_t nQuery,
                    size_t nCand, const uint64_t *aRange, size_t nRange,
                    annex_cuda_hit *aHit, size_t *anHit, float *aFloor);
} annex_cuda_api;

/* The one exported symbol. Never NULL. */
typedef const annex_cuda_api *(*annex_cuda_entry_fn)(void);
const annex_cuda_api *annex_cuda_plugin(void);

#ifdef __cplusplus
}
#endif

#endif /* ANNEX_CUDA_H */
