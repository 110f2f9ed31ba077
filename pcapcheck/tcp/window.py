"""Linux conntrack's TCP window check (``tcp_in_window()``), for both kernel generations.

``ConntrackWindow.judge()`` is called once per TCP segment of one conversation, in capture order, and
says what ``net/netfilter/nf_conntrack_proto_tcp.c`` would have done with it: ACCEPT, IGNORE (kernels
>= 6.1 only) or INVALID, which of Guido van Rooij's four bounds failed, by how many bytes, and the
kernel's log line. An INVALID packet loses its conntrack entry, so NAT does not translate it
(REFERENCE.md 4.4): that is how "out of window" becomes "this packet escaped NAT".

Two generations are modelled (REFERENCE.md 4.3):

* ``new``: kernels >= 6.1 (Florian Westphal's "ignore overly delayed tcp packets"): bounds II and IV and
  the small-overshoot case of bound I are IGNORE (packet keeps its conntrack entry, so it is still
  NATed); bounds I and III are INVALID. Checked in the order I, III, II, IV.
* ``old``: kernels < 6.1: any failed bound is INVALID and updates no state; logged in the order I, II,
  III, IV (the nested ternary).

They share one state until a verdict makes them leave different state behind (6.1's overshoot IGNORE
records the data, the old INVALID does not); only then the state is copied ("forked"), and merged
again once both copies are equal. The model, its simplifications and the NAT recipe are in
docs/window.md.

Hot path: an ACK segment without SYN/FIN/RST after the handshake is judged inline in ``judge()``
with plain int attributes and no option parsing unless the receiver negotiated SACK and the options
can hold a SACK block.
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import Struct
from typing import Final

from pcapcheck.frozen import fast_frozen
from pcapcheck.seq import HALF, MASK, MOD, ge, gt, le
from pcapcheck.tcp import options as tcp_options
from pcapcheck.tcp.events import ACK, FIN, RST, SYN, URG

# ip_ct_tcp_state.flags (include/uapi/linux/netfilter/nf_conntrack_tcp.h)
WINDOW_SCALE: Final = 0x01
SACK_PERM: Final = 0x02
CLOSE_INIT: Final = 0x04
BE_LIBERAL: Final = 0x08
DATA_UNACKNOWLEDGED: Final = 0x10
MAXACK_SET: Final = 0x20

MAXACKWINCONST: Final = 66000  # MAXACKWINDOW(s) = max(s.td_maxwin, MAXACKWINCONST)
TCP_MAX_WSCALE: Final = 14  # RFC 7323 2.3; tcp_options() clamps larger shifts

ACCEPT, IGNORE, INVALID = "ACCEPT", "IGNORE", "INVALID"

# Conntrack states the model keeps. Everything after the handshake (ESTABLISHED, FIN_WAIT, CLOSE_WAIT,
# LAST_ACK, TIME_WAIT, CLOSE) is one state; ``_Track.closing`` remembers an accepted FIN or RST.
NONE, SYN_SENT, SYN_SENT2, SYN_RECV, ESTABLISHED = range(5)
STATE_NAMES: Final = ("NONE", "SYN_SENT", "SYN_SENT2", "SYN_RECV", "ESTABLISHED")

# get_conntrack_index(): which of SYN / SYN-ACK / FIN / ACK / RST the segment is (RST wins, then SYN).
_SYN_SET, _SYNACK_SET, _FIN_SET, _ACK_SET, _RST_SET = range(5)

_IG: Final = -1  # state table sIG: accepted without window check, state untouched ("packet ... ignored")
_IV: Final = -2  # state table sIV: INVALID ("packet (index %d) in dir %d invalid, state %s")
_IV_UNLESS_CLOSING: Final = -3  # REPLY SYN after the handshake: sIV, but a reopen (sSS) from TIME_WAIT

SS: Final = SYN_SENT
S2: Final = SYN_SENT2
SR: Final = SYN_RECV
ES: Final = ESTABLISHED
# tcp_conntracks[dir][index][old_state], reduced to the states above. Columns: NONE, SYN_SENT, SYN_SENT2,
# SYN_RECV, ESTABLISHED-or-later. The NONE column of ORIGINAL is tcp_new(): a SYN opens, anything else is
# picked up mid-stream (the kernel refuses a first SYN-ACK/FIN/RST, but a capture may start anywhere).
# REPLY never starts a conntrack.
_TRANSITIONS: Final = (
    (  # ORIGINAL
        (SS, SS, S2, _IG, _IG),  # SYN: new/retransmitted SYN; sIG once the peer answered (TW/CL reopen: not kept)
        (ES, _IV, SR, SR, _IV),  # SYN-ACK: only in simultaneous open
        (ES, _IV, _IV, ES, ES),  # FIN: "we enforce waiting for a SYN/ACK reply first"
        (ES, _IV, _IV, ES, ES),  # ACK: in SYN_SENT "we haven't seen a SYN/ACK yet"
        (ES, ES, ES, ES, ES),  # RST -> CLOSE
    ),
    (  # REPLY
        (_IV, S2, S2, _IV, _IV_UNLESS_CLOSING),  # SYN: simultaneous open
        (_IV, SR, SR, _IG, _IG),  # SYN-ACK: standard open; later ones are retransmissions (sIG)
        (_IV, _IV, _IV, ES, ES),  # FIN
        (_IV, _IG, _IG, SR, ES),  # ACK: in SYN_SENT possibly a challenge ACK (sIG)
        (_IV, ES, ES, ES, ES),  # RST -> CLOSE
    ),
)

# tcp_error(): valid FIN/SYN/RST/ACK/URG combinations (PSH, ECE and CWR are masked off first).
_FLAG_MASK: Final = FIN | SYN | RST | ACK | URG
_VALID_FLAGS: Final = frozenset({SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG})
_FAST_MASK: Final = FIN | SYN | RST | ACK  # (flags & _FAST_MASK) == ACK: a plain ACK segment, always valid

_NOP_NOP_TS: Final = b"\x01\x01\x08\x0a"  # tcp_sack()'s "fast path for timestamp-only option"
_NOT_DATA_UNACKNOWLEDGED: Final = ~DATA_UNACKNOWLEDGED
_NEG_HALF: Final = -HALF
# The right edges of a SACK option's 1..4 blocks (option length 10, 18, 26, 34), big-endian: one
# unpack_from call instead of int.from_bytes on a slice per block (half the cost for one block)
_SACK_RIGHT_EDGES: Final = {2 + 8 * k: Struct(">" + "4xI" * k).unpack_from for k in range(1, 5)}

# _SEQ_CMP: for sequence numbers a, b in [0, 2**32), d = b - a lies in (-2**32, 2**32) and
#   le(a, b) <=> d mod 2**32 < 2**31 <=> 0 <= d < HALF or d < -HALF;  gt(a, b) <=> not le(a, b);
#   ge(a, b) <=> le(b, a). Usually d is small and the first comparison decides, without the & MASK.

_LOG_OLD: Final = {
    "I": "SEQ is over the upper bound (over the window of the receiver)",
    "II": "SEQ is under the lower bound (already ACKed data retransmitted)",
    "III": "ACK is over the upper bound (ACKed data not seen yet)",
    "IV": "ACK is under the lower bound (possible overly delayed ACK)",
}
_LOG_FLAGS: Final = "invalid tcp flag combination"
_LOG_STATE_OLD: Final = "invalid state"


@fast_frozen  # (one per segment out of window: every segment of a capture of one direction)
@dataclass(frozen=True, slots=True)
class Judgement:
    """What conntrack did with one segment, on kernels >= 6.1 (``new``) and < 6.1 (``old``).

    ``rule``/``bound``/``bytes_over``/``log`` describe the >= 6.1 verdict (``rule`` is None when it is
    ACCEPT), the ``*_old`` fields the < 6.1 one. ``rule`` is "I".."IV" for the four bounds, "flags" for
    tcp_error()'s invalid flag combination, "state" for a state-table INVALID before the handshake
    completed. ``bound`` is the number the 6.1+ log prints (I: td_maxend+1, II: td_end-maxwin-1, III:
    receiver td_end+1, IV: receiver td_end-MAXACKWINDOW-1). ``bytes_over`` is always >= 1 for a failed
    bound: I: end - td_maxend; II: (td_end - receiver td_maxwin) - end; III: sack - receiver td_end;
    IV: (receiver td_end - MAXACKWINDOW) - sack; 0 for "flags"/"state".

    The remaining fields are the values the check used, before this segment changed anything, taken
    from the >= 6.1 state (from the < 6.1 state when only that one failed): ``seq``/``end``/``ack``/
    ``sack`` after conntrack's substitutions (no ACK flag: ack = sack = receiver td_end, ...), the
    sender's ``td_end``/``td_maxend``/``td_maxwin``, the receiver's ``td_end``/``td_maxwin`` and
    MAXACKWINDOW(sender). ``forked``: the two generations hold different state at this point.
    """

    new: str
    old: str
    rule: str | None = None
    rule_old: str | None = None
    bound: int | None = None
    bound_old: int | None = None
    bytes_over: int = 0
    bytes_over_old: int = 0
    log: str | None = None
    log_old: str | None = None
    seq: int = 0
    end: int = 0
    ack: int = 0
    sack: int = 0
    td_end: int = 0
    td_maxend: int = 0
    td_maxwin: int = 0
    receiver_td_end: int = 0
    receiver_td_maxwin: int = 0
    maxackwindow: int = 0
    forked: bool = False


ACCEPTED: Final = Judgement(ACCEPT, ACCEPT)
"""Both generations accept: the common case, returned as this one object (test with ``is``)."""


@dataclass(frozen=True, slots=True)
class DirState:
    """Snapshot of one direction's ``struct ip_ct_tcp_state``.

    ``td_maxend`` is the right edge of the window the peer advertised: the highest sequence number this
    direction may send (the receiver-window line of a time-sequence graph).
    """

    td_end: int
    td_maxend: int
    td_maxwin: int
    td_maxack: int
    td_scale: int
    flags: int

    @property
    def initialised(self) -> bool:
        return self.td_maxwin != 0


class _Dir:
    """Mutable ``struct ip_ct_tcp_state``: ints only, for the hot path."""

    __slots__ = ("td_end", "td_maxend", "td_maxwin", "td_maxack", "td_scale", "flags")

    def __init__(self) -> None:
        self.td_end = self.td_maxend = self.td_maxwin = self.td_maxack = self.td_scale = self.flags = 0

    def copy(self) -> _Dir:
        d = _Dir()
        d.td_end, d.td_maxend, d.td_maxwin = self.td_end, self.td_maxend, self.td_maxwin
        d.td_maxack, d.td_scale, d.flags = self.td_maxack, self.td_scale, self.flags
        return d

    def key(self) -> tuple[int, ...]:
        return (self.td_end, self.td_maxend, self.td_maxwin, self.td_maxack, self.td_scale, self.flags)


class _Track:
    """One generation's ``ct->proto.tcp``: both directions plus the (reduced) conntrack state."""

    __slots__ = ("seen", "state", "closing", "simopen")

    def __init__(self) -> None:
        self.seen = [_Dir(), _Dir()]
        self.state = NONE
        self.closing = False  # an accepted FIN or RST: FIN_WAIT..CLOSE (tcp_can_early_drop())
        self.simopen = False  # IP_CT_TCP_SIMULTANEOUS_OPEN

    def copy(self) -> _Track:
        t = _Track()
        t.seen = [self.seen[0].copy(), self.seen[1].copy()]
        t.state, t.closing, t.simopen = self.state, self.closing, self.simopen
        return t

    def key(self) -> tuple:
        return (self.seen[0].key(), self.seen[1].key(), self.state, self.closing, self.simopen)


