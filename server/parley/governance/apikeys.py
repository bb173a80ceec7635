"""API keys for bots: ``pk_<id>_<secret>``, stored as the SHA-256 of the secret, scoped, revocable.

A key authenticates as its bot user (kind ``bot``, never a tenant admin) wherever a bearer token
is accepted. Lookups are cached per process for ``api_key_cache_seconds`` (default 2 s): a
revocation is refused at once by the process that revoked the key, which also closes the
key's open sockets, and by every other process within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.errors import AuthError, ErrorCode, Forbidden, InvalidRequest, NotFound
from parley.governance.auth import Principal, TenantRole, UserKind, valid_identifier
from parley.governance.scoping import all_tenants
from parley.ids import iso, utcnow
from parley.storage import models as m
from parley.storage.database import Database

PREFIX = "pk_"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY_RE = re.compile(r"^pk_([a-z0-9]{12})_([A-Za-z0-9_-]{32,128})$")
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Scope:
    """What a key may do. Tokens (not keys) have no scope limit."""

    SESSIONS_READ = "sessions:read"  # read sessions, messages, events; subscribe; documents
    SESSIONS_WRITE = "sessions:write"  # create and change sessions and their participants
    MESSAGES_WRITE = "messages:write"  # post, edit and delete messages
    ASSISTANTS_ASK = "assistants:ask"  # ask and stop assistants

    ALL = frozenset({SESSIONS_READ, SESSIONS_WRITE, MESSAGES_WRITE, ASSISTANTS_ASK})


# The scope each socket frame needs.
FRAME_SCOPES = {
    "subscribe": Scope.SESSIONS_READ,
    "unsubscribe": Scope.SESSIONS_READ,
    "typing": Scope.SESSIONS_READ,
    "ping": Scope.SESSIONS_READ,
    "streams": Scope.SESSIONS_READ,
    "doc_join": Scope.SESSIONS_READ,
    "doc": Scope.SESSIONS_READ,  # document writes are bounded by the session role as well
    "doc_leave": Scope.SESSIONS_READ,
    "send": Scope.MESSAGES_WRITE,
    "edit": Scope.MESSAGES_WRITE,
    "delete": Scope.MESSAGES_WRITE,
    "ask": Scope.ASSISTANTS_ASK,
    "stop": Scope.ASSISTANTS_ASK,
    "stream_start": Scope.MESSAGES_WRITE,  # a bot writing a message token by token
    "stream_delta": Scope.MESSAGES_WRITE,
    "stream_end": Scope.MESSAGES_WRITE,
    "feed_subscribe": Scope.SESSIONS_READ,  # the tenant feed shows only readable sessions
    "feed_unsubscribe": Scope.SESSIONS_READ,
}


def rest_scope(method: str, path: str) -> str:
    """The scope a REST request needs, from its method and path (below ``/api/v1``)."""
    if method in ("GET", "HEAD"):
        return Scope.SESSIONS_READ
    if "/messages" in path:
        return Scope.MESSAGES_WRITE
    if path.endswith(("/ask", "/stop")):
        return Scope.ASSISTANTS_ASK
    return Scope.SESSIONS_WRITE


def require_scope(p: Principal, scope: str) -> None:
    """Refuse a key that lacks ``scope`` (403 insufficient_scope)."""
    if p.scopes is not None and scope not in p.scopes:
        raise Forbidden(
            f"this API key lacks the scope {scope}",
            code=ErrorCode.INSUFFICIENT_SCOPE,
            details={"required": scope, "granted": sorted(p.scopes)},
        )


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_view(row: m.ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "user_id": row.user_id,
        "scopes": sorted(row.scopes),
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "last_used_at": iso(row.last_used_at),
        "revoked_at": iso(row.revoked_at),
        "prefix": f"{PREFIX}{row.id}_",
    }


@dataclass(slots=True)
class _Cached:
    expires: float
    principal: Principal | None  # None: unknown or revoked


class ApiKeys:
    """Creates, lists, revokes and resolves API keys (see the module docstring)."""

    def __init__(self, db: Database, *, cache_seconds: float = 2.0) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self._cache: dict[str, _Cached] = {}

    async def create(
        self, admin: Principal, *, name: str, scopes: list[str], user_id: str | None
    ) -> tuple[dict[str, Any], str]:
        """A new key for a bot user of the admin's tenant; the key string is returned only here."""
        unknown = sorted(set(scopes) - Scope.ALL)
        if unknown or not scopes:
            raise InvalidRequest(
                f"scopes must be a non-empty list of: {', '.join(sorted(Scope.ALL))}",
                details=[
                    {"field": "scopes", "problem": f"unknown: {unknown}" if unknown else "empty"}
                ],
            )
        key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        secret = secrets.token_urlsafe(32)
        bot = user_id or f"bot.{key_id}"
        if not valid_identifier(bot):
            raise InvalidRequest("user_id must be 1-128 letters, digits or ._@+-")
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            user = s.get(m.User, (admin.tenant_id, bot))
            if user is None:
                s.add(
                    m.User(
                        tenant_id=admin.tenant_id,
                        id=bot,
                        display_name=name,
                        kind=str(UserKind.BOT),
                        created_at=now,
                    )
                )
            elif user.kind != str(UserKind.BOT):
                raise InvalidRequest(f"user {bot!r} exists and is not a bot")
            row = m.ApiKey(
                id=key_id,
                tenant_id=admin.tenant_id,
                user_id=bot,
                name=name,
                scopes=sorted(set(scopes)),
                secret_hash=hash_secret(secret),
                created_by=admin.user_id,
                created_at=now,
            )
            s.add(row)
            return key_view(row)

        view = await self.db.write(work)
        return view, f"{PREFIX}{key_id}_{secret}"

    async def list(self, tenant_id: str) -> list[dict[str, Any]]:
        def work(s: Session) -> list[dict[str, Any]]:
            rows = s.scalars(
                select(m.ApiKey)
                .where(m.ApiKey.tenant_id == tenant_id)
                .order_by(m.ApiKey.created_at, m.ApiKey.id)
            ).all()
            return [key_view(r) for r in rows]

        return await self.db.read(work)

    async def revoke(self, tenant_id: str, key_id: str) -> dict[str, Any]:
        """Revoke a key of this tenant (another tenant's key is not found). Idempotent."""
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            row = (
                s.scalar(
                    select(m.ApiKey).where(m.ApiKey.id == key_id, m.ApiKey.tenant_id == tenant_id)
                )
                if len(key_id) <= 32
                else None
            )
            if row is None:
                raise NotFound(f"API key {key_id[:40]!r} not found")
            if row.revoked_at is None:
                row.revoked_at = now
            return key_view(row)

        view = await self.db.write(work)
        for token, cached in list(self._cache.items()):
            if cached.principal is not None and cached.principal.key_id == key_id:
                del self._cache[token]
        return view

    async def resolve(self, key: str) -> Principal:
        """The bot principal of a valid, unrevoked key; :class:`AuthError` otherwise."""
        digest = hash_secret(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is None or cached.expires <= now:
            cached = _Cached(now + self.cache_seconds, await self._lookup(key))
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = cached
        if cached.principal is None:
            raise AuthError("invalid or revoked API key")
        return cached.principal

    async def _lookup(self, key: str) -> Principal | None:
        match = _KEY_RE.match(key)
        if match is None:
            return None
        key_id, secret = match.groups()
        now = utcnow()

        def work(s: Session) -> Principal | None:
            row = s.get(m.ApiKey, key_id)
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
                return None
            if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
                row.last_used_at = now
            user = s.get(m.User, (row.tenant_id, row.user_id))
            return Principal(
                tenant_id=row.tenant_id,
                user_id=row.user_id,
                name=user.display_name if user else row.name,
                kind=UserKind.BOT,
                tenant_role=TenantRole.MEMBER,
                scopes=frozenset(row.scopes),
                key_id=row.id,
            )

        # The key's id is globally unique and names its tenant: the lookup precedes any tenant.
        return await self.db.write(all_tenants("an API key is found by its own id", work))
