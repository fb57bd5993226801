"""Options of the synchronisation layer (the plan's ``auto_*`` flags and their neighbours)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from ...errors import ValidationError
from ...ints import checked_int
from .embedding import RetryPolicy

__all__ = ["SyncConfig", "default_worker"]


def default_worker() -> str:
    """``host:pid``: unique among live vectorizers, so claims never collide."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """How vectors are kept in step with their text.

    * ``auto_embed_on_create``: a record written for the first time is embedded inside the
      write (``on_write`` rules, where an embedder is attached); off, it gets a pending mark.
    * ``auto_update_on_text_change``: a write that changes a source text re-embeds inside the
      write (``on_write`` rules); off, it gets a pending mark.
    * ``batch_size``: texts per embedder call and records per write in bulk work.
    * ``track_model_version``: a vector of another version of the rule's model is stale; off,
      only the model name and the text must match.
    * ``retry``: how a failing embedder call is retried before texts are recorded as failed.
    * ``lease``: seconds a vectorizer's claim on pending records lasts if it dies holding it.
    * ``worker``: the vectorizer's name in claims (default ``host:pid``); a restarted
      vectorizer with the same name takes its own claims back at once.
    """

    auto_embed_on_create: bool = True
    auto_update_on_text_change: bool = True
    batch_size: int = 100
    track_model_version: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease: float = 300.0
    worker: str | None = None

    def __post_init__(self) -> None:
        checked_int("batch_size", self.batch_size, 1, 1_000_000)
        if not isinstance(self.retry, RetryPolicy):
            raise ValidationError(f"retry must be a RetryPolicy, got {self.retry!r}")
        if not (isinstance(self.lease, int | float) and 0 < self.lease <= 86_400):
            raise ValidationError(f"lease must be 0 < seconds <= 86400, got {self.lease!r}")
        if self.worker is not None and (not isinstance(self.worker, str) or not self.worker):
            raise ValidationError(f"worker must be a non-empty string, got {self.worker!r}")

    @property
    def worker_name(self) -> str:
        return self.worker or default_worker()
