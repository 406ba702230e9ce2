/*
** threads.h — how many threads annex's parallel work uses.
**
** One process-wide setting, 1 by default (see threads.c for why);
** annex_threads(N) in SQL changes it. Builds without OpenMP always run on
** one thread, and so does a process forked from one that loaded annex
** (GNU OpenMP cannot run parallel regions after fork; threads.c): every
** OpenMP region is guarded by "if (n > 1)" on these counts. BLAS calls use OpenBLAS's own threads (OPENBLAS_NUM_THREADS).
** Index code only.
*/
#ifndef ANNEX_THREADS_H
#define ANNEX_THREADS_H

/* Threads parallel scans and batch queries may use (>= 1). */
int annex_thread_count(void);

/* Threads an index build (graph construction, k-means) uses: the count set
** with annex_thread_set, or, when none was set, every processor: builds
** are compute-bound, unlike scans. */
int annex_build_threads(void);

/* Set the count; n <= 0 restores the default. Returns the count in force. */
int annex_thread_set(int n);

/* 1 when built with OpenMP. */
int annex_have_openmp(void);

#endif /* ANNEX_THREADS_H */
