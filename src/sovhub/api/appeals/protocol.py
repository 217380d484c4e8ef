"""Wire models of /hub/v1/appeals."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AppealCreate", "AppealObject"]


class AppealCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: str = Field(max_length=40, description="The decision_id returned with the block.")
    reason: str = Field(max_length=4000, description="Why the decision is wrong, in your words.")
    content: str | None = Field(
        None, max_length=32_000, description="The blocked text, kept for the reviewer only with consent."
    )
    consent_to_store_content: bool = Field(False, description="Consent to keep `content` with the appeal.")


class AppealObject(BaseModel):
    id: str
    object: Literal["appeal"] = "appeal"
    decision_id: str
    status: Literal["filed", "upheld", "overturned"]
    reason: str
    categories: list[str]
    policy_version: str
    action: str
    created_at: int
    decided_at: int | None
    decision_reason: str | None
