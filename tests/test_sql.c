/*
** test_sql.c — SQL-level tests of the annex virtual table, through the C
** API of a connection that registered annex with sqlite3_annex_init.
**
** Every k-NN answer is checked against an exact brute force computed here in
** double precision (sqltest.c: st_ref_rank / st_check_knn), over a model of
** the table the test keeps on the side; never against annex itself. Tables
** use chunk_size=8 or 16 so that a few hundred rows span many chunks.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "annex.h"
#include "sqltest.h"

#define TOL 1e-5      /* relative tolerance on distances */
#define MAXB 256      /* largest vector (bytes) the model holds */

/* Deterministic random numbers *******************************************/

static uint64_t g_rng;

static void seed(uint64_t s) { g_rng = s * 0x9E3779B97F4A7C15ull + 1; }

static uint32_t rnd(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng >> 32);
}

static double rnd_unit(void) { return rnd() / 4294967296.0; }

/* A model of a test table ************************************************/

/* Every test table has the columns of the issue's example:
**   embedding <vector>, category text, year integer, score real, +body text */
typedef struct row {
  sqlite3_int64 rowid;      /* 0 while not yet assigned */
  unsigned char vec[MAXB];  /* stored format */
  const char *cat;          /* static string or NULL */
  int year, hasYear;
  double score;
  int hasScore;
  char body[32];
} row;

typedef struct model {
  st_elem e;
  st_metric m;
  int nDim;
  size_t sz;
  row *a;
  int n, nAlloc;
} model;

static const char *azCat[] = {"news", "sports", "tech", "arts", NULL};

static void model_init(model *p, st_elem e, st_metric m, int nDim) {
  memset(p, 0, sizeof(*p));
  p->e = e;
  p->m = m;
  p->nDim = nDim;
  p->sz = st_vec_bytes(e, nDim);
  assert_true(p->sz <= MAXB);
}

static void model_free(model *p) { free(p->a); }

static row *model_add(model *p) {
  if (p->n == p->nAlloc) {
    p->nAlloc = p->nAlloc ? 2 * p->nAlloc : 64;
    p->a = realloc(p->a, sizeof(row) * (size_t)p->nAlloc);
    assert_non_null(p->a);
  }
  memset(&p->a[p->n], 0, sizeof(row));
  return &p->a[p->n++];
}

static row *model_find(model *p, sqlite3_int64 iRowid) {
  for (int i = 0; i < p->n; i++) {
    if (p->a[i].rowid == iRowid) return &p->a[i];
  }
  return NULL;
}

static void model_del(model *p, sqlite3_int64 iRowid) {
  row *r = model_find(p, iRowid);
  assert_non_null(r);
  *r = p->a[--p->n];
}

static model model_copy(const model *p) {
  model c = *p;
  c.a = malloc(sizeof(row) * (size_t)(p->nAlloc ? p->nAlloc : 1));
  assert_non_null(c.a);
  if (p->n) memcpy(c.a, p->a, sizeof(row) * (size_t)p->n);
  return c;
}

static void gen_vec(const model *p, unsigned char *out) {
  for (int i = 0; i < p->nDim; i++) {
    if (p->e == ST_FLOAT) {
      float f = (float)(rnd_unit() * 2.0 - 1.0);
      memcpy(out + 4 * i, &f, 4);
    } else if (p->e == ST_INT8) {
      ((signed char *)out)[i] = (signed char)((int)(rnd() % 201) - 100);
    }
  }
  if (p->e == ST_BIT) {
    for (size_t i = 0; i < p->sz; i++) out[i] = (unsigned char)rnd();
  }
}

static void gen_meta(row *r) {
  r->cat = azCat[rnd() % 5];
  r->hasYear = rnd() % 10 != 0;
  r->year = 2000 + (int)(rnd() % 25);
  r->hasScore = rnd() % 10 != 0;
  r->score = (double)(rnd() % 1000) / 1000.0;
}

/* JSON text of a stored-format vector; sqlite3_free() it. */
static char *vec_json(const model *p, const unsigned char *v) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendchar(s, 1, '[');
  for (int i = 0; i < p->nDim; i++) {
    if (i) sqlite3_str_appendall(s, ", ");
    if (p->e == ST_FLOAT) {
      float f;
      memcpy(&f, v + 4 * i, 4);
      sqlite3_str_appendf(s, "%.9g", (double)f);
    } else if (p->e == ST_INT8) {
      sqlite3_str_appendf(s, "%d", ((const signed char *)v)[i]);
    } else {
      sqlite3_str_appendf(s, "%d", (v[i / 8] >> (i % 8)) & 1);
    }
  }
  sqlite3_str_appendchar(s, 1, ']');
  return sqlite3_str_finish(s);
}

static void create_table(sqlite3 *db, const char *zTab, const char *zVec,
                         int nChunk) {
  st_exec(db,
          "CREATE VIRTUAL TABLE \"%w\" USING annex(embedding %s, index=flat, "
          "chunk_size=%d, category text, year integer, score real, "
          "+body text)",
          zTab, zVec, nChunk);
}

static sqlite3_stmt *prep_insert(sqlite3 *db, const char *zVerb,
                                 const char *zTab) {
  return st_prepare(db,
                    "%s INTO \"%w\"(rowid, embedding, category, year, score, "
                    "body) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                    zVerb, zTab);
}

/* Bind r to an insert statement: vector as JSON text or as a BLOB. */
static void bind_row(sqlite3_stmt *s, const model *p, const row *r,
                     int bJson) {
  if (r->rowid) sqlite3_bind_int64(s, 1, r->rowid);
  else sqlite3_bind_null(s, 1);
  if (bJson) {
    char *z = vec_json(p, r->vec);
    sqlite3_bind_text(s, 2, z, -1, sqlite3_free);
  } else {
    sqlite3_bind_blob(s, 2, r->vec, (int)p->sz, SQLITE_TRANSIENT);
  }
  if (r->cat) sqlite3_bind_text(s, 3, r->cat, -1, SQLITE_STATIC);
  else sqlite3_bind_null(s, 3);
  if (r->hasYear) sqlite3_bind_int(s, 4, r->year);
  else sqlite3_bind_null(s, 4);
  if (r->hasScore) sqlite3_bind_double(s, 5, r->score);
  else sqlite3_bind_null(s, 5);
  sqlite3_bind_text(s, 6, r->body, -1, SQLITE_TRANSIENT);
}

static void insert_ok(sqlite3_stmt *s) {
  int rc = st_run(s);
  if (rc != SQLITE_DONE) {
    fail_msg("insert failed (%d): %s", rc,
             sqlite3_errmsg(sqlite3_db_handle(s)));
  }
}

/* Insert n random rows with rowids iBase, iBase+iStride, ... (iStride 0:
** let annex assign them). mode 0: BLOB vectors, 1: JSON, 2: alternate. */
static void fill(sqlite3 *db, const char *zTab, model *p, int n,
                 sqlite3_int64 iBase, sqlite3_int64 iStride, int mode) {
  sqlite3_stmt *s = prep_insert(db, "INSERT", zTab);
  for (int i = 0; i < n; i++) {
    row *r = model_add(p);
    r->rowid = iStride ? iBase + iStride * i : 0;
    gen_vec(p, r->vec);
    gen_meta(r);
    snprintf(r->body, sizeof(r->body), "body-%d-%u", i, rnd() % 1000);
    bind_row(s, p, r, mode == 2 ? (i & 1) : mode);
    insert_ok(s);
    if (!iStride) r->rowid = sqlite3_last_insert_rowid(db);
  }
  sqlite3_finalize(s);
}

/* The full reference ranking of the model's rows with aUse[i] (NULL: all). */
static int model_rank(const model *p, const void *pQuery,
                      const unsigned char *aUse, st_hit *aOut) {
  unsigned char *aVec = malloc(p->sz * (size_t)(p->n + 1));
  sqlite3_int64 *aRowid = malloc(sizeof(sqlite3_int64) * (size_t)(p->n + 1));
  int n;
  assert_non_null(aVec);
  assert_non_null(aRowid);
  for (int i = 0; i < p->n; i++) {
    memcpy(aVec + p->sz * i, p->a[i].vec, p->sz);
    aRowid[i] = p->a[i].rowid;
  }
  n = st_ref_rank(p->e, p->m, p->nDim, pQuery, aVec, aRowid, aUse, p->n, aOut);
  free(aVec);
  free(aRowid);
  return n;
}

/* Run a k-NN statement: ?1 = the query (BLOB, or zJson as text when not
** NULL), ?2 = k, ?3 = radius, each only if the statement has it. */
static int run_query(sqlite3 *db, const model *p, const char *zSql,
                     const void *pQuery, const char *zJson, sqlite3_int64 k,
                     double r, sqlite3_int64 *aRowid, double *aDist,
                     int nMax) {
  sqlite3_stmt *s = st_prepare(db, "%s", zSql);
  int nParam = sqlite3_bind_parameter_count(s), n;
  if (zJson) sqlite3_bind_text(s, 1, zJson, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_blob(s, 1, pQuery, (int)p->sz, SQLITE_TRANSIENT);
  if (nParam >= 2) sqlite3_bind_int64(s, 2, k);
  if (nParam >= 3) sqlite3_bind_double(s, 3, r);
  n = st_collect(s, aRowid, aDist, nMax);
  sqlite3_finalize(s);
  return n;
}

/* Run zSql and check it returns the first nWant rows of the reference
** ranking over the rows with aUse (nWant < 0: min(k, eligible rows)). */
static void check_query(sqlite3 *db, const model *p, const char *zSql,
                        const void *pQuery, const char *zJson,
                        sqlite3_int64 k, double r, const unsigned char *aUse,
                        int nWant, const char *zWhat) {
  int nMax = p->n + 8;
  st_hit *aRef = malloc(sizeof(st_hit) * (size_t)(p->n + 1));
  sqlite3_int64 *aRowid = malloc(sizeof(sqlite3_int64) * (size_t)nMax);
  double *aDist = malloc(sizeof(double) * (size_t)nMax);
  int nRef, nGot;
  char zDesc[512];
  assert_non_null(aRef);
  assert_non_null(aRowid);
  assert_non_null(aDist);
  nRef = model_rank(p, pQuery, aUse, aRef);
  if (nWant < 0) nWant = k < nRef ? (int)k : nRef;
  nGot = run_query(db, p, zSql, pQuery, zJson, k, r, aRowid, aDist, nMax);
  snprintf(zDesc, sizeof(zDesc), "%s [%s, k=%lld]", zWhat, zSql, (long long)k);
  st_check_knn(aRowid, aDist, nGot, aRef, nRef, nWant, TOL, zDesc);
  free(aRef);
  free(aRowid);
  free(aDist);
}

static int row_cmp(const void *pa, const void *pb) {
  const row *a = pa, *b = pb;
  return (a->rowid > b->rowid) - (a->rowid < b->rowid);
}

/* The table holds exactly the model: a full scan (no ORDER BY) returns
** every row in rowid order with its stored vector, metadata and body. */
static void model_verify(sqlite3 *db, const char *zTab, const model *p) {
  model c = model_copy(p);
  sqlite3_stmt *s = st_prepare(db,
                               "SELECT rowid, embedding, category, year, "
                               "score, body FROM \"%w\"", zTab);
  int i = 0, rc;
  qsort(c.a, (size_t)c.n, sizeof(row), row_cmp);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    const row *r;
    if (i >= c.n) fail_msg("%s has more rows than the model (%d)", zTab, c.n);
    r = &c.a[i++];
    assert_int_equal(sqlite3_column_int64(s, 0), r->rowid);
    assert_int_equal(sqlite3_column_type(s, 1), SQLITE_BLOB);
    assert_int_equal(sqlite3_column_bytes(s, 1), (int)p->sz);
    if (memcmp(sqlite3_column_blob(s, 1), r->vec, p->sz) != 0) {
      fail_msg("%s: rowid %lld holds another vector", zTab,
               (long long)r->rowid);
    }
    if (r->cat) {
      assert_string_equal((const char *)sqlite3_column_text(s, 2), r->cat);
    } else {
      assert_int_equal(sqlite3_column_type(s, 2), SQLITE_NULL);
    }
    if (r->hasYear) {
      assert_int_equal(sqlite3_column_type(s, 3), SQLITE_INTEGER);
      assert_int_equal(sqlite3_column_int(s, 3), r->year);
    } else {
      assert_int_equal(sqlite3_column_type(s, 3), SQLITE_NULL);
    }
    if (r->hasScore) {
      assert_int_equal(sqlite3_column_type(s, 4), SQLITE_FLOAT);
      assert_true(sqlite3_column_double(s, 4) == r->score);
    } else {
      assert_int_equal(sqlite3_column_type(s, 4), SQLITE_NULL);
    }
    assert_string_equal((const char *)sqlite3_column_text(s, 5), r->body);
  }
  assert_int_equal(rc, SQLITE_DONE);
  sqlite3_finalize(s);
  if (i != c.n) fail_msg("%s has %d rows, the model %d", zTab, i, c.n);
  model_free(&c);
}

/* One random k-NN query over all rows, k = 10 and k = everything. */
static void model_knn_spot(sqlite3 *db, const char *zTab, const model *p) {
  unsigned char q[MAXB];
  char *zSql = sqlite3_mprintf("SELECT rowid, distance FROM \"%w\" WHERE "
                               "embedding MATCH ?1 AND k = ?2 ORDER BY "
                               "distance", zTab);
  gen_vec(p, q);
  check_query(db, p, zSql, q, NULL, 10, 0, NULL, -1, "spot k=10");
  check_query(db, p, zSql, q, NULL, p->n + 1, 0, NULL, -1, "spot k=all");
  sqlite3_free(zSql);
}

static sqlite3_int64 info_int(sqlite3 *db, const char *zTab,
                              const char *zKey) {
  return st_int(db, "SELECT value FROM annex_info(%Q) WHERE key = %Q", zTab,
                zKey);
}

static int count_shadow(sqlite3 *db, const char *zTab) {
  return (int)st_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                         "('%q_config', '%q_rows', '%q_chunks', '%q_dict')",
                     zTab, zTab, zTab, zTab);
}

/* A file database; fsync is skipped (the tests do not crash the machine). */
static sqlite3 *open_file(const char *zPath) {
  sqlite3 *db = st_open(zPath);
  st_exec(db, "PRAGMA synchronous = OFF");
  return db;
}

/* Round trips ***********************************************************/

static const char *const KNN_SQL =
    "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 AND k = ?2 "
    "ORDER BY distance";

static void roundtrip(st_elem e, st_metric m, const char *zDecl, int nDim,
                      const char *zMetric) {
  static const int aK[] = {1, 7, 50, 299, 310, 1000};
  sqlite3 *db = st_open(NULL);
  model md;
  model_init(&md, e, m, nDim);
  create_table(db, "docs", zDecl, 8);
  fill(db, "docs", &md, 290, 5, 3, 2); /* rowids 5, 8, 11, ...; mixed input */
  fill(db, "docs", &md, 10, 0, 0, 1);  /* rowids assigned by annex */
  assert_int_equal(info_int(db, "docs", "rows"), 300);
  assert_int_equal(info_int(db, "docs", "chunks"), 300 / 8 + 1);
  {
    char *z = st_text(db, "SELECT value FROM annex_info('docs') WHERE "
                          "key = 'metric'");
    assert_string_equal(z, zMetric);
    sqlite3_free(z);
  }
  st_integrity_ok(db, "docs");
  model_verify(db, "docs", &md);
  for (int iq = 0; iq < 5; iq++) {
    unsigned char q[MAXB];
    gen_vec(&md, q);
    if (iq == 0) memcpy(q, md.a[17].vec, md.sz); /* a stored vector */
    for (size_t ik = 0; ik < sizeof(aK) / sizeof(aK[0]); ik++) {
      check_query(db, &md, KNN_SQL, q, NULL, aK[ik], 0, NULL, -1, zDecl);
    }
    if (iq == 1) { /* the query as JSON text */
      char *z = vec_json(&md, q);
      check_query(db, &md, KNN_SQL, q, z, 25, 0, NULL, -1, "JSON query");
      sqlite3_free(z);
    }
  }
  model_free(&md);
  st_close(db);
}

