"""Moving vector data: a SQLite file copied to faiss (checked, interrupted and resumed, then
rolled back), and a blue/green upgrade of a vector field to a new embedding model.

Needs: pip install "dataknobs-data[faiss]" and the sqlite extra (pip install
"dataknobs-data[sqlite,faiss]").  Run: python examples/migration.py
"""

import tempfile
from pathlib import Path

from dataknobs_data import DatabaseFactory, Record
from dataknobs_data.vector.embedders import get_embedder
from dataknobs_data.vector.migrate import VectorMigration
from dataknobs_data.vector.migrate.cli import main
from dataknobs_data.vector.sync import VectorTextSynchronizer

TITLES = [
    "Dune: spice and sand",
    "Emma: a matchmaker in a village",
    "Moby-Dick: whales and the sea",
    "Solaris: an ocean that thinks",
    "The Left Hand of Darkness: a world of winter",
    "Neuromancer: a hacker and an AI",
]
old_model, new_model = get_embedder("hashing:32"), get_embedder("hashing:48")
migration = VectorMigration()


class CrashError(Exception):
    """Stands in for a crash in the middle of a migration."""


with tempfile.TemporaryDirectory() as tmp:
    source_url = f"sqlite:///{Path(tmp) / 'books.db'}"
    target_url = f"faiss://{Path(tmp) / 'books-faiss'}"

    # A SQLite file whose vectors follow their text (a stored vectorizing rule).
    source = DatabaseFactory.create(source_url)
    source.create_batch(
        [Record({"title": t, "year": 1960 + 5 * i}, id=f"b{i}") for i, t in enumerate(TITLES)]
    )
    migration.add_vectors_to_existing(source, "title", "emb", old_model, mode="on_write")

    # 1. A copy to faiss that dies after its first batch, then runs again and continues.
    target = DatabaseFactory.create(target_url)

    def crash_at_b2(first_id):
        if first_id == "b2":
            raise CrashError(first_id)

    try:
        migration.migrate_between_backends(source, target, batch_size=2, log=crash_at_b2)
    except CrashError:
        print(f"first run died before batch b2; target holds {target.count()}")
    result = migration.migrate_between_backends(source, target, batch_size=2)
    print(
        f"resumed from {result.resumed_from}: read={result.read} written={result.written} "
        f"skipped={result.skipped_existing}"
    )
    copy = target.read("b0").fields["emb"]
    print(f"provenance kept: {copy.model_name}@{copy.model_version} dims={copy.dimensions}")
    print(f"rule copied: {sorted(VectorTextSynchronizer(target).rules)}")
    report = migration.verify_migration(source, target, probes=4, k=3)
    print(f"verify: ok={report.ok} compared={report.to_dict()['compared']}")
    target.close()
    source.close()

    # 2. The same through the command, into a new directory, verified; then rolled back (the
    # source is never touched).
    second = f"faiss://{Path(tmp) / 'books-copy'}"
    common = ["--source", source_url, "--target", second, "--no-progress"]
    status = main([*common, "--create-target", "--verify"])
    print(f"command exit status: {status}")
    main([*common, "--rollback"])
    with DatabaseFactory.create(second) as target, DatabaseFactory.create(source_url) as src:
        print(f"after rollback: target {target.count()} | source {src.count()}")

    # 3. Blue/green: re-embed with a new model beside the old field, switch, switch back.
    db = DatabaseFactory.create(source_url)
    done = migration.upgrade_model(db, "emb", "emb_v2", new_model)
    print(f"upgrade: embedded={done.embedded} default={migration.default_field(db)}")
    search = VectorTextSynchronizer(db, old_model, embedders=[new_model])
    before = [h.record.id for h in search.search_text("sand and sea", k=3)]
    print(f"served by {search.search_text('sand', k=1).field}")
    migration.switch(db, "emb_v2")
    hits = search.search_text("sand and sea", k=3)
    print(
        f"after switch: served by {hits.field} ({db.vector_fields()[hits.field].dimensions} dims)"
    )
    migration.rollback_upgrade(db)
    again = [h.record.id for h in search.search_text("sand and sea", k=3)]
    served = search.search_text("sand", k=1).field
    print(f"rolled back: served by {served}; same answers: {again == before}")
    db.close()
