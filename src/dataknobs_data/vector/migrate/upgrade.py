"""Blue/green embedding model upgrades, built on :mod:`dataknobs_data.vector.sync`.

1. :func:`upgrade_model` re-embeds the text of a vector field (its stored vectorizing rule
   says which sources and template) with a new embedder into a new vector field, declared with
   the new model and dimensions; a rule with the same sources is stored for the new field, so
   writes keep both fields current while both rules exist. It is a ``bulk_sync`` of the new
   field: resumable (a re-run embeds only what is not current; ``kill -9`` loses at most one
   page). Searches keep being served from the old field: before the new field is declared,
   the old one is stored as the store's *default vector field* (if none was).
2. :func:`switch` makes the new field the default for searches without ``field=``, in one
   ``write_setting`` (one transaction on SQLite and PostgreSQL); every backend reads the
   setting inside each such search, so every process follows at its next search.
3. Switching back (:func:`rollback_upgrade`, or :func:`switch` to the old field) is the
   rollback; :func:`finish` retires the old field's rule once the upgrade is kept.

Text queries go through :meth:`VectorTextSynchronizer.search_text`, which embeds with the
embedder of the rule of the field it searches and names that model in the search, so no query
is ever ranked against the other space's vectors.
"""

from __future__ import annotations

import json
from typing import Any

from ...errors import SchemaError, UnknownFieldError, ValidationError
from ...fields import validate_field_name
from ...schema import DEFAULT_FIELD_SETTING
from ..exceptions import VectorizingRuleError
from ..sync.config import SyncConfig
from ..sync.report import SyncResult
from ..sync.rules import RULE_PREFIX, EmbedderInfo, VectorizingRule
from ..sync.synchronizer import VectorTextSynchronizer
from ..sync.tracker import ChangeTracker, load_rules
from ..types import VectorConfig

__all__ = [
    "UPGRADE_PREFIX",
    "Upgrade",
    "default_field",
    "finish",
    "rollback_upgrade",
    "switch",
    "upgrade_model",
]

#: settings key prefix of the record of an upgrade (``upgrade:<new field>`` -> old field)
UPGRADE_PREFIX = "upgrade:"


def _backend(db: Any) -> Any:
    if not hasattr(db, "_live") or not hasattr(db, "set_tracker"):
        raise ValidationError(f"expected a SyncDatabase or AsyncDatabase, got {type(db).__name__}")
    return db._live()


class Upgrade:
    """The record of one upgrade (``old`` -> ``new``), stored as the setting
    ``upgrade:<new>`` so that any process can roll it back."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def to_json(self) -> str:
        return json.dumps({"from": self.old, "to": self.new}, sort_keys=True)

    @classmethod
    def from_json(cls, new: str, text: str) -> Upgrade:
        try:
            data = json.loads(text)
            return cls(str(data["from"]), str(data["to"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SchemaError(
                f"vector field {new!r}: stored upgrade record is malformed: {exc!r}"
            ) from None

    @classmethod
    def stored(cls, backend: Any) -> list[Upgrade]:
        found = backend.settings(UPGRADE_PREFIX)
        return [cls.from_json(k[len(UPGRADE_PREFIX) :], v) for k, v in sorted(found.items())]


def default_field(db: Any) -> str | None:
    """The store's default vector field (``None`` when unset)."""
    value: str | None = _backend(db).read_setting(DEFAULT_FIELD_SETTING)
    return value


def switch(db: Any, field: str) -> str | None:
    """Make ``field`` the vector field searches without ``field=`` use, in one atomic step;
    returns the previous default. ``field`` must be a declared vector field."""
    backend = _backend(db)
    schema = backend.vector_schema()
    if field not in schema:
        raise UnknownFieldError(field, f"is not a vector field; known: {sorted(schema)}")
    previous: str | None = backend.read_setting(DEFAULT_FIELD_SETTING)
    if previous != field:
        backend.write_setting(DEFAULT_FIELD_SETTING, field)
    return previous


def rollback_upgrade(db: Any) -> str:
    """Switch the default back from an upgraded field to the field it was upgraded from (one
    atomic step); returns the field now the default. Refused (naming the fields) when the
    current default is not the new field of a stored upgrade."""
    backend = _backend(db)
    current = backend.read_setting(DEFAULT_FIELD_SETTING)
    for upgrade in Upgrade.stored(backend):
        if upgrade.new == current:
            switch(db, upgrade.old)
            return upgrade.old
    raise SchemaError(
        f"the default vector field is {current!r}, which is not the new field of any upgrade "
        f"stored ({[f'{u.old}->{u.new}' for u in Upgrade.stored(backend)]}); nothing to roll back"
    )


