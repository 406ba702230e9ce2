/*
** plan.c — xBestIndex: which constraints annex consumes, and the plan.
**
** Plans (idxNum):
**   ANNEX_PLAN_KNN       MATCH on the vector column, with k = N, a pushed
**                        LIMIT, a radius (distance < r), or none of these
**                        (every row, in distance order). Metadata
**                        constraints and rowid = / IN are applied inside
**                        the scan, so k rows come back when k rows match.
**   ANNEX_PLAN_ROWID     rowid = ?: one B-tree lookup.
**   ANNEX_PLAN_FULLSCAN  everything else: rows in rowid order; SQLite
**                        evaluates the WHERE clause itself.
**
** idxStr lists the consumed constraints in argv order, as "<op><col>;"
** tokens (col is the user column number, or -1):
**   M match   K k   L limit   F offset   D distance <   E distance <=
**   N the ANN index's per-query knob (ef_search, nprobe, ...) =
**   V device = (auto, cpu or gpu for this query; gpu.c)
**   Q rowid =   P rowid IN (all values at once)
**   metadata: a =  b >  c <=  d <  e >=  f !=  g IS NULL  h IS NOT NULL
**             i IN (all values at once)  j IS  k IS NOT
**   rowid ranges and != use b..f with col -1
*/
#include "annex_int.h"
#include "ann.h"

#include <stdlib.h>
#include <string.h>

/* What the constraints of one xBestIndex call allow. */
typedef struct plan_state {
  sqlite3_index_info *pInfo;
  annex_table *p;
  int iMatch;        /* constraint index of MATCH, or -1 */
  int bMatchBlocked; /* a MATCH exists but is unusable in this plan */
  int iK;            /* k = ? */
  int iKnob;         /* ef_search / nprobe / ... = ? (ANN tables) */
  int iDevice;       /* device = ? */
  int iLimit, iOffset;
  int iRadius;       /* distance < or <= */
  int iRowidEq;      /* rowid = ? (not IN) */
  int bUnhandled;    /* a usable constraint annex cannot apply itself */
  int nArg;          /* argv slots assigned so far */
  sqlite3_str *pIdx; /* idxStr under construction */
} plan_state;

static char meta_op(sqlite3_index_info *pInfo, int i) {
  switch (pInfo->aConstraint[i].op) {
    case SQLITE_INDEX_CONSTRAINT_EQ:
      return sqlite3_vtab_in(pInfo, i, -1) ? 'i' : 'a';
    case SQLITE_INDEX_CONSTRAINT_GT: return 'b';
    case SQLITE_INDEX_CONSTRAINT_LE: return 'c';
    case SQLITE_INDEX_CONSTRAINT_LT: return 'd';
    case SQLITE_INDEX_CONSTRAINT_GE: return 'e';
    case SQLITE_INDEX_CONSTRAINT_NE: return 'f';
    case SQLITE_INDEX_CONSTRAINT_ISNULL: return 'g';
    case SQLITE_INDEX_CONSTRAINT_ISNOTNULL: return 'h';
    case SQLITE_INDEX_CONSTRAINT_IS: return 'j';
    case SQLITE_INDEX_CONSTRAINT_ISNOT: return 'k';
  }
  return 0;
}

static void use_term(plan_state *s, int i, char cOp, int iCol) {
  s->pInfo->aConstraintUsage[i].argvIndex = ++s->nArg;
  /* LIMIT and OFFSET stay with SQLite too: annex returns LIMIT + OFFSET
  ** sorted rows and SQLite skips and cuts them, which is always right. */
  s->pInfo->aConstraintUsage[i].omit = (cOp != 'L' && cOp != 'F');
  if (cOp == 'i' || cOp == 'P') sqlite3_vtab_in(s->pInfo, i, 1);
  sqlite3_str_appendf(s->pIdx, "%c%d;", cOp, iCol);
}

