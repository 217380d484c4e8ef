"""The public transparency report: JSON and HTML, every plugin's section, counts that move."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sovhub.hookspecs import hookimpl
from sovhub.hub import Hub
from tests.fakes import FakePlugin


class Moderation:
    @hookimpl
    def sovhub_transparency(self, hub: Hub) -> dict[str, object]:
        return {"moderation": {"appeals": 3}}


class Broken:
    @hookimpl
    def sovhub_transparency(self, hub: Hub) -> dict[str, object]:
        raise RuntimeError("database gone")


def test_report_aggregates_sections_and_counts(shub: Hub, sov_client: tuple[TestClient, FakePlugin]) -> None:
    client, _ = sov_client
    shub.pm.register(Moderation(), name="tests.moderation")
    shub.pm.register(Broken(), name="tests.broken")
    try:
        shub.emit("egress.refused", subject="host:x.example", host="x.example")
        public = TestClient(client.app)  # no API key: the report is public
        data = public.get("/hub/v1/transparency").json()
        sov = data["sections"]["sovereignty"]
        assert data["sections"]["moderation"] == {"appeals": 3}
        assert "tests.broken" in data["unavailable"]
        assert sov["egress_refusals"] == 1 and sov["erasures"] == 0
        assert sov["policy"]["home_jurisdiction"] == "EU" and sov["policy"]["allowed_jurisdictions"] == ["EU"]
        assert sov["audit_chain_head"]["seq"] >= 3  # org.created, key.created, egress.refused
        page = public.get("/transparency")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Transparency report" in page.text and "Outgoing connections refused" in page.text and "Appeals" in page.text
    finally:
        shub.pm.unregister(name="tests.moderation")
        shub.pm.unregister(name="tests.broken")
