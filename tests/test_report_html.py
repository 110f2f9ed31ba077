"""The HTML report: escaping of attacker bytes, links and anchors, page policy, determinism, view models."""

from __future__ import annotations

import ast
import dataclasses
import multiprocessing
import re
import threading
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from pcapcheck.findings import Severity
from pcapcheck.report import html_report, views
from pcapcheck.report.html_report import HtmlReport, render_conversation
from tests.browser import samples as s
from tests.conftest import FIXTURES

PKG = Path(html_report.__file__).resolve().parent.parent


class Page(HTMLParser):
    """What the checks need from a page: ids, links, resources, scripts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.scripts = 0
        self.tags: set[str] = set()
        self.handlers: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "script":
            self.scripts += 1
        for k, v in attrs:
            if k == "id":
                self.ids.append(v)
            elif k == "href":
                self.hrefs.append(v)
            elif k in ("src", "srcset", "action", "data", "poster"):
                self.srcs.append(v)
            elif k.startswith("on"):
                self.handlers.append(k)


def render_all(outdir: Path, results, inputs=None, **kw) -> HtmlReport:
    inputs = inputs if inputs is not None else [s.input_summary(conversations=len(results))]
    rep = HtmlReport(outdir, inputs=[i.path for i in inputs], **kw)
    for r in results:
        rep.conversation(r)
    rep.finish(s.totals_for(list(results), inputs))
    return rep


def check_links(outdir: Path) -> dict[str, Page]:
    """Every id unique, every link lands (file exists, anchor exists), nothing external."""
    pages = {p.name: Page(p.read_text(encoding="utf-8")) for p in outdir.glob("*.html")}
    for name, page in pages.items():
        assert len(page.ids) == len(set(page.ids)), f"{name}: duplicate ids"
        assert not page.srcs, f"{name}: loads {page.srcs}"
        assert not page.handlers, f"{name}: event handler attributes {page.handlers}"
        for href in page.hrefs:
            assert not re.match(r"[a-z]+:", href), f"{name}: external link {href}"
            target, _, anchor = href.partition("#")
            target = target or name
            assert target in pages, f"{name}: link to missing {target}"
            if anchor:
                assert anchor in pages[target].ids, f"{name}: link to missing #{anchor} in {target}"
    return pages


# -- safety -----------------------------------------------------------------------------------------------

def test_attacker_bytes_render_inert(tmp_path):
    render_all(tmp_path, [s.xss(), s.incident1()])
    for path in tmp_path.glob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert "<script>document" not in text and "<img src=x" not in text, path.name
        assert 'onerror="' not in text and "<pwned" not in text
        assert "\x00" not in text and "\x1b" not in text and "\ufffd" not in text, path.name
        page = Page(text)
        assert "img" not in page.tags and "pwned" not in page.tags
        assert page.scripts == (1 if path.name == "index.html" else 0), path.name
    page = (tmp_path / "conv-2.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;document.title=&#39;PWNED&#39;" in page  # shown, as text
    assert "\\x00" in page and "\\x1b" in page and "\\xff\\xfe" in page  # control bytes and invalid UTF-8 visible
    assert "<title>conversation 2: 198.51.100.7:1234 → 198.51.100.8:80</title>" in page
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "reset: &lt;script&gt;" in index  # the ending sentence, in a title attribute, escaped
    # a Content-Security-Policy lets only the index's own script run, and none on conversation pages
    assert "script-src 'sha256-" in index and "script-src" not in page and "default-src 'none'" in page


def test_no_markup_in_python():
    """Three steps (coverage.py): views hold data, templates hold markup. No tags in Python string literals."""
    tag = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*[\s>/]")
    for path in (PKG / "report").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert not tag.search(node.value), f"{path.name}:{node.lineno}: markup in Python: {node.value!r}"


@given(value=st.one_of(st.text(max_size=60), st.integers(), st.booleans(), st.floats(allow_nan=False), st.none(),
                       st.binary(max_size=20), st.text(max_size=20).map(Markup)))
def test_the_templates_escape_as_markupsafe_does(value) -> None:
    """html_report.ESCAPE, which the compiled templates call for every {{ }}, gives markupsafe.escape's result."""
    got = html_report.ESCAPE(value)
    assert isinstance(got, str) and str(got) == str(markupsafe.escape(value))


