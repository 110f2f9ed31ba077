"""The HTTP hot paths give what the general paths give (docs/performance.md, "HTTP hot path").

- a clean head read in one go (parser.parse_clean_fields) gives the fields parse_head gives, with no issue;
- ChunkedDecoder.skim leaves the decoder exactly as feed would, or declines and changes nothing;
- segments taken without buffering (DirectionReader.fast_data, DirectionReader.through) keep counters, excerpts,
  frames and the stream's end as the buffered path does, and the offset->frame map stays bounded;
- a finished analyzer holds no reference cycle (DirectionReader.detach).
"""

from __future__ import annotations

import bisect
import gc
import random
import weakref
from dataclasses import FrozenInstanceError, fields

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import pcapcheck.analyzers.http1 as _http1_module
import pcapcheck.http.chunked as _chunked_module
from pcapcheck.analyzers.http1 import Http1Analyzer
from pcapcheck.findings import C2S, S2C
from pcapcheck.http import codes
from pcapcheck.http import parser as parser_module
from pcapcheck.http.chunked import ChunkedDecoder, ChunkPhase
from pcapcheck.http.framing import ClAbsent, HeaderFraming, _analyze_headers, analyze_headers
from pcapcheck.http.model import JSON_BODY_EXCERPT
from pcapcheck.http.parser import (
    HeaderField,
    Line,
    RequestLine,
    StatusLine,
    parse_clean_fields,
    parse_head,
    parse_start_line,
)
from pcapcheck.http.reader import BODY_KEEP, DETAILED_MESSAGES, PAUSE_LIMIT
from pcapcheck.http.streambuf import HISTORY
from pcapcheck.tcp.events import Gap, StreamData, StreamEnd
from tests.conftest import interpreted
from tests.test_http_analyzer import SPLITS, key, play, segments

SEG = 1448

# --- clean heads ---------------------------------------------------------------------------------------------

NAME = st.sampled_from(
    [b"Host", b"Content-Length", b"transfer-encoding", b"X-Content-Len", b"x-a", b"X_B!", b"", b"Bad Name", b"A:B"]
    + [b"\xc3\xa9"]
)
VALUE = st.lists(
    st.sampled_from(
        [b"v", b"1", b"0", b"chunked", b",", b" ", b"\t", b"\x00", b"\x01", b"\x7f", b"\x80", b"\xff", b"\r", b":"]
        + [b"a b"]
    ),
    max_size=6,
).map(b"".join)


@st.composite
def field_lines(draw) -> list[bytes]:
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(st.sampled_from([b" folded", b"\tx", b"no colon", b"X :1", b""])))
        else:
            lines.append(draw(NAME) + b":" + draw(VALUE))
    return lines


@given(field_lines(), st.sampled_from([b"\r\n", b"\n"]), st.sampled_from([b"GET / HTTP/1.1\r", b"GET / HTTP/1.1"]))
@example([b"A: x \t", b"B:\t", b"C:  y  z "], b"\r\n", b"GET / HTTP/1.1\r")
@example([b"A: x", b"B : y"], b"\r\n", b"GET / HTTP/1.1\r")
def test_clean_head_path_agrees_with_parse_head(lines, eol, start_line) -> None:
    fields_at = 100 + len(start_line) + 1
    block = b"".join(line + eol for line in lines)
    # the general path: every line with its CR (if any), the empty line last
    datas = [start_line, *(line + eol[:-1] for line in lines), b"\r"]
    heads = [Line(100, start_line, 7)]
    for d in datas[1:]:
        heads.append(Line(heads[-1].offset + len(heads[-1].data) + 1, d, 7))
    general = parse_head(heads[:-1], heads[-1], True)
    clean = parse_clean_fields(start_line, fields_at, block, 7)
    if clean is not None:
        assert general.issues == ()
        assert clean == general.fields
        assert [type(f) for f in clean] == [type(f) for f in general.fields]
        framing = analyze_headers(clean, is_request=True, version=b"HTTP/1.1")
        assert framing == analyze_headers(general.fields, is_request=True, version=b"HTTP/1.1")


