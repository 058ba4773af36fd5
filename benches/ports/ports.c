/* Which x86 vector instructions compete with vpmaddubsw for execution ports (AVX2), and what a
 * few candidate inner-loop sequences cost per 32 products. No PMU is needed: each test times a
 * loop of independent instructions written in inline assembly (no compiler scheduling or
 * spills) and reports cycles at the clock given as the first argument (GHz; measure it with a
 * chain of dependent adds, default 3.6). Used for BENCHMARKS.md ("AVX2 ports on AMD Zen 4").
 *
 *   gcc -O2 -o /tmp/ports benches/ports/ports.c && /tmp/ports 3.6
 */
#include "harness.h"

/* ymm13 = bytes of 1, ymm14 = all ones, ymm11/ymm12 = 0.0f; ymm8-ymm10 accumulate. */
#define RUN(name, BODY)                                                                          \
    RUN_INIT(name,                                                                               \
             "vpcmpeqb %%ymm14,%%ymm14,%%ymm14\n vpabsb %%ymm14,%%ymm13\n"                       \
             "vxorps %%ymm12,%%ymm12,%%ymm12\n vxorps %%ymm11,%%ymm11,%%ymm11\n"                 \
             "vpxor %%ymm8,%%ymm8,%%ymm8\n vpxor %%ymm9,%%ymm9,%%ymm9\n"                         \
             "vpxor %%ymm10,%%ymm10,%%ymm10\n",                                                  \
             BODY)

/* Four independent vpmaddubsw, then two of the instruction under test. */
#define M4 "vpmaddubsw %%ymm13,%%ymm14,%%ymm0\n vpmaddubsw %%ymm13,%%ymm14,%%ymm1\n" \
           "vpmaddubsw %%ymm13,%%ymm14,%%ymm2\n vpmaddubsw %%ymm13,%%ymm14,%%ymm3\n"
RUN(t_alone, M4)
RUN(t_maddwd, M4 "vpmaddwd %%ymm12,%%ymm13,%%ymm4\n vpmaddwd %%ymm12,%%ymm13,%%ymm5\n")
RUN(t_signb, M4 "vpsignb %%ymm12,%%ymm13,%%ymm4\n vpsignb %%ymm12,%%ymm13,%%ymm5\n")
RUN(t_mulps, M4 "vmulps %%ymm12,%%ymm11,%%ymm4\n vmulps %%ymm12,%%ymm11,%%ymm5\n")
RUN(t_cvtsi, M4 "vcvtsi2ss %%eax,%%xmm6,%%xmm4\n vcvtsi2ss %%eax,%%xmm7,%%xmm5\n")
RUN(t_addps, M4 "vaddps %%ymm12,%%ymm11,%%ymm4\n vaddps %%ymm12,%%ymm11,%%ymm5\n")
RUN(t_cvtdq, M4 "vcvtdq2ps %%ymm13,%%ymm4\n vcvtdq2ps %%ymm13,%%ymm5\n")
RUN(t_cvtph, M4 "vcvtph2ps (%1),%%ymm4\n vcvtph2ps 16(%1),%%ymm5\n")
RUN(t_pand, M4 "vpand %%ymm12,%%ymm13,%%ymm4\n vpand %%ymm12,%%ymm13,%%ymm5\n")
RUN(t_psrlw, M4 "vpsrlw $4,%%ymm13,%%ymm4\n vpsrlw $4,%%ymm13,%%ymm5\n")
RUN(t_srlvd, M4 "vpsrlvd %%ymm12,%%ymm13,%%ymm4\n vpsrlvd %%ymm12,%%ymm13,%%ymm5\n")
RUN(t_bcast, M4 "vpbroadcastd (%1),%%ymm4\n vpbroadcastd 4(%1),%%ymm5\n")

/* One q8_0 unit (8 rows x 4 bytes x one token) as the AVX2 kernels run it: broadcast the
 * token's word, sign it by the weights, |w| x that, widen, accumulate (two chains). */
#define Q8(o, acc) "vpbroadcastd " #o "(%1),%%ymm0\n vpsignb %%ymm12,%%ymm0,%%ymm0\n"          \
                   "vpmaddubsw %%ymm0,%%ymm13,%%ymm0\n vpmaddwd %%ymm14,%%ymm0,%%ymm0\n"       \
                   "vpaddd %%ymm0," acc "," acc "\n"
RUN(t_q8, Q8(0, "%%ymm8") Q8(4, "%%ymm9"))
/* The same unit with the activation as two nibble planes (both broadcast, 2 vpmaddubsw, i16
 * sums): no sign, no per-piece widening. */
#define NIB(o, acc) "vpbroadcastd " #o "(%1),%%ymm0\n vpbroadcastd " #o "+32(%1),%%ymm1\n"      \
                    "vpmaddubsw %%ymm13,%%ymm0,%%ymm0\n vpmaddubsw %%ymm13,%%ymm1,%%ymm1\n"     \
                    "vpaddw %%ymm0," acc "," acc "\n vpaddw %%ymm1,%%ymm10,%%ymm10\n"
RUN(t_nib, NIB(0, "%%ymm8") NIB(4, "%%ymm9"))

int main(int argc, char **argv) {
    if (argc > 1) ghz = atof(argv[1]);
    printf("cycles at %.2f GHz\n4 vpmaddubsw alone: %.2f\n", ghz, t_alone());
    struct { const char *n; double (*f)(void); } v[] = {
        {"vpmaddwd", t_maddwd}, {"vpsignb", t_signb},     {"vmulps", t_mulps},
        {"vcvtsi2ss", t_cvtsi}, {"vaddps", t_addps},      {"vcvtdq2ps", t_cvtdq},
        {"vcvtph2ps m", t_cvtph}, {"vpand", t_pand},      {"vpsrlw", t_psrlw},
        {"vpsrlvd", t_srlvd},   {"vpbroadcastd m", t_bcast},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        printf("4 vpmaddubsw + 2 %-14s %.2f\n", v[i].n, v[i].f());
    printf("q8_0 unit, sign + maddubs + madd (per 32 products): %.2f\n", t_q8() / 2);
    printf("q8_0 unit, two nibble planes (per 32 products):     %.2f\n", t_nib() / 2);
    return 0;
}
