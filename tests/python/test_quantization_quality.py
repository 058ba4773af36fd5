"""Quantization recipes end to end on a synthetic tiny model: the default scale search and
importance weighting from calibration text lower the KL divergence from the f32 model (measured by
`autark perplexity --kl-base`, itself checked against NumPy in test_perplexity.py); mixed presets
put the sensitive tensors at q8_0; the provenance records how a file was made."""

from __future__ import annotations

import json

import numpy as np
import pytest

import make_tiny
from conftest import REPO_ROOT

EVAL = REPO_ROOT / "data/eval/en.txt"
CALIB = REPO_ROOT / "data/eval/calibration.txt"
N_CTX = 128


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    """The tiny Llama with activation outliers, as real LLMs have them: a few columns of every
    norm weight are 8x larger, so the linear layers meet a few large input columns."""
    from safetensors.numpy import load_file, save_file

    folder = make_tiny.make("llama_tied", tmp_path_factory.mktemp("quality") / "hf", "f32")
    (st,) = folder.glob("*.safetensors")
    w = load_file(st)
    for name, v in w.items():
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            v = v.copy()
            v[[3, 17, 40]] *= 8.0
            w[name] = v
    save_file(w, st, metadata={"format": "pt"})
    return folder


def kld(autark, model, base) -> dict:
    r = autark.ok("perplexity", model, "-f", EVAL, "-c", N_CTX, "--chunks", 24, "--kl-base", base, "--json", timeout=300)
    return json.loads(r.stdout)


def test_search_and_calibration_lower_the_kl_divergence(autark, outlier_model, tmp_path):
    f32 = autark.quantize(outlier_model, tmp_path / "f32.autark", "f32")
    base = tmp_path / "f32.lp"
    autark.ok("perplexity", f32, "-f", EVAL, "-c", N_CTX, "--chunks", 24, "--save-logits", base)

    rtn = autark.quantize(outlier_model, tmp_path / "rtn.autark", "q4_0", "--rtn")
    search = autark.quantize(outlier_model, tmp_path / "search.autark", "q4_0")
    calib = autark.quantize(outlier_model, tmp_path / "calib.autark", "q4_0", "--calibration", CALIB,
                            "--calibration-tokens", 2048)
    k = {name: kld(autark, m, base)["kld_mean"] for name, m in [("rtn", rtn), ("search", search), ("calib", calib)]}
    print(k)
    assert k["search"] < k["rtn"], k
    assert k["calib"] < 0.9 * k["search"], k

    # How each file was made is in its provenance.
    rec = {n: autark.inspect(m)["metadata"]["provenance"]["recipe"] for n, m in [("rtn", rtn), ("calib", calib)]}
    assert rec["rtn"]["method"] == "rtn" and rec["rtn"]["calibration"] is None
    assert rec["calib"]["method"] == "search"
    assert rec["calib"]["calibration"].startswith("calibration.txt, ") and rec["calib"]["calibration"].endswith(" tokens")
    # and the calibration model was a temporary file
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".autark") == [
        "calib.autark", "f32.autark", "rtn.autark", "search.autark"]


def test_mixed_preset(autark, outlier_model, tmp_path):
    r = autark.ok("quantize", outlier_model, "-o", tmp_path / "m.autark", "--type", "q4_mixed")
    assert "bits/weight" in r.stdout.decode()
    tensors = {t["name"]: t["dtype"] for t in autark.inspect(tmp_path / "m.autark")["tensors"]}
    for l in range(make_tiny.N_LAYERS):  # 2 layers: both are edge layers
        assert tensors[f"blk.{l}.attn_v.weight"] == "q8_0"
        assert tensors[f"blk.{l}.ffn_down.weight"] == "q8_0"
        assert tensors[f"blk.{l}.attn_q.weight"] == "q4_0"
        assert tensors[f"blk.{l}.ffn_up.weight"] == "q4_0"
    assert tensors["token_embd.weight"] == "q8_0"


def test_calibration_errors(autark, outlier_model, tmp_path):
    def fails(rc, needle, *args):
        r = autark.run("quantize", outlier_model, "-o", tmp_path / "x.autark", *args)
        err = r.stderr.decode(errors="replace")
        assert r.returncode == rc and needle in err and "panicked" not in err, f"{args}: rc {r.returncode}\n{err}"
        assert not list(tmp_path.iterdir()), "nothing may be left behind"

    fails(1, "No such file", "--calibration", tmp_path / "missing.txt")
    short = tmp_path.parent / "short.txt"
    short.write_text("too short")
    fails(1, "fewer than one window", "--calibration", short)
    fails(2, "cannot be used with", "--calibration", CALIB, "--rtn")
    fails(2, "unknown --type", "--type", "q3_mixed")
