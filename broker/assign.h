/* broker/: the group coordinator's assignors: which member of a consumer
 * group reads which partition.
 *
 * Input: the topics the group reads (each with its partition count), the
 * members (each with the topics it subscribes to, in the input's topic
 * numbering, and the partitions it owns now), and the assignor.
 *
 *   UNIFORM (the default; sticky): every partition of a subscribed topic
 *     goes to one member subscribed to it. Current owners keep what they
 *     own while the result stays balanced; the rest goes to the least
 *     loaded eligible member; then, while a member holds two or more
 *     partitions more than another member that could take one of them,
 *     one moves. With equal subscriptions the counts differ by at most
 *     one, and a member joining or leaving moves only what balance needs.
 *   RANGE: per topic, its subscribed members sorted by id get contiguous
 *     ranges of its partitions, the first ones one more when it does not
 *     divide (Kafka's range assignor). Not sticky.
 *
 * A partition never has two owners in the result; a partition whose topic
 * no member subscribes to has none. Moving a partition safely (revoked
 * from its old owner before the new one gets it) is the coordinator's
 * job: this is only the target.
 *
 * Pure: no I/O, no globals; deterministic for a given input. */
#ifndef SL_BROKER_ASSIGN_H
#define SL_BROKER_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

enum { SL_ASSIGN_UNIFORM, SL_ASSIGN_RANGE };

struct sl_assign_tp {
	uint32_t topic;     /* index into the topics given */
	uint32_t partition;
};

struct sl_assign_member {
	const char *id;               /* unique; ties are broken by it */
	const uint32_t *topics;       /* subscribed topic indexes */
	size_t ntopics;
	const struct sl_assign_tp *owned; /* what it owns now (may be stale) */
	size_t nowned;
};

/* The result: owner[k] is the member index owning flat partition k (the
 * partitions of topic 0, then topic 1, ...), or -1. */
struct sl_assign_result {
	int32_t *owner;
	size_t n;
};

/* Computes the target. Returns SL_OK, SL_ENOMEM, or SL_EINVALID_ARGUMENT
 * (an unknown assignor, a topic index out of range). Free with
 * sl_assign_result_free. */
int sl_assign(int assignor, const uint32_t *partitions, size_t ntopics,
	      const struct sl_assign_member *members, size_t nmembers,
	      struct sl_assign_result *out);
void sl_assign_result_free(struct sl_assign_result *r);

/* Where flat partition k of the result starts for topic t. */
size_t sl_assign_flat(const uint32_t *partitions, uint32_t topic, uint32_t partition);

#endif
