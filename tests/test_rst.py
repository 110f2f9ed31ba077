"""tcp.rst, tcp.data-after-rst, tcp.midstream and conversation.end (pcapcheck.analyzers.rst).

Conversations come from the deterministic builder (fixtures/builder.py); its segments are turned
straight into TcpPacket tuples (no capture file, no decoder) and run through the same per-packet
sequence as the pipeline: Wireshark tracker, conntrack window, RstAnalyzer, WindowAnalyzer.
One test per RST origin class and per effect, the three incidents, and the corpus captures whose
RSTs have a known story.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.builder import ACK, FIN, PSH, RST, TcpConversation
from pcapcheck.analyzers.rst import RstAnalyzer
from pcapcheck.analyzers.window import WindowAnalyzer
from pcapcheck.decode import TcpPacket, endpoint_text
from pcapcheck.findings import Finding, Severity
from pcapcheck.tcp.tracker import TcpTracker
from pcapcheck.tcp.window import ACCEPTED, ConntrackWindow

# -- harness ---------------------------------------------------------------------------------------


def _ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def packets(conv: TcpConversation) -> list[tuple[int, TcpPacket]]:
    """(direction, TcpPacket) for every captured segment of the conversation, in capture order."""
    out = []
    v6 = conv.version == 6
    for seg in conv.segments:
        if not seg.frame:
            continue
        d = 0 if seg.direction == "c2s" else 1
        a, b = (conv.c, conv.s) if d == 0 else (conv.s, conv.c)
        out.append((d, TcpPacket(
            seg.frame, seg.ts_ns, _ip(a.ip), _ip(b.ip), a.port, b.port, seg.seq, seg.ack, seg.flags, seg.window,
            seg.options, seg.payload, len(seg.payload), seg.ttl, None if v6 else seg.ip_id, True)))
    return out


@dataclass
class Result:
    findings: list[Finding]
    end: str
    sentence: str
    window: list[Finding] = field(default_factory=list)

    def codes(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    @property
    def rsts(self) -> list[Finding]:
        return self.codes("tcp.rst")

    def rst(self, frame: int) -> Finding:
        return next(f for f in self.rsts if f.frames[0] == frame)


def analyze(conv: TcpConversation, *, findings: tuple[Finding, ...] = (), kernel: str = "6.1+",
            capture_ended: bool = False, midstream: bool | None = None, client_guessed: bool = False) -> Result:
    pk = packets(conv)
    client = endpoint_text(_ip(conv.c.ip), conv.c.port)
    server = endpoint_text(_ip(conv.s.ip), conv.s.port)
    cw = ConntrackWindow()
    tracker = TcpTracker()
    rst = RstAnalyzer(0, client, server)
    wan = WindowAnalyzer(0, kernel=kernel)
    heads = [bytearray(), bytearray()]
    nxt: list[int | None] = [None, None]
    fins: list[int | None] = [None, None]
    for d, p in pk:
        mask = tracker.analyze(d, p)
        j = cw.judge(d, p.seq, p.ack, p.flags, p.window, p.seglen, p.options)
        rst.packet(d, p, mask, j)
        if j is not ACCEPTED:
            wan.judged(d, p, j)
        if p.flags & FIN and fins[d] is None:
            fins[d] = p.frame
        if p.payload and not p.flags & RST:  # in-order bytes only, like the reassembler's head
            start = (p.seq + (1 if p.flags & 0x02 else 0)) & 0xFFFFFFFF
            if nxt[d] is None or start == nxt[d]:
                if len(heads[d]) < 4096:
                    heads[d] += p.payload[: 4096 - len(heads[d])]
                nxt[d] = (start + len(p.payload)) & 0xFFFFFFFF
        elif p.flags & 0x02 and nxt[d] is None:
            nxt[d] = (p.seq + 1) & 0xFFFFFFFF
    wf = wan.finish()
    if midstream is None:
        midstream = not any(p.flags & 0x02 for _, p in pk)
    end, sentence, more = rst.finish(
        findings=list(findings) + wf, heads=(bytes(heads[0]), bytes(heads[1])), fin_frames=(fins[0], fins[1]),
        capture_ended=capture_ended, midstream=midstream, client_guessed=client_guessed, reuse_of=None)
    return Result(wf + more, end, sentence, wf)


def established(**kw) -> TcpConversation:
    conv = TcpConversation(**kw)
    conv.handshake()
    return conv


REQUEST = b"GET /items HTTP/1.1\r\nHost: app\r\n\r\n"
RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"


# -- origin classes ---------------------------------------------------------------------------------


def test_refused_rst_ack_to_syn() -> None:
    conv = TcpConversation(server=("10.0.0.2", 9000))
    syn = conv.syn()
    rst = conv.refuse()
    r = analyze(conv)
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "refused"
    assert f.detail["confidence"] == "high"
    assert f.detail["effect"] == "accepted"
    assert f.detail["trigger_frame"] == syn.frame
    assert f.detail["phase"] == "handshake"
    assert f.detail["sender"] == "server" and f.detail["sender_addr"] == "10.0.0.2:9000"
    assert f.severity == Severity.NOTICE
    assert "connection refused" in f.message
    assert r.end == "rst"
    assert r.sentence == f"refused: the server answered the SYN with RST (frame {rst.frame})"


def test_refused_retried_syn_each_answered() -> None:
    """Windows retries a refused SYN with the same ISN: each RST answers its own SYN."""
    conv = TcpConversation()
    conv.syn()
    first = conv.refuse()
    syn2 = conv.syn(isn=1000)
    second = conv.refuse(syn2)
    r = analyze(conv)
    assert r.rst(second.frame).detail["trigger_frame"] == syn2.frame
    assert r.rst(second.frame).detail["effect"] == "accepted"
    assert "identical" not in " ".join(r.rst(second.frame).detail["evidence"])
    assert r.rst(first.frame).detail["origin"] == "refused"


def test_so_linger_abort_mid_response_is_error() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    conv.ack("s2c")
    conv.send("s2c", RESPONSE_HEAD + b"x" * 3000)
    rst = conv.rst("s2c")
    r = analyze(conv)
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "abort"
    assert f.detail["phase"] == "response"
    assert f.detail["effect"] == "accepted"
    assert f.detail["confidence"] == "high"
    assert f.severity == Severity.ERROR
    assert "seq = the sender's next sequence number (snd_nxt)" in f.detail["evidence"]
    assert any("continues the sender's series" in e for e in f.detail["evidence"])
    assert r.end == "rst"
    assert r.sentence == f"reset by the server (frame {rst.frame}) during the response"


def test_client_abort_mid_response() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    conv.send("s2c", RESPONSE_HEAD + b"x" * 2000)
    rst = conv.rst("c2s")
    f = analyze(conv).rst(rst.frame)
    assert (f.detail["origin"], f.detail["phase"], f.severity) == ("abort", "response", Severity.ERROR)
    assert f.direction == "c2s"


def test_close_with_unread_data_is_abort_unread() -> None:
    conv = established()
    conv.send("c2s", REQUEST)  # delivered, but the server never ACKs it: it never read it either
    rst = conv.rst("s2c")
    f = analyze(conv).rst(rst.frame)
    assert f.detail["origin"] == "abort"
    assert f.detail["abort_kind"] == "unread-data"
    assert f"{len(REQUEST)} unread bytes" in f.message
    assert f.detail["phase"] == "request"


def test_close_with_unread_body_after_early_answer() -> None:
    """413 and close during an upload: the kernel ACKed the body, but the application never read it."""
    conv = established()
    conv.send("c2s", b"POST /up HTTP/1.1\r\nContent-Length: 50000\r\n\r\n" + b"u" * 4000)
    conv.ack("s2c")
    conv.send("s2c", b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n")
    rst = conv.rst("s2c")
    cut = Finding("http.body.truncated", Severity.ERROR, "cut", conversation=0, direction="c2s", frames=(5, rst.frame))
    f = analyze(conv, findings=(cut,)).rst(rst.frame)
    assert f.detail["abort_kind"] == "unread-data" and "TCPAbortOnClose" in f.message
    g = analyze(conv).rst(rst.frame)  # without the HTTP evidence: a plain abort
    assert g.detail["abort_kind"] == "linger"


def test_abort_after_own_fin() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    conv.send("s2c", b"HTTP/1.1 204 No Content\r\n\r\n")
    fin = conv.fin("c2s")
    rst = conv.rst("c2s")
    f = analyze(conv).rst(rst.frame)
    assert f.detail["origin"] == "abort" and f.detail["abort_kind"] == "after-fin"
    assert f"after its FIN (frame {fin.frame})" in f.message
    assert f.detail["phase"] == "after-fin"


def test_closed_socket_keepalive_race() -> None:
    """Server closes an idle keep-alive connection; the client's next request crosses the FIN."""
    conv = established()
    conv.send("c2s", REQUEST)
    conv.send("s2c", b"HTTP/1.1 204 No Content\r\n\r\n")
    conv.ack("c2s")
    conv.wait(5_000_000_000)
    sfin = conv.fin("s2c")
    req = conv.send("c2s", REQUEST)[0]
    rst = conv.kernel_reset("s2c", answering=req)
    r = analyze(conv)
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "closed-socket"
    assert f.detail["trigger_frame"] == req.frame
    assert f.detail["confidence"] == "high"
    assert f.severity == Severity.ERROR  # the client's request was thrown away
    assert f"its FIN: frame {sfin.frame}" in f.message and "close race" in f.message
    assert f.detail["phase"] == "after-fin"


