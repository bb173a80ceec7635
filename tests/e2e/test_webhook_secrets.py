"""Webhook signing secrets sealed at rest (encryption on), on SQLite and PostgreSQL: the stored
column never holds the secret, deliveries are still signed with it (the receiver verifies),
rotation seals the new one, and a sealed secret moved to another endpoint does not open; the
queued payloads are sealed too, and open for every attempt; a data key rotation re-seals
payloads and secrets."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from parley.config import Settings
from parley.governance.auth import TenantRole
from parley.governance.crypto.columns import JSON_MARK, KEYRING, TEXT_MARK
from parley.governance.crypto.envelope import key_version
from parley.governance.crypto.rotate import rotate_data_keys
from parley.storage import models as m
from tests.fakes.webhook_receiver import Receiver, running_receiver
from tests.support import RunningServer, start_server


@pytest.fixture
async def sealed(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    settings = settings_factory(
        database_url=database_url,
        master_key=base64.b64encode(os.urandom(32)).decode(),
        webhook_allow_private=True,
        webhook_retry_base=0.05,
        webhook_retry_max=0.2,
        webhook_max_attempts=1,
        feed_poll_interval=0.1,
    )
    async with start_server(settings) as running:
        yield running


def admin(server: RunningServer) -> httpx.AsyncClient:
    token = server.token("root", "acme", tenant_role=TenantRole.ADMIN)
    return httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


async def stored_secret(server: RunningServer, hook_id: str) -> str:
    """The column as stored (a plain column select: nothing opens it)."""

    def read(s: Session) -> str:
        q = select(m.Webhook.secret).where(m.Webhook.id == hook_id, m.Webhook.tenant_id == "acme")
        return str(s.scalar(q))

    value: str = await server.app.state.db.read(read)
    return value


async def send(server: RunningServer, sid: str, text: str) -> None:
    async with server.http() as h:
        r = await h.post(f"/sessions/{sid}/messages", json={"text": text})
        assert r.status_code == 201, r.text


async def deliveries(h: httpx.AsyncClient, hook_id: str, count: int) -> list[dict[str, Any]]:
    """The endpoint's deliveries once ``count`` of them are no longer pending."""
    async with asyncio.timeout(10):
        while True:
            items: list[dict[str, Any]] = (await h.get(f"/webhooks/{hook_id}/deliveries")).json()[
                "items"
            ]
            if sum(i["status"] != "pending" for i in items) >= count:
                return items
            await asyncio.sleep(0.05)


async def test_secrets_are_sealed_at_rest_and_deliveries_still_verify(
    sealed: RunningServer,
) -> None:
    sid = await sealed.create_session()
    async with running_receiver(Receiver()) as rx, admin(sealed) as h:
        r = await h.post("/webhooks", json={"url": rx.url, "events": ["message.created"]})
        assert r.status_code == 201, r.text
        hook = r.json()
        secret = hook["secret"]
        assert secret.startswith("whsec_")
        stored = await stored_secret(sealed, hook["id"])
        assert stored.startswith(TEXT_MARK)
        assert secret not in stored
        assert secret[6:] not in stored
        assert len(stored) <= 128, "fits the existing column"
        assert "secret" not in (await h.get(f"/webhooks/{hook['id']}")).json()

        rx.secret = secret
        await send(sealed, sid, "one")
        [first] = await rx.wait_for(1)
        assert first.signature_ok, "signed with the plaintext secret"

        r = await h.patch(f"/webhooks/{hook['id']}", json={"rotate_secret": True})
        assert r.status_code == 200, r.text
        rotated = r.json()["secret"]
        assert rotated != secret
        restored = await stored_secret(sealed, hook["id"])
        assert restored.startswith(TEXT_MARK)
        assert rotated not in restored
        assert restored != stored
        await send(sealed, sid, "two")
        second = (await rx.wait_for(2))[1]
        assert not second.signature_ok, "the old secret no longer verifies"
        rx.secret = rotated
        await send(sealed, sid, "three")
        third = (await rx.wait_for(3))[2]
        assert third.signature_ok

        # A sealed secret is bound to its endpoint: copied onto another, it does not open,
        # and that endpoint's deliveries fail with the reason instead of going out unsigned.
        r = await h.post("/webhooks", json={"url": rx.url + "/b", "events": ["message.created"]})
        other = r.json()

        def copy(s: Session) -> None:
            s.execute(
                update(m.Webhook)
                .where(m.Webhook.id == other["id"], m.Webhook.tenant_id == "acme")
                .values(secret=restored)
            )

        await sealed.app.state.db.write(copy)
        await send(sealed, sid, "four")
        [failed] = await deliveries(h, other["id"], 1)
        assert failed["status"] == "failed"
        assert failed["last_error"].startswith("the endpoint's signing secret does not open")
        assert all(req.path == "/hook" for req in rx.requests), "nothing went to /hook/b"


