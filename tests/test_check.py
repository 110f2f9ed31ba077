"""``pcapcheck check``: expectation parsing, matching, discovery, JUnit/JSON, --update, --jobs, the CLI,
and the corpora: the project's fixtures (fixtures/expect/) and the shared captures (tests/corpus_expect/).

Unit tests use an injected analysis (:func:`fake_analyze`): a "capture" is a JSON file listing findings,
so they run without the pipeline. The end-to-end tests use the real pipeline.
"""

from __future__ import annotations

import copy
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from pcapcheck import check as chk
from pcapcheck.config import Options
from pcapcheck.expect_yaml import parse_yaml
from pcapcheck.findings import Finding, Severity
from tests.conftest import CORPUS, FIXTURES, ROOT

try:
    import pcapcheck.pipeline  # noqa: F401

    PIPELINE_ERROR = None
except Exception as e:  # noqa: BLE001 - the analyzers are being finished; unit tests must run anyway
    PIPELINE_ERROR = f"pcapcheck.pipeline does not import yet ({type(e).__name__}: {e})"
needs_pipeline = pytest.mark.skipif(PIPELINE_ERROR is not None, reason=PIPELINE_ERROR or "")

CORPUS_EXPECT = ROOT / "tests" / "corpus_expect"
FIXTURE_EXPECT = FIXTURES / "expect"

EXAMPLE = """\
# incident 1: duplicate Transfer-Encoding, proxy RST
present:
  - code: http.te.duplicate
    conversation: 0
    direction: s2c
  - code: tcp.rst
    detail: {origin: abort, sender: client}
absent: [tcp.out-of-window, capture.truncated]
counts:
  tcp.rst: 1
"""


# -- an injectable analysis: a "capture" is JSON describing the findings ------------------------------------