def test_closed_socket_answering_only_a_fin_is_warning() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    conv.send("s2c", b"HTTP/1.1 204 No Content\r\n\r\n")
    conv.fin("s2c")
    cfin = conv.fin("c2s")
    rst = conv.kernel_reset("s2c", answering=cfin)
    f = analyze(conv).rst(rst.frame)
    assert f.detail["origin"] == "closed-socket"
    assert f.severity == Severity.WARNING


def test_no_socket_after_out_of_window_segment_incident2() -> None:
    """The eBay/kube-proxy pattern: a late retransmission below conntrack's lower bound (rule II) escapes NAT,
    reaches a LISTEN socket, and the kernel's passive reset (no ACK, seq = its ACK) kills the connection."""
    conv = established(client=("10.0.0.1", 40000), server=("10.0.0.2", 9000))
    first = conv.send("c2s", b"a" * 1448, segment_size=1448)[0]
    for _ in range(20):  # 20 x 8 KiB, each ACKed: td_end moves far beyond td_maxwin
        conv.send("c2s", b"b" * 8192, segment_size=1448)
        conv.ack("s2c")
    late = conv.retransmit(first)
    rst = conv.kernel_reset("s2c", answering=late)
    r = analyze(conv)
    oow = [f for f in r.window if f.frames[0] == late.frame]
    assert oow and oow[0].detail["rule"] == "II"
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "no-socket"
    assert f.detail["trigger_frame"] == late.frame
    assert f.detail["confidence"] == "high"
    assert f.detail["phase"] == "request"
    assert f.severity == Severity.ERROR
    (rel,) = f.detail["related"]
    assert (rel["code"], rel["frames"]) == ("tcp.out-of-window", [late.frame])
    assert "INVALID" in rel["remedy"] and "be_liberal" in rel["remedy"]
    assert "older than 6.1" in f.message
    assert (f"RST from the server 10.0.0.2:9000 (frame {rst.frame}) without ACK, seq = the ACK of frame "
            f"{late.frame}: a kernel reset from a socket with no matching connection (LISTEN or closed), i.e. frame "
            f"{late.frame} never reached the connection's socket") in f.message
    assert "rule II" in f.message and f"{oow[0].detail['bytes_over']} bytes" in f.message
    assert "not DNATed" in f.message and "on kernels < 6.1 would mark it INVALID" in f.message
    assert late.frame in f.frames
    ev = f.detail["evidence"]
    assert "no ACK flag" in ev and "window 0" in ev
    assert any(e.startswith("IP ID 0 while the sender's other packets count") for e in ev)
    assert any(e.startswith("no TCP options, although") for e in ev)


