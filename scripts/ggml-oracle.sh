#!/usr/bin/env bash
# Builds target/ggml-oracle/ggml-quants (tests/oracle/ggml_quants.c): ggml's reference
# quantizers from ggml-quants.c as vendored by PyPI's llama-cpp-python (the sdist is cached in
# .cache/), for the bit-exact quantizer tests (tests/python/test_ggml_quants.py). Compiles that
# one file (with -ffp-contract=off: ggml's arithmetic as written, no fused multiply-adds), in
# seconds; prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=llama_cpp_python-0.3.36
CACHE=.cache/ggml
OUT=target/ggml-oracle/ggml-quants
SRC="$CACHE/$PKG/vendor/llama.cpp/ggml"
if [ ! -f "$SRC/src/ggml-quants.c" ]; then
  mkdir -p "$CACHE"
  [ -f "$CACHE/$PKG.tar.gz" ] || python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$CACHE" "${PKG/_cpp_python-/-cpp-python==}" >&2
  tar xzf "$CACHE/$PKG.tar.gz" -C "$CACHE" --wildcards \
    "$PKG/vendor/llama.cpp/ggml/include/*" "$PKG/vendor/llama.cpp/ggml/src/*.h" \
    "$PKG/vendor/llama.cpp/ggml/src/ggml-quants.c"
fi
if [ ! -x "$OUT" ] || [ tests/oracle/ggml_quants.c -nt "$OUT" ]; then
  mkdir -p "$(dirname "$OUT")"
  cc -O2 -ffp-contract=off -std=gnu11 -w -I"$SRC/include" -I"$SRC/src" -I"$SRC/src/ggml-cpu" \
    tests/oracle/ggml_quants.c "$SRC/src/ggml-quants.c" -lm -o "$OUT"
fi
echo "$OUT"
