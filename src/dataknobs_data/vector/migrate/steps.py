"""Multi-step work written once, as a generator of blocking steps, run by either shell.

A migration reads pages, checks ids, writes ledger entries and batches, in an order that makes
it resumable; that order is the hard part, so it is written once, as a generator that yields
each backend call as a zero-argument callable (:data:`Step`) and receives its result.
:func:`run_blocking` calls each step (the :class:`~dataknobs_data.database.SyncDatabase`
side); :func:`run_awaiting` runs each in a worker thread with :func:`asyncio.to_thread` (the
:class:`~dataknobs_data.database.AsyncDatabase` side: the event loop never blocks on an
engine). A step that raises has its error thrown into the generator at the ``yield``, so its
``try``/``finally`` blocks run (and may yield clean-up steps) in both shells alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, TypeVar

__all__ = ["Step", "Steps", "run_awaiting", "run_blocking"]

T = TypeVar("T")
#: one blocking backend call, bound to its arguments
Step = Callable[[], Any]
#: a generator of steps that returns ``T``
Steps = Generator[Step, Any, T]


def run_blocking(steps: Steps[T]) -> T:
    """Run ``steps`` in this thread; returns the generator's value."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            value, error = step(), None
        except BaseException as exc:
            value, error = None, exc


async def run_awaiting(steps: Steps[T]) -> T:
    """Run ``steps`` with each step in a worker thread; returns the generator's value."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            value, error = await asyncio.to_thread(step), None
        except BaseException as exc:
            value, error = None, exc
