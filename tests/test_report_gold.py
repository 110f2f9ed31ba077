"""Gold files: generated report output compared with committed files (coverage.py's approach).

After an intended change to the report, regenerate and review the diff:

    PCAPCHECK_UPDATE_GOLD=1 .venv-dev/bin/pytest tests/test_report_gold.py
    git diff tests/gold/

The version string is replaced by ``VERSION`` so a release does not change the gold files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pcapcheck import __version__
from pcapcheck.findings import Severity
from pcapcheck.report.html_report import HtmlReport
from pcapcheck.report.json_report import JsonReport
from tests.browser import samples as s

GOLD = Path(__file__).resolve().parent / "gold"
UPDATE = os.environ.get("PCAPCHECK_UPDATE_GOLD") == "1"


def results():
    return [s.incident2(12), s.plain(2, severity=Severity.NOTICE), s.incident1()]


@pytest.fixture(scope="module")
def outdir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gold")
    rs = results()
    inputs = [s.input_summary(conversations=3)]
    html = HtmlReport(out, inputs=["incident.pcap"])
    js = JsonReport(out / "report.json")
    for r in rs:
        html.conversation(r)
        js.conversation(r)
    totals = s.totals_for(rs, inputs)
    html.finish(totals)
    js.finish(totals)
    return out


@pytest.mark.parametrize("name", ["report.json", "index.html", "conv-0.html", "conv-1.html"])
def test_gold(outdir, name):
    actual = (outdir / name).read_text(encoding="utf-8").replace(__version__, "VERSION")
    gold = GOLD / name
    if UPDATE:
        gold.parent.mkdir(exist_ok=True)
        gold.write_text(actual, encoding="utf-8", newline="\n")
    if not gold.exists():
        pytest.fail(f"{gold} is missing: run PCAPCHECK_UPDATE_GOLD=1 pytest tests/test_report_gold.py")
    expected = gold.read_text(encoding="utf-8")
    assert actual == expected, (f"{name} differs from {gold}; if the change is intended, run "
                                "PCAPCHECK_UPDATE_GOLD=1 pytest tests/test_report_gold.py and review git diff")
