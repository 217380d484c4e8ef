"""Tool calls for a model without a tool-calling template: the prompt that offers the tools, the
messages of earlier calls and their results as plain turns, and the calls read back from the
answer (written as :data:`~.constrain.CALL_OPEN` JSON :data:`~.constrain.CALL_CLOSE`, which the
grammar guarantees)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from .constrain import CALL_CLOSE, CALL_OPEN

__all__ = ["answered_functions", "parse_calls", "render_messages"]


def _tools_prompt(tools: list[dict[str, Any]], required: bool) -> str:
    lines = ["You can call these functions:"]
    for tool in tools:
        function = tool.get("function") or {}
        lines.append(json.dumps({"name": function.get("name"), "description": function.get("description", ""),
                                 "parameters": function.get("parameters") or {}}, ensure_ascii=False))
    lines.append(f'To call a function, write {CALL_OPEN}{{"name": <function name>, "arguments": <arguments as JSON>}}'
                 f"{CALL_CLOSE}.")
    if not required:
        lines.append("If no function is needed, or a function's result is already given, answer in plain words.")
    return "\n".join(lines)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def render_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, mode: str
) -> list[dict[str, Any]]:
    """Messages the chat template understands (role and text), the tools offered in the system turn."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function") or {}
                names[str(call.get("id"))] = str(function.get("name"))
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = function.get("arguments")
                calls.append(CALL_OPEN + json.dumps({"name": function.get("name"), "arguments": arguments},
                                                    ensure_ascii=False) + CALL_CLOSE)
            out.append({"role": "assistant", "content": (_text(message.get("content")) + "\n".join(calls)).strip()})
        elif role in ("tool", "function"):
            name = names.get(str(message.get("tool_call_id")), message.get("name") or "the function")
            out.append({"role": "user", "content": f"Result of {name}: {_text(message.get('content'))}"})
        else:
            out.append({"role": role, "content": _text(message.get("content"))})
    if tools and mode != "none":
        offer = _tools_prompt(tools, required=mode == "call")
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + offer}
        else:
            out.insert(0, {"role": "system", "content": offer})
    return out


def answered_functions(messages: list[dict[str, Any]]) -> set[str]:
    """The functions whose results end the conversation (the last assistant turn's calls, answered)."""
    answered: set[str] = set()
    ids: set[str] = set()
    for message in reversed(messages):
        if message.get("role") in ("tool", "function"):
            ids.add(str(message.get("tool_call_id")))
            continue
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or []:
                if str(call.get("id")) in ids:
                    answered.add(str((call.get("function") or {}).get("name")))
        break
    return answered


def parse_calls(text: str, *, complete_only: bool = False) -> list[dict[str, Any]] | None:
    """The calls an answer makes, as OpenAI's `tool_calls`; None when it is not (only) calls.

    ``complete_only``: an answer cut short keeps the calls written in full before the cut.
    """
    calls: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    rest = text.strip()
    while rest:
        if not rest.startswith(CALL_OPEN):
            return (calls or None) if complete_only and CALL_OPEN.startswith(rest) else None
        try:
            # Decoded, not split at the closing marker: an argument may contain that text.
            call, end = decoder.raw_decode(rest, len(CALL_OPEN))
        except ValueError:
            return (calls or None) if complete_only else None
        if not isinstance(call, dict) or "name" not in call or not rest.startswith(CALL_CLOSE, end):
            return (calls or None) if complete_only else None
        rest = rest[end + len(CALL_CLOSE):].strip()
        calls.append({"id": "call_" + secrets.token_hex(12), "type": "function",
                      "function": {"name": str(call["name"]),
                                   "arguments": json.dumps(call.get("arguments", {}), ensure_ascii=False)}})
    return calls or None
