/* The controller. See controller.h. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include <xxhash.h>

#include "batch.h"
#include "bigendian.h"
#include "blog.h"
#include "controller.h"
#include "rio.h"

/* Application frames on the peer transport (pnet.h), a kind byte first:
 *   PROPOSE  a meta command, for the leader to propose; a voter that does
 *            not lead forwards it to the leader it knows, as FORWARD
 *            (which is not forwarded again): a node that knows no leader
 *            yet (a new node, a guest of the transport) sends it to the
 *            voters in turn;
 *   HELLO    u64 the hash of the sender's metadata (0 from a voter: it
 *            needs none), u32 the controller group it runs (NO_GROUP:
 *            none), its UUID (16 bytes). Every node sends one to the
 *            controller's leader every second (its liveness); a non-voter
 *            every heartbeat, to the leader or, while it knows none, to
 *            the voters in turn, and so does a voter that knows no
 *            leader;
 *   META     a voter's answer to a HELLO from a non-voter, from a voter
 *            of another group (one that missed a move), or from a disk
 *            the metadata shows replaced: u64 the leader it knows (0:
 *            none), then the metadata's snapshot unless the sender's
 *            hash says it is current;
 *   COMMIT   the leader's answer to a voter's HELLO: u64 its commit index
 *            of the controller's group, which the voter must have
 *            applied to be ready. */
enum { APP_PROPOSE = 1, APP_HELLO = 2, APP_META = 3, APP_COMMIT = 4, APP_FORWARD = 5 };
#define HELLO_LEN (1 + 8 + 4 + 16)

/* When a node was last heard, for the leader's liveness duty. */
struct heard {
	uint64_t id;
	uint64_t at, marked; /* loop ms: last HELLO; last SetAlive(false) proposed */
};

struct proposal {
	struct raft_apply req;
	struct sl_controller *c;
	sl_controller_done_fn cb;
	void *arg;
};

/* What the last entries' commands meant, by Raft index, for proposers. */
#define RESULTS 64

struct sl_controller {
	uv_loop_t *loop;
	uv_timer_t timer;
	struct sl_meta meta;
	struct sl_meta_node self;
	struct sl_rreg *reg;
	struct sl_pnet *net;
	bool voter;         /* runs the controller's group (group below) */
	bool seed_voter;    /* one of the configured voters */
	uint32_t group;     /* the controller group it runs; NO_GROUP: none */
	uint32_t floor;     /* the highest group it ran: it never goes back */
	uint32_t left;      /* the highest group it left (NO_GROUP: none): it
			     * deleted its votes there, so never joins it again */
	uint8_t uuid[16];   /* self.uuid, parsed */
	int (*persist)(void *arg, uint32_t group);
	void *persist_arg;
	bool damaged;       /* an entry did not decode: applying stopped */
	unsigned heartbeat_ms, election_ms, liveness_ms;
	uint64_t voters[5];
	unsigned nvoters;
	uint32_t offsets_partitions; /* __consumer_offsets; 0: not created */
	uint64_t duties_at;  /* the once-a-second duties last ran */
	/* The metadata encoded (non-voters, hashes), as of version. */
	uint64_t version, snap_version;
	uint8_t *snap;
	size_t snap_len;
	uint64_t snap_hash;
	/* Non-voter: the leader the last META named, and when it answered. */
	uint64_t known_leader, meta_at;
	/* Voter: the leader's commit index, as its last COMMIT said; the
	 * leader and term it caught up with. */
	uint64_t leader_commit, commit_from;
	uint64_t caught_leader, caught_term;
	unsigned ask;
	/* Leader: since when, and what it heard. */
	uint64_t lead_since;
	struct heard *heard;
	size_t nheard;
	struct {
		raft_index index;
		struct sl_meta_result res;
	} results[RESULTS];
	void (*change_cb)(void *arg);
	void *change_arg;
	void (*close_cb)(void *arg);
	void *close_arg;
};

int sl_controller_init(struct sl_controller **out, uv_loop_t *loop, const struct sl_meta_node *self,
		       unsigned heartbeat_ms, unsigned election_ms)
{
	struct sl_controller *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return SL_ENOMEM;
	c->loop = loop;
	c->heartbeat_ms = heartbeat_ms;
	c->election_ms = election_ms;
	c->liveness_ms = 3 * election_ms > 2000 ? 3 * election_ms : 2000;
	c->self = *self;
	c->self.alive = true;
	c->group = SL_CONTROLLER_NO_GROUP;
	c->left = SL_CONTROLLER_NO_GROUP;
	if (uuid_parse(self->uuid, c->uuid) != 0) {
		free(c);
		return SL_EINVALID_ARGUMENT;
	}
	sl_meta_init(&c->meta);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	*out = c;
	return SL_OK;
}

