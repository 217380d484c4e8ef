"""Keyword retrieval: SQLite FTS5 with BM25, or PostgreSQL full text ('simple' configuration).

Neither tokenizer splits Japanese or Chinese (they have no spaces), so both the indexed text
and the query go through :func:`fts_text`, which rewrites runs of CJK characters as
overlapping bigrams — the usual trick that makes keyword search work for those scripts.
Queries are OR-ed terms: a citizen's question rarely shares every word with the passage. Longer
terms are matched as prefixes with their last letters cut (:func:`match_stem`): a crude stemmer,
but one that works across all the inflected languages served (декларація finds декларацію,
Reisepass finds Reisepasses), where a language-specific stemmer would fit only one of them.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from sovhub import linear_re

from ..tables import KbChunk

__all__ = ["TermStats", "fts_text", "index_chunks", "match_stem", "query_terms", "reindex_all", "search"]

_CJK_RUN = linear_re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_WORD = linear_re.compile(f"[{linear_re.WORD}]+")
MAX_TERMS = 32
# Terms in more than this share of the passages are dropped from keyword queries (see below),
# once there are enough passages for the cost to matter.
COMMON_SHARE = 0.05
COMMON_MIN_PASSAGES = 2000


def _bigrams(match: linear_re.Match) -> str:
    run = match.group(0)
    if len(run) == 1:
        return f" {run} "
    return " " + " ".join(run[i : i + 2] for i in range(len(run) - 1)) + " "


def fts_text(value: str) -> str:
    return _CJK_RUN.sub(_bigrams, value)


def query_terms(query: str) -> list[str]:
    """Distinct lower-cased terms of a query, in order, at most MAX_TERMS."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(fts_text(query).lower()):
        if len(word) > 1 or _CJK_RUN.fullmatch(word):
            seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


def match_stem(term: str) -> tuple[str, bool]:
    """(text, is_prefix) to match for a term: long words lose inflection-sized endings."""
    if _CJK_RUN.fullmatch(term) or len(term) < 5:
        return term, False
    return (term[:-2] if len(term) >= 7 else term[:-1]), True


def index_chunks(session: Session, rows: list[tuple[int, int, str]]) -> None:
    """Add (chunk_id, collection_id, text) rows to the dialect's full-text index."""
    if not rows:
        return
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            text("INSERT INTO kb_chunks_fts (rowid, body, collection_id) VALUES (:id, :body, :cid)"),
            [{"id": i, "body": fts_text(t), "cid": c} for i, c, t in rows],
        )
    else:
        session.execute(
            text("UPDATE kb_chunks SET tsv = to_tsvector('simple', :body) WHERE id = :id"),
            [{"id": i, "body": fts_text(t)} for i, _, t in rows],
        )


def reindex_all(session: Session) -> int:
    """Index every passage again (a restored backup carries the passages, not the derived index)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DELETE FROM kb_chunks_fts"))
    rows = [(int(i), int(c), str(t)) for i, c, t in
            session.execute(select(KbChunk.id, KbChunk.collection_id, KbChunk.text).order_by(KbChunk.id))]
    index_chunks(session, rows)
    return len(rows)


def search(
    session: Session, query: str, collection_ids: list[int], limit: int, stats: TermStats | None = None
) -> list[tuple[int, float]]:
    """(chunk_id, score) best first; BM25 on SQLite (higher is better here), ts_rank on PostgreSQL."""
    terms = query_terms(query)
    if not terms or not collection_ids:
        return []
    if session.get_bind().dialect.name == "sqlite":
        # Terms in a large share of the passages weigh almost nothing in BM25, yet an OR query must
        # score every passage holding one: a single "is" costs hundreds of ms on 100,000 passages.
        frequent = set((stats or TermStats()).frequent(session, terms))
        terms = [t for t in terms if t not in frequent]
        if not terms:
            return []
        # Each term quoted, so FTS5 operators typed by a person ("AND", "NEAR", '*') stay words.
        match = " OR ".join(_fts5_term(t) for t in terms)
        stmt = text(
            "SELECT rowid, bm25(kb_chunks_fts) AS score FROM kb_chunks_fts "
            "WHERE kb_chunks_fts MATCH :match AND collection_id IN :cids ORDER BY score LIMIT :limit"
        ).bindparams(bindparam("cids", expanding=True))
        rows = session.execute(stmt, {"match": match, "cids": collection_ids, "limit": limit}).all()
        return [(int(r[0]), -float(r[1])) for r in rows]
    tsquery = " | ".join(_pg_lexeme(t) for t in terms)
    stmt = text(
        "SELECT id, ts_rank_cd(tsv, q) AS score FROM kb_chunks, to_tsquery('simple', :q) AS q "
        "WHERE tsv @@ q AND collection_id IN :cids ORDER BY score DESC, id LIMIT :limit"
    ).bindparams(bindparam("cids", expanding=True))
    rows = session.execute(stmt, {"q": tsquery, "cids": collection_ids, "limit": limit}).all()
    return [(int(r[0]), float(r[1])) for r in rows]


class TermStats:
    """Document frequencies of query terms, cached per process (SQLite).

    FTS5's vocabulary table counts a term's documents by walking its posting list: for a word in
    every passage that costs as much as the search it is meant to spare. Common words recur in
    nearly every question, so after the first few queries their counts come from this cache. It
    is dropped when passages are added (the highest chunk id moves) or after `ttl_s`; deletions
    only lower counts, which merely keeps a borderline word a little longer.
    """

    def __init__(self, ttl_s: float = 300.0, max_terms: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_terms = max_terms
        self._lock = threading.Lock()
        self._stamp: tuple[int, float] = (-1, 0.0)
        self._df: dict[str, int] = {}

    def frequent(self, session: Session, terms: list[str]) -> list[str]:
        """The terms found in more than COMMON_SHARE of the passages."""
        total = session.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'kb_chunks'")).scalar() or 0
        if total < COMMON_MIN_PASSAGES:
            return []
        now = time.monotonic()
        with self._lock:
            if self._stamp[0] != total or now - self._stamp[1] > self.ttl_s or len(self._df) > self.max_terms:
                self._df, self._stamp = {}, (total, now)
            known = dict(self._df)
        counts = {}
        for term in terms:
            if term not in known:
                known[term] = counts[term] = self._count(session, term)
        if counts:
            with self._lock:
                self._df.update(counts)
        return [t for t in terms if known[t] > total * COMMON_SHARE]

    @staticmethod
    def _count(session: Session, term: str) -> int:
        stem, prefix = match_stem(term)
        if prefix:
            return int(session.execute(
                text("SELECT coalesce(sum(doc), 0) FROM kb_chunks_fts_terms WHERE term >= :lo AND term < :hi"),
                {"lo": stem, "hi": stem + "\U0010ffff"},
            ).scalar_one())
        return int(session.execute(
            text("SELECT coalesce(sum(doc), 0) FROM kb_chunks_fts_terms WHERE term = :t"), {"t": stem}
        ).scalar_one())


def _fts5_term(term: str) -> str:
    stem, prefix = match_stem(term)
    return '"' + stem.replace('"', '""') + '"' + ("*" if prefix else "")


def _pg_lexeme(term: str) -> str:
    # Quoted lexemes: to_tsquery then treats the term as a literal, never as an operator.
    stem, prefix = match_stem(term)
    return "'" + stem.replace("'", "''").replace("\\", "\\\\") + "'" + (":*" if prefix else "")
