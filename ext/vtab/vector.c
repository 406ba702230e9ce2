/*
** vector.c — vectors in and out of SQL values.
**
** Accepted input, per element type of the column:
**   float[N]  BLOB of 4*N bytes (little-endian IEEE-754 float32), or JSON
**             text: an array of N finite numbers, e.g. '[0.1, -2, 3e-4]'
**   int8[N]   BLOB of N bytes, or a JSON array of N integers in -128..127
**   bit[N]    BLOB of N/8 bytes (bit i is bit i%8 of byte i/8), or a JSON
**             array of N values that are 0 or 1
** NaN and infinities are refused. A BLOB that carries one of annex's
** subtypes (see annex_int.h) must match the column's element type.
*/
#include "annex_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Growable array of doubles parsed from JSON. */
typedef struct json_nums {
  double *a;  /* values (sqlite3_malloc64) */
  int n;      /* values held */
  int nAlloc; /* capacity */
} json_nums;

static int json_push(json_nums *p, double v) {
  if (p->n == p->nAlloc) {
    int nNew = p->nAlloc ? p->nAlloc * 2 : 64;
    double *aNew = sqlite3_realloc64(p->a, sizeof(double) * (size_t)nNew);
    if (aNew == NULL) return SQLITE_NOMEM;
    p->a = aNew;
    p->nAlloc = nNew;
  }
  p->a[p->n++] = v;
  return SQLITE_OK;
}

static const char *json_ws(const char *z) {
  while (*z == ' ' || *z == '\t' || *z == '\n' || *z == '\r') z++;
  return z;
}

/* Strict JSON number at z; returns the end or NULL if not a number. */
static const char *json_number(const char *z, double *pv) {
  const char *zStart = z;
  char *zEnd;
  if (*z == '-') z++;
  if (*z < '0' || *z > '9') return NULL;
  while (*z >= '0' && *z <= '9') z++;
  if (*z == '.') {
    z++;
    if (*z < '0' || *z > '9') return NULL;
    while (*z >= '0' && *z <= '9') z++;
  }
  if (*z == 'e' || *z == 'E') {
    z++;
    if (*z == '+' || *z == '-') z++;
    if (*z < '0' || *z > '9') return NULL;
    while (*z >= '0' && *z <= '9') z++;
  }
  *pv = strtod(zStart, &zEnd);
  return zEnd == z ? z : NULL;
}

/* Parse a JSON array of numbers. Returns SQLITE_OK, SQLITE_NOMEM, or
** SQLITE_ERROR with *pzErr naming the offset of the problem. */
static int json_parse_array(const char *zJson, json_nums *pOut, char **pzErr) {
  const char *z = json_ws(zJson);
  memset(pOut, 0, sizeof(*pOut));
  if (*z != '[') goto malformed;
  z = json_ws(z + 1);
  if (*z == ']') {
    z = json_ws(z + 1);
    if (*z) goto malformed;
    return SQLITE_OK;
  }
  for (;;) {
    double v;
    const char *zEnd = json_number(z, &v);
    if (zEnd == NULL) goto malformed;
    if (json_push(pOut, v) != SQLITE_OK) {
      sqlite3_free(pOut->a);
      pOut->a = NULL;
      return SQLITE_NOMEM;
    }
    z = json_ws(zEnd);
    if (*z == ']') break;
    if (*z != ',') goto malformed;
    z = json_ws(z + 1);
  }
  z = json_ws(z + 1);
  if (*z == 0) return SQLITE_OK;
malformed:
  sqlite3_free(pOut->a);
  pOut->a = NULL;
  *pzErr = sqlite3_mprintf("malformed JSON vector at offset %d: expected an "
                           "array of numbers like [0.5, -1, 2]",
                           (int)(z - zJson));
  return SQLITE_ERROR;
}

static int check_subtype(sqlite3_value *v, annex_elem eElem, const char *zCol,
                         char **pzErr) {
  unsigned int st = sqlite3_value_subtype(v);
  annex_elem eGot;
  if (st == ANNEX_SUBTYPE_FLOAT32) eGot = ANNEX_ELEM_FLOAT32;
  else if (st == ANNEX_SUBTYPE_INT8) eGot = ANNEX_ELEM_INT8;
  else if (st == ANNEX_SUBTYPE_BIT) eGot = ANNEX_ELEM_BIT;
  else return SQLITE_OK;
  if (eGot == eElem) return SQLITE_OK;
  *pzErr = sqlite3_mprintf("column %s holds %s vectors, got a %s vector",
                           zCol, annex_elem_name(eElem), annex_elem_name(eGot));
  return SQLITE_ERROR;
}

