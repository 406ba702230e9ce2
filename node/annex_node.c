/*
** annex_node.c — annex-node: one dqlite node with annex built in.
**
**   annex-node --id N --address HOST:PORT --dir DIR
**              [--bind HOST:PORT] [--join HOST:PORT[,HOST:PORT...]]
**              [--latency-ms MS]
**
** Owns the process: flags, annex registration, the dqlite node's life,
** and signals. annex is registered with sqlite3_auto_extension before the
** node starts, so every SQLite connection dqlite opens (one per client, on
** the leader) has the annex module; the same hook turns on
** SQLITE_DBCONFIG_DEFENSIVE, so annex's shadow tables refuse direct
** writes. dqlite replicates the WAL frames of each commit through Raft, so
** the shadow tables (vectors, HNSW/IVF graphs) are the same pages on every
** node.
**
** Node 1 bootstraps a new cluster (dqlite's rule); other nodes join
** through --join (join.c). SIGTERM or SIGINT stops the node cleanly
** (dqlite_node_stop, then destroy); exit status 0.
*/
#define _POSIX_C_SOURCE 200809L
#include <dqlite.h>
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "annex.h"
#include "dqwire.h"
#include "join.h"

#define MAX_PEERS 16

typedef struct node_opts {
  unsigned long long id;
  const char *zAddr, *zBind, *zDir, *zJoin;
  unsigned latency_ms;
  double join_timeout_s;
} node_opts;

/* The auto-extension entry point: annex, then defensive mode. */
static int annex_node_ext(sqlite3 *db, char **pzErr,
                          const sqlite3_api_routines *pApi) {
  int rc = sqlite3_annex_init(db, pzErr, pApi);
  if (rc == SQLITE_OK)
    rc = sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)0);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f,
    "usage: annex-node --id N --address HOST:PORT --dir DIR\n"
    "                  [--bind HOST:PORT] [--join HOST:PORT[,...]]\n"
    "                  [--latency-ms MS] [--join-timeout S]\n"
    "  --id          this node's id; node 1 bootstraps a new cluster\n"
    "  --address     the address other nodes and clients use\n"
    "  --dir         data directory (Raft log and snapshots)\n"
    "  --bind        address to listen on (default: --address)\n"
    "  --join        peers to join through, alias --cluster (ADD, then\n"
    "                ASSIGN voter, via the leader); a restarted member\n"
    "                finds itself in the cluster and changes nothing\n"
    "  --latency-ms  one-way network latency: heartbeats every 1.5x, an\n"
    "                election after 15x (dqlite's default: 3 s elections)\n");
}

static int parse_opts(int argc, char **argv, node_opts *o) {
  memset(o, 0, sizeof *o);
  o->join_timeout_s = 60;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
    if (!v) { fprintf(stderr, "annex-node: %s needs a value\n", a); return 1; }
    if (!strcmp(a, "--id")) o->id = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--address")) o->zAddr = v;
    else if (!strcmp(a, "--bind")) o->zBind = v;
    else if (!strcmp(a, "--dir")) o->zDir = v;
    else if (!strcmp(a, "--join") || !strcmp(a, "--cluster")) o->zJoin = v;
    else if (!strcmp(a, "--latency-ms")) o->latency_ms = (unsigned)atoi(v);
    else if (!strcmp(a, "--join-timeout")) o->join_timeout_s = atof(v);
    else { fprintf(stderr, "annex-node: unknown flag %s\n", a); return 1; }
    i++;
  }
  if (o->id == 0 || !o->zAddr || !o->zDir) {
    fprintf(stderr, "annex-node: --id (> 0), --address and --dir are required\n");
    usage(stderr);
    return 1;
  }
  return 0;
}

static int check(dqlite_node *n, int rc, const char *zWhat) {
  if (rc != 0)
    fprintf(stderr, "annex-node: %s failed (%d): %s\n", zWhat, rc,
            n ? dqlite_node_errmsg(n) : "");
  return rc;
}

/* mkdir -p */
static int make_dirs(const char *zDir) {
  char z[4096];
  snprintf(z, sizeof z, "%s", zDir);
  for (char *p = z + 1;; p++) {
    if (*p && *p != '/') continue;
    char c = *p;
    *p = 0;
    if (mkdir(z, 0755) && errno != EEXIST) {
      fprintf(stderr, "annex-node: mkdir %s: %s\n", z, strerror(errno));
      return 1;
    }
    if (!(*p = c)) return 0;
  }
}

/* Creates, configures and starts the node. */
static int start_node(const node_opts *o, dqlite_node **pNode) {
  dqlite_node *n = NULL;
  if (make_dirs(o->zDir)) return 1;
  int rc = check(NULL, dqlite_node_create(o->id, o->zAddr, o->zDir, &n),
                 "dqlite_node_create");
  if (rc == 0)
    rc = check(n, dqlite_node_set_bind_address(n, o->zBind ? o->zBind : o->zAddr),
               "dqlite_node_set_bind_address");
  if (rc == 0 && o->latency_ms)
    rc = check(n, dqlite_node_set_network_latency_ms(n, o->latency_ms),
               "dqlite_node_set_network_latency_ms");
  if (rc == 0) rc = check(n, dqlite_node_start(n), "dqlite_node_start");
  if (rc && n) dqlite_node_destroy(n);
  *pNode = rc ? NULL : n;
  return rc;
}

static int join_cluster(const node_opts *o) {
  char *azPeer[MAX_PEERS];
  char zErr[512];
  int nPeer = dqw_split_list(o->zJoin, azPeer, MAX_PEERS);
  int rc = annex_node_join((const char *const *)azPeer, nPeer, o->id, o->zAddr,
                           o->join_timeout_s, zErr, sizeof zErr);
  if (rc)
    fprintf(stderr, "annex-node %llu: could not join through %s: %s\n", o->id,
            o->zJoin, zErr);
  for (int i = 0; i < nPeer; i++) free(azPeer[i]);
  return rc;
}

int main(int argc, char **argv) {
  node_opts o;
  dqlite_node *n;
  sigset_t set;
  int sig = 0;
  if (parse_opts(argc, argv, &o)) return 2;
  /* Block the stop signals in every thread (dqlite's inherits the mask);
  ** the main thread takes them with sigwait. */
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  /* libuv writes to peers' sockets with write(2): a peer that went away
  ** must be an EPIPE error, not a SIGPIPE that kills the node. */
  signal(SIGPIPE, SIG_IGN);
  if (sqlite3_auto_extension((void (*)(void))annex_node_ext) != SQLITE_OK) {
    fprintf(stderr, "annex-node: sqlite3_auto_extension failed\n");
    return 1;
  }
  if (start_node(&o, &n)) return 1;
  fprintf(stderr, "annex-node %llu: serving %s (data in %s)\n", o.id,
          dqlite_node_get_bind_address(n), o.zDir);
  int rc = 0;
  if (o.zJoin && join_cluster(&o)) rc = 1;
  if (rc == 0) {
    fprintf(stderr, "annex-node %llu: ready\n", o.id);
    sigwait(&set, &sig);
    fprintf(stderr, "annex-node %llu: signal %d, stopping\n", o.id, sig);
  }
  int rcStop = dqlite_node_stop(n);
  if (rcStop) fprintf(stderr, "annex-node: dqlite_node_stop: %d\n", rcStop);
  dqlite_node_destroy(n);
  sqlite3_reset_auto_extension();
  fprintf(stderr, "annex-node %llu: stopped\n", o.id);
  return rc || rcStop ? 1 : 0;
}
