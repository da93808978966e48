/* Two-slot durable records (raft/slot.h), mostly on the simulated disk
 * (tests/lib/simdisk.h): round trips, slot alternation, torn writes at
 * every byte, crashes and disk failures at every operation of a store,
 * the directory sync of a new slot file, bit rot and size limits.
 *
 * What "nothing lost" means everywhere here: after a crash or a failed
 * store of version N + 1, a load gives version N or N + 1 with exactly the
 * bytes stored under that version, never an error and never other bytes;
 * and once a store of N + 1 returned SL_OK, it gives N + 1. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simdisk.h"
#include "slot.h"
#include "storage.h"
#include "testlib.h"

#define SLOT_DIR "/sim/d"
#define SLOT_NAME "meta"
#define SLOT1 SLOT_DIR "/" SLOT_NAME "1"
#define SLOT2 SLOT_DIR "/" SLOT_NAME "2"
/* Header bytes before the payload (slot.c). */
#define HDR 24

TestSuite(slot, .timeout = 30);

static sim_disk *sd;
static sl_vfs *vfs;

/* Where a failure happened, printed with every assertion of a loop. */
static char where[160] = "-";

#define check(cond, fmt, ...) cr_assert(cond, "[%s] " fmt, where, ##__VA_ARGS__)

static void set_where(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_where(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(where, sizeof(where), fmt, ap);
	va_end(ap);
}

/* A fresh simulated disk holding the empty directory SLOT_DIR. */
static void disk_new(void)
{
	sim_free(sd);
	sd = sim_new();
	vfs = sim_vfs(sd);
	cr_assert_eq(vfs->mkdir(vfs, "/sim", 0755), 0);
	cr_assert_eq(vfs->mkdir(vfs, SLOT_DIR, 0755), 0);
}

/* The bytes stored as version v when it is len bytes long. */
static uint8_t *payload(uint64_t v, size_t len)
{
	uint8_t *p = malloc(len > 0 ? len : 1);
	cr_assert_not_null(p);
	uint64_t seed = v * 1000003u + len + 1;
	tl_fill_random(&seed, p, len);
	return p;
}

/* Length of version v in the current scenario (index 0 unused). */
static size_t lens[8];

static int store_v(uint64_t v, char *errmsg)
{
	uint8_t *p = payload(v, lens[v]);
	int rv = sl_slot_store(vfs, SLOT_DIR, SLOT_NAME, p, lens[v], v, errmsg);
	free(p);
	return rv;
}

/* Loads and checks the bytes against the version loaded; returns that
 * version, or 0 when there is none. Any error fails the test. */
static uint64_t load_checked(void)
{
	void *data = (void *)1;
	size_t len = 1234;
	uint64_t v = 99;
	char errmsg[SL_ERRMSG_SIZE] = "";
	int rv = sl_slot_load(vfs, SLOT_DIR, SLOT_NAME, &data, &len, &v, errmsg);
	if (rv == SL_ENOT_FOUND) {
		check(data == NULL && len == 0 && v == 0, "NOT_FOUND must leave nothing");
		return 0;
	}
	check(rv == SL_OK, "load: %s (%s)", sl_err_name(rv), errmsg);
	check(v >= 1 && v < sizeof(lens) / sizeof(lens[0]), "loaded version %llu",
	      (unsigned long long)v);
	check(len == lens[v], "version %llu: %zu bytes, stored %zu", (unsigned long long)v, len,
	      lens[v]);
	if (len == 0) {
		check(data == NULL, "an empty record has NULL data");
	} else {
		uint8_t *want = payload(v, len);
		check(memcmp(data, want, len) == 0, "version %llu: bytes differ",
		      (unsigned long long)v);
		free(want);
	}
	free(data);
	return v;
}

/* A fresh disk with versions 1..n stored (and durable). */
static void prepare(uint64_t n)
{
	disk_new();
	for (uint64_t v = 1; v <= n; v++) {
		char errmsg[SL_ERRMSG_SIZE] = "";
		int rv = store_v(v, errmsg);
		check(rv == SL_OK, "store %llu: %s (%s)", (unsigned long long)v, sl_err_name(rv),
		      errmsg);
	}
}

/* The version in the header of a slot file (current contents). */
static uint64_t file_version(const char *path, uint64_t *size)
{
	uint64_t len = 0;
	uint8_t *p = sim_read_file(sd, path, &len);
	cr_assert_not_null(p, "%s missing", path);
	cr_assert_geq(len, HDR);
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[8 + i];
	free(p);
	if (size != NULL)
		*size = len;
	return v;
}

/* Length patterns the crash tests run through: same size, growing,
 * shrinking, and with empty records. */
static const size_t patterns[][8] = {
	{0, 40, 40, 40, 40, 40},
	{0, 10, 30, 60, 100, 150},
	{0, 150, 100, 60, 30, 10},
	{0, 0, 5, 0, 9, 0},
};
#define NPATTERNS (sizeof(patterns) / sizeof(patterns[0]))

static void use_pattern(size_t i)
{
	memcpy(lens, patterns[i], sizeof(lens));
}

/* Operations a store of version n + 1 takes after versions 1..n. */
static uint64_t store_ops(uint64_t n)
{
	prepare(n);
	uint64_t before = sim_ops(sd);
	check(store_v(n + 1, NULL) == SL_OK, "store %llu", (unsigned long long)n + 1);
	return sim_ops(sd) - before;
}

/* ---- Basics ----------------------------------------------------------- */

Test(slot, empty_dir_is_not_found)
{
	disk_new();
	void *data = (void *)1;
	size_t len = 7;
	uint64_t v = 7;
	cr_assert_eq(sl_slot_load(vfs, SLOT_DIR, SLOT_NAME, &data, &len, &v, NULL),
		     SL_ENOT_FOUND);
	cr_assert_null(data);
	cr_assert_eq(len, 0);
	cr_assert_eq(v, 0);

	/* A missing directory is no error either. */
	cr_assert_eq(sl_slot_load(vfs, "/sim/none", SLOT_NAME, &data, &len, &v, NULL),
		     SL_ENOT_FOUND);

	/* Nor are empty slot files. */
	int fd = vfs->open(vfs, SLOT1, O_RDWR | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(vfs->close(vfs, fd), 0);
	fd = vfs->open(vfs, SLOT2, O_RDWR | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(vfs->close(vfs, fd), 0);
	cr_assert_eq(sl_slot_load(vfs, SLOT_DIR, SLOT_NAME, &data, &len, &v, NULL),
		     SL_ENOT_FOUND);
	cr_assert_null(data);
}

Test(slot, round_trip)
{
	disk_new();
	static const char rec[] = "term=7 vote=3";
	char errmsg[SL_ERRMSG_SIZE] = "";
	cr_assert_eq(sl_slot_store(vfs, SLOT_DIR, SLOT_NAME, rec, sizeof(rec), 1, errmsg), SL_OK,
		     "%s", errmsg);
	for (int crashed = 0; crashed < 2; crashed++) {
		void *data = NULL;
		size_t len = 0;
		uint64_t v = 0;
		cr_assert_eq(sl_slot_load(vfs, SLOT_DIR, SLOT_NAME, &data, &len, &v, errmsg),
			     SL_OK, "%s", errmsg);
		cr_assert_eq(v, 1);
		cr_assert_eq(len, sizeof(rec));
		cr_assert_arr_eq(data, rec, sizeof(rec));
		free(data);
		sim_crash(sd);
	}

	/* An empty record loads as NULL, 0. */
	cr_assert_eq(sl_slot_store(vfs, SLOT_DIR, SLOT_NAME, NULL, 0, 2, errmsg), SL_OK, "%s",
		     errmsg);
	sim_crash(sd);
	void *data = (void *)1;
	size_t len = 1;
	uint64_t v = 0;
	cr_assert_eq(sl_slot_load(vfs, SLOT_DIR, SLOT_NAME, &data, &len, &v, errmsg), SL_OK);
	cr_assert_eq(v, 2);
	cr_assert_null(data);
	cr_assert_eq(len, 0);
}

Test(slot, round_trip_on_posix_files)
{
	sl_vfs *pvfs = sl_vfs_posix();
	const char *dir = tl_tmpdir();
	char errmsg[SL_ERRMSG_SIZE] = "";
	for (uint64_t v = 1; v <= 3; v++) {
		uint8_t *p = payload(v, 100 - 30 * v);
		cr_assert_eq(sl_slot_store(pvfs, dir, "snap", p, 100 - 30 * v, v, errmsg), SL_OK,
			     "%s", errmsg);
		free(p);
	}
	void *data = NULL;
	size_t len = 0;
	uint64_t v = 0;
	cr_assert_eq(sl_slot_load(pvfs, dir, "snap", &data, &len, &v, errmsg), SL_OK, "%s",
		     errmsg);
	cr_assert_eq(v, 3);
	cr_assert_eq(len, 10);
	uint8_t *want = payload(3, 10);
	cr_assert_arr_eq(data, want, 10);
	free(want);
	free(data);
}

Test(slot, alternates_slots)
{
	disk_new();
	static const size_t l[8] = {0, 3, 70, 0, 12, 200, 1, 33};
	memcpy(lens, l, sizeof(lens));
	for (uint64_t v = 1; v < 8; v++) {
		set_where("v=%llu", (unsigned long long)v);
		check(store_v(v, NULL) == SL_OK, "store");
		const char *mine = (v & 1) ? SLOT1 : SLOT2;
		const char *other = (v & 1) ? SLOT2 : SLOT1;
		uint64_t size;
		check(file_version(mine, &size) == v, "%s holds the new version", mine);
		check(size == HDR + lens[v], "%s: %llu bytes", mine, (unsigned long long)size);
		if (v > 1)
			check(file_version(other, NULL) == v - 1, "%s keeps the previous one",
			      other);
		else
			check(!sim_exists(sd, other), "%s not created yet", other);
		check(load_checked() == v, "loads the newest");
		sim_crash(sd);
		check(load_checked() == v, "loads the newest after a crash");
	}
}

/* ---- Crashes ---------------------------------------------------------- */

Test(slot, torn_write_loads_previous_version)
{
	for (size_t pat = 0; pat < NPATTERNS; pat++) {
		use_pattern(pat);
		for (uint64_t n = 1; n <= 3; n++) {
			/* Find how many operations of the store of n + 1 come
			 * before and including its pwrite. */
			uint64_t k = 0, wlen = 0;
			for (;; k++) {
				set_where("pattern=%zu n=%llu k=%llu", pat,
					  (unsigned long long)n, (unsigned long long)k);
				prepare(n);
				sim_crash_after(sd, (int64_t)k);
				int rv = store_v(n + 1, NULL);
				wlen = sim_last_unsynced_write_len(sd);
				if (wlen > 0 || rv == SL_OK)
					break;
			}
			check(wlen == HDR + lens[n + 1], "one pwrite of the whole record, %llu",
			      (unsigned long long)wlen);
			for (uint64_t keep = 0; keep <= wlen; keep++) {
				set_where("pattern=%zu n=%llu keep=%llu", pat,
					  (unsigned long long)n, (unsigned long long)keep);
				prepare(n);
				sim_crash_after(sd, (int64_t)k);
				check(store_v(n + 1, NULL) == SL_ESTORAGE, "store fails");
				sim_crash_tear(sd, keep);
				uint64_t v = load_checked();
				if (keep < wlen)
					check(v == n, "torn write of %llu: loaded %llu",
					      (unsigned long long)n + 1, (unsigned long long)v);
				else
					check(v == n || v == n + 1, "loaded %llu",
					      (unsigned long long)v);
			}
		}
	}
}

Test(slot, crash_at_every_operation_keeps_old_or_new)
{
	for (size_t pat = 0; pat < NPATTERNS; pat++) {
		use_pattern(pat);
		for (uint64_t n = 0; n <= 4; n++) {
			uint64_t total = store_ops(n);
			/* Plain crash, then torn at the start, middle and end
			 * of the newest unsynced write. */
			for (int mode = 0; mode < 4; mode++) {
				for (uint64_t k = 0; k <= total; k++) {
					set_where("pattern=%zu n=%llu k=%llu mode=%d", pat,
						  (unsigned long long)n, (unsigned long long)k,
						  mode);
					prepare(n);
					sim_crash_after(sd, (int64_t)k);
					char errmsg[SL_ERRMSG_SIZE] = "";
					int rv = store_v(n + 1, errmsg);
					if (k < total)
						check(rv == SL_ESTORAGE, "store: %s",
						      sl_err_name(rv));
					else
						check(rv == SL_OK, "store: %s (%s)",
						      sl_err_name(rv), errmsg);
					uint64_t wlen = sim_last_unsynced_write_len(sd);
					if (mode == 0)
						sim_crash(sd);
					else
						sim_crash_tear(sd, wlen * (uint64_t)(mode - 1) / 2);
					uint64_t v = load_checked();
					if (rv == SL_OK)
						check(v == n + 1, "stored %llu, loaded %llu",
						      (unsigned long long)n + 1,
						      (unsigned long long)v);
					else
						check(v == n || v == n + 1, "loaded %llu",
						      (unsigned long long)v);
					/* And the slot pair still works. */
					check(store_v(n + 1, errmsg) == SL_OK, "retry: %s",
					      errmsg);
					sim_crash(sd);
					check(load_checked() == n + 1, "retry durable");
				}
			}
		}
	}
}

Test(slot, new_slot_file_survives_crash_only_after_dir_sync)
{
	/* The stores of versions 1 and 2 each create their slot file. */
	for (size_t pat = 0; pat < NPATTERNS; pat++) {
		use_pattern(pat);
		for (uint64_t n = 0; n <= 1; n++) {
			uint64_t total = store_ops(n);
			for (uint64_t k = 0; k <= total; k++) {
				set_where("pattern=%zu n=%llu k=%llu", pat, (unsigned long long)n,
					  (unsigned long long)k);
				prepare(n);
				sim_crash_after(sd, (int64_t)k);
				int rv = store_v(n + 1, NULL);
				sim_crash(sd);
				uint64_t v = load_checked();
				/* Until the directory sync returned, the new
				 * file's entry is not durable: even a record
				 * written and fdatasync'd is gone. */
				if (rv == SL_OK)
					check(v == n + 1, "stored, loaded %llu",
					      (unsigned long long)v);
				else
					check(v == n, "store failed, loaded %llu",
					      (unsigned long long)v);
			}
		}
	}
}

/* A vfs over the simulated disk whose next fsync_dir fails once, so that a
 * retry runs on a healthy disk (sim_fail_after fails every later call). */
static sl_vfs *inner;
static bool fail_dir_sync;

static int f_open(sl_vfs *v, const char *path, int flags, int mode)
{
	(void)v;
	return inner->open(inner, path, flags, mode);
}
static int f_close(sl_vfs *v, int fd)
{
	(void)v;
	return inner->close(inner, fd);
}
static ssize_t f_pread(sl_vfs *v, int fd, void *buf, size_t len, uint64_t off)
{
	(void)v;
	return inner->pread(inner, fd, buf, len, off);
}
static ssize_t f_pwrite(sl_vfs *v, int fd, const void *buf, size_t len, uint64_t off)
{
	(void)v;
	return inner->pwrite(inner, fd, buf, len, off);
}
static int f_fdatasync(sl_vfs *v, int fd)
{
	(void)v;
	return inner->fdatasync(inner, fd);
}
static int f_ftruncate(sl_vfs *v, int fd, uint64_t len)
{
	(void)v;
	return inner->ftruncate(inner, fd, len);
}
static int f_fsize(sl_vfs *v, int fd, uint64_t *size)
{
	(void)v;
	return inner->fsize(inner, fd, size);
}
static int f_unlink(sl_vfs *v, const char *path)
{
	(void)v;
	return inner->unlink(inner, path);
}
static int f_fsync_dir(sl_vfs *v, const char *path)
{
	(void)v;
	if (fail_dir_sync) {
		fail_dir_sync = false;
		return -EIO;
	}
	return inner->fsync_dir(inner, path);
}

Test(slot, retry_after_failed_dir_sync_syncs_directory)
{
	disk_new();
	inner = vfs;
	sl_vfs flaky = {
		.open = f_open, .close = f_close, .pread = f_pread, .pwrite = f_pwrite,
		.fdatasync = f_fdatasync, .ftruncate = f_ftruncate, .fsize = f_fsize,
		.unlink = f_unlink, .fsync_dir = f_fsync_dir,
	};
	static const char rec[] = "vote";
	char errmsg[SL_ERRMSG_SIZE] = "";
	fail_dir_sync = true;
	cr_assert_eq(sl_slot_store(&flaky, SLOT_DIR, SLOT_NAME, rec, 4, 1, errmsg), SL_ESTORAGE);
	cr_assert_not_null(strstr(errmsg, SLOT1), "%s", errmsg);
	/* The retry must sync the directory too, or the crash loses it. */
	cr_assert_eq(sl_slot_store(&flaky, SLOT_DIR, SLOT_NAME, rec, 4, 1, errmsg), SL_OK, "%s",
		     errmsg);
	sim_crash(sd);
	void *data = NULL;
	size_t len = 0;
	uint64_t v = 0;
	cr_assert_eq(sl_slot_load(vfs, SLOT_DIR, SLOT_NAME, &data, &len, &v, errmsg), SL_OK);
	cr_assert_eq(v, 1);
	cr_assert_eq(len, 4);
	cr_assert_arr_eq(data, rec, 4);
	free(data);
}

/* ---- Corruption and disk failures ------------------------------------- */

Test(slot, corrupt_newest_slot_loads_older)
{
	use_pattern(1);
	prepare(2);
	uint64_t size = 0;
	free(sim_read_file(sd, SLOT2, &size));
	cr_assert_eq(size, HDR + lens[2]);
	for (uint64_t off = 0; off < size; off++) {
		for (int bit = 0; bit < 8; bit += 7) {
			set_where("off=%llu bit=%d", (unsigned long long)off, bit);
			uint8_t mask = (uint8_t)(1u << bit);
			check(sim_corrupt_byte(sd, SLOT2, off, mask) == 0, "corrupt");
			check(load_checked() == 1, "bad newest slot: the older one loads");
			check(sim_corrupt_byte(sd, SLOT2, off, mask) == 0, "restore");
			check(load_checked() == 2, "restored");
		}
	}
	/* The older slot rotting does not hide the newest. */
	cr_assert_eq(sim_corrupt_byte(sd, SLOT1, HDR + 3, 0x10), 0);
	cr_assert_eq(load_checked(), 2);
	/* Both bad: nothing. */
	cr_assert_eq(sim_corrupt_byte(sd, SLOT2, 0, 0x10), 0);
	cr_assert_eq(load_checked(), 0);
}

Test(slot, trailing_bytes_invalidate_a_slot)
{
	use_pattern(0);
	prepare(2);
	int fd = vfs->open(vfs, SLOT2, O_RDWR, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(vfs->pwrite(vfs, fd, "x", 1, HDR + lens[2]), 1);
	cr_assert_eq(vfs->close(vfs, fd), 0);
	cr_assert_eq(load_checked(), 1);
}

Test(slot, disk_failure_reports_storage_error_and_loses_nothing)
{
	static const int errs[] = {EIO, ENOSPC};
	for (size_t pat = 0; pat < NPATTERNS; pat++) {
		use_pattern(pat);
		for (uint64_t n = 0; n <= 3; n++) {
			uint64_t total = store_ops(n);
			const char *path = ((n + 1) & 1) ? SLOT1 : SLOT2;
			for (size_t e = 0; e < 2; e++) {
				for (uint64_t k = 0; k < total; k++) {
					set_where("pattern=%zu n=%llu k=%llu err=%d", pat,
						  (unsigned long long)n, (unsigned long long)k,
						  errs[e]);
					prepare(n);
					sim_fail_after(sd, (int64_t)k, errs[e]);
					char errmsg[SL_ERRMSG_SIZE] = "";
					int rv = store_v(n + 1, errmsg);
					check(rv == SL_ESTORAGE, "store: %s", sl_err_name(rv));
					check(strstr(errmsg, path) != NULL, "errmsg '%s'", errmsg);
					check(strstr(errmsg, strerror(errs[e])) != NULL,
					      "errmsg '%s'", errmsg);
					sim_fail_after(sd, -1, 0);
					uint64_t v = load_checked();
					check(v == n || v == n + 1, "loaded %llu",
					      (unsigned long long)v);
					sim_crash(sd);
					v = load_checked();
					check(v == n || v == n + 1, "after crash, loaded %llu",
					      (unsigned long long)v);
				}
			}
		}
	}
}

Test(slot, disk_failure_during_load)
{
	use_pattern(1);
	prepare(3);
	uint64_t before = sim_ops(sd);
	cr_assert_eq(load_checked(), 3);
	uint64_t total = sim_ops(sd) - before;
	for (uint64_t k = 0; k < total; k++) {
		set_where("k=%llu", (unsigned long long)k);
		sim_fail_after(sd, (int64_t)k, EIO);
		void *data = (void *)1;
		size_t len = 1;
		uint64_t v = 1;
		char errmsg[SL_ERRMSG_SIZE] = "";
		int rv = sl_slot_load(vfs, SLOT_DIR, SLOT_NAME, &data, &len, &v, errmsg);
		sim_fail_after(sd, -1, 0);
		if (rv == SL_OK) {
			/* Only a failed close of a file already read. */
			check(v == 3 && len == lens[3], "loaded %llu", (unsigned long long)v);
			free(data);
		} else {
			check(rv == SL_ESTORAGE, "load: %s", sl_err_name(rv));
			check(data == NULL && len == 0 && v == 0, "nothing returned on error");
			check(strstr(errmsg, SLOT1) != NULL || strstr(errmsg, SLOT2) != NULL,
			      "errmsg '%s'", errmsg);
		}
		check(load_checked() == 3, "intact");
	}
}

Test(slot, unopenable_slot_is_storage_error)
{
	disk_new();
	cr_assert_eq(vfs->mkdir(vfs, SLOT1, 0755), 0);
	void *data = NULL;
	size_t len = 0;
	uint64_t v = 0;
	char errmsg[SL_ERRMSG_SIZE] = "";
	cr_assert_eq(sl_slot_load(vfs, SLOT_DIR, SLOT_NAME, &data, &len, &v, errmsg),
		     SL_ESTORAGE);
	cr_assert_not_null(strstr(errmsg, SLOT1), "%s", errmsg);
	cr_assert_eq(sl_slot_store(vfs, SLOT_DIR, SLOT_NAME, "x", 1, 1, errmsg), SL_ESTORAGE);
	cr_assert_not_null(strstr(errmsg, SLOT1), "%s", errmsg);
}

/* ---- Sizes ------------------------------------------------------------ */

Test(slot, oversized_record_rejected)
{
	disk_new();
	size_t big = (size_t)SL_SLOT_MAX + 1;
	uint8_t *p = calloc(1, big);
	cr_assert_not_null(p);
	char errmsg[SL_ERRMSG_SIZE] = "";
	cr_assert_eq(sl_slot_store(vfs, SLOT_DIR, SLOT_NAME, p, big, 1, errmsg),
		     SL_EINVALID_ARGUMENT);
	cr_assert_neq(errmsg[0], '\0');
	cr_assert(!sim_exists(sd, SLOT1));
	cr_assert_eq(sl_slot_store(vfs, SLOT_DIR, SLOT_NAME, p, 1, 0, errmsg),
		     SL_EINVALID_ARGUMENT, "version 0");

	/* The largest record fits. */
	p[0] = 1;
	p[SL_SLOT_MAX - 1] = 2;
	cr_assert_eq(sl_slot_store(vfs, SLOT_DIR, SLOT_NAME, p, SL_SLOT_MAX, 1, errmsg), SL_OK,
		     "%s", errmsg);
	sim_crash(sd);
	void *data = NULL;
	size_t len = 0;
	uint64_t v = 0;
	cr_assert_eq(sl_slot_load(vfs, SLOT_DIR, SLOT_NAME, &data, &len, &v, errmsg), SL_OK);
	cr_assert_eq(v, 1);
	cr_assert_eq(len, SL_SLOT_MAX);
	cr_assert_eq(memcmp(data, p, SL_SLOT_MAX), 0);
	free(data);
	free(p);
}

Test(slot, shorter_record_after_longer_loads_exactly)
{
	disk_new();
	static const size_t l[8] = {0, 1000, 20, 7, 0, 3};
	memcpy(lens, l, sizeof(lens));
	for (uint64_t v = 1; v <= 5; v++) {
		set_where("v=%llu", (unsigned long long)v);
		check(store_v(v, NULL) == SL_OK, "store");
		uint64_t size;
		check(file_version((v & 1) ? SLOT1 : SLOT2, &size) == v, "version");
		check(size == HDR + lens[v], "file cut to %zu bytes, is %llu", HDR + lens[v],
		      (unsigned long long)size);
		check(load_checked() == v, "loads exactly");
		sim_crash(sd);
		check(load_checked() == v, "loads exactly after a crash");
	}
}
