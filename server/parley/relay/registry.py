"""Which provider client (and so which key and base URL) serves a tenant's generation.

Keys come from two places, both under the operator's control:

* the environment: ``PARLEY_RELAY_OPENAI_API_KEY`` (or the standard ``OPENAI_API_KEY``),
  ``PARLEY_RELAY_ANTHROPIC_API_KEY`` (or ``ANTHROPIC_API_KEY``),
  ``PARLEY_RELAY_COMPATIBLE_API_KEY``, with their base URLs (``PARLEY_RELAY_*_BASE_URL``);
* the per-tenant credentials file (``PARLEY_RELAY_CREDENTIALS_FILE``), re-read when it changes::

      {"tenants": {"acme": {"openai": {"api_key": "...", "base_url": "..."}}}}

A tenant entry wins over the environment for that tenant and provider. A key is only ever sent
to the base URL configured beside it: an environment key never goes to a tenant's base URL.
Base URLs are never taken from users (assistants name a provider kind, not a server), so
nobody can make the server call an address the operator did not configure.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from parley.config import Settings
from parley.relay.providers.anthropic import AnthropicProvider
from parley.relay.providers.base import Provider
from parley.relay.providers.openai_chat import OpenAIChatProvider
from parley.relay.providers.openai_responses import OpenAIResponsesProvider
from parley.relay.providers.scripted import ScriptedProvider

log = structlog.get_logger("parley.relay")

# The provider SDKs, by kind. Importing one takes about a second (more than half of the
# server's start-up, and of every CLI command's), so it happens in a thread, and only where
# needed: at start-up for the SDKs this process is configured for (``ProviderRegistry.warm``),
# else on first use (``ProviderRegistry.provider``). On the event loop it would stall every
# connection and lease renewal for that long.
SDK_MODULES = {
    "openai": "openai",
    "openai_responses": "openai",
    "openai_compatible": "openai",
    "anthropic": "anthropic",
}

ENV_KINDS = {
    "openai": "openai",
    "openai_responses": "openai",
    "anthropic": "anthropic",
    "openai_compatible": "compatible",
}


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str | None
    base_url: str | None

    def __repr__(self) -> str:  # never print the key, not even in a traceback
        return f"Credentials(api_key={'set' if self.api_key else None}, base_url={self.base_url!r})"


class CredentialsFile:
    """The per-tenant credentials file, re-read when its modification time changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime: float | None = None
        self._data: dict[str, Any] = {}

    def lookup(self, tenant_id: str, section: str) -> Credentials | None:
        """The tenant's entry for ``section`` (openai, anthropic, compatible), if any."""
        self._reload()
        tenants = self._data.get("tenants")
        entry = tenants.get(tenant_id, {}).get(section) if isinstance(tenants, dict) else None
        if not isinstance(entry, dict):
            return None
        key, url = entry.get("api_key"), entry.get("base_url")
        return Credentials(
            key if isinstance(key, str) and key else None,
            url if isinstance(url, str) and url else None,
        )

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            self._data, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        try:
            data = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            # The error names the file, never its content: the content holds keys.
            log.error(
                "relay credentials file unreadable",
                path=str(self.path),
                error=type(exc).__name__,
            )
            return
        self._data = data if isinstance(data, dict) else {}
        self._mtime = mtime
        log.info("relay credentials loaded", tenants=len(self._data.get("tenants") or {}))


