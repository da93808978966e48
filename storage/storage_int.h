/* Layouts shared by the files of storage/ only. Nothing outside storage/ includes
 * this file. */
#ifndef SL_STORAGE_INT_H
#define SL_STORAGE_INT_H

#include <pthread.h>

#include "batch.h"
#include "storage.h"

#define SEG_NAME_DIGITS 20
#define SEG_LOG_SUFFIX ".log"
#define SEG_INDEX_SUFFIX ".index"
#define SEG_CLEANED_SUFFIX ".cleaned"
/* Largest segment: positions are 32-bit in the index. */
#define SEG_MAX_BYTES (2ull << 30)
/* Sealed segments whose descriptor (and index) stay open at once, beyond
 * those pinned by slices. With the active one this keeps an idle log at two
 * descriptors. */
#define SEG_OPEN_SEALED_MAX 1

/* One offset index entry: the batch whose base offset is base + rel starts
 * at file position pos. */
struct sl_index_entry {
	uint32_t rel;
	uint32_t pos;
};

/* One time index entry: every batch up to and including the one at base +
 * rel has timestamps <= ts (ts is the running maximum). */
struct sl_time_entry {
	int64_t ts;
	uint32_t rel;
};

/* The trailer of an index file; the file is the offset entries (8 bytes
 * each), the time entries (12 bytes each), then this, all little-endian.
 * It is trusted only if it matches the .log file it describes: same size,
 * and the CRC field of the last batch at last_pos equal to last_crc. */
#define INDEX_MAGIC 0x58494c53u /* "SLIX" */
#define INDEX_VERSION 1
#define INDEX_TRAILER_SIZE 72
struct sl_index_trailer {
	uint32_t magic;
	uint32_t version;
	uint32_t nidx;
	uint32_t ntidx;
	int64_t base;
	uint64_t log_size;
	int64_t next_offset;
	int64_t max_ts;
	int64_t first_ts;
	uint64_t last_pos;
	uint32_t last_crc;
	uint32_t crc; /* CRC-32C of entries and the trailer before this field */
};

/* A segment: one .log file and its index. Reference counted: the log holds
 * one reference while the segment is in its list, every slice one more.
 * Fields other than refs are protected by the log's mutex while the
 * segment is in the log. */
struct sl_segment {
	sl_vfs *vfs;
	int refs; /* atomic */
	int64_t base;
	char *path; /* the .log file */
	int fd;     /* -1 when closed */
	bool sealed;
	bool removed;  /* no longer in the log (deleted or replaced) */
	bool loaded;   /* index in memory and next_offset/max_ts known */
	bool have_max; /* max_ts known without loading (index trailer read) */
	uint64_t size; /* bytes of batches; UINT64_MAX while unknown */
	int64_t next_offset;
	int64_t max_ts;   /* INT64_MIN when no batch */
	int64_t first_ts; /* first batch's first timestamp, INT64_MIN if none */
	struct sl_index_entry *idx;
	size_t nidx, idx_cap;
	struct sl_time_entry *tidx;
	size_t ntidx, tidx_cap;
	uint64_t last_idx_pos;  /* file position of the newest index entry */
	uint64_t last_tidx_pos; /* and of the newest time entry */
	uint64_t last_pos;      /* position of the last batch */
	uint32_t last_crc;      /* and its CRC field */
	/* Integrity of sealed segments: batches in [0, verified) were checked;
	 * corrupt_pos is where the first bad one starts (UINT64_MAX: none). */
	uint64_t verified;
	uint64_t corrupt_pos;
	uint64_t lru; /* tick of last use, to close idle sealed descriptors */
	uint32_t reopened; /* times a truncation made it active again */
	/* Active segment only: when its first batch came (wall clock), for
	 * rolling by age; INT64_MIN while empty. */
	int64_t created_ms;
	/* Active segment only: the pre-written window ends at window_end. */
	uint64_t window_end;
	uint64_t window_chunk;
	int64_t window_at_ms;
};

