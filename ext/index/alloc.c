/*
** alloc.c — the allocation hooks of index code (see alloc.h).
*/
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
