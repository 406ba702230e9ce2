/*
** test_corrupt_ann.c — annex on corrupt ANN index shadow tables (issue 8,
** part 4, for index=hnsw, index=ivf and index=diskann; test_corrupt.c does
** the table's own shadow tables).
**
** Five templates, each serialized once: an hnsw table (m=2, so records
** have several levels; tombstones, some whose chunk is gone; a re-linked
** UPDATE), three trained ivf tables (nlist=2; quantizer flat, sq8, pq;
** deletes and, for sq8 and pq, an UPDATE that leaves a stale entry) and a
** diskann table (r=4, pq_bytes=2; built whole, then rows linked one by
** one; a chunk consolidated away by 'optimize'; tombstones; a re-linked
** UPDATE). Every
** mutation runs on a fresh copy with defensive mode off and rewrites the
** index's shadow tables: every truncation and a few extensions of node
** records and list chunks, byte flips at every offset, neighbour ids out
** of range / dead / self / in cycles, levels above the maximum, counts
** that lie, missing and extra node rows, entries naming slots that do not
** exist or are dead, model blobs (codebooks, code blocks) of the wrong size
** or holding NaN / Inf, node bits unlike the records, T_config values that
** lie or are missing, shadow tables dropped. Then the workload runs
** (g_aOp): k-NN plain, with ef_search / nprobe / search_list, filtered;
** annex_info; integrity-check; INSERT, UPDATE, DELETE; 'optimize';
** 'rebuild' (hnsw, diskann) or 'train' (ivf); integrity-check and k-NN
** again. The rules:
**
**   - every statement returns SQLITE_OK or an error (CORRUPT / CORRUPT_VTAB,
**     or ERROR / CONSTRAINT with a message); never a crash, a hang (an
**     alarm aborts a mutation that runs for 30 s) or a sanitizer report;
**   - a k-NN that succeeds is correct-looking: at most k rows, distinct,
**     each a row the table holds (read back with a plain SELECT), its
**     distance equal to one computed here in double precision from that
**     row's stored vector, in order, the filter holding; without a filter
**     exactly min(k, rows) rows;
**   - the test's own reading of the documented format (check_hnsw /
**     check_ivf / check_diskann below, written from the format comments
**     at the top of ann_hnsw.c, ann_ivf.c, ann_diskann.c, not from the
**     code) decides whether a mutation breaks an invariant: integrity-check
**     must then report it (class DETECT);
**   - when integrity-check passes, no read before it reported corruption;
**   - when 'rebuild' / 'train' succeeds, the index is whole again: the
**     integrity-check and k-NN after it succeed.
**
** The teardown prints the counts per kind.
**
** CI mode (the default) samples: byte offsets of the truncations and flips
** every 4th early on (every one of the first 16) and a 5x larger step after
** 64 bytes, floats of the models the same way, on one build thread (about
** a minute under ASan; diskann's share about 10 s).
** ANNEX_CORRUPT_LONG=1 is the exhaustive sweep (every offset below 64, the
** full step after; several minutes under ASan): run it after changing an
** index's format, its loader or its search. ANNEX_CORRUPT_ONLY=<cmocka
** pattern> (e.g. test_ivf_lists) runs only the tests it names.
*/
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "annex.h"
#include "sqltest.h"

#define NDIM 4
#define HNSW_M 2
#define HNSW_ROWS 200
#define IVF_ROWS 120
#define DISKANN_R 4
#define DISKANN_M 2 /* pq_bytes=2: the largest divisor of NDIM <= 2 */
#define DISKANN_ROWS 120 /* built whole, then DISKANN_MORE linked one by one */
#define DISKANN_MORE 40

typedef enum kind { K_HNSW = 0, K_FLAT, K_SQ8, K_PQ, K_DISKANN, NKIND } kind;
static const char *g_azKind[NKIND] = {"hnsw", "ivf-flat", "ivf-sq8",
                                      "ivf-pq", "diskann"};

/* The workload *********************************************************/

#define Q "'[0.5,-0.25,1,0.125]'"
#define KNN "SELECT rowid, distance FROM t WHERE emb MATCH " Q " AND k = 5"
#define IC "INSERT INTO t(t) VALUES('integrity-check')"

typedef struct op {
  const char *zSql;  /* "%s" is replaced by the knob's name */
  int k;             /* > 0: a k-NN with at most k rows */
  int bFilter;       /* the k-NN has AND cat != 'c' */
  int bWrite;        /* a write or command: CONSTRAINT is allowed too */
  int eRole;         /* 1: the judged integrity-check; 2: 'rebuild' / 'train';
                     ** 3: must succeed when the rebuild did */
} op;

static const op g_aOp[] = {
    {KNN, 5, 0, 0, 0},
    {KNN " AND %s = 1", 5, 0, 0, 0},
    {KNN " AND %s = 60", 5, 0, 0, 0},
    {KNN " AND cat != 'c'", 5, 1, 0, 0},
    {KNN " AND %s = 1 AND cat != 'c'", 5, 1, 0, 0},
    {"SELECT rowid, distance FROM t WHERE emb MATCH " Q " AND k = 50", 50, 0,
     0, 0},
    {"SELECT key, value FROM annex_info('t') WHERE key LIKE 'hnsw%%' OR key "
     "LIKE 'ivf%%' OR key LIKE 'diskann%%'", 0, 0, 0, 0},
    {IC, 0, 0, 0, 1},
    {"INSERT INTO t(emb, cat) VALUES('[1,2,3,4]', 'a')", 0, 0, 1, 0},
    {"UPDATE t SET emb = '[0,0,1,0]' WHERE rowid = 22", 0, 0, 1, 0},
    {"DELETE FROM t WHERE rowid IN (2, 24, 26, 40)", 0, 0, 1, 0},
    {KNN, 5, 0, 0, 0},
    {KNN " AND %s = 2 AND cat != 'c'", 5, 1, 0, 0},
    {"INSERT INTO t(t) VALUES('optimize')", 0, 0, 1, 0},
    {KNN, 5, 0, 0, 0},
    {IC, 0, 0, 0, 0},
    {"INSERT INTO t(t) VALUES('%s')", 0, 0, 1, 2},
    {IC, 0, 0, 0, 3},
    {KNN " AND %s = 3", 5, 0, 0, 3},
    {KNN " AND cat != 'c'", 5, 1, 0, 3},
};
#define NOP ((int)(sizeof(g_aOp) / sizeof(g_aOp[0])))

/* State ****************************************************************/

typedef struct tmpl {
  unsigned char *a; /* serialized (sqlite3_malloc) */
  sqlite3_int64 n;
} tmpl;

static tmpl g_aTmpl[NKIND];
static kind g_eKind;                /* the template mutations apply to */
static int g_nMutation[NKIND], g_nDetected[NKIND], g_nIcOk[NKIND],
    g_nOkOps[NKIND], g_nErrOps[NKIND], g_nBroken[NKIND], g_nRebuilt[NKIND];
static char g_zCurrent[512];        /* the mutation running (for alarms) */
static int g_bLong;                 /* ANNEX_CORRUPT_LONG: every offset */
/* ivf-flat takes distances from its codes: a corrupt code gives a wrong
** distance, which is allowed only when integrity-check reports it */
static int g_bWrongDist;

static void on_alarm(int sig) {
  static const char zMsg[] = "test_corrupt_ann: mutation hangs: ";
  (void)sig;
  if (write(2, zMsg, sizeof(zMsg) - 1) < 0 ||
      write(2, g_zCurrent, strlen(g_zCurrent)) < 0 || write(2, "\n", 1) < 0) {
    /* nothing more to do */
  }
  abort();
}

static const char *knob(void) {
  return g_eKind == K_HNSW ? "ef_search"
         : g_eKind == K_DISKANN ? "search_list" : "nprobe";
}

/* The command that builds the index anew. */
static const char *rebuild_cmd(void) {
  return g_eKind == K_HNSW || g_eKind == K_DISKANN ? "rebuild" : "train";
}

static void vec_sql(sqlite3_str *s, int i) {
  sqlite3_str_appendf(s, "'[%d,%g,%g,%d]'", i % 5, (i % 17) * 0.25, 1.0 / i,
                      -i % 3);
}

static void rows_sql(sqlite3_str *s, int iFirst, int iLast) {
  sqlite3_str_appendall(s, "BEGIN;\n");
  for (int i = iFirst; i <= iLast; i++) {
    sqlite3_str_appendf(s, "INSERT INTO t(rowid, emb, cat) VALUES(%d, ", i);
    vec_sql(s, i);
    sqlite3_str_appendf(s, ", '%c');\n", 'a' + i % 3);
  }
  sqlite3_str_appendall(s, "COMMIT;\n");
}

/* diskann: a whole build (120 rows), 40 rows linked one by one, a chunk
** emptied and consolidated by 'optimize' (rows 41..48: slots 40..47 have
** neither a row nor a node), then tombstones (rows 9..16, 3, 20, 21) and a
** re-linked UPDATE. */
static char *template_diskann(void) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendf(s, "CREATE VIRTUAL TABLE t USING annex(emb float[4], "
                         "cat text, chunk_size=8, index=diskann(r=%d, "
                         "l_build=8, pq_bytes=%d, search_list=16, cache_mb=1));\n",
                      DISKANN_R, DISKANN_M);
  rows_sql(s, 1, DISKANN_ROWS);
  rows_sql(s, DISKANN_ROWS + 1, DISKANN_ROWS + DISKANN_MORE);
  sqlite3_str_appendall(s, "DELETE FROM t WHERE rowid BETWEEN 41 AND 48;\n"
                           "INSERT INTO t(t) VALUES('optimize');\n"
                           "DELETE FROM t WHERE rowid BETWEEN 9 AND 16 "
                           "OR rowid IN (3, 20, 21);\n"
                           "UPDATE t SET emb = '[9,9,9,9]' WHERE rowid = 6;\n");
  return sqlite3_str_finish(s);
}

