#!/usr/bin/env bash
# The numerical contract across architectures: SmolLM2 files quantized here (x86), whose
# conformance records x86's scalar kernels wrote, verified by the runtime cross-built for
# aarch64 and run under qemu: NEON + dotprod (`-cpu max`) on a q4_0 file (16-row interleaved
# matrices) and a q4_k_m file (q4_k, q5_0, q6_k, q8_0), NEON without dotprod (`-cpu cortex-a53`)
# on the q4_k_m file. Every step's logits must be the recorded bits (docs/NUMERICS.md).
# Needs target/release/autark (scripts/test.sh builds it first) and the test model
# (scripts/fetch-model.sh); prints SKIP with the reason, and exits 0, only when the aarch64
# toolchain or qemu cannot be installed here.
set -uo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
rustup target list --installed 2>/dev/null | grep -qx "$target" || { echo "SKIP conformance-arm: no Rust target $target"; exit 0; }
[ "${AUTARK_CROSS_ZIG:-0}" = 1 ] || command -v aarch64-linux-gnu-gcc >/dev/null \
  || { echo "SKIP conformance-arm: no aarch64-linux-gnu-gcc"; exit 0; }
command -v qemu-aarch64 >/dev/null || { echo "SKIP conformance-arm: no qemu-aarch64"; exit 0; }
set -e
. scripts/aarch64-build.sh
gguf=${AUTARK_TEST_GGUF:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
out=target/conformance-arm
mkdir -p "$out"
for t in q4_0 q4_k_m; do
  target/release/autark quantize "$gguf" -o "$out/smol-$t.autark" -t "$t" --rtn >/dev/null 2>&1 || target/release/autark quantize "$gguf" -o "$out/smol-$t.autark" -t "$t" --rtn
done
# The commands of scripts/cross-aarch64.sh (which runs first in scripts/test.sh): the same
# feature sets, so nothing compiles twice.
aarch64_build -q -p autark-bindings -p autark-runtime --lib
aarch64_build -q -p autark-runtime --example verify_conformance
bin=target/$target/release/examples/verify_conformance
run() { qemu-aarch64 -cpu "$1" -L /usr/aarch64-linux-gnu "$bin" "$out/smol-$2.autark" 1; }
run max q4_0
run max q4_k_m
run cortex-a53 q4_k_m
