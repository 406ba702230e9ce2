/*
** annex.c — entry point of the annex extension: sqlite3_annex_init.
**
** Registers, on one connection: the "annex" virtual table module, the
** eponymous "annex_info" table-valued function, and the annex_* scalar
** functions. Built two ways from the same sources: as a loadable extension
** (annex.so, SQLITE_EXTENSION_INIT1 below captures the host's API table)
** and as a static library compiled with SQLITE_CORE for applications that
** link SQLite themselves.
*/
#include "vtab/annex_int.h"
#include "annex.h"

#ifndef SQLITE_CORE
SQLITE_EXTENSION_INIT1
#endif

#include <string.h>

#include "index/alloc.h"

/* Index code (ext/index/) allocates through alloc.h; point it at SQLite's
** allocator so that out-of-memory tests reach it. */
static void *annex_sq_malloc(size_t n) { return sqlite3_malloc64(n); }
static void *annex_sq_realloc(void *p, size_t n) {
  return sqlite3_realloc64(p, n);
}
static void annex_sq_free(void *p) { sqlite3_free(p); }

#if defined(_WIN32)
__declspec(dllexport)
#elif defined(__GNUC__)
__attribute__((visibility("default")))
#endif
int sqlite3_annex_init(sqlite3 *db, char **pzErrMsg,
                       const sqlite3_api_routines *pApi) {
  annex_conn *pConn;
  int rc;
#ifndef SQLITE_CORE
  SQLITE_EXTENSION_INIT2(pApi);
#else
  (void)pApi;
#endif
  if (sqlite3_libversion_number() < 3038000) {
    if (pzErrMsg) {
      *pzErrMsg = sqlite3_mprintf("annex needs SQLite 3.38.0 or newer (this "
                                  "is %s)", sqlite3_libversion());
    }
    return SQLITE_ERROR;
  }
  annex_distance_init();
  {
    static const annex_allocator a = {annex_sq_malloc, annex_sq_realloc,
                                      annex_sq_free};
    annex_alloc_set(&a);
  }
  pConn = sqlite3_malloc64(sizeof(*pConn));
  if (pConn == NULL) return SQLITE_NOMEM;
  memset(pConn, 0, sizeof(*pConn));
  /* On failure, the module's destructor has already freed pConn. */
  rc = annex_register_module(db, pConn);
  if (rc == SQLITE_OK) rc = annex_register_info(db, pConn);
  if (rc == SQLITE_OK) rc = annex_register_knn_batch(db, pConn);
  if (rc == SQLITE_OK) rc = annex_register_functions(db);
  if (rc != SQLITE_OK && pzErrMsg && *pzErrMsg == NULL) {
    *pzErrMsg = sqlite3_mprintf("annex: %s", sqlite3_errmsg(db));
  }
  return rc;
}
