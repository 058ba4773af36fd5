"""Synthetic GGUF files (tests/python/make_gguf.py) through `autark quantize`, `dump`, `logits`
and `tokenize`: K-quant / BF16 import bit for bit, forward passes of llama, qwen2 and qwen3 GGUFs
against the NumPy reference, a SentencePiece (`llama`) tokenizer against the sentencepiece
library, and hostile GGUFs that must end in a clean error."""

from __future__ import annotations

import dataclasses

import copy
import io
import os
import random
import re
import shutil

import gguf
import numpy as np
import pytest

import autark_file
import llama_ref
import make_gguf as mg
from conftest import isa_params

Q = gguf.GGMLQuantizationType

# ----------------------------------------------------------------------------------------------
# 1. K-quants (and the other GGUF types) import bit for bit
# ----------------------------------------------------------------------------------------------

# d_model 256, ffn 512: every row is a whole number of 256-value K-quant super-blocks.
KQ_SPEC = mg.ModelSpec(arch="llama", n_layers=2, d_model=256, n_heads=4, n_kv_heads=2, ffn=512)
KQ_TYPES = {
    "token_embd.weight": Q.Q4_K,
    "output.weight": Q.Q6_K,
    "blk.0.attn_q.weight": Q.Q4_K,
    "blk.0.attn_k.weight": Q.Q5_K,
    "blk.0.attn_v.weight": Q.Q6_K,
    "blk.0.attn_output.weight": Q.Q8_0,
    "blk.0.ffn_gate.weight": Q.F16,
    "blk.0.ffn_up.weight": Q.BF16,
    "blk.0.ffn_down.weight": Q.Q5_K,
    "blk.1.attn_q.weight": Q.Q5_0,
    "blk.1.attn_k.weight": Q.Q6_K,
    "blk.1.attn_v.weight": Q.Q5_1,
    "blk.1.attn_output.weight": Q.Q4_0,
    "blk.1.ffn_gate.weight": Q.Q6_K,
    "blk.1.ffn_up.weight": Q.Q4_1,
    "blk.1.ffn_down.weight": Q.F32,
}
NOT_NATIVE = {Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.BF16}  # import-only types: dequantized, re-quantized
AUTARK_NAMES = {Q.F32: "f32", Q.F16: "f16", Q.Q8_0: "q8_0", Q.Q4_0: "q4_0", Q.Q4_1: "q4_1", Q.Q5_0: "q5_0",
                Q.Q5_1: "q5_1"}


@pytest.fixture(scope="module")
def kq_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("kquant") / "kquant.gguf"
    mg.write_model(path, KQ_SPEC, mg.spm_synthetic(), KQ_TYPES, seed=1)
    return path


@pytest.fixture(scope="module")
def kq_reader(kq_gguf):
    return gguf.GGUFReader(str(kq_gguf))


@pytest.fixture(scope="module")
def kq_f32(autark, kq_gguf):
    """The K-quant GGUF imported with --type f32: (path, stderr of the quantizer)."""
    out = kq_gguf.with_name("kquant-f32.autark")
    r = autark.ok("quantize", kq_gguf, "-o", out, "--type", "f32")
    return out, r.stderr.decode("utf-8", errors="replace")


def source_f32(t) -> np.ndarray:
    """gguf-py's dequantization (bit-exact ports of ggml's dequantize_row_*), flat float32."""
    return np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)


def test_fixture_covers_types(kq_reader):
    """The fixture really holds what the tests below claim to check."""
    by_type = {}
    for t in kq_reader.tensors:
        by_type.setdefault(t.tensor_type, []).append(t)
    for qt in (Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.BF16, Q.F16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.F32):
        assert qt in by_type, qt.name
    # Q6_K: ggml's (d * scale) * (q - 32) gives -0.0 for a negative scale and q == 32; a
    # dequantizer that forms scale * (q - 32) as an integer first gives +0.0 and fails here.
    v = np.concatenate([source_f32(t) for t in by_type[Q.Q6_K]])
    assert np.sum((v == 0) & np.signbit(v)) > 0
    # Some super-block scales are f16 subnormals.
    for t in by_type[Q.Q4_K] + by_type[Q.Q5_K]:
        d = t.data.reshape(-1, gguf.GGML_QUANT_SIZES[t.tensor_type][1])[:, 0:2].copy().view(np.float16)
        assert (np.abs(d) < np.float16(6.104e-5)).any(), t.name


def test_kquant_import_is_bit_exact(autark, kq_f32, kq_reader, tmp_path):
    out, stderr = kq_f32
    meta, tensors = autark_file.read(out, check_tensor_sha=True, strict=True)
    assert sorted(tensors) == sorted(t.name for t in kq_reader.tensors)
    for t in kq_reader.tensors:
        got_t = tensors[t.name]
        assert got_t["dtype"] == "f32", t.name
        assert got_t["shape"] == [int(d) for d in reversed(list(t.shape))], t.name
        expected = source_f32(t)
        # The file's bytes ...
        stored = np.frombuffer(got_t["raw"], dtype="<f4")
        # ... and what `autark dump` reads back.
        dumped = autark.dump(out, t.name, tmp_path / "t.f32")
        for what, got in (("stored", stored), ("dumped", dumped)):
            assert got.size == expected.size, f"{t.name} ({t.tensor_type.name}) {what}: {got.size} values"
            diff = np.flatnonzero(got.view(np.uint32) != expected.view(np.uint32))
            assert diff.size == 0, (
                f"{t.name} ({t.tensor_type.name}) {what}: {diff.size} values differ from gguf-py, first at "
                f"{diff[:5]}: {got[diff[:5]]} vs {expected[diff[:5]]}")


