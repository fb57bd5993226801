"""Model upgrade, blue/green: re-embed into a new field, switch, roll back, never mix spaces.

On every backend in both shells: the core flow (upgrade, switch, rollback restores the old
answers, a re-run embeds nothing). On every backend (sync): searches that would mix two
embedding models are refused, and a reader thread searching by text during the re-embedding
and the switches never fails and never gets an answer from another space than the field that
served it (:mod:`dataknobs_data.vector.benchmarks.model_upgrade` checks each answer). On
SQLite and PostgreSQL also a reader in a second process, and an interrupted upgrade resumed.

``DATAKNOBS_UPGRADE_RECORDS`` (default 400) sets the records of the reader tests; the
acceptance run at 50k is ``python -m dataknobs_data.vector.benchmarks.model_upgrade``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record
from dataknobs_data.errors import QueryError, SchemaError, UnknownFieldError
from dataknobs_data.testing import (
    CHROMA,
    FAISS,
    MEMORY,
    SQLITE,
    BackendSpec,
    DatabaseLike,
    database_params,
    open_database,
    param_id,
    server_specs,
)
from dataknobs_data.testing.adapter import SyncView
from dataknobs_data.testing.backends import POSTGRES_URL_ENV
from dataknobs_data.testing.embedders import CountingEmbedder
from dataknobs_data.testing.extras import skip_unless_extra
from dataknobs_data.vector.benchmarks.model_upgrade import corpus, query_texts, run_upgrade
from dataknobs_data.vector.embedders import get_embedder
from dataknobs_data.vector.exceptions import (
    DimensionMismatchError,
    MixedEmbeddingModelsError,
    VectorizingRuleError,
)
from dataknobs_data.vector.migrate import AsyncVectorMigration, VectorMigration
from dataknobs_data.vector.sync import AsyncVectorTextSynchronizer, VectorTextSynchronizer

BACKENDS: list[BackendSpec] = [MEMORY, SQLITE, FAISS, CHROMA, *server_specs()]
N = 200
RECORDS = int(os.environ.get("DATAKNOBS_UPGRADE_RECORDS", "400"))
OLD, NEW = "hashing:16", "hashing:24"


@pytest.fixture(params=database_params(BACKENDS), ids=param_id)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseLike]:
    spec, mode = request.param
    with open_database(spec, mode, tmp_path) as database:
        yield database


class Ops:
    """The upgrade API in the shell ``db`` is: ``VectorMigration`` on a SyncDatabase,
    ``AsyncVectorMigration`` (awaited) on the AsyncDatabase behind a SyncView."""

    def __init__(self, db: DatabaseLike) -> None:
        self.db = db
        self.view = db if isinstance(db, SyncView) else None

    def call(self, method: str, *args: Any, **options: Any) -> Any:
        if self.view is not None:
            coro = getattr(AsyncVectorMigration(), method)(self.view.inner, *args, **options)
            return self.view.run(coro)
        return getattr(VectorMigration(), method)(self.db, *args, **options)

    def searcher(self, *embedders: Any) -> Callable[..., Any]:
        if self.view is not None:
            view = self.view
            asearch = AsyncVectorTextSynchronizer(view.inner, None, embedders=embedders)
            return lambda text, **kw: view.run(asearch.search_text(text, **kw))
        sync = VectorTextSynchronizer(self.db, None, embedders=embedders)
        return sync.search_text


def _load(db: DatabaseLike, n: int = N, embedder: Any = None, mode: str = "manual") -> None:
    db.create_batch(list(corpus(n)))
    VectorMigration().add_vectors_to_existing(
        db, "title,body", "emb", embedder or get_embedder(OLD), batch_size=64, mode=mode
    )


def _ids(hits: Any) -> tuple[str, ...]:
    return tuple(h.id for h in hits)


def test_upgrade_switch_rollback(db: DatabaseLike) -> None:
    """Searches stay on the old field through the re-embedding, follow the switch, and the
    rollback restores exactly the old answers; a re-run embeds nothing."""
    ops = Ops(db)
    _load(db, mode="deferred")
    old, new = get_embedder(OLD), get_embedder(NEW)
    search = ops.searcher(old, new)
    texts = query_texts(6)
    before = [search(t, k=5) for t in texts]
    assert {h.field for h in before} == {"emb"} and all(len(h) == 5 for h in before)

    done = ops.call("upgrade_model", "emb", "emb2", new, batch_size=64)
    assert (done.records, done.embedded, done.written, done.failed) == (N, N, N, 0)
    assert ops.call("default_field") == "emb"
    assert db.vector_fields()["emb2"].dimensions == 24
    assert db.vector_fields()["emb2"].model_name == new.model_name
    during = [search(t, k=5) for t in texts]
    assert [(h.field, _ids(h)) for h in during] == [("emb", _ids(h)) for h in before]
    report = VectorTextSynchronizer(db).check(fields=["emb2"])
    assert report.fields["emb2"].current == N

    assert ops.call("switch", "emb2") == "emb"
    assert ops.call("default_field") == "emb2"
    after = [search(t, k=5) for t in texts]
    for text, hits in zip(texts, after, strict=True):
        vec = new.embed([text])[0]
        assert hits.field == "emb2" and hits.model == "dataknobs-hashing@1"
        assert _ids(hits) == _ids(db.vector_search(vec, field="emb2", k=5))
        assert _ids(hits) == _ids(db.vector_search(vec, k=5))  # unnamed: the default
    assert [_ids(h) for h in after] != [_ids(h) for h in before]  # another space indeed
    with pytest.raises(DimensionMismatchError, match="emb2"):
        db.vector_search(old.embed([texts[0]])[0], k=5)  # an old-space query, unnamed

    assert ops.call("rollback_upgrade") == "emb"
    back = [search(t, k=5) for t in texts]
    assert [(h.field, _ids(h)) for h in back] == [("emb", _ids(h)) for h in before]
    again = ops.call("upgrade_model", "emb", "emb2", new, batch_size=64)
    assert (again.embedded, again.written) == (0, 0)

    # Both rules stay in force: an edited source leaves a pending mark for each field.
    rec = db.read("r0000003")
    assert rec is not None
    rec["title"] = "an edited title"
    db.update("r0000003", rec)
    edited = db.read("r0000003")
    assert edited is not None and sorted(edited.get("_dk_pending")) == ["emb", "emb2"]


@pytest.mark.parametrize("spec", [MEMORY, SQLITE], ids=str)
def test_refusals(spec: BackendSpec, tmp_path: Path) -> None:
    """Each refusal is typed and names the field; nothing is stored by a refused upgrade."""
    m = VectorMigration()
    with open_database(spec, "sync", tmp_path) as db:
        db.create_batch([Record({"title": "a b", "body": "c"}, id="x")])
        with pytest.raises(VectorizingRuleError, match=r"'emb'.*no vectorizing rule"):
            m.upgrade_model(db, "emb", "emb2", get_embedder(NEW))
        assert db.backend.settings("") == {} and db.vector_fields() == {}
        _load(db, 20)
        with pytest.raises(VectorizingRuleError, match="'emb'"):
            m.upgrade_model(db, "emb", "emb", get_embedder(NEW))
        with pytest.raises(VectorizingRuleError, match="'title'"):
            m.upgrade_model(db, "emb", "title", get_embedder(NEW))
        with pytest.raises(UnknownFieldError, match="'nope'"):
            m.switch(db, "nope")
        with pytest.raises(SchemaError, match="nothing to roll back"):
            m.rollback_upgrade(db)
        assert m.default_field(db) is None
        m.upgrade_model(db, "emb", "emb2", get_embedder(NEW))
        with pytest.raises(SchemaError, match=r"'emb2'.*already declared"):
            m.upgrade_model(db, "emb", "emb2", get_embedder("hashing:32"))
        with pytest.raises(SchemaError, match=r"'emb'.*default vector field"):
            m.finish(db, "emb")
        assert m.switch(db, "emb2") == "emb"
        assert m.switch(db, "emb2") == "emb2"  # already: no change
        assert m.finish(db, "emb") is True
        assert sorted(VectorTextSynchronizer(db).rules) == ["emb2"]
        with pytest.raises(SchemaError, match="nothing to roll back"):
            m.rollback_upgrade(db)  # finished: the old field is retired
        assert m.switch(db, "emb") == "emb2"  # still possible by hand: its vectors stay


def test_unnamed_search_without_default_is_refused(tmp_path: Path) -> None:
    with open_database(MEMORY, "sync", tmp_path) as db:
        db.create(Record({"a": np.ones(4, dtype=np.float32), "b": np.ones(3, dtype=np.float32)}))
        with pytest.raises(QueryError, match="no default vector field"):
            db.vector_search(np.ones(4, dtype=np.float32))
        db.backend.write_setting("search:default_field", "gone")
        with pytest.raises(UnknownFieldError, match=r"'gone'.*default vector field"):
            db.vector_search(np.ones(4, dtype=np.float32))


@pytest.mark.parametrize("spec", BACKENDS, ids=str)
def test_mixed_spaces_are_refused(spec: BackendSpec, tmp_path: Path) -> None:
    """Same dimensions, two models: a query of one model is never ranked against the other's
    vectors, named or through the default, and a searcher lacking the field's embedder says so."""
    a = CountingEmbedder(16, name="model-a")
    b = CountingEmbedder(16, name="model-b")
    m = VectorMigration()
    with open_database(spec, "sync", tmp_path) as db:
        _load(db, 60, a)
        m.upgrade_model(db, "emb", "emb2", b)
        vec = a.embed(["kalan tolrin"])[0]
        with pytest.raises(MixedEmbeddingModelsError, match="'emb2'"):
            db.vector_search(vec, field="emb2", model="model-a@1")
        with pytest.raises(MixedEmbeddingModelsError, match="'emb'"):
            db.vector_search(vec, field="emb", model="model-b@1")
        assert _ids(db.vector_search(vec, model="model-a@1"))  # default: the old field
        m.switch(db, "emb2")
        with pytest.raises(MixedEmbeddingModelsError, match="'emb2'"):
            db.vector_search(vec, model="model-a@1")
        only_old = VectorTextSynchronizer(db, a)
        with pytest.raises(MixedEmbeddingModelsError, match=r"'emb2'.*model-b"):
            only_old.search_text("kalan tolrin")
        assert only_old.search_text("kalan tolrin", field="emb").field == "emb"
        both = VectorTextSynchronizer(db, None, embedders=[a, b])
        hits = both.search_text("kalan tolrin", k=3)
        assert (hits.field, hits.model, len(hits)) == ("emb2", "model-b@1", 3)


