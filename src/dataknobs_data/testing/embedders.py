"""Embedders for tests and acceptance runs: the built-in one, counted, and made to fail.

:class:`CountingEmbedder` wraps :class:`~dataknobs_data.vector.embedders.HashingEmbedder`
(deterministic, no model download) and counts calls and texts, so a test can assert that a
synchronisation embedded exactly the stale texts; texts containing one of ``fail_on`` raise,
so failure handling can be checked on a real embedding path. With ``log``, each call's size
is also appended to a file *before* the call runs, so a parent process can count the calls of
a child it kills (:mod:`.sync_kill9`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..vector.embedders import HashingEmbedder

__all__ = ["CountingEmbedder", "InjectedEmbedderError"]


class InjectedEmbedderError(RuntimeError):
    """What :class:`CountingEmbedder` raises for a text it was told to fail on."""


class CountingEmbedder:
    """A :class:`HashingEmbedder` that counts calls and texts, and fails on chosen texts."""

    def __init__(
        self,
        dimensions: int = 16,
        *,
        fail_on: Sequence[str] = (),
        name: str | None = None,
        version: str | None = None,
        log: str | None = None,
    ) -> None:
        self._inner = HashingEmbedder(dimensions)
        self._name = name or self._inner.model_name
        self._version = version or self._inner.model_version
        self.fail_on = list(fail_on)
        self.calls = 0
        self.texts = 0
        self.seen: list[str] = []
        self._lock = threading.Lock()
        self._log = None if log is None else os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def model_version(self) -> str:
        return self._version

    @property
    def dimensions(self) -> int:
        return self._inner.dimensions

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if self._log is not None:
            os.write(self._log, f"{len(texts)}\n".encode())
        with self._lock:
            self.calls += 1
            self.texts += len(texts)
            self.seen.extend(texts)
        for text in texts:
            for bad in self.fail_on:
                if bad in text:
                    raise InjectedEmbedderError(f"cannot embed a text containing {bad!r}")
        return self._inner.embed(texts)

    def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        return self.embed([text])[0]

    def reset(self) -> None:
        with self._lock:
            self.calls = self.texts = 0
            self.seen.clear()
