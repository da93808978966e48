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
 *                    cluster's id: the directory belongs to that cluster
 *   <dir>/raft/      the Raft groups (raft/rreg.h)
 *
 * Threads: start-up and shutdown, on the main thread. */
#ifndef SL_BROKER_DATADIR_H
#define SL_BROKER_DATADIR_H

#include <stdbool.h>
#include <stdint.h>

struct sl_datadir {
	int lock_fd;
	uint64_t node_id;
	char uuid[37];  /* canonical text form */
	char cluster_id[37]; /* "" until learned */
	bool created;   /* node.id was written by this start */
	char path[4096]; /* node.id */
};

/* Creates dir (and its parents) if missing, takes the lock, then reads
 * node.id or, when absent, writes it durably with a new random UUID.
 * Returns SL_OK; SL_ELOCKED when another process holds the lock;
 * SL_EINVALID_ARGUMENT when the directory belongs to another node id;
 * SL_ESTORAGE or SL_ELOG_CORRUPT (a damaged node.id, never replaced:
 * that would make a new node of an old disk). errmsg names the file. */
int sl_datadir_open(const char *dir, uint64_t node_id, struct sl_datadir *d, char *errmsg);

/* Records the cluster this directory belongs to (node.id rewritten and
 * synced). Returns SL_OK, SL_EEXISTS when it belongs to another cluster
 * (errmsg names both), SL_EINVALID_ARGUMENT for an id that is no UUID,
 * or SL_ESTORAGE. */
int sl_datadir_set_cluster(struct sl_datadir *d, const char *cluster_id, char *errmsg);

/* Releases the lock. */
void sl_datadir_close(struct sl_datadir *d);

#endif