def test_clean_heads_share_their_field_names_up_to_a_bound(monkeypatch) -> None:
    """Kept heads share one bytes object per field name (thousands of heads on a long connection), and the
    table of shared names stops growing at its bound, whatever names the traffic makes up."""
    monkeypatch.setattr(parser_module, "_NAMES", {})
    monkeypatch.setattr(parser_module, "_NAMES_MAX", 3)
    start = b"GET / HTTP/1.1\r"

    def fields(block: bytes) -> tuple[HeaderField, ...]:
        out = parse_clean_fields(start, 100, block, 7)
        assert out is not None
        return out

    one = fields(b"Host: a\r\nX-One: 1\r\n")
    two = fields(b"Host: b\r\nX-One: 2\r\nX-Two: 3\r\nX-Three: 4\r\n")
    assert [f.name for f in two] == [b"Host", b"X-One", b"X-Two", b"X-Three"] and [f.value for f in two] == [
        b"b", b"2", b"3", b"4"]
    assert two[0].name is one[0].name and two[1].name is one[1].name
    three = fields(b"X-Two: 5\r\nX-Three: 6\r\n")
    assert three[0].name is two[2].name  # the third name: shared
    assert three[1].name is not two[3].name and three[1].name == b"X-Three"  # over the bound: not kept
    assert len(parser_module._NAMES) == 3


@given(field_lines(), st.sampled_from([b"\r\n", b"\n"]), st.lists(st.integers(100, 200), max_size=6))
@example([b"A: 1", b"B: 2", b"C: 3"], b"\r\n", [117, 121, 122])
def test_clean_head_over_segments_agrees_with_parse_head(lines, eol, cuts) -> None:
    """A head over several segments (frames 7, 8, ... from each offset in ``cuts`` on): each field has the frame
    of its line's first byte, as parse_head gives it."""
    start_line = b"GET / HTTP/1.1\r"
    fields_at = 100 + len(start_line) + 1
    block = b"".join(line + eol for line in lines)
    cuts = sorted(cuts)
    asked = []

    def frames_of(offsets: list[int]) -> list[int]:
        asked.append(offsets)
        return [7 + bisect.bisect_right(cuts, o) for o in offsets]

    datas = [start_line, *(line + eol[:-1] for line in lines), b"\r"]
    offsets = [100]
    for d in datas[:-1]:
        offsets.append(offsets[-1] + len(d) + 1)
    heads = [Line(o, d, f) for o, d, f in zip(offsets, datas, frames_of(offsets))]
    general = parse_head(heads[:-1], heads[-1], True)
    asked.clear()
    clean = parse_clean_fields(start_line, fields_at, block, -1, frames_of)
    if clean is not None:
        assert general.issues == () and clean == general.fields
        assert asked == [offsets[1:-1]]  # one call, for the field lines
    else:
        assert asked == []  # declined before asking


HEADS = [
    b"GET /a HTTP/1.1\r\nHost: example.com\r\nCookie: " + b"c=" * 900 + b"\r\nAccept: */*\r\n\r\n",
    b"GET /b HTTP/1.1\r\nHost: a\r\nX-Obs: one\r\n two\r\nCookie: x\r\n\r\n",  # obs-fold: the general path
    b"GET /c HTTP/1.1\r\nHost: a\r\nX-Bare: 1\nCookie: x\r\n\r\n",  # a bare LF
    b"GET /d HTTP/1.1\r\nHost: a \r\nX-Trailing-OWS:\t1\t\r\n\r\n",
    b"GET /e HTTP/1.1\r\n\r\n",  # no field lines
    b"HEAD /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
]


