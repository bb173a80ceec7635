"""Bearer tokens (JWT, HS256) and the principal they stand for."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import jwt

from parley.errors import AuthError

ISSUER = "parley"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


class UserKind(StrEnum):
    HUMAN = "human"
    BOT = "bot"
    ASSISTANT = "assistant"


class TenantRole(StrEnum):
    """A user's standing in the whole tenant; session roles are separate (``sessions.rules``)."""

    ADMIN = "admin"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. Every query it causes is scoped to ``tenant_id``."""

    tenant_id: str
    user_id: str
    name: str
    kind: UserKind
    tenant_role: TenantRole = TenantRole.MEMBER
    # API keys (governance/apikeys.py): what the key may do (None: a token, no limit) and
    # which key it was, so a revocation can close its connections.
    scopes: frozenset[str] | None = None
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """Tenant administrators manage the tenant: its members, keys, policies and audit log."""
        return self.tenant_role is TenantRole.ADMIN


def valid_identifier(value: str) -> bool:
    """Tenant and user ids: 1-128 of letters, digits and ``._@+-``, starting alphanumeric."""
    return bool(_NAME_RE.match(value))


def create_token(
    key: str,
    *,
    user_id: str,
    tenant_id: str,
    name: str | None = None,
    kind: UserKind = UserKind.HUMAN,
    tenant_role: TenantRole = TenantRole.MEMBER,
    ttl_seconds: int | None = 30 * 24 * 3600,
) -> str:
    """Sign a token for ``user_id`` in ``tenant_id``. ``ttl_seconds=None`` never expires."""
    for label, value in (("user", user_id), ("tenant", tenant_id)):
        if not valid_identifier(value):
            raise ValueError(
                f"{label} id {value!r} must be 1-128 letters, digits or ._@+- "
                "and start with a letter or digit"
            )
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": user_id,
        "tid": tenant_id,
        "name": name or user_id,
        "kind": str(kind),
        "role": str(tenant_role),
        "iat": now,
    }
    if ttl_seconds is not None:
        claims["exp"] = now + ttl_seconds
    return jwt.encode(claims, key, algorithm="HS256")


def verify_token(key: str, token: str) -> Principal:
    """Check signature, expiry and claims. Raises :class:`AuthError` with the reason."""
    return verify_token_expiry(key, token)[0]


def verify_token_expiry(key: str, token: str) -> tuple[Principal, int | None]:
    """Like :func:`verify_token`, also returning the token's expiry (Unix seconds, None for a
    token that never expires): sockets close when it passes without a refresh."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["sub", "tid", "iat", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    user_id, tenant_id = claims.get("sub"), claims.get("tid")
    if not (isinstance(user_id, str) and isinstance(tenant_id, str)):
        raise AuthError("invalid token: sub and tid must be strings")
    if not (valid_identifier(user_id) and valid_identifier(tenant_id)):
        raise AuthError("invalid token: malformed user or tenant id")
    try:
        kind = UserKind(claims.get("kind", "human"))
    except ValueError:
        raise AuthError("invalid token: unknown user kind") from None
    try:
        tenant_role = TenantRole(claims.get("role", "member"))
    except ValueError:
        raise AuthError("invalid token: unknown tenant role") from None
    name = claims.get("name")
    if isinstance(name, str):
        name = "".join(ch for ch in name if ch.isprintable()).strip()
    if not isinstance(name, str) or not name:
        name = user_id
    principal = Principal(
        tenant_id=tenant_id, user_id=user_id, name=name[:200], kind=kind, tenant_role=tenant_role
    )
    exp = claims.get("exp")
    return principal, (int(exp) if isinstance(exp, int | float) else None)


class OidcTokens(Protocol):
    """Verifies tokens of one OpenID Connect issuer (``governance/oidc.py``)."""

    issuer: str

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`AuthError` with the reason otherwise."""


VERIFIED_CACHE = 10_000  # tokens remembered per process


class TokenVerifier:
    """Every place that accepts a bearer token asks this: Parley's own HS256 tokens, and
    tokens of the configured OpenID Connect provider when SSO is on."""

    def __init__(self, key: str, oidc: OidcTokens | None = None) -> None:
        self.key = key
        self.oidc = oidc
        # Parley tokens already verified: a reconnecting client presents the same token again,
        # and checking its signature and claims was a large part of each connect. Once valid,
        # only its expiry can change that (``iat`` and ``nbf`` only move into the past).
        self._verified: dict[str, tuple[Principal, int | None]] = {}

    async def verify(self, token: str) -> Principal:
        """The principal of ``token``; :class:`AuthError` with the precise reason otherwise.

        Tokens Parley signed (issuer ``parley``, HS256) are checked with the signing key; with
        SSO on, every other token goes to the provider's verifier, so its errors (wrong
        issuer, audience, unknown key) are the ones reported."""
        return (await self.verify_expiry(token))[0]

    async def verify_expiry(self, token: str) -> tuple[Principal, int | None]:
        """Like :meth:`verify`, also returning the token's expiry (Unix seconds, or None)."""
        if self.oidc is not None and not _is_parley_token(token):
            principal = await self.oidc.verify(token)
            # Verified just above, so its own ``exp`` claim can be trusted.
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
            return principal, exp if isinstance(exp, int) else None
        known = self._verified.get(token)
        if known is not None:
            if known[1] is not None and known[1] <= time.time():
                del self._verified[token]
                raise AuthError("token expired")
            return known
        verified = verify_token_expiry(self.key, token)
        if len(self._verified) >= VERIFIED_CACHE:
            self._verified.clear()
        self._verified[token] = verified
        return verified


def _is_parley_token(token: str) -> bool:
    """Read without checking anything, only to pick the verifier."""
    try:
        alg = jwt.get_unverified_header(token).get("alg")
        iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.InvalidTokenError:
        return True  # malformed: the Parley verifier explains why
    return alg == "HS256" and iss == ISSUER


def socket_token(params: dict[str, list[str]], headers: dict[bytes, bytes]) -> str | None:
    """A WebSocket's token: ``?token=`` in the URL, else an ``Authorization: Bearer`` header."""
    return params.get("token", [None])[0] or bearer_token(
        headers.get(b"authorization", b"").decode("latin-1") or None
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header value, if it is one."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
