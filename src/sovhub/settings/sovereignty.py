"""Settings of residency, encryption at rest, retention and audit (``[sovereignty]``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from ..jurisdictions import known_jurisdictions

__all__ = ["SovereigntySettings"]


class SovereigntySettings(BaseModel):
    """Residency, encryption at rest, retention and audit."""

    jurisdiction: str = Field("EU", description="Home jurisdiction: ISO 3166-1 alpha-2 code (or EU).")
    allowed_jurisdictions: list[str] = Field(
        default_factory=list, description="Jurisdictions requests may be routed to; empty means home only."
    )
    master_key_file: str = Field("master.key", description="Master key file, relative to the data dir.")
    master_key: str | None = Field(None, description="Base64 master key; overrides the key file when set.")
    key_store_dir: str = Field(
        "keystore", description="Directory of per-person key-encryption keys (outside the database), relative to "
        "the data dir; erasure deletes the person's file. Replicas must share it."
    )
    erasure_journal_file: str | None = Field(
        None, description="Append-only journal of erasures (user ids only), outside the database, that `sovhub "
        "restore` re-applies; relative to the data dir. Unset: erasures.jsonl in the key store directory. "
        "Replicas must share it."
    )
    retention_days: int = Field(30, ge=0, description="Default days conversation content is kept (0 = none).")
    audit_signing_key_file: str = Field(
        "audit-ed25519.key", description="Ed25519 key that signs the audit chain head."
    )
    audit_sign_interval_s: float = Field(
        3600.0, ge=0, description="Seconds between automatic signatures of the audit chain head while serving "
        "(only when the chain grew); 0 turns the automatic signer off."
    )
    audit_signed_heads_file: str = Field(
        "audit-heads.jsonl", description="File, relative to the data dir, each signed head is appended to (one JSON "
        "object a line, also logged): ship it off the host to anchor the chain."
    )
    key_provider: str = Field(
        "file",
        description="Master key provider: 'file', 'env' (master_key), or 'module:factory' for an HSM/Vault plugin.",
    )
    store_api_content: bool = Field(
        True, description="Keep API prompts/completions (encrypted) for the retention period; usage is always kept."
    )
    purge_interval_s: float = Field(3600.0, gt=0, description="Seconds between retention purges while serving.")
    content_flush_interval_s: float = Field(
        0.05, gt=0, description="Seconds between batched writes of stored conversation content (small, frequent "
        "batches keep each write short)."
    )
    access_grant_hours: float = Field(
        24.0, gt=0, le=720, description="Hours an approved staff access to a person's content lasts."
    )
    policy_version: str = Field(
        "1", description="Version of the data-protection policy in force, shown on the transparency report."
    )

    @field_validator("jurisdiction")
    @classmethod
    def _known_home(cls, value: str) -> str:
        code = value.strip().upper()
        if code not in known_jurisdictions():
            raise ValueError(f"unknown jurisdiction {value!r}: use an ISO 3166-1 alpha-2 code such as UA (or EU)")
        return code

    @field_validator("allowed_jurisdictions")
    @classmethod
    def _known_allowed(cls, values: list[str]) -> list[str]:
        codes = [v.strip().upper() for v in values]
        bad = [v for v, c in zip(values, codes, strict=True) if c not in known_jurisdictions()]
        if bad:
            raise ValueError(f"unknown jurisdiction code(s) {bad}: use ISO 3166-1 alpha-2 codes (or EU)")
        return codes
