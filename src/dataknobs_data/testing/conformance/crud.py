"""Create, read, update, upsert, delete and clear, and the copies the store keeps and hands out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ...errors import (
    DuplicateRecordError,
    InvalidIdentifierError,
    ValidationError,
)
from ...fields import FieldType, VectorField
from ...query import F, Query
from ...records import Record
from ...vector.exceptions import (
    DimensionMismatchError,
)
from ..adapter import DatabaseLike
from ..assertions import record_ids
from ..dataset import (
    DIM,
    DOCS,
    IDS,
    MODEL_LABEL,
    MODEL_NAME,
    MODEL_VERSION,
    QUERY_VECTORS,
    VECTOR_FIELD,
    build_records,
)
from .base import ConformanceBase
from .helpers import unlock, vector_field

__all__ = ["CrudTests"]


class CrudTests(ConformanceBase):
    """Single and batch writes and reads over the dataset; stored records are private copies."""

    # == CRUD ==

    def test_create_and_read_round_trip(self, db: DatabaseLike) -> None:
        """Every dataset record comes back from read() with the same typed content."""
        records = build_records()
        for rec in records:
            assert db.create(rec) == rec.id
        got = [db.read(r.id) for r in records]
        assert all(g is not None for g in got)
        self.assert_records_equal([g for g in got if g is not None], records)
        assert db.count() == len(records)

    def test_create_batch_returns_ids_in_order(self, db: DatabaseLike) -> None:
        """create_batch returns the ids in input order; search() returns them in id order."""
        records = build_records()
        assert db.create_batch(records) == [r.id for r in records]
        by_id = {r.id: r for r in records}
        self.assert_records_equal(db.search(Query()), [by_id[i] for i in IDS])

    def test_create_without_id_generates_one(self, db: DatabaseLike) -> None:
        """A record built without an id gets one, and is stored under it."""
        rec = Record({"title": "anonymous"})
        rid = db.create(rec)
        assert rid == rec.id
        assert rid
        stored = db.read(rid)
        assert stored is not None
        assert stored["title"] == "anonymous"

    def test_read_missing_returns_none(self, loaded_db: DatabaseLike) -> None:
        """read() of an unknown id is None; read_batch keeps order and gaps."""
        assert loaded_db.read("nope") is None
        got = loaded_db.read_batch(["r02", "nope", "Zed", "r02"])
        assert [None if g is None else g.id for g in got] == ["r02", None, "Zed", "r02"]

    def test_exists(self, loaded_db: DatabaseLike) -> None:
        """exists() is True exactly for stored ids."""
        assert loaded_db.exists("été")
        assert loaded_db.exists("r10")
        assert not loaded_db.exists("nope")
        assert not loaded_db.exists("R10")

    def test_invalid_ids_are_refused(self, loaded_db: DatabaseLike) -> None:
        """Empty or control-character ids raise InvalidIdentifierError and change nothing."""
        before = self.snapshot(loaded_db)
        with pytest.raises(InvalidIdentifierError):
            loaded_db.read("")
        with pytest.raises(InvalidIdentifierError):
            loaded_db.delete("a\nb")
        with pytest.raises(InvalidIdentifierError):
            loaded_db.update("", Record({"title": "x"}))
        with pytest.raises(ValidationError):
            loaded_db.delete_batch(["r01", "r01"])
        assert self.snapshot(loaded_db) == before

    def test_create_duplicate_id_raises_and_keeps_original(self, loaded_db: DatabaseLike) -> None:
        """create() of an existing id raises DuplicateRecordError; the original stays."""
        before = self.snapshot(loaded_db)
        with pytest.raises(DuplicateRecordError):
            loaded_db.create(Record({"title": "impostor"}, id="r01"))
        assert self.snapshot(loaded_db) == before

    def test_update_replaces_fields(self, loaded_db: DatabaseLike) -> None:
        """update() replaces the whole record: dropped fields (even the vector) are gone."""
        assert loaded_db.update("r01", Record({"title": "new", "num": 99}, id="r01")) is True
        stored = loaded_db.read("r01")
        assert stored is not None
        assert stored.to_plain() == {"title": "new", "num": 99}
        assert record_ids(loaded_db.search(Query(F("title") == "alpha"))) == []
        assert record_ids(loaded_db.search(Query(F("num") == 99))) == ["r01"]
        hits = loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=100)
        assert "r01" not in [h.record.id for h in hits]
        assert len(hits) == sum(1 for d in DOCS if d.vector is not None) - 1

    def test_update_missing_returns_false_and_writes_nothing(self, loaded_db: DatabaseLike) -> None:
        """update() of an unknown id returns False and creates nothing."""
        before = self.snapshot(loaded_db)
        assert loaded_db.update("nope", Record({"title": "x"}, id="nope")) is False
        assert loaded_db.update_batch([Record({"title": "x"}, id="nope2")]) == [False]
        assert not loaded_db.exists("nope")
        assert not loaded_db.exists("nope2")
        assert self.snapshot(loaded_db) == before

    def test_update_uses_the_given_id(self, loaded_db: DatabaseLike) -> None:
        """update(rid, record) stores under rid even when the record carries another id."""
        assert loaded_db.update("r02", Record({"title": "moved"}, id="elsewhere")) is True
        stored = loaded_db.read("r02")
        assert stored is not None
        assert stored.to_plain() == {"title": "moved"}
        assert not loaded_db.exists("elsewhere")
        assert loaded_db.count() == len(DOCS)

    def test_update_batch_reports_per_record(self, loaded_db: DatabaseLike) -> None:
        """update_batch writes the existing records only and says which existed."""
        flags = loaded_db.update_batch(
            [Record({"num": -1}, id="r03"), Record({"num": -1}, id="ghost"), Record({}, id="Zed")]
        )
        assert flags == [True, False, True]
        assert not loaded_db.exists("ghost")
        r03, zed = loaded_db.read("r03"), loaded_db.read("Zed")
        assert r03 is not None
        assert r03.to_plain() == {"num": -1}
        assert zed is not None
        assert zed.to_plain() == {}

    def test_upsert_creates_then_replaces(self, db: DatabaseLike) -> None:
        """upsert() creates a missing record and replaces an existing one entirely."""
        first = Record({"title": "one", "embedding": vector_field(QUERY_VECTORS[1])}, id="u")
        assert db.upsert(first) == "u"
        self.assert_records_equal([db.read("u")], [first])  # type: ignore[list-item]
        second = Record({"num": 2}, id="u")
        assert db.upsert(second) == "u"
        self.assert_records_equal([db.read("u")], [second])  # type: ignore[list-item]
        assert db.count() == 1
        assert db.vector_search(QUERY_VECTORS[1], field=VECTOR_FIELD) == []

    def test_upsert_batch(self, loaded_db: DatabaseLike) -> None:
        """upsert_batch mixes creates and replacements, all applied."""
        batch = [Record({"title": "fresh"}, id="new1"), Record({"title": "again"}, id="r04")]
        assert loaded_db.upsert_batch(batch) == ["new1", "r04"]
        assert loaded_db.count() == len(DOCS) + 1
        got = loaded_db.read_batch(["new1", "r04"])
        self.assert_records_equal([g for g in got if g is not None], batch)

    def test_delete(self, loaded_db: DatabaseLike) -> None:
        """delete() removes a record from reads, searches, counts and vector searches."""
        assert loaded_db.delete("r01") is True
        assert loaded_db.delete("r01") is False
        assert loaded_db.read("r01") is None
        assert not loaded_db.exists("r01")
        assert loaded_db.count() == len(DOCS) - 1
        assert "r01" not in record_ids(loaded_db.search(Query()))
        hits = loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=3)
        assert [h.record.id for h in hits] == ["r02", "r20", hits[2].record.id]
        assert hits[2].record.id not in ("r01", "r02", "r20")

    def test_delete_batch_and_recreate(self, loaded_db: DatabaseLike) -> None:
        """delete_batch reports per id; a deleted id can be created again."""
        assert loaded_db.delete_batch(["r05", "nope", "Zed"]) == [True, False, True]
        assert loaded_db.count() == len(DOCS) - 2
        again = Record({"title": "back", "embedding": vector_field(QUERY_VECTORS[2])}, id="Zed")
        assert loaded_db.create(again) == "Zed"
        self.assert_records_equal([loaded_db.read("Zed")], [again])  # type: ignore[list-item]
        hits = loaded_db.vector_search(QUERY_VECTORS[2], field=VECTOR_FIELD, k=1)
        assert [h.record.id for h in hits] == ["Zed"]

    def test_clear_keeps_vector_schema(self, loaded_db: DatabaseLike) -> None:
        """clear() returns how many records it removed; the vector schema stays."""
        assert loaded_db.clear() == len(DOCS)
        assert loaded_db.count() == 0
        assert loaded_db.search(Query()) == []
        assert loaded_db.vector_fields()[VECTOR_FIELD].dimensions == DIM
        with pytest.raises(DimensionMismatchError):
            loaded_db.create(Record({"embedding": vector_field([1.0, 2.0])}))
        assert loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD) == []

    def test_vector_schema_and_provenance(self, loaded_db: DatabaseLike) -> None:
        """The vector field learns dimensions and model; stored vectors keep provenance."""
        config = loaded_db.vector_fields()[VECTOR_FIELD]
        assert (config.dimensions, config.model_name, config.model_version) == (
            DIM,
            MODEL_NAME,
            MODEL_VERSION,
        )
        stored = loaded_db.read("r03")
        assert stored is not None
        vec = stored.fields[VECTOR_FIELD]
        assert isinstance(vec, VectorField)
        assert vec.value.dtype == np.float32
        assert vec.value.tolist() == list(DOCS[2].vector or ())
        assert vec.model_label == MODEL_LABEL
        assert vec.source_field == "title"
        assert vec.source_hash is not None
        assert stored.fields["num"].type is FieldType.INTEGER
        r02 = loaded_db.read("r02")
        assert r02 is not None
        assert r02.fields["num"].type is FieldType.FLOAT

    # == copies ==

    def test_mutating_read_results_does_not_change_store(self, loaded_db: DatabaseLike) -> None:
        """Records handed out are copies: changing them (JSON, fields, metadata) changes nothing."""
        before = self.snapshot(loaded_db)
        for rec in [loaded_db.read("r01"), *loaded_db.search(Query(F("_id") == "r11"))]:
            assert rec is not None
            rec["meta"]["author"] = "mallory"
            rec["meta"]["stats"]["views"] = -1
            rec["tags"].append("zzz")
            rec["title"] = "changed"
            del rec["num"]
            rec.metadata["origin"] = "changed"
        streamed = next(iter(loaded_db.stream(Query(F("_id") == "r15"))))
        streamed["tags"].clear()
        assert self.snapshot(loaded_db) == before

    def test_mutating_vector_hits_does_not_change_store(self, loaded_db: DatabaseLike) -> None:
        """Vectors handed out cannot reach the stored ones, even after unlocking the array."""
        before = self.snapshot(loaded_db)
        hits = loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=3)
        read = loaded_db.read("r01")
        assert read is not None
        arrays = [h.record[VECTOR_FIELD] for h in hits] + [read[VECTOR_FIELD]]
        for arr in arrays:
            with pytest.raises(ValueError, match="read-only"):
                arr[0] = 42.0
        for arr in arrays:
            if unlock(arr):
                arr[:] = 42.0
        for hit in hits:
            hit.record["meta"] = {"author": "mallory"}
        assert self.snapshot(loaded_db) == before
        again = loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=3)
        assert [(h.id, h.score) for h in again] == [(h.id, h.score) for h in hits]

    @pytest.mark.parametrize("write", ["create", "upsert", "create_batch", "update"])
    def test_mutating_input_after_write_does_not_change_store(
        self, loaded_db: DatabaseLike, write: str
    ) -> None:
        """The store keeps its own copy of what it was given."""
        source = {"author": "ann", "stats": {"views": 1}}

        def make(meta: dict[str, Any]) -> Record:
            return Record(
                {"title": "mine", "meta": meta, "tags": ["a"],
                 "embedding": vector_field(QUERY_VECTORS[3])},
                id="r01" if write == "update" else "mine",
                metadata={"k": "v"},
            )  # fmt: skip

        rec, expected = make(source), make({"author": "ann", "stats": {"views": 1}})
        if write == "create":
            loaded_db.create(rec)
        elif write == "upsert":
            loaded_db.upsert(rec)
        elif write == "create_batch":
            loaded_db.create_batch([rec])
        else:
            assert loaded_db.update("r01", rec)
        source["author"] = "mallory"
        rec["meta"]["author"] = "mallory"
        rec["tags"].append("b")
        rec["title"] = "changed"
        rec.metadata["k"] = "changed"
        vec = rec[VECTOR_FIELD]
        if unlock(vec):
            vec[:] = 7.0
        self.assert_records_equal([loaded_db.read(rec.id)], [expected])  # type: ignore[list-item]
        hits = loaded_db.vector_search(QUERY_VECTORS[3], field=VECTOR_FIELD, k=1)
        assert [h.record.id for h in hits] == [rec.id]
