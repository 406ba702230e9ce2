/*
** join.h — annex-node's join flow (join.c): make this node a voter of the
** cluster that the peers belong to.
*/
#ifndef ANNEX_NODE_JOIN_H
#define ANNEX_NODE_JOIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Retries until node id (at zAddr) is a voter, or timeout_s passes; then
** returns -1 with the last error in zErr. */
int annex_node_join(const char *const *azPeer, int nPeer, uint64_t id,
                    const char *zAddr, double timeout_s, char *zErr,
                    size_t nErr);

#endif /* ANNEX_NODE_JOIN_H */
