"""The model-upgrade flags of ``python -m dataknobs_data.vector.migrate``.

* ``--source URL --upgrade FIELD --new-field NEW --embedder SPEC [--batch-size N]``:
  re-embed ``FIELD``'s text with the embedder ``SPEC`` into ``NEW`` while searches stay on
  ``FIELD`` (:func:`.upgrade.upgrade_model`); run it again after an interruption to continue;
* ``--source URL --switch FIELD``: make ``FIELD`` the default vector field, in one step;
* ``--source URL --switch-back``: roll the last switch back (:func:`.upgrade.rollback_upgrade`);
* ``--source URL --finish OLD``: retire ``OLD``'s rule once the upgrade is kept;
* ``--source URL --default-field``: print the default vector field.

The migration command owns the parser: it calls :func:`add_arguments` on it, and
:func:`run` when :func:`selected` says an upgrade flag was given. ``--embedder``,
``--batch-size``, ``--json`` and ``--progress`` are the command's shared flags (read here with
defaults when a parser lacks them). Exit status: ``0`` done, ``1`` some texts failed during
the re-embedding (recorded on their records), ``2`` a usage error or a refusal.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ...cli import UsageError, positive
from ...redaction import redact_url
from ..sync.cli import (
    EXIT_WORK,
    Parser,
    build_embedder,
    emit,
    open_existing,
    result_table,
    wants_progress,
)
from ..sync.cli import run as run_command
from . import upgrade

__all__ = ["add_arguments", "build_parser", "main", "run", "selected"]

PROG = "python -m dataknobs_data.vector.migrate"
_MODES = ("upgrade", "switch", "switch_back", "finish", "default_field")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the upgrade flags (not ``--source``, ``--embedder``, ``--batch-size``, ``--json``,
    ``--progress``: the command has those)."""
    group = parser.add_argument_group("model upgrade (blue/green)")
    group.add_argument("--upgrade", metavar="FIELD", help="re-embed FIELD's text into --new-field")
    group.add_argument("--new-field", metavar="NEW", help="the vector field --upgrade fills")
    group.add_argument(
        "--switch", metavar="FIELD", help="make FIELD the default vector field for searches"
    )
    group.add_argument(
        "--switch-back",
        action="store_true",
        help="switch the default back to the field the current one was upgraded from",
    )
    group.add_argument("--finish", metavar="OLD", help="retire OLD's rule after an upgrade")
    group.add_argument(
        "--default-field", action="store_true", help="print the default vector field"
    )


def selected(args: argparse.Namespace) -> bool:
    """Whether the command line asks for an upgrade action."""
    return any(getattr(args, name, None) for name in _MODES)


def _mode(args: argparse.Namespace) -> str:
    chosen = [name for name in _MODES if getattr(args, name, None)]
    if len(chosen) != 1:
        flags = ", ".join("--" + n.replace("_", "-") for n in chosen)
        raise UsageError(f"choose one of --upgrade, --switch, --switch-back, --finish: {flags}")
    if chosen[0] == "upgrade" and not args.new_field:
        raise UsageError("--upgrade needs --new-field NEW")
    if chosen[0] != "upgrade" and getattr(args, "new_field", None):
        raise UsageError("--new-field goes with --upgrade")
    if not getattr(args, "source", None):
        raise UsageError("--source URL is required")
    return chosen[0]


def run(args: argparse.Namespace) -> int:
    """Do what the flags ask and print it (one JSON document with ``--json``)."""
    mode = _mode(args)
    as_json = bool(getattr(args, "json", False))
    shown = redact_url(args.source)
    if mode == "upgrade":
        spec = getattr(args, "embedder", None) or "hashing"
        embedder = build_embedder(spec)
    with open_existing(args.source, "--source") as db:
        if mode == "upgrade":
            progress = wants_progress(getattr(args, "progress", None)) and not as_json
            result = upgrade.upgrade_model(
                db,
                args.upgrade,
                args.new_field,
                embedder,
                batch_size=getattr(args, "batch_size", None) or 100,
                spec=spec,
                progress=progress,
            )
            default = upgrade.default_field(db)
            if as_json:
                doc = {"source": shown, "field": args.upgrade, "new_field": args.new_field}
                emit({**doc, "default_field": default, "result": result.to_dict()})
            else:
                print(
                    f"{shown}: {args.upgrade!r} re-embedded into {args.new_field!r} with "
                    f"{embedder.model_name}@{embedder.model_version}; searches still use "
                    f"{default!r} (switch with --switch {args.new_field})"
                )
                print(result_table({args.new_field: result}))
            return EXIT_WORK if result.failed else 0
        if mode == "default_field":
            before = after = upgrade.default_field(db)
        elif mode == "switch":
            before, after = upgrade.switch(db, args.switch), args.switch
        elif mode == "switch_back":
            before = upgrade.default_field(db)
            after = upgrade.rollback_upgrade(db)
        else:
            before = after = upgrade.default_field(db)
            removed = upgrade.finish(db, args.finish)
    if as_json:
        doc = {"source": shown, "action": mode, "previous": before, "default_field": after}
        if mode == "finish":
            doc["removed"] = removed
        emit(doc)
    elif mode == "finish":
        what = "retired" if removed else "had nothing to retire"
        print(f"{shown}: {args.finish!r} {what}; default vector field {after!r}")
    elif mode == "default_field":
        print(f"{shown}: default vector field {after!r}")
    else:
        print(f"{shown}: default vector field {before!r} -> {after!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A parser of the upgrade flags alone with the command's shared ones (what the
    migration command's own parser holds besides its other modes)."""
    parser = Parser(prog=PROG, description="Upgrade a vector field to a new embedding model.")
    parser.add_argument("--source", required=True, metavar="URL", help="database URL")
    parser.add_argument("--embedder", default="hashing", metavar="SPEC", help="embedder spec")
    parser.add_argument("--batch-size", type=positive, default=100, help="texts per embed call")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` with :func:`build_parser` and :func:`run` it, errors as exit statuses."""
    return run_command(PROG, build_parser(), run, argv)
