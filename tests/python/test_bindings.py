"""The UniFFI bindings from Python and Kotlin: the package written by bindings/build-python.sh,
imported and compared with the CLI (greedy and seeded text, chat, streaming, typed errors,
sessions on threads); the generated Kotlin compiled and run on the host JVM by
bindings/test-kotlin.sh."""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import subprocess
import sys
import threading

import pytest

from conftest import REPO_ROOT, cargo_env, normalize_dtype

PROMPTS = ["The capital of France is", "Zażółć gęślą jaźń, and"]


@pytest.fixture(scope="module")
def model(ak, smollm2_q4_1):
    return ak.Model.load(str(smollm2_q4_1))


def greedy(ak, **kw):
    return ak.SessionOptions(temperature=0.0, **kw)


def cli_text(autark, path, *args) -> str:
    out = autark.ok("run", path, *args).stdout.decode()
    assert out.endswith("\n"), repr(out)
    return out[:-1]


def make_sink(ak, stop_after=None, fail_after=None):
    class Sink(ak.TokenSink):
        def __init__(self):
            self.pieces = []

        def on_piece(self, piece):
            self.pieces.append(piece)
            if fail_after is not None and len(self.pieces) >= fail_after:
                raise ValueError("sink gave up")
            return stop_after is None or len(self.pieces) < stop_after

    return Sink()


# ---- model ----------------------------------------------------------------------------------


