"""Chat completions: interceptors, routing, streaming, metering. No FastAPI here.

What of the answer reaches the client is decided by :class:`~.gate.OutputGate` (output checks
per choice, the held-back tail); here the request is prepared, its chunks relayed, and recorded
exactly once however it ends (:meth:`ChatService.release`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ...admission import admit, release, settle
from ...backends.base import Backend, CancelToken, ChatChunk, estimate_tokens
from ...backends.registry import BackendRegistry
from ...backends.window import check_request, window_of
from ...errors import BackendUnavailable, InvalidRequest, ShuttingDown, SovhubError, UnsupportedParameter
from ...fleet.drain import Drain
from ...hub import Hub
from ...metering import Meter, Usage
from ...observability import Metrics
from ...pipeline import ANSWER_TEXT_FIELDS, ChatContext, ChatResult, Principal, SideCall, side_call_reserve
from .gate import OutputGate, checks_output
from .protocol import ChatCompletionRequest

__all__ = ["ChatService", "PreparedChat", "prompt_text"]

log = logging.getLogger("sovhub.api.chat")

# Parameters every backend honours; anything else needs a backend that passes it on.
_COMMON = {"max_tokens", "temperature", "top_p", "stop", "seed", "n"}
# Prompts longer than this are tokenized in a worker thread, off the event loop.
_INLINE_COUNT_CHARS = 8_000
# What a chat template adds around each message (role markers, separators), in tokens, at most
# for the templates of the models served here (ChatML: 4 to 5).
_TEMPLATE_TOKENS = 6
_HUB_ONLY = {"model", "messages", "stream", "stream_options", "max_completion_tokens", "user", "store", "metadata"}


@dataclass(slots=True, eq=False)  # compared and hashed by identity: the drain keeps a set of them
class PreparedChat:
    ctx: ChatContext
    backend: Backend
    first: ChatChunk | None
    stream: AsyncIterator[ChatChunk]
    cancel: CancelToken
    started: float
    gate: OutputGate
    headers: dict[str, str] = field(default_factory=dict)
    backend_s: float = 0.0
    first_token_s: float | None = None
    #: Usage as the backend reported it in its stream (None until then, or if it never does).
    usage: dict[str, int] | None = None
    recorded: bool = False
    #: The usage recorded for the request (set once, when it is released).
    billed: dict[str, int] | None = None
    #: Set by the replica's drain (`interrupt`): the answer ends now, with an in-band error.
    interrupted: bool = False
    #: The task while it waits for the backend's next chunk (what `interrupt` wakes).
    waiting: asyncio.Task[Any] | None = None

    def interrupt(self) -> None:
        self.interrupted = True
        self.cancel.cancel()
        if self.waiting is not None:
            self.waiting.cancel()


class ChatService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.drain = hub.services.get(Drain)
        self.metrics = hub.services.get(Metrics)
        self.registry = hub.services.get(BackendRegistry)

    def _params(self, req: ChatCompletionRequest, backend: Backend, owner: str) -> dict[str, Any]:
        data = req.model_dump(exclude_none=True, exclude={"messages"})
        # "_" names are hints for the backend, never sent on: who asks (fair queueing), and
        # whether the client streams (a backend may fetch a non-streamed answer in one piece).
        params: dict[str, Any] = {"_owner": owner, "_stream": bool(req.stream)}
        unsupported = []
        for name, value in data.items():
            if name in _HUB_ONLY:
                continue
            if name in _COMMON or name in backend.extra_params or "*" in backend.extra_params:
                params[name] = value
            else:
                unsupported.append(name)
        if unsupported:
            raise UnsupportedParameter(
                f"model {req.model} (backend {backend.name}) does not support: {', '.join(sorted(unsupported))}",
                param=sorted(unsupported)[0],
            )
        n = req.n or 1
        max_n = self.hub.settings.access.max_n
        if n > max_n:
            raise InvalidRequest(f"n={n} asks for more choices than this hub allows per request ({max_n})", param="n",
                                 code="n_too_large")
        if n > backend.max_n:
            raise UnsupportedParameter(
                f"n={n} is not supported by model {req.model}; it returns at most {backend.max_n} choice(s)",
                param="n",
            )
        if req.token_limit is not None:
            params["max_tokens"] = req.token_limit
        elif backend.config.kind == "embedded":
            params["max_tokens"] = self.hub.settings.embedded_max_tokens
        else:
            # Sent, not left to the upstream: admission reserves max_tokens x n, so it must bind.
            params["max_tokens"] = self.hub.settings.access.default_max_tokens
        return params

    @staticmethod
    async def _reserve(messages: list[dict[str, Any]], params: dict[str, Any], n: int, backend: Backend) -> int:
        """The most tokens the request may use: max_tokens x n, and its prompt.

        The prompt is counted with the backend's own tokenizer where it has one (a dense script can
        take a token per character), else estimated at about 4 characters a token.
        """
        text = prompt_text(messages)
        if len(text) > _INLINE_COUNT_CHARS:
            counted = await anyio.to_thread.run_sync(backend.count_tokens, text)
        else:
            counted = backend.count_tokens(text)
        if counted is None:
            prompt = sum(len(part) for m in messages for part in _parts(m)) // 4
        else:
            prompt = counted + _TEMPLATE_TOKENS * len(messages)
        return int(params.get("max_tokens", 0)) * n + prompt

    async def prepare(
        self, req: ChatCompletionRequest, principal: Principal, request_id: str, *, batch_id: str | None = None
    ) -> PreparedChat:
        """Admit, check and route the request; `batch_id` marks a batch line (idle capacity, batch price)."""
        started = time.perf_counter()
        registry = self.registry
        if not registry.running:
            raise BackendUnavailable("the hub is starting; retry shortly")
        ctx = ChatContext(
            request_id=request_id,
            principal=principal,
            model=req.model,
            messages=[m.model_dump(exclude_none=True) for m in req.messages],
            params={},
            stream=req.stream,
            store=req.store is not False,
        )
        candidates = registry.candidates(ctx, req.model)
        ctx.params = self._params(req, candidates[0], principal.label)
        if batch_id is not None:
            ctx.state["batch_id"] = batch_id
            # A backend with a queue serves it only when nobody else waits, and stops it for whoever comes.
            ctx.params["_background"] = self.hub.settings.batch.interactive_first
        reserve = await self._reserve(ctx.messages, ctx.params, req.n or 1, candidates[0])
        # With what the interceptors' own model calls (a guard model) may use: held now, settled after.
        reserve += sum(side_call_reserve(i, ctx) for i in self.hub.interceptors)
        admission = await admit(self.hub, principal, "chat", req.model, reserve=reserve, request_id=request_id,
                                batch_id=batch_id)
        ctx.state["admission"] = admission
        try:
            for interceptor in self.hub.interceptors:
                await interceptor.before(ctx)
            self._fit_window(req, candidates[0], ctx)
            cancel = CancelToken()
            t0 = time.perf_counter()
            opening = _Opening(cancel)
            self.drain.track(opening)
            try:
                backend, first, stream = await registry.open_stream(ctx, candidates, ctx.messages, ctx.params, cancel)
            except SovhubError:
                self.metrics.backend_errors.labels(candidates[0].name).inc()
                raise
            except asyncio.CancelledError:
                # The drain ended the wait for the first chunk (a non-streamed answer's whole wait).
                task = asyncio.current_task()
                if not opening.interrupted or task is None or task.uncancel() > 0:
                    raise
                self._record_cut(ctx, candidates[0])
                raise _drained() from None
            finally:
                self.drain.untrack(opening)
        except BaseException as exc:
            # Refused by a check or no backend answered: the reservation is given back, less what
            # the checks' own model calls (a guard model's verdict on the input) used.
            side = self._record_side_calls(ctx, status=exc.status if isinstance(exc, SovhubError) else 499)
            with anyio.CancelScope(shield=True):
                await (settle(self.hub, admission, side) if side else release(self.hub, admission))
            raise
        waited = time.perf_counter() - t0
        envelope = {"id": f"chatcmpl-{ctx.request_id}", "object": "chat.completion.chunk",
                    "created": int(time.time()), "model": ctx.model}
        gate = OutputGate(ctx, [i for i in self.hub.interceptors if checks_output(i)], envelope)
        prepared = PreparedChat(ctx, backend, first, stream, cancel, started, gate, admission.headers, backend_s=waited)
        prepared.first_token_s = time.perf_counter() - started
        self.drain.track(prepared)
        return prepared

    def _fit_window(self, req: ChatCompletionRequest, backend: Backend, ctx: ChatContext) -> None:
        """A 400 context_length_exceeded before any backend sees a request that cannot fit its model."""
        window = window_of(backend)
        if window is not None:
            max_tokens = check_request(window, ctx.messages, req.token_limit, ctx.params.get("max_tokens"))
            if max_tokens is not None:
                ctx.params["max_tokens"] = max_tokens

    async def chunks(
        self, p: PreparedChat, on_backend_time: Callable[[float], None]
    ) -> AsyncGenerator[ChatChunk, None]:
        """The answer as chunks with the hub's id, output checks applied, usage last (always).

        However it ends (finished, stopped by a check, the backend failing, or the client gone:
        this generator closed or cancelled), the request is recorded once, in ``finally``.
        """
        outcome = 499  # closed or cancelled before the end: the client went away
        try:
            pending = [p.first] if p.first is not None else []
            p.first = None
            failed: SovhubError | None = None
            while not p.gate.all_stopped:
                if pending:
                    chunk = pending.pop()
                else:
                    if p.interrupted:
                        failed = _drained()
                        break
                    t0 = time.perf_counter()
                    p.waiting = asyncio.current_task()
                    try:
                        chunk = await p.stream.__anext__()
                    except StopAsyncIteration:
                        if p.interrupted:  # the backend stopped because the drain told it to
                            failed = _drained()
                        break
                    except SovhubError as exc:
                        # The backend failed after answering in part: the client gets an in-band error, the
                        # operator a log line and a count; the request is metered like any other end.
                        failed = exc
                        self.metrics.backend_errors.labels(p.backend.name).inc()
                        log.warning("backend %s failed mid-answer of request %s: %s", p.backend.name,
                                    p.ctx.request_id, exc.message,
                                    extra={"request_id": p.ctx.request_id, "backend": p.backend.name,
                                           "code": exc.code})
                        break
                    except asyncio.CancelledError:
                        # The drain woke this wait: end in-band. Any other cancellation goes on.
                        task = asyncio.current_task()
                        if not p.interrupted or task is None or task.uncancel() > 0:
                            raise
                        failed = _drained()
                        break
                    finally:
                        p.waiting = None
                        on_backend_time(time.perf_counter() - t0)
                if chunk.get("usage"):
                    p.usage = chunk["usage"]
                if not chunk.get("choices"):
                    continue
                chunk.pop("usage", None)
                chunk.update(p.gate.envelope)
                for out in await p.gate.feed(chunk):
                    yield out
            # The backend ended (or failed after answering): what passes its final check is the client's.
            for out in await p.gate.end():
                yield out
            if failed is not None:
                raise failed
            outcome = 200
            usage, _estimated = self._count(p)
            yield {**p.gate.envelope, "choices": [], "usage": dict(usage)}
        except SovhubError as exc:
            outcome = exc.status
            raise
        except Exception:
            outcome = 500
            raise
        finally:
            await self.release(p, outcome)

    async def release(self, p: PreparedChat, status: int = 499) -> None:
        """Close the backend's stream and record the request: once, however it ended.

        Safe to call again (it does nothing then), and called by every path that holds a
        prepared chat, so a stream the client left before it was read is recorded too. Shielded
        from cancellation: a request cancelled because its client left is still billed.
        """
        if p.recorded:
            return
        p.recorded = True
        self.drain.untrack(p)
        self.registry.finished(p.backend)
        p.cancel.cancel()
        with anyio.CancelScope(shield=True):
            try:
                # The embedded backend counts its tokens when its generation has ended, which
                # closing its stream waits for.
                await p.stream.aclose()  # type: ignore[attr-defined]
            except Exception:
                log.exception("closing the stream of backend %s failed", p.backend.name)
            usage, estimated = self._count(p)
            p.billed = usage
            self._record(p, usage, estimated, status)
            ctx = p.ctx
            side = self._record_side_calls(ctx, status=200)
            # The guard model's calls for this request are priced as its input.
            await settle(self.hub, ctx.state["admission"],
                         usage["prompt_tokens"] + usage["completion_tokens"] + side,
                         prompt_tokens=usage["prompt_tokens"] + side, completion_tokens=usage["completion_tokens"])
            result = ChatResult(
                text=p.gate.sent_text(), finish_reason=p.gate.finish_reason(),
                prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                latency_ms=(time.perf_counter() - p.started) * 1000, backend_name=p.backend.name,
            )
            for interceptor in self.hub.interceptors:
                try:
                    await interceptor.after(ctx, result)
                except Exception:
                    # The answer is out and metered; one interceptor's failure must not hide another's work.
                    log.exception("interceptor %s failed after request %s", interceptor.name, ctx.request_id)

    def _count(self, p: PreparedChat) -> tuple[dict[str, int], bool]:
        """The request's usage as the backend reported it, or counted by the hub (estimated)."""
        reported = p.usage or p.cancel.usage
        if reported:
            prompt = int(reported.get("prompt_tokens") or 0)
            completion = int(reported.get("completion_tokens") or 0)
            estimated = False
        else:
            generated = p.gate.generated()
            if p.first is not None:  # never read by `chunks`: the client left before the stream began
                generated += "".join(_texts_of(p.first))
            # The backend's own tokenizer where it has one (exact), else an estimate (marked so).
            counted = [p.backend.count_tokens(t) for t in (prompt_text(p.ctx.messages), generated)]
            estimated = None in counted
            prompt, completion = (
                estimate_tokens(t) if n is None else n
                for n, t in zip(counted, (prompt_text(p.ctx.messages), generated), strict=True)
            )
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        return usage, estimated

    def _record(self, p: PreparedChat, usage: dict[str, int], estimated: bool, status: int) -> None:
        """Metrics and the usage row: synchronous, so nothing can cancel them half-way."""
        ctx, principal = p.ctx, p.ctx.principal
        latency_ms = (time.perf_counter() - p.started) * 1000
        metrics = self.metrics
        metrics.tokens.labels(ctx.model, "prompt").inc(usage["prompt_tokens"])
        metrics.tokens.labels(ctx.model, "completion").inc(usage["completion_tokens"])
        if p.first_token_s is not None:
            metrics.ttft.labels(ctx.model).observe(p.first_token_s)
        meter = self.hub.services.get(Meter)
        meter.record(
            Usage(
                request_id=ctx.request_id, endpoint="chat", model=ctx.model, org_id=principal.org_id,
                key_id=principal.key_id, user_id=principal.user_id, backend=p.backend.name,
                prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                latency_ms=latency_ms, status=status, estimated=estimated,
                batch_id=ctx.state.get("batch_id"),
            )
        )

    def _record_cut(self, ctx: ChatContext, backend: Backend) -> None:
        """Meter an answer the drain ended before its first chunk: the backend has read the prompt."""
        principal = ctx.principal
        self.hub.services.get(Meter).record(Usage(
            request_id=ctx.request_id, endpoint="chat", model=ctx.model, org_id=principal.org_id,
            key_id=principal.key_id, user_id=principal.user_id, backend=backend.name,
            prompt_tokens=estimate_tokens(prompt_text(ctx.messages)), completion_tokens=0, status=503, estimated=True,
        ))

    def _record_side_calls(self, ctx: ChatContext, status: int) -> int:
        """One usage row per model the interceptors asked for this request (a guard model); their tokens."""
        calls, ctx.side_calls = ctx.side_calls, []
        by_model: dict[tuple[str, str], list[SideCall]] = {}
        for call in calls:
            by_model.setdefault((call.model, call.backend), []).append(call)
        principal = ctx.principal
        for (model, backend), group in by_model.items():
            prompt = sum(c.prompt_tokens for c in group)
            completion = sum(c.completion_tokens for c in group)
            self.metrics.tokens.labels(model, "prompt").inc(prompt)
            self.metrics.tokens.labels(model, "completion").inc(completion)
            self.hub.services.get(Meter).record(Usage(
                request_id=ctx.request_id, endpoint="chat", model=model, org_id=principal.org_id,
                key_id=principal.key_id, user_id=principal.user_id, backend=backend,
                prompt_tokens=prompt, completion_tokens=completion, status=status,
                estimated=any(c.estimated for c in group),
            ))
        return sum(c.prompt_tokens + c.completion_tokens for c in calls)

    async def sse(
        self, p: PreparedChat, include_usage: bool, on_backend_time: Callable[[float], None]
    ) -> AsyncIterator[bytes]:
        try:
            async with contextlib.aclosing(self.chunks(p, on_backend_time)) as chunks:
                async for chunk in chunks:
                    if "usage" in chunk and not include_usage:
                        continue
                    yield b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
        except SovhubError as exc:
            # Headers are gone: report in-band, as OpenAI does, and end the stream cleanly.
            yield b"data: " + json.dumps(exc.to_dict()).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def complete(self, p: PreparedChat, on_backend_time: Callable[[float], None]) -> dict[str, Any]:
        """Assemble a non-streaming `chat.completion` from the chunks (only what passed the checks)."""
        choices: dict[int, dict[str, Any]] = {}
        calls: dict[int, dict[int, dict[str, Any]]] = {}
        usage: dict[str, int] = {}
        async with contextlib.aclosing(self.chunks(p, on_backend_time)) as chunks:
            async for chunk in chunks:
                if "usage" in chunk:
                    usage = chunk["usage"]
                for c in chunk.get("choices", []):
                    index = c.get("index", 0)
                    slot = choices.setdefault(
                        index,
                        {"index": index, "message": {"role": "assistant", "content": ""},
                         "finish_reason": None, "logprobs": None},
                    )
                    delta = c.get("delta") or {}
                    message = slot["message"]
                    if delta.get("content"):
                        message["content"] += delta["content"]
                    for name in ANSWER_TEXT_FIELDS:
                        if isinstance(delta.get(name), str) and delta[name]:
                            message[name] = (message.get(name) or "") + delta[name]
                    for call in delta.get("tool_calls") or []:
                        _merge_tool_call(calls.setdefault(index, {}), call)
                    entries = (c.get("logprobs") or {}).get("content")
                    if entries:
                        if slot["logprobs"] is None:
                            slot["logprobs"] = {"content": [], "refusal": None}
                        slot["logprobs"]["content"].extend(entries)
                    if isinstance(delta.get("function_call"), dict):
                        _merge_function(message.setdefault("function_call", {}), delta["function_call"])
                    if c.get("finish_reason"):
                        slot["finish_reason"] = c["finish_reason"]
        for index, slot in choices.items():
            if index in calls:
                slot["message"]["tool_calls"] = [calls[index][k] for k in sorted(calls[index])]
                # As OpenAI: an answer that only calls has no content (null, not "").
                slot["message"]["content"] = slot["message"]["content"] or None
            slot["finish_reason"] = slot["finish_reason"] or "stop"
            slot["message"].setdefault("refusal", None)
        if not choices:
            choices[0] = {"index": 0, "message": {"role": "assistant", "content": "", "refusal": None},
                          "finish_reason": "stop", "logprobs": None}
        envelope = p.gate.envelope
        return {
            "id": envelope["id"], "object": "chat.completion", "created": envelope["created"], "model": p.ctx.model,
            "choices": [choices[i] for i in sorted(choices)],
            "usage": {
                "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                "completion_tokens": int(usage.get("completion_tokens", 0)),
                "total_tokens": int(usage.get("total_tokens", 0)),
            },
        }


