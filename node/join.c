/*
** join.c — how annex-node becomes a voting member of an existing cluster.
**
** libdqlite 1.11 has no join call in its node API: a node other than #1
** starts with no configuration and waits to be added. So a joining node
** acts as a client of the cluster's leader: it asks the leader for the
** member list (CLUSTER), sends ADD (id, address) when it is missing, then
** ASSIGN voter when it is not one yet. A node restarted with --join finds
** itself already a voter and changes nothing. Leader changes during the
** join are retried until the deadline, or until a stop signal is pending.
*/
#define _POSIX_C_SOURCE 200809L
#include "join.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dqwire.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* The role of id in the cluster, or -1 when it is not a member. */
static int member_role(dqw_conn *c, uint64_t id, int *pRole) {
  dqw_server *a;
  int n;
  int rc = dqw_cluster(c, &a, &n);
  if (rc) return rc;
  *pRole = -1;
  for (int i = 0; i < n; i++) {
    if (a[i].id == id) *pRole = a[i].role;
  }
  free(a);
  return 0;
}

/* One attempt through the current leader; 0 once id is a voter. */
static int join_once(const char *const *azPeer, int nPeer, uint64_t id,
                     const char *zAddr, char *zErr, size_t nErr) {
  dqw_conn *c;
  int role, rc;
  if (dqw_connect_leader(azPeer, nPeer, 2000, &c, zErr, nErr)) return DQW_EIO;
  rc = member_role(c, id, &role);
  if (rc == 0 && role < 0) {
    rc = dqw_add(c, id, zAddr);
    if (rc == 0) {
      fprintf(stderr, "annex-node %llu: added to the cluster by %s\n",
              (unsigned long long)id, dqw_address(c));
      role = DQW_SPARE;
    }
  }
  if (rc == 0 && role != DQW_VOTER) {
    rc = dqw_assign(c, id, DQW_VOTER);
    if (rc == 0)
      fprintf(stderr, "annex-node %llu: now a voter\n", (unsigned long long)id);
  }
  if (rc) snprintf(zErr, nErr, "%s", dqw_errmsg(c));
  dqw_close(c);
  return rc;
}

/* Whether SIGTERM or SIGINT is pending (annex-node blocks both and takes
** them with sigwait once it is ready). */
static int stop_pending(void) {
  sigset_t set;
  return sigpending(&set) == 0 &&
         (sigismember(&set, SIGTERM) == 1 || sigismember(&set, SIGINT) == 1);
}

int annex_node_join(const char *const *azPeer, int nPeer, uint64_t id,
                    const char *zAddr, double timeout_s, char *zErr,
                    size_t nErr) {
  double tEnd = now_s() + timeout_s;
  for (;;) {
    if (join_once(azPeer, nPeer, id, zAddr, zErr, nErr) == 0) return 0;
    if (now_s() > tEnd) return -1;
    if (stop_pending()) {
      snprintf(zErr, nErr, "stopped by a signal while joining");
      return -1;
    }
    sleep_ms(200);
  }
}
