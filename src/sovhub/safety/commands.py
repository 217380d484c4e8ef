"""`sovhub safety appeals ...` (staff decisions) and `sovhub safety policy ...` (check, show)."""

from __future__ import annotations

import json

import click

from ..cli import pass_hub
from ..hub import Hub
from ..operators import cli_actor

__all__ = ["appeals_group", "policy_group"]


@click.group("appeals")
def appeals_group() -> None:
    """Appeals against moderation decisions: list them, decide them."""


@appeals_group.command("list")
@click.option("--status", type=click.Choice(["filed", "upheld", "overturned", "all"]), default="filed",
              show_default=True, help="Which appeals to list.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_hub
def appeals_list(hub: Hub, status: str, as_json: bool) -> None:
    """List appeals (the queue of filed ones by default), oldest first."""
    from .appeals import list_appeals

    for view in list_appeals(hub, None if status == "all" else status):
        if as_json:
            click.echo(json.dumps(view.as_dict(), ensure_ascii=False))
        else:
            click.echo(f"{view.id}\t{view.status}\t{','.join(view.categories)}\t{view.policy_version}\t"
                       f"{view.created_at:%Y-%m-%d %H:%M}\t{view.reason[:80]}")


@appeals_group.command("decide")
@click.argument("appeal_id")
@click.option("--uphold", "outcome", flag_value="upheld", help="The decision stands.")
@click.option("--overturn", "outcome", flag_value="overturned", help="The decision was wrong.")
@click.option("--reason", required=True, help="Why; shown to the person who appealed.")
@click.option("--staff", default=None, help="Who decides (default: the OS user).")
@pass_hub
def appeals_decide(hub: Hub, appeal_id: str, outcome: str | None, reason: str, staff: str | None) -> None:
    """Decide an appeal: --uphold or --overturn, with a --reason."""
    from ..errors import InvalidRequest
    from .appeals import decide_appeal

    if outcome is None:
        raise InvalidRequest("choose --uphold or --overturn")
    view = decide_appeal(hub, appeal_id, outcome, reason, staff or cli_actor())  # type: ignore[arg-type]
    click.echo(f"{view.id}\t{view.status}")


@click.group("policy")
def policy_group() -> None:
    """The safety policy: check a file against the human-rights floor, show the one in force."""


@policy_group.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--static-only", is_flag=True, help="Skip running the guards on the protected-speech set.")
@pass_hub
def policy_check(hub: Hub, path: str, static_only: bool) -> None:
    """Validate a policy file; refuse it (exit 1) if it lowers the human-rights floor."""
    from .pipeline import SafetyRuntime
    from .policy import check_floor, load_policy

    loaded = load_policy(path)
    if not static_only:
        runtime = hub.services.get(SafetyRuntime)
        check_floor(loaded.policy, lambda text, lang: runtime.scan(text, lang))
    click.echo(f"policy {loaded.version} ({loaded.policy.name}) passes the floor; sha256 {loaded.digest}")


@policy_group.command("show")
@pass_hub
def policy_show(hub: Hub) -> None:
    """Print the policy in force."""
    from .policy import load_policy

    click.echo(load_policy(hub.settings.safety.policy_file).text, nl=False)
