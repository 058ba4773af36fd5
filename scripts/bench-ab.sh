#!/usr/bin/env bash
# Compares the decode speed of two `autark` binaries on a noisy machine: both run at once, one
# thread each, pinned to CPUs 0 and 1 (swapped every round), so that what slows the host down in
# a given second slows both; each round gives one ratio B ÷ A of generated tokens/s, and the
# median over the rounds is the figure. Run it with the same binary twice first: the spread of
# that A/A series is the noise floor (on the 2-core VMs of this project: IQR about ±8 %, median
# within ±2 % of 1 after 40 rounds).
#
#   scripts/bench-ab.sh MODEL.autark BIN_A BIN_B        (environment: ROUNDS=40 N=128 ISA=…)
#
# ISA sets AUTARK_ISA for both (default: the machine's best). Needs 2 CPUs and `taskset`.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: scripts/bench-ab.sh MODEL.autark BIN_A BIN_B" >&2; exit 2; }
model=$1 a=$2 b=$3
rounds=${ROUNDS:-40} n=${N:-128}
command -v taskset >/dev/null || { echo "bench-ab: taskset not found (util-linux)" >&2; exit 3; }
[ "$(nproc)" -ge 2 ] || { echo "bench-ab: needs 2 CPUs" >&2; exit 3; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # cpu binary out
  ${ISA:+env AUTARK_ISA=$ISA} taskset -c "$1" "$2" bench "$model" -p 0 -n "$n" -r 1 -t 1 --json >"$3" 2>"$3.err" \
    || { echo "bench-ab: $2 failed: $(tail -1 "$3.err")" >&2; return 1; }
}
for r in $(seq "$rounds"); do
  ca=$(( r % 2 )) cb=$(( (r + 1) % 2 ))
  run "$ca" "$a" "$tmp/a" & pa=$!
  run "$cb" "$b" "$tmp/b" & pb=$!
  wait "$pa" && wait "$pb"
  python3 - "$tmp/a" "$tmp/b" "$r" <<'PY' | tee -a "$tmp/rounds"
import json, sys
ta, tb = (json.loads(open(p).readline())["avg_ts"] for p in sys.argv[1:3])
print(sys.argv[3], f"{ta:.1f}", f"{tb:.1f}", f"{tb / ta:.3f}")
PY
done
python3 - "$tmp/rounds" <<'PY'
import statistics, sys
x = sorted(float(l.split()[3]) for l in open(sys.argv[1]))
n = len(x)
print(f"B/A over {n} rounds: median {statistics.median(x):.3f}, IQR {x[n // 4]:.3f}–{x[3 * n // 4]:.3f}")
PY