def fake_analyze(path: str, options: Options) -> chk.CaptureResult:
    """Module level, so ``--jobs`` worker processes can unpickle it."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if text == "UNREADABLE":
        return chk.CaptureResult(path, False, (Finding("capture.unreadable", Severity.ERROR, f"{path}: not a capture"),),
                                 error=f"{path}: not a pcap or pcapng file")
    if text == "CRASH":
        raise RuntimeError("analyzer bug")
    doc = json.loads(text)
    findings = tuple(Finding(f["code"], Severity.parse(f.get("severity", "warning")), "m", f.get("conversation"),
                             f.get("direction"), tuple(f.get("frames", ())), f.get("detail", {}))
                     for f in doc["findings"])
    return chk.CaptureResult(path, True, tuple(sorted(findings, key=chk.finding_order)), doc.get("conversations", 1))


TE_DUP = {"code": "http.te.duplicate", "conversation": 0, "direction": "s2c", "frames": [6, 7]}
RST = {"code": "tcp.rst", "conversation": 0, "direction": "c2s", "frames": [10], "severity": "notice",
       "detail": {"origin": "abort", "sender": "client", "trigger_frame": 9, "accepted": True}}


def capture(path: Path, *findings: dict, conversations: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"findings": list(findings), "conversations": conversations}))
    return path


def result_of(*findings: dict, conversations: int = 1) -> chk.CaptureResult:
    fs = tuple(Finding(f["code"], Severity.parse(f.get("severity", "warning")), "m", f.get("conversation"),
                       f.get("direction"), tuple(f.get("frames", ())), f.get("detail", {})) for f in findings)
    return chk.CaptureResult("x.pcap", True, fs, conversations)


def parse(text: str, path: str = "x.pcap.expect.yaml") -> chk.Expectation:
    return chk.parse_expectation(text, path)


# -- parsing ----------------------------------------------------------------------------------------------

def test_parse_the_documented_example() -> None:
    e = parse(EXAMPLE)
    assert [(p.code, p.line, p.conversation, p.direction) for p in e.present] == [
        ("http.te.duplicate", 3, 0, "s2c"), ("tcp.rst", 6, None, None)]
    assert e.present[1].detail == {"origin": "abort", "sender": "client"}
    assert "conversation" not in e.present[1].given
    assert [(a.code, a.line) for a in e.absent] == [("tcp.out-of-window", 8), ("capture.truncated", 8)]
    assert [(c.code, c.n, c.line) for c in e.counts] == [("tcp.rst", 1, 10)]
    assert e.header == ("# incident 1: duplicate Transfer-Encoding, proxy RST",)


def test_parse_every_key_and_the_shorthands() -> None:
    e = parse("present:\n- tcp.rst\n- {code: capture.truncated, conversation: null, frames: 4, severity: error}\n"
              "conversations: 3\nmax_severity: warning\nabsent: [http.*]\nreadable: false\n")
    assert e.present[0].code == "tcp.rst" and e.present[0].given == frozenset({"code"})
    p = e.present[1]
    assert p.conversation is None and "conversation" in p.given and p.frames == (4,) and p.severity is Severity.ERROR
    assert e.conversations == (3, 4) and e.max_severity == (Severity.WARNING, 5)
    assert e.absent[0].code == "http.*" and e.readable == (False, 7)


def test_empty_mapping_is_a_valid_expectation() -> None:
    assert parse("{}\n") == chk.Expectation("x.pcap.expect.yaml")


@pytest.mark.parametrize("text,line,fragment", [
    # unknown keys, with a suggestion
    ("present: []\nabsnet: [tcp.rst]\n", 2, "unknown key 'absnet' in the expectation; did you mean 'absent'?"),
    ("present:\n  - code: tcp.rst\n    orgin: abort\n", 3, "unknown key 'orgin' in a present entry"),
    ("present:\n  - {code: tcp.rst, conv: 1}\n", 2, "unknown key 'conv' in a present entry"),
    ("foo: 1\n", 1, "unknown key 'foo' in the expectation (known: absent, conversations, counts"),
    # indentation and syntax
    ("present:\n  - code: tcp.rst\n     conversation: 0\n", 3, "bad indentation"),
    ("present:\n  - code: tcp.rst\n conversation: 0\n", 3, "bad indentation"),
    ("present:\n\t- tcp.rst\n", 2, "tab"),
    ("counts:\n  tcp.rst: 1\n  tcp.rst: 2\n", 3, "duplicate key 'tcp.rst' (first on line 2)"),
    ("absent: [tcp.rst,\n  http.te.duplicate]\n", 1, "unterminated"),
    ("present:\n  - &a tcp.rst\n", 2, "anchors are not supported"),
    ("present:\n  - code: tcp.rst\n    detail: |\n      abort\n", 3, "block scalars are not supported"),
    ("present:\n  - code: tcp.rst\n    detail: {origin: yes}\n", 3, "'yes' is ambiguous"),
    ("present:\n  - code: tcp.rst\n    detail: {origin: \"abort}\n", 3, "unterminated"),
    ("present: []\n---\nabsent: []\n", 2, "one document per file"),
    # types
    ("present: tcp.rst\n", 1, "present must be a list, found 'tcp.rst'"),
    ("present:\n  - conversation: 0\n", 2, "a present entry needs a code"),
    ("present:\n  - code: 7\n", 2, "code must be a finding code (text), found 7"),
    ("present:\n  - code: TCP RST\n", 2, "'TCP RST' is not a finding code"),
    ("present:\n  - code: tcp.rst\n    conversation: first\n", 3, "conversation must be a conversation id"),
    ("present:\n  - code: tcp.rst\n    conversation: true\n", 3, "conversation must be a conversation id"),
    ("present:\n  - code: tcp.rst\n    direction: up\n", 3, "direction must be c2s or s2c, found 'up'"),
    ("present:\n  - code: tcp.rst\n    frames: [1, 0]\n", 3, "frames must be frame numbers (1-based), found 0"),
    ("present:\n  - code: tcp.rst\n    detail: [abort]\n", 3, "detail must be a mapping"),
    ("present:\n  - code: tcp.rst\n    severity: fatal\n", 3, "unknown severity 'fatal'"),
    ("counts: [tcp.rst]\n", 1, "counts must be a mapping"),
    ("counts:\n  tcp.rst: -1\n", 2, "the count of tcp.rst must be a whole number >= 0, found -1"),
    ("counts:\n  tcp.rst: 1.5\n", 2, "must be a whole number"),
    ("conversations: many\n", 1, "conversations must be a whole number"),
    ("max_severity: 3\n", 1, "max_severity must be error, warning, notice or info, found 3"),
    ("readable: true\n", 1, "readable can only be false"),
    ("absent: [tcp.rst, tcp.rst]\n", 1, "tcp.rst is listed twice in absent"),
    ("absent: [tcp*]\n", 1, "'tcp*' is not a finding code"),
    # contradictions
    ("present: [tcp.rst]\nabsent: [tcp.rst]\n", 2, "tcp.rst is absent, but tcp.rst is present (line 1)"),
    ("present: [http.te.duplicate]\nabsent: [http.*]\n", 2, "http.* is absent, but http.te.duplicate is present"),
    ("present: [tcp.rst]\ncounts: {tcp.rst: 0}\n", 2, "the count of tcp.rst is 0, but it is present"),
    ("absent: [tcp.rst]\ncounts: {tcp.rst: 2}\n", 2, "the count of tcp.rst is 2, but it is absent"),
    # not an expectation at all
    ("", 1, "empty expectation"),
    ("# only a comment\n", 1, "empty expectation"),
    ("- tcp.rst\n", 1, "the expectation must be a mapping"),
])
def test_bad_expectations_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(chk.ExpectationError) as exc:
        parse(text, "incidents/a.pcap.expect.yaml")
    assert exc.value.line == line, str(exc.value)
    assert str(exc.value).startswith(f"incidents/a.pcap.expect.yaml:{line}: ")
    assert fragment in str(exc.value)


def test_json_expectations_have_lines_too() -> None:
    e = chk.parse_expectation('{\n  "present": [\n    {"code": "tcp.rst", "detail": {"origin": "abort"}}\n  ],\n'
                              '  "counts": {"tcp.rst": 1}\n}\n', "a.pcap.expect.json")
    assert e.present[0].line == 3 and e.present[0].detail == {"origin": "abort"} and e.counts[0].line == 5
    for text, line, fragment in [('{\n  "present": [],\n  "Counts": {}\n}', 3, "unknown key 'Counts'"),
                                 ('{"absent": [], "absent": []}', 1, "duplicate key 'absent'"),
                                 ('{\n  "absent": ["tcp.rst",]\n}', 2, "expected a JSON value"),
                                 ('', 1, "empty expectation")]:
        with pytest.raises(chk.ExpectationError, match=re.escape(fragment)) as exc:
            chk.parse_expectation(text, "a.pcap.expect.json")
        assert exc.value.line == line and str(exc.value).startswith(f"a.pcap.expect.json:{line}: ")


def test_expectation_file_that_is_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "a.pcap.expect.yaml"
    p.write_bytes(b"present: []\nabsent: [tcp.rst]  # \xff\n")
    with pytest.raises(chk.ExpectationError, match=r"a\.pcap\.expect\.yaml:2: not UTF-8 text"):
        chk.load_expectation(str(p))


def test_yaml_subset_reads_what_yaml_reads() -> None:
    node = parse_yaml("---\na: 'it''s'  # comment\nb: \"tab\\there # not a comment\"\nc:\n- x\n- - 1\n  - -2.5\n"
                      "d: {e: [true, null, ~], 'f g': <6.1}\nh: don't\n", "t.yaml")
    assert node is not None
    assert node.plain() == {"a": "it's", "b": "tab\there # not a comment", "c": ["x", [1, -2.5]],
                            "d": {"e": [True, None, None], "f g": "<6.1"}, "h": "don't"}
    assert node.key_lines == {"a": 2, "b": 3, "c": 4, "d": 8, "h": 9}


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), _text)
_codes = st.from_regex(r"(tcp|http|capture)\.[a-z][a-z0-9-]{0,8}", fullmatch=True)


@given(st.lists(st.fixed_dictionaries(
    {"code": _codes, "conversation": st.one_of(st.none(), st.integers(0, 99))},
    optional={"direction": st.sampled_from(["c2s", "s2c"]),
              "detail": st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _scalar, max_size=3)}),
    max_size=4), st.dictionaries(_codes, st.integers(0, 9), max_size=3),
    st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12), max_size=2))
def test_written_yaml_reads_back(present: list, counts: dict, comments: list) -> None:
    """--update's writer quotes whatever would not read back as itself (any text in detail values)."""
    header = tuple("# " + c for c in comments)
    doc = {"present": present, "counts": counts, "conversations": 2}
    text = chk.render_yaml(doc, header)
    node = parse_yaml(text, "w.yaml")
    assert node is not None and node.plain() == doc


