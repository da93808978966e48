/* The simulated disk's model (tests/lib/simdisk.h): what survives a crash,
 * torn writes, fault injection and the namespace. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simdisk.h"

static sim_disk *sd;
static sl_vfs *vfs;

static void setup(void)
{
	sd = sim_new();
	vfs = sim_vfs(sd);
	cr_assert_eq(vfs->mkdir(vfs, "/sim", 0755), 0);
}

static void teardown(void)
{
	sim_free(sd);
}

TestSuite(simdisk, .init = setup, .fini = teardown, .timeout = 10);

/* Creates path with contents s; fdatasync and fsync_dir on request.
 * Returns the open handle. */
static int make_file(const char *path, const char *s, bool sync, bool dirsync)
{
	int fd = vfs->open(vfs, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0, "open %s: %d", path, fd);
	size_t len = strlen(s);
	cr_assert_eq(vfs->pwrite(vfs, fd, s, len, 0), (ssize_t)len);
	if (sync)
		cr_assert_eq(vfs->fdatasync(vfs, fd), 0);
	if (dirsync) {
		char dir[256];
		snprintf(dir, sizeof(dir), "%s", path);
		*strrchr(dir, '/') = '\0';
		cr_assert_eq(vfs->fsync_dir(vfs, dir), 0);
	}
	return fd;
}

/* Asserts that path holds exactly s. */
static void assert_contents(const char *path, const char *s)
{
	uint64_t len = 0;
	uint8_t *data = sim_read_file(sd, path, &len);
	cr_assert_not_null(data, "%s is missing", path);
	cr_assert_eq(len, strlen(s), "%s: length %llu, want %zu", path,
		     (unsigned long long)len, strlen(s));
	cr_assert_eq(memcmp(data, s, len), 0, "%s: wrong bytes", path);
	free(data);
}

Test(simdisk, unsynced_write_vanishes_on_crash)
{
	int fd = make_file("/sim/a", "", true, true);
	cr_assert_eq(vfs->pwrite(vfs, fd, "hello", 5, 0), 5);
	assert_contents("/sim/a", "hello");
	sim_crash(sd);
	cr_assert(sim_exists(sd, "/sim/a"));
	assert_contents("/sim/a", "");
}

Test(simdisk, synced_write_survives_crash)
{
	int fd = make_file("/sim/a", "hello", true, true);
	cr_assert_eq(vfs->pwrite(vfs, fd, " world", 6, 5), 6);
	sim_crash(sd);
	assert_contents("/sim/a", "hello");
}

Test(simdisk, synced_truncate_and_fallocate_survive)
{
	int fd = make_file("/sim/a", "hello", true, true);
	cr_assert_eq(vfs->ftruncate(vfs, fd, 2), 0);
	cr_assert_eq(vfs->fdatasync(vfs, fd), 0);
	cr_assert_eq(vfs->fallocate(vfs, fd, 0, 4), 0);
	uint64_t size = 0;
	cr_assert_eq(vfs->fsize(vfs, fd, &size), 0);
	cr_assert_eq(size, 4);
	sim_crash(sd);
	assert_contents("/sim/a", "he");
}

Test(simdisk, created_file_without_dir_sync_vanishes)
{
	make_file("/sim/a", "hello", true, false);
	cr_assert(sim_exists(sd, "/sim/a"));
	sim_crash(sd);
	cr_assert_not(sim_exists(sd, "/sim/a"));
	cr_assert_eq(vfs->open(vfs, "/sim/a", O_RDONLY, 0), -ENOENT);
}

Test(simdisk, rename_is_durable_after_dir_sync)
{
	make_file("/sim/a", "old", true, true);
	make_file("/sim/tmp", "new", true, true);

	/* Not synced: the crash undoes the rename. */
	cr_assert_eq(vfs->rename(vfs, "/sim/tmp", "/sim/a"), 0);
	assert_contents("/sim/a", "new");
	cr_assert_not(sim_exists(sd, "/sim/tmp"));
	sim_crash(sd);
	assert_contents("/sim/a", "old");
	assert_contents("/sim/tmp", "new");

	/* Synced: the target is replaced, the source is gone. */
	cr_assert_eq(vfs->rename(vfs, "/sim/tmp", "/sim/a"), 0);
	cr_assert_eq(vfs->fsync_dir(vfs, "/sim"), 0);
	sim_crash(sd);
	assert_contents("/sim/a", "new");
	cr_assert_not(sim_exists(sd, "/sim/tmp"));
}

