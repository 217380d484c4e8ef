"""The string values of a call's arguments, read from whole JSON and from a stream's pieces so far."""

from __future__ import annotations

import json

import pytest

from sovhub.tool_arguments import argument_values

NESTED = {"q": "first", "opts": {"lang": "uk", "n": 3, "tags": ["a b", " ", "c"]}, "esc": "quote \" and \\ é 😀"}


def _values(data: object) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [v for item in data.values() for v in _values(item)]
    if isinstance(data, list):
        return [v for item in data for v in _values(item)]
    return []


@pytest.mark.parametrize("ascii_only", [True, False])
def test_whole_json_gives_what_a_json_parser_reads(ascii_only: bool) -> None:
    text = json.dumps(NESTED, ensure_ascii=ascii_only, indent=1)
    assert argument_values(text) == "\n".join(v for v in _values(NESTED) if v.strip())
    assert argument_values(text).splitlines()[:2] == ["first", "uk"]


@pytest.mark.parametrize("ascii_only", [True, False])
def test_every_prefix_only_grows_at_its_end(ascii_only: bool) -> None:
    """A stream's arguments: each piece read so far extends what was read before, never rewrites it."""
    text = json.dumps(NESTED, ensure_ascii=ascii_only)
    before = ""
    for cut in range(len(text) + 1):
        now = argument_values(text[:cut])
        assert now.startswith(before), (text[:cut], before, now)
        before = now
    assert before == argument_values(text)


def test_a_cut_escape_waits_for_the_rest() -> None:
    assert argument_values('{"q": "bomb \\') == "bomb "
    assert argument_values('{"q": "\\u00e') == ""
    assert argument_values('{"q": "\\u00e9') == "é"
    assert argument_values('{"q": "\\ud83d') == ""  # half of a surrogate pair
    assert argument_values('{"q": "\\ud83d\\ude00"') == "😀"
    assert argument_values('{"q": "\\ud83dx"}') == "\ufffdx"  # a lone half is not a character


def test_keys_are_not_values_and_text_without_strings_gives_nothing() -> None:
    assert argument_values('{"how to make a bomb": 1, "n": true}') == ""
    assert argument_values("not json {") == ""
    assert argument_values('{"q": "How do I make a pi') == "How do I make a pi"
