"""Tiny synthetic GGUF models with random weights, written with gguf-py's GGUFWriter.

    write_model(path, spec: ModelSpec, vocab: Vocab, types=None, seed=0) -> dict[name, GGUFTensorSource]

Architectures `llama` (GGUF's interleaved RoPE; the random q/k rows need no permutation) and
`qwen2` (neox RoPE, q/k/v biases, usually tied). Any linear weight can be stored as F32, F16,
BF16, Q8_0, Q4_0, Q4_1 (values quantized with gguf-py's bit-exact ports of ggml's reference
quantizers) or Q4_K, Q5_K, Q6_K. gguf-py has no K-quant quantizer, so K-quant tensors are random
block bytes with sane f16 scale fields (`d`, `dmin`: small positive values, some of them f16
subnormals); `gguf.quants.dequantize` is the oracle for their values.

Tokenizers (`Vocab`):
    spm_synthetic()          llama / SentencePiece: <unk> <s> </s>, 256 byte tokens, a few pieces
    gpt2_synthetic()         gpt2 / byte-level BPE: 256 byte tokens, merges, 3 control tokens
    spm_from_processor(sp)   llama / SentencePiece from a trained sentencepiece model, exported
                             like llama.cpp's convert_hf_to_gguf.py does it

Also `tensor_info_offsets(path)`: where each tensor-info field lies in a written file, so that
tests can corrupt single fields (type id, offset, dims).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import gguf

from make_tiny import byte_to_unicode  # GPT-2's byte -> character map, defined once

Q = gguf.GGMLQuantizationType
QK_K = 256

# SentencePiece / llama.cpp token types (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


# ----------------------------------------------------------------------------------------------
# Model description
# ----------------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    arch: str = "llama"  # llama | qwen2 | qwen3 | phi3 (fused attn_qkv, double-width ffn_up) | gemma3
    n_layers: int = 2
    d_model: int = 256
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn: int = 512
    context_length: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tied: bool = False  # no output.weight
    qkv_bias: bool = False  # blk.N.attn_{q,k,v}.bias
    embd_4d: bool = False  # store token_embd.weight with ne = [d_model, vocab, 1, 1] (tests patch ne2/ne3)
    qk_norm: bool = False  # blk.N.attn_{q,k}_norm.weight (qwen3)
    key_length: int | None = None  # head size when not d_model / n_heads (written as attention.key_length)
    sliding_window: int | None = None  # written as attention.sliding_window
    attention_scale: float | None = None  # written as attention.scale

    @property
    def head_dim(self) -> int:
        return self.key_length or self.d_model // self.n_heads


@dataclass
class Vocab:
    model: str  # "llama" | "gpt2"
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    pre: str | None = None
    bos: int | None = None
    eos: int | None = None
    unk: int | None = None
    add_bos: bool | None = None
    add_space_prefix: bool | None = None
    chat_template: str | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)


def tensor_shapes(spec: ModelSpec, vocab_size: int) -> dict[str, tuple[int, ...]]:
    """NumPy shapes ([rows, cols] = [out, in]) of every tensor, in file order."""
    q_rows, kv_rows = spec.n_heads * spec.head_dim, spec.n_kv_heads * spec.head_dim
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (vocab_size, spec.d_model)}
    for i in range(spec.n_layers):
        p = f"blk.{i}."
        shapes[p + "attn_norm.weight"] = (spec.d_model,)
        if spec.arch == "phi3":
            shapes[p + "attn_qkv.weight"] = (q_rows + 2 * kv_rows, spec.d_model)
        else:
            shapes[p + "attn_q.weight"] = (q_rows, spec.d_model)
            shapes[p + "attn_k.weight"] = (kv_rows, spec.d_model)
            shapes[p + "attn_v.weight"] = (kv_rows, spec.d_model)
        if spec.qkv_bias:
            shapes[p + "attn_q.bias"] = (q_rows,)
            shapes[p + "attn_k.bias"] = (kv_rows,)
            shapes[p + "attn_v.bias"] = (kv_rows,)
        if spec.qk_norm:
            shapes[p + "attn_q_norm.weight"] = (spec.head_dim,)
            shapes[p + "attn_k_norm.weight"] = (spec.head_dim,)
        shapes[p + "attn_output.weight"] = (spec.d_model, q_rows)
        if spec.arch == "gemma3":
            shapes[p + "post_attention_norm.weight"] = (spec.d_model,)
        shapes[p + "ffn_norm.weight"] = (spec.d_model,)
        if spec.arch == "phi3":
            shapes[p + "ffn_up.weight"] = (2 * spec.ffn, spec.d_model)
        else:
            shapes[p + "ffn_gate.weight"] = (spec.ffn, spec.d_model)
            shapes[p + "ffn_up.weight"] = (spec.ffn, spec.d_model)
        shapes[p + "ffn_down.weight"] = (spec.d_model, spec.ffn)
        if spec.arch == "gemma3":
            shapes[p + "post_ffw_norm.weight"] = (spec.d_model,)
    shapes["output_norm.weight"] = (spec.d_model,)
    if not spec.tied:
        shapes["output.weight"] = (vocab_size, spec.d_model)
    return shapes


# ----------------------------------------------------------------------------------------------
# Tensor encodings
# ----------------------------------------------------------------------------------------------


def _f16_bytes(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).view(np.uint8).reshape(-1, 2)


def random_kquant_blocks(n_blocks: int, qtype, rng: np.random.Generator) -> np.ndarray:
    """[n_blocks, type_size] uint8: random quants and scales, sane positive f16 d / dmin.

    Magnitudes are chosen so that values are ~0.1 (like a real weight matrix). Some d values
    are f16 subnormals (< 6.1e-5), which a dequantizer must widen exactly."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype == Q.Q4_K:  # d, dmin, scales[12], qs[128]; x = d*sc*q - dmin*m, q in 0..15, sc/m in 0..63
        d = rng.uniform(3e-5, 2e-4, n_blocks)
        dmin = d * rng.uniform(5.0, 9.0, n_blocks)
        b[:, 0:2] = _f16_bytes(d)
        b[:, 2:4] = _f16_bytes(dmin)
    elif qtype == Q.Q5_K:  # d, dmin, scales[12], qh[32], qs[128]; q in 0..31
        d = rng.uniform(1.5e-5, 1e-4, n_blocks)
        dmin = d * rng.uniform(10.0, 18.0, n_blocks)
        b[:, 0:2] = _f16_bytes(d)
        b[:, 2:4] = _f16_bytes(dmin)
    elif qtype == Q.Q6_K:  # ql[128], qh[64], scales[16] (i8), d; x = d*sc*(q-32)
        d = rng.uniform(1e-5, 8e-5, n_blocks)
        b[:, 208:210] = _f16_bytes(d)
    else:
        raise ValueError(f"not a K-quant: {qtype!r}")
    return b


