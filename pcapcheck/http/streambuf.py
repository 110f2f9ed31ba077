"""The unconsumed bytes of one stream direction, the bytes just before them, and which frame carried which offset.

A reader appends each segment, parses from the front and consumes what it is done with; what stays is bounded
by what the parser still needs (a partial line or head) plus HISTORY bytes kept for excerpts. Segment starts
are kept only for the bytes still held, so "which frame carried offset X" is answered for every byte a finding
can point at, in O(log n).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Final

HISTORY: Final = 64  # bytes kept before the buffer, for excerpts


class StreamBuffer:
    """The unconsumed bytes of one direction, the 64 bytes before them, and which frame carried which offset."""

    __slots__ = ("buf", "base", "history", "reset_at", "seg_off", "seg_frame")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.base = 0  # stream offset of buf[0]
        self.history = b""  # the bytes just before buf[0] (at most HISTORY), back to reset_at
        self.reset_at = 0  # no bytes before this offset are contiguous with the buffer (stream start or a gap)
        self.seg_off: list[int] = []
        self.seg_frame: list[int] = []

    @property
    def end(self) -> int:
        return self.base + len(self.buf)

    @property
    def available_from(self) -> int:
        return self.base - len(self.history)

    def append(self, offset: int, data: bytes, frame: int) -> None:
        self.seg_off.append(offset)
        self.seg_frame.append(frame)
        self.buf += data

    def skip(self, offset: int, data: bytes, frame: int) -> None:
        """``append(offset, data, frame)`` then ``consume`` it all, without copying ``data`` into the buffer.

        Only for an empty buffer and ``offset == end``. What stays is what ``consume`` would leave: the last
        HISTORY bytes as history, and the segment starts from the one holding the first history byte on (just
        this segment when it carries all of them), so the offset->frame map stays bounded however long a
        body is skipped this way."""
        n = len(data)
        self.base = offset + n
        if n >= HISTORY:
            history = data[-HISTORY:]
            # (bytes(history) for bytes data would be the same object, after a costly call)
            self.history = history if history.__class__ is bytes else bytes(history)
            seg_off = self.seg_off
            if len(seg_off) == 1:
                seg_off[0] = offset
                self.seg_frame[0] = frame
            else:
                self.seg_off = [offset]
                self.seg_frame = [frame]
        else:
            self.history = (self.history + bytes(data))[-HISTORY:]
            self.seg_off.append(offset)
            self.seg_frame.append(frame)
            self._prune()

    def consume(self, n: int) -> None:
        if n <= 0:
            return
        if n >= HISTORY:
            self.history = bytes(self.buf[n - HISTORY : n])
        else:
            self.history = (self.history + bytes(self.buf[:n]))[-HISTORY:]
        del self.buf[:n]
        self.base += n
        self._prune()

    def reset(self, offset: int) -> None:
        """Discontinuity (capture loss): nothing before ``offset`` is kept."""
        self.buf.clear()
        self.base = offset
        self.history = b""
        self.reset_at = offset
        self._prune()

    def _prune(self) -> None:
        keep_from = self.available_from
        i = bisect_right(self.seg_off, keep_from) - 1
        if i > 0:
            del self.seg_off[:i]
            del self.seg_frame[:i]

    def frame_at(self, offset: int) -> int:
        if not self.seg_off:
            return 0
        i = bisect_right(self.seg_off, offset) - 1
        return self.seg_frame[max(i, 0)]

    def frames_at(self, offsets: list[int]) -> list[int]:
        """frame_at for ascending offsets, walking the segments once."""
        seg_off, seg_frame = self.seg_off, self.seg_frame
        if not seg_off:
            return [0] * len(offsets)
        i = max(bisect_right(seg_off, offsets[0]) - 1, 0)
        last = len(seg_off) - 1
        out = []
        for off in offsets:
            while i < last and seg_off[i + 1] <= off:
                i += 1
            out.append(seg_frame[i])
        return out

    def frames_for(self, offset: int, length: int, cap: int = 16) -> tuple[int, ...]:
        if not self.seg_off:
            return ()
        i = max(bisect_right(self.seg_off, offset) - 1, 0)
        stop = offset + max(length, 1)
        out: dict[int, None] = {}
        while i < len(self.seg_off) and self.seg_off[i] < stop and len(out) < cap:
            out[self.seg_frame[i]] = None
            i += 1
        return tuple(out)

    def slice(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) clipped to what is still held (history + buffer)."""
        start = max(start, self.available_from)
        stop = min(stop, self.end)
        if stop <= start:
            return b""
        if start >= self.base:
            return bytes(self.buf[start - self.base : stop - self.base])
        head = self.history[len(self.history) - (self.base - start) :]
        return head[: stop - start] + bytes(self.buf[: max(0, stop - self.base)])