/* First pass: find the special constraints. */
static int classify(plan_state *s) {
  sqlite3_index_info *pInfo = s->pInfo;
  const annex_config *c = s->p->pConfig;
  int iBase = s->p->iHiddenBase;
  for (int i = 0; i < pInfo->nConstraint; i++) {
    const struct sqlite3_index_constraint *pc = &pInfo->aConstraint[i];
    int col = pc->iColumn;
    if (pc->op == SQLITE_INDEX_CONSTRAINT_MATCH) {
      if (col != c->iVecCol) {
        annex_set_error(&s->p->base, "MATCH applies only to the vector "
                        "column %s", c->aCol[c->iVecCol].zName);
        return SQLITE_ERROR;
      }
      if (pc->usable) s->iMatch = i;
      else s->bMatchBlocked = 1;
      continue;
    }
    if (!pc->usable) continue;
    if (pc->op == SQLITE_INDEX_CONSTRAINT_LIMIT) s->iLimit = i;
    else if (pc->op == SQLITE_INDEX_CONSTRAINT_OFFSET) s->iOffset = i;
    else if (col == iBase + ANNEX_HID_K &&
             pc->op == SQLITE_INDEX_CONSTRAINT_EQ) s->iK = i;
    else if (col == iBase + ANNEX_HID_DEVICE(s->p) &&
             pc->op == SQLITE_INDEX_CONSTRAINT_EQ) s->iDevice = i;
    else if (col == iBase + ANNEX_HID_KNOB &&
             pc->op == SQLITE_INDEX_CONSTRAINT_EQ) s->iKnob = i;
    else if (col == iBase + ANNEX_HID_DISTANCE &&
             (pc->op == SQLITE_INDEX_CONSTRAINT_LT ||
              pc->op == SQLITE_INDEX_CONSTRAINT_LE)) s->iRadius = i;
    else if (col < 0 && pc->op == SQLITE_INDEX_CONSTRAINT_EQ &&
             !sqlite3_vtab_in(pInfo, i, -1)) s->iRowidEq = i;
  }
  return SQLITE_OK;
}

/* Consume metadata and rowid constraints for a k-NN plan. */
static void add_filters(plan_state *s) {
  sqlite3_index_info *pInfo = s->pInfo;
  const annex_config *c = s->p->pConfig;
  for (int i = 0; i < pInfo->nConstraint; i++) {
    const struct sqlite3_index_constraint *pc = &pInfo->aConstraint[i];
    int col = pc->iColumn;
    char cOp;
    if (!pc->usable || i == s->iMatch || i == s->iK || i == s->iLimit ||
        i == s->iOffset || i == s->iRadius || i == s->iKnob ||
        i == s->iDevice) {
      continue;
    }
    if (col < 0 && pc->op == SQLITE_INDEX_CONSTRAINT_EQ) {
      use_term(s, i, sqlite3_vtab_in(pInfo, i, -1) ? 'P' : 'Q', -1);
    } else if (col < 0 && (cOp = meta_op(pInfo, i)) >= 'b' && cOp <= 'f') {
      use_term(s, i, cOp, -1); /* rowid range or != */
    } else if (col >= 0 && col < c->nCol &&
               c->aCol[col].eKind == ANNEX_COL_META &&
               (cOp = meta_op(pInfo, i)) != 0 &&
               sqlite3_stricmp(sqlite3_vtab_collation(pInfo, i), "BINARY") ==
                   0) {
      /* (T_rows compares with BINARY: other collations stay with SQLite) */
      use_term(s, i, cOp, col);
    } else {
      s->bUnhandled = 1;
    }
  }
}

static int order_by_distance(plan_state *s) {
  sqlite3_index_info *pInfo = s->pInfo;
  int iDist = s->p->iHiddenBase + ANNEX_HID_DISTANCE;
  if (pInfo->nOrderBy < 1 || pInfo->nOrderBy > 2) return 0;
  if (pInfo->aOrderBy[0].iColumn != iDist || pInfo->aOrderBy[0].desc) return 0;
  if (pInfo->nOrderBy == 2 &&
      (pInfo->aOrderBy[1].iColumn != -1 || pInfo->aOrderBy[1].desc)) {
    return 0;
  }
  return 1;
}

