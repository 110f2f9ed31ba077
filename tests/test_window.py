"""Conntrack's window check (pcapcheck/tcp/window.py): segments built directly, no pcap.

Scenarios are named after the bound they break; the numbers in ``test_overshoot_*`` are those of the
packet trace in kernel commit cf97769c ("netfilter: conntrack: work around exceeded receive window").
A slow reference that keeps one separate state per kernel generation (``RefGeneration``, written from
REFERENCE.md 4.3 in the kernel's literal before()/after() forms; it shares only the state-table data
with window.py) checks that sharing the state until the generations disagree is invisible.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pcapcheck import seq as sq
from pcapcheck.tcp import options as tcp_options
from pcapcheck.tcp import window as w
from pcapcheck.tcp.events import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG
from pcapcheck.tcp.window import ACCEPTED, ConntrackWindow, Judgement

M = sq.MASK


# -- building segments ---------------------------------------------------------------------------


def opts(*, mss: int | None = None, ws: int | None = None, sack_perm: bool = False, ts: int | None = None,
         sack: tuple[tuple[int, int], ...] = ()) -> bytes:  # fmt: skip
    b = b""
    if mss is not None:
        b += struct.pack(">BBH", 2, 4, mss)
    if sack_perm:
        b += b"\x04\x02"
    if ts is not None:
        b += b"\x01\x01\x08\x0a" + struct.pack(">II", ts & M, 0)
    if ws is not None:
        b += b"\x01\x03\x03" + bytes([ws])
    if sack:
        b += b"\x01\x01\x05" + bytes([2 + 8 * len(sack)])
        b += b"".join(struct.pack(">II", left & M, right & M) for left, right in sack)
    return b


class Conv:
    """A client (direction 0) and a server (direction 1) seen through one ConntrackWindow.

    ``nxt[d]`` is the next sequence number side ``d`` sends; by default every segment acknowledges
    everything the peer sent and advertises ``win[d]`` (raw, before scaling).
    """

    def __init__(self, isn_c: int = 1000, isn_s: int = 50000, *, ws_c: int | None = 7, ws_s: int | None = 7,
                 sack_perm: bool = True, ts: bool = True, syn_win_c: int = 64240, syn_win_s: int = 65160,
                 win_c: int = 502, win_s: int = 509, **kw: bool) -> None:  # fmt: skip
        self.cw = ConntrackWindow(**kw)
        self.isn = [isn_c & M, isn_s & M]
        self.nxt = [isn_c & M, isn_s & M]
        self.win = [win_c, win_s]
        self.ws = [ws_c, ws_s]
        self.sack_perm, self.ts = sack_perm, ts
        self.syn_win = [syn_win_c, syn_win_s]
        self.clock = 1

    def options(self, extra: tuple[tuple[int, int], ...] = ()) -> bytes:
        self.clock += 1
        return opts(ts=self.clock if self.ts else None, sack=extra)

    def send(self, d: int, n: int = 0, flags: int = ACK | PSH, *, seq: int | None = None, ack: int | None = None,
             win: int | None = None, options: bytes | None = None) -> Judgement:  # fmt: skip
        if not n and flags == ACK | PSH:
            flags = ACK
        s = self.nxt[d] if seq is None else seq & M
        a = self.nxt[1 - d] if ack is None else ack & M
        if not flags & ACK:
            a = 0
        o = self.options() if options is None else options
        j = self.cw.judge(d, s, a, flags, self.win[d] if win is None else win, n, o)
        if seq is None:
            self.nxt[d] = (s + n + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & M
        return j

    def handshake(self) -> None:
        for d, flags in ((0, SYN), (1, SYN | ACK)):
            o = opts(mss=1460, ws=self.ws[d], sack_perm=self.sack_perm, ts=1 if self.ts else None)
            assert self.send(d, 0, flags, win=self.syn_win[d], options=o) is ACCEPTED
        assert self.send(0) is ACCEPTED
        assert self.cw.conntrack_state == "ESTABLISHED"

    def transfer(self, d: int, total: int, seg: int = 1448, ack_every: int = 2) -> None:
        """``total`` bytes from ``d``, the peer ACKing every ``ack_every`` segments: all must pass."""
        i = 0
        while total > 0:
            n = min(seg, total)
            j = self.send(d, n)
            assert j is ACCEPTED, j
            total -= n
            i += 1
            if i % ack_every == 0 or total == 0:
                j = self.send(1 - d)
                assert j is ACCEPTED, j


# -- the four bounds, both generations ------------------------------------------------------------


def scenario_i(**kw: bool) -> tuple[Conv, Judgement]:
    """A segment far beyond the receiver's advertised window (too far for the overshoot allowance)."""
    c = Conv(**kw)
    c.handshake()
    maxend = c.cw.state(0).td_maxend
    return c, c.send(0, 1448, seq=maxend + 100_000)


