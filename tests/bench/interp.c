/*
 * interp: a bytecode interpreter, the inner loop of every scripting language. A small stack VM
 * (64-bit cells, a switch dispatch loop, call frames with arguments and locals, a flat data
 * memory) runs a bytecode program that, several rounds over, computes a recursive fib (calls
 * and returns), a sieve of Eratosthenes (loads and stores to VM memory) and the total
 * Collatz path length of a range (division, modulo, data-dependent branches).
 *
 * What it measures is the host CPU model's handling of an indirect-jump dispatch loop with
 * short, branchy handlers: the pattern a binary translator finds hardest.
 *
 * Prints `checksum <hex>` (the program's result) and `elapsed <seconds>` (CLOCK_MONOTONIC
 * around the VM run). Optional argument: the number of rounds (default 3).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum op {
	PUSH, LDL, STL, ADD, SUB, MUL, DIV, MOD, LT, EQ, JMP, JZ, JNZ, CALL, ENTER, RET, LDM, STM,
	POP, HALT
};

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --- the assembler: emit words, labels patched once known --- */
static int64_t code[1024];
static int pc_emit;
static void emit(int64_t w) { code[pc_emit++] = w; }
static void op0(enum op o) { emit(o); }
static void op1(enum op o, int64_t a) { emit(o); emit(a); }
static int here(void) { return pc_emit; }
/* A forward jump: returns where to patch the target. */
static int jump(enum op o) { emit(o); emit(-1); return pc_emit - 1; }
static void patch(int at) { code[at] = pc_emit; }

/* --- the VM --- */
#define STACK 65536
#define MEMORY (1 << 20)
static uint64_t mem[MEMORY];

static uint64_t run(const int64_t *code, int entry) {
	static uint64_t st[STACK];
	static struct { int64_t pc, fp; } frames[STACK];
	int64_t pc = entry, sp = 0, fp = 0, rp = 0;
	for (;;) {
		switch (code[pc++]) {
		case PUSH: st[sp++] = code[pc++]; break;
		case LDL: st[sp++] = st[fp + code[pc++]]; break;
		case STL: st[fp + code[pc++]] = st[--sp]; break;
		case ADD: sp--; st[sp - 1] += st[sp]; break;
		case SUB: sp--; st[sp - 1] -= st[sp]; break;
		case MUL: sp--; st[sp - 1] *= st[sp]; break;
		case DIV: sp--; st[sp - 1] /= st[sp]; break;
		case MOD: sp--; st[sp - 1] %= st[sp]; break;
		case LT: sp--; st[sp - 1] = (int64_t)st[sp - 1] < (int64_t)st[sp]; break;
		case EQ: sp--; st[sp - 1] = st[sp - 1] == st[sp]; break;
		case JMP: pc = code[pc]; break;
		case JZ: pc = st[--sp] == 0 ? code[pc] : pc + 1; break;
		case JNZ: pc = st[--sp] != 0 ? code[pc] : pc + 1; break;
		case CALL: /* target, argument count: the arguments become the callee's first locals */
			frames[rp].pc = pc + 2;
			frames[rp++].fp = fp;
			fp = sp - code[pc + 1];
			pc = code[pc];
			break;
		case ENTER: /* zeroed locals after the arguments */
			for (int64_t i = code[pc++]; i > 0; i--)
				st[sp++] = 0;
			break;
		case RET: {
			uint64_t v = st[--sp];
			sp = fp;
			fp = frames[--rp].fp;
			pc = frames[rp].pc;
			st[sp++] = v;
			break;
		}
		case LDM: st[sp - 1] = mem[st[sp - 1] % MEMORY]; break;
		case STM: sp -= 2; mem[st[sp] % MEMORY] = st[sp + 1]; break;
		case POP: sp--; break;
		case HALT: return st[sp - 1];
		default: fprintf(stderr, "interp: bad opcode at %lld\n", (long long)pc - 1); exit(1);
		}
	}
}

/* fib(n) = n < 2 ? n : fib(n-1) + fib(n-2); local 0 = n */
static int asm_fib(void) {
	int fib = here();
	op1(LDL, 0); op1(PUSH, 2); op0(LT);
	int rec = jump(JZ);
	op1(LDL, 0); op0(RET);
	patch(rec);
	op1(LDL, 0); op1(PUSH, 1); op0(SUB); op1(CALL, fib); emit(1);
	op1(LDL, 0); op1(PUSH, 2); op0(SUB); op1(CALL, fib); emit(1);
	op0(ADD); op0(RET);
	return fib;
}

