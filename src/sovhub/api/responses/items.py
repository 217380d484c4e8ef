"""Responses items and chat messages, both ways: input items to the messages the chat service
reads, the answer's chunks to output items, and items as the spec's resources (with ids).

Input content is text: ``input_text``, and ``input_file`` whose bytes are UTF-8 text (a file of
the hub's Files API by ``file_id``, or inline ``file_data``); the model reads a file as its name
and its text. Images are refused (no model served here sees them), files by URL too (the hub
fetches nothing for a caller). ``item_reference`` is replaced by the item it names, looked up by
the caller (``lookup``); a file's text is read by the caller too (``read_file``), so this module
does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from typing import Any

from ...errors import InvalidRequest, UnsupportedParameter

__all__ = ["MAX_FILE_BYTES", "file_ids", "file_text", "input_items", "item_id", "items_to_messages", "output_messages"]

_TEXT_PARTS = ("input_text", "output_text", "text")
#: The most bytes of one input file the model is given (more is refused: a prompt is not a store).
MAX_FILE_BYTES = 1_000_000


def item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def file_text(data: bytes, name: str, param: str) -> str:
    """A file's bytes as the text the model reads, or a 400 when they are not text."""
    if len(data) > MAX_FILE_BYTES:
        raise InvalidRequest(f"file {name!r} is larger than {MAX_FILE_BYTES} bytes, the most one input file may be",
                             param=param, code="file_too_large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise UnsupportedParameter(f"file {name!r} is not a UTF-8 text file; this hub gives models text files only "
                                   "(no PDF, image or other binary files)", param=param)
    return text


def _inline_file(part: dict[str, Any], param: str) -> bytes:
    data = str(part.get("file_data") or "")
    if data.startswith("data:"):
        data = data.partition(",")[2]  # a data URL: data:text/plain;base64,...
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("input_file.file_data must be base64", param=param) from None


def _part(part: Any, model: str, param: str) -> dict[str, Any]:
    """One content part as kept in the input item (text, or a file as given without its data)."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in _TEXT_PARTS:
        assert isinstance(part, dict)
        return {"type": "input_text", "text": str(part.get("text", ""))}
    if kind == "input_image":
        raise UnsupportedParameter(f"model {model} cannot read images (input_image); the models of this hub read "
                                   "text only", param=param)
    if kind == "input_file":
        assert isinstance(part, dict)
        if part.get("file_id"):
            return {"type": "input_file", "file_id": str(part["file_id"]),
                    **({"filename": str(part["filename"])} if part.get("filename") else {})}
        if part.get("file_data"):
            name = str(part.get("filename") or "upload")
            file_text(_inline_file(part, param), name, param)  # refused now if it is not text
            return {"type": "input_file", "filename": name, "file_data": str(part["file_data"])}
        if part.get("file_url"):
            raise UnsupportedParameter("input_file.file_url is not supported: this hub fetches no URL for a caller; "
                                       "upload the file (POST /v1/files) and send its file_id", param=param)
        raise InvalidRequest("an input_file part needs file_id or file_data", param=param)
    raise UnsupportedParameter(f"content part type {kind!r} is not supported by this hub (text and text files)",
                               param=param)


def _parts(content: Any, model: str, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of content parts", param=param)
    return [_part(part, model, f"{param}[{i}]") for i, part in enumerate(content)]


def input_items(value: str | list[dict[str, Any]], model: str,
                lookup: Callable[[str, str], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The request's input as item resources (as `input_items` lists them), each with an id.

    ``lookup(item_id, param)`` returns the stored item an ``item_reference`` names (or raises).
    """
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": value}]
    out: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        param = f"input[{index}]"
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise InvalidRequest(f"message role must be user, system, developer or assistant, got {role!r}",
                                     param=param)
            parts = _parts(item.get("content"), model, f"{param}.content")
            if role == "assistant":
                text = "".join(p.get("text", "") for p in parts if p["type"] == "input_text")
                out.append({"id": item.get("id") or item_id("msg"), "type": "message", "role": "assistant",
                            "status": "completed",
                            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
            else:
                out.append({"id": item_id("msg"), "type": "message", "role": role, "status": "completed",
                            "content": parts})
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
            if not isinstance(output, str):
                output = "".join(p.get("text", "") for p in _parts(output, model, f"{param}.output")
                                 if p["type"] == "input_text")
            out.append({"id": item.get("id") or item_id("fco"), "type": "function_call_output",
                        "call_id": item["call_id"], "status": "completed", "output": output})
        elif kind == "item_reference":
            if not isinstance(item.get("id"), str) or lookup is None:
                raise InvalidRequest("an item_reference needs the id of an item of a stored response", param=param)
            out.append(lookup(item["id"], param))
        elif kind == "reasoning":
            continue  # a reasoning model's notes, handed back by clients: nothing for these models to read
        else:
            raise UnsupportedParameter(f"input item type {kind!r} is not supported by this hub", param=param)
    return out


def file_ids(items: list[dict[str, Any]]) -> list[str]:
    """The Files API ids the items' parts name (their text is read before the model sees them)."""
    return [p["file_id"] for item in items if item["type"] == "message"
            for p in item["content"] if p["type"] == "input_file" and p.get("file_id")]


def _message_text(item: dict[str, Any], files: dict[str, tuple[str, str]]) -> str:
    pieces = []
    for part in item["content"]:
        if part["type"] == "input_file":
            if part.get("file_id"):
                name, text = files[part["file_id"]]
            else:
                name = part["filename"]
                text = file_text(_inline_file(part, "input"), name, "input")
            pieces.append(f"\n[file {part.get('filename') or name}]\n{text}\n[end of file]\n")
        else:
            pieces.append(str(part.get("text", "")))
    return "".join(pieces)


def items_to_messages(items: list[dict[str, Any]],
                      files: dict[str, tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Chat messages from items; ``files`` maps a file id to (name, text) for its input_file parts."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            messages.append({"role": item["role"], "content": _message_text(item, files or {})})
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
