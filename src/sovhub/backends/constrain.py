"""What the embedded model may write: llama.cpp grammars for JSON answers and for tool calls.

``response_format`` ``json_object`` gets llama.cpp's JSON grammar; ``json_schema`` gets a grammar
converted from the schema (llama.cpp's converter), so every token sampled keeps the answer on a
path that parses and validates. Tools get a grammar whose calls are written as
``<tool_call>{"name": ..., "arguments": ...}</tool_call>``, the arguments converted from each
function's parameter schema; ``tool_choice`` decides whether free text is one of the choices
(``auto``), or a call is required (``required``, or one named function).

A schema comes from the caller, so it is bounded (size), converted in a guard (the converter
raises on what it does not support) and its grammar is parsed by llama.cpp before it is used:
llama.cpp given a grammar it cannot parse would add a null sampler and crash the process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest, UnsupportedParameter
from .schema_subset import enforceable

__all__ = ["CALL_CLOSE", "CALL_OPEN", "MAX_PARALLEL_CALLS", "Constraint", "build_constraint", "tool_names"]

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
#: Most calls one answer may make when parallel calls are allowed (a small model otherwise may
#: repeat calls until its token budget is spent).
MAX_PARALLEL_CALLS = 4
_MAX_SCHEMA_CHARS = 32_000
_MAX_DEPTH = 64
_ANSWER_ONLY = "root ::= [^<] [^\\x00]*\n"
_MAX_GRAMMAR_CHARS = 200_000
#: Bounds of a json_object answer (no schema gives any): members per object, items per array, characters per string.
_JSON_MEMBERS, _JSON_ITEMS, _JSON_STRING = 8, 32, 200


@dataclass(slots=True)
class Constraint:
    """How one request's answer is constrained: its grammar, and whether it is made of tool calls."""

    grammar: str | None
    #: "text" (free or JSON text), "call" (only tool calls), "either" (text or calls, the model chooses).
    mode: str = "text"
    tools: list[dict[str, Any]] = field(default_factory=list)


def tool_names(tools: list[dict[str, Any]]) -> list[str]:
    return [str((t.get("function") or {}).get("name")) for t in tools]


def _converter() -> Any:
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)  # type: ignore[no-untyped-call]


