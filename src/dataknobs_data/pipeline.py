"""Load a text corpus into a store, resumably: the logic behind ``dataknobs-data ingest``.

It lives outside the CLI because every backend, embedder and benchmark needs the same steps
(batch, embed, upsert) and, more importantly, the same answer to "is this store already
loaded?". That answer must be cheap (a search against a persistent store should not re-parse the
corpus) and safe (a crashed ingest must never pass for a complete one). So a finished ingest
writes a small *manifest* record last, as a commit marker; the store counts as loaded only when
the manifest, the number of corpus records (``db.count``) and the vector field's provenance
(``db.vector_fields``) all agree. Anything less falls back to walking the corpus and embedding
only the documents that are missing or whose text changed, so re-running after a crash resumes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from .corpus import CorpusDoc, iter_stdlib_docstrings
from .database import SyncDatabase
from .errors import UnknownFieldError, ValidationError
from .fields import ID_FIELD, Field, FieldType, VectorField, text_hash
from .query import And, Condition, Filter, Not, Or, all_of
from .records import Record
from .schema import check_model
from .vector.embedders import Embedder
from .vector.exceptions import DimensionMismatchError

__all__ = [
    "CORPORA",
    "CORPUS_FIELDS",
    "DEFAULT_VECTOR_FIELD",
    "CorpusManifest",
    "IngestReport",
    "corpus_filter",
    "corpus_records",
    "doc_records",
    "ensure_corpus",
    "load_corpus",
    "progress_bar",
    "read_manifest",
]

T = TypeVar("T")
Progress = Callable[[int], None]

#: Corpus name -> document source (each accepts ``limit=``).
CORPORA: dict[str, Callable[..., Iterator[CorpusDoc]]] = {"stdlib": iter_stdlib_docstrings}
#: The fields of a corpus record that filters may name (besides the vector field).
CORPUS_FIELDS = frozenset({"title", "body", "module", "kind", "corpus", ID_FIELD})
DEFAULT_VECTOR_FIELD = "embedding"


def load_corpus(name: str, *, limit: int | None = None) -> Iterator[CorpusDoc]:
    """The documents of a named corpus, in its deterministic order."""
    source = CORPORA.get(name)
    if source is None:
        raise ValidationError(f"unknown corpus {name!r}; known: {sorted(CORPORA)}")
    return source(limit=limit)


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def doc_records(
    docs: Sequence[CorpusDoc],
    embedder: Embedder,
    *,
    corpus: str = "stdlib",
    field: str = DEFAULT_VECTOR_FIELD,
) -> list[Record]:
    """Embed ``docs`` in one call and wrap them as records carrying the model's provenance."""
    vectors = embedder.embed([d.body for d in docs])
    return [
        Record(
            {
                "title": d.title,
                "body": Field("body", d.body, FieldType.TEXT),
                "module": d.module,
                "kind": d.kind,
                "corpus": corpus,
                field: VectorField(
                    vec,
                    source_field="body",
                    model_name=embedder.model_name,
                    model_version=embedder.model_version,
                ),
            },
            id=d.id,
        )
        for d, vec in zip(docs, vectors, strict=True)
    ]


def corpus_records(
    docs: Iterable[CorpusDoc],
    embedder: Embedder,
    batch_size: int = 256,
    *,
    corpus: str = "stdlib",
    field: str = DEFAULT_VECTOR_FIELD,
) -> Iterator[list[Record]]:
    """Records in batches of ``batch_size``, embedding one batch at a time (bounded memory)."""
    if batch_size < 1:
        raise ValidationError(f"batch_size must be >= 1, got {batch_size}")
    for batch in _batched(docs, batch_size):
        yield doc_records(batch, embedder, corpus=corpus, field=field)


@dataclass(frozen=True, slots=True)
class CorpusManifest:
    """What a finished ingest left in the store; its presence means "this run completed"."""

    corpus: str
    docs: int
    complete: bool  # the whole corpus, not a ``limit`` prefix
    field: str
    model_name: str
    model_version: str
    dimensions: int

    @staticmethod
    def record_id(corpus: str) -> str:
        return f"dataknobs:corpus:{corpus}"

    def covers(self, limit: int | None) -> bool:
        return self.complete or (limit is not None and self.docs >= limit)

    def matches(self, embedder: Embedder, field: str) -> bool:
        mine = (embedder.model_name, embedder.model_version, embedder.dimensions)
        return (
            self.field == field and (self.model_name, self.model_version, self.dimensions) == mine
        )

    def to_record(self) -> Record:
        # "manifest_of" rather than "corpus", so counting corpus documents never counts this.
        data = asdict(self)
        data["manifest_of"] = data.pop("corpus")
        return Record(data, id=self.record_id(self.corpus))

    @classmethod
    def from_record(cls, record: Record | None) -> CorpusManifest | None:
        """The manifest held by ``record``, or ``None`` if absent or malformed (then re-check)."""
        if record is None:
            return None
        try:
            values = {f.name: record[f.name] for f in fields(cls) if f.name != "corpus"}
            return cls(corpus=str(record["manifest_of"]), **values)
        except (KeyError, TypeError):
            return None


def read_manifest(db: SyncDatabase, corpus: str) -> CorpusManifest | None:
    return CorpusManifest.from_record(db.read(CorpusManifest.record_id(corpus)))


def _check_provenance(db: SyncDatabase, embedder: Embedder, field: str) -> None:
    """Refuse early (before any parsing or embedding) to mix models in one vector field."""
    cfg = db.vector_fields().get(field)
    if cfg is None:
        return
    if cfg.dimensions != embedder.dimensions:
        raise DimensionMismatchError(field, cfg.dimensions, embedder.dimensions)
    check_model(field, cfg, embedder.model_name, embedder.model_version)


