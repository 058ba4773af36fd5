"""Token ids of `autark tokenize` against llama.cpp's own tokenizer (libllama's `llama_tokenize`, called
as its `llama-tokenize` tool calls it by tests/peer/llama_tokenize_ids.cpp, built by
scripts/llama-tokenize.sh) on the same GGUF: the multilingual text of data/eval/ (six languages),
whitespace runs, emoji, code and chat markup, with special tokens (BOS where the model adds one).

Models: SmolLM2 (gpt2 / byte-level BPE, pre-tokenizer `smollm`); SentencePiece (`llama`)
vocabularies trained on data/eval/ and exported as llama.cpp's converter exports Gemma's (control
tokens, user-defined runs of spaces, tabs and newlines, byte fallback, more than 65 536 tokens);
and a byte-level BPE vocabulary trained on data/eval/ under each distinct pre-tokenizer llama.cpp
names (one name per distinct list of regexes in quantize/src/pretok.rs). If llama-tokenize cannot be built the tests SKIP with the reason (printed on the terminal
too); they never pass without comparing.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

import make_gguf as mg
from conftest import REPO_ROOT

EVAL = REPO_ROOT / "data" / "eval"
LANGS = ["en", "fr", "de", "es", "it", "pl"]

EXTRA_TEXTS = {
    "whitespace": "a  b   c    d     e\t\tf\t\t\tg \t h\n\ni\n\n\nj   \n  k" + " " * 40 + "l\t" * 5 + "\n" * 7 + "end  ",
    "leading": "   three leading spaces and trailing ones   ",
    "emoji": "emoji 🙂 and 🦀 crab 👍🏽 🇪🇺 👨‍👩‍👧‍👦 ∑∫√ ①Ⅻ ＡＢＣ ﬁ € ½",
    "cjk": "日本語のテキスト、中文文本。한국어 텍스트. Ελληνικά και русский текст.",
    "code": ("def f(x):\n    if x > 10:\n\treturn [i ** 2 for i in range(x)]  # squares\n"
             "    return {'a': 1, \"b\": 2}\n\nfn main() { let v: Vec<u32> = vec![1, 2, 3]; }\n"
             "int main(void){return 0x7fff&~1;} // 1234567890 3.14159 2024-11-25\n"),
    "contractions": "I'm sure you'll see it's theirs, we'd've known. DON'T SHOUT, they'RE here.",
    "numbers": "1 12 123 1234 12345 123456 1234567 3.5% $1,000,000.00 +49 (0)30 12345-678",
    "nbsp": "non\u00a0breaking\u2009thin\u3000ideographic\u200bzero width",
}


def eval_texts() -> dict[str, str]:
    texts = {lang: (EVAL / f"{lang}.txt").read_text("utf-8") for lang in LANGS}
    texts.update(EXTRA_TEXTS)
    return texts


# ---- the peer ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def llama_tokenize(request) -> Path:
    timeout = int(os.environ.get("LLAMA_TOKENIZE_TIMEOUT", "1200"))
    try:
        r = subprocess.run([str(REPO_ROOT / "scripts" / "llama-tokenize.sh")], capture_output=True, text=True,
                           timeout=timeout + 60, env={**os.environ, "LLAMA_TOKENIZE_TIMEOUT": str(timeout)})
        reason = r.stderr.strip().splitlines()[-1] if r.returncode else None
    except subprocess.TimeoutExpired:
        r, reason = None, f"building it took over {timeout + 60} s"
    path = Path(r.stdout.strip().splitlines()[-1]) if r is not None and r.returncode == 0 else None
    if path is None or not path.is_file():
        msg = f"SKIP llama-tokenize: {reason or 'the build printed no binary'} (scripts/llama-tokenize.sh)"
        reporter = request.config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(msg, yellow=True)
        pytest.skip(msg)
    return path


def peer_ids(peer: Path, gguf: Path, text: str) -> list[int]:
    # As `llama-tokenize -m GGUF --stdin --no-escape --ids` (tests/peer/llama_tokenize_ids.cpp).
    r = subprocess.run([str(peer), str(gguf)], input=text.encode(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def compare(autark, peer, gguf: Path, model: Path, texts: dict[str, str], what: str):
    """Both tokenizers on every text; a summary line, and every mismatch with its context."""
    n_tokens, bad = 0, []
    for name, text in texts.items():
        ours = autark.tokenize(model, text)
        theirs = peer_ids(peer, gguf, text)
        n_tokens += len(theirs)
        if ours != theirs:
            i = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            bad.append(f"{name}: {len(ours)} vs {len(theirs)} tokens, first difference at {i}: "
                       f"autark {ours[max(0, i - 3):i + 5]} llama.cpp {theirs[max(0, i - 3):i + 5]}")
    print(f"{what}: {len(texts)} texts, {n_tokens} tokens, {len(bad)} mismatching texts")
    assert not bad, f"{what}: token ids differ from llama-tokenize\n" + "\n".join(bad)
    return n_tokens


# ---- SmolLM2 (gpt2, pre smollm) ----------------------------------------------------------------


def test_smollm2_agrees_with_llama_cpp(autark, llama_tokenize, smollm2_gguf, smollm2_q4_1):
    texts = eval_texts()
    texts["chat"] = "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n"
    assert compare(autark, llama_tokenize, smollm2_gguf, smollm2_q4_1, texts, "SmolLM2") > 100_000


# ---- SentencePiece (llama) vocabularies, Gemma-style -------------------------------------------

WHITESPACE_RUNS = [" " * n for n in range(2, 32)] + ["\t" * n for n in range(1, 9)] + ["\n" * n for n in range(1, 9)]


def train_spm(add_dummy_prefix: bool):
    """A SentencePiece BPE model over data/eval/ trained like Gemma's (identity normalization,
    whitespace kept, digits split, byte fallback)."""
    import io

    import sentencepiece as spm

    rng = random.Random(0)
    lines = [p for lang in LANGS for p in (EVAL / f"{lang}.txt").read_text("utf-8").split("\n") if p.strip()]
    rng.shuffle(lines)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines[:600]), model_writer=model, model_type="bpe", vocab_size=3000,
        byte_fallback=True, character_coverage=0.9995, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        add_dummy_prefix=add_dummy_prefix, minloglevel=2, num_threads=1)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def gemma_style_vocab(sp, add_space_prefix: bool, filler: int) -> mg.Vocab:
    """`sp` exported as llama.cpp's converter exports Gemma's vocabulary: after the pieces,
    <start_of_turn> / <end_of_turn> control tokens and user-defined whitespace runs stored with
    real spaces, tabs and newlines (score -1000); `filler` unused tokens in front of the pieces
    push every piece's id past it."""
    v = mg.spm_from_processor(sp, add_bos=True)
    n_head = 3  # <unk> <s> </s>
    tokens = v.tokens[:n_head] + [f"<unused{i}>" for i in range(filler)] + v.tokens[n_head:]
    types = v.types[:n_head] + [mg.UNUSED] * filler + v.types[n_head:]
    scores = v.scores[:n_head] + [0.0] * filler + v.scores[n_head:]
    extra = [(t, mg.CONTROL, 0.0) for t in ["<start_of_turn>", "<end_of_turn>"]]
    extra += [(t, mg.USER_DEFINED, -1000.0) for t in WHITESPACE_RUNS if t not in tokens]
    for t, ty, score in extra:
        tokens.append(t)
        types.append(ty)
        scores.append(score)
    return mg.Vocab("llama", tokens, types, scores=scores, bos=1, eos=2, unk=0, add_bos=True,
                    add_space_prefix=add_space_prefix)


