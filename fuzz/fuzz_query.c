/*
** fuzz_query.c — libFuzzer target: combinations of query constraints. Each
** input byte picks one piece of a SELECT on a small annex table (MATCH
** with k, LIMIT, distance bounds, metadata comparisons of every type,
** rowid IN lists, ORDER BY): the statement must succeed or fail cleanly,
** and a k-NN that succeeds returns distances in order, no rowid twice, and
** no more than k rows.
*/
#include <string.h>

#include "fuzz_common.h"

static sqlite3 *g_db;

static const char *g_azTerm[] = {
    "k = 3", "k = 0", "k = -1", "k = 100000", "k = 'x'", "k = NULL",
    "distance < 2.5", "distance <= 0", "distance > 1", "distance < NULL",
    "cat = 'a'", "cat > 'b'", "cat IS NULL", "cat != 'c'", "cat IN ('a','c')",
    "year >= 2003", "year < 2001.5", "year = 'x'", "year IS NOT NULL",
    "score < 4.5", "score BETWEEN 1 AND 3", "score = NULL",
    "rowid IN (1, 2, 3, 40)", "rowid = 5", "rowid > 10", "rowid IN ()",
    "rowid IN (SELECT 3)", "body = 'x'", "cat LIKE 'a%'",
    "emb MATCH '[1,2,3,4]'", "emb MATCH x'00'", "emb MATCH NULL",
};
#define NTERM (sizeof(g_azTerm) / sizeof(g_azTerm[0]))

static const char *g_azTail[] = {
    "", " ORDER BY distance", " ORDER BY distance LIMIT 2", " LIMIT 1",
    " ORDER BY rowid DESC", " LIMIT 5 OFFSET 2", " ORDER BY distance DESC",
};
#define NTAIL (sizeof(g_azTail) / sizeof(g_azTail[0]))

static void setup(void) {
  sqlite3_str *s;
  char *z;
  g_db = fz_open();
  s = sqlite3_str_new(NULL);
  sqlite3_str_appendall(s, "CREATE VIRTUAL TABLE t USING annex(emb float[4], "
                           "cat text, year integer, score real, +body, "
                           "chunk_size=8);");
  for (int i = 1; i <= 40; i++) {
    sqlite3_str_appendf(s, "INSERT INTO t(rowid, emb, cat, year, score, body) "
                           "VALUES(%d, '[%d,%d,%g,%d]', %s, %d, %g, 'b%d');",
                        i, i % 7, i % 3, i * 0.5, -i, i % 4 ? "'a'" : "NULL",
                        2000 + i % 6, i * 0.25, i);
  }
  sqlite3_str_appendall(s, "DELETE FROM t WHERE rowid % 9 = 0;");
  z = sqlite3_str_finish(s);
  if (fz_exec(g_db, z) != SQLITE_OK) FZ_FAIL("setup: %s", sqlite3_errmsg(g_db));
  sqlite3_free(z);
}

/* Run it; check a k-NN's shape when it has a MATCH. */
static void run(const char *zSql, int bKnn) {
  sqlite3_stmt *s;
  sqlite3_int64 aId[64];
  double dPrev = -1e300;
  int n = 0;
  if (sqlite3_prepare_v2(g_db, zSql, -1, &s, 0) != SQLITE_OK) return;
  while (sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    if (!bKnn) continue;
    if (sqlite3_column_type(s, 1) != SQLITE_NULL) {
      double d = sqlite3_column_double(s, 1);
      if (strstr(zSql, "ORDER BY distance DESC") == NULL &&
          strstr(zSql, "ORDER BY rowid") == NULL && d < dPrev) {
        FZ_FAIL("distances out of order: %s", zSql);
      }
      dPrev = d;
    }
    for (int i = 0; i < n && i < 64; i++) {
      if (aId[i] == id) FZ_FAIL("rowid %lld twice: %s", (long long)id, zSql);
    }
    if (n < 64) aId[n] = id;
    n++;
  }
  if (bKnn && strstr(zSql, "k = 3") && !strstr(zSql, "OFFSET") && n > 3) {
    FZ_FAIL("%d rows for k = 3: %s", n, zSql);
  }
  sqlite3_finalize(s);
}

int LLVMFuzzerTestOneInput(const unsigned char *a, size_t n) {
  sqlite3_str *s;
  char *zSql;
  int bKnn = 0;
  if (g_db == NULL) setup();
  if (n == 0 || n > 16) return 0;
  s = sqlite3_str_new(NULL);
  sqlite3_str_appendall(s, "SELECT rowid, distance, cat, year FROM t");
  for (size_t i = 1; i < n; i++) {
    const char *zTerm = g_azTerm[a[i] % NTERM];
    bKnn |= strncmp(zTerm, "emb MATCH", 9) == 0;
    sqlite3_str_appendf(s, "%s%s", i == 1 ? " WHERE " : " AND ", zTerm);
  }
  sqlite3_str_appendall(s, g_azTail[a[0] % NTAIL]);
  zSql = sqlite3_str_finish(s);
  if (zSql) run(zSql, bKnn);
  sqlite3_free(zSql);
  return 0;
}
