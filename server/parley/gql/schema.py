"""The root query and the schema with its limits."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig

from parley.errors import InvalidRequest, NotFound
from parley.gql.limits import complexity_rule
from parley.gql.types import (
    LONG_SCALAR,
    Analytics,
    AssistantUsage,
    Info,
    Long,
    PageInfo,
    Session,
    SessionConnection,
    Viewer,
    check_first,
    decode_cursor,
    described,
    encode_cursor,
)
from parley.sessions.rules import SessionStatus

MAX_PAGE = 100
MAX_ALIASES = 30
MAX_TOKENS = 5_000


@strawberry.type
class Query:
    @strawberry.field
    def viewer(self, info: Info) -> Viewer:
        p = info.context.principal
        return Viewer(
            user_id=p.user_id,
            tenant_id=p.tenant_id,
            name=p.name,
            kind=str(p.kind),
            tenant_role=str(p.tenant_role),
        )

    @described("A session of your tenant; null when there is none with this id.")
    async def session(self, info: Info, id: strawberry.ID) -> Session | None:
        ctx = info.context
        try:
            return Session.of(await ctx.service.get_session(ctx.principal, str(id)))
        except NotFound:
            return None  # missing and another tenant's answer the same

    @described("Sessions of your tenant, newest first.")
    async def sessions(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        status: str | None = None,
        tag: str | None = None,
    ) -> SessionConnection:
        ctx = info.context
        first = check_first(first, ctx.max_page)
        try:
            wanted = SessionStatus(status) if status is not None else None
        except ValueError:
            raise InvalidRequest("status must be active or archived") from None
        items, next_cursor = await ctx.service.list_sessions(
            ctx.principal,
            status=wanted,
            tag=tag,
            limit=first,
            cursor=decode_cursor("session", after),
        )
        return SessionConnection(
            nodes=[Session.of(v) for v in items],
            page_info=PageInfo(
                end_cursor=encode_cursor("session", items[-1]["id"]) if items else None,
                has_next_page=next_cursor is not None,
            ),
        )

    @described(
        "Your tenant's figures: sessions, messages (not deleted), users who wrote in the last"
        " activeDays days, and tokens and cost per assistant from the relay's usage records."
    )
    async def analytics(self, info: Info, active_days: int = 30) -> Analytics:
        if not 1 <= active_days <= 3660:
            raise InvalidRequest("activeDays must be between 1 and 3660")
        ctx = info.context
        v = await ctx.usage.tenant(ctx.principal, active_days=active_days)
        return Analytics(
            sessions=v["sessions"],
            messages=v["messages"],
            active_users=v["active_users"],
            active_days=v["active_days"],
            assistants=[AssistantUsage(**a) for a in v["assistants"]],
        )


class ParleySchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Nothing here: the endpoint logs unexpected errors (strawberry would log every
        caller mistake with a stack trace)."""


def build_schema(*, max_depth: int, max_cost: int) -> strawberry.Schema:
    """The schema with its limits: depth, cost, aliases and tokens per query."""
    return ParleySchema(
        query=Query,
        config=StrawberryConfig(scalar_map={Long: LONG_SCALAR}),
        extensions=[
            lambda: QueryDepthLimiter(max_depth=max_depth),
            lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            lambda: AddValidationRules([complexity_rule(max_cost, MAX_PAGE)]),
        ],
    )
