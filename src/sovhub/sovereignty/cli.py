"""The sovereignty commands: users (export, erase), audit, access (list), retention, residency.

`users_group` is shared: the assistant adds `users create` to it by importing it from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import click

from ..cli import pass_hub
from ..hub import Hub
from ..operators import cli_actor

__all__ = ["add_commands", "users_group"]


@click.group("users")
def users_group() -> None:
    """People with an account: export and erase their data (data rights)."""


@users_group.command("export")
@click.argument("user")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the JSON here instead of stdout.")
@click.option("--actor", default=None,
              help="A name to record beside your OS account in the audit log (e.g. who you act for).")
@pass_hub
def users_export(hub: Hub, user: str, output: str | None, actor: str | None) -> None:
    """Export everything the hub holds about USER (id or email) as JSON."""
    from .rights import export_user, resolve_user

    user_id = resolve_user(hub, user)
    data = json.dumps(export_user(hub, user_id, actor=cli_actor(actor)), ensure_ascii=False, indent=2, default=str)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(data + "\n")
        click.echo(f"exported user {user_id} to {output}", err=True)
    else:
        click.echo(data)


@users_group.command("erase")
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--actor", default=None,
              help="A name to record beside your OS account in the audit log (e.g. who you act for).")
@pass_hub
def users_erase(hub: Hub, user: str, yes: bool, actor: str | None) -> None:
    """Erase USER (id or email): destroy their data key (crypto-shredding) and delete their rows."""
    from .rights import erase_user, resolve_user

    user_id = resolve_user(hub, user)
    if not yes:
        click.confirm(f"erase user {user_id} and all their data? this cannot be undone", abort=True)
    summary = erase_user(hub, user_id, actor=cli_actor(actor))
    click.echo(f"erased user {user_id}: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.items())))


# --- organizations: `orgs export` and `orgs erase` join the core's `orgs` group ---


def _org_id(hub: Hub, name: str) -> int:
    from sqlalchemy import select

    from ..store.tables import Organization

    with hub.db.session() as s:
        org_id = s.scalar(select(Organization.id).where(Organization.name == name))
    if org_id is None:
        raise click.ClickException(f"no organization {name!r} (sovhub orgs list)")
    return int(org_id)


@click.command("export")
@click.argument("name")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the JSON here instead of stdout.")
@click.option("--actor", default=None,
              help="A name to record beside your OS account in the audit log (e.g. who you act for).")
@pass_hub
def orgs_export(hub: Hub, name: str, output: str | None, actor: str | None) -> None:
    """Export everything the hub holds for organization NAME (files, batches, usage) as JSON."""
    from .rights import export_org

    data = json.dumps(export_org(hub, _org_id(hub, name), actor=cli_actor(actor)), ensure_ascii=False, indent=2,
                      default=str)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(data + "\n")
        click.echo(f"exported organization {name} to {output}", err=True)
    else:
        click.echo(data)


@click.command("erase")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--actor", default=None,
              help="A name to record beside your OS account in the audit log (e.g. who you act for).")
@pass_hub
def orgs_erase(hub: Hub, name: str, yes: bool, actor: str | None) -> None:
    """Erase organization NAME: destroy its data key, delete its files, batches and keys, anonymise its usage."""
    from .rights import erase_org

    org_id = _org_id(hub, name)
    if not yes:
        click.confirm(f"erase organization {name} and all its data? this cannot be undone", abort=True)
    summary = erase_org(hub, org_id, actor=cli_actor(actor))
    click.echo(f"erased organization {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.items())))


# --- audit ---


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


@audit_group.command("verify")
@pass_hub
def audit_verify(hub: Hub) -> None:
    """Check the hash chain; exit 1 naming the first bad entry."""
    from .audit import verify

    checked, problem = verify(hub)
    if problem is not None:
        click.echo(f"audit chain BROKEN at entry {problem.seq}: {problem.reason} ({checked} entries intact before it)",
                   err=True)
        raise SystemExit(1)
    click.echo(f"audit chain intact: {checked} entries")


@audit_group.command("sign-head")
@click.option("--actor", default=None, help="A name to record beside your OS account in the audit log.")
@pass_hub
def audit_sign_head(hub: Hub, actor: str | None) -> None:
    """Sign the chain head with the Ed25519 key; anchor the printed JSON outside the hub."""
    from .audit import sign_head

    click.echo(json.dumps(sign_head(hub, actor=cli_actor(actor))))


@audit_group.command("verify-signature")
@click.argument("signed", type=click.File("r"))
@click.option("--public-key", "public_key", required=True,
              help="The pinned public key: 64 hex digits (`sovhub audit public-key`), or @FILE holding them or a PEM.")
@pass_hub
def audit_verify_signature(hub: Hub, signed: IO[str], public_key: str) -> None:
    """Check a signed head against the pinned key and walk the log up to it.

    SIGNED is the JSON `sign-head` printed, or the heads file (its last line is checked); '-' for stdin.
    The public key inside SIGNED is not trusted.
    """
    from pathlib import Path

    from .audit import load_public_key, verify_signature

    if public_key.startswith("@"):
        public_key = Path(public_key[1:]).read_text(encoding="utf-8")
    text = signed.read().strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:  # the heads file: one signed head a line, the newest last
            data = json.loads(text.splitlines()[-1])
        except (json.JSONDecodeError, IndexError) as exc:
            raise click.UsageError(f"SIGNED is not a signed head (JSON): {exc}") from exc
    if not isinstance(data, dict):
        raise click.UsageError("SIGNED is not a signed head (a JSON object)")
    checked = verify_signature(hub, data, load_public_key(public_key))
    click.echo(f"signature valid under the pinned key; entries 1..{data['seq']} intact ({checked} checked)")


@audit_group.command("public-key")
@pass_hub
def audit_public_key(hub: Hub) -> None:
    """Print the signing key's public half (hex): pin it outside the hub, for verify-signature."""
    from .audit import public_key_hex

    click.echo(public_key_hex(hub))