const struct sl_meta *sl_controller_meta(const struct sl_controller *c)
{
	return &c->meta;
}

bool sl_controller_registered(const struct sl_controller *c, uint64_t since)
{
	const struct sl_meta_node *n = sl_meta_node(&c->meta, c->self.id);
	return n != NULL && strcmp(n->uuid, c->self.uuid) == 0 && n->replaced_at <= since;
}

/* This node, as the metadata has it, differs from what it would register. */
static bool registration_stale(const struct sl_controller *c)
{
	const struct sl_meta_node *n = sl_meta_node(&c->meta, c->self.id);
	return n == NULL || strcmp(n->uuid, c->self.uuid) != 0 ||
	       strcmp(n->host, c->self.host) != 0 || n->client_port != c->self.client_port ||
	       n->peer_port != c->self.peer_port || strcmp(n->rack, c->self.rack) != 0 || !n->alive;
}

/* Whether node id's disk `uuid` must not vote in m's controller group: m
 * has another UUID for the id, or took this one in after the group
 * formed (the controller then moves to a new group that counts it). */
static bool replaced_in(const struct sl_meta *m, uint64_t id, const char *uuid)
{
	const struct sl_meta_node *n = sl_meta_node(m, id);
	return n != NULL &&
	       (strcmp(n->uuid, uuid) != 0 || sl_meta_replaced_after(m, id, m->ctl_since));
}

/* Non-voter: the leader answered lately. */
static bool meta_fresh(const struct sl_controller *c)
{
	return c->known_leader != 0 && uv_now(c->loop) - c->meta_at <= 2 * (uint64_t)c->election_ms;
}

/* Voter: it leads, or the current leader told it its commit index and
 * everything up to there is applied here. (A follower's own commit index
 * stops at its log's end, which after a restart may lag the leader's.) */
static bool caught_up(const struct sl_controller *c)
{
	struct sl_rgroup_state st;
	if (c->reg == NULL) /* entries come from the caller alone */
		return true;
	struct raft *r = sl_rreg_raft(c->reg, c->group);
	if (r == NULL || sl_rreg_state(c->reg, c->group, &st) != SL_OK || st.leader == 0)
		return false;
	if (st.leader == c->self.id)
		return st.ready;
	/* Once caught up, a voter stays so while it follows the same leader
	 * in the same term: lagging it by the few entries in flight is
	 * following, not catching up (readiness must not flap). */
	return (c->caught_leader == st.leader && c->caught_term == st.term) ||
	       (c->commit_from == st.leader && r->last_applied >= c->leader_commit);
}

/* Records that this voter caught up with the leader it follows. */
static void note_caught_up(struct sl_controller *c)
{
	struct sl_rgroup_state st;
	if (c->voter && caught_up(c) && sl_rreg_state(c->reg, c->group, &st) == SL_OK) {
		c->caught_leader = st.leader;
		c->caught_term = st.term;
	}
}

bool sl_controller_ready(const struct sl_controller *c, const char **why)
{
	if (!c->voter && !meta_fresh(c))
		*why = "not joined: no metadata from the controller's leader lately";
	else if (c->voter && !caught_up(c))
		*why = "not joined: catching up with the metadata log";
	else if (c->damaged)
		*why = "the controller's log holds an entry that does not decode (see the log)";
	else if (c->meta.ctl_awaiting_seed)
		*why = "not joined: the controller is moving to a new group";
	else if (c->meta.cluster_id[0] == '\0')
		*why = "not joined: the controller has not set the cluster id yet";
	else if (registration_stale(c))
		*why = "not joined: this node is not registered with the controller yet";
	else
		return true;
	return false;
}

/* ---- Applying ------------------------------------------------------- */

void sl_controller_on_change(struct sl_controller *c, void (*fn)(void *arg), void *arg)
{
	c->change_cb = fn;
	c->change_arg = arg;
}

static void changed(struct sl_controller *c)
{
	c->version++;
	if (c->change_cb != NULL)
		c->change_cb(c->change_arg);
}

