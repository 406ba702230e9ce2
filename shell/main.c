/*
** main.c — the annex command-line shell: entry point and input loop.
**
** Owns: the command line (options, DATABASE, SQL arguments), registering
** annex on every connection (sqlite3_auto_extension), opening databases,
** reading input — the terminal through lineedit.c with the prompts
** "annex> " and "   ...> ", or a script (standard input when it is not a
** terminal, .read FILE) line by line — and gathering lines into complete
** statements with sqlite3_complete. Dot commands are lines starting with
** '.' between statements. Exit status: 0 when everything succeeded, 1 when
** a statement or command failed, 2 for a usage error.
*/
#define _POSIX_C_SOURCE 200809L
#include "annex.h"
#include "lineedit.h"
#include "progress.h"
#include "shell.h"

#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Index builds ('rebuild', big commits, training) report their progress
** through annex_progress_handler: draw it as a progress bar (progress.h
** draws nothing when stderr is not a terminal). */
static progress g_build;
static int g_bBuilding;

static void on_index_progress(void *pArg, const char *zTable,
                              const char *zPhase, sqlite3_int64 nDone,
                              sqlite3_int64 nTotal) {
  (void)pArg;
  (void)zTable;
  if (nTotal < 0) {
    if (g_bBuilding) progress_end(&g_build);
    g_bBuilding = 0;
    return;
  }
  if (!g_bBuilding || strcmp(g_build.zLabel, zPhase) != 0) {
    if (g_bBuilding) progress_end(&g_build);
    progress_begin(&g_build, zPhase, (double)nTotal, "rows");
    g_bBuilding = 1;
  }
  progress_step(&g_build, (double)nDone, nDone);
}

static sqlite3 *volatile pInterruptDb = NULL;
static volatile sig_atomic_t bGotSigint = 0;

static void on_sigint(int sig) {
  (void)sig;
  bGotSigint = 1;
  if (pInterruptDb) sqlite3_interrupt(pInterruptDb);
}

int shell_interrupted(void) { return bGotSigint != 0; }

int shell_open_db(shell *sh, const char *zFile) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(zFile, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_URI, NULL);
  char *zName;
  if (rc != SQLITE_OK) {
    shell_error(sh, "cannot open \"%s\": %s", zFile,
                db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return -1;
  }
  zName = sqlite3_mprintf("%s", zFile);
  if (zName == NULL) {
    sqlite3_close(db);
    shell_error(sh, "out of memory");
    return -1;
  }
  if (sh->db && sqlite3_close(sh->db) != SQLITE_OK) {
    shell_error(sh, "closing %s: %s", sh->zDbName, sqlite3_errmsg(sh->db));
  }
  sqlite3_free(sh->zDbName);
  sh->db = db;
  sh->zDbName = zName;
  pInterruptDb = db;
  return 0;
}

/* ------------------------------------------------ statement gathering */

typedef struct linebuf {
  char *z;
  size_t n, cap;
} linebuf;

static int linebuf_append(linebuf *b, const char *z) {
  size_t m = strlen(z);
  if (b->n + m + 2 > b->cap) {
    size_t cap = (b->n + m + 2) * 2;
    char *zNew = realloc(b->z, cap);
    if (zNew == NULL) return -1;
    b->z = zNew;
    b->cap = cap;
  }
  memcpy(b->z + b->n, z, m);
  b->n += m;
  b->z[b->n++] = '\n';
  b->z[b->n] = 0;
  return 0;
}

static void linebuf_clear(linebuf *b) {
  b->n = 0;
  if (b->z) b->z[0] = 0;
}

/* 1 when z holds nothing but blanks and complete comments. */
static int only_blanks_and_comments(const char *z) {
  for (;;) {
    while (*z == ' ' || *z == '\t' || *z == '\n' || *z == '\r' || *z == '\f') {
      z++;
    }
    if (z[0] == '-' && z[1] == '-') {
      while (*z && *z != '\n') z++;
    } else if (z[0] == '/' && z[1] == '*') {
      const char *e = strstr(z + 2, "*/");
      if (e == NULL) return 0;
      z = e + 2;
    } else {
      return *z == 0;
    }
  }
}

static int is_dot_line(const char *z) {
  while (*z == ' ' || *z == '\t') z++;
  return *z == '.';
}

/* One line of input: a dot command, or part of a statement in *pBuf.
** zLine has no newline. Returns 1 when a statement or command ran. */
static int feed_line(shell *sh, linebuf *pBuf, const char *zLine,
                     int iLine) {
  if (pBuf->n == 0 && is_dot_line(zLine)) {
    sh->iSrcLine = iLine;
    dot_command(sh, zLine);
    return 1;
  }
  if (pBuf->n == 0) sh->iSrcLine = iLine;
  if (linebuf_append(pBuf, zLine) != 0) {
    shell_error(sh, "out of memory");
    linebuf_clear(pBuf);
    return 0;
  }
  if (only_blanks_and_comments(pBuf->z)) {
    linebuf_clear(pBuf);
    return 0;
  }
  if (sqlite3_complete(pBuf->z)) {
    shell_run_sql(sh, pBuf->z);
    return 1;
  }
  return 0;
}