def test_metadata_matches_inspect(autark, model, smollm2_q4_1):
    info = autark.inspect(smollm2_q4_1)
    meta, cfg = info["metadata"], info["metadata"]["config"]
    m = model.metadata()
    assert m.architecture == meta["architecture"] == "llama"
    assert m.n_ctx_train == cfg["context_length"]
    for k in ["n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "vocab_size"]:
        assert getattr(m, k) == cfg[k], k
    tensors = info["tensors"]
    assert m.n_params == sum(math.prod(t["shape"]) for t in tensors)
    per_type = {}
    for t in tensors:
        d = normalize_dtype(t["dtype"])
        per_type[d] = per_type.get(d, 0) + math.prod(t["shape"])
    assert sorted(m.quant_types) == sorted(per_type)
    assert m.quant_types[0] == max(per_type, key=per_type.get) == "q4_1"
    assert m.file_bytes == info["file_bytes"] == smollm2_q4_1.stat().st_size
    assert m.has_chat_template
    assert m.quantized_by == meta["provenance"]["tool"]
    assert m.sources == ["SmolLM2-135M-Instruct.Q4_1.gguf"]


def test_tokenize_matches_cli(autark, model, smollm2_q4_1):
    assert model.tokenize(PROMPTS[1], True) == autark.tokenize(smollm2_q4_1, PROMPTS[1])


DEFAULTS_C = r"""
#include <stdio.h>
#include "autark.h"
int main(void) {
    autark_session_params p = autark_session_params_default();
    printf("%u %u %llu %.9g %d %.9g %.9g %.9g %d %d %d %u %d %u %d %u %u %.9g %.9g\n", p.n_ctx, p.n_threads,
           (unsigned long long)p.seed, p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.cache_type_k,
           p.cache_type_v, (int)p.context_shift, p.n_keep, p.speculative, p.draft_max, p.device,
           p.draft_min, p.repeat_last_n, p.frequency_penalty, p.presence_penalty);
    return 0;
}
"""


def cli_defaults(autark) -> dict[str, str]:
    """`[default: X]` of each flag in `autark run --help`."""
    out, flag, found = autark.ok("run", "--help").stdout.decode(), None, {}
    for line in out.splitlines():
        words = line.strip().split()
        if words and words[0].startswith("-"):
            flag = [w.rstrip(",").split("=")[0].split("<")[0] for w in words if w.startswith("--")][0]
        if "[default: " in line and flag:
            found[flag] = line.split("[default: ")[1].split("]")[0]
    return found


def test_defaults_agree(ak, autark, prefix, tmp_path):
    """Python's SessionOptions(), C's autark_session_params_default() and `autark run`'s flags
    default to the same values (all three come from runtime::DEFAULTS)."""
    o = ak.SessionOptions()
    py = [o.n_ctx, o.n_threads, o.seed, o.temperature, o.top_k, o.top_p, o.min_p, o.repeat_penalty]
    src = tmp_path / "defaults.c"
    src.write_text(DEFAULTS_C)
    exe = tmp_path / "defaults"
    r = subprocess.run(["gcc", str(src), "-I", str(prefix / "include"), "-L", str(prefix / "lib"), "-lautark",
                        f"-Wl,-rpath,{prefix / 'lib'}", "-o", str(exe)], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    c = [float(v) for v in subprocess.run([str(exe)], capture_output=True, check=True).stdout.split()]
    d = cli_defaults(autark)
    cli = [float(d[f]) for f in ["--ctx", "--threads", "--seed", "--temp", "--top-k", "--top-p", "--min-p",
                                 "--repeat-penalty"]]
    assert py == pytest.approx(c[:8]) and c[:8] == pytest.approx(cli), (py, c, cli)
    assert o.stop == [] and py == pytest.approx([0, 0, 0, 0.8, 40, 0.95, 0.05, 1.0])
    # The KV cache types (C codes AUTARK_CACHE_F32/F16/Q8_0 = 0/1/2) and the context shift.
    codes = {"f32": 0, "f16": 1, "q8_0": 2}
    assert [codes[o.cache_type_k], codes[o.cache_type_v]] == c[8:10]
    assert [d["--cache-type-k"], d["--cache-type-v"]] == [o.cache_type_k, o.cache_type_v]
    assert [int(o.context_shift), o.n_keep] == c[10:12] and int(d["--keep"]) == o.n_keep
    # Speculative decoding (C codes AUTARK_SPEC_OFF/LOOKUP/DRAFT = 0/1/2).
    modes = {"off": 0, "lookup": 1, "draft": 2}
    assert [modes[o.speculative], o.draft_max] == c[12:14] and int(d["--draft-max"]) == o.draft_max
    # The device (C codes AUTARK_DEVICE_CPU/CUDA = 0/1).
    devices = {"cpu": 0, "cuda": 1}
    assert [devices[o.device]] == c[14:15] and d["--device"] == o.device
    assert [o.draft_min] == c[15:16] and int(d["--draft-min"]) == o.draft_min
    # The penalties' window and the frequency and presence penalties.
    py = [o.repeat_last_n, o.frequency_penalty, o.presence_penalty]
    cli = [float(d[f]) for f in ["--repeat-last-n", "--frequency-penalty", "--presence-penalty"]]
    assert py == c[16:19] == cli == [64, 0, 0], (py, c[16:19], cli)


# ---- generation -----------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_generate_equals_cli(ak, autark, model, smollm2_q4_1, prompt):
    s = model.new_session(greedy(ak))
    text = s.generate(prompt, 24)
    assert text == cli_text(autark, smollm2_q4_1, "-p", prompt, "-n", 24, "--temp", 0)
    st = s.last_stats()
    assert st.generated_tokens == 24 and st.stop == ak.StopReason.MAX_TOKENS
    assert s.n_ctx() == 4096  # min(training context, 4096), as the CLI
    assert s.n_past() == st.prompt_tokens + 24


def test_sampled_generate_equals_cli(ak, autark, model, smollm2_q4_1):
    """Every sampling option reaches the sampler: same seed and settings, same text as the CLI."""
    s = model.new_session(ak.SessionOptions(seed=7, temperature=0.9, top_k=20, top_p=0.9, min_p=0.02,
                                            repeat_penalty=1.1, repeat_last_n=32, frequency_penalty=0.4,
                                            presence_penalty=0.3))
    text = s.generate(PROMPTS[0], 32)
    assert text == cli_text(autark, smollm2_q4_1, "-p", PROMPTS[0], "-n", 32, "--seed", 7, "--temp", 0.9,
                            "--top-k", 20, "--top-p", 0.9, "--min-p", 0.02, "--repeat-penalty", 1.1,
                            "--repeat-last-n", 32, "--frequency-penalty", 0.4, "--presence-penalty", 0.3)
    assert s.generate(PROMPTS[0], 32) == text  # the sampler restarts from the seed each call


def test_stop_string_equals_cli(ak, autark, model, smollm2_q4_1):
    s = model.new_session(greedy(ak, stop=["United"]))
    text = s.generate(PROMPTS[0], 24)
    assert text == cli_text(autark, smollm2_q4_1, "-p", PROMPTS[0], "-n", 24, "--temp", 0, "--stop", "United")
    assert "United" not in text and s.last_stats().stop == ak.StopReason.STOP_STRING


def test_chat_equals_cli(ak, autark, model, smollm2_q4_1):
    s = model.new_session(greedy(ak))
    msgs = [ak.ChatMessage(role="user", content="What is the capital of France?")]
    reply = s.chat(msgs, 32)
    assert reply == cli_text(autark, smollm2_q4_1, "--chat", "-p", msgs[0].content, "-n", 32, "--temp", 0)
    assert s.last_stats().prompt_tokens == len(model.tokenize(model.apply_chat_template(msgs, True), False))
    # The next turn re-uses the evaluated conversation.
    msgs += [ak.ChatMessage(role="assistant", content=reply), ak.ChatMessage(role="user", content="And Spain?")]
    s.chat(msgs, 8)
    st = s.last_stats()
    assert 0 < st.prompt_evaluated < st.prompt_tokens / 2, st


def test_reset(ak, model):
    s = model.new_session(greedy(ak))
    first = s.generate(PROMPTS[0], 12)
    s.reset()
    assert s.n_past() == 0 and s.last_stats() is None
    assert s.generate(PROMPTS[0], 12) == first
    assert s.last_stats().prompt_evaluated == s.last_stats().prompt_tokens


# ---- streaming ------------------------------------------------------------------------------


def test_stream_delivers_the_same_text_in_pieces(ak, model):
    text = model.new_session(greedy(ak)).generate(PROMPTS[1], 24)
    sink = make_sink(ak)
    st = model.new_session(greedy(ak)).generate_stream(PROMPTS[1], 24, sink)
    assert "".join(sink.pieces) == text
    assert len(sink.pieces) > 5 and all(sink.pieces)
    assert st.generated_tokens == 24 and st.stop == ak.StopReason.MAX_TOKENS


def test_sink_false_stops_generation(ak, model):
    text = model.new_session(greedy(ak)).generate(PROMPTS[0], 24)
    sink = make_sink(ak, stop_after=3)
    s = model.new_session(greedy(ak))
    st = s.generate_stream(PROMPTS[0], 24, sink)
    assert len(sink.pieces) == 3
    assert text.startswith("".join(sink.pieces))
    assert st.stop == ak.StopReason.CANCELLED and st.generated_tokens < 24


def test_chat_stream(ak, model):
    msgs = [ak.ChatMessage(role="user", content="Hi")]
    reply = model.new_session(greedy(ak)).chat(msgs, 16)
    sink = make_sink(ak)
    model.new_session(greedy(ak)).chat_stream(msgs, 16, sink)
    assert "".join(sink.pieces) == reply


def test_sink_exception_is_raised_and_session_stays_usable(ak, model):
    s = model.new_session(greedy(ak))
    with pytest.raises(ak.AutarkError.Sink, match="sink gave up"):
        s.generate_stream(PROMPTS[0], 24, make_sink(ak, fail_after=2))
    assert s.generate(PROMPTS[0], 12) == model.new_session(greedy(ak)).generate(PROMPTS[0], 12)


def test_sink_must_implement_token_sink(ak, model):
    class NotASink:
        def on_piece(self, piece):
            return True

    with pytest.raises(TypeError):
        model.new_session(greedy(ak)).generate_stream(PROMPTS[0], 4, NotASink())


# ---- errors ---------------------------------------------------------------------------------


def test_missing_file(ak, tmp_path):
    with pytest.raises(ak.AutarkError.Io) as e:
        ak.Model.load(str(tmp_path / "missing.autark"))
    assert "missing.autark" in e.value.detail
    assert isinstance(e.value, ak.AutarkError)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "flipped"])
