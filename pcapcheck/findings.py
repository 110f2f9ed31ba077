"""Findings: the one result type every analyzer produces.

A finding is evidence a ticket can quote: a stable ``code``, a ``severity``, the
conversation and direction it concerns, the frames that prove it (the first is
the main one), one sentence, structured ``detail`` and the ``rule`` behind it.
Codes are documented in docs/findings.md and never reused.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as json_str  # json.dumps(str), the C function when there is one
from operator import itemgetter
from typing import Any, Final

from pcapcheck.frozen import fast_frozen


class Severity(enum.IntEnum):
    """Ordered so that ``a >= b`` means "at least as bad as"."""

    INFO = 0
    NOTICE = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}: use error, warning, notice or info") from None


C2S: Final = "c2s"
S2C: Final = "s2c"


@fast_frozen
@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str
    conversation: int | None = None
    direction: str | None = None  # "c2s" | "s2c" | None
    frames: tuple[int, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
    rule: str = ""

    def to_json(self) -> dict[str, Any]:
        # json_text() writes this as JSON without building it: a change here is a change there
        return {
            "code": self.code,
            "severity": self.severity.label,
            "message": self.message,
            "conversation": self.conversation,
            "direction": self.direction,
            "frames": list(self.frames),
            "detail": _jsonable(self.detail),
            "rule": self.rule,
        }

    def json_text(self, dumps: Callable[[Any], str] | None = None) -> str:
        """``dumps(self.to_json())``, written without the dict (report.json: one per finding). Keep in step.

        ``dumps`` is ``json.dumps(value, sort_keys=True, default=...)`` (the report's), for what this does not write.
        """
        dumps = dumps or dumps_sorted
        v = json_value
        code, message, rule, conversation, direction, severity = (
            self.code, self.message, self.rule, self.conversation, self.direction, self.severity)
        return _FINDING_TEXT % (
            json_str(code) if type(code) is str else v(code, dumps),
            conversation if type(conversation) is int else v(conversation, dumps),
            json_detail(self.detail, dumps),
            json_str(direction) if type(direction) is str else v(direction, dumps),
            json_ints(self.frames, dumps),
            json_str(message) if type(message) is str else v(message, dumps),
            json_str(rule) if type(rule) is str else v(rule, dumps),
            _SEVERITY_TEXT[severity] if type(severity) is Severity else v(severity.label, dumps),
        )


# -- JSON text written directly (report.json): the bytes json.dumps(x.to_json(), sort_keys=True) gives -------------
#
# json.dumps builds its text from dicts at about 0.3 us a key; a %-template per object shape with the keys already
# sorted and encoded, filled with each value's JSON text, is several times cheaper. Each to_json has a json_text
# beside it that must stay in step (tests/test_report_json_text.py compares them).


def dumps_sorted(value: Any) -> str:
    """The ``dumps`` json_text uses when given none."""
    return json.dumps(value, sort_keys=True)


def object_template(*keys: str) -> str:
    """%-template of ``json.dumps(obj, sort_keys=True)`` for an object with these keys, given sorted: each ``%s``
    takes the JSON text of the value (or an exact int), in the keys' order."""
    if list(keys) != sorted(keys) or len(set(keys)) != len(keys):
        raise ValueError(f"object_template: keys not sorted or not distinct: {keys}")
    return "{" + ", ".join(json_str(k).replace("%", "%%") + ": %s" for k in keys) + "}"


_FINDING_TEXT: Final = object_template("code", "conversation", "detail", "direction", "frames", "message", "rule", "severity")
_SEVERITY_TEXT: Final = {s: json_str(s.label) for s in Severity}

_PLAIN: Final = frozenset({str, int, float, bool, type(None)})  # exact types json.dumps writes as they are
_INT: Final = frozenset({int})
_STR: Final = frozenset({str})


def json_value(value: Any, dumps: Callable[[Any], str]) -> str | int:
    """``dumps(value)`` for a value to_json leaves as it is, without a call into json for the common scalars.

    An exact int comes back as it is (``%s`` writes it as JSON does).
    """
    t = type(value)
    if t is int:
        return value
    if t is str:
        return json_str(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    return dumps(value)


def json_ints(values: Any, dumps: Callable[[Any], str]) -> str:
    """``dumps(list(values))`` for a sequence of ints (anything else goes to ``dumps``)."""
    if len(values) == 1:  # the common case (a finding's frame, a message's finding)
        x = values[0]
        if type(x) is int:
            return f"[{x}]"
    elif _INT.issuperset(map(type, values)):
        return repr(list(values))  # "[1, 2]": the list's repr is its JSON when it holds exact ints only
    return dumps(list(values))


def json_scalars(values: tuple, dumps: Callable[[Any], str]) -> tuple:
    """``json_value`` of each value; the tuple as it is when all are exact ints (the common case, checked at once)."""
    if _INT.issuperset(map(type, values)):
        return values
    return tuple([json_value(x, dumps) for x in values])


_DETAIL_TEMPLATES: Final[dict[tuple[str, ...], tuple[str, Callable[[dict], tuple]]]] = {}


def json_detail(value: Any, dumps: Callable[[Any], str]) -> str | int:
    """``dumps(_jsonable(value))`` for a finding's detail (an exact int comes back as it is).

    Dicts with str keys (a %-template per key set: few, one or two per finding code), lists of str or of ints
    and scalars are written here; anything else goes to ``dumps``.
    """
    t = type(value)
    if t is int:
        return value
    if t is str:
        return json_str(value)
    if t is dict and _STR.issuperset(map(type, value)):
        if not value:
            return "{}"
        keys = tuple(value)
        shape = _DETAIL_TEMPLATES.get(keys)
        if shape is None:
            ordered = sorted(keys)
            template = "{" + ", ".join(json_str(k).replace("%", "%%") + ": %s" for k in ordered) + "}"
            pick = itemgetter(*ordered) if len(keys) > 1 else lambda d: tuple(d[k] for k in keys)  # always a tuple
            if len(_DETAIL_TEMPLATES) >= 1 << 12:
                _DETAIL_TEMPLATES.clear()
            shape = _DETAIL_TEMPLATES[keys] = (template, pick)
        template, pick = shape
        return template % tuple([
            v if type(v) is int else json_str(v) if type(v) is str else json_detail(v, dumps) for v in pick(value)
        ])
    if t is list or t is tuple:
        types = set(map(type, value))
        if types <= _STR:
            return "[" + ", ".join(map(json_str, value)) + "]"
        if types <= _INT:
            return repr(list(value))  # "[1, 2]": the list's repr is its JSON when it holds exact ints only
    elif value is None:
        return "null"
    elif t is bool:
        return "true" if value else "false"
    return dumps(_jsonable(value))


_SHORT: Final = 64  # header names and values, start-line parts: few distinct values, so their text is cached
_SHORT_TEXT: Final[dict[bytes, str]] = {}
_SHORT_TEXT_MAX: Final = 1 << 12  # when full it starts over
ASIDE: Final = "\x00"  # marks text kept aside (never in JSON text: json.dumps escapes control characters)


def escape_json(value: bytes | bytearray | memoryview, aside: list[bytes] | None = None) -> str:
    """``json_str(escape(value))``: bytes as latin-1 text with unicode_escape escapes, as a JSON string.

    With ``aside``, a long value's text (without its quotes) is appended there and a marker naming its place in
    ``aside`` returned: ``aside_pieces`` puts it in, copying it once instead of once per enclosing object.
    """
    if type(value) is not bytes:
        value = bytes(value)
    if len(value) > _SHORT:
        if aside is None:
            return '"' + _escape_json(value).decode("ascii") + '"'
        aside.append(_escape_json(value))
        return f'"{ASIDE}{len(aside) - 1}{ASIDE}"'
    text = _SHORT_TEXT.get(value)
    if text is None:
        if len(_SHORT_TEXT) >= _SHORT_TEXT_MAX:
            _SHORT_TEXT.clear()
        text = _SHORT_TEXT[value] = '"' + _escape_json(value).decode("ascii") + '"'
    return text


def _escape_json(value: bytes) -> bytes:
    """The inside of the JSON string for ``escape(value)``, as ASCII bytes.

    The unicode_escape text is printable ASCII: the only characters JSON escapes in it are backslash and quote.
    Text made of printable ASCII, tabs and line ends (HTTP heads, most bodies) needs no unicode_escape at all.
    Otherwise doubling the backslashes is the work: when escapes are few, replace them; when many (binary),
    unicode_escape again is faster. Both give the same bytes.
    """
    if value.isascii() and not value.translate(None, _PLAIN_TEXT):
        return (value.replace(b"\\", b"\\\\\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\\\n")
                .replace(b"\r", b"\\\\r").replace(b"\t", b"\\\\t"))
    text = value.decode("latin-1").encode("unicode_escape")
    if 5 * len(text) < 7 * len(value):
        text = text.replace(b"\\", b"\\\\")
    else:
        text = text.decode("latin-1").encode("unicode_escape")
    return text.replace(b'"', b'\\"')


_PLAIN_TEXT: Final = bytes(range(0x20, 0x7F)) + b"\t\n\r"  # bytes escape() writes as is or as \t \n \r


def aside_pieces(text: str, aside: list[bytes]) -> list[bytes]:
    """``text`` as ASCII bytes, in pieces, with the values ``escape_json`` kept in ``aside`` back where their
    markers are: ``b"".join`` of the list is the whole text (a file can take the pieces as they are)."""
    if not aside:
        return [text.encode("ascii")]
    pieces = text.encode("ascii").split(ASIDE.encode("ascii"))  # text, index, text, index, ..., text
    places = [int(i) for i in pieces[1::2]]
    if len(pieces) != 2 * len(aside) + 1 or sorted(places) != list(range(len(aside))):
        raise AssertionError("aside_pieces: the text does not mark each value kept aside once")
    pieces[1::2] = [aside[i] for i in places]
    return pieces


def _jsonable(value: Any) -> Any:
    """Detail values are plain data; bytes become text with escapes (evidence, not markup)."""
    if type(value) in _PLAIN:
        return value
    if type(value) is dict or isinstance(value, Mapping):
        return {k if type(k) is str else str(k): v if type(v) in _PLAIN else _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _PLAIN else _jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1").encode("unicode_escape").decode("ascii")
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value, Severity) else value.value
    return value


def sort_key(f: Finding) -> tuple:
    """Worst first, then by main frame."""
    return (-int(f.severity), f.frames[0] if f.frames else 0, f.code)
