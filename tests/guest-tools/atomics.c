/*
 * atomics: the guest side of keel's translator tests (crates/keel/tests/jit.rs). Built at
 * test time with riscv64-linux-gnu-gcc -static -O2 -pthread and put into the guest's
 * initramfs as /bin/atomics.
 *
 *   atomics THREADS ITERS        each thread does ITERS rounds, then the totals are checked
 *   atomics THREADS until FILE   the threads run until FILE exists (checked every 10 ms)
 *
 * Thread i is pinned to CPU i % (online CPUs), so on an SMP guest the threads really run on
 * different vCPUs at once. Each round of each thread increments four shared counters:
 *
 *   amo64   __atomic_fetch_add on a 64-bit word (amoadd.d)
 *   amo32   __atomic_fetch_add on a 32-bit word (amoadd.w)
 *   cas     a compare-exchange loop on a 64-bit word (lr.d/sc.d; GCC has no other way)
 *   locked  a plain load and store under a spinlock taken with a 32-bit compare-exchange
 *           (lr.w/sc.w) and released with a store-release
 *
 * and counts its own rounds in a private variable. At the end every shared counter must
 * equal the sum of the private counts (and THREADS * ITERS with a fixed count). It prints
 *
 *   threads=T cpus=C rounds=R amo64=A amo32=B cas=X locked=L
 *   atomics ok                  (or "atomics MISMATCH", with exit status 1)
 *
 * where C is how many distinct CPUs the threads were seen on.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

static uint64_t amo64;
static uint32_t amo32;
static uint64_t cas;
static uint32_t lock;
/* Only touched under the lock; volatile so each round really loads and stores it. */
static volatile uint64_t locked;
static int stop;

struct worker {
	pthread_t thread;
	int index;
	uint64_t iters; /* 0: until stop */
	uint64_t rounds;
	int cpu;
	/* Keeps the workers' private counts on separate cache lines. */
	char pad[64];
};

static void spin_lock(uint32_t *l)
{
	for (;;) {
		uint32_t expected = 0;
		if (__atomic_compare_exchange_n(l, &expected, 1, 0, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return;
		while (__atomic_load_n(l, __ATOMIC_RELAXED))
			;
	}
}

static void spin_unlock(uint32_t *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(w->index % (cpus > 0 ? cpus : 1), &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
		fprintf(stderr, "atomics: thread %d: cannot pin it\n", w->index);
	uint64_t n = 0;
	for (;;) {
		if (w->iters ? n == w->iters : __atomic_load_n(&stop, __ATOMIC_RELAXED))
			break;
		__atomic_fetch_add(&amo64, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&amo32, 1, __ATOMIC_SEQ_CST);
		uint64_t old = __atomic_load_n(&cas, __ATOMIC_RELAXED);
		while (!__atomic_compare_exchange_n(&cas, &old, old + 1, 1, __ATOMIC_ACQ_REL,
						    __ATOMIC_RELAXED))
			;
		spin_lock(&lock);
		locked = locked + 1;
		spin_unlock(&lock);
		n++;
	}
	w->rounds = n;
	w->cpu = sched_getcpu();
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 0;
	int until = argc == 4 && strcmp(argv[2], "until") == 0;
	if ((argc != 3 && !until) || threads < 1 || threads > MAX_THREADS) {
		fprintf(stderr, "usage: atomics THREADS ITERS | atomics THREADS until FILE\n");
		return 2;
	}
	uint64_t iters = until ? 0 : strtoull(argv[2], NULL, 10);
	static struct worker w[MAX_THREADS];
	for (int i = 0; i < threads; i++) {
		w[i].index = i;
		w[i].iters = iters;
		if (pthread_create(&w[i].thread, NULL, work, &w[i]) != 0) {
			fprintf(stderr, "atomics: cannot start thread %d\n", i);
			return 1;
		}
	}
	printf("atomics: started %d threads\n", threads);
	fflush(stdout);
	if (until) {
		struct timespec tick = { 0, 10 * 1000 * 1000 };
		while (access(argv[3], F_OK) != 0)
			nanosleep(&tick, NULL);
		__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	}
	uint64_t rounds = 0;
	int seen[MAX_THREADS] = { 0 }, cpus = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].thread, NULL);
		rounds += w[i].rounds;
		if (w[i].cpu >= 0 && w[i].cpu < MAX_THREADS && !seen[w[i].cpu]++)
			cpus++;
	}
	printf("threads=%d cpus=%d rounds=%llu amo64=%llu amo32=%u cas=%llu locked=%llu\n",
	       threads, cpus, (unsigned long long)rounds, (unsigned long long)amo64, amo32,
	       (unsigned long long)cas, (unsigned long long)locked);
	int ok = amo64 == rounds && amo32 == (uint32_t)rounds && cas == rounds &&
		 locked == rounds && (until || rounds == iters * threads);
	printf("atomics %s\n", ok ? "ok" : "MISMATCH");
	return ok ? 0 : 1;
}
