#!/usr/bin/env python3
"""Builds data/eval/: parallel evaluation text in six languages and a disjoint calibration mixture.

Source: the HTML of "The Debian Administrator's Handbook" as shipped in Debian's `debian-handbook`
package (one book, translated paragraph by paragraph, GPL-2+ or CC-BY-SA-3.0). Called by
scripts/make-eval-text.sh, which downloads and unpacks the package; run that, not this.

    make_eval_text.py --deb FILE.deb --root UNPACKED_DIR --out data/eval

Everything is deterministic: the reading order comes from the book's own "next" links, paragraphs
are taken in that order, and nothing depends on time, locale, hashing order or randomness.

Selection:
  * A paragraph is a DocBook `para` block (`<div class="para">`), with program listings, screens,
    tables, titles, navigation, figures and the index left out; inline markup keeps its text.
    Whitespace is collapsed, so each paragraph is one line; files separate paragraphs by a blank line.
  * It is kept only if it reads as prose: 80..2000 characters, at least 12 words, ends with
    sentence punctuation, no URL, no code-like characters, at most 15% of it inside inline
    code/command/filename markup, mostly letters, and the language's stopwords outnumber those
    of every other of the six languages.
  * A translation that is identical to the English paragraph is untranslated and is dropped.
  * The paragraph numbering of every page is the same in all six languages (checked), so a
    paragraph position (page, n) is a parallel unit. The evaluation files take, in reading
    order, the units that are good prose in all six languages, until the next unit would take
    some language past EVAL_MAX_BYTES. The six files therefore hold the same content.
  * calibration.txt takes, for each language, the remaining good paragraphs (not in any
    evaluation unit and textually different from every evaluation paragraph), starting at a
    different point of the book for each language (language k starts k/6 of the way through its
    pool, wrapping around) until CAL_BYTES_PER_LANG, and interleaves the six languages one
    paragraph at a time.
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

PACKAGE = "debian-handbook"
LANGS = [("en", "en-US"), ("fr", "fr-FR"), ("de", "de-DE"), ("es", "es-ES"), ("it", "it-IT"), ("pl", "pl-PL")]
LANG_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "pl": "Polish"}
EVAL_MAX_BYTES = 78_000
EVAL_MIN_BYTES = 60_000
CAL_BYTES_PER_LANG = 100_000 // len(LANGS)
# Pages left out: lists of people's names, not prose.
EXCLUDE_PAGES = {"index.html", "sect.acknowledgments.html"}

# Frequent function words; a paragraph must contain more of its own language's than of any other.
STOPWORDS = {
    "en": "the and of to is in that it for with are this be as on or by not can which an from",
    "fr": "le la les de des et est un une du pour que dans qui en au sur par pas ce il sont",
    "de": "der die das und ist nicht ein eine mit zu den von sich auf für dem des werden wird auch",
    "es": "el la los las de y que en es un una por para con del se al como más lo",
    "it": "il la di e che è un una per con del della non sono le gli dei da nel alla",
    "pl": "się i w nie na z jest do że to o jak przez lub oraz są jego może od co",
}
STOPSETS = {k: frozenset(v.split()) for k, v in STOPWORDS.items()}

SKIP_TAGS = {"pre", "table", "script", "style", "head", "nav"}
SKIP_CLASSES = {
    "titlepage", "docnav", "toc", "programlisting", "screen", "informalexample", "example",
    "legalnotice", "index", "figure", "mediaobject", "calloutlist", "callout", "indexterm",
}
CODE_TAGS = {"code", "kbd", "tt", "samp"}
VOID_TAGS = {"img", "br", "hr", "meta", "link", "input", "col", "wbr", "area", "base", "source"}
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
CODE_CHARS = set("{}<>|=$\\`#_~^@")
END_PUNCT = tuple(".!?:…)»\"”")


class _Paras(html.parser.HTMLParser):
    """Collects the text of `<div class="para">`/`<p>` blocks; a block nested in another (a list
    inside a paragraph) becomes a block of its own and its text is not part of the outer one."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, starts a skipped subtree, starts a block)
        self.skip = 0
        self.open: list[dict] = []
        self.blocks: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag in VOID_TAGS:
            return
        cls = set((dict(attrs).get("class") or "").split())
        skip = tag in SKIP_TAGS or bool(cls & SKIP_CLASSES)
        block = not skip and not self.skip and ((tag == "div" and "para" in cls) or tag == "p")
        self.stack.append((tag, skip, block))
        self.skip += skip
        if block:
            b = {"parts": [], "code": 0}
            self.blocks.append(b)
            self.open.append(b)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in VOID_TAGS or not any(t == tag for t, _, _ in self.stack):
            return
        while self.stack:
            t, skip, block = self.stack.pop()
            self.skip -= skip
            if block:
                self.open.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if self.open and not self.skip:
            b = self.open[-1]
            b["parts"].append(data)
            if any(t in CODE_TAGS for t, _, _ in self.stack):
                b["code"] += len(data.strip())


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text.translate(ZERO_WIDTH))
    return re.sub(r"\s+", " ", text).strip()


