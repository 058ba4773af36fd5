#!/usr/bin/env bash
# Builds target/ggml-peer/libggml-peer.so: current ggml's CPU dot products and activation
# quantizers (ggml-cpu/arch/x86/quants.c, ggml-cpu/quants.c, ggml-quants.c from the
# llama-cpp-python 0.3.36 sdist, cached in .cache/ as for scripts/ggml-oracle.sh) compiled with
# AVX2, FMA, F16C, AVX-VNNI and AVX-512 F/BW/VL/DQ/VNNI, as llama.cpp's VARIANT=avx512 build of
# ../shared/bench/build-llama-bench.sh is, plus benches/peer/ggml_peer_shim.c for the few
# symbols of ggml.c they reference. The criterion benches load it at run time when present
# (`cargo bench -p autark-benches`: the `ggml` rows). x86-64 only; takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=llama_cpp_python-0.3.36
CACHE=.cache/ggml
OUT=target/ggml-peer/libggml-peer.so
SRC="$CACHE/$PKG/vendor/llama.cpp/ggml"
if [ ! -f "$SRC/src/ggml-cpu/arch/x86/quants.c" ] || [ ! -f "$SRC/src/ggml-quants.c" ]; then
  mkdir -p "$CACHE"
  [ -f "$CACHE/$PKG.tar.gz" ] || python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$CACHE" "${PKG/_cpp_python-/-cpp-python==}" >&2
  tar xzf "$CACHE/$PKG.tar.gz" -C "$CACHE" --wildcards \
    "$PKG/vendor/llama.cpp/ggml/include/*" "$PKG/vendor/llama.cpp/ggml/src/*.h" \
    "$PKG/vendor/llama.cpp/ggml/src/ggml-quants.c" "$PKG/vendor/llama.cpp/ggml/src/ggml-cpu/*"
fi
mkdir -p "$(dirname "$OUT")"
FLAGS=(-O3 -fPIC -std=gnu11 -w -mavx2 -mfma -mf16c -mavxvnni -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni
       -I"$SRC/include" -I"$SRC/src" -I"$SRC/src/ggml-cpu")
cc "${FLAGS[@]}" -shared -o "$OUT" benches/peer/ggml_peer_shim.c "$SRC/src/ggml-cpu/arch/x86/quants.c" \
  "$SRC/src/ggml-cpu/quants.c" "$SRC/src/ggml-quants.c" -lm
echo "$OUT"
