"""TcpTracker: one test per Wireshark analysis flag, from hand-built packets.

Every expectation here is what tshark 4.0.17 shows for the same packets (tests/test_crosscheck.py
runs tshark on captures of the same shapes); comments name the rule of REFERENCE.md 1.3.
"""

from __future__ import annotations

import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pcapcheck.decode import TcpPacket
from pcapcheck.tcp import tracker as tr
from pcapcheck.tcp.tracker import (
    ACK_LOST_SEGMENT,
    DUP_ACK,
    FAST_RETRANSMISSION,
    FLAG_CODES,
    KEEP_ALIVE,
    KEEP_ALIVE_ACK,
    LOST_SEGMENT,
    OUT_OF_ORDER,
    RETRANSMISSION,
    SPURIOUS_RETRANSMISSION,
    TSHARK_FIELDS,
    WINDOW_FULL,
    WINDOW_UPDATE,
    ZERO_WINDOW,
    ZERO_WINDOW_PROBE,
    ZERO_WINDOW_PROBE_ACK,
    TcpTracker,
    flag_names,
    tshark_fields,
)
from tests.conftest import interpreted

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MS = 1_000_000
C, S = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"


def ws(shift: int) -> bytes:
    return b"\x01\x03\x03" + bytes([shift])


class Conv:
    """Packets of one conversation; ``gap`` ms pass before each packet unless told otherwise."""

    def __init__(self, gap_ms: float = 100) -> None:
        self.t = 1_000_000_000
        self.gap = int(gap_ms * MS)
        self.frame = 0
        self.tracker = TcpTracker()

    def pkt(self, d: int, seq: int, ack: int, flags: int = ACK, n: int = 0, win: int = 8192, opts: bytes = b"",
            after_ms: float | None = None) -> TcpPacket:
        self.t += self.gap if after_ms is None else int(after_ms * MS)
        self.frame += 1
        src, dst, sp, dp = (C, S, 40000, 80) if d == 0 else (S, C, 80, 40000)
        return TcpPacket(self.frame, self.t, src, dst, sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, win, opts,
                         b"x" * n, n, 64, 1, True)

    def __call__(self, d: int, seq: int, ack: int, flags: int = ACK, n: int = 0, **kw) -> int:
        return self.tracker.analyze(d, self.pkt(d, seq, ack, flags, n, **kw))

    def handshake(self, isn_c: int = 1000, isn_s: int = 5000, opts: tuple[bytes, bytes] = (b"", b"")) -> None:
        assert self(0, isn_c, 0, SYN, opts=opts[0]) == 0
        assert self(1, isn_s, isn_c + 1, SYN | ACK, opts=opts[1]) == 0
        assert self(0, isn_c + 1, isn_s + 1) == 0


# -- the flag table --------------------------------------------------------------------------
def test_every_flag_has_a_code_and_a_tshark_field():
    bits = [getattr(tr, name) for name in ("RETRANSMISSION", "FAST_RETRANSMISSION", "SPURIOUS_RETRANSMISSION",
                                           "OUT_OF_ORDER", "LOST_SEGMENT", "ACK_LOST_SEGMENT", "DUP_ACK",
                                           "ZERO_WINDOW", "ZERO_WINDOW_PROBE", "ZERO_WINDOW_PROBE_ACK",
                                           "KEEP_ALIVE", "KEEP_ALIVE_ACK", "WINDOW_UPDATE", "WINDOW_FULL")]
    assert len(set(bits)) == 14 and all(b & (b - 1) == 0 for b in bits)
    assert set(FLAG_CODES) == set(TSHARK_FIELDS) == set(bits)
    assert all(code.startswith("tcp.") for code in FLAG_CODES.values())
    assert FLAG_CODES[ACK_LOST_SEGMENT] == "tcp.ack-unseen"
    assert all(f.startswith("tcp.analysis.") for f in TSHARK_FIELDS.values())


