"""Message heads (RFC 9112 §2-§5): start line and field lines, with raw bytes, original case and order kept.

Pure functions over complete lines; the per-direction reader (pcapcheck.http.reader) finds the lines in the
stream. Every irregularity becomes an Issue and parsing goes on, choosing the reading a proxy that repairs
the message would choose (whitespace before a colon removed, obs-fold replaced by SP, bare CR by SP).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat

from pcapcheck.frozen import fast_frozen, frozen_builder, frozen_maker
from pcapcheck.http import abnf, codes
from pcapcheck.http.abnf import OWS
from pcapcheck.http.issues import Issue, show


@fast_frozen
@dataclass(frozen=True, slots=True)
class HeaderField:
    name: bytes  # as sent, original case (whitespace before the colon removed)
    value: bytes  # OWS trimmed; an obs-fold continuation is joined with one SP
    frame: int  # the frame carrying the first byte of the line
    offset: int  # stream offset of the first byte of the line
    raw: bytes  # the line (and its continuation lines) as sent, without the final line terminator

    @property
    def lname(self) -> bytes:
        return self.name.lower()


_HeaderFieldBuilder = frozen_builder(HeaderField)
# Field names as parse_clean_fields first saw them, so the heads an analyzer keeps (thousands on a long keep-alive
# connection) share one bytes object per name instead of one per field. The first _NAMES_MAX names seen are kept
# (a head's names are attacker-chosen: the table must not grow with them); later ones are not shared.
_NAMES: dict[bytes, bytes] = {}
_NAMES_MAX = 2048


# A field line that needs none of parse_field_lines' checks: token ":" OWS field-value OWS CRLF, the value free
# of CTLs other than HTAB (so no bare CR), obs-text allowed. Groups: the line without its CRLF, the name, the
# value after its leading OWS (taken greedily by [ \t]*) with any trailing OWS still on. Anything else (bare LF,
# obs-fold, whitespace before the colon, a name that is not a token, CTLs) takes the general path.
_CLEAN_FIELDS = re.compile(rb"((" + abnf.TCHAR_CLASS + rb"+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*))\r\n")


@fast_frozen
@dataclass(frozen=True, slots=True)
class RequestLine:
    method: bytes
    target: bytes
    version: bytes


@fast_frozen
@dataclass(frozen=True, slots=True)
class StatusLine:
    version: bytes
    status: int
    reason: bytes


@fast_frozen
@dataclass(frozen=True, slots=True)
class BadStartLine:
    reason: str


StartLine = RequestLine | StatusLine

_request_line = frozen_maker(RequestLine)  # = RequestLine(method, target, version), see frozen_builder
_status_line = frozen_maker(StatusLine)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a head: ``data`` excludes the LF but keeps a CR before it, so endings stay visible."""

    offset: int
    data: bytes
    frame: int


@dataclass(frozen=True, slots=True)
class ParsedHead:
    start: StartLine
    fields: tuple[HeaderField, ...]
    issues: tuple[Issue, ...]

    @property
    def is_request(self) -> bool:
        return isinstance(self.start, RequestLine)

    @property
    def version(self) -> bytes:
        return self.start.version


def _strip_cr(data: bytes) -> bytes:
    return data[:-1] if data.endswith(b"\r") else data


def parse_start_line(line: bytes, is_request: bool) -> StartLine | BadStartLine:
    """``line`` without its line terminator."""
    if is_request:
        m = abnf.REQUEST_LINE.fullmatch(line)
        if m is None:
            return BadStartLine("not a request-line (method SP request-target SP HTTP/1.x)")
        method, target, version = m.groups()
        return _request_line(method, target, version)
    m = abnf.STATUS_LINE.fullmatch(line)
    if m is None:
        return BadStartLine("not a status-line (HTTP/1.x SP 3DIGIT SP reason)")
    version, status, reason = m.groups()
    return _status_line(version, int(status), reason or b"")


def parse_head(
    lines: Sequence[Line], terminator: Line, is_request: bool, start: StartLine | None = None
) -> ParsedHead | BadStartLine:
    """Parse a complete head: ``lines[0]`` is the start line (``start`` if already parsed); ``terminator`` is the
    empty line that ends the head."""
    if start is None:
        parsed = parse_start_line(_strip_cr(lines[0].data), is_request)
        if isinstance(parsed, BadStartLine):
            return parsed
        start = parsed
    fields, issues = parse_field_lines(lines[1:], after_start_line=True)
    bare = bare_lf_issue([*lines, terminator], "head")
    if bare is not None:
        issues.append(bare)
    return ParsedHead(start, tuple(fields), tuple(sorted(issues, key=lambda i: i.offset)))


