"""Settings of the Files API (``[files]``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["FilesSettings"]


class FilesSettings(BaseModel):
    """The Files API (/v1/files): uploads kept encrypted in the database, shared by every replica."""

    max_bytes: int = Field(200 * 1024 * 1024, ge=1024, description="Largest file one upload may hold, in bytes.")
    batch_expiry_days: float = Field(
        30.0, gt=0, le=30, description="Days a file uploaded with purpose `batch` is kept unless expires_after says."
    )
    chunk_bytes: int = Field(
        1024 * 1024, ge=4096, le=16 * 1024 * 1024, description="Bytes encrypted and stored per database row."
    )
    purge_interval_s: float = Field(600.0, gt=0, description="Seconds between deletions of expired files.")
    max_org_bytes: int = Field(
        10 * 1024**3, ge=1024, description="Most bytes of files one organization may keep at once (all purposes)."
    )
