"""The guard model in the chat pipeline and /v1/moderations, against a real OpenAI-compatible server.

The server (:class:`VerdictUpstream`, a :class:`tests.upstream_server.FakeUpstream` answering like
Llama Guard) reads the prompt the hub built and answers ``unsafe\\nS1`` when the judged message
carries a marker word, ``safe`` otherwise, or something that is not a verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovhub.backends.catalog import add_backend
from sovhub.hub import Hub
from sovhub.metering import Meter
from sovhub.safety.moderation import Moderator
from sovhub.settings import Settings
from tests.conftest import make_settings
from tests.upstream_server import FakeUpstream

GUARD = "guard-llm"


def judged_message(prompt: str) -> str:
    """The last turn of the conversation in a Llama Guard prompt ("User: ..." or "Agent: ...")."""
    conversation = prompt.split("<BEGIN CONVERSATION>")[1].split("<END CONVERSATION>")[0]
    return conversation.strip().split("\n\n")[-1]


def llama_guard(prompt: str) -> str:
    last = judged_message(prompt)
    if "GARBLE" in last:
        return "I think this message is probably fine."
    if "KABOOM" in last or (last.startswith("Agent:") and "DETONATE" in last):
        return "unsafe\nS1"
    return "safe"


class VerdictUpstream(FakeUpstream):
    """Streams one verdict per chat request, computed by ``answer`` from the prompt."""

    def __init__(self, answer: Callable[[str], str] = llama_guard, delay: float = 0.0) -> None:
        super().__init__([GUARD], delay=delay)
        owner = self
        base: Any = self.server.RequestHandlerClass

        class Verdicts(base):  # type: ignore[misc]
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                owner.requests.append({"path": self.path, "body": body})
                if owner.delay:
                    time.sleep(owner.delay)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                head = {"id": "g-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
                verdict = answer(body["messages"][-1]["content"])
                self._event({**head, "choices": [{"index": 0, "delta": {"content": verdict}, "finish_reason": None}]})
                self._event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self.wfile.write(b"data: [DONE]\n\n")

        self.server.RequestHandlerClass = Verdicts

    @property
    def prompts(self) -> list[str]:
        return [r["body"]["messages"][-1]["content"] for r in self.requests]


@pytest.fixture
def guard_upstream() -> Iterator[VerdictUpstream]:
    up = VerdictUpstream()
    with up:
        yield up


@pytest.fixture(name="settings")
def guard_settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, embeddings_enabled=False, safety={"guards": ["pii"], "guard_model": GUARD})


def _start(hub: Hub, fake_plugin: Any, api_key: str, upstream: FakeUpstream | None) -> TestClient:
    from sovhub.app import create_app
    from tests.conftest import add_fake_backend

    add_fake_backend(hub, "fake1", ["echo"])
    if upstream is not None:
        add_backend(hub, "guard", url=upstream.url, models=[GUARD])
    return TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"})


def _chat(client: TestClient, content: str, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": content}], **extra})


def _events(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_unsafe_input_is_blocked_before_the_backend(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = _chat(client, "how to KABOOM the station, write to ana@example.org")
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "content_policy_violation" and error["categories"] == ["S1"]
    assert fake_plugin.instances["fake1"].calls == 0
    prompt = guard_upstream.prompts[0]
    assert "S1: Violent Crimes." in prompt and "User: how to KABOOM the station" in prompt
    # The guard model is a backend: it sees identifiers redacted, like the chat model would.
    assert "ana@example.org" not in prompt
    sent = guard_upstream.requests[0]["body"]
    assert sent["model"] == GUARD and sent["temperature"] == 0.0 and sent["max_tokens"] <= 32


def test_safe_exchange_asks_for_input_and_final_answer(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = _chat(client, "what is the capital of Poland")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    roles = [judged_message(p).split(":")[0] for p in guard_upstream.prompts]
    assert roles == ["User", "Agent"]
    assert "User: what is the capital of Poland\n\nAgent: what is the capital of Poland" in guard_upstream.prompts[1]


def test_streamed_answer_stopped_by_the_guard_model(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    # The judge flags DETONATE only in answers: the input passes, the echoed answer is stopped.
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = _chat(client, "say DETONATE please", stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200
    events = _events(r)
    finishes = [c["finish_reason"] for e in events for c in e.get("choices", []) if c.get("finish_reason")]
    assert finishes == ["content_filter"]
    assert "usage" in events[-1]


def test_non_streamed_answer_stopped_by_the_guard_model(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = _chat(client, "say DETONATE please")
    assert r.status_code == 200
    assert r.json()["choices"][0]["finish_reason"] == "content_filter"


def test_malformed_verdict_fails_closed_on_input(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = _chat(client, "GARBLE this")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "guard_model_invalid"
    assert "not a verdict" in r.json()["error"]["message"]
    assert fake_plugin.instances["fake1"].calls == 0


def test_malformed_verdict_on_output_ends_the_stream_with_an_error(hub: Hub, fake_plugin: Any, api_key: str) -> None:
    def garbles_answers(prompt: str) -> str:
        return "no idea" if judged_message(prompt).startswith("Agent:") else "safe"

    up = VerdictUpstream(garbles_answers)
    with up, _start(hub, fake_plugin, api_key, up) as client:
        r = _chat(client, "hello there", stream=True)
    assert r.status_code == 200
    events = _events(r)
    assert events[-1]["error"]["code"] == "guard_model_invalid"
    assert not any(c.get("finish_reason") == "stop" for e in events for c in e.get("choices", []))
    assert r.text.rstrip().endswith("data: [DONE]")


def test_fail_open_lets_the_other_guards_decide(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    hub.settings.safety.guard_model_failure = "open"
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = _chat(client, "GARBLE this")
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "GARBLE this"
    assert any("fail-open" in rec.getMessage() for rec in caplog.records)


def test_guard_model_not_served(hub: Hub, fake_plugin: Any, api_key: str) -> None:
    with _start(hub, fake_plugin, api_key, None) as client:
        r = _chat(client, "hello")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "guard_model_unavailable"


def test_guard_model_too_slow(hub: Hub, fake_plugin: Any, api_key: str) -> None:
    hub.settings.safety.guard_model_timeout_s = 0.2
    up = VerdictUpstream(delay=1.0)
    # The hub hangs up before the slow verdict is written: that broken pipe is the point, not news.
    up.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    with up, _start(hub, fake_plugin, api_key, up) as client:
        r = _chat(client, "hello")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "guard_model_timeout"


def test_guard_model_off_by_default(data_dir: Path) -> None:
    assert make_settings(data_dir).safety.guard_model is None


def test_moderations_include_the_guard_models_verdict(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    from tests.safety.moderation_fixtures import moderator

    hub.services.replace(Moderator, moderator())  # the trained classifier, shared across tests
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = client.post("/v1/moderations", json={"input": ["KABOOM, mail ana@example.org", "good morning", "  "]})
        assert r.status_code == 200, r.text
        flagged, clean, blank = r.json()["results"]
        assert flagged["flagged"] and "S1" in flagged["hazard_codes"]
        assert flagged["categories"]["violence"] and flagged["category_scores"]["violence"] == 1.0
        assert not clean["flagged"] and not blank["flagged"]
        # Blank input is not sent; identifiers are masked before the guard model sees the text.
        assert len(guard_upstream.prompts) == 2
        assert all("ana@example.org" not in p for p in guard_upstream.prompts)
        # A second usage row bills the guard model's calls, counted for the guard model (estimated here).
        from sovhub.backends.base import estimate_tokens

        guard_row = next(r for r in _usage_rows(hub, client) if r.model == GUARD)
        assert guard_row.endpoint == "moderations" and guard_row.backend == "guard" and guard_row.estimated
        assert guard_row.prompt_tokens == sum(estimate_tokens(p) for p in guard_upstream.prompts)
        bad = client.post("/v1/moderations", json={"input": "GARBLE"})
    assert bad.status_code == 502 and bad.json()["error"]["code"] == "guard_model_invalid"


def test_payload_past_the_old_8k_cut_is_judged(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    # The guard model judges the end of a long message too, not only its first characters.
    padded = "benign filler text. " * 1_500 + "now KABOOM the station"
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = _chat(client, padded)
    assert r.status_code == 403
    assert len(guard_upstream.prompts) >= 4
    assert fake_plugin.instances["fake1"].calls == 0


def test_system_and_tool_messages_reach_the_guard_model(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = client.post("/v1/chat/completions", json={"model": "echo", "messages": [
            {"role": "system", "content": "you KABOOM"}, {"role": "user", "content": "hello"}]})
    assert r.status_code == 403


def _usage_rows(hub: Hub, client: TestClient) -> list[Any]:
    from sqlalchemy import select

    from sovhub.store.tables import UsageRecord

    client.portal.call(hub.services.get(Meter).flush)
    with hub.db.session() as s:
        return list(s.scalars(select(UsageRecord).order_by(UsageRecord.id)))


def test_the_chat_pipelines_guard_model_calls_are_metered(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    from sovhub.backends.base import estimate_tokens

    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        assert _chat(client, "what is the capital of Poland").status_code == 200
        rows = _usage_rows(hub, client)
        by_model = {r.model: r for r in rows}
        assert set(by_model) == {"echo", GUARD}, [r.model for r in rows]
        guard = by_model[GUARD]
        assert guard.request_id == by_model["echo"].request_id and guard.endpoint == "chat"
        assert guard.backend == "guard" and guard.org_id == by_model["echo"].org_id
        # The fake guard reports no usage and has no tokenizer here: counted by the hub, and said so.
        assert guard.estimated
        assert guard.prompt_tokens == sum(estimate_tokens(p) for p in guard_upstream.prompts)
        assert guard.completion_tokens == 2 * estimate_tokens("safe")

        # A request the guard model refuses never reaches the chat model, but its verdict is billed.
        assert _chat(client, "how to KABOOM the station").status_code == 403
        blocked = [r for r in _usage_rows(hub, client) if r.id not in {x.id for x in rows}]
    assert [(r.model, r.status) for r in blocked] == [(GUARD, 403)]
    assert blocked[0].prompt_tokens == estimate_tokens(guard_upstream.prompts[-1])


def test_the_guard_models_tokens_count_against_the_token_quota(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    """Refused by the guard model, many times: each verdict is settled against the tokens per day."""
    from sqlalchemy import select

    from sovhub.access.quotas import set_org_limits
    from sovhub.store.tables import Organization

    with hub.db.session() as s:
        org = int(s.execute(select(Organization.id).where(Organization.name == "acme")).scalar_one())
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        assert _chat(client, "how to KABOOM the station", max_tokens=8).status_code == 403
        spent = _usage_rows(hub, client)[0].prompt_tokens
        # What admission holds for one such request (the answer, the prompt, the guard model's calls).
        set_org_limits(hub, org, {"tpd": 1})
        refused = _chat(client, "how to KABOOM the station", max_tokens=8).json()["error"]["message"]
        held = int(refused.split("may use up to ")[1].split()[0])
        # Room for what is held, and for two more refusals' verdicts: the third finds the day used up.
        set_org_limits(hub, org, {"tpd": spent + held + 2 * spent - 1})
        codes = [_chat(client, "how to KABOOM the station", max_tokens=8).status_code for _ in range(6)]
    # Before, a refused request gave its whole reservation back: refusals were free for ever.
    assert codes[:2] == [403, 403] and codes[-1] == 429, codes


def _org_id(hub: Hub) -> int:
    from sqlalchemy import select

    from sovhub.store.tables import Organization

    with hub.db.session() as s:
        return int(s.execute(select(Organization.id).where(Organization.name == "acme")).scalar_one())


def test_the_guard_models_tokens_are_reserved_at_admission(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    """Before, admission held max_tokens x n and the prompt only: a request whose verdicts alone pass
    the token limit was admitted, judged twice and settled over the limit. Now it is refused first."""
    from sovhub.access.quotas import set_org_limits

    set_org_limits(hub, _org_id(hub), {"tpd": 60})  # the answer and the prompt fit; the guard's templates do not
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        r = _chat(client, "what is the capital of Poland", max_tokens=8)
        assert r.status_code == 429 and r.json()["error"]["code"] == "tokens_over_limit", r.text
        assert guard_upstream.requests == [] and fake_plugin.instances["fake1"].calls == 0
        assert _usage_rows(hub, client) == []


def test_the_guard_models_reservation_is_settled_to_what_it_used(
    hub: Hub, fake_plugin: Any, api_key: str, guard_upstream: VerdictUpstream
) -> None:
    """The estimate is held, not spent: after the request only the calls' real tokens count."""
    from sovhub.access.quotas import set_org_limits
    from sovhub.safety.guard_model import reserve_tokens

    org = _org_id(hub)
    set_org_limits(hub, org, {"tpd": 1})
    with _start(hub, fake_plugin, api_key, guard_upstream) as client:
        question = "what is the capital of Poland"
        refused = _chat(client, question, max_tokens=200)
        held = int(refused.json()["error"]["message"].split("may use up to ")[1].split()[0])
        # The answer and the prompt, and the guard model reading the question, then the answer with it.
        guard = reserve_tokens(len(question)) + reserve_tokens(4 * 200, role="Agent", history=[("User", question)])
        assert held > 200 + guard
        set_org_limits(hub, org, {"tpd": held})
        assert _chat(client, "what is the capital of Poland", max_tokens=200).status_code == 200
        rows = _usage_rows(hub, client)
        assert [r.model for r in rows] == ["echo", GUARD]
        used = sum(r.prompt_tokens + r.completion_tokens for r in rows)
        assert used < held - 150
        # Settled to `used`: a second request fits again once the limit leaves room for its estimate.
        set_org_limits(hub, org, {"tpd": used + held})
        assert _chat(client, "what is the capital of Poland", max_tokens=200).status_code == 200
