/*
** commands.c — FTS5-style commands: INSERT INTO t(t) VALUES('command').
**
**   integrity-check   verify that the shadow tables agree with each other;
**                     the first problem found is reported as an error
**                     (SQLITE_CORRUPT_VTAB) naming the chunk, slot or row.
*/
#include "annex_int.h"
#include "../index/flat.h"

#include <stdarg.h>
#include <string.h>

static int corrupt(annex_table *p, const char *zFmt, ...) {
  va_list ap;
  char *zMsg;
  va_start(ap, zFmt);
  zMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  annex_set_error(&p->base, "annex integrity-check of %s: %s", p->zName,
                  zMsg ? zMsg : "out of memory");
  sqlite3_free(zMsg);
  return SQLITE_CORRUPT_VTAB;
}

/* Row iRowid must exist and point at global slot iSlot. */
static int check_slot(annex_table *p, sqlite3_int64 iChunk, int iPos,
                      sqlite3_int64 iRowid) {
  sqlite3_int64 iSlot = iChunk * p->pConfig->nChunk + iPos, iGot;
  int rc = annex_storage_locate(p, iRowid, &iGot);
  if (rc == SQLITE_DONE) {
    return corrupt(p, "chunk %lld slot %d holds rowid %lld, which is not in "
                   "%s_rows", iChunk, iPos, iRowid, p->zName);
  }
  if (rc == SQLITE_OK && iGot != iSlot) {
    return corrupt(p, "chunk %lld slot %d holds rowid %lld, but %s_rows puts "
                   "that row in slot %lld", iChunk, iPos, iRowid, p->zName,
                   iGot);
  }
  return rc;
}

/* Every live slot of a chunk maps back to its row; no bit past nSlot. */
static int check_chunk(annex_table *p, const annex_chunk *ch,
                       sqlite3_int64 *pnLive) {
  int rc = SQLITE_OK;
  for (int i = 0; i < p->pConfig->nChunk && rc == SQLITE_OK; i++) {
    if (!annex_bit_get(ch->aValid, i)) continue;
    if (i >= ch->nSlot) {
      return corrupt(p, "chunk %lld marks slot %d live, but only %d slots "
                     "were allocated", ch->iChunk, i, ch->nSlot);
    }
    (*pnLive)++;
    rc = check_slot(p, ch->iChunk, i, ch->aRowid[i]);
  }
  return rc;
}

static int count_rows(annex_table *p, sqlite3_int64 *pn) {
  sqlite3_stmt *s = NULL;
  char *zSql = sqlite3_mprintf("SELECT count(*) FROM \"%w\".\"%w_rows\"",
                               p->zDb, p->zName);
  int rc;
  if (zSql == NULL) return SQLITE_NOMEM;
  rc = sqlite3_prepare_v2(p->db, zSql, -1, &s, NULL);
  sqlite3_free(zSql);
  if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    *pn = sqlite3_column_int64(s, 0);
  }
  if (rc == SQLITE_OK) rc = sqlite3_finalize(s);
  return rc;
}

int annex_integrity_check(annex_table *p) {
  annex_chunk_iter *it = NULL;
  annex_chunk ch;
  sqlite3_int64 nLive = 0, nRows = 0, nDims = 0;
  int rc = annex_storage_config_int(p, "dims", &nDims);
  if (rc == SQLITE_OK && nDims != p->pConfig->nDim) {
    return corrupt(p, "%s_config says %lld dimensions, the table declares %d",
                   p->zName, nDims, p->pConfig->nDim);
  }
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK) {
    rc = annex_chunk_iter_next(it, &ch);
    if (rc == SQLITE_ROW) rc = check_chunk(p, &ch, &nLive);
  }
  annex_chunk_iter_close(it);
  if (rc == SQLITE_CORRUPT_VTAB && p->base.zErrMsg == NULL) {
    return corrupt(p, "a chunk is missing, misplaced or has the wrong size");
  }
  if (rc == SQLITE_DONE) rc = count_rows(p, &nRows);
  if (rc == SQLITE_OK && nRows != nLive) {
    return corrupt(p, "%s_rows has %lld rows but the chunks hold %lld live "
                   "vectors", p->zName, nRows, nLive);
  }
  return rc;
}

int annex_command(annex_table *p, sqlite3_value *pCmd) {
  const char *z = (const char *)sqlite3_value_text(pCmd);
  if (z == NULL) return SQLITE_NOMEM;
  if (sqlite3_stricmp(z, "integrity-check") == 0) {
    return annex_integrity_check(p);
  }
  return annex_set_error(&p->base, "unknown command '%s' for %s (commands: "
                         "integrity-check)", z, p->zName);
}
