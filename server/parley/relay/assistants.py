"""Assistants of a session: validation (no I/O), storage, and the cached lookup triggers use.

An assistant is a participant: it has its own user (kind ``assistant``, id
``assistant.<assistant id>``) and joins the session as an editor when it is added, so its
answers are ordinary messages and the participant events say who is in the room.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from parley.errors import Conflict, InvalidRequest, NotFound
from parley.governance.auth import Principal, UserKind
from parley.governance.policy import Action
from parley.ids import iso, new_id, utcnow
from parley.relay.providers import KINDS, params_for
from parley.relay.state import BusyPolicy
from parley.sessions import rules
from parley.sessions.queries import session_access, session_row
from parley.sessions.rules import Role
from parley.sessions.service import SessionService
from parley.storage import models as m

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
MAX_SYSTEM_PROMPT = 32_000
MAX_PARAMS_BYTES = 16 * 1024
USER_PREFIX = "assistant."


class Trigger(StrEnum):
    """When an assistant answers by itself (``ask`` always works)."""

    MENTION = "mention"  # a message by a person or bot containing @name
    MESSAGE = "message"  # every message by a person
    MANUAL = "manual"  # only when asked


@dataclass(frozen=True, slots=True)
class AssistantSpec:
    """An assistant as the relay runs it (a detached copy of the row)."""

    id: str
    tenant_id: str
    session_id: str
    name: str
    user_id: str
    provider: str
    model: str
    system_prompt: str
    params: dict[str, Any]
    trigger: Trigger
    busy_policy: BusyPolicy
    context_window: int | None
    max_output_tokens: int | None

    @classmethod
    def of(cls, row: m.Assistant) -> AssistantSpec:
        """A detached copy of a row (safe to use after its unit of work)."""
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            session_id=row.session_id,
            name=row.name,
            user_id=row.user_id,
            provider=row.provider,
            model=row.model,
            system_prompt=row.system_prompt,
            params=dict(row.params or {}),
            trigger=Trigger(row.trigger),
            busy_policy=BusyPolicy(row.busy_policy),
            context_window=row.context_window,
            max_output_tokens=row.max_output_tokens,
        )

    def principal(self) -> Principal:
        """Who the assistant's answers are written by."""
        return Principal(self.tenant_id, self.user_id, self.name, UserKind.ASSISTANT)

    def mentioned_in(self, text: str) -> bool:
        """True when ``text`` contains ``@name`` as a word (any case)."""
        pattern = r"(?<![\w@])@" + re.escape(self.name) + r"(?![\w-])"
        return re.search(pattern, text, re.IGNORECASE) is not None


def assistant_view(row: m.Assistant) -> dict[str, Any]:
    """The wire shape of an assistant (REST)."""
    return {
        "id": row.id,
        "session": row.session_id,
        "name": row.name,
        "user_id": row.user_id,
        "provider": row.provider,
        "model": row.model,
        "system_prompt": row.system_prompt,
        "params": row.params,
        "trigger": row.trigger,
        "busy_policy": row.busy_policy,
        "context_window": row.context_window,
        "max_output_tokens": row.max_output_tokens,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


# -- validation (no I/O) ---------------------------------------------------------------------


def check_name(name: str) -> str:
    """An assistant name: what people write after ``@``."""
    if not NAME_RE.match(name):
        raise InvalidRequest(
            f"assistant name {name[:40]!r} must be 1-32 letters, digits, _ or -, starting with a "
            "letter (it is how people @mention it)"
        )
    return name


def check_provider(provider: str) -> str:
    """One of the provider kinds."""
    if provider not in KINDS:
        raise InvalidRequest(f"provider must be one of {', '.join(KINDS)}")
    return provider


def check_model(model: str) -> str:
    """A model name: 1-200 storable characters."""
    rules.check_storable("model", model)
    if not 1 <= len(model) <= 200:
        raise InvalidRequest("model must be 1-200 characters")
    return model


def check_system_prompt(text: str) -> str:
    """A system prompt: at most ``MAX_SYSTEM_PROMPT`` storable characters."""
    rules.check_storable("system_prompt", text)
    if len(text) > MAX_SYSTEM_PROMPT:
        raise InvalidRequest(f"system_prompt is longer than {MAX_SYSTEM_PROMPT} characters")
    return text


def check_params(provider: str, params: dict[str, Any]) -> dict[str, Any]:
    """Refuse parameters the provider API does not take, so a typo is an error, not a no-op."""
    allowed = set(params_for(provider))
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown parameters for {provider}: {', '.join(unknown)}",
            details={"allowed": sorted(allowed)},
        )
    rules.check_json_size("params", params, MAX_PARAMS_BYTES)
    return params


