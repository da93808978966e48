/* The client protocol's frames. See frame.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int sl_frame_peek(const uint8_t *buf, size_t len, size_t max_frame, size_t *frame_len)
{
	*frame_len = 0;
	if (len < 4)
		return SL_ENOT_FOUND;
	uint64_t total = 4 + (uint64_t)get_be32(buf);
	*frame_len = (size_t)total;
	if (total > max_frame)
		return SL_EMESSAGE_TOO_LARGE;
	return len >= total ? SL_OK : SL_ENOT_FOUND;
}

int sl_frame_decode(const uint8_t *frame, size_t frame_len, ProtobufCAllocator *alloc,
		    struct sl_frame *f, uint32_t *correlation_id, char *errmsg)
{
	f->env = NULL;
	f->nseg = 0;
	*correlation_id = 0;
	if (frame_len < SL_FRAME_PREFIX || get_be32(frame) != frame_len - 4) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "frame of %zu bytes is shorter than its prefix "
			 "or its length field", frame_len);
		return SL_EINVALID_REQUEST;
	}
	size_t env_len = get_be32(frame + 4);
	if (env_len > frame_len - SL_FRAME_PREFIX) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "envelope length %zu exceeds the frame's %zu bytes",
			 env_len, frame_len - SL_FRAME_PREFIX);
		return SL_EINVALID_REQUEST;
	}
	Sluice__Envelope *env =
		sluice__envelope__unpack(alloc, env_len, frame + SL_FRAME_PREFIX);
	if (env == NULL) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "envelope of %zu bytes does not decode", env_len);
		return SL_EINVALID_REQUEST;
	}
	*correlation_id = env->correlation_id;
	size_t off = SL_FRAME_PREFIX + env_len, left = frame_len - off;
	if (env->n_data_lengths > SL_FRAME_MAX_SEGMENTS) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%zu data segments, more than %d",
			 env->n_data_lengths, SL_FRAME_MAX_SEGMENTS);
		sluice__envelope__free_unpacked(env, alloc);
		return SL_EINVALID_REQUEST;
	}
	for (size_t i = 0; i < env->n_data_lengths; i++) {
		size_t seg = env->data_lengths[i];
		if (seg > left) {
			snprintf(errmsg, SL_ERRMSG_SIZE,
				 "data segment %zu of %zu bytes runs past the frame's end", i, seg);
			sluice__envelope__free_unpacked(env, alloc);
			return SL_EINVALID_REQUEST;
		}
		f->seg[i] = (struct iovec){ .iov_base = (void *)(frame + off), .iov_len = seg };
		off += seg;
		left -= seg;
	}
	if (left != 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%zu bytes follow the frame's last data segment", left);
		sluice__envelope__free_unpacked(env, alloc);
		return SL_EINVALID_REQUEST;
	}
	f->nseg = env->n_data_lengths;
	f->env = env;
	return SL_OK;
}

int sl_frame_encode(Sluice__Envelope *env, const struct iovec *seg, size_t nseg, uint8_t **head,
		    size_t *head_len)
{
	*head = NULL;
	*head_len = 0;
	if (nseg > SL_FRAME_MAX_SEGMENTS)
		return SL_EINVALID_ARGUMENT;
	uint32_t *lens = nseg > 0 ? malloc(nseg * sizeof(*lens)) : NULL;
	if (nseg > 0 && lens == NULL)
		return SL_ENOMEM;
	uint64_t data = 0;
	for (size_t i = 0; i < nseg; i++) {
		if (seg[i].iov_len > UINT32_MAX) {
			free(lens);
			return SL_EINVALID_ARGUMENT;
		}
		lens[i] = (uint32_t)seg[i].iov_len;
		data += seg[i].iov_len;
	}
	size_t saved_n = env->n_data_lengths;
	uint32_t *saved = env->data_lengths;
	env->n_data_lengths = nseg;
	env->data_lengths = lens;
	size_t env_len = sluice__envelope__get_packed_size(env);
	int rv = SL_OK;
	if (4 + (uint64_t)env_len + data > UINT32_MAX) {
		rv = SL_EINVALID_ARGUMENT;
	} else if ((*head = malloc(SL_FRAME_PREFIX + env_len)) == NULL) {
		rv = SL_ENOMEM;
	} else {
		put_be32(*head, (uint32_t)(4 + env_len + data));
		put_be32(*head + 4, (uint32_t)env_len);
		sluice__envelope__pack(env, *head + SL_FRAME_PREFIX);
		*head_len = SL_FRAME_PREFIX + env_len;
	}
	env->n_data_lengths = saved_n;
	env->data_lengths = saved;
	free(lens);
	return rv;
}
