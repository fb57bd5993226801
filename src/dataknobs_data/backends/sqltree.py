"""Render the boolean structure of a filter tree as SQL, shared by the SQL compilers.

Leaves are engine-specific (each compiler passes a function rendering a *positive* condition as a
predicate that is never NULL); the AND / OR / NOT structure and the rule that a negated operator
is ``NOT`` of its positive twin are the same everywhere, so they live here once.
"""

from __future__ import annotations

from collections.abc import Callable

from ..query import And, Condition, Filter, Not, Or

__all__ = ["render_tree"]


def render_tree(node: Filter, positive: Callable[[Condition], str]) -> str:
    """SQL for ``node`` given a renderer of positive leaf conditions."""
    if isinstance(node, Condition):
        sql = positive(node)
        return f"(NOT {sql})" if node.op.negated else sql
    if isinstance(node, And):
        return "(" + " AND ".join(render_tree(c, positive) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(render_tree(c, positive) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"(NOT {render_tree(node.child, positive)})"
    raise AssertionError(f"unknown filter node {node!r}")  # pragma: no cover