static void test_roundtrip_float(void **state) {
  (void)state;
  seed(1);
  roundtrip(ST_FLOAT, ST_L2, "float[16] distance=l2", 16, "l2");
  roundtrip(ST_FLOAT, ST_COSINE, "float[16] distance=cosine", 16, "cosine");
  roundtrip(ST_FLOAT, ST_IP, "float[16] distance=ip", 16, "ip");
  roundtrip(ST_FLOAT, ST_L2, "float32[13]", 13, "l2"); /* default metric */
}

static void test_roundtrip_int8(void **state) {
  (void)state;
  seed(2);
  roundtrip(ST_INT8, ST_L2, "int8[16] distance=l2", 16, "l2");
  roundtrip(ST_INT8, ST_COSINE, "int8[16] distance=cosine", 16, "cosine");
  roundtrip(ST_INT8, ST_IP, "int8[16] distance=ip", 16, "ip");
}

static void test_roundtrip_bit(void **state) {
  (void)state;
  seed(3);
  roundtrip(ST_BIT, ST_HAMMING, "bit[64] distance=hamming", 64, "hamming");
  roundtrip(ST_BIT, ST_HAMMING, "bit[24]", 24, "hamming"); /* default */
}

/* Ties ******************************************************************/

static void test_ties_by_rowid(void **state) {
  static const sqlite3_int64 aA[] = {50, 7, 33, 12, 90};
  static const sqlite3_int64 aB[] = {5, 60, 21};
  sqlite3 *db = st_open(NULL);
  sqlite3_stmt *s;
  model md;
  unsigned char vA[MAXB], vB[MAXB];
  sqlite3_int64 aRowid[16];
  double aDist[16];
  int n;
  (void)state;
  seed(4);
  model_init(&md, ST_FLOAT, ST_L2, 8);
  create_table(db, "docs", "float[8]", 8);
  fill(db, "docs", &md, 40, 100, 1, 0);
  gen_vec(&md, vA);
  gen_vec(&md, vB);
  s = prep_insert(db, "INSERT", "docs");
  for (int i = 0; i < 5; i++) { /* duplicates of A and B, rowids shuffled */
    for (int j = 0; j < 2; j++) {
      row *r;
      if (j == 1 && i >= 3) continue;
      r = model_add(&md);
      r->rowid = j ? aB[i] : aA[i];
      memcpy(r->vec, j ? vB : vA, md.sz);
      snprintf(r->body, sizeof(r->body), "dup");
      bind_row(s, &md, r, i & 1);
      insert_ok(s);
    }
  }
  sqlite3_finalize(s);
  n = st_knn(db, KNN_SQL, vA, (int)md.sz, 3, aRowid, aDist, 16);
  assert_int_equal(n, 3);
  assert_int_equal(aRowid[0], 7);
  assert_int_equal(aRowid[1], 12);
  assert_int_equal(aRowid[2], 33);
  for (int i = 0; i < 3; i++) assert_true(aDist[i] == 0.0);
  n = st_knn(db, KNN_SQL, vA, (int)md.sz, 6, aRowid, aDist, 16);
  assert_int_equal(n, 6);
  assert_int_equal(aRowid[3], 50);
  assert_int_equal(aRowid[4], 90);
  assert_true(aDist[5] > 0.0);
  /* The tie group of B is nearest to B and is cut at k = 2. */
  n = st_knn(db, KNN_SQL, vB, (int)md.sz, 2, aRowid, aDist, 16);
  assert_int_equal(n, 2);
  assert_int_equal(aRowid[0], 5);
  assert_int_equal(aRowid[1], 21);
  check_query(db, &md, KNN_SQL, vA, NULL, 20, 0, NULL, -1, "ties");
  st_exec(db, "DROP TABLE docs");
  model_free(&md);

  /* Small value ranges make exact ties everywhere: int8 l2 and hamming,
  ** with rowids inserted in random order. */
  for (int t = 0; t < 2; t++) {
    model m2;
    s = NULL;
    model_init(&m2, t ? ST_BIT : ST_INT8, t ? ST_HAMMING : ST_L2, 8);
    create_table(db, "docs", t ? "bit[8]" : "int8[8]", 8);
    s = prep_insert(db, "INSERT", "docs");
    for (int i = 0; i < 200; i++) {
      row *r = model_add(&m2);
      /* distinct rowids, shuffled */
      r->rowid = (sqlite3_int64)((i * 7919) % 1009) + 1;
      if (t) r->vec[0] = (unsigned char)rnd();
      else for (int d = 0; d < 8; d++) r->vec[d] = (unsigned char)(rnd() % 3);
      snprintf(r->body, sizeof(r->body), "t");
      bind_row(s, &m2, r, i % 3 == 0);
      insert_ok(s);
    }
    sqlite3_finalize(s);
    for (int iq = 0; iq < 6; iq++) {
      unsigned char q[MAXB];
      memcpy(q, m2.a[iq * 13].vec, m2.sz);
      for (int k = 1; k <= 64; k *= 2) {
        check_query(db, &m2, KNN_SQL, q, NULL, k, 0, NULL, -1,
                    t ? "hamming ties" : "int8 ties");
      }
    }
    st_exec(db, "DROP TABLE docs");
    model_free(&m2);
  }
  st_close(db);
}

/* Metadata and rowid filters ********************************************/

typedef int (*row_pred)(const row *);

static int cat_is(const row *r, const char *z) {
  return r->cat && strcmp(r->cat, z) == 0;
}
static int p_news(const row *r) { return cat_is(r, "news"); }
static int p_not_news(const row *r) { return r->cat && !cat_is(r, "news"); }
static int p_y_lt(const row *r) { return r->hasYear && r->year < 2010; }
static int p_y_le(const row *r) { return r->hasYear && r->year <= 2010; }
static int p_y_gt(const row *r) { return r->hasYear && r->year > 2010; }
static int p_y_ge(const row *r) { return r->hasYear && r->year >= 2010; }
static int p_y_eq(const row *r) { return r->hasYear && r->year == 2020; }
static int p_y_ne(const row *r) { return r->hasYear && r->year != 2020; }
static int p_y_is_not(const row *r) { return !r->hasYear || r->year != 2020; }
static int p_s_lt(const row *r) { return r->hasScore && r->score < 0.25; }
static int p_cat_in(const row *r) {
  return cat_is(r, "news") || cat_is(r, "arts");
}
static int p_y_in(const row *r) {
  return r->hasYear && (r->year == 2001 || r->year == 2003 || r->year == 2020);
}
static int p_cat_null(const row *r) { return r->cat == NULL; }
static int p_cat_notnull(const row *r) { return r->cat != NULL; }
static int p_s_null(const row *r) { return !r->hasScore; }
static int p_rowid_eq(const row *r) { return r->rowid == 503; }
static int p_rowid_in(const row *r) {
  return r->rowid == 3 || r->rowid == 13 || r->rowid == 503 ||
         r->rowid == 3993;
}
static int p_news_recent(const row *r) {
  return p_news(r) && r->hasYear && r->year >= 2020;
}
static int p_news_rowids(const row *r) {
  return p_news(r) && r->rowid <= 73;
}
static int p_none(const row *r) {
  (void)r;
  return 0;
}
static int p_mixed(const row *r) {
  return p_y_in(r) && r->cat != NULL && r->hasScore && r->score >= 0.5;
}

static const struct filter_case {
  const char *zWhere;
  row_pred xPred;
} aFilter[] = {
    {"category = 'news'", p_news},
    {"category != 'news'", p_not_news},
    {"year < 2010", p_y_lt},
    {"year <= 2010", p_y_le},
    {"year > 2010", p_y_gt},
    {"year >= 2010", p_y_ge},
    {"year = 2020", p_y_eq},
    {"year != 2020", p_y_ne},
    {"year IS 2020", p_y_eq},
    {"year IS NOT 2020", p_y_is_not},
    {"score < 0.25", p_s_lt},
    {"category IN ('news', 'arts')", p_cat_in},
    {"year IN (2001, 2003, 2020, 1900)", p_y_in},
    {"category IS NULL", p_cat_null},
    {"category IS NOT NULL", p_cat_notnull},
    {"score IS NULL", p_s_null},
    {"rowid = 503", p_rowid_eq},
    {"rowid IN (3, 13, 503, 999999, 3993)", p_rowid_in},
    {"category = 'news' AND year >= 2020", p_news_recent},
    {"category = 'news' AND rowid IN (3,13,23,33,43,53,63,73)", p_news_rowids},
    {"year IN (2001, 2003, 2020) AND category IS NOT NULL AND score >= 0.5",
     p_mixed},
    {"category = 'nope'", p_none},
    {"rowid = 7", p_none},
    {"year > 2010 AND year < 2005", p_none},
    {"rowid IN (1, 2, 4)", p_none},
};

/* k-NN with a filter, checking the returned aux column too. */
static void check_filtered(sqlite3 *db, const model *p, const char *zWhere,
                           const unsigned char *aUse, const void *q,
                           sqlite3_int64 k) {
  int nMax = p->n + 8, nGot = 0, nRef, rc;
  st_hit *aRef = malloc(sizeof(st_hit) * (size_t)(p->n + 1));
  sqlite3_int64 *aRowid = malloc(sizeof(sqlite3_int64) * (size_t)nMax);
  double *aDist = malloc(sizeof(double) * (size_t)nMax);
  sqlite3_stmt *s = st_prepare(db,
                               "SELECT rowid, distance, body FROM docs WHERE "
                               "embedding MATCH ?1 AND k = ?2 AND %s ORDER BY "
                               "distance", zWhere);
  char zDesc[256];
  sqlite3_bind_blob(s, 1, q, (int)p->sz, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, k);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    row *r;
    if (nGot >= nMax) fail_msg("%s: too many rows", zWhere);
    aRowid[nGot] = sqlite3_column_int64(s, 0);
    aDist[nGot] = sqlite3_column_double(s, 1);
    r = model_find((model *)p, aRowid[nGot]);
    if (r == NULL) fail_msg("%s: unknown rowid %lld", zWhere,
                            (long long)aRowid[nGot]);
    assert_string_equal((const char *)sqlite3_column_text(s, 2), r->body);
    nGot++;
  }
  if (rc != SQLITE_DONE) fail_msg("%s: %s", zWhere, sqlite3_errmsg(db));
  sqlite3_finalize(s);
  nRef = model_rank(p, q, aUse, aRef);
  snprintf(zDesc, sizeof(zDesc), "filter %s, k=%lld", zWhere, (long long)k);
  st_check_knn(aRowid, aDist, nGot, aRef, nRef, k < nRef ? (int)k : nRef, TOL,
               zDesc);
  free(aRef);
  free(aRowid);
  free(aDist);
}

static void test_filters(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  unsigned char *aUse;
  (void)state;
  seed(5);
  model_init(&md, ST_FLOAT, ST_L2, 16);
  create_table(db, "docs", "float[16] distance=l2", 16);
  fill(db, "docs", &md, 400, 3, 10, 2); /* rowids 3, 13, ..., 3993 */
  aUse = malloc((size_t)md.n);
  assert_non_null(aUse);
  for (size_t c = 0; c < sizeof(aFilter) / sizeof(aFilter[0]); c++) {
    int nUse = 0;
    for (int i = 0; i < md.n; i++) {
      aUse[i] = (unsigned char)aFilter[c].xPred(&md.a[i]);
      nUse += aUse[i];
    }
    for (int iq = 0; iq < 2; iq++) {
      unsigned char q[MAXB];
      char *zSql;
      gen_vec(&md, q);
      check_filtered(db, &md, aFilter[c].zWhere, aUse, q, 1);
      check_filtered(db, &md, aFilter[c].zWhere, aUse, q, 10);
      check_filtered(db, &md, aFilter[c].zWhere, aUse, q, 1000);
      /* Without k: ORDER BY distance LIMIT n over the matching rows. */
      zSql = sqlite3_mprintf("SELECT rowid, distance FROM docs WHERE "
                             "embedding MATCH ?1 AND %s ORDER BY distance "
                             "LIMIT 10", aFilter[c].zWhere);
      check_query(db, &md, zSql, q, NULL, 10, 0, aUse, -1, "filter+LIMIT");
      sqlite3_free(zSql);
    }
    /* The same filter as a full scan (no MATCH) counts the same rows. */
    assert_int_equal(st_int(db, "SELECT count(*) FROM docs WHERE %s",
                            aFilter[c].zWhere), nUse);
  }
  /* Bound values in filters, NULL included. */
  {
    unsigned char q[MAXB];
    sqlite3_int64 aRowid[500];
    sqlite3_stmt *s = st_prepare(db, "SELECT rowid FROM docs WHERE embedding "
                                     "MATCH ?1 AND k = 1000 AND year IS ?2");
    int n, nNull = 0;
    gen_vec(&md, q);
    sqlite3_bind_blob(s, 1, q, (int)md.sz, SQLITE_STATIC);
    sqlite3_bind_null(s, 2);
    n = st_collect(s, aRowid, NULL, 500);
    for (int i = 0; i < md.n; i++) nNull += !md.a[i].hasYear;
    assert_int_equal(n, nNull);
    sqlite3_finalize(s);
  }
  free(aUse);
  model_free(&md);
  st_close(db);
}

/* Filters with a collation other than BINARY stay with SQLite (T_rows
** compares with BINARY); typed metadata columns apply their affinity the
** same way in k-NN filters and in SQLite's own evaluation. */
static int p_news_nocase(const row *r) {
  return r->cat && sqlite3_stricmp(r->cat, "news") == 0;
}
static int p_y_2020(const row *r) { return r->hasYear && r->year == 2020; }
static int p_s_ge_half(const row *r) { return r->hasScore && r->score >= 0.5; }

static void test_filter_collation_affinity(void **state) {
  static const struct filter_case aCase[] = {
      {"category = 'NEWS' COLLATE NOCASE", p_news_nocase},
      {"category = 'news'", p_news},
      {"year = '2020'", p_y_2020},
      {"year IN ('2020', '1900')", p_y_2020},
      {"score >= '0.5'", p_s_ge_half},
  };
  sqlite3 *db = st_open(NULL);
  model md;
  unsigned char *aUse;
  (void)state;
  seed(22);
  model_init(&md, ST_FLOAT, ST_L2, 8);
  create_table(db, "docs", "float[8]", 8);
  fill(db, "docs", &md, 200, 1, 1, 0);
  st_exec(db, "UPDATE docs SET category = 'News' WHERE rowid %% 3 = 0 AND "
              "category = 'news'");
  for (int i = 0; i < md.n; i++) {
    if (md.a[i].rowid % 3 == 0 && cat_is(&md.a[i], "news")) {
      md.a[i].cat = "News";
    }
  }
  /* a text year is stored as an integer */
  st_exec(db, "UPDATE docs SET year = '2020' WHERE rowid = 7");
  model_find(&md, 7)->year = 2020;
  model_find(&md, 7)->hasYear = 1;
  {
    char *z = st_text(db, "SELECT typeof(year) FROM docs WHERE rowid = 7");
    assert_string_equal(z, "integer");
    sqlite3_free(z);
  }
  model_verify(db, "docs", &md);
  aUse = malloc((size_t)md.n);
  for (size_t c = 0; c < sizeof(aCase) / sizeof(aCase[0]); c++) {
    unsigned char q[MAXB];
    char *zSql;
    int nUse = 0;
    for (int i = 0; i < md.n; i++) {
      aUse[i] = (unsigned char)aCase[c].xPred(&md.a[i]);
      nUse += aUse[i];
    }
    assert_true(nUse > 0);
    gen_vec(&md, q);
    /* k above the row count: every matching row, in order */
    check_filtered(db, &md, aCase[c].zWhere, aUse, q, 1000);
    if (c > 0) check_filtered(db, &md, aCase[c].zWhere, aUse, q, 5);
    zSql = sqlite3_mprintf("SELECT rowid, distance FROM docs WHERE embedding "
                           "MATCH ?1 AND %s ORDER BY distance LIMIT 7",
                           aCase[c].zWhere);
    check_query(db, &md, zSql, q, NULL, 7, 0, aUse, -1, "collation/affinity");
    sqlite3_free(zSql);
    /* SQLite's own evaluation agrees */
    assert_int_equal(st_int(db, "SELECT count(*) FROM docs WHERE %s",
                            aCase[c].zWhere), nUse);
    assert_int_equal(st_int(db, "SELECT count(*) FROM docs WHERE rowid = 7 "
                                "AND %s", aCase[c].zWhere), aUse[6]);
  }
  free(aUse);
  model_free(&md);
  st_close(db);
}

