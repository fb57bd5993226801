"""Bulk loading: stream any number of records in all-or-nothing batches, resumably, and build
the ANN index once at the end instead of maintaining it row by row.

Why a separate entry point from ``create_batch``: a long load should neither hold every record
in memory nor lose its progress when the process dies. Each batch is one backend write (one
transaction or journal entry), so a crash loses at most the batch in flight; re-running the
same load with ``skip_existing=True`` skips what is already stored and continues. Inserting
into an HNSW index row by row is several times slower than building it once over the loaded
table, so ``index=`` drops the field's existing index first and (re)builds it after the last
batch.
"""

from __future__ import annotations

import importlib.util
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BackendUnavailableError, ValidationError
from .fields import validate_field_name
from .ints import checked_int
from .records import Record

__all__ = ["LoadPlan", "LoadReport", "run_load"]

INDEX_PARAMS = ("m", "ef_construction", "lists")


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a load did: records written and skipped, batches, seconds, and the index built."""

    written: int
    skipped: int
    batches: int
    seconds: float
    index: dict[str, Any] | None = None

    @property
    def rows_per_second(self) -> float:
        """Records written per second of the load (0 for an instant one)."""
        return self.written / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Validated arguments of :meth:`SyncDatabase.load` (built before any record is read)."""

    batch_size: int
    skip_existing: bool
    index: str | None
    index_field: str | None
    index_params: dict[str, int]
    progress: bool

    @classmethod
    def build(
        cls,
        batch_size: int,
        skip_existing: bool,
        index: str | None,
        index_field: str | None,
        index_params: Mapping[str, int] | None,
        progress: bool,
        index_kinds: tuple[str, ...],
    ) -> LoadPlan:
        """Validate :meth:`SyncDatabase.load`'s arguments before any record is read."""
        checked_int("batch_size", batch_size, 1)
        if index is not None and index not in index_kinds:
            raise ValidationError(f"index must be one of {index_kinds} or None, got {index!r}")
        if index_field is not None:
            validate_field_name(index_field)
        params = dict(index_params or {})
        for name, value in params.items():
            if name not in INDEX_PARAMS:
                raise ValidationError(f"unknown index parameter {name!r}; known: {INDEX_PARAMS}")
            checked_int(f"index parameter {name}", value)
        if (index_field is not None or params) and index is None:
            raise ValidationError("index_field/index_params need index='auto', 'hnsw' or ...")
        if progress and importlib.util.find_spec("tqdm") is None:
            raise BackendUnavailableError(
                'progress=True needs tqdm: pip install "dataknobs-data[progress]"'
            )
        return cls(batch_size, bool(skip_existing), index, index_field, params, bool(progress))


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while batch := list(itertools.islice(it, size)):
        yield batch


def run_load(
    plan: LoadPlan,
    records: Iterable[Record],
    *,
    write: Callable[[list[Record]], Any],
    contains: Callable[[list[str]], list[bool]],
    vector_fields: Callable[[], list[str]],
    drop_index: Callable[[str], bool],
    create_index: Callable[[str, str, dict[str, int]], dict[str, Any]],
    check: Callable[[list[Record]], list[Record]],
) -> LoadReport:
    """Drive a load with the shell's prepared operations (so validation is the shell's own).

    The index field is resolved before loading when the store already has vector fields, and
    after loading otherwise (the first batch declares them).
    """
    field = plan.index_field
    dropped = False
    if plan.index is not None:
        fields = vector_fields()
        if field is None and len(fields) == 1:
            field = fields[0]
        if field is not None and field in fields:
            dropped = drop_index(field)  # built once at the end instead of row by row
    bar = _progress_bar() if plan.progress else None
    written = skipped = batches = 0
    start = time.perf_counter()
    try:
        for batch in _batches(records, plan.batch_size):
            batch = check(batch)
            if plan.skip_existing:
                present = contains([r.id for r in batch])
                fresh = [r for r, seen in zip(batch, present, strict=True) if not seen]
                skipped += len(batch) - len(fresh)
                batch = fresh
            if batch:
                write(batch)
                written += len(batch)
            batches += 1
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    index_stats = None
    if plan.index is not None:
        if field is None:
            fields = vector_fields()
            if len(fields) != 1:
                raise ValidationError(
                    f"index_field is needed: the store has vector fields {sorted(fields)}"
                )
            field = fields[0]
        index_stats = create_index(field, plan.index, plan.index_params)
        index_stats = {**index_stats, "rebuilt": dropped}
    return LoadReport(written, skipped, batches, time.perf_counter() - start, index_stats)


def _progress_bar() -> Any:
    from tqdm import tqdm

    return tqdm(unit="rec", desc="load", smoothing=0.1)
