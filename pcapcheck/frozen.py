"""Cheaper building and pickling of frozen slots dataclasses (the results, and objects made per conversation).

The results are frozen dataclasses with slots. ``dataclasses`` gives such a class an ``__init__`` that sets
each field with ``object.__setattr__`` (the class's own ``__setattr__`` refuses), and pickles it through
``_dataclass_getstate`` / ``_dataclass_setstate``, Python functions that call ``fields()`` on every object. A
short conversation builds about 130 fields' worth of them (its result, messages, exchange, findings, end facts),
and a result is pickled and loaded again when its page is provisional (``report.html_report``).

``fast_frozen`` replaces those three methods with ones generated once per class (as ``dataclasses`` generates
its own), with the fields unrolled: ``__init__`` stores through the slots' descriptors (the same checks-free
store ``object.__setattr__`` ends in, without its lookup: 22 fields 4.2 -> 1.8 us), ``__getstate__`` returns
the values as a tuple, ``__setstate__`` stores them back. The objects, their equality, hash, repr and
frozenness are those of the dataclass; pickles hold the class and the values in field order.

``frozen_builder`` is cheaper still, for the few hot spots that build many objects: a class with the same slots
that is not frozen. ``frozen_maker`` wraps it in a generated function taking the fields in order (start lines,
header framing, TCP options); the header-field loop uses the builder inline, saving the call.

A class compiled by mypyc (``make install``: setup.py) is built natively and has no ``__slots__`` to
reuse: for such a class ``frozen_maker`` gives the class itself (its constructor is native), so the same source runs
interpreted or compiled; ``frozen_builder`` refuses it (its one user, the header parser, stays interpreted).
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import TypeVar

T = TypeVar("T", bound=type)

# cls -> the __init__ dataclasses made, for tests/test_frozen.py (which builds objects both ways)
DATACLASS_INIT: dict[type, object] = {}


class _Factory:
    """The default of a parameter whose field has a default_factory (as dataclasses does it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def fast_frozen(cls: T) -> T:
    """Class decorator, under ``@dataclass(frozen=True, slots=True)``: generated ``__init__``, ``__getstate__``
    and ``__setstate__`` (see the module's doc). Refuses a class it cannot serve the same way: not frozen,
    fields without slots, ``__post_init__``, ``InitVar`` or ``ClassVar`` pseudo-fields, keyword-only fields, fields
    left out of ``__init__``."""
    fs = fields(cls)
    names = tuple(f.name for f in fs)
    slots: set[str] = set()
    for klass in cls.__mro__:
        slots.update(klass.__dict__.get("__slots__", ()))
    if (not set(names) <= slots or not cls.__dataclass_params__.frozen or hasattr(cls, "__post_init__")
            or any(not f.init or f.kw_only for f in fs) or len(fs) != len(cls.__dataclass_fields__)):
        raise TypeError(f"fast_frozen: {cls.__name__} is not a frozen dataclass with slots and plain fields")
    env: dict[str, object] = {"_FACTORY": _FACTORY}
    params, body = [], []
    for i, f in enumerate(fs):
        env[f"_set{i}"] = getattr(cls, f.name).__set__  # the slot's descriptor
        if f.default is not MISSING:
            env[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        elif f.default_factory is not MISSING:
            env[f"_factory{i}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            body.append(f"    if {f.name} is _FACTORY:\n        {f.name} = _factory{i}()\n")
        else:
            params.append(f.name)
        body.append(f"    _set{i}(self, {f.name})\n")
    values = ", ".join(f"v{i}" for i in range(len(names)))
    source = (
        f"def __init__(self, {', '.join(params)}):\n" + ("".join(body) or "    pass\n")
        + "def __getstate__(self):\n"
        + f"    return ({''.join(f'self.{name}, ' for name in names)})\n"
        + "def __setstate__(self, state):\n"
        + (f"    {values}, = state\n" if names else "    pass\n")
        + "".join(f"    _set{i}(self, v{i})\n" for i in range(len(names)))
    )
    exec(source, env)  # only field names (identifiers) and numbers go into the source
    DATACLASS_INIT[cls] = cls.__init__
    for method in ("__init__", "__getstate__", "__setstate__"):
        fn = env[method]
        fn.__qualname__ = f"{cls.__qualname__}.{method}"  # type: ignore[attr-defined]
        fn.__module__ = cls.__module__  # type: ignore[attr-defined]
        setattr(cls, method, fn)
    return cls


def compiled_class(cls: type) -> bool:
    """Whether ``cls`` is a native class of a module compiled by mypyc (which gives each such class the tuple of its
    attributes' names as ``__mypyc_attrs__``)."""
    return "__mypyc_attrs__" in cls.__dict__


def frozen_builder(cls: type) -> type:
    """A class with the slots of ``cls`` (a frozen dataclass with slots) that is not frozen, for hot paths that
    build many ``cls`` objects: set the fields on a builder instance, then assign ``__class__ = cls``. The
    result is the object ``cls(...)`` makes (same type, fields, equality, hash, frozen from then on), built with
    plain slot stores instead of the frozen ``__init__``'s ``object.__setattr__`` calls: a quarter of the cost.
    CPython allows ``__class__`` assignment between classes of the same slot layout; that is checked here,
    once, so a change to ``cls`` that breaks it fails at import; so does a class compiled by mypyc (TypeError)."""
    if compiled_class(cls):
        raise TypeError(f"frozen_builder: {cls.__name__} is compiled by mypyc; build it with its constructor")
    names = tuple(f.name for f in fields(cls))
    assert cls.__slots__ == names and cls.__bases__ == (object,), cls
    builder = type(cls.__name__ + "Builder", (), {"__slots__": names, "__module__": cls.__module__})
    probe = builder()
    probe.__class__ = cls  # TypeError here if the layouts ever differ
    return builder


def frozen_maker(cls: type):  # -> Callable[..., cls]
    """A function ``make(field1, field2, ...)`` (every field of ``cls``, positionally, in field order, no defaults)
    that returns the object ``cls(field1, field2, ...)`` makes, built through ``frozen_builder``: generated once,
    with the stores unrolled. For a class compiled by mypyc, the class itself (its constructor is native)."""
    if compiled_class(cls):
        return cls
    names = tuple(f.name for f in fields(cls))
    env: dict[str, object] = {"_Builder": frozen_builder(cls), "_cls": cls}
    source = (f"def make({', '.join(names)}):\n    o = _Builder()\n"
              + "".join(f"    o.{name} = {name}\n" for name in names)
              + "    o.__class__ = _cls\n    return o\n")
    exec(source, env)  # only field names (identifiers) go into the source
    make = env["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"  # type: ignore[attr-defined]
    make.__module__ = cls.__module__  # type: ignore[attr-defined]
    return make
