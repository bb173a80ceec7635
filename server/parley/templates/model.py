"""What a session template holds. Strings may name variables as ``${name}`` (or ``$name``);
every name used must be declared under ``variables``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

TEMPLATE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TemplateName = Annotated[str, StringConstraints(pattern=TEMPLATE_NAME_PATTERN)]
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")]


class Variable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    default: Annotated[str, StringConstraints(max_length=500)] | None = None
    required: bool | None = None  # default: required when there is no default

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None


class TemplateAssistant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    provider: str = "scripted"
    model: str = "scripted"
    system_prompt: Annotated[str, StringConstraints(max_length=32_000)] = ""
    trigger: str = "mention"
    params: dict[str, Any] = Field(default_factory=dict)


class TemplateNote(BaseModel):
    """A message the session starts with, written by whoever creates it."""

    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, StringConstraints(min_length=1, max_length=32_000)]
    pin: bool = False


class TemplateAnnotation(BaseModel):
    """An annotation on one of the initial notes (``note`` is its index)."""

    model_config = ConfigDict(extra="forbid")
    note: Annotated[int, Field(ge=0)]
    kind: Annotated[str, StringConstraints(pattern=r"^(comment|highlight|label)$")] = "comment"
    body: Annotated[str, StringConstraints(max_length=10_000)]


class TemplateDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: TemplateName
    description: Annotated[str, StringConstraints(max_length=1000)] = ""
    title: Annotated[str, StringConstraints(max_length=500)] = ""
    variables: dict[VariableName, Variable] = Field(default_factory=dict)
    tags: Annotated[list[str], Field(max_length=32)] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    assistants: Annotated[list[TemplateAssistant], Field(max_length=8)] = Field(
        default_factory=list
    )
    notes: Annotated[list[TemplateNote], Field(max_length=50)] = Field(default_factory=list)
    annotations: Annotated[list[TemplateAnnotation], Field(max_length=100)] = Field(
        default_factory=list
    )
    document_notes: Annotated[str, StringConstraints(max_length=32_000)] = ""
