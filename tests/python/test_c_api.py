"""The C API from C: the header and libraries installed by ffi/install.sh, the examples and the
misuse suite compiled with gcc -Wall -Wextra -Werror (shared and static), run natively and under
valgrind."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT

CFLAGS = ["-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread"]


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    p = tmp_path_factory.mktemp("prefix")
    r = subprocess.run([str(REPO_ROOT / "ffi/install.sh"), str(p)], capture_output=True, cwd=REPO_ROOT, timeout=600)
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


@pytest.fixture(scope="module")
def binaries(prefix, tmp_path_factory):
    d = tmp_path_factory.mktemp("cbin")
    out = {}
    for name, src in [("generate", "ffi/examples/generate.c"), ("threads", "ffi/examples/threads.c"),
                      ("api_test", "ffi/tests/api_test.c")]:
        out[name] = build(prefix, src, d / name, static=False)
        out[name + "_static"] = build(prefix, src, d / (name + "_static"), static=True)
    return out


@pytest.fixture(scope="module")
def corrupt(smollm2_q4_1, tmp_path_factory):
    p = tmp_path_factory.mktemp("corrupt") / "cut.autark"
    p.write_bytes(smollm2_q4_1.read_bytes()[:100_000])
    return p


@pytest.mark.parametrize("kind", ["", "_static"])
@pytest.mark.parametrize("prompt", ["The capital of France is", "Zażółć gęślą jaźń, and"])
def test_greedy_output_equals_cli(autark, binaries, smollm2_q4_1, kind, prompt):
    c = subprocess.run([binaries["generate" + kind], smollm2_q4_1, prompt, "24"], capture_output=True, timeout=120)
    assert c.returncode == 0, c.stderr.decode()
    cli = autark.ok("run", smollm2_q4_1, "-p", prompt, "-n", 24, "--temp", 0)
    assert c.stdout == cli.stdout


@pytest.mark.parametrize("kind", ["", "_static"])
def test_api_misuse_suite(binaries, smollm2_q4_1, corrupt, kind):
    r = subprocess.run([binaries["api_test" + kind], smollm2_q4_1, corrupt], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert b"all checks passed" in r.stdout


def test_sessions_on_threads_match_single_thread(binaries, smollm2_q4_1):
    r = subprocess.run([binaries["threads"], smollm2_q4_1], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert r.stdout.count(b"same as alone") == 3


def test_valgrind_clean(binaries, smollm2_q4_1, corrupt):
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is required (apt-get install valgrind; .ci/run installs it)"
    # valgrind 3.19 does not decode AVX-512: run the AVX2 kernels under it.
    env = {**os.environ, "AUTARK_ISA": "avx2"}
    for args in ([binaries["api_test"], smollm2_q4_1, corrupt], [binaries["generate"], smollm2_q4_1, "Hello", "4"],
                 [binaries["threads"], smollm2_q4_1, "3"]):
        r = subprocess.run([valgrind, "--error-exitcode=1", "--leak-check=full", "--errors-for-leak-kinds=definite", "-q", *map(str, args)],
                           capture_output=True, timeout=600, env=env)
        assert r.returncode == 0, r.stderr.decode()[-5000:]
