"""The structured search query: what ``GET /search`` reads from its parameters, what
``POST /search/parse`` produces from a sentence, and what ``POST /search`` takes back edited."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from parley.sessions.rules import SessionStatus

Name = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Kind = Literal["message", "title", "tag", "annotation"]


class SearchQuery(BaseModel):
    """Every field narrows the results; unset fields do not. ``q`` empty lists sessions."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    q: Annotated[str, StringConstraints(max_length=500)] = ""
    participant: Name | None = Field(None, description="sessions this user takes part in")
    owner: Name | None = Field(None, description="sessions this user owns")
    author: Name | None = Field(None, description="hits written by this user")
    tag: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    assistant: Name | None = Field(None, description="sessions with an assistant of this name")
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    status: SessionStatus | None = None
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None
    kinds: Annotated[list[Kind], Field(max_length=4)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, StringConstraints(max_length=32)] | None = None
    mode: Literal["keyword", "semantic"] = Field(
        "keyword",
        description="keyword: full-text matching; semantic: by meaning (needs the semantic extra)",
    )

    @model_validator(mode="after")
    def _range(self) -> SearchQuery:
        # Stored times are UTC; SQLite compares them as text, so bounds must be UTC too.
        if self.from_ is not None:
            self.from_ = self.from_.astimezone(UTC)
        if self.to is not None:
            self.to = self.to.astimezone(UTC)
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError("from must not be after to")
        if self.mode == "semantic" and not self.q.strip():
            raise ValueError("semantic search needs q (the text to search for by meaning)")
        return self

    def filters(self) -> dict[str, object]:
        """The query as JSON (``from`` by its wire name), without paging."""
        return self.model_dump(mode="json", by_alias=True, exclude={"limit", "cursor"})
