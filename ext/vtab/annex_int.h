/*
** annex_int.h — the seams between the files of ext/vtab/.
**
** Each section below declares the interface of one file, the way FTS5's
** fts5Int.h does. Everything here is internal to the extension; the public
** API is ext/annex.h.
*/
#ifndef ANNEX_INT_H
#define ANNEX_INT_H

#include "sqlite3ext.h"
#ifndef SQLITE_CORE
SQLITE_EXTENSION_INIT3
#endif

#include <stddef.h>
#include <stdint.h>

#include "../index/distance.h"
#include "../index/topk.h"
#include "../index/threads.h"
#include "../index/metafilter.h"

#define ANNEX_VERSION "0.1.0"

/* Format version of the shadow tables; stored in %_config as 'format'. A
** table written by a newer format is refused with a clear message. */
#define ANNEX_FORMAT_VERSION 1

/* Largest dimension count a vector column may declare. */
#define ANNEX_MAX_DIMS 65536

/* Default and bounds of the chunk_size option (vectors per chunk). */
#define ANNEX_CHUNK_DEFAULT 1024
#define ANNEX_CHUNK_MIN 8
#define ANNEX_CHUNK_MAX 65536
/* The default chunk size shrinks until a chunk's vectors fit in
** ANNEX_CHUNK_TARGET_BYTES (see config.c); an explicit chunk_size whose
** chunk exceeds ANNEX_CHUNK_MAX_BYTES is refused. */
#define ANNEX_CHUNK_TARGET_BYTES (1024 * 1024)
#define ANNEX_CHUNK_MAX_BYTES (64 * 1024 * 1024)

/**************************************************************************
** config.c — parsing CREATE VIRTUAL TABLE arguments.
*/

typedef enum annex_col_kind {
  ANNEX_COL_VECTOR = 1, /* the vector column: MATCH target */
  ANNEX_COL_META = 2,   /* metadata: stored in %_rows, filterable */
  ANNEX_COL_AUX = 3     /* auxiliary: stored in %_rows, returned only */
} annex_col_kind;

typedef enum annex_index_kind {
  ANNEX_INDEX_FLAT = 1, /* exact scan only */
  ANNEX_INDEX_ANN = 2   /* an approximate index beside the rows (ann.h) */
} annex_index_kind;

struct annex_ann_ops;

/* Most key=value parameters index=KIND(...) may carry, and their sizes. */
#define ANNEX_MAX_PARAMS 16
typedef struct annex_param {
  char zKey[32];  /* parameter name, lower case */
  char zVal[64];  /* its value as written, trimmed */
} annex_param;

typedef struct annex_column {
  char *zName;          /* column name as the user wrote it (owned) */
  char *zType;          /* declared type: TEXT/INTEGER/REAL/"" (owned) */
  annex_col_kind eKind; /* what the column is */
  int iMeta;            /* index among metadata columns, or -1 */
} annex_column;

typedef struct annex_config {
  int nCol;             /* number of user columns */
  annex_column *aCol;   /* user columns in declaration order (owned) */
  int iVecCol;          /* index in aCol of the vector column */
  annex_elem eElem;     /* element type of the vector column */
  annex_metric eMetric; /* distance metric */
  int nDim;             /* dimensions of the vector column */
  int nMeta;            /* metadata columns (compact copies in chunks) */
  size_t szVec;         /* bytes per stored vector */
  annex_index_kind eIndex; /* index kind */
  const struct annex_ann_ops *pAnnOps; /* the ANN kind, or NULL for flat */
  int nParam;           /* parameters of index=KIND(...) */
  annex_param aParam[ANNEX_MAX_PARAMS]; /* ... in the order written */
  int nChunk;           /* vectors per chunk (power of two) */
  int eDevice;          /* ANNEX_DEVICE_* of the device= option (gpu.c) */
} annex_config;

