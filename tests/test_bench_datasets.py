"""Tests for the database-independent parts of the benchmark harness.

The generator must be deterministic and have the statistical properties the benchmarks rely
on (unit norm, mean pairwise cosine near 0.25, Zipf clusters, filter selectivities), and the
raw numpy baseline must be exact, because it is the ground truth for every recall figure.
"""

from __future__ import annotations

import json
import math
from enum import Enum, StrEnum

import numpy as np
import pytest
from numpy.typing import NDArray

from dataknobs_data.vector.benchmarks.datasets import (
    SyntheticDataset,
    average_pairwise_cosine,
    make_clustered,
    make_query_texts,
    make_texts,
)
from dataknobs_data.vector.benchmarks.measure import (
    Timer,
    current_rss_bytes,
    limit_threads,
    machine_info,
    peak_rss_bytes,
    percentiles,
    qps,
    summarize,
    time_calls,
)
from dataknobs_data.vector.benchmarks.raw import (
    completeness,
    normalize_metric,
    recall_at_k,
    squared_norms,
    topk_batch,
    topk_one,
)

METRICS = ("cosine", "dot_product", "euclidean", "l1")


@pytest.fixture(scope="module")
def ds() -> SyntheticDataset:
    return make_clustered(20_000, 384, n_queries=500, seed=7)


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


def test_same_seed_same_data_and_other_seed_other_data() -> None:
    a = make_clustered(3000, 64, n_queries=40, n_clusters=50, seed=11)
    b = make_clustered(3000, 64, n_queries=40, n_clusters=50, seed=11)
    c = make_clustered(3000, 64, n_queries=40, n_clusters=50, seed=12)
    for name in ("vectors", "queries", "cluster", "query_cluster", "category", "tenant"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.price, b.price)
    np.testing.assert_array_equal(a.day, b.day)
    assert not np.array_equal(a.vectors, c.vectors)
    assert not np.array_equal(a.price, c.price)


def test_number_of_queries_does_not_change_base_vectors() -> None:
    a = make_clustered(2000, 48, n_queries=10, n_clusters=40, seed=3)
    b = make_clustered(2000, 48, n_queries=300, n_clusters=40, seed=3)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.tenant, b.tenant)


