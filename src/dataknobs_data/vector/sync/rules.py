"""Vectorizing rules and the exact staleness test (pure: no I/O).

A :class:`VectorizingRule` says how one vector field is made: from which text fields, in which
order and with which template, by which embedder (name, version, dimensions), and when
(``on_write``, ``deferred`` or ``manual``). Rules are stored in the database's own settings
(:meth:`~dataknobs_data.contract.Backend.write_setting`), so every process that opens the data,
and the ``vector.sync`` command, applies the same rule without code.

Staleness is decided from the record alone: a vector is *current* exactly when its model name,
its model version (unless version tracking is off) and the SHA-256 of the text the rule
assembles from the record all match. Edits to fields that are not sources never change that
text, so they never make a vector stale; a vector without provenance is stale; a record whose
sources are all empty has nothing to embed (:attr:`VectorState.EMPTY`) and gets no vector.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from ...fields import VectorField, text_hash, validate_field_name
from ...records import Record
from ..exceptions import VectorizingRuleError

__all__ = [
    "DEFAULT_SEPARATOR",
    "MODES",
    "RULE_PREFIX",
    "EmbedderInfo",
    "Mode",
    "VectorState",
    "VectorizingRule",
    "row_state",
    "vector_state",
]

Mode = Literal["on_write", "deferred", "manual"]
MODES: tuple[Mode, ...] = ("on_write", "deferred", "manual")
DEFAULT_SEPARATOR = "\n\n"
#: settings key prefix under which rules are stored (``rule:<vector field>``)
RULE_PREFIX = "rule:"
F32 = npt.NDArray[np.float32]
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


class StoredProvenance(Protocol):
    """What a stored vector records about how it was made (as
    :class:`dataknobs_data.contract.StoredProvenance` carries it)."""

    @property
    def model_name(self) -> str | None: ...
    @property
    def model_version(self) -> str | None: ...
    @property
    def source_hash(self) -> str | None: ...
    @property
    def dimensions(self) -> int: ...


class VectorState(StrEnum):
    """Where one record's vector stands against its rule (see the module docstring)."""

    CURRENT = "current"
    STALE = "stale"
    MISSING = "missing"
    EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class EmbedderInfo:
    """The identity of the embedder a rule uses: what stored vectors must carry to be current.

    ``spec`` (e.g. ``"hashing:384"``, see :func:`~dataknobs_data.vector.embedders.get_embedder`)
    lets a process without code (the ``vector.sync`` command) build the embedder itself.
    """

    name: str
    version: str
    dimensions: int
    spec: str | None = None

    @classmethod
    def of(cls, embedder: Any, spec: str | None = None) -> EmbedderInfo:
        """The identity of an :class:`~dataknobs_data.vector.embedders.Embedder`."""
        return cls(
            str(embedder.model_name), str(embedder.model_version), int(embedder.dimensions), spec
        )

    def label(self) -> str:
        return f"{self.name}@{self.version}"


def _check_template(field: str, template: str, sources: Sequence[str]) -> None:
    try:
        names = [n for _, n, spec, conv in string.Formatter().parse(template) if n is not None]
    except ValueError as exc:
        raise VectorizingRuleError(field, f"template {template!r} is malformed: {exc}") from None
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is not None and (spec or conv):
            raise VectorizingRuleError(
                field, f"template placeholders take no format spec or conversion: {{{name}}}"
            )
    unknown = sorted(set(names) - set(sources))
    if unknown or "" in names:
        raise VectorizingRuleError(
            field,
            f"template {template!r} names {unknown or ['{}']}, not among the sources "
            f"{list(sources)} (use {{source}} placeholders)",
        )


