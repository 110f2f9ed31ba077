"""The one-directional pipeline: capture -> decode -> flows -> tcp -> analyzers -> results.

``analyze()`` streams every input once. Each conversation is finalized when it ends
(FIN/RST plus a linger, an idle timeout, or the end of the file); its result goes to
the sink at once and its state is dropped, so memory follows the number of active
conversations, not the size of the capture.
"""

from __future__ import annotations

import gc
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol, cast

from pcapcheck import seq as sq
from pcapcheck.analyzers.http1 import ExchangeJson, Http1Analyzer, HttpExchange
from pcapcheck.analyzers.icmp import IcmpRecord, UnattachedIcmp, icmp_findings
from pcapcheck.analyzers.rst import RstAnalyzer
from pcapcheck.analyzers.tcpflags import tcp_findings
from pcapcheck.analyzers.window import WindowAnalyzer
from pcapcheck.capture import LINKTYPE_NAMES, CaptureError, CaptureReader, Record
from pcapcheck.config import Options
from pcapcheck.decode import ICMP_EVENT, Decoder, IcmpError, TcpPacket, endpoint_text
from pcapcheck.findings import Finding, Severity, sort_key
from pcapcheck.flows import Conversation, FlowTable
from pcapcheck.http.spill import ExchangeList, ExchangeSpill
from pcapcheck.model import ConversationResult, Handshake, InputSummary, PacketRow
from pcapcheck.seq import HALF, MASK, MOD
from pcapcheck.tcp import options as tcpopt
from pcapcheck.tcp.events import ACK, FIN, RST, SYN, StreamEnd
from pcapcheck.tcp.reassembly import TAIL_KEEP, Reassembler, SegmentSpill
from pcapcheck.tcp.tracker import TcpTracker, flag_names
from pcapcheck.tcp.window import ACCEPTED, ConntrackWindow

