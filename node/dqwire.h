/*
** dqwire.h — a small client of dqlite's wire protocol (protocol version 1,
** as served by libdqlite 1.11), written for annex-node, its command-line
** client annex-dq and the replication test.
**
** libdqlite 1.11 ships no C client, so this file speaks the documented
** protocol itself: every message is one 8-byte header (body size in 8-byte
** words, little endian; type; schema revision) and a body of 8-byte aligned
** fields (uint64, int64, double, NUL-terminated text padded to 8, blobs as
** length + bytes padded to 8). Statement parameters and result rows are
** "tuples": a header of type codes (8 bits each with a count byte for
** parameters, 4 bits each for rows) followed by the values.
**
** Everything is blocking and single-threaded: one request, then its
** response. Functions return 0 on success; DQW_EIO (-1) for a socket,
** timeout or protocol error; or the positive error code of a FAILURE
** response from the node (an SQLite extended code, for example
** DQW_NOT_LEADER). dqw_errmsg() says what happened in every case.
*/
#ifndef DQWIRE_H
#define DQWIRE_H

#include <stddef.h>
#include <stdint.h>

#define DQW_EIO (-1)

/* dqlite's own SQLite extended codes (SQLITE_IOERR | n << 8). */
#define DQW_NOT_LEADER (10 | (40 << 8))
#define DQW_LEADERSHIP_LOST (10 | (41 << 8))

/* Roles of cluster members. */
enum { DQW_VOTER = 0, DQW_STANDBY = 1, DQW_SPARE = 2 };

/* Value types: SQLite's type codes, plus dqlite's time and boolean codes. */
enum {
  DQW_INTEGER = 1, DQW_FLOAT = 2, DQW_TEXT = 3, DQW_BLOB = 4, DQW_NULL = 5,
  DQW_UNIXTIME = 9, DQW_ISO8601 = 10, DQW_BOOLEAN = 11
};

/* One value: a statement parameter (p points at the caller's bytes) or a
** result cell (p points into the dqw_rows that owns it). Text is
** NUL-terminated; n is its length without the NUL. */
typedef struct dqw_value {
  int type;
  int64_t i;
  double f;
  const void *p;
  size_t n;
} dqw_value;

/* A whole result set, all batches of a query gathered. */
typedef struct dqw_rows {
  int nCol;
  char **azCol;      /* column names */
  int nRow;
  dqw_value *aVal;   /* nRow * nCol cells, row-major */
  char *pData;       /* storage for text and blob cells */
  size_t nData, nDataAlloc;
  int nRowAlloc;
} dqw_rows;

/* One cluster member, as the CLUSTER request reports it. */
typedef struct dqw_server {
  uint64_t id;
  char zAddr[128];
  int role;
} dqw_server;

typedef struct dqw_conn dqw_conn;

/* Connects to HOST:PORT and sends the protocol version. timeout_ms bounds
** the connect and every later read and write on the connection. On
** failure *pp is NULL and zErr (nErr bytes) says why. */
int dqw_connect(const char *zAddr, int timeout_ms, dqw_conn **pp, char *zErr,
                size_t nErr);
void dqw_close(dqw_conn *c);
const char *dqw_errmsg(dqw_conn *c);
const char *dqw_address(dqw_conn *c);

/* LEADER: the id and address of the leader as this node knows it; id 0
** and an empty address when it knows none (or is not a voter). */
int dqw_leader(dqw_conn *c, uint64_t *pId, char *zAddr, size_t nAddr);

/* OPEN: opens (creating it when missing) the named database on this
** connection. One database per connection. */
int dqw_open(dqw_conn *c, const char *zName);

/* EXEC_SQL: runs every statement of zSql (the parameters bind to the
** first). pLastId / pChanged may be NULL. At most 255 parameters. */
int dqw_exec(dqw_conn *c, const char *zSql, const dqw_value *aParam,
             int nParam, uint64_t *pLastId, uint64_t *pChanged);

/* QUERY_SQL: runs one statement and gathers all its rows into *pRows
** (free with dqw_rows_free, also after a failure). */
int dqw_query(dqw_conn *c, const char *zSql, const dqw_value *aParam,
              int nParam, dqw_rows *pRows);
void dqw_rows_free(dqw_rows *pRows);
const dqw_value *dqw_cell(const dqw_rows *pRows, int iRow, int iCol);

/* Membership, sent to the leader: ADD a node (it joins as a spare),
** ASSIGN it a role, TRANSFER leadership to it; CLUSTER lists members
** (*paSrv is malloc'ed, free it). */
int dqw_add(dqw_conn *c, uint64_t id, const char *zAddr);
int dqw_assign(dqw_conn *c, uint64_t id, int role);
int dqw_transfer(dqw_conn *c, uint64_t id);
int dqw_cluster(dqw_conn *c, dqw_server **paSrv, int *pnSrv);

/* Asks each of the nAddr nodes who leads, then connects to that leader
** and checks it agrees. DQW_EIO with zErr set when no node names a
** reachable leader. */
int dqw_connect_leader(const char *const *azAddr, int nAddr, int timeout_ms,
                       dqw_conn **pp, char *zErr, size_t nErr);

/* Splits "a,b,c" into at most nMax malloc'ed strings; returns the count. */
int dqw_split_list(const char *zList, char **azOut, int nMax);

#endif /* DQWIRE_H */
