/*
** test_corrupt.c — annex on corrupt shadow tables (issue 8, part 4; the
** method of SQLite's FTS5 fts5corrupt*.test).
**
** One small template (the annex table t: float[4] vectors, text / integer /
** real metadata and a +body column, chunk_size=8, 30 slots in chunks 0, 2
** and 3 after deletes emptied chunk 1, a rekeyed row, a blob and NULLs in
** the metadata) is serialized once. Every mutation runs on a fresh copy
** (sqlite3_deserialize) with defensive mode off and rewrites shadow-table
** content: every truncation and a few extensions of each chunk blob, byte
** flips (two masks) at every offset of every chunk (valid bitmap,
** rowids, metadata tags and values, vectors), blobs of the wrong type,
** chunk ids moved (huge, negative, duplicated, swapped, missing), T_config
** values that lie or are missing, T_rows slots out of range / duplicated /
** missing / extra, metadata that disagrees, T_dict ids missing or moved,
** shadow tables dropped. Then the same workload runs (g_aOp): k-NN plain,
** filtered on each metadata type, rowid IN, radius, LIMIT; a full scan,
** point lookups, annex_info, integrity-check, INSERT, UPDATE, DELETE, and
** queries and integrity-check again. The rules:
**
**   - every statement returns SQLITE_OK or an error (CORRUPT / CORRUPT_VTAB,
**     or ERROR / CONSTRAINT with a message); never a crash, a hang (an
**     alarm aborts a mutation that runs for 30 s) or a sanitizer report;
**   - a k-NN answer that succeeds is well formed: at most k rows, distinct
**     rowids, distances in order;
**   - integrity-check reports every mutation of content the format defines
**     (class DETECT); a mutation of bytes the format leaves undefined (dead
**     and unallocated slots, unknown config keys, unused dictionary
**     entries) changes nothing: every result equals the pristine run's
**     (class INERT);
**   - when integrity-check passes, no read before it reported corruption.
**
** test_defensive checks that with defensive mode on, direct writes to each
** shadow table are refused. The teardown prints the count of mutations.
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

#define NCHUNK 8               /* chunk_size of the template */
#define NDIM 4
#define NMETA 3
#define OFF_ROWID (NCHUNK / 8)
#define OFF_META (OFF_ROWID + 8 * NCHUNK)
#define OFF_VEC (OFF_META + 9 * NMETA * NCHUNK)
#define CHUNK_BYTES (OFF_VEC + 4 * NDIM * NCHUNK)
#define NSLOT 30               /* slots allocated in the template */

typedef enum mclass {
  M_ANY = 0,    /* no rule beyond "no crash, allowed codes" */
  M_DETECT = 1, /* integrity-check must report it */
  M_INERT = 2   /* nothing observable may change */
} mclass;

/* The workload *********************************************************/

#define Q "'[0.5,-0.25,1,0.125]'"
#define KNN "SELECT rowid, distance FROM t WHERE emb MATCH " Q " AND k = 5"
#define IC "INSERT INTO t(t) VALUES('integrity-check')"

typedef struct op {
  const char *zSql;
  int k;       /* > 0: a k-NN with at most k rows (column 1 the distance) */
  int bWrite;  /* a write: SQLITE_CONSTRAINT is allowed too */
  int bIc;     /* the integrity-check whose verdict is judged */
  int bAll;    /* a k-NN without k (annex ranks every row): a rowid twice is
               ** allowed when integrity-check reports the corruption (the
               ** check would cost a sort of every row) */
} op;

