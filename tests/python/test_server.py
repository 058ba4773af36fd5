"""`autark serve` end to end: the official `openai` client (streaming and not), SSE framing byte
for byte, 16 concurrent clients each getting exactly what the same request gets alone, client
disconnects, a full queue, memory back to its idle level, and a clean SIGTERM."""

from __future__ import annotations

import http.client
import os
import json
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import REPO_ROOT

import openai  # tests/requirements.txt (scripts/test.sh installs it)


class Server:
    def __init__(self, autark_bin, model, *args):
        self.proc = subprocess.Popen(
            [str(autark_bin), "serve", str(model), "--port", "0", *map(str, args)],
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        self.port = None
        self.log = []
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline().decode()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            if "ready" in line:
                break
        assert self.port, "".join(self.log)
        threading.Thread(target=lambda: [self.log.append(l.decode()) for l in self.proc.stderr], daemon=True).start()
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="none", max_retries=0)

    def raw(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()

    def metrics(self) -> dict:
        _, _, body = self.raw("GET", "/metrics")
        return {l.split()[0]: float(l.split()[1]) for l in body.decode().splitlines() if l and not l.startswith("#")}

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(autark_bin, smollm2_q4_1):
    s = Server(autark_bin, smollm2_q4_1, "--parallel", 8, "--ctx-per-slot", 512, "-t", 2)
    yield s
    if s.proc.poll() is None:
        s.stop()


def chat(server, content, **kw):
    r = server.client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": content}], **kw
    )
    return r.choices[0].message.content, r.choices[0].finish_reason


def test_chat_equals_autark_run(server, autark, smollm2_q4_1):
    text, finish = chat(server, "What is the capital of France?", max_tokens=20, temperature=0)
    assert finish in ("stop", "length")
    run = autark.ok("run", smollm2_q4_1, "--chat", "-p", "What is the capital of France?", "-n", 20, "--temp", 0)
    assert text == run.stdout.decode().rstrip("\n")
    assert text


def test_streaming_equals_whole(server):
    whole, finish = chat(server, "Name three colors.", max_tokens=24, temperature=0)
    stream = server.client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name three colors."}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, reasons, usage = [], [], None
    for ch in stream:
        if ch.usage:
            usage = ch.usage
        for c in ch.choices:
            parts.append(c.delta.content or "")
            reasons.append(c.finish_reason)
    assert "".join(parts) == whole
    assert reasons[-1] == finish
    assert usage is not None and usage.completion_tokens > 0


def test_completions(server):
    r = server.client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=8, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8
    s = server.client.completions.create(
        model="smollm2", prompt="Once upon a time", max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in s) == r.choices[0].text


def test_logprobs_against_numpy(server, autark, smollm2_q4_1, tmp_path):
    """The first generated token's alternatives against numpy's log-softmax of the prompt's last
    logits (`autark logits`, the same kernels' numbers), and each greedy token is its own most
    likely alternative."""
    prompt = "The capital of France is"
    r = server.client.completions.create(model="smollm2", prompt=prompt, max_tokens=6, temperature=0, logprobs=5)
    lp = r.choices[0].logprobs
    ids = autark.tokenize(smollm2_q4_1, prompt)
    assert len(ids) == r.usage.prompt_tokens
    last = autark.logits(smollm2_q4_1, ids, tmp_path / "logits.f32")[-1].astype(np.float64)
    ref = last - (last.max() + np.log(np.exp(last - last.max()).sum()))
    want = np.sort(ref)[::-1][:5]
    np.testing.assert_allclose(sorted(lp.top_logprobs[0].values(), reverse=True), want, atol=2e-5)
    assert abs(lp.token_logprobs[0] - want[0]) < 2e-5
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    text = r.choices[0].text
    assert "".join(lp.tokens) == text
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(6)]
    for tok, l, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 5 and l <= 0
        assert max(top.values()) == l and top[tok] == l


