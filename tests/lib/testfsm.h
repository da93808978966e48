/* A state machine for tests and benchmarks that drive real libraft
 * instances: it counts applied commands and snapshots a few zero bytes. */
#ifndef SL_TESTFSM_H
#define SL_TESTFSM_H

#include <raft.h>
#include <stdint.h>

/* Version 1 fsm whose apply increments *applied. */
void tl_fsm_init(struct raft_fsm *fsm, uint64_t *applied);

#endif