static const op g_aOp[] = {
    {KNN, 5, 0, 0, 0},
    {KNN " AND cat = 'tech'", 5, 0, 0, 0},
    {KNN " AND year >= 2003", 5, 0, 0, 0},
    {KNN " AND score < 4.5", 5, 0, 0, 0},
    {KNN " AND cat > 'b'", 5, 0, 0, 0}, /* text range: the SQL fallback */
    {KNN " AND cat IS NULL", 5, 0, 0, 0},
    {KNN " AND rowid IN (1, 2, 4, 17, 25, 105)", 5, 0, 0, 0},
    {"SELECT rowid, distance FROM t WHERE emb MATCH " Q
     " AND distance < 1.5", 100, 0, 0, 1},
    {"SELECT rowid, distance FROM t WHERE emb MATCH " Q
     " ORDER BY distance LIMIT 3", 3, 0, 0, 1},
    {"SELECT rowid, emb, cat, year, score, body FROM t", 0, 0, 0, 0},
    {"SELECT rowid, emb, cat, year FROM t WHERE rowid = 22", 0, 0, 0, 0},
    {"SELECT rowid, emb, body FROM t WHERE rowid = 105", 0, 0, 0, 0},
    {"SELECT count(*) FROM t WHERE cat = 'news'", 0, 0, 0, 0},
    {"SELECT key, value FROM annex_info('t') WHERE key NOT IN "
     "('threads', 'simd', 'version') AND key NOT LIKE 'memory%' AND "
     "key NOT LIKE 'bytes%' AND key NOT LIKE 'gpu%' AND "
     "key NOT LIKE 'last%'", 0, 0, 0, 0},
    {IC, 0, 0, 1, 0},
    {"INSERT INTO t(emb, cat, year, score, body) "
     "VALUES('[1,2,3,4]', 'tech', 2005, 1.5, 'new')", 0, 1, 0, 0},
    {"UPDATE t SET emb = '[0,0,1,0]', cat = 'arts' WHERE rowid = 22", 0, 1, 0, 0},
    {"UPDATE t SET rowid = 1017 WHERE rowid = 17", 0, 1, 0, 0},
    {"UPDATE t SET year = year + 1 WHERE rowid IN (1, 25)", 0, 1, 0, 0},
    {"DELETE FROM t WHERE rowid IN (2, 24, 26)", 0, 1, 0, 0},
    {KNN, 5, 0, 0, 0},
    {KNN " AND cat = 'arts'", 5, 0, 0, 0},
    {"SELECT rowid, emb, cat, year, score, body FROM t", 0, 0, 0, 0},
    {IC, 0, 0, 0, 0},
};
#define NOP ((int)(sizeof(g_aOp) / sizeof(g_aOp[0])))

/* State ****************************************************************/

static unsigned char *g_aTemplate;  /* serialized template (sqlite3_malloc) */
static sqlite3_int64 g_nTemplate;
static unsigned char g_aChunk[4][CHUNK_BYTES]; /* template chunks 0, 2, 3 */
static int g_aLive[NSLOT];          /* slot holds a live row */
static char *g_azBase[NOP];         /* pristine results */
static int g_nMutation, g_nDetected, g_nInert, g_nIcOk, g_nErrOps, g_nOkOps;
static char g_zCurrent[256];        /* the mutation running (for alarms) */
static int g_bDup;                  /* a bAll k-NN returned a rowid twice */

static void on_alarm(int sig) {
  static const char zMsg[] = "test_corrupt: mutation hangs: ";
  (void)sig;
  if (write(2, zMsg, sizeof(zMsg) - 1) < 0 ||
      write(2, g_zCurrent, strlen(g_zCurrent)) < 0 || write(2, "\n", 1) < 0) {
    /* nothing more to do */
  }
  abort();
}

static void vec_sql(sqlite3_str *s, int i) {
  sqlite3_str_appendf(s, "'[%d,%g,%g,%d]'", i % 5, i * 0.25, 1.0 / i, -i % 3);
}

static char *template_sql(void) {
  static const char *azCat[] = {"'news'", "'tech'", "'arts'", "NULL",
                                "x'0102'"};
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendall(
      s, "CREATE VIRTUAL TABLE t USING annex(emb float[4], cat text, "
         "year integer, score real, +body text, chunk_size=8);\n");
  for (int i = 1; i <= NSLOT; i++) {
    char zYear[16] = "NULL", zScore[32] = "NULL";
    if (i % 6) snprintf(zYear, sizeof(zYear), "%d", 2000 + i % 7);
    if (i % 7) snprintf(zScore, sizeof(zScore), "%g", i * 0.25);
    sqlite3_str_appendf(s, "INSERT INTO t(rowid, emb, cat, year, score, body) "
                           "VALUES(%d, ", i);
    vec_sql(s, i);
    sqlite3_str_appendf(s, ", %s, %s, %s, 'body %d');\n", azCat[i % 5],
                        zYear, zScore, i);
  }
  /* chunk 1 (rows 9..16) empties and goes; dead slots in chunks 0 and 2 */
  sqlite3_str_appendall(s, "DELETE FROM t WHERE rowid BETWEEN 9 AND 16 "
                           "OR rowid IN (3, 20, 21);\n"
                           "UPDATE t SET rowid = 105 WHERE rowid = 5;\n"
                           "UPDATE t SET emb = '[9,9,9,9]' WHERE rowid = 6;\n");
  return sqlite3_str_finish(s);
}

