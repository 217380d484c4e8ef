"""An OpenID Connect relying party for national eID providers (authorization code + PKCE).

Authlib builds the protocol messages (authorization URL, token request, PKCE S256);
joserfc (Authlib's JOSE library) verifies the ID token: signature against the provider's
JWKS, then issuer, audience (and `azp` when there are several), expiry, issued-at and nonce.
An ID token signed with a key id not in the cached JWKS triggers one refetch (key rotation),
at most every ``access.jwks_min_refresh_s`` seconds so that forged kids cannot make the hub
hammer the provider. Every request goes through the hub's egress-guarded HTTP client.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from ..egress import Egress
from ..errors import AuthenticationFailed, ConfigError, NotFound, UpstreamFailed

if TYPE_CHECKING:
    from ..hub import Hub
    from ..settings import IdentityProviderSettings

__all__ = ["EidIdentity", "OidcClient", "OidcClients", "new_pkce"]

log = logging.getLogger("sovhub.access.oidc")


@dataclass(frozen=True, slots=True)
class EidIdentity:
    idp: str
    subject: str
    level: str | None  # eIDAS level, None when the provider's acr is unknown
    acr: str | None
    given_name: str | None
    family_name: str | None
    birthdate: str | None
    claims: dict[str, Any]
    person_id: str | None = None  # the national person identifier, when the provider's config names its claim

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.given_name, self.family_name) if p) or str(self.claims.get("name") or "")


def new_pkce() -> tuple[str, str]:
    """(code_verifier, code_challenge) per RFC 7636, S256."""
    verifier = generate_token(64)
    return verifier, create_s256_code_challenge(verifier)


def _refused(what: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"eID sign-in refused: {what}", code="oidc_invalid_token")


class OidcClient:
    def __init__(self, hub: Hub, name: str, config: IdentityProviderSettings) -> None:
        self.hub = hub
        self.name = name
        self.config = config
        self.issuer = config.issuer.rstrip("/")
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_fetched = float("-inf")

    @property
    def http(self) -> httpx.AsyncClient:
        return self.hub.services.get(Egress).http

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self.http.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamFailed(f"identity provider {self.name}: {url} failed: {exc}") from exc
        if not isinstance(data, dict):
            raise UpstreamFailed(f"identity provider {self.name}: {url} did not return a JSON object")
        return data

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            data = await self._get_json(self.issuer + "/.well-known/openid-configuration")
            if str(data.get("issuer", "")).rstrip("/") != self.issuer:
                # OIDC Discovery 4.3: a mismatch means the document is not this issuer's.
                raise ConfigError(
                    f"identity provider {self.name}: discovery issuer {data.get('issuer')!r} != {self.issuer!r}"
                )
            self._metadata = data
        return self._metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        due = time.monotonic() - self._keys_fetched >= self.hub.settings.access.jwks_min_refresh_s
        if self._keys is None or (refresh and due):
            jwks = await self._get_json((await self.metadata())["jwks_uri"])
            self._keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            self._keys_fetched = time.monotonic()
        return self._keys

    def acr_values(self, level: str | None) -> list[str]:
        """The provider's acr values at `level` or above (all known ones when no level is required).

        Sent on every sign-in: providers put `acr` in the ID token when it was asked for.
        """
        from .sessions import ASSURANCE_LEVELS

        floor = ASSURANCE_LEVELS.index(level) if level in ASSURANCE_LEVELS else 0
        ranked = sorted(self.config.acr_levels.items(), key=lambda kv: -ASSURANCE_LEVELS.index(kv[1]))
        return [acr for acr, lvl in ranked if ASSURANCE_LEVELS.index(lvl) >= floor]

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_challenge: str, level: str | None = None
    ) -> str:
        extra: dict[str, Any] = {"nonce": nonce, "code_challenge": code_challenge, "code_challenge_method": "S256"}
        if acr := self.acr_values(level):
            extra["acr_values"] = " ".join(acr)
        endpoint = (await self.metadata())["authorization_endpoint"]
        return str(
            prepare_grant_uri(
                endpoint, self.config.client_id, "code", redirect_uri=redirect_uri,
                scope=" ".join(self.config.scopes), state=state, **extra,
            )
        )

    async def exchange(self, *, code: str, redirect_uri: str, code_verifier: str) -> dict[str, Any]:
        """Trade the code for tokens at the token endpoint (client_secret_basic, or public + PKCE)."""
        meta = await self.metadata()
        body = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": code_verifier}
        auth: httpx.Auth | None = None
        if self.config.client_secret:
            auth = httpx.BasicAuth(self.config.client_id, self.config.client_secret)
        else:
            body["client_id"] = self.config.client_id
        try:
            response = await self.http.post(
                meta["token_endpoint"], data=body, auth=auth or httpx.USE_CLIENT_DEFAULT,
                headers={"accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise UpstreamFailed(f"identity provider {self.name}: token endpoint failed: {exc}") from exc
        if response.status_code != 200:
            # invalid_grant: code reused, expired or PKCE mismatch; the provider decides.
            detail = response.json().get("error", response.status_code) if response.content else response.status_code
            raise AuthenticationFailed(f"eID sign-in refused by {self.name}: {detail}", code="oidc_code_refused")
        tokens = response.json()
        if not isinstance(tokens, dict) or not tokens.get("id_token"):
            raise _refused("the provider returned no ID token")
        return tokens

    async def validate_id_token(self, id_token: str, *, nonce: str) -> EidIdentity:
        algorithms = self.config.algorithms
        try:
            try:
                token = jwt.decode(id_token, await self.keys(), algorithms=algorithms)
            except InvalidKeyIdError:
                token = jwt.decode(id_token, await self.keys(refresh=True), algorithms=algorithms)
            claims = token.claims
            jwt.JWTClaimsRegistry(
                leeway=self.hub.settings.access.oidc_clock_skew_s,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.config.client_id},
                exp={"essential": True},
                iat={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(claims)
        except JoseError as exc:
            log.warning("ID token refused", extra={"idp": self.name, "reason": exc.error})
            raise _refused(f"{exc.error}: {exc.description or ''}".rstrip(": ")) from exc
        except ValueError as exc:  # malformed compact serialization
            raise _refused(f"malformed token: {exc}") from exc
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.config.client_id:
            raise _refused("azp does not name this client")
        acr = claims.get("acr")
        return EidIdentity(
            idp=self.name, subject=str(claims["sub"]), acr=acr,
            level=self.config.acr_levels.get(acr) if isinstance(acr, str) else None,
            given_name=claims.get("given_name"), family_name=claims.get("family_name"),
            birthdate=claims.get("birthdate"), claims=dict(claims),
            person_id=_person_id(claims, self.config.person_id_claim),
        )


def _person_id(claims: dict[str, Any], claim: str | None) -> str | None:
    value = claims.get(claim) if claim else None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


class OidcClients:
    """A client for each configured identity provider, by name."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._clients = {name: OidcClient(hub, name, config) for name, config in hub.settings.access.idps.items()}

    def get(self, name: str) -> OidcClient:
        client = self._clients.get(name)
        if client is None:
            known = ", ".join(sorted(self._clients)) or "none configured"
            raise NotFound(f"no identity provider {name!r} (known: {known})")
        return client
