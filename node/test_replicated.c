/*
** test_replicated.c — annex replicated on dqlite: failover and catch-up.
**
**   test_replicated --node PATH/annex-node --data DIR/sift5k --work DIR
**                   [--rows N] [--queries Q] [--k K] [--latency-ms MS]
**                   [--stop kill|term]
**
** Starts three annex-node processes on 127.0.0.1, creates an annex table
** with index=hnsw through the leader, loads the dataset's base vectors,
** records k-NN answers (rowids and distances) for Q queries, SIGKILLs the
** leader (SIGTERM with --stop term), waits for a new one and checks that
** the same queries return the same rows and distances through it. Then it
** writes one more row while the old leader is down, restarts that node and
** checks it caught up.
**
** dqlite serves every statement on the leader (a follower answers "not
** leader"), so "caught up" is checked by handing leadership to the
** restarted node (TRANSFER) and querying through it: its answers come
** from its own copy of the database, rebuilt from its Raft log plus the
** entries it missed. Exit 0 when every check passed.
*/
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dqwire.h"

#define N_NODES 3
#define DB_NAME "annex.db"
#define BATCH 200 /* rows per INSERT (one parameter each, max 255) */

typedef struct node {
  uint64_t id;
  char zAddr[64], zDir[512], zLog[512];
  pid_t pid;
} node;

typedef struct opts {
  const char *zNode, *zData, *zWork;
  int nRows, nQuery, k, latency_ms;
  int sig; /* how the leader is stopped: SIGKILL (default) or SIGTERM */
} opts;

typedef struct dataset {
  int dim, nBase, nQuery, nTruth, truthDim;
  float *aBase, *aQuery;
  int *aTruth;
} dataset;

/* k-NN answers: nQuery x k rowids and distances. */
typedef struct answers {
  int nQuery, k;
  int64_t *aRowid;
  double *aDist;
  int *aN;
} answers;

static node g_nodes[N_NODES];
static opts g_o;

/* Helpers ****************************************************************/

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void kill_all(int sig) {
  for (int i = 0; i < N_NODES; i++)
    if (g_nodes[i].pid > 0) kill(g_nodes[i].pid, sig);
}

/* Prints the failure and the tail of each node's log, kills the nodes. */
static void die(const char *zFmt, ...) {
  va_list ap;
  fprintf(stdout, "FAIL: ");
  va_start(ap, zFmt);
  vfprintf(stdout, zFmt, ap);
  va_end(ap);
  fprintf(stdout, "\n");
  kill_all(SIGKILL);
  for (int i = 0; i < N_NODES; i++) {
    char zCmd[600];
    printf("--- %s (last lines)\n", g_nodes[i].zLog);
    fflush(stdout);
    snprintf(zCmd, sizeof zCmd, "tail -n 15 '%s'", g_nodes[i].zLog);
    if (system(zCmd) != 0) printf("(no log)\n");
  }
  exit(1);
}

static node *node_by_id(uint64_t id) {
  for (int i = 0; i < N_NODES; i++)
    if (g_nodes[i].id == id) return &g_nodes[i];
  return NULL;
}

/* Nodes ******************************************************************/

/* A base port whose three ports are free now. */
static int pick_port(void) {
  for (int attempt = 0; attempt < 50; attempt++) {
    int base = 20000 + (int)((getpid() * 7 + attempt * 131) % 15000) * 3;
    int ok = 1;
    for (int i = 0; i < N_NODES && ok; i++) {
      struct sockaddr_in sa = {0};
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      sa.sin_family = AF_INET;
      sa.sin_port = htons((uint16_t)(base + i));
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
      if (fd >= 0) close(fd);
    }
    if (ok) return base;
  }
  die("no three free ports on 127.0.0.1");
  return 0;
}