def _depth(node: Any) -> int:
    """How deeply a JSON value nests, counted without recursion (a hostile schema may nest thousands deep)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        value, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(value, dict):
            stack.extend((v, level + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, level + 1) for v in value)
    return deepest


def _visit(converter: Any, schema: Any, name: str, param: str) -> str:
    if not isinstance(schema, dict):
        raise InvalidRequest("a JSON schema must be an object", param=param)
    if _depth(schema) > _MAX_DEPTH:
        raise InvalidRequest(f"the JSON schema is nested more than {_MAX_DEPTH} levels deep", param=param)
    if len(json.dumps(schema)) > _MAX_SCHEMA_CHARS:
        raise InvalidRequest(f"the JSON schema is larger than {_MAX_SCHEMA_CHARS} characters", param=param)
    schema = enforceable(schema, param)
    try:
        resolved = converter.resolve_refs(schema, "request")
        return str(converter.visit(resolved, name))
    except Exception as exc:  # noqa: BLE001 - any failure of the converter is the schema's
        raise UnsupportedParameter(
            f"this JSON schema cannot be enforced on the embedded model: {type(exc).__name__}: {exc}", param=param
        ) from exc


def _json_object_grammar() -> str:
    """Any JSON object, within bounds (members, items, string length) that end what a small model
    might otherwise repeat until its token budget is spent (seen: one key pair written over and over).

    Through the converter rather than llama.cpp's general JSON grammar, whose optional newline and
    indentation between tokens leave room to run away in whitespace.
    """
    grammar = _schema_grammar({"type": "object"}, "response_format")
    member = '("," space string ":" space value)'
    item = '("," space value)'
    string = 'string ::= "\\"" char* "\\"" space'
    if not all(part in grammar for part in (member + "*", item + "*", string)):
        raise RuntimeError("llama.cpp's JSON grammar changed: the bounds of json_object must be set again")
    bounded = (grammar.replace(member + "*", f"{member}{{0,{_JSON_MEMBERS - 1}}}")
               .replace(item + "*", f"{item}{{0,{_JSON_ITEMS - 1}}}")
               .replace(string, string.replace("char*", f"char{{0,{_JSON_STRING}}}")))
    return bounded


def _schema_grammar(schema: Any, param: str) -> str:
    converter = _converter()
    _visit(converter, schema, "", param)
    return _strict_json(str(converter.format_grammar()))


def _tools_grammar(tools: list[dict[str, Any]], allowed: list[str], mode: str, parallel: bool) -> str:
    converter = _converter()
    alternatives = []
    for index, tool in enumerate(tools):
        function = tool.get("function") or {}
        name = str(function.get("name"))
        if name not in allowed:
            continue
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        args = _visit(converter, parameters, f"fn{index}-args", f"tools[{index}].function.parameters")
        rule = (f'"{{" space "\\"name\\"" space ":" space {converter._format_literal(json.dumps(name))} space '
                f'"," space "\\"arguments\\"" space ":" space {args} "}}"')
        alternatives.append(converter._add_rule(f"call{index}", rule))
    call = converter._add_rule("call", f'"{CALL_OPEN}" ({" | ".join(alternatives)}) "{CALL_CLOSE}"')
    more = f' ("\\n" {call}){{0,{MAX_PARALLEL_CALLS - 1}}}' if parallel else ""
    calls = converter._add_rule("calls", f"{call}{more}")
    if mode == "either":
        # Free text may not start with the call marker's "<": the first character decides.
        converter._add_rule("text", "[^<] [^\\x00]*")
        converter._add_rule("root", f"{calls} | text")
    else:
        converter._add_rule("root", calls)
    return _strict_json(str(converter.format_grammar()))


def _strict_json(grammar: str) -> str:
    """The converter lets strings hold raw control characters (a newline), which JSON forbids."""
    return grammar.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |')


def _check_parses(grammar: str, vocab: Any) -> None:
    if len(grammar) > _MAX_GRAMMAR_CHARS:
        raise UnsupportedParameter("the schema makes a grammar too large to enforce", param="response_format")
    if vocab is None:
        return
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise UnsupportedParameter("this JSON schema cannot be enforced on the embedded model (grammar rejected)",
                                   param="response_format")
    llama_cpp.llama_sampler_free(sampler)


def _tool_choice(params: dict[str, Any], names: list[str], answered: set[str]) -> tuple[str, list[str]]:
    """("none" | "either" | "call", the functions the model may call)."""
    choice = params.get("tool_choice", "auto")
    if choice == "none":
        return "none", []
    if choice == "auto":
        # A function whose result was just given is not offered again in the very next turn: a
        # small model left the choice repeats the call it has the answer to (an agent then loops
        # until its turn limit). It may still answer, or call another function.
        left = [n for n in names if n not in answered]
        return ("either", left) if left else ("none", [])
    if choice == "required":
        return "call", names
    if isinstance(choice, dict):
        name = str((choice.get("function") or {}).get("name") or choice.get("name") or "")
        return "call", [name]
    raise InvalidRequest(f"unknown tool_choice {choice!r}", param="tool_choice")


def build_constraint(params: dict[str, Any], vocab: Any = None, answered: set[str] | None = None) -> Constraint:
    """The constraint a request's parameters ask for (validated: a bad one is a 400, never a crash).

    ``answered``: the functions whose results end the conversation (see :func:`_tool_choice`).
    """
    tools = list(params.get("tools") or [])
    response_format = params.get("response_format") or {"type": "text"}
    kind = response_format.get("type")
    text_grammar: str | None = None
    if kind == "json_object":
        text_grammar = _json_object_grammar()
    elif kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec["schema"] if spec.get("schema") is not None else {"type": "object"}
        text_grammar = _schema_grammar(schema, "response_format.json_schema.schema")
    if tools:
        mode, allowed = _tool_choice(params, tool_names(tools), answered or set())
        if mode != "none":
            if mode == "either" and text_grammar is not None:
                raise UnsupportedParameter(
                    "the embedded model cannot combine tool_choice auto with a JSON response_format; "
                    "use tool_choice none or required", param="tool_choice")
            # Several calls in one answer only when asked for: a small model left the choice tends
            # to repeat its call until the token budget is spent.
            grammar = _tools_grammar(tools, allowed, mode, params.get("parallel_tool_calls") is True)
            _check_parses(grammar, vocab)
            return Constraint(grammar, mode, tools)
    if text_grammar is None and tools:
        # Tools given, no call allowed: an answer that starts like a call would reach the client as
        # text, so it may not begin with the call marker's "<".
        text_grammar = _ANSWER_ONLY
    if text_grammar is not None:
        _check_parses(text_grammar, vocab)
    return Constraint(text_grammar, "text", tools)
