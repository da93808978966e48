/* A node's data directory (broker/datadir.h): creation with its parents,
 * the identity file, the lock against a second sluiced, a directory of
 * another node, a damaged identity file. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "datadir.h"
#include "errors.h"
#include "testlib.h"

/* ---- Fixtures and helpers ------------------------------------------- */

static char dir[1024];
static char idpath[1100];
static struct sl_datadir d1, d2;
static char err[SL_ERRMSG_SIZE];

static void setup(void)
{
	/* Two levels of parents that do not exist yet. */
	snprintf(dir, sizeof(dir), "%s/a/b/data", tl_tmpdir());
	snprintf(idpath, sizeof(idpath), "%s/node.id", dir);
	memset(&d1, 0, sizeof(d1));
	memset(&d2, 0, sizeof(d2));
	d1.lock_fd = -1;
	d2.lock_fd = -1;
	err[0] = '\0';
}

static void teardown(void)
{
	sl_datadir_close(&d1);
	sl_datadir_close(&d2);
}

TestSuite(datadir, .init = setup, .fini = teardown, .timeout = 30);

static void open_ok(struct sl_datadir *d, uint64_t node_id)
{
	err[0] = '\0';
	int rv = sl_datadir_open(dir, node_id, d, err);
	cr_assert_eq(rv, SL_OK, "open: %s (%s)", sl_err_name(rv), err);
	cr_assert_geq(d->lock_fd, 0);
}

/* Reads a small file whole into buf (NUL-terminated); returns its length. */
static size_t read_small(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
	size_t n = fread(buf, 1, size - 1, f);
	cr_assert_eq(ferror(f), 0);
	fclose(f);
	buf[n] = '\0';
	return n;
}

static void write_small(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "cannot create %s: %s", path, strerror(errno));
	cr_assert_eq(fputs(text, f) >= 0, true);
	cr_assert_eq(fclose(f), 0);
}

/* Creates dir and its parents, as a previous start would have. */
static void make_dir(void)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/a", tl_tmpdir());
	cr_assert_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/a/b", tl_tmpdir());
	cr_assert_eq(mkdir(path, 0755), 0);
	cr_assert_eq(mkdir(dir, 0755), 0);
}

/* ---- Tests ------------------------------------------------------------ */

