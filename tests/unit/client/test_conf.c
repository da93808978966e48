/* libsluice without a cluster: configuration properties checked on set
 * (every refusal names its key), the error names and flags that come from
 * proto/errors.def, and calls refused before they start. */
#include <criterion/criterion.h>
#include <string.h>

#include "internal.h"
#include "sluice.h"

TestSuite(conf, .timeout = 10);

static char err[256];

/* Sets key=value on a fresh configuration; returns what set returned. */
static sluice_err_t set1(const char *key, const char *value)
{
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_not_null(conf);
	err[0] = '\0';
	sluice_err_t rv = sluice_conf_set(conf, key, value, err, sizeof(err));
	sluice_conf_destroy(conf);
	return rv;
}

static void refused(const char *key, const char *value, const char *text)
{
	cr_assert_eq(set1(key, value), SLUICE_ERR_INVALID_ARGUMENT, "%s=%s taken", key, value);
	cr_assert(strstr(err, text) != NULL, "%s=%s: '%s' lacks '%s'", key, value, err, text);
}

Test(conf, takes_every_known_key_with_a_good_value)
{
	cr_assert_eq(set1("bootstrap.servers", "127.0.0.1:9092"), SLUICE_OK, "%s", err);
	cr_assert_eq(set1("bootstrap.servers", "a:1,b.example:65535,[::1]:9092"), SLUICE_OK, "%s",
		     err);
	cr_assert_eq(set1("client.id", "orders-admin"), SLUICE_OK, "%s", err);
	cr_assert_eq(set1("request.timeout.ms", "1"), SLUICE_OK, "%s", err);
	cr_assert_eq(set1("request.timeout.ms", "3600000"), SLUICE_OK, "%s", err);
	cr_assert_eq(set1("socket.timeout.ms", "250"), SLUICE_OK, "%s", err);
	cr_assert_eq(set1("max.response.bytes", "256"), SLUICE_OK, "%s", err);
	cr_assert_eq(set1("max.response.bytes", "1073741824"), SLUICE_OK, "%s", err);
}

Test(conf, refuses_unknown_keys_naming_them)
{
	refused("bootstrap.server", "x:1", "unknown property 'bootstrap.server'");
	refused("", "x", "unknown property ''");
	refused("ack", "all", "unknown property 'ack'");
}