/* Parse the module arguments (argv[3..] of xCreate/xConnect). On error
** returns SQLITE_ERROR and sets *pzErr to a message from sqlite3_mprintf. */
int annex_config_parse(int argc, const char *const *argv, annex_config **pp,
                       char **pzErr);
void annex_config_free(annex_config *p);
const char *annex_elem_name(annex_elem e);
const char *annex_metric_name(annex_metric m);
const char *annex_index_name(const annex_config *c);

/**************************************************************************
** vector.c — vectors in and out: float32/int8/bit BLOBs and JSON text.
*/

/* Subtypes that annex's vector functions attach to the BLOBs they return,
** so a vector of the wrong element type is recognised. */
#define ANNEX_SUBTYPE_FLOAT32 223
#define ANNEX_SUBTYPE_INT8 225
#define ANNEX_SUBTYPE_BIT 224

/* Parse value v as a vector of nDim elements of type eElem into out
** (annex_vector_bytes(eElem, nDim) bytes). zCol names the column in error
** messages. Returns SQLITE_OK, or SQLITE_ERROR with *pzErr set. */
int annex_vector_parse(sqlite3_value *v, annex_elem eElem, int nDim,
                       const char *zCol, void *out, char **pzErr);

/* Parse a vector of any length: float32 BLOB or JSON array of numbers.
** On success *paOut is from sqlite3_malloc64 and *pnOut its length. */
int annex_vector_parse_any(sqlite3_value *v, float **paOut, int *pnOut,
                           char **pzErr);

/* JSON text of a vector, from sqlite3_malloc64 (NULL on OOM). */
char *annex_vector_to_json(annex_elem eElem, const void *p, int nDim);

/**************************************************************************
** storage.c — the shadow tables (their format is documented there).
*/

typedef struct annex_table annex_table;
typedef struct annex_cursor annex_cursor;

/* Cached statements of a table; see storage.c for the SQL of each. */
typedef enum annex_stmt_id {
  ANNEX_STMT_CONFIG_GET,
  ANNEX_STMT_CONFIG_SET,
  ANNEX_STMT_ROWS_INSERT,
  ANNEX_STMT_ROWS_DELETE,
  ANNEX_STMT_ROWS_LOCATE,
  ANNEX_STMT_ROWS_UPDATE,
  ANNEX_STMT_ROWS_REKEY,
  ANNEX_STMT_ROWS_FETCH,
  ANNEX_STMT_CHUNK_INSERT,
  ANNEX_STMT_CHUNK_DELETE,
  ANNEX_STMT_DICT_GET,
  ANNEX_STMT_DICT_PUT,
  ANNEX_STMT_COUNT
} annex_stmt_id;

int annex_storage_create(annex_table *p, char **pzErr);
int annex_storage_check_format(annex_table *p, char **pzErr);
/* For integrity-check: every T_config key is present, of its type, and
** agrees with the declaration; SQLITE_CORRUPT_VTAB (message set) if not. */
int annex_storage_check_config(annex_table *p);
int annex_storage_destroy(annex_table *p);
int annex_storage_rename(annex_table *p, const char *zNew);
/* Prepared statement id, cached on the table. */
int annex_storage_stmt(annex_table *p, annex_stmt_id id, sqlite3_stmt **pp);
void annex_storage_close(annex_table *p);    /* finalize everything */
void annex_storage_reset_blobs(annex_table *p);
void annex_storage_end_txn(annex_table *p);  /* forget per-txn caches */
int annex_storage_bump_counter(annex_table *p);

/* Chunk blob geometry: [valid bitmap][rowids int64 LE][metadata][vectors]
** (storage.c documents it; metafilter.h the metadata region). */
size_t annex_chunk_valid_bytes(const annex_config *c);
size_t annex_chunk_rowid_offset(const annex_config *c);
size_t annex_chunk_meta_offset(const annex_config *c);
size_t annex_chunk_vector_offset(const annex_config *c);
size_t annex_chunk_bytes(const annex_config *c);

