"""Tests for the fixture builder (fixtures/builder.py): the builder must be right before any
analyzer test that uses its captures can mean anything. dpkt and tshark serve as independent
readers here (the builder itself uses neither)."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import subprocess

import dpkt
import pytest

from fixtures.builder import (
    ACK,
    FIN,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PSH,
    RST,
    SYN,
    Capture,
    PcapngWriter,
    PcapWriter,
    TcpConversation,
    ether,
    ext_dest_opts,
    ext_fragment,
    ext_hop_by_hop,
    internet_checksum,
    ipv4,
    ipv4_fragments,
    ipv6,
    null_loopback,
    opt_mss,
    opt_nop,
    opt_sack,
    opt_timestamps,
    opt_wscale,
    pad_options,
    tcp,
)

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
T0 = 1_700_000_000_000_000_000


def http_conversation(cap: Capture, client=("10.0.0.1", 40000), server=("10.0.0.2", 80), **kw):
    c = cap.conversation(client, server, **kw)
    c.handshake()
    c.send("c2s", b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    c.ack("s2c")
    c.send("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"a" * 3000)
    c.ack("c2s")
    c.close("c2s")
    return c


def read_pcap(data: bytes):
    return list(dpkt.pcap.Reader(io.BytesIO(data)))


# -------------------------------------------------------------------------------- checksums


def test_internet_checksum_rfc1071_example():
    # RFC 1071 section 3 example: the sum of 0001 f203 f4f5 f6f7 is ddf2, complement 220d
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_ipv4_header_checksum_verifies():
    pkt = ipv4("192.0.2.1", "198.51.100.2", b"xyz", ttl=61, ip_id=0x1234)
    assert internet_checksum(pkt[:20]) == 0
    assert len(pkt) == 23 and pkt[0] == 0x45 and pkt[6] & 0x40  # DF


@pytest.mark.parametrize("src,dst", [("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")])
def test_tcp_checksum_matches_dpkt(src, dst):
    seg = tcp(
        1234,
        80,
        0xFFFFFFF0,
        77,
        PSH | ACK,
        501,
        b"hello odd",
        opt_nop() * 2 + opt_timestamps(5, 6),
        src_ip=src,
        dst_ip=dst,
    )
    v6 = ":" in src
    ip_cls = dpkt.ip6.IP6 if v6 else dpkt.ip.IP
    parsed = ip_cls(ipv6(src, dst, seg) if v6 else ipv4(src, dst, seg))
    original = parsed.data.sum
    # dpkt recomputes the TCP checksum (pseudo-header included) when the field is 0
    parsed.data.sum = 0
    if not v6:
        parsed.sum = 0
    assert ip_cls(bytes(parsed)).data.sum == original
    # and the ones' complement sum over pseudo-header + segment is 0 ("verifies")
    pseudo = (
        parsed.src
        + parsed.dst
        + (struct.pack("!BBH", 0, 6, len(seg)) if not v6 else struct.pack("!IxxxB", len(seg), 6))
    )
    assert internet_checksum(pseudo + seg) == 0


def test_tcp_options_are_padded():
    assert len(pad_options(opt_mss(1460) + opt_wscale(7))) == 8
    seg = tcp(
        1,
        2,
        0,
        0,
        SYN,
        100,
        options=opt_mss(1460) + opt_wscale(7),
        src_ip="10.0.0.1",
        dst_ip="10.0.0.2",
    )
    assert seg[12] >> 4 == 7  # 20 + 8 bytes
    assert opt_sack([(10, 20)]) == bytes([5, 10]) + struct.pack("!II", 10, 20)


# -------------------------------------------------------------------------------- file formats


@pytest.mark.parametrize("nanos", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_magics_and_timestamps(nanos, big_endian):
    w = PcapWriter(1, nanos=nanos, big_endian=big_endian)
    w.add(T0 + 123_456_789, b"\x00" * 60)
    data = w.to_bytes()
    magic = struct.unpack(">I" if big_endian else "<I", data[:4])[0]
    assert magic == (0xA1B23C4D if nanos else 0xA1B2C3D4)
    reader = dpkt.pcap.Reader(io.BytesIO(data))
    ((_ts, buf),) = list(reader)
    assert buf == b"\x00" * 60
    sec, frac = struct.unpack((">" if big_endian else "<") + "II", data[24:32])
    assert sec == T0 // 10**9
    assert frac == (123_456_789 if nanos else 123_456)


def test_snaplen_cuts_packets_and_keeps_orig_len():
    w = PcapWriter(1, snaplen=96)
    w.add(T0, b"x" * 200)
    data = w.to_bytes()
    caplen, orig = struct.unpack("<II", data[24 + 8 : 24 + 16])
    assert (caplen, orig) == (96, 200)


def test_pcapng_interfaces_and_tsresol():
    w = PcapngWriter()
    a = w.add_interface(1, tsresol=6, name="eth0")
    b = w.add_interface(LINKTYPE_RAW, tsresol=9)
    c = w.add_interface(LINKTYPE_NULL, tsresol=0x80 | 20)
    w.add_packet(a, T0 + 1_500, b"\x00" * 60)
    w.add_custom_block(b"skip me")
    w.add_packet(b, T0 + 1_500, ipv4("10.0.0.1", "10.0.0.2", b""))
    w.add_packet(c, T0, null_loopback(ipv4("10.0.0.1", "10.0.0.2", b""), 2))
    w.add_packet(0, 0, b"\x00" * 60, simple=True)
    data = w.to_bytes()
    # walk the blocks: every block's leading and trailing lengths agree and are multiples of 4
    off, types = 0, []
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        assert blen % 4 == 0
        assert struct.unpack_from("<I", data, off + blen - 4)[0] == blen
        types.append(btype)
        off += blen
    assert types == [0x0A0D0D0A, 1, 1, 1, 6, 0x40000BAD, 6, 6, 3]
    # EPB timestamps in each interface's units
    epbs = []
    off = 0
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        if btype == 6:
            iface, hi, lo = struct.unpack_from("<III", data, off + 8)
            epbs.append((iface, (hi << 32) | lo))
        off += blen
    assert epbs == [
        (0, (T0 + 1_500) // 1000),
        (1, T0 + 1_500),
        (2, (T0 << 20) // 10**9),
    ]


def test_capture_output_is_deterministic(tmp_path):
    def build():
        cap = Capture("ether")
        http_conversation(cap)
        return cap

    assert build().to_bytes("pcap") == build().to_bytes("pcap")
    assert build().to_bytes("pcapng") == build().to_bytes("pcapng")
    gz1, gz2 = build().to_bytes("pcap.gz"), build().to_bytes("pcap.gz")
    assert gz1 == gz2
    assert gzip.decompress(gz1) == build().to_bytes("pcap")
    p = build().write(tmp_path / "x.pcap.gz")
    assert p.read_bytes() == gz1


# -------------------------------------------------------------------------------- link layers


def test_ether_vlan_and_qinq():
    one = ether(b"P", ethertype=0x0800, vlans=[10])
    assert one[12:16] == b"\x81\x00\x00\x0a" and one[16:18] == b"\x08\x00"
    two = ether(b"P", ethertype=0x0800, vlans=[100, 10])
    assert two[12:14] == b"\x88\xa8" and two[16:18] == b"\x81\x00" and two[20:22] == b"\x08\x00"
    eth = dpkt.ethernet.Ethernet(ether(ipv4("10.0.0.1", "10.0.0.2", b""), ethertype=0x0800, vlans=[5]))
    assert isinstance(eth.data, dpkt.ip.IP)


@pytest.mark.parametrize("link,linktype", [("sll", LINKTYPE_LINUX_SLL), ("raw", LINKTYPE_RAW), ("null", 0)])
def test_capture_links(link, linktype):
    cap = Capture(link)
    http_conversation(cap)
    data = cap.to_pcap()
    assert struct.unpack_from("<I", data, 20)[0] == linktype
    assert len(read_pcap(data)) == len(cap.records)


def test_ipv6_extension_chain():
    pkt = ipv6(
        "2001:db8::1",
        "2001:db8::2",
        b"T" * 20,
        ext_headers=[ext_hop_by_hop(), ext_dest_opts(), ext_fragment()],
    )
    assert pkt[6] == 0  # first next header: hop-by-hop
    assert pkt[40] == 60 and pkt[48] == 44 and pkt[56] == 6  # each header names the next
    assert struct.unpack("!H", pkt[4:6])[0] == 8 + 8 + 8 + 20


def test_ipv4_fragments_reassemble():
    payload = bytes(range(256)) * 2
    frags = ipv4_fragments("10.0.0.1", "10.0.0.2", payload, fragment_size=200, ip_id=7)
    assert len(frags) == 3
    out = b""
    for f in frags:
        ip = dpkt.ip.IP(f)
        assert internet_checksum(f[:20]) == 0
        assert ip.offset * 8 == len(out) and bool(ip.mf) == (f is not frags[-1])
        out += bytes(ip.data)
    assert out == payload


# -------------------------------------------------------------------------------- conversations


def tcp_packets(data: bytes):
    for _ts, buf in read_pcap(data):
        eth = dpkt.ethernet.Ethernet(buf)
        yield eth.data, eth.data.data


def test_conversation_seq_ack_parsed_back_by_dpkt():
    cap = Capture("ether")
    c = http_conversation(cap, client_isn=1000, server_isn=5000)
    rows = [(t.flags, t.seq, t.ack, len(t.data)) for _ip, t in tcp_packets(cap.to_pcap())]
    req_len = len(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    resp_len = len(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n") + 3000
    assert rows[0] == (SYN, 1000, 0, 0)
    assert rows[1] == (SYN | ACK, 5000, 1001, 0)
    assert rows[2] == (ACK, 1001, 5001, 0)
    assert rows[3] == (PSH | ACK, 1001, 5001, req_len)
    assert rows[4] == (ACK, 5001, 1001 + req_len, 0)
    # response in MSS-sized pieces (1460 - 12 bytes of timestamps option)
    sizes = [r[3] for r in rows[5:8]]
    assert sizes == [1448, 1448, resp_len - 2 * 1448]
    assert [r[1] for r in rows[5:8]] == [5001, 5001 + 1448, 5001 + 2896]
    assert rows[-3][0] == FIN | ACK and rows[-3][1] == 1001 + req_len
    assert rows[-1] == (ACK, 1001 + req_len + 1, 5001 + resp_len + 1, 0)
    assert c.next_seq("c2s") == 1001 + req_len + 1


def test_ip_id_series_and_ttl():
    cap = Capture("ether")
    http_conversation(cap, client_ttl=64, server_ttl=63)
    rows = [(ip.src, ip.id, ip.ttl, t.flags) for ip, t in tcp_packets(cap.to_pcap())]
    client = [r for r in rows if r[0] == bytes([10, 0, 0, 1])]
    server = [r for r in rows if r[0] == bytes([10, 0, 0, 2])]
    assert all(r[2] == 64 for r in client) and all(r[2] == 63 for r in server)
    ids = [r[1] for r in client]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert server[0][1] == 0  # Linux SYN-ACK: IP ID 0
    sids = [r[1] for r in server[1:]]
    assert sids == list(range(sids[0], sids[0] + len(sids)))


def test_sequence_numbers_wrap():
    cap = Capture("ether")
    c = cap.conversation(client_isn=0xFFFFFF00, server_isn=0xFFFFFFF0)
    c.handshake()
    c.send("c2s", b"x" * 1000)
    c.send("s2c", b"y" * 1000)
    assert c.next_seq("c2s") == (0xFFFFFF01 + 1000) % 2**32
    seqs = [t.seq for _ip, t in tcp_packets(cap.to_pcap()) if t.data]
    assert seqs == [0xFFFFFF01, 0xFFFFFFF1]


def test_kernel_reset_shape():
    cap = Capture("ether")
    c = cap.conversation()
    c.handshake()
    data = c.send("c2s", b"z" * 10)[-1]
    rst = c.kernel_reset("s2c", answering=data, ttl=65)
    assert (
        rst.flags,
        rst.seq,
        rst.ack,
        rst.window,
        rst.options,
        rst.ip_id,
        rst.ttl,
    ) == (RST, data.ack, 0, 0, b"", 0, 65)
    ip, t = list(tcp_packets(cap.to_pcap()))[-1]
    assert t.flags == RST and t.seq == data.ack and t.off == 5 and ip.id == 0 and ip.df and ip.ttl == 65
    # a SYN is answered RST|ACK seq 0, ack ISN+1 ("connection refused")
    d = cap.conversation(("10.0.0.1", 40001))
    ref = d.refuse(d.syn())
    assert ref.flags == RST | ACK and ref.seq == 0 and ref.ack == (d.c.isn + 1)


def test_active_reset_shape_and_retransmit():
    c = TcpConversation()
    c.handshake()
    first = c.send("c2s", b"abc")[0]
    again = c.retransmit(first)
    assert (again.seq, again.payload) == (
        first.seq,
        first.payload,
    ) and again.frame == first.frame + 1
    c.ack("s2c")
    rst = c.rst("s2c")
    assert rst.flags == RST | ACK and rst.seq == c.next_seq("s2c") and rst.ack == c.rcv_nxt("s2c")
    assert rst.window == c.raw_window("s2c") and rst.options[2] == 8  # NOP NOP TS
    assert rst.ip_id != 0


def test_shared_clock_interleaves_conversations():
    cap = Capture("ether", step_ns=500_000)
    a = cap.conversation(("10.0.0.1", 1111))
    b = cap.conversation(("10.0.0.3", 2222))
    a.syn()
    b.syn()
    a.syn_ack()
    b.syn_ack()
    ts = [r.ts_ns for r in cap.records]
    assert ts == [T0 + i * 500_000 for i in range(4)]
    assert [r.segment.frame for r in cap.records] == [1, 2, 3, 4]


# -------------------------------------------------------------------------------- tshark


def tshark(path, *args):
    res = subprocess.run(
        [TSHARK, "-r", str(path), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def build_mixed() -> Capture:
    cap = Capture("ether")
    http_conversation(cap)
    http_conversation(cap, ("2001:db8::1", 50000), ("2001:db8::2", 8080))
    w = cap.conversation(("10.0.0.5", 40005), ("10.0.0.6", 443), client_isn=0xFFFFF000)
    w.handshake()
    w.send("c2s", b"q" * 9000)
    w.ack("s2c")
    w.rst("c2s")
    return cap


@needs_tshark
@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "pcap.gz"])
def test_tshark_reads_without_malformed_and_counts_streams(tmp_path, fmt):
    cap = build_mixed()
    path = cap.write(tmp_path / f"mixed.{fmt}")
    out = tshark(
        path,
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "tcp.stream",
        "-e",
        "_ws.expert.message",
    )
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == len(cap.records)
    assert {r[1] for r in rows} == {"0", "1", "2"}
    text = out.lower()
    assert "malformed" not in text and "checksum" not in text


@needs_tshark
def test_tshark_sees_expected_relative_seq_and_kernel_rst(tmp_path):
    cap = Capture("ether")
    c = cap.conversation(server=("10.0.0.2", 9000))
    c.handshake()
    seg = c.send("c2s", b"x" * 100)[-1]
    c.kernel_reset(answering=seg)
    path = cap.write(tmp_path / "k.pcap")
    out = tshark(
        path,
        "-T",
        "fields",
        "-e",
        "tcp.flags.str",
        "-e",
        "tcp.seq",
        "-e",
        "tcp.ack",
        "-e",
        "ip.id",
        "-e",
        "tcp.window_size_value",
        "-E",
        "separator=,",
    )
    last = out.splitlines()[-1].split(",")
    assert last[0].strip("\u00b7").endswith("R\u00b7\u00b7") or "R" in last[0]
    assert last[1:] == ["1", "0", "0x0000", "0"]


# -------------------------------------------------------------------------------- the catalog


def test_committed_fixtures_are_up_to_date(capsys):
    from fixtures import make_fixtures

    rc = make_fixtures.main(["--check"])
    out = capsys.readouterr().out
    assert rc == 0, f"run: python fixtures/make_fixtures.py\n{out}"


def test_catalog_is_deterministic_small_and_documented(tmp_path):
    from fixtures import make_fixtures

    a = make_fixtures.build_all(tmp_path / "a")
    b = make_fixtures.build_all(tmp_path / "b")
    assert a == b
    readme = a.pop("README.md").decode()
    assert set(a) == set(make_fixtures.FIXTURES)
    for name, data in a.items():
        fx = make_fixtures.FIXTURES[name]
        assert len(data) < 100_000, name
        assert fx.what and fx.must, name
        assert f"`{name}`" in readme


@pytest.mark.parametrize(
    "name,frames",
    [("bad-truncated-record.pcap", 3), ("bad-truncated-header.pcap", 3), ("bad-caplen-huge.pcap", 2)],
)
def test_broken_pcaps_keep_their_good_records(name, frames):
    from fixtures import make_fixtures

    data = make_fixtures.FIXTURES[name].build()
    off, good = 24, 0
    while off + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, off + 8)[0]
        if off + 16 + caplen > len(data):
            break
        off += 16 + caplen
        good += 1
    assert good == frames


def tshark_rows(path, *fields):
    args = [
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=;",
    ]
    for f in fields:
        args += ["-e", f]
    return [line.split("\t") for line in tshark(path, *args).splitlines()]


FIXDIR = __import__("pathlib").Path(__file__).resolve().parent.parent / "fixtures"
# fixtures tshark is expected to call malformed (intentional protocol faults)
TSHARK_MALFORMED_OK = {
    "http-chunk-overflow.pcap",
    "http-te-cl.pcap",
}  # te-cl: http.te_and_length is in the expert group Malformed
# tshark takes ~0.4 s per file: the full sweep runs with PCAPCHECK_TSHARK_ALL=1
KEY_FIXTURES = [
    "tcp-retrans.pcap",
    "tcp-port-reuse.pcap",
    "tcp-interleaved.pcap",
    "incident2-oow-kernel-rst.pcap",
    "fmt-pcapng-multi-iface.pcapng",
    "ipv4-fragments.pcap",
    "win-rule1-over-upper.pcap",
]
EXPECTED_STREAMS = {
    "tcp-retrans.pcap": 8,
    "tcp-port-reuse.pcap": 3,
    "tcp-interleaved.pcap": 5,
    "fmt-pcapng-multi-iface.pcapng": 3,
    "win-rule1-over-upper.pcap": 2,
    "link-null.pcap": 2,
    "link-loop.pcap": 2,
    "link-sll.pcap": 2,
    "link-sll2.pcap": 2,
}


def _sweep_names():
    import os

    from fixtures import make_fixtures

    names = [n for n in make_fixtures.FIXTURES if not n.startswith("bad-") and n != "link-unsupported.pcap"]
    if os.environ.get("PCAPCHECK_TSHARK_ALL") == "1":
        return names
    return [n for n in names if n in KEY_FIXTURES]


@needs_tshark
@pytest.mark.parametrize("name", _sweep_names())
def test_tshark_reads_fixture_cleanly(name):
    rows = tshark_rows(
        FIXDIR / name, "frame.number", "tcp.stream", "_ws.malformed", "tcp.checksum.status", "ip.checksum.status"
    )
    assert rows, name
    if name not in TSHARK_MALFORMED_OK:
        assert not [r for r in rows if r[2]], f"{name}: tshark calls frames malformed"
    assert not [r for r in rows if "0" in r[3].split(";") or "0" in r[4].split(";")], "bad checksum"
    streams = {r[1] for r in rows if r[1]}
    assert len(streams) == EXPECTED_STREAMS.get(name, 1), streams


def _flags_by_frame(name):
    rows = tshark_rows(FIXDIR / name, "frame.number", "tcp.stream", "_ws.expert.message")
    return {int(r[0]): (r[1], r[2]) for r in rows}


# where tshark 4.0.17 raises tcp.analysis expert infos in tcp-retrans.pcap (mirrors README)
RETRANS_FLAGS = {
    5: ["(suspected) retransmission"],
    17: ["Duplicate ACK (#1)"],
    19: ["Duplicate ACK (#2)"],
    21: ["Duplicate ACK (#3)"],
    22: ["fast retransmission"],
    32: ["spurious retransmission"],
    33: ["D-SACK", "Duplicate ACK (#1)"],
    40: ["window update"],
    41: ["Previous segment(s) not captured"],
    42: ["out-of-order"],
    50: ["Previous segment(s) not captured"],
    51: ["ACKed segment that wasn't captured"],
    58: ["ACKed segment that wasn't captured"],
    59: ["Previous segment(s) not captured"],
    60: ["ACKed segment that wasn't captured"],
    65: ["window update"],
    68: ["completely full"],
    69: ["Zero Window segment"],
    70: ["Zero Window Probe"],
    71: ["Zero Window segment", "ACK to a TCP Zero Window Probe"],
    72: ["window update"],
    84: ["keep-alive segment"],
    85: ["ACK to a TCP keep-alive"],
    86: ["keep-alive segment"],
    87: ["ACK to a TCP keep-alive"],
}
ANALYSIS_WORDS = (
    "retransmission",
    "Duplicate ACK",
    "window",
    "Window",
    "not captured",
    "wasn't captured",
    "out-of-order",
    "keep-alive",
)


@needs_tshark
def test_tshark_agrees_with_tcp_retrans_catalog():
    frames = _flags_by_frame("tcp-retrans.pcap")
    flagged = {f for f, (_s, msg) in frames.items() if any(w in msg for w in ANALYSIS_WORDS)}
    assert flagged == set(RETRANS_FLAGS)
    for f, needles in RETRANS_FLAGS.items():
        for needle in needles:
            assert needle in frames[f][1], (f, needle)
    assert [frames[f][0] for f in (5, 22, 32, 42, 50, 58, 68, 84)] == list("01234567")


@needs_tshark
def test_tshark_agrees_with_incident2_and_port_reuse():
    frames = _flags_by_frame("incident2-oow-kernel-rst.pcap")
    assert "spurious retransmission" in frames[51][1]
    assert "Connection reset" in frames[52][1] and len(frames) == 52
    rst = tshark_rows(
        FIXDIR / "incident2-oow-kernel-rst.pcap",
        "frame.number",
        "tcp.flags",
        "tcp.seq_raw",
        "ip.id",
        "ip.ttl",
        "tcp.window_size_value",
        "tcp.hdr_len",
    )[-1]
    late = tshark_rows(FIXDIR / "incident2-oow-kernel-rst.pcap", "tcp.ack_raw")[50]
    assert rst[1:] == ["0x0004", late[0], "0x0000", "64", "0", "20"]
    reuse = _flags_by_frame("tcp-port-reuse.pcap")
    assert [f for f, (_s, m) in reuse.items() if "same ports" in m] == [10, 17]


@needs_tshark
@pytest.mark.parametrize(
    "name,message",
    [
        ("bad-truncated-record.pcap", "cut short in the middle of a packet"),
        ("bad-truncated-header.pcap", "cut short in the middle of a packet"),
        ("bad-caplen-huge.pcap", "bigger than maximum"),
        ("bad-pcapng-block-length.pcapng", "don't match"),
        ("bad-pcapng-block-huge.pcapng", "too large"),
        ("bad-garbage.bin", "isn't a capture file"),
    ],
)
def test_tshark_rejects_bad_inputs_as_intended(name, message):
    res = subprocess.run([TSHARK, "-r", str(FIXDIR / name)], check=False, capture_output=True, text=True, timeout=60)
    assert message in res.stderr + res.stdout


@needs_tshark
def test_tshark_reads_two_pcapng_sections(tmp_path):
    w = PcapngWriter()
    a = w.add_interface(1, tsresol=9, name="eth0")
    w.add_packet(a, T0 + 7, ether(ipv4("10.0.0.1", "10.0.0.2", b""), ethertype=0x0800))
    w.new_section()
    b = w.add_interface(LINKTYPE_RAW, tsresol=6)
    w.add_packet(b, T0 + 2_000, ipv4("10.0.0.3", "10.0.0.4", b""))
    path = tmp_path / "two.pcapng"
    w.write(path)
    rows = [r.split("\t") for r in tshark(path, "-T", "fields", "-e", "frame.time_epoch", "-e", "ip.src").splitlines()]
    assert rows == [["1700000000.000000007", "10.0.0.1"], ["1700000000.000002000", "10.0.0.3"]]
