"""All-or-nothing writes: a batch (or a single write) with one bad record raises its typed error
and leaves records and vector schema exactly as they were.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ...errors import (
    DuplicateRecordError,
    FieldValidationError,
)
from ...fields import VectorField
from ...records import Record
from ...vector.exceptions import (
    DimensionMismatchError,
    InvalidVectorError,
    MixedEmbeddingModelsError,
)
from ..adapter import DatabaseLike
from ..dataset import (
    DIM,
    QUERY_VECTORS,
    VECTOR_FIELD,
)
from .base import ConformanceBase
from .helpers import unlock, vector_field

__all__ = ["DurabilityTests"]


class DurabilityTests(ConformanceBase):
    """Failed writes change nothing at all: records, counts, vector schema."""

    @staticmethod
    def _bad_batch(bad: str, write: str = "create") -> tuple[list[Record], type[Exception]]:
        """A batch whose last record is wrong in one way, and the error it must raise.

        The good records before it would create new records and (except for a create)
        replace an existing one, so a partial write would show.
        """
        good = [
            Record({"title": "ok1", "embedding": vector_field(QUERY_VECTORS[1])}, id="ok1"),
            Record({"title": "ok2"}, id="ok2"),
        ]
        if write != "create_batch":
            good.append(Record({"title": "replaced", "num": -100}, id="r05"))
        if bad == "wrong-dimension":
            last = Record({"embedding": vector_field([1.0] * (DIM + 1))}, id="bad")
            return [*good, last], DimensionMismatchError
        if bad == "duplicate-in-batch":
            return [*good, Record({"title": "twice"}, id="ok1")], DuplicateRecordError
        if bad == "existing-id":
            return [*good, Record({"title": "dup"}, id="r10")], DuplicateRecordError
        if bad == "other-model":
            last = Record({"embedding": vector_field(QUERY_VECTORS[2], "other")}, id="bad")
            return [*good, last], MixedEmbeddingModelsError
        if bad == "scalar-in-vector-field":
            return [*good, Record({"embedding": 3.5}, id="bad")], FieldValidationError
        if bad == "nan-vector":
            last = Record({"embedding": vector_field(QUERY_VECTORS[2])}, id="bad")
            arr = last[VECTOR_FIELD]
            assert unlock(arr)  # a caller can unlock an array it was handed...
            arr[3] = math.nan  # ...so the store must not trust it blindly
            return [*good, last], InvalidVectorError
        raise AssertionError(bad)

    @pytest.mark.parametrize(
        ("write", "bad"),
        [
            *[("create_batch", b) for b in ("wrong-dimension", "duplicate-in-batch",
                                             "existing-id", "other-model",
                                             "scalar-in-vector-field", "nan-vector")],
            *[("upsert_batch", b) for b in ("wrong-dimension", "duplicate-in-batch",
                                             "other-model", "scalar-in-vector-field",
                                             "nan-vector")],
            *[("update_batch", b) for b in ("wrong-dimension", "duplicate-in-batch",
                                             "other-model", "nan-vector")],
        ],
    )  # fmt: skip
    def test_failed_batch_writes_nothing(
        self, loaded_db: DatabaseLike, write: str, bad: str
    ) -> None:
        """A batch with one bad record raises the typed error and changes nothing at all."""
        batch, error = self._bad_batch(bad, write)
        if write == "update_batch":  # point every record at an existing id
            existing = {"ok1": "r20", "ok2": "r21", "bad": "r22"}
            batch = [Record(dict(r.fields), id=existing.get(r.id, r.id)) for r in batch]
        before = self.snapshot(loaded_db)
        schema_before = loaded_db.vector_fields()
        with pytest.raises(error):
            getattr(loaded_db, write)(batch)
        assert self.snapshot(loaded_db) == before
        assert loaded_db.vector_fields() == schema_before

    @pytest.mark.parametrize("bad", ["wrong-dimension", "other-model", "nan-vector"])
    def test_failed_single_write_writes_nothing(self, loaded_db: DatabaseLike, bad: str) -> None:
        """create/upsert/update of one bad record raise and leave the store as it was."""
        batch, error = self._bad_batch(bad)
        rec = batch[-1]
        before = self.snapshot(loaded_db)
        with pytest.raises(error):
            loaded_db.create(rec)
        with pytest.raises(error):
            loaded_db.upsert(rec)
        with pytest.raises(error):
            loaded_db.update("r01", rec)
        assert self.snapshot(loaded_db) == before

    def test_non_finite_vectors_are_refused_when_built(self, db: DatabaseLike) -> None:
        """NaN and infinite vectors never become records, so they never reach a store."""
        for bad in (math.nan, math.inf, -math.inf):
            values = [0.5] * DIM
            values[2] = bad
            with pytest.raises(InvalidVectorError):
                db.create(Record({"embedding": VectorField(values)}, id="x"))
            with pytest.raises(InvalidVectorError):
                db.create_batch([Record({"embedding": np.asarray(values)}, id="x")])
        assert db.count() == 0

    def test_batch_of_new_vector_field_is_atomic(self, db: DatabaseLike) -> None:
        """A batch that would create a vector field but fails leaves no schema behind."""
        batch = [
            Record({"v": VectorField([1.0, 2.0])}, id="a"),
            Record({"v": VectorField([1.0, 2.0, 3.0])}, id="b"),
        ]
        with pytest.raises(DimensionMismatchError):
            db.create_batch(batch)
        assert db.count() == 0
        assert "v" not in db.vector_fields()
        db.create(Record({"v": VectorField([1.0, 2.0, 3.0])}, id="c"))
        assert db.vector_fields()["v"].dimensions == 3
