/*
** cursor.c — reading an annex table: full scans, rowid lookups and k-NN.
**
** A k-NN query runs to completion in xFilter (the exact scan produces a
** sorted array of hits); xNext walks the array. Columns other than rowid
** and distance are fetched from T_rows only when SQLite asks for them.
*/
#include "annex_int.h"
#include "ann.h"

#include <string.h>

struct annex_cursor {
  sqlite3_vtab_cursor base;   /* base class: must be first */
  int ePlan;                  /* ANNEX_PLAN_* of the current xFilter */
  int bEof;                   /* no current row */
  sqlite3_stmt *pScan;        /* full scan of T_rows (owned) */
  sqlite3_stmt *pFetch;       /* one T_rows row by rowid (owned) */
  sqlite3_stmt *pRow;         /* pScan or pFetch, positioned on the row */
  int bRowLoaded;             /* pRow holds the current row */
  annex_hit *aHit;            /* k-NN results, sorted (owned) */
  sqlite3_int64 nHit;         /* results */
  sqlite3_int64 iHit;         /* current result */
  sqlite3_int64 nSorted;      /* aHit[0..nSorted) is in final order */
  void *pVec;                 /* vector buffer, szVec bytes (owned) */
};

int annex_cursor_open(sqlite3_vtab *pVtab, sqlite3_vtab_cursor **pp) {
  annex_table *p = (annex_table *)pVtab;
  annex_cursor *c = sqlite3_malloc64(sizeof(*c));
  if (c == NULL) return SQLITE_NOMEM;
  memset(c, 0, sizeof(*c));
  c->pVec = sqlite3_malloc64(p->pConfig->szVec);
  if (c->pVec == NULL) {
    sqlite3_free(c);
    return SQLITE_NOMEM;
  }
  c->bEof = 1;
  *pp = &c->base;
  return SQLITE_OK;
}

static void cursor_reset(annex_cursor *c) {
  if (c->pScan) sqlite3_reset(c->pScan);
  if (c->pFetch) sqlite3_reset(c->pFetch);
  c->pRow = NULL;
  c->bRowLoaded = 0;
  sqlite3_free(c->aHit);
  c->aHit = NULL;
  c->nHit = c->iHit = c->nSorted = 0;
  c->bEof = 1;
}

int annex_cursor_close(sqlite3_vtab_cursor *cur) {
  annex_cursor *c = (annex_cursor *)cur;
  annex_table *p = (annex_table *)cur->pVtab;
  cursor_reset(c);
  sqlite3_finalize(c->pScan);
  sqlite3_finalize(c->pFetch);
  sqlite3_free(c->pVec);
  sqlite3_free(c);
  annex_storage_reset_blobs(p);
  return SQLITE_OK;
}

/* "SELECT rowid, slot, c... FROM T_rows" + zTail. */
static int prepare_rows(annex_table *p, const char *zTail, sqlite3_stmt **pp) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  char *zSql;
  int rc;
  sqlite3_str_appendall(s, "SELECT rowid, slot");
  for (int i = 0; i < p->pConfig->nCol; i++) {
    if (p->pConfig->aCol[i].eKind != ANNEX_COL_VECTOR) {
      sqlite3_str_appendf(s, ", c%d", i);
    }
  }
  sqlite3_str_appendf(s, " FROM \"%w\".\"%w_rows\" %s", p->zDb, p->zName,
                      zTail);
  zSql = annex_str_finish(s);
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_prepare_v3(p->db, zSql, -1, SQLITE_PREPARE_PERSISTENT, pp, 0);
  sqlite3_free(zSql);
  return rc;
}

/* Position pFetch on row iRowid. SQLITE_DONE if there is none. */
static int fetch_row(annex_cursor *c, sqlite3_int64 iRowid) {
  annex_table *p = (annex_table *)c->base.pVtab;
  int rc = SQLITE_OK;
  if (c->pFetch == NULL) rc = prepare_rows(p, "WHERE rowid=?", &c->pFetch);
  if (rc != SQLITE_OK) return rc;
  sqlite3_reset(c->pFetch);
  sqlite3_bind_int64(c->pFetch, 1, iRowid);
  rc = sqlite3_step(c->pFetch);
  if (rc == SQLITE_ROW) {
    c->pRow = c->pFetch;
    c->bRowLoaded = 1;
    return SQLITE_OK;
  }
  rc = sqlite3_reset(c->pFetch);
  return rc == SQLITE_OK ? SQLITE_DONE : rc;
}

