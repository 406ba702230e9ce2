/*
** bench_data.c — reading TEXMEX .fvecs / .ivecs files for annex_bench.
**
** Format (little-endian, as produced by ../shared/data/tools/vecstool.c):
** per row an int32 d, then d 4-byte elements. All rows of a file must have
** the same d; a file whose size is not a multiple of the row size is
** rejected. Any I/O or format error ends the process with a message.
*/
#define _XOPEN_SOURCE 700
#include "bench_data.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void bench_die(const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  fputs("annex_bench: ", stderr);
  vfprintf(stderr, zFmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) bench_die("out of memory (%zu bytes)", n);
  return p;
}

/* Dimension from the first header and row count from the file size. */
static void vecs_shape(FILE *f, const char *path, int *pDim, int64_t *pN) {
  int32_t d;
  struct stat st;
  int64_t rowBytes;
  if (fread(&d, 4, 1, f) != 1) bench_die("%s: empty or unreadable", path);
  if (d <= 0 || d > 65536) bench_die("%s: bad dimension %d", path, (int)d);
  if (fstat(fileno(f), &st) != 0) bench_die("%s: cannot stat", path);
  rowBytes = 4 + 4 * (int64_t)d;
  if (st.st_size % rowBytes != 0) {
    bench_die("%s: size %lld is not a multiple of the row size %lld", path,
              (long long)st.st_size, (long long)rowBytes);
  }
  rewind(f);
  *pDim = d;
  *pN = st.st_size / rowBytes;
}

/* Read one row (header + dim elements) into dst; 0 at end of file. */
static int vecs_read_row(FILE *f, const char *path, int dim, void *dst) {
  int32_t d;
  if (fread(&d, 4, 1, f) != 1) return 0;
  if (d != dim) bench_die("%s: row dimension %d, expected %d", path, d, dim);
  if (fread(dst, 4, (size_t)dim, f) != (size_t)dim) {
    bench_die("%s: truncated row", path);
  }
  return 1;
}

void bench_vecs_read(const char *path, int max_rows, bench_vecs *out) {
  FILE *f = fopen(path, "rb");
  int64_t n;
  if (f == NULL) bench_die("%s: cannot open", path);
  vecs_shape(f, path, &out->dim, &n);
  if (max_rows > 0 && n > max_rows) n = max_rows;
  if (n > INT32_MAX) bench_die("%s: too many rows", path);
  out->n = (int)n;
  out->data = xmalloc((size_t)n * (size_t)out->dim * 4);
  for (int i = 0; i < out->n; i++) {
    char *dst = (char *)out->data + (size_t)i * (size_t)out->dim * 4;
    if (!vecs_read_row(f, path, out->dim, dst)) bench_die("%s: short", path);
  }
  fclose(f);
}

void bench_vecs_free(bench_vecs *v) {
  free(v->data);
  memset(v, 0, sizeof(*v));
}

const float *bench_vecs_frow(const bench_vecs *v, int i) {
  return (const float *)v->data + (size_t)i * (size_t)v->dim;
}

const int32_t *bench_vecs_irow(const bench_vecs *v, int i) {
  return (const int32_t *)v->data + (size_t)i * (size_t)v->dim;
}

void bench_base_open(const char *path, bench_base *b) {
  memset(b, 0, sizeof(*b));
  snprintf(b->path, sizeof(b->path), "%s", path);
  b->f = fopen(path, "rb");
  if (b->f == NULL) bench_die("%s: cannot open", path);
  setvbuf(b->f, NULL, _IOFBF, 1 << 20);
  vecs_shape(b->f, path, &b->dim, &b->n);
  b->fd = fileno(b->f);
  b->row = xmalloc((size_t)b->dim * 4);
}

const float *bench_base_next(bench_base *b) {
  return vecs_read_row(b->f, b->path, b->dim, b->row) ? b->row : NULL;
}

const float *bench_base_row(bench_base *b, int64_t i) {
  size_t nBytes = (size_t)b->dim * 4;
  off_t off = (off_t)(i * (4 + (int64_t)nBytes) + 4);
  if (i < 0 || i >= b->n)
    bench_die("%s: row %lld out of range", b->path, (long long)i);
  if (pread(b->fd, b->row, nBytes, off) != (ssize_t)nBytes) {
    bench_die("%s: pread of row %lld failed", b->path, (long long)i);
  }
  return b->row;
}

void bench_base_close(bench_base *b) {
  if (b->f) fclose(b->f);
  free(b->row);
  memset(b, 0, sizeof(*b));
}
