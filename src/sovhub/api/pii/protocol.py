"""Wire models of POST /hub/v1/pii."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PiiEntityOut", "PiiRequest", "PiiResponse"]


class PiiRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Its length is checked by the service against safety.max_input_chars (OpenAI-shaped 400, param "input").
    input: str = Field(description="Text to scan for personal data.")
    mode: Literal["mask", "hash", "pseudonymize"] | None = Field(
        None, description="How to redact; the policy's PII mode when unset."
    )


class PiiEntityOut(BaseModel):
    type: str
    start: int
    end: int
    score: float


class PiiResponse(BaseModel):
    object: Literal["pii.analysis"] = "pii.analysis"
    mode: str
    entities: list[PiiEntityOut]
    redacted: str
