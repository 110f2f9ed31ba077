"""Streaming capture reader: classic pcap (four magics), pcapng (all interfaces), gzip, stdin.

The format is detected from content, never from the file name. Records are read from
a buffered chunk with ``struct.unpack_from``; the whole file is never in memory.

Why not ``dpkt.pcap.Reader``: it yields float or Decimal timestamps, stops silently at a
truncated record, knows no byte offsets for error messages and reads only the first
pcapng interface. We use dpkt's header definitions (file header, pcapng constants) and
keep the record loop here, where every failure becomes an explicit ``CaptureProblem``
that names the file, the byte offset and the frame.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, NamedTuple, cast

import dpkt

GZIP_MAGIC: Final = b"\x1f\x8b"
PCAPNG_SHB: Final = dpkt.pcapng.PCAPNG_BT_SHB  # 0x0A0D0D0A
PCAPNG_BOM: Final = 0x1A2B3C4D
# Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD: larger records are treated as corruption.
MAX_RECORD: Final = 262144
CHUNK = 1 << 20
BATCH: Final = 256  # pcapng records per batch (classic pcap: one batch per chunk)
# pcapng blocks that Wireshark numbers as frames although they hold no packet:
# custom blocks (copyable or not) and systemd journal export blocks.
CUSTOM_BLOCKS: Final = {0x00000BAD, 0x40000BAD, 0x00000009}
NO_PACKET: Final = -2  # Frame.linktype of such a record
_EPB: Final = dpkt.pcapng.PCAPNG_BT_EPB
_MAX_BLOCK: Final = 16 * MAX_RECORD + 1024  # a longer pcapng block is damage
_tnew: Final = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (half the cost)

# classic pcap magic (as read little-endian) -> (byte order, nanosecond timestamps)
PCAP_MAGICS: Final = {
    0xA1B2C3D4: ("<", False),
    0xA1B23C4D: ("<", True),
    0xD4C3B2A1: (">", False),
    0x4D3CB2A1: (">", True),
}

LINKTYPE_NAMES: Final = {
    0: "NULL (BSD loopback)",
    1: "Ethernet",
    12: "raw IP",
    101: "raw IP",
    108: "OpenBSD loopback",
    113: "Linux cooked (SLL)",
    228: "raw IPv4",
    229: "raw IPv6",
    239: "NFLOG",
    276: "Linux cooked v2 (SLL2)",
}

# A record of record_batches(): (frame number, time in ns, link type, length on the wire, the chunk holding it, where
# it starts in the chunk, its captured length).
Record = tuple[int, int, int, int, bytes, int, int]


class Frame(NamedTuple):
    """One capture record. ``number`` equals Wireshark's ``frame.number``."""

    number: int
    ts: int  # integer nanoseconds since the epoch
    linktype: int
    caplen: int
    wirelen: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CaptureProblem:
    """Something wrong with the file itself. ``code`` is a finding code (capture.*)."""

    code: str
    message: str
    offset: int | None = None
    frame: int | None = None
    fatal: bool = False  # reading stopped here
    minor: bool = False  # an oddity Wireshark reads without complaint (reported as a notice)


class CaptureError(Exception):
    """Nothing could be read: not a capture at all, or unreadable."""


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    # timestamp units -> ns: ts * mul // div
    mul: int
    div: int
    offset_ns: int


def _tsresol(value: int) -> tuple[int, int]:
    """pcapng if_tsresol: MSB clear = 10^-n, set = 2^-n seconds per unit."""
    n = value & 0x7F
    if value & 0x80:
        return 10**9, 1 << n
    if n <= 9:
        return 10 ** (9 - n), 1
    return 1, 10 ** (n - 9)


