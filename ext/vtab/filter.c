/*
** filter.c — a k-NN query's metadata and rowid constraints.
**
** Two ways to evaluate them:
**  - compiled (annex_filter_compile): the constants get the column's
**    affinity and text constants become dictionary ids, and the scan
**    evaluates the terms on each chunk's compact metadata in C
**    (ext/index/metafilter.c) before any distance is computed. The common
**    case, and the fast one: no SQL runs per row.
**  - SQL (annex_filter_build): the constraints become one SELECT on T_rows,
**    so comparisons follow SQLite's own rules exactly, and the slots of the
**    matching rows become a bitmap. Used for what the compact form cannot
**    decide: text ranges, and the rare values (text in a numeric column,
**    blobs) whose comparison needs their bytes.
** IN lists arrive whole (sqlite3_vtab_in).
*/
#include "annex_int.h"

#include <stdio.h>
#include <stdlib.h>
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

/* The values bound to the SELECT, in parameter order. */
typedef struct bind_list {
  sqlite3_value **a; /* copies (sqlite3_value_dup), owned */
  int n, nAlloc;
} bind_list;

/* Append a copy of v: sqlite3_vtab_in_next() reuses one value for every
** element, so a pointer to an IN element is stale after the next call. */
static int bind_push(bind_list *b, sqlite3_value *v) {
  if (b->n == b->nAlloc) {
    int nNew = b->nAlloc ? 2 * b->nAlloc : 16;
    sqlite3_value **aNew =
        sqlite3_realloc64(b->a, sizeof(sqlite3_value *) * (size_t)nNew);
    if (aNew == NULL) return SQLITE_NOMEM;
    b->a = aNew;
    b->nAlloc = nNew;
  }
  if ((b->a[b->n] = sqlite3_value_dup(v)) == NULL) return SQLITE_NOMEM;
  b->n++;
  return SQLITE_OK;
}

/* Append one term's SQL, collecting its values into b. */
static int append_term(sqlite3_str *s, const annex_term *t, sqlite3_value *v,
                       bind_list *b) {
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
      if (bind_push(b, pEl) != SQLITE_OK) return SQLITE_NOMEM;
      sqlite3_str_appendall(s, n++ ? ",?" : "?");
    }
    if (rc != SQLITE_OK && rc != SQLITE_DONE) return rc;
    sqlite3_str_appendall(s, n ? ")" : "NULL)");
    return SQLITE_OK;
  }
  if (bind_push(b, v) != SQLITE_OK) return SQLITE_NOMEM;
  sqlite3_str_appendf(s, "%s %s ?", zCol, op_sql(t->cOp));
  return SQLITE_OK;
}

/* Make the bitmap *pa (*pnByte bytes) cover slot iSlot, zero-filled. */
static int bitmap_grow(unsigned char **pa, sqlite3_int64 *pnByte,
                       sqlite3_int64 iSlot) {
  sqlite3_int64 nNew = *pnByte * 2;
  unsigned char *a;
  if (iSlot / 8 < *pnByte) return SQLITE_OK;
  if (nNew <= iSlot / 8) nNew = iSlot / 8 + 1;
  if (nNew < 64) nNew = 64;
  a = sqlite3_realloc64(*pa, (sqlite3_uint64)nNew);
  if (a == NULL) return SQLITE_NOMEM;
  memset(a + *pnByte, 0, (size_t)(nNew - *pnByte));
  *pa = a;
  *pnByte = nNew;
  return SQLITE_OK;
}

/* Run the SELECT and set the bits of the matching slots in *pa, grown as
** needed: its size follows the slots T_rows holds, not the slot counter,
** which a corrupt T_config may make huge. Slots at or past nSlots are
** corrupt. */
static int fill_bitmap(annex_table *p, const char *zSql, sqlite3_value **apBind,
                       int nBind, unsigned char **pa, sqlite3_int64 *pnByte,
                       sqlite3_int64 nSlots, sqlite3_int64 *pnAllowed) {
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
    unsigned char *a;
    if (iSlot < 0 || iSlot >= nSlots) {
      rc = SQLITE_CORRUPT_VTAB;
      break;
    }
    rc = bitmap_grow(pa, pnByte, iSlot);
    if (rc != SQLITE_OK) break;
    a = *pa;
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
  bind_list b = {NULL, 0, 0};
  int nFilter = 0, rc = SQLITE_OK;
  unsigned char *a = NULL;
  sqlite3_int64 nSlots = 0, nByte = 0;
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
    rc = append_term(s, &aTerm[i], argv[i], &b);
  }
  zSql = annex_str_finish(s);
  if (zSql == NULL && rc == SQLITE_OK) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = annex_storage_slots(p, &nSlots);
  if (rc == SQLITE_OK) rc = bitmap_grow(&a, &nByte, 0);
  if (rc == SQLITE_OK) {
    rc = fill_bitmap(p, zSql, b.a, b.n, &a, &nByte, nSlots, pnAllowed);
  }
  /* the bitmap covers this many slots (those past it are not allowed) */
  if (rc == SQLITE_OK) *pnSlots = nByte * 8 < nSlots ? nByte * 8 : nSlots;
  sqlite3_free(zSql);
  for (int i = 0; i < b.n; i++) sqlite3_value_free(b.a[i]);
  sqlite3_free(b.a);
  if (rc != SQLITE_OK) {
    sqlite3_free(a);
    return rc;
  }
  *paAllowed = a;
  return SQLITE_OK;
}

