/*
** dqwire.c — the dqlite wire-protocol client declared in dqwire.h: the
** socket, message framing, field and tuple encoding, and one function per
** request. Request and response type codes and field layouts follow
** dqlite's protocol documentation (protocol version 1).
*/
#define _POSIX_C_SOURCE 200809L
#include "dqwire.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Request and response type codes. */
enum {
  REQ_LEADER = 0, REQ_OPEN = 3, REQ_EXEC_SQL = 8, REQ_QUERY_SQL = 9,
  REQ_ADD = 12, REQ_ASSIGN = 13, REQ_CLUSTER = 16, REQ_TRANSFER = 17
};
enum {
  RSP_FAILURE = 0, RSP_SERVER = 1, RSP_SERVERS = 3, RSP_DB = 4,
  RSP_RESULT = 6, RSP_ROWS = 7, RSP_EMPTY = 8
};
#define PROTOCOL_VERSION 1
#define ROWS_PART 0xeeeeeeeeeeeeeeeeULL
#define ROWS_DONE 0xffffffffffffffffULL
#define MAX_BODY (256u << 20) /* refuse absurd message sizes */

/* A growable byte buffer, for requests and responses. */
typedef struct buf {
  uint8_t *p;
  size_t n, nAlloc;
} buf;

struct dqw_conn {
  int fd;
  int timeout_ms;
  uint32_t db_id;
  int has_db;
  char zAddr[128];
  char zErr[512];
  buf out, in;
};

/* Reads fields of a received body. */
typedef struct rd {
  const uint8_t *p;
  size_t n;
} rd;

/* Errors *****************************************************************/

static int fail(dqw_conn *c, int rc, const char *zFmt, ...) {
  va_list ap;
  int n = snprintf(c->zErr, sizeof c->zErr, "%s: ", c->zAddr);
  va_start(ap, zFmt);
  vsnprintf(c->zErr + n, sizeof c->zErr - (size_t)n, zFmt, ap);
  va_end(ap);
  return rc;
}

const char *dqw_errmsg(dqw_conn *c) { return c->zErr; }
const char *dqw_address(dqw_conn *c) { return c->zAddr; }

/* Encoding ***************************************************************/

static int buf_reserve(buf *b, size_t n) {
  if (b->n + n <= b->nAlloc) return 0;
  size_t nNew = b->nAlloc ? b->nAlloc : 4096;
  while (nNew < b->n + n) nNew *= 2;
  uint8_t *p = realloc(b->p, nNew);
  if (!p) return -1;
  b->p = p;
  b->nAlloc = nNew;
  return 0;
}

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Appends n bytes (p may be NULL for zeros), then zeros up to a word. */
static int put_bytes(buf *b, const void *p, size_t n) {
  size_t nPad = pad8(n);
  if (buf_reserve(b, nPad)) return -1;
  if (p) memcpy(b->p + b->n, p, n); else memset(b->p + b->n, 0, n);
  memset(b->p + b->n + n, 0, nPad - n);
  b->n += nPad;
  return 0;
}

static int put_u64(buf *b, uint64_t v) {
  uint8_t a[8];
  for (int i = 0; i < 8; i++) a[i] = (uint8_t)(v >> (8 * i));
  return put_bytes(b, a, 8);
}

static int put_text(buf *b, const char *z) {
  return put_bytes(b, z, strlen(z) + 1);
}

static int put_blob(buf *b, const void *p, size_t n) {
  if (put_u64(b, n)) return -1;
  return n ? put_bytes(b, p, n) : 0;
}

static int put_double(buf *b, double f) {
  uint64_t v;
  memcpy(&v, &f, 8);
  return put_u64(b, v);
}

