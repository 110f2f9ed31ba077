"""Link, IP and TCP header decoding: the lean per-packet path.

Headers are sliced with ``struct`` straight from the record bytes; building a full
dpkt object tree per packet costs most of a pass's time (see docs/performance.md).
Anything that is not decodable becomes a counted, explained skip, never a silent drop:
``capture.undecodable`` (header cut or invalid), ``capture.linktype`` (unsupported link
type), ``capture.snaplen`` (payload cut by the snaplen; reassembly records a gap),
``capture.short-frame`` (a frame shorter on the wire than its IP length: the segment is the bytes on
the wire, as in Wireshark).
"""

from __future__ import annotations

import socket
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import dpkt  # type: ignore[import-untyped]

from pcapcheck.capture import LINKTYPE_NAMES, Frame, Record

_ipv4_hdr: Final = struct.Struct("!BBHHHBBH4s4s").unpack_from
_tcp_hdr: Final = struct.Struct("!HHIIHH").unpack_from
_u16: Final = struct.Struct("!H").unpack_from
# The common case, IPv4 without options carrying TCP, in one unpack per record: the link header's protocol
# field, then the IPv4 and TCP fixed headers. By link type: (unpack, link header length, the protocol field's
# value for IPv4, shortest record). Raw IP has no protocol field: a zero-length field, b"", stands for it.
_IP4_TCP: Final = "BxHHHBBxx4s4sHHIIHH"
# What a fast path's unpack gives: (protocol field, version and header length, total length, ID, flags and fragment
# offset, TTL, protocol, src, dst, sport, dport, seq, ack, data offset and flags, window). Spelled out for compiled
# code: it reads the fields it computes with as ints, and passes the ones it only hands on to the TcpPacket (TTL,
# ports, seq, ack, window) as the objects they are, where an int would be unboxed and boxed again (allocated) for
# it. The protocol field is b"" for raw IP, which has none.
FastHeaders = tuple[object, int, int, int | None, int, object, int, bytes, bytes, object, object, object, object, int,
                    object]
_FastUnpack = Callable[[bytes, int], FastHeaders]
_FAST_PATH_LINKS: Final[dict[int, tuple[_FastUnpack, int, object]]] = {
    1: (struct.Struct("!12xH" + _IP4_TCP).unpack_from, 14, 0x0800),  # Ethernet II
    113: (struct.Struct("!14xH" + _IP4_TCP).unpack_from, 16, 0x0800),  # Linux cooked v1 (tcpdump -i any)
    276: (struct.Struct("!H18x" + _IP4_TCP).unpack_from, 20, 0x0800),  # Linux cooked v2
    **{lt: (struct.Struct("!0s" + _IP4_TCP).unpack_from, 0, b"") for lt in (101, 12, 14, 228)},  # raw IP
}
_FAST_PATHS: Final[dict[int, tuple[_FastUnpack, int, object, int]]] = {
    lt: (unpack, lhl, want, lhl + 40) for lt, (unpack, lhl, want) in _FAST_PATH_LINKS.items()}


def _no_fast_path(buf: bytes, start: int) -> FastHeaders:
    raise AssertionError("no record reaches the shortest length of _NO_FAST_PATH")


_NO_FAST_PATH: Final[tuple[_FastUnpack, int, object, int]] = (_no_fast_path, 0, None, 1 << 62)  # no record is that long
# When that fails: Ethernet with one 802.1Q tag and IPv4, or IPv6 without extension headers carrying TCP, on the
# link types of _FAST_PATHS (a trunk port's capture, a dual-stack network): _alt_headers.
_ALT_LINKS: Final = frozenset(_FAST_PATHS) | {229}
_ALT_TYPES: Final = frozenset({0x8100, 0x86DD})  # the protocol field of the links of _FAST_PATHS that have one
_IP4_TCP_AT: Final = struct.Struct("!" + _IP4_TCP).unpack_from
_IP6_TCP_AT: Final = struct.Struct("!IHBB16s16sHHIIHH").unpack_from

_u16le: Final = struct.Struct("<H").unpack_from
_u32le: Final = struct.Struct("<I").unpack_from
_u32be: Final = struct.Struct(">I").unpack_from

ETH_IPV4: Final = dpkt.ethernet.ETH_TYPE_IP
ETH_IPV6: Final = dpkt.ethernet.ETH_TYPE_IP6
VLAN_TYPES: Final = {0x8100, 0x88A8, 0x9100, 0x9200}
IPV6_EXT: Final = {0, 43, 60, 51, 135, 139, 140}  # hop-by-hop, routing, dest opts, AH, mobility, HIP, shim6
NULL_IPV6: Final = {24, 28, 30}
# Pending IPv4 and IPv6 fragment sets are bounded; the oldest are dropped (and reported) beyond this.
MAX_FRAGMENT_SETS: Final = 1024
_NEVER_COMPLETED: Final = {3: "IPv4 fragment never completed", 4: "IPv6 fragment never completed"}  # by key length
_tnew: Final = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (half the cost)


