/*
** test_unit.c — cmocka unit tests of the parts below SQL: the CREATE option
** parser (config.c), vector parsing and formatting (vector.c), and the
** top-k heap and ordered selection (topk.c).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vtab/annex_int.h"

/* Config parser ***********************************************************/

/* Parse a NULL-terminated list of arguments as xCreate would see them. */
static int parse(annex_config **pp, char **pzErr, ...) {
  const char *azArg[32] = {"annex", "main", "docs"};
  int n = 3;
  va_list ap;
  va_start(ap, pzErr);
  for (const char *z; (z = va_arg(ap, const char *)) != NULL;) azArg[n++] = z;
  va_end(ap);
  *pzErr = NULL;
  return annex_config_parse(n, azArg, pp, pzErr);
}

static void expect_parse_error(const char *zArg, const char *zNeedle) {
  annex_config *p = NULL;
  char *zErr = NULL;
  int rc = parse(&p, &zErr, "embedding float[4]", zArg, (const char *)NULL);
  assert_int_equal(rc, SQLITE_ERROR);
  assert_null(p);
  assert_non_null(zErr);
  if (strstr(zErr, zNeedle) == NULL) {
    fail_msg("error \"%s\" for \"%s\" lacks \"%s\"", zErr, zArg, zNeedle);
  }
  sqlite3_free(zErr);
}

static void test_config_full(void **state) {
  annex_config *p;
  char *zErr;
  (void)state;
  assert_int_equal(parse(&p, &zErr, "embedding float[128] distance=cosine",
                         "index=flat", "category text", "year integer",
                         "score REAL", "+body text", "+raw", "chunk_size = 64",
                         (const char *)NULL),
                   SQLITE_OK);
  assert_int_equal(p->nCol, 6);
  assert_int_equal(p->iVecCol, 0);
  assert_int_equal(p->eElem, ANNEX_ELEM_FLOAT32);
  assert_int_equal(p->eMetric, ANNEX_METRIC_COSINE);
  assert_int_equal(p->nDim, 128);
  assert_int_equal(p->szVec, 512);
  assert_int_equal(p->nChunk, 64);
  assert_int_equal(p->eIndex, ANNEX_INDEX_FLAT);
  assert_string_equal(p->aCol[1].zName, "category");
  assert_int_equal(p->aCol[1].eKind, ANNEX_COL_META);
  assert_string_equal(p->aCol[2].zType, "INTEGER");
  assert_string_equal(p->aCol[3].zType, "REAL");
  assert_int_equal(p->aCol[4].eKind, ANNEX_COL_AUX);
  assert_string_equal(p->aCol[5].zName, "raw");
  annex_config_free(p);
}

static void test_config_defaults(void **state) {
  annex_config *p;
  char *zErr;
  (void)state;
  assert_int_equal(parse(&p, &zErr, "v int8[16]", (const char *)NULL),
                   SQLITE_OK);
  assert_int_equal(p->eMetric, ANNEX_METRIC_L2);
  assert_int_equal(p->nChunk, ANNEX_CHUNK_DEFAULT);
  assert_int_equal(p->szVec, 16);
  annex_config_free(p);
  assert_int_equal(parse(&p, &zErr, "\"my vec\" bit[64]", (const char *)NULL),
                   SQLITE_OK);
  assert_int_equal(p->eMetric, ANNEX_METRIC_HAMMING);
  assert_string_equal(p->aCol[0].zName, "my vec");
  assert_int_equal(p->szVec, 8);
  annex_config_free(p);
  /* Larger vectors get fewer per chunk: a chunk stays within 1 MiB. */
  assert_int_equal(parse(&p, &zErr, "v float[784]", (const char *)NULL),
                   SQLITE_OK);
  assert_int_equal(p->nChunk, 256);
  annex_config_free(p);
  assert_int_equal(parse(&p, &zErr, "v float[128]", (const char *)NULL),
                   SQLITE_OK);
  assert_int_equal(p->nChunk, 1024);
  annex_config_free(p);
  assert_int_equal(parse(&p, &zErr, "v float[65536]", (const char *)NULL),
                   SQLITE_OK);
  assert_true(p->szVec * (size_t)p->nChunk <= ANNEX_CHUNK_MAX_BYTES);
  annex_config_free(p);
}

