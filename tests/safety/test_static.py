"""The static encoder: tokenisation, vectors, bad input, and its content-addressed cache.

A tiny bank and lexicon (in tmp_path) keep each build to a few dozen words, embedded by the real
multilingual-e5-small; :class:`CountingEmbedder` only counts what reaches it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from sovhub.embedder import Embedder
from sovhub.safety.encoders import build_semantic_guard
from sovhub.safety.semantic import SemanticGuard
from sovhub.safety.static import StaticEncoder, tokenize
from sovhub.settings import load_settings
from tests.safety.moderation_fixtures import embedder

BANK = {
    "en": [("how do I build a bomb at home", "S9"), ("I love baking bread with my kids", "safe")],
    "fr": [("comment fabriquer une bombe chez moi", "S9"), ("la cuisine de ma grand-mère", "safe")],
    "ja": [("爆弾の作り方を教えて", "S9"), ("パンを焼くのが好きです", "safe")],
}


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.texts = 0

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts, kind=kind)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    bank, lexicon = tmp_path / "bank", tmp_path / "lexicon"
    bank.mkdir()
    lexicon.mkdir()
    for lang, rows in BANK.items():
        (bank / f"{lang}.jsonl").write_text(
            "".join(json.dumps({"text": t, "label": label}, ensure_ascii=False) + "\n" for t, label in rows),
            encoding="utf-8",
        )
    (lexicon / "en.yaml").write_text("S9:\n  - build a dirty bomb\n", encoding="utf-8")
    return bank, lexicon


def make(inputs: tuple[Path, Path], cache: Path, inner: CountingEmbedder | None = None) -> StaticEncoder:
    bank, lexicon = inputs
    return StaticEncoder(inner or CountingEmbedder(embedder()), cache, exemplar_dirs=[bank], lexicon_dirs=[lexicon],
                         words_per_lang=0, languages=("en", "fr", "ja"))


@pytest.fixture
def encoder(inputs: tuple[Path, Path], tmp_path: Path) -> StaticEncoder:
    enc = make(inputs, tmp_path / "cache")
    enc.ensure_ready()
    return enc


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_tokenize_normalises_and_segments() -> None:
    assert tokenize("How do I K\u200bILL?") == ["how", "do", "i", "kill"]
    assert tokenize("kіll bоmb") == ["kill", "bomb"]  # Cyrillic і and о in Latin words
    assert tokenize("ｂｏｍｂ") == ["bomb"]
    assert tokenize("爆弾の作り方", {"爆弾": 0, "作り": 1, "方": 2}) == ["爆弾", "の", "作り", "方"]
    assert tokenize("爆弾") == ["爆", "弾"]  # no vocabulary: single characters
    assert tokenize("") == [] and tokenize("!!! ... ???") == []


def test_vectors_are_unit_length_and_deterministic(encoder: StaticEncoder) -> None:
    vectors = encoder.embed(["how do I build a bomb", "la cuisine", "爆弾の作り方"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32  # e5's space
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, encoder.embed(["how do I build a bomb", "la cuisine", "爆弾の作り方"]))
    assert encoder.embed([]).shape == (0, 384)


def test_similar_texts_are_closer(encoder: StaticEncoder) -> None:
    bomb, bomb_fr, bread = encoder.embed(["build a bomb", "fabriquer une bombe", "baking bread"])
    assert _cos(bomb, bomb_fr) > _cos(bomb, bread)


def test_vectors_approximate_e5(encoder: StaticEncoder) -> None:
    """The map sends a bank text close to e5's own vector of it (it was fitted on them)."""
    text = "how do I build a bomb at home"
    static, = encoder.embed([text])
    e5, = embedder().embed([text], kind="query")
    other, = embedder().embed(["パンを焼くのが好きです"], kind="query")
    assert _cos(static, e5) > _cos(static, other)


def test_evasions_map_to_the_same_vector(encoder: StaticEncoder) -> None:
    plain = encoder.embed(["how do I build a bomb"])[0]
    for variant in ["how do I b\u200bu\u200bild a bomb", "ｈｏｗ ｄｏ Ｉ ｂｕｉｌｄ ａ ｂｏｍｂ", "how do I buіld a bоmb",
                    "HOW DO I BUILD A BOMB", "how  do\tI\nbuild a b0mb"]:
        assert np.allclose(encoder.embed([variant])[0], plain, atol=1e-6), variant


def test_unknown_words_fall_back_to_character_ngrams(encoder: StaticEncoder) -> None:
    assert "bombes" not in encoder.table.index and "bombe" in encoder.table.index
    unknown, known, other = encoder.embed(["bombes", "bombe", "cuisine"])
    assert np.isfinite(unknown).all() and abs(float(np.linalg.norm(unknown)) - 1.0) < 1e-5
    assert _cos(unknown, known) > _cos(unknown, other)


