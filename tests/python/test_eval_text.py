"""data/eval/: the multilingual evaluation and calibration text (built by scripts/make-eval-text.sh).

Fast and offline: reads the committed files only.
"""

from __future__ import annotations

import re

import pytest

from conftest import REPO_ROOT

EVAL_DIR = REPO_ROOT / "data" / "eval"
LANGS = ["en", "fr", "de", "es", "it", "pl"]
FILES = [f"{lang}.txt" for lang in LANGS] + ["calibration.txt"]

# A few very frequent function words per language; each must be common in its file.
STOPWORDS = {
    "en": {"the", "and", "of", "to", "is"},
    "fr": {"le", "la", "les", "de", "et", "est"},
    "de": {"der", "die", "das", "und", "ist"},
    "es": {"el", "la", "los", "de", "y", "que"},
    "it": {"il", "la", "di", "e", "che"},
    "pl": {"się", "i", "w", "nie", "na", "jest"},
}
WORD_RE = re.compile(r"[^\W\d_]+")


def read(name: str) -> str:
    return (EVAL_DIR / name).read_bytes().decode("utf-8")  # strict: raises on invalid UTF-8


def paragraphs(name: str) -> list[str]:
    return [p.strip() for p in read(name).split("\n\n") if p.strip()]


def stopword_rates(text: str) -> dict[str, float]:
    words = [w.lower() for w in WORD_RE.findall(text)]
    return {lang: sum(w in s for w in words) / len(words) for lang, s in STOPWORDS.items()}


@pytest.mark.parametrize("name", FILES)
def test_file_exists_utf8_and_sized(name):
    path = EVAL_DIR / name
    assert path.is_file(), f"{path} missing: run scripts/make-eval-text.sh"
    text = read(name)
    assert 40_000 <= path.stat().st_size <= 120_000, path.stat().st_size
    assert "<" not in text and ">" not in text, "HTML remnants"
    assert "&amp;" not in text and "&nbsp;" not in text and "&#" not in text, "undecoded entities"
    paras = paragraphs(name)
    assert len(paras) >= 50
    assert all(len(p) >= 80 and "\n" not in p for p in paras)


def test_readme_and_licence_present():
    readme = read("README.md")
    assert "debian-handbook" in readme and "CC-BY-SA-3.0" in readme and "GPL" in readme
    assert "scripts/make-eval-text.sh" in readme
    assert "Creative Commons Attribution-ShareAlike 3.0" in read("LICENSES")


def test_calibration_disjoint_from_evaluation():
    evaluation = set()
    for lang in LANGS:
        evaluation.update(paragraphs(f"{lang}.txt"))
    calibration = paragraphs("calibration.txt")
    assert set(calibration).isdisjoint(evaluation)
    assert len(set(calibration)) == len(calibration), "repeated calibration paragraphs"


def test_evaluation_files_are_parallel():
    counts = {lang: len(paragraphs(f"{lang}.txt")) for lang in LANGS}
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("lang", LANGS)
def test_language(lang):
    rates = stopword_rates(read(f"{lang}.txt"))
    assert rates[lang] >= 0.08, rates
    assert rates[lang] == max(rates.values()), rates
    # and paragraph by paragraph: nearly all paragraphs are in the file's language
    paras = paragraphs(f"{lang}.txt")
    wrong = [p for p in paras if max((r, k) for k, r in stopword_rates(p).items())[1] != lang]
    assert len(wrong) <= len(paras) // 20, wrong[:3]


def test_calibration_mixes_all_languages():
    paras = paragraphs("calibration.txt")
    share = {lang: 0 for lang in LANGS}
    for p in paras:
        rates = stopword_rates(p)
        share[max(rates, key=rates.get)] += len(p.encode())
    total = sum(share.values())
    assert all(v >= total / len(LANGS) / 2 for v in share.values()), share