def test_no_socket_link_needs_the_matching_ack() -> None:
    """A passive RST whose seq matches no out-of-window segment gets no window link."""
    conv = established()
    conv.send("c2s", REQUEST)
    conv.ack("s2c")
    data = conv.send("c2s", b"more")[0]
    rst = conv.kernel_reset("s2c", answering=data)
    f = analyze(conv).rst(rst.frame)
    assert f.detail["origin"] == "no-socket"
    assert "related" not in f.detail and "NAT" not in f.message


def test_node_ttl_plus_one_is_not_injection() -> None:
    """The node's stack answering for a pod address has TTL +1: still a kernel reset, not a forgery."""
    conv = established(server_ttl=63)
    data = conv.send("c2s", REQUEST)[0]
    rst = conv.kernel_reset("s2c", answering=data, ttl=64)
    f = analyze(conv).rst(rst.frame)
    assert f.detail["origin"] == "no-socket"
    assert any("one routing hop" in e for e in f.detail["evidence"])


def test_injected_rst_with_foreign_ttl() -> None:
    conv = established(server_ttl=52)
    conv.send("c2s", REQUEST)
    conv.ack("s2c")
    rst = conv.rst("s2c", ttl=120, ip_id=0x4242, count_ip_id=False)
    more = conv.send("s2c", RESPONSE_HEAD)[0]  # the real server never reset: it answers
    r = analyze(conv)
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "injected"
    assert f.severity == Severity.ERROR
    assert f.detail["confidence"] == "high"
    assert "TTL 120" in f.message and "kept talking" in f.message
    dar = r.codes("tcp.data-after-rst")
    assert dar and dar[0].frames[:2] == (rst.frame, more.frame)
    assert dar[0].detail["who"] == "sender" and "forged" in dar[0].message


