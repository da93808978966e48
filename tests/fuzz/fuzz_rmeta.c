/* libFuzzer target for the node's term/vote store (raft/rmeta.h): the
 * input is the file as a crash or a bad disk may have left it, on the
 * simulated disk.
 *
 * sl_rmeta_open returns SL_OK or SL_ELOG_CORRUPT (SL_ENOMEM aside), never
 * crashes. SL_ELOG_CORRUPT leaves the file as it was. SL_OK cuts the file
 * to a prefix of the input and keeps it: a record put after it survives a
 * crash and a reopen, and every other group reads back as it did at the
 * first open.
 *
 * Seeds: tests/fuzz/corpus/rmeta/ (a file of two batches; one with a torn
 * tail).
 *   fuzz_rmeta -max_total_time=60 /tmp/corpus-rmeta tests/fuzz/corpus/rmeta */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "qenv.h"
#include "rmeta.h"
#include "simdisk.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#define PATH "/n/meta"
#define PROBES 64

static void closed(void *arg)
{
	*(int *)arg = 1;
}

static void close_store(struct sl_qenv *env, struct sl_rmeta *m)
{
	int done = 0;
	sl_rmeta_close(m, closed, &done);
	sl_qenv_pump(env);
	CHECK(done);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sim_disk *sd = sim_new();
	sl_vfs *vfs = sim_vfs(sd);
	CHECK(vfs->mkdir(vfs, "/n", 0755) == 0);
	int fd = vfs->open(vfs, PATH, O_RDWR | O_CREAT, 0644);
	CHECK(fd >= 0);
	CHECK(size == 0 || vfs->pwrite(vfs, fd, data, size, 0) == (ssize_t)size);
	CHECK(vfs->fdatasync(vfs, fd) == 0);
	vfs->close(vfs, fd);
	CHECK(vfs->fsync_dir(vfs, "/n") == 0 && vfs->fsync_dir(vfs, "/") == 0);

	struct sl_qenv env;
	sl_qenv_init(&env, 0, 1);
	struct sl_rmeta *m;
	char errmsg[SL_ERRMSG_SIZE];
	int rv = sl_rmeta_open(PATH, vfs, &env.base, &m, errmsg);
	uint64_t len;
	uint8_t *now = sim_read_file(sd, PATH, &len);
	CHECK(now != NULL && len <= size && (len == 0 || memcmp(now, data, len) == 0));
	free(now);
	if (rv != SL_OK) {
		CHECK(rv == SL_ELOG_CORRUPT || rv == SL_ENOMEM);
		CHECK(rv != SL_ELOG_CORRUPT || len == size);
		sim_free(sd);
		return 0;
	}
	/* Groups named in the input (record fields at every 4th byte) and a
	 * few fixed ones. */
	uint32_t probe[PROBES];
	uint64_t term[PROBES], vote[PROBES], seq;
	for (int i = 0; i < PROBES; i++) {
		size_t at = (size_t)i * 4;
		probe[i] = at + 4 <= size ? (uint32_t)data[at] | (uint32_t)data[at + 1] << 8 |
						    (uint32_t)data[at + 2] << 16 |
						    (uint32_t)data[at + 3] << 24
					  : (uint32_t)i;
		sl_rmeta_get(m, probe[i], &term[i], &vote[i], &seq);
		CHECK(sl_rmeta_durable(m, seq));
	}
	uint32_t g = probe[0] ^ 0x5a5a5a5au;
	uint64_t s;
	CHECK(sl_rmeta_put(m, g, 77, 3, &s) == SL_OK);
	sl_qenv_pump(&env);
	CHECK(sl_rmeta_durable(m, s));
	close_store(&env, m);
	sim_crash(sd);
	CHECK(sl_rmeta_open(PATH, vfs, &env.base, &m, errmsg) == SL_OK);
	uint64_t t, v;
	sl_rmeta_get(m, g, &t, &v, &seq);
	CHECK(t == 77 && v == 3);
	for (int i = 0; i < PROBES; i++) {
		if (probe[i] == g)
			continue;
		sl_rmeta_get(m, probe[i], &t, &v, &seq);
		CHECK(t == term[i] && v == vote[i]);
	}
	close_store(&env, m);
	sim_free(sd);
	return 0;
}
