/* A partition's idempotent producers (broker/pstate.h): duplicates,
 * sequence gaps, epochs, tentative entries across terms, the bound. */
#include <criterion/criterion.h>
#include <string.h>

#include "pstate.h"

TestSuite(pstate, .timeout = 10);

/* A batch header of producer pid, epoch, first sequence seq, count
 * records, at offset base. */
static struct sl_batch_header hdr(int64_t pid, int16_t epoch, int32_t seq, int32_t count,
				  int64_t base)
{
	struct sl_batch_header h;
	memset(&h, 0, sizeof(h));
	h.producer_id = pid;
	h.producer_epoch = epoch;
	h.base_sequence = seq;
	h.record_count = count;
	h.last_offset_delta = count - 1;
	h.base_offset = base;
	return h;
}

static char msg[256];

/* check: SL_OK and -1 (write), SL_OK and the duplicate's base, or an error. */
static int check(struct sl_pstate *s, struct sl_batch_header h, int64_t *dup)
{
	int64_t last;
	bool tentative;
	msg[0] = '\0';
	return sl_pstate_check(s, &h, dup, &last, &tentative, msg, sizeof(msg));
}

Test(pstate, a_retried_batch_is_a_duplicate_and_a_gap_is_out_of_order)
{
	struct sl_pstate *s = sl_pstate_new(16);
	int64_t dup;
	/* Unknown producers are taken at any sequence. */
	cr_assert_eq(check(s, hdr(7, 0, 0, 10, 100), &dup), SL_OK);
	cr_assert_eq(dup, -1);
	struct sl_batch_header a = hdr(7, 0, 0, 10, 100);
	sl_pstate_applied(s, &a);
	struct sl_batch_header b = hdr(7, 0, 10, 5, 110);
	cr_assert_eq(check(s, b, &dup), SL_OK);
	cr_assert_eq(dup, -1);
	sl_pstate_applied(s, &b);
	/* Each of the last batches again: its first copy's offset. */
	cr_assert_eq(check(s, hdr(7, 0, 0, 10, -1), &dup), SL_OK);
	cr_assert_eq(dup, 100);
	cr_assert_eq(check(s, hdr(7, 0, 10, 5, -1), &dup), SL_OK);
	cr_assert_eq(dup, 110);
	/* A gap, an overlap that is no batch, a repeat of the past. */
	cr_assert_eq(check(s, hdr(7, 0, 16, 1, -1), &dup), SL_EOUT_OF_ORDER_SEQUENCE);
	cr_assert(strstr(msg, "sequence 16, expected 15") != NULL, "%s", msg);
	cr_assert_eq(check(s, hdr(7, 0, 10, 3, -1), &dup), SL_EOUT_OF_ORDER_SEQUENCE);
	cr_assert_eq(check(s, hdr(7, 0, 15, 1, -1), &dup), SL_OK);
	cr_assert_eq(dup, -1);
	/* Another producer is independent. */
	cr_assert_eq(check(s, hdr(8, 0, 42, 1, -1), &dup), SL_OK);
	sl_pstate_free(s);
}

Test(pstate, only_the_last_five_batches_are_remembered)
{
	struct sl_pstate *s = sl_pstate_new(16);
	int64_t dup;
	for (int i = 0; i < 7; i++) {
		struct sl_batch_header h = hdr(1, 0, i * 2, 2, 1000 + i * 2);
		sl_pstate_applied(s, &h);
	}
	cr_assert_eq(check(s, hdr(1, 0, 4, 2, -1), &dup), SL_OK);
	cr_assert_eq(dup, 1004);
	/* The 1st and 2nd are gone: no longer a duplicate, and not next. */
	cr_assert_eq(check(s, hdr(1, 0, 2, 2, -1), &dup), SL_EOUT_OF_ORDER_SEQUENCE);
	cr_assert_eq(check(s, hdr(1, 0, 14, 1, -1), &dup), SL_OK);
	cr_assert_eq(dup, -1);
	sl_pstate_free(s);
}

