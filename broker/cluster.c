/* The node's Raft side. See cluster.h. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>
#include <xxhash.h>

#include "blog.h"
#include "cluster.h"
#include "controller.h"
#include "data.h"
#include "errors.h"
#include "meta.h"
#include "partitions.h"
#include "pnet.h"
#include "rreg.h"

struct sl_cluster {
	uv_loop_t *loop;
	uint64_t node_id;
	struct sl_pnet *net;
	struct sl_rreg *reg;
	struct sl_controller *ctl;
	struct sl_parts *parts;
	struct sl_datadir *dd;
	bool voter;
	bool handoff;
	struct sl_seed *peers; /* the seeds but this node */
	size_t npeers;
	void (*stop_cb)(void *arg);
	void *stop_arg;
	bool stopping;
};

/* The controller's voters: the first 1, 3 or 5 seeds. */
static size_t voter_count(size_t nseeds)
{
	return nseeds >= 5 ? 5 : nseeds >= 3 ? 3 : nseeds >= 1 ? 1 : 0;
}

/* Every entry a group applies: the controller's are the metadata; a
 * partition's may be what a waiting Fetch waits for. */
static void on_apply(void *arg, uint32_t group, raft_index index, const struct raft_buffer *buf)
{
	struct sl_controller *ctl = arg;
	if (group == sl_controller_group(ctl))
		sl_controller_apply(ctl, group, index, buf);
	else
		sl_data_applied(group, buf != NULL ? buf->base : NULL, buf != NULL ? buf->len : 0);
}

/* A group's entries became durable here: a produce with acks=leader may
 * be waiting for them. */
static void on_stored(void *arg, uint32_t group, raft_index last)
{
	(void)arg;
	(void)last;
	sl_data_stored(group);
}

/* Records the controller's new group in the data directory. */
static int persist_group(void *arg, uint32_t group)
{
	struct sl_cluster *c = arg;
	char errmsg[SL_ERRMSG_SIZE];
	int rv = sl_datadir_set_controller_group(c->dd, group, errmsg);
	if (rv != SL_OK)
		SL_BLOG(SL_BLOG_ERROR, "cluster", "controller group %u not recorded: %s", group,
			errmsg);
	return rv;
}