@pytest.fixture(scope="module", params=[(False, 70_000), (True, 0)], ids=["gemma-like-70k", "llama-like"])
def spm_gguf(request, autark, tmp_path_factory):
    add_space, filler = request.param
    vocab = gemma_style_vocab(train_spm(add_space), add_space, filler)
    d = tmp_path_factory.mktemp("spm-agree")
    src = d / "spm.gguf"
    spec = mg.ModelSpec(n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, ffn=32, tied=True)
    mg.write_model(src, spec, vocab, {"token_embd.weight": mg.Q.Q8_0})
    return src, autark.quantize(src, d / "spm.autark", "q8_0"), vocab


def test_spm_fixture(spm_gguf):
    _, model, vocab = spm_gguf
    assert len(vocab) > (65_536 if vocab.add_space_prefix is False else 3000)
    assert sum(t == mg.USER_DEFINED for t in vocab.types) >= 40
    assert sum(t == mg.BYTE for t in vocab.types) == 256


def test_spm_agrees_with_llama_cpp(autark, llama_tokenize, spm_gguf):
    src, model, vocab = spm_gguf
    texts = eval_texts()
    texts["chat"] = "<start_of_turn>user\nHello  world\t\tok<end_of_turn>\n<start_of_turn>model\n"
    what = f"SentencePiece, {len(vocab)} tokens, add_space_prefix {vocab.add_space_prefix}"
    compare(autark, llama_tokenize, src, model, texts, what)
    if len(vocab) > 65_536:
        ids = autark.tokenize(model, texts["en"])
        assert max(ids) > 65_536 and sum(i > 65_536 for i in ids) > len(ids) // 2  # ids past u16 in use


