"""The report over real analysis results: fixtures/*.pcap through pcapcheck.pipeline.Analysis.

Skipped until the whole pipeline imports (other analyzers are being written); then it checks the pages
for the incidents and the XSS capture end to end.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from pcapcheck.report.html_report import HtmlReport
from pcapcheck.report.json_report import JsonReport
from pcapcheck.report.sinks import Tee
from tests.conftest import FIXTURES

pipeline = pytest.importorskip("pcapcheck.pipeline", reason="pcapcheck.pipeline does not import yet")
config = pytest.importorskip("pcapcheck.config")

CAPTURES = ["incident1-te-duplicate.pcap", "incident2-oow-kernel-rst.pcap", "incident3-plaintext-to-tls.pcap",
            "xss.pcap"]


def analyze(paths, outdir):
    html = HtmlReport(outdir, inputs=[str(p) for p in paths])
    js = JsonReport(outdir / "report.json")
    totals = pipeline.Analysis(config.Options(), Tee(js, html)).run([str(p) for p in paths])
    html.finish(totals)
    js.finish(totals)
    return totals


@pytest.mark.parametrize("name", CAPTURES)
def test_fixture_reports(tmp_path, name):
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} missing: run python fixtures/make_fixtures.py")
    totals = analyze([path], tmp_path)
    doc = json.loads((tmp_path / "report.json").read_bytes())
    assert len(doc["conversations"]) == totals.conversations > 0
    pages = sorted(p.name for p in tmp_path.glob("conv-*.html"))
    assert pages == [f"conv-{c['id']}.html" for c in sorted(doc["conversations"], key=lambda c: c["id"])]
    for p in tmp_path.glob("*.html"):
        text = p.read_text(encoding="utf-8")
        assert "<script>document" not in text and "<img" not in text, p.name
        assert text.count("<script") == (1 if p.name == "index.html" else 0), p.name
        assert "\x00" not in text
    codes = {f["code"] for c in doc["conversations"] for f in c["findings"]}
    page = (tmp_path / pages[0]).read_text(encoding="utf-8")
    assert "tcp.stream eq" in page and 'id="f1"' in page
    if name.startswith("incident1"):
        assert "http.te.duplicate" in codes
        assert re.search(r'class="m"[^>]*>Transfer-Encoding', "".join(
            (tmp_path / p).read_text(encoding="utf-8") for p in pages))


def test_two_runs_identical(tmp_path):
    paths = [FIXTURES / n for n in CAPTURES if (FIXTURES / n).exists()]
    if not paths:
        pytest.skip("fixtures missing")
    analyze(paths, tmp_path / "a")
    analyze(paths, tmp_path / "b")
    for p in sorted((tmp_path / "a").iterdir()):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes(), p.name


def resumed_capture(path):
    """Conversation 0: a handshake and GET /a, then 20 minutes of other traffic (39 SYNs: the idle check runs
    every 16 packets when CHECK_EVERY is 1), then GET /b on it: finalized as idle in between, so GET /b
    comes in part 2."""
    from fixtures import builder as b

    c, s = "10.0.0.1", "10.0.0.2"
    t0 = 1_700_000_000_000_000_000
    segs = [(0, c, s, 5000, 80, 1000, 0, 0x02, b""), (1, s, c, 80, 5000, 7000, 1001, 0x12, b""),
            (2, c, s, 5000, 80, 1001, 7001, 0x10, b""),
            (3, c, s, 5000, 80, 1001, 7001, 0x18, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
            (4, s, c, 80, 5000, 7001, 1029, 0x18, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]
    # other traffic for 20 minutes: the idle check runs every 16 packets
    segs += [(60_000 * i, "10.0.0.9", s, 6000 + i, 80, 1, 0, 0x02, b"") for i in range(1, 40)]
    segs += [(1_300_000, c, s, 5000, 80, 1029, 7041, 0x18, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
             (1_300_001, s, c, 80, 5000, 7041, 1057, 0x18, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]
    w = b.PcapWriter(linktype=101)
    for ms, src, dst, sp, dp, seq, ack, fl, pl in segs:
        w.add(t0 + ms * 1_000_000, b.ipv4(src, dst, b.tcp(sp, dp, seq, ack, fl, 64240, pl, src_ip=src, dst_ip=dst)))
    w.write(path)


def test_a_resumed_conversation_keeps_every_part(tmp_path, monkeypatch):
    """A conversation idle past ``idle_ns`` is finalized; its later packets resume it under the same id
    (Wireshark's tcp.stream) as part 2. Each part has its own page and index row, none overwrites the
    other, and the later part's page says it is one."""
    monkeypatch.setattr(pipeline, "CHECK_EVERY", 1)
    resumed_capture(tmp_path / "idle.pcap")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "conv-0-part3.html").write_text("a stale page of an earlier run")
    html = HtmlReport(tmp_path / "out", inputs=[str(tmp_path / "idle.pcap")], pages="all")
    js = JsonReport(tmp_path / "out" / "report.json")
    totals = pipeline.Analysis(config.Options(), Tee(js, html)).run([str(tmp_path / "idle.pcap")])
    html.finish(totals)
    js.finish(totals)
    assert not (tmp_path / "out" / "conv-0-part3.html").exists()  # finish() removes pages it did not write
    doc = json.loads((tmp_path / "out" / "report.json").read_bytes())
    parts = [(x["first_frame"], x["last_frame"]) for x in doc["conversations"] if x["id"] == 0]
    assert sorted(parts) == [(1, 5), (45, 46)]
    first = (tmp_path / "out" / "conv-0.html").read_text(encoding="utf-8")
    second = (tmp_path / "out" / "conv-0-part2.html").read_text(encoding="utf-8")
    assert "GET /a" in first and "GET /b" not in first and "resumed</th>" not in first
    assert "GET /b" in second and "part 2 of this conversation" in second
    assert 'href="index.html#c0-part2"' in second  # its "index" link: its own row
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert index.count('id="c0"') == 1 and index.count('id="c0-part2"') == 1
    assert 'href="conv-0.html"' in index and 'href="conv-0-part2.html"' in index


