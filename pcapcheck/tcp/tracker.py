"""Wireshark's per-packet TCP sequence analysis (``tcp.analysis.*``), rule for rule.

One :class:`TcpTracker` follows both directions of one conversation (one ``tcp.stream``) and
returns, for each packet, the bitmask of analysis flags tshark 4.0.17 sets on it with its default
preferences (REFERENCE.md 1.1). The rules and their order are those of
``tcp_analyze_sequence_number()`` in Wireshark's ``packet-tcp.c`` (REFERENCE.md 1.3), written
from the reference and then checked frame by frame against tshark: ``python -m
pcapcheck.crosscheck`` on the corpus, plus probe captures built for each rule. docs/crosscheck.md
lists every remaining difference.

Where tshark 4.0.17 behaves differently from REFERENCE.md 1.3 (which follows newer Wireshark),
4.0.17 wins, because it is the tool users hold pcapcheck's output against. Each point below was
measured with a probe capture (docs/crosscheck.md, "What tshark 4.0.17 does"):

* out-of-order (rule 14) has no ``pk_already_seen`` test and no ``lastacklen`` nuance: a
  duplicate of an unacked segment within the threshold is out-of-order; a segment that ends
  exactly at ``nextseq`` is a retransmission.
* fast retransmission (rule 13) has no SACK variants; besides two duplicate ACKs, a retransmission
  that itself carries an "ACKed unseen segment" ACK counts (tshark has more such cases, see
  docs/crosscheck.md).
* zero window probe ACK (rule 8) needs ``ack == lastack`` exactly; neither it nor rule 10 has the
  issue-10745 handling of a consumed probe byte.
* "ACKed unseen segment" (rule 10) reports an ACK beyond the peer's contiguous data once, then
  waits for news from the peer: see :meth:`TcpTracker._slow` and the ``maxseqtobeacked`` notes.
* the unacked-segment list is not kept: no 4.0.17 flag reads it (Wireshark keeps it for RTT,
  ``acks_frame`` and bytes in flight), so the tracker holds a fixed handful of ints per direction.

Wireshark quirks kept on purpose, because they change flags: a sequence or acknowledgment number
of 0 means "not seen yet" (``nextseq``, ``lastack``, ``maxseqtobeacked``); ``lastack`` takes the
acknowledgment field even without the ACK flag; arithmetic is modulo 2**32 (:mod:`pcapcheck.seq`)
and time differences are unsigned 64-bit (a timestamp that goes backwards is never "within").

Performance: ``analyze`` runs once per TCP packet. Per direction one ``__slots__`` object of plain
ints; options are parsed only on SYNs and on the rare segment whose option bytes contain a window
scale option's kind and length (tshark honours WS outside the SYN too; no 4.0.17 flag reads SACK
blocks); an in-order segment, a new ACK or a duplicate ACK takes a fast path of a handful of
integer tests, with the sequence comparisons written out (docs/crosscheck.md gives the measured cost
per packet).
"""

from __future__ import annotations

from typing import Final

from pcapcheck.seq import HALF as _HALF
from pcapcheck.seq import MASK, MOD, gt, le, lt
from pcapcheck.tcp.options import WSCALE
from pcapcheck.tcp.options import parse as parse_options

# -- flags ------------------------------------------------------------------------------------
RETRANSMISSION: Final = 1 << 0
FAST_RETRANSMISSION: Final = 1 << 1
SPURIOUS_RETRANSMISSION: Final = 1 << 2
OUT_OF_ORDER: Final = 1 << 3
LOST_SEGMENT: Final = 1 << 4
ACK_LOST_SEGMENT: Final = 1 << 5
DUP_ACK: Final = 1 << 6
ZERO_WINDOW: Final = 1 << 7
ZERO_WINDOW_PROBE: Final = 1 << 8
ZERO_WINDOW_PROBE_ACK: Final = 1 << 9
KEEP_ALIVE: Final = 1 << 10
KEEP_ALIVE_ACK: Final = 1 << 11
WINDOW_UPDATE: Final = 1 << 12
WINDOW_FULL: Final = 1 << 13

