/* Shared by the files of raft/ only. */
#ifndef SL_RAFT_INT_H
#define SL_RAFT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "rio.h"

/* entry.c: Raft entries as record batches. */

/* Builds the control batch that stores a CHANGE or BARRIER entry: one
 * record, key = {version 0, type} (int16 each, big-endian), value = the
 * entry's payload, timestamp 0, stamped with offset and term. The bytes
 * depend only on the arguments (a CHANGE's padding is zeroed: libraft
 * leaves it unwritten), so every replica stores the same ones.
 * *out is malloc'd. */
int sl_rentry_control(int64_t offset, raft_term term, unsigned short type, const void *payload,
		      size_t len, uint8_t **out, size_t *out_len);

/* The bytes an encoded raft configuration (libraft's format: version 1,
 * server count, then per server id, NUL-terminated address and role)
 * uses of len; the rest is padding. len when it does not parse. */
size_t sl_rconf_used(const uint8_t *p, size_t len);

/* Reads a stored batch back as an entry: its type, its term (the batch's
 * leader epoch) and where its payload lies in the batch (the value of a
 * Raft control record; the whole batch for a COMMAND). */
int sl_rentry_decode(const uint8_t *batch, size_t len, unsigned short *type, raft_term *term,
		     size_t *payload_off, size_t *payload_len);

/* The snapshot manifest the backend stores and hands to libraft: a header
 * of its own, then the state machine's bytes.
 *
 *   magic "SLSN" u32, version u32 (1), index u64, term u64, anchor i64
 *   (the offset right after the entry at index), configuration index u64,
 *   server count u32, then per server: id u64, role u32, address length
 *   u32, address; then the state machine's bytes to the end.
 *
 * Little-endian. Read by sl_rmanifest_decode; fsm->restore receives the
 * whole manifest and finds its own bytes with sl_rio_snapshot_payload(). */
struct sl_rmanifest {
	raft_index index;
	raft_term term;
	int64_t anchor;
	raft_index conf_index;
	struct raft_configuration conf; /* decoded: raft_configuration_close */
	const uint8_t *fsm;             /* into the decoded buffer */
	size_t fsm_len;
};

int sl_rmanifest_encode(const struct sl_rmanifest *m, const struct raft_buffer *fsm, unsigned n_fsm,
			uint8_t **out, size_t *out_len);
int sl_rmanifest_decode(const uint8_t *buf, size_t len, struct sl_rmanifest *m);

#endif
