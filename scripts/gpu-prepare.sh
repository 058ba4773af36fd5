#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh takes to a GPU machine that has a driver but no Rust: the
# autark-gpu-check binary and `autark` built with --features cuda (both stripped), and the kernels as PTX for Jetson's and older compute
# capabilities (NVRTC 12.9 here; a CUDA 13 NVRTC no longer targets compute_53/72), in KIT
# (default .gpu, which git ignores through .git/info/exclude: `echo /.gpu/ >> .git/info/exclude`).
set -euo pipefail
cd "$(dirname "$0")/.."
kit=${1:-.gpu}
scripts/check-cuda-kernels.sh
rm -rf "$kit"
mkdir -p "$kit"
cargo build --release -q -p autark-cli --features cuda
cp target/release/autark-gpu-check target/release/autark "$kit/"
strip "$kit/autark-gpu-check" "$kit/autark"
for a in 53 61 72 87; do cp "target/cuda-ptx/autark.compute_$a.ptx" "$kit/"; done
cp scripts/gpu-check.sh "$kit/"
du -sh "$kit"
