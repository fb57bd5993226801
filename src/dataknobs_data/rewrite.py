"""Exact rewrites of a filter tree that every compiler applies before translating it.

A filter built by a program is often a long ``OR`` of equalities on one field (``id = 1 OR
id = 2 OR ...``) or a long ``AND`` of inequalities; compiled node by node it becomes an
expression thousands of levels deep (SQLite refuses past depth 1000, chroma's SQLite too) and
one sub-query per value. :func:`merge_memberships` turns them into one ``in`` / ``not_in``,
which every compiler runs as one set lookup. Only rewrites that are identities under the
semantics of :mod:`dataknobs_data.query` are made:

* ``f = a OR f in [b, c]`` is ``f in [a, b, c]`` (a list matches when any element matches,
  for both operators, and kinds are kept apart by ``in`` exactly as by ``=``);
* ``f != a AND f not_in [b]`` is ``NOT (f = a OR f in [b])`` (negated operators are exact
  complements), so ``f not_in [a, b]``;
* nested ``AND`` in ``AND`` and ``OR`` in ``OR`` are flattened.

Values are deduplicated within their kind (``1`` and ``1.0`` are one number; ``1``, ``"1"``
and ``True`` stay three values). The merged condition takes the place of the first condition
it absorbs, so the order of the other children is kept.
"""

from __future__ import annotations

from typing import Any

from .query import And, Condition, Filter, Not, Operator, Or, value_kind

__all__ = ["distinct_values", "largest_condition", "merge_memberships"]

#: (operator that merges, what it merges into) per connective
_MERGES: dict[type, tuple[frozenset[Operator], Operator]] = {
    Or: (frozenset({Operator.EQ, Operator.IN}), Operator.IN),
    And: (frozenset({Operator.NEQ, Operator.NOT_IN}), Operator.NOT_IN),
}


def distinct_values(values: Any) -> tuple[Any, ...]:
    """``values`` without repeats within a kind, in first-seen order (linear time).

    Keys pair the kind with the value, so ``True``, ``1`` and ``"1"`` never collapse, while
    ``1`` and ``1.0`` (one number) do.
    """
    seen: dict[tuple[str | None, Any], Any] = {}
    for value in values:
        seen.setdefault((value_kind(value), value), value)
    return tuple(seen.values())


def _values(cond: Condition) -> tuple[Any, ...]:
    return cond.value if isinstance(cond.value, tuple) else (cond.value,)


def _merge(node: And | Or) -> Filter:
    kind = type(node)
    mergeable, into = _MERGES[kind]
    children: list[Filter] = []
    for child in map(merge_memberships, node.children):
        children.extend(child.children if type(child) is kind else (child,))
    groups: dict[str, list[int]] = {}
    for i, child in enumerate(children):
        if isinstance(child, Condition) and child.op in mergeable:
            groups.setdefault(child.field, []).append(i)
    absorbed: set[int] = set()
    for field, positions in groups.items():
        if len(positions) < 2:
            continue
        values = distinct_values(
            v
            for i in positions
            for v in _values(children[i])  # type: ignore[arg-type]
        )
        children[positions[0]] = Condition(field, into, values)
        absorbed.update(positions[1:])
    kept = [c for i, c in enumerate(children) if i not in absorbed]
    return kept[0] if len(kept) == 1 else kind(tuple(kept))


def merge_memberships(node: Filter) -> Filter:
    """``node`` with ``OR`` of ``=``/``in`` and ``AND`` of ``!=``/``not_in`` on one field
    merged into one ``in`` / ``not_in`` (an identity: see the module docstring)."""
    if isinstance(node, Condition):
        return node
    if isinstance(node, Not):
        child = merge_memberships(node.child)
        return node if child is node.child else Not(child)
    if isinstance(node, And | Or):
        return _merge(node)
    raise AssertionError(f"unknown filter node {node!r}")  # pragma: no cover


def largest_condition(node: Filter) -> str:
    """Where a filter's size comes from, for the message of a size limit: the number of
    conditions, and the field, operator and length of the condition with the longest list."""
    conds: list[Condition] = []
    stack = [node]
    while stack:
        top = stack.pop()
        if isinstance(top, Condition):
            conds.append(top)
        else:
            stack.extend([top.child] if isinstance(top, Not) else top.children)
    big = max(conds, key=lambda c: len(c.value) if isinstance(c.value, tuple) else 1)
    n = len(big.value) if isinstance(big.value, tuple) else 1
    return f"{len(conds)} conditions; the largest: {big.op.value!r} on {big.field!r}, {n} values"
