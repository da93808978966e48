/* broker/: the node's Raft side: the peer transport (raft/pnet.h) to the
 * seed nodes, the group registry (raft/rreg.h) under <data_dir>/raft, and
 * the controller's group on the controller's voters (controller.h: group
 * 0 at first, a new one after a voter came back with a new disk).
 *
 * Voters: the first 1, 3 or 5 nodes of the seed list (a list of 2 or 4
 * uses its first 1 or 3); every node has the same list, so every voter
 * bootstraps group 0 with the same configuration. Without seeds the node
 * is a cluster of one. Nodes past the voters, in the seed list or added
 * later (listing the voters first, then themselves), follow the metadata
 * through the controller's leader (controller.h). Every node runs the
 * groups of its partitions (partitions.h).
 *
 * The peer handshake's cluster id is derived from the voters (XXH3-128 of
 * their "id@host:port" list): nodes configured with other voters are
 * strangers to each other. The metadata's own cluster id, chosen by the
 * first controller leader, comes with the controller's state machine.
 *
 * Threads: the loop thread. */
#ifndef SL_BROKER_CLUSTER_H
#define SL_BROKER_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "config.h"
#include "datadir.h"

struct sl_cluster;

/* Starts the transport and the registry, and on a voter the controller's
 * group (the one the data directory recorded, else 0). Returns
 * SL_OK, or an error with the reason in errmsg; then nothing runs. */
int sl_cluster_start(uv_loop_t *loop, const struct sl_config *cfg, struct sl_datadir *dd,
		     struct sl_cluster **out, char *errmsg);

/* The controller's leader as this node knows it (0: none, or this node
 * is no voter). */
uint64_t sl_cluster_controller_leader(struct sl_cluster *c);

/* Whether this node has joined (the controller's metadata has the cluster
 * id and this node); else *why (static text) says what is missing. */
bool sl_cluster_ready(struct sl_cluster *c, const char **why);
/* The controller (controller.h), for the client APIs. */
struct sl_controller *sl_cluster_controller(struct sl_cluster *c);
/* Pins in the data directory (datadir.h: peers) each seed's UUID, as the
 * transport learned it from the seed's first hello or, before that, as
 * the seed registered it in the metadata, so that it is enforced from
 * then on, across restarts; makes every registered node past the seeds a
 * peer of the transport; and takes a node's new disk in (the pin
 * replaced) once nothing this node runs counts the old one. Called every
 * second. */
void sl_cluster_pin_peers(struct sl_cluster *c, struct sl_datadir *dd);

/* The partition manager (partitions.h). */
struct sl_parts;
struct sl_parts *sl_cluster_parts(struct sl_cluster *c);
/* The controller's metadata as applied here. */
struct sl_meta;
const struct sl_meta *sl_cluster_meta(struct sl_cluster *c);

/* Prometheus text for the groups this node runs. */
void sl_cluster_metrics(struct sl_cluster *c, FILE *out);

/* Stops: with handoff, first hands every group this node leads to another
 * voter (SIGTERM); then closes the groups and the transport. cb(arg) once
 * everything is closed and c is freed. */
void sl_cluster_stop(struct sl_cluster *c, bool handoff, void (*cb)(void *arg), void *arg);

#endif