DIRS: Final = ("c2s", "s2c")
CHECK_EVERY = 4096  # packets between checks for conversations to finalize
GC_THRESHOLD: Final = 100_000  # the collector's youngest-generation threshold during a run (see fewer_collections)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the body with the cyclic collector's youngest-generation threshold at GC_THRESHOLD (at least), then
    restore the caller's setting; a threshold of 0 (automatic collection off) stays 0.

    The per-packet path allocates several short-lived tuples per packet (records, TcpPacket, timeline rows),
    and every conversation keeps its state until it is finalized. With the default threshold (700 allocations)
    the collector runs every hundred packets and, as state accumulates, full collections over all of it: ~20%
    of the CPU time on the 1M-packet benchmark. A larger threshold keeps the collector (cycles do exist, e.g.
    HTTP analyzers) at a few percent. The count is allocations minus deallocations of tracked objects since
    the last collection: the state of the conversations open or lingering keeps it high when many short ones
    come and go (30,000 HTTP connections of 9 packets: 133 collections and 19% of the CPU time at 20,000, 2 and
    under 1% at 100,000, no cycle found in either). Rendering pages is the same (views, rows, strings): the
    provisional pages of a 300,000-packet run, at the default threshold, took 1,958 collections and 0.3 s."""
    saved = gc.get_threshold()
    if saved[0]:
        gc.set_threshold(max(saved[0], GC_THRESHOLD), saved[1], saved[2])
    try:
        yield
    finally:
        gc.set_threshold(*saved)


_tnew: Final = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (half the cost)
_SFR: Final = SYN | FIN | RST
_FR: Final = FIN | RST
_BARE = SYN | ACK | FIN | RST  # flags & _BARE == SYN: a bare SYN (SynOnly)
SYN_ONLY_MAX: Final = 16  # bare SYNs a SynOnly keeps; the next packet builds the ConvState

# A timeline row as packed bytes, not a tuple: a tuple of eleven fields plus the int objects it holds is about
# 320 bytes, and a busy conversation keeps thousands of rows until it is finalized (the largest part of a
# conversation's state). Fields: frame, packet time minus the conversation's start, direction, TCP flags, seq,
# ack, segment length, raw window, analysis flag mask, verdict (index into _VERDICT_TEXT), then the edge the
# sender may send into (see ConvState.edge0): present, ack, raw window, SYN. Big-endian with the frame first,
# so sorting the bytes sorts rows by frame. A row whose values do not fit (a corrupt capture's timestamps
# centuries apart) is kept as a tuple in ConvState.odd (see ConvState._odd_row).
_ROW: Final = struct.Struct(">QqBBIIIHHHBIHB")
_ROW_SIZE: Final = _ROW.size
_TAIL_BLOCK: Final = 64 * _ROW_SIZE  # bytes; see ConvState._tail_full
_STATE_BYTES: Final = 28_000  # held_estimate: a conversation's objects, before what it keeps per packet or byte
_TIMELINE_ROWS: Final = 8000  # ... a packed row per packet, at most the default timeline caps (head, tail, marked)
_KEPT_BYTES: Final = 2 * (TAIL_KEEP + 4096) + 16 * 4096  # ... at most, of its payload: the reassembly tails and heads,
# the HTTP heads and body excerpts
_pack_row: Final = _ROW.pack
_NO_EDGE: Final = (0, 0, 0, 0)
_VERDICT_TEXT: Final[list[str]] = [""]  # verdict text by index; "" (accepted) is 0
_VERDICT_INDEX: Final[dict[str, int]] = {"": 0}


def held_estimate(packets: int, payload: int) -> int:
    """About how much memory a conversation's state holds (ConvState), for the linger budget
    (Options.linger_bytes), from what every shard knows of every conversation (ConvState and Foreign count
    the same packets and payload bytes), so that all shards finalize the same conversations at the same
    frame: the analyzers' objects, a packed timeline row per packet (up to the timeline caps) and the
    payload bytes kept (up to _KEPT_BYTES). Calibrated with tracemalloc, every conversation of a capture held
    to its end: a health check (9 packets, 224 payload bytes) 27 KB, estimated 29; bench/gen.py --short (11
    packets, 3.6 KB) 42 KB, estimated 32; the benchmark capture (102 packets, 87 KB) 93 KB, estimated 89.
    (With 10 KB for the objects, until 2026-12-04, short connections held three times the estimate.)"""
    return _STATE_BYTES + _ROW.size * min(packets, _TIMELINE_ROWS) + min(payload, _KEPT_BYTES)


class Sink(Protocol):
    def conversation(self, result: ConversationResult) -> None: ...


@dataclass
class Totals:
    """Run-wide facts for the summary and the exit code."""

    inputs: list[InputSummary] = field(default_factory=list)
    conversations: int = 0
    severities: dict[Severity, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)

    def count(self, findings: tuple[Finding, ...] | list[Finding]) -> None:
        for f in findings:
            self.severities[f.severity] = self.severities.get(f.severity, 0) + 1
            self.codes[f.code] = self.codes.get(f.code, 0) + 1

    def absorb_shard(self, other: Totals) -> None:
        """Add another shard's conversations. Its inputs are the same files read the same way, so their
        summaries and capture-level findings, already counted here, are not counted again."""
        self.conversations += other.conversations
        capture: dict[tuple[Severity, str], int] = {}
        for i in other.inputs:
            for f in i.findings:
                capture[f.severity, f.code] = capture.get((f.severity, f.code), 0) + 1
        severities = dict(other.severities)
        codes = dict(other.codes)
        for (sev, code), n in capture.items():
            severities[sev] -= n
            codes[code] -= n
        for sev, n in severities.items():
            if n:
                self.severities[sev] = self.severities.get(sev, 0) + n
        for code, n in codes.items():
            if n:
                self.codes[code] = self.codes.get(code, 0) + n

    @property
    def worst(self) -> Severity | None:
        return max(self.severities, default=None)

    @property
    def readable(self) -> bool:
        return any(i.readable for i in self.inputs)


class Timeline(Sequence):
    """A finished conversation's timeline: the packed rows (_ROW), decoded into PacketRows when first read.

    Only conversations that get a page need their rows (a few percent of them in a big capture), so the
    decoding, relative sequence numbers and scaled windows are left to the first reader. Pickles in the
    packed form. Compares equal to any sequence of the same PacketRows.
    """

    __slots__ = ("_packed", "_odd", "_start", "_per_dir", "_verdicts", "_rows")

    def __init__(self, packed: bytes, odd: tuple[tuple, ...], start: int, per_dir: tuple,
                 verdicts: tuple[str, ...]) -> None:
        self._packed = packed
        self._odd = odd  # rows _ROW cannot hold, in its field order (see ConvState._odd_row)
        self._start = start
        self._per_dir = per_dir  # per direction: (own base seq, peer's base seq, own shift, peer's shift)
        self._verdicts = verdicts  # the verdict text by index, as of the conversation's finish
        self._rows: tuple[PacketRow, ...] | None = None

    def __reduce__(self) -> tuple:
        return (Timeline, (self._packed, self._odd, self._start, self._per_dir, self._verdicts))

    def __len__(self) -> int:
        return len(self._packed) // _ROW.size + len(self._odd)

    def __getitem__(self, i):  # type: ignore[override]
        return self.rows()[i]

    def __iter__(self) -> Iterator[PacketRow]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return self.rows() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Timeline({len(self)} rows)"

    def rows(self) -> tuple[PacketRow, ...]:
        if self._rows is None:
            self._rows = self._decode()
        return self._rows

    def _decode(self) -> tuple[PacketRow, ...]:
        rows: Iterable[tuple] = _ROW.iter_unpack(self._packed)
        if self._odd:
            rows = sorted([*rows, *self._odd])  # frames are unique: sorted by frame
        per_dir, start, verdicts = self._per_dir, self._start, self._verdicts
        names: dict[int, tuple[str, ...]] = {}  # analysis flag mask -> flag names
        out: list[PacketRow] = []
        append = out.append
        # (x - base) mod 2**32 for x < 2**32 is x - base, plus 2**32 when negative: one operation, not two.
        for frame, ts, d, flags, seqno, ackno, seglen, window, mask, verdict, edge, eack, ewin, esyn in rows:
            b, br, sh, esh = per_dir[d]
            rel_seq = seqno - b
            if rel_seq < 0:
                rel_seq += MOD
            if flags & ACK:
                rel_ack = ackno - br
                if rel_ack < 0:
                    rel_ack += MOD
            else:
                rel_ack = 0
            if mask:
                analysis = names.get(mask)
                if analysis is None:
                    analysis = names[mask] = tuple(flag_names(mask))
            else:
                analysis = ()
            append(_tnew(PacketRow, (frame, start + ts, d, flags, rel_seq, rel_ack, seglen,
                                     window if flags & SYN else window << sh, analysis, verdicts[verdict],
                                     (eack + (ewin if esyn else ewin << esh) - b) & MASK if edge else -1)))
        return tuple(out)


class State:
    """What the pipeline's loop hands a conversation's packets to: its ConvState, SynOnly or Foreign. A base class of
    the three only so that, compiled (make install), the loop's call is a native one: on their union, or on
    the ``Any`` of ``Conversation.state``, mypyc makes a generic method call (the direction boxed, the method looked up
    by name). Interpreted, it changes nothing."""

    __slots__ = ()

    def packet(self, d: int, pkt: TcpPacket) -> None:
        raise NotImplementedError


class ConvState(State):
    """Everything the pipeline keeps for one active conversation."""

    __slots__ = (
        "conv", "options", "input_index", "tracker", "window", "http", "reasm", "rst", "wan",
        "packets0", "packets1", "bytes0", "bytes1", "first_frame", "last_frame", "start_ts", "end_ts",
        "flag_frames", "head", "tail", "tail_block", "marked", "odd", "head_max", "marked_max", "fin_frame",
        "rst_frames", "syn", "synack", "syn_opts", "synack_opts", "handshake_ack", "isn", "edge0", "edge1", "ended",
        "icmp", "http_ends", "spill",
    )

    def __init__(self, conv: Conversation, input_index: int, options: Options, pkt: TcpPacket,
                 spill: ExchangeSpill | None = None, segments: SegmentSpill | None = None) -> None:
        self.conv = conv
        self.options = options
        self.spill = spill  # for the HTTP analyzer of a long conversation (analyzers.http1.SPILL_AFTER)
        # (``segments``: the run's buffered out-of-order segments beyond BUFFERED_IN_MEMORY, for the reassemblers)
        self.input_index = input_index
        self.tracker = TcpTracker()
        self.window = ConntrackWindow(be_liberal=options.be_liberal)
        # The HTTP analyzer is made at the first byte or gap either direction delivers (_http_start): a
        # conversation without payload (an unanswered or refused SYN, a scan) never needs one, and one that
        # saw only the ends finds nothing (tests/test_pipeline.py). It cost 25 us a SYN in a SYN flood.
        self.http: Http1Analyzer | None = None
        self.http_ends: tuple[tuple, ...] = ()  # StreamEnd fields
        if options.http:
            self.reasm = [Reassembler(partial(self._http_data, 0), partial(self._http_gap, 0), segments),
                          Reassembler(partial(self._http_data, 1), partial(self._http_gap, 1), segments)]
        else:
            self.reasm = [Reassembler(None, None, segments), Reassembler(None, None, segments)]
        client, server = conv.client, conv.server
        self.rst = RstAnalyzer(conv.id, endpoint_text(*client), endpoint_text(*server))
        self.wan = WindowAnalyzer(conv.id, kernel=options.kernel)
        self.packets0 = self.packets1 = 0  # per direction
        self.bytes0 = self.bytes1 = 0
        self.first_frame = pkt.frame
        self.last_frame = pkt.frame
        self.start_ts = pkt.ts
        self.end_ts = pkt.ts
        self.flag_frames: dict[int, list] = {}  # flag bit -> [count, frames...]
        # Packed rows (_ROW) in bytearrays, not a bytes object each (77 bytes for a row of 44: the rows of a few
        # dozen long connections took 12 MB); the caps in bytes.
        self.head = bytearray()  # the first rows, in arrival order
        self.marked = bytearray()  # then those with a finding or SYN/FIN/RST, in arrival order
        # and the last timeline_tail of the others, in arrival order: full blocks of _TAIL_BLOCK bytes (the oldest
        # dropped once the others hold timeline_tail rows) and the block being filled; made when needed
        self.tail: list[bytearray] | None = None
        self.tail_block: bytearray | None = None
        self.odd: list[tuple] = []  # rows that do not pack: (frame, ts, ...) as in _rows
        self.head_max = options.timeline_head * _ROW_SIZE
        self.marked_max = options.timeline_marked * _ROW_SIZE
        self.fin_frame: list[int | None] = [None, None]
        self.rst_frames: list[int] = []
        self.syn: TcpPacket | None = None
        self.synack: TcpPacket | None = None
        # their options, parsed when they came (the analyzers had just parsed them: tcp.options keeps the last)
        self.syn_opts = self.synack_opts = tcpopt.NO_OPTIONS
        self.handshake_ack: int | None = None
        self.isn: list[int | None] = [None, None]
        # (1, ack, raw window, on a SYN) last advertised to direction 0 / 1: the window it may send into;
        # _NO_EDGE before any
        self.edge0: tuple = _NO_EDGE
        self.edge1: tuple = _NO_EDGE
        self.ended = False
        self.icmp: IcmpRecord | None = None  # ICMP errors about this conversation's segments

    def _http_start(self) -> Http1Analyzer:
        """Make the HTTP analyzer and connect it to both directions' reassemblers."""
        http = self.http
        if http is None:
            http = self.http = Http1Analyzer(self.conv.id, self.spill)
            for d, r in enumerate(self.reasm):
                r.on_data, r.on_gap = http.sink(DIRS[d]), http.gap_sink(DIRS[d])
            for ev in self.http_ends:  # the ends it missed (finish), in their order
                http.end(StreamEnd(*ev))
        return http

    def _http_data(self, d: int, off: int, data: bytes, frame: int, ts: int) -> None:
        """Direction d's first bytes: make the analyzer (which replaces this sink), then hand them over."""
        self._http_start()
        sink = self.reasm[d].on_data
        assert sink is not None  # (set by _http_start)
        sink(off, data, frame, ts)

    def _http_gap(self, d: int, off: int, length: int, frame: int, reason: str) -> None:
        self._http_start()
        sink = self.reasm[d].on_gap
        assert sink is not None  # (set by _http_start)
        sink(off, length, frame, reason)

    # -- per packet (the hot path) ---------------------------------------------
    def packet(self, d: int, pkt: TcpPacket) -> None:
        (frame, ts, _src, _dst, _sport, _dport, seqno, ackno, flags, window, options, payload, seglen,
         ttl, ip_id, _df) = pkt
        # The packet as a plain tuple, for the fields only stored as they are (the window edge, the timeline row):
        # compiled code reads the names above as native ints and would allocate each one again to store it, where
        # raw[i] is the packet's own object. (0 frame, 6 seq, 7 ack, 9 window, 12 segment length.)
        raw: tuple = pkt
        if d:
            self.packets1 += 1
            self.bytes1 += seglen
        else:
            self.packets0 += 1
            self.bytes0 += seglen
        self.last_frame = frame
        self.end_ts = ts
        mask = self.tracker.segment(d, ts, seqno, ackno, flags, window, options, seglen)
        r = self.reasm[d]
        if flags & _SFR:
            if flags & SYN and not flags & ACK and self.window.closed:
                # conntrack destroys a closed entry and starts over on a new SYN (-NF_REPEAT in nf_conntrack_tcp_packet)
                self.window = ConntrackWindow(be_liberal=self.options.be_liberal)
            j = self.window.judge(d, seqno, ackno, flags, window, seglen, options)
            self._control(d, pkt, r)
        else:
            j = self.window.judge(d, seqno, ackno, flags, window, seglen, options)
            if not r.started:
                r.start(seqno)
        if seglen:
            r.segment((seqno + 1) & MASK if flags & SYN else seqno, payload, seglen, frame, ts)
        if flags & ACK:
            if not flags & RST:
                # Reassembler.acked() does nothing unless the ACK is after the peer's next expected
                # sequence number, (ackno - next_seq) mod 2**32 in (0, 2**31): test that here, skip the call.
                ro = self.reasm[1 - d]
                ahead = ackno - ro.next_seq
                if (0 < ahead < HALF or ahead < -HALF) and ro.started:
                    ro.acked(ackno, frame)
            # the window the peer may send into: scaled at finish, when the scale is known
            if d:
                self.edge0 = (1, raw[7], raw[9], flags & SYN)
            else:
                self.edge1 = (1, raw[7], raw[9], flags & SYN)
        self.rst.segment(d, pkt, frame, ts, seqno, ackno, flags, options, seglen, ttl, ip_id, mask, j)
        if j is ACCEPTED:
            verdict = 0
        else:
            self.wan.judged(d, pkt, j, mask)
            text = j.new if j.new != "ACCEPT" else f"{j.old} (<6.1)"
            known = _VERDICT_INDEX.get(text)
            if known is None:
                known = _VERDICT_INDEX[text] = len(_VERDICT_TEXT)
                _VERDICT_TEXT.append(text)
            verdict = known
        if mask:
            ff = self.flag_frames
            bit = 1
            while bit <= mask:
                if mask & bit:
                    e = ff.get(bit)
                    if e is None:
                        ff[bit] = [1, frame]
                    else:
                        e[0] += 1
                        if len(e) <= 200:
                            e.append(frame)
                bit <<= 1
        # The timeline row, packed (PacketRow objects are built once, at finish). The first timeline_head
        # rows, then up to marked_max rows that carry a finding or SYN/FIN/RST, the rest in the bounded tail.
        try:
            edge, eack, ewin, esyn = self.edge1 if d else self.edge0
            row = _pack_row(raw[0], ts - self.start_ts, d, flags, raw[6], raw[7], raw[12], raw[9], mask, verdict,
                            edge, eack, ewin, esyn)
        except struct.error:
            self._odd_row(d, pkt, mask, verdict)
            return
        head = self.head
        if len(head) < self.head_max:
            head += row
        elif (mask or verdict or flags & _SFR) and len(self.marked) < self.marked_max:
            self.marked += row
        else:
            block = self.tail_block
            if block is None:
                block = self.tail_block = bytearray()
            block += row
            if len(block) >= _TAIL_BLOCK:
                self._tail_full()

    def _tail_full(self) -> None:
        """The tail's block is full: keep it, and drop the oldest if the rest hold timeline_tail rows without it.
        (A ring of rows cost 250 ns a row, three times appending to a block.)"""
        tail = self.tail
        if tail is None:
            tail = self.tail = []
        tail.append(self.tail_block)  # type: ignore[arg-type]
        self.tail_block = bytearray()
        if (len(tail) - 1) * _TAIL_BLOCK >= self.options.timeline_tail * _ROW_SIZE:
            del tail[0]

    def icmp_error(self, d: int, ev: IcmpError) -> None:
        """An ICMP error about a segment of direction ``d`` (the quoted one). Its frame is one of the
        conversation's (Wireshark's tcp.stream) when Wireshark numbers it, but not a TCP packet."""
        if ev.numbered:
            self.last_frame = ev.frame
        self.end_ts = ev.ts
        if self.icmp is None:
            self.icmp = IcmpRecord()
        self.icmp.add(d, ev)

    def held_bytes(self) -> int:
        return held_estimate(self.packets0 + self.packets1, self.bytes0 + self.bytes1)

    def _odd_row(self, d: int, pkt: TcpPacket, mask: int, verdict: int) -> None:
        """A row with values _ROW cannot hold: kept as the tuple _ROW would unpack, outside the timeline's caps."""
        self.odd.append((pkt.frame, pkt.ts - self.start_ts, d, pkt.flags, pkt.seq, pkt.ack, pkt.seglen, pkt.window,
                         mask, verdict, *(self.edge1 if d else self.edge0)))

    def _control(self, d: int, pkt: TcpPacket, r: Reassembler) -> None:
        flags = pkt.flags
        if flags & SYN:
            if self.isn[d] is None:
                self.isn[d] = pkt.seq
                r.start((pkt.seq + 1) & sq.MASK)
            if flags & ACK:
                if self.synack is None:
                    self.synack = pkt
                    self.synack_opts = tcpopt.parse(pkt.options)
            elif self.syn is None:
                self.syn = pkt
                self.syn_opts = tcpopt.parse(pkt.options)
        elif not r.started:
            r.start(pkt.seq)
        if flags & FIN and self.fin_frame[d] is None:
            self.fin_frame[d] = pkt.frame
            r.fin_off = r.offset_of((pkt.seq + pkt.seglen + (1 if flags & SYN else 0)) & sq.MASK)
            self.conv.saw_fin = True
            if self.fin_frame[1 - d] is not None and self.conv.closed_at is None:
                self.conv.closed_at = pkt.ts
        if flags & RST:
            self.rst_frames.append(pkt.frame)
            self.conv.saw_rst = True
            if self.conv.closed_at is None:
                self.conv.closed_at = pkt.ts

    def _timeline(self) -> Timeline:
        tr = self.tracker
        # Per direction d: (base seq of d, base seq of the peer, window shift of d's windows, shift of the
        # peer's windows). An unknown base is 0 (the numbers stay absolute), an unknown scale (< 0) no shift.
        base = [tr.base_seq(0), tr.base_seq(1)]
        base = [0 if b is None else b for b in base]
        shift = [max(tr.window_scale(0), 0), max(tr.window_scale(1), 0)]
        per_dir = ((base[0], base[1], shift[0], shift[1]), (base[1], base[0], shift[1], shift[0]))
        packed = bytes(self.head)
        keep = self.options.timeline_tail * _ROW_SIZE
        tail = b"".join([*(self.tail or ()), self.tail_block or b""])[-keep:] if keep else b""
        if self.marked or tail:
            later = self.marked + tail  # two runs in frame order, merged by sorting the rows
            packed += b"".join(sorted([bytes(later[i : i + _ROW_SIZE]) for i in range(0, len(later), _ROW_SIZE)]))
        return Timeline(packed, tuple(self.odd), self.start_ts, per_dir, tuple(_VERDICT_TEXT))

    # -- finalization ------------------------------------------------------------
    def finish(self, capture_ended: bool) -> ConversationResult:
        conv = self.conv
        last = self.last_frame
        rst = bool(self.rst_frames)
        http_on = self.options.http
        if self.http is None and http_on and (self.reasm[0].next_off or self.reasm[1].next_off):
            self._http_start()  # (stream offsets moved without bytes or gaps: let the analyzer see the ends)
        for d in (0, 1):
            r = self.reasm[d]
            r.finish(last)  # (may deliver bytes or a gap, and so make the HTTP analyzer)
            if http_on:
                frame: int | None
                if rst:
                    reason, frame = "rst", self.rst_frames[0]
                elif self.fin_frame[d] is not None:
                    reason, frame = "fin", self.fin_frame[d]
                else:
                    reason, frame = "capture-ended", None
                if self.http is not None:
                    self.http.end(StreamEnd(DIRS[d], r.next_off, frame, reason))
                elif d == 0:  # no analyzer yet: if direction 1's end makes one, it sees this end first
                    self.http_ends = ((DIRS[d], r.next_off, frame, reason),)
        findings: list[Finding] = []
        if self.http is not None:
            findings.extend(self.http.finish())
        findings.extend(tcp_findings(conv.id, self.flag_frames, self.reasm, conv))
        if self.icmp is not None:
            findings.extend(icmp_findings(conv.id, self.icmp, self.rst.addrs,
                                          (self.tracker.base_seq(0), self.tracker.base_seq(1))))
        findings.extend(self.wan.finish())
        end, sentence, more = self.rst.finish(
            findings=findings,
            heads=(bytes(self.reasm[0].head), bytes(self.reasm[1].head)),
            fin_frames=(self.fin_frame[0], self.fin_frame[1]),
            capture_ended=capture_ended,
            midstream=self.syn is None and self.synack is None,
            client_guessed=conv.guessed,
            reuse_of=conv.reuse_of,
        )
        findings.extend(more)
        findings.sort(key=sort_key)
        timeline = self._timeline()
        total = self.packets0 + self.packets1  # one timeline row per packet
        hs = self._handshake()
        for r in self.reasm:  # the lazy HTTP sinks are this object's methods: no cycle is left to the collector
            r.on_data = r.on_gap = None
        client, server = self.rst.addrs  # endpoint_text() of conv.client and conv.server
        return ConversationResult(
            id=conv.id, input_index=self.input_index,
            client=client, server=server, client_guessed=conv.guessed,
            ipv6=len(conv.a) == 16, first_frame=self.first_frame, last_frame=self.last_frame,
            start_ns=self.start_ts, end_ns=self.end_ts, packets=(self.packets0, self.packets1),
            bytes=(self.bytes0, self.bytes1), handshake=hs, end=end, end_sentence=sentence,
            findings=tuple(findings), timeline=timeline, timeline_total=total,
            timeline_capped=len(timeline) < total,
            http=_frozen_exchanges(self.http.exchanges) if self.http is not None else (),
            stream_heads=(bytes(self.reasm[0].head), bytes(self.reasm[1].head)),
            isn=(self.tracker.base_seq(0), self.tracker.base_seq(1)),
            part=conv.part, reuse_of=conv.reuse_of, http_omitted=self.http.dropped if self.http is not None else 0,
            icmp=self.icmp.marks() if self.icmp is not None else (),
        )

    def _handshake(self) -> Handshake:
        syn, synack = self.syn, self.synack
        copts = _options_dict(syn, self.syn_opts) if syn is not None else {}
        sopts = _options_dict(synack, self.synack_opts) if synack is not None else {}
        rtt = synack.ts - syn.ts if syn is not None and synack is not None else None
        return Handshake(syn.frame if syn else None, synack.frame if synack else None, None, copts, sopts, rtt)


