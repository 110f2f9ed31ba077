"""The pure pieces of the HTTP analysis: grammar, head parsing, framing (RFC 9112 §6.3), chunked decoding,
proxy error pages, and the code / peers / docs tables staying in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pcapcheck.http import abnf, codes
from pcapcheck.http.chunked import ChunkedDecoder, ChunkPhase
from pcapcheck.http.codes import CODES
from pcapcheck.http.framing import (
    Chunked,
    ClAbsent,
    ClInvalid,
    ClValid,
    ContentLength,
    NoBody,
    Tunnel,
    Unframed,
    UntilClose,
    analyze_headers,
    body_framing,
    framing_json,
)
from pcapcheck.http.issues import show
from pcapcheck.http.parser import BadStartLine, HeaderField, Line, RequestLine, StatusLine, parse_head
from pcapcheck.http.peers import PEER_NAMES, PEERS, peers_for
from pcapcheck.http.proxy import recognize

DOCS = Path(__file__).resolve().parent.parent / "docs" / "findings" / "http.md"


def fields(*lines: bytes) -> list[HeaderField]:
    out, off = [], 100
    for i, raw in enumerate(lines):
        name, _, value = raw.partition(b":")
        out.append(HeaderField(name, value.strip(), i + 1, off, raw))
        off += len(raw) + 2
    return out


def head(*lines: bytes, request: bool = True):
    start = b"GET / HTTP/1.1" if request else b"HTTP/1.1 200 OK"
    all_lines, off = [], 0
    for i, data in enumerate([start, *lines]):
        all_lines.append(Line(off, data + b"\r", i + 1))
        off += len(data) + 2
    return parse_head(all_lines, Line(off, b"\r", 99), request)


# --- grammar -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix,ok",
    [
        (b"G", True),
        (b"GET / HTTP/1.1\r", True),
        (b"GET /x HTT", True),
        (b"\x16\x03\x01", False),
        (b"GET  /", False),
        (b"GET / HTTP/2", False),
        (b"GET / HTTP/1.1x", False),
        (b"A" * 40, False),
        (b"PRI * HTTP/2.0", False),
    ],
)
def test_request_line_prefix(prefix: bytes, ok: bool) -> None:
    assert abnf.request_line_prefix_ok(prefix) is ok


def test_response_prefix() -> None:
    assert abnf.response_prefix_ok(b"HTT") and abnf.response_prefix_ok(b"HTTP/1.1 200")
    assert not abnf.response_prefix_ok(b"HTTP/2 200") and not abnf.response_prefix_ok(b"\x15\x03")


def test_chunk_ext_grammar() -> None:
    assert abnf.CHUNK_EXT.fullmatch(b';a=b;c="d e";f')
    assert abnf.CHUNK_EXT.fullmatch(b" ; a = b")  # BWS
    assert not abnf.CHUNK_EXT.fullmatch(b";=b")
    assert not abnf.CHUNK_EXT.fullmatch(b";a=\r")


def test_show_escapes_and_cuts() -> None:
    assert show(b"a\r\nb") == "b'a\\r\\nb'"
    assert show(b"x" * 100, 4) == "b'xxxx...'"
    assert show(b"it's" * 30, 4) == 'b"it\'s..."'


# --- heads ---------------------------------------------------------------------------------------------------


def test_start_lines() -> None:
    h = head()
    assert h.start == RequestLine(b"GET", b"/", b"HTTP/1.1")
    r = head(request=False)
    assert r.start == StatusLine(b"HTTP/1.1", 200, b"OK")
    assert isinstance(parse_head([Line(0, b"GET /\r", 1)], Line(7, b"\r", 1), True), BadStartLine)
    assert isinstance(parse_head([Line(0, b"HTTP/1.1 2000 OK\r", 1)], Line(7, b"\r", 1), False), BadStartLine)
    no_reason = parse_head([Line(0, b"HTTP/1.1 204\r", 1)], Line(14, b"\r", 1), False)
    assert no_reason.start == StatusLine(b"HTTP/1.1", 204, b"")


def test_fields_keep_case_order_and_raw_bytes() -> None:
    h = head(b"X-B: 1", b"x-a:  two  ", b"X-B: 3")
    assert [(f.name, f.value, f.frame) for f in h.fields] == [(b"X-B", b"1", 2), (b"x-a", b"two", 3), (b"X-B", b"3", 4)]
    assert h.fields[1].raw == b"x-a:  two  " and h.fields[1].offset == 24
    assert h.issues == ()


def test_head_issues() -> None:
    h = head(b"Host : a", b"X-A: a\rb", b" folded", b"no colon", b"B@d: x", b"X-C: \x00")
    got = [(i.code, i.offset) for i in h.issues]
    assert got == [
        (codes.HEADER_SPACE_BEFORE_COLON, 20),
        (codes.HEADER_BARE_CR, 32),
        (codes.HEADER_OBS_FOLD, 36),
        (codes.HEADER_INVALID, 45),
        (codes.HEADER_INVALID, 55),
        (codes.HEADER_INVALID, 68),
    ]
    assert [f.name for f in h.fields] == [b"Host", b"X-A", b"X-C"]
    assert h.fields[1].value == b"a b folded"


def test_whitespace_line_after_start_line_is_ignored() -> None:
    h = head(b" Transfer-Encoding: chunked", b"Host: a")
    assert [i.code for i in h.issues] == [codes.HEADER_OBS_FOLD]
    assert [f.name for f in h.fields] == [b"Host"]


# --- framing -------------------------------------------------------------------------------------------------


def analyze(*lines: bytes, request: bool = False, version: bytes = b"HTTP/1.1"):
    return analyze_headers(fields(*lines), is_request=request, version=version)


def issue_codes(hf) -> list[str]:
    return [i.code for i in hf.issues]


@pytest.mark.parametrize(
    "lines,expected",
    [
        ([b"Transfer-Encoding: chunked"], []),
        ([b"Transfer-Encoding: CHUNKED"], []),
        ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: Chunked"], [codes.TE_DUPLICATE]),
        ([b"Transfer-Encoding: chunked, chunked"], [codes.TE_CHUNKED_TWICE]),
        ([b"Transfer-Encoding: chunked,, "], []),
        ([b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"], [codes.TE_DUPLICATE, codes.TE_UNSUPPORTED]),
        ([b"Transfer-Encoding: chunked;a=b"], [codes.TE_UNKNOWN]),
        ([b"Transfer-Encoding: "], [codes.TE_UNKNOWN, codes.TE_CHUNKED_NOT_FINAL]),
        ([b"Transfer-Encoding: chunked, gzip"], [codes.TE_CHUNKED_NOT_FINAL]),
        ([b"Content-Length: 5, 5"], [codes.CL_DUPLICATE]),
        ([b"Content-Length: 5, 6"], [codes.CL_CONFLICT]),
        ([b"Content-Length: +5"], [codes.CL_INVALID]),
        ([b"Content-Length: 0"], []),
        ([b"Content-Length: 9223372036854775807"], []),
        ([b"Content-Length: 9223372036854775808"], [codes.CL_INVALID]),
        ([b"Content-Length: " + b"9" * 5000], [codes.CL_INVALID]),
        ([b"Transfer-Encoding: chunked", b"Content-Length: 5"], [codes.TE_CL_CONFLICT]),
    ],
)
def test_header_framing_faults(lines: list[bytes], expected: list[str]) -> None:
    assert issue_codes(analyze(*lines)) == expected


def test_te_names_compare_ascii_only() -> None:
    hf = analyze("Transfer-Encoding: chun\u212aed".encode())
    assert issue_codes(hf) == [codes.TE_UNKNOWN, codes.TE_CHUNKED_NOT_FINAL]
    assert not hf.chunked_final


def test_cl_states() -> None:
    assert analyze().cl == ClAbsent()
    assert analyze(b"Content-Length: 007").cl == ClValid(7)
    assert issue_codes(analyze(b"Content-Length: 007")) == [codes.CL_LEADING_ZEROS]
    assert isinstance(analyze(b"Content-Length: x").cl, ClInvalid)
    assert isinstance(analyze(b"Content-Length: 1", b"Content-Length: 2").cl, ClInvalid)


@pytest.mark.parametrize(
    "lines,is_request,status,method,expected",
    [
        # 1. HEAD, 1xx, 204, 304: no body whatever the headers say
        ([b"Content-Length: 9"], False, 200, b"HEAD", NoBody()),
        ([b"Transfer-Encoding: chunked"], False, 304, b"GET", NoBody()),
        ([b"Content-Length: 9"], False, 204, b"GET", NoBody()),
        ([], False, 100, None, NoBody()),
        ([], False, 101, b"GET", Tunnel()),
        # 2. 2xx to CONNECT
        ([], False, 200, b"CONNECT", Tunnel()),
        ([], False, 407, b"CONNECT", UntilClose()),
        # 3./4. TE overrides CL; chunked final; response without chunked final reads to close; request 400
        ([b"Content-Length: 3", b"Transfer-Encoding: chunked"], True, 0, None, Chunked()),
        ([b"Transfer-Encoding: gzip"], False, 200, b"GET", UntilClose()),
        ([b"Transfer-Encoding: gzip"], True, 0, None, Unframed("request Transfer-Encoding does not end with chunked")),
        # 5./6. invalid or valid CL
        ([b"Content-Length: x"], True, 0, None, Unframed("invalid Content-Length: not 1*DIGIT")),
        ([b"Content-Length: 4, 4"], False, 200, b"GET", ContentLength(4)),
        # 7./8. nothing declared
        ([], True, 0, None, NoBody()),
        ([], False, 200, None, UntilClose()),
    ],
)
def test_body_framing_follows_rfc9112_6_3(lines, is_request, status, method, expected) -> None:
    hf = analyze(*lines, request=is_request)
    assert body_framing(hf, is_request=is_request, status=status, request_method=method) == expected


def test_framing_json() -> None:
    assert framing_json(ContentLength(3)) == {"type": "content-length", "length": 3}
    assert framing_json(Chunked()) == {"type": "chunked"}
    assert framing_json(Unframed("x")) == {"type": "unframed", "reason": "x"}


# --- chunked -------------------------------------------------------------------------------------------------


def decode(body: bytes, step: int = 0, base: int = 1000) -> ChunkedDecoder:
    dec = ChunkedDecoder(base)
    buf = bytearray()
    pos = 0
    chunks = [body] if step == 0 else [body[i : i + step] for i in range(0, len(body), step)]
    for piece in chunks:
        buf += piece
        new = dec.feed(buf, pos, base)
        del buf[:new]
        base += new
        pos = 0
    return dec


@pytest.mark.parametrize("step", [0, 1, 3])
def test_chunked_decodes_with_trailers(step: int) -> None:
    dec = decode(b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nNEXT", step)
    assert dec.done and dec.kept == b"abc0123456789abcdef" and dec.decoded == 19 and dec.chunks == 2
    assert dec.trailer_lines == [(1000 + 33, b"X-T: 1\r")] and dec.issues == []
    assert dec.end == 1000 + 43


def test_chunked_stops_at_first_fatal_fault() -> None:
    dec = decode(b"5\r\nhelloXX0\r\n\r\n")
    assert dec.failed and [i.code for i in dec.issues] == [codes.CHUNK_CRLF_MISSING]
    assert dec.issues[0].offset == 1008


def test_chunked_overflow_boundaries() -> None:
    assert decode(b"7fffffffffffffff\r\n").phase is ChunkPhase.DATA
    assert [i.code for i in decode(b"8000000000000000\r\n").issues] == [codes.CHUNK_SIZE_OVERFLOW]
    assert [i.code for i in decode(b"00000000000000001\r\n").issues] == [codes.CHUNK_SIZE_OVERFLOW]


def test_chunked_whitespace_variants() -> None:
    for line in (b" 5\r\n", b"5 \r\n", b"5\t;a\r\n"):
        dec = decode(line + b"hello\r\n0\r\n\r\n")
        assert dec.done
        assert codes.CHUNK_WHITESPACE in [i.code for i in dec.issues]


def test_chunked_gap_inside_data() -> None:
    dec = decode(b"a\r\nabc")
    assert dec.gap(4) and dec.remaining == 3 and dec.missing == 4
    assert not dec.gap(10)


def test_chunked_line_limit() -> None:
    dec = decode(b"1;" + b"a" * 20000)
    assert dec.failed and dec.issues[0].code == codes.CHUNK_SIZE_INVALID


# --- proxies -------------------------------------------------------------------------------------------------


def test_recognize_envoy_variants() -> None:
    retried = (
        b"upstream connect error or disconnect/reset before headers. retried and the latest reset reason: "
        b"remote connection failure, transport failure reason: delayed connect error: 111"
    )
    p = recognize(503, fields(b"server: envoy"), retried)
    assert p is not None and p.detail["upstream_failure"] == "remote connection failure"
    assert p.detail["retried"] and p.detail["transport_failure"] == "delayed connect error: 111"
    assert p.detail["likely_flag"] == "UF"
    assert recognize(503, fields(b"server: envoy"), b"no healthy upstream").detail["likely_flag"] == "UH"
    assert recognize(200, [], retried) is None
    assert recognize(502, [], b"<html>hello</html>") is None


# --- tables and docs stay in step ----------------------------------------------------------------------------


def test_every_code_has_peers_and_docs() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^### `(http\.[a-z0-9.-]+)`", text, flags=re.M))
    assert documented == set(CODES)
    assert set(PEERS) == set(CODES)
    for code in CODES:
        for side in (True, False):
            cells = peers_for(code, side)
            assert tuple(cells) == PEER_NAMES and all(cells.values())
        assert CODES[code].rule.startswith("RFC")
