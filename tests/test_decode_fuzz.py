"""Bad input never crashes the decoder or the pipeline: random IP datagrams behind every header path that
points into attacker-controlled bytes (TCP, ICMP and ICMPv6 errors with their quotes, IPv4 and IPv6
fragments, extension headers). Every frame is decoded or counted, never an exception. And the fast path
(decode._FAST_PATHS) decodes damaged and valid segments as the full decoder does."""

from __future__ import annotations

import io
import socket
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures import builder as b
from pcapcheck.capture import CaptureReader
from pcapcheck.config import Options
from pcapcheck.decode import Decoder
from pcapcheck.pipeline import Analysis

T0 = 1_700_000_000_000_000_000
SRC4, DST4 = "10.0.0.1", "10.0.0.2"
SRC6, DST6 = "fd00::1", "fd00::2"

_body = st.binary(max_size=120)


@st.composite
def datagram(draw) -> bytes:
    """An IP datagram whose headers are valid up to a random point and random after it."""
    kind = draw(st.sampled_from(["tcp4", "icmp4", "frag4", "tcp6", "icmp6", "frag6", "raw"]))
    body = draw(_body)
    if kind == "raw":
        return body
    if kind == "tcp4":
        return b.ipv4(SRC4, DST4, body)
    if kind == "icmp4":
        quote = draw(st.sampled_from([b"", b.ipv4(SRC4, DST4, body), b.ipv4(SRC4, DST4, body)[:28]]))
        cut = draw(st.integers(0, 80))
        return b.icmp_error(DST4, SRC4, draw(st.sampled_from([3, 4, 5, 11, 12])), draw(st.integers(0, 15)),
                            (quote + body)[: len(quote) + cut])
    if kind == "frag4":
        return b.ipv4(SRC4, DST4, body, ip_id=7, frag_offset=8 * draw(st.integers(0, 4)), mf=draw(st.booleans()))
    if kind == "tcp6":
        return b.ipv6(SRC6, DST6, body, ext_headers=draw(st.sampled_from([(), (b.ext_hop_by_hop(),)])))
    if kind == "icmp6":
        quote = b.ipv6(SRC6, DST6, body)[: draw(st.integers(0, 100))]
        return b.icmp_error(DST6, SRC6, draw(st.sampled_from([1, 2, 3, 4, 128])), draw(st.integers(0, 6)), quote)
    return b.ipv6(SRC6, DST6, body, ext_headers=(b.ext_fragment(offset=8 * draw(st.integers(0, 4)),
                                                               more=draw(st.booleans()), ident=9),))


@given(st.lists(datagram(), min_size=1, max_size=12), st.integers(0, 3))
def test_random_datagrams_never_crash_the_pipeline(datagrams: list[bytes], trim: int) -> None:
    w = b.PcapWriter(linktype=101)
    for i, ip in enumerate(datagrams):
        w.add(T0 + i * 1000, ip[: len(ip) - trim] if trim and len(ip) > trim else ip)
    results = []

    class Sink:
        def conversation(self, r) -> None:
            results.append(r)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.pcap"
        w.write(path)
        totals = Analysis(Options(), Sink()).run([str(path)])
    (summary,) = totals.inputs
    assert summary.frames == len(datagrams) and summary.readable
    assert summary.tcp_frames <= len(datagrams)
    assert all(1 <= r.first_frame <= r.last_frame <= len(datagrams) for r in results)


# The link types with a fast path (decode._FAST_PATHS, and _alt_headers: one VLAN tag, IPv6), each with a way to
# wrap an IP datagram: name -> (link type, wrap).
_LINKS = {
    "ether": (1, lambda ip, v6: b.ether(ip, ethertype=0x86DD if v6 else 0x0800)),
    "vlan": (1, lambda ip, v6: b.ether(ip, ethertype=0x86DD if v6 else 0x0800, vlans=(10,))),
    "qinq": (1, lambda ip, v6: b.ether(ip, ethertype=0x86DD if v6 else 0x0800, vlans=(10, 20))),
    "sll": (113, lambda ip, v6: b.sll(ip, 0x86DD if v6 else 0x0800)),
    "sll2": (276, lambda ip, v6: b.sll2(ip, 0x86DD if v6 else 0x0800)),
    "raw": (101, lambda ip, v6: ip),
    "ipv4": (228, lambda ip, v6: ip),
    "ipv6": (229, lambda ip, v6: ip),
}


