"""Real benchmark data read from local files (never downloaded): fashion-mnist-784.

ann-benchmarks' ``fashion-mnist-784-euclidean`` set is the 60,000 training images as the base
and the 10,000 test images as queries, 784 raw pixel values each, compared with Euclidean
distance. Debian ships the original IDX files in the ``dataset-fashion-mnist`` package
(``apt-get install dataset-fashion-mnist``), which is where :func:`load_fashion_mnist` looks
first; ``$DATAKNOBS_FASHION_MNIST`` may name another directory holding the same four files.

Ground truth is exact k-NN computed here with numpy in float64 (no network, no HDF5 file).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["FASHION_MNIST_DIRS", "RealDataset", "exact_neighbours", "load_fashion_mnist"]

#: Where the IDX files are looked for, in order (the env variable first when set).
FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
_ENV = "DATAKNOBS_FASHION_MNIST"
_IDX_UBYTE = 0x08


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not on this machine (with the command that installs them)."""


@dataclass(frozen=True, slots=True, eq=False)
class RealDataset:
    """Base vectors, held-out queries, labels, and the metric the set is defined for."""

    name: str
    base: NDArray[np.float32]
    queries: NDArray[np.float32]
    base_labels: NDArray[np.uint8]
    metric: str

    @property
    def dimensions(self) -> int:
        return int(self.base.shape[1])


def _read_idx(path: Path) -> NDArray[np.uint8]:
    """An IDX file (the MNIST container: magic, dims, big-endian sizes, raw bytes)."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as fh:
        data = fh.read()
    zero, dtype, ndim = struct.unpack_from(">HBB", data, 0)
    if zero != 0 or dtype != _IDX_UBYTE:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    offset = 4 + 4 * ndim
    count = int(np.prod(shape))
    if len(data) - offset != count:
        raise ValueError(f"{path}: expected {count} bytes of data, found {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find_dir() -> Path:
    candidates = [Path(p) for p in [os.environ.get(_ENV)] if p] + list(FASHION_MNIST_DIRS)
    for folder in candidates:
        if (folder / "train-images-idx3-ubyte.gz").exists() or (
            folder / "train-images-idx3-ubyte"
        ).exists():
            return folder
    raise DatasetNotFoundError(
        "fashion-mnist not found in "
        + ", ".join(str(c) for c in candidates)
        + "; install it with `apt-get install dataset-fashion-mnist` "
        f"or point ${_ENV} at a directory holding the IDX files"
    )


def _file(folder: Path, stem: str) -> Path:
    gz = folder / f"{stem}.gz"
    return gz if gz.exists() else folder / stem


def load_fashion_mnist(*, n_base: int | None = None, n_queries: int | None = None) -> RealDataset:
    """fashion-mnist-784 (Euclidean) as float32; optionally the first ``n_base``/``n_queries``."""
    folder = _find_dir()
    train = _read_idx(_file(folder, "train-images-idx3-ubyte"))
    test = _read_idx(_file(folder, "t10k-images-idx3-ubyte"))
    labels = _read_idx(_file(folder, "train-labels-idx1-ubyte"))
    base = train.reshape(train.shape[0], -1)[:n_base].astype(np.float32)
    queries = test.reshape(test.shape[0], -1)[:n_queries].astype(np.float32)
    return RealDataset("fashion-mnist-784", base, queries, labels[: base.shape[0]], "euclidean")


def exact_neighbours(
    base: NDArray[np.float32], queries: NDArray[np.float32], k: int, *, chunk: int = 256
) -> NDArray[np.int64]:
    """Row indices of each query's k nearest base rows by Euclidean distance (float64, exact;
    among the candidates, equal distances are ordered by row index)."""
    b = base.astype(np.float64)
    sq = np.einsum("ij,ij->i", b, b)
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk].astype(np.float64)
        d2 = sq[None, :] - 2.0 * (q @ b.T) + np.einsum("ij,ij->i", q, q)[:, None]
        part = np.argpartition(d2, k, axis=1)[:, : k + 1] if k < b.shape[0] else None
        for i in range(q.shape[0]):
            cand = part[i] if part is not None else np.arange(b.shape[0])
            order = np.lexsort((cand, d2[i, cand]))
            out[start + i] = cand[order[:k]]
    return out
