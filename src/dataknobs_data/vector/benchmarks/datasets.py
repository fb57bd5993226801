"""Synthetic vector datasets that behave like real sentence embeddings.

Why not random Gaussian vectors: iid-Gaussian data in hundreds of dimensions has a local
intrinsic dimension (LID) above 100, so every approximate index looks terrible on it (HNSW
M16 reaches recall@10 of 0.17 at ef 10 where real data gives 0.92). Benchmarks tuned on it
mislead. Real text embeddings instead sit near a low-dimensional, clustered, anisotropic
manifold: topics of very unequal size, a few dominant directions, and a shared "cone" that
makes unrelated sentences still have cosine similarity around 0.2-0.3.

:func:`make_clustered` reproduces that with the recipe from the project's benchmark notes
(``shared/notes/benchmark-anchors.md``, section 4):

1. ``K`` cluster centres in an ``m``-dimensional latent space whose axes are scaled by a
   power-law spectrum ``s_i ∝ i**-0.7``.
2. Zipf(1.0) cluster sizes and a per-cluster spread ``sigma_c ~ LogNormal(0, 0.3)``.
3. Points ``centre + N(0, (s * sigma_c)**2)``.
4. A random orthonormal ``m x d`` map into the ambient space, plus ambient noise
   ``0.05·N(0, I_d)``.
5. A shared mean direction whose weight is solved for so that the average pairwise cosine
   is 0.25, then L2 normalisation.
6. Queries from the same process, drawn separately (so held out from the base set), about
   10% of them out-of-distribution. The recipe does not say how; ours come from held-out
   clusters (no base rows) mapped through a latent subspace tilted 45 degrees out of the
   corpus's, like questions about topics the corpus only half covers. At 60k x 384 their
   mean top-1 cosine is ~0.69 against ~0.87 for in-distribution queries.

The recipe fixes the *shape* of the spectrum but not its overall size, and the ambient noise
is only meaningful relative to it. We set the overall size with ``latent_scale`` (the RMS
norm of the centre cloud): the default 2.0 reproduces the LID the notes measured for the
prototype (23.9 at m=16 and 27.7 at m=24 on 60k points, MLE with k=20; we get 24.7 and 28.0
as the harmonic mean of per-point estimates, 27 and 31 as the arithmetic mean), which is
what makes approximate-search recall curves look like those on real data.

Metadata columns (``category``, ``tenant``, ``price``, ``day``) support the filtered-search
benchmarks: a category correlated with the cluster (for correlated and anti-correlated
filters), heavy-tailed tenants, and two independent numeric columns whose thresholds give
any selectivity (50%, 10%, 1%, 0.1%). Text for hybrid search comes from :func:`make_texts`.

Everything is deterministic from ``seed``; each part (structure, base points, queries,
metadata, text) uses its own random stream, so changing ``n_queries`` does not change the
base vectors and vice versa.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CATEGORICAL_COLUMNS",
    "NUMERIC_COLUMNS",
    "SyntheticDataset",
    "average_pairwise_cosine",
    "make_clustered",
    "make_query_texts",
    "make_texts",
]

NumericColumn = Literal["price", "day"]
CategoricalColumn = Literal["category", "tenant"]

#: Columns for range filters (``column <= threshold``).
NUMERIC_COLUMNS: tuple[str, ...] = ("price", "day")
#: Columns for equality filters (``column == value``).
CATEGORICAL_COLUMNS: tuple[str, ...] = ("category", "tenant")

_N_CATEGORIES = 20
_CATEGORY_FIDELITY = 0.8  # share of rows that take their cluster's home category
_N_TENANTS = 100
_TENANT_ZIPF = 1.1
_N_DAYS = 3650  # ten years: fine enough that 0.1% of rows is ~4 days
_PRICE_LOG_MEAN = 3.0
_PRICE_LOG_SIGMA = 1.0
_CHUNK_ROWS = 16_384  # rows generated per step: bounds temporaries to ~25 MB at d=384
_CALIBRATION_ROWS = 16_384  # rows used to solve for the mean-direction weight
_OOD_ANGLE = math.pi / 4  # tilt of the OOD queries' latent subspace away from the corpus's

# Independent random streams, derived from the seed by SeedSequence.spawn.
_STREAM_STRUCTURE, _STREAM_BASE, _STREAM_QUERIES, _STREAM_META = range(4)
_N_STREAMS = 4


@dataclass(frozen=True, slots=True, eq=False)
class SyntheticDataset:
    """A generated base set, its held-out queries, and metadata columns for filters.

    The arrays are read-only: the same dataset is fed to every backend in a benchmark run and
    to the exact ground truth, so a backend that normalised or modified vectors in place
    would silently corrupt the comparison. Copy an array if a consumer needs to write to it.

    Attributes:
        vectors: ``(n, d)`` float32, C-contiguous, each row L2-normalised.
        queries: ``(n_queries, d)`` float32, L2-normalised, not contained in ``vectors``.
        cluster: ``(n,)`` cluster id of each base row, in ``[0, n_clusters)``.
        query_cluster: ``(n_queries,)`` cluster of each query. Out-of-distribution queries come
            from held-out clusters, numbered ``n_clusters`` and up, that have no base rows.
        query_ood: ``(n_queries,)`` True for out-of-distribution queries.
        category: ``(n,)`` int in ``[0, 20)``; usually the cluster's home category
            (``cluster_category``), Zipf-distributed overall, so category 0 is the largest.
        tenant: ``(n,)`` int in ``[0, 100)``, Zipf(1.1) sizes independent of the cluster,
            tenant 0 the largest.
        price: ``(n,)`` float64, LogNormal(3, 1), independent of everything else.
        day: ``(n,)`` int day index, uniform in ``[0, 3650)``, independent of everything else.
        cluster_category: ``(n_clusters + n_ood_clusters,)`` home category of each cluster;
            use it to build filters correlated (or anti-correlated) with a query.
        seed: the seed everything was generated from.
        n_clusters: number of clusters that can have base rows (``K``); held-out clusters of
            out-of-distribution queries are numbered from here on.
        latent_dim: ``m``, the dimension of the latent space.
        mean_weight: the solved weight of the shared mean direction (before normalisation).
    """

    vectors: NDArray[np.float32]
    queries: NDArray[np.float32]
    cluster: NDArray[np.int64]
    query_cluster: NDArray[np.int64]
    query_ood: NDArray[np.bool_]
    category: NDArray[np.int64]
    tenant: NDArray[np.int64]
    price: NDArray[np.float64]
    day: NDArray[np.int64]
    cluster_category: NDArray[np.int64]
    seed: int
    n_clusters: int
    latent_dim: int
    mean_weight: float

    @property
    def n(self) -> int:
        """Number of base vectors."""
        return int(self.vectors.shape[0])

    @property
    def d(self) -> int:
        """Dimension of every vector."""
        return int(self.vectors.shape[1])

    def column(self, name: str) -> NDArray[np.int64] | NDArray[np.float64]:
        """Return a metadata column by name (``category``, ``tenant``, ``price``, ``day``)."""
        if name == "category":
            return self.category
        if name == "tenant":
            return self.tenant
        if name == "price":
            return self.price
        if name == "day":
            return self.day
        raise ValueError(
            f"unknown column {name!r}; expected one of {NUMERIC_COLUMNS + CATEGORICAL_COLUMNS}"
        )

    def selectivity_threshold(self, column: NumericColumn, fraction: float) -> float:
        """Threshold ``t`` such that the filter ``column <= t`` keeps about ``fraction`` of rows.

        The filtered-search benchmark needs filters of known selectivity (50%, 10%, 1%,
        0.1%) to show where post-filtering collapses. ``price`` is continuous, so the achieved
        share is exact to one row; ``day`` is an integer with 3650 values, so ties make the
        share approximate (e.g. 0.11% for 0.1%). Check with :meth:`fraction_le`.

        Returns a float for ``price`` and an integral value for ``day`` (as ``float``; use
        ``int(t)`` when building an integer filter).
        """
        if column not in NUMERIC_COLUMNS:
            raise ValueError(f"selectivity_threshold needs a numeric column {NUMERIC_COLUMNS}")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        values = self.column(column)
        keep = max(1, min(self.n, round(fraction * self.n)))
        # np.partition finds the keep-th smallest in O(n), no full sort.
        t = np.partition(values, keep - 1)[keep - 1]
        if column == "day":
            return self._best_integer_threshold(values, int(t), fraction)
        return float(t)

    def _best_integer_threshold(
        self, values: NDArray[np.int64] | NDArray[np.float64], t: int, fraction: float
    ) -> float:
        """Pick ``t`` or ``t - 1``, whichever share of rows is closer to ``fraction``."""
        here = self.fraction_le("day", t)
        below = self.fraction_le("day", t - 1)
        if t - 1 >= int(values.min()) and abs(below - fraction) < abs(here - fraction):
            return float(t - 1)
        return float(t)

    def fraction_le(self, column: NumericColumn, threshold: float) -> float:
        """Share of base rows with ``column <= threshold`` (the achieved selectivity)."""
        values = self.column(column)
        return float(np.count_nonzero(values <= threshold)) / max(self.n, 1)

    def value_with_frequency(self, column: CategoricalColumn, fraction: float) -> int:
        """The value of a categorical column whose share of rows is closest to ``fraction``.

        Equality filters (``tenant == v``) model multi-tenant isolation; this picks the tenant
        or category of roughly the wanted size. Tenants are Zipf-distributed, so the small
        shares exist among the tail tenants; categories are coarser (20 values).
        """
        if column not in CATEGORICAL_COLUMNS:
            raise ValueError(f"value_with_frequency needs a column in {CATEGORICAL_COLUMNS}")
        counts = np.bincount(self.column(column).astype(np.int64))
        shares = counts / max(self.n, 1)
        return int(np.argmin(np.abs(shares - fraction)))


def make_clustered(
    n: int,
    d: int,
    *,
    n_queries: int = 1000,
    latent_dim: int = 16,
    n_clusters: int = 1000,
    seed: int = 0,
    ood_fraction: float = 0.1,
    noise: float = 0.05,
    latent_scale: float = 2.0,
    mean_cosine: float = 0.25,
) -> SyntheticDataset:
    """Generate ``n`` clustered, anisotropic, unit-norm vectors of dimension ``d``, plus queries.

    See the module docstring for the recipe and why it looks like real embeddings. Cost is
    about one float32 normal draw and one small GEMM per element: 100k x 384 takes about a
    second, and peak memory is the output plus ~25 MB of per-chunk temporaries.

    Args:
        n: number of base vectors.
        d: ambient dimension (384 and 768 mimic MiniLM and BERT-base sentence encoders).
        n_queries: number of held-out query vectors.
        latent_dim: ``m``; the LID of the result grows with it (about 24 at 16, 28 at 24).
        n_clusters: ``K`` topics; sizes follow Zipf(1.0), so with 1000 clusters the largest
            holds ~13% of the rows.
        seed: everything is a deterministic function of the seed and the arguments.
        ood_fraction: share of queries drawn from held-out clusters that have no base rows,
            in a tilted latent subspace, modelling questions about topics the corpus does
            not cover (when ``d < 2 * latent_dim + 1`` there is no room to tilt, and only
            the clusters are held out).
        noise: per-coordinate standard deviation of the ambient noise.
        latent_scale: RMS norm of the cluster-centre cloud; with ``noise`` it sets how much
            the local neighbourhoods are dominated by the latent structure (see module doc).
        mean_cosine: target average pairwise cosine similarity of the base vectors.
    """
    if n < 1 or d < 1 or n_queries < 0:
        raise ValueError(f"need n >= 1, d >= 1, n_queries >= 0; got {n=}, {d=}, {n_queries=}")
    if not 1 <= latent_dim <= d:
        raise ValueError(f"latent_dim must be in [1, d={d}], got {latent_dim}")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if not 0.0 <= ood_fraction <= 1.0:
        raise ValueError(f"ood_fraction must be in [0, 1], got {ood_fraction}")
    if not 0.0 <= mean_cosine < 1.0:
        raise ValueError(f"mean_cosine must be in [0, 1), got {mean_cosine}")

    streams = np.random.SeedSequence(seed).spawn(_N_STREAMS)
    rng_struct = np.random.default_rng(streams[_STREAM_STRUCTURE])

    m = latent_dim
    n_ood = round(ood_fraction * n_queries)
    # Held-out clusters are drawn whatever n_queries is, so the structure stream (and with
    # it the base vectors) does not depend on the number of queries.
    n_ood_clusters = max(1, n_clusters // 10)
    total_clusters = n_clusters + n_ood_clusters

    # 1. Power-law axis spectrum, normalised so the centre cloud has RMS norm latent_scale.
    spectrum = np.arange(1, m + 1, dtype=np.float64) ** -0.7
    spectrum *= latent_scale / math.sqrt(float(np.sum(spectrum**2)))
    centres = rng_struct.standard_normal((total_clusters, m)) * spectrum
    # 2. Per-cluster spread, and Zipf(1.0) sizes assigned to clusters in random order.
    spread = rng_struct.lognormal(0.0, 0.3, size=total_clusters)
    weights = 1.0 / np.arange(1, n_clusters + 1, dtype=np.float64)
    cluster_p = np.empty(n_clusters)
    cluster_p[rng_struct.permutation(n_clusters)] = weights / weights.sum()
    # 4. Random orthonormal m x d map (rows orthonormal), via QR of a Gaussian matrix. The
    # same QR yields the shared mean direction (5.) and a second m-dim subspace for the
    # out-of-distribution queries, all mutually orthogonal when d leaves room for them.
    width = min(d, 2 * m + 1)
    q_mat, _ = np.linalg.qr(rng_struct.standard_normal((d, width)))
    latent_map = np.ascontiguousarray(q_mat[:, :m].T, dtype=np.float32)
    if width > m:
        mean_dir = q_mat[:, m].copy()
    else:
        mean_dir = rng_struct.standard_normal(d)
        mean_dir /= np.linalg.norm(mean_dir)
    ood_map = latent_map
    if width == 2 * m + 1:
        ood_map = np.ascontiguousarray(
            math.cos(_OOD_ANGLE) * q_mat[:, :m].T + math.sin(_OOD_ANGLE) * q_mat[:, m + 1 :].T,
            dtype=np.float32,
        )
    home_category = _zipf_choice(rng_struct, _N_CATEGORIES, 1.0, total_clusters)

    rng_base = np.random.default_rng(streams[_STREAM_BASE])
    cluster = _cdf_choice(rng_base, np.cumsum(cluster_p), n)
    vectors = _sample_points(rng_base, cluster, centres, spread, spectrum, latent_map, noise)
    mean_weight = _solve_mean_weight(vectors, mean_dir, mean_cosine)
    _add_direction_and_normalise(vectors, mean_dir, mean_weight)

    rng_q = np.random.default_rng(streams[_STREAM_QUERIES])
    query_cluster = np.empty(n_queries, dtype=np.int64)
    query_cluster[: n_queries - n_ood] = _cdf_choice(rng_q, np.cumsum(cluster_p), n_queries - n_ood)
    if n_ood:
        query_cluster[n_queries - n_ood :] = n_clusters + rng_q.integers(n_ood_clusters, size=n_ood)
    query_cluster = query_cluster[rng_q.permutation(n_queries)]
    query_ood = query_cluster >= n_clusters
    queries = _sample_points(rng_q, query_cluster, centres, spread, spectrum, latent_map, noise)
    if n_ood:
        # Re-draw OOD queries through the tilted map: their topics lie half outside the
        # corpus's latent subspace, so their nearest neighbours are clearly farther away.
        queries[query_ood] = _sample_points(
            rng_q, query_cluster[query_ood], centres, spread, spectrum, ood_map, noise
        )
    _add_direction_and_normalise(queries, mean_dir, mean_weight)

    rng_meta = np.random.default_rng(streams[_STREAM_META])
    category = home_category[cluster]
    off_home = rng_meta.random(n) >= _CATEGORY_FIDELITY
    category[off_home] = _zipf_choice(rng_meta, _N_CATEGORIES, 1.0, int(off_home.sum()))
    tenant = _zipf_choice(rng_meta, _N_TENANTS, _TENANT_ZIPF, n)
    price = rng_meta.lognormal(_PRICE_LOG_MEAN, _PRICE_LOG_SIGMA, size=n)
    day = rng_meta.integers(0, _N_DAYS, size=n, dtype=np.int64)

    arrays: list[NDArray[np.generic]] = [
        vectors,
        queries,
        cluster,
        query_cluster,
        query_ood,
        category,
        tenant,
        price,
        day,
        home_category,
    ]
    for arr in arrays:
        arr.setflags(write=False)
    return SyntheticDataset(
        vectors=vectors,
        queries=queries,
        cluster=cluster,
        query_cluster=query_cluster,
        query_ood=query_ood,
        category=category,
        tenant=tenant,
        price=price,
        day=day,
        cluster_category=home_category,
        seed=seed,
        n_clusters=n_clusters,
        latent_dim=m,
        mean_weight=mean_weight,
    )


def _cdf_choice(rng: np.random.Generator, cdf: NDArray[np.float64], size: int) -> NDArray[np.int64]:
    """Draw ``size`` indices with probabilities given by a cumulative distribution.

    Inverse-CDF sampling with ``searchsorted``; ``Generator.choice(p=...)`` does the same but
    re-validates and re-accumulates ``p`` on every call.
    """
    u = rng.random(size) * cdf[-1]
    idx: NDArray[np.int64] = np.searchsorted(cdf, u, side="right").astype(np.int64)
    np.minimum(idx, len(cdf) - 1, out=idx)  # guard against u == cdf[-1] after rounding
    return idx


def _zipf_choice(
    rng: np.random.Generator, n_values: int, exponent: float, size: int
) -> NDArray[np.int64]:
    """Draw ``size`` values in ``[0, n_values)`` with ``P(v) ∝ (v + 1) ** -exponent``."""
    weights = np.arange(1, n_values + 1, dtype=np.float64) ** -exponent
    return _cdf_choice(rng, np.cumsum(weights), size)


def _sample_points(
    rng: np.random.Generator,
    labels: NDArray[np.int64],
    centres: NDArray[np.float64],
    spread: NDArray[np.float64],
    spectrum: NDArray[np.float64],
    latent_map: NDArray[np.float32],
    noise: float,
) -> NDArray[np.float32]:
    """Steps 3 and 4: latent points around their centres, mapped to ``d`` dims, plus noise.

    Works in chunks of rows so the float32 noise temporaries stay small whatever ``n`` is;
    the output array is the only allocation that grows with ``n``.
    """
    n = len(labels)
    m, d = latent_map.shape
    out = np.empty((n, d), dtype=np.float32)
    buf = np.empty((min(n, _CHUNK_ROWS), d), dtype=np.float32)
    sigma = np.float32(noise)
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(n, start + _CHUNK_ROWS)
        lab = labels[start:stop]
        latent = rng.standard_normal((stop - start, m))
        latent *= spectrum
        latent *= spread[lab, None]
        latent += centres[lab]
        np.matmul(latent.astype(np.float32), latent_map, out=out[start:stop])
        if sigma:
            noise_chunk = buf[: stop - start]
            rng.standard_normal(dtype=np.float32, out=noise_chunk)
            noise_chunk *= sigma
            out[start:stop] += noise_chunk
    return out


def _solve_mean_weight(
    z: NDArray[np.float32], direction: NDArray[np.float64], target: float
) -> float:
    """Weight ``a`` such that rows of ``z + a·direction``, normalised, have mean cosine ``target``.

    For unit vectors ``x_i`` the mean pairwise cosine is ``(||Σ x_i||² - n) / (n(n-1))``,
    which needs only one weighted row sum per trial instead of an n² Gram matrix. We bisect
    on a fixed subsample (the first rows; they are already in random order), where the
    estimate is accurate to about 0.002.
    """
    if target <= 0.0:
        return 0.0
    sample = np.asarray(z[:_CALIBRATION_ROWS], dtype=np.float64)
    rows = len(sample)
    if rows < 2:
        return 0.0
    sq = np.einsum("ij,ij->i", sample, sample)
    proj = sample @ direction

    def mean_cos(a: float) -> float:
        inv_r = 1.0 / np.sqrt(np.maximum(sq + 2.0 * a * proj + a * a, 1e-30))
        total = inv_r @ sample + (a * inv_r.sum()) * direction
        return float((total @ total - rows) / (rows * (rows - 1)))

    if mean_cos(0.0) >= target:
        return 0.0  # already at least as anisotropic as asked; never push vectors apart
    lo, hi = 0.0, 1.0
    while mean_cos(hi) < target:  # the cosine tends to 1 as the weight grows: terminates
        hi *= 2.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if mean_cos(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _add_direction_and_normalise(
    x: NDArray[np.float32], direction: NDArray[np.float64], weight: float
) -> None:
    """Step 5 in place: add ``weight·direction`` to every row, then L2-normalise the rows."""
    shift = (weight * direction).astype(np.float32)
    for start in range(0, len(x), _CHUNK_ROWS):
        block = x[start : start + _CHUNK_ROWS]
        block += shift
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        np.maximum(norms, np.float32(1e-30), out=norms)
        block /= norms[:, None]


def average_pairwise_cosine(x: NDArray[np.floating], *, sample: int | None = None) -> float:
    """Mean cosine similarity over all pairs ``i != j`` of rows, in O(n·d).

    Uses ``(||Σ x̂_i||² - n) / (n(n-1))`` on the normalised rows. ``sample`` restricts to
    the first ``sample`` rows (the generator's rows are in random order).
    """
    rows = np.asarray(x if sample is None else x[:sample], dtype=np.float64)
    n = len(rows)
    if n < 2:
        raise ValueError("need at least two rows")
    norms = np.linalg.norm(rows, axis=1)
    norms[norms == 0.0] = 1.0
    total = (rows / norms[:, None]).sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


# --------------------------------------------------------------------------------------------
# Text for hybrid (BM25 + vector) benchmarks
# --------------------------------------------------------------------------------------------

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_BACKGROUND_VOCAB = 20_000
_BACKGROUND_ZIPF = 1.07
_TOPIC_POOL_PER_CLUSTER = 4  # topic pool size = 4 x clusters, so clusters share some words
_TOPIC_WORDS_PER_CLUSTER = 12


def _syllable_words(count: int, offset: int) -> list[str]:
    """``count`` distinct pronounceable pseudo-words, word ``i`` spelling ``offset + i``.

    Deterministic and dependency-free: a bijective base-70 spelling over consonant-vowel
    syllables, with at least two syllables so words are tokenizer-friendly and never
    collide with English stop words.
    """
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    base = len(syllables)
    words = []
    for i in range(offset, offset + count):
        parts = []
        k = i + base  # guarantees two or more syllables
        while k:
            k, r = divmod(k, base)
            parts.append(syllables[r])
        words.append("".join(reversed(parts)))
    return words


@dataclass(frozen=True, slots=True)
class _Vocabulary:
    words: NDArray[np.object_]  # background words first, then topic words
    background_cdf: NDArray[np.float64]
    cluster_words: NDArray[np.int64]  # (clusters, topic words per cluster), ids into words


def _vocabulary(n_clusters: int, seed: int) -> _Vocabulary:
    """Background vocabulary plus per-cluster topic words, deterministic from the seed."""
    rng = np.random.default_rng([seed, 0x7E47])
    pool = max(_TOPIC_WORDS_PER_CLUSTER, _TOPIC_POOL_PER_CLUSTER * n_clusters)
    words = np.array(
        _syllable_words(_BACKGROUND_VOCAB, 0) + _syllable_words(pool, _BACKGROUND_VOCAB),
        dtype=object,
    )
    # Each cluster draws 12 topic words from a pool of 4 per cluster, so every topic word
    # belongs to about three clusters: keyword relevance and vector relevance agree often but
    # not always. (A rare repeated draw just weights that word twice.)
    cluster_words = rng.integers(pool, size=(n_clusters, _TOPIC_WORDS_PER_CLUSTER))
    cdf = np.cumsum(np.arange(1, _BACKGROUND_VOCAB + 1, dtype=np.float64) ** -_BACKGROUND_ZIPF)
    return _Vocabulary(words, cdf, cluster_words.astype(np.int64) + _BACKGROUND_VOCAB)


def _texts_for(
    clusters: NDArray[np.int64],
    vocab: _Vocabulary,
    rng: np.random.Generator,
    *,
    min_len: int,
    mean_extra: float,
    topic_share: float,
) -> list[str]:
    """Documents whose tokens are topic words of their cluster with ``topic_share`` chance,
    else Zipf background words. Everything is vectorised except the final string join."""
    n = len(clusters)
    lengths = min_len + rng.poisson(mean_extra, size=n)
    total = int(lengths.sum())
    owner = np.repeat(clusters, lengths)
    is_topic = rng.random(total) < topic_share
    topic_slot = rng.integers(vocab.cluster_words.shape[1], size=total)
    background = _cdf_choice(rng, vocab.background_cdf, total)
    ids = np.where(is_topic, vocab.cluster_words[owner, topic_slot], background)
    tokens: list[str] = vocab.words[ids].tolist()
    ends = np.cumsum(lengths).tolist()
    out = []
    start = 0
    for end in ends:
        out.append(" ".join(tokens[start:end]))
        start = end
    return out


def make_texts(dataset: SyntheticDataset, seed: int = 0) -> list[str]:
    """One short document per base vector: cluster topic words mixed with Zipf background words.

    Why this shape: hybrid search is only worth benchmarking if BM25 and vector similarity
    agree partly. Rows of the same cluster share topic words (about 35% of tokens), and
    clusters share some topic words with each other, while the Zipf background words give
    BM25 realistic document-frequency statistics (a few very common words, a long tail).
    Lengths are 8 + Poisson(14) tokens. 100k texts take about a second.
    """
    total_clusters = len(dataset.cluster_category)
    vocab = _vocabulary(total_clusters, seed)
    rng = np.random.default_rng([seed, 0xD0C5])
    return _texts_for(dataset.cluster, vocab, rng, min_len=8, mean_extra=14.0, topic_share=0.35)


def make_query_texts(dataset: SyntheticDataset, seed: int = 0) -> list[str]:
    """One short keyword query per query vector, mostly topic words of the query's cluster.

    Out-of-distribution queries use the topic words of their held-out cluster, which may
    overlap with corpus topics by chance, as real off-topic queries do. Use the same ``seed``
    as :func:`make_texts` so both share one vocabulary.
    """
    total_clusters = len(dataset.cluster_category)
    vocab = _vocabulary(total_clusters, seed)
    rng = np.random.default_rng([seed, 0x9E75])
    return _texts_for(dataset.query_cluster, vocab, rng, min_len=2, mean_extra=2.0, topic_share=0.7)
