"""Filtered vector search: the filter runs before ranking, so k hits come back whenever k match.

Needs: pip install "dataknobs-data[sqlite]".  Run: python examples/filtered_search.py
"""

import tempfile
from pathlib import Path

from dataknobs_data import DatabaseFactory, F, Query, Record, VectorField, any_of
from dataknobs_data.vector.embedders import HashingEmbedder

ARTICLES = [
    ("a1", "en", 2019, "Parsing dates and times in Python"),
    ("a2", "en", 2023, "Time zones and daylight saving time in date parsing"),
    ("a3", "de", 2022, "Datumsangaben in Python parsen"),
    ("a4", "en", 2024, "Parsing JSON documents quickly"),
    ("a5", "fr", 2021, "Analyser des dates avec Python"),
    ("a6", "en", 2020, "Formatting dates for humans"),
]

embedder = HashingEmbedder(dimensions=256)
with tempfile.TemporaryDirectory() as tmp:
    db = DatabaseFactory.create(f"sqlite:///{Path(tmp) / 'articles.db'}")
    vectors = embedder.embed([title for *_, title in ARTICLES])
    db.create_batch(
        Record({"lang": lang, "year": year, "title": title, "embedding": VectorField(vec)}, id=i)
        for (i, lang, year, title), vec in zip(ARTICLES, vectors, strict=True)
    )
    question = embedder.embed_one("parsing dates in Python")

    def show(label, hits):
        print(f"{label}: " + ", ".join(f"{h.id}({h.score:.2f})" for h in hits))

    show("no filter       ", db.vector_search(question, k=3))
    show("english only    ", db.vector_search(question, k=3, filter=F("lang") == "en"))
    recent = Query().filter("year", ">=", 2022)
    show("2022 and later  ", db.vector_search(question, k=3, filter=recent))
    either = any_of(F("lang") == "de", F("lang") == "fr")
    show("german or french", db.vector_search(question, k=3, filter=either))
    # A filter that matches fewer than k records returns just those, never padding.
    show("year 2019 only  ", db.vector_search(question, k=3, filter=F("year") == 2019))
    # score_threshold drops weak hits (scores are higher-is-better for every metric).
    show("score >= 0.3    ", db.vector_search(question, k=6, score_threshold=0.3))
    db.close()
