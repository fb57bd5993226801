"""Vectors that follow their text: a vectorizing rule stored with the data, exact staleness,
pending marks left by writes, the incremental vectorizer and bulk_sync.

Needs: pip install "dataknobs-data[sqlite]".  Run: python examples/synchronization.py
"""

import tempfile
from pathlib import Path

from dataknobs_data import DatabaseFactory, Record
from dataknobs_data.vector.embedders import get_embedder
from dataknobs_data.vector.sync import IncrementalVectorizer, VectorTextSynchronizer
from dataknobs_data.vector.sync.cli import main

SPEC = "hashing:64"  # stored with the rule, so the vector.sync command can rebuild the embedder
embedder = get_embedder(SPEC)


def counts(report, field="embedding"):
    f = report.fields[field]
    return (
        f"current={f.current} stale={f.stale} missing={f.missing} "
        f"pending={f.pending} failed={f.failed} empty={f.empty}"
    )


with tempfile.TemporaryDirectory() as tmp:
    url = f"sqlite:///{Path(tmp) / 'articles.db'}"

    # Data that has text but no vectors yet.
    db = DatabaseFactory.create(url)
    db.create_batch(
        [
            Record({"title": "Dune", "body": "Spice and sand.", "views": 10}, id="a1"),
            Record({"title": "Emma", "body": "A matchmaker.", "views": 3}, id="a2"),
            Record({"title": "Solaris", "body": "An ocean that thinks.", "views": 7}, id="a3"),
            Record({"views": 0}, id="a4"),  # no text at all: it will get no vector
        ]
    )

    # The rule: 'embedding' is made from title then body; writes leave a pending mark.
    sync = VectorTextSynchronizer(db, embedder)
    rule = sync.rule_for("embedding", ["title", "body"], mode="deferred", spec=SPEC)
    print("set_rule:", counts(sync.set_rule(rule)))
    done = sync.bulk_sync()
    print(f"bulk_sync: embedded={done.embedded} written={done.written} calls={done.calls}")
    db.close()

    # Another process, with no embedder: it opens the data and applies the stored rule.
    db = DatabaseFactory.create(url)
    rec = db.read("a2")
    rec["views"] = 4  # not a source: the vector stays current
    db.update("a2", rec)
    rec = db.read("a3")
    rec["body"] = "An ocean that dreams."  # a source: the write leaves a pending mark
    db.update("a3", rec)
    print("a2 pending:", db.read("a2").get("_dk_pending"))
    print("a3 pending:", sorted(db.read("a3").get("_dk_pending")))
    checker = VectorTextSynchronizer(db)
    print("check (marks):", counts(checker.check(method="marks")))
    print("check (full): ", counts(checker.check()))

    # The vectorizer drains the marks: one embedder call per batch, compare-and-set writes.
    vectorizer = IncrementalVectorizer(db, embedder)
    drained = vectorizer.run_once()
    print(f"vectorizer: records={drained.records} embedded={drained.embedded}")
    print("after:", counts(checker.check()), "| clean:", checker.check().clean)

    # Nothing is stale any more: a second bulk_sync embeds and writes nothing.
    again = VectorTextSynchronizer(db, embedder).bulk_sync()
    print(f"bulk_sync again: embedded={again.embedded} written={again.written}")
    print("a3 vector:", db.read("a3").fields["embedding"])
    db.close()

    # The same check from the shell: python -m dataknobs_data.vector.sync --database URL ...
    status = main(["--database", url, "--check-updates", "--no-progress"])
    print("exit status:", status)
