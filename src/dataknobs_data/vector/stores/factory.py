"""Create vector stores by name, validate their options, and report which can run here.

Entries import their engine lazily, so ``VectorStoreFactory.available()`` never loads faiss or
chromadb, and a store whose extra is missing fails with the exact ``pip install`` to run.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import BackendUnavailableError, ValidationError
from ...factory import missing_modules
from ..types import DistanceMetric, VectorConfig, VectorIndexConfig
from .base import VectorStore

__all__ = ["StoreInfo", "VectorStoreFactory"]


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """A store's name, whether it can run here, and what to install if not."""

    name: str
    available: bool
    detail: str


@dataclass(frozen=True, slots=True)
class _Entry:
    target: str  # "module:Class"
    modules: tuple[str, ...]
    extra: str | None


class VectorStoreFactory:
    """``VectorStoreFactory.create("faiss", dimensions=384, path="idx/")`` -> a store.

    ``metric`` (default cosine), ``index`` (a :class:`VectorIndexConfig`, a kind name such as
    ``"hnsw"``, or a dict) and ``path`` are common to every store; anything else must be an
    option the store's constructor names, or a :class:`ValidationError` lists the valid ones.
    """

    _registry: ClassVar[dict[str, _Entry]] = {
        "faiss": _Entry("dataknobs_data.vector.stores.faiss:FaissVectorStore", ("faiss",), "faiss"),
        "chroma": _Entry(
            "dataknobs_data.vector.stores.chroma:ChromaVectorStore", ("chromadb",), "chroma"
        ),
    }

    @classmethod
    def register(
        cls,
        name: str,
        target: str | type[VectorStore],
        *,
        modules: tuple[str, ...] = (),
        extra: str | None = None,
    ) -> None:
        """Add a store: ``target`` is a class or a lazy ``"package.module:Class"`` path."""
        if not isinstance(target, str):
            target = f"{target.__module__}:{target.__qualname__}"
        cls._registry[name] = _Entry(target, modules, extra)

    @classmethod
    def _probe(cls, name: str, entry: _Entry) -> StoreInfo:
        missing = missing_modules(entry.modules, entry.extra)
        return StoreInfo(name, missing is None, missing or "ready")

    @classmethod
    def available(cls) -> list[StoreInfo]:
        """Every registered store and whether it can run in this environment."""
        return [cls._probe(n, e) for n, e in sorted(cls._registry.items())]

    @classmethod
    def store_class(cls, name: str) -> type[VectorStore]:
        """The class behind ``name`` (importing its engine), or a typed error saying why not."""
        entry = cls._registry.get(name)
        if entry is None:
            raise ValidationError(f"unknown vector store {name!r}; known: {sorted(cls._registry)}")
        info = cls._probe(name, entry)
        if not info.available:
            raise BackendUnavailableError(f"the {name} vector store is unavailable: {info.detail}")
        module_name, _, attr = entry.target.partition(":")
        store: type[VectorStore] = getattr(importlib.import_module(module_name), attr)
        return store

    @staticmethod
    def config(
        dimensions: int,
        metric: DistanceMetric | str = DistanceMetric.COSINE,
        index: VectorIndexConfig | str | Mapping[str, Any] | None = None,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
    ) -> VectorConfig:
        """The :class:`VectorConfig` the common arguments describe (validated)."""
        if index is None:
            index_config = VectorIndexConfig()
        elif isinstance(index, VectorIndexConfig):
            index_config = index
        elif isinstance(index, str):
            index_config = VectorIndexConfig(kind=index)
        elif isinstance(index, Mapping):
            index_config = VectorIndexConfig.from_dict(dict(index))
        else:
            raise ValidationError(f"index must be a kind name, dict or VectorIndexConfig: {index}")
        return VectorConfig(
            dimensions=dimensions,
            metric=DistanceMetric.parse(metric),
            model_name=model_name,
            model_version=model_version,
            index=index_config,
        )

    @classmethod
    def create(
        cls,
        name: str,
        *,
        dimensions: int,
        metric: DistanceMetric | str = DistanceMetric.COSINE,
        index: VectorIndexConfig | str | Mapping[str, Any] | None = None,
        path: str | Path | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
        **options: Any,
    ) -> VectorStore:
        """A new (or, with ``path`` holding one, reopened and checked) store."""
        store = cls.store_class(name)
        config = cls.config(
            dimensions, metric, index, model_name=model_name, model_version=model_version
        )
        accepted = {
            p.name
            for p in inspect.signature(store.__init__).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        }
        unknown = set(options) - accepted
        if unknown:
            raise ValidationError(
                f"unknown option(s) {sorted(unknown)} for the {name} vector store; "
                f"valid: {sorted(accepted)}"
            )
        return store(config, Path(path) if path is not None else None, **options)

    @classmethod
    def load(cls, name: str, path: str | Path, **options: Any) -> VectorStore:
        """Reopen a persisted store of kind ``name``."""
        return cls.store_class(name).load(path, **options)