class _Opening:
    """A request waiting for its first chunk, as the drain sees it."""

    __slots__ = ("cancel", "interrupted", "task")

    def __init__(self, cancel: CancelToken) -> None:
        self.cancel = cancel
        self.task = asyncio.current_task()
        self.interrupted = False

    def interrupt(self) -> None:
        self.interrupted = True
        self.cancel.cancel()
        if self.task is not None:
            self.task.cancel()


def _drained() -> ShuttingDown:
    return ShuttingDown("this hub replica is shutting down and ended the answer; retry, another replica answers")


def _merge_function(function: dict[str, Any], fragment: dict[str, Any]) -> None:
    """Join the legacy `function_call`'s streamed fragments (its arguments arrive piece by piece)."""
    for name, value in fragment.items():
        if name == "arguments" and isinstance(value, str):
            function["arguments"] = function.get("arguments", "") + value
        elif value is not None:
            function[name] = value


def _merge_tool_call(calls: dict[int, dict[str, Any]], fragment: dict[str, Any]) -> None:
    """Join a streamed tool call's fragments (its arguments arrive piece by piece) into one call."""
    key = int(fragment.get("index") or 0)
    call = calls.get(key)
    if call is None:
        call = calls[key] = {k: v for k, v in fragment.items() if k != "index"}
        call["function"] = dict(fragment.get("function") or {})
        return
    _merge_function(call["function"], fragment.get("function") or {})
    for name, value in fragment.items():
        if name not in ("index", "function") and value is not None:
            call[name] = value


def _texts_of(chunk: ChatChunk) -> list[str]:
    out: list[str] = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        out.extend(delta[k] for k in ("content", *ANSWER_TEXT_FIELDS) if isinstance(delta.get(k), str))
        functions = [call.get("function") for call in delta.get("tool_calls") or [] if isinstance(call, dict)]
        for function in [*functions, delta.get("function_call")]:
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str):
                out.append(arguments)
    return out


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The text of the messages a backend read, for counting its tokens when it reported none."""
    return "\n".join(part for message in messages for part in (str(message.get("role", "")), *_parts(message)))


def _parts(message: dict[str, Any]) -> list[str]:
    """A message's texts: its content, and its tool calls' names and arguments."""
    parts: list[str] = []
    content = message.get("content")
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {} if isinstance(call, dict) else {}
        parts.extend(str(function.get(k, "")) for k in ("name", "arguments"))
    return parts
