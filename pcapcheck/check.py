"""Corpus checks: compare each capture's findings with its expectation file (``pcapcheck check``).

Four steps, each a plain function so tests can drive any of them alone:

1. :func:`discover` turns PATH arguments into :class:`Case` s: every capture (``*.pcap``, ``*.pcapng``,
   ``*.cap``, each optionally ``.gz``) and the expectation file that belongs to it, beside the capture
   (``<capture>.expect.yaml`` / ``.expect.json``) or in an ``--expect-dir`` (the capture's path relative to
   the directory argument, ``/`` replaced by ``__``). An expectation whose capture is gone is a case too.
2. :func:`run_check` analyzes the captures (in worker processes with ``jobs > 1``; results come back in
   case order, so ``--jobs`` never changes them) and compares each with :func:`compare`.
3. :func:`junit_xml`, :func:`json_report` and :func:`summary_lines` render the results.
4. :func:`update_expectations` (``--update``) writes expectation files from the current findings.

The analysis is injectable (``analyze=``): any picklable ``(path, Options) -> CaptureResult`` function.
The default, :func:`analyze_capture`, runs :class:`pcapcheck.pipeline.Analysis`. docs/check.md documents the
expectation format and the matching rules.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from pcapcheck.config import Options
from pcapcheck.expect_yaml import Node, ParseError, parse_json, parse_yaml, scalar_text
from pcapcheck.findings import Finding, Severity

ExpectationError = ParseError  # "path:line: message", for syntax and for meaning alike

EXPECT_SUFFIXES = (".expect.yaml", ".expect.json")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
CODE_RE = re.compile(r"[a-z][a-z0-9]*(\.[a-z0-9][a-z0-9-]*)+\Z")
DIRECTIONS = ("c2s", "s2c")
TOP_KEYS = ("present", "absent", "counts", "conversations", "max_severity", "readable")
WILDCARD_RE = re.compile(r"[a-z][a-z0-9]*(\.[a-z0-9][a-z0-9-]*)*\.\*\Z")
ENTRY_KEYS = ("code", "conversation", "direction", "frames", "detail", "severity")
# What --update copies from a finding's detail into a present entry: the facts that make up its verdict.
UPDATE_DETAIL_KEYS = ("origin", "sender", "rule", "verdict")
UPDATE_COUNTED = ("tcp.rst",)  # always counted by --update (plus every code with an error finding)
PASS, FAIL, ERROR = "pass", "fail", "error"


class DiscoveryError(Exception):
    """A PATH argument that cannot be used (the command line turns it into a usage error)."""


# -- expectations ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Present:
    """One ``present`` entry: some finding must match every key given (``given``)."""

    code: str
    line: int
    given: frozenset[str] = frozenset({"code"})
    conversation: int | None = None
    direction: str | None = None
    frames: tuple[int, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity | None = None

    def matches(self, f: Finding, detail: Mapping[str, Any]) -> bool:
        """``detail`` is ``f.detail`` as JSON data (what the file's values are compared with)."""
        if f.code != self.code:
            return False
        if "conversation" in self.given and f.conversation != self.conversation:
            return False
        if "direction" in self.given and f.direction != self.direction:
            return False
        if self.frames and not set(self.frames) <= set(f.frames):
            return False
        if self.severity is not None and f.severity != self.severity:
            return False
        return _detail_matches(self.detail, detail)

    def describe(self) -> str:
        parts = [self.code]
        if "conversation" in self.given:
            parts.append("capture-level" if self.conversation is None else f"conversation {self.conversation}")
        if "direction" in self.given:
            parts.append(str(self.direction))
        if self.frames:
            parts.append("frames " + ",".join(map(str, self.frames)))
        if self.severity is not None:
            parts.append(self.severity.label)
        if self.detail:
            parts.append("detail " + _flow(self.detail))
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Absent:
    code: str
    line: int


@dataclass(frozen=True, slots=True)
class Count:
    code: str
    n: int
    line: int


@dataclass(frozen=True, slots=True)
class Expectation:
    path: str
    present: tuple[Present, ...] = ()
    absent: tuple[Absent, ...] = ()
    counts: tuple[Count, ...] = ()
    conversations: tuple[int, int] | None = None  # (number, line)
    max_severity: tuple[Severity, int] | None = None  # (severity, line)
    readable: tuple[bool, int] | None = None  # (False, line): the capture must NOT be readable
    header: tuple[str, ...] = ()  # leading comment lines (kept by --update)


def load_expectation(path: str) -> Expectation:
    """Read and validate an expectation file; :class:`ExpectationError` names the file and line."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise ExpectationError(path, 1, f"cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExpectationError(path, data.count(b"\n", 0, e.start) + 1, "not UTF-8 text") from None
    return parse_expectation(text, path)


def parse_expectation(text: str, path: str) -> Expectation:
    """Parse expectation text; JSON when ``path`` ends in ``.json``, the YAML subset otherwise."""
    root = parse_json(text, path) if path.endswith(".json") else parse_yaml(text, path)
    if root is None:
        raise ExpectationError(path, 1, "empty expectation: give at least one of present, absent, counts "
                                        "(write {} to require only that the capture can be read)")
    return _Validator(path).expectation(root, _header(text))


def _header(text: str) -> tuple[str, ...]:
    out = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        out.append(line)
    return tuple(out)


class _Validator:
    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, line: int, message: str) -> ExpectationError:
        return ExpectationError(self.path, line, message)

    def mapping(self, node: Node, what: str) -> dict[str, Node]:
        if not isinstance(node.value, dict):
            raise self.error(node.line, f"{what} must be a mapping (key: value), found {_kind(node)}")
        return node.value

    def keys(self, node: Node, known: Sequence[str], where: str) -> dict[str, Node]:
        items = self.mapping(node, where)
        for key in items:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(known))})"
                raise self.error(node.key_lines.get(key, node.line), f"unknown key {key!r} in {where}{hint}")
        return items

    def code(self, node: Node, where: str, wildcard: bool = False) -> str:
        if not isinstance(node.value, str):
            raise self.error(node.line, f"{where} must be a finding code (text), found {_kind(node)}")
        if wildcard and WILDCARD_RE.match(node.value):
            return node.value
        if not CODE_RE.match(node.value):
            raise self.error(node.line, f"{node.value!r} is not a finding code (codes look like tcp.rst, "
                                        "http.te.duplicate: lower case, dot-separated)")
        return node.value

    def count(self, node: Node, where: str) -> int:
        if type(node.value) is not int or node.value < 0:
            raise self.error(node.line, f"{where} must be a whole number >= 0, found {_kind(node)}")
        return node.value

    def severity(self, node: Node, where: str) -> Severity:
        if not isinstance(node.value, str):
            raise self.error(node.line, f"{where} must be error, warning, notice or info, found {_kind(node)}")
        try:
            return Severity.parse(node.value)
        except ValueError as e:
            raise self.error(node.line, f"{where}: {e}") from None

    def expectation(self, root: Node, header: tuple[str, ...]) -> Expectation:
        top = self.keys(root, TOP_KEYS, "the expectation")
        present = tuple(self.present_entry(n) for n in self.seq(top["present"], "present")) if "present" in top \
            else ()
        absent: list[Absent] = []
        if "absent" in top:
            for n in self.seq(top["absent"], "absent"):
                code = self.code(n, "an absent entry", wildcard=True)
                if any(a.code == code for a in absent):
                    raise self.error(n.line, f"{code} is listed twice in absent")
                absent.append(Absent(code, n.line))
        counts: list[Count] = []
        if "counts" in top:
            node = top["counts"]
            for code, n in self.mapping(node, "counts").items():
                line = node.key_lines.get(code, n.line)
                self.code(Node(code, line), "a counts key")
                counts.append(Count(code, self.count(n, f"the count of {code}"), line))
        conversations = None
        if "conversations" in top:
            conversations = (self.count(top["conversations"], "conversations"), top["conversations"].line)
        max_sev = None
        if "max_severity" in top:
            max_sev = (self.severity(top["max_severity"], "max_severity"), top["max_severity"].line)
        readable = None
        if "readable" in top:
            n = top["readable"]
            if n.value is not False:
                raise self.error(n.line, f"readable can only be false (a capture that must fail to read); found "
                                         f"{_kind(n)}; leave it out for a normal capture")
            readable = (False, n.line)
        self.consistent(present, absent, counts)
        return Expectation(self.path, present, tuple(absent), tuple(counts), conversations, max_sev, readable,
                           header)

    def seq(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node.value, list):
            raise self.error(node.line, f"{what} must be a list, found {_kind(node)}")
        return node.value

    def present_entry(self, node: Node) -> Present:
        if isinstance(node.value, str):  # shorthand: "- tcp.rst"
            return Present(self.code(node, "a present entry"), node.line)
        items = self.keys(node, ENTRY_KEYS, "a present entry")
        if "code" not in items:
            raise self.error(node.line, "a present entry needs a code")
        code = self.code(items["code"], "code")
        kw: dict[str, Any] = {}
        if "conversation" in items:
            n = items["conversation"]
            if n.value is not None and (type(n.value) is not int or n.value < 0):
                raise self.error(n.line, f"conversation must be a conversation id (tcp.stream, >= 0) or null for "
                                         f"a capture-level finding, found {_kind(n)}")
            kw["conversation"] = n.value
        if "direction" in items:
            n = items["direction"]
            if n.value not in DIRECTIONS and n.value is not None:
                raise self.error(n.line, f"direction must be c2s or s2c, found {_kind(n)}")
            kw["direction"] = n.value
        if "frames" in items:
            n = items["frames"]
            frames = n.value if isinstance(n.value, list) else [n]
            for fr in frames:
                if type(fr.value) is not int or fr.value < 1:
                    raise self.error(fr.line, f"frames must be frame numbers (1-based), found {_kind(fr)}")
            kw["frames"] = tuple(fr.value for fr in frames)
        if "detail" in items:
            self.mapping(items["detail"], "detail")
            kw["detail"] = items["detail"].plain()
        if "severity" in items:
            kw["severity"] = self.severity(items["severity"], "severity")
        return Present(code, node.line, frozenset(items), **kw)

    def consistent(self, present: Sequence[Present], absent: Sequence[Absent], counts: Sequence[Count]) -> None:
        must = {p.code: p.line for p in present}
        for a in absent:
            for code, line in must.items():
                if code_matches(a.code, code):
                    raise self.error(a.line, f"{a.code} is absent, but {code} is present (line {line})")
        for c in counts:
            if c.n == 0 and c.code in must:
                raise self.error(c.line, f"the count of {c.code} is 0, but it is present (line {must[c.code]})")
            if c.n > 0 and any(code_matches(a.code, c.code) for a in absent):
                raise self.error(c.line, f"the count of {c.code} is {c.n}, but it is absent")


def code_matches(pattern: str, code: str) -> bool:
    """``tcp.rst`` matches itself; ``http.*`` matches every code that starts with ``http.``."""
    if pattern.endswith(".*"):
        return code.startswith(pattern[:-1])
    return code == pattern


def _detail_matches(expected: Any, actual: Any) -> bool:
    """Mappings: every expected key present and matching; everything else: equal (booleans are not numbers)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _detail_matches(v, actual[k])
                                                for k, v in expected.items())
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(actual) == len(expected)
                and all(_detail_matches(e, a) for e, a in zip(expected, actual)))
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    return expected == actual


