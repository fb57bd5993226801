"""A migration's bookkeeping in the target's settings: its state, checkpoint and ledger.

Why in the target: the target is what a migration changes, so what it must undo (the ids it
created, the settings it overwrote) and where it stopped travel with the data, are seen by any
process that opens it, and go with it when the target is dropped. The source is only read.

Every key starts with ``migration:<name>:`` (:func:`prefix`):

- ``state``: JSON (:class:`MigrationState`): status, checkpoint (the last source id copied, in id
  order, as of the end of the last copy), the redacted source URL, the filter, batch size and
  counts; written when a run starts, when its copy ends and when it is done;
- ``written:<seq>``: one per batch (:class:`LedgerEntry`): the ids the batch created in the
  target (those not already there) and the checkpoint before it, written *before* the batch, so
  a kill between the two leaves an entry naming ids that may not exist (rollback skips them)
  and never a written id without an entry; it is also the batch's checkpoint (one settings write
  per batch). ``seq`` only grows, so a re-run never overwrites an entry;
- ``prior``: JSON ``{setting key: value before the migration or null}`` for every setting the
  migration overwrote or added, recorded before the first overwrite;
- ``indexes``: JSON list of the vector fields whose index the migration built;
- ``probe``: set and removed again at the start (the same-store check).

Settings of the source under :data:`NOT_COPIED` (other migrations' bookkeeping, leases, claims)
are never copied. Pure: no engine is touched here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from ..exceptions import MigrationError

__all__ = [
    "KEY_PREFIX",
    "NOT_COPIED",
    "LedgerEntry",
    "MigrationState",
    "copied_settings",
    "later",
    "resume_candidates",
    "default_name",
    "key",
    "migration_names",
    "prefix",
    "written_key",
]

#: every key a migration writes in the target starts with this
KEY_PREFIX: Final = "migration:"
#: setting prefixes never copied from the source: bookkeeping of migrations, leases, claims
NOT_COPIED: Final = (KEY_PREFIX, "lease:", "claim:")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_SEQ_WIDTH: Final = 8


def check_name(name: str) -> str:
    """A migration name: 1-64 letters, digits, ``_``, ``.``, ``-`` (it is part of keys)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise MigrationError(
            f"migration name {name!r} must be 1-64 letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def default_name(source_url: str | None, filter_json: str | None) -> str:
    """The name of a migration nobody named: a digest of the (redacted) source URL and the
    filter, so running the same command again finds its own bookkeeping."""
    text = json.dumps([source_url, filter_json])
    return "m-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def prefix(name: str) -> str:
    """``migration:<name>:``, the prefix of every key of one migration."""
    return f"{KEY_PREFIX}{check_name(name)}:"


def key(name: str, part: str) -> str:
    """One key of migration ``name`` (``state``, ``prior``, ``indexes``, ``probe``)."""
    return prefix(name) + part


def written_key(name: str, seq: int) -> str:
    """The ledger key of the ``seq``-th batch (zero-padded, so keys sort in order)."""
    return f"{prefix(name)}written:{seq:0{_SEQ_WIDTH}d}"


def ledger_seq(name: str, setting: str) -> int | None:
    """The sequence number of a ledger key of ``name`` (``None`` for another key)."""
    start = f"{prefix(name)}written:"
    tail = setting[len(start) :] if setting.startswith(start) else ""
    return int(tail) if tail.isdigit() else None


def migration_names(settings: Iterable[str]) -> list[str]:
    """The names of the migrations whose keys are among ``settings`` (sorted)."""
    names = {k[len(KEY_PREFIX) :].split(":", 1)[0] for k in settings if k.startswith(KEY_PREFIX)}
    return sorted(names)


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger entry: the ``ids`` a batch created in the target (those it did not hold).

    A batch of the copy also names the checkpoint before it (``after``, ``None`` at the
    start) and its last source id (``last``): the newest copy entry is the only batch that
    may not have been written when the process died, so a re-run continues from its
    ``after`` (sending at most that one batch again). Entries of the catch-up pass have
    ``kind="catch_up"`` and no checkpoint.
    """

    ids: list[str]
    after: str | None = None
    last: str | None = None
    kind: str = "copy"

    def encode(self) -> str:
        """``z:`` + base64 of zlib-compressed JSON: sorted ids with common prefixes shrink to
        a few bytes each, so a ledger of many batches stays small."""
        data = {"ids": self.ids, "after": self.after, "last": self.last, "kind": self.kind}
        raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return "z:" + base64.b64encode(zlib.compress(raw, 6)).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> LedgerEntry:
        """The entry :meth:`encode` stored."""
        try:
            if not text.startswith("z:"):
                raise ValueError("no 'z:' prefix")
            data = json.loads(zlib.decompress(base64.b64decode(text[2:])).decode("utf-8"))
            ids = data["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError("ids is not a list of ids")
            return cls(ids, data.get("after"), data.get("last"), str(data.get("kind", "copy")))
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise MigrationError(f"unreadable migration ledger entry {text[:40]!r}: {exc}") from exc


def copied_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """The source settings a migration copies: all but :data:`NOT_COPIED`."""
    return {k: v for k, v in settings.items() if not k.startswith(NOT_COPIED)}


@dataclass
class MigrationState:
    """What ``migration:<name>:state`` holds (JSON): where a migration stands.

    ``status`` is ``copying`` (batches being copied), ``copied`` (every batch copied, the
    catch-up pass and the index build may remain) or ``done``.
    """

    name: str
    source: str | None
    filter: str | None
    batch_size: int
    status: str = "copying"
    checkpoint: str | None = None
    read: int = 0
    written: int = 0
    skipped_existing: int = 0
    batches: int = 0
    caught_up: int = 0
    runs: int = 0
    started: str = ""
    updated: str = ""
    snapshot: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The stored text."""
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> MigrationState:
        """Parse a stored state (unknown keys of a later version are ignored)."""
        try:
            data: dict[str, Any] = json.loads(text)
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            return cls(**known)
        except (ValueError, TypeError) as exc:
            raise MigrationError(f"unreadable migration state {text[:60]!r}: {exc}") from exc


def resume_candidates(
    name: str, state: MigrationState | None, settings: Mapping[str, str]
) -> tuple[str | None, LedgerEntry | None]:
    """Where a run of migration ``name`` may start: the state's checkpoint (``None``: from
    the beginning) and, when the last run died while copying, its newest copy entry: that
    batch was written if all its ids are in the target (continue after its ``last``), else
    not (continue after its ``after``); no other batch can be in doubt."""
    if state is None:
        return None, None
    if state.status != "copying":
        return state.checkpoint, None
    seqs = sorted(
        ((s, k) for k in settings if (s := ledger_seq(name, k)) is not None), reverse=True
    )
    for _, setting in seqs:
        entry = LedgerEntry.decode(settings[setting])
        if entry.kind == "copy":
            return state.checkpoint, entry
    return state.checkpoint, None


def later(a: str | None, b: str | None) -> str | None:
    """The later of two checkpoints in id (code point) order; ``None`` is the start."""
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)