def scenario_ii(**kw: bool) -> tuple[Conv, Judgement]:
    """eBay/Kubernetes: a late retransmission of data the server ACKed long ago (no window scaling)."""
    c = Conv(ws_c=None, ws_s=None, win_s=65535, **kw)
    c.handshake()
    c.transfer(0, 400 * 1448)
    return c, c.send(0, 1448, seq=c.isn[0] + 1)


def scenario_iii(**kw: bool) -> tuple[Conv, Judgement]:
    """The client ACKs 1000 bytes the server never sent."""
    c = Conv(**kw)
    c.handshake()
    c.transfer(1, 20 * 1448)
    return c, c.send(0, ack=c.nxt[1] + 1000)


def scenario_iv(**kw: bool) -> tuple[Conv, Judgement]:
    """A very old ACK: acknowledges the first segment after 400 more were sent and acknowledged."""
    c = Conv(ws_c=None, ws_s=None, win_c=65535, **kw)
    c.handshake()
    c.transfer(1, 400 * 1448)
    return c, c.send(0, ack=c.isn[1] + 1 + 1448)


def test_bound_i_is_invalid_on_both_generations() -> None:
    c, j = scenario_i()
    maxend = j.td_maxend
    assert (j.new, j.rule, j.old, j.rule_old) == ("INVALID", "I", "INVALID", "I")
    assert j.bound == maxend + 1 == j.bound_old
    assert j.bytes_over == j.end - maxend == 100_000 + 1448
    assert j.log == f"SEQ is over upper bound {maxend + 1} (over the window of the receiver)"
    assert j.log_old == "SEQ is over the upper bound (over the window of the receiver)"
    assert c.cw.state(0).td_maxend == maxend and not c.cw.forked  # INVALID updates nothing


def test_bound_ii_late_retransmission_new_ignores() -> None:
    c, j = scenario_ii()
    assert (j.new, j.rule) == ("IGNORE", "II")
    lower = j.td_end - j.receiver_td_maxwin
    assert j.bound == lower - 1 and j.bytes_over == lower - j.end > 0
    assert j.log == f"SEQ is under lower bound {lower - 1} (already ACKed data retransmitted)"


def test_bound_ii_late_retransmission_old_invalid() -> None:
    c, j = scenario_ii()
    assert (j.old, j.rule_old) == ("INVALID", "II")
    assert j.log_old == "SEQ is under the lower bound (already ACKed data retransmitted)"
    assert j.bytes_over_old == j.bytes_over
    # the eBay follow-up: the node's stack answers the un-NATed segment with RST (no ACK), seq = its ACK
    assert j.ack == c.nxt[1]
    assert c.send(1, 0, RST, seq=j.ack) is ACCEPTED


def test_bound_iii_ack_of_unsent_data_invalid_on_both() -> None:
    c, j = scenario_iii()
    assert (j.new, j.rule, j.old, j.rule_old) == ("INVALID", "III", "INVALID", "III")
    assert j.bytes_over == 1000 and j.bound == c.nxt[1] + 1
    assert j.log == f"ACK is over upper bound {c.nxt[1] + 1} (ACKed data not seen yet)"
    assert j.log_old == "ACK is over the upper bound (ACKed data not seen yet)"


def test_bound_iv_very_old_ack_new_ignores() -> None:
    c, j = scenario_iv()
    assert (j.new, j.rule) == ("IGNORE", "IV")
    assert j.maxackwindow == 66000  # MAXACKWINDOW: the client's window is below MAXACKWINCONST
    lower = j.receiver_td_end - 66000
    assert j.bound == lower - 1 and j.bytes_over == lower - j.sack > 0
    assert j.log == f"ignored ACK under lower bound {lower - 1} (possible overly delayed)"


def test_bound_iv_very_old_ack_old_invalid() -> None:
    _, j = scenario_iv()
    assert (j.old, j.rule_old) == ("INVALID", "IV")
    assert j.log_old == "ACK is under the lower bound (possible overly delayed ACK)"


def test_ii_and_iii_both_fail_new_reports_iii_old_reports_ii() -> None:
    c = Conv(ws_c=None, ws_s=None, win_s=65535)
    c.handshake()
    c.transfer(0, 400 * 1448)
    j = c.send(0, 1448, seq=c.isn[0] + 1, ack=c.nxt[1] + 5)
    assert (j.new, j.rule, j.old, j.rule_old) == ("INVALID", "III", "INVALID", "II")


def overshoot_conversation(**kw: bool) -> tuple[Conv, Judgement]:
    """Kernel commit cf97769c's trace: the responder sends 1077 bytes past the initiator's window."""
    c = Conv(171, 33211, ws_c=1, ws_s=8, syn_win_c=5840, syn_win_s=65535, win_c=2920, win_s=256, **kw)
    c.handshake()  # initiator window 2920 << 1: the responder may send up to 33212 + 5840 = 39052
    assert c.send(0, 68) is ACCEPTED  # 172:240
    assert c.send(1) is ACCEPTED  # ack 240
    for _ in range(5):  # 33212:39802; the fifth starts at 38484 <= 39052 and ends past it
        assert c.send(1, 1318) is ACCEPTED
    assert c.cw.state(1).td_maxend == 39052
    return c, c.send(1, 326)  # 39802:40128 starts beyond 39052


