"""Basic storage: create, read, update, upsert, delete and query typed records in a SQLite file.

Needs: pip install "dataknobs-data[sqlite]".  Run: python examples/basic_storage.py
"""

import tempfile
from datetime import datetime
from pathlib import Path

from dataknobs_data import DatabaseFactory, DuplicateRecordError, F, Query, Record

with tempfile.TemporaryDirectory() as tmp:
    url = f"sqlite:///{Path(tmp) / 'books.db'}"
    db = DatabaseFactory.create(url)
    db.create_batch(
        [
            Record({"title": "Dune", "year": 1965, "tags": ["sf", "classic"]}, id="dune"),
            Record({"title": "Neuromancer", "year": 1984, "tags": ["sf"]}, id="neuromancer"),
            Record({"title": "Emma", "year": 1815, "tags": ["classic"]}, id="emma"),
        ]
    )
    print("stored:", db.count())

    try:
        db.create(Record({"title": "Dune again"}, id="dune"))
    except DuplicateRecordError as exc:
        print("refused:", type(exc).__name__)

    book = db.read("dune")
    print("read:", book.id, book["title"], book["year"])

    db.update("emma", Record({"title": "Emma", "year": 1815, "tags": ["classic", "romance"]}))
    db.upsert(Record({"title": "Solaris", "year": 1961, "tags": ["sf"]}, id="solaris"))
    db.upsert(Record({"title": "Loaded", "at": datetime(2024, 5, 1)}, id="loaded"))
    print("after upserts:", db.count())

    sf = db.search(Query().filter("tags", "=", "sf").sort("year"))
    print("sf by year:", [r.id for r in sf])
    classics = db.search(F("tags") == "classic")
    print("classics:", sorted(r.id for r in classics))
    print("deleted loaded:", db.delete("loaded"), "| deleted again:", db.delete("loaded"))
    db.close()

    # The file keeps everything: a new database object on the same URL sees the records.
    again = DatabaseFactory.create(url)
    print("reopened:", again.count(), "records;", again.read("solaris")["title"])
    again.close()
