"""What the HTTP analysis hands to the report: messages and request/response exchanges, frozen.

Bytes stay bytes here; ``to_json`` turns them into text the same way Finding.to_json does (latin-1, then
Python's unicode_escape, so the result is ASCII, reversible, and never markup).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pcapcheck.findings import dumps_sorted, escape_json, json_ints, json_str, json_value, object_template
from pcapcheck.frozen import fast_frozen
from pcapcheck.http.framing import BodyFraming, ContentLength, framing_json
from pcapcheck.http.parser import HeaderField, RequestLine, StatusLine


def escape(value: bytes) -> str:
    """Bytes as JSON-safe text: latin-1 code points, then backslash escapes for anything not printable ASCII."""
    return bytes(value).decode("latin-1").encode("unicode_escape").decode("ascii")


_FIELD_TEXT: Final = object_template("frame", "name", "offset", "value")  # a header field in to_json
_BOOL_TEXT: Final = {False: "false", True: "true"}
# Body bytes report.json gives of a message (``body_excerpt``; ``body_excerpt_truncated`` when the body had more):
# the first KiB, as much as its page shows (views.BODY_TEXT_SHOWN), or of a binary body (is_binary) the first
# 256 bytes, as much as its page shows as hex (views.BODY_HEX_SHOWN). The reader keeps more while it reads a body
# (reader.BODY_KEEP, for recognising proxy error pages); a message that has ended keeps the first KiB
# (Http1Analyzer.message_done). Written as escaped text a byte that is not printable ASCII takes 5 characters
# of JSON (\\xNN): a binary body's 4 KiB took 16-20 KB, most of a report (62% of the benchmark capture's); its
# first KiB still took 68% of the report of a capture of long connections carrying binary responses of a KB.
JSON_BODY_EXCERPT: Final = 1024
JSON_BINARY_EXCERPT: Final = 256
_TEXT_BYTES: Final = bytes(range(0x20, 0x7F)) + b"\t\r\n"


def is_binary(data: bytes) -> bool:
    """More than a quarter of the first KiB's bytes are neither printable ASCII nor line breaks or tabs."""
    sample = data[:1024]
    return bool(sample) and len(sample.translate(None, _TEXT_BYTES)) > 0.25 * len(sample)


def json_excerpt(body: bytes) -> bytes:
    """The bytes of a body excerpt report.json gives (JSON_BODY_EXCERPT, JSON_BINARY_EXCERPT)."""
    if len(body) > JSON_BODY_EXCERPT:
        body = body[:JSON_BODY_EXCERPT]
    if len(body) > JSON_BINARY_EXCERPT and is_binary(body):
        body = body[:JSON_BINARY_EXCERPT]
    return body


def _fields_text(fields: tuple[HeaderField, ...], dumps: Callable[[Any], str]) -> str:
    """The JSON text of to_json's list of header (or trailer) fields."""
    if not fields:
        return "[]"
    cached = _FIELD_TEMPLATES.get
    out = []
    for h in fields:
        name, value, frame, offset = h.name, h.value, h.frame, h.offset
        try:
            template = cached((name, value))
        except TypeError:  # a bytearray name or value: not a key
            template = None
        if template is None:
            template = _field_template(name, value)
        if type(frame) is int and type(offset) is int:
            out.append(template % (frame, offset))
        else:
            out.append(template % (json_value(frame, dumps), json_value(offset, dumps)))
    return "[" + ", ".join(out) + "]"


_FIELD_TEMPLATES: Final[dict[tuple[bytes, bytes], str]] = {}  # (name, value) -> _FIELD_TEXT with both filled in


def _field_template(name: bytes, value: bytes) -> str:
    template = _FIELD_TEXT % ("%s", escape_json(name).replace("%", "%%"), "%s", escape_json(value).replace("%", "%%"))
    if type(name) is bytes and type(value) is bytes and len(name) + len(value) <= 128:
        if len(_FIELD_TEMPLATES) >= 1 << 12:  # few distinct lines (Host, Content-Type, ...) in practice
            _FIELD_TEMPLATES.clear()
        _FIELD_TEMPLATES[(name, value)] = template
    return template


