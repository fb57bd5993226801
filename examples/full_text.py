"""Full-text search (SQLite FTS5, BM25): TEXT fields, plain words, best first, with a filter.

Needs: pip install "dataknobs-data[sqlite]".  Run: python examples/full_text.py
"""

import tempfile
from pathlib import Path

from dataknobs_data import (
    DatabaseFactory,
    F,
    Feature,
    Field,
    FieldType,
    QueryError,
    Record,
    UnsupportedError,
)

NOTES = [
    ("n1", 2021, "Parsing ISO dates in Python with datetime.fromisoformat"),
    ("n2", 2023, "Python dates: time zones, zoneinfo and daylight saving"),
    ("n3", 2023, "Reading CSV files with the csv module"),
    ("n4", 2019, "Café menus: crème brûlée and other desserts"),
    ("n5", 2022, "Sorting lists of dictionaries by key"),
    ("n6", 2024, "Sending email with smtplib"),
    ("n7", 2020, "Packaging a library with pyproject.toml"),
]

with tempfile.TemporaryDirectory() as tmp:
    db = DatabaseFactory.create(f"sqlite:///{Path(tmp) / 'notes.db'}")
    print("full text supported:", db.capabilities().supports(Feature.FULL_TEXT))
    db.create_batch(
        Record([Field("body", body, FieldType.TEXT), Field("year", year)], id=note_id)
        for note_id, year, body in NOTES
    )

    def show(label, hits):
        print(f"{label}: " + ", ".join(f"{h.id}({h.score:.3f})" for h in hits))

    show("python dates         ", db.text_search("python dates"))
    show("python dates, >= 2022", db.text_search("python dates", filter=F("year") >= 2022))
    # Words are matched literally: query syntax is just text, and diacritics are folded.
    show('"csv" OR NOT         ', db.text_search('"csv" OR NOT'))
    show("creme brulee         ", db.text_search("creme brulee"))
    try:  # a query without words would rank nothing, so it is refused rather than answered
        db.text_search("   ")
    except QueryError as exc:
        print("no words:", type(exc).__name__)
    db.close()

# Backends without Feature.FULL_TEXT refuse with a typed error rather than guess.
memory = DatabaseFactory.create("memory://")
try:
    memory.text_search("python")
except UnsupportedError as exc:
    print("memory backend:", type(exc).__name__)
