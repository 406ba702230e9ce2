/*
** vecwrite.c — writing the vector file formats of vecio.h.
**
** Owns: .fvecs, .npy (version 1.0 header, '<f4', padded to 64 bytes as
** numpy.save does, so a file numpy wrote comes back byte-identical), CSV
** and JSON lines with the shortest float text (vecio_fmt_float). A failed
** export removes its half-written file.
*/
#define _POSIX_C_SOURCE 200809L
#include "vecio.h"

#include <sqlite3.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vecwrite.c writes little-endian files on a little-endian host only"
#endif

struct vecwriter {
  FILE *f;
  char *zPath;
  vecfmt fmt;
  int dim;
  int64_t nRows;   /* announced */
  int64_t nPut;
  char *zBuf;      /* one text row */
  size_t nBuf;
};

/* Shortest digits that read back as f (%.*e for 1..9 significant digits),
** then written plainly when the exponent is -7 < e < 21 (10, not 1e+01),
** else as d.ddde-N, like JavaScript's number to string. nBuf >= 32. */
int vecio_fmt_float(char *zBuf, int nBuf, float f) {
  char zE[48];
  int prec, ex, n;
  char *p;
  if (f == 0) return snprintf(zBuf, (size_t)nBuf, signbit(f) ? "-0" : "0");
  for (prec = 0; prec < 9; prec++) {
    snprintf(zE, sizeof zE, "%.*e", prec, (double)f);
    if (strtof(zE, NULL) == f) break;
  }
  p = strchr(zE, 'e');
  ex = p ? atoi(p + 1) : 0;
  if (ex >= prec && ex < 21) {
    /* an integer: the significant digits, then zeros (1e20 -> 1000...0,
    ** not the 21 exact digits of the float nearest to it) */
    int o = 0;
    for (const char *c = zE; c < p && o < nBuf - 1; c++) {
      if (*c != '.') zBuf[o++] = *c;
    }
    for (int i = 0; i < ex - prec && o < nBuf - 1; i++) zBuf[o++] = '0';
    zBuf[o] = 0;
    n = o;
  } else if (ex > -7 && ex < 21) {
    n = snprintf(zBuf, (size_t)nBuf, "%.*f", prec - ex, (double)f);
  } else {
    /* d.ddde-07 -> d.ddde-7 */
    *p = 0;
    n = snprintf(zBuf, (size_t)nBuf, "%se%d", zE, ex);
  }
  return n;
}

static int write_npy_header(vecwriter *w) {
  char zDict[128];
  char zHdr[256];
  int n = snprintf(zDict, sizeof zDict,
                   "{'descr': '<f4', 'fortran_order': False, 'shape': "
                   "(%lld, %d), }",
                   (long long)w->nRows, w->dim);
  /* magic(6) + version(2) + len(2) + dict + spaces + '\n', a multiple of 64 */
  int total = 10 + n + 1;
  int pad = (64 - total % 64) % 64;
  int nHdr = n + pad + 1;
  memcpy(zHdr, "\x93NUMPY\x01\x00", 8);
  zHdr[8] = (char)(nHdr & 0xff);
  zHdr[9] = (char)(nHdr >> 8);
  memcpy(zHdr + 10, zDict, (size_t)n);
  memset(zHdr + 10 + n, ' ', (size_t)pad);
  zHdr[10 + n + pad] = '\n';
  return fwrite(zHdr, 1, (size_t)(10 + nHdr), w->f) == (size_t)(10 + nHdr)
             ? 0 : -1;
}

