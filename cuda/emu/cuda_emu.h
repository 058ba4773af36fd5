// Just enough of CUDA for autark's kernels to run on the CPU (docs/CUDA.md, "How it is checked").
//
// Each CUDA thread of a block is a fiber (ucontext) of one OS thread (under AddressSanitizer with
// its fiber annotations, so that it knows which stack is live), or, under ThreadSanitizer or with
// -DEMU_OS_THREADS, a std::thread; the blocks of a
// launch run one after another, the threads of a block together. `__syncthreads` is a barrier
// over the block: with fibers, each thread runs until it reaches the barrier, then the next one
// runs, and once all have arrived they go on in turn; with OS threads a std::barrier (hundreds of
// threads waking each other through the kernel on two cores: about ten times slower). A warp
// shuffle is an exchange through per-thread slots between two barriers, so every shuffle must be
// reached by all threads of the block (the kernels' rule, see kernels/autark.cu). `__shared__`
// variables become function statics: one copy, used by one block at a time. `__CUDA_ARCH__` is
// EMU_ARCH, so `-DEMU_ARCH=610` takes the `__dp4a` paths and `-DEMU_ARCH=530` the Jetson Nano ones.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#if !defined(EMU_OS_THREADS) && defined(__SANITIZE_THREAD__)
#define EMU_OS_THREADS 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#endif
#if defined(__has_feature)
#if !defined(EMU_OS_THREADS) && __has_feature(thread_sanitizer)
#define EMU_OS_THREADS 1
#endif
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_OS_THREADS
#include <barrier>
#include <thread>
#else
#include <sys/mman.h>
#include <ucontext.h>
#ifdef EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#include <cstdlib>
#endif

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

inline dim3 blockDim, gridDim;

#ifdef EMU_OS_THREADS
inline thread_local dim3 threadIdx, blockIdx;

namespace emu {
inline std::barrier<>* block_barrier = nullptr;
inline void sync() { block_barrier->arrive_and_wait(); }
}  // namespace emu
#else
// One OS thread runs every fiber; the scheduler sets these before it resumes a fiber.
inline dim3 threadIdx, blockIdx;

namespace emu {
struct Fiber {
    ucontext_t ctx;
    dim3 tid, bid;
    bool done = false;
    char* stack = nullptr;
    void* asan_fake_stack = nullptr;  // ASan's stack-use-after-return frames, kept while switched out
};

// Fiber stacks, mapped once and kept for the next launches: 256 KiB each (pages are committed
// only when touched; the kernels keep a few small arrays in registers), with a guard page below,
// so that an overflow faults instead of writing over another fiber's stack.
constexpr size_t stack_bytes = 256 << 10;
inline std::vector<char*> stacks;

inline char* stack(unsigned i) {
    while (stacks.size() <= i) {
        const size_t page = 4096;
        void* p = mmap(nullptr, stack_bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || mprotect(p, page, PROT_NONE) != 0) std::abort();
        stacks.push_back(static_cast<char*>(p) + page);
    }
    return stacks[i];
}
inline ucontext_t scheduler;
inline std::vector<Fiber>* fibers = nullptr;
inline unsigned current = 0;
inline std::function<void(Fiber&)> fiber_body;

// AddressSanitizer's fiber protocol: announce the stack about to run before each switch
// (`fake` null when the fiber leaving ends), confirm it after. The scheduler's stack bounds are
// learnt when the first fiber starts.
inline const void* scheduler_stack = nullptr;
inline size_t scheduler_stack_bytes = 0;
#ifdef EMU_ASAN
inline void asan_leave(void** fake, const void* to, size_t bytes) { __sanitizer_start_switch_fiber(fake, to, bytes); }
inline void asan_enter(void* fake, const void** from, size_t* bytes) { __sanitizer_finish_switch_fiber(fake, from, bytes); }
#else
inline void asan_leave(void**, const void*, size_t) {}
inline void asan_enter(void*, const void**, size_t*) {}
#endif

// A barrier: back to the scheduler, which resumes this fiber once every other one has arrived.
inline void sync() {
    Fiber& f = (*fibers)[current];
    f.bid = blockIdx;
    asan_leave(&f.asan_fake_stack, scheduler_stack, scheduler_stack_bytes);
    swapcontext(&f.ctx, &scheduler);
    asan_enter(f.asan_fake_stack, nullptr, nullptr);
    threadIdx = f.tid;
    blockIdx = f.bid;
}

inline void fiber_main() {
    asan_enter(nullptr, &scheduler_stack, &scheduler_stack_bytes);
    Fiber& f = (*fibers)[current];
    fiber_body(f);
    f.done = true;
    asan_leave(nullptr, scheduler_stack, scheduler_stack_bytes);  // this fiber's frames are gone
    swapcontext(&f.ctx, &scheduler);  // never resumed
}

// getcontext and swapcontext return twice: kept out of the launch loop (-Wclobbered).
[[gnu::noinline]] inline void make_fiber(Fiber& f, dim3 tid, unsigned i) {
    f.tid = tid;
    f.stack = stack(i);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = stack_bytes;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
}

// Runs fiber k until its next barrier or its end.
[[gnu::noinline]] inline void resume(unsigned k) {
    Fiber& f = (*fibers)[k];
    current = k;
    threadIdx = f.tid;
    blockIdx = f.bid;
    void* fake = nullptr;
    asan_leave(&fake, f.stack, stack_bytes);
    swapcontext(&scheduler, &f.ctx);
    asan_enter(fake, nullptr, nullptr);
}
}  // namespace emu
#endif

namespace emu {
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
    sync();
    const uint64_t got = slots.at(from);
    sync();
    T r;
    std::memcpy(&r, &got, sizeof r);
    return r;
}
}  // namespace emu

inline void __syncthreads() { emu::sync(); }

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
    auto blocks = [=] {
        for (unsigned bz = 0; bz < grid.z; bz++)
            for (unsigned by = 0; by < grid.y; by++)
                for (unsigned bx = 0; bx < grid.x; bx++) {
                    blockIdx = dim3{bx, by, bz};
                    kernel(args...);
                    emu::sync();
                }
    };
#ifdef EMU_OS_THREADS
    std::barrier<> bar((std::ptrdiff_t)n);
    emu::block_barrier = &bar;
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (unsigned tz = 0; tz < block.z; tz++)
        for (unsigned ty = 0; ty < block.y; ty++)
            for (unsigned tx = 0; tx < block.x; tx++)
                threads.emplace_back([=] {
                    threadIdx = dim3{tx, ty, tz};
                    blocks();
                });
    for (auto& t : threads) t.join();
#else
    std::vector<emu::Fiber> fibers(n);
    emu::fibers = &fibers;
    emu::fiber_body = [&](emu::Fiber&) { blocks(); };
    unsigned i = 0;
    for (unsigned tz = 0; tz < block.z; tz++)
        for (unsigned ty = 0; ty < block.y; ty++)
            for (unsigned tx = 0; tx < block.x; tx++, i++) emu::make_fiber(fibers[i], dim3{tx, ty, tz}, i);
    // Round after round, each fiber runs to its next barrier (or to its end): a round is one
    // barrier phase of the block.
    for (bool live = true; live;) {
        live = false;
        for (unsigned k = 0; k < n; k++) {
            if (fibers[k].done) continue;
            emu::resume(k);
            live |= !fibers[k].done;
        }
    }
    emu::fibers = nullptr;
#endif
}
