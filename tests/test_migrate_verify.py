"""``record_digest`` and ``verify_migration``: the digest's sensitivity (a table of mutations),
its equality across the five backends on the conformance dataset, and verification reporting by
id what a copy lost, added or changed, on real engines in both shells."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataknobs_data import DatabaseFactory
from dataknobs_data.fields import Field, FieldType, VectorField
from dataknobs_data.marks import PENDING_FIELD
from dataknobs_data.records import Record
from dataknobs_data.testing import (
    CHROMA,
    FAISS,
    MEMORY,
    SQLITE,
    BackendSpec,
    DatabaseLike,
    SyncView,
    open_database,
    server_specs,
)
from dataknobs_data.testing.dataset import VECTOR_FIELD, build_records
from dataknobs_data.vector.migrate import (
    AsyncVectorMigration,
    VectorMigration,
    averify_migration,
    record_digest,
)
from dataknobs_data.vector.migrate.digest import same_record
from dataknobs_data.vector.migrate.verify import (
    MigrationVerifyError,
    VerifyReport,
    recall_at_k,
    same_ranking,
    verify_migration,
)

BACKENDS = [MEMORY, SQLITE, FAISS, CHROMA, *server_specs()]


# -- the digest -----------------------------------------------------------------------------
def base() -> Record:
    vec = VectorField(
        np.array([0.5, -1.25, 2.0, 0.0], dtype=np.float32),
        model_name="m",
        model_version="1",
        source_field="title",
    )
    return Record(
        {
            "title": "hello",
            "n": 1,
            "x": 0.1,
            "flag": True,
            "when": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
            "meta": {"a": [1, 2.5, None], "b": {"c": "d"}},
            "blob": b"\x00\x01",
            "body": Field("body", "long text", FieldType.TEXT),
            "none": None,
            "emb": vec,
            PENDING_FIELD: {"emb": "abc"},
        },
        id="doc-1",
        metadata={"origin": "test"},
    )


def with_field(record: Record, field: Field) -> Record:
    out = record.copy()
    out.set_field(field)
    return out


def with_value(name: str, value: Any, ftype: FieldType | None = None) -> Callable[[Record], Any]:
    return lambda r: with_field(r, Field(name, value, ftype))


def flip_bit(r: Record) -> Record:
    v = r.fields["emb"]
    assert isinstance(v, VectorField)
    raw = v.value.copy().view(np.uint32)
    raw[2] ^= 1  # the lowest mantissa bit of one component
    flipped = VectorField(raw.view(np.float32), name="emb", **_prov(v))
    return with_field(r, flipped)


def _prov(v: VectorField, **changes: Any) -> dict[str, Any]:
    out = {
        "model_name": v.model_name,
        "model_version": v.model_version,
        "source_field": v.source_field,
        "source_hash": v.source_hash,
    }
    return {**out, **changes}


def with_provenance(**changes: Any) -> Callable[[Record], Record]:
    def apply(r: Record) -> Record:
        v = r.fields["emb"]
        assert isinstance(v, VectorField)
        return with_field(r, VectorField(v.value, name="emb", **_prov(v, **changes)))

    return apply


def drop(name: str) -> Callable[[Record], Record]:
    def apply(r: Record) -> Record:
        out = r.copy()
        del out[name]
        return out

    return apply


def renamed(r: Record) -> Record:
    out = r.copy()
    out.id = "doc-2"
    return out


def re_metadata(r: Record) -> Record:
    out = r.copy()
    out.metadata = {"origin": "other"}
    return out


MUTATIONS: dict[str, Callable[[Record], Record]] = {
    "string value": with_value("title", "hellO"),
    "string -> text type": with_value("title", "hello", FieldType.TEXT),
    "int -> float": with_value("n", 1.0),
    "int -> bool": with_value("n", True),
    "float last bit": with_value("x", float(np.nextafter(0.1, 1.0))),
    "float 0.0 -> -0.0": lambda r: with_field(with_field(r, Field("x", 0.0)), Field("x", -0.0)),
    "bool": with_value("flag", False),
    "datetime microsecond": with_value("when", datetime(2024, 1, 2, 3, 4, 5, 7, tzinfo=UTC)),
    "json nested value": with_value("meta", {"a": [1, 2.5, None], "b": {"c": "e"}}),
    "json int -> float": with_value("meta", {"a": [1.0, 2.5, None], "b": {"c": "d"}}),
    "json list order": with_value("meta", {"a": [2.5, 1, None], "b": {"c": "d"}}),
    "binary": with_value("blob", b"\x00\x02"),
    "null -> empty string": with_value("none", ""),
    "field removed": drop("flag"),
    "field added": with_value("extra", 1),
    "vector bit": flip_bit,
    "vector model name": with_provenance(model_name="m2"),
    "vector model version": with_provenance(model_version="2"),
    "vector source field": with_provenance(source_field="body"),
    "vector source hash": with_provenance(source_hash="0" * 64),
    "vector dims": lambda r: with_field(
        r, VectorField(np.array([0.5, -1.25, 2.0, 0.0, 0.0], np.float32), name="emb")
    ),
    "pending mark": with_value(PENDING_FIELD, {"emb": "abd"}),
    "field metadata": lambda r: with_field(r, Field("n", 1, metadata={"unit": "kg"})),
    "record metadata": re_metadata,
    "id": renamed,
}


def test_the_digest_is_32_bytes_and_stable() -> None:
    a, b = base(), base()
    assert record_digest(a) == record_digest(b)
    assert len(record_digest(a)) == 32
    assert record_digest(Record.from_dict(a.to_dict())) == record_digest(a)


def test_field_order_is_not_data() -> None:
    r = base()
    reordered = Record(list(reversed([f.copy() for f in r.fields.values()])), id=r.id)
    reordered.metadata = dict(r.metadata)
    assert list(reordered.fields) != list(r.fields)
    assert record_digest(reordered) == record_digest(r)


@pytest.mark.parametrize("mutation", list(MUTATIONS), ids=list(MUTATIONS))
def test_every_change_changes_the_digest(mutation: str) -> None:
    original = base()
    changed = MUTATIONS[mutation](original)
    assert changed != original or mutation in (
        "int -> float",
        "int -> bool",
        "json int -> float",
    )  # Python says 1==1.0
    assert record_digest(changed) != record_digest(original)
    assert record_digest(original) == record_digest(base())  # the mutation copied


def plain() -> Record:
    """``base()`` with only the fields :func:`same_record` compares without hashing (strings,
    text, integers, booleans, ``None``, vectors) and no record metadata: its fast path."""
    r = base()
    for name in ("x", "when", "meta", "blob", PENDING_FIELD):
        del r[name]
    r.metadata = {}
    return r


@pytest.mark.parametrize("make", [base, plain], ids=["base", "plain"])
@pytest.mark.parametrize("mutation", list(MUTATIONS), ids=list(MUTATIONS))
def test_same_record_is_digest_equality(mutation: str, make: Callable[[], Record]) -> None:
    """The catch-up's direct comparison answers exactly what comparing digests would, on the
    fast path (``plain``) and off it (``base``), for every mutation of the table."""
    original = make()
    changed = MUTATIONS[mutation](make())
    expected = record_digest(changed) == record_digest(original)
    assert same_record(changed, original) is expected
    assert same_record(original, changed) is expected
    assert same_record(Record.from_dict(original.to_dict()), original)


def test_same_record_vector_sign_of_zero() -> None:
    r = plain()
    zero = with_field(r, VectorField(np.zeros(4, np.float32), name="emb"))
    negative = with_field(r, VectorField(-np.zeros(4, np.float32), name="emb"))
    assert not same_record(zero, negative)
    assert record_digest(zero) != record_digest(negative)


def test_the_mutations_are_all_distinct() -> None:
    digests = {name: record_digest(m(base())) for name, m in MUTATIONS.items()}
    assert len(set(digests.values())) == len(digests)


@pytest.fixture(scope="module")
def reference_digests() -> dict[str, bytes]:
    return {r.id: record_digest(r) for r in build_records()}


@pytest.mark.parametrize("spec", BACKENDS, ids=str)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_same_digest_read_back_from_every_backend(
    spec: BackendSpec, mode: Any, tmp_path: Path, reference_digests: dict[str, bytes]
) -> None:
    with open_database(spec, mode, tmp_path) as db:
        db.create_batch(build_records())
        back = {r.id: record_digest(r) for r in db.search()}
    assert back == reference_digests


# -- verification ---------------------------------------------------------------------------
def copy_all(source: DatabaseLike, target: DatabaseLike) -> None:
    for page in _pages(source):
        target.create_batch(page)


def _pages(db: DatabaseLike) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for r in db.stream(batch_size=7):
        batch.append(r)
        if len(batch) == 7:
            yield batch
            batch = []
    if batch:
        yield batch


PAIRS = [(MEMORY, FAISS), (FAISS, MEMORY), (SQLITE, SQLITE), (MEMORY, CHROMA)]
PAIRS += [(FAISS, spec) for spec in server_specs()] + [(spec, CHROMA) for spec in server_specs()]


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=lambda s: str(s))
def test_verify_passes_after_a_faithful_copy(
    src: BackendSpec, dst: BackendSpec, tmp_path: Path
) -> None:
    with open_database(src, "sync", tmp_path) as s, open_database(dst, "sync", tmp_path) as t:
        s.create_batch(build_records())
        copy_all(s, t)
        report = VectorMigration().verify_migration(s, t, probes=25, k=5)
    assert report.ok, report.to_dict()
    assert (report.source_count, report.target_count, report.compared) == (30, 30, 30)
    probe = report.probes[VECTOR_FIELD]
    assert probe.probes == 25  # 27 vectors, one of them zero (never a probe)
    want = "recall" if dst is CHROMA else "order"
    assert probe.check == want and probe.recall == 1.0


def damage(target: Any) -> None:
    """One record missing, one extra, one value changed, one vector bit flipped, one
    provenance changed (blocking calls: a SyncDatabase or a SyncView)."""
    target.delete("r05")
    target.create(Record({"title": "stray"}, id="r99"))
    r = target.read("r07")
    r["title"] = "changed"
    target.update("r07", r)
    r = target.read("r12")
    r.set_field(flip_bit_of(r.fields[VECTOR_FIELD]))
    target.update("r12", r)
    r = target.read("r20")
    v = r.fields[VECTOR_FIELD]
    r.set_field(VectorField(v.value, name=VECTOR_FIELD, **_prov(v, source_hash="0" * 64)))
    target.update("r20", r)


def flip_bit_of(v: Any) -> VectorField:
    raw = v.value.copy().view(np.uint32)
    raw[0] ^= 1
    return VectorField(raw.view(np.float32), name=v.name, **_prov(v))


def check_damage_report(report: VerifyReport) -> None:
    assert not report.ok
    assert (report.source_count, report.target_count) == (30, 30)
    assert (report.missing, report.extra) == (["r05"], ["r99"])
    assert report.different == ["r07", "r12", "r20"]
    assert (report.missing_count, report.extra_count, report.different_count) == (1, 1, 3)
    assert report.differences == {
        "r07": ["title"],  # the vector keeps the old text's hash: now stale, not changed
        "r12": [VECTOR_FIELD],
        "r20": [VECTOR_FIELD],
    }
    data = report.to_dict()
    assert data["ok"] is False and data["missing"] == {"count": 1, "ids": ["r05"]}


def test_verify_reports_each_difference_by_id(tmp_path: Path) -> None:
    with open_database(MEMORY, "sync", tmp_path) as s, open_database(SQLITE, "sync", tmp_path) as t:
        s.create_batch(build_records())
        copy_all(s, t)
        damage(t)
        report = verify_migration(s, t, batch_size=4, probes=0)
    check_damage_report(report)
    assert report.probes == {}


def test_verify_async_reports_each_difference_by_id(tmp_path: Path) -> None:
    async def run() -> VerifyReport:
        source = DatabaseFactory.create_async("memory://")
        target = DatabaseFactory.create_async(f"faiss://{tmp_path / 'f'}")
        try:
            await source.create_batch(build_records())
            await target.create_batch(build_records())
            clean = await averify_migration(source, target, batch_size=5)
            assert clean.ok, clean.to_dict()
            await target.delete("r05")
            await target.create(Record({"title": "stray"}, id="r99"))
            r = await target.read("r07")
            assert r is not None
            r["title"] = "changed"
            await target.update("r07", r)
            for rid, change in (("r12", flip_bit_of), ("r20", None)):
                r = await target.read(rid)
                assert r is not None
                v = r.fields[VECTOR_FIELD]
                if change is None:
                    r.set_field(
                        VectorField(v.value, name=VECTOR_FIELD, **_prov(v, source_hash="0" * 64))
                    )  # type: ignore[arg-type]
                else:
                    r.set_field(change(v))
                await target.update(rid, r)
            return await AsyncVectorMigration().verify_migration(source, target, sample=5)
        finally:
            await source.close()
            await target.close()

    check_damage_report(asyncio.run(run()))


def test_the_filter_limits_what_is_compared(tmp_path: Path) -> None:
    with open_database(MEMORY, "sync", tmp_path) as s, open_database(MEMORY, "sync", tmp_path) as t:
        s.create_batch(build_records())
        copy_all(s, t)
        damage(t)
        report = verify_migration(
            s, t, filter={"field": "_id", "op": "in", "value": ["r01", "r02", "r07"]}
        )
    assert (report.source_count, report.target_count, report.compared) == (3, 3, 3)
    assert report.different == ["r07"] and not report.missing and not report.extra


def perturb_vectors(db: DatabaseLike) -> None:
    """Each vector moved to the next record (ids, values and provenance otherwise intact)."""
    records = [r for r in db.search() if VECTOR_FIELD in r.fields]
    vectors = [r.fields[VECTOR_FIELD] for r in records]
    for r, v in zip(records, vectors[1:] + vectors[:1], strict=True):
        r.set_field(VectorField(v.value, name=VECTOR_FIELD, **_prov(v)))  # type: ignore[arg-type]
        db.update(r.id, r)


@pytest.mark.parametrize("dst", [FAISS, CHROMA], ids=str)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_search_check_fails_on_perturbed_vectors(
    dst: BackendSpec, mode: Any, tmp_path: Path
) -> None:
    with open_database(MEMORY, mode, tmp_path) as s, open_database(dst, mode, tmp_path) as t:
        s.create_batch(build_records())
        copy_all(s, t)
        perturb_vectors(t)
        if isinstance(t, SyncView) and isinstance(s, SyncView):
            # memory, faiss and chroma run in worker threads: any loop may await them
            report = t.run(averify_migration(s.inner, t.inner))
        else:
            report = verify_migration(s, t)
    probe = report.probes[VECTOR_FIELD]
    assert not probe.ok and not report.ok
    assert probe.mismatched > 0 and probe.mismatched_ids
    assert probe.check == ("recall" if dst is CHROMA else "order")
    assert probe.recall < 0.95
    assert report.different_count == 27


def test_same_ranking_tolerates_only_ties() -> None:
    class Hit:
        def __init__(self, rid: str, distance: float) -> None:
            self.id, self.distance = rid, distance

    a = [Hit("a", 0.1), Hit("b", 0.5), Hit("c", 0.5)]
    assert same_ranking(a, [Hit("a", 0.1), Hit("c", 0.5), Hit("b", 0.5)])
    assert not same_ranking(a, [Hit("b", 0.1), Hit("a", 0.5), Hit("c", 0.5)])
    assert not same_ranking(a, [Hit("a", 0.1), Hit("b", 0.5), Hit("d", 0.6)])
    assert not same_ranking(a, a[:2])
    # a tie at the cut with a record neither list shows
    assert same_ranking(a, [Hit("a", 0.1), Hit("b", 0.5), Hit("x", 0.5)])
    assert not same_ranking(a, [Hit("a", 0.1), Hit("b", 0.5), Hit("x", 0.51)])


def test_recall_counts_ties_at_the_cut() -> None:
    class Hit:
        def __init__(self, rid: str, distance: float) -> None:
            self.id, self.distance = rid, distance

    source = [Hit("a", 0.1), Hit("b", 0.3), Hit("c", 0.5), Hit("d", 0.7)]
    assert recall_at_k(source, source) == 1.0
    assert recall_at_k(source, [Hit("a", 0.1), Hit("b", 0.3), Hit("c", 0.5), Hit("x", 0.7)]) == 1.0
    assert recall_at_k(source, [Hit("a", 0.1), Hit("b", 0.3), Hit("c", 0.5), Hit("x", 0.8)]) == 0.75
    assert recall_at_k(source, [Hit("a", 0.1)]) == 0.25
    assert recall_at_k([], [Hit("a", 0.1)]) == 1.0


@pytest.mark.parametrize(
    ("option", "value"),
    [("probes", -1), ("k", 0), ("min_recall", 1.5), ("sample", -1), ("batch_size", 0)],
)
def test_bad_options_are_refused_naming_them(option: str, value: Any) -> None:
    with (
        DatabaseFactory.create("memory://") as s,
        DatabaseFactory.create("memory://") as t,
        pytest.raises(MigrationVerifyError, match=option),
    ):
        verify_migration(s, t, **{option: value})


def test_the_same_database_is_refused() -> None:
    with DatabaseFactory.create("memory://") as s, pytest.raises(MigrationVerifyError):
        verify_migration(s, s)


def test_a_target_without_the_vector_field_fails_the_search_check(tmp_path: Path) -> None:
    with open_database(MEMORY, "sync", tmp_path) as s, open_database(MEMORY, "sync", tmp_path) as t:
        s.create_batch(build_records())
        t.create_batch([Record({"title": "x"}, id=r.id) for r in build_records()])
        report = verify_migration(s, t, sample=3)
    assert report.different_count == 30 and len(report.different) == 3
    assert report.probes[VECTOR_FIELD].problem == "the target has no vector field 'embedding'"


# -- generated records (hypothesis) ---------------------------------------------------------
#: examples per property; raise with DATAKNOBS_HYPOTHESIS_EXAMPLES for a longer run
EXAMPLES = int(os.environ.get("DATAKNOBS_HYPOTHESIS_EXAMPLES", "60"))
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("abc", max_size=2), inner, max_size=3)
    ),
    max_leaves=6,
)
_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8),
    st.binary(max_size=6),
    _json.map(lambda v: Field("j", v, FieldType.JSON)),
)
_vectors = st.lists(
    st.floats(-1e3, 1e3, allow_nan=False, width=32).filter(lambda x: x == 0 or abs(x) > 1e-6),
    min_size=1,
    max_size=6,
).filter(lambda v: any(v))


@st.composite
def generated_records(draw: st.DrawFn) -> Record:
    names = draw(st.lists(st.sampled_from("abcdefg"), unique=True, max_size=5))
    fields: list[Field] = []
    for name in names:
        value = draw(_values)
        if isinstance(value, Field):
            fields.append(Field(name, value.value, FieldType.JSON))
        else:
            fields.append(Field(name, value))
    vec = draw(_vectors)
    model = draw(st.sampled_from([None, "m", "n"]))
    fields.append(VectorField(np.asarray(vec, np.float32), name="v", model_name=model))
    return Record(fields, id=draw(st.text("xyz", min_size=1, max_size=4)), metadata={"k": 1})


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(generated_records(), st.data())
def test_generated_digests_survive_json_and_see_every_vector_bit(
    record: Record, data: st.DataObject
) -> None:
    back = Record.from_dict(json.loads(json.dumps(record.to_dict())))
    assert record_digest(back) == record_digest(record)
    v = record.fields["v"]
    assert isinstance(v, VectorField)
    raw = v.value.copy().view(np.uint32)
    i = data.draw(st.integers(0, raw.shape[0] - 1))
    bit = data.draw(st.integers(0, 22))  # a mantissa bit: the value stays finite and non-zero
    raw[i] ^= np.uint32(1 << bit)
    changed = record.copy()
    changed.set_field(VectorField(raw.view(np.float32), name="v", model_name=v.model_name))
    assert record_digest(changed) != record_digest(record)
