"""What one SQL engine renders its own way: small overridable methods the compiler calls.

The compiler (:mod:`.compiler`) writes the structure of every predicate and sort key once;
wherever SQLite and PostgreSQL differ it asks the dialect, in the manner of SQLAlchemy's
compilers: placeholders and parameter values, JSON path access and type names, how a
type-guarded comparison is written, pattern matching, boolean literals. A new SQL engine is
one subclass overriding these methods and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from ...query import Filter, Operator, SortSpec
from ..rowcodec import iso_datetime
from . import compiler
from .identifiers import RESERVED_PREFIXES, validate_collection
from .tree import Builder, Compiled, Scalar, Slot

__all__ = ["SCALAR_KINDS", "Dialect"]

#: the kinds a stored scalar can have that sort and compare (datetimes are strings in JSON)
SCALAR_KINDS = ("bool", "num", "str")


class Dialect:
    """The base dialect: what every SQL engine here shares, and the hooks that differ."""

    name: ClassVar[str]
    #: the engine's boolean literals, as the compiled predicates use them
    true: ClassVar[str]
    false: ClassVar[str]
    #: the names the engine's JSON type function gives each scalar kind (in rank order)
    json_types: ClassVar[dict[str, tuple[str, ...]]]
    #: collection-name prefixes refused because the engine or this library uses them
    reserved_prefixes: ClassVar[tuple[str, ...]] = RESERVED_PREFIXES

    # -- parameters --------------------------------------------------------------------------
    def param(self, name: str) -> str:
        """The placeholder for the named parameter ``name``."""
        raise NotImplementedError

    def sql_value(self, value: Any) -> Any:
        """A filter value as the parameter compared with stored values (datetimes as the
        fixed-width ISO text the row encoder wrote)."""
        return iso_datetime(value) if isinstance(value, datetime) else value

    def cast(self, kind: str | None) -> str:
        """What follows a placeholder so the parameter compares as ``kind`` (nothing here)."""
        return ""

    # -- JSON access ---------------------------------------------------------------------------
    def slot(self, b: Builder, parts: Sequence[str]) -> Slot:
        """The value at the field path ``parts`` of the ``doc`` column, binding what it needs."""
        raise NotImplementedError

    def value(self, s: Scalar, kind: str | None) -> str:
        """``s`` as the SQL value a ``kind`` comparison uses (the extracted value here)."""
        return s.json

    def type_test(self, kind: str) -> str:
        """The test on a JSON type expression that its value is of ``kind`` (no subject)."""
        names = self.json_types[kind]
        if len(names) == 1:
            return f"= '{names[0]}'"
        return "IN (" + ",".join(f"'{n}'" for n in names) + ")"

    # -- predicates ----------------------------------------------------------------------------
    def leaf(self, pred: str) -> str:
        """One typed predicate ready to combine. Here only parenthesised: it may be NULL on a
        missing value, and :meth:`whole` makes the field's predicate total once."""
        return f"({pred})"

    def when(self, test: str, pred: str) -> str:
        """``pred`` where the kind ``test`` holds, false (or NULL) elsewhere. A plain ``AND``
        suffices in an engine that compares values of different types without error."""
        return f"{test} AND {pred}"

    def whole(self, pred: str) -> str:
        """The predicate on a non-array value, made never NULL (a missing field is false)."""
        return f"COALESCE({pred}, {self.false})"

    def bool_literal(self, value: bool) -> str:
        """What a :attr:`.Scalar.token` equals when the value is the boolean ``value``."""
        return "'true'" if value else "'false'"

    def members(self, b: Builder, kind: str, values: list[Any]) -> str:
        """What follows a ``kind`` value to test that it is one of ``values`` (parameters already
        in :meth:`sql_value` form, distinct): ``IN (...)`` or ``= ANY(...)`` over ONE bound
        parameter holding them all, so the text does not grow with the list and the engine
        builds one hash or index over the set."""
        raise NotImplementedError

    def pattern(self, b: Builder, op: Operator, pattern: str, subject: str) -> str:
        """``like`` (``%``/``_``/``\\`` pattern) or ``starts_with`` (literal prefix) on the
        string ``subject``: case-sensitive, whole string."""
        raise NotImplementedError

    # -- sorting -------------------------------------------------------------------------------
    def sort_values(self, slot: Slot) -> list[str]:
        """The value terms of a sort key after its kind rank: one per kind, each NULL unless the
        value is of that kind (within one rank only one is non-NULL)."""
        t = slot.whole.type
        return [
            f"(CASE WHEN {t} {self.type_test(kind)} THEN {self.value(slot.whole, kind)} END)"
            for kind in SCALAR_KINDS
        ]

    # -- entry points --------------------------------------------------------------------------
    def compile_filter(self, node: Filter | None, prefix: str = "f") -> Compiled:
        """A boolean SQL expression (never NULL) over ``doc``/``types``/``id`` and its params."""
        return compiler.compile_filter(node, self, prefix)

    def compile_order(self, sort_by: Sequence[SortSpec]) -> Compiled:
        """``ORDER BY`` terms for ``sort_by``, then ``id``, and their params."""
        return compiler.compile_order(sort_by, self)

    def validate_collection(self, name: object) -> str:
        """``name`` if it may name a collection (a table) in this engine."""
        return validate_collection(name, self.reserved_prefixes)
