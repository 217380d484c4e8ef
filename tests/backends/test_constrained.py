"""Structured outputs, tool calls, log probabilities, n and seed on the embedded model (real SmolLM2)."""

from __future__ import annotations

import asyncio
import json

import pytest
from jsonschema import Draft202012Validator

from sovhub.backends.base import BackendConfig, CancelToken
from sovhub.backends.constrain import build_constraint
from sovhub.backends.embedded import EmbeddedBackend
from sovhub.errors import InvalidRequest, UnsupportedParameter

pytestmark = pytest.mark.slow

SCHEMAS = {
    "person": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                                                "age": {"type": "integer", "minimum": 0, "maximum": 120}},
               "required": ["name", "age"], "additionalProperties": False},
    "weather": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 20}, "temperature_c": {"type": "number"},
        "conditions": {"type": "string", "enum": ["sunny", "cloudy", "rain", "snow"]}},
        "required": ["city", "temperature_c", "conditions"], "additionalProperties": False},
    "shopping": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string", "maxLength": 16},
                                                             "minItems": 1, "maxItems": 3}},
                 "required": ["items"], "additionalProperties": False},
    "booking": {"type": "object", "properties": {
        "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
        "guests": {"type": "integer", "minimum": 1, "maximum": 10}, "vegetarian": {"type": "boolean"}},
        "required": ["date", "guests", "vegetarian"], "additionalProperties": False},
    "book": {"type": "object", "$defs": {"author": {"type": "object", "properties": {
        "first": {"type": "string", "maxLength": 12}, "last": {"type": "string", "maxLength": 12}},
        "required": ["first", "last"], "additionalProperties": False}},
        "properties": {"title": {"type": "string", "maxLength": 24}, "author": {"$ref": "#/$defs/author"}},
        "required": ["title", "author"], "additionalProperties": False},
}
TOPICS = ["a teacher in Kyiv", "the weather at the seaside", "a birthday party", "a trip to the mountains",
          "a famous novel", "a grocery list for soup", "a dinner reservation", "a football player",
          "a rainy day in London", "a children's book"]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                   "required": ["city"], "additionalProperties": False}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Current time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 24}},
                   "required": ["zone"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def backend():
    b = EmbeddedBackend(BackendConfig(name="embedded", kind="embedded", models=["smol"]), threads=1)
    asyncio.run(b.start())
    yield b
    asyncio.run(b.close())


def _run(backend, messages, params):
    async def go():
        chunks = []
        async for chunk in backend.chat_stream("smol", messages, params, CancelToken()):
            chunks.append(chunk)
        return chunks

    return asyncio.run(go())


def _choices(chunks):
    """Per choice: its text, its tool calls (merged as a client merges deltas), finish, logprobs."""
    out: dict[int, dict] = {}
    for chunk in chunks:
        for c in chunk.get("choices", []):
            slot = out.setdefault(c["index"], {"text": "", "calls": {}, "finish": None, "logprobs": []})
            delta = c["delta"]
            slot["text"] += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                merged = slot["calls"].setdefault(call["index"], {"function": {"arguments": ""}})
                for key in ("id", "type"):
                    if key in call:
                        merged[key] = call[key]
                merged["function"]["name"] = call.get("function", {}).get("name") or merged["function"].get("name")
                merged["function"]["arguments"] += call.get("function", {}).get("arguments") or ""
            if c.get("logprobs"):
                slot["logprobs"].extend(c["logprobs"]["content"])
            slot["finish"] = c["finish_reason"] or slot["finish"]
    return out


def test_json_schema_answers_always_parse_and_validate(backend) -> None:  # ~2 minutes on 2 busy cores
    """50 answers (10 prompts x 5 schemas, sampled at temperature 0.8): all parse and validate."""
    results = []
    for name, schema in SCHEMAS.items():
        validator = Draft202012Validator(schema)
        for i, topic in enumerate(TOPICS):
            params = {"max_tokens": 96, "temperature": 0.8, "seed": i,
                      "response_format": {"type": "json_schema",
                                          "json_schema": {"name": name, "strict": True, "schema": schema}}}
            chunks = _run(backend, [{"role": "user", "content": f"Describe {topic} as JSON."}], params)
            choice = _choices(chunks)[0]
            value = json.loads(choice["text"])
            errors = list(validator.iter_errors(value))
            results.append((name, topic, choice["text"], errors))
            assert choice["finish"] == "stop", (name, topic, choice["text"])
            assert not errors, (name, topic, choice["text"], errors)
    assert len(results) == 50


MORE_SCHEMAS = {
    # A nullable field keeps its length (the converter alone dropped maxLength beside a type list).
    "nickname": {"type": "object", "properties": {"nick": {"type": ["string", "null"], "maxLength": 6},
                                                  "kind": {"const": "person"}},
                 "required": ["nick", "kind"], "additionalProperties": False},
    "either": {"type": "object", "properties": {"value": {"anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 9}, {"type": "string", "enum": ["none", "many"]}]}},
        "required": ["value"], "additionalProperties": False},
    # `.`, a negated class and \d: never a raw quote, backslash or newline inside the string.
    "code": {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}\\d{2}-.[^0-9]{1,8}$"},
                                              "tags": {"type": "array", "items": {"type": "string", "maxLength": 10},
                                                       "minItems": 2, "maxItems": 3}},
             "required": ["code", "tags"], "additionalProperties": False},
}


def test_more_keywords_are_enforced_and_every_answer_is_json(backend) -> None:
    """const, anyOf, nullable lengths, patterns with . and classes, item counts: 12 sampled answers, all valid."""
    for name, schema in MORE_SCHEMAS.items():
        validator = Draft202012Validator(schema)
        for i, topic in enumerate(TOPICS[:4]):
            params = {"max_tokens": 96, "temperature": 1.0, "seed": 100 + i,
                      "response_format": {"type": "json_schema",
                                          "json_schema": {"name": name, "strict": True, "schema": schema}}}
            choice = _choices(_run(backend, [{"role": "user", "content": f"Describe {topic} as JSON."}], params))[0]
            assert choice["finish"] == "stop", (name, topic, choice["text"])
            value = json.loads(choice["text"])
            assert not list(validator.iter_errors(value)), (name, topic, choice["text"])


def test_json_object_answers_parse(backend) -> None:
    # No schema bounds a json_object answer (a small model sampling freely may write digits until
    # its budget is spent, finish_reason "length", as OpenAI's models may): greedy, with room to close.
    for topic in TOPICS[:3]:
        chunks = _run(backend, [{"role": "user", "content": f"Give {topic} as a JSON object."}],
                      {"max_tokens": 256, "temperature": 0, "response_format": {"type": "json_object"}})
        choice = _choices(chunks)[0]
        assert choice["finish"] == "stop", choice["text"]
        assert isinstance(json.loads(choice["text"]), dict)


def test_a_schema_that_cannot_be_enforced_is_refused_before_queueing(backend) -> None:
    with pytest.raises(InvalidRequest):
        build_constraint({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}})
    with pytest.raises(UnsupportedParameter):
        # A $ref to nowhere: the converter cannot resolve it.
        build_constraint({"response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"$ref": "#/$defs/missing"}}}}, backend._llm._model.vocab)
    with pytest.raises(InvalidRequest, match="larger"):
        big = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 100}
                                                for i in range(400)}}
        build_constraint({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": big}}})
    # The model is still serving.
    assert _choices(_run(backend, ASK, {"max_tokens": 3}))[0]["finish"] == "length"


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_forced_tool_calls_are_openai_shaped_and_match_the_schema(backend, tool_choice) -> None:
    params = {"max_tokens": 48, "temperature": 0, "tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": tool_choice}
    choice = _choices(_run(backend, ASK, params))[0]
    assert choice["finish"] == "tool_calls" and choice["text"] == ""
    [call] = choice["calls"].values()
    assert call["id"].startswith("call_") and call["type"] == "function"
    name = call["function"]["name"]
    if isinstance(tool_choice, dict):
        assert name == "get_time"
    tool = WEATHER_TOOL if name == "get_weather" else TIME_TOOL
    Draft202012Validator(tool["function"]["parameters"]).validate(json.loads(call["function"]["arguments"]))


def test_tool_choice_none_answers_in_text_and_parallel_calls_are_bounded(backend) -> None:
    none = _choices(_run(backend, ASK, {"max_tokens": 12, "temperature": 0, "tools": [WEATHER_TOOL],
                                        "tool_choice": "none"}))[0]
    assert none["text"] and not none["calls"] and "<tool_call>" not in none["text"]
    parallel = _choices(_run(backend, [{"role": "user", "content": "Weather in Paris and in Rome?"}],
                             {"max_tokens": 120, "temperature": 0, "tools": [WEATHER_TOOL],
                              "tool_choice": "required", "parallel_tool_calls": True}))[0]
    assert parallel["finish"] == "tool_calls"
    assert 1 <= len(parallel["calls"]) <= 4
    assert sorted(parallel["calls"]) == list(range(len(parallel["calls"])))


def test_a_tool_result_round_trips_into_the_next_answer(backend) -> None:
    first = _choices(_run(backend, ASK, {"max_tokens": 48, "temperature": 0, "tools": [WEATHER_TOOL],
                                          "tool_choice": "required"}))[0]
    [call] = first["calls"].values()
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 31 degrees"}]
    answer = _choices(_run(backend, history, {"max_tokens": 40, "temperature": 0, "tools": [WEATHER_TOOL],
                                              "tool_choice": "none"}))[0]
    assert "31" in answer["text"] or "sunny" in answer["text"].lower(), answer["text"]


def test_logprobs_n_and_seed(backend) -> None:
    params = {"max_tokens": 8, "temperature": 1.0, "seed": 42, "n": 3, "logprobs": True, "top_logprobs": 2}
    a = _choices(_run(backend, ASK, params))
    b = _choices(_run(backend, ASK, params))
    assert sorted(a) == [0, 1, 2]
    assert [a[i]["text"] for i in a] == [b[i]["text"] for i in b]  # same seed, same answers
    assert len({a[i]["text"] for i in a}) > 1  # each choice its own draw
    for choice in a.values():
        assert len(choice["logprobs"]) == 8
        assert "".join(e["token"] for e in choice["logprobs"]) == choice["text"]
        for entry in choice["logprobs"]:
            assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 2
            assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][1]["logprob"]
            assert entry["logprob"] <= entry["top_logprobs"][0]["logprob"] + 1e-9
    other = _choices(_run(backend, ASK, {**params, "seed": 43}))
    assert [other[i]["text"] for i in other] != [a[i]["text"] for i in a]


@pytest.mark.parametrize("schema", [
    {"type": "number", "minimum": 0},
    {"type": "integer", "minimum": 0},  # unbounded above: not enforceable as a list
    {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
    {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
])
def test_keywords_the_grammar_cannot_enforce_are_refused(schema) -> None:
    with pytest.raises(UnsupportedParameter):
        build_constraint({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})


def test_a_property_named_like_a_keyword_is_a_name() -> None:
    schema = {"type": "object", "properties": {"not": {"type": "integer", "minimum": 1, "maximum": 3}},
              "required": ["not"]}
    grammar = build_constraint({"response_format": {"type": "json_schema",
                                                    "json_schema": {"name": "x", "schema": schema}}}).grammar
    assert '"1" | "2" | "3"' in grammar


def test_auto_does_not_offer_again_a_function_whose_result_was_just_given() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}]
    from sovhub.backends.toolcalls import answered_functions

    assert answered_functions(history) == {"get_weather"}
    assert answered_functions(ASK) == set()
    only = build_constraint({"tools": [WEATHER_TOOL]}, answered=answered_functions(history))
    assert only.mode == "text" and only.grammar.startswith("root ::= [^<]")  # nothing left to call: an answer
    other = build_constraint({"tools": [WEATHER_TOOL, TIME_TOOL]}, answered={"get_weather"})
    assert other.mode == "either" and "get_time" in other.grammar and "get_weather" not in other.grammar
    forced = build_constraint({"tools": [WEATHER_TOOL], "tool_choice": "required"}, answered={"get_weather"})
    assert forced.mode == "call" and "get_weather" in forced.grammar  # asked for: still called


def test_a_schema_nested_too_deeply_is_a_400_not_a_crash() -> None:
    schema: dict = {"type": "string"}
    for _ in range(3000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidRequest):
        build_constraint({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
