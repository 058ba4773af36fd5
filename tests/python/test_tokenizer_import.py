"""GGUF tokenizers through `autark quantize`: a Gemma-style SentencePiece vocabulary (runs of spaces,
tabs and newlines as user-defined tokens, > 65 536 tokens) imports and runs; a tokenizer that
cannot be converted or does not load is refused with nothing written (an existing output file
survives); `autark verify` checks the tokenizer as the quantizer did; chat on a model without a
chat template names the fix, `--chat-template FILE`.

Token-for-token agreement with llama.cpp is test_tokenizer_agreement.py's job.
"""

from __future__ import annotations

import json

import pytest

import autark_file
import make_gguf as mg

TINY = mg.ModelSpec(n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, ffn=32, tied=True)
RUNS = [" " * n for n in range(2, 32)] + ["\t" * n for n in range(1, 9)] + ["\n" * n for n in range(1, 9)]


def gemma_like_vocab(filler: int = 70_000) -> mg.Vocab:
    """mg.spm_synthetic() with unused tokens pushing the pieces past id `filler`, Gemma's turn
    markers, and whitespace runs stored as llama.cpp's converter stores Gemma's: real spaces,
    tabs and newlines, type user-defined, score -1000; no space prefix (Gemma's setting)."""
    v = mg.spm_synthetic()
    tokens = v.tokens[:3] + [f"<unused{i}>" for i in range(filler)] + v.tokens[3:]
    types = v.types[:3] + [mg.UNUSED] * filler + v.types[3:]
    scores = v.scores[:3] + [0.0] * filler + v.scores[3:]
    for t, ty, s in [("<start_of_turn>", mg.CONTROL, 0.0), ("<end_of_turn>", mg.CONTROL, 0.0)] + \
            [(r, mg.USER_DEFINED, -1000.0) for r in RUNS]:
        tokens.append(t)
        types.append(ty)
        scores.append(s)
    return mg.Vocab("llama", tokens, types, scores=scores, bos=1, eos=2, unk=0, add_bos=True, add_space_prefix=False)


@pytest.fixture(scope="module")
def gemma_like(autark, tmp_path_factory):
    d = tmp_path_factory.mktemp("gemma-like")
    src = d / "g.gguf"
    vocab = gemma_like_vocab()
    mg.write_model(src, TINY, vocab, {"token_embd.weight": mg.Q.Q8_0})
    return src, autark.quantize(src, d / "g.autark", "q8_0"), vocab


def test_gemma_like_vocabulary_imports_and_runs(autark, gemma_like):
    src, out, vocab = gemma_like
    meta, _ = autark_file.read(out)
    hf = json.loads(meta["tokenizer"]["hf_json"])
    merges = hf["model"]["merges"]
    assert merges and all(isinstance(m, list) and len(m) == 2 for m in merges), "merges are pairs"
    assert meta["config"]["vocab_size"] == len(vocab) > 65_536

    ids = autark.tokenize(out, "the  the\t\tthe\n\n\nend")
    pieces = [vocab.tokens[i] for i in ids]
    assert pieces[0] == "<s>"
    for run in ["  ", "\t\t", "\n\n\n"]:
        assert run in pieces, pieces  # the user-defined runs, whole
    assert all(i > 70_000 for i in ids[1:]), ids  # ids past u16

    r = autark.ok("verify", out)
    assert "all checksums match" in r.stdout.decode() and "tokenizer:" in r.stdout.decode()
    r = autark.ok("run", out, "-p", "the  the", "-n", "3", "--temp", "0")
    assert "generation: 3 tokens" in r.stderr.decode(), r.stderr.decode()


def _refused(autark, src, tmp_path, expect: str):
    out = tmp_path / "out.autark"
    out.write_bytes(b"the previous model")
    before = sorted(p.name for p in tmp_path.iterdir())
    r = autark.run("quantize", src, "-o", out, "--type", "q8_0")
    err = r.stderr.decode("utf-8", errors="replace")
    assert r.returncode == 1, err
    assert "panicked" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("autark: error:") and expect in lines[0], err
    assert out.read_bytes() == b"the previous model", "the existing output file must survive"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "files left behind"


