/*
** annex.h — public interface of the annex SQLite extension.
**
** annex is a virtual table module that turns one SQLite database file into
** a vector database. Load it at run time (".load ./annex" in the sqlite3
** shell, sqlite3_load_extension() from C, or your driver's load_extension),
** or link the static library and register it on a connection:
**
**   #include "annex.h"
**   sqlite3_annex_init(db, &zErrMsg, NULL);       // one connection
**   sqlite3_auto_extension((void (*)(void))sqlite3_annex_init);  // all
*/
#ifndef ANNEX_H
#define ANNEX_H

#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the annex module, annex_info and the annex_* functions on db.
** Returns SQLITE_OK or an error code with *pzErrMsg set (sqlite3_malloc). */
int sqlite3_annex_init(sqlite3 *db, char **pzErrMsg,
                       const sqlite3_api_routines *pApi);

/* Progress of long index operations ('rebuild', a large commit into an
** HNSW table, IVF training, 'optimize'): the handler is called on the
** thread that runs the operation, with the table's name, a phase such as
** "hnsw build", and the units done out of nTotal; a last call with
** nTotal = -1 says the phase ended. Process-wide; NULL removes it. Only
** for applications that link annex (the loadable annex.so exports
** sqlite3_annex_init alone; from SQL, annex_info shows the same progress
** to any connection of the process). */
typedef void (*annex_progress_fn)(void *pArg, const char *zTable,
                                  const char *zPhase, sqlite3_int64 nDone,
                                  sqlite3_int64 nTotal);
void annex_progress_handler(annex_progress_fn xHandler, void *pArg);

#ifdef __cplusplus
}
#endif

#endif /* ANNEX_H */
