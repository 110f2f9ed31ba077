"""Micro-benchmarks of the HTTP hot path: one call per in-order TCP segment, as a reassembler makes it in the
pipeline (through ``Http1Analyzer.sink``, which takes a data event's fields; since 2026-12-05).

Run with ``make bench-micro`` (the default pytest options disable benchmarking: then each case runs once, as a
smoke test of the state it leaves). Each round feeds a batch of 1000 events to an analyzer prepared by an
untimed setup, so the time per round in milliseconds is the time per call in microseconds. CPU time
(``time.process_time``), not wall time: the machine is shared; garbage collection excluded (see ``bench``).
Numbers and targets: docs/performance.md, "HTTP hot path".
"""

from __future__ import annotations

import gc
import time

import pytest

from pcapcheck.analyzers.http1 import Http1Analyzer
from pcapcheck.findings import C2S, S2C
from pcapcheck.tcp.events import StreamData

BATCH = 1000
SEG = 1448
ROUNDS = 30

# Heads like bench/gen.py's: a ~200-byte request, a ~300-byte response
REQUEST = (
    b"GET /static/js/app.bundle.min.js?v=12345 HTTP/1.1\r\nHost: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Sun, 22 Nov 2026 05:01:43 GMT\r\n"
    b"Content-Type: text/html; charset=utf-8\r\nContent-Length: 0\r\nConnection: keep-alive\r\n"
    b"Cache-Control: max-age=3600, public\r\nETag: \"5f3c-61a8b2c4d9e00\"\r\n"
    b"Last-Modified: Sat, 21 Nov 2026 10:00:00 GMT\r\nVary: Accept-Encoding\r\n\r\n"
)
BODY = (bytes(range(256)) * 6)[:SEG]

# GC off while timed, and garbage from earlier rounds collected in the untimed setup (each analyzer is a reference
# cycle with its readers): the numbers are the HTTP code's own cost, not collections of whatever the heap holds.
bench = pytest.mark.benchmark(group="http-hot-path", timer=time.process_time, disable_gc=True)


def run(benchmark, setup) -> Http1Analyzer:
    """Time BATCH segments per round, each given to its direction's sink as the pipeline's reassemblers give them;
    return the analyzer of the last round."""
    last: list[Http1Analyzer] = []

    def prepared():
        last.clear()
        gc.collect()
        a, events = setup()
        last[:] = [a]
        sinks = {C2S: a.sink(C2S), S2C: a.sink(S2C)}
        return ([(sinks[ev.direction], ev.offset, ev.data, ev.frame, ev.ts) for ev in events],), {}

    def target(calls) -> None:
        for sink, offset, data, frame, ts in calls:
            sink(offset, data, frame, ts)

    benchmark.extra_info["calls_per_round"] = BATCH
    benchmark.pedantic(target, setup=prepared, rounds=ROUNDS, warmup_rounds=2)
    return last[0]


def in_cl_body() -> tuple[Http1Analyzer, list[StreamData]]:
    """A response body of 1000+ segments, past its 4 KiB excerpt: the steady state of a large body."""
    a = Http1Analyzer(1)
    a.data(StreamData(C2S, 0, REQUEST, 1, 0))
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (SEG * (BATCH + 10))
    a.data(StreamData(S2C, 0, head, 2, 0))
    off = len(head)
    for frame in range(3, 7):
        a.data(StreamData(S2C, off, BODY, frame, 0))
        off += SEG
    return a, [StreamData(S2C, off + i * SEG, BODY, 10 + i, 0) for i in range(BATCH)]


def in_chunked_body(chunk: int) -> tuple[Http1Analyzer, list[StreamData]]:
    """A chunked response body with ``chunk``-byte chunks (nginx and gen.py's usual sizes), in 1448-byte segments:
    most segments lie inside chunk-data, one in chunk/1448 crosses a chunk-size line."""
    a = Http1Analyzer(1)
    a.data(StreamData(C2S, 0, REQUEST, 1, 0))
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    a.data(StreamData(S2C, 0, head, 2, 0))
    piece = b"%x\r\n" % chunk + (bytes(range(256)) * (chunk // 256 + 1))[:chunk] + b"\r\n"
    wire = piece * ((BATCH + 8) * SEG // len(piece) + 1)
    off = len(head)
    a.data(StreamData(S2C, off, wire[: 8 * SEG], 3, 0))  # past the excerpt cap
    wire = wire[8 * SEG :]
    off += 8 * SEG
    return a, [StreamData(S2C, off + i * SEG, wire[i * SEG : (i + 1) * SEG], 10 + i, 0) for i in range(BATCH)]


def requests() -> tuple[Http1Analyzer, list[StreamData]]:
    """Keep-alive GETs, one per segment."""
    return Http1Analyzer(1), [StreamData(C2S, i * len(REQUEST), REQUEST, i + 1, 0) for i in range(BATCH)]


def responses() -> tuple[Http1Analyzer, list[StreamData]]:
    """Their responses, one per segment (the requests already read)."""
    a = Http1Analyzer(1)
    a.data(StreamData(C2S, 0, REQUEST * BATCH, 1, 0))
    return a, [StreamData(S2C, i * len(RESPONSE), RESPONSE, i + 2, 0) for i in range(BATCH)]


def not_http() -> tuple[Http1Analyzer, list[StreamData]]:
    """A TLS client direction, after the first segment decided it is not HTTP."""
    a = Http1Analyzer(1)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(SEG - 11)
    a.data(StreamData(C2S, 0, hello, 1, 0))
    a.data(StreamData(C2S, SEG, BODY, 2, 0))
    return a, [StreamData(C2S, (i + 2) * SEG, BODY, i + 3, 0) for i in range(BATCH)]


@bench
def test_cl_body_segment(benchmark) -> None:
    a = run(benchmark, in_cl_body)
    msg = a.exchanges[0].response
    assert msg.body_length == SEG * (BATCH + 4) and len(msg.body_excerpt) == 4096
    assert len(a._s2c._stream.seg_off) == 1  # the offset->frame map does not grow with the body


@bench
@pytest.mark.parametrize("chunk", [8192, 4096])
def test_chunked_body_segment(benchmark, chunk: int) -> None:
    a = run(benchmark, lambda: in_chunked_body(chunk))
    msg = a.exchanges[0].response
    assert msg.state.value == "in-progress" and a.finish() != []  # (cut off by the capture's end)
    assert len(a._s2c._stream.seg_off) <= 2


@bench
def test_request_head(benchmark) -> None:
    a = run(benchmark, requests)
    assert len(a.exchanges) == BATCH and a.finish() == []


@bench
def test_response_head(benchmark) -> None:
    a = run(benchmark, responses)
    assert [e.response.status for e in a.exchanges] == [200] * BATCH and a.finish() == []


@bench
def test_not_http_segment(benchmark) -> None:
    a = run(benchmark, not_http)
    assert a.summary()[C2S]["http"] is False and a.finish() == []
