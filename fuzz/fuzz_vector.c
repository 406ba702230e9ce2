/*
** fuzz_vector.c — libFuzzer target: vector parsing, JSON text and BLOB.
** The input (after a first selector byte) is bound as text and as a blob to
** every vector function and to INSERTs into float, int8 and bit tables.
** Every call must succeed or fail cleanly; a vector that was accepted must
** print (annex_json) and parse back to the same bytes.
*/
#include <string.h>

#include "fuzz_common.h"

static sqlite3 *g_db;
static sqlite3_stmt *g_aStmt[8];

static const char *g_azSql[] = {
    "SELECT annex_vector(?1)",   "SELECT annex_int8(?1)",
    "SELECT annex_bit(?1)",      "SELECT annex_dims(?1)",
    "SELECT annex_normalize(?1)",
    "SELECT annex_distance(?1, ?1)",
    "INSERT INTO f(emb) VALUES(?1)",
    "INSERT INTO i(emb) VALUES(?1)",
};

static void setup(void) {
  g_db = fz_open();
  fz_exec(g_db, "CREATE VIRTUAL TABLE f USING annex(emb float[4]);"
                "CREATE VIRTUAL TABLE i USING annex(emb int8[8]);");
  for (int i = 0; i < 8; i++) {
    if (sqlite3_prepare_v2(g_db, g_azSql[i], -1, &g_aStmt[i], 0) != SQLITE_OK) {
      FZ_FAIL("prepare %s: %s", g_azSql[i], sqlite3_errmsg(g_db));
    }
  }
}

/* An accepted float vector must print and parse back to its bytes. */
static void round_trip(const void *a, int n) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(g_db, "SELECT annex_vector(annex_json(?1))", -1, &s,
                         0) != SQLITE_OK) {
    FZ_FAIL("prepare round trip");
  }
  sqlite3_bind_blob(s, 1, a, n, SQLITE_STATIC);
  if (sqlite3_step(s) != SQLITE_ROW ||
      sqlite3_column_bytes(s, 0) != n ||
      memcmp(sqlite3_column_blob(s, 0), a, (size_t)n) != 0) {
    FZ_FAIL("annex_json then annex_vector changed a vector (%s)",
            sqlite3_errmsg(g_db));
  }
  sqlite3_finalize(s);
}

int LLVMFuzzerTestOneInput(const unsigned char *a, size_t n) {
  int bBlob;
  if (g_db == NULL) setup();
  if (n == 0 || n > 65536) return 0;
  bBlob = a[0] & 1;
  a++, n--;
  for (int i = 0; i < 8; i++) {
    sqlite3_stmt *s = g_aStmt[i];
    if (bBlob) sqlite3_bind_blob(s, 1, a, (int)n, SQLITE_STATIC);
    else sqlite3_bind_text(s, 1, (const char *)a, (int)n, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW && i == 0 &&
        sqlite3_column_type(s, 0) == SQLITE_BLOB) {
      int nOut = sqlite3_column_bytes(s, 0);
      void *p = malloc((size_t)nOut + 1);
      memcpy(p, sqlite3_column_blob(s, 0), (size_t)nOut);
      sqlite3_reset(s);
      round_trip(p, nOut);
      free(p);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  /* keep the tables small */
  fz_exec(g_db, "DELETE FROM f; DELETE FROM i;");
  return 0;
}
