"""Up-front validation of a batch's input file, line by line, with errors as OpenAI reports them.

Any invalid line fails the whole batch (as OpenAI does): nothing runs, and ``errors`` lists each
problem with its line number (1-based), code and param, at most :data:`MAX_ERRORS` of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ..api.chat.protocol import ChatCompletionRequest
from ..api.embeddings.protocol import CreateEmbeddingRequest
from ..api.moderations.protocol import ModerationRequest
from ..api.moderations.service import MODEL_ID as MODERATION_MODEL

__all__ = ["ENDPOINTS", "MAX_ERRORS", "ParsedLine", "Validation", "validate_input"]

#: The endpoints a batch may target, with the wire model each line's body must fit.
ENDPOINTS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/embeddings": CreateEmbeddingRequest,
    "/v1/moderations": ModerationRequest,
}
MAX_ERRORS = 100
MAX_CUSTOM_ID = 512


@dataclass(slots=True)
class ParsedLine:
    line_no: int
    custom_id: str
    body: dict[str, Any]


@dataclass
class Validation:
    lines: list[ParsedLine] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None

    def error(self, code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


def validate_input(data: bytes, endpoint: str, max_lines: int,
                   check_model: Callable[[str], tuple[str, str] | None]) -> Validation:
    """Parse and check every line; `check_model(model)` returns (code, message) when the organization may not
    use the model (unknown, residency, tier), None when it may."""
    result = Validation()
    wire = ENDPOINTS[endpoint]
    seen: set[str] = set()
    models_checked: dict[str, tuple[str, str] | None] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        result.error("invalid_file_encoding", "The input file is not UTF-8 encoded text.", None)
        return result
    raw_lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not raw_lines:
        result.error("empty_file", "The input file contains no requests.", None)
        return result
    if len(raw_lines) > max_lines:
        result.error("too_many_requests", f"The input file has {len(raw_lines)} requests; a batch holds at most "
                     f"{max_lines}.", None)
        return result
    for n, line in raw_lines:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            result.error("invalid_json_line", "This line is not parseable as valid JSON.", n)
            continue
        if not isinstance(item, dict):
            result.error("invalid_json_line", "This line is not a JSON object.", n)
            continue
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            result.error("missing_required_parameter", "Each request needs a custom_id (a string).", n, "custom_id")
            continue
        if len(custom_id) > MAX_CUSTOM_ID:
            result.error("invalid_custom_id", f"custom_id is longer than {MAX_CUSTOM_ID} characters.", n, "custom_id")
            continue
        if custom_id in seen:
            result.error("duplicate_custom_id", f"The custom_id {custom_id!r} is used by an earlier line; each "
                         "request in a batch needs a unique custom_id.", n, "custom_id")
            continue
        seen.add(custom_id)
        if item.get("method") != "POST":
            result.error("invalid_method", "Only the POST method is supported for batch requests.", n, "method")
            continue
        if item.get("url") != endpoint:
            result.error("invalid_url", f"The url {item.get('url')!r} does not match the batch's endpoint "
                         f"{endpoint}.", n, "url")
            continue
        body = item.get("body")
        if not isinstance(body, dict):
            result.error("missing_required_parameter", "Each request needs a body (a JSON object).", n, "body")
            continue
        try:
            wire.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            param = f"body.{where}" if where else "body"
            result.error("invalid_request", f"{param}: {first.get('msg')}", n, param)
            continue
        if body.get("stream"):
            result.error("invalid_request", "Batch requests cannot stream; leave `stream` out.", n, "body.stream")
            continue
        model = str(body.get("model") or (MODERATION_MODEL if endpoint == "/v1/moderations" else ""))
        if result.model is None:
            result.model = model
        elif model != result.model:
            result.error("mismatched_model", f"The model {model!r} differs from the batch's model {result.model!r}; "
                         "every request in a batch uses the same model.", n, "body.model")
            continue
        if model not in models_checked:
            models_checked[model] = check_model(model)
        refused = models_checked[model]
        if refused is not None:
            result.error(refused[0], refused[1], n, "body.model")
            continue
        result.lines.append(ParsedLine(n, custom_id, body))
    return result