class MessageState(enum.Enum):
    IN_PROGRESS = "in-progress"  # still being read (the direction has not ended)
    COMPLETE = "complete"
    TRUNCATED = "truncated"  # the stream ended (FIN/RST) before the message did
    INCOMPLETE = "incomplete"  # bytes missing from the capture (gap), or the capture ended first
    MALFORMED = "malformed"  # the framing broke: the end of the message could not be determined


class Pairing(enum.Enum):
    IN_ORDER = "in-order"  # n-th final response answers the n-th request (RFC 9112 §9.3.2)
    UNCERTAIN = "uncertain"  # capture loss on the way: whole messages may be missing, so the pairing may be off


@fast_frozen
@dataclass(frozen=True, slots=True)
class HttpMessage:
    direction: str  # "c2s" (request) | "s2c" (response)
    index: int  # position among the messages of its direction (detail.message_index of its findings)
    start: RequestLine | StatusLine
    headers: tuple[HeaderField, ...]
    raw_head: bytes  # the head as sent, up to RAW_HEAD_KEEP bytes
    raw_head_truncated: bool
    framing: BodyFraming
    body_length: int  # body bytes (decoded for chunked), bytes lost in capture gaps included
    wire_body_length: int  # body bytes on the wire (chunk framing included)
    body_missing: int  # body bytes lost in capture gaps
    body_excerpt: bytes  # first bytes of the (decoded) body: at most JSON_BODY_EXCERPT once the message ended
    trailers: tuple[HeaderField, ...]
    chunks: int
    first_frame: int
    last_frame: int
    offset: int  # stream offset of the first byte of the start line
    end_offset: int  # stream offset just after the message (or where reading stopped)
    state: MessageState
    end_reason: str  # "" or how the stream ended under an unfinished message: fin | rst | capture-ended | gap
    after_loss: bool  # capture loss happened earlier in this direction
    findings: tuple[int, ...]  # indices into Http1Analyzer.finish()'s list
    elided: bool  # beyond the per-conversation detail cap: headers, raw head and excerpt dropped

    @property
    def is_request(self) -> bool:
        return isinstance(self.start, RequestLine)

    @property
    def version(self) -> bytes:
        return self.start.version

    @property
    def method(self) -> bytes | None:
        return self.start.method if isinstance(self.start, RequestLine) else None

    @property
    def target(self) -> bytes | None:
        return self.start.target if isinstance(self.start, RequestLine) else None

    @property
    def status(self) -> int | None:
        return self.start.status if isinstance(self.start, StatusLine) else None

    @property
    def reason(self) -> bytes | None:
        return self.start.reason if isinstance(self.start, StatusLine) else None

    def to_json(self, *, page: bool = False) -> dict[str, Any]:
        """The message as report.json has it. ``page``: the same, but for the raw head and the body excerpt, which
        are the bytes themselves (a page shows bytes: escaping them only to unescape them again was a tenth of
        building a page)."""
        # json_text() writes this as JSON without building it: a change here is a change there
        body = self.body_excerpt[:JSON_BODY_EXCERPT] if page else json_excerpt(self.body_excerpt)
        out: dict[str, Any] = {
            "direction": self.direction,
            "index": self.index,
            "version": escape(self.start.version),
            "headers": [
                {"name": escape(h.name), "value": escape(h.value), "frame": h.frame, "offset": h.offset}
                for h in self.headers
            ],
            "raw_head": self.raw_head if page else escape(self.raw_head),
            "raw_head_truncated": self.raw_head_truncated,
            "framing": framing_json(self.framing),
            "body_length": self.body_length,
            "wire_body_length": self.wire_body_length,
            "body_missing": self.body_missing,
            "body_excerpt": body if page else escape(body),
            "body_excerpt_truncated": len(body) < self.body_length - self.body_missing,
            "trailers": [
                {"name": escape(h.name), "value": escape(h.value), "frame": h.frame, "offset": h.offset}
                for h in self.trailers
            ],
            "chunks": self.chunks,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "offset": self.offset,
            "end_offset": self.end_offset,
            "state": self.state.value,
            "end_reason": self.end_reason,
            "after_loss": self.after_loss,
            "findings": list(self.findings),
            "elided": self.elided,
        }
        if isinstance(self.start, RequestLine):
            out["method"] = escape(self.start.method)
            out["target"] = escape(self.start.target)
        else:
            out["status"] = self.start.status
            out["reason"] = escape(self.start.reason)
        return out

    def json_text(self, dumps: Callable[[Any], str] | None = None, aside: list[bytes] | None = None) -> str:
        """``dumps(self.to_json())`` without building the dict; keep in step with to_json (report.json writes this).

        ``dumps`` is ``json.dumps(value, sort_keys=True, default=...)``, for the odd value this does not write.
        With ``aside``, the raw head and body excerpt are kept there (see ``escape_json`` and ``aside_pieces``).
        """
        dumps = dumps or dumps_sorted
        start = self.start
        scalars = (self.after_loss, self.elided, self.raw_head_truncated, self.direction, self.end_reason,
                   self.state._value_,  # _value_: .value without the enum descriptor's cost
                   self.index, self.body_length, self.wire_body_length, self.body_missing, self.chunks,
                   self.first_frame, self.last_frame, self.offset, self.end_offset)
        texts: Sequence[Any]  # each scalar's JSON text, or an int as it is (the templates' %s writes it)
        if tuple(map(type, scalars)) == _SCALAR_TYPES:  # as annotated: all checked at once
            texts = (_BOOL_TEXT[scalars[0]], _BOOL_TEXT[scalars[1]], _BOOL_TEXT[scalars[2]], json_str(scalars[3]),
                     json_str(scalars[4]), json_str(scalars[5]), *scalars[6:])
        else:
            texts = [json_value(x, dumps) for x in scalars]
        (after_loss, elided, raw_head_truncated, direction, end_reason, state, index, body_length,
         wire_body_length, body_missing, chunks, first_frame, last_frame, offset, end_offset) = texts
        body = json_excerpt(self.body_excerpt)
        framing = self.framing
        framing_text = _FRAMING_TEXT.get(type(framing))
        if framing_text is None:
            length = getattr(framing, "length", None)
            if type(framing) is ContentLength and type(length) is int:  # (half the responses: no dumps call)
                framing_text = _CONTENT_LENGTH_TEXT % length
            else:
                framing_text = dumps(framing_json(framing))
            if getattr(type(framing), "__slots__", None) == () and not hasattr(framing, "__dict__"):
                _FRAMING_TEXT[type(framing)] = framing_text  # no fields (NoBody, Chunked, ...): one text per type
        common = (
            after_loss, escape_json(body, aside), _BOOL_TEXT[len(body) < self.body_length - self.body_missing],
            body_length, body_missing, chunks, direction, elided, end_offset, end_reason,
            json_ints(self.findings, dumps) if self.findings else "[]", first_frame, framing_text,
            _fields_text(self.headers, dumps), index, last_frame,
        )
        trailers = _fields_text(self.trailers, dumps) if self.trailers else "[]"
        if isinstance(start, RequestLine):
            return _REQUEST_TEXT % (
                *common, escape_json(start.method), offset, escape_json(self.raw_head, aside), raw_head_truncated,
                state, escape_json(start.target), trailers, escape_json(start.version), wire_body_length,
            )
        return _RESPONSE_TEXT % (
            *common, offset, escape_json(self.raw_head, aside), raw_head_truncated, escape_json(start.reason), state,
            json_value(start.status, dumps), trailers, escape_json(start.version), wire_body_length,
        )


