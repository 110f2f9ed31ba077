"""Hand-built ConversationResults for the report tests (JSON, HTML, gold files, browser).

They mirror the incidents in ../shared/INCIDENTS.md closely enough to judge the pages, and one carries
attacker-controlled bytes everywhere a capture can put them. Everything is fixed: same objects every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pcapcheck.findings import C2S, S2C, Finding, Severity
from pcapcheck.model import ConversationResult, Handshake, InputSummary, PacketRow

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
T0 = 1_700_000_000_123_456_789  # 2023-11-14 22:13:20.123456789 UTC

# Executes if any of it reaches the page unescaped: sets the title, adds an element, marks <body>.
XSS = (b"<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script>"
       b"\"><img src=x onerror=\"document.body.appendChild(document.createElement('pwned'))\">")
XSS_TEXT = XSS.decode("ascii")


def row(frame: int, ms: float, d: int, flags: int, seq: int, ack: int, length: int = 0, window: int = 65535,
        analysis: tuple[str, ...] = (), verdict: str = "", wnd_edge: int = -1) -> PacketRow:
    return PacketRow(frame, T0 + int(ms * 1_000_000), d, flags, seq, ack, length, window, analysis, verdict, wnd_edge)


@dataclass(frozen=True)
class FakeExchange:
    """Stands in for pcapcheck.analyzers.http1's exchange: only ``to_json()`` is used by the report."""

    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.data


PEERS_TE_DUP = {
    "envoy": "rejects: 502, flag UPE, reset reason 'protocol error' (older: 503 UC)",
    "nginx": "rejects: 502 upstream sent duplicate header line",
    "h11": "rejects: multiple Transfer-Encoding headers",
    "llhttp": "accepts (client): lines combined, chunked is last",
    "curl": "accepts (current curl: ignoring duplicate 'chunked' decoder)",
}

REQUEST1 = (b"POST /v1/orders HTTP/1.1\r\nHost: orders.default.svc.cluster.local:8080\r\n"
            b"Content-Type: application/json\r\nContent-Length: 29\r\nx-request-id: 5f0c2a1e-77b1\r\n\r\n"
            b'{"item":"book","qty":1,"x":0}')
RESPONSE1 = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
             b"Transfer-Encoding: Chunked\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n"
             b'17\r\n{"status":"ok","id":42}\r\n0\r\n\r\n')


