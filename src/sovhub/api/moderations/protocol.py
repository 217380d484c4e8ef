"""Wire models for /v1/moderations, named as in OpenAI's spec."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CreateModerationResponse", "Moderation", "ModerationRequest"]


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Checked by the service, not by pydantic, so bad input gets OpenAI's 400 with param="input".
    input: Any = Field(
        description="A string, an array of strings, or an array of {type: text, text} objects.",
        json_schema_extra={"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    )
    model: str | None = Field(None, max_length=256, description="Accepted for compatibility; one model serves.")
    lang: str | None = Field(None, max_length=35, description="sovhub extension: a BCP 47 language hint.")


class Moderation(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]
    hazard_codes: list[str] = Field(description="sovhub extension: the MLCommons hazard codes (S1..S14).")


class CreateModerationResponse(BaseModel):
    id: str
    model: str
    results: list[Moderation]
