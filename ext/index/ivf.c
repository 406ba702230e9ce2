/*
** ivf.c — IVF codec, list choice and list scan; see ivf.h.
*/
#include "ivf.h"

#include <math.h>
#include <string.h>

#include "alloc.h"

int annex_ivf_default_nlist(int64_t n) {
  double r = 4.0 * sqrt((double)(n > 0 ? n : 1));
  int v = (int)(r + 0.5);
  return v < 1 ? 1 : v;
}

int annex_ivf_init(annex_ivf *v, annex_ivf_quant eQuant,
                   annex_metric eMetric, size_t nDim, int nList, int m) {
  int rc = ANNEX_KMEANS_OK;
  memset(v, 0, sizeof(*v));
  if (nList < 1 || nDim == 0) return ANNEX_KMEANS_TOO_FEW;
  if (eMetric != ANNEX_METRIC_L2 && eMetric != ANNEX_METRIC_IP &&
      eMetric != ANNEX_METRIC_COSINE) {
    return ANNEX_KMEANS_TOO_FEW;
  }
  v->eQuant = eQuant;
  v->eMetric = eMetric;
  v->nDim = nDim;
  v->nList = nList;
  v->aCentroid = annex_calloc((size_t)nList * nDim, sizeof(float));
  if (v->aCentroid == NULL) return ANNEX_KMEANS_NOMEM;
  switch (eQuant) {
    case ANNEX_IVF_FLAT:
      v->szCode = nDim * sizeof(float);
      break;
    case ANNEX_IVF_SQ8:
      v->szCode = nDim;
      if (annex_sq8_init(&v->sq, nDim)) rc = ANNEX_KMEANS_NOMEM;
      break;
    case ANNEX_IVF_PQ:
      v->szCode = (size_t)m;
      rc = annex_pq_init(&v->pq, nDim, m);
      break;
    default:
      rc = ANNEX_KMEANS_TOO_FEW;
  }
  v->szEntry = 8 + v->szCode;
  if (rc != ANNEX_KMEANS_OK) annex_ivf_free(v);
  return rc;
}

/* The precomputed tables apply: pq codes of residuals scored by l2. */
static int ivf_has_pre(const annex_ivf *v) {
  return v->eQuant == ANNEX_IVF_PQ && v->eMetric != ANNEX_METRIC_IP;
}

void annex_ivf_free(annex_ivf *v) {
  if (v->apPre) {
    for (int i = 0; i < v->nList; i++) annex_free(v->apPre[i]);
    annex_free(v->apPre);
  }
  annex_free(v->aCentroid);
  if (v->eQuant == ANNEX_IVF_PQ) annex_pq_free(&v->pq);
  if (v->eQuant == ANNEX_IVF_SQ8) annex_sq8_free(&v->sq);
  memset(v, 0, sizeof(*v));
}

void annex_ivf_prepare(const annex_ivf *v, const float *x, float *out) {
  double s = 0;
  if (out != x) memcpy(out, x, v->nDim * sizeof(float));
  if (v->eMetric != ANNEX_METRIC_COSINE) return;
  for (size_t t = 0; t < v->nDim; t++) s += (double)x[t] * x[t];
  if (s > 0) {
    float r = (float)(1.0 / sqrt(s));
    for (size_t t = 0; t < v->nDim; t++) out[t] *= r;
  }
}

int annex_ivf_assign(const annex_ivf *v, const float *aPrep, size_t n,
                     int nThread, int32_t *aList) {
  return annex_kmeans_assign(aPrep, n, v->nDim, v->aCentroid,
                             (size_t)v->nList,
                             v->eMetric == ANNEX_METRIC_IP, nThread, aList,
                             NULL);
}

/* Train the residual quantizer on the prepared sample aP (n rows). */
static int ivf_train_codes(annex_ivf *v, float *aP, size_t n,
                           const annex_kmeans_params *p) {
  size_t d = v->nDim;
  int32_t *aList = annex_malloc(n * sizeof(int32_t));
  int rc;
  if (aList == NULL) return ANNEX_KMEANS_NOMEM;
  rc = annex_ivf_assign(v, aP, n, p->nThread, aList);
  for (size_t i = 0; rc == ANNEX_KMEANS_OK && i < n; i++) {
    const float *c = v->aCentroid + (size_t)aList[i] * d;
    for (size_t t = 0; t < d; t++) aP[i * d + t] -= c[t]; /* residual */
  }
  annex_free(aList);
  if (rc != ANNEX_KMEANS_OK) return rc;
  if (v->eQuant == ANNEX_IVF_SQ8) {
    annex_sq8_train(&v->sq, aP, n);
    return ANNEX_KMEANS_OK;
  } else {
    annex_kmeans_params q = *p;
    q.seed = p->seed + 1;
    q.nMaxPerCentroid = 256;
    return annex_pq_train(&v->pq, aP, n, &q);
  }
}