void sl_controller_apply(void *arg, uint32_t group, raft_index index, const struct raft_buffer *buf)
{
	struct sl_controller *c = arg;
	if (group != c->group || c->damaged)
		return;
	struct sl_record_iter it;
	struct sl_record rec;
	int rv = sl_record_iter_init(&it, buf->base, buf->len);
	if (rv == SL_OK) {
		while (rv == SL_OK && sl_record_iter_next(&it, &rec)) {
			struct sl_meta_result res;
			size_t vlen = rec.value_len > 0 ? (size_t)rec.value_len : 0;
			rv = sl_meta_apply(&c->meta, rec.value, vlen, &res);
			if (rv == SL_OK && res.err != SL_OK)
				SL_BLOG(SL_BLOG_INFO, "controller", "entry %llu refused: %s",
					(unsigned long long)index, res.errmsg);
			if (rv == SL_OK) {
				c->results[index % RESULTS].index = index;
				c->results[index % RESULTS].res = res;
				changed(c);
			}
		}
		if (rv == SL_OK)
			rv = it.err;
		sl_record_iter_free(&it);
	}
	/* A damaged entry, or no memory to apply it: this node's metadata
	 * would go wrong from here, so it stops (and says so) instead. */
	if (rv != SL_OK) {
		c->damaged = true;
		SL_BLOG(SL_BLOG_ERROR, "controller",
			"entry %llu of the metadata log does not apply (%s): applying stopped",
			(unsigned long long)index, sl_err_name(rv));
	}
}

int sl_controller_snapshot(void *arg, uint32_t group, void **buf, size_t *len)
{
	struct sl_controller *c = arg;
	*buf = NULL;
	*len = 0;
	if (group != c->group)
		return SL_OK;
	uint8_t *b;
	int rv = sl_meta_snapshot(&c->meta, &b, len);
	*buf = rv == SL_OK ? b : NULL;
	return rv;
}

int sl_controller_restore(void *arg, uint32_t group, const void *buf, size_t len)
{
	struct sl_controller *c = arg;
	if (group != c->group)
		return SL_OK;
	char errmsg[SL_ERRMSG_SIZE];
	int rv = sl_meta_restore(&c->meta, buf, len, errmsg);
	if (rv != SL_OK)
		SL_BLOG(SL_BLOG_ERROR, "controller", "snapshot does not restore: %s", errmsg);
	else
		changed(c);
	return rv;
}

/* ---- Proposing ------------------------------------------------------ */

static void proposed(struct raft_apply *req, int status, void *result)
{
	struct proposal *p = (struct proposal *)req;
	struct sl_controller *c = p->c;
	(void)result;
	if (status != 0)
		SL_BLOG(SL_BLOG_DEBUG, "controller", "proposal failed: %s", raft_strerror(status));
	if (p->cb != NULL) {
		const struct sl_meta_result *res = NULL;
		if (status == 0 && c->results[req->index % RESULTS].index == req->index)
			res = &c->results[req->index % RESULTS].res;
		/* Lost leadership or closing: whether it applied is unknown. */
		p->cb(p->arg, status == 0 && res != NULL ? SL_OK : SL_EREQUEST_TIMED_OUT, res);
	}
	free(p);
}

uint64_t sl_controller_leader(const struct sl_controller *c)
{
	struct sl_rgroup_state st;
	if (!c->voter)
		return meta_fresh(c) ? c->known_leader : 0;
	if (c->reg == NULL || sl_rreg_state(c->reg, c->group, &st) != SL_OK)
		return 0;
	return st.leader;
}

/* It leads the controller's group, with its election barrier committed. */
static bool leads(const struct sl_controller *c)
{
	struct raft *r = c->voter ? sl_rreg_raft(c->reg, c->group) : NULL;
	struct raft_io *io = c->voter ? sl_rreg_io(c->reg, c->group) : NULL;
	return r != NULL && io != NULL && raft_state(r) == RAFT_LEADER &&
	       sl_rio_leader_ready(io) && !c->damaged;
}

