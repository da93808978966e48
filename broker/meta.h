/* broker/: the controller's state machine, over the metadata log of Raft
 * group 0.
 *
 * The state: the cluster id, the registered nodes (id, UUID, addresses,
 * rack, alive), the topics (id, name, replication factor, config) and
 * every partition's Raft group, replicas, reported leader, term and
 * in-sync replicas, and the id allocators (topics, groups, producer ids).
 *
 * Every change is a command (meta.proto) appended to the log and applied
 * here on every node in log order. Whatever a command leaves open is
 * decided when it is applied, from the state then, the same way on every
 * node: a topic's id, its groups' ids and its replicas' placement. So two
 * creations proposed at once never collide, and a command the state no
 * longer allows (a name taken meanwhile) is refused at apply time with a
 * precise error, changing nothing.
 *
 * Placement: replicas go to live nodes, never two of one partition on one
 * node; each replica to the candidate with the fewest replicas (racks not
 * yet used by the partition first, when racks are set), the first replica
 * (the preferred leader) to the candidate leading the fewest; ties by
 * node id, rotated by the partition number.
 *
 * Threads: one owner (the loop thread); nothing here locks. */
#ifndef SL_BROKER_META_H
#define SL_BROKER_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#define SL_META_MAX_RF 7
#define SL_META_MAX_PARTITIONS 100000 /* per topic */
#define SL_META_TOPIC_NAME_MAX 249
#define SL_META_RACK_MAX 63

enum { SL_CLEANUP_POLICY_DELETE = 0, SL_CLEANUP_POLICY_COMPACT = 1 };

struct sl_meta_topic_config {
	uint64_t retention_bytes;   /* 0: the broker's default; UINT64_MAX: no limit */
	uint64_t retention_ms;      /* 0: the broker's default; UINT64_MAX: no limit */
	uint64_t segment_bytes;     /* 0: the broker's default; else 4 KiB..1 GiB */
	uint32_t cleanup_policy;    /* SL_CLEANUP_POLICY_* */
	uint32_t max_message_bytes; /* 0: the broker's default; else 1..1 GiB */
};

struct sl_meta_node {
	uint64_t id;
	char uuid[37];
	char host[256];
	unsigned client_port, peer_port;
	char rack[SL_META_RACK_MAX + 1];
	bool alive;
	/* seq of the registration that replaced another UUID of this id (a
	 * new disk); 0: none. Replicas placed before it were the old disk's. */
	uint64_t replaced_at;
};

struct sl_meta_partition {
	uint32_t group;
	unsigned nreplicas;
	uint64_t replicas[SL_META_MAX_RF]; /* [0]: the preferred leader */
	uint64_t leader;                   /* 0: none known */
	uint64_t term;
	unsigned nisr;
	uint64_t isr[SL_META_MAX_RF];
	uint64_t since;                    /* seq of the command that placed the replicas */
};

struct sl_meta_topic {
	uint64_t id;
	char name[SL_META_TOPIC_NAME_MAX + 1];
	unsigned rf;
	struct sl_meta_topic_config config;
	uint32_t npartitions;
	struct sl_meta_partition *parts;
};

struct sl_meta_gslot;

struct sl_meta {
	char cluster_id[65];
	struct sl_meta_node *nodes; /* by id, ascending */
	size_t nnodes, cap_nodes;
	struct sl_meta_topic **topics; /* by name, ascending */
	size_t ntopics, cap_topics;
	uint64_t next_topic_id;
	uint32_t next_group;
	uint64_t next_producer_id;
	uint64_t seq;             /* commands applied (refusals change nothing) */
	/* The controller's Raft group: 0 at first; a move (a voter came back
	 * with a new disk) allocates a new one, whose first entry must be
	 * the seed, the state the old group ended with; until it is
	 * applied, every other command is refused. */
	uint32_t ctl_group;
	uint64_t ctl_since;       /* seq of the move (0: none) */
	bool ctl_awaiting_seed;
	struct sl_meta_gslot *gmap; /* group -> (topic, partition) */
	size_t gcap, gn;
};

