/*
** ann.h — the seam between the annex virtual table and its approximate
** (ANN) indexes: hnsw (ann_hnsw.c), ivf (ann_ivf.c), diskann.
**
** The virtual table owns the rows and vectors (storage.c: T_rows, T_chunks)
** and every SQL-facing concern; an ANN index is a side structure over the
** stored vectors, keyed by global slot (storage.c), with its own shadow
** tables. The table calls the index:
**   - after each row write (xInsert / xDelete / xUpdateVector), inside the
**     user's statement: the index may write its shadow tables now, or
**     buffer the work in memory and write it in xSync;
**   - at the transaction boundaries (xSync, xCommit, xRollback,
**     xSavepoint, xRelease, xRollbackTo): after a rollback the index's
**     memory must agree with the file again (drop and reload lazily when in
**     doubt); nothing a rolled-back transaction did may survive;
**   - for a k-NN query with k given (xSearch). The index answers with
**     global slots; the table maps them to rowids. An index may answer
**     ANNEX_ANN_EXACT instead (not trained yet, a filter so selective that
**     an exact scan is cheaper, ...): the table then runs its exact scan,
**     which always gives the right answer;
**   - for commands: INSERT INTO t(t) VALUES('rebuild' | 'optimize' |
**     'train' | ...), for annex_info facts, and from 'integrity-check'.
**
** Index parameters come from CREATE VIRTUAL TABLE as index=KIND(key=value,
** ...); config.c splits them, xParams checks them. Every error is an SQLite
** code; an index sets messages with annex_set_error(&pTab->base, ...).
** Memory comes from sqlite3_malloc64 (ext/vtab) or alloc.h (ext/index).
*/
#ifndef ANNEX_ANN_H
#define ANNEX_ANN_H

#include "annex_int.h"

/* Queries with a larger k (or a LIMIT above it) take the exact scan. */
#define ANNEX_ANN_MAX_K 4096

/* xSearch's answer when the exact scan should answer instead. */
#define ANNEX_ANN_EXACT (SQLITE_INTERNAL | (78 << 8))

typedef struct annex_ann annex_ann;
typedef struct annex_ann_ops annex_ann_ops;

/* Base of every index's per-connection state (first member of its struct). */
struct annex_ann {
  const annex_ann_ops *pOps; /* the kind */
  annex_table *pTab;         /* the table (borrowed) */
};

typedef struct annex_ann_query {
  const void *pQuery;  /* query vector, szVec bytes of the table's element */
  sqlite3_int64 k;     /* rows wanted, > 0 */
  sqlite3_int64 nKnob; /* ef_search / nprobe / search_list, or 0: default */
  /* The filter: a bitmap over global slots of the rows a metadata or rowid
  ** filter allows (live rows only), or NULL when there is no filter. */
  const unsigned char *aAllowed;
  sqlite3_int64 nAllowedSlots; /* bits in aAllowed */
  sqlite3_int64 nAllowed;      /* set bits in aAllowed */
  /* ANNEX_DEVICE_AUTO or _CPU (device=gpu never reaches an index): an index
  ** may scan on the GPU under auto (ann_ivf.c, gpu.c's ranged tables). */
  int eDevice;
} annex_ann_query;

struct annex_ann_ops {
  const char *zKind; /* "hnsw", "ivf", ... as written in index= */
  const char *zKnob; /* name of the per-query hidden column, e.g. ef_search */

  /* Check the index=KIND(...) parameters; unknown keys and bad values are
  ** errors (message in *pzErr, from sqlite3_mprintf). */
  int (*xParams)(const annex_config *c, char **pzErr);
  /* CREATE VIRTUAL TABLE: create the shadow tables (storage.c has made
  ** its own; the parameters are already in T_config). */
  int (*xCreate)(annex_table *p, char **pzErr);
  /* DROP TABLE and ALTER TABLE RENAME of the index's shadow tables. */
  int (*xDestroy)(annex_table *p);
  int (*xRename)(annex_table *p, const char *zNew);
  /* The suffixes of its shadow tables, NULL-terminated (xShadowName). */
  const char *const *azShadow;

  /* Per-connection state; loads nothing (the first query loads lazily). */
  int (*xOpen)(annex_table *p, annex_ann **pp);
  void (*xClose)(annex_ann *a);

  /* Row writes, after storage.c stored the row in slot iSlot. pVec is the
  ** vector as stored (szVec bytes). UPDATE of a vector keeps the slot. */
  int (*xInsert)(annex_ann *a, sqlite3_int64 iSlot, const void *pVec);
  int (*xDelete)(annex_ann *a, sqlite3_int64 iSlot);
  int (*xUpdateVector)(annex_ann *a, sqlite3_int64 iSlot, const void *pVec);

