"""The PostgreSQL + pgvector backend (``postgresql://...``) through psycopg 3.

Importing this package imports psycopg (the driver is this backend's reason to exist); the
factory only imports it when a ``postgresql://`` URL is opened.
"""

from .backend import PostgresBackend

__all__ = ["PostgresBackend"]
