"""Capture reading and header decoding: formats, link types, bad input."""

from __future__ import annotations

import gzip
import io
import itertools
import socket
import struct
from types import SimpleNamespace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fixtures import builder as b
from pcapcheck.capture import CaptureError, CaptureReader
from pcapcheck.decode import Decoder

T0 = 1_700_000_000_123_456_789


def tcp_ip(sport=40000, dport=80, payload=b"", flags=0x18, v6=False):
    src, dst = ("fd00::1", "fd00::2") if v6 else ("10.0.0.1", "10.0.0.2")
    seg = b.tcp(sport, dport, 1000, 2000, flags, 65535, payload, src_ip=src, dst_ip=dst)
    return b.ipv6(src, dst, seg) if v6 else b.ipv4(src, dst, seg, ip_id=7, ttl=61)


def read(data: bytes, name="mem.pcap"):
    r = CaptureReader(name, stream=io.BufferedReader(io.BytesIO(data)))
    frames = list(r)
    return r, frames


@pytest.mark.parametrize("nanos", [False, True], ids=["usec", "nsec"])
@pytest.mark.parametrize("big", [False, True], ids=["le", "be"])
def test_classic_pcap_all_magics(nanos: bool, big: bool) -> None:
    w = b.PcapWriter(linktype=1, nanos=nanos, big_endian=big)
    pkt = b.ether(tcp_ip(payload=b"x"), ethertype=0x0800)
    w.add(T0, pkt).add(T0 + 1_000_000, pkt)
    r, frames = read(w.to_bytes())
    assert [f.number for f in frames] == [1, 2]
    expect = T0 if nanos else T0 // 1000 * 1000
    assert frames[0].ts == expect and frames[1].ts - frames[0].ts == 1_000_000
    assert r.format == "pcap" and not r.problems
    p = Decoder().decode(frames[0])
    assert p is not None and (p.sport, p.dport, p.seq, p.ack, p.payload, p.ttl, p.ip_id) == (
        40000, 80, 1000, 2000, b"x", 61, 7)


def test_pcapng_interfaces_resolutions_and_blocks() -> None:
    w = b.PcapngWriter()
    e = w.add_interface(1, tsresol=6)
    raw = w.add_interface(101, tsresol=9)
    null = w.add_interface(0, tsresol=0x80 | 20)
    w.add_custom_block(b"skip me")
    w.add_packet(e, T0, b.ether(tcp_ip(), ethertype=0x0800))
    w.add_packet(raw, T0 + 5, tcp_ip(v6=True))
    w.add_name_resolution([("10.0.0.1", "a.example")])
    w.add_packet(null, T0 + 10**9, b.null_loopback(tcp_ip(), 2))
    w.add_packet(e, T0, b.ether(tcp_ip(sport=1), ethertype=0x0800), simple=True)
    r, all_frames = read(w.to_bytes())
    # Wireshark numbers the custom block as frame 1 (a record without a packet)
    assert [f.number for f in all_frames] == [1, 2, 3, 4, 5] and all_frames[0].linktype == -2
    frames = all_frames[1:]
    assert [f.linktype for f in frames] == [1, 101, 0, 1]
    assert frames[0].ts == T0 // 1000 * 1000
    assert frames[1].ts == T0 + 5
    # 2^-20 s units: within one unit (~954 ns) of the true time
    assert abs(frames[2].ts - (T0 + 10**9)) < 1000
    assert frames[3].ts == 0  # simple packet blocks carry no timestamp
    d = Decoder()
    assert all(d.decode(f) is not None for f in frames)
    assert r.format == "pcapng" and not r.problems


BAD_EPB = ("bad-caplen", "bad-iface", "bad-trailer", "bad-length")