@audit_group.command("show")
@click.option("--last", default=20, type=click.IntRange(1, 10_000), help="How many entries.")
@pass_hub
def audit_show(hub: Hub, last: int) -> None:
    """Print the newest entries."""
    from sqlalchemy import select

    from .tables import AuditEntry

    with hub.db.session() as s:
        rows = list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(last)))
    for r in reversed(rows):
        click.echo(f"{r.seq}\t{r.ts}\t{r.actor}\t{r.event}\t{r.subject or '-'}\t{r.data}")


# --- two-person rule ---


@click.group("access")
def access_group() -> None:
    """Staff access to a person's content (two-person rule): listed here, decided in the staff console.

    Requests, approvals and reads happen only at /admin/access, in two signed-in staff sessions:
    a name typed on a command line proves nobody's identity.
    """


@access_group.command("list")
@pass_hub
def access_list(hub: Hub) -> None:
    """List access requests (id, person, status, requested by, decided by, expiry, hold, reason)."""
    from .staff_access import list_requests

    for r in list_requests(hub):
        click.echo(f"{r.id}\tuser:{r.user_id}\t{r.status}\t{r.requested_by}\t{r.decided_by or '-'}\t"
                   f"{r.expires_at.isoformat() if r.expires_at else '-'}\t{'legal-hold' if r.legal_hold else ''}\t"
                   f"{r.reason}")


# --- retention ---


@click.group("retention")
def retention_group() -> None:
    """How long conversation content is kept."""


@retention_group.command("purge")
@pass_hub
def retention_purge(hub: Hub) -> None:
    """Delete content past its retention now (the server also does this periodically)."""
    from .content_store import purge_expired

    click.echo(f"purged {purge_expired(hub, actor='cli')} conversations")