def test_overshoot_new_ignores_and_records_the_data() -> None:
    c, j = overshoot_conversation()
    assert (j.new, j.rule, j.log) == ("IGNORE", "I", "1077 bytes more than expected")
    assert j.bytes_over == 40128 - 39052
    assert c.cw.state(1).td_end == 40128  # 6.1+ records the data ...
    assert c.cw.forked and c.cw.state(1, old=True).td_end == 39802  # ... pre-6.1 does not


def test_overshoot_old_invalid_then_its_ack_is_over_upper_bound() -> None:
    c, j = overshoot_conversation()
    assert (j.old, j.rule_old) == ("INVALID", "I")
    assert j.log_old == "SEQ is over the upper bound (over the window of the receiver)"
    k = c.send(0, win=5015)  # ack 40128
    assert (k.new, k.old, k.rule_old) == ("ACCEPT", "INVALID", "III")
    assert k.bound_old == 39803  # the kernel logged "ACK is over upper bound 39803"
    assert k.rule is None and k.log is None and k.forked


def test_overshoot_with_the_stable_backport_records_the_data_on_old_too() -> None:
    c, j = overshoot_conversation(old_overshoot_workaround=True)
    assert (j.new, j.old) == ("IGNORE", "INVALID")
    assert j.log_old == "1077 bytes more than expected"
    assert not c.cw.forked
    assert c.send(0, win=5015) is ACCEPTED


@pytest.mark.parametrize("scenario", [scenario_i, scenario_ii, scenario_iii, scenario_iv, overshoot_conversation])
def test_be_liberal_accepts_every_window_failure(scenario) -> None:
    c, j = scenario(be_liberal=True)
    assert j is ACCEPTED
    assert not c.cw.forked


def test_normal_conversation_passes_and_tracks_the_right_edge() -> None:
    c = Conv()
    c.handshake()
    c.transfer(0, 3000)  # request
    c.transfer(1, 500_000)  # response
    assert c.send(1, 0, FIN | ACK) is ACCEPTED
    assert c.send(0, 0, FIN | ACK) is ACCEPTED
    assert c.send(1) is ACCEPTED
    s0, s1 = c.cw.state(0), c.cw.state(1)
    assert (s0.td_end, s1.td_end) == (c.nxt[0], c.nxt[1])
    assert s1.td_maxend == c.nxt[1] + (502 << 7) == c.cw.right_edge(1)  # client's last ack + window << 7
    assert (s0.td_scale, s1.td_scale) == (7, 7)
    assert s0.flags & w.SACK_PERM and s0.flags & w.WINDOW_SCALE and s0.initialised
    assert not c.cw.midstream and not c.cw.forked


# -- window scaling --------------------------------------------------------------------------------


def test_scaled_window_allows_far_more_than_the_raw_field() -> None:
    c = Conv(win_c=1000)  # 1000 << 7 = 128000 bytes
    c.handshake()
    for _ in range(85):  # 123080 bytes in flight, never ACKed: over 1000, under 128000
        assert c.send(1, 1448) is ACCEPTED
    assert c.cw.state(1).td_maxend == c.isn[1] + 1 + 128000


@pytest.mark.parametrize(("ws_c", "ws_s"), [(None, 7), (7, None)])
def test_syn_without_window_scale_means_scale_zero_both_ways(ws_c, ws_s) -> None:
    """RFC 1323 pitfall: one SYN lacks WS, so conntrack scales nothing; a peer that scales anyway
    (e.g. the option was stripped after conntrack saw it) sends past what conntrack thinks is allowed."""
    c = Conv(ws_c=ws_c, ws_s=ws_s, win_c=1000)
    c.handshake()
    assert (c.cw.state(0).td_scale, c.cw.state(1).td_scale) == (0, 0)
    verdicts = [c.send(1, 1448) for _ in range(85)]
    bad = [j for j in verdicts if j is not ACCEPTED]
    assert bad and bad[-1].new == "INVALID" and bad[-1].rule == "I"
    assert bad[0].new == "IGNORE"  # small overshoots first (within the receiver's max window)


def test_window_scale_is_clamped_to_14() -> None:
    c = Conv(ws_c=15, ws_s=14)
    c.handshake()
    assert (c.cw.state(0).td_scale, c.cw.state(1).td_scale) == (14, 14)