def parse_clean_fields(start_line: bytes, fields_at: int, block: bytes, frame: int,
                       frames_of: Callable[[list[int]], list[int]] | None = None) -> tuple[HeaderField, ...] | None:
    """The fields of the usual head, or None when it is not one. The usual head: every line ends with CRLF and
    every field line is clean (see _CLEAN_FIELDS); ``parse_head`` would then report nothing and read each field
    straight off, as this does. ``start_line``: the start line with its CR; ``block``: the field lines with
    their CRLFs, from stream offset ``fields_at``; ``frame``: the frame that carried the whole head, or, for a
    head over several segments, ``frames_of``, which gives the frames carrying a list of stream offsets."""
    if not start_line.endswith(b"\r"):
        return None
    # (find, not "in": bytes.__contains__ first tries its argument as an int, raising and clearing a TypeError)
    trailing_ows = block.find(b" \r\n") >= 0 or block.find(b"\t\r\n") >= 0
    found = _CLEAN_FIELDS.findall(block)
    if frames_of is None:
        frames: Iterable[int] = repeat(frame)
    else:
        starts = list(accumulate([len(raw) + 2 for raw, _, _ in found], initial=fields_at))
        if starts.pop() != fields_at + len(block):
            return None
        frames = frames_of(starts)
    at = fields_at
    fields: list[HeaderField] = []
    append = fields.append
    names = _NAMES
    for (raw, name, value), frame in zip(found, frames):
        f = _HeaderFieldBuilder()  # = HeaderField(name, value, frame, at, raw), see frozen_builder
        shared = names.get(name)
        if shared is not None:
            name = shared
        elif len(names) < _NAMES_MAX:
            names[name] = name
        f.name = name
        f.value = value.rstrip(OWS) if trailing_ows else value
        f.frame = frame
        f.offset = at
        f.raw = raw
        f.__class__ = HeaderField
        append(f)
        at += len(raw) + 2
    # The matches cannot overlap or span lines; they cover the block exactly when every line is a clean one.
    if at != fields_at + len(block):
        return None
    return tuple(fields)


def bare_lf_issue(lines: Sequence[Line], where: str) -> Issue | None:
    """One issue per head (or trailer section) for lines ended by LF alone, counted (RFC 9112 §2.2)."""
    bare = [ln for ln in lines if not ln.data.endswith(b"\r")]
    if not bare:
        return None
    first = bare[0]
    lf_at = first.offset + len(first.data)
    return Issue(
        codes.HEADER_BARE_LF,
        lf_at,
        1,
        f"{len(bare)} of {len(lines)} lines of the {where} end with a bare LF instead of CRLF, first after "
        f"{show(first.data)}; RFC 9112 §2.2 lets a recipient accept this, strict parsers (llhttp) reject it.",
        {"count": len(bare), "lines": len(lines), "offsets": [ln.offset + len(ln.data) for ln in bare[:16]]},
        frames=(first.frame,),
    )


