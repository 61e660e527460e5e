/*
 * smp-counter.S - every hart hammers one shared counter, with AMOADD and with LR/SC loops,
 * and the total must come out exact: the A extension's atomicity across harts that keel runs
 * on separate host threads (unprivileged spec ch. 8, "A": AMOs and LR/SC are atomic with
 * respect to all harts).
 *
 * Run with exactly NHARTS harts (keel's runner passes --vcpus 4 for smp-* programs; under
 * QEMU use -smp 4). All harts start at _start in M-mode. This file does not use
 * keel_test.h's _start, which would have every hart clear .bss and share one stack.
 *
 * Checks (hart 0 reports):
 *   1  the AMOADD.D counter equals NHARTS * ITERATIONS
 *   2  the LR/SC counter equals NHARTS * ITERATIONS
 *   3  the AMOADD.W counter (32-bit, sign-extended reads) equals NHARTS * ITERATIONS
 *   4  all NHARTS harts finished within 10 s of mtime (10 MHz)
 */

#define NHARTS 4
#define ITERATIONS 20000
#define FINISHER_BASE 0x00100000
#define CLINT_MTIME 0x0200bff8
#define TIMEOUT_TICKS 100000000

    .section .text.init, "ax", @progbits
    .globl _start
    .option norvc
_start:
    csrr s0, mhartid

    li s1, ITERATIONS
    la s2, amo_counter
    la s3, lrsc_counter
    la s4, amo_counter_w
1:
    li t1, 1
    amoadd.d zero, t1, (s2)
    amoadd.w zero, t1, (s4)
2:  lr.d t2, (s3)
    addi t2, t2, 1
    sc.d t3, t2, (s3)
    bnez t3, 2b
    addi s1, s1, -1
    bnez s1, 1b

    la t0, done
    li t1, 1
    amoadd.d zero, t1, (t0)
    bnez s0, park

    /* Hart 0: wait until all NHARTS harts are done (or time runs out), then check. */
    li s5, NHARTS
    li t0, CLINT_MTIME
    ld s7, 0(t0)
    li t1, TIMEOUT_TICKS
    add s7, s7, t1
4:  li a0, 4
    li t0, CLINT_MTIME
    ld t1, 0(t0)
    bgeu t1, s7, fail
    la t0, done
    ld t1, 0(t0)
    bne t1, s5, 4b

    li t0, ITERATIONS
    mul s6, s5, t0             /* expected total */
    li a0, 1
    ld t1, amo_counter
    bne t1, s6, fail
    li a0, 2
    ld t1, lrsc_counter
    bne t1, s6, fail
    li a0, 3
    lw t1, amo_counter_w
    bne t1, s6, fail
    li a0, 0
fail:
    /* tohost = (code << 1) | 1, then the finisher for QEMU. */
    slli t0, a0, 1
    ori t0, t0, 1
    la t1, tohost
    sd t0, 0(t1)
    li t1, FINISHER_BASE
    li t2, 0x5555
    beqz a0, 5f
    slli t2, a0, 16
    li t3, 0x3333
    or t2, t2, t3
5:  sw t2, 0(t1)
park:
    wfi
    j park

    .data
    .balign 64
amo_counter:   .dword 0
    .balign 64
lrsc_counter:  .dword 0
    .balign 64
amo_counter_w: .word 0
    .balign 64
done:          .dword 0

    .section .tohost, "aw", @progbits
    .balign 8
    .globl tohost
tohost: .dword 0
    .globl fromhost
fromhost: .dword 0
