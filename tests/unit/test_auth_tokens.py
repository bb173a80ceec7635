"""Token claims: the tenant role travels in the token and defaults to member; verified tokens
are remembered but still expire."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from parley.errors import AuthError
from parley.governance.auth import TenantRole, TokenVerifier, create_token, verify_token

KEY = "k" * 40


def test_tenant_role_round_trips_and_defaults_to_member() -> None:
    admin = verify_token(
        KEY, create_token(KEY, user_id="ann", tenant_id="acme", tenant_role=TenantRole.ADMIN)
    )
    member = verify_token(KEY, create_token(KEY, user_id="bob", tenant_id="acme"))
    assert admin.is_admin
    assert admin.tenant_role is TenantRole.ADMIN
    assert not member.is_admin
    assert member.tenant_role is TenantRole.MEMBER


def test_a_token_without_role_claim_is_a_member() -> None:
    legacy = jwt.encode({"iss": "parley", "sub": "old", "tid": "acme", "iat": 1}, KEY, "HS256")
    assert verify_token(KEY, legacy).tenant_role is TenantRole.MEMBER


def test_an_unknown_role_is_refused() -> None:
    forged = jwt.encode(
        {"iss": "parley", "sub": "eve", "tid": "acme", "iat": 1, "role": "root"}, KEY, "HS256"
    )
    with pytest.raises(AuthError, match="unknown tenant role"):
        verify_token(KEY, forged)


async def test_a_remembered_token_still_expires() -> None:
    verifier = TokenVerifier(KEY)
    token = create_token(KEY, user_id="ann", tenant_id="acme", ttl_seconds=1)
    principal, exp = await verifier.verify_expiry(token)
    assert principal.user_id == "ann"
    assert (await verifier.verify_expiry(token)) == (principal, exp)  # answered from memory
    assert exp is not None
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(AuthError, match="token expired"):
        await verifier.verify_expiry(token)
    with pytest.raises(AuthError, match="invalid token"):
        await verifier.verify_expiry(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