def test_injected_refusal_before_the_real_syn_ack() -> None:
    """zeek rst-inject-rae shape: a RST|ACK 'refusal' (ack = ISN, other TTL), then the real SYN-ACK."""
    conv = TcpConversation(server_ttl=49)
    syn = conv.syn()
    forged = conv.segment("s2c", seq=0, ack=syn.seq, flags=RST | ACK, window=16384, options=b"", ttl=46)
    conv.syn_ack()
    conv.ack("c2s")
    r = analyze(conv)
    f = r.rst(forged.frame)
    assert f.detail["origin"] == "injected"
    assert f.detail["effect"] == "ignored"  # the client went on with the handshake
    assert "SYN-ACK" in f.message
    assert r.end != "rst"


def test_passive_reset_rejecting_a_stale_ack_during_handshake() -> None:
    """A SYN answered by an ACK of an older connection: the client resets it (RFC 9293 3.10.7.3) and retries."""
    conv = TcpConversation()
    conv.syn()
    stale = conv.segment("s2c", seq=777_000, ack=123_456, flags=ACK, options=b"")
    rst = conv.kernel_reset("c2s", answering=stale)
    conv.wait(3_000_000_000)
    conv.syn(isn=1000)
    conv.syn_ack()
    conv.ack("c2s")
    conv.send("c2s", REQUEST)
    conv.send("s2c", b"HTTP/1.1 204 No Content\r\n\r\n")
    conv.close()
    r = analyze(conv)
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "rejected"
    assert f.detail["effect"] == "accepted"
    assert "older connection" in f.message and "retried its SYN" in f.message
    assert f.severity == Severity.WARNING
    assert r.end == "fin"  # the reset hit the old incarnation, not this conversation


def test_rst_from_sender_with_md5_option_is_injected_and_ignored() -> None:
    """Suricata security-4710: a RST with an MD5 option the connection never used; the sender keeps talking."""
    conv = established()
    md5 = bytes([19, 18]) + bytes(16) + b"\x00\x00"
    rst = conv.rst("c2s", options=md5)
    conv.send("c2s", REQUEST)
    conv.ack("s2c")
    r = analyze(conv)
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "injected"
    assert f.detail["effect"] == "ignored"
    assert "MD5 signature" in f.message


# -- effects ---------------------------------------------------------------------------------------------


def test_challenged_rst_then_challenge_ack_then_real_reset() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    conv.ack("s2c")
    inexact = conv.rst("c2s", seq=conv.next_seq("c2s") + 5000)
    chal = conv.ack("s2c")
    answer = conv.rst("c2s", seq=chal.ack, ack_flag=False)
    r = analyze(conv)
    f = r.rst(inexact.frame)
    assert f.detail["effect"] == "challenged"
    assert f.detail["challenge_ack_frame"] == chal.frame
    assert f.detail["answer_rst_frame"] == answer.frame
    assert chal.frame in f.frames
    assert "challenge ACK" in f.message
    assert r.rst(answer.frame).detail["effect"] == "accepted"
    assert r.end == "rst" and f"frame {answer.frame}" in r.sentence


def test_ignored_out_of_window_rst() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    conv.ack("s2c")
    far = conv.rst("c2s", seq=conv.next_seq("c2s") + 50_000_000)
    conv.send("s2c", b"HTTP/1.1 204 No Content\r\n\r\n")
    conv.close()
    r = analyze(conv)
    f = r.rst(far.frame)
    assert f.detail["effect"] == "ignored-out-of-window"
    assert f.severity == Severity.ERROR  # ... but a seq matching nothing the sender sent is an injection attempt
    assert f.detail["origin"] == "injected"
    assert "it had no effect" in f.message
    assert r.end == "fin"
    assert "had no effect" in r.sentence


def test_effect_unknown_midstream_lone_rst() -> None:
    conv = TcpConversation()
    rst = conv.segment("s2c", seq=5, ack=0, flags=RST, window=0, options=b"")
    r = analyze(conv)
    f = r.rst(rst.frame)
    assert (f.detail["origin"], f.detail["effect"]) == ("unknown", "unknown")
    assert f.detail["phase"] == "idle"


