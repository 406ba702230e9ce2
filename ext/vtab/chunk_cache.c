/*
** chunk_cache.c — T_chunks blobs kept in memory between exact scans.
**
** Why: SQLite hands a blob over only by copying it out of its pages
** (sqlite3_blob_read, and OP_Column even for a blob that fits its page), so
** an exact scan through SQLite runs at memory-copy speed, about half the
** rate at which one core can read memory. A connection therefore keeps
** the chunks its exact scans read, byte for byte as stored, and later scans
** score them where they lie (bench/README.md has the measurements).
**
** What it holds: per annex table and connection, chunk id -> a copy of that
** chunk's whole `data` blob (storage.c defines the layout). Nothing of it
** is ever written back; the file stays the only truth.
**
** When it may be used (the rules of DESIGN.md's "Memory, caching and
** transactions", as for the ANN caches): it matches the committed state
** whose change counter it was loaded at. A scan validates it first:
**   - this transaction wrote the table (bTxnWrote, set by every xUpdate and
**     kept until COMMIT or ROLLBACK, through any ROLLBACK TO): it is dropped
**     and not used until the transaction ends, so a scan sees the
**     transaction's own writes and no rollback leaves it stale. (A cache
**     filled inside a transaction that had not written the table holds
**     committed rows: valid whichever way the transaction ends.)
**   - the pager's data version stands still: nothing changed, it is used;
**   - otherwise the counter is read: another connection's commit (or this
**     connection's, of this table) moved it, and the cache is dropped.
** Like every annex cache it trusts that the shadow tables are written only
** through annex (defensive mode, xShadowName).
**
** Memory: a process-wide budget over all connections, annex_cache_size(N)
** in bytes, by default an eighth of physical memory. A chunk that would
** exceed it is read the uncached way, so a table larger than the budget is
** cached in part; 0 turns the cache off. A table whose scan finds the
** process over the budget (it was lowered) drops its copies first. An
** allocation failure is not an error: that chunk is simply not cached.
** Filling costs: the first touch of fresh memory is page faults (0.4-0.6
** ms per MiB here, against 0.05 ms per MiB to scan it once cached). So the
** first scan after a connection opens the table, or after the cache was
** dropped, fills nothing (a one-off query pays nothing; a table rewritten
** between every two scans is never filled), and each later scan adds at
** most ANNEX_CACHE_FILL_PER_SCAN bytes (at least one chunk): a large
** table fills over a few scans rather than tripling one.
*/
#include "annex_int.h"

#include <stdint.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

/* A cached chunk's vectors start on this boundary, whatever the byte
** offset of the vector region in the blob (chunks with metadata put it at
** odd offsets): batch.c reads them as float arrays, and loads that do
** not straddle cache lines are faster. */
#define CACHE_ALIGN 64

/* Budget when physical memory is unknown. */
#define CACHE_FALLBACK_LIMIT ((sqlite3_int64)256 << 20)

static sqlite3_int64 g_nLimit = -1; /* bytes; -1: the default */
static sqlite3_int64 g_nUsed;       /* bytes held by every connection */

/* An eighth of physical memory: room for the vectors of the tables a
** process scans, far from what the rest of it and the OS cache need. */
static sqlite3_int64 default_limit(void) {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  long nPage = sysconf(_SC_PHYS_PAGES), szPage = sysconf(_SC_PAGESIZE);
  if (nPage > 0 && szPage > 0) return (sqlite3_int64)nPage * szPage / 8;
#endif
  return CACHE_FALLBACK_LIMIT;
}

sqlite3_int64 annex_cache_limit(void) {
  sqlite3_int64 n = __atomic_load_n(&g_nLimit, __ATOMIC_RELAXED);
  return n >= 0 ? n : default_limit();
}

sqlite3_int64 annex_cache_set_limit(sqlite3_int64 n) {
  __atomic_store_n(&g_nLimit, n >= 0 ? n : -1, __ATOMIC_RELAXED);
  return annex_cache_limit();
}

sqlite3_int64 annex_cache_used(void) {
  return __atomic_load_n(&g_nUsed, __ATOMIC_RELAXED);
}

