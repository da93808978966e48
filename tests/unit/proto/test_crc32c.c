/* CRC-32C: known vectors, extension, and the SSE4.2 path against the
 * portable one on many lengths and alignments. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "testlib.h"

TestSuite(crc32c, .timeout = 10);

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static const struct {
	const char *name;
	crc_fn fn;
} impls[] = {
	{"sl_crc32c", sl_crc32c},
	{"sl_crc32c_sw", sl_crc32c_sw},
};

#define NIMPLS (sizeof(impls) / sizeof(impls[0]))

Test(crc32c, matches_check_value)
{
	for (size_t i = 0; i < NIMPLS; i++)
		cr_assert_eq(impls[i].fn(0, "123456789", 9), 0xE3069283u, "%s",
			     impls[i].name);
}

Test(crc32c, of_nothing_is_zero)
{
	for (size_t i = 0; i < NIMPLS; i++) {
		cr_assert_eq(impls[i].fn(0, NULL, 0), 0u, "%s", impls[i].name);
		cr_assert_eq(impls[i].fn(0x12345678u, "x", 0), 0x12345678u, "%s",
			     impls[i].name);
	}
}

/* RFC 3720 (iSCSI), appendix B.4. */
Test(crc32c, matches_rfc3720_vectors)
{
	uint8_t zeros[32], ones[32], inc[32], dec[32];

	memset(zeros, 0, sizeof(zeros));
	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++) {
		inc[i] = (uint8_t)i;
		dec[i] = (uint8_t)(31 - i);
	}
	for (size_t i = 0; i < NIMPLS; i++) {
		cr_assert_eq(impls[i].fn(0, zeros, 32), 0x8A9136AAu, "%s", impls[i].name);
		cr_assert_eq(impls[i].fn(0, ones, 32), 0x62A8AB43u, "%s", impls[i].name);
		cr_assert_eq(impls[i].fn(0, inc, 32), 0x46DD794Eu, "%s", impls[i].name);
		cr_assert_eq(impls[i].fn(0, dec, 32), 0x113FDB5Cu, "%s", impls[i].name);
	}
}

Test(crc32c, matches_text_vector)
{
	const char *s = "The quick brown fox jumps over the lazy dog";
	for (size_t i = 0; i < NIMPLS; i++)
		cr_assert_eq(impls[i].fn(0, s, strlen(s)), 0x22620404u, "%s",
			     impls[i].name);
}

Test(crc32c, extends_a_previous_result)
{
	uint64_t seed = 7;
	size_t n = 50000;
	uint8_t *buf = malloc(n);

	tl_fill_random(&seed, buf, n);
	for (size_t i = 0; i < NIMPLS; i++) {
		uint32_t whole = impls[i].fn(0, buf, n);
		for (size_t cut = 0; cut <= n; cut += 997) {
			uint32_t part = impls[i].fn(0, buf, cut);
			cr_assert_eq(impls[i].fn(part, buf + cut, n - cut), whole,
				     "%s cut %zu", impls[i].name, cut);
		}
	}
	free(buf);
}

Test(crc32c, hardware_matches_software_on_every_length_and_alignment)
{
	uint64_t seed = 42;
	size_t n = 4200;
	uint8_t *buf = malloc(n + 8);

	tl_fill_random(&seed, buf, n + 8);
	for (size_t align = 0; align < 8; align++)
		for (size_t len = 0; len <= n; len++)
			cr_assert_eq(sl_crc32c(0, buf + align, len),
				     sl_crc32c_sw(0, buf + align, len),
				     "len %zu align %zu", len, align);
	free(buf);
}

/* Lengths around the three-chain block sizes (3 x 256 and 3 x 4096). */
Test(crc32c, hardware_matches_software_on_long_buffers)
{
	static const size_t lens[] = {767, 768, 769, 1535, 1536, 1537, 12287,
				      12288, 12289, 24576 + 768 + 13, 65536,
				      1000003};
	uint64_t seed = 99;
	size_t max = 1000003 + 8;
	uint8_t *buf = malloc(max);

	tl_fill_random(&seed, buf, max);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		for (size_t align = 0; align < 8; align += 3) {
			uint32_t init = (uint32_t)tl_rand(&seed);
			cr_assert_eq(sl_crc32c(init, buf + align, lens[i]),
				     sl_crc32c_sw(init, buf + align, lens[i]),
				     "len %zu align %zu", lens[i], align);
		}
	free(buf);
}

Test(crc32c, hardware_matches_software_on_random_buffers)
{
	uint64_t seed = 2024;
	uint8_t *buf = malloc(20000);

	for (int round = 0; round < 2000; round++) {
		size_t off = tl_rand(&seed) % 64;
		size_t len = tl_rand(&seed) % (20000 - 64);
		uint32_t init = (uint32_t)tl_rand(&seed);
		tl_fill_random(&seed, buf + off, len);
		cr_assert_eq(sl_crc32c(init, buf + off, len),
			     sl_crc32c_sw(init, buf + off, len), "len %zu off %zu", len,
			     off);
	}
	free(buf);
}

Test(crc32c, detects_every_single_bit_flip)
{
	uint8_t buf[64];
	uint64_t seed = 5;

	tl_fill_random(&seed, buf, sizeof(buf));
	uint32_t good = sl_crc32c(0, buf, sizeof(buf));
	for (size_t bit = 0; bit < sizeof(buf) * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		cr_assert_neq(sl_crc32c(0, buf, sizeof(buf)), good, "bit %zu", bit);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
}

struct thread_arg {
	const uint8_t *buf;
	size_t len;
	uint32_t crc;
};

static void *crc_thread(void *p)
{
	struct thread_arg *a = p;
	a->crc = sl_crc32c_sw(0, a->buf, a->len);
	return NULL;
}

/* Criterion forks per test, so the tables are built here for the first
 * time, by whichever thread gets there first. */
Test(crc32c, builds_tables_safely_from_many_threads)
{
	enum { NTHREADS = 8 };
	pthread_t th[NTHREADS];
	struct thread_arg args[NTHREADS];
	uint8_t buf[4096];
	uint64_t seed = 11;

	tl_fill_random(&seed, buf, sizeof(buf));
	for (int i = 0; i < NTHREADS; i++) {
		args[i] = (struct thread_arg){buf, sizeof(buf), 0};
		cr_assert_eq(pthread_create(&th[i], NULL, crc_thread, &args[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NTHREADS; i++)
		cr_assert_eq(args[i].crc, sl_crc32c(0, buf, sizeof(buf)));
}
