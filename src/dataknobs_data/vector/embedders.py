"""Text embedders: turn strings into fixed-size float32 vectors.

Vector search needs *some* embedding function, but a storage library must not
force a multi-gigabyte model download on every user or every CI run.  So the
default, :class:`HashingEmbedder`, is a dependency-free, deterministic lexical
embedder that gives usable retrieval on English prose, and
:class:`SentenceTransformerEmbedder` is an opt-in bridge to real neural models
that are already present on disk.  Both satisfy the :class:`Embedder` protocol,
so callers (and stored metadata) only ever deal with ``model_name``,
``model_version`` and ``dimensions``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..ints import checked_int

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "get_embedder",
]

FloatMatrix = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What the rest of the library relies on from an embedding model.

    ``model_name``/``model_version`` are stored next to vectors so that an index
    built with one model is never silently queried with another; they are
    read-only because changing them after vectors exist would defeat that.
    """

    @property
    def model_name(self) -> str:
        """The model's name, stored as the vectors' provenance."""

    @property
    def model_version(self) -> str:
        """The model's version: vectors of different versions are not comparable."""

    @property
    def dimensions(self) -> int:
        """The length of the vectors it makes."""

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        """Return an ``(len(texts), dimensions)`` float32 C-contiguous array."""
        ...

    def embed_one(self, text: str) -> FloatMatrix:
        """Return a ``(dimensions,)`` float32 array for a single text."""
        ...


def _check_texts(texts: Sequence[str]) -> None:
    # A bare str is a Sequence[str] too; embedding it character by character is
    # never what the caller meant, so fail loudly instead.
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of strings; use embed_one() for one string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")


# --------------------------------------------------------------------------- hashing

# Deliberately small: only words that carry no topic.  Words such as "return",
# "value" or "file" stay, because in docstrings they are what users search for.
_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any are as at be because
    been before being below between both but by can could did do does doing down
    during each either etc few for from further had has have having he her here hers
    herself him himself his how however i if in into is it its itself just me might
    more most must my myself no nor not now of off on once one only or other our ours
    ourselves out over own same shall she should so some such than that the their
    theirs them themselves then there these they this those through thus to too under
    until up upon us very via was we were what when where whether which while who
    whom why will with within without would yet you your yours yourself yourselves
"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_TOKEN_RE = re.compile(r"\w+")
# Splits identifier parts: "HTTPServer" -> HTTP, Server; "parse2date" -> parse, 2, date.
_PART_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+|[^\W\d_]+")

_WORD_WEIGHT = 1.0
_PART_WEIGHT = 0.7  # parts of compound identifiers: evidence, but weaker than the whole
_BIGRAM_WEIGHT = 0.8
_TRIGRAM_WEIGHT = 0.25  # many per word, so each must be small; they catch inflections
_EMPTY_FEATURE = "\x00<empty>"  # cannot be produced by the tokenizer
# Memo caps (entries); a word unit costs ~0.4 kB, a bigram entry ~0.2 kB.
_WORD_CACHE_LIMIT = 100_000
_FEATURE_CACHE_LIMIT = 300_000


def _hash64(feature: str) -> int:
    # blake2b, not hash(): hash() is salted per process, and the vectors must be
    # byte-identical across processes, runs and machines.
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")


