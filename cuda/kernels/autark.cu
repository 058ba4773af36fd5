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

// f32 to f16 bits, rounded to nearest even (as the CPU's `f32_to_f16`, the `half` crate): one
// `cvt.rn.f16.f32` on the device, a portable twin under emulation.
__device__ __forceinline__ u16 f32_to_f16(float f) {
#if defined(__CUDA_ARCH__) && !defined(AUTARK_EMU)
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    const u32 x = __float_as_uint(f);
    const u32 sign = (x >> 16) & 0x8000u;
    const u32 ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (u16)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));  // NaN, ±inf
    if (ax < 0x38800000u) {
        // Below 2^-14: a subnormal f16 (or zero), q·2^-24 with q = round-half-even(|f|·2^24).
        const float v = __uint_as_float(ax) * 16777216.0f;
        u32 q = (u32)v;
        const float frac = v - (float)q;
        if (frac > 0.5f || (frac == 0.5f && (q & 1u))) q++;
        return (u16)(sign | q);
    }
    // Normal: rebias the exponent (127 → 15), round the 23-bit mantissa to 10, half to even;
    // a carry runs into the exponent and, at 65520 and above, to infinity (0x7c00).
    const u32 e = ax - (112u << 23);
    const u32 r = (e + 0x0fffu + ((e >> 13) & 1u)) >> 13;
    return (u16)(sign | (r > 0x7c00u ? 0x7c00u : r));
#endif
}

// A cache element as f32: the f32 cache's value, or the f16 cache's.
__device__ __forceinline__ float cache_value(const float* c, u64 i) { return c[i]; }
__device__ __forceinline__ float cache_value(const u16* c, u64 i) { return f16_to_f32(c[i]); }
__device__ __forceinline__ void cache_store(float* c, u64 i, float v) { c[i] = v; }
__device__ __forceinline__ void cache_store(u16* c, u64 i, float v) { c[i] = f32_to_f16(v); }

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

// The token tile: a thread block computes its rows for TT tokens (t0 = blockIdx.y·TT, those
// below `tokens`), reading each weight block once for all of them (from the cache after the
// first). TT 1 for decoding, TILE for a batch (prefill): each weight byte then crosses DRAM once
// per TILE tokens instead of once per token.
#define TILE 8

// The warp sum of each acc[j], in every lane.
template <int TT>
__device__ __forceinline__ void warp_sums(float* acc) {
    for (int j = 0; j < TT; j++) {
        for (int m = 16; m > 0; m >>= 1) acc[j] += __shfl_xor_sync(FULL_MASK, acc[j], m);
    }
}

// y[t·rows + r] = row r · token t, row-major weights: one warp per row, lanes over the row's
// blocks. Blocks are 2-byte aligned, so quant words are put together from 16-bit loads.
// Launch: block (32·W), grid (⌈rows/W⌉, ⌈tokens/TT⌉).
template <int T, int TT>
__device__ void gemv_rows(const u8* w, const BlockQ8A* a, float* y, int rows, int nb, int tokens) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int t0 = blockIdx.y * TT;
    const bool live = row < rows;
    float acc[TT];
    for (int j = 0; j < TT; j++) acc[j] = 0.0f;
    for (int b = lane; live && b < nb; b += 32) {
        const u16* h = (const u16*)(w + ((u64)row * nb + b) * Block<T>::BYTES);
        const u16* qh = h + Block<T>::QS / 2;
        for (int j = 0; j < TT; j++) {
            if (t0 + j >= tokens) break;
            const BlockQ8A* ab = a + (u64)(t0 + j) * nb + b;
            const i32 s = block_idot<T>([&](int k) { return (i32)((u32)qh[2 * k] | ((u32)qh[2 * k + 1] << 16)); },
                                        (const i32*)ab->qs, 0, 1);
            acc[j] = block_term<T>(s, h[0], T == Q4_1 ? h[1] : (u16)0, ab, true, acc[j]);
        }
    }
    warp_sums<TT>(acc);
    for (int j = 0; j < TT; j++) {
        if (live && lane == 0 && t0 + j < tokens) y[(u64)(t0 + j) * rows + row] = acc[j];
    }
}

