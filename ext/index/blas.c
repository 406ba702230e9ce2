/*
** blas.c — finding cblas_sgemm at run time; see blas.h.
*/
#include "blas.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if !defined(ANNEX_OMIT_BLAS) && !defined(_WIN32)
#include <dlfcn.h>
#define ANNEX_BLAS_DLOPEN 1
#endif

/* State: 0 = not looked yet, 1 = looked. Written once under a CAS. */
static int g_state;
static annex_sgemm_fn g_sgemm;
static const char *g_zName = "none";

#ifdef ANNEX_BLAS_DLOPEN
static void look(void) {
  static const char *azLib[] = {NULL, "libopenblas.so.0", "libblas.so.3",
                                "libcblas.so.3", "libopenblas.so"};
  azLib[0] = getenv("ANNEX_BLAS_LIBRARY");
  if (azLib[0] && strcmp(azLib[0], "none") == 0) return;
  for (size_t i = 0; i < sizeof(azLib) / sizeof(azLib[0]); i++) {
    void *h;
    void *f;
    if (azLib[i] == NULL) continue;
    h = dlopen(azLib[i], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) continue;
    f = dlsym(h, "cblas_sgemm");
    if (f == NULL) {
      dlclose(h);
      continue;
    }
    /* Object to function pointer: the POSIX-sanctioned conversion. */
    *(void **)&g_sgemm = f;
    g_zName = azLib[i];
    return; /* the handle stays open for the life of the process */
  }
}
#else
static void look(void) {}
#endif

annex_sgemm_fn annex_blas_sgemm(void) {
  static int bBusy;
  if (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE)) return g_sgemm;
  /* One thread looks; the others wait for it (this happens once). */
  while (__atomic_exchange_n(&bBusy, 1, __ATOMIC_ACQUIRE)) {
  }
  if (!g_state) {
    look();
    __atomic_store_n(&g_state, 1, __ATOMIC_RELEASE);
  }
  __atomic_store_n(&bBusy, 0, __ATOMIC_RELEASE);
  return g_sgemm;
}

const char *annex_blas_name(void) {
  annex_blas_sgemm();
  return g_zName;
}
