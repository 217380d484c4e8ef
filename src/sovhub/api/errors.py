"""The one place errors become HTTP responses.

Under `/v1` (and everywhere JSON is expected) the body is OpenAI's envelope
`{"error": {"message", "type", "param", "code"}}`; the same shape is used under `/hub/v1`, so a
client needs to know one shape. Unexpected exceptions become a 500 with the request id and no
stack trace (it goes to the log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InvalidRequest, NotFound, SovhubError

__all__ = ["error_response", "install_error_handlers"]

log = logging.getLogger("sovhub.api")


def error_response(exc: SovhubError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers or None)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first: dict[str, Any] = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{param}: {msg}{more}" if param else f"{msg}{more}"), param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SovhubError)
    async def _sovhub(request: Request, exc: SovhubError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %s", exc.message, extra={"status": exc.status, "code": exc.code})
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(InvalidRequest(message, param=param, code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(NotFound(f"no route {request.method} {request.url.path}"))
        err = SovhubError(str(exc.detail), code=f"http_{exc.status_code}")
        err.status = exc.status_code
        err.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return error_response(err)
