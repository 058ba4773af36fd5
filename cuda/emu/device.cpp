// The emulated device: autark.cu's kernels (cuda_emu.h) in a shared library that
// `autark_cuda::gpu::Gpu` loads instead of the driver when `AUTARK_CUDA_EMU` names it, so the
// whole CUDA backend — its buffers, launches, copies and graphs — runs a model on the CPU
// (cli/tests/cuda_emu.rs builds it: g++ -shared -fPIC -DEMU_ARCH=610 device.cpp).
#include "dispatch.h"

// One launch: `geo` = grid x, y, z, block x, y, z; `args` as `emu_dispatch` reads them.
// Returns 0, or 1 for an unknown kernel.
extern "C" int autark_emu_launch(const char* name, const uint32_t* geo, const uint64_t* args) {
    return emu_dispatch(name, dim3{geo[0], geo[1], geo[2]}, dim3{geo[3], geo[4], geo[5]}, args) ? 0 : 1;
}

// The architecture the library was built for (`__CUDA_ARCH__`, e.g. 610).
extern "C" int autark_emu_arch() { return EMU_ARCH; }
