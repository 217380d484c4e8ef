"""The texts of a chat message besides its content that a model reads, and how to rewrite one.

A client may send, in any message of the conversation, an assistant turn's tool calls (function
names and JSON arguments), the legacy ``function_call``, a ``refusal`` and reasoning
(``reasoning_content`` as DeepSeek and vLLM name it, ``reasoning`` as others do). Upstreams pass
them to the model as they are, so the guards judge them and the PII pipeline redacts them like
the content. Function names are identifiers a tool runner dispatches on: judged for hazards, never
rewritten.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from ..pipeline import ANSWER_TEXT_FIELDS
from ..tool_arguments import argument_values

__all__ = ["ANSWER_TEXT_FIELDS", "MessageField", "argument_values", "message_fields", "tool_definition_texts",
           "with_field"]

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class MessageField:
    path: Path
    text: str
    #: False for names a program dispatches on: judged for hazards, not redacted.
    redactable: bool = True


def message_fields(message: dict[str, Any]) -> list[MessageField]:
    """Every non-empty text of ``message`` outside ``content``, in reading order."""
    out: list[MessageField] = []
    for name in ANSWER_TEXT_FIELDS:
        value = message.get(name)
        if isinstance(value, str) and value:
            out.append(MessageField((name,), value))
    calls = message.get("tool_calls")
    for k, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            out.extend(_function_fields(function, ("tool_calls", k, "function")))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        out.extend(_function_fields(legacy, ("function_call",)))
    return out


def _function_fields(function: dict[str, Any], at: Path) -> list[MessageField]:
    out: list[MessageField] = []
    name, arguments = function.get("name"), function.get("arguments")
    if isinstance(name, str) and name:
        out.append(MessageField((*at, "name"), name, redactable=False))
    if isinstance(arguments, str) and arguments:
        out.append(MessageField((*at, "arguments"), arguments))
    return out


def with_field(message: dict[str, Any], path: Path, text: str) -> dict[str, Any]:
    """A copy of ``message`` with the text at ``path`` replaced (the original is left as it was)."""
    out = copy.deepcopy(message)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = text
    return out


def tool_definition_texts(params: dict[str, Any]) -> list[str]:
    """The tool definitions a request passes to the model (``tools``, legacy ``functions``), one text each.

    The model reads their names, descriptions and parameter schemas as instructions: they are
    judged for hazards like the messages (not redacted: a rewritten schema would break the tool).
    """
    out: list[str] = []
    tools = params.get("tools")
    functions = [t.get("function") for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    legacy = params.get("functions")
    functions += legacy if isinstance(legacy, list) else []
    for function in functions:
        if not isinstance(function, dict):
            continue
        schema = function.get("parameters")
        parts = [str(function.get("name") or ""), str(function.get("description") or ""),
                 json.dumps(schema, ensure_ascii=False) if schema else ""]
        text = " ".join(p for p in parts if p)
        if text:
            out.append(text)
    return out
