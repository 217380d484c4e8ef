"""Wire models of POST /hub/v1/pii."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PiiEntityOut", "PiiRequest", "PiiResponse"]

MAX_INPUT_CHARS = 100_000


class PiiRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(max_length=MAX_INPUT_CHARS, description="Text to scan for personal data.")
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
