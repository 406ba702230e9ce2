/*
** metafilter.h — metadata predicates evaluated on a chunk's compact
** metadata, before any distance is computed.
**
** Every chunk stores, per metadata column, a tag byte and an 8-byte value
** for each slot (the layout is defined in ext/vtab/storage.c): integers as
** int64, reals as IEEE doubles, text as the id of the string in the table's
** dictionary, and nothing for NULL or BLOB. A filter is a conjunction of
** terms over those values and the slots' rowids, with SQLite's comparison
** rules: NULL compares as unknown (false), numbers compare exactly across
** integer and real, and numbers < text < blob. Equality of two texts is
** decided by their dictionary ids; anything that needs the characters or
** bytes themselves (text ordering, blob equality) makes evaluation give up,
** and the caller answers the query another way. Index code only.
*/
#ifndef ANNEX_METAFILTER_H
#define ANNEX_METAFILTER_H

#include <stddef.h>
#include <stdint.h>

typedef enum annex_mtag {
  ANNEX_MT_NULL = 0,
  ANNEX_MT_INT = 1,
  ANNEX_MT_REAL = 2,
  ANNEX_MT_TEXT = 3, /* value: dictionary id */
  ANNEX_MT_BLOB = 4  /* value: unused */
} annex_mtag;

typedef struct annex_mvalue {
  int tag;   /* annex_mtag */
  int64_t v; /* int64, double bits, or dictionary id */
} annex_mvalue;

typedef enum annex_mop {
  ANNEX_MOP_EQ, ANNEX_MOP_NE, ANNEX_MOP_LT, ANNEX_MOP_LE, ANNEX_MOP_GT,
  ANNEX_MOP_GE, ANNEX_MOP_IS, ANNEX_MOP_ISNOT, ANNEX_MOP_ISNULL,
  ANNEX_MOP_NOTNULL, ANNEX_MOP_IN,
  ANNEX_MOP_ROWID_IN /* aVal: rowids (tag INT), sorted ascending */
} annex_mop;

typedef struct annex_mterm {
  annex_mop op;        /* the comparison */
  int iMeta;           /* metadata column (index among metadata columns),
                       ** or -1: the term compares the slot's rowid */
  annex_mvalue *aVal;  /* the constant, the IN list, or the rowids */
  int nVal;            /* entries in aVal */
} annex_mterm;

typedef struct annex_mfilter {
  annex_mterm *aTerm;  /* conjunction of terms */
  int nTerm;
} annex_mfilter;

/* Where column iMeta's tags and values start in a chunk's metadata region
** of nChunk slots. */
static inline size_t annex_meta_tags_offset(int iMeta, int nChunk) {
  return (size_t)iMeta * 9 * (size_t)nChunk;
}
static inline size_t annex_meta_values_offset(int iMeta, int nChunk) {
  return annex_meta_tags_offset(iMeta, nChunk) + (size_t)nChunk;
}

/* Set bit i of aMask (nSlot bits, cleared first) for every slot i < nSlot
** that satisfies every term. pMeta is the chunk's metadata region. Returns
** 0, or -1 when a comparison needs characters or bytes the compact form
** does not hold. */
int annex_mfilter_eval(const annex_mfilter *f, const unsigned char *pMeta,
                       int nChunk, const int64_t *aRowid, int nSlot,
                       unsigned char *aMask);

/* -1, 0, 1: SQLite's order of two numeric values (tags INT or REAL). */
int annex_mvalue_numcmp(const annex_mvalue *a, const annex_mvalue *b);

#endif /* ANNEX_METAFILTER_H */
