"""Writer processes for the two-process tests: real subprocesses writing one store.

A :class:`WriterProcess` runs ``sys.executable -c <script>`` with this package importable (its
``PYTHONPATH`` starts with the directory this copy of :mod:`dataknobs_data` was imported from,
so the child runs the same code as the test). The child opens a :class:`ProcessTarget`'s URL in
the sync or the async shell and reports on stdout, one JSON line per event:

* ``opened``; or ``refused`` (a :class:`~dataknobs_data.errors.StoreLockedError`: its ``holder``
  and message) and exit status 3; or ``error`` (another ``DataknobsDataError``), status 4;
* ``confirmed`` with the ids of each ``create_batch`` after it returned, so the parent knows
  exactly which writes were confirmed when it kills the child;
* ``written`` with the count it then sees, and ``closed`` after ``close()`` returned.

With ``wait`` the child reads one line from stdin after opening and before writing (so two
children write at the same time). Records carry a 4-d vector, so vector
indexes and collections are written too, not only plain rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..database import AsyncDatabase, SyncDatabase
from ..factory import DatabaseFactory
from .adapter import DatabaseLike, Mode, as_blocking

__all__ = ["ProcessTarget", "WriterProcess", "child_env", "kill_rounds", "writer_ids"]

#: status of a child refused by the store's lock / failed with another typed error
REFUSED, FAILED = 3, 4
#: a guard against a hung child (not a speed limit: a healthy run takes seconds)
HANG_GUARD_S = 600

CHILD = r"""
import asyncio, json, os, sys
from dataknobs_data import DatabaseFactory, Record, VectorField
from dataknobs_data.errors import DataknobsDataError, StoreLockedError

def say(event, **kw):
    print(json.dumps({"event": event, "pid": os.getpid(), **kw}), flush=True)

def main():
    cfg = json.loads(sys.argv[1])
    for module in cfg["imports"]:
        __import__(module)
    sync = cfg["mode"] == "sync"
    create = DatabaseFactory.create if sync else DatabaseFactory.create_async
    run = (lambda value: value) if sync else asyncio.new_event_loop().run_until_complete
    try:
        db = create(cfg["url"], **cfg["options"])
    except StoreLockedError as exc:
        say("refused", error=type(exc).__name__, holder=exc.holder, message=str(exc))
        return 3
    except DataknobsDataError as exc:
        say("error", error=type(exc).__name__, message=str(exc))
        return 4
    say("opened")
    if cfg["wait"]:
        sys.stdin.readline()
    prefix, n, batch = cfg["prefix"], cfg["n"], cfg["batch"]
    try:
        for start in range(0, n, batch):
            ids = [f"{prefix}{i:06d}" for i in range(start, min(n, start + batch))]
            records = [
                Record({"n": start + j, "writer": prefix,
                        "v": VectorField([1.0, (start + j) % 7, (start + j) % 3, 0.5])}, id=rid)
                for j, rid in enumerate(ids)
            ]
            run(db.create_batch(records))
            say("confirmed", ids=ids)
        say("written", count=run(db.count()))
        run(db.close())
    except DataknobsDataError as exc:
        say("error", error=type(exc).__name__, message=str(exc))
        return 4
    say("closed")
    return 0

