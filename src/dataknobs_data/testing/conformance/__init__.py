"""The conformance suite every backend runs, in both shells, as one class or section by section.

Subclass :class:`ConformanceTests` in a test module and provide a ``db`` fixture that yields a
fresh, empty database behind the blocking interface (:func:`~..backends.database_params` and
:func:`~..backends.open_database` do the work)::

    BACKENDS = [MEMORY, SQLITE]

    @pytest.fixture(params=database_params(BACKENDS), ids=param_id)
    def db(request, tmp_path):
        with open_database(*request.param, tmp_path) as database:
            yield database

    class TestConformance(ConformanceTests):
        pass

A file-based engine gets a fresh directory per database:
``BackendSpec.from_url("sqlite", lambda tmp: f"sqlite:///{tmp}/suite.db")``; a server engine
builds its own ``open_sync`` / ``open_async`` that create a uniquely named collection.
Behaviour that legitimately differs is handled by overriding one test (or the
:meth:`ConformanceBase.assert_records_equal` hook) in the subclass, with a comment saying why.

**Adopting the suite one section at a time.** :class:`ConformanceTests` is only the union of
one mixin per section; a new backend can start with the sections it already passes and add the
others as it grows (the same ``db`` fixture serves them all)::

    class TestMyBackend(CrudTests, QueryTests):  # vector search comes next release
        pass

* :class:`ShellTests`: capabilities are well formed; the async shell is really async (the
  async-specific checks); a closed database refuses every call; ``with`` closes.
* :class:`CrudTests`: create/read/update/upsert/delete/clear, single and batch; records handed
  in and out are copies.
* :class:`DurabilityTests`: a failed write, batch or single, changes nothing (all or nothing).
* :class:`FaultTests`: a write failing at any engine call (injected around the real engine
  objects the backend lists in ``engine_seams()``) leaves no trace, and its retry succeeds.
* :class:`QueryTests`: filters (every operator, run or refused), sort, paging, projection,
  streaming; malformed queries raise ``QueryError``.
* :class:`LargeFilterTests`: ``in`` / ``not_in`` / ``_id in`` with 20,000 values and ``OR`` /
  ``AND`` of 20,000 conditions answer as the oracle; a large-list filter keeps ``k`` hits.
* :class:`VectorSearchTests`: kNN against a float64 numpy oracle for every metric, filters,
  thresholds, ties, batches, provenance; bad vectors, metrics, fields and k.
* :class:`FullTextTests`: ``text_search`` (BM25 over TEXT fields), run or refused.
* :class:`HostileInputTests`: generated hostile ids, names, values, vectors and query
  parameters (hypothesis): a typed refusal writing nothing, or the memory backend's answer
  (``DATAKNOBS_HYPOTHESIS_EXAMPLES=N`` for more examples).
* :class:`SyncTests`: vectorizing rules stored with the data, exact staleness, pending marks
  written with the record through every write method, ``on_write`` embedding, compare-and-set,
  recorded embedder failures, claims and the vectorizer (:mod:`dataknobs_data.vector.sync`).

Not in the union, because it needs a store other processes can open rather than an open ``db``:
:class:`~.processes.TwoProcessTests` (two processes on one store: refused with a typed error
naming the holder, or both writes kept; a SIGKILLed writer leaves no stale lock), adopted with
a ``process_target`` fixture.

Every mixin derives from :class:`ConformanceBase` (the hooks, the ``loaded_db`` fixture and the
before/after ``snapshot``); helpers used by more than one section live in :mod:`.helpers`.

Expected results come from plain-Python oracles over the fixed dataset
(:mod:`..dataset`, :mod:`..cases`), never from another backend. Anything a backend does not
declare in :meth:`capabilities` (an operator, a metric, vector search, full text) is not
skipped: the suite asserts that the backend refuses it with the typed ``Unsupported*`` error
instead. Declaring less is therefore a way to pass; this repository's own backends pin what
they declare in ``tests/test_declared_capabilities.py``, and a third-party backend should too.
"""

from __future__ import annotations

from .base import ConformanceBase
from .crud import CrudTests
from .durability import DurabilityTests
from .faults import FaultTests
from .fulltext import FullTextTests
from .hostile import HostileInputTests
from .large import LargeFilterTests
from .query import QueryTests
from .shells import ShellTests
from .sync import SyncTests
from .vector import VectorSearchTests

__all__ = [
    "ConformanceBase",
    "ConformanceTests",
    "CrudTests",
    "DurabilityTests",
    "FaultTests",
    "FullTextTests",
    "HostileInputTests",
    "LargeFilterTests",
    "QueryTests",
    "ShellTests",
    "SyncTests",
    "VectorSearchTests",
]


class ConformanceTests(
    ShellTests,
    CrudTests,
    DurabilityTests,
    QueryTests,
    LargeFilterTests,
    VectorSearchTests,
    FullTextTests,
    HostileInputTests,
    FaultTests,
    SyncTests,
):
    """Every section of the suite; the subclass provides the ``db`` fixture (fresh, empty)."""
