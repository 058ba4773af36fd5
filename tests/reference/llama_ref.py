"""Independent NumPy reference forward pass for the Llama family (Llama, Mistral, Qwen2).

Written from the Hugging Face modeling definitions (LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM); it shares no code with the Rust runtime and is used by the test suite as an
oracle. Everything is computed in float64, so the reference itself adds no measurable rounding
error compared to any float32 implementation.

    embedding
    per layer:  h = x + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n))),  n = rmsnorm(x)
                x = h + down(silu(gate(m)) * up(m)),                                     m = rmsnorm(h)
    final rmsnorm, lm_head (tied: the embedding matrix)

Weights are kept in a dict under GGUF tensor names (token_embd.weight, blk.N.attn_q.weight, ...)
with NumPy shapes ([rows, cols] = [out, in], like torch.nn.Linear.weight), whatever the source.

RoPE layouts:
  * "neox"        pairs (i, i + head_dim/2) -- HF `rotate_half`; used for HF checkpoints and
                  for GGUF `qwen2` (llama.cpp does not permute Qwen2 weights).
  * "interleaved" pairs (2i, 2i + 1) -- GGUF `llama`: llama.cpp's converter permutes the q/k rows
                  of each head so that HF row i goes to 2i and HF row i + head_dim/2 to 2i + 1;
                  rotating adjacent pairs with the same frequencies is then exactly HF's rotation.

Usage:  python llama_ref.py MODEL.gguf 504,3458,282,4649,314 [-n 16]
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import copy

import numpy as np

DTYPE = np.float64


# --------------------------------------------------------------------------------------------
# Model container
# --------------------------------------------------------------------------------------------


@dataclass
class Config:
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    vocab_size: int
    rope_theta: float
    norm_eps: float
    rope_layout: str  # "neox" | "interleaved"
    rope_scaling: dict | None = None  # {"type": "linear"|"llama3", "factor", ...} (autark naming)
    tied_embeddings: bool = False
    attn_qkv_bias: bool = False
    sliding_window: int | None = None
    architecture: str = "llama"
    # Gemma 3 (transformers' Gemma3TextModel): embeddings x embedding_scale, GELU(tanh) FFN,
    # post-attention / post-FFN norms (tensors present), q.k x attention_scale, and with
    # sliding_window_pattern p: layer l global iff (l+1) % p == 0, the others windowed with RoPE
    # base rope_theta_local and no rope scaling.
    embedding_scale: float | None = None
    attention_scale: float | None = None
    sliding_window_pattern: int | None = None
    rope_theta_local: float | None = None


@dataclass
class Model:
    config: Config
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # GGUF names, float64

    def w(self, name: str) -> np.ndarray:
        return self.tensors[name]

    def lm_head(self) -> np.ndarray:
        if "output.weight" in self.tensors:
            return self.tensors["output.weight"]
        return self.tensors["token_embd.weight"]


# --------------------------------------------------------------------------------------------
# GGUF loading
# --------------------------------------------------------------------------------------------


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def load_gguf(path) -> Model:
    import gguf  # llama.cpp's gguf-py

    reader = gguf.GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    if arch not in ("llama", "qwen2", "qwen3", "phi3", "gemma3"):
        raise ValueError(f"unsupported GGUF architecture {arch!r}")

    tensors = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        # GGUF lists ne0 (the contiguous dimension) first; NumPy order is the reverse.
        shape = tuple(int(d) for d in reversed(list(t.shape)))
        tensors[t.name] = np.asarray(values, dtype=DTYPE).reshape(shape)

    d_model = int(_field(reader, f"{arch}.embedding_length"))
    n_heads = int(_field(reader, f"{arch}.attention.head_count"))
    head_dim = int(_field(reader, f"{arch}.attention.key_length", d_model // n_heads))
    n_kv = int(_field(reader, f"{arch}.attention.head_count_kv", n_heads))
    split_fused(tensors, n_heads * head_dim, n_kv * head_dim, int(_field(reader, f"{arch}.feed_forward_length")))
    rope_dim = int(_field(reader, f"{arch}.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise ValueError("partial rotary embeddings are not supported by the reference")
    scaling = None
    stype = _field(reader, f"{arch}.rope.scaling.type")
    if stype == "linear":
        scaling = {"type": "linear", "factor": float(_field(reader, f"{arch}.rope.scaling.factor"))}
    elif stype not in (None, "none"):
        raise ValueError(f"unsupported GGUF rope scaling {stype!r}")

    cfg = Config(
        n_layers=int(_field(reader, f"{arch}.block_count")),
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        ffn_dim=int(_field(reader, f"{arch}.feed_forward_length")),
        vocab_size=tensors["token_embd.weight"].shape[0],
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        norm_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        rope_layout="interleaved" if arch == "llama" else "neox",
        rope_scaling=scaling,
        tied_embeddings="output.weight" not in tensors,
        attn_qkv_bias="blk.0.attn_q.bias" in tensors,
        sliding_window=_field(reader, f"{arch}.attention.sliding_window") if arch in ("phi3", "gemma3") else None,
        architecture=arch,
    )
    if arch == "gemma3":  # as llama.cpp runs it; the converter stored norm weights as 1 + w
        n_layers = cfg.n_layers
        cfg.embedding_scale = math.sqrt(d_model)
        # the file's attention.scale (autark reads it), else llama.cpp's rule: 27B (62 layers) apart
        explicit = _field(reader, f"{arch}.attention.scale")
        cfg.attention_scale = explicit or ((d_model / n_heads) ** -0.5 if n_layers == 62 else None)
        cfg.sliding_window_pattern = 6
        cfg.rope_theta_local = 10000.0
    return Model(cfg, tensors)


# --------------------------------------------------------------------------------------------
# Hugging Face folder loading (config.json + safetensors parsed by hand)
# --------------------------------------------------------------------------------------------

_HF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.qkv_proj.weight": "attn_qkv.weight",  # Phi-3, split by split_fused()
    "mlp.gate_up_proj.weight": "ffn_gate_up.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",  # Gemma 3
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_HF_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def hf_to_gguf_name(name: str) -> str | None:
    """HF tensor name -> GGUF name (None for tensors the model does not use, e.g. rotary caches)."""
    if name in _HF_GLOBAL_NAMES:
        return _HF_GLOBAL_NAMES[name]
    parts = name.split(".", 3)  # model, layers, N, rest
    if len(parts) == 4 and parts[0] == "model" and parts[1] == "layers":
        rest = _HF_LAYER_NAMES.get(parts[3])
        if rest is not None:
            return f"blk.{int(parts[2])}.{rest}"
    return None


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Minimal safetensors reader: u64 LE header length, JSON header, raw little-endian data."""
    data = Path(path).read_bytes()
    (hlen,) = struct.unpack_from("<Q", data, 0)
    if 8 + hlen > len(data):
        raise ValueError(f"{path}: header length {hlen} past end of file")
    header = json.loads(data[8 : 8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        raw = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=base + start)
        dt = info["dtype"]
        if dt == "F32":
            arr = raw.view("<f4")
        elif dt == "F16":
            arr = raw.view("<f2")
        elif dt == "BF16":
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: unsupported dtype {dt} for {name}")
        out[name] = arr.astype(DTYPE).reshape(shape)
    return out


def _hf_rope_scaling(cfg: dict) -> dict | None:
    rs = cfg.get("rope_scaling")
    if not rs:
        return None
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return None
    if kind == "linear":
        return {"type": "linear", "factor": float(rs["factor"])}
    if kind == "llama3":
        return {
            "type": "llama3",
            "factor": float(rs["factor"]),
            "low_freq_factor": float(rs["low_freq_factor"]),
            "high_freq_factor": float(rs["high_freq_factor"]),
            "original_context_length": int(rs["original_max_position_embeddings"]),
        }
    raise ValueError(f"unsupported rope_scaling {rs}")


def split_fused(tensors: dict, q_rows: int, kv_rows: int, ffn: int) -> None:
    """Phi-3's fused projections, as transformers' Phi3Attention and Phi3MLP use them:
    qkv_proj output = [q | k | v] along the output features; gate_up_proj output is chunked in two,
    gate first. (In GGUF, llama.cpp keeps the gate/up pair as a double-width ffn_up.)"""
    for name in list(tensors):
        base = name.rsplit(".", 2)[0]
        if name.endswith("attn_qkv.weight"):
            w = tensors.pop(name)
            tensors[base + ".attn_q.weight"] = w[:q_rows]
            tensors[base + ".attn_k.weight"] = w[q_rows:q_rows + kv_rows]
            tensors[base + ".attn_v.weight"] = w[q_rows + kv_rows:]
        elif name.endswith("ffn_gate_up.weight") or (name.endswith("ffn_up.weight") and tensors[name].shape[0] == 2 * ffn):
            w = tensors.pop(name)
            tensors[base + ".ffn_gate.weight"], tensors[base + ".ffn_up.weight"] = w[:ffn], w[ffn:]


def load_hf(folder) -> Model:
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    archs = cfg.get("architectures") or []
    known = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
             "Qwen3ForCausalLM": "qwen3", "Phi3ForCausalLM": "phi3", "Gemma3ForCausalLM": "gemma3"}
    if len(archs) != 1 or archs[0] not in known:
        raise ValueError(f"unsupported architectures {archs}")
    arch = known[archs[0]]

    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for f in files:
        for name, arr in read_safetensors(folder / f).items():
            if arch == "gemma3" and name.endswith(".post_attention_layernorm.weight"):
                g = f"blk.{int(name.split('.')[2])}.post_attention_norm.weight"  # Gemma: on the attention output
            else:
                g = hf_to_gguf_name(name)
            if g is not None:
                tensors[g] = arr
    gemma = arch == "gemma3"
    if gemma:  # Gemma3RMSNorm scales by (1 + weight)
        for name in [n for n in tensors if n.endswith("norm.weight")]:
            tensors[name] = 1.0 + tensors[name].astype(DTYPE)

    # LlamaConfig, MistralConfig and Qwen2Config default tie_word_embeddings to False, Gemma3 to True.
    tied = bool(cfg.get("tie_word_embeddings", gemma))
    if tied:
        tensors.pop("output.weight", None)  # HF ties: lm_head is the embedding matrix
    elif "output.weight" not in tensors:
        raise ValueError("tie_word_embeddings is false but lm_head.weight is missing")

    n_heads = int(cfg["num_attention_heads"])
    d_model = int(cfg["hidden_size"])
    n_kv = int(cfg.get("num_key_value_heads") or n_heads)
    hd = int(cfg.get("head_dim") or d_model // n_heads)
    split_fused(tensors, n_heads * hd, n_kv * hd, int(cfg["intermediate_size"]))
    window = None
    if arch in ("mistral", "phi3", "gemma3"):
        window = cfg.get("sliding_window")
    elif arch in ("qwen2", "qwen3") and cfg.get("use_sliding_window", False):
        window = cfg.get("sliding_window")
    config = Config(
        n_layers=int(cfg["num_hidden_layers"]),
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=int(cfg.get("num_key_value_heads") or n_heads),
        head_dim=int(cfg.get("head_dim") or d_model // n_heads),
        ffn_dim=int(cfg["intermediate_size"]),
        vocab_size=int(cfg["vocab_size"]),
        rope_theta=float(cfg.get("rope_theta", 10000.0)),
        norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_layout="neox",
        rope_scaling=_hf_rope_scaling(cfg),
        tied_embeddings=tied,
        attn_qkv_bias="blk.0.attn_q.bias" in tensors,
        sliding_window=window,
        architecture=arch,
        embedding_scale=math.sqrt(d_model) if gemma else None,
        attention_scale=float(cfg["query_pre_attn_scalar"]) ** -0.5 if gemma and "query_pre_attn_scalar" in cfg else None,
        sliding_window_pattern=int(cfg.get("sliding_window_pattern", 6)) if gemma else None,
        rope_theta_local=float(cfg.get("rope_local_base_freq", 10000.0)) if gemma else None,
    )
    return Model(config, tensors)


# --------------------------------------------------------------------------------------------
# Forward pass
# --------------------------------------------------------------------------------------------


def permute_for_interleaved(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py's LlamaModel.permute: HF's rotate-half row order of q/k
    (pairs i, i + d/2) to GGUF Llama's interleaved order (pairs 2i, 2i + 1)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def in_layout(model: "Model", layout: str) -> "Model":
    """The same model with its q/k rows (and biases) in `layout`: what autark stores for an HF
    Llama/Mistral folder, whose rows it reorders into GGUF's interleaved layout at import."""
    if layout == model.config.rope_layout:
        return model
    assert (model.config.rope_layout, layout) == ("neox", "interleaved"), (model.config.rope_layout, layout)
    cfg = copy.copy(model.config)
    cfg.rope_layout = layout
    t = dict(model.tensors)
    for name, v in model.tensors.items():
        for part, heads in (("attn_q.", cfg.n_heads), ("attn_k.", cfg.n_kv_heads)):
            if name.startswith("blk.") and part in name:
                t[name] = permute_for_interleaved(v, heads)
    return Model(cfg, t)


def rope_inv_freq(cfg: Config) -> np.ndarray:
    """theta^(-2i/d) for i < d/2, with HF's rope scaling variants applied."""
    d = cfg.head_dim
    inv_freq = 1.0 / cfg.rope_theta ** (np.arange(0, d, 2, dtype=DTYPE) / d)
    rs = cfg.rope_scaling
    if rs is None:
        return inv_freq
    if rs["type"] == "linear":
        # HF "linear": position / factor, i.e. every frequency divided by factor.
        return inv_freq / rs["factor"]
    if rs["type"] == "llama3":
        # HF _compute_llama3_parameters.
        factor = rs["factor"]
        low, high = rs["low_freq_factor"], rs["high_freq_factor"]
        old_ctx = rs["original_context_length"]
        low_freq_wavelen = old_ctx / low
        high_freq_wavelen = old_ctx / high
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
        return np.where(is_medium, smoothed, scaled)
    raise ValueError(f"unknown rope scaling {rs}")


def apply_rope(x: np.ndarray, positions: np.ndarray, cfg: Config) -> np.ndarray:
    """x: [T, n, head_dim]. Rotates each pair by angle position * inv_freq[i]."""
    inv_freq = rope_inv_freq(cfg)
    ang = positions[:, None].astype(DTYPE) * inv_freq[None, :]  # [T, d/2]
    cos = np.cos(ang)[:, None, :]
    sin = np.sin(ang)[:, None, :]
    half = cfg.head_dim // 2
    if cfg.rope_layout == "neox":
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
    if cfg.rope_layout == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = b * cos + a * sin
        return out
    raise ValueError(f"unknown rope layout {cfg.rope_layout}")


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = x @ w.T  # torch.nn.Linear: weight is [out, in]
    return y if b is None else y + b


def attention(x: np.ndarray, model: Model, layer: int, positions: np.ndarray) -> np.ndarray:
    cfg, T = model.config, x.shape[0]
    p = f"blk.{layer}."
    bias = (lambda n: model.tensors.get(p + n)) if cfg.attn_qkv_bias else (lambda n: None)
    q = linear(x, model.w(p + "attn_q.weight"), bias("attn_q.bias")).reshape(T, cfg.n_heads, cfg.head_dim)
    k = linear(x, model.w(p + "attn_k.weight"), bias("attn_k.bias")).reshape(T, cfg.n_kv_heads, cfg.head_dim)
    v = linear(x, model.w(p + "attn_v.weight"), bias("attn_v.bias")).reshape(T, cfg.n_kv_heads, cfg.head_dim)
    if p + "attn_q_norm.weight" in model.tensors:  # Qwen3, Gemma 3: RMSNorm over each head, before RoPE
        q = rms_norm(q, model.w(p + "attn_q_norm.weight"), cfg.norm_eps)
        k = rms_norm(k, model.w(p + "attn_k_norm.weight"), cfg.norm_eps)
    pattern = cfg.sliding_window_pattern
    sliding = bool(cfg.sliding_window) and (pattern is None or (layer + 1) % pattern != 0)
    rope_cfg = cfg
    if sliding and cfg.rope_theta_local is not None:  # Gemma 3's local rotary embedding
        rope_cfg = dataclasses.replace(cfg, rope_theta=cfg.rope_theta_local, rope_scaling=None)
    q = apply_rope(q, positions, rope_cfg)
    k = apply_rope(k, positions, rope_cfg)

    # Causal mask (optionally a sliding window: key j visible from query i iff i - window < j <= i).
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    visible = j <= i
    if sliding:
        visible &= (i - j) < cfg.sliding_window

    group = cfg.n_heads // cfg.n_kv_heads  # HF repeat_kv: q head h uses kv head h // group
    out = np.empty((T, cfg.n_heads, cfg.head_dim), dtype=DTYPE)
    scale = cfg.attention_scale or 1.0 / math.sqrt(cfg.head_dim)
    for h in range(cfg.n_heads):
        kh = h // group
        scores = (q[:, h, :] @ k[:, kh, :].T) * scale
        scores = np.where(visible, scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out[:, h, :] = probs @ v[:, kh, :]
    return linear(out.reshape(T, cfg.n_heads * cfg.head_dim), model.w(p + "attn_output.weight"))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """torch.nn.functional.gelu(x, approximate="tanh") (Gemma's gelu_pytorch_tanh)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def feed_forward(x: np.ndarray, model: Model, layer: int) -> np.ndarray:
    p = f"blk.{layer}."
    gate = linear(x, model.w(p + "ffn_gate.weight"))
    up = linear(x, model.w(p + "ffn_up.weight"))
    act = gelu_tanh if model.config.architecture == "gemma3" else silu
    return linear(act(gate) * up, model.w(p + "ffn_down.weight"))


def forward(model: Model, tokens: list[int]) -> np.ndarray:
    """Logits [T, vocab] (float64) for every position of one causal prefill starting at position 0."""
    cfg = model.config
    tokens = np.asarray(tokens, dtype=np.int64)
    positions = np.arange(len(tokens))
    x = model.w("token_embd.weight")[tokens].astype(DTYPE)
    if cfg.embedding_scale:
        x = x * cfg.embedding_scale
    for layer in range(cfg.n_layers):
        p = f"blk.{layer}."
        h = attention(rms_norm(x, model.w(p + "attn_norm.weight"), cfg.norm_eps), model, layer, positions)
        if p + "post_attention_norm.weight" in model.tensors:  # Gemma 3
            h = rms_norm(h, model.w(p + "post_attention_norm.weight"), cfg.norm_eps)
        x = x + h
        h = feed_forward(rms_norm(x, model.w(p + "ffn_norm.weight"), cfg.norm_eps), model, layer)
        if p + "post_ffw_norm.weight" in model.tensors:
            h = rms_norm(h, model.w(p + "post_ffw_norm.weight"), cfg.norm_eps)
        x = x + h
    x = rms_norm(x, model.w("output_norm.weight"), cfg.norm_eps)
    return linear(x, model.lm_head())


def greedy(model: Model, tokens: list[int], n: int, eos: set[int] = frozenset()) -> list[int]:
    """Greedy decoding by full recomputation (no KV cache: slow but obviously correct)."""
    tokens = list(tokens)
    out = []
    for _ in range(n):
        nxt = int(np.argmax(forward(model, tokens)[-1]))
        out.append(nxt)
        tokens.append(nxt)
        if nxt in eos:
            break
    return out


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="greedy generation with the NumPy reference")
    ap.add_argument("gguf")
    ap.add_argument("tokens", help="comma-separated token ids")
    ap.add_argument("-n", type=int, default=16)
    args = ap.parse_args(argv)
    model = load_gguf(args.gguf)
    prompt = [int(t) for t in args.tokens.split(",") if t.strip()]
    ids = greedy(model, prompt, args.n)
    print(json.dumps(ids))
    try:  # decode with the tokenizer rebuilt from the GGUF when the helper is importable
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
        import gguf_tokenizer

        tok = gguf_tokenizer.tokenizer_from_gguf(args.gguf)
        print(repr(tok.decode(prompt, skip_special_tokens=False)), "->", repr(tok.decode(ids, skip_special_tokens=False)))
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
