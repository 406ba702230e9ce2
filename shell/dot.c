/*
** dot.c — dot commands: parsing the line and the general commands.
**
** Owns: splitting a dot-command line into arguments ('...' and "..."
** quote one argument), the dispatch table (which also prints .help), and
** .open .read .mode .headers .timer .tables .schema .info .help .quit
** .exit. The vector commands live in vecdot.c and recall.c. A failed command is reported with
** shell_error and counts towards exit status 1.
*/
#include "shell.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_ARGS 16

/* Split zLine in place into azArg; returns the count or -1 (too many,
** unterminated quote). */
static int split_args(char *z, char **azArg) {
  int n = 0;
  for (;;) {
    while (*z == ' ' || *z == '\t' || *z == '\r' || *z == '\n') z++;
    if (*z == 0) return n;
    if (n == MAX_ARGS) return -1;
    if (*z == '\'' || *z == '"') {
      char q = *z++;
      azArg[n++] = z;
      while (*z && *z != q) z++;
      if (*z != q) return -1;
      *z++ = 0;
    } else {
      azArg[n++] = z;
      while (*z && *z != ' ' && *z != '\t' && *z != '\r' && *z != '\n') z++;
      if (*z) *z++ = 0;
    }
  }
}

/* on|off|yes|no|1|0|true|false -> 1/0, -1 otherwise */
static int parse_bool(const char *z) {
  static const char *azOn[] = {"on", "yes", "1", "true"};
  static const char *azOff[] = {"off", "no", "0", "false"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(z, azOn[i]) == 0) return 1;
    if (strcasecmp(z, azOff[i]) == 0) return 0;
  }
  return -1;
}

static void dot_help(shell *sh, int nArg, char **azArg);

static void dot_open(shell *sh, int nArg, char **azArg) {
  (void)nArg;
  shell_open_db(sh, azArg[1]);
}

static void dot_read(shell *sh, int nArg, char **azArg) {
  FILE *f;
  (void)nArg;
  if (sh->nReadDepth >= 16) {
    shell_error(sh, ".read nested too deeply");
    return;
  }
  f = fopen(azArg[1], "r");
  if (f == NULL) {
    shell_error(sh, "cannot open \"%s\": %s", azArg[1], strerror(errno));
    return;
  }
  sh->nReadDepth++;
  shell_process_file(sh, f, azArg[1]);
  sh->nReadDepth--;
  fclose(f);
}

static void dot_mode(shell *sh, int nArg, char **azArg) {
  int m;
  if (nArg == 1) {
    fprintf(sh->out, "current output mode: %s\n", output_mode_name(sh->mode));
    return;
  }
  m = output_mode_from_name(azArg[1]);
  if (m < 0) {
    shell_error(sh, "unknown mode \"%s\": use list, box, table, csv, json or "
                    "line", azArg[1]);
    return;
  }
  sh->mode = (shell_mode)m;
}

static void dot_bool(shell *sh, const char *zName, const char *zArg,
                     int *pb) {
  int b = parse_bool(zArg);
  if (b < 0) shell_error(sh, "%s expects on or off, not \"%s\"", zName, zArg);
  else *pb = b;
}

static void dot_headers(shell *sh, int nArg, char **azArg) {
  (void)nArg;
  dot_bool(sh, ".headers", azArg[1], &sh->bHeaders);
}

static void dot_timer(shell *sh, int nArg, char **azArg) {
  (void)nArg;
  dot_bool(sh, ".timer", azArg[1], &sh->bTimer);
}

static void dot_quit(shell *sh, int nArg, char **azArg) {
  (void)nArg, (void)azArg;
  sh->bQuit = 1;
}

/* Print column 0 of every row of zSql (bound ?1 = zPattern or NULL). */
static void print_rows(shell *sh, const char *zSql, const char *zPattern,
                       const char *zSuffix) {
  sqlite3_stmt *pStmt = NULL;
  int rc = sqlite3_prepare_v2(sh->db, zSql, -1, &pStmt, NULL);
  if (rc == SQLITE_OK) {
    if (zPattern) sqlite3_bind_text(pStmt, 1, zPattern, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
      fprintf(sh->out, "%s%s\n", (const char *)sqlite3_column_text(pStmt, 0),
              zSuffix);
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) shell_error(sh, "%s", sqlite3_errmsg(sh->db));
  sqlite3_finalize(pStmt);
}

/* Tables and views, without SQLite's own and annex's shadow tables. */
static void dot_tables(shell *sh, int nArg, char **azArg) {
  print_rows(sh,
             "SELECT name FROM pragma_table_list WHERE schema = 'main' "
             "AND type IN ('table', 'view', 'virtual') "
             "AND name NOT LIKE 'sqlite_%' AND (?1 IS NULL OR name LIKE ?1) "
             "ORDER BY name",
             nArg > 1 ? azArg[1] : NULL, "");
}

static void dot_schema(shell *sh, int nArg, char **azArg) {
  print_rows(sh,
             "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL "
             "AND name NOT LIKE 'sqlite_%' AND tbl_name NOT IN "
             "(SELECT name FROM pragma_table_list WHERE schema = 'main' AND "
             "type = 'shadow') AND (?1 IS NULL OR tbl_name LIKE ?1) "
             "ORDER BY rowid",
             nArg > 1 ? azArg[1] : NULL, ";");
}

/* annex_info('TABLE'), keys aligned, byte counts also in KiB / MiB. */
static void dot_info(shell *sh, int nArg, char **azArg) {
  sqlite3_stmt *pStmt = NULL;
  int rc, nW = 0;
  (void)nArg;
  rc = sqlite3_prepare_v2(sh->db, "SELECT key, value FROM annex_info(?1)", -1,
                          &pStmt, NULL);
  if (rc != SQLITE_OK) goto fail;
  sqlite3_bind_text(pStmt, 1, azArg[1], -1, SQLITE_STATIC);
  /* two passes: width of the keys, then the lines */
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    int w = sqlite3_column_bytes(pStmt, 0);
    if (w > nW) nW = w;
  }
  if (rc != SQLITE_DONE) goto fail;
  sqlite3_reset(pStmt);
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const char *zKey = (const char *)sqlite3_column_text(pStmt, 0);
    int t = sqlite3_column_type(pStmt, 1);
    const char *zVal = (const char *)sqlite3_column_text(pStmt, 1);
    fprintf(sh->out, "%-*s  %s", nW, zKey ? zKey : "", zVal ? zVal : "");
    if (t == SQLITE_INTEGER && zKey &&
        (strncmp(zKey, "bytes_", 6) == 0 || strncmp(zKey, "memory_", 7) == 0)) {
      double b = (double)sqlite3_column_int64(pStmt, 1);
      if (b >= 1024 * 1024) fprintf(sh->out, "  (%.1f MiB)", b / 1048576.0);
      else if (b >= 1024) fprintf(sh->out, "  (%.1f KiB)", b / 1024.0);
    }
    fputc('\n', sh->out);
  }
  if (rc != SQLITE_DONE) goto fail;
  sqlite3_finalize(pStmt);
  return;
