"""Checking templates and filling in their variables. No I/O, no ``eval``: placeholders are
``string.Template``'s ``${name}``; ``$$`` is a literal dollar."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from string import Template
from typing import Any

from parley.errors import InvalidRequest
from parley.templates.model import TemplateDefinition


@dataclass(frozen=True, slots=True)
class Rendered:
    """A template with its variables filled in: what a new session is made of."""

    definition: TemplateDefinition
    title: str
    tags: list[str]
    notes: list[tuple[str, bool]]
    annotations: list[tuple[int, str, str]]
    system_prompts: list[str]
    document_notes: str
    variables: dict[str, str]


def _strings(d: TemplateDefinition) -> Iterator[tuple[str, str]]:
    """(field path, text) of every string that may hold placeholders."""
    yield "title", d.title
    for i, tag in enumerate(d.tags):
        yield f"tags.{i}", tag
    for i, note in enumerate(d.notes):
        yield f"notes.{i}.text", note.text
    for i, ann in enumerate(d.annotations):
        yield f"annotations.{i}.body", ann.body
    for i, a in enumerate(d.assistants):
        yield f"assistants.{i}.system_prompt", a.system_prompt
    yield "document_notes", d.document_notes


def check(d: TemplateDefinition) -> None:
    """Refuse a template whose placeholders are malformed or undeclared, or whose
    annotations point at notes it does not have; each problem with its field."""
    problems: list[dict[str, str]] = []
    for path, text in _strings(d):
        template = Template(text)
        if not template.is_valid():
            problems.append({"field": path, "problem": "malformed placeholder (use ${name})"})
            continue
        for name in template.get_identifiers():
            if name not in d.variables:
                problems.append({"field": path, "problem": f"variable {name!r} is not declared"})
    for i, ann in enumerate(d.annotations):
        if ann.note >= len(d.notes):
            problems.append(
                {"field": f"annotations.{i}.note", "problem": f"there is no note {ann.note}"}
            )
    if problems:
        first = problems[0]
        raise InvalidRequest(
            f"invalid template: {first['field']}: {first['problem']}", details=problems
        )


def render(d: TemplateDefinition, given: Mapping[str, Any]) -> Rendered:
    """Fill in ``given`` variables (defaults for the rest). Unknown, missing and non-string
    values are refused, each with its ``variables.<name>`` field."""
    check(d)
    problems: list[dict[str, str]] = []
    values: dict[str, str] = {}
    for name, value in given.items():
        if name not in d.variables:
            known = ", ".join(sorted(d.variables)) or "none"
            problems.append(
                {"field": f"variables.{name}", "problem": f"unknown variable (known: {known})"}
            )
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append({"field": f"variables.{name}", "problem": "must be a string"})
        elif len(str(value)) > 500:
            problems.append({"field": f"variables.{name}", "problem": "longer than 500"})
        else:
            values[name] = str(value)
    for name, spec in d.variables.items():
        if name in given:
            continue
        if spec.default is not None:
            values[name] = spec.default
        elif spec.is_required:
            problems.append({"field": f"variables.{name}", "problem": "required"})
        else:
            values[name] = ""
    if problems:
        first = problems[0]
        raise InvalidRequest(f"{first['field']}: {first['problem']}", details=problems)

    def fill(text: str) -> str:
        return Template(text).substitute(values)

    return Rendered(
        definition=d,
        title=fill(d.title),
        tags=[fill(t) for t in d.tags],
        notes=[(fill(n.text), n.pin) for n in d.notes],
        annotations=[(a.note, a.kind, fill(a.body)) for a in d.annotations],
        system_prompts=[fill(a.system_prompt) for a in d.assistants],
        document_notes=fill(d.document_notes),
        variables=values,
    )