/* Dies when a node process that should be running has exited. */
static void check_alive(void) {
  int st;
  for (int i = 0; i < N_NODES; i++) {
    if (g_nodes[i].pid > 0 && waitpid(g_nodes[i].pid, &st, WNOHANG) > 0) {
      g_nodes[i].pid = 0;
      die("node %d exited unexpectedly (%s %d)", i + 1,
          WIFEXITED(st) ? "exit" : "signal",
          WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
  }
}

/* Starts node i (its log is appended to); joins through the others. */
static void node_spawn(int i) {
  node *n = &g_nodes[i];
  char zId[16], zLat[16], zJoin[256] = "";
  for (int j = 0; j < N_NODES; j++) {
    if (j == i) continue;
    if (zJoin[0]) strcat(zJoin, ",");
    strcat(zJoin, g_nodes[j].zAddr);
  }
  snprintf(zId, sizeof zId, "%llu", (unsigned long long)n->id);
  snprintf(zLat, sizeof zLat, "%d", g_o.latency_ms);
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    int fd = open(n->zLog, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
    const char *argv[] = {g_o.zNode, "--id", zId, "--address", n->zAddr,
                          "--dir", n->zDir, "--latency-ms", zLat,
                          n->id == 1 ? NULL : "--join", zJoin, NULL};
    execv(g_o.zNode, (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", g_o.zNode, strerror(errno));
    _exit(127);
  }
  n->pid = pid;
}

/* Waits for node n's process to exit; returns its status text. */
static const char *node_reap(node *n, double timeout_s, int *pOk) {
  static char z[64];
  int st;
  double tEnd = now_s() + timeout_s;
  *pOk = 0;
  while (now_s() < tEnd) {
    pid_t r = waitpid(n->pid, &st, WNOHANG);
    if (r == n->pid) {
      n->pid = 0;
      if (WIFEXITED(st)) {
        *pOk = WEXITSTATUS(st) == 0;
        snprintf(z, sizeof z, "exit %d", WEXITSTATUS(st));
      } else {
        snprintf(z, sizeof z, "signal %d", WTERMSIG(st));
      }
      return z;
    }
    sleep_ms(20);
  }
  return "did not exit";
}

/* Cluster state **********************************************************/

/* Connects to node n; NULL when it does not answer. */
static dqw_conn *node_connect(const node *n, int timeout_ms) {
  dqw_conn *c;
  char zErr[256];
  return dqw_connect(n->zAddr, timeout_ms, &c, zErr, sizeof zErr) ? NULL : c;
}

/* The leader id as node n knows it (0: none, or n unreachable). */
static uint64_t leader_seen_by(const node *n) {
  char zAddr[128];
  uint64_t id = 0;
  dqw_conn *c = node_connect(n, 500);
  if (c && dqw_leader(c, &id, zAddr, sizeof zAddr)) id = 0;
  dqw_close(c);
  return id;
}

/* A connection to node id with the database open, if id leads now. */
static dqw_conn *open_on(uint64_t id, char *zErr, size_t nErr) {
  char zAddr[128];
  uint64_t self = 0;
  node *n = node_by_id(id);
  dqw_conn *c = n ? node_connect(n, 5000) : NULL;
  snprintf(zErr, nErr, "node %llu unreachable", (unsigned long long)id);
  if (!c) return NULL;
  if (dqw_leader(c, &self, zAddr, sizeof zAddr) == 0 && self == id &&
      dqw_open(c, DB_NAME) == 0)
    return c;
  snprintf(zErr, nErr, "node %llu: %s", (unsigned long long)id,
           self != id ? "does not lead" : dqw_errmsg(c));
  dqw_close(c);
  return NULL;
}

/* Number of voters in the configuration node n reports. */
static int voters(const node *n) {
  dqw_server *a;
  int nSrv, nVoter = 0;
  dqw_conn *c = node_connect(n, 1000);
  if (c && dqw_cluster(c, &a, &nSrv) == 0) {
    for (int i = 0; i < nSrv; i++) nVoter += a[i].role == DQW_VOTER;
    free(a);
  }
  dqw_close(c);
  return nVoter;
}

/* Waits until some live node other than `old` names a leader other than
** `old`; returns its id (0 on timeout). */
static uint64_t wait_new_leader(uint64_t old, double timeout_s) {
  double tEnd = now_s() + timeout_s;
  while (now_s() < tEnd) {
    for (int i = 0; i < N_NODES; i++) {
      if (g_nodes[i].pid <= 0 || g_nodes[i].id == old) continue;
      uint64_t id = leader_seen_by(&g_nodes[i]);
      if (id != 0 && id != old) return id;
    }
    sleep_ms(10);
  }
  return 0;
}

/* Dataset ****************************************************************/

/* Reads an fvecs/ivecs file (int32 dim, then dim 4-byte values) */
static void *read_vecs(const char *zDir, const char *zFile, int *pDim,
                       int *pN) {
  char zPath[1024];
  snprintf(zPath, sizeof zPath, "%s/%s", zDir, zFile);
  FILE *f = fopen(zPath, "rb");
  int32_t dim;
  struct stat st;
  if (!f || fstat(fileno(f), &st) || fread(&dim, 4, 1, f) != 1 || dim <= 0)
    die("cannot read %s: %s", zPath, strerror(errno));
  size_t nRec = (size_t)st.st_size / (4 + 4 * (size_t)dim);
  unsigned char *p = malloc(nRec * (size_t)dim * 4);
  rewind(f);
  for (size_t i = 0; p && i < nRec; i++) {
    if (fread(&dim, 4, 1, f) != 1 || fread(p + i * (size_t)dim * 4, 4,
                                            (size_t)dim, f) != (size_t)dim)
      die("short read in %s", zPath);
  }
  fclose(f);
  *pDim = dim;
  *pN = (int)nRec;
  return p;
}

static void load_dataset(dataset *d) {
  int dimQ;
  d->aBase = read_vecs(g_o.zData, "base.fvecs", &d->dim, &d->nBase);
  d->aQuery = read_vecs(g_o.zData, "query.fvecs", &dimQ, &d->nQuery);
  d->aTruth = read_vecs(g_o.zData, "groundtruth.ivecs", &d->truthDim,
                        &d->nTruth);
  if (dimQ != d->dim) die("query and base dimensions differ");
  if (g_o.nRows <= 0 || g_o.nRows > d->nBase) g_o.nRows = d->nBase;
  if (g_o.nQuery > d->nQuery) g_o.nQuery = d->nQuery;
}

/* Data and queries *******************************************************/

static void exec_or_die(dqw_conn *c, const char *zSql) {
  if (dqw_exec(c, zSql, NULL, 0, NULL, NULL))
    die("%s\n  -> %s", zSql, dqw_errmsg(c));
}

/* Inserts rows [i0, i1) of the base set as rowids i0+1..i1, BATCH rows
** per transaction. Returns the number of transactions. */
static int load_rows(dqw_conn *c, const dataset *d, int i0, int i1) {
  size_t nVec = (size_t)d->dim * 4;
  char *zSql = malloc(64 + (size_t)BATCH * 24);
  dqw_value aP[BATCH];
  int nTx = 0;
  for (int b = i0; b < i1; b += BATCH) {
    int n = i1 - b < BATCH ? i1 - b : BATCH;
    char *z = zSql + sprintf(zSql, "INSERT INTO items(rowid, embedding) VALUES");
    for (int j = 0; j < n; j++) {
      z += sprintf(z, "%s(%d,?)", j ? "," : "", b + j + 1);
      aP[j] = (dqw_value){.type = DQW_BLOB, .n = nVec,
                          .p = d->aBase + (size_t)(b + j) * (size_t)d->dim};
    }
    if (dqw_exec(c, zSql, aP, n, NULL, NULL))
      die("insert of rows %d..%d: %s", b + 1, b + n, dqw_errmsg(c));
    nTx++;
  }
  free(zSql);
  return nTx;
}

/* k-NN for queries [0, nQ) (their vectors from aQ) into *pA. */
static int knn_all(dqw_conn *c, const float *aQ, int dim, int nQ, answers *pA,
                   char *zErr, size_t nErr) {
  char zSql[128];
  snprintf(zSql, sizeof zSql, "SELECT rowid, distance FROM items "
           "WHERE embedding MATCH ? AND k = %d", g_o.k);
  pA->nQuery = nQ;
  pA->k = g_o.k;
  pA->aRowid = calloc((size_t)nQ * (size_t)g_o.k, sizeof(int64_t));
  pA->aDist = calloc((size_t)nQ * (size_t)g_o.k, sizeof(double));
  pA->aN = calloc((size_t)nQ, sizeof(int));
  for (int q = 0; q < nQ; q++) {
    dqw_value p = {.type = DQW_BLOB, .n = (size_t)dim * 4,
                   .p = aQ + (size_t)q * (size_t)dim};
    dqw_rows R;
    int rc = dqw_query(c, zSql, &p, 1, &R);
    if (rc) {
      snprintf(zErr, nErr, "query %d: %s", q, dqw_errmsg(c));
      dqw_rows_free(&R);
      return rc;
    }
    pA->aN[q] = R.nRow < g_o.k ? R.nRow : g_o.k;
    for (int r = 0; r < pA->aN[q]; r++) {
      pA->aRowid[q * g_o.k + r] = dqw_cell(&R, r, 0)->i;
      pA->aDist[q * g_o.k + r] = dqw_cell(&R, r, 1)->f;
    }
    dqw_rows_free(&R);
  }
  return 0;
}

static void answers_free(answers *a) {
  free(a->aRowid);
  free(a->aDist);
  free(a->aN);
}

/* Number of queries whose rows and distances are bit-identical; prints
** the first difference. */
static int compare(const answers *a, const answers *b, const char *zWhat) {
  int nSame = 0;
  for (int q = 0; q < a->nQuery && q < b->nQuery; q++) {
    int same = a->aN[q] == b->aN[q];
    for (int r = 0; same && r < a->aN[q]; r++) {
      int i = q * a->k + r;
      same = a->aRowid[i] == b->aRowid[i] &&
             memcmp(&a->aDist[i], &b->aDist[i], sizeof(double)) == 0;
      if (!same)
        printf("  %s: query %d rank %d: rowid %lld d=%.9g vs rowid %lld "
               "d=%.9g\n", zWhat, q, r, (long long)a->aRowid[i], a->aDist[i],
               (long long)b->aRowid[i], b->aDist[i]);
    }
    nSame += same;
  }
  return nSame;
}

/* recall@k of the answers against the ground truth (0-based ids). */
static double recall(const answers *a, const dataset *d) {
  int nHit = 0;
  for (int q = 0; q < a->nQuery; q++) {
    const int *t = d->aTruth + (size_t)q * (size_t)d->truthDim;
    for (int r = 0; r < a->aN[q]; r++)
      for (int j = 0; j < a->k; j++) nHit += a->aRowid[q * a->k + r] == t[j] + 1;
  }
  return (double)nHit / ((double)a->nQuery * a->k);
}

static int64_t count_rows(dqw_conn *c) {
  dqw_rows R;
  int64_t n = -1;
  if (dqw_query(c, "SELECT count(*) FROM items", NULL, 0, &R) == 0 && R.nRow)
    n = dqw_cell(&R, 0, 0)->i;
  dqw_rows_free(&R);
  return n;
}

/* Phases *****************************************************************/

static char g_zChanges[512];
static int g_nChanges;

static void leader_change(uint64_t from, uint64_t to, const char *zWhy) {
  size_t n = strlen(g_zChanges);
  g_nChanges++;
  snprintf(g_zChanges + n, sizeof g_zChanges - n, "%s%llu -> %llu (%s)",
           n ? ", " : "", (unsigned long long)from, (unsigned long long)to,
           zWhy);
}

/* Node 1 bootstraps; 2 and 3 join through the others as voters. */
static void start_cluster(void) {
  double t0 = now_s();
  node_spawn(0);
  while (leader_seen_by(&g_nodes[0]) != 1) {
    check_alive();
    if (now_s() - t0 > 20) die("node 1 did not become leader");
    sleep_ms(20);
  }
  node_spawn(1);
  node_spawn(2);
  while (voters(&g_nodes[0]) != N_NODES) {
    check_alive();
    if (now_s() - t0 > 60) die("nodes 2 and 3 did not join as voters");
    sleep_ms(50);
  }
  printf("nodes: 3 annex-node processes (ids 1, 2, 3; pids %d %d %d) on "
         "%s, %s, %s; %d voters; up in %.2f s\n", (int)g_nodes[0].pid,
         (int)g_nodes[1].pid, (int)g_nodes[2].pid, g_nodes[0].zAddr,
         g_nodes[1].zAddr, g_nodes[2].zAddr, voters(&g_nodes[0]),
         now_s() - t0);
}

/* Creates the table; checks annex is loaded and defensive mode is on. */
static void create_table(dqw_conn *c, const dataset *d) {
  char zSql[200];
  dqw_rows R;
  snprintf(zSql, sizeof zSql, "CREATE VIRTUAL TABLE items USING "
           "annex(embedding float[%d], index=hnsw)", d->dim);
  exec_or_die(c, zSql);
  if (dqw_query(c, "SELECT annex_version()", NULL, 0, &R) || R.nRow != 1)
    die("annex_version(): %s", dqw_errmsg(c));
  printf("annex %s on every connection (sqlite3_auto_extension)",
         (const char *)dqw_cell(&R, 0, 0)->p);
  dqw_rows_free(&R);
  if (dqw_query(c, "SELECT value FROM annex_info('items') WHERE key='index'",
                NULL, 0, &R) || R.nRow != 1 || R.aVal[0].type != DQW_TEXT)
    die("annex_info('items'): %s", dqw_errmsg(c));
  printf("; table items: index=%s\n", (const char *)dqw_cell(&R, 0, 0)->p);
  dqw_rows_free(&R);
  if (dqw_exec(c, "DELETE FROM items_rows", NULL, 0, NULL, NULL) == 0)
    die("defensive mode is off: DELETE FROM items_rows succeeded");
  printf("defensive: DELETE FROM items_rows refused: %s\n", dqw_errmsg(c));
}

/* Stops the leader (SIGKILL unless --stop term); returns the new leader once it answered a query,
** with the failover time (kill -> first answer) in *pMs. */
static double g_electedMs = -1; /* kill -> a survivor names a new leader */

static uint64_t failover(uint64_t old, const dataset *d, double *pMs) {
  node *n = node_by_id(old);
  char zErr[512] = "";
  kill(n->pid, g_o.sig);
  double t0 = now_s();
  int ok;
  node_reap(n, 5, &ok);
  for (;;) {
    uint64_t id = wait_new_leader(old, 30 - (now_s() - t0));
    if (id == 0) die("no new leader 30 s after killing %llu (%s)",
                     (unsigned long long)old, zErr);
    if (g_electedMs < 0) g_electedMs = (now_s() - t0) * 1000;
    dqw_conn *c = open_on(id, zErr, sizeof zErr);
    answers a;
    if (c && knn_all(c, d->aQuery, d->dim, 1, &a, zErr, sizeof zErr) == 0) {
      *pMs = (now_s() - t0) * 1000;
      answers_free(&a);
      dqw_close(c);
      return id;
    }
    dqw_close(c);
    sleep_ms(10);
  }
}

/* Restarts node id and hands it leadership; returns the time taken. */
static double rejoin_and_transfer(uint64_t id, uint64_t leader) {
  char zErr[512] = "";
  double t0 = now_s();
  node_spawn((int)id - 1);
  while (now_s() - t0 < 60) {
    if (leader_seen_by(node_by_id(id)) == id) return now_s() - t0;
    check_alive();
    dqw_conn *c = open_on(leader, zErr, sizeof zErr);
    int rc = c ? dqw_transfer(c, id) : DQW_EIO;
    if (c && rc) snprintf(zErr, sizeof zErr, "%s", dqw_errmsg(c));
    dqw_close(c);
    if (rc == 0 && leader_seen_by(node_by_id(id)) == id) return now_s() - t0;
    sleep_ms(100);
  }
  die("could not hand leadership to restarted node %llu: %s",
      (unsigned long long)id, zErr);
  return 0;
}

static void parse_opts(int argc, char **argv) {
  g_o = (opts){.nRows = 0, .nQuery = 50, .k = 10, .latency_ms = 50,
               .sig = SIGKILL};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (!strcmp(a, "--node")) g_o.zNode = v;
    else if (!strcmp(a, "--data")) g_o.zData = v;
    else if (!strcmp(a, "--work")) g_o.zWork = v;
    else if (!strcmp(a, "--rows")) g_o.nRows = atoi(v);
    else if (!strcmp(a, "--queries")) g_o.nQuery = atoi(v);
    else if (!strcmp(a, "--k")) g_o.k = atoi(v);
    else if (!strcmp(a, "--latency-ms")) g_o.latency_ms = atoi(v);
    else if (!strcmp(a, "--stop")) g_o.sig = strcmp(v, "term") ? SIGKILL : SIGTERM;
    else { fprintf(stderr, "unknown flag %s\n", a); exit(2); }
  }
  if (!g_o.zNode || !g_o.zData || !g_o.zWork || g_o.k < 1 || g_o.nQuery < 1) {
    fprintf(stderr, "usage: test_replicated --node annex-node --data DIR "
            "--work DIR [--rows N] [--queries Q] [--k K] [--latency-ms MS] "
            "[--stop kill|term]\n");
    exit(2);
  }
}

static void setup_nodes(void) {
  int port = pick_port();
  if (mkdir(g_o.zWork, 0755) && errno != EEXIST)
    die("mkdir %s: %s", g_o.zWork, strerror(errno));
  for (int i = 0; i < N_NODES; i++) {
    node *n = &g_nodes[i];
    n->id = (uint64_t)i + 1;
    snprintf(n->zAddr, sizeof n->zAddr, "127.0.0.1:%d", port + i);
    snprintf(n->zDir, sizeof n->zDir, "%s/node%d", g_o.zWork, i + 1);
    snprintf(n->zLog, sizeof n->zLog, "%s/node%d.log", g_o.zWork, i + 1);
  }
}

/* Stops every node with SIGTERM; 0 when all exited with status 0. */
static int stop_all(void) {
  int nBad = 0, ok;
  kill_all(SIGTERM);
  printf("stopped: ");
  for (int i = 0; i < N_NODES; i++) {
    printf("%snode %d %s", i ? ", " : "", i + 1,
           node_reap(&g_nodes[i], 20, &ok));
    nBad += !ok;
  }
  printf(" (SIGTERM -> dqlite_node_stop)\n");
  return nBad;
}

/* 1. schema, data and the first answers, through leader 1 */
static void phase_load(const dataset *d, answers *a0) {
  char zErr[512];
  dqw_conn *c = open_on(1, zErr, sizeof zErr);
  if (!c) die("leader 1: %s", zErr);
  create_table(c, d);
  double tl = now_s();
  int nTx = load_rows(c, d, 0, g_o.nRows);
  printf("loaded %d %d-d vectors (index=hnsw) through leader 1 in %.2f s, "
         "%d replicated transactions\n", g_o.nRows, d->dim, now_s() - tl, nTx);
  if (knn_all(c, d->aQuery, d->dim, g_o.nQuery, a0, zErr, sizeof zErr))
    die("%s", zErr);
  printf("recorded: %d queries, k=%d, through leader 1", g_o.nQuery, g_o.k);
  if (g_o.nRows == d->nBase && d->truthDim >= g_o.k)
    printf(" (recall@%d against the ground truth: %.3f)", g_o.k, recall(a0, d));
  printf("\n");
  dqw_close(c);
}

/* 2. the leader dies; the same answers through the new one */
static uint64_t phase_failover(const dataset *d, const answers *a0,
                               double *pMs) {
  char zErr[512];
  answers a1;
  uint64_t L1 = failover(1, d, pMs);
  const char *zSig = g_o.sig == SIGKILL ? "SIGKILL" : "SIGTERM";
  leader_change(1, L1, g_o.sig == SIGKILL ? "SIGKILL of the leader"
                                          : "SIGTERM of the leader");
  printf("failover: stopped leader 1 (%s); %.0f ms later a survivor named "
         "node %llu leader; it answered its first query %.0f ms after the signal "
         "(election timeout %d ms, --latency-ms %d)\n", zSig, g_electedMs,
         (unsigned long long)L1, *pMs, 15 * g_o.latency_ms, g_o.latency_ms);
  dqw_conn *c = open_on(L1, zErr, sizeof zErr);
  if (!c || knn_all(c, d->aQuery, d->dim, g_o.nQuery, &a1, zErr, sizeof zErr))
    die("new leader %llu: %s", (unsigned long long)L1, zErr);
  int nSame = compare(a0, &a1, "after failover");
  printf("queries compared through new leader %llu: %d of %d identical "
         "(rowids and distances, bit for bit)\n", (unsigned long long)L1,
         nSame, g_o.nQuery);
  if (nSame != g_o.nQuery) die("answers changed after failover");
  exec_or_die(c, "INSERT INTO items(items) VALUES ('integrity-check')");
  printf("integrity-check on node %llu: ok\n", (unsigned long long)L1);
  answers_free(&a1);
  dqw_close(c);
  return L1;
}

/* 3. a write while node 1 is down (the spare query vector as a new row);
** the answers after it, on the current leader, into *aW */
static void phase_write(const dataset *d, uint64_t L1, answers *aW) {
  char zErr[512], zSql[128];
  int64_t newRow = g_o.nRows + 1;
  const float *vNew = d->aQuery + (size_t)g_o.nQuery * (size_t)d->dim;
  dqw_value p = {.type = DQW_BLOB, .p = vNew, .n = (size_t)d->dim * 4};
  dqw_conn *c = open_on(L1, zErr, sizeof zErr);
  if (!c) die("leader %llu: %s", (unsigned long long)L1, zErr);
  snprintf(zSql, sizeof zSql, "INSERT INTO items(rowid, embedding) VALUES "
           "(%lld, ?)", (long long)newRow);
  if (dqw_exec(c, zSql, &p, 1, NULL, NULL)) die("%s", dqw_errmsg(c));
  if (knn_all(c, d->aQuery, d->dim, g_o.nQuery + 1, aW, zErr, sizeof zErr))
    die("%s", zErr);
  if (aW->aRowid[g_o.nQuery * g_o.k] != newRow || aW->aDist[g_o.nQuery * g_o.k])
    die("the new row is not its own nearest neighbour on node %llu",
        (unsigned long long)L1);
  printf("wrote row %lld through leader %llu while node 1 was down "
         "(%lld rows)\n", (long long)newRow, (unsigned long long)L1,
         (long long)count_rows(c));
  dqw_close(c);
}

/* 4. node 1 comes back, catches up, and answers as leader */
static void phase_catch_up(const dataset *d, uint64_t L1, const answers *aW) {
  char zErr[512];
  answers aC;
  int64_t newRow = g_o.nRows + 1;
  double tr = rejoin_and_transfer(1, L1);
  leader_change(L1, 1, "TRANSFER to the restarted node");
  dqw_conn *c = open_on(1, zErr, sizeof zErr);
  if (!c || knn_all(c, d->aQuery, d->dim, g_o.nQuery + 1, &aC, zErr,
                    sizeof zErr))
    die("restarted node 1: %s", zErr);
  int64_t nRows = count_rows(c);
  int nSame = compare(aW, &aC, "after catch-up");
  int seen = aC.aRowid[g_o.nQuery * g_o.k] == newRow;
  printf("catch-up: restarted node 1 (same id, data dir, address); leadership "
         "transferred to it %.2f s after restart; queried THROUGH NODE 1 as "
         "leader (its own copy): %lld rows, row %lld %s, %d of %d queries "
         "identical to node %llu's answers after the write\n", tr,
         (long long)nRows, (long long)newRow, seen ? "found" : "MISSING",
         nSame, g_o.nQuery + 1, (unsigned long long)L1);
  if (!seen || nRows != newRow || nSame != g_o.nQuery + 1)
    die("node 1 did not catch up");
  exec_or_die(c, "INSERT INTO items(items) VALUES ('integrity-check')");
  answers_free(&aC);
  dqw_close(c);
}

int main(int argc, char **argv) {
  dataset d;
  answers a0, aW;
  double t0 = now_s(), failMs;
  parse_opts(argc, argv);
  setvbuf(stdout, NULL, _IONBF, 0);
  signal(SIGPIPE, SIG_IGN);
  load_dataset(&d);
  if (g_o.nQuery >= d.nQuery) g_o.nQuery = d.nQuery - 1; /* one spare */
  setup_nodes();
  start_cluster();
  phase_load(&d, &a0);
  uint64_t L1 = phase_failover(&d, &a0, &failMs);
  phase_write(&d, L1, &aW);
  phase_catch_up(&d, L1, &aW);
  printf("leader changes: %s\n", g_zChanges);
  if (stop_all()) die("a node did not stop cleanly");
  printf("replicated: PASS — %d nodes, %d leader changes, %d queries compared "
         "after failover + %d after catch-up, catch-up verified through the "
         "restarted node, failover %.0f ms, total %.1f s\n", N_NODES,
         g_nChanges, g_o.nQuery,
         g_o.nQuery + 1, failMs, now_s() - t0);
  answers_free(&a0);
  answers_free(&aW);
  free(d.aBase);
  free(d.aQuery);
  free(d.aTruth);
  return 0;
}
