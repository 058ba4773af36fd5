// autark's CUDA kernels (docs/CUDA.md).
//
// One source, two compilers:
// - NVRTC compiles it at run time for the device's compute capability (`autark_cuda::Gpu`);
// - the host C++ compiler compiles it with `emu/cuda_emu.h` (each CUDA thread a thread), so the
//   kernels run on the CPU under AddressSanitizer and UBSan against the scalar CPU kernels
//   (`cargo test -p autark-cuda`, both `__CUDA_ARCH__` paths).
// Rules that keep both working: no #include (NVRTC has no standard headers); every
// `__syncthreads` and shuffle is reached by all threads of the block (no early return before
// one: out-of-range threads carry a `live` flag instead); inline PTX only with a portable twin
// under `#if defined(__CUDA_ARCH__) && !defined(AUTARK_EMU)`.
//
// Block layouts are the file's (`kernels/src/types.rs`, docs/FORMAT.md): weights are read in
// place, row-major or in the `rows16` interleave; activations are quantized to `BlockQ8A`
// (f32 d, i32 sum, 32 × i8), exactly as `autark_kernels::scalar::quantize_act` does.

typedef signed char i8;
typedef unsigned char u8;
typedef unsigned short u16;
typedef int i32;
typedef unsigned int u32;
typedef unsigned long long u64;

#define QK 32
#define GROUP 16
#define FULL_MASK 0xffffffffu

struct BlockQ8A {
    float d;
    i32 sum;
    i8 qs[QK];
};

// Stored block types, in the order of `autark_cuda::kernels::Quant`.
#define Q4_0 0
#define Q4_1 1
#define Q8_0 2

// Bytes of one block (row-major) and where its quant bytes start.
template <int T> struct Block;
template <> struct Block<Q4_0> { enum { BYTES = 18, QS = 2, WORDS = 4 }; };
template <> struct Block<Q4_1> { enum { BYTES = 20, QS = 4, WORDS = 4 }; };
template <> struct Block<Q8_0> { enum { BYTES = 34, QS = 2, WORDS = 8 }; };

__device__ __forceinline__ float f16_to_f32(u16 h) {
#if defined(__CUDA_ARCH__) && !defined(AUTARK_EMU)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    const u32 sign = (u32)(h & 0x8000u) << 16;
    const u32 exp = (h >> 10) & 0x1fu;
    const u32 mant = h & 0x3ffu;
    if (exp == 0) {
        const float v = (float)mant * 5.9604644775390625e-8f; // 2^-24: subnormals and zero
        return sign ? -v : v;
    }
    const u32 bits = exp == 31 ? (sign | 0x7f800000u | (mant << 13))
                               : (sign | ((exp + 112u) << 23) | (mant << 13));
    return __uint_as_float(bits);
#endif
}

// c + Σ_k a.byte[k]·b.byte[k] over the 4 signed bytes of a and b: `__dp4a` from compute 6.1 on,
// byte products before (compute 5.3, Jetson Nano).
__device__ __forceinline__ i32 dot4(i32 a, i32 b, i32 c) {
#if __CUDA_ARCH__ >= 610
    return __dp4a(a, b, c);
#else
    for (int k = 0; k < 32; k += 8) {
        c += (i32)(i8)(a >> k) * (i32)(i8)(b >> k);
    }
    return c;
#endif
}