/* Radius ****************************************************************/

static void test_radius(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  st_hit *aRef;
  unsigned char q[MAXB];
  int nRef, i;
  double r;
  (void)state;
  seed(6);
  /* float l2: a radius in the middle of a clear gap of the ranking. */
  model_init(&md, ST_FLOAT, ST_L2, 16);
  create_table(db, "docs", "float[16]", 8);
  fill(db, "docs", &md, 300, 1, 1, 0);
  aRef = malloc(sizeof(st_hit) * 400);
  assert_non_null(aRef);
  gen_vec(&md, q);
  nRef = model_rank(&md, q, NULL, aRef);
  for (i = 40; i < nRef - 1; i++) {
    if (aRef[i + 1].dist - aRef[i].dist > 1e-3 * aRef[i].dist) break;
  }
  assert_true(i < nRef - 1);
  r = (aRef[i].dist + aRef[i + 1].dist) / 2;
  for (int bLe = 0; bLe < 2; bLe++) {
    char *zNoK = sqlite3_mprintf("SELECT rowid, distance FROM docs WHERE "
                                 "embedding MATCH ?1 AND distance %s ?3 "
                                 "ORDER BY distance", bLe ? "<=" : "<");
    char *zK = sqlite3_mprintf("SELECT rowid, distance FROM docs WHERE "
                               "embedding MATCH ?1 AND k = ?2 AND distance "
                               "%s ?3 ORDER BY distance", bLe ? "<=" : "<");
    check_query(db, &md, zNoK, q, NULL, 0, r, NULL, i + 1, "radius");
    check_query(db, &md, zK, q, NULL, 10, r, NULL, 10, "radius k=10");
    check_query(db, &md, zK, q, NULL, 1000, r, NULL, i + 1, "radius k=1000");
    check_query(db, &md, zNoK, q, NULL, 0, aRef[0].dist / 2, NULL, 0,
                "radius below nearest");
    sqlite3_free(zNoK);
    sqlite3_free(zK);
  }
  /* radius with a metadata filter */
  {
    unsigned char *aUse = malloc((size_t)md.n);
    int nWant = 0;
    for (int j = 0; j < md.n; j++) {
      aUse[j] = (unsigned char)p_news(&md.a[j]);
      if (aUse[j] && st_ref_distance(md.e, md.m, q, md.a[j].vec, md.nDim) < r) {
        nWant++;
      }
    }
    check_query(db, &md,
                "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                "AND distance < ?3 AND category = 'news' ORDER BY distance",
                q, NULL, 0, r, aUse, nWant, "radius+filter");
    free(aUse);
  }
  st_exec(db, "DROP TABLE docs");
  model_free(&md);

  /* int8 l2 and hamming: exact distances, so < and <= differ exactly at a
  ** stored distance. */
  for (int t = 0; t < 2; t++) {
    const char *zNoK[2] = {
        "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 AND "
        "distance < ?3 ORDER BY distance",
        "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 AND "
        "distance <= ?3 ORDER BY distance"};
    const char *zK[2] = {
        "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 AND k = ?2 "
        "AND distance < ?3 ORDER BY distance",
        "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 AND k = ?2 "
        "AND distance <= ?3 ORDER BY distance"};
    int nLt = 0, nLe = 0;
    model_init(&md, t ? ST_BIT : ST_INT8, t ? ST_HAMMING : ST_L2, t ? 32 : 8);
    create_table(db, "docs", t ? "bit[32]" : "int8[8]", 8);
    if (t) {
      fill(db, "docs", &md, 300, 1, 1, 2);
    } else { /* small values: many equal distances */
      sqlite3_stmt *s = prep_insert(db, "INSERT", "docs");
      for (int j = 0; j < 300; j++) {
        row *rr = model_add(&md);
        rr->rowid = j + 1;
        for (int d = 0; d < 8; d++) rr->vec[d] = (unsigned char)(rnd() % 5);
        snprintf(rr->body, sizeof(rr->body), "b");
        bind_row(s, &md, rr, j & 1);
        insert_ok(s);
      }
      sqlite3_finalize(s);
    }
    memcpy(q, md.a[0].vec, md.sz);
    q[0] ^= 1;
    nRef = model_rank(&md, q, NULL, aRef);
    r = aRef[30].dist;
    for (int j = 0; j < nRef; j++) {
      nLt += aRef[j].dist < r;
      nLe += aRef[j].dist <= r;
    }
    assert_true(nLt < nLe); /* the boundary holds rows */
    check_query(db, &md, zNoK[0], q, NULL, 0, r, NULL, nLt, "radius <");
    check_query(db, &md, zNoK[1], q, NULL, 0, r, NULL, nLe, "radius <=");
    check_query(db, &md, zK[0], q, NULL, 5, r, NULL, 5, "radius < k=5");
    check_query(db, &md, zK[1], q, NULL, 500, r, NULL, nLe, "radius <= k");
    check_query(db, &md, zK[0], q, NULL, nLt + 1, r, NULL, nLt, "radius < k");
    st_exec(db, "DROP TABLE docs");
    model_free(&md);
  }
  free(aRef);
  st_close(db);
}

/* Queries without k ******************************************************/

static void test_no_k_limit(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  unsigned char q[MAXB];
  st_hit *aRef;
  sqlite3_int64 aRowid[300];
  double aDist[300];
  int nRef, n;
  (void)state;
  seed(7);
  model_init(&md, ST_FLOAT, ST_COSINE, 16);
  create_table(db, "docs", "float[16] distance=cosine", 8);
  fill(db, "docs", &md, 200, 1000, -3, 2);
  aRef = malloc(sizeof(st_hit) * 256);
  assert_non_null(aRef);
  for (int iq = 0; iq < 3; iq++) {
    gen_vec(&md, q);
    check_query(db, &md,
                "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                "ORDER BY distance LIMIT 10",
                q, NULL, 10, 0, NULL, 10, "LIMIT 10");
    check_query(db, &md,
                "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                "ORDER BY distance LIMIT 1",
                q, NULL, 1, 0, NULL, 1, "LIMIT 1");
    check_query(db, &md,
                "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                "ORDER BY distance LIMIT 500",
                q, NULL, 500, 0, NULL, 200, "LIMIT 500");
    /* every row, in order */
    check_query(db, &md,
                "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                "ORDER BY distance",
                q, NULL, 0, 0, NULL, 200, "no LIMIT");
    check_query(db, &md,
                "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1",
                q, NULL, 0, 0, NULL, 200, "no ORDER BY");
    /* OFFSET: rows 5..14 of the ranking */
    nRef = model_rank(&md, q, NULL, aRef);
    n = run_query(db, &md,
                  "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                  "ORDER BY distance LIMIT 10 OFFSET 5",
                  q, NULL, 0, 0, aRowid, aDist, 300);
    st_check_knn(aRowid, aDist, n, aRef + 5, nRef - 5, 10, TOL, "OFFSET 5");
    n = run_query(db, &md,
                  "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                  "ORDER BY distance LIMIT 0",
                  q, NULL, 0, 0, aRowid, aDist, 300);
    assert_int_equal(n, 0);
    check_query(db, &md,
                "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                "ORDER BY distance, rowid LIMIT 12",
                q, NULL, 12, 0, NULL, 12, "ORDER BY distance, rowid");
    /* Other orders apply LIMIT after sorting every row. */
    n = run_query(db, &md,
                  "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                  "ORDER BY distance DESC LIMIT 3",
                  q, NULL, 0, 0, aRowid, aDist, 300);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
      assert_int_equal(aRowid[i], aRef[nRef - 1 - i].rowid);
      assert_true(fabs(aDist[i] - aRef[nRef - 1 - i].dist) < TOL);
    }
    n = run_query(db, &md,
                  "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 "
                  "ORDER BY rowid LIMIT 4",
                  q, NULL, 0, 0, aRowid, aDist, 300);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++) {
      assert_int_equal(aRowid[i], 1000 - 3 * 199 + 3 * i);
    }
  }
  {
    sqlite3_stmt *s = st_prepare(db, "SELECT count(*) FROM docs WHERE "
                                     "embedding MATCH ?1");
    sqlite3_bind_blob(s, 1, q, (int)md.sz, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 200);
    sqlite3_finalize(s);
  }
  free(aRef);
  model_free(&md);
  st_close(db);
}

/* Writes ****************************************************************/

static void expect_constraint(sqlite3 *db, const char *zSql) {
  int rc = st_try(db, "%s", zSql);
  if ((rc & 0xff) != SQLITE_CONSTRAINT) {
    fail_msg("%s: expected a constraint error, got %d (%s)", zSql, rc,
             sqlite3_errmsg(db));
  }
  assert_non_null(strstr(sqlite3_errmsg(db), "UNIQUE constraint failed"));
}

static void test_update_delete(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  st_snapshot *pSnap;
  sqlite3_stmt *s;
  (void)state;
  seed(8);
  model_init(&md, ST_FLOAT, ST_L2, 8);
  create_table(db, "docs", "float[8]", 8);
  fill(db, "docs", &md, 120, 3, 10, 2); /* 3, 13, ..., 1193 */
  model_verify(db, "docs", &md);

  /* UPDATE of the vector, by rowid; JSON and BLOB. */
  s = st_prepare(db, "UPDATE docs SET embedding = ?1 WHERE rowid = ?2");
  for (int i = 0; i < 12; i++) {
    row *r = model_find(&md, 3 + 10 * (i * 7 % 120));
    gen_vec(&md, r->vec);
    if (i & 1) {
      sqlite3_bind_text(s, 1, vec_json(&md, r->vec), -1, sqlite3_free);
    } else {
      sqlite3_bind_blob(s, 1, r->vec, (int)md.sz, SQLITE_TRANSIENT);
    }
    sqlite3_bind_int64(s, 2, r->rowid);
    insert_ok(s);
    assert_int_equal(sqlite3_changes(db), 1);
  }
  sqlite3_finalize(s);
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_integrity_ok(db, "docs");

  /* UPDATE of metadata through a full scan. */
  st_exec(db, "UPDATE docs SET category = 'moved', year = year + 1 "
              "WHERE year < 2005");
  for (int i = 0; i < md.n; i++) {
    row *r = &md.a[i];
    if (r->hasYear && r->year < 2005) {
      r->cat = "moved";
      r->year++;
    }
  }
  st_exec(db, "UPDATE docs SET body = 'aux ' || rowid WHERE rowid = 23");
  snprintf(model_find(&md, 23)->body, sizeof(md.a[0].body), "aux 23");
  st_exec(db, "UPDATE docs SET score = NULL WHERE rowid IN (33, 43)");
  model_find(&md, 33)->hasScore = 0;
  model_find(&md, 43)->hasScore = 0;
  model_verify(db, "docs", &md);
  {
    unsigned char *aUse = malloc((size_t)md.n);
    unsigned char q[MAXB];
    for (int i = 0; i < md.n; i++) aUse[i] = cat_is(&md.a[i], "moved");
    gen_vec(&md, q);
    check_query(db, &md,
                "SELECT rowid, distance FROM docs WHERE embedding MATCH ?1 AND "
                "k = ?2 AND category = 'moved' ORDER BY distance",
                q, NULL, 1000, 0, aUse, -1, "moved rows");
    free(aUse);
  }

  /* UPDATE of the rowid: the vector moves with it. */
  st_exec(db, "UPDATE docs SET rowid = 100000 WHERE rowid = 13");
  model_find(&md, 13)->rowid = 100000;
  model_verify(db, "docs", &md);
  st_integrity_ok(db, "docs");
  {
    sqlite3_int64 aRowid[2];
    double aDist[2];
    row *r = model_find(&md, 100000);
    int n = st_knn(db, KNN_SQL, r->vec, (int)md.sz, 1, aRowid, aDist, 2);
    assert_int_equal(n, 1);
    assert_int_equal(aRowid[0], 100000);
    assert_true(aDist[0] == 0.0);
  }

  /* A rowid change onto an existing row fails and changes nothing. */
  pSnap = st_snapshot_take(db, "docs");
  expect_constraint(db, "UPDATE docs SET rowid = 23 WHERE rowid = 33");
  st_assert_unchanged(db, "docs", pSnap);
  /* A plain INSERT of an existing rowid fails and changes nothing. */
  expect_constraint(db, "INSERT INTO docs(rowid, embedding) "
                        "VALUES(73, '[1,2,3,4,5,6,7,8]')");
  st_assert_unchanged(db, "docs", pSnap);
  /* ... so does INSERT OR IGNORE, without an error. */
  st_exec(db, "INSERT OR IGNORE INTO docs(rowid, embedding, body) "
              "VALUES(73, '[1,2,3,4,5,6,7,8]', 'x')");
  assert_int_equal(sqlite3_changes(db), 0);
  st_assert_unchanged(db, "docs", pSnap);
  st_snapshot_free(pSnap);
  st_integrity_ok(db, "docs");
  /* ... while OR IGNORE of a new rowid inserts. */
  st_exec(db, "INSERT OR IGNORE INTO docs(rowid, embedding, body) "
              "VALUES(74, '[1,2,3,4,5,6,7,8]', 'ignored-new')");
  {
    row *r = model_add(&md);
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    r->rowid = 74;
    memcpy(r->vec, v, sizeof(v));
    snprintf(r->body, sizeof(r->body), "ignored-new");
  }
  model_verify(db, "docs", &md);

  /* UPDATE OR IGNORE of the rowid onto an existing row skips it. */
  pSnap = st_snapshot_take(db, "docs");
  st_exec(db, "UPDATE OR IGNORE docs SET rowid = 23, body = 'no' "
              "WHERE rowid = 33");
  assert_int_equal(sqlite3_changes(db), 0);
  st_assert_unchanged(db, "docs", pSnap);
  st_snapshot_free(pSnap);

  /* UPDATE OR REPLACE of the rowid onto an existing row replaces it. */
  st_exec(db, "UPDATE OR REPLACE docs SET rowid = 23 WHERE rowid = 33");
  model_del(&md, 23);
  model_find(&md, 33)->rowid = 23;
  model_verify(db, "docs", &md);
  st_integrity_ok(db, "docs");

  /* INSERT OR REPLACE over an existing rowid. */
  {
    row *r = model_find(&md, 53);
    s = prep_insert(db, "INSERT OR REPLACE", "docs");
    gen_vec(&md, r->vec);
    gen_meta(r);
    snprintf(r->body, sizeof(r->body), "replaced");
    bind_row(s, &md, r, 1);
    insert_ok(s);
    sqlite3_finalize(s);
    /* REPLACE INTO is the same */
    r = model_find(&md, 63);
    s = prep_insert(db, "REPLACE", "docs");
    gen_vec(&md, r->vec);
    r->cat = NULL;
    snprintf(r->body, sizeof(r->body), "replaced2");
    bind_row(s, &md, r, 0);
    insert_ok(s);
    sqlite3_finalize(s);
  }
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_integrity_ok(db, "docs");

  /* DELETE by rowid, by scan, and by a missing rowid. */
  st_exec(db, "DELETE FROM docs WHERE rowid = 43");
  model_del(&md, 43);
  st_exec(db, "DELETE FROM docs WHERE rowid = 43");
  assert_int_equal(sqlite3_changes(db), 0);
  st_exec(db, "DELETE FROM docs WHERE year > 2020 OR category IS NULL");
  for (int i = md.n - 1; i >= 0; i--) {
    const row *r = &md.a[i];
    if ((r->hasYear && r->year > 2020) || r->cat == NULL) {
      model_del(&md, r->rowid);
    }
  }
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_integrity_ok(db, "docs");

  /* Writes through a k-NN query: the nearest 3 rows. */
  {
    unsigned char q[MAXB];
    st_hit *aRef = malloc(sizeof(st_hit) * (size_t)md.n);
    gen_vec(&md, q);
    model_rank(&md, q, NULL, aRef);
    s = st_prepare(db, "UPDATE docs SET year = 1999 WHERE embedding MATCH ?1 "
                       "AND k = 3");
    sqlite3_bind_blob(s, 1, q, (int)md.sz, SQLITE_STATIC);
    insert_ok(s);
    sqlite3_finalize(s);
    for (int i = 0; i < 3; i++) {
      row *r = model_find(&md, aRef[i].rowid);
      r->year = 1999;
      r->hasYear = 1;
    }
    model_verify(db, "docs", &md);
    s = st_prepare(db, "DELETE FROM docs WHERE embedding MATCH ?1 AND k = 2");
    sqlite3_bind_blob(s, 1, q, (int)md.sz, SQLITE_STATIC);
    insert_ok(s);
    sqlite3_finalize(s);
    model_del(&md, aRef[0].rowid);
    model_del(&md, aRef[1].rowid);
    model_verify(db, "docs", &md);
    free(aRef);
  }

  /* An omitted rowid is assigned: one more than the largest. */
  st_exec(db, "INSERT INTO docs(embedding, body) VALUES('[0,0,0,0,0,0,0,1]', "
              "'auto')");
  assert_int_equal(sqlite3_last_insert_rowid(db), 100001);
  {
    row *r = model_add(&md);
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    r->rowid = 100001;
    memcpy(r->vec, v, sizeof(v));
    snprintf(r->body, sizeof(r->body), "auto");
  }
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_integrity_ok(db, "docs");
  model_free(&md);
  st_close(db);
}