class _Interrupted(BaseException):
    """Stands for the process being stopped in the middle of the re-embedding."""


class _StopsAfter(CountingEmbedder):
    def __init__(self, dims: int, calls: int) -> None:
        super().__init__(dims)
        self.left = calls

    def embed(self, texts: Any) -> Any:
        if self.left == 0:
            raise _Interrupted
        self.left -= 1
        return super().embed(texts)


@pytest.mark.parametrize("spec", [MEMORY, SQLITE, *server_specs()], ids=str)
def test_interrupted_upgrade_resumes(spec: BackendSpec, tmp_path: Path) -> None:
    """An upgrade stopped after two pages keeps them; the re-run embeds only the rest."""
    m = VectorMigration()
    with open_database(spec, "sync", tmp_path) as db:
        _load(db)
        with pytest.raises(_Interrupted):
            m.upgrade_model(db, "emb", "emb2", _StopsAfter(24, 2), batch_size=50)
        assert m.default_field(db) == "emb"
        rest = CountingEmbedder(24)
        done = m.upgrade_model(db, "emb", "emb2", rest, batch_size=50)
        assert (done.embedded, done.written, rest.texts) == (N - 100, N - 100, N - 100)
        assert VectorTextSynchronizer(db).check(fields=["emb2"]).fields["emb2"].current == N