def _message(raw: bytes, direction: str, frame: int, start: dict[str, Any], framing: dict[str, Any],
             body: bytes | None = None, chunks: int = 0) -> dict[str, Any]:
    """A message as pcapcheck.http.model.HttpMessage.to_json() gives it (bytes as escaped text)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    body = rest if body is None else body
    headers, off = [], head.index(b"\r\n") + 2
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers.append({"name": escape(name), "value": escape(value.strip()), "frame": frame, "offset": off})
        off += len(line) + 2
    return {"direction": direction, "index": 0, "version": "HTTP/1.1", **start, "headers": headers,
            "raw_head": escape(head + b"\r\n\r\n"), "raw_head_truncated": False, "framing": framing,
            "body_length": len(body), "wire_body_length": len(rest), "body_missing": 0,
            "body_excerpt": escape(body), "body_excerpt_truncated": False, "trailers": [], "chunks": chunks,
            "first_frame": frame, "last_frame": frame, "offset": 0, "end_offset": len(raw), "state": "complete",
            "end_reason": "", "after_loss": False, "findings": [], "elided": False}


def escape(value: bytes) -> str:
    """As pcapcheck.http.model.escape: latin-1, then unicode_escape."""
    return value.decode("latin-1").encode("unicode_escape").decode("ascii")


def incident1() -> ConversationResult:
    """Envoy sidecar -> app on loopback: a 200 with two Transfer-Encoding lines, then the proxy's RST."""
    te1 = RESPONSE1.index(b"Transfer-Encoding: chunked")
    te2 = RESPONSE1.index(b"Transfer-Encoding: Chunked")
    line2_end = RESPONSE1.index(b"\r\n", te2)
    q, r = len(REQUEST1), len(RESPONSE1)
    timeline = (
        row(1, 0.0, 0, SYN, 0, 0, window=65495),
        row(2, 0.021, 1, SYN | ACK, 0, 1, window=65483),
        row(3, 0.034, 0, ACK, 1, 1, window=65536, wnd_edge=65484),
        row(4, 0.101, 0, PSH | ACK, 1, 1, q, 65536, wnd_edge=65484),
        row(5, 0.112, 1, ACK, 1, q + 1, window=65536, wnd_edge=65537),
        row(6, 3.402, 1, PSH | ACK, 1, q + 1, r, 65536, wnd_edge=65537),
        row(7, 3.405, 0, ACK, q + 1, r + 1, window=65536, wnd_edge=65537),
        row(8, 3.517, 0, RST | ACK, q + 1, r + 1, window=65536, wnd_edge=65537),
    )
    excerpt_offset = max(0, te1 - 32)
    excerpt = RESPONSE1[excerpt_offset:line2_end + 2 + 16]
    findings = (
        Finding(
            "http.te.duplicate", Severity.ERROR,
            "duplicate Transfer-Encoding header lines ('chunked' at frame 6, 'Chunked' at frame 6): equivalent to "
            "'chunked, chunked'; strict proxies (Envoy) reject this response",
            conversation=0, direction=S2C, frames=(6,),
            detail={"offset": te1, "length": line2_end - te1, "excerpt": excerpt, "excerpt_offset": excerpt_offset,
                    "combined": "chunked, Chunked",
                    "lines": [{"frame": 6, "offset": te1, "raw": b"Transfer-Encoding: chunked"},
                              {"frame": 6, "offset": te2, "raw": b"Transfer-Encoding: Chunked"}],
                    "peers": PEERS_TE_DUP},
            rule="RFC 9112 6.1; RFC 9110 5.3 (repeated lines are one comma-joined value)",
        ),
        Finding(
            "tcp.rst", Severity.WARNING,
            "RST from the client (the proxy side) 115 ms after the response headers: consistent with a proxy "
            "rejecting a malformed response (see http.te.duplicate)",
            conversation=0, direction=C2S, frames=(8, 6),
            detail={"sender": "client", "origin": "abort", "confidence": "high", "effect": "accepted",
                    "trigger_frame": 6, "phase": "response",
                    "evidence": ["RST|ACK with seq = the sender's next sequence number (active reset, "
                                 "tcp_send_active_reset)", "window 65536 and the connection's options: the "
                                 "connection's own socket", "the response before it has a framing error"]},
            rule="Linux tcp_send_active_reset (SO_LINGER 0 / proxy abort)",
        ),
        Finding("conversation.end", Severity.INFO, "reset by the client (the proxy) right after the response",
                conversation=0, frames=(8,), detail={"end": "rst", "by": "client"}),
    )
    exchange = FakeExchange({
        "index": 0, "pairing": "in-order", "tunnel": False, "findings": [0], "interim": [],
        "request": _message(REQUEST1, "c2s", 4, {"method": "POST", "target": "/v1/orders"},
                            {"type": "content-length", "length": 29}),
        "response": _message(RESPONSE1, "s2c", 6, {"status": 200, "reason": "OK"}, {"type": "chunked"},
                             body=b'{"status":"ok","id":42}', chunks=1),
    })
    return ConversationResult(
        id=0, input_index=0, client="127.0.0.6:41234", server="127.0.0.1:8080", client_guessed=False, ipv6=False,
        first_frame=1, last_frame=8, start_ns=timeline[0].ts, end_ns=timeline[-1].ts, packets=(5, 3),
        bytes=(q, r), handshake=Handshake(1, 2, 3, {"window": 65495, "mss": 65495, "wscale": 7, "sack_perm": True,
                                                    "timestamps": True},
                                          {"window": 65483, "mss": 65495, "wscale": 7, "sack_perm": True,
                                           "timestamps": True}, 21_000),
        end="rst", end_sentence="The client (the proxy side) reset the connection 115 ms after the server's "
                                "response (frame 8, RST|ACK: an application abort).",
        findings=findings, timeline=timeline, timeline_total=len(timeline), timeline_capped=False,
        http=(exchange,), stream_heads=(REQUEST1, RESPONSE1), isn=(1000, 2000),
    )