// The same product over `rows16` weights: a group block holds block b of 16 rows (their d, then
// q4_1's m, then the quant bytes in 4-byte pieces, piece p of rows 0–15 together), so the 32
// lanes of a warp read consecutive words: lane l takes row l mod 16 and every second piece.
// The W warps of a thread block share one group of 16 rows and split its blocks.
// Launch: block (32·W), W ≤ 32, grid (rows/16, ⌈tokens/TT⌉).
template <int T, int TT>
__device__ void gemv_rows16(const u8* w, const BlockQ8A* a, float* y, int groups, int nb, int tokens) {
    const int group_bytes = GROUP * Block<T>::BYTES;
    const int qs = GROUP * (Block<T>::QS);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    const int r = lane & 15;
    const int half = lane >> 4;
    const int g = blockIdx.x;
    const int t0 = blockIdx.y * TT;
    float acc[TT];
    for (int j = 0; j < TT; j++) acc[j] = 0.0f;
    for (int b = warp; b < nb; b += warps) {
        const u8* gb = w + ((u64)g * nb + b) * group_bytes;
        const u16* d = (const u16*)gb;
        const i32* q = (const i32*)(gb + qs);
        for (int j = 0; j < TT; j++) {
            if (t0 + j >= tokens) break;
            const BlockQ8A* ab = a + (u64)(t0 + j) * nb + b;
            const i32 s = block_idot<T>([&](int k) { return q[k * GROUP + r]; }, (const i32*)ab->qs, half, 2);
            acc[j] = block_term<T>(s, d[r], T == Q4_1 ? d[GROUP + r] : (u16)0, ab, half == 0, acc[j]);
        }
    }
    __shared__ float part[TT][32][GROUP];
    for (int j = 0; j < TT; j++) {
        acc[j] += __shfl_xor_sync(FULL_MASK, acc[j], 16);
        if (lane < GROUP) part[j][warp][lane] = acc[j];
    }
    __syncthreads();
    if (warp < TT && lane < GROUP && t0 + warp < tokens) {
        // Warp j adds token j's partial sums (TT ≤ W).
        float sum = 0.0f;
        for (int k = 0; k < warps; k++) sum += part[warp][k][lane];
        y[(u64)(t0 + warp) * groups * GROUP + g * GROUP + lane] = sum;
    }
}

// Each GEMV in two token tiles: `gemv_X_L` (one token per thread block: decoding) and
// `gemv_X_L_x8` (TILE tokens: batches).
#define GEMV_TILES(name, body)                                                                                     \
    extern "C" __global__ void name(const u8* w, const BlockQ8A* a, float* y, int rows, int nb, int tokens) {     \
        body<1>(w, a, y, rows, nb, tokens);                                                                        \
    }                                                                                                              \
    extern "C" __global__ void name##_x8(const u8* w, const BlockQ8A* a, float* y, int rows, int nb, int tokens) { \
        body<TILE>(w, a, y, rows, nb, tokens);                                                                     \
    }