async def stored_payloads(server: RunningServer, hook_id: str) -> dict[str, Any]:
    """Delivery id -> the payload column as stored (a plain column select: nothing opens it)."""

    def read(s: Session) -> dict[str, Any]:
        q = select(m.WebhookDelivery.id, m.WebhookDelivery.payload).where(
            m.WebhookDelivery.webhook_id == hook_id, m.WebhookDelivery.tenant_id == "acme"
        )
        return {str(ident): value for ident, value in s.execute(q).all()}

    rows: dict[str, Any] = await server.app.state.db.read(read)
    return rows


def payload_version(stored: Any) -> int | None:
    assert set(stored) == {JSON_MARK}, stored
    return key_version(base64.b64decode(stored[JSON_MARK]))


async def test_delivery_payloads_are_sealed_at_rest_and_open_for_every_attempt(
    sealed: RunningServer,
) -> None:
    secret_text = "ultramarine-webhook-body"
    sid = await sealed.create_session()
    async with running_receiver(Receiver()) as rx, admin(sealed) as h:
        r = await h.post("/webhooks", json={"url": rx.url, "events": ["message.created"]})
        hook = r.json()
        rx.secret = hook["secret"]
        await send(sealed, sid, secret_text)  # queued by the dispatcher (a bulk insert)
        [first] = await rx.wait_for(1)
        assert first.signature_ok
        assert first.json["data"]["message"]["text"] == secret_text
        assert (await h.post(f"/webhooks/{hook['id']}/test")).status_code == 202  # an ORM insert
        ping = (await rx.wait_for(2))[1]
        assert ping.json["type"] == "webhook.test"

        stored = await stored_payloads(sealed, hook["id"])
        assert set(stored) == {first.delivery_id, ping.delivery_id}
        assert secret_text not in str(stored)
        assert {payload_version(v) for v in stored.values()} == {1}

        # A redelivery opens the stored payload: the same body, byte for byte.
        url = f"/webhooks/{hook['id']}/deliveries/{first.delivery_id}/redeliver"
        assert (await h.post(url)).status_code == 202
        again = (await rx.wait_for(3))[2]
        assert again.body == first.body
        assert again.signature_ok

        # Rotating the data keys re-seals payloads under the new version; they still open.
        db = sealed.app.state.db
        totals = await rotate_data_keys(db, db.info[KEYRING], lambda _line: None)
        assert (totals["deliveries"], totals["secrets"]) == (2, 1)
        restored = await stored_payloads(sealed, hook["id"])
        assert {payload_version(v) for v in restored.values()} == {2}
        secret = await stored_secret(sealed, hook["id"])
        assert key_version(base64.b64decode(secret[len(TEXT_MARK) :])) == 2
        assert (await h.post(url)).status_code == 202
        last = (await rx.wait_for(4))[3]
        assert last.body == first.body
        assert last.signature_ok, "signed with the same secret, opened under the new version"
