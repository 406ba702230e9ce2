/*
** vecio.c — reading the vector file formats of vecio.h.
**
** Owns: telling formats apart by extension, and parsing .fvecs / .bvecs /
** .ivecs (TEXMEX), .npy (version 1-3 headers; '<f4', 2-D, C order), CSV
** and JSON lines. Writing is vecwrite.c's. Binary rows are validated as
** they stream (every row's d must equal the first one's, the size must be
** a whole number of rows); text rows must all have the first row's length
** and finite numbers. Assumes a little-endian host, as annex itself does
** for its float32 BLOBs.
*/
#define _POSIX_C_SOURCE 200809L
#include "vecio.h"

#include <sqlite3.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vecio.c reads little-endian files on a little-endian host only"
#endif

#define MAX_DIM 65536

vecfmt vecfmt_from_path(const char *zPath) {
  static const struct { const char *zExt; vecfmt f; } a[] = {
    {".fvecs", VF_FVECS}, {".bvecs", VF_BVECS}, {".ivecs", VF_IVECS},
    {".npy", VF_NPY},     {".csv", VF_CSV},     {".txt", VF_CSV},
    {".jsonl", VF_JSONL}, {".ndjson", VF_JSONL}, {".json", VF_JSONL},
  };
  size_t n = strlen(zPath);
  for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
    size_t m = strlen(a[i].zExt);
    if (n > m && strcasecmp(zPath + n - m, a[i].zExt) == 0) return a[i].f;
  }
  return VF_UNKNOWN;
}

const char *vecfmt_name(vecfmt f) {
  switch (f) {
    case VF_FVECS: return "fvecs";
    case VF_BVECS: return "bvecs";
    case VF_IVECS: return "ivecs";
    case VF_NPY: return "npy";
    case VF_CSV: return "csv";
    case VF_JSONL: return "jsonl";
    case VF_UNKNOWN: break;
  }
  return "unknown";
}

char *vecio_unknown_ext(const char *zPath) {
  return sqlite3_mprintf("%s: unknown file type (use .fvecs, .bvecs, .npy, "
                         ".csv or .jsonl)", zPath);
}

/* ================================================================ reader */

struct vecreader {
  FILE *f;
  char *zPath;
  vecfmt fmt;
  int dim;
  int64_t nRows;    /* -1 for text */
  int64_t nSize;
  int64_t nOffset;
  int64_t iRow;     /* rows returned so far */
  /* text formats */
  char *zLine;
  size_t nLineCap;
  int64_t iLine;
  float *aFirst;    /* the first row, parsed by open to learn dim; then
                    ** the parse buffer of every row */
  int nFirstCap;    /* its capacity in floats */
  int bFirstPending;
  /* bvecs */
  unsigned char *aByte;
};

/* Parse one line of CSV or JSON lines into *paOut (grown as needed).
** Returns the element count, 0 for a blank line, -1 on error. */
static int parse_text_row(vecreader *r, const char *z, float **paOut,
                          int *pnCap, char **pzErr) {
  const char *p = z;
  int n = 0, json = r->fmt == VF_JSONL;
  while (isspace((unsigned char)*p)) p++;
  if (*p == 0) return 0;
  if (json) {
    if (*p != '[') {
      *pzErr = sqlite3_mprintf("%s line %lld: expected a JSON array", r->zPath,
                               (long long)r->iLine);
      return -1;
    }
    p++;
  }
  for (;;) {
    char *zEnd;
    float v;
    while (isspace((unsigned char)*p)) p++;
    if (json && n == 0 && *p == ']') break; /* [] is caught below */
    errno = 0;
    v = strtof(p, &zEnd);
    if (zEnd == p || !isfinite(v)) {
      *pzErr = sqlite3_mprintf("%s line %lld: element %d is not a finite "
                               "number", r->zPath, (long long)r->iLine, n + 1);
      return -1;
    }
    if (n == *pnCap) {
      int nNew = *pnCap ? *pnCap * 2 : 64;
      float *a;
      if (nNew > MAX_DIM) nNew = MAX_DIM + 1;
      if (n >= MAX_DIM) {
        *pzErr = sqlite3_mprintf("%s line %lld: more than %d numbers",
                                 r->zPath, (long long)r->iLine, MAX_DIM);
        return -1;
      }
      a = realloc(*paOut, sizeof(float) * (size_t)nNew);
      if (a == NULL) {
        *pzErr = sqlite3_mprintf("out of memory");
        return -1;
      }
      *paOut = a;
      *pnCap = nNew;
    }
    (*paOut)[n++] = v;
    p = zEnd;
    while (isspace((unsigned char)*p)) p++;
    if (*p == ',') {
      p++;
      continue;
    }
    break;
  }
  if (json) {
    if (*p != ']') {
      *pzErr = sqlite3_mprintf("%s line %lld: expected ',' or ']'", r->zPath,
                               (long long)r->iLine);
      return -1;
    }
    p++;
  }
  while (isspace((unsigned char)*p)) p++;
  if (*p != 0 || n == 0) {
    *pzErr = sqlite3_mprintf("%s line %lld: %s", r->zPath, (long long)r->iLine,
                             n == 0 ? "an empty vector"
                                    : "unexpected text after the numbers");
    return -1;
  }
  return n;
}

