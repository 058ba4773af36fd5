#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit/integration tests, and the Python oracle
# tests (gguf-py, numpy reference forward pass) against the real SmolLM2 model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-model.sh
python3 -c "import gguf, numpy, pytest, tokenizers, jinja2, safetensors, sentencepiece" 2>/dev/null \
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
echo "== pytest"
python3 -m pytest tests/python -q -p no:cacheprovider