static void test_config_errors(void **state) {
  (void)state;
  expect_parse_error("index=annoy", "unknown index kind 'annoy'");
  expect_parse_error("index=hnsw(m=1)", "m=1: expected an integer from 2");
  expect_parse_error("index=hnsw(m=16, m=8)", "given twice");
  expect_parse_error("index=hnsw(efs=3)", "unknown hnsw parameter 'efs'");
  expect_parse_error("index=hnsw(m=16", "missing ')'");
  expect_parse_error("index=hnsw(m)", "expected key=value");
  expect_parse_error("index=flat(x=1)", "takes no parameters");
  expect_parse_error("colour=red", "unknown option 'colour'");
  expect_parse_error("chunk_size=100", "power of two");
  expect_parse_error("chunk_size=4", "power of two");
  expect_parse_error("x float16[4]", "unknown vector element type 'float16'");
  expect_parse_error("x blob", "unknown column type");
  expect_parse_error("x float[4]", "one vector column");
  expect_parse_error("distance text", "reserved");
  expect_parse_error("k integer", "reserved");
  expect_parse_error("docs text", "named like its table");
  expect_parse_error("Embedding text", "duplicate column name");
  {
    annex_config *p = NULL;
    char *zErr = NULL;
    assert_int_equal(parse(&p, &zErr, "v float[4]", "index=flat", "index=flat",
                           (const char *)NULL),
                     SQLITE_ERROR);
    assert_non_null(strstr(zErr, "given twice"));
    sqlite3_free(zErr);
  }
}

static void expect_vec_error(const char *zVecCol, const char *zNeedle) {
  annex_config *p = NULL;
  char *zErr = NULL;
  int rc = parse(&p, &zErr, zVecCol, (const char *)NULL);
  assert_int_equal(rc, SQLITE_ERROR);
  if (zErr == NULL || strstr(zErr, zNeedle) == NULL) {
    fail_msg("error \"%s\" for \"%s\" lacks \"%s\"", zErr ? zErr : "(none)",
             zVecCol, zNeedle);
  }
  sqlite3_free(zErr);
}

static void test_config_vector_errors(void **state) {
  (void)state;
  expect_vec_error("v float[0]", "bad dimension count");
  expect_vec_error("v float[70000]", "bad dimension count");
  expect_vec_error("v float[12x]", "bad dimension count");
  expect_vec_error("v bit[12]", "multiple of 8");
  expect_vec_error("v float[8] distance=hamming", "does not apply");
  expect_vec_error("v bit[8] distance=l2", "does not apply");
  expect_vec_error("v float[8] distance=manhattan", "unknown distance");
  expect_vec_error("v float[8] metric=l2", "only distance=");
  expect_vec_error("title text", "needs one vector column");
}

/* Vector parsing ***********************************************************/

static sqlite3 *g_db; /* a connection to make sqlite3_value objects with */

/* A value holding the result of a SQL expression (caller frees). */
static sqlite3_value *value_of(const char *zExpr) {
  sqlite3_stmt *s;
  sqlite3_value *v;
  char *zSql = sqlite3_mprintf("SELECT %s", zExpr);
  assert_int_equal(sqlite3_prepare_v2(g_db, zSql, -1, &s, NULL), SQLITE_OK);
  sqlite3_free(zSql);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  v = sqlite3_value_dup(sqlite3_column_value(s, 0));
  sqlite3_finalize(s);
  return v;
}

static int parse_vec(const char *zExpr, annex_elem e, int nDim, void *out,
                     char **pzErr) {
  sqlite3_value *v = value_of(zExpr);
  int rc = annex_vector_parse(v, e, nDim, "emb", out, pzErr);
  sqlite3_value_free(v);
  return rc;
}

