/* storage/: the partition log on disk.
 *
 * A log is a directory of segments. Segment files are named by their first
 * offset, 20 zero-padded digits: 00000000000000000000.log, with an index
 * file (.index: a sparse offset index and a time index) beside each sealed
 * segment. The last segment is active: appends go there, and its indexes
 * live in memory until it is sealed (or the log is closed cleanly).
 *
 * The unit of storage is the record batch (proto/batch.h), stored and served
 * as opaque bytes. The caller assigns offsets: every batch handed to
 * sl_log_append() is already stamped (base offset, leader epoch) and its base
 * offset is at or above the log's end offset.
 *
 * This library knows nothing of Raft, libuv or sockets. Every file operation
 * goes through an sl_vfs, so tests can run it on a simulated disk.
 *
 * Threads: one thread at a time appends, truncates, flushes, retains, runs
 * the compaction's begin/finish and closes (the "writer"); sl_log_read(),
 * sl_log_find_time() and the accessors may run on other threads at the same
 * time, and sl_compaction_run() runs on any thread. */
#ifndef SL_STORAGE_H
#define SL_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errors.h"

/* ---- The file-system seam ------------------------------------------- */

/* Every file operation of the log, in the spirit of sqlite's VFS. Functions
 * return 0 or a negative errno (and a length for pread/pwrite). File handles
 * are ints; with the POSIX vfs they are real descriptors. */
typedef struct sl_vfs sl_vfs;
struct sl_vfs {
	/* open(2) flags and mode; returns a handle >= 0. */
	int (*open)(sl_vfs *vfs, const char *path, int flags, int mode);
	int (*close)(sl_vfs *vfs, int fd);
	ssize_t (*pread)(sl_vfs *vfs, int fd, void *buf, size_t len, uint64_t off);
	ssize_t (*pwrite)(sl_vfs *vfs, int fd, const void *buf, size_t len, uint64_t off);
	int (*fdatasync)(sl_vfs *vfs, int fd);
	int (*ftruncate)(sl_vfs *vfs, int fd, uint64_t len);
	/* Extends the file to off + len with unwritten (zero-reading) blocks. */
	int (*fallocate)(sl_vfs *vfs, int fd, uint64_t off, uint64_t len);
	int (*fsize)(sl_vfs *vfs, int fd, uint64_t *size);
	int (*rename)(sl_vfs *vfs, const char *from, const char *to);
	int (*unlink)(sl_vfs *vfs, const char *path);
	int (*mkdir)(sl_vfs *vfs, const char *path, int mode);
	/* Makes the directory's entries (creations, renames, unlinks) durable. */
	int (*fsync_dir)(sl_vfs *vfs, const char *path);
	/* Calls fn once per entry name (not "." or ".."); stops early and
	 * returns what fn returned if that is non-zero. */
	int (*list_dir)(sl_vfs *vfs, const char *path,
			int (*fn)(void *arg, const char *name), void *arg);
};

/* The real file system. A static object: never freed. */
sl_vfs *sl_vfs_posix(void);
/* fsync_dir of path's parent directory: makes a new entry in it (a file or
 * directory just created) durable. Returns 0 or a negative errno. */
int sl_vfs_sync_parent(sl_vfs *vfs, const char *path);

/* ---- Configuration -------------------------------------------------- */

enum sl_prewrite {
	SL_PREWRITE_NONE,      /* plain appends: the file grows with every write */
	SL_PREWRITE_ZERO,      /* a window of zeroed blocks ahead of the end */
	SL_PREWRITE_FALLOCATE, /* a window of fallocate'd (unwritten) blocks */
};

enum sl_cleanup {
	SL_CLEANUP_DELETE,  /* retention only */
	SL_CLEANUP_COMPACT, /* compaction (and retention if limits are set) */
};

