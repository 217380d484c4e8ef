"""Black-box: the official openai SDK and the OpenAI Agents SDK against a real `sovhub serve` with the
embedded SmolLM2: structured outputs, tool calls, logprobs, n, seed and the Responses API.

Every body, chunk and event is validated against OpenAI's own schemas (tests/contract/schemas.py).
Answers are kept short: the machine running the suite is small and shared.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field

from tests.contract.schemas import assert_valid
from tests.server import RemoteHub

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                  "required": ["city"], "additionalProperties": False}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city",
                                              "parameters": WEATHER_PARAMS, "strict": True}}
RESP_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather of a city",
             "parameters": WEATHER_PARAMS, "strict": True}
ASK = "What is the weather in Paris?"


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=24)
    country: str = Field(max_length=24)


@pytest.fixture
def client(remote: tuple[RemoteHub, str]) -> openai.OpenAI:
    hub, key = remote
    return openai.OpenAI(base_url=f"{hub.url}/v1", api_key=key, max_retries=0)


def _raw(remote: tuple[RemoteHub, str], path: str, body: dict[str, Any]) -> httpx.Response:
    hub, key = remote
    return httpx.post(f"{hub.url}/v1/{path}", headers={"authorization": f"Bearer {key}"}, json=body, timeout=120)


def _sse(remote: tuple[RemoteHub, str], path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    hub, key = remote
    with httpx.stream("POST", f"{hub.url}/v1/{path}", headers={"authorization": f"Bearer {key}"}, json=body,
                      timeout=120) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]


# --- chat completions ---


def test_chat_structured_output_parses_into_the_model(client: openai.OpenAI, remote) -> None:
    completion = client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "Name a city and its country."}], response_format=City,
        max_tokens=48, temperature=0)
    city = completion.choices[0].message.parsed
    assert isinstance(city, City) and city.name
    raw = _raw(remote, "chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "Give me a JSON object about Rome."}],
        "response_format": {"type": "json_object"}, "max_tokens": 48, "temperature": 0})
    assert_valid("CreateChatCompletionResponse", raw.json())
    if raw.json()["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(raw.json()["choices"][0]["message"]["content"]), dict)


def test_chat_tool_call_round_trip(client: openai.OpenAI, remote) -> None:
    messages: list[Any] = [{"role": "user", "content": ASK}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[CHAT_TOOL],  # type: ignore[list-item]
                                           tool_choice="required", max_tokens=40, temperature=0)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    Draft202012Validator(WEATHER_PARAMS).validate(json.loads(call.function.arguments))
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "Sunny and 31 degrees"}]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[CHAT_TOOL],  # type: ignore[list-item]
                                            tool_choice="none", max_tokens=24, temperature=0)
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls
    raw = _raw(remote, "chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": ASK}],
                                             "tools": [CHAT_TOOL], "tool_choice": {"type": "function",
                                                                                   "function": {"name": "get_weather"}},
                                             "max_tokens": 40, "temperature": 0})
    assert_valid("CreateChatCompletionResponse", raw.json())


def test_chat_tool_call_streamed_as_openai_deltas(client: openai.OpenAI, remote) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ASK}],
                                            tools=[CHAT_TOOL], tool_choice="required", max_tokens=40,  # type: ignore[list-item]
                                            temperature=0, stream=True)
    arguments, names, finish = "", [], None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                if call.function and call.function.name:
                    names.append(call.function.name)
                arguments += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    assert names == ["get_weather"] and finish == "tool_calls"
    Draft202012Validator(WEATHER_PARAMS).validate(json.loads(arguments))
    for chunk in _sse(remote, "chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": ASK}],
                                                     "tools": [CHAT_TOOL], "tool_choice": "required",
                                                     "max_tokens": 40, "temperature": 0, "stream": True}):
        assert_valid("CreateChatCompletionStreamResponse", chunk)


def test_chat_logprobs_n_and_seed(client: openai.OpenAI, remote) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}],
                              "max_tokens": 6, "temperature": 1.0, "seed": 11, "n": 2, "logprobs": True,
                              "top_logprobs": 2}
    a = client.chat.completions.create(**kwargs)
    b = client.chat.completions.create(**kwargs)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert [c.index for c in a.choices] == [0, 1]
    for choice in a.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in choice.logprobs.content)
    assert_valid("CreateChatCompletionResponse", _raw(remote, "chat/completions", kwargs).json())
    for chunk in _sse(remote, "chat/completions", {**kwargs, "stream": True}):
        assert_valid("CreateChatCompletionStreamResponse", chunk)


# --- responses ---


def test_responses_create_retrieve_items_continue_delete(client: openai.OpenAI, remote) -> None:
    first = client.responses.create(model=MODEL, input="My name is Olena. Say hi.", instructions="Be brief.",
                                    max_output_tokens=12, temperature=0, metadata={"case": "sdk"})
    assert first.status in ("completed", "incomplete") and first.output_text
    assert first.usage is not None and first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert client.responses.retrieve(first.id).id == first.id
    items = client.responses.input_items.list(first.id)
    assert [i.type for i in items.data] == ["message"]
    second = client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=12, temperature=0)
    assert second.previous_response_id == first.id and second.output_text
    raw = _raw(remote, "responses", {"model": MODEL, "input": [{"role": "user", "content": "Hi"}],
                                      "max_output_tokens": 8, "store": False})
    assert_valid("Response", raw.json())
    hub, key = remote
    got = httpx.get(f"{hub.url}/v1/responses/{first.id}", headers={"authorization": f"Bearer {key}"}).json()
    assert_valid("Response", got)
    listed = httpx.get(f"{hub.url}/v1/responses/{first.id}/input_items", headers={"authorization": f"Bearer {key}"})
    assert_valid("ResponseItemList", listed.json())
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(raw.json()["id"])  # store: false kept nothing


def test_responses_stream_events_in_order(client: openai.OpenAI, remote) -> None:
    with client.responses.stream(model=MODEL, input="Say hello.", max_output_tokens=8, temperature=0) as stream:
        seen = list(stream)
    kinds = [event.type for event in seen]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    # Cut by max_output_tokens: response.incomplete, as OpenAI (the SDK's get_final_response wants completed).
    assert kinds[-1] in ("response.completed", "response.incomplete")
    final = seen[-1].response  # type: ignore[union-attr]
    assert final.output_text == "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    events = _sse(remote, "responses", {"model": MODEL, "input": "Say hello.", "max_output_tokens": 8, "stream": True})
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_responses_structured_output_and_function_tools(client: openai.OpenAI, remote) -> None:
    parsed = client.responses.parse(model=MODEL, input="Name a city and its country.", text_format=City,
                                    max_output_tokens=48, temperature=0)
    assert isinstance(parsed.output_parsed, City)
    call_response = client.responses.create(model=MODEL, input=ASK, tools=[RESP_TOOL],  # type: ignore[list-item]
                                            tool_choice="required", max_output_tokens=40, temperature=0)
    [call] = [item for item in call_response.output if item.type == "function_call"]
    assert call.name == "get_weather"
    Draft202012Validator(WEATHER_PARAMS).validate(json.loads(call.arguments))
    answer = client.responses.create(
        model=MODEL, previous_response_id=call_response.id, tools=[RESP_TOOL], tool_choice="none",  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 31 degrees"}],
        max_output_tokens=24, temperature=0)
    assert answer.output_text
    events = _sse(remote, "responses", {"model": MODEL, "input": ASK, "tools": [RESP_TOOL], "tool_choice": "required",
                                        "max_output_tokens": 40, "temperature": 0, "stream": True})
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.done" in kinds
    for event in events:
        assert_valid("ResponseStreamEvent", event)


async def test_openai_agents_sdk_runs_a_tool_to_a_final_answer(remote) -> None:
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # nothing may leave the machine
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        calls.append(city)
        return f"It is sunny and 31 degrees in {city}."

    hub, key = remote
    async with openai.AsyncOpenAI(base_url=f"{hub.url}/v1", api_key=key, max_retries=0) as aclient:
        agent = Agent(name="weather", instructions="Answer questions about the weather.", tools=[get_weather],
                      model=OpenAIResponsesModel(model=MODEL, openai_client=aclient),
                      # The first turn must call the tool; the SDK then lets the model choose (auto).
                      model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=48))
        result = await Runner.run(agent, ASK, max_turns=4)
    assert calls, "the agent never called its tool"
    assert isinstance(result.final_output, str) and result.final_output.strip()


def test_responses_input_tokens_count_what_the_model_reads(client: openai.OpenAI, remote) -> None:
    """The count is the embedded model's own: what the response's usage then says, tools included."""
    for extra in ({}, {"tools": [RESP_TOOL], "tool_choice": "required"}):
        counted = _raw(remote, "responses/input_tokens", {"model": MODEL, "input": ASK, "instructions": "Be brief.",
                                                          **extra})
        assert counted.status_code == 200, counted.text
        assert_valid("TokenCountsResource", counted.json())
        ran = client.responses.create(model=MODEL, input=ASK, instructions="Be brief.", max_output_tokens=4,
                                      **extra)
        assert ran.usage is not None and counted.json()["input_tokens"] == ran.usage.input_tokens
    assert client.responses.input_tokens.count(model=MODEL, input=ASK).input_tokens > 0


def test_responses_background_polled_and_cancelled(client: openai.OpenAI, remote) -> None:
    import time

    done = client.responses.create(model=MODEL, input="Say hello.", background=True, max_output_tokens=8)
    while done.status in ("queued", "in_progress"):
        time.sleep(0.2)
        done = client.responses.retrieve(done.id)
    assert done.status in ("completed", "incomplete") and done.output_text
    long = client.responses.create(model=MODEL, input="Tell me a very long story.", background=True)
    cancelled = client.responses.cancel(long.id)
    assert cancelled.status in ("cancelled", "completed", "incomplete")  # a fast model may finish first
    assert client.responses.retrieve(long.id).status == cancelled.status
