"""The backend conformance suite, shipped so third-party backends can run it.

Import this only from tests: it imports pytest. A backend's test module subclasses
:class:`ConformanceTests` and provides a ``db`` fixture over :func:`database_params`; see
:mod:`dataknobs_data.testing.conformance` for the five lines that takes. Tests that need an
optional engine skip, naming the extra to install, through :mod:`.extras`.
"""

from .adapter import DatabaseLike, Mode, SyncView, as_blocking
from .assertions import assert_hits, canonical, record_ids
from .backends import (
    CHROMA,
    FAISS,
    MEMORY,
    MODES,
    POSTGRES,
    POSTGRES_URL_ENV,
    SQLITE,
    SQLITE_MEMORY,
    BackendSpec,
    database_params,
    open_database,
    param_id,
    server_specs,
)
from .conformance import (
    ConformanceBase,
    ConformanceTests,
    CrudTests,
    DurabilityTests,
    FaultTests,
    FullTextTests,
    HostileInputTests,
    LargeFilterTests,
    QueryTests,
    ShellTests,
    SyncTests,
    VectorSearchTests,
)
from .conformance.processes import TwoProcessTests
from .extras import (
    database_urls,
    import_or_skip,
    install_hint,
    missing_extra,
    requires_extra,
    skip_unless_extra,
)
from .processes import ProcessTarget, WriterProcess

__all__ = [
    "CHROMA",
    "FAISS",
    "MEMORY",
    "MODES",
    "SQLITE",
    "SQLITE_MEMORY",
    "BackendSpec",
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
    "TwoProcessTests",
    "ProcessTarget",
    "WriterProcess",
    "DatabaseLike",
    "Mode",
    "SyncView",
    "as_blocking",
    "assert_hits",
    "canonical",
    "record_ids",
    "database_params",
    "open_database",
    "param_id",
    "POSTGRES",
    "POSTGRES_URL_ENV",
    "server_specs",
    "database_urls",
    "import_or_skip",
    "install_hint",
    "missing_extra",
    "requires_extra",
    "skip_unless_extra",
]