def test_rst_without_ack_in_syn_sent_is_ignored() -> None:
    conv = TcpConversation()
    conv.syn()
    bad = conv.segment("s2c", seq=2222, ack=0, flags=RST, window=8192, options=b"")
    f = analyze(conv).rst(bad.frame)
    assert f.detail["origin"] == "refused" and f.detail["confidence"] == "low"
    assert f.detail["effect"] == "ignored" and "SYN-SENT" in f.detail["effect_reason"]


def test_second_rst_after_accepted_one_is_ignored() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    a = conv.rst("s2c")
    data = conv.segment("c2s", flags=PSH | ACK, payload=b"late", advance=True)
    b = conv.kernel_reset("s2c", answering=data)
    r = analyze(conv)
    assert r.rst(a.frame).detail["effect"] == "accepted"
    fb = r.rst(b.frame)
    assert fb.detail["effect"] == "ignored" and fb.detail["origin"] == "no-socket"
    assert f"already reset the connection (frame {a.frame})" in fb.message
    assert fb.severity == Severity.WARNING  # the first reset is the one that mattered


def test_rst_reason_text() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    conv.send("s2c", b"HTTP/1.1 200 OK\r\n")
    rst = conv.rst("c2s", payload=b"Access Denied\x00")
    f = analyze(conv).rst(rst.frame)
    assert f.detail["reason_text"] == "Access Denied\\x00"
    assert 'its payload reads "Access Denied' in f.message


def test_peer_data_long_after_exact_rst_means_it_never_arrived() -> None:
    conv = established()  # handshake RTT: 2 ms of builder time
    conv.send("c2s", REQUEST)
    conv.ack("s2c")
    rst = conv.rst("s2c")
    conv.wait(2_000_000_000)
    later = conv.send("c2s", b"more")[0]
    r = analyze(conv)
    f = r.rst(rst.frame)
    assert f.detail["effect"] == "ignored" and "never reached it" in f.detail["effect_reason"]
    dar = r.codes("tcp.data-after-rst")
    assert dar and dar[0].detail["who"] == "receiver" and later.frame in dar[0].frames


# -- links -------------------------------------------------------------------------------------------------


def _te_duplicate(frame: int) -> Finding:
    return Finding("http.te.duplicate", Severity.ERROR,
                   f"duplicate Transfer-Encoding header lines (`chunked` at frame {frame}, `Chunked` at frame "
                   f"{frame})", conversation=0, direction="s2c", frames=(frame,))


