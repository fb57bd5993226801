"""The SQLite dialect: JSON1 over a ``TEXT`` document, ``:name`` placeholders, GLOB patterns.

* kinds come from ``json_type``: ``integer``/``real`` are numbers, ``true``/``false``
  booleans, ``text`` a string (or a datetime, per ``types``);
* SQLite compares values of different types without error, so a kind guard is a plain ``AND``
  and a predicate on a whole value is made total once, with ``COALESCE(..., 0)``;
* ``in`` tests membership in ``json_each`` of one JSON-array parameter per kind;
* ``like`` and ``starts_with`` become ``GLOB`` patterns (case-sensitive, whole string, UTF-8
  aware), so no connection-wide pragma is needed;
* a field path travels as a bound JSON-path parameter with every segment quoted.

Pure text: importing this module loads no driver.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from ...query import Operator
from .dialect import SCALAR_KINDS, Dialect
from .tree import Builder, Scalar, Slot

__all__ = [
    "SQLITE",
    "SQLiteDialect",
    "compile_filter",
    "compile_order",
    "glob_from_like",
    "glob_prefix",
    "json_path",
]


def json_path(parts: Sequence[str]) -> str:
    """A JSON path with every segment quoted (``$."meta"."a\\"b"``): dots or quotes in a key
    can never be read as path syntax. It travels as a bound parameter."""
    quoted = ('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)
    return "$." + ".".join(quoted)


_GLOB_SPECIAL = {"*": "[*]", "?": "[?]", "[": "[[]"}


def _glob_literal(ch: str) -> str:
    return _GLOB_SPECIAL.get(ch, ch)


def glob_from_like(pattern: str) -> str:
    """Translate a LIKE pattern (``%``, ``_``, ``\\`` escape) into an equivalent GLOB."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(_glob_literal(pattern[i + 1]))
            i += 2
            continue
        out.append("*" if ch == "%" else "?" if ch == "_" else _glob_literal(ch))
        i += 1
    return "".join(out)


def glob_prefix(prefix: str) -> str:
    """A GLOB matching strings that start with ``prefix`` literally."""
    return "".join(map(_glob_literal, prefix)) + "*"


class SQLiteDialect(Dialect):
    """SQLite with the JSON1 functions (built in since 3.38)."""

    name = "sqlite"
    true = "1"
    false = "0"
    json_types: ClassVar[dict[str, tuple[str, ...]]] = {
        "bool": ("true", "false"),
        "num": ("integer", "real"),
        "str": ("text",),
    }

    def param(self, name: str) -> str:
        return f":{name}"

    def slot(self, b: Builder, parts: Sequence[str]) -> Slot:
        p = b.bind(json_path(parts))
        t = f"json_type(doc, {p})"
        whole = Scalar(f"json_extract(doc, {p})", t, t)
        if len(parts) == 1:
            is_dt = f"(json_extract(types, {b.bind(json_path(parts))}) IS 'datetime')"
        else:
            is_dt = "0"
        return Slot(whole, f"json_each(doc, {p}) AS e", Scalar("e.atom", "e.type", "e.type"), is_dt)

    def members(self, b: Builder, kind: str, values: list[Any]) -> str:
        """``IN (SELECT value FROM json_each(:p))`` over one JSON array parameter: SQLite
        builds one index over the sub-select per statement. (One placeholder per value is
        quadratic: SQLite looks each named parameter up in a list while it parses.) The JSON
        text of a number is the text the row encoder wrote, so both sides parse alike."""
        text = json.dumps(values, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return f"IN (SELECT value FROM json_each({b.bind(text)}))"

    def pattern(self, b: Builder, op: Operator, pattern: str, subject: str) -> str:
        glob = glob_from_like(pattern) if op is Operator.LIKE else glob_prefix(pattern)
        return f"{subject} GLOB {b.bind(glob)}"

    def sort_values(self, slot: Slot) -> list[str]:
        """One term: SQLite orders values of different types in one column, and the rank
        already keeps the kinds apart."""
        names = ",".join(f"'{n}'" for kind in SCALAR_KINDS for n in self.json_types[kind])
        return [f"(CASE WHEN {slot.whole.type} IN ({names}) THEN {slot.whole.json} END)"]


SQLITE = SQLiteDialect()
compile_filter = SQLITE.compile_filter
compile_order = SQLITE.compile_order