static char *template_sql(kind e) {
  static const char *azQuant[] = {"", "flat", "sq8", "pq, m=2"};
  int nRow = e == K_HNSW ? HNSW_ROWS : IVF_ROWS;
  sqlite3_str *s;
  if (e == K_DISKANN) return template_diskann();
  s = sqlite3_str_new(NULL);
  if (e == K_HNSW) {
    sqlite3_str_appendf(s, "CREATE VIRTUAL TABLE t USING annex(emb float[4], "
                           "cat text, chunk_size=8, index=hnsw(m=%d, "
                           "ef_construction=16));\nBEGIN;\n", HNSW_M);
  } else {
    sqlite3_str_appendf(s, "CREATE VIRTUAL TABLE t USING annex(emb float[4], "
                           "cat text, chunk_size=8, index=ivf(nlist=2, "
                           "quantizer=%s));\nBEGIN;\n", azQuant[e]);
  }
  for (int i = 1; i <= nRow; i++) {
    sqlite3_str_appendf(s, "INSERT INTO t(rowid, emb, cat) VALUES(%d, ", i);
    vec_sql(s, i);
    sqlite3_str_appendf(s, ", '%c');\n", 'a' + i % 3);
  }
  sqlite3_str_appendall(s, "COMMIT;\n");
  if (e != K_HNSW) sqlite3_str_appendall(s, "INSERT INTO t(t) VALUES('train');\n");
  /* chunk 1 (rows 9..16) empties and goes; tombstones in chunks 0 and 2 */
  sqlite3_str_appendall(s, "DELETE FROM t WHERE rowid BETWEEN 9 AND 16 "
                           "OR rowid IN (3, 20, 21);\n");
  if (e != K_FLAT) {
    sqlite3_str_appendall(s, "UPDATE t SET emb = '[9,9,9,9]' WHERE rowid = 6;\n");
  }
  return sqlite3_str_finish(s);
}

static sqlite3 *open_copy(kind e) {
  sqlite3 *db = st_open(NULL);
  unsigned char *a = sqlite3_malloc64((sqlite3_uint64)g_aTmpl[e].n);
  int bOff = -1;
  assert_non_null(a);
  memcpy(a, g_aTmpl[e].a, (size_t)g_aTmpl[e].n);
  assert_int_equal(sqlite3_deserialize(db, "main", a, g_aTmpl[e].n,
                                       g_aTmpl[e].n,
                                       SQLITE_DESERIALIZE_FREEONCLOSE |
                                           SQLITE_DESERIALIZE_RESIZEABLE),
                   SQLITE_OK);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 0, &bOff);
  assert_int_equal(bOff, 0);
  return db;
}

/* The format, read by the test ******************************************/

static sqlite3_int64 cfg_int(sqlite3 *db, const char *zKey, int *pbBad) {
  sqlite3_stmt *s = NULL;
  sqlite3_int64 v = 0;
  if (sqlite3_prepare_v2(db, "SELECT value FROM t_config WHERE key = ?", -1,
                         &s, 0) != SQLITE_OK) {
    *pbBad = 1;
    return 0;
  }
  sqlite3_bind_text(s, 1, zKey, -1, SQLITE_STATIC);
  if (sqlite3_step(s) == SQLITE_ROW &&
      sqlite3_column_type(s, 0) == SQLITE_INTEGER) {
    v = sqlite3_column_int64(s, 0);
  } else {
    *pbBad = 1;
  }
  sqlite3_finalize(s);
  return v;
}

static uint32_t get_u32(const unsigned char *a) {
  return (uint32_t)a[0] | (uint32_t)a[1] << 8 | (uint32_t)a[2] << 16 |
         (uint32_t)a[3] << 24;
}

/* Live slots of the table (T_rows), as a byte per slot. */
static unsigned char *live_slots(sqlite3 *db, sqlite3_int64 *pnSlots) {
  int bBad = 0;
  sqlite3_int64 n = cfg_int(db, "slots", &bBad);
  unsigned char *a = calloc((size_t)n + 1, 1);
  sqlite3_stmt *s = st_prepare(db, "SELECT slot FROM t_rows");
  assert_false(bBad);
  while (sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 i = sqlite3_column_int64(s, 0);
    assert_true(i >= 0 && i < n);
    a[i] = 1;
  }
  sqlite3_finalize(s);
  *pnSlots = n;
  return a;
}

/* hnsw.h's node record; the level (or -1 when it does not parse); every
** neighbour id must be below nSlots. */
static int parse_node(const unsigned char *a, int n, sqlite3_int64 nSlots) {
  int off = 1, L;
  if (a == NULL || n < 1) return -1;
  L = a[0];
  if (L > 16) return -1;
  for (int l = 0; l <= L; l++) {
    int c, bound = l ? HNSW_M : 2 * HNSW_M;
    if (n - off < 2) return -1;
    c = a[off] | a[off + 1] << 8;
    off += 2;
    if (c > bound || (n - off) / 4 < c) return -1;
    for (int j = 0; j < c; j++, off += 4) {
      if ((sqlite3_int64)get_u32(a + off) >= nSlots) return -1;
    }
  }
  return off == n ? L : -1;
}

/* 1 when the hnsw shadow content breaks ann_hnsw.c's documented format:
** a record does not parse or names ids at or beyond the slot counter, a
** live row has no node, hnsw_entry is not -1 exactly when there are no
** nodes, or is not a node, or hnsw_levels is not its level. */
static int check_hnsw(sqlite3 *db) {
  sqlite3_int64 nSlots, nNode = 0, iEntry, nLevels;
  unsigned char *aLive = live_slots(db, &nSlots), *aNode;
  sqlite3_stmt *s = NULL;
  int bBad = 0, nEntryLevel = -2;
  iEntry = cfg_int(db, "hnsw_entry", &bBad);
  nLevels = cfg_int(db, "hnsw_levels", &bBad);
  aNode = calloc((size_t)nSlots + 1, 1);
  if (sqlite3_prepare_v2(db, "SELECT id, node FROM t_hnsw", -1, &s, 0)) {
    bBad = 1;
  }
  while (!bBad && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    int L;
    L = parse_node(sqlite3_column_blob(s, 1), sqlite3_column_bytes(s, 1),
                   nSlots);
    if (id < 0 || id >= nSlots || L < 0) bBad = 1;
    else {
      aNode[id] = 1;
      nNode++;
      if (id == iEntry) nEntryLevel = L;
    }
  }
  sqlite3_finalize(s);
  for (sqlite3_int64 i = 0; i < nSlots && !bBad; i++) {
    if (aLive[i] && !aNode[i]) bBad = 1;
  }
  if (!bBad && (iEntry == -1) != (nNode == 0)) bBad = 1;
  if (!bBad && iEntry != -1 && nEntryLevel != nLevels) bBad = 1;
  free(aLive);
  free(aNode);
  return bBad;
}

/* 1 if the flat code at a equals the stored vector of slot iSlot. */
static int flat_code_ok(sqlite3 *db, sqlite3_int64 iSlot, const unsigned char *a) {
  sqlite3_stmt *s = st_prepare(db, "SELECT emb FROM t WHERE rowid = (SELECT "
                               "rowid FROM t_rows WHERE slot = %lld)", iSlot);
  int bOk = sqlite3_step(s) == SQLITE_ROW &&
            sqlite3_column_bytes(s, 0) == 4 * NDIM &&
            memcmp(sqlite3_column_blob(s, 0), a, 4 * NDIM) == 0;
  sqlite3_finalize(s);
  return bOk;
}

