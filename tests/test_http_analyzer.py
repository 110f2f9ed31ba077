"""Http1Analyzer end to end: attack-named malformations, negative controls, capture loss, stream ends.

Every case is fed whole, one byte per segment and split at random segment boundaries; the findings must be
the same (code, direction, severity, offset, length, message index and excerpt; only frame numbers differ).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pcapcheck.http.reader as _reader_module
from pcapcheck.analyzers.http1 import Http1Analyzer
from pcapcheck.findings import C2S, S2C, Finding, Severity
from pcapcheck.http.codes import CODES
from pcapcheck.http.framing import Chunked, ContentLength, NoBody, Tunnel, Unframed, UntilClose
from pcapcheck.http.model import ExchangeJson, MessageState, Pairing
from pcapcheck.http.peers import PEER_NAMES
from pcapcheck.http.spill import ExchangeList, ExchangeSpill
from pcapcheck.tcp.events import Gap, StreamData, StreamEnd
from tests.conftest import interpreted

CONV = 7
SPLITS = ["whole", "bytes", 1, 2, 3]


# --- feeding helpers (also used by test_http_fuzz) -----------------------------------------------------------


def segments(data: bytes, how: str | int) -> list[bytes]:
    """``how``: "whole", "bytes" (one byte per segment) or an int seed for random segment boundaries."""
    if not data:
        return []
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    rnd = random.Random(how)
    k = min(len(data) - 1, rnd.randint(1, 12))
    cuts = sorted(rnd.sample(range(1, len(data)), k)) if k > 0 else []
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@dataclass
class Run:
    analyzer: Http1Analyzer
    findings: list[Finding]

    @property
    def codes(self) -> list[str]:
        return sorted(f.code for f in self.findings)

    def only(self, code: str) -> Finding:
        found = [f for f in self.findings if f.code == code]
        assert len(found) == 1, (code, self.codes)
        return found[0]


def play(events: list[tuple], conversation: int = CONV, spill: ExchangeSpill | None = None,
         sinks: bool = False) -> Run:
    """Events: ("data", dir, bytes[, offset]) | ("gap", dir, length) | ("end", dir, reason). Frames count up
    from 1 in event order; offsets follow on per direction unless given. ``sinks``: data and gaps through the
    per-direction sinks the pipeline uses (``sink``, ``gap_sink``) instead of the event methods."""
    a = Http1Analyzer(conversation, spill)
    offsets = {C2S: 0, S2C: 0}
    for frame, ev in enumerate(events, start=1):
        kind, direction = ev[0], ev[1]
        if kind == "data":
            data = ev[2]
            off = ev[3] if len(ev) > 3 else offsets[direction]
            if sinks:
                a.sink(direction)(off, data, frame, frame * 1000)
            else:
                a.data(StreamData(direction, off, data, frame, frame * 1000))
            offsets[direction] = max(offsets[direction], off + len(data))
        elif kind == "gap":
            if sinks:
                a.gap_sink(direction)(offsets[direction], ev[2], frame, "lost")
            else:
                a.gap(Gap(direction, offsets[direction], ev[2], frame, "lost"))
            offsets[direction] += ev[2]
        else:
            a.end(StreamEnd(direction, offsets[direction], frame, ev[2]))
    findings = a.finish()
    for i, f in enumerate(findings):
        check_finding(f)
        assert f.detail["finding_index"] == i
    linked = sorted(i for e in a.exchanges for i in e.findings)
    assert len(linked) == len(set(linked)) and all(0 <= i < len(findings) for i in linked)
    return Run(a, findings)


def run(c2s: bytes = b"", s2c: bytes = b"", how: str | int = "whole", end: str | None = "fin") -> Run:
    """All of c2s, then all of s2c (each split as ``how`` says), then both ends."""
    events: list[tuple] = [("data", C2S, seg) for seg in segments(c2s, how)]
    events += [("data", S2C, seg) for seg in segments(s2c, how)]
    if end is not None:
        events += [("end", C2S, end), ("end", S2C, end)]
    return play(events)


def key(f: Finding) -> tuple:
    d = f.detail
    return (
        f.code,
        f.direction,
        f.severity,
        d["offset"],
        d["length"],
        d["message_index"],
        d["excerpt"],
        d["excerpt_offset"],
    )


def check_finding(f: Finding) -> None:
    """Every HTTP finding carries what DESIGN.md §4 and the report need, and serialises to JSON."""
    assert f.code in CODES
    assert f.conversation == CONV
    assert f.direction in (C2S, S2C)
    assert f.message and f.rule
    assert f.frames, f
    d = f.detail
    for k in ("offset", "length", "excerpt", "excerpt_offset", "message_index", "peers"):
        assert k in d, (f.code, k)
    assert isinstance(d["excerpt"], bytes) and len(d["excerpt"]) <= 64
    assert d["excerpt_offset"] <= max(d["offset"], 0) or not d["excerpt"]
    assert set(d["peers"]) == set(PEER_NAMES)
    json.dumps(f.to_json())


# --- messages ------------------------------------------------------------------------------------------------

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
POST_CHUNKED = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
OK_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def resp(head: bytes, body: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + body


ENVOY_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: protocol error"
NGINX_BODY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    b"\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
)

# id -> (c2s, s2c, expected codes, end reason)
ATTACKS: dict[str, tuple[bytes, bytes, list[str], str]] = {
    # TE.TE: two TE lines, one obfuscated so one peer ignores it
    "te.te": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n" + GET,
        b"",
        ["http.te.chunked-not-final", "http.te.duplicate", "http.te.unknown"],
        "fin",
    ),
    # incident 1: chunked + Chunked on two lines of a response
    "te-case": (
        GET,
        resp(
            b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\nTransfer-Encoding: Chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        ["http.te.duplicate"],
        "fin",
    ),
    # CL.TE: the front end uses CL (6: "0\r\n\r\nG"), the back end TE: "G" starts the next request
    "cl.te": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        b"",
        ["http.head.truncated", "http.te-cl.conflict"],
        "fin",
    ),
    # TE.CL: the front end uses TE, the back end CL 3: "8\r\nSMUGGLED..." becomes a request
    "te.cl": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"8\r\nSMUGGLED\r\n0\r\n\r\n",
        b"",
        ["http.te-cl.conflict"],
        "fin",
    ),
    "multi-cl": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + GET,
        b"",
        ["http.cl.conflict"],
        "fin",
    ),
    "multi-cl-same": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + GET,
        b"",
        ["http.cl.duplicate"],
        "fin",
    ),
    "te-unicode-kelvin": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun\xe2\x84\xaaed\r\n\r\n0\r\n\r\n",
        b"",
        ["http.te.chunked-not-final", "http.te.unknown"],
        "fin",
    ),
    "te-nul": (
        GET,
        resp(b"Transfer-Encoding: chunked\x00\r\n", b"hello"),
        ["http.te.chunked-not-final", "http.te.unknown"],
        "fin",
    ),
    "te-identity": (
        GET,
        resp(b"Transfer-Encoding: identity\r\n", b"hello"),
        ["http.te.chunked-not-final", "http.te.unknown"],
        "fin",
    ),
    "te-gzip-chunked": (
        GET,
        resp(b"Transfer-Encoding: gzip, chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ["http.te.unsupported"],
        "fin",
    ),
    "te-http10": (
        GET,
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ["http.te.http10"],
        "fin",
    ),
    "chunk-size-zz": (GET, OK_CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n", ["http.chunk.size-invalid"], "fin"),
    "chunk-size-0x": (GET, OK_CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", ["http.chunk.size-invalid"], "fin"),
    "chunk-size-overflow": (
        GET,
        OK_CHUNKED + b"FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        ["http.chunk.size-overflow"],
        "fin",
    ),
    "chunk-no-crlf": (GET, OK_CHUNKED + b"5\r\nhelloXX0\r\n\r\n", ["http.chunk.crlf-missing"], "fin"),
    "chunk-size-too-small": (GET, OK_CHUNKED + b"3\r\nhello\r\n0\r\n\r\n", ["http.chunk.crlf-missing"], "fin"),
    "chunk-bare-lf": (GET, OK_CHUNKED + b"5\nhello\n0\n\n", ["http.chunk.bare-lf"], "fin"),
    "chunk-size-space": (GET, OK_CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", ["http.chunk.whitespace"], "fin"),
    "chunk-ext": (GET, OK_CHUNKED + b"5;foo=bar\r\nhello\r\n0\r\n\r\n", ["http.chunk.extension"], "fin"),
    "chunk-missing-last": (GET, OK_CHUNKED + b"5\r\nhello\r\n", ["http.chunk.truncated"], "fin"),
    "eof-in-chunk": (GET, OK_CHUNKED + b"a\r\nhel", ["http.chunk.truncated"], "rst"),
    "cl-short": (GET, resp(b"Content-Length: 10\r\n", b"hello"), ["http.body.truncated"], "fin"),
    "space-before-colon": (
        GET,
        resp(b"Transfer-Encoding : chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ["http.header.space-before-colon"],
        "fin",
    ),
    "obs-fold": (GET, resp(b"X-Long: a\r\n  b\r\nContent-Length: 0\r\n"), ["http.header.obs-fold"], "fin"),
    "trailer-faults": (
        GET,
        OK_CHUNKED + b"5\r\nhello\r\n0\r\nX-Sum : 1\r\nX-Note: a\r\n  b\r\n\r\n",
        ["http.header.obs-fold", "http.header.space-before-colon"],
        "fin",
    ),
    "bare-cr": (GET, resp(b"X-A: a\rb\r\nContent-Length: 0\r\n"), ["http.header.bare-cr"], "fin"),
    "garbage-head": (
        GET + GET,
        OK_EMPTY + b"\x00\x01garbage here\r\n\r\n" + OK_EMPTY,
        ["http.unparseable"],
        "fin",
    ),
    "envoy-502": (
        GET,
        b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: %d\r\ncontent-type: text/plain\r\nserver: envoy\r\n\r\n%s"
        % (len(ENVOY_BODY), ENVOY_BODY),
        ["http.proxy-error"],
        "fin",
    ),
    "nginx-502": (
        GET,
        b"HTTP/1.1 502 Bad Gateway\r\nServer: nginx/1.25.3\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
        % (len(NGINX_BODY), NGINX_BODY),
        ["http.proxy-error"],
        "fin",
    ),
}


@pytest.mark.parametrize("case", list(ATTACKS), ids=list(ATTACKS))
def test_attack_detected_the_same_however_segmented(case: str) -> None:
    c2s, s2c, expected, end = ATTACKS[case]
    runs = [run(c2s, s2c, how, end) for how in SPLITS]
    assert runs[0].codes == sorted(expected)
    reference = [key(f) for f in runs[0].findings]
    for how, r in zip(SPLITS[1:], runs[1:]):
        assert [key(f) for f in r.findings] == reference, how
    assert runs[0].analyzer.is_http


def test_incident1_names_both_lines_frames_and_peers() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n"
    r = play(
        [
            ("data", C2S, b"POST /api HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\n{}"),
            ("data", S2C, head),
            ("data", S2C, b"Transfer-Encoding: Chunked\r\n\r\n"),
            ("data", S2C, b"5\r\nhello\r\n0\r\n\r\n"),
            ("end", S2C, "rst"),
            ("end", C2S, "fin"),
        ]
    )
    f = r.only("http.te.duplicate")
    assert r.codes == ["http.te.duplicate"]  # one root finding: no http.te.chunked-twice beside it
    assert f.severity is Severity.ERROR and f.direction == S2C
    assert f.frames == (2, 3)
    assert "b'Transfer-Encoding: chunked' (frame 2" in f.message
    assert "b'Transfer-Encoding: Chunked' (frame 3" in f.message
    assert "`chunked, chunked`" in f.message and "RFC 9112 §6.1" in f.message
    assert "Envoy: 502" in f.message and "nginx: 502" in f.message and "curl accepts" in f.message
    d = f.detail
    assert d["lines"] == [
        {"raw": b"Transfer-Encoding: chunked", "frame": 2, "offset": 17},
        {"raw": b"Transfer-Encoding: Chunked", "frame": 3, "offset": len(head)},
    ]
    assert d["combined"] == b"chunked, Chunked"
    assert d["offset"] == 17 and d["message_index"] == 0
    assert "502" in d["peers"]["envoy"] and "UPE" in d["peers"]["envoy"] and d["peers"]["curl"].startswith("accepts")
    assert f.rule.startswith("RFC 9112 §6.1")
    ex = r.analyzer.exchanges[0]
    assert ex.response is not None and ex.response.findings == (0,)
    assert ex.response.body_excerpt == b"hello" and ex.response.state is MessageState.COMPLETE


@pytest.mark.parametrize("line, code", [(b"Content-Length: 0", "http.cl.duplicate"),
                                        (b"Transfer-Encoding: chunked", "http.te.duplicate")])
def test_a_head_of_thousands_of_framing_lines_names_the_first_ones(line: bytes, code: str) -> None:
    """A head may hold thousands of Content-Length or Transfer-Encoding lines within HEAD_LIMIT. The finding names
    the first LINES_NAMED (text and detail) and counts the rest; it named them all (3,000 lines: 330 KB of JSON
    per finding, a page of megabytes)."""
    from pcapcheck.http.framing import LINES_NAMED

    n = 2000  # (56 KB of Transfer-Encoding lines: within HEAD_LIMIT)
    body = b"0\r\n\r\n" if b"chunked" in line else b""
    r = run(c2s=b"POST / HTTP/1.1\r\nHost: a\r\n" + (line + b"\r\n") * n + b"\r\n" + body,
            s2c=b"HTTP/1.1 204 No Content\r\n\r\n")
    f = r.only(code)
    assert len(f.detail["lines"]) == LINES_NAMED and f.detail["lines_not_named"] == n - LINES_NAMED
    assert f.detail["lines"][-1]["offset"] == 26 + (LINES_NAMED - 1) * (len(line) + 2)
    assert f.message.count(line.decode()) == LINES_NAMED and f"and {n - LINES_NAMED} more such lines" in f.message
    assert len(f.message) < 2000 and f.frames == (1,)
    two = run(c2s=b"POST / HTTP/1.1\r\nHost: a\r\n" + (line + b"\r\n") * 2 + b"\r\n" + body,
              s2c=b"HTTP/1.1 204 No Content\r\n\r\n").only(code)
    assert len(two.detail["lines"]) == 2 and "lines_not_named" not in two.detail and "more such" not in two.message


def test_interim_responses_beyond_the_kept_ones_are_counted() -> None:
    """A server may answer one request with a 1xx every few seconds for an hour (102 Processing): each was kept, a
    message more in memory, the page and report.json. The first INTERIM_KEPT are kept, and any with a finding; the
    others are counted (interim_omitted, in report.json only when there are some) and their builders let go."""
    import json

    from pcapcheck.analyzers.http1 import DROPPED, INTERIM_KEPT

    n = 100
    processing = b"HTTP/1.1 102 Processing\r\n\r\n"
    bad = b"HTTP/1.1 102 Processing\r\nX : 1\r\n\r\n"  # whitespace before the colon: a finding
    s2c = processing * 40 + bad + processing * (n - 41) + resp(b"Content-Length: 2\r\n", b"ok")
    r = run(c2s=b"POST /job HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", s2c=s2c, how=3)
    (x,) = r.analyzer.exchanges
    assert len(x.interim) == INTERIM_KEPT + 1 and x.interim_omitted == n - INTERIM_KEPT - 1
    assert [m.index for m in x.interim] == [*range(INTERIM_KEPT), 40] and x.interim[-1].findings == x.findings
    assert r.codes == ["http.header.space-before-colon"] and x.response.status == 200
    assert sum(m is DROPPED for m in r.analyzer._s2c.messages) == n - INTERIM_KEPT - 1
    text = x.json_text()
    assert json.loads(text) == json.loads(json.dumps(x.to_json())) and json.loads(text)["interim_omitted"] == 83
    from pcapcheck.report import html_report, views

    page = html_report._page_exchange(x)  # (the page's copy, without the header fields)
    assert page.interim_omitted == x.interim_omitted and page.request.headers == ()
    assert ("interim_omitted", "83") in [row[:2] for row in views.exchange_view(0, page, views._Marks([]), set()).rows]
    few = run(c2s=b"POST /job HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
              s2c=processing * 3 + resp(b"Content-Length: 2\r\n", b"ok")).analyzer.exchanges[0]
    assert len(few.interim) == 3 and few.interim_omitted == 0 and "interim_omitted" not in few.to_json()


def test_request_side_duplicate_te_names_request_rejecters() -> None:
    r = run(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    f = r.only("http.te.duplicate")
    assert "Envoy: 501" in f.message and "nginx: 400" in f.message
    assert f.detail["peers"]["nginx"].startswith("rejects: 400")


def test_chunked_twice_on_one_line() -> None:
    r = run(GET, resp(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"))
    assert r.codes == ["http.te.chunked-twice"]
    f = r.only("http.te.chunked-twice")
    assert f.detail["combined"] == b"chunked, chunked" and f.severity is Severity.ERROR


def test_chunked_not_final_severity_differs_by_side() -> None:
    req = run(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
    rsp = run(GET, resp(b"Transfer-Encoding: chunked, gzip\r\n", b"xyz"))
    assert req.only("http.te.chunked-not-final").severity is Severity.ERROR
    assert rsp.only("http.te.chunked-not-final").severity is Severity.WARNING
    assert isinstance(req.analyzer.exchanges[0].request.framing, Unframed)
    response = rsp.analyzer.exchanges[0].response
    assert isinstance(response.framing, UntilClose) and response.body_excerpt == b"xyz"


def test_bodiless_responses_may_describe_a_coding() -> None:
    r = run(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" + GET, resp(b"Transfer-Encoding: gzip\r\n") + OK_EMPTY)
    assert r.findings == [] and r.analyzer.exchanges[0].response.framing == NoBody()


def test_kelvin_sign_is_named() -> None:
    f = run(*ATTACKS["te-unicode-kelvin"][:2]).only("http.te.unknown")
    assert "KELVIN" in f.message and f.detail["unknown"][0]["coding"] == "chun\u212aed".encode()


def test_cl_invalid_values() -> None:
    for value, why in ((b"-5", "negative"), (b"5x", "not 1*DIGIT"), (b"99999999999999999999", "2^63")):
        r = run(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\nhello")
        f = r.only("http.cl.invalid")
        assert why in f.message and f.severity is Severity.ERROR
        assert isinstance(r.analyzer.exchanges[0].request.framing, Unframed)


def test_cl_leading_zeros_is_a_notice_and_still_frames() -> None:
    r = run(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello" + GET)
    assert r.codes == ["http.cl.leading-zeros"]
    assert r.only("http.cl.leading-zeros").severity is Severity.NOTICE
    assert [e.request.framing for e in r.analyzer.exchanges] == [ContentLength(5), NoBody()]


def test_chunk_faults_carry_offsets_and_frames() -> None:
    body = b"5\r\nhelloXX0\r\n\r\n"
    r = play([("data", C2S, GET), ("data", S2C, OK_CHUNKED), ("data", S2C, body), ("end", S2C, "fin")])
    f = r.only("http.chunk.crlf-missing")
    assert f.detail["offset"] == len(OK_CHUNKED) + 8 and f.frames == (3,)
    assert b"\r\n\r\n5\r\nhelloXX0\r\n" in f.detail["excerpt"]
    assert "b'X'" in f.message
    assert r.analyzer.exchanges[0].response.state is MessageState.MALFORMED


def test_wireshark_and_peer_notes_on_chunk_size() -> None:
    f = run(*ATTACKS["chunk-size-zz"][:2]).only("http.chunk.size-invalid")
    assert "Wireshark reads it as size 0" in f.message
    assert "HPE_INVALID_CHUNK_SIZE" in f.detail["peers"]["llhttp"]


def test_lenient_chunk_faults_reported_once_per_body() -> None:
    r = run(GET, OK_CHUNKED + b"1;a=b\r\nx\r\n1;c=d\r\ny\r\n0\r\n\r\n")
    assert r.codes == ["http.chunk.extension"]
    assert r.analyzer.exchanges[0].response.body_excerpt == b"xy"


def test_invalid_chunk_extension() -> None:
    r = run(GET, OK_CHUNKED + b"1;a=\x01\r\nx\r\n0\r\n\r\n")
    assert r.codes == ["http.chunk.extension-invalid"]


def test_space_before_colon_keeps_framing_of_repairing_proxy() -> None:
    r = run(*ATTACKS["space-before-colon"][:2])
    f = r.only("http.header.space-before-colon")
    assert f.detail["offset"] == len(b"HTTP/1.1 200 OK\r\nTransfer-Encoding")
    response = r.analyzer.exchanges[0].response
    assert isinstance(response.framing, Chunked) and response.body_excerpt == b"hello"


def test_obs_fold_joins_value() -> None:
    r = run(*ATTACKS["obs-fold"][:2])
    h = r.analyzer.exchanges[0].response.headers[0]
    assert (h.name, h.value, h.raw) == (b"X-Long", b"a b", b"X-Long: a\r\n  b")


def test_trailer_faults_name_their_own_frames() -> None:
    r = play(
        [
            ("data", C2S, GET),
            ("data", S2C, OK_CHUNKED + b"5\r\nhello\r\n0\r\n"),
            ("data", S2C, b"X-Sum : 1\r\n"),
            ("data", S2C, b"X-Note: a\r\n"),
            ("data", S2C, b"  b\r\n\r\n"),
            ("end", S2C, "fin"),
        ]
    )
    assert r.only("http.header.space-before-colon").frames == (3,)
    assert r.only("http.header.obs-fold").frames == (5,)
    trailers = r.analyzer.exchanges[0].response.trailers
    assert [(t.name, t.value, t.frame) for t in trailers] == [(b"X-Sum", b"1", 3), (b"X-Note", b"a b", 4)]


def test_bare_lf_head_is_one_warning() -> None:
    r = run(b"GET / HTTP/1.1\nHost: a\n\n", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi")
    assert r.codes == ["http.header.bare-lf", "http.header.bare-lf"]
    assert all(f.severity is Severity.WARNING for f in r.findings)
    assert r.analyzer.exchanges[0].response.body_excerpt == b"hi"


def test_header_without_colon_and_control_chars() -> None:
    r = run(b"GET / HTTP/1.1\r\nHost: a\r\nbogus line\r\nX-A: b\x01c\r\n\r\n")
    assert r.codes == ["http.header.invalid", "http.header.invalid"]


def test_garbage_resync_reports_skipped_bytes_and_pairs_next() -> None:
    c2s, s2c, _, _ = ATTACKS["garbage-head"]
    r = run(c2s, s2c)
    f = r.only("http.unparseable")
    assert f.direction == S2C and f.detail["offset"] == len(OK_EMPTY)
    assert f.detail["resumed_at"] == len(OK_EMPTY) + len(b"\x00\x01garbage here\r\n\r\n")
    assert b"\r\n\x00\x01garbage" in f.detail["excerpt"]
    ex = r.analyzer.exchanges
    assert len(ex) == 2 and all(e.response is not None for e in ex)
    assert f.detail["message_index"] == 1


def test_unparseable_to_end_of_stream() -> None:
    r = run(GET + b"\x16\x03\x01\x02\x00" + bytes(100))
    f = r.only("http.unparseable")
    assert f.detail["resumed_at"] is None and "rest of the stream" in f.message


def test_head_too_long() -> None:
    big = b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * (70 * 1024) + b"\r\n\r\n"
    r = run(big + GET)
    f = r.only("http.unparseable")
    assert "head too long" in f.message
    assert len(r.analyzer.exchanges) == 1  # the GET after it was found again


def test_proxy_errors_name_the_failure() -> None:
    f = run(*ATTACKS["envoy-502"][:2]).only("http.proxy-error")
    assert f.detail["proxy"] == "envoy" and f.detail["upstream_failure"] == "protocol error"
    assert f.detail["likely_flag"] == "UPE" and f.detail["confidence"] == "high"
    assert f.severity is Severity.WARNING and f.detail["excerpt"].startswith(b"HTTP/1.1 502")
    body = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    r = run(GET, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    g = r.only("http.proxy-error")
    assert g.detail["upstream_failure"] == "connection termination" and g.detail["likely_flag"] == "UC"
    n = run(*ATTACKS["nginx-502"][:2]).only("http.proxy-error")
    assert n.detail["proxy"] == "nginx" and n.detail["title"] == b"502 Bad Gateway"


def test_proxy_error_page_recognized_past_the_kib_a_whole_message_keeps() -> None:
    """The reader keeps BODY_KEEP bytes of a body while it reads it, so a proxy's error text 3 KB into the page is
    found; once the message is whole it keeps the first KiB (JSON_BODY_EXCERPT), all its outputs show."""
    from pcapcheck.http.model import JSON_BODY_EXCERPT
    from pcapcheck.http.reader import BODY_KEEP

    body = b"<!-- padding -->\n" * 180 + ENVOY_BODY
    assert len(body) - len(ENVOY_BODY) > JSON_BODY_EXCERPT and len(body) < BODY_KEEP
    r = run(GET, b"HTTP/1.1 502 Bad Gateway\r\nServer: envoy\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert r.only("http.proxy-error").detail["upstream_failure"] == "protocol error"
    response = r.analyzer.exchanges[0].response
    assert response.body_excerpt == body[:JSON_BODY_EXCERPT] and response.body_length == len(body)


def test_proxy_error_in_chunked_response() -> None:
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(ENVOY_BODY), ENVOY_BODY)
    r = run(GET, b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert r.only("http.proxy-error").detail["upstream_failure"] == "protocol error"


# --- negative controls ---------------------------------------------------------------------------------------

PIPELINE_C2S = (
    b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
    b"HEAD /b HTTP/1.1\r\nHost: a\r\n\r\n"
    b"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    b"POST /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"
    b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nxyz"
    b'GET /f HTTP/1.1\r\nHost: a\r\nIf-None-Match: "x"\r\n\r\n'
    b"DELETE /g HTTP/1.1\r\nHost: a\r\n\r\n"
    b"\r\nGET /h HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
)
PIPELINE_S2C = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Check\r\n\r\n"
    b"4\r\nwxyz\r\n0\r\nX-Check: 1\r\n\r\n"
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\n\r\n"
    b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n'
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
)


@pytest.mark.parametrize("how", SPLITS, ids=str)
def test_valid_pipelined_keepalive_has_no_findings(how) -> None:
    r = run(PIPELINE_C2S, PIPELINE_S2C, how)
    assert r.findings == []
    ex = r.analyzer.exchanges
    assert [e.request.start.target for e in ex] == [b"/a", b"/b", b"/c", b"/d", b"/e", b"/f", b"/g", b"/h"]
    assert [e.response.start.status for e in ex] == [200, 200, 201, 200, 204, 304, 200, 200]
    assert [len(e.interim) for e in ex] == [0, 0, 0, 0, 1, 0, 0, 0]
    assert ex[1].response.framing == NoBody()  # HEAD: Content-Length 1000 but no body
    assert ex[3].request.body_excerpt == b"abcde" and ex[3].request.trailers[0].value == b"5"
    assert ex[3].response.trailers[0].name == b"X-Check"
    assert isinstance(ex[7].response.framing, UntilClose) and ex[7].response.body_excerpt == b"until the end"
    assert all(e.pairing is Pairing.IN_ORDER for e in ex)
    assert all(m.state is MessageState.COMPLETE for e in ex for m in (e.request, e.response))
    json.dumps([e.to_json() for e in ex])


def test_exchange_json_is_plain_and_escaped() -> None:
    r = run(b"GET /\xff HTTP/1.1\r\nHost: \xe9\r\n\r\n", OK_EMPTY)
    doc = r.analyzer.exchanges[0].to_json()
    text = json.dumps(doc)
    assert doc["request"]["target"] == "/\\xff" and doc["request"]["headers"][0]["value"] == "\\xe9"
    assert doc["response"]["framing"] == {"type": "content-length", "length": 0}
    assert text.isascii()


def test_connect_tunnel_stops_parsing() -> None:
    tls = b"\x16\x03\x01\x00\x05hello"
    r = play(
        [
            ("data", C2S, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + tls),
            ("data", S2C, b"HTTP/1.1 200 Connection established\r\n\r\n"),
            ("data", S2C, b"\x16\x03\x03\x00\x10" + bytes(16)),
            ("data", C2S, b"\x17\x03\x03garbage"),
            ("end", C2S, "fin"),
            ("end", S2C, "fin"),
        ]
    )
    assert r.findings == []
    ex = r.analyzer.exchanges
    assert len(ex) == 1 and ex[0].tunnel and ex[0].response.framing == Tunnel()


def test_connect_refused_goes_on_parsing() -> None:
    r = run(
        b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n" + OK_EMPTY,
    )
    assert r.findings == [] and len(r.analyzer.exchanges) == 2


def test_upgrade_101_becomes_tunnel() -> None:
    r = run(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi",
    )
    assert r.findings == [] and r.analyzer.exchanges[0].tunnel


def test_not_http_directions_are_left_alone() -> None:
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200)
    r = run(hello, b"\x16\x03\x03\x00\x7a\x02" + bytes(100))
    assert r.findings == [] and not r.analyzer.is_http and r.analyzer.exchanges == []
    # plaintext request to a TLS server: the request is HTTP, the TLS alert answer is not reported
    r = run(GET, b"\x15\x03\x01\x00\x02\x02\x46")
    assert r.findings == [] and r.analyzer.is_http
    assert r.analyzer.summary()["s2c"]["http"] is False
    # HTTP/2 prior knowledge is not HTTP/1.x
    assert not run(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").analyzer.is_http


def test_response_before_any_request_waits_then_assumes() -> None:
    r = run(b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" + OK_EMPTY)
    assert r.findings == [] and len(r.analyzer.exchanges) == 2
    assert r.analyzer.exchanges[0].request is None


def test_pause_is_bounded() -> None:
    body = bytes(300 * 1024)
    a = Http1Analyzer(CONV)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    a.data(StreamData(S2C, 0, head, 1, 0))
    off = len(head)
    for i in range(0, len(body), 1460):
        a.data(StreamData(S2C, off + i, body[i : i + 1460], 2 + i, 0))
    assert a.summary()["s2c"]["assumed"]  # the request never came: said so, and did not buffer it all
    assert a.finish() == []


def _one_side(direction: str, n: int, bad: set[int], body: int = 2) -> list[tuple]:
    """n requests or n responses (with a ``body``-byte body), and nothing of the other side; the messages in
    ``bad`` carry two Transfer-Encoding lines (http.te.duplicate)."""
    events: list[tuple] = []
    for i in range(n):
        if direction == C2S:
            te = b"Transfer-Encoding: chunked\r\n" * 2 if i in bad else b""
            data = (b"POST /item/%d HTTP/1.1\r\nHost: a\r\n" % i + te
                    + (b"\r\n0\r\n\r\n" if i in bad else b"Content-Length: 2\r\n\r\nok"))
        elif i in bad:
            data = resp(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"2\r\nok\r\n0\r\n\r\n")
        else:
            data = resp(b"Content-Length: %d\r\n" % body, bytes(body))
        events.append(("data", direction, data))
    return events


@pytest.mark.parametrize("direction", [C2S, S2C])
def test_one_direction_keeps_a_bounded_report(direction: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A capture of one direction only (asymmetric routing): its messages are kept as exchanges are (the first
    KEEP_FIRST, the last KEEP_LAST and every one with a finding), not all of them."""
    from pcapcheck.analyzers import http1

    monkeypatch.setattr(http1, "KEEP_FIRST", 10)
    monkeypatch.setattr(http1, "KEEP_LAST", 4)
    n, bad = 60, 30
    r = play([*_one_side(direction, n, {bad}), ("end", C2S, "fin"), ("end", S2C, "fin")])
    assert r.codes == ["http.te.duplicate"]
    kept = r.analyzer.exchanges
    assert [e.index for e in kept] == [*range(10), bad, *range(n - 4, n)]
    assert r.analyzer.dropped == n - len(kept)
    side = "request" if direction == C2S else "response"
    other = "response" if direction == C2S else "request"
    assert all(getattr(e, side) is not None and getattr(e, other) is None for e in kept)
    assert kept[10].findings == (0,)