int annex_ivf_train_steps(const annex_ivf *v, int nIter) {
  if (nIter <= 0) nIter = 20; /* annex_kmeans_train's default */
  return nIter * (1 + (v->eQuant == ANNEX_IVF_PQ ? v->pq.m : 0));
}

/* The caller's progress callback, seen through the stages of training as
** one count (annex_kmeans_train calls it once per iteration). */
typedef struct ivf_steps {
  annex_kmeans_progress_fn xProgress; /* the caller's */
  void *pCtx;                         /* its context */
  int nDone, nTotal;
} ivf_steps;

static int ivf_step(void *pCtx, int iIter, int nIter, double obj) {
  ivf_steps *s = pCtx;
  (void)iIter;
  (void)nIter;
  if (s->nDone < s->nTotal) s->nDone++;
  return s->xProgress(s->pCtx, s->nDone, s->nTotal, obj);
}

int annex_ivf_train(annex_ivf *v, const float *aX, size_t n,
                    const annex_kmeans_params *p) {
  size_t d = v->nDim, nMax = p->nMaxPerCentroid ? p->nMaxPerCentroid : 256;
  size_t nS = (size_t)v->nList * nMax, *aIdx = NULL;
  uint64_t rng = p->seed ^ 0x697666ull; /* "ivf" */
  annex_kmeans_params q = *p;
  ivf_steps st = {p->xProgress, p->pProgressCtx, 0, 0};
  float *aP;
  int rc;
  if (n < (size_t)v->nList) return ANNEX_KMEANS_TOO_FEW;
  if (p->xProgress) {
    st.nTotal = annex_ivf_train_steps(v, p->nIter);
    q.xProgress = ivf_step;
    q.pProgressCtx = &st;
  }
  if (nS > n) nS = n;
  aP = annex_malloc(nS * d * sizeof(float));
  if (nS < n) aIdx = annex_malloc(n * sizeof(size_t));
  if (aP == NULL || (nS < n && aIdx == NULL)) {
    annex_free(aP);
    annex_free(aIdx);
    return ANNEX_KMEANS_NOMEM;
  }
  if (aIdx) { /* seeded sample of nS rows (partial Fisher-Yates) */
    for (size_t i = 0; i < n; i++) aIdx[i] = i;
    for (size_t i = 0; i < nS; i++) {
      size_t j = i + (size_t)(annex_kmeans_rand(&rng) % (n - i)), t = aIdx[i];
      aIdx[i] = aIdx[j];
      aIdx[j] = t;
    }
  }
  for (size_t i = 0; i < nS; i++) {
    annex_ivf_prepare(v, aX + (aIdx ? aIdx[i] : i) * d, aP + i * d);
  }
  annex_free(aIdx);
  q.k = v->nList;
  rc = annex_kmeans_train(aP, nS, d, &q, v->aCentroid, NULL);
  if (rc == ANNEX_KMEANS_OK && v->eQuant != ANNEX_IVF_FLAT) {
    rc = ivf_train_codes(v, aP, nS, &q); /* q.k: pq sets its own */
  }
  annex_free(aP);
  return rc;
}

void annex_ivf_encode(const annex_ivf *v, const float *x, const float *xPrep,
                      int iList, float *aScratch, uint8_t *aCode) {
  const float *c = v->aCentroid + (size_t)iList * v->nDim;
  if (v->eQuant == ANNEX_IVF_FLAT) {
    memcpy(aCode, x, v->szCode);
    return;
  }
  for (size_t t = 0; t < v->nDim; t++) aScratch[t] = xPrep[t] - c[t];
  if (v->eQuant == ANNEX_IVF_SQ8) {
    annex_sq8_encode(&v->sq, aScratch, aCode);
  } else {
    annex_pq_encode(&v->pq, aScratch, aCode);
  }
}