int sl_cluster_start(uv_loop_t *loop, const struct sl_config *cfg, struct sl_datadir *dd,
		     struct sl_cluster **out, char *errmsg)
{
	*out = NULL;
	static struct sl_seed seeds[SL_MAX_SEEDS];
	size_t nseeds;
	int rv = sl_config_seeds(cfg->seeds, seeds, SL_MAX_SEEDS, &nseeds, errmsg);
	if (rv != SL_OK)
		return rv;
	struct sl_cluster *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "out of memory");
		return SL_ENOMEM;
	}
	c->loop = loop;
	c->node_id = cfg->node_id;
	c->dd = dd;

	/* Voters in ascending id order: every voter bootstraps group 0 with
	 * the same configuration entry, byte for byte. */
	uint64_t voters[5];
	size_t nv = voter_count(nseeds);
	char idtext[5 * 300] = "";
	for (size_t i = 0; i < nv; i++)
		voters[i] = seeds[i].id;
	if (nv == 0) { /* a cluster of one */
		voters[nv++] = cfg->node_id;
		seeds[0] = (struct sl_seed){ .id = cfg->node_id, .port = (unsigned)cfg->peer_port };
		snprintf(seeds[0].host, sizeof(seeds[0].host), "%s", sl_config_advertised(cfg));
		nseeds = 1;
	}
	for (size_t i = 1; i < nv; i++)
		for (size_t j = i; j > 0 && voters[j - 1] > voters[j]; j--) {
			uint64_t t = voters[j];
			voters[j] = voters[j - 1];
			voters[j - 1] = t;
		}
	for (size_t i = 0; i < nv; i++) {
		c->voter = c->voter || voters[i] == cfg->node_id;
		const struct sl_seed *s = NULL;
		for (size_t k = 0; k < nseeds; k++)
			if (seeds[k].id == voters[i])
				s = &seeds[k];
		size_t len = strlen(idtext);
		snprintf(idtext + len, sizeof(idtext) - len, "%s%llu@%s:%u", i > 0 ? "," : "",
			 (unsigned long long)voters[i], s != NULL ? s->host : "", s != NULL ? s->port : 0);
	}

	struct sl_pnet_config nc = {
		.node_id = cfg->node_id,
		.listen_host = cfg->listen_host,
		.listen_port = (int)cfg->peer_port,
		.max_frame = (size_t)cfg->max_frame_bytes,
		.admit_guests = true, /* new nodes and new disks register */
		.log = sl_blog_raft,
	};
	XXH128_hash_t h = XXH3_128bits(idtext, strlen(idtext));
	memcpy(nc.cluster_id, &h.high64, 8);
	memcpy(nc.cluster_id + 8, &h.low64, 8);
	uuid_t u;
	if (uuid_parse(dd->uuid, u) != 0) {
		free(c);
		snprintf(errmsg, SL_ERRMSG_SIZE, "node UUID %s does not parse", dd->uuid);
		return SL_EINVALID_ARGUMENT;
	}
	memcpy(nc.node_uuid, u, 16);
	struct sl_meta_node self = { .id = cfg->node_id, .client_port = (unsigned)cfg->client_port,
				     .peer_port = (unsigned)cfg->peer_port };
	snprintf(self.uuid, sizeof(self.uuid), "%s", dd->uuid);
	snprintf(self.host, sizeof(self.host), "%s", sl_config_advertised(cfg));
	snprintf(self.rack, sizeof(self.rack), "%s", cfg->rack);
	if (strlen(cfg->rack) > SL_META_RACK_MAX) {
		free(c);
		snprintf(errmsg, SL_ERRMSG_SIZE, "rack: at most %d characters", SL_META_RACK_MAX);
		return SL_EINVALID_ARGUMENT;
	}
	rv = sl_controller_init(&c->ctl, loop, &self, (unsigned)cfg->heartbeat_ms,
				(unsigned)cfg->election_ms);
	if (rv != SL_OK) {
		free(c);
		snprintf(errmsg, SL_ERRMSG_SIZE, "controller: %s", sl_strerror(rv));
		return rv;
	}
	rv = sl_pnet_init(&c->net, loop, &nc, NULL, NULL, NULL);
	if (rv != SL_OK) {
		sl_controller_close(c->ctl, free, c);
		snprintf(errmsg, SL_ERRMSG_SIZE, "peer transport: %s", sl_strerror(rv));
		return rv;
	}
	c->peers = calloc(nseeds + 1, sizeof(*c->peers));
	if (c->peers == NULL)
		rv = SL_ENOMEM;
	for (size_t i = 0; i < nseeds && rv == SL_OK; i++) {
		if (seeds[i].id == cfg->node_id)
			continue;
		/* A UUID this node pinned earlier stays enforced. */
		uuid_t pin;
		bool pinned = false;
		for (size_t k = 0; k < dd->npeers && !pinned; k++)
			pinned = dd->peers[k].id == seeds[i].id && uuid_parse(dd->peers[k].uuid, pin) == 0;
		rv = sl_pnet_set_peer(c->net, seeds[i].id, seeds[i].host, (int)seeds[i].port,
				      pinned ? pin : NULL);
		if (rv != SL_OK)
			snprintf(errmsg, SL_ERRMSG_SIZE, "seeds: node %llu: %s",
				 (unsigned long long)seeds[i].id, sl_strerror(rv));
		c->peers[c->npeers++] = seeds[i];
	}
	if (rv == SL_OK)
		rv = sl_pnet_listen(c->net, errmsg);
	if (rv != SL_OK) {
		sl_cluster_stop(c, false, NULL, NULL);
		return rv;
	}

	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/raft", cfg->data_dir);
	struct sl_rreg_config rc = {
		.dir = dir,
		.node_id = cfg->node_id,
		.heartbeat_ms = (unsigned)cfg->heartbeat_ms,
		.election_ms = (unsigned)cfg->election_ms,
		.logf = sl_blog_raft,
		.apply = on_apply,
		.stored = on_stored,
		.snapshot = sl_controller_snapshot,
		.restore = sl_controller_restore,
		.apply_arg = c->ctl,
	};
	sl_log_config_init(&rc.log);
	rv = sl_rreg_init(&c->reg, loop, &rc, c->net);
	if (rv != SL_OK) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "group registry in %.160s: %s (see the log)", dir,
			 sl_strerror(rv));
		c->reg = NULL;
		sl_cluster_stop(c, false, NULL, NULL);
		return rv;
	}
	sl_controller_on_group(c->ctl, persist_group, c);
	rv = sl_controller_attach(c->ctl, c->reg, c->net, voters, (unsigned)nv,
				  dd->has_controller_group ? dd->controller_group
							   : SL_CONTROLLER_GROUP,
				  errmsg);
	if (rv != SL_OK) {
		sl_cluster_stop(c, false, NULL, NULL);
		return rv;
	}
	rv = sl_parts_init(&c->parts, loop, cfg->node_id, (unsigned)cfg->heartbeat_ms, dir, c->reg,
			   c->ctl);
	if (rv != SL_OK) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "partition manager: %s", sl_strerror(rv));
		sl_cluster_stop(c, false, NULL, NULL);
		return rv;
	}
	sl_controller_set_offsets_partitions(c->ctl, (uint32_t)cfg->offsets_topic_partitions);
	sl_parts_set_retention(c->parts, (unsigned)cfg->retention_check_ms, rc.log.retention_bytes,
			       rc.log.retention_ms);
	SL_BLOG(SL_BLOG_INFO, "cluster", "peer transport listening addr=%s:%llu voters=%s%s",
		cfg->listen_host, (unsigned long long)cfg->peer_port, idtext,
		c->voter ? " (this node votes)" : "");
	*out = c;
	return SL_OK;
}