static int filter_fullscan(annex_cursor *c) {
  annex_table *p = (annex_table *)c->base.pVtab;
  int rc = SQLITE_OK;
  if (c->pScan == NULL) rc = prepare_rows(p, "ORDER BY rowid", &c->pScan);
  if (rc != SQLITE_OK) return rc;
  c->pRow = c->pScan;
  c->bRowLoaded = 1;
  c->bEof = 0;
  return annex_cursor_next(&c->base);
}

static int filter_rowid(annex_cursor *c, sqlite3_value *pVal) {
  int rc;
  int eType = sqlite3_value_numeric_type(pVal);
  sqlite3_int64 iRowid = sqlite3_value_int64(pVal);
  if (eType == SQLITE_FLOAT) { /* rowid = 3.0 matches row 3, as in SQLite */
    double r = sqlite3_value_double(pVal);
    if (!(r >= -9223372036854775808.0 && r < 9223372036854775808.0)) {
      return SQLITE_OK;
    }
    iRowid = (sqlite3_int64)r;
    if ((double)iRowid != r) return SQLITE_OK; /* matches nothing */
  } else if (eType != SQLITE_INTEGER) {
    return SQLITE_OK; /* matches nothing */
  }
  rc = fetch_row(c, iRowid);
  if (rc == SQLITE_DONE) return SQLITE_OK;
  if (rc == SQLITE_OK) c->bEof = 0;
  return rc;
}

int annex_read_k(sqlite3_value *v, sqlite3_int64 *pk, char **pzErr) {
  int eType = sqlite3_value_type(v);
  if (eType == SQLITE_FLOAT) {
    /* An integral real counts, as it does for LIMIT: drivers such as
    ** better-sqlite3 bind every JavaScript number as a real. */
    double r = sqlite3_value_double(v);
    if (r >= 1.0 && r < 9.0e18 && r == (double)(sqlite3_int64)r) {
      *pk = (sqlite3_int64)r;
      return SQLITE_OK;
    }
  }
  if (eType != SQLITE_INTEGER || sqlite3_value_int64(v) <= 0) {
    const char *zGot = eType == SQLITE_NULL      ? "NULL"
                       : eType == SQLITE_INTEGER ? "a non-positive integer"
                       : eType == SQLITE_FLOAT   ? "a non-integral number"
                       : eType == SQLITE_TEXT    ? "text"
                                                 : "a BLOB";
    *pzErr = sqlite3_mprintf("k must be a positive integer, got %s", zGot);
    return *pzErr ? SQLITE_ERROR : SQLITE_NOMEM;
  }
  *pk = sqlite3_value_int64(v);
  return SQLITE_OK;
}

