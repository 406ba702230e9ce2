/*
** app.c — a tiny application built against an installed annex, by
** examples/install-check.sh: once with pkg-config, once with CMake's
** find_package(annex). It links libannex.a, registers annex on an in-memory
** database with sqlite3_annex_init(), creates a table, inserts, queries
** k-NN and checks the answer. Given a path (argv[1]: the installed
** loadable extension, without suffix), it also loads that into a second
** connection and runs the same checks there; built with
** -DANNEX_EXTENSION="path" (the CMake build does that from annex_EXTENSION),
** that path is the default.
**
**   app [EXTENSION]      exit 0 when every check passes
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "annex.h"

static int fail(sqlite3 *db, const char *zWhat) {
  fprintf(stderr, "app: %s: %s\n", zWhat, db ? sqlite3_errmsg(db) : "");
  return 1;
}

/* Creates a table, inserts 3 vectors (one as a float32 BLOB), and checks
** the 2 nearest neighbours of a query and the filtered k-NN. */
static int exercise(sqlite3 *db, const char *zHow) {
  static const float aBlob[4] = {0.9f, 0.1f, 0.0f, 0.2f};
  sqlite3_stmt *st;
  char *zErr = NULL;
  int rc, n = 0;
  sqlite3_int64 aId[2] = {0, 0};
  double aDist[2] = {0, 0};

  rc = sqlite3_exec(db,
      "CREATE VIRTUAL TABLE docs USING annex("
      "  embedding float[4] distance=l2, category text, +body text);"
      "INSERT INTO docs(rowid, embedding, category, body) VALUES"
      "  (1, '[0.1, 0.2, 0.3, 0.4]', 'news', 'first'),"
      "  (3, '[0.1, 0.25, 0.3, 0.5]', 'news', 'third');",
      NULL, NULL, &zErr);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "app: create/insert: %s\n", zErr);
    sqlite3_free(zErr);
    return 1;
  }
  if (sqlite3_prepare_v2(db,
          "INSERT INTO docs(rowid, embedding, category, body) "
          "VALUES (2, ?, 'blog', 'second')", -1, &st, NULL) != SQLITE_OK) {
    return fail(db, "prepare insert");
  }
  sqlite3_bind_blob(st, 1, aBlob, sizeof aBlob, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(db, "insert blob");
  sqlite3_finalize(st);

  if (sqlite3_prepare_v2(db,
          "SELECT rowid, distance, body FROM docs "
          "WHERE embedding MATCH '[0.1, 0.2, 0.3, 0.45]' AND k = 2",
          -1, &st, NULL) != SQLITE_OK) {
    return fail(db, "prepare knn");
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n < 2) {
      aId[n] = sqlite3_column_int64(st, 0);
      aDist[n] = sqlite3_column_double(st, 1);
    }
    printf("  %s: rowid %lld  distance %.6f  %s\n", zHow,
           (long long)sqlite3_column_int64(st, 0), sqlite3_column_double(st, 1),
           (const char *)sqlite3_column_text(st, 2));
    n++;
  }
  if (rc != SQLITE_DONE) return fail(db, "knn");
  sqlite3_finalize(st);
  if (n != 2 || aId[0] != 1 || aId[1] != 3 || fabs(aDist[0] - 0.05) > 1e-6 ||
      fabs(aDist[1] - 0.0707107) > 1e-6) {
    fprintf(stderr, "app: %s: wrong k-NN answer\n", zHow);
    return 1;
  }

  if (sqlite3_prepare_v2(db,
          "SELECT rowid FROM docs WHERE embedding MATCH ? AND k = 5 "
          "AND category = 'blog'", -1, &st, NULL) != SQLITE_OK) {
    return fail(db, "prepare filtered");
  }
  sqlite3_bind_blob(st, 1, aBlob, sizeof aBlob, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int64(st, 0) != 2 ||
      sqlite3_step(st) != SQLITE_DONE) {
    fprintf(stderr, "app: %s: wrong filtered answer\n", zHow);
    return 1;
  }
  sqlite3_finalize(st);

  rc = sqlite3_exec(db, "INSERT INTO docs(docs) VALUES ('integrity-check')",
                    NULL, NULL, NULL);
  if (rc != SQLITE_OK) return fail(db, "integrity-check");
  return 0;
}

int main(int argc, char **argv) {
  sqlite3 *db;
  char *zErr = NULL;
  sqlite3_stmt *st;
  const char *zExt = argc > 1 ? argv[1] : NULL;
#ifdef ANNEX_EXTENSION
  if (zExt == NULL) zExt = ANNEX_EXTENSION;
#endif

  /* linked: libannex.a */
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return fail(db, "open");
  if (sqlite3_annex_init(db, &zErr, NULL) != SQLITE_OK) {
    fprintf(stderr, "app: sqlite3_annex_init: %s\n", zErr ? zErr : "?");
    return 1;
  }
  if (sqlite3_prepare_v2(db, "SELECT annex_version()", -1, &st, NULL) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW) {
    return fail(db, "annex_version");
  }
  printf("  linked: annex %s on SQLite %s\n", sqlite3_column_text(st, 0),
         sqlite3_libversion());
  sqlite3_finalize(st);
  if (exercise(db, "linked")) return 1;
  sqlite3_close(db);

  /* loaded: the installed annex.so */
  if (zExt) {
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) return fail(db, "open");
    sqlite3_enable_load_extension(db, 1);
    if (sqlite3_load_extension(db, zExt, NULL, &zErr) != SQLITE_OK) {
      fprintf(stderr, "app: load %s: %s\n", zExt, zErr ? zErr : "?");
      return 1;
    }
    if (exercise(db, "loaded")) return 1;
    sqlite3_close(db);
  }
  printf("  ok\n");
  return 0;
}
