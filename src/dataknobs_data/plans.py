"""Public methods written once, as plans; the blocking and the awaitable shell derived from them.

A *plan* is a method that validates its arguments and returns a prepared
:class:`~dataknobs_data.contract.Call` without running it. Decorated with :class:`Plan` (or
:class:`Pages` for a paged iterator), it holds the method's one signature and one docstring. A
class deriving from :class:`Blocking` gets, for each plan, a plain method that runs the call and
returns its result; a class deriving from :class:`Awaiting` gets a coroutine function that awaits
it through the class's ``_run``. Both are built once, when the class is created, so a call costs
the plan plus one frame; ``inspect.signature`` and ``help()`` show the plan's parameters with the
user's return type (``str``, not ``Call[str]``).

Static types follow the same derivation: ``Plan.__get__`` is overloaded on the instance, so mypy
types ``SyncDatabase.create(...)`` as ``str`` and ``AsyncDatabase.create(...)`` as a coroutine
returning ``str``, with the plan's parameters checked at every call site.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, get_args, overload

from .contract import Call

__all__ = ["Awaiting", "Blocking", "Pages", "Plan"]

P = ParamSpec("P")
T = TypeVar("T")
_Method = Callable[..., Any]


class Blocking:
    """Base of a shell whose plans run to completion: ``db.create(r)`` returns the id."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _derive(cls, "blocking")


class Awaiting:
    """Base of a shell whose plans are coroutine functions, each awaiting :meth:`_run`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _derive(cls, "awaiting")

    async def _run(self, call: Call[T]) -> T:
        """Execute a prepared call without blocking the event loop (the shell decides how)."""
        raise NotImplementedError


class Plan(Generic[P, T]):
    """A public method written once: ``fn`` validates and returns the :class:`Call` to run.

    The overloads of :meth:`__get__` are what mypy sees; at runtime each shell class holds the
    method :func:`_derive` built, so this descriptor is only reached on the plans class itself.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.fn = fn

    @overload
    def __get__(self, obj: None, owner: type[Blocking]) -> Callable[Concatenate[Any, P], T]: ...
    @overload
    def __get__(
        self, obj: None, owner: type[Awaiting]
    ) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Blocking, owner: type[Any] | None = None) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, obj: Awaiting, owner: type[Any] | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Any:
        return self if obj is None else self.fn.__get__(obj, owner)

    def derive(self, kind: str, returns: Any) -> tuple[_Method, Any]:
        """The shell method of this ``kind`` and its return annotation (``Call[T]`` -> ``T``)."""
        fn = self.fn
        (result,) = get_args(returns)
        if kind == "blocking":

            def blocking(self: Any, /, *args: Any, **kwargs: Any) -> Any:
                return fn(self, *args, **kwargs)()

            return blocking, result

        async def awaiting(self: Awaiting, /, *args: Any, **kwargs: Any) -> Any:
            return await self._run(fn(self, *args, **kwargs))

        return awaiting, result


class Pages(Generic[P, T]):
    """A plan whose call yields pages (lists) of items: an iterator of items in the blocking
    shell, an async generator in the awaitable one (each page fetched in a worker thread)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[Concatenate[Any, P], Call[Iterator[list[T]]]]) -> None:
        self.fn = fn

    @overload
    def __get__(
        self, obj: None, owner: type[Blocking]
    ) -> Callable[Concatenate[Any, P], Iterator[T]]: ...
    @overload
    def __get__(
        self, obj: None, owner: type[Awaiting]
    ) -> Callable[Concatenate[Any, P], AsyncIterator[T]]: ...
    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(
        self, obj: Blocking, owner: type[Any] | None = None
    ) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(
        self, obj: Awaiting, owner: type[Any] | None = None
    ) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Any:
        return self if obj is None else self.fn.__get__(obj, owner)

    def derive(self, kind: str, returns: Any) -> tuple[_Method, Any]:
        """The shell generator of this ``kind`` and its return annotation
        (``Call[Iterator[list[T]]]`` -> ``Iterator[T]`` or ``AsyncIterator[T]``)."""
        fn = self.fn
        (pages,) = get_args(returns)
        (page,) = get_args(pages)
        (item,) = get_args(page)
        if kind == "blocking":

            def blocking(self: Any, /, *args: Any, **kwargs: Any) -> Iterator[Any]:
                for page in fn(self, *args, **kwargs)():
                    yield from page

            return blocking, Iterator[item]  # type: ignore[valid-type]

        async def awaiting(self: Awaiting, /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            pages = await self._run(fn(self, *args, **kwargs))
            while (page := await asyncio.to_thread(next, pages, None)) is not None:
                for item in page:
                    yield item

        return awaiting, AsyncIterator[item]  # type: ignore[valid-type]


def _derive(cls: type, kind: str) -> None:
    """Give ``cls`` a method of ``kind`` for every plan it inherits and has no method for."""
    for name in dir(cls):
        plan = inspect.getattr_static(cls, name)
        if isinstance(plan, Plan | Pages):
            signature = inspect.signature(plan.fn, eval_str=True)
            method, result = plan.derive(kind, signature.return_annotation)
            _describe(method, plan.fn, cls, signature.replace(return_annotation=result))
            setattr(cls, name, method)


def _describe(method: _Method, fn: _Method, cls: type, signature: inspect.Signature) -> None:
    """The plan's name, docstring and parameters on the derived method."""
    method.__name__ = fn.__name__
    method.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
    method.__module__ = cls.__module__
    method.__doc__ = fn.__doc__
    method.__signature__ = signature  # type: ignore[attr-defined]
    method.__annotations__ = {
        **{p.name: p.annotation for p in signature.parameters.values() if p.name != "self"},
        "return": signature.return_annotation,
    }
