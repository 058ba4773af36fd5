"""The numerical contract (docs/NUMERICS.md): every kernel set computes the same float operations
in the same order, so the logits are the same bits on every ISA, for any batch size, thread
count and KV cache type. Each ISA is forced with AUTARK_ISA (a missing ISA falls back to the best
below it, which is then checked twice rather than not at all); NEON is checked kernel by kernel
under qemu (scripts/test-arm.sh), against the same scalar twins."""

from __future__ import annotations

import os

import numpy as np
import pytest

ISAS = ["scalar", "avx2", "avx512"]

# A prompt longer than one 16-lane chunk of attention keys, not a multiple of 16.
PROMPT = "The numerical contract makes every machine give the same answer, bit for bit, so a field bug replays in the lab."

SIMD = ["avx2", "avx512"]


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


def test_the_check_can_fail(autark, smollm2_files, tmp_path):
    """The comparison sees a difference when there is one: another cache type moves the logits."""
    path = smollm2_files["q4_0"]
    ids = autark.tokenize(path, PROMPT)
    a = logits(autark, path, ids, tmp_path / "a.f32", "avx512", 64, 1, "f16")
    b = logits(autark, path, ids, tmp_path / "b.f32", "avx512", 64, 1, "q8_0")
    assert a.tobytes() != b.tobytes()
