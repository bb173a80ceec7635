"""Turning a sentence into a search query: the LLM when configured (its output validated
against a schema), the rule parser (``nlquery``) otherwise and whenever the LLM's answer is
unusable."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parley.intelligence import nlquery
from parley.intelligence.llm import Llm
from parley.intelligence.search.query import SearchQuery

SYSTEM = """You turn a user's request for conversations into search filters.
Answer with one JSON object and nothing else. Allowed keys, all optional:
  "q": topic words to search for (no names, dates or filler words),
  "participant": user id of someone who took part ("me" means the user: use {me}),
  "owner": user id of who started the conversation,
  "author": user id of who wrote the messages,
  "tag": one tag, "assistant": an assistant's name, "model": an LLM model name,
  "status": "active" or "archived",
  "from", "to": UTC times as YYYY-MM-DDTHH:MM:SSZ; "to" is the start of the period after
  the range. Weeks start on Monday. Now is {now}.
Leave out every key the request does not mention."""


class NlFilters(BaseModel):
    """What the LLM may answer: exactly the filter fields, nothing else."""

    model_config = ConfigDict(extra="forbid")
    q: str | None = Field(None, max_length=500)
    participant: str | None = Field(None, max_length=128)
    owner: str | None = Field(None, max_length=128)
    author: str | None = Field(None, max_length=128)
    tag: str | None = Field(None, max_length=64)
    assistant: str | None = Field(None, max_length=128)
    model: str | None = Field(None, max_length=200)
    status: Literal["active", "archived"] | None = None
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None


_JSON = re.compile(r"\{.*\}", re.DOTALL)


def from_llm_answer(answer: str) -> dict[str, Any] | None:
    """The filters in an LLM answer, or None when it is not a valid filter object."""
    found = _JSON.search(answer)
    if found is None:
        return None
    try:
        data = orjson.loads(found.group(0))
        filters = NlFilters.model_validate(data)
        query = {
            k: v
            for k, v in filters.model_dump(mode="json", by_alias=True).items()
            if v not in (None, "")
        }
        SearchQuery.model_validate(query)  # also checks the range and the time zones
    except (orjson.JSONDecodeError, ValidationError, ValueError):
        return None
    return query


async def parse(text: str, *, now: datetime, me: str, tenant_id: str, llm: Llm) -> dict[str, Any]:
    """``{"query", "method", "notes", "fallback"}`` for ``text``."""
    fallback = None
    if llm.configured:
        system = SYSTEM.replace("{me}", me).replace("{now}", nlquery.iso_z(now))
        answer = await llm.complete(tenant_id, system, text, max_tokens=300)
        if answer is None:
            fallback = "the LLM did not answer"
        else:
            query = from_llm_answer(answer)
            if query is not None:
                return {"query": query, "method": "llm", "notes": [llm.label], "fallback": None}
            fallback = "the LLM's answer did not fit the schema"
    parsed = nlquery.parse(text, now=now, me=me)
    query = parsed.query()
    try:
        SearchQuery.model_validate(query)
    except ValidationError:
        # Rules never produce an invalid query on purpose; if they do, the topic alone is safe.
        query = {"q": query["q"]} if "q" in query else {}
    return {"query": query, "method": "rules", "notes": parsed.notes, "fallback": fallback}
