/* Configuration properties, checked on set. See sluice.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "internal.h"

static int fail(char *errbuf, size_t errlen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *errbuf, size_t errlen, int err, const char *fmt, ...)
{
	if (errbuf != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return err;
}

int cl_parse_bootstrap(const char *text, struct cl_addr *out, size_t cap, size_t *n,
		       char *errmsg, size_t errlen)
{
	*n = 0;
	const char *p = text;
	if (*p == '\0')
		return fail(errmsg, errlen, SL_EINVALID_ARGUMENT,
			    "bootstrap.servers: empty (expected host:port[,host:port...])");
	for (;;) {
		size_t len = strcspn(p, ",");
		const char *colon = memrchr(p, ':', len);
		if (colon == NULL || colon == p || colon == p + len - 1)
			return fail(errmsg, errlen, SL_EINVALID_ARGUMENT,
				    "bootstrap.servers: '%.*s' is not host:port", (int)len, p);
		size_t hlen = (size_t)(colon - p);
		const char *host = p;
		/* "[::1]:9092": the brackets only delimit an IPv6 address. */
		if (hlen >= 2 && p[0] == '[' && p[hlen - 1] == ']') {
			host++;
			hlen -= 2;
		} else if (memchr(p, '[', hlen) != NULL || memchr(p, ']', hlen) != NULL ||
			   memchr(p, ':', hlen) != NULL) {
			return fail(errmsg, errlen, SL_EINVALID_ARGUMENT,
				    "bootstrap.servers: '%.*s' is not host:port (an IPv6 "
				    "address goes in brackets: [::1]:9092)",
				    (int)len, p);
		}
		if (hlen == 0)
			return fail(errmsg, errlen, SL_EINVALID_ARGUMENT,
				    "bootstrap.servers: '%.*s' has no host", (int)len, p);
		long port = 0;
		for (const char *q = colon + 1; q < p + len; q++) {
			if (*q < '0' || *q > '9' || port > 65535)
				return fail(errmsg, errlen, SL_EINVALID_ARGUMENT,
					    "bootstrap.servers: bad port in '%.*s'", (int)len, p);
			port = port * 10 + (*q - '0');
		}
		if (port < 1 || port > 65535)
			return fail(errmsg, errlen, SL_EINVALID_ARGUMENT,
				    "bootstrap.servers: port out of range in '%.*s'", (int)len, p);
		if (hlen >= CL_HOST_MAX)
			return fail(errmsg, errlen, SL_EINVALID_ARGUMENT,
				    "bootstrap.servers: host name too long");
		if (*n == cap)
			return fail(errmsg, errlen, SL_EINVALID_ARGUMENT,
				    "bootstrap.servers: at most %zu addresses", cap);
		memcpy(out[*n].host, host, hlen);
		out[*n].host[hlen] = '\0';
		out[*n].port = (int)port;
		(*n)++;
		if (p[len] == '\0')
			return SL_OK;
		p += len + 1;
	}
}

sluice_conf_t *sluice_conf_new(void)
{
	sluice_conf_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	snprintf(c->boot[0].host, sizeof(c->boot[0].host), "127.0.0.1");
	c->boot[0].port = 9092;
	c->nboot = 1;
	snprintf(c->client_id, sizeof(c->client_id), "libsluice");
	c->request_timeout_ms = 30000;
	c->socket_timeout_ms = 5000;
	c->max_response_bytes = 64u << 20;
	c->acks = SLUICE__ACKS__ACKS_ALL;
	c->linger_ms = 0;
	c->batch_bytes = 256u << 10;
	c->codec = SL_CODEC_ZSTD;
	c->level = 1;
	c->idempotence = true;
	c->delivery_timeout_ms = 120000;
	c->buffer_bytes = 64u << 20;
	c->buffer_block_ms = 60000;
	c->max_in_flight = 5;
	c->offset_reset = OFFSET_RESET_LATEST;
	c->fetch_wait_ms = 500;
	c->auto_commit = true;
	c->auto_commit_ms = 5000;
	c->fetch_partition_bytes = 1u << 20;
	c->fetch_buffer_bytes = 64u << 20;
	return c;
}

/* A decimal in [min, max] for key, or a message naming the key. */
static int number(const char *key, const char *value, unsigned long min, unsigned long max,
		  unsigned long *out, char *errbuf, size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(value, &end, 10);
	if (value[0] < '0' || value[0] > '9' || *end != '\0' || errno != 0 || v < min || v > max)
		return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
			    "%s: '%.32s' is not a whole number in %lu..%lu", key, value, min, max);
	*out = v;
	return SL_OK;
}

