/*
** hnsw_core.c — the HNSW graph core alone, without SQL: where a query's
** time goes when the statement, the vtab and the page cache are out of the
** way, and what a change to the walk or the memory layout does to it.
**
**   hnsw_core --db FILE --data DIR [--table t] [--ef 32] [--k 10]
**             [--passes 5] [--layout slot|bfs] [--accept 0|1] [--codes 1]
**
** Reads the graph records of an index=hnsw table (T_hnsw, T_config) from a
** database built by `hnsw_annex build` (rowid = base row + 1, so slot =
** base row: checked on T_rows), the vectors from DIR/base.fvecs, puts every
** node into a graph (annex_hnsw_put, in id order), and times
** annex_hnsw_search over DIR/query.fvecs, one query at a time:
**   --layout bfs   calls annex_hnsw_reorder first (what the glue does once
**                  the graph is in memory); slot keeps the id order
**   --accept 1     passes an all-ones accept bitmap by id, as a table with
**                  tombstones does
** Prints one line per pass: QPS and recall@k against DIR/groundtruth.ivecs
** (by ids), and the time the reorder took. Float32 l2 / ip / cosine
** tables; M and ef_construction from T_config; --codes 0 walks the floats
** as hnsw(codes=0) does (the first pass fits the code ranges).
*/
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_data.h"
#include "index/hnsw.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* T_config's value for key as text into zOut ("" when absent). */
static const char *config_text(sqlite3 *db, const char *zTab,
                               const char *zKey, char *zOut, size_t n) {
  sqlite3_stmt *s = NULL;
  char *zSql = sqlite3_mprintf("SELECT value FROM \"%w_config\" WHERE key=?",
                               zTab);
  zOut[0] = 0;
  if (sqlite3_prepare_v2(db, zSql, -1, &s, NULL) != SQLITE_OK) {
    bench_die("%s", sqlite3_errmsg(db));
  }
  sqlite3_free(zSql);
  sqlite3_bind_text(s, 1, zKey, -1, SQLITE_STATIC);
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0)) {
    snprintf(zOut, n, "%s", (const char *)sqlite3_column_text(s, 0));
  }
  sqlite3_finalize(s);
  return zOut;
}

/* The same as an integer (dflt when absent). */
static sqlite3_int64 config_int(sqlite3 *db, const char *zTab,
                                const char *zKey, sqlite3_int64 dflt) {
  char z[32];
  return config_text(db, zTab, zKey, z, sizeof z)[0] ? strtoll(z, NULL, 10)
                                                      : dflt;
}

/* A new graph with the table's parameters. */
static annex_hnsw *open_graph(sqlite3 *db, const char *zTab, int dim,
                              int bCodes) {
  annex_hnsw_params p;
  annex_hnsw *g = NULL;
  char zMetric[32], zElem[32];
  memset(&p, 0, sizeof p);
  config_text(db, zTab, "element", zElem, sizeof zElem);
  config_text(db, zTab, "metric", zMetric, sizeof zMetric);
  if (strcmp(zElem, "float") != 0) bench_die("only float tables (%s)", zElem);
  p.eElem = ANNEX_ELEM_FLOAT32;
  p.eMetric = strcmp(zMetric, "l2") == 0   ? ANNEX_METRIC_L2
              : strcmp(zMetric, "ip") == 0 ? ANNEX_METRIC_IP
              : strcmp(zMetric, "cosine") == 0
                  ? ANNEX_METRIC_COSINE
                  : (bench_die("metric %s", zMetric), ANNEX_METRIC_L2);
  p.nDim = (size_t)dim;
  p.M = (int)config_int(db, zTab, "hnsw_m", 16);
  p.efConstruction = (int)config_int(db, zTab, "hnsw_ef_construction", 200);
  p.bExact = !bCodes;
  if (config_int(db, zTab, "dims", 0) != dim) {
    bench_die("the table has %lld dims, the data %d",
              config_int(db, zTab, "dims", 0), dim);
  }
  if (annex_hnsw_new(&p, &g) != ANNEX_HNSW_OK) bench_die("annex_hnsw_new");
  return g;
}

/* Every record of T_hnsw into g, with its vector (slot = base row). */
static void load_graph(sqlite3 *db, const char *zTab, bench_base *b,
                       annex_hnsw *g) {
  sqlite3_stmt *s = NULL;
  char *zSql = sqlite3_mprintf(
      "SELECT count(*) FROM \"%w_rows\" WHERE slot != rowid - 1", zTab);
  if (sqlite3_prepare_v2(db, zSql, -1, &s, NULL) != SQLITE_OK ||
      sqlite3_step(s) != SQLITE_ROW || sqlite3_column_int64(s, 0) != 0) {
    bench_die("%s: slots are not base rows (build it with hnsw_annex)", zTab);
  }
  sqlite3_finalize(s);
  sqlite3_free(zSql);
  if (annex_hnsw_reserve(g, (uint32_t)b->n) != ANNEX_HNSW_OK) {
    bench_die("out of memory");
  }
  zSql = sqlite3_mprintf("SELECT id, node FROM \"%w_hnsw\" ORDER BY id", zTab);
  if (sqlite3_prepare_v2(db, zSql, -1, &s, NULL) != SQLITE_OK) {
    bench_die("%s", sqlite3_errmsg(db));
  }
  sqlite3_free(zSql);
  while (sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    const unsigned char *a = sqlite3_column_blob(s, 1);
    int n = sqlite3_column_bytes(s, 1);
    if (id < 0 || id >= b->n) bench_die("node %lld has no base row", id);
    if (annex_hnsw_put(g, (uint32_t)id, a, (size_t)n,
                       bench_base_row(b, id)) != ANNEX_HNSW_OK) {
      bench_die("node %lld: record does not load", id);
    }
  }
  sqlite3_finalize(s);
  annex_hnsw_set_entry(g, config_int(db, zTab, "hnsw_entry", -1),
                       (int)config_int(db, zTab, "hnsw_levels", 0));
}

