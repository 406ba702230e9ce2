/*
** functions.c — annex's scalar SQL functions.
**
**   annex_version()            the extension's version string
**   annex_vector(x)            JSON text or float32 BLOB -> float32 BLOB
**   annex_int8(x)              JSON integers or int8 BLOB -> int8 BLOB
**   annex_bit(x)               JSON 0/1 array or BLOB -> bit BLOB
**   annex_json(v)              vector -> JSON text (float32 unless v carries
**                              annex's int8 or bit subtype)
**   annex_distance(a, b, m)    distance between two float32 vectors under
**                              metric m: 'l2' (default), 'cosine', 'ip'
**   annex_normalize(v)         v / |v| as a float32 BLOB
**   annex_dims(v)              number of dimensions of a float32 vector
**   annex_threads([n])         the thread count of parallel work (sets it)
**   annex_cache_size([n])      the process-wide byte budget of the chunk
**                              cache of exact scans (sets it; 0: off,
**                              negative: the default, 1/8 of RAM)
**
** Vector-returning functions tag their BLOBs with a subtype (annex_int.h),
** so inserting an int8 vector into a float column is caught.
*/
#include "annex_int.h"

#include <math.h>
#include <string.h>

static void fn_version(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  (void)argv;
  sqlite3_result_text(ctx, ANNEX_VERSION, -1, SQLITE_STATIC);
}

static void result_rc(sqlite3_context *ctx, int rc, char *zErr) {
  if (rc == SQLITE_NOMEM) sqlite3_result_error_nomem(ctx);
  else sqlite3_result_error(ctx, zErr ? zErr : "annex: error", -1);
  sqlite3_free(zErr);
}

static void fn_vector(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  float *a;
  int n, rc;
  char *zErr = NULL;
  (void)argc;
  rc = annex_vector_parse_any(argv[0], &a, &n, &zErr);
  if (rc != SQLITE_OK) {
    result_rc(ctx, rc, zErr);
    return;
  }
  sqlite3_result_blob(ctx, a, n * 4, sqlite3_free);
  sqlite3_result_subtype(ctx, ANNEX_SUBTYPE_FLOAT32);
}

/* Length of a JSON array or BLOB in elements of type e (for int8/bit). */
static int typed_len(sqlite3_value *v, annex_elem e) {
  if (sqlite3_value_type(v) == SQLITE_BLOB) {
    int n = sqlite3_value_bytes(v);
    return e == ANNEX_ELEM_BIT ? n * 8 : n;
  }
  if (sqlite3_value_type(v) == SQLITE_TEXT) {
    const char *z = (const char *)sqlite3_value_text(v);
    int n = 0, bAny = 0;
    for (; z && *z; z++) {
      if (*z == ',') n++;
      if (*z >= '0' && *z <= '9') bAny = 1;
    }
    return bAny ? n + 1 : 0;
  }
  return 0;
}

static void fn_typed(sqlite3_context *ctx, sqlite3_value *v, annex_elem e,
                     unsigned int subtype) {
  int n = typed_len(v, e);
  size_t sz;
  void *p;
  char *zErr = NULL;
  int rc;
  if (n <= 0 || (e == ANNEX_ELEM_BIT && n % 8 != 0)) {
    sqlite3_result_error(ctx, e == ANNEX_ELEM_BIT
                                  ? "a bit vector needs a non-empty multiple "
                                    "of 8 elements"
                                  : "expected a non-empty vector", -1);
    return;
  }
  sz = annex_vector_bytes(e, (size_t)n);
  p = sqlite3_malloc64(sz);
  if (p == NULL) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  rc = annex_vector_parse(v, e, n, "argument", p, &zErr);
  if (rc != SQLITE_OK) {
    sqlite3_free(p);
    result_rc(ctx, rc, zErr);
    return;
  }
  sqlite3_result_blob(ctx, p, (int)sz, sqlite3_free);
  sqlite3_result_subtype(ctx, subtype);
}

static void fn_int8(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  fn_typed(ctx, argv[0], ANNEX_ELEM_INT8, ANNEX_SUBTYPE_INT8);
}

static void fn_bit(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  fn_typed(ctx, argv[0], ANNEX_ELEM_BIT, ANNEX_SUBTYPE_BIT);
}

static void fn_json(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  unsigned int st = sqlite3_value_subtype(argv[0]);
  char *z;
  (void)argc;
  if (sqlite3_value_type(argv[0]) == SQLITE_BLOB &&
      (st == ANNEX_SUBTYPE_INT8 || st == ANNEX_SUBTYPE_BIT)) {
    annex_elem e = st == ANNEX_SUBTYPE_INT8 ? ANNEX_ELEM_INT8 : ANNEX_ELEM_BIT;
    int n = sqlite3_value_bytes(argv[0]) * (e == ANNEX_ELEM_BIT ? 8 : 1);
    z = annex_vector_to_json(e, sqlite3_value_blob(argv[0]), n);
  } else {
    float *a;
    int n, rc;
    char *zErr = NULL;
    rc = annex_vector_parse_any(argv[0], &a, &n, &zErr);
    if (rc != SQLITE_OK) {
      result_rc(ctx, rc, zErr);
      return;
    }
    z = annex_vector_to_json(ANNEX_ELEM_FLOAT32, a, n);
    sqlite3_free(a);
  }
  if (z == NULL) sqlite3_result_error_nomem(ctx);
  else sqlite3_result_text(ctx, z, -1, sqlite3_free);
}

