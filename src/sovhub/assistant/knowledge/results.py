"""What the knowledge base hands back: ingest outcomes, documents, search hits with citations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

__all__ = ["ChunkView", "CollectionInfo", "DocumentInfo", "IngestResult", "IngestStatus", "SearchHit", "chunk_url"]

IngestStatus = Literal["added", "replaced", "unchanged", "failed"]


def chunk_url(chunk_id: int) -> str:
    """Where the web app shows a passage; citations link here."""
    return f"/kb/chunks/{chunk_id}"


@dataclass(frozen=True, slots=True)
class IngestResult:
    source: str
    collection: str
    status: IngestStatus
    document_id: int | None = None
    title: str | None = None
    pages: int = 0
    chunks: int = 0
    error: str | None = None
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: int
    collection: str
    source: str
    title: str
    media_type: str
    pages: int
    chunk_count: int
    size_bytes: int
    content_hash: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    id: int
    name: str
    documents: int
    chunks: int
    embedding_model: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A retrieved passage: enough to quote it and to link to it."""

    chunk_id: int
    document_id: int
    collection: str
    title: str
    source: str
    page: int | None
    char_start: int
    char_end: int
    text: str
    score: float  # reciprocal-rank-fusion score: higher is better, comparable within one search
    vector_rank: int | None  # 1-based rank among vector candidates, None when not among them
    keyword_rank: int | None  # 1-based rank among full-text candidates, None when not among them
    similarity: float | None  # cosine similarity to the query (set for every search hit)

    @property
    def url(self) -> str:
        return chunk_url(self.chunk_id)

    def citation(self) -> dict[str, Any]:
        """A JSON-ready citation for the chat UI and the API."""
        return {
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "collection": self.collection,
            "title": self.title,
            "source": self.source,
            "page": self.page,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "url": self.url,
            "score": round(self.score, 6),
        }


@dataclass(frozen=True, slots=True)
class ChunkView:
    """One passage with its document, for the citation page `/kb/chunks/{id}`."""

    chunk_id: int
    ordinal: int
    page: int | None
    char_start: int
    char_end: int
    text: str
    document: DocumentInfo
    previous_id: int | None
    next_id: int | None
