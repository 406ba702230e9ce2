/*
** lineedit.c — line input for the interactive shell (lineedit.h).
**
** Owns: libedit's readline emulation and its history file when the build
** found libedit (ANNEX_SHELL_HAVE_LIBEDIT), a plain getline reader
** otherwise. History: one entry per statement or dot command, newlines
** turned into spaces so that recalling it with the up arrow gives one
** editable line; at most 1000 entries, saved at exit to $ANNEX_HISTORY,
** else ~/.annex_history (none when HOME is unset).
*/
#define _POSIX_C_SOURCE 200809L
#include "lineedit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef ANNEX_SHELL_HAVE_LIBEDIT
#include <editline/readline.h>

static char *zHistFile = NULL;
static char *zLast = NULL; /* the newest entry */

static char *history_path(void) {
  const char *zEnv = getenv("ANNEX_HISTORY");
  const char *zHome = getenv("HOME");
  char *z;
  size_t n;
  if (zEnv && zEnv[0]) return strdup(zEnv);
  if (zHome == NULL || zHome[0] == 0) return NULL;
  n = strlen(zHome) + sizeof "/.annex_history";
  z = malloc(n);
  if (z) snprintf(z, n, "%s/.annex_history", zHome);
  return z;
}

const char *lineedit_kind(void) { return "libedit"; }

void lineedit_open(void) {
  rl_readline_name = "annex";
  using_history();
  stifle_history(1000);
  zHistFile = history_path();
  if (zHistFile) read_history(zHistFile); /* absent the first time */
}

char *lineedit_read(const char *zPrompt) {
  /* libedit's readline returns a malloc'ed line without the newline */
  return readline(zPrompt);
}

void lineedit_add_history(const char *zEntry) {
  char *z = strdup(zEntry);
  size_t n;
  if (z == NULL) return;
  for (char *c = z; *c; c++) {
    if (*c == '\n' || *c == '\r') *c = ' ';
  }
  n = strlen(z);
  while (n > 0 && z[n - 1] == ' ') z[--n] = 0;
  if (n > 0 && (zLast == NULL || strcmp(z, zLast) != 0)) {
    add_history(z); /* not twice in a row */
    free(zLast);
    zLast = z;
    return;
  }
  free(z);
}

void lineedit_close(void) {
  if (zHistFile) {
    if (write_history(zHistFile) != 0) {
      fprintf(stderr, "annex: could not save the history to %s\n", zHistFile);
    }
  }
  clear_history();
  free(zHistFile);
  free(zLast);
  zHistFile = zLast = NULL;
}

#else /* plain fgets (getline) */

const char *lineedit_kind(void) { return "fgets"; }

void lineedit_open(void) {}

char *lineedit_read(const char *zPrompt) {
  char *z = NULL;
  size_t cap = 0;
  ssize_t n;
  fputs(zPrompt, stdout);
  fflush(stdout);
  n = getline(&z, &cap, stdin);
  if (n < 0) {
    if (errno == EINTR) clearerr(stdin); /* ^C: the caller goes on */
    free(z);
    return NULL;
  }
  while (n > 0 && (z[n - 1] == '\n' || z[n - 1] == '\r')) z[--n] = 0;
  return z;
}

void lineedit_add_history(const char *zEntry) { (void)zEntry; }

void lineedit_close(void) {}

#endif