@pytest.mark.parametrize("how", ["bytes", 1, 2, 3, 4, 5])
def test_heads_over_segments_read_as_the_general_path_reads_them(how, monkeypatch: pytest.MonkeyPatch) -> None:
    """Heads split over segments (the reader's clean path with a frame per field line) give the exchanges and
    findings that the general path (parse_head) gives."""
    from pcapcheck.http import reader

    wire = b"".join(HEADS)
    answers = b"".join(b"HTTP/1.1 204 No Content\r\nX-N: %d\r\n\r\n" % i for i in range(len(HEADS)))
    events = [*(("data", C2S, seg) for seg in segments(wire, how)),
              *(("data", S2C, seg) for seg in segments(answers, how)), ("end", C2S, "fin"), ("end", S2C, "fin")]
    clean = play(events)
    spanning = []
    real = reader.parse_clean_fields

    def one_segment_only(start_line, fields_at, block, frame, frames_of=None):
        spanning.append(frames_of is not None)
        return None if frames_of is not None else real(start_line, fields_at, block, frame)

    monkeypatch.setattr(reader, "parse_clean_fields", one_segment_only)
    general = play(events)
    assert any(spanning)
    assert [f.to_json() for f in clean.findings] == [f.to_json() for f in general.findings]
    assert clean.analyzer.exchanges == general.analyzer.exchanges
    if how == "bytes":  # a frame per byte, from 1: each field has the frame of its line's first byte
        assert all(f.frame == 1 + f.offset for x in clean.analyzer.exchanges for f in x.request.headers)


def test_clean_head_path_takes_usual_heads() -> None:
    block = b"Host: a\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n"
    got = parse_clean_fields(b"GET / HTTP/1.1\r", 16, block, 3)
    assert got is not None
    assert [(f.name, f.value, f.offset, f.frame) for f in got] == [
        (b"Host", b"a", 16, 3),
        (b"User-Agent", b"curl/8.5.0", 25, 3),
        (b"Accept", b"*/*", 49, 3),
        (b"X-Empty", b"", 62, 3),
        (b"X-Obs", b"caf\xc3\xa9", 72, 3),
    ]
    assert got[1].raw == b"User-Agent: curl/8.5.0"
    assert parse_clean_fields(b"GET / HTTP/1.1", 16, block, 3) is None  # bare LF after the start line
    assert parse_clean_fields(b"GET / HTTP/1.1\r", 16, block + b"X : 1\r\n", 3) is None


FRAMING_FIELD = st.tuples(
    st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"X-Content-Lengt"])
    | st.sampled_from([b"Transfer-Encoding", b"transfer-encoding", b"X-Transfer-Encodin"]),
    st.sampled_from([b"0", b"5", b"05", b"00", b"123456789012345678", b"1234567890123456789", b"99999999999999999999"])
    | st.sampled_from([b"-1", b"5, 5", b"5,6", b"", b" 5", b"5 ", b"1e3", b"\xd9\xa5"])
    | st.sampled_from([b"chunked", b"Chunked", b"CHUNKED", b"chunked ", b"chunked;q=1", b"gzip, chunked", b"chunked,"])
    | st.sampled_from([b"chunk\xe2\x84\xaaed", b"chunked, chunked", b"identity", b"x"]),
)