def _kind(node: Node) -> str:
    v = node.value
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return "null" if v is None else repr(v)


def _flow(value: Any) -> str:
    """A value in the one-line YAML form the files use: ``{origin: abort, sender: client}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{scalar_text(str(k))}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return scalar_text(value)


# -- analysis results ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CaptureResult:
    """What the analysis said about one capture: the part a check compares (picklable, small)."""

    path: str
    readable: bool
    findings: tuple[Finding, ...] = ()
    conversations: int = 0
    error: str | None = None  # why it could not be analyzed (unreadable file, internal error)
    internal_error: bool = False  # the analysis raised: a pcapcheck bug, never "as expected"


class _FindingSink:
    """A pipeline sink that keeps only the findings (the timelines and HTTP exchanges are dropped at once)."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def conversation(self, result: Any) -> None:
        self.findings.extend(result.findings)


def finding_order(f: Finding) -> tuple:
    """Capture-level first, then by conversation, main frame and code: independent of finalization order."""
    return (-1 if f.conversation is None else f.conversation, f.frames[0] if f.frames else 0, f.code,
            f.direction or "", f.frames, -int(f.severity), f.message)


def analyze_capture(path: str, options: Options) -> CaptureResult:
    """Run the real pipeline over one capture (imported here: workers import it once, tests may inject)."""
    from pcapcheck.pipeline import Analysis

    sink = _FindingSink()
    totals = Analysis(options, sink).run([path])
    inp = totals.inputs[0]
    findings = tuple(sorted([*inp.findings, *sink.findings], key=finding_order))
    error = None
    if not inp.readable:
        error = next((f.message for f in inp.findings if f.code == "capture.unreadable"), f"{path}: unreadable")
    return CaptureResult(path, inp.readable, findings, inp.conversations, error)