/* Running the workload *************************************************/

static sqlite3 *open_copy(void) {
  sqlite3 *db = st_open(NULL);
  unsigned char *a = sqlite3_malloc64((sqlite3_uint64)g_nTemplate);
  int bOff = -1;
  assert_non_null(a);
  memcpy(a, g_aTemplate, (size_t)g_nTemplate);
  assert_int_equal(sqlite3_deserialize(db, "main", a, g_nTemplate, g_nTemplate,
                                       SQLITE_DESERIALIZE_FREEONCLOSE |
                                           SQLITE_DESERIALIZE_RESIZEABLE),
                   SQLITE_OK);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 0, &bOff);
  assert_int_equal(bOff, 0);
  return db;
}

/* An error annex may give on a corrupt table. */
static int allowed_error(sqlite3 *db, const op *o, int rc) {
  const char *zMsg = sqlite3_errmsg(db);
  switch (rc & 0xff) {
    case SQLITE_CORRUPT: return 1;
    case SQLITE_CONSTRAINT: if (!o->bWrite) return 0; /* fall through */
    case SQLITE_ERROR: return zMsg && zMsg[0] && strcmp(zMsg, "not an error");
  }
  return 0;
}

/* A k-NN answer must be well formed: at most k rows, distinct rowids,
** distances in order (NaN comes back as NULL and is skipped). */
static void check_knn_shape(const op *o, sqlite3_int64 *aRowid, double *aDist,
                            int *aNull, int n) {
  if (n > o->k) fail_msg("%s: %d rows from %s", g_zCurrent, n, o->zSql);
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < i; j++) {
      if (aRowid[i] == aRowid[j] && o->bAll) {
        g_bDup = 1;
      } else if (aRowid[i] == aRowid[j]) {
        fail_msg("%s: rowid %lld twice from %s", g_zCurrent,
                 (long long)aRowid[i], o->zSql);
      }
    }
    if (i > 0 && !aNull[i] && !aNull[i - 1] && aDist[i] < aDist[i - 1]) {
      fail_msg("%s: distances out of order from %s", g_zCurrent, o->zSql);
    }
  }
}

static void append_row(sqlite3_str *s, sqlite3_stmt *pStmt) {
  for (int i = 0; i < sqlite3_column_count(pStmt); i++) {
    int t = sqlite3_column_type(pStmt, i);
    if (t == SQLITE_BLOB) {
      const unsigned char *a = sqlite3_column_blob(pStmt, i);
      sqlite3_str_appendall(s, "|x");
      for (int b = 0; b < sqlite3_column_bytes(pStmt, i); b++) {
        sqlite3_str_appendf(s, "%02x", a[b]);
      }
    } else {
      sqlite3_str_appendf(s, "|%d:%s", t,
                          (const char *)sqlite3_column_text(pStmt, i));
    }
  }
  sqlite3_str_appendall(s, "\n");
}

