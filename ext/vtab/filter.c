/*
** filter.c — evaluate a k-NN query's metadata and rowid constraints.
**
** The constraints become one SELECT on T_rows (so comparisons follow
** SQLite's own type affinity and collation rules exactly), and the slots of
** the matching rows become a bitmap that the scan consults before scoring.
** IN lists arrive whole (sqlite3_vtab_in) and become IN (?, ?, ...).
*/
#include "annex_int.h"

#include <stdio.h>
#include <string.h>

static const char *op_sql(char cOp) {
  switch (cOp) {
    case 'a': case 'Q': return "=";
    case 'b': return ">";
    case 'c': return "<=";
    case 'd': return "<";
    case 'e': return ">=";
    case 'f': return "!=";
    case 'j': return "IS";
    case 'k': return "IS NOT";
  }
  return NULL;
}

static int is_filter(char cOp) {
  return (cOp >= 'a' && cOp <= 'k') || cOp == 'P' || cOp == 'Q';
}

/* Append one term's SQL; binds are collected in order into apBind, as
** copies: sqlite3_vtab_in_next() reuses one value for every element, so a
** pointer to an IN element is stale after the next call. */
static int append_term(sqlite3_str *s, const annex_term *t, sqlite3_value *v,
                       sqlite3_value ***papBind, int *pnBind, int *pnAlloc) {
  char zCol[24];
  if (t->iCol < 0) snprintf(zCol, sizeof(zCol), "rowid");
  else snprintf(zCol, sizeof(zCol), "c%d", t->iCol);
  if (t->cOp == 'g' || t->cOp == 'h') {
    sqlite3_str_appendf(s, "%s IS %sNULL", zCol, t->cOp == 'h' ? "NOT " : "");
    return SQLITE_OK;
  }
  if (t->cOp == 'i' || t->cOp == 'P') {
    sqlite3_value *pEl = NULL;
    int rc, n = 0;
    sqlite3_str_appendf(s, "%s IN (", zCol);
    for (rc = sqlite3_vtab_in_first(v, &pEl); rc == SQLITE_OK && pEl;
         rc = sqlite3_vtab_in_next(v, &pEl)) {
      if (*pnBind == *pnAlloc) {
        int nNew = *pnAlloc ? 2 * *pnAlloc : 16;
        sqlite3_value **aNew =
            sqlite3_realloc64(*papBind, sizeof(sqlite3_value *) * (size_t)nNew);
        if (aNew == NULL) return SQLITE_NOMEM;
        *papBind = aNew;
        *pnAlloc = nNew;
      }
      if (((*papBind)[*pnBind] = sqlite3_value_dup(pEl)) == NULL) {
        return SQLITE_NOMEM;
      }
      (*pnBind)++;
      sqlite3_str_appendall(s, n++ ? ",?" : "?");
    }
    if (rc != SQLITE_OK && rc != SQLITE_DONE) return rc;
    sqlite3_str_appendall(s, n ? ")" : "NULL)");
    return SQLITE_OK;
  }
  if (*pnBind == *pnAlloc) {
    int nNew = *pnAlloc ? 2 * *pnAlloc : 16;
    sqlite3_value **aNew =
        sqlite3_realloc64(*papBind, sizeof(sqlite3_value *) * (size_t)nNew);
    if (aNew == NULL) return SQLITE_NOMEM;
    *papBind = aNew;
    *pnAlloc = nNew;
  }
  if (((*papBind)[*pnBind] = sqlite3_value_dup(v)) == NULL) {
    return SQLITE_NOMEM;
  }
  (*pnBind)++;
  sqlite3_str_appendf(s, "%s %s ?", zCol, op_sql(t->cOp));
  return SQLITE_OK;
}

/* Run the SELECT and set the bits of the matching slots. */
static int fill_bitmap(annex_table *p, const char *zSql, sqlite3_value **apBind,
                       int nBind, unsigned char *a, sqlite3_int64 nSlots,
                       sqlite3_int64 *pnAllowed) {
  sqlite3_stmt *pStmt = NULL;
  int rc = sqlite3_prepare_v2(p->db, zSql, -1, &pStmt, NULL);
  if (rc == SQLITE_ERROR && nBind > 999) {
    annex_set_error(&p->base, "too many values in IN lists (%d)", nBind);
  }
  for (int i = 0; rc == SQLITE_OK && i < nBind; i++) {
    rc = sqlite3_bind_value(pStmt, i + 1, apBind[i]);
  }
  while (rc == SQLITE_OK && sqlite3_step(pStmt) == SQLITE_ROW) {
    sqlite3_int64 iSlot = sqlite3_column_int64(pStmt, 0);
    if (iSlot < 0 || iSlot >= nSlots) {
      rc = SQLITE_CORRUPT_VTAB;
      break;
    }
    if (!(a[iSlot >> 3] & (1u << (iSlot & 7)))) (*pnAllowed)++;
    a[iSlot >> 3] |= (unsigned char)(1u << (iSlot & 7));
  }
  if (rc == SQLITE_OK) rc = sqlite3_finalize(pStmt);
  else sqlite3_finalize(pStmt);
  return rc;
}

int annex_filter_build(annex_table *p, const annex_term *aTerm, int nTerm,
                       sqlite3_value **argv, unsigned char **paAllowed,
                       sqlite3_int64 *pnSlots, sqlite3_int64 *pnAllowed) {
  sqlite3_str *s;
  sqlite3_value **apBind = NULL;
  int nBind = 0, nAlloc = 0, nFilter = 0, rc = SQLITE_OK;
  unsigned char *a = NULL;
  char *zSql;
  *paAllowed = NULL;
  *pnSlots = *pnAllowed = 0;
  for (int i = 0; i < nTerm; i++) nFilter += is_filter(aTerm[i].cOp);
  if (nFilter == 0) return SQLITE_OK;
  s = sqlite3_str_new(p->db);
  sqlite3_str_appendf(s, "SELECT slot FROM \"%w\".\"%w_rows\" WHERE ", p->zDb,
                      p->zName);
  for (int i = 0, n = 0; i < nTerm && rc == SQLITE_OK; i++) {
    if (!is_filter(aTerm[i].cOp)) continue;
    if (n++) sqlite3_str_appendall(s, " AND ");
    rc = append_term(s, &aTerm[i], argv[i], &apBind, &nBind, &nAlloc);
  }
  zSql = annex_str_finish(s);
  if (zSql == NULL && rc == SQLITE_OK) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = annex_storage_slots(p, pnSlots);
  if (rc == SQLITE_OK) {
    a = sqlite3_malloc64((size_t)(*pnSlots / 8 + 1));
    if (a == NULL) rc = SQLITE_NOMEM;
    else memset(a, 0, (size_t)(*pnSlots / 8 + 1));
  }
  if (rc == SQLITE_OK) {
    rc = fill_bitmap(p, zSql, apBind, nBind, a, *pnSlots, pnAllowed);
  }
  sqlite3_free(zSql);
  for (int i = 0; i < nBind; i++) sqlite3_value_free(apBind[i]);
  sqlite3_free(apBind);
  if (rc != SQLITE_OK) {
    sqlite3_free(a);
    return rc;
  }
  *paAllowed = a;
  return SQLITE_OK;
}