def test_syn_windows_are_never_scaled() -> None:
    c = Conv(syn_win_c=1000, syn_win_s=2000)
    for d, flags in ((0, SYN), (1, SYN | ACK)):
        c.send(d, 0, flags, win=c.syn_win[d], options=opts(ws=7, sack_perm=True))
    assert c.cw.state(0).td_maxend == c.isn[0] + 1 + 2000  # the SYN-ACK's 2000, not 2000 << 7
    assert c.send(0, 1448) is ACCEPTED  # the third packet carries data: 0..1448
    assert c.send(0, 600) is ACCEPTED  # 1448..2048 starts inside 2000 (ends past it: allowed)
    assert c.send(0, 100).rule == "I"  # 2048..2148 starts past 2000 (past 2000 << 7 if it were scaled)


# -- SACK ------------------------------------------------------------------------------------------


def test_sack_right_edge_is_used_as_sack_when_permitted() -> None:
    c = Conv()
    c.handshake()
    for _ in range(4):
        c.send(1, 1448)
    base = c.isn[1] + 1
    j = c.send(0, ack=base, options=c.options(((base + 1448, base + 4 * 1448),)))  # first segment lost
    assert j is ACCEPTED
    assert c.cw.state(0).td_maxwin >= (502 << 7) + 3 * 1448  # swin = win + (sack - ack)
    j = c.send(0, ack=base, options=c.options(((base + 1448, c.nxt[1] + 700),)))  # SACKs unsent data
    assert (j.new, j.rule, j.sack, j.ack, j.bytes_over) == ("INVALID", "III", c.nxt[1] + 700, base, 700)


def test_sack_blocks_ignored_without_sack_perm() -> None:
    c = Conv(sack_perm=False)
    c.handshake()
    for _ in range(4):
        c.send(1, 1448)
    base = c.isn[1] + 1
    assert c.send(0, ack=base, options=c.options(((base + 1448, c.nxt[1] + 700),))) is ACCEPTED


def test_nop_nop_sack_without_timestamps_is_read() -> None:
    c = Conv(ts=False)
    c.handshake()
    c.send(1, 1448)
    sack_only = opts(sack=((c.nxt[1] + 10, c.nxt[1] + 20),))
    assert len(sack_only) == 12
    assert c.send(0, options=sack_only).rule == "III"


def test_timestamp_only_options_are_not_parsed(monkeypatch) -> None:
    c = Conv()
    c.handshake()

    def boom(*_a: object) -> int:
        raise AssertionError("parsed a timestamps-only option block")

    monkeypatch.setattr(w, "_sack_right_edge", boom)
    c.transfer(1, 50_000)
    c.transfer(0, 5_000)


# -- sequence wrap ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("isn_c", "isn_s"), [(2**32 - 3000, 2**32 - 100), (2**32 - 1, 0), (0, 2**32 - 1)])
def test_wrapped_sequence_numbers(isn_c: int, isn_s: int) -> None:
    c = Conv(isn_c, isn_s)
    c.handshake()
    c.transfer(0, 100_000)
    c.transfer(1, 300_000)
    assert c.nxt[1] < c.isn[1] or isn_s == 0  # the server's stream crossed 2**32
    j = c.send(1, 1448, seq=c.cw.state(1).td_maxend + 200_000)
    assert (j.new, j.rule) == ("INVALID", "I") and j.bound == (c.cw.state(1).td_maxend + 1) & M


# -- mid-stream, RST, SYN, flags, state --------------------------------------------------------------


def test_midstream_pickup_only_accepts() -> None:
    c = Conv()
    c.nxt = [123_456, 987_654]
    assert c.send(0, 1448) is ACCEPTED
    assert c.cw.midstream
    assert c.send(1, 1448) is ACCEPTED
    for j in (
        c.send(0, 1448, seq=c.nxt[0] + 10_000_000),  # far beyond any window
        c.send(0, 1448, seq=c.nxt[0] - 10_000_000),  # far below
        c.send(1, ack=c.nxt[0] + 5_000_000),  # ACKs unseen data
        c.send(1, ack=c.nxt[0] - 5_000_000),  # very old ACK
        c.send(0, 0, RST, seq=1),
    ):
        assert j is ACCEPTED
    assert c.cw.state(0).flags & w.BE_LIBERAL and c.cw.state(1).flags & w.SACK_PERM


def test_rst_ack_with_zero_ack_is_treated_as_acking_everything() -> None:
    c = Conv()
    c.handshake()
    c.transfer(1, 10_000)
    assert c.send(1, 0, RST | ACK, ack=0) is ACCEPTED


def test_connection_refused_rst_with_seq_zero_in_syn_sent() -> None:
    c = Conv()
    assert c.send(0, 0, SYN, options=opts(mss=1460, ws=7, sack_perm=True)) is ACCEPTED
    assert c.send(1, 0, RST | ACK, seq=0, win=0, options=b"") is ACCEPTED
    c2 = Conv()
    c2.send(0, 0, SYN, options=opts(mss=1460))
    assert c2.send(1, 0, RST, seq=0, win=0, options=b"") is ACCEPTED  # no ACK: pretend it ACKs the SYN


