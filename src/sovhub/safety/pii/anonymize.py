"""Redaction with Presidio's AnonymizerEngine: mask, keyed hash, or reversible pseudonyms.

* ``mask``: every character of the value becomes ``*`` (length kept, nothing recoverable);
* ``hash``: ``<IBAN_CODE:1f0c...>``, an HMAC-SHA256 keyed with the hub's secret, so the same
  value gives the same token across messages (a model can still tell "same card" apart) while
  nobody without the key can test guesses (plain hashes of 10-digit IDs are brute-forced in
  seconds);
* ``pseudonymize``: ``<IBAN_CODE_1>``; the mapping lives in a :class:`Vault` held in memory for
  one request or conversation and is used to put the real values back into the answer for the
  same person. It is never written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

from sovhub import linear_re

from .analyzer import PiiEntity
from .checksums import compact

__all__ = ["PLACEHOLDER", "Mode", "Redactor", "StreamRestorer", "Vault", "VaultStore"]

Mode = Literal["mask", "hash", "pseudonymize"]
PLACEHOLDER = linear_re.compile(f"<([A-Z][A-Z_]*)_([{linear_re.DIGIT}]{{1,4}})>")
# A tail that may grow into a placeholder in the next chunk ("<IBAN_CO").
_PARTIAL = linear_re.compile(f"<(?:[A-Z][A-Z_]*(?:_[{linear_re.DIGIT}]{{0,4}})?)?$")
_MAX_PLACEHOLDER = 40


class Vault:
    """Placeholder <-> value for one request or conversation; same value, same placeholder."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def placeholder(self, entity: str, value: str) -> str:
        key = (entity, compact(value))
        with self._lock:
            found = self._by_value.get(key)
            if found is None:
                self._counts[entity] = self._counts.get(entity, 0) + 1
                found = f"<{entity}_{self._counts[entity]}>"
                self._by_value[key] = found
                self._by_placeholder[found] = value
            return found

    def __len__(self) -> int:
        return len(self._by_placeholder)

    def restore(self, text: str) -> str:
        if not self._by_placeholder or "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self._by_placeholder.get(m.group(0), m.group(0)), text)


class StreamRestorer:
    """Restores placeholders in a streamed answer whose chunks may split one ("<IBAN_" + "CODE_1>")."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        self._held = ""
        partial = _PARTIAL.search(text)
        if partial is not None and len(text) - partial.start() <= _MAX_PLACEHOLDER:
            text, self._held = text[: partial.start()], text[partial.start() :]
        return self.vault.restore(text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self.vault.restore(text)


class VaultStore:
    """Vaults of live conversations, in memory only, bounded and expiring (nothing on disk)."""

    def __init__(self, ttl_s: float = 3600.0, max_items: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[float, Vault]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Vault:
        now = time.monotonic()
        with self._lock:
            item = self._items.pop(key, None)
            vault = item[1] if item is not None and now - item[0] < self.ttl_s else Vault()
            self._items[key] = (now, vault)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
            return vault

    def put(self, key: str, vault: Vault) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (time.monotonic(), vault)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def pop(self, key: str) -> Vault | None:
        with self._lock:
            item = self._items.pop(key, None)
        return item[1] if item is not None and time.monotonic() - item[0] < self.ttl_s else None

    def peek(self, key: str) -> Vault | None:
        with self._lock:
            item = self._items.get(key)
        return item[1] if item is not None and time.monotonic() - item[0] < self.ttl_s else None

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class Redactor:
    """Applies a mode to the spans the analyzer found, through Presidio's anonymizer."""

    def __init__(self, secret: str | bytes) -> None:
        self._key = secret.encode() if isinstance(secret, str) else secret
        self._engine = AnonymizerEngine()  # type: ignore[no-untyped-call]

    def token(self, entity: str, value: str) -> str:
        digest = hmac.new(self._key, f"{entity}\x00{compact(value)}".encode(), hashlib.sha256).hexdigest()
        return f"<{entity}:{digest[:16]}>"

    def redact(
        self, text: str, entities: Sequence[PiiEntity], mode: Mode, vault: Vault | None = None
    ) -> str:
        if not entities:
            return text
        if mode == "pseudonymize":
            if vault is None:
                raise ValueError("pseudonymize needs a vault to keep the mapping")
            # Number the placeholders in reading order (the anonymizer works from the end).
            for e in entities:
                vault.placeholder(e.type, text[e.start : e.end])
        operators: dict[str, OperatorConfig] = {}
        for entity in {e.type for e in entities}:
            operators[entity] = self._operator(entity, mode, vault)
        results = [RecognizerResult(e.type, e.start, e.end, e.score) for e in entities]
        return str(self._engine.anonymize(text=text, analyzer_results=results, operators=operators).text)

    def _operator(self, entity: str, mode: Mode, vault: Vault | None) -> OperatorConfig:
        if mode == "mask":
            return OperatorConfig("mask", {"masking_char": "*", "chars_to_mask": 10_000, "from_end": False})
        if mode == "hash":
            return OperatorConfig("custom", {"lambda": lambda value: self.token(entity, value)})
        assert vault is not None
        return OperatorConfig("custom", {"lambda": lambda value: vault.placeholder(entity, value)})
