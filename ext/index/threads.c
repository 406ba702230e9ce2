/*
** threads.c — the thread-count setting; see threads.h.
*/
#include "threads.h"

#ifdef ANNEX_HAVE_OPENMP
#include <omp.h>
#endif

static int g_nThread; /* 0 = the default */

/* One thread unless asked for more: an exact scan is memory-bound, and on
** the 2-core machines annex is developed on one core already draws all the
** memory bandwidth (a second thread measured 0.5x to 1.0x). Machines with
** more bandwidth per socket than one core can use gain from annex_threads(N). */
static int default_threads(void) { return 1; }

int annex_thread_count(void) {
  int n = __atomic_load_n(&g_nThread, __ATOMIC_RELAXED);
  return n > 0 ? n : default_threads();
}

int annex_build_threads(void) {
  int n = __atomic_load_n(&g_nThread, __ATOMIC_RELAXED);
#ifdef ANNEX_HAVE_OPENMP
  if (n <= 0) n = omp_get_num_procs();
#endif
  return n > 0 ? n : 1;
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