def test_new_syn_in_syn_sent_reinitialises() -> None:
    c = Conv()
    c.send(0, 0, SYN, options=opts(ws=7))
    new_isn = c.isn[0] + 10_000_000
    assert c.send(0, 0, SYN, seq=new_isn, options=opts(ws=7)) is ACCEPTED
    assert c.cw.state(0).td_end == new_isn + 1
    assert c.send(1, 0, SYN | ACK, ack=new_isn + 1, options=opts(ws=7)) is ACCEPTED


def test_syn_after_the_handshake_is_not_window_checked() -> None:
    c = Conv()
    c.handshake()
    c.transfer(0, 5000)
    assert c.send(0, 0, SYN, seq=c.isn[0] + 3_000_000_000) is ACCEPTED  # sIG: a possible new connection
    assert c.send(1, 0, SYN | ACK, seq=c.isn[1]) is ACCEPTED  # retransmitted SYN-ACK (sIG)
    assert c.cw.state(0).td_end == c.nxt[0]


def test_invalid_flag_combinations() -> None:
    c = Conv()
    c.handshake()
    for flags in (SYN | FIN, FIN, SYN | RST, 0, URG, FIN | PSH):
        j = c.send(0, 0, flags, seq=c.nxt[0])
        assert (j.new, j.old, j.rule, j.log) == ("INVALID", "INVALID", "flags", "invalid tcp flag combination")
    assert c.send(0, 0, ACK | ECE | CWR | URG) is ACCEPTED  # PSH/ECE/CWR masked, ACK|URG valid
    assert c.send(0, 100) is ACCEPTED


def test_ack_before_syn_ack_is_a_state_table_invalid() -> None:
    """SYN-ACK never seen (asymmetric routing): conntrack refuses the client's ACK in SYN_SENT."""
    c = Conv()
    c.send(0, 0, SYN, options=opts(ws=7))
    j = c.send(0, 100, ack=c.isn[1] + 1)
    assert (j.new, j.old, j.rule) == ("INVALID", "INVALID", "state")
    assert j.log == "packet (index 3) in dir 0 invalid, state SYN_SENT"


def test_first_packet_direction_is_original() -> None:
    cw = ConntrackWindow()
    assert cw.judge(1, 100, 0, SYN, 1000, 0, opts(ws=2)) is ACCEPTED
    assert cw.judge(0, 900, 101, SYN | ACK, 1000, 0, b"") is ACCEPTED  # reply lacks WS: no scaling
    assert (cw.state(0).td_scale, cw.state(1).td_scale) == (0, 0)
    assert cw.judge(1, 101, 901, ACK, 1000, 0, b"") is ACCEPTED


def test_simultaneous_open() -> None:
    cw = ConntrackWindow()
    o = opts(ws=2, sack_perm=True)
    assert cw.judge(0, 100, 0, SYN, 1000, 0, o) is ACCEPTED
    assert cw.judge(1, 900, 0, SYN, 1000, 0, o) is ACCEPTED
    assert cw.judge(0, 100, 901, SYN | ACK, 1000, 0, o) is ACCEPTED
    assert cw.judge(1, 900, 101, SYN | ACK, 1000, 0, o) is ACCEPTED
    assert cw.judge(1, 901, 101, ACK, 1000, 10, b"") is ACCEPTED
    assert cw.conntrack_state == "ESTABLISHED"


def test_rst_after_fin_skips_validation() -> None:
    c = Conv()
    c.handshake()
    c.send(1, 0, FIN | ACK)
    assert c.send(0, 0, RST, seq=c.nxt[0] + 50_000_000) is ACCEPTED  # tcp_can_early_drop()


# -- properties --------------------------------------------------------------------------------------

isns = st.one_of(st.integers(0, M), st.integers(M - 300_000, M), st.integers(0, 3000))