def _keepalive(path, n, bad, only=None):
    """One keep-alive conversation of ``n`` GET/200 exchanges; the exchanges in ``bad`` have two
    Transfer-Encoding lines (http.te.duplicate). ``only``: "c2s" or "s2c", the packets of that direction alone
    (a capture on one side of asymmetric routing)."""
    from fixtures import builder as b

    c, s = "10.0.0.1", "10.0.0.2"
    w = b.PcapWriter(linktype=101)
    t = [1_700_000_000_000_000_000]
    cseq, sseq = 1001, 5001

    def add(src, dst, sp, dp, seq, ack, flags, payload=b""):
        t[0] += 100_000
        if only is None or (only == "c2s") == (src == c):
            w.add(t[0], b.ipv4(src, dst, b.tcp(sp, dp, seq, ack, flags, 64240, payload, src_ip=src, dst_ip=dst)))

    add(c, s, 40000, 80, 1000, 0, 0x02)
    add(s, c, 80, 40000, 5000, 1001, 0x12)
    add(c, s, 40000, 80, 1001, 5001, 0x10)
    for i in range(n):
        req = b"GET /item/%d HTTP/1.1\r\nHost: backend\r\n\r\n" % i
        if i in bad:
            resp = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\nok\r\n0\r\n\r\n")
        else:
            resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        add(c, s, 40000, 80, cseq, sseq, 0x18, req)
        cseq += len(req)
        add(s, c, 80, 40000, sseq, cseq, 0x18, resp)
        sseq += len(resp)
    add(c, s, 40000, 80, cseq, sseq, 0x11)
    add(s, c, 80, 40000, sseq, cseq + 1, 0x11)
    add(c, s, 40000, 80, cseq + 1, sseq + 1, 0x10)
    w.write(path)


