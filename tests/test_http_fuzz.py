"""Property tests for the HTTP/1.x analysis (hypothesis; the profile in conftest.py sets how many examples).

- valid chunked bodies built from grammar pieces decode to the original bytes, with zero findings;
- mutated message streams (bytes flipped, inserted, deleted, duplicated; capture gaps; any stream end) only
  ever produce findings, never an exception;
- metamorphic: the same bytes segmented differently give the same findings (frames aside).
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from pcapcheck.findings import C2S, S2C
from tests.test_http_analyzer import (
    ATTACKS,
    GET,
    OK_CHUNKED,
    OK_EMPTY,
    PIPELINE_C2S,
    PIPELINE_S2C,
    key,
    play,
    run,
    segments,
)

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(str.encode)


@st.composite
def chunked_bodies(draw) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    chunks = draw(st.lists(st.binary(min_size=1, max_size=300), max_size=8))
    upper = draw(st.booleans())
    wire = bytearray()
    for c in chunks:
        size = (b"%X" if upper else b"%x") % len(c)
        wire += b"0" * draw(st.integers(0, 3)) + size + b"\r\n" + c + b"\r\n"
    wire += b"0" * draw(st.integers(1, 3)) + b"\r\n"
    trailers = draw(st.lists(st.tuples(TOKEN.map(lambda t: b"X-" + t), TOKEN), max_size=3))
    for name, value in trailers:
        wire += name + b": " + value + b"\r\n"
    wire += b"\r\n"
    return b"".join(chunks), bytes(wire), trailers


@given(chunked_bodies(), st.integers(0, 2**16))
@example((b"", b"0\r\n\r\n", []), 0)
def test_valid_chunked_bodies_decode_to_the_original(body, seed) -> None:
    data, wire, trailers = body
    r = run(GET + GET, OK_CHUNKED + wire + OK_EMPTY, how=seed)
    assert r.findings == []
    first, second = r.analyzer.exchanges
    assert first.response.body_excerpt == data[:4096] and first.response.body_length == len(data)
    assert [(t.name, t.value) for t in first.response.trailers] == trailers
    assert second.response.start.status == 200  # the boundary after the body is exact


STREAMS = [(c, s) for c, s, _, _ in ATTACKS.values()] + [(PIPELINE_C2S, PIPELINE_S2C)]

mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "dup"]),
    st.integers(0, 10**6),
    st.binary(min_size=1, max_size=4)
    | st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\x00", b":", b";", b"0", b"HTTP/1.1 "]),
)


def mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, where, piece in mutations:
        if not out:
            out += piece
            continue
        i = where % len(out)
        if kind == "flip":
            out[i] ^= piece[0] or 1
        elif kind == "insert":
            out[i:i] = piece
        elif kind == "delete":
            del out[i : i + len(piece)]
        else:
            out[i:i] = out[i : i + 16]
    return bytes(out)


@st.composite
def damaged(draw) -> tuple[bytes, bytes]:
    c2s, s2c = draw(st.sampled_from(STREAMS))
    c2s = mutate(c2s, draw(st.lists(mutation, max_size=4)))
    s2c = mutate(s2c, draw(st.lists(mutation, max_size=4)))
    return c2s, s2c


@given(
    damaged(),
    st.integers(0, 2**16),
    st.lists(st.tuples(st.booleans(), st.integers(0, 10**6), st.integers(1, 200)), max_size=2),
    st.sampled_from(["fin", "rst", "capture-ended", None]),
)
def test_damaged_streams_give_findings_never_exceptions(streams, seed, gaps, end) -> None:
    c2s, s2c = streams
    events: list[tuple] = []
    for direction, data in ((C2S, c2s), (S2C, s2c)):
        cut = {w % max(len(data), 1): n for is_c2s, w, n in gaps if is_c2s == (direction == C2S)}
        pos = 0
        for seg in segments(data, seed):
            events.append(("data", direction, seg, pos + sum(n for at, n in cut.items() if at < pos)))
            pos += len(seg)
        if end is not None:
            events.append(("end", direction, end))
    # data events carry explicit offsets: a jump is an implicit gap
    r = play(events)  # play() checks every finding's shape and JSON
    for e in r.analyzer.exchanges:
        e.to_json()
    r.analyzer.summary()


@given(st.binary(max_size=400), st.binary(max_size=400), st.integers(0, 2**16))
def test_arbitrary_bytes_never_raise(c2s, s2c, seed) -> None:
    run(c2s, s2c, how=seed)
    run(b"GET / HTTP/1.1\r\n" + c2s, b"HTTP/1.1 200 OK\r\n" + s2c, how=seed)


@given(damaged(), st.integers(0, 2**16), st.sampled_from(["fin", "rst", "capture-ended"]))
@example(  # trailer-line faults and a bare LF completed in one feed or in several: same order
    (GET, OK_CHUNKED + b"5\r\nhello\r\n0\r\nX-Sum : 1\r\nX-Note: a\x0c\n  b\r\n\r\n"), 1, "fin"
)
def test_segmentation_does_not_change_findings(streams, seed, end) -> None:
    c2s, s2c = streams
    whole = run(c2s, s2c, "whole", end)
    split = run(c2s, s2c, seed, end)
    assert [key(f) for f in split.findings] == [key(f) for f in whole.findings]
    assert [e.to_json()["findings"] for e in split.analyzer.exchanges] == [
        e.to_json()["findings"] for e in whole.analyzer.exchanges
    ]
