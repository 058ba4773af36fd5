// Runs one case of autark's CUDA kernels on the CPU (cuda_emu.h): quantize the activations,
// then one GEMV kernel, with the launch geometry the Rust side chose. Written by and read back by
// `autark_cuda::emu` (cuda/tests/emulated.rs compiles this with -fsanitize=address,undefined).
//
// In:  "AUTKEMU1", kernel name (32 bytes, NUL-padded), quantize grid and block (6 × u32),
//      GEMV grid and block (6 × u32), n_act_blocks, rows (or groups), nb, tokens (4 × i32),
//      weight bytes, x floats, y floats (3 × u64), then the weights and x. With n_act_blocks 0
//      (f16, f32 weights) the GEMV reads x itself.
// Out: the activation blocks (40 bytes each), then y.
//
// Or any other kernel ("AUTKOPS1"): kernel name (32 bytes), grid and block (6 × u32), buffers
// (u32 count; each u64 bytes and its bytes), arguments (u32 count; each a u8 kind — 0: buffer
// index, 1: i32, 2: f32 — and 4 bytes). Out: every buffer after the launch, in order.
#include "dispatch.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

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
    std::vector<uint64_t> args;
    for (uint32_t k = 0; k < na; k++) {
        uint8_t kind;
        uint32_t v;
        if (!take(in, at, &kind, 1) || !take(in, at, &v, 1)) return fail("truncated argument");
        if (kind == 0 && v >= nb) return fail("buffer index out of range");
        args.push_back(kind == 0 ? (uint64_t)(uintptr_t)bufs[v].data() : (uint64_t)v);
    }
    if (!emu_dispatch(name, dim3{geo[0], geo[1], geo[2]}, dim3{geo[3], geo[4], geo[5]}, args.data()))
        return fail("unknown kernel");
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
    int32_t p[4];
    uint64_t n[3];
    if (!take(in, at, magic, 8)) return fail("truncated");
    if (std::memcmp(magic, "AUTKOPS1", 8) == 0) return run_op(in, at, argv[2]);
    if (std::memcmp(magic, "AUTKEMU1", 8) != 0) return fail("bad magic");
    if (!take(in, at, name, 32) || !take(in, at, geo, 12) || !take(in, at, p, 4) || !take(in, at, n, 3))
        return fail("truncated header");
    std::vector<u8> w(n[0]);
    std::vector<float> x(n[1]), y(n[2], NAN);
    if (!take(in, at, w.data(), w.size()) || !take(in, at, x.data(), x.size())) return fail("truncated data");
    // f16 and f32 weights read x itself (no activation blocks: n_act_blocks 0).
    std::vector<BlockQ8A> a((size_t)p[0]);
    const uint64_t input = p[0] > 0 ? (uint64_t)(uintptr_t)a.data() : (uint64_t)(uintptr_t)x.data();
    if (p[0] > 0) {
        const uint64_t qargs[] = {(uint64_t)(uintptr_t)x.data(), input, (uint64_t)(uint32_t)p[0]};
        emu_dispatch("quantize_act", dim3{geo[0], geo[1], geo[2]}, dim3{geo[3], geo[4], geo[5]}, qargs);
    }
    const uint64_t gargs[] = {(uint64_t)(uintptr_t)w.data(), input, (uint64_t)(uintptr_t)y.data(), (uint64_t)(uint32_t)p[1],
                              (uint64_t)(uint32_t)p[2], (uint64_t)(uint32_t)p[3]};
    if (!emu_dispatch(name, dim3{geo[6], geo[7], geo[8]}, dim3{geo[9], geo[10], geo[11]}, gargs)) return fail("unknown kernel");

    std::ofstream out(argv[2], std::ios::binary);
    out.write((const char*)a.data(), (std::streamsize)(a.size() * sizeof(BlockQ8A)));
    out.write((const char*)y.data(), (std::streamsize)(y.size() * sizeof(float)));
    return out.good() ? 0 : fail("cannot write the result");
}