vecwriter *vecwriter_open(const char *zPath, int dim, int64_t nRows,
                          char **pzErr) {
  vecwriter *w;
  vecfmt fmt = vecfmt_from_path(zPath);
  *pzErr = NULL;
  if (fmt == VF_UNKNOWN) {
    *pzErr = vecio_unknown_ext(zPath);
    return NULL;
  }
  if (fmt == VF_BVECS || fmt == VF_IVECS) {
    *pzErr = sqlite3_mprintf("%s: cannot write .%s (write .fvecs, .npy, .csv"
                             " or .jsonl)", zPath, vecfmt_name(fmt));
    return NULL;
  }
  w = calloc(1, sizeof *w);
  if (w == NULL || (w->zPath = strdup(zPath)) == NULL) {
    free(w);
    *pzErr = sqlite3_mprintf("out of memory");
    return NULL;
  }
  w->fmt = fmt;
  w->dim = dim;
  w->nRows = nRows;
  if (fmt == VF_CSV || fmt == VF_JSONL) {
    w->nBuf = (size_t)dim * 20 + 8;
    w->zBuf = malloc(w->nBuf);
    if (w->zBuf == NULL) {
      *pzErr = sqlite3_mprintf("out of memory");
      vecwriter_abort(w);
      return NULL;
    }
  }
  w->f = fopen(zPath, "wb");
  if (w->f == NULL) {
    *pzErr = sqlite3_mprintf("cannot create %s: %s", zPath, strerror(errno));
    vecwriter_abort(w);
    return NULL;
  }
  setvbuf(w->f, NULL, _IOFBF, 1 << 20);
  if (fmt == VF_NPY && write_npy_header(w) != 0) {
    *pzErr = sqlite3_mprintf("%s: write error: %s", zPath, strerror(errno));
    vecwriter_abort(w);
    return NULL;
  }
  return w;
}

int vecwriter_put(vecwriter *w, const float *v, char **pzErr) {
  int ok = 1;
  int32_t d = w->dim;
  *pzErr = NULL;
  if (w->fmt == VF_NPY && w->nPut >= w->nRows) {
    *pzErr = sqlite3_mprintf("%s: more rows than the %lld announced",
                             w->zPath, (long long)w->nRows);
    return -1;
  }
  switch (w->fmt) {
    case VF_FVECS:
      ok = fwrite(&d, 4, 1, w->f) == 1 &&
           fwrite(v, 4, (size_t)d, w->f) == (size_t)d;
      break;
    case VF_NPY:
      ok = fwrite(v, 4, (size_t)d, w->f) == (size_t)d;
      break;
    case VF_CSV: case VF_JSONL: {
      size_t o = 0;
      if (w->fmt == VF_JSONL) w->zBuf[o++] = '[';
      for (int i = 0; i < d; i++) {
        if (i > 0) {
          w->zBuf[o++] = ',';
          if (w->fmt == VF_JSONL) w->zBuf[o++] = ' ';
        }
        o += (size_t)vecio_fmt_float(w->zBuf + o, (int)(w->nBuf - o), v[i]);
      }
      if (w->fmt == VF_JSONL) w->zBuf[o++] = ']';
      w->zBuf[o++] = '\n';
      ok = fwrite(w->zBuf, 1, o, w->f) == o;
      break;
    }
    default: ok = 0; break;
  }
  if (!ok) {
    *pzErr = sqlite3_mprintf("%s: write error: %s", w->zPath, strerror(errno));
    return -1;
  }
  w->nPut++;
  return 0;
}

int vecwriter_close(vecwriter *w, char **pzErr) {
  int rc = 0;
  *pzErr = NULL;
  if (w->fmt == VF_NPY && w->nPut != w->nRows) {
    *pzErr = sqlite3_mprintf("%s: %lld rows written, %lld announced",
                             w->zPath, (long long)w->nPut,
                             (long long)w->nRows);
    vecwriter_abort(w);
    return -1;
  }
  if (fclose(w->f) != 0) {
    *pzErr = sqlite3_mprintf("%s: write error: %s", w->zPath, strerror(errno));
    rc = -1;
  }
  w->f = NULL;
  if (rc != 0) remove(w->zPath);
  free(w->zBuf);
  free(w->zPath);
  free(w);
  return rc;
}

void vecwriter_abort(vecwriter *w) {
  if (w == NULL) return;
  if (w->f) {
    fclose(w->f);
    remove(w->zPath);
  }
  free(w->zBuf);
  free(w->zPath);
  free(w);
}
