"""Micro-benchmarks of the per-packet core: sequence arithmetic, header decoding, reassembly, the conntrack window
check, the Wireshark-flag tracker and the RST analyzer's history, each on its common case.

Run with ``make bench-micro`` (the default pytest options disable benchmarking: then each case runs once, as a test
of the results and the state it leaves). Each round calls the code under test BATCH times on inputs prepared by an
untimed setup, so the time per round in milliseconds is the time per call in microseconds. CPU time
(``time.process_time``), not wall time: the machine is shared; garbage collection excluded.
Numbers: docs/performance.md, "Per-packet hot path".
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import pytest

from fixtures import builder as b
from pcapcheck import seq as sq
from pcapcheck.capture import Frame
from pcapcheck.decode import Decoder, TcpPacket
from pcapcheck.tcp.events import ACK, PSH, SYN
from pcapcheck.tcp.reassembly import TAIL_KEEP, Reassembler
from pcapcheck.tcp.tracker import DUP_ACK, TcpTracker
from pcapcheck.tcp.window import ACCEPTED, ConntrackWindow

BATCH = 1000
ROUNDS = 20
SEG = 1448
PAYLOAD = (bytes(range(256)) * 6)[:SEG]
CLIENT, SERVER = ("10.1.2.3", 40000), ("10.0.0.10", 80)
C_ISN, S_ISN = 0xFFFF0000, 1_000_000  # the client's stream wraps past 2**32 within a batch
SYN_OPTS = b.opt_mss(1460) + b.opt_sack_perm() + b.opt_timestamps(1, 0) + b.opt_nop() + b.opt_wscale(7)
TS_OPTS = b.opt_nop() + b.opt_nop() + b.opt_timestamps(100, 200)

bench = pytest.mark.benchmark(group="core-hot-path", timer=time.process_time, disable_gc=True)


def run(benchmark, setup: Callable[[], tuple[Callable[..., Any], tuple]]) -> Any:
    """Time ``target(*args)`` (BATCH calls of the code under test) per round; return the last round's result."""
    result: list[Any] = []

    def prepared():
        result.clear()  # the previous round's objects are freed here, untimed
        gc.collect()
        return setup(), {}

    def timed(target, args):
        result[:] = [target(*args)]

    benchmark.extra_info["calls_per_round"] = BATCH
    benchmark.pedantic(timed, setup=prepared, rounds=ROUNDS, warmup_rounds=1)
    return result[0]


def _packet(frame: int, src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int,
            payload: bytes = b"", options: bytes = TS_OPTS, window: int = 502) -> TcpPacket:
    return TcpPacket(frame, 1_700_000_000_000_000_000 + frame * 1000, bytes(map(int, src[0].split("."))),
                     bytes(map(int, dst[0].split("."))), src[1], dst[1], seq & sq.MASK, ack & sq.MASK, flags,
                     window, options, payload, len(payload), 64, frame & 0xFFFF, True)


def _handshake() -> list[tuple[int, TcpPacket]]:
    """(direction, packet) of a handshake with window scaling (client 7, server 7), SACK and timestamps."""
    return [
        (0, _packet(1, CLIENT, SERVER, C_ISN, 0, SYN, options=SYN_OPTS, window=64240)),
        (1, _packet(2, SERVER, CLIENT, S_ISN, C_ISN + 1, SYN | ACK, options=SYN_OPTS, window=65160)),
        (0, _packet(3, CLIENT, SERVER, C_ISN + 1, S_ISN + 1, ACK)),
    ]


# -- seq ------------------------------------------------------------------------------------------


def _signed(d: int) -> int:
    d %= 1 << 32
    return d - (1 << 32) if d >= 1 << 31 else d


