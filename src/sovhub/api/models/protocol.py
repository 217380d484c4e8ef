"""Wire models for /v1/models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = ["ListModelsResponse", "Model"]


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ListModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
