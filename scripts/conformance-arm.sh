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
# The CLI for aarch64 (in scripts/test.sh the build of scripts/build-jetson.sh, which ran first:
# the same selection, AUTARK_AARCH64_ARGS, so nothing compiles again): `autark verify
# --conformance`, the command a user runs on the device, checksums and tokenizer included.
aarch64_build -q ${AUTARK_AARCH64_ARGS:--p autark-cli}
bin=target/$target/release/autark
run() {
  local got
  got=$(qemu-aarch64 -cpu "$1" -L /usr/aarch64-linux-gnu "$bin" verify "$out/smol-$2.autark" --conformance -t 1) \
    || { echo "$got"; echo "FAIL: conformance on $2 under qemu -cpu $1" >&2; exit 1; }
  grep -q "bit-identical with the record ($3 kernels here" <<<"$got" \
    || { echo "$got"; echo "FAIL: $2 under qemu -cpu $1: not bit-identical with the $3 kernels" >&2; exit 1; }
  echo "$out/smol-$2.autark, qemu -cpu $1: $(grep conformance: <<<"$got")"
}
run max q4_0 neon-dotprod
run max q4_k_m neon-dotprod
run cortex-a53 q4_k_m neon