def check_limit(label: str, value: int | None, lo: int, hi: int) -> int | None:
    """An optional token limit within ``lo..hi``."""
    if value is not None and not lo <= value <= hi:
        raise InvalidRequest(f"{label} must be between {lo} and {hi}")
    return value


# -- storage ---------------------------------------------------------------------------------


class AssistantStore:
    """Reads and writes of assistants, tenant-scoped like everything in ``SessionService``."""

    def __init__(self, service: SessionService, *, cache_seconds: float = 2.0) -> None:
        self.service = service
        self.db = service.db
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, list[AssistantSpec]]] = {}
        # Per tenant, the sessions that have any assistant: most sessions have none, and one
        # read per tenant answers for all of them (instead of one per session and message).
        self._with_assistants: dict[str, tuple[float, frozenset[str]]] = {}

    def _forget(self, tenant_id: str, session_id: str) -> None:
        self._cache.pop((tenant_id, session_id), None)
        self._with_assistants.pop(tenant_id, None)

    async def of_session(self, tenant_id: str, session_id: str) -> list[AssistantSpec]:
        """The session's assistants, cached for ``cache_seconds`` (triggers run on every
        message; a change made on another process is seen within that time)."""
        now = time.monotonic()
        if session_id not in await self._sessions_with_assistants(tenant_id, now):
            return []
        key = (tenant_id, session_id)
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]

        def work(s: Session) -> list[AssistantSpec]:
            rows = s.scalars(
                select(m.Assistant)
                .where(m.Assistant.tenant_id == tenant_id, m.Assistant.session_id == session_id)
                .order_by(m.Assistant.created_at, m.Assistant.id)
            ).all()
            return [AssistantSpec.of(r) for r in rows]

        specs = await self.db.read(work)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, specs)
        return specs

    async def _sessions_with_assistants(self, tenant_id: str, now: float) -> frozenset[str]:
        hit = self._with_assistants.get(tenant_id)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]

        def work(s: Session) -> frozenset[str]:
            return frozenset(
                s.scalars(
                    select(m.Assistant.session_id)
                    .where(m.Assistant.tenant_id == tenant_id)
                    .distinct()
                ).all()
            )

        sessions = await self.db.read(work)
        if len(self._with_assistants) > 10_000:
            self._with_assistants.clear()
        self._with_assistants[tenant_id] = (now, sessions)
        return sessions

    async def by_id(self, tenant_id: str, assistant_id: str) -> AssistantSpec | None:
        """An assistant by id, for the relay itself (a queued prompt starting later)."""

        def work(s: Session) -> AssistantSpec | None:
            row = s.scalar(
                select(m.Assistant).where(
                    m.Assistant.id == assistant_id, m.Assistant.tenant_id == tenant_id
                )
            )
            return AssistantSpec.of(row) if row is not None else None

        return await self.db.read(work)

    async def list(self, p: Principal, session_id: str) -> list[dict[str, Any]]:
        """The assistants of a session the caller can read, oldest first."""

        def work(s: Session) -> list[dict[str, Any]]:
            session_row(s, p, session_id)
            rows = s.scalars(
                select(m.Assistant)
                .where(m.Assistant.tenant_id == p.tenant_id, m.Assistant.session_id == session_id)
                .order_by(m.Assistant.created_at, m.Assistant.id)
            ).all()
            return [assistant_view(r) for r in rows]

        return await self.db.read(work)

    async def spec(self, p: Principal, session_id: str, name: str) -> AssistantSpec:
        """The assistant ``name`` (any case) of a session the caller can read."""

        def work(s: Session) -> AssistantSpec:
            session_row(s, p, session_id)
            return AssistantSpec.of(_by_name(s, p.tenant_id, session_id, name))

        return await self.db.read(work)

    async def create(
        self,
        p: Principal,
        session_id: str,
        *,
        name: str,
        provider: str = "scripted",
        model: str = "scripted",
        system_prompt: str = "",
        params: dict[str, Any] | None = None,
        trigger: Trigger = Trigger.MENTION,
        busy_policy: BusyPolicy = BusyPolicy.QUEUE,
        context_window: int | None = None,
        max_output_tokens: int | None = None,
    ) -> dict[str, Any]:
        """Add an assistant; it joins the session as an editor (a ``participant.joined``)."""
        check_name(name)
        check_provider(provider)
        check_model(model)
        check_system_prompt(system_prompt)
        params = check_params(provider, params or {})
        check_limit("context_window", context_window, 512, 10_000_000)
        check_limit("max_output_tokens", max_output_tokens, 1, 1_000_000)
        await self.service.last_seq(p, session_id)  # not found for other tenants
        aid = new_id()
        user_id = USER_PREFIX + aid
        await self.service.ensure_principal(
            Principal(p.tenant_id, user_id, name, UserKind.ASSISTANT)
        )
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            session_row(s, p, session_id, lock=True)
            _check_manager(s, p, session_id)
            if _find(s, p.tenant_id, session_id, name) is not None:
                raise Conflict(f"the session already has an assistant named {name!r}")
            row = m.Assistant(
                id=aid,
                tenant_id=p.tenant_id,
                session_id=session_id,
                name=name,
                user_id=user_id,
                provider=provider,
                model=model,
                system_prompt=system_prompt,
                params=params,
                trigger=str(trigger),
                busy_policy=str(busy_policy),
                context_window=context_window,
                max_output_tokens=max_output_tokens,
                created_by=p.user_id,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            return assistant_view(row)

        view = await self.db.write(work)
        self._forget(p.tenant_id, session_id)
        await self.service.add_participant(p, session_id, user_id, Role.EDITOR)
        return view

    async def update(
        self, p: Principal, session_id: str, name: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        """Change fields of an assistant (those present in ``changes``)."""
        if "name" in changes:
            check_name(changes["name"])
        if "provider" in changes:
            check_provider(changes["provider"])
        if "model" in changes:
            check_model(changes["model"])
        if "system_prompt" in changes:
            check_system_prompt(changes["system_prompt"])
        if "context_window" in changes:
            check_limit("context_window", changes["context_window"], 512, 10_000_000)
        if "max_output_tokens" in changes:
            check_limit("max_output_tokens", changes["max_output_tokens"], 1, 1_000_000)
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            session_row(s, p, session_id, lock=True)
            _check_manager(s, p, session_id)
            row = _by_name(s, p.tenant_id, session_id, name)
            new_name = changes.get("name", row.name)
            if new_name.lower() != row.name.lower() and _find(s, p.tenant_id, session_id, new_name):
                raise Conflict(f"the session already has an assistant named {new_name!r}")
            provider = changes.get("provider", row.provider)
            params = changes.get("params", row.params if "provider" not in changes else {})
            check_params(provider, params or {})
            for field in (
                "name",
                "provider",
                "model",
                "system_prompt",
                "context_window",
                "max_output_tokens",
            ):
                if field in changes:
                    setattr(row, field, changes[field])
            row.params = params or {}
            if "trigger" in changes:
                row.trigger = str(Trigger(changes["trigger"]))
            if "busy_policy" in changes:
                row.busy_policy = str(BusyPolicy(changes["busy_policy"]))
            row.updated_at = now
            return assistant_view(row)

        view = await self.db.write(work)
        self._forget(p.tenant_id, session_id)
        if "name" in changes:
            # The assistant's display name follows its name (participant lists, presence).
            await self.service.ensure_principal(
                Principal(p.tenant_id, view["user_id"], view["name"], UserKind.ASSISTANT)
            )
        return view

    async def remove(self, p: Principal, session_id: str, name: str) -> AssistantSpec:
        """Delete an assistant's definition (``Relay.remove_assistant`` then stops its answers
        and makes it leave the session)."""

        def work(s: Session) -> AssistantSpec:
            session_row(s, p, session_id, lock=True)
            _check_manager(s, p, session_id)
            row = _by_name(s, p.tenant_id, session_id, name)
            spec = AssistantSpec.of(row)
            s.execute(
                delete(m.Assistant).where(
                    m.Assistant.tenant_id == p.tenant_id, m.Assistant.id == row.id
                )
            )
            return spec

        spec = await self.db.write(work)
        self._forget(p.tenant_id, session_id)
        return spec


def _find(s: Session, tenant_id: str, session_id: str, name: str) -> m.Assistant | None:
    return s.scalar(
        select(m.Assistant).where(
            m.Assistant.tenant_id == tenant_id,
            m.Assistant.session_id == session_id,
            func.lower(m.Assistant.name) == name.lower(),
        )
    )


def _by_name(s: Session, tenant_id: str, session_id: str, name: str) -> m.Assistant:
    row = _find(s, tenant_id, session_id, name) if NAME_RE.match(name) else None
    if row is None:
        raise NotFound(f"assistant {name[:40]!r} not found in this session")
    return row


def _check_manager(s: Session, p: Principal, session_id: str) -> None:
    session_access(s, p, session_id)[1].check(Action.MANAGE, session_id, what="manage assistants")
