"""Browser tests: Debian's Chromium driven by Playwright against a real `sovhub serve`.

Chromium comes from `apt-get install chromium fonts-noto-cjk` (Playwright cannot download browsers
here). Without it these tests skip, or fail when SOVHUB_REQUIRE_SERVICES=1. Screenshots go to
test-artifacts/browser/ (or $SOVHUB_ARTIFACTS/browser/).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_service
from tests.server import RemoteHub, run_cli

CHROMIUM = os.environ.get("SOVHUB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("SOVHUB_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts") / "browser"
EMAIL, PASSWORD = "citizen@example.org", "a long browser password"
# The real embedded model (SmolLM2) answers; the safety warm-up (minutes of embedding on a small
# CPU) is off, the safety area tests its own pipeline. The embedder loads on first use (ingest).
SERVER_ENV = {"SOVHUB_SAFETY__ENABLED": "false", "SOVHUB_EMBEDDINGS_ENABLED": "false",
              "SOVHUB_EMBEDDED_MAX_TOKENS": "12"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        need_service(f"Chromium not found at {CHROMIUM}: apt-get install chromium fonts-noto-cjk")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need_service("playwright is not installed: pip install playwright")
        raise
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[RemoteHub]:
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVHUB_")} | SERVER_ENV
    run_cli(data_dir, "init", env=SERVER_ENV)
    run_cli(data_dir, "users", "create", EMAIL, "--password-stdin", "--staff", env=SERVER_ENV, input=PASSWORD + "\n")
    with RemoteHub(data_dir, env=env, timeout=180) as hub:
        hub.env = env
        yield hub


@pytest.fixture
def open_page(browser: Any, server: RemoteHub) -> Iterator[Any]:
    """open_page(locale) -> a page in a fresh browser context (own cookies) sending that Accept-Language."""
    contexts = []

    def make(locale: str = "en-GB", *, phone: bool = False, dark: bool = False) -> Any:
        # phone: an iPhone 12-sized screen (390 x 844 CSS pixels, touch); dark: the system's dark mode.
        size = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
        context = browser.new_context(base_url=server.url, locale=locale, accept_downloads=True, viewport=size,
                                      is_mobile=phone, has_touch=phone, device_scale_factor=2 if phone else 1,
                                      color_scheme="dark" if dark else "light")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(300_000)
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: Any) -> Any:
    return open_page("en-GB")


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, email: str = EMAIL, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_selector("#composer")

