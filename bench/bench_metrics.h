/*
** bench_metrics.h — what annex_bench computes from the returned rows:
** recall@k against exact ground truth, sanity checks of every result
** (count, order, rowids, returned distance vs. the true one), and the
** order statistics of the latencies.
*/
#ifndef BENCH_METRICS_H
#define BENCH_METRICS_H

#include "bench_data.h"

#include <stdint.h>

/* Accumulated checks over the queries of one repeat. */
typedef struct bench_check {
  int nQueries;        /* queries checked */
  int64_t hitsIds;     /* returned ids that are in the true top-k (ids) */
  int64_t hitsTie;     /* returned ids whose true distance <= k-th true one */
  int64_t nWrongCount; /* queries that returned a number of rows != k */
  int64_t nBadRowid;   /* returned rowids that are not a base row */
  int64_t nDup;        /* rowids returned twice by one query */
  int64_t nUnsorted;   /* adjacent result pairs out of distance order */
  int64_t nDistWrong;  /* returned distances off the true one by > 1e-3 rel. */
  double maxAbsErr;    /* largest |returned - true distance| */
  double maxRelErr;    /* largest |returned - true| / true (true > 0) */
} bench_check;

/* One query's result, as returned through SQL. */
typedef struct bench_answer {
  const int64_t *aRowid; /* rowids, in returned order */
  const double *aDist;   /* the "distance" column of each row */
  int n;                 /* rows returned */
} bench_answer;

/* Ground truth of one query: ids (0-based base rows) and optional dists. */
typedef struct bench_truth {
  const int32_t *aId; /* true top-kGt ids, nearest first */
  const float *aDist; /* matching Euclidean distances, or NULL */
} bench_truth;

/* Euclidean distance in double precision. */
double bench_l2(const float *a, const float *b, int dim);

/* Check one answer to query q (rowid = base row + 1) and add to *c. */
void bench_check_query(bench_check *c, bench_base *base, const float *q,
                       const bench_answer *ans, const bench_truth *gt, int k);

/* Nearest-rank percentile p in [0,1] of a sorted array of n > 0 values. */
double bench_percentile(const double *sorted, int n, double p);

/* Median of n > 0 values; sorts a in place. */
double bench_median(double *a, int n);

/* Sort n doubles ascending. */
void bench_sort(double *a, int n);

#endif /* BENCH_METRICS_H */
