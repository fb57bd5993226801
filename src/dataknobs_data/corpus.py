"""A real, offline text corpus: the docstrings of the Python standard library.

Benchmarks and tests of vector search need thousands of genuine, varied
English documents, but must run without network access or extra packages.
Every Python installation ships its standard library as source, so its
docstrings are always there.  They are read with :mod:`ast` and never
imported, because importing arbitrary stdlib modules has side effects
(``antigravity`` opens a browser, ``this`` prints, some modules spawn threads
or fail on the wrong platform).
"""

from __future__ import annotations

import ast
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CorpusDoc", "CorpusStats", "iter_stdlib_docstrings"]

# Test suites, demo programs, vendored wheels and IDE code are excluded: they
# are either not library documentation or are huge and repetitive.
_SKIP_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "__pycache__",
        "ensurepip",
        "pydoc_data",
    }
)

_DocNode = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True, slots=True)
class CorpusDoc:
    """One docstring, addressed by the fully qualified name of its owner."""

    id: str
    title: str
    body: str
    module: str
    kind: str  # "module" | "class" | "function"


@dataclass(slots=True)
class CorpusStats:
    """Counts filled in while iterating, so callers can report corpus health."""

    files_parsed: int = 0
    files_skipped: int = 0
    docs_yielded: int = 0


def _source_files(root: Path) -> list[tuple[str, Path]]:
    """Return (module name, path) pairs sorted by relative path."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        # Directories that are not identifiers (e.g. "config-3.11-x86_64-...",
        # "lib-dynload") cannot hold importable modules.
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and d.isidentifier()]
        for name in filenames:
            stem = name[:-3]
            if not name.endswith(".py") or not stem.isidentifier():
                continue
            parts = list(rel_dir.parts) if stem == "__init__" else [*rel_dir.parts, stem]
            if parts:
                found.append((".".join(parts), Path(dirpath, name)))
    found.sort(key=lambda item: item[1].relative_to(root).as_posix())
    return found


def _walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, str, _DocNode]]:
    """Yield (qualified name, kind, node) for documentable nodes in source order.

    Descends into classes and into compound statements such as ``if``/``try``
    (where platform-specific definitions live) but not into function bodies,
    whose nested helpers are implementation details.
    """
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            qualname = f"{prefix}.{child.name}"
            yield qualname, "class", child
            yield from _walk(child, qualname)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{prefix}.{child.name}", "function", child
        elif isinstance(child, ast.stmt):
            yield from _walk(child, prefix)


def iter_stdlib_docstrings(
    *,
    limit: int | None = None,
    min_length: int = 20,
    root: str | os.PathLike[str] | None = None,
    stats: CorpusStats | None = None,
) -> Iterator[CorpusDoc]:
    """Yield stdlib docstrings in a deterministic order.

    Order is sorted relative file path, then source order within a file, so
    ``limit`` always selects the same documents.  Files are parsed lazily, so a
    small ``limit`` is cheap.  Files that cannot be read, decoded or parsed are
    skipped and counted in ``stats``.  A name defined twice (e.g. in both
    branches of an ``if``) gets ``#2``, ``#3``... appended to its ``id`` only.
    ``root`` overrides the stdlib location, mainly for tests.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    stats = stats if stats is not None else CorpusStats()
    if limit == 0:
        return
    base = Path(root) if root is not None else Path(sysconfig.get_paths()["stdlib"])
    seen: dict[str, int] = {}
    yielded = 0
    for module, path in _source_files(base):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, UnicodeDecodeError, OSError, RecursionError):
            stats.files_skipped += 1
            continue
        stats.files_parsed += 1
        nodes: list[tuple[str, str, _DocNode]] = [(module, "module", tree)]
        nodes += _walk(tree, module)
        for qualname, kind, node in nodes:
            raw = ast.get_docstring(node, clean=True)
            # cleandoc keeps a whitespace-only last line when no other line
            # sets the margin, hence the extra strip().
            body = raw.strip() if raw is not None else ""
            if len(body) < max(min_length, 1):
                continue
            count = seen.get(qualname, 0) + 1
            seen[qualname] = count
            doc_id = qualname if count == 1 else f"{qualname}#{count}"
            yield CorpusDoc(id=doc_id, title=qualname, body=body, module=module, kind=kind)
            stats.docs_yielded += 1
            yielded += 1
            if limit is not None and yielded >= limit:
                return