struct sl_log {
	sl_vfs *vfs;
	char *dir;
	struct sl_log_config cfg;
	pthread_mutex_t mu;
	sl_segment **segs; /* sorted by base; the last is active */
	size_t nsegs, segs_cap;
	int64_t durable;
	uint64_t tick;
	size_t open_sealed;
	/* Compaction has deduplicated every record at or below this offset
	 * (in memory: after a restart the first run starts over). */
	int64_t clean_upto;
	/* An fdatasync failed: the kernel may have dropped the dirty pages it
	 * could not write, so no later sync can vouch for them. Every write
	 * fails until the log is reopened (and recovered from disk). */
	bool fenced;
	char errmsg[SL_ERRMSG_SIZE];
};

/* segment.c */
sl_segment *sl_segment_new(sl_log *log, int64_t base);
void sl_segment_ref(sl_segment *seg);
void sl_segment_unref(sl_segment *seg);
/* Path of the segment's file with another suffix, into buf (PATH_MAX). */
void sl_segment_path(const sl_log *log, int64_t base, const char *suffix, char *buf);
int sl_segment_open_fd(sl_log *log, sl_segment *seg);
void sl_segment_close_fd(sl_log *log, sl_segment *seg);
void sl_segment_free_index(sl_segment *seg);
/* Records a batch at pos in the segment's in-memory indexes. */
int sl_segment_index_batch(sl_log *log, sl_segment *seg, uint64_t pos,
			   const struct sl_batch_header *h);
/* Binary searches: the last offset entry with rel <= rel (its position, 0
 * if none), and the last time entry with ts < ts (its rel, or -1). */
uint64_t sl_segment_lookup(const sl_segment *seg, int64_t offset);
/* Ensures a sealed segment's descriptor is open and its index loaded
 * (from the index file, or by scanning the .log and rewriting the index). */
int sl_segment_load(sl_log *log, sl_segment *seg);
/* Reads just the max timestamp of a sealed segment (index trailer, or a
 * full load). */
int sl_segment_max_ts(sl_log *log, sl_segment *seg, int64_t *max_ts);
int sl_segment_size(sl_log *log, sl_segment *seg, uint64_t *size);
/* Writes the segment's index file (from memory) and syncs it. */
int sl_segment_write_index(sl_log *log, sl_segment *seg, const char *path);

/* Scans batches from pos to the end of the file, checking each (header,
 * CRC, offsets increasing from next_offset), indexing them into seg. Stops
 * at the first bad or partial batch: *end is where valid data ends, *err
 * the reason (SL_OK at a clean end of file). */
int sl_segment_scan(sl_log *log, sl_segment *seg, uint64_t pos, uint64_t file_size,
		    uint64_t *end, int *err);

/* A buffered reader of batch headers and bytes from a vfs file. */
struct sl_reader {
	sl_vfs *vfs;
	int fd;
	uint8_t *buf;
	size_t cap;
	uint64_t buf_pos; /* file position of buf[0] */
	size_t buf_len;
	uint64_t limit;   /* file size: never read past it */
	uint32_t max_batch;
};
void sl_reader_init(struct sl_reader *r, sl_vfs *vfs, int fd, uint64_t limit, uint32_t max_batch);
void sl_reader_free(struct sl_reader *r);
/* Parses the header of the batch at pos; with whole, makes the whole batch
 * readable at *bytes (valid until the next call) and checks its CRC.
 * Returns SL_OK, a BATCH_* code, or SL_EIO. */
int sl_reader_batch(struct sl_reader *r, uint64_t pos, bool whole,
		    struct sl_batch_header *h, const uint8_t **bytes);

/* log.c helpers used by compact.c */
int sl_log_errf(sl_log *log, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int64_t sl_log_now_ms(const sl_log *log);

/* Little-endian helpers for index files. */
static inline void le32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void le64_put(uint8_t *p, uint64_t v)
{
	le32_put(p, (uint32_t)v);
	le32_put(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t le64_get(const uint8_t *p)
{
	return (uint64_t)le32_get(p) | (uint64_t)le32_get(p + 4) << 32;
}

#endif