Test(datadir, the_first_open_creates_the_directory_and_its_identity)
{
	struct stat st;
	cr_assert_eq(stat(dir, &st), -1, "%s exists before the test", dir);

	open_ok(&d1, 7);
	cr_expect_eq(d1.created, true);
	cr_expect_eq(d1.node_id, 7);
	cr_assert_eq(stat(dir, &st), 0, "%s: %s", dir, strerror(errno));
	cr_expect(S_ISDIR(st.st_mode));

	cr_assert_eq(strlen(d1.uuid), 36, "uuid '%s'", d1.uuid);
	uuid_t u;
	cr_expect_eq(uuid_parse(d1.uuid, u), 0, "uuid '%s' does not parse", d1.uuid);
	cr_expect_eq(uuid_is_null(u), 0);

	char text[256], want[256];
	read_small(idpath, text, sizeof(text));
	snprintf(want, sizeof(want), "node_id=7\nuuid=%s\n", d1.uuid);
	cr_expect_str_eq(text, want);

	/* No temporary file is left behind. */
	char tmp[1200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", idpath);
	cr_expect_eq(access(tmp, F_OK), -1, "%s is left behind", tmp);
}

Test(datadir, a_reopen_keeps_the_uuid_and_is_not_created)
{
	open_ok(&d1, 7);
	char uuid[37];
	memcpy(uuid, d1.uuid, sizeof(uuid));
	sl_datadir_close(&d1);
	cr_expect_eq(d1.lock_fd, -1);

	open_ok(&d1, 7);
	cr_expect_str_eq(d1.uuid, uuid);
	cr_expect_eq(d1.created, false);
	cr_expect_eq(d1.node_id, 7);
}

Test(datadir, a_second_open_while_held_is_busy_and_names_the_holder)
{
	open_ok(&d1, 1);
	/* flock locks belong to the open file description, so the second
	 * open conflicts even in the same process. */
	int rv = sl_datadir_open(dir, 1, &d2, err);
	cr_assert_eq(rv, SL_ELOCKED, "second open: %s (%s)", sl_err_name(rv), err);
	cr_expect_eq(d2.lock_fd, -1);
	cr_expect_not_null(strstr(err, "in use by another sluiced"), "errmsg: %s", err);
	char pid[64];
	snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
	cr_expect_not_null(strstr(err, pid), "errmsg '%s' lacks '%s'", err, pid);
	cr_expect_not_null(strstr(err, dir), "errmsg '%s' lacks the directory", err);

	/* The failed open left the holder's pid in the lock file. */
	char lockpath[1100], text[64], want[64];
	snprintf(lockpath, sizeof(lockpath), "%s/lock", dir);
	read_small(lockpath, text, sizeof(text));
	snprintf(want, sizeof(want), "%ld\n", (long)getpid());
	cr_expect_str_eq(text, want);
}

Test(datadir, an_open_after_close_succeeds)
{
	open_ok(&d1, 1);
	cr_assert_eq(sl_datadir_open(dir, 1, &d2, err), SL_ELOCKED, "errmsg: %s", err);
	sl_datadir_close(&d1);

	open_ok(&d2, 1);
	cr_expect_eq(d2.created, false);
	sl_datadir_close(&d2);
	open_ok(&d1, 1);
}

Test(datadir, a_directory_of_another_node_is_refused)
{
	open_ok(&d1, 1);
	char before[256];
	read_small(idpath, before, sizeof(before));
	sl_datadir_close(&d1);

	int rv = sl_datadir_open(dir, 2, &d2, err);
	cr_assert_eq(rv, SL_EINVALID_ARGUMENT, "open: %s (%s)", sl_err_name(rv), err);
	cr_expect_not_null(strstr(err, "belongs to node 1"), "errmsg: %s", err);
	cr_expect_eq(d2.lock_fd, -1);

	char after[256];
	read_small(idpath, after, sizeof(after));
	cr_expect_str_eq(after, before);

	/* The refusal released the lock: the right node opens it. */
	open_ok(&d1, 1);
}

Test(datadir, a_damaged_identity_file_is_reported_and_left_alone)
{
	static const char *const damaged[] = {
		"garbage\n",
		"",
		"node_id=1\nuuid=not-a-uuid\n",
		"node_id=0\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\n",
		"node_id=1\nuuid=0f8fad5b-d9cb-469f-a165-70867728950\n",
		"node_id=1uuid=0f8fad5b-d9cb-469f-a165-70867728950e\n",
		"node_id=1\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\nmore\n",
		"node_id=-1\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\n",
		"node_id=18446744073709551617\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\n",
		"node_id=1\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\ncluster_id=x\n",
		("node_id=1\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\n"
		 "cluster_id=0f8fad5b-d9cb-469f-a165-70867728950e"),
		("node_id=1\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\n"
		 "cluster_id=0f8fad5b-d9cb-469f-a165-70867728950e\nmore\n"),
		("node_id=1\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\n"
		 "cluster_id=0f8fad5b-d9cb-469f-a165-70867728950e\ncontroller_group=x\n"),
		("node_id=1\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\n"
		 "cluster_id=0f8fad5b-d9cb-469f-a165-70867728950e\ncontroller_group=4294967296\n"),
		("node_id=1\nuuid=0f8fad5b-d9cb-469f-a165-70867728950e\n"
		 "cluster_id=0f8fad5b-d9cb-469f-a165-70867728950e\ncontroller_group=7"),
	};
	make_dir();
	for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
		write_small(idpath, damaged[i]);
		err[0] = '\0';
		int rv = sl_datadir_open(dir, 1, &d1, err);
		cr_expect_eq(rv, SL_ELOG_CORRUPT, "'%s': %s (%s)", damaged[i], sl_err_name(rv),
			     err);
		cr_expect_eq(d1.lock_fd, -1);
		cr_expect_not_null(strstr(err, idpath), "errmsg '%s' lacks '%s'", err, idpath);

		char after[256];
		read_small(idpath, after, sizeof(after));
		cr_expect_str_eq(after, damaged[i], "node.id was changed");
		sl_datadir_close(&d1);
	}
}

Test(datadir, the_cluster_id_is_recorded_once_and_another_is_refused)
{
	static const char *const a = "6940873f-03ff-43ef-8470-531f2f1789d5";
	static const char *const b = "0f8fad5b-d9cb-469f-a165-70867728950e";
	open_ok(&d1, 3);
	cr_expect_str_eq(d1.cluster_id, "");
	cr_assert_eq(sl_datadir_set_cluster(&d1, "not-a-uuid", err), SL_EINVALID_ARGUMENT);
	cr_assert_eq(sl_datadir_set_cluster(&d1, a, err), SL_OK, "%s", err);
	cr_assert_eq(sl_datadir_set_cluster(&d1, a, err), SL_OK, "%s", err);
	char text[256], want[256];
	read_small(idpath, text, sizeof(text));
	snprintf(want, sizeof(want), "node_id=3\nuuid=%s\ncluster_id=%s\n", d1.uuid, a);
	cr_expect_str_eq(text, want);
	char uuid[37];
	memcpy(uuid, d1.uuid, sizeof(uuid));
	sl_datadir_close(&d1);

	open_ok(&d1, 3);
	cr_expect_str_eq(d1.uuid, uuid);
	cr_expect_str_eq(d1.cluster_id, a);
	cr_expect_eq(d1.created, false);
	err[0] = '\0';
	cr_assert_eq(sl_datadir_set_cluster(&d1, b, err), SL_EEXISTS);
	cr_expect_not_null(strstr(err, a), "%s", err);
	cr_expect_not_null(strstr(err, b), "%s", err);
	read_small(idpath, text, sizeof(text));
	cr_expect_str_eq(text, want, "a refused cluster id changed node.id");

	/* The controller's group comes after it, and stays across opens. */
	cr_expect(!d1.has_controller_group);
	cr_assert_eq(sl_datadir_set_controller_group(&d1, 7, err), SL_OK, "%s", err);
	sl_datadir_close(&d1);
	open_ok(&d1, 3);
	cr_expect(d1.has_controller_group);
	cr_expect_eq(d1.controller_group, 7);
	cr_expect_str_eq(d1.cluster_id, a);
	read_small(idpath, text, sizeof(text));
	snprintf(want, sizeof(want), "node_id=3\nuuid=%s\ncluster_id=%s\ncontroller_group=7\n",
		 d1.uuid, a);
	cr_expect_str_eq(text, want);
}

