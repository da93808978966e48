/* Records kept durable in two alternating files (slot.h).
 *
 * On-disk format of a slot file, all integers little-endian:
 *
 *   offset  size  field
 *        0     4  magic "SLSL"
 *        4     4  format version: 1
 *        8     8  record version: >= 1
 *       16     4  payload length: <= SL_SLOT_MAX
 *       20     4  CRC-32C (sl_crc32c) of bytes 0..19, then of the payload
 *       24   len  payload
 *
 * A slot is valid only when its file is exactly 24 + length bytes long and
 * magic, format version, length and CRC all check. Anything else (a torn
 * write, the leftovers of a longer record, bit rot, an empty file) makes
 * the slot invalid, and the other slot is used.
 *
 * Why a crash cannot lose a stored record: version v goes to slot 1 when v
 * is odd and to slot 2 when it is even, so a store never touches the slot
 * holding the newest record (version v - 1). The new record is written with
 * one pwrite at offset 0, the file is cut to its exact length and one
 * fdatasync makes both durable. A crash before the fdatasync completes
 * leaves the slot holding either the new record whole or something that
 * fails the checks above; the other slot still holds the previous one.
 *
 * A slot file created by a store is a new directory entry, which only an
 * fsync of the directory makes durable: the store syncs the directory then
 * (and only then; an existing file's entry is already durable). If a store
 * that created the file fails, it unlinks the file again (best effort), so
 * that a retry creates it afresh and syncs the directory; otherwise the
 * retry would find the file, skip the directory sync and report as durable
 * a record whose directory entry may not be. */
#include "slot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "errors.h"

#define SLOT_MAGIC "SLSL"
#define SLOT_FORMAT 1u
#define SLOT_HDR 24u
/* Bytes covered by the CRC in the header: everything before it. */
#define SLOT_HDR_CRC_OFF 20u

/* ---- Little-endian helpers -------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- Errors and paths ------------------------------------------------- */

static int errf(char *errmsg, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *errmsg, int err, const char *fmt, ...)
{
	if (errmsg != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errmsg, SL_ERRMSG_SIZE, fmt, ap);
		va_end(ap);
	}
	return err;
}

/* "<dir>/<name><slot>" into path (PATH_MAX bytes). */
static int slot_path(char *path, const char *dir, const char *name, int slot, char *errmsg)
{
	int n = snprintf(path, PATH_MAX, "%s/%s%d", dir, name, slot);
	if (n < 0 || n >= PATH_MAX)
		return errf(errmsg, SL_EINVALID_ARGUMENT, "slot path too long: %.100s/%.100s",
			    dir, name);
	return SL_OK;
}

/* ---- I/O -------------------------------------------------------------- */

/* Reads up to len bytes at off, stopping early only at the end of the
 * file; *got says how many. Returns 0 or a negative errno. */
