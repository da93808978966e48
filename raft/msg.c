/* Copies of Raft messages in the ownership layout libraft 0.15 expects of
 * a received message. */
#include <string.h>

#include "rio.h"

int sl_rmsg_clone(const struct raft_message *src, raft_id from, const char *from_address,
		  struct raft_message *dst)
{
	*dst = *src;
	dst->server_id = from;
	dst->server_address = from_address;
	if (src->type == RAFT_IO_APPEND_ENTRIES) {
		const struct raft_append_entries *ae = &src->append_entries;
		dst->append_entries.entries = NULL;
		if (ae->n_entries == 0)
			return 0;
		size_t total = 0;
		for (unsigned i = 0; i < ae->n_entries; i++)
			total += ae->entries[i].buf.len;
		struct raft_entry *ents = raft_malloc(ae->n_entries * sizeof(*ents));
		uint8_t *batch = raft_malloc(total > 0 ? total : 1);
		if (ents == NULL || batch == NULL) {
			raft_free(ents);
			raft_free(batch);
			return RAFT_NOMEM;
		}
		size_t off = 0;
		for (unsigned i = 0; i < ae->n_entries; i++) {
			ents[i] = ae->entries[i];
			ents[i].buf.base = batch + off;
			ents[i].batch = batch;
			if (ae->entries[i].buf.len > 0)
				memcpy(batch + off, ae->entries[i].buf.base, ae->entries[i].buf.len);
			off += ae->entries[i].buf.len;
		}
		dst->append_entries.entries = ents;
	} else if (src->type == RAFT_IO_INSTALL_SNAPSHOT) {
		const struct raft_install_snapshot *is = &src->install_snapshot;
		struct raft_install_snapshot *d = &dst->install_snapshot;
		raft_configuration_init(&d->conf);
		d->data.base = raft_malloc(is->data.len > 0 ? is->data.len : 1);
		if (d->data.base == NULL)
			return RAFT_NOMEM;
		if (is->data.len > 0)
			memcpy(d->data.base, is->data.base, is->data.len);
		for (unsigned i = 0; i < is->conf.n; i++) {
			const struct raft_server *s = &is->conf.servers[i];
			int rv = raft_configuration_add(&d->conf, s->id, s->address, s->role);
			if (rv != 0) {
				raft_configuration_close(&d->conf);
				raft_free(d->data.base);
				return rv;
			}
		}
	}
	return 0;
}

void sl_rmsg_discard(struct raft_message *msg)
{
	if (msg->type == RAFT_IO_APPEND_ENTRIES && msg->append_entries.n_entries > 0) {
		raft_free(msg->append_entries.entries[0].batch);
		raft_free(msg->append_entries.entries);
	} else if (msg->type == RAFT_IO_INSTALL_SNAPSHOT) {
		raft_configuration_close(&msg->install_snapshot.conf);
		raft_free(msg->install_snapshot.data.base);
	}
}
