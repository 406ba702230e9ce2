/*
** test_metafilter.c — filtered k-NN on compact per-chunk metadata, checked
** against SQLite itself.
**
** The same rows go into an annex table and into an ordinary table with the
** same declared column types. For each filter, the rows SQLite's WHERE
** clause selects on the ordinary table are the truth; annex's filtered
** k-NN must return exactly the k nearest of them (nearest computed here in
** double precision). The metadata deliberately mixes what SQLite's
** comparison rules make tricky: NULLs, integers and reals (including
** integers beyond 2^53, where a double is not exact), number-like text
** given to numeric columns, text that stays text in a numeric column,
** blobs, and numbers given to a text column. Filters cover every operator,
** IN lists, IS / IS NOT, rowid IN, and text ranges (which take the SQL
** path). A last test corrupts the compact copy and expects
** integrity-check to name it.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "annex.h"

enum { N = 600, D = 4, K = 7 };

static float g_vec[N + 1][D];

static void exec(sqlite3 *db, const char *zSql) {
  char *zErr = NULL;
  if (sqlite3_exec(db, zSql, NULL, NULL, &zErr) != SQLITE_OK) {
    fail_msg("%s: %s", zSql, zErr);
  }
}

/* A metadata value for row i of column `year` (INTEGER). */
static void bind_year(sqlite3_stmt *s, int iParam, int i) {
  switch (i % 9) {
    case 0: sqlite3_bind_null(s, iParam); break;
    case 1: sqlite3_bind_int64(s, iParam, 2015 + i % 10); break;
    case 2: sqlite3_bind_double(s, iParam, 2015.5 + i % 10); break;
    case 3: sqlite3_bind_text(s, iParam, "2018", -1, SQLITE_STATIC); break;
    case 4: sqlite3_bind_text(s, iParam, "n/a", -1, SQLITE_STATIC); break;
    case 5: sqlite3_bind_int64(s, iParam, (1LL << 53) + 1 + i % 3); break;
    case 6: sqlite3_bind_blob(s, iParam, "\x01\x02", 2, SQLITE_STATIC); break;
    case 7: sqlite3_bind_double(s, iParam, 2020.0); break;
    default: sqlite3_bind_int64(s, iParam, 2020); break;
  }
}

static void bind_cat(sqlite3_stmt *s, int iParam, int i) {
  static const char *az[] = {"news", "blog", "paper", "forum", "News"};
  switch (i % 7) {
    case 0: sqlite3_bind_null(s, iParam); break;
    case 1: sqlite3_bind_int64(s, iParam, 42); break; /* becomes '42' */
    case 2: sqlite3_bind_double(s, iParam, 2.5); break; /* becomes '2.5' */
    default: sqlite3_bind_text(s, iParam, az[i % 5], -1, SQLITE_STATIC);
  }
}

static void bind_score(sqlite3_stmt *s, int iParam, int i) {
  switch (i % 6) {
    case 0: sqlite3_bind_null(s, iParam); break;
    case 1: sqlite3_bind_int64(s, iParam, i % 4); break;
    case 2: sqlite3_bind_double(s, iParam, -0.0); break;
    case 3: sqlite3_bind_text(s, iParam, "0.75", -1, SQLITE_STATIC); break;
    default: sqlite3_bind_double(s, iParam, (i % 100) / 100.0); break;
  }
}

static sqlite3 *open_loaded(void) {
  sqlite3 *db;
  sqlite3_stmt *a, *m;
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  assert_int_equal(sqlite3_annex_init(db, NULL, NULL), SQLITE_OK);
  exec(db, "CREATE VIRTUAL TABLE t USING annex(e float[4], cat text, "
           "year integer, score real, +note text, chunk_size=16);"
           "CREATE TABLE m(id INTEGER PRIMARY KEY, cat TEXT, year INTEGER, "
           "score REAL)");
  assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t(rowid, e, cat, year, "
                                          "score, note) VALUES(?,?,?,?,?,'x')",
                                      -1, &a, 0),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO m VALUES(?,?,?,?)", -1,
                                      &m, 0),
                   SQLITE_OK);
  srand(3);
  exec(db, "BEGIN");
  for (int i = 1; i <= N; i++) {
    for (int j = 0; j < D; j++) g_vec[i][j] = (float)(rand() % 1000) / 100.0f;
    sqlite3_bind_int(a, 1, i);
    sqlite3_bind_blob(a, 2, g_vec[i], sizeof(g_vec[i]), SQLITE_STATIC);
    bind_cat(a, 3, i);
    bind_year(a, 4, i);
    bind_score(a, 5, i);
    sqlite3_bind_int(m, 1, i);
    bind_cat(m, 2, i);
    bind_year(m, 3, i);
    bind_score(m, 4, i);
    assert_int_equal(sqlite3_step(a), SQLITE_DONE);
    assert_int_equal(sqlite3_step(m), SQLITE_DONE);
    sqlite3_reset(a);
    sqlite3_reset(m);
  }
  exec(db, "COMMIT");
  sqlite3_finalize(a);
  sqlite3_finalize(m);
  exec(db, "DELETE FROM t WHERE rowid % 11 = 0; DELETE FROM m WHERE id % 11 = 0");
  return db;
}