struct sl_log_config {
	uint64_t segment_bytes;      /* roll when the active segment would
					exceed this; default 1 GiB, max 2 GiB */
	int64_t segment_ms;          /* roll when the active segment is older;
					default 7 days; 0: never by age */
	uint32_t index_interval;     /* bytes between offset index entries;
					default 4096 */
	uint32_t max_batch_bytes;    /* largest batch accepted or read;
					default 16 MiB */
	enum sl_prewrite prewrite;   /* default SL_PREWRITE_ZERO */
	uint32_t prewrite_min;       /* window bounds, default 64 KiB .. */
	uint32_t prewrite_max;       /* .. 8 MiB; the window grows with the
					write rate */
	int64_t retention_bytes;     /* -1: unlimited (default) */
	int64_t retention_ms;        /* -1: unlimited; default 7 days */
	enum sl_cleanup cleanup;     /* default SL_CLEANUP_DELETE */
	int64_t delete_retention_ms; /* keep tombstones this long; 1 day */
	uint64_t compact_map_bytes;  /* key map memory per run; 16 MiB */
	bool verify_append_crc;      /* check each appended batch's CRC;
					default true */
	/* Wall clock in ms for rolling by age; NULL: CLOCK_REALTIME. */
	int64_t (*now_ms)(void *arg);
	void *now_arg;
};

void sl_log_config_init(struct sl_log_config *cfg);

/* ---- The log -------------------------------------------------------- */

typedef struct sl_log sl_log;
typedef struct sl_segment sl_segment;

/* Opens (creating the directory if missing, with base offset 0) the log in
 * dir. Recovery: the active segment is scanned from its last trusted point;
 * a torn or corrupt tail is cut at the last whole, CRC-valid batch. Sealed
 * segments are not touched until read. Leftovers of an interrupted
 * compaction are removed. cfg is copied; vfs must outlive the log (NULL:
 * POSIX). On failure errmsg (if not NULL, SL_ERRMSG_SIZE bytes) says why,
 * naming the file. */
int sl_log_open(const char *dir, const struct sl_log_config *cfg, sl_vfs *vfs,
		sl_log **out, char *errmsg);

/* Seals nothing, trims the pre-written window, writes the active segment's
 * indexes so the next open need not scan it, syncs and frees. Outstanding
 * slices stay readable until released. */
int sl_log_close(sl_log *log);

/* Appends one or more whole, stamped batches laid end to end in buf (the
 * caller keeps buf). Each batch's header is checked (and its CRC when
 * cfg.verify_append_crc), and its base offset must be at or above the end
 * offset (LOG_OFFSET_ORDER otherwise). Nothing is appended unless every
 * batch passes. The data reaches the page cache; sl_log_flush() makes it
 * durable. A write that fails (SL_ESTORAGE) fences the log, as a failed
 * flush does: nothing more is appended until it is reopened. */
int sl_log_append(sl_log *log, const void *buf, size_t len);

/* fdatasync of everything appended so far; afterwards the durable offset is
 * the end offset as it was when the call began. */
int sl_log_flush(sl_log *log);

/* Offsets: the first offset held, one past the last appended, one past the
 * last made durable by sl_log_flush(). */
int64_t sl_log_start_offset(sl_log *log);
int64_t sl_log_end_offset(sl_log *log);
int64_t sl_log_durable_offset(sl_log *log);
/* Bytes of segment data (not indexes) and segment count. */
uint64_t sl_log_size(sl_log *log);
size_t sl_log_segment_count(sl_log *log);
/* Why the last failed call failed; owned by the log. */
const char *sl_log_errmsg(sl_log *log);

/* A range of one segment file holding whole batches, to send as it is
 * (sendfile) or to copy with sl_slice_read(). The slice holds a reference on
 * its segment: the bytes stay readable, even if retention or truncation
 * removes the segment, until sl_slice_release(). */
struct sl_slice {
	sl_segment *seg;
	int fd;                /* a vfs handle; a real fd with the POSIX vfs */
	uint64_t pos;          /* file position of the first batch */
	uint64_t len;          /* bytes; 0 at the end of the log */
	int64_t first_offset;  /* base offset of the first batch */
	int64_t next_offset;   /* last offset of the last batch + 1 */
};

/* Reads from offset: the batch that contains it first (a batch can start
 * below it), then further whole batches while the total stays within
 * max_bytes, but always at least one whole batch. A slice never crosses a
 * segment; ask again from slice.next_offset for more. At the end offset it
 * returns SL_OK with len 0. Below the start or above the end:
 * OFFSET_OUT_OF_RANGE. A corrupt batch in a sealed segment: LOG_CORRUPT,
 * naming file and position in sl_log_errmsg(), and that batch is never
 * served (batches before it are). */
int sl_log_read(sl_log *log, int64_t offset, uint64_t max_bytes, struct sl_slice *out);
/* Copies the slice's bytes into buf (at least slice->len bytes). */
int sl_slice_read(const struct sl_slice *slice, void *buf);
void sl_slice_release(struct sl_slice *slice);