def _frozen_exchanges(exchanges: Sequence[HttpExchange | ExchangeJson]) -> Sequence[HttpExchange | ExchangeJson]:
    """A result's exchanges: a tuple, or the ExchangeList that reads the spilled ones back as they are needed."""
    return exchanges if type(exchanges) is ExchangeList else tuple(exchanges)


def _options_dict(pkt: TcpPacket, o: tcpopt.TcpOptions) -> dict:
    out: dict = {"window": pkt.window}
    if o.mss is not None:
        out["mss"] = o.mss
    if o.wscale is not None:
        out["wscale"] = o.wscale
    out["sack_perm"] = o.sack_perm
    out["timestamps"] = o.ts_val is not None
    return out


class SynOnly(State):
    """The state of a conversation of which only bare SYNs (no ACK, FIN, RST or payload) have come so far: a
    connection attempt, often never answered (a SYN flood, a scan, a filtered port).

    Its packets are kept, not analyzed, until any other packet or an ICMP error comes for it, or it is
    finalized: then ``full()`` builds the ConvState and replays them. A ConvState costs about 16 KB before its
    first packet, this about 0.5 KB, and a SYN flood opens hundreds of thousands of conversations at once.
    The results are the same as with a ConvState from the start: the analysis is per conversation and sees
    the same packets in the same order (tests/test_pipeline.py replays every fixture both ways).
    """

    __slots__ = ("conv", "input_index", "options", "end_ts", "pkts", "spill", "segments")

    def __init__(self, conv: Conversation, input_index: int, options: Options, ts: int,
                 spill: ExchangeSpill | None = None, segments: SegmentSpill | None = None) -> None:
        self.conv = conv
        self.input_index = input_index
        self.options = options
        self.spill = spill
        self.segments = segments
        self.end_ts = ts
        self.pkts: list[tuple[int, TcpPacket]] = []

    def packet(self, d: int, pkt: TcpPacket) -> None:
        if pkt[8] & _BARE == SYN and not pkt[12] and len(self.pkts) < SYN_ONLY_MAX:
            self.pkts.append((d, pkt))
            self.end_ts = pkt[1]
        else:
            self.full().packet(d, pkt)

    def icmp_error(self, d: int, ev: IcmpError) -> None:
        self.full().icmp_error(d, ev)

    def full(self) -> ConvState:
        """The conversation's ConvState, its SYNs analyzed; it replaces this object as ``conv.state``."""
        pkts = self.pkts
        st = ConvState(self.conv, self.input_index, self.options, pkts[0][1], self.spill, self.segments)
        for d, pkt in pkts:
            st.packet(d, pkt)
        self.conv.state = st
        return st


