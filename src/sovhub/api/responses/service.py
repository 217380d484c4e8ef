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
import copy
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import ValidationError

from ...admission import admit, release, settle
from ...backends.base import estimate_tokens
from ...backends.window import window_of
from ...errors import InvalidRequest, NotFound, SovhubError, UnsupportedParameter
from ...files.store import FileStore
from ...hub import Hub
from ...metering import Meter, Usage
from ...pipeline import ChatContext, Principal
from ..chat.protocol import ChatCompletionRequest
from ..chat.service import ChatService, PreparedChat, prompt_text
from .background import BackgroundRuns
from .items import MAX_FILE_BYTES, file_ids, file_text, input_items, item_id, items_to_messages, output_messages
from .protocol import CreateResponse, TokenCountsBody, chat_response_format, chat_tool_choice, chat_tools
from .store import ResponseStore, StoredState

__all__ = ["ResponseRun", "ResponsesService"]

_LOGPROBS = "message.output_text.logprobs"


@dataclass(slots=True)
class ResponseRun:
    """One response being generated: its chat request, the prepared chat once admitted and routed,
    and the response object as it grows."""

    body: CreateResponse
    principal: Principal
    request: ChatCompletionRequest
    response: dict[str, Any]
    items: list[dict[str, Any]]
    history: list[dict[str, Any]]
    prepared: PreparedChat | None = None
    sequence: int = 0
    finish: str | None = None
    failure: SovhubError | None = None
    saved: bool = False
    #: A background run's events so far (what its streams read and its stored state replays).
    log: list[dict[str, Any]] = field(default_factory=list)
    _open: dict[str, Any] | None = None
    _calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def chat(self) -> PreparedChat:
        if self.prepared is None:
            raise RuntimeError("the response's chat was not prepared")
        return self.prepared

    @property
    def ended(self) -> bool:
        return self.response["status"] not in ("queued", "in_progress")

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        out = {"type": kind, **data, "sequence_number": self.sequence}
        self.sequence += 1
        return out