def encode(values: np.ndarray, qtype, rng: np.random.Generator) -> np.ndarray:
    """The array to hand to GGUFWriter.add_tensor for a tensor of NumPy shape values.shape.

    F32 / F16: typed arrays (GGUFWriter infers the type). Everything else: uint8 arrays of shape
    [..., bytes per row]; for uint8 data gguf-py 0.19 takes the *byte* shape and converts it to
    the element shape itself (quant_shape_from_byte_shape), so no raw_shape is passed."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if qtype == Q.F32:
        return values
    if qtype == Q.F16:
        return values.astype(np.float16)
    if qtype in (Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):
        return gguf.quants.quantize(values, qtype)
    if qtype in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        rows, cols = values.shape
        if cols % QK_K:
            raise ValueError(f"K-quant rows need a multiple of {QK_K} columns, got {cols}")
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        blocks = random_kquant_blocks(rows * cols // block_size, qtype, rng)
        return blocks.reshape(rows, cols // block_size * type_size)
    raise ValueError(f"unsupported tensor type {qtype!r}")


# ----------------------------------------------------------------------------------------------
# Vocabularies
# ----------------------------------------------------------------------------------------------


def spm_synthetic(n_pieces: int = 48) -> Vocab:
    """<unk>, <s>, </s>, <0x00>..<0xFF>, then pieces built from a small corpus by score."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256
    scores = [0.0] * len(tokens)
    chars = list("▁etaoinshrdlucmfwygpbvk")
    pieces = chars + ["▁t", "he", "▁the", "in", "er", "▁a", "on", "re", "an", "at", "en", "▁s", "▁w",
                      "▁th", "ou", "it", "is", "or", "▁c", "nd", "▁o", "ed", "es", "ing", "▁in"]
    for i, p in enumerate(dict.fromkeys(pieces).keys()):
        if len(tokens) >= 259 + n_pieces:
            break
        tokens.append(p)
        types.append(NORMAL)
        scores.append(-float(i))
    return Vocab("llama", tokens, types, scores=scores, bos=1, eos=2, unk=0, add_bos=True)


