"""Shared fixtures for the end-to-end tests of the `autark` binary.

Environment:
    AUTARK_BIN        the binary (default: target/release/autark under the repository root)
    AUTARK_TEST_GGUF  SmolLM2-135M-Instruct.Q4_1.gguf (default: models/ under the repository root)

A missing binary or model FAILS the tests that need it (CI always provides both); nothing is
skipped.
"""

from __future__ import annotations

import os
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_PY = REPO_ROOT / "tests" / "python"
TESTS_REF = REPO_ROOT / "tests" / "reference"
for p in (TESTS_PY, TESTS_REF):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

DEFAULT_TIMEOUT = 120  # seconds; any single command taking longer is a failure


def cpu_isa(want: str) -> str:
    """The kernel set that `AUTARK_ISA=want` runs on this CPU: the dispatch falls back to the best
    ISA below the one asked for that the CPU has (kernels/src/dispatch.rs). Read from
    /proc/cpuinfo's flags, not from the binary, so that a dispatch ignoring AUTARK_ISA fails."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    needs = {"avx512": {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"},
             "avx2": {"avx2", "fma", "f16c"}}
    order = ["scalar", "avx2", "avx512"]
    for isa in reversed(order[: order.index(want) + 1]):
        if needs.get(isa, set()) <= flags:
            return isa
    return "scalar"


def isa_params(isas=("scalar", "avx2", "avx512")) -> list:
    """`isa` parameters for pytest.mark.parametrize: a case for an ISA this CPU lacks is skipped,
    saying so, before its fixtures are built (AUTARK_ISA would run the ISA below it, whose own
    case runs anyway)."""
    return [pytest.param(isa, marks=pytest.mark.skipif(
        cpu_isa(isa) != isa, reason=f"this CPU lacks {isa} (AUTARK_ISA={isa} runs {cpu_isa(isa)}, whose own case ran)"))
        for isa in isas]


def autark_bin_path() -> Path:
    p = Path(os.environ.get("AUTARK_BIN", "target/release/autark"))
    return p if p.is_absolute() else REPO_ROOT / p


def smollm2_path() -> Path:
    p = Path(os.environ.get("AUTARK_TEST_GGUF", "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    return p if p.is_absolute() else REPO_ROOT / p


@pytest.fixture(scope="session")
def autark_bin() -> Path:
    p = autark_bin_path()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"autark binary not found at {p}: run `cargo build --release` or set AUTARK_BIN", pytrace=False)
    return p


class Autark:
    """Runs the binary; `run` returns the CompletedProcess, `ok` also asserts exit status 0."""

    def __init__(self, path: Path):
        self.path = path

    def run(self, *args, timeout=DEFAULT_TIMEOUT, **kw) -> subprocess.CompletedProcess:
        cmd = [str(self.path), *map(str, args)]
        try:
            return subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=REPO_ROOT, **kw)
        except subprocess.TimeoutExpired:
            pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}", pytrace=False)

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        r = self.run(*args, **kw)
        if r.returncode != 0:
            pytest.fail(
                f"`autark {' '.join(map(str, args))}` exited with {r.returncode}\n"
                f"stderr:\n{r.stderr.decode(errors='replace')[-4000:]}",
                pytrace=False,
            )
        return r

    def quantize(self, src, out, qtype, *extra) -> Path:
        self.ok("quantize", src, "-o", out, "--type", qtype, *extra)
        return Path(out)

    def inspect(self, path) -> dict:
        import json

        return json.loads(self.ok("inspect", path, "--json").stdout)

    def logits(self, path, tokens, out, *extra, **kw) -> np.ndarray:
        self.ok("logits", path, "--tokens", ",".join(map(str, tokens)), "-o", out, *extra, **kw)
        data = np.fromfile(out, dtype="<f4")
        if data.size % len(tokens):
            pytest.fail(f"logits file has {data.size} floats, not a multiple of {len(tokens)} tokens", pytrace=False)
        return data.reshape(len(tokens), -1)

    def dump(self, path, name, out) -> np.ndarray:
        self.ok("dump", path, name, "-o", out)
        return np.fromfile(out, dtype="<f4")

    def tokenize(self, path, text, *flags) -> list[int]:
        import json

        ids = json.loads(self.ok("tokenize", path, "-p", text, *flags).stdout)
        assert isinstance(ids, list) and all(isinstance(i, int) for i in ids), ids
        return ids


@pytest.fixture(scope="session")
def autark(autark_bin) -> Autark:
    return Autark(autark_bin)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    p = smollm2_path()
    if not p.is_file():
        pytest.fail(
            f"test model not found at {p}: download SmolLM2-135M-Instruct.Q4_1.gguf into models/ "
            "or set AUTARK_TEST_GGUF",
            pytrace=False,
        )
    return p


@pytest.fixture(scope="session")
def smollm2_q4_1(autark, smollm2_gguf, tmp_path_factory) -> Path:
    """SmolLM2 imported losslessly (--type q4_1): built once per session."""
    out = tmp_path_factory.mktemp("smollm2") / "smollm2-q4_1.autark"
    return autark.quantize(smollm2_gguf, out, "q4_1")


@pytest.fixture(scope="session")
def tiny_q8_0(autark, tmp_path_factory) -> Path:
    """A tiny synthetic Llama (make_tiny's llama_tied: 2 layers, width 64, vocab 272, ChatML) as
    q8_0: for the valgrind runs, which check memory, not text, and take seconds on it where
    SmolLM2 takes minutes."""
    import make_tiny

    d = tmp_path_factory.mktemp("tiny")
    return autark.quantize(make_tiny.make("llama_tied", d / "hf"), d / "tiny-q8_0.autark", "q8_0")


@pytest.fixture(scope="session")
def smollm2_reader(smollm2_gguf):
    import gguf

    return gguf.GGUFReader(str(smollm2_gguf))


@pytest.fixture(scope="session")
def smollm2_ref(smollm2_gguf):
    import llama_ref

    return llama_ref.load_gguf(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf):
    import gguf_tokenizer

    return gguf_tokenizer.tokenizer_from_gguf(smollm2_gguf)


def gguf_numpy_shape(tensor) -> list[int]:
    """GGUF lists ne0 (contiguous) first; NumPy / .autark order is the reverse."""
    return [int(d) for d in reversed(list(tensor.shape))]


def normalize_dtype(d) -> str:
    """`inspect --json` may give the dtype as a name or as the ggml code."""
    import autark_file

    if isinstance(d, int):
        return autark_file.DTYPES[d][0]
    return str(d).lower()


def hf_render(template: str, messages, **kw) -> str:
    """The template rendered like transformers' apply_chat_template."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise ValueError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, **kw)


# ---- front ends built once per session: the Python binding and the C API ---------------------

def cargo_env() -> dict:
    """The environment of a script that builds the C library or the bindings (ffi/install.sh,
    bindings/build-python.sh, bindings/test-kotlin.sh): both crates in one cargo invocation (one
    feature set: they compile once for both, not twice; minutes on 2 cores). scripts/test.sh sets
    AUTARK_TEST_CARGO_ARGS to the feature set of its own `cargo test`, whose artifacts these
    builds then reuse instead of compiling again."""
    args = os.environ.get("AUTARK_TEST_CARGO_ARGS") or "-p autark-ffi -p autark-bindings --features autark-bindings/bindgen"
    return {**os.environ, "AUTARK_CARGO_ARGS": args}


@pytest.fixture(scope="session")
def ak(tmp_path_factory):
    """The `autark` Python package, built into a temporary directory and imported."""
    out = tmp_path_factory.mktemp("pybindings")
    r = subprocess.run([str(REPO_ROOT / "bindings/build-python.sh"), str(out)], capture_output=True,
                       cwd=REPO_ROOT, timeout=900, env=cargo_env())
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-4000:]
    assert (out / "autark" / "__init__.py").is_file()
    sys.path.insert(0, str(out))
    try:
        mod = importlib.import_module("autark")
    finally:
        sys.path.remove(str(out))
    assert mod.__file__.startswith(str(out)), mod.__file__
    return mod



