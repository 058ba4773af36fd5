#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit/integration tests, NEON kernels under qemu,
# the ARM cross-build, ThreadSanitizer, short fuzzing, and the Python tests (oracles against the
# real SmolLM2 model, C API, bindings, hostile files).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step's header says how long the suite has run (CI keeps it well under 30 minutes).
# and how much disk is left where it builds (the whole suite takes about 6.5 GB under target/ and
# fuzz/target, the nightly toolchain 1 GB; a full disk otherwise shows only as the first write to fail).
step() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s, $(df -Ph . | awk 'NR == 2 { print $4 }') free] $*"; }
scripts/fetch-model.sh
# llama.cpp's tokenizer (the peer of test_tokenizer_agreement.py; libllama, under two minutes to
# build on a fresh machine, then cached) builds in the background at the lowest priority, on what the
# single-threaded steps (qemu, valgrind, fuzzing) leave idle; the test waits for it if needed.
if [ -z "${AUTARK_NO_BACKGROUND_PEER:-}" ]; then
  LLAMA_TOKENIZE_TIMEOUT=3600 nice -n 19 scripts/llama-tokenize.sh >/dev/null 2>&1 &
fi
# Whatever still runs in the background when the suite stops (a failed step) stops with it.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
# The nightly toolchain (ThreadSanitizer, fuzzing) and cargo-fuzz, installed the same way in the
# background (on a fresh machine: a download and a minute of compiling), and then, still at the
# lowest priority, the ThreadSanitizer tests and the fuzz targets built (two sanitizer builds of
# most of the workspace, four and five minutes on 2 cores alone), on what the steps before them
# leave idle; the TSan and fuzz steps come last, after waiting for this, and build what is still
# missing themselves (a failed background build is built, and reported, again there).
mkdir -p target
( nice -n 19 bash -c 'rustup run nightly rustc --version || rustup toolchain install nightly --profile minimal
  rustup component add rust-src --toolchain nightly
  cargo +nightly fuzz --version || cargo install cargo-fuzz --locked --debug
  TSAN_BUILD_ONLY=1 scripts/tsan.sh
  FUZZ_BUILD_ONLY=1 scripts/fuzz.sh' ) >target/nightly-tools.log 2>&1 &
nightly_tools=$!
python3 -c "import gguf, numpy, pytest, tokenizers, jinja2, safetensors, sentencepiece, openai" 2>/dev/null \
  || python3 -m pip install --quiet -r tests/requirements.txt
# One feature set for every host build of the suite: the CUDA backend (built without a toolkit,
# its driver loaded at run time) and the bindings' generator on. cargo test, the CUDA checks and
# the Python tests' C library and bindings (tests/python/conftest.py) then build each crate once;
# with a feature set of their own each, the CUDA build and the bindings compiled 40 crates again.
export AUTARK_TEST_CARGO_ARGS="--workspace --features autark-cli/cuda,autark-bindings/bindgen"
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy: the suite's feature set, then the default (CPU-only) build"
cargo clippy --all-targets --release $AUTARK_TEST_CARGO_ARGS -- -D warnings
cargo clippy --workspace --all-targets --release -- -D warnings
step "cargo test (also builds target/release/autark, with --device cuda, for the Python tests)"
cargo test --release $AUTARK_TEST_CARGO_ARGS
# The C API under valgrind (two minutes, most of them on one core) runs from here on in the
# background, beside the steps that leave a core idle (qemu, NVRTC, fuzzing); the pytest step
# leaves these tests out and reports them at its end.
valgrind_tests=(tests/python/test_c_api.py::test_valgrind_clean tests/python/test_structured.py::test_c_api_valgrind_clean)
# Each pytest run keeps its temporary files under target/ (emptied at its start), and only those of
# failed tests (synthetic models and converted files: over a GB a run otherwise).
pytest_args=(-q -rs -p no:cacheprovider -o tmp_path_retention_policy=failed)
python3 -m pytest "${valgrind_tests[@]}" "${pytest_args[@]}" --basetemp=target/pytest-valgrind \
  >target/pytest-valgrind.log 2>&1 &
valgrind_pytest=$!
step "CUDA build: --device cuda without a driver, the CPU path of the same binary (docs/CUDA.md)"
scripts/check-cuda.sh
step "CUDA kernels: NVRTC 12.9 for compute 5.3 to 9.0, ptxas registers and spills (docs/CUDA.md)"
scripts/check-cuda-kernels.sh
# The aarch64 builds after the Jetson build go through zig as it does (scripts/aarch64-build.sh),
# so that they reuse its crates instead of compiling them again with Debian's cross gcc.
export AUTARK_CROSS_ZIG=1
# and with one package and feature selection, so that they compile the runtime once.
export AUTARK_AARCH64_ARGS="-p autark-cli -p autark-bindings --features autark-cli/cuda"
step "Jetson build: autark with CUDA (and the bindings) for aarch64 and glibc 2.27 (zig), its no-driver error under qemu-aarch64"
JETSON_LIB=0 scripts/build-jetson.sh
step "NEON kernels under qemu-aarch64"
scripts/test-arm.sh
step "bindings cross-built for aarch64"
scripts/cross-aarch64.sh
step "conformance records written here, reproduced on aarch64 under qemu (NEON, NEON + dotprod)"
scripts/conformance-arm.sh
step "ggml's reference quantizers, the oracle of tests/python/test_ggml_quants.py"
scripts/ggml-oracle.sh
step "pytest"
python3 -m pytest tests/python "${pytest_args[@]}" --basetemp=target/pytest --durations=15 "${valgrind_tests[@]/#/--deselect=}"
step "pytest: the C API under valgrind (started in the background after cargo test)"
valgrind_rc=0
wait $valgrind_pytest || valgrind_rc=$?
cat target/pytest-valgrind.log
[ $valgrind_rc -eq 0 ]
step "waiting for the sanitizer builds (background, lowest priority; log: target/nightly-tools.log)"
wait $nightly_tools || true
step "concurrency tests under ThreadSanitizer"
scripts/tsan.sh
step "fuzzing (short runs; scripts/fuzz.sh 600 for the full ten minutes per target)"
scripts/fuzz.sh 10
step "done"
