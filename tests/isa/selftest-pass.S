/*
 * selftest-pass.S - minimal passing program: proves that the runner reports
 * a pass (tohost = 1, finisher 0x5555) for a program whose checks succeed.
 *
 * Checks:
 *   1  x0 reads as zero
 *   2  a register holds what li put there
 */
#include "keel_test.h"

keel_main:
    CHECK 1, x0, 0
    li a0, 0x1234
    CHECK 2, a0, 0x1234
    TEST_PASS
