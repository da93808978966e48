/* The client protocol's frames (sluice.proto carries the messages):
 *
 *   u32 length        bytes after this field (big-endian)
 *   u32 env_length    bytes of the envelope (big-endian)
 *   envelope          a protobuf Sluice__Envelope, env_length bytes
 *   data              raw segments (record batches), one after another;
 *                     their lengths are the envelope's data_lengths, and
 *                     they fill the rest of the frame exactly
 *
 * Record data never goes through protobuf-c: a decoded frame's segments
 * point into the receive buffer, and an encoded frame's segments are the
 * caller's iovecs, written after the header by writev.
 *
 * Pure: no I/O, no global state, thread-safe. */
#ifndef SL_FRAME_H
#define SL_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "errors.h"
#include "sluice.pb-c.h"

#define SL_FRAME_PREFIX 8          /* length + env_length */
#define SL_FRAME_MAX_SEGMENTS 4096 /* data segments in one frame */

/* Looks at the start of a receive buffer: SL_OK with *frame_len (prefix
 * included) when a whole frame is there; SL_ENOT_FOUND when more bytes
 * are needed (*frame_len set once the length field is there);
 * SL_EMESSAGE_TOO_LARGE when the frame, prefix included, would exceed
 * max_frame (the connection must close: the stream cannot be resynced
 * without reading it all). */
int sl_frame_peek(const uint8_t *buf, size_t len, size_t max_frame, size_t *frame_len);

/* A decoded frame. seg[i] points into the frame. */
struct sl_frame {
	Sluice__Envelope *env;
	size_t nseg;
	struct iovec seg[SL_FRAME_MAX_SEGMENTS];
};

/* Decodes a whole frame (as sl_frame_peek measured it). The envelope is
 * unpacked with alloc (NULL: malloc); free it with
 * sluice__envelope__free_unpacked(f->env, alloc). Returns SL_OK, or
 * SL_EINVALID_REQUEST with the reason in errmsg (SL_ERRMSG_SIZE bytes):
 * a bad env_length, an envelope that does not decode (protobuf-c reports
 * running out of memory the same way, so that is one too), segment
 * lengths that do not fill the frame. On error f->env is NULL, but
 * *correlation_id holds the request's when the envelope decoded. */
int sl_frame_decode(const uint8_t *frame, size_t frame_len, ProtobufCAllocator *alloc,
		    struct sl_frame *f, uint32_t *correlation_id, char *errmsg);

/* Encodes env with data segments seg[0..nseg): env->data_lengths are set
 * from seg (env's own array is replaced while packing and restored). The
 * prefix and envelope go to a malloc'd *head (*head_len bytes); the frame
 * on the wire is head followed by the segments. Returns SL_OK, SL_ENOMEM,
 * or SL_EINVALID_ARGUMENT when the frame would not fit its 32-bit length
 * or there are too many segments. */
int sl_frame_encode(Sluice__Envelope *env, const struct iovec *seg, size_t nseg, uint8_t **head,
		    size_t *head_len);

#endif