def test_flag_names_and_tshark_fields():
    assert flag_names(0) == []
    assert flag_names(DUP_ACK | ZERO_WINDOW) == ["tcp.dup-ack", "tcp.zero-window"]
    # tshark adds its plain "retransmission" field to fast and spurious retransmissions
    assert tshark_fields(FAST_RETRANSMISSION) == {"tcp.analysis.fast_retransmission", "tcp.analysis.retransmission"}
    assert tshark_fields(SPURIOUS_RETRANSMISSION) == {"tcp.analysis.spurious_retransmission",
                                                      "tcp.analysis.retransmission"}
    assert tshark_fields(KEEP_ALIVE) == {"tcp.analysis.keep_alive"}


# -- facts the pipeline reads ----------------------------------------------------------------
def test_base_seq_next_seq_last_ack():
    c = Conv()
    assert c.tracker.base_seq(0) is None and c.tracker.next_seq(0) is None and c.tracker.last_ack(1) is None
    c(0, 1000, 0, SYN)
    assert c.tracker.base_seq(0) == 1000 and c.tracker.next_seq(0) == 1001  # the SYN counts 1
    assert c.tracker.base_seq(1) is None  # a SYN's ack field is not an ACK
    c(1, 5000, 1001, SYN | ACK)
    assert c.tracker.base_seq(1) == 5000 and c.tracker.last_ack(1) == 1001
    c(0, 1001, 5001, ACK | PSH, 10)
    assert c.tracker.next_seq(0) == 1011
    c(0, 1011, 5001, FIN | ACK)
    assert c.tracker.next_seq(0) == 1012  # the FIN counts 1


def test_base_seq_without_handshake():
    c = Conv()
    c(0, 2001, 7001, ACK, 10)  # mid-stream: seq-1 for the sender, ack-1 for the peer
    assert c.tracker.base_seq(0) == 2000 and c.tracker.base_seq(1) == 7000


def test_base_seq_from_the_peers_ack_only_with_the_ack_flag():
    c = Conv()
    c(0, 2000, 99, RST)  # RST without ACK: its ack field says nothing
    assert c.tracker.base_seq(1) is None


def test_window_scale():
    c = Conv()
    assert c.tracker.window_scale(0) == -1
    c.handshake(opts=(ws(7), ws(20)))
    assert (c.tracker.window_scale(0), c.tracker.window_scale(1)) == (7, 14)  # RFC 7323: at most 14
    c = Conv()
    c.handshake(opts=(b"", ws(7)))  # only the SYN-ACK: nobody scales
    assert (c.tracker.window_scale(0), c.tracker.window_scale(1)) == (-2, -2)
    c = Conv()
    c.handshake(opts=(ws(2), b""))  # only the SYN: nobody scales
    assert (c.tracker.window_scale(0), c.tracker.window_scale(1)) == (-2, -2)
    c = Conv()
    c(1, 5000, 1001, SYN | ACK, opts=ws(3))  # the SYN was not captured
    assert (c.tracker.window_scale(0), c.tracker.window_scale(1)) == (-1, 3)


def test_initial_rtt():
    c = Conv()
    c(0, 1000, 0, SYN)
    c(1, 5000, 1001, SYN | ACK, after_ms=7)
    c(0, 1001, 5001, after_ms=3)
    assert c.tracker.initial_rtt_ns() == 10 * MS


# -- 1. zero window probe, 2. zero window, 8. zero window probe ACK ---------------------------
def test_zero_window_probe_and_ack():
    c = Conv()
    c.handshake()
    assert c(1, 5001, 1001, win=0) == ZERO_WINDOW
    assert c(0, 1001, 5001, n=1) == ZERO_WINDOW_PROBE
    assert c.tracker.next_seq(0) == 1001  # the probe's byte does not advance nextseq
    assert c(1, 5001, 1001, win=0) == ZERO_WINDOW | ZERO_WINDOW_PROBE_ACK
    assert c(0, 1001, 5001, n=1) == ZERO_WINDOW_PROBE  # the next probe


def test_zero_window_probe_ack_needs_the_same_ack():
    # tshark 4.0.17 has no "the receiver took the probe's byte" case (issue 10745 is newer):
    # ack = lastack + 1 is no probe ACK, and the byte is an unseen segment.
    c = Conv()
    c.handshake()
    c(1, 5001, 1001, win=0)
    c(0, 1001, 5001, n=1)
    assert c(1, 5001, 1002, win=0) == ZERO_WINDOW | ACK_LOST_SEGMENT