static void test_delete_all_reclaims_chunks(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  unsigned char q[MAXB];
  sqlite3_int64 aRowid[4];
  double aDist[4];
  (void)state;
  seed(9);
  model_init(&md, ST_FLOAT, ST_IP, 4);
  create_table(db, "docs", "float[4] distance=ip", 8);
  fill(db, "docs", &md, 64, 1, 1, 0);
  assert_int_equal(info_int(db, "docs", "chunks"), 8);
  assert_int_equal(st_int(db, "SELECT count(*) FROM docs_chunks"), 8);
  st_exec(db, "DELETE FROM docs WHERE rowid %% 2 = 0");
  assert_int_equal(info_int(db, "docs", "chunks"), 8);
  st_integrity_ok(db, "docs");
  st_exec(db, "DELETE FROM docs WHERE rowid <= 16"); /* chunks 0 and 1 */
  assert_int_equal(info_int(db, "docs", "chunks"), 6);
  st_integrity_ok(db, "docs");
  st_exec(db, "DELETE FROM docs");
  assert_int_equal(info_int(db, "docs", "rows"), 0);
  assert_int_equal(info_int(db, "docs", "chunks"), 0);
  assert_int_equal(st_int(db, "SELECT count(*) FROM docs_rows"), 0);
  st_integrity_ok(db, "docs");
  gen_vec(&md, q);
  assert_int_equal(st_knn(db, KNN_SQL, q, (int)md.sz, 5, aRowid, aDist, 4), 0);
  assert_int_equal(st_int(db, "SELECT count(*) FROM docs"), 0);
  /* The table is usable again. */
  md.n = 0;
  fill(db, "docs", &md, 3, 0, 0, 1);
  assert_int_equal(info_int(db, "docs", "chunks"), 1);
  assert_int_equal(md.a[0].rowid, 1);
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_integrity_ok(db, "docs");
  model_free(&md);
  st_close(db);
}

/* Reads by rowid and full scans ******************************************/

static void test_point_lookup_and_scan(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  sqlite3_stmt *s;
  (void)state;
  seed(10);
  model_init(&md, ST_INT8, ST_COSINE, 12);
  create_table(db, "docs", "int8[12] distance=cosine", 16);
  fill(db, "docs", &md, 100, 900, -7, 2); /* rowids inserted descending */
  s = st_prepare(db, "SELECT embedding, category, year, body, rowid FROM docs "
                     "WHERE rowid = ?");
  for (int i = 0; i < md.n; i += 7) {
    const row *r = &md.a[i];
    sqlite3_bind_int64(s, 1, r->rowid);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_bytes(s, 0), (int)md.sz);
    assert_memory_equal(sqlite3_column_blob(s, 0), r->vec, md.sz);
    if (r->cat) assert_string_equal(sqlite3_column_text(s, 1), r->cat);
    else assert_int_equal(sqlite3_column_type(s, 1), SQLITE_NULL);
    assert_string_equal(sqlite3_column_text(s, 3), r->body);
    assert_int_equal(sqlite3_column_int64(s, 4), r->rowid);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_reset(s);
  }
  /* missing rowid, and a rowid given as text */
  sqlite3_bind_int64(s, 1, 901);
  assert_int_equal(sqlite3_step(s), SQLITE_DONE);
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, "893", -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int64(s, 4), 893);
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, "abc", -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(s), SQLITE_DONE);
  sqlite3_reset(s);
  /* a real that is an integer finds the row, as in an ordinary table */
  sqlite3_bind_double(s, 1, 893.0);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int64(s, 4), 893);
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, "893.0", -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  sqlite3_reset(s);
  sqlite3_bind_double(s, 1, 893.5);
  assert_int_equal(sqlite3_step(s), SQLITE_DONE);
  sqlite3_reset(s);
  sqlite3_bind_double(s, 1, 1e300);
  assert_int_equal(sqlite3_step(s), SQLITE_DONE);
  sqlite3_reset(s);
  sqlite3_bind_double(s, 1, -9223372036854775808.0);
  assert_int_equal(sqlite3_step(s), SQLITE_DONE);
  sqlite3_reset(s);
  sqlite3_bind_null(s, 1);
  assert_int_equal(sqlite3_step(s), SQLITE_DONE);
  sqlite3_finalize(s);
  assert_int_equal(st_int(db, "SELECT count(*) FROM docs WHERE rowid = 893.0 "
                              "AND embedding MATCH '[1,1,1,1,1,1,1,1,1,1,1,1]' "
                              "AND k = 3"), 1);
  st_exec(db, "UPDATE docs SET body = 'via 893.0' WHERE rowid = 893.0");
  snprintf(model_find(&md, 893)->body, sizeof(md.a[0].body), "via 893.0");
  /* full scans: rowid order, stored vectors, every column */
  model_verify(db, "docs", &md);
  assert_int_equal(st_int(db, "SELECT count(*) FROM docs"), 100);
  assert_int_equal(st_int(db, "SELECT min(rowid) FROM docs"), 900 - 7 * 99);
  {
    char *z = st_text(db, "SELECT annex_json(annex_int8(embedding)) FROM docs "
                          "WHERE rowid = 900");
    char *zWant = vec_json(&md, md.a[0].vec);
    char *zNoSpace = sqlite3_mprintf("%s", zWant);
    int j = 0;
    for (int i = 0; zWant[i]; i++) {
      if (zWant[i] != ' ') zNoSpace[j++] = zWant[i];
    }
    zNoSpace[j] = 0;
    assert_string_equal(z, zNoSpace);
    sqlite3_free(z);
    sqlite3_free(zWant);
    sqlite3_free(zNoSpace);
  }
  /* A self join reads two cursors of one table at once. */
  assert_int_equal(st_int(db, "SELECT count(*) FROM docs a JOIN docs b ON "
                              "a.rowid = b.rowid AND a.embedding = "
                              "b.embedding"), 100);
  model_free(&md);
  st_close(db);
}

/* Persistence ***********************************************************/

static void test_close_reopen(void **state) {
  char *zDir = st_tempdir();
  char zPath[4096];
  sqlite3 *db;
  model md;
  st_snapshot *pSnap;
  unsigned char q[MAXB];
  (void)state;
  seed(11);
  snprintf(zPath, sizeof(zPath), "%s/test.db", zDir);
  db = open_file(zPath);
  model_init(&md, ST_FLOAT, ST_COSINE, 16);
  create_table(db, "docs", "float[16] distance=cosine", 8);
  fill(db, "docs", &md, 150, 1, 2, 2);
  st_exec(db, "DELETE FROM docs WHERE rowid BETWEEN 20 AND 40");
  for (int i = md.n - 1; i >= 0; i--) {
    if (md.a[i].rowid >= 20 && md.a[i].rowid <= 40) {
      model_del(&md, md.a[i].rowid);
    }
  }
  pSnap = st_snapshot_take(db, "docs");
  st_close(db);

  db = open_file(zPath);
  st_assert_unchanged(db, "docs", pSnap);
  st_snapshot_free(pSnap);
  assert_int_equal(info_int(db, "docs", "dimensions"), 16);
  assert_int_equal(info_int(db, "docs", "chunk_size"), 8);
  assert_int_equal(info_int(db, "docs", "rows"), md.n);
  assert_int_equal(info_int(db, "docs", "slots"), 150);
  {
    char *z = st_text(db, "SELECT group_concat(key || '=' || value, ' ') FROM "
                          "annex_info('docs') WHERE key IN ('metric', "
                          "'element', 'index')");
    assert_non_null(strstr(z, "metric=cosine"));
    assert_non_null(strstr(z, "element=float"));
    assert_non_null(strstr(z, "index=flat"));
    sqlite3_free(z);
  }
  model_verify(db, "docs", &md);
  st_integrity_ok(db, "docs");
  for (int i = 0; i < 4; i++) {
    gen_vec(&md, q);
    check_query(db, &md, KNN_SQL, q, NULL, 10, 0, NULL, -1, "reopened");
    check_query(db, &md, KNN_SQL, q, NULL, 500, 0, NULL, -1, "reopened");
  }
  /* writes after reopening continue the slot sequence */
  fill(db, "docs", &md, 20, 0, 0, 0);
  assert_int_equal(info_int(db, "docs", "slots"), 170);
  model_verify(db, "docs", &md);
  st_integrity_ok(db, "docs");
  st_close(db);

  /* A newer format version is refused with a clear message. */
  db = open_file(zPath);
  st_exec(db, "UPDATE docs_config SET value = 99 WHERE key = 'format'");
  st_close(db);
  db = open_file(zPath);
  st_expect_error(db, 0, "format version 99", "SELECT count(*) FROM docs");
  st_close(db);
  model_free(&md);
  st_rmdir(zDir);
  free(zDir);
}

/* Transactions **********************************************************/

static void test_bulk_insert_rollback(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  st_snapshot *pSnap;
  sqlite3_stmt *s;
  sqlite3_int64 nSlots, nChunks, aRowid[4];
  double aDist[4];
  row extra;
  (void)state;
  seed(12);
  model_init(&md, ST_FLOAT, ST_L2, 8);
  create_table(db, "docs", "float[8]", 16);
  fill(db, "docs", &md, 50, 1, 1, 0);
  pSnap = st_snapshot_take(db, "docs");
  nSlots = info_int(db, "docs", "slots");
  nChunks = info_int(db, "docs", "chunks");

  st_exec(db, "BEGIN");
  st_exec(db, "DELETE FROM docs WHERE rowid <= 5");
  st_exec(db, "UPDATE docs SET embedding = '[9,9,9,9,9,9,9,9]', year = 1 "
              "WHERE rowid BETWEEN 6 AND 10");
  s = prep_insert(db, "INSERT", "docs");
  for (int i = 0; i < 10000; i++) {
    row r;
    memset(&r, 0, sizeof(r));
    r.rowid = i % 3 == 0 ? 0 : 1000 + i;
    gen_vec(&md, r.vec);
    gen_meta(&r);
    snprintf(r.body, sizeof(r.body), "bulk");
    bind_row(s, &md, &r, 0);
    insert_ok(s);
  }
  sqlite3_finalize(s);
  assert_int_equal(info_int(db, "docs", "rows"), 10045);
  st_exec(db, "ROLLBACK");

  st_assert_unchanged(db, "docs", pSnap);
  st_snapshot_free(pSnap);
  st_integrity_ok(db, "docs");
  assert_int_equal(info_int(db, "docs", "rows"), 50);
  assert_int_equal(info_int(db, "docs", "slots"), nSlots);
  assert_int_equal(info_int(db, "docs", "chunks"), nChunks);
  model_verify(db, "docs", &md);

  /* The next insert lands in the next slot and is found. */
  memset(&extra, 0, sizeof(extra));
  extra.rowid = 0;
  gen_vec(&md, extra.vec);
  snprintf(extra.body, sizeof(extra.body), "after");
  s = prep_insert(db, "INSERT", "docs");
  bind_row(s, &md, &extra, 1);
  insert_ok(s);
  sqlite3_finalize(s);
  assert_int_equal(sqlite3_last_insert_rowid(db), 51);
  extra.rowid = 51;
  *model_add(&md) = extra;
  assert_int_equal(st_int(db, "SELECT slot FROM docs_rows WHERE rowid = 51"),
                   nSlots);
  assert_int_equal(st_knn(db, KNN_SQL, extra.vec, (int)md.sz, 1, aRowid, aDist,
                          4), 1);
  assert_int_equal(aRowid[0], 51);
  assert_true(aDist[0] == 0.0);
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_integrity_ok(db, "docs");
  model_free(&md);
  st_close(db);
}

static void test_savepoints(void **state) {
  sqlite3 *db = st_open(NULL);
  model md, mBefore;
  (void)state;
  seed(13);
  model_init(&md, ST_INT8, ST_L2, 8);
  create_table(db, "docs", "int8[8]", 8);
  fill(db, "docs", &md, 5, 1, 1, 0);

  st_exec(db, "BEGIN");
  fill(db, "docs", &md, 20, 100, 1, 2); /* A: 100..119 */
  st_exec(db, "SAVEPOINT s1");
  mBefore = model_copy(&md);
  fill(db, "docs", &md, 20, 200, 1, 2); /* B: rolled back */
  st_exec(db, "DELETE FROM docs WHERE rowid IN (100, 101)");
  st_exec(db, "ROLLBACK TO s1");
  model_free(&md);
  md = mBefore;
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md); /* inside the transaction */
  st_integrity_ok(db, "docs");
  fill(db, "docs", &md, 20, 300, 1, 2); /* C: 300..319 */
  st_exec(db, "RELEASE s1");
  st_exec(db, "SAVEPOINT s2");
  st_exec(db, "DELETE FROM docs WHERE rowid BETWEEN 100 AND 104");
  st_exec(db, "UPDATE docs SET embedding = '[1,1,1,1,1,1,1,1]' "
              "WHERE rowid BETWEEN 300 AND 302");
  st_exec(db, "SAVEPOINT s3");
  fill(db, "docs", &md, 9, 400, 1, 0); /* D: released into s2, rolled back */
  st_exec(db, "RELEASE s3");
  st_exec(db, "ROLLBACK TO s2");
  md.n -= 9;
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_exec(db, "DELETE FROM docs WHERE rowid IN (110, 111)");
  model_del(&md, 110);
  model_del(&md, 111);
  fill(db, "docs", &md, 3, 500, 1, 1);
  st_exec(db, "RELEASE s2");
  st_exec(db, "COMMIT");
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_integrity_ok(db, "docs");

  /* A savepoint that opens the transaction, rolled back entirely. */
  {
    st_snapshot *pSnap = st_snapshot_take(db, "docs");
    model m2 = model_copy(&md);
    st_exec(db, "SAVEPOINT outer");
    fill(db, "docs", &m2, 30, 1000, 1, 0);
    st_exec(db, "ROLLBACK TO outer");
    st_exec(db, "RELEASE outer");
    st_assert_unchanged(db, "docs", pSnap);
    st_snapshot_free(pSnap);
    model_free(&m2);
  }
  fill(db, "docs", &md, 10, 0, 0, 0);
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_integrity_ok(db, "docs");
  model_free(&md);
  st_close(db);
}

