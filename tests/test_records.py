"""Packed records sorted a chunk at a time (report.records): the same order as sorting them all at once, and
the same report bytes however small the chunks are."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from pcapcheck.report import records
from tests.test_parallel import _run, _same, busy_capture  # noqa: F401 (a fixture)

REC = struct.Struct(">HB")


@given(values=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), max_size=200),
       chunk=st.integers(1, 9))
def test_chunks_merge_into_the_full_order(values, chunk) -> None:
    old = records.CHUNK
    records.CHUNK = chunk
    try:
        buf = bytearray(b"".join(REC.pack(*v) for v in values))
        got = [REC.unpack(r) for r in records.in_order(buf, REC.size)]
    finally:
        records.CHUNK = old
    assert got == sorted(values)
    assert len(buf) == len(values) * REC.size  # sorted in place, nothing added


def test_a_buffer_of_partial_records_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError):
        records.sort_in_chunks(bytearray(5), 3)


def test_reports_are_the_same_with_tiny_chunks(tmp_path, busy_capture, monkeypatch) -> None:  # noqa: F811
    """index.html and report.json keep their per-conversation records in a records.Spill: with chunks of 7
    records (runs on disk for the 52 conversations, merged; a shard's records handed over through its files)
    the output is byte for byte the one of a single chunk, with one process or two. The provisional pages'
    keys stay in memory meanwhile (``hold``): they are read and patched by arrival."""
    assert _run(tmp_path / "one", [str(busy_capture)], 1) == 0
    monkeypatch.setattr(records, "CHUNK", 7)  # fork() inherits the patch
    for jobs in (1, 2):
        assert _run(tmp_path / f"j{jobs}", [str(busy_capture)], jobs) == 0
        _same(tmp_path / "one", tmp_path / f"j{jobs}")


def test_index_keys_are_not_read_by_arrival_once_sorted() -> None:
    """The index's keys are sorted in place (by chunks) for the rows: a page looked up by arrival afterwards
    would be another conversation's, so it is an error."""
    import pytest

    from pcapcheck.model import ConversationSummary
    from pcapcheck.report.html_report import _SummarySpool

    spool = _SummarySpool()
    for i in (3, 1, 2):
        spool.add(ConversationSummary(i, 0, "c", "s", 0, 0, 1, 0, "fin", "", (), (), -1, 1, f"conv-{i}.html"))
    assert spool.page(0) == "conv-3.html"
    assert [s.id for s in spool.ordered()] == [1, 2, 3]
    with pytest.raises(RuntimeError):
        spool.page(0)
    with pytest.raises(RuntimeError):
        spool.drop_page(0)
    spool.close()


@given(values=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), max_size=120),
       chunk=st.integers(1, 9), hold_until=st.integers(0, 60))
def test_a_spill_gives_every_record_in_order(values, chunk, hold_until) -> None:
    """records.Spill writes full chunks out as sorted runs (not while ``hold`` is set) and merges them back."""
    old = records.CHUNK
    records.CHUNK = chunk
    spill = records.Spill(REC.size)
    try:
        spill.hold = hold_until > 0
        for n, v in enumerate(values):
            if n == hold_until:
                spill.hold = False
            if spill.hold and n:  # held records are still readable by arrival
                assert REC.unpack_from(spill.buf, spill.offset(n - 1)) == values[n - 1]
            spill.add(REC.pack(*v))
        assert len(spill) == len(values)
        assert sorted(REC.unpack(r) for r in spill.records()) == sorted(values)
        if not spill.hold:
            assert len(spill.buf) <= max(chunk, hold_until + 1) * REC.size
        assert [REC.unpack(r) for r in spill.ordered()] == sorted(values)
        assert [REC.unpack(r) for r in spill.ordered()] == sorted(values)  # again
    finally:
        records.CHUNK = old
        spill.close()


def test_a_spilled_record_is_not_read_by_arrival() -> None:
    import pytest

    old = records.CHUNK
    records.CHUNK = 2
    spill = records.Spill(REC.size)
    try:
        for v in ((5, 0), (1, 0), (3, 0)):
            spill.add(REC.pack(*v))
        assert spill.spilled == 2 and REC.unpack_from(spill.buf, spill.offset(2)) == (3, 0)
        with pytest.raises(RuntimeError):
            spill.offset(0)
        list(spill.ordered())
        with pytest.raises(RuntimeError):
            spill.offset(2)  # sorted now
    finally:
        records.CHUNK = old
        spill.close()