def finish(db: Any, old_field: str) -> bool:
    """Retire ``old_field`` after an upgrade is kept: remove its vectorizing rule (writes stop
    keeping it current) and the upgrade's record (no rollback to it any more). Its vectors and
    declaration stay. Refused while ``old_field`` is the default vector field. ``False`` when
    there was nothing to remove."""
    backend = _backend(db)
    if backend.read_setting(DEFAULT_FIELD_SETTING) == old_field:
        raise SchemaError(
            f"vector field {old_field!r} is the default vector field: switch to the new field "
            "before finishing the upgrade"
        )
    removed = False
    for upgrade in Upgrade.stored(backend):
        if upgrade.old == old_field:
            backend.write_setting(UPGRADE_PREFIX + upgrade.new, None)
            removed = True
    if old_field in load_rules(backend):
        backend.write_setting(RULE_PREFIX + old_field, None)
        _reinstall(db, backend, db.tracker)
        removed = True
    return removed


def _reinstall(db: Any, backend: Any, previous: Any) -> None:
    """Give ``db`` a tracker of the rules stored now that keeps the embedder, configuration
    and cache of its ``previous`` one (the caller's synchroniser stays attached as it was)."""
    rules = load_rules(backend)
    if not rules:
        db.set_tracker(None)
        return
    db.set_tracker(
        ChangeTracker(
            rules,
            embedder=getattr(previous, "embedder", None),
            config=getattr(previous, "config", None),
            cache=getattr(previous, "cache", None),
        )
    )


def _declare(backend: Any, name: str, config: VectorConfig) -> None:
    existing = backend.vector_schema().get(name)
    if existing is None:
        backend.capabilities().check_dimensions(name, config.dimensions)
        backend.declare_vector_field(name, config)
    elif (existing.dimensions, existing.model_label) != (config.dimensions, config.model_label):
        raise SchemaError(
            f"vector field {name!r} is already declared as {existing.to_dict()}, not for "
            f"{config.model_label} with {config.dimensions} dimensions: choose another new field"
        )


def upgrade_model(
    db: Any,
    field: str,
    new_field: str,
    embedder: Any,
    *,
    batch_size: int = 100,
    spec: str | None = None,
    progress: bool = False,
) -> SyncResult:
    """Re-embed ``field``'s text with ``embedder`` into ``new_field`` (see the module
    docstring); returns what the re-embedding did. Safe to run again after an interruption.

    Refused before anything is stored: ``field`` without a vectorizing rule
    (:class:`VectorizingRuleError`), ``new_field`` equal to ``field``, among the rule's
    sources or declared otherwise (:class:`SchemaError`).
    """
    backend = _backend(db)
    validate_field_name(new_field)
    rules = load_rules(backend)
    rule = rules.get(field)
    if rule is None:
        raise VectorizingRuleError(
            field,
            "has no vectorizing rule, so the text to re-embed is unknown (store one with "
            f"VectorTextSynchronizer.set_rule or add_vectors_to_existing); rules: {sorted(rules)}",
        )
    if new_field == field or new_field in rule.sources:
        raise VectorizingRuleError(
            new_field, f"the new field must differ from {field!r} and its sources"
        )
    schema = backend.vector_schema()
    old = schema.get(field)
    if old is None:
        raise UnknownFieldError(field, f"has a rule but no vectors yet; known: {sorted(schema)}")
    info = EmbedderInfo.of(embedder, spec)
    new_rule = VectorizingRule(
        new_field, rule.sources, info, rule.mode, rule.template, rule.separator
    )
    config = VectorConfig(
        dimensions=info.dimensions,
        metric=old.metric,
        model_name=info.name,
        model_version=info.version,
        source_field=new_rule.source_label,
    )
    # Searches without field= keep going to the old field once there are two.
    if backend.read_setting(DEFAULT_FIELD_SETTING) is None:
        backend.write_setting(DEFAULT_FIELD_SETTING, field)
    _declare(backend, new_field, config)
    previous = db.tracker
    sync = VectorTextSynchronizer(db, embedder, SyncConfig(batch_size=batch_size))
    try:
        sync.set_rule(new_rule, check=False)
        backend.write_setting(UPGRADE_PREFIX + new_field, Upgrade(field, new_field).to_json())
        return sync.bulk_sync(fields=[new_field], progress=progress)
    finally:
        # The re-embedding used its own tracker; ``db`` gets back the embedder it had (writes
        # through it embed for the rules of that embedder and mark the others pending).
        _reinstall(db, backend, previous)
