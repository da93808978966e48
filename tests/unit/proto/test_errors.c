/* The error table: names, messages, numbers and the retriable bit. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "errors.h"

TestSuite(errors, .timeout = 10);

static const struct {
	int num;
	const char *name;
	bool retriable;
	const char *msg;
} table[] = {
#define SL_ERR(name, num, retriable, msg) {num, #name, retriable, msg},
#include "errors.def"
#undef SL_ERR
};

#define NCODES (sizeof(table) / sizeof(table[0]))

Test(errors, every_code_has_a_name_and_a_message)
{
	cr_assert_gt(NCODES, 0);
	for (size_t i = 0; i < NCODES; i++) {
		const char *name = sl_err_name(table[i].num);
		const char *msg = sl_strerror(table[i].num);
		cr_assert_not_null(name);
		cr_assert_not_null(msg);
		cr_assert_gt(strlen(name), 0, "code %d", table[i].num);
		cr_assert_gt(strlen(msg), 0, "code %d", table[i].num);
		cr_assert_str_eq(name, table[i].name);
		cr_assert_str_eq(msg, table[i].msg);
		cr_assert_str_neq(name, "UNKNOWN_CODE");
	}
}

Test(errors, numbers_are_unique)
{
	for (size_t i = 0; i < NCODES; i++) {
		cr_assert_neq(table[i].num, SL_OK, "%s", table[i].name);
		for (size_t j = i + 1; j < NCODES; j++)
			cr_assert_neq(table[i].num, table[j].num, "%s and %s",
				      table[i].name, table[j].name);
	}
}

Test(errors, names_are_unique)
{
	for (size_t i = 0; i < NCODES; i++)
		for (size_t j = i + 1; j < NCODES; j++)
			cr_assert_str_neq(table[i].name, table[j].name);
}

Test(errors, enum_carries_the_table_numbers)
{
	cr_assert_eq(SL_OK, 0);
	cr_assert_eq(SL_EUNKNOWN, -1);
	cr_assert_eq(SL_ECORRUPT_MESSAGE, 2);
	cr_assert_eq(SL_ENOT_LEADER, 6);
	cr_assert_eq(SL_ENOMEM, 1000);
	cr_assert_eq(SL_EBATCH_TRUNCATED, 1100);
	cr_assert_str_eq(sl_err_name(SL_ENOT_LEADER), "NOT_LEADER");
	cr_assert_str_eq(sl_err_name(SL_EBATCH_BAD_CRC), "BATCH_BAD_CRC");
}

Test(errors, retriable_flag_follows_the_table)
{
	for (size_t i = 0; i < NCODES; i++)
		cr_assert_eq(sl_err_retriable(table[i].num), table[i].retriable, "%s",
			     table[i].name);
	cr_assert(sl_err_retriable(SL_ENOT_LEADER));
	cr_assert(sl_err_retriable(SL_EREQUEST_TIMED_OUT));
	cr_assert(sl_err_retriable(SL_ENOMEM));
	cr_assert_not(sl_err_retriable(SL_EOFFSET_OUT_OF_RANGE));
	cr_assert_not(sl_err_retriable(SL_EBATCH_BAD_CRC));
	cr_assert_not(sl_err_retriable(SL_EINVALID_ARGUMENT));
}

Test(errors, ok_has_its_own_name)
{
	cr_assert_str_eq(sl_err_name(SL_OK), "OK");
	cr_assert_gt(strlen(sl_strerror(SL_OK)), 0);
	cr_assert_not(sl_err_retriable(SL_OK));
}

Test(errors, unknown_number_is_unknown_code)
{
	static const int unknown[] = {-2, 4, 999, 1099, 99999, -100000};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		cr_assert_str_eq(sl_err_name(unknown[i]), "UNKNOWN_CODE");
		cr_assert_str_eq(sl_strerror(unknown[i]), "unknown error code");
		cr_assert_not(sl_err_retriable(unknown[i]));
	}
}

Test(errors, maps_errno_to_codes)
{
	cr_assert_eq(sl_err_from_errno(0), SL_OK);
	cr_assert_eq(sl_err_from_errno(ENOMEM), SL_ENOMEM);
	cr_assert_eq(sl_err_from_errno(ENOENT), SL_ENOT_FOUND);
	cr_assert_eq(sl_err_from_errno(EEXIST), SL_EEXISTS);
	cr_assert_eq(sl_err_from_errno(EINVAL), SL_EINVALID_ARGUMENT);
	cr_assert_eq(sl_err_from_errno(EIO), SL_EIO);
	cr_assert_eq(sl_err_from_errno(EACCES), SL_EIO);
}
