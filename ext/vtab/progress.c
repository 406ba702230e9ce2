/*
** progress.c — progress of long index operations (graph builds, k-means
** training, optimize), visible to annex_info from any connection of the
** process, and to a progress callback the shell can draw.
**
** A small process-wide table of running operations, keyed by the database
** file and the table name, guarded by SQLite's SQLITE_MUTEX_STATIC_APP3.
** Other processes do not see it (annex_info there shows no progress).
*/
#include "ann.h"
#include "../annex.h"

#include <stdio.h>
#include <string.h>

#define PROGRESS_SLOTS 16

typedef struct progress_entry {
  char zKey[600];       /* "<file>\x01<table>", or "" when the slot is free */
  char zPhase[32];      /* what is running: "build", "train", ... */
  sqlite3_int64 nDone;  /* units done */
  sqlite3_int64 nTotal; /* units in all */
} progress_entry;

static progress_entry g_aProgress[PROGRESS_SLOTS];

/* The application's handler (annex.h), under the same mutex. */
static annex_progress_fn g_xHandler;
static void *g_pHandlerArg;

#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
void annex_progress_handler(annex_progress_fn xHandler, void *pArg) {
  sqlite3_mutex *m = sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_APP3);
  sqlite3_mutex_enter(m);
  g_xHandler = xHandler;
  g_pHandlerArg = pArg;
  sqlite3_mutex_leave(m);
}

/* Call the handler outside the mutex (it may take its time drawing). */
static void progress_notify(annex_table *p, const char *zPhase,
                            sqlite3_int64 nDone, sqlite3_int64 nTotal) {
  sqlite3_mutex *m = sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_APP3);
  annex_progress_fn x;
  void *pArg;
  sqlite3_mutex_enter(m);
  x = g_xHandler;
  pArg = g_pHandlerArg;
  sqlite3_mutex_leave(m);
  if (x) x(pArg, p->zName, zPhase, nDone, nTotal);
}

static void progress_key(sqlite3 *db, const char *zDb, const char *zTab,
                         char *zOut, size_t nOut) {
  const char *zFile = sqlite3_db_filename(db, zDb);
  if (zFile == NULL || zFile[0] == 0) {
    snprintf(zOut, nOut, "%p:%s\x01%s", (void *)db, zDb, zTab);
  } else {
    snprintf(zOut, nOut, "%s\x01%s", zFile, zTab);
  }
}

static sqlite3_mutex *progress_mutex(void) {
  return sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_APP3);
}

void annex_progress_set(annex_table *p, const char *zPhase,
                        sqlite3_int64 nDone, sqlite3_int64 nTotal) {
  char zKey[600];
  progress_entry *pFree = NULL, *pHit = NULL;
  sqlite3_mutex *m = progress_mutex();
  progress_key(p->db, p->zDb, p->zName, zKey, sizeof(zKey));
  sqlite3_mutex_enter(m);
  for (int i = 0; i < PROGRESS_SLOTS && pHit == NULL; i++) {
    if (strcmp(g_aProgress[i].zKey, zKey) == 0) pHit = &g_aProgress[i];
    else if (pFree == NULL && g_aProgress[i].zKey[0] == 0) {
      pFree = &g_aProgress[i];
    }
  }
  if (pHit == NULL && pFree) {
    pHit = pFree;
    snprintf(pHit->zKey, sizeof(pHit->zKey), "%s", zKey);
  }
  if (pHit) {
    snprintf(pHit->zPhase, sizeof(pHit->zPhase), "%s", zPhase);
    pHit->nDone = nDone;
    pHit->nTotal = nTotal;
  }
  sqlite3_mutex_leave(m);
  progress_notify(p, zPhase, nDone, nTotal);
}

void annex_progress_clear(annex_table *p) {
  char zKey[600], zPhase[32] = "";
  sqlite3_mutex *m = progress_mutex();
  progress_key(p->db, p->zDb, p->zName, zKey, sizeof(zKey));
  sqlite3_mutex_enter(m);
  for (int i = 0; i < PROGRESS_SLOTS; i++) {
    if (strcmp(g_aProgress[i].zKey, zKey) == 0) {
      memcpy(zPhase, g_aProgress[i].zPhase, sizeof(zPhase));
      g_aProgress[i].zKey[0] = 0;
    }
  }
  sqlite3_mutex_leave(m);
  if (zPhase[0]) progress_notify(p, zPhase, 0, -1);
}

int annex_progress_get(sqlite3 *db, const char *zDb, const char *zTab,
                       char *zPhase, size_t nPhase, sqlite3_int64 *pnDone,
                       sqlite3_int64 *pnTotal) {
  char zKey[600];
  int bFound = 0;
  sqlite3_mutex *m = progress_mutex();
  progress_key(db, zDb, zTab, zKey, sizeof(zKey));
  sqlite3_mutex_enter(m);
  for (int i = 0; i < PROGRESS_SLOTS && !bFound; i++) {
    if (strcmp(g_aProgress[i].zKey, zKey) == 0) {
      snprintf(zPhase, nPhase, "%s", g_aProgress[i].zPhase);
      *pnDone = g_aProgress[i].nDone;
      *pnTotal = g_aProgress[i].nTotal;
      bFound = 1;
    }
  }
  sqlite3_mutex_leave(m);
  return bFound;
}
