// Every kernel of autark.cu by name, for the CPU emulation: `emu_dispatch(name, grid, block, a)`
// runs one launch with the arguments in `a`, one 64-bit slot each in the kernel's order — a
// pointer as its address, an int or a float in the low 32 bits (the layout `autark_cuda::ops`
// passes to the driver). Included by harness.cpp (one kernel per process, under the
// sanitizers) and device.cpp (the emulated device a whole model runs on). Returns false for an
// unknown name.
#pragma once

#include "cuda_emu.h"
#include "../kernels/autark.cu"

#include <cstring>
#include <string>

namespace emu {
template <class T>
T* ptr(const uint64_t* a, int i) {
    return (T*)(uintptr_t)a[i];
}
inline int i32(const uint64_t* a, int i) { return (int)(uint32_t)a[i]; }
inline float f32(const uint64_t* a, int i) {
    const uint32_t bits = (uint32_t)a[i];
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
}  // namespace emu

inline bool emu_dispatch(const char* name, dim3 g, dim3 b, const uint64_t* a) {
    using emu::f32;
    using emu::i32;
    using emu::ptr;
    typedef void (*Gemv)(const u8*, const BlockQ8A*, float*, int, int, int);
    typedef void (*FloatGemv)(const u8*, const float*, float*, int, int, int);
    static const struct {
        const char* name;
        Gemv kernel;
    } gemvs[] = {
#define BOTH(k) {#k, k}, {#k "_x8", k##_x8}
        BOTH(gemv_q4_0_rows), BOTH(gemv_q4_0_rows16), BOTH(gemv_q4_1_rows), BOTH(gemv_q4_1_rows16),
        BOTH(gemv_q8_0_rows), BOTH(gemv_q8_0_rows16), BOTH(gemv_q5_0_rows),  BOTH(gemv_q5_1_rows),
        BOTH(gemv_q4_k_rows), BOTH(gemv_q5_k_rows),   BOTH(gemv_q6_k_rows),
    };
    static const struct {
        const char* name;
        FloatGemv kernel;
    } float_gemvs[] = {{"gemv_f16_rows", gemv_f16_rows}, {"gemv_f32_rows", gemv_f32_rows}};
#undef BOTH
    const std::string k(name);
    for (const auto& e : gemvs)
        if (k == e.name) {
            emu_launch(e.kernel, g, b, ptr<const u8>(a, 0), ptr<const BlockQ8A>(a, 1), ptr<float>(a, 2), i32(a, 3), i32(a, 4), i32(a, 5));
            return true;
        }
    for (const auto& e : float_gemvs)
        if (k == e.name) {
            emu_launch(e.kernel, g, b, ptr<const u8>(a, 0), ptr<const float>(a, 1), ptr<float>(a, 2), i32(a, 3), i32(a, 4), i32(a, 5));
            return true;
        }
    if (k == "quantize_act") emu_launch(quantize_act, g, b, ptr<const float>(a, 0), ptr<BlockQ8A>(a, 1), i32(a, 2));
    else if (k == "rmsnorm_f32")
        emu_launch(rmsnorm_f32, g, b, ptr<float>(a, 0), ptr<const float>(a, 1), ptr<const float>(a, 2), i32(a, 3), f32(a, 4));
    else if (k == "add_bias_f32") emu_launch(add_bias_f32, g, b, ptr<float>(a, 0), ptr<const float>(a, 1), i32(a, 2), i32(a, 3));
    else if (k == "add_f32") emu_launch(add_f32, g, b, ptr<float>(a, 0), ptr<const float>(a, 1), i32(a, 2));
    else if (k == "glu_f32") emu_launch(glu_f32, g, b, ptr<float>(a, 0), ptr<const float>(a, 1), i32(a, 2), i32(a, 3));
    else if (k == "rope_f32")
        emu_launch(rope_f32, g, b, ptr<float>(a, 0), ptr<float>(a, 1), ptr<const float>(a, 2), ptr<const float>(a, 3),
                   ptr<const int>(a, 4), i32(a, 5), i32(a, 6), i32(a, 7), i32(a, 8));
    else if (k == "kv_store_f32")
        emu_launch(kv_store_f32, g, b, ptr<float>(a, 0), ptr<float>(a, 1), ptr<const float>(a, 2), ptr<const float>(a, 3),
                   ptr<const int>(a, 4), i32(a, 5));
    else if (k == "kv_store_f16")
        emu_launch(kv_store_f16, g, b, ptr<u16>(a, 0), ptr<u16>(a, 1), ptr<const float>(a, 2), ptr<const float>(a, 3),
                   ptr<const int>(a, 4), i32(a, 5));
    else if (k == "attention_f32")
        emu_launch(attention_f32, g, b, ptr<float>(a, 0), ptr<const float>(a, 1), ptr<const float>(a, 2),
                   ptr<const float>(a, 3), ptr<float>(a, 4), ptr<const int>(a, 5), i32(a, 6), i32(a, 7), i32(a, 8), i32(a, 9),
                   i32(a, 10), i32(a, 11), f32(a, 12));
    else if (k == "attention_f16kv")
        emu_launch(attention_f16kv, g, b, ptr<float>(a, 0), ptr<const float>(a, 1), ptr<const u16>(a, 2),
                   ptr<const u16>(a, 3), ptr<float>(a, 4), ptr<const int>(a, 5), i32(a, 6), i32(a, 7), i32(a, 8), i32(a, 9),
                   i32(a, 10), i32(a, 11), f32(a, 12));
    else if (k == "attention_split_f16kv")
        emu_launch(attention_split_f16kv, g, b, ptr<float>(a, 0), ptr<const float>(a, 1), ptr<const u16>(a, 2),
                   ptr<const u16>(a, 3), ptr<const int>(a, 4), i32(a, 5), i32(a, 6), i32(a, 7), i32(a, 8), i32(a, 9),
                   i32(a, 10), i32(a, 11), f32(a, 12));
    else if (k == "attention_split_f32")
        emu_launch(attention_split_f32, g, b, ptr<float>(a, 0), ptr<const float>(a, 1), ptr<const float>(a, 2),
                   ptr<const float>(a, 3), ptr<const int>(a, 4), i32(a, 5), i32(a, 6), i32(a, 7), i32(a, 8), i32(a, 9),
                   i32(a, 10), i32(a, 11), f32(a, 12));
    else if (k == "attention_merge_f32")
        emu_launch(attention_merge_f32, g, b, ptr<float>(a, 0), ptr<const float>(a, 1), i32(a, 2), i32(a, 3), i32(a, 4));
    else if (k == "select_rows_f32") emu_launch(select_rows_f32, g, b, ptr<float>(a, 0), ptr<const int>(a, 1), i32(a, 2), i32(a, 3));
    else if (k == "argmax_f32") emu_launch(argmax_f32, g, b, ptr<const float>(a, 0), i32(a, 1), ptr<int>(a, 2));
    else return false;
    return true;
}