# -- matching -----------------------------------------------------------------------------------------------

def test_an_expectation_that_passes() -> None:
    e = parse("present:\n  - {code: http.te.duplicate, conversation: 0, direction: s2c, frames: [7]}\n"
              "  - {code: tcp.rst, frames: [10], severity: notice, detail: {origin: abort, accepted: true}}\n"
              "absent: [tcp.out-of-window, capture.*]\ncounts: {tcp.rst: 1, http.te.duplicate: 1, tcp.port-reuse: 0}\n"
              "conversations: 1\nmax_severity: warning\n")
    assert chk.compare(e, result_of(TE_DUP, RST)) == ()


def test_missing_finding_says_what_did_not_match() -> None:
    e = parse("present:\n  - {code: tcp.rst, detail: {origin: no-socket}}\n  - {code: http.te.duplicate, "
              "direction: c2s}\n  - code: http.te-cl.conflict\n")
    m = chk.compare(e, result_of(TE_DUP, RST))
    assert [(x.kind, x.line) for x in m] == [("missing", 2), ("missing", 3), ("missing", 4)]
    assert m[0].message == ("missing tcp.rst detail {origin: no-socket} (line 2): 1 tcp.rst finding(s) did not match: "
                            "conversation 0 c2s frames 10 detail {origin: abort}")
    assert m[1].message.startswith("missing http.te.duplicate c2s (line 3): 1 http.te.duplicate finding(s) did not "
                                   "match: conversation 0 s2c frames 6,7")
    assert m[2].message == "missing http.te-cl.conflict (line 4): no http.te-cl.conflict finding at all"


def test_unexpected_absent_code_and_wrong_count() -> None:
    e = parse("absent: [tcp.rst, http.*]\ncounts: {tcp.out-of-window: 2}\nconversations: 2\nmax_severity: notice\n")
    m = chk.compare(e, result_of(TE_DUP, RST))
    assert [x.kind for x in m] == ["unexpected", "unexpected", "count", "conversations", "severity"]
    assert m[0].message == ("unexpected tcp.rst (absent, line 1): 1 finding(s): conversation 0 c2s frames 10 "
                            "detail {origin: abort, sender: client}")
    assert m[1].message.startswith("unexpected http.te.duplicate (http.*) (absent, line 1)")
    assert m[2].message == "count of tcp.out-of-window is 0, expected 2 (line 2)"
    assert m[3].message == "1 conversations, expected 2 (line 3)"
    assert m[4].message.startswith("worst severity is warning (http.te.duplicate), expected at most notice (line 4)")


@pytest.mark.parametrize("entry,matches", [
    ("{code: tcp.rst}", True),
    ("{code: tcp.rst, conversation: 0}", True),
    ("{code: tcp.rst, conversation: 1}", False),
    ("{code: tcp.rst, conversation: null}", False),  # null = capture-level
    ("{code: tcp.rst, direction: c2s}", True),
    ("{code: tcp.rst, frames: [10]}", True),
    ("{code: tcp.rst, frames: [9, 10]}", False),  # a subset of the finding's frames
    ("{code: tcp.rst, severity: notice}", True),
    ("{code: tcp.rst, severity: warning}", False),
    ("{code: tcp.rst, detail: {}}", True),
    ("{code: tcp.rst, detail: {trigger_frame: 9, sender: client}}", True),
    ("{code: tcp.rst, detail: {trigger_frame: '9'}}", False),  # types matter
    ("{code: tcp.rst, detail: {accepted: 1}}", False),  # true is not 1
    ("{code: tcp.rst, detail: {origin: Abort}}", False),  # case matters
    ("{code: tcp.rst, detail: {missing_key: null}}", False),
])
def test_present_entry_matching(entry: str, matches: bool) -> None:
    e = parse(f"present:\n  - {entry}\n")
    assert (chk.compare(e, result_of(RST)) == ()) is matches


