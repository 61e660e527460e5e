/*
 * compress: a two-stage compressor, as gzip-like tools are built, over 8 MiB of generated
 * text-like data (a skewed vocabulary of pseudo-words, numbers and punctuation: compressible
 * about 2:1, not trivially).
 *
 * Stage 1 is LZ77 with hash chains over a 64 KiB window (greedy parsing, LZSS token format:
 * a flag byte per 8 items, a literal byte or a 3-byte match). Stage 2 is an order-0 canonical
 * Huffman code per 64 KiB block of stage 1's output, lengths limited to 12 bits, decoded
 * through a lookup table. The timed work is compress + decompress + compare: byte loads and
 * compares, hashing, short data-dependent loops, bit twiddling, unpredictable branches.
 *
 * Prints `checksum <hex>` (FNV-1a of the compressed bytes, and the sizes) and
 * `elapsed <seconds>` (CLOCK_MONOTONIC around the timed work); exits 1 if the round trip
 * does not give back the input. Optional argument: the input size in MiB (default 8).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW 65536 /* offsets fit 16 bits: 1..65535 */
#define WMASK (WINDOW - 1)
#define MIN_MATCH 4
#define MAX_MATCH (255 + MIN_MATCH)
#define HASH_BITS 15
#define CHAIN 4 /* candidates tried per position */
#define BLOCK 65536 /* Huffman block size */
#define MAXBITS 12 /* longest Huffman code: the decoding table has 2^MAXBITS entries */

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Text-like input: words from a 4096-word vocabulary, the low indices far more frequent. */
static void generate(uint8_t *out, size_t n) {
	enum { WORDS = 4096 };
	static char vocab[WORDS][12];
	static const char letters[] = "etaoinshrdlucmfwypvbgkjqxz";
	for (int w = 0; w < WORDS; w++) {
		int len = 2 + next() % 9;
		for (int i = 0; i < len; i++) {
			uint64_t r = next();
			vocab[w][i] = letters[(r % 26) * (r / 26 % 26) / 26]; /* skewed to common letters */
		}
		vocab[w][len] = 0;
	}
	size_t p = 0;
	while (p < n) {
		uint64_t r = next();
		char buf[32];
		int len;
		if (r % 23 == 0) {
			len = snprintf(buf, sizeof buf, "%u", (unsigned)(r >> 40) % 100000);
		} else {
			unsigned a = (r >> 8) % WORDS, b = (r >> 24) % WORDS;
			len = snprintf(buf, sizeof buf, "%s", vocab[(uint64_t)a * b / WORDS]);
		}
		buf[len++] = r % 11 == 0 ? ',' : r % 17 == 0 ? '\n' : ' ';
		for (int i = 0; i < len && p < n; i++)
			out[p++] = buf[i];
	}
}

static inline uint32_t hash4(const uint8_t *p) {
	uint32_t v;
	memcpy(&v, p, 4);
	return (v * 2654435761u) >> (32 - HASH_BITS);
}

/* Stage 1: LZ77, returns the output length (at most n + n/8 + 1). */
static size_t lz_compress(const uint8_t *in, size_t n, uint8_t *out) {
	static int32_t head[1 << HASH_BITS];
	static int32_t prev[WINDOW];
	memset(head, -1, sizeof head);
	size_t ip = 0, op = 0, flag_at = 0;
	int item = 8;
	while (ip < n) {
		if (item == 8) {
			flag_at = op++;
			out[flag_at] = 0;
			item = 0;
		}
		size_t best = 0, best_off = 0;
		size_t maxlen = n - ip < MAX_MATCH ? n - ip : MAX_MATCH;
		if (maxlen >= MIN_MATCH) {
			int32_t cand = head[hash4(in + ip)];
			for (int chain = CHAIN; cand >= 0 && ip - cand < WINDOW && chain > 0; chain--) {
				if (in[cand + best] == in[ip + best]) {
					size_t l = 0;
					while (l < maxlen && in[cand + l] == in[ip + l])
						l++;
					if (l > best) {
						best = l;
						best_off = ip - cand;
						if (l == maxlen)
							break;
					}
				}
				cand = prev[cand & WMASK];
			}
		}
		size_t step = 1;
		if (best >= MIN_MATCH) {
			out[flag_at] |= 1 << item;
			out[op++] = best - MIN_MATCH;
			out[op++] = best_off & 255;
			out[op++] = best_off >> 8;
			step = best;
		} else {
			out[op++] = in[ip];
		}
		item++;
		for (size_t end = ip + step; ip < end; ip++) {
			if (ip + MIN_MATCH <= n) {
				uint32_t h = hash4(in + ip);
				prev[ip & WMASK] = head[h];
				head[h] = ip;
			}
		}
	}
	return op;
}