AltHeaders = tuple[int | None, int, int, bytes, bytes, int, int, int, int, int, int, int, int, int, int]


def _alt_headers(buf: bytes, start: int, caplen: int, lt: int) -> AltHeaders | None:
    """The headers of the record ``buf[start : start + caplen]`` (link type ``lt``, one of _ALT_LINKS) when it is
    Ethernet with one 802.1Q tag then IPv4 as _FAST_PATHS takes it, or IPv6 whose next header is TCP: (ip_id,
    frag, ttl, src, dst, sport, dport, seq, ack, offflags, window, TCP header length, and, from ``start``: where
    the TCP header ends, where the IP payload ends, where the TCP options begin), as ``Decoder._decode_link``
    reads them; None for anything else (it takes those). Nothing is read beyond the record (``buf`` is the
    reader's chunk)."""
    if caplen < 58:  # shorter than either can be; and the link header, the IPv4 and TCP header fields read below
        return None  # (36 bytes from off <= 20) are in the record
    if lt == 1:
        (etype,) = _u16(buf, start + 12)
        off = 14
        if etype == 0x8100:
            (etype,) = _u16(buf, start + 16)
            off = 18
    elif lt == 113 or lt == 276:
        (etype,) = _u16(buf, start + 14 if lt == 113 else start)
        off = 16 if lt == 113 else 20
    else:  # raw IP (228: IPv4 only; 229: IPv6 only, which has no _FAST_PATHS entry)
        etype = ETH_IPV6 if lt == 229 or (lt != 228 and buf[start] >> 4 == 6) else 0
        off = 0
    if etype == ETH_IPV6:
        if caplen < off + 60:
            return None
        vtf, plen, nh, hlim, src, dst, sport, dport, seqno, ackno, offflags, window = _IP6_TCP_AT(buf, start + off)
        if vtf >> 28 != 6 or nh != 6:  # (a payload length of 0, a jumbogram's or TSO's: end < hend below)
            return None
        ip_id, frag, ttl = None, 0, hlim
        doff = (offflags >> 12) * 4
        hend = off + 40 + doff
        end = off + 40 + plen
    elif etype == ETH_IPV4:  # (behind a VLAN tag; without one this fails as _FAST_PATHS did)
        vhl, total, ip_id, frag, ttl, proto, src, dst, sport, dport, seqno, ackno, offflags, window = (
            _IP4_TCP_AT(buf, start + off))
        if vhl != 0x45 or proto != 6 or frag & 0x3FFF or total < 40:
            return None
        doff = (offflags >> 12) * 4
        hend = off + 20 + doff
        end = off + total
    else:
        return None
    if doff < 20 or hend > end or hend > caplen:
        return None
    return (ip_id, frag, ttl, src, dst, sport, dport, seqno, ackno, offflags, window, doff, hend, end,
            hend - doff + 20)


class _Cover:
    """The bytes a fragment set's parts cover, as sorted disjoint intervals, and the largest part offset: whether
    laying the parts out in offset order would find no hole and reach the datagram's length, without doing it.
    Exactly the union of the parts held (``rebuild`` after a part was replaced by a shorter one)."""

    __slots__ = ("starts", "ends", "last_offset")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.last_offset = 0  # the largest part offset, empty parts included (one beyond the bytes is a hole)

    def add(self, start: int, length: int) -> None:
        if start > self.last_offset:
            self.last_offset = start
        if not length:
            return
        end = start + length
        starts, ends = self.starts, self.ends
        i = bisect_left(ends, start)  # the first interval that ends at or after this start (touching merges)
        j = bisect_right(starts, end)  # past the last that starts at or before this end
        if i < j:
            start, end = min(start, starts[i]), max(end, ends[j - 1])
        starts[i:j] = [start]
        ends[i:j] = [end]

    def rebuild(self, parts: dict[int, bytes]) -> None:
        self.starts, self.ends, self.last_offset = [], [], 0
        for start, part in parts.items():
            self.add(start, len(part))

    def complete(self, total: int) -> bool:
        """The parts laid out from offset 0 leave no hole and reach ``total``."""
        if not self.starts:
            reach = 0
        elif len(self.starts) == 1 and self.starts[0] == 0:
            reach = self.ends[0]
        else:
            return False
        return reach >= total and self.last_offset <= reach


