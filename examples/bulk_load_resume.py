"""Bulk load with resume: stream records in all-or-nothing batches; when the load dies, run the
same load again with skip_existing=True and it continues where it stopped.

Needs: pip install "dataknobs-data[sqlite]".  Run: python examples/bulk_load_resume.py
"""

import tempfile
from pathlib import Path

from dataknobs_data import DatabaseFactory, Record, VectorField
from dataknobs_data.vector.embedders import HashingEmbedder

embedder = HashingEmbedder(dimensions=64)
TOTAL = 2_500


def records(fail_at=None):
    """The source: records made on the fly (a file, an API...), here failing at ``fail_at``."""
    for start in range(0, TOTAL, 500):
        texts = [f"document number {i}" for i in range(start, start + 500)]
        for i, vector in zip(range(start, start + 500), embedder.embed(texts), strict=True):
            if i == fail_at:
                raise ConnectionError(f"the source went away at record {i}")
            yield Record({"n": i, "embedding": VectorField(vector)}, id=f"doc-{i:05d}")


with tempfile.TemporaryDirectory() as tmp:
    url = f"sqlite:///{Path(tmp) / 'bulk.db'}"
    db = DatabaseFactory.create(url)
    try:
        db.load(records(fail_at=1_234), batch_size=500)
    except ConnectionError as exc:
        print("first load died:", exc)
    # Whole batches only: records 0-999 are stored, the batch being read at 1234 left no trace.
    print("stored after the crash:", db.count())
    db.close()

    db = DatabaseFactory.create(url)  # a new process would do the same
    report = db.load(records(), batch_size=500, skip_existing=True)
    print(f"resumed: written={report.written} skipped={report.skipped} batches={report.batches}")
    print("stored now:", db.count(), "| distinct n:", len({r["n"] for r in db.search()}))
    db.close()