static int plan_knn(plan_state *s) {
  sqlite3_index_info *pInfo = s->pInfo;
  const annex_config *c = s->p->pConfig;
  use_term(s, s->iMatch, 'M', c->iVecCol);
  if (s->iK >= 0) use_term(s, s->iK, 'K', -1);
  if (s->iKnob >= 0) use_term(s, s->iKnob, 'N', -1);
  if (s->iDevice >= 0) use_term(s, s->iDevice, 'V', -1);
  if (s->iRadius >= 0) {
    int bLe = pInfo->aConstraint[s->iRadius].op == SQLITE_INDEX_CONSTRAINT_LE;
    use_term(s, s->iRadius, bLe ? 'E' : 'D', -1);
  }
  add_filters(s);
  /* LIMIT stands in for k only when every WHERE term is applied here
  ** (otherwise SQLite would filter after us and return fewer rows) and the
  ** rows are wanted in distance order: with ORDER BY rowid or distance DESC
  ** (SQLite 3.41+ offers LIMIT with those too) the LIMIT applies after a
  ** sort of every row. */
  if (s->iK < 0 && s->iLimit >= 0 && !s->bUnhandled &&
      (pInfo->nOrderBy == 0 || order_by_distance(s))) {
    use_term(s, s->iLimit, 'L', -1);
    if (s->iOffset >= 0) use_term(s, s->iOffset, 'F', -1);
  }
  /* Without k or a usable LIMIT (SQLite before 3.41 never offers LIMIT
  ** alongside MATCH), the plan yields every row in distance order, sorted
  ** lazily, so "ORDER BY distance LIMIT n" costs one scan plus n log n. */
  pInfo->idxNum = ANNEX_PLAN_KNN;
  pInfo->orderByConsumed = order_by_distance(s);
  pInfo->estimatedCost = 10.0;
  pInfo->estimatedRows = 10;
  return SQLITE_OK;
}

int annex_best_index(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo) {
  plan_state s;
  int rc;
  memset(&s, 0, sizeof(s));
  s.pInfo = pInfo;
  s.p = (annex_table *)pVtab;
  s.iMatch = s.iK = s.iLimit = s.iOffset = s.iRadius = s.iRowidEq = -1;
  s.iKnob = s.iDevice = -1;
  rc = classify(&s);
  if (rc != SQLITE_OK) return rc;
  if (s.iMatch < 0 && s.bMatchBlocked) return SQLITE_CONSTRAINT;
  s.pIdx = sqlite3_str_new(NULL);
  if (s.iMatch >= 0) {
    rc = plan_knn(&s);
  } else if (s.iK >= 0 || s.iRadius >= 0 || s.iKnob >= 0 ||
             s.iDevice >= 0) {
    annex_set_error(pVtab, "k, distance and %s constraints need a MATCH on "
                    "the vector column %s",
                    s.p->pConfig->pAnnOps ? s.p->pConfig->pAnnOps->zKnob
                                          : "search knob",
                    s.p->pConfig->aCol[s.p->pConfig->iVecCol].zName);
    rc = SQLITE_ERROR;
  } else if (s.iRowidEq >= 0) {
    use_term(&s, s.iRowidEq, 'Q', -1);
    pInfo->idxNum = ANNEX_PLAN_ROWID;
    pInfo->idxFlags = SQLITE_INDEX_SCAN_UNIQUE;
    pInfo->estimatedCost = 1.0;
    pInfo->estimatedRows = 1;
  } else {
    pInfo->idxNum = ANNEX_PLAN_FULLSCAN;
    pInfo->estimatedCost = 1e6;
    pInfo->estimatedRows = 1000000;
  }
  {
    char *zIdx = annex_str_finish(s.pIdx);
    if (rc == SQLITE_OK && zIdx == NULL) rc = SQLITE_NOMEM;
    if (rc == SQLITE_OK) {
      pInfo->idxStr = zIdx;
      pInfo->needToFreeIdxStr = 1;
    } else {
      sqlite3_free(zIdx);
    }
  }
  return rc;
}

int annex_plan_decode(const char *zIdx, annex_term **paTerm, int *pnTerm) {
  int n = 0, nAlloc = 0;
  annex_term *a = NULL;
  const char *z = zIdx ? zIdx : "";
  while (*z) {
    char *zEnd;
    if (n == nAlloc) {
      annex_term *aNew;
      nAlloc = nAlloc ? 2 * nAlloc : 8;
      aNew = sqlite3_realloc64(a, sizeof(annex_term) * (size_t)nAlloc);
      if (aNew == NULL) {
        sqlite3_free(a);
        return SQLITE_NOMEM;
      }
      a = aNew;
    }
    a[n].cOp = *z++;
    a[n].iCol = (int)strtol(z, &zEnd, 10);
    if (zEnd == z || *zEnd != ';') {
      sqlite3_free(a);
      return SQLITE_INTERNAL;
    }
    z = zEnd + 1;
    n++;
  }
  *paTerm = a;
  *pnTerm = n;
  return SQLITE_OK;
}
