"""Bad input never crashes the decoder or the pipeline: random IP datagrams behind every header path that
points into attacker-controlled bytes (TCP, ICMP and ICMPv6 errors with their quotes, IPv4 and IPv6
fragments, extension headers). Every frame is decoded or counted, never an exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fixtures import builder as b
from pcapcheck.config import Options
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