def test_capture_level_and_nested_detail() -> None:
    trunc = {"code": "capture.truncated", "severity": "error", "frames": [4], "detail": {"offset": 286, "x": {"z": [1]}}}
    e = parse("present:\n  - {code: capture.truncated, conversation: null, frames: [4], detail: {offset: 286, "
              "x: {z: [1]}}}\n")
    assert chk.compare(e, result_of(trunc)) == ()
    assert chk.compare(parse("present:\n  - {code: capture.truncated, detail: {x: {z: [2]}}}\n"), result_of(trunc))


# -- discovery ----------------------------------------------------------------------------------------------

def test_discover_beside_captures(tmp_path: Path) -> None:
    inc = tmp_path / "incidents"
    for name in ["a.pcap", "sub/b.pcapng", "sub/c.pcap.gz", "d.cap", ".git/e.pcap", "notes.txt", "f.pcap.gz.bak"]:
        capture(inc / name)
    (inc / "a.pcap.expect.yaml").write_text("{}\n")
    (inc / "sub/b.pcapng.expect.json").write_text("{}\n")
    (inc / "sub/c.pcap.gz.expect.yaml").write_text("{}\n")
    (inc / "sub/c.pcap.gz.expect.json").write_text("{}\n")
    (inc / "gone.pcap.expect.yaml").write_text("{}\n")
    cases = chk.discover([str(inc)])
    got = [(os.path.relpath(c.capture, inc), c.expectation and os.path.relpath(c.expectation, inc),
            c.capture_missing, c.problem is not None) for c in cases]
    assert got == [
        ("a.pcap", "a.pcap.expect.yaml", False, False),
        ("d.cap", None, False, False),
        ("gone.pcap", "gone.pcap.expect.yaml", True, False),
        ("sub/b.pcapng", "sub/b.pcapng.expect.json", False, False),
        ("sub/c.pcap.gz", "sub/c.pcap.gz.expect.yaml", False, True),
    ]
    assert cases[1].target == str(inc / "d.cap.expect.yaml")


def test_discover_with_expect_dir(tmp_path: Path) -> None:
    corpus, exp = tmp_path / "corpus", tmp_path / "exp"
    capture(corpus / "suricata/bug-3844/input.pcap")
    capture(corpus / "zeek/x.pcap")
    capture(tmp_path / "other/y.pcap")
    exp.mkdir()
    (exp / "suricata__bug-3844__input.pcap.expect.yaml").write_text("{}\n")
    (exp / "zeek__removed.pcap.expect.yaml").write_text("{}\n")
    (exp / "y.pcap.expect.yaml").write_text("{}\n")
    cases = chk.discover([str(corpus)], str(exp))
    assert [(os.path.relpath(c.capture, corpus), c.expectation and os.path.basename(c.expectation),
             c.capture_missing) for c in cases] == [
        ("suricata/bug-3844/input.pcap", "suricata__bug-3844__input.pcap.expect.yaml", False),
        ("y.pcap", "y.pcap.expect.yaml", True),  # no capture named y.pcap in corpus/
        ("zeek/removed.pcap", "zeek__removed.pcap.expect.yaml", True),
        ("zeek/x.pcap", None, False),
    ]
    assert cases[3].target == str(exp / "zeek__x.pcap.expect.yaml")
    # File arguments: the longest tail of the path that has an expectation; no orphan hunting.
    by_file = chk.discover([str(corpus / "suricata/bug-3844/input.pcap"), str(tmp_path / "other/y.pcap")], str(exp))
    assert [os.path.basename(c.expectation or "") for c in by_file] == [
        "suricata__bug-3844__input.pcap.expect.yaml", "y.pcap.expect.yaml"]


def test_discover_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(chk.DiscoveryError, match="nope: no such file or directory"):
        chk.discover([str(tmp_path / "nope")])
    (tmp_path / "a.pcap.expect.yaml").write_text("{}\n")
    with pytest.raises(chk.DiscoveryError, match="is an expectation file"):
        chk.discover([str(tmp_path / "a.pcap.expect.yaml")])
    [orphan] = chk.discover([str(tmp_path)])
    assert orphan.capture_missing and orphan.capture == str(tmp_path / "a.pcap")


# -- running: errors are results, never crashes --------------------------------------------------------------

def corpus_dir(tmp_path: Path) -> Path:
    d = tmp_path / "incidents"
    capture(d / "1-pass.pcap", TE_DUP, RST)
    (d / "1-pass.pcap.expect.yaml").write_text(EXAMPLE)
    capture(d / "2-fail.pcap", TE_DUP)
    (d / "2-fail.pcap.expect.yaml").write_text(EXAMPLE)
    (d / "3-unreadable.pcap").write_text("UNREADABLE")
    (d / "3-unreadable.pcap.expect.yaml").write_text(EXAMPLE)
    (d / "4-crash.pcap").write_text("CRASH")
    (d / "4-crash.pcap.expect.yaml").write_text(EXAMPLE)
    capture(d / "5-no-expectation.pcap")
    capture(d / "6-bad-expectation.pcap")
    (d / "6-bad-expectation.pcap.expect.yaml").write_text("present:\n  - code: tcp.rst\n    sender: client\n")
    (d / "7-deleted.pcap.expect.yaml").write_text(EXAMPLE)
    (d / "8-expected-unreadable.pcap").write_text("UNREADABLE")
    (d / "8-expected-unreadable.pcap.expect.yaml").write_text("readable: false\npresent: [capture.unreadable]\n")
    capture(d / "9-readable-after-all.pcap")
    (d / "9-readable-after-all.pcap.expect.yaml").write_text("readable: false\n")
    return d


