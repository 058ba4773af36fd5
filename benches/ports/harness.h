/* The timing harness of ports.c and ports512.c: a loop of independent instructions written in
 * inline assembly (no compiler scheduling or spills), timed, reported in cycles at `ghz` (the
 * programs' first argument). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define IT 20000000L
static int mem[64] __attribute__((aligned(64)));
static double ghz = 3.6;

/* Runs INIT once, then BODY four times per iteration; returns cycles per BODY (best of 5). `mem`
 * is operand %1. */
#define RUN_INIT(name, INIT, BODY)                                                               \
    static double name(void) {                                                                   \
        double best = 1e9;                                                                       \
        for (int r = 0; r < 5; r++) {                                                            \
            long n = IT;                                                                         \
            double t = now();                                                                    \
            __asm__ volatile(INIT "1:\n" BODY BODY BODY BODY "dec %0\n jnz 1b\n"                 \
                             : "+r"(n) : "r"(mem)                                                \
                             : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",  \
                               "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",       \
                               "xmm14", "xmm15");                                                \
            t = now() - t;                                                                       \
            if (t < best) best = t;                                                              \
        }                                                                                        \
        return best / (IT * 4.0) * ghz * 1e9;                                                    \
    }