/* INSERT ... SELECT whose 5th row fails leaves the table as it was. */
static void test_statement_rollback(void **state) {
  static const char *azBad[] = {
      /* 5th vector has the wrong dimension: annex refuses it */
      "CASE WHEN i = 5 THEN '[1,2,3]' ELSE json_array(i, 0, 0, 1) END",
      /* 5th vector fails in a function, before annex sees the row */
      "CASE WHEN i = 5 THEN annex_vector('[oops') ELSE json_array(i, 0, 0, 1) "
      "END",
      /* 5th vector holds NaN */
      "CASE WHEN i = 5 THEN x'0000c07f000000000000000000000000' ELSE "
      "json_array(i, 0, 0, 1) END",
  };
  static const char *azRowid[] = {
      "9000 + i",
      "CASE WHEN i = 5 THEN 3 ELSE 9000 + i END", /* 5th rowid exists */
  };
  sqlite3 *db = st_open(NULL);
  model md;
  (void)state;
  seed(14);
  model_init(&md, ST_FLOAT, ST_L2, 4);
  create_table(db, "docs", "float[4]", 8);
  fill(db, "docs", &md, 6, 1, 1, 0); /* the 3rd row of the statement opens
                                     ** a new chunk */
  /* bTxn 0: autocommit; 1: in a transaction that wrote the table before;
  ** 2: in a transaction where the failing statement writes it first. */
  for (int bTxn = 0; bTxn < 3; bTxn++) {
    for (size_t iRowid = 0; iRowid < 2; iRowid++) {
      for (size_t iBad = 0; iBad < 3; iBad++) {
        st_snapshot *pSnap;
        sqlite3_int64 nSlots;
        int rc;
        if (iRowid == 1 && iBad > 0) continue;
        if (bTxn) st_exec(db, "BEGIN");
        if (bTxn == 1) fill(db, "docs", &md, 1, 0, 0, 0);
        pSnap = st_snapshot_take(db, "docs");
        nSlots = info_int(db, "docs", "slots");
        rc = st_try(db,
                    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                    "FROM s WHERE i < 8) INSERT INTO docs(rowid, embedding, "
                    "body) SELECT %s, %s, 'stmt' FROM s",
                    azRowid[iRowid], iRowid ? "json_array(i, 0, 0, 1)"
                                            : azBad[iBad]);
        if (rc == SQLITE_OK) {
          fail_msg("INSERT ... SELECT with a bad 5th row succeeded (case "
                   "%d/%d/%d)", bTxn, (int)iRowid, (int)iBad);
        }
        st_assert_unchanged(db, "docs", pSnap);
        st_snapshot_free(pSnap);
        assert_int_equal(info_int(db, "docs", "slots"), nSlots);
        st_integrity_ok(db, "docs");
        /* the table takes writes again, in the same transaction */
        fill(db, "docs", &md, 5, 0, 0, 2);
        st_integrity_ok(db, "docs");
        if (bTxn) st_exec(db, "COMMIT");
        model_verify(db, "docs", &md);
        model_knn_spot(db, "docs", &md);
      }
    }
  }
  /* INSERT ... SELECT from the table itself, by scan and by k-NN. */
  {
    int n0 = md.n;
    sqlite3_int64 iMax = st_int(db, "SELECT max(rowid) FROM docs");
    st_exec(db, "INSERT INTO docs(embedding, category, body) SELECT "
                "embedding, 'copy', 'copy' FROM docs WHERE rowid <= 3");
    st_exec(db, "INSERT INTO docs(embedding, category, body) SELECT "
                "embedding, 'knn', 'knn' FROM docs WHERE embedding MATCH "
                "'[0,0,0,1]' AND k = 4");
    assert_int_equal(st_int(db, "SELECT count(*) FROM docs"), n0 + 7);
    assert_int_equal(st_int(db, "SELECT count(*) FROM docs a, docs b WHERE "
                                "a.rowid <= 3 AND b.category = 'copy' AND "
                                "a.embedding = b.embedding"), 3);
    assert_int_equal(st_int(db, "SELECT max(rowid) FROM docs"), iMax + 7);
    st_integrity_ok(db, "docs");
    st_exec(db, "DELETE FROM docs WHERE category IN ('copy', 'knn')");
    model_verify(db, "docs", &md);
  }

  /* A multi-row UPDATE whose 5th row fails changes nothing either. */
  {
    st_snapshot *pSnap = st_snapshot_take(db, "docs");
    st_exec(db, "BEGIN");
    st_expect_error(db, 0, "dimension mismatch",
                    "UPDATE docs SET embedding = CASE WHEN rowid = 5 THEN "
                    "'[1]' ELSE '[7,7,7,7]' END, body = 'upd'");
    st_exec(db, "COMMIT");
    st_assert_unchanged(db, "docs", pSnap);
    st_snapshot_free(pSnap);
    st_integrity_ok(db, "docs");
  }
  model_free(&md);
  st_close(db);
}

/* A failing OR REPLACE must not delete the row it would replace, also in an
** explicit transaction (where a single-row statement has no statement
** journal to undo it). */
static void test_failed_replace_keeps_row(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  st_snapshot *pSnap;
  (void)state;
  seed(23);
  model_init(&md, ST_FLOAT, ST_L2, 4);
  create_table(db, "docs", "float[4]", 8);
  fill(db, "docs", &md, 16, 1, 1, 0); /* two full chunks */
  pSnap = st_snapshot_take(db, "docs");
  st_exec(db, "BEGIN");
  st_expect_error(db, SQLITE_ERROR, "the vector has 2 dimensions",
                  "INSERT OR REPLACE INTO docs(rowid, embedding) "
                  "VALUES(3, '[1,2]')");
  st_expect_error(db, SQLITE_ERROR, "NaN",
                  "REPLACE INTO docs(rowid, embedding) "
                  "VALUES(9, x'0000c07f000000000000000000000000')");
  st_expect_error(db, SQLITE_ERROR, "malformed JSON",
                  "UPDATE OR REPLACE docs SET rowid = 2, embedding = '[1' "
                  "WHERE rowid = 1");
  st_expect_error(db, SQLITE_ERROR, "got NULL",
                  "UPDATE OR REPLACE docs SET rowid = 12, embedding = NULL "
                  "WHERE rowid = 11");
  st_assert_unchanged(db, "docs", pSnap);
  st_integrity_ok(db, "docs");
  st_exec(db, "COMMIT");
  st_assert_unchanged(db, "docs", pSnap);
  st_integrity_ok(db, "docs");
  assert_int_equal(info_int(db, "docs", "chunks"), 2);
  /* a good REPLACE of the same rows works */
  st_exec(db, "BEGIN");
  st_exec(db, "INSERT OR REPLACE INTO docs(rowid, embedding, body) "
              "VALUES(3, '[1,2,3,4]', 'r')");
  st_exec(db, "UPDATE OR REPLACE docs SET rowid = 2 WHERE rowid = 1");
  st_exec(db, "COMMIT");
  {
    float v[4] = {1, 2, 3, 4};
    row *r = model_find(&md, 3);
    memcpy(r->vec, v, sizeof(v));
    r->cat = NULL;
    r->hasYear = r->hasScore = 0;
    snprintf(r->body, sizeof(r->body), "r");
    model_del(&md, 2);
    model_find(&md, 1)->rowid = 2;
  }
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  st_integrity_ok(db, "docs");
  st_snapshot_free(pSnap);
  model_free(&md);
  st_close(db);
}

/* DROP, RENAME and CREATE rolled back with their transaction. */
static void test_schema_changes_rolled_back(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  st_snapshot *pSnap;
  (void)state;
  seed(24);
  model_init(&md, ST_FLOAT, ST_L2, 4);
  create_table(db, "docs", "float[4]", 8);
  fill(db, "docs", &md, 20, 1, 1, 0);
  pSnap = st_snapshot_take(db, "docs");
  st_exec(db, "BEGIN; DROP TABLE docs; ROLLBACK");
  st_assert_unchanged(db, "docs", pSnap);
  st_exec(db, "BEGIN; ALTER TABLE docs RENAME TO d2; "
              "INSERT INTO d2(embedding) VALUES('[1,1,1,1]'); ROLLBACK");
  assert_int_equal(count_shadow(db, "d2"), 0);
  assert_int_equal(count_shadow(db, "docs"), 4);
  st_assert_unchanged(db, "docs", pSnap);
  st_exec(db, "BEGIN; CREATE VIRTUAL TABLE t3 USING annex(e int8[2]); "
              "INSERT INTO t3(e) VALUES('[1,2]'); ROLLBACK");
  assert_int_equal(count_shadow(db, "t3"), 0);
  model_verify(db, "docs", &md);
  model_knn_spot(db, "docs", &md);
  fill(db, "docs", &md, 5, 0, 0, 1);
  model_verify(db, "docs", &md);
  st_integrity_ok(db, "docs");
  st_snapshot_free(pSnap);
  model_free(&md);
  st_close(db);
}

/* Table names that need quoting, through every path. */
static void test_quoted_table_names(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  unsigned char q[MAXB];
  char *zSql;
  (void)state;
  seed(25);
  model_init(&md, ST_FLOAT, ST_L2, 4);
  create_table(db, "my \"odd\" docs", "float[4]", 8);
  fill(db, "my \"odd\" docs", &md, 30, 1, 1, 2);
  model_verify(db, "my \"odd\" docs", &md);
  st_integrity_ok(db, "my \"odd\" docs");
  assert_int_equal(info_int(db, "my \"odd\" docs", "rows"), 30);
  st_exec(db, "ALTER TABLE \"my \"\"odd\"\" docs\" RENAME TO \"it's\"");
  assert_int_equal(count_shadow(db, "it's"), 4);
  model_verify(db, "it's", &md);
  gen_vec(&md, q);
  zSql = sqlite3_mprintf("SELECT rowid, distance FROM \"it's\" WHERE "
                         "embedding MATCH ?1 AND k = ?2 AND category IS NOT "
                         "NULL ORDER BY distance");
  {
    unsigned char aUse[64];
    for (int i = 0; i < md.n; i++) aUse[i] = md.a[i].cat != NULL;
    check_query(db, &md, zSql, q, NULL, 5, 0, aUse, -1, "quoted");
  }
  sqlite3_free(zSql);
  st_exec(db, "DELETE FROM \"it's\" WHERE rowid <= 8");
  assert_int_equal(info_int(db, "it's", "chunks"), 3);
  st_integrity_ok(db, "it's");
  st_exec(db, "DROP TABLE \"it's\"");
  assert_int_equal(st_int(db, "SELECT count(*) FROM sqlite_master"), 0);
  model_free(&md);
  st_close(db);
}

/* Cosine distance with zero vectors is 1, in both element types. */
static void test_cosine_zero_vectors(void **state) {
  sqlite3 *db = st_open(NULL);
  (void)state;
  seed(26);
  for (int t = 0; t < 2; t++) {
    model md;
    unsigned char q[MAXB];
    row *r;
    sqlite3_stmt *s;
    model_init(&md, t ? ST_INT8 : ST_FLOAT, ST_COSINE, 8);
    create_table(db, "docs", t ? "int8[8] distance=cosine"
                               : "float[8] distance=cosine", 8);
    fill(db, "docs", &md, 30, 1, 1, 0);
    s = prep_insert(db, "INSERT", "docs");
    r = model_add(&md);
    r->rowid = 100; /* all zero */
    snprintf(r->body, sizeof(r->body), "zero");
    bind_row(s, &md, r, 1);
    insert_ok(s);
    sqlite3_finalize(s);
    gen_vec(&md, q);
    check_query(db, &md, KNN_SQL, q, NULL, 31, 0, NULL, -1, "cosine, zero row");
    memset(q, 0, sizeof(q));
    check_query(db, &md, KNN_SQL, q, NULL, 31, 0, NULL, -1, "zero query");
    st_exec(db, "DROP TABLE docs");
    model_free(&md);
  }
  st_close(db);
}

static void test_second_connection(void **state) {
  char *zDir = st_tempdir();
  char zPath[4096];
  sqlite3 *a, *b;
  model md;
  row x, y;
  sqlite3_int64 aRowid[4];
  double aDist[4];
  sqlite3_stmt *s;
  (void)state;
  seed(15);
  snprintf(zPath, sizeof(zPath), "%s/two.db", zDir);
  a = open_file(zPath);
  sqlite3_busy_timeout(a, 5000);
  assert_int_equal(st_int(a, "PRAGMA journal_mode = WAL"), 0);
  model_init(&md, ST_FLOAT, ST_L2, 8);
  create_table(a, "docs", "float[8]", 8);
  fill(a, "docs", &md, 30, 1, 1, 0);
  b = open_file(zPath);
  sqlite3_busy_timeout(b, 5000);
  model_verify(b, "docs", &md);
  model_knn_spot(b, "docs", &md);

  /* An uncommitted write of a is invisible to b; committed, it shows. */
  memset(&x, 0, sizeof(x));
  x.rowid = 500;
  gen_vec(&md, x.vec);
  snprintf(x.body, sizeof(x.body), "x");
  st_exec(a, "BEGIN");
  s = prep_insert(a, "INSERT", "docs");
  bind_row(s, &md, &x, 0);
  insert_ok(s);
  sqlite3_finalize(s);
  st_exec(a, "DELETE FROM docs WHERE rowid = 1");
  assert_int_equal(st_knn(b, KNN_SQL, x.vec, (int)md.sz, 1, aRowid, aDist, 4),
                   1);
  assert_int_not_equal(aRowid[0], 500);
  assert_int_equal(info_int(b, "docs", "rows"), 30);
  model_verify(b, "docs", &md);
  st_exec(a, "COMMIT");
  *model_add(&md) = x;
  model_del(&md, 1);
  assert_int_equal(st_knn(b, KNN_SQL, x.vec, (int)md.sz, 1, aRowid, aDist, 4),
                   1);
  assert_int_equal(aRowid[0], 500);
  assert_true(aDist[0] == 0.0);
  model_verify(b, "docs", &md);
  model_knn_spot(b, "docs", &md);

  /* b writes (new chunks included); a sees it. */
  fill(b, "docs", &md, 20, 0, 0, 1);
  memset(&y, 0, sizeof(y));
  y.rowid = 600;
  gen_vec(&md, y.vec);
  snprintf(y.body, sizeof(y.body), "y");
  s = prep_insert(b, "INSERT", "docs");
  bind_row(s, &md, &y, 1);
  insert_ok(s);
  sqlite3_finalize(s);
  *model_add(&md) = y;
  model_verify(a, "docs", &md);
  model_knn_spot(a, "docs", &md);
  /* and a writes again after b did (its slot counter must not be stale) */
  fill(a, "docs", &md, 12, 0, 0, 0);
  model_verify(b, "docs", &md);
  st_integrity_ok(a, "docs");
  st_integrity_ok(b, "docs");
  st_close(b);
  st_close(a);
  model_free(&md);
  st_rmdir(zDir);
  free(zDir);
}

