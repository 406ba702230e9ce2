/*
** blas.h — BLAS found at run time.
**
** annex has no link-time dependency on a BLAS library: the first batch
** query looks for one with dlopen (the file named by $ANNEX_BLAS_LIBRARY,
** else libopenblas.so.0, libblas.so.3, libcblas.so.3; ANNEX_BLAS_LIBRARY=none
** looks for nothing) and uses its
** cblas_sgemm. Without one, callers fall back to their own loops. Loading
** annex thus costs no BLAS start-up (OpenBLAS starts its threads when it
** loads) until a batch query needs it. Build with ANNEX_OMIT_BLAS to never
** look. Index code only.
*/
#ifndef ANNEX_BLAS_H
#define ANNEX_BLAS_H

/* CBLAS's ABI constants (the values every CBLAS uses). */
#define ANNEX_CBLAS_ROW_MAJOR 101
#define ANNEX_CBLAS_NO_TRANS 111
#define ANNEX_CBLAS_TRANS 112

typedef void (*annex_sgemm_fn)(int order, int transA, int transB, int m,
                               int n, int k, float alpha, const float *a,
                               int lda, const float *b, int ldb, float beta,
                               float *c, int ldc);

/* cblas_sgemm of the BLAS found, or NULL when there is none. Looks once;
** safe to call from several threads. */
annex_sgemm_fn annex_blas_sgemm(void);

/* Which library was found ("none" when none was). */
const char *annex_blas_name(void);

#endif /* ANNEX_BLAS_H */