Analyze = Callable[[str, Options], CaptureResult]


# -- discovery ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Case:
    """One capture to check, or one expectation whose capture is missing."""

    capture: str  # as shown in reports and JUnit (the path as reached from the PATH argument)
    expectation: str | None  # the expectation file found, None when there is none
    target: str  # where --update writes: the file found, or the default name
    capture_missing: bool = False
    problem: str | None = None  # an expectation problem found while discovering (e.g. two files)


def is_capture_name(name: str) -> bool:
    base = name[:-3] if name.endswith(".gz") else name
    return base.lower().endswith(CAPTURE_SUFFIXES)


def _expectation_of(name: str) -> str | None:
    """The capture name an expectation file belongs to (``x.pcap.expect.yaml`` -> ``x.pcap``)."""
    for suffix in EXPECT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def flat_name(relpath: str) -> str:
    """An --expect-dir file stem: the capture's path relative to its directory argument, '/' -> '__'."""
    return relpath.replace(os.sep, "/").replace("/", "__")


def _walk(root: str) -> tuple[list[str], list[str]]:
    """Captures and expectation files under ``root``, sorted; hidden directories are skipped."""
    captures: list[str] = []
    expectations: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if _expectation_of(name) is not None:
                expectations.append(path)
            elif is_capture_name(name):
                captures.append(path)
    return captures, expectations


