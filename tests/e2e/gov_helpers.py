"""Helpers shared by the governance-data end-to-end tests."""

from __future__ import annotations

import httpx

from parley.governance.auth import TenantRole
from tests.support import DEFAULT_TIMEOUT, RunningServer


def client(server: RunningServer, bearer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=DEFAULT_TIMEOUT,
    )


def admin(server: RunningServer, user: str = "root", tenant: str = "acme") -> httpx.AsyncClient:
    """A REST client for a tenant administrator."""
    return client(server, server.token(user, tenant, tenant_role=TenantRole.ADMIN))