CFLAGS = ["-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread"]


@pytest.fixture(scope="session")
def prefix(tmp_path_factory):
    p = tmp_path_factory.mktemp("prefix")
    r = subprocess.run([str(REPO_ROOT / "ffi/install.sh"), str(p)], capture_output=True, cwd=REPO_ROOT, timeout=900,
                       env=cargo_env())
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    for f in ["include/autark.h", "lib/libautark.so", "lib/libautark.a", "lib/pkgconfig/autark.pc"]:
        assert (p / f).is_file(), f
    return p


def build(prefix, src, out, static):
    inc = ["-I", str(prefix / "include")]
    if static:
        libs = [str(prefix / "lib/libautark.a"), "-lpthread", "-ldl", "-lm"]
    else:
        libs = ["-L", str(prefix / "lib"), "-lautark", f"-Wl,-rpath,{prefix / 'lib'}"]
    r = subprocess.run(["gcc", *CFLAGS, str(REPO_ROOT / src), *inc, *libs, "-o", str(out)], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    return out


@pytest.fixture(scope="session")
def binaries(prefix, tmp_path_factory):
    d = tmp_path_factory.mktemp("cbin")
    out = {}
    for name, src in [("generate", "ffi/examples/generate.c"), ("threads", "ffi/examples/threads.c"),
                      ("api_test", "ffi/tests/api_test.c"), ("resume", "ffi/examples/resume.c"),
                      ("structured", "ffi/examples/structured.c")]:
        out[name] = build(prefix, src, d / name, static=False)
        out[name + "_static"] = build(prefix, src, d / (name + "_static"), static=True)
    return out