class TcpPacket(NamedTuple):
    """A decoded TCP segment. Immutable; a NamedTuple because it is built once per packet."""

    frame: int
    ts: int  # ns
    src: bytes  # 4 or 16 bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int  # the 8 classic flag bits
    window: int  # raw 16-bit value
    options: bytes
    payload: bytes  # as captured (may be shorter than seglen when cut by the snaplen)
    seglen: int  # payload length on the wire, from the IP header
    ttl: int
    ip_id: int | None  # None for IPv6
    df: bool


ICMP_EVENT: Final = 0x100  # IcmpError.flags: beyond the 8 TCP flag bits, so no TCP test matches it


class IcmpError(NamedTuple):
    """An ICMP or ICMPv6 error that quotes the start of a TCP segment (RFC 792, RFC 4443 2.4): the
    conversation it is about is the quoted segment's. Laid out like TcpPacket where the pipeline's loop
    looks (frame, ts, flags); ``src`` is None so that no route matches it."""

    frame: int
    ts: int
    src: None
    dst: None
    sport: int
    dport: int
    seq: int  # the quoted segment's
    ack: int
    flags: int  # ICMP_EVENT
    reporter: bytes  # the ICMP message's sender (a router, a firewall, the destination host)
    version: int  # 4 (ICMP) or 6 (ICMPv6)
    type: int
    code: int
    mtu: int | None  # next-hop MTU (ICMP 3/4) or the MTU of ICMPv6 Packet Too Big
    key: tuple  # the quoted segment's (src, sport, dst, dport), as its sender sent it
    qflags: int | None  # the quoted segment's TCP flags, when quoted
    qlen: int  # the quoted datagram's IP length (total length, or IPv6 payload length + 40)
    numbered: bool  # 16 bytes of the TCP header or more are quoted: then Wireshark (4.0) gives the ICMP frame
    # the quoted segment's tcp.stream, opening one if that 4-tuple has none (docs/crosscheck.md, rule 6)


# ICMP errors, whose body quotes the datagram that caused them: destination unreachable (fragmentation needed
# is code 4), source quench, time exceeded, parameter problem; ICMPv6 destination unreachable, packet too big,
# time exceeded, parameter problem. (Not redirects: Wireshark numbers no stream for their quote either.)
ICMP4_QUOTING: Final = {3, 4, 11, 12}
ICMP6_QUOTING: Final = {1, 2, 3, 4}


def _ext_next(data: bytes, nh: int, pos: int) -> tuple[int, int]:
    """(next header, its offset) after the IPv6 extension header ``nh`` at ``pos``, whose 8 first bytes the
    caller has checked are there: a Fragment header is 8 bytes, AH its length field in 4-byte units plus 2,
    the others theirs in 8-byte units plus 1 (RFC 8200 4, RFC 4302 2.2)."""
    if nh == 44:
        return data[pos], pos + 8
    if nh == 51:
        return data[pos], pos + (data[pos + 1] + 2) * 4
    return data[pos], pos + (data[pos + 1] + 1) * 8


