/* The few symbols of ggml.c that ggml's CPU dot products and quantizers reference, so that
 * scripts/ggml-peer.sh can build them into a shared library without the rest of ggml. Only
 * the f16 table is used on the paths the benchmarks call; the others abort if ever reached. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

float ggml_table_f32_f16[1 << 16];
float ggml_table_f32_e8m0_half[1 << 8];
float ggml_table_f32_ue4m3[1 << 8];

__attribute__((constructor)) static void fill_tables(void) {
    for (int i = 0; i < (1 << 16); i++) {
        ggml_table_f32_f16[i] = _cvtsh_ss((unsigned short)i);
    }
}

void ggml_abort(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "ggml peer: ggml_abort at %s:%d (%s)\n", file, line, fmt);
    abort();
}

size_t ggml_type_size(int type) {
    fprintf(stderr, "ggml peer: ggml_type_size(%d) is not part of the peer\n", type);
    abort();
}

size_t ggml_row_size(int type, int64_t ne) {
    (void)ne;
    return ggml_type_size(type);
}

const char *ggml_type_name(int type) {
    (void)type;
    return "?";
}