static int check_finite_f32(const float *a, int n, char **pzErr) {
  for (int i = 0; i < n; i++) {
    if (!isfinite(a[i])) {
      *pzErr = sqlite3_mprintf("vector element %d is %s: NaN and infinity are "
                               "not allowed", i, isnan(a[i]) ? "NaN" : "infinite");
      return SQLITE_ERROR;
    }
  }
  return SQLITE_OK;
}

static int parse_blob(sqlite3_value *v, annex_elem eElem, int nDim,
                      const char *zCol, void *out, char **pzErr) {
  size_t szWant = annex_vector_bytes(eElem, (size_t)nDim);
  int nGot = sqlite3_value_bytes(v);
  const void *pBlob = sqlite3_value_blob(v);
  if ((size_t)nGot != szWant) {
    if (eElem == ANNEX_ELEM_FLOAT32 && nGot % 4 == 0) {
      *pzErr = sqlite3_mprintf("dimension mismatch for %s: the vector has %d "
                               "dimensions, the column expects %d",
                               zCol, nGot / 4, nDim);
    } else {
      *pzErr = sqlite3_mprintf("%s[%d] column %s expects a BLOB of %lld "
                               "bytes, got %d bytes",
                               annex_elem_name(eElem), nDim, zCol,
                               (long long)szWant, nGot);
    }
    return SQLITE_ERROR;
  }
  if (szWant > 0 && pBlob == NULL) return SQLITE_NOMEM;
  memcpy(out, pBlob, szWant);
  if (eElem == ANNEX_ELEM_FLOAT32) return check_finite_f32(out, nDim, pzErr);
  return SQLITE_OK;
}

/* Convert parsed JSON numbers into the element type. */
static int convert_json(const json_nums *pNum, annex_elem eElem, void *out,
                        char **pzErr) {
  for (int i = 0; i < pNum->n; i++) {
    double d = pNum->a[i];
    if (eElem == ANNEX_ELEM_FLOAT32) {
      float f = (float)d;
      if (!isfinite(f)) {
        *pzErr = sqlite3_mprintf("vector element %d (%g) is out of float32 "
                                 "range", i, d);
        return SQLITE_ERROR;
      }
      ((float *)out)[i] = f;
    } else if (eElem == ANNEX_ELEM_INT8) {
      if (d != floor(d) || d < -128 || d > 127) {
        *pzErr = sqlite3_mprintf("int8 vector element %d is %g: expected an "
                                 "integer from -128 to 127", i, d);
        return SQLITE_ERROR;
      }
      ((signed char *)out)[i] = (signed char)d;
    } else {
      unsigned char *a = out;
      if (d != 0 && d != 1) {
        *pzErr = sqlite3_mprintf("bit vector element %d is %g: expected 0 or "
                                 "1", i, d);
        return SQLITE_ERROR;
      }
      if (i % 8 == 0) a[i / 8] = 0;
      if (d == 1) a[i / 8] |= (unsigned char)(1u << (i % 8));
    }
  }
  return SQLITE_OK;
}

int annex_vector_parse(sqlite3_value *v, annex_elem eElem, int nDim,
                       const char *zCol, void *out, char **pzErr) {
  int eType = sqlite3_value_type(v);
  json_nums nums;
  int rc;
  if (eType == SQLITE_BLOB) {
    rc = check_subtype(v, eElem, zCol, pzErr);
    if (rc == SQLITE_OK) rc = parse_blob(v, eElem, nDim, zCol, out, pzErr);
    return rc;
  }
  if (eType != SQLITE_TEXT) {
    *pzErr = sqlite3_mprintf("column %s expects a vector (a BLOB or JSON "
                             "text), got %s", zCol,
                             eType == SQLITE_NULL ? "NULL"
                             : eType == SQLITE_INTEGER ? "an integer"
                                                       : "a real number");
    return SQLITE_ERROR;
  }
  {
    const char *zText = (const char *)sqlite3_value_text(v);
    if (zText == NULL) return SQLITE_NOMEM;
    rc = json_parse_array(zText, &nums, pzErr);
  }
  if (rc != SQLITE_OK) return rc;
  if (nums.n != nDim) {
    *pzErr = sqlite3_mprintf("dimension mismatch for %s: the vector has %d "
                             "dimensions, the column expects %d",
                             zCol, nums.n, nDim);
    rc = SQLITE_ERROR;
  } else {
    rc = convert_json(&nums, eElem, out, pzErr);
  }
  sqlite3_free(nums.a);
  return rc;
}

