"""The one error tree of sovhub.

Every error the hub raises on purpose is a :class:`SovhubError`. Each class
carries its HTTP ``status``, OpenAI's error ``type`` and a default ``code``;
one handler (:mod:`sovhub.api.errors`) renders them, in OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}``.

    SovhubError                       500  server_error
    ├── ConfigError                   500  (start-up / CLI: bad settings, missing files)
    ├── InvalidRequest                400  invalid_request_error
    │   ├── UnsupportedParameter      400  code=unsupported_parameter
    │   ├── ContextLengthExceeded     400  code=context_length_exceeded (param=messages)
    │   └── ValidationFailed          422  code=validation_error
    ├── AuthenticationFailed          401  code=invalid_api_key
    ├── PermissionDenied              403  permission_error
    │   ├── ResidencyViolation        403  code=residency_violation
    │   ├── EgressRefused             403  code=egress_refused
    │   ├── OrganizationNotVerified   403  code=organization_not_verified
    │   ├── InsufficientScope         403  code=insufficient_scope
    │   └── ContentBlocked            403  code=content_policy_violation
    ├── NotFound                      404  not_found_error
    │   └── ModelNotFound             404  code=model_not_found
    ├── Conflict                      409  code=conflict
    ├── PayloadTooLarge               413  code=payload_too_large
    ├── RateLimited                   429  rate_limit_error (carries retry_after)
    ├── InsufficientQuota             429  insufficient_quota (out of credits; clients must not retry)
    ├── UpstreamFailed                502  code=upstream_error
    ├── WorkLost                      503  code=work_lost (a batch process died mid-line: the line is retried;
    │                                      not a BackendUnavailable, so the backend is not marked down)
    └── BackendUnavailable            503  code=backend_unavailable (carries Retry-After)
        └── ShuttingDown              503  code=shutting_down (the replica's drain ended the answer)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationFailed",
    "BackendUnavailable",
    "ConfigError",
    "Conflict",
    "EgressRefused",
    "ContentBlocked",
    "ContextLengthExceeded",
    "InsufficientQuota",
    "InsufficientScope",
    "InvalidRequest",
    "ModelNotFound",
    "NotFound",
    "OrganizationNotVerified",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ResidencyViolation",
    "ShuttingDown",
    "SovhubError",
    "UnsupportedParameter",
    "UpstreamFailed",
    "ValidationFailed",
    "WorkLost",
]


class SovhubError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        body.update(self.extra)
        return {"error": body}


class ConfigError(SovhubError):
    code = "config_error"


class InvalidRequest(SovhubError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    """The request's own messages (with the answer's budget) do not fit the model's window."""

    code = "context_length_exceeded"


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"


class ValidationFailed(InvalidRequest):
    status = 422
    code = "validation_error"


class AuthenticationFailed(SovhubError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(SovhubError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ResidencyViolation(PermissionDenied):
    code = "residency_violation"


class EgressRefused(PermissionDenied):
    code = "egress_refused"


class OrganizationNotVerified(PermissionDenied):
    code = "organization_not_verified"


class InsufficientScope(PermissionDenied):
    """The API key lacks a scope the action needs, or asked for more than its creator holds."""

    code = "insufficient_scope"


class ContentBlocked(PermissionDenied):
    code = "content_policy_violation"


class NotFound(SovhubError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class ModelNotFound(NotFound):
    type = "invalid_request_error"
    code = "model_not_found"


class Conflict(SovhubError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(SovhubError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(SovhubError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.headers.setdefault("retry-after", str(max(1, int(retry_after + 0.999))))


class InsufficientQuota(SovhubError):
    """Out of credits: OpenAI's own shape, which its SDKs raise as a quota error and do not retry."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # The openai SDKs retry a 429 unless the server says not to.
        self.headers.setdefault("x-should-retry", "false")


class UpstreamFailed(SovhubError):
    status = 502
    type = "server_error"
    code = "upstream_error"


class WorkLost(SovhubError):
    """The process doing this work died under it (the embedded model's batch process): try again."""

    status = 503
    type = "server_error"
    code = "work_lost"


class BackendUnavailable(SovhubError):
    """No backend can answer now; clients (and load balancers) are told when to try again."""

    status = 503
    type = "server_error"
    code = "backend_unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.headers.setdefault("retry-after", str(max(1, int(retry_after + 0.999))))


class ShuttingDown(BackendUnavailable):
    code = "shutting_down"