Test(simdisk, rename_across_directories)
{
	cr_assert_eq(vfs->mkdir(vfs, "/sim/b", 0755), 0);
	make_file("/sim/a", "x", true, true);
	cr_assert_eq(vfs->rename(vfs, "/sim/a", "/sim/b/a"), 0);
	/* Only the target directory synced: the file is in both after a crash. */
	cr_assert_eq(vfs->fsync_dir(vfs, "/sim/b"), 0);
	sim_crash(sd);
	assert_contents("/sim/a", "x");
	assert_contents("/sim/b/a", "x");
	cr_assert_eq(vfs->rename(vfs, "/sim/missing", "/sim/c"), -ENOENT);
	cr_assert_eq(vfs->rename(vfs, "/sim/a", "/nodir/c"), -ENOENT);
	cr_assert_eq(vfs->rename(vfs, "/sim/a", "/sim/a"), 0);
	assert_contents("/sim/a", "x");
}

Test(simdisk, unlink_is_durable_after_dir_sync)
{
	int fd = make_file("/sim/a", "data", true, true);
	cr_assert_eq(vfs->unlink(vfs, "/sim/a"), 0);
	cr_assert_not(sim_exists(sd, "/sim/a"));
	/* The open handle still reads the unlinked file. */
	char buf[8];
	cr_assert_eq(vfs->pread(vfs, fd, buf, sizeof(buf), 0), 4);
	sim_crash(sd);
	assert_contents("/sim/a", "data");

	cr_assert_eq(vfs->unlink(vfs, "/sim/a"), 0);
	cr_assert_eq(vfs->fsync_dir(vfs, "/sim"), 0);
	sim_crash(sd);
	cr_assert_not(sim_exists(sd, "/sim/a"));
	cr_assert_eq(vfs->unlink(vfs, "/sim/a"), -ENOENT);
}

Test(simdisk, torn_write_keeps_exactly_the_prefix)
{
	int fd = make_file("/sim/a", "01234", true, true);
	cr_assert_eq(vfs->pwrite(vfs, fd, "ABCDEFGHIJ", 10, 5), 10);
	cr_assert_eq(sim_last_unsynced_write_len(sd), 10);
	sim_crash_tear(sd, 3);
	assert_contents("/sim/a", "01234ABC");
	cr_assert_eq(sim_last_unsynced_write_len(sd), 0);
}

Test(simdisk, torn_write_is_the_newest_unsynced_one)
{
	int a = make_file("/sim/a", "aaaa", true, true);
	int b = make_file("/sim/b", "bbbb", true, true);
	cr_assert_eq(vfs->pwrite(vfs, a, "XYZ", 3, 4), 3);
	cr_assert_eq(vfs->pwrite(vfs, b, "12345", 5, 4), 5);
	cr_assert_eq(sim_last_unsynced_write_len(sd), 5);
	/* Syncing b leaves the write to a as the newest unsynced one. */
	cr_assert_eq(vfs->fdatasync(vfs, b), 0);
	cr_assert_eq(sim_last_unsynced_write_len(sd), 3);
	sim_crash_tear(sd, 2);
	assert_contents("/sim/a", "aaaaXY");
	assert_contents("/sim/b", "bbbb12345");
}

