/*
** alloc.c — the allocation hooks of index code (see alloc.h).
*/
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

static void *libc_malloc(size_t n) { return malloc(n); }
static void *libc_realloc(void *p, size_t n) { return realloc(p, n); }
static void libc_free(void *p) { free(p); }

static annex_allocator g_alloc = {libc_malloc, libc_realloc, libc_free};

void annex_alloc_set(const annex_allocator *a) {
  if (a) {
    g_alloc = *a;
  } else {
    g_alloc.xMalloc = libc_malloc;
    g_alloc.xRealloc = libc_realloc;
    g_alloc.xFree = libc_free;
  }
}

/* A zero-byte request gets a real (one-byte) block, so NULL always means
** out of memory. */
void *annex_malloc(size_t n) { return g_alloc.xMalloc(n ? n : 1); }

void *annex_calloc(size_t n, size_t sz) {
  void *p;
  if (sz && n > SIZE_MAX / sz) return NULL;
  p = annex_malloc(n * sz);
  if (p) memset(p, 0, n * sz);
  return p;
}

void *annex_realloc(void *p, size_t n) {
  if (p == NULL) return annex_malloc(n);
  return g_alloc.xRealloc(p, n ? n : 1);
}

void annex_free(void *p) {
  if (p) g_alloc.xFree(p);
}

/* Below this a block cannot hold enough whole huge pages to matter. */
#define ANNEX_HUGE_MIN ((size_t)8 << 20)
#define ANNEX_HUGE_PAGE ((uintptr_t)2 << 20)

void annex_advise_huge(void *p, size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  uintptr_t a = (uintptr_t)p, b = a + n;
  if (p == NULL || n < ANNEX_HUGE_MIN) return;
  a = (a + ANNEX_HUGE_PAGE - 1) & ~(ANNEX_HUGE_PAGE - 1);
  b &= ~(ANNEX_HUGE_PAGE - 1);
  if (a < b) (void)madvise((void *)a, (size_t)(b - a), MADV_HUGEPAGE);
#else
  (void)p;
  (void)n;
#endif
}
