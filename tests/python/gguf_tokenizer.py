"""Build a Hugging Face tokenizer.json from a GGUF's tokenizer (gpt2-style byte-level BPE).

Used only by the Python tests, as a cross-check of the Rust GGUF tokenizer converter that is
independent of it. Only what SmolLM2 needs: tokenizer.ggml.model == "gpt2", pre "smollm".
"""

from __future__ import annotations

import json

# GGUF pre-tokenizer name -> HF pre_tokenizer. (Other pre names need their own regexes.)
_PRE_TOKENIZERS = {
    "smollm": {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    },
}

TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4


def tokenizer_json_from_gguf(path) -> str:
    import gguf

    reader = gguf.GGUFReader(str(path))

    def get(key, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    if get("tokenizer.ggml.model") != "gpt2":
        raise NotImplementedError(f"tokenizer model {get('tokenizer.ggml.model')!r}")
    pre = get("tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise NotImplementedError(f"pre-tokenizer {pre!r}")

    tokens = get("tokenizer.ggml.tokens")
    types = get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [m.split(" ", 1) for m in get("tokenizer.ggml.merges") or []]

    added = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": ty == TOKEN_TYPE_CONTROL,
        }
        for i, (tok, ty) in enumerate(zip(tokens, types))
        if ty in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)
    ]
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": _PRE_TOKENIZERS[pre],
        "post_processor": None,  # no BOS insertion (tokenizer.ggml.add_bos_token is false for SmolLM2)
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": merges,
        },
    }
    return json.dumps(doc, ensure_ascii=False)


def tokenizer_from_gguf(path):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_json_from_gguf(path))
