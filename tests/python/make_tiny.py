"""Synthetic tiny Hugging Face model folders with random weights, for end-to-end tests.

    make(variant, folder, dtype="f32", shards=1) -> Path

Variants (all GQA: d_model 64, 4 heads, 2 kv heads, head_dim 16, ffn 96, 2 layers, vocab 272):
    llama_tied                LlamaForCausalLM, tie_word_embeddings true
    llama_untied_llama3rope   LlamaForCausalLM, lm_head.weight, rope_scaling llama3
    mistral                   MistralForCausalLM, untied, sliding_window null
    qwen2                     Qwen2ForCausalLM, q/k/v biases, tied
    qwen3                     Qwen3ForCausalLM, per-head q/k RMSNorm, no biases, tied, head_dim 24
                              (heads wider than d_model / n_heads)
    phi3                      Phi3ForCausalLM, fused qkv_proj and gate_up_proj, untied,
                              sliding_window 6 (shorter than the test prompts)
    gemma3                    Gemma3ForCausalLM: head_dim 32, q/k norms, post-attention and
                              post-FFN norms (weights near 0: Gemma scales by 1 + w), GELU(tanh),
                              layer 0 sliding (window 5, RoPE base 1e4) and layer 1 global
                              (base 1e6, linear scaling x2), query_pre_attn_scalar 24, tied
    gemma3_gguf               Gemma 3 as a GGUF file can describe it: 6 layers with llama.cpp's
                              fixed pattern (5 sliding, window 5, then 1 global), no RoPE scaling,
                              query_pre_attn_scalar = head_dim 32

Writes config.json, model.safetensors (or 2 shards + model.safetensors.index.json),
tokenizer.json (byte-level BPE: 256 byte tokens, 12 merges, 4 special tokens) and
tokenizer_config.json (ChatML chat_template, bos/eos). Weights are drawn with a fixed seed per
variant at scale 0.1 so that attention is not uniform and logits are not degenerate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

VARIANTS = ("llama_tied", "llama_untied_llama3rope", "mistral", "qwen2", "qwen3", "phi3", "gemma3", "gemma3_gguf")

D_MODEL, N_HEADS, N_KV_HEADS, HEAD_DIM, FFN, N_LAYERS, MAX_POS = 64, 4, 2, 16, 96, 2, 128

MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
          ("o", "n"), ("Ġ", "s"), ("r", "e"), ("a", "t"), ("e", "n"), ("Ġ", "w")]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<s>", "</s>"]
VOCAB = 256 + len(MERGES) + len(SPECIALS)  # 272
IM_START, IM_END, BOS, EOS = range(256 + len(MERGES), VOCAB)

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_SEEDS = {"llama_tied": 1, "llama_untied_llama3rope": 2, "mistral": 3, "qwen2": 4, "qwen3": 5, "phi3": 6, "gemma3": 7,
          "gemma3_gguf": 8}


def head_dim(variant: str) -> int:
    return {"qwen3": 24, "gemma3": 32, "gemma3_gguf": 32}.get(variant, HEAD_DIM)


def n_layers(variant: str) -> int:
    return 6 if variant == "gemma3_gguf" else N_LAYERS


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by ByteLevel pre-tokenizers."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def tokenizer_json() -> dict:
    vocab = {ch: b for b, ch in byte_to_unicode().items()}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    added = []
    for s in SPECIALS:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
        vocab[s] = len(vocab)
    assert len(vocab) == VOCAB
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": [list(m) for m in MERGES]},
    }


def config_json(variant: str, dtype: str) -> dict:
    arch = {"llama_tied": "LlamaForCausalLM", "llama_untied_llama3rope": "LlamaForCausalLM",
            "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
            "phi3": "Phi3ForCausalLM", "gemma3": "Gemma3ForCausalLM", "gemma3_gguf": "Gemma3ForCausalLM"}[variant]
    cfg = {
        "architectures": [arch],
        "model_type": {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
                       "Qwen3ForCausalLM": "qwen3", "Phi3ForCausalLM": "phi3",
                       "Gemma3ForCausalLM": "gemma3_text"}[arch],
        "hidden_size": D_MODEL,
        "intermediate_size": FFN,
        "num_hidden_layers": n_layers(variant),
        "num_attention_heads": N_HEADS,
        "num_key_value_heads": N_KV_HEADS,
        "head_dim": head_dim(variant),
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "vocab_size": VOCAB,
        "bos_token_id": BOS,
        "eos_token_id": IM_END,
        "tie_word_embeddings": variant in ("llama_tied", "qwen2", "qwen3", "gemma3", "gemma3_gguf"),
        "torch_dtype": {"f32": "float32", "f16": "float16"}[dtype],
    }
    if arch == "LlamaForCausalLM":
        cfg.update(attention_bias=False, mlp_bias=False)
    if variant == "llama_untied_llama3rope":
        # With head_dim 16 and theta 1e4 the wavelengths are 6.3, 19.9, 62.8, ...: against
        # original_max_position_embeddings 32 (high/low wavelength bounds 8 and 32) the first
        # frequency stays, the second is smoothed and the rest are divided by factor:
        # all three branches of the llama3 formula are exercised.
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    if arch == "MistralForCausalLM":
        cfg["sliding_window"] = None
    if arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        cfg.update(use_sliding_window=False, sliding_window=MAX_POS, max_window_layers=N_LAYERS)
    if arch == "Qwen3ForCausalLM":
        cfg.update(attention_bias=False)
    if arch == "Gemma3ForCausalLM":
        cfg.update(hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24, sliding_window=5,
                   sliding_window_pattern=2, rope_local_base_freq=10000.0, rope_theta=1e6,
                   rope_scaling={"rope_type": "linear", "factor": 2.0}, final_logit_softcapping=None,
                   attn_logit_softcapping=None, attention_bias=False)
    if variant == "gemma3_gguf":
        cfg.update(query_pre_attn_scalar=head_dim(variant), sliding_window_pattern=6, rope_scaling=None)
    if arch == "Phi3ForCausalLM":
        cfg.update(sliding_window=6, original_max_position_embeddings=MAX_POS, resid_pdrop=0.0)
    return cfg


def weights(variant: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(_SEEDS[variant])

    def mat(rows, cols, scale=0.1):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    hd = head_dim(variant)
    q_rows, kv_rows = N_HEADS * hd, N_KV_HEADS * hd
    w = {"model.embed_tokens.weight": mat(VOCAB, D_MODEL, 0.2)}
    for i in range(n_layers(variant)):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(D_MODEL)
        w[p + "self_attn.q_proj.weight"] = mat(q_rows, D_MODEL)
        w[p + "self_attn.k_proj.weight"] = mat(kv_rows, D_MODEL)
        w[p + "self_attn.v_proj.weight"] = mat(kv_rows, D_MODEL)
        if variant == "qwen2":
            w[p + "self_attn.q_proj.bias"] = (0.1 * rng.standard_normal(q_rows)).astype(np.float32)
            w[p + "self_attn.k_proj.bias"] = (0.1 * rng.standard_normal(kv_rows)).astype(np.float32)
            w[p + "self_attn.v_proj.bias"] = (0.1 * rng.standard_normal(kv_rows)).astype(np.float32)
        if variant in ("qwen3", "gemma3", "gemma3_gguf"):
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "self_attn.o_proj.weight"] = mat(D_MODEL, q_rows)
        w[p + "post_attention_layernorm.weight"] = norm(D_MODEL)
        w[p + "mlp.gate_proj.weight"] = mat(FFN, D_MODEL)
        w[p + "mlp.up_proj.weight"] = mat(FFN, D_MODEL)
        w[p + "mlp.down_proj.weight"] = mat(D_MODEL, FFN)
        if variant.startswith("gemma3"):
            w[p + "pre_feedforward_layernorm.weight"] = norm(D_MODEL)
            w[p + "post_feedforward_layernorm.weight"] = norm(D_MODEL)
            for n in [k for k in w if k.startswith(p) and k.endswith("norm.weight")]:
                w[n] = w[n] - 1.0  # Gemma stores w and scales by 1 + w
        if variant == "phi3":  # Phi3Attention.qkv_proj, Phi3MLP.gate_up_proj (gate rows first)
            w[p + "self_attn.qkv_proj.weight"] = np.concatenate(
                [w.pop(p + f"self_attn.{x}_proj.weight") for x in "qkv"])
            w[p + "mlp.gate_up_proj.weight"] = np.concatenate(
                [w.pop(p + "mlp.gate_proj.weight"), w.pop(p + "mlp.up_proj.weight")])
    w["model.norm.weight"] = norm(D_MODEL) - (1.0 if variant.startswith("gemma3") else 0.0)
    if variant in ("llama_untied_llama3rope", "mistral", "phi3"):
        w["lm_head.weight"] = mat(VOCAB, D_MODEL, 0.3)
    return w


def make(variant: str, folder, dtype: str = "f32", shards: int = 1) -> Path:
    from safetensors.numpy import save_file

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np_dtype = {"f32": np.float32, "f16": np.float16}[dtype]
    tensors = {k: np.ascontiguousarray(v.astype(np_dtype)) for k, v in weights(variant).items()}

    (folder / "config.json").write_text(json.dumps(config_json(variant, dtype), indent=2))
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        names = sorted(tensors)
        weight_map = {}
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[s::shards]}
            save_file(part, str(folder / fname), metadata={"format": "pt"})
            weight_map.update({n: fname for n in part})
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json(), ensure_ascii=False))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>",
        "eos_token": "<|im_end|>",
        "chat_template": CHATML,
        "model_max_length": MAX_POS,
    }, indent=2))
    return folder


if __name__ == "__main__":
    import sys

    make(sys.argv[1], sys.argv[2], *(sys.argv[3:4] or ["f32"]), shards=int(sys.argv[4]) if len(sys.argv) > 4 else 1)