/* apVal: one value per user column (index = column number). */
/* Each reports the global slot written (*piSlot; -1 when a delete found no
** row) and, where pVecOut is not NULL, copies the parsed vector there
** (szVec bytes; for update only when *pbVec says the vector changed). */
int annex_storage_insert(annex_table *p, sqlite3_value *pRowid,
                         sqlite3_value **apVal, sqlite3_int64 *piRowid,
                         sqlite3_int64 *piSlot, void *pVecOut);
int annex_storage_delete(annex_table *p, sqlite3_int64 iRowid,
                         sqlite3_int64 *piSlot);
int annex_storage_update(annex_table *p, sqlite3_int64 iOld,
                         sqlite3_int64 iNew, sqlite3_value **apVal,
                         sqlite3_int64 *piSlot, void *pVecOut, int *pbVec);

/* Delete every chunk whose slots were all allocated and freed (tables with
** an ANN index keep them until the index has dropped its tombstones). */
int annex_storage_drop_empty_chunks(annex_table *p);
/* Global slot of row iRowid; SQLITE_DONE if there is no such row. */
int annex_storage_locate(annex_table *p, sqlite3_int64 iRowid,
                         sqlite3_int64 *piSlot);
/* Read the vector in global slot iSlot into out (szVec bytes). */
int annex_storage_read_vector(annex_table *p, sqlite3_int64 iSlot, void *out);
/* Total slots ever allocated (the global slot counter). */
int annex_storage_slots(annex_table *p, sqlite3_int64 *pn);
/* The compact form of a value of metadata column iCol (metafilter.h). A
** text gets its dictionary id, added to T_dict when bCreate; without
** bCreate an unknown text gets id -1, which equals no stored text. */
int annex_meta_encode(annex_table *p, int iCol, sqlite3_value *v, int bCreate,
                      annex_mvalue *pOut);

/* Set config key zKey to integer v (inside the user's transaction). */
int annex_storage_config_set_int(annex_table *p, const char *zKey,
                                 sqlite3_int64 v);
/* Config value as integer; SQLITE_CORRUPT_VTAB if absent or not integer. */
int annex_storage_config_int(annex_table *p, const char *zKey,
                             sqlite3_int64 *pv);

/* Read-only iteration over the chunks, in chunk order. */
typedef struct annex_chunk_iter annex_chunk_iter;
typedef struct annex_chunk {
  sqlite3_int64 iChunk;        /* chunk id; slots iChunk*nChunk.. */
  int nSlot;                   /* slots allocated in this chunk */
  const unsigned char *aValid; /* validity bitmap (nChunk bits) */
  const int64_t *aRowid;       /* rowid of every slot */
  const unsigned char *pMeta;  /* compact metadata region (metafilter.h) */
} annex_chunk;
int annex_chunk_iter_open(annex_table *p, annex_chunk_iter **pp);
/* SQLITE_ROW with *pChunk filled, SQLITE_DONE at the end, or an error. */
int annex_chunk_iter_next(annex_chunk_iter *it, annex_chunk *pChunk);
/* Copy nVec vectors from iSlot (chunk-relative) of the current chunk. */
int annex_chunk_iter_vectors(annex_chunk_iter *it, int iSlot, int nVec,
                             void *out);
/* An iterator for exact scans: it reads chunks through the connection's
** chunk cache (chunk_cache.c), filling it. Integrity checks and index
** builds use annex_chunk_iter_open, which always reads the file. */
int annex_chunk_iter_open_cached(annex_table *p, annex_chunk_iter **pp);
/* The current chunk's vectors where they lie in the cache, or NULL when it
** was read from the file (then copy them with annex_chunk_iter_vectors).
** The pointer, like the chunk's aRowid, stays valid until the iterator is
** closed. */
const void *annex_chunk_iter_cached_vectors(annex_chunk_iter *it);
/* integrity-check: the rules of one chunk that need no T_rows (a full
** chunk keeps a live slot, metadata tags are known, NULL and BLOB tags
** carry 0, live float vectors are finite): SQLITE_OK, or
** SQLITE_CORRUPT_VTAB with the message set. After the last chunk,
** annex_chunk_iter_check_end requires the chunk still filling to exist:
** SQLITE_DONE, or SQLITE_CORRUPT_VTAB. */
int annex_chunk_check(annex_chunk_iter *it, const annex_chunk *ch);
int annex_chunk_iter_check_end(annex_chunk_iter *it);
void annex_chunk_iter_close(annex_chunk_iter *it);

