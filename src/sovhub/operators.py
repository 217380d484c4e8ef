"""Who ran a CLI command, for the audit log: the operating-system account, not a typed name.

The OS account is the identity the host authenticated (a login, an SSH key); it is read from the
process's real user id, not from ``$USER`` or ``$LOGNAME``, which the caller sets at will. A
name given with ``--actor`` is kept beside it as what the operator says of themselves (a ticket,
a colleague they act for), never instead of it: ``cli:alice as Jane Roe``. Under ``sudo`` the
invoking account is recorded too: ``cli:root (sudo from alice)``.
"""

from __future__ import annotations

import getpass
import os

__all__ = ["cli_actor", "os_account"]

_MAX_CLAIM = 120


def os_account() -> str:
    """The account of the process's real user id (its number when it has no name)."""
    try:
        import pwd

        uid = os.getuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
    except (ImportError, AttributeError):  # no POSIX accounts (Windows)
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "unknown"
    invoker = os.environ.get("SUDO_USER")
    if invoker and invoker != name and name == "root":
        return f"{name} (sudo from {invoker})"
    return name


def cli_actor(claimed: str | None = None) -> str:
    """The audit actor of a CLI command: ``cli:<os account>``, and ``as <claimed>`` when a name was typed."""
    actor = f"cli:{os_account()}"
    claim = " ".join((claimed or "").split())[:_MAX_CLAIM]
    return f"{actor} as {claim}" if claim else actor