/* Row id's vector (rows renumbered by +1000 keep theirs). */
static const float *vec_of(int64_t id) {
  return g_vec[id > N ? id - 1000 : id];
}

static double dist2(const float *x, const float *q) {
  double s = 0;
  for (int j = 0; j < D; j++) s += ((double)x[j] - q[j]) * ((double)x[j] - q[j]);
  return s;
}

/* The k nearest (ties: smaller rowid) among SQLite's matches of zWhere. */
static int expected(sqlite3 *db, const char *zWhere, const float *q,
                    int64_t *aOut) {
  sqlite3_stmt *s;
  char *zSql = sqlite3_mprintf("SELECT id FROM m WHERE %s ORDER BY id", zWhere);
  int64_t aId[N + 1];
  int n = 0, nOut = 0;
  assert_int_equal(sqlite3_prepare_v2(db, zSql, -1, &s, 0), SQLITE_OK);
  while (sqlite3_step(s) == SQLITE_ROW) aId[n++] = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_free(zSql);
  for (; nOut < K && nOut < n; nOut++) { /* selection by (distance, id) */
    int best = -1;
    for (int i = 0; i < n; i++) {
      if (aId[i] < 0) continue;
      if (best < 0 || dist2(vec_of(aId[i]), q) < dist2(vec_of(aId[best]), q)) {
        best = i;
      }
    }
    aOut[nOut] = aId[best];
    aId[best] = -1;
  }
  return nOut;
}

static void check_filter(sqlite3 *db, const char *zWhere) {
  float q[D];
  int64_t aWant[K];
  sqlite3_stmt *s;
  char *zSql = sqlite3_mprintf("SELECT rowid FROM t WHERE e MATCH ? AND k = %d "
                               "AND %s", K, zWhere);
  int nWant, n = 0;
  for (int j = 0; j < D; j++) q[j] = (float)(rand() % 1000) / 100.0f;
  nWant = expected(db, zWhere, q, aWant);
  if (sqlite3_prepare_v2(db, zSql, -1, &s, 0) != SQLITE_OK) {
    fail_msg("%s: %s", zSql, sqlite3_errmsg(db));
  }
  sqlite3_bind_blob(s, 1, q, sizeof(q), SQLITE_STATIC);
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (n >= nWant || sqlite3_column_int64(s, 0) != aWant[n]) {
      fail_msg("filter %s: result %d is row %lld, expected %lld", zWhere, n,
               (long long)sqlite3_column_int64(s, 0),
               n < nWant ? (long long)aWant[n] : -1LL);
    }
    n++;
  }
  if (sqlite3_finalize(s) != SQLITE_OK) fail_msg("%s", sqlite3_errmsg(db));
  if (n != nWant) fail_msg("filter %s: %d rows, expected %d", zWhere, n, nWant);
  sqlite3_free(zSql);
}