class ResponsesService:
    def __init__(self, hub: Hub, store: ResponseStore) -> None:
        self.hub = hub
        self.store = store
        self.chat = hub.services.get(ChatService)
        self.background = BackgroundRuns(self)

    # --- create ---

    async def plan(self, body: CreateResponse, principal: Principal) -> ResponseRun:
        """The request read: earlier turns, input items (references and files resolved), the chat request."""
        if body.conversation is not None:
            raise UnsupportedParameter("conversation: this hub does not serve the Conversations API; continue a "
                                       "conversation with previous_response_id", param="conversation")
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
        items, messages = await asyncio.to_thread(self._read_input, body, principal)
        history = [*history, *messages]
        system = [{"role": "system", "content": body.instructions}] if body.instructions else []
        request = self._chat_request(body, [*system, *history])
        status = "queued" if body.background else "in_progress"
        return ResponseRun(body, principal, request, self._response(body, item_id("resp"), status), items, history)

    def _read_input(self, body: CreateResponse, principal: Principal) -> tuple[list[dict[str, Any]],
                                                                               list[dict[str, Any]]]:
        """Input items and their messages (a worker thread: stored items and files are read here)."""
        def lookup(wanted: str, param: str) -> dict[str, Any]:
            try:
                return self.store.find_item(principal, wanted)
            except NotFound as exc:
                raise InvalidRequest(exc.message, param=param, code="item_not_found") from None

        items = input_items(body.input, body.model, lookup)
        files: dict[str, tuple[str, str]] = {}
        for wanted in file_ids(items):
            files[wanted] = self._file(principal, wanted)
        return items, items_to_messages(items, files)

    def _file(self, principal: Principal, wanted: str) -> tuple[str, str]:
        store = self.hub.services.get(FileStore)
        try:
            if principal.org_id is None:
                raise NotFound(f"No such File object: {wanted}")
            row = store.get(principal.org_id, wanted)
        except NotFound as exc:
            raise InvalidRequest(exc.message, param="input", code="file_not_found") from None
        if row.bytes > MAX_FILE_BYTES:  # refused before it is read
            raise InvalidRequest(f"file {row.filename!r} is larger than {MAX_FILE_BYTES} bytes, the most one input "
                                 "file may be", param="input", code="file_too_large")
        return row.filename, file_text(store.read(principal.org_id, wanted), row.filename, "input")

    async def open(self, run: ResponseRun, request_id: str) -> None:
        """Admit and route the chat (the chat service's checks: quotas, residency, the window)."""
        run.prepared = await self.chat.prepare(run.request, run.principal, request_id)

    async def start(self, body: CreateResponse, principal: Principal, request_id: str) -> ResponseRun:
        """Everything before the first byte: a refusal here is an ordinary HTTP error."""
        run = await self.plan(body, principal)
        await self.open(run, request_id)
        return run

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
            "background": bool(body.background), "completed_at": None, "error": None, "incomplete_details": None,
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
            async with contextlib.aclosing(self.chat.chunks(run.chat, on_backend_time)) as chunks:
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
            await self.save(run)
            yield run.event("response.failed", response=_snapshot(run.response))
            return
        cancelled = run.finish is None and run.chat.cancel.cancelled
        if run.finish is None and not cancelled:
            run.finish = "stop"  # a backend that ended without saying why ended its answer
        for event in self._close(run):
            yield event
        run.response["usage"] = _usage(usage)
        reason = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(run.finish or "")
        if cancelled:
            # Stopped before its end: cancelled (POST .../cancel), or its client left without waiting.
            run.response.update(status="cancelled")
        elif reason is None:
            run.response.update(status="completed", completed_at=int(time.time()))
        else:
            run.response.update(status="incomplete", incomplete_details={"reason": reason})
        await self.save(run)
        if not cancelled:  # the spec has no event for it: no one is listening then
            kind = "response.completed" if reason is None else "response.incomplete"
            yield run.event(kind, response=_snapshot(run.response))

    async def finish(self, run: ResponseRun) -> None:
        """After the request, however it ended: the chat is recorded (billed) once, and a response
        whose client left mid-stream is stored as cancelled, with the usage billed for it."""
        await self.chat.release(run.chat)
        if run.ended:
            return
        with anyio.CancelScope(shield=True):
            run.finish = None
            self._close(run)
            billed = run.chat.billed or {}
            run.response.update(status="cancelled", usage=_usage(billed))
            await self.save(run)

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
        status = "completed" if run.finish in ("stop", "tool_calls") else "incomplete"
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

    async def save(self, run: ResponseRun) -> None:
        if run.body.store is False:
            return
        state = StoredState(response=_snapshot(run.response), input_items=run.items,
                            messages=[*run.history, *output_messages(run.response["output"])],
                            events=list(run.log) if run.body.background else [])
        # A background run's first save creates its row; later ones only update a row still there.
        await asyncio.to_thread(self.store.save, run.principal, state, previous_id=run.body.previous_response_id,
                                create=not run.saved or not run.body.background)
        run.saved = True

    @staticmethod
    def snapshot(value: dict[str, Any]) -> dict[str, Any]:
        return _snapshot(value)

    async def end_unstarted(self, run: ResponseRun, failure: SovhubError | None) -> None:
        """A background run that ended before its chat started: refused (failed) or cancelled."""
        if failure is None:
            run.response["status"] = "cancelled"
        else:
            run.response.update(status="failed", error={"code": _error_code(failure), "message": failure.message})
        await self.save(run)

    async def create_background(self, body: CreateResponse, principal: Principal, request_id: str) -> dict[str, Any]:
        run = await self.plan(body, principal)
        return await self.background.submit(run, request_id)

    async def cancel(self, principal: Principal, response_id: str) -> dict[str, Any]:
        return await self.background.cancel(principal, response_id)

    async def input_tokens(self, body: TokenCountsBody, principal: Principal, request_id: str) -> dict[str, Any]:
        """What the response would read, counted with the serving backend's tokenizer (no model runs).

        Admitted against the key's request limits like any call (the count is CPU work) and recorded
        as a usage row of endpoint ``responses.input_tokens`` with no tokens billed."""
        try:
            create = body.as_create()
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRequest(first["msg"].removeprefix("Value error, "),
                                 param=".".join(str(x) for x in first["loc"]) or None) from None
        admission = await admit(self.hub, principal, "responses.input_tokens", create.model, request_id=request_id)
        started = time.perf_counter()
        try:
            counted = await self._count(create, principal)
        except BaseException:
            await release(self.hub, admission)
            raise
        self.hub.services.get(Meter).record(Usage(
            request_id=request_id, endpoint="responses.input_tokens", model=create.model, org_id=principal.org_id,
            key_id=principal.key_id, user_id=principal.user_id, latency_ms=(time.perf_counter() - started) * 1000))
        await settle(self.hub, admission, 0)
        return {"object": "response.input_tokens", "input_tokens": counted}

    async def _count(self, create: CreateResponse, principal: Principal) -> int:
        run = await self.plan(create, principal)
        ctx = ChatContext(request_id="count", principal=principal, model=create.model, messages=[], params={},
                          stream=False)
        backend = self.chat.registry.candidates(ctx, create.model)[0]
        messages = [m.model_dump(exclude_none=True) for m in run.request.messages]
        params = run.request.model_dump(exclude_none=True, exclude={"messages", "model"})
        counted = await asyncio.to_thread(backend.count_prompt, messages, params)
        if counted is None:  # no exact count here: the window's (over-)count, or an estimate
            window = window_of(backend)
            counted = window.prompt_tokens(messages) if window else estimate_tokens(prompt_text(messages))
        return int(counted)

    async def complete(self, run: ResponseRun, on_backend_time: Callable[[float], None]) -> dict[str, Any]:
        async for _event in self.events(run, on_backend_time):
            pass
        if run.failure is not None:
            # Not streamed: the failure is the HTTP answer, as any other error of the endpoint.
            raise run.failure
        return _snapshot(run.response)

    # --- stored responses ---

    async def retrieve(self, principal: Principal, response_id: str) -> dict[str, Any]:
        return (await self.background.load(principal, response_id)).response

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
    return copy.deepcopy(value)


def _logprob(entry: dict[str, Any]) -> dict[str, Any]:
    return {"token": entry["token"], "logprob": entry["logprob"], "bytes": entry.get("bytes") or [],
            "top_logprobs": [{"token": t["token"], "logprob": t["logprob"], "bytes": t.get("bytes") or []}
                             for t in entry.get("top_logprobs") or []]}


def _usage(usage: dict[str, int]) -> dict[str, Any]:
    """Chat usage in the Responses shape."""
    return {
        "input_tokens": int(usage.get("prompt_tokens", 0)),
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": int(usage.get("completion_tokens", 0)),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": int(usage.get("total_tokens", 0)),
    }


def _error_code(exc: SovhubError) -> str:
    return "rate_limit_exceeded" if exc.status == 429 else "server_error"
