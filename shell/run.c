/*
** run.c — running SQL text in the shell.
**
** Owns: splitting a chunk of SQL into statements (sqlite3_prepare_v2's
** tail), stepping each through output.c, reporting failures as
** "Error: ..." (with "near line N" when the SQL came from a script), the
** .timer line, and shell_error itself. The first failing statement of a
** chunk stops the rest of that chunk, as in sqlite3.
*/
#define _POSIX_C_SOURCE 200809L
#include "shell.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

double shell_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void shell_error(shell *sh, const char *zFmt, ...) {
  va_list ap;
  char *z;
  va_start(ap, zFmt);
  z = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  fflush(sh->out);
  if (sh->zSrc) {
    fprintf(stderr, "Error: near line %d: %s\n", sh->iSrcLine,
            z ? z : "out of memory");
  } else {
    fprintf(stderr, "Error: %s\n", z ? z : "out of memory");
  }
  sqlite3_free(z);
  sh->nErr++;
}

static double cpu_seconds(int bSys) {
  struct rusage ru;
  const struct timeval *tv = bSys ? &ru.ru_stime : &ru.ru_utime;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (double)tv->tv_sec + (double)tv->tv_usec * 1e-6;
}

static int count_lines(const char *zFrom, const char *zTo) {
  int n = 0;
  for (; zFrom < zTo; zFrom++) n += *zFrom == '\n';
  return n;
}

int shell_run_sql(shell *sh, const char *zSql) {
  const char *zTail = zSql;
  int iLine0 = sh->iSrcLine, rc = 0;
  while (zTail && *zTail) {
    sqlite3_stmt *pStmt = NULL;
    const char *zNext = NULL;
    double t0 = 0, u0 = 0, s0 = 0;
    const char *zStart = zTail;
    int src;
    /* skip leading blanks so the line number is the statement's own */
    while (*zStart == ' ' || *zStart == '\t' || *zStart == '\n' ||
           *zStart == '\r') zStart++;
    sh->iSrcLine = iLine0 + count_lines(zSql, zStart);
    src = sqlite3_prepare_v2(sh->db, zStart, -1, &pStmt, &zNext);
    if (src != SQLITE_OK) {
      shell_error(sh, "%s", sqlite3_errmsg(sh->db));
      rc = -1;
      break;
    }
    zTail = zNext;
    if (pStmt == NULL) continue; /* a comment or blanks */
    if (sh->bTimer) {
      t0 = shell_now();
      u0 = cpu_seconds(0);
      s0 = cpu_seconds(1);
    }
    src = output_statement(sh, pStmt);
    if (src != SQLITE_DONE) {
      shell_error(sh, "%s", src == SQLITE_NOMEM && sqlite3_errcode(sh->db) !=
                                SQLITE_NOMEM ? "out of memory"
                                             : sqlite3_errmsg(sh->db));
      sqlite3_finalize(pStmt);
      rc = -1;
      break;
    }
    if (sqlite3_finalize(pStmt) != SQLITE_OK) {
      shell_error(sh, "%s", sqlite3_errmsg(sh->db));
      rc = -1;
      break;
    }
    if (sh->bTimer) {
      fprintf(sh->out, "Run Time: real %.3f user %.6f sys %.6f\n",
              shell_now() - t0, cpu_seconds(0) - u0, cpu_seconds(1) - s0);
    }
  }
  sh->iSrcLine = iLine0;
  return rc;
}
