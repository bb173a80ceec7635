"""The GraphQL schema checked into docs/ is the one the server serves."""

from __future__ import annotations

from pathlib import Path

from parley.gql.schema import build_schema

SDL = Path(__file__).resolve().parents[2] / "docs" / "graphql-schema.graphql"


def test_the_documented_schema_is_the_served_one() -> None:
    served = build_schema(max_depth=10, max_cost=5000).as_str() + "\n"
    assert SDL.read_text() == served, (
        "docs/graphql-schema.graphql is stale: regenerate it with "
        'python -c "from parley.gql.schema import build_schema; '
        'print(build_schema(max_depth=10, max_cost=5000).as_str())" > docs/graphql-schema.graphql'
    )