/**************************************************************************
** chunk_cache.c — chunk blobs kept in memory between exact scans (the
** rules of its use are in that file's header).
*/

typedef struct annex_chunk_cache {
  unsigned char **apChunk;  /* chunk id -> allocation holding a copy of its
                            ** data blob (placed so that the vectors are
                            ** aligned: chunk_cache.c), or NULL */
  sqlite3_int64 nAlloc;     /* entries of apChunk */
  size_t nByte;             /* bytes of the copies */
  sqlite3_int64 iChanges;   /* change counter they match; -1: none */
  unsigned int iDataVersion;/* SQLITE_FCNTL_DATA_VERSION at validation */
  int bScanned;             /* a scan ran since the last drop: the next
                            ** one may fill (see chunk_cache.c) */
} annex_chunk_cache;

/* Most bytes one scan adds to the cache: fresh memory costs page faults
** (0.4-0.6 ms per MiB here), so a large table fills over several scans
** rather than tripling the first one's time. */
#define ANNEX_CACHE_FILL_PER_SCAN ((size_t)64 << 20)

/* Before a scan: drop what is stale; *pbUse says whether the scan may read
** and fill the cache (not inside a transaction that wrote the table). */
int annex_cache_validate(annex_table *p, int *pbUse);
/* The cached copy of chunk iChunk, or NULL. */
const unsigned char *annex_cache_get(const annex_table *p,
                                     sqlite3_int64 iChunk);
/* A buffer of nByte for chunk iChunk, registered in the cache, or NULL when
** the budget or memory is short. The caller fills it, or on failure hands
** it back with annex_cache_forget. */
unsigned char *annex_cache_alloc(annex_table *p, sqlite3_int64 iChunk,
                                 size_t nByte);
void annex_cache_forget(annex_table *p, sqlite3_int64 iChunk, size_t nByte);
void annex_cache_drop(annex_table *p);
/* The process-wide budget in bytes (set: N < 0 restores the default), and
** the bytes all connections hold. */
sqlite3_int64 annex_cache_limit(void);
sqlite3_int64 annex_cache_set_limit(sqlite3_int64 n);
sqlite3_int64 annex_cache_used(void);

/**************************************************************************
** The virtual table object (module.c owns it).
*/

struct annex_table {
  sqlite3_vtab base;     /* base class: must be first */
  sqlite3 *db;           /* the connection (borrowed) */
  char *zDb;             /* schema name: "main", "temp", ... (owned) */
  char *zName;           /* table name (owned) */
  annex_config *pConfig; /* parsed CREATE arguments (owned) */
  annex_dist_fn xScore;  /* kernel for (elem, metric) */
  sqlite3_stmt *aStmt[ANNEX_STMT_COUNT]; /* cached statements (owned) */
  sqlite3_blob *pReadBlob; /* read handle on %_chunks.data, or NULL */
  sqlite3_int64 nSlotCache;/* cached slot counter, valid if bSlotCache */
  int bSlotCache;        /* nSlotCache may be used (inside a write txn) */
  int bCounterBumped;    /* change counter already bumped in this txn */
  int bTxnWrote;         /* this transaction wrote the table: unlike
                         ** bCounterBumped, kept across ROLLBACK TO */
  int iHiddenBase;       /* column number of the first hidden column */
  annex_table *pNextOpen;/* next open table of this connection */
  struct annex_conn *pConn; /* per-connection context (borrowed) */
  struct annex_ann *pAnn;   /* the ANN index's state, or NULL (owned) */
  void *pVecBuf;            /* one vector, szVec bytes, for writes (owned) */
  struct annex_gpu *pGpu;   /* device state (gpu.c), or NULL (owned) */
  annex_chunk_cache cache;  /* chunks of exact scans (chunk_cache.c) */
};