def test_defaults_assumed_are_said_for_the_first_ones_and_counted_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request side waits for the response to every Upgrade request; with no responses captured each wait
    overflows on its own, so the defaults taken are said for the first ASSUMED_KEEP and counted after that (the
    list does not grow with the capture)."""
    from pcapcheck.http import reader

    monkeypatch.setattr(reader, "PAUSE_LIMIT", 200)  # each wait overflows on the requests queued behind it
    n = 150
    upgrade = b"GET /ws/%d HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    plain = b"GET /item/%d HTTP/1.1\r\nHost: a\r\n\r\n"
    events = [("data", C2S, (upgrade if i % 5 == 0 else plain) % i) for i in range(n)]
    r = play([*events, ("end", C2S, "fin"), ("end", S2C, "fin")])
    said = r.analyzer.summary()[C2S]["assumed"]
    waits = n // 5 - 1  # every Upgrade request but the last (nothing queued behind it)
    assert len(said) == reader.ASSUMED_KEEP + 1 and said[-1] == f"and {waits - reader.ASSUMED_KEEP} more"
    assert said[0].startswith("request 0: no response seen within 200 bytes") and said[1].startswith("request 5:")
    assert len(r.analyzer.exchanges) == n


def test_responses_whose_requests_are_missing_are_framed_without_waiting_each_time() -> None:
    """A wait for a request that never comes overflows once (PAUSE_LIMIT bytes queued); the responses after it
    are then framed at once, not each after another full queue (which replayed the queue once per response)."""
    n = 400  # 2 KB bodies: the queue overflows after about 128 of them
    r = play([*_one_side(S2C, n, set(), body=2048), ("end", S2C, "fin"), ("end", C2S, "fin")])
    a = r.analyzer
    assert r.findings == [] and len(a.exchanges) == n and all(e.response.body_length == 2048 for e in a.exchanges)
    (said,) = a.summary()[S2C]["assumed"]
    assert said.startswith("response 0: its request was not seen within")
    assert 0 < a._s2c.unpaired < n


def test_requests_caught_up_make_responses_wait_again() -> None:
    """After the overflow, a response that finds its request clears the stall: the next response that comes
    before its request waits for it again, so a HEAD request is honoured (no body read)."""
    head = b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"
    events = [*_one_side(S2C, 200, set(), body=2048), *(("data", C2S, GET) for _ in range(201)),
              ("data", S2C, OK_EMPTY),  # response 200 finds its request
              ("data", S2C, resp(b"Content-Length: 5\r\n")),  # response 201, before its HEAD request
              ("data", C2S, head), ("end", C2S, "fin"), ("end", S2C, "fin")]
    r = play(events)
    ex = r.analyzer.exchanges
    assert r.findings == [] and len(ex) == 202
    assert ex[201].request.method == b"HEAD" and ex[201].response.body_length == 0
    assert ex[201].response.state is MessageState.COMPLETE


def test_a_response_after_its_request_was_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests dropped while the server had not answered at all: a response that comes after all is dropped
    with them, unless it has a finding; then it is reported, without its request, and counted as kept."""
    from pcapcheck.analyzers import http1

    monkeypatch.setattr(http1, "KEEP_FIRST", 10)
    monkeypatch.setattr(http1, "KEEP_LAST", 4)
    n, bad = 60, 20
    responses = _one_side(S2C, n, {bad})
    r = play([*_one_side(C2S, n, set()), *responses, ("end", C2S, "fin"), ("end", S2C, "fin")])
    a = r.analyzer
    assert r.codes == ["http.te.duplicate"]
    assert [e.index for e in a.exchanges] == [*range(10), bad, *range(n - 4, n)]
    assert a.dropped == n - len(a.exchanges)
    assert a.exchanges[10].request is None and a.exchanges[10].findings == (0,)
    assert all(e.request is not None and e.response is not None for e in a.exchanges if e.index != bad)
    assert all(a._s2c.messages[k] is http1.DROPPED for k in range(10, n - 4) if k != bad)


