"""The web assistant's answer path: a stopped answer's flagged text is never shown nor stored."""

from __future__ import annotations

import time

from sqlalchemy import select

from sovhub.pipeline import ChatContext, ChatResult, OutputVerdict
from sovhub.store.tables import UsageRecord

from .conftest import Web, sse_events

_events = sse_events


class _Stopper:
    """Stops any answer that contains KABOOM (the question is not judged)."""

    name = "tests.stopper"

    async def before(self, ctx: ChatContext) -> None:
        return None

    async def check_output(self, ctx: ChatContext, text: str, final: bool) -> OutputVerdict | None:
        if "KABOOM" in text:
            return OutputVerdict("stop", {"explanation": "Stopped by clause 7.", "decision_id": "mod_7"})
        return None

    async def after(self, ctx: ChatContext, result: ChatResult) -> None:
        return None


def test_a_stopped_answer_keeps_only_the_text_that_passed(signed_in: Web) -> None:
    signed_in.hub.interceptors.append(_Stopper())
    question = " ".join(f"fine{i}" for i in range(30)) + " KABOOM " + " ".join(f"after{i}" for i in range(30))
    body = signed_in.ask(question)
    events = _events(body)
    shown = "".join(d["text"] for n, d in events if n == "delta")
    assert "KABOOM" not in shown and "after" not in shown
    # What passed the check before the flagged step is shown and kept; the rest never left the hub.
    assert question.startswith(shown)
    done = events[-1][1]
    assert events[-1][0] == "done" and done["finish_reason"] == "content_filter"
    assert done["block"]["explanation"] == "Stopped by clause 7." and "KABOOM" not in done["html"]
    export = signed_in.client.get("/hub/v1/me/export").json()
    stored = export["assistant_conversations"][0]["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["text"] == shown
    page = signed_in.client.get(f"/c/{events[0][1]['id']}")
    assert page.text.count("KABOOM") == 2  # the question and its edit box, never the answer


def test_an_assistant_answer_is_metered_for_its_person(signed_in: Web) -> None:
    _events(signed_in.ask("one two three four"))
    deadline = time.monotonic() + 5
    rows: list[UsageRecord] = []
    while not rows and time.monotonic() < deadline:  # the meter writes in batches
        with signed_in.hub.db.session() as s:
            rows = list(s.scalars(select(UsageRecord)))
        time.sleep(0.05)
    assert [(r.user_id, r.org_id, r.completion_tokens) for r in rows] == [(signed_in.user_id, None, 4)]
