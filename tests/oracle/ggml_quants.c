/* An oracle for autark's quantizers: ggml's own reference quantizers (`quantize_row_*_ref` in
 * ggml-quants.c, as vendored by PyPI's llama-cpp-python; built by scripts/ggml-oracle.sh).
 *
 *   ggml-quants TYPE N < values.f32 > blocks.bin
 *
 * reads N little-endian f32 values (N a multiple of the type's block) and writes the blocks.
 * TYPE: q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q5_k q6_k. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ggml-quants.c references these four functions of ggml.c on paths this program never takes
 * (importance-matrix quantization and error reporting). */
void ggml_abort(const char *file, int line, const char *fmt, ...) {
    (void)fmt;
    fprintf(stderr, "ggml_abort at %s:%d\n", file, line);
    abort();
}
size_t ggml_row_size(int type, int64_t ne) { (void)type; (void)ne; abort(); }
size_t ggml_type_size(int type) { (void)type; abort(); }
const char *ggml_type_name(int type) { (void)type; return "?"; }

/* Declared with untyped blocks: the harness only moves bytes. */
void quantize_row_q4_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_1_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_1_ref(const float *x, void *y, int64_t k);
void quantize_row_q8_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, void *y, int64_t k);

static const struct {
    const char *name;
    void (*quantize)(const float *, void *, int64_t);
    int block, bytes;
} TYPES[] = {
    {"q4_0", quantize_row_q4_0_ref, 32, 18},   {"q4_1", quantize_row_q4_1_ref, 32, 20},
    {"q5_0", quantize_row_q5_0_ref, 32, 22},   {"q5_1", quantize_row_q5_1_ref, 32, 24},
    {"q8_0", quantize_row_q8_0_ref, 32, 34},   {"q4_k", quantize_row_q4_K_ref, 256, 144},
    {"q5_k", quantize_row_q5_K_ref, 256, 176}, {"q6_k", quantize_row_q6_K_ref, 256, 210},
};

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s TYPE N < f32 > blocks\n", argv[0]);
        return 2;
    }
    long long n = atoll(argv[2]);
    for (size_t t = 0; t < sizeof TYPES / sizeof TYPES[0]; t++) {
        if (strcmp(argv[1], TYPES[t].name) != 0) continue;
        if (n <= 0 || n % TYPES[t].block != 0) {
            fprintf(stderr, "N must be a positive multiple of %d\n", TYPES[t].block);
            return 2;
        }
        float *x = malloc((size_t)n * sizeof(float));
        size_t out_len = (size_t)(n / TYPES[t].block) * (size_t)TYPES[t].bytes;
        unsigned char *y = calloc(out_len, 1);
        if (!x || !y || fread(x, sizeof(float), (size_t)n, stdin) != (size_t)n) {
            fprintf(stderr, "could not read %lld values\n", n);
            return 1;
        }
        TYPES[t].quantize(x, y, n);
        fwrite(y, 1, out_len, stdout);
        return 0;
    }
    fprintf(stderr, "unknown type %s\n", argv[1]);
    return 2;
}