static size_t lz_decompress(const uint8_t *in, size_t n, uint8_t *out) {
	size_t ip = 0, op = 0;
	while (ip < n) {
		unsigned flags = in[ip++];
		for (int item = 0; item < 8 && ip < n; item++) {
			if (flags & (1 << item)) {
				size_t len = in[ip] + MIN_MATCH, off = in[ip + 1] | in[ip + 2] << 8;
				ip += 3;
				for (size_t i = 0; i < len; i++, op++) /* overlapping copies repeat bytes */
					out[op] = out[op - off];
			} else {
				out[op++] = in[ip++];
			}
		}
	}
	return op;
}

/* Huffman code lengths for freq[256] (two-queue construction), limited to MAXBITS by
 * flattening the frequencies and retrying. */
static void code_lengths(const uint32_t *freq_in, uint8_t *len) {
	uint32_t freq[256];
	memcpy(freq, freq_in, sizeof freq);
	memset(len, 0, 256);
	for (;;) {
		int sym[256], n = 0;
		for (int s = 0; s < 256; s++)
			if (freq[s])
				sym[n++] = s;
		if (n == 1) {
			len[sym[0]] = 1;
			return;
		}
		/* Insertion sort by frequency: n <= 256, once per 64 KiB block. */
		for (int i = 1; i < n; i++)
			for (int j = i; j > 0 && freq[sym[j]] < freq[sym[j - 1]]; j--) {
				int t = sym[j];
				sym[j] = sym[j - 1];
				sym[j - 1] = t;
			}
		uint64_t weight[512];
		int parent[512], depth[512];
		for (int i = 0; i < n; i++)
			weight[i] = freq[sym[i]];
		int leaf = 0, inner = n, made = n;
		for (int k = 0; k < n - 1; k++) {
			int pick[2];
			for (int c = 0; c < 2; c++) {
				if (leaf < n && (inner == made || weight[leaf] <= weight[inner]))
					pick[c] = leaf++;
				else
					pick[c] = inner++;
			}
			weight[made] = weight[pick[0]] + weight[pick[1]];
			parent[pick[0]] = parent[pick[1]] = made++;
		}
		depth[made - 1] = 0;
		int maxd = 0;
		for (int i = made - 2; i >= 0; i--) {
			depth[i] = depth[parent[i]] + 1;
			if (i < n && depth[i] > maxd)
				maxd = depth[i];
		}
		if (maxd <= MAXBITS) {
			for (int i = 0; i < n; i++)
				len[sym[i]] = depth[i];
			return;
		}
		for (int s = 0; s < 256; s++)
			if (freq[s])
				freq[s] = (freq[s] >> 1) | 1;
	}
}

/* Block format: 128 bytes of 4-bit code lengths, the block's byte count and the length of
 * its codes (4 bytes each, LE), then the codes MSB first, padded to a byte. */
static size_t huff_compress(const uint8_t *in, size_t n, uint8_t *out) {
	size_t op = 0;
	for (size_t start = 0; start < n; start += BLOCK) {
		size_t bn = n - start < BLOCK ? n - start : BLOCK;
		const uint8_t *b = in + start;
		uint32_t freq[256] = {0};
		for (size_t i = 0; i < bn; i++)
			freq[b[i]]++;
		uint8_t len[256];
		code_lengths(freq, len);
		unsigned count[MAXBITS + 1] = {0}, next_code[MAXBITS + 1], code[256];
		for (int s = 0; s < 256; s++)
			count[len[s]]++;
		count[0] = 0;
		unsigned c = 0;
		for (int l = 1; l <= MAXBITS; l++) {
			c = (c + count[l - 1]) << 1;
			next_code[l] = c;
		}
		for (int s = 0; s < 256; s++)
			if (len[s])
				code[s] = next_code[len[s]]++;
		for (int s = 0; s < 256; s += 2)
			out[op++] = len[s] | len[s + 1] << 4;
		for (int i = 0; i < 4; i++)
			out[op++] = bn >> (8 * i);
		size_t packed_at = op;
		op += 4;
		uint64_t bits = 0;
		int nbits = 0;
		for (size_t i = 0; i < bn; i++) {
			bits = bits << len[b[i]] | code[b[i]];
			nbits += len[b[i]];
			while (nbits >= 8) {
				out[op++] = bits >> (nbits - 8);
				nbits -= 8;
			}
		}
		if (nbits)
			out[op++] = bits << (8 - nbits);
		for (int i = 0; i < 4; i++)
			out[packed_at + i] = (op - packed_at - 4) >> (8 * i);
	}
	return op;
}

