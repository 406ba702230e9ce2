/*
** bench_metrics.c — recall, result checks and latency statistics for
** annex_bench.
**
** Rowids: the driver inserts base row i (0-based, file order) as rowid i+1;
** a returned rowid r is base row r-1. True distances of returned rows are
** recomputed here in double from the base file, so the tie-tolerant recall
** and the distance check do not trust the system under test.
*/
#include "bench_metrics.h"

#include <math.h>
#include <stdlib.h>

/* A returned id is a tie-tolerant hit up to this relative slack over the
** k-th true distance, which ground truth stores rounded to float32. */
#define TIE_REL_SLACK 1e-6
/* A returned distance this far (relative) from the true one is wrong. */
#define DIST_REL_TOL 1e-3

double bench_l2(const float *a, const float *b, int dim) {
  double s = 0.0;
  for (int i = 0; i < dim; i++) {
    double d = (double)a[i] - (double)b[i];
    s += d * d;
  }
  return sqrt(s);
}

static int in_true_topk(const bench_truth *gt, int k, int64_t row) {
  for (int i = 0; i < k; i++) {
    if (gt->aId[i] == row) return 1;
  }
  return 0;
}

static int seen_before(const bench_answer *ans, int j) {
  for (int i = 0; i < j; i++) {
    if (ans->aRowid[i] == ans->aRowid[j]) return 1;
  }
  return 0;
}

/* Compare a returned distance with the recomputed one. */
static void check_distance(bench_check *c, double got, double want) {
  double abs = fabs(got - want);
  double rel = want > 0 ? abs / want : (abs > 0 ? INFINITY : 0.0);
  if (abs > c->maxAbsErr) c->maxAbsErr = abs;
  if (want > 0 && rel > c->maxRelErr) c->maxRelErr = rel;
  if (rel > DIST_REL_TOL && abs > 1e-9) c->nDistWrong++;
}

/* Checks and hits of the j-th returned row. */
static void check_row(bench_check *c, bench_base *base, const float *q,
                      const bench_answer *ans, int j, const bench_truth *gt,
                      int k) {
  int64_t row = ans->aRowid[j] - 1;
  double d;
  if (j > 0 && ans->aDist[j] < ans->aDist[j - 1]) c->nUnsorted++;
  if (row < 0 || row >= base->n) {
    c->nBadRowid++;
    return;
  }
  if (seen_before(ans, j)) {
    c->nDup++;
    return;
  }
  d = bench_l2(q, bench_base_row(base, row), base->dim);
  check_distance(c, ans->aDist[j], d);
  if (j >= k) return;
  if (in_true_topk(gt, k, row)) c->hitsIds++;
  if (gt->aDist && d <= (double)gt->aDist[k - 1] * (1.0 + TIE_REL_SLACK)) {
    c->hitsTie++;
  }
}

void bench_check_query(bench_check *c, bench_base *base, const float *q,
                       const bench_answer *ans, const bench_truth *gt, int k) {
  c->nQueries++;
  if (ans->n != k) c->nWrongCount++;
  for (int j = 0; j < ans->n; j++) check_row(c, base, q, ans, j, gt, k);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void bench_sort(double *a, int n) {
  qsort(a, (size_t)n, sizeof(*a), cmp_double);
}

double bench_percentile(const double *sorted, int n, double p) {
  int rank = (int)ceil(p * n);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

double bench_median(double *a, int n) {
  bench_sort(a, n);
  return n % 2 ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2]);
}
