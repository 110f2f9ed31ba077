"""How real HTTP implementations treat each malformation: data for ``detail.peers`` of every HTTP finding.

Source: ../shared/REFERENCE.md §5.2-5.3 (the malformation matrix; "[E]" cells were executed: h11 0.16.0,
node v20 / llhttp 9.3.1, curl 7.88.1). Envoy and nginx cells come from reading their source. A cell not in
the matrix says "not verified" instead of guessing. llhttp cells name the server side (requests) or the
client side (responses) as node uses it. Keyed by finding code, then ``request``/``response`` where the two
sides differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

PEER_NAMES = ("envoy", "nginx", "h11", "llhttp", "curl")

_NA_CURL = "n/a: curl sends requests, it does not parse them"
_CAPTURE = "n/a: capture loss, not a protocol fault"


def _p(envoy: str, nginx: str, h11: str, llhttp: str, curl: str) -> dict[str, str]:
    return {"envoy": envoy, "nginx": nginx, "h11": h11, "llhttp": llhttp, "curl": curl}


_TABLE: dict[str, dict[str, dict[str, str]]] = {
    "http.te.duplicate": {
        "request": _p(
            "rejects: 501 (http1.invalid_transfer_encoding, lines joined to 'chunked,chunked')",
            "rejects: 400 client sent duplicate header line",
            "rejects: multiple Transfer-Encoding headers (501)",
            "rejects: 400 HPE_INVALID_TRANSFER_ENCODING",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: 502, flag UPE, reset reason 'protocol error' (older: 503 UC)",
            "rejects: 502 upstream sent duplicate header line",
            "rejects: multiple Transfer-Encoding headers",
            "accepts (client): lines combined, chunked is last",
            "accepts (current curl: ignoring duplicate 'chunked' decoder)",
        ),
    },
    "http.te.chunked-twice": {
        "request": _p(
            "rejects: 501 unsupported transfer encoding",
            "rejects: 501 client sent unknown Transfer-Encoding",
            "rejects: Only Transfer-Encoding: chunked is supported (501)",
            "rejects: 400 HPE_INVALID_TRANSFER_ENCODING",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: 502, flag UPE, reset reason 'protocol error'",
            "rejects: 502 upstream sent unknown Transfer-Encoding",
            "rejects: Only Transfer-Encoding: chunked is supported",
            "accepts (client)",
            "accepts",
        ),
    },
    "http.te.chunked-not-final": {
        "request": _p(
            "rejects: 501 unsupported transfer encoding",
            "rejects: 501 client sent unknown Transfer-Encoding",
            "rejects: Only Transfer-Encoding: chunked is supported (501)",
            "rejects: 400 Request has invalid Transfer-Encoding",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: 502, flag UPE",
            "rejects: 502 upstream sent unknown Transfer-Encoding",
            "rejects: Only Transfer-Encoding: chunked is supported",
            "accepts (client): reads until close",
            "rejects when chunked is present but not last; without chunked reads until close",
        ),
    },
    "http.te.unknown": {
        "request": _p(
            "rejects: 501 unsupported transfer encoding",
            "rejects: 501 client sent unknown Transfer-Encoding",
            "rejects: Only Transfer-Encoding: chunked is supported (501)",
            "rejects: 400 (tested with 'identity')",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: 502, flag UPE",
            "rejects: 502 upstream sent unknown Transfer-Encoding",
            "rejects: Only Transfer-Encoding: chunked is supported",
            "accepts (client; tested with 'identity')",
            "accepts (tested with 'identity')",
        ),
    },
    "http.te.unsupported": {
        "request": _p(
            "rejects: 501 unsupported transfer encoding",
            "rejects: 501 client sent unknown Transfer-Encoding",
            "rejects: Only Transfer-Encoding: chunked is supported (501)",
            "accepts: body passed on without decoding the coding",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: 502, flag UPE",
            "rejects: 502 upstream sent unknown Transfer-Encoding",
            "rejects: Only Transfer-Encoding: chunked is supported",
            "accepts (client): body not decoded",
            "decodes the coding; fails (exit 61) if the body is not really gzip",
        ),
    },
    "http.te.http10": {
        "request": _p(
            "not verified",
            "rejects: 400 (Transfer-Encoding on HTTP/1.0)",
            "not verified",
            "not verified",
            _NA_CURL,
        ),
        "response": _p("not verified", "not verified", "not verified", "not verified", "not verified"),
    },
    "http.te-cl.conflict": {
        "request": _p(
            "rejects: 400 http1.content_length_and_chunked_not_allowed (unless allow_chunked_length)",
            "rejects: 400 client sent Content-Length and Transfer-Encoding headers at the same time",
            "accepts: Content-Length ignored",
            "rejects: 400",
            _NA_CURL,
        ),
        "response": _p(
            "rejects (unless allow_chunked_length, which removes Content-Length)",
            "rejects: 502 upstream sent Content-Length and Transfer-Encoding",
            "accepts: Content-Length ignored",
            "rejects (client): HPE_INVALID_CONTENT_LENGTH",
            "accepts",
        ),
    },
    "http.cl.invalid": {
        "request": _p(
            "rejects: 400 (not verified)",
            "rejects: 400 client sent invalid Content-Length (not verified)",
            "rejects: bad Content-Length (not verified)",
            "rejects: HPE_INVALID_CONTENT_LENGTH (not verified)",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: 502, flag UPE (not verified)",
            "rejects: 502 upstream sent invalid Content-Length (not verified)",
            "rejects: bad Content-Length (not verified)",
            "rejects: HPE_INVALID_CONTENT_LENGTH (not verified)",
            "rejects (not verified)",
        ),
    },
    "http.cl.conflict": {
        "request": _p(
            "rejects (Balsa disallow_multiple_content_length)",
            "rejects: 400 client sent duplicate header line",
            "rejects: conflicting Content-Length headers",
            "rejects: 400",
            _NA_CURL,
        ),
        "response": _p(
            "rejects (Balsa disallow_multiple_content_length)",
            "rejects: 502 upstream sent duplicate header line",
            "rejects: conflicting Content-Length headers",
            "rejects (client)",
            "rejects: exit 18",
        ),
    },
    "http.cl.duplicate": {
        "request": _p(
            "rejects (Balsa disallow_multiple_content_length; not verified)",
            "rejects: 400 client sent duplicate header line (not verified for identical values)",
            "accepts: identical values collapse to one",
            "rejects: HPE_UNEXPECTED_CONTENT_LENGTH (not verified)",
            _NA_CURL,
        ),
        "response": _p(
            "rejects (Balsa disallow_multiple_content_length; not verified)",
            "rejects: 502 upstream sent duplicate header line (not verified for identical values)",
            "accepts: identical values collapse to one",
            "rejects: HPE_UNEXPECTED_CONTENT_LENGTH (not verified)",
            "not verified",
        ),
    },
    "http.cl.leading-zeros": {
        "request": _p("not verified", "accepts (ngx_atoof)", "accepts ([0-9]+)", "accepts (not verified)", _NA_CURL),
        "response": _p(
            "not verified", "accepts (ngx_atoof)", "accepts ([0-9]+)", "accepts (not verified)", "not verified"
        ),
    },
    "http.chunk.size-invalid": {
        "request": _p(
            "rejects (Balsa INVALID_CHUNK_LENGTH)",
            "rejects: 400 client sent invalid chunked body",
            "rejects: illegal chunk header",
            "rejects: 400 HPE_INVALID_CHUNK_SIZE",
            _NA_CURL,
        ),
        "response": _p(
            "rejects (Balsa INVALID_CHUNK_LENGTH): 502 UPE",
            "rejects: 502 upstream sent invalid chunked response",
            "rejects: illegal chunk header",
            "rejects (client): HPE_INVALID_CHUNK_SIZE",
            "rejects: exit 56 (chunk hex-length char not a hex digit)",
        ),
    },
    "http.chunk.size-overflow": {
        "request": _p(
            "rejects (Balsa CHUNK_LENGTH_OVERFLOW)",
            "rejects: 400 (size above NGX_MAX_OFF_T_VALUE)",
            "accepts up to 20 hex digits, then 'incomplete chunked read' at EOF",
            "rejects: 400 Chunk size overflow",
            _NA_CURL,
        ),
        "response": _p(
            "rejects (Balsa CHUNK_LENGTH_OVERFLOW)",
            "rejects: 502 (size above NGX_MAX_OFF_T_VALUE)",
            "accepts up to 20 hex digits, then 'incomplete chunked read' at EOF",
            "rejects (client): Chunk size overflow",
            "rejects: exit 56 (chunk hex-length longer than 16)",
        ),
    },
    "http.chunk.crlf-missing": {
        "request": _p(
            "not verified",
            "rejects: 400 client sent invalid chunked body",
            "rejects: malformed chunk footer",
            "rejects: 400 HPE_STRICT Expected LF after chunk data",
            _NA_CURL,
        ),
        "response": _p(
            "not verified",
            "rejects: 502 upstream sent invalid chunked response",
            "rejects: malformed chunk footer",
            "rejects (client): HPE_STRICT",
            "rejects: exit 56 (Malformed encoding found)",
        ),
    },
    "http.chunk.bare-lf": {
        "request": _p(
            "not verified",
            "accepts (LF accepted after size and data)",
            "rejects (message never completes)",
            "rejects: HPE_CR_EXPECTED (unless lenient OPTIONAL_CR_BEFORE_LF)",
            _NA_CURL,
        ),
        "response": _p(
            "not verified",
            "accepts (LF accepted after size and data)",
            "rejects (message never completes)",
            "rejects (client): HPE_CR_EXPECTED",
            "accepts",
        ),
    },
    "http.chunk.whitespace": {
        "request": _p(
            "not verified",
            "accepts (SP switches to the extension state)",
            "accepts trailing OWS",
            "rejects: 400 (unless lenient SPACES_AFTER_CHUNK_SIZE)",
            _NA_CURL,
        ),
        "response": _p(
            "not verified",
            "accepts (SP switches to the extension state)",
            "accepts trailing OWS",
            "rejects (client) (unless lenient SPACES_AFTER_CHUNK_SIZE)",
            "accepts",
        ),
    },
    "http.chunk.extension": {
        "request": _p("accepts", "accepts", "accepts", "accepts", _NA_CURL),
        "response": _p("accepts", "accepts", "accepts", "accepts", "accepts"),
    },
    "http.chunk.extension-invalid": {
        "request": _p(
            "rejects (Balsa INVALID_CHUNK_EXTENSION; not verified)",
            "not verified",
            "accepts (';.*' tolerated)",
            "rejects invalid extension characters (not verified)",
            _NA_CURL,
        ),
        "response": _p(
            "rejects (Balsa INVALID_CHUNK_EXTENSION; not verified)",
            "not verified",
            "accepts (';.*' tolerated)",
            "rejects invalid extension characters (not verified)",
            "not verified",
        ),
    },
    "http.chunk.truncated": {
        "request": _p(
            "rejects: incomplete body, stream reset",
            "rejects: client prematurely closed connection",
            "rejects: incomplete chunked read",
            "rejects: HPE_INVALID_EOF_STATE",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: incomplete body, stream reset",
            "rejects: upstream prematurely closed connection",
            "rejects: incomplete chunked read",
            "rejects (client): aborted, ECONNRESET",
            "rejects: exit 18 (transfer closed with outstanding read data remaining)",
        ),
    },
    "http.body.truncated": {
        "request": _p(
            "rejects: incomplete body, stream reset (not verified)",
            "rejects: client prematurely closed connection (not verified)",
            "rejects: peer closed connection without sending complete message body",
            "rejects: HPE_INVALID_EOF_STATE (not verified)",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: incomplete body, stream reset (not verified)",
            "rejects: upstream prematurely closed connection (not verified)",
            "rejects: peer closed connection without sending complete message body",
            "rejects (client): aborted (not verified)",
            "rejects: exit 18 (transfer closed with outstanding read data remaining)",
        ),
    },
    "http.head.truncated": {
        "request": _p(
            "rejects: connection closed (not verified)",
            "closes without a response (not verified)",
            "rejects: peer unexpectedly closed",
            "rejects: HPE_INVALID_EOF_STATE (not verified)",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: 503 UC, reset reason 'connection termination' (not verified)",
            "rejects: 502 upstream prematurely closed connection (not verified)",
            "rejects: peer unexpectedly closed",
            "rejects (client): socket hang up (not verified)",
            "rejects: exit 52 or 56 (not verified)",
        ),
    },
    "http.header.space-before-colon": {
        "request": _p(
            "not verified",
            "rejects: 400 client sent invalid header line",
            "rejects: illegal header line",
            "rejects: 400 HPE_INVALID_HEADER_TOKEN",
            _NA_CURL,
        ),
        "response": _p(
            "not verified",
            "rejects: 502 upstream sent invalid header",
            "rejects: illegal header line",
            "rejects (client): HPE_INVALID_HEADER_TOKEN",
            "ignores the header line (a 'Transfer-Encoding :' line then means reading raw until close)",
        ),
    },
    "http.header.obs-fold": {
        "request": _p(
            "not verified",
            "not verified",
            "accepts: unfolds to SP",
            "not verified",
            _NA_CURL,
        ),
        "response": _p("not verified", "not verified", "accepts: unfolds to SP", "not verified", "not verified"),
    },
    "http.header.bare-cr": {
        "request": _p(
            "not verified",
            "not verified",
            "rejects: illegal header line (CR is not field-vchar; not verified)",
            "rejects (unless lenient; not verified)",
            _NA_CURL,
        ),
        "response": _p(
            "not verified",
            "not verified",
            "rejects: illegal header line (CR is not field-vchar; not verified)",
            "rejects (unless lenient; not verified)",
            "not verified",
        ),
    },
    "http.header.bare-lf": {
        "request": _p(
            "not verified",
            "accepts (not verified)",
            "accepts",
            "rejects: HPE_CR_EXPECTED (unless lenient OPTIONAL_CR_BEFORE_LF; not verified)",
            _NA_CURL,
        ),
        "response": _p(
            "not verified",
            "accepts (not verified)",
            "accepts",
            "rejects (client) unless lenient (not verified)",
            "accepts (not verified)",
        ),
    },
    "http.header.invalid": {
        "request": _p(
            "rejects: 400 (not verified)",
            "rejects: 400 client sent invalid header line (bad name chars are ignored by default)",
            "rejects: illegal header line",
            "rejects: 400 HPE_INVALID_HEADER_TOKEN",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: 502 UPE (not verified)",
            "rejects: 502 upstream sent invalid header (not verified)",
            "rejects: illegal header line",
            "rejects (client): HPE_INVALID_HEADER_TOKEN",
            "not verified",
        ),
    },
    "http.unparseable": {
        "request": _p(
            "rejects: 400 (not verified)",
            "rejects: 400 (not verified)",
            "rejects: illegal request line",
            "rejects: 400",
            _NA_CURL,
        ),
        "response": _p(
            "rejects: 502 UPE (not verified)",
            "rejects: 502 upstream sent no valid HTTP/1.0 header (not verified)",
            "rejects: illegal status line",
            "rejects (client): HPE_INVALID_CONSTANT",
            "rejects: exit 1 or 8 (weird server reply; not verified)",
        ),
    },
    "http.proxy-error": {
        "request": _p("n/a", "n/a", "n/a", "n/a", "n/a"),
        "response": _p(
            "generates 'upstream connect error or disconnect/reset before headers. reset reason: ...' "
            "(502 UPE for a malformed upstream response, 503 UC/UF for a reset or failed connection)",
            "generates '<center>nginx</center>' pages (502 invalid/closed upstream, 504 upstream timeout)",
            "n/a",
            "n/a",
            "n/a: shows the proxy's response as it is",
        ),
    },
    "http.incomplete": {
        "request": _p(_CAPTURE, _CAPTURE, _CAPTURE, _CAPTURE, _CAPTURE),
        "response": _p(_CAPTURE, _CAPTURE, _CAPTURE, _CAPTURE, _CAPTURE),
    },
}

PEERS: Mapping[str, Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        code: MappingProxyType({side: MappingProxyType(cells) for side, cells in sides.items()})
        for code, sides in _TABLE.items()
    }
)


def peers_for(code: str, is_request: bool) -> dict[str, str]:
    """The five peer cells for ``code`` on the request or the response side (a fresh, plain dict)."""
    sides = PEERS.get(code)
    if sides is None:
        return {name: "not verified" for name in PEER_NAMES}
    return dict(sides["request" if is_request else "response"])