_SCALAR_TYPES: Final = (bool,) * 3 + (str,) * 3 + (int,) * 9
_FRAMING_TEXT: Final[dict[type, str]] = {}
_CONTENT_LENGTH_TEXT: Final = object_template("length", "type") % ("%d", json_str("content-length"))  # framing_json's
# to_json's keys, sorted (json_text passes the values in this order); the first 16 are common to both
_REQUEST_TEXT: Final = object_template(
    "after_loss", "body_excerpt", "body_excerpt_truncated", "body_length", "body_missing", "chunks", "direction",
    "elided", "end_offset", "end_reason", "findings", "first_frame", "framing", "headers", "index", "last_frame",
    "method", "offset", "raw_head", "raw_head_truncated", "state", "target", "trailers", "version", "wire_body_length",
)
_RESPONSE_TEXT: Final = object_template(
    "after_loss", "body_excerpt", "body_excerpt_truncated", "body_length", "body_missing", "chunks", "direction",
    "elided", "end_offset", "end_reason", "findings", "first_frame", "framing", "headers", "index", "last_frame",
    "offset", "raw_head", "raw_head_truncated", "reason", "state", "status", "trailers", "version", "wire_body_length",
)


@fast_frozen
@dataclass(frozen=True, slots=True)
class HttpExchange:
    index: int
    request: HttpMessage | None  # None: no request seen for this response (capture loss, or not captured)
    interim: tuple[HttpMessage, ...]  # 1xx responses before the final one (101 is final)
    response: HttpMessage | None  # None: no final response seen
    pairing: Pairing
    tunnel: bool  # a 2xx to CONNECT or a 101: the connection carried another protocol afterwards
    interim_omitted: int = 0  # 1xx responses beyond the first INTERIM_KEPT, without a finding: counted, not kept

    @property
    def findings(self) -> tuple[int, ...]:
        msgs = [m for m in (self.request, *self.interim, self.response) if m is not None]
        return tuple(sorted(i for m in msgs for i in m.findings))

    def to_json(self, *, page: bool = False) -> dict[str, Any]:
        """The exchange as report.json has it; ``page``: its messages' bytes as bytes (HttpMessage.to_json)."""
        # json_text() writes this as JSON without building it: a change here is a change there
        return {
            "index": self.index,
            "request": self.request.to_json(page=page) if self.request else None,
            "interim": [m.to_json(page=page) for m in self.interim],
            "response": self.response.to_json(page=page) if self.response else None,
            "pairing": self.pairing.value,
            "tunnel": self.tunnel,
            "findings": list(self.findings),
        } | ({"interim_omitted": self.interim_omitted} if self.interim_omitted else {})

    def json_text(self, dumps: Callable[[Any], str] | None = None, aside: list[bytes] | None = None) -> str:
        """``dumps(self.to_json())`` without building the dict; keep in step with to_json (report.json writes this)."""
        dumps = dumps or dumps_sorted
        request, interim, response = self.request, self.interim, self.response
        if interim or (request is not None and request.findings) or (response is not None and response.findings):
            findings = json_ints(self.findings, dumps)
        else:
            findings = "[]"  # the common case, without the findings property's sort
        values = [
            findings,
            json_value(self.index, dumps),
            "[" + ", ".join([m.json_text(dumps, aside) for m in interim]) + "]" if interim else "[]",
            json_value(self.pairing._value_, dumps),
            request.json_text(dumps, aside) if request else "null",
            response.json_text(dumps, aside) if response else "null",
            json_value(self.tunnel, dumps),
        ]
        if self.interim_omitted:  # (the key only then: in sorted order, after "interim")
            values.insert(3, json_value(self.interim_omitted, dumps))
            return _EXCHANGE_OMITTED_TEXT % tuple(values)
        return _EXCHANGE_TEXT % tuple(values)


