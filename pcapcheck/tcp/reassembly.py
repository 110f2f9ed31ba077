"""Per-direction TCP reassembly (sans-IO).

Sequence numbers are mapped to 64-bit stream offsets (0 = first byte after the SYN)
through ``seq.diff`` against the next expected sequence number, so wraparound and
streams longer than 4 GiB both work. Policy:

* in-order bytes are delivered at once, with the frame that carried them;
* the first copy of a byte wins; a later copy that differs is an overlap mismatch
  (compared against a bounded tail of recently delivered bytes);
* out-of-order segments are buffered (bounded) until the hole fills, the peer
  ACKs past the hole (the bytes were never captured), or the direction ends;
* bytes never captured become an explicit gap, never invented bytes; bytes cut by
  the snaplen are a gap with reason "snaplen".
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from heapq import heappop, heappush
from operator import itemgetter
from typing import Final, cast

from pcapcheck import seq as sq
from pcapcheck.seq import MASK, MOD
from pcapcheck.spool import Spool

MAX_BUFFERED: Final = 1 << 20  # out-of-order bytes buffered per direction before forcing a gap
# ... and segments: with small segments the entries, about 350 bytes each however small the segment, are the memory
# (a MiB of 1-byte segments beyond a hole held 350 MB); 4,096 is 1 MiB of 256-byte segments
MAX_PENDING: Final = 4096
# out-of-order bytes of all the conversations of a run (a SegmentSpill) kept in memory; more go to a file
BUFFERED_IN_MEMORY = 16 << 20
TAIL_KEEP: Final = 32 * 1024  # delivered bytes kept to compare retransmissions against
HEAD_KEEP: Final = 4096  # first bytes of the stream kept for the report ("follow stream")

DataSink = Callable[[int, bytes, int, int], None]  # (offset, data, frame, ts)
GapSink = Callable[[int, int, int, str], None]  # (offset, length, frame, reason)
_entry_offset: Final = itemgetter(0)  # of a tail entry (offset, bytes, frame)


class Mismatch:
    __slots__ = ("offset", "length", "frame", "first_frame", "first", "second")

    def __init__(self, offset: int, length: int, frame: int, first_frame: int, first: bytes, second: bytes):
        self.offset, self.length, self.frame, self.first_frame = offset, length, frame, first_frame
        self.first, self.second = first, second


class _RestartedTail:
    """The compared-against bytes after ``start()`` moved offset 0 under a non-empty tail (a direction that
    delivered bytes before its SYN was seen): kept as one byte string positioned by the order of delivery,
    with (offset, frame) pairs positioned by their own offsets, as the reassembler always did. Rare; the
    reassembler returns to the plain ``tail`` at the next gap."""

    __slots__ = ("buf", "off", "frames")

    def __init__(self, buf: bytearray, off: int, frames: list[tuple[int, int]]) -> None:
        self.buf = buf
        self.off = off  # offset of buf[0]
        self.frames = frames

    def append(self, entry: tuple[int, bytes, int]) -> None:
        off, data, frame = entry
        buf = self.buf
        buf += data
        self.frames.append((off, frame))
        if len(buf) > 2 * TAIL_KEEP:
            cut = len(buf) - TAIL_KEEP
            del buf[:cut]
            self.off += cut
            tf = self.frames
            while len(tf) > 1 and tf[1][0] <= self.off:
                tf.pop(0)


class _OnDisk:
    """A buffered segment's bytes in the SegmentSpill's file; ``len`` is theirs (pending_bytes counts them)."""

    __slots__ = ("where",)

    def __init__(self, where: tuple[int, int]) -> None:
        self.where = where

    def __len__(self) -> int:
        return self.where[1]


class SegmentSpill:
    """Out-of-order segments of a whole run. Each direction buffers up to MAX_BUFFERED beyond a hole until the
    hole fills or is declared lost, so what is buffered grows with the conversations that wait at once (a capture
    of one direction with early loss: 100 conversations, 170 MB). Beyond BUFFERED_IN_MEMORY for the run, buffered
    bytes wait in a temporary file until delivered. The output does not change: no hole is declared for memory's
    sake (a run's conversations are sharded over processes, and the results must not depend on how)."""

    __slots__ = ("held", "_spool")

    def __init__(self) -> None:
        self.held = 0  # buffered bytes in memory, over the run's reassemblers
        self._spool = Spool("pcapcheck-segments-")

    def keep(self, data: bytes) -> bytes | _OnDisk:
        if self.held + len(data) > BUFFERED_IN_MEMORY:
            return _OnDisk(self._spool.write(data))
        self.held += len(data)
        return data

    def take(self, data: bytes | _OnDisk) -> bytes:
        if type(data) is _OnDisk:
            return self._spool.read(data.where)
        self.held -= len(data)
        return data  # type: ignore[return-value]

    def close(self) -> None:
        self._spool.close()


class Reassembler:
    """One direction. Call ``segment`` for every packet with payload (or SYN/FIN).

    The bytes kept for comparing retransmissions are not copied: ``tail`` holds references to the
    delivered payloads as (stream offset, bytes, frame), contiguous and ending at ``next_off``. Only the
    bytes from ``tail_off`` on count (between TAIL_KEEP and 2 x TAIL_KEEP of them); the first entry may
    start before ``tail_off``. Entries are dropped from the left once their successor starts at or before
    ``tail_off``, so the frame of each kept byte's first copy stays known.
    """

    __slots__ = (
        "next_seq", "next_off", "started", "pending", "pending_bytes", "tail", "tail_off", "trim_at",
        "head", "head_open", "on_data", "on_gap", "mismatches", "gaps", "gap_bytes", "overflowed", "overflowed_segments",
        "fin_off", "retransmitted_bytes", "_restarted_off", "_order", "spill",
    )

    def __init__(self, on_data: DataSink | None = None, on_gap: GapSink | None = None,
                 spill: SegmentSpill | None = None) -> None:
        self.spill = spill  # where buffered segments go when the run holds many (None: all in memory)
        self.next_seq = 0
        self.next_off = 0
        self.started = False
        # offset -> (data, frame, ts, wire length); data is bytes, or _OnDisk when the spill keeps them
        self.pending: dict[int, tuple[bytes | _OnDisk, int, int, int]] = {}
        self.pending_bytes = 0
        # pending's offsets as a heap: the first buffered segment without a scan of them all (loss recovery
        # over a large window buffers thousands; one scan per segment delivered or ACK seen was quadratic)
        self._order: list[int] = []
        # (offset, delivered bytes, frame), see above; a _RestartedTail in a rare case, see start()
        self.tail: list[tuple[int, bytes, int]] | _RestartedTail = []  # (a list: a deque is 760 bytes even empty)
        self.tail_off = 0  # stream offset of the first kept byte; the kept bytes end at next_off
        self.trim_at = 2 * TAIL_KEEP  # tail_off + 2 * TAIL_KEEP: trim the tail when next_off passes it
        self.head = bytearray()
        self.head_open = True  # len(head) < HEAD_KEEP
        self.on_data = on_data
        self.on_gap = on_gap
        self.mismatches: list[Mismatch] = []
        self.gaps = 0
        self.gap_bytes = 0
        self.overflowed = False  # MAX_BUFFERED was passed (a hole declared lost to go on)
        self.overflowed_segments = False  # MAX_PENDING was
        self._restarted_off = 0  # next_off when start() moved offset 0 (summed), for ``delivered``
        self.fin_off: int | None = None
        self.retransmitted_bytes = 0

    @property
    def delivered(self) -> int:
        """Bytes delivered so far. Every offset before next_off was delivered or declared a gap, so this is
        not counted per segment."""
        return self.next_off - self.gap_bytes + self._restarted_off

    def start(self, isn_plus_one: int) -> None:
        """Set the sequence number of stream offset 0 (ISN + 1, or the first data seq mid-stream)."""
        self._restarted_off += self.next_off
        tail = self.tail
        if type(tail) is list and (tail or self.tail_off):
            # Offset 0 moves under bytes already kept (a SYN seen after the direction's data): the kept
            # bytes no longer end at next_off. Keep them the way they always were compared.
            buf = bytearray()
            for o, b, _fr in tail:
                buf += b[max(self.tail_off - o, 0) :]
            self.tail = _RestartedTail(buf, self.tail_off, [(o, fr) for o, _b, fr in tail])
        self.next_seq = isn_plus_one & sq.MASK
        self.next_off = 0
        self.started = True

    def offset_of(self, seqno: int) -> int:
        return self.next_off + sq.diff(seqno, self.next_seq)

    def segment(self, seqno: int, data: bytes, wire_len: int, frame: int, ts: int) -> None:
        """A segment's payload (``data`` as captured; ``wire_len`` >= len(data) when cut by the snaplen)."""
        if seqno == self.next_seq and self.started and not self.pending:
            # In order, nothing buffered: deliver (this is _deliver, inlined for the common case).
            off = self.next_off
            n = len(data)
            nxt = off + wire_len
            self.next_off = nxt
            seqno += wire_len  # the next expected sequence number, mod 2**32
            self.next_seq = seqno if seqno <= MASK else seqno - MOD
            if n:
                if self.head_open:
                    self._keep_head(data)
                self.tail.append((off, data, frame))
                if nxt > self.trim_at:
                    self._trim_tail()
                on_data = self.on_data
                if on_data is not None:
                    on_data(off, data, frame, ts)
            if wire_len > n:
                self._gap(off + n, wire_len - n, frame, "snaplen")
                self._reset_tail(nxt)
            return
        if not self.started:
            self.start(seqno)
        off = self.next_off + sq.diff(seqno, self.next_seq)
        nxt = self.next_off
        if off == nxt and not self.pending:
            self._deliver(off, data, wire_len, frame, ts)
            return
        end = off + wire_len
        if end <= nxt:
            self._compare(off, data, frame)
            self.retransmitted_bytes += wire_len
            return
        if off < nxt:
            skip = nxt - off
            self._compare(off, data[:skip], frame)
            self.retransmitted_bytes += skip
            data, wire_len, off = data[skip:], wire_len - skip, nxt
        if off == nxt:
            self._deliver(off, data, wire_len, frame, ts)
            self._drain()
            return
        # beyond a hole: buffer (first copy wins among buffered ones too)
        prev = self.pending.get(off)
        if prev is None or prev[3] < wire_len:
            spill = self.spill
            if prev is not None:
                # a longer segment at the same offset: the first copy's bytes win, the rest is new
                first = spill.take(prev[0]) if spill is not None else cast(bytes, prev[0])  # (bytes without a spill)
                data = first + data[len(first):]
                self.pending_bytes -= len(first)
                frame, ts = prev[1], prev[2]
            else:
                heappush(self._order, off)
            self.pending[off] = (data if spill is None else spill.keep(data), frame, ts, wire_len)
            self.pending_bytes += len(data)
            if self.pending_bytes > MAX_BUFFERED:
                self.overflowed = True
                self.skip_to(self._order[0], frame, "lost")
            elif len(self.pending) > MAX_PENDING:
                self.overflowed_segments = True
                self.skip_to(self._order[0], frame, "lost")

    def _deliver(self, off: int, data: bytes, wire_len: int, frame: int, ts: int) -> None:
        n = len(data)
        nxt = off + wire_len
        self.next_off = nxt
        self.next_seq = (self.next_seq + wire_len) & sq.MASK
        if n:
            if self.head_open:
                self._keep_head(data)
            self.tail.append((off, data, frame))
            if nxt > self.trim_at:
                self._trim_tail()
            if self.on_data is not None:
                self.on_data(off, data, frame, ts)
        if wire_len > n:
            self._gap(off + n, wire_len - n, frame, "snaplen")
            self._reset_tail(nxt)

    def _keep_head(self, data: bytes) -> None:
        head = self.head
        head += data[: HEAD_KEEP - len(head)]
        if len(head) >= HEAD_KEEP:
            self.head_open = False

    def _trim_tail(self) -> None:
        """Keep the last TAIL_KEEP bytes (and the entry that holds the first of them)."""
        tail = self.tail
        if type(tail) is not list:
            return  # a _RestartedTail trims itself
        self.tail_off = cut = self.next_off - TAIL_KEEP
        self.trim_at = cut + 2 * TAIL_KEEP
        # Drop entries from the left while the next one starts at or before cut (keeping at least one). Entry
        # offsets strictly increase (each holds at least one byte), so that drops all but the last of the
        # entries starting at or before cut: found by bisection rather than by testing ~20 entries one by one.
        drop = bisect_right(tail, cut, key=_entry_offset) - 1
        if drop > 0:
            del tail[:drop]

    def _gap(self, off: int, length: int, frame: int, reason: str) -> None:
        self.gaps += 1
        self.gap_bytes += length
        if self.on_gap is not None:
            self.on_gap(off, length, frame, reason)

    def _reset_tail(self, off: int) -> None:
        """After a gap the kept tail no longer lines up with stream offsets: restart it."""
        self.tail = []
        self.tail_off = off
        self.trim_at = off + 2 * TAIL_KEEP

    def _drain(self) -> None:
        """Deliver the buffered segments that the stream has reached, first offset first."""
        pending, order = self.pending, self._order
        while order:
            nxt = self.next_off
            best = order[0]  # (the heap holds exactly pending's offsets: added with each, taken here only)
            if best > nxt:
                return
            heappop(order)
            kept, frame, ts, wire_len = pending.pop(best)
            self.pending_bytes -= len(kept)
            data = self.spill.take(kept) if self.spill is not None else cast(bytes, kept)  # (bytes without a spill)
            if best + wire_len <= nxt:
                self._compare(best, data, frame)
                continue
            skip = nxt - best
            if skip:
                self._compare(best, data[:skip], frame)
            self._deliver(nxt, data[skip:], wire_len - skip, frame, ts)

    def _compare(self, off: int, data: bytes, frame: int) -> None:
        """A retransmitted copy of delivered bytes: report where it differs from the first copy."""
        if not data:
            return
        tail = self.tail
        if isinstance(tail, _RestartedTail):
            tail_off, tail_end = tail.off, tail.off + len(tail.buf)
        else:
            tail_off, tail_end = self.tail_off, self.next_off  # the kept bytes end at next_off
        start = max(off, tail_off)
        end = min(off + len(data), tail_end)
        if start >= end:
            return
        frames: list[tuple[int, int]]
        if isinstance(tail, _RestartedTail):
            first = bytes(tail.buf[start - tail_off : end - tail_off])
            frames = tail.frames
        else:
            parts = []
            for o, b, _fr in tail:
                e = o + len(b)
                if e <= start:
                    continue
                if o >= end:
                    break
                parts.append(b[max(start - o, 0) : min(end, e) - o])
            first = b"".join(parts)
            frames = [(o, fr) for o, _b, fr in tail]
        second = data[start - off : end - off]
        if first != second and len(self.mismatches) < 100:
            i = next(k for k in range(len(first)) if first[k] != second[k])
            first_frame = 0
            for o, fr in frames:
                if o <= start + i:
                    first_frame = fr
            self.mismatches.append(Mismatch(start + i, end - start - i, frame, first_frame,
                                            first[i : i + 64], second[i : i + 64]))

    def skip_to(self, off: int, frame: int, reason: str) -> None:
        """Declare the bytes up to ``off`` lost and continue from there."""
        nxt = self.next_off
        if off <= nxt:
            return
        self._gap(nxt, off - nxt, frame, reason)
        self.next_seq = (self.next_seq + (off - nxt)) & sq.MASK
        self.next_off = off
        self._reset_tail(off)
        self._drain()

    def acked(self, ackno: int, frame: int) -> None:
        """The peer acknowledged up to ``ackno``: anything before it that we lack was never captured."""
        if not self.started:
            return
        off = self.next_off + sq.diff(ackno, self.next_seq)
        if off <= self.next_off:
            return
        if self.fin_off is not None and off > self.fin_off:
            off = self.fin_off
        # only declare the hole when no buffered segment fills it
        if self.pending:
            first = self._order[0]
            if first <= self.next_off:
                self._drain()
                return
            off = min(off, first) if first < off else off
        if off > self.next_off + (1 << 30):
            return  # an absurd ACK (ACK of unseen data far ahead): not evidence of a gap
        self.skip_to(off, frame, "lost")

    def finish(self, frame: int) -> None:
        """End of the direction: buffered segments beyond holes are delivered after explicit gaps."""
        while self.pending:
            first = self._order[0]
            if first > self.next_off:
                self.skip_to(first, frame, "lost")
            else:
                self._drain()
