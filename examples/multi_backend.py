"""Multi-backend: the same records and queries on every embedded backend installed here, with the
same answers (the memory backend is the reference semantics).

Uses what is installed: memory always; sqlite, faiss and chroma when their extras are.
Run: python examples/multi_backend.py
"""

import importlib.util
import tempfile
from pathlib import Path

from dataknobs_data import DatabaseFactory, F, Query, Record, VectorField
from dataknobs_data.vector.embedders import HashingEmbedder

TEXTS = {
    "p1": ("guide", 2021, "How to parse dates in Python"),
    "p2": ("guide", 2023, "Decoding JSON documents"),
    "p3": ("news", 2024, "A new release of the date parser"),
    "p4": ("guide", 2020, "Sorting lists of dictionaries"),
    "p5": ("news", 2022, "JSON schema validation lands"),
}

embedder = HashingEmbedder(dimensions=128)
vectors = embedder.embed([text for *_, text in TEXTS.values()])
question = embedder.embed_one("parse a date")

with tempfile.TemporaryDirectory() as tmp:
    urls = {"memory": "memory://"}
    optional = {
        "sqlite": ("sqlite_vec", f"sqlite:///{Path(tmp) / 'db.sqlite'}"),
        "faiss": ("faiss", f"faiss:///{Path(tmp) / 'faiss'}"),
        "chroma": ("chromadb", f"chroma:///{Path(tmp) / 'chroma'}"),
    }
    for name, (module, url) in optional.items():
        if importlib.util.find_spec(module) is not None:
            urls[name] = url
        else:
            print(f"{name}: not installed (pip install 'dataknobs-data[{name}]'), skipped")

    answers = {}
    for name, url in urls.items():
        db = DatabaseFactory.create(url)
        db.create_batch(
            Record({"kind": kind, "year": year, "text": text, "embedding": VectorField(vec)}, id=i)
            for (i, (kind, year, text)), vec in zip(TEXTS.items(), vectors, strict=True)
        )
        guides = [r.id for r in db.search(Query().filter("kind", "=", "guide").sort("year"))]
        hits = db.vector_search(question, k=2, filter=F("year") >= 2021)
        answers[name] = (guides, [h.id for h in hits], [round(h.score, 4) for h in hits])
        print(f"{name:7s} guides by year={guides} nearest since 2021={answers[name][1]}")
        db.close()

    reference = answers["memory"]
    same = all(answer == reference for answer in answers.values())
    print(f"{len(answers)} backends, identical answers: {same}")
