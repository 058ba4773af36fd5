"""`autark perplexity`: perplexity and KL divergence against independent computations — the NumPy
reference forward pass on a synthetic tiny model, and llama.cpp's llama-perplexity on SmolLM2."""

from __future__ import annotations

import json

import numpy as np
import pytest

import llama_ref
import make_tiny
from conftest import REPO_ROOT

N_CTX = 16
TEXT = (
    "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun. "
    "a tiny model reads this text and guesses every next byte as well as it can. "
) * 3


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def windows(autark, model, text: str, n_ctx: int, chunks: int | None = None) -> list[list[int]]:
    """llama-perplexity's windows: tokenized once with special tokens, cut into n_ctx pieces, the
    first token of each replaced by BOS when the tokenizer adds one."""
    with_special = autark.tokenize(model, text)
    without = autark.tokenize(model, text, "--no-special")
    bos = with_special[0] if len(with_special) > len(without) and with_special[0] == make_tiny.BOS else None
    n = len(with_special) // n_ctx
    if chunks:
        n = min(n, chunks)
    out = []
    for i in range(n):
        w = with_special[i * n_ctx:(i + 1) * n_ctx]
        if bos is not None:
            w[0] = bos
        out.append(w)
    return out


def scored_logprobs(logits: np.ndarray, window: list[int]):
    """Log-probabilities at the scored positions n_ctx/2 ..= n_ctx-2 and the tokens they predict."""
    first = len(window) // 2
    lp = log_softmax(logits[first:len(window) - 1].astype(np.float64))
    return lp, np.array(window[first + 1:])


@pytest.fixture(scope="module")
def tiny(autark, tmp_path_factory):
    d = tmp_path_factory.mktemp("ppl")
    folder = make_tiny.make("llama_tied", d / "hf", "f32")
    text = d / "text.txt"
    text.write_text(TEXT)
    return {
        "dir": d,
        "text": text,
        "f32": autark.quantize(folder, d / "tiny-f32.autark", "f32"),
        "q4_0": autark.quantize(folder, d / "tiny-q4_0.autark", "q4_0"),
        "ref": llama_ref.load_hf(folder),
    }


def perplexity(autark, model, text, *extra) -> dict:
    r = autark.ok("perplexity", model, "-f", text, "-c", N_CTX, "--json", *extra)
    return json.loads(r.stdout)


