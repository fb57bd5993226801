"""Faiss vector store: add vectors with metadata, filtered search, persist, reopen after close.

Needs: pip install "dataknobs-data[faiss]".  Run: python examples/faiss_store.py
"""

import tempfile
from pathlib import Path

from dataknobs_data import DuplicateRecordError, F
from dataknobs_data.vector.embedders import HashingEmbedder
from dataknobs_data.vector.stores import VectorStoreFactory

SNIPPETS = {
    "s1": ("en", "Parse ISO dates into datetime objects"),
    "s2": ("en", "Decode JSON documents"),
    "s3": ("de", "Datumsangaben parsen"),
    "s4": ("en", "Format dates for display"),
    "s5": ("fr", "Analyser des documents JSON"),
}

embedder = HashingEmbedder(dimensions=128)
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "vectors"
    store = VectorStoreFactory.create("faiss", dimensions=128, metric="cosine", path=path)
    ids = list(SNIPPETS)
    vectors = embedder.embed([text for _, text in SNIPPETS.values()])
    store.add(ids, vectors, [{"lang": lang, "text": text} for lang, text in SNIPPETS.values()])
    print("stored:", store.count(), "| english:", store.count(F("lang") == "en"))
    try:
        store.add(["s1"], vectors[:1], [{"lang": "en"}])
    except DuplicateRecordError as exc:
        print("refused:", type(exc).__name__, "| still stored:", store.count())

    query = embedder.embed_one("parse dates")
    for hit in store.search(query, 3):
        print(f"  {hit.id} score={hit.score:.3f} {hit.metadata['text']!r}")
    english = store.search(query, 3, filter=F("lang") == "en")
    print("english only:", [hit.id for hit in english])
    print("index:", store.stats()["index"]["kind"])
    store.close()  # persists: an atomic snapshot in the directory

    reopened = VectorStoreFactory.load("faiss", path)
    print("reopened:", reopened.count(), "vectors; best:", reopened.search(query, 1)[0].id)
    reopened.close()
