"""The one small interface every inference backend implements."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["Backend", "BackendConfig", "BackendFactory", "CancelToken", "ChatChunk", "estimate_tokens"]

# An OpenAI `chat.completion.chunk` as a dict; the last one of a stream may carry `usage`.
ChatChunk = dict[str, Any]


@dataclass(slots=True)
class BackendConfig:
    """What the operator declared about a backend (stored in the `backends` table)."""

    name: str
    kind: str
    url: str | None = None
    models: list[str] = field(default_factory=list)
    jurisdiction: str | None = None
    operator: str | None = None
    api_key: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def estimate_tokens(text: str) -> int:
    """A quarter of the characters, rounded up: the usual rule of thumb for BPE tokenizers on
    European text (it undercounts Japanese or Arabic, where a token is nearer one character)."""
    return -(-len(text) // 4)


class CancelToken:
    """One request's line between the service and its backend.

    The service sets it when the client went away; generation loops check it between tokens. A
    backend that counts its own tokens puts them in ``usage`` when generation ends, however it
    ends: a stream closed early never reaches its usage chunk, so the service reads them here.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.usage: dict[str, int] | None = None
        #: Stopped to make room for an interactive request (background work only): run it again later.
        self.preempted = False

    def cancel(self) -> None:
        self._event.set()

    def preempt(self) -> None:
        self.preempted = True
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Backend(ABC):
    """Serves chat completions for a set of models.

    ``chat_stream`` always yields chunks: the service assembles non-streaming answers from them,
    so both paths share one code path (``params["_stream"]`` says whether the client streams; a
    backend may then fetch the answer in one piece and yield it as a single chunk). Raise
    :class:`~sovhub.errors.BackendUnavailable` before the first chunk when the backend cannot be
    reached, so the router can try the next one.
    """

    #: Largest `n` this backend honours; the service refuses larger ones with a 400.
    max_n: int = 1
    #: Request parameters this backend understands beyond the common ones.
    extra_params: frozenset[str] = frozenset()

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def models(self) -> list[str]:
        return list(self.config.models)

    async def start(self, progress: Callable[[str], None] | None = None) -> None:  # noqa: B027
        """Load or connect; called once at start-up."""

    async def close(self) -> None:  # noqa: B027
        """Release resources; called once at shutdown."""

    def ready(self) -> bool:
        return True

    async def probe(self, timeout: float) -> bool | None:
        """The registry's active health check: True alive, False dead, None unknown (no answer in time: a
        busy server may answer checks late; its requests' timeouts judge it). In-process ones: ready()."""
        return self.ready()

    @property
    def context_window(self) -> int | None:
        """Tokens the model reads and writes in one request; None when the backend does not say."""
        return None

    def count_tokens(self, text: str) -> int | None:
        """Tokens `text` takes with the model's own tokenizer; None when it cannot be counted here."""
        return None

    def count_prompt(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> int | None:
        """Tokens of the prompt these messages and parameters (tools) make, exactly as the model
        would read it; None when the backend cannot say (callers then count or estimate)."""
        return None

    @abstractmethod
    def chat_stream(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], cancel: CancelToken
    ) -> AsyncIterator[ChatChunk]:
        """Yield OpenAI chat.completion.chunk dicts; include `usage` on the last chunk."""


BackendFactory = Callable[["Hub", BackendConfig], Backend]