static int read_full(sl_vfs *vfs, int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = vfs->pread(vfs, fd, (uint8_t *)buf + done, len - done, off + done);
		if (n < 0) {
			*got = done;
			return (int)n;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*got = done;
	return 0;
}

/* Writes all of buf at offset 0. Returns 0 or a negative errno. */
static int write_full(sl_vfs *vfs, int fd, const uint8_t *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = vfs->pwrite(vfs, fd, buf + done, len - done, done);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* ---- Load ------------------------------------------------------------- */

/* A record read from one slot; version 0 when the slot holds none. */
struct rec {
	void *data;
	size_t len;
	uint64_t version;
};

/* Reads and checks the slot file open as fd. An invalid file leaves rec
 * empty and returns SL_OK; disk errors are SL_ESTORAGE. */
static int read_rec(sl_vfs *vfs, int fd, const char *path, struct rec *rec, char *errmsg)
{
	uint64_t size;
	int rv = vfs->fsize(vfs, fd, &size);
	if (rv < 0)
		return errf(errmsg, SL_ESTORAGE, "%s: fstat: %s", path, strerror(-rv));
	if (size < SLOT_HDR || size > (uint64_t)SLOT_HDR + SL_SLOT_MAX)
		return SL_OK;

	uint8_t hdr[SLOT_HDR];
	size_t got;
	rv = read_full(vfs, fd, hdr, sizeof(hdr), 0, &got);
	if (rv < 0)
		return errf(errmsg, SL_ESTORAGE, "%s: read: %s", path, strerror(-rv));
	if (got < SLOT_HDR)
		return SL_OK; /* shrank under us: not a whole record */
	uint64_t version = get_u64(hdr + 8);
	uint32_t len = get_u32(hdr + 16);
	uint32_t crc = get_u32(hdr + 20);
	if (memcmp(hdr, SLOT_MAGIC, 4) != 0 || get_u32(hdr + 4) != SLOT_FORMAT ||
	    version == 0 || len > SL_SLOT_MAX || size != (uint64_t)SLOT_HDR + len)
		return SL_OK;

	uint8_t *data = NULL;
	if (len > 0) {
		data = malloc(len);
		if (data == NULL)
			return errf(errmsg, SL_ENOMEM, "%s: no memory for %u bytes", path, len);
		rv = read_full(vfs, fd, data, len, SLOT_HDR, &got);
		if (rv < 0) {
			free(data);
			return errf(errmsg, SL_ESTORAGE, "%s: read: %s", path, strerror(-rv));
		}
		if (got < len) {
			free(data);
			return SL_OK;
		}
	}
	uint32_t sum = sl_crc32c(0, hdr, SLOT_HDR_CRC_OFF);
	sum = sl_crc32c(sum, data, len);
	if (sum != crc) {
		free(data);
		return SL_OK;
	}
	rec->data = data;
	rec->len = len;
	rec->version = version;
	return SL_OK;
}

/* Reads one slot file into rec (empty when missing or invalid). */
static int load_slot(sl_vfs *vfs, const char *dir, const char *name, int slot,
		     struct rec *rec, char *errmsg)
{
	memset(rec, 0, sizeof(*rec));
	char path[PATH_MAX];
	int rv = slot_path(path, dir, name, slot, errmsg);
	if (rv != SL_OK)
		return rv;
	int fd = vfs->open(vfs, path, O_RDONLY, 0);
	if (fd == -ENOENT)
		return SL_OK;
	if (fd < 0)
		return errf(errmsg, SL_ESTORAGE, "%s: open: %s", path, strerror(-fd));
	rv = read_rec(vfs, fd, path, rec, errmsg);
	/* Nothing was written: a failed close loses nothing. */
	vfs->close(vfs, fd);
	return rv;
}

int sl_slot_load(sl_vfs *vfs, const char *dir, const char *name, void **data, size_t *len,
		 uint64_t *version, char *errmsg)
{
	*data = NULL;
	*len = 0;
	*version = 0;

	struct rec r1, r2;
	int rv = load_slot(vfs, dir, name, 1, &r1, errmsg);
	if (rv != SL_OK)
		return rv;
	rv = load_slot(vfs, dir, name, 2, &r2, errmsg);
	if (rv != SL_OK) {
		free(r1.data);
		return rv;
	}
	struct rec *best = r2.version > r1.version ? &r2 : &r1;
	struct rec *other = best == &r1 ? &r2 : &r1;
	free(other->data);
	if (best->version == 0)
		return SL_ENOT_FOUND;
	*data = best->data;
	*len = best->len;
	*version = best->version;
	return SL_OK;
}

/* ---- Store ------------------------------------------------------------ */

/* Opens path for writing, creating it if missing; *created says whether
 * this call created it. Returns a handle or a negative errno. */
static int open_slot(sl_vfs *vfs, const char *path, bool *created)
{
	*created = false;
	int fd = vfs->open(vfs, path, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd >= 0) {
		*created = true;
		return fd;
	}
	if (fd != -EEXIST)
		return fd;
	return vfs->open(vfs, path, O_RDWR, 0644);
}

/* Writes the encoded record buf to path and makes it durable. */
static int write_slot(sl_vfs *vfs, const char *dir, const char *path, const uint8_t *buf,
		      size_t len, char *errmsg)
{
	bool created;
	int fd = open_slot(vfs, path, &created);
	if (fd < 0)
		return errf(errmsg, SL_ESTORAGE, "%s: open: %s", path, strerror(-fd));

	const char *what = "write";
	int rv = write_full(vfs, fd, buf, len);
	if (rv == 0) {
		what = "truncate";
		rv = vfs->ftruncate(vfs, fd, len);
	}
	if (rv == 0) {
		what = "fdatasync";
		rv = vfs->fdatasync(vfs, fd);
	}
	int crv = vfs->close(vfs, fd);
	if (rv == 0 && crv < 0) {
		what = "close";
		rv = crv;
	}
	if (rv < 0) {
		errf(errmsg, SL_ESTORAGE, "%s: %s: %s", path, what, strerror(-rv));
	} else if (created && (rv = vfs->fsync_dir(vfs, dir)) < 0) {
		errf(errmsg, SL_ESTORAGE, "%s: fsync of directory %s: %s", path, dir,
		     strerror(-rv));
	}
	if (rv < 0) {
		if (created)
			vfs->unlink(vfs, path); /* see the top of this file */
		return SL_ESTORAGE;
	}
	return SL_OK;
}

int sl_slot_store(sl_vfs *vfs, const char *dir, const char *name, const void *data, size_t len,
		  uint64_t version, char *errmsg)
{
	if (len > SL_SLOT_MAX)
		return errf(errmsg, SL_EINVALID_ARGUMENT, "slot record of %zu bytes exceeds %u",
			    len, SL_SLOT_MAX);
	if (version == 0)
		return errf(errmsg, SL_EINVALID_ARGUMENT, "slot record version must be >= 1");
	if (len > 0 && data == NULL)
		return errf(errmsg, SL_EINVALID_ARGUMENT, "slot record data is NULL");

	int slot = (version & 1) ? 1 : 2;
	char path[PATH_MAX];
	int rv = slot_path(path, dir, name, slot, errmsg);
	if (rv != SL_OK)
		return rv;

	size_t total = SLOT_HDR + len;
	uint8_t *buf = malloc(total);
	if (buf == NULL)
		return errf(errmsg, SL_ENOMEM, "%s: no memory for %zu bytes", path, total);
	memcpy(buf, SLOT_MAGIC, 4);
	put_u32(buf + 4, SLOT_FORMAT);
	put_u64(buf + 8, version);
	put_u32(buf + 16, (uint32_t)len);
	if (len > 0)
		memcpy(buf + SLOT_HDR, data, len);
	uint32_t crc = sl_crc32c(0, buf, SLOT_HDR_CRC_OFF);
	crc = sl_crc32c(crc, buf + SLOT_HDR, len);
	put_u32(buf + SLOT_HDR_CRC_OFF, crc);

	rv = write_slot(vfs, dir, path, buf, total, errmsg);
	free(buf);
	return rv;
}
