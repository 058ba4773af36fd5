#!/usr/bin/env python3
"""Time to first token of a multi-turn chat with and without `autark serve --prompt-cache`:
`scripts/bench-prompt-cache.py MODEL [--threads 2] [--turns 4] [--rounds 3] [--autark BIN]`.

Each round, for each server (started in turn, one at a time), runs one conversation: a long
system message, then `--turns` user turns, each sent with the whole history as chat clients do
(greedy, 32 new tokens per reply). Prints the time to the first streamed token of every turn and
the prompt tokens the server found cached. Needs the `openai` package (tests/requirements.txt)."""

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = (
    "You are the maintenance assistant of a packaging line. The line has a carton erector, a "
    "filler with four heads, a checkweigher, a case sealer and a palletizer. Operators ask about "
    "faults, cleaning, changeovers and spare parts. Answer briefly and name the machine first. "
) * 8
QUESTIONS = [
    "The checkweigher rejects every third carton. What should I check first?",
    "And if the belt speed is correct?",
    "How often should its load cell be calibrated?",
    "Which spare parts should we keep for it?",
    "Now the case sealer jams at the tape head. Any idea?",
    "Thanks. How long does a changeover to the small cartons take?",
]


def start(binary, model, threads, cache):
    args = [binary, "serve", model, "--port", "0", "--parallel", "2", "--ctx-per-slot", "2048", "-t", str(threads)]
    if cache:
        args.append("--prompt-cache")
    p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    port = None
    for line in p.stderr:
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        port = int(m.group(1)) if m else port
        if "ready" in line:
            break
    if port is None:
        sys.exit("the server did not start")
    return p, openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)


def conversation(client, turns):
    msgs = [{"role": "system", "content": SYSTEM}]
    out = []
    for q in QUESTIONS[:turns]:
        msgs.append({"role": "user", "content": q})
        t0 = time.perf_counter()
        first, text, usage = None, "", None
        stream = client.chat.completions.create(
            model="m", messages=msgs, max_tokens=32, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
        for ch in stream:
            if ch.usage:
                usage = ch.usage
            for c in ch.choices:
                if c.delta.content and first is None:
                    first = time.perf_counter() - t0
                text += c.delta.content or ""
        msgs.append({"role": "assistant", "content": text})
        details = usage.prompt_tokens_details
        out.append((first, usage.prompt_tokens, details.cached_tokens if details else 0))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--autark", default=str(ROOT / "target/release/autark"))
    a = ap.parse_args()
    results = {False: [], True: []}
    for _ in range(a.rounds):
        for cache in (False, True):
            p, client = start(a.autark, a.model, a.threads, cache)
            try:
                results[cache].append(conversation(client, a.turns))
            finally:
                p.terminate()
                p.wait()
    print("| turn | prompt tokens | TTFT ms, no cache (median) | TTFT ms, --prompt-cache (median) | cached tokens |")
    print("|---:|---:|---:|---:|---:|")
    for t in range(a.turns):
        off = [r[t][0] * 1e3 for r in results[False]]
        on = [r[t][0] * 1e3 for r in results[True]]
        print(f"| {t + 1} | {results[True][0][t][1]} | {' / '.join(f'{x:.0f}' for x in off)} ({statistics.median(off):.0f}) "
              f"| {' / '.join(f'{x:.0f}' for x in on)} ({statistics.median(on):.0f}) | {results[True][0][t][2]} |")


if __name__ == "__main__":
    main()
