/*
** progress.h — a terminal progress bar, reusable by any long-running step.
**
** Owns: drawing one status line on stderr, redrawn with '\r' at most ten
** times a second, showing a bar, the percentage, items per second and the
** time left. It draws nothing at all when stderr is not a terminal (or
** ANNEX_PROGRESS=0), so scripts and logs never see it; ANNEX_PROGRESS=1
** forces it on. Work is measured in "units" (rows, bytes, ...) for the
** percentage and ETA, and items (rows) are counted separately for the rate,
** so a text file can report progress in bytes read and a rate in rows.
**
**   progress pb;
**   progress_begin(&pb, "import", nTotal, "rows");
**   for (...) progress_step(&pb, nDone, nRows);
**   progress_end(&pb);                 // erases the line
**
** Meant for the shell's imports and recall today, and for index builds
** (`rebuild`, `train`) once the extension reports their progress.
*/
#ifndef ANNEX_PROGRESS_H
#define ANNEX_PROGRESS_H

#include <stdint.h>

typedef struct progress {
  int bOn;            /* drawing (stderr is a terminal) */
  char zLabel[32];
  char zItems[16];    /* what items are called: "rows", "queries" */
  double rTotal;      /* units of work in all (<= 0: unknown) */
  double rDone;
  int64_t nItems;
  double tStart;      /* monotonic seconds */
  double tLast;       /* last redraw */
  int bDrawn;         /* a line is on the screen */
} progress;

void progress_begin(progress *p, const char *zLabel, double rTotal,
                    const char *zItems);
/* Report rDone units and nItems items done so far; redraws when due. */
void progress_step(progress *p, double rDone, int64_t nItems);
/* Change the label (e.g. "commit") and redraw at once. */
void progress_label(progress *p, const char *zLabel);
/* Erase the line. */
void progress_end(progress *p);

#endif /* ANNEX_PROGRESS_H */