@bench
def test_seq_lt_gt_diff(benchmark) -> None:
    edges = [0, 1, sq.HALF - 1, sq.HALF, sq.HALF + 1, sq.MASK]
    pairs = [(a, (a + k) & sq.MASK) for a in edges for k in (0, 1, -1, 1448, -1448, sq.HALF, sq.HALF - 1)]
    pairs = (pairs * (BATCH // len(pairs) + 1))[:BATCH]
    lt, gt, diff = sq.lt, sq.gt, sq.diff

    def target(pairs):
        return [(lt(a, c), gt(a, c), diff(a, c)) for a, c in pairs]

    out = run(benchmark, lambda: (target, (pairs,)))
    assert out == [(_signed(a - c) < 0, _signed(c - a) < 0, _signed(a - c)) for a, c in pairs]


# -- decode ---------------------------------------------------------------------------------------


def _ether_ipv4_tcp(seq: int) -> bytes:
    seg = b.tcp(CLIENT[1], SERVER[1], seq, S_ISN + 1, ACK | PSH, 502, PAYLOAD, TS_OPTS,
                src_ip=CLIENT[0], dst_ip=SERVER[0])
    return b.ether(b.ipv4(CLIENT[0], SERVER[0], seg, ip_id=7, ttl=61), ethertype=0x0800)


@bench
def test_decode_ether_ipv4_tcp(benchmark) -> None:
    data = _ether_ipv4_tcp(C_ISN + 1)
    frames = [Frame(i, i * 1000, 1, len(data), len(data), data) for i in range(1, BATCH + 1)]

    def target(decode, frames):
        return [decode(f) for f in frames]

    pkts = run(benchmark, lambda: (target, (Decoder().decode, frames)))
    assert len(pkts) == BATCH and [p.frame for p in pkts] == list(range(1, BATCH + 1))
    p = pkts[0]
    assert (p.sport, p.dport, p.seq, p.ack, p.flags, p.window, p.ttl, p.ip_id, p.df) == (
        CLIENT[1], SERVER[1], C_ISN + 1, S_ISN + 1, ACK | PSH, 502, 61, 7, True)
    assert (p.options, p.payload, p.seglen) == (b.pad_options(TS_OPTS), PAYLOAD, SEG)


@bench
def test_decode_batch_ether_ipv4_tcp(benchmark) -> None:
    """The pipeline's form: records of CaptureReader.record_batches(), decoded in place from one buffer."""
    data = _ether_ipv4_tcp(C_ISN + 1)
    buf = data * BATCH
    records = [(i + 1, i * 1000, 1, len(data), buf, i * len(data), len(data)) for i in range(BATCH)]

    def target(decoder, records):
        return decoder.decode_batch(records)

    pkts = run(benchmark, lambda: (target, (Decoder(), records)))
    one = Decoder().decode(Frame(1, 0, 1, len(data), len(data), data))
    assert len(pkts) == BATCH and pkts[0] == one and pkts[-1] == one._replace(frame=BATCH, ts=(BATCH - 1) * 1000)


# -- reassembly -----------------------------------------------------------------------------------


@bench
def test_reassembly_in_order(benchmark) -> None:
    segs = [((C_ISN + 1 + i * SEG) & sq.MASK, i + 10) for i in range(BATCH)]
    delivered: list[int] = []

    def setup():
        r = Reassembler(lambda off, data, frame, ts: delivered.append(off), lambda *a: None)
        r.start(C_ISN + 1)
        delivered.clear()
        return target, (r, segs)

    def target(r, segs):
        segment = r.segment
        for seqno, frame in segs:
            segment(seqno, PAYLOAD, SEG, frame, 0)
        return r

    r = run(benchmark, setup)
    assert delivered == [i * SEG for i in range(BATCH)]
    assert r.next_off == r.delivered == BATCH * SEG and not r.pending and not r.mismatches and not r.gaps
    # the bytes kept for comparing retransmissions stay bounded
    assert TAIL_KEEP <= r.next_off - r.tail_off <= 2 * TAIL_KEEP and len(r.tail) <= 2 * TAIL_KEEP // SEG + 2


@bench
def test_reassembly_out_of_order_insert(benchmark) -> None:
    """Segments beyond a hole: each is buffered (the hole is the first segment, filled after the timing)."""
    seg = 512
    data = PAYLOAD[:seg]
    segs = [((C_ISN + 1 + i * seg) & sq.MASK, i + 10) for i in range(1, BATCH + 1)]
    delivered = bytearray()

    def setup():
        r = Reassembler(lambda off, d, frame, ts: delivered.extend(d), lambda *a: None)
        r.start(C_ISN + 1)
        delivered.clear()
        return target, (r, segs)

    def target(r, segs):
        segment = r.segment
        for seqno, frame in segs:
            segment(seqno, data, seg, frame, 0)
        return r

    r = run(benchmark, setup)
    assert len(r.pending) == BATCH and r.next_off == 0 and not delivered and not r.overflowed
    r.segment(C_ISN + 1, data, seg, 1, 0)  # the hole fills: everything is delivered in order
    assert bytes(delivered) == data * (BATCH + 1) and not r.pending and not r.gaps


# -- conntrack window -----------------------------------------------------------------------------


def _bench_window(benchmark, segs: list[tuple]) -> None:
    """Time ConntrackWindow.judge over ``segs`` (judge's arguments) after a handshake; all must be accepted."""

    def setup():
        w = ConntrackWindow()
        for d, p in _handshake():
            assert w.judge(d, p.seq, p.ack, p.flags, p.window, p.seglen, p.options) is ACCEPTED
        return target, (w, segs)

    def target(w, segs):
        judge = w.judge
        return [judge(*s) for s in segs]

    out = run(benchmark, setup)
    assert len(out) == BATCH and all(j is ACCEPTED for j in out)


@bench
def test_window_judge_in_window(benchmark) -> None:
    """In-order client data, each segment acknowledged by the server: both directions' common case."""
    segs = []
    for i in range(BATCH // 2):
        seq = C_ISN + 1 + i * SEG
        segs.append((0, seq & sq.MASK, (S_ISN + 1) & sq.MASK, ACK | PSH, 502, SEG, TS_OPTS))
        segs.append((1, (S_ISN + 1) & sq.MASK, (seq + SEG) & sq.MASK, ACK, 509, 0, TS_OPTS))
    _bench_window(benchmark, segs)


@bench
def test_window_judge_sack(benchmark) -> None:
    """Client data after a lost segment, each answered by a duplicate ACK with a growing SACK block: the
    tcp_sack() walk on every second segment."""
    segs = []
    hole = (C_ISN + 1) & sq.MASK
    for i in range(BATCH // 2):
        seq = C_ISN + 1 + (i + 1) * SEG
        segs.append((0, seq & sq.MASK, (S_ISN + 1) & sq.MASK, ACK | PSH, 502, SEG, TS_OPTS))
        sack = TS_OPTS + b.opt_nop() + b.opt_nop() + b.opt_sack([((hole + SEG) & sq.MASK, (seq + SEG) & sq.MASK)])
        segs.append((1, (S_ISN + 1) & sq.MASK, hole, ACK, 509, 0, sack))
    _bench_window(benchmark, segs)


# -- tracker --------------------------------------------------------------------------------------


def _run_tracker(benchmark, pkts: list) -> list[int]:
    """``TcpTracker.analyze`` over pkts, (direction, packet) pairs, after a handshake; the masks."""

    def setup():
        t = TcpTracker()
        for d, p in _handshake():
            t.analyze(d, p)
        return target, (t, pkts)

    def target(t, pkts):
        analyze = t.analyze
        return [analyze(d, p) for d, p in pkts]

    return run(benchmark, setup)


def _in_order_data() -> list[tuple[int, TcpPacket]]:
    """BATCH packets after a handshake: in-order server data, the client's ACK after every second segment."""
    pkts = []
    frame = 4
    for i in range(BATCH):
        if i % 3 == 2:
            ack = S_ISN + 1 + (i - i // 3) * SEG
            pkts.append((0, _packet(frame, CLIENT, SERVER, C_ISN + 1, ack, ACK)))
        else:
            seq = S_ISN + 1 + (i - i // 3) * SEG
            pkts.append((1, _packet(frame, SERVER, CLIENT, seq, C_ISN + 1, ACK | PSH, PAYLOAD, window=509)))
        frame += 1
    return pkts


@bench
def test_tracker_analyze_in_order_data(benchmark) -> None:
    """In-order server data with the client's ACK after every second segment: no analysis flags."""
    masks = _run_tracker(benchmark, _in_order_data())
    assert masks == [0] * BATCH


@bench
def test_tracker_analyze_dup_acks(benchmark) -> None:
    """The client repeats its ACK while the server's data arrives after a lost segment: duplicate ACKs."""
    pkts = []
    frame = 4
    for i in range(BATCH):
        if i % 2:
            pkts.append((0, _packet(frame, CLIENT, SERVER, C_ISN + 1, S_ISN + 1, ACK)))
        else:
            seq = S_ISN + 1 + (i // 2 + 1) * SEG
            pkts.append((1, _packet(frame, SERVER, CLIENT, seq, C_ISN + 1, ACK | PSH, PAYLOAD, window=509)))
        frame += 1

    masks = _run_tracker(benchmark, pkts)
    assert masks[1::2] == [DUP_ACK] * (BATCH // 2)


# -- RST analyzer -------------------------------------------------------------------------------------


@bench
def test_rst_analyzer_in_order_data(benchmark) -> None:
    """``RstAnalyzer.packet`` on the common case, in-order data one way and ACKs the other: what every packet of a
    conversation costs it before any RST (its history and per-side counts)."""
    from pcapcheck.analyzers.rst import HISTORY, RstAnalyzer

    pkts = _in_order_data()

    def setup():
        a = RstAnalyzer(0, "10.1.2.3:40000", "10.0.0.10:80")
        for d, p in _handshake():
            a.packet(d, p)
        return target, (a, pkts)

    def target(a, pkts):
        packet = a.packet
        for d, p in pkts:
            packet(d, p)
        return a

    a = run(benchmark, setup)
    assert [len(s.recent) for s in a.sides] == [HISTORY, HISTORY] and a.sides[1].data_pkts == BATCH - BATCH // 3


# -- TCP options --------------------------------------------------------------------------------------


@bench
@pytest.mark.parametrize("layout", ["linux-syn", "other"])
def test_options_parse_syn(benchmark, layout: str) -> None:
    """A handshake's options: the Linux layout (MSS, SACK permitted, timestamps, NOP, window scale) takes the
    unpack path; another order (here the window scale first, as macOS sends it) the general loop."""
    from pcapcheck.tcp import options as tcp_options

    def options(i: int) -> bytes:
        if layout == "linux-syn":
            return b.opt_mss(1460) + b.opt_sack_perm() + b.opt_timestamps(i, 0) + b.opt_nop() + b.opt_wscale(7)
        return b.opt_mss(1460) + b.opt_nop() + b.opt_wscale(6) + b.opt_nop() + b.opt_nop() + b.opt_timestamps(i, 0)

    def setup():
        raws = [options(i) for i in range(BATCH)]  # distinct bytes objects: no hit in the last-result cache

        def target(raws):
            return [tcp_options.parse(r) for r in raws]

        return target, (raws,)

    parsed = run(benchmark, setup)
    assert [p.ts_val for p in parsed] == list(range(BATCH))
    assert {p.mss for p in parsed} == {1460} and all(p.wscale in (6, 7) for p in parsed)