static size_t huff_decompress(const uint8_t *in, size_t n, uint8_t *out) {
	size_t ip = 0, op = 0;
	while (ip < n) {
		uint8_t len[256];
		for (int s = 0; s < 256; s += 2) {
			len[s] = in[ip] & 15;
			len[s + 1] = in[ip++] >> 4;
		}
		size_t bn = 0, packed = 0;
		for (int i = 0; i < 4; i++)
			bn |= (size_t)in[ip++] << (8 * i);
		for (int i = 0; i < 4; i++)
			packed |= (size_t)in[ip++] << (8 * i);
		/* A table indexed by the next MAXBITS bits: every index that starts with a symbol's
		 * code gives that symbol and its length. Codes are assigned as the encoder does. */
		static uint16_t table[1 << MAXBITS];
		unsigned count[MAXBITS + 1] = {0}, next_code[MAXBITS + 1];
		for (int s = 0; s < 256; s++)
			count[len[s]]++;
		count[0] = 0;
		unsigned c = 0;
		for (int l = 1; l <= MAXBITS; l++) {
			c = (c + count[l - 1]) << 1;
			next_code[l] = c;
		}
		for (int s = 0; s < 256; s++) {
			if (!len[s])
				continue;
			unsigned first = next_code[len[s]]++ << (MAXBITS - len[s]);
			for (unsigned i = 0; i < 1u << (MAXBITS - len[s]); i++)
				table[first + i] = s | len[s] << 8;
		}
		/* The bit buffer is MSB-aligned; bytes past the block read as zeros. */
		const uint8_t *b = in + ip;
		size_t bp = 0;
		uint64_t bits = 0;
		int nbits = 0;
		for (size_t i = 0; i < bn; i++) {
			while (nbits <= 56) {
				bits |= (uint64_t)(bp < packed ? b[bp] : 0) << (56 - nbits);
				bp++;
				nbits += 8;
			}
			unsigned e = table[bits >> (64 - MAXBITS)];
			out[op++] = e & 255;
			bits <<= e >> 8;
			nbits -= e >> 8;
		}
		ip += packed;
	}
	return op;
}

int main(int argc, char **argv) {
	size_t n = (size_t)(argc > 1 ? atoi(argv[1]) : 8) << 20;
	uint8_t *input = malloc(n), *lz = malloc(n + n / 8 + 16);
	uint8_t *packed = malloc(n + n / 4 + 4096), *unpacked = malloc(n + n / 8 + 16);
	uint8_t *output = malloc(n + MAX_MATCH);
	if (!input || !lz || !packed || !unpacked || !output) {
		fprintf(stderr, "compress: out of memory\n");
		return 1;
	}
	generate(input, n);

	double t0 = now();
	size_t lz_n = lz_compress(input, n, lz);
	size_t packed_n = huff_compress(lz, lz_n, packed);
	size_t unpacked_n = huff_decompress(packed, packed_n, unpacked);
	size_t out_n = lz_decompress(unpacked, unpacked_n, output);
	int ok = unpacked_n == lz_n && out_n == n && memcmp(output, input, n) == 0;
	double t1 = now();

	if (!ok) {
		fprintf(stderr, "compress: round trip FAILED (%zu -> %zu -> %zu bytes)\n", n, packed_n,
			out_n);
		return 1;
	}
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < packed_n; i++)
		h = (h ^ packed[i]) * 0x100000001b3ull;
	printf("checksum %016llx %zu %zu %zu\n", (unsigned long long)h, n, lz_n, packed_n);
	printf("elapsed %.6f\n", t1 - t0);
	return 0;
}
