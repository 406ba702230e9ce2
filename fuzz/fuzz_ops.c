/*
** fuzz_ops.c — libFuzzer target: whole operation sequences on a small
** annex table (float[4], a text and an integer column, chunk_size=8): each
** input byte pair is one operation (INSERT, INSERT OR REPLACE, UPDATE of
** the vector / metadata / rowid, DELETE, k-NN, filtered k-NN, BEGIN,
** COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO, integrity-check).
** After the sequence (any open transaction committed): integrity-check
** must pass, and a k-NN must equal a brute force computed here in double
** precision over the rows a plain scan returns.
*/
#include <math.h>
#include <string.h>

#include "fuzz_common.h"

#define KNN_K 5

static void op(sqlite3 *db, unsigned char o, unsigned char v) {
  char z[256];
  int r = v % 24 + 1;
  float a = (float)(v % 7) - 3, b = (float)(v % 5) * 0.5f;
  switch (o % 16) {
    case 0: case 1:
      snprintf(z, sizeof(z), "INSERT INTO t(rowid, emb, cat, n) VALUES(%d, "
               "'[%g,%g,%d,1]', '%c', %d)", r, a, b, v % 3, 'a' + v % 4, v);
      break;
    case 2:
      snprintf(z, sizeof(z), "INSERT OR REPLACE INTO t(rowid, emb, cat) "
               "VALUES(%d, '[%g,1,%g,0]', NULL)", r, b, a);
      break;
    case 3:
      snprintf(z, sizeof(z), "UPDATE t SET emb = '[%g,%g,0,0]' WHERE rowid "
               "= %d", a, b, r);
      break;
    case 4:
      snprintf(z, sizeof(z), "UPDATE t SET cat = 'z', n = n + 1 WHERE rowid "
               "%% 5 = %d", v % 5);
      break;
    case 5:
      snprintf(z, sizeof(z), "UPDATE t SET rowid = rowid + 100 WHERE rowid "
               "= %d", r);
      break;
    case 6: case 7:
      snprintf(z, sizeof(z), "DELETE FROM t WHERE rowid %% %d = 0", v % 9 + 2);
      break;
    case 8:
      snprintf(z, sizeof(z), "SELECT rowid FROM t WHERE emb MATCH '[%g,%g,1,"
               "0]' AND k = %d AND cat != 'b'", a, b, v % 8);
      break;
    case 9: snprintf(z, sizeof(z), "BEGIN"); break;
    case 10: snprintf(z, sizeof(z), "COMMIT"); break;
    case 11: snprintf(z, sizeof(z), "ROLLBACK"); break;
    case 12: snprintf(z, sizeof(z), "SAVEPOINT s%d", v % 3); break;
    case 13: snprintf(z, sizeof(z), "RELEASE s%d", v % 3); break;
    case 14: snprintf(z, sizeof(z), "ROLLBACK TO s%d", v % 3); break;
    default:
      snprintf(z, sizeof(z), "INSERT INTO t(t) VALUES('integrity-check')");
      if (fz_exec(db, z) != SQLITE_OK) {
        FZ_FAIL("integrity-check mid-sequence: %s", sqlite3_errmsg(db));
      }
      return;
  }
  fz_exec(db, z);
}

typedef struct hit {
  double d;
  sqlite3_int64 id;
} hit;

/* The exact k nearest to q among the rows a plain scan returns. */
static int brute(sqlite3 *db, const float *q, hit *aBest) {
  sqlite3_stmt *s;
  int n = 0;
  sqlite3_prepare_v2(db, "SELECT rowid, emb FROM t", -1, &s, 0);
  while (sqlite3_step(s) == SQLITE_ROW) {
    const float *v = sqlite3_column_blob(s, 1);
    hit h = {0, sqlite3_column_int64(s, 0)};
    int i;
    if (sqlite3_column_bytes(s, 1) != 16) FZ_FAIL("vector of the wrong size");
    for (int j = 0; j < 4; j++) h.d += ((double)v[j] - q[j]) * (v[j] - q[j]);
    h.d = sqrt(h.d);
    for (i = n < KNN_K ? n++ : KNN_K; i > 0; i--) { /* insertion sort */
      hit *p = &aBest[i - 1];
      if (p->d < h.d || (p->d == h.d && p->id < h.id)) break;
      if (i < KNN_K) aBest[i] = *p;
    }
    if (i < KNN_K) aBest[i] = h;
  }
  sqlite3_finalize(s);
  return n;
}

static void check_knn(sqlite3 *db) {
  static const float q[4] = {0.5f, -1, 1, 0.25f};
  hit aWant[KNN_K];
  int nWant = brute(db, q, aWant), n = 0;
  sqlite3_stmt *s;
  sqlite3_prepare_v2(db, "SELECT rowid, distance FROM t WHERE emb MATCH "
                     "'[0.5,-1,1,0.25]' AND k = 5", -1, &s, 0);
  while (sqlite3_step(s) == SQLITE_ROW) {
    double d = sqlite3_column_double(s, 1);
    if (n >= nWant) FZ_FAIL("k-NN returned too many rows");
    if (fabs(d - aWant[n].d) > 1e-4 * (1 + aWant[n].d)) {
      FZ_FAIL("k-NN row %d: distance %g, brute force %g", n, d, aWant[n].d);
    }
    if (sqlite3_column_int64(s, 0) != aWant[n].id &&
        (n + 1 >= nWant || fabs(aWant[n + 1].d - aWant[n].d) > 1e-4) &&
        (n == 0 || fabs(aWant[n - 1].d - aWant[n].d) > 1e-4)) {
      FZ_FAIL("k-NN row %d: rowid %lld, brute force %lld", n,
              sqlite3_column_int64(s, 0), (long long)aWant[n].id);
    }
    n++;
  }
  if (sqlite3_finalize(s) != SQLITE_OK) FZ_FAIL("k-NN: %s", sqlite3_errmsg(db));
  if (n != nWant) FZ_FAIL("k-NN returned %d rows, brute force %d", n, nWant);
}

int LLVMFuzzerTestOneInput(const unsigned char *a, size_t n) {
  sqlite3 *db;
  if (n > 256) return 0;
  db = fz_open();
  if (fz_exec(db, "CREATE VIRTUAL TABLE t USING annex(emb float[4], cat text,"
                  " n integer, chunk_size=8)") != SQLITE_OK) {
    FZ_FAIL("create: %s", sqlite3_errmsg(db));
  }
  for (size_t i = 0; i + 1 < n; i += 2) op(db, a[i], a[i + 1]);
  if (!sqlite3_get_autocommit(db)) fz_exec(db, "COMMIT");
  if (fz_exec(db, "INSERT INTO t(t) VALUES('integrity-check')") != SQLITE_OK) {
    FZ_FAIL("integrity-check: %s", sqlite3_errmsg(db));
  }
  check_knn(db);
  sqlite3_close(db);
  return 0;
}