uint64_t sl_cluster_controller_leader(struct sl_cluster *c)
{
	return sl_controller_leader(c->ctl);
}

struct metrics_ctx {
	struct sl_cluster *c;
	FILE *out;
};

static void group_metrics(void *arg, uint32_t group)
{
	struct metrics_ctx *m = arg;
	struct sl_rgroup_state st;
	if (sl_rreg_state(m->c->reg, group, &st) != SL_OK)
		return;
	unsigned long long node = (unsigned long long)m->c->node_id;
	fprintf(m->out, "sluice_group_term{node=\"%llu\",group=\"%u\"} %llu\n", node, group,
		(unsigned long long)st.term);
	fprintf(m->out, "sluice_group_commit_index{node=\"%llu\",group=\"%u\"} %llu\n", node, group,
		(unsigned long long)st.commit);
	fprintf(m->out, "sluice_group_role{node=\"%llu\",group=\"%u\"} %d\n", node, group, st.role);
	fprintf(m->out, "sluice_group_leader{node=\"%llu\",group=\"%u\"} %llu\n", node, group,
		(unsigned long long)st.leader);
}

void sl_cluster_metrics(struct sl_cluster *c, FILE *out)
{
	unsigned long long node = (unsigned long long)c->node_id;
	fprintf(out, "# HELP sluice_controller_leader The controller's leader as this node knows "
		     "it (0: none).\n# TYPE sluice_controller_leader gauge\n"
		     "sluice_controller_leader{node=\"%llu\"} %llu\n"
		     "# HELP sluice_controller_group The controller's Raft group this node votes "
		     "in (-1: none).\n# TYPE sluice_controller_group gauge\n"
		     "sluice_controller_group{node=\"%llu\"} %lld\n",
		node, (unsigned long long)sl_cluster_controller_leader(c), node,
		sl_controller_group(c->ctl) == SL_CONTROLLER_NO_GROUP
			? -1LL
			: (long long)sl_controller_group(c->ctl));
	fprintf(out, "# HELP sluice_group_term Raft term of each group this node runs.\n"
		     "# TYPE sluice_group_term gauge\n"
		     "# HELP sluice_group_commit_index Raft commit index of each group.\n"
		     "# TYPE sluice_group_commit_index gauge\n"
		     "# HELP sluice_group_role 0 stopped, 1 follower, 2 candidate, 3 leader.\n"
		     "# TYPE sluice_group_role gauge\n"
		     "# HELP sluice_group_leader The group's leader as this node knows it.\n"
		     "# TYPE sluice_group_leader gauge\n");
	const struct sl_meta *meta = sl_controller_meta(c->ctl);
	fprintf(out, "# HELP sluice_cluster_info The cluster's id, once the controller set it.\n"
		     "# TYPE sluice_cluster_info gauge\n");
	if (meta->cluster_id[0] != '\0')
		fprintf(out, "sluice_cluster_info{node=\"%llu\",cluster_id=\"%s\"} 1\n", node,
			meta->cluster_id);
	fprintf(out, "# HELP sluice_cluster_nodes Nodes registered in the metadata applied here.\n"
		     "# TYPE sluice_cluster_nodes gauge\n"
		     "sluice_cluster_nodes{node=\"%llu\"} %zu\n"
		     "# HELP sluice_cluster_topics Topics in the metadata applied here.\n"
		     "# TYPE sluice_cluster_topics gauge\n"
		     "sluice_cluster_topics{node=\"%llu\"} %zu\n",
		node, meta->nnodes, node, meta->ntopics);
	struct sl_rreg_stats rs;
	sl_rreg_get_stats(c->reg, &rs);
	fprintf(out, "# HELP sluice_raft_faults_total Raft groups stopped on this node by a disk "
		     "error (a failed write or sync: a full disk, a bad sector), each restarted "
		     "from its log after a pause.\n# TYPE sluice_raft_faults_total counter\n"
		     "sluice_raft_faults_total{node=\"%llu\"} %llu\n"
		     "# HELP sluice_raft_restarts_total Raft groups restarted after a fault.\n"
		     "# TYPE sluice_raft_restarts_total counter\n"
		     "sluice_raft_restarts_total{node=\"%llu\"} %llu\n",
		node, (unsigned long long)rs.faults, node, (unsigned long long)rs.restarts);
	struct metrics_ctx m = { c, out };
	sl_rreg_foreach(c->reg, group_metrics, &m);
}