def test_a_long_keep_alive_conversation_keeps_a_bounded_report(tmp_path):
    """Tens of thousands of exchanges on one connection: the analyzer keeps the first KEEP_FIRST, the last
    KEEP_LAST and every one with a finding (report.json says how many it left out: http_omitted); the page
    shows the first 100, the last 20 and those with findings, and says so."""
    from pcapcheck.analyzers import http1

    n, bad = http1.KEEP_FIRST + 500, http1.KEEP_FIRST + 200
    _keepalive(tmp_path / "ka.pcap", n, {bad})
    totals = analyze([tmp_path / "ka.pcap"], tmp_path)
    assert totals.conversations == 1
    (conv,) = json.loads((tmp_path / "report.json").read_bytes())["conversations"]
    kept = [x["index"] for x in conv["http"]]
    assert kept == [*range(http1.KEEP_FIRST), bad, *range(n - http1.KEEP_LAST, n)]
    assert conv["http_omitted"] == n - len(kept)
    (f,) = [f for f in conv["findings"] if f["code"] == "http.te.duplicate"]
    assert conv["http"][http1.KEEP_FIRST]["findings"] == [f["detail"]["finding_index"]]
    page = (tmp_path / "conv-0.html").read_text(encoding="utf-8")
    assert f"120 of the {n:,} exchanges are shown" not in page  # the marked one too
    assert f"121 of the {n:,} exchanges are shown" in page
    assert f"report.json lists {len(kept):,} of them" in page
    assert f"<h3>{bad + 1}. GET /item/{bad} HTTP/1.1" in page
    assert f"<h3>{n}. GET /item/{n - 1} HTTP/1.1" in page and "<h3>101. " not in page


@pytest.mark.parametrize("only", ["c2s", "s2c"])
def test_a_capture_of_one_direction_keeps_a_bounded_report(tmp_path, only):
    """Only the requests, or only the responses, of a long keep-alive conversation: report.json keeps the same
    exchanges as for both directions (the first KEEP_FIRST, the last KEEP_LAST, those with a finding)."""
    from pcapcheck.analyzers import http1

    n, bad = http1.KEEP_FIRST + 300, http1.KEEP_FIRST + 100
    _keepalive(tmp_path / "one.pcap", n, {bad}, only=only)
    analyze([tmp_path / "one.pcap"], tmp_path)
    (conv,) = json.loads((tmp_path / "report.json").read_bytes())["conversations"]
    kept = [x["index"] for x in conv["http"]]
    marked = [bad] if only == "s2c" else []  # the fault is in the response
    assert kept == [*range(http1.KEEP_FIRST), *marked, *range(n - http1.KEEP_LAST, n)]
    assert conv["http_omitted"] == n - len(kept)
    side, other = ("request", "response") if only == "c2s" else ("response", "request")
    assert all(x[side] is not None and x[other] is None for x in conv["http"])
    assert [f["code"] for f in conv["findings"] if f["code"].startswith("http.")] == ["http.te.duplicate"] * (
        only == "s2c")


def test_a_page_is_pickled_with_only_the_exchanges_it_shows(tmp_path):
    """A result pickled for its page (provisional, or for the render worker) carries only the exchanges the page
    shows, the others as None in their places, and no header fields where the raw head is kept (the page shows
    that): the same page, from a far smaller pickle."""
    import pickle

    from pcapcheck.analyzers import http1
    from pcapcheck.report import html_report

    n, bad = http1.KEEP_FIRST + 500, {150, http1.KEEP_FIRST + 200}
    _keepalive(tmp_path / "ka.pcap", n, bad)
    results = []

    class Keep:
        def conversation(self, r):
            results.append(r)

    pipeline.Analysis(config.Options(), Keep()).run([str(tmp_path / "ka.pcap")])
    (r,) = results
    trimmed = html_report._for_page(r)
    shown = [x for x in trimmed.http if x is not None]
    assert len(trimmed.http) == len(r.http) and len(shown) == 100 + 20 + 2
    assert {x.index for x in shown} >= bad
    full, small = pickle.dumps(r), pickle.dumps(trimmed)
    assert len(small) * 3 < len(full)
    page = html_report.render_conversation(r, input_path="ka.pcap")
    assert html_report.render_conversation(pickle.loads(small), input_path="ka.pcap") == page
    few = tmp_path / "few.pcap"
    _keepalive(few, 300, {150})
    results.clear()
    pipeline.Analysis(config.Options(), Keep()).run([str(few)])
    r = results[0]
    trimmed = html_report._for_page(r)  # a page that shows every exchange: all there, without the header fields
    assert len(trimmed.http) == len(r.http) and all(x is not None for x in trimmed.http)
    assert all(m.raw_head and not m.headers for x in trimmed.http for m in (x.request, x.response))
    assert all(m.headers for x in r.http for m in (x.request, x.response))
    assert html_report.render_conversation(trimmed, input_path="few.pcap") == html_report.render_conversation(
        r, input_path="few.pcap")
    empty = dataclasses.replace(r, http=())
    assert html_report._for_page(empty) is empty  # (nothing to trim: as it is)


