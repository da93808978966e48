/* Reading a log directory as it is, for `sluice log dump`. See storage.h.
 *
 * Unlike sl_log_open, nothing is repaired, removed or written: the files
 * are opened read-only and walked batch by batch, so a node's directory
 * can be looked at while the node runs or after it failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_int.h"

struct names {
	char **v;
	size_t n, cap;
	bool nomem;
};

/* A segment file: twenty digits and ".log". */
static int add_name(void *arg, const char *name)
{
	struct names *s = arg;
	size_t len = strlen(name);
	if (len != SEG_NAME_DIGITS + strlen(SEG_LOG_SUFFIX) ||
	    strcmp(name + SEG_NAME_DIGITS, SEG_LOG_SUFFIX) != 0 ||
	    strspn(name, "0123456789") != SEG_NAME_DIGITS)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (v == NULL) {
			s->nomem = true;
			return 1;
		}
		s->v = v;
		s->cap = cap;
	}
	if ((s->v[s->n] = strdup(name)) == NULL) {
		s->nomem = true;
		return 1;
	}
	s->n++;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* Walks one segment file. */
static int dump_segment(sl_vfs *vfs, const char *dir, const char *name,
			int (*fn)(void *arg, const struct sl_dump_batch *b), void *arg,
			char *errmsg)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = vfs->open(vfs, path, O_RDONLY, 0);
	if (fd < 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "open %.150s: %.60s", path, strerror(-fd));
		return SL_EIO;
	}
	uint64_t size;
	int rv = vfs->fsize(vfs, fd, &size);
	if (rv < 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "size of %.150s: %.60s", path, strerror(-rv));
		vfs->close(vfs, fd);
		return SL_EIO;
	}
	uint8_t head[SL_BATCH_HEADER_SIZE];
	uint8_t *buf = NULL;
	size_t cap = 0;
	rv = SL_OK;
	for (uint64_t pos = 0; pos < size && rv == SL_OK;) {
		struct sl_dump_batch b = { .segment = name, .pos = pos, .size = size - pos };
		size_t want = size - pos < sizeof(head) ? (size_t)(size - pos) : sizeof(head);
		ssize_t got = vfs->pread(vfs, fd, head, want, pos);
		if (got < 0) {
			snprintf(errmsg, SL_ERRMSG_SIZE, "read %.150s at %" PRIu64 ": %.60s", path, pos,
				 strerror((int)-got));
			rv = SL_EIO;
			break;
		}
		if (all_zero(head, (size_t)got))
			break; /* the zeroed space written ahead of the end */
		struct sl_batch_header h;
		b.err = sl_batch_parse_header(head, (size_t)got, SEG_MAX_BYTES, &h);
		if (b.err == SL_OK && sl_batch_total_size(&h) > size - pos)
			b.err = SL_EBATCH_TRUNCATED;
		if (b.err != SL_OK) {
			rv = fn(arg, &b);
			break;
		}
		size_t total = sl_batch_total_size(&h);
		if (total > cap) {
			uint8_t *nb = realloc(buf, total);
			if (nb == NULL) {
				snprintf(errmsg, SL_ERRMSG_SIZE, "out of memory");
				rv = SL_ENOMEM;
				break;
			}
			buf = nb;
			cap = total;
		}
		got = vfs->pread(vfs, fd, buf, total, pos);
		if (got != (ssize_t)total) {
			snprintf(errmsg, SL_ERRMSG_SIZE, "read %.150s at %" PRIu64 ": %.60s", path, pos,
				 got < 0 ? strerror((int)-got) : "short read");
			rv = SL_EIO;
			break;
		}
		b.base_offset = h.base_offset;
		b.last_offset = sl_batch_last_offset(&h);
		b.leader_epoch = h.leader_epoch;
		b.count = h.record_count;
		b.size = total;
		b.attributes = h.attributes;
		b.max_timestamp = h.max_timestamp;
		b.crc_ok = sl_batch_check(buf, total, total, &h) != SL_EBATCH_BAD_CRC;
		rv = fn(arg, &b);
		pos += total;
	}
	free(buf);
	vfs->close(vfs, fd);
	return rv;
}

int sl_log_dump(const char *dir, sl_vfs *vfs, int (*fn)(void *arg, const struct sl_dump_batch *b),
		void *arg, char *errmsg)
{
	if (vfs == NULL)
		vfs = sl_vfs_posix();
	struct names s = { 0 };
	int rv = vfs->list_dir(vfs, dir, add_name, &s);
	if (rv < 0 || s.nomem) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%.150s: %.60s", dir,
			 s.nomem ? "out of memory" : strerror(-rv));
		rv = s.nomem ? SL_ENOMEM : rv == -ENOENT || rv == -ENOTDIR ? SL_ENOT_FOUND : SL_EIO;
	} else if (s.n == 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%.150s holds no segment file (NNNNNNNNNNNNNNNNNNNN.log)",
			 dir);
		rv = SL_ENOT_FOUND;
	} else {
		qsort(s.v, s.n, sizeof(*s.v), by_name);
		for (size_t i = 0; i < s.n && rv == SL_OK; i++)
			rv = dump_segment(vfs, dir, s.v[i], fn, arg, errmsg);
	}
	for (size_t i = 0; i < s.n; i++)
		free(s.v[i]);
	free(s.v);
	return rv;
}
