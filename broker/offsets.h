/* broker/: the records consumer groups keep in __consumer_offsets, and
 * the in-memory view a coordinator builds from them.
 *
 * An offset commit is one record of a compacted partition, keyed by
 * (group, topic, partition), so compaction keeps the last commit of each:
 *
 *   key    u8 kind = 1 (an offset), u16 group length, group,
 *          u16 topic length, topic, u32 partition
 *   value  u8 version = 1, i64 offset, i32 leader epoch (the term of the
 *          data read; -1: unknown), i64 commit time (ms since the epoch),
 *          u16 metadata length, metadata
 *
 * all integers big-endian. A null value (a tombstone) removes the key: a
 * group deleted, or a partition's commit dropped.
 *
 * A group's own record (its epoch, members and what they own: group.h,
 * sl_group_export) is keyed by the group alone:
 *
 *   key    u8 kind = 2 (a group), u16 group length, group
 *
 * The view keeps offsets only; an offset key decoder finds NOT_FOUND in a
 * key of another kind, and the other way round.
 *
 * The view maps each key to its value, in the order records are applied
 * (the log's): the last one wins.
 *
 * Pure: no I/O; the loop thread. */
#ifndef SL_BROKER_OFFSETS_H
#define SL_BROKER_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#define SL_OFFSETS_KIND_OFFSET 1
#define SL_OFFSETS_KIND_GROUP 2
#define SL_OFFSETS_NAME_MAX 65535
#define SL_OFFSETS_METADATA_MAX 4096

struct sl_offsets_key {
	const char *group, *topic; /* not NUL-terminated once decoded: the lengths say */
	size_t group_len, topic_len;
	uint32_t partition;
};

struct sl_offsets_value {
	int64_t offset;
	int32_t leader_epoch;
	int64_t commit_ms;
	const char *metadata;
	size_t metadata_len;
};

/* Encodings into malloc'd *out. SL_OK, SL_ENOMEM, or SL_EINVALID_ARGUMENT
 * (a name or metadata too long, a negative offset). */
int sl_offsets_key_encode(const struct sl_offsets_key *k, uint8_t **out, size_t *len);
int sl_offsets_value_encode(const struct sl_offsets_value *v, uint8_t **out, size_t *len);

/* Decodings; the strings point into buf. SL_OK; SL_ENOT_FOUND for a key
 * of another kind; SL_EINVALID_RECORD (with why, SL_ERRMSG_SIZE) for
 * bytes that are not one: cut short, trailing bytes, an unknown version,
 * a negative offset. */
int sl_offsets_key_decode(const uint8_t *buf, size_t len, struct sl_offsets_key *k, char *why);
int sl_offsets_value_decode(const uint8_t *buf, size_t len, struct sl_offsets_value *v,
			    char *why);

/* A group record's key, and its decoding (the group points into buf):
 * SL_OK, SL_ENOT_FOUND for another kind, SL_EINVALID_RECORD with why. */
int sl_offsets_group_key_encode(const char *group, size_t group_len, uint8_t **out, size_t *len);
int sl_offsets_group_key_decode(const uint8_t *buf, size_t len, const char **group,
				size_t *group_len, char *why);

struct sl_offsets_view;

struct sl_offsets_view *sl_offsets_view_new(void);
void sl_offsets_view_free(struct sl_offsets_view *v);

/* One record of the partition, in log order (value NULL: a tombstone).
 * SL_OK (also for a kind the view does not keep), SL_ENOMEM, or
 * SL_EINVALID_RECORD (the record changes nothing). */
int sl_offsets_view_apply(struct sl_offsets_view *v, const uint8_t *key, size_t key_len,
			  const uint8_t *value, size_t value_len);

/* The group's last commit for (topic, partition): SL_OK with *out (its
 * metadata points into the view, valid until the next apply), or
 * SL_ENOT_FOUND. */
int sl_offsets_view_get(const struct sl_offsets_view *v, const char *group, const char *topic,
			uint32_t partition, struct sl_offsets_value *out);

/* Calls fn for each commit of group (NULL: of every group), in no
 * particular order; the key's strings and the value point into the view.
 * fn must not change the view. */
void sl_offsets_view_foreach(const struct sl_offsets_view *v, const char *group,
			     void (*fn)(void *arg, const struct sl_offsets_key *k,
					const struct sl_offsets_value *val),
			     void *arg);

/* Commits the view holds (all groups). */
size_t sl_offsets_view_count(const struct sl_offsets_view *v);

#endif
