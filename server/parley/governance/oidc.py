"""Single sign-on: tokens of an OpenID Connect provider, verified by its published keys (JWKS)
and mapped to a Parley principal (tenant, user, name, tenant role).

Keys are fetched from ``PARLEY_OIDC_JWKS_URL`` or, when unset, from the ``jwks_uri`` of the
issuer's ``/.well-known/openid-configuration``. They are cached for an hour; a token naming a
key id the cache does not know triggers one refetch (at most one per
``PARLEY_OIDC_JWKS_MIN_REFRESH`` seconds, so garbage tokens cannot make us hammer the
provider), which is how provider key rotation is picked up without a restart.

Only ``PARLEY_OIDC_ISSUER``'s tokens are accepted, and only for ``PARLEY_OIDC_AUDIENCE``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import structlog

from parley.config import Settings
from parley.errors import AuthError
from parley.governance.auth import Principal, TenantRole, UserKind, valid_identifier

log = structlog.get_logger("parley.auth")
CACHE_SECONDS = 3600.0
FETCH_TIMEOUT = 5.0


class OidcVerifier:
    """Verifies tokens of one OpenID Connect issuer (RS256/ES256 by default)."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.oidc_issuer or not settings.oidc_audience:
            raise ValueError("OIDC needs PARLEY_OIDC_ISSUER and PARLEY_OIDC_AUDIENCE")
        self.issuer: str = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.settings = settings
        self._client = client or httpx.AsyncClient(timeout=FETCH_TIMEOUT)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._client.aclose()

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`AuthError` with the precise reason."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.settings.oidc_algorithms:
            raise AuthError(
                f"invalid token: algorithm {alg!r} is not accepted for single sign-on "
                f"(accepted: {', '.join(self.settings.oidc_algorithms)})"
            )
        if not isinstance(kid, str) or not kid:
            raise AuthError("invalid token: the header names no key id (kid)")
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.settings.oidc_leeway,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError(f"invalid token: audience is not {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise AuthError(f"invalid token: issuer is not {self.issuer!r}") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return self.principal(claims)

    def principal(self, claims: dict[str, Any]) -> Principal:
        """Map verified claims to a principal with the configured claim names."""
        s = self.settings
        user_id = _claim(claims, s.oidc_user_claim)
        if not isinstance(user_id, str) or not valid_identifier(user_id):
            raise AuthError(
                f"invalid token: claim {s.oidc_user_claim!r} is not a usable user id "
                "(1-128 letters, digits or ._@+-)"
            )
        tenant = _claim(claims, s.oidc_tenant_claim) or s.oidc_default_tenant
        if not isinstance(tenant, str) or not valid_identifier(tenant):
            raise AuthError(
                f"invalid token: claim {s.oidc_tenant_claim!r} names no valid tenant "
                "and no default tenant is configured"
            )
        roles = _claim(claims, s.oidc_role_claim)
        held = (
            {roles} if isinstance(roles, str) else set(roles) if isinstance(roles, list) else set()
        )
        admin = any(isinstance(r, str) and r in s.oidc_admin_roles for r in held)
        name = _claim(claims, s.oidc_name_claim) or claims.get("preferred_username") or user_id
        name = "".join(ch for ch in str(name) if ch.isprintable()).strip() or user_id
        return Principal(
            tenant_id=tenant,
            user_id=user_id,
            name=name[:200],
            kind=UserKind.HUMAN,
            tenant_role=TenantRole.ADMIN if admin else TenantRole.MEMBER,
        )

    async def _key(self, kid: str) -> jwt.PyJWK:
        stale = time.monotonic() - self._fetched_at > CACHE_SECONDS
        if kid not in self._keys or stale:
            async with self._lock:
                since = time.monotonic() - self._fetched_at
                if (
                    kid not in self._keys and since > self.settings.oidc_jwks_min_refresh
                ) or since > CACHE_SECONDS:
                    await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise AuthError(
                f"invalid token: signing key {kid[:80]!r} is not in the provider's JWKS"
            )
        return key

    async def _refresh(self) -> None:
        try:
            url = self.settings.oidc_jwks_url or await self._discover()
            response = await self._client.get(url)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError, AuthError) as exc:
            log.warning("fetching the OIDC keys failed", error=str(exc))
            if not self._keys:
                raise AuthError(
                    "the identity provider's keys could not be fetched; try again"
                ) from None
            return  # keep serving with the keys we have
        self._keys = {k.key_id: k for k in keys.keys if k.key_id}
        self._fetched_at = time.monotonic()

    async def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        response = await self._client.get(url)
        response.raise_for_status()
        jwks_uri = response.json().get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise AuthError("the identity provider's discovery document has no jwks_uri")
        return jwks_uri


def _claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