/* Column numbers of the hidden columns, relative to iHiddenBase. */
#define ANNEX_HID_DISTANCE 0
#define ANNEX_HID_K 1
#define ANNEX_HID_COMMAND 2 /* the column named like the table */
#define ANNEX_HID_KNOB 3    /* ef_search / nprobe / ...: ANN tables only */
/* The per-query device column comes last: after the knob, if any. */
#define ANNEX_HID_DEVICE(p) (ANNEX_HID_KNOB + ((p)->pConfig->pAnnOps != NULL))

/* Per-connection state shared by the modules annex registers. */
typedef struct annex_conn {
  annex_table *pOpen; /* linked list of open annex tables */
} annex_conn;

int annex_set_error(sqlite3_vtab *pVtab, const char *zFmt, ...);

/* Split "t" or "schema.t" into zDb (nDb bytes; "main" by default) and the
** table name *pzTab (pointing into zArg). */
void annex_split_name(const char *zArg, char *zDb, size_t nDb,
                      const char **pzTab);
/* The annex table zDb.zTab if this connection has it open, else NULL. */
annex_table *annex_find_open(annex_conn *pConn, const char *zDb,
                             const char *zTab);

/* sqlite3_str_finish that returns "" (allocated) rather than NULL for an
** empty string; NULL means out of memory. */
char *annex_str_finish(sqlite3_str *s);

/**************************************************************************
** plan.c — xBestIndex and the plan it hands to xFilter.
*/

/* idxNum values. */
#define ANNEX_PLAN_FULLSCAN 1
#define ANNEX_PLAN_ROWID 2
#define ANNEX_PLAN_KNN 3

/* One constraint of a plan, decoded from idxStr. */
typedef struct annex_term {
  char cOp;  /* see plan.c: M K L F D E Q P, or a..k for metadata ops */
  int iCol;  /* user column index, or -1 */
} annex_term;

int annex_best_index(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo);
/* Decode idxStr into terms; *paTerm from sqlite3_malloc64. */
int annex_plan_decode(const char *zIdx, annex_term **paTerm, int *pnTerm);

/**************************************************************************
** cursor.c — xOpen..xClose: full scans, point lookups, k-NN.
*/
int annex_cursor_open(sqlite3_vtab *pVtab, sqlite3_vtab_cursor **pp);
int annex_cursor_close(sqlite3_vtab_cursor *cur);
int annex_cursor_filter(sqlite3_vtab_cursor *cur, int idxNum,
                        const char *idxStr, int argc, sqlite3_value **argv);
int annex_cursor_next(sqlite3_vtab_cursor *cur);
int annex_cursor_eof(sqlite3_vtab_cursor *cur);
int annex_cursor_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i);
int annex_cursor_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *pRowid);
/* The value of a k constraint: a positive integer, or an integral real.
** SQLITE_ERROR with *pzErr (sqlite3_mprintf) naming what was given. */
int annex_read_k(sqlite3_value *v, sqlite3_int64 *pk, char **pzErr);

/**************************************************************************
** knn.c — exact k-NN over the chunks, with filters.
*/

