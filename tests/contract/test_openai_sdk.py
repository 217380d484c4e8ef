"""Black-box contract: the official openai SDK (sync, async, streaming) against a real `sovhub serve`.

Every response body, stream chunk and error is validated against OpenAI's own OpenAPI schemas.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import httpx
import openai
import pytest

from tests.contract.schemas import assert_valid
from tests.server import RemoteHub

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
EMBED = "multilingual-e5-small"
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


@pytest.fixture
def client(remote: tuple[RemoteHub, str]) -> openai.OpenAI:
    hub, key = remote
    return openai.OpenAI(base_url=f"{hub.url}/v1", api_key=key, max_retries=0)


def test_models_list_and_retrieve(client: openai.OpenAI, remote: tuple[RemoteHub, str]) -> None:
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids and EMBED in ids
    assert client.models.retrieve(MODEL).id == MODEL
    hub, key = remote
    raw = httpx.get(f"{hub.url}/v1/models", headers={"authorization": f"Bearer {key}"}).json()
    assert_valid("ListModelsResponse", raw)
    one = httpx.get(f"{hub.url}/v1/models/{MODEL}", headers={"authorization": f"Bearer {key}"}).json()
    assert_valid("Model", one)


def test_chat_non_stream_real_model(client: openai.OpenAI, remote: tuple[RemoteHub, str]) -> None:
    started = time.perf_counter()
    resp = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=HELLO, max_tokens=16, temperature=0, seed=7
    )
    wall_ms = (time.perf_counter() - started) * 1000
    assert resp.headers["x-request-id"]
    # The hub's own time: some, and well under the whole request, most of which the model spent generating
    # (a header that reported the total, or nothing, fails here).
    overhead = float(resp.headers["x-sovhub-overhead-ms"])
    assert 0 < overhead < wall_ms / 2, (overhead, wall_ms)
    completion = resp.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 16
    assert completion.usage.prompt_tokens > 5
    assert_valid("CreateChatCompletionResponse", json.loads(resp.text))


def test_chat_seed_and_temperature_zero_are_deterministic(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12, temperature=0, seed=1)
    b = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12, temperature=0, seed=1)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_chat_stream_with_usage(client: openai.OpenAI, remote: tuple[RemoteHub, str]) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=12, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    hub, key = remote
    with httpx.stream(
        "POST", f"{hub.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": HELLO, "max_tokens": 8, "stream": True,
              "stream_options": {"include_usage": True}}, timeout=60,
    ) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert_valid("CreateChatCompletionStreamResponse", json.loads(line[6:]))


def test_chat_stop_sequence(client: openai.OpenAI) -> None:
    """Greedy decoding twice: with a stop string taken from the free answer, the answer ends just before it."""
    messages: Any = [{"role": "user", "content": "Count: 1, 2, 3, 4, 5, 6, 7, 8"}]
    free = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0, seed=3)
    text = free.choices[0].message.content or ""
    words = text.split()
    assert len(words) >= 4, f"the model wrote too little to pick a stop string from: {text!r}"
    stop = words[len(words) // 2]
    stopped = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=40, temperature=0, seed=3, stop=[stop]
    )
    assert stopped.choices[0].message.content == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


async def test_async_client(remote: tuple[RemoteHub, str]) -> None:
    hub, key = remote
    async with openai.AsyncOpenAI(base_url=f"{hub.url}/v1", api_key=key, max_retries=0) as aclient:
        out = await aclient.chat.completions.create(model=MODEL, messages=HELLO, max_completion_tokens=8)
        assert out.choices[0].finish_reason in ("stop", "length")
        stream = await aclient.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces)


def test_embeddings_multilingual(client: openai.OpenAI, remote: tuple[RemoteHub, str]) -> None:
    texts = ["Where is the nearest hospital?", "Де найближча лікарня?", "最寄りの病院はどこですか？"]
    out = client.embeddings.create(model=EMBED, input=texts)
    assert len(out.data) == 3 and len(out.data[0].embedding) == 384
    import numpy as np

    v = np.array([d.embedding for d in out.data])
    unrelated = np.array(client.embeddings.create(model=EMBED, input="The recipe needs two eggs.").data[0].embedding)
    assert v[0] @ v[1] > v[0] @ unrelated and v[0] @ v[2] > v[0] @ unrelated
    hub, key = remote
    raw = httpx.post(f"{hub.url}/v1/embeddings", headers={"authorization": f"Bearer {key}"},
                     json={"model": EMBED, "input": "hello"}).json()
    assert_valid("CreateEmbeddingResponse", raw)
    import base64

    b64 = client.embeddings.create(model=EMBED, input="hello", encoding_format="base64").data[0].embedding
    decoded = np.frombuffer(base64.b64decode(b64), dtype="<f4")
    assert decoded.shape == (384,) and np.allclose(decoded, raw["data"][0]["embedding"], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"model": "no-such-model", "messages": HELLO}, 404, "model_not_found"),
        ({"model": MODEL, "messages": HELLO, "n": 9}, 400, "n_too_large"),
        ({"model": MODEL, "messages": HELLO, "logit_bias": {"1": 1}}, 400, "unsupported_parameter"),
        ({"model": MODEL, "messages": HELLO, "tools": [{"type": "function", "function": {"name": "f g"}}]}, 400,
         "invalid_value"),
        ({"model": MODEL, "messages": HELLO, "temperature": 5}, 400, "invalid_value"),
        ({"model": MODEL, "messages": []}, 400, "invalid_value"),
    ],
)
def test_errors_are_openai_shaped(
    remote: tuple[RemoteHub, str], kwargs: dict, status: int, code: str
) -> None:
    hub, key = remote
    r = httpx.post(f"{hub.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=kwargs)
    assert r.status_code == status, r.text
    assert_valid("ErrorResponse", r.json())
    assert r.json()["error"]["code"] == code
    assert "Traceback" not in r.text


def test_sdk_raises_typed_errors(client: openai.OpenAI, remote: tuple[RemoteHub, str]) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HELLO)
    hub, _ = remote
    bad = openai.OpenAI(base_url=f"{hub.url}/v1", api_key="sk-sov-wrong_key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_langchain_chat_openai(remote: tuple[RemoteHub, str]) -> None:
    from langchain_openai import ChatOpenAI

    hub, key = remote
    llm = ChatOpenAI(base_url=f"{hub.url}/v1", api_key=key, model=MODEL, max_tokens=8, temperature=0)
    assert llm.invoke("Say hi").content
    assert "".join(c.content for c in llm.stream("Say hi"))


def test_curl(remote: tuple[RemoteHub, str]) -> None:
    hub, key = remote
    out = subprocess.run(
        ["curl", "-sS", f"{hub.url}/v1/chat/completions", "-H", f"Authorization: Bearer {key}",
         "-H", "Content-Type: application/json",
         "-d", json.dumps({"model": MODEL, "messages": HELLO, "max_tokens": 4})],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert json.loads(out.stdout)["object"] == "chat.completion"