@given(st.lists(FRAMING_FIELD, max_size=3), st.booleans(), st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
def test_framing_shortcuts_agree_with_the_full_analysis(pairs, is_request, version) -> None:
    fields_ = [HeaderField(n, v, 1, 10 * i, n + b": " + v) for i, (n, v) in enumerate(pairs)]
    te = tuple(f for f in fields_ if f.lname == b"transfer-encoding")
    cl = tuple(f for f in fields_ if f.lname == b"content-length")
    full = _analyze_headers(te, cl, is_request=is_request, version=version)
    assert analyze_headers(fields_, is_request=is_request, version=version) == full


def test_objects_built_on_the_hot_path_are_the_frozen_dataclasses() -> None:
    field = parse_clean_fields(b"GET / HTTP/1.1\r", 16, b"Host: a\r\n", 3)[0]
    request = parse_start_line(b"GET /x HTTP/1.1", True)
    status = parse_start_line(b"HTTP/1.1 204", False)
    framing = analyze_headers((field,), is_request=True, version=b"HTTP/1.1")
    built = [
        (field, HeaderField(b"Host", b"a", 3, 16, b"Host: a")),
        (request, RequestLine(b"GET", b"/x", b"HTTP/1.1")),
        (status, StatusLine(b"HTTP/1.1", 204, b"")),
        (framing, HeaderFraming((), b"", (), (), ClAbsent(), ())),
    ]
    for got, made in built:
        assert type(got) is type(made) and got == made and hash(got) == hash(made) and repr(got) == repr(made)
        with pytest.raises(FrozenInstanceError):
            got.__setattr__(fields(got)[0].name, None)


# --- chunked: skim = feed ------------------------------------------------------------------------------------

SIZE_LINES = st.sampled_from(
    ["%x", "%X", "0%x", "%016x", "%017x", " %x", "%x ", "%x;e=1", "%x\r", "0x%x", "%xg"]
)


@st.composite
def chunked_wires(draw) -> bytes:
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        n = draw(st.sampled_from([1, 2, 7, 100, 1447, 1448, 3000]))
        line = draw(SIZE_LINES) if draw(st.integers(0, 4)) == 0 else "%x"
        out += (line % n).encode() + draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
        out += bytes(range(256)) * (n // 256) + bytes(n % 256)
        out += draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"XY"]))
    out += draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n", b"00\r\n\r\n"]))
    if draw(st.booleans()):
        out[:0] = b"7FFFFFFFFFFFFFFF\r\n" if draw(st.booleans()) else b"8000000000000000\r\n"
    return bytes(out)


def state(dec: ChunkedDecoder) -> dict:
    return {k: bytes(v) if isinstance(v, bytearray) else v for k, v in vars(dec).items()}


@given(chunked_wires(), st.integers(0, 2**16), st.sampled_from([0, 3, 4096]))
def test_skim_leaves_the_decoder_as_feed_does(wire, seed, keep) -> None:
    interpreted(_chunked_module)
    rnd = random.Random(seed)
    fed, skimmed = ChunkedDecoder(500, keep=keep), ChunkedDecoder(500, keep=keep)
    bufs = {id(fed): bytearray(), id(skimmed): bytearray()}
    bases = {id(fed): 500, id(skimmed): 500}
    skims = 0

    def walk(dec: ChunkedDecoder, seg: bytes) -> None:
        buf = bufs[id(dec)]
        buf += seg
        pos = dec.feed(buf, 0, bases[id(dec)])
        del buf[:pos]
        bases[id(dec)] += pos

    pos = 0
    while pos < len(wire):
        seg = wire[pos : pos + rnd.choice([1, 2, 5, 17, 700, SEG, SEG, 5000])]
        pos += len(seg)
        walk(fed, seg)
        before = state(skimmed)
        if not bufs[id(skimmed)] and skimmed.skim(seg, bases[id(skimmed)]):
            bases[id(skimmed)] += len(seg)
            skims += 1
        else:
            assert state(skimmed) == before  # declined: nothing changed
            walk(skimmed, seg)
        assert state(skimmed) == state(fed)
        assert bases[id(skimmed)] - len(bufs[id(skimmed)]) == bases[id(fed)] - len(bufs[id(fed)])


def test_skim_walks_plain_chunks_and_declines_the_rest() -> None:
    dec = ChunkedDecoder(0)
    wire = b"".join(b"%x\r\n" % n + bytes(n) + b"\r\n" for n in (10, 200, 3))
    assert dec.skim(wire[:-2], 0)  # ends right after the last chunk's data
    assert (dec.phase, dec.chunks, dec.decoded, dec.end) == (ChunkPhase.DATA_CRLF, 3, 213, len(wire) - 2)
    assert not dec.skim(b"\r\n0\r\n\r\n", dec.end)  # the last-chunk is feed's
    assert not dec.skim(b"\r\n5;x\r\nhello", dec.end)  # so is an extension
    assert not dec.skim(b"\r\n1", dec.end)  # and a line that has not ended
    assert dec.phase is ChunkPhase.DATA_CRLF and dec.issues == []


# --- segments taken without buffering ------------------------------------------------------------------------