@given(value=st.one_of(st.text(max_size=30), st.integers(), st.text(max_size=10).map(Markup)))
def test_no_text_is_escaped_twice(value) -> None:
    """ESCAPE gives a str its escaped text as a plain str, not a Markup. That is safe only because jinja2 wraps in
    Markup every output it buffers before using it as a value: a macro's result, a set, filter or call block, a
    caller(). Rendered through them, the page is the same as with jinja2's own escape: nothing escaped twice."""
    import jinja2

    source = ("{% macro m(a) %}<{{ a }}>{% endmacro %}{% macro k() %}[{{ caller() }}]{% endmacro %}"
              "{% set x %}{{ v }}{% endset %}{{ x }}|{{ x|e }}|{{ m(v) }}|{{ m(m(v)) }}|{{ m(x) }}"
              "|{% call k() %}{{ v }}{% endcall %}|{% filter e %}{{ v }}{% endfilter %}"
              "|{% filter upper %}{{ v }}{% endfilter %}|{{ v ~ x }}|{{ [v, x]|join(',') }}|{{ v|e }}")
    stock = jinja2.Environment(autoescape=True).from_string(source)
    assert html_report.environment().from_string(source).render(v=value) == stock.render(v=value)


def test_the_compiled_templates_call_the_fast_escape() -> None:
    import markupsafe as m

    if not hasattr(m, "_escape_inner"):
        pytest.skip("this MarkupSafe has no _escape_inner: markupsafe.escape itself is used")
    assert html_report.ESCAPE is not m.escape
    env = html_report.environment()
    for name in ("conversation.html", "index.html", "index_rows.html", "_macros.html"):
        assert env.get_template(name).root_render_func.__globals__["escape"] is html_report.ESCAPE, name
    # and it escapes: a value with every special character, through a template
    assert env.from_string("{{ v }}|{{ n }}").render(v="<&'\">", n=-5) == "&lt;&amp;&#39;&#34;&gt;|-5"


TEMPLATES = tuple(sorted(p.name for p in (Path(html_report.__file__).parents[1] / "templates").iterdir()))


