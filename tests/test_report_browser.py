"""The report in a real browser: headless Chromium opens the index and conversation pages.

Checks that nothing from the capture ran (the XSS payload would set document.title, mark <body> and add a
<pwned> element), that the pages log no console message (errors, CSP violations), that the index's own
script works under its Content-Security-Policy, and saves screenshots (paths printed; run with -s).
Chromium comes from Debian (apt-get install chromium chromium-driver); set-up installs it when it is
missing and the tests run as root, and skips otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pcapcheck.findings import Severity
from pcapcheck.report.html_report import HtmlReport
from tests.browser import chromium
from tests.browser import samples as s

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> str:
    path, reason = chromium.ensure()
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    rs = [s.incident2(240), s.xss(), s.incident1(), s.plain(3, severity=Severity.NOTICE), s.plain(4)]
    inputs = [s.input_summary(conversations=len(rs))]
    rep = HtmlReport(out, inputs=["incident.pcap"])
    for r in rs:
        rep.conversation(r)
    rep.finish(s.totals_for(rs, inputs))
    return out


def _profile(tmp_path: Path) -> Path:
    p = tmp_path / "profile"
    p.mkdir(exist_ok=True)
    return p


@pytest.mark.parametrize("page", ["index.html", "conv-2.html", "conv-0.html"])
def test_no_script_from_the_capture_runs(browser, report, tmp_path, page):
    run = chromium.dump_dom(browser, (report / page).as_uri(), _profile(tmp_path))
    assert "<html" in run.dom, run.stderr[-2000:]
    assert "PWNED" not in re.search(r"<title>(.*?)</title>", run.dom, re.S).group(1)
    assert "data-pwned" not in re.search(r"<body[^>]*>", run.dom).group(0)
    assert "<pwned" not in run.dom and "<img" not in run.dom
    assert run.console == (), run.console
    if page == "index.html":  # the index's own script ran (under its CSP hash): controls shown, rows counted
        assert '<div id="controls">' in run.dom and "5 of 5 shown" in run.dom
    if page == "conv-2.html":  # the payload is there, as text
        assert "&lt;script&gt;document.title='PWNED'" in run.dom


@pytest.mark.parametrize("page", ["index.html", "conv-0.html", "conv-1.html", "conv-2.html"])
def test_screenshots(browser, report, tmp_path, page):
    png = tmp_path / page.replace(".html", ".png")
    run = chromium.screenshot(browser, (report / page).as_uri(), png, _profile(tmp_path), size="1400,2000")
    assert png.exists() and png.stat().st_size > 20_000, run.stderr[-2000:]
    assert run.console == (), run.console
    print(f"screenshot: {png}")
