"""The public sustainability page: no sign-in, every figure in the viewer's language, an SVG chart with its data
in a table beside it, and the section in the transparency report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from sovhub.batches.tables import BatchRow
from sovhub.hub import Hub
from sovhub.store.tables import Organization, UsageRecord


def _seed(hub: Hub) -> None:
    now = datetime.now(UTC)
    with hub.db.session() as s:
        org = Organization(name="energy-org")
        s.add(org)
        s.flush()
        for days, wh in ((1, 2.0), (0, 3.0)):
            s.add(UsageRecord(ts=now - timedelta(days=days), request_id=f"r{days}", org_id=org.id, endpoint="chat",
                              model="echo", prompt_tokens=400, completion_tokens=100, energy_wh=wh, co2e_g=wh / 4,
                              renewable_share=0.5, energy_method="rapl"))
        s.add(BatchRow(id="batch_x", org_id=org.id, endpoint="/v1/chat/completions", input_file_id="file-x",
                       status="completed", expires_at=now, total=3, completed=3, failed=0, input_tokens=0,
                       output_tokens=0, schedule={"strategy": "greenest_windows", "shifted_lines": 3,
                                                  "saved_co2e_g": 0.25}))


def test_page_is_public_translated_and_charts_its_table(app_client: TestClient, hub: Hub) -> None:
    _seed(hub)
    anonymous = TestClient(app_client.app)
    page = anonymous.get("/sustainability", headers={"accept-language": "de"})
    assert page.status_code == 200 and page.headers["content-language"] == "de"
    html = page.text
    assert "<h1>Nachhaltigkeit</h1>" in html and "Energie pro Tag" in html
    assert 'role="img"' in html and "<title id=\"energy-per-day-title\">Diagramm: Energie pro Tag" in html
    assert html.count("<rect ") == 2  # one bar per day...
    assert html.count("<tr><td>20") == 2  # ...and the same days in the table beside it
    assert "In grünere Stunden verschobene Arbeit" in html
    uk = anonymous.get("/sustainability", headers={"accept-language": "uk"}).text
    assert "Сталий розвиток" in uk
    report = anonymous.get("/hub/v1/transparency").json()
    section = report["sections"]["sustainability"]
    assert section["last_30_days"]["energy_wh"] == 5.0 and section["last_30_days"]["co2e_g"] == 1.25
    assert section["last_30_days"]["sci_g_per_1k_tokens"] == 1.25  # 1.25 g over 1,000 tokens
    assert section["work_moved_to_greener_hours"] == {"batches_planned": 1, "lines_shifted": 3,
                                                      "saved_co2e_g_estimate": 0.25}


def test_empty_page_says_nothing_was_measured(app_client: TestClient) -> None:
    html = TestClient(app_client.app).get("/sustainability", headers={"accept-language": "en"}).text
    assert "No energy has been measured yet." in html and "<svg" not in html


def test_the_period_is_chosen_with_days(app_client: TestClient, hub: Hub) -> None:
    _seed(hub)  # one request today, one yesterday
    anonymous = TestClient(app_client.app)
    today = anonymous.get("/sustainability", params={"days": "1"}, headers={"accept-language": "en"})
    assert today.status_code == 200
    assert "last 1 days" in today.text and today.text.count("<tr><td>20") == 1
    year = anonymous.get("/sustainability", params={"days": "366"}, headers={"accept-language": "en"}).text
    assert "last 366 days" in year and year.count("<tr><td>20") == 2
    default = anonymous.get("/sustainability", headers={"accept-language": "en"}).text
    assert "last 30 days" in default


def test_a_bad_period_is_a_400_naming_days(app_client: TestClient) -> None:
    anonymous = TestClient(app_client.app)
    for bad in ("0", "367", "-1", "7.5", "abc", "", "١٢", "1e3", "99999999999999999999"):
        r = anonymous.get("/sustainability", params={"days": bad})
        assert r.status_code == 400, bad
        error = r.json()["error"]
        assert (error["param"], error["code"]) == ("days", "invalid_period") and "from 1 to 366" in error["message"]