def same_exchanges(got: Sequence[object], expected: Sequence[object]) -> int:
    """``got`` (from an analyzer that spilled) holds ``expected``'s exchanges: each an equal one, or, for one no page
    shows, its report.json text (ExchangeJson, for a whole exchange without a finding). Returns how many were text."""
    got = list(got)
    assert len(got) == len(expected)
    texts = 0
    for g, e in zip(got, expected):
        if type(g) is ExchangeJson:
            assert g.index == e.index and g.text == e.json_text() and g.to_json() == e.to_json()
            assert not e.findings and e.request is not None and e.response is not None
            texts += 1
        else:
            assert g == e
    return texts


def test_the_pipelines_sinks_give_what_the_events_give() -> None:
    """Data and gaps through the per-direction sinks (``sink``, ``gap_sink``: no event objects, no resuming while
    nothing is paused) leave the same findings and exchanges as the events, a gap that comes while its direction
    is paused (a response waiting for its request) included: it is queued and replayed on resuming."""
    body = b"x" * 40
    cases = [
        [("data", S2C, resp(b"Content-Length: 40\r\n", body)), ("gap", S2C, 30), ("data", S2C, b"HTTP/1.1 2"),
         ("data", C2S, GET), ("data", C2S, GET), ("data", S2C, b"00 OK\r\nContent-Length: 0\r\n\r\n"),
         ("end", C2S, "fin"), ("end", S2C, "fin")],
        [("data", C2S, GET), ("data", S2C, resp(b"Content-Length: 100\r\n", body)), ("gap", S2C, 60),
         ("data", C2S, GET), ("gap", C2S, 5), ("data", C2S, GET), ("data", S2C, resp(b"Content-Length: 0\r\n")),
         ("end", C2S, "fin"), ("end", S2C, "fin")],
    ]
    for events in cases:
        by_events, by_sinks = play(events), play(events, sinks=True)
        assert by_sinks.findings == by_events.findings and by_sinks.findings
        assert list(by_sinks.analyzer.exchanges) == list(by_events.analyzer.exchanges)
    a = Http1Analyzer(CONV)
    n = len(cases[0][0][2])
    a.sink(S2C)(0, cases[0][0][2], 1, 1000)
    a.gap_sink(S2C)(n, 30, 2, "lost")
    assert a._s2c.pause is not None and len(a._s2c._queue) == 1  # (waiting for request 0: the gap queued)