FLAG_CODES: Final[dict[int, str]] = {
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

# The tshark field each flag sets. tshark also shows ``tcp.analysis.retransmission`` on fast and
# spurious retransmissions (one expert info "Retransmission" for all three): see tshark_fields().
TSHARK_FIELDS: Final[dict[int, str]] = {
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

_ANY_RETRANSMISSION: Final = RETRANSMISSION | FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION


def flag_names(mask: int) -> list[str]:
    """Finding codes of the flags in ``mask``, in bit order."""
    return [code for bit, code in FLAG_CODES.items() if mask & bit]


def tshark_fields(mask: int) -> set[str]:
    """The ``tcp.analysis.*`` fields tshark shows on a packet with these flags."""
    fields = {name for bit, name in TSHARK_FIELDS.items() if mask & bit}
    if mask & _ANY_RETRANSMISSION:
        fields.add(TSHARK_FIELDS[RETRANSMISSION])
    return fields


# -- constants of packet-tcp.c ----------------------------------------------------------------
_FIN: Final = 0x01
_SYN: Final = 0x02
_RST: Final = 0x04
_ACK: Final = 0x10
_SFR: Final = _SYN | _FIN | _RST
_SF: Final = _SYN | _FIN
_FAST_RT_NS: Final = 20_000_000  # a retransmission within 20 ms of the peer's last ACK can be "fast"
_OOO_DEFAULT_NS: Final = 3_000_000  # out-of-order threshold while the initial RTT is unknown
_MAX_WSCALE: Final = 14  # RFC 7323 2.3: a larger shift counts as 14
_U64: Final = (1 << 64) - 1  # Wireshark computes time differences in guint64
# A window scale option's kind (WSCALE), then its kind and length: prefilters before parsing the options. The kind
# alone is an int in bytes (a memchr); the timestamps' bytes match it in about a tenth of the packets, and the kind and
# length rule most of those out (find(): `bytes in bytes` tries its operand as an int first and builds and clears a
# TypeError when it is not one, a tenth of a microsecond interpreted, more than 2,000 instructions compiled).
_WS_KIND_LEN: Final = bytes((WSCALE, 3))
_NEG_HALF: Final = -_HALF


class _Flow:
    """One direction: ``tcp_flow_t`` plus ``tcp_analyze_seq_flow_info_t`` (REFERENCE.md 1.2)."""

    __slots__ = (
        "base_seq",  # ISN; seq-1 of the first segment when the SYN was not seen; ack-1 of the peer's first ACK
        "base_set",
        "win_scale",  # -1 unknown, -2 no scaling, 0..14
        "window",  # last raw 16-bit window (UINT32_MAX before the first packet)
        "is_first_ack",  # no ACK without SYN sent yet: ``window`` is still the unscaled SYN window
        "lastflags",  # analysis flags of this direction's last packet (KEEP_ALIVE/ZWP are read)
        "nextseq",  # highest seq + len seen (SYN/FIN count 1); 0 = not seen
        "nextseqtime",
        "maxseqtobeacked",  # highest contiguous seq the peer may ACK without "unseen"; 0 = not armed
        "lastack",  # 0 = not seen
        "lastacktime",
        "dupacknum",  # duplicate ACKs sent in a row
        "rearmed",  # maxseqtobeacked was re-armed at a hole since the last "ACKed unseen" report
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
        self.rearmed = False


class TcpTracker:
    """Both directions of one conversation (one tcp.stream). d = 0 for client->server, 1 for server->client."""

    __slots__ = ("_flows", "_pairs", "_based", "_mru_syn", "_first_rtt")

    def __init__(self) -> None:
        f0, f1 = self._flows = (_Flow(), _Flow())
        self._pairs = ((f0, f1), (f1, f0))  # (fwd, rev) by direction
        self._based = False  # base_set in both directions (set by _slow only, never unset)
        self._mru_syn = 0  # time of the most recent SYN without ACK; 0 = none
        self._first_rtt = 0  # initial RTT: that SYN to the first ACK without SYN; 0 = unknown

    # -- read-only facts ----------------------------------------------------------------------
    def base_seq(self, d: int) -> int | None:
        """Wireshark's ``base_seq`` of direction ``d`` (ISN, or seq-1 without SYN); None if not set yet.

        Set by the first packet of direction ``d`` (SYN: its seq; otherwise seq-1) or, if the peer
        spoke first, by the peer's first packet with the ACK flag (its ack-1). The port reuse rule
        compares a new SYN's seq with it (docs/crosscheck.md, "Stream numbering").
        """
        f = self._flows[d]
        return f.base_seq if f.base_set else None

    def next_seq(self, d: int) -> int | None:
        """``nextseq`` of direction ``d``: the highest seq+len seen (SYN/FIN count 1); None before any."""
        return self._flows[d].nextseq or None

    def last_ack(self, d: int) -> int | None:
        """The acknowledgment field of direction ``d``'s last packet; None before any (or if it was 0)."""
        return self._flows[d].lastack or None

    def window_scale(self, d: int) -> int:
        """-1 unknown, -2 no scaling, 0..14 the shift direction ``d`` announced in its SYN."""
        return self._flows[d].win_scale

    def initial_rtt_ns(self) -> int:
        """Wireshark's ``tcp.analysis.initial_rtt`` in ns; 0 while unknown."""
        return self._first_rtt

    # -- the analysis -------------------------------------------------------------------------
    def analyze(self, d: int, pkt) -> int:
        """Analyze one packet of direction ``d`` (capture order); return its flag bitmask."""
        # A slice of the TcpPacket is a plain tuple: it unpacks without the iterator protocol that
        # unpacking the NamedTuple itself takes (half the cost).
        seq, ack, flags, window, options, _payload, seglen = pkt[6:13]
        return self.segment(d, pkt[1], seq, ack, flags, window, options, seglen)

    def segment(self, d: int, ts: int, seq: int, ack: int, flags: int, window: int, options: bytes,
                seglen: int) -> int:
        """``analyze`` with the fields its caller has already read from the TcpPacket (the pipeline's hot path)."""
        fwd, rev = self._pairs[d]
        nextseq = fwd.nextseq
        # Fast paths: a segment at nextseq; no SYN/FIN/RST; both windows open; base_seq known both
        # ways; no ACK beyond the peer's contiguous data. Then seq == nextseq rules out rules 3, 4 and
        # 12-15, the open windows 1, 2 and 8, the last condition 10. tests/test_tracker.py checks
        # them against _slow() packet by packet. Sequence numbers are compared on their plain
        # difference g, as in pcapcheck.tcp.window (_SEQ_CMP there): for a, b in [0, 2**32) and
        # g = b - a, le(a, b) <=> 0 <= g < HALF or g < -HALF; most of the time the first test decides.
        if seq == nextseq and nextseq and not flags & _SFR and window and rev.window and self._based:
            rx = rev.maxseqtobeacked
            if not rx or 0 <= (g := rx - ack) < _HALF or g < _NEG_HALF:  # rule 10: not gt(ack, rx)
                lastack = fwd.lastack
                if seglen or ack != lastack:
                    # In-order data or a new ACK: "data or a new ACK" rules out 5, 7 and 9; 6 and
                    # 11 are tested here.
                    if seglen:
                        if seglen >= _HALF:  # a length (from a damaged record) so large that the end
                            return self._slow(fwd, rev, ts, seq, ack, flags, window, options, seglen)
                        end = seq + seglen
                        if end > MASK:
                            end &= MASK
                        rl = rev.lastack
                        g = end - rl
                        # rule 11: all of it acknowledged already, le(end, rl): g mod 2**32 is 0 or
                        # above HALF
                        if rl and not (0 < g <= _HALF or g <= _NEG_HALF):
                            return self._slow(fwd, rev, ts, seq, ack, flags, window, options, seglen)
                        ws = rev.win_scale
                        if ws != -1:  # rule 6: it fills the peer's window exactly, g mod 2**32 == w
                            w = rev.window << (0 if rev.is_first_ack or ws == -2 else ws)
                            if w > MASK:
                                w &= MASK
                            if (g if g >= 0 else g + MOD) == w:
                                return self._slow(fwd, rev, ts, seq, ack, flags, window, options, seglen)
                        fwd.nextseq = end
                        fwd.nextseqtime = ts
                    x = fwd.maxseqtobeacked
                    if x == seq if x else ack != lastack:  # the edge moves with us / a new ACK re-arms it
                        fwd.maxseqtobeacked = fwd.nextseq
                    if ack != lastack:
                        fwd.dupacknum = 0
                    mask = 0
                    fwd.window = window
                    fwd.lastack = ack
                elif window == fwd.window:
                    # A bare segment repeating ack and window: a duplicate ACK (rule 9) or, after the
                    # peer's keep-alive, a keep-alive ACK (rule 7). Nothing else fires: 5 needs a new
                    # window, 6 and 11 data; nextseq, maxseqtobeacked, window and lastack stay.
                    if rev.lastflags & KEEP_ALIVE:
                        mask = KEEP_ALIVE_ACK
                    else:
                        fwd.dupacknum += 1
                        mask = DUP_ACK
                else:
                    return self._slow(fwd, rev, ts, seq, ack, flags, window, options, seglen)
                if flags & _ACK:
                    fwd.is_first_ack = False
                    if not self._first_rtt and self._mru_syn:
                        self._first_rtt = ts - self._mru_syn
                fwd.lastacktime = ts
                fwd.lastflags = mask
                if options and WSCALE in options and options.find(_WS_KIND_LEN) >= 0:
                    _late_window_scale(fwd, options)
                return mask
        return self._slow(fwd, rev, ts, seq, ack, flags, window, options, seglen)

    def _slow(self, fwd: _Flow, rev: _Flow, ts: int, seq: int, ack: int, flags: int, window: int,
              options: bytes, seglen: int) -> int:
        """Every rule, in the order of ``tcp_analyze_sequence_number()`` (REFERENCE.md 1.3)."""
        syn = flags & _SYN
        if syn:
            self._syn(fwd, rev, ts, seq, flags, options)
        elif flags & _ACK and not self._first_rtt and self._mru_syn:
            # The first ACK without SYN after a SYN: the initial RTT (out-of-order threshold).
            self._first_rtt = ts - self._mru_syn
        # base_seq: ISN, or seq-1 when the SYN was not seen (bug 1542); the peer's from our first ACK.
        if not fwd.base_set:
            fwd.base_seq = seq if syn else (seq - 1) & MASK
            fwd.base_set = True
        if not rev.base_set and flags & _ACK:
            rev.base_seq = (ack - 1) & MASK
            rev.base_set = True
        self._based = fwd.base_set and rev.base_set

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
            # 3. lost segment: a hole before this segment (a RST is never "after a hole")
            if nextseq and gt(seq, nextseq) and not flags & _RST:
                mask |= LOST_SEGMENT
            # 4. keep-alive: 0 or 1 byte at nextseq-1
            if seglen <= 1 and seq == (nextseq - 1) & MASK and no_sfr:
                mask |= KEEP_ALIVE
            bare = seglen == 0 and seq == nextseq and ack == lastack and no_sfr
            # 5. window update
            if bare and window and window != fwd.window:
                mask |= WINDOW_UPDATE
            # 6. window full: the segment ends exactly at the peer's advertised right edge
            if seglen and rev.win_scale != -1 and no_sfr:
                sh = 0 if rev.is_first_ack or rev.win_scale == -2 else rev.win_scale
                if (seq + seglen) & MASK == (rev.lastack + (rev.window << sh)) & MASK:
                    mask |= WINDOW_FULL
            if bare and window and window == fwd.window:
                if rev.lastflags & KEEP_ALIVE:
                    mask |= KEEP_ALIVE_ACK  # 7. keep-alive ACK
                else:
                    fwd.dupacknum += 1  # 9. duplicate ACK
                    mask |= DUP_ACK
            elif bare and window == 0 and fwd.window == 0 and rev.lastflags & ZERO_WINDOW_PROBE:
                mask |= ZERO_WINDOW_PROBE_ACK  # 8. zero window probe ACK
        # finished_fwd: a new ACK number ends a run of duplicate ACKs
        if ack != lastack:
            fwd.dupacknum = 0
        elif mask & LOST_SEGMENT:
            fwd.dupacknum = 0  # measured: after a hole the peer may report an unseen segment again

        # 10. ACKed segment that wasn't captured: an ACK beyond the peer's contiguous data. Reported
        # once: if the peer's data had a known hole, the check moves on to the peer's nextseq;
        # if not (or the check was re-armed at a hole since the last report), it is disarmed until
        # the peer shows a new hole or a new ACK (end of this method). Not while the peer is
        # sending duplicate ACKs. (tshark 4.0.17 as measured with probe captures; REFERENCE.md
        # 1.3 describes newer Wireshark.)
        x = rev.maxseqtobeacked
        if x and flags & _ACK and gt(ack, x) and not rev.dupacknum:
            mask |= ACK_LOST_SEGMENT
            rev.maxseqtobeacked = 0 if x == rev.nextseq or rev.rearmed else rev.nextseq
            rev.rearmed = False

        # 11-15. retransmission, fast retransmission, out-of-order: segments that occupy seq space
        if (seglen or flags & _SF) and not mask & KEEP_ALIVE:
            if seglen and rev.lastack and le((seq + seglen) & MASK, rev.lastack):
                # 11. everything in it was acknowledged already
                mask |= SPURIOUS_RETRANSMISSION
            # 12. the gate: did it fail to advance nextseq? (a keep-alive with data does advance)
            elif nextseq and lt(seq, nextseq) and not (seglen > 1 and (nextseq - 1) & MASK == seq):
                t = (ts - rev.lastacktime) & _U64
                if t < _FAST_RT_NS and rev.lastack == seq and (rev.dupacknum >= 2 or mask & ACK_LOST_SEGMENT):
                    # 13. fast retransmission: what the peer's duplicate ACKs asked for (or, measured,
                    # a retransmission that itself acknowledges unseen data)
                    mask |= FAST_RETRANSMISSION
                elif ((ts - fwd.nextseqtime) & _U64 < (self._first_rtt or _OOO_DEFAULT_NS) & _U64
                      and nextseq != (seq + seglen + (1 if flags & _SF else 0)) & MASK):
                    # 14. out-of-order: soon after the highest segment, and not a repeat of its tail
                    mask |= OUT_OF_ORDER
                else:
                    # 15. anything else that went backwards
                    mask |= RETRANSMISSION

        # Advance nextseq and maxseqtobeacked; a zero window probe's byte does not count.
        if not mask & ZERO_WINDOW_PROBE:
            end = (seq + seglen + (1 if flags & _SF else 0)) & MASK
            x = fwd.maxseqtobeacked
            if not nextseq or gt(end, nextseq):
                if not nextseq:
                    x = end  # first segment of this direction
                elif not x and seq != nextseq:
                    x = nextseq  # disarmed, and a hole (or a jump) in our data: arm at its start
                    fwd.rearmed = True
                fwd.nextseq = end
                fwd.nextseqtime = ts
            if x:
                if seq == x:
                    # contiguous: move on; but a segment that fills a hole at the edge after the
                    # peer acknowledged beyond its start leaves the edge unknown (measured): disarm
                    x = 0 if nextseq and lt(seq, nextseq) and rev.lastack and lt(seq, rev.lastack) else fwd.nextseq
            elif ack != lastack:
                x = fwd.nextseq  # disarmed, and our ACK moved: arm at our nextseq
            fwd.maxseqtobeacked = x

        if flags & (_SYN | _ACK) == _ACK:
            fwd.is_first_ack = False
        fwd.window = window
        fwd.lastack = ack
        fwd.lastacktime = ts
        fwd.lastflags = mask
        if not syn and options and WSCALE in options and options.find(_WS_KIND_LEN) >= 0:
            _late_window_scale(fwd, options)
        return mask

    def _syn(self, fwd: _Flow, rev: _Flow, ts: int, seq: int, flags: int, options: bytes) -> None:
        """Handshake bookkeeping of a SYN or SYN-ACK that ``dissect_tcp()`` does around the analysis."""
        synack = flags & _ACK
        if not synack:
            self._mru_syn = ts
            # A retransmitted SYN (same ISN, same stream) rewinds nextseq to the contiguous edge
            # (issue 17616): segments beyond a hole are reported as "not captured" again.
            if fwd.base_set and seq == fwd.base_seq:
                fwd.nextseq = fwd.maxseqtobeacked
        # verify_tcp_window_scaling(): window scaling counts only if both SYNs carry the option.
        ws = parse_options(options).wscale if options else None
        if ws is not None:
            fwd.win_scale = ws if ws <= _MAX_WSCALE else _MAX_WSCALE
        if fwd.win_scale == -1:
            # no WS in this SYN: nobody scales (set both: the SYN-ACK may be missing)
            fwd.win_scale = -2
            rev.win_scale = -2
        elif synack and rev.win_scale == -2:
            # WS in the SYN-ACK but not in the SYN: the endpoints do not scale, neither do we
            fwd.win_scale = -2


def _late_window_scale(fwd: _Flow, options: bytes) -> None:
    """A window scale option outside the SYN: tshark 4.0.17 takes it too, from the next packet on."""
    ws = parse_options(options).wscale
    if ws is not None:
        fwd.win_scale = ws if ws <= _MAX_WSCALE else _MAX_WSCALE
