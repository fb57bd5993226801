"""Chroma vector store: the same calls as the faiss store over a persistent chroma directory
(no embedding function: chroma never downloads a model).

Needs: pip install "dataknobs-data[chroma]".  Run: python examples/chroma_store.py
"""

import tempfile
from pathlib import Path

from dataknobs_data import F
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
    path = Path(tmp) / "chroma"
    store = VectorStoreFactory.create("chroma", dimensions=128, metric="cosine", path=path)
    vectors = embedder.embed([text for _, text in SNIPPETS.values()])
    meta = [{"lang": lang, "text": text} for lang, text in SNIPPETS.values()]
    store.add(list(SNIPPETS), vectors, meta)
    query = embedder.embed_one("parse dates")
    for hit in store.search(query, 3):
        print(f"  {hit.id} score={hit.score:.3f} {hit.metadata['text']!r}")
    print("not english:", [hit.id for hit in store.search(query, 3, filter=F("lang") != "en")])
    # upsert replaces the vector and the metadata (chroma alone would merge old keys in).
    store.upsert(["s3"], embedder.embed(["Parse dates in German"]), [{"lang": "de"}])
    print("s3 metadata after upsert:", store.get(["s3"])[0].metadata)
    store.close()

    reopened = VectorStoreFactory.load("chroma", path)
    print("reopened:", reopened.count(), "vectors; best:", reopened.search(query, 1)[0].id)
    reopened.close()