#define GEMV(name, T)                                                                              \
    template <int TT> __device__ void gemv_##name##_rows_t(const u8* w, const BlockQ8A* a, float* y, int rows, int nb, int tokens) { \
        gemv_rows<T, TT>(w, a, y, rows, nb, tokens);                                               \
    }                                                                                              \
    template <int TT> __device__ void gemv_##name##_rows16_t(const u8* w, const BlockQ8A* a, float* y, int groups, int nb, int tokens) { \
        gemv_rows16<T, TT>(w, a, y, groups, nb, tokens);                                           \
    }                                                                                              \
    GEMV_TILES(gemv_##name##_rows, gemv_##name##_rows_t)                                           \
    GEMV_TILES(gemv_##name##_rows16, gemv_##name##_rows16_t)

GEMV(q4_0, Q4_0)
GEMV(q4_1, Q4_1)
GEMV(q8_0, Q8_0)

// ---- row-major GEMV of the other stored types: one warp per row, a lane per 32-value
// sub-block (the activation block it meets), the same launch as `gemv_rows` ----

// Quant word `k` (values 4k..4k+3) of a block, from 2-byte-aligned storage.
__device__ __forceinline__ i32 word16(const u8* p, int k) {
    const u16* h = (const u16*)p;
    return (i32)((u32)h[2 * k] | ((u32)h[2 * k + 1] << 16));
}

// Bit i of the 4 bits h, to bit 4 of byte i (q5's fifth bits beside four nibbles).
__device__ __forceinline__ i32 fifth_bits(u32 h) {
    return (i32)(((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25));
}

// q5_0 (22 B: f16 d, u32 qh, 16 nibble bytes) and q5_1 (24 B: f16 d, f16 m, u32 qh, 16 bytes):
// unsigned 5-bit q = nibble | fifth bit; q5_0 subtracts 16·Σa (`vec_dot_q5_0`), q5_1 adds
// m·d_a·Σa (`vec_dot_q5_1`).
template <bool ONE>
__device__ __forceinline__ float term_q5(const u8* row, int b, const BlockQ8A* ab, float acc) {
    const u8* p = row + (u64)b * (ONE ? 24 : 22);
    const u16* h = (const u16*)p;
    const u32 qh = (u32)h[ONE ? 2 : 1] | ((u32)h[ONE ? 3 : 2] << 16);
    const u8* qs = p + (ONE ? 8 : 6);
    const i32* aq = (const i32*)ab->qs;
    i32 s = 0;
    for (int k = 0; k < 4; k++) {
        const i32 q = word16(qs, k);
        s = dot4((q & 0x0f0f0f0f) | fifth_bits(qh >> (4 * k)), aq[k], s);
        s = dot4(((q >> 4) & 0x0f0f0f0f) | fifth_bits(qh >> (16 + 4 * k)), aq[k + 4], s);
    }
    if (!ONE) s -= 16 * ab->sum;
    acc = fmaf((float)s, f16_to_f32(h[0]) * ab->d, acc);
    if (ONE) acc = fmaf(f16_to_f32(h[1]), ab->d * (float)ab->sum, acc);
    return acc;
}

// q4_k (144 B per 256 values: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 nibble
// bytes) and q5_k (176 B: the same header, 32 bytes of fifth bits, then the nibbles): sub-block
// j of a super-block is `fma(s, d·sc_j·d_a, acc)` then `fma(−dmin·m_j, d_a·Σa, acc)`
// (`vec_dot_q4_k`, `vec_dot_q5_k`).
template <bool FIVE>
__device__ __forceinline__ float term_k4(const u8* row, int b, const BlockQ8A* ab, float acc) {
    const int j = b & 7;
    const u8* p = row + (u64)(b >> 3) * (FIVE ? 176 : 144);
    const u16* h = (const u16*)p;
    const u8* sc = p + 4;
    u32 scale, min;
    if (j < 4) {
        scale = sc[j] & 63;
        min = sc[j + 4] & 63;
    } else {
        scale = (sc[j + 4] & 0x0f) | ((sc[j - 4] >> 6) << 4);
        min = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
    }
    const i32* qs = (const i32*)(p + (FIVE ? 48 : 16) + 32 * (j >> 1));
    const i32* qh = (const i32*)(p + 16);
    const int shift = 4 * (j & 1);
    const i32* aq = (const i32*)ab->qs;
    i32 s = 0;
    for (int k = 0; k < 8; k++) {
        i32 q = (qs[k] >> shift) & 0x0f0f0f0f;
        if (FIVE) q |= ((qh[k] >> j) & 0x01010101) << 4;
        s = dot4(q, aq[k], s);
    }
    acc = fmaf((float)s, f16_to_f32(h[0]) * (float)scale * ab->d, acc);
    return fmaf(-(f16_to_f32(h[1]) * (float)min), ab->d * (float)ab->sum, acc);
}

// q6_k (210 B per 256 values: 128 bytes of low nibbles, 64 of 2-bit highs, 16 i8 scales, f16 d):
// sub-block i holds two halves of 16 with a scale each; S = sc0·s0 + sc1·s1 in integers, then
// `fma(S, d·d_a, acc)` (`vec_dot_q6_k`). q − 32 as q·a − 32·Σa per half.
__device__ __forceinline__ float term_q6_k(const u8* row, int b, const BlockQ8A* ab, float acc) {
    const int i = b & 7, n = i >> 2, k = i & 3;
    const u8* p = row + (u64)(b >> 3) * 210;
    const u8* ql = p + 64 * n + 32 * (k & 1);
    const u8* qh = p + 128 + 32 * n;
    const int lo_shift = 4 * (k >> 1), hi_shift = 2 * k;
    const i32* aq = (const i32*)ab->qs;
    i32 half[2] = {0, 0};
    for (int w = 0; w < 8; w++) {
        const i32 q = ((word16(ql, w) >> lo_shift) & 0x0f0f0f0f) | (((word16(qh, w) >> hi_shift) & 0x03030303) << 4);
        half[w >> 2] = dot4(q, aq[w], half[w >> 2]);
        half[w >> 2] = dot4((i32)0xe0e0e0e0u, aq[w], half[w >> 2]);  // −32 · Σa
    }
    const i8* sc = (const i8*)(p + 192 + 8 * n + 2 * k);
    const i32 s = (i32)sc[0] * half[0] + (i32)sc[1] * half[1];
    return fmaf((float)s, f16_to_f32(((const u16*)p)[104]) * ab->d, acc);
}

// y[t·rows + r] = row r · token t over `nb` sub-blocks of 32 (`row_bytes` per row).
// Launch: as `gemv_rows`.
template <int TT, class Term>
__device__ void gemv_sub(Term term, const u8* w, const BlockQ8A* a, float* y, int rows, int nb, int tokens,
                         u64 row_bytes) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int t0 = blockIdx.y * TT;
    const bool live = row < rows;
    const u8* wr = w + (u64)row * row_bytes;
    float acc[TT];
    for (int j = 0; j < TT; j++) acc[j] = 0.0f;
    for (int b = lane; live && b < nb; b += 32) {
        for (int j = 0; j < TT; j++) {
            if (t0 + j >= tokens) break;
            acc[j] = term(wr, b, a + (u64)(t0 + j) * nb + b, acc[j]);
        }
    }
    warp_sums<TT>(acc);
    for (int j = 0; j < TT; j++) {
        if (live && lane == 0 && t0 + j < tokens) y[(u64)(t0 + j) * rows + row] = acc[j];
    }
}

#define GEMV_SUB(name, term, bytes_per_32)                                                                     \
    template <int TT> __device__ void gemv_##name##_rows_t(const u8* w, const BlockQ8A* a, float* y, int rows, int nb, int tokens) { \
        gemv_sub<TT>([](const u8* r, int b, const BlockQ8A* ab, float acc) { return term(r, b, ab, acc); }, w, a, y, \
                     rows, nb, tokens, (u64)nb * (bytes_per_32) / 8);                                           \
    }                                                                                                          \
    GEMV_TILES(gemv_##name##_rows, gemv_##name##_rows_t)

// Row bytes per 32 values, times 8 (a K-quant super-block spans 8 sub-blocks).
GEMV_SUB(q5_0, term_q5<false>, 22 * 8)
GEMV_SUB(q5_1, term_q5<true>, 24 * 8)
GEMV_SUB(q4_k, term_k4<false>, 144)
GEMV_SUB(q5_k, term_k4<true>, 176)
GEMV_SUB(q6_k, term_q6_k, 210)

// f16 and f32 weights × f32 activations (no quantization, as the CPU's `vec_dot_f16`): one
// warp per row, lanes over its values; x holds `tokens` rows of `cols`, one per thread block
// (no token tile: one multiply-add per weight loaded leaves nothing to amortise a tile over).
template <bool HALF>
__device__ void gemv_float(const u8* w, const float* x, float* y, int rows, int cols) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int t = blockIdx.y;
    const bool live = row < rows;
    const float* xt = x + (u64)t * cols;
    float acc = 0.0f;
    for (int c = lane; live && c < cols; c += 32) {
        const float v = HALF ? f16_to_f32(((const u16*)w)[(u64)row * cols + c]) : ((const float*)w)[(u64)row * cols + c];
        acc = fmaf(v, xt[c], acc);
    }
    for (int m = 16; m > 0; m >>= 1) acc += __shfl_xor_sync(FULL_MASK, acc, m);
    if (live && lane == 0) y[(u64)t * rows + row] = acc;
}

extern "C" __global__ void gemv_f16_rows(const u8* w, const float* x, float* y, int rows, int cols, int) {
    gemv_float<true>(w, x, y, rows, cols);
}
extern "C" __global__ void gemv_f32_rows(const u8* w, const float* x, float* y, int rows, int cols, int) {
    gemv_float<false>(w, x, y, rows, cols);
}

// ---- the rest of a forward pass, on f32 activations (the CUDA backend, runtime/src/cuda.rs) ----

// The sum of `v` over the thread block (blockDim.x a multiple of 32, at most 1024), in every
// thread. `red` is the caller's shared array of 32 floats.
__device__ __forceinline__ float block_sum(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(FULL_MASK, v, m);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = 0.0f;
    for (int k = 0; k < warps; k++) s += red[k];
    return s;
}

__device__ __forceinline__ float block_max(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, m));
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = red[0];
    for (int k = 1; k < warps; k++) s = fmaxf(s, red[k]);
    return s;
}

