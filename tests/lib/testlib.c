#define _GNU_SOURCE
#include "testlib.h"

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir_path[PATH_MAX];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tl_rmtree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup_tmpdir(void)
{
	/* TL_KEEP_TMPDIR=1 keeps it, to read a failed test's files. */
	if (getenv("TL_KEEP_TMPDIR") != NULL) {
		if (tmpdir_path[0] != '\0')
			fprintf(stderr, "kept %s\n", tmpdir_path);
		return;
	}
	if (tmpdir_path[0] != '\0')
		tl_rmtree(tmpdir_path);
}

const char *tl_tmpdir(void)
{
	if (tmpdir_path[0] != '\0')
		return tmpdir_path;
	const char *base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	snprintf(tmpdir_path, sizeof(tmpdir_path), "%s/sluice-test-XXXXXX", base);
	if (mkdtemp(tmpdir_path) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(cleanup_tmpdir);
	return tmpdir_path;
}

uint64_t tl_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

void tl_fill_random(uint64_t *state, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len >= 8) {
		uint64_t r = tl_rand(state);
		memcpy(p, &r, 8);
		p += 8;
		len -= 8;
	}
	if (len > 0) {
		uint64_t r = tl_rand(state);
		memcpy(p, &r, len);
	}
}
