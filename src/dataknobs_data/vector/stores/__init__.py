"""Specialised vector stores (faiss, chroma) behind one :class:`VectorStore` contract.

Importing this package never imports an engine; :class:`VectorStoreFactory` loads one on demand.
"""

from .base import AsyncVectorStore, StoredVector, VectorBatch, VectorHit, VectorStore
from .factory import StoreInfo, VectorStoreFactory

__all__ = [
    "AsyncVectorStore",
    "StoreInfo",
    "StoredVector",
    "VectorBatch",
    "VectorHit",
    "VectorStore",
    "VectorStoreFactory",
]
