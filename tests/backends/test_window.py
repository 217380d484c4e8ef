"""Fitting a prompt into a model's window, and refusing API requests that cannot fit."""

from __future__ import annotations

import pytest

from sovhub.backends.window import MIN_ANSWER_TOKENS, Window, check_request, fit_prompt
from sovhub.errors import ContextLengthExceeded


def _words(text: str) -> int:
    return len(text.split())


def _system(passages: list[str]):  # type: ignore[no-untyped-def]
    def build(n: int, level: int) -> str:
        guidance = "" if level else " ".join(["guidance"] * 100)
        return " ".join(["prompt", guidance, *passages[:n]])
    return build


def test_oldest_history_goes_first_then_passages_from_the_lowest_ranked() -> None:
    window = Window(400, _words)
    passages = [" ".join([f"p{i}"] * 40) for i in range(4)]
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": " ".join(["h"] * 30)} for i in range(9)]
    fitted = fit_prompt(window, _system(passages), 4, history, 100)
    assert fitted.answer_tokens == 100
    assert window.prompt_tokens(fitted.messages) <= 400 - 100
    assert fitted.messages[-1] == history[-1]  # the question always stays
    assert fitted.messages[1]["role"] == "user"  # never starts with an answer
    # History went before any passage did.
    assert fitted.dropped_history > 0 and (fitted.passages == 4 or len(fitted.messages) == 2)


def test_passages_and_guidance_go_when_history_is_gone() -> None:
    window = Window(300, _words)
    passages = [" ".join([f"p{i}"] * 60) for i in range(4)]
    fitted = fit_prompt(window, _system(passages), 4, [{"role": "user", "content": "q"}], 100, levels=2)
    assert fitted.passages < 4 and fitted.passages >= 1
    assert "p0" in fitted.messages[0]["content"]  # the best ranked passage is the last to go
    assert window.prompt_tokens(fitted.messages) <= 200


def test_a_question_longer_than_the_window_is_cut_from_its_start() -> None:
    window = Window(200, _words)
    question = " ".join(f"w{i}" for i in range(500))
    fitted = fit_prompt(window, lambda n, level: "prompt", 0, [{"role": "user", "content": question}], 100)
    assert fitted.answer_tokens == MIN_ANSWER_TOKENS
    assert window.prompt_tokens(fitted.messages) <= 200 - MIN_ANSWER_TOKENS
    assert fitted.messages[-1]["content"].endswith("w499")


def test_check_request_refuses_or_cuts_the_default() -> None:
    window = Window(100, _words)
    short = [{"role": "user", "content": "hello"}]
    assert check_request(window, short, None, 512) == 100 - window.prompt_tokens(short)
    assert check_request(window, short, 20, 512) == 20
    with pytest.raises(ContextLengthExceeded) as too_much:
        check_request(window, short, 95, 512)
    assert too_much.value.param == "messages" and too_much.value.code == "context_length_exceeded"
    with pytest.raises(ContextLengthExceeded):
        check_request(window, [{"role": "user", "content": " ".join(["x"] * 90)}], None, 512)
