"""One batch line through the very service an interactive request uses (safety, residency, metering)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..api.chat.protocol import ChatCompletionRequest
from ..api.chat.service import ChatService
from ..api.embeddings.protocol import CreateEmbeddingRequest
from ..api.embeddings.service import create_embeddings
from ..api.moderations.protocol import ModerationRequest
from ..api.moderations.service import amoderate
from ..errors import InvalidRequest, SovhubError
from ..hub import Hub
from ..observability import new_request_id
from ..pipeline import Principal

__all__ = ["LineOutcome", "run_line"]


@dataclass(slots=True)
class LineOutcome:
    status_code: int
    body: dict[str, Any]
    request_id: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Worth another try later (rate limited, backend down) rather than an error line now.
    retry_after: float | None = None

    def output_line(self, custom_id: str) -> dict[str, Any]:
        """OpenAI's output line: the response as the endpoint would have answered it."""
        return {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
                "response": {"status_code": self.status_code, "request_id": self.request_id, "body": self.body},
                "error": None}


async def run_line(hub: Hub, chat: ChatService, principal: Principal, endpoint: str, body: dict[str, Any],
                   batch_id: str) -> LineOutcome:
    request_id = new_request_id()
    try:
        if endpoint == "/v1/chat/completions":
            req = ChatCompletionRequest.model_validate({**body, "stream": False})
            prepared = await chat.prepare(req, principal, request_id, batch_id=batch_id)
            try:
                result = await chat.complete(prepared, lambda _s: None)
            finally:
                await chat.release(prepared)
            if prepared.cancel.preempted:
                # Stopped for an interactive request: its partial answer is dropped, the line runs again.
                return LineOutcome(503, {}, request_id, retry_after=0.0)
            usage = result.get("usage") or {}
            return LineOutcome(200, result, request_id, int(usage.get("prompt_tokens", 0)),
                               int(usage.get("completion_tokens", 0)))
        if endpoint == "/v1/embeddings":
            embed_req = CreateEmbeddingRequest.model_validate(body)
            response, _model_s, _headers = await create_embeddings(hub, embed_req, principal, request_id,
                                                                   batch_id=batch_id)
            data = response.model_dump()
            return LineOutcome(200, data, request_id, int(data["usage"]["prompt_tokens"]))
        if endpoint == "/v1/moderations":
            mod_req = ModerationRequest.model_validate(body)
            moderation, _headers = await amoderate(hub, mod_req, principal, request_id, batch_id=batch_id)
            return LineOutcome(200, moderation.model_dump(), request_id)
        raise InvalidRequest(f"endpoint {endpoint} is not supported for batches", param="url")
    except ValidationError as exc:
        first = exc.errors()[0]
        error = InvalidRequest(f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}")
        return LineOutcome(error.status, error.to_dict(), request_id)
    except SovhubError as exc:
        retry = None
        if exc.status == 429:
            retry = float(getattr(exc, "retry_after", 1.0))
        elif exc.status == 503:
            retry = 5.0
        return LineOutcome(exc.status, exc.to_dict(), request_id, retry_after=retry)
