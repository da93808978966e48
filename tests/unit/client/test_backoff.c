/* The producer's retry policy (client/internal.h, struct cl_backoff): the
 * regression tests for what the fault-injection suite's failover runs
 * found (tests/chaos): the batches of one attempt stepped the backoff once
 * each (five in flight made 100 ms a second at once); a new leader waited
 * out the old backoff; after a success the batches queued behind did too. */
#include <criterion/criterion.h>

#include "internal.h"

Test(backoff, one_failed_attempt_is_one_step_however_many_batches_it_carried)
{
	struct cl_backoff b = { 0 };
	for (int i = 0; i < 5; i++) /* five batches in flight fail together */
		cl_backoff_failed(&b, 1000, 3);
	cr_assert_eq(b.retry_at, 1100);
	cr_assert(!cl_backoff_due(&b, 1099, 3));
	cr_assert(cl_backoff_due(&b, 1100, 3));
	for (int i = 0; i < 5; i++) /* the next attempt: the next step */
		cl_backoff_failed(&b, 1100, 3);
	cr_assert_eq(b.retry_at, 1300);
	uint64_t now = 1300;
	for (int k = 0; k < 6; k++) {
		cl_backoff_failed(&b, now, 3);
		now = b.retry_at;
	}
	cr_assert_eq(b.step_ms, 1000, "the step stops at 1 s");
}

Test(backoff, a_leader_not_known_at_the_failure_goes_at_once)
{
	struct cl_backoff b = { 0 };
	cl_backoff_failed(&b, 1000, 3); /* node 3 did not answer */
	cl_backoff_failed(&b, 1100, 3);
	cr_assert(!cl_backoff_due(&b, 1101, 3), "the same node: the backoff holds");
	cr_assert(!cl_backoff_due(&b, 1101, -1), "no leader known: the backoff holds");
	cr_assert(cl_backoff_due(&b, 1101, 2), "a new leader: at once");
	cl_backoff_failed(&b, 1300, -1); /* node 2 knew of no leader yet */
	cr_assert(!cl_backoff_due(&b, 1301, -1));
	cr_assert(cl_backoff_due(&b, 1301, 2), "a leader known now: at once");
}

Test(backoff, a_success_lets_the_batches_behind_go_at_once)
{
	struct cl_backoff b = { 0 };
	cl_backoff_failed(&b, 1000, 3);
	cl_backoff_failed(&b, 1100, 3);
	cl_backoff_failed(&b, 1300, 3); /* retry at 1700 */
	cr_assert(cl_backoff_due(&b, 1350, 2)); /* the new leader took one */
	cl_backoff_ok(&b);
	cr_assert(cl_backoff_due(&b, 1351, 2), "the next batch waited for the old backoff");
	cl_backoff_failed(&b, 1400, 2);
	cr_assert_eq(b.retry_at, 1500, "the backoff starts over after a success");
}
