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

#ifdef __cplusplus
}
#endif

#endif /* ANNEX_H */
