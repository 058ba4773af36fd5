#!/usr/bin/env bash
# scripts/gpu-check.sh RESULTS_DIR: the one-shot check on a machine with an NVIDIA GPU and driver
# and no Rust toolchain (docs/CUDA.md). It takes the kit scripts/gpu-prepare.sh built (KIT,
# default .gpu): prints the device and driver; runs every kernel case against the scalar CPU
# kernels with NVRTC compiling for this device, then with the PTX built for compute 5.3, 6.1,
# 7.2 and 8.7 (the Jetson code paths, JIT-compiled for this GPU); times each GEMV. Writes
# RESULTS_DIR/{nvidia-smi.txt,kernels.txt,kernels.json}. Needs libnvrtc (a CUDA toolkit or
# PyPI's nvidia-cuda-nvrtc) on the machine: it is looked for under /usr/local and /opt.
set -uo pipefail
out=${1:?usage: gpu-check.sh RESULTS_DIR}
kit=${KIT:-.gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 | tee "$out/nvidia-smi.txt"
# cudarc opens libnvrtc.so or libnvrtc.so.12 (and older names); a CUDA 13 install may have
# only libnvrtc.so.13, so link the newest one found under the first name.
# (Not from a stubs/ folder: beside the stub libnvrtc lies a stub libcuda that would be loaded too.)
lib=$(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' ! -name '*builtins*' ! -name '*alt*' ! -path '*/stubs/*' 2>/dev/null | sort -V | tail -1)
echo "NVRTC: ${lib:-none found}"
mkdir -p /tmp/autark-nvrtc
[ -n "$lib" ] && ln -sf "$lib" /tmp/autark-nvrtc/libnvrtc.so
export LD_LIBRARY_PATH="/tmp/autark-nvrtc:$(dirname "${lib:-/}"):${LD_LIBRARY_PATH:-}"
ptx=()
for p in "$kit"/autark.compute_*.ptx; do ptx+=(--ptx "$p"); done
"$kit/autark-gpu-check" run "${ptx[@]}" --json "$out/kernels.json" 2>&1 | tee "$out/kernels.txt"
rc=${PIPESTATUS[0]}
echo "autark-gpu-check exit code $rc"
exit "$rc"
