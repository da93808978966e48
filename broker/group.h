/* broker/: one consumer group's membership and assignment, as its
 * coordinator keeps it in memory (server-side assignment in the manner
 * of Kafka's KIP-848; DESIGN.md, group coordinator).
 *
 * Members talk to the group only through heartbeats. A heartbeat joins
 * (no member id: the group gives one), states the member's subscription
 * when it changed, and reports the partitions the member still owns; the
 * answer is the member's id and epoch and the partitions it may own now.
 *
 *   - The group epoch goes up on every change of membership or of a
 *     subscription; then the target assignment is computed again
 *     (assign.h: sticky by default).
 *   - A member's assignment moves toward its target without a partition
 *     ever having two owners: a partition leaving a member is first
 *     withheld from it (the answer leaves it out); only once the member
 *     reports it no longer owns it (or is gone) is it handed to its new
 *     owner. Partitions that stay put keep flowing meanwhile.
 *   - A member whose assignment reached its target has the group's epoch
 *     as its member epoch; commits carry it (sl_group_check_commit).
 *   - A member silent past the session timeout is removed and its
 *     partitions are free at once. A static member (instance id) that
 *     leaves keeps its place, and its partitions, for the session timeout:
 *     coming back with the same instance id gets them again.
 *
 * Pure: no I/O; the caller gives the time and the topics' partition
 * counts. Loop thread. */
#ifndef SL_BROKER_GROUP_H
#define SL_BROKER_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "assign.h"

#define SL_GROUP_ID_MAX 255
#define SL_GROUP_MEMBER_ID_MAX 64
#define SL_GROUP_MAX_TOPICS 256
#define SL_GROUP_TOPIC_MAX 249 /* a topic name's bytes (meta.h) */

/* A partition of a named topic. */
struct sl_group_tp {
	const char *topic;
	uint32_t partition;
};

/* The topics' partition counts: 0 for a topic that does not exist. */
typedef uint32_t (*sl_group_partitions_fn)(void *arg, const char *topic);

struct sl_group_config {
	int assignor;                 /* SL_ASSIGN_*; default UNIFORM */
	uint32_t session_timeout_ms;  /* default 45000 */
	uint32_t heartbeat_ms;        /* what members are told; default 3000 */
	sl_group_partitions_fn partitions;
	void *arg;
};

/* A heartbeat, as the member sent it. */
struct sl_group_hb {
	const char *member_id;   /* "" or NULL: joining */
	const char *instance_id; /* NULL: not a static member */
	int32_t member_epoch;    /* 0: joining; -1: leaving; -2: a static member leaving
				    for now; else the epoch it last got */
	const char *const *topics; /* its subscription, when given (has_topics) */
	size_t ntopics;
	bool has_topics;
	const struct sl_group_tp *owned; /* what it owns now, when given (has_owned) */
	size_t nowned;
	bool has_owned;
	bool replay; /* a held heartbeat looked at again: not a sign of life */
};

/* The answer. The assignment array and the member id are the group's,
 * valid until the next call on it. */
struct sl_group_answer {
	int err;                     /* SL_OK, or why the heartbeat was refused */
	char errmsg[256];
	const char *member_id;
	int32_t member_epoch;
	uint32_t heartbeat_ms;
	const struct sl_group_tp *assignment; /* the partitions it may own now */
	size_t nassignment;
};

/* The partition of __consumer_offsets (n partitions) that holds group id:
 * Kafka's abs(id.hashCode()) % n, Java's String.hashCode taken over the
 * id's UTF-16 code units (bytes that are not UTF-8 count as one unit
 * each), so that a group lands where Kafka would put it. */
uint32_t sl_group_partition(const char *id, uint32_t n);

struct sl_group;

struct sl_group *sl_group_new(const char *id, const struct sl_group_config *cfg);
void sl_group_free(struct sl_group *g);

/* One heartbeat at now_ms. Errors: UNKNOWN_MEMBER_ID (an id the group does
 * not have: join again), FENCED_MEMBER_EPOCH (an epoch the member was not
 * given: join again), INVALID_REQUEST (a subscription without topics or
 * with too many, a joining heartbeat without one, an id too long),
 * UNRELEASED_INSTANCE_ID (an instance id a live member holds), NOMEM. */
void sl_group_heartbeat(struct sl_group *g, const struct sl_group_hb *hb, int64_t now_ms,
			struct sl_group_answer *out);

/* Removes the members silent past the session timeout (static ones that
 * left, past it too); returns how many. Call it every so often. */
size_t sl_group_expire(struct sl_group *g, int64_t now_ms);

/* Whether a member may commit an offset for tp: SL_OK, UNKNOWN_MEMBER_ID,
 * STALE_MEMBER_EPOCH (not the member's current epoch), or
 * NOT_ASSIGNED (it does not own tp now). */
int sl_group_check_commit(const struct sl_group *g, const char *member_id, int32_t member_epoch,
			  const char *topic, uint32_t partition);

int32_t sl_group_epoch(const struct sl_group *g);
size_t sl_group_members(const struct sl_group *g);
/* Goes up whenever something changes that could change a member's answer
 * or the group's record: an epoch, a target, a partition released, a
 * member gone, away or back. */
uint64_t sl_group_version(const struct sl_group *g);

/* The assignor of the next target (a group's first member chooses). */
void sl_group_set_assignor(struct sl_group *g, int assignor);
int sl_group_assignor(const struct sl_group *g);

/* "empty" (no member, static ones away aside), "assigning" (some member
 * has not reached its target) or "stable". */
const char *sl_group_state(const struct sl_group *g);
size_t sl_group_live_members(const struct sl_group *g);

struct sl_group_member_info {
	const char *id, *instance_id; /* instance_id NULL: not static */
	int32_t epoch;
	bool away;
	const char *const *topics;
	size_t ntopics;
	const struct sl_group_tp *assignment;
	size_t nassignment;
};

/* Member i (< sl_group_members), valid until the next call on g. */
void sl_group_member_info(const struct sl_group *g, size_t i, struct sl_group_member_info *out);

/* The group's record (epoch, assignor, members with their subscriptions
 * and what they own), as __consumer_offsets keeps it (offsets.h), into
 * malloc'd *out: SL_OK or SL_ENOMEM. */
int sl_group_export(const struct sl_group *g, uint8_t **out, size_t *len);

/* A group from its record: members as they were (seen at now_ms, so each
 * has a session timeout to come back), owning what they owned, and a
 * target sticky to that. SL_OK with *out; SL_EINVALID_RECORD with why
 * (256 bytes) for bytes that are not a record; SL_ENOMEM. */
int sl_group_import(const char *id, const struct sl_group_config *cfg, const uint8_t *buf,
		    size_t len, int64_t now_ms, struct sl_group **out, char *why);

/* Member i's id and what it may own now (for DescribeGroup, tests). */
const char *sl_group_member_id(const struct sl_group *g, size_t i);
size_t sl_group_member_assignment(const struct sl_group *g, size_t i,
				  const struct sl_group_tp **tps);

#endif
