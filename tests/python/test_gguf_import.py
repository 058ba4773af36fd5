"""GGUF import: the quantizer's output for SmolLM2, checked byte for byte against gguf-py."""

from __future__ import annotations

import hashlib
import re
import shutil

import gguf
import numpy as np
import pytest

import autark_file
from conftest import gguf_numpy_shape, normalize_dtype

Q = gguf.GGMLQuantizationType
GGUF_DTYPE_NAMES = {Q.F32: "f32", Q.F16: "f16", Q.Q4_0: "q4_0", Q.Q4_1: "q4_1", Q.Q8_0: "q8_0"}
NORM_OR_BIAS = re.compile(r"(_norm\.weight|\.bias)$")


def is_linear_weight(name: str) -> bool:
    return name.startswith("blk.") and name.endswith(".weight") and not NORM_OR_BIAS.search(name)


def as_f32(x):
    if isinstance(x, float):
        return float(np.float32(x))
    if isinstance(x, dict):
        return {k: as_f32(v) for k, v in x.items()}
    if isinstance(x, list):
        return [as_f32(v) for v in x]
    return x


def test_q4_1_import_is_byte_identical(smollm2_q4_1, smollm2_reader):
    """SmolLM2 is Q4_1 with a Q8_0 embedding and F32 norms: `--type q4_1` must copy every tensor."""
    meta, tensors = autark_file.read(smollm2_q4_1, check_tensor_sha=True, strict=True)
    src = {t.name: t for t in smollm2_reader.tensors}
    assert sorted(tensors) == sorted(src)
    for name, t in src.items():
        got = tensors[name]
        assert got["dtype"] == GGUF_DTYPE_NAMES[t.tensor_type], name
        assert got["shape"] == gguf_numpy_shape(t), name
        assert got["raw"] == t.data.tobytes(), f"{name}: bytes differ from the GGUF source"


def test_metadata(smollm2_q4_1, smollm2_reader):
    meta, _ = autark_file.read(smollm2_q4_1)
    field = lambda k: smollm2_reader.fields[k].contents()  # noqa: E731
    assert meta["format"] == "autark"
    assert meta["architecture"] == "llama"
    cfg = meta["config"]
    assert cfg["n_layers"] == 30 == field("llama.block_count")
    assert cfg["d_model"] == 576
    assert cfg["n_heads"] == 9
    assert cfg["n_kv_heads"] == 3
    assert cfg["head_dim"] == 64
    assert cfg["ffn_dim"] == 1536
    assert cfg["vocab_size"] == 49152
    assert cfg["context_length"] == field("llama.context_length")
    assert cfg["rope_theta"] == pytest.approx(100000.0)
    assert cfg["norm_eps"] == pytest.approx(1e-5, rel=1e-6)
    assert cfg["rope_layout"] == "interleaved"  # q/k rows stay in llama.cpp's permuted order
    assert cfg.get("rope_scaling") is None
    assert cfg["tied_embeddings"] is True
    assert cfg["attn_qkv_bias"] is False
    tok = meta["tokenizer"]
    assert tok["bos_token_id"] == 1
    assert 2 in tok["eos_token_ids"]
    assert tok["add_bos"] is False
    assert tok["chat_template"] == field("tokenizer.chat_template")
    from tokenizers import Tokenizer

    Tokenizer.from_str(tok["hf_json"])  # a document the HF tokenizers library accepts


def test_inspect_json_agrees_with_independent_reader(autark, smollm2_q4_1):
    info = autark.inspect(smollm2_q4_1)
    meta, tensors = autark_file.read(smollm2_q4_1)
    assert info["file_bytes"] == smollm2_q4_1.stat().st_size
    # inspect may abbreviate the (1.3 MB) tokenizer document to its size.
    shown = dict(info["metadata"], tokenizer=dict(info["metadata"]["tokenizer"]))
    stored = dict(meta, tokenizer=dict(meta["tokenizer"]))
    if "hf_json" not in shown["tokenizer"]:
        assert shown["tokenizer"].pop("hf_json_bytes") == len(stored["tokenizer"].pop("hf_json").encode("utf-8"))
    # Floats compared as f32: the runtime holds e.g. norm_eps as f32, so 1e-05 in the file may be
    # shown as 9.999999747378752e-06.
    assert as_f32(shown) == as_f32(stored)
    listed = {t["name"]: t for t in info["tensors"]}
    assert len(listed) == len(info["tensors"]) == len(tensors)
    for name, t in tensors.items():
        got = listed[name]
        assert normalize_dtype(got["dtype"]) == t["dtype"], name
        assert list(got["shape"]) == t["shape"], name
        assert got["offset"] == t["offset"], name
        assert got["nbytes"] == t["nbytes"], name
        assert got["sha256"].lower() == t["sha256"], name


