/* The peer protocol's frames: every Raft group's messages between two
 * nodes travel on one connection, each frame tagged with its group id.
 *
 *   frame     = length (u32 big-endian: bytes after this field)
 *               kind (u8) body
 *   kind 1    = a Raft message: group (uvarint), type (u8), fields (uvarints
 *               but for flags, a u8; per type, below), then for
 *               AppendEntries each entry's term (uvarint), type (u8) and
 *               length (uvarint), then the entries' bytes back to back; for
 *               InstallSnapshot the configuration (uvarint count, then per
 *               server uvarint id, uvarint role, uvarint address length,
 *               address; at most SL_PFRAME_MAX_SERVERS) and the data to the
 *               end of the frame
 *   kind 2    = the handshake (hello): magic "SLPR", protocol version (u16),
 *               cluster id (16 bytes), node id (uvarint), node UUID (16
 *               bytes). The connector sends one first; the acceptor
 *               answers with its own.
 *   kind 3    = bulk request: group, offset, end, max bytes (uvarints):
 *               whole batches of the group's log whose base offset is >=
 *               offset (or the log's start, if higher) and whose last
 *               offset is < end, at most max bytes (at least one batch)
 *   kind 4    = bulk data: whole batches, back to back, to the end of the
 *               frame
 *   kind 5    = bulk end: status (uvarint, an SL_E* code, 0 for success),
 *               next offset (uvarint: where a following request resumes)
 *
 *   AppendEntries           term, prev index, prev term, commit, n
 *   AppendEntriesResult     term, rejected, last index
 *   RequestVote             term, candidate, last index, last term, flags
 *                           (bit 0 disrupt leader, bit 1 pre-vote)
 *   RequestVoteResult       term, flags (bit 0 granted, bits 1-2 pre-vote
 *                           tribool)
 *   InstallSnapshot         term, last index, last term, conf index
 *   TimeoutNow              term, last index, last term
 *
 * A heartbeat (AppendEntries without entries) with small numbers takes
 * about a dozen bytes, its result fewer. Varints are LEB128, at most 10
 * bytes. Everything here is pure: no I/O, no state. */
#ifndef SL_RAFT_PFRAME_H
#define SL_RAFT_PFRAME_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

#define SL_PFRAME_HEADER 4 /* the length field */
#define SL_PFRAME_MESSAGE 1
#define SL_PFRAME_HELLO 2
#define SL_PFRAME_BULK_REQ 3
#define SL_PFRAME_BULK_DATA 4
#define SL_PFRAME_BULK_END 5
#define SL_PFRAME_APP 6    /* an opaque payload for the owner (pnet.h) */
#define SL_PFRAME_VERSION 1
#define SL_PFRAME_MAX_SERVERS 1024

struct sl_phello {
	uint16_t version;
	uint8_t cluster_id[16];
	uint64_t node_id;
	uint8_t node_uuid[16];
};

/* A growable output buffer (malloc'd; the caller frees .p). */
struct sl_pbuf {
	uint8_t *p;
	size_t len, cap;
};

/* Appends one whole frame (length included) to out. The receiver learns
 * the sender from the handshake, not the frame. Returns SL_OK, SL_ENOMEM,
 * or SL_EINVALID_ARGUMENT for an unknown message type (out then unchanged
 * in length). */
int sl_pframe_message(struct sl_pbuf *out, uint32_t group, const struct raft_message *msg);
int sl_pframe_hello(struct sl_pbuf *out, const struct sl_phello *h);
/* An application frame: kind, then the payload to the frame's end. */
int sl_pframe_app(struct sl_pbuf *out, const void *payload, size_t len);

/* Looks at the start of a receive buffer: SL_OK with *frame_len (length
 * field included) when a whole frame is there; SL_ENOT_FOUND when more
 * bytes are needed (with *frame_len set once the length field is there); SL_EMESSAGE_TOO_LARGE when the whole frame, length
 * field included, would exceed max_frame (the connection must close). */
int sl_pframe_peek(const uint8_t *buf, size_t len, size_t max_frame, size_t *frame_len);

/* The kind of a whole frame (SL_PFRAME_MESSAGE or SL_PFRAME_HELLO), or 0 if
 * the frame is too short to have one. */
int sl_pframe_kind(const uint8_t *frame, size_t len);

/* Decodes a whole message frame into msg, in the ownership layout
 * sl_rio_deliver takes (raft/rio.h: entries in one raft_malloc'd batch,
 * InstallSnapshot configuration and data owned). server_id and
 * server_address are set to from / from_address. Returns SL_OK,
 * SL_EINVALID_REQUEST for any malformed frame, or SL_ENOMEM (on failure
 * nothing is owned and n_entries is 0). */
int sl_pframe_decode_message(const uint8_t *frame, size_t len, raft_id from,
			     const char *from_address, uint32_t *group, struct raft_message *msg);
int sl_pframe_decode_hello(const uint8_t *frame, size_t len, struct sl_phello *h);
/* The payload of a whole application frame (pointing into it). Returns
 * SL_OK or SL_EINVALID_REQUEST. */
int sl_pframe_decode_app(const uint8_t *frame, size_t len, const uint8_t **payload, size_t *plen);

struct sl_pbulk_req {
	uint32_t group;
	int64_t offset, end;
	uint64_t max_bytes;
};

/* Bulk copy frames. Encoders return SL_OK, SL_ENOMEM or
 * SL_EINVALID_ARGUMENT (negative or inverted offsets); decoders SL_OK or
 * SL_EINVALID_REQUEST. A data frame is a 5-byte header (written by
 * sl_pframe_bulk_data_header) followed by data_len bytes sent as they are. */
int sl_pframe_bulk_req(struct sl_pbuf *out, const struct sl_pbulk_req *q);
int sl_pframe_decode_bulk_req(const uint8_t *frame, size_t len, struct sl_pbulk_req *q);
void sl_pframe_bulk_data_header(uint8_t hdr[SL_PFRAME_HEADER + 1], uint32_t data_len);
int sl_pframe_bulk_end(struct sl_pbuf *out, int status, int64_t next);
int sl_pframe_decode_bulk_end(const uint8_t *frame, size_t len, int *status, int64_t *next);

#endif
