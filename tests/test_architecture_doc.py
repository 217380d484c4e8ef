"""docs/architecture.md draws the service graph: every service the hub builds is named there."""

from __future__ import annotations

from pathlib import Path

from sovhub.hub import Hub

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def test_every_built_service_is_in_the_architecture_document(hub: Hub) -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in hub.services.names() if f"`{name}`" not in text]
    assert not missing, f"docs/architecture.md does not name these services (add them to its table): {missing}"


def test_the_document_names_no_service_the_hub_does_not_build(hub: Hub) -> None:
    text = DOC.read_text(encoding="utf-8")
    table = [line.split("|")[1].strip().strip("`") for line in text.splitlines()
             if line.startswith("| `sovhub.")]
    assert table, "the service table is gone"
    assert sorted(set(table) - set(hub.services.names())) == []
