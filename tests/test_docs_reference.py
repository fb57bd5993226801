"""The documentation cannot drift from the code: the configuration reference lists exactly the
options each backend and store accepts (with their defaults), the troubleshooting page explains
every typed error, every public name has a docstring, the README stays a README, and the
benchmark tables on the site come from a real results file.

Options are read from the constructors' source with :mod:`ast` (no engine imported, so these
checks run with only ``.[dev]`` installed); errors and docstrings from the imported package.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
from enum import Enum
from pathlib import Path

import pytest

import dataknobs_data
from dataknobs_data import DataknobsDataError, ValidationError
from dataknobs_data.factory import POSTGRES_PARAMS, DatabaseFactory, postgres_target, sqlite_target
from dataknobs_data.testing import database_urls
from dataknobs_data.vector.benchmarks.report import format_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "dataknobs_data"
README_MAX_LINES = 150

# -- configuration reference ----------------------------------------------------------------

#: section heading of docs/configuration.md -> (source file, class, method) whose keyword-only
#: parameters are the section's options
OPTION_SOURCES: dict[str, tuple[str, str, str]] = {
    "Memory": ("backends/memory/backend.py", "MemoryBackend", "__init__"),
    "SQLite": ("backends/sqlite/backend.py", "SQLiteBackend", "__init__"),
    "PostgreSQL": ("backends/postgres/backend.py", "PostgresBackend", "__init__"),
    "Faiss": ("backends/faiss/backend.py", "FaissBackend", "__init__"),
    "Chroma": ("backends/chroma/backend.py", "ChromaBackend", "__init__"),
    "Vector stores": ("vector/stores/factory.py", "VectorStoreFactory", "create"),
    "Faiss store": ("vector/stores/faiss.py", "FaissVectorStore", "__init__"),
    "Chroma store": ("vector/stores/chroma.py", "ChromaVectorStore", "__init__"),
}
ROW = re.compile(r"^\|\s*`([\w.-]+)`\s*\|\s*([^|]*?)\s*\|")


def keyword_defaults(path: str, cls: str, method: str) -> dict[str, str]:
    """``{name: repr of default}`` of a method's keyword-only parameters, read from source."""
    tree = ast.parse((SRC / path).read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    fn = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == method)
    out = {}
    for arg, default in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True):
        if arg.arg == "options":
            continue
        if default is None:
            out[arg.arg] = "(required)"
        elif isinstance(default, ast.Attribute):  # an enum member, documented by its value
            member = getattr(getattr(dataknobs_data, ast.unparse(default.value)), default.attr)
            out[arg.arg] = repr(member.value if isinstance(member, Enum) else member)
        elif isinstance(default, ast.Name):  # a module constant, read where it is assigned
            out[arg.arg] = repr(_constant(path, tree, default.id))
        else:
            out[arg.arg] = repr(ast.literal_eval(default))
    return out


def _constant(path: str, tree: ast.Module, name: str) -> object:
    """The literal value of module constant ``name`` as seen from ``path``: assigned there, or
    imported there with ``from .module import name`` (followed one level, still from source)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
        imported = isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        if imported and any(a.name == name and a.asname is None for a in node.names):
            source = str(Path(path).parent / (str(node.module).replace(".", "/") + ".py"))
            return _constant(source, ast.parse((SRC / source).read_text()), name)
    raise AssertionError(f"{path}: cannot read the default {name} from source")


def documented_tables(page: Path) -> dict[str, dict[str, dict[str, str]]]:
    """``{section: {table kind: {name: default}}}``; kind is the first header cell."""
    sections: dict[str, dict[str, dict[str, str]]] = {}
    section, kind = "", ""
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            continue
        if line.startswith("| ") and not line.startswith("| `"):
            kind = line.strip("| ").split("|")[0].strip()
            continue
        if (m := ROW.match(line)) is not None:
            tables = sections.setdefault(section, {})
            tables.setdefault(kind, {})[m.group(1)] = m.group(2).strip("`").replace('"', "'")
    return sections


CONFIG = documented_tables(DOCS / "configuration.md")


@pytest.mark.parametrize("section", sorted(OPTION_SOURCES))
def test_configuration_lists_every_option_with_its_default(section: str) -> None:
    accepted = keyword_defaults(*OPTION_SOURCES[section])
    kind = "argument" if section == "Vector stores" else "option"
    assert CONFIG[section][kind] == accepted


def test_the_reader_of_the_option_sources_reads_defaults() -> None:
    """The checker itself: the memory backend's one option and its default."""
    assert keyword_defaults(*OPTION_SOURCES["Memory"]) == {"initial_capacity": "1024"}
    assert keyword_defaults(*OPTION_SOURCES["Vector stores"])["metric"] == "'cosine'"


