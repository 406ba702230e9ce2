/*
** fuzz_common.h — helpers shared by annex's libFuzzer targets (fuzz/fuzz_*.c):
** an in-memory connection with annex registered, and running SQL while
** ignoring its errors (the fuzzers look for crashes, hangs, sanitizer
** reports and broken invariants, not for SQL that fails).
*/
#ifndef ANNEX_FUZZ_COMMON_H
#define ANNEX_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "annex.h"

/* An in-memory database with annex registered; aborts if that fails. */
static inline sqlite3 *fz_open(void) {
  sqlite3 *db = NULL;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
      sqlite3_annex_init(db, NULL, NULL) != SQLITE_OK) {
    fprintf(stderr, "fuzz: cannot open a database with annex\n");
    abort();
  }
  /* bound the work of one input: no statement runs for long */
  sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 1 << 20);
  sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, 1 << 16);
  return db;
}

/* Run every statement of zSql; returns the result code (errors ignored). */
static inline int fz_exec(sqlite3 *db, const char *zSql) {
  return sqlite3_exec(db, zSql, NULL, NULL, NULL);
}

/* Abort (a finding) with a message. */
#define FZ_FAIL(...)                      \
  do {                                    \
    fprintf(stderr, "fuzz: " __VA_ARGS__); \
    fprintf(stderr, "\n");                \
    abort();                              \
  } while (0)

#endif /* ANNEX_FUZZ_COMMON_H */