Test(simdisk, torn_write_before_file_end_and_gap)
{
	int fd = make_file("/sim/a", "0123456789", true, true);
	/* Inside the file: the tail beyond the prefix keeps the old bytes. */
	cr_assert_eq(vfs->pwrite(vfs, fd, "abcd", 4, 2), 4);
	sim_crash_tear(sd, 1);
	assert_contents("/sim/a", "01a3456789");

	/* Past the end: the gap reads as zeros. */
	fd = vfs->open(vfs, "/sim/a", O_RDWR, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(vfs->pwrite(vfs, fd, "xy", 2, 12), 2);
	sim_crash_tear(sd, 2);
	uint64_t len = 0;
	uint8_t *data = sim_read_file(sd, "/sim/a", &len);
	cr_assert_eq(len, 14);
	cr_assert_eq(memcmp(data, "01a3456789\0\0xy", 14), 0);
	free(data);
}

Test(simdisk, torn_write_to_unreachable_file_vanishes)
{
	int fd = make_file("/sim/a", "", false, false);
	cr_assert_eq(vfs->pwrite(vfs, fd, "abc", 3, 0), 3);
	sim_crash_tear(sd, 2);
	cr_assert_not(sim_exists(sd, "/sim/a"));
}

Test(simdisk, fail_after_fails_every_later_operation)
{
	uint64_t ops0 = sim_ops(sd);
	int fd = make_file("/sim/a", "", false, false); /* open, pwrite(0) */
	cr_assert_eq(sim_ops(sd), ops0 + 2);

	sim_fail_after(sd, 2, ENOSPC);
	cr_assert_eq(vfs->pwrite(vfs, fd, "a", 1, 0), 1);
	cr_assert_eq(vfs->pwrite(vfs, fd, "b", 1, 1), 1);
	cr_assert_eq(vfs->pwrite(vfs, fd, "c", 1, 2), -ENOSPC);
	cr_assert_eq(vfs->fdatasync(vfs, fd), -ENOSPC);
	cr_assert_eq(vfs->mkdir(vfs, "/sim/d", 0755), -ENOSPC);
	cr_assert_not(sim_exists(sd, "/sim/d"));
	assert_contents("/sim/a", "ab");
	cr_assert_eq(sim_ops(sd), ops0 + 7);

	sim_fail_after(sd, -1, 0);
	cr_assert_eq(vfs->pwrite(vfs, fd, "c", 1, 2), 1);
	assert_contents("/sim/a", "abc");

	sim_fail_after(sd, 0, EIO);
	cr_assert_eq(vfs->open(vfs, "/sim/a", O_RDONLY, 0), -EIO);
	sim_fail_after(sd, -1, 0);
}

Test(simdisk, crash_after_kills_the_disk_until_crash)
{
	int fd = make_file("/sim/a", "abc", true, true);
	sim_crash_after(sd, 1);
	cr_assert_eq(vfs->pwrite(vfs, fd, "d", 1, 3), 1);
	cr_assert_eq(vfs->fdatasync(vfs, fd), -EIO);
	cr_assert_eq(vfs->fdatasync(vfs, fd), -EIO);
	cr_assert_eq(vfs->open(vfs, "/sim/a", O_RDONLY, 0), -EIO);
	cr_assert_eq(vfs->close(vfs, fd), -EIO);
	sim_crash(sd);
	assert_contents("/sim/a", "abc");
	fd = vfs->open(vfs, "/sim/a", O_RDONLY, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(vfs->close(vfs, fd), 0);
}

Test(simdisk, crash_disarms_unfired_crash_after)
{
	sim_crash_after(sd, 5);
	sim_crash(sd);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(vfs->fsync_dir(vfs, "/sim"), 0);
}

Test(simdisk, handles_invalid_after_crash)
{
	int fd = make_file("/sim/a", "abc", true, true);
	sim_crash(sd);
	char buf[4];
	cr_assert_eq(vfs->pread(vfs, fd, buf, sizeof(buf), 0), -EBADF);
	cr_assert_eq(vfs->pwrite(vfs, fd, "x", 1, 0), -EBADF);
	cr_assert_eq(vfs->fdatasync(vfs, fd), -EBADF);
	/* A handle opened after the crash does not revive the old one. */
	int fd2 = vfs->open(vfs, "/sim/a", O_RDONLY, 0);
	cr_assert_geq(fd2, 0);
	cr_assert_neq(fd2, fd);
	cr_assert_eq(vfs->pread(vfs, fd, buf, sizeof(buf), 0), -EBADF);
	cr_assert_eq(vfs->close(vfs, fd), -EBADF);
	cr_assert_eq(vfs->pread(vfs, fd2, buf, sizeof(buf), 0), 3);
	cr_assert_eq(vfs->close(vfs, fd2), 0);
	cr_assert_eq(vfs->close(vfs, fd2), -EBADF);
}

struct names {
	char v[8][32];
	int n;
	int stop_at;
};

static int collect(void *arg, const char *name)
{
	struct names *nm = arg;
	cr_assert_lt(nm->n, 8);
	snprintf(nm->v[nm->n++], sizeof(nm->v[0]), "%s", name);
	return nm->n == nm->stop_at ? 42 : 0;
}

static bool has_name(const struct names *nm, const char *name)
{
	for (int i = 0; i < nm->n; i++) {
		if (strcmp(nm->v[i], name) == 0)
			return true;
	}
	return false;
}

Test(simdisk, list_dir_shows_current_files_and_subdirs)
{
	make_file("/sim/a", "", false, false);
	make_file("/sim/b", "", false, true);
	cr_assert_eq(vfs->mkdir(vfs, "/sim/sub", 0755), 0);
	make_file("/sim/sub/deep", "", false, true);
	cr_assert_eq(vfs->unlink(vfs, "/sim/b"), 0);
	make_file("/sim/c", "", false, false);

	struct names nm = {0};
	cr_assert_eq(vfs->list_dir(vfs, "/sim", collect, &nm), 0);
	cr_assert_eq(nm.n, 3);
	cr_assert(has_name(&nm, "a"));
	cr_assert(has_name(&nm, "c"));
	cr_assert(has_name(&nm, "sub"));

	/* After a crash: the durable view (b, the directory survives). */
	sim_crash(sd);
	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(vfs->list_dir(vfs, "/sim/", collect, &nm), 0);
	cr_assert_eq(nm.n, 3);
	cr_assert(has_name(&nm, "a"));
	cr_assert(has_name(&nm, "b"));
	cr_assert(has_name(&nm, "sub"));

	memset(&nm, 0, sizeof(nm));
	nm.stop_at = 2;
	cr_assert_eq(vfs->list_dir(vfs, "/sim", collect, &nm), 42);
	cr_assert_eq(nm.n, 2);

	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(vfs->list_dir(vfs, "/", collect, &nm), 0);
	cr_assert_eq(nm.n, 1);
	cr_assert_str_eq(nm.v[0], "sim");

	cr_assert_eq(vfs->list_dir(vfs, "/nope", collect, &nm), -ENOENT);
	cr_assert_eq(vfs->list_dir(vfs, "/sim/a", collect, &nm), -ENOTDIR);
}

static int unlink_each(void *arg, const char *name)
{
	char path[64];
	(void)arg;
	snprintf(path, sizeof(path), "/sim/%s", name);
	return vfs->unlink(vfs, path) == 0 ? 0 : 1;
}

Test(simdisk, list_dir_callback_may_use_the_vfs)
{
	make_file("/sim/a", "", false, false);
	make_file("/sim/b", "", false, false);
	cr_assert_eq(vfs->list_dir(vfs, "/sim", unlink_each, NULL), 0);
	cr_assert_not(sim_exists(sd, "/sim/a"));
	cr_assert_not(sim_exists(sd, "/sim/b"));
}

Test(simdisk, open_and_mkdir_errors)
{
	cr_assert_eq(vfs->open(vfs, "/sim/a", O_RDWR, 0), -ENOENT);
	cr_assert_eq(vfs->open(vfs, "/nodir/a", O_RDWR | O_CREAT, 0644), -ENOENT);
	cr_assert_eq(vfs->open(vfs, "/sim", O_RDONLY, 0), -EISDIR);
	int fd = make_file("/sim/a", "abc", false, false);
	cr_assert_eq(vfs->open(vfs, "/sim/a", O_RDWR | O_CREAT | O_EXCL, 0644), -EEXIST);
	int fd2 = vfs->open(vfs, "/sim/a", O_RDWR | O_CREAT, 0644);
	cr_assert_geq(fd2, 0);
	assert_contents("/sim/a", "abc");
	int fd3 = vfs->open(vfs, "/sim/a", O_WRONLY | O_TRUNC, 0);
	cr_assert_geq(fd3, 0);
	assert_contents("/sim/a", "");
	cr_assert(fd != fd2 && fd2 != fd3 && fd != fd3);

	cr_assert_eq(vfs->mkdir(vfs, "/sim", 0755), -EEXIST);
	cr_assert_eq(vfs->mkdir(vfs, "/sim/a", 0755), -EEXIST);
	cr_assert_eq(vfs->mkdir(vfs, "/x/y", 0755), -ENOENT);
	cr_assert_eq(vfs->fsync_dir(vfs, "/x"), -ENOENT);
	cr_assert_eq(vfs->unlink(vfs, "/sim"), -EISDIR);
	cr_assert_eq(vfs->rename(vfs, "/sim", "/other"), -ENOTSUP);
	cr_assert_eq(vfs->rename(vfs, "/sim/a", "/sim"), -EISDIR);
}

Test(simdisk, access_modes_are_checked)
{
	make_file("/sim/a", "abc", true, true);
	int ro = vfs->open(vfs, "/sim/a", O_RDONLY, 0);
	int wo = vfs->open(vfs, "/sim/a", O_WRONLY, 0);
	cr_assert_geq(ro, 0);
	cr_assert_geq(wo, 0);
	char buf[4];
	cr_assert_eq(vfs->pwrite(vfs, ro, "x", 1, 0), -EBADF);
	cr_assert_eq(vfs->ftruncate(vfs, ro, 0), -EINVAL);
	cr_assert_eq(vfs->fallocate(vfs, ro, 0, 10), -EBADF);
	cr_assert_eq(vfs->pread(vfs, wo, buf, 1, 0), -EBADF);
	cr_assert_eq(vfs->fdatasync(vfs, ro), 0);
}

Test(simdisk, pread_is_short_at_eof)
{
	int fd = make_file("/sim/a", "hello", false, false);
	char buf[16];
	cr_assert_eq(vfs->pread(vfs, fd, buf, sizeof(buf), 0), 5);
	cr_assert_eq(memcmp(buf, "hello", 5), 0);
	cr_assert_eq(vfs->pread(vfs, fd, buf, sizeof(buf), 3), 2);
	cr_assert_eq(memcmp(buf, "lo", 2), 0);
	cr_assert_eq(vfs->pread(vfs, fd, buf, sizeof(buf), 5), 0);
	cr_assert_eq(vfs->pread(vfs, fd, buf, sizeof(buf), 100), 0);
}

Test(simdisk, fallocate_extends_with_zeros_and_never_shrinks)
{
	int fd = make_file("/sim/a", "hello", false, false);
	uint64_t size = 0;
	cr_assert_eq(vfs->fallocate(vfs, fd, 0, 3), 0);
	cr_assert_eq(vfs->fsize(vfs, fd, &size), 0);
	cr_assert_eq(size, 5);
	cr_assert_eq(vfs->fallocate(vfs, fd, 4, 4), 0);
	cr_assert_eq(vfs->fsize(vfs, fd, &size), 0);
	cr_assert_eq(size, 8);
	uint64_t len = 0;
	uint8_t *data = sim_read_file(sd, "/sim/a", &len);
	cr_assert_eq(len, 8);
	cr_assert_eq(memcmp(data, "hello\0\0\0", 8), 0);
	free(data);
	/* A shrink and regrow reads zeros, not the old bytes. */
	cr_assert_eq(vfs->ftruncate(vfs, fd, 1), 0);
	cr_assert_eq(vfs->ftruncate(vfs, fd, 3), 0);
	data = sim_read_file(sd, "/sim/a", &len);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(data, "h\0\0", 3), 0);
	free(data);
}

Test(simdisk, corrupt_byte_flips_current_and_durable)
{
	int fd = make_file("/sim/a", "abc", true, true);
	cr_assert_eq(sim_corrupt_byte(sd, "/sim/a", 1, 0x20), 0);
	assert_contents("/sim/a", "aBc");
	cr_assert_eq(vfs->close(vfs, fd), 0);
	sim_crash(sd);
	assert_contents("/sim/a", "aBc");
	cr_assert_eq(sim_corrupt_byte(sd, "/sim/a", 3, 1), -EINVAL);
	cr_assert_eq(sim_corrupt_byte(sd, "/sim/zz", 0, 1), -ENOENT);
	cr_assert_null(sim_read_file(sd, "/sim/zz", NULL));
	cr_assert(sim_exists(sd, "/sim"));
}

static void *writer(void *arg)
{
	const char *path = arg;
	int fd = vfs->open(vfs, path, O_RDWR | O_CREAT, 0644);
	if (fd < 0)
		return (void *)1;
	for (uint64_t i = 0; i < 1000; i++) {
		if (vfs->pwrite(vfs, fd, "x", 1, i) != 1)
			return (void *)1;
		if (i % 100 == 0 && vfs->fdatasync(vfs, fd) != 0)
			return (void *)1;
	}
	return vfs->close(vfs, fd) == 0 ? NULL : (void *)1;
}

Test(simdisk, concurrent_use_is_safe)
{
	pthread_t t[4];
	char paths[4][32];
	for (int i = 0; i < 4; i++) {
		snprintf(paths[i], sizeof(paths[i]), "/sim/f%d", i);
		cr_assert_eq(pthread_create(&t[i], NULL, writer, paths[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *res;
		cr_assert_eq(pthread_join(t[i], &res), 0);
		cr_assert_null(res);
		uint64_t len = 0;
		uint8_t *data = sim_read_file(sd, paths[i], &len);
		cr_assert_eq(len, 1000);
		free(data);
	}
}