@st.composite
def tcp_datagram(draw) -> tuple[bytes, bool]:
    """An IP datagram with a TCP segment, valid or damaged where the fast path decides: options or none, IPv4
    options, a fragment, another protocol, IPv6, a wrong IP total length (longer or shorter than the frame, 0 as with TCP
    segmentation offload), a TCP data offset below 20 or past the end."""
    payload = draw(st.binary(max_size=60))
    opts = draw(st.sampled_from([b"", b.opt_mss(1460), b.opt_nop() + b.opt_nop() + b.opt_wscale(7) + b.opt_nop()]))
    flags = draw(st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14]))
    v6 = draw(st.booleans())
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    seg = bytearray(b.tcp(40000, 80, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)), flags,
                          draw(st.integers(0, 65535)), payload, src_ip=src, dst_ip=dst, options=opts))
    if draw(st.integers(0, 7)) == 0:
        seg[12] = draw(st.integers(0, 255)) & 0xF0  # data offset: anything, 0 to 60 bytes
    if v6:
        kind = draw(st.sampled_from(["plain"] * 4 + ["long", "short", "zero", "version", "ext"]))
        ip = bytearray(b.ipv6(src, dst, bytes(seg), ext_headers=(b.ext_hop_by_hop(),) if kind == "ext" else (),
                              hop_limit=draw(st.integers(0, 255))))
        if kind in ("long", "short", "zero"):  # the payload length field
            plen = {"long": len(seg) + draw(st.integers(1, 40)), "short": draw(st.integers(1, len(seg))),
                    "zero": 0}[kind]
            ip[4:6] = plen.to_bytes(2, "big")
        elif kind == "version":
            ip[0] = draw(st.sampled_from([0x40, 0x70, 0x00]))
        return bytes(ip), True
    kind = draw(st.sampled_from(["plain"] * 6 + ["long", "short", "zero", "frag", "ipopt", "udp", "icmp"]))
    if kind == "udp":  # not TCP nor ICMP (UDP, ESP, ...), a fragment or not
        return b.ipv4(src, dst, bytes(seg), proto=draw(st.sampled_from([17, 0, 50])),
                      frag_offset=8 * draw(st.integers(0, 1)), mf=draw(st.booleans())), False
    if kind == "icmp":  # an ICMP error quoting the segment
        return b.icmp_error(DST4, SRC4, 3, draw(st.integers(0, 4)), b.ipv4(src, dst, bytes(seg))), False
    if kind == "long":
        return b.ipv4(src, dst, bytes(seg), total_length=20 + len(seg) + draw(st.integers(1, 40))), False
    if kind == "short":
        return b.ipv4(src, dst, bytes(seg), total_length=draw(st.integers(20, 20 + len(seg)))), False
    if kind == "zero":
        return b.ipv4(src, dst, bytes(seg), total_length=0), False
    if kind == "frag":
        return b.ipv4(src, dst, bytes(seg), ip_id=7, frag_offset=8 * draw(st.integers(0, 2)), mf=True), False
    if kind == "ipopt":
        ip = bytearray(b.ipv4(src, dst, b"\x01\x01\x01\x00" + bytes(seg)))
        ip[0] = 0x46  # a 24-byte header: the 4 bytes before the segment are its options (NOP NOP NOP EOL)
        return bytes(ip), False
    return b.ipv4(src, dst, bytes(seg)), False