/* A parameter tuple: count byte, one type byte per value, padded to a
** word, then the values. */
static int put_params(buf *b, const dqw_value *a, int n) {
  uint8_t hdr[256];
  int rc = 0;
  if (n == 0) return 0;
  hdr[0] = (uint8_t)n;
  for (int i = 0; i < n; i++) hdr[1 + i] = (uint8_t)a[i].type;
  if (put_bytes(b, hdr, (size_t)n + 1)) return -1;
  for (int i = 0; i < n && rc == 0; i++) {
    switch (a[i].type) {
      case DQW_INTEGER: case DQW_UNIXTIME: case DQW_BOOLEAN:
        rc = put_u64(b, (uint64_t)a[i].i); break;
      case DQW_FLOAT: rc = put_double(b, a[i].f); break;
      case DQW_TEXT: case DQW_ISO8601: rc = put_text(b, a[i].p); break;
      case DQW_BLOB: rc = put_blob(b, a[i].p, a[i].n); break;
      case DQW_NULL: rc = put_u64(b, 0); break;
      default: return -2;
    }
  }
  return rc;
}

/* Decoding ***************************************************************/

static int rd_u64(rd *r, uint64_t *pV) {
  if (r->n < 8) return -1;
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | r->p[i];
  *pV = v;
  r->p += 8;
  r->n -= 8;
  return 0;
}

static int rd_peek_u64(const rd *r, uint64_t *pV) {
  rd t = *r;
  return rd_u64(&t, pV);
}

static int rd_text(rd *r, const char **pz, size_t *pn) {
  const uint8_t *pEnd = memchr(r->p, 0, r->n);
  if (!pEnd) return -1;
  size_t n = (size_t)(pEnd - r->p);
  if (pad8(n + 1) > r->n) return -1;
  *pz = (const char *)r->p;
  if (pn) *pn = n;
  r->p += pad8(n + 1);
  r->n -= pad8(n + 1);
  return 0;
}

static int rd_blob(rd *r, const void **pp, size_t *pn) {
  uint64_t n;
  if (rd_u64(r, &n) || pad8(n) > r->n) return -1;
  *pp = r->p;
  *pn = (size_t)n;
  r->p += pad8(n);
  r->n -= pad8(n);
  return 0;
}

/* Socket I/O *************************************************************/

static int wait_fd(dqw_conn *c, short ev) {
  struct pollfd pfd = {c->fd, ev, 0};
  int rc;
  do rc = poll(&pfd, 1, c->timeout_ms); while (rc < 0 && errno == EINTR);
  if (rc == 0) return fail(c, DQW_EIO, "timed out after %d ms", c->timeout_ms);
  if (rc < 0) return fail(c, DQW_EIO, "poll: %s", strerror(errno));
  return 0;
}

