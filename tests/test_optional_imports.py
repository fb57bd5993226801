"""No test module imports an optional engine unguarded, so ``.[dev]`` alone collects cleanly.

A fresh interpreter blocks every module an optional extra installs (``sys.modules[name] = None``
makes ``import faiss`` fail and ``find_spec("faiss")`` answer None, as on a machine without it)
and imports each ``tests/test_*.py``. A module may import, or skip itself with a reason that
names the extra to install (:func:`dataknobs_data.testing.import_or_skip`); an ImportError, or a
bare ``pytest.importorskip`` whose reason names no extra, fails this test. The checker itself is
tested on two small bad modules, so it cannot silently pass everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from dataknobs_data import DatabaseFactory
from dataknobs_data.testing.extras import (
    ENGINE_MODULES,
    EXTRAS,
    SCHEME_EXTRAS,
    install_hint,
    missing_extra,
)

TESTS = Path(__file__).resolve().parent

CHECKER = textwrap.dedent(
    """
    import importlib.util, json, sys
    engines = json.loads(sys.argv[1])
    for name in engines:
        sys.modules[name] = None  # as if not installed
    import pytest
    outcome = {}
    for i, path in enumerate(sys.argv[2:]):
        spec = importlib.util.spec_from_file_location(f"_guarded_{i}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        try:
            spec.loader.exec_module(module)
        except pytest.skip.Exception as skipped:
            outcome[path] = ["skipped", str(skipped.msg)]
        except BaseException as exc:
            outcome[path] = ["error", f"{type(exc).__name__}: {exc}"]
        else:
            outcome[path] = ["imported", ""]
    print(json.dumps(outcome))
    """
)


def import_without_engines(paths: list[Path]) -> dict[str, tuple[str, str]]:
    """How each module fares when imported with every optional engine blocked."""
    done = subprocess.run(
        [sys.executable, "-c", CHECKER, json.dumps(ENGINE_MODULES), *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        cwd=TESTS,
    )
    return {Path(p).name: (kind, detail) for p, (kind, detail) in json.loads(done.stdout).items()}


def problems(outcome: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Modules that error, or skip without naming an extra to install."""
    hints = [install_hint(extra) for extra in EXTRAS]
    return {
        name: detail
        for name, (kind, detail) in outcome.items()
        if kind == "error" or (kind == "skipped" and detail not in hints)
    }


def test_every_test_module_imports_or_skips_naming_the_extra() -> None:
    outcome = import_without_engines(sorted(TESTS.glob("test_*.py")))
    assert len(outcome) == len(list(TESTS.glob("test_*.py")))
    assert problems(outcome) == {}
    # The engine-only modules really are reached by the block (and skip, not import).
    assert outcome["test_faiss_store.py"][0] == "skipped"
    assert outcome["test_chroma_where.py"][0] == "imported"  # its pure cases run without chroma


#: Probe modules for the checker: source, and what it must make of them (None: no problem).
PROBES: dict[str, tuple[str, str | None]] = {
    "bare_import": ("import faiss\n", "error"),
    "engine_module": ("from dataknobs_data.vector.stores.faiss import FaissVectorStore\n", "error"),
    "importorskip_without_extra": ('import pytest\npytest.importorskip("chromadb")\n', "skipped"),
    "guarded": ("from dataknobs_data.testing import import_or_skip as g\ng('chroma')\n", None),
    "no_engine": ("import numpy\n", None),
}


def test_the_checker_catches_unguarded_imports(tmp_path: Path) -> None:
    """Bad modules are reported (an error, or a skip naming no extra); good ones are not."""
    for name, (source, _) in PROBES.items():
        (tmp_path / f"test_{name}.py").write_text(source)
    outcome = import_without_engines(sorted(tmp_path.glob("test_*.py")))
    found = problems(outcome)
    for name, (_, verdict) in PROBES.items():
        module = f"test_{name}.py"
        if verdict is None:
            assert module not in found, name
        else:
            assert outcome[module][0] == verdict, name
            assert module in found, name


def test_the_extras_table_agrees_with_the_package_and_the_factory() -> None:
    """Each extra the skips name exists in pyproject.toml (read from the source tree, so an
    installed copy of an older version cannot answer for it), and a backend is available to
    the factory exactly when the tests find its extra installed."""
    project = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["project"]
    assert set(EXTRAS) <= set(project["optional-dependencies"])
    shipped = ("sqlite", "postgresql", "faiss", "chroma")  # elasticsearch is only planned
    extra_of = {scheme: SCHEME_EXTRAS[scheme] for scheme in shipped}
    available = {info.scheme: info.available for info in DatabaseFactory.backends()}
    assert {s: available[s] for s in extra_of} == {
        s: missing_extra(e) is None for s, e in extra_of.items()
    }
