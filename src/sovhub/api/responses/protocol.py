"""Wire models for /v1/responses, named as in OpenAI's spec (`CreateResponse`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..chat.protocol import check_response_format, check_tools

__all__ = ["CreateResponse", "TokenCountsBody", "chat_tools", "chat_tool_choice", "chat_response_format"]

# Accepted and without effect here (they change nothing a hub's model does, or only OpenAI's
# own service): kept so that clients sending them, as the Agents SDK does, just work.
IGNORED = frozenset({"truncation", "reasoning", "service_tier", "prompt_cache_key",
                     "prompt_cache_retention", "prompt_cache_options", "safety_identifier", "stream_options"})


class CreateResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    metadata: dict[str, str] | None = None
    store: bool | None = True
    stream: bool | None = False
    previous_response_id: str | None = Field(None, max_length=64)
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    user: str | None = Field(None, max_length=256)
    #: What to add to the output; only "message.output_text.logprobs" changes anything here.
    include: list[str] | None = Field(None, max_length=32)
    # Accepted and ignored (IGNORED): typed loosely so any value a client sends passes.
    truncation: Any = None
    reasoning: Any = None
    service_tier: Any = None
    prompt_cache_key: Any = None
    prompt_cache_retention: Any = None
    prompt_cache_options: Any = None
    safety_identifier: Any = None
    stream_options: Any = None
    background: bool | None = None
    #: Refused with a clear 400 when given (the Conversations API is not served here).
    conversation: Any = None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512.
        if value is not None and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("metadata holds at most 16 pairs, keys of at most 64 and values of at most 512 characters")
        return value

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value:
            for tool in value:
                if tool.get("type") != "function":
                    raise ValueError(f"tool type {tool.get('type')!r} is not supported by this hub; "
                                     "function tools are")
            check_tools(chat_tools(value))
        return value

    @field_validator("text")
    @classmethod
    def _text(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("format") is not None:
            check_response_format(chat_response_format(value["format"]))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CreateResponse:
        if self.background and self.store is False:
            raise ValueError("a background response must be stored (store: true): it is read back by its id")
        if self.tool_choice is not None and self.tool_choice != "auto" and not self.tools:
            raise ValueError("tool_choice needs tools")
        if isinstance(self.tool_choice, dict):
            if self.tool_choice.get("type") != "function" or not isinstance(self.tool_choice.get("name"), str):
                raise ValueError("tool_choice must be none, auto, required or {'type': 'function', 'name': ...}")
            if self.tool_choice["name"] not in {t.get("name") for t in self.tools or []}:
                raise ValueError(f"tool_choice names function {self.tool_choice['name']}, which is not among the tools")
        return self


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses function tools (flat) as chat tools (nested under `function`)."""
    out = []
    for tool in tools:
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def chat_response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    """`text.format` (flat) as chat's `response_format` (json_schema nested)."""
    if fmt.get("type") != "json_schema":
        return dict(fmt)
    spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
    return {"type": "json_schema", "json_schema": spec}


class TokenCountsBody(BaseModel):
    """POST /v1/responses/input_tokens: what a response would read, counted, not run."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    previous_response_id: str | None = Field(None, max_length=64)
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    reasoning: Any = None
    truncation: Any = None
    personality: Any = None
    conversation: Any = None

    def as_create(self) -> CreateResponse:
        """The same request as a (never run, never stored) response, so both read input alike; its
        checks (tools, text format, tool choice) are CreateResponse's (pydantic's ValidationError)."""
        return CreateResponse(**self.model_dump(exclude={"personality"}, exclude_none=True), store=False)
