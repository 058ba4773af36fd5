#!/usr/bin/env python3
"""Writes a synthetic .autark model with the shapes of a real one and random weights, for
benchmarks only (its text is noise): `scripts/synthetic-model.py TOKENIZER_SOURCE.autark OUT
[--shape llama-3.2-1b] [--type q4_0]`. The tokenizer and chat template are taken from an existing
.autark file. Uses tests/python/autark_file.py (the independent writer of docs/FORMAT.md)."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests/python"))
import autark_file  # noqa: E402

SHAPES = {
    # Llama-3.2-1B: 16 layers, width 2048, 32 heads / 8 KV heads of 64, FFN 8192, tied output.
    "llama-3.2-1b": dict(n_layers=16, d_model=2048, n_heads=32, n_kv_heads=8, head_dim=64, ffn_dim=8192,
                         vocab_size=128256, context_length=131072, rope_theta=500000.0),
}
# Bytes per block, values per block, and where the f16 scales lie with their values (the rest of
# each block is random bytes: quants, packed sub-block scales).
BLOCK = {
    "q4_0": (18, 32, {0: 0.02}),
    "q8_0": (34, 32, {0: 0.002}),
    "q5_0": (22, 32, {0: 0.01}),
    "q5_1": (24, 32, {0: 0.01, 2: -0.16}),
    "q4_1": (20, 32, {0: 0.01, 2: -0.08}),
    "q4_k": (144, 256, {0: 0.0003, 2: 0.0003}),
    "q5_k": (176, 256, {0: 0.00015, 2: 0.00015}),
    "q6_k": (210, 256, {208: 0.00005}),
}
# Types the `rows16` interleave exists for (the others are stored row after row).
ROWS16 = set(autark_file.INTERLEAVED)


def random_blocks(rng, rows, cols, dtype):
    if dtype == "f16":
        return (rng.standard_normal(rows * cols, dtype=np.float32) * 0.03).astype(np.float16).tobytes()
    size, qk, scales = BLOCK[dtype]
    raw = rng.integers(0, 256, size=(rows * cols // qk, size), dtype=np.uint8)
    for at, v in scales.items():
        raw[:, at:at + 2] = np.full(raw.shape[0], v, dtype=np.float16).view(np.uint8).reshape(-1, 2)
    return raw.tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer_source")
    ap.add_argument("out")
    ap.add_argument("--shape", default="llama-3.2-1b", choices=sorted(SHAPES))
    ap.add_argument("--type", default="q4_0", choices=sorted(BLOCK) + ["f16"])
    ap.add_argument("--layout", default="rows16", choices=["rows16", "rows"],
                    help="block order of the interleavable types' matrices (rows16: what `autark quantize` writes by default)")
    a = ap.parse_args()
    meta, _ = autark_file.read(a.tokenizer_source)
    c = dict(SHAPES[a.shape], rope_layout="neox", rope_scaling=None, norm_eps=1e-5, tied_embeddings=True,
             attn_qkv_bias=False, sliding_window=None, rope_freq_factors=None)
    meta = {"format": "autark", "architecture": "llama", "config": c, "tokenizer": meta["tokenizer"],
            "provenance": {"tool": "scripts/synthetic-model.py", "created": "", "sources": [],
                           "recipe": {"synthetic": a.shape, "default": a.type}}}
    rng = np.random.default_rng(0)
    d, f, q, kv = c["d_model"], c["ffn_dim"], c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"]
    ones = np.ones(d, dtype=np.float32).tobytes()

    def matrix(name, dtype, rows, cols):
        raw = random_blocks(rng, rows, cols, dtype)
        layout = 1 if a.layout == "rows16" and dtype in ROWS16 else 0
        if layout:
            raw = autark_file.interleave(dtype, raw, [rows, cols])
        return dict(name=name, dtype=dtype, shape=[rows, cols], raw=raw, layout=layout)

    entries = [matrix("token_embd.weight", "q8_0", c["vocab_size"], d)]
    for l in range(c["n_layers"]):
        def mat(name, rows, cols):
            entries.append(matrix(f"blk.{l}.{name}", a.type, rows, cols))
        entries.append(dict(name=f"blk.{l}.attn_norm.weight", dtype="f32", shape=[d], raw=ones))
        mat("attn_q.weight", q, d)
        mat("attn_k.weight", kv, d)
        mat("attn_v.weight", kv, d)
        mat("attn_output.weight", d, q)
        entries.append(dict(name=f"blk.{l}.ffn_norm.weight", dtype="f32", shape=[d], raw=ones))
        mat("ffn_gate.weight", f, d)
        mat("ffn_up.weight", f, d)
        mat("ffn_down.weight", d, f)
    entries.append(dict(name="output_norm.weight", dtype="f32", shape=[d], raw=ones))
    Path(a.out).write_bytes(autark_file.build(meta, entries))
    weights = sum(len(e["raw"]) for e in entries)
    print(json.dumps({"out": a.out, "weight_bytes": weights}))


if __name__ == "__main__":
    main()
