"""Columnar views kept beside a table of rows (the memory backend, the faiss VectorStore).

* :class:`VectorColumn`: one vector field as a single contiguous float32 matrix aligned with the
  table's rows, with cached norms, so a search is one matrix product.
* :class:`ValueColumn`: the values found at one field path, with lazily built typed arrays
  (numbers as float64, strings as category codes) so common filters become numpy comparisons.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..evaluate import present

__all__ = ["ValueColumn", "VectorColumn"]

F32 = npt.NDArray[np.float32]
_EXACT_FLOAT_INT = 2**53
_UNIT_TOLERANCE = 2e-6


class VectorColumn:
    """Rows ``[0, n)`` of one vector field; rows without a vector are zero and not ``present``."""

    __slots__ = ("_unit", "dims", "inv_norms", "matrix", "present", "sq_norms")

    def __init__(self, dims: int, capacity: int) -> None:
        self.dims = dims
        self.matrix: F32 = np.zeros((capacity, dims), dtype=np.float32)
        self.present = np.zeros(capacity, dtype=bool)
        self.sq_norms: F32 = np.zeros(capacity, dtype=np.float32)
        self.inv_norms: F32 = np.zeros(capacity, dtype=np.float32)
        self._unit: bool | None = None

    def resize(self, capacity: int, used: int) -> None:
        for name in ("matrix", "present", "sq_norms", "inv_norms"):
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[:used] = old[:used]
            setattr(self, name, new)

    def assign(self, rows: npt.NDArray[np.intp], vectors: F32) -> None:
        """Write many rows at once (vectorised norms)."""
        self.matrix[rows] = vectors
        sq = np.einsum("ij,ij->i", vectors, vectors)
        self.sq_norms[rows] = sq
        inv = np.zeros_like(sq)
        np.divide(1.0, np.sqrt(sq), out=inv, where=sq > 0)
        self.inv_norms[rows] = inv
        self.present[rows] = True
        self._unit = None

    def erase(self, rows: npt.NDArray[np.intp]) -> None:
        self.matrix[rows] = 0.0
        self.sq_norms[rows] = 0.0
        self.inv_norms[rows] = 0.0
        self.present[rows] = False
        self._unit = None

    def save(self, rows: npt.NDArray[np.intp]) -> tuple[npt.NDArray[Any], ...]:
        """Copies of ``rows`` (within capacity) for :meth:`restore`: a writer's undo record."""
        rows = rows[rows < self.present.shape[0]]
        return (rows, *(arr[rows].copy() for arr in self._arrays()))

    def restore(self, saved: tuple[npt.NDArray[Any], ...]) -> None:
        """Put back rows saved by :meth:`save` (plain array stores, nothing that allocates)."""
        rows, *values = saved
        for arr, old in zip(self._arrays(), values, strict=True):
            arr[rows] = old
        self._unit = None

    def _arrays(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.matrix, self.present, self.sq_norms, self.inv_norms)

    def move(self, src: int, dst: int) -> None:
        """Copy row ``src`` onto ``dst`` (used to fill the hole a delete leaves)."""
        for arr in (self.matrix, self.present, self.sq_norms, self.inv_norms):
            arr[dst] = arr[src]
        self._unit = None

    def unit_rows(self, used: int) -> bool:
        """Whether every stored vector has norm 1 up to float32 rounding (cached until a write).

        Then cosine needs no per-row division; the tolerance keeps the error below 1e-6.
        """
        if self._unit is None:
            sq = self.sq_norms[:used][self.present[:used]]
            self._unit = bool(np.all(np.abs(sq - 1.0) <= _UNIT_TOLERANCE))
        return self._unit

    def nbytes(self, used: int) -> int:
        return int(used * (self.dims * 4 + 4 + 4 + 1))


class ValueColumn:
    """Values at one path for rows ``[0, n)`` (``MISSING`` where absent)."""

    __slots__ = ("_bools", "_codes", "_exists", "_lookup", "_numbers", "has_lists", "values")

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self.has_lists = any(isinstance(v, list) for v in values)
        self._numbers: tuple[npt.NDArray[np.float64], bool] | None = None
        self._codes: npt.NDArray[np.int64] | None = None
        self._lookup: dict[str, int] = {}
        self._bools: npt.NDArray[np.int8] | None = None
        self._exists: npt.NDArray[np.bool_] | None = None

    def numbers(self) -> tuple[npt.NDArray[np.float64], bool]:
        """Numbers as float64 (NaN elsewhere) and whether that conversion was exact."""
        if self._numbers is None:
            exact = True
            out = np.full(len(self.values), np.nan)
            for i, v in enumerate(self.values):
                if isinstance(v, int | float) and not isinstance(v, bool):
                    if isinstance(v, int) and abs(v) > _EXACT_FLOAT_INT:
                        exact = False
                    out[i] = v
            self._numbers = (out, exact)
        return self._numbers

    def codes(self) -> tuple[npt.NDArray[np.int64], dict[str, int]]:
        """Strings as category codes (-1 elsewhere) and the string -> code lookup."""
        if self._codes is None:
            lookup: dict[str, int] = {}
            out = np.full(len(self.values), -1, dtype=np.int64)
            for i, v in enumerate(self.values):
                if isinstance(v, str):
                    out[i] = lookup.setdefault(v, len(lookup))
            self._codes, self._lookup = out, lookup
        return self._codes, self._lookup

    def bools(self) -> npt.NDArray[np.int8]:
        if self._bools is None:
            self._bools = np.fromiter(
                (int(v) if isinstance(v, bool) else -1 for v in self.values),
                dtype=np.int8,
                count=len(self.values),
            )
        return self._bools

    def exists(self) -> npt.NDArray[np.bool_]:
        if self._exists is None:
            self._exists = np.fromiter(
                map(present, self.values), dtype=bool, count=len(self.values)
            )
        return self._exists