_EXCHANGE_TEXT: Final = object_template("findings", "index", "interim", "pairing", "request", "response", "tunnel")
_EXCHANGE_OMITTED_TEXT: Final = object_template(
    "findings", "index", "interim", "interim_omitted", "pairing", "request", "response", "tunnel")


class ExchangeJson:
    """A settled exchange kept only as its report.json text (``HttpExchange.json_text()``): what a long keep-alive
    connection's spill holds for an exchange no page will show (http.spill.ExchangeSpill). It has no finding,
    a request and a final response; ``to_json()`` gives what the HttpExchange's gave, ``json_text()`` the same
    text, whatever ``dumps`` (an exchange without findings has no value only ``dumps`` writes)."""

    __slots__ = ("index", "text")
    findings: tuple[int, ...] = ()

    def __init__(self, index: int, text: str) -> None:
        self.index = index
        self.text = text

    def to_json(self) -> dict[str, Any]:
        return json.loads(self.text)  # type: ignore[no-any-return]

    def json_text(self, dumps: Callable[[Any], str] | None = None, aside: list[bytes] | None = None) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ExchangeJson):
            return self.index == other.index and self.text == other.text
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.index, self.text))

    def __reduce__(self) -> tuple[Any, ...]:
        return (ExchangeJson, (self.index, self.text))

    def __repr__(self) -> str:
        return f"ExchangeJson(index={self.index}, {len(self.text)} characters)"
