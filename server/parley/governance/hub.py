"""Governance as the wiring sees it: one object with the parts the endpoints call."""

from __future__ import annotations

from parley.config import Settings
from parley.errors import AuthError
from parley.governance.apikeys import PREFIX, ApiKeys
from parley.governance.auth import Principal, TokenVerifier
from parley.governance.pii.detector import Detector
from parley.governance.pii.policy import ContentPolicy
from parley.governance.policies import Policies
from parley.governance.quotas import create_quota_store
from parley.governance.quotas.enforcer import Quotas
from parley.storage.database import Database


class Governance:
    """Policies, quotas, PII handling and API keys of one process."""

    def __init__(
        self, db: Database, settings: Settings, verifier: TokenVerifier | None = None
    ) -> None:
        self.settings = settings
        self.verifier = verifier or TokenVerifier(settings.signing_key)
        self.policies = Policies(db, settings)
        self.quotas = Quotas(create_quota_store(settings.broker_url), self.policies, db)
        regions = [r.strip().upper() for r in settings.pii_phone_regions.split(",") if r.strip()]
        self.content = ContentPolicy(Detector(regions))
        self.api_keys = ApiKeys(db, cache_seconds=settings.api_key_cache_seconds)

    async def start(self) -> None:
        await self.quotas.start()

    async def stop(self) -> None:
        await self.quotas.stop()

    async def authenticate(self, token: str) -> Principal:
        """The principal of a bearer credential: an API key (``pk_...``) or a signed token."""
        return (await self.authenticate_expiry(token))[0]

    async def authenticate_expiry(self, token: str) -> tuple[Principal, int | None]:
        """Like :meth:`authenticate`, also returning when the credential expires (Unix seconds;
        None for API keys and tokens without expiry): sockets close then unless refreshed."""
        if token.startswith(PREFIX):
            return await self.api_keys.resolve(token), None
        if not token:
            raise AuthError("empty token")
        return await self.verifier.verify_expiry(token)
