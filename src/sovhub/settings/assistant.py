"""Settings of the localized web assistant and knowledge base (``[assistant]``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["AssistantSettings"]


class AssistantSettings(BaseModel):
    """The localized web assistant and knowledge base."""

    languages: list[str] = Field(
        default_factory=lambda: ["en", "uk", "pl", "de", "fr", "es", "ar", "ja"],
        description="UI and detection languages of the deployment.",
    )
    default_locale: str = Field("en-GB", description="Locale pack used when none matches.")
    locale_dirs: list[str] = Field(
        default_factory=list,
        description="Extra directories of locale packs (besides DATA_DIR/locales); later ones override earlier.",
    )
    kb_chunk_tokens: int = Field(200, ge=32, le=480, description="Knowledge base passage size, in estimated tokens.")
    kb_chunk_overlap_tokens: int = Field(
        40, ge=0, le=200, description="Estimated tokens a passage repeats from the one before it."
    )
    kb_max_document_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest file the knowledge base ingests."
    )
    kb_candidates: int = Field(
        50, ge=5, le=1000, description="Candidates taken from each retriever (full text, vectors) before fusion."
    )
    kb_shared_collections: list[str] = Field(
        default_factory=list,
        description="Collections searched for every locale, besides the locale's own (default_collection).",
    )
    kb_min_similarity: float = Field(
        0.83, ge=0.0, le=1.0,
        description="Relevance floor: passages whose cosine similarity to the question is lower are never shown"
        " (calibrated in docs/benchmarks.md).",
    )
    kb_answer_check: bool = Field(
        True,
        description="Quote or cite a passage over the relevance floor only when it answers the question (its best"
        " sentence and the question's topic words, docs/assistant-knowledge.md); otherwise \"I do not know\" with"
        " the topics the knowledge base does hold.",
    )
    model_languages: dict[str, list[str]] = Field(
        default_factory=lambda: {"smollm2-135m-instruct": ["en"]},
        description="Languages each model writes well; in others the assistant quotes the knowledge base."
        " A model not listed is judged by its measured language fidelity.",
    )
    quote_models: list[str] = Field(
        default_factory=lambda: ["smollm2-135m-instruct"],
        description="Models too small to restate sources faithfully: when a passage passes the relevance floor,"
        " the assistant quotes it instead of asking them.",
    )
    decline_unsourced: bool = Field(
        True,
        description="When no passage passes the relevance floor and the question asks for facts only the national"
        " sources (or the person's own records) could give, answer \"I do not know\" instead of asking the model.",
    )
