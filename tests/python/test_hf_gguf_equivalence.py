"""The same synthetic model imported from its Hugging Face folder and from a GGUF file written the
way llama.cpp's converter writes it (GGUF tensor names; Llama q/k rows permuted into the
interleaved RoPE layout; Phi-3's projections fused; Gemma 3's norm weights as 1 + w, in the one
layer pattern and attention scale a GGUF file implies): both imports must store the same tensors
and hyper-parameters, and so compute the same logits, bit for bit, and the same greedy
continuation."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

import autark_file
import llama_ref
import make_gguf as mg
import make_tiny

TOKENS = [make_tiny.IM_START, 117, 115, 261, 10, 5, 200, 257, 32, 99, 265, make_tiny.EOS, 0, 271]


def write_gguf(path, variant: str, model: llama_ref.Model):
    c = model.config
    arch = {"llama_tied": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3", "gemma3_gguf": "gemma3"}[variant]
    w = gguf.GGUFWriter(str(path), arch)
    mg.add_hparams(w, mg.ModelSpec(arch=arch, n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads,
                                   n_kv_heads=c.n_kv_heads, ffn=c.ffn_dim, context_length=make_tiny.MAX_POS,
                                   rope_theta=c.rope_theta, norm_eps=c.norm_eps, key_length=c.head_dim,
                                   sliding_window=c.sliding_window))
    tok = make_tiny.tokenizer_json()["model"]
    tokens = [t for t, _ in sorted(tok["vocab"].items(), key=lambda kv: kv[1])]  # specials last
    assert tokens[-len(make_tiny.SPECIALS):] == make_tiny.SPECIALS
    types = [mg.NORMAL] * (len(tokens) - len(make_tiny.SPECIALS)) + [mg.CONTROL] * len(make_tiny.SPECIALS)
    vocab = mg.Vocab("gpt2", tokens, types, merges=[f"{a} {b}" for a, b in make_tiny.MERGES], pre="qwen2",
                     bos=make_tiny.BOS, eos=make_tiny.IM_END, add_bos=False, chat_template=make_tiny.CHATML)
    mg._add_vocab(w, vocab)
    t = dict(model.tensors)
    for l in range(c.n_layers):
        p = f"blk.{l}."
        if arch == "llama":
            t[p + "attn_q.weight"] = llama_ref.permute_for_interleaved(t[p + "attn_q.weight"], c.n_heads)
            t[p + "attn_k.weight"] = llama_ref.permute_for_interleaved(t[p + "attn_k.weight"], c.n_kv_heads)
        if arch == "phi3":
            t[p + "attn_qkv.weight"] = np.concatenate([t.pop(p + f"attn_{x}.weight") for x in "qkv"])
            t[p + "ffn_up.weight"] = np.concatenate([t.pop(p + "ffn_gate.weight"), t.pop(p + "ffn_up.weight")])
    for name, v in t.items():
        w.add_tensor(name, np.ascontiguousarray(v, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("qtype", ["f32", "q4_0"])
@pytest.mark.parametrize("variant", ["llama_tied", "qwen2", "qwen3", "phi3", "gemma3_gguf"])
def test_hf_and_gguf_imports_agree(autark, tmp_path, variant, qtype):
    folder = make_tiny.make(variant, tmp_path / "hf")
    model = llama_ref.load_hf(folder)
    src = tmp_path / "m.gguf"
    write_gguf(src, variant, model)
    from_hf = autark.quantize(folder, tmp_path / "hf.autark", qtype, "--rtn")
    from_gguf = autark.quantize(src, tmp_path / "gguf.autark", qtype, "--rtn")
    # One file per model, whatever the source (docs/NUMERICS.md): the same tensors, byte for byte
    # (Llama's q/k rows are reordered at HF import into GGUF's interleaved RoPE layout), the same
    # hyper-parameters, hence the same logits bit for bit and the same conformance record.
    # (Provenance and the tokenizer's JSON text say where each came from and may differ.)
    meta_hf, t_hf = autark_file.read(from_hf, check_tensor_sha=True, strict=True)
    meta_gg, t_gg = autark_file.read(from_gguf, check_tensor_sha=True, strict=True)
    assert list(t_hf) == list(t_gg)
    for name in t_hf:
        assert t_hf[name]["stored"] == t_gg[name]["stored"], f"{variant}: {name} differs between imports"
    assert meta_hf["config"] == meta_gg["config"], (meta_hf["config"], meta_gg["config"])
    assert meta_hf["conformance"] == meta_gg["conformance"]
    a = autark.logits(from_hf, TOKENS, tmp_path / "a.f32")
    b = autark.logits(from_gguf, TOKENS, tmp_path / "b.f32")
    assert a.tobytes() == b.tobytes(), f"{variant}: max |diff| {np.abs(a - b).max():.3g}"
    # the same greedy continuation, token for token
    runs = [autark.ok("run", m, "-p", "the cat sat on", "-n", 12, "--temp", 0).stdout for m in (from_hf, from_gguf)]
    assert runs[0] == runs[1] and runs[0], runs
