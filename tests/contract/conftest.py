from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import RemoteHub, run_cli


@pytest.fixture(scope="session")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RemoteHub, str]]:
    """One real `sovhub serve` with the bundled SmolLM2 model for the whole contract suite."""
    data_dir: Path = tmp_path_factory.mktemp("contract") / "data"
    run_cli(data_dir, "init", "--jurisdiction", "UA")
    run_cli(data_dir, "orgs", "create", "contract")
    key = run_cli(data_dir, "keys", "create", "--org", "contract").stdout.strip().splitlines()[-1]
    with RemoteHub(data_dir, env={"SOVHUB_EMBEDDED_MAX_TOKENS": "64"}) as hub:
        yield hub, key
