"""`sovhub locales ...`, `sovhub kb ...` and `sovhub users create|set-password|staff|set-limits|set-tier`:
locale packs, the knowledge base and the web app's local accounts (:mod:`sovhub.assistant.people`, and a
person's own quotas and tier: :mod:`sovhub.access.person_access`) from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..access.cli import limit_changes, limit_options
from ..cli import pass_hub
from ..hub import Hub
from ..operators import cli_actor
from ..users import normalize_email
from .people import create_user, find_user, set_password, set_staff

__all__ = [
    "kb_group", "locales_group", "users_create", "users_set_limits", "users_set_password", "users_set_tier",
    "users_staff",
]


@click.group("locales")
def locales_group() -> None:
    """Locale packs (system prompt, guidance, conventions, glossary, safety lexicon)."""


@locales_group.command("list")
@pass_hub
def locales_list(hub: Hub) -> None:
    """List the locale packs found (bundled, DATA_DIR/locales, assistant.locale_dirs)."""
    from .locales import LocaleRegistry

    registry = hub.services.get(LocaleRegistry)
    for pack in registry.packs():
        marks = ("default " if pack is registry.default else "") + ("bundled" if pack.builtin else str(pack.path))
        click.echo(f"{pack.code}\t{pack.direction}\t{pack.native_name}\t{pack.default_collection}\t{marks}")


@locales_group.command("show")
@click.argument("code")
@pass_hub
def locales_show(hub: Hub, code: str) -> None:
    """Show one pack: conventions, glossary size, lexicon codes and the full system prompt."""
    from .locales import LocaleRegistry

    pack = hub.services.get(LocaleRegistry).get(code)
    c = pack.conventions
    click.echo(f"{pack.code}: {pack.name} / {pack.native_name} ({pack.direction})")
    click.echo(f"folder: {pack.path}")
    click.echo(f"default collection: {pack.default_collection}")
    click.echo(f"dates: {c.date_format} {c.time_format}; numbers: 1{c.group_separator}234{c.decimal_separator}5; "
               f"currency {c.currency}; phone {c.phone_prefix}; week starts {c.first_day_of_week}")
    click.echo(f"glossary: {len(pack.glossary)} terms; lexicon: {', '.join(sorted(pack.lexicon)) or 'none'}")
    click.echo("address:\n" + c.address_example)
    click.echo("\n" + pack.compose_system_prompt())


@locales_group.command("check")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def locales_check(folder: Path) -> None:
    """Validate a pack folder before deploying it (exits non-zero with the problem)."""
    from .locales import load_pack

    pack = load_pack(folder)
    click.echo(f"ok: {pack.code} ({pack.native_name}), {len(pack.glossary)} glossary terms, "
               f"{sum(len(v) for v in pack.lexicon.values())} lexicon phrases")


@locales_group.command("fidelity")
@click.option("--language", "languages", multiple=True, help="Only these languages (default: assistant.languages).")
@pass_hub
def locales_fidelity(hub: Hub, languages: tuple[str, ...]) -> None:
    """Measure which languages the embedded model writes: right, wrong language, unreadable, failed."""
    from .fidelity_eval import PROMPTS, evaluate_embedded

    chosen = [lang for lang in (languages or hub.settings.assistant.languages) if lang in PROMPTS]
    snapshot = evaluate_embedded(hub, chosen)
    click.echo("model\tlanguage\tanswers\tright\twrong\tunreadable\tfailed\trate")
    for model, counts in snapshot.items():
        declared = hub.settings.assistant.model_languages.get(model)
        for lang, c in counts["languages"].items():
            rate = f"{c['rate'] * 100:.0f}%" if c["rate"] is not None else "-"
            click.echo(f"{model}\t{lang}\t{c['answers']}\t{c['right']}\t{c['wrong']}\t{c['unreadable']}\t"
                       f"{c['failed']}\t{rate}")
            if (c["rate"] or 0.0) < 0.8 and (declared is None or lang in declared):
                click.echo(f"  gap: {model} does not write {lang} well; the assistant should quote the knowledge"
                           f" base there (remove {lang} from assistant.model_languages[{model!r}]) or serve"
                           " a larger model for it")


def _default_collection(hub: Hub) -> str:
    from .locales import LocaleRegistry

    return hub.services.get(LocaleRegistry).default.default_collection


def _file_name(file: Path | None) -> str | None:
    return file.name if file is not None else None


@click.group("kb")
def kb_group() -> None:
    """The knowledge base: ingest documents, list, delete and search them."""


@kb_group.command("ingest")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--collection", default=None, help="Collection to add to [default: the default locale pack's].")
@pass_hub
def kb_ingest(hub: Hub, path: Path, collection: str | None) -> None:
    """Ingest a PDF, HTML, Markdown or text file, or every such file under a folder."""
    from .knowledge import KnowledgeBase

    kb = hub.services.get(KnowledgeBase)
    collection = collection or _default_collection(hub)
    files = kb.discover(path)
    if not files:
        raise click.ClickException(f"no PDF, HTML, Markdown or text files under {path}")
    results = []
    with click.progressbar(files, label=f"ingesting into {collection}", file=sys.stderr,
                           item_show_func=_file_name) as bar:
        for file in bar:
            results.extend(kb.ingest_path(file, collection))
    counts = {s: sum(r.status == s for r in results) for s in ("added", "replaced", "unchanged", "failed")}
    for result in results:
        if result.status == "failed":
            click.echo(f"failed: {result.source}: {result.error}", err=True)
    chunks = sum(r.chunks for r in results if r.status in ("added", "replaced"))
    click.echo(f"{counts['added']} added, {counts['replaced']} replaced, {counts['unchanged']} unchanged, "
               f"{counts['failed']} failed ({chunks} passages) in {collection}")
    if counts["failed"]:
        raise SystemExit(1)


@kb_group.command("list")
@click.option("--collection", default=None, help="Only this collection's documents.")
@pass_hub
def kb_list(hub: Hub, collection: str | None) -> None:
    """List documents: id, collection, pages, passages, title, source."""
    from .knowledge import KnowledgeBase

    for d in hub.services.get(KnowledgeBase).list_documents(collection):
        click.echo(f"{d.id}\t{d.collection}\t{d.pages}\t{d.chunk_count}\t{d.title}\t{d.source}")


@kb_group.command("collections")
@pass_hub
def kb_collections(hub: Hub) -> None:
    """List collections: name, documents, passages, embedding model."""
    from .knowledge import KnowledgeBase

    for c in hub.services.get(KnowledgeBase).list_collections():
        click.echo(f"{c.name}\t{c.documents}\t{c.chunks}\t{c.embedding_model}")


@kb_group.command("delete")
@click.argument("document_id", type=int)
@pass_hub
def kb_delete(hub: Hub, document_id: int) -> None:
    """Delete a document (by id, see `kb list`); searches stop returning it at once."""
    from .knowledge import KnowledgeBase

    info = hub.services.get(KnowledgeBase).delete_document(document_id)
    click.echo(f"deleted document {info.id} ({info.title}) from {info.collection}")


@kb_group.command("search")
@click.argument("query")
@click.option("--collection", default=None, help="Search only this collection [default: all].")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100), help="Passages to return.")
@pass_hub
def kb_search(hub: Hub, query: str, collection: str | None, k: int) -> None:
    """Search the knowledge base; prints score, citation link, title, page and the passage."""
    from .knowledge import KnowledgeBase

    hits = hub.services.get(KnowledgeBase).search(query, collection=collection, k=k)
    if not hits:
        click.echo("no matching passages", err=True)
    for n, hit in enumerate(hits, start=1):
        page = f", page {hit.page}" if hit.page is not None else ""
        click.echo(f"[{n}] {hit.score:.4f} {hit.url} {hit.title}{page} ({hit.collection})")
        click.echo("    " + " ".join(hit.text.split())[:300])


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
    user_id = find_user(hub, email)
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
    user_id = find_user(hub, email)
    ended = set_staff(hub, user_id, grant, actor=cli_actor(actor))
    state = "granted" if grant else f"withdrawn; {ended} session(s) ended"
    click.echo(f"staff rights of user {user_id} {state}")


@click.command("set-limits")
@click.argument("email")
@limit_options
@click.option("--clear", "clear", multiple=True,
              help="Give this limit back to access.user_limits (repeat); --clear all gives every one back.")
@click.option("--actor", default=None,
              help="A name to record beside your OS account in the audit log (e.g. who you act for).")
@pass_hub
def users_set_limits(hub: Hub, email: str, clear: tuple[str, ...], actor: str | None, **values: int | None) -> None:
    """Give EMAIL quotas of their own in the web assistant, over the defaults (access.user_limits)."""
    from ..access.person_access import person_access, set_person_limits

    changes = limit_changes(values, clear)
    user_id = find_user(hub, email)
    set_person_limits(hub, user_id, changes, actor=cli_actor(actor))
    effective = person_access(hub, user_id).effective
    click.echo(f"limits of user {user_id}: " + (", ".join(f"{k}={v}" for k, v in sorted(effective.items())) or "none"))


@click.command("set-tier")
@click.argument("email")
@click.argument("tier")
@click.option("--actor", default=None,
              help="A name to record beside your OS account in the audit log (e.g. who you act for).")
@pass_hub
def users_set_tier(hub: Hub, email: str, tier: str, actor: str | None) -> None:
    """Give EMAIL a model tier in the web assistant (`open`: the open models only)."""
    from ..access.person_access import set_person_tier

    user_id = find_user(hub, email)
    click.echo(f"tier of user {user_id}: {set_person_tier(hub, user_id, tier, actor=cli_actor(actor))}")
