"""``python -m dataknobs_data.vector.migrate``: move records between backends, verify and roll
back a move, or add vectors to a database that has only text. The flags choose the mode.

Moving (``--target`` given)::

    --source URL --target URL [--filter JSON] [--batch-size N] [--name N] [--dry-run]
    [--verify | --verify-only] [--probes N] [--k N] [--min-recall X] [--rollback]
    [--no-catch-up] [--create-target] [--json] [--progress/--no-progress]

* without ``--dry-run``/``--verify-only``/``--rollback``: copy the records of the source
  matching ``--filter`` into the target
  (:meth:`~dataknobs_data.vector.migrate.VectorMigration.migrate_between_backends`); an
  interrupted copy continues from its checkpoint when the same command is run again;
* ``--verify``: after the copy, compare the two
  (:meth:`~dataknobs_data.vector.migrate.VectorMigration.verify_migration`: counts, a digest of
  every record, ``--probes`` searches of ``--k`` per vector field); ``--verify-only`` compares
  without copying;
* ``--dry-run``: print the plan (counts, schema, estimated size and time); nothing is written;
* ``--rollback``: remove what the migration (``--name``, or the target's only one) wrote to the
  target; the source is never touched.

The target must exist (a SQLite file, like the source), since a misspelt path would otherwise
become a new, empty database that is then "migrated" or "verified"; ``--create-target`` lets a
copy create it. A dry run never creates anything: a missing target is planned as a new, empty
store.

Adding vectors (``--text-fields`` and ``--vector-field`` given)::

    --source URL --text-fields title,content --vector-field embedding [--batch-size 100]
    [--embedder SPEC] [--mode manual|deferred|on_write] [--template T] [--filter JSON] [--json]

stores the vectorizing rule and embeds every record's text
(:meth:`~dataknobs_data.vector.migrate.VectorMigration.add_vectors_to_existing`).

Upgrading an embedding model, blue/green (:mod:`.upgrade_cli`)::

    --source URL --upgrade FIELD --new-field NEW --embedder SPEC [--batch-size N]
    --source URL --switch FIELD | --switch-back | --finish OLD | --default-field

re-embeds ``FIELD``'s text into ``NEW`` while searches stay on ``FIELD``, then makes a field the
default for searches (one atomic step), switches back, retires the old field's rule, or prints
the default.

Output: a summary table, or with ``--json`` one JSON document on stdout; URLs are shown with
their passwords replaced by ``***``. Exit status: ``0`` done (and verified, with ``--verify``),
``1`` verification found differences (or, adding vectors, some texts failed: recorded on their
records; ``vector.sync --auto-fix --retry-failed`` retries them), ``2`` a usage error or a
refusal of the library, ``130`` interrupted: every finished batch is stored and running the
same command again continues, ``141`` the reader of stdout went away.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ...cli import UsageError, positive
from ...database import SyncDatabase
from ...factory import DatabaseFactory, sqlite_target
from ...redaction import redact_url, scrubbed, secrets_of
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
    table,
    wants_progress,
)
from ..sync.rules import MODES
from . import upgrade_cli
from .migration import VectorMigration
from .plan import MigrationPlan
from .result import MigrationResult, RollbackResult
from .verify import VerifyReport

__all__ = ["build_parser", "main"]

PROG = "python -m dataknobs_data.vector.migrate"
#: defaults that depend on the mode (the flags default to ``None`` so misuse can be told)
ADD_BATCH, MOVE_BATCH = 100, 1000
PROBES, K, MIN_RECALL = 20, 10, 0.95
#: flags of one mode only: (attribute, flag)
ADD_ONLY = (("embedder", "--embedder"), ("mode", "--mode"), ("template", "--template"))
MOVE_ONLY = (
    ("name", "--name"),
    ("dry_run", "--dry-run"),
    ("verify", "--verify"),
    ("verify_only", "--verify-only"),
    ("probes", "--probes"),
    ("k", "--k"),
    ("min_recall", "--min-recall"),
    ("rollback", "--rollback"),
    ("no_catch_up", "--no-catch-up"),
    ("create_target", "--create-target"),
)


def non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of both modes (see the module docstring)."""
    parser = Parser(
        prog=PROG,
        description="Move records between backends (--target), verify or roll back a move, or "
        "add vectors to a database that has only text (--text-fields, --vector-field).",
        epilog="exit status: 0 done, 1 verification found differences (or some texts failed), "
        "2 usage error, 130 interrupted (run the same command again to continue)",
    )
    parser.add_argument("--source", required=True, metavar="URL", help="database URL")
    parser.add_argument("--filter", metavar="JSON", help="only the records matching this filter")
    parser.add_argument(
        "--batch-size",
        type=positive,
        metavar="N",
        help=f"records per batch (default {MOVE_BATCH}; adding vectors: texts per embed call, "
        f"default {ADD_BATCH})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: on a terminal)",
    )
    move = parser.add_argument_group("moving records")
    move.add_argument("--target", metavar="URL", help="the database to copy into")
    move.add_argument("--name", metavar="N", help="the migration's name (default: derived)")
    move.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    move.add_argument("--verify", action="store_true", help="verify after copying")
    move.add_argument("--verify-only", action="store_true", help="verify without copying")
    move.add_argument("--probes", type=non_negative, metavar="N", help=f"default {PROBES}")
    move.add_argument("--k", type=positive, metavar="N", help=f"hits per probe (default {K})")
    move.add_argument(
        "--min-recall",
        type=fraction,
        metavar="X",
        help=f"approximate targets (default {MIN_RECALL})",
    )
    move.add_argument("--rollback", action="store_true", help="undo the migration in the target")
    move.add_argument(
        "--no-catch-up", action="store_true", help="skip the final pass over source changes"
    )
    move.add_argument(
        "--create-target", action="store_true", help="create the target if it does not exist"
    )
    add = parser.add_argument_group("adding vectors")
    add.add_argument("--text-fields", metavar="A,B", help="the text fields, in order")
    add.add_argument("--vector-field", metavar="F", help="the vector field")
    add.add_argument("--embedder", metavar="SPEC", help="embedder spec (default: hashing)")
    add.add_argument(
        "--mode", choices=MODES, help="the stored rule's mode for later writes (default: manual)"
    )
    add.add_argument("--template", metavar="T", help='e.g. "{title}\\n\\n{content}"')
    upgrade_cli.add_arguments(parser)
    return parser