def discover(paths: Sequence[str], expect_dir: str | None = None) -> list[Case]:
    """Cases for PATH arguments (files or directories, recursively), sorted by capture path."""
    found: dict[str, str | None] = {}  # capture -> its --expect-dir name when it came from a directory
    beside_expectations: list[str] = []
    for arg in paths:
        if os.path.isdir(arg):
            captures, expectations = _walk(arg)
            for c in captures:
                found.setdefault(os.path.normpath(c), flat_name(os.path.relpath(c, arg)))
            beside_expectations.extend(expectations)
        elif os.path.exists(arg):
            if _expectation_of(os.path.basename(arg)) is not None:
                raise DiscoveryError(f"{arg} is an expectation file: give its capture (or the directory) instead")
            found.setdefault(os.path.normpath(arg), None)
        else:
            raise DiscoveryError(f"{arg}: no such file or directory")
    cases: list[Case] = []
    used: set[str] = set()
    for capture in sorted(found):
        case = _case(capture, found[capture], expect_dir)
        if case.expectation is not None:
            used.add(os.path.normpath(case.expectation))
        cases.append(case)
    for exp, capture in _orphan_candidates(paths, expect_dir, beside_expectations):
        if os.path.normpath(exp) not in used and capture not in found:
            cases.append(Case(capture, exp, exp, capture_missing=True))
    return sorted(cases, key=lambda c: c.capture)


def _orphan_candidates(paths: Sequence[str], expect_dir: str | None,
                       beside: list[str]) -> list[tuple[str, str]]:
    """(expectation file, the capture it names) pairs that must have a capture: a deleted capture must not
    silently drop its check. Beside captures: every expectation under a directory argument. In --expect-dir:
    every file there, when all arguments are directories (its names are relative to them)."""
    if expect_dir is None:
        return [(e, os.path.normpath(_expectation_of(e) or e)) for e in beside]
    dirs = list(dict.fromkeys(os.path.normpath(p) for p in paths))
    if not os.path.isdir(expect_dir) or not all(os.path.isdir(d) for d in dirs):
        return []
    out = []
    for name in sorted(os.listdir(expect_dir)):
        stem = _expectation_of(name)
        if stem is None:
            continue
        rel = stem.replace("__", "/")
        out.append((os.path.join(expect_dir, name), os.path.normpath(os.path.join(dirs[0], rel))
                    if len(dirs) == 1 else rel))
    return out


def _case(capture: str, flat: str | None, expect_dir: str | None) -> Case:
    if expect_dir is None:
        stems = [capture]
    elif flat is not None:
        stems = [os.path.join(expect_dir, flat)]
    else:  # a file argument: the longest tail of its path that has a file (a/b.pcap: a__b.pcap, then b.pcap)
        parts = [p for p in capture.replace(os.sep, "/").split("/") if p not in ("", ".", "..")]
        stems = [os.path.join(expect_dir, "__".join(parts[i:])) for i in range(len(parts))]
    for stem in stems:
        existing = [stem + s for s in EXPECT_SUFFIXES if os.path.isfile(stem + s)]
        if len(existing) > 1:
            return Case(capture, existing[0], existing[0],
                        problem=f"two expectation files for one capture: {existing[0]} and {existing[1]}; keep one")
        if existing:
            return Case(capture, existing[0], existing[0])
    return Case(capture, None, stems[-1] + EXPECT_SUFFIXES[0])


