"""The optional guard-model guard: ask a chat model (Llama Guard 3, ShieldGemma, any model) to judge.

The prompt is built from the taxonomy in Llama Guard 3's format, so Llama Guard answers natively
and other models are told exactly what to say. The answer is parsed *strictly*: ``safe``, or
``unsafe`` followed by a line of known hazard codes. Anything else raises
:class:`~sovhub.errors.UpstreamFailed` — a guard that cannot be understood has failed; it is never
read as "safe". Off by default; the hub supplies ``complete(messages) -> str``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..errors import UpstreamFailed
from .guards import GuardFinding
from .taxonomy import HAZARD_CODES, HAZARDS

__all__ = ["Complete", "GuardModelGuard", "GuardVerdict", "build_prompt", "parse_verdict"]

Complete = Callable[[list[dict[str, str]]], Awaitable[str]]

# The model judges at most this much of a message; longer ones are cut (the other guards see all).
MAX_PROMPT_CHARS = 8000
_CODES_LINE = re.compile(r"S\d{1,2}(?:\s*,\s*S\d{1,2})*")


@dataclass(frozen=True)
class GuardVerdict:
    safe: bool
    codes: tuple[str, ...] = ()


def build_prompt(text: str, *, role: str = "User", history: Sequence[tuple[str, str]] = (),
                 codes: Sequence[str] = HAZARD_CODES) -> str:
    """Llama Guard 3's prompt for judging the last ``role`` message (role: "User" or "Agent")."""
    if role not in ("User", "Agent"):
        raise ValueError("role must be 'User' or 'Agent'")
    categories = "\n".join(f"{h.code}: {h.name}." for h in HAZARDS if h.code in codes)
    turns = [*history, (role, text[:MAX_PROMPT_CHARS])]
    conversation = "\n\n".join(f"{who}: {what}" for who, what in turns)
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations according to our "
        "safety policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


def parse_verdict(answer: str) -> GuardVerdict:
    """``"safe"`` or ``"unsafe\\nS1,S10"`` (surrounding whitespace allowed); anything else raises."""
    if not isinstance(answer, str):
        raise UpstreamFailed("the guard model returned no text", code="guard_model_invalid")
    lines = [line.strip() for line in answer.strip().splitlines()]
    if lines == ["safe"]:
        return GuardVerdict(safe=True)
    if len(lines) == 2 and lines[0] == "unsafe" and _CODES_LINE.fullmatch(lines[1]):
        codes = tuple(dict.fromkeys(c.strip() for c in lines[1].split(",")))
        unknown = [c for c in codes if c not in HAZARD_CODES]
        if unknown:
            raise UpstreamFailed(f"the guard model named unknown categories {unknown}",
                                 code="guard_model_invalid")
        return GuardVerdict(safe=False, codes=codes)
    shown = answer if len(answer) <= 80 else answer[:77] + "..."
    raise UpstreamFailed(f"the guard model's answer is not a verdict: {shown!r}", code="guard_model_invalid")


class GuardModelGuard:
    """Asynchronous guard: ``await guard.ascan(text, lang)``. Findings have score 1 and no span."""

    name = "guard_model"

    def __init__(self, complete: Complete, *, codes: Sequence[str] = HAZARD_CODES, role: str = "User") -> None:
        self.complete = complete
        self.codes = tuple(codes)
        self.role = role

    async def ascan(self, text: str, lang: str | None, *,
                    history: Sequence[tuple[str, str]] = ()) -> list[GuardFinding]:
        prompt = build_prompt(text, role=self.role, history=history, codes=self.codes)
        answer = await self.complete([{"role": "user", "content": prompt}])
        verdict = parse_verdict(answer)
        return [GuardFinding(category=c, score=1.0, guard=self.name) for c in verdict.codes]
