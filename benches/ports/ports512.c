/* Which 512-bit instructions of the AVX-512 q6_k decode compete with `vpdpbusd` for execution
 * ports, and how many of each issue per cycle (ports.c's method for AVX2: loops of independent
 * instructions in inline assembly, `harness.h`, timed, at the clock given as the first argument
 * in GHz, default 3.6; no PMU needed). Used for BENCHMARKS.md ("q6_k scales by scale", issue 23).
 *
 *   gcc -O2 -o /tmp/ports512 benches/ports/ports512.c && /tmp/ports512 3.6
 */
#include "harness.h"

/* zmm13 = bytes of 1, zmm14 = all ones; zmm0-zmm3 accumulate (`vpdpbusd`, FMA), zmm4-zmm7 take
 * the others. */
#define RUN(name, BODY) \
    RUN_INIT(name, "vpternlogd $0xff,%%zmm14,%%zmm14,%%zmm14\n vpabsb %%zmm14,%%zmm13\n", BODY)

#define X4(op) op " %%zmm13,%%zmm14,%%zmm4\n " op " %%zmm13,%%zmm14,%%zmm5\n " \
               op " %%zmm13,%%zmm14,%%zmm6\n " op " %%zmm13,%%zmm14,%%zmm7\n"
#define DP4 "vpdpbusd %%zmm13,%%zmm14,%%zmm0\n vpdpbusd %%zmm13,%%zmm14,%%zmm1\n" \
            "vpdpbusd %%zmm13,%%zmm14,%%zmm2\n vpdpbusd %%zmm13,%%zmm14,%%zmm3\n"
#define SH4 "vpsrlw $4,%%zmm13,%%zmm4\n vpsrlw $2,%%zmm13,%%zmm5\n" \
            "vpsllw $2,%%zmm13,%%zmm6\n vpsrlw $3,%%zmm13,%%zmm7\n"
#define TL4 "vpternlogd $0xe4,%%zmm13,%%zmm14,%%zmm4\n vpternlogd $0xe4,%%zmm13,%%zmm14,%%zmm5\n" \
            "vpternlogd $0xe4,%%zmm13,%%zmm14,%%zmm6\n vpternlogd $0xe4,%%zmm13,%%zmm14,%%zmm7\n"
#define GF4 "vgf2p8affineqb $0,%%zmm13,%%zmm14,%%zmm4\n vgf2p8affineqb $0,%%zmm13,%%zmm14,%%zmm5\n" \
            "vgf2p8affineqb $0,%%zmm13,%%zmm14,%%zmm6\n vgf2p8affineqb $0,%%zmm13,%%zmm14,%%zmm7\n"
#define MX4 "vpmovsxbd (%1),%%zmm4\n vpmovsxbd 16(%1),%%zmm5\n" \
            "vpmovsxbd 32(%1),%%zmm6\n vpmovsxbd 48(%1),%%zmm7\n"
#define BC4 "vpbroadcastd (%1),%%zmm4\n vpbroadcastd 4(%1),%%zmm5\n" \
            "vpbroadcastd 8(%1),%%zmm6\n vpbroadcastd 12(%1),%%zmm7\n"
#define FM4 "vfmadd231ps %%zmm13,%%zmm14,%%zmm0\n vfmadd231ps %%zmm13,%%zmm14,%%zmm1\n" \
            "vfmadd231ps %%zmm13,%%zmm14,%%zmm2\n vfmadd231ps %%zmm13,%%zmm14,%%zmm3\n"

RUN(t_dp, DP4) RUN(t_sh, SH4) RUN(t_tl, TL4) RUN(t_and, X4("vpandd")) RUN(t_gf, GF4)
RUN(t_mul, X4("vpmulld")) RUN(t_var, X4("vpsllvd")) RUN(t_shuf, X4("vpshufb")) RUN(t_mx, MX4)
RUN(t_bc, BC4) RUN(t_fma, FM4)
RUN(d_sh, DP4 SH4) RUN(d_tl, DP4 TL4) RUN(d_and, DP4 X4("vpandd")) RUN(d_gf, DP4 GF4)
RUN(d_mul, DP4 X4("vpmulld")) RUN(d_var, DP4 X4("vpsllvd")) RUN(d_shuf, DP4 X4("vpshufb"))
RUN(d_mx, DP4 MX4) RUN(d_bc, DP4 BC4) RUN(sh_mx, SH4 MX4)

int main(int argc, char **argv) {
    if (argc > 1) ghz = atof(argv[1]);
    struct { const char *n; double (*alone)(void); double (*with)(void); } v[] = {
        {"vpdpbusd", t_dp, 0},           {"vpsrlw/vpsllw imm", t_sh, d_sh},
        {"vpternlogd", t_tl, d_tl},      {"vpandd", t_and, d_and},
        {"vgf2p8affineqb", t_gf, d_gf},  {"vpmulld", t_mul, d_mul},
        {"vpsllvd", t_var, d_var},       {"vpshufb", t_shuf, d_shuf},
        {"vpmovsxbd m128", t_mx, d_mx},  {"vpbroadcastd m32", t_bc, d_bc},
        {"vfmadd231ps", t_fma, 0},
    };
    printf("cycles at %.2f GHz for 4 instructions alone, and for 4 vpdpbusd + 4 of them\n", ghz);
    for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) {
        printf("%-18s %5.2f", v[i].n, v[i].alone());
        if (v[i].with) printf("   with vpdpbusd %5.2f", v[i].with());
        printf("\n");
    }
    printf("4 shifts + 4 vpmovsxbd m128: %.2f\n", sh_mx());
    return 0;
}
