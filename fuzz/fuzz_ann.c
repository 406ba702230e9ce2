/*
** fuzz_ann.c — libFuzzer target: operation sequences (as fuzz_ops.c) on an
** annex table with an ANN index. The first input byte picks the table:
** index=hnsw(m=2..5), index=diskann(r=4..7, pq_bytes=1 or 2; a first byte
** of 128 or more whose low two bits are 0) or index=ivf(nlist=1 or 2,
** quantizer flat / sq8 / pq),
** all float[4] with a text and an integer column and chunk_size=8; each
** following byte pair is one operation: INSERT, INSERT OR REPLACE, UPDATE
** of the vector / metadata / rowid, DELETE, k-NN (plain, with ef_search /
** nprobe, filtered), 'optimize', 'rebuild' / 'train', BEGIN, COMMIT,
** ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO, integrity-check. Rowids range
** over 1..64 so that ivf tables reach their training threshold (39 rows a
** list) and train at a commit.
**
** Every k-NN that succeeds must be correct-looking: at most k rows,
** distinct, each a row a plain lookup finds, at the distance computed here
** in double precision from its stored vector, in order, the filter holding;
** without a filter, min(k, rows) rows. After the sequence (any open
** transaction committed): integrity-check must pass, and a final k-NN
** through the index must be correct-looking too.
*/
#include <math.h>
#include <string.h>

#include "fuzz_common.h"

static int g_eKind; /* 0 hnsw, 1 ivf flat, 2 ivf sq8, 3 ivf pq, 4 diskann */

/* Check one k-NN: zSql selects rowid, distance; bFilter: cat != 'b'. */
static void check_knn(sqlite3 *db, const char *zSql, const float *q, int k,
                      int bFilter) {
  sqlite3_stmt *s, *pRow;
  sqlite3_int64 aId[64];
  double rPrev = -1;
  int n = 0, rc;
  if (sqlite3_prepare_v2(db, zSql, -1, &s, 0) != SQLITE_OK) return;
  sqlite3_prepare_v2(db, "SELECT emb, cat FROM t WHERE rowid = ?", -1, &pRow, 0);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    double d = sqlite3_column_double(s, 1), e = 0;
    const float *v;
    const unsigned char *zCat;
    if (n >= k || n >= 64) FZ_FAIL("k-NN returned more than k = %d rows", k);
    for (int i = 0; i < n; i++) {
      if (aId[i] == id) FZ_FAIL("k-NN returned rowid %lld twice", id);
    }
    aId[n++] = id;
    sqlite3_bind_int64(pRow, 1, id);
    if (sqlite3_step(pRow) != SQLITE_ROW) {
      FZ_FAIL("k-NN returned rowid %lld, which is not in the table", id);
    }
    v = sqlite3_column_blob(pRow, 0);
    zCat = sqlite3_column_text(pRow, 1);
    if (sqlite3_column_bytes(pRow, 0) != 16) FZ_FAIL("vector of the wrong size");
    for (int j = 0; j < 4; j++) e += ((double)v[j] - q[j]) * ((double)v[j] - q[j]);
    e = sqrt(e);
    if (fabs(d - e) > 1e-4 * (1 + e)) {
      FZ_FAIL("k-NN row %lld at distance %g, its vector is at %g", id, d, e);
    }
    if (bFilter && zCat && strcmp((const char *)zCat, "b") == 0) {
      FZ_FAIL("k-NN row %lld breaks the filter", id);
    }
    if (d < rPrev) FZ_FAIL("k-NN distances out of order");
    rPrev = d;
    sqlite3_reset(pRow);
  }
  sqlite3_finalize(pRow);
  sqlite3_finalize(s);
  if (rc == SQLITE_DONE && !bFilter) {
    sqlite3_stmt *c;
    int nRow = 0;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &c, 0);
    if (sqlite3_step(c) == SQLITE_ROW) nRow = sqlite3_column_int(c, 0);
    sqlite3_finalize(c);
    if (n != (nRow < k ? nRow : k)) {
      FZ_FAIL("k-NN returned %d rows of %d (k = %d)", n, nRow, k);
    }
  }
}

