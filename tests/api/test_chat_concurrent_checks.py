"""Input checks that run while an in-process model evaluates the prompt (``concurrent = True``).

The hub may start generating before such a check returned only on a backend whose model runs in
its own process; it holds every byte until the check passed, cancels on a refusal and starts
again when the check rewrote the messages.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovhub.errors import ContentBlocked
from sovhub.hub import Hub
from tests.conftest import add_fake_backend
from tests.fakes import FakePlugin

CHAT = "/v1/chat/completions"


class Judge:
    """A slow input check: passes, refuses (`block`) or redacts its last message (`redact`)."""

    name = "judge"

    def __init__(self, action: str = "pass", *, delay: float = 0.15, concurrent: bool = True) -> None:
        self.action = action
        self.delay = delay
        self.concurrent = concurrent
        self.done_at = 0.0
        self.started_early: list[Any] = []

    async def before(self, ctx: Any) -> None:
        await asyncio.sleep(self.delay)
        self.done_at = time.perf_counter()
        if self.action == "block":
            raise ContentBlocked("refused by the judge")
        if self.action == "redact":
            ctx.messages[-1] = {**ctx.messages[-1], "content": "[redacted] words"}

    async def check_output(self, ctx: Any, text: str, final: bool) -> None:
        return None

    async def after(self, ctx: Any, result: Any) -> None:
        self.started_early.append(ctx.state.get("chat.started_early"))


def _client(hub: Hub, api_key: str, judge: Judge, **backend: Any) -> Iterator[TestClient]:
    from sovhub.app import create_app

    add_fake_backend(hub, "local", ["echo"], **backend)
    hub.__dict__["interceptors"] = [judge]
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        yield client


def _ask(client: TestClient, text: str = "hello big world", **extra: Any) -> Any:
    return client.post(CHAT, json={"model": "echo", "messages": [{"role": "user", "content": text}], **extra})


@pytest.fixture
def judge() -> Judge:
    return Judge()


@pytest.fixture
def local(hub: Hub, fake_plugin: FakePlugin, api_key: str, judge: Judge) -> Iterator[TestClient]:
    yield from _client(hub, api_key, judge, in_process=True)


def test_in_process_model_starts_before_the_check_ends_and_answers_after_it(
    local: TestClient, judge: Judge, fake_plugin: FakePlugin
) -> None:
    r = _ask(local)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hello big world"
    backend = fake_plugin.instances["local"]
    assert backend.calls == 1
    assert backend.seen[0][0] < judge.done_at  # generation began while the check still ran
    assert judge.started_early == ["kept"]
    # The time the answer was held for the check is the hub's, not the backend's.
    assert float(r.headers["x-sovhub-overhead-ms"]) >= judge.delay * 1000 * 0.8


def test_streamed_answer_waits_for_the_check(local: TestClient, judge: Judge, fake_plugin: FakePlugin) -> None:
    r = _ask(local, "a b c", stream=True)
    assert r.status_code == 200
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == "a b c"
    assert judge.started_early == ["kept"]


@pytest.mark.parametrize("judge", [Judge("block")], indirect=False)
def test_refusal_cancels_the_early_generation_and_sends_none_of_it(
    local: TestClient, judge: Judge, fake_plugin: FakePlugin
) -> None:
    for stream in (False, True):
        r = _ask(local, "one two three four", stream=stream)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["message"] == "refused by the judge"
        assert "one" not in r.text
    backend = fake_plugin.instances["local"]
    assert backend.calls == 2 and backend.yielded == 0  # not one word generated past the first chunk
    assert judge.started_early == []  # no answer, so no `after`


@pytest.mark.parametrize("judge", [Judge("redact")], indirect=False)
def test_rewritten_input_restarts_generation_on_the_new_messages(
    local: TestClient, judge: Judge, fake_plugin: FakePlugin
) -> None:
    r = _ask(local, "my secret number")
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "[redacted] words"
    backend = fake_plugin.instances["local"]
    # The early generation saw the original; the answer comes from the one on the rewritten input.
    assert [seen[1][-1]["content"] for seen in backend.seen] == ["my secret number", "[redacted] words"]
    assert judge.started_early == ["restarted"]


def test_remote_backend_is_called_only_after_the_check(
    hub: Hub, fake_plugin: FakePlugin, api_key: str, judge: Judge
) -> None:
    for client in _client(hub, api_key, judge):  # not in_process: the messages would leave the hub
        r = _ask(client)
        assert r.status_code == 200
    backend = fake_plugin.instances["local"]
    assert backend.seen[0][0] >= judge.done_at
    assert judge.started_early == [None]


def test_check_not_marked_concurrent_runs_first(hub: Hub, fake_plugin: FakePlugin, api_key: str) -> None:
    judge = Judge(concurrent=False)
    for client in _client(hub, api_key, judge, in_process=True):
        assert _ask(client).status_code == 200
    assert fake_plugin.instances["local"].seen[0][0] >= judge.done_at
    assert judge.started_early == [None]


def test_mixed_candidates_do_not_start_early(hub: Hub, fake_plugin: FakePlugin, api_key: str, judge: Judge) -> None:
    # The retry may go to the second backend: if that one is remote, nothing starts early.
    add_fake_backend(hub, "remote", ["echo"])
    for client in _client(hub, api_key, judge, in_process=True):
        assert _ask(client).status_code == 200
    first = min(b.seen[0][0] for b in fake_plugin.instances.values() if b.seen)
    assert first >= judge.done_at
    assert judge.started_early == [None]


def test_the_operator_can_turn_the_overlap_off(hub: Hub, fake_plugin: FakePlugin, api_key: str, judge: Judge) -> None:
    hub.settings.overlap_input_checks = False
    for client in _client(hub, api_key, judge, in_process=True):
        assert _ask(client).status_code == 200
    assert fake_plugin.instances["local"].seen[0][0] >= judge.done_at
    assert judge.started_early == [None]
