"""The template library: built-in templates shipped in ``builtin/``, the tenant's own (table
``session_templates``), and creating a session from one.

A session made from a template is written in one unit of work by the importer (session, tags,
assistants, initial notes, then the document with annotations, pins and shared notes), so a
failure leaves nothing half made. Its notes are set-up content, not prompts: they are
published to subscribers but never shown to the relay's triggers, so an assistant named in a
note does not answer it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from functools import cache
from importlib import resources
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.errors import Conflict, Forbidden, InvalidRequest, NotFound
from parley.governance.auth import Principal
from parley.ids import iso, new_id, utcnow
from parley.imports.importer import Importer
from parley.imports.model import (
    ImportedAssistant,
    ImportedAuthor,
    ImportedConversation,
    ImportedMessage,
)
from parley.relay import assistants as assistant_rules
from parley.relay.assistants import USER_PREFIX, Trigger
from parley.sessions import rules
from parley.sessions.service import SessionService
from parley.storage import models as m
from parley.templates.model import TEMPLATE_NAME_PATTERN, TemplateDefinition
from parley.templates.render import Rendered, check, render


def validate(data: Any) -> TemplateDefinition:
    """A template definition from JSON, with every problem named by its field."""
    try:
        definition = TemplateDefinition.model_validate(data)
    except ValidationError as exc:
        found = [
            {"field": ".".join(str(x) for x in e["loc"]) or "body", "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidRequest(
            f"invalid template: {found[0]['field']}: {found[0]['problem']}", details=found
        ) from None
    check(definition)
    problems: list[dict[str, str]] = []
    for i, a in enumerate(definition.assistants):
        for label in ("name", "provider", "model", "params"):
            try:
                if label == "name":
                    assistant_rules.check_name(a.name)
                elif label == "provider":
                    assistant_rules.check_provider(a.provider)
                elif label == "model":
                    assistant_rules.check_model(a.model)
                else:
                    assistant_rules.check_params(a.provider, a.params)
            except InvalidRequest as exc:
                problems.append({"field": f"assistants.{i}.{label}", "problem": exc.message})
        if a.trigger not in {t.value for t in Trigger}:
            problems.append(
                {
                    "field": f"assistants.{i}.trigger",
                    "problem": "must be mention, message or manual",
                }
            )
    names = [a.name.lower() for a in definition.assistants]
    if len(set(names)) != len(names):
        problems.append({"field": "assistants", "problem": "assistant names must differ"})
    if problems:
        first = problems[0]
        raise InvalidRequest(
            f"invalid template: {first['field']}: {first['problem']}", details=problems
        )
    return definition


@cache
def builtin_templates() -> dict[str, TemplateDefinition]:
    """The built-in library, read once from the package."""
    folder = resources.files("parley.templates") / "builtin"
    out: dict[str, TemplateDefinition] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            definition = validate(json.loads(entry.read_text(encoding="utf-8")))
            out[definition.name] = definition
    return out


def template_view(definition: TemplateDefinition, source: str, **extra: Any) -> dict[str, Any]:
    return {**definition.model_dump(mode="json"), "source": source, **extra}


class TemplateLibrary:
    """Built-in and tenant templates, and sessions made from them."""

    def __init__(self, service: SessionService, importer: Importer) -> None:
        self.service = service
        self.db = service.db
        self.importer = importer

    async def list(self, p: Principal) -> list[dict[str, Any]]:
        def work(s: Session) -> list[m.SessionTemplate]:
            return list(
                s.scalars(
                    select(m.SessionTemplate)
                    .where(m.SessionTemplate.tenant_id == p.tenant_id)
                    .order_by(m.SessionTemplate.name)
                )
            )

        own = await self.db.read(work)
        return [template_view(d, "builtin") for d in builtin_templates().values()] + [
            self._view(row) for row in own
        ]

    @staticmethod
    def _view(row: m.SessionTemplate) -> dict[str, Any]:
        return template_view(
            TemplateDefinition.model_validate(row.definition),
            "tenant",
            created_by=row.created_by,
            created_at=iso(row.created_at),
            updated_at=iso(row.updated_at),
        )

    async def get(self, p: Principal, name: str) -> dict[str, Any]:
        if not NAME_RE.match(name):
            raise NotFound(f"template {name[:64]!r} not found")
        builtin = builtin_templates().get(name)
        if builtin is not None:
            return template_view(builtin, "builtin")
        row = await self.db.read(lambda s: s.get(m.SessionTemplate, (p.tenant_id, name)))
        if row is None:
            raise NotFound(f"template {name[:64]!r} not found")
        return self._view(row)

    async def definition(self, p: Principal, name: str) -> TemplateDefinition:
        return TemplateDefinition.model_validate(
            {k: v for k, v in (await self.get(p, name)).items() if k in TEMPLATE_FIELDS}
        )

    async def save(self, p: Principal, data: Any, *, replace: str | None = None) -> dict[str, Any]:
        """Create a tenant template (``replace`` None) or replace the one named ``replace``.
        Tenant admins only."""
        if not p.is_admin:
            raise Forbidden("only tenant admins may change templates")
        if replace is not None and isinstance(data, dict):
            data = {"name": replace, **data}
        definition = validate(data)
        if replace is not None and definition.name != replace:
            raise InvalidRequest("name: a template cannot be renamed; create a new one")
        if definition.name in builtin_templates():
            raise Conflict(f"{definition.name!r} is a built-in template; choose another name")
        await self.service.ensure_principal(p)
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            row = s.get(m.SessionTemplate, (p.tenant_id, definition.name))
            if replace is None and row is not None:
                raise Conflict(f"template {definition.name!r} already exists")
            if replace is not None and row is None:
                raise NotFound(f"template {replace!r} not found")
            if row is None:
                row = m.SessionTemplate(
                    tenant_id=p.tenant_id,
                    name=definition.name,
                    created_by=p.user_id,
                    created_at=now,
                )
                s.add(row)
            row.definition = definition.model_dump(mode="json")
            row.updated_at = now
            s.flush()
            return self._view(row)

        return await self.db.write(work)

    async def delete(self, p: Principal, name: str) -> None:
        if not p.is_admin:
            raise Forbidden("only tenant admins may change templates")
        if name in builtin_templates():
            raise Conflict(f"{name!r} is a built-in template and cannot be deleted")
        if not NAME_RE.match(name):
            raise NotFound(f"template {name[:64]!r} not found")

        def work(s: Session) -> None:
            row = s.get(m.SessionTemplate, (p.tenant_id, name))
            if row is None:
                raise NotFound(f"template {name[:64]!r} not found")
            s.delete(row)

        await self.db.write(work)

    async def instantiate(
        self,
        p: Principal,
        name: str,
        variables: dict[str, Any],
        *,
        title: str | None = None,
    ) -> dict[str, Any]:
        """Create a session from a template; returns the session view."""
        rendered = render(await self.definition(p, name), variables)
        conv = self._conversation(p, name, rendered, title)
        rules.clean_title(conv.title)
        conv.tags = rules.clean_tags(conv.tags)
        await self.service.ensure_principal(p)
        written = await self.importer.write(p, conv)
        return await self.service.get_session(p, written.session_id)

    @staticmethod
    def _conversation(
        p: Principal, name: str, rendered: Rendered, title: str | None
    ) -> ImportedConversation:
        d = rendered.definition
        now = utcnow()
        notes = [
            ImportedMessage(
                external_id=f"note-{i}",
                author=None,
                created_at=now + timedelta(milliseconds=i),
                text=text,
            )
            for i, (text, _pin) in enumerate(rendered.notes)
        ]
        assistants: list[ImportedAssistant] = []
        authors: list[ImportedAuthor] = []
        for spec, prompt in zip(d.assistants, rendered.system_prompts, strict=True):
            user_id = USER_PREFIX + new_id()
            assistants.append(
                ImportedAssistant(
                    name=spec.name,
                    user_id=user_id,
                    provider=spec.provider,
                    model=spec.model,
                    system_prompt=prompt,
                    params=spec.params,
                    trigger=spec.trigger,
                )
            )
            authors.append(ImportedAuthor(user_id, spec.name, "assistant", "editor"))
        document = {
            "notes": rendered.document_notes,
            "annotations": [
                {
                    "id": new_id(),
                    "message_id": f"note-{note}",
                    "kind": kind,
                    "body": body,
                    "author": p.user_id,
                    "created": iso(now),
                    "resolved": False,
                }
                for note, kind, body in rendered.annotations
            ],
            "labels": {},
            "pins": [f"note-{i}" for i, (_text, pin) in enumerate(rendered.notes) if pin],
        }
        return ImportedConversation(
            source="template",
            external_id=new_id(),
            title=title if title is not None else rendered.title,
            messages=notes,
            authors=authors,
            created_at=now,
            tags=rendered.tags,
            metadata={**d.metadata, "template": {"name": name, "variables": rendered.variables}},
            assistants=assistants,
            document=document,
            where=f"template {name}",
        )


TEMPLATE_FIELDS = frozenset(TemplateDefinition.model_fields)
NAME_RE = re.compile(TEMPLATE_NAME_PATTERN)
