"""Sharded analysis (pcapcheck.parallel): n processes give the same bytes as one.

Every shard routes every packet and analyzes the conversations whose id is k modulo n; the parent merges the
index, report.json and the totals. These tests compare whole output directories byte for byte between
``--jobs 1`` and ``--jobs 2/3``, on captures with port reuse, resumed conversations, gzip input, several
inputs, and a page policy cut-off crossed in the middle of the run.
"""

from __future__ import annotations

import gzip
import importlib.util
import multiprocessing
import shutil
import sys
from pathlib import Path

import pytest

from pcapcheck import parallel, pipeline
from pcapcheck.cli import main
from pcapcheck.config import Options
from pcapcheck.http import spill as spill_mod
from pcapcheck.pipeline import Analysis, Totals
from pcapcheck.report import html_report
from pcapcheck.report.html_report import HtmlReport
from pcapcheck.report.json_report import JsonReport

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork()")


def _bench(name: str):
    """bench/<name>.py (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}_parallel", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def busy_capture(tmp_path_factory) -> Path:
    """A small benchmark capture with every rare event made common (port reuse, aborts, malformed bodies)."""
    gen = _bench("gen")
    path = tmp_path_factory.mktemp("par") / "busy.pcap"
    profile = gen.Profile(loss=0.03, reorder=0.02, malformed=0.5, client_abort=0.15, server_abort=0.1,
                          server_forgot=0.1, port_reuse=0.3)
    gen.generate(str(path), 6000, seed=3, concurrency=40, profile=profile)
    return path


def _run(out: Path, inputs: list[str], jobs: int, *extra: str) -> int:
    with pytest.raises(SystemExit) as e:
        main(["analyze", *inputs, "-o", str(out), "--fail-on", "never", "--jobs", str(jobs), *extra])
    return e.value.code


def _tree(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _same(a: Path, b: Path) -> None:
    ta, tb = _tree(a), _tree(b)
    assert sorted(ta) == sorted(tb)
    for name in ta:
        assert ta[name] == tb[name], f"{name} differs between {a.name} and {b.name}"


def test_shards_give_the_same_bytes(tmp_path, busy_capture):
    for jobs in (1, 2, 3):
        assert _run(tmp_path / f"j{jobs}", [str(busy_capture)], jobs) == 0
    _same(tmp_path / "j1", tmp_path / "j2")
    _same(tmp_path / "j1", tmp_path / "j3")
    assert len(list((tmp_path / "j1").glob("conv-*.html"))) > 50


@pytest.mark.parametrize("form", ["pcapng", "vlan", "ipv6"])
def test_shards_give_the_same_bytes_in_every_capture_form(tmp_path, busy_capture, form):
    """The busy capture as pcapng, VLAN-tagged or over IPv6 (bench/formats.py): each shard skips the other's
    segments on these paths too (decode._alt_headers, pcapng's bulk path), and the output is one process's."""
    formats = _bench("formats")
    capture = tmp_path / f"busy{formats.SUFFIX[form]}"
    formats.rewrite(busy_capture, capture, form)
    for jobs in (1, 2):
        assert _run(tmp_path / f"j{jobs}", [str(capture)], jobs) == 0
    _same(tmp_path / "j1", tmp_path / "j2")
    assert len(list((tmp_path / "j1").glob("conv-*.html"))) > 50


def test_shards_several_inputs_and_gzip(tmp_path, busy_capture):
    gz = tmp_path / "busy.pcap.gz"
    gz.write_bytes(gzip.compress(busy_capture.read_bytes()))
    inputs = [str(FIXTURES / "incident1-te-duplicate.pcap"), str(gz), str(FIXTURES / "tcp-port-reuse.pcap"),
              str(FIXTURES / "incident2-oow-kernel-rst.pcap")]
    for name in inputs:
        assert Path(name).exists(), name
    for jobs in (1, 2):
        _run(tmp_path / f"j{jobs}", inputs, jobs)
    _same(tmp_path / "j1", tmp_path / "j2")
    assert (tmp_path / "j1" / "in1-conv-0.html").exists()


def test_page_policy_cut_in_the_middle(tmp_path, busy_capture, monkeypatch):
    """The limit passed while conversations are still arriving: both ways keep exactly the policy's pages."""
    monkeypatch.setattr(html_report, "PAGE_LIMIT", 40)  # fork() inherits the patch
    for jobs in (1, 2):
        _run(tmp_path / f"j{jobs}", [str(busy_capture)], jobs)
    _same(tmp_path / "j1", tmp_path / "j2")
    index = (tmp_path / "j1" / "index.html").read_text(encoding="utf-8")
    assert "have no page of their own" in index


def test_output_directory_used_again(tmp_path, busy_capture, monkeypatch):
    """A run into a directory that holds a bigger earlier report: the shards' pages stay, the earlier run's
    other pages go, and the directory ends up as a fresh run's."""
    for jobs in (1, 2):
        _run(tmp_path / f"j{jobs}", [str(busy_capture)], jobs, "--pages", "all")
    monkeypatch.setattr(html_report, "PAGE_LIMIT", 40)  # now only the conversations with warnings get a page
    _run(tmp_path / "fresh", [str(busy_capture)], 1)
    for jobs in (1, 2):
        _run(tmp_path / f"j{jobs}", [str(busy_capture)], jobs)
        _same(tmp_path / "fresh", tmp_path / f"j{jobs}")
    assert 0 < len(list((tmp_path / "fresh").glob("conv-*.html"))) < 50


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.pcap*")))
def test_fixture_totals_and_results(tmp_path, name):
    """Every fixture (bad captures included): the merged totals and the output equal one process's."""
    path = str(FIXTURES / name)

    def run(jobs: int) -> Totals:
        html = HtmlReport(tmp_path / f"h{jobs}", inputs=[path], workers=0)
        js = JsonReport(tmp_path / f"h{jobs}" / "report.json")
        totals = parallel.analyze(Options(), [path], html, js, jobs=jobs)
        html.finish(totals)
        js.finish(totals)
        return totals

    one, two = run(1), run(2)
    assert (one.conversations, one.severities, one.codes) == (two.conversations, two.severities, two.codes)
    assert one.inputs == two.inputs
    _same(tmp_path / "h1", tmp_path / "h2")


def test_stdin_is_not_sharded(monkeypatch):
    assert not parallel.shardable(["-"])
    assert parallel.shardable([str(FIXTURES / "incident1-te-duplicate.pcap")])
    assert not parallel.shardable([str(FIXTURES)])


def test_shard_sees_every_conversation(busy_capture):
    """Each shard creates every conversation (same ids) and finalizes only its own."""
    class Ids:
        def __init__(self):
            self.ids = []

        def conversation(self, r):
            self.ids.append(r.id)

    whole = Ids()
    Analysis(Options(), whole).run([str(busy_capture)])
    parts = []
    for k in range(3):
        sink = Ids()
        a = Analysis(Options(), sink, shard=(k, 3))
        a.run([str(busy_capture)])
        assert all(i % 3 == k for i in sink.ids)
        assert a.seen_total() == len(set(whole.ids))
        parts += sink.ids
    assert sorted(parts) == sorted(whole.ids)
    with pytest.raises(ValueError):
        Analysis(Options(), Ids(), shard=(3, 3))


def _break_pages(monkeypatch, jobs: int, shard: int, message: str) -> None:
    """Rendering a page of a conversation that shard ``shard`` of ``jobs`` owns raises ValueError(message)."""
    real = html_report.views.build_conversation

    def broken(result, **kw):
        if result.id % jobs == shard:
            raise ValueError(message)
        return real(result, **kw)

    monkeypatch.setattr(html_report.views, "build_conversation", broken)


def test_a_failing_shard_is_reported(tmp_path, busy_capture, monkeypatch):
    _break_pages(monkeypatch, 2, 1, "boom in shard")
    html = HtmlReport(tmp_path, inputs=[str(busy_capture)], workers=0)
    js = JsonReport(tmp_path / "report.json")
    with pytest.raises(RuntimeError, match="boom in shard"):
        parallel.analyze(Options(), [str(busy_capture)], html, js, jobs=2)
    js.close()
    shutil.rmtree(tmp_path)


def test_a_failing_shard_leaves_no_spool_files(tmp_path, busy_capture, monkeypatch):
    """Shard 1 fails; shard 2 may have written its JSON and index spools already: all are removed."""
    import tempfile

    spool_root = tmp_path / "tmp"
    spool_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_root))
    _break_pages(monkeypatch, 3, 1, "boom in shard 1")
    html = HtmlReport(tmp_path / "out", inputs=[str(busy_capture)], workers=0)
    js = JsonReport(tmp_path / "out" / "report.json")
    with pytest.raises(RuntimeError, match="boom in shard 1"):
        parallel.analyze(Options(), [str(busy_capture)], html, js, jobs=3)
    js.close()
    html.close()
    assert [p.name for p in spool_root.iterdir() if "shard" in p.name] == []