def _url(spec: BackendSpec, tmp_path: Path) -> str:
    if spec is SQLITE:
        return f"sqlite:///{tmp_path}/upgrade.db"
    base = os.environ[POSTGRES_URL_ENV]
    return f"{base}{'&' if '?' in base else '?'}collection=t_{uuid.uuid4().hex[:16]}"


def _assert_clean(figures: dict[str, Any]) -> None:
    assert figures["failures"] == 0, figures["samples"]
    assert figures["mixed"] == 0, figures["samples"]
    assert figures["misrouted"] == 0, figures["samples"]
    assert figures["by_field"].get("emb", 0) > 0 and figures["by_field"].get("emb2", 0) > 0
    assert figures["served_during_upgrade"] > 0
    assert figures["rollback_restores"] and figures["ok"]


@pytest.mark.parametrize("spec", BACKENDS, ids=str)
def test_reader_thread_during_upgrade(spec: BackendSpec, tmp_path: Path) -> None:
    """A reader thread (its own connection on SQLite and PostgreSQL, the same object where one
    process holds the store alone) searching by text never fails or mixes spaces."""
    shared = spec not in (SQLITE, *server_specs())
    if shared:
        with open_database(spec, "sync", tmp_path) as db:
            figures = run_upgrade("-", RECORDS, reader="thread", database=db, share=True, wait=10)
    else:
        if spec.extra:
            skip_unless_extra(spec.extra)
        url = _url(spec, tmp_path)
        db = DatabaseFactory.create(url, **({"temporary": True} if spec is not SQLITE else {}))
        try:
            figures = run_upgrade(url, RECORDS, reader="thread", database=db, wait=10)
        finally:
            db.close()
    _assert_clean(figures)


@pytest.mark.parametrize("spec", [SQLITE, *server_specs()], ids=str)
def test_reader_process_during_upgrade(spec: BackendSpec, tmp_path: Path) -> None:
    """The same with the reader in a second process, which sees the switch at its next
    search (the default is read in the search itself)."""
    if spec.extra:
        skip_unless_extra(spec.extra)
    url = _url(spec, tmp_path)
    db = DatabaseFactory.create(url, **({"temporary": True} if spec is not SQLITE else {}))
    try:
        figures = run_upgrade(url, RECORDS, reader="process", database=db, wait=10)
    finally:
        db.close()
    _assert_clean(figures)