def feed(a: Http1Analyzer, direction: str, data: bytes, offset: int, frame: int, size: int = SEG) -> tuple[int, int]:
    for i in range(0, len(data), size):
        seg = data[i : i + size]
        a.data(StreamData(direction, offset, seg, frame, frame))
        offset += len(seg)
        frame += 1
    return offset, frame


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
def test_offset_frame_map_stays_bounded_in_a_long_body(framing: str) -> None:
    body = bytes(range(256)) * 4000  # 1 MB
    if framing == "content-length":
        head, wire = b"Content-Length: %d\r\n" % len(body), body
    elif framing == "chunked":
        head = b"Transfer-Encoding: chunked\r\n"
        pieces = [body[i : i + 5000] for i in range(0, len(body), 5000)]
        wire = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces)
        wire += b"0\r\n\r\n"
    else:
        head, wire = b"", body
    a = Http1Analyzer(1)
    a.data(StreamData(C2S, 0, b"GET / HTTP/1.1\r\n\r\n", 1, 1))
    off, frame = feed(a, S2C, b"HTTP/1.1 200 OK\r\n" + head + b"\r\n", 0, 2)
    stream = a._s2c._stream
    longest = 0
    for i in range(0, len(wire), SEG):
        off, frame = feed(a, S2C, wire[i : i + SEG], off, frame)
        longest = max(longest, len(stream.seg_off), len(stream.buf))
    assert longest <= 2
    a.end(StreamEnd(S2C, off, frame, "fin"))
    assert a.finish() == []
    msg = a.exchanges[0].response
    assert msg.body_length == len(body) and msg.body_excerpt == body[:JSON_BODY_EXCERPT]  # (whole: one KiB)
    assert msg.last_frame == frame - 1 and msg.end_offset == off
    assert stream.history == wire[-HISTORY:]


def test_a_not_http_direction_only_tracks_its_end() -> None:
    tls = b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 40
    a = Http1Analyzer(1)
    off, frame = feed(a, C2S, tls, 0, 1)
    reader = a._c2s
    assert reader.through is not None
    a.data(StreamData(C2S, 100, tls[100:300], frame, frame))  # an old copy: nothing new
    a.gap(Gap(C2S, off, 700, frame + 1, "lost"))
    off, frame = feed(a, C2S, tls, off + 700, frame + 2)
    a.data(StreamData(C2S, off + 50, tls[:10], frame, frame))  # after 50 bytes never delivered
    a.end(StreamEnd(C2S, off + 60, frame + 1, "fin"))
    assert a.finish() == []
    summary = a.summary()[C2S]
    assert summary["http"] is False and summary["lost_bytes"] == 750 and reader.offset == off + 60
    assert len(reader._stream.seg_off) <= 1 and not reader._stream.buf