int annex_ivf_scan_init(annex_ivf_scan *s, const annex_ivf *v,
                        const float *pQuery) {
  size_t d = v->nDim;
  size_t nTab = v->eQuant == ANNEX_IVF_PQ ? (size_t)v->pq.m * ANNEX_PQ_KSUB
                                          : d;
  size_t nQTab = ivf_has_pre(v) ? nTab : 0;
  memset(s, 0, sizeof(*s));
  annex_distance_init();
  s->pIvf = v;
  s->pQuery = pQuery;
  s->xScore = annex_distance_kernel(ANNEX_ELEM_FLOAT32, v->eMetric);
  s->aQ = annex_malloc((2 * d + nTab + nQTab) * sizeof(float));
  if (s->aQ == NULL) return ANNEX_KMEANS_NOMEM;
  s->aRes = s->aQ + d;
  s->aTab = s->aRes + d;
  s->aQTab = nQTab ? s->aTab + nTab : NULL;
  s->fScale = v->eMetric == ANNEX_METRIC_COSINE ? 0.5f : 1.0f;
  annex_ivf_prepare(v, pQuery, s->aQ);
  /* ip: q . (c + r) = q . c + q . r, so the pq table does not depend on
  ** the list; only the constant does. */
  if (v->eMetric == ANNEX_METRIC_IP && v->eQuant == ANNEX_IVF_PQ) {
    annex_pq_table(&v->pq, s->aQ, 1, s->aTab);
  }
  if (s->aQTab) { /* -2 q'.r, from the -q'.r table */
    annex_pq_table(&v->pq, s->aQ, 1, s->aQTab);
    for (size_t i = 0; i < nQTab; i++) s->aQTab[i] *= 2.0f;
  }
  return ANNEX_KMEANS_OK;
}

void annex_ivf_scan_free(annex_ivf_scan *s) {
  annex_free(s->aQ);
  memset(s, 0, sizeof(*s));
}

int annex_ivf_probe(const annex_ivf_scan *s, int nProbe, int32_t *aList) {
  const annex_ivf *v = s->pIvf;
  size_t nL = (size_t)v->nList;
  annex_metric e = v->eMetric == ANNEX_METRIC_IP ? ANNEX_METRIC_IP
                                                 : ANNEX_METRIC_L2;
  float *aScore;
  annex_hit *aHeap;
  annex_topk h;
  if (nProbe > v->nList) nProbe = v->nList;
  if (nProbe < 1) nProbe = 1;
  aScore = annex_malloc(nL * sizeof(float));
  aHeap = annex_malloc((size_t)nProbe * sizeof(annex_hit));
  if (aScore == NULL || aHeap == NULL) {
    annex_free(aScore);
    annex_free(aHeap);
    return -1;
  }
  annex_distance_many(ANNEX_ELEM_FLOAT32, e, s->aQ, v->aCentroid, nL,
                      v->nDim, aScore);
  annex_topk_init(&h, aHeap, (size_t)nProbe);
  for (size_t j = 0; j < nL; j++) {
    if (!annex_topk_rejects(&h, aScore[j], (int64_t)j)) {
      annex_topk_push(&h, aScore[j], (int64_t)j);
    }
  }
  annex_topk_sort(&h);
  for (size_t i = 0; i < h.n; i++) aList[i] = (int32_t)h.a[i].rowid;
  annex_free(aScore);
  annex_free(aHeap);
  return (int)h.n;
}

/* The precomputed table of list iList (|r|^2 + 2 c.r per codeword), made
** now if need be; NULL when out of memory or past ANNEX_IVF_PRE_MAX_BYTES
** (*pbNoMem says which). */
static const float *ivf_pre_table(annex_ivf *v, int iList, int *pbNoMem) {
  size_t nTab = (size_t)v->pq.m * ANNEX_PQ_KSUB;
  float *t;
  *pbNoMem = 0;
  if (v->apPre && v->apPre[iList]) return v->apPre[iList];
  if (v->nPreBytes + nTab * sizeof(float) > ANNEX_IVF_PRE_MAX_BYTES) {
    return NULL;
  }
  if (v->apPre == NULL) {
    v->apPre = annex_calloc((size_t)v->nList, sizeof(float *));
    if (v->apPre == NULL) {
      *pbNoMem = 1;
      return NULL;
    }
  }
  t = annex_malloc(nTab * sizeof(float));
  if (t == NULL) {
    *pbNoMem = 1;
    return NULL;
  }
  /* -c.r per codeword, then |r|^2 - 2 (-c.r) */
  annex_pq_table(&v->pq, v->aCentroid + (size_t)iList * v->nDim, 1, t);
  for (int j = 0; j < v->pq.m; j++) {
    const float *nrm = v->pq.aNorm + (size_t)j * ANNEX_PQ_KSUB;
    float *tj = t + (size_t)j * ANNEX_PQ_KSUB;
    for (size_t c = 0; c < ANNEX_PQ_KSUB; c++) tj[c] = nrm[c] - 2.0f * tj[c];
  }
  v->apPre[iList] = t;
  v->nPreBytes += nTab * sizeof(float);
  return t;
}

