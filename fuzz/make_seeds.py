#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from tiny synthetic models and real files.

    python3 fuzz/make_seeds.py [--autark target/release/autark]

Needs numpy and gguf-py (tests/requirements.txt). Uses models/ (SmolLM2) when present. Every
seed is at most 64 KiB. Seeds for `safetensors` and `tokenizer` start with a selector byte (see
the targets). The seeds are committed; rerun this only to refresh them. The seeds of
`session_state` are written by that fuzz target itself (fuzz/README.md) and left alone here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))

import make_gguf as mg  # noqa: E402
import make_tiny  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"
MAX = 64 * 1024
SMOL_GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def put(target: str, name: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if len(data) > MAX:
        data = data[:MAX]
    (d / name).write_bytes(data)


def tiny_ggufs(tmp: Path) -> list[Path]:
    Q = mg.Q
    out = []
    spec = mg.ModelSpec(arch="llama", n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, ffn=32, context_length=64)
    names = mg.tensor_shapes(spec, len(mg.spm_synthetic(8)))
    p = tmp / "spm-q8.gguf"
    mg.write_model(p, spec, mg.spm_synthetic(8), types={n: Q.Q8_0 for n, s in names.items() if len(s) == 2})
    out.append(p)
    spec = mg.ModelSpec(arch="qwen2", n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, ffn=32,
                        context_length=64, tied=True, qkv_bias=True)
    names = mg.tensor_shapes(spec, len(mg.gpt2_synthetic()))
    p = tmp / "gpt2-q4.gguf"
    mg.write_model(p, spec, mg.gpt2_synthetic(), types={n: Q.Q4_0 for n, s in names.items() if len(s) == 2})
    out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--autark", default=str(ROOT / "target" / "release" / "autark"))
    args = ap.parse_args()
    # Only the corpora written here: session_state's seeds come from its fuzz target (README.md).
    for target in ("gguf", "autark_file", "safetensors", "tokenizer", "chat_template"):
        shutil.rmtree(CORPUS / target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)

        # gguf: tiny synthetic files and the head of the real SmolLM2 file.
        ggufs = tiny_ggufs(tmp)
        for p in ggufs:
            put("gguf", p.stem, p.read_bytes())
        if SMOL_GGUF.is_file():
            put("gguf", "smollm2-head", SMOL_GGUF.read_bytes()[:MAX])
        put("gguf", "header-only", b"GGUF" + struct.pack("<IQQ", 3, 0, 0))

        # autark_file: the tiny GGUF quantized by the CLI (a whole valid file), plus its head.
        exe = Path(args.autark)
        if exe.is_file():
            for p, ty in ((ggufs[0], "q8_0"), (ggufs[1], "q4_0")):
                out = tmp / (p.stem + ".autark")
                subprocess.run([str(exe), "quantize", str(p), "-o", str(out), "--type", ty], check=True,
                               stdout=subprocess.DEVNULL)
                data = out.read_bytes()
                if len(data) <= MAX:
                    put("autark_file", p.stem + "-" + ty, data)
                put("autark_file", p.stem + "-" + ty + "-head", data[:4096])
        else:
            print(f"no {exe}: autark_file gets no seeds", file=sys.stderr)

        # safetensors: headers (selector 0) and config.json files (selector 1) of the tiny HF models.
        for v in make_tiny.VARIANTS:
            d = make_tiny.make(v, tmp / v, dtype="f16" if v == "mistral" else "f32")
            st = (d / "model.safetensors").read_bytes()
            (hlen,) = struct.unpack("<Q", st[:8])
            # Header plus the first tensor bytes; offsets past the end keep the rest reachable.
            put("safetensors", f"{v}-header", b"\x00" + st[: 8 + hlen + 256])
            put("safetensors", f"{v}-config", b"\x01" + (d / "config.json").read_bytes())
        put("safetensors", "small-valid", b"\x00" + small_safetensors())

        # tokenizer: text (selector 0) and token id lists (selector 1).
        texts = {
            "en": "The capital of France is Paris. It's 3.14 > 2!\n\tdone",
            "multi": "Grüße, 世界! Привет мир. مرحبا بالعالم. こんにちは。 🦀🚀 नमस्ते ελληνικά",
            "chatml": "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
            "ws": "   leading\n\n\nand   trailing   \r\n",
            "code": "fn main() { println!(\"{}\", 1 + 2); } // ünïcödé",
        }
        for k, s in texts.items():
            put("tokenizer", "text-" + k, b"\x00" + s.encode())
        put("tokenizer", "ids-small", b"\x01" + b"".join(struct.pack("<I", i) for i in (1, 2, 100, 200, 255, 256, 270)))
        put("tokenizer", "ids-bytes", b"\x01" + b"".join(struct.pack("<I", i) for i in range(0, 300, 7)))

        # chat_template: template NUL message.
        tpls = {"chatml": make_tiny.CHATML}
        smol_tpl = smollm2_template()
        if smol_tpl:
            tpls["smollm2"] = smol_tpl
        tpls["loops"] = ("{% for m in messages %}{% if m.role == 'user' %}{{ m.content | upper }}{% endif %}"
                         "{{ loop.index }}{% endfor %}{{ bos_token ~ eos_token }}")
        tpls["macro"] = ("{% macro f(x) %}[{{ x.strip() }}]{% endmacro %}{% set ns = namespace(n=0) %}"
                         "{% for m in messages %}{{ f(m['content']) }}{% set ns.n = ns.n + 1 %}{% endfor %}"
                         "{{ ns.n }}{% if add_generation_prompt %}A:{% endif %}")
        for k, tpl in tpls.items():
            put("chat_template", k, tpl.encode() + b"\x00" + "Hello, 世界! {{ not a template }}".encode())


def small_safetensors() -> bytes:
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
              "__metadata__": {"format": "pt"}}
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + bytes(22)


def smollm2_template() -> str | None:
    if not SMOL_GGUF.is_file():
        return None
    import gguf

    r = gguf.GGUFReader(str(SMOL_GGUF))
    f = r.fields.get("tokenizer.chat_template")
    if f is None:
        return None
    return bytes(f.parts[f.data[0]]).decode()


if __name__ == "__main__":
    main()
