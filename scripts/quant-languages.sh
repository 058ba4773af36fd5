#!/usr/bin/env bash
# Per-language quality (docs/QUANTIZATION.md): perplexity of the f16 model and KL divergence of
# some recipes from it, on each evaluation text of data/eval/ (the same 193 paragraphs in six
# languages). Uses the models scripts/quant-table.sh left in ${WORK:-/tmp/autark-quant}.
#
#   scripts/quant-languages.sh [CHUNKS]     (default 8 windows of 512 tokens per language)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CHUNKS="${1:-8}"
A="$ROOT/target/release/autark"
WORK="${WORK:-/tmp/autark-quant}"
RECIPES=("q4_0 --rtn" "q4_0 --calibration" "q4_mixed --calibration" "q8_0")
for r in "${RECIPES[@]}"; do
  [ -f "$WORK/$r.autark" ] || { echo "missing $WORK/$r.autark: run scripts/quant-table.sh first" >&2; exit 1; }
done
printf '| language | f16 PPL |'; printf ' KLD %s |' "${RECIPES[@]}"; echo
printf '|---|---|'; printf -- '---|%.0s' "${RECIPES[@]}"; echo
for lang in en fr de es it pl; do
  text="$ROOT/data/eval/$lang.txt"
  ppl=$("$A" perplexity "$WORK/f16.autark" -f "$text" -c 512 --chunks "$CHUNKS" --save-logits "$WORK/f16-$lang.lp" --json 2>/dev/null |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.2f ± %.2f" % (j["ppl"], j["ppl_stderr"]))')
  printf '| %s | %s |' "$lang" "$ppl"
  for r in "${RECIPES[@]}"; do
    k=$("$A" perplexity "$WORK/$r.autark" -f "$text" -c 512 --chunks "$CHUNKS" --kl-base "$WORK/f16-$lang.lp" --json 2>/dev/null |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.4f" % j["kld_mean"])')
    printf ' %s |' "$k"
  done
  echo
done