int sl_controller_propose(struct sl_controller *c, const uint8_t *cmd, size_t len,
			  sl_controller_done_fn cb, void *arg)
{
	if (!leads(c))
		return SL_ENOT_CONTROLLER;
	struct raft *r = sl_rreg_raft(c->reg, c->group);
	struct raft_io *io = sl_rreg_io(c->reg, c->group);
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	const uint8_t *bytes;
	size_t blen;
	struct proposal *p = NULL;
	struct raft_buffer buf = { 0 };
	if (sl_batch_builder_add(&b, 0, NULL, -1, cmd, (int32_t)len, NULL, 0) != SL_OK ||
	    sl_batch_builder_finish(&b, &bytes, &blen) != SL_OK ||
	    (buf.base = raft_malloc(blen)) == NULL || (p = calloc(1, sizeof(*p))) == NULL)
		goto fail;
	memcpy(buf.base, bytes, blen);
	buf.len = blen;
	sl_batch_stamp(buf.base, sl_rio_next_offset(io), (int32_t)r->current_term);
	p->c = c;
	p->cb = cb;
	p->arg = arg;
	if (raft_apply(r, &p->req, &buf, 1, proposed) != 0)
		goto fail;
	sl_batch_builder_free(&b);
	return SL_OK;
fail:
	raft_free(buf.base);
	free(p);
	sl_batch_builder_free(&b);
	return SL_ENOMEM;
}

/* The metadata encoded, and its hash, as of now. */
static int snap_get(struct sl_controller *c)
{
	if (c->snap != NULL && c->snap_version == c->version)
		return SL_OK;
	free(c->snap);
	c->snap = NULL;
	int rv = sl_meta_snapshot(&c->meta, &c->snap, &c->snap_len);
	if (rv != SL_OK)
		return rv;
	c->snap_hash = XXH3_64bits(c->snap, c->snap_len);
	c->snap_version = c->version;
	return SL_OK;
}

static struct heard *heard_of(struct sl_controller *c, uint64_t id, bool add)
{
	for (size_t i = 0; i < c->nheard; i++)
		if (c->heard[i].id == id)
			return &c->heard[i];
	if (!add)
		return NULL;
	struct heard *h = realloc(c->heard, (c->nheard + 1) * sizeof(*h));
	if (h == NULL)
		return NULL;
	c->heard = h;
	h = &c->heard[c->nheard++];
	*h = (struct heard){ .id = id };
	return h;
}

static void send_hello(struct sl_controller *c, uint64_t to, uint64_t hash)
{
	uint8_t f[HELLO_LEN];
	f[0] = APP_HELLO;
	sl_store_be64(f + 1, hash);
	sl_store_be32(f + 9, c->group);
	memcpy(f + 13, c->uuid, 16);
	(void)sl_pnet_send_app(c->net, to, f, sizeof(f)); /* lost: sent again */
}

bool sl_controller_is_voter(const struct sl_controller *c, uint64_t id)
{
	for (unsigned i = 0; i < c->nvoters; i++)
		if (c->voters[i] == id)
			return true;
	return false;
}

/* The next voter but this node, in turn (0: there is none). */
static uint64_t next_voter(struct sl_controller *c)
{
	for (unsigned i = 0; i < c->nvoters; i++) {
		uint64_t v = c->voters[c->ask++ % c->nvoters];
		if (v != c->self.id)
			return v;
	}
	return 0;
}

/* A voter answers a HELLO with the leader it knows and, unless the
 * sender's hash says it has it, the metadata. */
static void answer_hello(struct sl_controller *c, uint64_t from, uint64_t hash)
{
	if (snap_get(c) != SL_OK)
		return;
	bool send = hash != c->snap_hash;
	size_t len = 9 + (send ? c->snap_len : 0);
	uint8_t *f = malloc(len);
	if (f == NULL)
		return;
	f[0] = APP_META;
	sl_store_be64(f + 1, sl_controller_leader(c));
	if (send)
		memcpy(f + 9, c->snap, c->snap_len);
	if (sl_pnet_send_app(c->net, from, f, len) != SL_OK)
		SL_BLOG(SL_BLOG_DEBUG, "controller", "metadata for node %llu not sent",
			(unsigned long long)from);
	free(f);
}

/* The leader tells a voter its commit index. */
static void answer_commit(struct sl_controller *c, uint64_t from)
{
	struct sl_rgroup_state st;
	if (!c->voter || sl_rreg_state(c->reg, c->group, &st) != SL_OK ||
	    st.role != SL_RROLE_LEADER)
		return;
	uint8_t f[9];
	f[0] = APP_COMMIT;
	sl_store_be64(f + 1, st.commit);
	(void)sl_pnet_send_app(c->net, from, f, sizeof(f)); /* lost: asked again */
}