@given(st.data())
def test_resynchronising_responses_skimmed_or_not(data: st.DataObject) -> None:
    """A response direction looking for the next status-line (after a gap; in a capture cut by a snaplen, after every
    segment) skips a segment without one in ``fast_data`` (``_skim_resync``): the findings, exchanges and counts
    are those of the general path, however the bytes are cut, wherever the gaps and the status-lines fall (one may
    be split across segments)."""
    from pcapcheck.http.reader import DirectionReader

    pieces = data.draw(st.lists(st.sampled_from([
        resp(b"Content-Length: 5\r\n", b"hello"), b"junk " * 7, b"\r\nHTTP/1.1 2", b"00 OK\r\n\r\n", b"HTTP/1.",
        b"HTTP/1.1 204 No Content\r\n\r\n", b"\x00\xff" * 20, b"\n"]), min_size=1, max_size=12), label="pieces")
    stream = b"".join(pieces)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=10), label="cuts")))
    segments = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)]) if stream[a:b]]
    events: list[tuple] = [("data", C2S, GET * 3)]
    for seg in segments:
        if data.draw(st.integers(0, 2), label="gap before") == 0:
            events.append(("gap", S2C, data.draw(st.integers(1, 50), label="gap")))
        events.append(("data", S2C, seg))
    events += [("end", C2S, "fin"), ("end", S2C, "fin")]
    skimmed = play(events, sinks=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DirectionReader, "_skim_resync", lambda self, offset, chunk, frame: 0)
        general = play(events, sinks=True)
    assert skimmed.findings == general.findings
    assert list(skimmed.analyzer.exchanges) == list(general.analyzer.exchanges)
    for a, b in ((skimmed.analyzer._s2c, general.analyzer._s2c), (skimmed.analyzer._c2s, general.analyzer._c2s)):
        assert (a.unparsed_bytes, a.lost_bytes, a.offset, a._last_offset, a.mode) == (
            b.unparsed_bytes, b.lost_bytes, b.offset, b._last_offset, b.mode)


