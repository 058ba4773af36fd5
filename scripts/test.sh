#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit/integration tests, NEON kernels under qemu,
# the ARM cross-build, ThreadSanitizer, short fuzzing, and the Python tests (oracles against the
# real SmolLM2 model, C API, bindings, hostile files).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-model.sh
python3 -c "import gguf, numpy, pytest, tokenizers, jinja2, safetensors, sentencepiece, openai" 2>/dev/null \
  || python3 -m pip install --quiet -r tests/requirements.txt
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== cargo test (also builds target/release/autark for the Python tests)"
cargo test --workspace --release
echo "== NEON kernels under qemu-aarch64"
scripts/test-arm.sh
echo "== bindings cross-built for aarch64"
scripts/cross-aarch64.sh
echo "== concurrency tests under ThreadSanitizer"
scripts/tsan.sh
echo "== fuzzing (short runs; scripts/fuzz.sh 600 for the full ten minutes per target)"
scripts/fuzz.sh 10
echo "== ggml's reference quantizers, the oracle of tests/python/test_ggml_quants.py"
scripts/ggml-oracle.sh
echo "== pytest"
python3 -m pytest tests/python -q -rs -p no:cacheprovider
