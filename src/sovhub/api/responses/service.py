"""/v1/responses over the chat service: one implementation for every backend. No FastAPI here.

A request becomes a chat completion (its input items and the stored conversation of
``previous_response_id`` as messages, ``instructions`` as the system turn, tools, ``text.format``
as ``response_format``), prepared and run by :class:`~..chat.service.ChatService` exactly as
``/v1/chat/completions`` is, so routing, residency, admission (quotas, rate limits), output
checks, metering and content storage are the same. The chat chunks that pass the output gate are
turned into the typed events of a response stream (:class:`ResponseRun`); a non-streaming request
runs the same events and returns the last response object.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ...errors import InvalidRequest, NotFound, SovhubError
from ...hub import Hub
from ...pipeline import Principal
from ..chat.protocol import ChatCompletionRequest
from ..chat.service import ChatService, PreparedChat
from .items import input_items, item_id, items_to_messages, output_messages
from .protocol import CreateResponse, chat_response_format, chat_tool_choice, chat_tools
from .store import ResponseStore, StoredState

__all__ = ["ResponseRun", "ResponsesService"]

_LOGPROBS = "message.output_text.logprobs"


@dataclass(slots=True)
class ResponseRun:
    """One response being generated: the prepared chat, and the response object as it grows."""

    body: CreateResponse
    principal: Principal
    prepared: PreparedChat
    response: dict[str, Any]
    items: list[dict[str, Any]]
    history: list[dict[str, Any]]
    sequence: int = 0
    finish: str | None = None
    failure: SovhubError | None = None
    _open: dict[str, Any] | None = None
    _calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        out = {"type": kind, **data, "sequence_number": self.sequence}
        self.sequence += 1
        return out


class ResponsesService:
    def __init__(self, hub: Hub, store: ResponseStore) -> None:
        self.hub = hub
        self.store = store
        self.chat = hub.services.get(ChatService)

    # --- create ---

    async def start(self, body: CreateResponse, principal: Principal, request_id: str) -> ResponseRun:
        """Everything before the first byte: a refusal here is an ordinary HTTP error."""
        history: list[dict[str, Any]] = []
        if body.previous_response_id:
            try:
                previous = await asyncio.to_thread(self.store.load, principal, body.previous_response_id)
            except NotFound:
                raise InvalidRequest(
                    f"Previous response with id '{body.previous_response_id}' not found (it was not stored, "
                    "has expired, was deleted, or is not yours).", param="previous_response_id",
                    code="previous_response_not_found") from None
            history = previous.messages
        items = input_items(body.input)
        history = [*history, *items_to_messages(items)]
        system = [{"role": "system", "content": body.instructions}] if body.instructions else []
        request = self._chat_request(body, [*system, *history])
        prepared = await self.chat.prepare(request, principal, request_id)
        response = self._response(body, item_id("resp"), "in_progress")
        return ResponseRun(body, principal, prepared, response, items, history)

    def _chat_request(self, body: CreateResponse, messages: list[dict[str, Any]]) -> ChatCompletionRequest:
        fields: dict[str, Any] = {
            "model": body.model, "messages": messages, "stream": bool(body.stream), "store": body.store,
            "max_tokens": body.max_output_tokens, "temperature": body.temperature, "top_p": body.top_p,
            "user": body.user,
        }
        if body.tools:
            fields.update(tools=chat_tools(body.tools), tool_choice=chat_tool_choice(body.tool_choice),
                          parallel_tool_calls=body.parallel_tool_calls)
        fmt = (body.text or {}).get("format")
        if fmt and fmt.get("type") != "text":
            fields["response_format"] = chat_response_format(fmt)
        if body.top_logprobs is not None or _LOGPROBS in (body.include or []):
            fields.update(logprobs=True, top_logprobs=body.top_logprobs)
        try:
            return ChatCompletionRequest(**{k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRequest(f"input: {first['msg']}", param="input") from None

    def _response(self, body: CreateResponse, response_id: str, status: str) -> dict[str, Any]:
        return {
            "id": response_id, "object": "response", "created_at": int(time.time()), "status": status,
            "background": False, "completed_at": None, "error": None, "incomplete_details": None,
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens, "model": body.model,
            "output": [], "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id, "reasoning": None, "store": body.store is not False,
            "temperature": body.temperature if body.temperature is not None else 1.0,
            "text": {"format": (body.text or {}).get("format") or {"type": "text"}},
            "tool_choice": body.tool_choice or "auto",
            "tools": [{"type": "function", "name": t["name"], "description": t.get("description"),
                       "parameters": t.get("parameters"), "strict": t.get("strict", True)} for t in body.tools or []],
            "top_logprobs": body.top_logprobs or 0,
            "top_p": body.top_p if body.top_p is not None else 1.0, "truncation": "disabled",
            "metadata": dict(body.metadata or {}), **({"user": body.user} if body.user else {}),
        }

    async def events(
        self, run: ResponseRun, on_backend_time: Callable[[float], None]
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The response's typed events, in the documented order; the run's response is final after the last."""
        yield run.event("response.created", response=_snapshot(run.response))
        yield run.event("response.in_progress", response=_snapshot(run.response))
        usage: dict[str, int] = {}
        try:
            async with contextlib.aclosing(self.chat.chunks(run.prepared, on_backend_time)) as chunks:
                async for chunk in chunks:
                    if "usage" in chunk and not chunk.get("choices"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or []:
                        if choice.get("index", 0) != 0:
                            continue
                        for event in self._deltas(run, choice):
                            yield event
        except SovhubError as exc:
            run.failure = exc
            for event in self._close(run):
                yield event
            run.response.update(status="failed", error={"code": _error_code(exc), "message": exc.message})
            yield run.event("error", code=exc.code or exc.type, message=exc.message, param=exc.param)
            await self._save(run)
            yield run.event("response.failed", response=_snapshot(run.response))
            return
        for event in self._close(run):
            yield event
        run.response["usage"] = {
            "input_tokens": int(usage.get("prompt_tokens", 0)),
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": int(usage.get("completion_tokens", 0)),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": int(usage.get("total_tokens", 0)),
        }
        reason = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(run.finish or "")
        if reason is None:
            run.response.update(status="completed", completed_at=int(time.time()))
        else:
            run.response.update(status="incomplete", incomplete_details={"reason": reason})
        await self._save(run)
        kind = "response.completed" if reason is None else "response.incomplete"
        yield run.event(kind, response=_snapshot(run.response))

    def _deltas(self, run: ResponseRun, choice: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        delta = choice.get("delta") or {}
        text = delta.get("content")
        output = run.response["output"]
        if isinstance(text, str) and text:
            if run._open is None or run._open["type"] != "message":
                out.extend(self._close(run))
                item: dict[str, Any] = {"id": item_id("msg"), "type": "message", "status": "in_progress",
                                        "role": "assistant", "content": []}
                output.append(item)
                run._open = item
                out.append(run.event("response.output_item.added", output_index=len(output) - 1,
                                     item=_snapshot(item)))
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                item["content"].append(part)
                out.append(run.event("response.content_part.added", item_id=item["id"],
                                     output_index=len(output) - 1, content_index=0, part=dict(part)))
            part = run._open["content"][0]
            part["text"] += text
            logprobs = [_logprob(e) for e in ((choice.get("logprobs") or {}).get("content") or [])]
            part["logprobs"].extend(logprobs)
            out.append(run.event("response.output_text.delta", item_id=run._open["id"],
                                 output_index=len(output) - 1, content_index=0, delta=text, logprobs=logprobs))
        for call in delta.get("tool_calls") or []:
            index = int(call.get("index") or 0)
            function = call.get("function") or {}
            call_item = run._calls.get(index)
            if call_item is None:
                out.extend(self._close(run))
                call_item = {"id": item_id("fc"), "type": "function_call", "status": "in_progress",
                             "call_id": call.get("id") or item_id("call"), "name": function.get("name") or "",
                             "arguments": ""}
                output.append(call_item)
                run._calls[index] = run._open = call_item
                out.append(run.event("response.output_item.added", output_index=len(output) - 1,
                                     item=_snapshot(call_item)))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                call_item["arguments"] += arguments
                out.append(run.event("response.function_call_arguments.delta", item_id=call_item["id"],
                                     output_index=output.index(call_item), delta=arguments))
        if choice.get("finish_reason"):
            run.finish = choice["finish_reason"]
        return out

    def _close(self, run: ResponseRun) -> list[dict[str, Any]]:
        """Finish the open output item: its done events, in the documented order."""
        item, run._open = run._open, None
        if item is None:
            return []
        index = run.response["output"].index(item)
        status = "incomplete" if run.finish in ("length", "content_filter") else "completed"
        out = []
        if item["type"] == "message":
            part = item["content"][0]
            out.append(run.event("response.output_text.done", item_id=item["id"], output_index=index,
                                 content_index=0, text=part["text"], logprobs=list(part["logprobs"])))
            out.append(run.event("response.content_part.done", item_id=item["id"], output_index=index,
                                 content_index=0, part=dict(part)))
        else:
            out.append(run.event("response.function_call_arguments.done", item_id=item["id"], name=item["name"],
                                 output_index=index, arguments=item["arguments"]))
        item["status"] = status
        out.append(run.event("response.output_item.done", output_index=index, item=_snapshot(item)))
        return out

    async def _save(self, run: ResponseRun) -> None:
        if run.body.store is False:
            return
        state = StoredState(response=_snapshot(run.response), input_items=run.items,
                            messages=[*run.history, *output_messages(run.response["output"])])
        await asyncio.to_thread(self.store.save, run.principal, state, previous_id=run.body.previous_response_id)

    async def complete(self, run: ResponseRun, on_backend_time: Callable[[float], None]) -> dict[str, Any]:
        async for _event in self.events(run, on_backend_time):
            pass
        if run.failure is not None:
            # Not streamed: the failure is the HTTP answer, as any other error of the endpoint.
            raise run.failure
        return _snapshot(run.response)

    # --- stored responses ---

    async def retrieve(self, principal: Principal, response_id: str) -> dict[str, Any]:
        state = await asyncio.to_thread(self.store.load, principal, response_id)
        return state.response

    async def delete(self, principal: Principal, response_id: str) -> dict[str, Any]:
        await asyncio.to_thread(self.store.delete, principal, response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    async def input_items(self, principal: Principal, response_id: str, *, limit: int, order: str,
                          after: str | None) -> dict[str, Any]:
        state = await asyncio.to_thread(self.store.load, principal, response_id)
        items = list(state.input_items)
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [i["id"] for i in items]
            if after not in ids:
                raise InvalidRequest(f"no input item {after!r} in response {response_id}", param="after")
            items = items[ids.index(after) + 1:]
        page = items[:limit]
        return {"object": "list", "data": page, "has_more": len(items) > limit,
                "first_id": page[0]["id"] if page else "", "last_id": page[-1]["id"] if page else ""}


def _snapshot(value: dict[str, Any]) -> dict[str, Any]:
    """A deep copy: events carry the state at their moment, later deltas must not change them."""
    import copy

    return copy.deepcopy(value)


def _logprob(entry: dict[str, Any]) -> dict[str, Any]:
    return {"token": entry["token"], "logprob": entry["logprob"], "bytes": entry.get("bytes") or [],
            "top_logprobs": [{"token": t["token"], "logprob": t["logprob"], "bytes": t.get("bytes") or []}
                             for t in entry.get("top_logprobs") or []]}


def _error_code(exc: SovhubError) -> str:
    return "rate_limit_exceeded" if exc.status == 429 else "server_error"
