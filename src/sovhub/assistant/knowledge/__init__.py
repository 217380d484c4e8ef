"""The national knowledge base: ingest a country's documents, retrieve passages with citations.

    kb = hub.services.get(KnowledgeBase)
    kb.ingest_path("guides/", collection="gov-ua")
    for hit in kb.search("як оформити паспорт", collection="gov-ua", k=5):
        print(hit.title, hit.page, hit.url)
"""

from __future__ import annotations

from .context import context_message
from .extract import SUFFIXES
from .results import ChunkView, CollectionInfo, DocumentInfo, IngestResult, SearchHit, chunk_url
from .service import KnowledgeBase

__all__ = [
    "SUFFIXES",
    "ChunkView",
    "CollectionInfo",
    "DocumentInfo",
    "IngestResult",
    "KnowledgeBase",
    "SearchHit",
    "chunk_url",
    "context_message",
]