/* Gather k, LIMIT/OFFSET, radius and the query vector from argv. */
static int knn_args(annex_cursor *c, const annex_term *aTerm, int nTerm,
                    sqlite3_value **argv, annex_knn_query *q, int *pbEmpty) {
  annex_table *p = (annex_table *)c->base.pVtab;
  const annex_config *cfg = p->pConfig;
  sqlite3_int64 nLimit = -1, nOffset = 0;
  int rc = SQLITE_OK, bLimit = 0;
  q->eDevice = cfg->eDevice;
  for (int i = 0; i < nTerm && rc == SQLITE_OK; i++) {
    sqlite3_value *v = argv[i];
    switch (aTerm[i].cOp) {
      case 'M': {
        char *zErr = NULL;
        rc = annex_vector_parse(v, cfg->eElem, cfg->nDim,
                                cfg->aCol[cfg->iVecCol].zName, c->pVec, &zErr);
        if (rc == SQLITE_ERROR) annex_set_error(&p->base, "%s", zErr);
        sqlite3_free(zErr);
        break;
      }
      case 'K': {
        char *zErr = NULL;
        rc = annex_read_k(v, &q->k, &zErr);
        if (rc == SQLITE_ERROR) annex_set_error(&p->base, "%s", zErr);
        sqlite3_free(zErr);
        break;
      }
      case 'N': {
        char *zErr = NULL;
        rc = annex_read_k(v, &q->nKnob, &zErr);
        if (rc == SQLITE_ERROR) {
          /* annex_read_k's message names k: name the knob instead. */
          annex_set_error(&p->base, "%s must be a positive integer",
                          cfg->pAnnOps->zKnob);
        }
        sqlite3_free(zErr);
        break;
      }
      case 'V':
        if (annex_device_parse((const char *)sqlite3_value_text(v),
                               &q->eDevice) != 0) {
          annex_set_error(&p->base, "device must be 'auto', 'cpu' or 'gpu'");
          return SQLITE_ERROR;
        }
        break;
      case 'L': bLimit = 1; nLimit = sqlite3_value_int64(v); break;
      case 'F': nOffset = sqlite3_value_int64(v); break;
      case 'D': case 'E': {
        int eType = sqlite3_value_numeric_type(v);
        if (eType != SQLITE_INTEGER && eType != SQLITE_FLOAT) {
          annex_set_error(&p->base, "distance bound must be a number");
          return SQLITE_ERROR;
        }
        q->bRadius = 1;
        q->rRadius = sqlite3_value_double(v);
        q->bRadiusInclusive = aTerm[i].cOp == 'E';
        break;
      }
    }
  }
  if (rc == SQLITE_OK && q->k == 0 && bLimit) {
    if (nLimit == 0) *pbEmpty = 1;
    else if (nLimit > 0) q->k = nLimit + (nOffset > 0 ? nOffset : 0);
    else if (!q->bRadius) q->k = ((sqlite3_int64)1) << 62; /* LIMIT -1 */
  }
  q->pQuery = c->pVec;
  return rc;
}

/* Unbounded results are put in order a batch at a time, doubling. */
static void sort_more(annex_cursor *c) {
  sqlite3_int64 nBatch;
  if (c->iHit < c->nSorted || c->nSorted >= c->nHit) return;
  nBatch = c->nSorted < 32 ? 32 : c->nSorted;
  annex_hits_select(c->aHit, (size_t)c->nHit, (size_t)c->nSorted,
                    (size_t)nBatch);
  c->nSorted += nBatch;
  if (c->nSorted > c->nHit) c->nSorted = c->nHit;
}

/* Turn the ANN index's (score, slot) hits into (score, rowid) hits of live
** rows, in (score, rowid) order. */
static int ann_hits_to_rows(annex_table *p, annex_hit *a, sqlite3_int64 *pn) {
  sqlite3_int64 n = 0;
  for (sqlite3_int64 i = 0; i < *pn; i++) {
    sqlite3_int64 iRowid;
    int bLive = 0;
    int rc = annex_storage_slot_info(p, a[i].rowid, &iRowid, &bLive);
    if (rc == SQLITE_DONE) bLive = 0;
    else if (rc != SQLITE_OK) return rc;
    if (!bLive) return SQLITE_CORRUPT_VTAB; /* the index lost a delete */
    a[n].score = a[i].score;
    a[n++].rowid = iRowid;
  }
  annex_hits_sort(a, (size_t)n);
  *pn = n;
  return SQLITE_OK;
}

/* Ask the ANN index. ANNEX_ANN_EXACT when the exact scan must answer: the
** index says so, or it found fewer than k rows although more match. */
static int knn_ann(annex_cursor *c, const annex_knn_query *q,
                   const annex_term *aTerm, int nTerm, sqlite3_value **argv) {
  annex_table *p = (annex_table *)c->base.pVtab;
  annex_ann_query aq;
  unsigned char *aAllowed = NULL;
  int rc = SQLITE_OK;
  memset(&aq, 0, sizeof(aq));
  aq.pQuery = q->pQuery;
  aq.k = q->k;
  aq.nKnob = q->nKnob;
  aq.eDevice = q->eDevice;
  for (int i = 0; i < nTerm; i++) {
    char op = aTerm[i].cOp;
    if ((op >= 'a' && op <= 'k') || op == 'P' || op == 'Q') {
      rc = annex_filter_build(p, aTerm, nTerm, argv, &aAllowed,
                              &aq.nAllowedSlots, &aq.nAllowed);
      break;
    }
  }
  aq.aAllowed = aAllowed;
  if (rc == SQLITE_OK) {
    rc = p->pAnn->pOps->xSearch(p->pAnn, &aq, &c->aHit, &c->nHit);
  }
  if (rc == SQLITE_OK && p->pAnn->pOps->xRowids) {
    rc = p->pAnn->pOps->xRowids(p->pAnn, c->aHit, c->nHit);
    if (rc == SQLITE_OK) annex_hits_sort(c->aHit, (size_t)c->nHit);
  } else if (rc == SQLITE_OK) {
    rc = ann_hits_to_rows(p, c->aHit, &c->nHit);
  }
  if (rc == SQLITE_OK && aAllowed && c->nHit < q->k && c->nHit < aq.nAllowed) {
    rc = ANNEX_ANN_EXACT;
  }
  if (rc != SQLITE_OK) {
    sqlite3_free(c->aHit);
    c->aHit = NULL;
    c->nHit = 0;
  }
  sqlite3_free(aAllowed);
  return rc;
}