bool sl_cluster_ready(struct sl_cluster *c, const char **why)
{
	return sl_controller_ready(c->ctl, why);
}

struct sl_controller *sl_cluster_controller(struct sl_cluster *c)
{
	return c->ctl;
}

const struct sl_meta *sl_cluster_meta(struct sl_cluster *c)
{
	return sl_controller_meta(c->ctl);
}

static void on_ctl_closed(void *arg)
{
	struct sl_cluster *c = arg;
	void (*cb)(void *) = c->stop_cb;
	void *cb_arg = c->stop_arg;
	free(c->peers);
	free(c);
	if (cb != NULL)
		cb(cb_arg);
}

static void on_net_closed(void *arg)
{
	struct sl_cluster *c = arg;
	sl_controller_close(c->ctl, on_ctl_closed, c);
}

/* The registry closed (or never ran): the transport, then the controller,
 * whose hooks the registry called until now. */
static void on_reg_closed(void *arg)
{
	struct sl_cluster *c = arg;
	sl_controller_detach(c->ctl);
	sl_pnet_close(c->net, on_net_closed, c);
}

static void on_handoff(void *arg, unsigned moved, unsigned failed)
{
	struct sl_cluster *c = arg;
	SL_BLOG(SL_BLOG_INFO, "cluster", "handoff done moved=%u failed=%u", moved, failed);
	sl_rreg_close(c->reg, on_reg_closed, c);
}

/* The partition manager stopped (or never ran): no group starts any
 * more; hand off, then close the groups. */