/* Run one statement; its rows go to *pz (types and values) as text. */
static int run_op(sqlite3 *db, const op *o, char **pz) {
  sqlite3_int64 aRowid[128];
  double aDist[128];
  int aNull[128], n = 0, rc;
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_stmt *pStmt = NULL;
  rc = sqlite3_prepare_v2(db, o->zSql, -1, &pStmt, NULL);
  if (rc == SQLITE_OK) rc = SQLITE_ROW;
  while (rc == SQLITE_ROW && (rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    append_row(s, pStmt);
    if (o->k > 0 && n < 128) {
      aRowid[n] = sqlite3_column_int64(pStmt, 0);
      aNull[n] = sqlite3_column_type(pStmt, 1) == SQLITE_NULL;
      aDist[n++] = sqlite3_column_double(pStmt, 1);
    }
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc != SQLITE_OK) rc = sqlite3_extended_errcode(db);
  sqlite3_finalize(pStmt);
  *pz = sqlite3_str_finish(s);
  if (*pz == NULL) *pz = sqlite3_mprintf("");
  assert_non_null(*pz);
  if (rc == SQLITE_OK && o->k > 0) check_knn_shape(o, aRowid, aDist, aNull, n);
  return rc;
}

static void run_all(sqlite3 *db, int *aRc, char **az) {
  for (int i = 0; i < NOP; i++) {
    aRc[i] = run_op(db, &g_aOp[i], &az[i]);
    if (aRc[i] != SQLITE_OK && !allowed_error(db, &g_aOp[i], aRc[i])) {
      fail_msg("%s: %s gave %d (%s)", g_zCurrent, g_aOp[i].zSql, aRc[i],
               sqlite3_errmsg(db));
    }
  }
}

/* Mutations ************************************************************/

typedef struct mutation {
  mclass e;
  const char *zSql;          /* SQL to run, or NULL: */
  int iChunk;                /* ... replace this chunk's data */
  const unsigned char *a;    /* with these bytes */
  int n;                     /* (n bytes) */
} mutation;

static void apply(sqlite3 *db, const mutation *m) {
  if (m->zSql) {
    if (st_try(db, "%s", m->zSql) != SQLITE_OK) {
      fail_msg("mutation %s failed: %s", g_zCurrent, sqlite3_errmsg(db));
    }
  } else {
    sqlite3_stmt *s = st_prepare(db, "UPDATE t_chunks SET data = ? WHERE "
                                 "chunk = %d", m->iChunk);
    sqlite3_bind_blob(s, 1, m->a, m->n, SQLITE_TRANSIENT);
    assert_int_equal(st_run(s), SQLITE_DONE);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_finalize(s);
  }
}

static void judge(const mutation *m, const int *aRc, char **az) {
  int iIc = 0;
  while (!g_aOp[iIc].bIc) iIc++;
  if (m->e == M_DETECT && aRc[iIc] == SQLITE_OK) {
    fail_msg("integrity-check passed after %s", g_zCurrent);
  }
  if (aRc[iIc] == SQLITE_OK) {
    g_nIcOk++;
    if (g_bDup) {
      fail_msg("integrity-check passed after %s, but a k-NN returned a rowid "
               "twice", g_zCurrent);
    }
    for (int i = 0; i < iIc; i++) {
      if ((aRc[i] & 0xff) == SQLITE_CORRUPT) {
        fail_msg("integrity-check passed after %s, but %s reported "
                 "corruption", g_zCurrent, g_aOp[i].zSql);
      }
    }
  } else {
    g_nDetected++;
  }
  if (m->e == M_INERT) {
    g_nInert++;
    for (int i = 0; i < NOP; i++) {
      if (aRc[i] != SQLITE_OK || strcmp(az[i], g_azBase[i]) != 0) {
        fail_msg("%s changed the result of %s (rc %d):\n%s\nwas:\n%s",
                 g_zCurrent, g_aOp[i].zSql, aRc[i], az[i], g_azBase[i]);
      }
    }
  }
}

static void run_mutation(const mutation *m) {
  int aRc[NOP];
  char *az[NOP];
  sqlite3 *db;
  alarm(30);
  g_bDup = 0;
  db = open_copy();
  apply(db, m);
  run_all(db, aRc, az);
  judge(m, aRc, az);
  for (int i = 0; i < NOP; i++) {
    if (aRc[i] == SQLITE_OK) g_nOkOps++;
    else g_nErrOps++;
    sqlite3_free(az[i]);
  }
  st_close(db);
  alarm(0);
  g_nMutation++;
}

static void mutate_sql(mclass e, const char *zFmt, ...) {
  va_list ap;
  char *zSql;
  mutation m = {e, NULL, 0, NULL, 0};
  va_start(ap, zFmt);
  zSql = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  assert_non_null(zSql);
  snprintf(g_zCurrent, sizeof(g_zCurrent), "%s", zSql);
  m.zSql = zSql;
  run_mutation(&m);
  sqlite3_free(zSql);
}

static void mutate_chunk(mclass e, int iChunk, const unsigned char *a, int n,
                         const char *zWhat) {
  mutation m = {e, NULL, iChunk, a, n};
  snprintf(g_zCurrent, sizeof(g_zCurrent), "chunk %d: %s", iChunk, zWhat);
  run_mutation(&m);
}

/* Setup ****************************************************************/

static int live(int iChunk, int iPos) {
  int i = iChunk * NCHUNK + iPos;
  return i < NSLOT && g_aLive[i];
}

static void read_template(sqlite3 *db) {
  sqlite3_stmt *s = st_prepare(db, "SELECT chunk, data FROM t_chunks");
  while (sqlite3_step(s) == SQLITE_ROW) {
    assert_int_equal(sqlite3_column_bytes(s, 1), CHUNK_BYTES);
    memcpy(g_aChunk[sqlite3_column_int(s, 0)], sqlite3_column_blob(s, 1),
           CHUNK_BYTES);
  }
  sqlite3_finalize(s);
  s = st_prepare(db, "SELECT slot FROM t_rows");
  while (sqlite3_step(s) == SQLITE_ROW) g_aLive[sqlite3_column_int(s, 0)] = 1;
  sqlite3_finalize(s);
}

static int group_setup(void **state) {
  sqlite3 *db = st_open(NULL);
  char *zSql = template_sql();
  int aRc[NOP];
  (void)state;
  signal(SIGALRM, on_alarm);
  assert_non_null(zSql);
  st_exec(db, "%s", zSql);
  sqlite3_free(zSql);
  assert_int_equal(st_int(db, "SELECT value FROM t_config WHERE key='slots'"),
                   NSLOT);
  assert_int_equal(st_int(db, "SELECT group_concat(chunk) = '0,2,3' FROM "
                              "(SELECT chunk FROM t_chunks ORDER BY chunk)"), 1);
  read_template(db);
  g_aTemplate = sqlite3_serialize(db, "main", &g_nTemplate, 0);
  assert_non_null(g_aTemplate);
  st_close(db);
  /* the pristine run: everything succeeds */
  snprintf(g_zCurrent, sizeof(g_zCurrent), "no mutation");
  db = open_copy();
  run_all(db, aRc, g_azBase);
  for (int i = 0; i < NOP; i++) {
    if (aRc[i] != SQLITE_OK) {
      fail_msg("pristine: %s gave %d", g_aOp[i].zSql, aRc[i]);
    }
  }
  st_close(db);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  printf("test_corrupt: %d mutations (%d reported by integrity-check, %d "
         "passed it, %d inert checked); %d statements succeeded, %d failed "
         "cleanly\n", g_nMutation, g_nDetected, g_nIcOk, g_nInert, g_nOkOps,
         g_nErrOps);
  for (int i = 0; i < NOP; i++) sqlite3_free(g_azBase[i]);
  sqlite3_free(g_aTemplate);
  return 0;
}

/* Chunk blobs **********************************************************/

static const int g_aChunkId[] = {0, 2, 3};

/* Every length short of the right one, a few longer, other types. */
static void test_chunk_sizes(void **state) {
  static unsigned char a[CHUNK_BYTES + 4096];
  static const int aExtra[] = {1, 7, 8, 409, 4096};
  char zWhat[64];
  (void)state;
  for (int c = 0; c < 3; c++) {
    int iChunk = g_aChunkId[c];
    memset(a, 0, sizeof(a));
    memcpy(a, g_aChunk[iChunk], CHUNK_BYTES);
    for (int n = 0; n < CHUNK_BYTES; n++) {
      snprintf(zWhat, sizeof(zWhat), "truncated to %d bytes", n);
      mutate_chunk(M_DETECT, iChunk, a, n, zWhat);
    }
    for (size_t i = 0; i < sizeof(aExtra) / sizeof(aExtra[0]); i++) {
      snprintf(zWhat, sizeof(zWhat), "%d bytes too long", aExtra[i]);
      mutate_chunk(M_DETECT, iChunk, a, CHUNK_BYTES + aExtra[i], zWhat);
    }
    mutate_sql(M_DETECT, "UPDATE t_chunks SET data = 12345 WHERE chunk = %d",
               iChunk);
    mutate_sql(M_DETECT, "UPDATE t_chunks SET data = 0.5 WHERE chunk = %d",
               iChunk);
    mutate_sql(M_DETECT, "UPDATE t_chunks SET data = 'x' WHERE chunk = %d",
               iChunk);
    mutate_sql(M_ANY, "UPDATE t_chunks SET data = CAST(data AS TEXT) WHERE "
               "chunk = %d", iChunk);
  }
}

/* What a flip of byte `off` breaks: DETECT for content the format defines,
** INERT for bytes of dead or unallocated slots. A live vector may hold any
** bytes but NaN or infinity (the parser refuses them). */
static mclass flip_class(int iChunk, int off, const unsigned char *a) {
  int iPos;
  if (off < OFF_ROWID) return M_DETECT;
  if (off < OFF_META) {
    return live(iChunk, (off - OFF_ROWID) / 8) ? M_DETECT : M_INERT;
  }
  if (off < OFF_VEC) {
    int r = (off - OFF_META) % (9 * NCHUNK);
    iPos = r < NCHUNK ? r : (r - NCHUNK) / 8;
    return live(iChunk, iPos) ? M_DETECT : M_INERT;
  }
  iPos = (off - OFF_VEC) / (4 * NDIM);
  if (!live(iChunk, iPos)) return M_INERT;
  {
    float f;
    memcpy(&f, a + OFF_VEC + (off - OFF_VEC) / 4 * 4, 4);
    return isfinite(f) ? M_ANY : M_DETECT;
  }
}

static void test_chunk_flips(void **state) {
  static const unsigned char aMask[] = {0x01, 0xff};
  unsigned char a[CHUNK_BYTES];
  char zWhat[64];
  (void)state;
  for (int c = 0; c < 3; c++) {
    int iChunk = g_aChunkId[c];
    for (int off = 0; off < CHUNK_BYTES; off++) {
      for (size_t k = 0; k < sizeof(aMask); k++) {
        memcpy(a, g_aChunk[iChunk], CHUNK_BYTES);
        a[off] ^= aMask[k];
        snprintf(zWhat, sizeof(zWhat), "byte %d ^= 0x%02x", off, aMask[k]);
        mutate_chunk(flip_class(iChunk, off, a), iChunk, a, CHUNK_BYTES,
                     zWhat);
      }
    }
  }
}

/* Chunk rows moved, copied, removed, added. */
static void test_chunk_ids(void **state) {
  static const char *azId[] = {"1", "4", "5", "1000", "-1",
                               "9223372036854775807", "-9223372036854775808",
                               "1152921504606846975"};
  (void)state;
  for (int c = 0; c < 3; c++) {
    int iChunk = g_aChunkId[c];
    for (size_t i = 0; i < sizeof(azId) / sizeof(azId[0]); i++) {
      mutate_sql(M_DETECT, "UPDATE t_chunks SET chunk = %s WHERE chunk = %d",
                 azId[i], iChunk);
      mutate_sql(M_DETECT, "INSERT INTO t_chunks SELECT %s, data FROM "
                 "t_chunks WHERE chunk = %d", azId[i], iChunk);
    }
    mutate_sql(M_DETECT, "DELETE FROM t_chunks WHERE chunk = %d", iChunk);
  }
  mutate_sql(M_DETECT, "UPDATE t_chunks SET chunk = 100 WHERE chunk = 0; "
             "UPDATE t_chunks SET chunk = 0 WHERE chunk = 2; "
             "UPDATE t_chunks SET chunk = 2 WHERE chunk = 100");
  mutate_sql(M_DETECT, "UPDATE t_chunks SET chunk = 100 WHERE chunk = 3; "
             "UPDATE t_chunks SET chunk = 3 WHERE chunk = 2; "
             "UPDATE t_chunks SET chunk = 2 WHERE chunk = 100");
  /* a full chunk with no live slot should have been deleted */
  mutate_sql(M_DETECT, "INSERT INTO t_chunks VALUES(1, zeroblob(%d))",
             CHUNK_BYTES);
  mutate_sql(M_DETECT, "INSERT INTO t_chunks VALUES(4, zeroblob(%d))",
             CHUNK_BYTES);
  mutate_sql(M_DETECT, "DELETE FROM t_chunks");
  mutate_sql(M_DETECT, "DROP TABLE t_chunks");
}

/* T_config *************************************************************/

static void test_config(void **state) {
  static const struct {
    const char *zKey;
    const char *azLie[10];  /* values that contradict the table */
    const char *azFine[4];  /* values that may stand */
  } aKey[] = {
      {"format", {"2", "0", "-1", "'1'", "1.0", "NULL", "x'01'"}, {NULL}},
      {"column", {"'emb2'", "'cat'", "1", "NULL", "''"}, {NULL}},
      {"dims", {"3", "5", "0", "-4", "'4'", "4.0", "NULL", "1073741824"},
       {NULL}},
      {"element", {"'int8'", "'bit'", "'x'", "NULL", "1", "'float '"}, {NULL}},
      {"metric", {"'cosine'", "'ip'", "'hamming'", "'x'", "NULL", "2"},
       {NULL}},
      /* (the spelling of the kind is config.c's: only "text" is checked) */
      {"index", {"NULL", "1", "x'01'"}, {"'hnsw'", "'x'"}},
      {"chunk_size", {"16", "4", "1024", "7", "0", "-8", "'8'", "8.5", "NULL",
                      "4096"}, {NULL}},
      {"slots", {"29", "24", "0", "-1", "'30'", "30.0", "NULL", "33",
                 "9223372036854775807"}, {"31", "32", "40"}},
      {"changes", {"'x'", "NULL", "1.5"}, {"-5", "0", "9223372036854775807"}},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(aKey) / sizeof(aKey[0]); i++) {
    const char *zKey = aKey[i].zKey;
    mutate_sql(M_DETECT, "DELETE FROM t_config WHERE key = '%s'", zKey);
    for (int j = 0; j < 10 && aKey[i].azLie[j]; j++) {
      mutate_sql(M_DETECT, "UPDATE t_config SET value = %s WHERE key = '%s'",
                 aKey[i].azLie[j], zKey);
    }
    for (int j = 0; j < 4 && aKey[i].azFine[j]; j++) {
      mutate_sql(M_ANY, "UPDATE t_config SET value = %s WHERE key = '%s'",
                 aKey[i].azFine[j], zKey);
    }
    mutate_sql(M_DETECT, "UPDATE t_config SET key = '%s ' WHERE key = '%s'",
               zKey, zKey);
  }
  /* (annex_info lists every key, so this one shows there) */
  mutate_sql(M_ANY, "INSERT INTO t_config VALUES('unknown', 1)");
  mutate_sql(M_DETECT, "DELETE FROM t_config");
  mutate_sql(M_DETECT, "DROP TABLE t_config");
}

/* T_rows and T_dict ****************************************************/

static void test_rows(void **state) {
  static const char *azSlot[] = {"-1", "30", "31", "1000", "2", "8",
                                 "9223372036854775807", "-9223372036854775808",
                                 "'abc'", "'17'", "1.5", "x'00'"};
  (void)state;
  /* row 22: slot 21, cat 'arts', year 2001, score 5.5 */
  for (size_t i = 0; i < sizeof(azSlot) / sizeof(azSlot[0]); i++) {
    mutate_sql(M_DETECT, "UPDATE t_rows SET slot = %s WHERE rowid = 22",
               azSlot[i]);
  }
  mutate_sql(M_DETECT, "UPDATE t_rows SET slot = (SELECT slot FROM t_rows "
             "WHERE rowid = 23) WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET slot = (SELECT slot FROM t_rows "
             "WHERE rowid = 1) WHERE rowid = 30");
  mutate_sql(M_DETECT, "UPDATE t_rows SET slot = slot + 1");
  mutate_sql(M_DETECT, "DELETE FROM t_rows WHERE rowid = 22");
  mutate_sql(M_DETECT, "DELETE FROM t_rows WHERE rowid = 105");
  mutate_sql(M_DETECT, "DELETE FROM t_rows");
  mutate_sql(M_DETECT, "INSERT INTO t_rows(rowid, slot) VALUES(3, 2)");
  mutate_sql(M_DETECT, "INSERT INTO t_rows(rowid, slot) VALUES(77, 21)");
  mutate_sql(M_DETECT, "INSERT INTO t_rows(rowid, slot) VALUES(77, 29)");
  mutate_sql(M_DETECT, "UPDATE t_rows SET rowid = 999 WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET rowid = 5 WHERE rowid = 105");
  /* metadata that disagrees with the compact copies */
  mutate_sql(M_DETECT, "UPDATE t_rows SET c1 = 'news' WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c1 = 'zzz' WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c1 = NULL WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c1 = 7 WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c1 = x'01' WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c1 = 'arts' WHERE rowid = 24");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c2 = c2 + 1 WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c2 = 'abc' WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c2 = 2001.5 WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c2 = 2001 WHERE rowid = 24");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c3 = 99.5 WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c3 = NULL WHERE rowid = 22");
  mutate_sql(M_DETECT, "UPDATE t_rows SET c3 = 'x' WHERE rowid = 22");
  /* the +body column has no compact copy: any value stands */
  mutate_sql(M_ANY, "UPDATE t_rows SET c4 = 'changed' WHERE rowid = 22");
  mutate_sql(M_ANY, "UPDATE t_rows SET c4 = x'00ff' WHERE rowid = 22");
  mutate_sql(M_DETECT, "DROP TABLE t_rows");
}

