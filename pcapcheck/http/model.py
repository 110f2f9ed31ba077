"""What the HTTP analysis hands to the report: messages and request/response exchanges, frozen.

Bytes stay bytes here; ``to_json`` turns them into text the same way Finding.to_json does (latin-1, then
Python's unicode_escape, so the result is ASCII, reversible, and never markup).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pcapcheck.http.framing import BodyFraming, framing_json
from pcapcheck.http.parser import HeaderField, RequestLine, StatusLine


def escape(value: bytes) -> str:
    """Bytes as JSON-safe text: latin-1 code points, then backslash escapes for anything not printable ASCII."""
    return bytes(value).decode("latin-1").encode("unicode_escape").decode("ascii")


class MessageState(enum.Enum):
    IN_PROGRESS = "in-progress"  # still being read (the direction has not ended)
    COMPLETE = "complete"
    TRUNCATED = "truncated"  # the stream ended (FIN/RST) before the message did
    INCOMPLETE = "incomplete"  # bytes missing from the capture (gap), or the capture ended first
    MALFORMED = "malformed"  # the framing broke: the end of the message could not be determined


class Pairing(enum.Enum):
    IN_ORDER = "in-order"  # n-th final response answers the n-th request (RFC 9112 §9.3.2)
    UNCERTAIN = "uncertain"  # capture loss on the way: whole messages may be missing, so the pairing may be off


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
    body_excerpt: bytes  # first bytes of the (decoded) body, at most 4 KiB
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

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "direction": self.direction,
            "index": self.index,
            "version": escape(self.start.version),
            "headers": [
                {"name": escape(h.name), "value": escape(h.value), "frame": h.frame, "offset": h.offset}
                for h in self.headers
            ],
            "raw_head": escape(self.raw_head),
            "raw_head_truncated": self.raw_head_truncated,
            "framing": framing_json(self.framing),
            "body_length": self.body_length,
            "wire_body_length": self.wire_body_length,
            "body_missing": self.body_missing,
            "body_excerpt": escape(self.body_excerpt),
            "body_excerpt_truncated": len(self.body_excerpt) < self.body_length - self.body_missing,
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


@dataclass(frozen=True, slots=True)
class HttpExchange:
    index: int
    request: HttpMessage | None  # None: no request seen for this response (capture loss, or not captured)
    interim: tuple[HttpMessage, ...]  # 1xx responses before the final one (101 is final)
    response: HttpMessage | None  # None: no final response seen
    pairing: Pairing
    tunnel: bool  # a 2xx to CONNECT or a 101: the connection carried another protocol afterwards

    @property
    def findings(self) -> tuple[int, ...]:
        msgs = [m for m in (self.request, *self.interim, self.response) if m is not None]
        return tuple(sorted(i for m in msgs for i in m.findings))

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "request": self.request.to_json() if self.request else None,
            "interim": [m.to_json() for m in self.interim],
            "response": self.response.to_json() if self.response else None,
            "pairing": self.pairing.value,
            "tunnel": self.tunnel,
            "findings": list(self.findings),
        }
