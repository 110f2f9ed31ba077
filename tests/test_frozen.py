"""pcapcheck.frozen.pickled_fast: the results pickle as they are, through the generated methods."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from pcapcheck.config import Options
from pcapcheck.frozen import pickled_fast
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
        names = [f.name for f in dataclasses.fields(o)]
        assert o.__getstate__() == tuple(getattr(o, n) for n in names)


def test_pickled_fast_round_trips_defaults_and_empty_classes() -> None:
    @pickled_fast
    @dataclasses.dataclass(frozen=True, slots=True)
    class Empty:
        pass

    @pickled_fast
    @dataclasses.dataclass(frozen=True, slots=True)
    class One:
        a: int

    @pickled_fast
    @dataclasses.dataclass(frozen=True, slots=True)
    class Three:
        a: int
        b: tuple = ()
        c: object = None

    for obj in (Empty(), One(7), Three(1), Three(2, (One(3), Empty()), {"k": [One(4)]})):
        state = obj.__getstate__()
        copy = type(obj).__new__(type(obj))
        copy.__setstate__(state)
        assert copy == obj
        if not (isinstance(obj, Three) and obj.c is not None):  # (a dict in a field is not hashable)
            assert hash(copy) == hash(obj)
        if dataclasses.fields(obj):
            with pytest.raises(dataclasses.FrozenInstanceError):
                copy.a = 0  # still frozen


def test_pickled_fast_refuses_classes_it_cannot_serve() -> None:
    with pytest.raises(TypeError, match="frozen dataclass with slots"):
        @pickled_fast
        @dataclasses.dataclass(frozen=True)
        class NoSlots:
            a: int

    with pytest.raises(TypeError, match="frozen dataclass with slots"):
        @pickled_fast
        @dataclasses.dataclass(slots=True)
        class NotFrozen:
            a: int
