/*
** hnsw_pair.c — A/B two builds of annex.so on one database, in one process.
**
**   hnsw_pair --a A.so --b B.so --data DIR --db FILE [--ef 32] [--k 10]
**             [--pairs 20] [--table t] [--column embedding]
**             [--b-db FILE] [--b-sql SQL] [--b-entry NAME] [--warm 0]
**
** Opens FILE twice, one connection per build (each build is its own
** shared object with only its entry points exported, so the two live side
** by side), runs a first pass on each (it loads the graph), then runs full
** passes over DIR/query.fvecs in ABBA order: A B, B A, A B, ... Every pair
** of neighbouring passes meets the same state of the machine, so a drift
** in memory bandwidth (these machines are shared: the same binary moves by
** 20% from one minute to the next) hits both builds alike. Prints per
** pair the two QPS and B/A, then the median of B/A and its quartiles, and
** each build's recall@k against DIR/groundtruth.ivecs (exact) on its last
** pass: the second number says whether B answers as well as A.
**
** Separate runs of the two builds cannot resolve a few percent here;
** this can (bench/README.md, "Paired A/B").
**
** --warm W runs W untimed passes of a side before each timed one. Two
** builds of annex share their graph's working set; annex against another
** extension does not, and a 50 ms pass that follows the other system's
** pass starts with caches full of the other's data, which costs the
** faster side the larger share of its pass: --warm 1 times each side
** warm, as the sequential benchmark does.
**
** Side B may be another SQLite extension on its own database: --b-sql is
** its query (?1 the float32 query blob; k and ef written into it), --b-db
** its file and --b-entry its entry point ("" lets SQLite derive it from
** the file name). bench/hnsw_run.sh's vectorlite side, for instance:
**   --b vectorlite.so --b-entry "" --b-db vl.db --b-sql "SELECT rowid FROM
**   t WHERE knn_search(emb, knn_param(?1, 10, 32))"
*/
#include "bench_data.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct popts {
  const char *azSo[2], *zData, *zDb, *zTable, *zColumn;
  const char *zDbB, *zSqlB, *zEntryB; /* side B's overrides, or NULL */
  int ef, k, nPairs, nWarm;
} popts;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(void) {
  fprintf(stderr,
          "usage: hnsw_pair --a A.so --b B.so --data DIR --db FILE [--ef 32]"
          "\n  [--k 10] [--pairs 20] [--table t] [--column embedding]"
          "\n  [--b-db FILE] [--b-sql SQL] [--b-entry NAME] [--warm 0]\n");
  exit(2);
}

static void parse_opts(popts *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) usage();
    if (strcmp(a, "--a") == 0) o->azSo[0] = v;
    else if (strcmp(a, "--b") == 0) o->azSo[1] = v;
    else if (strcmp(a, "--data") == 0) o->zData = v;
    else if (strcmp(a, "--db") == 0) o->zDb = v;
    else if (strcmp(a, "--table") == 0) o->zTable = v;
    else if (strcmp(a, "--column") == 0) o->zColumn = v;
    else if (strcmp(a, "--ef") == 0) o->ef = atoi(v);
    else if (strcmp(a, "--k") == 0) o->k = atoi(v);
    else if (strcmp(a, "--pairs") == 0) o->nPairs = atoi(v);
    else if (strcmp(a, "--b-db") == 0) o->zDbB = v;
    else if (strcmp(a, "--b-sql") == 0) o->zSqlB = v;
    else if (strcmp(a, "--b-entry") == 0) o->zEntryB = v;
    else if (strcmp(a, "--warm") == 0) o->nWarm = atoi(v);
    else usage();
    i++;
  }
  if (!o->azSo[0] || !o->azSo[1] || !o->zData || !o->zDb || o->ef < 1 ||
      o->k < 1 || o->nPairs < 1 || o->nWarm < 0) {
    usage();
  }
}

