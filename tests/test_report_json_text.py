"""report.json's conversation writer (json_text / json_parts): exactly json.dumps(to_json(), sort_keys=True).

JsonReport writes each conversation with ConversationResult.json_parts, which builds the JSON text directly
instead of building to_json()'s dicts and encoding them. These tests hold the two to the same bytes: over the
fixtures, the shared corpus, the hand-built samples and values the analyzers do not produce today.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import types
from collections.abc import Iterator, Sequence

import pytest

from pcapcheck import findings as findings_module
from pcapcheck.config import Options
from pcapcheck.findings import Finding, Severity, aside_pieces, escape_json
from pcapcheck.http import framing as framing_module
from pcapcheck.http import model as http_model_module
from pcapcheck.http.framing import Chunked, ContentLength, NoBody, Unframed
from pcapcheck.http.model import HttpExchange, HttpMessage, MessageState, Pairing, escape
from pcapcheck.http.parser import HeaderField, RequestLine, StatusLine
from pcapcheck.pipeline import Analysis
from pcapcheck.report import json_report as json_report_module
from pcapcheck.report.json_report import JsonReport, _default, _dumps_line
from tests.browser import samples as s
from tests.conftest import FIXTURES, interpreted


def dumps(value):
    return json.dumps(value, sort_keys=True, default=_default)


@contextlib.contextmanager
def annotated_or_skip(*modules: types.ModuleType) -> Iterator[None]:
    """Several cases give the writers values their annotations exclude (a bytearray, None, a float, an enum of
    another kind): the text must still be json.dumps's. A compiled class refuses them with TypeError: skip there
    (tests.conftest.interpreted); interpreted, a TypeError is a failure."""
    try:
        yield
    except TypeError:
        interpreted(*modules)
        raise


def same(obj):
    """obj's json_text (and a conversation's json_parts) is json.dumps of its to_json()."""
    want = dumps(obj.to_json())
    assert obj.json_text(_dumps_line) == want
    if hasattr(obj, "json_parts"):
        assert b"".join(obj.json_parts(_dumps_line)) == want.encode("ascii")
        assert obj.json_bytes(_dumps_line) == want.encode("ascii")
    if not isinstance(obj, Finding):  # the HTTP objects keep long byte strings aside when asked
        aside: list[bytes] = []
        assert b"".join(aside_pieces(obj.json_text(_dumps_line, aside), aside)) == want.encode("ascii")


class Keep:
    def __init__(self):
        self.results = []

    def conversation(self, result):
        self.results.append(result)


def analyze(path):
    keep = Keep()
    Analysis(Options(), keep).run([str(path)])
    return keep.results


CAPTURES = sorted(p for p in FIXTURES.glob("*") if p.suffix in (".pcap", ".pcapng", ".gz", ".bin"))


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_fixture_conversations(path):
    for r in analyze(path):
        same(r)


def test_corpus_conversations(corpus):
    paths = [p for p in sorted(corpus.rglob("*")) if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap", ".gz")]
    n = 0
    for path in paths:
        for r in analyze(path):
            same(r)
            n += 1
    assert n > 0


def test_samples():
    for r in (s.xss(), s.incident1(), s.incident2(12), s.plain(3, input_index=1)):  # FakeExchange: to_json only
        same(r)


# -- values the analyzers do not produce today: still the same bytes -----------------------------------------


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 7


class Name(str, enum.Enum):
    ALICE = "alice"


DETAILS = [
    {},
    {"count": 1, "frames_listed": 1},
    {"b": 1, "a": "x", "c": None, "d": True, "e": False, "f": 1.5, "g": -0.0, "h": 10**30, "i": float("nan")},
    {"severity": Severity.WARNING, "level": Level.HIGH, "color": Color.RED, "name": Name.ALICE},
    {"bytes": b"\x00\xff\\\"'%s", "ba": bytearray(b"ab\r\n"), "mv": memoryview(b"\x80x"), "s": {3, 1, 2}},
    {"nested": {"z": [1, (2, 3), {"y": b"q", "x": [Severity.ERROR]}], "a": ()}, "lines": [{"raw": b"a\tb"}]},
    {1: "int key", "1": "str key"},  # both become "1": the last one wins, as _jsonable does
    {True: "bool key", None: "none key", 2.5: "float key", Level.HIGH: "enum key"},
    {"pct%s": "%d %%", 'quo"te': "\u00e9\u2028\U0001f600", "\x00ctl": "\x00\x1f\x7f"},
    types.MappingProxyType({"proxy": 1}),
    [1, "two", None],
    ["a", "b"],
    [1, 2, 3],
    (),
    "just text",
    42,
    None,
]


@pytest.mark.parametrize("detail", DETAILS, ids=range(len(DETAILS)))
def test_finding_details(detail):
    same(Finding("x.y", Severity.NOTICE, "message", conversation=3, direction="c2s", frames=(5, 4), detail=detail,
                 rule="rule"))


@pytest.mark.parametrize("fields", [
    {},
    {"conversation": None, "direction": None, "frames": ()},
    {"frames": (7,)},
    {"frames": (True, 2)},
    {"frames": [1, 2.5]},
    {"conversation": True, "direction": Color.RED, "message": "\u00e9 \" \\ \n", "rule": "%s"},
    {"code": Name.ALICE},
])
def test_finding_fields(fields):
    base = {"code": "x.y", "severity": Severity.ERROR, "message": "m", "conversation": 1, "direction": "s2c",
            "frames": (1, 2), "detail": {"k": "v"}, "rule": ""}
    with annotated_or_skip(findings_module):
        same(Finding(**{**base, **fields}))


ALL_BYTES = bytes(range(256))
TEXT = b"GET /a?b=\"c\"&d=\\e HTTP/1.1\r\n\tfolded\r\n" * 40


def header(name, value, frame=3, offset=10):
    return HeaderField(name, value, frame, offset, name + b": " + value)


def message(**changes):
    fields = dict(
        direction="c2s", index=0, start=RequestLine(b"GET", b"/x", b"HTTP/1.1"),
        headers=(header(b"Host", b"example.com"), header(b"X-%s", b'va"l\\ue\xff%d', 4, 30)),
        raw_head=b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n", raw_head_truncated=False, framing=NoBody(),
        body_length=0, wire_body_length=0, body_missing=0, body_excerpt=b"", trailers=(), chunks=0,
        first_frame=3, last_frame=3, offset=0, end_offset=40, state=MessageState.COMPLETE, end_reason="",
        after_loss=False, findings=(), elided=False,
    )
    fields.update(changes)
    return HttpMessage(**fields)


RESPONSE = dict(direction="s2c", start=StatusLine(b"HTTP/1.1", 200, b"OK"), framing=ContentLength(4096))
MESSAGES = [
    {},
    RESPONSE,
    {**RESPONSE, "body_excerpt": ALL_BYTES * 16, "body_length": 5000, "raw_head": TEXT, "raw_head_truncated": True},
    {**RESPONSE, "body_excerpt": TEXT, "body_length": len(TEXT), "framing": Chunked(), "chunks": 3,
     "trailers": (header(b"Trailer", b"x" * 200, 9, 9000),), "findings": (2, 0, 1)},
    {"body_excerpt": bytearray(ALL_BYTES), "raw_head": memoryview(TEXT), "findings": (5,)},
    {"headers": (header(bytearray(b"Name"), memoryview(b"value")), header(b"N" * 100, b"\x00" * 100))},
    {"framing": Unframed("no length: %s"), "state": MessageState.MALFORMED, "end_reason": "gap", "elided": True},
    {"first_frame": None, "last_frame": 2.5, "offset": True, "index": Level.HIGH, "after_loss": 1},
    {"direction": Name.ALICE, "end_reason": None, "headers": (header(b"A", b"b", None, False),)},
    {**RESPONSE, "start": StatusLine(b"HTTP/1.1", None, b"\xff")},
    *({**RESPONSE, "framing": ContentLength(length)} for length in (0, 10**30, True, None, 2.5)),  # (its own text)
]


@pytest.mark.parametrize("changes", MESSAGES, ids=range(len(MESSAGES)))
def test_messages(changes):
    with annotated_or_skip(framing_module, http_model_module):
        m = message(**changes)
        same(m)
        same(HttpExchange(0, m, (), None, Pairing.IN_ORDER, False))


def test_json_gives_the_first_kib_of_a_body():
    """report.json's body_excerpt is a text body's first KiB (JSON_BODY_EXCERPT, as the page shows), truncated when
    the body had more, though the message keeps more (for recognising proxy error pages)."""
    from pcapcheck.http.model import JSON_BODY_EXCERPT

    body = b"lorem ipsum dolor sit amet\r\n" * 120  # 3.4 KB of text
    for length, kept, truncated in ((len(body), body, True), (JSON_BODY_EXCERPT, body[:JSON_BODY_EXCERPT], False),
                                    (JSON_BODY_EXCERPT + 1, body[:JSON_BODY_EXCERPT], True), (10, body[:10], False)):
        m = message(**{**RESPONSE, "body_excerpt": kept, "body_length": length})
        got = json.loads(m.json_text(_dumps_line))
        assert got["body_excerpt"] == escape(body[: min(length, JSON_BODY_EXCERPT)])
        assert got["body_excerpt_truncated"] is truncated
        assert m.body_excerpt == kept
        same(m)


def test_json_gives_the_first_256_bytes_of_a_binary_body():
    """A binary body (http.model.is_binary: over a quarter of its first KiB neither printable ASCII nor line breaks) gets
    its first 256 bytes (JSON_BINARY_EXCERPT), as its page shows as hex: escaped, each such byte takes 5 characters
    of JSON. Its page is built from the bytes the message keeps (to_json(page=True)), not from these."""
    from pcapcheck.http.model import JSON_BINARY_EXCERPT, JSON_BODY_EXCERPT
    from pcapcheck.report.views import BODY_HEX_SHOWN

    assert BODY_HEX_SHOWN == JSON_BINARY_EXCERPT
    body = bytes(range(256)) * 12  # 3 KiB, binary
    for length, kept, shown, truncated in (
        (len(body), body, body[:JSON_BINARY_EXCERPT], True),
        (JSON_BINARY_EXCERPT, body[:JSON_BINARY_EXCERPT], body[:JSON_BINARY_EXCERPT], False),
        (JSON_BINARY_EXCERPT + 1, body[: JSON_BINARY_EXCERPT + 1], body[:JSON_BINARY_EXCERPT], True),
        (10, body[:10], body[:10], False),
    ):
        m = message(**{**RESPONSE, "body_excerpt": kept, "body_length": length})
        got = json.loads(m.json_text(_dumps_line))
        assert got["body_excerpt"] == escape(shown)
        assert got["body_excerpt_truncated"] is truncated
        assert m.to_json(page=True)["body_excerpt"] == kept[:JSON_BODY_EXCERPT]
        same(m)
    # judged on the first KiB: text up to 1 KiB, binary after it, is text; a quarter is the line
    text_first = b"x" * JSON_BODY_EXCERPT + bytes(range(256)) * 4
    m = message(**{**RESPONSE, "body_excerpt": text_first, "body_length": len(text_first)})
    assert json.loads(m.json_text(_dumps_line))["body_excerpt"] == escape(text_first[:JSON_BODY_EXCERPT])
    for odd, binary in ((256, False), (257, True)):
        data = b"\x00" * odd + b"a" * (JSON_BODY_EXCERPT - odd)
        m = message(**{**RESPONSE, "body_excerpt": data, "body_length": len(data)})
        got = json.loads(m.json_text(_dumps_line))["body_excerpt"]
        assert got == escape(data[:JSON_BINARY_EXCERPT] if binary else data), odd
        same(m)


def test_exchanges_and_conversation_with_long_values_everywhere():
    """Long byte strings are kept aside in text order; interim responses come before the request in the text."""
    big = {"body_excerpt": ALL_BYTES * 8, "raw_head": TEXT}
    request = message(**big)
    interim = tuple(message(**{**RESPONSE, **big, "index": i, "start": StatusLine(b"HTTP/1.1", 100, b"Go")})
                    for i in range(3))
    response = message(**{**RESPONSE, **big, "body_excerpt": TEXT})
    exchanges = (
        HttpExchange(0, request, interim, response, Pairing.UNCERTAIN, True),
        HttpExchange(1, None, (), response, Pairing.IN_ORDER, False),
        HttpExchange(2, request, (), None, Pairing.IN_ORDER, False),
        s.FakeExchange({"request": None, "raw": "x" * 100}),
    )
    for x in exchanges[:3]:
        same(x)
    r = dataclasses.replace(s.incident1(), http=exchanges)
    same(r)
    assert len(list(r.json_parts(_dumps_line))) == 2 * 14 + 1  # 14 values kept aside, each copied once
    same(dataclasses.replace(r, http_omitted=12345))  # exchanges not kept (analyzers.http1.KEEP_FIRST)
    # many exchanges: their pieces come one exchange at a time, as the exchanges are iterated (a spill is read
    # back so), never the whole line at once
    same(dataclasses.replace(r, http=exchanges * 30))

    class Lazy(Sequence):
        taken = 0

        def __len__(self):
            return len(exchanges) * 30

        def __getitem__(self, i):
            return (exchanges * 30)[i]

        def __iter__(self):
            for x in exchanges * 30:
                self.taken += 1
                yield x

    lazy = Lazy()
    parts = dataclasses.replace(r, http=lazy).json_parts(_dumps_line)
    assert next(parts).startswith(b"{\"bytes\": ") and next(parts) == b"[" and lazy.taken <= 1
    next(parts)
    assert lazy.taken == 1
    assert b"".join(parts).endswith(b"\"tcp.stream eq 0\"}") and lazy.taken == len(lazy)


def test_escape_json_every_byte():
    for value in [bytes([c]) for c in range(256)] + [ALL_BYTES, ALL_BYTES[:128] * 2, TEXT, b"", b"x" * 65]:
        for v in (value, bytearray(value), memoryview(value)):
            assert escape_json(v) == json.dumps(escape(value))
            aside: list[bytes] = []
            assert b"".join(aside_pieces(escape_json(v, aside), aside)) == json.dumps(escape(value)).encode()


def test_report_takes_objects_with_to_json_only(tmp_path):
    """A result without json_parts is still written: json.dumps(result.to_json())."""
    interpreted(json_report_module)  # (compiled, it takes a ConversationResult only, as annotated)
    r = s.plain(4)
    plain = types.SimpleNamespace(id=r.id, input_index=r.input_index, to_json=r.to_json)
    rep = JsonReport(tmp_path / "report.json")
    rep.conversation(plain)
    rep.conversation(s.plain(5))
    rep.finish(s.totals_for([], [s.input_summary(conversations=2)]))
    lines = (tmp_path / "report.json").read_text(encoding="ascii").splitlines()
    assert "  " + dumps(r.to_json()) + "," in lines
    assert "  " + dumps(s.plain(5).to_json()) in lines


def test_fixtures_exist():
    assert CAPTURES, f"no captures in {FIXTURES}"


def test_annotated_or_skip_fails_where_the_code_is_interpreted():
    with pytest.raises(TypeError), annotated_or_skip(findings_module):
        raise TypeError("a value the annotations exclude")
