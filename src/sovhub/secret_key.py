"""The hub's secret key: signs session cookies, CSRF and sign-in state, keys the PII hashes.

There is no built-in default: a public default lets any visitor forge a staff session. When the
operator sets none (``SOVHUB_SECRET_KEY`` or ``secret_key`` in sovhub.toml), the hub reads
``<data_dir>/secret_key``, writing a random 384-bit one there (mode 0600) the first time, so
``sovhub init`` and every later ``serve`` of that data dir agree. Replicas share one by setting it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import ConfigError

__all__ = ["MIN_SECRET_KEY_LENGTH", "SECRET_KEY_FILE", "load_or_create_secret_key", "weak_secret_reason"]

SECRET_KEY_FILE = "secret_key"
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


def load_or_create_secret_key(data_dir: Path) -> str:
    """The secret in `data_dir`/secret_key, created (0600, atomically) when absent."""
    path = data_dir / SECRET_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then linked into place: link fails when the file
        # exists, so a second process of this data dir never reads a half-written key and both
        # end up with the first one's.
        draft = data_dir / f".{SECRET_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
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
        raise ConfigError(f"{path}: the secret key {reason}")
    return value
