#!/usr/bin/env bash
# Checks that `autark quantize --rtn` writes the same tensors, byte for byte, as llama.cpp's
# llama-quantize for the K-quant recipes (types chosen per tensor, fallbacks, and the bytes).
#
#   LLAMA_BIN=<dir with llama-quantize> scripts/check-llama-quantize.sh [SOURCE.gguf] [TYPES...]
#
# Default source: models/SmolLM2-135M-Instruct.F16.gguf (scripts/smollm2-f16.py); default types:
# Q4_K_M Q5_K_M Q6_K. LLAMA_BIN: ../shared/bench/build-llama-bench.sh (VARIANT=avx512) builds it.
# Not part of the test suite (building llama.cpp takes minutes); tests/python/test_ggml_quants.py
# checks the quantizers themselves against ggml's code in every run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="${1:-$ROOT/models/SmolLM2-135M-Instruct.F16.gguf}"
shift || true
TYPES=("${@:-Q4_K_M Q5_K_M Q6_K}")
read -r -a TYPES <<< "${TYPES[*]}"
: "${LLAMA_BIN:?set LLAMA_BIN to the directory holding llama-quantize}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
[ -x "$ROOT/target/release/autark" ] || cargo build --release -p autark-cli
for T in "${TYPES[@]}"; do
  t=$(echo "$T" | tr 'A-Z' 'a-z')
  "$LLAMA_BIN/llama-quantize" "$SRC" "$WORK/llama.gguf" "$T" >/dev/null 2>&1
  "$ROOT/target/release/autark" quantize "$SRC" -o "$WORK/autark.autark" --type "$t" --rtn >/dev/null 2>&1
  PYTHONPATH="$ROOT/tests/python" python3 - "$WORK" "$T" <<'PY'
import sys
import gguf
import autark_file
work, name = sys.argv[1:3]
_, ours = autark_file.read(f"{work}/autark.autark")
theirs = gguf.GGUFReader(f"{work}/llama.gguf").tensors
bad = [(t.name, ours[t.name]["dtype"], t.tensor_type.name) for t in theirs if ours[t.name]["raw"] != t.data.tobytes()]
print(f"{name}: {len(theirs) - len(bad)} of {len(theirs)} tensors byte-identical")
if bad:
    print("  differ:", bad[:8])
    sys.exit(1)
PY
done