class HashingEmbedder:
    """Deterministic bag-of-words embedder needing no model download or training.

    Features are word unigrams (whole identifiers plus their snake/camelCase
    parts), word bigrams and low-weight character trigrams, weighted by
    sublinear term frequency and folded into ``dimensions`` buckets with signed
    feature hashing, then L2-normalised.  Signed hashing keeps the expected dot
    product of unrelated features at zero, so cosine similarity approximates
    tf-weighted lexical overlap.  Texts without any feature (empty, all stop
    words, or the rare total hash cancellation) map to one fixed unit vector so
    that cosine similarity is always defined.
    """

    _MODEL_NAME = "dataknobs-hashing"
    # Bump whenever tokenisation, features, weights or hashing change: vectors
    # from different versions are not comparable.
    _MODEL_VERSION = "1"

    def __init__(self, dimensions: int = 384) -> None:
        self._dimensions = checked_int("dimensions", dimensions, 8, error=ValueError)
        # Caches only memoise pure functions of their key, so clearing them (to
        # bound memory) never changes any output.
        self._token_cache: dict[str, tuple[str | None, tuple[str, ...]]] = {}
        self._word_cache: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
        self._feature_cache: dict[str, tuple[int, float]] = {}
        col, sign = self._bucket(_EMPTY_FEATURE)
        self._empty = np.zeros(dimensions, dtype=np.float32)
        self._empty[col] = sign

    @property
    def model_name(self) -> str:
        """``dataknobs-hashing``."""
        return self._MODEL_NAME

    @property
    def model_version(self) -> str:
        """Bumped whenever the features or hashing change."""
        return self._MODEL_VERSION

    @property
    def dimensions(self) -> int:
        """The number of hash buckets (the vectors' length)."""
        return self._dimensions

    def __repr__(self) -> str:
        return f"HashingEmbedder(dimensions={self._dimensions})"

    def embed_one(self, text: str) -> FloatMatrix:
        """The L2-normalised float32 vector of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}, expected str")
        row: FloatMatrix = self.embed([text])[0]
        return row.copy()  # a copy, so the caller does not pin the 2-D parent

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        """One L2-normalised float32 row per text (deterministic across machines)."""
        _check_texts(texts)
        out = np.empty((len(texts), self._dimensions), dtype=np.float32)
        # Chunking bounds the dense float64 scratch matrix to ~32 MB.
        chunk = max(1, (1 << 22) // self._dimensions)
        for start in range(0, len(texts), chunk):
            out[start : start + chunk] = self._embed_chunk(texts[start : start + chunk])
        return out

    # -- internals -------------------------------------------------------------

    def _bucket(self, feature: str) -> tuple[int, float]:
        h = _hash64(feature)
        return h % self._dimensions, (-1.0 if h >> 63 else 1.0)

    def _analyse_token(self, token: str) -> tuple[str | None, tuple[str, ...]]:
        """Map a raw token to (word-unit key or None, parts used for bigrams)."""
        lower = token.lower()
        parts = tuple(
            p
            for p in (m.lower() for m in _PART_RE.findall(token))
            if len(p) > 1 and p not in _STOP_WORDS
        )
        if len(lower) < 2 or lower in _STOP_WORDS or not parts:
            return None, ()
        # The key carries the parts because camelCase splitting depends on case
        # that lowercasing erases ("parseDate" vs "Parsedate").
        return "\x1f".join((lower, *parts)), parts

    def _word_unit(self, key: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        lower, *parts = key.split("\x1f")
        feats: list[tuple[str, float]] = [("w:" + lower, _WORD_WEIGHT)]
        if parts != [lower]:
            feats += [("w:" + p, _PART_WEIGHT) for p in parts]
        for p in parts:
            marked = f"<{p}>"
            feats += [("c:" + marked[i : i + 3], _TRIGRAM_WEIGHT) for i in range(len(p))]
        cols = np.empty(len(feats), dtype=np.int64)
        vals = np.empty(len(feats), dtype=np.float64)
        for i, (feat, weight) in enumerate(feats):
            col, sign = self._bucket(feat)
            cols[i] = col
            vals[i] = sign * weight
        return cols, vals

    def _embed_chunk(self, texts: Sequence[str]) -> FloatMatrix:
        if (
            len(self._token_cache) > _WORD_CACHE_LIMIT
            or len(self._word_cache) > _WORD_CACHE_LIMIT
            or len(self._feature_cache) > _FEATURE_CACHE_LIMIT
        ):
            self._word_cache.clear()
            self._feature_cache.clear()
            self._token_cache.clear()
        token_cache, word_cache, feature_cache = (
            self._token_cache,
            self._word_cache,
            self._feature_cache,
        )
        # Word units contribute many hashed features (stored as small arrays);
        # bigrams contribute exactly one, kept as scalars to save memory.
        unit_cols: list[npt.NDArray[np.int64]] = []
        unit_vals: list[npt.NDArray[np.float64]] = []
        unit_rows: list[int] = []
        unit_tf: list[float] = []
        cols: list[int] = []
        vals: list[float] = []
        rows: list[int] = []
        for row, text in enumerate(texts):
            keys: list[str] = []
            seq: list[str] = []
            for token in _TOKEN_RE.findall(text):
                info = token_cache.get(token)
                if info is None:
                    info = token_cache[token] = self._analyse_token(token)
                if info[0] is not None:
                    keys.append(info[0])
                    seq.extend(info[1])
            for key, count in Counter(keys).items():
                unit = word_cache.get(key)
                if unit is None:
                    unit = word_cache[key] = self._word_unit(key)
                unit_cols.append(unit[0])
                unit_vals.append(unit[1])
                unit_rows.append(row)
                unit_tf.append(1.0 + math.log(count))
            for (a, b), count in Counter(itertools.pairwise(seq)).items():
                feat = f"b:{a} {b}"
                hit = feature_cache.get(feat)
                if hit is None:
                    col, sign = self._bucket(feat)
                    hit = feature_cache[feat] = (col, sign * _BIGRAM_WEIGHT)
                cols.append(hit[0])
                vals.append(hit[1] * (1.0 + math.log(count)))
                rows.append(row)

        n, dim = len(texts), self._dimensions
        lens = np.fromiter((c.size for c in unit_cols), dtype=np.int64, count=len(unit_cols))
        all_rows = np.concatenate(
            [np.repeat(np.asarray(unit_rows, dtype=np.int64), lens), np.asarray(rows, np.int64)]
        )
        all_cols = np.concatenate([*unit_cols, np.asarray(cols, dtype=np.int64)])
        all_vals = np.concatenate([*unit_vals, np.asarray(vals, dtype=np.float64)])
        all_vals[: lens.sum()] *= np.repeat(np.asarray(unit_tf, dtype=np.float64), lens)
        # bincount sums strictly in input order, unlike SIMD/pairwise reductions
        # whose rounding can vary by CPU; that keeps output bytes reproducible.
        flat = np.bincount(all_rows * dim + all_cols, weights=all_vals, minlength=n * dim)
        dense = flat.astype(np.float64, copy=False).reshape(n, dim)  # int64 when no features
        sq = np.bincount(np.repeat(np.arange(n), dim), weights=(dense * dense).ravel(), minlength=n)
        norms = np.sqrt(sq)
        nonzero = norms > 0.0
        dense[nonzero] /= norms[nonzero, None]
        result = dense.astype(np.float32)
        result[~nonzero] = self._empty
        return result


# ------------------------------------------------------------ sentence-transformers

_INSTALL_HINT = 'pip install "dataknobs-data[embeddings]"'


class SentenceTransformerEmbedder:
    """Adapter for a locally available ``sentence-transformers`` model.

    The model is loaded on first use, not at construction, so configuring an
    embedder stays cheap; it is always loaded with ``local_files_only=True``
    and ``HF_HUB_OFFLINE=1`` because a library must never trigger a surprise
    network download.  ``model_version`` cannot be discovered reliably from a
    checkpoint, so the caller states it.
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        model_version: str = "unknown",
        device: str | None = None,
        batch_size: int = 32,
    ) -> None:
        if not model_name_or_path:
            raise ValueError("model_name_or_path must be a non-empty string")
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ImportError(
                "SentenceTransformerEmbedder needs the sentence-transformers package: "
                + _INSTALL_HINT
            )
        self._model_name = model_name_or_path
        self._model_version = model_version
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None
        self._dimensions: int | None = None

    @property
    def model_name(self) -> str:
        """The model path or name it was created with."""
        return self._model_name

    @property
    def model_version(self) -> str:
        """The version the caller stated (it cannot be read reliably from a checkpoint)."""
        return self._model_version

    @property
    def dimensions(self) -> int:
        """The model's output dimensions (loads the model)."""
        if self._dimensions is None:
            model = self._load()
            dims = model.get_sentence_embedding_dimension()
            if dims is None:  # some pooling configs cannot report it statically
                dims = int(self._encode(["dimension probe"]).shape[1])
            self._dimensions = int(dims)
        return self._dimensions

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self._model_name!r})"

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        """One normalised float32 row per text (loads the model on first use)."""
        _check_texts(texts)
        if len(texts) == 0:
            return np.empty((0, self.dimensions), dtype=np.float32)
        return self._encode(list(texts))

    def embed_one(self, text: str) -> FloatMatrix:
        """The normalised float32 vector of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}, expected str")
        row: FloatMatrix = self._encode([text])[0]
        return row.copy()

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                module = importlib.import_module("sentence_transformers")
            except ImportError as exc:
                raise ImportError(
                    f"could not import sentence-transformers: {_INSTALL_HINT}"
                ) from exc
            self._model = module.SentenceTransformer(
                self._model_name, device=self._device, local_files_only=True
            )
        return self._model

    def _encode(self, texts: list[str]) -> FloatMatrix:
        raw = self._load().encode(
            texts,
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
        vecs = np.asarray(raw, dtype=np.float64).reshape(len(texts), -1)
        # Normalise ourselves so every backend can treat dot product as cosine,
        # whatever the model's own pooling does.
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        np.divide(vecs, norms, out=vecs, where=norms > 0.0)
        return np.ascontiguousarray(vecs, dtype=np.float32)


# ------------------------------------------------------------------------- factory

_VALID_SPECS = '"hashing", "hashing:<dimensions>", "sentence-transformers:<name-or-path>"'


def get_embedder(spec: str) -> Embedder:
    """Build an embedder from a short string, as used in config files and CLIs."""
    kind, sep, arg = spec.strip().partition(":")
    if kind == "hashing":
        if not sep:
            return HashingEmbedder()
        try:
            dims = int(arg)
        except ValueError:
            raise ValueError(
                f"invalid embedder spec {spec!r}: dimensions must be an integer; "
                f"valid forms: {_VALID_SPECS}"
            ) from None
        return HashingEmbedder(dims)
    if kind == "sentence-transformers" and arg.strip():
        return SentenceTransformerEmbedder(arg.strip())
    raise ValueError(f"unknown embedder spec {spec!r}; valid forms: {_VALID_SPECS}")
