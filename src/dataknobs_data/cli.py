"""``dataknobs-data``: search, load and inspect a store from the shell.

Plain :mod:`argparse` so the CLI runs wherever ``pip install dataknobs-data`` does. The work is
in :mod:`dataknobs_data.pipeline`; this module parses arguments and formats output. User errors
(bad arguments, a filter the library refuses, an unknown backend) print one line on stderr and
exit with status 2: a traceback would hide the one sentence that matters.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from .database import SyncDatabase
from .errors import DataknobsDataError, UnknownFieldError
from .factory import DatabaseFactory, sqlite_target
from .pipeline import (
    CORPORA,
    DEFAULT_VECTOR_FIELD,
    IngestReport,
    corpus_filter,
    ensure_corpus,
    progress_bar,
    read_manifest,
)
from .query import Filter, filter_to_dict, parse_filter
from .redaction import redact_text, redact_url, scrubbed, secrets_of
from .vector.embedders import Embedder, get_embedder
from .vector.types import DistanceMetric

__all__ = ["main"]

PROG = "dataknobs-data"


def default_db() -> str:
    """``$DATAKNOBS_DB``, else a SQLite file in the user's cache directory when the ``sqlite``
    extra is installed (so the second search reuses the stored vectors), else ``memory://``."""
    configured = os.environ.get("DATAKNOBS_DB")
    if configured:
        return configured
    if not any(b.scheme == "sqlite" and b.available for b in DatabaseFactory.backends()):
        return "memory://"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return f"sqlite:///{cache / 'dataknobs-data' / 'stdlib.db'}"


def _open(url: str) -> SyncDatabase:
    """Open the store, creating the folder of a SQLite file on first use (errors scrubbed of
    the URL's secrets, as the factory's are)."""
    with scrubbed(secrets_of(url)):
        if DatabaseFactory.scheme(url) == "sqlite":
            try:
                path, _ = sqlite_target(url)
            except ValueError as exc:  # a malformed query string (the factory says it typed)
                if isinstance(exc, DataknobsDataError):
                    raise
                raise UsageError(f"--db: malformed sqlite URL {redact_url(url)!r}") from None
            if path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return DatabaseFactory.create(url)