// Activations to 8-bit blocks: one warp per block of 32 values; scale amax/127, round half
// away from zero (`roundf`), integer sum. Bit for bit the scalar kernel's result.
extern "C" __global__ void quantize_act(const float* x, BlockQ8A* out, int n_blocks) {
    const int lane = threadIdx.x & 31;
    const int b = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const bool live = b < n_blocks;
    const float v = live ? x[(u64)b * QK + lane] : 0.0f;
    float amax = fabsf(v);
    for (int m = 16; m > 0; m >>= 1) {
        amax = fmaxf(amax, __shfl_xor_sync(FULL_MASK, amax, m));
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const i32 q = (i32)roundf(v * id);
    i32 sum = q;
    for (int m = 16; m > 0; m >>= 1) {
        sum += __shfl_xor_sync(FULL_MASK, sum, m);
    }
    if (live) {
        out[b].qs[lane] = (i8)q;
        if (lane == 0) {
            out[b].d = d;
            out[b].sum = sum;
        }
    }
}

// The integer part of one block's dot product from a lane's share of its quant words:
// `word(k)` gives quant word k (4 bytes), the lane takes words first, first + step, ….
// q4: word k holds nibbles of values 4k..4k+3 (low) and 16+4k.. (high).
template <int T, class Word>
__device__ __forceinline__ i32 block_idot(Word word, const i32* aq, int first, int step) {
    i32 s = 0;
    for (int k = first; k < Block<T>::WORDS; k += step) {
        const i32 q = word(k);
        if (T == Q8_0) {
            s = dot4(q, aq[k], s);
        } else {
            s = dot4(q & 0x0f0f0f0f, aq[k], s);
            s = dot4((q >> 4) & 0x0f0f0f0f, aq[k + 4], s);
        }
    }
    return s;
}

// One block's contribution: `fma(s, d_w·d_a, acc)`, with q4_0's offset (−8·Σa) and q4_1's min
// (`fma(m, d_a·Σa, acc)`) added by the lane that has `first_share`.
template <int T>
__device__ __forceinline__ float block_term(i32 s, u16 d, u16 m, const BlockQ8A* ab, bool first_share, float acc) {
    if (T == Q4_0 && first_share) {
        s -= 8 * ab->sum;
    }
    acc = fmaf((float)s, f16_to_f32(d) * ab->d, acc);
    if (T == Q4_1 && first_share) {
        acc = fmaf(f16_to_f32(m), ab->d * (float)ab->sum, acc);
    }
    return acc;
}

// y[t·rows + r] = row r · token t, row-major weights: one warp per row, lanes over the row's
// blocks. Blocks are 2-byte aligned, so quant words are put together from 16-bit loads.
// Launch: block (32·W), grid (⌈rows/W⌉, tokens).
template <int T>
__device__ void gemv_rows(const u8* w, const BlockQ8A* a, float* y, int rows, int nb) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int t = blockIdx.y;
    const bool live = row < rows;
    const BlockQ8A* at = a + (u64)t * nb;
    float acc = 0.0f;
    for (int b = lane; live && b < nb; b += 32) {
        const u16* h = (const u16*)(w + ((u64)row * nb + b) * Block<T>::BYTES);
        const u16* qh = h + Block<T>::QS / 2;
        const BlockQ8A* ab = at + b;
        const i32 s = block_idot<T>([&](int k) { return (i32)((u32)qh[2 * k] | ((u32)qh[2 * k + 1] << 16)); },
                                    (const i32*)ab->qs, 0, 1);
        acc = block_term<T>(s, h[0], T == Q4_1 ? h[1] : (u16)0, ab, true, acc);
    }
    for (int m = 16; m > 0; m >>= 1) {
        acc += __shfl_xor_sync(FULL_MASK, acc, m);
    }
    if (live && lane == 0) {
        y[(u64)t * rows + row] = acc;
    }
}

// The same product over `rows16` weights: a group block holds block b of 16 rows (their d, then
// q4_1's m, then the quant bytes in 4-byte pieces, piece p of rows 0–15 together), so the 32
// lanes of a warp read consecutive words: lane l takes row l mod 16 and every second piece.
// The W warps of a thread block share one group of 16 rows and split its blocks.
// Launch: block (32·W), W ≤ 32, grid (rows/16, tokens).
template <int T>
__device__ void gemv_rows16(const u8* w, const BlockQ8A* a, float* y, int groups, int nb) {
    const int group_bytes = GROUP * Block<T>::BYTES;
    const int qs = GROUP * (Block<T>::QS);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    const int r = lane & 15;
    const int half = lane >> 4;
    const int g = blockIdx.x;
    const int t = blockIdx.y;
    const BlockQ8A* at = a + (u64)t * nb;
    float acc = 0.0f;
    for (int b = warp; b < nb; b += warps) {
        const u8* gb = w + ((u64)g * nb + b) * group_bytes;
        const u16* d = (const u16*)gb;
        const i32* q = (const i32*)(gb + qs);
        const BlockQ8A* ab = at + b;
        const i32 s = block_idot<T>([&](int k) { return q[k * GROUP + r]; }, (const i32*)ab->qs, half, 2);
        acc = block_term<T>(s, d[r], T == Q4_1 ? d[GROUP + r] : (u16)0, ab, half == 0, acc);
    }
    acc += __shfl_xor_sync(FULL_MASK, acc, 16);
    __shared__ float part[32][GROUP];
    if (lane < GROUP) {
        part[warp][lane] = acc;
    }
    __syncthreads();
    if (warp == 0 && lane < GROUP) {
        float sum = 0.0f;
        for (int k = 0; k < warps; k++) {
            sum += part[k][lane];
        }
        y[(u64)t * groups * GROUP + g * GROUP + lane] = sum;
    }
}

#define GEMV(name, T)                                                                            \
    extern "C" __global__ void gemv_##name##_rows(const u8* w, const BlockQ8A* a, float* y, int rows, int nb) { \
        gemv_rows<T>(w, a, y, rows, nb);                                                           \
    }                                                                                            \
    extern "C" __global__ void gemv_##name##_rows16(const u8* w, const BlockQ8A* a, float* y, int groups, int nb) { \
        gemv_rows16<T>(w, a, y, groups, nb);                                                       \
    }

GEMV(q4_0, Q4_0)
GEMV(q4_1, Q4_1)
GEMV(q8_0, Q8_0)