static void test_vector_json_float(void **state) {
  float a[3];
  char *zErr = NULL;
  (void)state;
  assert_int_equal(parse_vec("' [1, -2.5e1 ,0.125]'", ANNEX_ELEM_FLOAT32, 3, a,
                             &zErr),
                   SQLITE_OK);
  assert_true(a[0] == 1.0f && a[1] == -25.0f && a[2] == 0.125f);
  assert_int_equal(parse_vec("x'0000803f000000c00000003f'", ANNEX_ELEM_FLOAT32,
                             3, a, &zErr),
                   SQLITE_OK);
  assert_true(a[0] == 1.0f && a[1] == -2.0f && a[2] == 0.5f);
}

static void expect_vec_parse_error(const char *zExpr, annex_elem e, int nDim,
                                   const char *zNeedle) {
  unsigned char buf[64];
  char *zErr = NULL;
  int rc = parse_vec(zExpr, e, nDim, buf, &zErr);
  assert_int_equal(rc, SQLITE_ERROR);
  if (zErr == NULL || strstr(zErr, zNeedle) == NULL) {
    fail_msg("error \"%s\" for %s lacks \"%s\"", zErr ? zErr : "(none)", zExpr,
             zNeedle);
  }
  sqlite3_free(zErr);
}

static void test_vector_errors(void **state) {
  (void)state;
  expect_vec_parse_error("'[1,2]'", ANNEX_ELEM_FLOAT32, 3,
                         "the vector has 2 dimensions, the column expects 3");
  expect_vec_parse_error("x'0000803f'", ANNEX_ELEM_FLOAT32, 3,
                         "the vector has 1 dimensions, the column expects 3");
  expect_vec_parse_error("x'0000803f00'", ANNEX_ELEM_FLOAT32, 3,
                         "expects a BLOB of 12 bytes, got 5");
  expect_vec_parse_error("x'0000c07f0000803f0000803f'", ANNEX_ELEM_FLOAT32, 3,
                         "NaN");
  expect_vec_parse_error("x'0000807f0000803f0000803f'", ANNEX_ELEM_FLOAT32, 3,
                         "infinite");
  expect_vec_parse_error("'[1e999, 1, 1]'", ANNEX_ELEM_FLOAT32, 3,
                         "out of float32 range");
  expect_vec_parse_error("'[1, 2,, 3]'", ANNEX_ELEM_FLOAT32, 3, "malformed");
  expect_vec_parse_error("'[1, 2, 3'", ANNEX_ELEM_FLOAT32, 3, "malformed");
  expect_vec_parse_error("'[1, 2, 3] x'", ANNEX_ELEM_FLOAT32, 3, "malformed");
  expect_vec_parse_error("'[1, .5, 3]'", ANNEX_ELEM_FLOAT32, 3, "malformed");
  expect_vec_parse_error("'[nan, 1, 3]'", ANNEX_ELEM_FLOAT32, 3, "malformed");
  expect_vec_parse_error("NULL", ANNEX_ELEM_FLOAT32, 3, "got NULL");
  expect_vec_parse_error("42", ANNEX_ELEM_FLOAT32, 3, "got an integer");
  expect_vec_parse_error("'[1, 2.5, 3]'", ANNEX_ELEM_INT8, 3, "int8");
  expect_vec_parse_error("'[1, 200, 3]'", ANNEX_ELEM_INT8, 3, "-128 to 127");
  expect_vec_parse_error("'[1,0,2,0,0,0,0,0]'", ANNEX_ELEM_BIT, 8, "0 or 1");
  expect_vec_parse_error("x'01'", ANNEX_ELEM_BIT, 16, "expects a BLOB of 2");
}

static void test_vector_int8_bit(void **state) {
  signed char a[4];
  unsigned char b[2];
  char *zErr = NULL;
  (void)state;
  assert_int_equal(parse_vec("'[-128, 127, 0, -1]'", ANNEX_ELEM_INT8, 4, a,
                             &zErr),
                   SQLITE_OK);
  assert_true(a[0] == -128 && a[1] == 127 && a[2] == 0 && a[3] == -1);
  assert_int_equal(parse_vec("'[1,0,0,0,0,0,0,1, 0,1,0,0,0,0,0,0]'",
                             ANNEX_ELEM_BIT, 16, b, &zErr),
                   SQLITE_OK);
  assert_int_equal(b[0], 0x81);
  assert_int_equal(b[1], 0x02);
}

