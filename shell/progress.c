/*
** progress.c — the terminal progress bar declared in progress.h.
**
** Owns: deciding whether to draw (isatty(stderr), ANNEX_PROGRESS), rate
** limiting (10 redraws a second), and formatting the line:
**
**   import [=========>          ]  45.2%  90,400 rows  98.7k rows/s  ETA 0:02
**
** With an unknown total the bar and ETA are left out. The line is drawn
** with '\r' and cleared to the end with ESC[K; progress_end erases it.
*/
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define REDRAW_INTERVAL 0.1 /* seconds */

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int term_columns(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) {
    return ws.ws_col;
  }
  return 80;
}

/* 1234567 -> "1,234,567" */
static void fmt_count(char *z, size_t n, int64_t v) {
  char tmp[32];
  int len = snprintf(tmp, sizeof tmp, "%lld", (long long)(v < 0 ? 0 : v));
  size_t o = 0;
  for (int i = 0; i < len && o + 1 < n; i++) {
    if (i > 0 && (len - i) % 3 == 0 && o + 2 < n) z[o++] = ',';
    z[o++] = tmp[i];
  }
  z[o] = 0;
}

static void fmt_rate(char *z, size_t n, double r) {
  if (r < 1e3) snprintf(z, n, "%.0f", r);
  else if (r < 1e6) snprintf(z, n, "%.1fk", r / 1e3);
  else snprintf(z, n, "%.2fM", r / 1e6);
}

static void fmt_secs(char *z, size_t n, double s) {
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(z, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(z, n, "%ld:%02ld", t / 60, t % 60);
}

static void draw(progress *p, double now) {
  char zCount[32], zRate[32], zTail[160], zEta[32], zBar[128];
  double el = now - p->tStart;
  double rate = el > 0 ? (double)p->nItems / el : 0;
  int cols = term_columns();
  fmt_count(zCount, sizeof zCount, p->nItems);
  fmt_rate(zRate, sizeof zRate, rate);
  if (p->rTotal > 0) {
    double f = p->rDone / p->rTotal;
    if (f < 0) f = 0;
    if (f > 1) f = 1;
    if (f > 0 && f < 1) fmt_secs(zEta, sizeof zEta, el * (1 - f) / f);
    else snprintf(zEta, sizeof zEta, "0:00");
    snprintf(zTail, sizeof zTail, "%5.1f%%  %s %s  %s %s/s  ETA %s",
             100.0 * f, zCount, p->zItems, zRate, p->zItems, zEta);
    int w = cols - 1 - (int)strlen(p->zLabel) - 4 - (int)strlen(zTail);
    if (w > 40) w = 40;
    if (w >= 8) {
      int fill = (int)(f * w);
      for (int i = 0; i < w; i++) {
        zBar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
      }
      zBar[w] = 0;
      fprintf(stderr, "\r%s [%s] %s\033[K", p->zLabel, zBar, zTail);
    } else {
      fprintf(stderr, "\r%s %s\033[K", p->zLabel, zTail);
    }
  } else {
    fmt_secs(zEta, sizeof zEta, el);
    fprintf(stderr, "\r%s  %s %s  %s %s/s  %s\033[K", p->zLabel, zCount,
            p->zItems, zRate, p->zItems, zEta);
  }
  fflush(stderr);
  p->bDrawn = 1;
  p->tLast = now;
}

void progress_begin(progress *p, const char *zLabel, double rTotal,
                    const char *zItems) {
  const char *zEnv = getenv("ANNEX_PROGRESS");
  memset(p, 0, sizeof *p);
  if (zEnv && zEnv[0]) p->bOn = atoi(zEnv) != 0;
  else p->bOn = isatty(STDERR_FILENO);
  snprintf(p->zLabel, sizeof p->zLabel, "%s", zLabel ? zLabel : "");
  snprintf(p->zItems, sizeof p->zItems, "%s", zItems ? zItems : "items");
  p->rTotal = rTotal;
  p->tStart = mono_now();
  p->tLast = p->tStart; /* first draw after one interval: quick work stays silent */
}

void progress_step(progress *p, double rDone, int64_t nItems) {
  double now;
  if (!p->bOn) return;
  p->rDone = rDone;
  p->nItems = nItems;
  now = mono_now();
  if (now - p->tLast >= REDRAW_INTERVAL) draw(p, now);
}

void progress_label(progress *p, const char *zLabel) {
  if (!p->bOn) return;
  snprintf(p->zLabel, sizeof p->zLabel, "%s", zLabel ? zLabel : "");
  if (p->bDrawn) draw(p, mono_now());
}

void progress_end(progress *p) {
  if (p->bOn && p->bDrawn) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
  }
  p->bDrawn = 0;
  p->bOn = 0;
}