sys.exit(main())
"""


def child_env() -> dict[str, str]:
    """The environment of a child: this one, with this copy of the package first on the path."""
    src = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def writer_ids(prefix: str, n: int) -> list[str]:
    """The ids a writer with ``prefix`` writes, in order."""
    return [f"{prefix}{i:06d}" for i in range(n)]


@dataclass(frozen=True)
class ProcessTarget:
    """One store that several processes open by URL.

    ``exclusive``: the backend allows one process at a time (faiss, chroma: a second opener
    gets :class:`~dataknobs_data.errors.StoreLockedError`); otherwise processes share it
    (SQLite, PostgreSQL). ``imports``: modules a child imports before opening (e.g. the one
    registering a third-party backend's URL scheme). ``options`` go to the factory.
    """

    url: str
    exclusive: bool
    options: Mapping[str, Any] = field(default_factory=dict)
    imports: tuple[str, ...] = ()

    def open(self, mode: Mode) -> DatabaseLike:
        """The store in this process, behind the blocking interface (close it when done)."""
        db: SyncDatabase | AsyncDatabase = (
            DatabaseFactory.create(self.url, **self.options)
            if mode == "sync"
            else DatabaseFactory.create_async(self.url, **self.options)
        )
        return as_blocking(db)


class WriterProcess:
    """A child writing ``n`` records with ids ``<prefix>000000...`` in batches (see the module
    docstring); :attr:`confirmed` collects the ids it confirmed, as they are read."""

    def __init__(
        self,
        target: ProcessTarget,
        mode: Mode,
        prefix: str,
        n: int,
        *,
        batch: int = 10,
        wait: bool = False,
    ) -> None:
        config = {
            "url": target.url,
            "options": dict(target.options),
            "imports": list(target.imports),
            "mode": mode,
            "prefix": prefix,
            "n": n,
            "batch": batch,
            "wait": wait,
        }
        self.prefix = prefix
        self.stderr = ""
        self.confirmed: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )

    @property
    def pid(self) -> int:
        """The child's process id (what a refused opener's error must name)."""
        return self.proc.pid

    def next_event(self) -> dict[str, Any]:
        """The child's next event (an :class:`AssertionError` with its stderr if it ended)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(HANG_GUARD_S)
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"writer {self.prefix} ended ({self.proc.returncode}): {err}")
        event: dict[str, Any] = json.loads(line)
        self.events.append(event)
        if event["event"] == "confirmed":
            self.confirmed.extend(event["ids"])
        return event

    def until(self, *names: str) -> dict[str, Any]:
        """Events up to and including the first one named in ``names``."""
        while True:
            event = self.next_event()
            if event["event"] in names:
                return event
            if event["event"] in ("refused", "error"):
                raise AssertionError(f"writer {self.prefix}: {event}")

    def send(self, line: str = "go") -> None:
        """One line on the child's stdin (a ``wait``ing child goes on when it reads it)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        """Read the child's remaining events and wait for it; its exit status."""
        assert self.proc.stdout is not None
        if self.proc.stdout.closed:  # finished before
            return self.proc.wait(HANG_GUARD_S)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        for line in self.proc.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["event"] == "confirmed":
                self.confirmed.extend(event["ids"])
        status = self.proc.wait(HANG_GUARD_S)
        if self.proc.stderr is not None:
            self.stderr = self.proc.stderr.read()
            self.proc.stderr.close()
        self.proc.stdout.close()
        return status

    def kill(self) -> None:
        """``kill -9`` the child and reap it."""
        self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def __enter__(self) -> WriterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
        else:
            self.finish()


def kill_rounds(
    command: list[str], *, kills: int, max_delay: float, rng: Any, what: str
) -> tuple[int, list[float]]:
    """Run ``command`` ``kills + 1`` times; each of the first ``kills`` runs is SIGKILLed after
    a random delay (``rng.uniform(0, max_delay)``) wherever it is, the last one runs to its end.

    The child prints ``started`` once it is ready and ``done`` when it has finished. Returns
    how many kills landed mid-run and the delays drawn; raises AssertionError naming ``what``
    when a child does not start, fails, or exits without finishing.
    """
    landed = 0
    delays: list[float] = []
    for _ in range(kills + 1):
        # One pipe: communicate() then reads through the buffer readline() filled (with two it
        # reads the raw descriptors and would lose a "done" already buffered).
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env()
        )
        assert proc.stdout is not None
        head = proc.stdout.readline()
        if head.strip() != "started":
            proc.kill()
            raise AssertionError(f"the {what} did not start: {head}{proc.communicate()[0]}")
        if len(delays) < kills:
            delay = rng.uniform(0.0, max_delay)
            delays.append(delay)
            time.sleep(delay)
            if proc.poll() is None:
                proc.kill()  # SIGKILL, wherever the child is
                landed += 1
        out, _ = proc.communicate()
        if proc.returncode == 0 and "done" not in out:
            raise AssertionError(f"the {what} exited without finishing: {out!r}")
        if proc.returncode not in (0, -9):
            raise AssertionError(f"the {what} failed ({proc.returncode}): {out}")
    return landed, delays