static void reconcile(struct sl_controller *c);

/* Metadata from a voter. A non-voter takes the leader's copy. A voter
 * takes one only when it shows that this node must change groups: the
 * controller moved to a newer group (this node missed the move), or this
 * disk is not the voter the group counts (it came back with a new disk);
 * any voter's applied copy says so truly. */
static void take_meta(struct sl_controller *c, uint64_t from, const uint8_t *p, size_t len)
{
	uint64_t leader = sl_load_be64(p);
	char errmsg[SL_ERRMSG_SIZE];
	if (c->voter) {
		struct sl_meta m;
		sl_meta_init(&m);
		if (len == 8 || sl_meta_restore(&m, p + 8, len - 8, errmsg) != SL_OK ||
		    !(m.ctl_group > c->group ||
		      (m.ctl_group == c->group && replaced_in(&m, c->self.id, c->self.uuid)))) {
			sl_meta_free(&m);
			return;
		}
		SL_BLOG(SL_BLOG_WARN, "controller",
			"node %llu's metadata shows %s (group %u): leaving group %u",
			(unsigned long long)from,
			m.ctl_group > c->group ? "that the controller moved"
					       : "this node back with a new disk",
			m.ctl_group, c->group);
		sl_meta_free(&c->meta);
		c->meta = m;
		c->known_leader = leader;
		c->meta_at = uv_now(c->loop);
		changed(c);
		reconcile(c);
		return;
	}
	if (leader == 0)
		return; /* that voter knows no leader: ask the others */
	c->known_leader = leader;
	if (from != leader)
		return; /* only the leader's copy is current: ask it next */
	c->meta_at = uv_now(c->loop);
	if (len == 8)
		return; /* ours is current */
	int rv = sl_meta_restore(&c->meta, p + 8, len - 8, errmsg);
	if (rv != SL_OK)
		SL_BLOG(SL_BLOG_WARN, "controller", "metadata from node %llu not taken: %s",
			(unsigned long long)from, rv == SL_ENOMEM ? "out of memory" : errmsg);
	else
		changed(c);
	reconcile(c);
}

static int send_propose(struct sl_controller *c, uint64_t to, int kind, const uint8_t *cmd,
			size_t len)
{
	uint8_t *frame = malloc(len + 1);
	if (frame == NULL)
		return SL_ENOMEM;
	frame[0] = (uint8_t)kind;
	memcpy(frame + 1, cmd, len);
	int rv = sl_pnet_send_app(c->net, to, frame, len + 1);
	free(frame);
	return rv;
}

static void on_hello(struct sl_controller *c, uint64_t from, const uint8_t *p)
{
	struct heard *h = heard_of(c, from, true);
	if (h != NULL)
		h->at = uv_now(c->loop);
	if (!c->voter)
		return;
	uint64_t hash = sl_load_be64(p);
	uint32_t group = sl_load_be32(p + 8);
	char uuid[37];
	uuid_unparse_lower(p + 12, uuid);
	if (hash != 0 || group != c->group || replaced_in(&c->meta, from, uuid))
		answer_hello(c, from, hash);
	else
		answer_commit(c, from);
}

static void on_app(void *arg, uint64_t from, const void *payload, size_t len)
{
	struct sl_controller *c = arg;
	const uint8_t *p = payload;
	if (len >= 1 && (p[0] == APP_PROPOSE || p[0] == APP_FORWARD)) {
		/* The sender repeats what it does not see applied. A node the
		 * metadata does not know yet may only register itself. */
		uint64_t leader = sl_controller_leader(c);
		if ((p[0] == APP_FORWARD && !sl_controller_is_voter(c, from)) ||
		    (p[0] == APP_PROPOSE && sl_meta_node(&c->meta, from) == NULL &&
		     !sl_controller_is_voter(c, from) && !sl_meta_cmd_registers(p + 1, len - 1, from))) {
			SL_BLOG(SL_BLOG_WARN, "controller", "node %llu is not registered: its command "
				"is dropped", (unsigned long long)from);
			return;
		}
		if (leads(c))
			(void)sl_controller_propose(c, p + 1, len - 1, NULL, NULL);
		else if (p[0] == APP_PROPOSE && leader != 0 && leader != c->self.id && c->voter)
			(void)send_propose(c, leader, APP_FORWARD, p + 1, len - 1);
	} else if (len == HELLO_LEN && p[0] == APP_HELLO) {
		on_hello(c, from, p + 1);
	} else if (len >= 9 && p[0] == APP_META) {
		take_meta(c, from, p + 1, len - 1);
	} else if (len == 9 && p[0] == APP_COMMIT) {
		c->leader_commit = sl_load_be64(p + 1);
		c->commit_from = from;
	} else {
		SL_BLOG(SL_BLOG_WARN, "controller",
			"application frame of unknown kind %d or size %zu from node %llu",
			len > 0 ? p[0] : -1, len, (unsigned long long)from);
	}
}