static void op(sqlite3 *db, unsigned char o, unsigned char v) {
  char z[256];
  int r = v % 64 + 1;
  float a = (float)(v % 7) - 3, b = (float)(v % 5) * 0.5f;
  const char *zKnob = g_eKind == 0 ? "ef_search"
                      : g_eKind == 4 ? "search_list" : "nprobe";
  switch (o % 20) {
    case 0: case 1: case 2:
      snprintf(z, sizeof(z), "INSERT INTO t(rowid, emb, cat, n) VALUES(%d, "
               "'[%g,%g,%d,%g]', '%c', %d)", r, a, b, v % 3, (float)o * 0.1f,
               'a' + v % 4, v);
      break;
    case 3:
      snprintf(z, sizeof(z), "INSERT OR REPLACE INTO t(rowid, emb, cat) "
               "VALUES(%d, '[%g,1,%g,0]', NULL)", r, b, a);
      break;
    case 4:
      snprintf(z, sizeof(z), "UPDATE t SET emb = '[%g,%g,0,0]' WHERE rowid "
               "%% 7 = %d", a, b, v % 7);
      break;
    case 5:
      snprintf(z, sizeof(z), "UPDATE t SET rowid = rowid + 100 WHERE rowid "
               "= %d", r);
      break;
    case 6:
      snprintf(z, sizeof(z), "DELETE FROM t WHERE rowid %% %d = 0", v % 9 + 2);
      break;
    case 7: case 8: {
      float q[4] = {a, b, 1, 0};
      int k = v % 12 + 1, bFilter = o % 20 == 8;
      snprintf(z, sizeof(z), "SELECT rowid, distance FROM t WHERE emb MATCH "
               "'[%g,%g,1,0]' AND k = %d AND %s = %d%s", a, b, k, zKnob,
               v % 5 + 1, bFilter ? " AND cat != 'b'" : "");
      check_knn(db, z, q, k, bFilter);
      return;
    }
    case 9: snprintf(z, sizeof(z), "INSERT INTO t(t) VALUES('optimize')"); break;
    case 10:
      snprintf(z, sizeof(z), "INSERT INTO t(t) VALUES('%s')",
               g_eKind == 0 || g_eKind == 4 ? "rebuild" : "train");
      break;
    case 11: snprintf(z, sizeof(z), "BEGIN"); break;
    case 12: case 13: snprintf(z, sizeof(z), "COMMIT"); break;
    case 14: snprintf(z, sizeof(z), "ROLLBACK"); break;
    case 15: snprintf(z, sizeof(z), "SAVEPOINT s%d", v % 3); break;
    case 16: snprintf(z, sizeof(z), "RELEASE s%d", v % 3); break;
    case 17: snprintf(z, sizeof(z), "ROLLBACK TO s%d", v % 3); break;
    case 18: /* a bulk insert: many rows in one statement */
      snprintf(z, sizeof(z), "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL "
               "SELECT i + 1 FROM c WHERE i < %d) INSERT OR IGNORE INTO "
               "t(rowid, emb, cat) SELECT i, '[' || (i %% 5) || ',' || "
               "(i * %d %% 11) || ',' || (i %% 3) || ',1]', char(97 + i %% 4) "
               "FROM c", v % 64 + 1, v % 7 + 1);
      break;
    default:
      snprintf(z, sizeof(z), "INSERT INTO t(t) VALUES('integrity-check')");
      if (fz_exec(db, z) != SQLITE_OK) {
        FZ_FAIL("integrity-check mid-sequence: %s", sqlite3_errmsg(db));
      }
      return;
  }
  fz_exec(db, z);
}

int LLVMFuzzerTestOneInput(const unsigned char *a, size_t n) {
  static const char *azQuant[] = {"flat", "sq8", "pq, m=2"};
  char zCreate[256];
  sqlite3 *db;
  if (n < 1 || n > 256) return 0;
  g_eKind = a[0] % 4 == 0 && a[0] >= 128 ? 4 : a[0] % 4;
  if (g_eKind == 4) {
    snprintf(zCreate, sizeof(zCreate), "CREATE VIRTUAL TABLE t USING annex("
             "emb float[4], cat text, n integer, chunk_size=8, index=diskann("
             "r=%d, l_build=8, pq_bytes=%d))", a[0] / 4 % 4 + 4,
             a[0] / 16 % 2 + 1);
  } else if (g_eKind == 0) {
    snprintf(zCreate, sizeof(zCreate), "CREATE VIRTUAL TABLE t USING annex("
             "emb float[4], cat text, n integer, chunk_size=8, index=hnsw("
             "m=%d, ef_construction=%d))", a[0] / 4 % 4 + 2, a[0] / 16 % 4 * 8 + 2);
  } else {
    snprintf(zCreate, sizeof(zCreate), "CREATE VIRTUAL TABLE t USING annex("
             "emb float[4], cat text, n integer, chunk_size=8, index=ivf("
             "nlist=%d, quantizer=%s))", a[0] / 4 % 2 + 1, azQuant[g_eKind - 1]);
  }
  db = fz_open();
  /* one build thread: on inputs this small OpenMP's barriers in 'train' /
  ** 'rebuild' cost more than the work (most of all on a loaded machine) */
  fz_exec(db, "SELECT annex_threads(1)");
  if (fz_exec(db, zCreate) != SQLITE_OK) {
    FZ_FAIL("create: %s", sqlite3_errmsg(db));
  }
  for (size_t i = 1; i + 1 < n; i += 2) op(db, a[i], a[i + 1]);
  if (!sqlite3_get_autocommit(db)) fz_exec(db, "COMMIT");
  if (!sqlite3_get_autocommit(db)) fz_exec(db, "ROLLBACK");
  if (fz_exec(db, "INSERT INTO t(t) VALUES('integrity-check')") != SQLITE_OK) {
    FZ_FAIL("integrity-check: %s", sqlite3_errmsg(db));
  }
  {
    static const float q[4] = {0.5f, -1, 1, 0.25f};
    static const char *azKnob[] = {"ef_search = 64", "nprobe = 2",
                                   "nprobe = 2", "nprobe = 2",
                                   "search_list = 64"};
    char zSql[160];
    snprintf(zSql, sizeof(zSql), "SELECT rowid, distance FROM t WHERE emb "
             "MATCH '[0.5,-1,1,0.25]' AND k = 5 AND %s", azKnob[g_eKind]);
    check_knn(db, zSql, q, 5, 0);
  }
  sqlite3_close(db);
  return 0;
}