def _sack_right_edge(opts: bytes, sack: int) -> int:
    """``tcp_sack()``: the highest right edge of the first well-formed SACK option, if after ``sack``.

    Callers skip it for option blocks that cannot hold a SACK option (shorter than 10 bytes, or exactly
    NOP NOP TS: the kernel's "fast path for timestamp-only option").

    Mirrors the kernel's walk (stop at EOL, a "silly" or a partial option; only the first SACK option
    whose length is 2 + 8n counts) rather than the general parser, whose rules differ on malformed input.
    """
    n = len(opts)
    # The usual layout starts with NOP NOP TS (10 bytes): the walk would step over those 12 bytes.
    i = 12 if n >= 12 and opts[:4] == _NOP_NOP_TS else 0
    while i < n:
        kind = opts[i]
        if kind == 1:  # NOP
            i += 1
            continue
        if kind == 0:  # EOL
            return sack
        if i + 1 >= n:
            return sack
        size = opts[i + 1]
        if size < 2 or i + size > n:
            return sack
        if kind == 5 and size >= 10 and (size - 2) % 8 == 0:
            edges = _SACK_RIGHT_EDGES.get(size)
            if edges is None:  # more blocks than 40 option bytes can hold: not from a real header
                edges = Struct(">" + "4xI" * ((size - 2) // 8)).unpack_from
            for edge in edges(opts, i + 2):
                g = sack - edge
                if not (0 <= g < HALF or g < _NEG_HALF):  # gt(edge, sack), see _SEQ_CMP
                    sack = edge
            return sack
        i += size
    return sack


def _syn_options(d: _Dir, raw: bytes) -> None:
    """``tcp_options()`` on a SYN: window scale (clamped to 14) and SACK-permitted.

    With no option bytes at all the kernel returns before resetting anything, so earlier values stay.
    """
    if not raw:
        return
    o = tcp_options.parse(raw)
    d.td_scale = 0
    d.flags &= BE_LIBERAL
    if o.sack_perm:
        d.flags |= SACK_PERM
    if o.wscale is not None:
        d.td_scale = min(o.wscale, TCP_MAX_WSCALE)
        d.flags |= WINDOW_SCALE


def _init_sender(s: _Dir, r: _Dir, end: int, window: int, options: bytes, reply: bool) -> None:
    """``tcp_init_sender()``: a SYN or SYN-ACK (re)initialises its direction. SYN windows are unscaled."""
    s.td_end = s.td_maxend = end
    s.td_maxwin = window or 1
    _syn_options(s, options)
    # RFC 1323: both sides must send the Window Scale option to enable scaling in either direction.
    if reply and not (s.flags & WINDOW_SCALE and r.flags & WINDOW_SCALE):
        s.td_scale = r.td_scale = 0


def _accept_update(s: _Dir, r: _Dir, flags: int, ack: int, sack: int, end: int, window: int) -> None:
    """The state update ``tcp_in_window()`` makes for an in-window segment (same in both generations)."""
    win = window if flags & SYN else window << s.td_scale  # SYN windows are never scaled
    swin = (win + ((sack - ack) & MASK)) & MASK
    if s.td_maxwin < swin:
        s.td_maxwin = swin
    if gt(end, s.td_end):
        s.td_end = end
        s.flags |= DATA_UNACKNOWLEDGED
    if flags & ACK:
        if not s.flags & MAXACK_SET:
            s.td_maxack = ack
            s.flags |= MAXACK_SET
        elif gt(ack, s.td_maxack):
            s.td_maxack = ack
    if r.td_maxwin and gt(end, s.td_maxend):
        r.td_maxwin = (r.td_maxwin + end - s.td_maxend) & MASK
    edge = (sack + win) & MASK
    if ge(edge, r.td_maxend):  # after(sack + win, td_maxend - 1)
        r.td_maxend = edge if win else (edge + 1) & MASK
    if ack == r.td_end:
        r.flags &= ~DATA_UNACKNOWLEDGED


def _index(flags: int) -> int:
    if flags & RST:
        return _RST_SET
    if flags & SYN:
        return _SYNACK_SET if flags & ACK else _SYN_SET
    if flags & FIN:
        return _FIN_SET
    return _ACK_SET  # tcp_error() already rejected segments with none of SYN/FIN/RST/ACK


# One generation's outcome inside the slow path: None = ACCEPT, else (verdict, rule, bound, bytes, log).
_Outcome = tuple[str, str, "int | None", int, str] | None

_NEW: Final = 1
_OLD: Final = 2
_BOTH: Final = 3


class ConntrackWindow:
    """Both directions of one conversation, judged like conntrack's ``tcp_in_window()``.

    Direction 0 = ORIGINAL (the side that sent the first packet conntrack saw, normally the client's
    SYN), 1 = REPLY. Should the first segment come with direction 1, that direction is taken as
    ORIGINAL: conntrack names directions by the first packet it saw.

    ``be_liberal`` models ``nf_conntrack_tcp_be_liberal=1`` (every window failure is ACCEPT).
    ``old_overshoot_workaround`` models the pre-6.1 stable kernels that received commit cf97769c ("work
    around exceeded receive window", backported to stable series in September 2022): the overshoot
    segment is still INVALID there but its data is recorded, as on 6.1+.
    """

    __slots__ = ("_new", "_old", "_pairs", "_fast", "_forked", "_liberal", "_workaround", "_orig", "_midstream")

    def __init__(self, *, be_liberal: bool = False, old_overshoot_workaround: bool = False) -> None:
        self._new = self._old = _Track()  # _new stays the same object for the conversation's lifetime
        d0, d1 = self._new.seen  # and so do its two _Dir objects (only _old is ever copied)
        self._pairs = ((d0, d1), (d1, d0))  # (sender, receiver) by direction, for judge()'s inline path
        self._fast = False  # judge() may use its inline path
        self._forked = False
        self._liberal = be_liberal
        self._workaround = old_overshoot_workaround
        self._orig = 0
        self._midstream = False

    # -- read-only views for the report ------------------------------------------------------------

    @property
    def midstream(self) -> bool:
        """No SYN opened the conversation: picked up like ``nf_conntrack_tcp_loose=1``, never judged."""
        return self._midstream

    @property
    def forked(self) -> bool:
        """The >= 6.1 and < 6.1 models currently hold different state."""
        return self._forked

    @property
    def closed(self) -> bool:
        """An accepted FIN or RST was seen (FIN_WAIT .. CLOSE): a new SYN reopens the connection."""
        return self._new.closing

    @property
    def conntrack_state(self) -> str:
        """The (reduced) conntrack state of the >= 6.1 model: NONE .. ESTABLISHED (= handshake done)."""
        return STATE_NAMES[self._new.state]

    def state(self, direction: int, *, old: bool = False) -> DirState:
        """Snapshot of one direction (of the < 6.1 model with ``old=True``)."""
        d = (self._old if old else self._new).seen[direction]
        return DirState(d.td_end, d.td_maxend, d.td_maxwin, d.td_maxack, d.td_scale, d.flags)

    def right_edge(self, direction: int) -> int:
        """``td_maxend`` of ``direction`` (>= 6.1 model): how far it may send. Cheap, for per-packet graphs."""
        return self._new.seen[direction].td_maxend

    # -- the check ----------------------------------------------------------------------------------

    def judge(
        self, direction: int, seq: int, ack: int, flags: int, window: int, payload_len: int, options: bytes
    ) -> Judgement:
        """Judge one segment. ``window`` is the raw 16-bit header field, ``payload_len`` the TCP payload
        length on the wire (not what the snaplen kept), ``options`` the raw option bytes."""
        if self._fast and flags & _FAST_MASK == ACK:
            # tcp_in_window() inline for a plain ACK segment after the handshake, both sides known.
            # Sequence numbers are mostly above 2**30, where every int operation allocates: the
            # comparisons of pcapcheck.seq are written out on the plain difference of two sequence
            # numbers (see _SEQ_CMP) and reduced mod 2**32 only when a result is stored. Equalities
            # skip the arithmetic where the outcome is exact anyway (in-order segment: seq == td_end;
            # unchanged ack / right edge).
            s, r = self._pairs[direction]
            sack = ack
            # tcp_sack(): only an option block with a byte 5 (the SACK kind) can hold a SACK option;
            # the shortest is 10 bytes; skip NOP NOP TS like tcp_sack()
            if r.flags & SACK_PERM and 5 in options:
                n = len(options)
                if n >= 10 and (n != 12 or options[:4] != _NOP_NOP_TS):
                    sack = _sack_right_edge(options, ack)
            end = seq + payload_len
            if end > MASK:
                end &= MASK
            maxend = s.td_maxend
            s_end = s.td_end
            r_end = r.td_end
            r_maxwin = r.td_maxwin
            maxwin = s.td_maxwin
            maw = maxwin if maxwin > MAXACKWINCONST else MAXACKWINCONST
            in_order = seq == s_end
            d_i = maxend - seq
            d_iii = r_end - sack
            if (
                # I: before(seq, td_maxend + 1), i.e. le(seq, td_maxend)
                (0 <= d_i < HALF or d_i < _NEG_HALF)
                # III and IV: sack in [r.td_end - MAXACKWINDOW, r.td_end], i.e. (r.td_end - sack) mod
                # 2**32 <= MAXACKWINDOW (one test is exact while MAXACKWINDOW < 2**31; larger windows
                # take the slow path)
                and maw < HALF
                and (0 <= d_iii <= maw or d_iii <= maw - MOD)
                # II: after(end, td_end - r.td_maxwin - 1); for seq == td_end that is len + maxwin < 2**31
                and (payload_len + r_maxwin < HALF if in_order else (end - s_end + r_maxwin) & MASK < HALF)
            ):
                win = window << s.td_scale
                if sack != ack:
                    swin = (win + ((sack - ack) & MASK)) & MASK
                    if maxwin < swin:
                        s.td_maxwin = swin
                elif maxwin < win:
                    s.td_maxwin = win
                if (0 < payload_len < HALF) if in_order else (s_end - end) & MASK >= HALF:  # gt(end, td_end)
                    s.td_end = end
                    s.flags |= DATA_UNACKNOWLEDGED
                if not s.flags & MAXACK_SET:
                    s.td_maxack = ack
                    s.flags |= MAXACK_SET
                else:
                    maxack = s.td_maxack
                    if ack != maxack:
                        g = maxack - ack
                        if not (0 <= g < HALF or g < _NEG_HALF):  # gt(ack, td_maxack)
                            s.td_maxack = ack
                if payload_len:  # without payload end == seq, and I held
                    g = maxend - end
                    if not (0 <= g < HALF or g < _NEG_HALF):  # gt(end, td_maxend)
                        r.td_maxwin = (r_maxwin + end - maxend) & MASK
                edge = sack + win
                if edge > MASK:
                    edge &= MASK
                r_maxend = r.td_maxend
                if edge != r_maxend or not win:
                    g = edge - r_maxend
                    if 0 <= g < HALF or g < _NEG_HALF:  # after(sack + win, td_maxend - 1): ge(edge, td_maxend)
                        r.td_maxend = edge if win else (edge + 1) & MASK
                if ack == r_end:
                    r.flags &= _NOT_DATA_UNACKNOWLEDGED
                return ACCEPTED
        return self._slow(direction, seq, ack, flags, window, payload_len, options)

    def _slow(
        self, direction: int, seq: int, ack: int, flags: int, window: int, payload_len: int, options: bytes
    ) -> Judgement:
        if flags & _FLAG_MASK not in _VALID_FLAGS:
            # tcp_error(): dropped before conntrack looks at state (no conntrack is created either).
            return Judgement(
                INVALID,
                INVALID,
                "flags",
                "flags",
                log=_LOG_FLAGS,
                log_old=_LOG_FLAGS,
                seq=seq,
                end=seq,
                ack=ack,
                sack=ack,
                forked=self._forked,
            )
        if self._new.state == NONE and not self._midstream:
            self._tcp_new(direction, seq, flags, window, payload_len, options)
        if not self._forked:
            t = self._new
            new, old, snap = self._step(t, _BOTH, direction, seq, ack, flags, window, payload_len, options)
        else:
            new, _, snap = self._step(self._new, _NEW, direction, seq, ack, flags, window, payload_len, options)
            _, old, snap_old = self._step(self._old, _OLD, direction, seq, ack, flags, window, payload_len, options)
            if new is None:
                snap = snap_old
            if self._new.key() == self._old.key():
                self._old = self._new
                self._forked = False
        t = self._new
        self._fast = (
            not self._forked and t.state == ESTABLISHED and t.seen[0].td_maxwin != 0 and t.seen[1].td_maxwin != 0
        )
        if new is None and old is None:
            return ACCEPTED
        return _judgement(new, old, snap, self._forked)

    def _tcp_new(self, direction: int, seq: int, flags: int, window: int, payload_len: int, options: bytes) -> None:
        """``tcp_new()``: the first packet creates the conntrack entry; its sender becomes ORIGINAL."""
        self._orig = direction
        s = self._new.seen[direction]
        end = (seq + payload_len + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & MASK
        s.td_end = end
        s.td_maxwin = window or 1
        if flags & SYN and not flags & ACK:
            s.td_maxend = end
            _syn_options(s, options)
        else:
            # Mid-stream pickup (nf_conntrack_tcp_loose=1): "We assume SACK and liberal window
            # checking to handle window scaling". The kernel refuses a first SYN-ACK/FIN/RST; a capture
            # can start anywhere, so those are picked up too.
            s.td_maxend = (end + s.td_maxwin) & MASK
            self._new.seen[0].flags = self._new.seen[1].flags = SACK_PERM | BE_LIBERAL
            self._midstream = True

    def _step(
        self,
        t: _Track,
        gen: int,
        direction: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload_len: int,
        options: bytes,
    ) -> tuple[_Outcome, _Outcome, tuple[int, ...]]:
        """State table plus ``tcp_in_window()`` on one track, for generation ``gen`` (or both, shared)."""
        reply = direction != self._orig
        index = _index(flags)
        old_state = t.state
        nxt = _TRANSITIONS[reply][index][old_state]
        if nxt == _IV_UNLESS_CLOSING:
            nxt = _IG if t.closing else _IV
        if nxt == _IG:
            return None, None, ()
        if nxt == _IV:
            log = f"packet (index {index}) in dir {int(reply)} invalid, state {STATE_NAMES[old_state]}"
            res = (INVALID, "state", None, 0, log)
            return res, (INVALID, "state", None, 0, _LOG_STATE_OLD), (seq, seq, ack, ack, 0, 0, 0, 0, 0, 0)
        if index == _RST_SET and t.closing:
            # tcp_can_early_drop(): a RST in FIN_WAIT..CLOSE skips validation ("tuple might have been
            # re-used already"), kernels >= 5.13; modelled for both generations.
            return None, None, ()

        s = t.seen[direction]
        r = t.seen[direction ^ 1]
        end = (seq + payload_len + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & MASK
        sack = ack
        if r.flags & SACK_PERM:
            n = len(options)
            if n >= 10 and (n != 12 or options[:4] != _NOP_NOP_TS):
                sack = _sack_right_edge(options, ack)

        if s.td_maxwin == 0:
            if flags & SYN:
                _init_sender(s, r, end, window, options, reply)
                if not flags & ACK:  # simultaneous open
                    _transition(t, nxt, index)
                    return None, None, ()
            else:
                # The other side of a picked-up (or half-seen) conversation: use the packet's data.
                s.td_end = end
                swin = window << s.td_scale
                s.td_maxwin = swin or 1
                s.td_maxend = (end + s.td_maxwin) & MASK
                if r.td_maxwin == 0:
                    r.td_end = r.td_maxend = sack  # pass III and IV until the other side is seen
                elif sack == (r.td_end + 1) & MASK:
                    r.td_end = sack  # likely a reply to a keepalive; needed for III
        elif flags & SYN and gt(end, s.td_end) and old_state in (SYN_SENT, SYN_RECV):
            # RFC 793: a reinitialised TCP uses higher sequence numbers; re-read the SYN's options.
            _init_sender(s, r, end, window, options, reply)
            if reply and not flags & ACK:
                _transition(t, nxt, index)
                return None, None, ()

        if not flags & ACK:
            ack = sack = r.td_end  # "If there is no ACK, just pretend it was set and OK."
        elif flags & RST and ack == 0:
            ack = sack = r.td_end  # broken stacks that set ACK in RST with a zero ack value
        if flags & RST and seq == 0 and old_state == SYN_SENT:
            seq = end = s.td_end  # RST answering a SYN

        maxend, s_end, r_end, r_maxwin = s.td_maxend, s.td_end, r.td_end, r.td_maxwin
        maw = s.td_maxwin if s.td_maxwin > MAXACKWINCONST else MAXACKWINCONST
        lower_ii = (s_end - r_maxwin) & MASK
        lower_iv = (r_end - maw) & MASK
        ok_i = le(seq, maxend)  # before(seq, td_maxend + 1)
        ok_iii = le(sack, r_end)  # before(sack, receiver->td_end + 1)
        ok_ii = r_maxwin == 0 or ge(end, lower_ii)  # after(end, td_end - receiver->td_maxwin - 1)
        ok_iv = ge(sack, lower_iv)  # after(sack, receiver->td_end - MAXACKWINDOW(sender) - 1)
        snap = (seq, end, ack, sack, s_end, maxend, s.td_maxwin, r_end, r_maxwin, maw)

        if ok_i and ok_ii and ok_iii and ok_iv:
            _accept_update(s, r, flags, ack, sack, end, window)
            _transition(t, nxt, index)
            return None, None, snap

        overshoot = False
        if not ok_i:
            overshot = (end - maxend + 1) & MASK
            overshoot = r_maxwin != 0 and ok_ii and ok_iv and overshot <= r_maxwin and ok_iii

        # Kernels >= 6.1: I (overshoot -> IGNORE), III, II, IV.
        if not ok_i:
            over = (end - maxend) & MASK
            if overshoot:
                new = (IGNORE, "I", (maxend + 1) & MASK, over, f"{overshot} bytes more than expected")
            else:
                bound = (maxend + 1) & MASK
                new = (INVALID, "I", bound, over, f"SEQ is over upper bound {bound} (over the window of the receiver)")
        elif not ok_iii:
            bound = (r_end + 1) & MASK
            new = (
                INVALID,
                "III",
                bound,
                (sack - r_end) & MASK,
                f"ACK is over upper bound {bound} (ACKed data not seen yet)",
            )
        elif not ok_ii:
            bound = (lower_ii - 1) & MASK
            new = (
                IGNORE,
                "II",
                bound,
                (lower_ii - end) & MASK,
                f"SEQ is under lower bound {bound} (already ACKed data retransmitted)",
            )
        else:
            bound = (lower_iv - 1) & MASK
            new = (
                IGNORE,
                "IV",
                bound,
                (lower_iv - sack) & MASK,
                f"ignored ACK under lower bound {bound} (possible overly delayed)",
            )

        # Kernels < 6.1: INVALID, logged by the first failure in the order I, II, III, IV.
        if not ok_i:
            rule_old = "I"
        elif not ok_ii:
            rule_old = "II"
        elif not ok_iii:
            rule_old = "III"
        else:
            rule_old = "IV"
        if rule_old == new[1]:
            log_old = new[4] if overshoot and self._workaround else _LOG_OLD[rule_old]
            old = (INVALID, rule_old, new[2], new[3], log_old)
        else:  # fails II and III: 6.1+ reports III, the old ternary II
            old = (INVALID, "II", (lower_ii - 1) & MASK, (lower_ii - end) & MASK, _LOG_OLD["II"])

        if self._liberal or s.flags & BE_LIBERAL:
            # nf_tcp_log_invalid() turns every window failure into ACCEPT (the 6.1+ overshoot path has
            # already recorded its data; pre-6.1 records nothing: the shared state follows 6.1+).
            if overshoot and gen != _OLD:
                s.td_end = end
                s.flags |= DATA_UNACKNOWLEDGED
            _transition(t, nxt, index)
            return None, None, snap

        if overshoot:
            # 6.1+ (and patched pre-6.1) record the overshooting data so its ACK passes III later.
            if gen == _BOTH and not self._workaround:
                self._old = t.copy()  # pre-6.1 keeps the state from before the segment: fork
                self._forked = True
            if gen != _OLD or self._workaround:
                s.td_end = end
                s.flags |= DATA_UNACKNOWLEDGED
        if gen == _NEW:
            return new, None, snap
        if gen == _OLD:
            return None, old, snap
        return new, old, snap


def _transition(t: _Track, nxt: int, index: int) -> None:
    """Move the (reduced) conntrack state after an accepted segment."""
    if nxt == SYN_SENT2:
        t.simopen = True
    elif nxt == SYN_RECV and t.simopen and t.state == SYN_RECV and index == _ACK_SET:
        nxt = ESTABLISHED  # REPLY ACK completing a simultaneous open
    if index in (_FIN_SET, _RST_SET):
        t.closing = True
    t.state = nxt


def _judgement(new: _Outcome, old: _Outcome, snap: tuple[int, ...], forked: bool) -> Judgement:
    seq, end, ack, sack, td_end, td_maxend, td_maxwin, r_end, r_maxwin, maw = snap or (0,) * 10
    n_verdict, n_rule, n_bound, n_bytes, n_log = new if new is not None else (ACCEPT, None, None, 0, None)
    o_verdict, o_rule, o_bound, o_bytes, o_log = old if old is not None else (ACCEPT, None, None, 0, None)
    return Judgement(
        n_verdict, o_verdict, n_rule, o_rule, n_bound, o_bound, n_bytes, o_bytes, n_log, o_log,
        seq, end, ack, sack, td_end, td_maxend, td_maxwin, r_end, r_maxwin, maw, forked,
    )  # fmt: skip