@retention_group.command("set")
@click.argument("org")
@click.argument("days", type=int, required=False)
@click.option("--default", "use_default", is_flag=True, help="Return ORG to the default retention.")
@pass_hub
def retention_set(hub: Hub, org: str, days: int | None, use_default: bool) -> None:
    """Set ORG's retention to DAYS (0 = zero retention: no content stored)."""
    from .content_store import set_retention

    if days is None and not use_default:
        raise click.UsageError("give DAYS or --default")
    set_retention(hub, org, None if use_default else days)
    click.echo(f"retention of {org}: {'default' if use_default else f'{days} days'}")


# --- residency ---


@click.group("residency")
def residency_group() -> None:
    """Where requests may be processed."""


@residency_group.command("show")
@pass_hub
def residency_show(hub: Hub) -> None:
    """Show the home and allowed jurisdictions, and which backends comply."""
    from ..backends.catalog import backend_configs
    from .residency import allowed_jurisdictions, is_compliant

    allowed = allowed_jurisdictions(hub.settings)
    click.echo(f"home: {hub.settings.sovereignty.jurisdiction}\tallowed: {', '.join(sorted(allowed))}")
    for c in backend_configs(hub):
        state = "compliant" if is_compliant(c.jurisdiction, allowed) else "NOT COMPLIANT (never used)"
        click.echo(f"{c.name}\t{c.jurisdiction or '-'}\t{c.operator or '-'}\t{state}")


# --- master key ---


@click.command("rotate-master")
@pass_hub
def rotate_master(hub: Hub) -> None:
    """Re-wrap every data key under a new master key (content is not re-encrypted)."""
    from .keys import rotate_master_key

    click.echo(rotate_master_key(hub))


# --- backup and restore ---


@click.command("backup")
@click.option("--database-to", required=True, type=click.Path(file_okay=False),
              help="Where the database half goes (a directory; a new sovhub-ID-database folder is made in it).")
@click.option("--keys-to", required=True, type=click.Path(file_okay=False),
              help="Where the key half goes: another place, another custodian (a sovhub-ID-keys folder).")
@pass_hub
def backup_command(hub: Hub, database_to: str, keys_to: str) -> None:
    """Back up the database and the key material, apart: neither half opens content alone."""
    from .backup import backup

    result = backup(hub, Path(database_to), Path(keys_to))
    click.echo(f"backup {result.backup_id}: {sum(result.tables.values())} rows in {result.database_dir}, "
               f"{result.key_files} key files in {result.keys_dir}")


@click.command("restore")
@click.option("--database-from", required=True, type=click.Path(file_okay=False, exists=True),
              help="The backup's sovhub-ID-database folder.")
@click.option("--keys-from", required=True, type=click.Path(file_okay=False, exists=True),
              help="The backup's sovhub-ID-keys folder (or a newer key backup).")
@click.option("--erasures", "journals", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="A copy of the erasure journal kept elsewhere (repeat); its erasures are re-applied too.")
@click.pass_context
def restore_command(ctx: click.Context, database_from: str, keys_from: str, journals: tuple[str, ...]) -> None:
    """Restore a backup onto a fresh instance; every erasure recorded since is applied again."""
    from ..cli import HubContext
    from .backup import restore

    obj = ctx.find_object(HubContext)
    assert obj is not None
    result = restore(obj.settings(), Path(database_from), Path(keys_from), journals=[Path(j) for j in journals])
    click.echo(f"restored backup {result.backup_id}: {result.rows} rows, audit chain intact "
               f"({result.audit_entries} entries); erasures re-applied: {len(result.erasures_reapplied)} "
               f"of {result.journal_entries} in the journals")


def add_commands(cli: click.Group) -> None:
    for command in (backup_command, restore_command):
        if command.name not in cli.commands:
            cli.add_command(command)
    for group in (users_group, audit_group, access_group, retention_group, residency_group):
        if group.name not in cli.commands:
            cli.add_command(group)
    orgs = cli.commands.get("orgs")
    if isinstance(orgs, click.Group):
        for command in (orgs_export, orgs_erase):
            if command.name not in orgs.commands:
                orgs.add_command(command)
    keys = cli.commands.get("keys")
    if isinstance(keys, click.Group) and "rotate-master" not in keys.commands:
        keys.add_command(rotate_master)