# -- comparing ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: str  # "missing" | "unexpected" | "count" | "severity" | "conversations" | "readable"
    line: int  # the expectation line that failed
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "line": self.line, "message": self.message}


def describe_finding(f: Finding, detail: Mapping[str, Any] | None = None,
                     keys: Sequence[str] = UPDATE_DETAIL_KEYS) -> str:
    parts = ["capture-level" if f.conversation is None else f"conversation {f.conversation}"]
    if f.direction:
        parts.append(f.direction)
    if f.frames:
        more = f" (+{len(f.frames) - 5})" if len(f.frames) > 5 else ""
        parts.append("frames " + ",".join(map(str, f.frames[:5])) + more)
    detail = detail if detail is not None else f.to_json()["detail"]
    shown = {k: detail[k] for k in keys if k in detail and not isinstance(detail[k], (dict, list))}
    if shown:
        parts.append("detail " + _flow(shown))
    return " ".join(parts)


def _some(findings: Sequence[tuple[Finding, Mapping[str, Any]]], limit: int = 3,
          keys: Sequence[str] = UPDATE_DETAIL_KEYS) -> str:
    shown = "; ".join(describe_finding(f, d, keys) for f, d in findings[:limit])
    return shown + (f"; and {len(findings) - limit} more" if len(findings) > limit else "")


def compare(expectation: Expectation, result: CaptureResult) -> tuple[Mismatch, ...]:
    """Every way ``result`` differs from ``expectation``, in the order of the expectation's lines."""
    pairs = [(f, f.to_json()["detail"]) for f in result.findings]
    out: list[Mismatch] = []
    for p in expectation.present:
        if any(p.matches(f, d) for f, d in pairs):
            continue
        same = [(f, d) for f, d in pairs if f.code == p.code]
        if same:
            keys = tuple(p.detail) or UPDATE_DETAIL_KEYS  # show what the entry asked about
            why = f"{len(same)} {p.code} finding(s) did not match: {_some(same, keys=keys)}"
        else:
            why = f"no {p.code} finding at all"
        out.append(Mismatch("missing", p.line, f"missing {p.describe()} (line {p.line}): {why}"))
    for a in expectation.absent:
        hits = [(f, d) for f, d in pairs if code_matches(a.code, f.code)]
        if hits:
            codes = ", ".join(sorted({f.code for f, _ in hits}))
            what = a.code if codes == a.code else f"{codes} ({a.code})"
            out.append(Mismatch("unexpected", a.line, f"unexpected {what} (absent, line {a.line}): "
                                                      f"{len(hits)} finding(s): {_some(hits)}"))
    for c in expectation.counts:
        hits = [(f, d) for f, d in pairs if f.code == c.code]
        if len(hits) != c.n:
            where = f": {_some(hits)}" if hits else ""
            out.append(Mismatch("count", c.line, f"count of {c.code} is {len(hits)}, expected {c.n} "
                                                 f"(line {c.line}){where}"))
    if expectation.conversations is not None:
        n, line = expectation.conversations
        if result.conversations != n:
            out.append(Mismatch("conversations", line, f"{result.conversations} conversations, expected {n} "
                                                       f"(line {line})"))
    if expectation.readable is not None and result.readable:
        out.append(Mismatch("readable", expectation.readable[1], f"the capture was read, but the expectation says "
                                                                 f"it cannot be (line {expectation.readable[1]})"))
    if expectation.max_severity is not None:
        sev, line = expectation.max_severity
        worse = [(f, d) for f, d in pairs if f.severity > sev]
        if worse:
            worst = max(f.severity for f, _ in worse)
            codes = ", ".join(sorted({f.code for f, _ in worse}))
            out.append(Mismatch("severity", line, f"worst severity is {worst.label} ({codes}), expected at most "
                                                  f"{sev.label} (line {line}): {_some(worse)}"))
    return tuple(sorted(out, key=lambda m: m.line))


