"""Vector search: embed texts with the built-in embedder, store them, ask for the nearest.

No extra needed (memory backend; the hashing embedder downloads nothing).
Run: python examples/vector_search.py
"""

from dataknobs_data import DatabaseFactory, DistanceMetric, Record, VectorField
from dataknobs_data.vector.embedders import HashingEmbedder

DOCS = {
    "dates": "Parse ISO 8601 dates and times into datetime objects",
    "json": "Decode a JSON document into Python dictionaries and lists",
    "csv": "Read and write comma separated values files row by row",
    "regex": "Match text against regular expression patterns",
    "sockets": "Open network sockets and send bytes to a server",
}

embedder = HashingEmbedder(dimensions=256)
db = DatabaseFactory.create("memory://")
vectors = embedder.embed(list(DOCS.values()))
db.create_batch(
    Record(
        {
            "text": text,
            "embedding": VectorField(
                vector,
                source_field="text",
                model_name=embedder.model_name,
                model_version=embedder.model_version,
            ),
        },
        id=doc_id,
    )
    for (doc_id, text), vector in zip(DOCS.items(), vectors, strict=True)
)

for question in ("decode a JSON document", "parse a date"):
    hits = db.vector_search(embedder.embed_one(question), field="embedding", k=3)
    print(f"query: {question!r}")
    for hit in hits:
        print(f"  {hit.rank}. {hit.id:8s} score={hit.score:.3f} distance={hit.distance:.3f}")

# Scores are higher-is-better for every metric; euclidean reports 1/(1+d) as the score.
hits = db.vector_search(embedder.embed_one("parse a date"), k=1, metric=DistanceMetric.EUCLIDEAN)
print(f"euclidean best: {hits[0].id} score={hits[0].score:.3f} distance={hits[0].distance:.3f}")
# A hit carries its record; the vector's provenance says which model made it.
field = hits[0].record.get_field("embedding")
print("provenance:", field.model_label, "| source field:", field.source_field)
