"""Wire models for /v1/batches, named as in OpenAI's spec."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BatchFileExpirationAfter", "CreateBatchRequest"]


class BatchFileExpirationAfter(BaseModel):
    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class CreateBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(max_length=40)
    endpoint: str = Field(max_length=40, description="/v1/chat/completions, /v1/embeddings or /v1/moderations.")
    completion_window: str = Field(max_length=8, description="Only `24h`.")
    metadata: dict[str, str] | None = None
    output_expires_after: BatchFileExpirationAfter | None = None
