#!/usr/bin/env bash
# Aggregate generated tokens/s and per-stream inter-token latency (p50/p99) of `autark serve`
# for 1, 4 and 8 concurrent streams (docs/SERVER.md). Short: each stream generates N tokens.
#
#   scripts/bench-serve.sh [MODEL] [THREADS] [TOKENS]
# (defaults: models/smol-q4_0.autark, 2, 64). Uses target/release/autark (AUTARK_BIN overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/smol-q4_0.autark}
THREADS=${2:-2}
TOKENS=${3:-64}
BIN=${AUTARK_BIN:-target/release/autark}
LOG=$(mktemp)
"$BIN" serve "$MODEL" --port 0 --parallel 8 --ctx-per-slot 512 -t "$THREADS" 2>"$LOG" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 100); do grep -q ready "$LOG" && break; sleep 0.1; done
PORT=$(grep -o 'http://127.0.0.1:[0-9]*' "$LOG" | head -1 | cut -d: -f3)
python3 - "$PORT" "$TOKENS" "$MODEL" "$THREADS" <<'PY'
import http.client, json, sys, threading, time

port, tokens, model, threads = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

def stream(i, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = {"prompt": f"Story {i}: Once upon a time", "max_tokens": tokens, "temperature": 0, "stream": True}
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    times = []
    for line in r:
        if line.startswith(b"data: {") and b'"finish_reason":null' in line:
            times.append(time.perf_counter())
    out[i] = times

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")

print(f"model {model}, {threads} threads, {tokens} tokens per stream, greedy")
print("| streams | aggregate tokens/s | ITL p50 (ms) | ITL p99 (ms) |")
print("| ---: | ---: | ---: | ---: |")
for n in (1, 4, 8):
    out = [None] * n
    t0 = time.perf_counter()
    ts = [threading.Thread(target=stream, args=(i, out)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    wall = time.perf_counter() - t0
    pieces = sum(len(o) for o in out)
    itl = [(b - a) * 1e3 for o in out for a, b in zip(o, o[1:])]
    print(f"| {n} | {pieces / wall:.1f} | {pct(itl, 50):.1f} | {pct(itl, 99):.1f} |")
PY