@st.composite
def well_behaved(draw: st.DrawFn) -> list[tuple[int, int, int, int, int, int, bytes]]:
    """A conversation whose endpoints never send beyond the advertised window, ACK only what they
    received, in order, with random segmentation, windows, scales and ISNs."""
    isn = [draw(isns), draw(isns)]
    ws = [draw(st.none() | st.integers(0, 15)), draw(st.none() | st.integers(0, 15))]
    scaling = ws[0] is not None and ws[1] is not None
    scale = [min(ws[d], 14) if scaling else 0 for d in (0, 1)]
    sack_perm, ts = draw(st.booleans()), draw(st.booleans())
    win_raw = st.one_of(st.integers(0, 65535), st.integers(1, 64))
    segs: list[tuple[int, int, int, int, int, int, bytes]] = []

    def o() -> bytes:
        return opts(ts=len(segs)) if ts else b""

    nxt = [(isn[0] + 1) & M, (isn[1] + 1) & M]
    acked = [nxt[1], nxt[0]]  # what each side last acknowledged
    syn_win = [draw(win_raw), draw(win_raw)]
    segs.append((0, isn[0], 0, SYN, syn_win[0], 0, opts(mss=1460, ws=ws[0], sack_perm=sack_perm, ts=1)))
    segs.append((1, isn[1], nxt[0], SYN | ACK, syn_win[1], 0, opts(mss=1460, ws=ws[1], sack_perm=sack_perm, ts=1)))
    edge = [(nxt[0] + syn_win[1]) & M, nxt[1]]  # how far each side may send (server: nothing yet)
    fin = [False, False]
    for _ in range(draw(st.integers(1, 60))):
        d = draw(st.integers(0, 1))
        if fin[d] and fin[1 - d]:
            break
        room = (edge[d] - nxt[d]) & M
        room = 0 if fin[d] or room >= 2**31 else room  # an edge behind what was sent: nothing to send
        n = min(draw(st.integers(0, 9000)), room)
        flags = ACK | PSH if n else ACK
        # ACK anything between the last ACK and all the peer sent (usually all of it), never less
        peer = nxt[1 - d]
        a = draw(st.sampled_from([peer, peer, (acked[d] + ((peer - acked[d]) & M) // 2) & M]))
        a = sq.max_seq(a, acked[d])
        acked[d] = a
        wr = draw(win_raw)
        if n < room and not fin[d] and draw(st.integers(0, 9)) == 0:  # FIN only inside the window
            flags |= FIN
            fin[d] = True
        segs.append((d, nxt[d], a, flags, wr, n, o()))
        nxt[d] = (nxt[d] + n + (1 if flags & FIN else 0)) & M
        edge[1 - d] = (a + (wr << scale[d])) & M
    return segs


@given(well_behaved())
@example([(0, 4294967295, 0, SYN, 0, 0, b""), (1, 5, 0, SYN | ACK, 0, 0, b""), (0, 0, 6, ACK, 0, 0, b"")])
def test_well_behaved_senders_are_always_accepted(segs) -> None:
    cw = ConntrackWindow()
    for seg in segs:
        j = cw.judge(*seg)
        assert j is ACCEPTED, (seg, j)
    assert not cw.forked and not cw.midstream


# A slow reference: two independent states, one per generation, straight from REFERENCE.md 4.3.


class RefGeneration:
    def __init__(self, new: bool, *, liberal: bool = False) -> None:
        self.new, self.liberal = new, liberal
        self.seen = [dict(end=0, maxend=0, maxwin=0, maxack=0, scale=0, flags=0) for _ in (0, 1)]
        self.state, self.closing, self.simopen, self.orig, self.midstream = w.NONE, False, False, None, False

    def key(self) -> tuple:
        return tuple(tuple(d.values()) for d in self.seen) + (w.STATE_NAMES[self.state],)

    @staticmethod
    def read_syn_options(d: dict, raw: bytes) -> None:
        if raw:
            o = tcp_options.parse(raw)
            d["scale"], d["flags"] = 0, d["flags"] & w.BE_LIBERAL
            if o.sack_perm:
                d["flags"] |= w.SACK_PERM
            if o.wscale is not None:
                d["scale"], d["flags"] = min(o.wscale, 14), d["flags"] | w.WINDOW_SCALE

    def init_sender(self, S: dict, R: dict, end: int, win: int, raw: bytes, reply: bool) -> None:
        S["end"] = S["maxend"] = end
        S["maxwin"] = win if win else 1
        self.read_syn_options(S, raw)
        if reply and not (S["flags"] & w.WINDOW_SCALE and R["flags"] & w.WINDOW_SCALE):
            S["scale"] = R["scale"] = 0

    def move(self, nxt: int, index: int) -> None:
        if nxt == w.SYN_SENT2:
            self.simopen = True
        if nxt == w.SYN_RECV and self.simopen and self.state == w.SYN_RECV and index == 3:
            nxt = w.ESTABLISHED
        if index in (2, 4):
            self.closing = True
        self.state = nxt

    def judge(self, d: int, seq: int, ack: int, flags: int, win: int, plen: int, raw: bytes):
        before, after, add = sq.lt, sq.gt, sq.add
        if flags & (FIN | SYN | RST | ACK | URG) not in w._VALID_FLAGS:
            return "INVALID", "flags"
        end = add(seq, plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0))
        if self.orig is None:  # tcp_new()
            self.orig = d
            S = self.seen[d]
            S["end"], S["maxwin"] = end, win or 1
            if flags & SYN and not flags & ACK:
                S["maxend"] = end
                self.read_syn_options(S, raw)
            else:
                S["maxend"] = add(end, S["maxwin"])
                self.seen[0]["flags"] = self.seen[1]["flags"] = w.SACK_PERM | w.BE_LIBERAL
        reply = d != self.orig
        index = 4 if flags & RST else (1 if flags & ACK else 0) if flags & SYN else 2 if flags & FIN else 3
        nxt = w._TRANSITIONS[reply][index][self.state]
        if nxt == w._IV_UNLESS_CLOSING:
            nxt = w._IG if self.closing else w._IV
        if nxt == w._IG:
            return "ACCEPT", None
        if nxt == w._IV:
            return "INVALID", "state"
        if index == 4 and self.closing:
            return "ACCEPT", None
        S, R = self.seen[d], self.seen[1 - d]
        sack = ack
        if R["flags"] & w.SACK_PERM:
            for _left, right in tcp_options.parse(raw).sack:
                if after(right, sack):
                    sack = right
        if S["maxwin"] == 0:
            if flags & SYN:
                self.init_sender(S, R, end, win, raw, reply)
                if not flags & ACK:
                    self.move(nxt, index)
                    return "ACCEPT", None
            else:
                S["end"] = end
                S["maxwin"] = (win << S["scale"]) or 1
                S["maxend"] = add(end, S["maxwin"])
                if R["maxwin"] == 0:
                    R["end"] = R["maxend"] = sack
                elif sack == add(R["end"], 1):
                    R["end"] = add(R["end"], 1)
        elif flags & SYN and after(end, S["end"]) and self.state in (w.SYN_SENT, w.SYN_RECV):
            self.init_sender(S, R, end, win, raw, reply)
            if reply and not flags & ACK:
                self.move(nxt, index)
                return "ACCEPT", None
        if not flags & ACK or (flags & RST and ack == 0):  # no ACK; broken RST|ACK with ack 0
            ack = sack = R["end"]
        if flags & RST and seq == 0 and self.state == w.SYN_SENT:
            seq = end = S["end"]
        maw = max(S["maxwin"], 66000)
        liberal = self.liberal or S["flags"] & w.BE_LIBERAL

        def fail(verdict: str, rule: str):
            return ("ACCEPT", None) if liberal else (verdict, rule)

        if self.new:
            res = None
            if not before(seq, add(S["maxend"], 1)):
                overshot = (end - S["maxend"] + 1) & M
                if (R["maxwin"] and after(end, add(S["end"], -R["maxwin"] - 1))
                        and after(sack, add(R["end"], -maw - 1)) and overshot <= R["maxwin"]
                        and before(sack, add(R["end"], 1))):  # fmt: skip
                    S["end"], S["flags"] = end, S["flags"] | w.DATA_UNACKNOWLEDGED
                    res = fail("IGNORE", "I")
                else:
                    res = fail("INVALID", "I")
            elif not before(sack, add(R["end"], 1)):
                res = fail("INVALID", "III")
            elif R["maxwin"] and not after(end, add(S["end"], -R["maxwin"] - 1)):
                res = fail("IGNORE", "II")
            elif not after(sack, add(R["end"], -maw - 1)):
                res = fail("IGNORE", "IV")
            if res is not None:
                if res[0] == "ACCEPT":
                    self.move(nxt, index)
                return res
        else:
            in_recv_win = not R["maxwin"] or after(end, add(S["end"], -R["maxwin"] - 1))
            if not (before(seq, add(S["maxend"], 1)) and in_recv_win and before(sack, add(R["end"], 1))
                    and after(sack, add(R["end"], -maw - 1))):  # fmt: skip
                if liberal:
                    self.move(nxt, index)
                    return "ACCEPT", None
                if not before(seq, add(S["maxend"], 1)):
                    return "INVALID", "I"
                return "INVALID", "II" if not in_recv_win else "III" if not before(sack, add(R["end"], 1)) else "IV"
        # in window: update (identical in both generations)
        if not flags & SYN:
            win <<= S["scale"]
        swin = (win + (sack - ack)) & M
        S["maxwin"] = max(S["maxwin"], swin)
        if after(end, S["end"]):
            S["end"], S["flags"] = end, S["flags"] | w.DATA_UNACKNOWLEDGED
        if flags & ACK:
            if not S["flags"] & w.MAXACK_SET:
                S["maxack"], S["flags"] = ack, S["flags"] | w.MAXACK_SET
            elif after(ack, S["maxack"]):
                S["maxack"] = ack
        if R["maxwin"] != 0 and after(end, S["maxend"]):
            R["maxwin"] = (R["maxwin"] + end - S["maxend"]) & M
        if after(add(sack, win), add(R["maxend"], -1)):
            R["maxend"] = add(sack, win + (1 if win == 0 else 0))
        if ack == R["end"]:
            R["flags"] &= ~w.DATA_UNACKNOWLEDGED
        self.move(nxt, index)
        return "ACCEPT", None


@st.composite
def misbehaving(draw: st.DrawFn) -> list[tuple[int, int, int, int, int, int, bytes]]:
    """A well-behaved conversation seen through a lossy, reordering, sometimes hostile path: segments
    (window updates especially) missing from conntrack's view, late duplicates, shifted numbers,
    stray SACK blocks and flags. Small windows make the overshoot fork likely."""
    segs = draw(well_behaved())
    out: list[tuple[int, int, int, int, int, int, bytes]] = []
    deltas = st.sampled_from([1, -1, 1448, -1448, 5000, -70_000, 70_000, 2**31, 300_000])
    for i, seg in enumerate(segs):
        action = draw(st.integers(0, 19)) if i >= 2 else draw(st.sampled_from([99] * 9 + [0]))
        d, seq, ack, flags, win, n, raw = seg
        if action == 0:
            continue  # conntrack never saw it
        if action == 1 and out:
            out.append(draw(st.sampled_from(out)))  # a late duplicate of something earlier
        elif action == 2:
            seq = (seq + draw(deltas)) & M
        elif action == 3:
            ack = (ack + draw(deltas)) & M
        elif action == 4:
            raw = opts(sack=((ack, (ack + draw(deltas)) & M),))
        elif action == 5:
            flags = draw(st.sampled_from([RST, RST | ACK, FIN | ACK, SYN, SYN | ACK, ACK, SYN | FIN]))
        elif action == 6:
            win = draw(st.integers(0, 65535))
        out.append((d, seq, ack, flags, win, n, raw))
    return out


@given(misbehaving(), st.booleans())
def test_shared_state_fork_is_invisible(segs, liberal: bool) -> None:
    cw = ConntrackWindow(be_liberal=liberal)
    new, old = RefGeneration(True, liberal=liberal), RefGeneration(False, liberal=liberal)
    for seg in segs:
        j = cw.judge(*seg)
        assert (j.new, j.rule) == new.judge(*seg), seg
        assert (j.old, j.rule_old) == old.judge(*seg), seg
        assert (j is ACCEPTED) == (j.new == j.old == "ACCEPT")
    for d in (0, 1):
        s = cw.state(d)
        assert (s.td_end, s.td_maxend, s.td_maxwin, s.td_maxack, s.td_scale, s.flags) == new.key()[d]
        if not (liberal or cw.midstream):  # liberal: the shared state follows 6.1+ (docs/window.md)
            o = cw.state(d, old=True)
            assert (o.td_end, o.td_maxend, o.td_maxwin, o.td_maxack, o.td_scale, o.flags) == old.key()[d]
    assert cw.conntrack_state == new.key()[2]


# kernel commit cf97769c's trace (initiator = direction 0), continued until both sides closed
OVERSHOOT_TRACE = [
    (0, 171, 0, SYN, 5840, 0, opts(mss=1330, sack_perm=True, ts=63, ws=1)),
    (1, 33211, 172, SYN | ACK, 65535, 0, opts(mss=1460, sack_perm=True, ts=10, ws=8)),
    (0, 172, 33212, ACK, 2920, 0, opts(ts=68)),
    (0, 172, 33212, ACK | PSH, 2920, 68, opts(ts=279)),
    (1, 33212, 240, ACK, 256, 0, opts(ts=872)),
    *[(1, 33212 + 1318 * k, 240, ACK, 256, 1318, opts(ts=892)) for k in range(5)],
    (1, 39802, 240, ACK | PSH, 256, 326, opts(ts=892)),  # 1077 bytes past the window
    (0, 240, 39802, ACK, 4356, 0, opts(ts=900)),
    (0, 240, 40128, ACK, 5015, 0, opts(ts=901)),  # pre-6.1: "ACK is over upper bound 39803"
    (1, 40128, 240, FIN | ACK, 256, 0, opts(ts=950)),
    (0, 240, 40129, FIN | ACK, 5015, 0, opts(ts=960)),
    (1, 40129, 241, ACK, 256, 0, opts(ts=970)),
]


def test_overshoot_fork_matches_the_reference_and_merges_back() -> None:
    """Deterministic companion of the property above: the fork path is certainly exercised."""
    cw = ConntrackWindow()
    ref_new, ref_old = RefGeneration(True), RefGeneration(False)
    got = []
    for seg in OVERSHOOT_TRACE:
        j = cw.judge(*seg)
        assert (j.new, j.rule) == ref_new.judge(*seg), seg
        assert (j.old, j.rule_old) == ref_old.judge(*seg), seg
        got.append((j.new, j.old, cw.forked))
    assert got[10] == ("IGNORE", "INVALID", True)  # the overshoot forks the state
    assert got[11] == ("ACCEPT", "ACCEPT", True)
    assert got[12] == ("ACCEPT", "INVALID", True)  # pre-6.1 never recorded 39802:40128
    assert got[13] == ("ACCEPT", "ACCEPT", True)  # the FIN covers it: pre-6.1 catches up ...
    assert got[-1] == ("ACCEPT", "ACCEPT", False)  # ... and once the states agree they merge again
    assert cw.state(0) == cw.state(0, old=True) and cw.state(1) == cw.state(1, old=True)