def parse_field_lines(
    lines: Sequence[Line], *, after_start_line: bool, into: list[HeaderField] | None = None
) -> tuple[list[HeaderField], list[Issue]]:
    """Field lines of a head or of a trailer section (RFC 9112 §5, §7.1.2). ``into``: fields already parsed
    (a trailer section arrives line by line), extended in place and returned."""
    fields: list[HeaderField] = [] if into is None else into
    issues: list[Issue] = []
    last_cr = True  # did the last line of fields[-1] end with CRLF (to rebuild a folded field's raw bytes)
    for ln in lines:
        text = _strip_cr(ln.data)
        cr = text.find(b"\r")
        if cr >= 0:
            # RFC 9112 §2.2: "A recipient of such a bare CR MUST consider that element to be invalid or replace
            # each bare CR with SP before processing the element or forwarding the message."
            issues.append(
                Issue(
                    codes.HEADER_BARE_CR,
                    ln.offset + cr,
                    1,
                    f"Header line {show(text)} contains a CR not followed by LF; recipients must reject it or "
                    "read it as SP (RFC 9112 §2.2), and parsers that take it as a line end see another header.",
                    {"line": text},
                    frames=(ln.frame,),
                )
            )
            text = text.replace(b"\r", b" ")
        if text[:1] in (b" ", b"\t"):
            # RFC 9112 §5.2: obs-fold = OWS CRLF RWS. "A user agent that receives an obs-fold ... MUST replace
            # each received obs-fold with one or more SP octets prior to interpreting the field value."
            if not fields:
                where = "right after the start line" if after_start_line else "at the start of the trailer section"
                issues.append(
                    Issue(
                        codes.HEADER_OBS_FOLD,
                        ln.offset,
                        len(ln.data),
                        f"Whitespace-preceded line {show(text)} {where}: RFC 9112 §2.2 requires rejecting the "
                        "message or ignoring the line; parsers that unfold it attach it to the start line.",
                        {"line": text, "ignored": True},
                        frames=(ln.frame,),
                    )
                )
                continue
            prev = fields[-1]
            issues.append(
                Issue(
                    codes.HEADER_OBS_FOLD,
                    ln.offset,
                    len(ln.data),
                    f"Header {show(prev.name)} is continued on the next line by obsolete line folding "
                    f"({show(text)}); RFC 9112 §5.2 forbids sending it, and peers differ in unfolding it.",
                    {"line": text, "field": prev.name},
                    frames=(ln.frame,),
                )
            )
            value = (prev.value + b" " + text.strip(abnf.OWS)).strip(abnf.OWS)
            raw = prev.raw + (b"\r\n" if last_cr else b"\n") + _strip_cr(ln.data)
            fields[-1] = HeaderField(prev.name, value, prev.frame, prev.offset, raw)
            last_cr = ln.data.endswith(b"\r")
            continue
        colon = text.find(b":")
        if colon < 0:
            issues.append(
                Issue(
                    codes.HEADER_INVALID,
                    ln.offset,
                    len(ln.data),
                    f"Line {show(text)} in the head has no colon, so it is not a field line (RFC 9112 §5); "
                    "strict parsers reject the message.",
                    {"line": text, "reason": "no colon"},
                    frames=(ln.frame,),
                )
            )
            continue
        name = text[:colon]
        after = text[colon + 1 :]
        value_at = colon + 1 + len(after) - len(after.lstrip(abnf.OWS))
        value = after.strip(abnf.OWS)
        stripped = name.rstrip(abnf.OWS)
        if stripped != name and abnf.is_token(stripped):
            # RFC 9112 §5.1: "No whitespace is allowed between the field name and colon. ... A server MUST
            # reject, with a response status code of 400 (Bad Request), any received request message that
            # contains whitespace between a header field name and colon. A proxy MUST remove any such
            # whitespace from a response message before forwarding the message downstream."
            issues.append(
                Issue(
                    codes.HEADER_SPACE_BEFORE_COLON,
                    ln.offset + len(stripped),
                    len(name) - len(stripped),
                    f"Header line {show(text)} has whitespace between the field name and the colon: servers must "
                    f"reject it (400), proxies must strip it (RFC 9112 §5.1), lenient clients ignore the line, "
                    f"so peers disagree on whether {show(stripped)} is present.",
                    {"line": text, "field": stripped},
                    frames=(ln.frame,),
                )
            )
            name = stripped
        elif not abnf.is_token(name):
            issues.append(
                Issue(
                    codes.HEADER_INVALID,
                    ln.offset,
                    len(ln.data),
                    f"Header line {show(text)} has a field name {show(name)} that is not a token "
                    "(RFC 9110 §5.1); strict parsers reject the message, nginx ignores the line by default.",
                    {"line": text, "reason": "field name is not a token"},
                    frames=(ln.frame,),
                )
            )
            continue
        lname = name.lower()
        if lname not in (b"transfer-encoding", b"content-length"):
            # TE and CL values have their own, more precise checks (pcapcheck.http.framing).
            bad = abnf.FIELD_VALUE_CTL.search(value)
            if bad is not None:
                issues.append(
                    Issue(
                        codes.HEADER_INVALID,
                        ln.offset + value_at + bad.start(),
                        1,
                        f"Header {show(name)} has a control character {show(bad.group())} in its value "
                        f"{show(value)}; NUL and other CTLs are not field-vchar (RFC 9110 §5.5).",
                        {"line": text, "reason": "control character in field value"},
                        frames=(ln.frame,),
                    )
                )
        fields.append(HeaderField(name, value, ln.frame, ln.offset, _strip_cr(ln.data)))
        last_cr = ln.data.endswith(b"\r")
    return fields, issues
