/*
** commands.c — FTS5-style commands: INSERT INTO t(t) VALUES('command').
**
**   integrity-check   verify that the shadow tables agree with each other
**                     (slots, rowids, valid bits, and each slot's compact
**                     metadata against T_rows); the first problem found is
**                     reported as an error (SQLITE_CORRUPT_VTAB) naming the
**                     chunk, slot or row.
*/
#include "annex_int.h"
#include "ann.h"
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

/* The compact metadata of slot iPos must equal what T_rows holds. pRow is
** positioned on the row: column 0 is its slot, then the non-vector user
** columns in order. */
static int check_meta(annex_table *p, const annex_chunk *ch, int iPos,
                      sqlite3_stmt *pRow) {
  const annex_config *c = p->pConfig;
  int rc = SQLITE_OK, iStmt = 1;
  for (int i = 0; i < c->nCol && rc == SQLITE_OK; i++) {
    annex_mvalue want, got;
    const unsigned char *pV;
    uint64_t u = 0;
    int m = c->aCol[i].iMeta;
    if (c->aCol[i].eKind == ANNEX_COL_VECTOR) continue;
    if (m < 0) {
      iStmt++;
      continue;
    }
    rc = annex_meta_encode(p, i, sqlite3_column_value(pRow, iStmt++), 0,
                           &want);
    if (rc != SQLITE_OK) break;
    got.tag = ch->pMeta[annex_meta_tags_offset(m, c->nChunk) + (size_t)iPos];
    pV = ch->pMeta + annex_meta_values_offset(m, c->nChunk) + 8 * (size_t)iPos;
    for (int b = 7; b >= 0; b--) u = (u << 8) | pV[b];
    got.v = (int64_t)u;
    if (got.tag != want.tag || got.v != want.v) {
      return corrupt(p, "chunk %lld slot %d: the compact copy of column %s "
                     "does not match %s_rows", ch->iChunk, iPos,
                     c->aCol[i].zName, p->zName);
    }
  }
  return rc;
}

/* Row iRowid must exist, point at the slot, and match its compact
** metadata. */
static int check_slot(annex_table *p, const annex_chunk *ch, int iPos,
                      sqlite3_int64 iRowid) {
  sqlite3_int64 iSlot = ch->iChunk * p->pConfig->nChunk + iPos, iGot;
  sqlite3_stmt *pRow;
  int rc = annex_storage_stmt(p, ANNEX_STMT_ROWS_FETCH, &pRow);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(pRow, 1, iRowid);
  if (sqlite3_step(pRow) != SQLITE_ROW) {
    rc = sqlite3_reset(pRow);
    return rc != SQLITE_OK ? rc
                           : corrupt(p, "chunk %lld slot %d holds rowid %lld, "
                                     "which is not in %s_rows", ch->iChunk,
                                     iPos, iRowid, p->zName);
  }
  iGot = sqlite3_column_int64(pRow, 0);
  if (iGot != iSlot) {
    rc = corrupt(p, "chunk %lld slot %d holds rowid %lld, but %s_rows puts "
                 "that row in slot %lld", ch->iChunk, iPos, iRowid, p->zName,
                 iGot);
  } else {
    rc = check_meta(p, ch, iPos, pRow);
  }
  sqlite3_reset(pRow);
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
    rc = check_slot(p, ch, i, ch->aRowid[i]);
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
  sqlite3_int64 nLive = 0, nRows = 0;
  int rc = annex_storage_check_config(p);
  if (rc == SQLITE_OK) rc = annex_chunk_iter_open(p, &it);
  while (rc == SQLITE_OK) {
    rc = annex_chunk_iter_next(it, &ch);
    if (rc == SQLITE_ROW) rc = annex_chunk_check(it, &ch);
    if (rc == SQLITE_OK) rc = check_chunk(p, &ch, &nLive);
  }
  if (rc == SQLITE_DONE) rc = annex_chunk_iter_check_end(it);
  annex_chunk_iter_close(it);
  if (rc == SQLITE_CORRUPT_VTAB && p->base.zErrMsg == NULL) {
    return corrupt(p, "a chunk is missing, misplaced or has the wrong size");
  }
  if (rc == SQLITE_DONE) rc = count_rows(p, &nRows);
  if (rc == SQLITE_OK && nRows != nLive) {
    return corrupt(p, "%s_rows has %lld rows but the chunks hold %lld live "
                   "vectors", p->zName, nRows, nLive);
  }
  if (rc == SQLITE_OK && p->pAnn) rc = p->pAnn->pOps->xIntegrity(p->pAnn);
  return rc;
}

int annex_command(annex_table *p, sqlite3_value *pCmd) {
  const char *z = (const char *)sqlite3_value_text(pCmd);
  if (z == NULL) return SQLITE_NOMEM;
  if (sqlite3_stricmp(z, "integrity-check") == 0) {
    return annex_integrity_check(p);
  }
  if (p->pAnn) {
    int bDone = 0;
    int rc = p->pAnn->pOps->xCommand(p->pAnn, z, &bDone);
    if (bDone || rc != SQLITE_OK) return rc;
  }
  return annex_set_error(&p->base, "unknown command '%s' for %s (commands: "
                         "integrity-check%s)", z, p->zName,
                         p->pAnn ? ", rebuild, optimize" : "");
}