// dst row r = src row r · w / √(mean(src row r²) + eps); one thread block per row (rows of
// `width`; per-head norms are rows of head_dim). dst may be src.
extern "C" __global__ void rmsnorm_f32(float* dst, const float* src, const float* w, int width, float eps) {
    __shared__ float red[32];
    const float* x = src + (u64)blockIdx.x * width;
    float* o = dst + (u64)blockIdx.x * width;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < width; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum(ss, red) / (float)width;
    const float scale = 1.0f / sqrtf(ss + eps);
    for (int i = threadIdx.x; i < width; i += blockDim.x) o[i] = x[i] * scale * w[i];
}

// buf[i] += b[i mod width] over `total` values.
extern "C" __global__ void add_bias_f32(float* buf, const float* b, int width, int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) buf[i] += b[i % width];
}

// dst[i] += src[i].
extern "C" __global__ void add_f32(float* dst, const float* src, int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) dst[i] += src[i];
}

// gate = act(gate) · up; act 0: SiLU x/(1+e^−x), 1: GELU's tanh approximation.
extern "C" __global__ void glu_f32(float* gate, const float* up, int total, int act) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const float x = gate[i];
    const float a = act == 0 ? x / (1.0f + expf(-x)) : 0.5f * x * (1.0f + tanhf(0.7978846f * (x + 0.044715f * x * x * x)));
    gate[i] = a * up[i];
}