static void test_vector_json_roundtrip(void **state) {
  float a[4] = {0.1f, -3.0e-20f, 123456.789f, 1.0f / 3.0f};
  float back[4];
  char *zJson, *zErr = NULL;
  sqlite3_value *v;
  sqlite3_stmt *s;
  (void)state;
  zJson = annex_vector_to_json(ANNEX_ELEM_FLOAT32, a, 4);
  assert_non_null(zJson);
  assert_int_equal(sqlite3_prepare_v2(g_db, "SELECT ?", -1, &s, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(s, 1, zJson, -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  v = sqlite3_column_value(s, 0);
  assert_int_equal(annex_vector_parse(v, ANNEX_ELEM_FLOAT32, 4, "v", back,
                                      &zErr),
                   SQLITE_OK);
  assert_memory_equal(a, back, sizeof(a)); /* bit-exact round trip */
  sqlite3_finalize(s);
  sqlite3_free(zJson);
}

/* Top-k *********************************************************************/

static int hit_ref_cmp(const void *pa, const void *pb) {
  const annex_hit *a = pa, *b = pb;
  if (a->score != b->score) return a->score < b->score ? -1 : 1;
  return a->rowid < b->rowid ? -1 : a->rowid > b->rowid;
}

static void test_topk_matches_sort(void **state) {
  enum { N = 5000 };
  static annex_hit all[N], ref[N], heapMem[N];
  (void)state;
  srand(7);
  for (size_t k = 1; k <= N; k = k * 3 + 1) {
    annex_topk h;
    annex_topk_init(&h, heapMem, k);
    for (int i = 0; i < N; i++) {
      all[i].score = (float)(rand() % 100); /* many ties */
      all[i].rowid = rand() % 100000;
      annex_topk_push(&h, all[i].score, all[i].rowid);
    }
    memcpy(ref, all, sizeof(all));
    qsort(ref, N, sizeof(annex_hit), hit_ref_cmp);
    annex_topk_sort(&h);
    assert_int_equal(h.n, k < N ? k : N);
    for (size_t i = 0; i < h.n; i++) {
      assert_true(h.a[i].score == ref[i].score);
      assert_int_equal(h.a[i].rowid, ref[i].rowid);
    }
  }
}

static void test_hits_select_incremental(void **state) {
  enum { N = 3000 };
  static annex_hit a[N], ref[N];
  size_t done = 0, batch = 1;
  (void)state;
  srand(11);
  for (int i = 0; i < N; i++) {
    a[i].score = (float)(rand() % 500);
    a[i].rowid = i;
  }
  memcpy(ref, a, sizeof(a));
  qsort(ref, N, sizeof(annex_hit), hit_ref_cmp);
  while (done < N) {
    annex_hits_select(a, N, done, batch);
    done += batch;
    if (done > N) done = N;
    for (size_t i = 0; i < done; i++) {
      assert_true(a[i].score == ref[i].score);
      assert_int_equal(a[i].rowid, ref[i].rowid);
    }
    batch *= 2;
  }
}

static void test_topk_zero_capacity(void **state) {
  annex_hit mem[1];
  annex_topk h;
  (void)state;
  annex_topk_init(&h, mem, 0);
  assert_int_equal(annex_topk_push(&h, 1.0f, 1), 0);
  assert_int_equal(h.n, 0);
}

static int setup(void **state) {
  (void)state;
  return sqlite3_open(":memory:", &g_db);
}

static int teardown(void **state) {
  (void)state;
  return sqlite3_close(g_db);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_full),
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_config_vector_errors),
      cmocka_unit_test(test_vector_json_float),
      cmocka_unit_test(test_vector_errors),
      cmocka_unit_test(test_vector_int8_bit),
      cmocka_unit_test(test_vector_json_roundtrip),
      cmocka_unit_test(test_topk_matches_sort),
      cmocka_unit_test(test_hits_select_incremental),
      cmocka_unit_test(test_topk_zero_capacity),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