sluice_err_t sluice_conf_set(sluice_conf_t *conf, const char *key, const char *value,
			     char *errbuf, size_t errlen)
{
	if (conf == NULL || key == NULL || value == NULL)
		return fail(errbuf, errlen, SL_EINVALID_ARGUMENT, "conf, key and value are required");
	if (strcmp(key, "bootstrap.servers") == 0) {
		struct cl_addr a[CL_MAX_BOOTSTRAP];
		size_t n;
		int rv = cl_parse_bootstrap(value, a, CL_MAX_BOOTSTRAP, &n, errbuf, errlen);
		if (rv != SL_OK)
			return rv;
		memcpy(conf->boot, a, n * sizeof(*a));
		conf->nboot = n;
		return SL_OK;
	}
	if (strcmp(key, "client.id") == 0) {
		if (strlen(value) >= sizeof(conf->client_id))
			return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
				    "client.id: at most %zu characters", sizeof(conf->client_id) - 1);
		snprintf(conf->client_id, sizeof(conf->client_id), "%s", value);
		return SL_OK;
	}
	unsigned long v;
	if (strcmp(key, "request.timeout.ms") == 0) {
		int rv = number(key, value, 1, 3600000, &v, errbuf, errlen);
		if (rv == SL_OK)
			conf->request_timeout_ms = (unsigned)v;
		return rv;
	}
	if (strcmp(key, "socket.timeout.ms") == 0) {
		int rv = number(key, value, 10, 3600000, &v, errbuf, errlen);
		if (rv == SL_OK)
			conf->socket_timeout_ms = (unsigned)v;
		return rv;
	}
	if (strcmp(key, "max.response.bytes") == 0) {
		/* Below 256 not even ApiVersions' answer fits. */
		int rv = number(key, value, 256, 1u << 30, &v, errbuf, errlen);
		if (rv == SL_OK)
			conf->max_response_bytes = (uint32_t)v;
		return rv;
	}
	if (strcmp(key, "acks") == 0) {
		if (strcmp(value, "all") == 0 || strcmp(value, "-1") == 0)
			conf->acks = SLUICE__ACKS__ACKS_ALL;
		else if (strcmp(value, "1") == 0)
			conf->acks = SLUICE__ACKS__ACKS_LEADER;
		else if (strcmp(value, "0") == 0)
			conf->acks = SLUICE__ACKS__ACKS_NONE;
		else
			return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
				    "acks: '%.32s' is not all, 1 or 0", value);
		return SL_OK;
	}
	if (strcmp(key, "compression") == 0) {
		if (strcmp(value, "zstd") == 0)
			conf->codec = SL_CODEC_ZSTD;
		else if (strcmp(value, "none") == 0)
			conf->codec = SL_CODEC_NONE;
		else
			return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
				    "compression: '%.32s' is not zstd or none", value);
		return SL_OK;
	}
	if (strcmp(key, "enable.idempotence") == 0) {
		if (strcmp(value, "true") == 0)
			conf->idempotence = true;
		else if (strcmp(value, "false") == 0)
			conf->idempotence = false;
		else
			return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
				    "enable.idempotence: '%.32s' is not true or false", value);
		return SL_OK;
	}
	if (strcmp(key, "enable.auto.commit") == 0) {
		if (strcmp(value, "true") == 0)
			conf->auto_commit = true;
		else if (strcmp(value, "false") == 0)
			conf->auto_commit = false;
		else
			return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
				    "enable.auto.commit: '%.32s' is not true or false", value);
		return SL_OK;
	}
	if (strcmp(key, "group.instance.id") == 0) {
		if (strlen(value) >= sizeof(conf->instance_id))
			return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
				    "group.instance.id: at most %zu bytes",
				    sizeof(conf->instance_id) - 1);
		snprintf(conf->instance_id, sizeof(conf->instance_id), "%s", value);
		return SL_OK;
	}
	if (strcmp(key, "group.assignor") == 0) {
		if (strcmp(value, "uniform") == 0)
			conf->assignor = ASSIGNOR_UNIFORM;
		else if (strcmp(value, "range") == 0)
			conf->assignor = ASSIGNOR_RANGE;
		else
			return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
				    "group.assignor: '%.32s' is not uniform or range", value);
		return SL_OK;
	}
	if (strcmp(key, "auto.offset.reset") == 0) {
		if (strcmp(value, "earliest") == 0)
			conf->offset_reset = OFFSET_RESET_EARLIEST;
		else if (strcmp(value, "latest") == 0)
			conf->offset_reset = OFFSET_RESET_LATEST;
		else if (strcmp(value, "none") == 0)
			conf->offset_reset = OFFSET_RESET_NONE;
		else
			return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
				    "auto.offset.reset: '%.32s' is not earliest, latest or none",
				    value);
		return SL_OK;
	}
	/* The numeric keys: name, range, where. */
	static const struct {
		const char *key;
		unsigned long min, max;
		size_t off;
		int size; /* 4 or 8 bytes */
	} nums[] = {
		{ "linger.ms", 0, 60000, offsetof(struct sluice_conf, linger_ms), 4 },
		{ "batch.bytes", 1024, 16u << 20, offsetof(struct sluice_conf, batch_bytes), 4 },
		{ "compression.level", 1, 19, offsetof(struct sluice_conf, level), 4 },
		{ "delivery.timeout.ms", 1, 86400000,
		  offsetof(struct sluice_conf, delivery_timeout_ms), 4 },
		{ "buffer.bytes", 1u << 20, 1ul << 40, offsetof(struct sluice_conf, buffer_bytes),
		  8 },
		{ "buffer.block.ms", 0, 3600000, offsetof(struct sluice_conf, buffer_block_ms), 4 },
		{ "max.in.flight", 1, 5, offsetof(struct sluice_conf, max_in_flight), 4 },
		{ "fetch.wait.ms", 0, 60000, offsetof(struct sluice_conf, fetch_wait_ms), 4 },
		{ "fetch.partition.bytes", 1024, 64u << 20,
		  offsetof(struct sluice_conf, fetch_partition_bytes), 4 },
		{ "fetch.buffer.bytes", 1u << 20, 1ul << 40,
		  offsetof(struct sluice_conf, fetch_buffer_bytes), 8 },
		{ "auto.commit.interval.ms", 1, 86400000,
		  offsetof(struct sluice_conf, auto_commit_ms), 4 },
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		if (strcmp(key, nums[i].key) != 0)
			continue;
		int rv = number(key, value, nums[i].min, nums[i].max, &v, errbuf, errlen);
		if (rv != SL_OK)
			return rv;
		char *at = (char *)conf + nums[i].off;
		if (nums[i].size == 8) {
			uint64_t w = v;
			memcpy(at, &w, 8);
		} else {
			uint32_t w = (uint32_t)v;
			memcpy(at, &w, 4);
		}
		return SL_OK;
	}
	return fail(errbuf, errlen, SL_EINVALID_ARGUMENT,
		    "unknown property '%.64s' (known: bootstrap.servers, client.id, "
		    "request.timeout.ms, socket.timeout.ms, max.response.bytes, acks, linger.ms, "
		    "batch.bytes, compression, compression.level, enable.idempotence, "
		    "delivery.timeout.ms, buffer.bytes, buffer.block.ms, max.in.flight, "
		    "auto.offset.reset, fetch.wait.ms, fetch.partition.bytes, fetch.buffer.bytes, "
		    "enable.auto.commit, auto.commit.interval.ms, group.instance.id, group.assignor)",
		    key);
}

