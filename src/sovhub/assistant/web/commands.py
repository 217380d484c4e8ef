"""`sovhub users create EMAIL --password-stdin`: local accounts for the web app (argon2id)."""

from __future__ import annotations

import sys

import click
from sqlalchemy import func, select

from ...cli import pass_hub
from ...errors import Conflict, InvalidRequest
from ...hub import Hub
from ...store.tables import User
from .passwords import MIN_LENGTH, hash_password

__all__ = ["create_user", "users_create"]


def create_user(
    hub: Hub, email: str, password: str, *, display_name: str | None = None, staff: bool = False,
    locale: str | None = None, actor: str = "cli",
) -> int:
    """Create a local account; the password is stored only as an argon2id hash."""
    email = email.strip()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidRequest(f"{email!r} is not an e-mail address", param="email")
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_LENGTH} characters", param="password")
    with hub.db.session() as s:
        if s.scalar(select(User.id).where(func.lower(User.email) == email.casefold())) is not None:
            raise Conflict(f"an account for {email} already exists")
        user = User(email=email, display_name=display_name, password_hash=hash_password(password),
                    is_staff=staff, locale=locale)
        s.add(user)
        s.flush()
        user_id = user.id
    hub.emit("user.created", actor=actor, subject=f"user:{user_id}", staff=staff)
    return user_id


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
    user_id = create_user(hub, email, password, display_name=display_name, staff=staff, locale=locale)
    click.echo(f"created user {user_id} ({email}){' staff' if staff else ''}")
