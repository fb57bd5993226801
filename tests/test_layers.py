"""The package's layers, and a check that every import in ``src/`` goes down them.

One table (:data:`TABLE`) maps each module, by its package or module prefix, to a layer and to
a *unit* inside that layer. A module may import a module of a lower layer, or one of its own
unit; anything else is an upward or a sideways import and fails :func:`test_imports_go_down`,
which prints every offending edge. Imports are read with :mod:`ast`, so imports inside
functions and under ``TYPE_CHECKING`` count as much as top-level ones. A module the table does
not place fails too, so a new top-level module has to be given a layer here.

``docs/architecture.md`` explains the layers; this table is the authority.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import pytest

PACKAGE = "dataknobs_data"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE


class Layer(IntEnum):
    """Bottom first: a module imports only from layers below its own (or its own unit)."""

    VOCABULARY = 0  # errors, fields, records, the query tree and its walkers, vector types/kernels
    ENGINES = 1  # engine-level code both APIs use (engines/)
    CONTRACT = 2  # the Backend contract (contract.py)
    BACKEND_SHARED = 3  # helpers every Database backend may use (backends/ top level, backends/sql)
    APIS = 4  # Database backends (one unit per engine package) beside the VectorStore API
    SHELLS = 5  # the sync/async shells, loading and the factories
    APPLICATIONS = 6  # CLI, pipeline, corpus, benchmarks, the testing kit, the package facade


EACH_PACKAGE = "*"  # unit: one per direct subpackage/module of the prefix (siblings)

# (prefix, layer, unit). Module names are relative to the package, a package's own
# ``__init__`` is ``<package>.__init__``; the longest matching prefix wins.
TABLE: tuple[tuple[str, Layer, str], ...] = (
    ("errors", Layer.VOCABULARY, "vocabulary"),
    ("fields", Layer.VOCABULARY, "vocabulary"),
    ("records", Layer.VOCABULARY, "vocabulary"),
    ("query", Layer.VOCABULARY, "vocabulary"),
    ("evaluate", Layer.VOCABULARY, "vocabulary"),
    ("rewrite", Layer.VOCABULARY, "vocabulary"),
    ("capabilities", Layer.VOCABULARY, "vocabulary"),
    ("schema", Layer.VOCABULARY, "vocabulary"),
    ("text", Layer.VOCABULARY, "vocabulary"),
    ("ints", Layer.VOCABULARY, "vocabulary"),
    ("strings", Layer.VOCABULARY, "vocabulary"),
    ("redaction", Layer.VOCABULARY, "vocabulary"),
    # durable: file formats (frames, atomic writes, journals) over errors only; pure helpers.
    ("durable", Layer.VOCABULARY, "vocabulary"),
    ("marks", Layer.VOCABULARY, "vocabulary"),
    # vector/: types, operations, params, exceptions and embedders (text -> vector, no storage).
    ("vector", Layer.VOCABULARY, "vocabulary"),
    ("engines", Layer.ENGINES, "engines"),
    # storelock: the exclusive flock of a faiss/chroma store directory, used by both APIs.
    ("engines.storelock", Layer.ENGINES, "engines"),
    ("contract", Layer.CONTRACT, "contract"),
    ("backends.__init__", Layer.BACKEND_SHARED, "backends"),
    ("backends.paging", Layer.BACKEND_SHARED, "backends"),
    ("backends.deferred", Layer.BACKEND_SHARED, "backends"),
    ("backends.rowcodec", Layer.BACKEND_SHARED, "backends"),
    ("backends.settings", Layer.BACKEND_SHARED, "backends"),
    ("backends.sql", Layer.BACKEND_SHARED, "backends"),
    ("backends", Layer.APIS, EACH_PACKAGE),  # backends/memory, backends/sqlite, ...: siblings
    ("vector.stores", Layer.APIS, "vector.stores"),
    ("vector.stores.__init__", Layer.SHELLS, "shells"),  # re-exports VectorStoreFactory
    ("vector.stores.factory", Layer.SHELLS, "shells"),
    ("database", Layer.SHELLS, "shells"),
    ("factory", Layer.SHELLS, "shells"),
    ("loading", Layer.SHELLS, "shells"),
    ("plans", Layer.SHELLS, "shells"),
    ("vector.sync", Layer.APPLICATIONS, "applications"),
    ("vector.sync.rules", Layer.VOCABULARY, "vocabulary"),
    ("vector.sync.cache", Layer.VOCABULARY, "vocabulary"),
    ("vector.sync.marking", Layer.VOCABULARY, "vocabulary"),
    ("vector.sync.embedding", Layer.VOCABULARY, "vocabulary"),
    ("vector.sync.config", Layer.VOCABULARY, "vocabulary"),
    ("vector.sync.report", Layer.VOCABULARY, "vocabulary"),
    ("vector.sync.search", Layer.VOCABULARY, "vocabulary"),
    ("vector.sync.__init__", Layer.APPLICATIONS, "applications"),
    ("vector.sync.tracker", Layer.SHELLS, "shells"),
    ("vector.migrate", Layer.APPLICATIONS, "applications"),
    # digest: the pure canonical encoding of a record (fields and records only, no I/O).
    ("vector.migrate.digest", Layer.VOCABULARY, "vocabulary"),
    ("vector.migrate.verify", Layer.APPLICATIONS, "applications"),
    # the mover's pure parts: bookkeeping keys and codecs, schema planning, results, runners
    ("vector.migrate.ledger", Layer.VOCABULARY, "vocabulary"),
    ("vector.migrate.plan", Layer.VOCABULARY, "vocabulary"),
    ("vector.migrate.result", Layer.VOCABULARY, "vocabulary"),
    ("vector.migrate.steps", Layer.VOCABULARY, "vocabulary"),
    ("vector.migrate.copying", Layer.APPLICATIONS, "applications"),
    ("vector.migrate.upgrade", Layer.APPLICATIONS, "applications"),
    ("vector.migrate.upgrade_cli", Layer.APPLICATIONS, "applications"),
    ("cli", Layer.APPLICATIONS, "applications"),
    ("pipeline", Layer.APPLICATIONS, "applications"),
    ("corpus", Layer.APPLICATIONS, "applications"),
    ("vector.benchmarks", Layer.APPLICATIONS, "applications"),
    ("testing", Layer.APPLICATIONS, "applications"),
    ("__init__", Layer.APPLICATIONS, "applications"),  # the package facade re-exports the API
    ("__main__", Layer.APPLICATIONS, "applications"),
)

# Declared exceptions: (importer prefix, imported prefix) -> why.
ALLOWED: Mapping[tuple[str, str], str] = {
    # FaissBackend *is* a MemoryBackend (its records, filters, sorting, paging and schema)
    # with faiss for vector search; the shared part is the whole memory backend, not a helper.
    ("backends.faiss", "backends.memory"): "FaissBackend subclasses MemoryBackend",
}


@dataclass(frozen=True)
class Place:
    """Where a module sits: its layer and its unit inside the layer."""

    layer: Layer
    unit: str


@dataclass(frozen=True)
class Edge:
    """One import of ``target`` by ``source`` at ``line``."""

    source: str
    target: str
    line: int


def place(module: str, table: Iterable[tuple[str, Layer, str]] = TABLE) -> Place | None:
    """The layer and unit of ``module`` by the longest matching prefix (None: unplaced)."""
    best: tuple[str, Layer, str] | None = None
    for prefix, layer, unit in table:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, layer, unit)
    if best is None:
        return None
    prefix, layer, unit = best
    if unit == EACH_PACKAGE:
        rest = module[len(prefix) + 1 :].split(".")
        unit = f"{prefix}.{rest[0]}"
    return Place(layer, unit)


def _module_file(name: str, modules: Iterable[str]) -> str:
    """The table name of an imported dotted ``name``: ``x.y.__init__`` for a package."""
    known = set(modules)
    if f"{name}.__init__" in known or (not name and "__init__" in known):
        return f"{name}.__init__" if name else "__init__"
    return name


def imports_of(module: str, source: str, modules: Iterable[str]) -> list[Edge]:
    """Every import of a package module in ``source`` (the text of ``module``).

    ``modules`` names every module of the package (as in :data:`TABLE`), so that
    ``from . import codec`` resolves to the submodule and ``from ..memory import X`` to the
    package's ``__init__``.
    """
    known = set(modules)
    package = module.rsplit(".", 1)[0] if "." in module else ""
    edges: dict[Edge, None] = {}  # ordered, one edge per (target, line)

    def add(name: str, line: int) -> None:
        target = _module_file(name, known)
        if target != module:
            edges[Edge(module, target, line)] = None

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name[len(PACKAGE) + 1 :], node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join([*parts, *([node.module] if node.module else [])])
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                base = node.module[len(PACKAGE) + 1 :]
            else:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                add(sub if sub in known or f"{sub}.__init__" in known else base, node.lineno)
    return list(edges)


def allowed(edge: Edge, exceptions: Mapping[tuple[str, str], str]) -> bool:
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    return any(under(edge.source, s) and under(edge.target, t) for s, t in exceptions)


def violations(
    sources: Mapping[str, str],
    table: Iterable[tuple[str, Layer, str]] = TABLE,
    exceptions: Mapping[tuple[str, str], str] = ALLOWED,
) -> list[str]:
    """Each upward or sideways import, and each module the table does not place, as text."""
    rows = tuple(table)
    found: list[str] = []
    for module in sorted(sources):
        here = place(module, rows)
        if here is None:
            found.append(f"{module}: not in the layer table")
            continue
        for edge in imports_of(module, sources[module], sources):
            there = place(edge.target, rows)
            if there is None or allowed(edge, exceptions):
                continue  # an unplaced target is reported as a module of its own
            if there.layer > here.layer:
                kind = f"upward ({here.layer.name} -> {there.layer.name})"
            elif there.layer == here.layer and there.unit != here.unit:
                kind = f"sideways ({here.unit} -> {there.unit})"
            else:
                continue
            found.append(f"{module}:{edge.line} imports {edge.target}: {kind}")
    return found


def package_sources(root: Path = SOURCE) -> dict[str, str]:
    """Every module under ``root`` by its table name, with its text."""
    return {
        ".".join(path.relative_to(root).with_suffix("").parts): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*.py"))
    }


def test_imports_go_down() -> None:
    found = violations(package_sources())
    assert not found, "imports that break the layers:\n" + "\n".join(found)


def test_every_exception_is_still_used() -> None:
    """A declared exception nobody needs any more is deleted, so it cannot hide a new edge."""
    sources = package_sources()
    edges = [e for m, text in sources.items() for e in imports_of(m, text, sources)]
    unused = [pair for pair in ALLOWED if not allowed_by_pair(edges, pair)]
    assert not unused, f"exceptions no module needs: {unused}"


def allowed_by_pair(edges: Iterable[Edge], pair: tuple[str, str]) -> bool:
    return any(allowed(edge, {pair: ""}) for edge in edges)


# The checker itself, on synthetic modules.

SYNTHETIC_MODULES = {
    "__init__": "",
    "errors": "",
    "database": "",
    "backends.__init__": "",
    "backends.paging": "",
    "backends.memory.__init__": "",
    "backends.memory.backend": "",
    "backends.postgres.__init__": "",
    "backends.postgres.compiler": "",
    "backends.sqlite.__init__": "",
    "backends.sqlite.backend": "",
    "engines.__init__": "",
    "engines.mask": "",
    "vector.__init__": "",
    "vector.stores.__init__": "",
    "vector.stores.base": "",
    "vector.stores.faiss": "",
}


def check(module: str, source: str) -> list[str]:
    """The violations found when ``module`` of the synthetic package has ``source``."""
    return violations({**SYNTHETIC_MODULES, module: source}, exceptions={})


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("errors", "from .database import SyncDatabase", "errors:1 imports database: upward"),
        (
            "backends.sqlite.backend",
            "from ..postgres.compiler import compile_filter",
            "imports backends.postgres.compiler: sideways (backends.sqlite -> backends.postgres)",
        ),
        (
            "backends.sqlite.backend",
            "from dataknobs_data.backends import postgres",
            "imports backends.postgres.__init__: sideways",
        ),
        (
            "vector.stores.faiss",
            "from ...backends.memory import MemoryBackend",
            "imports backends.memory.__init__: sideways (vector.stores -> backends.memory)",
        ),
        (
            "backends.memory.backend",
            "import dataknobs_data.vector.stores.base",
            "imports vector.stores.base: sideways (backends.memory -> vector.stores)",
        ),
        (
            "engines.mask",
            "if TYPE_CHECKING:\n    from ..backends.paging import P",
            "engines.mask:2 imports backends.paging: upward (ENGINES -> BACKEND_SHARED)",
        ),
        (
            "vector.stores.base",
            "def f():\n    from ... import Record\n",
            "vector.stores.base:2 imports __init__: upward (APIS -> APPLICATIONS)",
        ),
        ("backends.sqlite.backend", "from ... import database", "imports database: upward"),
    ],
)
def test_checker_reports_upward_and_sideways_imports(
    module: str, source: str, expected: str
) -> None:
    found = check(module, source)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("backends.sqlite.backend", "from ...engines.mask import compile_mask"),
        ("backends.sqlite.backend", "from ..paging import pages_by_id\nfrom . import backend"),
        ("backends.sqlite.backend", "from ...errors import QueryError\nimport numpy"),
        ("vector.stores.faiss", "from .base import VectorStore\nfrom ...engines import mask"),
        ("database", "from .backends.memory import MemoryBackend"),
    ],
)
def test_checker_passes_downward_imports(module: str, source: str) -> None:
    assert check(module, source) == []


def test_checker_reports_a_module_outside_the_table() -> None:
    assert check("newthing", "") == ["newthing: not in the layer table"]


def test_checker_honours_a_declared_exception() -> None:
    sources = {**SYNTHETIC_MODULES, "backends.sqlite.backend": "from ..memory import backend"}
    assert violations(sources, exceptions={}) != []
    pair = ("backends.sqlite", "backends.memory")
    assert violations(sources, exceptions={pair: "why"}) == []


# No import cycle inside the PostgreSQL backend: its blocking and asyncio drivers (backend.py,
# aio.py) both import the reads written once (flows.py), and neither imports the other.


def cycle_in(sources: Mapping[str, str], prefix: str) -> list[str]:
    """One import cycle among the modules under ``prefix`` (TYPE_CHECKING imports count), or
    ``[]``: the modules in import order, the first repeated at the end."""
    inside = {m for m in sources if m == prefix or m.startswith(prefix + ".")}
    graph = {
        m: sorted({e.target for e in imports_of(m, sources[m], sources)} & inside)
        for m in sorted(inside)
    }
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> list[str]:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return []
        for target in graph[module]:
            found = walk(target, [*path, module])
            if found:
                return found
        done.add(module)
        return []

    for module in graph:
        found = walk(module, [])
        if found:
            return found
    return []


def test_postgres_backend_modules_import_no_cycle() -> None:
    found = cycle_in(package_sources(), "backends.postgres")
    assert not found, " -> ".join(found)


def test_cycle_checker_finds_a_type_checking_cycle() -> None:
    sources = {
        "backends.postgres.backend": "from .aio import AsyncPostgres",
        "backends.postgres.aio": "if TYPE_CHECKING:\n    from .backend import PostgresBackend",
        "backends.postgres.flows": "",
    }
    found = cycle_in(sources, "backends.postgres")
    assert found in (
        ["backends.postgres.aio", "backends.postgres.backend", "backends.postgres.aio"],
        ["backends.postgres.backend", "backends.postgres.aio", "backends.postgres.backend"],
    )
    sources["backends.postgres.aio"] = "from .flows import Run"
    assert cycle_in(sources, "backends.postgres") == []