void sluice_conf_destroy(sluice_conf_t *conf)
{
	free(conf);
}

const char *sluice_err_name(sluice_err_t err)
{
	return err == SLUICE_OK ? "OK" : sl_err_name(err);
}

const char *sluice_strerror(sluice_err_t err)
{
	return err == SLUICE_OK ? "success" : sl_strerror(err);
}

int sluice_err_is_retriable(sluice_err_t err)
{
	return err != SLUICE_OK && sl_err_retriable(err);
}

/* The public names are the table's numbers. */
_Static_assert(SLUICE_ERR_UNKNOWN_TOPIC == SL_EUNKNOWN_TOPIC_OR_PARTITION, "errors.def");
_Static_assert(SLUICE_ERR_TIMED_OUT == SL_EREQUEST_TIMED_OUT, "errors.def");
_Static_assert(SLUICE_ERR_INVALID_TOPIC == SL_EINVALID_TOPIC, "errors.def");
_Static_assert(SLUICE_ERR_TOPIC_EXISTS == SL_ETOPIC_ALREADY_EXISTS, "errors.def");
_Static_assert(SLUICE_ERR_INVALID_PARTITIONS == SL_EINVALID_PARTITIONS, "errors.def");
_Static_assert(SLUICE_ERR_INVALID_REPLICATION_FACTOR == SL_EINVALID_REPLICATION_FACTOR,
	       "errors.def");
_Static_assert(SLUICE_ERR_INVALID_CONFIG == SL_EINVALID_CONFIG, "errors.def");
_Static_assert(SLUICE_ERR_NOMEM == SL_ENOMEM, "errors.def");
_Static_assert(SLUICE_ERR_INVALID_ARGUMENT == SL_EINVALID_ARGUMENT, "errors.def");
_Static_assert(SLUICE_ERR_CANCELED == SL_ECANCELED, "errors.def");
_Static_assert(SLUICE_ERR_BUSY == SL_EBUSY, "errors.def");
_Static_assert(SLUICE_ERR_IO == SL_EIO, "errors.def");
_Static_assert(SLUICE_ERR_MESSAGE_TOO_LARGE == SL_EMESSAGE_TOO_LARGE, "errors.def");
_Static_assert(SLUICE_ERR_UNSUPPORTED_VERSION == SL_EUNSUPPORTED_VERSION, "errors.def");