@dataclass(frozen=True, slots=True)
class VectorizingRule:
    """How the vector field ``field`` is made from the record's text.

    ``sources`` are text fields, in order. Without a ``template`` the non-empty source texts
    are joined with ``separator``; a ``template`` such as ``"{title}\\n\\n{body}"`` formats them
    instead (an absent or empty source is ``""``). Either way the result is stripped; if it is
    empty the record has nothing to embed.

    ``mode``: ``on_write`` embeds inside the write that changes a source (where a synchroniser
    with an embedder is attached; any other process leaves a pending mark instead),
    ``deferred`` leaves a durable pending mark written with the record for an
    :class:`~dataknobs_data.vector.sync.IncrementalVectorizer` to drain, ``manual`` leaves the
    field alone until :meth:`~dataknobs_data.vector.sync.VectorTextSynchronizer.bulk_sync`.
    """

    field: str
    sources: tuple[str, ...]
    embedder: EmbedderInfo
    mode: Mode = "deferred"
    template: str | None = None
    separator: str = DEFAULT_SEPARATOR

    def __post_init__(self) -> None:
        try:
            validate_field_name(self.field)
        except ValueError as exc:
            raise VectorizingRuleError(self.field, str(exc)) from None
        given: Any = self.sources
        if isinstance(given, str) or not given:
            raise VectorizingRuleError(
                self.field, f"sources must be a non-empty list of field names, got {given!r}"
            )
        object.__setattr__(self, "sources", tuple(given))
        for src in self.sources:
            try:
                validate_field_name(src)
            except ValueError as exc:
                raise VectorizingRuleError(self.field, f"source {src!r}: {exc}") from None
        if len(set(self.sources)) != len(self.sources):
            raise VectorizingRuleError(self.field, f"sources repeat a field: {list(self.sources)}")
        if self.field in self.sources:
            raise VectorizingRuleError(self.field, "a vector field cannot be its own source")
        if self.mode not in MODES:
            raise VectorizingRuleError(
                self.field, f"mode must be one of {list(MODES)}, got {self.mode!r}"
            )
        if not isinstance(self.embedder, EmbedderInfo):
            raise VectorizingRuleError(
                self.field, f"embedder must be an EmbedderInfo, got {type(self.embedder).__name__}"
            )
        if not isinstance(self.embedder.dimensions, int) or self.embedder.dimensions < 1:
            raise VectorizingRuleError(
                self.field, f"embedder dimensions must be a positive integer: {self.embedder}"
            )
        if not isinstance(self.separator, str):
            raise VectorizingRuleError(self.field, "separator must be a string")
        if self.template is not None:
            if not isinstance(self.template, str):
                raise VectorizingRuleError(self.field, "template must be a string")
            _check_template(self.field, self.template, self.sources)

    # -- the text and its hash ---------------------------------------------------------------
    @property
    def source_label(self) -> str:
        """What a made vector records as its ``source_field``: the source, or the sources
        joined with ``+`` (a name no single field can have, so a record never re-fills it)."""
        return "+".join(self.sources)

    def assemble(self, record: Record) -> str | None:
        """The text to embed for ``record``, or ``None`` when every source is empty (also
        with a template: its literal text alone describes no record)."""
        values: dict[str, str] = {}
        for src in self.sources:
            f = record.fields.get(src)
            values[src] = f.value if f is not None and isinstance(f.value, str) else ""
        return self._assembled(values)

    def assemble_texts(self, texts: Mapping[str, str | None]) -> str | None:
        """:meth:`assemble` from the source values alone (``texts``: source -> its value
        when that is a string, as :meth:`~dataknobs_data.contract.Backend.scan_sync_rows`
        reads them)."""
        return self._assembled({src: texts.get(src) or "" for src in self.sources})

    def _assembled(self, values: dict[str, str]) -> str | None:
        if not any(v.strip() for v in values.values()):
            return None  # a template's literal text alone (": ") is not the record's text
        if self.template is None:
            text = self.separator.join(v.strip() for v in values.values() if v.strip())
        else:
            text = self.template.format_map(values).strip()
        return text or None

    def is_current(self, vector: VectorField | None, digest: str, track_version: bool) -> bool:
        """Whether ``vector`` was made by this rule's embedder from the text hashed ``digest``."""
        return (
            vector is not None
            and vector.source_hash == digest
            and vector.model_name == self.embedder.name
            and (not track_version or vector.model_version == self.embedder.version)
            and vector.dimensions == self.embedder.dimensions
        )

    def provenance_current(
        self, stored: StoredProvenance | None, digest: str, track_version: bool
    ) -> bool:
        """:meth:`is_current` for a stored vector known by its provenance alone."""
        return (
            stored is not None
            and stored.source_hash == digest
            and stored.model_name == self.embedder.name
            and (not track_version or stored.model_version == self.embedder.version)
            and stored.dimensions == self.embedder.dimensions
        )

    def make_vector(self, value: F32, digest: str) -> VectorField:
        """A vector of this field with full provenance. ``value`` comes from
        :func:`~.embedding.embed_texts` (or its cache): a read-only float32 row already
        checked for length, finiteness and magnitude, so it is not validated again."""
        provenance = (self.source_label, self.embedder.name, self.embedder.version, digest)
        return VectorField.trusted(self.field, value, provenance, _NO_METADATA)

    def sources_changed(self, fields: Sequence[str]) -> bool:
        """Whether a change to ``fields`` can change this rule's text."""
        return not set(fields).isdisjoint(self.sources)

    # -- storage -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "field": self.field,
            "sources": list(self.sources),
            "template": self.template,
            "separator": self.separator,
            "mode": self.mode,
            "embedder": {
                "name": self.embedder.name,
                "version": self.embedder.version,
                "dimensions": self.embedder.dimensions,
                "spec": self.embedder.spec,
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VectorizingRule:
        field = data.get("field") if isinstance(data, Mapping) else None
        try:
            emb = data["embedder"]
            return cls(
                field=data["field"],
                sources=tuple(data["sources"]),
                embedder=EmbedderInfo(
                    emb["name"], emb["version"], int(emb["dimensions"]), emb.get("spec")
                ),
                mode=data.get("mode", "deferred"),
                template=data.get("template"),
                separator=data.get("separator", DEFAULT_SEPARATOR),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, VectorizingRuleError):
                raise
            raise VectorizingRuleError(
                field if isinstance(field, str) else None, f"stored rule is malformed: {exc!r}"
            ) from None

    @classmethod
    def from_json(cls, text: str) -> VectorizingRule:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise VectorizingRuleError(None, f"stored rule is not JSON: {exc}") from None
        return cls.from_dict(data)


def vector_state(
    record: Record, rule: VectorizingRule, track_version: bool = True
) -> tuple[VectorState, str | None, str | None]:
    """``(state, text, text hash)`` of ``record``'s vector under ``rule``."""
    text = rule.assemble(record)
    if text is None:
        return VectorState.EMPTY, None, None
    digest = text_hash(text)
    f = record.fields.get(rule.field)
    vector = f if isinstance(f, VectorField) else None
    if vector is None:
        return VectorState.MISSING, text, digest
    if rule.is_current(vector, digest, track_version):
        return VectorState.CURRENT, text, digest
    return VectorState.STALE, text, digest


def row_state(
    texts: Mapping[str, str | None],
    stored: StoredProvenance | None,
    rule: VectorizingRule,
    track_version: bool = True,
) -> tuple[VectorState, str | None, str | None]:
    """:func:`vector_state` from a record's source values and its vector's provenance (a
    :class:`~dataknobs_data.contract.SyncRow`), without the record."""
    text = rule.assemble_texts(texts)
    if text is None:
        return VectorState.EMPTY, None, None
    digest = text_hash(text)
    if stored is None:
        return VectorState.MISSING, text, digest
    if rule.provenance_current(stored, digest, track_version):
        return VectorState.CURRENT, text, digest
    return VectorState.STALE, text, digest
