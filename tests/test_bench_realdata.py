"""The fashion-mnist reader (IDX files, as Debian ships them) and exact ground truth."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dataknobs_data.vector.benchmarks import realdata
from dataknobs_data.vector.benchmarks.ann import SweepPoint, format_ann


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_reads_idx_files_from_the_env_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 50, dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("DATAKNOBS_FASHION_MNIST", str(tmp_path))
    data = realdata.load_fashion_mnist(n_queries=5)
    assert data.base.shape == (50, 784) and data.queries.shape == (5, 784)
    assert data.base.dtype == np.float32 and data.dimensions == 784
    assert np.array_equal(data.base[3], train[3].reshape(-1))
    assert np.array_equal(data.base_labels, labels)
    truth = realdata.exact_neighbours(data.base, data.queries, 4)
    for q, row in zip(data.queries, truth, strict=True):
        d = ((data.base.astype(np.float64) - q) ** 2).sum(axis=1)
        assert list(row) == list(np.lexsort((np.arange(50), d))[:4])


def test_missing_dataset_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAKNOBS_FASHION_MNIST", str(tmp_path))
    monkeypatch.setattr(realdata, "FASHION_MNIST_DIRS", ())
    with pytest.raises(realdata.DatasetNotFoundError, match="dataset-fashion-mnist"):
        realdata.load_fashion_mnist()


def test_truncated_idx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">HBBI", 0, 0x08, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="expected 10 bytes"):
        realdata._read_idx(path)


def test_sweep_report_lists_every_point() -> None:
    point = SweepPoint("ef_search=40", 0.991, 812.0, 0.992, 900.0)
    data = {
        "config": {
            "dataset": "fashion-mnist",
            "n_base": None,
            "queries": 100,
            "k": 10,
            "rounds": 1,
        },
        "sections": {
            "postgres/ann": {
                "index": "hnsw",
                "load_s": 1.0,
                "build_s": 2.0,
                "points": [point.as_dict()],
            }
        },
    }
    text = format_ann(data)
    assert "ef_search=40" in text and "0.991" in text and "0.902" in text