def paragraphs(path: Path) -> list[tuple[str, int]]:
    """(text, characters inside inline code markup) for every paragraph block of a page, in order."""
    p = _Paras()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return [(normalize("".join(b["parts"])), b["code"]) for b in p.blocks]


def reading_order(d: Path) -> list[str]:
    """Pages in the book's reading order, following the "next" links from index.html."""
    pages, page = [], "index.html"
    while True:
        m = re.search(r'<li class="next"><a accesskey="n" href="([^"#]+)"', (d / page).read_text(encoding="utf-8"))
        if not m or m.group(1) in pages:
            return pages
        page = m.group(1)
        pages.append(page)


def stopword_scores(text: str) -> dict[str, int]:
    words = [w.lower() for w in WORD_RE.findall(text)]
    return {lang: sum(w in s for w in words) for lang, s in STOPSETS.items()}


def is_prose(text: str, code_chars: int, lang: str) -> bool:
    n = len(text)
    if not (80 <= n <= 2000) or not text.endswith(END_PUNCT):
        return False
    if "://" in text or "www." in text or any(c in CODE_CHARS for c in text):
        return False
    if code_chars > 0.15 * n:
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    if letters < 0.85 * n:
        return False
    words = WORD_RE.findall(text)
    if len(words) < 12:
        return False
    scores = stopword_scores(text)
    best_other = max(v for k, v in scores.items() if k != lang)
    return scores[lang] > best_other and scores[lang] >= 0.12 * len(words)


def write_paras(path: Path, paras: list[str]) -> bytes:
    data = ("\n\n".join(paras) + "\n").encode("utf-8")
    path.write_bytes(data)
    return data