def _given(args: argparse.Namespace, flags: Sequence[tuple[str, str]]) -> list[str]:
    return [flag for attr, flag in flags if getattr(args, attr, None) not in (None, False)]


def cmd(args: argparse.Namespace) -> int:
    """Run the mode the flags ask for; the exit status (see the module docstring)."""
    adding = args.text_fields is not None or args.vector_field is not None
    moving = args.target is not None or bool(_given(args, MOVE_ONLY))
    if upgrade_cli.selected(args):
        if adding or moving:
            raise UsageError(
                "--upgrade/--switch/--switch-back/--finish/--default-field: not used together "
                "with --target or --text-fields/--vector-field (one mode per run)"
            )
        return upgrade_cli.run(args)
    if adding and moving:
        flags = ["--target" if args.target is not None else "", *_given(args, MOVE_ONLY)]
        raise UsageError(
            f"{', '.join(f for f in flags if f)}: not used when adding vectors "
            "(--text-fields/--vector-field); moving records and adding vectors are two runs"
        )
    if adding:
        return add_vectors(args)
    if moving:
        return move(args)
    raise UsageError(
        "nothing to do: give --target URL to move records, or --text-fields A,B "
        "--vector-field F to add vectors"
    )


# -- adding vectors -------------------------------------------------------------------------
def add_vectors(args: argparse.Namespace) -> int:
    """Add the vectors and print the summary; ``1`` if some texts failed."""
    if args.text_fields is None or args.vector_field is None:
        missing = "--text-fields A,B" if args.text_fields is None else "--vector-field F"
        raise UsageError(f"adding vectors needs {missing} too")
    fields = names(args.text_fields, "--text-fields")
    condition = parse_filter_arg(args.filter)
    spec = args.embedder or "hashing"
    embedder = build_embedder(spec)
    progress = wants_progress(args.progress) and not args.json
    with open_existing(args.source, "--source") as db:
        result = VectorMigration().add_vectors_to_existing(
            db,
            fields,
            args.vector_field,
            embedder,
            batch_size=args.batch_size or ADD_BATCH,
            template=args.template,
            mode=args.mode or "manual",
            filter=condition,
            progress=progress,
            spec=spec,
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


# -- moving records -------------------------------------------------------------------------
def _check_move(args: argparse.Namespace) -> str:
    """The action (``copy``, ``dry-run``, ``verify-only``, ``rollback``); misplaced flags
    are refused naming them."""
    if args.target is None:
        raise UsageError(f"{_given(args, MOVE_ONLY)[0]} needs --target URL")
    wrong = _given(args, ADD_ONLY)
    if wrong:
        raise UsageError(f"{', '.join(wrong)}: only used when adding vectors (--text-fields)")
    chosen = [f for f in ("--dry-run", "--verify-only", "--rollback") if _given_flag(args, f)]
    if len(chosen) > 1:
        raise UsageError(f"{', '.join(chosen)}: choose one")
    action = chosen[0].removeprefix("--") if chosen else "copy"
    misplaced = {
        "--verify": args.verify and action != "copy",
        "--no-catch-up": args.no_catch_up and action not in ("copy", "dry-run"),
        "--create-target": args.create_target and action not in ("copy", "dry-run"),
        "--filter": args.filter is not None and action == "rollback",
        "--batch-size": args.batch_size is not None and action == "rollback",
    }
    verifying = args.verify or action == "verify-only"
    for attr, flag in (("probes", "--probes"), ("k", "--k"), ("min_recall", "--min-recall")):
        misplaced[flag] = getattr(args, attr) is not None and not verifying
    bad = [flag for flag, wrong_here in misplaced.items() if wrong_here]
    if bad:
        raise UsageError(f"{', '.join(bad)}: not used with {_describe(action)}")
    return action


def _given_flag(args: argparse.Namespace, flag: str) -> bool:
    return bool(getattr(args, flag.removeprefix("--").replace("-", "_")))


def _describe(action: str) -> str:
    return {
        "copy": "a copy without --verify",
        "dry-run": "--dry-run (nothing is copied or verified)",
        "verify-only": "--verify-only (nothing is copied)",
        "rollback": "--rollback",
    }[action]


#: an empty store of the same engine, to plan a dry run against a target that does not exist
_STAND_IN = {"sqlite": "sqlite:///:memory:", "faiss": "faiss://", "chroma": "chroma://"}


def missing_store(url: str) -> str | None:
    """The path of a file-based store (SQLite file, faiss or chroma directory) that does not
    exist, else ``None`` (it exists, or the engine has no local path: memory, a server)."""
    scheme = DatabaseFactory.scheme(url)
    path: str | None
    if scheme == "sqlite":
        path = sqlite_target(url)[0]
        if path == ":memory:" or Path(path).expanduser().is_file():
            return None
        return path
    if scheme == "faiss":
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
    elif scheme == "chroma":
        from ...backends.chroma import chroma_target

        path = chroma_target(url)[0]
    else:
        return None
    return path if path and not Path(path).expanduser().is_dir() else None


def open_store(url: str, flag: str, *, create: bool = False) -> SyncDatabase:
    """Open ``url``; a SQLite file or faiss/chroma directory must exist unless ``create``
    (a misspelt path would otherwise become a new, empty database)."""
    with scrubbed(secrets_of(url)):
        path = None if create else missing_store(url)
        if path is not None:
            hint = " (--create-target creates it)" if flag == "--target" else ""
            raise UsageError(f"{flag}: no {DatabaseFactory.scheme(url)} store at {path!r}{hint}")
        return DatabaseFactory.create(url)


def _open_target(url: str, action: str, create: bool) -> tuple[SyncDatabase, bool]:
    """The target, and whether it is a stand-in: a dry run of a target that does not exist
    yet is planned against an empty in-memory store of the same engine (it creates nothing)."""
    if action == "dry-run":
        with scrubbed(secrets_of(url)):
            if missing_store(url) is not None:
                return DatabaseFactory.create(_STAND_IN[DatabaseFactory.scheme(url)]), True
    return open_store(url, "--target", create=create and action == "copy"), False


def move(args: argparse.Namespace) -> int:
    """Copy, plan, verify or roll back; print the summary; ``1`` if verification failed."""
    action = _check_move(args)
    condition = parse_filter_arg(args.filter)
    progress = wants_progress(args.progress) and not args.json
    shown = {"source": redact_url(args.source), "target": redact_url(args.target)}
    out: dict[str, Any] = {**shown, "action": action}
    tool = VectorMigration()
    with open_store(args.source, "--source") as source:
        target, stand_in = _open_target(args.target, action, args.create_target)
        with target:
            if action == "rollback":
                out["rollback"] = tool.rollback_migration(target, name=args.name)
            elif action in ("copy", "dry-run"):
                done = tool.migrate_between_backends(
                    source,
                    target,
                    filter=condition,
                    batch_size=args.batch_size or MOVE_BATCH,
                    name=args.name,
                    dry_run=action == "dry-run",
                    catch_up=not args.no_catch_up,
                    progress=progress,
                )
                if isinstance(done, MigrationPlan) and stand_in:
                    done.target = shown["target"]
                    done.notes.append("the target does not exist yet: planned as a new store")
                out["plan" if isinstance(done, MigrationPlan) else "migration"] = done
            if args.verify or action == "verify-only":
                out["verify"] = tool.verify_migration(
                    source,
                    target,
                    filter=condition,
                    probes=PROBES if args.probes is None else args.probes,
                    k=args.k or K,
                    min_recall=MIN_RECALL if args.min_recall is None else args.min_recall,
                    progress=progress,
                )
    report: VerifyReport | None = out.get("verify")
    status = EXIT_WORK if report is not None and not report.ok else 0
    if args.json:
        emit(
            {
                **{k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in out.items()},
                "ok": status == 0,
            }
        )
        return status
    print(f"{shown['source']} -> {shown['target']}")
    for key, show in (
        ("plan", _show_plan),
        ("migration", _show_migration),
        ("rollback", _show_rollback),
        ("verify", _show_verify),
    ):
        if key in out:
            show(out[key])
    return status


def _show_plan(plan: MigrationPlan) -> None:
    print(f"dry run of migration {plan.name!r}: nothing was written")
    rows = [
        ["records", plan.records],
        ["to copy", plan.remaining],
        ["batches", plan.batches],
        ["estimated MB", round(plan.estimated_bytes / 2**20, 2)],
        ["estimated seconds", float(plan.estimated_seconds)],
    ]
    print(table(["", "plan"], rows))
    if plan.fields:
        fields = [
            [
                f.name,
                f.config.dimensions,
                f.config.metric.value,
                "declare" if f.declare else "exists",
                "-" if f.index is None else f.index.kind,
            ]
            for f in plan.fields
        ]
        print(table(["vector field", "dims", "metric", "target", "index"], fields))
    _notes(plan.notes)


def _show_migration(result: MigrationResult) -> None:
    print(
        f"migration {result.name!r}"
        + (f", resumed from {result.resumed_from}" if result.resumed_from else "")
    )
    rows = [
        ["read", result.read],
        ["written", result.written],
        ["skipped (already there)", result.skipped_existing],
        ["batches", result.batches],
        ["caught up", result.caught_up],
        ["seconds", float(result.seconds)],
        ["records/s", float(result.records_per_second)],
    ]
    print(table(["", "copy"], rows))
    if result.snapshot:
        print(f"snapshot: {result.snapshot}")
    _notes(result.notes)


def _show_rollback(result: RollbackResult) -> None:
    print(
        f"rolled back migration {result.name!r}: {result.removed} of {result.listed} records "
        f"removed, {len(result.settings_restored)} settings restored, "
        f"{len(result.indexes_dropped)} indexes dropped"
    )
    _notes(result.notes)


def _show_verify(report: VerifyReport) -> None:
    rows = [
        ["source records", report.source_count],
        ["target records", report.target_count],
        ["compared", report.compared],
        ["missing", report.missing_count],
        ["extra", report.extra_count],
        ["different", report.different_count],
    ]
    print(table(["", "verify"], rows))
    for kind in ("missing", "extra", "different"):
        ids: list[str] = getattr(report, kind)
        if ids:
            more = getattr(report, f"{kind}_count") - len(ids)
            print(f"  {kind}: {', '.join(ids)}" + (f" (+{more} more)" if more else ""))
    for rid, fields in report.differences.items():
        print(f"  {rid} differs in {', '.join(fields)}")
    if report.probes:
        probes = [
            [
                p.field,
                p.check,
                p.probes,
                p.k,
                float(p.recall),
                p.mismatched,
                "ok" if p.ok else "FAILED",
            ]
            for p in report.probes.values()
        ]
        print(table(["vector field", "check", "probes", "k", "recall", "mismatched", ""], probes))
        for p in report.probes.values():
            if p.problem:
                print(f"  {p.field}: {p.problem}")
            elif p.mismatched_ids:
                print(f"  {p.field}: probes from {', '.join(p.mismatched_ids)} differ")
    print(f"verify: {'OK' if report.ok else 'FAILED'} in {report.seconds:.2f} s")


def _notes(notes: Sequence[str]) -> None:
    for note in notes:
        print(f"note: {note}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    return run(PROG, build_parser(), cmd, argv)
