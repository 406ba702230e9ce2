/*
** threads.c — the thread-count setting; see threads.h.
*/
#include "threads.h"

#ifdef ANNEX_HAVE_OPENMP
#include <omp.h>
#if !defined(_WIN32)
#include <pthread.h>
#define ANNEX_FORK_GUARD 1
#endif
#endif

static int g_nThread; /* 0 = the default */

#ifdef ANNEX_FORK_GUARD
/* A process forked from one that ran an OpenMP region hangs in its own
** first region (GNU libgomp's thread pool does not survive fork(): a child
** of a pre-fork server or of Python's multiprocessing deadlocked in
** 'train'). A forked child therefore runs annex's parallel work on its one
** thread: every region is guarded by "if (n > 1)" on these counts. */
static int g_bForked;
static pthread_once_t g_forkOnce = PTHREAD_ONCE_INIT;
static void on_fork_child(void) { g_bForked = 1; }
static void fork_guard_install(void) {
  pthread_atfork(NULL, NULL, on_fork_child);
}
/* 1 in a forked child; installs the handler on first use, which is before
** any parallel region of this process. */
static int forked(void) {
  pthread_once(&g_forkOnce, fork_guard_install);
  return __atomic_load_n(&g_bForked, __ATOMIC_RELAXED);
}
#else
static int forked(void) { return 0; }
#endif

/* One thread unless asked for more: an exact scan is memory-bound, and on
** the 2-core machines annex is developed on one core already draws all the
** memory bandwidth (a second thread measured 0.5x to 1.0x). Machines with
** more bandwidth per socket than one core can use gain from annex_threads(N). */
static int default_threads(void) { return 1; }

int annex_thread_count(void) {
  int n = __atomic_load_n(&g_nThread, __ATOMIC_RELAXED);
  if (forked()) return 1;
  return n > 0 ? n : default_threads();
}

int annex_build_threads(void) {
  int n = __atomic_load_n(&g_nThread, __ATOMIC_RELAXED);
  if (forked()) return 1;
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