def n_paras(data: bytes) -> int:
    return data.count(b"\n\n") + 1


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deb", required=True, type=Path, help="the debian-handbook .deb that was unpacked")
    ap.add_argument("--root", required=True, type=Path, help="where the .deb was unpacked (dpkg-deb -x)")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(args.deb), name], check=True, capture_output=True,
                              text=True).stdout.strip()

    pkg, version = field("Package"), field("Version")
    if pkg != PACKAGE:
        sys.exit(f"{args.deb}: package {pkg!r}, expected {PACKAGE!r}")
    deb_sha = sha256(args.deb.read_bytes())
    docdir = args.root / "usr/share/doc" / PACKAGE
    html_root = docdir / "html"

    pages = [p for p in reading_order(html_root / "en-US") if p not in EXCLUDE_PAGES]
    # good[lang][(page, n)] = paragraph text, for paragraphs that pass is_prose and are translated
    good: dict[str, dict[tuple[str, int], str]] = {lang: {} for lang, _ in LANGS}
    for page in pages:
        per_lang = {lang: paragraphs(html_root / d / page) for lang, d in LANGS}
        english = per_lang["en"]
        for lang, paras in per_lang.items():
            if len(paras) != len(english):
                sys.exit(f"{page}: {lang} has {len(paras)} paragraphs, en has {len(english)}: not parallel")
            for n, (text, code) in enumerate(paras):
                if lang != "en" and text == english[n][0]:
                    continue  # untranslated: the English text stands in
                if is_prose(text, code, lang):
                    good[lang][(page, n)] = text

    # Evaluation: parallel units, in reading order, good in every language.
    units = [k for k in good["en"] if all(k in good[lang] for lang, _ in LANGS)]
    eval_units: list[tuple[str, int]] = []
    size = {lang: 0 for lang, _ in LANGS}
    seen = {lang: set() for lang, _ in LANGS}
    for k in units:
        if any(good[lang][k] in seen[lang] for lang, _ in LANGS):
            continue  # a repeated paragraph
        add = {lang: len(good[lang][k].encode()) + 2 for lang, _ in LANGS}
        if any(size[lang] + add[lang] > EVAL_MAX_BYTES for lang, _ in LANGS):
            break
        eval_units.append(k)
        for lang, _ in LANGS:
            size[lang] += add[lang]
            seen[lang].add(good[lang][k])
    args.out.mkdir(parents=True, exist_ok=True)
    written: dict[str, bytes] = {}
    for lang, _ in LANGS:
        data = write_paras(args.out / f"{lang}.txt", [good[lang][k] for k in eval_units])
        if not EVAL_MIN_BYTES <= len(data) <= EVAL_MAX_BYTES:
            sys.exit(f"{lang}.txt: {len(data)} bytes, outside {EVAL_MIN_BYTES}..{EVAL_MAX_BYTES}")
        written[f"{lang}.txt"] = data

    # Calibration: the rest, disjoint from every evaluation paragraph.
    eval_set = set(eval_units)
    eval_texts = {good[lang][k] for lang, _ in LANGS for k in eval_units}
    cal: dict[str, list[str]] = {}
    used_texts: set[str] = set()
    for i, (lang, _) in enumerate(LANGS):
        pool = [t for k, t in good[lang].items() if k not in eval_set and t not in eval_texts]
        start = i * len(pool) // len(LANGS)
        picked, total = [], 0
        for t in pool[start:] + pool[:start]:
            if t in used_texts:
                continue
            if total + len(t.encode()) + 2 > CAL_BYTES_PER_LANG:
                break
            picked.append(t)
            used_texts.add(t)
            total += len(t.encode()) + 2
        cal[lang] = picked
    mixed = []
    for j in range(max(len(v) for v in cal.values())):
        mixed.extend(cal[lang][j] for lang, _ in LANGS if j < len(cal[lang]))
    written["calibration.txt"] = write_paras(args.out / "calibration.txt", mixed)

    copyright_text = (docdir / "copyright").read_text(encoding="utf-8")
    (args.out / "LICENSES").write_text(
        "The text files in this directory are excerpts of \"The Debian Administrator's Handbook\",\n"
        f"taken from the Debian package {PACKAGE} {version}. Below is that package's\n"
        f"/usr/share/doc/{PACKAGE}/copyright file, verbatim. It contains the full text of the\n"
        "CC-BY-SA-3.0 licence; the GPL-2 text is in /usr/share/common-licenses/GPL-2 on Debian\n"
        "systems and at https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt.\n"
        "\n" + "=" * 78 + "\n\n" + copyright_text,
        encoding="utf-8",
    )
    write_readme(args.out, version, deb_sha, args.deb.name, written, eval_units, cal, copyright_text)
    for name, data in written.items():
        print(f"{name:16} {len(data):7d} bytes  {n_paras(data):4d} paragraphs  {sha256(data)}")
    return 0


