"""Migrations of vector data: adding vectors to data that has only text (and, later, moving
data between backends).

``python -m dataknobs_data.vector.migrate --source URL --text-fields title,content
--vector-field embedding`` runs :meth:`VectorMigration.add_vectors_to_existing` from the shell.
"""

from __future__ import annotations

from .migration import AsyncVectorMigration, VectorMigration

__all__ = ["AsyncVectorMigration", "VectorMigration"]
