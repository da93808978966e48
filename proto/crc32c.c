/* CRC-32C (Castagnoli), as Kafka's Crc32C computes it: reflected
 * polynomial 0x82F63B78, register preset to all ones and inverted at the
 * end. Both versions below work on the raw register between those two
 * inversions, so a result can be passed back in to extend it.
 *
 * The portable version is slice-by-8: eight 256-entry tables, where table k
 * maps a byte to its effect on the register after k more zero bytes.
 *
 * On x86-64 with SSE4.2 the crc32 instruction does 8 bytes at a time but
 * has a latency of 3 cycles, so one dependent chain uses a third of what
 * the CPU can do. For long inputs we run three chains over three adjacent
 * blocks of equal size and combine them: the register after A||B equals
 * the register after A advanced over len(B) zero bytes, XORed with the
 * register of B computed from zero (the CRC is linear over GF(2)). The
 * advance over a fixed number of zero bytes is itself linear, so it is
 * four table lookups, one per byte of the register. */
#include "batch.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82F63B78u

/* The two block sizes of the three-chain path, in bytes (multiples of 8). */
#define LONG_BLOCK 4096
#define SHORT_BLOCK 256

static uint32_t slice_table[8][256];
/* shift_long[k][b]: the register b << 8k advanced over LONG_BLOCK zeros. */
static uint32_t shift_long[4][256];
static uint32_t shift_short[4][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

/* Advances a raw register over n zero bytes, one byte at a time. Used only
 * to build the tables. */
static uint32_t advance_zeros(uint32_t reg, size_t n)
{
	while (n-- > 0)
		reg = (reg >> 8) ^ slice_table[0][reg & 0xff];
	return reg;
}

static void build_shift(uint32_t table[4][256], size_t nzeros)
{
	uint32_t basis[32];

	for (int i = 0; i < 32; i++)
		basis[i] = advance_zeros(1u << i, nzeros);
	for (int k = 0; k < 4; k++) {
		for (int b = 0; b < 256; b++) {
			uint32_t v = 0;
			for (int j = 0; j < 8; j++)
				if (b & (1 << j))
					v ^= basis[8 * k + j];
			table[k][b] = v;
		}
	}
}

static void build_tables(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t reg = n;
		for (int bit = 0; bit < 8; bit++)
			reg = (reg >> 1) ^ (POLY & (0u - (reg & 1u)));
		slice_table[0][n] = reg;
	}
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t reg = slice_table[0][n];
		for (int k = 1; k < 8; k++) {
			reg = (reg >> 8) ^ slice_table[0][reg & 0xff];
			slice_table[k][n] = reg;
		}
	}
	build_shift(shift_long, LONG_BLOCK);
	build_shift(shift_short, SHORT_BLOCK);
}

static inline void ensure_tables(void)
{
	pthread_once(&tables_once, build_tables);
}

uint32_t sl_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t reg = ~crc;

	ensure_tables();
	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		reg = (reg >> 8) ^ slice_table[0][(reg ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint64_t w = load_le64(p) ^ reg;
		reg = slice_table[7][w & 0xff] ^
		      slice_table[6][(w >> 8) & 0xff] ^
		      slice_table[5][(w >> 16) & 0xff] ^
		      slice_table[4][(w >> 24) & 0xff] ^
		      slice_table[3][(w >> 32) & 0xff] ^
		      slice_table[2][(w >> 40) & 0xff] ^
		      slice_table[1][(w >> 48) & 0xff] ^
		      slice_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		reg = (reg >> 8) ^ slice_table[0][(reg ^ *p++) & 0xff];
		len--;
	}
	return ~reg;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

static inline uint32_t shift(const uint32_t table[4][256], uint32_t reg)
{
	return table[0][reg & 0xff] ^ table[1][(reg >> 8) & 0xff] ^
	       table[2][(reg >> 16) & 0xff] ^ table[3][reg >> 24];
}

/* Three chains over blocks [p, p+n), [p+n, p+2n), [p+2n, p+3n). */
__attribute__((target("sse4.2")))
static inline uint32_t three_way(uint32_t reg, const uint8_t *p, size_t n,
				 const uint32_t table[4][256])
{
	uint64_t a = reg, b = 0, c = 0;
	const uint8_t *end = p + n;

	do {
		a = _mm_crc32_u64(a, load_le64(p));
		b = _mm_crc32_u64(b, load_le64(p + n));
		c = _mm_crc32_u64(c, load_le64(p + 2 * n));
		p += 8;
	} while (p < end);
	reg = shift(table, (uint32_t)a) ^ (uint32_t)b;
	return shift(table, reg) ^ (uint32_t)c;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint32_t reg = ~crc;

	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		reg = _mm_crc32_u8(reg, *p++);
		len--;
	}
	if (len >= 3 * SHORT_BLOCK) {
		ensure_tables();
		while (len >= 3 * LONG_BLOCK) {
			reg = three_way(reg, p, LONG_BLOCK, shift_long);
			p += 3 * LONG_BLOCK;
			len -= 3 * LONG_BLOCK;
		}
		while (len >= 3 * SHORT_BLOCK) {
			reg = three_way(reg, p, SHORT_BLOCK, shift_short);
			p += 3 * SHORT_BLOCK;
			len -= 3 * SHORT_BLOCK;
		}
	}
	uint64_t r64 = reg;
	while (len >= 32) {
		r64 = _mm_crc32_u64(r64, load_le64(p));
		r64 = _mm_crc32_u64(r64, load_le64(p + 8));
		r64 = _mm_crc32_u64(r64, load_le64(p + 16));
		r64 = _mm_crc32_u64(r64, load_le64(p + 24));
		p += 32;
		len -= 32;
	}
	while (len >= 8) {
		r64 = _mm_crc32_u64(r64, load_le64(p));
		p += 8;
		len -= 8;
	}
	reg = (uint32_t)r64;
	while (len > 0) {
		reg = _mm_crc32_u8(reg, *p++);
		len--;
	}
	return ~reg;
}
#endif

uint32_t sl_crc32c(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return crc32c_hw(crc, buf, len);
#endif
	return sl_crc32c_sw(crc, buf, len);
}