int annex_ivf_scan_list(annex_ivf_scan *s, int iList) {
  const annex_ivf *v = s->pIvf;
  const float *c = v->aCentroid + (size_t)iList * v->nDim;
  int bIP = v->eMetric == ANNEX_METRIC_IP;
  s->fConst = 0;
  if (v->eQuant == ANNEX_IVF_FLAT) return ANNEX_KMEANS_OK;
  if (s->aQTab) {
    int bNoMem;
    /* the tables are a cache of the codec's: filled through a query */
    const float *pre = ivf_pre_table((annex_ivf *)v, iList, &bNoMem);
    if (bNoMem) return ANNEX_KMEANS_NOMEM;
    if (pre) {
      size_t nTab = (size_t)v->pq.m * ANNEX_PQ_KSUB;
      float qc = 0;
      for (size_t t = 0; t < v->nDim; t++) {
        float e = s->aQ[t] - c[t];
        qc += e * e;
      }
      for (size_t i = 0; i < nTab; i++) s->aTab[i] = pre[i] + s->aQTab[i];
      s->fConst = s->fScale * qc;
      return ANNEX_KMEANS_OK;
    }
  }
  if (bIP) {
    float qc = 0;
    for (size_t t = 0; t < v->nDim; t++) qc += s->aQ[t] * c[t];
    s->fConst = -qc;
    if (v->eQuant == ANNEX_IVF_SQ8) {
      float k0;
      annex_sq8_prepare(&v->sq, s->aQ, 1, s->aTab, &k0);
      s->fConst -= k0;
    }
    return ANNEX_KMEANS_OK;
  }
  for (size_t t = 0; t < v->nDim; t++) s->aRes[t] = s->aQ[t] - c[t];
  if (v->eQuant == ANNEX_IVF_SQ8) {
    float k0;
    annex_sq8_prepare(&v->sq, s->aRes, 0, s->aTab, &k0);
  } else {
    annex_pq_table(&v->pq, s->aRes, 0, s->aTab);
  }
  return ANNEX_KMEANS_OK;
}

/* Approximate or exact score of one code in the current list. */
static inline float ivf_score(const annex_ivf_scan *s, const uint8_t *pCode) {
  const annex_ivf *v = s->pIvf;
  switch (v->eQuant) {
    case ANNEX_IVF_PQ:
      return s->fScale * annex_pq_adc(s->aTab, pCode, v->pq.m) + s->fConst;
    case ANNEX_IVF_SQ8:
      if (v->eMetric == ANNEX_METRIC_IP) {
        return annex_sq8_ip(&v->sq, s->aTab, 0, pCode) + s->fConst;
      }
      return s->fScale * annex_sq8_l2(&v->sq, s->aTab, pCode);
    default:
      return s->xScore(s->pQuery, pCode, v->nDim);
  }
}

void annex_ivf_scan_block(annex_ivf_scan *s, const unsigned char *aEntry,
                          size_t n, const unsigned char *aAllowed,
                          int64_t nAllowedSlots, annex_topk *h) {
  size_t sz = s->pIvf->szEntry;
  for (size_t i = 0; i < n; i++) {
    const unsigned char *e = aEntry + i * sz;
    int64_t iSlot = (int64_t)annex_ivf_get_u64(e);
    float f;
    if (aAllowed && /* a corrupt entry may name a negative slot */
        (iSlot < 0 || iSlot >= nAllowedSlots ||
         !((aAllowed[iSlot >> 3] >> (iSlot & 7)) & 1))) {
      continue;
    }
    f = ivf_score(s, e + 8);
    /* A NaN score (a corrupt code) orders neither before nor after any
    ** other: in the heap it would leave the hits out of order. Skip it;
    ** integrity-check reports the code. */
    if (f != f) continue;
    s->nScored++;
    if (!annex_topk_rejects(h, f, iSlot)) annex_topk_push(h, f, iSlot);
  }
}