def test_configuration_lists_the_url_parameters() -> None:
    assert set(CONFIG["PostgreSQL"]["URL parameter"]) == set(POSTGRES_PARAMS)
    assert postgres_target("postgresql://u@h/db?collection=c&schema=s")[1] == {
        "collection": "c",
        "schema": "s",
    }
    sqlite = CONFIG["SQLite"]["URL parameter"]
    assert sqlite_target(f"sqlite:///x.db?{'&'.join(f'{p}=a' for p in sqlite)}")[1].keys() == set(
        sqlite
    )
    with pytest.raises(ValueError, match="collection"):  # anything else is refused
        sqlite_target("sqlite:///x.db?table=a")
    assert set(CONFIG["Chroma"]["URL parameter"]) == {"collection"}


def test_configuration_covers_every_scheme() -> None:
    documented = {s.lower() for s in CONFIG} | set(
        re.findall(r"^## (\w+)", (DOCS / "configuration.md").read_text(), re.M)
    )
    for info in DatabaseFactory.backends():
        names = {info.scheme, "postgresql" if info.scheme == "postgresql" else info.scheme}
        assert names & {d.lower() for d in documented}, info.scheme


# -- troubleshooting ------------------------------------------------------------------------


def error_classes() -> set[type[DataknobsDataError]]:
    """Every DataknobsDataError subclass the package defines (modules whose engine is missing
    cannot define one here: each error lives in the vocabulary layer, importable everywhere)."""
    for info in pkgutil.walk_packages(dataknobs_data.__path__, "dataknobs_data."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:
            continue
    found: set[type[DataknobsDataError]] = set()
    todo: list[type[DataknobsDataError]] = [DataknobsDataError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("dataknobs_data") and cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


def test_troubleshooting_explains_every_error() -> None:
    page = (DOCS / "troubleshooting.md").read_text()
    headings = set(re.findall(r"^### (\w+)$", page, re.M))
    classes = {cls.__name__ for cls in error_classes()}
    assert len(classes) >= 20  # the walk found the package's errors
    assert sorted(classes - headings) == []
    assert sorted(headings - classes) == []  # and documents none that no longer exists
    for name in classes:  # each with a "Do:" line
        section = page.split(f"### {name}\n", 1)[1].split("\n### ", 1)[0]
        assert "**Do:**" in section or name == "DataknobsDataError", name


# -- docstrings -----------------------------------------------------------------------------

#: the modules the API reference documents: their ``__all__`` is the public API
PUBLIC_MODULES = (
    "dataknobs_data",
    "dataknobs_data.vector",
    "dataknobs_data.vector.stores",
    "dataknobs_data.vector.embedders",
    "dataknobs_data.vector.params",
    "dataknobs_data.loading",
    "dataknobs_data.contract",
    "dataknobs_data.testing",
    "dataknobs_data.testing.extras",
)


def undocumented(module_name: str) -> list[str]:
    """Public names of a module (and public methods and properties of its classes) without a
    docstring of their own or inherited from the method they override."""
    module = importlib.import_module(module_name)
    missing = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if name.startswith("__") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(f"{module_name}.{name}")
        if not inspect.isclass(obj) or issubclass(obj, Enum):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            target = value.fget if isinstance(value, property) else value
            target = getattr(target, "__func__", target)
            documented = inspect.getdoc(
                value if isinstance(value, property) else getattr(obj, attr)
            )
            if (inspect.isfunction(target) or isinstance(value, property)) and not documented:
                missing.append(f"{module_name}.{name}.{attr}")
    return missing


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module: str) -> None:
    assert undocumented(module) == []


def test_the_docstring_check_finds_a_missing_docstring() -> None:
    class Bare:
        def method(self) -> None:
            pass

    import types

    probe = types.ModuleType("probe")
    probe.__all__ = ["Bare"]  # type: ignore[attr-defined]
    probe.Bare = Bare  # type: ignore[attr-defined]
    import sys

    sys.modules["probe"] = probe
    try:
        assert undocumented("probe") == ["probe.Bare", "probe.Bare.method"]
    finally:
        del sys.modules["probe"]


# -- README and site ------------------------------------------------------------------------


def test_readme_is_a_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    for page in re.findall(r"\]\((docs/[\w/-]+\.md)", readme):  # its links into the docs exist
        assert (ROOT / page).is_file(), page


def test_benchmark_tables_are_rendered_from_a_results_file() -> None:
    page = (DOCS / "benchmarks.md").read_text()
    markers = re.findall(r"<!--\s*benchmark-tables:\s*(\S+)", page)
    assert markers
    for rel in markers:
        data = json.loads((DOCS / rel).read_text())
        rendered = format_markdown(data)
        targets = {key.split("/")[0] for key in data["sections"]}
        assert all(f"**{t}**" in rendered for t in targets)
        # every section the file holds becomes a table row with a ratio column
        lines = rendered.splitlines()
        rows = [line for line in lines if line.startswith("| ") and "---" not in line]
        assert len(rows) > len(targets), rel
        assert all(line.count("|") >= 6 for line in rows), rel


def test_py_fences_only_include_example_files() -> None:
    """```python blocks run (tests/test_docs_code.py); ```py is reserved for including an
    example file (run by tests/test_examples.py), so no code escapes both."""
    included = set()
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for body in re.findall(r"^```py\n(.*?)^```", page.read_text(), re.M | re.S):
            m = re.fullmatch(r'--8<-- "(examples/\w+\.py)"\n', body)
            assert m is not None, (page.name, body[:80])
            included.add(m.group(1))
    assert included == {f"examples/{p.name}" for p in (ROOT / "examples").glob("*.py")}


@pytest.mark.parametrize(
    "url",
    database_urls(
        "memory://", "sqlite:///:memory:", "faiss://", "chroma://", "postgresql://u@127.0.0.1:1/db"
    ),
)
def test_an_unknown_option_is_refused_naming_the_valid_ones(url: str) -> None:
    """The configuration reference's promise: a typo in an option is a ValidationError that
    lists the options the backend takes, never a TypeError or a silently ignored option (and
    before any connection: the PostgreSQL URL names no server)."""
    with pytest.raises(ValidationError, match=r"unknown option\(s\) \['bogus'\].*valid:") as err:
        DatabaseFactory.create(url, bogus=1)
    section = {
        "memory": "Memory",
        "sqlite": "SQLite",
        "faiss": "Faiss",
        "chroma": "Chroma",
        "postgresql": "PostgreSQL",
    }
    for option in CONFIG[section[DatabaseFactory.scheme(url)]]["option"]:
        assert repr(option) in str(err.value)


def test_synchronisation_figures_match_their_results_file() -> None:
    """The measured table of the synchronisation page quotes ``docs/data/sync-100k.json``."""
    import json

    page = (DOCS / "synchronization.md").read_text()
    results = json.loads((DOCS / "data" / "sync-100k.json").read_text())
    for backend in ("sqlite", "postgres"):
        row = results["backends"][backend]
        assert f"**{row['ratio']:.2f}**" in page, backend
        assert f"{row['marks_check_s']:.2f} s" in page, backend
        assert row["marks_exact"] and row["full_exact"] and row["resync_exact"]
        assert (row["second_run_embedded"], row["writer_mismatched"]) == (0, 0)
        assert row["kills"] == 20 and row["kill_extra_batches"] <= row["kills"]
        assert f"{row['kill_texts']:,}" in page, backend
