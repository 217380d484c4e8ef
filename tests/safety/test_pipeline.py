"""The guard pipeline through the real app: blocks with explanations, redaction, streaming stops."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovhub.hub import Hub
from sovhub.safety.guards import GuardFinding
from tests.safety.pipeline_fixtures import MarkerPlugin, marker_fixture, pipeline_settings  # noqa: F401 - fixtures


def _chat(client: TestClient, content: str, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": content}], **extra})


def _events(response: Any) -> list[dict[str, Any]]:
    out = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def test_blocked_request_is_403_with_explanation(app_client: TestClient, marker: MarkerPlugin) -> None:
    r = _chat(app_client, "Wie baue ich KABOOM zu Hause?")
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["code"] == "content_policy_violation"
    assert error["type"] == "permission_error"
    assert error["categories"] == ["S1"]
    assert error["policy_clauses"] == ["categories.S1"]
    assert error["lang"] == "de"
    assert "Gewaltverbrechen" in error["explanation"] and "categories.S1" in error["explanation"]
    assert error["decision_id"].startswith("mod_")
    assert error["appeal_url"] == "/hub/v1/appeals"
    assert error["decision_id"] in error["explanation"]


def test_explanation_language_follows_the_text(app_client: TestClient, marker: MarkerPlugin) -> None:
    expected = {"Як зробити KABOOM?": "насильницькі", "KABOOMを作る方法": "暴力犯罪", "كيف أصنع KABOOM": "جرائم عنيفة",
                "Comment faire KABOOM pour la fête ?": "crimes violents", "Jak zrobić KABOOM?": "przemocy",
                "¿Cómo se hace KABOOM para la fiesta?": "delitos violentos", "How do I make KABOOM": "violent"}
    for text, word in expected.items():
        error = _chat(app_client, text).json()["error"]
        assert word in error["explanation"], (text, error["explanation"])


def test_clean_request_passes(app_client: TestClient, marker: MarkerPlugin) -> None:
    r = _chat(app_client, "hello there")
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "hello there"


def test_pii_pseudonymised_for_model_and_restored_for_person(
    app_client: TestClient, hub: Hub, fake_plugin: Any
) -> None:
    text = "my IBAN is DE89370400440532013000 and mail ana@example.org"
    r = _chat(app_client, text)
    assert r.status_code == 200
    # The echo backend saw placeholders only, the person reads their own values back.
    backend = fake_plugin.instances["fake1"]
    assert backend.calls == 1
    seen = json.dumps(backend.received[-1])
    assert "DE89370400440532013000" not in seen and "ana@example.org" not in seen
    assert r.json()["choices"][0]["message"]["content"] == text
    assert int(r.headers["content-length"]) == len(r.content)


def test_model_never_sees_the_values(app_client: TestClient, hub: Hub) -> None:
    seen: list[str] = []
    from sovhub.safety.pipeline import SafetyRuntime

    original = hub.services.get(SafetyRuntime).redactor.redact

    def spy(*args: Any, **kwargs: Any) -> str:
        out = original(*args, **kwargs)
        seen.append(out)
        return out

    hub.services.get(SafetyRuntime).redactor.redact = spy  # type: ignore[method-assign]
    r = _chat(app_client, "card 4111 1111 1111 1111 please")
    assert r.status_code == 200
    assert seen == ["card <CREDIT_CARD_1> please"]


def test_streamed_answer_restores_split_placeholders(app_client: TestClient) -> None:
    text = "IBAN DE89370400440532013000 then GB82WEST12345698765432 done"
    r = _chat(app_client, text, stream=True)
    assert r.status_code == 200
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in _events(r) if c.get("choices"))
    assert content == text


class _AnswerGuard:
    """Flags KABOOM from its second call on: the first call is the input scan of the one user
    message, later calls are output checks, so only the answer can be blocked."""

    name = "answer-marker"

    def __init__(self) -> None:
        self.calls = 0

    def scan(self, text: str, lang: str | None) -> list[GuardFinding]:
        self.calls += 1
        return [GuardFinding("S9", 0.97, self.name)] if self.calls > 1 and "KABOOM" in text else []


def test_streaming_output_stop_ends_with_content_filter(app_client: TestClient, marker: MarkerPlugin) -> None:
    marker.guard = _AnswerGuard()  # type: ignore[assignment]
    words = " ".join(["fine"] * 20) + " KABOOM " + " ".join(["after"] * 60)
    r = _chat(app_client, words, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200
    events = _events(r)
    finishes = [c["finish_reason"] for e in events for c in e.get("choices", []) if c.get("finish_reason")]
    assert finishes == ["content_filter"]
    streamed = "".join(c["delta"].get("content", "") for e in events for c in e.get("choices", []))
    assert streamed.count("after") < 60
    assert "usage" in events[-1]


def test_non_streaming_output_stop(app_client: TestClient, marker: MarkerPlugin) -> None:
    marker.guard = _AnswerGuard()  # type: ignore[assignment]
    r = _chat(app_client, " ".join(["fine"] * 20) + " KABOOM " + " ".join(["after"] * 60))
    assert r.status_code == 200
    assert r.json()["choices"][0]["finish_reason"] == "content_filter"


def test_output_block_is_logged_without_content(app_client: TestClient, hub: Hub, marker: MarkerPlugin) -> None:
    from sqlalchemy import select

    from sovhub.safety.pipeline import SafetyRuntime
    from sovhub.safety.tables import ModerationLog

    marker.guard = _AnswerGuard()  # type: ignore[assignment]
    _chat(app_client, "fine KABOOM " + " ".join(["after"] * 60))
    hub.services.get(SafetyRuntime).recorder.flush()
    with hub.db.session() as s:
        rows = s.scalars(select(ModerationLog)).all()
        assert [(r.direction, r.action, r.categories, r.content) for r in rows] == [("output", "block", ["S9"], None)]


def test_warn_passes_and_is_logged(app_client: TestClient, hub: Hub, marker: MarkerPlugin) -> None:
    from sqlalchemy import select

    from sovhub.safety.pipeline import SafetyRuntime
    from sovhub.safety.tables import ModerationLog

    r = _chat(app_client, "tell me WARNWORD")
    assert r.status_code == 200
    hub.services.get(SafetyRuntime).recorder.flush()
    with hub.db.session() as s:
        row = s.scalars(select(ModerationLog)).one()
        assert (row.action, row.categories, row.clauses, row.content) == ("warn", ["S12"], ["categories.S12"], None)


def test_disabled_safety_lets_everything_through(app_client: TestClient, hub: Hub, marker: MarkerPlugin) -> None:
    hub.settings.safety.enabled = False
    r = _chat(app_client, "KABOOM and ana@example.org")
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "KABOOM and ana@example.org"


def test_bad_chat_input(app_client: TestClient, marker: MarkerPlugin) -> None:
    for content in ["", " ", "\x00\x01", "🙂" * 500, "a" * 50_000, "mixed Кириллица 日本語 عربى"]:
        r = _chat(app_client, content)
        assert r.status_code == 200, content
    parts = [{"type": "text", "text": "KABOOM"}]
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": parts}]})
    assert r.status_code == 403


def test_history_pii_and_smuggled_hazard(app_client: TestClient, marker: MarkerPlugin, fake_plugin: Any) -> None:
    # A hazard in an earlier user turn is still judged; PII in any role is redacted.
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": "KABOOM"}, {"role": "assistant", "content": "no"},
        {"role": "user", "content": "ok"}]})
    assert r.status_code == 403
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "system", "content": "user mail: ana@example.org"}, {"role": "user", "content": "my mail?"}]})
    assert r.status_code == 200
    assert "ana@example.org" not in json.dumps(fake_plugin.instances["fake1"].received[-1])


def test_floor_violation_stops_start_up(hub: Hub, fake_plugin: Any, tmp_path: Any) -> None:
    import pytest

    from sovhub.app import create_app
    from sovhub.safety.policy import FloorViolation
    from tests.safety.pipeline_fixtures import MarkerPlugin as Plugin

    class ElectionGuard:
        name = "election-topic"

        def scan(self, text: str, lang: str | None) -> list[GuardFinding]:
            return [GuardFinding("S13", 0.9, self.name)] if "vote" in text.lower() else []

    plugin = Plugin()
    plugin.guard = ElectionGuard()  # type: ignore[assignment]
    hub.pm.register(plugin, name="tests.election")
    try:
        with pytest.raises(FloorViolation, match="floor.check-set"), TestClient(create_app(hub)):
            pass
    finally:
        hub.pm.unregister(name="tests.election")


def test_policy_check_command(hub: Hub, tmp_path: Any) -> None:
    import pytest

    from sovhub.safety.policy import DEFAULT_POLICY, FloorViolation
    from tests.safety.test_appeals import _cli

    good = _cli(hub, ["safety", "policy", "check", str(DEFAULT_POLICY)])
    assert "passes the floor" in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_POLICY.read_text().replace("S13: {action: block, threshold: 0.6}",
                                                      "S13: {action: block, threshold: 0.0}"))
    with pytest.raises(FloorViolation, match="floor.speech-sensitive"):
        _cli(hub, ["safety", "policy", "check", str(bad)])
    assert "version:" in _cli(hub, ["safety", "policy", "show"]).output


def test_every_client_written_role_is_judged(app_client: TestClient, marker: MarkerPlugin) -> None:
    # Before issue 12 only `user` messages reached the hazard guards.
    for role in ("system", "developer", "assistant", "tool"):
        r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [
            {"role": role, "content": "Explain KABOOM step by step."}, {"role": "user", "content": "go on"}]})
        assert r.status_code == 403, role
        assert r.json()["error"]["categories"] == ["S1"]
    parts = [{"type": "text", "text": "harmless"}, {"type": "text", "text": "KABOOM recipe"}]
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "system", "content": parts}, {"role": "user", "content": "hi"}]})
    assert r.status_code == 403


def test_tool_call_arguments_are_judged(app_client: TestClient, marker: MarkerPlugin) -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "search", "arguments": json.dumps({"q": "how to build KABOOM"})}}
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "no results"},
        {"role": "user", "content": "thanks"}]})
    assert r.status_code == 403
    assert r.json()["error"]["categories"] == ["S1"]


@pytest.mark.parametrize("field", [
    {"refusal": "KABOOM, step by step"},
    {"reasoning_content": "first gather KABOOM parts"},
    {"reasoning": "first gather KABOOM parts"},
    {"function_call": {"name": "search", "arguments": json.dumps({"q": "KABOOM recipe"})}},
])
def test_refusal_reasoning_and_legacy_function_call_are_judged(
    app_client: TestClient, marker: MarkerPlugin, field: dict[str, Any]
) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": "look it up"}, {"role": "assistant", "content": "", **field},
        {"role": "user", "content": "thanks"}]})
    assert r.status_code == 403, field
    assert r.json()["error"]["categories"] == ["S1"]


def test_input_past_the_cap_is_400(app_client: TestClient, hub: Hub, marker: MarkerPlugin) -> None:
    cap = hub.settings.safety.max_input_chars
    half = "lorem ipsum " * (cap // 24 + 1)
    # Two messages, each under the cap, together over it: the cap is per request.
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "system", "content": half}, {"role": "user", "content": half}]})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "messages" and error["code"] == "input_too_long"
    assert str(cap) in error["message"] and error["type"] == "invalid_request_error"
    r = _chat(app_client, "x" * (cap - 10))
    assert r.status_code == 200


def test_payload_at_the_end_of_a_long_message_is_found(app_client: TestClient, marker: MarkerPlugin) -> None:
    r = _chat(app_client, "benign filler text. " * 4_900 + "KABOOM")
    assert r.status_code == 403


def test_web_assistant_own_turns_are_not_judged_as_the_persons(hub: Hub, marker: MarkerPlugin) -> None:
    import anyio

    from sovhub.errors import ContentBlocked
    from sovhub.pipeline import ChatContext, Principal
    from sovhub.safety.pipeline import SafetyInterceptor

    def ctx(principal: Principal) -> ChatContext:
        # The web app's system prompt quotes an operator-loaded passage that names the hazard.
        return ChatContext(request_id="r1", principal=principal, model="echo", params={}, stream=False, messages=[
            {"role": "system", "content": "Source [1]: history of KABOOM attacks"},
            {"role": "user", "content": "summarise the source"}])

    interceptor = SafetyInterceptor(hub)
    anyio.run(interceptor.before, ctx(Principal(org_id=None, user_id=7)))
    with pytest.raises(ContentBlocked):
        anyio.run(interceptor.before, ctx(Principal(org_id=1, key_id=3, key_prefix="sk-x")))
