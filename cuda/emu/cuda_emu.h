// Just enough of CUDA for autark's kernels to run on the CPU (docs/CUDA.md, "How it is checked").
//
// Each CUDA thread of a block is a std::thread; the blocks of a launch run one after another,
// the threads of a block together. `__syncthreads` is a std::barrier over the block; a warp shuffle is an
// exchange through per-thread slots between two barriers, so every shuffle must be reached by
// all threads of the block (the kernels' rule, see kernels/autark.cu). `__shared__` variables
// become function statics: one copy, used by one block at a time. `__CUDA_ARCH__` is EMU_ARCH,
// so `-DEMU_ARCH=610` takes the `__dp4a` paths and `-DEMU_ARCH=530` the Jetson Nano ones.
#pragma once

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#ifndef EMU_ARCH
#error "define EMU_ARCH (610, 530, …): the __CUDA_ARCH__ to emulate"
#endif
#define AUTARK_EMU 1
#define __CUDA_ARCH__ EMU_ARCH
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

namespace emu {
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<uint64_t> slots;

inline unsigned linear_tid() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

template <class T>
T exchange(T v, unsigned from) {
    static_assert(sizeof(T) <= sizeof(uint64_t));
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof v);
    slots[linear_tid()] = bits;
    block_barrier->arrive_and_wait();
    const uint64_t got = slots.at(from);
    block_barrier->arrive_and_wait();
    T r;
    std::memcpy(&r, &got, sizeof r);
    return r;
}
}  // namespace emu

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    return emu::exchange(v, emu::linear_tid() ^ (unsigned)lane_mask);
}

inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline int __dp4a(int a, int b, int c) {
    for (int k = 0; k < 32; k += 8) {
        c += (int)(int8_t)(a >> k) * (int)(int8_t)(b >> k);
    }
    return c;
}

// kernel<<<grid, block>>>(args...): the block's threads are started once and take the grid's
// blocks one after another, with a barrier after each (so a block's `__shared__` statics are
// free before the next block's threads write them). A thread that returns early from the
// kernel still reaches that barrier.
template <class... P, class... A>
void emu_launch(void (*kernel)(P...), dim3 grid, dim3 block, A... args) {
    blockDim = block;
    gridDim = grid;
    const unsigned n = block.x * block.y * block.z;
    emu::slots.assign(n, 0);
    std::barrier<> bar((std::ptrdiff_t)n);
    emu::block_barrier = &bar;
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (unsigned tz = 0; tz < block.z; tz++)
        for (unsigned ty = 0; ty < block.y; ty++)
            for (unsigned tx = 0; tx < block.x; tx++)
                threads.emplace_back([=, &bar] {
                    threadIdx = dim3{tx, ty, tz};
                    for (unsigned bz = 0; bz < grid.z; bz++)
                        for (unsigned by = 0; by < grid.y; by++)
                            for (unsigned bx = 0; bx < grid.x; bx++) {
                                blockIdx = dim3{bx, by, bz};
                                kernel(args...);
                                bar.arrive_and_wait();
                            }
                });
    for (auto& t : threads) t.join();
}
