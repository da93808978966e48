/* Zigzag varints as Kafka's records use them (protobuf's sint32/sint64):
 * little-endian groups of 7 bits, high bit set on every byte but the last.
 * A 32-bit varint takes at most 5 bytes, a 64-bit one at most 10; a longer
 * encoding, or one whose last byte carries bits beyond the width, is
 * VARINT_OVERFLOW. Internal to proto/. */
#ifndef SL_VARINT_H
#define SL_VARINT_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#define SL_VARINT32_MAX_BYTES 5
#define SL_VARINT64_MAX_BYTES 10

static inline uint32_t sl_zigzag32(int32_t v)
{
	return ((uint32_t)v << 1) ^ (0u - ((uint32_t)v >> 31));
}

static inline uint64_t sl_zigzag64(int64_t v)
{
	return ((uint64_t)v << 1) ^ (0u - ((uint64_t)v >> 63));
}

static inline int32_t sl_unzigzag32(uint32_t z)
{
	return (int32_t)((z >> 1) ^ (0u - (z & 1u)));
}

static inline int64_t sl_unzigzag64(uint64_t z)
{
	return (int64_t)((z >> 1) ^ (0u - (z & 1u)));
}

/* Encoded size of a varint, 1..5 and 1..10 bytes. */
static inline size_t sl_varint_size32(int32_t v)
{
	uint32_t z = sl_zigzag32(v) | 1u;
	return (size_t)(31 - __builtin_clz(z)) / 7 + 1;
}

static inline size_t sl_varint_size64(int64_t v)
{
	uint64_t z = sl_zigzag64(v) | 1u;
	return (size_t)(63 - __builtin_clzll(z)) / 7 + 1;
}

/* Writes a varint at p (room for its size must be there); returns the byte
 * after it. */
static inline uint8_t *sl_varint_put32(uint8_t *p, int32_t v)
{
	uint32_t z = sl_zigzag32(v);
	while (z >= 0x80) {
		*p++ = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	*p++ = (uint8_t)z;
	return p;
}

static inline uint8_t *sl_varint_put64(uint8_t *p, int64_t v)
{
	uint64_t z = sl_zigzag64(v);
	while (z >= 0x80) {
		*p++ = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	*p++ = (uint8_t)z;
	return p;
}

/* Reads a varint from *pp, never at or past end, and advances *pp.
 * Returns SL_OK, SL_EVARINT_OVERFLOW, or SL_EBATCH_TRUNCATED when the bytes
 * end inside the varint (the caller knows what that means where it reads);
 * *pp is left alone on error. */
static inline int sl_varint_get32(const uint8_t **pp, const uint8_t *end, int32_t *out)
{
	const uint8_t *p = *pp;
	size_t avail = (size_t)(end - p);
	uint32_t z = 0;

	if (avail > 0 && p[0] < 0x80) {
		*out = sl_unzigzag32(p[0]);
		*pp = p + 1;
		return SL_OK;
	}
	for (size_t i = 0; i < SL_VARINT32_MAX_BYTES; i++) {
		if (i == avail)
			return SL_EBATCH_TRUNCATED;
		uint8_t b = p[i];
		/* The fifth byte holds bits 28..31 and must end the varint. */
		if (i == SL_VARINT32_MAX_BYTES - 1 && b > 0x0f)
			return SL_EVARINT_OVERFLOW;
		z |= (uint32_t)(b & 0x7f) << (7 * i);
		if (b < 0x80) {
			*out = sl_unzigzag32(z);
			*pp = p + i + 1;
			return SL_OK;
		}
	}
	return SL_EVARINT_OVERFLOW; /* not reached */
}

static inline int sl_varint_get64(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
	const uint8_t *p = *pp;
	size_t avail = (size_t)(end - p);
	uint64_t z = 0;

	if (avail > 0 && p[0] < 0x80) {
		*out = sl_unzigzag64(p[0]);
		*pp = p + 1;
		return SL_OK;
	}
	for (size_t i = 0; i < SL_VARINT64_MAX_BYTES; i++) {
		if (i == avail)
			return SL_EBATCH_TRUNCATED;
		uint8_t b = p[i];
		/* The tenth byte holds bit 63 only and must end the varint. */
		if (i == SL_VARINT64_MAX_BYTES - 1 && b > 0x01)
			return SL_EVARINT_OVERFLOW;
		z |= (uint64_t)(b & 0x7f) << (7 * i);
		if (b < 0x80) {
			*out = sl_unzigzag64(z);
			*pp = p + i + 1;
			return SL_OK;
		}
	}
	return SL_EVARINT_OVERFLOW; /* not reached */
}

#endif