/* Take n bytes of the budget: 1 if they fit, else 0. */
static int budget_take(sqlite3_int64 n) {
  sqlite3_int64 nLimit = annex_cache_limit();
  sqlite3_int64 nOld = __atomic_load_n(&g_nUsed, __ATOMIC_RELAXED);
  do {
    if (nOld + n > nLimit) return 0;
  } while (!__atomic_compare_exchange_n(&g_nUsed, &nOld, nOld + n, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return 1;
}

static void budget_give(sqlite3_int64 n) {
  __atomic_fetch_sub(&g_nUsed, n, __ATOMIC_RELAXED);
}

/* Where the blob starts inside the allocation raw (CACHE_ALIGN more bytes
** than the blob): so that its vector region is aligned. */
static unsigned char *blob_start(const annex_table *p, unsigned char *raw) {
  uintptr_t a = (uintptr_t)raw + annex_chunk_vector_offset(p->pConfig);
  return raw + (CACHE_ALIGN - a % CACHE_ALIGN) % CACHE_ALIGN;
}

void annex_cache_drop(annex_table *p) {
  annex_chunk_cache *c = &p->cache;
  for (sqlite3_int64 i = 0; i < c->nAlloc; i++) sqlite3_free(c->apChunk[i]);
  sqlite3_free(c->apChunk);
  budget_give((sqlite3_int64)c->nByte);
  memset(c, 0, sizeof(*c));
  c->iChanges = -1;
}

int annex_cache_validate(annex_table *p, int *pbUse) {
  annex_chunk_cache *c = &p->cache;
  unsigned int dv = 0;
  sqlite3_int64 v;
  int rc;
  *pbUse = 0;
  /* Over the budget (it was lowered): this table's copies go, and scans
  ** fill the cache again within it. */
  if (p->bTxnWrote || annex_cache_used() > annex_cache_limit()) {
    if (c->nAlloc > 0 || c->iChanges >= 0) annex_cache_drop(p);
    return SQLITE_OK;
  }
  if (sqlite3_file_control(p->db, p->zDb, SQLITE_FCNTL_DATA_VERSION, &dv) !=
      SQLITE_OK) {
    dv = c->iDataVersion + 1; /* unknown: read the counter */
  }
  if (c->iChanges >= 0 && dv == c->iDataVersion) {
    *pbUse = 1;
    return SQLITE_OK;
  }
  rc = annex_storage_config_int(p, "changes", &v);
  if (rc != SQLITE_OK) return rc;
  if (v != c->iChanges) annex_cache_drop(p);
  c->iChanges = v;
  c->iDataVersion = dv;
  *pbUse = 1;
  return SQLITE_OK;
}

const unsigned char *annex_cache_get(const annex_table *p,
                                     sqlite3_int64 iChunk) {
  const annex_chunk_cache *c = &p->cache;
  unsigned char *raw =
      iChunk >= 0 && iChunk < c->nAlloc ? c->apChunk[iChunk] : NULL;
  return raw ? blob_start(p, raw) : NULL;
}

unsigned char *annex_cache_alloc(annex_table *p, sqlite3_int64 iChunk,
                                 size_t nByte) {
  annex_chunk_cache *c = &p->cache;
  unsigned char *a;
  if (iChunk < 0 || annex_cache_get(p, iChunk) != NULL) return NULL;
  if (iChunk >= c->nAlloc) {
    sqlite3_int64 nNew = c->nAlloc ? 2 * c->nAlloc : 64;
    unsigned char **ap;
    while (nNew <= iChunk) nNew *= 2;
    ap = sqlite3_realloc64(c->apChunk, sizeof(*ap) * (size_t)nNew);
    if (ap == NULL) return NULL;
    memset(ap + c->nAlloc, 0, sizeof(*ap) * (size_t)(nNew - c->nAlloc));
    c->apChunk = ap;
    c->nAlloc = nNew;
  }
  if (!budget_take((sqlite3_int64)nByte)) return NULL;
  a = sqlite3_malloc64(nByte + CACHE_ALIGN);
  if (a == NULL) {
    budget_give((sqlite3_int64)nByte);
    return NULL;
  }
  c->apChunk[iChunk] = a;
  c->nByte += nByte;
  return blob_start(p, a);
}

void annex_cache_forget(annex_table *p, sqlite3_int64 iChunk, size_t nByte) {
  annex_chunk_cache *c = &p->cache;
  if (annex_cache_get(p, iChunk) == NULL) return;
  sqlite3_free(c->apChunk[iChunk]);
  c->apChunk[iChunk] = NULL;
  c->nByte -= nByte;
  budget_give((sqlite3_int64)nByte);
}