/* The offset of the first record whose timestamp is >= ts, or -1 in *offset
 * when every record is older. */
int sl_log_find_time(sl_log *log, int64_t ts, int64_t *offset);

/* Removes every batch whose base offset is >= offset (Raft's suffix
 * truncation). offset must be within [start, end] and must not fall inside
 * a batch (LOG_MID_BATCH). Durable when it returns. */
int sl_log_truncate(sl_log *log, int64_t offset);

/* Removes everything and restarts the log empty at start_offset (a replica
 * that installs a snapshot past its log). Durable when it returns. */
int sl_log_reset(sl_log *log, int64_t start_offset);

/* Retention: deletes whole sealed segments from the front while they are
 * older than retention_ms (by their newest timestamp) or the log is larger
 * than retention_bytes without them, and never one that holds an offset
 * >= floor. *deleted (may be NULL) gets the number removed. */
int sl_log_retain(sl_log *log, int64_t floor, int64_t now_ms, size_t *deleted);
/* A topic's limits, from its configuration: the size at which the active
 * segment rolls (0: unchanged; else 4 KiB..1 GiB, or INVALID_ARGUMENT)
 * and what the next sl_log_retain keeps (-1: unlimited). Writer thread. */
int sl_log_set_limits(sl_log *log, uint64_t segment_bytes, int64_t retention_bytes,
		      int64_t retention_ms);

/* ---- Reading a log directory as it is (`sluice log dump`) ------------- */

/* One batch found in a segment file, or where a segment stops making
 * sense. err is SL_OK for a whole batch whose CRC was checked (crc_ok
 * says how it went: a batch with a bad CRC is reported and the walk goes
 * on past it, its length being readable); any other err (BATCH_TRUNCATED,
 * BATCH_BAD_MAGIC, BATCH_BAD_LENGTH, ...) is where the walk of that
 * segment stopped, at pos, with the bytes left after it in size. */
struct sl_dump_batch {
	const char *segment;   /* the file's name, e.g. 00000000000000000000.log */
	uint64_t pos;          /* its position in the file */
	int err;
	int64_t base_offset, last_offset;
	int32_t leader_epoch;  /* the Raft term that wrote it */
	int32_t count;         /* records */
	uint64_t size;         /* bytes */
	int16_t attributes;    /* SL_ATTR_* (control, codec) */
	int64_t max_timestamp;
	bool crc_ok;
};

/* Walks the log in dir (the directory of its .log files) without changing
 * anything: every segment file in offset order, every batch in it, up to
 * the file's end or the zeroed space written ahead of the end; fn is
 * called for each (a non-zero return stops the walk and is returned).
 * Returns SL_OK, or SL_EIO / SL_ENOT_FOUND (no such directory, or no
 * segment in it) with errmsg (SL_ERRMSG_SIZE bytes). vfs NULL: POSIX. */
int sl_log_dump(const char *dir, sl_vfs *vfs, int (*fn)(void *arg, const struct sl_dump_batch *b),
		void *arg, char *errmsg);

/* ---- Compaction (cleanup policy compact) ------------------------------ */

/* A compaction rewrites the sealed segments below floor, keeping the newest
 * record per key, dropping tombstones whose timestamp is older than
 * now_ms - delete_retention_ms, keeping offsets (gaps are fine) and control
 * batches. Three steps:
 *   begin  (writer thread): picks the segments, takes references;
 *   run    (any thread, while the writer goes on appending): reads them and
 *          writes the cleaned copies beside them as *.cleaned files;
 *   finish (writer thread): swaps each cleaned segment in atomically.
 * A crash at any step leaves a readable log: open() removes *.cleaned
 * leftovers, and a stale index is rebuilt. */
typedef struct sl_compaction sl_compaction;
/* *out is NULL (and SL_OK returned) when there is nothing to compact. */
int sl_log_compact_begin(sl_log *log, int64_t floor, int64_t now_ms, sl_compaction **out);
int sl_compaction_run(sl_compaction *c);
/* Swaps in what run() produced (if run() failed, only cleans up), frees c.
 * *stats (may be NULL): records removed, bytes before and after. */
struct sl_compaction_stats {
	uint64_t records_removed;
	uint64_t bytes_before;
	uint64_t bytes_after;
	size_t segments_rewritten;
};
int sl_log_compact_finish(sl_log *log, sl_compaction *c, struct sl_compaction_stats *stats);

#endif
