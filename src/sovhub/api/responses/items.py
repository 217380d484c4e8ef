"""Responses items and chat messages, both ways: input items to the messages the chat service
reads, the answer's chunks to output items, and items as the spec's resources (with ids)."""

from __future__ import annotations

import secrets
from typing import Any

from ...errors import InvalidRequest, UnsupportedParameter

__all__ = ["input_items", "item_id", "items_to_messages", "output_messages"]


def item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def _text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of content parts", param=param)
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text"):
            raise UnsupportedParameter(f"content part type {kind!r} is not supported by this hub (text only)",
                                       param=param)
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def input_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's input as item resources (as `input_items` lists them), each with an id."""
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": value}]
    out: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        param = f"input[{index}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise InvalidRequest(f"message role must be user, system, developer or assistant, got {role!r}",
                                     param=param)
            text = _text(item.get("content"), f"{param}.content")
            if role == "assistant":
                out.append({"id": item.get("id") or item_id("msg"), "type": "message", "role": "assistant",
                            "status": "completed",
                            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
            else:
                out.append({"id": item_id("msg"), "type": "message", "role": role, "status": "completed",
                            "content": [{"type": "input_text", "text": text}]})
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str):
                    raise InvalidRequest(f"a function_call item needs {key}", param=param)
            out.append({"id": item.get("id") or item_id("fc"), "type": "function_call", "call_id": item["call_id"],
                        "name": item["name"], "arguments": item["arguments"], "status": "completed"})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise InvalidRequest("a function_call_output item needs call_id", param=param)
            output = item.get("output")
            out.append({"id": item.get("id") or item_id("fco"), "type": "function_call_output",
                        "call_id": item["call_id"], "status": "completed",
                        "output": output if isinstance(output, str) else _text(output, f"{param}.output")})
        elif kind == "reasoning":
            continue  # a reasoning model's notes, handed back by clients: nothing for these models to read
        else:
            raise UnsupportedParameter(f"input item type {kind!r} is not supported by this hub", param=param)
    return out


def items_to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            text = "".join(str(p.get("text", "")) for p in item["content"])
            messages.append({"role": item["role"], "content": text})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None:
                last["tool_calls"].append(call)  # parallel calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return messages


def output_messages(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answer's output items as the assistant turn of the conversation (what a next response reads)."""
    text = "".join(part.get("text", "") for item in output if item["type"] == "message" for part in item["content"])
    calls = [{"id": item["call_id"], "type": "function",
              "function": {"name": item["name"], "arguments": item["arguments"]}}
             for item in output if item["type"] == "function_call"]
    if calls:
        return [{"role": "assistant", "content": text or None, "tool_calls": calls}]
    return [{"role": "assistant", "content": text}]
