#!/usr/bin/env python3
"""Writes the hostile-input corpus of tests/hostile/ (deterministic; the files are committed):
small .autark and .gguf files that are truncated, bit-flipped or hand-crafted to lie (huge
counts, offsets past the end, overlapping tensors, shape/size mismatches, unknown types, absurd
hyper-parameters). Every one must give a typed error and a non-zero exit from every front end.
Run from the repository root:  python3 tests/hostile/make_corpus.py  (needs target/release/autark)."""

import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests/python")]
import autark_file  # noqa: E402
import make_gguf as mg  # noqa: E402
import make_tiny  # noqa: E402

OUT = ROOT / "tests/hostile"


def tiny_autark(tmp: Path) -> bytes:
    hf = make_tiny.make("llama_tied", tmp / "hf")
    out = tmp / "tiny.autark"
    subprocess.run([str(ROOT / "target/release/autark"), "quantize", str(hf), "-o", str(out), "--type", "q8_0"],
                   check=True, capture_output=True)
    return out.read_bytes()


def main():
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        good = tiny_autark(tmp)
        meta, tensors = autark_file.read(tmp / "tiny.autark")
        entries = [dict(name=n, dtype=v["dtype"], shape=v["shape"], raw=v["raw"]) for n, v in tensors.items()]

        files = {}
        files["truncated-half.autark"] = good[: len(good) // 2]
        files["truncated-header.autark"] = good[:100]
        files["empty.autark"] = b""
        files["wrong-magic.autark"] = b"GGUF" + good[4:]
        flipped = bytearray(good)
        flipped[200] ^= 0x10  # inside the metadata: the header checksum no longer matches
        files["bitflip-metadata.autark"] = bytes(flipped)
        newer = bytearray(good)
        newer[4:6] = struct.pack("<H", 2)
        files["newer-major.autark"] = bytes(newer)
        huge = bytearray(good)
        huge[48:56] = struct.pack("<Q", 1 << 40)  # tensor count
        files["huge-tensor-count.autark"] = bytes(huge)

        def spec(name, mutate_meta=None, mutate_entries=None):
            m = json.loads(json.dumps(meta))
            e = [dict(x) for x in entries]
            if mutate_meta:
                mutate_meta(m)
            if mutate_entries:
                mutate_entries(e)
            files[name] = autark_file.build(m, e)

        def first_matrix(e):
            return next(x for x in e if len(x["shape"]) == 2)

        spec("offset-past-end.autark", mutate_entries=lambda e: first_matrix(e).update(offset=1 << 50))
        spec("size-mismatch.autark", mutate_entries=lambda e: first_matrix(e).update(nbytes=7))
        spec("unknown-dtype.autark", mutate_entries=lambda e: first_matrix(e).update(dtype=77))
        spec("dims-overflow.autark", mutate_entries=lambda e: first_matrix(e).update(shape=[1 << 62, 1 << 40]))
        spec("overlap.autark", mutate_entries=lambda e: [x.update(data_pos=0) for x in e[:2]])
        spec("vocab-zero.autark", mutate_meta=lambda m: m["config"].update(vocab_size=0))
        spec("context-2e31.autark", mutate_meta=lambda m: m["config"].update(context_length=1 << 31))
        spec("layers-huge.autark", mutate_meta=lambda m: m["config"].update(n_layers=4096, d_model=1 << 20))
        spec("unknown-architecture.autark", mutate_meta=lambda m: m.update(architecture="gptneox"))
        spec("missing-tensor.autark", mutate_entries=lambda e: e.pop(1))
        spec("bad-tokenizer.autark", mutate_meta=lambda m: m["tokenizer"].update(hf_json="{not json"))
        spec("metadata-not-json.autark", mutate_meta=None)
        files["metadata-not-json.autark"] = autark_file.build(b"{\"format\": \"autark\", ", entries)

        # GGUF: a valid tiny model, then lies in its header and tensor table.
        g = tmp / "tiny.gguf"
        mg.write_model(g, mg.ModelSpec(d_model=64, n_heads=4, n_kv_heads=2, ffn=96), mg.spm_synthetic())
        gb = g.read_bytes()
        files["gguf-truncated.gguf"] = gb[: len(gb) // 3]
        files["gguf-huge-tensor-count.gguf"] = gb[:8] + struct.pack("<Q", 1 << 40) + gb[16:]
        files["gguf-huge-kv-count.gguf"] = gb[:16] + struct.pack("<Q", 1 << 40) + gb[24:]
        files["gguf-version-1.gguf"] = gb[:4] + struct.pack("<I", 1) + gb[8:]
        offs = mg.tensor_info_offsets(g)
        name = next(iter(offs))
        for label, field, value in [("offset-past-end", "offset_at", 1 << 50), ("unknown-type", "type_at", 99)]:
            p = tmp / f"{label}.gguf"
            p.write_bytes(gb)
            fmt = "<Q" if field == "offset_at" else "<I"
            mg.patch(p, getattr(offs[name], field), fmt, value)
            files[f"gguf-{label}.gguf"] = p.read_bytes()

    for old in OUT.glob("*.autark"):
        old.unlink()
    for old in OUT.glob("*.gguf"):
        old.unlink()
    for n, b in sorted(files.items()):
        (OUT / n).write_bytes(b)
    print(f"{len(files)} files, {sum(len(b) for b in files.values())} bytes")


if __name__ == "__main__":
    main()