def test_zero_window_not_on_syn_fin_rst():
    c = Conv()
    assert c(0, 1000, 0, SYN, win=0) == 0
    assert c(1, 5000, 1001, SYN | ACK, win=0) == 0
    assert c(0, 1001, 5001, RST | ACK, win=0) == 0


# -- 3. lost segment ------------------------------------------------------------------------
def test_lost_segment():
    c = Conv()
    c.handshake()
    assert c(0, 1101, 5001, n=100) == LOST_SEGMENT
    assert c(0, 1201, 5001, n=100) == 0
    assert c(0, 1401, 5001, RST | ACK) == 0  # a RST is never "after a hole"


# -- 4. keep-alive, 7. keep-alive ACK --------------------------------------------------------
def test_keep_alive_and_ack():
    c = Conv()
    c.handshake()
    c(0, 1001, 5001, n=10)
    c(1, 5001, 1011)
    assert c(0, 1010, 5001) == KEEP_ALIVE
    assert c(1, 5001, 1011) == KEEP_ALIVE_ACK
    assert c(0, 1010, 5001, n=1) == KEEP_ALIVE  # with one byte of garbage
    assert c(1, 5001, 1011) == KEEP_ALIVE_ACK


# -- 5. window update -------------------------------------------------------------------------
def test_window_update():
    c = Conv()
    c.handshake()
    assert c(1, 5001, 1001, win=9000) == WINDOW_UPDATE
    assert c(1, 5001, 1001, win=9000) == DUP_ACK


# -- 6. window full ---------------------------------------------------------------------------
def test_window_full_uses_the_peers_scale():
    c = Conv()
    c.handshake(opts=(ws(2), ws(3)))
    c(1, 5001, 1001, win=100)  # the server's window: 100 << 3 = 800 bytes
    assert c(0, 1001, 5001, n=800) == WINDOW_FULL
    assert c(1, 5001, 1801, n=400, win=100) == 0  # the client's last window 8192 << 2 is far away


def test_window_full_right_after_the_handshake_is_unscaled():
    # The SYN-ACK's window is never scaled (issue 14690): until the server sends its first ACK,
    # its window counts as is.
    c = Conv()
    c(0, 1000, 0, SYN, opts=ws(1), win=600)
    c(1, 5000, 1001, SYN | ACK, opts=ws(1), win=1000)
    assert c(0, 1001, 5001, n=1000) == WINDOW_FULL


def test_window_scale_option_outside_the_syn_counts_from_the_next_packet():
    c = Conv()
    c.handshake(opts=(ws(2), ws(2)))
    c(0, 1001, 5001, win=100)
    c(1, 5001, 1001, win=100, opts=ws(5))
    assert c.tracker.window_scale(1) == 5
    assert c(0, 1001, 5001, n=100 << 5) == WINDOW_FULL


def test_no_window_full_while_the_scale_is_unknown():
    c = Conv()
    c(0, 1001, 5001, n=10)  # no handshake: scale unknown (-1)
    c(1, 5001, 1011, win=100)
    assert c(0, 1011, 5001, n=100) == 0


# -- 9. duplicate ACK, 13. fast retransmission ------------------------------------------------
def test_dup_ack_and_fast_retransmission():
    c = Conv(gap_ms=1)
    c.handshake()
    for i in range(4):
        c(0, 1001 + 100 * i, 5001, n=100)
    assert c(1, 5001, 1101) == 0
    assert c(1, 5001, 1101) == DUP_ACK
    assert c(1, 5001, 1101) == DUP_ACK
    assert c(0, 1101, 5001, n=100, after_ms=5) == FAST_RETRANSMISSION


def test_fast_retransmission_needs_20ms():
    c = Conv(gap_ms=1)
    c.handshake()
    for i in range(4):
        c(0, 1001 + 100 * i, 5001, n=100)
    c(1, 5001, 1101)
    c(1, 5001, 1101)
    c(1, 5001, 1101)
    assert c(0, 1101, 5001, n=100, after_ms=30) == RETRANSMISSION