static void test_against_sqlite(void **state) {
  static const char *azWhere[] = {
      "year = 2020", "year = 2020.0", "year = '2020'", "year != 2020",
      "year < 2018", "year <= 2018", "year > 2019.5", "year >= '2018'",
      "year > 9007199254740992", "year = 9007199254740993",
      "year < 9007199254740993.0", "year IS NULL", "year IS NOT NULL",
      "year IS 2020", "year IS NOT 2020", "year IS NULL", "year = 'n/a'",
      "year != 'n/a'", "year > 'm'", "year < x'0102'",
      "year IN (2015, 2016.5, '2018', 'n/a')", "year IN (NULL, 2020)",
      "cat = 'news'", "cat != 'news'", "cat = 42", "cat = '42'", "cat = 2.5",
      "cat IN ('blog', 'forum', 42)", "cat IS NULL", "cat IS 'paper'",
      "cat > 'forum'", "cat <= 'blog'", "cat = 'absent'", "cat != 'absent'",
      "score = 0", "score = -0.0", "score < 0.3", "score >= '0.75'",
      "score = 0.75", "score IN (0, 1, 2)", "score > 2",
      "cat = 'news' AND year >= 2016", "cat IN ('news','paper') AND score < 0.5",
      "year = 2020 AND score IS NOT NULL AND cat != 'blog'",
  };
  sqlite3 *db = open_loaded();
  (void)state;
  srand(17);
  for (size_t i = 0; i < sizeof(azWhere) / sizeof(azWhere[0]); i++) {
    check_filter(db, azWhere[i]);
  }
  sqlite3_close(db);
}

/* rowid terms combine with metadata terms. */
static void test_rowid_terms(void **state) {
  sqlite3 *db = open_loaded();
  char zWhere[256];
  (void)state;
  srand(19);
  check_filter(db, "year = 2020 AND rowid IN (9, 18, 27, 36, 45, 1000)");
  check_filter(db, "rowid IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)");
  for (int i = 1; i < 50; i += 7) {
    snprintf(zWhere, sizeof(zWhere), "rowid = %d", i);
    /* m's key is id: rewrite the rowid term for the reference */
    {
      float q[D] = {1, 2, 3, 4};
      sqlite3_stmt *s;
      int n = 0;
      assert_int_equal(sqlite3_prepare_v2(db, "SELECT rowid FROM t WHERE e "
                                              "MATCH ? AND k = 3 AND rowid = ?",
                                          -1, &s, 0),
                       SQLITE_OK);
      sqlite3_bind_blob(s, 1, q, sizeof(q), SQLITE_STATIC);
      sqlite3_bind_int(s, 2, i);
      while (sqlite3_step(s) == SQLITE_ROW) {
        assert_int_equal(sqlite3_column_int(s, 0), i);
        n++;
      }
      sqlite3_finalize(s);
      assert_int_equal(n, i % 11 == 0 ? 0 : 1);
    }
  }
  sqlite3_close(db);
}

/* Updates rewrite the compact copy; integrity-check compares it. */
static void test_update_and_integrity(void **state) {
  sqlite3 *db = open_loaded();
  (void)state;
  srand(23);
  exec(db, "UPDATE t SET year = 1999, cat = 'changed' WHERE rowid % 5 = 0;"
           "UPDATE m SET year = 1999, cat = 'changed' WHERE id % 5 = 0;"
           "UPDATE t SET rowid = rowid + 1000 WHERE rowid % 7 = 0;"
           "UPDATE m SET id = id + 1000 WHERE id % 7 = 0;");
  exec(db, "INSERT INTO t(t) VALUES('integrity-check')");
  /* Rows moved past N have no reference vector: check other filters. */
  check_filter(db, "year = 1999");
  check_filter(db, "cat = 'changed' AND year != 1999");
  check_filter(db, "rowid > 1000 AND cat = 'changed'");
  /* Corrupt the compact copy of the year of slot 3 (rowid 4) of chunk 0:
  ** its tag byte sits after the valid bitmap (2 bytes), the rowids (128)
  ** and column cat's tags and values (16 + 128), at 274 + 3 (0-based).
  ** Tag 2 (real) is a known tag that disagrees with T_rows (an unknown
  ** tag is reported before the rows are compared). */
  exec(db, "UPDATE t_chunks SET data = "
           "substr(data, 1, 277) || x'02' || substr(data, 279) "
           "WHERE chunk = 0");
  {
    char *zErr = NULL;
    int rc = sqlite3_exec(db, "INSERT INTO t(t) VALUES('integrity-check')",
                          NULL, NULL, &zErr);
    assert_int_equal(rc, SQLITE_CORRUPT);
    assert_int_equal(sqlite3_extended_errcode(db), SQLITE_CORRUPT_VTAB);
    assert_non_null(strstr(zErr, "compact copy of column year"));
    sqlite3_free(zErr);
  }
  sqlite3_close(db);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_sqlite),
      cmocka_unit_test(test_rowid_terms),
      cmocka_unit_test(test_update_and_integrity),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
