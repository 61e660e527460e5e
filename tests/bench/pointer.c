/*
 * pointer: memory latency. A linked list of 48 MiB of 64-byte nodes (one per cache line),
 * linked in a random single-cycle permutation (Sattolo's shuffle), is walked several laps:
 * each step is a dependent load from an unpredictable address, so every step misses the
 * host's caches and the CPU model's own TLB/translation cache. This is the cost of guest
 * memory access itself (address translation, page walks), which CPU-bound loops hide.
 *
 * Only the walk is timed (CLOCK_MONOTONIC), not building the list. Prints
 * `checksum <hex>` (a sum of the visited nodes' values) and `elapsed <seconds>`.
 * Optional arguments: the list size in MiB (default 48), the laps (default 2).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct node {
	struct node *next;
	uint64_t value;
	uint64_t pad[6]; /* one node per 64-byte cache line */
};

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
	size_t mib = argc > 1 ? atoi(argv[1]) : 48;
	int laps = argc > 2 ? atoi(argv[2]) : 2;
	size_t n = (mib << 20) / sizeof(struct node);
	struct node *nodes = malloc(n * sizeof *nodes);
	uint32_t *perm = malloc(n * sizeof *perm);
	if (!nodes || !perm) {
		fprintf(stderr, "pointer: out of memory\n");
		return 1;
	}
	/* Sattolo's algorithm: a uniformly random permutation with a single cycle, so the walk
	 * visits every node once per lap. */
	uint64_t rng = 0x2545f4914f6cdd1dull;
	for (size_t i = 0; i < n; i++)
		perm[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		size_t j = rng % i;
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t i = 0; i < n; i++) {
		nodes[i].next = &nodes[perm[i]];
		nodes[i].value = i * 0x9e3779b97f4a7c15ull >> 32;
	}
	free(perm);

	double t0 = now();
	struct node *p = &nodes[0];
	uint64_t sum = 0;
	for (size_t step = n * laps; step > 0; step--) {
		sum = sum * 3 + p->value;
		p = p->next;
	}
	double t1 = now();

	printf("checksum %016llx %zu\n", (unsigned long long)sum, (size_t)(p - nodes));
	printf("elapsed %.6f\n", t1 - t0);
	return 0;
}