def test_fast_retransmission_armed_by_an_ack_of_unseen_data():
    # tshark 4.0.17: a retransmission carrying an "ACKed unseen" ACK, at the peer's ACK, within
    # 20 ms of it, is a fast retransmission without any duplicate ACK.
    c = Conv()
    c.handshake()
    c(1, 5001, 1001, FIN | ACK)
    c(0, 1001, 5001, n=100)
    assert c(1, 5001, 1301, FIN | ACK, after_ms=0.2) == ACK_LOST_SEGMENT | FAST_RETRANSMISSION


# -- 10. ACKed unseen segment -----------------------------------------------------------------
def test_ack_unseen_reported_once():
    c = Conv()
    c.handshake()
    c(0, 1001, 5001, n=100)
    assert c(1, 5001, 1201) == ACK_LOST_SEGMENT
    assert c(1, 5001, 1301) == 0  # no news from the client: not again
    assert c(0, 1101, 5001, n=100) == SPURIOUS_RETRANSMISSION  # acknowledged already
    assert c(1, 5001, 1401) == 0


def test_ack_unseen_rearmed_by_a_hole():
    c = Conv()
    c.handshake()
    c(0, 1001, 5001, n=100)
    assert c(1, 5001, 1201) == ACK_LOST_SEGMENT
    assert c(0, 1301, 5001, n=100) == LOST_SEGMENT  # a new hole 1101..1301
    assert c(1, 5001, 1101) == 0
    assert c(1, 5001, 1102) == ACK_LOST_SEGMENT  # covers a byte of the hole


def test_ack_unseen_with_a_known_hole_moves_to_nextseq():
    c = Conv()
    c.handshake()
    c(0, 1001, 5001, n=100)
    c(0, 1201, 5001, n=100)  # hole 1101..1201
    assert c(1, 5001, 1151) == ACK_LOST_SEGMENT
    assert c(1, 5001, 1301) == 0
    assert c(1, 5001, 1302) == ACK_LOST_SEGMENT  # beyond the client's nextseq


def test_no_ack_unseen_while_the_peer_sends_duplicate_acks():
    c = Conv()
    c.handshake()
    c(1, 5001, 1001, n=10)
    c(0, 1001, 5001)  # acks nothing of the server's 10 bytes:
    assert c(0, 1001, 5001) == DUP_ACK
    c(0, 1001, 5001, n=100)
    assert c(1, 5011, 1102) == 0
    c(0, 1101, 5011)  # the client's ACK moves: the check is back
    assert c(1, 5011, 1102) == DUP_ACK | ACK_LOST_SEGMENT


def test_ack_unseen_needs_the_ack_flag():
    c = Conv()
    c.handshake()
    assert c(1, 5001, 9999, RST) == 0


# -- 11. spurious retransmission --------------------------------------------------------------
def test_spurious_retransmission():
    c = Conv()
    c.handshake()
    c(0, 1001, 5001, n=100)
    c(1, 5001, 1101)
    assert c(0, 1001, 5001, n=100) == SPURIOUS_RETRANSMISSION
    assert c(0, 1051, 5001, n=100) == RETRANSMISSION  # partly new: not spurious


# -- 12. the gate, 14. out-of-order, 15. retransmission ---------------------------------------
def test_retransmission():
    c = Conv()
    c.handshake()  # initial RTT 200 ms: the out-of-order threshold
    c(0, 1001, 5001, n=100)
    c(0, 1101, 5001, n=100)
    assert c(0, 1001, 5001, n=100, after_ms=300) == RETRANSMISSION


def test_out_of_order_within_3ms_without_initial_rtt():
    c = Conv()
    c(0, 1001, 5001, n=100)  # no handshake: threshold 3 ms
    c(0, 1201, 5001, n=100)
    assert c(0, 1101, 5001, n=100, after_ms=2) == OUT_OF_ORDER
    c(0, 1301, 5001, n=100)
    assert c(0, 1001, 5001, n=100, after_ms=4) == RETRANSMISSION


