"""An unreadable or wrong-language answer is asked once more, and never shown when it stays so.

The backend replays recorded answers: SmolLM2-135M's own reply to "Як зареєструвати місце
проживання?" (recorded with llama.cpp, seed 7), which the detector reads as Ukrainian and whose
words are not Ukrainian, then whatever the test needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovhub.assistant.fidelity import FidelityTracker
from sovhub.assistant.grounding import dont_know
from sovhub.assistant.people import create_user
from sovhub.hub import Hub
from tests.conftest import add_fake_backend
from tests.fakes import FakePlugin

from .conftest import PASSWORD, Web, sse_events

RECORDED_GIBBERISH = 'Ябложење відесет: "Раздразів старого місце" (The truth is clear).\nНарузіём 2023 - Общё надарёт.'
UKRAINIAN = "Місце проживання реєструють у центрі надання адміністративних послуг. Візьміть паспорт і заяву."
ENGLISH = "You can register your place of residence at the administrative services centre with your passport."
QUESTION = "Як зареєструвати місце проживання?"


def _web(hub: Hub, fake_plugin: FakePlugin, answers: list[str]) -> Iterator[Web]:
    from sovhub.app import create_app

    add_fake_backend(hub, "recorded", ["echo"], answers=answers)
    user_id = create_user(hub, "olena@example.org", PASSWORD, display_name="Olena")
    with TestClient(create_app(hub), base_url="http://testserver") as client:
        web = Web(client, hub, user_id, "olena@example.org")
        web.sign_in()
        yield web


@pytest.fixture
def replay(hub: Hub, fake_plugin: FakePlugin, request: pytest.FixtureRequest) -> Iterator[Web]:
    yield from _web(hub, fake_plugin, list(request.param))


def _turn(web: Web) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    events = sse_events(web.ask(QUESTION))
    conversation = next(d for n, d in events if n == "conversation")["id"]
    page = web.client.get(f"/c/{conversation}").text
    return events, page


def _final_text(events: list[tuple[str, dict[str, Any]]]) -> str:
    """The text left on the screen: the deltas after the last reset."""
    resets = [i for i, (n, _d) in enumerate(events) if n == "reset"]
    after = events[resets[-1] + 1:] if resets else events
    return "".join(d["text"] for n, d in after if n == "delta")


@pytest.mark.parametrize("replay", [[RECORDED_GIBBERISH, UKRAINIAN]], indirect=True)
def test_gibberish_is_asked_again_and_the_readable_answer_is_shown(replay: Web, fake_plugin: FakePlugin) -> None:
    events, page = _turn(replay)
    assert [d["reason"] for n, d in events if n == "reset"] == ["unreadable"]
    assert _final_text(events) == UKRAINIAN
    assert "Ябложење" not in page and "Місце проживання реєструють" in page
    backend = fake_plugin.instances["recorded"]
    assert backend.calls == 2
    # The second request carries the stronger instruction the first did not.
    assert backend.received[1] != backend.received[0]
    counts = replay.hub.services.get(FidelityTracker).snapshot()["echo"]["languages"]["uk"]
    assert (counts["unreadable"], counts["retries"], counts["fixed_by_retry"]) == (1, 1, 1)


@pytest.mark.parametrize("replay", [[RECORDED_GIBBERISH, RECORDED_GIBBERISH]], indirect=True)
def test_gibberish_twice_is_never_shown(replay: Web, fake_plugin: FakePlugin) -> None:
    events, page = _turn(replay)
    assert [d["reason"] for n, d in events if n == "reset"] == ["unreadable", "unreadable"]
    # No knowledge base passage answers (none is loaded): the honest answer, in Ukrainian.
    assert _final_text(events) == dont_know("uk")
    done = next(d for n, d in events if n == "done")
    assert done["citations"] == [] and "Ябложење" not in done["html"]
    assert "Ябложење" not in page and dont_know("uk") in page
    assert fake_plugin.instances["recorded"].calls == 2  # one retry, not more


@pytest.mark.parametrize("replay", [[ENGLISH, ENGLISH]], indirect=True)
def test_another_language_twice_is_not_shown_either(replay: Web) -> None:
    events, page = _turn(replay)
    assert [d["reason"] for n, d in events if n == "reset"] == ["language", "language"]
    assert _final_text(events) == dont_know("uk")
    assert "administrative services centre" not in page


@pytest.mark.parametrize("replay", [[UKRAINIAN]], indirect=True)
def test_a_readable_answer_is_not_asked_again(replay: Web, fake_plugin: FakePlugin) -> None:
    events, _page = _turn(replay)
    assert not [n for n, _d in events if n == "reset"]
    assert _final_text(events) == UKRAINIAN and fake_plugin.instances["recorded"].calls == 1