/* 1 when the ivf shadow content breaks ann_ivf.c's documented format. */
static int check_ivf(sqlite3 *db) {
  sqlite3_int64 nSlots, nList, m, nChunk, nTrained, nUpdates;
  unsigned char *aLive = live_slots(db, &nSlots), *aSeen;
  sqlite3_stmt *s = NULL;
  int bBad = 0, sz = 8 + 4 * NDIM;
  if (g_eKind == K_SQ8) sz = 8 + NDIM;
  nTrained = cfg_int(db, "ivf_trained", &bBad);
  nList = cfg_int(db, "ivf_nlist", &bBad);
  m = cfg_int(db, "ivf_m", &bBad);
  nChunk = cfg_int(db, "ivf_chunk", &bBad);
  cfg_int(db, "ivf_rows", &bBad);
  nUpdates = cfg_int(db, "ivf_updates", &bBad);
  if (cfg_int(db, "ivf_format", &bBad) != 1) bBad = 1;
  if (!bBad && nTrained == 0) { /* untrained: searches answer exactly */
    free(aLive);
    return 0;
  }
  if (nTrained != 1 || nList < 1 || nChunk < 1 || nChunk > 65536) bBad = 1;
  if (nUpdates < 0) bBad = 1;
  if (g_eKind == K_PQ) {
    if (m < 1 || NDIM % m) bBad = 1;
    sz = 8 + (int)m;
  }
  aSeen = calloc((size_t)nSlots + 1, 1);
  /* the model: sizes from the config */
  for (int id = 0; id < 3 && !bBad; id++) {
    sqlite3_int64 nWant = id == 0 ? nList * NDIM * 4 : id == 1 ? 2 * NDIM * 4
                                                            : 256 * NDIM * 4;
    int bNeed = id == 0 || (id == 1 && g_eKind == K_SQ8) ||
                (id == 2 && g_eKind == K_PQ);
    sqlite3_int64 nHave = -1;
    if (!bNeed) continue;
    if (sqlite3_prepare_v2(db, "SELECT length(CAST(data AS BLOB)) FROM "
                               "t_ivfmodel WHERE id = ?", -1, &s, 0)) {
      bBad = 1;
      break;
    }
    sqlite3_bind_int(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW) {
      nHave = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    s = NULL;
    if (nHave != nWant) bBad = 1;
  }
  if (!bBad && sqlite3_prepare_v2(db, "SELECT id, data FROM t_ivflists", -1,
                                  &s, 0)) {
    bBad = 1;
  }
  while (!bBad && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    const unsigned char *a = sqlite3_column_blob(s, 1);
    sqlite3_int64 nByte = sqlite3_column_bytes(s, 1), n;
    if (id < 0 ||
        (id >> 32) >= nList || nByte < 8 || (nByte - 8) % sz) {
      bBad = 1;
      break;
    }
    n = get_u32(a);
    if (8 + n * sz > nByte) {
      bBad = 1;
      break;
    }
    for (sqlite3_int64 j = 0; j < n; j++) {
      const unsigned char *e = a + 8 + j * sz;
      uint64_t iSlot = get_u32(e) | (uint64_t)get_u32(e + 4) << 32;
      if (iSlot >= (uint64_t)nSlots) {
        bBad = 1;
        break;
      }
      /* without UPDATEs since training, a live row has one entry; a flat
      ** code is the vector itself */
      if (aLive[iSlot] && nUpdates == 0 && aSeen[iSlot]) bBad = 1;
      if (aLive[iSlot] && nUpdates == 0 && g_eKind == K_FLAT &&
          !flat_code_ok(db, (sqlite3_int64)iSlot, e + 8)) {
        bBad = 1;
      }
      aSeen[iSlot] = 1;
    }
  }
  sqlite3_finalize(s);
  for (sqlite3_int64 i = 0; i < nSlots && !bBad; i++) {
    if (aLive[i] && !aSeen[i]) bBad = 1;
  }
  free(aLive);
  free(aSeen);
  return bBad;
}

/* diskann's node record: 1 when it parses (u32 n <= r, the vector, n
** neighbours) and every neighbour is a slot with a record (aRec). */
static int diskann_node_ok(const unsigned char *a, int n, sqlite3_int64 nSlots,
                           const unsigned char *aRec) {
  uint32_t c;
  if (a == NULL || n < 4) return 0;
  c = get_u32(a);
  if (c > DISKANN_R || n != 4 + 4 * NDIM + 4 * (int)c) return 0;
  for (uint32_t j = 0; j < c; j++) {
    uint32_t id = get_u32(a + 4 + 4 * NDIM + 4 * j);
    if ((sqlite3_int64)id >= nSlots || !aRec[id]) return 0;
  }
  return 1;
}

/* A T_diskannpq row: the codebook (id -1, 256 x dims floats) or the code
** block of slots [1024 id, 1024 id + 1024): its node bits must match the
** records (aRec), its codes be zero where a slot has no node. Sets *pbBook
** for the codebook, aBit[slot] for each node bit. */
static int diskann_pq_row_ok(sqlite3_int64 id, const unsigned char *a, int n,
                             sqlite3_int64 nSlots, const unsigned char *aRec,
                             unsigned char *aBit, int *pbBook) {
  if (id == -1) {
    *pbBook = 1;
    return n == 256 * NDIM * 4;
  }
  if (id < 0 || a == NULL || n != 128 + 1024 * DISKANN_M) return 0;
  for (int i = 0; i < 1024; i++) {
    sqlite3_int64 iSlot = id * 1024 + i;
    if ((a[i >> 3] >> (i & 7)) & 1) {
      if (iSlot >= nSlots || !aRec[iSlot]) return 0;
      aBit[iSlot] = 1;
    } else {
      for (int j = 0; j < DISKANN_M; j++) {
        if (a[128 + i * DISKANN_M + j]) return 0;
      }
    }
  }
  return 1;
}

/* Each row (id, blob) of zSql: node records, or T_diskannpq rows when
** pbBook is set; 0 when one breaks the format or the statement fails. */
static int diskann_rows_ok(sqlite3 *db, const char *zSql, sqlite3_int64 nSlots,
                           unsigned char *aRec, unsigned char *aBit,
                           int *pbBook) {
  sqlite3_stmt *s = NULL;
  int bOk = sqlite3_prepare_v2(db, zSql, -1, &s, 0) == SQLITE_OK;
  while (bOk && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    const unsigned char *a = sqlite3_column_blob(s, 1);
    int n = sqlite3_column_bytes(s, 1);
    if (pbBook) {
      bOk = diskann_pq_row_ok(id, a, n, nSlots, aRec, aBit, pbBook);
    } else {
      bOk = id >= 0 && id < nSlots && diskann_node_ok(a, n, nSlots, aRec);
    }
  }
  sqlite3_finalize(s);
  return bOk;
}

/* 1 when the diskann shadow content breaks ann_diskann.c's documented
** format: a T_config key missing, not an integer or lying (format 1; m the
** largest divisor of dims <= pq_bytes; trained >= 0, 0 exactly when there
** is no codebook); a record off the slot range, not parsing or naming a
** slot without a record; a codebook or code block of the wrong size; node
** bits unlike the records or a code without a node not zero; nodes
** without a codebook; a live row without a node; the entry not -1 exactly
** when there are no nodes, or not a node. */
static int check_diskann(sqlite3 *db) {
  sqlite3_int64 nSlots, iEntry, nTrained, nNode = 0;
  unsigned char *aLive = live_slots(db, &nSlots), *aRec, *aBit;
  sqlite3_stmt *s = NULL;
  int bBad = 0, bBook = 0;
  if (cfg_int(db, "diskann_format", &bBad) != 1) bBad = 1;
  if (cfg_int(db, "diskann_pq", &bBad) != DISKANN_M) bBad = 1;
  iEntry = cfg_int(db, "diskann_entry", &bBad);
  nTrained = cfg_int(db, "diskann_trained", &bBad);
  if (nTrained < 0 || iEntry < -1 || iEntry >= nSlots) bBad = 1;
  aRec = calloc((size_t)nSlots + 1, 1);
  aBit = calloc((size_t)nSlots + 1, 1);
  if (!bBad && sqlite3_prepare_v2(db, "SELECT id FROM t_diskann", -1, &s, 0)) {
    bBad = 1;
  }
  while (!bBad && sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    if (id < 0 || id >= nSlots) bBad = 1;
    else aRec[id] = 1;
  }
  sqlite3_finalize(s);
  if (!bBad && !diskann_rows_ok(db, "SELECT id, node FROM t_diskann", nSlots,
                                aRec, aBit, NULL)) {
    bBad = 1;
  }
  if (!bBad && !diskann_rows_ok(db, "SELECT id, data FROM t_diskannpq",
                                nSlots, aRec, aBit, &bBook)) {
    bBad = 1;
  }
  for (sqlite3_int64 i = 0; i < nSlots && !bBad; i++) {
    if (aRec[i] != aBit[i] || (aLive[i] && !aRec[i])) bBad = 1;
    nNode += aRec[i];
  }
  if (!bBad && ((nTrained == 0) == bBook || (nNode > 0 && !bBook))) bBad = 1;
  if (!bBad && ((iEntry == -1) != (nNode == 0) ||
                (iEntry >= 0 && !aRec[iEntry]))) {
    bBad = 1;
  }
  free(aLive);
  free(aRec);
  free(aBit);
  return bBad;
}

static int format_broken(sqlite3 *db) {
  return g_eKind == K_HNSW      ? check_hnsw(db)
         : g_eKind == K_DISKANN ? check_diskann(db)
                                : check_ivf(db);
}

/* Running the workload *************************************************/

static int allowed_error(sqlite3 *db, const op *o, int rc) {
  const char *zMsg = sqlite3_errmsg(db);
  switch (rc & 0xff) {
    case SQLITE_CORRUPT: return 1;
    case SQLITE_CONSTRAINT: if (!o->bWrite) return 0; /* fall through */
    case SQLITE_ERROR: return zMsg && zMsg[0] && strcmp(zMsg, "not an error");
  }
  return 0;
}

/* The row's stored vector and category, read with a plain lookup. */
static int row_of(sqlite3 *db, sqlite3_int64 iRowid, float *v, char *pcCat) {
  sqlite3_stmt *s = st_prepare(db, "SELECT emb, cat FROM t WHERE rowid = %lld",
                               iRowid);
  int bFound = 0;
  if (sqlite3_step(s) == SQLITE_ROW) {
    if (sqlite3_column_bytes(s, 0) != 4 * NDIM) {
      fail_msg("%s: row %lld has a vector of %d bytes", g_zCurrent,
               (long long)iRowid, sqlite3_column_bytes(s, 0));
    }
    memcpy(v, sqlite3_column_blob(s, 0), 4 * NDIM);
    *pcCat = (char)(sqlite3_column_text(s, 1) ? sqlite3_column_text(s, 1)[0]
                                              : 0);
    bFound = 1;
  }
  sqlite3_finalize(s);
  return bFound;
}

/* A k-NN answer must be correct-looking (see the header). */
static void check_knn(sqlite3 *db, const op *o, const char *zSql,
                      const sqlite3_int64 *aRowid, const double *aDist,
                      const int *aNull, int n) {
  static const double q[NDIM] = {0.5, -0.25, 1, 0.125};
  if (n > o->k) fail_msg("%s: %d rows from %s", g_zCurrent, n, zSql);
  for (int i = 0; i < n; i++) {
    float v[NDIM];
    char c = 0;
    double d = 0;
    for (int j = 0; j < i; j++) {
      if (aRowid[i] == aRowid[j]) {
        fail_msg("%s: rowid %lld twice from %s", g_zCurrent,
                 (long long)aRowid[i], zSql);
      }
    }
    if (!row_of(db, aRowid[i], v, &c)) {
      fail_msg("%s: %s returned rowid %lld, which the table does not hold",
               g_zCurrent, zSql, (long long)aRowid[i]);
    }
    if (o->bFilter && c == 'c') {
      fail_msg("%s: %s returned row %lld of cat 'c'", g_zCurrent, zSql,
               (long long)aRowid[i]);
    }
    for (int j = 0; j < NDIM; j++) d += ((double)v[j] - q[j]) * ((double)v[j] - q[j]);
    d = sqrt(d);
    /* a wrong distance, never an order broken: a NaN code is skipped
    ** (ext/index/ivf.c), an infinite one sorts last */
    if ((aNull[i] || fabs(d - aDist[i]) > 1e-5 * (1 + d)) &&
        g_eKind == K_FLAT && o->eRole != 3) {
      g_bWrongDist = 1;
    } else if (aNull[i] || fabs(d - aDist[i]) > 1e-5 * (1 + d)) {
      fail_msg("%s: %s returned row %lld at distance %g; its vector is at %g",
               g_zCurrent, zSql, (long long)aRowid[i], aDist[i], d);
    }
    if (i > 0 && aDist[i] < aDist[i - 1]) {
      fail_msg("%s: distances out of order from %s", g_zCurrent, zSql);
    }
  }
  if (!o->bFilter) {
    sqlite3_int64 nRow = st_int(db, "SELECT count(*) FROM t");
    sqlite3_int64 nWant = nRow < o->k ? nRow : o->k;
    if (n != nWant) {
      fail_msg("%s: %s returned %d rows of %lld", g_zCurrent, zSql, n,
               (long long)nWant);
    }
  }
}

static int run_op(sqlite3 *db, const op *o) {
  sqlite3_int64 aRowid[64];
  double aDist[64];
  int aNull[64], n = 0, rc;
  sqlite3_stmt *pStmt = NULL;
  char *zSql = sqlite3_mprintf(o->zSql, o->eRole == 2 ? rebuild_cmd()
                                                     : knob());
  assert_non_null(zSql);
  rc = sqlite3_prepare_v2(db, zSql, -1, &pStmt, NULL);
  if (rc == SQLITE_OK) rc = SQLITE_ROW;
  while (rc == SQLITE_ROW && (rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    if (o->k > 0 && n < 64) {
      aRowid[n] = sqlite3_column_int64(pStmt, 0);
      aNull[n] = sqlite3_column_type(pStmt, 1) == SQLITE_NULL;
      aDist[n++] = sqlite3_column_double(pStmt, 1);
    }
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc != SQLITE_OK) rc = sqlite3_extended_errcode(db);
  sqlite3_finalize(pStmt);
  if (rc != SQLITE_OK && !allowed_error(db, o, rc)) {
    fail_msg("%s: %s gave %d (%s)", g_zCurrent, zSql, rc, sqlite3_errmsg(db));
  }
  if (rc == SQLITE_OK && o->k > 0) check_knn(db, o, zSql, aRowid, aDist, aNull, n);
  sqlite3_free(zSql);
  return rc;
}

/* Run the workload on db; bBroken: the test's reading of the format says
** the mutation broke an invariant. */
static void run_all(sqlite3 *db, int bBroken) {
  int aRc[NOP], iIc = -1, bRebuilt = 0;
  g_bWrongDist = 0;
  for (int i = 0; i < NOP; i++) {
    aRc[i] = run_op(db, &g_aOp[i]);
    if (g_aOp[i].eRole == 1) iIc = i;
    if (g_aOp[i].eRole == 2 && aRc[i] == SQLITE_OK) bRebuilt = 1;
    if (g_aOp[i].eRole == 3 && bRebuilt && aRc[i] != SQLITE_OK) {
      fail_msg("%s: after a successful rebuild %s gave %d (%s)", g_zCurrent,
               g_aOp[i].zSql, aRc[i], sqlite3_errmsg(db));
    }
    if (aRc[i] == SQLITE_OK) g_nOkOps[g_eKind]++;
    else g_nErrOps[g_eKind]++;
  }
  if (bRebuilt) g_nRebuilt[g_eKind]++;
  if (bBroken) g_nBroken[g_eKind]++;
  if (bBroken && aRc[iIc] == SQLITE_OK) {
    fail_msg("integrity-check passed after %s, which breaks the format",
             g_zCurrent);
  }
  if (aRc[iIc] == SQLITE_OK) {
    g_nIcOk[g_eKind]++;
    if (g_bWrongDist) {
      fail_msg("integrity-check passed after %s, but a k-NN returned a wrong "
               "distance", g_zCurrent);
    }
    for (int i = 0; i < iIc; i++) {
      if ((aRc[i] & 0xff) == SQLITE_CORRUPT) {
        fail_msg("integrity-check passed after %s, but %s reported "
                 "corruption", g_zCurrent, g_aOp[i].zSql);
      }
    }
  } else {
    g_nDetected[g_eKind]++;
  }
}

/* Mutations ************************************************************/

static void mutation_run(const char *zSql, const char *zTab, sqlite3_int64 iRow,
                         const unsigned char *a, int n, int eType) {
  sqlite3 *db;
  alarm(30);
  db = open_copy(g_eKind);
  if (zSql) {
    if (st_try(db, "%s", zSql) != SQLITE_OK) {
      fail_msg("mutation %s failed: %s", g_zCurrent, sqlite3_errmsg(db));
    }
  } else {
    int bNode = !strcmp(zTab, "t_hnsw") || !strcmp(zTab, "t_diskann");
    sqlite3_stmt *s = st_prepare(db, "UPDATE %s SET %s = ? WHERE id = %lld",
                                 zTab, bNode ? "node" : "data", iRow);
    if (eType == SQLITE_TEXT) {
      sqlite3_bind_text(s, 1, (const char *)a, n, SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_blob(s, 1, a ? (const void *)a : "", n, SQLITE_TRANSIENT);
    }
    assert_int_equal(st_run(s), SQLITE_DONE);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_finalize(s);
  }
  run_all(db, format_broken(db));
  st_close(db);
  alarm(0);
  g_nMutation[g_eKind]++;
}

static void mutate_sql(const char *zFmt, ...) {
  va_list ap;
  char *zSql;
  va_start(ap, zFmt);
  zSql = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  assert_non_null(zSql);
  snprintf(g_zCurrent, sizeof(g_zCurrent), "%s: %s", g_azKind[g_eKind], zSql);
  mutation_run(zSql, NULL, 0, NULL, 0, 0);
  sqlite3_free(zSql);
}

static void mutate_blob(const char *zTab, sqlite3_int64 iRow,
                        const unsigned char *a, int n, const char *zFmt, ...) {
  va_list ap;
  char z[256];
  va_start(ap, zFmt);
  vsnprintf(z, sizeof(z), zFmt, ap);
  va_end(ap);
  snprintf(g_zCurrent, sizeof(g_zCurrent), "%s: %s row %lld: %s",
           g_azKind[g_eKind], zTab, (long long)iRow, z);
  mutation_run(NULL, zTab, iRow, a, n, SQLITE_BLOB);
}

/* The offset after i of a sweep with step nStep beyond the first 64
** (exhaustive in the long mode, sampled in CI: see the header). */
static int next_off(int i, int nStep) {
  if (g_bLong) return i + (i < 64 ? 1 : nStep);
  return i + (i < 16 ? 1 : i < 64 ? 4 : 5 * nStep);
}

/* Every truncation, a few extensions, three flips at every offset, the same
** bytes as text (offsets sampled in CI: next_off). */
static void mutate_bytes(const char *zTab, sqlite3_int64 iRow,
                         const unsigned char *a0, int n, int nStep) {
  unsigned char *a = malloc((size_t)n + 8);
  assert_non_null(a);
  for (int i = 0; i < n; i = next_off(i, nStep)) {
    mutate_blob(zTab, iRow, a0, i, "truncated to %d of %d bytes", i, n);
  }
  for (int e = 1; e <= 8; e *= 2) {
    memcpy(a, a0, (size_t)n);
    memset(a + n, e == 4 ? 0 : 0x5a, (size_t)e);
    mutate_blob(zTab, iRow, a, n + e, "extended by %d bytes", e);
  }
  for (int i = 0; i < n; i = next_off(i, nStep)) {
    static const unsigned char aMask[] = {0x01, 0x80, 0xff};
    for (int j = 0; j < 3; j++) {
      memcpy(a, a0, (size_t)n);
      a[i] ^= aMask[j];
      mutate_blob(zTab, iRow, a, n, "byte %d ^= 0x%02x", i, aMask[j]);
    }
  }
  snprintf(g_zCurrent, sizeof(g_zCurrent), "%s: %s row %lld as text",
           g_azKind[g_eKind], zTab, (long long)iRow);
  mutation_run(NULL, zTab, iRow, a0, n, SQLITE_TEXT);
  free(a);
}

static unsigned char *read_blob(sqlite3 *db, const char *zSql, int *pn) {
  sqlite3_stmt *s = st_prepare(db, "%s", zSql);
  unsigned char *a = NULL;
  *pn = -1;
  if (sqlite3_step(s) == SQLITE_ROW) {
    *pn = sqlite3_column_bytes(s, 0);
    a = malloc((size_t)*pn + 1);
    assert_non_null(a);
    memcpy(a, sqlite3_column_blob(s, 0), (size_t)*pn);
  }
  sqlite3_finalize(s);
  return a;
}

static void put_u32(unsigned char *a, uint32_t v) {
  a[0] = (unsigned char)v;
  a[1] = (unsigned char)(v >> 8);
  a[2] = (unsigned char)(v >> 16);
  a[3] = (unsigned char)(v >> 24);
}

/* Setup ****************************************************************/

static void pristine(kind e) {
  sqlite3 *db;
  g_eKind = e;
  snprintf(g_zCurrent, sizeof(g_zCurrent), "%s: no mutation", g_azKind[e]);
  db = open_copy(e);
  if (format_broken(db)) fail_msg("%s: the template breaks the format", g_azKind[e]);
  for (int i = 0; i < NOP; i++) {
    if (run_op(db, &g_aOp[i]) != SQLITE_OK) {
      fail_msg("pristine %s: %s gave %s", g_azKind[e], g_aOp[i].zSql,
               sqlite3_errmsg(db));
    }
  }
  st_close(db);
}

static int group_setup(void **state) {
  const char *zLong = getenv("ANNEX_CORRUPT_LONG");
  (void)state;
  g_bLong = zLong && atoi(zLong);
  signal(SIGALRM, on_alarm);
  /* One build thread: the templates are tiny, and every mutation runs
  ** 'rebuild' / 'train', where OpenMP's barriers cost more than the work,
  ** most of all on a loaded 2-core machine (CI mode: 10 s of CPU instead
  ** of 170 s). The parallel builds have their own tests. */
  {
    sqlite3 *db = st_open(NULL);
    assert_int_equal(st_int(db, "SELECT annex_threads(1)"), 1);
    st_close(db);
  }
  for (int e = 0; e < NKIND; e++) {
    sqlite3 *db = st_open(NULL);
    char *zSql = template_sql((kind)e);
    assert_non_null(zSql);
    st_exec(db, "%s", zSql);
    sqlite3_free(zSql);
    if (e == K_DISKANN) {
      /* trained by the whole build; tombstones and an emptied chunk */
      assert_int_equal(st_int(db, "SELECT value FROM t_config WHERE "
                                  "key = 'diskann_trained'"), DISKANN_ROWS);
      assert_int_equal(st_int(db, "SELECT count(*) FROM t_diskann WHERE id "
                                  "NOT IN (SELECT slot FROM t_rows)"), 11);
      assert_int_equal(st_int(db, "SELECT count(*) FROM t_diskann WHERE id "
                                  "BETWEEN 40 AND 47"), 0);
    } else if (e != K_HNSW) {
      assert_int_equal(st_int(db, "SELECT value FROM t_config WHERE "
                                  "key = 'ivf_trained'"), 1);
    } else {
      assert_true(st_int(db, "SELECT value FROM t_config WHERE "
                             "key = 'hnsw_levels'") >= 3);
    }
    g_aTmpl[e].a = sqlite3_serialize(db, "main", &g_aTmpl[e].n, 0);
    assert_non_null(g_aTmpl[e].a);
    st_close(db);
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  for (int e = 0; e < NKIND; e++) {
    printf("test_corrupt_ann (%s): %s: %d mutations (%d break the format; %d "
           "reported by integrity-check, %d passed it; %d repaired by "
           "rebuild/train); %d statements succeeded, %d failed cleanly\n",
           g_bLong ? "long" : "CI", g_azKind[e], g_nMutation[e],
           g_nBroken[e], g_nDetected[e], g_nIcOk[e], g_nRebuilt[e], g_nOkOps[e], g_nErrOps[e]);
    sqlite3_free(g_aTmpl[e].a);
  }
  return 0;
}

/* hnsw *****************************************************************/

typedef struct hnsw_pick {
  sqlite3_int64 aId[4]; /* entry, another upper-level node, a level-0 node,
                        ** a tombstone */
} hnsw_pick;

static hnsw_pick hnsw_nodes(sqlite3 *db) {
  hnsw_pick p;
  p.aId[0] = st_int(db, "SELECT value FROM t_config WHERE key = 'hnsw_entry'");
  p.aId[1] = st_int(db, "SELECT id FROM t_hnsw WHERE id != %lld ORDER BY "
                        "hex(substr(node, 1, 1)) DESC, id LIMIT 1", p.aId[0]);
  p.aId[2] = st_int(db, "SELECT id FROM t_hnsw WHERE substr(node, 1, 1) = x'00' AND "
                        "length(node) > 10 ORDER BY id LIMIT 1");
  p.aId[3] = st_int(db, "SELECT id FROM t_hnsw WHERE id NOT IN (SELECT slot "
                        "FROM t_rows) ORDER BY id DESC LIMIT 1");
  return p;
}

static void test_hnsw_pristine(void **state) {
  (void)state;
  pristine(K_HNSW);
}

static void test_hnsw_records(void **state) {
  sqlite3 *db;
  hnsw_pick p;
  (void)state;
  g_eKind = K_HNSW;
  db = open_copy(K_HNSW);
  p = hnsw_nodes(db);
  for (int i = 0; i < 4; i++) {
    int n;
    char zSql[128];
    unsigned char *a;
    snprintf(zSql, sizeof(zSql), "SELECT node FROM t_hnsw WHERE id = %lld",
             (long long)p.aId[i]);
    a = read_blob(db, zSql, &n);
    assert_non_null(a);
    mutate_bytes("t_hnsw", p.aId[i], a, n, 1);
    free(a);
  }
  st_close(db);
}

/* Neighbour ids replaced: out of range, dead, self, and so on. */
static void test_hnsw_neighbours(void **state) {
  sqlite3 *db;
  hnsw_pick p;
  sqlite3_int64 nSlots, iDead;
  (void)state;
  g_eKind = K_HNSW;
  db = open_copy(K_HNSW);
  p = hnsw_nodes(db);
  nSlots = st_int(db, "SELECT value FROM t_config WHERE key = 'slots'");
  iDead = st_int(db, "SELECT 9"); /* its chunk is gone */
  for (int i = 0; i < 4; i++) {
    int n;
    char zSql[128];
    unsigned char *a0, *a;
    snprintf(zSql, sizeof(zSql), "SELECT node FROM t_hnsw WHERE id = %lld",
             (long long)p.aId[i]);
    a0 = read_blob(db, zSql, &n);
    a = malloc((size_t)n);
    assert_non_null(a0);
    /* every neighbour id, at every level */
    for (int l = 0, off = 1; l <= a0[0]; l++) {
      int c = a0[off] | a0[off + 1] << 8;
      off += 2;
      for (int j = 0; j < c; j++, off += 4) {
        const uint32_t aV[] = {(uint32_t)p.aId[i], (uint32_t)nSlots,
                               (uint32_t)nSlots + 1000, 0x7fffffffu,
                               0x80000000u, 0xffffffffu, (uint32_t)iDead,
                               (uint32_t)p.aId[3], (uint32_t)p.aId[0]};
        for (size_t v = 0; v < sizeof(aV) / sizeof(aV[0]); v++) {
          memcpy(a, a0, (size_t)n);
          put_u32(a + off, aV[v]);
          mutate_blob("t_hnsw", p.aId[i], a, n, "level %d neighbour %d = %u",
                      l, j, aV[v]);
        }
      }
      /* the whole level: self-loops only */
      memcpy(a, a0, (size_t)n);
      for (int j = 0; j < c; j++) put_u32(a + off - 4 * (c - j), (uint32_t)p.aId[i]);
      mutate_blob("t_hnsw", p.aId[i], a, n, "level %d all self-loops", l);
    }
    /* level byte above the maximum / lying */
    {
      const int aL[] = {17, 100, 255, 16, 1, 2, 3, 4};
      for (size_t v = 0; v < sizeof(aL) / sizeof(aL[0]); v++) {
        memcpy(a, a0, (size_t)n);
        a[0] = (unsigned char)aL[v];
        mutate_blob("t_hnsw", p.aId[i], a, n, "level byte %d", aL[v]);
      }
    }
    free(a0);
    free(a);
  }
  /* a record of 16 levels (valid; above every other node), alone and as
  ** the entry point */
  {
    unsigned char b[1 + 2 + 4 + 2 * 16];
    memset(b, 0, sizeof(b));
    b[0] = 16;
    b[1] = 1;
    put_u32(b + 3, (uint32_t)p.aId[0]);
    mutate_blob("t_hnsw", p.aId[2], b, (int)sizeof(b), "16 levels");
    mutate_sql("UPDATE t_hnsw SET node = x'10010000000000' || zeroblob(32) "
               "WHERE id = %lld; UPDATE t_config SET value = 16 WHERE key = "
               "'hnsw_levels'; UPDATE t_config SET value = %lld WHERE key = "
               "'hnsw_entry'", (long long)p.aId[2], (long long)p.aId[2]);
  }
  /* cycles: x -> y -> x at level 0, both with one neighbour */
  for (int i = 0; i < 3; i++) {
    sqlite3_int64 x = p.aId[i], y = p.aId[(i + 1) % 3];
    mutate_sql("UPDATE t_hnsw SET node = x'000100' || (SELECT substr(node, 4, "
               "0) FROM t_hnsw LIMIT 1) || CAST(char(%lld & 127, %lld >> 7 & "
               "127, 0, 0) AS BLOB) WHERE id = %lld",
               (long long)y, (long long)y, (long long)x);
  }
  /* every node of the graph: one neighbour, the next id (a ring) */
  mutate_sql("UPDATE t_hnsw SET node = x'000100' || CAST(char((SELECT min(id) "
             "FROM t_hnsw h WHERE h.id > t_hnsw.id) & 127, 0, 0, 0) AS BLOB) "
             "WHERE id < 127 AND id < (SELECT max(id) FROM t_hnsw)");
  /* every node names itself at every level */
  mutate_sql("UPDATE t_hnsw SET node = CAST(char(0, 1, 0, id & 127, 0, 0, 0) "
             "AS BLOB) WHERE id < 127");
  free(NULL);
  st_close(db);
}

static void test_hnsw_rows(void **state) {
  sqlite3 *db;
  hnsw_pick p;
  sqlite3_int64 nSlots;
  (void)state;
  g_eKind = K_HNSW;
  db = open_copy(K_HNSW);
  p = hnsw_nodes(db);
  nSlots = st_int(db, "SELECT value FROM t_config WHERE key = 'slots'");
  for (int i = 0; i < 4; i++) {
    mutate_sql("DELETE FROM t_hnsw WHERE id = %lld", (long long)p.aId[i]);
    mutate_sql("UPDATE t_hnsw SET node = x'' WHERE id = %lld", (long long)p.aId[i]);
    mutate_sql("UPDATE t_hnsw SET node = 7 WHERE id = %lld", (long long)p.aId[i]);
    mutate_sql("UPDATE t_hnsw SET id = %lld WHERE id = %lld", (long long)nSlots,
               (long long)p.aId[i]);
    mutate_sql("UPDATE t_hnsw SET id = -%lld - 1 WHERE id = %lld",
               (long long)p.aId[i], (long long)p.aId[i]);
    /* another node's record */
    mutate_sql("UPDATE t_hnsw SET node = (SELECT node FROM t_hnsw WHERE id = "
               "%lld) WHERE id = %lld", (long long)p.aId[(i + 1) % 4],
               (long long)p.aId[i]);
  }
  mutate_sql("DELETE FROM t_hnsw WHERE id %% 2 = 0");
  mutate_sql("DELETE FROM t_hnsw WHERE id IN (SELECT slot FROM t_rows)");
  mutate_sql("DELETE FROM t_hnsw");
  mutate_sql("DELETE FROM t_hnsw; UPDATE t_config SET value = -1 WHERE key = "
             "'hnsw_entry'");
  mutate_sql("DROP TABLE t_hnsw");
  /* extra node rows */
  mutate_sql("INSERT INTO t_hnsw VALUES(%lld, x'000000')", (long long)nSlots);
  mutate_sql("INSERT INTO t_hnsw VALUES(%lld, x'000000')", (long long)nSlots + 5000);
  mutate_sql("INSERT INTO t_hnsw VALUES(2147483647, x'000000')");
  mutate_sql("INSERT INTO t_hnsw VALUES(-1, x'000000')");
  mutate_sql("INSERT OR REPLACE INTO t_hnsw VALUES(12, x'000000')");     /* chunk gone */
  mutate_sql("INSERT OR REPLACE INTO t_hnsw VALUES(12, x'00010000000000')");
  mutate_sql("INSERT OR REPLACE INTO t_hnsw SELECT 13, node FROM t_hnsw WHERE id = %lld",
             (long long)p.aId[0]);
  /* every record names the entry only */
  mutate_sql("UPDATE t_hnsw SET node = x'000100' || (SELECT substr(node, 4, 4)"
             " FROM t_hnsw WHERE id = %lld) WHERE id != %lld",
             (long long)p.aId[1], (long long)p.aId[1]);
  /* every record empty */
  mutate_sql("UPDATE t_hnsw SET node = x'000000'");
  mutate_sql("UPDATE t_hnsw SET node = x'00000000' || zeroblob(0) WHERE 0");
  st_close(db);
}

static void test_hnsw_config(void **state) {
  static const char *azEntry[] = {"-1", "-2", "5000", "2147483648", "9", "3",
                                  "'x'", "NULL", "1.5", "x'00'", "0"};
  static const char *azLevels[] = {"-1", "0", "1", "2", "15", "16", "17",
                                   "100", "'x'", "NULL"};
  (void)state;
  g_eKind = K_HNSW;
  for (size_t i = 0; i < sizeof(azEntry) / sizeof(azEntry[0]); i++) {
    mutate_sql("UPDATE t_config SET value = %s WHERE key = 'hnsw_entry'",
               azEntry[i]);
  }
  {
    sqlite3 *db = open_copy(K_HNSW);
    hnsw_pick p = hnsw_nodes(db);
    st_close(db);
    for (int i = 1; i < 4; i++) {
      mutate_sql("UPDATE t_config SET value = %lld WHERE key = 'hnsw_entry'",
                 (long long)p.aId[i]);
      mutate_sql("UPDATE t_config SET value = %lld WHERE key = 'hnsw_entry'; "
                 "UPDATE t_config SET value = (SELECT CAST(hex(substr(node, 1, 1)) AS INTEGER) FROM "
                 "t_hnsw WHERE id = %lld) WHERE key = 'hnsw_levels'",
                 (long long)p.aId[i], (long long)p.aId[i]);
    }
  }
  for (size_t i = 0; i < sizeof(azLevels) / sizeof(azLevels[0]); i++) {
    mutate_sql("UPDATE t_config SET value = %s WHERE key = 'hnsw_levels'",
               azLevels[i]);
  }
  mutate_sql("DELETE FROM t_config WHERE key = 'hnsw_entry'");
  mutate_sql("DELETE FROM t_config WHERE key = 'hnsw_levels'");
  mutate_sql("UPDATE t_config SET value = 1 WHERE key = 'hnsw_m'");
  mutate_sql("UPDATE t_config SET value = 1000 WHERE key = 'hnsw_m'");
  mutate_sql("DELETE FROM t_config WHERE key LIKE 'hnsw%%'");
  mutate_sql("UPDATE t_config SET value = value + 1 WHERE key = 'changes'");
}

/* ivf ******************************************************************/

static void ivf_pristine(void **state) {
  (void)state;
  for (int e = K_FLAT; e <= K_PQ; e++) pristine((kind)e);
}

static void ivf_lists_one(kind e) {
  sqlite3 *db;
  sqlite3_stmt *s;
  sqlite3_int64 aId[8], nSlots;
  int nId = 0, sz;
  g_eKind = e;
  db = open_copy(e);
  nSlots = st_int(db, "SELECT value FROM t_config WHERE key = 'slots'");
  sz = e == K_FLAT ? 8 + 4 * NDIM : e == K_SQ8 ? 8 + NDIM : 8 + 2;
  s = st_prepare(db, "SELECT id FROM t_ivflists ORDER BY id");
  while (sqlite3_step(s) == SQLITE_ROW && nId < 8) aId[nId++] = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  assert_true(nId >= 2);
  for (int i = 0; i < nId; i++) {
    int n;
    char zSql[128];
    unsigned char *a0, *a;
    uint32_t nUsed;
    snprintf(zSql, sizeof(zSql), "SELECT data FROM t_ivflists WHERE id = %lld",
             (long long)aId[i]);
    a0 = read_blob(db, zSql, &n);
    assert_non_null(a0);
    /* pq entries are 10 bytes: every offset; flat / sq8: step to cover
    ** every field of a few entries, every length early on */
    mutate_bytes("t_ivflists", aId[i], a0, n, e == K_FLAT ? 29 : e == K_SQ8 ? 11 : 7);
    a = malloc((size_t)n + 64);
    nUsed = get_u32(a0);
    {
      const uint32_t aCount[] = {0, 1, nUsed - 1, nUsed + 1,
                                 (uint32_t)((n - 8) / sz),
                                 (uint32_t)((n - 8) / sz) + 1, 0x7fffffffu,
                                 0xffffffffu};
      for (size_t v = 0; v < sizeof(aCount) / sizeof(aCount[0]); v++) {
        memcpy(a, a0, (size_t)n);
        put_u32(a, aCount[v]);
        mutate_blob("t_ivflists", aId[i], a, n, "count = %u", aCount[v]);
      }
      memcpy(a, a0, (size_t)n);
      put_u32(a + 4, 77);
      mutate_blob("t_ivflists", aId[i], a, n, "reserved word = 77");
    }
    /* entries naming slots that do not exist, are dead, or repeat */
    for (uint32_t j = 0; j < nUsed && j < 3; j++) {
      const uint64_t aSlot[] = {(uint64_t)nSlots, (uint64_t)nSlots + 100,
                                0xffffffffffffffffull, 0x8000000000000000ull,
                                1ull << 32, 9 /* dead, chunk gone */,
                                2 /* dead */, 0 /* live, maybe twice */};
      for (size_t v = 0; v < sizeof(aSlot) / sizeof(aSlot[0]); v++) {
        memcpy(a, a0, (size_t)n);
        put_u32(a + 8 + j * (uint32_t)sz, (uint32_t)aSlot[v]);
        put_u32(a + 12 + j * (uint32_t)sz, (uint32_t)(aSlot[v] >> 32));
        mutate_blob("t_ivflists", aId[i], a, n, "entry %u slot = %llu", j,
                    (unsigned long long)aSlot[v]);
      }
      if (e == K_FLAT) { /* NaN / Inf in a flat code */
        const uint32_t aF[] = {0x7fc00000u, 0x7f800000u, 0xff800000u,
                               0x7f7fffffu};
        for (size_t v = 0; v < 4; v++) {
          memcpy(a, a0, (size_t)n);
          put_u32(a + 16 + j * (uint32_t)sz, aF[v]);
          mutate_blob("t_ivflists", aId[i], a, n, "entry %u code[0] = 0x%08x",
                      j, aF[v]);
        }
      }
    }
    free(a0);
    free(a);
  }
  /* rows */
  for (int i = 0; i < nId; i++) {
    mutate_sql("DELETE FROM t_ivflists WHERE id = %lld", (long long)aId[i]);
    mutate_sql("UPDATE t_ivflists SET id = %lld WHERE id = %lld",
               (long long)aId[i] + 1, (long long)aId[i]);
    mutate_sql("UPDATE t_ivflists SET id = %lld WHERE id = %lld",
               (long long)(2ll << 32), (long long)aId[i]);
    mutate_sql("UPDATE t_ivflists SET id = %lld WHERE id = %lld",
               (long long)(0x7fffffffll << 32), (long long)aId[i]);
    mutate_sql("UPDATE t_ivflists SET id = -1 WHERE id = %lld", (long long)aId[i]);
    mutate_sql("UPDATE t_ivflists SET data = 5 WHERE id = %lld", (long long)aId[i]);
    mutate_sql("UPDATE t_ivflists SET data = zeroblob(100000) WHERE id = %lld",
               (long long)aId[i]);
    mutate_sql("INSERT INTO t_ivflists SELECT id + 1, data FROM t_ivflists "
               "WHERE id = %lld", (long long)aId[i]);
  }
  mutate_sql("UPDATE t_ivflists SET id = CASE id WHEN %lld THEN %lld ELSE %lld "
             "END WHERE id IN (%lld, %lld)", (long long)aId[0],
             (long long)aId[1] + 7, (long long)aId[0], (long long)aId[0],
             (long long)aId[1]);
  mutate_sql("INSERT INTO t_ivflists VALUES(%lld, x'0000000000000000')",
             (long long)(1ll << 32) + 5);
  mutate_sql("INSERT INTO t_ivflists VALUES(%lld, x'0000000000000000')",
             (long long)(7ll << 32));
  mutate_sql("DELETE FROM t_ivflists");
  mutate_sql("DROP TABLE t_ivflists");
  st_close(db);
}

static void ivf_model_one(kind e) {
  sqlite3 *db;
  g_eKind = e;
  db = open_copy(e);
  for (int id = 0; id < 3; id++) {
    int n;
    char zSql[128];
    unsigned char *a0, *a;
    snprintf(zSql, sizeof(zSql), "SELECT data FROM t_ivfmodel WHERE id = %d", id);
    a0 = read_blob(db, zSql, &n);
    if (a0 == NULL) continue;
    mutate_bytes("t_ivfmodel", id, a0, n, 61);
    a = malloc((size_t)n);
    for (int f = 0; f < n / 4;
         f += g_bLong ? (f < 32 ? 1 : 37) : (f < 8 ? 1 : f < 32 ? 4 : 5 * 37)) {
      const uint32_t aF[] = {0x7fc00000u, 0x7f800000u, 0xff800000u,
                             0x7f7fffffu, 0x00000000u, 0x80000000u};
      for (size_t v = 0; v < sizeof(aF) / sizeof(aF[0]); v++) {
        memcpy(a, a0, (size_t)n);
        put_u32(a + 4 * f, aF[v]);
        mutate_blob("t_ivfmodel", id, a, n, "float %d = 0x%08x", f, aF[v]);
      }
    }
    /* every float NaN */
    for (int f = 0; f < n / 4; f++) put_u32(a + 4 * f, 0x7fc00000u);
    mutate_blob("t_ivfmodel", id, a, n, "all NaN");
    free(a);
    free(a0);
    mutate_sql("DELETE FROM t_ivfmodel WHERE id = %d", id);
    mutate_sql("UPDATE t_ivfmodel SET data = data || data WHERE id = %d", id);
    mutate_sql("UPDATE t_ivfmodel SET data = 3.5 WHERE id = %d", id);
  }
  mutate_sql("INSERT OR REPLACE INTO t_ivfmodel VALUES(1, zeroblob(32))");
  mutate_sql("INSERT OR REPLACE INTO t_ivfmodel VALUES(2, zeroblob(4096))");
  mutate_sql("INSERT OR REPLACE INTO t_ivfmodel VALUES(3, x'01')");
  mutate_sql("DELETE FROM t_ivfmodel");
  mutate_sql("DROP TABLE t_ivfmodel");
  st_close(db);
}

static void ivf_config_one(kind e) {
  static const struct { const char *zKey; const char *azVal[10]; } aCfg[] = {
      {"ivf_trained", {"0", "2", "-1", "'x'", "NULL", NULL}},
      {"ivf_nlist", {"0", "1", "3", "-1", "1048577", "1048576", "2147483648",
                     "'2'", "NULL", NULL}},
      {"ivf_m", {"0", "1", "3", "4", "5", "-2", "65536", "NULL", NULL}},
      {"ivf_chunk", {"0", "1", "2", "65537", "-5", "4", "NULL", NULL}},
      {"ivf_updates", {"-1", "0", "5", "9223372036854775807", "'x'", NULL}},
      {"ivf_rows", {"-1", "0", "100000000", NULL}},
      {"ivf_format", {"0", "2", "'1'", NULL}},
  };
  g_eKind = e;
  for (size_t i = 0; i < sizeof(aCfg) / sizeof(aCfg[0]); i++) {
    for (int j = 0; aCfg[i].azVal[j]; j++) {
      mutate_sql("UPDATE t_config SET value = %s WHERE key = '%s'",
                 aCfg[i].azVal[j], aCfg[i].zKey);
    }
    mutate_sql("DELETE FROM t_config WHERE key = '%s'", aCfg[i].zKey);
  }
  mutate_sql("DELETE FROM t_config WHERE key LIKE 'ivf%%'");
  mutate_sql("UPDATE t_config SET value = value + 1 WHERE key = 'changes'");
}

static void test_ivf_lists(void **state) {
  (void)state;
  for (int e = K_FLAT; e <= K_PQ; e++) ivf_lists_one((kind)e);
}

static void test_ivf_model(void **state) {
  (void)state;
  for (int e = K_FLAT; e <= K_PQ; e++) ivf_model_one((kind)e);
}

static void test_ivf_config(void **state) {
  (void)state;
  for (int e = K_FLAT; e <= K_PQ; e++) ivf_config_one((kind)e);
}

/* diskann *************************************************************/

#define DISKANN_GONE 40 /* a slot whose chunk 'optimize' dropped: no node */
#define DISKANN_TOMB 8  /* a tombstone (row 9 deleted) */

typedef struct diskann_pick {
  sqlite3_int64 aId[4]; /* entry, a node linked one by one, the re-linked
                        ** UPDATE (row 6), a tombstone */
} diskann_pick;

static diskann_pick diskann_nodes(sqlite3 *db) {
  diskann_pick p;
  p.aId[0] = st_int(db, "SELECT value FROM t_config WHERE key = "
                        "'diskann_entry'");
  p.aId[1] = st_int(db, "SELECT id FROM t_diskann WHERE id >= %d AND id IN "
                        "(SELECT slot FROM t_rows) ORDER BY length(node) "
                        "DESC, id LIMIT 1", DISKANN_ROWS);
  p.aId[2] = st_int(db, "SELECT slot FROM t_rows WHERE rowid = 6");
  p.aId[3] = st_int(db, "SELECT id FROM t_diskann WHERE id NOT IN (SELECT "
                        "slot FROM t_rows) ORDER BY id DESC LIMIT 1");
  return p;
}

static unsigned char *diskann_record(sqlite3 *db, sqlite3_int64 id, int *pn) {
  char zSql[128];
  unsigned char *a;
  snprintf(zSql, sizeof(zSql), "SELECT node FROM t_diskann WHERE id = %lld",
           (long long)id);
  a = read_blob(db, zSql, pn);
  assert_non_null(a);
  return a;
}

/* The codebook: bytes, floats NaN / Inf / huge / zero, wrong sizes. */
static void diskann_codebook(sqlite3 *db) {
  int n;
  unsigned char *a0 = read_blob(db, "SELECT data FROM t_diskannpq WHERE id "
                                "= -1", &n), *a;
  assert_true(a0 != NULL && n == 256 * NDIM * 4);
  mutate_bytes("t_diskannpq", -1, a0, n, 61);
  a = malloc((size_t)n);
  assert_non_null(a);
  for (int f = 0; f < n / 4;
       f += g_bLong ? (f < 32 ? 1 : 37) : (f < 8 ? 1 : f < 32 ? 4 : 5 * 37)) {
    const uint32_t aF[] = {0x7fc00000u, 0x7f800000u, 0xff800000u,
                           0x7f7fffffu, 0x00000000u, 0x80000000u};
    for (size_t v = 0; v < sizeof(aF) / sizeof(aF[0]); v++) {
      memcpy(a, a0, (size_t)n);
      put_u32(a + 4 * f, aF[v]);
      mutate_blob("t_diskannpq", -1, a, n, "float %d = 0x%08x", f, aF[v]);
    }
  }
  for (int f = 0; f < n / 4; f++) put_u32(a + 4 * f, 0x7fc00000u);
  mutate_blob("t_diskannpq", -1, a, n, "all NaN");
  for (int f = 0; f < n / 4; f++) put_u32(a + 4 * f, 0x7f800000u);
  mutate_blob("t_diskannpq", -1, a, n, "all Inf");
  free(a);
  free(a0);
  mutate_sql("DELETE FROM t_diskannpq WHERE id = -1");
  mutate_sql("UPDATE t_diskannpq SET data = data || data WHERE id = -1");
  mutate_sql("UPDATE t_diskannpq SET data = substr(data, 1, 2048) WHERE id = -1");
  mutate_sql("UPDATE t_diskannpq SET data = zeroblob(%d) WHERE id = -1",
             256 * 2 * 4);
  mutate_sql("UPDATE t_diskannpq SET data = 3.5 WHERE id = -1");
}

static void test_diskann_pristine(void **state) {
  (void)state;
  pristine(K_DISKANN);
}

static void test_diskann_records(void **state) {
  sqlite3 *db;
  diskann_pick p;
  (void)state;
  g_eKind = K_DISKANN;
  db = open_copy(K_DISKANN);
  p = diskann_nodes(db);
  for (int i = 0; i < 4; i++) {
    int n;
    unsigned char *a = diskann_record(db, p.aId[i], &n);
    mutate_bytes("t_diskann", p.aId[i], a, n, 1);
    free(a);
  }
  st_close(db);
}

/* One record's neighbour ids replaced (out of range, without a node, dead,
** self, the entry), all self-loops, the count lying. */
static void diskann_neighbours_of(sqlite3_int64 id, const unsigned char *a0,
                                  int n, sqlite3_int64 nSlots,
                                  sqlite3_int64 iEntry) {
  unsigned char *a = malloc((size_t)n + 8);
  uint32_t c = get_u32(a0);
  assert_non_null(a);
  for (uint32_t j = 0; j < c; j++) {
    const uint32_t aV[] = {(uint32_t)id, (uint32_t)nSlots,
                           (uint32_t)nSlots + 1000, 0x7fffffffu, 0x80000000u,
                           0xffffffffu, DISKANN_GONE, DISKANN_TOMB,
                           (uint32_t)iEntry};
    for (size_t v = 0; v < sizeof(aV) / sizeof(aV[0]); v++) {
      memcpy(a, a0, (size_t)n);
      put_u32(a + 4 + 4 * NDIM + 4 * j, aV[v]);
      mutate_blob("t_diskann", id, a, n, "neighbour %u = %u", j, aV[v]);
    }
    put_u32(a + 4 + 4 * NDIM + 4 * j, (uint32_t)id);
  }
  mutate_blob("t_diskann", id, a, n, "all self-loops");
  {
    const uint32_t aC[] = {0, c - 1, c + 1, DISKANN_R, DISKANN_R + 1, 1000,
                           0xffffffffu};
    for (size_t v = 0; v < sizeof(aC) / sizeof(aC[0]); v++) {
      memcpy(a, a0, (size_t)n);
      put_u32(a, aC[v]);
      mutate_blob("t_diskann", id, a, n, "count = %u", aC[v]);
    }
  }
  free(a);
}

/* SQL giving records of at most one neighbour, each keeping its vector:
** eOne 0: node iOnly -> iArg; 1: every node -> itself; 2: every node ->
** the next one (a ring); 3: every node -> iArg; 4: no node has any. */
static char *diskann_one_sql(sqlite3 *db, int eOne, sqlite3_int64 iArg,
                             sqlite3_int64 iOnly) {
  sqlite3_str *str = sqlite3_str_new(NULL);
  sqlite3_stmt *s = st_prepare(db, "SELECT id, node, (SELECT min(id) FROM "
                               "t_diskann h WHERE h.id > t_diskann.id) FROM "
                               "t_diskann ORDER BY id");
  while (sqlite3_step(s) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(s, 0);
    const unsigned char *a = sqlite3_column_blob(s, 1);
    unsigned char b[4 + 4 * NDIM + 4];
    sqlite3_int64 iTo = eOne == 1 ? id : eOne == 2 ? sqlite3_column_int64(s, 2)
                                                   : iArg;
    int n = eOne == 4 ? 4 + 4 * NDIM : (int)sizeof(b);
    if ((eOne == 0 && id != iOnly) ||
        (eOne == 2 && sqlite3_column_type(s, 2) == SQLITE_NULL)) {
      continue;
    }
    memcpy(b + 4, a + 4, 4 * NDIM);
    put_u32(b, eOne == 4 ? 0 : 1);
    put_u32(b + 4 + 4 * NDIM, (uint32_t)iTo);
    sqlite3_str_appendall(str, "UPDATE t_diskann SET node = x'");
    for (int i = 0; i < n; i++) sqlite3_str_appendf(str, "%02x", b[i]);
    sqlite3_str_appendf(str, "' WHERE id = %lld;", (long long)id);
  }
  sqlite3_finalize(s);
  return sqlite3_str_finish(str);
}

static void mutate_one(sqlite3 *db, int eOne, sqlite3_int64 iArg,
                       sqlite3_int64 iOnly) {
  char *zSql = diskann_one_sql(db, eOne, iArg, iOnly);
  assert_non_null(zSql);
  mutate_sql("%s", zSql);
  sqlite3_free(zSql);
}

static void test_diskann_neighbours(void **state) {
  sqlite3 *db;
  diskann_pick p;
  sqlite3_int64 nSlots;
  (void)state;
  g_eKind = K_DISKANN;
  db = open_copy(K_DISKANN);
  p = diskann_nodes(db);
  nSlots = st_int(db, "SELECT value FROM t_config WHERE key = 'slots'");
  for (int i = 0; i < 4; i++) {
    int n;
    unsigned char *a0 = diskann_record(db, p.aId[i], &n);
    diskann_neighbours_of(p.aId[i], a0, n, nSlots, p.aId[0]);
    free(a0);
  }
  /* one node names the next pick only; cycles of two and three picks */
  for (int i = 0; i < 3; i++) {
    char *az[3];
    for (int j = 0; j < 3; j++) {
      az[j] = diskann_one_sql(db, 0, p.aId[(i + j + 1) % 3], p.aId[(i + j) % 3]);
      assert_non_null(az[j]);
    }
    mutate_sql("%s", az[0]);
    if (i == 0) mutate_sql("%s%s", az[0], az[1]);
    if (i == 0) mutate_sql("%s%s%s", az[0], az[1], az[2]);
    for (int j = 0; j < 3; j++) sqlite3_free(az[j]);
  }
  /* every node: names itself only; names the next (a ring); names the
  ** entry only; has no neighbour */
  mutate_one(db, 1, 0, 0);
  mutate_one(db, 2, 0, 0);
  mutate_one(db, 3, p.aId[0], 0);
  mutate_one(db, 4, 0, 0);
  st_close(db);
}

static void test_diskann_rows(void **state) {
  sqlite3 *db;
  diskann_pick p;
  sqlite3_int64 nSlots;
  (void)state;
  g_eKind = K_DISKANN;
  db = open_copy(K_DISKANN);
  p = diskann_nodes(db);
  nSlots = st_int(db, "SELECT value FROM t_config WHERE key = 'slots'");
  for (int i = 0; i < 4; i++) {
    long long id = (long long)p.aId[i];
    mutate_sql("DELETE FROM t_diskann WHERE id = %lld", id);
    mutate_sql("UPDATE t_diskann SET node = x'' WHERE id = %lld", id);
    mutate_sql("UPDATE t_diskann SET node = 7 WHERE id = %lld", id);
    mutate_sql("UPDATE t_diskann SET node = zeroblob(100000) WHERE id = %lld", id);
    mutate_sql("UPDATE t_diskann SET id = %lld WHERE id = %lld",
               (long long)nSlots, id);
    mutate_sql("UPDATE t_diskann SET id = -%lld - 1 WHERE id = %lld", id, id);
    mutate_sql("UPDATE t_diskann SET id = %d WHERE id = %lld", DISKANN_GONE, id);
    /* another node's record */
    mutate_sql("UPDATE t_diskann SET node = (SELECT node FROM t_diskann WHERE "
               "id = %lld) WHERE id = %lld", (long long)p.aId[(i + 1) % 4], id);
  }
  mutate_sql("DELETE FROM t_diskann WHERE id %% 2 = 0");
  mutate_sql("DELETE FROM t_diskann WHERE id IN (SELECT slot FROM t_rows)");
  mutate_sql("DELETE FROM t_diskann WHERE id NOT IN (SELECT slot FROM t_rows)");
  mutate_sql("DELETE FROM t_diskann");
  mutate_sql("DELETE FROM t_diskann; UPDATE t_config SET value = -1 WHERE key "
             "= 'diskann_entry'");
  /* empty and untrained, all consistent but for the live rows */
  mutate_sql("DELETE FROM t_diskann; DELETE FROM t_diskannpq; UPDATE t_config "
             "SET value = -1 WHERE key = 'diskann_entry'; UPDATE t_config SET "
             "value = 0 WHERE key = 'diskann_trained'");
  mutate_sql("DROP TABLE t_diskann");
  mutate_sql("DROP TABLE t_diskannpq");
  mutate_sql("DROP TABLE t_diskann; DROP TABLE t_diskannpq");
  /* extra node rows: beyond the slots, negative, on a slot without a node
  ** bit (its chunk gone), a copy of the entry on such a slot */
  mutate_sql("INSERT INTO t_diskann VALUES(%lld, zeroblob(%d))",
             (long long)nSlots, 4 + 4 * NDIM);
  mutate_sql("INSERT INTO t_diskann VALUES(%lld, zeroblob(%d))",
             (long long)nSlots + 5000, 4 + 4 * NDIM);
  mutate_sql("INSERT INTO t_diskann VALUES(2147483647, zeroblob(%d))", 4 + 4 * NDIM);
  mutate_sql("INSERT INTO t_diskann VALUES(4294967296, zeroblob(%d))", 4 + 4 * NDIM);
  mutate_sql("INSERT INTO t_diskann VALUES(-1, zeroblob(%d))", 4 + 4 * NDIM);
  mutate_sql("INSERT INTO t_diskann VALUES(%d, zeroblob(%d))", DISKANN_GONE,
             4 + 4 * NDIM);
  mutate_sql("INSERT INTO t_diskann SELECT %d, node FROM t_diskann WHERE id = "
             "%lld", DISKANN_GONE, (long long)p.aId[0]);
  st_close(db);
}

/* Code blocks: every truncation and flips of block 0's node bits and first
** codes, node bits set without a record or cleared under one, a code
** without a node, the block moved; the codebook: every truncation, flips,
** NaN / Inf floats, the wrong size. */
static void test_diskannpq(void **state) {
  sqlite3 *db;
  diskann_pick p;
  int n;
  unsigned char *a0, *a;
  (void)state;
  g_eKind = K_DISKANN;
  db = open_copy(K_DISKANN);
  p = diskann_nodes(db);
  a0 = read_blob(db, "SELECT data FROM t_diskannpq WHERE id = 0", &n);
  assert_true(a0 != NULL && n == 128 + 1024 * DISKANN_M);
  /* node bits, the nodes' codes, zero codes of slots without one */
  mutate_bytes("t_diskannpq", 0, a0, n, 13);
  a = malloc((size_t)n);
  assert_non_null(a);
  {
    const int aSlot[] = {(int)p.aId[0], (int)p.aId[1], (int)p.aId[2],
                         (int)p.aId[3], DISKANN_GONE, 1000, 1023};
    for (size_t i = 0; i < sizeof(aSlot) / sizeof(aSlot[0]); i++) {
      int k = aSlot[i];
      memcpy(a, a0, (size_t)n);
      a[k >> 3] ^= (unsigned char)(1u << (k & 7));
      mutate_blob("t_diskannpq", 0, a, n, "node bit %d flipped", k);
      memcpy(a, a0, (size_t)n);
      a[128 + k * DISKANN_M] ^= 0x41;
      mutate_blob("t_diskannpq", 0, a, n, "code of slot %d changed", k);
    }
  }
  memset(a, 0xff, 128);
  mutate_blob("t_diskannpq", 0, a, n, "every node bit set");
  memset(a, 0, 128);
  mutate_blob("t_diskannpq", 0, a, n, "no node bit set");
  free(a);
  free(a0);
  mutate_sql("DELETE FROM t_diskannpq WHERE id = 0");
  mutate_sql("UPDATE t_diskannpq SET id = 1 WHERE id = 0");
  mutate_sql("UPDATE t_diskannpq SET id = -2 WHERE id = 0");
  mutate_sql("UPDATE t_diskannpq SET id = 2097153 WHERE id = 0");
  mutate_sql("UPDATE t_diskannpq SET data = 5 WHERE id = 0");
  mutate_sql("INSERT INTO t_diskannpq SELECT 1, data FROM t_diskannpq WHERE id = 0");
  mutate_sql("INSERT INTO t_diskannpq VALUES(3, zeroblob(%d))", 128 + 1024 * DISKANN_M);
  mutate_sql("INSERT INTO t_diskannpq VALUES(3, zeroblob(%d))", 128 + 1024 * 4);
  diskann_codebook(db);
  mutate_sql("DELETE FROM t_diskannpq");
  st_close(db);
}

static void test_diskann_config(void **state) {
  static const struct { const char *zKey; const char *azVal[12]; } aCfg[] = {
      {"diskann_format", {"0", "2", "-1", "'1'", "1.0", "NULL", NULL}},
      {"diskann_entry", {"-1", "-2", "5000", "2147483647", "2147483648",
                         "4294967296", "'x'", "NULL", "1.5", "x'00'", NULL}},
      {"diskann_pq", {"0", "1", "3", "4", "5", "-2", "65536", "'2'", "NULL",
                      NULL}},
      {"diskann_trained", {"0", "-1", "1", "100000", "9223372036854775807",
                           "'x'", "NULL", NULL}},
  };
  (void)state;
  g_eKind = K_DISKANN;
  for (size_t i = 0; i < sizeof(aCfg) / sizeof(aCfg[0]); i++) {
    for (int j = 0; aCfg[i].azVal[j]; j++) {
      mutate_sql("UPDATE t_config SET value = %s WHERE key = '%s'",
                 aCfg[i].azVal[j], aCfg[i].zKey);
    }
    mutate_sql("DELETE FROM t_config WHERE key = '%s'", aCfg[i].zKey);
  }
  {
    sqlite3 *db = open_copy(K_DISKANN);
    diskann_pick p = diskann_nodes(db);
    sqlite3_int64 nSlots = st_int(db, "SELECT value FROM t_config WHERE key = "
                                      "'slots'");
    st_close(db);
    /* the entry on other nodes (a tombstone is one), on a slot without a
    ** node, beyond the slots */
    for (int i = 1; i < 4; i++) {
      mutate_sql("UPDATE t_config SET value = %lld WHERE key = "
                 "'diskann_entry'", (long long)p.aId[i]);
    }
    mutate_sql("UPDATE t_config SET value = %d WHERE key = 'diskann_entry'",
               DISKANN_GONE);
    mutate_sql("UPDATE t_config SET value = %lld WHERE key = 'diskann_entry'",
               (long long)nSlots);
  }
  mutate_sql("DELETE FROM t_config WHERE key LIKE 'diskann%%'");
  mutate_sql("UPDATE t_config SET value = value + 1 WHERE key = 'changes'");
}

/* Defensive mode: direct writes to the index's shadow tables are refused.
** (SQLite takes a shadow table's suffix after the last '_': the codes'
** table was t_diskann_pq, which it did not see as a shadow table of "t";
** it is t_diskannpq now.) */
static void test_defensive(void **state) {
  static const char *azTab[] = {"t_hnsw", "t_ivfmodel", "t_ivflists",
                                "t_diskann", "t_diskannpq"};
  static const kind aKind[] = {K_HNSW, K_PQ, K_PQ, K_DISKANN, K_DISKANN};
  (void)state;
  for (int i = 0; i < 5; i++) {
    sqlite3 *db = open_copy(aKind[i]);
    int bNode = i == 0 || i == 3; /* column node, else data */
    int bOn = 0;
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, &bOn);
    assert_int_equal(bOn, 1);
    st_expect_error(db, 0, "may not be modified", "DELETE FROM %s", azTab[i]);
    st_expect_error(db, 0, "may not be modified",
                    "INSERT INTO %s SELECT id + 1000, %s FROM %s LIMIT 1",
                    azTab[i], bNode ? "node" : "data", azTab[i]);
    st_expect_error(db, 0, "may not be modified", "UPDATE %s SET id = id",
                    azTab[i]);
    st_expect_error(db, 0, "may not be", "DROP TABLE %s", azTab[i]);
    st_integrity_ok(db, "t");
    st_close(db);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hnsw_pristine),
      cmocka_unit_test(ivf_pristine),
      cmocka_unit_test(test_defensive),
      cmocka_unit_test(test_hnsw_config),
      cmocka_unit_test(test_hnsw_rows),
      cmocka_unit_test(test_hnsw_neighbours),
      cmocka_unit_test(test_hnsw_records),
      cmocka_unit_test(test_ivf_config),
      cmocka_unit_test(test_ivf_model),
      cmocka_unit_test(test_ivf_lists),
      cmocka_unit_test(test_diskann_pristine),
      cmocka_unit_test(test_diskann_config),
      cmocka_unit_test(test_diskann_rows),
      cmocka_unit_test(test_diskann_neighbours),
      cmocka_unit_test(test_diskann_records),
      cmocka_unit_test(test_diskannpq),
  };
  /* ANNEX_CORRUPT_ONLY=test_ivf_lists (a cmocka pattern) runs one group */
  if (getenv("ANNEX_CORRUPT_ONLY")) {
    cmocka_set_test_filter(getenv("ANNEX_CORRUPT_ONLY"));
  }
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