class Foreign(State):
    """The state of a conversation another shard analyzes (``Analysis(shard=...)``).

    Every shard routes every packet, so conversation ids, port reuse and eviction are the same in all of
    them; for a conversation it does not own, a shard keeps only what the pipeline's closing and idle checks
    read: when the conversation closed (both FINs or a RST, as ``ConvState._control`` decides) and the time of
    its last packet.
    """

    __slots__ = ("conv", "end_ts", "fin0", "fin1", "packets", "payload")

    def __init__(self, conv: Conversation, ts: int) -> None:
        self.conv = conv
        self.end_ts = ts
        self.fin0 = self.fin1 = False
        self.packets = 0  # TCP packets and their payload bytes (TcpPacket.seglen), as ConvState counts them:
        self.payload = 0  # for held_estimate (decode_batch counts the segments it skips)

    def held_bytes(self) -> int:
        return held_estimate(self.packets, self.payload)

    def icmp_error(self, d: int, ev: IcmpError) -> None:
        self.end_ts = ev.ts

    def packet(self, d: int, pkt: TcpPacket) -> None:
        self.end_ts = pkt[1]
        self.packets += 1
        self.payload += pkt[12]
        flags = pkt[8]
        if flags & _FR:
            conv = self.conv
            if flags & FIN:
                if d:
                    self.fin1 = True
                else:
                    self.fin0 = True
                conv.saw_fin = True
                if self.fin0 and self.fin1 and conv.closed_at is None:
                    conv.closed_at = pkt[1]
            if flags & RST:
                conv.saw_rst = True
                if conv.closed_at is None:
                    conv.closed_at = pkt[1]