int sl_controller_submit(struct sl_controller *c, const uint8_t *cmd, size_t len)
{
	uint64_t leader = sl_controller_leader(c);
	if (leader == c->self.id)
		return sl_controller_propose(c, cmd, len, NULL, NULL);
	if (leader == 0 && !c->voter && c->net != NULL)
		leader = next_voter(c); /* it forwards to the leader it knows */
	if (leader == 0)
		return SL_ENOT_CONTROLLER;
	return send_propose(c, leader, APP_PROPOSE, cmd, len);
}

/* The leader marks nodes it has not heard from in liveness_ms as not
 * alive (counting from when it took the lead); they register again when
 * they come back. */
static void check_liveness(struct sl_controller *c)
{
	if (!leads(c)) {
		c->lead_since = 0;
		return;
	}
	uint64_t now = uv_now(c->loop);
	if (c->lead_since == 0)
		c->lead_since = now;
	for (size_t i = 0; i < c->meta.nnodes; i++) {
		const struct sl_meta_node *n = &c->meta.nodes[i];
		if (n->id == c->self.id || !n->alive)
			continue;
		struct heard *h = heard_of(c, n->id, true);
		if (h == NULL)
			return;
		uint64_t last = h->at > c->lead_since ? h->at : c->lead_since;
		if (now - last <= c->liveness_ms || now - h->marked <= c->liveness_ms)
			continue;
		uint8_t *cmd;
		size_t len;
		if (sl_meta_cmd_set_alive(n->id, false, &cmd, &len) != SL_OK)
			return;
		if (sl_controller_propose(c, cmd, len, NULL, NULL) == SL_OK) {
			h->marked = now;
			SL_BLOG(SL_BLOG_WARN, "controller", "node %llu not heard for %llu ms: not alive",
				(unsigned long long)n->id, (unsigned long long)(now - last));
		}
		free(cmd);
	}
}

/* Runs the controller's group g (from its directory, or created with the
 * voters). A group past 0 starts with the seed its first entries carry
 * (or the snapshot that holds it): until that applies, what this node
 * had counts for nothing. */
static int run_group(struct sl_controller *c, uint32_t g, char *errmsg)
{
	if (g != SL_CONTROLLER_GROUP) {
		c->meta.ctl_group = g;
		c->meta.ctl_awaiting_seed = true;
		if (c->meta.next_group <= g)
			c->meta.next_group = g + 1;
	}
	c->group = g; /* starting may apply entries and restore a snapshot */
	int rv = sl_rreg_start(c->reg, g, c->voters, c->nvoters, errmsg);
	if (rv != SL_OK) {
		c->group = SL_CONTROLLER_NO_GROUP;
		return rv;
	}
	c->floor = g;
	c->voter = true;
	c->leader_commit = 0;
	c->commit_from = 0;
	c->caught_leader = 0;
	return SL_OK;
}

static void group_deleted(void *arg, uint32_t group)
{
	(void)arg;
	SL_BLOG(SL_BLOG_INFO, "controller", "group=%u deleted", group);
}

/* The controller group this node should run, as the metadata says, and
 * the change to it: a configured voter runs the controller's group
 * unless its disk is not the one the group counts; a move goes to a
 * newer group only (an older one in the metadata is a copy still
 * catching up). */
