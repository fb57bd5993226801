"""Text queries that can never mix embedding spaces (pure: no I/O besides the embedder).

A store being upgraded to a new embedding model has two vector fields, each made by its own
embedder (its vectorizing rule says which). A text query must be embedded by the embedder of
the field it searches, and the search must say which model it embedded with, so the store
refuses (``MixedEmbeddingModelsError``) rather than rank vectors of one space against a query
of the other. :class:`Embedders` holds the embedders a process has, keyed by the identity a
rule stores (model name, version, dimensions); :func:`text_query` picks the field's one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import UnknownFieldError, ValidationError
from ..exceptions import MixedEmbeddingModelsError
from ..types import VectorSearchResult
from .rules import EmbedderInfo, VectorizingRule

__all__ = ["Embedders", "TextHits", "TextQuery", "text_query"]

Identity = tuple[str, str, int]


def identity(info: EmbedderInfo) -> Identity:
    """What makes two embedders interchangeable: model name, version and dimensions (two
    hashing embedders of one version but other sizes are different spaces)."""
    return (info.name, info.version, info.dimensions)


class Embedders:
    """The embedders a process holds, by identity (see :func:`identity`); one per identity."""

    def __init__(self, embedders: Iterable[Any] = ()) -> None:
        self._by: dict[Identity, Any] = {}
        for embedder in embedders:
            self.add(embedder)

    def add(self, embedder: Any) -> None:
        """Hold ``embedder`` (replacing one of the same identity)."""
        if embedder is None:
            return
        try:
            info = EmbedderInfo.of(embedder)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"expected an embedder (model_name, model_version, dimensions, embed), "
                f"got {type(embedder).__name__}: {exc}"
            ) from None
        self._by[identity(info)] = embedder

    def get(self, info: EmbedderInfo) -> Any | None:
        """The held embedder that makes ``info``'s vectors, if any."""
        return self._by.get(identity(info))

    def labels(self) -> list[str]:
        return sorted(f"{n}@{v}/{d}" for n, v, d in self._by)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._by.values())

    def __len__(self) -> int:
        return len(self._by)


@dataclass(frozen=True, slots=True)
class TextQuery:
    """A text embedded for one field: search ``field`` with ``vector`` and ``model=model``."""

    field: str
    vector: npt.NDArray[np.float32]
    model: str
    embedder: EmbedderInfo


class TextHits(list[VectorSearchResult]):
    """Hits of a text search (best first), with the ``field`` and ``model`` that served them."""

    def __init__(self, hits: Iterable[VectorSearchResult], field: str, model: str) -> None:
        super().__init__(hits)
        self.field = field
        self.model = model


def text_query(
    text: str,
    field: str,
    rules: Mapping[str, VectorizingRule],
    embedders: Embedders,
) -> TextQuery:
    """``text`` embedded by the embedder of ``field``'s rule (refused, naming the field, when
    the field has no rule or the process lacks that embedder)."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"search text for field {field!r} must be a non-empty string")
    rule = rules.get(field)
    if rule is None:
        raise UnknownFieldError(
            field,
            f"has no vectorizing rule, so no embedder is known for its text queries; "
            f"rules: {sorted(rules)}",
        )
    embedder = embedders.get(rule.embedder)
    if embedder is None:
        raise MixedEmbeddingModelsError(
            field,
            f"{rule.embedder.label()}/{rule.embedder.dimensions}",
            ", ".join(embedders.labels()) or "no embedder",
        )
    vector = np.asarray(embedder.embed([text]), dtype=np.float32)
    if vector.shape != (1, rule.embedder.dimensions):
        raise ValidationError(
            f"field {field!r}: embedder {rule.embedder.label()} returned shape {vector.shape}, "
            f"expected (1, {rule.embedder.dimensions})"
        )
    return TextQuery(field, vector[0], rule.embedder.label(), rule.embedder)
