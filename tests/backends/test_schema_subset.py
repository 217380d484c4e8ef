"""What of a JSON schema the embedded model's grammar enforces: rewrites that keep a keyword the
converter would drop, refusals where it cannot, and patterns that cannot break a JSON string."""

from __future__ import annotations

import json
import random
import re

import pytest

from sovhub.backends.constrain import build_constraint
from sovhub.backends.schema_subset import enforceable, json_safe_pattern
from sovhub.errors import UnsupportedParameter


def _grammar(schema: dict) -> str:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    grammar = build_constraint({"response_format": fmt}).grammar
    assert grammar is not None
    return grammar


def test_a_type_list_keeps_the_other_keywords_in_each_branch() -> None:
    out = enforceable({"type": ["string", "null"], "maxLength": 5, "description": "a nickname"}, "p")
    assert out == {"anyOf": [{"maxLength": 5, "description": "a nickname", "type": "string"},
                             {"description": "a nickname", "type": "null"}]}
    ranged = enforceable({"type": ["integer", "null"], "minimum": 1, "maximum": 3}, "p")
    assert ranged["anyOf"][0] == {"enum": [1, 2, 3]} and ranged["anyOf"][1]["type"] == "null"
    # The converter alone would have written a plain string of any length here.
    assert '"\\"" (char (char (char (char (char)?)?)?)?)? "\\""' in _grammar({"type": ["string", "null"],
                                                                             "maxLength": 5})


def test_lengths_and_item_counts_without_their_type_are_kept() -> None:
    assert enforceable({"minLength": 2}, "p") == {"minLength": 2, "type": "string"}
    counted = enforceable({"type": "array", "minItems": 2, "maxItems": 3}, "p")
    assert counted["items"]["anyOf"]  # any value, but 2 or 3 of them
    assert 'item "," space item ("," space item)?' in _grammar({"type": "array", "minItems": 2, "maxItems": 3})


@pytest.mark.parametrize(("schema", "says"), [
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "use anyOf"),
    ({"type": "object", "properties": {"a": {}}, "anyOf": [{"required": ["a"]}]}, "beside anyOf"),
    ({"$ref": "#/$defs/a", "maxLength": 3, "$defs": {"a": {"type": "string"}}}, "beside $ref"),
    ({"const": "x", "maxLength": 0}, "beside const"),
    ({"type": "string", "enum": ["a", 1]}, "not of type string"),
    ({"enum": []}, "non-empty"),
    ({"const": "a", "enum": ["b"]}, "not among"),
    ({"type": "string", "format": "email"}, "format 'email'"),
    ({"type": "string", "format": "date", "maxLength": 4}, "maxLength"),
    ({"type": "string", "pattern": "^a+$", "minLength": 2}, "minLength"),
    ({"type": "array", "prefixItems": [{"type": "string"}], "minItems": 1}, "prefixItems"),
    ({"type": "object", "required": ["a"]}, "required a"),
    ({"allOf": [{"type": "string", "minLength": 1}]}, "allOf"),
    ({"type": "string", "pattern": "^(a)\\1$"}, "\\1"),
    ({"type": "string", "pattern": "^\\bword$"}, "\\b"),
    ({"type": "string", "pattern": '^say "hi"$'}, "quote"),
    ({"type": "string", "pattern": "^a$|^b$"}, "inside a pattern"),
    ({"type": "string", "pattern": "^[\\\\\"]$"}, "only allows characters"),
    ({"type": "string", "pattern": "^[abc$"}, "unclosed"),
    ({"type": "number", "minimum": 0}, "integers"),
    ({"type": "integer", "minimum": 0}, "both bounds"),
])
def test_what_the_grammar_would_not_enforce_is_refused_by_name(schema: dict, says: str) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        _grammar(schema)
    assert says in caught.value.message


def test_nested_refusals_name_the_parameter() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"when": {"type": "string", "format": "email"}}}}}
    with pytest.raises(UnsupportedParameter) as caught:
        build_constraint({"tools": [tool], "tool_choice": "required"})
    assert caught.value.param == "tools[0].function.parameters"


PATTERNS = ["^\\d{3}-\\d{4}$", "^[^@ ]+@[^@ ]+\\.[a-z]{2,}$", "^[ -~]{1,12}$", "a.c", "^\\w+\\s\\w+$",
            "^[A-Z][a-z]*(-[A-Z][a-z]*)?$", "^\\S+$", "^[\\d.]+$", "^(yes|no)$", "^\\$\\d+$"]
ALPHABET = ['"', "\\", "\n", "\t", "\x00", " ", "@", ".", "-", "$", "a", "b", "c", "z", "A", "K", "0", "5", "9",
            "_", "~", "é", "й", "\x7f"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_rewritten_pattern_only_narrows_and_never_breaks_a_json_string(pattern: str) -> None:
    """Every string the rewritten pattern matches is matched by the original and is a JSON string as is."""
    safe = re.compile(json_safe_pattern(pattern, "p"))
    original = re.compile(pattern)
    rng = random.Random(pattern)
    matched = 0
    for _ in range(20_000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12)))
        if safe.fullmatch(text):
            matched += 1
            assert original.search(text), (pattern, text)
            assert json.loads(f'"{text}"') == text, (pattern, text)  # nothing in it needed escaping
        elif original.fullmatch(text) and not any(c in text for c in '"\\\x7f') and all(c >= " " for c in text) \
                and "\\s" not in pattern:
            raise AssertionError(f"{pattern!r} lost {text!r}, a JSON-safe string it matches")
    if pattern in ("a.c", "^[ -~]{1,12}$", "^\\S+$", "^[\\d.]+$"):
        assert matched > 0


def test_the_dot_and_negated_classes_exclude_what_json_escapes() -> None:
    grammar = _grammar({"type": "string", "pattern": "^a.[^x]$"})
    assert "dot ::=" not in grammar  # llama.cpp's dot would allow a raw quote
    assert "\\U00000022" not in grammar.split("root ::=")[1].split("\n")[0]