def _fresh_environment(monkeypatch: pytest.MonkeyPatch, cache: str) -> tuple:
    """A new Environment as a new process makes it, with PCAPCHECK_TEMPLATE_CACHE=``cache``; and how many
    templates it compiled (the others came from the cache)."""
    import jinja2

    monkeypatch.setenv(html_report.TEMPLATE_CACHE_ENV, cache)
    monkeypatch.setattr(html_report, "_ENV", None)
    compiled = []
    real = jinja2.Environment.compile

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):  # type: ignore[no-untyped-def]
        compiled.append(name)
        return real(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    env = html_report.environment()
    rendered = render_conversation(s.incident1(), timestamp="t")
    for name in TEMPLATES:
        env.get_template(name)
    return env, compiled, rendered


def test_compiled_templates_are_kept_between_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The second process loads every template from the cache, compiles none, and renders the same page (through
    the fast escape); a damaged cache file is compiled again; no usable directory, or "off", means no cache."""
    cache = tmp_path / "cache"
    _, off, reference = _fresh_environment(monkeypatch, "off")
    assert html_report.environment().bytecode_cache is None and sorted(off) == sorted(TEMPLATES)
    _, first, page = _fresh_environment(monkeypatch, str(cache))
    assert sorted(first) == sorted(TEMPLATES) and page == reference
    files = sorted(cache.iterdir())
    assert len(files) == len(TEMPLATES) and all(f.name.startswith("pcapcheck-") for f in files)
    env, second, page = _fresh_environment(monkeypatch, str(cache))
    assert second == [] and page == reference
    if html_report.ESCAPE is not markupsafe.escape:
        assert env.get_template("conversation.html").root_render_func.__globals__["escape"] is html_report.ESCAPE
    files[0].write_bytes(files[0].read_bytes()[:40])  # cut short: jinja2's header, then half a checksum
    _, third, page = _fresh_environment(monkeypatch, str(cache))
    assert len(third) == 1 and page == reference
    (tmp_path / "a-file").write_text("")
    env, fourth, page = _fresh_environment(monkeypatch, str(tmp_path / "a-file" / "cache"))
    assert env.bytecode_cache is None and sorted(fourth) == sorted(TEMPLATES) and page == reference


def test_names_and_anchors_from_ids_only():
    assert views.page_name(0, 7) == "conv-7.html" and views.page_name(2, 7) == "in2-conv-7.html"
    assert views.row_anchor(0, 7) == "c7" and views.row_anchor(1, 0) == "in1-c0"


# -- links, anchors, navigation -------------------------------------------------------------------------

def test_links_and_anchors(tmp_path):
    render_all(tmp_path, [s.incident2(30), s.xss(), s.incident1()])
    pages = check_links(tmp_path)
    conv0 = pages["conv-0.html"]
    assert {"finding-0", "finding-1", "finding-2", "f1", "f8"} <= set(conv0.ids)
    assert "#f6" in conv0.hrefs  # the finding's frame links to the ladder row
    # previous/next go to the neighbours' index rows; the last one to the end-of-list anchor
    assert "index.html#c1" in conv0.hrefs and not any(h.startswith("index.html#c-1") for h in conv0.hrefs)
    assert "index.html#c3" in pages["conv-2.html"].hrefs
    xss = (tmp_path / "conv-2.html").read_text(encoding="utf-8")
    assert "99999" in xss and "#f99999" not in xss  # a frame not in the ladder is shown, not linked


def test_multiple_inputs(tmp_path):
    results = [s.plain(0), s.plain(1), s.plain(0, input_index=1, severity=Severity.ERROR)]
    inputs = [s.input_summary(0, 2, "a.pcap"), s.input_summary(1, 1, "b.pcapng")]
    render_all(tmp_path, results, inputs)
    pages = check_links(tmp_path)
    assert set(pages) == {"index.html", "conv-0.html", "conv-1.html", "in1-conv-0.html"}
    assert {"c0", "c1", "c2", "in1-c0", "in1-c1"} <= set(pages["index.html"].ids)
    page = (tmp_path / "in1-conv-0.html").read_text(encoding="utf-8")
    assert "tshark -r b.pcapng -Y &#39;tcp.stream eq 0&#39; -w in1-conv-0.pcap" in page


def test_index_sorted_worst_first(tmp_path):
    results = [s.plain(0), s.plain(1, severity=Severity.NOTICE), s.plain(2, severity=Severity.ERROR),
               s.plain(3, severity=Severity.WARNING), s.plain(4, severity=Severity.ERROR)]
    render_all(tmp_path, results)
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    rows = re.findall(r'<tr id="(c\d+)" class="w-', index)
    assert rows == ["c2", "c4", "c3", "c1", "c0"]


# -- page policy ------------------------------------------------------------------------------------------

@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(html_report, "PAGE_LIMIT", 10)
    return 10


def _many(n: int) -> list:
    # finalization order differs from id order; every 7th has a warning, every 11th an error
    out = []
    for cid in range(n):
        sev = Severity.ERROR if cid % 11 == 5 else Severity.WARNING if cid % 7 == 3 else None
        if cid % 5 == 0:
            sev = sev or Severity.INFO
        out.append(s.plain(cid, severity=sev))
    return out[1::2] + out[0::2]


def test_policy_all_pages_up_to_the_limit(tmp_path, small_limit):
    rep = render_all(tmp_path, _many(small_limit))
    assert len(list(tmp_path.glob("conv-*.html"))) == small_limit
    assert len(rep.pages_written()) == small_limit
    assert "have no page of their own" not in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_policy_beyond_the_limit(tmp_path, small_limit):
    results = _many(small_limit * 4)
    render_all(tmp_path, results, conversations={0, 2})
    expected = {f"conv-{r.id}.html" for r in results
                if r.id in (0, 2) or (r.worst is not None and r.worst >= Severity.WARNING)}
    assert {p.name for p in tmp_path.glob("conv-*.html")} == expected
    pages = check_links(tmp_path)  # rows of page-less conversations do not link
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert f"{40 - len(expected)} of 40 conversations have no page of their own" in index
    assert "--pages all" in index and "--conversation N" in index
    linked = {h for h in pages["index.html"].hrefs if h.startswith("conv-")}
    assert linked == expected


def test_policy_pages_all(tmp_path, small_limit):
    render_all(tmp_path, _many(small_limit * 2), pages="all")
    assert len(list(tmp_path.glob("conv-*.html"))) == small_limit * 2
    with pytest.raises(ValueError):
        HtmlReport(tmp_path, pages="some")


# -- determinism and size ---------------------------------------------------------------------------------

def test_two_renders_identical(tmp_path):
    for d in ("a", "b"):
        render_all(tmp_path / d, [s.incident1(), s.incident2(50), s.xss()])
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    text = (tmp_path / "a" / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"20\d\d-\d\d-\d\dT", text)  # no wall-clock time without a timestamp
    render_all(tmp_path / "c", [s.incident1()], timestamp="generated 2024-05-01T12:00:00Z")
    assert "generated 2024-05-01T12:00:00Z" in (tmp_path / "c" / "index.html").read_text(encoding="utf-8")


def test_page_size_linear_in_timeline():
    small = len(render_conversation(s.incident2(1000)))
    big = len(render_conversation(s.incident2(2000)))
    assert 1.7 < big / small < 2.2


def test_timeline_cap_is_stated():
    page = render_conversation(s.incident2(200, capped=True))
    r = s.incident2(200, capped=True)
    assert f"Showing {len(r.timeline)} of {r.timeline_total} packets" in page


# -- view models ------------------------------------------------------------------------------------------

def test_graph_thins_but_keeps_marked_segments():
    r = s.incident2(6000)
    view = views.build_conversation(r)
    g = view.graphs[0]
    assert g.direction == "c2s" and g.segments_total == 6000
    assert g.segments < 2 * g.plot_w + 200  # thinned per pixel column
    retx = sum(1 for row in r.timeline if row.analysis)
    assert g.retx_path.count("V") == retx  # every retransmission kept
    assert g.oow_path.count("V") == 1 and any(m.kind == "oow" for m in g.marks)
    assert len(view.graphs) == 1  # no data from the server: no server graph
    assert [m.frame for m in g.rst_lines] == [r.timeline[-1].frame]


def test_ladder_rows():
    view = views.build_conversation(s.incident1())
    flags = [row.flags for row in view.ladder]
    assert flags == ["[S]", "[S.]", "[.]", "[P.]", "[.]", "[P.]", "[.]", "[R.]"]
    rst = view.ladder[-1]
    assert rst.kind == "rst" and rst.dir == 0 and rst.findings[0][1] == "tcp.rst"
    assert view.ladder[3].label == f"seq 1:{1 + len(s.REQUEST1)} ack 1 win 65536 len {len(s.REQUEST1)}"
    assert view.start == "2023-11-14 22:13:20.123456789 UTC"


def test_finding_detail_views():
    view = views.build_conversation(s.incident1())
    te = view.findings[0]
    assert te.code == "http.te.duplicate" and [p.verdict for p in te.peers][:2] == ["rejects", "rejects"]
    marked = [("".join(r.text for r in line.runs if "m" in r.cls), line.end) for line in te.excerpt.lines]
    assert marked == [("", "crlf"), ("Transfer-Encoding: chunked", "crlf mk"), ("Transfer-Encoding: Chunked", "crlf"),
                      ("", "")]
    assert [line.frame.frame for line in te.lines] == [6, 6]
    rst = view.findings[1]
    assert len(rst.evidence) == 3 and any(d.key == "trigger_frame" and d.frames for d in rst.details)
    resp = view.exchanges[0].messages[1]
    marked = ["".join(r.text for r in line.runs if "m" in r.cls) for line in resp.head]
    assert marked == ["", "", "Transfer-Encoding: chunked", "Transfer-Encoding: Chunked", "", ""]
    assert resp.marked_codes == ((0, "http.te.duplicate"),)
    assert "".join(r.text for r in resp.body[0].runs) == '{"status":"ok","id":42}'
    # without the raw head (another producer's exchange), the parsed header lines are marked instead
    xss = views.build_conversation(s.xss()).exchanges[0].messages[0]
    assert xss.head == () and [h.marked for h in xss.headers] == [False, False, True]


def test_bytes_view_escapes_and_marks():
    bv = views.bytes_view(b"ab\x00\r\nc\xff" * 3, 100, [(102, 104)])
    assert bv.marked == 2 and bv.start == 100
    # one line per LF; the CR is marked and the LF not, so the ending stays in the runs, escaped
    assert [(r.text, r.cls) for r in bv.lines[0].runs] == [("ab", ""), ("\\x00\\r", "m c"), ("\\n", "c")]
    assert bv.lines[0].end == "" and bv.lines[1].end == "crlf"
    assert [(r.text, r.cls) for r in bv.lines[1].runs] == [("c", ""), ("\\xff", "c"), ("ab", ""), ("\\x00", "c")]
    assert bv.hex_rows[0].offset == "00000064" and bv.hex_rows[0].hex[0].text == "61 62"
    assert views.visible("a\u202eb\x07") == "a\\u202eb\\x07" and views.visible("→ µs") == "→ µs"
    assert views.flag_text(0x02 | 0x10) == "[S.]" and views.flag_text(0) == "[none]"
    assert views.utc(1) == "1970-01-01 00:00:00.000000001 UTC"



def _hex_rows_per_byte(data, mask, start):
    """hex_rows without a limit, a marked row byte by byte: a run grows while the class stays the same."""
    rows = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        if not any(mask[off:off + 16]):  # (a row without marks: one run a column, non-printables as "." unstyled)
            asc_text = "".join(chr(b) if 0x20 <= b <= 0x7E else "." for b in chunk)
            rows.append((f"{start + off:08x}", [(chunk.hex(" "), "")], [(asc_text, "")]))
            continue
        hx, asc = [], []
        for i, b in enumerate(data[off:off + 16]):
            m = "m" if mask[off + i] else ""
            if hx and hx[-1][1] == m:
                hx[-1] = (f"{hx[-1][0]} {b:02x}", m)
            else:
                hx.append((f"{b:02x}", m))
            text, cls = (chr(b), m) if 0x20 <= b <= 0x7E else (".", f"{m} c".strip())
            if asc and asc[-1][1] == cls:
                asc[-1] = (asc[-1][0] + text, cls)
            else:
                asc.append((text, cls))
        spaced = [hx[0]]
        for r in hx[1:]:
            spaced += [(" ", ""), r]
        rows.append((f"{start + off:08x}", spaced, asc))
    return rows


@given(st.binary(max_size=80), st.lists(st.tuples(st.integers(-4, 84), st.integers(0, 40)), max_size=6),
       st.integers(0, 1 << 20))
def test_hex_rows_marked_runs(data, spans, start):
    """Rows with marked bytes are split into runs by stretch (mark, printable or not): the same runs as
    merging byte by byte, for any data and marks."""
    mask = views._mask(len(data), ((s, s + n) for s, n in spans))
    rows = views.hex_rows(data, mask, start)
    assert [(r.offset, [tuple(x) for x in r.hex], [tuple(x) for x in r.ascii]) for r in rows] == \
        _hex_rows_per_byte(data, mask, start)

# -- the render worker --------------------------------------------------------------------------------------

@pytest.fixture
def early_worker(monkeypatch):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork(): pages are always rendered in-process here")
    monkeypatch.setattr(html_report, "WORKER_AFTER", 2)


def test_worker_output_identical(tmp_path, early_worker, small_limit):
    """Pages rendered by the worker process are the same bytes, including pages the policy deletes later."""
    n = small_limit * 3
    results = _many(n) + [dataclasses.replace(s.incident1(), id=n), dataclasses.replace(s.xss(), id=n + 1)]
    before = set(threading.enumerate())
    for w in (0, 1):
        rep = render_all(tmp_path / str(w), results, workers=w, conversations={4})
        assert (rep._worker is None) and rep.workers == w
    # the queues' feeder threads are ended: a thread left running makes a later fork unsafe (a sharded run)
    assert [t.name for t in set(threading.enumerate()) - before] == []
    a, b = tmp_path / "0", tmp_path / "1"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for p in a.iterdir():
        assert p.read_bytes() == (b / p.name).read_bytes(), p.name
    check_links(b)


def test_worker_queue_is_bounded_by_bytes(tmp_path, early_worker, small_limit, monkeypatch):
    """Jobs wait for the worker by their pickled size too (WORKER_QUEUE_BYTES), not only by count: with a bound
    of one byte, at most one job is queued at a time (the next waits until the worker took it). Same pages."""
    n = small_limit - 1  # every conversation gets a page (provisional ones too, sent pickled from the spool)
    results = _many(n) + [dataclasses.replace(s.incident1(), id=n)]
    render_all(tmp_path / "free", results, workers=1)
    monkeypatch.setattr(html_report, "WORKER_QUEUE_BYTES", 1)
    queued = []
    real_send = HtmlReport._send

    def send(self, job, size=0):
        real_send(self, job, size)
        queued.append(len(self._queued))

    monkeypatch.setattr(HtmlReport, "_send", send)
    render_all(tmp_path / "bound", results, workers=1)
    assert len(queued) > 5 and max(queued) == 1
    for p in (tmp_path / "free").iterdir():
        assert p.read_bytes() == (tmp_path / "bound" / p.name).read_bytes(), p.name


def test_worker_error_is_raised(tmp_path, early_worker, monkeypatch):
    real = views.build_conversation

    def broken(result, **kw):
        if result.id == 5:
            raise ValueError("boom in the view")
        return real(result, **kw)

    monkeypatch.setattr(views, "build_conversation", broken)  # the forked worker inherits the patch
    before = set(threading.enumerate())
    rep = HtmlReport(tmp_path, workers=1)
    with pytest.raises(RuntimeError, match="boom in the view"):
        for cid in range(12):
            rep.conversation(s.plain(cid))
        rep.finish(s.totals_for([], [s.input_summary()]))
    rep.close()
    for t in set(threading.enumerate()) - before:  # an aborted run does not wait for its feeder thread...
        t.join(timeout=5)  # ... which ends once its buffered jobs are dropped
    assert [t.name for t in set(threading.enumerate()) - before] == []


def test_index_summaries_are_spooled_not_kept(tmp_path):
    """The index keeps a small key per conversation in memory; the summaries themselves are on disk."""
    import gc
    import tracemalloc

    from pcapcheck.model import ConversationSummary

    def result(cid):
        r = s.plain(cid, severity=Severity.WARNING if cid % 3 else None)
        return dataclasses.replace(r, end_sentence=f"{r.end_sentence} (conversation {cid}, {r.client})")

    spool = html_report._SummarySpool()
    kept = []
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for cid in range(1500):
        spool.add(ConversationSummary.of(result(cid), None))
    gc.collect()
    spooled = tracemalloc.get_traced_memory()[0] - base
    base = tracemalloc.get_traced_memory()[0]
    for cid in range(1500, 3000):
        kept.append(ConversationSummary.of(result(cid), None))  # what the index held before
    gc.collect()
    in_memory = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    # a key (a 7-tuple and its ints) and a list slot: about 260 bytes a conversation
    # a packed key: 34 bytes a conversation (plus the bytearray's spare room); a summary is hundreds
    assert spooled / 1500 < 64 and spooled * 5 < in_memory
    assert list(spool.ordered()) == sorted((ConversationSummary.of(result(cid), None) for cid in range(1500)),
                                           key=lambda x: (-x.worst, x.input_index, x.id))
    spool.close()


def test_index_spool_order_pages_and_shards(tmp_path):
    from pcapcheck.model import ConversationSummary

    def summ(cid, sev=None, page=None, input_index=0):
        return ConversationSummary.of(s.plain(cid, severity=sev, input_index=input_index), page)

    a, b = html_report._SummarySpool(), html_report._SummarySpool()
    a.add(summ(4, page="conv-4.html"))
    a.add(summ(2, Severity.ERROR, page="conv-2.html"))
    a.add(summ(7, input_index=1, page="in1-conv-7.html"))
    b.add(summ(3, Severity.WARNING, page="conv-3.html"))
    b.add(summ(4))  # the same id again (a resumed conversation): after the first, no clash in the sort
    a.drop_page(0)
    import tempfile

    def text(summaries):  # a row per summary, as render_rows makes them (here: plain text)
        return (f"{x.input_index}/{x.id}/{x.page}|" for x in summaries)

    with tempfile.TemporaryFile() as f:  # the file a parent opens for its shard before the fork
        with pytest.raises(RuntimeError):
            b.export(f)  # rows are exported rendered
        b.render(text)
        keys = b.export(f)
        f.seek(0, 2)  # export writes through a handle of its own, from the start
        with pytest.raises(RuntimeError):
            a.absorb(f, keys)  # ... into rendered rows
        a.render(text)
        a.absorb(f, keys)
    assert "".join(a.rows()) == "0/2/conv-2.html|0/3/conv-3.html|0/4/None|0/4/None|1/7/in1-conv-7.html|"
    assert a.pages() == {(0, 2): "conv-2.html", (0, 3): "conv-3.html", (1, 7): "in1-conv-7.html"}
    assert len(a) == 5 and list(a.rows()) == list(a.rows())  # readable again
    with pytest.raises(RuntimeError):
        next(a.ordered())  # the summaries are gone
    empty = html_report._SummarySpool()
    with tempfile.TemporaryFile() as f:
        a.absorb(f, empty.export(f))
    assert len(a) == 5 and list(empty.ordered()) == []
    a.close()


def test_index_spool_reading_part_of_it_does_not_disturb_adding(tmp_path, monkeypatch):
    from pcapcheck.model import ConversationSummary

    for pread in (True, False):
        if not pread:
            monkeypatch.delattr("os.pread")
        spool = html_report._SummarySpool()
        for cid in range(5):
            spool.add(ConversationSummary.of(s.plain(cid), None))
        first = next(spool.ordered())  # a reader that stops early
        spool.add(ConversationSummary.of(s.plain(9, severity=Severity.ERROR), "conv-9.html"))
        assert first.id == 0
        assert [(x.id, x.page) for x in spool.ordered()] == [(9, "conv-9.html")] + [(c, None) for c in range(5)]
        spool.close()


def test_detail_record_with_a_numeric_type_keeps_it() -> None:
    """A text "type" names a flat record (a framing); a number is a field like any (an ICMP type)."""
    from pcapcheck.report.views import value_text

    assert value_text({"type": "content-length", "length": 29}) == "content-length, length 29"
    assert value_text({"version": 4, "type": 3, "code": 4}) == "version 4, type 3, code 4"


def test_icmp_errors_are_rows_of_the_ladder() -> None:
    """An ICMP error about a segment is drawn among the packets (towards the quoted segment's sender), and the
    finding's frame links to that row; the packet count stays the TCP packets'."""
    from pcapcheck.config import Options
    from pcapcheck.pipeline import Analysis
    from tests.conftest import FIXTURES

    results = []

    class Sink:
        def conversation(self, r) -> None:
            results.append(r)

    Analysis(Options(), Sink()).run([str(FIXTURES / "icmp-errors.pcap")])
    r = next(r for r in results if r.id == 1)
    assert [(m.frame, m.direction) for m in r.icmp] == [(11, 1)]
    page = html_report.render_conversation(r)
    assert '<tr id="f11" class="d1 k-icmp s-warning">' in page and '<a href="#f11">11</a>' in page
    assert "10.0.0.254: fragmentation needed and DF set (ICMP type 3 code 4), MTU 1400" in page
    assert "Packets (16, and 1 ICMP error about them)" in page
    rows = [int(f) for f in re.findall(r'<tr id="f(\d+)"', page)]
    assert rows == sorted(rows) and 11 in rows
    assert r.to_json() == dataclasses.replace(r, icmp=()).to_json()  # not in report.json: the findings say it


def test_a_shard_without_conversations_merges_into_any_index(tmp_path):
    """A shard that analyzed no conversation hands over an empty state: absorbing it changes nothing, even into
    an index whose rows are not rendered yet (the shard's state is where its rows and keys are, not the keys)."""
    import tempfile

    a = HtmlReport(tmp_path / "a", workers=0)
    a.conversation(s.plain(1))
    empty = HtmlReport(tmp_path / "b", workers=0)
    empty.finish_pages()
    empty.render_rows(False)
    with tempfile.TemporaryFile() as f:
        a.absorb(f, empty.state(f))
    a.finish_pages()
    assert a.pages_written() == {(0, 1): "conv-1.html"}
    a.close()


def test_provisional_pages_render_with_the_run_collector_threshold(tmp_path, monkeypatch) -> None:
    """finish_pages renders the pages of a run under the page limit after Analysis.run: with the raised threshold
    too (pages allocate as the analysis does: 1,958 collections for a 300,000-packet run's pages at 700), and
    the caller's setting is back afterwards."""
    import gc

    from pcapcheck.config import Options
    from pcapcheck.pipeline import GC_THRESHOLD, Analysis
    from pcapcheck.report.json_report import JsonReport
    from pcapcheck.report.sinks import Tee

    seen: list[int] = []
    build = html_report.views.build_conversation

    def recording(*a, **k):
        seen.append(gc.get_threshold()[0])
        return build(*a, **k)

    monkeypatch.setattr(html_report.views, "build_conversation", recording)
    saved = gc.get_threshold()
    gc.set_threshold(700, saved[1], saved[2])
    try:
        path = str(FIXTURES / "http-pipelined-ok.pcap")  # no warning: its page is provisional
        html = HtmlReport(tmp_path, inputs=[path], workers=0)
        js = JsonReport(tmp_path / "report.json")
        totals = Analysis(Options(), Tee(html, js)).run([path])
        assert seen == []
        html.finish_pages()
        assert seen and all(t >= GC_THRESHOLD for t in seen)
        assert gc.get_threshold()[0] == 700
        html.write_index(totals)
        js.finish(totals)
    finally:
        gc.set_threshold(*saved)


def test_fewer_collections_restores_the_setting_and_leaves_collection_off() -> None:
    import gc

    from pcapcheck.pipeline import GC_THRESHOLD, fewer_collections

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_collections():
            assert gc.get_threshold() == (GC_THRESHOLD, 10, 10)
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(0, 10, 10)  # automatic collection off: the caller's choice stays
        with fewer_collections():
            assert gc.get_threshold()[0] == 0
        with pytest.raises(KeyError), fewer_collections():
            raise KeyError("x")
        assert gc.get_threshold() == (0, 10, 10)
    finally:
        gc.set_threshold(*saved)


def test_the_index_row_macro_unpacks_the_fields_of_index_row_in_order() -> None:
    """index_rows.html unpacks a views.IndexRow into locals by position: its list of names is the tuple's fields."""
    from pcapcheck.report.views import IndexRow

    text = (Path(html_report.__file__).parent.parent / "templates" / "index_rows.html").read_text(encoding="utf-8")
    names = re.search(r"\{% set ([\w, ]+) = r %\}", text)
    assert names is not None
    assert tuple(n.strip() for n in names.group(1).split(",")) == IndexRow._fields


def test_detail_rows_by_key():
    """A detail's row: frame numbers under ``frame``/``*_frame`` and lists under ``*frames`` as links (when the
    page shows the frame), anything else as text; keys as visible text. The same the second time a key comes
    (what each key is, is looked up once)."""
    shown = {5}
    for _ in range(2):
        assert views._detail_row("frame", 5, shown) == views.DetailRow("frame", "5", (views.FrameRef(5, True),))
        assert views._detail_row("trigger_frame", 7, shown) == views.DetailRow(
            "trigger_frame", "7", (views.FrameRef(7, False),))
        assert views._detail_row("trigger_frame", None, shown) == views.DetailRow("trigger_frame", "-")
        assert views._detail_row("frame", True, shown) == views.DetailRow("frame", "yes")
        assert views._detail_row("rst_frames", [5, 6], shown) == views.DetailRow(
            "rst_frames", "5, 6", (views.FrameRef(5, True), views.FrameRef(6, False)))
        assert views._detail_row("rst_frames", [5, "x"], shown) == views.DetailRow("rst_frames", "5, x")
        assert views._detail_row("rst_frames", [], shown) == views.DetailRow("rst_frames", "")
        assert views._detail_row("seq", 2**32 - 1, shown) == views.DetailRow("seq", "4294967295")
        assert views._detail_row("reason", "a\x1bb", shown) == views.DetailRow("reason", "a\\x1bb")
        assert views._detail_row("k\x00_frame", 5, shown) == views.DetailRow("k\\x00_frame", "5", (views.FrameRef(5, True),))
        assert views._detail_row("k\x00frame", 5, shown) == views.DetailRow("k\\x00frame", "5")
        assert views._detail_row(3, "x", shown) == views.DetailRow("3", "x")
        assert views._detail_row("framing", {"type": "chunked"}, shown) == views.DetailRow("framing", "chunked")


@pytest.mark.parametrize("name", ["incident1-te-duplicate", "http-chunk-bare-lf", "http-body-truncated",
                                  "http-pipelined-ok", "http-obs-fold", "incident3-plaintext-to-tls"])
def test_exchange_views_from_bytes_are_those_from_report_json(name) -> None:
    """A page's exchanges are built from their messages' bytes (to_json(page=True)), not from the escaped text
    report.json has: the same views, marks and body notes as from that text (heads, bodies, empty bodies)."""
    from pcapcheck.config import Options
    from pcapcheck.pipeline import Analysis

    results = []

    class Sink:
        def conversation(self, r) -> None:
            results.append(r)

    Analysis(Options(), Sink()).run([str(FIXTURES / f"{name}.pcap")])
    seen = 0
    for r in results:
        marks = views._Marks(r.findings)
        shown = frozenset(row.frame for row in r.timeline)
        for i, x in enumerate(r.http):
            assert views.exchange_view(i, x, marks, shown) == views.exchange_view(i, x.to_json(), marks, shown)
            seen += 1
    assert seen
