/* The record batch codec: Kafka's RecordBatch v2 (magic 2), byte for byte.
 *
 *   off size field
 *     0    8 base offset              (stamped by the leader, outside the CRC)
 *     8    4 batch length             (bytes after this field)
 *    12    4 partition leader epoch   (Sluice: the Raft term, outside the CRC)
 *    16    1 magic = 2
 *    17    4 CRC-32C of bytes 21..end
 *    21    2 attributes               (bits 0-2 codec, 3 log-append time,
 *                                      4 transactional, 5 control)
 *    23    4 last offset delta
 *    27    8 first timestamp
 *    35    8 max timestamp
 *    43    8 producer id
 *    51    2 producer epoch
 *    53    4 base sequence
 *    57    4 record count
 *    61    . records (zstd-compressed as one frame when the codec is zstd)
 *
 * All integers big-endian. A record is: varint length, int8 attributes,
 * varlong timestamp delta, varint offset delta, varint key length (-1 null),
 * key, varint value length (-1 null), value, varint header count, headers
 * (varint key length, key, varint value length, value). Varints are zigzag.
 *
 * Everything here is pure: no I/O, no global state, thread-safe. Used by
 * storage/ (to check and index batches), the broker (to validate produce)
 * and the client (to build and read batches). Nothing re-implements it. */
#ifndef SL_BATCH_H
#define SL_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#define SL_BATCH_HEADER_SIZE 61
/* Bytes before the length field's coverage starts: base offset + length. */
#define SL_BATCH_LOG_OVERHEAD 12
/* Smallest legal value of the length field (a batch with no records). */
#define SL_BATCH_MIN_LENGTH (SL_BATCH_HEADER_SIZE - SL_BATCH_LOG_OVERHEAD)
#define SL_BATCH_MAGIC 2
/* Where the CRC-covered bytes start. */
#define SL_BATCH_CRC_START 21
/* Decompressed records are never allowed to exceed this. */
#define SL_BATCH_MAX_DECOMPRESSED (64u << 20)

/* Byte offsets of the header fields. */
#define SL_BATCH_OFF_BASE_OFFSET 0
#define SL_BATCH_OFF_LENGTH 8
#define SL_BATCH_OFF_LEADER_EPOCH 12
#define SL_BATCH_OFF_MAGIC 16
#define SL_BATCH_OFF_CRC 17
#define SL_BATCH_OFF_ATTRIBUTES 21
#define SL_BATCH_OFF_LAST_OFFSET_DELTA 23
#define SL_BATCH_OFF_FIRST_TIMESTAMP 27
#define SL_BATCH_OFF_MAX_TIMESTAMP 35
#define SL_BATCH_OFF_PRODUCER_ID 43
#define SL_BATCH_OFF_PRODUCER_EPOCH 51
#define SL_BATCH_OFF_BASE_SEQUENCE 53
#define SL_BATCH_OFF_RECORD_COUNT 57

/* Attributes. */
#define SL_ATTR_CODEC_MASK 0x07
#define SL_CODEC_NONE 0
#define SL_CODEC_ZSTD 4
#define SL_ATTR_LOG_APPEND_TIME 0x08
#define SL_ATTR_TRANSACTIONAL 0x10
#define SL_ATTR_CONTROL 0x20
#define SL_ATTR_DELETE_HORIZON 0x40

/* The decoded header. */
struct sl_batch_header {
	int64_t base_offset;
	int32_t length; /* the batch occupies length + 12 bytes */
	int32_t leader_epoch;
	int8_t magic;
	uint32_t crc;
	int16_t attributes;
	int32_t last_offset_delta;
	int64_t first_timestamp;
	int64_t max_timestamp;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int32_t record_count;
};

static inline int64_t sl_batch_last_offset(const struct sl_batch_header *h)
{
	return h->base_offset + h->last_offset_delta;
}

static inline size_t sl_batch_total_size(const struct sl_batch_header *h)
{
	return (size_t)h->length + SL_BATCH_LOG_OVERHEAD;
}

/* CRC-32C (Castagnoli), as Kafka computes it: sl_crc32c(0, buf, len) is the
 * checksum of buf; sl_crc32c(crc_of_a, b, blen) extends it over b. Uses
 * SSE4.2 when the CPU has it, a table-driven fallback otherwise. */
uint32_t sl_crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable implementation, exposed so tests can compare the two. */
uint32_t sl_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* Decodes the fixed 61-byte header of the batch at buf. Checks only what the
 * header alone can tell: len >= 61 (else BATCH_TRUNCATED), magic == 2
 * (BATCH_BAD_MAGIC), SL_BATCH_MIN_LENGTH <= length and length + 12 <=
 * max_size (BATCH_BAD_LENGTH), last offset delta >= 0 and record count >= 0
 * (BATCH_BAD_COUNT / BATCH_BAD_OFFSET_DELTA), base offset + last offset
 * delta <= INT64_MAX (BATCH_BAD_OFFSET_DELTA, so sl_batch_last_offset()
 * cannot overflow). Does not need the records. */
int sl_batch_parse_header(const void *buf, size_t len, size_t max_size,
			  struct sl_batch_header *h);

/* The cheap check for a batch stored or served as opaque bytes: the header
 * as above, the whole batch present in buf (BATCH_TRUNCATED), and its CRC
 * (BATCH_BAD_CRC). Fills h on success. */
int sl_batch_check(const void *buf, size_t len, size_t max_size,
		   struct sl_batch_header *h);