def test_kquant_import_notes(kq_f32, kq_reader):
    """Every import-only tensor (K-quants, BF16) is reported as re-quantized; no native one is."""
    _, stderr = kq_f32
    notes = [line for line in stderr.splitlines() if line.startswith("note:")]
    requant = {name for line in notes if "re-quantized" in line
               for name in re.findall(r"\b((?:blk\.\d+\.)?[a-z_]+\.weight)\b", line)}
    expected = {t.name for t in kq_reader.tensors if t.tensor_type in NOT_NATIVE}
    assert requant == expected, "notes:\n" + "\n".join(notes)


def test_kquant_to_q8_0_matches_gguf_py(autark, kq_gguf, kq_reader, tmp_path):
    """--type q8_0: q8_0 sources are copied; every other matrix is quantize(dequantize(source))
    with gguf-py's bit-exact port of ggml's quantize_row_q8_0_ref; 1-D tensors stay f32."""
    out = autark.quantize(kq_gguf, tmp_path / "kquant-q8_0.autark", "q8_0")
    _, tensors = autark_file.read(out, check_tensor_sha=True, strict=True)
    for t in kq_reader.tensors:
        got = tensors[t.name]
        if len(t.shape) == 1:
            assert got["dtype"] == "f32", t.name
            assert got["raw"] == t.data.tobytes(), t.name
            continue
        assert got["dtype"] == "q8_0", t.name
        if t.tensor_type == Q.Q8_0:
            expected = t.data.tobytes()
        else:
            values = source_f32(t).reshape([int(d) for d in reversed(list(t.shape))])
            expected = gguf.quants.quantize(values, Q.Q8_0).tobytes()
        if got["raw"] != expected:
            a, b = np.frombuffer(got["raw"], np.uint8), np.frombuffer(expected, np.uint8)
            first = int(np.flatnonzero(a != b)[0]) if a.size == b.size else None
            pytest.fail(f"{t.name} ({t.tensor_type.name}): q8_0 bytes differ from gguf-py (first differing byte {first})")


# ----------------------------------------------------------------------------------------------
# 2. and 3. Forward passes on GGUF models
# ----------------------------------------------------------------------------------------------

# Tolerance: max |runtime - reference| <= REL_TOL x max |reference logit|.
# The f32 import holds exactly the values gguf-py dequantizes (checked bit for bit above), and
# llama_ref runs on those same values in float64, so the only difference is the runtime's
# float32 arithmetic (f32 weights, f32 activations): with d_model 256 / ffn 512 the dot products
# accumulate ~1e-6 relative rounding error (measured: 7e-6 absolute on logits of magnitude 6.5,
# i.e. 1.1e-6 relative; qwen2 1.6e-6 on 5.6). 1e-4 leaves room for other summation orders and
# approximate exp / silu, and is still 3000x below what a wrong RoPE layout or a dropped bias
# moves the logits (checked by the sensitivity assertions).
REL_TOL = 1e-4


def compare_logits(got: np.ndarray, ref: np.ndarray, what: str):
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite logits"
    scale = np.abs(ref).max()
    diff = np.abs(got - ref).max()
    msg = f"{what}: max |diff| {diff:.3g} (tolerance {REL_TOL * scale:.3g} = {REL_TOL:g} x {scale:.3g})"
    print(msg)
    assert diff <= REL_TOL * scale, msg
    assert (got.argmax(1) == ref.argmax(1)).all(), f"{what}: top-1 differs"


def assert_sensitive(model: llama_ref.Model, tokens, ref, changes):
    """Changing any of these config fields moves the reference logits far beyond REL_TOL."""
    for field, value in changes:
        cfg = copy.copy(model.config)
        setattr(cfg, field, value)
        wrong = llama_ref.forward(llama_ref.Model(cfg, model.tensors), tokens)
        rel = np.abs(wrong - ref).max() / np.abs(ref).max()
        assert rel > 100 * REL_TOL, f"{field}={value!r} moves the logits by only {rel:.3g}"


KQ_TOKENS = [1, 5, 100, 300, 290, 270, 260, 3, 2, 0, 250, 299, 280, 262]


def test_kquant_gguf_forward(autark, kq_gguf, kq_f32, tmp_path):
    out, _ = kq_f32
    model = llama_ref.load_gguf(kq_gguf)
    assert model.config.rope_layout == "interleaved" and not model.config.tied_embeddings
    meta, _ = autark_file.read(out)
    cfg = meta["config"]
    assert meta["architecture"] == "llama"
    assert (cfg["n_layers"], cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["ffn_dim"]) == (
        2, 256, 4, 2, 64, 512)
    assert cfg["vocab_size"] == model.config.vocab_size
    assert cfg["rope_layout"] == "interleaved"
    assert cfg["tied_embeddings"] is False and cfg["attn_qkv_bias"] is False
    assert max(KQ_TOKENS) < cfg["vocab_size"]

    got = autark.logits(out, KQ_TOKENS, tmp_path / "logits.f32").astype(np.float64)
    ref = llama_ref.forward(model, KQ_TOKENS)
    compare_logits(got, ref, "K-quant llama GGUF -> f32")
    assert_sensitive(model, KQ_TOKENS, ref, [("rope_layout", "neox")])


