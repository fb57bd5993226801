"""Small helpers more than one section of the suite uses: building vectors the way the dataset
does, unlocking arrays the way a careless caller could, and the JSON round trip of a query."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...fields import VectorField
from ..dataset import MODEL_NAME, MODEL_VERSION

__all__ = ["json_round_trip", "unlock", "vec", "vector_field"]


def vec(values: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.asarray(values, dtype=np.float32)


def vector_field(values: Sequence[float], model: str = MODEL_NAME) -> VectorField:
    """A vector with the dataset's provenance (or another ``model``, to provoke a mix)."""
    return VectorField(vec(values), model_name=model, model_version=MODEL_VERSION)


def unlock(arr: np.ndarray[Any, Any]) -> bool:
    """Make a read-only array writeable the way a careless caller could (base first).

    Returns False when numpy refuses (e.g. memory owned by an immutable buffer): then the
    array cannot be used to reach anything.
    """
    chain = [arr]
    while isinstance(chain[-1].base, np.ndarray):
        chain.append(chain[-1].base)
    try:
        for a in reversed(chain):
            a.flags.writeable = True
    except ValueError:
        return False
    return True


def json_round_trip(data: Any) -> Any:
    """``data`` as it comes back from JSON: what a query dict looks like off the wire."""
    return json.loads(json.dumps(data))
