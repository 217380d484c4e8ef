"""Redaction modes, the pseudonym vault, streaming restoration and the /hub/v1/pii endpoint."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sovhub.safety.pii import PiiAnalyzer, Redactor, StreamRestorer, Vault, VaultStore
from tests.safety.pipeline_fixtures import pipeline_settings  # noqa: F401 - fixture

TEXT = "IBAN DE89370400440532013000, again DE89 3704 0044 0532 0130 00, mail ana@example.org"


def _redact(mode: str, key: str = "k1", vault: Vault | None = None) -> str:
    analyzer = PiiAnalyzer()
    return Redactor(key).redact(TEXT, analyzer.analyze(TEXT), mode, vault)  # type: ignore[arg-type]


def test_mask_keeps_length_and_nothing_else() -> None:
    out = _redact("mask")
    assert out == "IBAN **********************, again ***************************, mail ***************"


def test_hash_is_keyed_and_stable_across_formatting() -> None:
    out = _redact("hash")
    tokens = [t for t in out.replace(",", " ").split() if t.startswith("<")]
    assert tokens[0] == tokens[1]  # same IBAN, spaced or not, same token
    assert tokens[0].startswith("<IBAN_CODE:") and "DE89" not in out
    assert _redact("hash", key="other") != out  # without the key the token cannot be recomputed


def test_pseudonymize_numbers_in_reading_order_and_restores() -> None:
    vault = Vault()
    out = _redact("pseudonymize", vault=vault)
    assert out == "IBAN <IBAN_CODE_1>, again <IBAN_CODE_1>, mail <EMAIL_ADDRESS_1>"
    assert vault.restore("pay <IBAN_CODE_1> and write to <EMAIL_ADDRESS_1> or <PERSON_9>") == (
        "pay DE89370400440532013000 and write to ana@example.org or <PERSON_9>"
    )


def test_pseudonymize_without_vault_is_an_error() -> None:
    import pytest

    with pytest.raises(ValueError, match="vault"):
        _redact("pseudonymize")


def test_stream_restorer_handles_placeholders_split_across_chunks() -> None:
    vault = Vault()
    vault.placeholder("IBAN_CODE", "DE89370400440532013000")
    restorer = StreamRestorer(vault)
    chunks = ["pay <IB", "AN_CO", "DE_", "1> now <", "not a tag> and <IBAN_CODE_1", ">", " end <"]
    out = "".join(restorer.feed(c) for c in chunks) + restorer.flush()
    assert out == "pay DE89370400440532013000 now <not a tag> and DE89370400440532013000 end <"


def test_vault_store_expires_and_is_bounded() -> None:
    store = VaultStore(ttl_s=60, max_items=2)
    a = store.get("a")
    assert store.get("a") is a
    store.get("b")
    store.get("c")
    assert store.peek("a") is None  # evicted, oldest first
    expired = VaultStore(ttl_s=0.0)
    first = expired.get("x")
    assert expired.get("x") is not first


def test_pii_endpoint(app_client: TestClient) -> None:
    r = app_client.post("/hub/v1/pii", json={"input": "Mi DNI es 12345678Z", "mode": "mask"})
    assert r.status_code == 200
    body = r.json()
    assert body["entities"] == [{"type": "ES_DNI", "start": 10, "end": 19, "score": body["entities"][0]["score"]}]
    assert body["redacted"] == "Mi DNI es *********"
    default = app_client.post("/hub/v1/pii", json={"input": "Mi DNI es 12345678Z"}).json()
    assert default["mode"] == "pseudonymize" and default["redacted"] == "Mi DNI es <ES_DNI_1>"


def test_pii_endpoint_errors(app_client: TestClient) -> None:
    assert app_client.post("/hub/v1/pii", json={"input": "x", "mode": "shred"}).status_code == 400
    assert app_client.post("/hub/v1/pii", json={}).status_code == 400
    assert app_client.post("/hub/v1/pii", json={"input": "x" * 100_001}).status_code == 400
    r = app_client.post("/hub/v1/pii", json={"input": "x"}, headers={"authorization": ""})
    assert r.status_code == 401


def test_pii_endpoint_long_and_empty_input(app_client: TestClient) -> None:
    assert app_client.post("/hub/v1/pii", json={"input": ""}).json()["entities"] == []
    long = ("word " * 1000) + "ana@example.org"
    body = app_client.post("/hub/v1/pii", json={"input": long, "mode": "hash"}).json()
    assert [e["type"] for e in body["entities"]] == ["EMAIL_ADDRESS"]