/* One connection for side b (0: A, 1: B) with its build loaded, and its
** query. */
static sqlite3_stmt *open_build(const popts *o, int b, sqlite3 **pDb) {
  const char *zDb = b && o->zDbB ? o->zDbB : o->zDb;
  const char *zEntry = b && o->zEntryB ? o->zEntryB : "sqlite3_annex_init";
  sqlite3_stmt *s = NULL;
  char *zErr = NULL, *zSql;
  if (sqlite3_open_v2(zDb, pDb, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
    bench_die("cannot open %s: %s", zDb, sqlite3_errmsg(*pDb));
  sqlite3_enable_load_extension(*pDb, 1);
  if (sqlite3_load_extension(*pDb, o->azSo[b], zEntry[0] ? zEntry : NULL,
                             &zErr) != SQLITE_OK)
    bench_die("cannot load %s: %s", o->azSo[b], zErr ? zErr : "?");
  if (b && o->zSqlB) {
    zSql = sqlite3_mprintf("%s", o->zSqlB);
  } else {
    zSql = sqlite3_mprintf("SELECT rowid FROM \"%w\" WHERE \"%w\" MATCH ?1 "
                           "AND k = %d AND ef_search = %d",
                           o->zTable, o->zColumn, o->k, o->ef);
  }
  if (sqlite3_prepare_v2(*pDb, zSql, -1, &s, NULL) != SQLITE_OK)
    bench_die("%s: %s", zSql, sqlite3_errmsg(*pDb));
  sqlite3_free(zSql);
  return s;
}

/* One pass over every query; ids (rowid - 1, -1 pads) into aIds. QPS. */
static double run_pass(sqlite3 *db, sqlite3_stmt *s, const bench_vecs *qs,
                       int k, int32_t *aIds) {
  double t0 = now_s();
  for (int q = 0; q < qs->n; q++) {
    int n = 0;
    sqlite3_bind_blob(s, 1, bench_vecs_frow(qs, q), qs->dim * 4,
                      SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
      if (n < k) {
        aIds[(size_t)q * k + n++] = (int32_t)(sqlite3_column_int64(s, 0) - 1);
      }
    }
    if (sqlite3_reset(s) != SQLITE_OK) bench_die("query: %s", sqlite3_errmsg(db));
    for (; n < k; n++) aIds[(size_t)q * k + n] = -1;
  }
  return qs->n / (now_s() - t0);
}

static double recall(const bench_vecs *gt, const int32_t *aIds, int nq, int k) {
  long hit = 0;
  for (int q = 0; q < nq; q++) {
    const int32_t *g = bench_vecs_irow(gt, q);
    for (int i = 0; i < k; i++) {
      for (int j = 0; j < k; j++) hit += aIds[(size_t)q * k + i] == g[j];
    }
  }
  return (double)hit / ((double)nq * k);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  popts o = {{NULL, NULL}, NULL, NULL, "t", "embedding", NULL, NULL, NULL,
             32, 10, 20, 0};
  char zPath[1100];
  bench_vecs qs, gt;
  sqlite3 *aDb[2];
  sqlite3_stmt *aStmt[2];
  int32_t *aIds[2];
  double *aRatio, aQps[2];
  parse_opts(&o, argc, argv);
  snprintf(zPath, sizeof(zPath), "%s/query.fvecs", o.zData);
  bench_vecs_read(zPath, 0, &qs);
  snprintf(zPath, sizeof(zPath), "%s/groundtruth.ivecs", o.zData);
  bench_vecs_read(zPath, qs.n, &gt);
  if (gt.n < qs.n || gt.dim < o.k) bench_die("ground truth too small");
  aRatio = malloc(sizeof(double) * (size_t)o.nPairs);
  for (int b = 0; b < 2; b++) {
    aIds[b] = malloc(sizeof(int32_t) * (size_t)qs.n * o.k);
    if (!aIds[b] || !aRatio) bench_die("out of memory");
    aStmt[b] = open_build(&o, b, &aDb[b]);
    printf("WARM build=%c qps=%.1f (loads the graph)\n", 'A' + b,
           run_pass(aDb[b], aStmt[b], &qs, o.k, aIds[b]));
  }
  for (int p = 0; p < o.nPairs; p++) {
    int first = p & 1; /* ABBA: B leads every other pair */
    for (int i = 0; i < 2; i++) {
      int b = first ^ i;
      for (int w = 0; w < o.nWarm; w++) {
        run_pass(aDb[b], aStmt[b], &qs, o.k, aIds[b]);
      }
      aQps[b] = run_pass(aDb[b], aStmt[b], &qs, o.k, aIds[b]);
    }
    aRatio[p] = aQps[1] / aQps[0];
    printf("PAIR %d qps_a=%.1f qps_b=%.1f b_over_a=%.4f\n", p + 1, aQps[0],
           aQps[1], aRatio[p]);
  }
  qsort(aRatio, (size_t)o.nPairs, sizeof(double), cmp_double);
  printf("RESULT ef=%d pairs=%d b_over_a_median=%.4f q1=%.4f q3=%.4f "
         "recall_a=%.4f recall_b=%.4f\n",
         o.ef, o.nPairs, aRatio[o.nPairs / 2], aRatio[o.nPairs / 4],
         aRatio[(3 * o.nPairs) / 4], recall(&gt, aIds[0], qs.n, o.k),
         recall(&gt, aIds[1], qs.n, o.k));
  for (int b = 0; b < 2; b++) {
    sqlite3_finalize(aStmt[b]);
    sqlite3_close(aDb[b]);
    free(aIds[b]);
  }
  free(aRatio);
  bench_vecs_free(&qs);
  bench_vecs_free(&gt);
  return 0;
}