/**************************************************************************
** Compiling the terms for the compact per-chunk metadata (metafilter.h).
*/

/* Apply the affinity of metadata column iCol to constant v, as SQLite does
** when it compares the column with a value, into *ppOut (a new value).
** Numeric columns turn number-like text into numbers; text columns turn
** numbers into their text. iCol -1 is the rowid (numeric). */
static int apply_affinity(annex_table *p, int iCol, sqlite3_value *v,
                          sqlite3_value **ppOut) {
  const char *zType = iCol >= 0 ? p->pConfig->aCol[iCol].zType : "INTEGER";
  int eType = sqlite3_value_type(v);
  *ppOut = NULL;
  if (sqlite3_stricmp(zType, "TEXT") == 0) {
    if (eType == SQLITE_INTEGER || eType == SQLITE_FLOAT) {
      sqlite3_stmt *s = NULL;
      int rc = sqlite3_prepare_v2(p->db, "SELECT CAST(? AS TEXT)", -1, &s, 0);
      if (rc == SQLITE_OK) {
        sqlite3_bind_value(s, 1, v);
        if (sqlite3_step(s) == SQLITE_ROW) {
          *ppOut = sqlite3_value_dup(sqlite3_column_value(s, 0));
        }
        rc = sqlite3_finalize(s);
      } else {
        sqlite3_finalize(s);
      }
      if (rc == SQLITE_OK && *ppOut == NULL) rc = SQLITE_NOMEM;
      return rc;
    }
  }
  *ppOut = sqlite3_value_dup(v);
  if (*ppOut == NULL) return SQLITE_NOMEM;
  if (eType == SQLITE_TEXT && sqlite3_stricmp(zType, "TEXT") != 0) {
    sqlite3_value_numeric_type(*ppOut); /* converts number-like text */
  }
  return SQLITE_OK;
}

static int encode_constant(annex_table *p, int iCol, sqlite3_value *v,
                           annex_mvalue *pOut) {
  sqlite3_value *pConv;
  int rc = apply_affinity(p, iCol, v, &pConv);
  if (rc == SQLITE_OK) rc = annex_meta_encode(p, iCol, pConv, 0, pOut);
  sqlite3_value_free(pConv);
  return rc;
}

static int rowid_cmp(const void *a, const void *b) {
  int64_t x = ((const annex_mvalue *)a)->v, y = ((const annex_mvalue *)b)->v;
  return x < y ? -1 : x > y;
}

/* Append one constant to t->aVal (capacity grows by doubling). */
static int term_push(annex_mterm *t, int *pnAlloc, const annex_mvalue *v) {
  if (t->nVal == *pnAlloc) {
    int nNew = *pnAlloc ? 2 * *pnAlloc : 4;
    annex_mvalue *aNew =
        sqlite3_realloc64(t->aVal, sizeof(annex_mvalue) * (size_t)nNew);
    if (aNew == NULL) return SQLITE_NOMEM;
    t->aVal = aNew;
    *pnAlloc = nNew;
  }
  t->aVal[t->nVal++] = *v;
  return SQLITE_OK;
}

/* A rowid constant: integer-valued numbers only; others match no row. */
static int push_rowid(annex_mterm *t, int *pnAlloc, sqlite3_value *v) {
  annex_mvalue mv = {ANNEX_MT_INT, 0};
  sqlite3_value *pNum = sqlite3_value_dup(v);
  int eType, rc = SQLITE_OK;
  if (pNum == NULL) return SQLITE_NOMEM;
  eType = sqlite3_value_numeric_type(pNum);
  if (eType == SQLITE_INTEGER) {
    mv.v = sqlite3_value_int64(pNum);
    rc = term_push(t, pnAlloc, &mv);
  } else if (eType == SQLITE_FLOAT) {
    double r = sqlite3_value_double(pNum);
    if (r >= -9223372036854775808.0 && r < 9223372036854775808.0 &&
        (double)(int64_t)r == r) {
      mv.v = (int64_t)r;
      rc = term_push(t, pnAlloc, &mv);
    }
  }
  sqlite3_value_free(pNum);
  return rc;
}