class CaptureReader:
    """Iterate over a capture's frames; problems are collected in ``problems``.

    >>> reader = CaptureReader("x.pcap")          # doctest: +SKIP
    >>> for frame in reader: ...                   # doctest: +SKIP
    """

    def __init__(self, path: str, stream: BinaryIO | None = None) -> None:
        self.path = path
        self.problems: list[CaptureProblem] = []
        self.format = "unknown"
        self.compressed = False
        self.linktypes: dict[int, int] = {}  # linktype -> frames
        self.snaplen = 0
        self.frames = 0
        self.total_bytes: int | None = None
        self._raw = stream
        self._f: BinaryIO | None = None
        # The unread bytes are self._buf[self._bufpos:]; self._base is the stream offset of self._buf[0],
        # so the offset of the next unread byte in the (decompressed) stream is _base + _bufpos.
        self._base = 0
        self._buf = b""
        self._bufpos = 0

    # -- opening -------------------------------------------------------------
    def _open(self) -> BinaryIO:
        if self._raw is not None:
            raw = self._raw
        elif self.path == "-":
            raw = sys.stdin.buffer
        else:
            try:
                raw = open(self.path, "rb")  # noqa: SIM115 - closed in close()
                self.total_bytes = os.fstat(raw.fileno()).st_size
            except OSError as e:
                raise CaptureError(f"{self.path}: cannot open: {e.strerror or e}") from None
        if not hasattr(raw, "peek"):
            raw = io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
        head = raw.peek(4)[:4]  # type: ignore[attr-defined]
        if head[:2] == GZIP_MAGIC:
            self.compressed = True
            raw = io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), CHUNK)  # type: ignore[arg-type]
        return raw

    @property
    def position(self) -> int:
        """Bytes consumed so far (of the decompressed stream), for progress and messages."""
        return self._base + self._bufpos

    @property
    def _pos(self) -> int:
        return self._base + self._bufpos

    def close(self) -> None:
        if self._f is not None and self._raw is None and self.path != "-":
            self._f.close()

    # -- buffered reading ------------------------------------------------------
    def _read(self, n: int) -> bytes:
        """Read exactly ``n`` bytes, or fewer at end of file."""
        buf, p = self._buf, self._bufpos
        if len(buf) - p >= n:
            self._bufpos = p + n
            return buf[p : p + n]
        rest = buf[p:]
        self._base += p  # stream offset of rest[0]
        parts = [rest] if rest else []
        have = len(rest)
        assert self._f is not None
        while have < n:
            try:
                chunk = self._f.read(max(CHUNK, n - have))
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                self._add(
                    "capture.truncated",
                    f"{self.path}: read error at byte offset {self._base + have}: {e}",
                    offset=self._base + have,
                    fatal=True,
                )
                chunk = b""
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        if have > n and len(parts) > 1:
            # The request straddles into the last chunk: copy only the few bytes needed from it and keep
            # the chunk itself (uncopied) as the new buffer.
            last = parts.pop()
            before = have - len(last)  # bytes in the earlier parts
            take = n - before
            out = b"".join(parts) + last[:take]
            self._base += before
            self._buf = last
            self._bufpos = take
            return out
        data = b"".join(parts)
        out = data[:n]
        self._buf = data
        self._bufpos = len(out)
        return out

    def _add(self, code: str, message: str, *, offset: int | None = None, frame: int | None = None,
             fatal: bool = False, minor: bool = False) -> None:
        if fatal and any(p.fatal for p in self.problems):
            return  # one fatal problem per file is enough
        self.problems.append(CaptureProblem(code, message, offset, frame, fatal, minor))

    # -- iteration -------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        for batch in self.record_batches():
            for number, ts, linktype, wirelen, buf, start, caplen in batch:
                yield _tnew(Frame, (number, ts, linktype, caplen, wirelen, buf[start : start + caplen]))

    def record_batches(self) -> Iterator[list[Record]]:
        """The hot-path form of iteration: lists of ``(number, ts, linktype, wirelen, buf, start, caplen)``,
        one per record, in file order; the record's bytes are ``buf[start : start + caplen]``, ``buf`` being
        the reader's chunk. Nothing is copied per record, no Frame is built, and the reading loop is left
        once per chunk instead of once per record. Same records, problems and counts as iterating over the
        reader; ``position`` advances a batch at a time.

        Not a generator itself: the file is opened and its format detected at the call.
        """
        self._f = self._open()
        magic = self._read(4)
        if len(magic) < 4:
            if self._pos == 0:
                raise CaptureError(f"{self.path}: empty file: not a capture")
            raise CaptureError(f"{self.path}: only {len(magic)} bytes: not a capture")
        (m_le,) = struct.unpack("<I", magic)
        if m_le in PCAP_MAGICS:
            self.format = "pcap"
            return self._iter_pcap(magic)
        if m_le == PCAPNG_SHB:
            self.format = "pcapng"
            return self._iter_pcapng(magic)
        raise CaptureError(
            f"{self.path}: not a pcap or pcapng file (first bytes {magic.hex()}); "
            "pcapcheck reads pcap, pcapng and their gzip-compressed forms"
        )

    def _count(self, linktype: int) -> None:
        self.linktypes[linktype] = self.linktypes.get(linktype, 0) + 1

    def _iter_pcap(self, magic: bytes) -> Iterator[list[Record]]:
        order, nanos = PCAP_MAGICS[struct.unpack("<I", magic)[0]]
        rest = self._read(20)
        if len(rest) < 20:
            raise CaptureError(f"{self.path}: pcap file header cut short ({4 + len(rest)} of 24 bytes)")
        # dpkt's FileHdr declares the layout; the byte order comes from the magic.
        hdr_cls = dpkt.pcap.FileHdr if order == ">" else dpkt.pcap.LEFileHdr
        fh = hdr_cls(magic + rest)
        linktype: int = fh.linktype & 0x0FFFFFFF  # upper bits: FCS length flags
        self.snaplen = snaplen = int(fh.snaplen)
        self.linktypes.setdefault(linktype, 0)
        # (seconds, fraction, captured length, length on the wire); typed, so that compiled code reads ints
        unpack_from = cast("Callable[[bytes, int], tuple[int, int, int, int]]", struct.Struct(order + "IIII").unpack_from)
        mul = 1 if nanos else 1000
        limit = max(MAX_RECORD, snaplen)
        number = 0
        warned_snaplen = False
        path = self.path
        batch: list[Record] = []
        while True:
            # Fast path: every record that lies wholly in the buffer, in one batch.
            buf = self._buf
            p = self._bufpos
            blen = len(buf)
            append = batch.append
            while p + 16 <= blen:
                sec, frac, caplen, wirelen = unpack_from(buf, p)
                start = p + 16
                end = start + caplen
                if caplen > limit or end > blen:
                    break
                number += 1
                p = end
                if wirelen < caplen:
                    wirelen = caplen
                if caplen > snaplen and snaplen and not warned_snaplen:
                    warned_snaplen = True
                    self._add("capture.corrupt",
                              f"{path}: frame {number} at byte offset {self._base + start - 16}: captured length "
                              f"{caplen} exceeds the file's snaplen {snaplen} (read anyway)",
                              offset=self._base + start - 16, frame=number, minor=True)
                append((number, sec * 1_000_000_000 + frac * mul, linktype, wirelen, buf, start, caplen))
            self._bufpos = p
            if batch:
                yield batch
                batch = []
            # Slow path: a record that straddles the end of the buffer (or a damaged one).
            offset = self._pos
            head = self._read(16)
            if not head:
                break
            if len(head) < 16:
                self._add("capture.truncated",
                          f"{path}: file ends inside the record header of frame {number + 1} "
                          f"at byte offset {offset} ({len(head)} of 16 bytes)",
                          offset=offset, frame=number + 1, fatal=True)
                break
            sec, frac, caplen, wirelen = unpack_from(head, 0)
            if caplen > limit:
                self._add("capture.corrupt",
                          f"{path}: frame {number + 1} at byte offset {offset} claims a captured length of "
                          f"{caplen} bytes (more than {limit}): the file is damaged from here on",
                          offset=offset, frame=number + 1, fatal=True)
                break
            data = self._read(caplen)
            if len(data) < caplen:
                self._add("capture.truncated",
                          f"{path}: file ends inside frame {number + 1} at byte offset {offset} "
                          f"({len(data)} of {caplen} bytes): the capture was cut short",
                          offset=offset, frame=number + 1, fatal=True)
                break
            number += 1
            if wirelen < caplen:
                wirelen = caplen
            if caplen > snaplen and snaplen and not warned_snaplen:
                warned_snaplen = True
                self._add("capture.corrupt",
                          f"{path}: frame {number} at byte offset {offset}: captured length {caplen} exceeds "
                          f"the file's snaplen {snaplen} (read anyway)", offset=offset, frame=number, minor=True)
            batch.append((number, sec * 1_000_000_000 + frac * mul, linktype, wirelen, data, 0, caplen))
        if batch:
            yield batch
        self.frames = number
        self.linktypes[linktype] = number

    def _iter_pcapng(self, first: bytes) -> Iterator[list[Record]]:
        number = 0
        batch: list[Record] = []
        interfaces: list[_Interface] = []
        order = "<"
        path = self.path
        block_type_word = first
        epb_order = ""  # the byte order epb_head and epb_trailer read (the fast path's)
        # (type, length, interface, time high, time low, captured length, length on the wire) and the trailing length;
        # typed, so that compiled code reads ints
        epb_head: Callable[[bytes, int], tuple[int, int, int, int, int, int, int]]
        epb_trailer: Callable[[bytes, int], tuple[int]]
        while True:
            offset = self._pos - len(block_type_word)
            if not block_type_word:
                break
            if len(block_type_word) < 4:
                self._add("capture.truncated", f"{path}: file ends inside a block header at byte offset {offset}",
                          offset=offset, frame=number + 1, fatal=True)
                break
            if block_type_word == b"\x0a\x0d\x0d\x0a":
                # Section header: the byte-order magic decides the order of everything in the section.
                lenraw = self._read(8)
                if len(lenraw) < 8:
                    self._add("capture.truncated", f"{path}: file ends inside a section header at byte offset "
                              f"{offset}", offset=offset, frame=number + 1, fatal=True)
                    break
                if struct.unpack("<I", lenraw[4:])[0] == PCAPNG_BOM:
                    order = "<"
                elif struct.unpack(">I", lenraw[4:])[0] == PCAPNG_BOM:
                    order = ">"
                else:
                    self._add("capture.corrupt", f"{path}: bad pcapng byte-order magic at byte offset {offset}",
                              offset=offset, frame=number + 1, fatal=True)
                    break
                (blen,) = struct.unpack(order + "I", lenraw[:4])
                body_len = blen - 12
                interfaces = []
                prefix = b""
            else:
                lenraw = self._read(4)
                if len(lenraw) < 4:
                    self._add("capture.truncated", f"{path}: file ends inside a block header at byte offset "
                              f"{offset}", offset=offset, frame=number + 1, fatal=True)
                    break
                (blen,) = struct.unpack(order + "I", lenraw)
                body_len = blen - 12
                prefix = b""
            btype = struct.unpack(order + "I", block_type_word)[0]
            if blen < 12 or blen % 4 or blen > _MAX_BLOCK:
                self._add("capture.corrupt",
                          f"{path}: pcapng block at byte offset {offset} has an impossible length {blen}: "
                          "the file is damaged from here on", offset=offset, frame=number + 1, fatal=True)
                break
            body = prefix + self._read(body_len + 4 - len(prefix) if btype != PCAPNG_SHB else body_len - 4 + 4)
            if btype == PCAPNG_SHB:
                # we already consumed the byte-order magic (4 bytes of the body)
                body = lenraw[4:] + body
            if len(body) < body_len + 4:
                self._add("capture.truncated",
                          f"{path}: file ends inside a pcapng block at byte offset {offset} "
                          f"(frame {number + 1} was being read): the capture was cut short",
                          offset=offset, frame=number + 1, fatal=True)
                break
            (trailer,) = struct.unpack_from(order + "I", body, body_len)
            if trailer != blen:
                self._add("capture.corrupt",
                          f"{path}: pcapng block at byte offset {offset}: trailing length {trailer} differs from "
                          f"the leading length {blen}: the file is damaged from here on",
                          offset=offset, frame=number + 1, fatal=True)
                break
            if btype == dpkt.pcapng.PCAPNG_BT_IDB:
                if body_len < 8:
                    self._add("capture.corrupt", f"{path}: interface block at byte offset {offset} too short",
                              offset=offset, frame=number + 1)
                else:
                    linktype, _, snaplen = struct.unpack_from(order + "HHI", body, 0)
                    mul, div, tsoff = 1000, 1, 0
                    for code, value in _options(body, 8, body_len, order):
                        if code == 9 and value:
                            mul, div = _tsresol(value[0])
                        elif code == 14 and len(value) >= 8:
                            tsoff = struct.unpack(order + "q", value[:8])[0] * 1_000_000_000
                    interfaces.append(_Interface(linktype, snaplen, mul, div, tsoff))
                    self.linktypes.setdefault(linktype, 0)
                    if not self.snaplen:
                        self.snaplen = snaplen
            elif btype in (dpkt.pcapng.PCAPNG_BT_EPB, dpkt.pcapng.PCAPNG_BT_PB, dpkt.pcapng.PCAPNG_BT_SPB):  # enhanced, obsolete and simple packet blocks
                if btype == 3:
                    if body_len < 4:
                        self._add("capture.corrupt", f"{path}: simple packet block at byte offset {offset} too "
                                  "short", offset=offset, frame=number + 1)
                        block_type_word = self._read(4)
                        continue
                    iface_id, ts_units = 0, None
                    (wirelen,) = struct.unpack_from(order + "I", body, 0)
                    start = 4
                    caplen = min(wirelen, body_len - 4)
                    if interfaces and interfaces[0].snaplen:
                        caplen = min(caplen, interfaces[0].snaplen)
                else:
                    if body_len < 20:
                        self._add("capture.corrupt", f"{path}: packet block at byte offset {offset} too short",
                                  offset=offset, frame=number + 1)
                        block_type_word = self._read(4)
                        continue
                    if btype == 2:
                        iface_id, _drops, hi, lo, caplen, wirelen = struct.unpack_from(order + "HHIIII", body, 0)
                    else:
                        iface_id, hi, lo, caplen, wirelen = struct.unpack_from(order + "IIIII", body, 0)
                    ts_units = (hi << 32) | lo
                    start = 20
                    if caplen > body_len - 20:
                        self._add("capture.corrupt",
                                  f"{path}: packet block at byte offset {offset} (frame {number + 1}) claims "
                                  f"{caplen} captured bytes but holds {body_len - 20}; read what is there",
                                  offset=offset, frame=number + 1)
                        caplen = body_len - 20
                number += 1
                if iface_id >= len(interfaces):
                    self._add("capture.corrupt",
                              f"{path}: frame {number} at byte offset {offset} names interface {iface_id}, "
                              "which was never described: frame skipped", offset=offset, frame=number)
                    batch.append((number, 0, -1, max(caplen, wirelen), b"", 0, caplen))
                else:
                    iface = interfaces[iface_id]
                    ts = 0 if ts_units is None else ts_units * iface.mul // iface.div + iface.offset_ns
                    self._count(iface.linktype)
                    batch.append((number, ts, iface.linktype, max(caplen, wirelen), body, start, caplen))
            elif btype in CUSTOM_BLOCKS:
                # Wireshark (4.0) shows custom and systemd-journal blocks as frames of their own:
                # count them so frame numbers stay equal to frame.number; they carry no packet.
                number += 1
                batch.append((number, 0, NO_PACKET, 0, b"", 0, 0))
            if interfaces:
                # Fast path (as _iter_pcap's): the enhanced packet blocks that lie wholly in the buffer, each checked
                # as the slow path checks it; anything else (another block, one that straddles the buffer's end or
                # that the slow path would report) is left to the slow path.
                if epb_order != order:
                    epb_order = order
                    epb_head = cast("Callable[[bytes, int], tuple[int, int, int, int, int, int, int]]",
                                    struct.Struct(order + "7I").unpack_from)
                    epb_trailer = cast("Callable[[bytes, int], tuple[int]]", struct.Struct(order + "I").unpack_from)
                buf = self._buf
                p = self._bufpos
                end_of_buf = len(buf)
                known = len(interfaces)
                append = batch.append
                linktypes = self.linktypes
                # (names of its own: the slow path's, read by untyped unpacks, would make compiled code handle
                # these as objects)
                while p + 32 <= end_of_buf:
                    ebtype, eblen, eiface, hi32, lo32, ecap, ewire = epb_head(buf, p)
                    # (ecap > eblen - 32 also holds for a block too short to be one: eblen < 32)
                    if (ebtype != _EPB or eblen & 3 or eblen > _MAX_BLOCK or p + eblen > end_of_buf or ecap > eblen - 32
                            or eiface >= known or epb_trailer(buf, p + eblen - 4)[0] != eblen):
                        break
                    number += 1
                    ifc = interfaces[eiface]
                    elt = ifc.linktype
                    linktypes[elt] += 1
                    append((number, ((hi32 << 32) | lo32) * ifc.mul // ifc.div + ifc.offset_ns, elt,
                            ecap if ecap > ewire else ewire, buf, p + 28, ecap))
                    p += eblen
                self._bufpos = p
            if len(batch) >= BATCH:
                yield batch
                batch = []
            block_type_word = self._read(4)
        if batch:
            yield batch
        self.frames = number


def _options(body: bytes, start: int, end: int, order: str) -> Iterator[tuple[int, bytes]]:
    pos = start
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", body, pos)
        if code == 0:
            return
        yield code, body[pos + 4 : pos + 4 + length]
        pos += 4 + length + (-length % 4)
