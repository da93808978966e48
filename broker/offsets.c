/* The records of __consumer_offsets and a coordinator's view of them.
 * See offsets.h. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bigendian.h"
#include "errors.h"
#include "offsets.h"

#define VALUE_VERSION 1
#define VALUE_FIXED (1 + 8 + 4 + 8 + 2)

int sl_offsets_key_encode(const struct sl_offsets_key *k, uint8_t **out, size_t *len)
{
	if (k->group_len > SL_OFFSETS_NAME_MAX || k->topic_len > SL_OFFSETS_NAME_MAX)
		return SL_EINVALID_ARGUMENT;
	size_t n = 1 + 2 + k->group_len + 2 + k->topic_len + 4;
	uint8_t *p = malloc(n);
	if (p == NULL)
		return SL_ENOMEM;
	size_t at = 0;
	p[at++] = SL_OFFSETS_KIND_OFFSET;
	sl_store_be16(p + at, (uint16_t)k->group_len);
	memcpy(p + at + 2, k->group, k->group_len);
	at += 2 + k->group_len;
	sl_store_be16(p + at, (uint16_t)k->topic_len);
	memcpy(p + at + 2, k->topic, k->topic_len);
	at += 2 + k->topic_len;
	sl_store_be32(p + at, k->partition);
	*out = p;
	*len = n;
	return SL_OK;
}

int sl_offsets_value_encode(const struct sl_offsets_value *v, uint8_t **out, size_t *len)
{
	if (v->offset < 0 || v->metadata_len > SL_OFFSETS_METADATA_MAX)
		return SL_EINVALID_ARGUMENT;
	size_t n = VALUE_FIXED + v->metadata_len;
	uint8_t *p = malloc(n);
	if (p == NULL)
		return SL_ENOMEM;
	p[0] = VALUE_VERSION;
	sl_store_be64(p + 1, (uint64_t)v->offset);
	sl_store_be32(p + 9, (uint32_t)v->leader_epoch);
	sl_store_be64(p + 13, (uint64_t)v->commit_ms);
	sl_store_be16(p + 21, (uint16_t)v->metadata_len);
	if (v->metadata_len > 0)
		memcpy(p + VALUE_FIXED, v->metadata, v->metadata_len);
	*out = p;
	*len = n;
	return SL_OK;
}

static int bad(char *why, const char *what)
{
	snprintf(why, SL_ERRMSG_SIZE, "%s", what);
	return SL_EINVALID_RECORD;
}

int sl_offsets_group_key_encode(const char *group, size_t group_len, uint8_t **out, size_t *len)
{
	if (group_len > SL_OFFSETS_NAME_MAX)
		return SL_EINVALID_ARGUMENT;
	uint8_t *p = malloc(3 + group_len);
	if (p == NULL)
		return SL_ENOMEM;
	p[0] = SL_OFFSETS_KIND_GROUP;
	sl_store_be16(p + 1, (uint16_t)group_len);
	memcpy(p + 3, group, group_len);
	*out = p;
	*len = 3 + group_len;
	return SL_OK;
}

int sl_offsets_group_key_decode(const uint8_t *buf, size_t len, const char **group,
				size_t *group_len, char *why)
{
	if (len < 1)
		return bad(why, "a group key is empty");
	if (buf[0] != SL_OFFSETS_KIND_GROUP)
		return SL_ENOT_FOUND;
	if (len < 3 || len != 3 + (size_t)sl_load_be16(buf + 1))
		return bad(why, "a group key's length does not match its group");
	*group = (const char *)buf + 3;
	*group_len = len - 3;
	return SL_OK;
}

int sl_offsets_key_decode(const uint8_t *buf, size_t len, struct sl_offsets_key *k, char *why)
{
	if (len < 1)
		return bad(why, "an offsets key is empty");
	if (buf[0] != SL_OFFSETS_KIND_OFFSET)
		return SL_ENOT_FOUND;
	size_t at = 1;
	if (len - at < 2)
		return bad(why, "an offsets key is cut short in its group");
	k->group_len = sl_load_be16(buf + at);
	at += 2;
	if (len - at < k->group_len + 2)
		return bad(why, "an offsets key is cut short in its group");
	k->group = (const char *)buf + at;
	at += k->group_len;
	k->topic_len = sl_load_be16(buf + at);
	at += 2;
	if (len - at < k->topic_len + 4)
		return bad(why, "an offsets key is cut short in its topic or partition");
	k->topic = (const char *)buf + at;
	at += k->topic_len;
	k->partition = sl_load_be32(buf + at);
	at += 4;
	if (at != len)
		return bad(why, "an offsets key has bytes after its partition");
	return SL_OK;
}

int sl_offsets_value_decode(const uint8_t *buf, size_t len, struct sl_offsets_value *v,
			    char *why)
{
	if (len < VALUE_FIXED)
		return bad(why, "an offsets value is cut short");
	if (buf[0] != VALUE_VERSION)
		return bad(why, "an offsets value has an unknown version");
	v->offset = (int64_t)sl_load_be64(buf + 1);
	v->leader_epoch = (int32_t)sl_load_be32(buf + 9);
	v->commit_ms = (int64_t)sl_load_be64(buf + 13);
	v->metadata_len = sl_load_be16(buf + 21);
	v->metadata = (const char *)buf + VALUE_FIXED;
	if (v->offset < 0)
		return bad(why, "an offsets value has a negative offset");
	if (v->metadata_len > SL_OFFSETS_METADATA_MAX)
		return bad(why, "an offsets value's metadata is too long");
	if (len != VALUE_FIXED + v->metadata_len)
		return bad(why, "an offsets value's length does not match its metadata");
	return SL_OK;
}

/* ---- The view --------------------------------------------------------- */