def test_a_capture_cut_by_a_snaplen_skims_its_response_segments() -> None:
    """Each segment of a long response body cut by a snaplen (its bytes, then a gap) is skimmed, not parsed."""
    interpreted(_reader_module)
    from pcapcheck.http.reader import DirectionReader

    taken = []
    real = DirectionReader._skim_resync
    events: list[tuple] = [("data", C2S, GET), ("data", S2C, b"HTTP/1.1 200 OK\r\nContent-Le"), ("gap", S2C, 900)]
    for _ in range(20):
        events += [("data", S2C, b"x" * 134), ("gap", S2C, 1314)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DirectionReader, "_skim_resync", lambda *a: taken.append(real(*a)) or taken[-1])
        r = play(events + [("end", C2S, "fin"), ("end", S2C, "fin")], sinks=True)
    assert taken == [1] * 20 and r.analyzer._s2c.unparsed_bytes == 20 * (134 - 6)


def _spilled_and_not(events: list[tuple], monkeypatch: pytest.MonkeyPatch, after: int = 0) -> tuple[Run, Run]:
    """``events`` played with every settled exchange spilled (one final response behind the last, from exchange
    ``after`` on) and without."""
    from pcapcheck.analyzers import http1

    kept = play(events)
    monkeypatch.setattr(http1, "SPILL_AFTER", after)
    monkeypatch.setattr(http1, "HELD_BUDGET", -1)
    monkeypatch.setattr(http1, "SPILL_LAG", 1)
    monkeypatch.setattr(http1, "SPILL_CHUNK", 2)
    spill = ExchangeSpill()  # left open for the caller's reads (an unnamed temporary file: gone with the object)
    spilled = play(events, spill=spill)
    same_exchanges(spilled.analyzer.exchanges, kept.analyzer.exchanges)
    return spilled, kept


def test_interim_responses_counted_in_both_pieces_of_a_joined_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request spilled before its final response came (the requests far ahead) goes with the 1xx responses
    counted so far; those after it make a second piece, joined to the first at the end: the omitted 1xx of both
    add up, as when nothing is spilled."""
    from pcapcheck.analyzers import http1

    monkeypatch.setattr(http1, "INTERIM_KEPT", 1)
    post = _SPILL_REQUESTS["processing"]
    processing = b"HTTP/1.1 102 Processing\r\n\r\n"
    events = [("data", C2S, post), *(("data", S2C, processing) for _ in range(4)),
              *(("data", C2S, post) for _ in range(3)), *(("data", S2C, processing) for _ in range(3)),
              ("end", C2S, "fin"), ("end", S2C, "fin")]
    spilled, kept = _spilled_and_not(events, monkeypatch)
    first = kept.analyzer.exchanges[0]
    assert first.response is None and len(first.interim) == 1 and first.interim_omitted == 6
    assert spilled.analyzer._spilled  # (the request went to the spill with the first 1xx: _joined adds the counts)


def test_spilled_exchanges_wait_for_late_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Responses framed before their requests came (after an overflow): they are not spilled while the request
    side may still send those requests, so each exchange gets its request as when nothing is spilled."""
    events = [*_one_side(S2C, 200, set(), body=2048), *(("data", C2S, GET) for _ in range(200)),
              ("end", C2S, "fin"), ("end", S2C, "fin")]
    spilled, _ = _spilled_and_not(events, monkeypatch)
    assert all(e.request is not None for e in spilled.analyzer.exchanges)