/* sieve(n): the number of primes below n; locals 0 = n, 1 = i, 2 = j, 3 = count */
static int asm_sieve(void) {
	int sieve = here();
	op1(ENTER, 3);
	op1(PUSH, 0); op1(STL, 2);
	int clear = here();
	op1(LDL, 2); op1(LDL, 0); op0(LT);
	int clear_end = jump(JZ);
	op1(LDL, 2); op1(PUSH, 0); op0(STM);
	op1(LDL, 2); op1(PUSH, 1); op0(ADD); op1(STL, 2);
	op1(JMP, clear);
	patch(clear_end);
	op1(PUSH, 2); op1(STL, 1);
	int outer = here();
	op1(LDL, 1); op1(LDL, 0); op0(LT);
	int done = jump(JZ);
	op1(LDL, 1); op0(LDM);
	int next = jump(JNZ);
	op1(LDL, 3); op1(PUSH, 1); op0(ADD); op1(STL, 3);
	op1(LDL, 1); op1(LDL, 1); op0(MUL); op1(STL, 2);
	int inner = here();
	op1(LDL, 2); op1(LDL, 0); op0(LT);
	int inner_end = jump(JZ);
	op1(LDL, 2); op1(PUSH, 1); op0(STM);
	op1(LDL, 2); op1(LDL, 1); op0(ADD); op1(STL, 2);
	op1(JMP, inner);
	patch(inner_end);
	patch(next);
	op1(LDL, 1); op1(PUSH, 1); op0(ADD); op1(STL, 1);
	op1(JMP, outer);
	patch(done);
	op1(LDL, 3); op0(RET);
	return sieve;
}

/* collatz(n): the sum over k in 1..n of the steps k takes to reach 1;
 * locals 0 = n, 1 = k, 2 = x, 3 = total */
static int asm_collatz(void) {
	int collatz = here();
	op1(ENTER, 3);
	op1(PUSH, 1); op1(STL, 1);
	int outer = here();
	op1(LDL, 1); op1(LDL, 0); op0(LT);
	int done = jump(JZ);
	op1(LDL, 1); op1(STL, 2);
	int step = here();
	op1(LDL, 2); op1(PUSH, 1); op0(EQ);
	int next = jump(JNZ);
	op1(LDL, 3); op1(PUSH, 1); op0(ADD); op1(STL, 3);
	op1(LDL, 2); op1(PUSH, 2); op0(MOD);
	int odd = jump(JNZ);
	op1(LDL, 2); op1(PUSH, 2); op0(DIV); op1(STL, 2);
	op1(JMP, step);
	patch(odd);
	op1(LDL, 2); op1(PUSH, 3); op0(MUL); op1(PUSH, 1); op0(ADD); op1(STL, 2);
	op1(JMP, step);
	patch(next);
	op1(LDL, 1); op1(PUSH, 1); op0(ADD); op1(STL, 1);
	op1(JMP, outer);
	patch(done);
	op1(LDL, 3); op0(RET);
	return collatz;
}

int main(int argc, char **argv) {
	int rounds = argc > 1 ? atoi(argv[1]) : 3;
	int fib = asm_fib(), sieve = asm_sieve(), collatz = asm_collatz();
	/* main: locals 0 = acc, 1 = round; acc = acc * 31 + fib(20 + round % 3)
	 * + sieve(40000 + round) + collatz(2000 + round) for each round. */
	int entry = here();
	op1(ENTER, 2);
	int loop = here();
	op1(LDL, 1); op1(PUSH, rounds); op0(LT);
	int end = jump(JZ);
	op1(LDL, 0); op1(PUSH, 31); op0(MUL);
	op1(LDL, 1); op1(PUSH, 3); op0(MOD); op1(PUSH, 20); op0(ADD); op1(CALL, fib); emit(1);
	op0(ADD);
	op1(LDL, 1); op1(PUSH, 40000); op0(ADD); op1(CALL, sieve); emit(1);
	op0(ADD);
	op1(LDL, 1); op1(PUSH, 2000); op0(ADD); op1(CALL, collatz); emit(1);
	op0(ADD); op1(STL, 0);
	op1(LDL, 1); op1(PUSH, 1); op0(ADD); op1(STL, 1);
	op1(JMP, loop);
	patch(end);
	op1(LDL, 0); op0(HALT);

	double t0 = now();
	uint64_t result = run(code, entry);
	double t1 = now();
	printf("checksum %016llx\n", (unsigned long long)result);
	printf("elapsed %.6f\n", t1 - t0);
	return 0;
}