class Analysis:
    """Runs the pipeline over inputs and feeds finished conversations to a sink.

    ``shard=(k, n)``: analyze only the conversations whose id is k modulo n (the others are routed, so ids
    stay Wireshark's, but not analyzed); n processes with k = 0..n-1 together give exactly the results of one
    unsharded run (``pcapcheck.parallel``). ``seen`` counts the conversations created so far over all inputs,
    the same number in every shard.
    """

    def __init__(self, options: Options, sink: Sink, progress: Callable[[int, int | None], None] | None = None,
                 shard: tuple[int, int] | None = None) -> None:
        self.options = options
        self.sink = sink
        self.progress = progress
        self.totals = Totals()
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard must be (k, n) with 0 <= k < n, not {shard!r}")
        self.shard = shard if shard is not None and shard[1] > 1 else None
        self.seen = 0  # conversations created in earlier inputs; plus the current input's table.next_id
        self._table: FlowTable | None = None
        self._skip: dict[tuple, Foreign] | None = None  # see _input
        self._unattached = UnattachedIcmp()  # the current input's ICMP errors without a conversation
        # long conversations' settled HTTP exchanges, until their results are written (analyzers.http1.SPILL_AFTER)
        self._spill = ExchangeSpill() if options.http else None
        self._segments = SegmentSpill()  # out-of-order segments beyond BUFFERED_IN_MEMORY (tcp.reassembly)

    def seen_total(self) -> int:
        """Conversations created so far, over all inputs (identical in every shard)."""
        return self.seen + (self._table.next_id if self._table is not None else 0)

    def run(self, paths: list[str]) -> Totals:
        try:
            with fewer_collections():
                for i, path in enumerate(paths):
                    self._input(i, path)
        finally:
            self._segments.close()
            if self._spill is not None:
                self._spill.close()  # (a result a sink still holds reads its spilled exchanges in first)
        return self.totals

    def _emit(self, st: ConvState | SynOnly | Foreign, table: FlowTable, capture_ended: bool) -> None:
        if isinstance(st, SynOnly):
            st = st.full()
        elif isinstance(st, Foreign):
            conv = st.conv
            if self._skip:
                self._skip.pop(conv.key_ab, None)
                self._skip.pop(conv.key_ba, None)
            table.evict(conv)
            conv.state = None
            return
        result = st.finish(capture_ended)
        table.evict(st.conv)
        st.conv.state = None
        self.totals.conversations += 1
        self.totals.count(result.findings)
        self.sink.conversation(result)

    def _new_state(self, conv: Conversation, index: int, pkt: TcpPacket | IcmpError) -> ConvState | SynOnly | Foreign:
        """The state of a conversation at its first packet (or the ICMP error that opened it): a Foreign one
        when another shard analyzes it, a SynOnly while it is a bare SYN, else a ConvState."""
        shard_k, shard_n = self.shard if self.shard is not None else (0, 1)
        if conv.id % shard_n != shard_k:
            st: ConvState | SynOnly | Foreign = Foreign(conv, pkt[1])
        elif pkt[8] & _BARE == SYN and not pkt[12]:
            st = SynOnly(conv, index, self.options, pkt[1], self._spill, self._segments)
        else:
            st = ConvState(conv, index, self.options, pkt, self._spill, self._segments)  # type: ignore[arg-type]
        conv.state = st
        return st

    def _icmp(self, ev: IcmpError, table: FlowTable, index: int) -> None:
        found = table.icmp(ev)
        if found is None:  # no conversation to attach it to: reported for the input (tcp.icmp.unattached)
            self._unattached.add(ev, table.ended_id(ev.key))
            return
        conv, d, _new = found
        st = conv.state
        if st is None:  # a conversation the ICMP error opened (FlowTable.icmp)
            st = self._new_state(conv, index, ev)
        st.icmp_error(d, ev)

    def _input(self, index: int, path: str) -> None:
        reader = CaptureReader(path)
        decoder = Decoder()
        self._unattached = UnattachedIcmp()
        table = self._table = FlowTable()
        options = self.options
        shard_n = self.shard[1] if self.shard is not None else 1
        first_ts: int | None = None  # the first and the last record's time
        last_ts: int | None = None
        readable = True
        fatal: str | None = None
        closing: deque[tuple[Conversation, int]] = deque()  # closed, oldest first, with held_bytes
        attempts: deque[Conversation] = deque()  # opened by a bare SYN, oldest first (Conversation.bare: still so)
        attempts_max = options.attempts_max
        number = 0  # frames read so far (= the last frame's number)
        next_check = CHECK_EVERY
        linger, idle, linger_max, linger_bytes = options.linger_ns, options.idle_ns, options.linger_max, options.linger_bytes
        held = 0  # held_bytes() of the conversations in closing, as when each closed
        decode = decoder.decode_batch
        route = table.route
        routes_get = table.routes.get
        # Sharded: the 4-tuples of known senders whose conversation another shard analyzes -> its Foreign state.
        # For their segments without SYN/FIN/RST all the loop below would do is Foreign.packet's time update,
        # which decode_batch does instead of building the packet. An entry is added when such a segment comes
        # through the loop (a sender is known once it is in table.routes) and removed when the conversation
        # is finalized (_emit: eviction, idle, replaced by port reuse), so every entry's state is current.
        skip: dict[tuple, Foreign] | None = {} if shard_n > 1 else None
        self._skip = skip
        batch: list[Record] | None
        # A TcpPacket, or an IcmpError (flags & ICMP_EVENT), which is laid out like one where this loop looks
        # (frame, ts, src...dport, flags). Typed as a tuple, which both are, so that the compiled loop reads those
        # fields as a tuple's items, not as items of any object.
        pkt: tuple
        st: State | None
        try:
            for batch in reader.record_batches():
                if first_ts is None:
                    first_ts = batch[0][1]
                number = batch[-1][0]  # record numbers in a batch are consecutive
                batch_last_ts = batch[-1][1]
                while True:
                    # the records up to the next check point, or all
                    if next_check > number:
                        part, batch = batch, None
                    else:
                        cut = next_check - batch[0][0] + 1
                        part, batch = batch[:cut], batch[cut:]
                    for pkt in decode(part, skip):
                        flags: int = pkt[8]
                        # the common case: a known sender, not a SYN (FlowTable.route would change nothing)
                        rt = routes_get((pkt[2], pkt[4], pkt[3], pkt[5]))  # (src, sport, dst, dport)
                        if rt is not None and not flags & SYN:
                            conv, d = rt
                        else:
                            if flags & ICMP_EVENT:  # an ICMP error about a TCP segment (decode.IcmpError)
                                self._icmp(cast(IcmpError, pkt), table, index)
                                continue
                            conv, d, new = route(cast(TcpPacket, pkt))
                            if new:
                                if conv.bare:
                                    attempts.append(conv)
                                if table.replaced:
                                    for old in table.replaced:
                                        if old.state is not None:
                                            self._emit(old.state, table, False)
                                    table.replaced.clear()
                        st = conv.state
                        if st is None:
                            st = self._new_state(conv, index, pkt)
                        elif st.__class__ is Foreign and rt is not None and rt[0] is conv:
                            skip[(pkt[2], pkt[4], pkt[3], pkt[5])] = st  # type: ignore[index]
                        if flags & _FR and conv.closed_at is None:  # (only a FIN or RST closes)
                            held += _closing_packet(st, conv, d, cast(TcpPacket, pkt), closing)
                        else:
                            st.packet(d, pkt)  # type: ignore[arg-type]  # (a TcpPacket: no cast() call per packet)
                    if batch is None:
                        break
                    # every CHECK_EVERY frames (TCP or not), after frame number next_check, at its time
                    now = part[-1][1]
                    # closed conversations linger (late packets: retransmitted FINs, final ACKs from far-away
                    # clients, data in flight when a RST went out), but at most linger_max of them and about
                    # linger_bytes of their state, oldest closed first: memory stays bounded when
                    # conversations close faster than the linger lets them go
                    while closing and (cast(int, closing[0][0].closed_at) + linger < now or len(closing) > linger_max
                                       or held > linger_bytes):
                        c, size = closing.popleft()
                        held -= size
                        if c.state is not None:
                            self._emit(c.state, table, False)
                    # connection attempts (a SYN flood opens a conversation per SYN, each open until idle): at most
                    # attempts_max of them stay, the oldest are finalized. Entries that stopped being attempts
                    # (answered, finalized) are dropped as they reach the front, or all at once when they are
                    # most of the queue.
                    while attempts and (not attempts[0].bare or table.bare_count > attempts_max):
                        c = attempts.popleft()
                        if c.bare and c.state is not None:
                            self._emit(c.state, table, False)
                    if len(attempts) > 2 * table.bare_count + CHECK_EVERY:
                        attempts = deque(c for c in attempts if c.bare)
                    if next_check % (CHECK_EVERY * 16) == 0:
                        for c in table.active():
                            cs = c.state
                            if cs is not None and cs.end_ts + idle < now:
                                self._emit(cs, table, False)
                        if self.progress is not None:
                            self.progress(reader.position, reader.total_bytes)
                    next_check += CHECK_EVERY
                    if not batch:
                        break
                last_ts = batch_last_ts
        except CaptureError as e:
            readable = False
            fatal = str(e)
        finally:
            reader.close()
        for c in table.active():
            if c.state is not None:
                self._emit(c.state, table, True)
        self.seen += table.next_id
        self._table = None
        decoder.flush_fragments()
        findings = _capture_findings(path, reader, decoder, fatal)
        findings.extend(self._unattached.findings(path))
        self.totals.count(findings)
        self.totals.inputs.append(InputSummary(
            index=index, path=path, format=reader.format, compressed=reader.compressed,
            linktypes=tuple((lt, LINKTYPE_NAMES.get(lt, f"link type {lt}"), cnt)
                            for lt, cnt in sorted(reader.linktypes.items())),
            frames=number, tcp_frames=decoder.tcp_frames, conversations=table.next_id,
            first_ns=first_ts, last_ns=last_ts, findings=tuple(findings), readable=readable,
        ))