def _capture(link: str, datagrams: list[tuple[bytes, bool]], cut: int, snaplen_cut: bool) -> bytes:
    """A pcap of ``datagrams`` on ``link``'s link type, each record cut by ``cut`` bytes (when longer) either as a
    snaplen cut (on the wire in full) or as a short frame (as long on the wire as captured)."""
    linktype, wrap = _LINKS[link]
    w = b.PcapWriter(linktype=linktype)
    for i, (ip, v6) in enumerate(datagrams):
        frame = wrap(ip, v6)
        if (linktype == 228 and v6) or (linktype == 229 and not v6):
            continue  # LINKTYPE_IPV4 carries IPv4 only, LINKTYPE_IPV6 IPv6 only
        if cut and len(frame) > cut:
            w.add(T0 + i, frame[:-cut], orig_len=len(frame) if snaplen_cut else None)
        else:
            w.add(T0 + i, frame)
    return w.to_bytes()


def _decoder_state(d: Decoder) -> tuple:
    return (d.tcp_frames, d.ip_frames, d.other_frames, d.snaplen_cut.frames, d.short_frames.frames,
            sorted((s.code, s.reason, tuple(s.frames)) for s in d.skips.values()))


@given(st.sampled_from(sorted(_LINKS)), st.lists(tcp_datagram(), min_size=1, max_size=6),
       st.one_of(st.just(0), st.integers(1, 30)), st.booleans())
def test_the_fast_path_decodes_as_the_full_decoder(link: str, datagrams: list[tuple[bytes, bool]], cut: int,
                                                    snaplen_cut: bool) -> None:
    """Every link type with a fast path, and a VLAN tag or IPv6 on them: ``decode_batch`` (which takes it) and
    the general decoder (link header, IP, TCP, one step each) give the same segments, counts and problems.
    Records are cut short either as a snaplen cut (on the wire in full) or as a short frame (as long on the wire
    as captured)."""
    data = _capture(link, datagrams, cut, snaplen_cut)
    fast = Decoder()
    reader = CaptureReader("mem.pcap", stream=io.BufferedReader(io.BytesIO(data)))
    got = [p for recs in reader.record_batches() for p in fast.decode_batch(recs)]
    full = Decoder()
    reader = CaptureReader("mem.pcap", stream=io.BufferedReader(io.BytesIO(data)))
    want = [p for f in reader for p in [full._decode_link(f)] if p is not None]
    assert got == want
    assert _decoder_state(fast) == _decoder_state(full)


def _key(v6: bool, reverse: bool = False, other_port: bool = False) -> tuple:
    """The key of the segments tcp_datagram makes (SRC:40000 -> DST:80), of the other direction, or of another 4-tuple."""
    family = socket.AF_INET6 if v6 else socket.AF_INET
    src, dst = socket.inet_pton(family, SRC6 if v6 else SRC4), socket.inet_pton(family, DST6 if v6 else DST4)
    sport = 40001 if other_port else 40000
    return (dst, 80, src, sport) if reverse else (src, sport, dst, 80)


@given(st.sampled_from(sorted(_LINKS)), st.lists(tcp_datagram(), min_size=1, max_size=6),
       st.one_of(st.just(0), st.integers(1, 30)), st.booleans(), st.sets(st.sampled_from(["fwd", "rev", "other"])))