/* The GPU answers if it can (gpu.c); ANNEX_GPU_USE_CPU if not. */
static int knn_gpu(annex_cursor *c, const annex_knn_query *q,
                   const annex_term *aTerm, int nTerm, sqlite3_value **argv) {
  annex_table *p = (annex_table *)c->base.pVtab;
  char *zErr = NULL;
  int rc = annex_gpu_knn(p, q->eDevice, q, aTerm, nTerm, argv, &c->aHit,
                         &c->nHit, &zErr);
  if (zErr) annex_set_error(&p->base, "%s", zErr);
  sqlite3_free(zErr);
  return rc;
}

static int filter_knn(annex_cursor *c, const annex_term *aTerm, int nTerm,
                      sqlite3_value **argv) {
  annex_table *p = (annex_table *)c->base.pVtab;
  annex_knn_query q;
  unsigned char *aAllowed = NULL;
  int bEmpty = 0;
  int rc;
  annex_mfilter *pFilter = NULL;
  memset(&q, 0, sizeof(q));
  rc = knn_args(c, aTerm, nTerm, argv, &q, &bEmpty);
  if (rc != SQLITE_OK || bEmpty) return rc;
  /* An ANN index answers k-NN with a k; radius and unbounded queries, and
  ** whatever the index declines, take the exact scan. */
  if (p->pAnn && q.k > 0 && !q.bRadius && q.k <= ANNEX_ANN_MAX_K &&
      q.eDevice != ANNEX_DEVICE_GPU) {
    rc = knn_ann(c, &q, aTerm, nTerm, argv);
    if (rc != ANNEX_ANN_EXACT) goto done;
  }
  /* The exact k-NN on the GPU (device=gpu skips the ANN index). */
  rc = knn_gpu(c, &q, aTerm, nTerm, argv);
  if (rc != ANNEX_GPU_USE_CPU) goto done;
  /* Filters run on the chunks' compact metadata when they can; otherwise
  ** (or when a chunk holds a value that needs its bytes) through SQL. */
  rc = annex_filter_compile(p, aTerm, nTerm, argv, &pFilter);
  if (rc == SQLITE_OK && pFilter) {
    q.pFilter = pFilter;
    rc = annex_knn_exact(p, &q, &c->aHit, &c->nHit);
    annex_filter_free(pFilter);
    q.pFilter = NULL;
    if (rc != ANNEX_NEED_SQL_FILTER) goto done;
  }
  rc = annex_filter_build(p, aTerm, nTerm, argv, &aAllowed, &q.nAllowedSlots,
                          &q.nAllowed);
  q.aAllowed = aAllowed;
  if (rc == SQLITE_OK) rc = annex_knn_exact(p, &q, &c->aHit, &c->nHit);
  sqlite3_free(aAllowed);
done:
  if (rc == SQLITE_OK) {
    c->nSorted = q.k > 0 ? c->nHit : 0;
    c->bEof = c->nHit == 0;
    sort_more(c);
  }
  return rc;
}