/* Read the next non-blank text line into pOut (dim known) or r->aFirst.
** 1 row, 0 end, -1 error. */
static int next_text_row(vecreader *r, float **paOut, int *pnCap,
                         char **pzErr) {
  for (;;) {
    ssize_t len = getline(&r->zLine, &r->nLineCap, r->f);
    int n;
    if (len < 0) {
      if (ferror(r->f)) {
        *pzErr = sqlite3_mprintf("%s: read error: %s", r->zPath,
                                 strerror(errno));
        return -1;
      }
      return 0;
    }
    r->nOffset += len;
    r->iLine++;
    n = parse_text_row(r, r->zLine, paOut, pnCap, pzErr);
    if (n < 0) return -1;
    if (n == 0) continue;
    if (r->dim && n != r->dim) {
      *pzErr = sqlite3_mprintf("%s line %lld: %d numbers, the first row has "
                               "%d", r->zPath, (long long)r->iLine, n, r->dim);
      return -1;
    }
    if (r->dim == 0) r->dim = n;
    return 1;
  }
}

/* .npy: parse the header, leave f at the data. */
static int open_npy(vecreader *r, char **pzErr) {
  unsigned char pre[10];
  uint32_t nHdr;
  size_t nPre;
  char *zHdr, *p;
  long long n0 = -1, n1 = -1;
  if (fread(pre, 1, 8, r->f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) {
    *pzErr = sqlite3_mprintf("%s: not a .npy file", r->zPath);
    return -1;
  }
  if (pre[6] == 1) {
    if (fread(pre + 8, 1, 2, r->f) != 2) goto truncated;
    nHdr = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
    nPre = 10;
  } else if (pre[6] == 2 || pre[6] == 3) {
    unsigned char b[4];
    if (fread(b, 1, 4, r->f) != 4) goto truncated;
    nHdr = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
    nPre = 12;
  } else {
    *pzErr = sqlite3_mprintf("%s: .npy version %d is not supported", r->zPath,
                             pre[6]);
    return -1;
  }
  if (nHdr > 1 << 20) goto bad;
  zHdr = malloc(nHdr + 1);
  if (zHdr == NULL) {
    *pzErr = sqlite3_mprintf("out of memory");
    return -1;
  }
  if (fread(zHdr, 1, nHdr, r->f) != nHdr) {
    free(zHdr);
    goto truncated;
  }
  zHdr[nHdr] = 0;
  /* {'descr': '<f4', 'fortran_order': False, 'shape': (1000, 128), } */
  p = strstr(zHdr, "'descr'");
  if (p == NULL || (p = strchr(p + 7, '\'')) == NULL ||
      (strncmp(p, "'<f4'", 5) != 0 && strncmp(p, "'=f4'", 5) != 0)) {
    *pzErr = sqlite3_mprintf("%s: the array must be little-endian float32 "
                             "('<f4'; numpy: a.astype('<f4'))", r->zPath);
    free(zHdr);
    return -1;
  }
  p = strstr(zHdr, "'fortran_order'");
  if (p == NULL || strstr(p, "False") == NULL ||
      (strstr(p, "True") && strstr(p, "True") < strstr(p, "False"))) {
    *pzErr = sqlite3_mprintf("%s: the array must be in C order "
                             "(numpy: np.ascontiguousarray(a))", r->zPath);
    free(zHdr);
    return -1;
  }
  p = strstr(zHdr, "'shape'");
  if (p && (p = strchr(p, '(')) != NULL) {
    char *q;
    n0 = strtoll(p + 1, &q, 10);
    if (q == p + 1) n0 = -1;
    while (isspace((unsigned char)*q)) q++;
    if (*q == ',') {
      char *q2;
      n1 = strtoll(q + 1, &q2, 10);
      if (q2 == q + 1) n1 = -1;
      else {
        while (isspace((unsigned char)*q2)) q2++;
        if (*q2 == ',') q2++;
        while (isspace((unsigned char)*q2)) q2++;
        if (*q2 != ')') n1 = -1; /* more than two dimensions */
      }
    }
  }
  free(zHdr);
  if (n0 < 0 || n1 < 1 || n1 > MAX_DIM) {
    *pzErr = sqlite3_mprintf("%s: the array must be 2-D (rows, dimensions) "
                             "with 1 to %d dimensions", r->zPath, MAX_DIM);
    return -1;
  }
  r->dim = (int)n1;
  r->nRows = n0;
  r->nOffset = (int64_t)nPre + nHdr;
  if (r->nSize != r->nOffset + r->nRows * r->dim * 4) {
    *pzErr = sqlite3_mprintf("%s: %lld bytes of data, the shape (%lld, %d) "
                             "needs %lld", r->zPath,
                             (long long)(r->nSize - r->nOffset), n0, r->dim,
                             (long long)(r->nRows * r->dim * 4));
    return -1;
  }
  return 0;
truncated:
  *pzErr = sqlite3_mprintf("%s: truncated .npy header", r->zPath);
  return -1;
bad:
  *pzErr = sqlite3_mprintf("%s: malformed .npy header", r->zPath);
  return -1;
}

/* .fvecs / .bvecs / .ivecs: dimension from the first row, count from size. */
static int open_vecs(vecreader *r, int elemSize, char **pzErr) {
  int32_t d;
  int64_t rowBytes;
  if (r->nSize == 0) {
    r->dim = 0;
    r->nRows = 0;
    *pzErr = sqlite3_mprintf("%s: empty file", r->zPath);
    return -1;
  }
  if (fread(&d, 4, 1, r->f) != 1 || fseek(r->f, 0, SEEK_SET) != 0) {
    *pzErr = sqlite3_mprintf("%s: unreadable", r->zPath);
    return -1;
  }
  if (d <= 0 || d > MAX_DIM) {
    *pzErr = sqlite3_mprintf("%s: bad dimension %d in the first row (is it "
                             "a .%s file?)", r->zPath, (int)d,
                             vecfmt_name(r->fmt));
    return -1;
  }
  rowBytes = 4 + (int64_t)elemSize * d;
  if (r->nSize % rowBytes != 0) {
    *pzErr = sqlite3_mprintf("%s: size %lld is not a whole number of %lld-byte"
                             " rows", r->zPath, (long long)r->nSize,
                             (long long)rowBytes);
    return -1;
  }
  r->dim = d;
  r->nRows = r->nSize / rowBytes;
  return 0;
}

vecreader *vecreader_open(const char *zPath, char **pzErr) {
  vecreader *r;
  struct stat st;
  int rc = 0;
  vecfmt fmt = vecfmt_from_path(zPath);
  *pzErr = NULL;
  if (fmt == VF_UNKNOWN) {
    *pzErr = vecio_unknown_ext(zPath);
    return NULL;
  }
  r = calloc(1, sizeof *r);
  if (r == NULL || (r->zPath = strdup(zPath)) == NULL) {
    free(r);
    *pzErr = sqlite3_mprintf("out of memory");
    return NULL;
  }
  r->fmt = fmt;
  r->nRows = -1;
  r->f = fopen(zPath, "rb");
  if (r->f == NULL) {
    *pzErr = sqlite3_mprintf("cannot open %s: %s", zPath, strerror(errno));
    vecreader_close(r);
    return NULL;
  }
  setvbuf(r->f, NULL, _IOFBF, 1 << 20);
  if (fstat(fileno(r->f), &st) != 0) {
    *pzErr = sqlite3_mprintf("cannot stat %s: %s", zPath, strerror(errno));
    vecreader_close(r);
    return NULL;
  }
  r->nSize = st.st_size;
  switch (fmt) {
    case VF_FVECS: case VF_IVECS: rc = open_vecs(r, 4, pzErr); break;
    case VF_BVECS:
      rc = open_vecs(r, 1, pzErr);
      if (rc == 0 && (r->aByte = malloc((size_t)r->dim)) == NULL) {
        *pzErr = sqlite3_mprintf("out of memory");
        rc = -1;
      }
      break;
    case VF_NPY: rc = open_npy(r, pzErr); break;
    case VF_CSV: case VF_JSONL:
      rc = next_text_row(r, &r->aFirst, &r->nFirstCap, pzErr);
      if (rc == 0) {
        *pzErr = sqlite3_mprintf("%s: no vectors in the file", zPath);
        rc = -1;
      } else if (rc == 1) {
        r->bFirstPending = 1;
        rc = 0;
      }
      break;
    case VF_UNKNOWN: break;
  }
  if (rc != 0) {
    vecreader_close(r);
    return NULL;
  }
  return r;
}

int vecreader_dim(const vecreader *r) { return r->dim; }
int64_t vecreader_rows(const vecreader *r) { return r->nRows; }
int64_t vecreader_size(const vecreader *r) { return r->nSize; }
int64_t vecreader_offset(const vecreader *r) { return r->nOffset; }
vecfmt vecreader_format(const vecreader *r) { return r->fmt; }

int vecreader_next(vecreader *r, float *out, char **pzErr) {
  int32_t d;
  *pzErr = NULL;
  switch (r->fmt) {
    case VF_FVECS: case VF_IVECS: case VF_BVECS: {
      size_t esz = r->fmt == VF_BVECS ? 1 : 4;
      if (r->iRow >= r->nRows) return 0;
      if (fread(&d, 4, 1, r->f) != 1) goto short_read;
      if (d != r->dim) {
        *pzErr = sqlite3_mprintf("%s row %lld: dimension %d, the first row has"
                                 " %d", r->zPath, (long long)r->iRow + 1,
                                 (int)d, r->dim);
        return -1;
      }
      if (r->fmt == VF_BVECS) {
        if (fread(r->aByte, 1, (size_t)d, r->f) != (size_t)d) goto short_read;
        for (int i = 0; i < d; i++) out[i] = (float)r->aByte[i];
      } else if (fread(out, 4, (size_t)d, r->f) != (size_t)d) {
        goto short_read;
      }
      if (r->fmt == VF_IVECS) {
        for (int i = 0; i < d; i++) {
          int32_t v;
          memcpy(&v, &out[i], 4);
          out[i] = (float)v;
        }
      }
      r->nOffset += 4 + (int64_t)esz * d;
      r->iRow++;
      return 1;
    }
    case VF_NPY:
      if (r->iRow >= r->nRows) return 0;
      if (fread(out, 4, (size_t)r->dim, r->f) != (size_t)r->dim) {
        goto short_read;
      }
      r->nOffset += 4 * (int64_t)r->dim;
      r->iRow++;
      return 1;
    case VF_CSV: case VF_JSONL: {
      int rc;
      if (r->bFirstPending) {
        memcpy(out, r->aFirst, sizeof(float) * (size_t)r->dim);
        r->bFirstPending = 0;
        r->iRow++;
        return 1;
      }
      /* parse into aFirst (it grows for a too-long row, which is then an
      ** error), copy the dim numbers out */
      rc = next_text_row(r, &r->aFirst, &r->nFirstCap, pzErr);
      if (rc == 1) {
        memcpy(out, r->aFirst, sizeof(float) * (size_t)r->dim);
        r->iRow++;
      }
      return rc;
    }
    case VF_UNKNOWN: break;
  }
  return -1;
short_read:
  *pzErr = sqlite3_mprintf("%s: %s after row %lld", r->zPath,
                           ferror(r->f) ? strerror(errno) : "truncated",
                           (long long)r->iRow);
  return -1;
}

void vecreader_close(vecreader *r) {
  if (r == NULL) return;
  if (r->f) fclose(r->f);
  free(r->zPath);
  free(r->zLine);
  free(r->aFirst);
  free(r->aByte);
  free(r);
}

int vecs_load(const char *zPath, void **ppData, int *pDim, int64_t *pN,
              char **pzErr) {
  vecreader *r;
  vecfmt fmt = vecfmt_from_path(zPath);
  char *a;
  int32_t d;
  *ppData = NULL;
  if (fmt != VF_FVECS && fmt != VF_IVECS) {
    *pzErr = sqlite3_mprintf("%s: expected an .fvecs or .ivecs file", zPath);
    return -1;
  }
  r = vecreader_open(zPath, pzErr);
  if (r == NULL) return -1;
  a = malloc((size_t)r->nRows * (size_t)r->dim * 4 + 1);
  if (a == NULL) {
    *pzErr = sqlite3_mprintf("out of memory loading %s", zPath);
    vecreader_close(r);
    return -1;
  }
  /* raw copy, no int -> float conversion */
  for (int64_t i = 0; i < r->nRows; i++) {
    if (fread(&d, 4, 1, r->f) != 1 ||
        fread(a + (size_t)i * (size_t)r->dim * 4, 4, (size_t)r->dim, r->f) !=
            (size_t)r->dim) {
      *pzErr = sqlite3_mprintf("%s: read error at row %lld", zPath,
                               (long long)i + 1);
      goto fail;
    }
    if (d != r->dim) {
      *pzErr = sqlite3_mprintf("%s row %lld: dimension %d, the first row has "
                               "%d", zPath, (long long)i + 1, (int)d, r->dim);
      goto fail;
    }
  }
  *ppData = a;
  *pDim = r->dim;
  *pN = r->nRows;
  vecreader_close(r);
  return 0;
fail:
  free(a);
  vecreader_close(r);
  return -1;
}
