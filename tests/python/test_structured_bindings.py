"""Structured output through the Python binding (the same UniFFI definitions serve Kotlin and
Swift): constraints in SessionOptions, typed exceptions, tool calls; each checked against the CLI
and an independent validator (`jsonschema`)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from test_structured import NESTED, TOOLS, check_calls, prompt_for


@pytest.fixture(scope="module")
def model(ak, smollm2_q4_1):
    return ak.Model.load(str(smollm2_q4_1))


def schema_options(ak, schema, **kw):
    return ak.SessionOptions(constraint=ak.Constraint.JSON_SCHEMA(schema=json.dumps(schema)), **kw)


def test_json_schema_output_validates_and_equals_cli(ak, autark, model, smollm2_q4_1, tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps(NESTED))
    messages = [ak.ChatMessage(role="user", content=prompt_for(NESTED))]
    for seed in (1, 2):
        s = model.new_session(schema_options(ak, NESTED, seed=seed, temperature=1.0))
        text = s.chat(messages, 400)
        jsonschema.validate(json.loads(text), NESTED)
        st = s.last_stats()
        assert st.stop in (ak.StopReason.COMPLETE, ak.StopReason.END_OF_GENERATION) and not st.incomplete
        cli = autark.ok("run", smollm2_q4_1, "--chat", "-p", prompt_for(NESTED), "--json-schema", f,
                        "--seed", seed, "--temp", "1.0", "-n", 400).stdout.decode()
        assert text + "\n" == cli


def test_regex_and_grammar(ak, model):
    s = model.new_session(ak.SessionOptions(constraint=ak.Constraint.REGEX(pattern="(yes|no), [0-9]{2}")))
    text = s.generate("Is it raining?", 32)
    assert text in {f"{a}, {n:02d}" for a in ("yes", "no") for n in range(100)}, text
    g = 'start: "A" | "B"'
    s = model.new_session(ak.SessionOptions(constraint=ak.Constraint.GRAMMAR(lark=g)))
    assert s.generate("Pick a letter:", 8) in {"A", "B"}


def test_unsupported_keyword_is_a_typed_exception(ak, model):
    schema = {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(ak.AutarkError.UnsupportedConstraint) as e:
        model.new_session(schema_options(ak, schema))
    assert e.value.keyword == "uniqueItems" and e.value.path == "/properties/a/uniqueItems"
    with pytest.raises(ak.AutarkError.InvalidConstraint):
        model.new_session(ak.SessionOptions(constraint=ak.Constraint.REGEX(pattern="(a")))


def test_incomplete_output_is_an_exception_with_the_text(ak, model):
    s = model.new_session(schema_options(ak, NESTED, temperature=0.0))
    messages = [ak.ChatMessage(role="user", content=prompt_for(NESTED))]
    with pytest.raises(ak.AutarkError.IncompleteOutput) as e:
        s.chat(messages, 5)
    assert e.value.stop == ak.StopReason.MAX_TOKENS and e.value.text.startswith("{")
    # The suspended generation continues under its constraint to a complete value.
    rest = s.continue_generation(400)
    jsonschema.validate(json.loads(e.value.text + rest), NESTED)


def test_tool_calls(ak, model):
    s = model.new_session(ak.SessionOptions(temperature=1.0, seed=3))
    for prompt in ("What is the weather in Oslo?", "Add 40 and 2."):
        calls = s.chat_tools([ak.ChatMessage(role="user", content=prompt)], json.dumps(TOOLS), 200)
        assert len(calls) == 1
        check_calls(json.dumps([{"name": calls[0].name, "arguments": json.loads(calls[0].arguments)}]))
    with pytest.raises(ak.AutarkError.InvalidConstraint):
        s.chat_tools([ak.ChatMessage(role="user", content="x")], "[]", 10)
    # tool_choice "auto": a call (the text is the call as written) or a text reply.
    for prompt in ("What is the weather in Oslo?", "Write one sentence about the sea."):
        r = s.chat_tools_auto([ak.ChatMessage(role="user", content=prompt)], json.dumps(TOOLS), 120)
        if r.calls:
            assert len(r.calls) == 1 and r.text.lstrip().startswith("<tool_call>"), r
            check_calls(json.dumps([{"name": r.calls[0].name, "arguments": json.loads(r.calls[0].arguments)}]))
        else:
            assert r.text.strip() and not r.text.lstrip().startswith("<tool_call>"), r
