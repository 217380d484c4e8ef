"""The hazard taxonomy and its map onto OpenAI's moderation categories."""

from __future__ import annotations

import pytest

from sovhub.safety.taxonomy import (
    HAZARD_CODES,
    HAZARDS,
    OPENAI_CATEGORIES,
    OPENAI_MAP,
    SPEECH_SENSITIVE,
    hazard,
    openai_categories_for,
)


def test_fourteen_hazards_in_llama_guard_order() -> None:
    assert HAZARD_CODES == tuple(f"S{i}" for i in range(1, 15))
    assert hazard("S4").name == "Child Sexual Exploitation"
    assert hazard("S14").name == "Code Interpreter Abuse"


def test_openai_categories_match_the_spec_names() -> None:
    assert set(OPENAI_CATEGORIES) == {
        "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
        "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
        "violence/graphic",
    }


def test_every_mapped_name_is_an_openai_category() -> None:
    for code, names in OPENAI_MAP.items():
        assert set(names) <= set(OPENAI_CATEGORIES), code


@pytest.mark.parametrize(("code", "expected"), [
    ("S4", "sexual/minors"), ("S10", "hate"), ("S11", "self-harm"), ("S2", "illicit"), ("S9", "illicit/violent"),
])
def test_key_mappings(code: str, expected: str) -> None:
    assert expected in openai_categories_for(code)


def test_speech_sensitive_hazards_are_marked() -> None:
    assert SPEECH_SENSITIVE == {"S5", "S6", "S8", "S13"}


def test_every_hazard_has_a_description() -> None:
    assert all(len(h.description) > 40 for h in HAZARDS)


def test_unknown_code_raises() -> None:
    with pytest.raises(KeyError):
        hazard("S15")