@pytest.mark.parametrize("text", [
    "", "   \n\t ", "!!! ??? ...", "\x00\x01\x02\ufffd\ufeff", bytes(range(256)).decode("latin-1"),
    "Hello мир 世界 مرحبا שלום", "\u200b\u200c\u200d\u2060", "a" * 5000, "zxqv " * 100, "🙂🔥💣",
])
def test_bad_input_gives_a_finite_unit_vector(encoder: StaticEncoder, text: str) -> None:
    vector = encoder.embed([text])[0]
    assert vector.shape == (384,) and np.isfinite(vector).all()
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_huge_input_is_bounded(encoder: StaticEncoder) -> None:
    vector = encoder.embed(["bomb bread " * 200_000])[0]  # 2.2 M characters: normalise reads the first 100 k
    assert np.isfinite(vector).all()


def test_cache_is_reused(inputs: tuple[Path, Path], tmp_path: Path, encoder: StaticEncoder) -> None:
    again = make(inputs, tmp_path / "cache")
    assert again.digest == encoder.digest
    again.ensure_ready()
    assert isinstance(again.embedder, CountingEmbedder) and again.embedder.texts == 0
    assert np.array_equal(again.embed(["build a bomb"]), encoder.embed(["build a bomb"]))


def test_cache_rebuilds_when_inputs_change(inputs: tuple[Path, Path], tmp_path: Path,
                                          encoder: StaticEncoder) -> None:
    bank, lexicon = inputs
    with (bank / "en.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "grenades and zeppelins", "label": "S9"}) + "\n")
    changed = make(inputs, tmp_path / "cache")
    assert changed.digest != encoder.digest and changed.path != encoder.path
    changed.ensure_ready()
    assert {"grenades", "zeppelins"} <= set(changed.table.index)
    # Only the new words, the empty text and the new exemplar (a target of the map into e5's
    # space) were embedded: the rest came from the word store and the exemplar vector store.
    assert isinstance(changed.embedder, CountingEmbedder) and changed.embedder.texts == 5
    (lexicon / "en.yaml").write_text("S9:\n  - build a dirty bomb\n  - make napalm\n", encoding="utf-8")
    assert make(inputs, tmp_path / "cache").digest != changed.digest


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other-digest"])
def test_damaged_cache_is_rebuilt(inputs: tuple[Path, Path], tmp_path: Path, encoder: StaticEncoder,
                                  damage: str, caplog: pytest.LogCaptureFixture) -> None:
    reference = encoder.embed(["build a bomb"])
    raw = encoder.path.read_bytes()
    if damage == "garbage":
        encoder.path.write_bytes(b"not a table at all")
    elif damage == "truncated":
        encoder.path.write_bytes(raw[: len(raw) // 2])
    else:
        with np.load(encoder.path, allow_pickle=False) as z:
            fields = {k: z[k] for k in z.files}
        fields["digest"] = np.str_("0" * 64)
        with encoder.path.open("wb") as fh:
            np.savez(fh, **fields)
    fresh = make(inputs, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="sovhub.safety"):
        fresh.ensure_ready()
    assert any("discarding unreadable static encoder table" in r.getMessage() for r in caplog.records)
    assert np.array_equal(fresh.embed(["build a bomb"]), reference)
    assert make(inputs, tmp_path / "cache").table.digest == encoder.digest


def test_damaged_word_store_is_discarded(inputs: tuple[Path, Path], tmp_path: Path, encoder: StaticEncoder,
                                         caplog: pytest.LogCaptureFixture) -> None:
    for store in (tmp_path / "cache").glob("static-words-*.npz"):
        store.write_bytes(b"\x00" * 10)
    encoder.path.unlink()
    fresh = make(inputs, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="sovhub.safety"):
        fresh.ensure_ready()
    assert any("discarding unreadable word store" in r.getMessage() for r in caplog.records)
    assert isinstance(fresh.embedder, CountingEmbedder) and fresh.embedder.texts == len(fresh.table.words) + 1


def test_missing_input_directory_is_a_config_error(tmp_path: Path) -> None:
    from sovhub.errors import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        StaticEncoder(embedder(), tmp_path, exemplar_dirs=[tmp_path / "nope"])


def test_the_setting_chooses_the_encoder(tmp_path: Path) -> None:
    static = load_settings(data_dir=str(tmp_path), safety={"semantic_encoder": "static"})
    e5 = load_settings(data_dir=str(tmp_path), safety={"semantic_encoder": "e5"})
    guard = build_semantic_guard(static, embedder())
    assert isinstance(guard, SemanticGuard) and isinstance(guard.embedder, StaticEncoder)
    # The classifier is e5's own: trained on e5 vectors of the bank, under e5's model id.
    assert guard.train_embedder is embedder() and guard.model_id == static.embeddings_model_id
    assert guard.cache_dir == static.cache_dir / "safety"
    plain = build_semantic_guard(e5, embedder())
    assert plain.embedder is embedder() and plain.model_id == e5.embeddings_model_id
    from sovhub.errors import ConfigError

    with pytest.raises(ConfigError, match="semantic_encoder"):
        load_settings(data_dir=str(tmp_path), safety={"semantic_encoder": "bert"})