int annex_vector_parse_any(sqlite3_value *v, float **paOut, int *pnOut,
                           char **pzErr) {
  int eType = sqlite3_value_type(v);
  *paOut = NULL;
  *pnOut = 0;
  if (eType == SQLITE_BLOB) {
    int n = sqlite3_value_bytes(v);
    unsigned int st = sqlite3_value_subtype(v);
    float *a;
    if (st == ANNEX_SUBTYPE_INT8 || st == ANNEX_SUBTYPE_BIT) {
      *pzErr = sqlite3_mprintf("expected a float32 vector, got a %s vector",
                               st == ANNEX_SUBTYPE_INT8 ? "int8" : "bit");
      return SQLITE_ERROR;
    }
    if (n == 0 || n % 4 != 0) {
      *pzErr = sqlite3_mprintf("a float32 vector BLOB needs a non-zero "
                               "multiple of 4 bytes, got %d bytes", n);
      return SQLITE_ERROR;
    }
    a = sqlite3_malloc64((size_t)n);
    if (a == NULL) return SQLITE_NOMEM;
    memcpy(a, sqlite3_value_blob(v), (size_t)n);
    if (check_finite_f32(a, n / 4, pzErr) != SQLITE_OK) {
      sqlite3_free(a);
      return SQLITE_ERROR;
    }
    *paOut = a;
    *pnOut = n / 4;
    return SQLITE_OK;
  }
  if (eType == SQLITE_TEXT) {
    json_nums nums;
    const char *zText = (const char *)sqlite3_value_text(v);
    float *a;
    int rc;
    if (zText == NULL) return SQLITE_NOMEM;
    rc = json_parse_array(zText, &nums, pzErr);
    if (rc != SQLITE_OK) return rc;
    if (nums.n == 0) {
      *pzErr = sqlite3_mprintf("empty vector");
      return SQLITE_ERROR;
    }
    a = sqlite3_malloc64(sizeof(float) * (size_t)nums.n);
    if (a == NULL) {
      sqlite3_free(nums.a);
      return SQLITE_NOMEM;
    }
    rc = convert_json(&nums, ANNEX_ELEM_FLOAT32, a, pzErr);
    sqlite3_free(nums.a);
    if (rc != SQLITE_OK) {
      sqlite3_free(a);
      return rc;
    }
    *paOut = a;
    *pnOut = nums.n;
    return SQLITE_OK;
  }
  *pzErr = sqlite3_mprintf("expected a vector (a float32 BLOB or JSON text)");
  return SQLITE_ERROR;
}

/* Shortest text that reads back as the same float32. */
static int format_float(char *zBuf, size_t nBuf, float f) {
  for (int prec = 6; prec <= 9; prec++) {
    int n = snprintf(zBuf, nBuf, "%.*g", prec, (double)f);
    if ((float)strtod(zBuf, NULL) == f) return n;
  }
  return snprintf(zBuf, nBuf, "%.9g", (double)f);
}

char *annex_vector_to_json(annex_elem eElem, const void *p, int nDim) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  char zBuf[48];
  sqlite3_str_appendchar(s, 1, '[');
  for (int i = 0; i < nDim; i++) {
    if (i) sqlite3_str_appendchar(s, 1, ',');
    if (eElem == ANNEX_ELEM_FLOAT32) {
      float f;
      memcpy(&f, (const char *)p + 4 * (size_t)i, 4);
      format_float(zBuf, sizeof(zBuf), f);
      sqlite3_str_appendall(s, zBuf);
    } else if (eElem == ANNEX_ELEM_INT8) {
      sqlite3_str_appendf(s, "%d", ((const signed char *)p)[i]);
    } else {
      const unsigned char *a = p;
      sqlite3_str_appendf(s, "%d", (a[i / 8] >> (i % 8)) & 1);
    }
  }
  sqlite3_str_appendchar(s, 1, ']');
  return annex_str_finish(s);
}
