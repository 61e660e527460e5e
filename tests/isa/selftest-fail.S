/*
 * selftest-fail.S - deliberately failing program: checks 1..6 pass, check 7
 * fails, so the program must exit with code 7 (tohost = (7 << 1) | 1 = 15,
 * finisher (7 << 16) | 0x3333, QEMU exit status 7).  The runner uses it to
 * prove that failures are detected and that the code is reported exactly.
 *
 * Checks:
 *   1..6  trivially true comparisons
 *   7     1 == 2 (false: this is the failing check)
 *   8     never reached
 */
#include "keel_test.h"

keel_main:
    li a0, 1
    CHECK 1, a0, 1
    CHECK 2, x0, 0
    li a1, -1
    CHECK 3, a1, -1
    CHECK 4, a1, 0xffffffffffffffff
    addi a2, a0, 1
    CHECK 5, a2, 2
    CHECK_REG 6, a0, a0
    CHECK 7, a0, 2          /* fails on purpose */
    CHECK 8, a0, 1
    TEST_PASS
