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

import re

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

__all__ = ["fts_text", "index_chunks", "match_stem", "query_terms", "search"]

_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 32
# Terms in more than this share of the passages are dropped from keyword queries (see below),
# once there are enough passages for the cost to matter.
COMMON_SHARE = 0.05
COMMON_MIN_PASSAGES = 2000


def _bigrams(match: re.Match[str]) -> str:
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


def search(session: Session, query: str, collection_ids: list[int], limit: int) -> list[tuple[int, float]]:
    """(chunk_id, score) best first; BM25 on SQLite (higher is better here), ts_rank on PostgreSQL."""
    terms = query_terms(query)
    if not terms or not collection_ids:
        return []
    if session.get_bind().dialect.name == "sqlite":
        terms = _without_common_terms(session, terms)
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


def _without_common_terms(session: Session, terms: list[str]) -> list[str]:
    """Drop terms found in more than COMMON_SHARE of all passages ("the", "is", "de", "и").

    BM25 gives them almost no weight, yet an OR query must score every passage holding one:
    on 100,000 passages a single "is" costs hundreds of milliseconds. Document frequencies come
    from the FTS5 vocabulary table, so this costs one index lookup per term.
    """
    total = session.execute(text("SELECT count(*) FROM kb_chunks")).scalar_one()
    if total < COMMON_MIN_PASSAGES:
        return terms
    limit = total * COMMON_SHARE
    kept = []
    for term in terms:
        stem, prefix = match_stem(term)
        if prefix:
            df = session.execute(
                text("SELECT coalesce(sum(doc), 0) FROM kb_chunks_fts_terms WHERE term >= :lo AND term < :hi"),
                {"lo": stem, "hi": stem + "\U0010ffff"},
            ).scalar_one()
        else:
            df = session.execute(
                text("SELECT coalesce(sum(doc), 0) FROM kb_chunks_fts_terms WHERE term = :t"), {"t": stem}
            ).scalar_one()
        if df <= limit:
            kept.append(term)
    return kept


def _fts5_term(term: str) -> str:
    stem, prefix = match_stem(term)
    return '"' + stem.replace('"', '""') + '"' + ("*" if prefix else "")


def _pg_lexeme(term: str) -> str:
    # Quoted lexemes: to_tsquery then treats the term as a literal, never as an operator.
    stem, prefix = match_stem(term)
    return "'" + stem.replace("'", "''").replace("\\", "\\\\") + "'" + (":*" if prefix else "")