def test_corrupt_file(ak, smollm2_q4_1, tmp_path, kind):
    data = bytearray(smollm2_q4_1.read_bytes())
    if kind == "truncated":
        data = data[:100_000]
    elif kind == "garbage":
        data = bytearray(b"\x00not a model\xff" * 1000)
    else:
        data[200] ^= 0xFF  # inside the checksummed metadata
    p = tmp_path / f"{kind}.autark"
    p.write_bytes(bytes(data))
    with pytest.raises(ak.AutarkError.CorruptModel):
        ak.Model.load(str(p))


def test_context_overflow(ak, model):
    s = model.new_session(greedy(ak, n_ctx=16))
    prompt = " ".join(["one two three four five six seven eight nine ten"] * 3)
    n = len(model.tokenize(prompt, True))
    with pytest.raises(ak.AutarkError.ContextOverflow) as e:
        s.generate(prompt, 4)
    assert (e.value.needed, e.value.n_ctx) == (n, 16) and n > 16
    assert "context overflow" in e.value.detail
    # The session is still usable after the error.
    assert s.generate("Hi", 4) == model.new_session(greedy(ak, n_ctx=16)).generate("Hi", 4)


@pytest.mark.parametrize("bad", [dict(top_p=0.0), dict(temperature=-1.0), dict(min_p=2.0),
                                 dict(repeat_penalty=0.0), dict(n_ctx=10_000_000), dict(cache_type_k="q4_0"),
                                 dict(cache_type_v=""), dict(speculative="ngram"),
                                 dict(speculative="lookup", draft_max=0),
                                 dict(speculative="lookup", draft_max=4, draft_min=5),
                                 dict(frequency_penalty=float("nan")), dict(presence_penalty=float("inf"))])
