/*
** lineedit.h — reading lines typed at a terminal, with history.
**
** Owns: the choice between libedit (line editing, arrow-key history,
** history kept in ~/.annex_history or $ANNEX_HISTORY) and a plain fgets
** reader, made at build time (ANNEX_SHELL_HAVE_LIBEDIT, see
** shell/CMakeLists.txt). Used only when standard input is a terminal.
*/
#ifndef ANNEX_LINEEDIT_H
#define ANNEX_LINEEDIT_H

/* Load the history. Call once before the first lineedit_read. */
void lineedit_open(void);
/* Read one line after printing zPrompt; malloc'ed, without the newline,
** or NULL at end of input. */
char *lineedit_read(const char *zPrompt);
/* Add one entry (a whole statement or dot command) to the history. */
void lineedit_add_history(const char *zEntry);
/* Save the history and release it. */
void lineedit_close(void);
/* "libedit" or "fgets", for the banner. */
const char *lineedit_kind(void);

#endif /* ANNEX_LINEEDIT_H */
