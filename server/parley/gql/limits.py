"""The cost limit of a GraphQL query, checked before anything runs (a validation rule).

Cost: every field selected costs 1, times the page size of each list it sits under: a field
under ``messages(first: 100)`` inside ``sessions(first: 50)`` costs 5000. A ``first`` given
as a variable counts as the largest page. Depth, aliases and tokens are bounded by strawberry's
own limiters (``schema.py``).
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

DEFAULT_FIRST = {"sessions": 20, "messages": 50}


def complexity_rule(max_cost: int, max_page: int) -> type[ValidationRule]:
    """A validation rule class refusing operations that cost more than ``max_cost``."""

    class QueryCost(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments: dict[str, FragmentDefinitionNode] = {
                f.name.value: f
                for f in context.document.definitions
                if isinstance(f, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            cost = self._cost(node.selection_set, 1, set())
            if cost > max_cost:
                name = node.name.value if node.name else "the operation"
                self.report_error(
                    GraphQLError(
                        f"{name} would cost {cost}, more than the limit of {max_cost} (each"
                        " field costs 1 times the page sizes above it: ask for smaller pages"
                        " or fewer fields)",
                        node,
                        extensions={"code": "query_too_complex", "cost": cost},
                    )
                )

        def _cost(self, sel: SelectionSetNode | None, factor: int, seen: set[str]) -> int:
            if sel is None:
                return 0
            total = 0
            for node in sel.selections:
                if isinstance(node, FieldNode):
                    total += factor
                    total += self._cost(node.selection_set, factor * self._page(node), seen)
                elif isinstance(node, InlineFragmentNode):
                    total += self._cost(node.selection_set, factor, seen)
                elif isinstance(node, FragmentSpreadNode):
                    name = node.name.value
                    fragment = self.fragments.get(name)
                    if fragment is not None and name not in seen:  # cycles: another rule's job
                        total += self._cost(fragment.selection_set, factor, seen | {name})
            return total

        @staticmethod
        def _page(node: FieldNode) -> int:
            default = DEFAULT_FIRST.get(node.name.value)
            for arg in node.arguments or ():
                if arg.name.value == "first":
                    if isinstance(arg.value, IntValueNode):
                        return max(1, min(int(arg.value.value), max_page))
                    return max_page  # a variable: assume the largest page
            return default or 1

    return QueryCost