def test_kquant_keep_is_lossless_and_runs(autark, kq_gguf, kq_reader, tmp_path):
    """--type keep: K-quant tensors copied byte for byte and computed with natively (scalar K-quant
    dot products against 8-bit activations); BF16 becomes f32."""
    out = autark.quantize(kq_gguf, tmp_path / "keep.autark", "keep")
    meta, tensors = autark_file.read(out, check_tensor_sha=True, strict=True)
    assert meta["provenance"]["recipe"]["preset"] == "keep"
    names = {Q.Q4_K: "q4_k", Q.Q5_K: "q5_k", Q.Q6_K: "q6_k", **AUTARK_NAMES}
    for t in kq_reader.tensors:
        got = tensors[t.name]
        if t.tensor_type == Q.BF16:
            assert got["dtype"] == "f32"
            assert np.array_equal(np.frombuffer(got["raw"], "<f4"), source_f32(t)), t.name
        else:
            assert got["dtype"] == names[t.tensor_type], t.name
            assert got["raw"] == t.data.tobytes(), f"{t.name}: bytes differ from the GGUF"
    # K-quant matrices of 16·n rows are stored `rows16` (the same bytes, reordered; this
    # reader de-interleaves them independently of the Rust writer, above).
    k16 = {tensors[t.name]["dtype"] for t in kq_reader.tensors if tensors[t.name]["layout"] == 1}
    assert {"q4_k", "q5_k", "q6_k"} <= k16, k16

    # The weights are the GGUF's exactly; only the 8-bit activation rounding differs from the
    # reference (as for q4_0: <= 6 % of the largest logit, see test_tiny_models.py).
    got = autark.logits(out, KQ_TOKENS, tmp_path / "logits.f32").astype(np.float64)
    ref = llama_ref.forward(llama_ref.load_gguf(kq_gguf), KQ_TOKENS)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 0.06 * scale
    rows = np.arange(len(ref))
    assert (ref[rows, ref.argmax(1)] - ref[rows, got.argmax(1)]).max() <= 0.06 * scale
    # ... and the same weights through the f32 import agree just as well (no other difference).
    f32 = autark.quantize(kq_gguf, tmp_path / "f32.autark", "f32")
    assert np.abs(autark.logits(f32, KQ_TOKENS, tmp_path / "l2.f32") - got).max() <= 0.06 * scale


@pytest.mark.parametrize("qtype", ["q4_k", "q5_k", "q6_k", "q5_0", "q5_1"])
def test_quantize_to_k_quants(autark, kq_gguf, kq_reader, tmp_path, qtype):
    """autark's own q4_k / q5_k / q6_k / q5_0 / q5_1 quantizers: gguf-py decodes what they write to the same
    values autark does (the layout is GGUF's), the error is what the bit width allows, and the
    model still computes close to the reference on those weights."""
    out = autark.quantize(kq_gguf, tmp_path / f"{qtype}.autark", qtype)
    meta, tensors = autark_file.read(out, check_tensor_sha=True, strict=True)
    rel_limit = {"q4_k": 0.12, "q5_k": 0.06, "q6_k": 0.03, "q5_0": 0.06, "q5_1": 0.05}[qtype]
    values = {}
    for t in kq_reader.tensors:
        got = tensors[t.name]
        if len(got["shape"]) < 2:
            continue
        assert got["dtype"] == ("q8_0" if qtype in ("q5_0", "q5_1") and t.name in ("token_embd.weight", "output.weight")
                                else qtype), t.name
        theirs = autark_file.dequantize(got["dtype"], got["raw"], got["shape"])  # gguf-py
        ours = autark.dump(out, t.name, tmp_path / "t.f32").reshape(theirs.shape)
        assert np.array_equal(theirs.view(np.uint32), ours.view(np.uint32)), t.name
        src = source_f32(t).reshape(theirs.shape)
        rel = np.sqrt(((ours - src) ** 2).sum() / (src ** 2).sum())
        assert rel < rel_limit, f"{t.name}: relative RMS error {rel:.4f}"
        values[t.name] = ours.astype(np.float64)
    ref_model = llama_ref.load_gguf(kq_gguf)
    ref_model = llama_ref.Model(ref_model.config, {n: values.get(n, v) for n, v in ref_model.tensors.items()})
    got = autark.logits(out, KQ_TOKENS, tmp_path / "logits.f32").astype(np.float64)
    ref = llama_ref.forward(ref_model, KQ_TOKENS)
    assert np.abs(got - ref).max() <= 0.06 * np.abs(ref).max()


BYTE_TYPE_RULES = ["blk.0.attn_q.weight=q5_0", "blk.0.attn_k.weight=q5_1", "blk.0.ffn_up.weight=q5_k",
                   "blk.1.*=q6_k", "output.weight=q6_k"]


