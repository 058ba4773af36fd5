"""The generated Python, run by `cargo test -p autark-bindings` (tests/foreign.rs) with no model
file: the module imports, records carry their defaults, and load failures arrive as typed
exceptions. Generation is tested by tests/python/test_bindings.py against the real model."""

import os
import tempfile

import autark

o = autark.SessionOptions()
assert (o.n_ctx, o.n_threads, o.seed, o.top_k, o.stop) == (0, 0, 0, 40, []), o
assert abs(o.temperature - 0.8) < 1e-6 and abs(o.top_p - 0.95) < 1e-6 and abs(o.min_p - 0.05) < 1e-6, o
assert o.repeat_penalty == 1.0, o
assert autark.SessionOptions(temperature=0.0, n_ctx=512).n_ctx == 512
m = autark.ChatMessage(role="user", content="Hi")
assert (m.role, m.content) == ("user", "Hi")
assert autark.StopReason.CANCELLED != autark.StopReason.MAX_TOKENS

try:
    autark.Model.load("/no/such/model.autark")
    raise AssertionError("loading a missing file did not raise")
except autark.AutarkError.Io as e:
    assert "/no/such/model.autark" in e.detail, e.detail

with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "garbage.autark")
    with open(path, "wb") as f:
        f.write(b"\x00 not a model \xff" * 512)
    try:
        autark.Model.load(path)
        raise AssertionError("loading garbage did not raise")
    except autark.AutarkError.CorruptModel as e:
        assert isinstance(e, autark.AutarkError)


class Sink(autark.TokenSink):
    def on_piece(self, piece):
        return True


assert isinstance(Sink(), autark.TokenSink)
print("generated Python: all checks passed")
