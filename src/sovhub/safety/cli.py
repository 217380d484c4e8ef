"""``sovhub safety ...``: evaluate and train the moderation classifier (the safety plugin mounts the group)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import click

from ..errors import SovhubError
from ..settings import SafetySettings, Settings, load_settings

if TYPE_CHECKING:
    from .eval import Scores
    from .moderation import Moderator

__all__ = ["ENCODERS", "build_default_moderator", "safety_group"]

#: The choices of the setting ``safety.semantic_encoder``, the default first.
ENCODERS: tuple[str, ...] = get_args(SafetySettings.model_fields["semantic_encoder"].annotation)


def _settings(ctx: click.Context) -> Settings:
    # Under the `sovhub` root command a HubContext carries --data-dir; standalone, read the environment.
    from ..cli import HubContext

    obj = ctx.find_object(HubContext)
    return obj.settings() if obj is not None else load_settings()


def build_default_moderator(settings: Settings, *, cache_size: int = 0, encoder: str | None = None) -> Moderator:
    """The default pipeline (semantic + lexicon + PII) without a database; cache_size=0 for honest timings.

    ``encoder`` (one of ``ENCODERS``) overrides ``settings.safety.semantic_encoder``. PII findings
    are entity types, not hazards: they cost time here but never change a moderation verdict.
    """
    from ..embedder import Embedder
    from .encoders import build_semantic_guard
    from .lexicon import LexiconGuard
    from .moderation import Moderator
    from .pii import PiiAnalyzer, PiiGuard

    if encoder is not None:
        settings = settings.model_copy(
            update={"safety": settings.safety.model_copy(update={"semantic_encoder": encoder})}
        )
    semantic = build_semantic_guard(settings, Embedder(settings.embeddings_model_id), cache_size=cache_size)
    semantic.ensure_ready()
    pii = PiiGuard(PiiAnalyzer(spacy_model=settings.safety.pii_spacy_model))
    return Moderator(semantic, LexiconGuard(), [pii])


_ENCODER = click.option(
    "--encoder", type=click.Choice(ENCODERS), default=None,
    help="Semantic encoder to use instead of the setting safety.semantic_encoder.",
)


@click.group("safety")
def safety_group() -> None:
    """Moderation classifier: evaluate it, (re)train it."""


@safety_group.command("eval")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.option("--show-errors", is_flag=True, help="List the items the pipeline got wrong.")
@_ENCODER
@click.pass_context
def eval_command(ctx: click.Context, file: Path, as_json: bool, show_errors: bool, encoder: str | None) -> None:
    """Evaluate the default pipeline on FILE.jsonl ({"text", "lang", "label"} per line)."""
    from .eval import evaluate, format_report, load_eval

    try:
        items = load_eval(file)
        moderator = build_default_moderator(_settings(ctx), encoder=encoder)
    except SovhubError as exc:
        raise click.ClickException(exc.message) from exc
    moderator.moderate("warm-up", None)
    report = evaluate(moderator.moderate, items)
    if as_json:
        def numbers(s: Scores) -> dict[str, Any]:
            return {"n": s.n, "precision": s.precision, "recall": s.recall, "f1": s.f1, "fpr": s.fpr,
                    "category_f1": s.category_f1}

        click.echo(json.dumps({
            "overall": numbers(report.overall),
            "by_lang": {k: numbers(v) for k, v in sorted(report.by_lang.items())},
            "latency_ms": {"p50": report.percentile(50), "p99": report.percentile(99)},
        }, indent=2))
    else:
        click.echo(format_report(report))
    if show_errors:
        for item, codes in report.errors:
            click.echo(f"  {item.lang} {item.label:>4} -> {','.join(codes) or 'safe':<8} {item.text[:100]}")


@safety_group.command("train")
@_ENCODER
@click.pass_context
def train_command(ctx: click.Context, encoder: str | None) -> None:
    """Train (or load) the semantic classifier for the current exemplar bank and print its CV report."""
    try:
        moderator = build_default_moderator(_settings(ctx), encoder=encoder)
    except SovhubError as exc:
        raise click.ClickException(exc.message) from exc
    model = moderator.semantic.model
    click.echo(f"model {model.digest[:20]}: {model.cv_report}")
