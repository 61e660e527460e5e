/*
 * smc: self-modifying code, the guest side of keel's translator tests
 * (crates/keel/tests/jit.rs). Built at test time with riscv64-linux-gnu-gcc -static -O2
 * -pthread and put into the guest's initramfs as /bin/smc.
 *
 *   smc ROUNDS CALLS
 *
 * Every case writes RISC-V machine code into memory, runs it, rewrites it and runs it
 * again, ROUNDS times; each version runs CALLS times, so that a translator that translates
 * a block after some runs has translated the old version before it is overwritten. Every
 * run must return what the newest version returns:
 *
 *   rwx      a function returning a constant (lui/addiw/ret, or addi/ret: the shape of
 *            the code changes too) in an RWX page, rewritten in place, then
 *            __builtin___clear_cache (the riscv_flush_icache system call)
 *   mprotect the same in a page made writable (PROT_READ|PROT_WRITE) for each rewrite and
 *            executable (PROT_READ|PROT_EXEC) again before it runs
 *   alias    a memfd page mapped twice: written through a writable view, run through an
 *            executable one at another address (the same physical page)
 *   self     code that stores an instruction into itself, runs fence.i, then runs the
 *            instruction it stored (a different one on every call in even rounds, the same
 *            one for the whole round in odd rounds)
 *   thread   written and flushed by one thread, run by another thread pinned to another
 *            CPU (the flush must reach every hart)
 *
 * For each case it prints "CASE rounds=R calls=N wrong=W" (and the first few wrong
 * results), then "smc ok" or "smc FAILED" (exit status 1).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

typedef long (*fn0)(void);
typedef long (*fn1)(long);

enum { ZERO = 0, RA = 1, T0 = 5, A0 = 10 };

static uint32_t enc_i(int op, int rd, int f3, int rs1, int imm)
{
	return ((uint32_t)(imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}

static uint32_t enc_s(int op, int f3, int rs1, int rs2, int imm)
{
	return ((uint32_t)((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) |
	       ((imm & 0x1f) << 7) | op;
}

static uint32_t addi(int rd, int rs1, int imm) { return enc_i(0x13, rd, 0, rs1, imm); }
static uint32_t addiw(int rd, int rs1, int imm) { return enc_i(0x1b, rd, 0, rs1, imm); }
static uint32_t lui(int rd, uint32_t imm20) { return (imm20 << 12) | (rd << 7) | 0x37; }
static uint32_t auipc(int rd) { return (rd << 7) | 0x17; }
static uint32_t sw(int rs2, int rs1, int imm) { return enc_s(0x23, 2, rs1, rs2, imm); }
static const uint32_t RET = 0x00008067;	/* jalr zero, 0(ra) */
static const uint32_t FENCE_I = 0x0000100f;

/* The value version `round` of the constant function returns. */
static long value_of(int round)
{
	return round % 3 == 2 ? (round % 2000) - 1000 : 0x12345 * (long)(round + 1);
}

/* Writes version `round` of the constant function at `code`. Small values take addi/ret,
 * the others lui/addiw/ret (a different block each time the shape changes). */
static void write_constant(uint32_t *code, int round)
{
	long v = value_of(round);
	if (v >= -2048 && v < 2048) {
		code[0] = addi(A0, ZERO, (int)v);
		code[1] = RET;
		code[2] = 0;
	} else {
		int32_t lo = ((int32_t)v << 20) >> 20;
		uint32_t hi = (uint32_t)((v - lo) >> 12) & 0xfffff;
		code[0] = lui(A0, hi);
		code[1] = addiw(A0, A0, lo);
		code[2] = RET;
	}
}

struct tally {
	const char *name;
	long calls, wrong;
};

static void check(struct tally *t, int round, int call, long got, long want)
{
	t->calls++;
	if (got != want && t->wrong++ < 5)
		printf("%s: round %d call %d returned %ld, expected %ld\n", t->name, round, call,
		       got, want);
}

static int report(struct tally *t, int rounds)
{
	printf("%s rounds=%d calls=%ld wrong=%ld\n", t->name, rounds, t->calls, t->wrong);
	return t->wrong == 0;
}

static void *map(int prot)
{
	void *p = mmap(NULL, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("smc: mmap");
		exit(1);
	}
	return p;
}

static void protect(void *p, int prot)
{
	if (mprotect(p, PAGE, prot) != 0) {
		perror("smc: mprotect");
		exit(1);
	}
}

static int case_rwx(int rounds, int calls)
{
	struct tally t = { "rwx" };
	uint32_t *code = map(PROT_READ | PROT_WRITE | PROT_EXEC);
	for (int r = 0; r < rounds; r++) {
		write_constant(code, r);
		__builtin___clear_cache((char *)code, (char *)(code + 4));
		for (int c = 0; c < calls; c++)
			check(&t, r, c, ((fn0)code)(), value_of(r));
	}
	return report(&t, rounds);
}

