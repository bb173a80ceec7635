"""Invitations and share links end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from parley.ids import new_id
from tests.support import RunningServer


async def private_session(server: RunningServer) -> str:
    async with server.http("alice") as h:
        r = await h.post("/sessions", json={"title": "t", "visibility": "private"})
        assert r.status_code == 201, r.text
        sid: str = r.json()["id"]
        return sid


async def seen(server: RunningServer, *users: str, tenant: str = "acme") -> None:
    for user in users:
        async with server.http(user, tenant) as h:
            assert (await h.get("/me")).status_code == 200


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code, err
    return err


async def until_expired(h: httpx.AsyncClient, path: str, item_id: str) -> None:
    """Read the listing at ``path`` until the item's state is ``expired`` (at most ~10 s)."""
    for _ in range(100):
        items = (await h.get(path)).json()["items"]
        if [i["state"] for i in items if i["id"] == item_id] == ["expired"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("never expired")


async def test_an_invitation_makes_the_invitee_a_participant(server: RunningServer) -> None:
    sid = await private_session(server)
    await seen(server, "bob", "eve")
    async with server.http("alice") as h:
        r = await h.post(
            f"/sessions/{sid}/invitations", json={"user_id": "bob", "role": "commenter"}
        )
        assert r.status_code == 201, r.text
        inv = r.json()
        assert (inv["user_id"], inv["role"], inv["state"]) == ("bob", "commenter", "active")
        items = (await h.get(f"/sessions/{sid}/invitations")).json()["items"]
        assert [i["id"] for i in items] == [inv["id"]]
        error(
            await h.post(f"/sessions/{sid}/invitations", json={"user_id": "nobody"}),
            404,
            "not_found",
        )
    async with server.http("eve") as h:  # someone else cannot accept it, nor see it
        error(await h.post(f"/invitations/{inv['id']}/accept"), 404, "not_found")
        assert (await h.get("/invitations")).json()["items"] == []
        error(await h.get(f"/sessions/{sid}/invitations"), 404, "not_found")
    async with server.http("bob") as h:
        assert [i["id"] for i in (await h.get("/invitations")).json()["items"]] == [inv["id"]]
        r = await h.post(f"/invitations/{inv['id']}/accept")
        assert r.status_code == 200, r.text
        assert r.json()["participant"]["role"] == "commenter"
        assert (await h.get(f"/sessions/{sid}/messages")).status_code == 200
        error(await h.post(f"/invitations/{inv['id']}/accept"), 410, "used_up")
        # a commenter may not invite
        error(
            await h.post(f"/sessions/{sid}/invitations", json={"user_id": "eve"}), 403, "forbidden"
        )


async def test_revoked_and_expired_invitations_say_so(server: RunningServer) -> None:
    sid = await private_session(server)
    await seen(server, "bob")
    async with server.http("alice") as h:
        revoked = (await h.post(f"/sessions/{sid}/invitations", json={"user_id": "bob"})).json()
        r = await h.delete(f"/sessions/{sid}/invitations/{revoked['id']}")
        assert r.status_code == 204, r.text
        short = (
            await h.post(f"/sessions/{sid}/invitations", json={"user_id": "bob", "expires_in": 1})
        ).json()
        error(
            await h.post(f"/sessions/{sid}/invitations", json={"user_id": "bob", "expires_in": 0}),
            422,
            "invalid_request",
        )
        await until_expired(h, f"/sessions/{sid}/invitations", short["id"])
    async with server.http("bob") as h:
        error(await h.post(f"/invitations/{revoked['id']}/accept"), 410, "revoked")
        error(await h.post(f"/invitations/{short['id']}/accept"), 410, "expired")
        error(await h.get(f"/sessions/{sid}"), 404, "not_found")


async def test_an_invitation_brings_back_a_removed_user(server: RunningServer) -> None:
    async with server.http("alice") as h:
        sid = (await h.post("/sessions", json={"title": "open"})).json()["id"]
    async with server.http("bob") as h:
        assert (await h.post(f"/sessions/{sid}/messages", json={"text": "hi"})).status_code == 201
    async with server.http("alice") as h:
        assert (await h.delete(f"/sessions/{sid}/participants/bob")).status_code == 204
        link = (await h.post(f"/sessions/{sid}/share-links", json={"role": "editor"})).json()
        inv = (await h.post(f"/sessions/{sid}/invitations", json={"user_id": "bob"})).json()
    async with server.http("bob") as h:
        # a share link does not undo a removal; an invitation does
        error(await h.post(f"/share-links/{link['token']}/redeem"), 403, "forbidden")
        assert (await h.post(f"/invitations/{inv['id']}/accept")).status_code == 200
        assert (await h.post(f"/sessions/{sid}/messages", json={"text": "re"})).status_code == 201


async def test_share_links_join_with_their_role_until_used_up(server: RunningServer) -> None:
    sid = await private_session(server)
    await seen(server, "bob", "carol", "dan")
    async with server.http("alice") as h:
        r = await h.post(f"/sessions/{sid}/share-links", json={"role": "editor", "max_uses": 2})
        assert r.status_code == 201, r.text
        link = r.json()
        token = link["token"]
        assert len(token) >= 32
        assert (link["uses"], link["state"]) == (0, "active")
        listed = (await h.get(f"/sessions/{sid}/share-links")).json()["items"]
        assert [x["id"] for x in listed] == [link["id"]]
        assert "token" not in listed[0], "the secret is shown once"
        error(
            await h.post(f"/sessions/{sid}/share-links", json={"role": "owner"}),
            422,
            "invalid_request",
        )
    for user in ("bob", "carol"):
        async with server.http(user) as h:
            r = await h.post(f"/share-links/{token}/redeem")
            assert r.status_code == 200, r.text
            assert r.json() == {
                "session": sid,
                "participant": {**r.json()["participant"], "user_id": user, "role": "editor"},
            }
            assert (
                await h.post(f"/sessions/{sid}/messages", json={"text": "in"})
            ).status_code == 201
            # redeeming again changes nothing and uses nothing
            assert (await h.post(f"/share-links/{token}/redeem")).status_code == 200
    async with server.http("dan") as h:
        err = error(await h.post(f"/share-links/{token}/redeem"), 410, "used_up")
        assert "2 times" in err["message"]
    async with server.http("alice") as h:
        assert (await h.get(f"/sessions/{sid}/share-links")).json()["items"][0]["uses"] == 2


async def test_revoked_expired_and_foreign_links(server: RunningServer) -> None:
    sid = await private_session(server)
    async with server.http("alice") as h:
        revoked = (await h.post(f"/sessions/{sid}/share-links", json={})).json()
        r = await h.delete(f"/sessions/{sid}/share-links/{revoked['id']}")
        assert r.status_code == 204, r.text
        error(await h.delete(f"/sessions/{sid}/share-links/{new_id()}"), 404, "not_found")
        short = (await h.post(f"/sessions/{sid}/share-links", json={"expires_in": 1})).json()
        live = (await h.post(f"/sessions/{sid}/share-links", json={})).json()
        await until_expired(h, f"/sessions/{sid}/share-links", short["id"])
    async with server.http("bob") as h:
        error(await h.post(f"/share-links/{revoked['token']}/redeem"), 410, "revoked")
        error(await h.post(f"/share-links/{short['token']}/redeem"), 410, "expired")
    # Another tenant's link is exactly a link that does not exist.
    async with server.http("bob", "globex") as h:
        real = await h.post(f"/share-links/{live['token']}/redeem")
        fake = await h.post(f"/share-links/{'x' * 43}/redeem")
        bad = await h.post("/share-links/%00/redeem")
        for r in (real, fake, bad):
            error(r, 404, "not_found")
        assert real.json() == fake.json() == bad.json()
    async with server.http("alice") as h:
        parts = (await h.get(f"/sessions/{sid}/participants")).json()["items"]
        assert [p["user_id"] for p in parts] == ["alice"]