def _closing_packet(st: State, conv: Conversation, d: int, pkt: TcpPacket,
                    closing: deque[tuple[Conversation, int]]) -> int:
    """A FIN or RST of an open conversation: hand it to the state; if that closed the conversation, queue it in
    ``closing`` with its held_bytes and return those (else 0). (A function of its own: the caller's test that the
    conversation was open does not hold after the packet, which a type checker would assume.)"""
    st.packet(d, pkt)
    if conv.closed_at is None:
        return 0
    size: int = conv.state.held_bytes()  # not st: a SynOnly has become a ConvState
    closing.append((conv, size))
    return size


def _capture_findings(path: str, reader: CaptureReader, decoder: Decoder, fatal: str | None) -> list[Finding]:
    out: list[Finding] = []
    if fatal is not None:
        out.append(Finding("capture.unreadable", Severity.ERROR, fatal, rule="pcap / pcapng file format"))
    for p in reader.problems:
        sev = Severity.ERROR if p.fatal else Severity.NOTICE if p.minor else Severity.WARNING
        out.append(Finding(p.code, sev, p.message,
                           frames=(p.frame,) if p.frame else (),
                           detail={"offset": p.offset, "frame": p.frame, "stopped_reading": p.fatal},
                           rule="pcap / pcapng file format"))
    skips = list(decoder.skips.values())
    if decoder.snaplen_cut.count:
        skips.append(decoder.snaplen_cut)
    if decoder.short_frames.count:
        skips.append(decoder.short_frames)
    for s in skips:
        rule = ""
        if s.code == "capture.snaplen":
            msg = (f"{path}: {s.count} TCP segment(s) were cut by the capture's snaplen; the missing bytes are "
                   f"treated as gaps, not as data (first: frame {s.frames[0]})")
            sev = Severity.NOTICE
        elif s.code == "capture.short-frame":
            msg = (f"{path}: {s.count} frame(s) carrying TCP were shorter on the wire than their IP length says; "
                   f"their segments were analyzed with the bytes on the wire, as Wireshark does, but a receiving "
                   f"host drops such a packet before TCP sees it (first: frame {s.frames[0]})")
            sev = Severity.WARNING
            rule = "RFC 791 Total Length / RFC 8200 Payload Length; Linux ip_rcv_core / ip6_rcv_core drop it (InTruncatedPkts)"
        elif s.code == "capture.linktype":
            msg = f"{path}: {s.count} frame(s) skipped: {s.reason} (first: frame {s.frames[0]})"
            sev = Severity.WARNING
        else:
            msg = f"{path}: {s.count} frame(s) could not be decoded: {s.reason} (first: frame {s.frames[0]})"
            sev = Severity.WARNING
        out.append(Finding(s.code, sev, msg, frames=tuple(s.frames),
                           detail={"count": s.count, "reason": s.reason}, rule=rule))
    return out


def packet_annotations(path: str) -> Iterator[tuple[int, int, int]]:
    """(frame, conversation id, Wireshark-flag mask) for every TCP frame: for the tshark crosscheck."""
    reader = CaptureReader(path)
    decoder = Decoder()
    table = FlowTable()
    trackers: dict[int, TcpTracker] = {}
    pkt: Any  # a TcpPacket, or an IcmpError (flags & ICMP_EVENT)
    try:
        for frame in reader:
            pkt = decoder.decode(frame)
            if pkt is None:
                continue
            if pkt.flags & ICMP_EVENT:  # an ICMP error: its frame has the quoted segment's tcp.stream, no flags
                found = table.icmp(pkt)
                if found is not None and pkt.numbered:
                    yield pkt.frame, found[0].id, 0
                continue
            conv, d, _ = table.route(pkt)
            tr = trackers.get(conv.id)
            if tr is None:
                tr = trackers[conv.id] = TcpTracker()
            yield pkt.frame, conv.id, tr.analyze(d, pkt)
    finally:
        reader.close()