  /* Transactions (module.c forwards the sqlite3_module methods). */
  int (*xSync)(annex_ann *a);
  void (*xCommit)(annex_ann *a);
  void (*xRollback)(annex_ann *a);
  int (*xSavepoint)(annex_ann *a, int iSavepoint);
  /* iSavepoint -1: back to the start of the transaction, which stays open
  ** (ROLLBACK TO the SAVEPOINT that began it: SQLite does not count that
  ** one); everything buffered since BEGIN is undone. */
  void (*xRollbackTo)(annex_ann *a, int iSavepoint);

  /* k-NN: *paHit (sqlite3_malloc64) gets up to q->k hits sorted by score,
  ** each with the global slot in its rowid field; live, allowed rows only.
  ** Or ANNEX_ANN_EXACT. */
  int (*xSearch)(annex_ann *a, const annex_ann_query *q, annex_hit **paHit,
                 sqlite3_int64 *pnHit);

  /* A command; *pbDone = 0 when zCmd is not this index's. */
  int (*xCommand)(annex_ann *a, const char *zCmd, int *pbDone);
  /* Facts for annex_info: call xFact(pCtx, key, value) for each, the value
  ** written as an SQL literal ("16", "'pending: ...'" from %Q). */
  int (*xInfo)(annex_ann *a, void *pCtx,
               int (*xFact)(void *pCtx, const char *zKey,
                           const char *zSqlValue));
  /* Check the index against the stored rows ('integrity-check'): return
  ** SQLITE_CORRUPT_VTAB with a message naming what is wrong. */
  int (*xIntegrity)(annex_ann *a);

  /* Optional (NULL: the table reads rowids from its chunks). */
  /* Slot iSlot now holds row iRowid: after every xInsert, and when an
  ** UPDATE changes a rowid. */
  int (*xSetRowid)(annex_ann *a, sqlite3_int64 iSlot, sqlite3_int64 iRowid);
  /* Turn xSearch's hits from slots into rowids, in place. */
  int (*xRowids)(annex_ann *a, annex_hit *aHit, sqlite3_int64 nHit);
  /* Optional (NULL: T_chunks holds the vectors). When set, the index keeps
  ** the table's only copy of the vectors and T_chunks has no vector region
  ** (storage.c): read the vectors of slots iSlot..iSlot+n-1 into out
  ** (szVec each), as this transaction sees them; slots without a vector
  ** read as zeros. */
  int (*xReadVectors)(annex_ann *a, sqlite3_int64 iSlot, int n, void *out);
};

/* The kinds (each in its own file). */
extern const annex_ann_ops annex_hnsw_ops;
extern const annex_ann_ops annex_ivf_ops;
extern const annex_ann_ops annex_diskann_ops;

/* The kind named zKind, or NULL (ann.c). */
const annex_ann_ops *annex_ann_find(const char *zKind);
/* "flat, hnsw, ivf" — the kinds this build knows, for messages. */
const char *annex_ann_kinds(void);
/* 1 if zSuffix names a shadow table of some kind (xShadowName). */
int annex_ann_shadow_name(const char *zSuffix);

/* The value of index parameter zKey from CREATE (NULL if not given). */
const char *annex_config_param(const annex_config *c, const char *zKey);
/* Parse parameter zKey as an integer in [iMin, iMax]; *pv keeps its
** default when the key is absent. Error message names the key and range. */
int annex_param_int(const annex_config *c, const char *zKey, int iMin,
                    int iMax, int *pv, char **pzErr);
int annex_param_double(const annex_config *c, const char *zKey, double rMin,
                       double rMax, double *pv, char **pzErr);

/* Progress of a long index operation (build, train, optimize), readable by
** annex_info from any connection of this process (progress.c). */
void annex_progress_set(annex_table *p, const char *zPhase,
                        sqlite3_int64 nDone, sqlite3_int64 nTotal);
void annex_progress_clear(annex_table *p);
/* 1 and the operation's phase and counts if one runs on zDb.zTab. */
int annex_progress_get(sqlite3 *db, const char *zDb, const char *zTab,
                       char *zPhase, size_t nPhase, sqlite3_int64 *pnDone,
                       sqlite3_int64 *pnTotal);

/* Helpers for index code in ext/vtab: the table's live rows. */
/* Read rowid and liveness of global slot iSlot (SQLITE_DONE: no chunk). */
int annex_storage_slot_info(annex_table *p, sqlite3_int64 iSlot,
                            sqlite3_int64 *piRowid, int *pbLive);

#endif /* ANNEX_ANN_H */