typedef struct annex_knn_query {
  const void *pQuery;     /* query vector, szVec bytes (borrowed) */
  sqlite3_int64 k;        /* results wanted; 0 = every row (lazily sorted) */
  int bRadius;            /* apply the radius bound */
  double rRadius;         /* distance bound */
  int bRadiusInclusive;   /* <= rather than < */
  const unsigned char *aAllowed; /* global-slot bitmap, or NULL = all */
  const annex_mfilter *pFilter;  /* compact-metadata filter, or NULL */
  sqlite3_int64 nAllowedSlots;   /* bits in aAllowed */
  sqlite3_int64 nAllowed;        /* set bits in aAllowed */
  sqlite3_int64 nKnob;           /* ANN search knob, 0 = index default */
  int eDevice;                   /* ANNEX_DEVICE_* for this query (gpu.c) */
} annex_knn_query;

/* knn_exact's answer when pFilter met a value it cannot judge: the caller
** evaluates the filter with SQL (annex_filter_build) and runs again. */
#define ANNEX_NEED_SQL_FILTER (SQLITE_INTERNAL | (77 << 8))

/* Runs the query. With k > 0, *paRes holds the best k sorted by (distance,
** rowid); with k == 0, every hit, unsorted (see annex_hits_select). */
int annex_knn_exact(annex_table *p, const annex_knn_query *q,
                    annex_hit **paRes, sqlite3_int64 *pnRes);

/**************************************************************************
** gpu.c — k-NN on the CUDA plugin (ext/gpu/annex_cuda.h), CPU fallback.
*/

/* The device= table option and the per-query device column. */
#define ANNEX_DEVICE_AUTO 0 /* the GPU when present and the work pays */
#define ANNEX_DEVICE_CPU 1
#define ANNEX_DEVICE_GPU 2  /* the GPU, or an error saying why not */
/* 0 and *pe set for "auto", "cpu" or "gpu" (any case); -1 otherwise. */
int annex_device_parse(const char *z, int *pe);
const char *annex_device_name(int e);

/* What annex_gpu_knn / annex_gpu_batch return when the CPU must answer
** (plugin or device missing, work too small, a device failure: the reason
** is kept for annex_info). Under device=gpu an unavailable GPU is an
** error (SQLITE_ERROR, message on the table) instead. */
#define ANNEX_GPU_USE_CPU (SQLITE_INTERNAL | (78 << 8))

/* One k-NN (q->k > 0) on the device; the filter terms of aTerm/argv are
** applied as a slot bitmap. Results identical to annex_knn_exact's. */
int annex_gpu_knn(annex_table *p, int eDevice, const annex_knn_query *q,
                  const annex_term *aTerm, int nTerm, sqlite3_value **argv,
                  annex_hit **paRes, sqlite3_int64 *pnRes, char **pzErr);
/* nQuery float queries, k each (k <= the table's slots): *paHit holds
** nQuery x k hits (query i's at i * k, (*panHit)[i] of them), both from
** sqlite3_malloc64. */
int annex_gpu_batch(annex_table *p, int eDevice, const float *aQuery,
                    int nQuery, sqlite3_int64 k, annex_hit **paHit,
                    sqlite3_int64 **panHit, char **pzErr);
/* Ranged tables: an ANN index's own copy of its vectors on the device, in
** its order (index=ivf with flat codes: list after list), whose searches
** scan ranges of it (an IVF query: its probed lists). The index owns the
** layout and re-scores the candidates itself (annex_cuda.h's contract,
** with its own CPU kernel); gpu.c owns the context and the bookkeeping.
**   annex_gpu_ranged_use     whether this search may run on the GPU
**                            (device option, work rWork = rows x dims it
**                            would score, k, plugin, device, not inside a
**                            write transaction): SQLITE_OK, or
**                            ANNEX_GPU_USE_CPU (never an error: device=gpu
**                            never reaches an index). *pbUpload: the
**                            resident copy is not the one tagged iTag;
**   annex_gpu_ranged_upload  one piece of the copy, iFirst = 0 first, the
**                            last one ending at nTotal (tagged iTag then);
**                            aSlot becomes the hits' rowid, aValid (may be
**                            NULL) marks live rows;
**   annex_gpu_ranged_knn     one query over nRange [start, end) ranges;
**   annex_gpu_ranged_done    the search ended on the GPU, or on the CPU
**                            after all (zWhy), for annex_info.
** Upload and k-NN return SQLITE_OK or ANNEX_GPU_USE_CPU (a device failure,
** counted; the CPU answers that search). */
struct annex_cuda_hit;
int annex_gpu_ranged_use(annex_table *p, int eDevice, double rWork,
                         sqlite3_int64 k, sqlite3_int64 iTag, int *pbUpload);