# ---- byte-level BPE (gpt2) under each pre-tokenizer ----------------------------------------------

def pre_tokenizer_names() -> list[str]:
    """One `tokenizer.ggml.pre` name per distinct (regexes, ignore_merges, add_bos) of
    quantize/src/pretok.rs's table (the other names share one of these)."""
    import re

    src = re.sub(r"\s+", " ", (REPO_ROOT / "quantize" / "src" / "pretok.rs").read_text("utf-8"))
    table = src[src.index("pub(crate) const PRE_TOKENIZERS"):]
    seen, names = set(), []
    for names_src, *key in re.findall(
            r"PreTokenizer \{ names: &\[(.*?)\], splits: (\w+), ignore_merges: (\w+), add_bos: (\w+),? \}", table):
        if tuple(key) not in seen:
            seen.add(tuple(key))
            names.append(re.findall(r'r"([^"]*)"', names_src)[0])
    assert len(names) >= 25, names
    return names


PRE_NAMES = pre_tokenizer_names()


@pytest.fixture(scope="module")
def bpe_vocab():
    """A byte-level BPE vocabulary (1500 tokens) trained on data/eval/ with the `tokenizers`
    library, as (tokens, merges)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=1500, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(EVAL / f"{lang}.txt") for lang in LANGS], trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    return tokens, merges


def short_texts() -> dict[str, str]:
    texts = {lang: "\n\n".join((EVAL / f"{lang}.txt").read_text("utf-8").split("\n\n")[:6]) for lang in LANGS}
    texts.update(EXTRA_TEXTS)
    return texts


@pytest.mark.parametrize("pre", PRE_NAMES)
def test_bpe_pre_tokenizer_agrees_with_llama_cpp(autark, llama_tokenize, bpe_vocab, tmp_path, pre):
    tokens, merges = bpe_vocab
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = mg.Vocab("gpt2", tokens + specials, [mg.NORMAL] * len(tokens) + [mg.CONTROL] * 3, merges=merges,
                     pre=pre, bos=len(tokens), eos=len(tokens) + 2)  # no add_bos key: llama.cpp's default
    src = tmp_path / "bpe.gguf"
    mg.write_model(src, mg.ModelSpec(n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, ffn=32, tied=True), vocab)
    model = autark.quantize(src, tmp_path / "bpe.autark", "f32")
    texts = short_texts()
    texts["chat"] = "<|im_start|>user\nHi  there!<|im_end|>\n"
    compare(autark, llama_tokenize, src, model, texts, f"byte-level BPE, pre {pre}")
