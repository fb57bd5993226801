"""``python -m dataknobs_data.vector.migrate``: add vectors to a database that has only text.

``--source URL --text-fields title,content --vector-field embedding [--batch-size 100]
[--embedder SPEC] [--mode manual|deferred|on_write] [--template T] [--filter JSON] [--json]``
stores the vectorizing rule and embeds every record's text
(:meth:`~dataknobs_data.vector.migrate.VectorMigration.add_vectors_to_existing`), with a
progress bar on a terminal and a summary table at the end.

Exit status: ``0`` every vector made, ``1`` some texts failed (recorded on their records; the
``vector.sync`` command with ``--auto-fix --retry-failed`` retries them), ``2`` a usage error
or a refusal of the library, ``130`` interrupted: every finished batch is stored, and running
the same command again continues (records with a current vector are skipped), ``141`` the
reader of stdout went away.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ...cli import positive
from ...redaction import redact_url
from ..sync.cli import (
    EXIT_WORK,
    Parser,
    build_embedder,
    emit,
    names,
    open_existing,
    parse_filter_arg,
    result_table,
    run,
    wants_progress,
)
from ..sync.rules import MODES
from .migration import VectorMigration

__all__ = ["build_parser", "main"]

PROG = "python -m dataknobs_data.vector.migrate"


def build_parser() -> argparse.ArgumentParser:
    """The command line of the migration."""
    parser = Parser(
        prog=PROG,
        description="Add vectors to the records of a database that has text but no vectors.",
        epilog="exit status: 0 done, 1 some texts failed, 2 usage error, 130 interrupted "
        "(run the same command again to continue)",
    )
    parser.add_argument("--source", required=True, metavar="URL", help="database URL")
    parser.add_argument(
        "--text-fields", required=True, metavar="A,B", help="the text fields, in order"
    )
    parser.add_argument("--vector-field", required=True, metavar="F", help="the vector field")
    parser.add_argument("--batch-size", type=positive, default=100, help="texts per embed call")
    parser.add_argument(
        "--embedder", default="hashing", metavar="SPEC", help="embedder spec (default: hashing)"
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="manual",
        help="the stored rule's mode for later writes (default: manual)",
    )
    parser.add_argument("--template", metavar="T", help='e.g. "{title}\\n\\n{content}"')
    parser.add_argument("--filter", metavar="JSON", help="only the records matching this filter")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: on a terminal)",
    )
    return parser


def cmd(args: argparse.Namespace) -> int:
    """Add the vectors and print the summary; ``1`` if some texts failed."""
    fields = names(args.text_fields, "--text-fields")
    condition = parse_filter_arg(args.filter)
    embedder = build_embedder(args.embedder)
    progress = wants_progress(args.progress) and not args.json
    with open_existing(args.source, "--source") as db:
        result = VectorMigration().add_vectors_to_existing(
            db,
            fields,
            args.vector_field,
            embedder,
            batch_size=args.batch_size,
            template=args.template,
            mode=args.mode,
            filter=condition,
            progress=progress,
            spec=args.embedder,
        )
    status = EXIT_WORK if result.failed else 0
    shown = redact_url(args.source)
    if args.json:
        emit({"source": shown, "field": args.vector_field, "result": result.to_dict()})
        return status
    print(
        f"{shown}: {result.records} records read, {args.vector_field!r} from "
        f"{' + '.join(fields)} with {embedder.model_name}@{embedder.model_version}"
    )
    print(result_table({args.vector_field: result}))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    return run(PROG, build_parser(), cmd, argv)
