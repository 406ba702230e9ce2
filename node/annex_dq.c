/*
** annex_dq.c — annex-dq, a command-line client for an annex-node cluster.
**
**   annex-dq -s HOST:PORT[,...] [-d DB] [STATEMENT ...]
**
** Finds the leader through any of the given nodes (dqlite serves every
** statement on the leader), opens database DB (default "annex.db") and
** runs each STATEMENT, or, with none, the statements read from standard
** input (split with sqlite3_complete). Rows print one per line, columns
** separated by '|'; BLOBs print as X'hex'. Besides SQL:
**
**   .leader            id and address of the leader
**   .cluster           members: id, address, role
**   .transfer ID       hand leadership to member ID
**
** Exits 1 when any statement failed, 2 on bad usage.
*/
#define _GNU_SOURCE /* strcasestr */
#include <ctype.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dqwire.h"

#define MAX_NODES 16

/* Statements that return rows go through QUERY_SQL, the rest EXEC_SQL. */
static int returns_rows(const char *zSql) {
  static const char *azKw[] = {"SELECT", "WITH", "PRAGMA", "VALUES", "EXPLAIN"};
  while (isspace((unsigned char)*zSql)) zSql++;
  for (size_t i = 0; i < sizeof azKw / sizeof azKw[0]; i++) {
    size_t n = strlen(azKw[i]);
    if (strncasecmp(zSql, azKw[i], n) == 0 && !isalnum((unsigned char)zSql[n]))
      return 1;
  }
  return strcasestr(zSql, "RETURNING") != NULL;
}

static void print_value(const dqw_value *v) {
  switch (v->type) {
    case DQW_INTEGER: case DQW_UNIXTIME: case DQW_BOOLEAN:
      printf("%lld", (long long)v->i); break;
    case DQW_FLOAT: printf("%.17g", v->f); break;
    case DQW_TEXT: case DQW_ISO8601: fputs((const char *)v->p, stdout); break;
    case DQW_BLOB:
      printf("X'");
      for (size_t i = 0; i < v->n; i++)
        printf("%02x", ((const unsigned char *)v->p)[i]);
      printf("'");
      break;
    default: break; /* NULL prints as nothing, as sqlite3's list mode */
  }
}

static int run_sql(dqw_conn *c, const char *zSql) {
  if (!returns_rows(zSql)) return dqw_exec(c, zSql, NULL, 0, NULL, NULL);
  dqw_rows R;
  int rc = dqw_query(c, zSql, NULL, 0, &R);
  for (int i = 0; rc == 0 && i < R.nRow; i++) {
    for (int j = 0; j < R.nCol; j++) {
      if (j) putchar('|');
      print_value(dqw_cell(&R, i, j));
    }
    putchar('\n');
  }
  dqw_rows_free(&R);
  return rc;
}

static int run_dot(dqw_conn *c, const char *zCmd) {
  char zAddr[128];
  uint64_t id;
  int rc;
  if (strncmp(zCmd, ".leader", 7) == 0) {
    rc = dqw_leader(c, &id, zAddr, sizeof zAddr);
    if (rc == 0) printf("%llu|%s\n", (unsigned long long)id, zAddr);
  } else if (strncmp(zCmd, ".cluster", 8) == 0) {
    static const char *azRole[] = {"voter", "standby", "spare"};
    dqw_server *a;
    int n;
    rc = dqw_cluster(c, &a, &n);
    for (int i = 0; rc == 0 && i < n; i++)
      printf("%llu|%s|%s\n", (unsigned long long)a[i].id, a[i].zAddr,
             a[i].role >= 0 && a[i].role <= 2 ? azRole[a[i].role] : "?");
    if (rc == 0) free(a);
  } else if (strncmp(zCmd, ".transfer ", 10) == 0) {
    rc = dqw_transfer(c, strtoull(zCmd + 10, NULL, 10));
  } else {
    fprintf(stderr, "annex-dq: unknown command %s\n", zCmd);
    return 1;
  }
  return rc;
}

static int run_one(dqw_conn *c, const char *z) {
  while (isspace((unsigned char)*z)) z++;
  if (!*z) return 0;
  int rc = *z == '.' ? run_dot(c, z) : run_sql(c, z);
  if (rc > 0 || rc == DQW_EIO)
    fprintf(stderr, "annex-dq: %s\n", dqw_errmsg(c));
  return rc != 0;
}

/* Statements from stdin: lines gathered until sqlite3_complete says the
** statement is whole; dot-commands are one line. */
static int run_stdin(dqw_conn *c) {
  char *zLine = NULL, *zAcc = NULL;
  size_t nLine = 0, nAcc = 0;
  int nErr = 0;
  while (getline(&zLine, &nLine, stdin) > 0) {
    if (nAcc == 0 && zLine[0] == '.') { nErr += run_one(c, zLine); continue; }
    size_t n = strlen(zLine);
    char *z = realloc(zAcc, nAcc + n + 1);
    if (!z) { nErr++; break; }
    zAcc = z;
    memcpy(zAcc + nAcc, zLine, n + 1);
    nAcc += n;
    if (sqlite3_complete(zAcc)) { nErr += run_one(c, zAcc); nAcc = 0; }
  }
  if (nAcc) nErr += run_one(c, zAcc);
  free(zLine);
  free(zAcc);
  return nErr;
}

int main(int argc, char **argv) {
  const char *zServers = NULL, *zDb = "annex.db";
  char *azNode[MAX_NODES], zErr[512];
  int i = 1, nErr = 0;
  dqw_conn *c;
  for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
    if (!strcmp(argv[i], "-s")) zServers = argv[i + 1];
    else if (!strcmp(argv[i], "-d")) zDb = argv[i + 1];
    else break;
  }
  if (!zServers) {
    fprintf(stderr, "usage: annex-dq -s HOST:PORT[,...] [-d DB] [STATEMENT...]\n");
    return 2;
  }
  int nNode = dqw_split_list(zServers, azNode, MAX_NODES);
  if (dqw_connect_leader((const char *const *)azNode, nNode, 5000, &c, zErr,
                         sizeof zErr)) {
    fprintf(stderr, "annex-dq: no leader found: %s\n", zErr);
    return 1;
  }
  if (dqw_open(c, zDb)) {
    fprintf(stderr, "annex-dq: open %s: %s\n", zDb, dqw_errmsg(c));
    return 1;
  }
  if (i < argc) for (; i < argc; i++) nErr += run_one(c, argv[i]);
  else nErr = run_stdin(c);
  dqw_close(c);
  for (int k = 0; k < nNode; k++) free(azNode[k]);
  return nErr ? 1 : 0;
}
