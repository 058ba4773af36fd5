#!/usr/bin/env bash
# Issue 23 item 3 (BENCHMARKS.md): one-token decode of models larger than the cache against the
# read bandwidth of their mapped files. For each round: `autark bench --memory` of the first file
# (the probe), then for each file `autark bench FILE -p 0 -n 16 -r 3`, printed as t/s, GB/s
# (t/s × the file's tensor bytes: one token reads every weight once; the tied output matrix is
# the embedding) and the share of the probe. As root it first drops the page cache and reads
# each file once, so that they are mapped in 2 MiB folios (a file cached in 4 KiB pages streams a
# quarter slower on Linux 6.18 / ext4; BENCHMARKS.md). Make the files with
# scripts/synthetic-model.py (Llama-3.2-1B shapes, one per type).
#
#   THREADS=1 ROUNDS=2 AUTARK_ISA=avx2 scripts/decode-vs-probe.sh /tmp/m/s1b-*.autark
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${AUTARK:-target/release/autark}
t=${THREADS:-1} rounds=${ROUNDS:-2}
[ $# -gt 0 ] || { echo "usage: $0 FILE.autark…" >&2; exit 2; }
[ -x "$bin" ] || cargo build --release -q -p autark-cli
if [ "${DROP_CACHES:-1}" = 1 ] && [ -w /proc/sys/vm/drop_caches ]; then
  sync && echo 3 > /proc/sys/vm/drop_caches
  cat "$@" >/dev/null
fi
tensor_mb() { "$bin" bench --memory "$1" -t 1 -r 1 2>&1 | grep -o '([0-9.]* MB' | tr -d '( MB'; }
for _ in $(seq "$rounds"); do
  probe=$("$bin" bench --memory "$1" -t "$t" -r 3 2>&1 | tail -1 | awk -F'|' '{print $4}' | tr -d ' ')
  line="probe $probe GB/s"
  for f in "$@"; do
    tps=$("$bin" bench "$f" -p 0 -n 16 -r 3 -t "$t" 2>&1 | grep tg | awk -F'|' '{print $4}' | awk '{print $1}')
    line+=$(python3 -c "import sys; n, r, m, p = sys.argv[1:]; g = float(r) * float(m) / 1000; \
print(f' | {n} {r} t/s {g:.1f} GB/s {100 * g / float(p):.0f} %')" "$(basename "$f" .autark)" "$tps" "$(tensor_mb "$f")" "$probe")
  done
  echo "$line"
done