def test_perplexity_matches_the_numpy_reference(autark, tiny):
    wins = windows(autark, tiny["f32"], TEXT, N_CTX)
    assert len(wins) >= 5
    nll = []
    for w in wins:
        lp, targets = scored_logprobs(llama_ref.forward(tiny["ref"], w), w)
        nll.extend(-lp[np.arange(len(targets)), targets])
    nll = np.array(nll)
    ppl = np.exp(nll.mean())
    stderr = np.sqrt(nll.var() / (len(nll) - 1)) * ppl  # llama-perplexity's estimate

    got = perplexity(autark, tiny["f32"], tiny["text"])
    assert got["n_tokens"] == len(nll) == len(wins) * (N_CTX - 1 - N_CTX // 2)
    assert got["n_chunks"] == len(wins)
    assert got["ppl"] == pytest.approx(ppl, rel=1e-4)
    assert got["ppl_stderr"] == pytest.approx(stderr, rel=1e-3)

    two = perplexity(autark, tiny["f32"], tiny["text"], "--chunks", 2)
    assert two["n_chunks"] == 2 and two["n_tokens"] == 2 * (N_CTX - 1 - N_CTX // 2)


def test_kl_divergence_against_saved_log_probabilities(autark, tiny, tmp_path):
    base = tmp_path / "f32.lp"
    perplexity(autark, tiny["f32"], tiny["text"], "--save-logits", base)
    assert base.is_file()

    # Against itself: zero up to the f16 storage of the saved log-probabilities.
    same = perplexity(autark, tiny["f32"], tiny["text"], "--kl-base", base)
    assert same["kld_mean"] < 1e-4 and same["top1_agreement"] == 1.0

    # q4_0 against f32: KL(p_f32 || p_q4_0) from the reference logits of the f32 weights and the
    # runtime's own q4_0 logits (`autark logits`, checked against the reference elsewhere).
    got = perplexity(autark, tiny["q4_0"], tiny["text"], "--kl-base", base)
    kld, top1 = [], []
    for w in windows(autark, tiny["f32"], TEXT, N_CTX):
        p, _ = scored_logprobs(llama_ref.forward(tiny["ref"], w), w)
        q, _ = scored_logprobs(autark.logits(tiny["q4_0"], w, tmp_path / "l.f32").astype(np.float64), w)
        kld.extend((np.exp(p) * (p - q)).sum(-1))
        top1.extend(p.argmax(-1) == q.argmax(-1))
    kld = np.array(kld)
    assert kld.mean() > 1e-3, "q4_0 should differ measurably from f32"
    assert got["kld_mean"] == pytest.approx(kld.mean(), rel=0.02, abs=1e-4)
    assert got["kld_median"] == pytest.approx(np.sort(kld)[int(np.ceil(0.5 * len(kld))) - 1], rel=0.05, abs=1e-4)
    assert got["kld_max"] == pytest.approx(kld.max(), rel=0.02, abs=1e-4)
    assert got["top1_agreement"] == pytest.approx(np.mean(top1), abs=1.5 / len(kld))


def test_bad_inputs_are_clear_errors(autark, tiny, tmp_path):
    base = tmp_path / "f32.lp"
    perplexity(autark, tiny["f32"], tiny["text"], "--save-logits", base, "--chunks", 4)
    data = base.read_bytes()

    def fails(rc, needle, *args):
        r = autark.run("perplexity", tiny["f32"], *args)
        err = r.stderr.decode(errors="replace")
        assert r.returncode == rc and needle in err and "panicked" not in err, f"{args}: rc {r.returncode}\n{err}"

    # another window length than the one recorded
    fails(2, "n_ctx 16", "-f", tiny["text"], "-c", 8, "--chunks", 4, "--kl-base", base)
    # truncated, foreign, another text
    (tmp_path / "cut.lp").write_bytes(data[: len(data) // 2])
    fails(2, "truncated", "-f", tiny["text"], "-c", N_CTX, "--chunks", 4, "--kl-base", tmp_path / "cut.lp")
    (tmp_path / "foreign.lp").write_bytes(b"GGUF" + data[4:])
    fails(2, "wrong magic", "-f", tiny["text"], "-c", N_CTX, "--chunks", 4, "--kl-base", tmp_path / "foreign.lp")
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    fails(2, "different tokens", "-f", other, "-c", N_CTX, "--chunks", 4, "--kl-base", base)
    # a text shorter than one window; a text that is not UTF-8; a missing file
    short = tmp_path / "short.txt"
    short.write_text("the fox")
    fails(1, "fewer than one window", "-f", short, "-c", N_CTX)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc \xff\xfe def" * 20)
    fails(2, "not UTF-8", "-f", bad, "-c", N_CTX)
    fails(1, "No such file", "-f", tmp_path / "missing.txt")
    # nothing is left behind by a run that fails before its log-probabilities are complete
    out = tmp_path / "new.lp"
    r = autark.run("perplexity", tiny["f32"], "-f", short, "-c", N_CTX, "--save-logits", out)
    assert r.returncode == 1 and not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


# llama.cpp's llama-perplexity (current, VARIANT=avx512 build of ../shared/bench/build-llama-bench.sh)
# on the same GGUF and text, -c 512 --chunks 8 -t 1:
#   llama-perplexity -m models/SmolLM2-135M-Instruct.Q4_1.gguf -f TEXT -c 512 --chunks 8 -t 1
# data/eval/en.txt (this repository's English evaluation text) and the GPL-3 text every Debian
# system carries.
LLAMA_PPL = {
    "data/eval/en.txt": (21.8976, 1.29351),
    "/usr/share/common-licenses/GPL-3": (18.4942, 1.12753),
}


@pytest.mark.parametrize("text", sorted(LLAMA_PPL))
def test_smollm2_agrees_with_llama_perplexity(autark, smollm2_q4_1, text):
    path = text if text.startswith("/") else REPO_ROOT / text
    r = autark.ok("perplexity", smollm2_q4_1, "-f", path, "-c", 512, "--chunks", 8, "--json", timeout=600)
    got = json.loads(r.stdout)
    ppl, stderr = LLAMA_PPL[text]
    assert got["n_tokens"] == 8 * 255
    assert abs(got["ppl"] - ppl) < stderr, f"autark {got['ppl']:.4f} vs llama-perplexity {ppl:.4f} ± {stderr:.4f}"
    # closer than that in fact: both compute the same model; only activation rounding differs
    assert abs(got["ppl"] - ppl) < 0.01 * ppl
    assert got["ppl_stderr"] == pytest.approx(stderr, rel=0.05)
