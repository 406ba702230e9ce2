/*
** threads.c — the thread-count setting; see threads.h.
*/
#include "threads.h"

#ifdef ANNEX_HAVE_OPENMP
#include <omp.h>
#endif

static int g_nThread; /* 0 = the default */

static int default_threads(void) {
#ifdef ANNEX_HAVE_OPENMP
  int n = omp_get_max_threads();
  return n > 0 ? n : 1;
#else
  return 1;
#endif
}

int annex_thread_count(void) {
  int n = __atomic_load_n(&g_nThread, __ATOMIC_RELAXED);
  return n > 0 ? n : default_threads();
}

int annex_thread_set(int n) {
#ifdef ANNEX_HAVE_OPENMP
  __atomic_store_n(&g_nThread, n > 0 ? n : 0, __ATOMIC_RELAXED);
#else
  (void)n;
#endif
  return annex_thread_count();
}

int annex_have_openmp(void) {
#ifdef ANNEX_HAVE_OPENMP
  return 1;
#else
  return 0;
#endif
}
