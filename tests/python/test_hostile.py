"""The hostile-input corpus of tests/hostile/ (see make_corpus.py there) through every front end:
the CLI (inspect, verify, run, quantize), the C API and the Python binding. Each file must give a
typed error and a non-zero status — never a signal, an abort or a panic — while the process
stays under a memory bound (maximum resident set measured per child with wait4)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

CORPUS = sorted((REPO_ROOT / "tests/hostile").glob("*.autark")) + sorted((REPO_ROOT / "tests/hostile").glob("*.gguf"))
# Largest hostile file is ~0.4 MB; the binary, tokenizer and thread stacks need ~30 MB. Any
# allocation driven by a lying size field would blow far past this.
MAX_RSS_MB = 96


# Files whose byte structure is valid but whose content lies (the model cannot be run): `inspect`
# and `verify` may describe them; loading them for inference must fail.
SEMANTIC = {"bad-tokenizer.autark", "unknown-architecture.autark", "missing-tensor.autark", "layers-huge.autark"}
# `verify` also loads the tokenizer and chat template (issue 22), so it refuses these.
VERIFY_REFUSES = {"bad-tokenizer.autark"}


def run_measured(cmd, env=None, timeout=60):
    """Runs `cmd`; returns (returncode, stderr)."""
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"hung: {cmd}", pytrace=False)
    return p.returncode, err.decode(errors="replace")


# Linux keeps the high-water mark of the image a process replaced at exec: a child forked straight
# from this pytest process (hundreds of MB once a model has been loaded) would report pytest's own
# peak. The child is therefore started from a small launcher interpreter whose footprint (~10 MB) is
# the floor of every measurement.
_LAUNCHER = """
import os, sys
pid = os.spawnv(os.P_NOWAIT, sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0, usage.ru_maxrss)
"""


def max_rss_mb(cmd) -> float:
    """Runs `cmd` once more and returns its maximum resident set in MB; fails on a signal."""
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *(str(c) for c in cmd)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO_ROOT, check=True, timeout=60,
    ).stdout.split()
    signal, maxrss_kb = int(out[-2]), int(out[-1])
    assert signal == 0, f"killed by signal {signal}: {cmd}"
    return maxrss_kb / 1024


def test_rss_measurement_sees_the_child_alone():
    """The bound above is only meaningful if the measurement reports the child's own peak: a small
    child reads small even from this (large) process, and a child that touches 200 MB reads large."""
    ballast = bytearray(256 << 20)  # make the parent large, as it is after the model tests
    ballast[::4096] = b"x" * len(ballast[::4096])
    small = max_rss_mb(["/bin/true"])
    big = max_rss_mb([sys.executable, "-c", "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])"])
    del ballast
    assert small < 32, small
    assert big > 200, big


def test_corpus_is_present():
    assert len(CORPUS) >= 20, "tests/hostile corpus missing: run tests/hostile/make_corpus.py"


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_cli(autark_bin, path, tmp_path):
    if path.suffix == ".gguf":
        commands = [["quantize", path, "-o", tmp_path / "out.autark"]]
    else:
        commands = [["inspect", path], ["inspect", "--json", path], ["verify", path], ["run", path, "-p", "hi", "-n", "2"]]
    for args in commands:
        cmd = [autark_bin, *args]
        rc, err = run_measured(cmd)
        if path.name in SEMANTIC and args[0] in ("inspect", "verify") and not (
                args[0] == "verify" and path.name in VERIFY_REFUSES):
            assert rc == 0, f"{args[0]} {path.name}: exit {rc}\n{err}"
        else:
            assert rc in (1, 3), f"{args[0]} {path.name}: exit {rc}\n{err}"
            assert "autark: error:" in err or "verify failed" in err, err
        assert "panicked" not in err, err
        rss = max_rss_mb(cmd)
        assert rss < MAX_RSS_MB, f"{args[0]} {path.name}: {rss:.0f} MB resident"
    assert not (tmp_path / "out.autark").exists()


@pytest.mark.parametrize("path", [p for p in CORPUS if p.suffix == ".autark"], ids=lambda p: p.name)
def test_c_api(binaries, path):
    cmd = [binaries["generate"], path, "hi", "2"]
    rc, err = run_measured(cmd)
    assert rc == 1, f"exit {rc}: {err}"
    assert "load failed" in err and "panic" not in err, err
    assert max_rss_mb(cmd) < MAX_RSS_MB


@pytest.mark.parametrize("path", [p for p in CORPUS if p.suffix == ".autark"], ids=lambda p: p.name)
def test_python_binding(ak, path):
    with pytest.raises(ak.AutarkError) as e:
        ak.Model.load(str(path))
    assert e.value.detail
