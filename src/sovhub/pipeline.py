"""What runs around a chat completion: interceptors (guards, storage, language) and route policies.

A chat request flows through :class:`ChatContext`:

1. route policies narrow the candidate backends (residency, model tiers);
2. every interceptor's ``before`` (may rewrite ``ctx.messages`` or raise a SovhubError);
3. the backend streams chunks; ``check_output`` runs on each choice's growing answer and may stop
   it (that choice then ends with ``finish_reason: "content_filter"``); text reaches the client
   only once a check passed it (``sovhub.api.chat.gate``);
4. every interceptor's ``after`` sees the text the client received and the usage (storage,
   metrics), however the request ended: finished, stopped, failed or abandoned by its client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = [
    "ANSWER_TEXT_FIELDS",
    "ChatContext",
    "ChatInterceptor",
    "ChatResult",
    "OutputVerdict",
    "Principal",
    "RoutePolicy",
    "SideCall",
    "side_call_reserve",
]


#: Plain-text fields of a chat message or delta besides ``content`` that a model writes and reads:
#: OpenAI's ``refusal``, and reasoning as DeepSeek/vLLM (``reasoning_content``) and others name it.
ANSWER_TEXT_FIELDS = ("refusal", "reasoning_content", "reasoning")


@dataclass(slots=True)
class Principal:
    """Who is calling: an API key of an organization, or a signed-in person of the web app."""

    org_id: int | None
    org_name: str | None = None
    key_id: int | None = None
    key_prefix: str | None = None
    user_id: int | None = None
    scopes: frozenset[str] = frozenset()
    limits: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None  # of the API key; aware UTC

    @property
    def label(self) -> str:
        if self.key_prefix:
            return f"key:{self.key_prefix}"
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return "anonymous"


@dataclass(slots=True)
class SideCall:
    """A model call made on behalf of a request (a guard model's verdict): billed with the request."""

    model: str
    backend: str
    prompt_tokens: int
    completion_tokens: int
    #: Counted by the hub: the backend reported no usage and has no tokenizer here.
    estimated: bool = False


@dataclass(slots=True)
class ChatContext:
    request_id: str
    principal: Principal
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    stream: bool
    store: bool = True
    lang: str | None = None
    conversation_id: str | None = None
    # Free space for interceptors to pass facts to each other and to `after` (e.g. detected language).
    state: dict[str, Any] = field(default_factory=dict)
    backend_name: str | None = None
    #: Model calls interceptors made for this request, metered with it (api/chat/service.py).
    side_calls: list[SideCall] = field(default_factory=list)


@dataclass(slots=True)
class ChatResult:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    backend_name: str | None


@dataclass(slots=True)
class OutputVerdict:
    """An interceptor's answer about the output so far: stop the answer here, and why."""

    action: Literal["stop"]
    reason: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ChatInterceptor(Protocol):
    """Runs around every chat completion.

    ``check_output`` sees each choice's growing content, and each tool call's arguments, as
    separate texts (each with its own copy of the context after the first). While any interceptor
    checks output, the client receives only text that passed a check; one whose ``check_output``
    never stops anything says so with a ``checks_output = False`` attribute, so answers are not held
    back for it (an interceptor without the attribute is taken to check). One that calls a model
    itself (a guard model) may say how many tokens those calls can use with a
    ``side_call_reserve(ctx) -> int`` method: admission holds them with the request's own.
    """

    name: str

    async def before(self, ctx: ChatContext) -> None: ...

    async def check_output(self, ctx: ChatContext, text: str, final: bool) -> OutputVerdict | None: ...

    async def after(self, ctx: ChatContext, result: ChatResult) -> None: ...


def side_call_reserve(interceptor: ChatInterceptor, ctx: ChatContext) -> int:
    """The tokens an interceptor's own model calls may use for this request (0: none, or it does not say)."""
    reserve = getattr(interceptor, "side_call_reserve", None)
    return max(int(reserve(ctx)), 0) if callable(reserve) else 0


@runtime_checkable
class RoutePolicy(Protocol):
    name: str

    def filter(self, ctx: ChatContext | None, model: str, backends: list[Backend]) -> list[Backend]:
        """Return the backends allowed for this request; raise a SovhubError to refuse with a reason."""
        ...