static void reconcile(struct sl_controller *c)
{
	if (c->reg == NULL || c->net == NULL)
		return;
	uint32_t want = c->seed_voter && !replaced_in(&c->meta, c->self.id, c->self.uuid)
				? c->meta.ctl_group
				: SL_CONTROLLER_NO_GROUP;
	if (want == c->group ||
	    (want != SL_CONTROLLER_NO_GROUP &&
	     (want < c->floor || (c->left != SL_CONTROLLER_NO_GROUP && want <= c->left))) ||
	    (want == SL_CONTROLLER_NO_GROUP && c->meta.ctl_group != c->group))
		return;
	if (want != SL_CONTROLLER_NO_GROUP && c->persist != NULL &&
	    c->persist(c->persist_arg, want) != SL_OK)
		return; /* logged; tried again next heartbeat */
	if (c->voter) {
		uint32_t old = c->group;
		c->left = old;
		c->voter = false;
		c->group = SL_CONTROLLER_NO_GROUP;
		int rv = sl_rreg_delete(c->reg, old, group_deleted, c);
		SL_BLOG(SL_BLOG_WARN, "controller", "leaving the controller's group %u%s%s%s", old,
			want == SL_CONTROLLER_NO_GROUP
				? ": this node is back with a new disk and follows the metadata until "
				  "the controller moves to a group that counts it"
				: "",
			rv == SL_OK ? "" : ": ", rv == SL_OK ? "" : sl_strerror(rv));
	}
	if (want == SL_CONTROLLER_NO_GROUP)
		return;
	char errmsg[SL_ERRMSG_SIZE];
	int rv = run_group(c, want, errmsg);
	if (rv != SL_OK)
		SL_BLOG(SL_BLOG_ERROR, "controller", "group=%u does not start: %s", want, errmsg);
	else
		SL_BLOG(SL_BLOG_INFO, "controller", "group=%u: this node votes in the controller's "
			"group", want);
}

/* The leader moves the controller to a new group when a voter came back
 * with a new disk, and seeds the new group with the state the old one
 * ended with. */
static int move_duty(struct sl_controller *c, uint8_t **cmd, size_t *len)
{
	if (c->meta.ctl_group != c->group)
		return SL_OK;
	if (c->meta.ctl_awaiting_seed) {
		uint8_t *snap;
		size_t slen;
		int rv = sl_meta_snapshot(&c->meta, &snap, &slen);
		if (rv == SL_OK) {
			rv = sl_meta_cmd_seed_controller(snap, slen, cmd, len);
			free(snap);
		}
		return rv;
	}
	if (sl_meta_controller_stale(&c->meta, c->voters, c->nvoters)) {
		SL_BLOG(SL_BLOG_WARN, "controller", "a voter is back with a new disk: moving the "
			"controller from group %u to a new group", c->group);
		return sl_meta_cmd_move_controller(c->group, cmd, len);
	}
	return SL_OK;
}

/* The leader creates the groups' offsets topic once the voters have all
 * registered: replication factor min(3, registered nodes), counting
 * registered nodes rather than live ones, so that a node down at that
 * moment does not shrink it for good (the creation is refused until the
 * node is back, and proposed again every second). */
static int offsets_duty(struct sl_controller *c, uint8_t **cmd, size_t *len)
{
	if (c->offsets_partitions == 0 || c->meta.cluster_id[0] == '\0' ||
	    sl_meta_topic(&c->meta, SL_OFFSETS_TOPIC) != NULL)
		return SL_OK;
	for (unsigned i = 0; i < c->nvoters; i++)
		if (sl_meta_node(&c->meta, c->voters[i]) == NULL)
			return SL_OK;
	struct sl_meta_topic_config cfg = {
		.cleanup_policy = SL_CLEANUP_POLICY_COMPACT,
		.segment_bytes = SL_OFFSETS_SEGMENT_BYTES,
	};
	unsigned rf = c->meta.nnodes < 3 ? (unsigned)c->meta.nnodes : 3, alive = 0;
	for (size_t i = 0; i < c->meta.nnodes; i++)
		alive += c->meta.nodes[i].alive;
	if (alive < rf)
		return SL_OK; /* placement would refuse it: wait for the node */
	return sl_meta_cmd_create_topic(SL_OFFSETS_TOPIC, c->offsets_partitions, rf, &cfg, cmd, len);
}

void sl_controller_set_offsets_partitions(struct sl_controller *c, uint32_t partitions)
{
	c->offsets_partitions = partitions;
}

/* Once a second: what the metadata still lacks from this node, and the
 * leader's duties. */