@pytest.mark.parametrize("isa", isa_params())
def test_byte_coded_types_per_isa(autark, kq_gguf, tmp_path, isa):
    """One model holding q5_0, q5_1, q4_k, q5_k and q6_k matrices, run with each kernel set forced
    (AUTARK_ISA; one this CPU lacks is skipped): logits agree with the NumPy
    reference on the dequantized weights, and are the scalar kernels' logits bit for bit (the
    numerical contract, docs/NUMERICS.md), decoding token by token and in one batch."""
    rules = [a for r in BYTE_TYPE_RULES for a in ("--tensor-type", r)]
    out = autark.quantize(kq_gguf, tmp_path / "bytes.autark", "q4_k", *rules)
    types = {t["name"]: t["dtype"] for t in autark.inspect(out)["tensors"]}
    assert {"q5_0", "q5_1", "q4_k", "q5_k", "q6_k"} <= set(types.values()), types
    model = llama_ref.load_gguf(kq_gguf)
    values = {name: autark.dump(out, name, tmp_path / "t.f32").astype(np.float64).reshape(v.shape)
              for name, v in model.tensors.items() if v.ndim == 2}
    ref = llama_ref.forward(llama_ref.Model(model.config, {**model.tensors, **values}), KQ_TOKENS)
    env = {**os.environ, "AUTARK_ISA": isa}
    got = autark.logits(out, KQ_TOKENS, tmp_path / "logits.f32", env=env).astype(np.float64)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 0.06 * scale
    scalar = autark.logits(out, KQ_TOKENS, tmp_path / "scalar.f32", env={**os.environ, "AUTARK_ISA": "scalar"})
    assert got.astype(np.float32).tobytes() == scalar.tobytes(), f"{isa}: logits differ from the scalar kernels'"
    one = autark.logits(out, KQ_TOKENS, tmp_path / "one.f32", "--batch", "1", env=env)
    assert one.tobytes() == scalar.tobytes(), f"{isa}: token-by-token logits differ from the scalar kernels'"


def test_q4_k_m_preset(autark, tmp_path):
    """--type q4_k_m: llama.cpp's type choices, with its fallbacks for widths that are not a
    multiple of 256 (d_model 320 here: q4_k -> q5_0, q6_k -> q8_0) reported."""
    spec = mg.ModelSpec(arch="llama", n_layers=8, d_model=320, n_heads=5, n_kv_heads=5, ffn=512, tied=True)
    src = tmp_path / "m.gguf"
    mg.write_model(src, spec, mg.spm_synthetic(), {}, seed=9)
    out = tmp_path / "m.autark"
    r = autark.ok("quantize", src, "-o", out, "--type", "q4_k_m")
    assert "q5_0 instead of q4_k" in r.stderr.decode() and "bits/weight" in r.stdout.decode()
    types = {t["name"]: t["dtype"] for t in autark.inspect(out)["tensors"]}
    more_bits = [0, 3, 6, 7]  # llama.cpp use_more_bits(i, 8): i < 1, i >= 7, (i - 1) % 3 == 2
    for l in range(8):
        assert types[f"blk.{l}.ffn_down.weight"] == ("q6_k" if l in more_bits else "q4_k"), l  # 512 wide
        assert types[f"blk.{l}.attn_v.weight"] == ("q8_0" if l in more_bits else "q5_0"), l  # 320 wide
        assert types[f"blk.{l}.ffn_up.weight"] == "q5_0"
    assert types["token_embd.weight"] == "q8_0"  # tied head: q6_k -> q8_0


def test_q5_k_m_preset_runs(autark, tmp_path):
    """--type q5_k_m: q5_k, q6_k on llama.cpp's layers, q5_1 where a width is not a multiple of
    256 (reported), and the model runs on them close to the NumPy reference on the same values."""
    spec = mg.ModelSpec(arch="llama", n_layers=8, d_model=320, n_heads=5, n_kv_heads=5, ffn=512, tied=True)
    src = tmp_path / "m.gguf"
    mg.write_model(src, spec, mg.spm_synthetic(), {}, seed=9)
    out = tmp_path / "m.autark"
    r = autark.ok("quantize", src, "-o", out, "--type", "q5_k_m")
    assert "q5_1 instead of q5_k" in r.stderr.decode()
    types = {t["name"]: t["dtype"] for t in autark.inspect(out)["tensors"]}
    more_bits = [0, 3, 6, 7]
    for l in range(8):
        assert types[f"blk.{l}.ffn_down.weight"] == ("q6_k" if l in more_bits else "q5_k"), l
        assert types[f"blk.{l}.ffn_up.weight"] == "q5_1"
    # Eight random layers amplify the 8-bit activation rounding: judge the q5_k_m model's error
    # against the NumPy reference on its own dequantized weights beside the same measure for q8_0
    # weights (which only share that rounding); both about 8% of the largest logit here.
    model = llama_ref.load_gguf(src)

    def rel_error(path):
        values = {name: autark.dump(path, name, tmp_path / "t.f32").astype(np.float64).reshape(v.shape)
                  for name, v in model.tensors.items() if v.ndim == 2}
        ref = llama_ref.forward(llama_ref.Model(model.config, {**model.tensors, **values}), KQ_TOKENS)
        got = autark.logits(path, KQ_TOKENS, tmp_path / "logits.f32").astype(np.float64)
        return np.abs(got - ref).max() / np.abs(ref).max()

    q8 = autark.quantize(src, tmp_path / "q8.autark", "q8_0")
    err, err_q8 = rel_error(out), rel_error(q8)
    assert err <= 0.12 and err <= 1.5 * err_q8, (err, err_q8)


QWEN_SPEC = mg.ModelSpec(arch="qwen2", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, ffn=96, tied=True,
                         qkv_bias=True, rope_theta=1e6, norm_eps=1e-6)
QWEN_TYPES = {"token_embd.weight": Q.Q8_0, "blk.0.attn_q.weight": Q.F16, "blk.1.ffn_up.weight": Q.BF16}