static int case_mprotect(int rounds, int calls)
{
	struct tally t = { "mprotect" };
	uint32_t *code = map(PROT_READ | PROT_WRITE);
	for (int r = 0; r < rounds; r++) {
		if (r > 0)
			protect(code, PROT_READ | PROT_WRITE);
		write_constant(code, r);
		protect(code, PROT_READ | PROT_EXEC);
		__builtin___clear_cache((char *)code, (char *)(code + 4));
		for (int c = 0; c < calls; c++)
			check(&t, r, c, ((fn0)code)(), value_of(r));
	}
	return report(&t, rounds);
}

static int case_alias(int rounds, int calls)
{
	struct tally t = { "alias" };
	int fd = memfd_create("smc", 0);
	if (fd < 0 || ftruncate(fd, PAGE) != 0) {
		perror("smc: memfd");
		exit(1);
	}
	uint32_t *rw = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	uint32_t *rx = mmap(NULL, PAGE, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
	if (rw == MAP_FAILED || rx == MAP_FAILED) {
		perror("smc: mmap memfd");
		exit(1);
	}
	for (int r = 0; r < rounds; r++) {
		write_constant(rw, r);
		__builtin___clear_cache((char *)rx, (char *)(rx + 4));
		for (int c = 0; c < calls; c++)
			check(&t, r, c, ((fn0)rx)(), value_of(r));
	}
	return report(&t, rounds);
}

static int case_self(int rounds, int calls)
{
	struct tally t = { "self" };
	uint32_t *code = map(PROT_READ | PROT_WRITE | PROT_EXEC);
	/* a0 = the instruction to store at offset 12; it then sets a0 itself. */
	code[0] = auipc(T0);
	code[1] = sw(A0, T0, 12);
	code[2] = FENCE_I;
	code[3] = addi(A0, ZERO, 0); /* overwritten on every call */
	code[4] = RET;
	__builtin___clear_cache((char *)code, (char *)(code + 5));
	for (int r = 0; r < rounds; r++) {
		for (int c = 0; c < calls; c++) {
			/* Even rounds store a new instruction on every call, odd ones the
			 * same one for the whole round. */
			int k = (r % 2 ? r : r * calls + c) % 4000 - 2000;
			check(&t, r, c, ((fn1)code)((long)(int32_t)addi(A0, ZERO, k)), k);
		}
	}
	return report(&t, rounds);
}

struct handoff {
	uint32_t *code;
	int rounds, calls;
	int posted;	/* the round whose code is in place */
	int done;	/* the last round the runner finished */
	struct tally t;
};

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *runner(void *arg)
{
	struct handoff *h = arg;
	pin(1);
	for (int r = 0; r < h->rounds; r++) {
		while (__atomic_load_n(&h->posted, __ATOMIC_ACQUIRE) < r)
			;
		for (int c = 0; c < h->calls; c++)
			check(&h->t, r, c, ((fn0)h->code)(), value_of(r));
		__atomic_store_n(&h->done, r, __ATOMIC_RELEASE);
	}
	return NULL;
}

static int case_thread(int rounds, int calls)
{
	static struct handoff h;
	h.code = map(PROT_READ | PROT_WRITE | PROT_EXEC);
	h.rounds = rounds;
	h.calls = calls;
	h.posted = -1;
	h.done = -1;
	h.t.name = "thread";
	pin(0);
	pthread_t thread;
	if (pthread_create(&thread, NULL, runner, &h) != 0) {
		perror("smc: pthread_create");
		exit(1);
	}
	for (int r = 0; r < rounds; r++) {
		while (__atomic_load_n(&h.done, __ATOMIC_ACQUIRE) < r - 1)
			sched_yield();
		write_constant(h.code, r);
		__builtin___clear_cache((char *)h.code, (char *)(h.code + 4));
		__atomic_store_n(&h.posted, r, __ATOMIC_RELEASE);
	}
	pthread_join(thread, NULL);
	return report(&h.t, rounds);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: smc ROUNDS CALLS\n");
		return 2;
	}
	int rounds = atoi(argv[1]), calls = atoi(argv[2]);
	int ok = case_rwx(rounds, calls);
	ok &= case_mprotect(rounds, calls);
	ok &= case_alias(rounds, calls);
	ok &= case_self(rounds, calls);
	if (sysconf(_SC_NPROCESSORS_ONLN) > 1)
		ok &= case_thread(rounds, calls);
	printf("smc %s\n", ok ? "ok" : "FAILED");
	return ok ? 0 : 1;
}