def test_incident1_proxy_rst_after_duplicate_te() -> None:
    conv = established(client=("127.0.0.6", 51000), server=("10.1.2.3", 8080))
    conv.send("c2s", b"POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\nhi")
    conv.ack("s2c")
    resp = conv.send("s2c", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: Chunked\r\n\r\n")[0]
    conv.ack("c2s")
    rst = conv.rst("c2s")
    r = analyze(conv, findings=(_te_duplicate(resp.frame),))
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "abort" and f.detail["phase"] == "response"
    assert f.severity == Severity.ERROR
    assert (f"consistent with a proxy rejecting a malformed response (see finding http.te.duplicate, frame "
            f"{resp.frame})") in f.message
    assert f.detail["related"] == [{"code": "http.te.duplicate", "frames": [resp.frame]}]
    assert resp.frame in f.frames


def test_no_http_link_for_truncation_or_older_faults() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    resp = conv.send("s2c", RESPONSE_HEAD)[0]
    conv.send("c2s", REQUEST)  # the client went on after the fault: the RST is not "right after" it
    rst = conv.rst("c2s")
    trunc = Finding("http.body.truncated", Severity.ERROR, "cut", conversation=0, direction="s2c",
                    frames=(resp.frame,))
    f = analyze(conv, findings=(_te_duplicate(resp.frame), trunc)).rst(rst.frame)
    assert "related" not in f.detail and "consistent with" not in f.message


# -- data after RST, midstream, end ---------------------------------------------------------------------


def test_data_after_no_socket_rst_points_at_nat_bypass() -> None:
    conv = established()
    data = conv.send("c2s", REQUEST)[0]
    rst = conv.kernel_reset("s2c", answering=data)
    conv.send("s2c", b"HTTP/1.1 204 No Content\r\n\r\n")
    r = analyze(conv)
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "no-socket" and "NAT/redirect bypass" in f.message
    dar = r.codes("tcp.data-after-rst")
    assert dar and "another socket" in dar[0].message


def test_midstream_notice() -> None:
    conv = TcpConversation(client=("10.0.0.1", 50000), server=("10.0.0.2", 80))
    conv.c.nxt = conv.c.rcv_nxt = 1001
    conv.s.nxt = conv.s.rcv_nxt = 5001
    conv.send("c2s", REQUEST)
    conv.send("s2c", b"HTTP/1.1 204 No Content\r\n\r\n")
    r = analyze(conv, client_guessed=True, capture_ended=True)
    mid = r.codes("tcp.midstream")
    assert len(mid) == 1 and mid[0].severity == Severity.NOTICE
    assert mid[0].detail["client_guessed"] is True and "guessed" in mid[0].message
    assert r.end == "capture-ended"
    assert r.sentence == "the capture ended while the conversation was open"


@pytest.mark.parametrize("case,end,sentence", [
    ("fin", "fin", "closed normally: the client sent FIN (frame 6), the server FIN (frame 7)"),
    ("syn-only", "incomplete", "incomplete: only a SYN was seen (frame 1), never answered"),
    ("no-ack", "incomplete", "incomplete: the handshake never completed"),
    ("half", "capture-ended", "the capture ended while the conversation was open (half-closed: client FIN at frame 6)"),
    ("idle", "incomplete", "incomplete: neither FIN nor RST was seen before the conversation went idle"),
])
def test_conversation_end_sentences(case: str, end: str, sentence: str) -> None:
    conv = TcpConversation()
    conv.syn()
    if case != "syn-only":
        conv.syn_ack()
    if case in ("fin", "half", "idle"):
        conv.ack("c2s")
        conv.send("c2s", REQUEST)
        conv.send("s2c", b"HTTP/1.1 204 No Content\r\n\r\n")
    if case == "fin":
        conv.fin("c2s")
        conv.fin("s2c")
        conv.ack("c2s")
    if case == "half":
        conv.fin("c2s")
    r = analyze(conv, capture_ended=case in ("half", "syn-only"))
    assert (r.end, r.sentence) == (end, sentence)
    ce = r.codes("conversation.end")
    assert len(ce) == 1 and ce[0].severity == Severity.INFO and ce[0].detail["end"] == end


def test_every_rst_frame_gets_exactly_one_finding() -> None:
    conv = established()
    conv.send("c2s", REQUEST)
    frames = [conv.rst("s2c").frame for _ in range(3)]
    r = analyze(conv)
    assert sorted(f.frames[0] for f in r.rsts) == frames
    for f in r.rsts:
        assert set(f.detail) >= {"sender", "sender_addr", "phase", "origin", "effect", "trigger_frame",
                                 "confidence", "evidence"}
        assert f.rule


def test_ipv6_conversation() -> None:
    conv = established(client=("2001:db8::1", 40000), server=("2001:db8::2", 443))
    data = conv.send("c2s", REQUEST)[0]
    rst = conv.kernel_reset("s2c", answering=data)
    f = analyze(conv).rst(rst.frame)
    assert f.detail["origin"] == "no-socket" and f.detail["sender_addr"] == "[2001:db8::2]:443"
    assert f.detail["ip_id"] is None


def test_sequence_numbers_wrap() -> None:
    conv = TcpConversation(client_isn=0xFFFFFF00, server_isn=0xFFFFFFF0)
    conv.handshake()
    conv.send("c2s", REQUEST * 10)
    conv.send("s2c", RESPONSE_HEAD + b"y" * 500)
    rst = conv.rst("s2c")
    f = analyze(conv).rst(rst.frame)
    assert f.detail["origin"] == "abort" and f.detail["effect"] == "accepted"


def test_per_packet_state_does_not_grow() -> None:
    """packet() for plain data segments keeps a bounded history: what it holds after 300 segments each way is what
    it holds after 3,000 (its cost per packet is measured by make bench-micro, tests/bench, not asserted here)."""
    from pcapcheck.analyzers.rst import HISTORY

    conv = established()
    for _ in range(3000):
        conv.send("c2s", b"z" * 1000, segment_size=1000)
        conv.ack("s2c")
    pk = packets(conv)
    a = RstAnalyzer(0, "10.0.0.1:40000", "10.0.0.2:80")

    def held() -> list[tuple[str, int]]:
        return sorted((f"{i}.{k}", len(v)) for i, side in enumerate(a.sides) for k in dir(side)
                      if not k.startswith("__") and isinstance(v := getattr(side, k, None), (list, dict, set, deque)))

    for d, p in pk[:600]:
        a.packet(d, p, 0, ACCEPTED)
    once = held()
    for d, p in pk[600:]:
        a.packet(d, p, 0, ACCEPTED)
    assert len(pk) > 6000 and held() == once
    assert [len(s.recent) for s in a.sides] == [HISTORY, HISTORY] and a.sides[0].data_pkts == 3000


@st.composite
def _random_packets(draw):
    n = draw(st.integers(1, 40))
    base = draw(st.integers(0, 2**32 - 1))
    out = []
    for i in range(n):
        d = draw(st.integers(0, 1))
        payload = draw(st.binary(max_size=8))
        out.append((d, TcpPacket(
            i + 1, i * 1_000_000, b"\x0a\x00\x00\x01" if d == 0 else b"\x0a\x00\x00\x02",
            b"\x0a\x00\x00\x02" if d == 0 else b"\x0a\x00\x00\x01", 40000 if d == 0 else 80,
            80 if d == 0 else 40000, (base + draw(st.integers(-3000, 3000))) & 0xFFFFFFFF,
            (base + draw(st.integers(-3000, 3000))) & 0xFFFFFFFF, draw(st.integers(0, 255)),
            draw(st.integers(0, 0xFFFF)), draw(st.sampled_from([b"", b"\x01\x01\x08\x0a" + bytes(8),
                                                                  bytes([19, 18]) + bytes(16), b"\x05\x03"])),
            payload, len(payload) + draw(st.integers(0, 3)), draw(st.integers(1, 255)),
            draw(st.one_of(st.none(), st.integers(0, 0xFFFF))), True)))
    return out


@given(_random_packets(), st.binary(max_size=64), st.binary(max_size=64), st.booleans())
def test_random_input_gives_findings_never_an_exception(pk, head_c, head_s, ended) -> None:
    a = RstAnalyzer(7, "10.0.0.1:40000", "10.0.0.2:80")
    for d, p in pk:
        a.packet(d, p, 0, ACCEPTED)
    end, sentence, out = a.finish(findings=[], heads=(head_c, head_s), fin_frames=(None, None), capture_ended=ended,
                                  midstream=False, client_guessed=False, reuse_of=None)
    assert end in ("fin", "rst", "incomplete", "capture-ended") and sentence
    assert sum(f.code == "conversation.end" for f in out) == 1
    rst_frames = [p.frame for _, p in pk if p.flags & RST]
    assert sorted(f.frames[0] for f in out if f.code == "tcp.rst") == rst_frames
    for f in out:
        assert f.conversation == 7 and f.message and isinstance(f.to_json(), dict)


# -- the shared corpus ---------------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.results = []

    def conversation(self, result) -> None:
        self.results.append(result)


def _corpus_rsts(path) -> dict[int, Finding]:
    from pcapcheck.config import Options
    from pcapcheck.pipeline import Analysis

    sink = _Sink()
    Analysis(Options(), sink).run([str(path)])
    return {f.frames[0]: f for r in sink.results for f in r.findings if f.code == "tcp.rst"}


@pytest.mark.slow
@pytest.mark.parametrize("capture,frame,origin,effect", [
    ("suricata-verify/security-4710-01/input.pcap", 4, "injected", "ignored"),
    ("suricata-verify/security-4710-02/input.pcap", 7, "injected", "ignored"),
    ("zeek/tcp/rst-inject-rae.pcap", 2, "injected", "ignored"),
    ("zeek/tcp/rst-inject-rae.pcap", 7, "abort", "accepted"),
    ("zeek/tcp/rst-inject-rae.pcap", 9, "no-socket", "ignored"),
    ("suricata-verify/bug-3286-02-linux-evasion/with_evasion_linux.pcap", 2, "injected", "ignored"),
    ("suricata-verify/bug-3286-02-linux-evasion/with_evasion_linux.pcap", 4, "rejected", "ignored"),
    ("chrissanders-packets/tcp_refuseconnection.pcapng", 2, "refused", "accepted"),
    ("pcapplusplus/one_tcp_rst.pcap", 2, "refused", "accepted"),
    ("zeek/tcp/qi_internet_SYNACK_curl_jsonip.pcap", 10, "closed-socket", "accepted"),
    ("zeek/tcp/ctu-64702-888.pcap", 15, "closed-socket", "accepted"),
    ("suricata-verify/tls/tls-subjectaltname/input.pcap", 14, "rejected", "accepted"),
    ("zeek/http/206_example_b.pcap", 1302, "abort", "accepted"),
    ("arkime/long-session.pcap", 5, "no-socket", "accepted"),
    ("tcpdump/tcp_rst_data.pcap", 1, "abort", "unknown"),
    ("zeek/tcp/retransmit-fast009.pcap", 39, "abort", "accepted"),  # IP ID after 60 s: a host-wide counter
    ("suricata-verify/output-eve-anomaly-02/input.pcap", 10, "abort", "accepted"),  # TSval 0 is not forgery
    ("suricata-verify/tcp-fastopen-11-reject-syn-data/tlpw-tcp-tfo-data-on-syn-nack.pcap", 27, "closed-socket",
     "accepted"),
    ("suricata-verify/tcp-fastopen-11-reject-syn-data/tlpw-tcp-tfo-data-on-syn-nack.pcap", 28, "closed-socket",
     "ignored"),  # the server had reset itself (frame 27)
    ("chrissanders-packets/nowebaccess2.pcapng", 8, "refused", "accepted"),  # answers its own retried SYN
    ("suricata-verify/tcp-split-handshake-01-4whs/split-handshake-4whs.pcap", 7, "no-socket", "accepted"),
])
def test_corpus_rst_stories(corpus, capture: str, frame: int, origin: str, effect: str) -> None:
    f = _corpus_rsts(corpus / capture)[frame]
    assert (f.detail["origin"], f.detail["effect"]) == (origin, effect), f.message


@pytest.mark.slow
def test_corpus_reason_text_and_timeout(corpus) -> None:
    f = _corpus_rsts(corpus / "tcpdump/tcp_rst_data.pcap")[1]
    assert f.detail["reason_text"].startswith("BIG-IP: [0x11c5672:3045] {peer} TCP RST from remote system")
    g = _corpus_rsts(corpus / "zeek/http/206_example_b.pcap")[1302]
    assert g.detail["abort_kind"] == "timeout"


# -- the committed fixtures (fixtures/make_fixtures.py), through the whole pipeline ---------------------------


@pytest.mark.parametrize("name,frame,origin,effect,phase,trigger", [
    ("incident1-te-duplicate.pcap", 10, "abort", "accepted", "response", None),
    ("incident2-oow-kernel-rst.pcap", 52, "no-socket", "accepted", "request", 51),
    ("incident3-plaintext-to-tls.pcap", 9, "closed-socket", "accepted", "after-fin", 8),
    ("rst-refused.pcap", 2, "refused", "accepted", "handshake", 1),
    ("rst-no-socket.pcap", 8, "no-socket", "accepted", "request", 7),
    ("rst-closed-socket.pcap", 10, "closed-socket", "accepted", "after-fin", 9),
    ("rst-abort-linger0.pcap", 10, "abort", "accepted", "response", None),
    ("rst-close-unread.pcap", 9, "abort", "accepted", None, None),
    ("rst-injected-ttl.pcap", 6, "injected", "accepted", "request", None),
    ("rst-injected-ttl.pcap", 8, "no-socket", "ignored", None, 7),
    ("rst-challenge-ack.pcap", 8, "abort", "challenged", "request", None),
    ("rst-challenge-ack.pcap", 10, "no-socket", "accepted", "request", 9),
    ("rst-out-of-window.pcap", 6, "injected", "ignored-out-of-window", "response", None),
    ("rst-with-reason-text.pcap", 5, "abort", "accepted", "request", None),
])
def test_fixture_rst_stories(name, frame, origin, effect, phase, trigger) -> None:
    from tests.conftest import fixture_path

    try:
        path = fixture_path(name)
    except FileNotFoundError:
        pytest.skip(f"{name} not generated")
    f = _corpus_rsts(path)[frame]
    assert (f.detail["origin"], f.detail["effect"]) == (origin, effect), f.message
    if phase is not None:
        assert f.detail["phase"] == phase
    if trigger is not None:
        assert f.detail["trigger_frame"] == trigger


def test_fixture_incident_links() -> None:
    from tests.conftest import fixture_path

    try:
        one = _corpus_rsts(fixture_path("incident1-te-duplicate.pcap"))[10]
        two = _corpus_rsts(fixture_path("incident2-oow-kernel-rst.pcap"))[52]
        three = _corpus_rsts(fixture_path("incident3-plaintext-to-tls.pcap"))[9]
        unread = _corpus_rsts(fixture_path("rst-close-unread.pcap"))[9]
        reason = _corpus_rsts(fixture_path("rst-with-reason-text.pcap"))[5]
    except FileNotFoundError:
        pytest.skip("fixtures not generated")
    assert one.detail["related"][0]["code"] == "http.te.duplicate" and "proxy rejecting a malformed response" in \
        one.message
    assert two.detail["related"][0]["code"] == "tcp.out-of-window" and "escaping NAT" in two.message
    assert three.detail["related"][0]["code"] == "proto.plaintext-to-tls"
    assert unread.detail["abort_kind"] == "unread-data"
    assert reason.detail["reason_text"] == "Connection rejected by policy: host not allowed"