def addr_text(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


def endpoint_text(addr: bytes, port: int) -> str:
    return f"{addr_text(addr)}:{port}" if len(addr) == 4 else f"[{addr_text(addr)}]:{port}"


@dataclass(slots=True)
class Skip:
    """Packets skipped for one reason: a count and the first few frames, for the report."""

    code: str
    reason: str
    count: int = 0
    frames: list[int] = field(default_factory=list)

    def add(self, frame: int) -> None:
        self.count += 1
        if len(self.frames) < 20:
            self.frames.append(frame)


class Decoder:
    """Turns frames into TcpPacket (or None), counting everything it does not return."""

    def __init__(self) -> None:
        self._tcp_frames = 0  # not counting the fast path's
        self._ip_frames = 0
        self._fast_frames = 0  # IPv4/TCP frames of the fast path (_FAST_PATHS): IP and TCP frames both
        self.other_frames = 0  # decodable but not TCP (ARP, UDP, ICMP ...): not a problem
        self.skips: dict[str, Skip] = {}
        self.snaplen_cut = Skip("capture.snaplen", "TCP payload cut by the capture's snaplen")
        # frames shorter on the wire than their IP length says ("IPv4 total length exceeds packet length")
        self.short_frames = Skip("capture.short-frame", "IP length exceeds the frame's length on the wire")
        self._fragments: dict[tuple, dict] = {}

    @property
    def tcp_frames(self) -> int:
        return self._tcp_frames + self._fast_frames

    @property
    def ip_frames(self) -> int:
        return self._ip_frames + self._fast_frames

    def flush_fragments(self) -> None:
        """At the end of an input: the frames of fragment sets never completed are reported, not lost."""
        for key, entry in self._fragments.items():
            for fr in entry["frames"]:
                self._skip("capture.undecodable", _NEVER_COMPLETED[len(key)], fr)
        self._fragments.clear()

    # -- bookkeeping -----------------------------------------------------------
    def _skip(self, code: str, reason: str, frame: int) -> None:
        s = self.skips.get(reason)
        if s is None:
            s = self.skips[reason] = Skip(code, reason)
        s.add(frame)

    # -- link layer ------------------------------------------------------------
    def decode(self, f: Frame) -> TcpPacket | IcmpError | None:
        data = f.data
        return self.decode_record(f.number, f.ts, f.linktype, f.wirelen, data, 0, len(data), f)

    def decode_record(self, number: int, ts: int, lt: int, wirelen: int, buf: bytes, start: int, caplen: int,
                      frame: Frame | None = None) -> TcpPacket | IcmpError | None:
        """Decode the record ``buf[start : start + caplen]`` (the tuples of ``CaptureReader.records()``).

        The common case (Ethernet II, Linux cooked or raw IP; IPv4 with a 20-byte header, not a fragment; TCP)
        is decoded in place, straight from the reader's chunk; everything else goes through a :class:`Frame`
        (``frame`` when the caller has one).
        """
        unpack, lhl, want, shortest = _FAST_PATHS.get(lt, _NO_FAST_PATH)
        if caplen >= shortest:
            (etype, vhl, total, ip_id, frag, ttl, proto, src, dst,
             sport, dport, seqno, ackno, offflags, window) = unpack(buf, start)
            if etype == want and vhl == 0x45 and proto == 6 and not frag & 0x3FFF and total >= 40:
                doff = (offflags >> 12) * 4
                hend = lhl + 20 + doff
                end = lhl + total
                if doff >= 20 and hend <= end and hend <= caplen:
                    self._fast_frames += 1
                    seglen = end - hend
                    if end > caplen:
                        # the payload is what was captured; the segment, what was on the wire (see _tcp)
                        payload = buf[start + hend : start + caplen]
                        if wirelen < end:
                            seglen = wirelen - hend
                            self.short_frames.add(number)
                        if wirelen > caplen:
                            self.snaplen_cut.add(number)
                    else:
                        payload = buf[start + hend : start + end]
                    return _tnew(TcpPacket, (number, ts, src, dst, sport, dport, seqno, ackno, offflags & 0xFF,
                                             window, buf[start + shortest : start + hend] if doff > 20 else b"",
                                             payload, seglen, ttl, ip_id, frag & 0x4000 != 0))
        if frame is None:
            frame = _tnew(Frame, (number, ts, lt, caplen, wirelen, buf[start : start + caplen]))
        return self._decode_link(frame)

    def decode_batch(self, records: list[Record], skip: dict[tuple, Any] | None = None) -> list[TcpPacket | IcmpError]:
        """The TCP segments among records of ``CaptureReader.record_batches()``, in order (the others are
        counted and skipped as by ``decode_record``, whose fast path this loop repeats inline: one call per
        batch instead of one per record).

        ``skip`` maps keys (src, sport, dst, dport) to objects with ``end_ts``, ``packets`` and ``payload``: a
        segment of the fast path (_FAST_PATHS, _alt_headers) without SYN, FIN or RST whose key is there is counted as
        decoded but not built; its time is stored in that ``end_ts`` and it is counted in ``packets`` and, by
        its segment length, ``payload`` (a sharded run's segments of conversations another process analyzes:
        all it keeps of them is the last packet time and those counts, see pipeline.Foreign). The caller routes the batch after this, so
        ``skip`` is as it was before the batch: segments of a 4-tuple that had a SYN earlier in the batch are
        not skipped (the SYN may open a new conversation on it)."""
        out: list[TcpPacket | IcmpError] = []
        synkeys: set[tuple] = set()
        skip_get: Any = skip.get if skip is not None else None
        append = out.append
        fast = not_tcp = 0
        tnew = _tnew
        last_lt = None  # the link type of the previous record, and its fast path (one per file in a pcap)
        unpack, lhl, want, shortest = _NO_FAST_PATH
        alt = False
        ip_id: int | None  # None from _alt_headers for IPv6
        for rec in records:
            number, ts, lt, wirelen, buf, start, caplen = rec
            if lt != last_lt:
                last_lt = lt
                unpack, lhl, want, shortest = _FAST_PATHS.get(lt, _NO_FAST_PATH)
                alt = lt in _ALT_LINKS
            ok = False
            if caplen >= shortest:
                (etype, vhl, total, ip_id, frag, ttl, proto, src, dst,
                 sport, dport, seqno, ackno, offflags, window) = unpack(buf, start)
                if etype == want and vhl == 0x45 and proto == 6 and not frag & 0x3FFF and total >= 40:
                    doff = (offflags >> 12) * 4
                    hend = lhl + 20 + doff
                    end = lhl + total
                    opts = shortest
                    ok = doff >= 20 and hend <= end and hend <= caplen
                elif proto != 6 and proto != 1 and etype == want and vhl == 0x45:
                    not_tcp += 1  # UDP (DNS, QUIC), ...: an IPv4 frame, not TCP, as _ipv4 counts it
                    continue
            # A VLAN tag, or IPv6: the same in place, with other offsets (_alt_headers); not for what this path
            # read and failed as IPv4 (UDP, say: the general decoder counts it, the alternative would not help).
            if not ok and alt and (caplen < shortest or (etype != want and etype in _ALT_TYPES) or vhl >> 4 == 6):
                h = _alt_headers(buf, start, caplen, lt)
                if h is not None:
                    (ip_id, frag, ttl, src, dst, sport, dport, seqno, ackno, offflags, window, doff, hend, end,
                     opts) = h
                    ok = True
            if ok:
                fast += 1
                if skip is not None:
                    key = (src, sport, dst, dport)
                    if offflags & 0x07:
                        if offflags & 0x02:
                            synkeys.add(key)
                            synkeys.add((dst, dport, src, sport))
                    else:
                        other = skip_get(key)
                        if other is not None and key not in synkeys:
                            other.end_ts = ts
                            other.packets += 1
                            if end > caplen:
                                if wirelen > caplen:
                                    self.snaplen_cut.add(number)
                                if wirelen < end:
                                    end = wirelen
                                    self.short_frames.add(number)
                            other.payload += end - hend
                            continue
                if end > caplen:
                    payload = buf[start + hend : start + caplen]
                    if wirelen > caplen:
                        self.snaplen_cut.add(number)
                    if wirelen < end:  # shorter on the wire than the IP header says (see _tcp)
                        end = wirelen
                        self.short_frames.add(number)
                else:
                    payload = buf[start + hend : start + end]
                append(tnew(TcpPacket, (number, ts, src, dst, sport, dport, seqno, ackno, offflags & 0xFF,
                                        window, buf[start + opts : start + hend] if doff > 20 else b"",
                                        payload, end - hend, ttl, ip_id, frag & 0x4000 != 0)))
                continue
            pkt = self._decode_link(tnew(Frame, (number, ts, lt, caplen, wirelen, buf[start : start + caplen])))
            if pkt is not None:
                append(pkt)
                if skip is not None and pkt[8] & 0x02:
                    synkeys.add((pkt[2], pkt[4], pkt[3], pkt[5]))
                    synkeys.add((pkt[3], pkt[5], pkt[2], pkt[4]))
        self._fast_frames += fast
        self._ip_frames += not_tcp
        self.other_frames += not_tcp
        return out

    def _decode_link(self, f: Frame) -> TcpPacket | IcmpError | None:
        data = f.data
        lt = f.linktype
        n = len(data)
        if lt == 1:  # Ethernet II, 802.1Q / QinQ, 802.3 + LLC/SNAP
            if n < 14:
                self._skip("capture.undecodable", "Ethernet header cut short", f.number)
                return None
            (etype,) = _u16(data, 12)
            off = 14
            while etype in VLAN_TYPES:
                if n < off + 4:
                    self._skip("capture.undecodable", "VLAN tag cut short", f.number)
                    return None
                (etype,) = _u16(data, off + 2)
                off += 4
            if etype == 0x8864:  # PPPoE session: 6-byte header, then the PPP protocol number
                if n < off + 8:
                    self._skip("capture.undecodable", "PPPoE header cut short", f.number)
                    return None
                (ppp,) = _u16(data, off + 6)
                etype = ETH_IPV4 if ppp == 0x0021 else ETH_IPV6 if ppp == 0x0057 else 0
                off += 8
            elif etype in (0x8847, 0x8848):  # MPLS: skip labels to bottom of stack, then IP by version
                while n >= off + 4 and not data[off + 2] & 1:
                    off += 4
                off += 4
                if n <= off:
                    self._skip("capture.undecodable", "MPLS label stack cut short", f.number)
                    return None
                etype = ETH_IPV4 if data[off] >> 4 == 4 else ETH_IPV6 if data[off] >> 4 == 6 else 0
            if etype <= 1500:  # 802.3 length field: LLC follows
                if data[off : off + 3] == b"\xaa\xaa\x03" and n >= off + 8:
                    (etype,) = _u16(data, off + 6)
                    off += 8
                else:
                    self.other_frames += 1
                    return None
        elif lt == 113:  # Linux cooked v1
            if n < 16:
                self._skip("capture.undecodable", "Linux SLL header cut short", f.number)
                return None
            (etype,) = _u16(data, 14)
            off = 16
        elif lt == 276:  # Linux cooked v2
            if n < 20:
                self._skip("capture.undecodable", "Linux SLL2 header cut short", f.number)
                return None
            (etype,) = _u16(data, 0)
            off = 20
        elif lt in (101, 12, 14):  # raw IP: the version nibble decides
            if not n:
                self._skip("capture.undecodable", "empty raw IP frame", f.number)
                return None
            etype = ETH_IPV4 if data[0] >> 4 == 4 else ETH_IPV6 if data[0] >> 4 == 6 else 0
            off = 0
        elif lt == 228:
            etype, off = ETH_IPV4, 0
        elif lt == 229:
            etype, off = ETH_IPV6, 0
        elif lt == 0 or lt == 108:  # BSD NULL (host byte order) / OpenBSD LOOP (network order)
            if n < 4:
                self._skip("capture.undecodable", "loopback header cut short", f.number)
                return None
            fam = _u32be(data, 0)[0] if lt == 108 else (_u32le(data, 0)[0] if data[0] else _u32be(data, 0)[0])
            etype = ETH_IPV4 if fam == 2 else ETH_IPV6 if fam in NULL_IPV6 else 0
            off = 4
        elif lt == -2:  # a pcapng record without a packet (custom block): counted, nothing to decode
            self.other_frames += 1
            return None
        elif lt == 239:  # NFLOG: TLVs, the packet is in NFULA_PAYLOAD (type 9)
            return self._nflog(f)
        else:
            name = LINKTYPE_NAMES.get(lt, f"link type {lt}")
            self._skip("capture.linktype", f"unsupported link type {lt} ({name})", f.number)
            return None
        if etype == ETH_IPV4:
            return self._ipv4(f, data, off)
        if etype == ETH_IPV6:
            return self._ipv6(f, data, off)
        self.other_frames += 1
        return None

    def _nflog(self, f: Frame) -> TcpPacket | IcmpError | None:
        data = f.data
        if len(data) < 4:
            self._skip("capture.undecodable", "NFLOG header cut short", f.number)
            return None
        family = data[0]
        pos = 4
        while pos + 4 <= len(data):
            (tlen,) = _u16le(data, pos)
            (ttype,) = _u16le(data, pos + 2)
            if tlen < 4:
                break
            if ttype == 9:
                inner = data[pos + 4 : pos + tlen]
                sub = f._replace(data=inner)
                if family == 2:
                    return self._ipv4(sub, inner, 0)
                if family == 10:
                    return self._ipv6(sub, inner, 0)
                break
            pos += (tlen + 3) & ~3
        self.other_frames += 1
        return None

    # -- IP ----------------------------------------------------------------------
    def _ipv4(self, f: Frame, data: bytes, off: int) -> TcpPacket | IcmpError | None:
        if len(data) < off + 20:
            self._skip("capture.undecodable", "IPv4 header cut short", f.number)
            return None
        vhl, _tos, total, ip_id, frag, ttl, proto, _sum, src, dst = _ipv4_hdr(data, off)
        ihl = (vhl & 15) * 4
        if vhl >> 4 != 4 or ihl < 20:
            self._skip("capture.undecodable", "invalid IPv4 header (version or header length)", f.number)
            return None
        self._ip_frames += 1
        if proto != 6:
            self.other_frames += 1
            if proto == 1 and not frag & 0x3FFF and total >= ihl + 8 and len(data) >= off + ihl + 8:
                return self._icmp(f, 4, data, off + ihl, min(len(data), off + total), src)
            return None
        if total == 0:  # TCP segmentation offload: the NIC fills the length in later
            total = f.wirelen - off
        elif total < ihl:
            self._skip("capture.undecodable", "IPv4 total length shorter than its header", f.number)
            return None
        if frag & 0x3FFF:  # MF set or a non-zero offset: a fragment
            return self._fragment(f, data, off, ihl, total, ip_id, frag, ttl, src, dst)
        return self._tcp(f, data, off + ihl, off + total, src, dst, ttl, ip_id, bool(frag & 0x4000))

    def _fragment(self, f, data, off, ihl, total, ip_id, frag, ttl, src, dst) -> TcpPacket | IcmpError | None:
        """Reassemble IPv4 fragments; the TCP segment belongs to the frame that completes it (as in Wireshark)."""
        done = self._reassemble((src, dst, ip_id), (frag & 0x1FFF) * 8, data[off + ihl : off + total], total - ihl,
                                not frag & 0x2000, (ttl, bool(frag & 0x4000)), f.number)
        if done is None:
            return None
        payload, (ttl, df) = done
        return self._tcp(f, payload, 0, len(payload), src, dst, ttl, ip_id, df)

    def _reassemble(self, key: tuple, frag_off: int, part: bytes, length: int, last: bool, first: Any,
                    frame: int) -> tuple[bytes, Any] | None:
        """Add a fragment: ``part``, ``length`` bytes of the datagram from ``frag_off`` (``last``: none follows
        it); ``first``: what this fragment tells when it is the first (offset 0). Returns (the datagram, the
        first fragment's ``first``) when this one completes it. Keys: (src, dst, IPv4 ID) or (src, dst, IPv6
        identification, 6); at most MAX_FRAGMENT_SETS pending sets, the oldest reported and dropped."""
        entry = self._fragments.get(key)
        if entry is None:
            if len(self._fragments) >= MAX_FRAGMENT_SETS:
                old_key = next(iter(self._fragments))
                old = self._fragments.pop(old_key)
                for fr in old["frames"]:
                    self._skip("capture.undecodable", _NEVER_COMPLETED[len(old_key)], fr)
            entry = self._fragments[key] = {"parts": {}, "total": None, "frames": [], "hdr": None,
                                            "cover": _Cover()}
        parts, cover = entry["parts"], entry["cover"]
        prev = parts.get(frag_off)
        parts[frag_off] = part
        if prev is not None and len(prev) > len(part):
            cover.rebuild(parts)  # (a later, shorter copy at the same offset: what it covered may be gone)
        else:
            cover.add(frag_off, len(part))
        entry["frames"].append(frame)
        if frag_off == 0:
            entry["hdr"] = first
        if last:
            entry["total"] = frag_off + length
        if entry["total"] is None or entry["hdr"] is None or not cover.complete(entry["total"]):
            return None
        # (cover says the loop below finds no hole and reaches the total: it is done once per datagram, not once
        # per fragment, which made a datagram of thousands of 8-byte fragments quadratic)
        buf = bytearray()
        for start in sorted(parts):
            chunk = parts[start]
            if start > len(buf):
                return None  # still a hole
            buf[start : start + len(chunk)] = chunk
        if len(buf) < entry["total"]:
            return None
        del self._fragments[key]
        return bytes(buf[: entry["total"]]), entry["hdr"]

    def _ipv6(self, f: Frame, data: bytes, off: int) -> TcpPacket | IcmpError | None:
        if len(data) < off + 40:
            self._skip("capture.undecodable", "IPv6 header cut short", f.number)
            return None
        if data[off] >> 4 != 6:
            self._skip("capture.undecodable", "invalid IPv6 version", f.number)
            return None
        self._ip_frames += 1
        (plen,) = _u16(data, off + 4)
        nh = data[off + 6]
        hop = data[off + 7]
        src = data[off + 8 : off + 24]
        dst = data[off + 24 : off + 40]
        end = off + 40 + plen if plen else f.wirelen
        pos = off + 40
        while nh in IPV6_EXT or nh == 44:
            if len(data) < pos + 8:
                self._skip("capture.undecodable", "IPv6 extension header cut short", f.number)
                return None
            if nh == 44:  # fragment header: an atomic fragment (offset 0, no M flag) carries a whole datagram
                (offm,) = _u16(data, pos + 2)
                if offm & 0xFFF9:
                    return self._fragment6(f, data, pos, min(end, len(data)), offm, src, dst, hop)
            nh, pos = _ext_next(data, nh, pos)
        if nh != 6:
            self.other_frames += 1
            if nh == 58 and len(data) >= pos + 8:
                return self._icmp(f, 6, data, pos, min(len(data), end), src)
            return None
        return self._tcp(f, data, pos, end, src, dst, hop, None, False)

    def _fragment6(self, f: Frame, data: bytes, pos: int, end: int, offm: int, src: bytes, dst: bytes,
                   hop: int) -> TcpPacket | IcmpError | None:
        """Reassemble IPv6 fragments (RFC 8200 4.5; ``pos``: this fragment's Fragment header). As for IPv4, the
        segment belongs to the frame that completes the datagram, as in Wireshark."""
        (ident,) = _u32be(data, pos + 4)
        part = data[pos + 8 : end]
        # the first fragment's Fragment header names the first header of the fragmentable part
        done = self._reassemble((src, dst, ident, 6), offm & 0xFFF8, part, len(part), not offm & 1, data[pos],
                                f.number)
        if done is None:
            return None
        payload, nh = done
        p = 0
        while nh in IPV6_EXT:  # extension headers of the fragmentable part
            if len(payload) < p + 8:
                self._skip("capture.undecodable", "IPv6 extension header cut short", f.number)
                return None
            nh, p = _ext_next(payload, nh, p)
        if nh != 6:
            self.other_frames += 1
            return None
        return self._tcp(f, payload, p, len(payload), src, dst, hop, None, False)

    # -- ICMP errors about TCP segments ------------------------------------------------
    def _icmp(self, f: Frame, version: int, data: bytes, off: int, n: int, reporter: bytes) -> IcmpError | None:
        """The ICMP(v6) message ``data[off:n]``: an error quoting a TCP segment (at least its ports and sequence
        number), else None (the frame stays counted in other_frames)."""
        typ, code = data[off], data[off + 1]
        if typ not in (ICMP4_QUOTING if version == 4 else ICMP6_QUOTING):
            return None
        mtu = None
        if version == 4 and typ == 3 and code == 4:
            (mtu,) = _u16(data, off + 6)  # RFC 1191: next-hop MTU, 0 from routers that predate it
        elif version == 6 and typ == 2:
            (mtu,) = _u32be(data, off + 4)
        q = off + 8  # the quoted datagram
        if version == 4:
            if n < q + 20 or data[q] >> 4 != 4:
                return None
            ihl = (data[q] & 15) * 4
            (qlen,) = _u16(data, q + 2)
            (qfrag,) = _u16(data, q + 6)
            if ihl < 20 or data[q + 9] != 6 or qfrag & 0x1FFF:  # not TCP, or not the fragment with its header
                return None
            qsrc, qdst = data[q + 12 : q + 16], data[q + 16 : q + 20]
            t = q + ihl
        else:
            if n < q + 40 or data[q] >> 4 != 6:
                return None
            (plen,) = _u16(data, q + 4)
            qlen = plen + 40
            nh = data[q + 6]
            qsrc, qdst = data[q + 8 : q + 24], data[q + 24 : q + 40]
            t = q + 40
            while nh in IPV6_EXT or nh == 44:
                if n < t + 8:
                    return None
                if nh == 44 and _u16(data, t + 2)[0] & 0xFFF8:
                    return None  # not the fragment with the TCP header
                nh, t = _ext_next(data, nh, t)
            if nh != 6:
                return None
        if n < t + 8:
            return None
        sport, dport = _u16(data, t)[0], _u16(data, t + 2)[0]
        (seq,) = _u32be(data, t + 4)
        qflags = data[t + 13] if n >= t + 14 else None
        return _tnew(IcmpError, (f.number, f.ts, None, None, sport, dport, seq, 0, ICMP_EVENT, reporter, version,
                                 typ, code, mtu, (qsrc, sport, qdst, dport), qflags, qlen, n >= t + 16))

    # -- TCP -------------------------------------------------------------------
    def _tcp(self, f: Frame, data: bytes, off: int, end: int, src: bytes, dst: bytes, ttl: int,
             ip_id: int | None, df: bool) -> TcpPacket | IcmpError | None:
        if len(data) < off + 20:
            self._skip("capture.undecodable", "TCP header cut short", f.number)
            return None
        sport, dport, seq, ack, offflags, window = _tcp_hdr(data, off)
        doff = (offflags >> 12) * 4
        if doff < 20:
            self._skip("capture.undecodable", "invalid TCP header length", f.number)
            return None
        hend = off + doff
        if hend > end:
            self._skip("capture.undecodable", "TCP header longer than the IP payload", f.number)
            return None
        self._tcp_frames += 1
        if len(data) < hend:  # options cut by the snaplen: keep what the header says, no payload
            self.snaplen_cut.add(f.number)
            return _tnew(TcpPacket, (f.number, f.ts, src, dst, sport, dport, seq, ack, offflags & 0xFF, window,
                                     data[off + 20 : hend], b"", end - hend, ttl, ip_id, df))
        payload = data[hend:end]
        seglen = end - hend
        if len(payload) < seglen:
            # Bytes the IP header counts but the record lacks: those the snaplen cut (wirelen > caplen) were on
            # the wire, the rest never were (a frame shorter on the wire than its IP length, "IPv4 total length
            # exceeds packet length"): the segment is what was on the wire, as Wireshark takes it.
            on_wire = len(payload) + f.wirelen - f.caplen
            if on_wire < seglen:
                seglen = on_wire
                self.short_frames.add(f.number)
            if len(payload) < seglen:
                self.snaplen_cut.add(f.number)
        return _tnew(TcpPacket, (f.number, f.ts, src, dst, sport, dport, seq, ack, offflags & 0xFF, window,
                                 data[off + 20 : hend] if doff > 20 else b"", payload, seglen, ttl, ip_id, df))