DUMP_NAMES = [
    "token_embd.weight",  # q8_0, [49152, 576]
    "blk.0.attn_q.weight",
    "blk.0.attn_k.weight",
    "blk.0.attn_v.weight",
    "blk.0.attn_output.weight",
    "blk.0.ffn_gate.weight",
    "blk.0.ffn_up.weight",
    "blk.0.ffn_down.weight",  # [576, 1536]
    "blk.29.ffn_down.weight",
    "blk.0.attn_norm.weight",  # f32
    "output_norm.weight",
]


@pytest.mark.parametrize("name", DUMP_NAMES)
def test_dump_is_bit_exact(autark, smollm2_q4_1, smollm2_reader, tmp_path, name):
    # Bit-exact: q4_1 is evaluated as (q * d) + m with two roundings, like gguf-py (and the
    # spec's formula); a fused multiply-add would differ in the last bit for some values.
    (t,) = [t for t in smollm2_reader.tensors if t.name == name]
    expected = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
    got = autark.dump(smollm2_q4_1, name, tmp_path / "t.f32")
    assert got.size == expected.size == int(np.prod(gguf_numpy_shape(t)))
    diff = np.flatnonzero(got.view(np.uint32) != expected.view(np.uint32))
    assert diff.size == 0, f"{diff.size} values differ, first at {diff[:5]}: {got[diff[:5]]} vs {expected[diff[:5]]}"


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0", "q5_0", "q5_1"])
def test_requantize_matches_gguf_py(autark, smollm2_gguf, smollm2_reader, tmp_path, qtype):
    """Linear weights: quantize(dequantize(q4_1 source)) with gguf-py's bit-exact port of ggml's
    reference quantizers (`--rtn`; the default scale search is checked in kernels/src/search.rs). token_embd.weight stays q8_0 (copied); norms stay f32 (copied)."""
    # Without the conformance record (3 s of probe per file; the record has tests of its own).
    out = autark.quantize(smollm2_gguf, tmp_path / f"smollm2-{qtype}.autark", qtype, "--rtn", "--no-conformance")
    _, tensors = autark_file.read(out, check_tensor_sha=True, strict=True)
    target = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q5_0": Q.Q5_0, "q5_1": Q.Q5_1}[qtype]
    assert sorted(tensors) == sorted(t.name for t in smollm2_reader.tensors)
    for t in smollm2_reader.tensors:
        got = tensors[t.name]
        assert got["shape"] == gguf_numpy_shape(t), t.name
        if is_linear_weight(t.name):
            assert got["dtype"] == qtype, t.name
            values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            expected = gguf.quants.quantize(values, target).tobytes()
        else:
            assert got["dtype"] == GGUF_DTYPE_NAMES[t.tensor_type], t.name  # q8_0 embedding, f32 norms
            expected = t.data.tobytes()
        if got["raw"] != expected:
            a = np.frombuffer(got["raw"], np.uint8)
            b = np.frombuffer(expected, np.uint8)
            first = int(np.flatnonzero(a != b)[0]) if a.size == b.size else None
            pytest.fail(f"{t.name}: {qtype} bytes differ from gguf-py (first differing byte {first})")


def test_verify_accepts_good_file_and_detects_flipped_bytes(autark, smollm2_q4_1, tmp_path):
    autark.ok("verify", smollm2_q4_1)
    _, tensors = autark_file.read(smollm2_q4_1)
    by_offset = sorted(tensors.values(), key=lambda t: t["offset"])
    positions = [
        by_offset[0]["offset"],  # first byte of the first tensor
        by_offset[len(by_offset) // 2]["offset"] + by_offset[len(by_offset) // 2]["nbytes"] // 2,
        by_offset[-1]["offset"] + by_offset[-1]["nbytes"] - 1,  # last byte of the file
    ]
    for pos in positions:
        bad = tmp_path / "bad.autark"
        shutil.copyfile(smollm2_q4_1, bad)
        with open(bad, "r+b") as f:
            f.seek(pos)
            b = f.read(1)
            f.seek(pos)
            f.write(bytes([b[0] ^ 0x01]))
        r = autark.run("verify", bad)
        assert r.returncode > 0, f"verify accepted a file with byte {pos} flipped (rc {r.returncode})"
        assert r.stderr.strip(), "verify failed without a message on stderr"


def test_provenance_records_source(smollm2_q4_1, smollm2_gguf):
    """provenance is optional in the spec; when a source is recorded, its digest must be right."""
    meta, _ = autark_file.read(smollm2_q4_1)
    sources = (meta.get("provenance") or {}).get("sources") or []
    for s in sources:
        if "sha256" in s:
            h = hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
            assert s["sha256"].lower() == h
            assert s.get("bytes", smollm2_gguf.stat().st_size) == smollm2_gguf.stat().st_size