def test_spilled_exchanges_wait_for_a_request_still_being_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request whose body is still coming when later responses are done is not spilled half read."""
    post = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
    events = [("data", C2S, GET), ("data", C2S, post + b"01234"), *_one_side(S2C, 200, set(), body=2048),
              ("data", C2S, b"56789"), ("end", C2S, "fin"), ("end", S2C, "fin")]
    spilled, _ = _spilled_and_not(events, monkeypatch)
    ex = spilled.analyzer.exchanges
    assert ex[1].request.state is MessageState.COMPLETE and ex[1].request.body_length == 10
    assert spilled.analyzer._settled == 1  # exchange 0; then request 1 was still being read


def _pipelined(n: int, responses: int) -> list[tuple]:
    """``n`` requests sent before any response (deep pipelining), then ``responses`` of them answered: a HEAD
    (its response's Content-Length frames no body), a POST answered with 100 Continue, a response with a finding,
    and at the end an exchange with only its 100 Continue; the rest 200 OK."""
    events: list[tuple] = []
    for i in range(n):
        if i == 5:
            req = b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n"
        elif i in (7, responses):
            req = b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
        else:
            req = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i
        events.append(("data", C2S, req))
    cont = b"HTTP/1.1 100 Continue\r\n\r\n"
    for i in range(responses):
        if i == 5:
            data = resp(b"Content-Length: 5\r\n")
        elif i == 9:
            data = resp(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"2\r\nok\r\n0\r\n\r\n")
        else:
            data = (cont if i == 7 else b"") + resp(b"Content-Length: 2\r\n", b"ok")
        events.append(("data", S2C, data))
    return [*events, ("data", S2C, cont), ("end", C2S, "fin"), ("end", S2C, "fin")]


def test_requests_far_ahead_of_the_responses_are_spilled_and_joined_to_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests SPILL_LAG or more ahead of the responses are spilled without waiting for them: a response that
    comes after is framed by its request's method (the HEAD), spilled after the later exchanges and joined to its
    request at finish, interim responses included (one whose final response never came too)."""
    spilled, kept = _spilled_and_not(_pipelined(40, 30), monkeypatch)
    a = spilled.analyzer
    assert a._joins and a._settled >= 30 and spilled.codes == kept.codes == ["http.te.duplicate"]
    ex = a.exchanges
    assert [e.index for e in ex] == list(range(40))
    assert ex[5].request.method == b"HEAD" and ex[5].response.body_length == 0
    assert len(ex[7].interim) == 1 and ex[7].response.status == 200 and ex[9].findings == (0,)
    assert len(ex[30].interim) == 1 and ex[30].response is None and ex[31].response is None


def test_exchanges_spilled_as_text_pass_through_the_joining(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exchanges no page shows are spilled as their JSON text only (ExchangeJson); when later requests run far ahead
    of their responses, every spilled exchange is read back to be put in order and joined, the text-only ones
    included: they pass through as they are (the compiled build refused them as not HttpExchanges, TypeError)."""
    from pcapcheck.analyzers import http1
    from pcapcheck.report import views

    for name, value in (("FIRST", 1), ("LAST", 1), ("MARKED", 0)):
        monkeypatch.setattr(http1, f"PAGE_EXCHANGES_{name}", value)
        monkeypatch.setattr(views, f"PAGE_EXCHANGES_{name}", value)
    monkeypatch.setattr(http1, "PAGE_EXCHANGES_ALL", 2)
    events = [*_keep_alive(12)[:-2], *_pipelined(20, 10)]  # 12 answered one by one, then 20 requests ahead
    spilled, kept = _spilled_and_not(events, monkeypatch)
    a = spilled.analyzer
    got = a.exchanges
    assert a._joins and any(type(e) is ExchangeJson for e in got)  # the joining path, with text-only exchanges
    assert [e.index for e in got] == [e.index for e in kept.analyzer.exchanges] == list(range(32))


def test_requests_far_ahead_wait_for_a_response_still_being_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests far ahead of the responses spill their exchanges, but not one whose response is half read."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    gets = [("data", C2S, b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i) for i in range(20)]
    events = [*gets[:10], ("data", S2C, head + b"01234"), *gets[10:], ("data", S2C, b"56789"),
              *(("data", S2C, resp(b"Content-Length: 2\r\n", b"ok")) for _ in range(19)),
              ("end", C2S, "fin"), ("end", S2C, "fin")]
    spilled, _ = _spilled_and_not(events, monkeypatch, after=10)  # (the first ten requests are not spilled)
    ex = spilled.analyzer.exchanges
    assert ex[0].response.state is MessageState.COMPLETE and ex[0].response.body_length == 10
    assert all(e.response.status == 200 for e in ex) and len(ex) == 20


def test_requests_only_spilled_then_dropped_and_answered_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests of a server that answers only after KEEP_FIRST + KEEP_LAST of them: the first are spilled, later
    ones dropped (but one with a finding, kept); the responses that come after all are joined to the spilled
    requests, dropped with the dropped ones, and one with a finding reported without its request: as when
    nothing is spilled."""
    from pcapcheck.analyzers import http1

    monkeypatch.setattr(http1, "KEEP_FIRST", 10)
    monkeypatch.setattr(http1, "KEEP_LAST", 4)
    n = 60
    events = [*_one_side(C2S, n, {25}), *_one_side(S2C, n, {30}), ("end", C2S, "fin"), ("end", S2C, "fin")]
    spilled, kept = _spilled_and_not(events, monkeypatch)
    assert spilled.analyzer._joins
    assert [e.index for e in spilled.analyzer.exchanges] == [*range(10), 25, 30, *range(n - 4, n)]
    assert spilled.analyzer.dropped == kept.analyzer.dropped == n - 16


def _keep_alive(n: int, cookie: int = 0) -> list[tuple]:
    """``n`` requests (with a ``cookie``-byte Cookie field) each answered before the next."""
    events: list[tuple] = []
    for i in range(n):
        cookies = b"Cookie: s=%s\r\n" % (b"c" * cookie) if cookie else b""
        events += [("data", C2S, b"GET /%d HTTP/1.1\r\nHost: a\r\n%s\r\n" % (i, cookies)),
                   ("data", S2C, resp(b"Content-Length: 2\r\n", b"ok"))]
    return [*events, ("end", C2S, "fin"), ("end", S2C, "fin")]


def _held(a: Http1Analyzer) -> int:
    """The messages ``a``'s readers hold."""
    from pcapcheck.analyzers import http1

    return sum(type(m) is http1.MessageBuilder and m is not http1.DROPPED for r in (a._c2s, a._s2c) for m in r.messages)


_SPILL_REQUESTS = {
    "get": b"GET /g HTTP/1.1\r\nHost: a\r\n\r\n",
    "head": b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
    "post100": b"POST /p HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    "bad": b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n",
    "badreq": b"POST /q HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "processing": b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
}
_SPILL_RESPONSES = {
    "get": resp(b"Content-Length: 2\r\n", b"ok"),
    "head": resp(b"Content-Length: 5\r\n"),
    "post100": b"HTTP/1.1 100 Continue\r\n\r\n" + resp(b"Content-Length: 2\r\n", b"ok"),
    "bad": resp(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"),
    "badreq": resp(b"Content-Length: 0\r\n"),
    "processing": b"HTTP/1.1 102 Processing\r\n\r\n" * 3 + resp(b"Content-Length: 2\r\n", b"ok"),
}


@given(st.data())
def test_spilling_never_changes_the_exchanges(data: st.DataObject) -> None:
    """Whatever the exchanges (HEAD, 100 Continue, 1xx beyond INTERIM_KEPT, faults in either direction), however far the requests run ahead
    of the responses or behind them, with one side missing or cut short, messages read in two pieces, and however
    small the spill's lag and chunks: the spilled analyzer reports the same exchanges, findings and drops as the
    one that keeps all; those it keeps only as their JSON text are none a page shows."""
    from pcapcheck.analyzers import http1
    from pcapcheck.report import views

    kinds = data.draw(st.lists(st.sampled_from(sorted(_SPILL_REQUESTS)), min_size=1, max_size=30), label="kinds")
    sides = data.draw(st.sampled_from(["both", "requests", "responses"]), label="sides")
    answered = data.draw(st.integers(0, len(kinds)), label="answered") if sides == "both" else len(kinds)
    streams = {C2S: [_SPILL_REQUESTS[k] for k in kinds] if sides != "responses" else [],
               S2C: [_SPILL_RESPONSES[k] for k in kinds[:answered]] if sides != "requests" else []}
    if streams[S2C] and data.draw(st.booleans(), label="last_interim"):
        streams[S2C].append(b"HTTP/1.1 100 Continue\r\n\r\n")  # an exchange whose final response never came
    pieces = {}
    for direction, messages in streams.items():  # each message whole or in two pieces (read half, then the rest)
        pieces[direction] = []
        for m in messages:
            cut = data.draw(st.integers(0, len(m) - 1), label="cut")
            pieces[direction] += [m[:cut], m[cut:]] if cut else [m]
    # the two directions interleaved in any order (a response may even come before its request)
    order = data.draw(st.permutations([C2S] * len(pieces[C2S]) + [S2C] * len(pieces[S2C])), label="order")
    taken = {C2S: 0, S2C: 0}
    events: list[tuple] = []
    for direction in order:
        events.append(("data", direction, pieces[direction][taken[direction]]))
        taken[direction] += 1
    if data.draw(st.booleans(), label="fin"):
        events += [("end", C2S, "fin"), ("end", S2C, "fin")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(http1, "KEEP_FIRST", data.draw(st.integers(1, 12), label="keep_first"))
        mp.setattr(http1, "KEEP_LAST", data.draw(st.integers(1, 4), label="keep_last"))
        mp.setattr(http1, "INTERIM_KEPT", data.draw(st.integers(0, 3), label="interim_kept"))
        # what a page shows (the others may be spilled as their JSON text): as views.shown_exchanges reads it
        for name, most in (("FIRST", 3), ("LAST", 2), ("MARKED", 3)):
            value = data.draw(st.integers(0, most), label=f"page_{name.lower()}")
            mp.setattr(http1, f"PAGE_EXCHANGES_{name}", value)
            mp.setattr(views, f"PAGE_EXCHANGES_{name}", value)
        mp.setattr(http1, "PAGE_EXCHANGES_ALL",
                   http1.PAGE_EXCHANGES_FIRST + http1.PAGE_EXCHANGES_LAST + http1.PAGE_EXCHANGES_MARKED)
        kept = play(events)
        mp.setattr(http1, "SPILL_AFTER", data.draw(st.integers(0, 4), label="spill_after"))
        mp.setattr(http1, "HELD_BUDGET", -1)
        mp.setattr(http1, "SPILL_LAG", data.draw(st.integers(1, 4), label="spill_lag"))
        mp.setattr(http1, "SPILL_CHUNK", data.draw(st.integers(1, 3), label="spill_chunk"))
        spill = ExchangeSpill()
        try:
            spilled = play(events, spill=spill)
            got = list(spilled.analyzer.exchanges)
            same_exchanges(got, list(kept.analyzer.exchanges))
            assert not any(type(got[i]) is ExchangeJson for i in views.shown_exchanges(got))  # what a page shows
            assert spilled.findings == kept.findings and spilled.analyzer.dropped == kept.analyzer.dropped
        finally:
            spill.close()


def test_long_connections_hold_only_their_last_exchanges_when_many_are_open() -> None:
    """With a spill, while the messages the run's conversations hold are estimated over HELD_BUDGET, a long one's
    readers hold the messages of the last SPILL_LAG exchanges or so, not of all the kept ones (KEEP_FIRST): the
    others wait in the spill file and come back in order, as without it. Under the budget nothing is spilled
    (pickling costs time)."""
    from pcapcheck.analyzers import http1

    n = http1.SPILL_AFTER + 3 * http1.SPILL_CHUNK + 5
    events = _keep_alive(n)
    expected = play(events).analyzer.exchanges
    assert [e.request.target for e in expected] == [b"/%d" % i for i in range(n)]
    for others, spilled in ((0, False), (http1.HELD_BUDGET, True)):
        spill = ExchangeSpill()
        spill.held = others  # what the other open conversations hold
        try:
            a = play(events, spill=spill).analyzer
            assert spill.held == others  # this one's part given back at its finish (or when it began to spill)
            if spilled:
                assert http1.SPILL_LAG * 2 <= _held(a) <= (http1.SPILL_LAG + http1.SPILL_CHUNK) * 2
                assert len(a._spilled) == (n - http1.SPILL_LAG) // http1.SPILL_CHUNK
            else:
                assert _held(a) == 2 * n and not a._spilled and spill._spool._file is None
            assert a.exchanges == expected
        finally:
            spill.close()


def test_a_long_connection_with_big_heads_spills_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is of bytes, not of conversations: one long connection whose requests carry 8 KB cookies holds
    more than HELD_BUDGET in 700 exchanges, and spills alone; with small heads it stays in memory."""
    from pcapcheck.analyzers import http1

    n = 700
    peak = [0]
    real_done = Http1Analyzer.message_done

    def done(self, reader, msg):
        if self._spill is not None:
            peak[0] = max(peak[0], self._spill.held)
        return real_done(self, reader, msg)

    for cookie, spilled in ((8000, True), (0, False)):
        events = _keep_alive(n, cookie)
        expected = play(events).analyzer.exchanges
        spill = ExchangeSpill()
        peak[0] = 0
        with monkeypatch.context() as m:
            m.setattr(Http1Analyzer, "message_done", done)
            a = play(events, spill=spill).analyzer
        try:
            assert spill.held == 0
            if spilled:
                assert http1.HELD_BUDGET < peak[0] < http1.HELD_BUDGET * 1.1
                assert _held(a) <= (http1.SPILL_LAG + http1.SPILL_CHUNK) * 2 and a._spilled
            else:
                assert peak[0] < http1.HELD_BUDGET / 2 and _held(a) == 2 * n and not a._spilled
            # spilled: those from PAGE_EXCHANGES_ALL on as their JSON text (no page shows them)
            assert (same_exchanges(a.exchanges, expected) > 0) == spilled
        finally:
            spill.close()


def test_the_held_estimate_counts_a_whole_head() -> None:
    """A head longer than the raw head kept (RAW_HEAD_KEEP) is held whole in its fields: the estimate counts it
    (40 KB cookies: about 82 KB an exchange, as tracemalloc measures), not the 16 KiB kept raw."""
    from pcapcheck.http.reader import RAW_HEAD_KEEP

    cookie = 40_000
    assert cookie > 2 * RAW_HEAD_KEEP
    events = _keep_alive(50, cookie)[:-2]  # (not ended: the conversation still holds them)
    spill = ExchangeSpill()
    a = Http1Analyzer(CONV, spill)
    for frame, (_, direction, data) in enumerate(events, start=1):
        a.sink(direction)(sum(len(e[2]) for e in events[:frame - 1] if e[1] == direction), data, frame, frame)
        a.after_segment()
    try:
        assert 50 * 2 * cookie < spill.held < 50 * 3 * cookie
    finally:
        spill.close()


def test_spilled_exchanges_come_back_a_chunk_at_a_time() -> None:
    """A conversation's exchanges with some spilled are an ExchangeList: equal to the list of them, indexed and
    iterated reading back one chunk at a time, the places of those with a finding known without reading, pickled
    as a tuple; closing the spill while it is still referenced (a result kept after its run) reads it all first."""
    import pickle

    from pcapcheck.analyzers import http1
    from pcapcheck.report import views

    n, bad = 700, {150, 151, 300, 690}
    events: list[tuple] = []
    for i in range(n):
        events.append(("data", C2S, b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i))
        te = b"Transfer-Encoding: chunked\r\n" * (2 if i in bad else 1)
        events.append(("data", S2C, resp(te, b"2\r\nok\r\n0\r\n\r\n")))
    events += [("end", C2S, "fin"), ("end", S2C, "fin")]
    expected = list(play(events).analyzer.exchanges)
    assert [i for i, x in enumerate(expected) if x.findings] == sorted(bad)
    spill = ExchangeSpill()
    spill.held = http1.HELD_BUDGET
    reads = []
    real_read = spill.read
    spill.read = lambda where: reads.append(where) or real_read(where)  # type: ignore[method-assign]
    try:
        ex = play(events, spill=spill).analyzer.exchanges
        assert type(ex) is ExchangeList and len(ex._chunks) == (n - http1.SPILL_LAG) // http1.SPILL_CHUNK
        reads.clear()
        assert ex.marked() == sorted(bad) and not reads
        shown = views.shown_exchanges(ex)
        assert shown == views.shown_exchanges(tuple(expected)) and not reads
        assert ex[-1] == expected[-1] and ex[0] == expected[0] and ex[1] == expected[1] and len(reads) == 1
        assert ex[10:20] == tuple(expected[10:20]) and ex[-3:] == tuple(expected[-3:])
        with pytest.raises(IndexError):
            ex[n]
        reads.clear()
        got = list(ex)
        assert len(reads) <= len(ex._chunks)  # each once (one may be cached)
        # the spilled ones without a finding from PAGE_EXCHANGES_ALL on are their JSON text; the page shows none
        spilled = ex._starts[-1]  # (how many are in the spill)
        assert same_exchanges(got, expected) == len(set(range(http1.PAGE_EXCHANGES_ALL, spilled)) - bad) > 0
        assert not any(type(got[i]) is ExchangeJson for i in shown)
        assert ex == got and got == ex and ex == tuple(got) and ex != got[1:] and ex != expected
        copy = pickle.loads(pickle.dumps(ex))
        assert type(copy) is tuple and copy == tuple(got)
        spill.close()
        assert ex == got and not ex._chunks
    finally:
        spill.close()


@pytest.mark.parametrize(("lag", "keep_last", "texts"), [(1, 4, 0), (4, 1, 0), (2, 2, 5), (3, 4, 4)])
def test_exchanges_a_page_may_show_are_never_spilled_as_text(monkeypatch: pytest.MonkeyPatch, lag: int,
                                                             keep_last: int, texts: int) -> None:
    """An exchange is spilled as its JSON text only when no page can show it: not among the first (nor while all are
    shown), and followed by at least PAGE_EXCHANGES_LAST kept exchanges, i.e. SPILL_LAG and KEEP_LAST both that many
    (with a lag of 1 the exchange before the last would be one of a page's last two)."""
    from pcapcheck.analyzers import http1
    from pcapcheck.report import views

    for name, value in (("FIRST", 1), ("LAST", 2), ("MARKED", 0)):
        monkeypatch.setattr(http1, f"PAGE_EXCHANGES_{name}", value)
        monkeypatch.setattr(views, f"PAGE_EXCHANGES_{name}", value)
    monkeypatch.setattr(http1, "PAGE_EXCHANGES_ALL", 3)
    monkeypatch.setattr(http1, "KEEP_LAST", keep_last)
    events = _keep_alive(10)
    expected = list(play(events).analyzer.exchanges)
    for name, value in (("SPILL_AFTER", 0), ("HELD_BUDGET", -1), ("SPILL_LAG", lag), ("SPILL_CHUNK", 1)):
        monkeypatch.setattr(http1, name, value)
    spill = ExchangeSpill()
    try:
        got = list(play(events, spill=spill).analyzer.exchanges)
        assert same_exchanges(got, expected) == texts  # exchanges 3 .. 9 - lag
        assert not any(type(got[i]) is ExchangeJson for i in views.shown_exchanges(got))
    finally:
        spill.close()


def test_requests_only_hold_only_their_last_requests_when_many_are_open() -> None:
    """A long capture of the requests only (asymmetric routing), while the held messages are over HELD_BUDGET: the
    reader holds the last SPILL_LAG requests or so, not the KEEP_FIRST kept ones."""
    from pcapcheck.analyzers import http1

    n = http1.SPILL_AFTER + 3 * http1.SPILL_CHUNK + 5
    events = [*_one_side(C2S, n, {3, n - 100}), ("end", C2S, "fin"), ("end", S2C, "fin")]
    expected = play(events).analyzer.exchanges
    spill = ExchangeSpill()
    spill.held = http1.HELD_BUDGET  # what the other open conversations hold
    try:
        a = play(events, spill=spill).analyzer
        assert http1.SPILL_LAG <= _held(a) <= http1.SPILL_LAG + http1.SPILL_CHUNK
        assert len(a._spilled) == (n - http1.SPILL_LAG) // http1.SPILL_CHUNK
        assert a.exchanges == expected and len(expected) == n
        assert [e.index for e in expected if e.findings] == [3, n - 100]
    finally:
        spill.close()


# --- capture loss and the end of the stream ------------------------------------------------------------------


def test_gap_inside_content_length_body_is_incomplete_not_malformed() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    r = play(
        [
            ("data", C2S, GET + GET),
            ("data", S2C, head + b"a" * 30),
            ("gap", S2C, 40),
            ("data", S2C, b"b" * 30 + OK_EMPTY),
            ("end", S2C, "fin"),
        ]
    )
    f = r.only("http.incomplete")
    assert r.codes == ["http.incomplete"] and f.severity is Severity.INFO
    assert f.detail["gap_offset"] == len(head) + 30 and f.detail["framing_intact"] and f.frames == (3, 2)
    ex = r.analyzer.exchanges
    assert ex[0].response.state is MessageState.INCOMPLETE and ex[0].response.body_missing == 40
    assert ex[1].response.state is MessageState.COMPLETE


def test_gap_inside_chunk_data_keeps_framing() -> None:
    r = play(
        [
            ("data", C2S, GET),
            ("data", S2C, OK_CHUNKED + b"64\r\n" + b"a" * 10),
            ("gap", S2C, 50),
            ("data", S2C, b"a" * 40 + b"\r\n0\r\n\r\n"),
            ("end", S2C, "fin"),
        ]
    )
    assert r.codes == ["http.incomplete"]
    response = r.analyzer.exchanges[0].response
    assert response.body_length == 100 and response.body_missing == 50 and response.state is MessageState.INCOMPLETE


def test_gap_across_messages_resynchronises() -> None:
    r = play(
        [
            ("data", C2S, GET + GET + GET),
            ("data", S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            ("gap", S2C, 30),  # the rest of the body and the start of the second response
            ("data", S2C, b"tent-Length: 0\r\n\r\n" + OK_EMPTY),
            ("end", S2C, "fin"),
        ]
    )
    assert r.codes == ["http.incomplete"]
    assert not r.only("http.incomplete").detail["framing_intact"]
    ex = r.analyzer.exchanges
    assert ex[1].response is not None and ex[1].pairing is Pairing.UNCERTAIN


def test_gap_in_head_and_implicit_gap() -> None:
    r = play(
        [
            ("data", C2S, b"GET / HTTP/1.1\r\nHo"),
            ("data", C2S, GET, 60),  # 42 bytes never delivered: an implicit gap
            ("end", C2S, "fin"),
        ]
    )
    assert r.codes == ["http.incomplete"]
    assert len(r.analyzer.exchanges) == 1 and r.analyzer.exchanges[0].request.offset == 60


@pytest.mark.parametrize(
    "s2c,code",
    [
        (resp(b"Content-Length: 10\r\n", b"hello"), "http.body.truncated"),
        (OK_CHUNKED + b"5\r\nhello\r\n", "http.chunk.truncated"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "http.head.truncated"),
    ],
    ids=["cl", "chunked", "head"],
)
def test_fin_truncates_but_capture_end_is_only_incomplete(s2c: bytes, code: str) -> None:
    truncated = run(GET, s2c, end="fin")
    assert truncated.codes == [code] and truncated.findings[0].severity is Severity.ERROR
    assert truncated.findings[0].detail["end_reason"] == "fin"
    for end in ("capture-ended", None):  # an explicit end event, or finish() without one
        r = run(GET, s2c, end=end)
        assert r.codes == ["http.incomplete"] and r.findings[0].severity is Severity.INFO


def test_body_truncated_names_last_frame_and_end_frame() -> None:
    r = play([("data", C2S, GET), ("data", S2C, resp(b"Content-Length: 10\r\n", b"hello")), ("end", S2C, "rst")])
    f = r.only("http.body.truncated")
    assert f.frames == (2, 3) and f.detail["missing"] == 5 and "RST at frame 3" in f.message
    assert r.analyzer.exchanges[0].response.state is MessageState.TRUNCATED


def test_until_close_ended_by_fin_is_complete() -> None:
    r = run(GET, b"HTTP/1.0 200 OK\r\n\r\nall of it")
    assert r.findings == [] and r.analyzer.exchanges[0].response.body_excerpt == b"all of it"


def test_large_bodies_are_walked_not_stored() -> None:
    """8 MB bodies, one framed by Content-Length and one chunked, in 16 KiB segments: the reader never holds more
    than a segment or two of them, and a whole message keeps its body's first KiB (JSON_BODY_EXCERPT: all its
    report.json and its page show), though it kept BODY_KEEP while it was read (proxy error pages)."""
    from pcapcheck.http.model import JSON_BODY_EXCERPT

    body = bytes(range(256)) * (32 * 1024)
    chunked = b"".join(b"10000\r\n" + body[i : i + 0x10000] + b"\r\n" for i in range(0, len(body), 0x10000))
    s2c = resp(b"Content-Length: %d\r\n" % len(body), body) + OK_CHUNKED + chunked + b"0\r\n\r\n"
    a = Http1Analyzer(CONV)
    a.data(StreamData(C2S, 0, GET + GET, 1, 0))
    held = 0
    for i in range(0, len(s2c), 16384):
        a.data(StreamData(S2C, i, s2c[i : i + 16384], 2 + i // 16384, 0))
        held = max(held, len(a._s2c._stream.buf))
    a.end(StreamEnd(S2C, len(s2c), None, "fin"))
    assert a.finish() == []
    assert held <= 2 * 16384
    ex = a.exchanges
    assert [e.response.body_length for e in ex] == [len(body), len(body)]
    assert [e.response.body_excerpt for e in ex] == [body[:JSON_BODY_EXCERPT]] * 2
