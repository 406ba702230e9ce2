/*
** shell.h — the state of the annex shell and the seams between its files.
**
** Owns: the `shell` struct (connection, output settings, error count) and
** the declarations each shell .c file offers the others, one section per
** file. The program is cut as:
**
**   main.c      command line, input loop (terminal, pipe, .read), exit codes
**   run.c       running SQL text: prepare / step / errors / .timer
**   output.c    result modes: list, box, table, csv, json, line
**   dot.c       dot-command parsing and the general commands (.info too)
**   vecdot.c    .import-vectors, .export-vectors
**   recall.c    .recall
**   vecio.c     vector file formats (.fvecs .bvecs .ivecs .npy csv jsonl)
**   vcol.c      finding an annex table's vector column from its declaration
**   progress.c  the terminal progress bar (progress.h)
**   lineedit.c  line editing and history (libedit) or plain fgets
*/
#ifndef ANNEX_SHELL_H
#define ANNEX_SHELL_H

#include <sqlite3.h>
#include <stdio.h>

#define SHELL_VERSION "0.1.0"

typedef enum shell_mode {
  MODE_LIST = 0,
  MODE_BOX,
  MODE_TABLE,
  MODE_CSV,
  MODE_JSON,
  MODE_LINE
} shell_mode;

typedef struct shell {
  sqlite3 *db;
  char *zDbName;     /* the open file (sqlite3_malloc) */
  shell_mode mode;
  int bHeaders;      /* .headers on (list and csv; other modes always) */
  int bTimer;        /* .timer on */
  int bBail;         /* -bail: stop at the first error */
  int bInteractive;  /* reading from a terminal */
  int nErr;          /* failed statements and commands so far */
  int bQuit;         /* .quit / .exit seen */
  int nReadDepth;    /* nesting of .read */
  /* Where the SQL being run came from, for "near line N" in errors. */
  const char *zSrc;  /* NULL: a command-line argument or the terminal */
  int iSrcLine;      /* line of the statement's first line in zSrc */
  FILE *out;         /* results (stdout) */
} shell;

/* Report an error: "Error: ..." (with "near line N" when reading a script)
** on stderr, and count it. */
void shell_error(shell *sh, const char *zFmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- main.c -------------------------------------------------------- */

/* Run every line of f (SQL and dot commands) as a script named zName. */
void shell_process_file(shell *sh, FILE *f, const char *zName);

/* 1 after Ctrl-C in an interactive session, until the next prompt; long
** loops (imports, .recall) check it between rows. */
int shell_interrupted(void);

/* Open zFile as the shell's database (closing the previous one only when
** the new one opened). Returns 0 or -1 (error reported). */
int shell_open_db(shell *sh, const char *zFile);

/* ---- run.c --------------------------------------------------------- */

/* Run every statement of zSql, printing results in sh->mode. Returns 0
** when all succeeded, -1 after the first failure (reported, counted). */
int shell_run_sql(shell *sh, const char *zSql);

/* Seconds on a monotonic clock. */
double shell_now(void);

/* ---- output.c ------------------------------------------------------ */

/* Step pStmt to the end, printing its rows in sh->mode. Returns SQLITE_DONE
** or the error code of the failed step. */
int output_statement(shell *sh, sqlite3_stmt *pStmt);

/* Parse a mode name; -1 when unknown. */
int output_mode_from_name(const char *zName);
const char *output_mode_name(shell_mode m);

/* ---- dot.c --------------------------------------------------------- */

/* Run one dot-command line (starting with '.'). */
void dot_command(shell *sh, const char *zLine);

/* ---- vecdot.c ------------------------------------------------------ */

void dot_import_vectors(shell *sh, int nArg, char **azArg);
void dot_export_vectors(shell *sh, int nArg, char **azArg);

/* ---- recall.c ------------------------------------------------------ */

void dot_recall(shell *sh, int nArg, char **azArg);

/* ---- vcol.c -------------------------------------------------------- */

typedef enum vcol_elem { VCOL_FLOAT = 0, VCOL_INT8, VCOL_BIT } vcol_elem;

typedef struct vcol {
  char zName[256];   /* the vector column's name, unquoted */
  vcol_elem eElem;
  int nDim;          /* dimensions (bits for bit[N]) */
} vcol;

/* Find the vector column of annex table zTable in schema zSchema (NULL:
** "main"). Returns 1 when zTable is an annex table (and fills *p), 0 when
** it exists but is not one or does not exist, -1 on an SQL error. */
int vcol_find(sqlite3 *db, const char *zSchema, const char *zTable, vcol *p);

/* Bytes one value of the column occupies. */
int vcol_bytes(const vcol *p);
/* "float", "int8", "bit" */
const char *vcol_elem_name(vcol_elem e);
/* The vcol of main.zTable, checked against an optional column name zCol.
** 0, or -1 after reporting that it is no annex table / not its column. */
int vcol_require(shell *sh, const char *zTable, const char *zCol, vcol *v);

#endif /* ANNEX_SHELL_H */
