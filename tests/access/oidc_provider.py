"""Starts the real OpenID provider (tests/access/oidc/provider.mjs, npm `oidc-provider`) on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import RSAKey

HERE = Path(__file__).with_name("oidc")
CLIENT_ID = "sovhub-test"
CLIENT_SECRET = "test-secret-0123456789-abcdefghijklmnop"
LOA = "http://eidas.europa.eu/LoA/"


def provider_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (needed for the oidc-provider test IdP)"
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        return "npm dependencies of the test IdP missing: run `npm ci --prefix tests/access/oidc`"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


class OidcProvider:
    def __init__(self, workdir: Path, redirect_uris: list[str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.redirect_uris = redirect_uris
        self.keys: list[RSAKey] = [new_key("k1")]
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        jwks_file = self.workdir / "oidc-jwks.json"
        jwks_file.write_text(json.dumps({"keys": [k.as_dict(private=True) for k in self.keys]}))
        env = {
            **os.environ,
            "OIDC_PORT": str(self.port),
            "OIDC_JWKS_FILE": str(jwks_file),
            "OIDC_CLIENT": json.dumps(
                {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": self.redirect_uris}
            ),
            "NODE_ENV": "test",
        }
        self._proc = subprocess.Popen(
            ["node", str(HERE / "provider.mjs")], env=env, cwd=HERE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out = self._proc.stdout.read().decode() if self._proc.stdout else ""
                raise RuntimeError(f"oidc provider exited: {out}")
            try:
                r = httpx.get(self.issuer + "/.well-known/openid-configuration", timeout=1)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("oidc provider did not start within 20 s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None

    def rotate(self, kid: str) -> RSAKey:
        """Restart signing with a new key only (the old kid disappears from the JWKS)."""
        key = new_key(kid)
        self.stop()
        self.keys = [key]
        self.start()
        return key

    def next_login(self, account: str = "alice", level: str = "high") -> None:
        httpx.post(self.issuer + "/test/next-login", json={"account": account, "acr": LOA + level}).raise_for_status()

    def idp_settings(self, **extra: Any) -> dict[str, Any]:
        return {"issuer": self.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **extra}
