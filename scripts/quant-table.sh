#!/usr/bin/env bash
# Quality of quantization recipes (docs/QUANTIZATION.md): bits per weight, perplexity and KL
# divergence against the f16 model, for autark's recipes and, side by side, llama.cpp's
# llama-quantize types measured with llama-perplexity on the same text and windows.
#
#   scripts/quant-table.sh [TEXT] [CHUNKS]       (default data/eval/en.txt, all windows)
#
# Needs models/SmolLM2-135M-Instruct.F16.gguf (scripts/smollm2-f16.py) and, for the llama.cpp
# rows, LLAMA_BIN=<dir with llama-quantize and llama-perplexity> (../shared/bench/build-llama-bench.sh,
# VARIANT=avx512). Prints markdown table rows; work files go to ${WORK:-/tmp/autark-quant}.
# ONLY_LLAMA=1 skips the autark rows (after a run that made them).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TEXT="${1:-$ROOT/data/eval/en.txt}"
CHUNKS="${2:-}"
A="$ROOT/target/release/autark"
F16="$ROOT/models/SmolLM2-135M-Instruct.F16.gguf"
CALIB="$ROOT/data/eval/calibration.txt"
WORK="${WORK:-/tmp/autark-quant}"
mkdir -p "$WORK"
[ -x "$A" ] || cargo build --release -p autark-cli
[ -f "$F16" ] || python3 "$ROOT/scripts/smollm2-f16.py"
chunks=()
[ -n "$CHUNKS" ] && chunks=(--chunks "$CHUNKS")

if [ -z "${ONLY_LLAMA:-}" ]; then
"$A" quantize "$F16" -o "$WORK/f16.autark" --type f16 >/dev/null
"$A" perplexity "$WORK/f16.autark" -f "$TEXT" -c 512 "${chunks[@]}" --save-logits "$WORK/f16.lp" --json 2>/dev/null |
  python3 -c 'import json,sys; j=json.load(sys.stdin); print("| autark f16 | 16.00 | %.4f ± %.4f | — | — | — |" % (j["ppl"], j["ppl_stderr"]))'

row() { # name, quantize args...
  local name="$1"; shift
  local bpw
  bpw=$("$A" quantize "$F16" -o "$WORK/$name.autark" "$@" 2>/dev/null | grep -oE '[0-9.]+ bits/weight' | cut -d' ' -f1)
  "$A" perplexity "$WORK/$name.autark" -f "$TEXT" -c 512 "${chunks[@]}" --kl-base "$WORK/f16.lp" --json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin); n,b=sys.argv[1:3]; print("| autark %s | %s | %.4f ± %.4f | %.5f ± %.5f | %.4f | %.2f %% |" % (n, b, j["ppl"], j["ppl_stderr"], j["kld_mean"], j["kld_stderr"], j["kld_p99"], 100*j["top1_agreement"]))' "$name" "$bpw"
}
row "q4_0 --rtn" --type q4_0 --rtn
row "q4_0" --type q4_0
row "q4_0 --calibration" --type q4_0 --calibration "$CALIB"
row "q4_mixed" --type q4_mixed
row "q4_mixed --calibration" --type q4_mixed --calibration "$CALIB"
row "q4_1 --rtn" --type q4_1 --rtn
row "q4_1 --calibration" --type q4_1 --calibration "$CALIB"
row "q8_0" --type q8_0
fi

if [ -n "${LLAMA_BIN:-}" ]; then
  L="$LLAMA_BIN"
  "$L/llama-perplexity" -m "$F16" -f "$TEXT" -c 512 "${chunks[@]}" -t 2 --kl-divergence-base "$WORK/llama-f16.kld" >/dev/null 2>&1
  for q in Q4_0 Q4_K_M Q4_1 Q8_0; do
    bpw=$("$L/llama-quantize" "$F16" "$WORK/llama-$q.gguf" "$q" 2>&1 | grep -oE 'quant size *= .*BPW' | grep -oE '[0-9.]+ BPW' | cut -d' ' -f1)
    "$L/llama-perplexity" -m "$WORK/llama-$q.gguf" -f "$TEXT" -c 512 "${chunks[@]}" -t 2 \
        --kl-divergence-base "$WORK/llama-f16.kld" --kl-divergence 2>&1 |
      python3 -c '
import re, sys
s = sys.stdin.read(); q, bpw = sys.argv[1:3]
g = lambda pat: re.search(pat, s).groups()
ppl, ppe = g(r"Mean PPL\(Q\)\s*:\s*([0-9.]+) ±\s*([0-9.]+)")
kld, kle = g(r"Mean    KLD:\s*([0-9.]+) ±\s*([0-9.]+)")
p99, = g(r"99\.0%   KLD:\s*([0-9.]+)")
top, = g(r"Same top p:\s*([0-9.]+)")
print("| llama.cpp %s | %s | %s ± %s | %s ± %s | %s | %s %% |" % (q, bpw, ppl, ppe, kld, kle, p99, top))' "$q" "$bpw"
  done
fi