int main(int argc, char **argv) {
  const char *zDb = NULL, *zData = NULL, *zTab = "t", *zLayout = "bfs";
  int ef = 32, k = 10, nPass = 5, bAccept = 0, bCodes = 1;
  char zPath[1024];
  bench_base base;
  bench_vecs q, gt;
  sqlite3 *db = NULL;
  annex_hnsw *g;
  unsigned char *aAcc = NULL;
  annex_hit *aHit;
  double t0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--db")) zDb = argv[i + 1];
    else if (!strcmp(argv[i], "--data")) zData = argv[i + 1];
    else if (!strcmp(argv[i], "--table")) zTab = argv[i + 1];
    else if (!strcmp(argv[i], "--ef")) ef = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--k")) k = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--passes")) nPass = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--layout")) zLayout = argv[i + 1];
    else if (!strcmp(argv[i], "--accept")) bAccept = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--codes")) bCodes = atoi(argv[i + 1]);
    else bench_die("unknown option %s", argv[i]);
  }
  if (!zDb || !zData || k < 1 || ef < 1 || nPass < 1 ||
      (strcmp(zLayout, "bfs") && strcmp(zLayout, "slot"))) {
    fprintf(stderr,
            "usage: hnsw_core --db FILE --data DIR [--table t] [--ef 32] "
            "[--k 10] [--passes 5] [--layout slot|bfs] [--accept 0|1] "
            "[--codes 1]\n");
    return 2;
  }
  snprintf(zPath, sizeof zPath, "%s/base.fvecs", zData);
  bench_base_open(zPath, &base);
  snprintf(zPath, sizeof zPath, "%s/query.fvecs", zData);
  bench_vecs_read(zPath, 0, &q);
  snprintf(zPath, sizeof zPath, "%s/groundtruth.ivecs", zData);
  bench_vecs_read(zPath, 0, &gt);
  if (gt.dim < k || gt.n < q.n) bench_die("ground truth too short for k");
  if (sqlite3_open_v2(zDb, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    bench_die("%s: %s", zDb, sqlite3_errmsg(db));
  }
  g = open_graph(db, zTab, base.dim, bCodes);
  t0 = now_s();
  load_graph(db, zTab, &base, g);
  printf("LOAD nodes=%zu s=%.2f\n", annex_hnsw_count(g), now_s() - t0);
  if (!strcmp(zLayout, "bfs")) {
    t0 = now_s();
    if (annex_hnsw_reorder(g) != ANNEX_HNSW_OK) bench_die("reorder: no memory");
    printf("REORDER s=%.3f\n", now_s() - t0);
  }
  if (bAccept) {
    aAcc = malloc((size_t)(base.n + 7) / 8);
    if (aAcc == NULL) bench_die("out of memory");
    memset(aAcc, 0xff, (size_t)(base.n + 7) / 8);
  }
  aHit = malloc(sizeof(annex_hit) * (size_t)k);
  if (aHit == NULL) bench_die("out of memory");
  for (int pass = 0; pass < nPass; pass++) { /* pass 0 fits the codes */
    long hits = 0;
    double t = now_s();
    for (int i = 0; i < q.n; i++) {
      size_t nOut = 0;
      const int32_t *want = bench_vecs_irow(&gt, i);
      if (annex_hnsw_search(g, bench_vecs_frow(&q, i), (size_t)k, (size_t)ef,
                            aAcc, aAcc ? (uint64_t)base.n : 0, aHit,
                            &nOut) != ANNEX_HNSW_OK) {
        bench_die("query %d failed", i);
      }
      for (size_t j = 0; j < nOut; j++) {
        for (int r = 0; r < k; r++) hits += want[r] == aHit[j].rowid;
      }
    }
    t = now_s() - t;
    printf("PASS %d layout=%s accept=%d ef=%d qps=%.1f recall=%.4f\n", pass,
           zLayout, bAccept, ef, q.n / t, (double)hits / ((double)q.n * k));
  }
  free(aHit);
  free(aAcc);
  annex_hnsw_free(g);
  sqlite3_close(db);
  bench_vecs_free(&q);
  bench_vecs_free(&gt);
  bench_base_close(&base);
  return 0;
}