def test_qwen2_gguf_forward(autark, tmp_path):
    vocab = mg.gpt2_synthetic(pre="qwen2")
    src = tmp_path / "qwen2.gguf"
    mg.write_model(src, QWEN_SPEC, vocab, QWEN_TYPES, seed=2)
    out = autark.quantize(src, tmp_path / "qwen2.autark", "f32")
    model = llama_ref.load_gguf(src)
    assert model.config.rope_layout == "neox" and model.config.tied_embeddings and model.config.attn_qkv_bias

    meta, tensors = autark_file.read(out, check_tensor_sha=True, strict=True)
    cfg = meta["config"]
    assert meta["architecture"] == "qwen2"
    assert cfg["rope_layout"] == "neox"
    assert cfg["tied_embeddings"] is True and "output.weight" not in tensors
    assert cfg["attn_qkv_bias"] is True
    assert cfg["rope_theta"] == pytest.approx(1e6)
    assert cfg["norm_eps"] == pytest.approx(1e-6)
    for i in range(QWEN_SPEC.n_layers):
        for b in ("attn_q.bias", "attn_k.bias", "attn_v.bias"):
            name = f"blk.{i}.{b}"
            assert tensors[name]["dtype"] == "f32"
            assert np.array_equal(np.frombuffer(tensors[name]["raw"], "<f4"), model.tensors[name]), name
    tok = meta["tokenizer"]
    assert tok["chat_template"] == mg.CHATML
    assert tok["bos_token_id"] == vocab.bos and vocab.eos in tok["eos_token_ids"]

    tokens = [vocab.tokens.index("<|im_start|>"), 116, 257, 267, 101, 265, 257, 114, 32, 263, 0, 255, 258, 270]
    got = autark.logits(out, tokens, tmp_path / "logits.f32").astype(np.float64)
    ref = llama_ref.forward(model, tokens)
    compare_logits(got, ref, "qwen2 GGUF -> f32")
    assert_sensitive(model, tokens, ref, [("rope_layout", "interleaved"), ("attn_qkv_bias", False)])


QWEN3_SPEC = mg.ModelSpec(arch="qwen3", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, ffn=96, tied=True,
                          qk_norm=True, key_length=24, rope_theta=1e6, norm_eps=1e-6)


def test_qwen3_gguf_forward(autark, tmp_path):
    """Qwen3: per-head q/k RMSNorm before RoPE, no biases, heads wider than d_model / n_heads."""
    vocab = mg.gpt2_synthetic(pre="qwen2")
    src = tmp_path / "qwen3.gguf"
    mg.write_model(src, QWEN3_SPEC, vocab, {"blk.1.attn_q.weight": Q.F16}, seed=3)
    out = autark.quantize(src, tmp_path / "qwen3.autark", "f32")
    model = llama_ref.load_gguf(src)
    assert model.config.head_dim == 24 and not model.config.attn_qkv_bias

    meta, tensors = autark_file.read(out, check_tensor_sha=True, strict=True)
    cfg = meta["config"]
    assert meta["architecture"] == "qwen3"
    assert cfg["attn_qk_norm"] is True and cfg["attn_qkv_bias"] is False and cfg["head_dim"] == 24
    for i in range(QWEN3_SPEC.n_layers):
        for n in ("attn_q_norm.weight", "attn_k_norm.weight"):
            name = f"blk.{i}.{n}"
            assert tensors[name]["shape"] == [24] and tensors[name]["dtype"] == "f32"
            assert np.array_equal(np.frombuffer(tensors[name]["raw"], "<f4"), model.tensors[name]), name

    tokens = [vocab.tokens.index("<|im_start|>"), 116, 257, 267, 101, 265, 257, 114, 32, 263, 0, 255, 258, 270]
    got = autark.logits(out, tokens, tmp_path / "logits.f32").astype(np.float64)
    ref = llama_ref.forward(model, tokens)
    compare_logits(got, ref, "qwen3 GGUF -> f32")
    # The reference without the q/k norms differs: the test would notice a runtime that skipped them.
    plain = llama_ref.Model(model.config, {n: t for n, t in model.tensors.items()
                                           if not n.endswith(("attn_q_norm.weight", "attn_k_norm.weight"))})
    assert np.abs(llama_ref.forward(plain, tokens) - ref).max() > 0.05 * np.abs(ref).max()


PHI3_SPEC = mg.ModelSpec(arch="phi3", n_layers=2, d_model=64, n_heads=4, n_kv_heads=4, ffn=96, tied=False,
                         sliding_window=5, rope_theta=1e4, norm_eps=1e-5)


