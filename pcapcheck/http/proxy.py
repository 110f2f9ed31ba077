"""Recognise error responses that a proxy generated itself (Envoy, nginx), and what upstream failure they name.

Envoy's local replies say why the upstream stream failed ("... reset reason: protocol error"), which maps
onto its access-log response flags; nginx's error pages do not (the reason is only in its error log).
See ../shared/INCIDENTS.md incidents 1-3 and REFERENCE.md §5.2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pcapcheck.http.issues import show
from pcapcheck.http.parser import HeaderField

_ENVOY_RESET = re.compile(
    rb"upstream connect error or disconnect/reset before headers\.(?P<retried> retried and the latest)?"
    rb" reset reason: (?P<reason>[^,\r\n]*)(?:, transport failure reason: (?P<transport>[^\r\n]*))?"
)
_ENVOY_OTHER = (
    (b"no healthy upstream", "no healthy upstream", "UH", "no healthy endpoint in the upstream cluster"),
    (b"upstream request timeout", "upstream request timeout", "UT", "the upstream did not answer in time"),
)
# Envoy's StreamResetReason strings -> (response flag, what it means here)
_ENVOY_REASONS: dict[str, tuple[str, str]] = {
    "protocol error": (
        "UPE",
        "Envoy's HTTP codec rejected the upstream's response as malformed (look for http.te.*, http.cl.*, "
        "http.chunk.* or http.header.* findings on the upstream conversation)",
    ),
    "connection termination": ("UC", "the upstream closed or reset the connection before the response headers"),
    "connection failure": ("UF", "Envoy could not connect to the upstream (refused, timed out or TLS failure)"),
    "remote connection failure": ("UF", "Envoy could not connect to the upstream (refused or timed out)"),
    "local connection failure": ("UF", "Envoy failed to open the upstream connection locally"),
    "connection timeout": ("UF", "connecting to the upstream timed out"),
    "overflow": ("UO", "an upstream circuit breaker overflowed"),
    "remote reset": ("UR", "the upstream reset the stream"),
    "remote refused stream reset": ("UR", "the upstream refused the stream"),
    "local reset": ("LR", "Envoy reset the stream itself"),
}
_NGINX_PAGE = re.compile(rb"<center>nginx(?:/[0-9.]+)?</center>")
_TITLE = re.compile(rb"<title>([^<]{0,200})</title>")
_NGINX_MEANING = {
    500: "nginx failed internally",
    502: "nginx got no valid response from the upstream: connection refused, reset or closed early, or an invalid "
    "response ('upstream sent ...' in nginx's error log)",
    503: "no live upstream, or a limit_req/limit_conn rejection",
    504: "the upstream did not answer within proxy_read_timeout",
}


@dataclass(frozen=True, slots=True)
class ProxyError:
    proxy: str  # "envoy" | "nginx"
    status: int
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


def _server(headers: Sequence[HeaderField]) -> bytes:
    for h in headers:
        if h.lname == b"server":
            return h.value
    return b""


STATUSES = frozenset({500, 502, 503, 504})  # the only statuses ``recognize`` looks at


def recognize(status: int, headers: Sequence[HeaderField], body: bytes) -> ProxyError | None:
    """``body``: the first bytes of the decoded body (the excerpt is enough: these pages are short)."""
    if status not in STATUSES:
        return None
    server = _server(headers)
    envoy_server = b"envoy" in server.lower()
    m = _ENVOY_RESET.search(body)
    if m is not None:
        reason = m["reason"].decode("latin-1").strip()
        flag, meaning = _ENVOY_REASONS.get(reason, ("", "see Envoy's StreamResetReason"))
        transport = m["transport"].decode("latin-1").strip() if m["transport"] else ""
        flag_text = f" (response flag {flag} likely)" if flag else ""
        server_text = f", server: {server.decode('latin-1')}" if server else ""
        return ProxyError(
            "envoy",
            status,
            f"Envoy generated this {status} itself (body {show(m.group(0), 120)}{server_text}): upstream failure "
            f"'{reason}'{flag_text} - {meaning}.",
            {
                "proxy": "envoy",
                "status": status,
                "upstream_failure": reason,
                "transport_failure": transport,
                "retried": m["retried"] is not None,
                "likely_flag": flag,
                "server": server,
                "confidence": "high" if envoy_server else "medium",
            },
        )
    for marker, failure, flag, meaning in _ENVOY_OTHER:
        if body.strip() == marker or (envoy_server and marker in body):
            return ProxyError(
                "envoy",
                status,
                f"Envoy generated this {status} itself (body {show(marker)}): {meaning} (response flag {flag} likely).",
                {
                    "proxy": "envoy",
                    "status": status,
                    "upstream_failure": failure,
                    "transport_failure": "",
                    "retried": False,
                    "likely_flag": flag,
                    "server": server,
                    "confidence": "high" if envoy_server else "medium",
                },
            )
    page = _NGINX_PAGE.search(body)
    if page is not None:
        t = _TITLE.search(body)
        title = t.group(1) if t else b""
        meaning = _NGINX_MEANING.get(status, "")
        return ProxyError(
            "nginx",
            status,
            f"This {status} is an nginx error page ({show(title or page.group(0))}): {meaning}; the page does not "
            "say which upstream failure it was, nginx's error log does.",
            {
                "proxy": "nginx",
                "status": status,
                "upstream_failure": "",
                "title": title,
                "server": server,
                "confidence": "high" if b"nginx" in server.lower() else "medium",
            },
        )
    return None