static void duties(struct sl_controller *c)
{
	uint8_t *cmd = NULL;
	size_t len;
	int rv = SL_OK;
	uint64_t leader = sl_controller_leader(c);
	if (leads(c))
		rv = move_duty(c, &cmd, &len);
	if (rv == SL_OK && cmd == NULL && leads(c))
		rv = offsets_duty(c, &cmd, &len);
	if (rv == SL_OK && cmd == NULL && c->meta.cluster_id[0] == '\0' && leads(c)) {
		uuid_t u;
		char id[37];
		uuid_generate_random(u);
		uuid_unparse_lower(u, id);
		rv = sl_meta_cmd_init_cluster(id, &cmd, &len);
	} else if (rv == SL_OK && cmd == NULL && registration_stale(c)) {
		/* Also before this node has any metadata: a node the voters
		 * have never heard of gets none before they know its address. */
		rv = sl_meta_cmd_register_node(&c->self, &cmd, &len);
	}
	if (rv == SL_OK && cmd != NULL)
		(void)sl_controller_submit(c, cmd, len); /* repeated next second */
	free(cmd);
	if (c->voter && leader != 0 && leader != c->self.id)
		send_hello(c, leader, 0);
	check_liveness(c);
}

/* Every heartbeat: a non-voter asks for the metadata, and so does a voter
 * that knows no leader; once a second, the duties. */
static void on_timer(uv_timer_t *t)
{
	struct sl_controller *c = t->data;
	if (c->damaged)
		return;
	uint64_t now = uv_now(c->loop);
	reconcile(c);
	note_caught_up(c);
	uint64_t leader = sl_controller_leader(c);
	uint64_t hash = 0;
	if (!c->voter && snap_get(c) == SL_OK)
		hash = c->snap_hash;
	if (!c->voter && c->known_leader != 0)
		send_hello(c, c->known_leader, hash);
	else if (c->voter && leader != 0 && leader != c->self.id && !caught_up(c))
		send_hello(c, leader, 0); /* the leader's commit index, every heartbeat */
	if ((!c->voter && !meta_fresh(c)) || (c->voter && leader == 0)) {
		uint64_t v = next_voter(c); /* the leader went quiet: ask around */
		if (v != 0)
			send_hello(c, v, hash);
	}
	if (now - c->duties_at >= 1000) {
		c->duties_at = now;
		duties(c);
	}
}

int sl_controller_attach(struct sl_controller *c, struct sl_rreg *reg, struct sl_pnet *net,
			 const uint64_t *voters, unsigned nvoters, uint32_t group, char *errmsg)
{
	c->reg = reg;
	c->net = net;
	c->nvoters = nvoters < 5 ? nvoters : 5;
	memcpy(c->voters, voters, c->nvoters * sizeof(*voters));
	for (unsigned i = 0; i < c->nvoters; i++)
		c->seed_voter = c->seed_voter || voters[i] == c->self.id;
	if (reg == NULL || net == NULL) { /* metadata applied by the caller alone */
		c->group = group;
		c->voter = c->seed_voter;
		return SL_OK;
	}
	if (c->seed_voter) {
		int rv = run_group(c, group, errmsg);
		if (rv != SL_OK)
			return rv;
	}
	sl_pnet_set_app_handler(net, on_app, c);
	c->duties_at = uv_now(c->loop) - 800; /* first duties in 200 ms */
	uv_timer_start(&c->timer, on_timer, c->heartbeat_ms, c->heartbeat_ms);
	return SL_OK;
}

void sl_controller_on_group(struct sl_controller *c, int (*persist)(void *arg, uint32_t group),
			    void *arg)
{
	c->persist = persist;
	c->persist_arg = arg;
}

uint32_t sl_controller_group(const struct sl_controller *c)
{
	return c->group;
}

void sl_controller_detach(struct sl_controller *c)
{
	uv_timer_stop(&c->timer);
	if (c->net != NULL)
		sl_pnet_set_app_handler(c->net, NULL, NULL);
	c->reg = NULL;
	c->net = NULL;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct sl_controller *c = h->data;
	void (*cb)(void *) = c->close_cb;
	void *arg = c->close_arg;
	sl_meta_free(&c->meta);
	free(c->snap);
	free(c->heard);
	free(c);
	if (cb != NULL)
		cb(arg);
}

void sl_controller_close(struct sl_controller *c, void (*cb)(void *arg), void *arg)
{
	sl_controller_detach(c);
	c->close_cb = cb;
	c->close_arg = arg;
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