def test_phi3_gguf_forward(autark, tmp_path):
    """Phi-3: fused attn_qkv and double-width ffn_up split by rows at import — lossless for a
    quantized tensor too — neox RoPE, sliding window from the GGUF."""
    vocab = mg.gpt2_synthetic(pre="qwen2")
    src = tmp_path / "phi3.gguf"
    types = {"blk.0.attn_qkv.weight": Q.Q4_0, "blk.1.ffn_up.weight": Q.Q8_0, "blk.0.ffn_up.weight": Q.F16}
    mg.write_model(src, PHI3_SPEC, vocab, types, seed=4)
    out = autark.quantize(src, tmp_path / "phi3.autark", "f32")
    model = llama_ref.load_gguf(src)
    meta, _ = autark_file.read(out, check_tensor_sha=True, strict=True)
    assert meta["architecture"] == "phi3" and meta["config"]["sliding_window"] == 5
    assert meta["config"]["rope_layout"] == "neox"
    keep = autark.quantize(src, tmp_path / "phi3-q.autark", "q4_0", "--tensor-type", "blk.1.ffn_*=q8_0")
    _, tensors = autark_file.read(keep, check_tensor_sha=True, strict=True)
    assert "blk.0.attn_qkv.weight" not in tensors
    # Row ranges of the quantized fused tensor, byte for byte (q rows first, then k, then v).
    reader = gguf.GGUFReader(str(src))
    (qkv,) = [t for t in reader.tensors if t.name == "blk.0.attn_qkv.weight"]
    raw = qkv.data.tobytes()
    row = len(raw) // (3 * 64)
    for i, part in enumerate(("attn_q", "attn_k", "attn_v")):
        t = tensors[f"blk.0.{part}.weight"]
        assert t["dtype"] == "q4_0" and t["shape"] == [64, 64]
        assert t["raw"] == raw[i * 64 * row:(i + 1) * 64 * row], part
    assert tensors["blk.1.ffn_gate.weight"]["dtype"] == "q8_0" and tensors["blk.1.ffn_up.weight"]["shape"] == [96, 64]

    tokens = [vocab.tokens.index("<|im_start|>"), 116, 257, 267, 101, 265, 257, 114, 32, 263, 0, 255, 258, 270]
    got = autark.logits(out, tokens, tmp_path / "logits.f32").astype(np.float64)
    ref = llama_ref.forward(model, tokens)
    compare_logits(got, ref, "phi3 GGUF -> f32")
    assert_sensitive(model, tokens, ref, [("sliding_window", None)])


GEMMA3_SPEC = mg.ModelSpec(arch="gemma3", n_layers=6, d_model=64, n_heads=4, n_kv_heads=1, ffn=96, tied=True,
                           qk_norm=True, key_length=32, sliding_window=4, rope_theta=1e6, norm_eps=1e-6)


def test_gemma3_gguf_forward(autark, tmp_path):
    """Gemma 3 as llama.cpp runs a gemma3 GGUF: layers 0-4 sliding (window 4, RoPE base 1e4) and
    layer 5 global (base 1e6), norms stored as 1 + w, GELU(tanh), embeddings x sqrt(64)."""
    vocab = mg.gpt2_synthetic(pre="qwen2")
    src = tmp_path / "gemma3.gguf"
    mg.write_model(src, GEMMA3_SPEC, vocab, {"blk.2.ffn_down.weight": Q.Q8_0}, seed=5)
    out = autark.quantize(src, tmp_path / "gemma3.autark", "f32")
    model = llama_ref.load_gguf(src)
    meta, tensors = autark_file.read(out, check_tensor_sha=True, strict=True)
    cfg = meta["config"]
    assert meta["architecture"] == "gemma3"
    assert cfg["sliding_window"] == 4 and cfg["sliding_window_pattern"] == 6 and cfg["rope_theta_local"] == 1e4
    assert cfg["embedding_scale"] == pytest.approx(8.0) and cfg["ffn_activation"] == "gelu_tanh"
    assert cfg["post_norms"] and cfg["attn_qk_norm"] and cfg["head_dim"] == 32
    assert cfg.get("attention_scale") is None  # 1/sqrt(head_dim) unless 62 layers (27B)
    assert np.array_equal(np.frombuffer(tensors["blk.3.post_ffw_norm.weight"]["raw"], "<f4"),
                          model.tensors["blk.3.post_ffw_norm.weight"])  # copied, not shifted again

    tokens = [vocab.tokens.index("<|im_start|>"), 116, 257, 267, 101, 265, 257, 114, 32, 263, 0, 255, 258, 270]
    got = autark.logits(out, tokens, tmp_path / "logits.f32").astype(np.float64)
    ref = llama_ref.forward(model, tokens)
    compare_logits(got, ref, "gemma3 GGUF -> f32")
    assert_sensitive(model, tokens, ref, [("sliding_window_pattern", None), ("rope_theta_local", None),
                                          ("embedding_scale", None)])


def test_gemma3_gguf_attention_scale_from_metadata(autark, tmp_path):
    """A Gemma 3 GGUF that states `gemma3.attention.scale` is run with that scale, not the rule."""
    vocab = mg.gpt2_synthetic(pre="qwen2")
    src = tmp_path / "gemma3.gguf"
    mg.write_model(src, dataclasses.replace(GEMMA3_SPEC, attention_scale=0.3), vocab, seed=5)
    out = autark.quantize(src, tmp_path / "gemma3.autark", "f32")
    assert autark_file.read(out)[0]["config"]["attention_scale"] == pytest.approx(0.3)
    model = llama_ref.load_gguf(src)
    tokens = [vocab.tokens.index("<|im_start|>"), 116, 257, 267, 101, 265, 257, 114, 32, 263, 0, 255, 258, 270]
    got = autark.logits(out, tokens, tmp_path / "logits.f32").astype(np.float64)
    ref = llama_ref.forward(model, tokens)
    compare_logits(got, ref, "gemma3 GGUF, attention.scale 0.3 -> f32")
    assert_sensitive(model, tokens, ref, [("attention_scale", None)])


# ----------------------------------------------------------------------------------------------
# 4. SentencePiece (`llama`) tokenizer against the sentencepiece library
# ----------------------------------------------------------------------------------------------

