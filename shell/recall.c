/*
** recall.c — .recall TABLE QUERIES GROUNDTRUTH [K]: quality and speed of
** k-NN search on a table against exact ground truth.
**
** Owns: running every query of an .fvecs file as
**   SELECT rowid FROM TABLE WHERE COLUMN MATCH ?1 AND k = ?2
** (one prepared statement, float32 BLOB binds), scoring the rowids against
** the .ivecs ground truth of 0-based base rows (row = rowid - 1, the
** numbering .import-vectors gives), and printing recall@K (hits / (queries x
** K)), queries per second over the summed query time, and the p50 / p99
** latency (nearest rank). A progress bar runs on a terminal.
*/
#include "progress.h"
#include "shell.h"
#include "vecio.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted a[n]. */
static double percentile(const double *a, int64_t n, double p) {
  int64_t i = (int64_t)ceil(p / 100.0 * (double)n) - 1;
  if (i < 0) i = 0;
  if (i >= n) i = n - 1;
  return a[i];
}

void dot_recall(shell *sh, int nArg, char **azArg) {
  const char *zTable = azArg[1], *zQ = azArg[2], *zGt = azArg[3];
  int k = 10, dq = 0, dg = 0;
  int64_t nq = 0, ng = 0, nHit = 0;
  float *aQ = NULL;
  int32_t *aGt = NULL;
  double *aLat = NULL, tAll = 0;
  char *zErr = NULL, *zSql = NULL;
  sqlite3_stmt *pStmt = NULL;
  vcol v;
  progress pb;

  if (nArg > 4) {
    char *zEnd;
    long n = strtol(azArg[4], &zEnd, 10);
    if (*zEnd || n <= 0 || n > 1000000) {
      shell_error(sh, "k must be a positive integer, not \"%s\"", azArg[4]);
      return;
    }
    k = (int)n;
  }
  if (vcol_require(sh, zTable, NULL, &v) != 0) return;
  if (v.eElem != VCOL_FLOAT) {
    shell_error(sh, "%s.%s is %s[%d]: .recall needs a float column", zTable,
                v.zName, vcol_elem_name(v.eElem), v.nDim);
    return;
  }
  if (vecfmt_from_path(zQ) != VF_FVECS || vecfmt_from_path(zGt) != VF_IVECS) {
    shell_error(sh, "usage: .recall TABLE QUERIES.fvecs GROUNDTRUTH.ivecs [K]");
    return;
  }
  if (vecs_load(zQ, (void **)&aQ, &dq, &nq, &zErr) != 0 ||
      vecs_load(zGt, (void **)&aGt, &dg, &ng, &zErr) != 0) {
    shell_error(sh, "%s", zErr);
    sqlite3_free(zErr);
    goto done;
  }
  if (dq != v.nDim) {
    shell_error(sh, "%s has %d dimensions, %s.%s has %d", zQ, dq, zTable,
                v.zName, v.nDim);
    goto done;
  }
  if (ng != nq) {
    shell_error(sh, "%s has %lld queries, %s has %lld rows", zQ,
                (long long)nq, zGt, (long long)ng);
    goto done;
  }
  if (dg < k) {
    shell_error(sh, "%s holds %d neighbours per query, fewer than k = %d",
                zGt, dg, k);
    goto done;
  }
  if (nq == 0) {
    shell_error(sh, "%s has no queries", zQ);
    goto done;
  }
  if ((aLat = malloc(sizeof(double) * (size_t)nq)) == NULL) {
    shell_error(sh, "out of memory");
    goto done;
  }
  zSql = sqlite3_mprintf("SELECT rowid FROM \"%w\" WHERE \"%w\" MATCH ?1 "
                         "AND k = ?2", zTable, v.zName);
  if (zSql == NULL ||
      sqlite3_prepare_v2(sh->db, zSql, -1, &pStmt, NULL) != SQLITE_OK) {
    shell_error(sh, "%s", zSql ? sqlite3_errmsg(sh->db) : "out of memory");
    goto done;
  }
  progress_begin(&pb, "recall", (double)nq, "queries");
  for (int64_t q = 0; q < nq; q++) {
    const int32_t *gt = aGt + q * dg;
    double t0 = shell_now();
    int rc;
    if (shell_interrupted()) {
      progress_end(&pb);
      shell_error(sh, "interrupted after %lld queries", (long long)q);
      goto done;
    }
    sqlite3_bind_blob(pStmt, 1, aQ + q * dq, (int)(sizeof(float) * (size_t)dq),
                      SQLITE_STATIC);
    sqlite3_bind_int(pStmt, 2, k);
    while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
      int64_t id = sqlite3_column_int64(pStmt, 0) - 1;
      for (int j = 0; j < k; j++) {
        if (gt[j] == id) {
          nHit++;
          break;
        }
      }
    }
    aLat[q] = shell_now() - t0;
    tAll += aLat[q];
    sqlite3_reset(pStmt);
    if (rc != SQLITE_DONE) {
      progress_end(&pb);
      shell_error(sh, "query %lld: %s", (long long)q + 1,
                  sqlite3_errmsg(sh->db));
      goto done;
    }
    progress_step(&pb, (double)(q + 1), q + 1);
  }
  progress_end(&pb);
  qsort(aLat, (size_t)nq, sizeof(double), cmp_double);
  fprintf(sh->out,
          "recall@%d  %.4f  (%lld queries, %lld of %lld neighbours found)\n"
          "QPS        %.1f\n"
          "latency    p50 %.3f ms  p99 %.3f ms\n",
          k, (double)nHit / ((double)nq * k), (long long)nq, (long long)nHit,
          (long long)nq * k, tAll > 0 ? (double)nq / tAll : 0.0,
          1e3 * percentile(aLat, nq, 50), 1e3 * percentile(aLat, nq, 99));
done:
  sqlite3_finalize(pStmt);
  sqlite3_free(zSql);
  free(aQ);
  free(aGt);
  free(aLat);
}