static void test_dict(void **state) {
  (void)state;
  mutate_sql(M_DETECT, "DELETE FROM t_dict WHERE value = 'tech'");
  mutate_sql(M_DETECT, "DELETE FROM t_dict");
  mutate_sql(M_DETECT, "UPDATE t_dict SET value = 'TECH' WHERE value = "
             "'tech'");
  mutate_sql(M_DETECT, "UPDATE t_dict SET id = id + 100");
  mutate_sql(M_DETECT, "UPDATE t_dict SET id = -id");
  mutate_sql(M_DETECT, "UPDATE t_dict SET id = 100 WHERE value = 'news'");
  mutate_sql(M_INERT, "INSERT INTO t_dict(value) VALUES('unused')");
  mutate_sql(M_INERT, "INSERT INTO t_dict(id, value) VALUES(-7, 'neg')");
  mutate_sql(M_DETECT, "DROP TABLE t_dict");
}

/* Defensive mode *******************************************************/

static void test_defensive(void **state) {
  static const char *azTab[] = {"t_config", "t_rows", "t_chunks", "t_dict"};
  static const char *azWrite[] = {
      "INSERT INTO %s SELECT * FROM %s LIMIT 1",
      "UPDATE %s SET rowid = rowid WHERE 0 = 0",
      "DELETE FROM %s",
  };
  sqlite3 *db = open_copy();
  st_snapshot *pSnap;
  int bOn = 0;
  (void)state;
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, &bOn);
  assert_int_equal(bOn, 1);
  pSnap = st_snapshot_take(db, "t");
  for (size_t i = 0; i < 4; i++) {
    for (size_t j = 0; j < 3; j++) {
      const char *z = azWrite[j];
      if (i == 0 && j == 1) z = "UPDATE %s SET value = value WHERE 0 = 0";
      st_expect_error(db, 0, "may not be modified", z, azTab[i], azTab[i]);
    }
  }
  st_expect_error(db, 0, "may not be", "DROP TABLE t_rows");
  st_assert_unchanged(db, "t", pSnap);
  st_integrity_ok(db, "t");
  st_snapshot_free(pSnap);
  st_close(db);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defensive),
      cmocka_unit_test(test_config),
      cmocka_unit_test(test_rows),
      cmocka_unit_test(test_dict),
      cmocka_unit_test(test_chunk_ids),
      cmocka_unit_test(test_chunk_sizes),
      cmocka_unit_test(test_chunk_flips),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