def incident2(segments: int = 240, capped: bool = False) -> ConversationResult:
    """Large upload through the gateway: one segment outside conntrack's window, then a kernel RST (no ACK)."""
    mss = 1448
    rows = [row(1, 0.0, 0, SYN, 0, 0, window=64240),
            row(2, 0.2, 1, SYN | ACK, 0, 1, window=65160),
            row(3, 0.4, 0, ACK, 1, 1, window=502 * 128, wnd_edge=65161)]
    frame, t, seq, acked = 4, 1.0, 1, 1
    win = 256 * 1024
    oow_frame = None
    for i in range(segments):
        analysis: tuple[str, ...] = ()
        s = seq
        if i and i % 37 == 0:  # a retransmission of the previous segment
            s = seq - mss
            analysis = ("tcp.retransmission",)
        verdict = ""
        if i == segments - 5:
            verdict, oow_frame = "INVALID", frame
            s = acked + win + 20 * mss  # beyond the receiver's window (conntrack bound I)
        rows.append(row(frame, t, 0, PSH | ACK if i % 4 == 3 else ACK, s, 1, mss, 502 * 128, analysis, verdict,
                        acked + win))
        if not analysis and not verdict:
            seq += mss
        frame += 1
        t += 0.35
        if i % 2 == 1:
            acked = seq
            rows.append(row(frame, t + 0.12, 1, ACK, 1, acked, window=win, wnd_edge=1))
            frame += 1
    rst_frame = frame
    rows.append(row(rst_frame, t + 0.05, 1, RST, 1 + 0, 0, window=0))
    findings = (
        Finding("tcp.out-of-window", Severity.ERROR,
                f"frame {oow_frame} is outside the receiver's window by conntrack's rules (bound I: seq + len "
                f"beyond td_maxend by {20 * mss + mss} bytes); conntrack would mark it INVALID, so iptables would not "
                "NAT it",
                conversation=1, direction=C2S, frames=(oow_frame,),
                detail={"rule": "I", "verdict": "INVALID", "kernel": ">=6.1", "bytes_over": 21 * mss,
                        "log": "nf_ct_tcp: SEQ is over the upper bound (over the window of the receiver)"},
                rule="Linux nf_conntrack_proto_tcp.c tcp_in_window()"),
        Finding("tcp.rst", Severity.ERROR,
                f"frame {rst_frame} is a RST without ACK whose sequence number equals frame {oow_frame}'s ACK: the "
                "signature of a kernel reset from a socket with no matching connection (LISTEN or closed), i.e. the "
                "packet was not delivered to the connection's socket",
                conversation=1, direction=S2C, frames=(rst_frame, oow_frame),
                detail={"sender": "server", "origin": "no-socket", "effect": "accepted", "trigger_frame": oow_frame,
                        "phase": "request", "confidence": "high",
                        "evidence": ["flags R only, window 0, no options, IP ID 0", f"seq = ACK of the segment it "
                                     f"answers (frame {oow_frame})"]},
                rule="Linux tcp_v4_send_reset"),
        Finding("tcp.retransmission", Severity.NOTICE,
                "6 retransmission(s): the sender sent bytes again that it had sent before (first: frame 41)",
                conversation=1, frames=tuple(r.frame for r in rows if r.analysis),
                detail={"count": 6, "frames_listed": 6}, rule="Wireshark tcp.analysis (packet-tcp.c)"),
    )
    total = len(rows)
    timeline = tuple(rows)
    if capped:
        timeline = tuple(rows[:40] + [r for r in rows[40:-40] if r.verdict or r.analysis] + rows[-40:])
    return ConversationResult(
        id=1, input_index=0, client="10.0.0.1:52814", server="10.0.0.2:9000", client_guessed=False, ipv6=False,
        first_frame=1, last_frame=rst_frame, start_ns=rows[0].ts, end_ns=rows[-1].ts,
        packets=(sum(1 for r in rows if r.direction == 0), sum(1 for r in rows if r.direction == 1)),
        bytes=(segments * mss, 0),
        handshake=Handshake(1, 2, 3, {"window": 64240, "mss": 1460, "wscale": 7, "sack_perm": True},
                            {"window": 65160, "mss": 1460, "wscale": 7, "sack_perm": True}, 200_000_000),
        end="rst", end_sentence=f"The server's kernel reset the connection (frame {rst_frame}, RST without ACK) "
                                "right after an upload segment conntrack would have marked INVALID.",
        findings=findings, timeline=timeline, timeline_total=total, timeline_capped=capped, http=(),
        stream_heads=(bytes(range(256)) * 16, b""), isn=(5, 6),
    )


def plain(cid: int, *, input_index: int = 0, severity: Severity | None = None) -> ConversationResult:
    """A short, clean HTTP-less conversation (optionally with one finding of the given severity)."""
    timeline = (row(1, 0, 0, SYN, 0, 0), row(2, 1, 1, SYN | ACK, 0, 1), row(3, 2, 0, ACK, 1, 1),
                row(4, 3, 0, PSH | ACK, 1, 1, 5), row(5, 4, 1, FIN | ACK, 1, 6), row(6, 5, 0, FIN | ACK, 6, 2),
                row(7, 6, 1, ACK, 2, 7))
    findings = ()
    if severity is not None:
        findings = (Finding("tcp.zero-window" if severity >= Severity.WARNING else "tcp.dup-ack", severity,
                            "a finding", conversation=cid, frames=(4,)),)
    return ConversationResult(
        id=cid, input_index=input_index, client=f"192.0.2.1:{40000 + cid % 20000}", server="192.0.2.2:7000",
        client_guessed=False, ipv6=False, first_frame=1, last_frame=7, start_ns=T0 + cid * 1000,
        end_ns=T0 + cid * 1000 + 6_000_000, packets=(4, 3), bytes=(5, 0), handshake=Handshake(1, 2, 3),
        end="fin", end_sentence="Both sides closed with FIN.", findings=findings, timeline=timeline,
        timeline_total=7, timeline_capped=False, http=(), stream_heads=(b"hello", b""), isn=(1, 2),
    )


