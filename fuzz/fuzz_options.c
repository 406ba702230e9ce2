/*
** fuzz_options.c — libFuzzer target: the CREATE VIRTUAL TABLE argument
** parser (config.c), called directly with the input split at newlines into
** an argument list, then, when the parser accepts it, through SQL: CREATE,
** one INSERT, a k-NN and integrity-check on the new table must not crash.
*/
#include <string.h>

#include "fuzz_common.h"
#include "vtab/annex_int.h"

#define MAX_ARGS 32

static void through_sql(const char *const *az, int nArg) {
  sqlite3 *db = fz_open();
  sqlite3_str *s = sqlite3_str_new(db);
  char *zSql;
  sqlite3_str_appendall(s, "CREATE VIRTUAL TABLE x USING annex(");
  for (int i = 3; i < nArg; i++) {
    sqlite3_str_appendf(s, "%s%s", i > 3 ? "," : "", az[i]);
  }
  sqlite3_str_appendall(s, ")");
  zSql = sqlite3_str_finish(s);
  if (zSql && fz_exec(db, zSql) == SQLITE_OK) {
    fz_exec(db, "INSERT INTO x(rowid) VALUES(1);"
                "SELECT * FROM x;"
                "INSERT INTO x(x) VALUES('integrity-check');"
                "DROP TABLE x;");
  }
  sqlite3_free(zSql);
  sqlite3_close(db);
}

int LLVMFuzzerTestOneInput(const unsigned char *a, size_t n) {
  const char *az[MAX_ARGS];
  char *zBuf;
  int nArg = 3;
  annex_config *pConfig = NULL;
  char *zErr = NULL;
  if (n > 4096) return 0;
  zBuf = malloc(n + 1);
  memcpy(zBuf, a, n);
  zBuf[n] = 0;
  az[0] = "annex";
  az[1] = "main";
  az[2] = "x";
  for (char *z = zBuf; nArg < MAX_ARGS;) {
    char *zEnd = strchr(z, '\n');
    az[nArg++] = z;
    if (zEnd == NULL) break;
    *zEnd = 0;
    z = zEnd + 1;
  }
  if (annex_config_parse(nArg, az, &pConfig, &zErr) == SQLITE_OK) {
    annex_config_free(pConfig);
    /* arguments with a ')' or quote could end the CREATE early */
    int bPlain = 1;
    for (int i = 3; i < nArg; i++) bPlain &= strpbrk(az[i], ");'\"") == NULL;
    if (bPlain) through_sql(az, nArg);
  }
  sqlite3_free(zErr);
  free(zBuf);
  return 0;
}