def log_softmax(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    top = rows.max(axis=-1, keepdims=True)
    return rows - (top + np.log(np.exp(rows - top).sum(axis=-1, keepdims=True)))


def test_echo_scores_the_prompt_against_numpy(server, autark, smollm2_q4_1, tmp_path):
    """`echo` with `logprobs` (how lm-evaluation-harness scores continuations): every prompt token
    after the first against numpy's log-softmax of `autark logits` at the position before it, the
    top alternatives too, over a prompt longer than one prefill chunk (64 tokens: the scored
    chunks run outside the shared passes); as token ids with the harness's payload, as text, and
    streamed, all alike; the completion continues as without `echo`."""
    text = ("The committee met on Tuesday to review the budget. After a long discussion about the "
            "costs of the new library, the roof repairs and the school buses, the members agreed "
            "to postpone the vote until the treasurer could present a revised plan. Everyone "
            "hoped that the next meeting would be shorter, since the last one had run past midnight and "
            "several members had missed the final bus home.")
    ids = autark.tokenize(smollm2_q4_1, text)
    assert len(ids) > 64
    ref = log_softmax(autark.logits(smollm2_q4_1, ids, tmp_path / "logits.f32"))
    # lm-evaluation-harness's loglikelihood request: token ids, one new token.
    r = server.client.completions.create(
        model="smollm2", prompt=[ids], max_tokens=1, temperature=0, logprobs=3, echo=True, seed=1234
    )
    lp = r.choices[0].logprobs
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 1
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(ids) + 1
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    want = np.array([ref[i - 1, ids[i]] for i in range(1, len(ids))])
    np.testing.assert_allclose(lp.token_logprobs[1 : len(ids)], want, atol=2e-5)
    for i in range(1, len(ids)):
        np.testing.assert_allclose(sorted(lp.top_logprobs[i].values(), reverse=True), np.sort(ref[i - 1])[::-1][:3], atol=2e-5)
    # The new token is the greedy one after the prompt, and the text is the prompt's and its.
    assert abs(lp.token_logprobs[-1] - ref[-1].max()) < 2e-5
    alone = server.client.completions.create(model="smollm2", prompt=text, max_tokens=1, temperature=0)
    assert r.choices[0].text == text + alone.choices[0].text
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(len(lp.tokens))]
    # The prompt as text, scored only (no new token); and streamed, the prompt comes first.
    only = server.client.completions.create(model="smollm2", prompt=text, max_tokens=0, logprobs=3, echo=True)
    assert only.choices[0].text == text and only.choices[0].finish_reason == "length"
    assert only.choices[0].logprobs.token_logprobs == lp.token_logprobs[:-1]
    chunks = list(server.client.completions.create(
        model="smollm2", prompt=text, max_tokens=1, temperature=0, logprobs=3, echo=True, stream=True
    ))
    assert chunks[0].choices[0].text == text
    streamed = [x for c in chunks if c.choices[0].logprobs for x in c.choices[0].logprobs.token_logprobs]
    assert streamed == lp.token_logprobs
    # Without logprobs, only the text comes back.
    plain = server.client.completions.create(model="smollm2", prompt=text, max_tokens=1, temperature=0, echo=True)
    assert plain.choices[0].text == r.choices[0].text and plain.choices[0].logprobs is None


def test_several_prompts_and_n_each_equal_their_request_alone(server):
    """Several prompts (text and token ids) with `n` samples each: choice p·n + j is what prompt
    p with seed + j gives alone (continuous batching keeps each sequence's numbers), streamed
    the same, and the usage counts each prompt once and every choice's tokens."""
    prompts = ["The capital of France is", "1, 2, 3,", [504, 3575, 282]]
    kw = dict(model="smollm2", max_tokens=6, temperature=1.0, seed=7)
    r = server.client.completions.create(prompt=prompts, n=2, **kw)
    assert [c.index for c in r.choices] == list(range(6))
    alone = [server.client.completions.create(prompt=p, **{**kw, "seed": 7 + j}) for p in prompts for j in range(2)]
    assert [c.text for c in r.choices] == [a.choices[0].text for a in alone]
    assert [c.finish_reason for c in r.choices] == [a.choices[0].finish_reason for a in alone]
    assert r.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone[::2])
    assert r.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone)
    assert r.choices[0].text != r.choices[1].text or r.choices[2].text != r.choices[3].text
    texts, reasons = ["" for _ in range(6)], [None] * 6
    for ch in server.client.completions.create(prompt=prompts, n=2, stream=True, **kw):
        for c in ch.choices:
            texts[c.index] += c.text
            reasons[c.index] = c.finish_reason or reasons[c.index]
    assert texts == [c.text for c in r.choices] and reasons == [c.finish_reason for c in r.choices]
    # Chat: n samples of one conversation.
    msgs = [{"role": "user", "content": "Name a fruit."}]
    c = server.client.chat.completions.create(model="smollm2", messages=msgs, n=3, max_tokens=8, seed=3, temperature=1.0)
    one = [server.client.chat.completions.create(model="smollm2", messages=msgs, max_tokens=8, seed=3 + j, temperature=1.0)
           for j in range(3)]
    assert [x.message.content for x in c.choices] == [o.choices[0].message.content for o in one]


