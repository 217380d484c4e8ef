"""The hub's secrets kept in the data dir: the secret key and the metrics token.

The secret key signs session cookies, CSRF and sign-in state and keys the PII hashes; the
metrics token is the bearer token `/metrics` asks for. Neither has a built-in default: a public
default lets any visitor forge a staff session (or read the hub's traffic figures). When the
operator sets none (``SOVHUB_SECRET_KEY`` / ``SOVHUB_METRICS_TOKEN`` or the same names in
sovhub.toml), the hub reads ``<data_dir>/secret_key`` (``<data_dir>/metrics_token``), writing a
random 384-bit one there (mode 0600) the first time, so ``sovhub init`` and every later ``serve``
of that data dir agree. Replicas share one by setting it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "METRICS_TOKEN_FILE",
    "MIN_SECRET_KEY_LENGTH",
    "SECRET_KEY_FILE",
    "load_or_create_secret_key",
    "weak_secret_reason",
]

SECRET_KEY_FILE = "secret_key"
METRICS_TOKEN_FILE = "metrics_token"
MIN_SECRET_KEY_LENGTH = 32
# Values seen in defaults, templates and tutorials: refused in every environment.
_KNOWN_SECRETS = frozenset(
    {"dev-insecure-secret", "changeme", "change-me", "secret", "secret_key", "password", "sovhub", "development"}
)


def weak_secret_reason(value: str) -> str | None:
    """Why `value` may not sign sessions, or None when it may."""
    if value.strip().lower() in _KNOWN_SECRETS:
        return "is a published default; set a random one (or unset it: the hub then writes one to the data dir)"
    if len(value) < MIN_SECRET_KEY_LENGTH:
        return f"is shorter than {MIN_SECRET_KEY_LENGTH} characters"
    if len(set(value)) < 8:
        return "has too few distinct characters to be random"
    return None


def load_or_create_secret_key(data_dir: Path, name: str = SECRET_KEY_FILE) -> str:
    """The secret in `data_dir`/`name`, created (0600, atomically) when absent."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then linked into place: link fails when the file
        # exists, so a second process of this data dir never reads a half-written key and both
        # end up with the first one's.
        draft = data_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    value = path.read_text(encoding="ascii").strip()
    reason = weak_secret_reason(value)
    if reason is not None:
        raise ConfigError(f"{path}: the secret {reason}")
    return value
