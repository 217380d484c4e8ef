"""`sovhub users create|set-password|staff`: local accounts for the web app (argon2id).

A changed password and lost staff rights end every session of the person at once
(:func:`sovhub.access.session_store.revoke_user_sessions`): whoever signed in with the old
password, or as staff, is signed out on every replica from their next request.
"""

from __future__ import annotations

import sys

import click

from ...access.session_store import revoke_user_sessions
from ...cli import pass_hub
from ...errors import Conflict, InvalidRequest, NotFound
from ...hub import Hub
from ...operators import cli_actor
from ...store.tables import User
from ...users import normalize_email, user_by_email
from .passwords import MIN_LENGTH, hash_password

__all__ = ["create_user", "set_password", "set_staff", "users_create", "users_set_password", "users_staff"]


def _check_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_LENGTH} characters", param="password")


def create_user(
    hub: Hub, email: str, password: str, *, display_name: str | None = None, staff: bool = False,
    locale: str | None = None, actor: str = "cli",
) -> int:
    """Create a local account; the e-mail is stored normalised, the password only as an argon2id hash."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidRequest(f"{email!r} is not an e-mail address", param="email")
    _check_password(password)
    with hub.db.session() as s:
        if user_by_email(s, email) is not None:
            raise Conflict(f"an account for {email} already exists")
        user = User(email=email, display_name=display_name, password_hash=hash_password(password),
                    is_staff=staff, locale=locale)
        s.add(user)
        s.flush()
        user_id = user.id
    hub.emit("user.created", actor=actor, subject=f"user:{user_id}", staff=staff)
    return user_id


def _find(hub: Hub, email: str) -> int:
    with hub.db.session() as s:
        user = user_by_email(s, email)
        if user is None:
            raise NotFound(f"no user with e-mail {email.strip()!r}")
        return user.id


def set_password(hub: Hub, user_id: int, password: str, *, actor: str = "cli") -> int:
    """Replace the password; every session of the person ends. Returns how many sessions ended."""
    _check_password(password)
    with hub.db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        user.password_hash = hash_password(password)
    ended = revoke_user_sessions(hub, user_id, "password_changed")
    hub.emit("user.password_changed", actor=actor, subject=f"user:{user_id}", sessions_ended=ended)
    return ended


def set_staff(hub: Hub, user_id: int, staff: bool, *, actor: str = "cli") -> int:
    """Grant or withdraw staff rights; withdrawing ends every session of the person. Sessions ended."""
    with hub.db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        was = user.is_staff
        user.is_staff = staff
    ended = revoke_user_sessions(hub, user_id, "staff_withdrawn") if was and not staff else 0
    if was != staff:
        hub.emit("user.staff_granted" if staff else "user.staff_withdrawn", actor=actor, subject=f"user:{user_id}",
                 sessions_ended=ended)
    return ended


@click.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True,
              help="Read the password from standard input (never from the command line, where `ps` shows it).")
@click.option("--name", "display_name", default=None, help="The name shown in the web app.")
@click.option("--staff", is_flag=True, help="Give the account access to the admin area.")
@click.option("--locale", default=None, help="Preferred UI language (en, uk, pl, de, fr, es, ar, ja).")
@pass_hub
def users_create(
    hub: Hub, email: str, password_stdin: bool, display_name: str | None, staff: bool, locale: str | None
) -> None:
    """Create a local account that signs in to the web app with a password."""
    password = sys.stdin.readline().rstrip("\r\n")
    user_id = create_user(hub, email, password, display_name=display_name, staff=staff, locale=locale,
                          actor=cli_actor())
    click.echo(f"created user {user_id} ({normalize_email(email)}){' staff' if staff else ''}")


@click.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True,
              help="Read the new password from standard input (never from the command line).")
@click.option("--actor", default=None,
              help="A name to record beside your OS account in the audit log (e.g. who you act for).")
@pass_hub
def users_set_password(hub: Hub, email: str, password_stdin: bool, actor: str | None) -> None:
    """Replace the password of EMAIL; every session of that person ends."""
    user_id = _find(hub, email)
    ended = set_password(hub, user_id, sys.stdin.readline().rstrip("\r\n"), actor=cli_actor(actor))
    click.echo(f"password of user {user_id} changed; {ended} session(s) ended")


@click.command("staff")
@click.argument("email")
@click.option("--grant/--withdraw", "grant", required=True, help="Give or take away the admin area.")
@click.option("--actor", default=None,
              help="A name to record beside your OS account in the audit log (e.g. who you act for).")
@pass_hub
def users_staff(hub: Hub, email: str, grant: bool, actor: str | None) -> None:
    """Grant or withdraw the staff rights of EMAIL; withdrawing ends every session of that person."""
    user_id = _find(hub, email)
    ended = set_staff(hub, user_id, grant, actor=cli_actor(actor))
    state = "granted" if grant else f"withdrawn; {ended} session(s) ended"
    click.echo(f"staff rights of user {user_id} {state}")
