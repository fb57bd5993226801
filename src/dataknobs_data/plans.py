"""Public methods written once, as plans; the blocking and the awaitable shell derived from them.

A *plan* is a method that validates its arguments and returns a prepared
:class:`~dataknobs_data.contract.Call` without running it. Decorated with :class:`Plan` (or
:class:`Pages` for a paged iterator), it holds the method's one signature and one docstring. A
class deriving from :class:`Blocking` gets, for each plan, a plain method that runs the call and
returns its result; a class deriving from :class:`Awaiting` gets a coroutine function that awaits
it through the class's ``_run``. ``inspect.signature`` and ``help()`` show the plan's parameters
with the user's result type (``str``, not ``Call[str]``).

The derived methods are generated once, when the class is created, with the plan's own
parameter list (as :mod:`dataclasses` generates ``__init__``): a call costs the plan plus one
frame, as a hand-written method calling it would, without packing ``*args``/``**kwargs``.

Static types follow the same derivation: ``Plan.__get__`` is overloaded on the instance, so mypy
types ``SyncDatabase.create(...)`` as ``str`` and ``AsyncDatabase.create(...)`` as a coroutine
returning ``str``, with the plan's parameters checked at every call site.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import (
    Any,
    ClassVar,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Self,
    TypeVar,
    get_args,
    overload,
)

from .contract import Call

__all__ = ["Awaiting", "Blocking", "Pages", "Plan"]

P = ParamSpec("P")
T = TypeVar("T")
Kind = Literal["blocking", "awaiting"]
#: names the generated bodies use; a plan parameter may not take one
_RESERVED = frozenset({"self", "page", "pages", "item"})


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
    method :func:`_derive` generated, so this descriptor is only reached on the plans class.
    """

    __slots__ = ("fn",)
    #: the derived method of each kind; ``{params}`` and ``{args}`` are the plan's
    SOURCE: ClassVar[dict[Kind, str]] = {
        "blocking": "def {name}({params}):\n    return _plan({args})()\n",
        "awaiting": "async def {name}({params}):\n    return await self._run(_plan({args}))\n",
    }

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

    @staticmethod
    def result(returns: Any, kind: Kind) -> Any:
        """The derived method's return annotation: ``Call[T]`` -> ``T`` (a coroutine function
        is annotated with what it returns once awaited)."""
        (result,) = get_args(returns)
        return result


class Pages(Generic[P, T]):
    """A plan whose call yields pages (lists) of items: an iterator of items in the blocking
    shell, an async generator in the awaitable one (each page fetched in a worker thread)."""

    __slots__ = ("fn",)
    SOURCE: ClassVar[dict[Kind, str]] = {
        "blocking": (
            "def {name}({params}):\n    for page in _plan({args})():\n        yield from page\n"
        ),
        "awaiting": (
            "async def {name}({params}):\n"
            "    pages = await self._run(_plan({args}))\n"
            "    while (page := await _asyncio.to_thread(next, pages, None)) is not None:\n"
            "        for item in page:\n"
            "            yield item\n"
        ),
    }

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

    @staticmethod
    def result(returns: Any, kind: Kind) -> Any:
        """``Call[Iterator[list[T]]]`` -> ``Iterator[T]`` or ``AsyncIterator[T]``."""
        (pages,) = get_args(returns)
        (page,) = get_args(pages)
        (item,) = get_args(page)
        return Iterator[item] if kind == "blocking" else AsyncIterator[item]  # type: ignore[valid-type]


def _derive(cls: type, kind: Kind) -> None:
    """Give ``cls`` a method of ``kind`` for every plan it inherits and has no method for."""
    for name in dir(cls):
        plan = inspect.getattr_static(cls, name)
        if isinstance(plan, Plan | Pages):
            setattr(cls, name, _generate(plan, kind, cls))


def _generate(plan: Plan[..., Any] | Pages[..., Any], kind: Kind, cls: type) -> Any:
    """Compile ``plan.SOURCE[kind]`` with the plan's parameters, described as the plan is."""
    fn = plan.fn
    signature = inspect.signature(fn, eval_str=True)
    params, args, namespace = _forwarding(signature)
    source = plan.SOURCE[kind].format(name=fn.__name__, params=params, args=args)
    namespace.update(_plan=fn, _asyncio=asyncio)
    exec(compile(source, f"<{cls.__qualname__}.{fn.__name__}>", "exec"), namespace)
    method = namespace[fn.__name__]
    signature = signature.replace(return_annotation=plan.result(signature.return_annotation, kind))
    method.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
    method.__module__ = cls.__module__
    method.__doc__ = fn.__doc__
    method.__signature__ = signature
    method.__annotations__ = {
        **{p.name: p.annotation for p in signature.parameters.values() if p.name != "self"},
        "return": signature.return_annotation,
    }
    return method


def _forwarding(signature: inspect.Signature) -> tuple[str, str, dict[str, Any]]:
    """The plan's parameter list, the arguments passing each on as it came, and the defaults."""
    params, args, defaults = ["self"], ["self"], {}
    keyword_only = inspect.Parameter.KEYWORD_ONLY
    for p in list(signature.parameters.values())[1:]:
        if p.name in _RESERVED or p.name.startswith("_"):
            raise TypeError(f"plan {signature} may not name a parameter {p.name!r}")
        if p.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, keyword_only):
            raise TypeError(f"plan {signature}: {p.kind.description} parameters aren't derived")
        if p.kind is keyword_only and "*" not in params:
            params.append("*")
        if p.default is p.empty:
            params.append(p.name)
        else:
            defaults[f"_default_{p.name}"] = p.default
            params.append(f"{p.name}=_default_{p.name}")
        args.append(f"{p.name}={p.name}" if p.kind is keyword_only else p.name)
    return ", ".join(params), ", ".join(args), defaults
