/* broker/: the controller: the metadata state machine (meta.h) applied on
 * the controller's Raft group, and the duties of the node that leads it.
 *
 * Every entry of the group is a record batch of one record whose value is
 * a meta command (meta.proto); every voter applies them in order, so every
 * voter holds the metadata. Raft snapshots of the group carry the meta
 * snapshot.
 *
 * The group is 0 at first, over the configured voters. Membership is
 * fixed per group (guard (f) in raft/README.md), so when a voter comes
 * back with a new disk (a new UUID: it has forgotten its votes and its
 * log) the controller moves instead: the new disk first follows the
 * metadata as a non-voter (its peers' transports admit it as a guest,
 * without Raft, and the voters tell it that the metadata knows its id
 * with another disk) and registers; the leader then proposes a move to a
 * new group with the same voters, which counts the new disk, and seeds
 * that group with the state the old one ended with. Every voter records
 * the new group in its data directory before it starts it, and leaves
 * the old one; a voter that missed the move learns it from any voter's
 * metadata.
 *
 * The leader, once its election barrier committed, sets the cluster id
 * (a random UUID, once for the cluster's life) and registers itself. The
 * other voters register themselves through it: a node that does not find
 * itself (id, UUID, addresses, rack) in its applied metadata sends its
 * registration to the leader in an application frame of the peer
 * transport, every second until it does; the leader proposes it. Writes
 * are idempotent, so a lost or repeated frame does no harm.
 *
 * Nodes past the voters follow the metadata without running group 0
 * (membership is fixed per group, guard (f) in raft/README.md): every
 * heartbeat they send the hash of their copy to the leader, which
 * answers with its snapshot when the hash differs. They register and
 * report like the voters.
 *
 * Liveness: every node says hello to the leader every second; the leader
 * marks a node it has not heard from as not alive (SetAlive), and the
 * node registers again when it is back. Placement and Metadata's leaders
 * count only live nodes.
 *
 * Ready: the cluster id is set and this node is registered with its own
 * UUID in the metadata it applied, and it caught up with the metadata
 * log (a voter: it leads with its barrier committed, or the leader told
 * it its commit index and everything up to there is applied; a
 * non-voter: the leader answered within the last two election timeouts).
 *
 * Threads: the loop thread. */
#ifndef SL_BROKER_CONTROLLER_H
#define SL_BROKER_CONTROLLER_H

#include <raft.h>
#include <stdbool.h>
#include <uv.h>

#include "meta.h"
#include "pnet.h"
#include "rreg.h"

#define SL_CONTROLLER_GROUP 0 /* the controller's first group */
#define SL_CONTROLLER_NO_GROUP UINT32_MAX

struct sl_controller;

/* self: this node as it registers (alive is ignored). The timing is the
 * Raft groups': a non-voter asks for the metadata every heartbeat; the
 * leader marks a node not alive after max(3 election timeouts, 2 s)
 * without a word from it. */
int sl_controller_init(struct sl_controller **out, uv_loop_t *loop, const struct sl_meta_node *self,
		       unsigned heartbeat_ms, unsigned election_ms);

/* Consumer groups keep their offsets and metadata in this compacted topic
 * (DESIGN.md); the controller's leader creates it, with `partitions`
 * partitions, once the voters have registered. 0 (the default here): it
 * does not. */
#define SL_OFFSETS_TOPIC "__consumer_offsets"
#define SL_OFFSETS_SEGMENT_BYTES (1u << 20) /* small: compaction keeps it short */
void sl_controller_set_offsets_partitions(struct sl_controller *c, uint32_t partitions);

/* The registry's hooks (sl_rreg_config: apply, snapshot, restore, with the
 * controller as apply_arg); other groups are ignored. */
void sl_controller_apply(void *arg, uint32_t group, raft_index index, const struct raft_buffer *buf);
int sl_controller_snapshot(void *arg, uint32_t group, void **buf, size_t *len);
int sl_controller_restore(void *arg, uint32_t group, const void *buf, size_t len);

/* Starts the duties once the registry and the transport run, and on one
 * of the voters the controller's group: `group` as the data directory
 * recorded it (SL_CONTROLLER_GROUP at first). Returns SL_OK, or the
 * group's error with errmsg. With reg or net NULL (the API fuzzer), no
 * duty runs: the caller alone applies entries, of `group`. */
int sl_controller_attach(struct sl_controller *c, struct sl_rreg *reg, struct sl_pnet *net,
			 const uint64_t *voters, unsigned nvoters, uint32_t group, char *errmsg);
/* persist(arg, group) records the controller's new group durably before
 * this node starts it (SL_OK, or it is tried again later). */
void sl_controller_on_group(struct sl_controller *c, int (*persist)(void *arg, uint32_t group),
			    void *arg);
/* Whether node id is one of the configured voters. */
bool sl_controller_is_voter(const struct sl_controller *c, uint64_t id);
/* The controller group this node runs (SL_CONTROLLER_NO_GROUP: none). */
uint32_t sl_controller_group(const struct sl_controller *c);
/* This node is registered with its own disk, taken in at or before
 * `since` (a meta seq): a replica placed at `since` is this disk's. */
bool sl_controller_registered(const struct sl_controller *c, uint64_t since);

/* The controller's leader as this node knows it (a non-voter: as the
 * leader's last answer said, if recent); 0: none known. */
uint64_t sl_controller_leader(const struct sl_controller *c);

/* What became of a proposal: status SL_OK with the command's result (res
 * says whether the state machine took or refused it), or
 * SL_EREQUEST_TIMED_OUT when leadership was lost or the node is closing
 * before it applied (it may still apply later: commands are written to be
 * safe to repeat). */
typedef void (*sl_controller_done_fn)(void *arg, int status, const struct sl_meta_result *res);

/* Proposes a meta command (meta.h's sl_meta_cmd_*). Returns SL_OK (cb, if
 * not NULL, fires once, later), SL_ENOT_CONTROLLER when this node does not
 * lead the controller (or its election barrier has not committed yet), or
 * SL_ENOMEM. */
int sl_controller_propose(struct sl_controller *c, const uint8_t *cmd, size_t len,
			  sl_controller_done_fn cb, void *arg);

/* Sends a command to the controller's leader over the peer transport, or
 * proposes it when this node leads: fire and forget (the caller repeats
 * what it does not see applied; commands are safe to repeat). Returns
 * SL_OK, SL_ENOT_CONTROLLER (no leader known), or the transport's or
 * sl_controller_propose's error. */
int sl_controller_submit(struct sl_controller *c, const uint8_t *cmd, size_t len);

/* fn(arg) after every change of the applied metadata (an entry applied,
 * a snapshot restored), from the loop thread; NULL clears it. */
void sl_controller_on_change(struct sl_controller *c, void (*fn)(void *arg), void *arg);

/* The metadata as applied here. */
const struct sl_meta *sl_controller_meta(const struct sl_controller *c);
/* True once ready (see above); else *why says what is missing. */
bool sl_controller_ready(const struct sl_controller *c, const char **why);

/* Stops the duties and forgets the registry and the transport, which may
 * then close (the metadata stays readable). */
void sl_controller_detach(struct sl_controller *c);

/* Frees c once its timer is closed (then cb(arg)); detached first. */
void sl_controller_close(struct sl_controller *c, void (*cb)(void *arg), void *arg);

#endif