def run(paths: list[Path], jobs: int = 1, expect_dir: Path | None = None) -> list[chk.CaseResult]:
    cases = chk.discover([str(p) for p in paths], str(expect_dir) if expect_dir else None)
    return chk.run_check(cases, Options(), jobs=jobs, analyze=fake_analyze)


def test_run_check_outcomes(tmp_path: Path) -> None:
    d = corpus_dir(tmp_path)
    results = run([d])
    got = {os.path.basename(r.capture): (r.status, r.error_kind, [m.kind for m in r.mismatches]) for r in results}
    assert got == {
        "1-pass.pcap": ("pass", None, []),
        "2-fail.pcap": ("fail", None, ["missing", "count"]),
        "3-unreadable.pcap": ("error", "unreadable", []),
        "4-crash.pcap": ("error", "internal-error", []),
        "5-no-expectation.pcap": ("error", "no-expectation", []),
        "6-bad-expectation.pcap": ("error", "bad-expectation", []),
        "7-deleted.pcap": ("error", "capture-missing", []),
        "8-expected-unreadable.pcap": ("pass", None, []),
        "9-readable-after-all.pcap": ("fail", None, ["readable"]),
    }
    err = {os.path.basename(r.capture): r.error for r in results}
    assert err["4-crash.pcap"].endswith("4-crash.pcap: internal error while analyzing: RuntimeError: analyzer bug")
    assert err["6-bad-expectation.pcap"] == (f"{d}/6-bad-expectation.pcap.expect.yaml:3: unknown key 'sender' in a "
                                             "present entry (known: code, conversation, detail, direction, frames, "
                                             "severity)")
    assert "7-deleted.pcap.expect.yaml expects" in err["7-deleted.pcap"]
    assert chk.exit_code(results) == 1
    assert chk.exit_code([r for r in results if r.status == "pass"]) == 0


def test_a_capture_that_disappears_is_an_error_not_a_crash(tmp_path: Path) -> None:
    p = capture(tmp_path / "a.pcap")
    (tmp_path / "a.pcap.expect.yaml").write_text("{}\n")
    cases = chk.discover([str(p)])
    p.unlink()
    [r] = chk.run_check(cases, analyze=fake_analyze)
    assert r.status == "error" and r.error_kind == "internal-error" and "FileNotFoundError" in (r.error or "")


def test_summary_lines(tmp_path: Path) -> None:
    d = corpus_dir(tmp_path)
    lines = chk.summary_lines(run([d]))
    assert lines[0] == f"FAIL  {d}/2-fail.pcap ({d}/2-fail.pcap.expect.yaml)"
    assert lines[1].startswith("      missing tcp.rst detail {origin: abort, sender: client} (line 6): no tcp.rst")
    assert lines[-1] == "9 captures: 2 passed, 2 failed, 5 errors"
    assert chk.summary_lines([])[-1] == "0 captures: 0 passed, 0 failed, 0 errors"


# -- JUnit --------------------------------------------------------------------------------------------------

def assert_junit_shape(xml: bytes, results: list[chk.CaseResult]) -> ET.Element:
    """The JUnit schema's shape: what Jenkins, GitLab and GitHub's reporters require."""
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    [suite] = list(root)
    assert suite.tag == "testsuite" and suite.get("name") == "pcapcheck"
    for el in (root, suite):
        for attr in ("tests", "failures", "errors"):
            assert (el.get(attr) or "").isdigit(), attr
        float(el.get("time") or "x")
    cases = list(suite)
    assert all(c.tag == "testcase" for c in cases)
    assert int(suite.get("tests") or -1) == len(cases) == len(results)
    assert int(suite.get("failures") or -1) == sum(len(c.findall("failure")) for c in cases)
    assert int(suite.get("errors") or -1) == sum(len(c.findall("error")) for c in cases)
    names = [c.get("name") for c in cases]
    assert names == sorted(names)
    for c in cases:
        assert c.get("classname") == "pcapcheck.check" and c.get("name")
        float(c.get("time") or "x")
        children = list(c)
        assert len(children) <= 1 and all(ch.tag in ("failure", "error") for ch in children)
        for ch in children:
            assert ch.get("message") and ch.get("type") and ch.text
    return root


def test_junit_shape_and_content(tmp_path: Path) -> None:
    d = corpus_dir(tmp_path)
    results = run([d])
    root = assert_junit_shape(chk.junit_xml(results, 1.5), results)
    suite = root[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("time")) == ("9", "2", "5", "1.500")
    by_name = {os.path.basename(c.get("name") or ""): c for c in suite}
    fail = by_name["2-fail.pcap"].find("failure")
    assert fail is not None and fail.get("message") == f"2 mismatch(es) with {d}/2-fail.pcap.expect.yaml: count, missing"
    assert "missing tcp.rst" in (fail.text or "") and "count of tcp.rst is 0, expected 1" in (fail.text or "")
    err = by_name["3-unreadable.pcap"].find("error")
    assert err is not None and err.get("type") == "unreadable" and "not a pcap" in (err.get("message") or "")
    assert list(by_name["1-pass.pcap"]) == []


