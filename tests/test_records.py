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
    """index.html and report.json sort their per-conversation records by chunks: with chunks of 7 records
    (8 of them for the 52 conversations, merged) the output is byte for byte the one of a single chunk, with one
    process or two."""
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
