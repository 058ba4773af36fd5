// Runs one case of autark's CUDA kernels on the CPU (cuda_emu.h): quantize the activations,
// then one GEMV kernel, with the launch geometry the Rust side chose. Written by and read back by
// `autark_cuda::emu` (cuda/tests/emulated.rs compiles this with -fsanitize=address,undefined).
//
// In:  "AUTKEMU1", kernel name (32 bytes, NUL-padded), quantize grid and block (6 × u32),
//      GEMV grid and block (6 × u32), n_act_blocks, rows (or groups), nb (3 × i32),
//      weight bytes, x floats, y floats (3 × u64), then the weights and x.
// Out: the activation blocks (40 bytes each), then y.
//
// Or any other kernel ("AUTKOPS1"): kernel name (32 bytes), grid and block (6 × u32), buffers
// (u32 count; each u64 bytes and its bytes), arguments (u32 count; each a u8 kind — 0: buffer
// index, 1: i32, 2: f32 — and 4 bytes). Out: every buffer after the launch, in order.
#include "cuda_emu.h"
#include "../kernels/autark.cu"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

struct Entry {
    const char* name;
    void (*kernel)(const u8*, const BlockQ8A*, float*, int, int);
};

static const Entry GEMV_KERNELS[] = {
    {"gemv_q4_0_rows", gemv_q4_0_rows}, {"gemv_q4_0_rows16", gemv_q4_0_rows16},
    {"gemv_q4_1_rows", gemv_q4_1_rows}, {"gemv_q4_1_rows16", gemv_q4_1_rows16},
    {"gemv_q8_0_rows", gemv_q8_0_rows}, {"gemv_q8_0_rows16", gemv_q8_0_rows16},
    {"gemv_q5_0_rows", gemv_q5_0_rows}, {"gemv_q5_1_rows", gemv_q5_1_rows},
    {"gemv_q4_k_rows", gemv_q4_k_rows}, {"gemv_q5_k_rows", gemv_q5_k_rows},
    {"gemv_q6_k_rows", gemv_q6_k_rows},
};

// f16 and f32 weights read the f32 activations themselves (no quantization; n_act_blocks 0).
struct FloatEntry {
    const char* name;
    void (*kernel)(const u8*, const float*, float*, int, int);
};

static const FloatEntry FLOAT_GEMV_KERNELS[] = {{"gemv_f16_rows", gemv_f16_rows}, {"gemv_f32_rows", gemv_f32_rows}};

static int fail(const char* what) {
    std::fprintf(stderr, "harness: %s\n", what);
    return 2;
}

template <class T>
static bool take(const std::vector<char>& in, size_t& at, T* dst, size_t n) {
    const size_t bytes = sizeof(T) * n;
    if (in.size() - at < bytes) return false;
    std::memcpy(dst, in.data() + at, bytes);
    at += bytes;
    return true;
}

struct OpArgs {
    std::vector<std::vector<unsigned char>>* bufs;
    std::vector<std::pair<uint8_t, uint32_t>> a;
    template <class T>
    T* p(size_t i) const { return (T*)(*bufs).at(a.at(i).second).data(); }
    int i(size_t k) const { return (int)a.at(k).second; }
    float f(size_t k) const {
        float v;
        std::memcpy(&v, &a.at(k).second, 4);
        return v;
    }
};

