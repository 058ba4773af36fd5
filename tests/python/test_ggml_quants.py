"""autark's `--rtn` quantizers against ggml's own reference quantizers (`quantize_row_*_ref` from
ggml-quants.c as vendored by PyPI's llama-cpp-python, built by scripts/ggml-oracle.sh), byte for
byte: the K-quants (q4_k, q5_k, q6_k), which gguf-py cannot quantize, and the legacy types, which
gguf-py also checks (test_gguf_import.py). Every matrix of a synthetic model is compared with
the oracle for the type autark stored it as, including rows chosen to reach the quantizers'
edge cases."""
from __future__ import annotations

import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest

import autark_file
import make_gguf as mg

ROOT = Path(__file__).resolve().parents[2]
SPEC = mg.ModelSpec(arch="llama", n_layers=1, d_model=256, n_heads=4, n_kv_heads=2, ffn=512)


@pytest.fixture(scope="module")
def oracle():
    r = subprocess.run([str(ROOT / "scripts/ggml-oracle.sh")], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"scripts/ggml-oracle.sh failed:\n{r.stderr}", pytrace=False)
    return ROOT / r.stdout.strip().splitlines()[-1]


def ggml_quantize(oracle: Path, qtype: str, values: np.ndarray) -> bytes:
    x = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    r = subprocess.run([str(oracle), qtype, str(x.size)], input=x.tobytes(), capture_output=True, check=True)
    return r.stdout


def edge_rows(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Rows for the quantizers' corners: zero and constant blocks, all-positive and all-negative
    rows (the minimum clamps to 0), tiny and huge magnitudes, lone outliers, sparse rows, a
    heavy-tailed distribution; the rest Gaussian."""
    m = 0.1 * rng.standard_normal((rows, cols)).astype(np.float32)
    m[0] = 0.0
    m[1] = 0.25
    m[2] = np.abs(m[2]) + 0.01
    m[3] = -np.abs(m[3]) - 0.01
    m[4] *= 1e-20
    m[5] *= 1e4
    m[6, ::97] = 30.0
    m[7, rng.random(cols) < 0.9] = 0.0
    m[8] = rng.standard_t(2, cols).astype(np.float32) * 0.05
    m[9, :128] = 0.0  # half a super-block zero
    m[10, 32:64] = 0.5  # one constant sub-block
    m[11] = np.round(m[11] * 40) / 40  # values on a grid
    return m


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("ggml") / "m.gguf"
    rng = np.random.default_rng(7)
    mg.write_model(path, SPEC, mg.spm_synthetic(), {}, seed=3, values={
        "blk.0.attn_q.weight": edge_rows(256, 256, rng),
        "blk.0.ffn_down.weight": edge_rows(256, 512, rng),
    })
    return path


@pytest.mark.parametrize("qtype", ["q4_k", "q5_k", "q6_k", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"])
def test_rtn_bytes_match_ggml(autark, oracle, source, tmp_path, qtype):
    out = autark.quantize(source, tmp_path / f"{qtype}.autark", qtype, "--rtn")
    _, tensors = autark_file.read(out, check_tensor_sha=True, strict=True)
    reader = gguf.GGUFReader(source)
    compared = set()
    for t in reader.tensors:
        got = tensors[t.name]
        if len(got["shape"]) < 2:
            continue
        expected = ggml_quantize(oracle, got["dtype"], np.asarray(t.data))
        if got["raw"] != expected:
            a = np.frombuffer(got["raw"], np.uint8)
            b = np.frombuffer(expected, np.uint8)
            first = int(np.flatnonzero(a != b)[0]) if a.size == b.size else None
            pytest.fail(f"{t.name} ({got['dtype']}): bytes differ from ggml's (first differing byte {first} "
                        f"of {b.size})")
        compared.add(got["dtype"])
    assert qtype in compared