def test_shapes_dtypes_and_unit_norm(ds: SyntheticDataset) -> None:
    assert ds.vectors.shape == (20_000, 384)
    assert ds.queries.shape == (500, 384)
    assert ds.vectors.dtype == np.float32
    assert ds.queries.dtype == np.float32
    assert ds.vectors.flags["C_CONTIGUOUS"]
    assert (ds.n, ds.d) == (20_000, 384)
    for arr in (ds.cluster, ds.category, ds.tenant, ds.price, ds.day):
        assert arr.shape == (20_000,)
    assert ds.cluster.dtype == np.int64
    np.testing.assert_allclose(np.linalg.norm(ds.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ds.queries, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(ds.vectors).all()


def test_arrays_are_read_only(ds: SyntheticDataset) -> None:
    with pytest.raises(ValueError, match="read-only"):
        ds.vectors[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        ds.price[0] = 1.0


def test_mean_pairwise_cosine_near_target(ds: SyntheticDataset) -> None:
    assert 0.22 <= average_pairwise_cosine(ds.vectors) <= 0.28
    # The O(n d) identity agrees with the explicit Gram matrix.
    sample = ds.vectors[:500].astype(np.float64)
    gram = sample @ sample.T
    explicit = (gram.sum() - np.trace(gram)) / (500 * 499)
    assert average_pairwise_cosine(ds.vectors, sample=500) == pytest.approx(explicit, abs=1e-6)


def test_zipf_clusters_and_correlated_category(ds: SyntheticDataset) -> None:
    sizes = np.bincount(ds.cluster, minlength=ds.n_clusters)
    assert 0.08 <= sizes.max() / ds.n <= 0.2  # Zipf(1) over 1000: the top cluster ~13%
    assert (sizes > 0).sum() > 500
    home = ds.cluster_category[ds.cluster]
    assert 0.78 <= float(np.mean(ds.category == home)) <= 0.9
    assert set(np.unique(ds.category)) <= set(range(20))
    tenant_share = np.bincount(ds.tenant) / ds.n
    assert tenant_share[0] > 5 * np.median(tenant_share)  # heavy-tailed
    assert ds.day.min() >= 0
    assert ds.day.max() < 3650
    assert (ds.price > 0).all()


def test_queries_are_held_out_and_ood_are_farther(ds: SyntheticDataset) -> None:
    assert 0.08 <= ds.query_ood.mean() <= 0.12
    assert (ds.query_cluster[ds.query_ood] >= ds.n_clusters).all()
    assert (ds.query_cluster[~ds.query_ood] < ds.n_clusters).all()
    top1 = (ds.queries @ ds.vectors.T).max(axis=1)
    assert top1.max() < 0.9999  # no query is a copy of a base vector
    assert top1[ds.query_ood].mean() < top1[~ds.query_ood].mean() - 0.1


@pytest.mark.parametrize("fraction", [0.1, 0.01, 0.001])
def test_price_threshold_selectivity_is_exact(ds: SyntheticDataset, fraction: float) -> None:
    t = ds.selectivity_threshold("price", fraction)
    achieved = ds.fraction_le("price", t)
    assert achieved == pytest.approx(float(np.mean(ds.price <= t)))
    assert abs(achieved - fraction) <= 1.5 / ds.n


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.01, 0.001])
def test_day_threshold_selectivity_is_close(ds: SyntheticDataset, fraction: float) -> None:
    t = ds.selectivity_threshold("day", fraction)
    assert t == int(t)
    assert abs(ds.fraction_le("day", t) - fraction) <= max(0.1 * fraction, 0.0005)


def test_value_with_frequency_picks_closest_share(ds: SyntheticDataset) -> None:
    shares = np.bincount(ds.tenant) / ds.n
    for fraction in (0.1, 0.01, 0.001):
        v = ds.value_with_frequency("tenant", fraction)
        assert abs(shares[v] - fraction) == pytest.approx(np.abs(shares - fraction).min())
    with pytest.raises(ValueError, match="column"):
        ds.value_with_frequency("price", 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fraction"):
        ds.selectivity_threshold("price", 0.0)


def test_texts_are_deterministic_and_topical(ds: SyntheticDataset) -> None:
    texts = make_texts(ds, seed=1)
    assert len(texts) == ds.n
    assert texts == make_texts(ds, seed=1)
    assert texts != make_texts(ds, seed=2)
    assert all(len(t.split()) >= 8 for t in texts[:1000])
    # Two documents of one cluster share more words than documents of different clusters.
    words = [set(t.split()) for t in texts[:2000]]
    labels = ds.cluster[:2000]
    same: list[float] = []
    diff: list[float] = []
    for i in range(0, 1999):
        for j in (i + 1, (i * 7 + 13) % 2000):
            if i != j:
                jac = len(words[i] & words[j]) / len(words[i] | words[j])
                (same if labels[i] == labels[j] else diff).append(jac)
    assert same
    assert np.mean(same) > 2 * np.mean(diff)
    queries = make_query_texts(ds, seed=1)
    assert len(queries) == len(ds.queries)
    assert all(len(q.split()) >= 2 for q in queries)


def test_bad_generator_arguments() -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        make_clustered(100, 8, latent_dim=9)
    with pytest.raises(ValueError, match="n >= 1"):
        make_clustered(0, 8)


# --------------------------------------------------------------------------------------------
# Raw numpy baseline
# --------------------------------------------------------------------------------------------


def _brute_scores(
    x: NDArray[np.float32], q: NDArray[np.float32], metric: str
) -> NDArray[np.float64]:
    """Reference scores by the textbook formulas, in float64, no tricks."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    out: NDArray[np.float64]
    if metric == "cosine":
        out = (x64 @ q64) / (np.linalg.norm(x64, axis=1) * np.linalg.norm(q64))
    elif metric == "dot_product":
        out = x64 @ q64
    elif metric == "euclidean":
        out = 1.0 / (1.0 + np.sqrt(((x64 - q64) ** 2).sum(axis=1)))
    else:
        out = 1.0 / (1.0 + np.abs(x64 - q64).sum(axis=1))
    return out


def _random_data(seed: int = 0) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((600, 24)).astype(np.float32) * rng.uniform(0.5, 2, (600, 1))
    q = rng.standard_normal((17, 24)).astype(np.float32) * 1.7
    return x.astype(np.float32), q


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 10, 600, 1000])
def test_topk_one_matches_full_sort(metric: str, k: int) -> None:
    x, queries = _random_data()
    if metric == "cosine":  # the baseline's contract: rows stored normalised
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    norms = squared_norms(x)
    for q in queries:
        ref = _brute_scores(x, q, metric)
        want = np.argsort(-ref, kind="stable")[: min(k, len(x))]
        idx, scores = topk_one(x, q, k, metric, sq_norms=norms if metric == "euclidean" else None)
        assert idx.shape == scores.shape == (min(k, len(x)),)
        # float32 dot products carry absolute error ~1e-7 x the score scale.
        atol = 1e-6 * max(1.0, float(np.abs(ref).max()))
        assert set(idx.tolist()) == set(want.tolist())
        np.testing.assert_allclose(scores, ref[want], rtol=1e-5, atol=atol)
        np.testing.assert_allclose(scores, ref[idx], rtol=1e-5, atol=atol)
        assert np.all(np.diff(scores) <= atol)  # best first


@pytest.mark.parametrize("metric", METRICS)
def test_topk_batch_equals_single(metric: str) -> None:
    x, queries = _random_data(1)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    for block_rows in (None, 1, 5):  # 5 leaves a ragged last block of 2
        idx, scores = topk_batch(x, queries, 10, metric, block_rows=block_rows)
        assert idx.shape == scores.shape == (len(queries), 10)
        for i, q in enumerate(queries):
            one_idx, one_scores = topk_one(x, q, 10, metric)
            np.testing.assert_array_equal(idx[i], one_idx)
            np.testing.assert_allclose(scores[i], one_scores, rtol=1e-6)


def test_topk_batch_k_larger_than_n_and_empty() -> None:
    x, queries = _random_data(2)
    idx, _ = topk_batch(x[:7], queries, 10, "dot")
    assert idx.shape == (len(queries), 7)
    for i in range(len(queries)):
        assert sorted(idx[i].tolist()) == list(range(7))
    idx, _ = topk_batch(x, queries[:0], 10, "l2")
    assert idx.shape == (0, 10)


def test_metric_names_and_enum_members() -> None:
    class Metric(StrEnum):
        EUCLIDEAN = "euclidean"
        DOT = "dot_product"

    class Plain(Enum):
        L1 = "l1"

    assert normalize_metric("L2") == "euclidean"
    assert normalize_metric("inner-product") == "dot_product"
    assert normalize_metric(Metric.EUCLIDEAN) == "euclidean"
    assert normalize_metric(Metric.DOT) == "dot_product"
    assert normalize_metric(Plain.L1) == "l1"
    with pytest.raises(ValueError, match="unknown metric"):
        normalize_metric("hamming")
    x, queries = _random_data()
    with pytest.raises(ValueError, match="k must be"):
        topk_one(x, queries[0], 0)
    with pytest.raises(ValueError, match="shape"):
        topk_one(x, queries[0][:5], 3)


def test_float64_query_on_float32_matrix() -> None:
    x, queries = _random_data()
    idx32, _ = topk_one(x, queries[0], 5, "dot")
    idx64, _ = topk_one(x, queries[0].astype(np.float64), 5, "dot")
    np.testing.assert_array_equal(idx32, idx64)


def test_recall_and_completeness() -> None:
    true = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert recall_at_k(true, true) == 1.0
    assert recall_at_k(np.array([[4, 3, 9, 9], [8, -1, -1, -1]]), true) == pytest.approx(3 / 8)
    assert recall_at_k([[1, 2], [5, 6, 7, 8, 1]], true) == pytest.approx(6 / 8)  # ragged
    assert recall_at_k([[1, 2], [5, 6]], true, k=2) == 1.0
    assert recall_at_k(np.array([3, 1]), np.array([1, 2])) == 0.5  # one query, 1-D
    with pytest.raises(ValueError, match="rows"):
        recall_at_k([[1]], true)
    assert math.isnan(recall_at_k([], []))
    assert completeness([[1, 2, 3], [1, -1, -1], [4, 5]], 3) == pytest.approx(1 / 3)


def test_ground_truth_recall_on_generated_data(ds: SyntheticDataset) -> None:
    """End to end: exact search finds itself, a perturbed search does not."""
    truth, _ = topk_batch(ds.vectors, ds.queries[:50], 10, "cosine")
    assert recall_at_k(truth, truth) == 1.0
    found, _ = topk_batch(ds.vectors[:10_000], ds.queries[:50], 10, "cosine")
    assert 0.2 < recall_at_k(found, truth) < 0.8  # half the rows: about half the neighbours


# --------------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------------


def test_percentiles_qps_and_summary() -> None:
    lat = np.arange(1, 101, dtype=np.float64) / 1000  # 1..100 ms
    p = percentiles(lat)
    assert set(p) == {"p50", "p95", "p99"}
    assert p["p50"] == pytest.approx(0.0505)
    assert p["p99"] == pytest.approx(0.09901)
    assert percentiles([1.0, 2.0, 3.0], qs=(50, 99.9)) == {
        "p50": 2.0,
        "p99_9": pytest.approx(2.998),
    }
    assert math.isnan(percentiles([])["p50"])
    assert qps(100, 2.0) == 50.0
    s = summarize(lat, queries_per_call=2)
    assert s.count == 100
    assert s.qps == pytest.approx(200 / lat.sum())
    assert s.as_dict("ms")["p50_ms"] == pytest.approx(50.5)


def test_time_calls_and_timer() -> None:
    seen: list[int] = []
    lat = time_calls(seen.append, range(10), warmup=3)
    assert seen == list(range(10))
    assert lat.shape == (7,)
    assert (lat >= 0).all()
    with Timer() as t:
        sum(range(1000))
    assert 0 < t.seconds < 1


def test_memory_threads_and_machine_info() -> None:
    assert current_rss_bytes() > 10 * 2**20
    assert peak_rss_bytes() >= current_rss_bytes() // 2
    with limit_threads(1) as limited:
        x = np.ones((64, 64), dtype=np.float32)
        assert float((x @ x)[0, 0]) == 64.0
    assert isinstance(limited, bool)
    with pytest.raises(ValueError, match="thread limit"), limit_threads(0):
        pass
    info = machine_info()
    json.dumps(info)
    assert info["numpy"] == np.__version__
    assert info["logical_cores"] >= 1