void shell_process_file(shell *sh, FILE *f, const char *zName) {
  const char *zSrc0 = sh->zSrc;
  int iLine0 = sh->iSrcLine, iLine = 0;
  linebuf buf = {NULL, 0, 0};
  char *zLine = NULL;
  size_t cap = 0;
  ssize_t n;
  sh->zSrc = zName;
  while (!sh->bQuit && !(sh->bBail && sh->nErr) &&
         (n = getline(&zLine, &cap, f)) >= 0) {
    iLine++;
    while (n > 0 && (zLine[n - 1] == '\n' || zLine[n - 1] == '\r')) {
      zLine[--n] = 0;
    }
    if (feed_line(sh, &buf, zLine, iLine)) linebuf_clear(&buf);
  }
  if (ferror(f)) shell_error(sh, "reading %s failed", zName);
  /* a last statement without its ';' */
  if (!sh->bQuit && !(sh->bBail && sh->nErr) && buf.n > 0) {
    shell_run_sql(sh, buf.z);
  }
  free(zLine);
  free(buf.z);
  sh->zSrc = zSrc0;
  sh->iSrcLine = iLine0;
}

/* ----------------------------------------------------- interactive */

static void interactive(shell *sh) {
  linebuf buf = {NULL, 0, 0};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  printf("annex shell %s (SQLite %s, line editing: %s)\n"
         "Enter \".help\" for usage hints.\n",
         SHELL_VERSION, sqlite3_libversion(), lineedit_kind());
  if (strcmp(sh->zDbName, ":memory:") == 0) {
    printf("Connected to a transient in-memory database.\n"
           "Use \".open FILENAME\" to reopen on a persistent database.\n");
  }
  lineedit_open();
  while (!sh->bQuit) {
    char *zLine;
    bGotSigint = 0;
    zLine = lineedit_read(buf.n == 0 ? "annex> " : "   ...> ");
    if (zLine == NULL) {
      if (bGotSigint) { /* ^C at the prompt: drop the partial statement */
        putchar('\n');
        linebuf_clear(&buf);
        continue;
      }
      putchar('\n');
      break;
    }
    if (buf.n == 0 && is_dot_line(zLine)) lineedit_add_history(zLine);
    if (feed_line(sh, &buf, zLine, 0)) {
      if (!is_dot_line(zLine) || buf.n > 0) lineedit_add_history(buf.z);
      linebuf_clear(&buf);
    }
    free(zLine);
    fflush(stdout);
  }
  lineedit_close();
  free(buf.z);
}

/* ------------------------------------------------------------- main */

static void usage(FILE *f) {
  fprintf(f,
    "usage: annex [OPTIONS] [DATABASE [SQL ...]]\n"
    "  DATABASE  the SQLite file to open (created if missing; default: an\n"
    "            in-memory database)\n"
    "  SQL       statements or dot commands to run, then exit; without them\n"
    "            annex reads standard input (a terminal: interactively)\n"
    "options:\n"
    "  -list -box -table -csv -json -line   output mode (default list)\n"
    "  -header / -noheader                  column names in list and csv\n"
    "  -bail      stop at the first error\n"
    "  -version   print versions and exit\n"
    "  -help      this text\n"
    "exit status: 0 success, 1 a statement or command failed, 2 usage error\n");
}

int main(int argc, char **argv) {
  shell sh;
  int i, rc;
  const char *zDb = ":memory:";
  memset(&sh, 0, sizeof sh);
  sh.out = stdout;
  setlocale(LC_CTYPE, ""); /* UTF-8 line editing; numbers stay "C" */
  for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
    const char *z = argv[i] + (argv[i][1] == '-' ? 2 : 1);
    int m = output_mode_from_name(z);
    if (m >= 0) sh.mode = (shell_mode)m;
    else if (strcmp(z, "header") == 0 || strcmp(z, "headers") == 0) sh.bHeaders = 1;
    else if (strcmp(z, "noheader") == 0) sh.bHeaders = 0;
    else if (strcmp(z, "bail") == 0) sh.bBail = 1;
    else if (strcmp(z, "version") == 0) {
      printf("annex shell %s, SQLite %s\n", SHELL_VERSION,
             sqlite3_libversion());
      return 0;
    } else if (strcmp(z, "help") == 0 || strcmp(z, "h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "annex: unknown option: %s\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (i < argc) zDb = argv[i++];
  annex_progress_handler(on_index_progress, NULL);
  rc = sqlite3_auto_extension((void (*)(void))sqlite3_annex_init);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "Error: cannot register annex: %s\n", sqlite3_errstr(rc));
    return 1;
  }
  if (shell_open_db(&sh, zDb) != 0) return 1;
  if (i < argc) {
    for (; i < argc && !sh.bQuit && !(sh.bBail && sh.nErr); i++) {
      if (is_dot_line(argv[i])) dot_command(&sh, argv[i]);
      else shell_run_sql(&sh, argv[i]);
    }
  } else if (isatty(STDIN_FILENO)) {
    sh.bInteractive = 1;
    interactive(&sh);
    sh.nErr = 0; /* a person saw the errors; the session itself succeeded */
  } else {
    shell_process_file(&sh, stdin, "stdin");
  }
  pInterruptDb = NULL;
  if (sqlite3_close(sh.db) != SQLITE_OK) {
    fprintf(stderr, "Error: closing the database: %s\n", sqlite3_errmsg(sh.db));
    sh.nErr++;
  }
  sqlite3_free(sh.zDbName);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "Error: writing the output failed\n");
    sh.nErr++;
  }
  return sh.nErr ? 1 : 0;
}
