/*
** vecio.h — reading (vecio.c) and writing (vecwrite.c) files of vectors,
** one vector per row.
**
** Owns: the file formats of .import-vectors, .export-vectors and .recall,
** chosen by file extension (case-insensitive):
**
**   .fvecs            per row: int32 d, then d float32 (TEXMEX)    read, write
**   .bvecs            per row: int32 d, then d uint8 (read as float) read
**   .ivecs            per row: int32 d, then d int32 (ground truth)  load
**   .npy              NumPy: '<f4', 2-D (n, d), C order             read, write
**   .csv .txt         one vector per line, comma-separated numbers  read, write
**   .jsonl .ndjson .json  one JSON array of numbers per line       read, write
**
** All binary formats are little-endian. Text is written with the shortest
** decimal that reads back as the same float32, so every format round-trips
** exactly. Errors come back as sqlite3_mprintf strings naming the file and,
** for text, the line.
*/
#ifndef ANNEX_VECIO_H
#define ANNEX_VECIO_H

#include <stdint.h>

typedef enum vecfmt {
  VF_UNKNOWN = 0, VF_FVECS, VF_BVECS, VF_IVECS, VF_NPY, VF_CSV, VF_JSONL
} vecfmt;

vecfmt vecfmt_from_path(const char *zPath);
const char *vecfmt_name(vecfmt f);

/* ---- streaming reader (float rows) ------------------------------- */
typedef struct vecreader vecreader;

/* Opens zPath and learns the dimension (and, for binary formats, the row
** count). NULL with *pzErr set on failure. */
vecreader *vecreader_open(const char *zPath, char **pzErr);
int vecreader_dim(const vecreader *r);
int64_t vecreader_rows(const vecreader *r);   /* -1: unknown (text) */
int64_t vecreader_size(const vecreader *r);   /* file size in bytes */
int64_t vecreader_offset(const vecreader *r); /* bytes consumed so far */
vecfmt vecreader_format(const vecreader *r);
/* Next row into out[dim]: 1 a row, 0 end of file, -1 error (*pzErr). */
int vecreader_next(vecreader *r, float *out, char **pzErr);
void vecreader_close(vecreader *r);

/* ---- whole-file load of .fvecs / .ivecs -------------------------- */
/* Reads every row of a 4-byte-element vecs file into *ppData (malloc'ed,
** n x d values). Returns 0, or -1 with *pzErr set. */
int vecs_load(const char *zPath, void **ppData, int *pDim, int64_t *pN,
              char **pzErr);

/* ---- writer ------------------------------------------------------ */
typedef struct vecwriter vecwriter;

/* Creates zPath for nRows rows of dim floats (nRows fixes the .npy
** header; put exactly that many). NULL with *pzErr set on failure. */
vecwriter *vecwriter_open(const char *zPath, int dim, int64_t nRows,
                          char **pzErr);
int vecwriter_put(vecwriter *w, const float *v, char **pzErr);
/* Flushes and closes; 0 or -1 with *pzErr (also when fewer rows than
** announced were put). Frees w either way. */
int vecwriter_close(vecwriter *w, char **pzErr);
/* Abandon a half-written file: close it and remove it. */
void vecwriter_abort(vecwriter *w);

/* The shortest decimal text that reads back as f; returns its length. */
int vecio_fmt_float(char *zBuf, int nBuf, float f);
/* The error for a file name without a known extension (sqlite3_mprintf). */
char *vecio_unknown_ext(const char *zPath);

#endif /* ANNEX_VECIO_H */
