/* `sluice log dump DIR [--json]` (tools/README.md): a partition's segment
 * files read as they are, through storage/ (the one command that does not
 * go through libsluice). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "batch.h"
#include "storage.h"

struct tally {
	bool json;
	const char *segment; /* the last one named */
	uint64_t batches, records, bytes, bad_crc;
	int64_t first, last;
	int stop_err;        /* a segment that stopped making sense */
	char stop_at[256];
};

static int on_batch(void *arg, const struct sl_dump_batch *b)
{
	struct tally *t = arg;
	bool new_segment = t->segment == NULL || strcmp(t->segment, b->segment) != 0;
	if (new_segment && !t->json)
		printf("segment %s\n", b->segment);
	t->segment = b->segment;
	if (b->err != SL_OK) {
		if (t->stop_err == SL_OK) {
			t->stop_err = b->err;
			snprintf(t->stop_at, sizeof(t->stop_at), "%s position %" PRIu64, b->segment,
				 b->pos);
		}
		if (t->json) {
			printf("%s{\"segment\":", t->batches > 0 || t->stop_err != b->err ? "," : "");
			cli_json_str(b->segment);
			printf(",\"position\":%" PRIu64 ",\"error\":\"%s\",\"bytes_left\":%" PRIu64 "}",
			       b->pos, sl_err_name(b->err), b->size);
		} else {
			printf("  stop at position %" PRIu64 ": %s (%" PRIu64 " bytes left)\n", b->pos,
			       sl_err_name(b->err), b->size);
		}
		return 0;
	}
	bool control = (b->attributes & SL_ATTR_CONTROL) != 0;
	bool zstd = (b->attributes & SL_ATTR_CODEC_MASK) == SL_CODEC_ZSTD;
	if (t->json) {
		printf("%s{\"segment\":", t->batches > 0 ? "," : "");
		cli_json_str(b->segment);
		printf(",\"position\":%" PRIu64 ",\"offset\":%" PRId64 ",\"last_offset\":%" PRId64
		       ",\"term\":%d,\"count\":%d,\"size\":%" PRIu64
		       ",\"crc_ok\":%s,\"control\":%s,\"compression\":\"%s\",\"max_timestamp\":%" PRId64
		       "}",
		       b->pos, b->base_offset, b->last_offset, b->leader_epoch, b->count, b->size,
		       b->crc_ok ? "true" : "false", control ? "true" : "false", zstd ? "zstd" : "none",
		       b->max_timestamp);
	} else {
		printf("  offset %" PRId64 "..%" PRId64 " term %d count %d size %" PRIu64
		       " crc %s%s%s\n",
		       b->base_offset, b->last_offset, b->leader_epoch, b->count, b->size,
		       b->crc_ok ? "ok" : "BAD", control ? " control" : "", zstd ? " zstd" : "");
	}
	if (t->batches == 0)
		t->first = b->base_offset;
	t->last = b->last_offset;
	t->batches++;
	t->records += (uint64_t)b->count;
	t->bytes += b->size;
	t->bad_crc += !b->crc_ok;
	return 0;
}

int cli_log(int argc, char **argv)
{
	if (argc < 1 || strcmp(argv[0], "dump") != 0)
		return cli_usage_error("log: dump is the subcommand");
	const char *dir = NULL;
	struct tally t = { .first = -1, .last = -1 };
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			t.json = true;
		else if (argv[i][0] == '-' || dir != NULL)
			return cli_usage_error("log dump: unexpected '%s'", argv[i]);
		else
			dir = argv[i];
	}
	if (dir == NULL)
		return cli_usage_error("log dump: a directory is required (a partition's, e.g. "
				       "DATA_DIR/raft/g7, or its log/)");
	/* A partition's directory holds its log in log/. */
	char logdir[4096];
	struct stat st;
	snprintf(logdir, sizeof(logdir), "%s/log", dir);
	if (stat(logdir, &st) != 0 || !S_ISDIR(st.st_mode))
		snprintf(logdir, sizeof(logdir), "%s", dir);
	if (stat(logdir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		char msg[4200];
		snprintf(msg, sizeof(msg), "%s is not a directory", logdir);
		return cli_failed(SL_ENOT_FOUND, msg);
	}
	if (t.json) {
		fputs("{\"dir\":", stdout);
		cli_json_str(logdir);
		fputs(",\"batches\":[", stdout);
	} else {
		printf("log %s\n", logdir);
	}
	char errmsg[SL_ERRMSG_SIZE];
	int rv = sl_log_dump(logdir, NULL, on_batch, &t, errmsg);
	if (t.json)
		printf("],\"count\":%" PRIu64 ",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64
		       ",\"first_offset\":%" PRId64 ",\"last_offset\":%" PRId64 ",\"bad_crc\":%" PRIu64
		       "}\n",
		       t.batches, t.records, t.bytes, t.first, t.last, t.bad_crc);
	else if (rv == SL_OK)
		printf("%" PRIu64 " batches, %" PRIu64 " records, offsets %" PRId64 "..%" PRId64
		       ", %" PRIu64 " bytes, %" PRIu64 " with a bad CRC\n",
		       t.batches, t.records, t.first, t.last, t.bytes, t.bad_crc);
	fflush(stdout);
	if (rv != SL_OK)
		return cli_failed(rv, errmsg);
	if (t.bad_crc > 0 || t.stop_err != SL_OK) {
		char msg[400];
		snprintf(msg, sizeof(msg), "%" PRIu64 " batches with a bad CRC%s%s%s", t.bad_crc,
			 t.stop_err != SL_OK ? "; a segment stops at " : "", t.stop_at,
			 t.stop_err != SL_OK ? " (see above)" : "");
		return cli_failed(SL_ELOG_CORRUPT, msg);
	}
	return 0;
}
