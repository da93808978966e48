#include "testfsm.h"

#include <string.h>

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	(void)buf;
	(*(uint64_t *)fsm->data)++;
	*result = NULL;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
	(void)fsm;
	*bufs = raft_malloc(sizeof(**bufs));
	(*bufs)[0].base = raft_malloc(8);
	(*bufs)[0].len = 8;
	memset((*bufs)[0].base, 0, 8);
	*n = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	(void)fsm;
	raft_free(buf->base);
	return 0;
}

void tl_fsm_init(struct raft_fsm *fsm, uint64_t *applied)
{
	*fsm = (struct raft_fsm){ .version = 1, .data = applied, .apply = fsm_apply,
				  .snapshot = fsm_snapshot, .restore = fsm_restore };
}
