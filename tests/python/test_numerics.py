"""The numerical contract (docs/NUMERICS.md): every kernel set computes the same float operations
in the same order, so the logits are the same bits on every ISA, for any batch size, thread
count and KV cache type. Each ISA is forced with AUTARK_ISA (a missing ISA falls back to the best
below it, which is then checked twice rather than not at all); NEON is checked kernel by kernel
under qemu (scripts/test-arm.sh), against the same scalar twins."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import autark_file
from conftest import cpu_isa, isa_params

ALL_ISAS = ["scalar", "avx2", "avx512"]
# The kernel sets this CPU runs (an ISA it lacks would run the one below it a second time;
# test_the_record_is_reproduced_by_every_isa shows it among the skips).
ISAS = [isa for isa in ALL_ISAS if cpu_isa(isa) == isa]

# A prompt longer than one 16-lane chunk of attention keys, not a multiple of 16.
PROMPT = "The numerical contract makes every machine give the same answer, bit for bit, so a field bug replays in the lab."

SIMD = [isa for isa in ISAS if isa != "scalar"]


@pytest.fixture(scope="module")
def smollm2_files(autark, smollm2_gguf, smollm2_q4_1, tmp_path_factory):
    """SmolLM2 as q4_1 (the source's own blocks), q4_0 and q8_0 (round to nearest: fast)."""
    d = tmp_path_factory.mktemp("numerics")
    files = {t: autark.quantize(smollm2_gguf, d / f"smollm2-{t}.autark", t, "--rtn") for t in ("q4_0", "q8_0")}
    return {**files, "q4_1": smollm2_q4_1}


def logits(autark, path, ids, out, isa, batch, threads, cache) -> np.ndarray:
    env = {**os.environ, "AUTARK_ISA": isa}
    flags = ["--batch", str(batch), "-t", str(threads), "--cache-type-k", cache, "--cache-type-v", cache]
    return autark.logits(path, ids, out, *flags, env=env)


def same_bits(got: np.ndarray, want: np.ndarray, what: str):
    assert np.isfinite(got).all(), what
    if got.tobytes() != want.tobytes():
        diff = np.abs(got.astype(np.float64) - want).max(axis=1)
        pytest.fail(f"{what}: differs from the scalar kernels first at position {int(np.argmax(diff > 0))}, "
                    f"by up to {diff.max():.3g}", pytrace=False)


@pytest.mark.parametrize("cache", ["f16", "f32", "q8_0"])
def test_every_isa_batch_and_thread_count_gives_the_scalar_bits(autark, smollm2_files, tmp_path, cache):
    """SmolLM2 q4_0 (16-row interleaved matrices), each KV cache type: the scalar kernels (one
    batch, one thread) against each SIMD ISA decoding token by token, in odd prompt batches and
    in one batch, on 1 and 2 threads."""
    path = smollm2_files["q4_0"]
    ids = autark.tokenize(path, PROMPT)
    assert len(ids) > 17 and len(ids) % 16, len(ids)
    want = logits(autark, path, ids, tmp_path / "ref.f32", "scalar", 64, 1, cache)
    for isa in SIMD:
        for batch, threads in [(1, 2), (7, 2), (64, 1), (64, 2)]:
            got = logits(autark, path, ids, tmp_path / "l.f32", isa, batch, threads, cache)
            same_bits(got, want, f"q4_0 {isa} batch {batch} threads {threads} cache {cache}")


@pytest.mark.parametrize("qtype", ["q4_1", "q8_0"])
def test_the_other_interleaved_types_give_the_scalar_bits(autark, smollm2_files, tmp_path, qtype):
    path = smollm2_files[qtype]
    ids = autark.tokenize(path, PROMPT)
    want = logits(autark, path, ids, tmp_path / "ref.f32", "scalar", 5, 2, "f16")
    for isa in SIMD:
        for batch, threads in [(1, 1), (64, 2)]:
            got = logits(autark, path, ids, tmp_path / "l.f32", isa, batch, threads, "f16")
            same_bits(got, want, f"{qtype} {isa} batch {batch} threads {threads}")


@pytest.mark.parametrize("preset", ["q4_k_m", "q5_k_m"])
def test_k_quant_presets_give_the_scalar_bits_in_both_layouts(autark, smollm2_gguf, tmp_path, preset):
    """The K-quant presets on SmolLM2: q4_k / q5_k and q6_k (the 1536-wide FFN down matrices),
    q5_0 / q5_1 (the 576-wide ones) and q8_0, all stored `rows16`. Every ISA, decoding
    token by token and in one batch, gives the bits of the scalar kernels over the row-major
    file (`--layout rows`): the interleaved kernels compute the contract's expression per
    (row, token), the same as the row-major ones."""
    # Without conformance records (3 s of probe per file): the comparison below is the check.
    x16 = autark.quantize(smollm2_gguf, tmp_path / "x16.autark", preset, "--rtn", "--no-conformance")
    rows = autark.quantize(smollm2_gguf, tmp_path / "rows.autark", preset, "--rtn", "--layout", "rows",
                           "--no-conformance")
    kinds = {(t["dtype"], t["layout"]) for t in autark.inspect(x16)["tensors"]}
    k, q5 = ("q4_k", "q5_0") if preset == "q4_k_m" else ("q5_k", "q5_1")
    assert {(k, "rows16"), (q5, "rows16"), ("q6_k", "rows16")} <= kinds, kinds
    assert all(t["layout"] == "rows" for t in autark.inspect(rows)["tensors"])
    ids = autark.tokenize(x16, PROMPT)
    want = logits(autark, rows, ids, tmp_path / "ref.f32", "scalar", 64, 2, "f16")
    for isa in ISAS:
        for batch, threads in [(1, 2), (64, 1)]:
            got = logits(autark, x16, ids, tmp_path / "l.f32", isa, batch, threads, "f16")
            same_bits(got, want, f"{preset} rows16 {isa} batch {batch} threads {threads}")


def test_the_check_can_fail(autark, smollm2_files, tmp_path):
    """The comparison sees a difference when there is one: another cache type moves the logits."""
    path = smollm2_files["q4_0"]
    ids = autark.tokenize(path, PROMPT)
    a = logits(autark, path, ids, tmp_path / "a.f32", "avx512", 64, 1, "f16")
    b = logits(autark, path, ids, tmp_path / "b.f32", "avx512", 64, 1, "q8_0")
    assert a.tobytes() != b.tobytes()


# ---- the conformance record ----------------------------------------------------------------------


def verify(autark, path, isa, *extra):
    env = {**os.environ, "AUTARK_ISA": isa}
    return subprocess.run([str(autark.path), "verify", str(path), "--conformance", *extra],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("isa", isa_params(ALL_ISAS))
def test_the_record_is_reproduced_by_every_isa(autark, smollm2_files, isa):
    """The quantizer stored the scalar kernels' probe; every ISA (and thread count) reproduces
    each step's logits bit for bit."""
    path = smollm2_files["q4_0"]
    for threads in ("1", "2"):
        r = verify(autark, path, isa, "-t", threads)
        assert r.returncode == 0, (isa, threads, r.stdout, r.stderr)
        assert "bit-identical with the record" in r.stdout and f"{isa} kernels here" in r.stdout, r.stdout
    meta = autark_file.read(path, check_tensor_sha=True, strict=True)[0]
    c = meta["conformance"]
    assert c["kernels"] == "scalar" and c["version"] == 1 and len(c["probes"]) == 2, c
    assert all(len(p["logits"]) == len(p["tokens"]) == 6 for p in c["probes"]), c


def altered(src: Path, dst: Path, probe: int, step: int) -> Path:
    """`src` with one recorded logits hash changed in place (one hex digit; the metadata keeps
    its length) and the header's checksum recomputed: a well-formed file whose record lies."""
    data = bytearray(src.read_bytes())
    meta_len, table_off, table_len = (struct.unpack_from("<Q", data, o)[0] for o in (24, 32, 40))
    raw = bytes(data[128:128 + meta_len])
    old = json.loads(raw)["conformance"]["probes"][probe]["logits"][step]
    new = old[:-1] + ("0" if old[-1] != "0" else "1")
    assert raw.count(old.encode()) == 1, old
    data[128:128 + meta_len] = raw.replace(old.encode(), new.encode())
    data[72:104] = hashlib.sha256(bytes(data[128:128 + meta_len]) + bytes(data[table_off:table_off + table_len])).digest()
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("probe, step", [(0, 0), (1, 4)])
def test_an_altered_record_fails_and_names_the_step(autark, smollm2_files, tmp_path, probe, step):
    bad = altered(smollm2_files["q4_0"], tmp_path / "bad.autark", probe, step)
    for isa in ("scalar", "avx512"):
        r = verify(autark, bad, isa)
        assert r.returncode == 5, (r.stdout, r.stderr)
        assert f"prompt {probe} step {step}:" in r.stderr, r.stderr


def test_no_record_is_a_clear_error(autark, smollm2_gguf, tmp_path):
    out = autark.quantize(smollm2_gguf, tmp_path / "none.autark", "q8_0", "--rtn", "--no-conformance")
    assert "conformance" not in autark_file.read(out, check_tensor_sha=True, strict=True)[0]
    r = verify(autark, out, "avx512")
    assert r.returncode == 2 and "no conformance record" in r.stderr, r.stderr
