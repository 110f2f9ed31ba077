"""pcapcheck.frozen: generated __init__ / __getstate__ / __setstate__ give the objects and pickles dataclasses give."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from pcapcheck.config import Options
from pcapcheck.frozen import DATACLASS_INIT, fast_frozen, frozen_builder, frozen_maker
from pcapcheck.pipeline import Analysis
from tests.conftest import FIXTURES


class Collect:
    def __init__(self) -> None:
        self.results: list = []

    def conversation(self, r) -> None:
        self.results.append(r)


def _fixture_results() -> list:
    out = []
    for p in sorted(FIXTURES.glob("*.pcap*")):
        sink = Collect()
        Analysis(Options(), sink).run([str(p)])
        out.extend(sink.results)
    return out


def _dataclass_objects(obj, seen: dict[int, object]) -> None:
    """Every dataclass object reachable from ``obj`` through fields, tuples, lists and dict values."""
    if id(obj) in seen:
        return
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        seen[id(obj)] = obj
        for f in dataclasses.fields(obj):
            _dataclass_objects(getattr(obj, f.name), seen)
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            _dataclass_objects(x, seen)
    elif isinstance(obj, dict):
        for x in obj.values():
            _dataclass_objects(x, seen)


def test_every_fixture_result_pickles_to_an_equal_result_with_the_fast_methods() -> None:
    results = _fixture_results()
    assert len(results) > 50
    reached: dict[int, object] = {}
    for r in results:
        back = pickle.loads(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == r and type(back) is type(r)
        assert back.to_json() == r.to_json()
        _dataclass_objects(r, reached)
    kinds = {type(o) for o in reached.values()}
    assert {"ConversationResult", "HttpMessage", "HeaderField", "Finding"} <= {k.__name__ for k in kinds}
    for k in kinds:
        # every dataclass a result holds takes the generated methods, not dataclasses' fields() loop
        assert k.__setstate__.__qualname__ == f"{k.__qualname__}.__setstate__", k
    for o in reached.values():
        cls = type(o)
        values = tuple(getattr(o, f.name) for f in dataclasses.fields(o))
        assert o.__getstate__() == values
        assert cls(*values) == o
        made = object.__new__(cls)
        DATACLASS_INIT[cls](made, *values)  # the __init__ dataclasses generated
        assert made == o and made.__getstate__() == values


def test_fast_frozen_round_trips_defaults_and_empty_classes() -> None:
    @fast_frozen
    @dataclasses.dataclass(frozen=True, slots=True)
    class Empty:
        pass

    @fast_frozen
    @dataclasses.dataclass(frozen=True, slots=True)
    class One:
        a: int

    @fast_frozen
    @dataclasses.dataclass(frozen=True, slots=True)
    class Three:
        a: int
        b: tuple = ()
        c: object = None

    @fast_frozen
    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: int
        d: dict = dataclasses.field(default_factory=dict)

    f1, f2 = Factory(1), Factory(1)
    assert f1.d == {} and f1.d is not f2.d and Factory(2, {"x": 1}).d == {"x": 1} and Factory(a=3, d={}).a == 3
    assert repr(Three(1)) == "test_fast_frozen_round_trips_defaults_and_empty_classes.<locals>.Three(a=1, b=(), c=None)"
    with pytest.raises(TypeError):
        One()  # a field without a default is required, as with dataclasses' __init__
    for obj in (Empty(), One(7), Three(1), Three(2, (One(3), Empty()), {"k": [One(4)]}), Factory(5)):
        state = obj.__getstate__()
        copy = type(obj).__new__(type(obj))
        copy.__setstate__(state)
        assert copy == obj
        if not isinstance(obj, Factory) and not (isinstance(obj, Three) and obj.c is not None):  # (dicts: no hash)
            assert hash(copy) == hash(obj)
        if dataclasses.fields(obj):
            with pytest.raises(dataclasses.FrozenInstanceError):
                copy.a = 0  # still frozen


def test_fast_frozen_refuses_classes_it_cannot_serve() -> None:
    with pytest.raises(TypeError, match="frozen dataclass with slots and plain fields"):
        @fast_frozen
        @dataclasses.dataclass(frozen=True)
        class NoSlots:
            a: int

    with pytest.raises(TypeError, match="frozen dataclass with slots and plain fields"):
        @fast_frozen
        @dataclasses.dataclass(slots=True)
        class NotFrozen:
            a: int

    with pytest.raises(TypeError, match="frozen dataclass with slots and plain fields"):
        @fast_frozen
        @dataclasses.dataclass(frozen=True, slots=True)
        class Checked:
            a: int

            def __post_init__(self) -> None:
                assert self.a > 0


def test_frozen_builder_makes_the_object_the_constructor_makes() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Pair:
        a: int
        b: tuple

    builder = frozen_builder(Pair)
    o = builder()
    o.a, o.b = 1, (2,)
    o.__class__ = Pair
    assert o == Pair(1, (2,)) and hash(o) == hash(Pair(1, (2,))) and type(o) is Pair
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.a = 3

    class Derived(Pair):
        __slots__ = ("c",)

    with pytest.raises(AssertionError):
        frozen_builder(Derived)  # another slot layout: refused when the builder is made, not when used


def test_frozen_maker_makes_the_object_the_constructor_makes() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Triple:
        a: int
        b: tuple
        c: bytes = b""

    make = frozen_maker(Triple)
    o = make(1, (2,), b"x")
    assert o == Triple(1, (2,), b"x") and hash(o) == hash(Triple(1, (2,), b"x")) and type(o) is Triple
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.a = 3
    with pytest.raises(TypeError):
        make(1, (2,))  # every field, no defaults
    assert [make(i, (), b"") for i in range(3)] == [Triple(i, ()) for i in range(3)]  # a new object each call


def test_every_generated_init_takes_the_parameters_of_the_dataclass_init() -> None:
    import pcapcheck.pipeline  # noqa: F401  (imports every module that decorates a class)
    import pcapcheck.report.html_report  # noqa: F401

    assert len(DATACLASS_INIT) >= 20
    for cls, original in DATACLASS_INIT.items():
        mine = inspect.signature(cls.__init__).parameters
        theirs = inspect.signature(original).parameters
        assert list(mine) == list(theirs), cls
        for name, p in mine.items():
            q = theirs[name]
            assert p.kind == q.kind, (cls, name)
            if q.default is inspect.Parameter.empty or repr(q.default) == "<factory>":
                assert repr(p.default) == repr(q.default), (cls, name)
            else:
                assert p.default is q.default, (cls, name)