# -- running ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CaseResult:
    capture: str
    expectation: str | None
    status: str  # PASS | FAIL | ERROR
    mismatches: tuple[Mismatch, ...] = ()
    error: str | None = None
    error_kind: str | None = None  # unreadable | no-expectation | bad-expectation | capture-missing
    seconds: float = 0.0  # analysis time (JUnit only: everything else is identical for any --jobs)
    result: CaptureResult | None = None  # the findings, for --update
    case: Case | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "capture": self.capture,
            "expectation": self.expectation,
            "status": self.status,
            "mismatches": [m.to_json() for m in self.mismatches],
            "error": self.error,
            "error_kind": self.error_kind,
        }


def _timed(job: tuple[Analyze, str, Options]) -> tuple[CaptureResult, float]:
    """Analyze one capture; any exception is this capture's error, never the run's end."""
    analyze, path, options = job
    start = time.perf_counter()
    try:
        result = analyze(path, options)
    except Exception as e:  # noqa: BLE001 - one capture's failure must not stop the corpus
        result = CaptureResult(path, False, error=f"{path}: internal error while analyzing: "
                                                  f"{type(e).__name__}: {e}", internal_error=True)
    return result, time.perf_counter() - start


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_check(cases: Sequence[Case], options: Options | None = None, *, jobs: int = 1,
              analyze: Analyze | None = None, compare_results: bool = True) -> list[CaseResult]:
    """Analyze every case's capture (``jobs`` processes) and compare it with its expectation.

    ``analyze`` defaults to :func:`analyze_capture`; with ``jobs > 1`` it must be picklable (module level).
    """
    options = options or Options()
    analyze = analyze or analyze_capture
    todo = [c for c in cases if not c.capture_missing]
    work = [(analyze, c.capture, options) for c in todo]
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
            analyzed = list(pool.map(_timed, work))
    else:
        analyzed = [_timed(w) for w in work]
    by_capture = {c.capture: r for c, r in zip(todo, analyzed)}
    out = []
    for case in cases:
        if case.capture_missing:
            out.append(CaseResult(case.capture, case.expectation, ERROR, error_kind="capture-missing", case=case,
                                  error=f"capture missing: {case.expectation} expects {case.capture}, which does "
                                        "not exist (delete the expectation if the capture was removed on purpose)"))
            continue
        result, seconds = by_capture[case.capture]
        out.append(_judge(case, result, seconds, compare_results))
    return out


def _judge(case: Case, result: CaptureResult, seconds: float, compare_results: bool) -> CaseResult:
    base = {"capture": case.capture, "expectation": case.expectation, "seconds": seconds, "result": result,
            "case": case}
    if result.internal_error:
        return CaseResult(status=ERROR, error=result.error, error_kind="internal-error", **base)
    unreadable = CaseResult(status=ERROR, error=result.error or f"{case.capture}: unreadable", error_kind="unreadable",
                            **base)
    if not compare_results:
        return CaseResult(status=PASS, **base) if result.readable else unreadable
    if case.problem is not None:
        return CaseResult(status=ERROR, error=case.problem, error_kind="bad-expectation", **base)
    if case.expectation is None:
        if not result.readable:
            return unreadable
        return CaseResult(status=ERROR, error_kind="no-expectation", **base,
                          error=f"no expectation file {case.target} (or .expect.json): write one, or run "
                                f"`pcapcheck check --update {case.capture}` and review it")
    try:
        expectation = load_expectation(case.expectation)
    except ExpectationError as e:
        return CaseResult(status=ERROR, error=str(e), error_kind="bad-expectation", **base)
    if not result.readable and expectation.readable is None:
        return unreadable  # a capture that cannot be read is an error unless its expectation says so
    mismatches = compare(expectation, result)
    return CaseResult(status=FAIL if mismatches else PASS, mismatches=mismatches, **base)


def exit_code(results: Iterable[CaseResult]) -> int:
    """0 when every capture meets its expectation, 1 otherwise (failures and errors alike)."""
    return 0 if all(r.status == PASS for r in results) else 1


def tally(results: Sequence[CaseResult]) -> dict[str, int]:
    return {"captures": len(results), "passed": sum(r.status == PASS for r in results),
            "failed": sum(r.status == FAIL for r in results), "errors": sum(r.status == ERROR for r in results)}


# -- reports ------------------------------------------------------------------------------------------

