/* A deterministic backend environment (struct sl_renv, raft/rio.h) for
 * unit tests: submit() only queues; sl_qenv_pump runs what is queued, in
 * order, work then done, including work queued meanwhile. The clock is a
 * field the test moves; random() is a seeded LCG. Single-threaded. */
#ifndef SL_TEST_QENV_H
#define SL_TEST_QENV_H

#include <stdbool.h>
#include <stdint.h>

#include "rio.h"

struct sl_qenv {
	struct sl_renv base;
	struct sl_rwork *head, *tail;
	int64_t now; /* ms */
	uint64_t rng;
};

void sl_qenv_init(struct sl_qenv *env, int64_t now_ms, uint64_t seed);
/* Runs everything queued; returns how many items ran. */
int sl_qenv_pump(struct sl_qenv *env);
/* Runs the oldest queued item only; false when none was queued. */
bool sl_qenv_step(struct sl_qenv *env);

#endif
