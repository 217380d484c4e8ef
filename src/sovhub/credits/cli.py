"""`sovhub ledger`, `sovhub programmes` and `sovhub prices`: the fund office's commands."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from ..access.cli import _actor
from ..cli import pass_hub
from ..hub import Hub
from .amounts import format_credits, parse_credits, parse_share

__all__ = ["add_commands"]

_DAY = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


@click.group()
def ledger() -> None:
    """The credits ledger."""


@ledger.command("verify")
@pass_hub
def ledger_verify(hub: Hub) -> None:
    """Check every balance against its transfers and that all accounts sum to zero (exit 1 if not)."""
    from .ledger import Ledger

    problems = hub.services.get(Ledger).verify()
    for problem in problems:
        click.echo(f"MISMATCH {problem}")
    if problems:
        raise click.exceptions.Exit(1)
    click.echo("ledger verified: every balance equals the sum of its transfers; all accounts sum to zero")


@click.group()
def programmes() -> None:
    """Start-up programmes: co-funded budgets and their grants."""


def _partner(text: str) -> tuple[str, int]:
    name, sep, share = text.rpartition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r}: write NAME=SHARE, e.g. 'National Fund=60'")
    return name.strip(), parse_share(share, param="partner")


@programmes.command("create")
@click.argument("name")
@click.option("--budget", required=True, help="Budget in credits (up to six decimals).")
@click.option("--partner", "partners", multiple=True, required=True,
              help="A co-funding partner and its share in percent, NAME=SHARE (repeat; shares sum to 100).")
@click.option("--require-verified", is_flag=True, help="Only verified organizations may receive grants.")
@click.option("--description", default=None, help="What the programme is for.")
@click.option("--opens", type=_DAY, default=None, help="Call opens (UTC), e.g. 2027-01-01.")
@click.option("--closes", type=_DAY, default=None, help="Call closes (UTC).")
@click.option("--jurisdiction", "jurisdictions", multiple=True,
              help="Eligible registry country (ISO 3166-1 alpha-2; repeat); any when omitted.")
@click.option("--kind", "kinds", multiple=True, help="Eligible kind of organization (start-up, research, public...).")
@click.option("--max-grant", default=None, help="Largest single grant, in credits.")
@click.option("--validity-days", type=click.IntRange(min=1), default=None,
              help="Days a grant lasts unless it names its own expiry.")
@click.option("--model", "models", multiple=True, help="A model grants may pay for (repeat); all when omitted.")
@pass_hub
def programmes_create(
    hub: Hub, name: str, budget: str, partners: tuple[str, ...], require_verified: bool, description: str | None,
    opens: datetime | None, closes: datetime | None, jurisdictions: tuple[str, ...], kinds: tuple[str, ...],
    max_grant: str | None, validity_days: int | None, models: tuple[str, ...],
) -> None:
    """Create a programme; its budget is posted from the partners by their shares."""
    from .programmes import ProgrammeRules, create_programme

    rules = ProgrammeRules(
        description=description, opens_at=_utc(opens), closes_at=_utc(closes), require_verified=require_verified,
        jurisdictions=jurisdictions, org_kinds=kinds,
        max_grant=parse_credits(max_grant, param="max-grant") if max_grant is not None else None,
        grant_validity_days=validity_days, models=models,
    )
    row = create_programme(hub, name, parse_credits(budget, param="budget"), [_partner(p) for p in partners],
                           rules, actor=_actor())
    click.echo(f"created programme {row.name} (id {row.id}) with a budget of {format_credits(row.budget)} credits")


@programmes.command("grant")
@click.argument("programme")
@click.argument("org")
@click.argument("credits")
@click.option("--reason", required=True, help="Why (recorded in the ledger and the audit log).")
@click.option("--expires", type=_DAY, default=None, help="Expiry (UTC), e.g. 2027-06-30; else the programme's.")
@pass_hub
def programmes_grant(hub: Hub, programme: str, org: str, credits: str, reason: str, expires: datetime | None) -> None:
    """Grant CREDITS of PROGRAMME to organization ORG."""
    from .programmes import grant_credits

    row = grant_credits(hub, programme, org, parse_credits(credits, allow_zero=False), reason=reason,
                        actor=_actor(), expires_at=_utc(expires))
    until = f", expires {row.expires_at:%Y-%m-%d}" if row.expires_at else ""
    click.echo(f"granted {format_credits(row.amount)} credits to {org} from {programme} (grant {row.id}{until})")


@programmes.command("list")
@pass_hub
def programmes_list(hub: Hub) -> None:
    """List programmes: id, name, budget left to grant, budget, call window."""
    from sqlalchemy import select

    from .ledger import Ledger
    from .tables import CreditProgramme

    ledger = hub.services.get(Ledger)
    with hub.db.session() as s:
        rows = s.scalars(select(CreditProgramme).order_by(CreditProgramme.id)).all()
    for p in rows:
        pool = ledger.account_id("programme", p.id)
        left = ledger.available(ledger.balances([pool])[pool]) if pool is not None else 0
        window = f"{p.opens_at:%Y-%m-%d}" if p.opens_at else "-"
        window += f"..{p.closes_at:%Y-%m-%d}" if p.closes_at else ".."
        click.echo(f"{p.id}\t{p.name}\t{format_credits(left)}\t{format_credits(p.budget)}\t{window}")


@programmes.command("applications")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected"]), default="pending",
              show_default=True, help="Which applications.")
@pass_hub
def programmes_applications(hub: Hub, status: str) -> None:
    """The review queue: id, programme, organization, credits asked, status, purpose."""
    from .applications import list_applications

    for a in list_applications(hub, status=status):
        click.echo(f"{a['id']}\t{a['programme']}\t{a['organization']}\t{a['credits']}\t{a['status']}\t"
                   f"{a['purpose'][:80]}")


@programmes.command("decide")
@click.argument("application", type=int)
@click.argument("decision", type=click.Choice(["approve", "reject"]))
@click.option("--reason", required=True, help="Why (shown to the applicant, recorded in the audit log).")
@click.option("--reviewer", required=True, help="E-mail of the staff member deciding (not of the applicant).")
@click.option("--credits", "amount", default=None, help="Grant less than asked (approve only).")
@pass_hub
def programmes_decide(hub: Hub, application: int, decision: str, reason: str, reviewer: str,
                      amount: str | None) -> None:
    """Approve (granting the credits) or reject an application."""
    from sqlalchemy import select

    from ..errors import NotFound
    from ..store.tables import User
    from .applications import decide

    with hub.db.session() as s:
        reviewer_id = s.scalar(select(User.id).where(User.email == reviewer))
    if reviewer_id is None:
        raise NotFound(f"no user {reviewer}")
    row = decide(hub, application, "approved" if decision == "approve" else "rejected", reason=reason,
                 reviewer_id=reviewer_id, amount=parse_credits(amount, allow_zero=False) if amount else None)
    click.echo(f"application {row.id} {row.status}" + (f" (grant {row.grant_id})" if row.grant_id else ""))


@programmes.command("org-kind")
@click.argument("org")
@click.argument("kind", required=False)
@pass_hub
def programmes_org_kind(hub: Hub, org: str, kind: str | None) -> None:
    """Record what kind of organization ORG is (startup, sme, company, research, university, public_body,
    nonprofit), for programmes open to some kinds; without KIND, clear it."""
    from .eligibility import set_org_kind

    value = set_org_kind(hub, org, kind, actor=_actor())
    click.echo(f"organization {org} is of kind {value}" if value else f"organization {org} has no kind recorded")


@programmes.command("partner-member")
@click.argument("partner")
@click.argument("email")
@pass_hub
def programmes_partner_member(hub: Hub, partner: str, email: str) -> None:
    """Let the person with EMAIL see PARTNER's dashboard (its contributions and what they paid for)."""
    from .dashboards import add_partner_member

    add_partner_member(hub, int(partner) if partner.isdigit() else partner, email, actor=_actor())
    click.echo(f"{email} now sees the dashboard of partner {partner}")