def test_few_exchanges_are_all_kept(tmp_path):
    _keepalive(tmp_path / "ka.pcap", 300, {150})
    analyze([tmp_path / "ka.pcap"], tmp_path)
    (conv,) = json.loads((tmp_path / "report.json").read_bytes())["conversations"]
    assert [x["index"] for x in conv["http"]] == list(range(300)) and "http_omitted" not in conv
    page = (tmp_path / "conv-0.html").read_text(encoding="utf-8")
    assert "exchanges are shown" not in page and "<h3>300. GET /item/299" in page


def test_many_findings_of_one_code_keep_the_page_small(tmp_path, monkeypatch):
    """The same fault on every response: the page shows the first PAGE_FINDINGS_FULL findings of the code in
    full, the next PAGE_FINDINGS_BRIEF as one line each (with their anchors, so links to them work) and
    counts the rest; the heading and report.json count every finding."""
    from pcapcheck.report import views

    monkeypatch.setattr(views, "PAGE_FINDINGS_FULL", 3)
    monkeypatch.setattr(views, "PAGE_FINDINGS_BRIEF", 5)
    _keepalive(tmp_path / "ka.pcap", 30, set(range(30)))
    analyze([tmp_path / "ka.pcap"], tmp_path)
    (conv,) = json.loads((tmp_path / "report.json").read_bytes())["conversations"]
    dup = [f for f in conv["findings"] if f["code"] == "http.te.duplicate"]
    assert len(dup) == 30
    page = (tmp_path / "conv-0.html").read_text(encoding="utf-8")
    assert f"Findings ({len(conv['findings'])})" in page
    assert page.count('class="finding error"') == 3 and page.count('class="finding brief error"') == 5
    assert "and 22 more http.te.duplicate findings, not shown here" in page
    assert 'id="finding-7"' in page and 'id="finding-8"' not in page
    assert page.count("how implementations treat this input") == 3


def test_a_fault_repeated_thousands_of_times_is_counted_after_the_first_ones(tmp_path, monkeypatch):
    """After FINDINGS_PER_CODE findings of a code in a conversation, further ones are counted in one more
    finding of the code (detail.repeated), not reported one by one: memory stays bounded, the count is
    complete, and the finding indices stay dense."""
    from pcapcheck.analyzers import http1

    monkeypatch.setattr(http1, "FINDINGS_PER_CODE", 5)
    _keepalive(tmp_path / "ka.pcap", 30, set(range(30)))
    analyze([tmp_path / "ka.pcap"], tmp_path)
    (conv,) = json.loads((tmp_path / "report.json").read_bytes())["conversations"]
    dup = [f for f in conv["findings"] if f["code"] == "http.te.duplicate"]
    assert len(dup) == 6 and [f["detail"].get("repeated") for f in dup] == [None] * 5 + [25]
    assert dup[-1]["severity"] == dup[0]["severity"] == "error" and dup[-1]["direction"] == "s2c"
    assert "25 more http.te.duplicate fault(s) in this conversation after the first 5" in dup[-1]["message"]
    assert sorted(f["detail"]["finding_index"] for f in dup) == list(range(6))
    assert len(dup[-1]["frames"]) == 20 and dup[-1]["frames"][0] > dup[4]["frames"][0]
    marked = [x["index"] for x in conv["http"] if x["findings"]]
    assert marked == [0, 1, 2, 3, 4]