struct entry {
	struct entry *next;
	uint64_t hash;
	uint8_t *key; /* encoded */
	size_t key_len;
	struct sl_offsets_value val; /* metadata owned */
};

struct sl_offsets_view {
	struct entry **b;
	size_t nb, n;
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

struct sl_offsets_view *sl_offsets_view_new(void)
{
	struct sl_offsets_view *v = calloc(1, sizeof(*v));
	if (v != NULL && (v->b = calloc(64, sizeof(*v->b))) == NULL) {
		free(v);
		return NULL;
	}
	if (v != NULL)
		v->nb = 64;
	return v;
}

static void entry_free(struct entry *e)
{
	free(e->key);
	free((void *)e->val.metadata);
	free(e);
}

void sl_offsets_view_free(struct sl_offsets_view *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->nb; i++)
		while (v->b[i] != NULL) {
			struct entry *e = v->b[i];
			v->b[i] = e->next;
			entry_free(e);
		}
	free(v->b);
	free(v);
}

size_t sl_offsets_view_count(const struct sl_offsets_view *v)
{
	return v->n;
}

static struct entry **slot(const struct sl_offsets_view *v, const uint8_t *key, size_t len,
			   uint64_t h)
{
	struct entry **pp = &v->b[h % v->nb];
	while (*pp != NULL && ((*pp)->hash != h || (*pp)->key_len != len ||
			       memcmp((*pp)->key, key, len) != 0))
		pp = &(*pp)->next;
	return pp;
}

static void grow(struct sl_offsets_view *v)
{
	size_t nb = v->nb * 2;
	struct entry **b = calloc(nb, sizeof(*b));
	if (b == NULL)
		return; /* longer chains, still right */
	for (size_t i = 0; i < v->nb; i++)
		while (v->b[i] != NULL) {
			struct entry *e = v->b[i];
			v->b[i] = e->next;
			e->next = b[e->hash % nb];
			b[e->hash % nb] = e;
		}
	free(v->b);
	v->b = b;
	v->nb = nb;
}

int sl_offsets_view_apply(struct sl_offsets_view *v, const uint8_t *key, size_t key_len,
			  const uint8_t *value, size_t value_len)
{
	char why[SL_ERRMSG_SIZE];
	struct sl_offsets_key k;
	int rv = sl_offsets_key_decode(key, key_len, &k, why);
	if (rv == SL_ENOT_FOUND)
		return SL_OK; /* a kind this view does not keep */
	if (rv != SL_OK)
		return rv;
	struct sl_offsets_value val;
	if (value != NULL && (rv = sl_offsets_value_decode(value, value_len, &val, why)) != SL_OK)
		return rv;
	uint64_t h = fnv(key, key_len);
	struct entry **pp = slot(v, key, key_len, h);
	if (value == NULL) { /* a tombstone */
		if (*pp != NULL) {
			struct entry *e = *pp;
			*pp = e->next;
			entry_free(e);
			v->n--;
		}
		return SL_OK;
	}
	char *meta = malloc(val.metadata_len + 1);
	if (meta == NULL)
		return SL_ENOMEM;
	memcpy(meta, val.metadata, val.metadata_len);
	meta[val.metadata_len] = '\0';
	val.metadata = meta;
	if (*pp != NULL) {
		free((void *)(*pp)->val.metadata);
		(*pp)->val = val;
		return SL_OK;
	}
	struct entry *e = calloc(1, sizeof(*e));
	if (e == NULL || (e->key = malloc(key_len)) == NULL) {
		free(e);
		free(meta);
		return SL_ENOMEM;
	}
	memcpy(e->key, key, key_len);
	e->key_len = key_len;
	e->hash = h;
	e->val = val;
	e->next = v->b[h % v->nb];
	v->b[h % v->nb] = e;
	if (++v->n > v->nb)
		grow(v);
	return SL_OK;
}

void sl_offsets_view_foreach(const struct sl_offsets_view *v, const char *group,
			     void (*fn)(void *arg, const struct sl_offsets_key *k,
					const struct sl_offsets_value *val),
			     void *arg)
{
	size_t glen = group != NULL ? strlen(group) : 0;
	char why[SL_ERRMSG_SIZE];
	for (size_t i = 0; i < v->nb; i++)
		for (const struct entry *e = v->b[i]; e != NULL; e = e->next) {
			struct sl_offsets_key k;
			if (sl_offsets_key_decode(e->key, e->key_len, &k, why) != SL_OK)
				continue; /* only good keys are kept */
			if (group == NULL || (k.group_len == glen && memcmp(k.group, group, glen) == 0))
				fn(arg, &k, &e->val);
		}
}

int sl_offsets_view_get(const struct sl_offsets_view *v, const char *group, const char *topic,
			uint32_t partition, struct sl_offsets_value *out)
{
	struct sl_offsets_key k = { .group = group, .group_len = strlen(group), .topic = topic,
				    .topic_len = strlen(topic), .partition = partition };
	uint8_t *key;
	size_t len;
	if (sl_offsets_key_encode(&k, &key, &len) != SL_OK)
		return SL_ENOT_FOUND;
	struct entry *e = *slot(v, key, len, fnv(key, len));
	free(key);
	if (e == NULL)
		return SL_ENOT_FOUND;
	*out = e->val;
	return SL_OK;
}
