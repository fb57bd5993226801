"""Migrations of vector data: adding vectors to data that has only text (and, later, moving
data between backends).

``python -m dataknobs_data.vector.migrate --source URL --text-fields title,content
--vector-field embedding`` runs :meth:`VectorMigration.add_vectors_to_existing` from the shell.
"""

from __future__ import annotations

from ..exceptions import (
    MigrationError,
    NoSuchMigrationError,
    SameStoreError,
    TargetSchemaConflictError,
)
from .digest import record_digest
from .migration import AsyncVectorMigration, VectorMigration
from .plan import MigrationPlan
from .result import MigrationResult, RollbackResult
from .verify import VerifyReport, averify_migration, verify_migration

__all__ = [
    "AsyncVectorMigration",
    "MigrationError",
    "MigrationPlan",
    "MigrationResult",
    "NoSuchMigrationError",
    "RollbackResult",
    "SameStoreError",
    "TargetSchemaConflictError",
    "VectorMigration",
    "VerifyReport",
    "averify_migration",
    "record_digest",
    "verify_migration",
]