def test_junit_survives_control_characters() -> None:
    r = chk.CaseResult("a\x00b.pcap", None, "error", error="bad \x1b[31m bytes \ud800", error_kind="unreadable")
    root = ET.fromstring(chk.junit_xml([r]))
    assert root[0][0].get("name") == "a\\x00b.pcap"
    assert (root[0][0][0].get("message") or "").startswith("bad \\x1b[31m bytes")


# -- --jobs -------------------------------------------------------------------------------------------------

def without_times(xml: bytes) -> bytes:
    return re.sub(rb'time="[0-9.]+"', b'time=""', xml)


def test_jobs_do_not_change_results(tmp_path: Path) -> None:
    d = corpus_dir(tmp_path)
    for i in range(12):
        capture(d / f"many/{i:02}.pcap", TE_DUP, *([RST] * (i % 3)))
    one, two = run([d], jobs=1), run([d], jobs=2)
    assert chk.json_report(one) == chk.json_report(two)
    assert without_times(chk.junit_xml(one)) == without_times(chk.junit_xml(two))
    assert chk.summary_lines(one) == chk.summary_lines(two)
    assert [r.result for r in one] == [r.result for r in two]


# -- --update -----------------------------------------------------------------------------------------------

def test_update_writes_then_the_check_passes(tmp_path: Path) -> None:
    d = tmp_path / "incidents"
    trunc = {"code": "capture.truncated", "severity": "error", "frames": [4], "detail": {"offset": 286}}
    info = {"code": "conversation.end", "severity": "info", "conversation": 0}
    weird = {"code": "http.te.unknown", "conversation": 1, "direction": "s2c", "detail": {"rule": "a: b # c"}}
    capture(d / "a.pcap", RST, TE_DUP, trunc, info, weird, RST, conversations=2)
    (d / "a.pcap.expect.yaml").write_text("# incident 7: keep this line\nabsent: [tcp.out-of-window, http.te.*]\n"
                                          "max_severity: warning\n")
    [r] = chk.run_check(chk.discover([str(d)]), analyze=fake_analyze, compare_results=False)
    [u] = chk.update_expectations([r])
    assert (u.action, u.notes) == ("wrote", ("dropped absent http.te.*: it occurs now",
                                             "dropped max_severity warning: a worse finding occurs now"))
    assert (d / "a.pcap.expect.yaml").read_text() == (
        "# incident 7: keep this line\n"
        "present:\n"
        "  - {code: capture.truncated, conversation: null}\n"
        "  - {code: http.te.duplicate, conversation: 0, direction: s2c}\n"
        "  - {code: tcp.rst, conversation: 0, direction: c2s, detail: {origin: abort, sender: client}}\n"
        "  - {code: http.te.unknown, conversation: 1, direction: s2c, detail: {rule: \"a: b # c\"}}\n"
        "absent: [tcp.out-of-window]\n"
        "counts:\n"
        "  capture.truncated: 1\n"
        "  tcp.rst: 2\n"
        "conversations: 2\n")
    assert [x.status for x in run([d])] == ["pass"]
    [r] = chk.run_check(chk.discover([str(d)]), analyze=fake_analyze, compare_results=False)
    assert chk.update_expectations([r])[0].action == "unchanged"


def test_update_refuses_unreadable_captures_unless_expected(tmp_path: Path) -> None:
    d = corpus_dir(tmp_path)
    results = chk.run_check(chk.discover([str(d)]), analyze=fake_analyze, compare_results=False)
    actions = {os.path.basename(u.capture): u.action for u in chk.update_expectations(results)}
    assert actions["3-unreadable.pcap"] == actions["4-crash.pcap"] == actions["7-deleted.pcap"] == "error"
    assert actions["8-expected-unreadable.pcap"] == "unchanged"
    assert actions["5-no-expectation.pcap"] == actions["6-bad-expectation.pcap"] == "wrote"
    assert (d / "5-no-expectation.pcap.expect.yaml").read_text().startswith(
        "# 5-no-expectation.pcap: written by `pcapcheck check --update`")


@pytest.mark.parametrize("value,ci", [("true", True), ("1", True), ("yes", True), ("", False), ("0", False),
                                      ("false", False), (None, False)])
def test_ci_detection(value: str | None, ci: bool) -> None:
    env = {} if value is None else {"CI": value}
    assert (chk.ci_value(env) is not None) is ci


# -- the command line ---------------------------------------------------------------------------------------

@pytest.fixture
def cli_group(monkeypatch: pytest.MonkeyPatch) -> click.Group:
    """A fresh group with ``check`` registered, analyzing with :func:`fake_analyze`."""
    pytest.importorskip("pcapcheck.cli", reason="pcapcheck.cli imports the pipeline, which does not import yet")
    from pcapcheck.cli_check import register

    @click.group()
    def group() -> None:
        """test copy"""

    register(group)
    monkeypatch.setattr(chk, "analyze_capture", fake_analyze)
    monkeypatch.delenv("CI", raising=False)
    return group


