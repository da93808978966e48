/* Compaction: keep the newest record per key in the sealed segments below
 * a floor. See storage.h for the three steps and their threads.
 *
 * The key map holds a 128-bit hash of each key (XXH3) and the newest
 * offset seen for it, in a fixed amount of memory (compact_map_bytes). It
 * is built from the records after the log's clean point (everything below
 * was deduplicated by earlier runs) and every selected segment is cleaned
 * against it. When the map fills, the run covers only the offsets mapped so
 * far and the clean point moves there; the next run goes on from it.
 * Records above the mapped range are copied as they are, so a full map
 * costs completeness, never correctness. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "storage_int.h"

struct map_slot {
	uint64_t h1, h2;
	int64_t offset; /* -1: empty */
};

struct key_map {
	struct map_slot *slots;
	size_t mask;
	size_t used;
	size_t max_used;
};

struct cseg {
	sl_segment *seg; /* a reference, for identity and its path */
	int64_t base;
	uint32_t reopened; /* seg->reopened at begin */
	bool gone;         /* removed by retention before run read it */
	bool rewritten;
	uint64_t bytes_before;
	uint64_t bytes_after;
	uint64_t removed;
};

struct sl_compaction {
	/* A log-shaped context for the segment helpers: only vfs, dir, cfg
	 * and errmsg are used, never the list or the mutex. */
	struct sl_log ctx;
	int64_t now_ms;
	struct cseg *segs;
	size_t n;
	int64_t map_from;    /* the log's clean point at begin */
	int64_t mapped_upto; /* records in (map_from, mapped_upto] are mapped */
	bool ran;
	int run_rv;
};

/* ---- Key map -------------------------------------------------------- */

static int map_init(struct key_map *m, uint64_t bytes)
{
	size_t n = 1024;
	while ((uint64_t)n * 2 * sizeof(struct map_slot) <= bytes)
		n *= 2;
	m->slots = malloc(n * sizeof(*m->slots));
	if (m->slots == NULL)
		return SL_ENOMEM;
	for (size_t i = 0; i < n; i++)
		m->slots[i].offset = -1;
	m->mask = n - 1;
	m->used = 0;
	m->max_used = n / 4 * 3;
	return SL_OK;
}

static struct map_slot *map_find(struct key_map *m, const void *key, size_t len)
{
	XXH128_hash_t h = XXH3_128bits(key, len);
	for (size_t i = (size_t)h.low64 & m->mask;; i = (i + 1) & m->mask) {
		struct map_slot *s = &m->slots[i];
		if (s->offset < 0) {
			s->h1 = h.low64;
			s->h2 = h.high64;
			return s; /* empty: the caller decides whether to fill it */
		}
		if (s->h1 == h.low64 && s->h2 == h.high64)
			return s;
	}
}

/* Records key -> offset; false when the map is full (nothing changed). */
static bool map_put(struct key_map *m, const void *key, size_t len, int64_t offset)
{
	struct map_slot *s = map_find(m, key, len);
	if (s->offset < 0) {
		if (m->used >= m->max_used)
			return false;
		m->used++;
	}
	s->offset = offset;
	return true;
}

static int64_t map_get(struct key_map *m, const void *key, size_t len)
{
	return map_find(m, key, len)->offset;
}

/* ---- Begin ---------------------------------------------------------- */

int sl_log_compact_begin(sl_log *log, int64_t floor, int64_t now_ms, sl_compaction **out)
{
	*out = NULL;
	pthread_mutex_lock(&log->mu);
	size_t n = 0;
	while (n + 1 < log->nsegs && log->segs[n + 1]->base <= floor)
		n++;
	if (n == 0) {
		pthread_mutex_unlock(&log->mu);
		return SL_OK;
	}
	sl_compaction *c = calloc(1, sizeof(*c));
	if (c != NULL)
		c->segs = calloc(n, sizeof(*c->segs));
	if (c == NULL || c->segs == NULL || (c->ctx.dir = strdup(log->dir)) == NULL) {
		if (c != NULL)
			free(c->segs);
		free(c);
		pthread_mutex_unlock(&log->mu);
		return SL_ENOMEM;
	}
	c->ctx.vfs = log->vfs;
	c->ctx.cfg = log->cfg;
	c->now_ms = now_ms;
	c->n = n;
	c->map_from = log->clean_upto;
	c->mapped_upto = log->clean_upto;
	for (size_t i = 0; i < n; i++) {
		c->segs[i].seg = log->segs[i];
		c->segs[i].base = log->segs[i]->base;
		c->segs[i].reopened = log->segs[i]->reopened;
		sl_segment_ref(log->segs[i]);
	}
	pthread_mutex_unlock(&log->mu);
	*out = c;
	return SL_OK;
}