def test_closed_conversations_linger_at_most_linger_max(tmp_path, monkeypatch):
    """Conversations close faster than the 120 s linger lets them go: at most linger_max of them stay open,
    and finalizing them early changes no result on a capture without late packets."""
    class Watch:
        def __init__(self):
            self.results = {}
            self.most_open = 0
            self.analysis = None

        def conversation(self, r):
            self.results[r.id] = (r.findings, r.end, r.packets)
            self.most_open = max(self.most_open, len(self.analysis._table))

    capture = tmp_path / "serial.pcap"  # few conversations open at once, many one after the other
    _bench("gen").generate(str(capture), 12000, seed=5, concurrency=6)
    monkeypatch.setattr(pipeline, "CHECK_EVERY", 256)  # check for conversations to finalize more often
    runs = {}
    for cap in (10**6, 4):
        w = Watch()
        w.analysis = Analysis(Options(linger_max=cap), w)
        w.analysis.run([str(capture)])
        runs[cap] = w
    assert runs[4].results == runs[10**6].results
    assert len(runs[4].results) > 60
    # uncapped, every closed conversation stays to the end; capped, only the open ones (some never close:
    # a FIN one way only, a forgotten connection) and at most 4 closed ones (+ those closed since the last check)
    assert runs[10**6].most_open > 4 * runs[4].most_open


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_run_leaves_no_spool_files(tmp_path, busy_capture):
    """SIGKILL (the OOM killer, a CI timeout) runs no cleanup: the shard's spools must need none."""
    import os
    import signal
    import subprocess
    import time

    spool_root = tmp_path / "tmp"
    spool_root.mkdir()
    # (the compiled templates' cache is kept on purpose, by default in the temporary directory too: elsewhere)
    env = {**os.environ, "TMPDIR": str(spool_root), "PCAPCHECK_TEMPLATE_CACHE": str(tmp_path / "templates")}
    proc = subprocess.Popen([sys.executable, "-m", "pcapcheck", "analyze", str(busy_capture), "-o",
                             str(tmp_path / "out"), "--pages", "all", "--jobs", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    children: list[int] = []
    while not children and proc.poll() is None and time.monotonic() < deadline:
        children = _children(proc.pid)
        time.sleep(0.01)
    if not children:
        proc.wait()
        pytest.skip("the run ended before its shard could be seen")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while any(_running(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(c) for c in children)
    assert sorted(p.name for p in spool_root.iterdir()) == []


def test_summary_sharded_prints_the_same(busy_capture, capsys):
    """``pcapcheck summary`` on two processes (parallel.collect) prints what one prints."""
    out = {}
    for jobs in (1, 2):
        with pytest.raises(SystemExit):
            main(["summary", str(busy_capture), "--jobs", str(jobs)])
        out[jobs] = capsys.readouterr().out
    assert out[1] == out[2]
    assert out[1].count("\n") > 40  # a line per conversation


def test_summary_shard_failure_is_reported(busy_capture, monkeypatch):
    from pcapcheck.cli import _Collect

    real = _Collect.conversation

    def broken(self, r):
        if r.id % 2 == 1:
            raise ValueError("boom in the summary shard")
        real(self, r)

    monkeypatch.setattr(_Collect, "conversation", broken)
    with pytest.raises(RuntimeError, match="boom in the summary shard"):
        parallel.collect(Options(), [str(busy_capture)], _Collect(), jobs=2, export=_Collect.export,
                         absorb=_Collect.absorb)


@pytest.fixture(scope="module")
def closing_storm(tmp_path_factory) -> Path:
    """Short HTTP conversations closing 2,000 a second, each client's final ACK 150 ms after the FINs (a far
    client): hundreds of conversations are closed and waiting for their last packet at any time."""
    import heapq

    from fixtures.builder import Capture, PcapWriter

    cap = Capture("ether", step_ns=10_000)
    steps = [lambda c: c.syn(), lambda c: c.syn_ack(), lambda c: c.ack("c2s"),
             lambda c: c.send("c2s", b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"),
             lambda c: c.send("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
             lambda c: c.fin("s2c"), lambda c: c.fin("c2s"), lambda c: c.ack("s2c")]
    gaps = [10**6, 10**6, 10**6, 2 * 10**6, 10**6, 10**6, 150 * 10**6]
    heap = []
    for i in range(1500):
        c = cap.conversation((f"10.1.{i // 250}.{i % 250 + 1}", 40000 + i), ("10.0.0.2", 80))
        heap.append((i * 500_000, i, 0, c))
    heapq.heapify(heap)
    while heap:
        t, i, k, c = heapq.heappop(heap)
        cap.at(t)
        steps[k](c)
        if k + 1 < len(steps):
            heapq.heappush(heap, (t + gaps[k], i, k + 1, c))
    w = PcapWriter(linktype=1)
    for r in cap.records:
        w.add(r.ts_ns, r.data)
    path = tmp_path_factory.mktemp("storm") / "storm.pcap"
    w.write(path)
    return path


def test_a_closing_storm_keeps_conversations_whole(closing_storm, monkeypatch):
    """The linger is bounded by the closed conversations' estimated size (Options.linger_bytes), which every
    shard computes alike: short conversations linger by the hundred, so the late final ACKs still find theirs
    (with the old bound of 128 closed conversations a third of them came back as "resumed" conversations),
    and any number of processes writes the same bytes. A tiny budget still splits them, the same way in every
    shard."""
    monkeypatch.setattr(pipeline, "CHECK_EVERY", 512)  # (as often as a big capture's 4096 frames, relatively)

    class Collect:
        def __init__(self):
            self.results = []

        def conversation(self, r):
            self.results.append(r)

    def results(shard=None, **kw) -> list[tuple]:
        sink = Collect()
        Analysis(Options(**kw), sink, shard=shard).run([str(closing_storm)])
        return sorted((r.id, r.resumed, r.packets, r.end, r.first_frame, r.last_frame) for r in sink.results)

    def resumed(rows: list[tuple]) -> int:
        return sum(1 for row in rows if row[1])

    whole = results()
    assert (len(whole), resumed(whole)) == (1500, 0)
    assert resumed(results(linger_max=128, linger_bytes=2**40)) > 100  # the old bound
    tiny = results(linger_bytes=200_000)
    assert resumed(tiny) > 100
    for n in (2,):  # every shard finalizes the same conversations at the same frame
        assert sorted(x for k in range(n) for x in results((k, n))) == whole
        assert sorted(x for k in range(n) for x in results((k, n), linger_bytes=200_000)) == tiny


def test_spilled_exchanges_give_the_same_report(tmp_path, monkeypatch):
    """Long keep-alive conversations whose exchanges are spilled (analyzers.http1.HELD_BUDGET) and read back a
    chunk at a time while report.json and their pages are written (ExchangeList): the same bytes as when they stay
    in memory, with one process and with two."""
    from pcapcheck.analyzers import http1
    from tests.test_pipeline import ACK, PSH, SYN, C, S, write

    segs = []
    for port in (5000, 5001, 5002):
        cseq, sseq = 1001, 9001
        segs += [(C, S, port, 80, 1000, 0, SYN, b""), (S, C, 80, port, 9000, 1001, SYN | ACK, b""),
                 (C, S, port, 80, 1001, 9001, ACK, b"")]
        for i in range(400):  # more than a page shows (320), in chunks of 64
            req = b"GET /%d HTTP/1.1\r\nHost: x\r\nCookie: s=%s\r\n\r\n" % (i, b"c" * (i % 50))
            te = b"Transfer-Encoding: chunked\r\n" * (2 if i % 97 == 5 else 1)
            for src, dst, sp, dp, data in ((C, S, port, 80, req),
                                           (S, C, 80, port, b"HTTP/1.1 200 OK\r\n" + te + b"\r\n2\r\nok\r\n0\r\n\r\n")):
                segs.append((src, dst, sp, dp, cseq if src == C else sseq, sseq if src == C else cseq, ACK | PSH,
                             data))
                if src == C:
                    cseq += len(data)
                else:
                    sseq += len(data)
    path = write(tmp_path, segs)
    assert _run(tmp_path / "kept", [path], 1, "--pages", "all") == 0
    made = []
    real_init = spill_mod.ExchangeList.__init__

    def init(self, *args):
        made.append(len(args[1]))
        real_init(self, *args)

    monkeypatch.setattr(spill_mod.ExchangeList, "__init__", init)
    monkeypatch.setattr(http1, "HELD_BUDGET", -1)
    monkeypatch.setattr(http1, "SPILL_CHUNK", 7)
    for jobs in (1, 2):
        assert _run(tmp_path / f"spilled{jobs}", [path], jobs, "--pages", "all") == 0
        _same(tmp_path / "kept", tmp_path / f"spilled{jobs}")
    assert made and all(n >= 30 for n in made)  # chunks spilled (a forked shard's are not counted here)
    assert len(list((tmp_path / "kept").glob("conv-*.html"))) == 3
