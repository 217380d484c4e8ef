"""What the model received: no personal identifier in any role, streamed or not.

The fake backend records the messages it was sent; the tests read them, not the reply (an echo
backend would return the original text unchanged if nothing were redacted).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

IDENTIFIERS = {
    "iban": "DE89370400440532013000",
    "email": "ana.kovalenko@example.org",
    "card": "4111 1111 1111 1111",
    "other_iban": "GB82WEST12345698765432",
}


def _conversation() -> list[dict[str, Any]]:
    i = IDENTIFIERS
    return [
        {"role": "system", "content": f"The customer's account is {i['iban']}."},
        {"role": "developer", "content": f"Escalations go to {i['email']}."},
        {"role": "user", "content": [{"type": "text", "text": f"My card is {i['card']}."}]},
        {"role": "assistant", "content": f"Noted, and the second account {i['other_iban']}?"},
        {"role": "user", "content": f"Yes. Summarise: {i['iban']}, {i['email']}, {i['card']}, {i['other_iban']}"},
    ]


def _seen(fake_plugin: Any) -> str:
    backend = fake_plugin.instances["fake1"]
    assert backend.received, "the backend was never called"
    return json.dumps(backend.received[-1], ensure_ascii=False)


@pytest.mark.parametrize("stream", [False, True])
def test_no_identifier_reaches_the_model_in_any_role(
    app_client: TestClient, fake_plugin: Any, stream: bool
) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "stream": stream, "messages": _conversation()})
    assert r.status_code == 200, r.text
    seen = _seen(fake_plugin)
    for name, value in IDENTIFIERS.items():
        assert value not in seen, f"{name} reached the model"
        assert value.replace(" ", "") not in seen.replace(" ", ""), f"{name} reached the model (spacing changed)"
    # Five messages went in, five came out: redaction replaces values, it does not drop turns.
    assert len(json.loads(seen)) == 5


def test_the_person_still_reads_their_values_back(app_client: TestClient, fake_plugin: Any) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": _conversation()})
    answer = r.json()["choices"][0]["message"]["content"]
    # The echo backend repeats the last user message; pseudonyms are restored for the person.
    for value in IDENTIFIERS.values():
        assert value in answer
    assert "<" not in answer


def _fields_conversation() -> list[dict[str, Any]]:
    """Identifiers outside `content`: tool-call arguments, the legacy function_call, refusal, reasoning."""
    i = IDENTIFIERS
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup_account", "arguments": json.dumps({"iban": i["iban"], "mail": i["email"]})}}
    return [
        {"role": "user", "content": "Look up my account."},
        {"role": "assistant", "content": None, "tool_calls": [call],
         "reasoning_content": f"The card {i['card']} belongs to the caller."},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
        {"role": "assistant", "content": "", "refusal": f"I will not move money from {i['other_iban']}.",
         "function_call": {"name": "notify", "arguments": json.dumps({"to": i["email"]})},
         "reasoning": f"Escalate to {i['email']}."},
        {"role": "user", "content": "Thanks."},
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_no_identifier_reaches_the_model_in_tool_calls_refusal_or_reasoning(
    app_client: TestClient, fake_plugin: Any, stream: bool
) -> None:
    r = app_client.post("/v1/chat/completions",
                        json={"model": "echo", "stream": stream, "messages": _fields_conversation()})
    assert r.status_code == 200, r.text
    seen = _seen(fake_plugin)
    for name, value in IDENTIFIERS.items():
        assert value.replace(" ", "") not in seen.replace(" ", ""), f"{name} reached the model"
    received = fake_plugin.instances["fake1"].received[-1]
    # The calls still work for a tool runner: names untouched, arguments still JSON, placeholders inside.
    call = received[1]["tool_calls"][0]
    assert call["function"]["name"] == "lookup_account" and call["id"] == "call_1"
    arguments = json.loads(call["function"]["arguments"])
    assert set(arguments) == {"iban", "mail"} and arguments["iban"].startswith("<IBAN_CODE_")
    assert received[3]["function_call"]["name"] == "notify"
    assert json.loads(received[3]["function_call"]["arguments"])["to"].startswith("<EMAIL_ADDRESS_")
    # The same value gets the same placeholder wherever it appears, so the model can follow it.
    assert arguments["mail"] == json.loads(received[3]["function_call"]["arguments"])["to"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_answer_gets_the_persons_values_back(
    hub: Any, fake_plugin: Any, api_key: str, stream: bool
) -> None:
    """The model calls a tool with the placeholder it was given; the client reads the real address."""
    from sovhub.app import create_app
    from tests.conftest import add_fake_backend

    add_fake_backend(hub, "fake1", ["echo"], tool_call=True)
    ask = f"notify {IDENTIFIERS['email']} about {IDENTIFIERS['iban']}"
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        r = client.post("/v1/chat/completions", json={
            "model": "echo", "stream": stream, "messages": [{"role": "user", "content": ask}]})
    assert r.status_code == 200, r.text
    seen = _seen(fake_plugin)
    assert IDENTIFIERS["email"] not in seen and "<EMAIL_ADDRESS_1>" in seen
    if stream:
        events = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
        arguments = "".join(
            (call.get("function") or {}).get("arguments") or ""
            for e in events for c in e.get("choices", []) for call in (c.get("delta") or {}).get("tool_calls") or [])
    else:
        arguments = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert arguments == ask