/* ---- Run ------------------------------------------------------------ */

/* Opens a sealed segment's file for this run (its own descriptor: the
 * log's may be closed under it at any time). Retention may have deleted it
 * since begin (from the front only): then it is skipped, marked gone. */
static int open_input(sl_compaction *c, struct cseg *cs, int *fd, uint64_t *size)
{
	sl_vfs *vfs = c->ctx.vfs;
	*fd = vfs->open(vfs, cs->seg->path, O_RDONLY, 0);
	if (*fd == -ENOENT) {
		cs->gone = true;
		return SL_OK;
	}
	if (*fd < 0)
		return sl_log_errf(&c->ctx, SL_ESTORAGE, "open %s: %s", cs->seg->path, strerror(-*fd));
	int rv = vfs->fsize(vfs, *fd, size);
	if (rv < 0) {
		vfs->close(vfs, *fd);
		return sl_log_errf(&c->ctx, SL_ESTORAGE, "stat %s: %s", cs->seg->path, strerror(-rv));
	}
	return SL_OK;
}

/* Pass 1: the newest offset of every key after the clean point, until
 * the map is full or a segment cannot be read. */
static int build_map(sl_compaction *c, struct key_map *m)
{
	for (size_t i = 0; i < c->n; i++) {
		struct cseg *cs = &c->segs[i];
		int fd;
		uint64_t size, pos = 0;
		if (i + 1 < c->n && c->segs[i + 1].base <= c->map_from + 1)
			continue; /* wholly below the clean point */
		int rv = open_input(c, cs, &fd, &size);
		if (rv != SL_OK)
			return rv;
		if (cs->gone)
			continue;
		struct sl_reader r;
		sl_reader_init(&r, c->ctx.vfs, fd, size, c->ctx.cfg.max_batch_bytes);
		bool full = false;
		while (pos < size && !full && rv == SL_OK) {
			struct sl_batch_header h;
			const uint8_t *bytes;
			rv = sl_reader_batch(&r, pos, true, &h, &bytes);
			if (rv != SL_OK)
				break;
			if (!(h.attributes & SL_ATTR_CONTROL) &&
			    sl_batch_last_offset(&h) > c->map_from) {
				struct sl_record_iter it;
				struct sl_record rec;
				rv = sl_record_iter_init(&it, bytes, sl_batch_total_size(&h));
				if (rv != SL_OK)
					break;
				while (sl_record_iter_next(&it, &rec)) {
					if (rec.key_len < 0 || rec.offset <= c->map_from)
						continue;
					if (!map_put(m, rec.key, (size_t)rec.key_len, rec.offset)) {
						full = true;
						c->mapped_upto = rec.offset - 1;
						break;
					}
				}
				if (!full && it.err != SL_OK)
					rv = it.err;
				sl_record_iter_free(&it);
			}
			if (!full && rv == SL_OK && sl_batch_last_offset(&h) > c->mapped_upto)
				c->mapped_upto = sl_batch_last_offset(&h);
			pos += sl_batch_total_size(&h);
		}
		sl_reader_free(&r);
		c->ctx.vfs->close(c->ctx.vfs, fd);
		if (rv != SL_OK)
			return sl_log_errf(&c->ctx, SL_ELOG_CORRUPT,
					   "%s: batch at position %" PRIu64 " cannot be compacted: %s",
					   cs->seg->path, pos, sl_strerror(rv));
		if (full)
			return SL_OK;
	}
	return SL_OK;
}