/* Bad input *************************************************************/

static void bind_floats(sqlite3_stmt *s, int i, const float *a, int n) {
  sqlite3_bind_blob(s, i, a, n * 4, SQLITE_TRANSIENT);
}

static void test_bad_vectors(void **state) {
  static const struct {
    const char *zVec;  /* SQL expression of the vector */
    const char *zMsg;  /* expected part of the message */
  } aFloat[] = {
      {"'[1,2,3]'", "the vector has 3 dimensions, the column expects 4"},
      {"'[1,2,3,4,5]'", "the vector has 5 dimensions, the column expects 4"},
      {"x'000000000000000000000000'",
       "the vector has 3 dimensions, the column expects 4"},
      {"x'0000c07f000000000000000000000000'", "NaN"},
      {"x'000000000000807f0000000000000000'", "infinite"},
      {"x'00000000000000000000000000008000ff'", "got 17 bytes"},
      {"x'000000000000000000000000000080'", "expects a BLOB of 16 bytes"},
      {"'[1e999, 0, 0, 0]'", "out of float32 range"},
      {"'[1e39, 0, 0, 0]'", "out of float32 range"},
      {"'[-1e999, 0, 0, 0]'", "out of float32 range"},
      {"'[1,2,3'", "malformed JSON"},
      {"'[1,,2,3]'", "malformed JSON"},
      {"'[1,2,3,4]x'", "malformed JSON"},
      {"'[[1],2,3,4]'", "malformed JSON"},
      {"'{\"a\": 1}'", "malformed JSON"},
      {"'[1,2,nan,4]'", "malformed JSON"},
      {"'[1,2,\"3\",4]'", "malformed JSON"},
      {"'abc'", "malformed JSON"},
      {"''", "malformed JSON"},
      {"'[]'", "the vector has 0 dimensions"},
      {"NULL", "got NULL"},
      {"42", "got an integer"},
      {"4.5", "got a real number"},
      {"annex_int8('[1,2,3,4]')", "holds float vectors, got a int8 vector"},
      {"annex_bit('[1,0,1,0,1,0,1,0]')", "got a bit vector"},
  };
  static const struct {
    const char *zVec;
    const char *zMsg;
  } aInt8[] = {
      {"'[1,2,3]'", "has 3 dimensions, the column expects 4"},
      {"'[1,2,3,200]'", "expected an integer from -128 to 127"},
      {"'[1,2,3,-129]'", "expected an integer from -128 to 127"},
      {"'[1,2,3,1.5]'", "expected an integer from -128 to 127"},
      {"x'0102030405'", "int8[4] column embedding expects a BLOB of 4 bytes, "
                        "got 5 bytes"},
      {"annex_vector('[1,2,3,4]')", "holds int8 vectors, got a float vector"},
      {"'[1,2,3'", "malformed JSON"},
  };
  static const struct {
    const char *zVec;
    const char *zMsg;
  } aBit[] = {
      {"'[1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,2]'", "expected 0 or 1"},
      {"'[1,0,1,0,1,0,1,0]'", "has 8 dimensions, the column expects 16"},
      {"x'010203'", "bit[16] column embedding expects a BLOB of 2 bytes, got "
                    "3 bytes"},
      {"annex_vector('[1,2,3,4]')", "holds bit vectors, got a float vector"},
      {"annex_int8('[1,2]')", "holds bit vectors, got a int8 vector"},
  };
  sqlite3 *db = st_open(NULL);
  model mf, mi, mb;
  st_snapshot *pf, *pi, *pb;
  (void)state;
  seed(16);
  model_init(&mf, ST_FLOAT, ST_L2, 4);
  model_init(&mi, ST_INT8, ST_L2, 4);
  model_init(&mb, ST_BIT, ST_HAMMING, 16);
  create_table(db, "f", "float[4]", 8);
  create_table(db, "i", "int8[4]", 8);
  create_table(db, "b", "bit[16]", 8);
  fill(db, "f", &mf, 20, 1, 1, 0);
  fill(db, "i", &mi, 20, 1, 1, 0);
  fill(db, "b", &mb, 20, 1, 1, 0);
  pf = st_snapshot_take(db, "f");
  pi = st_snapshot_take(db, "i");
  pb = st_snapshot_take(db, "b");
  for (size_t i = 0; i < sizeof(aFloat) / sizeof(aFloat[0]); i++) {
    st_expect_error(db, SQLITE_ERROR, aFloat[i].zMsg,
                    "INSERT INTO f(rowid, embedding) VALUES(100, %s)",
                    aFloat[i].zVec);
    st_expect_error(db, SQLITE_ERROR, aFloat[i].zMsg,
                    "INSERT INTO f(embedding) VALUES(%s)", aFloat[i].zVec);
    st_expect_error(db, SQLITE_ERROR, aFloat[i].zMsg,
                    "UPDATE f SET embedding = %s WHERE rowid = 3",
                    aFloat[i].zVec);
    st_expect_error(db, SQLITE_ERROR, aFloat[i].zMsg,
                    "INSERT OR REPLACE INTO f(rowid, embedding) VALUES(3, %s)",
                    aFloat[i].zVec);
    st_expect_error(db, SQLITE_ERROR, aFloat[i].zMsg,
                    "SELECT rowid FROM f WHERE embedding MATCH %s AND k = 3",
                    aFloat[i].zVec);
    st_assert_unchanged(db, "f", pf);
  }
  for (size_t i = 0; i < sizeof(aInt8) / sizeof(aInt8[0]); i++) {
    st_expect_error(db, SQLITE_ERROR, aInt8[i].zMsg,
                    "INSERT INTO i(rowid, embedding) VALUES(100, %s)",
                    aInt8[i].zVec);
    st_expect_error(db, SQLITE_ERROR, aInt8[i].zMsg,
                    "UPDATE i SET embedding = %s WHERE rowid = 3",
                    aInt8[i].zVec);
    st_expect_error(db, SQLITE_ERROR, aInt8[i].zMsg,
                    "SELECT rowid FROM i WHERE embedding MATCH %s AND k = 3",
                    aInt8[i].zVec);
    st_assert_unchanged(db, "i", pi);
  }
  for (size_t i = 0; i < sizeof(aBit) / sizeof(aBit[0]); i++) {
    st_expect_error(db, SQLITE_ERROR, aBit[i].zMsg,
                    "INSERT INTO b(rowid, embedding) VALUES(100, %s)",
                    aBit[i].zVec);
    st_expect_error(db, SQLITE_ERROR, aBit[i].zMsg,
                    "UPDATE b SET embedding = %s WHERE rowid = 3",
                    aBit[i].zVec);
    st_assert_unchanged(db, "b", pb);
  }
  /* Bound BLOBs with NaN and infinity. */
  {
    float aNan[4] = {0, 1, 2, NAN}, aInf[4] = {0, -INFINITY, 2, 3};
    sqlite3_stmt *s = st_prepare(db, "INSERT INTO f(rowid, embedding) "
                                     "VALUES(100, ?)");
    bind_floats(s, 1, aNan, 4);
    st_expect_stmt_error(s, SQLITE_ERROR, "vector element 3 is NaN");
    bind_floats(s, 1, aInf, 4);
    st_expect_stmt_error(s, SQLITE_ERROR, "vector element 1 is infinite");
    sqlite3_finalize(s);
    st_assert_unchanged(db, "f", pf);
  }
  /* The right element types go in, through the functions too. */
  st_exec(db, "INSERT INTO f(rowid, embedding) VALUES(100, "
              "annex_vector('[1,2,3,4]'))");
  st_exec(db, "INSERT INTO i(rowid, embedding) VALUES(100, "
              "annex_int8('[1,2,3,-4]'))");
  st_exec(db, "INSERT INTO b(rowid, embedding) VALUES(100, "
              "annex_bit('[1,0,0,0,0,0,0,0,1,1,0,0,0,0,0,0]'))");
  assert_int_equal(st_int(db, "SELECT hex(embedding) = '010203FC' FROM i "
                              "WHERE rowid = 100"), 1);
  assert_int_equal(st_int(db, "SELECT hex(embedding) = '0103' FROM b WHERE "
                              "rowid = 100"), 1);
  st_integrity_ok(db, "f");
  st_integrity_ok(db, "i");
  st_integrity_ok(db, "b");
  st_snapshot_free(pf);
  st_snapshot_free(pi);
  st_snapshot_free(pb);
  model_free(&mf);
  model_free(&mi);
  model_free(&mb);
  st_close(db);
}

static void test_bad_k_and_rowid(void **state) {
  static const struct {
    const char *zK;
    const char *zMsg;
  } aK[] = {
      {"0", "k must be a positive integer, got a non-positive integer"},
      {"-3", "k must be a positive integer, got a non-positive integer"},
      {"NULL", "k must be a positive integer, got NULL"},
      {"2.5", "k must be a positive integer, got a non-integral number"},
      {"'abc'", "k must be a positive integer, got text"},
      {"'5'", "k must be a positive integer, got text"},
      {"x'05'", "k must be a positive integer, got a BLOB"},
  };
  sqlite3 *db = st_open(NULL);
  model md;
  st_snapshot *pSnap;
  (void)state;
  seed(17);
  model_init(&md, ST_FLOAT, ST_L2, 4);
  create_table(db, "docs", "float[4]", 8);
  fill(db, "docs", &md, 20, 1, 1, 0);
  pSnap = st_snapshot_take(db, "docs");
  for (size_t i = 0; i < sizeof(aK) / sizeof(aK[0]); i++) {
    st_expect_error(db, SQLITE_ERROR, aK[i].zMsg,
                    "SELECT rowid FROM docs WHERE embedding MATCH '[1,2,3,4]' "
                    "AND k = %s", aK[i].zK);
  }
  {
    sqlite3_stmt *s = st_prepare(db, "SELECT rowid FROM docs WHERE embedding "
                                     "MATCH '[1,2,3,4]' AND k = ?");
    sqlite3_bind_int64(s, 1, 0);
    st_expect_stmt_error(s, SQLITE_ERROR, "k must be a positive integer");
    sqlite3_bind_null(s, 1);
    st_expect_stmt_error(s, SQLITE_ERROR, "got NULL");
    sqlite3_bind_double(s, 1, 2.5);
    st_expect_stmt_error(s, SQLITE_ERROR, "got a non-integral number");
    /* An integral real is taken, as LIMIT takes it (drivers bind numbers
    ** as reals). */
    sqlite3_bind_double(s, 1, 3.0);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    sqlite3_reset(s);
    sqlite3_finalize(s);
  }
  /* k and distance without MATCH */
  st_expect_error(db, SQLITE_ERROR, "need a MATCH on the vector column",
                  "SELECT rowid FROM docs WHERE k = 3");
  st_expect_error(db, SQLITE_ERROR, "need a MATCH",
                  "SELECT rowid FROM docs WHERE distance < 3");
  st_expect_error(db, SQLITE_ERROR, "distance bound must be a number",
                  "SELECT rowid FROM docs WHERE embedding MATCH '[1,2,3,4]' "
                  "AND distance < 'abc'");
  /* MATCH applies to the vector column only */
  st_expect_error(db, SQLITE_ERROR, "MATCH applies only to the vector column "
                  "embedding",
                  "SELECT rowid FROM docs WHERE category MATCH 'news'");
  st_expect_error(db, SQLITE_ERROR, "MATCH applies only",
                  "SELECT rowid FROM docs WHERE body MATCH '[1,2,3,4]' "
                  "AND k = 2");
  /* rowids must be integers */
  /* (SQLite itself refuses a non-integer rowid in an INSERT) */
  st_expect_error(db, SQLITE_MISMATCH, "datatype mismatch",
                  "INSERT INTO docs(rowid, embedding) VALUES('abc', "
                  "'[1,2,3,4]')");
  st_expect_error(db, SQLITE_MISMATCH, "datatype mismatch",
                  "INSERT INTO docs(rowid, embedding) VALUES(2.5, "
                  "'[1,2,3,4]')");
  st_expect_error(db, SQLITE_ERROR, "rowid must be an integer",
                  "UPDATE docs SET rowid = NULL WHERE rowid = 3");
  st_expect_error(db, SQLITE_ERROR, "rowid must be an integer",
                  "UPDATE docs SET rowid = 2.5 WHERE rowid = 3");
  st_expect_error(db, SQLITE_ERROR, "rowid must be an integer",
                  "UPDATE docs SET rowid = 'x' WHERE rowid = 3");
  /* hidden columns are query-only; unknown commands fail */
  st_expect_error(db, SQLITE_ERROR, "query-only",
                  "INSERT INTO docs(embedding, distance) VALUES('[1,2,3,4]', "
                  "1.0)");
  st_expect_error(db, SQLITE_ERROR, "query-only",
                  "INSERT INTO docs(embedding, k) VALUES('[1,2,3,4]', 3)");
  st_expect_error(db, SQLITE_ERROR, "query-only",
                  "UPDATE docs SET distance = 1 WHERE rowid = 3");
  st_expect_error(db, SQLITE_ERROR, "unknown command 'optimize-everything'",
                  "INSERT INTO docs(docs) VALUES('optimize-everything')");
  st_expect_error(db, SQLITE_ERROR, "commands are given with INSERT",
                  "UPDATE docs SET docs = 'integrity-check' WHERE rowid = 3");
  st_assert_unchanged(db, "docs", pSnap);
  /* a rowid given as integer text is fine */
  st_exec(db, "INSERT INTO docs(rowid, embedding) VALUES('77', '[1,2,3,4]')");
  assert_int_equal(st_int(db, "SELECT count(*) FROM docs WHERE rowid = 77"), 1);
  st_snapshot_free(pSnap);
  model_free(&md);
  st_close(db);
}

static void test_bad_create(void **state) {
  static const struct {
    const char *zArgs;
    const char *zMsg;
  } aCase[] = {
      {"embedding float[4], foo=bar", "unknown option 'foo'"},
      {"embedding float16[4]", "unknown vector element type 'float16'"},
      {"embedding float[4] distance=manhattan", "unknown distance 'manhattan'"},
      {"embedding float[4] distance=hamming",
       "distance=hamming does not apply to float vectors"},
      {"embedding int8[4] distance=hamming", "does not apply to int8 vectors"},
      {"embedding bit[16] distance=l2", "distance=l2 does not apply to bit"},
      {"embedding bit[16] distance=cosine", "does not apply to bit vectors"},
      {"embedding float[0]", "bad dimension count"},
      {"embedding float[-3]", "bad dimension count"},
      {"embedding float[x]", "bad dimension count"},
      {"embedding float[65537]", "bad dimension count"},
      {"embedding bit[12]", "bit[12]"},
      {"embedding bit[12]", "multiple of 8"},
      {"category text, year integer", "annex needs one vector column"},
      {"a float[4], b float[4]", "a table has one vector column"},
      {"a float[4], b int8[4]", "\"b int8[4]\" is a second one"},
      {"embedding float[4], year integer, YEAR text",
       "duplicate column name 'YEAR'"},
      {"embedding float[4], embedding text", "duplicate column name"},
      {"embedding float[4], distance real",
       "column name 'distance' is reserved"},
      {"embedding float[4], k integer", "column name 'k' is reserved"},
      {"distance float[4]", "column name 'distance' is reserved"},
      {"embedding float[4], +rowid text", "column name 'rowid' is reserved"},
      {"embedding float[4], t text", "may not be named like its table"},
      {"embedding float[4], chunk_size=12", "bad chunk_size"},
      {"embedding float[4], chunk_size=4", "bad chunk_size"},
      {"embedding float[4], chunk_size=131072", "bad chunk_size"},
      {"embedding float[4], index=annoy", "unknown index kind 'annoy'"},
      {"embedding float[4], index=hnsw(ef_search=0)", "ef_search=0"},
      {"embedding float[4], index=flat, index=flat", "index= given twice"},
      {"embedding float[4], category blob", "unknown column type"},
      {"embedding float[4] cosine", "unexpected text in vector column"},
      {"embedding float[65536], chunk_size=65536", "too large"},
  };
  sqlite3 *db = st_open(NULL);
  (void)state;
  for (size_t i = 0; i < sizeof(aCase) / sizeof(aCase[0]); i++) {
    st_expect_error(db, SQLITE_ERROR, aCase[i].zMsg,
                    "CREATE VIRTUAL TABLE t USING annex(%s)", aCase[i].zArgs);
    if (st_int(db, "SELECT count(*) FROM sqlite_master") != 0) {
      fail_msg("CREATE with (%s) left tables behind", aCase[i].zArgs);
    }
  }
  /* no arguments at all */
  st_expect_error(db, SQLITE_ERROR, "annex needs one vector column",
                  "CREATE VIRTUAL TABLE t USING annex");
  assert_int_equal(st_int(db, "SELECT count(*) FROM sqlite_master"), 0);
  /* the good forms, quoted names included */
  st_exec(db, "CREATE VIRTUAL TABLE t USING annex(\"my vec\" float[4] "
              "distance = cosine, [the cat] text, +`Body` text, "
              "index=flat(), chunk_size=65536)");
  st_exec(db, "INSERT INTO t(\"my vec\", \"the cat\", Body) "
              "VALUES('[1,0,0,0]', 'x', 'y')");
  assert_int_equal(st_int(db, "SELECT rowid FROM t WHERE \"my vec\" MATCH "
                              "'[1,0,0,0]' AND k = 1 AND \"the cat\" = 'x'"),
                   1);
  assert_int_equal(info_int(db, "t", "chunk_size"), 65536);
  st_exec(db, "DROP TABLE t");
  st_close(db);
}