def invoke(group: click.Group, args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    from pcapcheck.cli import Outcome

    res = CliRunner().invoke(group, args, env=env)
    if isinstance(res.exception, Outcome):
        return res.exception.code, res.stdout, res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.stdout, res.stderr


def test_cli_pass_and_fail(cli_group: click.Group, tmp_path: Path) -> None:
    d = tmp_path / "incidents"
    capture(d / "a.pcap", TE_DUP, RST)
    (d / "a.pcap.expect.yaml").write_text(EXAMPLE)
    assert invoke(cli_group, ["check", str(d), "-j", "1"]) == (0, "1 capture: 1 passed, 0 failed, 0 errors\n", "")
    assert invoke(cli_group, ["check", str(d), "-v"])[1] == f"ok    {d}/a.pcap\n1 capture: 1 passed, 0 failed, 0 errors\n"
    capture(d / "a.pcap", TE_DUP, RST, {"code": "tcp.out-of-window", "conversation": 0, "frames": [5]})
    code, out, err = invoke(cli_group, ["check", str(d), "--junit", str(tmp_path / "out.xml")])
    assert (code, err) == (1, "")
    assert out == (f"FAIL  {d}/a.pcap ({d}/a.pcap.expect.yaml)\n"
                   "      unexpected tcp.out-of-window (absent, line 8): 1 finding(s): conversation 0 frames 5\n"
                   "1 capture: 0 passed, 1 failed, 0 errors\n")
    root = ET.parse(tmp_path / "out.xml").getroot()
    assert root[0].get("failures") == "1"


def test_cli_json_and_jobs(cli_group: click.Group, tmp_path: Path) -> None:
    d = corpus_dir(tmp_path)
    code1, out1, _ = invoke(cli_group, ["check", str(d), "--json", "--jobs", "1"])
    code2, out2, _ = invoke(cli_group, ["check", str(d), "--json", "--jobs", "2"])
    assert code1 == code2 == 1 and out1 == out2
    doc = json.loads(out1)
    assert doc["format"] == 1 and doc["summary"] == {"captures": 9, "passed": 2, "failed": 2, "errors": 5}
    assert [c["status"] for c in doc["captures"]] == ["pass", "fail", "error", "error", "error", "error", "error",
                                                      "pass", "fail"]


def test_cli_update_is_refused_in_ci(cli_group: click.Group, tmp_path: Path) -> None:
    p = capture(tmp_path / "a.pcap", RST)
    code, out, err = invoke(cli_group, ["check", str(p), "--update"], env={"CI": "1"})
    assert (code, out) == (2, "")
    assert "Error: --update refused: CI is set (CI=1); expectation files are written on a developer machine" in err
    assert not (tmp_path / "a.pcap.expect.yaml").exists()


def test_cli_update_then_check(cli_group: click.Group, tmp_path: Path) -> None:
    p = capture(tmp_path / "in" / "a.pcap", RST)
    exp = tmp_path / "exp"
    code, out, err = invoke(cli_group, ["check", str(tmp_path / "in"), "--expect-dir", str(exp), "--update"])
    assert (code, err) == (0, "")
    assert out == (f"wrote     {exp}/a.pcap.expect.yaml\n"
                   "1 expectation file written, 0 unchanged, 0 errors: review them with `git diff`\n")
    assert invoke(cli_group, ["check", str(p.parent), "--expect-dir", str(exp)])[0] == 0
    assert invoke(cli_group, ["check", str(p.parent), "--expect-dir", str(exp), "--update", "--junit", "x.xml"])[0] == 2


def test_cli_usage_errors(cli_group: click.Group, tmp_path: Path) -> None:
    code, out, err = invoke(cli_group, ["check", str(tmp_path / "missing")])
    assert code == 2 and "does not exist" in err
    code, out, err = invoke(cli_group, ["check", str(tmp_path)])
    assert code == 2 and "no captures in" in err
    capture(tmp_path / "a.pcap")
    code, out, err = invoke(cli_group, ["check", str(tmp_path), "--expect-dir", str(tmp_path / "nodir")])
    assert code == 2 and "--expect-dir" in err and "no such directory" in err
    code, out, err = invoke(cli_group, ["check", str(tmp_path), "--jobs", "0"])
    assert code == 2


def test_cli_through_the_one_exit_point(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``pcapcheck.cli.main`` turns the command's Outcome into the process exit code."""
    cli_mod = pytest.importorskip("pcapcheck.cli", reason="pcapcheck.cli imports the pipeline")
    from pcapcheck.cli_check import register

    group = copy.copy(cli_mod.cli)  # a copy, so other tests see the real group unchanged
    group.commands = dict(cli_mod.cli.commands)
    register(group)  # what cli.py does with its own group
    monkeypatch.setattr(cli_mod, "cli", group)
    monkeypatch.setattr(chk, "analyze_capture", fake_analyze)
    capture(tmp_path / "a.pcap", RST)
    (tmp_path / "a.pcap.expect.yaml").write_text("absent: [tcp.rst]\n")
    with pytest.raises(SystemExit) as exc:
        cli_mod.main(["check", str(tmp_path), "--jobs", "1"])
    assert exc.value.code == 1


# -- the real pipeline --------------------------------------------------------------------------------------

@needs_pipeline
def test_real_pipeline_end_to_end(tmp_path: Path) -> None:
    d = tmp_path / "incidents"
    d.mkdir()
    (d / "rst.pcap").write_bytes((FIXTURES / "rst-no-socket.pcap").read_bytes())
    (d / "rst.pcap.expect.yaml").write_text("present:\n  - {code: tcp.rst, conversation: 0, detail: {sender: server}}\n"
                                            "conversations: 1\n")
    (d / "garbage.pcap").write_bytes(b"\x00" * 100)
    (d / "garbage.pcap.expect.yaml").write_text("{}\n")
    results = chk.run_check(chk.discover([str(d)]), jobs=2)
    assert [(os.path.basename(r.capture), r.status, r.error_kind) for r in results] == [
        ("garbage.pcap", "error", "unreadable"), ("rst.pcap", "pass", None)]
    assert "not a pcap or pcapng file" in (results[0].error or "")


def fixture_cases() -> list[chk.Case]:
    if not FIXTURE_EXPECT.is_dir():
        return []
    return chk.discover([str(FIXTURES)], str(FIXTURE_EXPECT))


# Fixtures whose expectation (written from fixtures/README.md) the analyzers do not meet yet: the
# expectation is the truth, the analyzer has the bug. strict: an analyzer fix turns these into XPASS failures,
# so the entry must then be removed here.
FIXTURE_KNOWN_BUGS: dict[str, str] = {
    "rst-out-of-window.pcap": "the ignored out-of-window RST (frame 6) advances the tracker like tshark does: "
                              "tcp.out-of-order at frame 7 and tcp.retransmission at frame 10 are tshark artefacts",
}


@pytest.fixture(scope="session")
def fixture_results() -> dict[str, chk.CaseResult]:
    if PIPELINE_ERROR:
        pytest.skip(PIPELINE_ERROR)
    results = chk.run_check(fixture_cases(), jobs=chk.default_jobs())
    return {os.path.basename(r.capture): r for r in results}


@pytest.mark.parametrize("name", [
    pytest.param(os.path.basename(c.capture), marks=[pytest.mark.xfail(
        strict=True, reason=FIXTURE_KNOWN_BUGS[os.path.basename(c.capture)])]
        if os.path.basename(c.capture) in FIXTURE_KNOWN_BUGS else [])
    for c in fixture_cases()] or [pytest.param("none", marks=pytest.mark.skip(reason="no fixtures/expect/ yet"))])
def test_fixture_expectations(name: str, fixture_results: dict[str, chk.CaseResult]) -> None:
    """``pcapcheck check fixtures/ --expect-dir fixtures/expect``: every fixture meets its expectation."""
    r = fixture_results[name]
    assert r.status == "pass", "\n".join(chk.summary_lines([r]))


def corpus_cases() -> list[tuple[str, chk.Case]]:
    """(expectation file name, case) for every file in tests/corpus_expect/, its capture in ../shared/corpus."""
    if not CORPUS_EXPECT.is_dir():
        return []
    out = []
    for name in sorted(os.listdir(CORPUS_EXPECT)):
        stem = name[: -len(".expect.yaml")] if name.endswith(".expect.yaml") else None
        if stem is not None:
            capture_path = str(CORPUS / stem.replace("__", "/"))
            exp = str(CORPUS_EXPECT / name)
            out.append((name, chk.Case(capture_path, exp, exp, capture_missing=not os.path.exists(capture_path))))
    return out


# Expectations (checked with tshark) the analyzers do not meet yet; strict, like FIXTURE_KNOWN_BUGS.
CORPUS_KNOWN_BUGS: dict[str, str] = {}


@pytest.fixture(scope="session")
def corpus_results() -> dict[str, chk.CaseResult]:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not here ({CORPUS}): real-capture expectations need ../shared/corpus")
    if PIPELINE_ERROR:
        pytest.skip(PIPELINE_ERROR)
    pairs = corpus_cases()
    results = chk.run_check([c for _, c in pairs], jobs=chk.default_jobs())
    return {name: r for (name, _), r in zip(pairs, results)}


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.xfail(strict=True, reason=CORPUS_KNOWN_BUGS[n])] if n in CORPUS_KNOWN_BUGS
                 else []) for n, _ in corpus_cases()])
