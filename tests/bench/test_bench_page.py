"""Micro-benchmarks of a conversation page: building its views (report.views) and rendering them (the templates),
and the hex rows of marked bytes. A capture of up to 2,000 conversations gets a page for each, and there the pages
are 40-50% of the run (docs/performance.md, "Pages, and damaged captures").

Run with ``make bench-micro`` (as the other micro-benchmarks: disabled by default, then each case runs once as a
test). CPU time, garbage collection excluded. ``test_page`` builds and renders PAGES pages a round, the busiest
conversations of a generated capture (loss, reordering, malformed chunks, resets: HTTP exchanges, findings, a
ladder and graphs), so its time per round over PAGES is the time per page; ``test_hex_rows_marked`` makes BATCH
views a round, so milliseconds a round are microseconds a call.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

from pcapcheck.config import Options
from pcapcheck.pipeline import Analysis
from pcapcheck.report import views
from pcapcheck.report.html_report import environment
from tests.test_bench_gen import BUSY, gen

PAGES = 10
BATCH = 1000
ROUNDS = 10

bench = pytest.mark.benchmark(group="pages", timer=time.process_time, disable_gc=True)


@pytest.fixture(scope="module")
def busiest(tmp_path_factory) -> list:
    """The PAGES conversations with the most packets among those with HTTP exchanges and findings."""
    path = Path(tmp_path_factory.mktemp("pages")) / "busy.pcap"
    gen.generate(str(path), 6000, seed=3, concurrency=20, profile=BUSY)
    got = []

    class Sink:
        def conversation(self, r) -> None:
            got.append(r)

    Analysis(Options(), Sink()).run([str(path)])
    candidates = [r for r in got if r.http and len(r.findings) > 1]
    candidates.sort(key=lambda r: -sum(r.packets))
    assert len(candidates) >= PAGES
    return candidates[:PAGES]


def _pedantic(benchmark, target, args, calls: int) -> None:
    def prepared():
        gc.collect()
        return args, {}

    benchmark.extra_info["calls_per_round"] = calls
    benchmark.pedantic(target, setup=prepared, rounds=ROUNDS, warmup_rounds=1)


@bench
def test_page(benchmark, busiest) -> None:
    template = environment().get_template("conversation.html")
    pages: list[str] = []

    def build_and_render(results):
        pages[:] = [template.render(c=views.build_conversation(r, input_path="busy.pcap")) for r in results]

    _pedantic(benchmark, build_and_render, (busiest,), PAGES)
    assert len(pages) == PAGES
    for r, page in zip(busiest, pages):
        assert f"conversation {r.id}: " in page and page.count('<tr id="f') == len(r.timeline)
        assert page.count('<div class="msg-block">') >= len(r.http) and 'id="finding-0"' in page


@bench
def test_hex_rows_marked(benchmark) -> None:
    """A stream's 64 bytes, a third of them marked in three places (a finding's spans), as hex rows."""
    data = (b"GET /index.html HTTP/1.1\r\nHost: a\r\n\x00\x01\xfe\xff" * 2)[:64]
    mask = views._mask(len(data), [(5, 13), (30, 38), (50, 57)])
    out: list = []

    def rows(n):
        out[:] = [views.hex_rows(data, mask, 1000) for _ in range(n)]

    _pedantic(benchmark, rows, (BATCH,), BATCH)
    first = out[0]
    assert [r.offset for r in first] == ["000003e8", "000003f8", "00000408", "00000418"]
    assert [x.cls for x in first[0].hex] == ["", "", "m", "", ""]  # unmarked, space, marked, space, unmarked