/* Integrity *************************************************************/

/* A 40-row table c (chunk_size 8) with rows 5, 10, ..., 40 deleted. */
static void build_c(sqlite3 *db) {
  model md;
  model_init(&md, ST_FLOAT, ST_L2, 4);
  st_exec(db, "DROP TABLE IF EXISTS c");
  create_table(db, "c", "float[4]", 8);
  fill(db, "c", &md, 40, 1, 1, 0);
  st_exec(db, "DELETE FROM c WHERE rowid %% 5 = 0");
  st_integrity_ok(db, "c");
  model_free(&md);
}

static void expect_corrupt(sqlite3 *db, const char *zMsg) {
  int rc = st_try(db, "INSERT INTO c(c) VALUES('integrity-check')");
  if (rc != SQLITE_CORRUPT_VTAB) {
    fail_msg("integrity-check gave %d (%s), expected SQLITE_CORRUPT_VTAB",
             rc, sqlite3_errmsg(db));
  }
  if (strstr(sqlite3_errmsg(db), zMsg) == NULL) {
    fail_msg("integrity-check message '%s' lacks '%s'", sqlite3_errmsg(db),
             zMsg);
  }
  /* Queries on the corrupt table must not crash (their result may be an
  ** error or rows). */
  st_try(db, "SELECT count(*) FROM c WHERE embedding MATCH '[1,2,3,4]' AND "
             "k = 100");
  st_try(db, "SELECT count(*), sum(length(embedding)) FROM c");
  st_try(db, "SELECT rowid, embedding FROM c WHERE embedding MATCH "
             "'[1,2,3,4]' ORDER BY distance LIMIT 50");
}

/* Flip bit iPos of the valid bitmap of chunk iChunk through SQL. */
static void flip_valid_bit(sqlite3 *db, sqlite3_int64 iChunk, int iPos) {
  sqlite3_stmt *s = st_prepare(db, "SELECT data FROM c_chunks WHERE chunk = "
                                   "%lld", (long long)iChunk);
  unsigned char *a;
  int n;
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  n = sqlite3_column_bytes(s, 0);
  a = malloc((size_t)n);
  memcpy(a, sqlite3_column_blob(s, 0), (size_t)n);
  sqlite3_finalize(s);
  a[iPos / 8] ^= (unsigned char)(1u << (iPos % 8));
  s = st_prepare(db, "UPDATE c_chunks SET data = ? WHERE chunk = %lld",
                 (long long)iChunk);
  sqlite3_bind_blob(s, 1, a, n, free);
  assert_int_equal(st_run(s), SQLITE_DONE);
  sqlite3_finalize(s);
}

static void test_integrity_check(void **state) {
  sqlite3 *db = st_open(NULL);
  sqlite3_int64 iSlot;
  int bDefensive = -1;
  (void)state;
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 0, &bDefensive);
  assert_int_equal(bDefensive, 0);
  /* good tables of every kind pass */
  build_c(db);
  st_exec(db, "CREATE VIRTUAL TABLE e USING annex(v bit[8])");
  st_integrity_ok(db, "e");

  /* a T_rows row is missing */
  st_exec(db, "DELETE FROM c_rows WHERE rowid = 7");
  expect_corrupt(db, "rowid 7, which is not in c_rows");

  /* a live slot's valid bit is cleared */
  build_c(db);
  iSlot = st_int(db, "SELECT slot FROM c_rows WHERE rowid = 12");
  flip_valid_bit(db, iSlot / 8, (int)(iSlot % 8));
  expect_corrupt(db, "c_rows has 32 rows but the chunks hold 31 live");

  /* a freed slot's valid bit is set again */
  build_c(db);
  iSlot = 14; /* rowid 15, deleted */
  flip_valid_bit(db, iSlot / 8, (int)(iSlot % 8));
  expect_corrupt(db, "holds rowid 15, which is not in c_rows");

  /* a T_rows row points at another slot */
  build_c(db);
  st_exec(db, "UPDATE c_rows SET slot = 3 WHERE rowid = 22");
  expect_corrupt(db, "but c_rows puts that row in slot");

  /* a T_rows row points at a slot never allocated */
  build_c(db);
  st_exec(db, "UPDATE c_rows SET slot = 100000 WHERE rowid = 22");
  expect_corrupt(db, "c_rows");

  /* a chunk is missing */
  build_c(db);
  st_exec(db, "DELETE FROM c_chunks WHERE chunk = 2");
  expect_corrupt(db, "c_rows has 32 rows but the chunks hold");

  /* a chunk has the wrong size */
  build_c(db);
  st_exec(db, "UPDATE c_chunks SET data = x'00' WHERE chunk = 1");
  expect_corrupt(db, "a chunk is missing, misplaced or has the wrong size");

  /* the stored dimensions disagree */
  build_c(db);
  st_exec(db, "UPDATE c_config SET value = 5 WHERE key = 'dims'");
  expect_corrupt(db, "c_config says dims = 5, expected 4");

  /* the slot counter went missing */
  build_c(db);
  st_exec(db, "DELETE FROM c_config WHERE key = 'slots'");
  expect_corrupt(db, "'slots' is missing");

  /* Wild values: queries and writes fail cleanly or succeed, no crash. */
  {
    static const struct {
      const char *zSql;
      int bDetectable; /* integrity-check must fail */
    } aCorrupt[] = {
        {"INSERT INTO c_chunks(chunk, data) SELECT 9223372036854775807, data "
         "FROM c_chunks WHERE chunk = 0", 1},
        {"INSERT INTO c_chunks(chunk, data) SELECT -9223372036854775808, "
         "data FROM c_chunks WHERE chunk = 0", 1},
        {"UPDATE c_rows SET slot = -5 WHERE rowid = 22", 1},
        {"UPDATE c_rows SET slot = 9223372036854775807 WHERE rowid = 22", 1},
        {"UPDATE c_rows SET slot = 'abc' WHERE rowid = 22", 1},
        {"UPDATE c_config SET value = -1 WHERE key = 'slots'", 1},
        {"UPDATE c_config SET value = 3 WHERE key = 'slots'", 1},
        {"UPDATE c_chunks SET data = zeroblob(0) WHERE chunk = 1", 1},
        {"UPDATE c_chunks SET data = 'text' WHERE chunk = 1", 1},
        {"DELETE FROM c_config WHERE key = 'dims'", 1},
        /* not inconsistent as such, but wild */
        {"UPDATE c_config SET value = 9223372036854775807 WHERE key = "
         "'slots'", 0},
        {"UPDATE c_config SET value = 'x' WHERE key = 'changes'", 0},
    };
    for (size_t i = 0; i < sizeof(aCorrupt) / sizeof(aCorrupt[0]); i++) {
      build_c(db);
      st_exec(db, "%s", aCorrupt[i].zSql);
      if (aCorrupt[i].bDetectable &&
          st_try(db, "INSERT INTO c(c) VALUES('integrity-check')") !=
              SQLITE_CORRUPT_VTAB) {
        fail_msg("integrity-check did not report corruption after: %s (%s)",
                 aCorrupt[i].zSql, sqlite3_errmsg(db));
      }
      st_try(db, "SELECT count(*) FROM c WHERE embedding MATCH '[1,2,3,4]' "
                 "AND k = 100 AND rowid IN (21, 22, 23)");
      st_try(db, "SELECT rowid, distance FROM c WHERE embedding MATCH "
                 "'[1,2,3,4]' AND distance < 100");
      st_try(db, "SELECT embedding FROM c WHERE rowid = 22");
      st_try(db, "SELECT * FROM c");
      st_try(db, "UPDATE c SET embedding = '[1,1,1,1]' WHERE rowid = 22");
      st_try(db, "UPDATE c SET rowid = 1022 WHERE rowid = 22");
      st_try(db, "DELETE FROM c WHERE rowid IN (21, 22, 23)");
      st_try(db, "INSERT INTO c(embedding) VALUES('[1,2,3,4]')");
      st_try(db, "SELECT * FROM annex_info('c')");
    }
  }

  st_exec(db, "DROP TABLE c");
  st_exec(db, "DROP TABLE e");
  assert_int_equal(st_int(db, "SELECT count(*) FROM sqlite_master"), 0);
  st_close(db);
}

static void test_defensive_mode(void **state) {
  static const char *azWrite[] = {
      "INSERT INTO docs_rows(rowid, slot) VALUES(1000, 1000)",
      "UPDATE docs_rows SET slot = 0",
      "DELETE FROM docs_rows",
      "INSERT INTO docs_chunks(chunk, data) VALUES(1000, x'00')",
      "UPDATE docs_chunks SET data = x'00'",
      "DELETE FROM docs_chunks",
      "INSERT INTO docs_config(key, value) VALUES('x', 1)",
      "UPDATE docs_config SET value = 2 WHERE key = 'format'",
      "DELETE FROM docs_config",
      "DROP TABLE docs_rows",
  };
  sqlite3 *db = st_open(NULL);
  model md;
  st_snapshot *pSnap;
  int bOn = 0;
  (void)state;
  seed(18);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, &bOn);
  assert_int_equal(bOn, 1);
  model_init(&md, ST_FLOAT, ST_L2, 4);
  create_table(db, "docs", "float[4]", 8);
  fill(db, "docs", &md, 30, 1, 1, 2);
  st_exec(db, "DELETE FROM docs WHERE rowid < 10");
  st_exec(db, "UPDATE docs SET embedding = '[1,1,1,1]', rowid = 1000 "
              "WHERE rowid = 10");
  pSnap = st_snapshot_take(db, "docs");
  for (size_t i = 0; i < sizeof(azWrite) / sizeof(azWrite[0]); i++) {
    st_expect_error(db, 0, "may not be", "%s", azWrite[i]);
    st_assert_unchanged(db, "docs", pSnap);
  }
  /* reading the shadow tables is allowed */
  assert_int_equal(st_int(db, "SELECT count(*) FROM docs_rows"), 21);
  st_integrity_ok(db, "docs");
  /* annex itself still writes, renames and drops */
  st_exec(db, "INSERT INTO docs(embedding) VALUES('[0,0,0,1]')");
  st_exec(db, "ALTER TABLE docs RENAME TO docs2");
  st_integrity_ok(db, "docs2");
  st_exec(db, "DROP TABLE docs2");
  assert_int_equal(st_int(db, "SELECT count(*) FROM sqlite_master"), 0);
  st_snapshot_free(pSnap);
  model_free(&md);
  st_close(db);
}

/* Functions and annex_info **********************************************/

static void test_functions(void **state) {
  sqlite3 *db = st_open(NULL);
  char *z;
  double d;
  (void)state;
  z = st_text(db, "SELECT annex_json(annex_vector('[1,2.5,-3]'))");
  assert_string_equal(z, "[1,2.5,-3]");
  sqlite3_free(z);
  z = st_text(db, "SELECT annex_json(annex_vector(' [ 0.1 , -2e-3 ] '))");
  assert_string_equal(z, "[0.1,-0.002]");
  sqlite3_free(z);
  z = st_text(db, "SELECT annex_json('[1, 2]')");
  assert_string_equal(z, "[1,2]");
  sqlite3_free(z);
  z = st_text(db, "SELECT hex(annex_vector('[1,2.5,-3]'))");
  assert_string_equal(z, "0000803F00002040000040C0");
  sqlite3_free(z);
  z = st_text(db, "SELECT annex_json(annex_vector(x'0000803F00002040'))");
  assert_string_equal(z, "[1,2.5]");
  sqlite3_free(z);
  z = st_text(db, "SELECT annex_json(annex_int8('[1,-2,127,-128]'))");
  assert_string_equal(z, "[1,-2,127,-128]");
  sqlite3_free(z);
  z = st_text(db, "SELECT hex(annex_int8('[1,-2,127,-128]'))");
  assert_string_equal(z, "01FE7F80");
  sqlite3_free(z);
  z = st_text(db, "SELECT annex_json(annex_bit('[1,0,0,0,0,0,0,1,0,1,0,0,0,0,"
                  "0,0]'))");
  assert_string_equal(z, "[1,0,0,0,0,0,0,1,0,1,0,0,0,0,0,0]");
  sqlite3_free(z);
  z = st_text(db, "SELECT hex(annex_bit('[1,0,0,0,0,0,0,1,0,1,0,0,0,0,0,0]'))");
  assert_string_equal(z, "8102");
  sqlite3_free(z);

  assert_int_equal(st_int(db, "SELECT annex_dims('[1,2,3]')"), 3);
  assert_int_equal(st_int(db, "SELECT annex_dims(annex_vector('[1,2,3,4,5]'))"),
                   5);
  assert_int_equal(st_int(db, "SELECT annex_dims(zeroblob(64))"), 16);

  d = st_double(db, "SELECT annex_distance('[0,0]', '[3,4]', 'l2')");
  assert_true(fabs(d - 5.0) < 1e-9);
  d = st_double(db, "SELECT annex_distance('[1,1,1]', '[2,3,4]')"); /* l2 */
  assert_true(fabs(d - sqrt(14.0)) < 1e-6);
  d = st_double(db, "SELECT annex_distance('[1,0]', '[0,1]', 'cosine')");
  assert_true(fabs(d - 1.0) < 1e-9);
  d = st_double(db, "SELECT annex_distance('[1,0]', '[1,0]', 'cosine')");
  assert_true(fabs(d) < 1e-7);
  d = st_double(db, "SELECT annex_distance('[1,0]', '[-2,0]', 'cosine')");
  assert_true(fabs(d - 2.0) < 1e-7);
  d = st_double(db, "SELECT annex_distance('[1,1]', '[1,0]', 'cosine')");
  assert_true(fabs(d - (1.0 - 1.0 / sqrt(2.0))) < 1e-6);
  d = st_double(db, "SELECT annex_distance('[1,2]', '[3,4]', 'ip')");
  assert_true(fabs(d + 11.0) < 1e-9);
  d = st_double(db, "SELECT annex_distance(annex_vector('[1,2]'), "
                    "annex_vector('[3,4]'), 'IP')");
  assert_true(fabs(d + 11.0) < 1e-9);
  st_expect_error(db, SQLITE_ERROR, "dimension mismatch (2 vs 3)",
                  "SELECT annex_distance('[1,2]', '[1,2,3]')");
  st_expect_error(db, SQLITE_ERROR, "metric must be",
                  "SELECT annex_distance('[1,2]', '[1,2]', 'hamming')");
  st_expect_error(db, SQLITE_ERROR, "expected a float32 vector, got a int8",
                  "SELECT annex_distance(annex_int8('[1,2]'), '[1,2]')");

  d = st_double(db, "WITH v(x) AS (SELECT annex_normalize('[3,4,12]')) "
                    "SELECT annex_distance(x, '[0,0,0]') FROM v");
  assert_true(fabs(d - 1.0) < 1e-6);
  z = st_text(db, "SELECT annex_json(annex_normalize('[3,4]'))");
  assert_string_equal(z, "[0.6,0.8]");
  sqlite3_free(z);
  d = st_double(db, "SELECT annex_distance(annex_normalize('[1,2,3,4,5]'), "
                    "'[1,2,3,4,5]', 'cosine')");
  assert_true(fabs(d) < 1e-6);
  st_expect_error(db, SQLITE_ERROR, "cannot normalize a zero vector",
                  "SELECT annex_normalize('[0,0]')");

  z = st_text(db, "SELECT annex_version()");
  assert_non_null(z);
  assert_true(strlen(z) > 0);
  assert_non_null(strchr(z, '.'));
  sqlite3_free(z);

  /* bad arguments */
  st_expect_error(db, SQLITE_ERROR, "malformed JSON",
                  "SELECT annex_vector('[1,2')");
  st_expect_error(db, SQLITE_ERROR, "out of float32 range",
                  "SELECT annex_vector('[1e999]')");
  st_expect_error(db, SQLITE_ERROR, "multiple of 4 bytes",
                  "SELECT annex_vector(x'000000')");
  st_expect_error(db, SQLITE_ERROR, "NaN",
                  "SELECT annex_vector(x'0000c07f')");
  st_expect_error(db, SQLITE_ERROR, "empty vector",
                  "SELECT annex_vector('[]')");
  st_expect_error(db, SQLITE_ERROR, "expected a vector",
                  "SELECT annex_vector(NULL)");
  st_expect_error(db, SQLITE_ERROR, "from -128 to 127",
                  "SELECT annex_int8('[1,300]')");
  st_expect_error(db, SQLITE_ERROR, "multiple of 8",
                  "SELECT annex_bit('[1,0,1]')");
  st_expect_error(db, SQLITE_ERROR, "expected 0 or 1",
                  "SELECT annex_bit('[1,0,1,0,1,0,1,5]')");
  st_close(db);
}