@programmes.command("member")
@click.argument("org")
@click.argument("email")
@click.option("--role", type=click.Choice(["member", "admin"]), default="member", show_default=True,
              help="admin: may also apply for credits for the organization.")
@pass_hub
def programmes_member(hub: Hub, org: str, email: str, role: str) -> None:
    """Make the person with EMAIL a member of organization ORG (they see its credits in the web app)."""
    from ..members import add_member

    add_member(hub, org, email, role, actor=_actor())
    click.echo(f"{email} is now {role} of organization {org}")


@programmes.command("member-remove")
@click.argument("org")
@click.argument("email")
@pass_hub
def programmes_member_remove(hub: Hub, org: str, email: str) -> None:
    """Remove the person with EMAIL from organization ORG (refused for its last admin)."""
    from ..members import remove_member

    remove_member(hub, org, email, actor=_actor())
    click.echo(f"{email} is no longer a member of organization {org}")


@programmes.command("partner-member-remove")
@click.argument("partner")
@click.argument("email")
@pass_hub
def programmes_partner_member_remove(hub: Hub, partner: str, email: str) -> None:
    """The person with EMAIL no longer sees PARTNER's dashboard."""
    from .dashboards import remove_partner_member

    remove_partner_member(hub, int(partner) if partner.isdigit() else partner, email, actor=_actor())
    click.echo(f"{email} no longer sees the dashboard of partner {partner}")