def test_out_of_order_threshold_is_the_initial_rtt():
    c = Conv()
    c(0, 1000, 0, SYN)
    c(1, 5000, 1001, SYN | ACK, after_ms=20)
    c(0, 1001, 5001, after_ms=30)  # initial RTT 50 ms
    c(0, 1001, 5001, n=100)
    c(0, 1201, 5001, n=100)
    assert c(0, 1101, 5001, n=100, after_ms=40) == OUT_OF_ORDER


def test_duplicate_of_an_unacked_segment_is_out_of_order():
    # tshark 4.0.17 has no pk_already_seen test: a copy of an unacked segment that arrives within
    # the threshold is out-of-order; only a copy of the highest segment's tail is a retransmission.
    c = Conv()
    c(0, 1001, 5001, n=100)
    c(0, 1101, 5001, n=100, after_ms=0.1)
    assert c(0, 1101, 5001, n=100, after_ms=0.1) == RETRANSMISSION
    assert c(0, 1001, 5001, n=100, after_ms=0.1) == OUT_OF_ORDER


def test_keep_alive_with_data_is_new_data():
    c = Conv()
    c.handshake()
    c(0, 1001, 5001, n=10)
    assert c(0, 1010, 5001, n=20) == 0  # seglen > 1 at nextseq-1: advances


def test_syn_retransmission():
    c = Conv()
    c(0, 1000, 0, SYN)
    assert c(0, 1000, 0, SYN) == RETRANSMISSION
    c(1, 5000, 1001, SYN | ACK)
    assert c(1, 5000, 1001, SYN | ACK) == RETRANSMISSION


def test_retransmitted_syn_rewinds_nextseq():
    # issue 17616: a segment counted as "after a hole" before the repeated SYN counts again after it
    c = Conv()
    c(0, 2000, 0, SYN, n=5)  # a SYN with data (TFO)
    assert c(0, 3000, 0, ACK, n=10) == LOST_SEGMENT
    assert c(0, 2000, 0, SYN) == RETRANSMISSION
    assert c.tracker.next_seq(0) == 2006
    assert c(0, 2006, 0, ACK, n=10) == 0


def test_fin_retransmission():
    c = Conv()
    c.handshake()
    c(0, 1001, 5001, FIN | ACK)
    assert c(0, 1001, 5001, FIN | ACK) == RETRANSMISSION


# -- sequence numbers wrap ---------------------------------------------------------------------
def test_wraparound_is_in_order():
    c = Conv()
    isn = 0xFFFFFF00
    c.handshake(isn_c=isn)
    seq = isn + 1
    for _ in range(5):
        assert c(0, seq, 5001, n=100) == 0
        seq += 100
        assert c(1, 5001, seq) == 0
    assert c.tracker.next_seq(0) == seq & 0xFFFFFFFF


def test_time_going_backwards_is_never_within():
    c = Conv()
    c(0, 1001, 5001, n=100)
    c(0, 1201, 5001, n=100)
    assert c(0, 1101, 5001, n=100, after_ms=-50) == RETRANSMISSION


# -- the fast path is the slow path -------------------------------------------------------------
class SlowTracker(TcpTracker):
    """Every packet through all the rules: the reference for the fast path."""

    __slots__ = ()

    def analyze(self, d: int, pkt) -> int:
        f = self._flows
        return self._slow(f[d], f[1 - d], pkt.ts, pkt.seq, pkt.ack, pkt.flags, pkt.window, pkt.options, pkt.seglen)


def _state(t: TcpTracker) -> list:
    return [tuple(getattr(f, s) for s in f.__slots__) for f in t._flows] + [t._mru_syn, t._first_rtt]


_event = st.tuples(
    st.integers(0, 1),  # direction
    st.sampled_from(["new", "ack", "dup", "retrans", "hole", "ackbeyond", "win0", "winup", "ka", "fin", "rst", "syn",
                     "fill"]),
    st.sampled_from([0, 1, 10, 100, 1448]),
    st.sampled_from([0.05, 1, 2.5, 15, 25, 300]),
)


@settings(max_examples=400)  # cheap (1-2 s) and the interesting interleavings are rare
@example(  # a segment length of 2**31 or more (a damaged record) must not take the fast path
    events=[(1, "fill", 0, 0.05), (1, "hole", 0, 0.05), (1, "fill", 0, 0.05)], isn=1000, wsopt=ws(7))
