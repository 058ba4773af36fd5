#!/usr/bin/env bash
# Builds the peer of tests/python/test_tokenizer_agreement.py: llama.cpp's tokenizer, through
# tests/peer/llama_tokenize_ids.cpp (our own 60 lines, which tokenize as llama.cpp's
# `llama-tokenize -m MODEL --stdin --no-escape --ids` does) linked against libllama, and prints
# the binary's path. The source is the llama.cpp that PyPI's llama-cpp-python 0.3.36 sdist vendors
# (the same as scripts/ggml-peer.sh and ../shared/bench/build-llama-bench.sh use); nothing of it
# enters the repository.
#
# The build lives outside the repository, in $AUTARK_PEER_CACHE (default ~/.cache/autark-peer),
# and is reused: a second call only prints the path (and compiles the driver again if its source
# changed, a second). A first build compiles libllama and ggml once, for the generic CPU (no SIMD
# variants, -O1, a unity build) and not llama.cpp's `common` library, which its `llama-tokenize`
# tool needs and which took most of the six minutes that build took on 2 cores: 100 s.
# $LLAMA_TOKENIZE_TIMEOUT (seconds, default 1200) bounds it; a build that fails or runs out of
# time exits non-zero with the reason on stderr, for the caller to report as a visible SKIP.
#
# Usage: scripts/llama-tokenize.sh        → prints .../llama-tokenize-ids
set -euo pipefail
PKG=llama_cpp_python-0.3.36
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DRIVER="$ROOT/tests/peer/llama_tokenize_ids.cpp"
CACHE=${AUTARK_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autark-peer}
SRC="$CACHE/$PKG/vendor/llama.cpp"
BUILD="$CACHE/build-libllama"
BIN="$BUILD/llama-tokenize-ids"
LIBS=("$BUILD/src/libllama.a" "$BUILD/ggml/src/libggml.a" "$BUILD/ggml/src/libggml-cpu.a" "$BUILD/ggml/src/libggml-base.a")
TIMEOUT=${LLAMA_TOKENIZE_TIMEOUT:-1200}
JOBS=${JOBS:-$(nproc)}

# The driver, compiled again when its source is newer than the binary.
driver() {
  if [ ! -x "$BIN" ] || [ "$DRIVER" -nt "$BIN" ]; then
    c++ -std=c++17 -O1 -I"$SRC/include" -I"$SRC/ggml/include" "$DRIVER" -o "$BIN.tmp" "${LIBS[@]}" \
      -lpthread -ldl -lm >"$CACHE/driver.log" 2>&1 \
      || { echo "llama-tokenize: the driver did not compile (see $CACHE/driver.log)" >&2; tail -5 "$CACHE/driver.log" >&2; exit 6; }
    mv "$BIN.tmp" "$BIN"
  fi
  echo "$BIN"
  exit 0
}

built() { for l in "${LIBS[@]}"; do [ -f "$l" ] || return 1; done; }

if built; then
  driver
fi
for tool in cmake c++ cc; do
  command -v "$tool" >/dev/null || { echo "llama-tokenize: $tool is not installed" >&2; exit 3; }
done
mkdir -p "$CACHE"
# One build at a time (scripts/test.sh starts one in the background; the test that needs it
# then waits here for it instead of starting a second).
exec 9>"$CACHE/build-libllama.lock"
flock 9
if built; then
  driver
fi
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  [ -f "$CACHE/$PKG.tar.gz" ] || python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    -d "$CACHE" "${PKG/_cpp_python-/-cpp-python==}" >&2
  tar xzf "$CACHE/$PKG.tar.gz" -C "$CACHE" "$PKG/vendor/llama.cpp" "$PKG/CHANGELOG.md"
fi
COMMIT=$(grep -m1 -o 'ggml-org/llama.cpp@[0-9a-f]*' "$CACHE/$PKG/CHANGELOG.md" | sed 's/.*@//' || echo unknown)
echo "llama-tokenize: building libllama of llama.cpp@$COMMIT (from $PKG) in $BUILD" >&2
start=$(date +%s)
# -O1: the tokenizer's speed does not matter here, the build's does. A unity build compiles the
# many small model files of libllama together.
timeout "$TIMEOUT" cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS_RELEASE=-O1 -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DCMAKE_UNITY_BUILD=ON \
  -DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF \
  -DGGML_AVX512=OFF -DGGML_OPENMP=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF \
  -DLLAMA_BUILD_NUMBER=0 -DLLAMA_BUILD_COMMIT="$COMMIT" -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  >"$CACHE/cmake.log" 2>&1 \
  || { echo "llama-tokenize: cmake configure failed (see $CACHE/cmake.log)" >&2; tail -5 "$CACHE/cmake.log" >&2; exit 4; }
left=$((TIMEOUT - ($(date +%s) - start)))
if ! timeout "$left" nice cmake --build "$BUILD" -j "$JOBS" --target llama >"$CACHE/build.log" 2>&1; then
  echo "llama-tokenize: build failed or took over ${TIMEOUT}s (see $CACHE/build.log)" >&2
  tail -5 "$CACHE/build.log" >&2
  exit 5
fi
echo "llama-tokenize: built libllama in $(($(date +%s) - start)) s" >&2
driver
