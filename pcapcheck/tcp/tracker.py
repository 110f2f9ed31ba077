"""Wireshark's per-packet TCP sequence analysis (``tcp.analysis.*``), rule for rule.

One :class:`TcpTracker` follows both directions of one conversation (one ``tcp.stream``) and
returns, for each packet, the bitmask of analysis flags tshark 4.0.17 would set on it with its
default preferences (REFERENCE.md 1.1). The rules and their order are those of
``tcp_analyze_sequence_number()`` in Wireshark's ``epan/dissectors/packet-tcp.c`` (REFERENCE.md
1.3), written here from the reference and checked frame by frame against tshark with
``python -m pcapcheck.crosscheck`` (docs/crosscheck.md lists every remaining difference).

Where tshark 4.0.17 differs from the reference (which follows newer Wireshark), 4.0.17 wins,
because it is the tool users hold pcapcheck's output against:

* out-of-order (rule 14) has neither the ``pk_already_seen`` test nor the ``lastacklen`` nuance:
  a segment that does not advance ``nextseq`` and arrives within the out-of-order threshold of
  the highest segment is out-of-order unless it ends exactly at ``nextseq``;
* fast retransmission (rule 13) only has the duplicate-ACK variant (a): 4.0 has no SACK-based
  (RFC 6675) detection;
* "ACKed unseen segment" (rule 10) keeps the ZWP special case but does not walk the unacked
  list: it moves ``maxseqtobeacked`` to the peer's ``nextseq``.

Wireshark quirks kept on purpose, because they change flags: a sequence or acknowledgment
number of 0 means "not seen yet" (``nextseq``, ``lastack``, ``maxseqtobeacked``); ``lastack``
and the ACK matching take the acknowledgment field even without the ACK flag; arithmetic is
modulo 2**32 (:mod:`pcapcheck.seq`) and time differences are unsigned (a timestamp that goes
backwards never counts as "within 20 ms").

Performance: ``analyze`` runs once per TCP packet. The per-direction state is one ``__slots__``
object of plain ints; options are parsed only on SYNs; the in-order data/ACK path tests a
handful of integers (see docs/crosscheck.md for the measured cost per packet).
"""

from __future__ import annotations

from pcapcheck.seq import MASK, gt, le, lt
from pcapcheck.tcp.options import parse as parse_options

# -- flags ------------------------------------------------------------------------------------
RETRANSMISSION = 1 << 0
FAST_RETRANSMISSION = 1 << 1
SPURIOUS_RETRANSMISSION = 1 << 2
OUT_OF_ORDER = 1 << 3
LOST_SEGMENT = 1 << 4
ACK_LOST_SEGMENT = 1 << 5
DUP_ACK = 1 << 6
ZERO_WINDOW = 1 << 7
ZERO_WINDOW_PROBE = 1 << 8
ZERO_WINDOW_PROBE_ACK = 1 << 9
KEEP_ALIVE = 1 << 10
KEEP_ALIVE_ACK = 1 << 11
WINDOW_UPDATE = 1 << 12
WINDOW_FULL = 1 << 13

FLAG_CODES: dict[int, str] = {
    RETRANSMISSION: "tcp.retransmission",
    FAST_RETRANSMISSION: "tcp.fast-retransmission",
    SPURIOUS_RETRANSMISSION: "tcp.spurious-retransmission",
    OUT_OF_ORDER: "tcp.out-of-order",
    LOST_SEGMENT: "tcp.lost-segment",
    ACK_LOST_SEGMENT: "tcp.ack-unseen",
    DUP_ACK: "tcp.dup-ack",
    ZERO_WINDOW: "tcp.zero-window",
    ZERO_WINDOW_PROBE: "tcp.zero-window-probe",
    ZERO_WINDOW_PROBE_ACK: "tcp.zero-window-probe-ack",
    KEEP_ALIVE: "tcp.keep-alive",
    KEEP_ALIVE_ACK: "tcp.keep-alive-ack",
    WINDOW_UPDATE: "tcp.window-update",
    WINDOW_FULL: "tcp.window-full",
}

