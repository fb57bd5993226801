"""Fields and records: validation, normalisation, exact round trips, copy semantics."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest

from dataknobs_data import (
    MISSING,
    DimensionMismatchError,
    Field,
    FieldType,
    FieldValidationError,
    InvalidIdentifierError,
    InvalidVectorError,
    Record,
    SparseVector,
    VectorField,
)
from dataknobs_data.fields import text_hash


@pytest.mark.parametrize(
    ("value", "ftype"),
    [
        (True, FieldType.BOOLEAN),
        (3, FieldType.INTEGER),
        (np.int64(3), FieldType.INTEGER),
        (2.5, FieldType.FLOAT),
        ("x", FieldType.STRING),
        (datetime(2020, 1, 1, tzinfo=UTC), FieldType.DATETIME),
        (b"\x00\x01", FieldType.BINARY),
        ({"a": [1, 2]}, FieldType.JSON),
        ([1, "a"], FieldType.JSON),
        (None, FieldType.JSON),
    ],
)
def test_type_inference(value: object, ftype: FieldType) -> None:
    """Bare values get the field type a user would expect."""
    assert Field("f", value).type is ftype


@pytest.mark.parametrize(
    ("value", "ftype", "problem"),
    [
        ("abc", FieldType.INTEGER, "not valid for a integer"),
        (True, FieldType.INTEGER, "not valid for a integer"),
        (2**63, FieldType.INTEGER, "64 bits"),
        (float("nan"), FieldType.FLOAT, "finite"),
        (float("inf"), FieldType.FLOAT, "finite"),
        ({"a": float("nan")}, FieldType.JSON, "finite"),
        ({1: "a"}, FieldType.JSON, "keys must be strings"),
        ({"d": datetime(2020, 1, 1)}, FieldType.JSON, "not JSON-native"),
        ("2020-13-45", FieldType.DATETIME, "ISO-8601"),
        (1, "nonsense", "unknown field type"),
    ],
)
def test_bad_values_name_field_and_problem(value: object, ftype: object, problem: str) -> None:
    """A wrong value raises FieldValidationError naming the field and the problem."""
    with pytest.raises(FieldValidationError) as err:
        Field("price", value, ftype)  # type: ignore[arg-type]
    assert err.value.field == "price"
    assert problem in str(err.value)


def test_datetimes_are_normalised_to_aware_utc() -> None:
    """Naive datetimes are taken as UTC and aware ones converted, so all compare."""
    naive = Field("t", datetime(2020, 1, 1, 12)).value
    aware = Field("t", datetime(2020, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))).value
    assert naive == aware and naive.tzinfo is UTC
    assert Field("t", date(2020, 1, 1), FieldType.DATETIME).value == datetime(
        2020, 1, 1, tzinfo=UTC
    )
    assert Field("t", "2020-01-01T00:00:00", FieldType.DATETIME).value.tzinfo is UTC


@pytest.mark.parametrize("name", ["", "a.b", "_id", "x\n", "a" * 129, 3])
def test_field_names_are_validated(name: object) -> None:
    """Names that would be ambiguous in a filter path are refused."""
    with pytest.raises(InvalidIdentifierError):
        Field(name, 1)  # type: ignore[arg-type]


def test_fields_are_immutable_and_json_values_owned() -> None:
    """Mutating the input after construction, or the field, cannot change stored data."""
    src = {"a": [1, 2]}
    f = Field("meta", src)
    src["a"].append(3)
    assert f.value == {"a": [1, 2]}
    with pytest.raises(AttributeError):
        f.value = 5  # type: ignore[misc]
    c = f.copy()
    c.value["a"].append(9)
    assert f.value == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("value", "error", "problem"),
    [
        ([], InvalidVectorError, "empty"),
        ([1.0, float("nan")], InvalidVectorError, "non-finite value at index 1"),
        ([1.0, float("inf")], InvalidVectorError, "non-finite"),
        ([1e39], InvalidVectorError, "non-finite"),  # overflows float32
        ([[1.0, 2.0]], InvalidVectorError, "1-D"),
        (["a", "b"], InvalidVectorError, "numbers"),
        ("abc", InvalidVectorError, "sequence of numbers"),
        ([True, False], InvalidVectorError, "numbers"),
    ],
)
def test_vector_validation(value: object, error: type[Exception], problem: str) -> None:
    """Bad vectors raise a typed error that names the problem."""
    with pytest.raises(error, match=problem):
        VectorField(value, name="emb")


def test_vector_dimension_check_and_copy() -> None:
    """Declared dimensions are enforced; the field owns a read-only float32 copy."""
    with pytest.raises(DimensionMismatchError) as err:
        VectorField([1, 2, 3], name="emb", dimensions=4)
    assert (err.value.expected, err.value.actual, err.value.field) == (4, 3, "emb")
    src = np.array([1.0, 2.0], dtype=np.float64)
    vf = VectorField(src)
    src[0] = 99
    assert vf.value.dtype == np.float32 and vf.value.flags.c_contiguous
    assert vf.value.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="read-only"):
        vf.value[0] = 5


def test_vector_round_trip_is_exact() -> None:
    """to_dict/from_dict through JSON gives back bit-identical float32 and provenance."""
    vec = np.random.default_rng(1).normal(size=384).astype(np.float32)
    vf = VectorField(
        vec,
        name="emb",
        source_field="body",
        model_name="m",
        model_version="2",
        source_hash="abc",
        metadata={"k": [1]},
    )
    back = Field.from_dict(json.loads(json.dumps(vf.to_dict())))
    assert isinstance(back, VectorField)
    assert back == vf
    assert back.value.tobytes() == vf.value.tobytes()
    assert back.provenance.model_name == "m" and back.dimensions == 384


def test_sparse_vector_validation_and_round_trip() -> None:
    """Sparse vectors keep sorted unique indices and survive JSON exactly."""
    sv = SparseVector([1, 5, 9], [0.5, -1.0, 2.0], dimensions=10)
    assert sv.to_dense()[5] == -1.0
    f = Field("sp", sv)
    assert f.type is FieldType.SPARSE_VECTOR
    assert Field.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    for bad in (([5, 1], [1, 1]), ([1, 1], [1, 1]), ([10], [1]), ([1], [1, 2])):
        with pytest.raises(InvalidVectorError):
            SparseVector(bad[0], bad[1], dimensions=10)


def test_record_round_trip_every_type() -> None:
    """A record with every field type survives to_dict -> JSON -> from_dict unchanged."""
    rec = Record(
        {
            "s": "text",
            "t": Field("t", "long body", FieldType.TEXT),
            "i": -5,
            "f": 1.5,
            "b": False,
            "d": datetime(2021, 5, 1, 3, 4, 5, 123456, tzinfo=UTC),
            "j": {"a": {"b": [1, None, "x"]}},
            "bin": b"\x00\xff",
            "n": None,
            "v": VectorField([0.1, 0.2], model_name="m"),
            "sp": SparseVector([0], [1.0], 3),
        },
        id="r1",
        metadata={"source": "test"},
    )
    back = Record.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec
    assert list(back) == list(rec)


def test_record_access_and_copy_semantics() -> None:
    """Dict-style access works; copies and inputs are independent of each other."""
    data = {"title": "a", "meta": {"author": "x"}}
    rec = Record(data, id="r")
    data["meta"]["author"] = "changed"
    assert rec["meta"] == {"author": "x"}
    assert rec.get_path("meta.author") == "x"
    assert rec.get_path("meta.missing") is MISSING
    assert rec.get_path("title.x") is MISSING
    assert rec.get_path("_id") == "r"
    clone = rec.copy()
    clone["meta"]["author"] = "y"
    clone["title"] = "b"
    assert rec["meta"]["author"] == "x" and rec["title"] == "a"
    assert "title" in rec and len(rec) == 2 and rec.get("nope", 1) == 1
    del clone["title"]
    assert "title" in rec and "title" not in clone
    assert rec.project(["title"]).to_plain() == {"title": "a"}


def test_record_ids() -> None:
    """Ids are generated when absent and validated when given."""
    a, b = Record({}), Record({})
    assert a.id != b.id and len(a.id) == 32
    for bad in ("", "a\x00b", 5, "x" * 513):
        with pytest.raises(InvalidIdentifierError):
            Record({}, id=bad)  # type: ignore[arg-type]


def test_source_hash_tracks_the_source_text() -> None:
    """A vector's source_hash is filled from its source field and stays when the text changes."""
    rec = Record({"body": "hello", "emb": VectorField([1.0, 0.0], source_field="body")})
    emb = rec.fields["emb"]
    assert isinstance(emb, VectorField) and emb.source_hash == text_hash("hello")
    rec["body"] = "changed"
    emb2 = rec.fields["emb"]
    assert isinstance(emb2, VectorField) and emb2.source_hash == text_hash("hello")
    assert emb2.source_hash != text_hash(rec["body"])


def test_ndarray_values_become_vector_fields_and_names_must_match() -> None:
    """A bare ndarray is a vector; a Field stored under another name is refused."""
    rec = Record({"emb": np.ones(3)})
    assert isinstance(rec.fields["emb"], VectorField)
    with pytest.raises(FieldValidationError, match="named"):
        Record({"a": Field("b", 1)})
    with pytest.raises(FieldValidationError, match="VectorField"):
        Field("x", np.ones(3))
