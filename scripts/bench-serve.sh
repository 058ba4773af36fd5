#!/usr/bin/env bash
# Aggregate generated tokens/s and per-stream inter-token latency (p50/p99) of `autark serve`
# for 1, 4 and 8 concurrent streams (docs/SERVER.md, BENCHMARKS.md "Serving"). Each stream is a
# greedy completion of N tokens of a short prompt, streamed; the client is the same for every
# server.
#
#   scripts/bench-serve.sh [MODEL] [THREADS] [TOKENS]
# (defaults: models/smol-q4_0.autark, 2, 64). Uses target/release/autark (AUTARK_BIN overrides).
# With LLAMA_SERVER=path/to/llama-server and PEER_GGUF=file.gguf (the same weights: import the
# GGUF with `autark quantize --type q4_0` so both read the same bytes), llama-server runs the
# same streams in the same run (`-np 8 -cb`, 8 slots of 512 tokens, the same threads),
# alternating with autark for ROUNDS rounds (default 1); only one server runs at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/smol-q4_0.autark}
THREADS=${2:-2}
TOKENS=${3:-64}
BIN=${AUTARK_BIN:-target/release/autark}
ROUNDS=${ROUNDS:-1}
LOG=$(mktemp)
CLIENT=$(mktemp --suffix .py)
PID=
stop() { [ -n "$PID" ] && { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }; PID=; }
trap 'stop; rm -f "$LOG" "$CLIENT"' EXIT

cat >"$CLIENT" <<'PY'
import http.client, json, sys, threading, time

port, tokens, label = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def stream(i, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = {"prompt": f"Story {i}: Once upon a time", "max_tokens": tokens, "temperature": 0, "stream": True}
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    times = []
    for line in r:
        if line.startswith(b"data: {") and b'"finish_reason":null' in line.replace(b" ", b""):
            times.append(time.perf_counter())
    out[i] = times

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")

for n in (1, 4, 8):
    out = [None] * n
    t0 = time.perf_counter()
    ts = [threading.Thread(target=stream, args=(i, out)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    wall = time.perf_counter() - t0
    pieces = sum(len(o) for o in out)
    itl = [(b - a) * 1e3 for o in out for a, b in zip(o, o[1:])]
    print(f"| {label} | {n} | {pieces / wall:.1f} | {pct(itl, 50):.1f} | {pct(itl, 99):.1f} |", flush=True)
PY

run_autark() {
  "$BIN" serve "$MODEL" --port 0 --parallel 8 --ctx-per-slot 512 -t "$THREADS" 2>"$LOG" &
  PID=$!
  for _ in $(seq 100); do grep -q ready "$LOG" && break; sleep 0.1; done
  local port
  port=$(grep -o 'http://127.0.0.1:[0-9]*' "$LOG" | head -1 | cut -d: -f3)
  python3 "$CLIENT" "$port" "$TOKENS" autark
  stop
}

run_llama() {
  local port=18391
  "$LLAMA_SERVER" -m "$PEER_GGUF" --port "$port" -np 8 -cb -c 4096 -t "$THREADS" -tb "$THREADS" \
    --no-warmup >"$LOG" 2>&1 &
  PID=$!
  for _ in $(seq 300); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)" \
      2>/dev/null && break
    sleep 0.1
  done
  python3 "$CLIENT" "$port" "$TOKENS" llama-server
  stop
}

echo "model $MODEL${PEER_GGUF:+ / $PEER_GGUF}, $THREADS threads, $TOKENS tokens per stream, greedy, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "| server | streams | aggregate tokens/s | ITL p50 (ms) | ITL p99 (ms) |"
echo "| --- | ---: | ---: | ---: | ---: |"
for _ in $(seq "$ROUNDS"); do
  run_autark
  if [ -n "${LLAMA_SERVER:-}" ]; then run_llama; fi
done