/* The full check: sl_batch_check, then every record walked (decompressing
 * zstd records): varints, lengths, offset deltas increasing and within
 * last_offset_delta, header counts, the record count, and no trailing
 * bytes. Returns the precise code of the first problem found. */
int sl_batch_validate(const void *buf, size_t len, size_t max_size,
		      struct sl_batch_header *h);

/* Writes the base offset and leader epoch into the batch in place. Both are
 * outside the CRC, so the CRC stays valid. */
void sl_batch_stamp(void *buf, int64_t base_offset, int32_t leader_epoch);

/* ---- Reading records ------------------------------------------------ */

struct sl_record {
	int64_t offset;    /* base offset + offset delta */
	int64_t timestamp; /* base timestamp + delta, or max timestamp for
			      log-append-time batches */
	int32_t offset_delta;
	int8_t attributes;
	int32_t key_len; /* -1: null key */
	const uint8_t *key;
	int32_t value_len; /* -1: null value (a tombstone) */
	const uint8_t *value;
	int32_t header_count;
	const uint8_t *headers; /* header_count encoded headers */
	size_t headers_len;
};

struct sl_header {
	int32_t key_len;
	const uint8_t *key;
	int32_t value_len; /* -1: null */
	const uint8_t *value;
};

/* Walks the records of one whole batch. Pointers in each record point into
 * the batch (or into the iterator's decompression buffer, which the
 * iterator owns): valid until sl_record_iter_free(). */
struct sl_record_iter {
	struct sl_batch_header h;
	const uint8_t *p;
	const uint8_t *end;
	int32_t seen;
	int32_t prev_delta;
	uint8_t *plain; /* decompressed records, owned */
	int err;        /* SL_OK at a clean end */
};

/* Starts a walk over batch[0..len). Checks the header (not the CRC: call
 * sl_batch_check first where that matters) and decompresses zstd records
 * into a buffer of at most SL_BATCH_MAX_DECOMPRESSED bytes. On error nothing
 * needs freeing. */
int sl_record_iter_init(struct sl_record_iter *it, const void *batch, size_t len);
/* Fills rec and returns true, or returns false at the end or on a malformed
 * record; then it->err tells which (SL_OK at a clean end, after checking
 * that the record count matches and no bytes are left over). */
bool sl_record_iter_next(struct sl_record_iter *it, struct sl_record *rec);
void sl_record_iter_free(struct sl_record_iter *it);

/* Walks the headers of a record from sl_record_iter_next (already checked
 * there). *pos starts at 0. Returns false after the last. */
bool sl_record_header_next(const struct sl_record *rec, size_t *pos,
			   struct sl_header *hdr);

/* ---- Building batches ----------------------------------------------- */

struct sl_batch_opts {
	int codec;               /* SL_CODEC_NONE or SL_CODEC_ZSTD */
	int level;               /* zstd level; 0 means 1 */
	int16_t attributes;      /* extra attribute bits (control, ...) */
	int64_t producer_id;     /* -1: not idempotent */
	int16_t producer_epoch;  /* -1 */
	int32_t base_sequence;   /* -1 */
	int32_t last_offset_delta; /* -1: records added - 1 (compaction keeps
				      the original) */
};

/* Default options: no compression, no producer (-1s). */
void sl_batch_opts_init(struct sl_batch_opts *o);

/* Accumulates records and produces one batch. The builder owns a growable
 * buffer (and a zstd context when compressing), reused across reset(). */
struct sl_batch_builder {
	struct sl_batch_opts opts;
	uint8_t *buf; /* header space + plain records */
	size_t len;
	size_t cap;
	uint8_t *zbuf; /* compressed output, owned */
	size_t zcap;
	void *zctx; /* ZSTD_CCtx */
	int32_t count;
	int32_t next_delta;
	int64_t first_timestamp;
	int64_t max_timestamp;
};

void sl_batch_builder_init(struct sl_batch_builder *b, const struct sl_batch_opts *o);
/* Appends a record with offset delta = the previous record's + 1 (so the
 * number of records added so far, unless add_at left gaps).
 * key/value may be NULL with len -1 (null). Copies the bytes. */
int sl_batch_builder_add(struct sl_batch_builder *b, int64_t timestamp,
			 const void *key, int32_t key_len,
			 const void *value, int32_t value_len,
			 const struct sl_header *headers, size_t nheaders);
/* Same, with an explicit offset delta, which must exceed the previous one
 * (compaction uses it to keep offsets). */
int sl_batch_builder_add_at(struct sl_batch_builder *b, int32_t offset_delta,
			    int64_t timestamp, const void *key, int32_t key_len,
			    const void *value, int32_t value_len,
			    const struct sl_header *headers, size_t nheaders);
/* Adds a record exactly as sl_record_iter_next returned it (headers kept). */
int sl_batch_builder_add_record(struct sl_batch_builder *b, const struct sl_record *rec);
int32_t sl_batch_builder_count(const struct sl_batch_builder *b);
/* Size of the batch if finished now, before compression. */
size_t sl_batch_builder_size(const struct sl_batch_builder *b);
/* Finishes the batch (base offset 0, leader epoch -1; compresses, writes the
 * header and the CRC) and points *out at it. *out stays valid, owned by the
 * builder, until the next add, reset or free. */
int sl_batch_builder_finish(struct sl_batch_builder *b, const uint8_t **out, size_t *out_len);
/* Empties the builder for a new batch, keeping its buffers; o may be NULL to
 * keep the options. */
void sl_batch_builder_reset(struct sl_batch_builder *b, const struct sl_batch_opts *o);
void sl_batch_builder_free(struct sl_batch_builder *b);

#endif
