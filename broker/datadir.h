/* broker/: a node's data directory.
 *
 *   <dir>/lock       held with flock(LOCK_EX) while sluiced runs (a kill -9
 *                    releases it); holds the holder's pid, for the message
 *                    a second process gets
 *   <dir>/node.id    "node_id=N\nuuid=U\n", written at the first start: the
 *                    directory belongs to node N for good, and U tells the
 *                    cluster whether this is the disk node N voted with (a
 *                    node back with a new UUID lost its disk); then
 *                    "cluster_id=C\n" is added once the node learns the
 *                    cluster's id: the directory belongs to that cluster;
 *                    then "controller_group=G\n" once the controller moved
 *                    off group 0 (a voter came back with a new disk), so
 *                    that a restart runs the controller's group G
 *   <dir>/peers      "node_id=N uuid=U\n" per peer: the UUID each peer had
 *                    when this node first heard from it, appended and
 *                    synced once learned, and enforced by the peer
 *                    transport from then on, across restarts: a peer
 *                    back with another UUID lost its disk and must not
 *                    count as the replica it was (it would vote and
 *                    acknowledge with nothing of what it had); a later
 *                    line replaces an earlier one once the cluster took
 *                    the new disk in
 *   <dir>/raft/      the Raft groups (raft/rreg.h)
 *
 * Threads: start-up and shutdown, on the main thread. */
#ifndef SL_BROKER_DATADIR_H
#define SL_BROKER_DATADIR_H

#include <stdbool.h>
#include <stdint.h>

#define SL_DATADIR_MAX_PEERS 256

struct sl_datadir_peer {
	uint64_t id;
	char uuid[37];
};

struct sl_datadir {
	int lock_fd;
	uint64_t node_id;
	char uuid[37];  /* canonical text form */
	char cluster_id[37]; /* "" until learned */
	uint32_t controller_group; /* when has_controller_group */
	bool has_controller_group;
	bool created;   /* node.id was written by this start */
	char path[4096]; /* node.id */
	char peers_path[4096];
	struct sl_datadir_peer peers[SL_DATADIR_MAX_PEERS]; /* pinned, as read and added */
	size_t npeers;
};

/* Creates dir (and its parents) if missing, takes the lock, then reads
 * node.id or, when absent, writes it durably with a new random UUID.
 * Returns SL_OK; SL_ELOCKED when another process holds the lock;
 * SL_EINVALID_ARGUMENT when the directory belongs to another node id;
 * SL_ESTORAGE or SL_ELOG_CORRUPT (a damaged node.id or peers, never
 * replaced: that would make a new node of an old disk, or forget which
 * disks the peers had). errmsg names the file. */
int sl_datadir_open(const char *dir, uint64_t node_id, struct sl_datadir *d, char *errmsg);

/* Pins peer id's UUID (appended to peers and synced); SL_OK when it is
 * pinned already with that UUID; SL_EEXISTS for another UUID, unless
 * replace (the cluster took the peer's new disk in);
 * SL_EINVALID_ARGUMENT for a UUID that does not parse; SL_EBUSY when the
 * table is full; SL_ESTORAGE. */
int sl_datadir_pin_peer(struct sl_datadir *d, uint64_t id, const char *uuid, bool replace,
			char *errmsg);

/* Records the controller's group (node.id rewritten and synced), before
 * this node starts it. SL_OK or SL_ESTORAGE. */
int sl_datadir_set_controller_group(struct sl_datadir *d, uint32_t group, char *errmsg);

/* Records the cluster this directory belongs to (node.id rewritten and
 * synced). Returns SL_OK, SL_EEXISTS when it belongs to another cluster
 * (errmsg names both), SL_EINVALID_ARGUMENT for an id that is no UUID,
 * or SL_ESTORAGE. */
int sl_datadir_set_cluster(struct sl_datadir *d, const char *cluster_id, char *errmsg);

/* Releases the lock. */
void sl_datadir_close(struct sl_datadir *d);

#endif
