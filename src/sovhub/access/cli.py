"""Staff commands added to the core `orgs`, `keys` and `models` groups."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from ..cli import pass_hub
from ..hub import Hub
from ..operators import cli_actor

__all__ = ["add_commands", "limit_changes", "limit_options"]


_LIMIT_OPTIONS = (
    ("--rpm", "Requests per minute."),
    ("--tpm", "Tokens per minute."),
    ("--rpd", "Requests per day."),
    ("--tpd", "Tokens per day."),
    ("--budget-day", "Token budget per UTC day."),
    ("--budget-week", "Token budget per ISO week."),
    ("--budget-month", "Token budget per month."),
)


def limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """The quota options shared by `orgs set-limits`, `keys set-limits` and `users set-limits` (one per field)."""
    for flag, help_text in reversed(_LIMIT_OPTIONS):
        command = click.option(flag, type=click.IntRange(min=0), default=None, help=help_text)(command)
    return command


def limit_changes(values: dict[str, int | None], clear: tuple[str, ...]) -> dict[str, int | None]:
    """The changes `limit_options` and `--clear` ask for: a value sets a limit, None clears it."""
    from .ratelimit import FIELDS

    changes: dict[str, int | None] = {k: v for k, v in values.items() if v is not None}
    if not changes and not clear:
        raise click.UsageError("give at least one limit to set (e.g. --rpm 60) or one to --clear")
    # `--clear budget-day` is spelled like the option; the limit's name is budget_day.
    named = [field.strip().replace("-", "_") for field in clear]
    cleared = list(FIELDS) if "all" in named else named
    # Setting and clearing one limit at once is ambiguous: refuse rather than guess which one was meant.
    both = sorted(set(changes) & set(cleared))
    if both:
        which = "all" if "all" in named else both[0]
        raise click.UsageError(f"--clear {which} contradicts --{both[0].replace('_', '-')}")
    changes.update({field: None for field in cleared})
    return changes


def _actor() -> str:
    # Who ran it, for the audit log: the OS account is the best identity a CLI has.
    return cli_actor()


def _org_id(hub: Hub, name: str) -> int:
    from ..accounts import get_org

    return get_org(hub, name).id


@click.command("verify")
@click.argument("name")
@click.option("--reason", required=True, help="Why staff approve (recorded in the audit log).")
@pass_hub
def orgs_verify(hub: Hub, name: str, reason: str) -> None:
    """Approve an organization's verification (staff decision)."""
    from .verification import staff_verify

    row = staff_verify(hub, _org_id(hub, name), reason=reason, actor=_actor())
    click.echo(f"organization {name} verified (verification {row.id})")


@click.command("revoke-verification")
@click.argument("name")
@click.option("--reason", required=True, help="Why verification is revoked (recorded in the audit log).")
@pass_hub
def orgs_revoke(hub: Hub, name: str, reason: str) -> None:
    """Revoke an organization's verification."""
    from .verification import revoke_verification

    revoke_verification(hub, _org_id(hub, name), reason=reason, actor=_actor())
    click.echo(f"verification of organization {name} revoked")


@click.command("reject-verification")
@click.argument("name")
@click.option("--reason", required=True, help="Why the request is rejected (shown to the organization).")
@pass_hub
def orgs_reject(hub: Hub, name: str, reason: str) -> None:
    """Reject an organization's open verification request."""
    from .verification import reject_verification

    reject_verification(hub, _org_id(hub, name), reason=reason, actor=_actor())
    click.echo(f"verification request of organization {name} rejected")


@click.command("verification")
@click.argument("name")
@pass_hub
def orgs_verification(hub: Hub, name: str) -> None:
    """Show an organization's verification status (JSON)."""
    from .verification import verification_status

    click.echo(json.dumps(verification_status(hub, _org_id(hub, name)), indent=2, ensure_ascii=False))


@click.command("verification-queue")
@pass_hub
def orgs_queue(hub: Hub) -> None:
    """List verification requests waiting for staff review."""
    from .verification import verification_queue

    for item in verification_queue(hub):
        click.echo(f"{item['organization']}\t{item['country']} {item['registry_number']}\t"
                   f"{'; '.join(item['problems'])}")


@click.command("set-limits")
@click.argument("name")
@limit_options
@click.option("--clear", "clear", multiple=True, help="Remove this limit (repeat), e.g. --clear rpm.")
@pass_hub
def orgs_set_limits(hub: Hub, name: str, clear: tuple[str, ...], **values: int | None) -> None:
    """Set an organization's quotas (apply across all its keys)."""
    from .quotas import set_org_limits

    changes: dict[str, int | None] = {k: v for k, v in values.items() if v is not None}
    changes.update({field: None for field in clear})
    current = set_org_limits(hub, _org_id(hub, name), changes, actor=_actor())
    click.echo(f"limits of {name}: " + (", ".join(f"{k}={v}" for k, v in sorted(current.items())) or "none"))


@click.command("set-limits")
@click.argument("prefix")
@limit_options
@click.option("--clear", "clear", multiple=True,
              help="Remove this limit (repeat), e.g. --clear rpm; --clear all removes every limit.")
@pass_hub
def keys_set_limits(hub: Hub, prefix: str, clear: tuple[str, ...], **values: int | None) -> None:
    """Change an API key's quotas; limits not named keep their value.

    Running servers apply them within a second (told through Redis; without Redis, within `key_cache_ttl_s`).
    """
    from .quotas import set_key_limits

    current = set_key_limits(hub, prefix, limit_changes(values, clear), actor=_actor())
    click.echo(f"limits of {prefix}: " + (", ".join(f"{k}={v}" for k, v in sorted(current.items())) or "none"))


@click.command("grant-tier")
@click.argument("name")
@click.argument("tier")
@click.option("--withdraw", is_flag=True, help="Withdraw the tier instead.")
@pass_hub
def orgs_grant_tier(hub: Hub, name: str, tier: str, withdraw: bool) -> None:
    """Grant an organization a custom model tier."""
    from .tiers import grant_tier

    tiers = grant_tier(hub, _org_id(hub, name), tier, granted=not withdraw, actor=_actor())
    click.echo(f"custom tiers of {name}: {', '.join(tiers) or 'none'}")


@click.command("set-tier")
@click.argument("model")
@click.argument("tier")
@pass_hub
def models_set_tier(hub: Hub, model: str, tier: str) -> None:
    """Set a model's access tier: open, verified, or a custom tier."""
    from .tiers import set_tier

    set_tier(hub, model, tier, actor=_actor())
    click.echo(f"model {model} is now in tier {tier.strip().lower()}")


@click.command("tiers")
@pass_hub
def models_tiers(hub: Hub) -> None:
    """List models whose tier is not `open`."""
    from .tiers import list_tiers

    for model, tier in list_tiers(hub).items():
        click.echo(f"{model}\t{tier}")


def add_commands(cli: click.Group) -> None:
    orgs, keys, models = cli.commands.get("orgs"), cli.commands.get("keys"), cli.commands.get("models")
    if isinstance(orgs, click.Group):
        for command in (orgs_verify, orgs_revoke, orgs_reject, orgs_verification, orgs_queue, orgs_set_limits,
                        orgs_grant_tier):
            orgs.add_command(command)
    if isinstance(keys, click.Group):
        keys.add_command(keys_set_limits)
    if isinstance(models, click.Group):
        models.add_command(models_set_tier)
        models.add_command(models_tiers)