def test_prompt_forms_refused_with_the_field_named(server):
    """Token ids outside the vocabulary, mixed forms, too many choices, `best_of` other than
    `n` and `max_tokens: 0` without `echo` are 400s naming the field."""
    for body, param, words in [
        ({"prompt": [504, 49152]}, "prompt", "49152 is not a token id below 49152"),
        ({"prompt": [504, -1]}, "prompt", "not a token id"),
        ({"prompt": [[1, 2], [3, 70000]]}, "prompt", "70000 is not a token id"),
        ({"prompt": ["a"] * 17}, "prompt", "17 prompts; at most 16"),
        ({"prompt": ["a", "b", "c"], "n": 6}, "prompt", "3 prompts × n = 6 choices; at most 16"),
        ({"prompt": "a", "n": 17}, "n", "17 is outside 1..=16"),
        ({"prompt": "a", "n": 0}, "n", "0 is outside 1..=16"),
        ({"prompt": "a", "n": 2, "best_of": 3}, "best_of", "only best_of = n"),
        ({"prompt": [1, "b"]}, "prompt", "expected a string, an array of token ids"),
        ({"prompt": [["a"]]}, "prompt", "expected a string, an array of token ids"),
        ({"prompt": []}, "prompt", "empty"),
        ({"prompt": ["a", ""]}, "prompt", "empty"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens", "0 is outside 1..="),
    ]:
        status, _, raw = server.raw("POST", "/v1/completions", json.dumps(body))
        err = json.loads(raw)["error"]
        assert status == 400 and err["param"] == param and words in err["message"], (body, err)


def test_logit_bias_bans_and_forces(server, autark, smollm2_q4_1):
    """logit_bias −100 on the greedy first token gives the runner-up (by the unbiased
    logprobs), +100 on an unlikely token forces it."""
    kw = dict(model="smollm2", prompt="The capital of France is", max_tokens=1, temperature=0, logprobs=2)
    r = server.client.completions.create(**kw)
    first, second = sorted(r.choices[0].logprobs.top_logprobs[0].items(), key=lambda kv: -kv[1])
    assert r.choices[0].text == first[0]
    (fid,) = autark.tokenize(smollm2_q4_1, first[0])
    banned = server.client.completions.create(**kw, logit_bias={str(fid): -100})
    assert banned.choices[0].text == second[0]
    # The logprobs stay the model's own (before the bias).
    assert banned.choices[0].logprobs.top_logprobs[0] == r.choices[0].logprobs.top_logprobs[0]
    (bid,) = autark.tokenize(smollm2_q4_1, " banana")
    forced = server.client.completions.create(**kw, logit_bias={str(bid): 100})
    assert forced.choices[0].text == " banana"
    for bad in ({"x": 1}, {"99999999": 1}, {str(bid): 101}):
        with pytest.raises(openai.BadRequestError):
            server.client.completions.create(**kw, logit_bias=bad)


def chat_logprobs(server, stream=False, **kw):
    kw = dict(
        model="smollm2",
        messages=[{"role": "user", "content": "How do you say 'thank you' in Japanese and in Greek?"}],
        max_tokens=40, temperature=0, logprobs=True, top_logprobs=3, **kw,
    )
    if not stream:
        r = server.client.chat.completions.create(**kw)
        return r.choices[0].message.content, r.choices[0].logprobs.content, r.usage
    text, tokens = "", []
    for ch in server.client.chat.completions.create(stream=True, **kw):
        for c in ch.choices:
            text += c.delta.content or ""
            tokens += c.logprobs.content if c.logprobs else []
    return text, tokens, None


def test_chat_logprobs_bytes_streamed_and_stop(server):
    """Chat logprobs: one entry per generated token whose bytes rebuild the reply (characters
    split across tokens included), the greedy token first among its alternatives in decreasing
    order; streamed the same; with a stop string, the reply is a prefix of the tokens' bytes."""
    text, tokens, usage = chat_logprobs(server)
    assert len(tokens) == usage.completion_tokens
    joined = b"".join(bytes(t.bytes) for t in tokens)
    assert joined.decode() == text
    assert any(not t.token.isascii() for t in tokens), "the reply should hold non-ASCII characters"
    for t in tokens:
        assert t.token == bytes(t.bytes).decode(errors="replace") and t.logprob <= 0
        assert (t.top_logprobs[0].bytes, t.top_logprobs[0].logprob) == (t.bytes, t.logprob)
        assert all(a.logprob >= b.logprob for a, b in zip(t.top_logprobs, t.top_logprobs[1:]))
    s_text, s_tokens, _ = chat_logprobs(server, stream=True)
    assert s_text == text
    assert [t.model_dump() for t in s_tokens] == [t.model_dump() for t in tokens]
    cut = text[len(text) // 2:][:3]
    c_text, c_tokens, _ = chat_logprobs(server, stop=[cut])
    assert c_text == text[: text.index(cut)]
    assert b"".join(bytes(t.bytes) for t in c_tokens).startswith(c_text.encode())
    assert len(c_tokens) < len(tokens)
    plain = server.client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert plain.choices[0].logprobs is None


def test_penalties_equal_autark_run(server, autark, smollm2_q4_1):
    """frequency_penalty / presence_penalty through the server give what `autark run` gives with
    the same penalties, and change a greedy reply."""
    q = "Write a list of fruits."
    kw = dict(max_tokens=30, temperature=0)
    plain, _ = chat(server, q, **kw)
    text, _ = chat(server, q, frequency_penalty=1.5, presence_penalty=1.0, **kw)
    run = autark.ok("run", smollm2_q4_1, "--chat", "-p", q, "-n", 30, "--temp", 0,
                    "--frequency-penalty", 1.5, "--presence-penalty", 1.0)
    assert text == run.stdout.decode().rstrip("\n")
    assert text != plain


def test_prompt_cache_reuses_what_a_slot_holds(autark_bin, smollm2_q4_1, server):
    """`--prompt-cache`: a chat's second turn and a repeated prompt evaluate only what is new
    (usage's `cached_tokens`, the metrics) and reply exactly as the server without the cache (the
    module's); a request goes to the slot holding its beginning even after another request used
    the other slot; scoring a prompt (`echo` + `logprobs`) evaluates all of it."""
    s = Server(autark_bin, smollm2_q4_1, "--parallel", 2, "--ctx-per-slot", 512, "-t", 2, "--prompt-cache")
    try:
        kw = dict(model="smollm2", max_tokens=12, temperature=0)
        msgs = [{"role": "user", "content": "What is the capital of France?"}]
        a1 = s.client.chat.completions.create(messages=msgs, **kw)
        assert a1.usage.prompt_tokens_details.cached_tokens == 0
        # Another conversation in between takes the other (empty) slot.
        other = s.client.completions.create(prompt="Once upon a time there was", **kw)
        assert other.usage.prompt_tokens_details.cached_tokens == 0
        msgs2 = msgs + [
            {"role": "assistant", "content": a1.choices[0].message.content},
            {"role": "user", "content": "And the capital of Italy?"},
        ]
        a2 = s.client.chat.completions.create(messages=msgs2, **kw)
        ref = server.client.chat.completions.create(messages=msgs2, **kw)
        assert ref.usage.prompt_tokens_details.cached_tokens == 0
        assert a2.choices[0].message.content == ref.choices[0].message.content
        assert a2.usage.prompt_tokens == ref.usage.prompt_tokens
        assert a1.usage.prompt_tokens <= a2.usage.prompt_tokens_details.cached_tokens < a2.usage.prompt_tokens
        # The same prompt again: all but its last token.
        again = s.client.completions.create(prompt="Once upon a time there was", **kw)
        assert again.usage.prompt_tokens_details.cached_tokens == other.usage.prompt_tokens - 1
        assert again.choices[0].text == other.choices[0].text
        scored = s.client.completions.create(model="smollm2", prompt="Once upon a time there was", max_tokens=0, echo=True, logprobs=2)
        assert scored.usage.prompt_tokens_details.cached_tokens == 0
        want = server.client.completions.create(model="smollm2", prompt="Once upon a time there was", max_tokens=0, echo=True, logprobs=2)
        assert scored.choices[0].logprobs.token_logprobs == want.choices[0].logprobs.token_logprobs
        m = s.metrics()
        cached = a2.usage.prompt_tokens_details.cached_tokens + again.usage.prompt_tokens_details.cached_tokens
        assert m["autark_prompt_tokens_cached_total"] == cached
        assert m["autark_kv_cache_prompt_cache_bytes"] > 0
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_prompt_cache_gives_way_to_the_kv_budget(autark_bin, smollm2_q4_1):
    """With a KV budget of one slot's context, an idle slot's cache is released when the next
    request needs the room (so the first prompt is no longer cached), and is kept when it fits."""
    # 512 tokens × 30 layers × 2 × 3 KV heads × 64 × 4 bytes = 22.5 MiB: one slot's context.
    s = Server(autark_bin, smollm2_q4_1, "--parallel", 2, "--ctx-per-slot", 512, "-t", 2,
               "--prompt-cache", "--kv-budget-mib", 24)
    try:
        long_a = "Alpha beta gamma delta. " * 60
        long_b = "One two three four five. " * 60
        kw = dict(model="smollm2", max_tokens=100, temperature=0)
        first = s.client.completions.create(prompt=long_a, **kw)
        assert first.usage.prompt_tokens > 250
        s.client.completions.create(prompt=long_b, **kw)
        again = s.client.completions.create(prompt=long_a, **kw)
        assert again.usage.prompt_tokens_details.cached_tokens == 0
        assert again.choices[0].text == first.choices[0].text
        # Short requests fit beside that cache: it stays.
        short = dict(model="smollm2", max_tokens=4, temperature=0)
        s.client.completions.create(prompt="Hello there, how are you?", **short)
        assert s.client.completions.create(prompt="Hello there, how are you?", **short).usage.prompt_tokens_details.cached_tokens > 0
        third = s.client.completions.create(prompt=long_a, **kw)
        assert third.usage.prompt_tokens_details.cached_tokens == first.usage.prompt_tokens - 1
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_cors_routes_without_v1_and_model_retrieval(autark_bin, smollm2_q4_1, server):
    """`--cors-origin`: a browser's preflight from that origin is answered and responses carry
    its `Access-Control-Allow-Origin`; other origins, and every origin without the flag, get
    none. The OpenAI routes also answer without `/v1`; `models.retrieve` finds the model."""
    s = Server(autark_bin, smollm2_q4_1, "--parallel", 1, "--ctx-per-slot", 256, "-t", 1,
               "--cors-origin", "http://localhost:3000")
    try:
        pre = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type, authorization"}
        status, h, _ = s.raw("OPTIONS", "/v1/chat/completions", headers=pre)
        h = {k.lower(): v for k, v in h.items()}
        assert status == 204 and h["access-control-allow-origin"] == "http://localhost:3000", h
        assert "POST" in h["access-control-allow-methods"] and "content-type" in h["access-control-allow-headers"]
        body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "stream": True})
        status, h, data = s.raw("POST", "/v1/chat/completions", body, {"Origin": "http://localhost:3000"})
        assert status == 200 and data.endswith(b"data: [DONE]\n\n")
        assert {k.lower(): v for k, v in h.items()}["access-control-allow-origin"] == "http://localhost:3000"
        for srv, origin in ((s, "http://evil.example"), (server, "http://localhost:3000")):
            status, h, _ = srv.raw("OPTIONS", "/v1/chat/completions", headers={**pre, "Origin": origin})
            assert status == 405 and "access-control-allow-origin" not in {k.lower() for k in h}
            _, h, _ = srv.raw("GET", "/v1/models", headers={"Origin": origin})
            assert "access-control-allow-origin" not in {k.lower() for k in h}
        name = s.client.models.list().data[0].id
        assert s.client.models.retrieve(name).id == name
        with pytest.raises(openai.NotFoundError):
            s.client.models.retrieve("gpt-4")
        root = openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}", api_key="none", max_retries=0)
        r = root.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert r.usage.completion_tokens == 2 and root.models.list().data[0].id == name
    finally:
        assert s.stop() == 0


