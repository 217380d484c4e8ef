"""Settings of verified access, quotas and identity providers (``[access]``, ``[access.idps.NAME]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ..access.addresses import parse_networks

__all__ = ["IdentityProviderSettings", "AccessSettings"]


Assurance = Literal["low", "substantial", "high"]


def _default_acr_levels() -> dict[str, Assurance]:
    return {
        "http://eidas.europa.eu/LoA/low": "low",
        "http://eidas.europa.eu/LoA/substantial": "substantial",
        "http://eidas.europa.eu/LoA/high": "high",
    }


class IdentityProviderSettings(BaseModel):
    """One OpenID Connect identity provider (a national eID scheme), under [access.idps.NAME]."""

    issuer: str = Field(description="Issuer URL; discovery is read from ISSUER/.well-known/openid-configuration.")
    client_id: str = Field(description="Client id registered at the provider.")
    client_secret: str | None = Field(None, description="Client secret (client_secret_post); none for public clients.")
    display_name: str | None = Field(None, description="Name shown on the sign-in button.")
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile"], description="Scopes requested at sign-in."
    )
    acr_levels: dict[str, Assurance] = Field(
        default_factory=_default_acr_levels,
        description="Maps the provider's `acr` values to eIDAS assurance levels; unknown values count as none.",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "PS256", "ES256"], description="ID-token signature algorithms accepted."
    )
    extra_hosts: list[str] = Field(
        default_factory=list, description="Hosts besides the issuer's that discovery points to (token, JWKS)."
    )
    person_id_claim: str | None = Field(
        None, description="ID-token claim holding the national person identifier (eIDAS: `person_identifier`); "
        "verification matches it against the registry's representative identifier.",
    )


class AccessSettings(BaseModel):
    """Verified access, quotas and identity providers."""

    redis_url: str | None = Field(
        None, description="Redis URL for quotas shared across replicas (exact); in-process counters when unset."
    )
    redis_prefix: str = Field("sovhub:rl:", description="Prefix of the Redis keys the rate limiter uses.")
    idps: dict[str, IdentityProviderSettings] = Field(
        default_factory=dict, description="OpenID Connect identity providers by short name ([access.idps.NAME])."
    )
    public_url: str | None = Field(
        None, description="External base URL (https://hub.example); redirect URIs use it. Request URL when unset."
    )
    trust_forwarded_proto: bool = Field(
        False, description="Honour X-Forwarded-Proto (set only behind a TLS-terminating proxy you run)."
    )
    session_cookie: str = Field("sovhub_session", description="Name of the signed session cookie.")
    session_max_age_s: int = Field(8 * 3600, ge=60, description="Seconds a sign-in lasts.")
    oidc_clock_skew_s: int = Field(60, ge=0, description="Leeway in seconds for ID-token exp/iat checks.")
    oidc_login_timeout_s: int = Field(600, ge=30, description="Seconds a started eID sign-in may take.")
    jwks_min_refresh_s: float = Field(
        60.0, ge=0, description="Least seconds between JWKS refetches on an unknown key id (key rotation)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IP or CIDR) whose X-Forwarded-For names the client; others' is ignored.",
    )
    login_max_failures: int = Field(
        5, ge=1, description="Sign-in guesses per account from one client address before that pair is locked."
    )
    login_max_failures_per_account: int = Field(
        20, ge=1, description="Sign-in guesses per account from all addresses together before it is locked."
    )
    login_max_failures_per_address: int = Field(
        50, ge=1, description="Sign-in guesses from one client address, all accounts together, before it is locked."
    )
    login_window_s: int = Field(900, ge=1, description="Seconds over which sign-in guesses are counted.")
    login_lockout_s: int = Field(900, ge=1, description="Seconds a throttled key must wait.")
    registry_file: str | None = Field(
        None, description="Company registry file (CSV or JSON) for verification, relative to the data dir."
    )
    verification_cooldown_days: int = Field(
        90, ge=0, description="Days after verifying one organization before the same person may verify another."
    )
    org_limits: dict[str, int] = Field(
        default_factory=dict, description="Default per-organization limits (rpm, tpm, rpd, tpd, budget_month...)."
    )
    tier_limits: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Per-organization limits for each model tier, e.g. {verified = {rpm = 60}}."
    )
    user_limits: dict[str, int] = Field(
        default_factory=lambda: {"rpm": 20, "rpd": 500, "tpd": 200_000},
        description="Per-person limits of web-assistant users (signed in, no API key), counted per person; "
        "an empty table turns them off.",
    )
    default_max_tokens: int = Field(
        4096, ge=1, description="max_tokens sent to upstream backends when a request sets none; admission "
        "reserves max_tokens x n tokens before a request runs."
    )
    max_n: int = Field(8, ge=1, le=128, description="Most choices (n) one chat request may ask for; 400 beyond.")
    state_refresh_s: float = Field(
        5.0, gt=0, description="Seconds between reloads of tiers, verification and org limits in each replica."
    )
    credits_required: bool = Field(
        False, description="Every organization pays for requests with credits (docs/credits.md); otherwise only "
        "organizations that hold at least one grant do."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(tuple(value))
        return value
