"""Embedding texts in batches, through the cache, with retries (no I/O besides the embedder
and the cache).

One embedder call per batch of texts the cache does not hold. A failing call is retried with
exponential backoff; a batch that still fails is split into one call per text, so one bad text
(too long for an API, say) fails alone and the rest of the batch is embedded. Texts that still
fail are returned with their error, to be recorded on their records; they are never retried
in a loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ...fields import check_magnitude
from ...ints import checked_int
from .rules import EmbedderInfo

if TYPE_CHECKING:  # the cache imports sqlite3: not on `import dataknobs_data`
    from .cache import EmbeddingCache

__all__ = ["EmbedOutcome", "RetryPolicy", "embed_texts"]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing embedder call is retried: ``retries`` more attempts, waiting ``backoff``
    seconds before the first and twice as long before each next one (at most ``max_backoff``)."""

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        checked_int("retries", self.retries, 0, 100)
        if not (0 <= self.backoff <= 3600 and 0 <= self.max_backoff <= 3600):
            raise ValueError("backoff and max_backoff must be between 0 and 3600 seconds")

    def delays(self) -> list[float]:
        return [min(self.backoff * 2**i, self.max_backoff) for i in range(self.retries)]


@dataclass(slots=True)
class EmbedOutcome:
    """Vectors (text hash -> vector) and errors (text hash -> message) of one embedding step."""

    vectors: dict[str, F32] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    embedded: int = 0
    cached: int = 0
    attempts: int = 1


def _checked(result: Any, n: int, dims: int) -> F32:
    arr = np.asarray(result, dtype=np.float32)
    if arr.shape != (n, dims):
        raise ValueError(f"embedder returned shape {arr.shape}, expected ({n}, {dims})")
    if not bool(np.isfinite(arr).all()):
        raise ValueError("embedder returned a non-finite value")
    check_magnitude(None, arr, "embedder output")  # the store's rule, checked once per batch
    arr = np.ascontiguousarray(arr)
    arr.flags.writeable = False  # rows become vectors as they are (VectorField.trusted)
    return arr


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def embed_texts(
    embedder: Any,
    info: EmbedderInfo,
    texts: Mapping[str, str],
    cache: EmbeddingCache | None,
    policy: RetryPolicy,
    batch_size: int,
    sleep: Callable[[float], None] = time.sleep,
) -> EmbedOutcome:
    """Embed ``texts`` (text hash -> text) that ``cache`` lacks; see the module docstring."""
    out = EmbedOutcome(attempts=policy.retries + 1)
    digests = list(texts)
    if cache is not None and digests:
        out.vectors.update(cache.get_many(info.name, info.version, digests))
        out.cached = len(out.vectors)
    todo = [d for d in digests if d not in out.vectors]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        made = _embed_chunk(embedder, info, [texts[d] for d in chunk], policy, sleep, out)
        if made is not None:
            fresh = dict(zip(chunk, made, strict=True))
        else:  # the batch kept failing: one call per text finds the bad ones
            fresh = {}
            for d in chunk:
                single = _embed_chunk(embedder, info, [texts[d]], RetryPolicy(0), sleep, out)
                if single is None:
                    out.errors[d] = out.errors.pop("", "embedder failed")
                else:
                    fresh[d] = single[0]
        out.embedded += len(fresh)
        out.vectors.update(fresh)
        if cache is not None:
            cache.put_many(info.name, info.version, fresh)
    out.errors.pop("", None)
    return out


def _embed_chunk(
    embedder: Any,
    info: EmbedderInfo,
    chunk: list[str],
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    out: EmbedOutcome,
) -> F32 | None:
    """One batch, retried per ``policy``; ``None`` (error kept under ``""``) if it fails."""
    delays = policy.delays()
    for attempt in range(len(delays) + 1):
        out.calls += 1
        try:
            return _checked(embedder.embed(chunk), len(chunk), info.dimensions)
        except Exception as exc:  # any embedder failure is data about the batch, not a crash
            out.errors[""] = _describe(exc)
            if attempt < len(delays):
                sleep(delays[attempt])
    return None
