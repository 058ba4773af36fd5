#!/usr/bin/env bash
# Issue 23's side-by-side table (BENCHMARKS.md): llama.cpp's own SmolLM2 files (`llama-quantize`
# of the F16 GGUF that scripts/smollm2-f16.py writes) imported byte for byte (`autark quantize
# --type keep`, so both programs multiply the same blocks), then for each ISA and thread count
# `autark bench` and `llama-bench` one right after the other, same prompt and generation lengths.
# AVX-512 pairs llama.cpp's AVX-512 build with AUTARK_ISA=avx512, AVX2 its AVX2 build with
# AUTARK_ISA=avx2. Prints one Markdown row per (file, ISA, threads).
#
#   VARIANT=avx512 bash ../shared/bench/build-llama-bench.sh; VARIANT=avx2 bash …   (first)
#   scripts/peer-table.sh [TYPES…]          (environment: P=128 N=64 R=3 THREADS="1 2" ISAS="avx512 avx2")
#
# Both programs map their files: as root the script drops the page cache and reads each file once
# before measuring (`DROP_CACHES=0` skips it), so both find them in large folios; a file cached
# from its own write read up to a fifth slower here (BENCHMARKS.md, issue 23). Cells still swing
# by up to ±20 % between runs on these 2-core VMs: run it two or three times and give ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
anchor=${ANCHOR:-/tmp/llama-anchor}/llama.cpp-new
bin=target/release/autark
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(Q4_K_M Q5_K_M Q6_K Q4_0 Q4_1 Q8_0)
p=${P:-128} n=${N:-64} r=${R:-3}
out=${OUT:-/tmp/peer-table}
mkdir -p "$out"
f16=models/SmolLM2-135M-Instruct.F16.gguf
[ -s "$f16" ] || python3 scripts/smollm2-f16.py
[ -x "$bin" ] || cargo build --release -q -p autark-cli
quant=$(ls "$anchor"/build-*/bin/llama-quantize | head -1)
for t in "${types[@]}"; do
  [ -s "$out/smol-$t.gguf" ] || "$quant" "$f16" "$out/smol-$t.gguf" "$t" >/dev/null 2>&1
  # An import from an older format (1.3 reordered q6_k's rows16 pieces) is refused: redo it.
  "$bin" inspect "$out/smol-$t.autark" >/dev/null 2>&1 || rm -f "$out/smol-$t.autark"
  [ -s "$out/smol-$t.autark" ] || "$bin" quantize "$out/smol-$t.gguf" -o "$out/smol-$t.autark" --type keep >/dev/null 2>&1
done
# Files cached from their own write (just quantized) read slower than files read back: as root,
# drop the page cache and read every file once (DROP_CACHES=0 skips this).
if [ "${DROP_CACHES:-1}" = 1 ] && [ -w /proc/sys/vm/drop_caches ]; then
  sync && echo 1 > /proc/sys/vm/drop_caches
  for t in "${types[@]}"; do cat "$out/smol-$t.gguf" "$out/smol-$t.autark" >/dev/null; done
fi
ts() { # JSON lines on stdin → "pp ± sd | tg ± sd" (autark: one object per line; llama-bench: a list)
  python3 -c '
import json, sys
text = sys.stdin.read().strip()
rows = json.loads(text) if text.startswith("[") else [json.loads(l) for l in text.splitlines() if l.startswith("{")]
pp = next(x for x in rows if x["n_prompt"] and not x["n_gen"])
tg = next(x for x in rows if x["n_gen"] and not x["n_prompt"])
f = lambda x: "%.1f ± %.1f" % (x["avg_ts"], x["stddev_ts"])
print(f(pp) + "|" + f(tg))'
}
echo "| file | ISA | threads | autark pp$p | llama.cpp pp$p | ratio | autark tg$n | llama.cpp tg$n | ratio |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for t in "${types[@]}"; do
  for isa in ${ISAS:-avx512 avx2}; do
    lb="$anchor/build-$isa/bin/llama-bench"
    [ -x "$lb" ] || { echo "| $t | $isa | – | no llama-bench at $lb |"; continue; }
    for th in ${THREADS:-1 2}; do
      a=$(AUTARK_ISA=$isa "$bin" bench "$out/smol-$t.autark" -p "$p" -n "$n" -r "$r" -t "$th" --json 2>/dev/null | ts)
      l=$("$lb" -m "$out/smol-$t.gguf" -p "$p" -n "$n" -r "$r" -t "$th" -o json 2>/dev/null | ts)
      python3 - "$t" "$isa" "$th" "$a" "$l" <<'PY'
import sys
t, isa, th, a, l = sys.argv[1:]
(app, atg), (lpp, ltg) = a.split("|"), l.split("|")
v = lambda s: float(s.split()[0])
print(f"| {t} | {isa} | {th} | {app} | {lpp} | {v(app) / v(lpp):.2f}× | {atg} | {ltg} | {v(atg) / v(ltg):.2f}× |")
PY
    done
  done
done
