/*
** alloc.h — where index code gets its memory.
**
** Index code (ext/index/) does not call SQLite, but the memory it takes must
** come from SQLite's allocator so that out-of-memory tests (which replace
** SQLite's allocator) reach it and an allocation failure becomes
** SQLITE_NOMEM. ext/annex.c installs sqlite3_malloc64/realloc64/free here at
** load time; unit tests that never install anything get libc's.
** The hooks are process-wide and set once, before any index runs.
*/
#ifndef ANNEX_ALLOC_H
#define ANNEX_ALLOC_H

#include <stddef.h>

typedef struct annex_allocator {
  void *(*xMalloc)(size_t n);
  void *(*xRealloc)(void *p, size_t n);
  void (*xFree)(void *p);
} annex_allocator;

/* Install an allocator (NULL restores libc's). Call before any index use. */
void annex_alloc_set(const annex_allocator *a);

void *annex_malloc(size_t n);            /* NULL only on failure */
void *annex_calloc(size_t n, size_t sz); /* zeroed; NULL on overflow */
void *annex_realloc(void *p, size_t n);  /* NULL on failure, p untouched */
void annex_free(void *p);                /* NULL is a no-op */

/* A hint for a large block read at random (a graph's vectors and lists):
** where the kernel has transparent huge pages in "madvise" mode (Linux),
** ask for them over the block's whole 2 MiB pages, so that a random read
** costs a TLB miss far less often. Pages already touched keep their size
** (call it before the block is written); a no-op elsewhere and for blocks
** under a few huge pages. Never fails: it is only advice. */
void annex_advise_huge(void *p, size_t n);

#endif /* ANNEX_ALLOC_H */