def test_shared_corpus_expectations(name: str, corpus_results: dict[str, chk.CaseResult]) -> None:
    """Hand-written expectations (verified with tshark) for captures in ../shared/corpus."""
    r = corpus_results[name]
    assert r.status == "pass", "\n".join(chk.summary_lines([r]))


def test_expectation_files_parse_and_name_documented_codes() -> None:
    """Every committed expectation parses, and each code in it is one pcapcheck documents (a typo in
    'absent' would otherwise pass forever). A family with its own page (docs/findings/http.md) must document
    every code; codes of families without one yet are listed in the skip reason."""
    files = sorted(CORPUS_EXPECT.glob("*.expect.yaml")) + sorted(FIXTURE_EXPECT.glob("*.expect.yaml"))
    pages = sorted((ROOT / "docs").rglob("*.md"))
    docs = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    documented = set(re.findall(r"`((?:capture|tcp|http|proto|conversation)\.[a-z0-9.-]*[a-z0-9])`", docs))
    complete = {p.stem for p in pages if p.parent.name == "findings"}
    wrong: dict[str, set[str]] = {}
    pending: set[str] = set()
    for f in files:
        e = chk.load_expectation(str(f))
        codes = {p.code for p in e.present} | {c.code for c in e.counts} | {a.code for a in e.absent}
        for code in codes:
            family = code.split(".")[0]
            if code.endswith(".*"):
                ok = any(d.startswith(code[:-1]) for d in documented) or family not in complete
            else:
                ok = code in documented
            if not ok and family in complete:
                wrong.setdefault(f.name, set()).add(code)
            elif not ok:
                pending.add(code)
    assert not wrong, f"codes not in docs/: {wrong}"
    if pending:
        pytest.skip(f"codes of families not documented yet (docs/findings/<family>.md): {sorted(pending)}")