def write_readme(out, version, deb_sha, deb_name, written, eval_units, cal, copyright_text):
    first = copyright_text.split("\n\n")[1].strip()  # the "Files: *" stanza
    pages = []
    for page, _ in eval_units:
        if page not in pages:
            pages.append(page)
    rows = "\n".join(
        f"| `{name}` | {desc} | {len(data):,} | {n_paras(data)} | `{sha256(data)[:16]}…` |"
        for name, data, desc in (
            [(f"{lang}.txt", written[f"{lang}.txt"], f"evaluation, {LANG_NAMES[lang]}") for lang, _ in LANGS]
            + [("calibration.txt", written["calibration.txt"],
                "calibration, " + ", ".join(f"{len(cal[lang])} {lang}" for lang, _ in LANGS) + " paragraphs")]
        )
    )
    text = f"""# Evaluation and calibration text

Generated by `scripts/make-eval-text.sh` (do not edit by hand; rerun it instead). Plain UTF-8
prose, one paragraph per line, paragraphs separated by a blank line, NFC, whitespace collapsed.

| file | what | bytes | paragraphs | sha256 |
| --- | --- | ---: | ---: | --- |
{rows}

* `en.txt`, `fr.txt`, `de.txt`, `es.txt`, `it.txt`, `pl.txt` are **parallel**: paragraph *i* of each
  file is the same paragraph of the book in that language ({len(eval_units)} paragraphs, in the
  book's reading order), so perplexity or tokenizer efficiency can be compared across languages on
  the same content. They come from these pages of the book: {", ".join(f"`{p}`" for p in pages)}.
* `calibration.txt` is a mixture of the six languages (about {CAL_BYTES_PER_LANG:,} bytes of each,
  interleaved one paragraph at a time) for quantization calibration (importance matrices and
  the like). None of its paragraphs is in any evaluation file (nor is any translation of an
  evaluation paragraph), and each language's share starts at a different point of the book.
* `LICENSES`: the package's copyright file, verbatim (includes the full CC-BY-SA-3.0 text).

## Source

* Debian package **`{PACKAGE}` {version}** (bookworm, section doc, `{deb_name}`,
  SHA-256 `{deb_sha}`): the HTML edition of *The Debian Administrator's Handbook*
  (Debian 11 "bullseye" edition) by Raphaël Hertzog and Roland Mas, with its translations
  (`html/en-US`, `fr-FR`, `de-DE`, `es-ES`, `it-IT`, `pl-PL`). Upstream: https://debian-handbook.info
* Only `<div class="para">` blocks are used; program listings, screens, tables, headings,
  navigation, figures and the index are dropped, and a paragraph is kept only if it looks like
  prose in its language (see the docstring of `scripts/make_eval_text.py` for the exact rules).
  Paragraphs of a translation that are identical to the English one (not yet translated) are
  dropped.

## Licence

The excerpts are under the book's licence, **GPL-2.0-or-later or CC-BY-SA-3.0** (your choice);
they are not covered by the repository's Apache-2.0 licence. From
`/usr/share/doc/{PACKAGE}/copyright`:

```
{first}
```

The book's own legal notice (`html/en-US/index.html`) says: "This book is available under the
terms of two licenses compatible with the Debian Free Software Guidelines. [...] This book is
licensed under a Creative Commons Attribution-ShareAlike 3.0 Unported License. [...] This book is
free documentation: you can redistribute it and/or modify it under the terms of the GNU General
Public License as published by the Free Software Foundation, either version 2 of the License, or
(at your option) any later version."

Attribution (CC-BY-SA-3.0): *The Debian Administrator's Handbook*, Raphaël Hertzog and Roland
Mas, and its translators; https://debian-handbook.info. Changes: paragraphs selected and
extracted from the HTML as described above, markup removed, whitespace collapsed.

## Regenerating

```
scripts/make-eval-text.sh            # downloads {PACKAGE}={version} with apt-get download
scripts/make-eval-text.sh PATH.deb   # or uses a .deb you already have
```

It needs `apt-get` (with package lists that know {PACKAGE} {version}: `apt-get update` once,
as root), `dpkg-deb` and Python 3 (standard library only); no root is needed for the script
itself. The download goes to a temporary directory that is removed afterwards. The output is
byte-identical on every run; `tests/python/test_eval_text.py` checks the files.

The KiCad documentation (`kicad-doc-{{en,fr,de,es,it,pl}}` 6.0.11+dfsg-1; GPL-3+ or CC-BY-3.0
by the manuals' own notice) was considered first and rejected: in bookworm its French, German
and Spanish manuals are almost entirely the untranslated English text (about 12, 18 and 15 KB of
translated paragraphs in total, all manuals together), so it cannot give parallel text of this
size.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
