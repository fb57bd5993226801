"""Crash-safe files for the embedded engines: atomic replace, snapshot generations, a journal.

Three building blocks, each small enough to reason about after a ``kill -9`` at any instruction:

* :func:`write_atomic`: temp file, ``fsync``, ``rename`` over the target, ``fsync`` of the
  directory. A reader sees the old bytes or the new ones, never a mix.
* :class:`Generations`: a snapshot is a directory ``gen-000007/`` written completely (every
  file fsynced) under a temporary name and renamed into place; only then does ``MANIFEST.json``
  (replaced atomically) start naming it. Until that rename the previous generation stays the
  current one, so a crash mid-save reopens the last good snapshot. Older generations and
  half-written temp directories are removed after the switch (or on the next open).
* :class:`Journal`: an append-only file of frames ``magic | length | crc32 | payload``, each
  fsynced before the write call returns. On open, frames are read up to the first torn or
  corrupt one and the file is truncated there: a crash mid-append loses only the write that
  never returned.

Everything is plain bytes, JSON and ``.npy`` (``allow_pickle=False``): nothing here executes
code from disk.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import BackendError

__all__ = [
    "Generations",
    "Journal",
    "frame",
    "fsync_dir",
    "load_npy",
    "npy_bytes",
    "npy_from_bytes",
    "read_frames",
    "write_atomic",
    "write_synced",
]

MANIFEST = "MANIFEST.json"
_FRAME = struct.Struct(">4sQI")
_MAGIC = b"DKJ1"


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (a no-op where directories can't be
    opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform dependent
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write a new file and fsync it (for files inside a directory renamed into place later)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new bytes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_synced(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def npy_bytes(array: npt.NDArray[Any]) -> bytes:
    """``.npy`` bytes of a plain (non-object) array."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def load_npy(path: Path) -> npt.NDArray[Any]:
    """Read an ``.npy`` file without ever unpickling."""
    loaded: npt.NDArray[Any] = np.load(path, allow_pickle=False)
    return loaded


def npy_from_bytes(data: bytes) -> npt.NDArray[Any]:
    """The array of :func:`npy_bytes` output (held in memory, e.g. a frame), never unpickled."""
    loaded: npt.NDArray[Any] = np.load(io.BytesIO(data), allow_pickle=False)
    return loaded


class Generations:
    """Numbered snapshot directories under ``root`` and the manifest naming the current one."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def manifest(self) -> dict[str, Any] | None:
        """The current manifest, or ``None`` when nothing was ever committed here."""
        path = self.root / MANIFEST
        if not path.exists():
            return None
        try:
            data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise BackendError(f"unreadable manifest {path}: {exc}") from exc
        return data

    def current(self) -> tuple[int, Path] | None:
        found = self.manifest()
        if found is None:
            return None
        gen = int(found["generation"])
        return gen, self.dir(gen)

    def dir(self, generation: int) -> Path:
        return self.root / f"gen-{generation:06d}"

    def commit(
        self, write: Callable[[Path], dict[str, Any]], *, keep: Callable[[int], None] | None = None
    ) -> int:
        """Write a new generation with ``write(tmpdir) -> manifest extras`` and switch to it.

        ``write`` must create its files with :func:`write_synced`. ``keep(generation)`` runs
        after the switch (e.g. to start a fresh journal) before old generations are removed.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        current = self.current()
        generation = (current[0] if current else 0) + 1
        tmp = self.root / f".gen-{generation:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        extras = write(tmp)
        fsync_dir(tmp)
        final = self.dir(generation)
        shutil.rmtree(final, ignore_errors=True)  # a leftover of a crash before its manifest
        os.rename(tmp, final)
        fsync_dir(self.root)
        manifest = {"format": 1, "generation": generation, **extras}
        write_atomic(self.root / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
        if keep is not None:
            keep(generation)
        self.clean()
        return generation

    def clean(self) -> None:
        """Remove generations other than the current one and temp leftovers (best effort)."""
        current = self.current()
        keep = current[1].name if current else None
        for entry in self.root.iterdir():
            stale_gen = entry.name.startswith("gen-") and entry.name != keep
            if stale_gen or (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()


def frame(payload: bytes) -> bytes:
    """One journal frame: ``magic | length | crc32 | payload``."""
    return _FRAME.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def read_frames(data: bytes) -> tuple[list[bytes], int]:
    """The payloads of the complete, intact frames at the start of ``data``, and where they end
    (``len(data)`` unless a torn or corrupt frame follows)."""
    frames: list[bytes] = []
    pos = 0
    while pos + _FRAME.size <= len(data):
        magic, length, crc = _FRAME.unpack_from(data, pos)
        start = pos + _FRAME.size
        if magic != _MAGIC or start + length > len(data):
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        frames.append(payload)
        pos = start + length
    return frames, pos


class Journal:
    """Checksummed, fsynced append-only frames (see the module docstring)."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self._fsync = fsync
        new = not path.exists()
        self._fh = open(path, "ab")  # noqa: SIM115 - held open for the journal's lifetime
        self.size = self._fh.tell()
        #: an append failed and its torn frame could not be cut off: later frames would be
        #: unreachable on recovery, so this journal refuses appends (start a new one)
        self.broken = False
        if new and fsync:  # the file's name, not only its frames, must survive a power loss
            fsync_dir(path.parent)

    @staticmethod
    def recover(path: Path) -> list[bytes]:
        """Every complete frame in ``path``; a torn or corrupt tail is cut off the file."""
        if not path.exists():
            return []
        data = path.read_bytes()
        frames, pos = read_frames(data)
        if pos != len(data):
            with open(path, "r+b") as fh:
                fh.truncate(pos)
                fh.flush()
                os.fsync(fh.fileno())
        return frames

    def append(self, payload: bytes) -> None:
        """Add one frame; durable when this returns. If it raises, the file is cut back to
        where it was (a torn frame left in the middle would hide every later frame from
        :meth:`recover`); if even that fails, the journal is :attr:`broken`."""
        if self.broken:
            raise OSError(f"the journal {self.path} is unusable after a failed append")
        try:
            self._fh.write(frame(payload))
            self._fh.flush()
            if self._fsync:
                os.fsync(self._fh.fileno())
        except BaseException:
            self._cut_back()
            raise
        self.size = self._fh.tell()

    def _cut_back(self) -> None:
        try:
            self._fh.seek(self.size)  # drops what is still buffered past it
            self._fh.truncate(self.size)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except (OSError, ValueError):
            self.broken = True

    def close(self) -> None:
        self._fh.close()