def test_cli_upgrade_switch_and_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The upgrade flags through the functions the migration command calls, on a SQLite file."""
    import argparse
    import json

    from dataknobs_data.vector.migrate import upgrade_cli

    url = f"sqlite:///{tmp_path}/cli.db"
    db = DatabaseFactory.create(url)
    _load(db, 50)
    db.close()

    parser = argparse.ArgumentParser()  # as the command's own parser would hold them
    parser.add_argument("--source")
    parser.add_argument("--embedder", default="hashing")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    upgrade_cli.add_arguments(parser)
    assert not upgrade_cli.selected(parser.parse_args(["--source", url]))

    args = parser.parse_args(
        ["--source", url, "--upgrade", "emb", "--new-field", "emb2", "--embedder", NEW, "--json"]
    )
    assert upgrade_cli.selected(args)
    assert upgrade_cli.run(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["default_field"], doc["result"]["embedded"]) == ("emb", 50)

    assert upgrade_cli.main(["--source", url, "--switch", "emb2"]) == 0
    assert "'emb' -> 'emb2'" in capsys.readouterr().out
    assert upgrade_cli.main(["--source", url, "--default-field", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["default_field"] == "emb2"
    assert upgrade_cli.main(["--source", url, "--switch-back"]) == 0
    assert "'emb2' -> 'emb'" in capsys.readouterr().out

    # usage errors and refusals: exit status 2, one line naming the problem
    assert upgrade_cli.main(["--source", url, "--upgrade", "emb"]) == 2
    assert "--new-field" in capsys.readouterr().err
    assert upgrade_cli.main(["--source", url, "--switch", "emb", "--switch-back"]) == 2
    assert "choose one" in capsys.readouterr().err
    assert upgrade_cli.main(["--source", url, "--switch", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err
    code = upgrade_cli.main(["--source", url, "--upgrade", "title", "--new-field", "t2"])
    assert code == 2 and "'title'" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path}/missing.db"
    assert upgrade_cli.main(["--source", missing, "--switch", "emb"]) == 2
    assert "no SQLite database" in capsys.readouterr().err


@pytest.mark.parametrize("spec", [SQLITE, *server_specs()], ids=str)
def test_another_connection_follows_the_switch(spec: BackendSpec, tmp_path: Path) -> None:
    """A database object opened before the upgrade (its own connections and schema cache, as
    another process has) follows each switch at its next unnamed search."""
    if spec.extra:
        skip_unless_extra(spec.extra)
    url = _url(spec, tmp_path)
    db = DatabaseFactory.create(url, **({"temporary": True} if spec is not SQLITE else {}))
    other = DatabaseFactory.create(url)
    try:
        _load(db, 80)
        old, new = get_embedder(OLD), get_embedder(NEW)
        text = query_texts(1)[0]
        first = _ids(other.vector_search(old.embed([text])[0], k=5))
        m = VectorMigration()
        m.upgrade_model(db, "emb", "emb2", new)
        assert _ids(other.vector_search(old.embed([text])[0], k=5)) == first
        m.switch(db, "emb2")
        hits = other.vector_search(new.embed([text])[0], k=5)
        assert _ids(hits) == _ids(db.vector_search(new.embed([text])[0], field="emb2", k=5))
        with pytest.raises(DimensionMismatchError, match="'emb2'"):
            other.vector_search(old.embed([text])[0], k=5)
        m.rollback_upgrade(db)
        assert _ids(other.vector_search(old.embed([text])[0], k=5)) == first
    finally:
        other.close()
        db.close()


def test_the_callers_synchroniser_stays_attached(tmp_path: Path) -> None:
    """After the upgrade (and after finish), writes through the database still embed with the
    embedder the caller attached; the other field's rule leaves a pending mark."""
    old, new = get_embedder(OLD), get_embedder(NEW)
    m = VectorMigration()
    with open_database(MEMORY, "sync", tmp_path) as db:
        db.create_batch(list(corpus(30)))
        live = VectorTextSynchronizer(db, old)
        live.set_rule(live.rule_for("emb", ["title", "body"], mode="on_write"), check=False)
        live.bulk_sync()
        m.upgrade_model(db, "emb", "emb2", new)
        rec = db.read("r0000001")
        assert rec is not None
        rec["title"] = "an edited title"
        db.update("r0000001", rec)
        edited = db.read("r0000001")
        assert edited is not None and list(edited.get("_dk_pending")) == ["emb2"]
        assert live.vector_of(edited, "emb") is not None  # embedded inside the write
        m.switch(db, "emb2")
        assert m.finish(db, "emb") is True
        assert db.tracker is not None and getattr(db.tracker, "embedder", None) is old
        assert sorted(VectorTextSynchronizer(db).rules) == ["emb2"]