def _bad_epb(endian: str, kind: str, interfaces: int) -> bytes:
    """An enhanced packet block the reader reports: more captured bytes than it holds, an interface never
    described, a trailing length unlike the leading one, or a length that is not a multiple of 4."""
    payload = b"abcdefgh"
    caplen = len(payload) + (8 if kind == "bad-caplen" else 0)
    iface = interfaces + 1 if kind == "bad-iface" else 0
    body = struct.pack(endian + "IIIII", iface, 0, 1000, caplen, len(payload)) + payload
    if kind == "bad-length":  # 42 bytes, the last 4 of them 42 (as a trailer would say)
        return struct.pack(endian + "II", 6, 42) + body + b"\0\0" + struct.pack(endian + "I", 42)
    total = 12 + len(body)
    trailer = total + (4 if kind == "bad-trailer" else 0)
    return struct.pack(endian + "II", 6, total) + body + struct.pack(endian + "I", trailer)


@pytest.mark.parametrize("kind", BAD_EPB)
def test_pcapng_damaged_block_among_whole_ones(kind: str) -> None:
    """A damaged enhanced packet block between good ones, all in the buffer at once, is reported as when each block
    is read on its own (chunks of 16 bytes)."""
    from pcapcheck import capture

    w = b.PcapngWriter()
    i = w.add_interface(1)
    w.add_packet(i, T0, b"x" * 20).add_raw(_bad_epb(w.endian, kind, 1)).add_packet(i, T0, b"y" * 20)
    w.add_block(0x99, struct.pack("<IIIII", 0, 0, 1000, 8, 8) + b"abcdefgh")  # unknown: skipped (but shaped alike)
    w.add_packet(i, T0, b"z" * 20)
    r, frames = read(w.to_bytes(), name="mem.pcapng")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(capture, "CHUNK", 16)
        slow, slow_frames = read(w.to_bytes(), name="mem.pcapng")
    assert frames == slow_frames and r.problems == slow.problems and r.problems
    assert frames[0].data == b"x" * 20
    if not any(p.fatal for p in r.problems):
        assert [f.data for f in frames[-2:]] == [b"y" * 20, b"z" * 20]


