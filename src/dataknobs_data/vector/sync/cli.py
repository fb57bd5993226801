"""``python -m dataknobs_data.vector.sync``: check, fix and manage vectorizing rules from the shell.

The rules are stored with the data, so the command needs no code: it opens the database,
reads the rules, and checks (``--check-updates``) where every vector stands, optionally
re-embedding what is stale, missing or pending (``--auto-fix``) with the embedder each rule
names (its stored ``embedder.spec``, or ``--embedder``): by ``bulk_sync`` (every record read),
or, with ``--method marks``, by one run of the incremental vectorizer, which drains the pending
marks through their index. ``--set-rule`` / ``--remove-rule`` /
``--list-rules`` manage the rules.

Exit status:

* ``0``: done, and (for ``--check-updates``) every vector is current or has nothing to embed;
* ``1``: ``--check-updates`` found work (stale, missing, pending or failed vectors), or a fix
  left failed texts; run with ``--auto-fix`` (``--retry-failed`` for texts that failed before);
* ``2``: a usage error or a refusal of the library (one line on stderr, never a traceback);
* ``130``: interrupted (Ctrl-C): each finished batch is stored and pending marks are durable,
  so re-running the command continues where it stopped;
* ``141``: the reader of stdout went away (``... | head -1``).

The helpers below (opening a database, building an embedder, the table, the error handling of
:func:`run`) are shared with ``python -m dataknobs_data.vector.migrate``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ...cli import EXIT_BROKEN_PIPE, UsageError, _quiet_stdout, positive
from ...database import SyncDatabase
from ...errors import DataknobsDataError
from ...factory import DatabaseFactory, sqlite_target
from ...query import Filter, parse_filter
from ...redaction import redact_text, redact_url, scrubbed, secrets_of
from ..embedders import Embedder, get_embedder
from .cache import EmbeddingCache
from .config import SyncConfig
from .report import CATEGORIES, SyncReport, SyncResult
from .rules import MODES, EmbedderInfo, VectorizingRule
from .synchronizer import VectorTextSynchronizer
from .vectorizer import IncrementalVectorizer

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "EXIT_WORK", "build_parser", "main", "run"]

PROG = "python -m dataknobs_data.vector.sync"
#: ``--check-updates`` found vectors to (re)make, or failed texts remain
EXIT_WORK = 1
#: a bad command line or a refusal of the library
EXIT_USAGE = 2
#: Ctrl-C: the state left is resumable
EXIT_INTERRUPTED = 130


# -- shared with vector.migrate -------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit status 2 (through :func:`run`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def names(text: str, flag: str) -> list[str]:
    """``"title, body"`` -> ``["title", "body"]``; at least one name."""
    out = [n.strip() for n in text.split(",") if n.strip()]
    if not out:
        raise UsageError(f"{flag}: expected comma-separated field names, got {text!r}")
    return out


def open_existing(url: str, flag: str) -> SyncDatabase:
    """Open the database at ``url``; a SQLite file must already exist (checking or migrating
    a misspelt path would otherwise create an empty database and report it clean)."""
    with scrubbed(secrets_of(url)):
        if DatabaseFactory.scheme(url) == "sqlite":
            path, _ = sqlite_target(url)
            if path != ":memory:" and not Path(path).expanduser().is_file():
                raise UsageError(f"{flag}: no SQLite database at {path!r}")
        return DatabaseFactory.create(url)


def build_embedder(spec: str, flag: str = "--embedder") -> Embedder:
    """:func:`~dataknobs_data.vector.embedders.get_embedder`, its refusals as usage errors."""
    try:
        return get_embedder(spec)
    except (ValueError, ImportError) as exc:  # get_embedder's documented refusals
        raise UsageError(f"{flag}: {exc}") from None


def parse_filter_arg(text: str | None) -> Filter | None:
    """The ``--filter`` JSON (the query language's dict form)."""
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--filter is not valid JSON: {exc}") from None
    return parse_filter(data, "--filter")


def wants_progress(flag: bool | None) -> bool:
    """Progress bars on a terminal by default (tqdm, the ``progress`` extra)."""
    have = importlib.util.find_spec("tqdm") is not None
    if flag is None:
        return have and sys.stderr.isatty()
    if flag and not have:
        raise UsageError('--progress needs tqdm: pip install "dataknobs-data[progress]"')
    return flag


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table: numeric columns right-aligned, text columns left-aligned."""
    numeric = [
        bool(rows) and all(isinstance(row[i], int | float) for row in rows)
        for i in range(len(header))
    ]
    cells = [[str(c) for c in header], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        out = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(out).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def report_table(report: SyncReport) -> str:
    """One row per field: current / stale / missing / pending / failed / empty."""
    rows = [[name, *(getattr(fr, c) for c in CATEGORIES)] for name, fr in report.fields.items()]
    text = table(["field", *CATEGORIES], rows)
    for name, fr in report.fields.items():
        for rid, error in fr.errors.items():
            text += f"\n  {name} failed on {rid}: {error}"
    return text


def result_table(results: Mapping[str, SyncResult]) -> str:
    """One row per field: embedded / cached / written / failed / seconds."""
    header = ["field", "embedded", "cached", "written", "failed", "seconds"]
    rows = [[n, r.embedded, r.cached, r.written, r.failed, r.seconds] for n, r in results.items()]
    text = table(header, rows)
    for name, r in results.items():
        for rid, error in r.errors.items():
            text += f"\n  {name} failed on {rid}: {error}"
    return text


def one_line(text: str) -> str:
    """A message on one line (drivers' messages carry line breaks and indented hints)."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def emit(document: Mapping[str, Any]) -> None:
    """``--json``: the one JSON document on stdout."""
    print(json.dumps(document, indent=2, sort_keys=False))


def run(
    prog: str, parser: argparse.ArgumentParser, command: Callable[[Any], int], argv: Any
) -> int:
    """Parse ``argv`` and run ``command``, turning every expected way out into an exit status
    (see the module docstring)."""
    try:
        args = parser.parse_args(argv)
        status = int(command(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except (UsageError, DataknobsDataError) as exc:
        # Library errors are redacted where raised; this also covers argument echoes.
        print(f"{prog}: error: {one_line(redact_text(str(exc)))}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help exits through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; finished batches are stored and pending marks are durable: "
            "re-run to continue",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE


# -- the sync command -----------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The command line: every action, its options and the exit statuses in the epilog."""
    parser = Parser(
        prog=PROG,
        description="Check and fix the vectors of a database against its vectorizing rules, "
        "and manage the rules.",
        epilog="exit status: 0 clean, 1 work remaining (check without --auto-fix, or failed "
        "texts), 2 usage error, 130 interrupted (re-run to continue)",
    )
    parser.add_argument("--database", "--db", required=True, metavar="URL", help="database URL")
    act = parser.add_mutually_exclusive_group()
    act.add_argument(
        "--check-updates", action="store_true", help="report current/stale/missing/... per field"
    )
    act.add_argument("--set-rule", metavar="FIELD", help="store the rule for a vector field")
    act.add_argument("--remove-rule", metavar="FIELD", help="forget a vector field's rule")
    act.add_argument("--list-rules", action="store_true", help="show the stored rules")
    parser.add_argument(
        "--auto-fix",
        action="store_true",
        help="embed what the check finds (implies the check): bulk_sync, or with --method marks "
        "the incremental vectorizer draining the pending marks",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="with --auto-fix: retry texts that failed"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--method",
        choices=("full", "marks"),
        default="full",
        help="full: hash every record's text (exact whoever wrote the data); marks: read only "
        "the pending/failed marks (fast; exact for data written through this library)",
    )
    parser.add_argument(
        "--field", action="append", metavar="F", help="only this vector field (repeatable)"
    )
    parser.add_argument("--filter", metavar="JSON", help="only the records matching this filter")
    parser.add_argument(
        "--embedder",
        metavar="SPEC",
        help="embedder spec, e.g. hashing:384 (default for --auto-fix: each rule's stored spec)",
    )
    parser.add_argument("--batch-size", type=positive, default=100, help="texts per embed call")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: on a terminal)",
    )
    rule = parser.add_argument_group("--set-rule options")
    rule.add_argument("--sources", metavar="A,B", help="the text fields, in order")
    rule.add_argument("--template", metavar="T", help='e.g. "{title}\\n\\n{body}"')
    rule.add_argument("--mode", choices=MODES, help="when vectors are made (default: deferred)")
    return parser


def _check_options(args: argparse.Namespace) -> str:
    """The action asked for; options that belong to another action are refused."""
    if args.auto_fix and not (args.set_rule or args.remove_rule or args.list_rules):
        args.check_updates = True
    if args.check_updates:
        action = "check"
    elif args.set_rule is not None:
        action = "set"
    elif args.remove_rule is not None:
        action = "remove"
    elif args.list_rules:
        action = "list"
    else:
        raise UsageError(
            "nothing to do: give --check-updates, --set-rule, --remove-rule or --list-rules"
        )
    misplaced = {
        "--auto-fix": args.auto_fix and action != "check",
        "--retry-failed": args.retry_failed and not args.auto_fix,
        "--sources": args.sources is not None and action != "set",
        "--template": args.template is not None and action != "set",
        "--mode": args.mode is not None and action != "set",
        "--field": args.field is not None and action != "check",
        "--filter": args.filter is not None and action != "check",
    }
    bad = [flag for flag, wrong in misplaced.items() if wrong]
    if bad:
        where = "--auto-fix" if bad == ["--retry-failed"] else "this action"
        raise UsageError(f"{', '.join(bad)}: not used with {where}")
    if action == "set":
        if args.sources is None:
            raise UsageError("--set-rule needs --sources A,B")
        if args.embedder is None:
            raise UsageError("--set-rule needs --embedder SPEC (stored with the rule)")
    return action


def cmd(args: argparse.Namespace) -> int:
    """Run the action ``args`` asks for; the exit status (see the module docstring)."""
    action = _check_options(args)
    condition = parse_filter_arg(args.filter)
    progress = wants_progress(args.progress) and not args.json
    config = SyncConfig(batch_size=args.batch_size)
    embedder = None if args.embedder is None else build_embedder(args.embedder)
    with open_existing(args.database, "--database") as db:
        shown = redact_url(args.database)
        if action == "list":
            return _list(db, shown, args.json)
        if action == "remove":
            return _remove(db, shown, args.remove_rule, args.json)
        if action == "set":
            assert embedder is not None
            return _set(db, shown, args, embedder, config)
        return _check(db, shown, args, condition, embedder, config, progress)


def _list(db: SyncDatabase, shown: str, as_json: bool) -> int:
    rules = VectorTextSynchronizer(db).rules
    if as_json:
        emit({"database": shown, "rules": {n: r.to_dict() for n, r in rules.items()}})
        return 0
    if not rules:
        print(f"{shown}: no vectorizing rules")
        return 0
    rows = [
        [
            r.field,
            "+".join(r.sources),
            r.mode,
            f"{r.embedder.label()} ({r.embedder.dimensions} dims)",
            r.embedder.spec or "-",
            "-" if r.template is None else repr(r.template),
        ]
        for r in rules.values()
    ]
    print(f"{shown}: {len(rules)} rule(s)")
    print(table(["field", "sources", "mode", "embedder", "spec", "template"], rows))
    return 0


def _remove(db: SyncDatabase, shown: str, field: str, as_json: bool) -> int:
    sync = VectorTextSynchronizer(db)
    if not sync.remove_rule(field):
        raise UsageError(
            f"--remove-rule: field {field!r} has no vectorizing rule; rules: {sorted(sync.rules)}"
        )
    if as_json:
        emit({"database": shown, "removed": field})
    else:
        print(f"{shown}: removed the rule for {field!r} (its vectors stay)")
    return 0


def _set(
    db: SyncDatabase,
    shown: str,
    args: argparse.Namespace,
    embedder: Embedder,
    config: SyncConfig,
) -> int:
    sync = VectorTextSynchronizer(db, embedder, config)
    rule = sync.rule_for(
        args.set_rule,
        names(args.sources, "--sources"),
        mode=args.mode or "deferred",
        template=args.template,
        spec=args.embedder,
    )
    report = sync.set_rule(rule, check=True)
    assert report is not None
    if args.json:
        emit({"database": shown, "rule": rule.to_dict(), "check": report.to_dict()})
        return 0
    fr = report.fields[rule.field]
    print(
        f"{shown}: rule for {rule.field!r} stored: {' + '.join(rule.sources)} -> "
        f"{rule.embedder.label()} ({rule.embedder.dimensions} dims), mode {rule.mode}"
    )
    print(report_table(report))
    print(f"{fr.needs_work} of {report.records} records now need a vector for {rule.field!r}")
    return 0


def _embedders(
    rules: Sequence[VectorizingRule], given: Embedder | None, spec: str | None
) -> dict[str, Embedder]:
    """field -> the embedder that fixes it, all resolved before anything is embedded."""
    built: dict[str, Embedder] = {}
    out: dict[str, Embedder] = {}
    for rule in rules:
        if given is not None:
            embedder, used = given, spec
        elif rule.embedder.spec is None:
            raise UsageError(
                f"--auto-fix: the rule for {rule.field!r} stores no embedder spec "
                f"(it was made with {rule.embedder.label()}); pass --embedder SPEC"
            )
        else:
            used = rule.embedder.spec
            if used not in built:
                built[used] = build_embedder(used, f"rule {rule.field!r}: embedder spec")
            embedder = built[used]
        have = EmbedderInfo.of(embedder)
        want = rule.embedder
        if (have.name, have.version, have.dimensions) != (want.name, want.version, want.dimensions):
            raise UsageError(
                f"--embedder {used}: makes {have.label()} ({have.dimensions} dims), but the rule "
                f"for {rule.field!r} needs {want.label()} ({want.dimensions} dims)"
            )
        out[rule.field] = embedder
    return out


def _check(
    db: SyncDatabase,
    shown: str,
    args: argparse.Namespace,
    condition: Filter | None,
    embedder: Embedder | None,
    config: SyncConfig,
    progress: bool,
) -> int:
    checker = VectorTextSynchronizer(db, None, config)
    rules = checker._selected(args.field)
    if not rules:
        if args.json:
            emit({"database": shown, "rules": 0, "clean": True})
        else:
            print(f"{shown}: no vectorizing rules (add one with --set-rule)")
        return 0
    fields = [r.field for r in rules]
    fixers = _embedders(rules, embedder, args.embedder) if args.auto_fix else {}
    before = checker.check(condition, fields=fields, method=args.method, progress=progress)
    fixed: dict[str, SyncResult] | None = None
    after: SyncReport | None = None
    how: str | None = None
    if args.auto_fix:
        drain = _drains(args, condition, fields, checker, fixers)
        how = "vectorizer" if drain else "bulk_sync"
        fixed = _fix(db, rules, fixers, condition, args.retry_failed, drain, config, progress)
        after = checker.check(condition, fields=fields, method=args.method)
    final = after or before
    status = 0 if final.clean else EXIT_WORK
    if args.json:
        emit(
            {
                "database": shown,
                "method": args.method,
                "check": before.to_dict(),
                "fix": None if fixed is None else {n: r.to_dict() for n, r in fixed.items()},
                "fixed_by": how,
                "after": None if after is None else after.to_dict(),
                "clean": final.clean,
            }
        )
        return status
    print(f"{shown}: {before.records} records, {before.method} check in {before.seconds:.2f} s")
    print(report_table(before))
    if fixed is not None and after is not None:
        seconds = sum(r.seconds for r in fixed.values())
        print(f"\nauto-fix ({how}) in {seconds:.2f} s")
        print(result_table(fixed))
        print(f"\nafter the fix ({after.method} check in {after.seconds:.2f} s)")
        print(report_table(after))
    print(_verdict(final, fixed is not None))
    return status


def _drains(
    args: argparse.Namespace,
    condition: Filter | None,
    fields: Sequence[str],
    checker: VectorTextSynchronizer,
    fixers: Mapping[str, Embedder],
) -> bool:
    """Whether the fix can trust the marks: ``--method marks`` over every rule, unfiltered,
    one embedder, no failed texts to retry. Then the incremental vectorizer drains the pending
    marks (their index, not a scan); otherwise ``bulk_sync`` reads every record."""
    return (
        args.method == "marks"
        and condition is None
        and not args.retry_failed
        and set(fields) == set(checker.rules)
        and len({id(e) for e in fixers.values()}) == 1
    )


def _fix(
    db: SyncDatabase,
    rules: Sequence[VectorizingRule],
    fixers: Mapping[str, Embedder],
    condition: Filter | None,
    retry_failed: bool,
    drain: bool,
    config: SyncConfig,
    progress: bool,
) -> dict[str, SyncResult]:
    """Embed what is stale, missing or pending: per field with ``bulk_sync``, or all fields
    at once with one run of the incremental vectorizer (``drain``, see :func:`_drains`)."""
    cache = EmbeddingCache()
    if drain:
        vectorizer = IncrementalVectorizer(db, fixers[rules[0].field], config, cache=cache)
        return {"+".join(r.field for r in rules): vectorizer.run_once(progress=progress)}
    fixed = {}
    for rule in rules:
        sync = VectorTextSynchronizer(db, fixers[rule.field], config, cache=cache)
        fixed[rule.field] = sync.bulk_sync(
            condition, fields=[rule.field], retry_failed=retry_failed, progress=progress
        )
    return fixed


def _verdict(report: SyncReport, fixed: bool) -> str:
    if report.clean:
        return "clean: every vector is current"
    work = sum(f.needs_work for f in report.fields.values())
    failed = sum(f.failed for f in report.fields.values())
    parts = []
    if work:
        parts.append(f"{work} vector(s) to (re)make")
    if failed:
        parts.append(f"{failed} failed text(s) (recorded in _dk_failed)")
    hint = "--auto-fix --retry-failed retries failed texts" if fixed else "run with --auto-fix"
    return f"work remaining: {', '.join(parts)}; {hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    return run(PROG, build_parser(), cmd, argv)