GPT2_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
               ("o", "n"), ("Ġ", "s"), ("r", "e"), ("a", "t"), ("e", "n"), ("Ġ", "w")]
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def gpt2_synthetic(pre: str = "qwen2") -> Vocab:
    tokens = [byte_to_unicode()[b] for b in range(256)]
    for a, b in GPT2_MERGES:
        tokens.append(a + b)
    types = [NORMAL] * len(tokens)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    first = len(tokens)
    tokens += specials
    types += [CONTROL] * len(specials)
    return Vocab("gpt2", tokens, types, merges=[f"{a} {b}" for a, b in GPT2_MERGES], pre=pre,
                 bos=first, eos=first + 2, add_bos=False, chat_template=CHATML)


def spm_from_processor(sp, add_bos: bool = True) -> Vocab:
    """A trained sentencepiece model as llama.cpp's converter exports it
    (convert_hf_to_gguf.py, _create_vocab_sentencepiece): every piece with its score, typed
    unknown / control / unused / byte / normal; bos, eos, unk ids from the model."""
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            t = UNKNOWN
        elif sp.is_control(i):
            t = CONTROL
        elif sp.is_unused(i):
            t = UNUSED
        elif sp.is_byte(i):
            t = BYTE
        else:
            t = NORMAL
        types.append(t)
    return Vocab("llama", tokens, types, scores=scores, bos=sp.bos_id(), eos=sp.eos_id(), unk=sp.unk_id(),
                 add_bos=add_bos)


# ----------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------


def _add_vocab(w: gguf.GGUFWriter, v: Vocab):
    w.add_tokenizer_model(v.model)
    if v.pre is not None:
        w.add_tokenizer_pre(v.pre)
    w.add_token_list(v.tokens)
    w.add_token_types(v.types)
    if v.scores is not None:
        w.add_token_scores(v.scores)
    if v.merges:
        w.add_token_merges(v.merges)
    if v.bos is not None:
        w.add_bos_token_id(v.bos)
    if v.eos is not None:
        w.add_eos_token_id(v.eos)
    if v.unk is not None:
        w.add_unk_token_id(v.unk)
    if v.add_bos is not None:
        w.add_add_bos_token(v.add_bos)
    if v.add_space_prefix is not None:
        w.add_add_space_prefix(v.add_space_prefix)
    if v.chat_template is not None:
        w.add_chat_template(v.chat_template)