/* Output of one cleaned segment, written in large pieces. */
struct cout {
	sl_compaction *c;
	sl_segment *seg; /* indexes of the output */
	int fd;
	uint8_t *buf;
	size_t len, cap;
	uint64_t pos; /* file position of buf[0] */
};

static int cout_flush(struct cout *o)
{
	if (o->len == 0)
		return SL_OK;
	ssize_t n = o->c->ctx.vfs->pwrite(o->c->ctx.vfs, o->fd, o->buf, o->len, o->pos);
	if (n != (ssize_t)o->len)
		return SL_ESTORAGE;
	o->pos += o->len;
	o->len = 0;
	return SL_OK;
}

static int cout_batch(struct cout *o, const uint8_t *bytes, size_t len)
{
	struct sl_batch_header h;
	sl_batch_parse_header(bytes, len, UINT32_MAX, &h);
	int rv = sl_segment_index_batch(&o->c->ctx, o->seg, o->pos + o->len, &h);
	if (rv != SL_OK)
		return rv;
	if (o->len + len > o->cap && (rv = cout_flush(o)) != SL_OK)
		return rv;
	if (len > o->cap) {
		ssize_t n = o->c->ctx.vfs->pwrite(o->c->ctx.vfs, o->fd, bytes, len, o->pos);
		if (n != (ssize_t)len)
			return SL_ESTORAGE;
		o->pos += len;
		return SL_OK;
	}
	memcpy(o->buf + o->len, bytes, len);
	o->len += len;
	return SL_OK;
}

/* Whether a record survives. A record at or below the clean point whose
 * key is not in the map was already the newest for its key. */
static bool keep_record(sl_compaction *c, struct key_map *m, const struct sl_record *rec)
{
	if (rec->offset > c->mapped_upto || rec->key_len < 0)
		return true;
	if (map_get(m, rec->key, (size_t)rec->key_len) > rec->offset)
		return false; /* a newer record has this key */
	if (rec->value_len < 0 && rec->timestamp < c->now_ms - c->ctx.cfg.delete_retention_ms)
		return false; /* a tombstone past its delay */
	return true;
}

/* Rewrites the batch at bytes into o, keeping what keep_record keeps. */
static int clean_batch(sl_compaction *c, struct key_map *m, struct cout *o,
		       struct sl_batch_builder *b, const struct sl_batch_header *h,
		       const uint8_t *bytes, uint64_t *removed)
{
	size_t len = sl_batch_total_size(h);
	if ((h->attributes & SL_ATTR_CONTROL) || h->base_offset > c->mapped_upto)
		return cout_batch(o, bytes, len);
	struct sl_record_iter it;
	struct sl_record rec;
	int rv = sl_record_iter_init(&it, bytes, len);
	if (rv != SL_OK)
		return rv;
	struct sl_batch_opts opts;
	sl_batch_opts_init(&opts);
	opts.codec = h->attributes & SL_ATTR_CODEC_MASK;
	opts.attributes = (int16_t)(h->attributes & ~SL_ATTR_CODEC_MASK);
	opts.producer_id = h->producer_id;
	opts.producer_epoch = h->producer_epoch;
	opts.base_sequence = h->base_sequence;
	opts.last_offset_delta = h->last_offset_delta;
	sl_batch_builder_reset(b, &opts);
	int32_t total = 0;
	while (rv == SL_OK && sl_record_iter_next(&it, &rec)) {
		total++;
		if (keep_record(c, m, &rec))
			rv = sl_batch_builder_add_record(b, &rec);
	}
	if (rv == SL_OK)
		rv = it.err;
	sl_record_iter_free(&it);
	if (rv != SL_OK)
		return rv;
	int32_t kept = sl_batch_builder_count(b);
	*removed += (uint64_t)(total - kept);
	if (kept == total)
		return cout_batch(o, bytes, len);
	if (kept == 0)
		return SL_OK;
	const uint8_t *nb;
	size_t nlen;
	if ((rv = sl_batch_builder_finish(b, &nb, &nlen)) != SL_OK)
		return rv;
	sl_batch_stamp((uint8_t *)nb, h->base_offset, h->leader_epoch);
	return cout_batch(o, nb, nlen);
}