def test_invalid_options(ak, model, bad):
    with pytest.raises(ak.AutarkError.InvalidArgument):
        model.new_session(ak.SessionOptions(**bad))


def test_invalid_arguments_are_python_errors(ak, model):
    s = model.new_session(greedy(ak))
    with pytest.raises(ValueError):
        s.generate(PROMPTS[0], -1)  # max_tokens is unsigned
    with pytest.raises(TypeError):
        s.generate(b"bytes", 4)


# ---- threads --------------------------------------------------------------------------------


def test_two_sessions_on_two_threads(ak, model):
    alone = {p: model.new_session(greedy(ak, n_threads=1)).generate(p, 24) for p in PROMPTS}
    sessions = {p: model.new_session(greedy(ak, n_threads=1)) for p in PROMPTS}
    barrier = threading.Barrier(len(PROMPTS))
    results, errors = {}, []

    def work(p):
        try:
            barrier.wait()
            results[p] = sessions[p].generate(p, 24)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert results == alone


def test_one_session_shared_by_threads_serialises(ak, model):
    """Calls on one session from several threads are serialised by its lock, not interleaved."""
    s = model.new_session(greedy(ak))
    expected = model.new_session(greedy(ak)).generate(PROMPTS[0], 16)
    results = []
    threads = [threading.Thread(target=lambda: results.append(s.generate(PROMPTS[0], 16))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [expected] * 3


# ---- Kotlin ---------------------------------------------------------------------------------


def test_kotlin(autark, smollm2_q4_1):
    """Generated Kotlin compiled with kotlinc (npm `kotlin-compiler`) and run on the JVM via JNA."""
    # Built as the other fixtures build the C library and the bindings (conftest.cargo_env).
    r = subprocess.run([str(REPO_ROOT / "bindings/test-kotlin.sh"), str(smollm2_q4_1)], capture_output=True,
                       cwd=REPO_ROOT, timeout=900, env=cargo_env())
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert r.returncode == 0, f"bindings/test-kotlin.sh failed ({r.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
    expected = cli_text(autark, smollm2_q4_1, "-p", PROMPTS[0], "-n", 24, "--temp", 0)
    assert "kotlin: all checks passed" in out.split("\n"), out[-3000:]
    text = out.split("<<<", 1)[1].split(">>>", 1)[0]  # the greedy text, printed between markers
    assert text == expected


# ---- limits and cancellation ------------------------------------------------------------------


def test_cancel_from_another_thread(ak, model):
    s = model.new_session(ak.SessionOptions(temperature=0.9, seed=1, n_ctx=512))
    started = threading.Event()
    release = threading.Event()

    class Sink(ak.TokenSink):
        def __init__(self):
            self.n = 0

        def on_piece(self, piece):
            self.n += 1
            if self.n == 1:
                started.set()
                release.wait(30)  # the other thread cancels meanwhile
            return True

    def canceller():
        started.wait(30)
        s.cancel()  # does not take the session's lock: works while generate holds it
        release.set()

    t = threading.Thread(target=canceller)
    t.start()
    sink = Sink()
    st = s.generate_stream("Once upon a time", 200, sink)
    t.join()
    assert st.stop == ak.StopReason.CANCELLED and st.generated_tokens < 200
    assert s.generate("Once upon a time", 3) is not None  # the request was consumed


def test_memory_budget(ak, model):
    s = model.new_session(greedy(ak, n_ctx=256))
    need = s.memory_bytes()
    assert need > 0
    model.new_session(greedy(ak, n_ctx=256, max_memory_bytes=need))
    with pytest.raises(ak.AutarkError.OutOfMemory):
        model.new_session(greedy(ak, n_ctx=256, max_memory_bytes=need - 1))


# ---- session state ---------------------------------------------------------------------------


@pytest.mark.parametrize("cache", ["f32", "q8_0"])
def test_save_load_continue(ak, model, tmp_path, cache):
    """A sampled generation of 40 tokens equals 16, a save, a load into a new session and 24
    more; the loaded session keeps the cache types; another model's state is refused."""
    opts = ak.SessionOptions(seed=11, temperature=0.9, n_ctx=256, cache_type_k=cache, cache_type_v=cache)
    whole = model.new_session(opts).generate(PROMPTS[0], 40)
    s = model.new_session(opts)
    first = s.generate(PROMPTS[0], 16)
    path = str(tmp_path / "s.state")
    s.save(path)
    r = model.load_session(path, ak.SessionOptions(n_threads=1, seed=11, temperature=0.9))
    assert r.n_past() == s.n_past() and r.memory_bytes() == s.memory_bytes()
    assert first + r.continue_generation(24) == whole
    # In place, without a file.
    assert first + s.continue_generation(24) == whole
    (tmp_path / "bad.state").write_bytes(b"AUTARKSS" + bytes(40))
    with pytest.raises(ak.AutarkError.CorruptState):
        model.load_session(str(tmp_path / "bad.state"), ak.SessionOptions())
    # Another model's state: the model identity in the header changed, the checksum resealed.
    st = bytearray((tmp_path / "s.state").read_bytes())
    at = st.index(b'"model":"') + len('"model":"')
    st[at] = ord("0") if st[at] != ord("0") else ord("1")
    st[-32:] = hashlib.sha256(bytes(st[:-32])).digest()
    (tmp_path / "wrong.state").write_bytes(bytes(st))
    with pytest.raises(ak.AutarkError.StateModelMismatch):
        model.load_session(str(tmp_path / "wrong.state"), ak.SessionOptions())


def test_speculative_decoding_gives_the_plain_text(ak, model):
    """Prompt lookup and a draft model (here the model itself: every draft accepted) give the
    text of plain decoding, greedy and seeded; the counts come back in the stats."""
    prompt = "Say this three times: the cat sat on the mat, the cat sat on the mat"
    for temperature in (0.0, 0.7):
        opts = dict(temperature=temperature, seed=5, n_ctx=256)
        plain = model.new_session(ak.SessionOptions(**opts)).generate(prompt, 40)
        s = model.new_session(ak.SessionOptions(speculative="lookup", draft_max=6, **opts))
        assert s.generate(prompt, 40) == plain
        st = s.last_stats()
        assert st.drafted_tokens > 0 and 0 < st.accepted_drafts <= st.drafted_tokens
    opts = dict(temperature=0.0, n_ctx=256)
    plain = model.new_session(ak.SessionOptions(**opts)).generate(prompt, 40)
    s = model.new_session(ak.SessionOptions(speculative="draft", **opts))
    with pytest.raises(ak.AutarkError.InvalidArgument):
        s.generate(prompt, 4)  # no draft model yet
    s.set_draft(model)
    assert s.generate(prompt, 40) == plain
    st = s.last_stats()
    assert st.drafted_tokens > 0 and st.accepted_drafts == st.drafted_tokens
    s.set_draft(None)