fail:
  shell_error(sh, "%s", sqlite3_errmsg(sh->db));
  sqlite3_finalize(pStmt);
}

typedef struct dotcmd {
  const char *zName;
  void (*x)(shell *, int, char **);
  int nMin, nMax;       /* arguments after the name */
  const char *zUsage;   /* arguments, for .help and errors */
  const char *zHelp;
} dotcmd;

static const dotcmd aCmd[] = {
  {"open", dot_open, 1, 1, "FILE", "close this database and open FILE"},
  {"read", dot_read, 1, 1, "FILE", "run the SQL and dot commands in FILE"},
  {"mode", dot_mode, 0, 1, "list|box|table|csv|json|line",
   "how results print"},
  {"headers", dot_headers, 1, 1, "on|off", "column names in list and csv"},
  {"timer", dot_timer, 1, 1, "on|off", "print the run time of each statement"},
  {"tables", dot_tables, 0, 1, "[PATTERN]", "list tables and views (LIKE)"},
  {"schema", dot_schema, 0, 1, "[PATTERN]", "show CREATE statements"},
  {"info", dot_info, 1, 1, "TABLE", "facts about an annex table (annex_info)"},
  {"import-vectors", dot_import_vectors, 2, 3, "FILE TABLE [COLUMN]",
   "load .fvecs .bvecs .npy .csv .jsonl into TABLE (created if missing)"},
  {"export-vectors", dot_export_vectors, 2, 3, "TABLE FILE [COLUMN]",
   "write TABLE's vectors to .fvecs .npy .csv or .jsonl, by rowid"},
  {"recall", dot_recall, 3, 4, "TABLE QUERIES GROUNDTRUTH [K]",
   "recall@K (default 10), QPS and latency against .fvecs/.ivecs files"},
  {"help", dot_help, 0, 0, "", "this text"},
  {"quit", dot_quit, 0, 0, "", "leave the shell"},
  {"exit", dot_quit, 0, 0, "", "leave the shell"},
};
#define N_CMD ((int)(sizeof aCmd / sizeof aCmd[0]))

static void dot_help(shell *sh, int nArg, char **azArg) {
  (void)nArg, (void)azArg;
  for (int i = 0; i < N_CMD; i++) {
    char zHead[64];
    snprintf(zHead, sizeof zHead, ".%s %s", aCmd[i].zName, aCmd[i].zUsage);
    fprintf(sh->out, "%-38s %s\n", zHead, aCmd[i].zHelp);
  }
  fprintf(sh->out,
          "\nSQL ends with ';'. Vector BLOBs from an annex table print as "
          "[x, y, ...];\nother BLOBs as X'hex'. Tables made by "
          ".import-vectors number their rows\nfrom rowid 1 in file order "
          "(rowid = row + 1).\n");
}

void dot_command(shell *sh, const char *zLine) {
  char *azArg[MAX_ARGS];
  char *z = sqlite3_mprintf("%s", zLine);
  int nArg;
  const char *zName;
  if (z == NULL) {
    shell_error(sh, "out of memory");
    return;
  }
  nArg = split_args(z, azArg);
  if (nArg <= 0) {
    shell_error(sh, nArg < 0 ? "unterminated quote or too many arguments"
                             : "empty command");
    sqlite3_free(z);
    return;
  }
  zName = azArg[0] + 1; /* past the '.' */
  for (int i = 0; i < N_CMD; i++) {
    if (strcmp(zName, aCmd[i].zName) != 0) continue;
    if (nArg - 1 < aCmd[i].nMin || nArg - 1 > aCmd[i].nMax) {
      shell_error(sh, "usage: .%s %s", aCmd[i].zName, aCmd[i].zUsage);
    } else {
      aCmd[i].x(sh, nArg, azArg);
    }
    sqlite3_free(z);
    return;
  }
  shell_error(sh, "unknown command \"%s\"; enter \".help\" for the list",
              azArg[0]);
  sqlite3_free(z);
}