def _in_corpus(corpus: str) -> Condition:
    return Condition.make("corpus", "=", corpus)


def _stale(
    db: SyncDatabase, docs: list[CorpusDoc], embedder: Embedder, field: str, corpus: str
) -> list[CorpusDoc]:
    """The docs whose stored record is missing, from another model, or made from other text."""
    label = f"{embedder.model_name}@{embedder.model_version}"
    todo = []
    for doc, rec in zip(docs, db.read_batch([d.id for d in docs]), strict=True):
        vec = rec.get_field(field) if rec is not None else None
        if (
            rec is None
            or rec.get("corpus") != corpus
            or not isinstance(vec, VectorField)
            or vec.model_label != label
            or vec.source_hash != text_hash(doc.body)
        ):
            todo.append(doc)
    return todo


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What :func:`ensure_corpus` did: ``skipped`` means the store was already loaded."""

    corpus: str
    docs: int  # corpus records in the store afterwards
    processed: int  # documents read from the corpus in this call
    embedded: int  # documents embedded and written in this call
    skipped: bool
    seconds: float

    @property
    def docs_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def ensure_corpus(
    db: SyncDatabase,
    embedder: Embedder,
    *,
    corpus: str = "stdlib",
    limit: int | None = None,
    batch_size: int = 256,
    field: str = DEFAULT_VECTOR_FIELD,
    force: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Make ``db`` hold ``corpus`` (its first ``limit`` docs) embedded by ``embedder``.

    Skips all work when a manifest written by the same model covers the request and the corpus
    record count still matches it. Otherwise walks the corpus and embeds only documents that are
    missing or stale (``force`` re-embeds all), writing each batch with ``upsert_batch`` so that
    an interrupted run is resumed, never duplicated, by the next one.
    """
    start = time.perf_counter()
    if batch_size < 1:
        raise ValidationError(f"batch_size must be >= 1, got {batch_size}")
    _check_provenance(db, embedder, field)
    manifest = read_manifest(db, corpus)
    if (
        not force
        and manifest is not None
        and manifest.matches(embedder, field)
        and manifest.covers(limit)
        and db.count(_in_corpus(corpus)) == manifest.docs
    ):
        return IngestReport(corpus, manifest.docs, 0, 0, True, time.perf_counter() - start)
    processed = embedded = 0
    for batch in _batched(load_corpus(corpus, limit=limit), batch_size):
        todo = batch if force else _stale(db, batch, embedder, field, corpus)
        if todo:
            db.upsert_batch(doc_records(todo, embedder, corpus=corpus, field=field))
        processed += len(batch)
        embedded += len(todo)
        if progress is not None:
            progress(len(batch))
    docs = db.count(_in_corpus(corpus))
    complete = limit is None or processed < limit
    db.upsert(
        CorpusManifest(
            corpus,
            docs,
            complete,
            field,
            embedder.model_name,
            embedder.model_version,
            embedder.dimensions,
        ).to_record()
    )
    return IngestReport(corpus, docs, processed, embedded, False, time.perf_counter() - start)


def _filter_paths(node: Filter) -> Iterator[str]:
    if isinstance(node, Condition):
        yield node.field
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from _filter_paths(child)
    elif isinstance(node, Not):
        yield from _filter_paths(node.child)


def corpus_filter(corpus: str, user: Filter | None = None) -> Filter:
    """Scope a search to one corpus's records, refusing filters on fields they do not have.

    A typo such as ``"modul"`` would otherwise match nothing and look like "no results".
    """
    for path in _filter_paths(user) if user is not None else ():
        if path not in CORPUS_FIELDS:
            raise UnknownFieldError(
                path, f"corpus records have no such field; use one of {sorted(CORPUS_FIELDS)}"
            )
    return _in_corpus(corpus) if user is None else all_of(_in_corpus(corpus), user)


def _tqdm() -> Any:
    """The optional ``tqdm`` class, or ``None``: progress bars are a nicety, never a need."""
    if importlib.util.find_spec("tqdm") is None:
        return None
    try:
        return importlib.import_module("tqdm").tqdm
    except ImportError:
        return None


@contextmanager
def progress_bar(
    total: int | None, desc: str, *, enabled: bool = True, unit: str = "docs"
) -> Iterator[Progress]:
    """A ``callback(n)`` that advances a progress display on stderr.

    Uses tqdm when installed; otherwise prints a plain line at most once a second (and once at
    the end), which stays readable in CI logs where a redrawn bar would not be.
    """
    if not enabled:
        yield lambda n: None
        return
    tqdm = _tqdm()
    if tqdm is not None:
        # delay: a run with nothing to do (store already loaded) shows no bar at all
        with tqdm(total=total, desc=desc, unit=f" {unit}", file=sys.stderr, delay=0.5) as bar:
            yield bar.update
        return
    state = {"done": 0, "last": 0.0}
    start = time.monotonic()

    def show() -> None:
        elapsed = max(time.monotonic() - start, 1e-9)
        of = f"/{total}" if total is not None else ""
        rate = state["done"] / elapsed
        print(f"{desc}: {state['done']:.0f}{of} {unit} ({rate:.0f} {unit}/s)", file=sys.stderr)

    def advance(n: int) -> None:
        state["done"] += n
        if time.monotonic() - state["last"] >= 1.0:
            state["last"] = time.monotonic()
            show()

    yield advance
    if state["done"]:
        show()