static void fn_distance(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  float *a = NULL, *b = NULL;
  int na = 0, nb = 0, rc;
  char *zErr = NULL;
  annex_metric m = ANNEX_METRIC_L2;
  if (argc == 3) {
    const char *z = (const char *)sqlite3_value_text(argv[2]);
    if (z && sqlite3_stricmp(z, "cosine") == 0) m = ANNEX_METRIC_COSINE;
    else if (z && sqlite3_stricmp(z, "ip") == 0) m = ANNEX_METRIC_IP;
    else if (!z || sqlite3_stricmp(z, "l2") != 0) {
      sqlite3_result_error(ctx, "annex_distance: metric must be 'l2', "
                                "'cosine' or 'ip'", -1);
      return;
    }
  }
  rc = annex_vector_parse_any(argv[0], &a, &na, &zErr);
  if (rc == SQLITE_OK) rc = annex_vector_parse_any(argv[1], &b, &nb, &zErr);
  if (rc == SQLITE_OK && na != nb) {
    zErr = sqlite3_mprintf("annex_distance: dimension mismatch (%d vs %d)", na,
                           nb);
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) {
    annex_distance_init();
    annex_dist_fn f = annex_distance_kernel(ANNEX_ELEM_FLOAT32, m);
    sqlite3_result_double(ctx, annex_score_to_distance(m, f(a, b, (size_t)na)));
  } else {
    result_rc(ctx, rc, zErr);
  }
  sqlite3_free(a);
  sqlite3_free(b);
}

static void fn_normalize(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  float *a;
  int n, rc;
  double ss = 0;
  char *zErr = NULL;
  (void)argc;
  rc = annex_vector_parse_any(argv[0], &a, &n, &zErr);
  if (rc != SQLITE_OK) {
    result_rc(ctx, rc, zErr);
    return;
  }
  for (int i = 0; i < n; i++) ss += (double)a[i] * a[i];
  if (ss == 0) {
    sqlite3_free(a);
    sqlite3_result_error(ctx, "annex_normalize: cannot normalize a zero "
                              "vector", -1);
    return;
  }
  for (int i = 0; i < n; i++) a[i] = (float)(a[i] / sqrt(ss));
  sqlite3_result_blob(ctx, a, n * 4, sqlite3_free);
  sqlite3_result_subtype(ctx, ANNEX_SUBTYPE_FLOAT32);
}

static void fn_dims(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  float *a;
  int n, rc;
  char *zErr = NULL;
  (void)argc;
  rc = annex_vector_parse_any(argv[0], &a, &n, &zErr);
  if (rc != SQLITE_OK) {
    result_rc(ctx, rc, zErr);
    return;
  }
  sqlite3_free(a);
  sqlite3_result_int(ctx, n);
}

/* annex_threads() reads, annex_threads(N) sets the process-wide thread
** count of parallel scans and batch queries (N <= 0: the default). */
static void fn_threads(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  if (argc == 1) {
    if (sqlite3_value_type(argv[0]) != SQLITE_INTEGER) {
      sqlite3_result_error(ctx, "annex_threads: expected an integer", -1);
      return;
    }
    annex_thread_set((int)sqlite3_value_int64(argv[0]));
  }
  sqlite3_result_int(ctx, annex_thread_count());
}

/* annex_cache_size() reads, annex_cache_size(N) sets the budget of the
** chunk cache (chunk_cache.c); when it falls below what is held, each
** table drops its copies at its next scan. */
static void fn_cache_size(sqlite3_context *ctx, int argc,
                          sqlite3_value **argv) {
  if (argc == 1) {
    if (sqlite3_value_type(argv[0]) != SQLITE_INTEGER) {
      sqlite3_result_error(ctx, "annex_cache_size: expected an integer", -1);
      return;
    }
    annex_cache_set_limit(sqlite3_value_int64(argv[0]));
  }
  sqlite3_result_int64(ctx, annex_cache_limit());
}

int annex_register_functions(sqlite3 *db) {
  static const struct {
    const char *zName;
    int nArg;
    void (*xFunc)(sqlite3_context *, int, sqlite3_value **);
  } aFunc[] = {
      {"annex_version", 0, fn_version},   {"annex_vector", 1, fn_vector},
      {"annex_int8", 1, fn_int8},         {"annex_bit", 1, fn_bit},
      {"annex_json", 1, fn_json},         {"annex_distance", 2, fn_distance},
      {"annex_distance", 3, fn_distance}, {"annex_normalize", 1, fn_normalize},
      {"annex_dims", 1, fn_dims},         {"annex_threads", 0, fn_threads},
      {"annex_threads", 1, fn_threads},   {"annex_cache_size", 0, fn_cache_size},
      {"annex_cache_size", 1, fn_cache_size},
  };
  int rc = SQLITE_OK;
  for (size_t i = 0; i < sizeof(aFunc) / sizeof(aFunc[0]) && rc == SQLITE_OK;
       i++) {
    int bPure = aFunc[i].xFunc != fn_threads && aFunc[i].xFunc != fn_cache_size;
    rc = sqlite3_create_function_v2(
        db, aFunc[i].zName, aFunc[i].nArg,
        SQLITE_UTF8 | (bPure ? SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS
                             : SQLITE_DIRECTONLY),
        NULL, aFunc[i].xFunc, NULL, NULL, NULL);
  }
  return rc;
}
