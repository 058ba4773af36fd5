"""Speculative decoding on the real SmolLM2 model, through the CLI: prompt lookup and a draft
model (q4_0 drafting for q4_1 — other weights, the same vocabulary) give exactly the text of
plain decoding, greedy and seeded, on 1 and 2 threads; the timing line and `bench --json` report
the drafts; a draft of another vocabulary and bad options are refused."""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROMPTS = [
    # input-grounded: most of the answer is in the prompt
    "Copy this list exactly: apples, pears, plums, cherries, apricots, figs, dates, grapes.",
    "Rewrite in the past tense: The robot opens the door, walks to the table and picks up the red cup.",
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):",
    # free generation
    "Once upon a time",
    "The three most important inventions of the twentieth century are",
    "Explain why the sky is blue.",
]

TIMING = re.compile(r"(\w+) drafts: (\d+) of (\d+) accepted")


@pytest.fixture(scope="module")
def draft(autark, smollm2_gguf, tmp_path_factory) -> Path:
    # Round to nearest, no conformance record: a draft only has to be another model of the same
    # vocabulary.
    return autark.quantize(smollm2_gguf, tmp_path_factory.mktemp("spec") / "draft-q4_0.autark", "q4_0", "--rtn",
                           "--no-conformance")


def generate(autark, model, prompt, *extra):
    r = autark.ok("run", model, "-p", prompt, "--chat", "-n", "48", *extra)
    return r.stdout.decode(), r.stderr.decode()


@pytest.mark.parametrize("threads", [1, 2])
def test_speculative_text_equals_plain_text(autark, smollm2_q4_1, draft, threads):
    drafted = accepted = 0
    for i, prompt in enumerate(PROMPTS):
        for sampling in (["--temp", "0"], ["--temp", "0.8", "--seed", str(100 + i)]):
            base = [*sampling, "-t", str(threads)]
            plain, _ = generate(autark, smollm2_q4_1, prompt, *base)
            assert len(plain.strip()) > 10, (prompt, plain)
            modes = [["--speculative", "lookup", "--draft-max", "10"]]
            if sampling[1] == "0":
                # Greedy drafts of a draft model are exact too (sampled ones keep the
                # distribution, not the text: tests/speculative.rs).
                modes.append(["--draft", str(draft), "--draft-max", "6"])
            for mode in modes:
                text, err = generate(autark, smollm2_q4_1, prompt, *base, *mode)
                assert text == plain, (prompt, sampling, mode)
                m = TIMING.search(err)
                assert m, err
                accepted, drafted = accepted + int(m.group(2)), drafted + int(m.group(3))
    assert 0 < accepted < drafted, (accepted, drafted)


def test_bench_reports_drafts(autark, smollm2_q4_1):
    r = autark.ok("bench", smollm2_q4_1, "--prompt-file", REPO / "data/spec/rewrite.txt", "--chat", "-n", "32",
                  "-r", "1", "-t", "1", "--speculative", "lookup", "--json")
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    tg = [row for row in rows if row["n_gen"] > 0]
    assert len(tg) == 1 and tg[0]["speculative"] == "lookup" and tg[0]["draft_max"] == 16
    assert 0 < tg[0]["n_accepted"] <= tg[0]["n_drafted"]
    assert tg[0]["acceptance"] == pytest.approx(tg[0]["n_accepted"] / tg[0]["n_drafted"])
    assert tg[0]["outside_forward_us"] is None  # the generation loop: not split
    pp = [row for row in rows if row["n_prompt"] > 0]
    assert len(pp) == 1 and pp[0]["n_prompt"] > 300  # the passage, rendered as a chat


def test_bad_speculative_options_are_refused(autark, smollm2_q4_1, tmp_path):
    for args, msg in [
        (["--speculative", "ngram"], "unknown speculative mode"),
        (["--speculative", "draft"], "needs --draft"),
        (["--speculative", "lookup", "--draft-max", "0"], "draft_max"),
        (["--speculative", "lookup", "--draft-max", "4", "--draft-min", "5"], "draft_min"),
        (["--speculative", "lookup", "--draft", smollm2_q4_1], "--draft is for"),
        (["--draft", tmp_path / "missing.autark"], "missing.autark"),
    ]:
        r = autark.run("run", smollm2_q4_1, "-p", "Hi", "-n", "4", *args)
        assert r.returncode != 0 and msg in r.stderr.decode(), (args, r.stderr.decode())
