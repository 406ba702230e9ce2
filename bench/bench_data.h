/*
** bench_data.h — the benchmark's view of TEXMEX vector files.
**
** .fvecs / .ivecs: per row an int32 d, then d 4-byte elements (float32 or
** int32), little-endian. Small files (queries, ground truth) are read whole;
** the base file is streamed row by row for the insert and read back by row
** number for the recall check, so the driver never holds the base set in
** memory and its peak RSS is the SQL engine's, not the data's.
*/
#ifndef BENCH_DATA_H
#define BENCH_DATA_H

#include <stdint.h>
#include <stdio.h>

/* A whole .fvecs or .ivecs file in memory. */
typedef struct bench_vecs {
  int n;      /* rows read */
  int dim;    /* elements per row */
  void *data; /* n*dim 4-byte elements, row-major (owned; float or int32) */
} bench_vecs;

/* Sequential and random access to a base .fvecs file on disk. */
typedef struct bench_base {
  FILE *f;        /* the open file (owned) */
  int fd;         /* its descriptor, for pread */
  int dim;        /* elements per row */
  int64_t n;      /* rows in the file */
  float *row;     /* one row buffer (owned) */
  char path[512]; /* for error messages */
} bench_base;

/* Print "annex_bench: <message>" to stderr and exit(1). */
void bench_die(const char *zFmt, ...);

/* Read up to max_rows rows (all when max_rows <= 0); exits on error. */
void bench_vecs_read(const char *path, int max_rows, bench_vecs *out);
void bench_vecs_free(bench_vecs *v);
const float *bench_vecs_frow(const bench_vecs *v, int i);
const int32_t *bench_vecs_irow(const bench_vecs *v, int i);

/* Open a base file: dim from the first header, n from the file size. */
void bench_base_open(const char *path, bench_base *b);
/* Next row in file order, or NULL at the end; valid until the next call. */
const float *bench_base_next(bench_base *b);
/* Row i (0-based) read with pread; valid until the next call. */
const float *bench_base_row(bench_base *b, int64_t i);
void bench_base_close(bench_base *b);

#endif /* BENCH_DATA_H */
