"""Wire models for /v1/chat/completions, named as in OpenAI's spec."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sovhub import linear_re

__all__ = ["ChatCompletionRequest", "ChatMessage", "StreamOptions", "check_response_format", "check_tools"]

# OpenAI's rule for function and schema names.
_NAME = linear_re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def check_response_format(value: dict[str, Any]) -> None:
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise ValueError("response_format.type must be one of text, json_object, json_schema")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not _NAME.match(spec["name"]):
            raise ValueError("response_format.json_schema needs a name of 1-64 letters, digits, _ or -")
        if "schema" in spec and not isinstance(spec["schema"], dict):
            raise ValueError("response_format.json_schema.schema must be a JSON schema object")
        if "strict" in spec and not isinstance(spec["strict"], bool | None):
            raise ValueError("response_format.json_schema.strict must be a boolean")


def check_tools(tools: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for tool in tools:
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise ValueError("each tool must be {'type': 'function', 'function': {...}}")
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError("a function name is 1-64 letters, digits, _ or -")
        if name in seen:
            raise ValueError(f"function {name} is declared twice")
        seen.add(name)
        if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
            raise ValueError(f"function {name}: parameters must be a JSON schema object")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, value: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        if isinstance(value, list):
            for part in value:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError("only text content parts ({'type': 'text', 'text': ...}) are supported")
        return value

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The request body. Unknown fields are kept and passed to upstreams that understand them."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    user: str | None = Field(None, max_length=256)
    store: bool | None = None
    metadata: dict[str, str] | None = None
    # Kept as the client sent them (upstreams receive them unchanged), checked for shape here.
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_response_format(value)
        return value

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None:
            check_tools(value)
        return value

    @field_validator("stop")
    @classmethod
    def _stop_limits(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        if self.top_logprobs is not None and self.logprobs is not True:
            raise ValueError("top_logprobs needs logprobs: true")
        if self.tool_choice is not None and not self.tools:
            raise ValueError("tool_choice is only allowed when tools are given")
        if isinstance(self.tool_choice, dict):
            name = (self.tool_choice.get("function") or {}).get("name")
            if self.tool_choice.get("type") != "function" or not isinstance(name, str):
                raise ValueError("tool_choice must be none, auto, required or {'type': 'function', 'function': "
                                 "{'name': ...}}")
            if name not in {(t.get("function") or {}).get("name") for t in self.tools or []}:
                raise ValueError(f"tool_choice names function {name}, which is not among the tools")
        return self

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