def summary_lines(results: Sequence[CaseResult], verbose: bool = False) -> list[str]:
    """The readable summary: one block per failing capture, one line per error, a total."""
    lines: list[str] = []
    for r in results:
        if r.status == FAIL:
            lines.append(f"FAIL  {r.capture} ({r.expectation})")
            lines.extend(f"      {m.message}" for m in r.mismatches)
        elif r.status == ERROR:
            error = r.error or "error"
            lines.append(f"ERROR {error}" if error.startswith(r.capture + ":") else f"ERROR {r.capture}: {error}")
        elif verbose:
            lines.append(f"ok    {r.capture}")
    t = tally(results)
    lines.append(f"{t['captures']} capture{'s' if t['captures'] != 1 else ''}: {t['passed']} passed, "
                 f"{t['failed']} failed, {t['errors']} error{'s' if t['errors'] != 1 else ''}")
    return lines


def json_report(results: Sequence[CaseResult]) -> str:
    """``--json``: stable bytes (sorted keys, no times), identical for any ``--jobs``."""
    doc = {"format": 1, "summary": tally(results), "captures": [r.to_json() for r in results]}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """XML 1.0 cannot carry most control characters: show them as escapes (evidence stays readable)."""
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def junit_xml(results: Sequence[CaseResult], total_seconds: float | None = None) -> bytes:
    """JUnit XML: one ``testcase`` per capture (sorted by path); ``failure`` lists the mismatches,
    ``error`` an unreadable capture or a missing/bad expectation."""
    t = tally(results)
    total = sum(r.seconds for r in results) if total_seconds is None else total_seconds
    counts = {"tests": str(t["captures"]), "failures": str(t["failed"]), "errors": str(t["errors"])}
    suites = ET.Element("testsuites", {"name": "pcapcheck check", **counts, "time": f"{total:.3f}"})
    suite = ET.SubElement(suites, "testsuite", {"name": "pcapcheck", **counts, "skipped": "0",
                                                "time": f"{total:.3f}"})
    for r in sorted(results, key=lambda r: r.capture):
        case = ET.SubElement(suite, "testcase", {"classname": "pcapcheck.check", "name": _xml(r.capture),
                                                 "time": f"{r.seconds:.3f}"})
        if r.status == FAIL:
            kinds = sorted({m.kind for m in r.mismatches})
            msg = f"{len(r.mismatches)} mismatch(es) with {r.expectation}: {', '.join(kinds)}"
            el = ET.SubElement(case, "failure", {"message": _xml(msg), "type": "expectation"})
            el.text = _xml("\n".join([f"expectation: {r.expectation}", *(m.message for m in r.mismatches)]))
        elif r.status == ERROR:
            el = ET.SubElement(case, "error", {"message": _xml(r.error or ""), "type": r.error_kind or "error"})
            el.text = _xml(r.error or "")
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


# -- --update -----------------------------------------------------------------------------------------

