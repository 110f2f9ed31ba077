"""Protocol mismatch: the client spoke the wrong protocol for the server (INCIDENTS.md 3, REFERENCE.md 4.7).

* ``proto.plaintext-to-tls``: the client's first bytes are an HTTP/1.x request line and the server
  answers like a TLS endpoint: a TLS alert record, nginx's "plain HTTP request was sent to HTTPS
  port" page, or it closes/resets without sending a byte (BoringSSL/Envoy: ``SSL_R_HTTP_REQUEST``,
  no alert), or it stays silent on a well-known TLS port.
* ``proto.tls-to-plaintext``: the client's first bytes are a TLS handshake record and the server
  answers with ``HTTP/1.x`` (Envoy/nginx 400), other plain text, or closes without a byte (not on a
  TLS port: a TLS server that closes after a ClientHello is rejecting the handshake, not the protocol).

Any port: the mesh-internal ports (15006, 15443 ...) are as likely as 443. Pure function of the
conversation's first bytes and how each side ended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pcapcheck.findings import Finding, Severity
from pcapcheck.frozen import fast_frozen

TLS_PORTS: Final = frozenset({443, 8443, 15443, 9443, 993, 995, 465, 636})
METHODS: Final = (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
# RFC 9112 3: request-line = method SP request-target SP HTTP-version; the version may be cut by the head.
_REQUEST_LINE: Final = re.compile(rb"(" + b"|".join(METHODS) + rb") ([!-~]+) (HTTP/1\.[0-9])")
PLAINTEXT_HTTP_PORTS: Final = frozenset({80, 8080})
_NGINX_497: Final = b"The plain HTTP request was sent to HTTPS port"
# TLS alert descriptions (RFC 8446 6.2 / RFC 5246 7.2), the ones a server sends for garbage input.
ALERTS: Final = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
          40: "handshake_failure", 42: "bad_certificate", 47: "illegal_parameter", 50: "decode_error",
          70: "protocol_version", 80: "internal_error", 112: "unrecognized_name"}


@fast_frozen
@dataclass(frozen=True, slots=True)
class Facts:
    client_head: bytes
    server_head: bytes
    server_port: int
    client_data_frame: int | None  # first client frame with payload
    server_data_frame: int | None
    server_close_frame: int | None  # first FIN or RST from the server
    server_close: str | None  # "fin" | "rst"
    client_close_frame: int | None
    server_packets: int  # packets the server sent (0: one-way capture, nothing can be said)
    server_sent_nothing: bool | None = None  # its close carried the sequence number right after its SYN-ACK
    close_delay_ns: int | None = None  # from the client's first data to the server's close
    client_segments_before_close: int | None = None
    server_close_origin: str | None = None  # tcp.rst origin when the server's close was a RST


def is_tls_record(head: bytes, content_type: int) -> bool:
    return len(head) >= 3 and head[0] == content_type and head[1] == 3 and head[2] <= 4


def request_line(head: bytes) -> bytes | None:
    m = _REQUEST_LINE.match(head)
    return m.group(0) if m else None


def _first_line(head: bytes, limit: int = 80) -> str:
    line = head.split(b"\n", 1)[0].rstrip(b"\r")[:limit]
    return line.decode("latin-1").encode("unicode_escape").decode("ascii")


def _printable(head: bytes) -> bool:
    sample = head[:16]
    return bool(sample) and all(32 <= b < 127 or b in (9, 10, 13) for b in sample)


# "Right away": a TLS stack rejects a non-TLS first record immediately; a server that answers nothing for
# longer than this is slow or dead, not speaking another protocol.
RIGHT_AWAY_NS: Final = 3 * 10**9
# ... and after the first few client segments (a request head), not after a long upload.
RIGHT_AWAY_SEGMENTS: Final = 4
# A server RST of these origins is not the server's TLS stack rejecting the bytes.
NOT_A_REJECTION: Final = frozenset({"no-socket", "closed-socket", "refused", "injected", "rejected"})


def _server_closed_first(f: Facts) -> bool:
    """The server closed (FIN/RST) after the client's first bytes, before the client closed, promptly, and
    without having sent a byte in sequence space (bytes the capture missed would show as a later close seq)."""
    if f.server_close_frame is None or f.client_data_frame is None:
        return False
    if f.server_close_frame < f.client_data_frame:
        return False
    if f.server_sent_nothing is False:
        return False
    if f.close_delay_ns is not None and f.close_delay_ns > RIGHT_AWAY_NS:
        return False
    if f.client_segments_before_close is not None and f.client_segments_before_close > RIGHT_AWAY_SEGMENTS:
        return False
    if f.server_close == "rst" and f.server_close_origin in NOT_A_REJECTION:
        return False
    return f.client_close_frame is None or f.server_close_frame < f.client_close_frame


def detect(cid: int, f: Facts) -> list[Finding]:
    if not f.client_head or f.server_packets == 0:
        return []
    line = request_line(f.client_head)
    if line is not None:
        return _plaintext_to_tls(cid, f, line)
    if is_tls_record(f.client_head, 0x16) and (len(f.client_head) < 6 or f.client_head[5] == 1):
        return _tls_to_plaintext(cid, f)
    return []


def _plaintext_to_tls(cid: int, f: Facts, line: bytes) -> list[Finding]:
    sh = f.server_head
    req = line.decode("latin-1")
    frames: list[int] = [x for x in (f.client_data_frame,) if x is not None]
    detail: dict = {"request_line": req, "server_port": f.server_port}
    if is_tls_record(sh, 0x15):
        alert = ""
        if len(sh) >= 7:
            level, desc = sh[5], sh[6]
            alert = f" {'fatal' if level == 2 else 'warning'} {ALERTS.get(desc, desc)}"
            detail.update(alert_level=level, alert_description=ALERTS.get(desc, desc))
        answer, how = "tls-alert", f"it answered with a TLS{alert} alert"
        frames.append(f.server_data_frame or 0)
    elif is_tls_record(sh, 0x16) or is_tls_record(sh, 0x17):
        answer, how = "tls-record", "it answered with a TLS record"
        frames.append(f.server_data_frame or 0)
    elif _NGINX_497 in sh:
        answer, how = "nginx-497", "it answered `400 The plain HTTP request was sent to HTTPS port` (nginx)"
        frames.append(f.server_data_frame or 0)
    elif not sh and _server_closed_first(f):
        answer = "closed" if f.server_close == "fin" else "reset"
        how = f"it {'closed' if answer == 'closed' else 'reset'} the connection right away without sending a byte"
        frames.append(f.server_close_frame or 0)
    elif not sh and f.server_port in TLS_PORTS:
        answer, how = "silent-on-tls-port", f"port {f.server_port} is a TLS port and the server never sent a byte"
    else:
        return []
    detail["server_answer"] = answer
    detail["server_first_bytes"] = sh[:16]
    msg = (f"the client sent an HTTP request (`{req}`) on a connection whose server expects TLS ({how}): "
           "protocol mismatch")
    sev = Severity.ERROR
    if answer in ("closed", "reset"):
        msg += " (BoringSSL/Envoy close without an alert: `OPENSSL_internal:HTTP_REQUEST`)"
        if f.server_port in PLAINTEXT_HTTP_PORTS:
            # On a port that normally speaks plain HTTP, a server (or a middlebox) refusing the request is
            # as likely as a TLS listener: say so and lower the severity.
            sev = Severity.WARNING
            msg += (f"; port {f.server_port} normally serves plain HTTP, so a server or middlebox that refused "
                    "the request without answering is as likely")
    return [Finding("proto.plaintext-to-tls", sev, msg, conversation=cid, direction="c2s",
                    frames=tuple(x for x in frames if x), detail=detail,
                    rule="RFC 8446 5.1 (a TLS server expects a handshake record); RFC 9112 3 (request line)")]


def _tls_to_plaintext(cid: int, f: Facts) -> list[Finding]:
    sh = f.server_head
    frames: list[int] = [x for x in (f.client_data_frame,) if x is not None]
    detail: dict = {"client_first_bytes": f.client_head[:6], "server_port": f.server_port}
    if is_tls_record(sh, 0x15) or is_tls_record(sh, 0x16) or is_tls_record(sh, 0x17):
        return []
    if sh.startswith(b"HTTP/1.") or sh.startswith(b"HTTP/2"):
        answer, how = "http-response", f"it answered `{_first_line(sh)}`"
        frames.append(f.server_data_frame or 0)
    elif _printable(sh):
        answer, how = "plaintext", f"it answered in plain text: `{_first_line(sh)}`"
        frames.append(f.server_data_frame or 0)
    elif not sh and _server_closed_first(f) and f.server_port not in TLS_PORTS:
        answer = "closed" if f.server_close == "fin" else "reset"
        how = f"it {'closed' if answer == 'closed' else 'reset'} the connection without sending a byte"
        frames.append(f.server_close_frame or 0)
    else:
        return []
    detail["server_answer"] = answer
    detail["server_first_bytes"] = sh[:16]
    msg = (f"the client sent a TLS ClientHello on a connection whose server speaks plaintext ({how}): protocol "
           "mismatch (the client's TLS library reports WRONG_VERSION_NUMBER)")
    return [Finding("proto.tls-to-plaintext", Severity.ERROR, msg, conversation=cid, direction="c2s",
                    frames=tuple(x for x in frames if x), detail=detail,
                    rule="RFC 8446 5.1 (TLS record); RFC 9112 3 (a plaintext HTTP server expects a request line)")]
