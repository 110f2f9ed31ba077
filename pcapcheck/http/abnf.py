"""The HTTP/1.1 grammar pcapcheck checks against, as byte regexes, each beside the ABNF it implements.

Everything works on ``bytes``: a header value is never decoded before it is compared, so non-ASCII that a
Unicode-aware ``lower()`` would fold to ASCII (U+212A KELVIN SIGN -> "k") can never pass for a coding name.
Regexes are meant for ``fullmatch`` on one line with its line terminator removed.
"""

from __future__ import annotations

import re

# RFC 9110 §5.6.2
#   token = 1*tchar
#   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
TCHAR_CLASS = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]"
_TCHAR = TCHAR_CLASS
_TOKEN = _TCHAR + rb"+"
TOKEN = re.compile(_TOKEN)
TCHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

# RFC 9110 §5.6.3
#   OWS = *( SP / HTAB )      BWS = OWS
OWS = b" \t"

# RFC 9110 §5.6.4
#   quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
#   qdtext        = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
#   quoted-pair   = "\" ( HTAB / SP / VCHAR / obs-text )
_QUOTED_STRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'

# RFC 9112 §2.3
#   HTTP-version = HTTP-name "/" DIGIT "." DIGIT ; HTTP-name = %s"HTTP"  (only major version 1 here)
_HTTP1_VERSION = rb"HTTP/1\.[0-9]"

# RFC 9112 §3
#   request-line   = method SP request-target SP HTTP-version
#   method         = token
#   request-target: no whitespace allowed (§3.2: "A recipient ... MUST NOT ... whitespace")
REQUEST_LINE = re.compile(
    rb"(?P<method>" + _TOKEN + rb") (?P<target>[^\x00-\x20\x7f]+) (?P<version>" + _HTTP1_VERSION + rb")"
)

# RFC 9112 §4
#   status-line   = HTTP-version SP status-code SP [ reason-phrase ]
#   status-code   = 3DIGIT
#   reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
# The SP after the code is optional here: h11, curl and llhttp accept "HTTP/1.1 200" without it.
STATUS_LINE = re.compile(
    rb"(?P<version>" + _HTTP1_VERSION + rb") (?P<status>[0-9]{3})(?: (?P<reason>[\t\x20-\x7e\x80-\xff]*))?"
)
RESPONSE_PREFIX = b"HTTP/1."
# Enough of a status line to accept it as a message start while resynchronising.
STATUS_LINE_START = re.compile(_HTTP1_VERSION + rb" [0-9]{3}[ \r\n]")

# RFC 9112 §5
#   field-line = field-name ":" OWS field-value OWS
#   field-name = token (RFC 9110 §5.1)
FIELD_NAME = re.compile(_TOKEN)
# RFC 9110 §5.5
#   field-value = *field-content ; field-vchar = VCHAR / obs-text ; SP and HTAB allowed inside
#   "Field values containing CR, LF, or NUL characters are invalid and dangerous"; other CTLs are not field-vchar.
FIELD_VALUE_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# RFC 9110 §8.6
#   Content-Length = 1*DIGIT
CONTENT_LENGTH = re.compile(rb"[0-9]+")
MAX_CONTENT_LENGTH = (1 << 63) - 1  # larger values overflow every peer's off_t / int64

# RFC 9110 §10.1.4 (the shared grammar of TE and Transfer-Encoding)
#   transfer-coding    = token *( OWS ";" OWS transfer-parameter )
#   transfer-parameter = token BWS "=" BWS ( token / quoted-string )
TRANSFER_CODING = re.compile(
    rb"(?P<name>"
    + _TOKEN
    + rb")(?P<params>(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED_STRING
    + rb"))*)"
)

# RFC 9112 §7.1
#   chunk-size = 1*HEXDIG
HEXDIG = re.compile(rb"[0-9A-Fa-f]+")
MAX_CHUNK_SIZE_DIGITS = 16  # 64-bit; curl's CHUNK_MAXNUM_LEN, Balsa's overflow check
MAX_CHUNK_SIZE = (1 << 63) - 1
# RFC 9112 §7.1.1
#   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
#   chunk-ext-name = token ; chunk-ext-val = token / quoted-string
CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED_STRING + rb"))?)*"
)

# RFC 9112 §6.1 and §7: the registered transfer codings (IANA "HTTP Transfer Coding Registry").
# "identity" is reserved there ("was used in older versions of this specification"), not a coding.
KNOWN_TRANSFER_CODINGS = frozenset({b"chunked", b"compress", b"deflate", b"gzip", b"x-compress", b"x-gzip"})

# Methods accepted as a message start in the middle of a line while resynchronising (RFC 9110 §9 + PATCH).
KNOWN_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH")
MAX_METHOD_LENGTH = 32  # longer "methods" in the first bytes of a stream are taken as not HTTP


_TARGET_BAD = re.compile(rb"[\x00-\x20\x7f]")


def is_token(value: bytes) -> bool:
    return TOKEN.fullmatch(value) is not None


def request_line_prefix_ok(prefix: bytes) -> bool:
    """Could ``prefix`` (bytes up to, not including, the first LF) still become a request-line?

    Lets detection decide "not HTTP" from the first few bytes of a stream (a TLS record starts 0x16 0x03)
    without waiting for a line end that a binary protocol may never send.
    """
    n = len(prefix)
    i = 0
    while i < n and prefix[i] in TCHARS:
        i += 1
    if i == n:
        return n <= MAX_METHOD_LENGTH
    if i == 0 or i > MAX_METHOD_LENGTH or prefix[i] != 0x20:
        return False
    sp = prefix.find(b" ", i + 1)
    target = prefix[i + 1 : sp if sp >= 0 else n]
    if _TARGET_BAD.search(target):
        return False
    if sp < 0:
        return True
    rest = prefix[sp + 1 :]
    if len(rest) <= 7:
        return RESPONSE_PREFIX[: len(rest)] == rest
    if rest[:7] != RESPONSE_PREFIX or not rest[7:8].isdigit():
        return False
    return rest[8:] in (b"", b"\r")


def response_prefix_ok(prefix: bytes) -> bool:
    """Could ``prefix`` still become a status-line (it starts with, or is a prefix of, ``HTTP/1.``)?"""
    head = prefix[:7]
    return RESPONSE_PREFIX[: len(head)] == head