Test(pstate, sequences_wrap_and_epochs_fence)
{
	struct sl_pstate *s = sl_pstate_new(16);
	int64_t dup;
	struct sl_batch_header h = hdr(3, 2, 0x7ffffffe, 3, 50); /* ..., 2^31-1, 0 */
	sl_pstate_applied(s, &h);
	cr_assert_eq(check(s, hdr(3, 2, 1, 1, -1), &dup), SL_OK);
	cr_assert_eq(dup, -1);
	cr_assert_eq(check(s, hdr(3, 1, 1, 1, -1), &dup), SL_EINVALID_PRODUCER_EPOCH);
	cr_assert(strstr(msg, "epoch 1 is older than this partition's 2") != NULL, "%s", msg);
	/* A newer epoch starts at 0 and starts over. */
	cr_assert_eq(check(s, hdr(3, 3, 5, 1, -1), &dup), SL_EOUT_OF_ORDER_SEQUENCE);
	cr_assert_eq(check(s, hdr(3, 3, 0, 1, -1), &dup), SL_OK);
	struct sl_batch_header n = hdr(3, 3, 0, 1, 60);
	sl_pstate_applied(s, &n);
	cr_assert_eq(check(s, hdr(3, 2, 1, 1, -1), &dup), SL_EINVALID_PRODUCER_EPOCH);
	sl_pstate_free(s);
}

Test(pstate, tentative_entries_pipeline_and_go_with_their_term)
{
	struct sl_pstate *s = sl_pstate_new(16);
	int64_t dup, last;
	bool tentative;
	sl_pstate_term(s, 4);
	struct sl_batch_header a = hdr(9, 0, 0, 2, 10), b = hdr(9, 0, 2, 2, 12);
	cr_assert_eq(sl_pstate_proposed(s, &a), SL_OK);
	cr_assert_eq(check(s, b, &dup), SL_OK, "the next batch follows a proposed one");
	cr_assert_eq(sl_pstate_proposed(s, &b), SL_OK);
	struct sl_batch_header again = hdr(9, 0, 2, 2, -1);
	cr_assert_eq(sl_pstate_check(s, &again, &dup, &last, &tentative, msg, sizeof(msg)), SL_OK);
	cr_assert_eq(dup, 12);
	cr_assert_eq(last, 13);
	cr_assert(tentative);
	sl_pstate_applied(s, &a);
	/* A new term: b was never applied, so it is forgotten. */
	sl_pstate_term(s, 5);
	cr_assert_eq(check(s, hdr(9, 0, 2, 2, -1), &dup), SL_OK);
	cr_assert_eq(dup, -1, "b is to be written again");
	cr_assert_eq(check(s, hdr(9, 0, 0, 2, -1), &dup), SL_OK);
	cr_assert_eq(dup, 10, "a was applied");
	sl_pstate_free(s);
}

Test(pstate, the_least_recently_used_producer_goes_first)
{
	struct sl_pstate *s = sl_pstate_new(3);
	int64_t dup;
	for (int64_t pid = 1; pid <= 3; pid++) {
		struct sl_batch_header h = hdr(pid, 0, 0, 1, pid * 10);
		sl_pstate_applied(s, &h);
	}
	cr_assert_eq(check(s, hdr(1, 0, 5, 1, -1), &dup), SL_EOUT_OF_ORDER_SEQUENCE); /* used */
	struct sl_batch_header h4 = hdr(4, 0, 0, 1, 40);
	sl_pstate_applied(s, &h4);
	cr_assert_eq(sl_pstate_count(s), 3);
	/* 2 was the least recently used: forgotten, so any sequence goes. */
	cr_assert_eq(check(s, hdr(2, 0, 5, 1, -1), &dup), SL_OK);
	cr_assert_eq(check(s, hdr(1, 0, 5, 1, -1), &dup), SL_EOUT_OF_ORDER_SEQUENCE);
	/* No producer id: nothing to check or keep. */
	struct sl_batch_header plain = hdr(-1, -1, -1, 3, 70);
	sl_pstate_applied(s, &plain);
	cr_assert_eq(check(s, plain, &dup), SL_OK);
	cr_assert_eq(sl_pstate_count(s), 3);
	sl_pstate_free(s);
}
