"""The knowledge base service: ingest files, replace or delete them, and search with citations.

Hybrid retrieval: full-text candidates (SQLite FTS5 BM25, or PostgreSQL full text) and vector
candidates (exact cosine search in process, see :mod:`.index`) are fused with reciprocal rank
fusion — rank-based, so the two retrievers' incomparable scores never need calibrating.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sovhub import linear_re

from ...errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from ...store.base import utcnow
from ..tables import KbChunk, KbCollection, KbDocument
from . import lexical
from .chunking import chunk_pages
from .extract import SUFFIXES, extract, media_type_for
from .index import VectorIndex
from .results import ChunkView, CollectionInfo, DocumentInfo, IngestResult, IngestStatus, SearchHit

if TYPE_CHECKING:
    from ...hub import Hub

__all__ = ["KnowledgeBase", "RRF_K"]

log = logging.getLogger("sovhub.assistant.knowledge")

# The constant of Cormack et al.'s reciprocal rank fusion; 60 is their (and everyone's) default.
RRF_K = 60
EMBED_BATCH = 32
_COLLECTION_NAME = linear_re.compile(f"^[{linear_re.WORD}][{linear_re.WORD}.-]{{0,119}}$")

Progress = Callable[[IngestResult], None]


class KnowledgeBase:
    """Collections of documents, searched together; one per hub (``hub.services``), holding its caches."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings = hub.settings.assistant
        self.index = VectorIndex()
        self.term_stats = lexical.TermStats()

    # --- ingestion ---

    @staticmethod
    def discover(path: Path | str) -> list[Path]:
        """The files `ingest_path` would read: the file itself, or supported files under a folder."""
        root = Path(path)
        if root.is_file():
            media_type_for(root.name)  # refuses unsupported types up front
            return [root]
        if not root.is_dir():
            raise NotFound(f"no such file or folder: {root}")
        return sorted(
            p for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )

    def ingest_path(self, path: Path | str, collection: str, progress: Progress | None = None) -> list[IngestResult]:
        """Ingest a file or a folder tree; a bad file is reported as `failed` and the rest go on."""
        results = []
        for file in self.discover(path):
            try:
                result = self.ingest_file(file, collection)
            except (InvalidRequest, PayloadTooLarge, Conflict) as exc:
                log.warning("knowledge base: %s not ingested: %s", file, exc.message)
                result = IngestResult(str(file.resolve()), collection, "failed", error=exc.message, path=file)
            results.append(result)
            if progress is not None:
                progress(result)
        return results

    def ingest_file(self, path: Path | str, collection: str) -> IngestResult:
        file = Path(path)
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no such file: {file}") from None
        self._check_size(file.name, size)
        result = self.ingest_bytes(file.name, file.read_bytes(), collection, source=str(file.resolve()))
        return dataclasses.replace(result, path=file)

    def ingest_bytes(self, name: str, data: bytes, collection: str, *, source: str | None = None) -> IngestResult:
        """Ingest one document (an upload). `source` identifies it in the collection (default: `name`).

        Same source and same bytes: skipped as `unchanged`. Same source, new bytes: its chunks
        are replaced in one transaction, so a search sees the old or the new version, never a mix.
        """
        self._check_size(name, len(data))
        source = source or name
        content_hash = hashlib.sha256(data).hexdigest()
        collection_row = self._collection(collection, create=True)
        with self.hub.db.session() as s:
            existing = s.scalar(
                select(KbDocument).where(KbDocument.collection_id == collection_row.id, KbDocument.source == source)
            )
            if existing is not None and existing.content_hash == content_hash:
                return IngestResult(source, collection, "unchanged", existing.id, existing.title,
                                    existing.pages, existing.chunk_count)
        doc = extract(name, data)
        chunks = chunk_pages(doc.pages, doc.paged, self.settings.kb_chunk_tokens, self.settings.kb_chunk_overlap_tokens)
        vectors = self._embed_passages(doc.title, [c.text for c in chunks])
        now = utcnow()
        try:
            with self.hub.db.session() as s:
                row = s.scalar(
                    select(KbDocument).where(KbDocument.collection_id == collection_row.id, KbDocument.source == source)
                )
                status: IngestStatus = "added" if row is None else "replaced"
                if row is None:
                    row = KbDocument(collection_id=collection_row.id, source=source, created_at=now)
                    s.add(row)
                else:
                    s.execute(delete(KbChunk).where(KbChunk.document_id == row.id))
                row.title, row.media_type, row.content_hash = doc.title, doc.media_type, content_hash
                row.size_bytes, row.pages, row.chunk_count, row.updated_at = len(data), len(doc.pages), len(chunks), now
                s.flush()
                chunk_rows = [
                    KbChunk(document_id=row.id, collection_id=collection_row.id, ordinal=i, page=c.page,
                            char_start=c.start, char_end=c.end, text=c.text, vector=vectors[i].tobytes())
                    for i, c in enumerate(chunks)
                ]
                s.add_all(chunk_rows)
                s.flush()
                lexical.index_chunks(s, [(c.id, collection_row.id, c.text) for c in chunk_rows])
                self._bump(s, collection_row.id)
                document_id, title = row.id, row.title
        except IntegrityError as exc:
            raise Conflict(f"{source} is being ingested into {collection} by another process; try again") from exc
        self.index.invalidate(collection_row.id)
        log.info("knowledge base: %s %s (%d chunks) in %s", status, source, len(chunks), collection)
        self.hub.emit("kb.document_ingested", subject=str(document_id), collection=collection, source=source,
                      status=status, chunks=len(chunks))
        return IngestResult(source, collection, status, document_id, title, len(doc.pages), len(chunks))

    def _check_size(self, name: str, size: int) -> None:
        if size > self.settings.kb_max_document_bytes:
            raise PayloadTooLarge(
                f"{name}: {size} bytes is over the knowledge base limit of {self.settings.kb_max_document_bytes}"
            )

    def _embed_passages(self, title: str, texts: list[str]) -> np.ndarray:
        # The title gives a passage its context ("Passport" + a paragraph about fees).
        batches = [
            self.hub.embedder.embed([f"{title}\n{t}" for t in texts[i : i + EMBED_BATCH]], kind="passage")
            for i in range(0, len(texts), EMBED_BATCH)
        ]
        out = np.concatenate(batches) if batches else np.zeros((0, self.hub.embedder.dim), dtype=np.float32)
        return np.ascontiguousarray(out, dtype=np.float32)

    # --- deletion ---

    def delete_document(self, document_id: int) -> DocumentInfo:
        """Delete a document and its chunks; no search returns them afterwards, in any process."""
        with self.hub.db.session() as s:
            row = s.get(KbDocument, document_id)
            if row is None:
                raise NotFound(f"no knowledge base document {document_id}")
            info = self._document_info(s, row)
            s.execute(delete(KbChunk).where(KbChunk.document_id == document_id))
            s.delete(row)
            self._bump(s, row.collection_id)
            collection_id = row.collection_id
        self.index.invalidate(collection_id)
        self.hub.emit("kb.document_deleted", subject=str(document_id), collection=info.collection, source=info.source)
        return info

    def delete_collection(self, name: str) -> int:
        """Delete a collection with all its documents; returns how many documents went."""
        collection = self._collection(name)
        with self.hub.db.session() as s:
            count = s.scalar(select(func.count()).where(KbDocument.collection_id == collection.id)) or 0
            s.execute(delete(KbChunk).where(KbChunk.collection_id == collection.id))
            s.execute(delete(KbDocument).where(KbDocument.collection_id == collection.id))
            s.execute(delete(KbCollection).where(KbCollection.id == collection.id))
        self.index.invalidate(collection.id)
        self.hub.emit("kb.collection_deleted", subject=name, documents=count)
        return int(count)

    # --- reading ---

    def list_collections(self) -> list[CollectionInfo]:
        with self.hub.db.session() as s:
            docs = dict(
                s.execute(select(KbDocument.collection_id, func.count()).group_by(KbDocument.collection_id)).all()
            )
            chunks = dict(s.execute(select(KbChunk.collection_id, func.count()).group_by(KbChunk.collection_id)).all())
            return [
                CollectionInfo(c.id, c.name, int(docs.get(c.id, 0)), int(chunks.get(c.id, 0)), c.embedding_model)
                for c in s.scalars(select(KbCollection).order_by(KbCollection.name))
            ]

    def list_documents(self, collection: str | None = None) -> list[DocumentInfo]:
        with self.hub.db.session() as s:
            stmt = select(KbDocument, KbCollection.name).join(KbCollection).order_by(KbCollection.name, KbDocument.id)
            if collection is not None:
                stmt = stmt.where(KbCollection.id == self._collection(collection).id)
            return [_doc_info(d, name) for d, name in s.execute(stmt).all()]

    def get_document(self, document_id: int) -> DocumentInfo:
        with self.hub.db.session() as s:
            row = s.get(KbDocument, document_id)
            if row is None:
                raise NotFound(f"no knowledge base document {document_id}")
            return self._document_info(s, row)

    def get_chunk(self, chunk_id: int) -> ChunkView:
        """A passage with its document and neighbours, for the citation page."""
        with self.hub.db.session() as s:
            chunk = s.get(KbChunk, chunk_id)
            if chunk is None:
                raise NotFound(f"no knowledge base passage {chunk_id}")
            document = s.get(KbDocument, chunk.document_id)
            assert document is not None  # the foreign key guarantees it
            around = [chunk.ordinal - 1, chunk.ordinal + 1]
            neighbours = dict(s.execute(
                select(KbChunk.ordinal, KbChunk.id).where(
                    KbChunk.document_id == chunk.document_id, KbChunk.ordinal.in_(around)
                )
            ).all())
            return ChunkView(chunk.id, chunk.ordinal, chunk.page, chunk.char_start, chunk.char_end, chunk.text,
                             self._document_info(s, document), neighbours.get(chunk.ordinal - 1),
                             neighbours.get(chunk.ordinal + 1))

    def search(
        self, query: str, collection: str | None = None, k: int = 5, *, collections: Sequence[str] | None = None,
        min_similarity: float | None = None,
    ) -> list[SearchHit]:
        """The k best passages for a question; fused full-text + vector.

        Searched: the `collection` named, or the `collections` named (those that do not exist are
        skipped: a locale whose collection was never filled), or all. With `min_similarity`,
        passages whose cosine similarity to the question is below it are left out.
        """
        if not query.strip() or k <= 0:
            return []
        k = min(k, 100)
        candidates = self.settings.kb_candidates
        query_vector = self.hub.embedder.embed([query], kind="query")[0].astype(np.float32)
        with self.hub.db.session() as s:
            if collections is not None:
                searched = self._named_collections(s, collections)
            else:
                searched = self._searched_collections(s, collection)
            if not searched:
                return []
            matrices = [self.index.matrix(s, cid, generation, dim) for cid, generation, dim in searched]
            # The vector scan runs on the index's thread while this one runs the full-text query.
            pending = self.index.top(matrices, query_vector, candidates)
            keyword = lexical.search(s, query, [c[0] for c in searched], candidates, self.term_stats)
            hits = self._fuse_and_load(s, keyword, pending.result(), k, query_vector)
        if min_similarity is not None:
            hits = [h for h in hits if h.similarity is not None and h.similarity >= min_similarity]
        return hits

    def _searched_collections(self, s: Session, name: str | None) -> list[tuple[int, int, int]]:
        """(id, generation, dim) of the collection named, or of all; NotFound or a model mismatch refused."""
        stmt = select(KbCollection.id, KbCollection.generation, KbCollection.dim, KbCollection.embedding_model)
        if name is None:
            return [(cid, generation, dim) for cid, generation, dim, _ in s.execute(stmt).all()]
        row = s.execute(stmt.where(KbCollection.name == name)).first()
        if row is None:
            raise NotFound(f"no knowledge base collection {name!r}")
        self._check_model(name, row[3])
        return [(row[0], row[1], row[2])]

    def _named_collections(self, s: Session, names: Sequence[str]) -> list[tuple[int, int, int]]:
        stmt = select(KbCollection.id, KbCollection.generation, KbCollection.dim, KbCollection.embedding_model,
                      KbCollection.name).where(KbCollection.name.in_(list(names)))
        out = []
        for cid, generation, dim, model, name in s.execute(stmt).all():
            self._check_model(name, model)
            out.append((cid, generation, dim))
        return out

    def _fuse_and_load(
        self, s: Session, keyword: list[tuple[int, float]], vector: list[tuple[int, float]], k: int,
        query_vector: np.ndarray,
    ) -> list[SearchHit]:
        scores: dict[int, float] = {}
        keyword_rank = {cid: rank for rank, (cid, _) in enumerate(keyword, start=1)}
        vector_rank = {cid: rank for rank, (cid, _) in enumerate(vector, start=1)}
        similarity = dict(vector)
        for ranks in (keyword_rank, vector_rank):
            for cid, rank in ranks.items():
                scores[cid] = scores.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(scores, key=lambda cid: (-scores[cid], cid))[: k * 2]
        if not best:
            return []
        # Load more than k: a chunk deleted since its collection's matrix was read is simply absent.
        # Plain columns, not ORM objects: only these few rows are ever read, and nothing is written.
        rows = s.execute(
            select(KbChunk.id, KbChunk.document_id, KbCollection.name, KbDocument.title, KbDocument.source,
                   KbChunk.page, KbChunk.char_start, KbChunk.char_end, KbChunk.text, KbChunk.vector)
            .join(KbDocument, KbDocument.id == KbChunk.document_id)
            .join(KbCollection, KbCollection.id == KbChunk.collection_id)
            .where(KbChunk.id.in_(best))
        ).all()
        by_id = {row[0]: row for row in rows}
        for cid, row in by_id.items():
            if cid not in similarity:
                # A full-text-only candidate: its similarity too, so the relevance floor judges every hit alike.
                similarity[cid] = float(np.frombuffer(row[9], dtype=np.float32) @ query_vector)
        hits = []
        for cid in best:
            if cid in by_id:
                _id, doc, name, title, source, page, start, end, text, _vector = by_id[cid]
                hits.append(SearchHit(cid, doc, name, title, source, page, start, end, text, scores[cid],
                                      vector_rank.get(cid), keyword_rank.get(cid), similarity[cid]))
        return hits[:k]

    # --- helpers ---

    def _collection(self, name: str, *, create: bool = False) -> KbCollection:
        with self.hub.db.session() as s:
            row = s.scalar(select(KbCollection).where(KbCollection.name == name))
        if row is None and create:
            row = self._create_collection(name)
        if row is None:
            raise NotFound(f"no knowledge base collection {name!r}")
        self._check_model(name, row.embedding_model)
        return row

    def _check_model(self, name: str, embedding_model: str) -> None:
        if embedding_model != self.hub.embedder.model_id:
            raise InvalidRequest(
                f"collection {name} holds vectors of {embedding_model}, not {self.hub.embedder.model_id};"
                " delete and re-ingest it", code="embedding_model_mismatch",
            )

    def _create_collection(self, name: str) -> KbCollection:
        if not _COLLECTION_NAME.match(name):
            raise InvalidRequest(
                f"collection name {name!r}: use letters, digits, '.', '-' or '_' (at most 120)", param="collection"
            )
        row = KbCollection(name=name, embedding_model=self.hub.embedder.model_id, dim=self.hub.embedder.dim,
                           generation=0)
        try:
            with self.hub.db.session() as s:
                s.add(row)
        except IntegrityError:
            # Another process created it first: use theirs.
            with self.hub.db.session() as s:
                existing = s.scalar(select(KbCollection).where(KbCollection.name == name))
            if existing is None:
                raise
            return existing
        self.hub.emit("kb.collection_created", subject=name)
        return row

    @staticmethod
    def _bump(s: Session, collection_id: int) -> None:
        s.execute(update(KbCollection).where(KbCollection.id == collection_id)
                  .values(generation=KbCollection.generation + 1))

    @staticmethod
    def _document_info(s: Session, row: KbDocument) -> DocumentInfo:
        name = s.scalar(select(KbCollection.name).where(KbCollection.id == row.collection_id)) or ""
        return _doc_info(row, name)


def _doc_info(row: KbDocument, collection: str) -> DocumentInfo:
    return DocumentInfo(row.id, collection, row.source, row.title, row.media_type, row.pages, row.chunk_count,
                        row.size_bytes, row.content_hash, row.created_at, row.updated_at)

