/* broker/: the group coordinator (DESIGN.md). The coordinator of group G
 * is the leader of partition sl_group_partition(G, N) of
 * __consumer_offsets; this node coordinates the groups of every such
 * partition it leads.
 *
 *   - Taking a partition over (its leadership reached here, its election
 *     barrier committed): the partition is read from its log start to its
 *     high watermark, in steps that leave the loop free, into the offsets
 *     view (offsets.h) and the groups' last records (group.h import);
 *     until that is done every group API of its groups answers
 *     COORDINATOR_LOADING. Losing the leadership drops it all (the next
 *     leader reads it back); requests of its groups then get
 *     NOT_COORDINATOR.
 *   - Heartbeats run group.c's state machine. A heartbeat whose answer is
 *     what the member already has is held (up to its max_wait_ms, capped
 *     at the heartbeat interval) and answered as soon as the group changes
 *     what it should own: a partition released by one member reaches the
 *     next within a round trip. Members silent past the session timeout
 *     are removed (checked every 50 ms).
 *   - Writes: offset commits, a group's record whenever it changed, and
 *     the tombstones of a deleted group, all of one partition in one loop
 *     turn, go as one record batch in one Raft entry. A commit is answered
 *     once that entry is committed; the view takes the offsets then. A
 *     group's record is not waited for: after a failover, a member whose
 *     last change was not written yet is fenced and joins again.
 *   - OffsetCommit from a member is checked against the group
 *     (sl_group_check_commit); without a member id (an administrator's
 *     reset) only while the group has no live member.
 *
 * Threads: the loop thread. */
#ifndef SL_BROKER_COORD_H
#define SL_BROKER_COORD_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "api.h"

struct sl_coord_config {
	uint32_t session_timeout_ms; /* 0: 45000 */
	uint32_t heartbeat_ms;       /* 0: 3000 */
};

struct sl_coord;

/* node's ctl and parts may change (NULL once stopping). SL_OK or
 * SL_ENOMEM. */
int sl_coord_init(struct sl_coord **out, uv_loop_t *loop, const struct sl_api_node *node,
		  const struct sl_coord_config *cfg);

/* The group APIs (api.h handlers). */
int sl_coord_heartbeat(const struct sl_api_node *node, const Sluice__Envelope *req,
		       sl_api_reply_fn reply, void *arg);
int sl_coord_offset_commit(const struct sl_api_node *node, const Sluice__Envelope *req,
			   sl_api_reply_fn reply, void *arg);
int sl_coord_offset_fetch(const struct sl_api_node *node, const Sluice__Envelope *req,
			  sl_api_reply_fn reply, void *arg);
int sl_coord_list_groups(const struct sl_api_node *node, const Sluice__Envelope *req,
			 sl_api_reply_fn reply, void *arg);
int sl_coord_describe_group(const struct sl_api_node *node, const Sluice__Envelope *req,
			    sl_api_reply_fn reply, void *arg);
int sl_coord_delete_group(const struct sl_api_node *node, const Sluice__Envelope *req,
			  sl_api_reply_fn reply, void *arg);

/* Prometheus text: per group its members and epoch; per group and
 * partition its committed offset and, where a replica of the partition
 * runs on this node, its lag (that replica's high watermark minus the
 * committed offset). */
void sl_coord_metrics(struct sl_coord *co, FILE *out);

/* Answers every held heartbeat, drops every partition's state and frees
 * co once its timer is closed. Writes in flight are answered when Raft
 * calls them back. */
void sl_coord_close(struct sl_coord *co);

#endif