static void test_annex_info(void **state) {
  static const char *azKey[] = {
      "table", "version", "kernels", "format", "dimensions", "element",
      "metric", "index", "chunk_size", "slots", "changes", "rows", "chunks",
      "memory_table", "memory_sqlite",
  };
  sqlite3 *db = st_open(NULL);
  model md;
  char *z;
  (void)state;
  seed(19);
  model_init(&md, ST_INT8, ST_IP, 24);
  create_table(db, "docs", "int8[24] distance=ip", 16);
  fill(db, "docs", &md, 37, 1, 1, 0);
  st_exec(db, "DELETE FROM docs WHERE rowid IN (1, 2)");
  for (size_t i = 0; i < sizeof(azKey) / sizeof(azKey[0]); i++) {
    if (st_int(db, "SELECT count(*) FROM annex_info('docs') WHERE key = %Q",
               azKey[i]) != 1) {
      fail_msg("annex_info lacks key %s", azKey[i]);
    }
  }
  assert_int_equal(st_int(db, "SELECT count(*) FROM annex_info('docs') WHERE "
                              "key LIKE 'bytes%%'") >= 1, 1);
  assert_int_equal(info_int(db, "docs", "rows"), 35);
  assert_int_equal(info_int(db, "docs", "dimensions"), 24);
  assert_int_equal(info_int(db, "docs", "chunk_size"), 16);
  assert_int_equal(info_int(db, "docs", "slots"), 37);
  assert_int_equal(info_int(db, "docs", "chunks"), 3);
  assert_int_equal(info_int(db, "docs", "format"), 1);
  z = st_text(db, "SELECT group_concat(key || '=' || value, ';') FROM "
                  "annex_info('docs') WHERE key IN ('table', 'element', "
                  "'metric', 'index')");
  assert_non_null(strstr(z, "table=docs"));
  assert_non_null(strstr(z, "element=int8"));
  assert_non_null(strstr(z, "metric=ip"));
  assert_non_null(strstr(z, "index=flat"));
  sqlite3_free(z);
  z = st_text(db, "SELECT value = annex_version() FROM annex_info('docs') "
                  "WHERE key = 'version'");
  assert_string_equal(z, "1");
  sqlite3_free(z);
  assert_int_equal(st_int(db, "SELECT value > 0 FROM annex_info('main.docs') "
                              "WHERE key = 'memory_table'"), 1);
  st_expect_error(db, 0, "no annex table named nosuch",
                  "SELECT * FROM annex_info('nosuch')");
  st_expect_error(db, 0, "annex_info('table')",
                  "SELECT * FROM annex_info");
  model_free(&md);
  st_close(db);
}

/* Schema changes ********************************************************/

static void test_drop_and_rename(void **state) {
  char *zDir = st_tempdir();
  char zPath[4096];
  sqlite3 *db;
  model md;
  unsigned char q[MAXB];
  (void)state;
  seed(20);
  snprintf(zPath, sizeof(zPath), "%s/rename.db", zDir);
  db = open_file(zPath);
  model_init(&md, ST_FLOAT, ST_L2, 8);
  create_table(db, "docs", "float[8]", 8);
  fill(db, "docs", &md, 60, 1, 1, 2);
  assert_int_equal(count_shadow(db, "docs"), 4);

  st_exec(db, "ALTER TABLE docs RENAME TO papers");
  assert_int_equal(count_shadow(db, "docs"), 0);
  assert_int_equal(count_shadow(db, "papers"), 4);
  st_expect_error(db, 0, "no such table", "SELECT * FROM docs");
  model_verify(db, "papers", &md);
  gen_vec(&md, q);
  check_query(db, &md,
              "SELECT rowid, distance FROM papers WHERE embedding MATCH ?1 "
              "AND k = ?2 ORDER BY distance",
              q, NULL, 15, 0, NULL, -1, "renamed");
  fill(db, "papers", &md, 10, 0, 0, 0);
  st_integrity_ok(db, "papers");
  assert_int_equal(info_int(db, "papers", "rows"), 70);
  st_close(db);

  /* the renamed table comes back after reopening */
  db = open_file(zPath);
  model_verify(db, "papers", &md);
  st_integrity_ok(db, "papers");
  st_exec(db, "DROP TABLE papers");
  assert_int_equal(count_shadow(db, "papers"), 0);
  assert_int_equal(st_int(db, "SELECT count(*) FROM sqlite_master"), 0);
  /* the name can be used again */
  create_table(db, "papers", "int8[4]", 8);
  st_exec(db, "INSERT INTO papers(embedding) VALUES('[1,2,3,4]')");
  assert_int_equal(info_int(db, "papers", "rows"), 1);
  assert_int_equal(info_int(db, "papers", "dimensions"), 4);
  st_exec(db, "DROP TABLE papers");
  st_close(db);
  model_free(&md);
  st_rmdir(zDir);
  free(zDir);
}

static void test_attached_schema(void **state) {
  sqlite3 *db = st_open(NULL);
  model md;
  unsigned char q[MAXB];
  (void)state;
  seed(21);
  st_exec(db, "ATTACH ':memory:' AS aux");
  model_init(&md, ST_FLOAT, ST_L2, 8);
  st_exec(db, "CREATE VIRTUAL TABLE aux.docs USING annex(embedding float[8], "
              "chunk_size=8, category text, year integer, score real, "
              "+body text)");
  /* a table of the same name in main must not be confused with it */
  create_table(db, "docs", "float[8]", 8);
  st_exec(db, "INSERT INTO main.docs(embedding) VALUES('[1,1,1,1,1,1,1,1]')");
  {
    sqlite3_stmt *s = st_prepare(db, "INSERT INTO aux.docs(rowid, embedding, "
                                     "category, year, score, body) "
                                     "VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
    for (int i = 0; i < 40; i++) {
      row *r = model_add(&md);
      r->rowid = i + 1;
      gen_vec(&md, r->vec);
      gen_meta(r);
      snprintf(r->body, sizeof(r->body), "aux%d", i);
      bind_row(s, &md, r, i & 1);
      insert_ok(s);
    }
    sqlite3_finalize(s);
  }
  assert_int_equal(st_int(db, "SELECT count(*) FROM aux.sqlite_master WHERE "
                              "name LIKE 'docs_%%'"), 4);
  assert_int_equal(st_int(db, "SELECT count(*) FROM aux.docs"), 40);
  assert_int_equal(st_int(db, "SELECT count(*) FROM main.docs"), 1);
  gen_vec(&md, q);
  check_query(db, &md,
              "SELECT rowid, distance FROM aux.docs WHERE embedding MATCH ?1 "
              "AND k = ?2 ORDER BY distance",
              q, NULL, 12, 0, NULL, -1, "aux");
  {
    unsigned char *aUse = malloc((size_t)md.n);
    for (int i = 0; i < md.n; i++) aUse[i] = (unsigned char)p_news(&md.a[i]);
    check_query(db, &md,
                "SELECT rowid, distance FROM aux.docs WHERE embedding MATCH ?1 "
                "AND k = ?2 AND category = 'news' ORDER BY distance",
                q, NULL, 12, 0, aUse, -1, "aux filtered");
    free(aUse);
  }
  st_exec(db, "DELETE FROM aux.docs WHERE rowid <= 8");
  assert_int_equal(info_int(db, "aux.docs", "rows"), 32);
  assert_int_equal(info_int(db, "aux.docs", "chunks"), 4);
  st_exec(db, "INSERT INTO aux.docs(docs) VALUES('integrity-check')");
  st_integrity_ok(db, "docs");
  st_exec(db, "DROP TABLE aux.docs");
  assert_int_equal(st_int(db, "SELECT count(*) FROM aux.sqlite_master"), 0);
  assert_int_equal(count_shadow(db, "docs"), 4);
  model_free(&md);
  st_close(db);
}

/* The dataset helpers of sqltest.h: .fvecs / .ivecs files read back. */
static void write_vecs(const char *zPath, const void *a, int n, int d) {
  FILE *f = fopen(zPath, "wb");
  assert_non_null(f);
  for (int i = 0; i < n; i++) {
    int32_t dd = d;
    assert_int_equal(fwrite(&dd, 4, 1, f), 1);
    assert_int_equal(fwrite((const char *)a + (size_t)i * d * 4, 4,
                            (size_t)d, f), (size_t)d);
  }
  fclose(f);
}

static void test_dataset_helpers(void **state) {
  char *zDir = st_tempdir();
  char zPath[4096];
  float af[3 * 5], *pf;
  int32_t ai[3 * 5], *pi;
  int n, d;
  char *zData;
  (void)state;
  for (int i = 0; i < 15; i++) {
    af[i] = (float)i * 0.5f - 3.0f;
    ai[i] = i * 1000 - 7;
  }
  snprintf(zPath, sizeof(zPath), "%s/a.fvecs", zDir);
  write_vecs(zPath, af, 3, 5);
  pf = st_load_fvecs(zPath, &n, &d);
  assert_non_null(pf);
  assert_int_equal(n, 3);
  assert_int_equal(d, 5);
  assert_memory_equal(pf, af, sizeof(af));
  free(pf);
  snprintf(zPath, sizeof(zPath), "%s/a.ivecs", zDir);
  write_vecs(zPath, ai, 5, 3);
  pi = st_load_ivecs(zPath, &n, &d);
  assert_non_null(pi);
  assert_int_equal(n, 5);
  assert_int_equal(d, 3);
  assert_memory_equal(pi, ai, sizeof(ai));
  free(pi);
  /* a truncated file and a missing one are refused */
  {
    FILE *f = fopen(zPath, "ab");
    fputc(0, f);
    fclose(f);
  }
  assert_null(st_load_ivecs(zPath, &n, &d));
  snprintf(zPath, sizeof(zPath), "%s/none.fvecs", zDir);
  assert_null(st_load_fvecs(zPath, &n, &d));
  st_rmdir(zDir);
  free(zDir);

  /* The shared digits set: its ground truth agrees with st_ref_rank. */
  zData = st_data_path("digits1797/base.fvecs");
  pf = st_load_fvecs(zData, &n, &d);
  free(zData);
  if (pf == NULL) {
    print_message("# shared data not found; set ANNEX_DATA_DIR\n");
  } else {
    int nq, dq, ng, dg;
    char *zQ = st_data_path("digits1797/query.fvecs");
    char *zG = st_data_path("digits1797/groundtruth.ivecs");
    float *pq = st_load_fvecs(zQ, &nq, &dq);
    int32_t *pg = st_load_ivecs(zG, &ng, &dg);
    st_hit *aRef = malloc(sizeof(st_hit) * (size_t)n);
    sqlite3_int64 *aRowid = malloc(sizeof(sqlite3_int64) * (size_t)n);
    assert_non_null(pq);
    assert_non_null(pg);
    assert_int_equal(dq, d);
    assert_int_equal(ng, nq);
    for (int i = 0; i < n; i++) aRowid[i] = i;
    for (int iq = 0; iq < 3; iq++) {
      int nRef = st_ref_rank(ST_FLOAT, ST_L2, d, pq + (size_t)iq * d, pf,
                             aRowid, NULL, n, aRef);
      assert_int_equal(nRef, n);
      /* the ground truth's first id is at the reference's first distance */
      assert_true(fabs(st_ref_distance(ST_FLOAT, ST_L2, pq + (size_t)iq * d,
                                       pf + (size_t)pg[(size_t)iq * dg] * d,
                                       d) - aRef[0].dist) < 1e-9);
    }
    free(aRef);
    free(aRowid);
    free(pq);
    free(pg);
    free(pf);
    free(zQ);
    free(zG);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_float),
      cmocka_unit_test(test_roundtrip_int8),
      cmocka_unit_test(test_roundtrip_bit),
      cmocka_unit_test(test_ties_by_rowid),
      cmocka_unit_test(test_filters),
      cmocka_unit_test(test_filter_collation_affinity),
      cmocka_unit_test(test_radius),
      cmocka_unit_test(test_no_k_limit),
      cmocka_unit_test(test_update_delete),
      cmocka_unit_test(test_delete_all_reclaims_chunks),
      cmocka_unit_test(test_point_lookup_and_scan),
      cmocka_unit_test(test_close_reopen),
      cmocka_unit_test(test_bulk_insert_rollback),
      cmocka_unit_test(test_savepoints),
      cmocka_unit_test(test_statement_rollback),
      cmocka_unit_test(test_failed_replace_keeps_row),
      cmocka_unit_test(test_schema_changes_rolled_back),
      cmocka_unit_test(test_second_connection),
      cmocka_unit_test(test_bad_vectors),
      cmocka_unit_test(test_bad_k_and_rowid),
      cmocka_unit_test(test_bad_create),
      cmocka_unit_test(test_integrity_check),
      cmocka_unit_test(test_defensive_mode),
      cmocka_unit_test(test_functions),
      cmocka_unit_test(test_annex_info),
      cmocka_unit_test(test_drop_and_rename),
      cmocka_unit_test(test_attached_schema),
      cmocka_unit_test(test_quoted_table_names),
      cmocka_unit_test(test_cosine_zero_vectors),
      cmocka_unit_test(test_dataset_helpers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
