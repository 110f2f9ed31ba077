"""Message body framing: what Transfer-Encoding and Content-Length say, then RFC 9112 §6.3 in order.

Two steps, both pure:
``analyze_headers`` reads the TE and CL field lines (raw, every duplicate) into a HeaderFraming with the
faults found (duplicate lines, chunked twice, unknown codings, TE+CL, invalid or conflicting lengths);
``body_framing`` then applies the eight rules of RFC 9112 §6.3 to pick exactly one BodyFraming.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pcapcheck.frozen import fast_frozen, frozen_maker
from pcapcheck.http import abnf, codes
from pcapcheck.http.issues import Issue, show, times
from pcapcheck.http.parser import HeaderField

# --- the body framing, a closed set -------------------------------------------------------------------------


@fast_frozen
@dataclass(frozen=True, slots=True)
class NoBody:
    """The message ends at the empty line after the head."""


@fast_frozen
@dataclass(frozen=True, slots=True)
class ContentLength:
    length: int


@fast_frozen
@dataclass(frozen=True, slots=True)
class Chunked:
    """The body is chunked (RFC 9112 §7.1); chunked is the final transfer coding."""


@fast_frozen
@dataclass(frozen=True, slots=True)
class UntilClose:
    """A response body delimited by the server closing the connection."""


@fast_frozen
@dataclass(frozen=True, slots=True)
class Tunnel:
    """After this head the connection carries another protocol (2xx to CONNECT, 101 Switching Protocols)."""


@fast_frozen
@dataclass(frozen=True, slots=True)
class Unframed:
    """The length cannot be determined (RFC 9112 §6.3 items 4 and 5): the recipient must close."""

    reason: str


BodyFraming = NoBody | ContentLength | Chunked | UntilClose | Tunnel | Unframed


def framing_json(framing: BodyFraming) -> dict[str, Any]:
    if isinstance(framing, ContentLength):
        return {"type": "content-length", "length": framing.length}
    if isinstance(framing, Unframed):
        return {"type": "unframed", "reason": framing.reason}
    return {"type": _NAMES[type(framing)]}


_NAMES = {NoBody: "no-body", Chunked: "chunked", UntilClose: "until-close", Tunnel: "tunnel"}


# --- what the Content-Length field lines say, a closed set --------------------------------------------------


@fast_frozen
@dataclass(frozen=True, slots=True)
class ClAbsent:
    pass


@fast_frozen
@dataclass(frozen=True, slots=True)
class ClValid:
    length: int


@fast_frozen
@dataclass(frozen=True, slots=True)
class ClInvalid:
    reason: str


ClState = ClAbsent | ClValid | ClInvalid
_CL_ABSENT: Final = ClAbsent()


@dataclass(frozen=True, slots=True)
class HeaderFraming:
    te_fields: tuple[HeaderField, ...]
    combined_te: bytes  # RFC 9110 §5.3: the values of all Transfer-Encoding lines joined with ", "
    codings: tuple[bytes, ...]  # lower-cased coding names in order (an unparseable element as sent)
    cl_fields: tuple[HeaderField, ...]
    cl: ClState
    issues: tuple[Issue, ...]

    @property
    def has_te(self) -> bool:
        return bool(self.te_fields)

    @property
    def chunked_final(self) -> bool:
        return bool(self.codings) and self.codings[-1] == b"chunked"


def _frames(fields: Sequence[HeaderField]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(f.frame for f in fields))


# Header lines a finding names one by one, in its text and its detail; the rest are counted. (A head may hold
# thousands of Content-Length or Transfer-Encoding lines within HEAD_LIMIT: named all, each such finding was
# hundreds of KB of text and its page megabytes.)
LINES_NAMED: Final = 16


def _lines(fields: Sequence[HeaderField]) -> list[dict[str, Any]]:
    return [{"raw": f.raw, "frame": f.frame, "offset": f.offset} for f in fields[:LINES_NAMED]]


def _with_lines(detail: dict[str, Any], fields: Sequence[HeaderField]) -> dict[str, Any]:
    """``detail`` after the ``lines`` named (and ``lines_not_named``: how many more, when there are more)."""
    out: dict[str, Any] = {"lines": _lines(fields)}
    if len(fields) > LINES_NAMED:
        out["lines_not_named"] = len(fields) - LINES_NAMED
    out.update(detail)
    return out


def _quote_lines(fields: Sequence[HeaderField]) -> str:
    parts = [f"{show(f.raw)} (frame {f.frame}, offset {f.offset})" for f in fields[:LINES_NAMED]]
    if len(fields) > LINES_NAMED:
        parts.append(f"{len(fields) - LINES_NAMED} more such lines")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _span(fields: Sequence[HeaderField]) -> tuple[int, int]:
    start = fields[0].offset
    last = fields[-1]
    return start, last.offset + len(last.raw) - start


def _unknown_why(element: bytes, name: bytes, params: bytes) -> str:
    """Why a coding is unknown, in words (mitmproxy-style guard against Unicode case folding included)."""
    if element == b"":
        return "an empty coding name"
    if b"\x00" in element:
        return "a NUL byte inside the coding name"
    try:
        folded = element.decode("utf-8").lower()
    except UnicodeDecodeError:
        folded = ""
    if any(b >= 0x80 for b in element):
        if folded in ("chunked", "gzip", "deflate", "compress"):
            return (
                f"non-ASCII bytes that a Unicode-aware lower() turns into {folded!r} (e.g. U+212A KELVIN SIGN for "
                "'k'): a parser comparing that way would see a valid coding where others do not"
            )
        return "non-ASCII bytes in the coding name"
    if name == b"identity":
        return "'identity', which is no longer a transfer coding (removed from the registry, RFC 9112 §7)"
    if name == b"chunked" and params:
        return "parameters on chunked, which has none ('SHOULD be treated as an error', RFC 9112 §7.1)"
    if abnf.TOKEN.fullmatch(name) is None:
        return "bytes that are not a token"
    return "a coding name outside the registry"


# A Content-Length value that needs none of _analyze_content_length's checks: one element, no leading zero,
# at most 18 digits (below 2^63 - 1 whatever the digits).
_PLAIN_LENGTH: Final = re.compile(rb"0|[1-9][0-9]{0,17}")
_NO_ISSUES: Final[tuple[Issue, ...]] = ()


def analyze_headers(fields: Sequence[HeaderField], *, is_request: bool, version: bytes) -> HeaderFraming:
    te: list[HeaderField] = []
    cl: list[HeaderField] = []
    for f in fields:  # one pass, one lower() per field (this runs for every message head)
        n = len(f.name)
        if n == 14 or n == 17:
            lname = f.name.lower()
            if lname == b"content-length":
                cl.append(f)
            elif lname == b"transfer-encoding":
                te.append(f)
    if not te:
        # No Transfer-Encoding: none of its checks apply; the usual heads (one plain Content-Length, or none)
        # need no Content-Length checks either.
        if not cl:
            return _header_framing((), b"", (), (), _CL_ABSENT, _NO_ISSUES)
        if len(cl) == 1 and _PLAIN_LENGTH.fullmatch(cl[0].value) is not None:
            return _header_framing((), b"", (), (cl[0],), ClValid(int(cl[0].value)), _NO_ISSUES)
    elif not cl and len(te) == 1 and te[0].value.lower() == b"chunked" and version != b"HTTP/1.0":
        # The usual chunked head: one "Transfer-Encoding: chunked" in HTTP/1.1, nothing to report.
        return _header_framing((te[0],), te[0].value, _CHUNKED_ONLY, (), _CL_ABSENT, _NO_ISSUES)
    return _analyze_headers(tuple(te), tuple(cl), is_request=is_request, version=version)


_CHUNKED_ONLY: Final = (b"chunked",)
_header_framing = frozen_maker(HeaderFraming)  # = HeaderFraming(...) (this runs for every head), see frozen_builder


def _analyze_headers(
    te_fields: tuple[HeaderField, ...], cl_fields: tuple[HeaderField, ...], *, is_request: bool, version: bytes
) -> HeaderFraming:
    kind = "request" if is_request else "response"
    issues: list[Issue] = []

    # Transfer-Encoding = #transfer-coding (RFC 9112 §6.1); repeated lines combine into one list
    # (RFC 9110 §5.3: "by appending each subsequent field line value to the combined field value in order,
    # separated by a comma"). Empty list elements are ignored (RFC 9110 §5.6.1).
    combined = b", ".join(f.value for f in te_fields)
    codings: list[bytes] = []
    unknown: list[tuple[HeaderField, bytes, str]] = []
    others: list[bytes] = []
    for f in te_fields:
        elements = [e.strip(abnf.OWS) for e in f.value.split(b",")]
        if not any(elements):
            unknown.append((f, b"", _unknown_why(b"", b"", b"")))
            continue
        for element in elements:
            if not element:
                continue
            m = abnf.TRANSFER_CODING.fullmatch(element)
            name = m["name"].lower() if m else element.lower()  # bytes.lower(): ASCII only, never Unicode folding
            params = m["params"] if m else b""
            codings.append(name)
            if m is None or name not in abnf.KNOWN_TRANSFER_CODINGS or (name == b"chunked" and params):
                unknown.append((f, element, _unknown_why(element, name, params)))
            elif name != b"chunked":
                others.append(name)
    chunked_count = codings.count(b"chunked")
    equivalent = ", ".join(c.decode("latin-1") for c in codings[:LINES_NAMED])
    if len(codings) > LINES_NAMED:
        equivalent += f", ... ({len(codings)} codings)"
    if is_request:
        rejecters = "strict servers and proxies reject this request (Envoy: 501; nginx: 400; node: 400)"
    else:
        rejecters = (
            "strict proxies reject this response (Envoy: 502, flag UPE, reset reason 'protocol error'; nginx: 502)"
        )

    if len(te_fields) > 1:
        off, length = _span(te_fields)
        if chunked_count > 1:
            text = (
                f"Duplicate Transfer-Encoding header lines {_quote_lines(te_fields)}: combined (RFC 9110 §5.3) they "
                f"read {show(combined)}, equivalent to `{equivalent}` - chunked applied {times(chunked_count)}, which "
                f"RFC 9112 §6.1 forbids; {rejecters}, while curl accepts it."
            )
        else:
            text = (
                f"Duplicate Transfer-Encoding header lines {_quote_lines(te_fields)}: combined (RFC 9110 §5.3) they "
                f"read {show(combined)}, equivalent to `{equivalent}`; nginx, h11 and node reject repeated "
                "Transfer-Encoding lines."
            )
        issues.append(
            Issue(
                codes.TE_DUPLICATE,
                off,
                length,
                text,
                _with_lines({
                    "combined": combined,
                    "codings": list(codings),
                    "chunked_count": chunked_count,
                }, te_fields),
                frames=_frames(te_fields),
            )
        )
    elif chunked_count > 1:
        # One root finding: with several lines, http.te.duplicate already says chunked is applied twice.
        f = te_fields[0]
        issues.append(
            Issue(
                codes.TE_CHUNKED_TWICE,
                f.offset,
                len(f.raw),
                f"Transfer-Encoding {show(f.raw)} (frame {f.frame}) lists chunked {times(chunked_count)}: chunked "
                f"applied twice, which RFC 9112 §6.1 forbids; {rejecters}, while curl accepts it.",
                _with_lines({
                    "combined": combined,
                    "codings": list(codings),
                    "chunked_count": chunked_count,
                }, te_fields),
                frames=(f.frame,),
            )
        )

    if unknown:
        f, element, why = unknown[0]
        issues.append(
            Issue(
                codes.TE_UNKNOWN,
                f.offset,
                len(f.raw),
                f"Transfer-Encoding {show(f.raw)} (frame {f.frame}) names an unknown transfer coding {show(element)}: "
                f"{why}; a server SHOULD answer 501 (RFC 9112 §6.1) and strict proxies reject it.",
                _with_lines({
                    "combined": combined,
                    "unknown": [{"coding": e, "reason": w, "offset": g.offset} for g, e, w in unknown],
                }, te_fields),
                frames=_frames([u[0] for u in unknown]),
            )
        )

    if te_fields and (not codings or codings[-1] != b"chunked"):
        off, length = _span(te_fields)
        if is_request:
            text = (
                f"Transfer-Encoding {show(combined)} in a request does not end with chunked, so the body length "
                "cannot be determined: the server MUST answer 400 and close the connection (RFC 9112 §6.3 item 4)."
            )
        else:
            text = (
                f"Transfer-Encoding {show(combined)} in a response does not end with chunked: the body is read until "
                "the server closes the connection (RFC 9112 §6.3 item 4); strict proxies reject it."
            )
        issues.append(
            Issue(
                codes.TE_CHUNKED_NOT_FINAL,
                off,
                length,
                text,
                _with_lines({"combined": combined, "codings": list(codings)}, te_fields),
                frames=_frames(te_fields),
            )
        )
    elif others and not unknown:
        off, length = _span(te_fields)
        names = ", ".join(o.decode("latin-1") for o in dict.fromkeys(others))
        issues.append(
            Issue(
                codes.TE_UNSUPPORTED,
                off,
                length,
                f"Transfer-Encoding {show(combined)} applies {names} besides chunked: legal (RFC 9112 §7), but Envoy, "
                "nginx and h11 support only chunked and reject the message (501/502), and node passes the body on "
                "undecoded.",
                _with_lines({"combined": combined, "codings": list(codings)}, te_fields),
                frames=_frames(te_fields),
            )
        )

    if te_fields and version == b"HTTP/1.0":
        off, length = _span(te_fields)
        issues.append(
            Issue(
                codes.TE_HTTP10,
                off,
                length,
                f"Transfer-Encoding {show(combined)} in an HTTP/1.0 {kind}: RFC 9112 §6.1 says to treat its framing "
                "as faulty and close the connection after it (HTTP/1.0 peers do not know chunked).",
                _with_lines({"combined": combined, "version": version}, te_fields),
                frames=_frames(te_fields),
            )
        )

    cl, cl_issues = _analyze_content_length(cl_fields, kind)
    issues.extend(cl_issues)

    if te_fields and cl_fields:
        issues.append(
            Issue(
                codes.TE_CL_CONFLICT,
                cl_fields[0].offset,
                len(cl_fields[0].raw),
                f"The {kind} has both {_quote_lines(te_fields)} and {_quote_lines(cl_fields)}: Transfer-Encoding "
                "overrides Content-Length, but a sender MUST NOT send both (RFC 9112 §6.2) and a recipient ought to "
                "handle it as an error - a request smuggling / response splitting signal (§6.3 item 3); Envoy, nginx "
                "and node reject it, h11 and curl ignore Content-Length.",
                _with_lines({"combined": combined}, cl_fields + te_fields),
                frames=_frames(cl_fields + te_fields),
            )
        )
    return HeaderFraming(te_fields, combined, tuple(codings), cl_fields, cl, tuple(issues))


def _analyze_content_length(cl_fields: Sequence[HeaderField], kind: str) -> tuple[ClState, list[Issue]]:
    if not cl_fields:
        return ClAbsent(), []
    issues: list[Issue] = []
    values: list[tuple[HeaderField, int]] = []
    invalid: list[tuple[HeaderField, bytes, str]] = []
    zeros: list[tuple[HeaderField, bytes]] = []
    for f in cl_fields:
        elements = [e.strip(abnf.OWS) for e in f.value.split(b",")]
        if not any(elements):
            invalid.append((f, f.value, "empty value"))
            continue
        for e in elements:
            if not e:
                continue  # RFC 9110 §5.6.1: empty list elements do not count
            if abnf.CONTENT_LENGTH.fullmatch(e) is None:
                why = "negative" if e.startswith(b"-") and e[1:].isdigit() else "not 1*DIGIT"
                invalid.append((f, e, why))
            elif len(e.lstrip(b"0")) > 19 or int(e) > abnf.MAX_CONTENT_LENGTH:
                invalid.append((f, e, "larger than 2^63-1 (overflows a 64-bit length)"))
            else:
                if len(e) > 1 and e.startswith(b"0"):
                    zeros.append((f, e))
                values.append((f, int(e)))
    if invalid:
        f, e, why = invalid[0]
        issues.append(
            Issue(
                codes.CL_INVALID,
                f.offset,
                len(f.raw),
                f"Content-Length {show(e)} in {show(f.raw)} (frame {f.frame}) is not a valid length ({why}): without "
                "Transfer-Encoding the framing is invalid, an unrecoverable error (RFC 9112 §6.3 item 5): a server "
                "answers 400, a proxy discards the response and answers 502.",
                _with_lines({
                    "invalid": [{"value": v, "reason": w, "offset": g.offset} for g, v, w in invalid],
                }, cl_fields),
                frames=_frames([i[0] for i in invalid]),
            )
        )
    distinct = sorted(set(v for _, v in values))
    if len(distinct) > 1:
        issues.append(
            Issue(
                codes.CL_CONFLICT,
                cl_fields[0].offset,
                _span(cl_fields)[1],
                f"Content-Length values {', '.join(map(str, distinct))} differ ({_quote_lines(cl_fields)}): the body "
                f"length of this {kind} is ambiguous, an unrecoverable error (RFC 9112 §6.3 item 5) and a classic "
                "request smuggling signal.",
                _with_lines({"values": distinct}, cl_fields),
                frames=_frames(cl_fields),
            )
        )
    elif len(values) > 1 and not invalid:
        issues.append(
            Issue(
                codes.CL_DUPLICATE,
                cl_fields[0].offset,
                _span(cl_fields)[1],
                f"Content-Length {distinct[0]} is sent {times(len(values))} ({_quote_lines(cl_fields)}): RFC 9112 §6.3 "
                "item 5 lets a recipient accept identical values, but nginx and llhttp reject a repeated "
                "Content-Length.",
                _with_lines({"values": [v for _, v in values]}, cl_fields),
                frames=_frames(cl_fields),
            )
        )
    if zeros:
        f, e = zeros[0]
        issues.append(
            Issue(
                codes.CL_LEADING_ZEROS,
                f.offset,
                len(f.raw),
                f"Content-Length {show(e)} in {show(f.raw)} has leading zeros: legal (1*DIGIT, RFC 9110 §8.6) but "
                "unusual; parsers with a strict 0|[1-9][0-9]* pattern (mitmproxy) reject it.",
                _with_lines({"value": e}, cl_fields),
                frames=(f.frame,),
            )
        )
    if invalid:
        return ClInvalid(invalid[0][2]), issues
    if len(distinct) > 1:
        return ClInvalid("differing values " + ", ".join(map(str, distinct))), issues
    return ClValid(distinct[0]), issues


def body_framing(
    head: HeaderFraming, *, is_request: bool, status: int = 0, request_method: bytes | None = None
) -> BodyFraming:
    """RFC 9112 §6.3, "Message Body Length", rule by rule. ``request_method`` None: the request is unknown."""
    if not is_request:
        # 1. "Any response to a HEAD request and any response with a 1xx (Informational), 204 (No Content), or
        #    304 (Not Modified) status code is always terminated by the first empty line after the header
        #    fields, regardless of the header fields present in the message, and thus cannot contain a message
        #    body or trailer section."
        if status == 101:
            # RFC 9110 §15.2.2: the server switches protocols "immediately after the empty line that terminates
            # the 101 (Switching Protocols) response".
            return Tunnel()
        if request_method == b"HEAD" or 100 <= status < 200 or status in (204, 304):
            return NoBody()
        # 2. "Any 2xx (Successful) response to a CONNECT request implies that the connection will become a
        #    tunnel immediately after the empty line that concludes the header fields."
        if request_method == b"CONNECT" and 200 <= status < 300:
            return Tunnel()
    # 3. "If a message is received with both a Transfer-Encoding and a Content-Length header field, the
    #    Transfer-Encoding overrides the Content-Length." (the fault itself is http.te-cl.conflict)
    if head.has_te:
        # 4. "If a Transfer-Encoding header field is present and the chunked transfer coding is the final
        #    encoding, the message body length is determined by reading and decoding the chunked data until the
        #    transfer coding indicates the data is complete."
        if head.chunked_final:
            return Chunked()
        #    "If a Transfer-Encoding header field is present in a response and the chunked transfer coding is
        #    not the final encoding, the message body length is determined by reading the connection until it is
        #    closed by the server."
        if not is_request:
            return UntilClose()
        #    "If a Transfer-Encoding header field is present in a request and the chunked transfer coding is not
        #    the final encoding, the message body length cannot be determined reliably; the server MUST respond
        #    with the 400 (Bad Request) status code and then close the connection."
        return Unframed("request Transfer-Encoding does not end with chunked")
    # 5. "If a message is received without Transfer-Encoding and with an invalid Content-Length header field,
    #    then the message framing is invalid and the recipient MUST treat it as an unrecoverable error, unless
    #    the field value can be successfully parsed as a comma-separated list ..., all values in the list are
    #    valid, and all values in the list are the same" (identical values arrive here as ClValid).
    if isinstance(head.cl, ClInvalid):
        return Unframed("invalid Content-Length: " + head.cl.reason)
    # 6. "If a valid Content-Length header field is present without Transfer-Encoding, its decimal value defines
    #    the expected message body length in octets."
    if isinstance(head.cl, ClValid):
        return ContentLength(head.cl.length)
    # 7. "If this is a request message and none of the above are true, then the message body length is zero
    #    (no message body is present)."
    if is_request:
        return NoBody()
    # 8. "Otherwise, this is a response message without a declared message body length, so the message body
    #    length is determined by the number of octets received prior to the server closing the connection."
    return UntilClose()