def test_a_fault_after_a_long_body_has_its_frames_and_excerpt() -> None:
    body = bytes(range(256)) * 20
    s2c = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body + b"XTTP/1.1 200 OK\r\n\r\n"
    runs = {}
    for how in ("whole", "bytes", 1, 2):
        events = [("data", C2S, b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")]
        events += [("data", S2C, seg) for seg in segments(s2c, how)]
        events += [("end", C2S, "fin"), ("end", S2C, "fin")]
        runs[how] = play(events)
    events = [("data", C2S, b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")]
    events += [("data", S2C, s2c[i : i + SEG]) for i in range(0, len(s2c), SEG)]
    events += [("end", C2S, "fin"), ("end", S2C, "fin")]
    runs["1448"] = play(events)
    for r in runs.values():
        assert [key(f) for f in r.findings] == [key(f) for f in runs["whole"].findings]
    f = runs["1448"].only("http.unparseable")
    at = len(s2c) - len(b"XTTP/1.1 200 OK\r\n\r\n")
    assert f.detail["offset"] == at and f.detail["excerpt"][:24] == body[-24:]
    assert f.frames == (2 + at // SEG,)  # the frame that carried the X
    response = runs["1448"].analyzer.exchanges[0].response
    assert response.last_frame == 2 + (at - 1) // SEG


@pytest.mark.parametrize("how", SPLITS + [SEG])
def test_upgrade_request_whose_body_ends_after_the_101(how) -> None:
    body = bytes(range(256)) * 10
    c2s = (
        b"POST /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: %d\r\n\r\n"
        % len(body)
    )
    s2c = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"
    split = (lambda d: [d[i : i + SEG] for i in range(0, len(d), SEG)]) if how == SEG else (lambda d: segments(d, how))
    events = [("data", C2S, seg) for seg in split(c2s)]
    events += [("data", S2C, seg) for seg in split(s2c)]
    # the request body ends after the 101 arrived; websocket frames follow it on the same side
    events += [("data", C2S, seg) for seg in split(body + b"\x81\x85not an http request\r\n\r\n" * 20)]
    events += [("end", C2S, "fin"), ("end", S2C, "fin")]
    r = play(events)
    assert r.findings == []
    (exchange,) = r.analyzer.exchanges
    assert exchange.tunnel and exchange.request.body_length == len(body)
    assert r.analyzer.summary()[C2S]["messages"] == 1


@pytest.mark.parametrize("how", SPLITS)
def test_a_method_longer_than_32_bytes_is_judged_as_before(how) -> None:
    long_method = b"X" * 40 + b" / HTTP/1.1\r\nHost: a\r\n\r\n"
    first = play([("data", C2S, seg) for seg in segments(long_method, how)])
    assert first.findings == [] and first.analyzer.summary()[C2S]["http"] is False
    later = play([("data", C2S, seg) for seg in segments(b"GET / HTTP/1.1\r\n\r\n" + long_method, how)])
    assert [f.code for f in later.findings] == [codes.UNPARSEABLE]


def test_excerpts_stop_at_the_cap_and_elided_messages_keep_none() -> None:
    body = bytes(range(256)) * 30
    one = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    a = Http1Analyzer(1)
    off, frame = 0, 1
    for _ in range(DETAILED_MESSAGES + 2):
        off, frame = feed(a, C2S, one, off, frame)
    a.end(StreamEnd(C2S, off, frame, "fin"))
    assert a.finish() == []
    requests = [e.request for e in a.exchanges]
    assert requests[0].body_excerpt == body[:JSON_BODY_EXCERPT] and requests[0].body_length == len(body)
    assert requests[-1].elided and requests[-1].body_excerpt == b"" and requests[-1].body_length == len(body)
    assert {m.state.value for m in requests} == {"complete"}
    # while a body is read its first BODY_KEEP bytes are kept (a proxy's error page is recognised in them); once
    # the message ends, whole or cut short, its first KiB
    b = Http1Analyzer(1)
    off, frame = feed(b, C2S, b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (2 * len(body)) + body, 0, 1)
    assert bytes(b._c2s.messages[0].excerpt) == body[:BODY_KEEP]
    b.end(StreamEnd(C2S, off, frame, "fin"))
    b.finish()
    cut = b.exchanges[0].request
    assert cut.state.value == "truncated" and cut.body_excerpt == body[:JSON_BODY_EXCERPT]


@given(st.integers(0, 2**32), st.sampled_from([b"content-length", b"chunked", b"close"]))
def test_a_direction_sink_delivers_as_data_events(seed: int, framing: bytes) -> None:
    """``Http1Analyzer.sink(direction)`` (the pipeline's hot path: the reassembler's callback, no StreamData) gives
    what ``data`` events give, whatever the segmentation, faults included."""
    rnd = random.Random(seed)
    body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(6000)))
    if framing == b"content-length":
        head = b"Content-Length: %d\r\n" % (len(body) + rnd.choice([0, 0, 5]))  # sometimes truncated
        wire = body
    elif framing == b"chunked":
        head = rnd.choice([b"Transfer-Encoding: chunked\r\n",
                           b"Transfer-Encoding: chunked\r\nTransfer-Encoding: Chunked\r\n"])  # the incident's
        wire = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in (body[:100], body[100:])) + b"0\r\n\r\n"
    else:
        head, wire = b"Connection: close\r\n", body
    streams = {C2S: b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\n\r\n",
               S2C: b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + wire}
    events = []  # (direction, offset, bytes) in a random interleaving of both directions' segments
    pos = {C2S: 0, S2C: 0}
    while any(pos[d] < len(streams[d]) for d in streams):
        d = rnd.choice([d for d in streams if pos[d] < len(streams[d])])
        n = rnd.choice([1, 7, 100, SEG, 3000])
        events.append((d, pos[d], streams[d][pos[d] : pos[d] + n]))
        pos[d] += n
    by_event, by_sink = Http1Analyzer(1), Http1Analyzer(1)
    sinks = {C2S: by_sink.sink(C2S), S2C: by_sink.sink(S2C)}
    for frame, (d, off, data) in enumerate(events, start=1):
        by_event.data(StreamData(d, off, data, frame, frame * 10))
        sinks[d](off, data, frame, frame * 10)
    for a in (by_event, by_sink):
        a.end(StreamEnd(C2S, pos[C2S], None, "fin"))
        a.end(StreamEnd(S2C, len(streams[S2C]), None, "fin"))
    assert [f.to_json() for f in by_sink.finish()] == [f.to_json() for f in by_event.finish()]
    assert [e.to_json() for e in by_sink.exchanges] == [e.to_json() for e in by_event.exchanges]
    assert by_sink.summary() == by_event.summary()
    sinks[S2C](len(streams[S2C]), b"late", len(events) + 1, 0)  # after finish: ignored, as data events are
    assert [e.to_json() for e in by_sink.exchanges] == [e.to_json() for e in by_event.exchanges]


@pytest.mark.parametrize("via", ["data", "sink"])
def test_a_response_waiting_for_its_request_goes_on_once_the_request_comes(via: str) -> None:
    """A response head captured before its request waits (the framing depends on the method); the request's
    segment must resume it then, not at the end: else its body queues up to PAUSE_LIMIT and the reader assumes."""
    a = Http1Analyzer(1)
    if via == "data":
        sinks = {d: (lambda off, data, frame, ts, d=d: a.data(StreamData(d, off, data, frame, ts))) for d in (C2S, S2C)}
    else:
        sinks = {d: a.sink(d) for d in (C2S, S2C)}
    body = bytes(PAUSE_LIMIT + 10 * SEG)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    sinks[S2C](0, head, 1, 1)
    assert a._s2c.pause is not None  # waiting for the request
    sinks[C2S](0, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 2, 2)
    assert a._s2c.pause is None  # resumed by the request's segment
    off = len(head)
    for frame in range(3, 3 + len(body) // SEG + 1):
        seg = body[off - len(head) : off - len(head) + SEG]
        sinks[S2C](off, seg, frame, frame)
        off += len(seg)
    a.finish()
    assert a._s2c.assumed == [] and a.exchanges[0].response.state.value == "complete"


def test_a_sink_is_for_one_of_the_two_directions() -> None:
    with pytest.raises(ValueError):
        Http1Analyzer(1).sink("up")


def test_a_finished_analyzer_is_freed_without_the_cycle_collector() -> None:
    interpreted(_http1_module)
    a = Http1Analyzer(1)
    a.data(StreamData(C2S, 0, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1, 1))
    a.data(StreamData(S2C, 0, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", 2, 2))
    findings = a.finish()
    assert [f.code for f in findings] == [codes.INCOMPLETE] and a.finish() == findings
    assert a.exchanges[0].response.body_length == 5 and a.summary()[S2C]["messages"] == 1
    # events after finish are ignored, as before: the readers have ended
    a.data(StreamData(S2C, 43, b"world", 3, 3))
    a.gap(Gap(S2C, 48, 5, 4, "lost"))
    a.end(StreamEnd(S2C, 53, 5, "fin"))
    assert a.finish() == findings and a.exchanges[0].response.body_length == 5
    ref = weakref.ref(a)
    gc.disable()
    try:
        del a
        assert ref() is None  # no reference cycle left: freed at once
    finally:
        gc.enable()