int annex_cursor_filter(sqlite3_vtab_cursor *cur, int idxNum,
                        const char *idxStr, int argc, sqlite3_value **argv) {
  annex_cursor *c = (annex_cursor *)cur;
  annex_term *aTerm = NULL;
  int nTerm = 0, rc;
  cursor_reset(c);
  c->ePlan = idxNum;
  rc = annex_plan_decode(idxStr, &aTerm, &nTerm);
  if (rc == SQLITE_OK && nTerm != argc) rc = SQLITE_INTERNAL;
  if (rc == SQLITE_OK) {
    switch (idxNum) {
      case ANNEX_PLAN_FULLSCAN: rc = filter_fullscan(c); break;
      case ANNEX_PLAN_ROWID: rc = filter_rowid(c, argv[0]); break;
      case ANNEX_PLAN_KNN: rc = filter_knn(c, aTerm, nTerm, argv); break;
      default: rc = SQLITE_INTERNAL;
    }
  }
  sqlite3_free(aTerm);
  return rc;
}

int annex_cursor_next(sqlite3_vtab_cursor *cur) {
  annex_cursor *c = (annex_cursor *)cur;
  int rc;
  if (c->ePlan == ANNEX_PLAN_KNN) {
    c->iHit++;
    c->bRowLoaded = 0;
    c->bEof = c->iHit >= c->nHit;
    sort_more(c);
    return SQLITE_OK;
  }
  if (c->ePlan == ANNEX_PLAN_ROWID) {
    c->bEof = 1;
    return SQLITE_OK;
  }
  rc = sqlite3_step(c->pScan);
  if (rc == SQLITE_ROW) return SQLITE_OK;
  c->bEof = 1;
  return sqlite3_reset(c->pScan);
}

int annex_cursor_eof(sqlite3_vtab_cursor *cur) {
  return ((annex_cursor *)cur)->bEof;
}

int annex_cursor_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *pRowid) {
  annex_cursor *c = (annex_cursor *)cur;
  if (c->ePlan == ANNEX_PLAN_KNN) *pRowid = c->aHit[c->iHit].rowid;
  else *pRowid = sqlite3_column_int64(c->pRow, 0);
  return SQLITE_OK;
}

/* Make sure pRow holds the current row (k-NN hits fetch it lazily). */
static int load_row(annex_cursor *c) {
  int rc;
  if (c->bRowLoaded) return SQLITE_OK;
  rc = fetch_row(c, c->aHit[c->iHit].rowid);
  return rc == SQLITE_DONE ? SQLITE_CORRUPT_VTAB : rc;
}

static int column_vector(annex_cursor *c, sqlite3_context *ctx) {
  annex_table *p = (annex_table *)c->base.pVtab;
  int rc = load_row(c);
  if (rc == SQLITE_OK) {
    sqlite3_int64 iSlot = sqlite3_column_int64(c->pRow, 1);
    rc = annex_storage_read_vector(p, iSlot, c->pVec);
  }
  if (rc == SQLITE_OK) {
    sqlite3_result_blob(ctx, c->pVec, (int)p->pConfig->szVec,
                        SQLITE_TRANSIENT);
  }
  return rc;
}

int annex_cursor_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  annex_cursor *c = (annex_cursor *)cur;
  annex_table *p = (annex_table *)cur->pVtab;
  const annex_config *cfg = p->pConfig;
  int rc;
  if (i == p->iHiddenBase + ANNEX_HID_DISTANCE) {
    /* An UPDATE through a k-NN query must not see the distance as a value
    ** written to the column. */
    if (c->ePlan == ANNEX_PLAN_KNN && !sqlite3_vtab_nochange(ctx)) {
      sqlite3_result_double(ctx, annex_score_to_distance(
                                     cfg->eMetric, c->aHit[c->iHit].score));
    }
    return SQLITE_OK;
  }
  if (i >= cfg->nCol) return SQLITE_OK; /* k and the command column */
  if (i == cfg->iVecCol) {
    /* An UPDATE that does not change the vector need not read it. */
    if (sqlite3_vtab_nochange(ctx)) return SQLITE_OK;
    return column_vector(c, ctx);
  }
  rc = load_row(c);
  if (rc == SQLITE_OK) {
    int iStmtCol = 2 + i - (i > cfg->iVecCol ? 1 : 0);
    sqlite3_result_value(ctx, sqlite3_column_value(c->pRow, iStmtCol));
  }
  return rc;
}