// Rotates every head of row t of q (n_q heads) and k (n_k heads) for position pos[t], with the
// tables cos/sin (n_ctx × head_dim/2). interleaved: pairs (2i, 2i+1), else (i, i + hd/2).
// One thread block per row.
extern "C" __global__ void rope_f32(float* q, float* k, const float* cos_t, const float* sin_t, const int* pos,
                                    int n_q, int n_k, int hd, int interleaved) {
    const int t = blockIdx.x, half = hd / 2;
    const float* c = cos_t + (u64)pos[t] * half;
    const float* s = sin_t + (u64)pos[t] * half;
    for (int j = threadIdx.x; j < (n_q + n_k) * half; j += blockDim.x) {
        const int head = j / half, i = j % half;
        float* x = head < n_q ? q + ((u64)t * n_q + head) * hd : k + ((u64)t * n_k + head - n_q) * hd;
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        const float x0 = x[a], x1 = x[b];
        x[a] = x0 * c[i] - x1 * s[i];
        x[b] = x0 * s[i] + x1 * c[i];
    }
}

// Row t of k and v (kv_dim values) into row pos[t] of one layer's caches (n_ctx × kv_dim), as
// f32 or as f16 (rounded to nearest even, as the CPU's f16 cache stores them).
template <class C>
__device__ void kv_store(C* kc, C* vc, const float* k, const float* v, const int* pos, int kv_dim) {
    const int t = blockIdx.x;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        cache_store(kc, (u64)pos[t] * kv_dim + i, k[(u64)t * kv_dim + i]);
        cache_store(vc, (u64)pos[t] * kv_dim + i, v[(u64)t * kv_dim + i]);
    }
}
extern "C" __global__ void kv_store_f32(float* kc, float* vc, const float* k, const float* v, const int* pos, int kv_dim) {
    kv_store(kc, vc, k, v, pos, kv_dim);
}
extern "C" __global__ void kv_store_f16(u16* kc, u16* vc, const float* k, const float* v, const int* pos, int kv_dim) {
    kv_store(kc, vc, k, v, pos, kv_dim);
}

