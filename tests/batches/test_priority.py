"""batch.interactive_first: batch lines go to the backends' background lane (preemptible), or, turned off (the
FIFO peer pattern the benchmark compares with), queue like interactive requests."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fakes import FakePlugin

from .conftest import chat_line, upload, wait_for


@pytest.mark.parametrize(("batch_settings", "background"), [
    ({"poll_interval_s": 0.05}, True),
    ({"poll_interval_s": 0.05, "interactive_first": False}, False),
])
def test_batch_lines_ask_for_the_background_lane_unless_told_not_to(
    sdk: openai.OpenAI, fake_plugin: FakePlugin, monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    backend = fake_plugin.instances["fake1"]
    answer, seen = backend.chat_stream, []

    def recording(model: str, messages: Any, params: dict[str, Any], cancel: Any) -> Any:
        seen.append(params.get("_background"))
        return answer(model, messages, params, cancel)

    monkeypatch.setattr(backend, "chat_stream", recording)
    batch = sdk.batches.create(input_file_id=upload(sdk, [chat_line("a", "hi")]), endpoint="/v1/chat/completions",
                               completion_window="24h")
    assert wait_for(sdk, batch.id).status == "completed"
    sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "interactive"}])
    assert seen == [background, None]  # interactive requests never ask for it