/* Pass 2 for one segment: writes <base>.log.cleaned and its index, or
 * nothing when no record goes. */
static int clean_segment(sl_compaction *c, struct key_map *m, struct cseg *cs,
			 struct sl_batch_builder *b)
{
	sl_vfs *vfs = c->ctx.vfs;
	char out_path[PATH_MAX], idx_path[PATH_MAX];
	int in_fd;
	uint64_t size, pos = 0;
	int rv = open_input(c, cs, &in_fd, &size);
	if (rv != SL_OK || cs->gone)
		return rv;
	sl_segment_path(&c->ctx, cs->base, SEG_LOG_SUFFIX SEG_CLEANED_SUFFIX, out_path);
	sl_segment_path(&c->ctx, cs->base, SEG_INDEX_SUFFIX SEG_CLEANED_SUFFIX, idx_path);
	struct cout o = { .c = c, .fd = -1, .cap = 1u << 20 };
	o.seg = sl_segment_new(&c->ctx, cs->base);
	o.buf = malloc(o.cap);
	if (o.seg == NULL || o.buf == NULL) {
		rv = SL_ENOMEM;
		goto out;
	}
	o.fd = vfs->open(vfs, out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (o.fd < 0) {
		rv = sl_log_errf(&c->ctx, SL_ESTORAGE, "create %s: %s", out_path, strerror(-o.fd));
		goto out;
	}
	struct sl_reader r;
	sl_reader_init(&r, vfs, in_fd, size, c->ctx.cfg.max_batch_bytes);
	while (pos < size && rv == SL_OK) {
		struct sl_batch_header h;
		const uint8_t *bytes;
		rv = sl_reader_batch(&r, pos, true, &h, &bytes);
		if (rv == SL_OK)
			rv = clean_batch(c, m, &o, b, &h, bytes, &cs->removed);
		if (rv == SL_OK)
			pos += sl_batch_total_size(&h);
	}
	sl_reader_free(&r);
	if (rv == SL_OK)
		rv = cout_flush(&o);
	if (rv != SL_OK) {
		rv = sl_log_errf(&c->ctx, rv == SL_ESTORAGE ? SL_ESTORAGE : SL_ELOG_CORRUPT,
				 "compacting %s at position %" PRIu64 ": %s", cs->seg->path, pos,
				 sl_strerror(rv));
		goto out;
	}
	cs->bytes_before = size;
	cs->bytes_after = o.pos;
	if (cs->removed == 0)
		goto out; /* nothing to gain: the original stays */
	int s = vfs->fdatasync(vfs, o.fd);
	if (s < 0) {
		rv = sl_log_errf(&c->ctx, SL_ESTORAGE, "fdatasync %s: %s", out_path, strerror(-s));
		goto out;
	}
	o.seg->size = o.pos;
	if ((rv = sl_segment_write_index(&c->ctx, o.seg, idx_path)) == SL_OK)
		cs->rewritten = true;
out:
	if (o.fd >= 0)
		vfs->close(vfs, o.fd);
	if (!cs->rewritten) {
		vfs->unlink(vfs, out_path);
		vfs->unlink(vfs, idx_path);
	}
	vfs->close(vfs, in_fd);
	if (o.seg != NULL)
		sl_segment_unref(o.seg);
	free(o.buf);
	return rv;
}

int sl_compaction_run(sl_compaction *c)
{
	struct key_map m;
	struct sl_batch_builder b;
	int rv = map_init(&m, c->ctx.cfg.compact_map_bytes);
	if (rv != SL_OK)
		goto done;
	sl_batch_builder_init(&b, NULL);
	rv = build_map(c, &m);
	for (size_t i = 0; i < c->n && rv == SL_OK; i++)
		if (c->segs[i].base <= c->mapped_upto)
			rv = clean_segment(c, &m, &c->segs[i], &b);
	sl_batch_builder_free(&b);
	free(m.slots);
done:
	c->ran = true;
	c->run_rv = rv;
	return rv;
}

/* ---- Finish --------------------------------------------------------- */

static void compaction_free(sl_compaction *c)
{
	for (size_t i = 0; i < c->n; i++)
		sl_segment_unref(c->segs[i].seg);
	free(c->segs);
	free(c->ctx.dir);
	free(c);
}

/* Swaps one cleaned segment in for seg at index i of the log. */
static int swap_in(sl_log *log, size_t i, struct cseg *cs)
{
	char from[PATH_MAX], to[PATH_MAX];
	sl_segment *old = log->segs[i];
	sl_segment *seg = sl_segment_new(log, cs->base);
	if (seg == NULL)
		return SL_ENOMEM;
	/* Each rename is atomic; an index that does not match its .log (either
	 * order, crash between) is detected and rebuilt. */
	sl_segment_path(log, cs->base, SEG_INDEX_SUFFIX SEG_CLEANED_SUFFIX, from);
	sl_segment_path(log, cs->base, SEG_INDEX_SUFFIX, to);
	int rv = log->vfs->rename(log->vfs, from, to);
	if (rv == 0) {
		sl_segment_path(log, cs->base, SEG_LOG_SUFFIX SEG_CLEANED_SUFFIX, from);
		rv = log->vfs->rename(log->vfs, from, old->path);
	}
	if (rv < 0) {
		sl_segment_unref(seg);
		return sl_log_errf(log, SL_ESTORAGE, "rename %s: %s", from, strerror(-rv));
	}
	seg->sealed = true;
	seg->size = cs->bytes_after;
	log->segs[i] = seg;
	old->removed = true;
	if (old->fd >= 0)
		log->open_sealed--;
	old->sealed = false;
	sl_segment_unref(old);
	return SL_OK;
}

int sl_log_compact_finish(sl_log *log, sl_compaction *c, struct sl_compaction_stats *stats)
{
	int rv = c->ran ? c->run_rv : SL_EINVALID_ARGUMENT;
	if (rv != SL_OK)
		sl_log_errf(log, rv, "%s", c->ctx.errmsg[0] ? c->ctx.errmsg : sl_strerror(rv));
	if (stats != NULL)
		memset(stats, 0, sizeof(*stats));
	pthread_mutex_lock(&log->mu);
	bool swapped = false, cancelled = false;
	for (size_t k = 0; k < c->n; k++) {
		struct cseg *cs = &c->segs[k];
		if (!cs->rewritten)
			continue;
		size_t i = 0;
		while (i < log->nsegs && log->segs[i] != cs->seg)
			i++;
		int s = SL_OK;
		/* Gone or truncated meanwhile: the copy describes old data. */
		if (rv == SL_OK && i < log->nsegs && cs->seg->sealed && !cs->seg->removed &&
		    cs->seg->reopened == cs->reopened)
			s = swap_in(log, i, cs);
		else
			s = SL_ECANCELED;
		if (s == SL_OK) {
			swapped = true;
			if (stats != NULL) {
				stats->records_removed += cs->removed;
				stats->bytes_before += cs->bytes_before;
				stats->bytes_after += cs->bytes_after;
				stats->segments_rewritten++;
			}
			continue;
		}
		char path[PATH_MAX];
		sl_segment_path(log, cs->base, SEG_LOG_SUFFIX SEG_CLEANED_SUFFIX, path);
		log->vfs->unlink(log->vfs, path);
		sl_segment_path(log, cs->base, SEG_INDEX_SUFFIX SEG_CLEANED_SUFFIX, path);
		log->vfs->unlink(log->vfs, path);
		if (s != SL_ECANCELED && rv == SL_OK)
			rv = s;
		cancelled = true;
	}
	/* The clean point moves only when every cleaned segment went in (or
	 * needed no change) and nothing was truncated below it meanwhile. */
	if (rv == SL_OK && !cancelled && log->clean_upto == c->map_from &&
	    c->mapped_upto < log->segs[log->nsegs - 1]->base)
		log->clean_upto = c->mapped_upto;
	if (swapped) {
		int s = log->vfs->fsync_dir(log->vfs, log->dir);
		if (s < 0 && rv == SL_OK)
			rv = sl_log_errf(log, SL_ESTORAGE, "fsync %s: %s", log->dir, strerror(-s));
	}
	pthread_mutex_unlock(&log->mu);
	compaction_free(c);
	return rv;
}