Test(conf, takes_and_checks_the_producer_and_consumer_keys)
{
	static const char *const good[][2] = {
		{ "acks", "all" },		{ "acks", "-1" },
		{ "acks", "1" },		{ "acks", "0" },
		{ "linger.ms", "0" },		{ "linger.ms", "60000" },
		{ "batch.bytes", "1024" },	{ "batch.bytes", "16777216" },
		{ "compression", "zstd" },	{ "compression", "none" },
		{ "compression.level", "19" },	{ "enable.idempotence", "false" },
		{ "delivery.timeout.ms", "1" }, { "buffer.bytes", "1048576" },
		{ "buffer.block.ms", "0" },	{ "max.in.flight", "5" },
		{ "auto.offset.reset", "none" }, { "fetch.wait.ms", "0" },
		{ "fetch.partition.bytes", "1024" }, { "fetch.buffer.bytes", "1099511627776" },
		{ "enable.auto.commit", "false" }, { "auto.commit.interval.ms", "1" },
		{ "group.instance.id", "host-7" }, { "group.assignor", "range" },
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(set1(good[i][0], good[i][1]), SLUICE_OK, "%s=%s: %s", good[i][0],
			     good[i][1], err);
	refused("acks", "2", "acks: '2' is not all, 1 or 0");
	refused("compression", "gzip", "compression: 'gzip' is not zstd or none");
	refused("enable.idempotence", "yes", "enable.idempotence: 'yes' is not true or false");
	refused("auto.offset.reset", "smallest", "is not earliest, latest or none");
	refused("linger.ms", "60001", "linger.ms: '60001' is not a whole number in 0..60000");
	refused("batch.bytes", "1023", "batch.bytes");
	refused("compression.level", "0", "compression.level");
	refused("max.in.flight", "6", "max.in.flight");
	refused("buffer.bytes", "-1", "buffer.bytes");
	refused("fetch.buffer.bytes", "1099511627777", "fetch.buffer.bytes");
	refused("enable.auto.commit", "1", "enable.auto.commit: '1' is not true or false");
	refused("auto.commit.interval.ms", "0", "auto.commit.interval.ms");
	refused("group.assignor", "sticky", "group.assignor: 'sticky' is not uniform or range");
	refused("group.instance.id",
		"0123456789012345678901234567890123456789012345678901234567890123456789",
		"group.instance.id: at most 64 bytes");
}

/* Kafka's clients/src/test/.../UtilsTest: the same keys must hash the
 * same, so that a key lands in the partition Kafka's clients pick. */
Test(conf, keys_hash_as_kafkas_murmur2)
{
	static const struct {
		const char *key;
		int32_t hash;
	} v[] = {
		{ "21", -973932308 },
		{ "foobar", -790332482 },
		{ "a-little-bit-long-string", -985981536 },
		{ "a-little-bit-longer-string", -1486304829 },
		{ "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971 },
		{ "abc", 479470107 },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		cr_assert_eq((int32_t)cl_murmur2(v[i].key, strlen(v[i].key)), v[i].hash, "%s",
			     v[i].key);
	/* Positive (the sign bit cleared, as Kafka's toPositive), then modulo. */
	cr_assert_eq(cl_partition_for_key("21", 2, 1000), (int32_t)((uint32_t)-973932308 & 0x7fffffff) % 1000);
	cr_assert_eq(cl_partition_for_key("abc", 3, 7), 479470107 % 7);
	for (int n = 1; n < 50; n++)
		cr_assert_lt(cl_partition_for_key("foobar", 6, n), n);
}

Test(conf, a_producer_without_a_cluster_fails_on_metadata_within_its_block_time)
{
	sluice_conf_t *conf = sluice_conf_new();
	/* Port 1 refuses: the topic's metadata never comes. */
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", err, sizeof(err)),
		     SLUICE_OK);
	cr_assert_eq(sluice_conf_set(conf, "buffer.block.ms", "300", err, sizeof(err)), SLUICE_OK);
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	sluice_producer_t *p = sluice_producer_new(cl);
	cr_assert_not_null(p);
	cr_assert_eq(sluice_produce(p, NULL, 0, NULL, 0, "v", 1, NULL, NULL),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_produce(p, "t", -2, NULL, 0, "v", 1, NULL, NULL),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_produce(p, "t", 0, NULL, 0, NULL, 3, NULL, NULL),
		     SLUICE_ERR_INVALID_ARGUMENT);
	sluice_err_t rv = sluice_produce(p, "t", SLUICE_PARTITION_ANY, "k", 1, "v", 1, NULL, NULL);
	cr_assert(rv == SLUICE_ERR_TIMED_OUT || rv == SLUICE_ERR_IO, "%s", sluice_err_name(rv));
	cr_assert_eq(sluice_producer_flush(p, 0), SLUICE_OK); /* nothing was taken */
	sluice_producer_close(p);
	/* A group id is 1 to 255 bytes. */
	char longid[300];
	memset(longid, 'g', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	cr_assert_null(sluice_consumer_new(cl, "", NULL, NULL));
	cr_assert_null(sluice_consumer_new(cl, longid, NULL, NULL));
	/* Without a group: no subscription, no commit. */
	sluice_consumer_t *c = sluice_consumer_new(cl, NULL, NULL, NULL);
	cr_assert_not_null(c);
	const char *topics[] = { "t" };
	cr_assert_eq(sluice_subscribe(c, topics, 1), SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_commit(c, NULL, NULL, NULL), SLUICE_ERR_INVALID_ARGUMENT);
	sluice_consumer_close(c);
	c = sluice_consumer_new(cl, NULL, NULL, NULL);
	cr_assert_not_null(c);
	sluice_msg_t *m = (sluice_msg_t *)1;
	cr_assert_eq(sluice_poll(c, 10, &m), SLUICE_ERR_TIMED_OUT);
	cr_assert_null(m);
	cr_assert_eq(sluice_seek(c, "t", 0, SLUICE_OFFSET, -1), SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_seek(c, "t", 0, SLUICE_EARLIEST, 0), SLUICE_ERR_UNKNOWN_TOPIC);
	sluice_consumer_close(c);
	sluice_client_destroy(cl);
}

Test(conf, refuses_bad_bootstrap_lists)
{
	refused("bootstrap.servers", "", "bootstrap.servers: empty");
	refused("bootstrap.servers", "nonsense", "bootstrap.servers: 'nonsense' is not host:port");
	refused("bootstrap.servers", "a:1,b", "'b' is not host:port");
	refused("bootstrap.servers", "a:1,", "bootstrap.servers");
	refused("bootstrap.servers", ":9092", "is not host:port");
	refused("bootstrap.servers", "a:", "is not host:port");
	refused("bootstrap.servers", "a:0", "port out of range");
	refused("bootstrap.servers", "a:70000", "bootstrap.servers");
	refused("bootstrap.servers", "a:12x", "bad port");
	refused("bootstrap.servers", "a:-1", "bad port");
	refused("bootstrap.servers", "::1:9092", "an IPv6 address goes in brackets");
	refused("bootstrap.servers", "[]:9092", "has no host");
	char big[400];
	memset(big, 'h', sizeof(big));
	memcpy(big + sizeof(big) - 6, ":9092", 6);
	refused("bootstrap.servers", big, "host name too long");
}

Test(conf, refuses_numbers_out_of_range_or_with_units)
{
	refused("request.timeout.ms", "0", "request.timeout.ms: '0' is not a whole number in 1..3600000");
	refused("request.timeout.ms", "5s", "request.timeout.ms");
	refused("request.timeout.ms", "", "request.timeout.ms");
	refused("request.timeout.ms", "-5", "request.timeout.ms");
	refused("request.timeout.ms", "3600001", "request.timeout.ms");
	refused("request.timeout.ms", "99999999999999999999999", "request.timeout.ms");
	refused("socket.timeout.ms", "9", "socket.timeout.ms");
	refused("max.response.bytes", "255", "max.response.bytes");
	refused("max.response.bytes", "2G", "max.response.bytes");
	char id[200];
	memset(id, 'c', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	refused("client.id", id, "client.id: at most");
}

Test(conf, a_refused_value_leaves_the_last_good_one)
{
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", "a:1,b:2", err, sizeof(err)),
		     SLUICE_OK);
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", "a:1,b", err, sizeof(err)),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_conf_set(conf, NULL, "x", err, sizeof(err)),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_conf_set(conf, "client.id", NULL, NULL, 0),
		     SLUICE_ERR_INVALID_ARGUMENT);
	/* The client takes conf only on success. */
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	sluice_client_destroy(cl);
}

Test(conf, error_names_and_flags_come_from_the_table)
{
	cr_assert_str_eq(sluice_err_name(SLUICE_OK), "OK");
	cr_assert_str_eq(sluice_err_name(SLUICE_ERR_TOPIC_EXISTS), "TOPIC_ALREADY_EXISTS");
	cr_assert_str_eq(sluice_err_name(6), "NOT_LEADER");
	cr_assert_str_eq(sluice_err_name(41), "NOT_CONTROLLER");
	cr_assert_str_eq(sluice_err_name(123456), "UNKNOWN_CODE");
	cr_assert_str_eq(sluice_strerror(SLUICE_ERR_INVALID_REPLICATION_FACTOR),
			 "invalid replication factor");
	cr_assert(sluice_err_is_retriable(6));     /* NOT_LEADER */
	cr_assert(sluice_err_is_retriable(41));    /* NOT_CONTROLLER */
	cr_assert(sluice_err_is_retriable(1009));  /* NOT_READY */
	cr_assert(sluice_err_is_retriable(SLUICE_ERR_TIMED_OUT));
	cr_assert(!sluice_err_is_retriable(SLUICE_OK));
	cr_assert(!sluice_err_is_retriable(SLUICE_ERR_TOPIC_EXISTS));
	cr_assert(!sluice_err_is_retriable(SLUICE_ERR_MESSAGE_TOO_LARGE));
	cr_assert(!sluice_err_is_retriable(123456));
}

Test(conf, calls_with_bad_arguments_never_start)
{
	sluice_conf_t *conf = sluice_conf_new();
	/* Nothing listens on port 1: a call that started would fail later. */
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", err, sizeof(err)),
		     SLUICE_OK);
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	sluice_admin_t *a = sluice_admin_new(cl);
	sluice_report_t *r = (sluice_report_t *)&r;
	cr_assert_eq(sluice_topic_create(a, "x", 0, 1, NULL, NULL, NULL, &r),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_null(r, "*out is set even when the call does not start");
	cr_assert_eq(sluice_topic_create(a, "x", 1, 0, NULL, NULL, NULL, NULL),
		     SLUICE_ERR_INVALID_ARGUMENT);
	const char *odd[] = { "retention.ms", NULL };
	cr_assert_eq(sluice_topic_create(a, "x", 1, 1, odd, NULL, NULL, NULL),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_topic_create(a, NULL, 1, 1, NULL, NULL, NULL, NULL),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_topic_describe(a, NULL, NULL, NULL, NULL), SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_topic_delete(NULL, "x", NULL, NULL, NULL), SLUICE_ERR_INVALID_ARGUMENT);
	/* Accessors of a missing report answer "nothing". */
	cr_assert_eq(sluice_report_partition_count(NULL), 0);
	cr_assert_eq(sluice_report_leader(NULL, 0), -1);
	cr_assert_eq(sluice_report_under_replicated(NULL), 0);
	cr_assert_null(sluice_report_under_replicated_topic(NULL, 0));
	cr_assert_str_eq(sluice_report_errmsg(NULL), "");
	sluice_report_destroy(NULL);
	sluice_admin_destroy(a);
	sluice_client_destroy(cl);
}

/* The deadline holds without any node: connection refused is retried
 * until request.timeout.ms, then reported with the cause. */
Test(conf, an_unreachable_node_fails_at_the_deadline)
{
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", err, sizeof(err)),
		     SLUICE_OK);
	cr_assert_eq(sluice_conf_set(conf, "request.timeout.ms", "400", err, sizeof(err)),
		     SLUICE_OK);
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	sluice_admin_t *a = sluice_admin_new(cl);
	sluice_report_t *r = NULL;
	cr_assert_eq(sluice_topic_list(a, NULL, NULL, &r), SLUICE_ERR_IO);
	cr_assert_not_null(r);
	cr_assert(strstr(sluice_report_errmsg(r), "127.0.0.1:1: connect") != NULL, "%s",
		  sluice_report_errmsg(r));
	sluice_report_destroy(r);
	sluice_admin_destroy(a);
	sluice_client_destroy(cl);
}

Test(conf, the_public_error_numbers_are_the_tables)
{
	static const struct {
		int code;
		const char *name;
	} pub[] = {
		{ SLUICE_ERR_COORDINATOR_LOADING, "COORDINATOR_LOADING" },
		{ SLUICE_ERR_NOT_COORDINATOR, "NOT_COORDINATOR" },
		{ SLUICE_ERR_UNKNOWN_MEMBER_ID, "UNKNOWN_MEMBER_ID" },
		{ SLUICE_ERR_NON_EMPTY_GROUP, "NON_EMPTY_GROUP" },
		{ SLUICE_ERR_GROUP_ID_NOT_FOUND, "GROUP_ID_NOT_FOUND" },
		{ SLUICE_ERR_FENCED_MEMBER_EPOCH, "FENCED_MEMBER_EPOCH" },
		{ SLUICE_ERR_STALE_MEMBER_EPOCH, "STALE_MEMBER_EPOCH" },
		{ SLUICE_ERR_NOT_ASSIGNED, "NOT_ASSIGNED" },
		{ SLUICE_ERR_QUEUE_FULL, "QUEUE_FULL" },
		{ SLUICE_ERR_TIMED_OUT, "REQUEST_TIMED_OUT" },
	};
	for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++)
		cr_assert_str_eq(sluice_err_name(pub[i].code), pub[i].name);
}