def test_skipped_segments_are_those_the_fast_path_decodes(link: str, datagrams: list[tuple[bytes, bool]], cut: int,
                                                         snaplen_cut: bool, entries: set[str]) -> None:
    """A sharded run's ``skip`` (pipeline.Foreign), on every link type with a fast path, behind a VLAN tag and over
    IPv6 too. What is skipped is exactly what the same batch decodes to without ``skip`` minus the segments of a
    4-tuple in it, without SYN, FIN or RST, after no SYN of that 4-tuple, decoded in place (not by the general
    decoder); counted in the entry (packets, segment bytes, last time); the decoder's counts and problems the same."""
    data = _capture(link, datagrams, cut, snaplen_cut)
    plain = Decoder()
    (records,) = list(CaptureReader("mem.pcap", stream=io.BufferedReader(io.BytesIO(data))).record_batches()) or [[]]
    every = plain.decode_batch(records)
    by_general = set()  # the records the general decoder takes (never skipped): the fast path does not count them
    for rec in records:
        one = Decoder()
        if one.decode_batch([rec]) and not one._fast_frames:
            by_general.add(rec[0])
    skip: dict = {}
    for v6 in (False, True):
        for name, key in (("fwd", _key(v6)), ("rev", _key(v6, reverse=True)), ("other", _key(v6, other_port=True))):
            if name in entries:
                entry = SimpleNamespace(end_ts=-1, packets=0, payload=0, name=name)
                skip[key] = entry
    d = Decoder()
    got = d.decode_batch(records, skip)
    assert _decoder_state(d) == _decoder_state(plain) and d._fast_frames == plain._fast_frames
    missing, syn_seen, left = [], set(), list(got)
    for p in every:
        key = (p.src, p.sport, p.dst, p.dport)
        if p.flags & 0x02:
            syn_seen.update((key, (p.dst, p.dport, p.src, p.sport)))
        skippable = key in skip and not p.flags & 0x07 and key not in syn_seen and p.frame not in by_general
        if left and left[0] == p:
            left.pop(0)
            assert not skippable, p
        else:
            assert skippable, p
            missing.append(p)
    assert not left
    for entry in {id(e): e for e in skip.values()}.values():
        mine = [p for p in missing if skip[(p.src, p.sport, p.dst, p.dport)] is entry]
        assert (entry.packets, entry.payload) == (len(mine), sum(p.seglen for p in mine))
        assert entry.end_ts == (mine[-1].ts if mine else -1)


@pytest.mark.parametrize("link", sorted(_LINKS))
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_plain_segments_take_the_fast_path(link: str, v6: bool) -> None:
    """A plain TCP segment takes the fast path (read in place from the reader's chunk) on every link type of
    _FAST_PATHS, also behind one VLAN tag and over IPv6 without extension headers (_alt_headers): a trunk port's
    capture or a dual-stack network's is decoded as fast as the rest. Two VLAN tags take the general decoder."""
    linktype, wrap = _LINKS[link]
    if (linktype == 228 and v6) or (linktype == 229 and not v6):
        pytest.skip("LINKTYPE_IPV4 carries IPv4 only, LINKTYPE_IPV6 IPv6 only")
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    w = b.PcapWriter(linktype=linktype)
    for i in range(3):
        seg = b.tcp(40000, 80, 1000 + i, 2000, 0x18, 512, b"x" * i, src_ip=src, dst_ip=dst)
        w.add(T0 + i, wrap(b.ipv6(src, dst, seg) if v6 else b.ipv4(src, dst, seg), v6))
    d = Decoder()
    reader = CaptureReader("mem.pcap", stream=io.BufferedReader(io.BytesIO(w.to_bytes())))
    got = [p for recs in reader.record_batches() for p in d.decode_batch(recs)]
    assert [p.payload for p in got] == [b"", b"x", b"xx"]
    assert (d._fast_frames, d._tcp_frames) == ((0, 3) if link == "qinq" else (3, 0))


@pytest.mark.parametrize("link", sorted(_LINKS))
def test_records_cut_short_at_the_end_of_the_file(link: str) -> None:
    """A record cut by the snaplen anywhere in its headers, the last of the file (nothing after it in the reader's
    chunk): decoded as the general decoder does, no byte read beyond it."""
    linktype, wrap = _LINKS[link]
    for v6 in (False, True):
        if (linktype == 228 and v6) or (linktype == 229 and not v6):
            continue
        src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
        seg = b.tcp(40000, 80, 1000, 2000, 0x18, 512, b"payload", src_ip=src, dst_ip=dst)
        frame = wrap(b.ipv6(src, dst, seg) if v6 else b.ipv4(src, dst, seg), v6)
        for size in range(len(frame)):
            w = b.PcapWriter(linktype=linktype)
            w.add(T0, frame[:size], orig_len=len(frame))
            d = Decoder()
            reader = CaptureReader("mem.pcap", stream=io.BufferedReader(io.BytesIO(w.to_bytes())))
            got = [p for recs in reader.record_batches() for p in d.decode_batch(recs)]
            full = Decoder()
            reader = CaptureReader("mem.pcap", stream=io.BufferedReader(io.BytesIO(w.to_bytes())))
            assert got == [p for f in reader for p in [full._decode_link(f)] if p is not None], (v6, size)