_WORDS = {
    "en": "the quick brown fox jumps over lazy dog weather today is nice and warm we went to market bought "
          "apples bread cheese people think about language models running on small devices Hello World",
    "fr": "le renard brun rapide saute par dessus chien paresseux aujourd'hui il fait beau nous sommes allés "
          "au marché acheté des pommes du pain et du fromage été hiver à où ça garçon Noël",
    "de": "der schnelle braune Fuchs springt über den faulen Hund heute ist das Wetter schön wir gingen zum "
          "Markt kauften Äpfel Brot und Käse Straße größer Mädchen",
    "pl": "szybki brązowy lis skacze nad leniwym psem dzisiaj jest ładna pogoda poszliśmy na targ kupiliśmy "
          "jabłka chleb i ser zażółć gęślą jaźń źdźbło Łódź",
    "el": "η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο σήμερα ο καιρός είναι ωραίος πήγαμε "
          "στην αγορά αγοράσαμε μήλα ψωμί και τυρί Ελλάδα",
}


def sp_corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    langs = sorted(_WORDS)
    lines = []
    for i in range(n):
        words = _WORDS[langs[i % len(langs)]].split()
        s = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        if rng.random() < 0.3:
            s += f" {rng.randint(0, 99999)}"
        if rng.random() < 0.3:
            s = s[0].upper() + s[1:] + rng.choice([".", "!", "?", ",", ":"])
        lines.append(s)
    return lines


# Texts compared id for id with sp.encode. Not in the list, because they legitimately differ:
#  * text containing a control token's spelling, e.g. "<s> literal </s>": sp.encode treats it as
#    plain text (bytes of '<', 's', '>'), while the Hugging Face tokenizer that the converter
#    builds (like HF's own LlamaTokenizerFast) always splits control tokens out as added tokens,
#    and `autark tokenize --no-special` only turns off BOS insertion.
SP_TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "Hello World",
    "le renard brun saute par-dessus le chien, aujourd'hui il fait très beau à Noël",
    "Der schnelle Fuchs springt über die Straße, größer als Äpfel und Mädchen",
    "Zażółć gęślą jaźń, źdźbło w Łodzi",
    "η γρήγορη καφέ αλεπού πηδάει πάνω από τον σκύλο",
    "emoji 🙂 and 🦀 crab 👍🏽",  # not in the vocabulary: byte fallback
    "日本語のテキスト",  # byte fallback throughout
    "digits 1234567890 and 3.14159, 2024-11-25",
    "  two leading spaces",
    "trailing spaces   ",
    "multiple   spaces  between    words",
    "line one\nline two\n\nline four\n",
    "\ttab\tseparated\r\nwindows",
    "",
    " ",
    "   ",
    "a",
    "ÄÖÜ äöü ß ñ ç € ﬁ ① Ⅻ ＡＢＣ",  # identity normalization: no NFKC folding
    "apples apples apples applesapples bread-cheese",
    "UPPER lower MiXeD",
]


