"""The SQLite backend (``sqlite:///file.db``): records as JSON in SQLite, vectors in sqlite-vec.

Importing this package does not import a driver; :func:`.connect.load_driver` picks one (the
standard ``sqlite3`` if it can load extensions, else ``sqlean.py``) when a database is opened.
"""

from .backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