Test(datadir, peer_uuids_are_pinned_durably_and_another_is_refused)
{
	static const char *const a = "6940873f-03ff-43ef-8470-531f2f1789d5";
	static const char *const b = "0f8fad5b-d9cb-469f-a165-70867728950e";
	open_ok(&d1, 1);
	cr_assert_eq(d1.npeers, 0);
	cr_assert_eq(sl_datadir_pin_peer(&d1, 2, a, false, err), SL_OK, "%s", err);
	cr_assert_eq(sl_datadir_pin_peer(&d1, 2, a, false, err), SL_OK, "%s", err);
	cr_assert_eq(sl_datadir_pin_peer(&d1, 3, b, false, err), SL_OK, "%s", err);
	cr_assert_eq(sl_datadir_pin_peer(&d1, 2, b, false, err), SL_EEXISTS);
	cr_assert_not_null(strstr(err, a), "%s", err);
	cr_assert_eq(sl_datadir_pin_peer(&d1, 4, "nope", false, err), SL_EINVALID_ARGUMENT);
	sl_datadir_close(&d1);

	char path[1200], text[512], want[512];
	snprintf(path, sizeof(path), "%s/peers", dir);
	read_small(path, text, sizeof(text));
	snprintf(want, sizeof(want), "node_id=2 uuid=%s\nnode_id=3 uuid=%s\n", a, b);
	cr_expect_str_eq(text, want);
	open_ok(&d1, 1);
	cr_assert_eq(d1.npeers, 2);
	cr_expect_eq(d1.peers[0].id, 2);
	cr_expect_str_eq(d1.peers[0].uuid, a);
	cr_expect_eq(d1.peers[1].id, 3);
	cr_expect_str_eq(d1.peers[1].uuid, b);
	sl_datadir_close(&d1);

	/* A torn last line (a crash while appending) is not a pin. */
	snprintf(want, sizeof(want), "node_id=2 uuid=%s\nnode_id=3 uuid=%.10s", a, b);
	write_small(path, want);
	open_ok(&d1, 1);
	cr_expect_eq(d1.npeers, 1);
	sl_datadir_close(&d1);

	static const char *const damaged[] = {
		"node_id=2 uuid=bad\n",
		"garbage\nnode_id=2 uuid=6940873f-03ff-43ef-8470-531f2f1789d5\n",
		"node_id=0 uuid=6940873f-03ff-43ef-8470-531f2f1789d5\n",
		"node_id=2 uuid=6940873f-03ff-43ef-8470-531f2f1789d5 more\n",
	};
	for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
		write_small(path, damaged[i]);
		err[0] = '\0';
		int rv = sl_datadir_open(dir, 1, &d1, err);
		cr_expect_eq(rv, SL_ELOG_CORRUPT, "'%s': %s (%s)", damaged[i], sl_err_name(rv), err);
		cr_expect_not_null(strstr(err, path), "%s", err);
		sl_datadir_close(&d1);
	}
}

Test(datadir, a_peer_with_a_new_disk_is_pinned_again_when_replaced)
{
	static const char *const a = "6940873f-03ff-43ef-8470-531f2f1789d5";
	static const char *const b = "0f8fad5b-d9cb-469f-a165-70867728950e";
	open_ok(&d1, 1);
	cr_assert_eq(sl_datadir_pin_peer(&d1, 2, a, false, err), SL_OK, "%s", err);
	cr_assert_eq(sl_datadir_pin_peer(&d1, 3, a, false, err), SL_OK, "%s", err);
	cr_assert_eq(sl_datadir_pin_peer(&d1, 2, b, true, err), SL_OK, "%s", err);
	cr_expect_eq(d1.npeers, 2);
	cr_expect_str_eq(d1.peers[0].uuid, b);
	sl_datadir_close(&d1);
	/* The later line wins on the next start. */
	open_ok(&d1, 1);
	cr_assert_eq(d1.npeers, 2);
	cr_expect_eq(d1.peers[0].id, 2);
	cr_expect_str_eq(d1.peers[0].uuid, b);
	cr_expect_eq(d1.peers[1].id, 3);
	cr_expect_str_eq(d1.peers[1].uuid, a);
	cr_assert_eq(sl_datadir_pin_peer(&d1, 2, a, false, err), SL_EEXISTS);
	sl_datadir_close(&d1);
}