REFUSALS = {
    # (how the vocabulary is broken, what the error names)
    "unsupported tokenizer model": (lambda v: setattr(v, "model", "t5"), 'tokenizer model "t5"'),
    "unknown pre-tokenizer": (lambda v: setattr(v, "pre", "no-such-pre"), "no-such-pre"),
    "pre-tokenizer llama.cpp splits in code": (lambda v: setattr(v, "pre", "kimi-k2"), "kimi-k2"),
    "merge of a token the vocabulary lacks": (lambda v: v.merges.append("Ġt zz"), "cannot run"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_quantizer_refuses_unusable_tokenizer(autark, tmp_path, case):
    vocab = mg.gpt2_synthetic(pre="qwen2")
    vocab.merges = list(vocab.merges)
    breaker, expect = REFUSALS[case]
    breaker(vocab)
    d = tmp_path / "in"
    d.mkdir()
    src = d / "bad.gguf"
    mg.write_model(src, TINY, vocab)
    work = tmp_path / "work"
    work.mkdir()
    _refused(autark, src, work, expect)


def test_quantizer_refuses_broken_chat_template(autark, tmp_path):
    vocab = mg.gpt2_synthetic(pre="qwen2")
    vocab.chat_template = "{% for m in messages %}{{ m.content | no_such_filter }}{% endfor %}"
    src = tmp_path / "bad-template.gguf"
    mg.write_model(src, TINY, vocab)
    work = tmp_path / "work"
    work.mkdir()
    _refused(autark, src, work, "chat template")


def test_verify_checks_the_tokenizer(autark, gemma_like, tmp_path):
    """A file carrying the tokenizer.json of issue 22 (merges as space-joined strings, which break
    on tokens holding spaces): checksums match, but `verify` fails on the tokenizer, as `run`
    would."""
    _, out, _ = gemma_like
    meta, tensors = autark_file.read(out)
    hf = json.loads(meta["tokenizer"]["hf_json"])
    hf["model"]["merges"] = [" ".join(m) for m in hf["model"]["merges"]]
    assert any(m.count(" ") > 1 for m in hf["model"]["merges"])
    meta["tokenizer"]["hf_json"] = json.dumps(hf, ensure_ascii=False)
    entries = [{"name": n, "dtype": t["dtype"], "shape": t["shape"], "raw": t["stored"], "layout": t["layout"]}
               for n, t in tensors.items()]
    bad = tmp_path / "old-converter.autark"
    bad.write_bytes(autark_file.build(meta, entries))
    r = autark.run("verify", bad)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 1 and "all checksums match" in out, out + err
    assert "tokenizer" in err and "Merges" in err, err
    r = autark.run("run", bad, "-p", "hi", "-n", "1")
    assert r.returncode == 1 and "tokenizer" in r.stderr.decode()


# ---- chat without a template --------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_template(autark, tmp_path_factory):
    d = tmp_path_factory.mktemp("no-template")
    vocab = mg.gpt2_synthetic(pre="qwen2")
    vocab.chat_template = None
    src = d / "m.gguf"
    mg.write_model(src, TINY, vocab)
    out = autark.quantize(src, d / "m.autark", "f32")
    assert autark_file.read(out)[0]["tokenizer"].get("chat_template") is None
    return out


@pytest.mark.parametrize("cmd", [["run", "-p", "hi", "--chat"], ["chat"]])
def test_chat_without_template_names_the_fix(autark, no_template, cmd):
    r = autark.run(cmd[0], no_template, *cmd[1:], input=b"hello\n")
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "no chat template" in err and "--chat-template FILE" in err, err


def test_chat_template_flag(autark, no_template, tmp_path):
    t = tmp_path / "chatml.jinja"
    t.write_text(mg.CHATML)
    r = autark.ok("run", no_template, "-p", "hi", "--chat", "--chat-template", t, "-n", "2", "--temp", "0")
    assert "generation: " in r.stderr.decode()
    r = autark.ok("chat", no_template, "--chat-template", t, "-n", "2", "--temp", "0", input=b"hello\n/exit\n")
    assert "generation: " in r.stderr.decode()
    # A template that does not render is a usage error naming the file.
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% if %}")
    r = autark.run("run", no_template, "-p", "hi", "--chat", "--chat-template", bad)
    assert r.returncode == 2 and "bad.jinja" in r.stderr.decode()
    # --chat-template without --chat is refused by the command line.
    r = autark.run("run", no_template, "-p", "hi", "--chat-template", t)
    assert r.returncode == 2