class ProviderRegistry:
    """Builds and caches one provider client per (kind, base URL, key)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.credentials = CredentialsFile(settings.relay_credentials_file)
        self._cache: dict[tuple[str, str | None, str | None], Provider] = {}
        self._imports: dict[str, asyncio.Task[object]] = {}

    async def warm(self) -> None:
        """Import, in threads, the SDKs of the providers this process has keys, base URLs or
        a credentials file for: a configured process starts a second later, and its first
        answer does not wait for an import. Others import on first use."""
        s = self.settings
        if s.relay_credentials_file is not None:
            wanted = set(SDK_MODULES.values())
        else:
            wanted = set()
            if s.relay_openai_api_key or s.relay_openai_base_url or s.relay_compatible_api_key:
                wanted.add("openai")
            if s.relay_anthropic_api_key or s.relay_anthropic_base_url:
                wanted.add("anthropic")
        await asyncio.gather(*(self._import(module) for module in sorted(wanted)))

    def _import(self, module: str) -> asyncio.Task[object]:
        task = self._imports.get(module)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(importlib.import_module, module), name=f"import-{module}"
            )
            self._imports[module] = task
        return task

    def _env(self, section: str) -> Credentials:
        s = self.settings
        if section == "openai":
            key, url = s.relay_openai_api_key, s.relay_openai_base_url
        elif section == "anthropic":
            key, url = s.relay_anthropic_api_key, s.relay_anthropic_base_url
        else:
            key, url = s.relay_compatible_api_key, s.relay_compatible_base_url
        return Credentials(key.get_secret_value() if key is not None else None, url)

    def credentials_for(self, kind: str, tenant_id: str) -> Credentials:
        """The tenant's own key and base URL for ``kind``, else the environment's (whole)."""
        section = ENV_KINDS[kind]
        return self.credentials.lookup(tenant_id, section) or self._env(section)

    async def provider(self, kind: str, tenant_id: str) -> Provider:
        """:meth:`get`, once the kind's SDK is imported (in a thread, by :meth:`warm` or now)."""
        module = SDK_MODULES.get(kind)
        if module is not None:
            await self._import(module)
        return self.get(kind, tenant_id)

    def get(self, kind: str, tenant_id: str) -> Provider:
        """The provider client for ``kind`` as ``tenant_id`` uses it (importing its SDK here,
        on the caller's thread, when :meth:`provider` has not)."""
        if kind == "scripted":
            creds = Credentials(None, None)
        else:
            creds = self.credentials_for(kind, tenant_id)
        cache_key = (kind, creds.base_url, creds.api_key)
        provider = self._cache.get(cache_key)
        if provider is None:
            provider = self._build(kind, creds)
            self._cache[cache_key] = provider
        return provider

    def _build(self, kind: str, creds: Credentials) -> Provider:
        s = self.settings
        # The SDK's read timeout must not cut the wait for the first token short; the relay
        # enforces both its first-token and idle timeouts itself.
        idle = max(s.relay_idle_timeout, s.relay_first_token_timeout)
        connect = s.relay_connect_timeout
        if kind == "scripted":
            return ScriptedProvider()
        if kind in ("openai", "openai_compatible"):
            return OpenAIChatProvider(
                kind=kind,
                api_key=creds.api_key,
                base_url=creds.base_url,
                compatible=kind == "openai_compatible",
                timeout=idle,
                connect_timeout=connect,
            )
        if kind == "openai_responses":
            return OpenAIResponsesProvider(
                api_key=creds.api_key,
                base_url=creds.base_url,
                timeout=idle,
                connect_timeout=connect,
            )
        if kind == "anthropic":
            return AnthropicProvider(
                api_key=creds.api_key,
                base_url=creds.base_url,
                timeout=idle,
                connect_timeout=connect,
            )
        raise ValueError(f"unknown provider kind {kind!r}")

    def secrets(self) -> list[str]:
        """Every key this registry may use, for scrubbing text that leaves the relay."""
        out = [c.api_key for c in (self._env(k) for k in ("openai", "anthropic", "compatible"))]
        out += [k[2] for k in self._cache]
        return [k for k in out if k]

    async def aclose(self) -> None:
        for provider in self._cache.values():
            try:
                await provider.aclose()
            except Exception as exc:  # closing pooled sockets; nothing to recover
                log.debug("closing a provider client failed", error=str(exc))
        self._cache.clear()