/* What applying one command meant, for whoever proposed it. */
struct sl_meta_result {
	int err;                     /* SL_OK, or why the command was refused */
	char errmsg[SL_ERRMSG_SIZE];
	uint64_t topic_id;           /* CreateTopic */
	uint64_t first_producer_id;  /* AllocProducerIds */
};

struct sl_meta_leader_report {
	uint32_t group;
	uint64_t leader, term;
	unsigned nisr;
	uint64_t isr[SL_META_MAX_RF];
};

void sl_meta_init(struct sl_meta *m);
void sl_meta_free(struct sl_meta *m);

/* Commands, encoded for the log into a malloc'd *buf. Return SL_OK or
 * SL_ENOMEM (SL_EINVALID_ARGUMENT for text too long for its field). */
int sl_meta_cmd_init_cluster(const char *cluster_id, uint8_t **buf, size_t *len);
int sl_meta_cmd_register_node(const struct sl_meta_node *node, uint8_t **buf, size_t *len);
int sl_meta_cmd_set_alive(uint64_t id, bool alive, uint8_t **buf, size_t *len);
int sl_meta_cmd_create_topic(const char *name, uint32_t partitions, unsigned rf,
			     const struct sl_meta_topic_config *config, uint8_t **buf, size_t *len);
int sl_meta_cmd_delete_topic(const char *name, uint8_t **buf, size_t *len);
int sl_meta_cmd_report_leaders(const struct sl_meta_leader_report *reports, size_t n,
			       uint8_t **buf, size_t *len);
int sl_meta_cmd_alloc_producer_ids(uint64_t count, uint8_t **buf, size_t *len);
int sl_meta_cmd_move_controller(uint32_t from_group, uint8_t **buf, size_t *len);
/* snapshot: sl_meta_snapshot of the state the old group ended with. */
int sl_meta_cmd_seed_controller(const uint8_t *snapshot, size_t snap_len, uint8_t **buf,
				size_t *len);

/* Whether cmd is node id's registration of itself. */
bool sl_meta_cmd_registers(const uint8_t *cmd, size_t len, uint64_t id);

/* Whether node id's current disk must not vote or replicate in what was
 * formed before it registered: it replaced another disk (replaced_at)
 * after `since`. */
bool sl_meta_replaced_after(const struct sl_meta *m, uint64_t id, uint64_t since);
/* Whether the controller's group must move: one of its voters came back
 * with a new disk since the group was formed. */
bool sl_meta_controller_stale(const struct sl_meta *m, const uint64_t *voters, size_t n);

/* Applies one log entry. Returns SL_OK once it is applied or refused (res
 * says which; a refusal changes nothing), SL_EINVALID_RECORD when the
 * bytes are no command (a damaged log: the caller must stop applying), or
 * SL_ENOMEM (nothing changed: apply it again). */
int sl_meta_apply(struct sl_meta *m, const void *buf, size_t len, struct sl_meta_result *res);

/* The whole state, encoded (a malloc'd *buf). SL_OK or SL_ENOMEM. */
int sl_meta_snapshot(const struct sl_meta *m, uint8_t **buf, size_t *len);
/* Replaces m's state with a snapshot's. SL_OK, SL_ENOMEM, or
 * SL_EINVALID_RECORD with a reason in errmsg (m unchanged on error). */
int sl_meta_restore(struct sl_meta *m, const void *buf, size_t len, char *errmsg);

const struct sl_meta_topic *sl_meta_topic(const struct sl_meta *m, const char *name);
const struct sl_meta_node *sl_meta_node(const struct sl_meta *m, uint64_t id);
/* The partition of a Raft group; false for a group no topic has. */
bool sl_meta_group(const struct sl_meta *m, uint32_t group, const struct sl_meta_topic **topic,
		   uint32_t *partition);

/* Kafka's rule: 1..249 of [a-zA-Z0-9._-], not "." or "..". Returns SL_OK
 * or SL_EINVALID_TOPIC with the reason in errmsg. */
int sl_meta_check_topic_name(const char *name, char *errmsg);

#endif