// Attention of one query head `qh` over cache positions lo..lo + len (KV head at `kvo`), by the
// whole thread block: s[j] = e^(scale·q·k_j − m) and the sum of them (returned, with m), then
// `values(s, i)` = Σ_j s[j]·v_j[i] for the caller's output.
struct Softmax {
    float m, sum;
};
template <class C>
__device__ Softmax softmax_scores(float* s, const float* qh, const C* kc, int lo, int len, int kv_dim, int kvo, int hd,
                                  float scale, float* red) {
    float m = -3.402823466e38f;
    for (int j = threadIdx.x; j < len; j += blockDim.x) {
        const u64 kr = (u64)(lo + j) * kv_dim + kvo;
        float d = 0.0f;
        for (int i = 0; i < hd; i++) d += qh[i] * cache_value(kc, kr + i);
        d *= scale;
        s[j] = d;
        m = fmaxf(m, d);
    }
    m = block_max(m, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < len; j += blockDim.x) {
        const float e = expf(s[j] - m);
        s[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red);
    __syncthreads();  // every s[j] written before any thread reads them all
    return Softmax{m, sum};
}
template <class C>
__device__ __forceinline__ float weighted_values(const float* s, const C* vc, int lo, int len, int kv_dim, int col) {
    float acc = 0.0f;
    for (int j = 0; j < len; j++) acc += s[j] * cache_value(vc, (u64)(lo + j) * kv_dim + col);
    return acc;
}

// out row t head h = softmax(scale · q·Kᵀ over positions first..pos[t]) · V, where first keeps
// the last `window` positions; query head h reads KV head h / group. One thread block per
// (row, head); `scores` holds n_ctx floats per (row, head).
template <class C>
__device__ void attention(float* out, const float* q, const C* kc, const C* vc, float* scores,
                                         const int* pos, int n_heads, int group, int hd, int kv_dim, int n_ctx,
                                         int window, float scale) {
    __shared__ float red[32];
    const int t = blockIdx.x, h = blockIdx.y;
    const int p = pos[t];
    const int first = p + 1 > window ? p + 1 - window : 0;
    const int len = p + 1 - first;
    const float* qh = q + ((u64)t * n_heads + h) * hd;
    const int kvo = (h / group) * hd;
    float* s = scores + ((u64)t * n_heads + h) * n_ctx;
    const Softmax sm = softmax_scores(s, qh, kc, first, len, kv_dim, kvo, hd, scale, red);
    const float inv = 1.0f / sm.sum;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        out[((u64)t * n_heads + h) * hd + i] = weighted_values(s, vc, first, len, kv_dim, kvo + i) * inv;
    }
}
extern "C" __global__ void attention_f32(float* out, const float* q, const float* kc, const float* vc, float* scores,
                                         const int* pos, int n_heads, int group, int hd, int kv_dim, int n_ctx,
                                         int window, float scale) {
    attention(out, q, kc, vc, scores, pos, n_heads, group, hd, kv_dim, n_ctx, window, scale);
}
extern "C" __global__ void attention_f16kv(float* out, const float* q, const u16* kc, const u16* vc, float* scores,
                                           const int* pos, int n_heads, int group, int hd, int kv_dim, int n_ctx,
                                           int window, float scale) {
    attention(out, q, kc, vc, scores, pos, n_heads, group, hd, kv_dim, n_ctx, window, scale);
}

// Attention split over the sequence (long contexts, where one thread block per row and head
// would leave most of the GPU idle): thread block (t, h, c) takes positions
// [c·chunk, (c+1)·chunk) of row t's window and writes its partial result to `part` — the
// scores' max m, Σ e^(s−m), and Σ e^(s−m)·v (hd values) — and `attention_merge_f32` combines
// the chunks. chunk ≤ ATT_CHUNK_MAX (the shared scores).
#define ATT_CHUNK_MAX 256
template <class C>
__device__ void attention_split(float* part, const float* q, const C* kc, const C* vc,
                                               const int* pos, int n_heads, int group, int hd, int kv_dim, int chunk,
                                               int n_chunks, int window, float scale) {
    __shared__ float red[32];
    __shared__ float s[ATT_CHUNK_MAX];
    const int t = blockIdx.x, h = blockIdx.y, c = blockIdx.z;
    const int p = pos[t];
    const int first = p + 1 > window ? p + 1 - window : 0;
    const int lo = first > c * chunk ? first : c * chunk;
    const int hi = p + 1 < (c + 1) * chunk ? p + 1 : (c + 1) * chunk;
    float* out = part + (((u64)t * n_heads + h) * n_chunks + c) * (hd + 2);
    if (lo >= hi) {  // the same for every thread of the block: no barrier is skipped by some
        for (int i = threadIdx.x; i < hd; i += blockDim.x) out[2 + i] = 0.0f;
        if (threadIdx.x == 0) {
            out[0] = -3.402823466e38f;
            out[1] = 0.0f;
        }
        return;
    }
    const int len = hi - lo;
    const float* qh = q + ((u64)t * n_heads + h) * hd;
    const int kvo = (h / group) * hd;
    const Softmax sm = softmax_scores(s, qh, kc, lo, len, kv_dim, kvo, hd, scale, red);
    for (int i = threadIdx.x; i < hd; i += blockDim.x) out[2 + i] = weighted_values(s, vc, lo, len, kv_dim, kvo + i);
    if (threadIdx.x == 0) {
        out[0] = sm.m;
        out[1] = sm.sum;
    }
}
extern "C" __global__ void attention_split_f32(float* part, const float* q, const float* kc, const float* vc,
                                               const int* pos, int n_heads, int group, int hd, int kv_dim, int chunk,
                                               int n_chunks, int window, float scale) {
    attention_split(part, q, kc, vc, pos, n_heads, group, hd, kv_dim, chunk, n_chunks, window, scale);
}
extern "C" __global__ void attention_split_f16kv(float* part, const float* q, const u16* kc, const u16* vc,
                                                 const int* pos, int n_heads, int group, int hd, int kv_dim, int chunk,
                                                 int n_chunks, int window, float scale) {
    attention_split(part, q, kc, vc, pos, n_heads, group, hd, kv_dim, chunk, n_chunks, window, scale);
}