def xss() -> ConversationResult:
    """Attacker-controlled bytes everywhere a capture can put them, plus control bytes and invalid UTF-8."""
    nasty = XSS + b"\x00\x1b[31m\xff\xfe\r\n"
    req = b"GET /" + XSS + b" HTTP/1.1\r\nHost: " + XSS + b"\r\nX-Evil: \x00\x07\xc3\x28" + XSS + b"\r\n\r\n"
    resp = b"HTTP/1.1 502 " + XSS + b"\r\nServer: envoy\r\n\r\nupstream connect error " + nasty
    timeline = (row(1, 0, 0, SYN, 0, 0), row(2, 1, 1, SYN | ACK, 0, 1), row(3, 2, 0, ACK, 1, 1),
                row(4, 3, 0, PSH | ACK, 1, 1, len(req)), row(5, 4, 1, PSH | ACK, 1, 1 + len(req), len(resp)),
                row(6, 5, 1, RST | ACK, 1 + len(resp), 1 + len(req), window=0))
    findings = (
        Finding("http.header.bare-cr", Severity.ERROR, "bad header " + XSS_TEXT, conversation=2, direction=C2S,
                frames=(4,), detail={"offset": 5, "length": len(XSS), "excerpt": req[:200], "excerpt_offset": 0,
                                     "peers": {XSS_TEXT: XSS_TEXT, "h11": "rejects: " + XSS_TEXT},
                                     "lines": [XSS, {"frame": 4, "raw": XSS_TEXT}],
                                     "evidence": [XSS_TEXT, XSS], XSS_TEXT: XSS, "reason": nasty},
                rule=XSS_TEXT),
        Finding("tcp.rst", Severity.WARNING, "RST with reason text " + nasty.decode("latin-1"), conversation=2,
                direction=S2C, frames=(6, 99999), detail={"reason_text": nasty, "trigger_frame": 5}),
    )
    exchange = FakeExchange({
        "request": {"method": "GET", "target": "/" + XSS_TEXT, "version": "HTTP/1.1",
                    "headers": [{"name": "Host", "value": XSS_TEXT}, ["X-Evil", "\x00\x07" + XSS_TEXT], XSS_TEXT],
                    "framing": XSS_TEXT, "body": nasty},
        "response": {"start_line": "HTTP/1.1 502 " + XSS_TEXT, "headers": [XSS_TEXT + "\x00"],
                     "body_excerpt": nasty.decode("latin-1"), XSS_TEXT: [XSS_TEXT, 1]},
        XSS_TEXT: {XSS_TEXT: XSS},
    })
    return ConversationResult(
        id=2, input_index=0, client="198.51.100.7:1234", server="198.51.100.8:80", client_guessed=True, ipv6=False,
        first_frame=1, last_frame=6, start_ns=T0, end_ns=T0 + 5_000_000, packets=(3, 3),
        bytes=(len(req), len(resp)), handshake=Handshake(1, 2, 3, {XSS_TEXT: XSS}, {}),
        end="rst", end_sentence="reset: " + XSS_TEXT, findings=findings, timeline=timeline, timeline_total=6,
        timeline_capped=False, http=(exchange,), stream_heads=(req, resp), isn=(1, 2),
    )


def input_summary(index: int = 0, conversations: int = 3, path: str = "incident.pcap") -> InputSummary:
    return InputSummary(
        index=index, path=path, format="pcapng", compressed=False, linktypes=((1, "Ethernet", 412),),
        frames=412, tcp_frames=410, conversations=conversations, first_ns=T0, last_ns=T0 + 92_000_000_000,
        findings=(Finding("capture.snaplen", Severity.NOTICE,
                          f"{path}: 2 TCP segment(s) were cut by the capture's snaplen; the missing bytes are treated "
                          "as gaps, not as data (first: frame 9)", frames=(9, 17), detail={"count": 2}),),
        readable=True,
    )


@dataclass
class FakeTotals:
    """The part of pipeline.Totals the report reads (the pipeline itself needs every analyzer to import)."""

    inputs: list[InputSummary]
    conversations: int
    severities: dict[Severity, int]
    codes: dict[str, int]


def totals_for(results: list[ConversationResult], inputs: list[InputSummary]) -> FakeTotals:
    sev: dict[Severity, int] = {}
    codes: dict[str, int] = {}
    for f in [f for r in results for f in r.findings] + [f for i in inputs for f in i.findings]:
        sev[f.severity] = sev.get(f.severity, 0) + 1
        codes[f.code] = codes.get(f.code, 0) + 1
    return FakeTotals(inputs, len(results), sev, codes)