def test_pcapng_block_too_long_in_a_big_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block longer than any real one is damage even when the buffer holds all of it (chunks of 8 MiB)."""
    from pcapcheck import capture

    monkeypatch.setattr(capture, "CHUNK", 8 << 20)
    w = b.PcapngWriter()
    i = w.add_interface(1)
    w.add_packet(i, T0, b"x" * 20).add_packet(i, T0, b"y" * (capture.MAX_RECORD * 17))
    r, frames = read(w.to_bytes(), name="mem.pcapng")
    assert len(frames) == 1 and [(p.code, p.fatal) for p in r.problems] == [("capture.corrupt", True)]


@given(st.data())
def test_pcapng_records_whatever_the_chunks_and_the_cut(data: st.DataObject) -> None:
    """pcapng records read in bulk from the buffer (enhanced packet blocks) or one block at a time (the others,
    and those across the buffer's end, here with chunks of a few bytes too): each record's number, time, link
    type, lengths and bytes as written, in either byte order, among other blocks; cut anywhere, the whole blocks
    before the cut and one fatal truncation."""
    from pcapcheck import capture

    w = b.PcapngWriter(big_endian=data.draw(st.booleans(), label="big_endian"))
    ifaces = [(w.add_interface(lt, tsresol=res), lt, res) for lt, res in
              data.draw(st.lists(st.tuples(st.sampled_from([1, 101]), st.sampled_from([3, 6, 9])), min_size=1,
                                 max_size=3), label="interfaces")]
    expected: list[tuple[int, int, int, int, bytes]] = []
    ends: list[int] = []  # where each record's block ends
    kinds = data.draw(st.lists(st.sampled_from(["epb", "epb", "epb", "custom", "nrb", "isb", "unknown", *BAD_EPB]),
                               max_size=12), label="blocks")
    for kind in kinds:
        number = len(expected) + 1
        if kind in BAD_EPB:
            w.add_raw(_bad_epb(w.endian, kind, len(ifaces)))
        elif kind == "unknown":  # a block type pcapcheck does not know, shaped like a packet block: skipped
            w.add_block(0x99, struct.pack(w.endian + "IIIII", 0, 0, 1000, 8, 8) + b"abcdefgh")
        elif kind == "epb":
            iface, lt, res = data.draw(st.sampled_from(ifaces), label="iface")
            payload = data.draw(st.binary(max_size=90), label="payload")
            orig_len = max(0, len(payload) + data.draw(st.integers(-3, 3), label="orig_len_more"))
            ts = T0 + data.draw(st.integers(0, 10**12), label="dt")
            w.add_packet(iface, ts, payload, orig_len=orig_len,
                         options=[(1, b"comment")] if data.draw(st.booleans(), label="options") else ())
            # (a wire length shorter than the bytes captured is taken as that many)
            expected.append((number, ts // 10 ** (9 - res) * 10 ** (9 - res), lt, max(orig_len, len(payload)), payload))
        elif kind == "custom":
            w.add_custom_block(b"x" * data.draw(st.integers(0, 9), label="custom"))
            expected.append((number, 0, capture.NO_PACKET, 0, b""))
        elif kind == "nrb":
            w.add_name_resolution([("10.0.0.1", "a.example")])
        else:
            w.add_interface_statistics(0, T0, received=5)
        if kind in ("epb", "custom"):
            ends.append(len(w.to_bytes()))
    raw = w.to_bytes()
    boundaries = set(itertools.accumulate(map(len, w._blocks)))  # where a block ends
    cut = data.draw(st.one_of(st.none(), st.integers(len(w._blocks[0]), len(raw) - 1)), label="cut")
    if cut is not None:
        raw = raw[:cut]
        expected = [e for e, end in zip(expected, ends) if end <= cut]
    chunk = data.draw(st.sampled_from([36, 100, 333, *[capture.CHUNK] * 3]), label="chunk")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(capture, "CHUNK", chunk)
        r, frames = read(raw, name="mem.pcapng")
        # Chunks of 16 bytes: never a whole block in the buffer beyond the one being read, so every block is read
        # one at a time: the records and problems are the same
        mp.setattr(capture, "CHUNK", 16)
        slow, slow_frames = read(raw, name="mem.pcapng")
    assert frames == slow_frames and r.problems == slow.problems and r.linktypes == slow.linktypes
    if set(kinds) & set(BAD_EPB):
        return
    assert [(f.number, f.ts, f.linktype, f.wirelen, f.data) for f in frames] == expected
    assert [f.caplen for f in frames] == [len(e[4]) for e in expected]
    if cut is None or cut in boundaries:
        assert not r.problems
    else:
        assert [(p.code, p.fatal) for p in r.problems] == [("capture.truncated", True)]
    assert r.frames == len(expected) and r.format == "pcapng"
    if cut is None:
        assert r.linktypes == {lt: sum(e[2] == lt for e in expected) for _, lt, _ in ifaces}


def test_gzip_is_detected_by_content() -> None:
    w = b.PcapWriter()
    w.add(T0, b.ether(tcp_ip(), ethertype=0x0800))
    r, frames = read(gzip.compress(w.to_bytes(), mtime=0), name="no-extension")
    assert r.compressed and len(frames) == 1


LINKS = {
    "ether": (1, lambda ip: b.ether(ip, ethertype=0x0800)),
    "vlan": (1, lambda ip: b.ether(ip, ethertype=0x0800, vlans=(10,))),
    "qinq": (1, lambda ip: b.ether(ip, ethertype=0x0800, vlans=(10, 20))),
    "llc-snap": (1, lambda ip: b.ether_8023(b.llc_snap(ip, 0x0800))),
    "sll": (113, lambda ip: b.sll(ip, 0x0800)),
    "sll2": (276, lambda ip: b.sll2(ip, 0x0800)),
    "raw": (101, lambda ip: ip),
    "ipv4": (228, lambda ip: ip),
    "null": (0, lambda ip: b.null_loopback(ip, 2)),
    "null-be": (0, lambda ip: b.null_loopback(ip, 2, big_endian=True)),
    "loop": (108, lambda ip: b.loop(ip, 2)),
}


@pytest.mark.parametrize("name", sorted(LINKS))
def test_link_types(name: str) -> None:
    lt, wrap = LINKS[name]
    w = b.PcapWriter(linktype=lt)
    w.add(T0, wrap(tcp_ip(payload=b"hello")))
    _, frames = read(w.to_bytes())
    p = Decoder().decode(frames[0])
    assert p is not None and p.payload == b"hello" and p.dport == 80


def test_ipv6_extension_headers_are_skipped() -> None:
    seg = b.tcp(1234, 80, 1, 0, 0x02, 1000, b"", src_ip="fd00::1", dst_ip="fd00::2")
    ip = b.ipv6("fd00::1", "fd00::2", seg, ext_headers=(b.ext_hop_by_hop(), b.ext_dest_opts(), b.ext_fragment()))
    w = b.PcapWriter(linktype=101)
    w.add(T0, ip)
    _, frames = read(w.to_bytes())
    p = Decoder().decode(frames[0])
    assert p is not None and p.sport == 1234 and p.ip_id is None


def _layout(parts: dict[int, bytes], total: int | None, hdr_seen: bool) -> bytes | None:
    """The datagram as fragment reassembly always laid it out (every part in offset order, a later one over an
    earlier one where they overlap), or None while there is a hole or it is short of the total."""
    if total is None or not hdr_seen:
        return None
    buf = bytearray()
    for start in sorted(parts):
        if start > len(buf):
            return None
        buf[start : start + len(parts[start])] = parts[start]
    return bytes(buf[:total]) if len(buf) >= total else None


FRAGMENT = st.tuples(st.integers(0, 12).map(lambda k: 8 * k), st.integers(0, 40), st.booleans())


@given(st.lists(FRAGMENT, min_size=1, max_size=40))
@example([(0, 16, False), (16, 8, True), (8, 0, False), (8, 8, False)])  # an empty part inside a hole
@example([(0, 8, False), (8, 16, False), (8, 4, False), (24, 8, True)])  # a shorter copy at the same offset
def test_fragments_complete_exactly_when_the_layout_has_no_hole(fragments) -> None:
    """The decoder looks for a hole only when its coverage says there is none (a datagram of 8,000 fragments
    was quadratic); it completes on the same fragment, with the same bytes, as laying the parts out each time."""
    d = Decoder()
    parts: dict[int, bytes] = {}
    total, hdr_seen, done = None, False, None
    for frame, (off, length, last) in enumerate(fragments, 1):
        part = bytes((off + i + frame) & 0xFF for i in range(length))
        got = d._reassemble(("a", "b", 1), off, part, length, last, "hdr", frame)
        parts[off] = part
        hdr_seen |= off == 0
        total = off + length if last else total
        want = _layout(parts, total, hdr_seen)
        assert got == (None if want is None else (want, "hdr"))
        if want is not None:
            done = frame
            break
        cover = d._fragments[("a", "b", 1)]["cover"]  # exactly the bytes the parts held cover
        covered = sorted({i for o, p in parts.items() for i in range(o, o + len(p))})
        runs = [i for k, i in enumerate(covered) if k == 0 or covered[k - 1] != i - 1]
        assert cover.starts == runs and len(cover.ends) == len(runs)
        assert sum(e - s for s, e in zip(cover.starts, cover.ends)) == len(covered)
    assert (("a", "b", 1) in d._fragments) == (done is None)


def test_ipv4_fragments_are_reassembled_on_the_last_fragment() -> None:
    seg = b.tcp(40000, 80, 1, 0, 0x18, 1000, b"A" * 100, src_ip="10.0.0.1", dst_ip="10.0.0.2")
    frags = b.ipv4_fragments("10.0.0.1", "10.0.0.2", seg, fragment_size=48)
    w = b.PcapWriter(linktype=101)
    for i, fr in enumerate(frags):
        w.add(T0 + i, fr)
    _, frames = read(w.to_bytes())
    d = Decoder()
    out = [d.decode(f) for f in frames]
    assert out[:-1] == [None] * (len(frames) - 1)
    assert out[-1] is not None and out[-1].payload == b"A" * 100 and out[-1].frame == len(frames)


def _decode_ip(ips: list[bytes]) -> list:
    w = b.PcapWriter(linktype=101)
    for i, ip in enumerate(ips):
        w.add(T0 + i, ip)
    _, frames = read(w.to_bytes())
    d = Decoder()
    return [d.decode(f) for f in frames]


def test_icmp_errors_quoting_tcp_are_decoded() -> None:
    from pcapcheck.decode import ICMP_EVENT

    seg = b.ipv4("10.0.0.1", "10.0.0.2", b.tcp(40000, 80, 123456, 0, 0x18, 1000, b"x" * 1400, src_ip="10.0.0.1",
                                               dst_ip="10.0.0.2"))
    v6 = b.ipv6("fd00::1", "fd00::2", b.tcp(40001, 443, 7, 0, 0x02, 1000, src_ip="fd00::1", dst_ip="fd00::2"),
                ext_headers=(b.ext_hop_by_hop(), b.ext_fragment()))
    (frag, v6err, short, exceeded) = _decode_ip([
        b.icmp_error("10.0.0.254", "10.0.0.1", 3, 4, seg[:576], rest=b"\0\0\x05\x78"),
        b.icmp_error("fd00::fe", "fd00::2", 2, 0, v6[:1232], rest=(1280).to_bytes(4, "big")),
        b.icmp_error("10.0.0.254", "10.0.0.1", 3, 1, seg[:28]),
        b.icmp_error("10.0.0.254", "10.0.0.1", 11, 0, seg[:36]),
    ])
    assert frag.flags == ICMP_EVENT and (frag.version, frag.type, frag.code, frag.mtu) == (4, 3, 4, 1400)
    assert frag.key == (bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 80) and frag.seq == 123456
    assert (frag.qflags, frag.qlen, frag.numbered, frag.reporter) == (0x18, 1440, True, bytes([10, 0, 0, 254]))
    assert (v6err.version, v6err.type, v6err.mtu, v6err.key[1], v6err.key[3], v6err.qflags) == (6, 2, 1280, 40001, 443, 2)
    assert (short.qflags, short.numbered, short.seq) == (None, False, 123456)  # 8 bytes: ports and seq only
    assert (exceeded.type, exceeded.qflags, exceeded.numbered) == (11, 0x18, True)  # 16 bytes: numbered


def test_icmp_that_is_not_about_tcp_or_is_cut_is_counted_not_decoded() -> None:
    """No quote, a quote of another protocol, a redirect, an echo, and every truncation of a real error: never
    an exception; an IcmpError only when the ports and sequence number are there."""
    seg = b.ipv4("10.0.0.1", "10.0.0.2", b.tcp(40000, 80, 1, 0, 0x10, 1000, src_ip="10.0.0.1", dst_ip="10.0.0.2"))
    udp = b.ipv4("10.0.0.1", "10.0.0.53", b.udp(5353, 53, b"q", src_ip="10.0.0.1", dst_ip="10.0.0.53"), proto=17)
    v6 = b.ipv6("fd00::1", "fd00::2", b.tcp(40001, 443, 7, 0, 0x02, 1000, src_ip="fd00::1", dst_ip="fd00::2"))
    others = _decode_ip([
        b.icmp_error("10.0.0.53", "10.0.0.1", 3, 3, udp),
        b.icmp_error("10.0.0.254", "10.0.0.1", 5, 1, seg),
        b.icmp_error("10.0.0.2", "10.0.0.1", 0, 0, b"ping"),
        b.icmp_error("10.0.0.2", "10.0.0.1", 3, 1, b""),
    ])
    assert others == [None] * 4
    for n in range(len(seg) + 1):
        (got,) = _decode_ip([b.icmp_error("10.0.0.254", "10.0.0.1", 3, 13, seg[:n])])
        assert (got is not None) == (n >= 28), n
        assert got is None or got.numbered == (n >= 36)
    for n in range(len(v6) + 1):
        (got,) = _decode_ip([b.icmp_error("fd00::fe", "fd00::2", 1, 4, v6[:n])])
        assert (got is not None) == (n >= 48), n
    # the ICMP message itself cut short (its 8-byte header incomplete)
    full = b.icmp_error("10.0.0.254", "10.0.0.1", 3, 13, seg)
    for n in range(20, 28):
        assert _decode_ip([full[:n]]) == [None]


def _ipv6_fragments(seg: bytes, size: int, ident: int = 0xBEEF) -> list[bytes]:
    parts = [seg[i : i + size] for i in range(0, len(seg), size)]
    return [b.ipv6("fd00::1", "fd00::2", part, ext_headers=(b.ext_fragment(offset=i * size, more=i < len(parts) - 1,
                                                                             ident=ident),))
            for i, part in enumerate(parts)]


def test_ipv6_fragments_are_reassembled_on_the_last_fragment() -> None:
    seg = b.tcp(40000, 80, 1, 0, 0x18, 1000, b"B" * 150, src_ip="fd00::1", dst_ip="fd00::2")
    frags = _ipv6_fragments(seg, 56)
    assert len(frags) == 4
    out = _decode_ip([frags[1], frags[3], frags[0], frags[2]])  # in any order
    assert out[:3] == [None, None, None]
    assert out[3] is not None and out[3].payload == b"B" * 150 and out[3].frame == 4 and out[3].sport == 40000


def test_ipv6_fragments_never_completed_are_reported_at_the_end() -> None:
    from pcapcheck.config import Options
    from pcapcheck.pipeline import Analysis

    seg = b.tcp(40000, 80, 1, 0, 0x18, 1000, b"B" * 150, src_ip="fd00::1", dst_ip="fd00::2")
    frags = _ipv6_fragments(seg, 56)
    w = b.PcapWriter(linktype=101)
    for i, ip in enumerate(frags[:2]):  # the last fragment never comes
        w.add(T0 + i, ip)

    class Sink:
        def conversation(self, r) -> None:
            raise AssertionError("no conversation")

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frag6.pcap"
        w.write(path)
        totals = Analysis(Options(), Sink()).run([str(path)])
    (f,) = totals.inputs[0].findings
    assert f.code == "capture.undecodable" and f.frames == (1, 2) and "IPv6 fragment never completed" in f.message


def test_unsupported_link_type_is_reported_not_dropped_silently() -> None:
    w = b.PcapWriter(linktype=147)
    w.add(T0, b"\x00" * 40)
    _, frames = read(w.to_bytes())
    d = Decoder()
    assert d.decode(frames[0]) is None
    (skip,) = d.skips.values()
    assert skip.code == "capture.linktype" and skip.frames == [1] and "147" in skip.reason


def test_snaplen_cut_payload_is_marked() -> None:
    w = b.PcapWriter(snaplen=60, enforce_snaplen=True)
    w.add(T0, b.ether(tcp_ip(payload=b"x" * 100), ethertype=0x0800))
    _, frames = read(w.to_bytes())
    d = Decoder()
    p = d.decode(frames[0])
    assert p is not None and p.seglen == 100 and len(p.payload) == 60 - 54
    assert d.snaplen_cut.count == 1


def test_frame_shorter_on_the_wire_than_its_ip_length() -> None:
    """The IP header claims 8 bytes more than the frame had on the wire (caplen == wirelen): the segment is what
    was on the wire, as Wireshark takes it ("IPv4 total length exceeds packet length"), and it is not a snaplen
    cut. Bytes the snaplen cut (wirelen > caplen) were on the wire and count. Every decoding path agrees."""
    seg = b.tcp(40000, 80, 1000, 2000, 0x18, 65535, b"x" * 100, src_ip="10.0.0.1", dst_ip="10.0.0.2")
    long_ip = b.ipv4("10.0.0.1", "10.0.0.2", seg, total_length=20 + len(seg) + 8)
    ok_ip = b.ipv4("10.0.0.1", "10.0.0.2", seg)
    for linktype, wrap in ((1, lambda ip: b.ether(ip, ethertype=0x0800)), (101, lambda ip: ip)):
        w = b.PcapWriter(linktype=linktype)
        w.add(T0, wrap(long_ip))  # shorter on the wire
        w.add(T0 + 1, wrap(ok_ip)[:-30], orig_len=len(wrap(ok_ip)))  # cut by the snaplen
        r, frames = read(w.to_bytes())
        d = Decoder()
        short, cut = (d.decode(f) for f in frames)
        assert (short.seglen, len(short.payload)) == (100, 100), linktype
        assert (cut.seglen, len(cut.payload)) == (100, 70), linktype
        assert d.snaplen_cut.count == 1 and d.snaplen_cut.frames == [2]
        assert d.short_frames.count == 1 and d.short_frames.frames == [1]  # capture.short-frame
        r = CaptureReader("mem.pcap", stream=io.BufferedReader(io.BytesIO(w.to_bytes())))
        d = Decoder()
        batch = [p for recs in r.record_batches() for p in d.decode_batch(recs)]
        assert [(p.seglen, len(p.payload)) for p in batch] == [(100, 100), (100, 70)], linktype
        assert d.snaplen_cut.count == 1
        assert d.short_frames.count == 1 and d.short_frames.frames == [1]
        # a sharded run's segments of another process's conversation: counted, not built, sized by the wire
        other = SimpleNamespace(end_ts=0, packets=0, payload=0)
        key = (socket.inet_aton("10.0.0.1"), 40000, socket.inet_aton("10.0.0.2"), 80)
        r = CaptureReader("mem.pcap", stream=io.BufferedReader(io.BytesIO(w.to_bytes())))
        d = Decoder()
        assert [p for recs in r.record_batches() for p in d.decode_batch(recs, {key: other})] == []
        assert (other.packets, other.payload) == (2, 200)  # both link types have the fast path
        assert d.short_frames.count == 1 and d.snaplen_cut.count == 1


def test_short_frame_is_a_capture_finding_ipv6() -> None:
    """An IPv6 payload length past the frame's end on the wire: ``capture.short-frame``, once per input,
    naming the frame; a snaplen cut is not one."""
    seg = b.tcp(40000, 80, 1000, 2000, 0x18, 65535, b"y" * 50, src_ip="2001:db8::1", dst_ip="2001:db8::2")
    ip6 = bytearray(b.ipv6("2001:db8::1", "2001:db8::2", seg))
    struct.pack_into("!H", ip6, 4, len(seg) + 10)
    w = b.PcapWriter(linktype=101)
    w.add(T0, bytes(ip6))
    w.add(T0 + 1, b.ipv6("2001:db8::1", "2001:db8::2", seg)[:-20], orig_len=40 + len(seg))
    _, frames = read(w.to_bytes())
    d = Decoder()
    short, cut = (d.decode(f) for f in frames)
    assert (short.seglen, cut.seglen, len(cut.payload)) == (50, 50, 30)
    assert (d.short_frames.frames, d.snaplen_cut.frames) == ([1], [2])


# -- bad input ---------------------------------------------------------------------------
def good_pcap(n=3) -> bytes:
    w = b.PcapWriter()
    for i in range(n):
        w.add(T0 + i, b.ether(tcp_ip(payload=b"p%d" % i), ethertype=0x0800))
    return w.to_bytes()


def test_truncated_record_keeps_earlier_frames() -> None:
    data = good_pcap(4)[:-10]
    r, frames = read(data, "cut.pcap")
    assert len(frames) == 3
    (p,) = r.problems
    assert p.code == "capture.truncated" and p.fatal and p.frame == 4
    assert "cut.pcap" in p.message and f"byte offset {p.offset}" in p.message and "frame 4" in p.message


def test_truncated_record_header() -> None:
    data = good_pcap(3) + b"\x01\x02\x03"
    r, frames = read(data)
    assert len(frames) == 3 and r.problems[0].code == "capture.truncated" and "record header" in r.problems[0].message


def test_huge_caplen_stops_with_a_clear_message() -> None:
    import struct

    data = good_pcap(2) + struct.pack("<IIII", 1, 0, 4_000_000, 4_000_000) + b"\x00" * 100
    r, frames = read(data)
    assert len(frames) == 2
    assert r.problems[0].code == "capture.corrupt" and "4000000" in r.problems[0].message


def test_pcapng_bad_block_length() -> None:
    w = b.PcapngWriter()
    i = w.add_interface(1)
    w.add_packet(i, T0, b.ether(tcp_ip(), ethertype=0x0800))
    w.add_packet(i, T0, b.ether(tcp_ip(), ethertype=0x0800))
    data = w.to_bytes() + b"\x06\x00\x00\x00" + b"\xff\xff\xff\x7f" + b"\x00" * 40
    r, frames = read(data)
    assert len(frames) == 2 and r.problems[0].code == "capture.corrupt" and r.problems[0].fatal


@pytest.mark.parametrize("data,words", [(b"", "empty"), (b"GIF89a" + bytes(range(200)), "not a pcap")],
                         ids=["empty", "garbage"])
def test_not_a_capture(data: bytes, words: str) -> None:
    with pytest.raises(CaptureError, match=words):
        read(data, "x.bin")


def test_header_only_is_an_empty_capture() -> None:
    r, frames = read(b.PcapWriter().to_bytes())
    assert frames == [] and not r.problems


@pytest.mark.parametrize("linktype, wrap", [
    (1, lambda ip: b.ether(ip, ethertype=0x0800)),
    (113, lambda ip: b.sll(ip, 0x0800, pkttype=4)),  # tcpdump -i any
    (276, lambda ip: b.sll2(ip, 0x0800)),
    (101, lambda ip: ip),
    (228, lambda ip: ip),
])
def test_common_link_types_take_the_fast_path(linktype, wrap) -> None:
    """An IPv4/TCP segment behind Ethernet II, Linux cooked v1/v2 or raw IP is decoded in place, without a
    Frame (tests/test_decode_fuzz.py checks that it decodes as the full decoder)."""
    seg = b.tcp(40000, 80, 1000, 2000, 0x18, 65535, b"GET / HTTP/1.1\r\n\r\n", src_ip="10.0.0.1", dst_ip="10.0.0.2",
                options=b.opt_nop() + b.opt_nop() + b.opt_wscale(7) + b.opt_nop())
    w = b.PcapWriter(linktype=linktype)
    w.add(T0, wrap(b.ipv4("10.0.0.1", "10.0.0.2", seg)))
    r = CaptureReader("mem.pcap", stream=io.BufferedReader(io.BytesIO(w.to_bytes())))
    d = Decoder()
    (p,) = [p for recs in r.record_batches() for p in d.decode_batch(recs)]
    assert d._fast_frames == 1 and d.tcp_frames == 1
    assert (p.sport, p.dport, p.seq, p.ack, p.payload, len(p.options)) == (40000, 80, 1000, 2000,
                                                                         b"GET / HTTP/1.1\r\n\r\n", 8)