# The tshark field each flag sets. tshark also adds ``tcp.analysis.retransmission`` to fast and
# spurious retransmissions (its expert info says "Retransmission" for all three); see
# :func:`tshark_fields`.
TSHARK_FIELDS: dict[int, str] = {
    RETRANSMISSION: "tcp.analysis.retransmission",
    FAST_RETRANSMISSION: "tcp.analysis.fast_retransmission",
    SPURIOUS_RETRANSMISSION: "tcp.analysis.spurious_retransmission",
    OUT_OF_ORDER: "tcp.analysis.out_of_order",
    LOST_SEGMENT: "tcp.analysis.lost_segment",
    ACK_LOST_SEGMENT: "tcp.analysis.ack_lost_segment",
    DUP_ACK: "tcp.analysis.duplicate_ack",
    ZERO_WINDOW: "tcp.analysis.zero_window",
    ZERO_WINDOW_PROBE: "tcp.analysis.zero_window_probe",
    ZERO_WINDOW_PROBE_ACK: "tcp.analysis.zero_window_probe_ack",
    KEEP_ALIVE: "tcp.analysis.keep_alive",
    KEEP_ALIVE_ACK: "tcp.analysis.keep_alive_ack",
    WINDOW_UPDATE: "tcp.analysis.window_update",
    WINDOW_FULL: "tcp.analysis.window_full",
}

_ALL_RETRANSMISSIONS = RETRANSMISSION | FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION


def flag_names(mask: int) -> list[str]:
    """Finding codes of the flags in ``mask``, in bit order."""
    return [code for bit, code in FLAG_CODES.items() if mask & bit]


def tshark_fields(mask: int) -> set[str]:
    """The ``tcp.analysis.*`` fields tshark shows for a packet with these flags."""
    fields = {name for bit, name in TSHARK_FIELDS.items() if mask & bit}
    if mask & _ALL_RETRANSMISSIONS:
        fields.add(TSHARK_FIELDS[RETRANSMISSION])
    return fields


# -- constants from packet-tcp.c --------------------------------------------------------------
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_SFR = _SYN | _FIN | _RST
_SF = _SYN | _FIN
_FAST_RT_NS = 20_000_000  # a retransmission within 20 ms of the 2nd duplicate ACK is "fast"
_OOO_DEFAULT_NS = 3_000_000  # out-of-order threshold when the initial RTT is unknown
# Unacked segments remembered per direction (Wireshark: TCP_MAX_UNACKED_SEGMENTS). Beyond it new
# segments are not remembered, as in Wireshark, which only bounds memory: no flag of tshark 4.0.17
# reads the list (see the module docstring), it only feeds ACK bookkeeping.
MAX_UNACKED = 1000
_MAX_WSCALE = 14  # RFC 7323 2.3: a larger shift is treated as 14
_U64 = (1 << 64) - 1


class _Flow:
    """One direction: ``tcp_flow_t`` plus ``tcp_analyze_seq_flow_info_t`` (REFERENCE.md 1.2)."""

    __slots__ = (
        "base_seq",  # ISN, or seq-1 of the first segment without SYN, or ack-1 of the peer's first ACK
        "base_set",
        "win_scale",  # -1 unknown, -2 no scaling, 0..14
        "window",  # last raw 16-bit window (UINT32_MAX before the first packet)
        "is_first_ack",  # no ACK-without-SYN sent yet: ``window`` is still the unscaled SYN window
        "lastflags",  # analysis flags of this direction's last packet (only KEEP_ALIVE/ZWP are read)
        "nextseq",  # highest seq + len seen (SYN/FIN count 1); 0 = not seen
        "nextseqtime",
        "maxseqtobeacked",  # highest contiguous seq; 0 = not seen
        "lastack",  # 0 = not seen
        "lastacktime",
        "dupacknum",
        "segs",  # unacked segments [seq, nextseq], sorted by seq
    )

    def __init__(self) -> None:
        self.base_seq = 0
        self.base_set = False
        self.win_scale = -1
        self.window = 0xFFFFFFFF
        self.is_first_ack = True
        self.lastflags = 0
        self.nextseq = 0
        self.nextseqtime = 0
        self.maxseqtobeacked = 0
        self.lastack = 0
        self.lastacktime = 0
        self.dupacknum = 0
        self.segs: list[list[int]] = []