def train_sentencepiece(add_dummy_prefix: bool):
    """A SentencePiece BPE model trained like Llama's tokenizer.model (identity normalization,
    whitespace kept, digits split, byte fallback). vocab_size 640: 256 byte pieces, 3 control
    pieces and ~120 characters (character_coverage 1.0) leave ~260 merged pieces; at ~400 there
    would be barely 20 and the merge order would hardly be exercised."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sp_corpus()), model_writer=model, model_type="bpe", vocab_size=640,
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        add_dummy_prefix=add_dummy_prefix, minloglevel=2, num_threads=1)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


@pytest.fixture(scope="module", params=[True, False], ids=["dummy_prefix", "no_dummy_prefix"])
def sp_model(request, autark, tmp_path_factory):
    """(sentencepiece processor, imported .autark) for a tiny llama model around a trained vocabulary."""
    sp = train_sentencepiece(request.param)
    vocab = mg.spm_from_processor(sp, add_bos=True)
    vocab.add_space_prefix = request.param  # llama.cpp: normalizer_spec.add_dummy_prefix
    d = tmp_path_factory.mktemp("spm")
    src = d / "spm.gguf"
    mg.write_model(src, mg.ModelSpec(d_model=64, n_heads=4, n_kv_heads=2, ffn=96), vocab, seed=3)
    return sp, autark.quantize(src, d / "spm.autark", "f32")


def test_sp_fixture(sp_model):
    sp, _ = sp_model
    assert sp.get_piece_size() == 640
    assert sum(sp.is_byte(i) for i in range(640)) == 256
    merged = [sp.id_to_piece(i) for i in range(640) if not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i))
              and len(sp.id_to_piece(i)) > 1]
    assert len(merged) > 200
    # The texts exercise merges and byte fallback.
    pieces = [p for t in SP_TEXTS for p in sp.encode(t, out_type=str)]
    assert sum(p in merged for p in pieces) > 50
    assert sum(p.startswith("<0x") for p in pieces) > 20


@pytest.mark.parametrize("text", SP_TEXTS, ids=[repr(t)[:30] for t in SP_TEXTS])
def test_sp_tokenize_matches_sentencepiece(autark, sp_model, text):
    sp, out = sp_model
    expected = sp.encode(text)
    got = autark.tokenize(out, text, "--no-special")
    assert got == expected, (f"{text!r}: autark {[sp.id_to_piece(i) for i in got]} vs "
                             f"sentencepiece {sp.encode(text, out_type=str)}")
    with_bos = autark.tokenize(out, text)
    assert with_bos == [sp.bos_id()] + expected


def test_sp_random_strings(sp_model):
    """Many random strings over the training alphabet (plus spaces, newlines, emoji), through the
    tokenizer.json stored in the file (the runtime embeds the same `tokenizers` library)."""
    from tokenizers import Tokenizer

    sp, out = sp_model
    meta, _ = autark_file.read(out)
    tok = meta["tokenizer"]
    assert tok["bos_token_id"] == sp.bos_id()
    assert sp.eos_id() in tok["eos_token_ids"]
    assert tok["add_bos"] is True
    hf = Tokenizer.from_str(tok["hf_json"])
    alphabet = sorted(set("".join(sp_corpus()))) + list(" \n'-") + ["🙂", "  ", "   ", "Ω", "\u00a0"]
    rng = random.Random(7)
    bad = []
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        expected = sp.encode(text)
        got = hf.encode(text, add_special_tokens=False).ids
        if got != expected:
            bad.append(f"{text!r}: {[sp.id_to_piece(i) for i in got]} vs {sp.encode(text, out_type=str)}")
    assert not bad, f"{len(bad)} of 500 differ, e.g.\n" + "\n".join(bad[:5])
    # Decoding round-trips (sentencepiece drops the dummy prefix space, as the decoder's Strip does).
    for text in SP_TEXTS:
        assert hf.decode(sp.encode(text), skip_special_tokens=False) == sp.decode(sp.encode(text)), repr(text)


# ----------------------------------------------------------------------------------------------
# 5. Hostile GGUFs through the full quantize path
# ----------------------------------------------------------------------------------------------

HOSTILE_SPEC = mg.ModelSpec(arch="llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, ffn=96)
EXTRA = "blk.0.extra.weight"  # an unused 4-D tensor: the runtime ignores it, the reader must still check it


@pytest.fixture(scope="module")
def hostile_base(autark, tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    src = d / "base.gguf"
    mg.write_model(src, HOSTILE_SPEC, mg.spm_synthetic(), {"blk.0.attn_k.weight": Q.Q8_0}, seed=4,
                   extra_tensors={EXTRA: np.zeros((1, 1, 2, 32), np.float32)})
    autark.quantize(src, d / "control.autark", "f32")  # positive control: the unpatched file imports
    return src


def _hostile_cases(src):
    info = mg.tensor_info_offsets(src)
    reader = gguf.GGUFReader(str(src))
    size = src.stat().st_size
    last = max(reader.tensors, key=lambda t: int(t.data_offset))
    rel_last = int(last.data_offset) - int(reader.data_offset)
    # Four dims of 2^17 each: every one is plausible for the file (<= 2 x its size), the product
    # (2^68 values) overflows u64.
    assert 2 * size >= 2**17
    return {
        "data offset past the end": [(info["blk.1.ffn_down.weight"].offset_at, "<Q", size)],
        "data offset near 2^64 (end wraps)": [(info["blk.1.ffn_down.weight"].offset_at, "<Q", 2**64 - 32)],
        "last tensor ends past the end": [(info[last.name].offset_at, "<Q", rel_last + 32)],
        "unknown ggml type 99 on a needed tensor": [(info["blk.0.attn_k.weight"].type_at, "<I", 99)],
        "unsupported ggml type Q2_K on a needed tensor": [(info["blk.0.attn_k.weight"].type_at, "<I", 10)],
        "dims product overflows": [(at, "<Q", 2**17) for at in info[EXTRA].dims_at],
        "dimension 0": [(info["blk.0.attn_q.weight"].dims_at[1], "<Q", 0)],
        "n_dims 5": [(info["blk.0.attn_q.weight"].n_dims_at, "<I", 5)],
    }


HOSTILE = ["data offset past the end", "data offset near 2^64 (end wraps)", "last tensor ends past the end",
           "unknown ggml type 99 on a needed tensor", "unsupported ggml type Q2_K on a needed tensor",
           "dims product overflows", "dimension 0", "n_dims 5"]


@pytest.mark.parametrize("what", HOSTILE)
def test_hostile_gguf(autark, hostile_base, tmp_path, what):
    bad = tmp_path / "hostile.gguf"
    shutil.copyfile(hostile_base, bad)
    for at, fmt, value in _hostile_cases(hostile_base)[what]:
        mg.patch(bad, at, fmt, value)
    out = tmp_path / "out.autark"
    r = autark.run("quantize", bad, "-o", out, "--type", "f32", timeout=20)
    err = r.stderr.decode("utf-8", errors="replace")
    assert r.returncode == 1, f"{what}: exit status {r.returncode}\n{err[-2000:]}"
    assert "panicked" not in err and "RUST_BACKTRACE" not in err, f"{what}: panic\n{err[-2000:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("autark: error:"), f"{what}: stderr\n{err[-2000:]}"
    assert not out.exists(), f"{what}: an output file was written"
    assert [p.name for p in tmp_path.iterdir()] == ["hostile.gguf"], f"{what}: files left behind"


def test_unknown_type_on_an_unused_tensor_is_ignored(autark, tmp_path):
    """A tensor the architecture does not use may have a type this version cannot read."""
    src = tmp_path / "extra.gguf"
    mg.write_model(src, mg.ModelSpec(d_model=64, n_heads=4, n_kv_heads=2, ffn=96), mg.spm_synthetic(),
                   extra_tensors={"blk.0.extra.weight": np.zeros((2, 32), np.float32)})
    mg.patch(src, mg.tensor_info_offsets(src)["blk.0.extra.weight"].type_at, "<I", 99)
    autark.ok("quantize", src, "-o", tmp_path / "x.autark", "--type", "f32")