int annex_gpu_ranged_upload(annex_table *p, size_t iFirst, size_t n,
                            const float *aVec, const sqlite3_int64 *aSlot,
                            const unsigned char *aValid, size_t nTotal,
                            sqlite3_int64 iTag);
int annex_gpu_ranged_knn(annex_table *p, const float *pQuery, size_t nCand,
                         const uint64_t *aRange, size_t nRange,
                         struct annex_cuda_hit *aHit, size_t *pnHit,
                         float *pFloor);
void annex_gpu_ranged_done(annex_table *p, int bGpu, const char *zWhy);
/* annex_info facts, one xAdd(pCtx, key, SQL literal of the value) each.
** p may be NULL (the table is not open on this connection). */
int annex_gpu_info(annex_table *p, int eDevice, void *pCtx,
                   int (*)(void *, const char *, const char *));
void annex_gpu_free(struct annex_gpu *g);
/* k-means assignment on the GPU for table pTab (an annex_table *): the
** annex_kmeans_assign_fn hook of ext/index/kmeans.h (flags as there).
** Returns 0 when the device did it, non-zero when the caller must assign on
** the CPU (device=cpu, under auto too little work, no plugin or device, a
** device failure). */
int annex_gpu_kmeans_assign(void *pTab, const float *aX, size_t n,
                            size_t nDim, const float *aC, size_t k, int bIP,
                            unsigned flags, int32_t *aAssign, float *aScore);
/* Tests: the next device call of any table first applies
** xTestControl(eOp, iArg) (ANNEX_CUDA_TEST_*). */
void annex_gpu_test_inject(int eOp, long iArg);

/**************************************************************************
** filter.c — the rows a filtered k-NN may return, as a slot bitmap.
*/

/* Build the bitmap of global slots whose rows satisfy the metadata and
** rowid terms of aTerm (argv[i] is the value of aTerm[i]). Terms of other
** kinds are ignored. *paAllowed is NULL when no term filters (every row is
** allowed); otherwise it is from sqlite3_malloc64 with *pnSlots bits, of
** which *pnAllowed are set. */
int annex_filter_build(annex_table *p, const annex_term *aTerm, int nTerm,
                       sqlite3_value **argv, unsigned char **paAllowed,
                       sqlite3_int64 *pnSlots, sqlite3_int64 *pnAllowed);

/* Compile the metadata and rowid terms into a compact-metadata filter.
** *ppOut is NULL when no term filters, or when a term needs SQL (a text
** range, a BLOB constant): then use annex_filter_build. */
int annex_filter_compile(annex_table *p, const annex_term *aTerm, int nTerm,
                         sqlite3_value **argv, annex_mfilter **ppOut);
void annex_filter_free(annex_mfilter *f);

/**************************************************************************
** commands.c — INSERT INTO t(t) VALUES('command').
*/
int annex_command(annex_table *p, sqlite3_value *pCmd);
int annex_integrity_check(annex_table *p);

/**************************************************************************
** functions.c and info.c — SQL functions and annex_info.
*/
int annex_register_functions(sqlite3 *db);
int annex_register_info(sqlite3 *db, annex_conn *pConn);
int annex_register_knn_batch(sqlite3 *db, annex_conn *pConn);

/**************************************************************************
** module.c
*/
int annex_register_module(sqlite3 *db, annex_conn *pConn);

#endif /* ANNEX_INT_H */