class TcpTracker:
    """Both directions of one conversation (one tcp.stream). d = 0 for client->server, 1 for server->client."""

    __slots__ = ("_flows", "_mru_syn", "_first_rtt")

    def __init__(self) -> None:
        self._flows = (_Flow(), _Flow())
        self._mru_syn = 0  # time of the most recent SYN (no ACK); 0 = none
        self._first_rtt = 0  # initial RTT: SYN to the first ACK without SYN; 0 = unknown

    # -- read-only facts ----------------------------------------------------------------------
    def base_seq(self, d: int) -> int | None:
        """Wireshark's ``base_seq`` of direction ``d`` (ISN, or seq-1 without SYN); None if not set."""
        f = self._flows[d]
        return f.base_seq if f.base_set else None

    def next_seq(self, d: int) -> int | None:
        """``nextseq`` of direction ``d``: the highest seq+len seen; None before any segment."""
        n = self._flows[d].nextseq
        return n or None

    def last_ack(self, d: int) -> int | None:
        """The acknowledgment number of direction ``d``'s last packet; None before any (or if 0)."""
        a = self._flows[d].lastack
        return a or None

    def window_scale(self, d: int) -> int:
        """-1 unknown, -2 no scaling, 0..14 the shift announced in direction ``d``'s SYN."""
        return self._flows[d].win_scale

    def initial_rtt_ns(self) -> int:
        """Wireshark's ``tcp.analysis.initial_rtt`` in ns (0 while unknown)."""
        return self._first_rtt

    # -- the analysis -------------------------------------------------------------------------
    def analyze(self, d: int, pkt) -> int:  # noqa: C901 - one function on purpose: it is the hot path
        """Analyze one packet of direction ``d`` (capture order); return its flag bitmask."""
        (_frame, ts, _src, _dst, _sport, _dport, seq, ack, flags, window, options, _payload, seglen,
         _ttl, _ipid, _df) = pkt
        flows = self._flows
        fwd = flows[d]
        rev = flows[1 - d]
        nextseq = fwd.nextseq

        # Fast path: an in-order segment or a new ACK, no SYN/FIN/RST, windows open, nothing
        # acknowledged beyond what we saw, not at the peer's window edge, not a repeat of data the
        # peer acked. None of rules 1-15 can fire; only the bookkeeping below runs.
        if (
            seq == nextseq
            and nextseq
            and not flags & _SFR
            and window
            and rev.window
            and (seglen or ack != fwd.lastack)
            and fwd.base_set
            and rev.base_set
            and (not rev.maxseqtobeacked or not gt(ack, rev.maxseqtobeacked))
        ):
            if seglen:
                end = (seq + seglen) & MASK
                rl = rev.lastack
                if rl and le(end, rl):
                    return self._slow(fwd, rev, ts, seq, ack, flags, window, options, seglen)
                if rev.win_scale != -1:
                    sh = 0 if rev.is_first_ack or rev.win_scale == -2 else rev.win_scale
                    if end == (rl + (rev.window << sh)) & MASK:
                        return self._slow(fwd, rev, ts, seq, ack, flags, window, options, seglen)
                segs = fwd.segs
                if len(segs) < MAX_UNACKED:
                    segs.append([seq, end])
                fwd.nextseq = end
                fwd.nextseqtime = ts
                if seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked:
                    fwd.maxseqtobeacked = end
            elif not fwd.maxseqtobeacked:
                fwd.maxseqtobeacked = nextseq
            if flags & _ACK:
                fwd.is_first_ack = False
                if not self._first_rtt and self._mru_syn:
                    self._first_rtt = ts - self._mru_syn
            if ack != fwd.lastack:
                fwd.dupacknum = 0
            fwd.window = window
            fwd.lastack = ack
            fwd.lastacktime = ts
            fwd.lastflags = 0
            segs = rev.segs
            if segs and lt(segs[0][0], ack):
                _ack_segments(segs, ack)
            return 0
        return self._slow(fwd, rev, ts, seq, ack, flags, window, options, seglen)

    def _slow(self, fwd: _Flow, rev: _Flow, ts: int, seq: int, ack: int, flags: int, window: int,
              options: bytes, seglen: int) -> int:
        """Every rule, in the order of ``tcp_analyze_sequence_number()`` (REFERENCE.md 1.3)."""
        syn = flags & _SYN
        if syn:
            self._syn(fwd, rev, ts, seq, flags, options)
        elif flags & _ACK:
            # The first ACK without SYN ends the handshake: initial RTT, and from now on this
            # direction's window is scaled (issue 14690: the SYN's own window never is).
            if not self._first_rtt and self._mru_syn:
                self._first_rtt = ts - self._mru_syn
        # base_seq: ISN, or seq-1 when the SYN was not seen (bug 1542); the peer's from our ACK.
        if not fwd.base_set:
            fwd.base_seq = seq if syn else (seq - 1) & MASK
            fwd.base_set = True
        if not rev.base_set and flags & _ACK:
            rev.base_seq = (ack - 1) & MASK
            rev.base_set = True

        mask = 0
        nextseq = fwd.nextseq
        lastack = fwd.lastack
        no_sfr = not flags & _SFR

        # 1. zero window probe: one byte at nextseq while the peer's window is closed
        if seglen == 1 and seq == nextseq and rev.window == 0:
            mask = ZERO_WINDOW_PROBE
        else:
            # 2. zero window
            if window == 0 and no_sfr:
                mask |= ZERO_WINDOW
            # 3. lost segment: a hole before this segment
            if nextseq and gt(seq, nextseq) and not flags & _RST:
                mask |= LOST_SEGMENT
            # 4. keep-alive: 0 or 1 byte at nextseq-1
            if seglen <= 1 and seq == (nextseq - 1) & MASK and no_sfr:
                mask |= KEEP_ALIVE
            same = seglen == 0 and seq == nextseq and ack == lastack and no_sfr
            # 5. window update
            if same and window and window != fwd.window:
                mask |= WINDOW_UPDATE
            # 6. window full: the segment fills the peer's advertised window exactly
            if seglen and rev.win_scale != -1 and no_sfr:
                sh = 0 if rev.is_first_ack or rev.win_scale == -2 else rev.win_scale
                if (seq + seglen) & MASK == (rev.lastack + (rev.window << sh)) & MASK:
                    mask |= WINDOW_FULL
            if same and window and window == fwd.window and rev.lastflags & KEEP_ALIVE:
                # 7. keep-alive ACK
                mask |= KEEP_ALIVE_ACK
            elif (seglen == 0 and window == 0 and fwd.window == 0 and seq == nextseq
                  and (ack == lastack or ack == (lastack + 1) & MASK)
                  and rev.lastflags & ZERO_WINDOW_PROBE and no_sfr):
                # 8. zero window probe ACK; a receiver that took the probe's byte acks it (issue 10745)
                mask |= ZERO_WINDOW_PROBE_ACK
                if ack == (lastack + 1) & MASK:
                    rev.nextseq = ack
                    rev.maxseqtobeacked = ack
            elif same and window and window == fwd.window:
                # 9. duplicate ACK
                fwd.dupacknum += 1
                mask |= DUP_ACK
        # finished_fwd
        if ack != lastack:
            fwd.dupacknum = 0

        # 10. ACKed segment that wasn't captured
        if rev.maxseqtobeacked and flags & _ACK and gt(ack, rev.maxseqtobeacked):
            if ack == (lastack + 1) & MASK and seq == nextseq and rev.lastflags & ZERO_WINDOW_PROBE:
                mask |= WINDOW_UPDATE  # the ACK of a zero window probe's byte: the window reopened
            else:
                mask |= ACK_LOST_SEGMENT
                rev.maxseqtobeacked = rev.nextseq

        # 11-15. retransmissions and out-of-order: only segments that occupy sequence space
        if (seglen or flags & _SF) and not mask & KEEP_ALIVE:
            if seglen and rev.lastack and le((seq + seglen) & MASK, rev.lastack):
                # 11. everything in it was already acknowledged
                mask |= SPURIOUS_RETRANSMISSION
            # 12. the gate: did the segment fail to advance nextseq?
            elif nextseq and lt(seq, nextseq) and not (seglen > 1 and (nextseq - 1) & MASK == seq):
                # Time differences are unsigned 64-bit in Wireshark: "earlier" is never "within".
                t = (ts - rev.lastacktime) & _U64
                thres = (self._first_rtt or _OOO_DEFAULT_NS) & _U64
                if t < _FAST_RT_NS and rev.dupacknum >= 2 and rev.lastack == seq:
                    # 13. fast retransmission: answers two or more duplicate ACKs
                    mask |= FAST_RETRANSMISSION
                elif (ts - fwd.nextseqtime) & _U64 < thres and (
                        nextseq != (seq + seglen + (1 if flags & _SF else 0)) & MASK):
                    # 14. out-of-order: close behind the highest segment, not a repeat of its tail
                    mask |= OUT_OF_ORDER
                else:
                    # 15. anything else that went backwards is a retransmission
                    mask |= RETRANSMISSION

        # Remember the segment and advance nextseq / maxseqtobeacked (not for a zero window probe:
        # its byte is not accepted by a closed window).
        end = (seq + seglen) & MASK
        if seglen or flags & _SF:
            if flags & _SF:
                end = (end + 1) & MASK
            segs = fwd.segs
            if len(segs) < MAX_UNACKED:
                _insert_segment(segs, seq, end)
        if not mask & ZERO_WINDOW_PROBE:
            if not fwd.nextseq or gt(end, fwd.nextseq):
                fwd.nextseq = end
                fwd.nextseqtime = ts
            if not fwd.maxseqtobeacked or seq == fwd.maxseqtobeacked:
                fwd.maxseqtobeacked = fwd.nextseq

        if flags & (_SYN | _ACK) == _ACK:
            fwd.is_first_ack = False
        fwd.window = window
        fwd.lastack = ack
        fwd.lastacktime = ts
        fwd.lastflags = mask
        segs = rev.segs
        if segs and lt(segs[0][0], ack):
            _ack_segments(segs, ack)
        return mask

    def _syn(self, fwd: _Flow, rev: _Flow, ts: int, seq: int, flags: int, options: bytes) -> None:
        """Handshake bookkeeping of a SYN or SYN-ACK, done by ``dissect_tcp()`` around the analysis."""
        synack = flags & _ACK
        if not synack:
            self._mru_syn = ts
            # A retransmitted SYN (same ISN) rewinds nextseq to the contiguous edge (issue 17616):
            # a segment counted as "lost" beyond it is counted again.
            if fwd.base_set and seq == fwd.base_seq:
                fwd.nextseq = fwd.maxseqtobeacked
        # verify_tcp_window_scaling(): the window scale option counts only if both sides send it.
        ws = parse_options(options).wscale if options else None
        if ws is not None:
            fwd.win_scale = ws if ws <= _MAX_WSCALE else _MAX_WSCALE
        if fwd.win_scale == -1:
            # this SYN has no WS: nobody scales (the SYN-ACK may be missing, so set both)
            fwd.win_scale = -2
            rev.win_scale = -2
        elif synack and rev.win_scale == -2:
            # WS in the SYN-ACK but not in the SYN: the endpoints will not scale, neither do we
            fwd.win_scale = -2


def _insert_segment(segs: list[list[int]], seq: int, end: int) -> None:
    """Insert [seq, end) keeping ``segs`` sorted by seq (a retransmission goes back in place)."""
    i = len(segs)
    while i and lt(seq, segs[i - 1][0]):
        i -= 1
    segs.insert(i, [seq, end])


def _ack_segments(segs: list[list[int]], ack: int) -> None:
    """Drop the segments ``ack`` covers and trim the one it covers in part.

    Same result as Wireshark's walk over the whole unacked list: ``segs`` is sorted by seq, so
    the walk stops at the first segment that starts at or after ``ack``.
    """
    i = 0
    n = len(segs)
    kept = []
    while i < n and lt(segs[i][0], ack):
        s = segs[i]
        if lt(ack, s[1]):
            s[0] = ack
            kept.append(s)
        i += 1
    segs[:i] = kept
