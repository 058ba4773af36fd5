#!/usr/bin/env bash
# The CUDA build (docs/CUDA.md): `autark-cli --features cuda` builds here without any CUDA
# toolkit (the driver is loaded at run time), the whole CUDA backend decodes a synthetic model
# on the emulated device as the CPU does, `--device cuda` on a machine without a driver exits
# 1 with one line naming what is missing, and the same binary still runs on the CPU.
# The build replaces target/release/autark with the CUDA-enabled one (the CPU path is the same
# code), so the Python tests that follow run that binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# AUTARK_TEST_CARGO_ARGS: the feature set of scripts/test.sh's cargo commands, which hold the
# CUDA backend: its clippy run linted it, its cargo test built the binary and ran
# cli/tests/cuda_emu.rs (two and a half minutes here: not run twice).
if [ -n "${AUTARK_TEST_CARGO_ARGS:-}" ]; then
  cargo build --release -q $AUTARK_TEST_CARGO_ARGS
  echo "OK: cli/tests/cuda_emu.rs ran in scripts/test.sh's cargo test"
else
  cargo clippy --release -q -p autark-cli --features cuda -- -D warnings
  cargo build --release -q -p autark-cli --features cuda
  # The whole backend on the CPU: a synthetic model through the emulated kernels (cuda/emu/
  # device.cpp via AUTARK_CUDA_EMU) must give the CPU's greedy text and logits (docs/CUDA.md).
  if ! emu=$(cargo test --release -q -p autark-cli --features cuda --test cuda_emu -- --nocapture 2>&1); then
    tail -40 <<<"$emu"
    echo "FAIL: cli/tests/cuda_emu.rs" >&2
    exit 1
  fi
  grep -E "Δlogit|on both" <<<"$emu" | sed 's/^/  emulated CUDA: /'
  echo "OK: the CUDA backend on the emulated device gives the CPU's greedy text and logits"
fi
bin=target/release/autark
gguf=${AUTARK_TEST_GGUF:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
out=target/check-cuda
mkdir -p "$out"
[ -s "$out/smol-q4_0.autark" ] || "$bin" quantize "$gguf" -o "$out/smol-q4_0.autark" -t q4_0 --rtn >/dev/null 2>&1
set +e
msg=$("$bin" run "$out/smol-q4_0.autark" -p "Hi" -n 4 --device cuda 2>&1 >/dev/null)
rc=$?
set -e
if [ -e /usr/lib/x86_64-linux-gnu/libcuda.so.1 ] || ldconfig -p 2>/dev/null | grep -q 'libcuda\.so'; then
  echo "SKIP: a CUDA driver is present here, so --device cuda runs on it (scripts/gpu-check.sh checks that)"
else
  want="no CUDA driver found (libcuda.so)"
  [ "$rc" -eq 1 ] || { echo "FAIL: --device cuda exited $rc, not 1: $msg" >&2; exit 1; }
  grep -qF "$want" <<<"$msg" || { echo "FAIL: --device cuda said \"$msg\", expected \"$want\"" >&2; exit 1; }
  [ "$(wc -l <<<"$msg")" -eq 1 ] || { echo "FAIL: more than one line: $msg" >&2; exit 1; }
  echo "OK: --device cuda: $msg (exit 1)"
fi
text=$("$bin" run "$out/smol-q4_0.autark" -p "The capital of France is" -n 8 --temp 0 --device cpu 2>/dev/null)
[ -n "$text" ] || { echo "FAIL: the CPU path of the CUDA build generated nothing" >&2; exit 1; }
echo "OK: the same binary on the CPU: $(tr '\n' ' ' <<<"$text")"
