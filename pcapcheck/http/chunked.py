"""The chunked transfer coding (RFC 9112 §7.1), walked incrementally over a caller-owned buffer.

    chunked-body = *chunk last-chunk trailer-section CRLF
    chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    last-chunk   = 1*("0") [ chunk-ext ] CRLF

Sans-IO and bounded: chunk-data is skipped by its size (never byte by byte in Python), at most ``keep`` decoded
bytes are kept as an excerpt, lines are found with ``bytes.find`` and limited in length. Faults become Issues
(pcapcheck.http.issues). Lenient deviations (bare LF, whitespace, extensions) are reported once per body and
counted; the walk goes on. Fatal ones (bad size, overflow, missing CRLF) stop the walk: the body boundary is
lost, and the reader resynchronises on the next message start.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from pcapcheck.http import abnf, codes
from pcapcheck.http.issues import Issue, plural, show

LINE_LIMIT: Final = 16 * 1024  # a chunk-size line (with extensions and LF) longer than this is not a chunk-size line
TRAILER_LIMIT: Final = 64 * 1024  # the trailer section, like a head, must end within this


class ChunkPhase(enum.Enum):
    SIZE = "waiting for a chunk-size line"
    DATA = "inside chunk-data"
    DATA_CRLF = "waiting for the CRLF after chunk-data"
    TRAILER = "inside the trailer section"
    DONE = "complete"
    FAILED = "malformed"


# Enum members as module globals for feed's loop: in CPython 3.11 ``ChunkPhase.DATA`` costs ten times a global.
_SIZE: Final = ChunkPhase.SIZE
_DATA: Final = ChunkPhase.DATA
_DATA_CRLF: Final = ChunkPhase.DATA_CRLF
_TRAILER: Final = ChunkPhase.TRAILER
# A chunk-size line that needs none of _size_line's checks (for skim): hex digits, at most 16 of them, CRLF.
_PLAIN_SIZE_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})\r\n")
_CRLF_SIZE_LINE: Final = re.compile(rb"\r\n([0-9A-Fa-f]{1,16})\r\n")  # the CRLF after chunk-data, then one


class ChunkedDecoder:
    """Feed with ``feed(buf, pos, base)``: ``buf[i]`` is the byte at stream offset ``base + i``."""

    def __init__(self, start: int, keep: int = 4096) -> None:
        self.phase = ChunkPhase.SIZE
        self.start = start  # stream offset of the first byte of the chunked body
        self.end = start  # stream offset just after the last byte walked
        self.remaining = 0  # chunk-data bytes of the current chunk still to come
        self.size = 0  # the current chunk's size
        self.size_offset = start  # stream offset of the current chunk-size line
        self.chunks = 0  # chunks with data (the last-chunk not counted)
        self.decoded = 0  # chunk-data bytes walked, including bytes lost in capture gaps
        self.missing = 0  # chunk-data bytes lost in capture gaps
        self.keep = keep
        self.kept = bytearray()  # the first ``keep`` decoded bytes
        self.issues: list[Issue] = []
        self.counts: dict[str, int] = {}  # lenient deviations by code, all occurrences
        self.trailer_lines: list[tuple[int, bytes]] = []  # (offset, line without LF, CR kept); the reader
        # takes them as they complete
        self._trailer_bytes = 0
        self._scan = start  # stream offset where the next LF search starts (no rescans when fed byte by byte)

    @property
    def done(self) -> bool:
        return self.phase is ChunkPhase.DONE

    @property
    def failed(self) -> bool:
        return self.phase is ChunkPhase.FAILED

    def describe(self) -> str:
        """Where the walk stands, in words, for truncation and incompleteness findings."""
        if self.phase is ChunkPhase.DATA:
            return f"inside chunk {self.chunks} ({self.size - self.remaining} of {self.size} bytes of chunk-data seen)"
        return f"{self.phase.value} after {plural(self.chunks, 'chunk')}"

    def feed(self, buf: bytes | bytearray, pos: int, base: int) -> int:
        """Walk ``buf[pos:]``; return the position of the first byte not consumed."""
        n = len(buf)
        while pos < n:
            phase = self.phase
            if phase is _DATA:
                take = min(n - pos, self.remaining)
                room = self.keep - len(self.kept)
                if room > 0:
                    self.kept += buf[pos : pos + min(take, room)]
                pos += take
                self.remaining -= take
                self.decoded += take
                if self.remaining == 0:
                    self.phase = _DATA_CRLF
            elif phase is _SIZE or phase is _TRAILER:
                # Limits are judged on the line as it will be (LF included), not on what has arrived, so the
                # verdict does not depend on segmentation: no LF yet and already too long means too long.
                lf = buf.find(b"\n", max(pos, self._scan - base))
                room = LINE_LIMIT if phase is _SIZE else TRAILER_LIMIT - self._trailer_bytes
                if (lf if lf >= 0 else n) + 1 - pos > room:
                    self._too_long(bytes(buf[pos : pos + 64]), base + pos)
                    break
                if lf < 0:
                    self._scan = base + n
                    break
                line = bytes(buf[pos:lf])
                at = base + pos
                pos = lf + 1
                self._scan = base + pos
                if phase is _SIZE:
                    self._size_line(line, at)
                else:
                    self._trailer_line(line, at)
            elif phase is _DATA_CRLF:
                # chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
                first = buf[pos]
                if first == 0x0A:
                    self._lenient(codes.CHUNK_BARE_LF, base + pos, 1, self._bare_lf_text(b"chunk-data", base + pos))
                    pos += 1
                    self.phase = _SIZE
                    self._scan = base + pos
                elif first == 0x0D and pos + 1 >= n:
                    break  # need the next byte
                elif first == 0x0D and buf[pos + 1] == 0x0A:
                    pos += 2
                    self.phase = _SIZE
                    self._scan = base + pos
                else:
                    found = bytes(buf[pos : pos + 2]) if first == 0x0D else bytes(buf[pos : pos + 1])
                    self._fail(
                        codes.CHUNK_CRLF_MISSING,
                        base + pos,
                        len(found),
                        f"Chunk-data of {self.size} bytes (chunk-size line at offset {self.size_offset}) is followed "
                        f"by {show(found)} instead of CRLF: the chunk-size does not match the data (RFC 9112 §7.1); "
                        "h11, llhttp, nginx and curl reject the body, Wireshark shows the bytes as the chunk boundary.",
                        {"chunk_size": self.size, "size_line_offset": self.size_offset, "found": found},
                    )
                    break
            else:
                break
        self.end = base + pos
        return pos

    def skim(self, data: bytes, offset: int) -> bool:
        """``feed`` for a whole segment at stream offset ``offset`` (= ``end``), walked straight from ``data`` (no
        copy into a buffer): True when the segment holds nothing but chunk-data, CRLFs after it and plain
        chunk-size lines (1 to 16 hex digits, CRLF, not the last-chunk, below the overflow bound) - the state is
        then exactly what ``feed`` would leave. Otherwise (a partial line at either end, an extension,
        whitespace, a bare LF, the last-chunk, anything to report) False, having changed nothing: ``feed`` walks
        the segment instead."""
        phase = self.phase
        if phase is not _DATA and phase is not _DATA_CRLF and phase is not _SIZE:
            return False
        n = len(data)
        pos = 0
        remaining = self.remaining
        chunks = self.chunks
        size, size_offset, scan = self.size, self.size_offset, self._scan
        walked = 0  # chunk-data bytes
        room = self.keep - len(self.kept)
        kept: list[bytes] = []  # excerpt pieces, added once the segment is known to be plain
        while True:
            if phase is _DATA:
                take = n - pos
                if take <= remaining:  # the segment ends in (or with) this chunk's data
                    if room > 0:
                        kept.append(data[pos : pos + min(take, room)])
                    remaining -= take
                    walked += take
                    if remaining == 0:
                        phase = _DATA_CRLF
                    break
                if room > 0:
                    kept.append(data[pos : pos + min(remaining, room)])
                    room -= remaining
                pos += remaining
                walked += remaining
                remaining = 0
                phase = _DATA_CRLF
            elif pos == n:
                break
            else:
                # chunk-data CRLF, then chunk-size CRLF (or, at the segment's start, just the chunk-size line)
                m = (_CRLF_SIZE_LINE if phase is _DATA_CRLF else _PLAIN_SIZE_LINE).match(data, pos)
                if m is None:
                    return False
                size = int(m[1], 16)
                if size == 0 or size > abnf.MAX_CHUNK_SIZE:
                    return False
                size_offset = offset + m.start(1)
                pos = m.end()
                scan = offset + pos
                chunks += 1
                remaining = size
                phase = _DATA
        for piece in kept:
            self.kept += piece
        self.phase = phase
        self.remaining = remaining
        self.decoded += walked
        self.chunks = chunks
        self.size, self.size_offset, self._scan = size, size_offset, scan
        self.end = offset + n
        return True

    def gap(self, length: int) -> bool:
        """``length`` bytes were never captured here. True if they fall inside the current chunk-data."""
        if self.phase is ChunkPhase.DATA and length <= self.remaining:
            self.remaining -= length
            self.decoded += length
            self.missing += length
            self.end += length
            if self.remaining == 0:
                self.phase = ChunkPhase.DATA_CRLF
            return True
        return False

    # --- lines ---------------------------------------------------------------------------------------------

    def _size_line(self, raw: bytes, at: int) -> None:
        if raw.endswith(b"\r"):
            line = raw[:-1]
        else:
            line = raw
            self._lenient(codes.CHUNK_BARE_LF, at + len(raw), 1, self._bare_lf_text(raw, at + len(raw)))
        n = len(line)
        i = 0
        while i < n and line[i] in (0x20, 0x09):
            i += 1
        m = abnf.HEXDIG.match(line, i)
        if m is None:
            why = "an empty line" if i == n else f"{show(line[i : i + 1])} where a hex digit must be"
            self._invalid(line, at, at + i, why)
            return
        digits = m.group()
        j = m.end()
        k = j
        while k < n and line[k] in (0x20, 0x09):
            k += 1
        if k < n and line[k] != 0x3B:  # ";"
            if digits == b"0" and line[j : j + 1] in (b"x", b"X"):
                why = "a 0x prefix (chunk-size is bare hex)"
            elif line[k] == 0x0D:
                why = "a bare CR after the size"
            else:
                why = f"{show(line[k : k + 1])} after the hex digits {show(digits)}"
            self._invalid(line, at, at + k, why)
            return
        if len(digits) > abnf.MAX_CHUNK_SIZE_DIGITS or int(digits, 16) > abnf.MAX_CHUNK_SIZE:
            self._fail(
                codes.CHUNK_SIZE_OVERFLOW,
                at + i,
                len(digits),
                f"Chunk-size {show(digits)} has {len(digits)} hex digits (more than 16, or at least 2^63): "
                "recipients MUST guard against integer overflow (RFC 9112 §7.1); Envoy, nginx, llhttp and curl "
                "reject it, h11 accepts up to 20 digits, Wireshark clamps it.",
                {"line": raw, "digits": len(digits)},
            )
            return
        if i > 0 or k > j:
            where = "before the size" if i > 0 else ("before ';'" if k < n else "after the size")
            bws = " (whitespace before ';' is BWS: tolerated, but a sender MUST NOT generate it)" if k < n else ""
            self._lenient(
                codes.CHUNK_WHITESPACE,
                at + (0 if i > 0 else j),
                i if i > 0 else k - j,
                f"Chunk-size line {show(line)} has whitespace {where}: chunk-size = 1*HEXDIG (RFC 9112 §7.1){bws}; "
                "h11, nginx and curl tolerate it, llhttp rejects it.",
                {"line": raw},
            )
        if k < n:
            ext = line[j:]
            if abnf.CHUNK_EXT.fullmatch(ext) is not None:
                self._lenient(
                    codes.CHUNK_EXTENSION,
                    at + k,
                    n - k,
                    f"Chunk extension {show(line[k:])} on chunk-size line {show(line)}: legal and ignored by "
                    "recipients (RFC 9112 §7.1.1); listed because extensions are rare and can carry hidden data.",
                    {"line": raw, "extension": line[k:]},
                )
            else:
                cr = " (it contains a bare CR)" if b"\r" in ext else ""
                self._lenient(
                    codes.CHUNK_EXTENSION_INVALID,
                    at + k,
                    n - k,
                    f"Chunk extension {show(line[k:])} on chunk-size line {show(line)} does not match chunk-ext "
                    f"(';' token ['=' token / quoted-string], RFC 9112 §7.1.1){cr}; parsers that stop at a different "
                    "byte of it frame the body differently.",
                    {"line": raw, "extension": line[k:]},
                )
        size = int(digits, 16)
        self.size = size
        self.size_offset = at
        if size == 0:
            # last-chunk = 1*("0") [ chunk-ext ] CRLF, then trailer-section CRLF
            self.phase = ChunkPhase.TRAILER
        else:
            self.chunks += 1
            self.remaining = size
            self.phase = ChunkPhase.DATA

    def _trailer_line(self, raw: bytes, at: int) -> None:
        # trailer-section = *( field-line CRLF ), ended by the final CRLF of chunked-body
        if raw in (b"", b"\r"):
            if raw == b"":
                self._lenient(codes.CHUNK_BARE_LF, at, 1, self._bare_lf_text(b"", at))
            self.phase = ChunkPhase.DONE
            return
        if not raw.endswith(b"\r"):
            self._lenient(codes.CHUNK_BARE_LF, at + len(raw), 1, self._bare_lf_text(raw, at + len(raw)))
        self._trailer_bytes += len(raw) + 1
        self.trailer_lines.append((at, raw))

    # --- reporting -----------------------------------------------------------------------------------------

    @staticmethod
    def _bare_lf_text(before: bytes, at: int) -> str:
        return (
            f"Chunked body line ended by a bare LF at offset {at} (after {show(before[-32:])}): RFC 9112 §7.1 "
            "requires CRLF; nginx and curl accept it, h11 and llhttp reject it, so peers disagree on where the "
            "body ends."
        )

    def _invalid(self, line: bytes, line_at: int, at: int, why: str) -> None:
        self._fail(
            codes.CHUNK_SIZE_INVALID,
            at,
            1,
            f"Chunk-size line {show(line)} at offset {line_at} is not 1*HEXDIG [chunk-ext] CRLF ({why}): strict "
            "peers reject the body (llhttp: Invalid character in chunk size; curl: exit 56), while Wireshark reads "
            "it as size 0.",
            {"line": line, "line_offset": line_at},
        )

    def _too_long(self, head: bytes, at: int) -> None:
        if self.phase is ChunkPhase.SIZE:
            self._fail(
                codes.CHUNK_SIZE_INVALID,
                at,
                LINE_LIMIT,
                f"No line end within {LINE_LIMIT} bytes of a chunk-size line starting {show(head, 32)}: not a "
                "chunk-size line (RFC 9112 §7.1).",
                {"line": head},
            )
        else:
            self._fail(
                codes.UNPARSEABLE,
                at,
                TRAILER_LIMIT - self._trailer_bytes,
                f"Trailer section longer than {TRAILER_LIMIT} bytes (starting {show(head, 32)}): not parsed further.",
                {"line": head, "reason": "trailer section too long"},
            )

    def _fail(self, code: str, at: int, length: int, text: str, detail: dict) -> None:
        self.phase = ChunkPhase.FAILED
        self.issues.append(Issue(code, at, length, text, detail))

    def _lenient(self, code: str, at: int, length: int, text: str, detail: dict | None = None) -> None:
        seen = self.counts.get(code, 0)
        self.counts[code] = seen + 1
        if seen == 0:  # once per body; ``counts`` has them all
            self.issues.append(Issue(code, at, length, text, dict(detail or {}, first_of_body=True)))