static void on_parts_closed(void *arg)
{
	struct sl_cluster *c = arg;
	c->parts = NULL;
	if (c->reg == NULL) {
		on_reg_closed(c);
		return;
	}
	if (c->handoff && sl_rreg_handoff(c->reg, on_handoff, c) == SL_OK)
		return;
	sl_rreg_close(c->reg, on_reg_closed, c);
}

void sl_cluster_stop(struct sl_cluster *c, bool handoff, void (*cb)(void *arg), void *arg)
{
	if (c->stopping)
		return;
	c->stopping = true;
	c->stop_cb = cb;
	c->stop_arg = arg;
	c->handoff = handoff;
	if (c->parts != NULL)
		sl_parts_close(c->parts, on_parts_closed, c);
	else
		on_parts_closed(c);
}

static const struct sl_seed *seed_of(const struct sl_cluster *c, uint64_t id)
{
	for (size_t i = 0; i < c->npeers; i++)
		if (c->peers[i].id == id)
			return &c->peers[i];
	return NULL;
}

static void pin(struct sl_datadir *dd, uint64_t id, const uint8_t u[16], bool replace)
{
	char text[37], errmsg[SL_ERRMSG_SIZE];
	uuid_unparse_lower(u, text);
	int rv = sl_datadir_pin_peer(dd, id, text, replace, errmsg);
	if (rv != SL_OK)
		SL_BLOG(SL_BLOG_ERROR, "cluster", "%s", errmsg);
}

void sl_cluster_pin_peers(struct sl_cluster *c, struct sl_datadir *dd)
{
	const struct sl_meta *m = sl_controller_meta(c->ctl);
	/* Seeds: as the transport learned them, or as they registered. */
	for (size_t i = 0; i < c->npeers; i++) {
		const struct sl_seed *s = &c->peers[i];
		uint8_t u[16];
		if (!sl_pnet_peer_uuid(c->net, s->id, u)) {
			const struct sl_meta_node *n = sl_meta_node(m, s->id);
			if (n == NULL || uuid_parse(n->uuid, u) != 0 ||
			    sl_pnet_set_peer(c->net, s->id, s->host, (int)s->port, u) != SL_OK)
				continue;
		}
		pin(dd, s->id, u, false);
	}
	/* Registered nodes: those past the seeds become peers, and a node's
	 * new disk replaces the old one once nothing this node runs counts
	 * the old one as a voter: the controller's group (when this node
	 * runs one) formed after the new disk registered. Partition groups
	 * placed on the old disk never start on the new one (partitions.h). */
	uint32_t running = sl_controller_group(c->ctl);
	bool moved = running == SL_CONTROLLER_NO_GROUP || running == m->ctl_group;
	for (size_t i = 0; i < m->nnodes; i++) {
		const struct sl_meta_node *n = &m->nodes[i];
		uint8_t u[16], pinned[16];
		if (n->id == c->node_id || uuid_parse(n->uuid, u) != 0)
			continue;
		bool known = sl_pnet_peer_uuid(c->net, n->id, pinned);
		bool same = known && memcmp(pinned, u, 16) == 0;
		const struct sl_seed *s = seed_of(c, n->id);
		bool replaced = known && !same;
		if (replaced && (!moved || (sl_controller_is_voter(c->ctl, n->id) &&
					    sl_meta_replaced_after(m, n->id, m->ctl_since))))
			continue; /* not yet */
		if (s != NULL && same)
			continue;
		const char *host = s != NULL ? s->host : n->host;
		int port = s != NULL ? (int)s->port : (int)n->peer_port;
		if (sl_pnet_set_peer(c->net, n->id, host, port, u) != SL_OK)
			continue;
		if (replaced)
			SL_BLOG(SL_BLOG_WARN, "cluster", "node %llu's new disk %s taken in",
				(unsigned long long)n->id, n->uuid);
		pin(dd, n->id, u, replaced);
	}
}

struct sl_parts *sl_cluster_parts(struct sl_cluster *c)
{
	return c->parts;
}