// out row t head h = Σ_c e^(m_c − M)·o_c / Σ_c e^(m_c − M)·l_c over the chunks of
// `attention_split_f32` (M the largest m_c; empty chunks have l_c 0). One thread block per
// (row, head).
extern "C" __global__ void attention_merge_f32(float* out, const float* part, int n_heads, int hd, int n_chunks) {
    const int t = blockIdx.x, h = blockIdx.y;
    const float* pr = part + ((u64)t * n_heads + h) * n_chunks * (hd + 2);
    float big = -3.402823466e38f;
    for (int c = 0; c < n_chunks; c++) big = fmaxf(big, pr[(u64)c * (hd + 2)]);
    float l = 0.0f;
    for (int c = 0; c < n_chunks; c++) {
        const float* pc = pr + (u64)c * (hd + 2);
        if (pc[1] > 0.0f) l += pc[1] * expf(pc[0] - big);
    }
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float acc = 0.0f;
        for (int c = 0; c < n_chunks; c++) {
            const float* pc = pr + (u64)c * (hd + 2);
            if (pc[1] > 0.0f) acc += pc[2 + i] * expf(pc[0] - big);
        }
        out[((u64)t * n_heads + h) * hd + i] = acc / l;
    }
}

// Row i of buf = row rows[i] (rows ascending, rows[i] ≥ i), in order: one thread block, one row
// at a time (a later row's source may be an earlier row's destination... only before it is
// read: rows[i] ≥ i, so a row is read before it is overwritten when taken in order).
extern "C" __global__ void select_rows_f32(float* buf, const int* rows, int n, int width) {
    for (int i = 0; i < n; i++) {
        if (rows[i] != i) {
            for (int c = threadIdx.x; c < width; c += blockDim.x) buf[(u64)i * width + c] = buf[(u64)rows[i] * width + c];
        }
        __syncthreads();
    }
}

// out[0] = the index of the first maximum of x[0..n], as autark_kernels::ops::argmax: NaN and
// −∞ never count, and 0 when nothing does (greedy decoding on the device: only this index comes
// back, not the logits). One thread block: each thread keeps the first maximum of its strided
// share, then the larger value wins, the lower index on ties. NONE marks "nothing yet" (its
// value, −FLT_MAX, is then no candidate: a real −FLT_MAX beats it on the index).
#define ARGMAX_NONE 0x7fffffff
__device__ __forceinline__ void argmax_keep(float& v, int& idx, float ov, int oi) {
    if (ov > v || (ov == v && oi < idx)) {
        v = ov;
        idx = oi;
    }
}
extern "C" __global__ void argmax_f32(const float* x, int n, int* out) {
    __shared__ float wv[32];
    __shared__ int wi[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    float v = -3.402823466e38f;
    int idx = ARGMAX_NONE;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float y = x[i];
        if (y > v || (y == v && idx == ARGMAX_NONE)) {
            v = y;
            idx = i;
        }
    }
    for (int m = 16; m > 0; m >>= 1) {
        const float ov = __shfl_xor_sync(FULL_MASK, v, m);
        const int oi = __shfl_xor_sync(FULL_MASK, idx, m);
        argmax_keep(v, idx, ov, oi);
    }
    if (lane == 0) {
        wv[warp] = v;
        wi[warp] = idx;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < warps; k++) argmax_keep(v, idx, wv[k], wi[k]);
        out[0] = idx == ARGMAX_NONE ? 0 : idx;
    }
}