@given(events=st.lists(_event, max_size=40), isn=st.sampled_from([1000, 0xFFFFFF00, 0x7FFFFFF0]),
       wsopt=st.sampled_from([b"", ws(0), ws(7)]))
def test_fast_path_matches_the_rules(events, isn, wsopt):
    interpreted(tr)
    fast, slow = TcpTracker(), SlowTracker()
    nxt = [isn, (isn + 0x10000000) & 0xFFFFFFFF]
    acked = [0, 0]
    win = [8192, 8192]
    t = 1_000_000_000
    packets = [(0, nxt[0], 0, SYN, 0, 8192, wsopt), (1, nxt[1], nxt[0] + 1, SYN | ACK, 0, 8192, wsopt)]
    nxt = [(nxt[0] + 1) & 0xFFFFFFFF, (nxt[1] + 1) & 0xFFFFFFFF]
    acked = [nxt[1], nxt[0]]
    packets.append((0, nxt[0], acked[0], ACK, 0, 8192, b""))
    for d, kind, n, _gap in events:
        seq, ack, flags = nxt[d], acked[d], ACK
        if kind == "new":
            nxt[d] = (nxt[d] + n) & 0xFFFFFFFF
        elif kind == "ack":
            acked[d] = ack = nxt[1 - d]
            n = 0
        elif kind == "dup":
            n = 0
        elif kind == "retrans":
            seq = (seq - max(n, 1)) & 0xFFFFFFFF
        elif kind == "hole":
            seq = nxt[d] = (nxt[d] + 500) & 0xFFFFFFFF
            nxt[d] = (nxt[d] + n) & 0xFFFFFFFF
        elif kind == "ackbeyond":
            acked[d] = ack = (nxt[1 - d] + 1000) & 0xFFFFFFFF
            n = 0
        elif kind in ("win0", "winup"):
            win[d] = 0 if kind == "win0" else 9000
            n = 0
        elif kind == "ka":
            seq = (seq - 1) & 0xFFFFFFFF
            n = min(n, 1)
        elif kind == "fin":
            flags, n = FIN | ACK, 0
            nxt[d] = (nxt[d] + 1) & 0xFFFFFFFF
        elif kind == "rst":
            flags, n = RST | ACK, 0
        elif kind == "fill":  # exactly up to the peer's right edge (scaled or not): window full
            shift = wsopt[-1] if wsopt and n % 2 else 0
            n = (acked[1 - d] + (win[1 - d] << shift) - seq) & 0xFFFFFFFF
            nxt[d] = (nxt[d] + n) & 0xFFFFFFFF
        elif kind == "syn":
            flags, n, seq, ack = SYN, 0, (nxt[d] - 1) & 0xFFFFFFFF, 0
        packets.append((d, seq, ack, flags, n, win[d], b""))
    gaps = [0.05] * 3 + [g for *_x, g in events]
    for frame, ((d, seq, ack, flags, n, w, opts), gap) in enumerate(zip(packets, gaps), 1):
        t += int(gap * MS)
        src, dst, sp, dp = (C, S, 40000, 80) if d == 0 else (S, C, 80, 40000)
        p = TcpPacket(frame, t, src, dst, sp, dp, seq, ack, flags, w, opts, b"", n, 64, 1, True)
        assert fast.analyze(d, p) == slow.analyze(d, p), f"frame {frame}"
        assert _state(fast) == _state(slow), f"frame {frame}"


def test_options_are_parsed_only_on_syn(monkeypatch):
    interpreted(tr)
    calls = []
    real = tr.parse_options
    monkeypatch.setattr(tr, "parse_options", lambda raw: calls.append(raw) or real(raw))
    c = Conv()
    c.handshake(opts=(ws(7), ws(7)))
    sack = b"\x01\x01\x05\x0a" + struct.pack("!II", 2000, 3000)
    c(0, 1001, 5001, n=100, opts=sack)
    c(1, 5001, 1101, opts=sack)
    assert len(calls) == 2