@click.group()
def prices() -> None:
    """Prices of models, in credits."""


@prices.command("set")
@click.argument("model")
@click.option("--input-per-1m", required=True, help="Credits per million input (prompt) tokens.")
@click.option("--output-per-1m", required=True, help="Credits per million output (completion) tokens.")
@click.option("--embedding-per-1m", default="0", show_default=True, help="Credits per million embedding tokens.")
@click.option("--moderation-per-request", default="0", show_default=True,
              help="Credits per moderation (or PII) request.")
@click.option("--from", "start", type=_DAY, default=None, help="When the price applies (UTC); now when omitted.")
@pass_hub
def prices_set(hub: Hub, model: str, input_per_1m: str, output_per_1m: str, embedding_per_1m: str,
               moderation_per_request: str, start: datetime | None) -> None:
    """Set MODEL's price from now (or --from) on; earlier requests keep the price they were charged."""
    from .prices import set_price

    row = set_price(
        hub, model, input_per_1m=parse_credits(input_per_1m, param="input-per-1m"),
        output_per_1m=parse_credits(output_per_1m, param="output-per-1m"),
        embedding_per_1m=parse_credits(embedding_per_1m, param="embedding-per-1m"),
        moderation_per_request=parse_credits(moderation_per_request, param="moderation-per-request"),
        effective_from=_utc(start), actor=_actor(),
    )
    click.echo(f"price of {row.model} from {row.effective_from:%Y-%m-%d %H:%M:%S} UTC: "
               f"{format_credits(row.input_per_1m)} in / {format_credits(row.output_per_1m)} out per 1M tokens")


@prices.command("list")
@pass_hub
def prices_list(hub: Hub) -> None:
    """Every price: model, from, input, output and embedding per 1M tokens, per moderation request."""
    from .prices import list_prices

    for p in list_prices(hub):
        click.echo(f"{p.model}\t{p.effective_from:%Y-%m-%dT%H:%M:%SZ}\t{format_credits(p.input_per_1m)}\t"
                   f"{format_credits(p.output_per_1m)}\t{format_credits(p.embedding_per_1m)}\t"
                   f"{format_credits(p.moderation_per_request)}")


def add_commands(cli: click.Group) -> None:
    for group in (ledger, programmes, prices):
        if group.name not in cli.commands:
            cli.add_command(group)