def random_values(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name.endswith("_norm.weight"):
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith(".bias"):
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    scale = 0.2 if name == "token_embd.weight" else 0.3 if name == "output.weight" else 0.1
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def add_hparams(w: gguf.GGUFWriter, spec: ModelSpec):
    """The `{arch}.*` hyper-parameter keys llama.cpp's converter writes for `spec`."""
    a = spec.arch
    w.add_block_count(spec.n_layers)
    w.add_context_length(spec.context_length)
    w.add_embedding_length(spec.d_model)
    w.add_feed_forward_length(spec.ffn)
    w.add_head_count(spec.n_heads)
    w.add_head_count_kv(spec.n_kv_heads)
    w.add_rope_freq_base(spec.rope_theta)
    w.add_layer_norm_rms_eps(spec.norm_eps)
    w.add_uint32(f"{a}.rope.dimension_count", spec.head_dim)
    if spec.sliding_window:
        w.add_uint32(f"{a}.attention.sliding_window", spec.sliding_window)
    if spec.attention_scale:
        w.add_float32(f"{a}.attention.scale", spec.attention_scale)
    if spec.key_length:
        w.add_uint32(f"{a}.attention.key_length", spec.key_length)
        w.add_uint32(f"{a}.attention.value_length", spec.key_length)


def write_model(path, spec: ModelSpec, vocab: Vocab, types: dict | None = None, seed: int = 0,
                extra_tensors: dict[str, np.ndarray] | None = None,
                values: dict[str, np.ndarray] | None = None) -> dict[str, tuple]:
    """Writes the GGUF; returns {name: (ggml type, numpy shape)} of what was written.

    types: tensor name -> GGMLQuantizationType for 2-D tensors (default F32); 1-D tensors are
    always F32 (llama.cpp's converters keep norms and biases in f32). values: tensor name ->
    the values to write instead of random ones (numpy shape)."""
    types = types or {}
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), spec.arch)
    add_hparams(w, spec)
    _add_vocab(w, vocab)

    written = {}
    for name, shape in tensor_shapes(spec, len(vocab)).items():
        qtype = types.get(name, Q.F32) if len(shape) == 2 else Q.F32
        v = random_values(name, shape, rng)
        if values and name in values:
            v = np.asarray(values[name], dtype=np.float32).reshape(shape)
        data = encode(v, qtype, rng)
        if name == "token_embd.weight" and spec.embd_4d:
            data = data.reshape(1, 1, *data.shape)
        if data.dtype == np.uint8:
            w.add_tensor(name, data, raw_dtype=qtype)
        else:
            w.add_tensor(name, data)
        written[name] = (qtype, shape)
    for name, data in (extra_tensors or {}).items():
        if data.dtype not in (np.float32, np.float16):
            raise ValueError(f"{name}: extra tensors are f32 or f16")
        w.add_tensor(name, data)
        written[name] = (Q.F32 if data.dtype == np.float32 else Q.F16, data.shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return written


# ----------------------------------------------------------------------------------------------
# Locating tensor-info fields (for corrupting them)
# ----------------------------------------------------------------------------------------------


@dataclass
class TensorInfoOffsets:
    name: str
    n_dims_at: int  # u32
    dims_at: list[int]  # u64 each, GGUF order (ne0 = contiguous first)
    type_at: int  # u32
    offset_at: int  # u64, relative to the start of the data section


def tensor_info_offsets(path) -> dict[str, TensorInfoOffsets]:
    """Byte positions of the fields of every tensor-info entry (GGUF v3 little-endian:
    u64 name length, name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset)."""
    data = Path(path).read_bytes()
    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        pos = int(t.field.offset)
        (name_len,) = struct.unpack_from("<Q", data, pos)
        name = data[pos + 8 : pos + 8 + name_len].decode()
        assert name == t.name
        pos += 8 + name_len
        (n_dims,) = struct.unpack_from("<I", data, pos)
        dims_at = [pos + 4 + 8 * i for i in range(n_dims)]
        type_at = pos + 4 + 8 * n_dims
        out[name] = TensorInfoOffsets(name, pos, dims_at, type_at, type_at + 4)
    return out


def patch(path, at: int, fmt: str, value) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(struct.pack(fmt, value))
