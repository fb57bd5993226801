"""The in-memory backend (``memory://``): reference semantics for every other backend."""

from .backend import MemoryBackend

__all__ = ["MemoryBackend"]