static int run_op(const std::vector<char>& in, size_t at, const char* out_path) {
    char name[33] = {0};
    uint32_t geo[6], nb;
    if (!take(in, at, name, 32) || !take(in, at, geo, 6) || !take(in, at, &nb, 1)) return fail("truncated header");
    std::vector<std::vector<unsigned char>> bufs(nb);
    for (auto& b : bufs) {
        uint64_t n;
        if (!take(in, at, &n, 1)) return fail("truncated buffer");
        b.resize(n);
        if (!take(in, at, b.data(), n)) return fail("truncated buffer");
    }
    uint32_t na;
    if (!take(in, at, &na, 1)) return fail("truncated arguments");
    OpArgs x{&bufs, {}};
    for (uint32_t k = 0; k < na; k++) {
        uint8_t kind;
        uint32_t v;
        if (!take(in, at, &kind, 1) || !take(in, at, &v, 1)) return fail("truncated argument");
        if (kind == 0 && v >= nb) return fail("buffer index out of range");
        x.a.push_back({kind, v});
    }
    const dim3 g{geo[0], geo[1], geo[2]}, b{geo[3], geo[4], geo[5]};
    const std::string k(name);
    if (k == "rmsnorm_f32") emu_launch(rmsnorm_f32, g, b, x.p<float>(0), (const float*)x.p<float>(1), (const float*)x.p<float>(2), x.i(3), x.f(4));
    else if (k == "add_bias_f32") emu_launch(add_bias_f32, g, b, x.p<float>(0), (const float*)x.p<float>(1), x.i(2), x.i(3));
    else if (k == "add_f32") emu_launch(add_f32, g, b, x.p<float>(0), (const float*)x.p<float>(1), x.i(2));
    else if (k == "glu_f32") emu_launch(glu_f32, g, b, x.p<float>(0), (const float*)x.p<float>(1), x.i(2), x.i(3));
    else if (k == "rope_f32")
        emu_launch(rope_f32, g, b, x.p<float>(0), x.p<float>(1), (const float*)x.p<float>(2), (const float*)x.p<float>(3),
                   (const int*)x.p<int>(4), x.i(5), x.i(6), x.i(7), x.i(8));
    else if (k == "kv_store_f32")
        emu_launch(kv_store_f32, g, b, x.p<float>(0), x.p<float>(1), (const float*)x.p<float>(2), (const float*)x.p<float>(3),
                   (const int*)x.p<int>(4), x.i(5));
    else if (k == "attention_f32")
        emu_launch(attention_f32, g, b, x.p<float>(0), (const float*)x.p<float>(1), (const float*)x.p<float>(2),
                   (const float*)x.p<float>(3), x.p<float>(4), (const int*)x.p<int>(5), x.i(6), x.i(7), x.i(8), x.i(9), x.i(10),
                   x.i(11), x.f(12));
    else if (k == "select_rows_f32") emu_launch(select_rows_f32, g, b, x.p<float>(0), (const int*)x.p<int>(1), x.i(2), x.i(3));
    else return fail("unknown kernel");
    std::ofstream out(out_path, std::ios::binary);
    for (const auto& buf : bufs) out.write((const char*)buf.data(), (std::streamsize)buf.size());
    return out.good() ? 0 : fail("cannot write the result");
}

int main(int argc, char** argv) {
    if (argc != 3) return fail("usage: harness CASE_IN RESULT_OUT");
    std::ifstream f(argv[1], std::ios::binary);
    const std::vector<char> in((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t at = 0;
    char magic[8], name[33] = {0};
    uint32_t geo[12];
    int32_t p[3];
    uint64_t n[3];
    if (!take(in, at, magic, 8)) return fail("truncated");
    if (std::memcmp(magic, "AUTKOPS1", 8) == 0) return run_op(in, at, argv[2]);
    if (std::memcmp(magic, "AUTKEMU1", 8) != 0) return fail("bad magic");
    if (!take(in, at, name, 32) || !take(in, at, geo, 12) || !take(in, at, p, 3) || !take(in, at, n, 3))
        return fail("truncated header");
    std::vector<u8> w(n[0]);
    std::vector<float> x(n[1]), y(n[2], NAN);
    if (!take(in, at, w.data(), w.size()) || !take(in, at, x.data(), x.size())) return fail("truncated data");
    const Entry* gemv = nullptr;
    for (const Entry& e : GEMV_KERNELS)
        if (std::string(name) == e.name) gemv = &e;
    const FloatEntry* fgemv = nullptr;
    for (const FloatEntry& e : FLOAT_GEMV_KERNELS)
        if (std::string(name) == e.name) fgemv = &e;
    if (!gemv && !fgemv) return fail("unknown kernel");

    std::vector<BlockQ8A> a((size_t)p[0]);
    const dim3 grid{geo[6], geo[7], geo[8]}, block{geo[9], geo[10], geo[11]};
    if (fgemv) {
        emu_launch(fgemv->kernel, grid, block, (const u8*)w.data(), (const float*)x.data(), y.data(), p[1], p[2]);
    } else {
        emu_launch(quantize_act, dim3{geo[0], geo[1], geo[2]}, dim3{geo[3], geo[4], geo[5]},
                   (const float*)x.data(), a.data(), p[0]);
        emu_launch(gemv->kernel, grid, block, (const u8*)w.data(), (const BlockQ8A*)a.data(), y.data(), p[1], p[2]);
    }

    std::ofstream out(argv[2], std::ios::binary);
    out.write((const char*)a.data(), (std::streamsize)(a.size() * sizeof(BlockQ8A)));
    out.write((const char*)y.data(), (std::streamsize)(y.size() * sizeof(float)));
    return out.good() ? 0 : fail("cannot write the result");
}