def ci_value(environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``CI`` when it says this is a CI run (set, and not empty/0/false/no)."""
    value = (os.environ if environ is None else environ).get("CI")
    if value is None or value.strip().lower() in ("", "0", "false", "no"):
        return None
    return value


def expectation_from(result: CaptureResult, previous: Expectation | None = None,
                     capture_name: str | None = None) -> tuple[dict[str, Any], list[str], tuple[str, ...]]:
    """The expectation --update writes, as data; notes on what changed; header comment lines.

    present: one entry per distinct (code, conversation, direction, key detail) among findings at notice
    severity or above; counts: tcp.rst and every code with an error finding; conversations: the number.
    From ``previous``: ``absent`` codes and ``max_severity`` are kept while they still hold (they are
    knowledge the findings cannot give), and so are the leading comment lines.
    """
    entries: dict[tuple, dict[str, Any]] = {}
    for f in result.findings:
        if f.severity < Severity.NOTICE:
            continue
        detail = f.to_json()["detail"]
        keep = {k: detail[k] for k in UPDATE_DETAIL_KEYS
                if k in detail and detail[k] is not None and not isinstance(detail[k], (dict, list))}
        entry: dict[str, Any] = {"code": f.code, "conversation": f.conversation}
        if f.direction is not None:
            entry["direction"] = f.direction
        if keep:
            entry["detail"] = keep
        key = (-1 if f.conversation is None else f.conversation, f.code, f.direction or "",
               tuple((k, str(v)) for k, v in keep.items()))
        entries.setdefault(key, entry)
    present = [entries[k] for k in sorted(entries)]
    counted = {c: 0 for c in UPDATE_COUNTED}
    for f in result.findings:
        if f.severity >= Severity.ERROR:
            counted.setdefault(f.code, 0)
    for f in result.findings:
        if f.code in counted:
            counted[f.code] += 1
    notes: list[str] = []
    codes = {f.code for f in result.findings}
    absent: list[str] = []
    max_sev: str | None = None
    header: tuple[str, ...] = ()
    if previous is not None:
        header = previous.header
        for a in previous.absent:
            if any(code_matches(a.code, c) for c in codes):
                notes.append(f"dropped absent {a.code}: it occurs now")
            elif a.code not in counted:
                absent.append(a.code)
        if previous.max_severity is not None:
            sev = previous.max_severity[0]
            if any(f.severity > sev for f in result.findings):
                notes.append(f"dropped max_severity {sev.label}: a worse finding occurs now")
            else:
                max_sev = sev.label
    if not header:
        name = capture_name or os.path.basename(result.path)
        header = (f"# {name}: written by `pcapcheck check --update`; review it, then say in a comment what the "
                  "capture shows",)
    doc: dict[str, Any] = {"present": present}
    if absent:
        doc["absent"] = absent
    doc["counts"] = dict(sorted(counted.items()))
    doc["conversations"] = result.conversations
    if max_sev is not None:
        doc["max_severity"] = max_sev
    return doc, notes, header


def render_yaml(doc: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """The YAML subset, one present entry per line; reads back with :func:`parse_expectation`."""
    lines = list(header)
    for key, value in doc.items():
        if key == "present":
            if not value:
                lines.append("present: []")
                continue
            lines.append("present:")
            lines.extend(f"  - {_flow(entry)}" for entry in value)
        elif key == "counts":
            if not value:
                lines.append("counts: {}")
                continue
            lines.append("counts:")
            lines.extend(f"  {scalar_text(code)}: {n}" for code, n in value.items())
        else:
            lines.append(f"{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def render_expectation(target: str, doc: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    if target.endswith(".json"):
        return json.dumps(doc, indent=2) + "\n"
    return render_yaml(doc, header)


@dataclass(frozen=True, slots=True)
class Update:
    capture: str
    target: str | None
    action: str  # "wrote" | "unchanged" | "error"
    notes: tuple[str, ...] = ()
    error: str | None = None


def update_expectations(results: Sequence[CaseResult]) -> list[Update]:
    """Write each readable capture's expectation (creating --expect-dir when needed)."""
    out: list[Update] = []
    for r in results:
        case = r.case
        if case is not None and r.error_kind == "unreadable" and _expects_unreadable(case.expectation):
            out.append(Update(r.capture, case.target, "unchanged"))
            continue
        if case is None or r.result is None or r.status == ERROR:
            out.append(Update(r.capture, case.target if case else None, "error", error=r.error))
            continue
        previous = None
        notes: list[str] = []
        if case.expectation is not None:
            try:
                previous = load_expectation(case.expectation)
            except ExpectationError as e:
                notes.append(f"the old file did not parse ({e}); written from scratch")
        doc, more, header = expectation_from(r.result, previous, os.path.basename(case.capture))
        notes.extend(more)
        text = render_expectation(case.target, doc, header)
        try:
            with open(case.target, encoding="utf-8") as fh:
                old = fh.read()
        except OSError:
            old = None
        if old == text:
            out.append(Update(r.capture, case.target, "unchanged", tuple(notes)))
            continue
        try:
            os.makedirs(os.path.dirname(case.target) or ".", exist_ok=True)
            with open(case.target, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as e:
            out.append(Update(r.capture, case.target, "error", error=f"{case.target}: cannot write: "
                                                                     f"{e.strerror or e}"))
            continue
        out.append(Update(r.capture, case.target, "wrote", tuple(notes)))
    return out


def _expects_unreadable(path: str | None) -> bool:
    if path is None:
        return False
    try:
        return load_expectation(path).readable is not None
    except ExpectationError:
        return False


def update_lines(updates: Sequence[Update], verbose: bool = False) -> list[str]:
    lines: list[str] = []
    for u in updates:
        if u.action == "error":
            lines.append(f"ERROR {u.capture}: {u.error}")
        elif u.action == "wrote" or verbose:
            lines.append(f"{u.action:<9} {u.target}")
        if u.action != "error":
            lines.extend(f"          note: {n}" for n in u.notes)
    wrote = sum(u.action == "wrote" for u in updates)
    same = sum(u.action == "unchanged" for u in updates)
    errors = sum(u.action == "error" for u in updates)
    lines.append(f"{wrote} expectation file{'s' if wrote != 1 else ''} written, {same} unchanged, "
                 f"{errors} error{'s' if errors != 1 else ''}: review them with `git diff`")
    return lines
