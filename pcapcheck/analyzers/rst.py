"""RST forensics and the conversation's ending (DESIGN.md 4 and 6, INCIDENTS.md 1-3).

:class:`RstAnalyzer` sees every packet of one conversation (``packet``) and keeps a few running
facts per direction: sequence high-water marks, the receiver-side ``rcv_nxt`` estimate, the last
window, TTL range, IP ID series, whether segments carry options, and the last few segments in a
small deque. Only RST and SYN packets get more work (option parsing, a snapshot). After a RST the
next packets are watched for the challenge ACK and for either side still talking.

``finish`` turns each RST into a ``tcp.rst`` finding (origin, effect, trigger, evidence; decision
rules in :mod:`pcapcheck.analyzers.rst_origin`), links it to the HTTP fault or out-of-window
segment it answers, and adds ``tcp.data-after-rst``, ``proto.*`` (:mod:`.mismatch`),
``tcp.midstream`` and ``conversation.end`` (:mod:`.ending`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from pcapcheck import seq as sq
from pcapcheck.analyzers import ending, mismatch
from pcapcheck.analyzers.rst_origin import RstRecord, Seg, SenderStats, Verdict, effect, origin
from pcapcheck.analyzers.window import consequence, rule_phrase
from pcapcheck.findings import Finding, Severity
from pcapcheck.seq import HALF, MASK
from pcapcheck.tcp import options as tcpopt
from pcapcheck.tcp.events import ACK, FIN, RST, SYN
from pcapcheck.tcp.tracker import FAST_RETRANSMISSION, RETRANSMISSION, SPURIOUS_RETRANSMISSION
from pcapcheck.tcp.window import ACCEPTED

HISTORY: Final = 8  # last segments kept per direction (trigger search)
ODD_HISTORY: Final = 4  # last non-ACCEPT segments kept per direction
ODD_REACH: Final = 64  # a non-ACCEPT segment can be the trigger if its sender sent at most this many packets since
MAX_WATCHED: Final = 32  # RSTs observed at the same time
MAX_RST_FINDINGS: Final = 200  # per conversation; the rest are counted in the last one
MAX_DATA_AFTER: Final = 5
IDLE_GAP_NS: Final = 1_000_000_000  # server data this old (and ACKed) means the response is over: phase "idle"
REASON_TEXT_MAX: Final = 200
SIDE: Final = ("client", "server")
# HTTP findings that mean "the peer sent malformed bytes" (not consequences of the reset, like truncation).
MALFORMED: Final = ("http.te", "http.cl", "http.chunk", "http.header", "http.unparseable")
RETRANSMITTED: Final = RETRANSMISSION | FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION
DIRS: Final = ("c2s", "s2c")


def _known(seq: int) -> int | None:
    """A _Side sequence number as RstRecord has it: None while unknown."""
    return seq if seq >= 0 else None


class _Side:
    """What one endpoint sent (non-RST packets only for the fingerprint)."""

    __slots__ = (
        "pkts", "syn_pkts", "nxt", "contig", "ooo", "last_ack", "syn", "fin", "ttl_lo", "ttl_hi", "ipv6",
        "ipid_last", "ipid_zero", "ipid_same", "ipid_small", "ipid_fwd", "without_opts",
        "last_opts", "first_data", "last_data", "last_data_ts", "data_bytes", "recent", "remember", "odd", "rsts",
        "wscale",
        "timestamps", "close_frame", "close_kind", "ipid_maxstep", "last_syn", "close_seq",
        "close_ts", "first_data_ts", "data_pkts", "close_peer_data", "sent_synack",
    )

    def __init__(self) -> None:
        self.pkts = 0  # non-RST packets
        self.syn_pkts = 0  # ... of them SYN or SYN-ACK
        # Sequence numbers, -1 while unknown (not None: compiled code keeps an int attribute unboxed, where an
        # optional one is allocated at every store, and these change with nearly every packet).
        self.nxt = -1  # highest seq + len sent (SYN/FIN count 1)
        self.contig = -1  # the peer's rcv_nxt for this stream: contiguous end, or the peer's ACK
        self.ooo: list[tuple[int, int]] = []
        self.last_ack = -1  # last ACK value this side sent (its rcv_nxt as it announced it)
        self.syn: Seg | None = None  # its first SYN or SYN-ACK
        self.last_syn: Seg | None = None  # its latest SYN or SYN-ACK (retransmissions, retries)
        self.fin: Seg | None = None
        self.ttl_lo = 256
        self.ttl_hi = -1
        self.ipv6 = False
        self.ipid_last: int | None = None  # None: no IP ID seen yet
        self.ipid_zero = 0
        self.ipid_same = 0
        self.ipid_small = 0
        self.ipid_fwd = 0
        self.ipid_maxstep = 0
        self.without_opts = 0
        self.last_opts = b""
        self.first_data: int | None = None
        self.last_data: int | None = None
        self.last_data_ts = 0
        self.data_bytes = 0
        # its last non-RST segments: (packet, judgement or None, index, mask, time of the conversation's previous
        # packet or None). The packet tuple itself is kept rather than a copy of the fields a Seg needs: one
        # entry is built for every packet, and a 5-tuple costs less than a 12-tuple of copied fields. (Its
        # payload stays referenced until the entry leaves, HISTORY packets later; the reassembler's tail
        # holds those bytes for longer anyway.)
        self.recent: deque[tuple] = deque(maxlen=HISTORY)
        # its append, bound once: every non-RST segment calls it (compiled code would look a deque's method up by
        # name at every call)
        self.remember: Callable[[tuple], None] = self.recent.append
        self.odd: deque[tuple] | tuple[()] = ()  # a deque(maxlen=ODD_HISTORY) from the first one (760 bytes)
        self.rsts: list[RstRecord] = []
        self.wscale: int | None = None  # shift offered in its SYN (None: no WS option or no SYN seen)
        self.timestamps = False  # its SYN carried the TS option
        self.close_frame: int | None = None  # first FIN or RST it sent
        self.close_kind: str | None = None
        self.close_seq: int | None = None
        self.close_ts: int | None = None
        self.first_data_ts: int | None = None
        self.data_pkts = 0
        self.close_peer_data: int | None = None  # the peer's data segments before this side first closed
        self.sent_synack = False

    # The last non-RST segment's facts, read from ``recent`` (which every non-RST segment enters)
    # rather than stored for every packet.
    @property
    def win(self) -> int:
        """The last raw window this side advertised (0 before any)."""
        return self.recent[-1][0].window if self.recent else 0

    @property
    def win_syn(self) -> int:
        """Non-zero when that window was in a SYN (never scaled)."""
        return self.recent[-1][0].flags & SYN if self.recent else 0

    @property
    def last_ts(self) -> int | None:
        return self.recent[-1][0].ts if self.recent else None

    # Counts of the non-RST, non-SYN packets, derived rather than counted per packet: the IP ID series
    # takes every one of them over IPv4 (a 4-tuple's address family never changes), and each either
    # carries options or not.
    @property
    def ipid_n(self) -> int:
        return 0 if self.ipv6 else self.pkts - self.syn_pkts

    @property
    def with_opts(self) -> int:
        return self.pkts - self.syn_pkts - self.without_opts

    def ipid_mode(self) -> str:
        n = self.ipid_n
        if n == 0:
            return "ipv6" if self.ipv6 else "none"
        if n == 1:
            return "single"
        if self.ipid_zero == n:
            return "zero"
        steps = n - 1
        if self.ipid_same == steps:
            return "constant"
        if (self.ipid_small + self.ipid_same) * 5 >= steps * 4:
            return "per-connection"
        if (self.ipid_small + self.ipid_same + self.ipid_fwd) * 5 >= steps * 4:
            return "global"
        return "random"


def _seg(t: tuple) -> Seg:
    """The Seg of a ``recent`` / ``odd`` entry."""
    p, judgement, index, mask, _prev = t
    return Seg(p.frame, p.ts, p.seq, p.ack, p.flags, p.seglen, p.ip_id, judgement, index, mask)


class RstAnalyzer:
    """RSTs of one conversation; see the module docstring. ``d`` is 0 for client->server, 1 for server->client."""

    __slots__ = (
        "cid", "addrs", "sides", "_pairs", "established", "midstream_start", "synack_seen", "syn_seen", "last_ts",
        "last_data_dir", "rtt_ns", "syn_ts", "_watch", "_records", "_rst_count",
    )

    def __init__(self, conversation_id: int, client_text: str, server_text: str) -> None:
        self.cid = conversation_id
        self.addrs = (client_text, server_text)
        self.sides = (_Side(), _Side())
        # (sender, receiver) for d = 0 and 1: one subscript per packet instead of two and a subtraction
        self._pairs = (self.sides, self.sides[::-1])
        self.established = False
        self.midstream_start: bool | None = None  # None until the first packet
        self.syn_seen = False
        self.synack_seen = False
        self.last_ts: int | None = None
        self.last_data_dir: int | None = None
        self.rtt_ns: int | None = None
        self.syn_ts: int | None = None
        self._watch: list[RstRecord] = []
        self._records: list[RstRecord] = []
        self._rst_count = 0

    # -- per packet: the hot path -------------------------------------------------------------------
    # Sequence comparisons are inlined here (one call each otherwise, on every packet), with the
    # identities of pcapcheck.seq: gt(a, b) <=> (b - a) & MASK >= HALF, le(a, b) <=> (b - a) & MASK < HALF.
    def packet(self, d: int, pkt: Any, mask: int = 0, judgement: Any = ACCEPTED) -> None:
        frame, ts, _src, _dst, _sp, _dp, seq, ack, flags, _win, options, _pl, n, ttl, ip_id, _df = pkt
        self.segment(d, pkt, frame, ts, seq, ack, flags, options, n, ttl, ip_id, mask, judgement)

    def segment(self, d: int, pkt: Any, frame: int, ts: int, seq: int, ack: int, flags: int, options: bytes, n: int,
                ttl: int, ip_id: int | None, mask: int, judgement: Any) -> None:
        """``packet`` with the fields its caller has already read from the TcpPacket (the pipeline's hot path:
        unpacking the NamedTuple again cost more than passing them)."""
        if self._watch:
            self._observe(d, pkt)
        prev = self.last_ts  # the conversation's previous packet (the gap before this one: ts - prev)
        self.last_ts = ts
        if prev is None:
            self.midstream_start = not flags & SYN
        if flags & RST:
            self._rst(d, pkt, judgement, mask)
            return
        s, r = self._pairs[d]
        # end = seq + len (SYN and FIN count 1), mod 2**32; the sum wraps rarely, so no mask on every packet
        end = seq + n
        if flags & SYN:
            s.syn_pkts += 1
            self._syn(d, s, pkt)
            end += 1
        elif not self.established and flags & ACK:
            self._establish(d, r, ack, ts)
        if flags & FIN:
            end += 1
        if end > MASK:
            end &= MASK
        # sequence high-water marks: in-order segments take the cheap equality paths
        nxt = s.nxt
        if nxt < 0 or (end != nxt and (seq == nxt or ((nxt - end) & MASK) >= HALF)):  # gt(end, nxt)
            s.nxt = end
        c = s.contig
        if c < 0:
            s.contig = end
        elif seq == c:
            if end != c:
                s.contig = end
                if s.ooo:
                    self._drain(s)
        elif end != c and ((c - seq) & MASK) < HALF and ((c - end) & MASK) >= HALF:  # le(seq, c) and gt(end, c)
            s.contig = end
            if s.ooo:
                self._drain(s)
        elif n and ((c - seq) & MASK) >= HALF and len(s.ooo) < 16:  # gt(seq, c)
            s.ooo.append((seq, end))
        if flags & ACK:
            s.last_ack = ack
            rc = r.contig
            if rc < 0:
                r.contig = ack
            elif ack != rc:
                # gt(ack, rc) and less than 2**30 ahead (ack - rc mod 2**32 in (0, 2**30)): the peer
                # received more than was captured
                ahead = ack - rc
                if 0 < ahead < 0x40000000 or ahead < -0xC0000000:
                    r.contig = ack
        index = s.pkts  # packets this side sent before this one
        s.pkts = index + 1
        if ttl < s.ttl_lo:
            s.ttl_lo = ttl
        if ttl > s.ttl_hi:
            s.ttl_hi = ttl
        if ip_id is None:
            s.ipv6 = True
        if not flags & SYN:  # SYNs are not in the IP ID series nor in the option counts (see with_opts)
            # (Linux sends SYN-ACKs from the request socket with ID 0: not the series)
            if ip_id is not None:
                last_id = s.ipid_last
                if last_id is not None:
                    step = ip_id - last_id  # mod 2**16
                    if step < 0:
                        step += 0x10000
                    if step == 0:
                        s.ipid_same += 1
                    elif step <= 8:
                        s.ipid_small += 1
                    elif step < 0x8000:
                        s.ipid_fwd += 1
                        if step > s.ipid_maxstep:
                            s.ipid_maxstep = step
                if ip_id == 0:
                    s.ipid_zero += 1
                s.ipid_last = ip_id
            if options:
                s.last_opts = options
            else:
                s.without_opts += 1
        if n:
            s.data_pkts += 1
            s.data_bytes += n
            s.last_data = frame
            s.last_data_ts = ts
            if s.first_data is None:
                s.first_data = frame
                s.first_data_ts = ts
            self.last_data_dir = d
        if flags & FIN and s.fin is None:
            s.fin = Seg(frame, ts, seq, ack, flags, n, ip_id, None, index, mask)
            if s.close_frame is None:
                s.close_frame, s.close_kind, s.close_seq, s.close_ts = frame, "fin", seq, ts
                s.close_peer_data = r.data_pkts
        if judgement is ACCEPTED or judgement is None:
            s.remember((pkt, None, index, mask, prev))
        else:
            t = (pkt, judgement, index, mask, prev)
            s.remember(t)
            odd = s.odd
            if isinstance(odd, tuple):
                odd = s.odd = deque(maxlen=ODD_HISTORY)
            odd.append(t)

    def _establish(self, d: int, r: _Side, ack: int, ts: int) -> None:
        """Mid-stream pickup, or a non-SYN ACK of the peer's SYN(-ACK): the handshake is complete."""
        if (self.syn_seen or self.synack_seen) and not (self.synack_seen and r.syn is not None and ack == r.syn.end):
            return
        self.established = True
        if d == 0 and self.syn_ts is not None and self.synack_seen and self.rtt_ns is None:
            self.rtt_ns = ts - self.syn_ts

    @staticmethod
    def _drain(s: _Side) -> None:
        moved = True
        while moved and s.ooo:
            moved = False
            c = s.contig  # known: ooo fills only once it is
            for i, (a, b) in enumerate(s.ooo):
                if sq.le(a, c):
                    if sq.gt(b, c):
                        s.contig = b
                    del s.ooo[i]
                    moved = True
                    break

    def _syn(self, d: int, s: _Side, pkt: Any) -> None:
        opts = tcpopt.parse(pkt.options)
        if pkt.flags & ACK:
            self.synack_seen = True
        else:
            self.syn_seen = True
            if self.syn_ts is None:
                self.syn_ts = pkt.ts
        s.last_syn = Seg(pkt.frame, pkt.ts, pkt.seq, pkt.ack, pkt.flags, pkt.seglen, pkt.ip_id, None, s.pkts)
        if pkt.flags & ACK:
            s.sent_synack = True
        if s.syn is None:
            s.syn = s.last_syn
            s.wscale = min(opts.wscale, 14) if opts.wscale is not None else None
            s.timestamps = opts.ts_val is not None

    # -- RST: snapshot now, decide at finish ------------------------------------------------------------
    def _rst(self, d: int, pkt: Any, judgement: Any, mask: int) -> None:
        self._rst_count += 1
        s = self.sides[d]
        r = self.sides[1 - d]
        if s.close_frame is None:
            s.close_frame, s.close_kind, s.close_seq, s.close_ts = pkt.frame, "rst", pkt.seq, pkt.ts
            s.close_peer_data = r.data_pkts
        if len(self._records) >= MAX_RST_FINDINGS:
            return
        opts = tcpopt.parse(pkt.options) if pkt.options else tcpopt.NO_OPTIONS
        trigger, kind = self._trigger(d, pkt)
        idle = trigger_gap = None
        if trigger is not None:
            trigger_gap = next((t[0].ts - t[4] if t[4] is not None else 0 for t in r.recent
                                if t[0].frame == trigger.frame), None)
            idle = trigger_gap
        scale = self._scale(1 - d)
        rcv_wnd = (r.win << scale) if scale is not None and r.pkts else None
        if r.win_syn:
            rcv_wnd = r.win  # the receiver's last segment was its SYN: windows in SYNs are never scaled
        last_ts = None
        if s.last_opts:
            last_ts = tcpopt.parse(s.last_opts).ts_val
        same_rec = next((p for p in s.rsts if p.seq == pkt.seq and p.ack == pkt.ack and p.flags == pkt.flags), None)
        same = same_rec.frame if same_rec is not None else None
        same_trigger = same_rec.trigger.frame if same_rec is not None and same_rec.trigger is not None else None
        nxt = s.nxt
        if s.contig >= 0 and (nxt < 0 or sq.gt(s.contig, nxt)):
            nxt = s.contig
        rec = RstRecord(
            frame=pkt.frame, ts=pkt.ts, d=d, sender=SIDE[d], sender_addr=self.addrs[d], receiver=SIDE[1 - d],
            seq=pkt.seq, ack=pkt.ack, flags=pkt.flags, window=pkt.window, seglen=pkt.seglen,
            payload=bytes(pkt.payload[:REASON_TEXT_MAX * 4]), ttl=pkt.ttl, ip_id=pkt.ip_id,
            option_kinds=opts.kinds, ts_val=opts.ts_val, phase=self._phase(pkt.ts),
            established=self.established, midstream=bool(self.midstream_start),
            stats=SenderStats(),
            sender_nxt=_known(nxt), sender_rcv_nxt=_known(r.contig), sender_last_ack=_known(s.last_ack),
            sender_ts_last=last_ts,
            sender_fin=s.fin, sender_syn=s.syn,
            sender_prior_rst=s.rsts[0].frame if s.rsts else None, sender_same_rst=same,
            sender_same_rst_trigger=same_trigger,
            receiver_syn=r.syn if r.syn is not None and not r.syn.flags & ACK else None,
            receiver_fin=r.fin, receiver_got_synack=s.sent_synack,
            receiver_pkts=r.pkts + len(r.rsts),
            rcv_nxt=_known(s.contig), rcv_wup=_known(r.last_ack), rcv_wnd=rcv_wnd,
            rcv_wnd_raw=r.win if r.pkts else None,
            trigger=trigger, trigger_kind=kind, idle_before_trigger_ns=idle, peer_ipid_mode=r.ipid_mode(),
            rtt_ns=self.rtt_ns,
        )
        rec.stats.ipid_last = s.ipid_last if s.ipid_n else None
        rec.sender_last_data = s.last_data
        rec.sender_last_ts = s.last_ts
        for t in reversed(s.recent):
            if not t[3] & RETRANSMITTED:
                break
            rec.sender_retrans_tail += 1
        s.rsts.append(rec)
        self._records.append(rec)
        if len(self._watch) < MAX_WATCHED:
            self._watch.append(rec)

    def _scale(self, d: int) -> int | None:
        """Window shift of direction d's advertisements: None when no handshake was seen."""
        a, b = self.sides[0].syn, self.sides[1].syn
        if a is None or b is None:
            return None
        s, o = self.sides[d], self.sides[1 - d]
        if s.wscale is None or o.wscale is None:
            return 0
        return s.wscale

    def _trigger(self, d: int, pkt: Any) -> tuple[Seg | None, str]:
        """The segment a RST answers (REFERENCE.md 4.6/4.7)."""
        s, r = self.sides[d], self.sides[1 - d]
        flags = pkt.flags
        syn = r.last_syn
        if syn is not None and not syn.flags & ACK and s.syn is None and not self.established:
            return syn, "syn"
        if not flags & ACK:
            for t in reversed(r.odd):
                if t[0].flags & ACK and t[0].ack == pkt.seq and r.pkts - t[2] <= ODD_REACH:
                    return _seg(t), "ack-match-invalid"
            for t in reversed(r.recent):
                if t[0].flags & ACK and t[0].ack == pkt.seq:
                    return _seg(t), "ack-match"
            return None, "none"
        if pkt.seq == 0:
            for t in reversed(r.recent):
                if not t[0].flags & ACK and _seg(t).end == pkt.ack:
                    return _seg(t), "seq0-reply"
        if r.recent:
            for t in reversed(r.recent):
                if t[0].seglen or t[0].flags & (FIN | SYN):
                    return _seg(t), "last-segment"
            return _seg(r.recent[-1]), "last-segment"
        return None, "none"

    def _phase(self, ts: int) -> str:
        if not self.established:
            return "idle" if self.midstream_start else "handshake"
        c, s = self.sides
        if c.fin is not None or s.fin is not None:
            return "after-fin"
        last = self.last_data_dir
        if last is None:
            return "idle"
        if last == 0:
            return "request"
        if s.nxt >= 0 and c.last_ack >= 0 and sq.lt(c.last_ack, s.nxt):
            return "response"
        gap = IDLE_GAP_NS + (self.rtt_ns or 0)
        return "response" if ts - s.last_data_ts <= gap else "idle"

    # -- after a RST --------------------------------------------------------------------------------
    def _observe(self, d: int, pkt: Any) -> None:
        flags = pkt.flags
        keep = []
        for rec in self._watch:
            rec.watch_left -= 1
            if d == rec.d:
                if flags & RST:
                    if rec.challenge_ack is not None and pkt.seq == rec.challenge_ack and rec.answer_rst is None:
                        rec.answer_rst = pkt.frame
                    if len(rec.later_rsts) < 8:
                        rec.later_rsts.append((pkt.frame, pkt.seq))
                else:
                    if flags & SYN and not flags & ACK:
                        rec.sender_post_syn = True
                    if rec.stats.ipid_next is None and pkt.ip_id is not None:
                        rec.stats.ipid_next = pkt.ip_id
                        rec.stats.ipid_next_ts = pkt.ts
                    if len(rec.talk) < 8:
                        rec.talk.append(pkt.frame)
                        rec.talk_kinds.append(_kind(flags, pkt.seglen))
                    if pkt.seglen:
                        rec.sender_data_n += 1
                        if len(rec.sender_data) < 20:
                            rec.sender_data.append(pkt.frame)
                    end = (pkt.seq + pkt.seglen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & sq.MASK
                    if rec.sender_post_end is None or sq.gt(end, rec.sender_post_end):
                        rec.sender_post_end = end
            else:
                if len(rec.receiver_later) < 8:
                    rec.receiver_later.append(pkt.frame)
                if (rec.challenge_frame is None and len(rec.receiver_later) <= 3 and flags & ACK
                        and not flags & (SYN | FIN | RST) and not pkt.seglen):
                    rec.challenge_frame = pkt.frame
                    rec.challenge_ack = pkt.ack
                if (rec.survived_frame is None and flags & ACK and not flags & RST
                        and rec.sender_post_end is not None
                        and (rec.sender_nxt is None or sq.gt(pkt.ack, rec.sender_nxt))
                        and sq.le(pkt.ack, rec.sender_post_end)):
                    rec.survived_frame = pkt.frame
                if pkt.seglen and not flags & RST:
                    rec.peer_data_n += 1
                    if len(rec.peer_data) < 20:
                        rec.peer_data.append((pkt.frame, pkt.ts))
            if rec.watch_left > 0:
                keep.append(rec)
        self._watch = keep

    # -- the end ----------------------------------------------------------------------------------------
    def finish(
        self,
        findings: Sequence[Finding] = (),
        heads: tuple[bytes, bytes] = (b"", b""),
        fin_frames: tuple[int | None, int | None] = (None, None),
        capture_ended: bool = False,
        midstream: bool = False,
        client_guessed: bool = False,
        reuse_of: int | None = None,
    ) -> tuple[str, str, list[Finding]]:
        out: list[Finding] = []
        summaries: list[ending.RstSummary] = []
        reset_by: int | None = None
        dead: list[tuple[int, str] | None] = [None, None]  # per side: its own reset destroyed its socket
        for rec in self._records:
            self._final_stats(rec)
            retry = rec.trigger_kind == "syn" and rec.trigger is not None
            if reset_by is not None and not (retry and rec.trigger is not None and rec.trigger.frame > reset_by):
                rec.prior_reset_frame = reset_by
            rec.receiver_dead = dead[1 - rec.d] if not retry else None
            v = origin(rec)
            v.effect, v.effect_reason = effect(rec)
            self._late_peer_data(rec, v)
            self._unread_from_http(rec, v, findings)
            # A reset followed by a new SYN from its sender hit an older incarnation of the 4-tuple.
            superseded = rec.sender_post_syn
            if v.effect == "accepted" and rec.prior_reset_frame is None and not superseded:
                reset_by = rec.frame
            if dead[rec.d] is None and v.origin not in ("injected", "rejected", "unknown"):
                dead[rec.d] = (rec.frame, v.origin)
            summaries.append(ending.RstSummary(rec.frame, rec.sender, v.origin, v.effect, rec.phase, superseded))
            rec.verdict = v
        # (without a byte from the client there is nothing to tell: detect's first test, before the facts are made)
        proto = mismatch.detect(self.cid, self._mismatch_facts(heads)) if heads[0] else []
        for rec in self._records:
            if rec.verdict is not None:
                out.append(self._rst_finding(rec, rec.verdict, [*findings, *proto]))
        if self._rst_count > len(self._records) and out:
            last = out[-1]
            extra = self._rst_count - len(self._records)
            out[-1] = Finding(last.code, last.severity, last.message + f" ({extra} more RSTs not analysed)",
                              last.conversation, last.direction, last.frames, {**last.detail, "more": extra},
                              last.rule)
        out.extend(self._data_after())
        out.extend(proto)
        if midstream and not any(f.code == "tcp.midstream" for f in findings):
            out.append(self._midstream(client_guessed, findings))
        c, s = self.sides
        facts = ending.EndFacts(
            syn_frame=c.syn.frame if c.syn is not None and not c.syn.flags & ACK else None,
            synack_frame=s.syn.frame if s.syn is not None and s.syn.flags & ACK else None,
            established=self.established, midstream=midstream,
            fin_frames=(fin_frames[0] if fin_frames[0] is not None else (c.fin.frame if c.fin else None),
                        fin_frames[1] if fin_frames[1] is not None else (s.fin.frame if s.fin else None)),
            rsts=tuple(summaries), capture_ended=capture_ended, packets=(c.pkts + len(c.rsts), s.pkts + len(s.rsts)),
        )
        end, sentence, detail = ending.describe(facts)
        if reuse_of is not None:
            detail["reuse_of"] = reuse_of
        frames = tuple(x for x in (detail.get("rst_frame"), *facts.fin_frames) if x is not None)
        out.append(ending.finding(self.cid, end, sentence, detail, frames))
        return end, sentence, out

    def _final_stats(self, rec: RstRecord) -> None:
        s = self.sides[rec.d]
        st = rec.stats
        st.packets = s.pkts
        if s.ttl_hi >= 0:
            st.ttl_lo, st.ttl_hi = s.ttl_lo, s.ttl_hi
        st.ipid_mode = s.ipid_mode()
        st.ipid_maxstep = s.ipid_maxstep
        rec.peer_ipid_mode = self.sides[1 - rec.d].ipid_mode()
        if st.ipid_mode == "constant":
            st.ipid_const = s.ipid_last
        st.with_options, st.without_options = s.with_opts, s.without_opts
        st.timestamps = (s.timestamps and self.sides[1 - rec.d].timestamps) if s.syn is not None else None

    def _late_peer_data(self, rec: RstRecord, v: Verdict) -> None:
        """A receiver that sends new data more than a round trip after an exact RST never acted on it."""
        if v.effect != "accepted" or not rec.peer_data or rec.sender_post_syn or not rec.established:
            return
        allowance = 2 * rec.rtt_ns + 1_000_000 if rec.rtt_ns else 1_000_000_000
        late = [(f, t) for f, t in rec.peer_data if t - rec.ts > allowance]
        if late:
            f, t = late[0]
            v.effect = "ignored"
            v.effect_reason = (f"the receiver kept sending data {(t - rec.ts) / 1e6:.0f} ms after the RST (frame {f}), "
                               "more than a round trip later: the RST never reached it or was dropped on the way")

    @staticmethod
    def _unread_from_http(rec: RstRecord, v: Verdict, findings: Sequence[Finding]) -> None:
        """An abort right after answering a message the peer had not finished sending: close() with unread data
        (e.g. a 413 and close during an upload). The kernel ACKs unread bytes, so sequence numbers cannot tell."""
        if v.origin != "abort" or v.abort_kind != "linger" or rec.sender_last_data is None:
            return
        peer = DIRS[1 - rec.d]
        cut = next((f for f in findings if f.code == "http.body.truncated" and f.direction == peer), None)
        if cut is None:
            return
        v.abort_kind = "unread-data"
        v.evidence.append(f"the {rec.receiver}'s message was still incomplete (finding http.body.truncated, frame "
                          f"{cut.frames[0] if cut.frames else '?'}) and the {rec.sender} had already answered")
        v.explanation = (f"an active reset from the connection's own socket, closed while the {rec.receiver} was "
                         f"still sending (close() with unread data: TCPAbortOnClose, RFC 2525 2.17), e.g. a "
                         "server that answers an upload early and closes")

    def _rst_finding(self, rec: RstRecord, v: Verdict, findings: Sequence[Finding]) -> Finding:
        trig = rec.trigger
        detail: dict[str, Any] = {
            "sender": rec.sender,
            "sender_addr": rec.sender_addr,
            "phase": rec.phase,
            "origin": v.origin,
            "effect": v.effect,
            "effect_reason": v.effect_reason,
            "trigger_frame": trig.frame if trig is not None else None,
            "confidence": v.confidence,
            "evidence": v.evidence,
            "flags": "RST|ACK" if rec.flags & ACK else "RST",
            "seq": rec.seq,
            "ack": rec.ack if rec.flags & ACK else None,
            "window": rec.window,
            "ttl": rec.ttl,
            "ip_id": rec.ip_id,
            "options": list(rec.option_kinds),
            "rcv_nxt": rec.rcv_nxt,
        }
        if v.abort_kind:
            detail["abort_kind"] = v.abort_kind
        if rec.challenge_frame is not None and v.effect == "challenged":
            detail["challenge_ack_frame"] = rec.challenge_frame
            if rec.answer_rst is not None:
                detail["answer_rst_frame"] = rec.answer_rst
        reason = _reason_text(rec.payload)
        if reason:
            detail["reason_text"] = reason
        frames = [rec.frame]
        if trig is not None:
            frames.append(trig.frame)
        related: list[dict] = []
        link = ""
        if (v.origin == "no-socket" and rec.sender_prior_rst is None and trig is not None
                and trig.judgement is not None):
            link = self._window_link(rec, trig, findings, related)
        elif v.origin in ("abort", "unknown"):
            link = self._http_link(rec, findings, related)
        if not link and rec.d == 1 and v.origin in ("closed-socket", "abort"):
            p = next((f for f in findings if f.code.startswith("proto.")), None)
            if p is not None:
                related.append({"code": p.code, "frames": list(p.frames[:2])})
                link = f"the server had closed because of the protocol mismatch (see finding {p.code})"
        if related:
            detail["related"] = related
            for r in related:
                frames.extend(x for x in r["frames"] if x not in frames)
        if rec.challenge_frame is not None and v.effect == "challenged":
            frames.append(rec.challenge_frame)
        msg = f"RST from the {rec.sender} {rec.sender_addr} (frame {rec.frame}) {v.shape}: {v.explanation}"
        if link:
            msg += f"; {link}"
        if v.effect == "challenged":
            msg += f"; not accepted as is: {v.effect_reason}"
        elif v.effect in ("ignored", "ignored-out-of-window"):
            msg += f"; it had no effect: {v.effect_reason}"
        if reason:
            msg += f"; its payload reads \"{reason[:80]}\""
        return Finding("tcp.rst", _severity(rec, v), msg, conversation=self.cid, direction=DIRS[rec.d],
                       frames=tuple(frames), detail=detail,
                       rule="RFC 9293 3.10.7 / RFC 5961 3.2; Linux tcp_v4_send_reset / tcp_send_active_reset "
                            "(REFERENCE.md 4.6-4.7, heuristic)")

    def _window_link(self, rec: RstRecord, trig: Seg, findings: Sequence[Finding], related: list[dict]) -> str:
        j = trig.judgement
        for f in findings:
            if f.code == "tcp.out-of-window" and f.frames and f.frames[0] == trig.frame:
                related.append({"code": f.code, "frames": [trig.frame]})
                break
        else:
            related.append({"code": "tcp.out-of-window", "frames": [trig.frame]})
        old, new = getattr(j, "old", ""), getattr(j, "new", "")
        if "INVALID" in (old, new):
            related[-1]["remedy"] = ("drop INVALID packets before NAT (iptables -m conntrack --ctstate INVALID -j "
                                     "DROP; kube-proxy does since PR #74840; Istio INVALID_DROP=true) or set "
                                     "net.netfilter.nf_conntrack_tcp_be_liberal=1")
            text = (f"frame {trig.frame} was outside the receiver's window by conntrack's rules ({rule_phrase(j)}): "
                    f"{consequence(j)}; this RST is the signature of frame {trig.frame} escaping NAT (conntrack "
                    "INVALID, so not DNATed) and reaching a socket that did not know the connection")
            if old == "INVALID" and new != "INVALID":
                text += " (as only kernels < 6.1 say INVALID here, the node most likely runs a kernel older than 6.1)"
            return text
        return f"frame {trig.frame} was outside conntrack's window ({rule_phrase(j)}; {consequence(j)})"

    def _http_link(self, rec: RstRecord, findings: Sequence[Finding], related: list[dict]) -> str:
        peer_dir = DIRS[1 - rec.d]
        last_own = rec.sender_last_data
        best: Finding | None = None
        for f in findings:
            if (f.code.startswith(MALFORMED) and not f.code.endswith(".truncated") and f.severity >= Severity.WARNING
                    and f.direction == peer_dir and f.frames and f.frames[0] <= rec.frame
                    and (last_own is None or f.frames[0] > last_own)
                    and (best is None or f.frames[0] >= best.frames[0])):
                best = f
        if best is None:
            return ""
        related.append({"code": best.code, "frames": list(best.frames[:4])})
        if rec.sender == "client":
            what, msg = "a proxy rejecting a malformed response", "response"
        else:
            what, msg = "the server rejecting a malformed request", "request"
        return (f"sent by the {rec.sender} side right after the malformed {msg} (frame {best.frames[0]}), with nothing "
                f"sent in between: consistent with {what} (see finding {best.code}, frame {best.frames[0]})")

    def _data_after(self) -> list[Finding]:
        out: list[Finding] = []
        for rec in self._records:
            if len(out) >= MAX_DATA_AFTER:
                break
            v = rec.verdict
            if v is None:
                continue
            # Not after a RST the receiver dropped for its sequence number: the data is expected then, and the
            # tcp.rst finding already says the RST had no effect. Not after a rejection or a retried SYN either.
            if (rec.sender_data and v.origin != "rejected" and not rec.sender_post_syn
                    and v.effect != "ignored-out-of-window"):
                frames = rec.sender_data[:10]
                if v.origin == "injected":
                    why = "the real host was still talking, so the RST was forged"
                elif v.origin == "no-socket":
                    why = ("the connection's own socket was still alive: the RST came from another socket for the "
                           "same address (NAT/redirect bypass) or was forged")
                elif v.origin == "rejected":
                    why = "the connection went on: the RST only rejected one segment during the handshake"
                else:
                    why = "a TCP stack sends nothing on a connection after resetting it: suspect injection"
                out.append(Finding(
                    "tcp.data-after-rst", Severity.WARNING,
                    f"the {rec.sender} sent {rec.sender_data_n} data segment(s) after its own RST (frame {rec.frame}), "
                    f"first at frame {frames[0]}: {why}",
                    conversation=self.cid, direction=DIRS[rec.d], frames=(rec.frame, *frames),
                    detail={"rst_frame": rec.frame, "who": "sender", "count": rec.sender_data_n, "frames": frames,
                            "origin": v.origin},
                    rule="Zeek data_after_reset / Suricata stream.suspected_rst_inject"))
            elif v.effect == "ignored" and rec.peer_data and "kept sending data" in v.effect_reason:
                frames = [f for f, _ in rec.peer_data[:10]]
                out.append(Finding(
                    "tcp.data-after-rst", Severity.WARNING,
                    f"the {rec.receiver} sent {rec.peer_data_n} data segment(s) after the {rec.sender}'s RST (frame "
                    f"{rec.frame}) that its sequence number made acceptable, first at frame {frames[0]}: "
                    f"{v.effect_reason}",
                    conversation=self.cid, direction=DIRS[1 - rec.d], frames=(rec.frame, *frames),
                    detail={"rst_frame": rec.frame, "who": "receiver", "count": rec.peer_data_n, "frames": frames},
                    rule="RFC 9293 3.10.7.4 (a reset connection sends nothing more)"))
        return out

    def _mismatch_facts(self, heads: tuple[bytes, bytes]) -> mismatch.Facts:
        c, s = self.sides
        port = _port(self.addrs[1])
        nothing = None
        if s.close_seq is not None and s.syn is not None and s.syn.flags & ACK:
            nothing = s.close_seq == s.syn.end and s.data_bytes == 0
        delay = None
        if s.close_ts is not None and c.first_data_ts is not None:
            delay = s.close_ts - c.first_data_ts
        return mismatch.Facts(
            client_head=heads[0], server_head=heads[1], server_port=port,
            client_data_frame=c.first_data, server_data_frame=s.first_data,
            server_close_frame=s.close_frame, server_close=s.close_kind,
            client_close_frame=c.close_frame, server_packets=s.pkts + len(s.rsts),
            server_sent_nothing=nothing, close_delay_ns=delay, client_segments_before_close=s.close_peer_data,
            server_close_origin=next((r.verdict.origin for r in s.rsts if r.frame == s.close_frame and r.verdict),
                                     None),
        )

    def _midstream(self, guessed: bool, findings: Sequence[Finding]) -> Finding:
        oow = sum(1 for f in findings if f.code == "tcp.out-of-window")
        msg = ("no handshake was seen (the capture started after the connection opened): the window scale is "
               "unknown, so windows are read unscaled and no conntrack window verdicts are given (conntrack itself "
               "picks such a connection up liberally)")
        if guessed:
            msg += "; client and server were guessed (higher port = client)"
        return Finding("tcp.midstream", Severity.NOTICE, msg, conversation=self.cid,
                       frames=(self.sides[0].recent[0][0].frame,) if self.sides[0].recent else (),
                       detail={"client_guessed": guessed, "window_scale_known": False, "window_findings": oow},
                       rule="RFC 7323 2.2 (the scale is only in the SYNs); Linux nf_conntrack_tcp_loose")


def _severity(rec: RstRecord, v: Verdict) -> Severity:
    sev = _base_severity(rec, v)
    if v.confidence == "low" and sev > Severity.WARNING:
        return Severity.WARNING  # an error needs an explanation we are reasonably sure of
    return sev


def _base_severity(rec: RstRecord, v: Verdict) -> Severity:
    if v.origin == "refused":
        return Severity.NOTICE
    if v.origin == "injected":
        return Severity.ERROR
    if v.effect in ("ignored", "ignored-out-of-window", "challenged"):
        return Severity.WARNING
    trig = rec.trigger
    if v.origin in ("no-socket", "closed-socket"):
        if trig is not None and trig.seglen and not (v.origin == "closed-socket" and trig.flags & FIN):
            return Severity.ERROR  # data was refused (not just the peer's last bytes before its own FIN)
        if rec.phase in ("request", "response", "idle") and rec.sender_prior_rst is None:
            return Severity.ERROR
        return Severity.WARNING
    if v.origin == "abort" and rec.phase == "response":
        return Severity.ERROR
    return Severity.WARNING


def _kind(flags: int, seglen: int) -> str:
    if flags & SYN:
        return "SYN-ACK" if flags & ACK else "SYN"
    if seglen:
        return "data"
    if flags & FIN:
        return "FIN"
    return "ACK"


def _reason_text(payload: bytes) -> str:
    if not payload:
        return ""
    text = "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in payload[:REASON_TEXT_MAX])
    return text + ("..." if len(payload) > REASON_TEXT_MAX else "")


def _port(text: str) -> int:
    try:
        return int(text.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0