static annex_mop mop_of(char cOp) {
  switch (cOp) {
    case 'a': return ANNEX_MOP_EQ;
    case 'b': return ANNEX_MOP_GT;
    case 'c': return ANNEX_MOP_LE;
    case 'd': return ANNEX_MOP_LT;
    case 'e': return ANNEX_MOP_GE;
    case 'f': return ANNEX_MOP_NE;
    case 'g': return ANNEX_MOP_ISNULL;
    case 'h': return ANNEX_MOP_NOTNULL;
    case 'i': return ANNEX_MOP_IN;
    case 'j': return ANNEX_MOP_IS;
    case 'k': return ANNEX_MOP_ISNOT;
  }
  return ANNEX_MOP_ROWID_IN; /* P and Q */
}

/* Compile one term; *pbSql is set when it needs the SQL path. */
static int compile_term(annex_table *p, const annex_term *pt, sqlite3_value *v,
                        annex_mterm *t, int *pbSql) {
  int nAlloc = 0, rc = SQLITE_OK;
  annex_mvalue mv;
  t->op = mop_of(pt->cOp);
  t->iMeta = pt->iCol >= 0 ? p->pConfig->aCol[pt->iCol].iMeta : -1;
  if (pt->cOp == 'Q') return push_rowid(t, &nAlloc, v);
  if (pt->cOp == 'P' || pt->cOp == 'i') {
    sqlite3_value *pEl = NULL;
    for (rc = sqlite3_vtab_in_first(v, &pEl); rc == SQLITE_OK && pEl;
         rc = sqlite3_vtab_in_next(v, &pEl)) {
      if (pt->cOp == 'P') {
        rc = push_rowid(t, &nAlloc, pEl);
      } else {
        rc = encode_constant(p, pt->iCol, pEl, &mv);
        if (rc == SQLITE_OK) rc = term_push(t, &nAlloc, &mv);
      }
      if (rc != SQLITE_OK) return rc;
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    if (rc == SQLITE_OK && pt->cOp == 'P' && t->nVal > 1) {
      qsort(t->aVal, (size_t)t->nVal, sizeof(annex_mvalue), rowid_cmp);
    }
    return rc;
  }
  if (t->op == ANNEX_MOP_ISNULL || t->op == ANNEX_MOP_NOTNULL) return SQLITE_OK;
  /* Text ranges need the characters, which the chunks do not hold. */
  if ((t->op == ANNEX_MOP_LT || t->op == ANNEX_MOP_LE || t->op == ANNEX_MOP_GT ||
       t->op == ANNEX_MOP_GE) &&
      pt->iCol >= 0 &&
      sqlite3_stricmp(p->pConfig->aCol[pt->iCol].zType, "TEXT") == 0) {
    *pbSql = 1;
    return SQLITE_OK;
  }
  rc = encode_constant(p, pt->iCol, v, &mv);
  if (rc == SQLITE_OK) rc = term_push(t, &nAlloc, &mv);
  return rc;
}

void annex_filter_free(annex_mfilter *f) {
  if (f == NULL) return;
  for (int i = 0; i < f->nTerm; i++) sqlite3_free(f->aTerm[i].aVal);
  sqlite3_free(f->aTerm);
  sqlite3_free(f);
}

int annex_filter_compile(annex_table *p, const annex_term *aTerm, int nTerm,
                         sqlite3_value **argv, annex_mfilter **ppOut) {
  annex_mfilter *f;
  int rc = SQLITE_OK, bSql = 0, nFilter = 0;
  *ppOut = NULL;
  for (int i = 0; i < nTerm; i++) nFilter += is_filter(aTerm[i].cOp);
  if (nFilter == 0) return SQLITE_OK;
  f = sqlite3_malloc64(sizeof(*f));
  if (f == NULL) return SQLITE_NOMEM;
  f->nTerm = 0;
  f->aTerm = sqlite3_malloc64(sizeof(annex_mterm) * (size_t)nFilter);
  if (f->aTerm == NULL) rc = SQLITE_NOMEM;
  for (int i = 0; i < nTerm && rc == SQLITE_OK && !bSql; i++) {
    annex_mterm *t;
    if (!is_filter(aTerm[i].cOp)) continue;
    t = &f->aTerm[f->nTerm++];
    memset(t, 0, sizeof(*t));
    rc = compile_term(p, &aTerm[i], argv[i], t, &bSql);
  }
  if (rc != SQLITE_OK || bSql) {
    annex_filter_free(f);
    return rc;
  }
  *ppOut = f;
  return SQLITE_OK;
}