static int write_all(dqw_conn *c, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (wait_fd(c, POLLOUT)) return DQW_EIO;
    ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k < 0) return fail(c, DQW_EIO, "send: %s", strerror(errno));
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int read_all(dqw_conn *c, uint8_t *p, size_t n) {
  while (n > 0) {
    if (wait_fd(c, POLLIN)) return DQW_EIO;
    ssize_t k = recv(c->fd, p, n, 0);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k < 0) return fail(c, DQW_EIO, "recv: %s", strerror(errno));
    if (k == 0) return fail(c, DQW_EIO, "the node closed the connection");
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Sends c->out (a body already encoded) as one message of type t. */
static int send_msg(dqw_conn *c, int t) {
  uint8_t h[8] = {0};
  uint32_t nWords = (uint32_t)(c->out.n / 8);
  for (int i = 0; i < 4; i++) h[i] = (uint8_t)(nWords >> (8 * i));
  h[4] = (uint8_t)t;
  if (write_all(c, h, 8)) return DQW_EIO;
  return write_all(c, c->out.p, c->out.n);
}

/* Reads one message into c->in; a FAILURE response becomes its code. */
static int recv_msg(dqw_conn *c, int *pType, rd *pBody) {
  uint8_t h[8];
  if (read_all(c, h, 8)) return DQW_EIO;
  size_t n = ((size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 |
              (size_t)h[3] << 24) * 8;
  if (n > MAX_BODY) return fail(c, DQW_EIO, "message of %zu bytes", n);
  c->in.n = 0;
  if (buf_reserve(&c->in, n ? n : 8)) return fail(c, DQW_EIO, "out of memory");
  if (read_all(c, c->in.p, n)) return DQW_EIO;
  pBody->p = c->in.p;
  pBody->n = n;
  *pType = h[4];
  if (h[4] == RSP_FAILURE) {
    uint64_t code = 0;
    const char *z = "(no message)";
    if (rd_u64(pBody, &code) || rd_text(pBody, &z, NULL)) z = "(garbled)";
    return fail(c, code ? (int)code : DQW_EIO, "%s (code %d)", z, (int)code);
  }
  return 0;
}

/* Sends c->out as type t and expects a response of type want. */
static int roundtrip(dqw_conn *c, int t, int want, rd *pBody) {
  int type;
  int rc = send_msg(c, t);
  if (rc == 0) rc = recv_msg(c, &type, pBody);
  if (rc == 0 && type != want)
    rc = fail(c, DQW_EIO, "response type %d to request %d (wanted %d)", type,
              t, want);
  return rc;
}

/* Connection *************************************************************/

static int split_hostport(const char *zAddr, char *zHost, size_t nHost,
                          const char **pzPort) {
  const char *zColon = strrchr(zAddr, ':');
  if (!zColon || (size_t)(zColon - zAddr) >= nHost) return -1;
  memcpy(zHost, zAddr, (size_t)(zColon - zAddr));
  zHost[zColon - zAddr] = 0;
  *pzPort = zColon + 1;
  return 0;
}

static int tcp_connect(dqw_conn *c) {
  char zHost[128];
  const char *zPort;
  struct addrinfo hints = {0}, *ai = NULL;
  if (split_hostport(c->zAddr, zHost, sizeof zHost, &zPort))
    return fail(c, DQW_EIO, "not a HOST:PORT address");
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int e = getaddrinfo(zHost, zPort, &hints, &ai);
  if (e) return fail(c, DQW_EIO, "%s", gai_strerror(e));
  c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) {
    freeaddrinfo(ai);
    return fail(c, DQW_EIO, "socket: %s", strerror(errno));
  }
  int rc = connect(c->fd, ai->ai_addr, ai->ai_addrlen);
  freeaddrinfo(ai);
  if (rc < 0 && errno != EINPROGRESS)
    return fail(c, DQW_EIO, "connect: %s", strerror(errno));
  if (rc < 0) {
    int err = 0;
    socklen_t n = sizeof err;
    if (wait_fd(c, POLLOUT)) return DQW_EIO;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &n);
    if (err) return fail(c, DQW_EIO, "connect: %s", strerror(err));
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return 0;
}

int dqw_connect(const char *zAddr, int timeout_ms, dqw_conn **pp, char *zErr,
                size_t nErr) {
  dqw_conn *c = calloc(1, sizeof *c);
  uint8_t v[8] = {PROTOCOL_VERSION};
  *pp = NULL;
  if (!c) {
    snprintf(zErr, nErr, "%s: out of memory", zAddr);
    return DQW_EIO;
  }
  c->fd = -1;
  c->timeout_ms = timeout_ms;
  snprintf(c->zAddr, sizeof c->zAddr, "%s", zAddr);
  if (tcp_connect(c) || write_all(c, v, 8)) {
    snprintf(zErr, nErr, "%s", c->zErr);
    dqw_close(c);
    return DQW_EIO;
  }
  *pp = c;
  return 0;
}

void dqw_close(dqw_conn *c) {
  if (!c) return;
  if (c->fd >= 0) close(c->fd);
  free(c->out.p);
  free(c->in.p);
  free(c);
}

/* Requests ***************************************************************/

static int start(dqw_conn *c) {
  c->out.n = 0;
  c->zErr[0] = 0;
  return 0;
}

#define OOM(c) fail((c), DQW_EIO, "out of memory encoding a request")

int dqw_leader(dqw_conn *c, uint64_t *pId, char *zAddr, size_t nAddr) {
  rd r;
  const char *z;
  start(c);
  if (put_u64(&c->out, 0)) return OOM(c);
  int rc = roundtrip(c, REQ_LEADER, RSP_SERVER, &r);
  if (rc) return rc;
  if (rd_u64(&r, pId) || rd_text(&r, &z, NULL))
    return fail(c, DQW_EIO, "garbled LEADER response");
  snprintf(zAddr, nAddr, "%s", z);
  return 0;
}

int dqw_open(dqw_conn *c, const char *zName) {
  rd r;
  uint64_t id;
  start(c);
  if (put_text(&c->out, zName) || put_u64(&c->out, 0) ||
      put_text(&c->out, ""))  /* flags and VFS: the node uses its own */
    return OOM(c);
  int rc = roundtrip(c, REQ_OPEN, RSP_DB, &r);
  if (rc) return rc;
  if (rd_u64(&r, &id)) return fail(c, DQW_EIO, "garbled DB response");
  c->db_id = (uint32_t)id;
  c->has_db = 1;
  return 0;
}

static int put_sql(dqw_conn *c, const char *zSql, const dqw_value *a, int n) {
  if (!c->has_db) return fail(c, DQW_EIO, "no database open (dqw_open)");
  if (n < 0 || n > 255) return fail(c, DQW_EIO, "%d parameters (max 255)", n);
  start(c);
  if (put_u64(&c->out, c->db_id) || put_text(&c->out, zSql)) return OOM(c);
  int rc = put_params(&c->out, a, n);
  if (rc == -2) return fail(c, DQW_EIO, "unknown parameter type");
  return rc ? OOM(c) : 0;
}

int dqw_exec(dqw_conn *c, const char *zSql, const dqw_value *aParam,
             int nParam, uint64_t *pLastId, uint64_t *pChanged) {
  rd r;
  uint64_t last = 0, changed = 0;
  int rc = put_sql(c, zSql, aParam, nParam);
  if (rc == 0) rc = roundtrip(c, REQ_EXEC_SQL, RSP_RESULT, &r);
  if (rc) return rc;
  if (rd_u64(&r, &last) || rd_u64(&r, &changed))
    return fail(c, DQW_EIO, "garbled RESULT response");
  if (pLastId) *pLastId = last;
  if (pChanged) *pChanged = changed;
  return 0;
}

/* Result rows ************************************************************/

/* Copies n bytes into the result's data area; returns its offset. Cells
** keep offsets until the result is complete (the area may move), then
** fix_cells turns them into pointers. */
static int rows_store(dqw_rows *R, const void *p, size_t n, size_t *pOff) {
  if (R->nData + n + 1 > R->nDataAlloc) {
    size_t nNew = R->nDataAlloc ? R->nDataAlloc : 4096;
    while (nNew < R->nData + n + 1) nNew *= 2;
    char *pNew = realloc(R->pData, nNew);
    if (!pNew) return -1;
    R->pData = pNew;
    R->nDataAlloc = nNew;
  }
  memcpy(R->pData + R->nData, p, n);
  R->pData[R->nData + n] = 0;
  *pOff = R->nData;
  R->nData += n + 1;
  return 0;
}

static int rows_grow(dqw_rows *R) {
  if (R->nRow < R->nRowAlloc) return 0;
  int nNew = R->nRowAlloc ? R->nRowAlloc * 2 : 64;
  dqw_value *a = realloc(R->aVal, sizeof *a * (size_t)nNew * (size_t)R->nCol);
  if (!a) return -1;
  R->aVal = a;
  R->nRowAlloc = nNew;
  return 0;
}

/* One value of a row tuple, of the given type code. */
static int read_cell(dqw_rows *R, rd *r, int type, dqw_value *v) {
  uint64_t u;
  const void *p = NULL;
  size_t n = 0, off = 0;
  memset(v, 0, sizeof *v);
  v->type = type;
  switch (type) {
    case DQW_INTEGER: case DQW_UNIXTIME: case DQW_BOOLEAN:
      if (rd_u64(r, &u)) return -1;
      v->i = (int64_t)u;
      return 0;
    case DQW_FLOAT:
      if (rd_u64(r, &u)) return -1;
      memcpy(&v->f, &u, 8);
      return 0;
    case DQW_NULL: return rd_u64(r, &u);
    case DQW_TEXT: case DQW_ISO8601:
      if (rd_text(r, (const char **)&p, &n)) return -1;
      break;
    case DQW_BLOB:
      if (rd_blob(r, &p, &n)) return -1;
      break;
    default: return -1;
  }
  if (rows_store(R, p, n, &off)) return -1;
  v->p = (const void *)(uintptr_t)off;
  v->n = n;
  return 0;
}

/* One row tuple: 4-bit type codes padded to a word, then the values. */
static int read_row(dqw_rows *R, rd *r) {
  size_t nHdr = pad8(((size_t)R->nCol + 1) / 2);
  if (r->n < nHdr || rows_grow(R)) return -1;
  const uint8_t *h = r->p;
  r->p += nHdr;
  r->n -= nHdr;
  dqw_value *aRow = &R->aVal[(size_t)R->nRow * (size_t)R->nCol];
  for (int i = 0; i < R->nCol; i++) {
    int type = (h[i / 2] >> ((i % 2) * 4)) & 0x0f;
    if (read_cell(R, r, type, &aRow[i])) return -1;
  }
  R->nRow++;
  return 0;
}

/* One ROWS message: column count and names, rows, then the end marker.
** *pMore is set when the node will send another batch. */
static int read_batch(dqw_conn *c, dqw_rows *R, rd *r, int *pMore) {
  uint64_t nCol, w;
  if (rd_u64(r, &nCol) || nCol == 0 || nCol > 4096)
    return fail(c, DQW_EIO, "garbled ROWS response (columns)");
  if (R->nCol == 0) {
    R->nCol = (int)nCol;
    R->azCol = calloc(nCol, sizeof(char *));
    if (!R->azCol) return OOM(c);
  }
  for (uint64_t i = 0; i < nCol; i++) {
    const char *z;
    if (rd_text(r, &z, NULL)) return fail(c, DQW_EIO, "garbled column name");
    if (!R->azCol[i] && !(R->azCol[i] = strdup(z))) return OOM(c);
  }
  for (;;) {
    if (rd_peek_u64(r, &w)) return fail(c, DQW_EIO, "ROWS without an end");
    if (w == ROWS_DONE || w == ROWS_PART) break;
    if (read_row(R, r)) return fail(c, DQW_EIO, "garbled row %d", R->nRow);
  }
  *pMore = (w == ROWS_PART);
  return 0;
}

static void fix_cells(dqw_rows *R) {
  size_t n = (size_t)R->nRow * (size_t)R->nCol;
  for (size_t i = 0; i < n; i++) {
    dqw_value *v = &R->aVal[i];
    if (v->type == DQW_TEXT || v->type == DQW_ISO8601 || v->type == DQW_BLOB)
      v->p = R->pData + (uintptr_t)v->p;
  }
}

int dqw_query(dqw_conn *c, const char *zSql, const dqw_value *aParam,
              int nParam, dqw_rows *R) {
  rd r;
  int type, more = 1;
  memset(R, 0, sizeof *R);
  int rc = put_sql(c, zSql, aParam, nParam);
  if (rc == 0) rc = send_msg(c, REQ_QUERY_SQL);
  while (rc == 0 && more) {
    rc = recv_msg(c, &type, &r);
    if (rc == 0 && type != RSP_ROWS)
      rc = fail(c, DQW_EIO, "response type %d to a query", type);
    if (rc == 0) rc = read_batch(c, R, &r, &more);
  }
  if (rc == 0) fix_cells(R);
  else R->nRow = 0;
  return rc;
}

void dqw_rows_free(dqw_rows *R) {
  for (int i = 0; R->azCol && i < R->nCol; i++) free(R->azCol[i]);
  free(R->azCol);
  free(R->aVal);
  free(R->pData);
  memset(R, 0, sizeof *R);
}

const dqw_value *dqw_cell(const dqw_rows *R, int iRow, int iCol) {
  return &R->aVal[(size_t)iRow * (size_t)R->nCol + (size_t)iCol];
}

/* Membership *************************************************************/

static int empty_request(dqw_conn *c, int t) {
  rd r;
  return roundtrip(c, t, RSP_EMPTY, &r);
}

int dqw_add(dqw_conn *c, uint64_t id, const char *zAddr) {
  start(c);
  if (put_u64(&c->out, id) || put_text(&c->out, zAddr)) return OOM(c);
  return empty_request(c, REQ_ADD);
}

int dqw_assign(dqw_conn *c, uint64_t id, int role) {
  start(c);
  if (put_u64(&c->out, id) || put_u64(&c->out, (uint64_t)role)) return OOM(c);
  return empty_request(c, REQ_ASSIGN);
}

int dqw_transfer(dqw_conn *c, uint64_t id) {
  start(c);
  if (put_u64(&c->out, id)) return OOM(c);
  return empty_request(c, REQ_TRANSFER);
}

int dqw_cluster(dqw_conn *c, dqw_server **paSrv, int *pnSrv) {
  rd r;
  uint64_t n;
  *paSrv = NULL;
  *pnSrv = 0;
  start(c);
  if (put_u64(&c->out, 1)) return OOM(c); /* format 1: id, address, role */
  int rc = roundtrip(c, REQ_CLUSTER, RSP_SERVERS, &r);
  if (rc) return rc;
  if (rd_u64(&r, &n) || n > 1024) return fail(c, DQW_EIO, "garbled SERVERS");
  dqw_server *a = calloc(n ? n : 1, sizeof *a);
  if (!a) return OOM(c);
  for (uint64_t i = 0; i < n; i++) {
    const char *z;
    uint64_t role;
    if (rd_u64(&r, &a[i].id) || rd_text(&r, &z, NULL) || rd_u64(&r, &role)) {
      free(a);
      return fail(c, DQW_EIO, "garbled SERVERS entry %d", (int)i);
    }
    snprintf(a[i].zAddr, sizeof a[i].zAddr, "%s", z);
    a[i].role = (int)role;
  }
  *paSrv = a;
  *pnSrv = (int)n;
  return 0;
}

/* Helpers ****************************************************************/

/* Asks one node who leads; returns 0 with the address when it names one. */
static int ask_leader(const char *zAddr, int timeout_ms, char *zLeader,
                      size_t nLeader, char *zErr, size_t nErr) {
  dqw_conn *c;
  uint64_t id = 0;
  if (dqw_connect(zAddr, timeout_ms, &c, zErr, nErr)) return DQW_EIO;
  int rc = dqw_leader(c, &id, zLeader, nLeader);
  if (rc) snprintf(zErr, nErr, "%s", dqw_errmsg(c));
  else if (id == 0 || !zLeader[0]) {
    snprintf(zErr, nErr, "%s: knows no leader", zAddr);
    rc = DQW_EIO;
  }
  dqw_close(c);
  return rc;
}

int dqw_connect_leader(const char *const *azAddr, int nAddr, int timeout_ms,
                       dqw_conn **pp, char *zErr, size_t nErr) {
  char zLeader[128], zSelf[128];
  uint64_t id;
  *pp = NULL;
  snprintf(zErr, nErr, "no node addresses given");
  for (int i = 0; i < nAddr; i++) {
    dqw_conn *c;
    if (ask_leader(azAddr[i], timeout_ms, zLeader, sizeof zLeader, zErr, nErr))
      continue;
    if (dqw_connect(zLeader, timeout_ms, &c, zErr, nErr)) continue;
    /* the leader must name itself: it may have just lost leadership */
    if (dqw_leader(c, &id, zSelf, sizeof zSelf) == 0 &&
        strcmp(zSelf, zLeader) == 0) {
      *pp = c;
      return 0;
    }
    snprintf(zErr, nErr, "%s: no longer leads", zLeader);
    dqw_close(c);
  }
  return DQW_EIO;
}

int dqw_split_list(const char *zList, char **azOut, int nMax) {
  int n = 0;
  const char *z = zList;
  while (z && *z && n < nMax) {
    const char *zEnd = strchr(z, ',');
    size_t len = zEnd ? (size_t)(zEnd - z) : strlen(z);
    if (len > 0 && (azOut[n] = strndup(z, len)) != NULL) n++;
    z = zEnd ? zEnd + 1 : NULL;
  }
  return n;
}
