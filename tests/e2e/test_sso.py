"""Single sign-on end to end: tokens of a local OpenID Connect provider (discovery and JWKS over
real HTTP, RS256 and ES256 keys made here) accepted over REST and WebSocket, claims mapped to
tenant and role, and every bad token refused with a precise 401."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect

from parley.config import Settings
from tests.fakes.oidc_provider import Provider, SigningKey, running_provider
from tests.support import RunningServer, WsClient, start_server

RSA = SigningKey.rsa("rsa-1")
EC = SigningKey.ec("ec-1")


@pytest.fixture
async def idp() -> AsyncIterator[Provider]:
    async with running_provider(Provider(published=[RSA, EC])) as provider:
        yield provider


@pytest.fixture
async def sso(
    idp: Provider, database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    settings = settings_factory(
        database_url=database_url,
        oidc_issuer=idp.issuer,
        oidc_audience="parley-web",
        oidc_role_claim="realm_access.roles",
        oidc_admin_roles=["parley-admin"],
        oidc_jwks_min_refresh=0,
    )
    async with start_server(settings) as running:
        yield running


def client(server: RunningServer, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


async def test_provider_tokens_work_over_rest_and_socket(sso: RunningServer, idp: Provider) -> None:
    admin = idp.token(RSA, realm_access={"roles": ["parley-admin", "x"]})
    member = idp.token(EC, sub="bob@example.com", name="Bob")
    async with client(sso, admin) as a, client(sso, member) as b:
        r = await a.post("/sessions", json={"title": "via sso"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert r.json()["created_by"] == "ann"
        assert (await a.get("/webhooks")).status_code == 200, "the role claim made ann an admin"
        r = await b.get("/webhooks")
        assert r.status_code == 403, "no admin role: a member"
        r = await b.post(f"/sessions/{sid}/messages", json={"text": "hi from bob"})
        assert r.status_code == 201, r.text
        assert r.json()["message"]["author"] == "bob@example.com"
    async with connect(f"{sso.ws_url}?token={member}") as ws:
        c = WsClient(ws)
        welcome = await c.recv()
        assert welcome["type"] == "welcome"
        assert welcome["tenant"] == "acme"
        assert welcome["user"] == {"id": "bob@example.com", "name": "Bob", "kind": "human"}
        await c.subscribe(sid, since_seq=0)
    # Parley's own tokens still work next to SSO.
    async with sso.http() as h:
        assert (await h.get(f"/sessions/{sid}")).status_code == 200


async def test_bad_tokens_get_precise_401s(sso: RunningServer, idp: Provider) -> None:
    stranger = SigningKey.rsa("not-published")
    now = int(time.time())
    cases = {
        "wrong issuer": (idp.token(RSA, iss="https://evil.example"), "issuer is not"),
        "wrong audience": (idp.token(EC, aud="someone-else"), "audience is not"),
        "expired": (idp.token(RSA, iat=now - 3600, exp=now - 600), "token expired"),
        "unknown kid": (idp.token(stranger), "'not-published' is not in the provider's JWKS"),
        "no tenant": (idp.token(RSA, tid=None), "names no valid tenant"),
        "bad user id": (idp.token(RSA, sub="has spaces"), "not a usable user id"),
        "hs256 posing": (
            jwt.encode(
                {"iss": idp.issuer, "aud": "parley-web", "sub": "x", "tid": "acme"},
                "guessed-secret-guessed-secret-guessed",
                algorithm="HS256",
                headers={"kid": "rsa-1"},
            ),
            "invalid token",
        ),
        "no kid": (
            jwt.encode({"iss": idp.issuer}, RSA.private, algorithm="RS256"),
            "no key id",
        ),
        "forged signature": (idp.token(RSA)[:-8] + "AAAAAAAA", "invalid token"),
    }
    async with httpx.AsyncClient(base_url=sso.base_url + "/api/v1", timeout=10) as h:
        for label, (token, message) in cases.items():
            r = await h.get("/sessions", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, (label, r.text)
            assert r.json()["error"]["code"] == "unauthenticated", label
            assert message in r.json()["error"]["message"], (label, r.json())
    async with connect(f"{sso.ws_url}?token={cases['wrong audience'][0]}") as ws:
        c = WsClient(ws)
        err = await c.recv()
        assert err["type"] == "error"
        assert err["code"] == "unauthenticated"
        assert "audience" in err["message"]
        await ws.wait_closed()
        assert ws.close_code == 4001


async def test_rotated_provider_keys_are_fetched_on_first_use(
    sso: RunningServer, idp: Provider
) -> None:
    async with client(sso, idp.token(RSA)) as h:
        assert (await h.get("/sessions")).status_code == 200
    fetched = idp.fetches
    rotated = SigningKey.ec("ec-2")
    idp.published = [rotated]
    async with client(sso, idp.token(rotated, sub="cy")) as h:
        assert (await h.get("/sessions")).status_code == 200
    assert idp.fetches == fetched + 1
    async with client(sso, idp.token(RSA)) as h:
        r = await h.get("/sessions")
        assert r.status_code == 401, "a key the provider withdrew is refused"
