#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit/integration tests, NEON kernels under qemu,
# the ARM cross-build, ThreadSanitizer, short fuzzing, and the Python tests (oracles against the
# real SmolLM2 model, C API, bindings, hostile files).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step's header says how long the suite has run (CI keeps it well under 30 minutes).
step() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }
scripts/fetch-model.sh
# llama.cpp's tokenizer (the peer of test_tokenizer_agreement.py; minutes to build on a fresh
# machine, then cached) builds in the background at the lowest priority, on what the
# single-threaded steps (qemu, valgrind, fuzzing) leave idle; the test waits for it if needed.
if [ -z "${AUTARK_NO_BACKGROUND_PEER:-}" ]; then
  LLAMA_TOKENIZE_TIMEOUT=3600 nice -n 19 scripts/llama-tokenize.sh >/dev/null 2>&1 &
  peer_build=$!
  trap 'kill $peer_build 2>/dev/null || true' EXIT
fi
python3 -c "import gguf, numpy, pytest, tokenizers, jinja2, safetensors, sentencepiece, openai" 2>/dev/null \
  || python3 -m pip install --quiet -r tests/requirements.txt
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
step "cargo test (also builds target/release/autark for the Python tests)"
cargo test --workspace --release
step "CUDA build: --device cuda without a driver, the CPU path of the same binary (docs/CUDA.md)"
scripts/check-cuda.sh
step "CUDA kernels: NVRTC 12.9 for compute 5.3 to 9.0, ptxas registers and spills (docs/CUDA.md)"
scripts/check-cuda-kernels.sh
# The aarch64 builds after the Jetson build go through zig as it does (scripts/aarch64-build.sh),
# so that they reuse its crates instead of compiling them again with Debian's cross gcc.
export AUTARK_CROSS_ZIG=1
step "Jetson build: autark with CUDA for aarch64 and glibc 2.27 (zig), its no-driver error under qemu-aarch64"
JETSON_LIB=0 scripts/build-jetson.sh
step "NEON kernels under qemu-aarch64"
scripts/test-arm.sh
step "bindings cross-built for aarch64"
scripts/cross-aarch64.sh
step "conformance records written here, reproduced on aarch64 under qemu (NEON, NEON + dotprod)"
scripts/conformance-arm.sh
step "concurrency tests under ThreadSanitizer"
scripts/tsan.sh
step "fuzzing (short runs; scripts/fuzz.sh 600 for the full ten minutes per target)"
scripts/fuzz.sh 10
step "ggml's reference quantizers, the oracle of tests/python/test_ggml_quants.py"
scripts/ggml-oracle.sh
step "pytest"
python3 -m pytest tests/python -q -rs -p no:cacheprovider --durations=15
step "done"