def test_models_and_health(server):
    assert [m.id for m in server.client.models.list()] == ["smollm2-q4_1"]
    assert server.raw("GET", "/health")[0] == 200


def test_sse_framing_bytes(server):
    body = json.dumps({"prompt": "The sky is", "max_tokens": 6, "temperature": 0, "stream": True})
    status, headers, raw = server.raw("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert raw.endswith(b"data: [DONE]\n\n")
    assert b"\r" not in raw
    events = raw[: -len(b"data: [DONE]\n\n")].split(b"\n\n")
    assert events[-1] == b""
    events = events[:-1]
    assert len(events) == 7  # six tokens and the finish chunk
    ids = set()
    for i, e in enumerate(events):
        assert e.startswith(b"data: ") and b"\n" not in e
        obj = json.loads(e[len(b"data: "):])
        # Compact JSON, keys in the order written: the exact bytes.
        assert e == b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        assert obj["object"] == "text_completion"
        ids.add(obj["id"])
        assert obj["choices"][0]["finish_reason"] == (None if i < 6 else "length")
    assert len(ids) == 1


def test_json_schema_response_format(server):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    text, finish = chat(
        server,
        "Describe a person as JSON.",
        max_tokens=64,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    assert finish == "stop"
    v = json.loads(text)
    assert set(v) == {"name", "age"} and isinstance(v["age"], int)


PROMPTS = [
    "Hi.",
    "What is 2 plus 2?",
    "Write a haiku about the sea.",
    "List the planets of the solar system in order from the sun, with one fact about each. " * 3,
    "Explain photosynthesis to a child.",
    "Translate 'good morning' to French.",
    "Why is the sky blue? " + "Please be precise and give the physical reason. " * 8,
    "Tell me a joke about computers.",
]


def one(server, i):
    """Request i of 16: greedy for even i, seeded sampling for odd i; mixed prompt lengths."""
    kw = {"temperature": 0} if i % 2 == 0 else {"temperature": 0.8, "seed": 1000 + i}
    text, finish = chat(server, PROMPTS[i % len(PROMPTS)] + f" ({i})", max_tokens=16 + i % 3 * 4, **kw)
    return text, finish


def test_16_concurrent_equal_alone_and_memory_returns(server):
    alone = [one(server, i) for i in range(16)]
    rounds, rss = [], []
    for _ in range(2):
        with ThreadPoolExecutor(16) as ex:
            rounds.append(list(ex.map(lambda i: one(server, i), range(16))))
        m = server.metrics()
        assert m["autark_slots_busy"] == 0 and m["autark_queue_length"] == 0
        assert m["autark_kv_cache_used_bytes"] == 0
        rss.append(server.rss_kib())
    for r in rounds:
        assert r == alone
    # Slots are allocated once: a second busy round leaves memory about where the first left it.
    # The allocator's arenas (16 client threads) still creep by 2–9 MiB from round to round
    # (measured with this binary and the one before); a request whose KV memory was not returned
    # would add its whole cache (16 requests × ~60 tokens × 46 KiB ≈ 44 MiB a round).
    assert rss[1] <= rss[0] + 16 * 1024, rss


def test_kv_budget_queues_what_does_not_fit(autark_bin, smollm2_q4_1):
    """Each request reserves the KV of its prompt and max_tokens from --kv-budget-mib: long
    requests wait for room even while slots are free, short ones run four at once, and the
    reserved bytes never exceed the budget."""
    s = Server(autark_bin, smollm2_q4_1, "--parallel", 4, "--ctx-per-slot", 256, "--kv-budget-mib", 20, "-t", 2)
    try:
        budget = s.metrics()["autark_kv_cache_budget_bytes"]
        assert budget == 20 << 20

        def run(max_tokens, n=4):
            seen = {"busy": 0, "reserved": 0, "queued": 0}
            body = lambda i: json.dumps(
                {"prompt": f"Story number {i}: once upon a time", "max_tokens": max_tokens, "temperature": 0}
            )
            with ThreadPoolExecutor(n) as ex:
                futs = [ex.submit(s.raw, "POST", "/v1/completions", body(i)) for i in range(n)]
                while not all(f.done() for f in futs):
                    m = s.metrics()
                    seen["busy"] = max(seen["busy"], m["autark_slots_busy"])
                    seen["reserved"] = max(seen["reserved"], m["autark_kv_cache_reserved_bytes"])
                    seen["queued"] = max(seen["queued"], m["autark_queue_length"])
                    time.sleep(0.01)
                assert all(f.result()[0] == 200 for f in futs)
            return seen

        # ~210 tokens × 46 KiB (SmolLM2, f32 cache) ≈ 9.5 MiB each: two fit in 20 MiB, not three.
        long = run(200)
        assert long["busy"] == 2 and long["queued"] >= 1, long
        assert 0 < long["reserved"] <= budget, long
        # ~70 tokens ≈ 3.2 MiB each: all four run together.
        short = run(60)
        assert short["busy"] == 4, short
        m = s.metrics()
        assert m["autark_kv_cache_reserved_bytes"] == 0 and m["autark_slots_busy"] == 0
    finally:
        s.stop()


def test_kv_budget_smaller_than_a_slot_is_refused(autark_bin, smollm2_q4_1):
    p = subprocess.run(
        [str(autark_bin), "serve", str(smollm2_q4_1), "--port", "0", "--ctx-per-slot", "512", "--kv-budget-mib", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode != 0
    assert "--kv-budget-mib" in p.stderr and "less than one slot's whole context" in p.stderr, p.stderr


def test_disconnect_cancels(server):
    before = server.metrics()["autark_requests_cancelled_total"]
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = json.dumps({"prompt": "Count from one to a thousand:", "max_tokens": 500, "temperature": 0, "stream": True})
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    r.fp.read(300)
    c.sock.close()
    c.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        m = server.metrics()
        if m["autark_requests_cancelled_total"] > before and m["autark_slots_busy"] == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the request was not cancelled: {m}")
    assert m["autark_generated_tokens_total"] < 10_000


def test_full_queue_503_and_drain(autark_bin, smollm2_q4_1):
    s = Server(autark_bin, smollm2_q4_1, "--parallel", 1, "--max-queue", 1, "--ctx-per-slot", 1024, "-t", 2)
    try:
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 900, "temperature": 0})
        with ThreadPoolExecutor(2) as ex:
            running = ex.submit(s.raw, "POST", "/v1/completions", body)
            time.sleep(0.3)
            # The queued request is short: its client's timeout covers the running one too.
            short = json.dumps({"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0})
            queued = ex.submit(s.raw, "POST", "/v1/completions", short)
            time.sleep(0.3)
            status, headers, raw = s.raw("POST", "/v1/completions", body)
            assert status == 503, raw
            assert json.loads(raw)["error"]["code"] == "unavailable"
            # SIGTERM while two run: both finish, new ones are refused, then a clean exit.
            s.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            assert s.raw("POST", "/v1/completions", body)[0] == 503
            assert s.raw("GET", "/health")[0] == 503
            assert running.result()[0] == 200
            assert queued.result()[0] == 200
        assert s.proc.wait(timeout=30) == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


def test_tools(server):
    msgs = [{"role": "user", "content": "What is 2 plus 3?"}]
    r = server.client.chat.completions.create(
        model="smollm2", messages=msgs, tools=[ADD], tool_choice="required", max_tokens=60, temperature=0
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    call = c.message.tool_calls[0]
    assert call.function.name == "add"
    args = json.loads(call.function.arguments)
    assert set(args) == {"a", "b"} and all(isinstance(v, int) for v in args.values())
    s = server.client.chat.completions.create(
        model="smollm2", messages=msgs, tools=[ADD], tool_choice="required", max_tokens=60, temperature=0, stream=True
    )
    calls, reasons = [], []
    for ch in s:
        for ch_c in ch.choices:
            calls += ch_c.delta.tool_calls or []
            reasons.append(ch_c.finish_reason)
    assert reasons[-1] == "tool_calls"
    assert [(t.function.name, t.function.arguments) for t in calls] == [(call.function.name, call.function.arguments)]


def test_tool_call_sent_back_shows_in_the_prompt(server, autark, smollm2_q4_1):
    """An agent's second turn: the assistant's call (as the client got it) and the tool's answer
    sent back. SmolLM2's template has no `tool_calls`, so the call is written into the assistant
    turn in the model's format: the prompt grows by that text's tokens (give or take a merge at
    its edges), not by nothing."""
    msgs = [{"role": "user", "content": "What is 2 plus 3?"}]
    kw = dict(model="smollm2", tools=[ADD], max_tokens=40, temperature=0)
    r = server.client.chat.completions.create(messages=msgs, tool_choice="required", **kw)
    message = r.choices[0].message
    call = message.tool_calls[0]
    answer = {"role": "tool", "tool_call_id": call.id, "content": "5"}
    back = msgs + [message.model_dump(exclude_none=True), answer]
    bare = msgs + [{"role": "assistant", "content": ""}, answer]
    with_call = server.client.chat.completions.create(messages=back, **kw)
    without = server.client.chat.completions.create(messages=bare, **kw)
    written = f'<tool_call>\n{{"name": "add", "arguments": {json.dumps(json.loads(call.function.arguments), separators=(",", ":"))}}}\n</tool_call>'
    grown = with_call.usage.prompt_tokens - without.usage.prompt_tokens
    assert abs(grown - len(autark.tokenize(smollm2_q4_1, written))) <= 2, (grown, written)
    assert with_call.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_tool_choice_auto_gives_a_valid_call_or_text(server):
    """`tool_choice: "auto"` (OpenAI's default with tools): the model answers in text or calls a
    declared tool with valid arguments, never something between (docs/STRUCTURED.md)."""
    kinds = set()
    for prompt in ("What is 2 plus 3? Use the add tool.", "Write one sentence about the sea.", "Add 40 and 2."):
        for seed in (1, 2, 3):
            for choice in ({}, {"tool_choice": "auto"}):
                r = server.client.chat.completions.create(
                    model="smollm2", messages=[{"role": "user", "content": prompt}], tools=[ADD],
                    max_tokens=60, temperature=1.0, seed=seed, **choice,
                )
                c = r.choices[0]
                if c.finish_reason == "tool_calls":
                    kinds.add("call")
                    (call,) = c.message.tool_calls
                    args = json.loads(call.function.arguments)
                    assert call.function.name == "add" and set(args) <= {"a", "b"}, call
                    assert all(isinstance(v, int) for v in args.values()), call
                else:
                    kinds.add("text")
                    assert c.message.content and not c.message.content.lstrip().startswith("<tool_call>"), c
    print("auto kinds:", kinds)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_behind_nginx_one_instance_killed(autark_bin, smollm2_q4_1, tmp_path):
    """Two instances behind a real nginx (docs/SERVER.md's upstream): one is killed mid-run and
    new requests keep succeeding through the other."""
    import shutil

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx not installed (Debian package nginx; .ci/run installs it)")
    a = Server(autark_bin, smollm2_q4_1, "--parallel", 2, "--ctx-per-slot", 256, "-t", 1)
    b = Server(autark_bin, smollm2_q4_1, "--parallel", 2, "--ctx-per-slot", 256, "-t", 1)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    upstream autark {{
        server 127.0.0.1:{a.port} max_fails=1 fail_timeout=30s;
        server 127.0.0.1:{b.port} max_fails=1 fail_timeout=30s;
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://autark;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_next_upstream error timeout http_503;
        }}
    }}
}}
"""
    )
    proxy = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")])
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        deadline = time.time() + 10
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                assert time.time() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.05)

        def ask(i):
            r = client.completions.create(model="m", prompt=f"Once upon a time {i}", max_tokens=8, temperature=0)
            return r.choices[0].finish_reason

        with ThreadPoolExecutor(4) as ex:
            assert list(ex.map(ask, range(8))) == ["length"] * 8
            a.proc.kill()  # mid-run: not drained
            a.proc.wait()
            assert list(ex.map(ask, range(8, 24))) == ["length"] * 16
        assert b.raw("GET", "/health")[0] == 200
    finally:
        proxy.send_signal(signal.SIGQUIT)
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
        for s in (a, b):
            if s.proc.poll() is None:
                s.proc.kill()


def test_schemathesis_against_the_published_openapi(autark_bin, smollm2_q4_1, tmp_path):
    """Hostile HTTP from the server's own description: schemathesis (PyPI) reads `/openapi.json`
    and sends boundary values, random bodies and undeclared methods to every route, checking
    that no response is a 5xx and that every status, content type, header set, JSON body and SSE
    event matches the description (a 405 must list the allowed methods). Bounded: 15 examples
    per operation, one worker, a fixed seed, 240 s; loopback only. Not checked: that every
    schema-valid request is accepted (a prompt's length in tokens cannot be stated in a schema)
    and every schema-invalid one refused (fields that do not apply, such as a `json_schema`
    beside `type: text`, are ignored, as OpenAI's API does)."""
    s = Server(autark_bin, smollm2_q4_1, "--parallel", 2, "--ctx-per-slot", 64, "-t", 1)
    checks = ",".join([
        "not_a_server_error", "status_code_conformance", "content_type_conformance",
        "response_headers_conformance", "response_schema_conformance", "unsupported_method",
    ])
    try:
        r = subprocess.run(
            ["schemathesis", "run", f"http://127.0.0.1:{s.port}/openapi.json", "--checks", checks,
             "-n", "15", "--seed", "1", "-w", "1", "--no-color", "--request-timeout", "60"],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
        )
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
        assert re.search(r"\d+ generated, \d+ passed", r.stdout), r.stdout[-3000:]
        status, _, body = s.raw("GET", "/health")
        assert status == 200, body
        assert s.metrics()["autark_requests_total"] > 0
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_405_lists_the_allowed_methods(server):
    status, headers, body = server.raw("DELETE", "/v1/chat/completions")
    assert status == 405 and headers.get("allow") == "POST", (status, headers)
    assert json.loads(body)["error"]["message"]
    status, headers, _ = server.raw("POST", "/health", body=b"{}")
    assert status == 405 and headers.get("allow") == "GET", (status, headers)
