"""Tool-call arguments are judged unwrapped: the string values inside the JSON, one per line."""

from __future__ import annotations

from sovhub.safety.fields import argument_values


def test_string_values_are_taken_out_of_nested_json_in_order() -> None:
    args = '{"q": "first", "opts": {"lang": "uk", "n": 3, "tags": ["a b", " ", "c"]}}'
    assert argument_values(args) == "first\nuk\na b\nc"


def test_text_that_is_not_json_or_has_no_strings_gives_nothing() -> None:
    assert argument_values("not json {") == ""
    assert argument_values('{"n": 1, "ok": true}') == ""
