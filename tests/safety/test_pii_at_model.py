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
