"""Chat completions: interceptors, routing, streaming, metering. No FastAPI here."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ...admission import admit, release, settle
from ...backends.base import Backend, CancelToken, ChatChunk
from ...backends.window import check_request, window_of
from ...errors import BackendUnavailable, InvalidRequest, SovhubError, UnsupportedParameter
from ...hub import Hub
from ...metering import Usage
from ...pipeline import ChatContext, ChatResult, OutputVerdict, Principal
from .protocol import ChatCompletionRequest

__all__ = ["ChatService", "PreparedChat"]

# Parameters every backend honours; anything else needs a backend that passes it on.
_COMMON = {"max_tokens", "temperature", "top_p", "stop", "seed", "n"}
_HUB_ONLY = {"model", "messages", "stream", "stream_options", "max_completion_tokens", "user", "store", "metadata"}
# Check the growing answer when it grew by this many characters (and at the end): guards are
# cheap, but not free, and per-token checks would multiply their cost by the answer's length.
_CHECK_EVERY = 96


@dataclass(slots=True)
class PreparedChat:
    ctx: ChatContext
    backend: Backend
    first: ChatChunk | None
    stream: AsyncIterator[ChatChunk]
    cancel: CancelToken
    started: float
    headers: dict[str, str] = field(default_factory=dict)
    backend_s: float = 0.0
    first_token_s: float | None = None


class ChatService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

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
    def _reserve(req: ChatCompletionRequest, params: dict[str, Any]) -> int:
        """The most tokens the request may use: max_tokens x n, and its prompt (about 4 characters a token)."""
        prompt_chars = sum(len(m.text()) for m in req.messages)
        return int(params.get("max_tokens", 0)) * (req.n or 1) + prompt_chars // 4

    async def prepare(
        self, req: ChatCompletionRequest, principal: Principal, request_id: str
    ) -> PreparedChat:
        started = time.perf_counter()
        registry = self.hub.backends
        if registry is None:
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
        admission = await admit(self.hub, principal, "chat", req.model, reserve=self._reserve(req, ctx.params))
        ctx.state["admission"] = admission
        try:
            for interceptor in self.hub.interceptors:
                await interceptor.before(ctx)
            self._fit_window(req, candidates[0], ctx)
            cancel = CancelToken()
            t0 = time.perf_counter()
            try:
                backend, first, stream = await registry.open_stream(ctx, candidates, ctx.messages, ctx.params, cancel)
            except SovhubError:
                self.hub.services["metrics"].backend_errors.labels(candidates[0].name).inc()
                raise
        except BaseException:
            # Refused by a check or no backend answered: the reservation is given back.
            await release(self.hub, admission)
            raise
        waited = time.perf_counter() - t0
        prepared = PreparedChat(ctx, backend, first, stream, cancel, started, admission.headers, backend_s=waited)
        prepared.first_token_s = time.perf_counter() - started
        return prepared

    def _fit_window(self, req: ChatCompletionRequest, backend: Backend, ctx: ChatContext) -> None:
        """A 400 context_length_exceeded before any backend sees a request that cannot fit its model."""
        window = window_of(backend)
        if window is not None:
            max_tokens = check_request(window, ctx.messages, req.token_limit, ctx.params.get("max_tokens"))
            if max_tokens is not None:
                ctx.params["max_tokens"] = max_tokens

    async def chunks(self, p: PreparedChat, on_backend_time: Callable[[float], None]) -> AsyncIterator[ChatChunk]:
        """The answer as chunks with the hub's id, output checks applied, usage last (always)."""
        ctx = p.ctx
        cid = f"chatcmpl-{ctx.request_id}"
        created = int(time.time())
        text: list[str] = []
        length = checked = 0
        usage: dict[str, int] | None = None
        finish: str | None = None
        stopped: OutputVerdict | None = None
        final_checked = False
        try:
            pending = [p.first] if p.first is not None else []
            while True:
                if pending:
                    chunk = pending.pop()
                else:
                    t0 = time.perf_counter()
                    try:
                        chunk = await p.stream.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        on_backend_time(time.perf_counter() - t0)
                if chunk.get("usage"):
                    usage = chunk["usage"]
                    if not chunk.get("choices"):
                        continue
                chunk["id"], chunk["model"], chunk["created"] = cid, ctx.model, created
                chunk["object"] = "chat.completion.chunk"
                chunk.pop("usage", None)
                ends = False
                for choice in chunk.get("choices", []):
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        text.append(delta["content"])
                        length += len(delta["content"])
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                        ends = True
                if ends or length - checked >= _CHECK_EVERY:
                    # The last check runs before the finishing chunk leaves, so a stopped answer
                    # never carries two finish reasons.
                    checked = length
                    final_checked = ends
                    stopped = await self._check(ctx, "".join(text), final=ends)
                    if stopped:
                        break
                yield chunk
            if stopped is None and not final_checked:
                stopped = await self._check(ctx, "".join(text), final=True)
            if stopped is not None:
                finish = "content_filter"
                yield {
                    "id": cid, "object": "chat.completion.chunk", "created": created, "model": ctx.model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter", "logprobs": None}],
                }
            usage = usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            yield {
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": ctx.model,
                "choices": [], "usage": usage,
            }
            await self._finish(p, "".join(text), finish, usage, stopped)
        finally:
            p.cancel.cancel()
            await p.stream.aclose()  # type: ignore[attr-defined]

    async def _check(self, ctx: ChatContext, text: str, final: bool) -> OutputVerdict | None:
        for interceptor in self.hub.interceptors:
            verdict = await interceptor.check_output(ctx, text, final)
            if verdict is not None:
                ctx.state["output_verdict"] = verdict
                return verdict  # type: ignore[no-any-return]
        return None

    async def _finish(
        self, p: PreparedChat, text: str, finish: str | None, usage: dict[str, int], stopped: OutputVerdict | None
    ) -> None:
        ctx = p.ctx
        latency_ms = (time.perf_counter() - p.started) * 1000
        result = ChatResult(
            text=text,
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_ms=latency_ms,
            backend_name=p.backend.name,
        )
        for interceptor in self.hub.interceptors:
            await interceptor.after(ctx, result)
        metrics = self.hub.services["metrics"]
        metrics.tokens.labels(ctx.model, "prompt").inc(result.prompt_tokens)
        metrics.tokens.labels(ctx.model, "completion").inc(result.completion_tokens)
        if p.first_token_s is not None:
            metrics.ttft.labels(ctx.model).observe(p.first_token_s)
        principal = ctx.principal
        if self.hub.meter is not None:
            self.hub.meter.record(
                Usage(
                    request_id=ctx.request_id, endpoint="chat", model=ctx.model, org_id=principal.org_id,
                    key_id=principal.key_id, user_id=principal.user_id, backend=p.backend.name,
                    prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                    latency_ms=latency_ms, status=200,
                )
            )
        await settle(self.hub, ctx.state["admission"], result.prompt_tokens + result.completion_tokens)

    async def sse(
        self, p: PreparedChat, include_usage: bool, on_backend_time: Callable[[float], None]
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.chunks(p, on_backend_time):
                if "usage" in chunk and not include_usage:
                    continue
                yield b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
        except SovhubError as exc:
            # Headers are gone: report in-band, as OpenAI does, and end the stream cleanly.
            yield b"data: " + json.dumps(exc.to_dict()).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def complete(self, p: PreparedChat, on_backend_time: Callable[[float], None]) -> dict[str, Any]:
        """Assemble a non-streaming `chat.completion` from the chunks."""
        choices: dict[int, dict[str, Any]] = {}
        usage: dict[str, int] = {}
        cid, created = "", 0
        async for chunk in self.chunks(p, on_backend_time):
            cid, created = chunk["id"], chunk["created"]
            if "usage" in chunk:
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                slot = choices.setdefault(
                    c.get("index", 0),
                    {"index": c.get("index", 0), "message": {"role": "assistant", "content": ""},
                     "finish_reason": None, "logprobs": None},
                )
                delta = c.get("delta") or {}
                if delta.get("content"):
                    slot["message"]["content"] += delta["content"]
                if delta.get("tool_calls"):
                    slot["message"].setdefault("tool_calls", []).extend(delta["tool_calls"])
                if c.get("finish_reason"):
                    slot["finish_reason"] = c["finish_reason"]
        for slot in choices.values():
            slot["finish_reason"] = slot["finish_reason"] or "stop"
            slot["message"].setdefault("refusal", None)
        if not choices:
            choices[0] = {"index": 0, "message": {"role": "assistant", "content": "", "refusal": None},
                          "finish_reason": "stop", "logprobs": None}
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": p.ctx.model,
            "choices": [choices[i] for i in sorted(choices)],
            "usage": {
                "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                "completion_tokens": int(usage.get("completion_tokens", 0)),
                "total_tokens": int(usage.get("total_tokens", 0)),
            },
        }
