"""Reassembly: model-based and metamorphic tests against a plain bytes model."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pcapcheck import seq as sq
from pcapcheck.tcp.reassembly import Reassembler


class Collector:
    def __init__(self) -> None:
        self.data = bytearray()
        self.frames: list[tuple[int, int]] = []
        self.gaps: list[tuple[int, int, str]] = []

    def on_data(self, off: int, data: bytes, frame: int, ts: int) -> None:
        # offsets advance over delivered bytes and declared gaps alike, never backwards
        assert off == len(self.data) + sum(g[1] for g in self.gaps)
        self.data += data
        self.frames.append((off, frame))

    def on_gap(self, off: int, length: int, frame: int, reason: str) -> None:
        self.gaps.append((off, length, reason))


def make(isn: int) -> tuple[Reassembler, Collector]:
    c = Collector()
    r = Reassembler(c.on_data, c.on_gap)
    r.start(sq.add(isn, 1))
    return r, c


def test_in_order_delivery_and_frames() -> None:
    r, c = make(1000)
    r.segment(1001, b"hello ", 6, 1, 0)
    r.segment(1007, b"world", 5, 2, 0)
    assert bytes(c.data) == b"hello world"
    assert c.frames == [(0, 1), (6, 2)]
    assert r.next_off == 11


def test_out_of_order_is_buffered_until_the_hole_fills() -> None:
    r, c = make(0)
    r.segment(7, b"world", 5, 2, 0)
    assert c.data == b""
    r.segment(1, b"hello ", 6, 1, 0)
    assert bytes(c.data) == b"hello world"


def test_wraparound() -> None:
    isn = 0xFFFFFFF0
    r, c = make(isn)
    payload = bytes(range(64))
    for i in range(0, 64, 8):
        r.segment(sq.add(isn, 1 + i), payload[i : i + 8], 8, i, 0)
    assert bytes(c.data) == payload


def test_first_copy_wins_and_mismatch_is_recorded() -> None:
    r, c = make(0)
    r.segment(1, b"GOOD", 4, 1, 0)
    r.segment(1, b"EVIL", 4, 2, 0)
    assert bytes(c.data) == b"GOOD"
    assert len(r.mismatches) == 1
    m = r.mismatches[0]
    assert (m.offset, m.frame, m.first_frame, m.first, m.second) == (0, 2, 1, b"GOOD", b"EVIL")


def test_identical_retransmission_is_not_a_mismatch() -> None:
    r, c = make(0)
    r.segment(1, b"same", 4, 1, 0)
    r.segment(1, b"same", 4, 2, 0)
    assert not r.mismatches and r.retransmitted_bytes == 4


def test_partial_overlap_delivers_only_new_bytes() -> None:
    r, c = make(0)
    r.segment(1, b"abcd", 4, 1, 0)
    r.segment(3, b"cdef", 4, 2, 0)
    assert bytes(c.data) == b"abcdef"


def test_gap_when_peer_acks_bytes_never_captured() -> None:
    r, c = make(0)
    r.segment(1, b"aaaa", 4, 1, 0)
    r.segment(9, b"cccc", 4, 3, 0)  # bytes 4..8 never captured
    r.acked(13, 4)
    assert c.gaps == [(4, 4, "lost")]
    assert bytes(c.data) == b"aaaacccc"


def test_snaplen_cut_becomes_a_gap_not_bytes() -> None:
    r, c = make(0)
    r.segment(1, b"abc", 10, 1, 0)  # 10 bytes on the wire, 3 captured
    r.segment(11, b"xyz", 3, 2, 0)
    assert bytes(c.data) == b"abcxyz"
    assert c.gaps == [(3, 7, "snaplen")]


def test_finish_declares_gaps_before_buffered_data() -> None:
    r, c = make(0)
    r.segment(1, b"aa", 2, 1, 0)
    r.segment(5, b"bb", 2, 2, 0)
    r.finish(3)
    assert c.gaps == [(2, 2, "lost")]
    assert bytes(c.data) == b"aabb"


def test_too_many_buffered_segments_declare_the_hole_lost() -> None:
    """Beyond MAX_PENDING segments buffered (1-byte segments after a hole: the entries, not the bytes, are the
    memory), the oldest hole is declared lost, as beyond MAX_BUFFERED bytes."""
    from pcapcheck.tcp.reassembly import MAX_PENDING

    r, c = make(0)
    for i in range(MAX_PENDING + 1):
        r.segment(sq.add(1, 1 + i), b"x", 1, i + 1, 0)  # byte 0 never comes
        assert len(r.pending) <= MAX_PENDING
    assert r.overflowed_segments and not r.overflowed and c.gaps == [(0, 1, "lost")]
    assert bytes(c.data) == b"x" * (MAX_PENDING + 1) and not r.pending
    from types import SimpleNamespace

    from pcapcheck.analyzers.tcpflags import tcp_findings

    (f,) = tcp_findings(7, {}, [r, make(0)[0]], SimpleNamespace(reuse_of=None))
    assert f.code == "tcp.reassembly-capped" and f.detail == {"cap_segments": MAX_PENDING} and f.direction == "c2s"
    assert "4,096 out-of-order segments" in f.message


def test_too_many_buffered_bytes_declare_the_hole_lost_and_say_so() -> None:
    """Beyond MAX_BUFFERED bytes buffered after a hole, the hole is declared lost; the finding names that cap."""
    from types import SimpleNamespace

    from pcapcheck.analyzers.tcpflags import tcp_findings
    from pcapcheck.tcp.reassembly import MAX_BUFFERED

    r, c = make(0)
    r.segment(sq.add(1, 10), b"x" * (MAX_BUFFERED + 1), MAX_BUFFERED + 1, 2, 0)  # bytes 0-9 never come
    assert r.overflowed and c.gaps == [(0, 10, "lost")]
    (f,) = tcp_findings(7, {}, [make(0)[0], r], SimpleNamespace(reuse_of=None))
    assert f.code == "tcp.reassembly-capped" and f.detail == {"cap_bytes": MAX_BUFFERED} and f.direction == "s2c"
    assert f.message.startswith("more than 1 MiB of out-of-order data was buffered in one direction; the oldest hole")


@st.composite
def segmentations(draw):
    """A payload, an ISN (often near 2**32), and segments delivered in any order with duplicates."""
    payload = draw(st.binary(min_size=1, max_size=400))
    isn = draw(st.one_of(st.integers(0, sq.MASK), st.integers(sq.MASK - 600, sq.MASK)))
    cuts = sorted(draw(st.sets(st.integers(1, len(payload) - 1), max_size=12))) if len(payload) > 1 else []
    bounds = [0, *cuts, len(payload)]
    segs = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    # overlapping re-sends of arbitrary ranges
    extra = draw(st.lists(st.tuples(st.integers(0, len(payload) - 1), st.integers(1, 64)), max_size=6))
    segs += [(a, min(len(payload), a + n)) for a, n in extra]
    order = draw(st.permutations(segs))
    return payload, isn, order


@given(segmentations())
@example((b"x" * 100, 0xFFFFFFFF, [(50, 100), (0, 50)]))
def test_any_segmentation_reassembles_to_the_payload(case) -> None:
    payload, isn, order = case
    r, c = make(isn)
    for frame, (a, b) in enumerate(order, 1):
        r.segment(sq.add(isn, 1 + a), payload[a:b], b - a, frame, 0)
    r.finish(len(order) + 1)
    assert bytes(c.data) == payload
    assert not c.gaps
    assert not r.mismatches


@given(segmentations(), segmentations())
@example((b"\x00\x00\x00", 0, [(1, 2), (1, 3), (0, 1)]), (b"\x00", 0, [(0, 1)]))  # longer copy at a buffered offset
def test_metamorphic_same_stream_for_different_segmentations(case1, case2) -> None:
    payload, isn, order1 = case1
    _, _, order2 = case2
    order2 = [(a, b) for a, b in order2 if b <= len(payload) and a < b] + [(0, len(payload))]
    outs = []
    for order in (order1, order2):
        r, c = make(isn)
        for frame, (a, b) in enumerate(order, 1):
            r.segment(sq.add(isn, 1 + a), payload[a:b], b - a, frame, 0)
        r.finish(99)
        outs.append(bytes(c.data))
    assert outs[0] == outs[1] == payload


@given(segmentations(), st.integers(0, 64), st.booleans())
@example((b"abcdef", 0, [(4, 6), (2, 5), (0, 3)]), 0, True)  # a longer copy at a buffered offset, on disk
def test_buffered_segments_on_disk_change_nothing(case, budget, acked) -> None:
    """With a SegmentSpill whose memory budget is small, buffered segments wait in its file: the stream, the gaps
    and the mismatches are those of a reassembler that keeps them all in memory, and nothing stays counted."""
    from pcapcheck.tcp import reassembly

    payload, isn, order = case
    outs = []
    for spill in (None, reassembly.SegmentSpill()):
        c = Collector()
        r = Reassembler(c.on_data, c.on_gap, spill)
        r.start(sq.add(isn, 1))
        saved = reassembly.BUFFERED_IN_MEMORY
        reassembly.BUFFERED_IN_MEMORY = budget
        try:
            for frame, (a, b) in enumerate(order, 1):
                r.segment(sq.add(isn, 1 + a), payload[a:b], b - a, frame, 0)
                if acked and frame == len(order) // 2:
                    r.acked(sq.add(isn, 1 + len(payload) // 2), frame)
                if spill is not None:
                    assert spill.held <= budget
            r.finish(len(order) + 1)
        finally:
            reassembly.BUFFERED_IN_MEMORY = saved
        outs.append((bytes(c.data), c.frames, c.gaps, r.mismatches, r.pending_bytes))
        if spill is not None:
            assert spill.held == 0
            spill.close()
    assert outs[0] == outs[1]


class ReassemblyMachine(RuleBasedStateMachine):
    """Drive the reassembler and a plain bytes model with the same deliveries."""

    def __init__(self) -> None:
        super().__init__()
        self.payload = bytes((i * 7 + 3) & 0xFF for i in range(2000))
        self.isn = sq.MASK - 500  # wraps after 500 bytes
        self.r, self.c = make(self.isn)
        self.received = bytearray(len(self.payload))
        self.have = [False] * len(self.payload)
        self.frame = 0

    @rule(a=st.integers(0, 1999), n=st.integers(1, 300))
    def deliver(self, a: int, n: int) -> None:
        b = min(2000, a + n)
        self.frame += 1
        decided = self.r.next_off  # bytes before this were delivered or declared lost already
        self.r.segment(sq.add(self.isn, 1 + a), self.payload[a:b], b - a, self.frame, 0)
        for i in range(max(a, decided), b):
            self.have[i] = True

    @precondition(lambda self: self.frame > 0)
    @rule(a=st.integers(0, 2000))
    def ack(self, a: int) -> None:
        """The peer acknowledges up to ``a``: a hole before it that no buffered segment fills is declared lost."""
        self.r.acked(sq.add(self.isn, 1 + a), self.frame)

    @precondition(lambda self: self.frame > 0)
    @rule()
    def finish(self) -> None:
        self.r.finish(self.frame)
        # everything captured so far is delivered; holes became gaps
        delivered = bytes(self.c.data)
        expected = bytes(self.payload[i] for i in range(2000) if self.have[i] and i < self.r.next_off)
        assert delivered == expected

    @invariant()
    def delivered_prefix_matches_model(self) -> None:
        # bytes delivered so far are exactly the captured bytes before next_off, in order
        expected = bytes(self.payload[i] for i in range(min(self.r.next_off, 2000)) if self.have[i])
        assert bytes(self.c.data) == expected
        assert not self.r.mismatches

    @invariant()
    def buffered_offsets_are_a_heap_of_pending(self) -> None:
        order = self.r._order
        assert sorted(order) == sorted(self.r.pending)
        assert all(order[(i - 1) // 2] <= order[i] for i in range(1, len(order)))
        assert not order or order[0] > self.r.next_off  # what the stream has reached is delivered at once


TestReassemblyMachine = ReassemblyMachine.TestCase
