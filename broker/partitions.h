/* broker/: the partition manager. Runs the Raft groups of the partitions
 * this node hosts, as the controller's metadata (meta.h) says, and reports
 * the leadership of those it leads back to the controller.
 *
 *   - Reconcile, after every change of the applied metadata: a partition
 *     with this node among its replicas gets its group started (created
 *     with the replicas as voters, in ascending id order, the same on
 *     every replica); a running group that no partition of this node has
 *     any more is deleted with its directory. Group ids are never reused,
 *     so a group below the metadata's next_group that no partition has was
 *     deleted for good, whatever point of the log the node has applied:
 *     the first reconcile also removes such directories left by a node
 *     that was down when their topic was deleted. A group's directory
 *     and first entry are created on the thread pool (16 at a time, so
 *     the disk works in parallel and the loop never waits on a sync),
 *     then the group starts on the loop, 64 per turn. A partition's
 *     preferred leader campaigns first (rreg.h: sl_rreg_start_campaign).
 *   - Reports, every heartbeat: for each group this node leads (its
 *     election barrier committed), the term, the leader and the in-sync
 *     replicas, when they differ from what the metadata holds; at most one
 *     report per group per second while it is not applied yet.
 *   - The high watermark of a led group (ListOffsets): the log's next
 *     offset whenever every entry of the group is committed; otherwise the
 *     last such value (a lower bound, never ahead of what is committed).
 *
 * Threads: the loop thread. */
#ifndef SL_BROKER_PARTITIONS_H
#define SL_BROKER_PARTITIONS_H

#include <stdint.h>
#include <uv.h>

#include "controller.h"
#include "rreg.h"

struct sl_parts;

/* raft_dir: the registry's directory (for leftover group directories). */
int sl_parts_init(struct sl_parts **out, uv_loop_t *loop, uint64_t node_id, unsigned heartbeat_ms,
		  const char *raft_dir, struct sl_rreg *reg, struct sl_controller *ctl);

/* The applied metadata changed: reconcile on the next loop turn. */
void sl_parts_changed(struct sl_parts *p);

/* A group this node leads with its election barrier committed (only then
 * may it acknowledge or expose anything, guard (a)): SL_OK with its
 * libraft instance and backend, or SL_ENOT_LEADER. */
int sl_parts_led(struct sl_parts *p, uint32_t group, struct raft **r, struct raft_io **io);

/* A led group's log range: SL_OK with [*start, *end) (end: the high
 * watermark, one past the last committed offset), or SL_ENOT_LEADER as
 * sl_parts_led. */
int sl_parts_offsets(struct sl_parts *p, uint32_t group, int64_t *start, int64_t *end);

/* Any replica's view of a group's high watermark: one past the last
 * offset this node knows committed (a follower's lags the leader's a
 * little). SL_OK, or SL_ENOT_FOUND when the group does not run here. */
int sl_parts_committed_end(struct sl_parts *p, uint32_t group, int64_t *end);

/* The node clients should send partition mp's requests to (-1: none
 * known): the metadata's leader while it is alive, unless this node's
 * replica (p may be NULL: none) is in a newer term than the metadata
 * shows; then the leader this replica follows, -1 while an election is
 * on. So a new leader is known to every replica's node within a Raft
 * heartbeat of its election, before its report reaches the metadata. */
int64_t sl_parts_client_leader(struct sl_parts *p, const struct sl_meta *m,
			       const struct sl_meta_partition *mp);

/* A led group's first committed offset whose record's timestamp is >= ts
 * (the log's time index), or -1 in *offset when every committed record
 * is older. SL_OK, SL_ENOT_LEADER as sl_parts_led, or the log's error. */
int sl_parts_find_time(struct sl_parts *p, uint32_t group, int64_t ts, int64_t *offset);

/* Cleans every replica this node hosts every check_ms: each group's disk
 * worker applies its topic's segment.bytes, deletes whole sealed segments
 * past its retention.bytes / retention.ms (0 in the topic: these
 * defaults, or none for a compacted topic; -1: none) and, with
 * cleanup.policy=compact, compacts; never at or above min(high watermark,
 * the last Raft snapshot's offset) (rio.h sl_rio_clean). Until called:
 * not at all. */
void sl_parts_set_retention(struct sl_parts *p, unsigned check_ms, int64_t default_bytes,
			    int64_t default_ms);

/* Groups this node hosts (running or starting). */
size_t sl_parts_count(const struct sl_parts *p);

/* Stops reconciling and reporting (the groups stay with the registry,
 * which closes them); frees p once its timers are closed, then cb(arg). */
void sl_parts_close(struct sl_parts *p, void (*cb)(void *arg), void *arg);

#endif
