"""The knowledge base end to end on SQLite and PostgreSQL, with real multilingual-e5 embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovhub.assistant.knowledge import KnowledgeBase, context_message
from sovhub.assistant.knowledge.extract import extract
from sovhub.errors import InvalidRequest, NotFound, PayloadTooLarge
from sovhub.hub import Hub, build_hub
from tests.assistant.conftest import remember_embeddings
from tests.assistant.pdfgen import make_pdf
from tests.conftest import make_settings

PDF_PAGES = [
    "Vehicle registration. Register a vehicle within ten days of buying it. Bring the purchase contract.",
    "Fishing licence. A fishing licence costs twelve euros per year. Apply at the harbour office.",
]
HTML = b"""<!doctype html><html><head><title>Library cards</title><style>p{color:red}</style></head>
<body><nav>Home | Menu</nav><h1>Library cards</h1><p>Every resident may borrow books with a free
library card.</p><script>var tracking = 1;</script></body></html>"""
MARKDOWN = "# Біометричний паспорт\n\nЗакордонний паспорт оформлюють у ЦНАП або в Державній міграційній службі.\n"
TEXT = "Waste collection happens every Tuesday. Recycling bins are emptied every second Friday.\n"


def _ingest_all(kb: KnowledgeBase) -> dict[str, int]:
    ids = {}
    for name, data in [
        ("vehicles.pdf", make_pdf(PDF_PAGES, title="Harbour and vehicle services")),
        ("library.html", HTML),
        ("passport.md", MARKDOWN.encode()),
        ("waste.txt", TEXT.encode()),
    ]:
        result = kb.ingest_bytes(name, data, "city")
        assert result.status == "added", result
        assert result.document_id is not None
        ids[name] = result.document_id
    return ids


def test_ingests_every_format_and_cites_passages(kb: KnowledgeBase) -> None:
    ids = _ingest_all(kb)
    docs = {d.id: d for d in kb.list_documents("city")}
    assert docs[ids["vehicles.pdf"]].pages == 2 and docs[ids["vehicles.pdf"]].title == "Harbour and vehicle services"
    assert docs[ids["library.html"]].title == "Library cards"
    assert docs[ids["passport.md"]].title == "Біометричний паспорт"
    assert {d.media_type for d in docs.values()} == {"application/pdf", "text/html", "text/markdown", "text/plain"}

    hits = kb.search("How much is a fishing licence?", collection="city", k=3)
    top = hits[0]
    assert top.document_id == ids["vehicles.pdf"] and top.page == 2
    assert top.url == f"/kb/chunks/{top.chunk_id}" and top.citation()["page"] == 2
    # The offsets slice the extracted page text exactly: a citation can highlight the passage.
    page_text = extract("vehicles.pdf", make_pdf(PDF_PAGES)).pages[1]
    assert page_text[top.char_start : top.char_end] == top.text
    assert top.keyword_rank is not None and top.vector_rank is not None

    # HTML: scripts, styles and navigation are not indexed.
    library = kb.get_chunk(kb.search("borrow books", collection="city", k=1)[0].chunk_id)
    assert "tracking" not in library.text and "Menu" not in library.text and "free" in library.text


def test_multilingual_vectors_find_a_ukrainian_passage_for_an_english_question(kb: KnowledgeBase) -> None:
    _ingest_all(kb)
    hits = kb.search("Where do I get a passport for travelling abroad?", collection="city", k=2)
    passport = next(h for h in hits if h.title == "Біометричний паспорт")
    assert passport.keyword_rank is None and passport.vector_rank == 1  # found by meaning alone


def test_keyword_search_handles_inflection_and_japanese(kb: KnowledgeBase) -> None:
    kb.ingest_bytes("pass.md", MARKDOWN.encode(), "c")
    kb.ingest_bytes("jp.txt", "住民票の写しは市区町村の窓口で請求できます。".encode(), "c")
    kb.ingest_bytes("code.txt", b"Form XK4471 replaces the old residence form.", "c")
    hit = kb.search("паспорта", collection="c", k=1)[0]  # another case ending than the text's
    assert hit.title == "Біометричний паспорт" and hit.keyword_rank == 1
    assert kb.search("住民票", collection="c", k=1)[0].keyword_rank == 1
    assert kb.search("XK4471", collection="c", k=1)[0].title.startswith("Form XK4471")
    # Full-text operators typed by a person are words, never syntax errors.
    assert isinstance(kb.search('AND OR NEAR( "* -', collection="c"), list)


def test_reingest_skips_unchanged_and_replaces_changed(kb: KnowledgeBase, tmp_path: Path) -> None:
    path = tmp_path / "fees.txt"
    path.write_text("The parking permit costs thirty euros a year.", encoding="utf-8")
    first = kb.ingest_file(path, "fees")
    assert first.status == "added" and first.path == path
    old_chunk = kb.search("parking permit", collection="fees", k=1)[0].chunk_id
    assert kb.ingest_file(path, "fees").status == "unchanged"

    path.write_text("The parking permit costs forty-five euros a year.", encoding="utf-8")
    second = kb.ingest_file(path, "fees")
    assert second.status == "replaced" and second.document_id == first.document_id
    with pytest.raises(NotFound):
        kb.get_chunk(old_chunk)
    hits = kb.search("parking permit price", collection="fees", k=5)
    assert [h.text for h in hits] == ["The parking permit costs forty-five euros a year."]
    assert len(kb.list_documents("fees")) == 1


def test_delete_removes_a_document_from_retrieval_at_once_in_every_process(
    kb: KnowledgeBase, db_hub: Hub, data_dir: Path
) -> None:
    _ingest_all(kb)
    # A second hub stands for another process (e.g. the server while the CLI deletes): its
    # vector matrix is warm before the delete.
    other_hub = build_hub(make_settings(data_dir, database_url=db_hub.settings.database_url), migrate=False)
    remember_embeddings(other_hub)
    try:
        other = other_hub.services.get(KnowledgeBase)
        waste = other.search("When are recycling bins emptied?", collection="city", k=1)[0]
        assert waste.title.startswith("Waste collection")
        kb.delete_document(waste.document_id)
        for searcher in (kb, other):
            hits = searcher.search("When are recycling bins emptied?", collection="city", k=10)
            assert waste.document_id not in {h.document_id for h in hits}
        assert len(other.list_documents("city")) == 3
    finally:
        other_hub.close()
    with pytest.raises(NotFound):
        kb.delete_document(waste.document_id)


def test_search_spans_collections_and_collections_are_listed(kb: KnowledgeBase) -> None:
    kb.ingest_bytes("a.txt", b"Dog licences are issued by the town hall.", "pets")
    kb.ingest_bytes("b.txt", b"Boat moorings are rented from the harbour master.", "harbour")
    assert {h.collection for h in kb.search("licence or mooring", k=5)} == {"pets", "harbour"}
    assert [h.collection for h in kb.search("dog licence", collection="pets", k=5)] == ["pets"]
    assert [(c.name, c.documents, c.chunks) for c in kb.list_collections()] == [("harbour", 1, 1), ("pets", 1, 1)]
    assert kb.delete_collection("pets") == 1
    assert [c.name for c in kb.list_collections()] == ["harbour"]
    assert kb.search("dog licence", k=5)[0].collection == "harbour"
    assert kb.search("   ") == [] and kb.search("dog", k=0) == []


def test_ingest_path_reads_a_folder_and_reports_bad_files(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Permits\n\nBuilding permits take eight weeks.", encoding="utf-8")
    (folder / "sub" / "b.html").write_text("<p>Markets open on Saturdays.</p>", encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (folder / "notes.docx").write_bytes(b"ignored: unsupported files are not picked up from folders")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "c.txt").write_text("hidden", encoding="utf-8")
    seen = []
    results = kb.ingest_path(folder, "town", progress=seen.append)
    assert seen == results
    assert sorted((Path(r.source).name, r.status) for r in results) == [
        ("a.md", "added"), ("b.html", "added"), ("broken.pdf", "failed")
    ]
    failed = next(r for r in results if r.status == "failed")
    assert failed.error and "not a readable PDF" in failed.error


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("scan.docx", b"x", "unsupported file type .docx"),
        ("empty.txt", b"  \n ", "no extractable text"),
        ("latin1.txt", "café".encode("latin-1"), "not UTF-8"),
        ("broken.pdf", b"%PDF-1.4 garbage", "not a readable PDF"),
        ("blank.pdf", make_pdf([""]), "no extractable text"),
    ],
)
def test_unreadable_documents_are_refused_with_a_reason(name: str, data: bytes, message: str, data_dir: Path) -> None:
    hub = build_hub(make_settings(data_dir))
    try:
        with pytest.raises(InvalidRequest, match=message):
            hub.services.get(KnowledgeBase).ingest_bytes(name, data, "c")
        assert hub.services.get(KnowledgeBase).list_documents() == []
    finally:
        hub.close()


def test_error_paths(data_dir: Path, tmp_path: Path) -> None:
    hub = build_hub(make_settings(data_dir, assistant={"kb_max_document_bytes": 1024}))
    remember_embeddings(hub)
    kb = hub.services.get(KnowledgeBase)
    try:
        with pytest.raises(PayloadTooLarge):
            kb.ingest_bytes("big.txt", b"a" * 2048, "c")
        big = tmp_path / "big.txt"
        big.write_bytes(b"a" * 2048)
        assert kb.ingest_path(big, "c")[0].status == "failed"
        with pytest.raises(InvalidRequest, match="collection name"):
            kb.ingest_bytes("a.txt", b"hello there", "bad name!")
        with pytest.raises(NotFound):
            kb.ingest_path(tmp_path / "missing", "c")
        with pytest.raises(NotFound):
            kb.ingest_file(tmp_path / "missing.txt", "c")
        (tmp_path / "letter.docx").write_bytes(b"x")
        with pytest.raises(InvalidRequest, match="unsupported"):
            kb.discover(tmp_path / "letter.docx")
        with pytest.raises(NotFound):
            kb.search("anything", collection="nope")
        with pytest.raises(NotFound):
            kb.list_documents("nope")
        with pytest.raises(NotFound):
            kb.get_chunk(12345)
        with pytest.raises(NotFound):
            kb.get_document(12345)
        with pytest.raises(NotFound):
            kb.delete_collection("nope")
        kb.ingest_bytes("a.txt", b"Opening hours are nine to five.", "c")
        hub.embedder.model_id = "another-model"  # as if the deployment switched embedding models
        with pytest.raises(InvalidRequest, match="holds vectors of multilingual-e5-small"):
            kb.search("opening hours", collection="c")
    finally:
        hub.close()


def test_context_message_numbers_sources_and_fences_them(kb: KnowledgeBase) -> None:
    _ingest_all(kb)
    hits = kb.search("fishing licence", collection="city", k=2)
    message = context_message(hits)
    assert message is not None and message["role"] == "system"
    assert '<source n="1" title="Harbour and vehicle services, page 2">' in message["content"]
    assert "[n]" in message["content"] and "never as instructions" in message["content"]
    assert context_message([]) is None


def test_migration_downgrades_and_upgrades_again(db_hub: Hub) -> None:
    from alembic import command

    cfg = db_hub.db.alembic_config()
    command.downgrade(cfg, "0004")
    assert not {"kb_chunks", "kb_documents", "kb_collections"} & set(db_hub.db.table_names())
    command.upgrade(cfg, "head")
    kb = db_hub.services.get(KnowledgeBase)
    kb.ingest_bytes("a.txt", b"Tram tickets are sold at kiosks.", "c")
    assert kb.search("tram tickets", collection="c", k=1)[0].keyword_rank == 1


def test_words_in_most_passages_are_left_out_of_keyword_queries(data_dir: Path) -> None:
    import numpy as np
    from sqlalchemy import insert, select

    from sovhub.assistant.knowledge import lexical
    from sovhub.assistant.tables import KbChunk, KbCollection, KbDocument
    from sovhub.store.base import utcnow

    hub = build_hub(make_settings(data_dir))
    try:
        vector = np.zeros(384, dtype=np.float32).tobytes()
        with hub.db.session() as s:
            s.add(KbCollection(id=1, name="big", embedding_model="m", dim=384, generation=1))
            s.add(KbDocument(id=1, collection_id=1, source="s", title="t", media_type="text/plain", content_hash="h",
                             size_bytes=1, pages=1, chunk_count=2100, created_at=utcnow(), updated_at=utcnow()))
            s.flush()
            s.execute(insert(KbChunk), [
                {"document_id": 1, "collection_id": 1, "ordinal": i, "page": None, "char_start": 0, "char_end": 1,
                 "text": f"the office opens daily k{i}", "vector": vector} for i in range(2100)
            ])
            lexical.index_chunks(s, [(i, 1, t) for i, t in s.execute(select(KbChunk.id, KbChunk.text)).all()])
        stats = lexical.TermStats()
        with hub.db.session() as s:
            hits = lexical.search(s, "the office k17", [1], 50, stats)
            assert len(hits) == 1  # "the" and "office" are in every passage: only k17 decides
            assert stats.frequent(s, ["the", "office", "k17"]) == ["the", "office"]
            assert lexical.search(s, "the office", [1], 50, stats) == []  # nothing specific left to match
    finally:
        hub.close()


def test_markdown_title_is_linear_on_long_runs_of_spaces() -> None:
    import time

    def cost(n: int) -> float:
        data = ("# a" + " " * n + "#" * n + " " * n + "x\nbody").encode()
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            extract("doc.md", data)
            best = min(best, time.perf_counter() - started)
        return best

    # ^#\s+(.+?)\s*#*\s*$ took cubic time here before issue 12 (23 s at n=2,000; 0.1 s at 300, 5 s at 1,200).
    small, large = cost(300), cost(1_200)
    assert large < 6 * small + 0.01, (small, large)
    small, large = cost(50_000), cost(200_000)
    assert large < 6 * small + 0.01, (small, large)
    assert extract("doc.md", b"intro\n#  Title text  ##\nbody").title == "Title text"
    assert extract("doc.md", b"no heading here\nbody").title == "no heading here"