class UsageError(Exception):
    """A bad command line, reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print the usage block and exit; we want one line and a return code.
        command = self.prog.removeprefix(PROG).strip()
        raise UsageError(f"{command}: {message}" if command else message)


def positive(text: str) -> int:
    """argparse type: an integer >= 1 (shared by the package's commands)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    store = _Parser(add_help=False)
    store.add_argument(
        "--db",
        default=default_db(),
        help="database URL (default: $DATAKNOBS_DB, else a SQLite file in the cache); keep the "
        "password out of it: PGPASSWORD, ~/.pgpass or a service file work (docs/security.md)",
    )
    corpus = _Parser(add_help=False)
    corpus.add_argument(
        "--embedder", default="hashing:1024", help="embedder spec (default: hashing:1024)"
    )
    corpus.add_argument("--corpus", default="stdlib", choices=sorted(CORPORA))
    corpus.add_argument("--limit", type=positive, help="ingest only the first N documents")
    corpus.add_argument("--batch-size", type=positive, default=256, help="docs per embed call")
    corpus.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    parser = _Parser(prog=PROG, description="Typed records with vector search.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    search = sub.add_parser(
        "search", parents=[store, corpus], help="semantic search (ingests the corpus if needed)"
    )
    search.add_argument("query")
    search.add_argument("-k", type=positive, default=10, help="number of hits (default: 10)")
    search.add_argument(
        "--filter", help='JSON filter, e.g. {"field":"kind","op":"=","value":"class"}'
    )
    search.add_argument("--metric", help="distance metric (default: the field's)")
    search.add_argument("--json", action="store_true", help="machine-readable output")
    ingest = sub.add_parser("ingest", parents=[store, corpus], help="load and embed a corpus")
    ingest.add_argument("--force", action="store_true", help="re-embed documents already stored")
    sub.add_parser("backends", help="list backends and whether they can run here")
    sub.add_parser("info", parents=[store], help="record count and vector fields of a store")
    return parser


def _embedder(spec: str) -> Embedder:
    try:
        return get_embedder(spec)
    except (ValueError, ImportError) as exc:  # get_embedder's documented refusals
        raise UsageError(f"--embedder: {exc}") from None


def _filter(text: str | None, corpus: str) -> tuple[Filter | None, Filter]:
    """The user's filter (for display) and the filter to run (scoped to the corpus)."""
    if text is None:
        return None, corpus_filter(corpus)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--filter is not valid JSON: {exc}") from None
    user = parse_filter(data, "--filter")
    try:
        return user, corpus_filter(corpus, user)
    except UnknownFieldError as exc:
        raise UsageError(f"--filter: {exc}") from None


def _load(
    db: SyncDatabase, embedder: Embedder, args: argparse.Namespace, *, announce: bool
) -> IngestReport:
    with progress_bar(args.limit, f"embedding {args.corpus}", enabled=not args.quiet) as tick:
        report = ensure_corpus(
            db,
            embedder,
            corpus=args.corpus,
            limit=args.limit,
            batch_size=args.batch_size,
            force=getattr(args, "force", False),
            progress=tick,
        )
    if announce and not args.quiet and not report.skipped:
        print(
            f"{report.processed} {args.corpus} docs ({report.embedded} embedded) in "
            f"{report.seconds:.2f} s: {report.docs_per_second:.0f} docs/s",
            file=sys.stderr,
        )
    return report


def _summary(body: str) -> str:
    return body.strip().split("\n", 1)[0].strip()


def cmd_search(args: argparse.Namespace) -> int:
    if not args.query.split():
        # An empty query embeds to a vector about nothing; its "hits" would look confident.
        raise UsageError(f"search: the query needs at least one word, got {args.query!r}")
    embedder = _embedder(args.embedder)
    # Refuse a bad filter or metric before the slow ingest, not after it.
    user_filter, where = _filter(args.filter, args.corpus)
    metric = DistanceMetric.parse(args.metric) if args.metric is not None else None
    with _open(args.db) as db:
        _load(db, embedder, args, announce=True)
        hits = db.vector_search(
            embedder.embed_one(args.query),
            field=DEFAULT_VECTOR_FIELD,
            k=args.k,
            metric=metric,
            filter=where,
            model=f"{embedder.model_name}@{embedder.model_version}",
        )
    rows = [
        {
            "rank": h.rank,
            "score": h.score,
            "distance": h.distance,
            "id": h.id,
            "module": h.record.get("module"),
            "kind": h.record.get("kind"),
            "summary": _summary(h.record.get("body") or ""),
        }
        for h in hits
    ]
    if args.json:
        out = {
            "query": args.query,
            "db": redact_url(args.db),
            "model": f"{embedder.model_name}@{embedder.model_version}",
            "filter": filter_to_dict(user_filter) if user_filter is not None else None,
            "hits": rows,
        }
        print(json.dumps(out, indent=2))
        return 0
    if not rows:
        print("no hits", file=sys.stderr)
        return 0
    id_width = min(max(len(r["id"]) for r in rows), 48)
    width = shutil.get_terminal_size((120, 24)).columns
    room = max(width - id_width - 16, 20)
    print(f"{'rank':>4}  {'score':>6}  {'id':<{id_width}}  first line of docstring")
    for r in rows:
        text = r["summary"] if len(r["summary"]) <= room else r["summary"][: room - 3] + "..."
        print(f"{r['rank']:>4}  {r['score']:>6.4f}  {r['id']:<{id_width}}  {text}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    embedder = _embedder(args.embedder)
    with _open(args.db) as db:
        report = _load(db, embedder, args, announce=False)
    if report.skipped:
        shown = redact_url(args.db)
        print(f"{shown} already holds {report.docs} {args.corpus} docs; nothing to do")
    else:
        print(
            f"{report.docs} {args.corpus} docs in {redact_url(args.db)}: "
            f"{report.embedded} embedded, "
            f"{report.processed} read in {report.seconds:.2f} s "
            f"({report.docs_per_second:.0f} docs/s)"
        )
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    infos = DatabaseFactory.backends()
    width = max(len("scheme"), *(len(i.scheme) for i in infos))
    print(f"{'scheme':<{width}}  available  detail")
    for info in infos:
        print(f"{info.scheme:<{width}}  {'yes' if info.available else 'no':<9}  {info.detail}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args.db) as db:
        print(f"db: {redact_url(args.db)}")
        print(f"records: {db.count()}")
        for name in sorted(CORPORA):
            manifest = read_manifest(db, name)
            if manifest is not None:
                state = "complete" if manifest.complete else "partial"
                print(
                    f"corpus {name}: {manifest.docs} docs ({state}), "
                    f"{manifest.model_name}@{manifest.model_version} in field {manifest.field!r}"
                )
        fields = db.vector_fields()
        print(f"vector fields: {len(fields)}")
        for fname, cfg in sorted(fields.items()):
            print(
                f"  {fname}: {cfg.dimensions} dims, {cfg.metric.value}, "
                f"model {cfg.model_label or '(unnamed)'}, source {cfg.source_field or '-'}"
            )
    return 0


COMMANDS: dict[str, Any] = {
    "search": cmd_search,
    "ingest": cmd_ingest,
    "backends": cmd_backends,
    "info": cmd_info,
}


#: exit status of a command whose reader went away (128 + SIGPIPE), as a shell reports it
EXIT_BROKEN_PIPE = 141


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone, and Python's final flush of the
    buffered remainder would otherwise print a second ``BrokenPipeError`` at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (e.g. captured in tests)
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 user error, 130 interrupted, 141 when the
    reader of stdout closed it early, as ``dataknobs-data search ... | head -1`` does)."""
    try:
        args = build_parser().parse_args(argv)
        status = int(COMMANDS[args.command](args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except (UsageError, DataknobsDataError) as exc:
        # Library errors are redacted where raised; this also covers argument echoes.
        print(f"{PROG}: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (run ingest again to resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Quietly, like any Unix filter whose reader stopped reading: no traceback.
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
