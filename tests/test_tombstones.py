"""The dense tombstone tables behave as the insertion-ordered dict they replaced (flows.FlowTable), one per
key length (address family)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pcapcheck.tombstones as tb

# a few keys of both lengths, so the same key comes back, collides, and is dropped and put again
KEYS = [bytes([i]) * 12 for i in range(1, 9)] + [bytes([i]) * 36 for i in range(9, 13)] + [b"\x00" * 12]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(KEYS), st.integers(0, 2**40), st.integers(-1, 2**32 - 1),
                  st.integers(-1, 2**32 - 1), st.integers(1, 2**31 - 1), st.integers(1, 6)),
        st.tuples(st.just("pop"), st.sampled_from(KEYS)),
    ),
    max_size=300,
)


def _model_put(model: dict, key, value, limit) -> None:
    model.pop(key, None)
    model[key] = value
    while len(model) > limit:
        del model[next(iter(model))]


@pytest.mark.parametrize("min_slots, compact", [(2, 3), (1024, 4096)])
@given(ops=ops)
def test_the_table_matches_an_insertion_ordered_dict(min_slots: int, compact: int, ops) -> None:
    old = tb._MIN_SLOTS, tb._COMPACT
    tb._MIN_SLOTS, tb._COMPACT = min_slots, compact  # tiny: every probe path collides and wraps
    try:
        table = tb.Tombstones()
        models: dict[int, dict[bytes, tuple[int, int, int, int]]] = {12: {}, 36: {}}
        for op in ops:
            model = models[len(op[1])]
            if op[0] == "put":
                _, key, cid, base_a, base_b, part, limit = op
                table.put(key, cid, base_a, base_b, part, limit)
                _model_put(model, key, (cid, base_a, base_b, part), limit)
            elif op[1] in model:
                table.pop(op[1])
                del model[op[1]]
            assert len(table) == len(models[12]) + len(models[36])
            for key in KEYS:
                assert table.get(key) == models[len(key)].get(key)
    finally:
        tb._MIN_SLOTS, tb._COMPACT = old


def test_many_entries_grow_the_index_and_cut_the_buffer() -> None:
    """200,000 entries through a limit of 50,000: the oldest go, the buffer keeps about twice the live ones."""
    table = tb.Tombstones()
    model: dict[bytes, tuple[int, int, int, int]] = {}
    key = lambda n: n.to_bytes(4, "big") + b"\x0a\x00\x00\x01" + b"\x1f\x90\x00\x50"  # noqa: E731
    for n in range(200_000):
        table.put(key(n), n, n, -1, 1, 50_000)
        _model_put(model, key(n), (n, n, -1, 1), 50_000)
        if n % 3 == 0:
            table.pop(key(n))
            del model[key(n)]
    assert len(table) == len(model) == 50_000
    assert all(table.get(k) == v for k, v in model.items())
    oldest = int.from_bytes(next(iter(model))[:4], "big")
    assert table.get(key(oldest - 1)) is None and table.get(key(oldest)) == (oldest, oldest, -1, 1)
    # the buffer keeps about twice the live records, the index at most four slots per live entry
    inner = table._tables[12]
    assert len(inner._buf) <= (2 * 75_000 + tb._COMPACT) * inner._rec == (2 * 75_000 + tb._COMPACT) * 33
    assert len(inner._slots) <= 4 * 50_000


def test_resumed_tombstones_leave_no_dead_records_behind() -> None:
    """A tombstone taken back (a late packet, port reuse) leaves a dead record; when dead ones outnumber the
    live ones (and _COMPACT) the buffer keeps only the live ones, even if no tombstone ever gets the oldest."""
    table = tb.Tombstones()
    key = lambda n: n.to_bytes(4, "big") + b"\x0a\x00\x00\x01" + b"\x1f\x90\x00\x50"  # noqa: E731
    for n in range(100):
        table.put(key(n), n, -1, -1, 1, 1000)  # 100 that stay
    for n in range(100, 100_000):
        table.put(key(n), n, n, n, 1, 1000)
        table.pop(key(n))
    inner = table._tables[12]
    assert len(table) == 100 and len(inner._buf) <= (100 + tb._COMPACT + 1) * inner._rec
    assert [table.get(key(n)) for n in (0, 99, 100, 99_999)] == [(0, -1, -1, 1), (99, -1, -1, 1), None, None]
