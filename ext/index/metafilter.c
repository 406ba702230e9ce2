/*
** metafilter.c — evaluating metadata predicates on compact chunk metadata;
** see metafilter.h for the representation and the rules.
*/
#include "metafilter.h"

#include <string.h>

#define MF_UNKNOWN 2 /* a comparison the compact form cannot decide */

static double as_double(const annex_mvalue *a) {
  double d;
  memcpy(&d, &a->v, sizeof(d));
  return d;
}

/* Exact comparison of an integer with a double, as SQLite does it. */
static int int_real_cmp(int64_t i, double r) {
  if (r < -9223372036854775808.0) return 1;
  if (r >= 9223372036854775808.0) return -1;
  {
    int64_t ir = (int64_t)r;
    if (i < ir) return -1;
    if (i > ir) return 1;
    return (double)ir < r ? -1 : ((double)ir > r ? 1 : 0);
  }
}

int annex_mvalue_numcmp(const annex_mvalue *a, const annex_mvalue *b) {
  if (a->tag == ANNEX_MT_INT && b->tag == ANNEX_MT_INT) {
    return a->v < b->v ? -1 : a->v > b->v;
  }
  if (a->tag == ANNEX_MT_INT) return int_real_cmp(a->v, as_double(b));
  if (b->tag == ANNEX_MT_INT) return -int_real_cmp(b->v, as_double(a));
  {
    double x = as_double(a), y = as_double(b);
    return x < y ? -1 : x > y;
  }
}

/* Storage class order: numbers < text < blob. */
static int class_of(int tag) {
  return tag == ANNEX_MT_INT || tag == ANNEX_MT_REAL ? 1 : tag;
}

/* -1/0/1, or MF_UNKNOWN. With bEqOnly, two different texts compare as 1
** (unequal, direction unknown but not needed). Neither value is NULL. */
static int mv_cmp(const annex_mvalue *a, const annex_mvalue *b, int bEqOnly) {
  int ca = class_of(a->tag), cb = class_of(b->tag);
  if (ca != cb) return ca < cb ? -1 : 1;
  if (ca == 1) return annex_mvalue_numcmp(a, b);
  if (ca == ANNEX_MT_TEXT) {
    if (a->v == b->v) return 0;
    return bEqOnly ? 1 : MF_UNKNOWN;
  }
  return MF_UNKNOWN; /* two blobs */
}

/* 1 true, 0 false (or NULL), MF_UNKNOWN. */
static int eval_term(const annex_mterm *t, const annex_mvalue *s,
                     int64_t iRowid) {
  int c;
  switch (t->op) {
    case ANNEX_MOP_ISNULL: return s->tag == ANNEX_MT_NULL;
    case ANNEX_MOP_NOTNULL: return s->tag != ANNEX_MT_NULL;
    case ANNEX_MOP_IS:
    case ANNEX_MOP_ISNOT: {
      int bNullS = s->tag == ANNEX_MT_NULL;
      int bNullC = t->aVal[0].tag == ANNEX_MT_NULL;
      int bIs;
      if (bNullS || bNullC) bIs = bNullS && bNullC;
      else if ((c = mv_cmp(s, &t->aVal[0], 1)) == MF_UNKNOWN) return c;
      else bIs = c == 0;
      return t->op == ANNEX_MOP_IS ? bIs : !bIs;
    }
    case ANNEX_MOP_IN:
      if (s->tag == ANNEX_MT_NULL) return 0;
      for (int i = 0; i < t->nVal; i++) {
        if (t->aVal[i].tag == ANNEX_MT_NULL) continue;
        c = mv_cmp(s, &t->aVal[i], 1);
        if (c == MF_UNKNOWN) return c;
        if (c == 0) return 1;
      }
      return 0;
    case ANNEX_MOP_ROWID_IN: {
      int lo = 0, hi = t->nVal - 1;
      while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (t->aVal[mid].v == iRowid) return 1;
        if (t->aVal[mid].v < iRowid) lo = mid + 1;
        else hi = mid - 1;
      }
      return 0;
    }
    default: break;
  }
  if (s->tag == ANNEX_MT_NULL || t->aVal[0].tag == ANNEX_MT_NULL) return 0;
  c = mv_cmp(s, &t->aVal[0],
             t->op == ANNEX_MOP_EQ || t->op == ANNEX_MOP_NE);
  if (c == MF_UNKNOWN) return c;
  switch (t->op) {
    case ANNEX_MOP_EQ: return c == 0;
    case ANNEX_MOP_NE: return c != 0;
    case ANNEX_MOP_LT: return c < 0;
    case ANNEX_MOP_LE: return c <= 0;
    case ANNEX_MOP_GT: return c > 0;
    case ANNEX_MOP_GE: return c >= 0;
    default: return 0;
  }
}

static void read_value(const unsigned char *pMeta, int nChunk, int iMeta,
                       int iSlot, annex_mvalue *s) {
  const unsigned char *pV = pMeta + annex_meta_values_offset(iMeta, nChunk);
  uint64_t u = 0;
  s->tag = pMeta[annex_meta_tags_offset(iMeta, nChunk) + (size_t)iSlot];
  for (int b = 7; b >= 0; b--) u = (u << 8) | pV[8 * (size_t)iSlot + b];
  s->v = (int64_t)u;
}

int annex_mfilter_eval(const annex_mfilter *f, const unsigned char *pMeta,
                       int nChunk, const int64_t *aRowid, int nSlot,
                       unsigned char *aMask) {
  memset(aMask, 0, ((size_t)nSlot + 7) / 8);
  for (int i = 0; i < nSlot; i++) {
    int bPass = 1;
    for (int j = 0; j < f->nTerm && bPass; j++) {
      const annex_mterm *t = &f->aTerm[j];
      annex_mvalue s = {ANNEX_MT_NULL, 0};
      int r;
      if (t->iMeta >= 0) {
        read_value(pMeta, nChunk, t->iMeta, i, &s);
      } else { /* a rowid term */
        s.tag = ANNEX_MT_INT;
        s.v = aRowid[i];
      }
      r = eval_term(t, &s, aRowid[i]);
      if (r == MF_UNKNOWN) return -1;
      bPass = r;
    }
    if (bPass) aMask[i >> 3] |= (unsigned char)(1u << (i & 7));
  }
  return 0;
}
