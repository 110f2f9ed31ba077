"""proto.plaintext-to-tls and proto.tls-to-plaintext (pcapcheck.analyzers.mismatch), INCIDENTS.md 3."""

from __future__ import annotations

import pytest

from fixtures.builder import TcpConversation
from pcapcheck.analyzers import mismatch
from pcapcheck.findings import Severity
from tests.test_rst import analyze, established

GET = b"GET /get HTTP/1.1\r\nHost: httpbin\r\nUser-Agent: curl/8\r\n\r\n"
CLIENT_HELLO = bytes.fromhex("160301020001") + bytes(40)
SERVER_HELLO = bytes.fromhex("160303007a02") + bytes(40)
ALERT_PROTOCOL_VERSION = bytes.fromhex("15030300020246")


def codes(result) -> list[str]:
    return [f.code for f in result.findings if f.code.startswith("proto.")]


def only(result, code: str):
    found = [f for f in result.findings if f.code == code]
    assert len(found) == 1, [f.code for f in result.findings]
    return found[0]


# -- plaintext HTTP to a TLS listener -------------------------------------------------------------------


def test_incident3_http_to_tls_listener_closed_without_alert() -> None:
    """Envoy/BoringSSL: no alert, the server just closes after the request (any port: 15006 here)."""
    conv = established(server=("10.0.0.9", 15006))
    req = conv.send("c2s", GET)[0]
    conv.ack("s2c")
    fin = conv.fin("s2c")
    conv.fin("c2s")
    conv.ack("s2c")
    f = only(analyze(conv), "proto.plaintext-to-tls")
    assert f.severity == Severity.ERROR
    assert f.message.startswith(
        "the client sent an HTTP request (`GET /get HTTP/1.1`) on a connection whose server expects TLS (it closed "
        "the connection right away without sending a byte): protocol mismatch")
    assert f.frames == (req.frame, fin.frame)
    assert f.detail["server_answer"] == "closed" and f.detail["request_line"] == "GET /get HTTP/1.1"


def test_http_to_tls_answered_with_alert() -> None:
    conv = established(server=("10.0.0.9", 8443))
    conv.send("c2s", GET)
    alert = conv.send("s2c", ALERT_PROTOCOL_VERSION)[0]
    conv.fin("s2c")
    f = only(analyze(conv), "proto.plaintext-to-tls")
    assert "TLS fatal protocol_version alert" in f.message
    assert f.detail["alert_description"] == "protocol_version" and alert.frame in f.frames


def test_http_to_tls_reset() -> None:
    conv = established(server=("10.0.0.9", 9000))
    conv.send("c2s", b"POST /api HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    conv.rst("s2c")
    f = only(analyze(conv), "proto.plaintext-to-tls")
    assert f.detail["server_answer"] == "reset" and "`POST /api HTTP/1.1`" in f.message


def test_http_to_silent_tls_port() -> None:
    conv = established(server=("10.0.0.9", 443))
    conv.send("c2s", GET)
    conv.ack("s2c")
    f = only(analyze(conv, capture_ended=True), "proto.plaintext-to-tls")
    assert f.detail["server_answer"] == "silent-on-tls-port"


def test_nginx_plain_http_to_https_port() -> None:
    conv = established(server=("10.0.0.9", 443))
    conv.send("c2s", GET)
    conv.send("s2c", b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n<html><center>The plain HTTP request was sent "
                     b"to HTTPS port</center></html>")
    f = only(analyze(conv), "proto.plaintext-to-tls")
    assert f.detail["server_answer"] == "nginx-497"


@pytest.mark.parametrize("port", [443, 80])
def test_normal_http_does_not_trigger(port: int) -> None:
    conv = established(server=("10.0.0.9", port))
    conv.send("c2s", GET)
    conv.send("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    conv.close()
    assert codes(analyze(conv)) == []


def test_normal_tls_on_443_does_not_trigger() -> None:
    conv = established(server=("10.0.0.9", 443))
    conv.send("c2s", CLIENT_HELLO)
    conv.send("s2c", SERVER_HELLO)
    conv.close()
    assert codes(analyze(conv)) == []


def test_client_giving_up_is_not_a_mismatch() -> None:
    """The server stays silent on a plaintext port and the client closes first: a slow server, not TLS."""
    conv = established(server=("10.0.0.9", 8080))
    conv.send("c2s", GET)
    conv.fin("c2s")
    conv.fin("s2c")
    assert codes(analyze(conv)) == []


def test_upload_then_kernel_reset_is_not_a_mismatch() -> None:
    """Incident 2's shape: a long upload ended by a passive RST is no TLS rejection."""
    conv = established(server=("10.0.0.2", 9000))
    conv.send("c2s", b"POST /upload HTTP/1.1\r\nContent-Length: 300000000\r\n\r\n")
    for _ in range(6):
        last = conv.send("c2s", b"x" * 4000, segment_size=1448)[-1]
        conv.ack("s2c")
    conv.kernel_reset("s2c", answering=last)
    assert codes(analyze(conv)) == []


def test_second_request_reset_links_to_the_mismatch() -> None:
    conv = established(server=("10.0.0.2", 443))
    conv.send("c2s", GET)
    conv.ack("s2c")
    conv.fin("s2c")
    conv.ack("c2s")
    again = conv.send("c2s", GET)[0]
    rst = conv.kernel_reset("s2c", answering=again)
    r = analyze(conv)
    only(r, "proto.plaintext-to-tls")
    f = r.rst(rst.frame)
    assert f.detail["origin"] == "closed-socket"
    assert f.detail["related"][0]["code"] == "proto.plaintext-to-tls"
    assert "protocol mismatch" in f.message


def test_slow_server_closing_late_is_not_a_mismatch() -> None:
    conv = established(server=("10.0.0.9", 8080))
    conv.send("c2s", GET)
    conv.ack("s2c")
    conv.wait(30_000_000_000)
    conv.fin("s2c")
    assert codes(analyze(conv)) == []


def test_one_way_capture_says_nothing() -> None:
    f = mismatch.Facts(GET, b"", 443, 4, None, None, None, None, 0)
    assert mismatch.detect(0, f) == []


def test_not_a_request_line() -> None:
    f = mismatch.Facts(b"GETTING STARTED\r\n", b"", 443, 4, None, 7, "fin", None, 3)
    assert mismatch.detect(0, f) == []
    assert mismatch.request_line(b"GET / HTTP/1.0\r\n") == b"GET / HTTP/1.0"
    assert mismatch.request_line(b"PRI * HTTP/2.0\r\n") is None


# -- TLS to a plaintext listener --------------------------------------------------------------------------


def test_tls_to_plaintext_http_400() -> None:
    conv = established(server=("10.0.0.9", 8080))
    hello = conv.send("c2s", CLIENT_HELLO)[0]
    resp = conv.send("s2c", b"HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\n\r\nBad Request")[0]
    conv.fin("s2c")
    f = only(analyze(conv), "proto.tls-to-plaintext")
    assert f.severity == Severity.ERROR
    assert "`HTTP/1.1 400 Bad Request`" in f.message and "TLS ClientHello" in f.message
    assert f.frames == (hello.frame, resp.frame)


def test_tls_to_ssh_banner() -> None:
    conv = established(server=("10.0.0.9", 22))
    conv.send("s2c", b"SSH-2.0-OpenSSH_9.6\r\n")
    conv.send("c2s", CLIENT_HELLO)
    conv.send("s2c", b"Invalid SSH identification string.\r\n")
    f = only(analyze(conv), "proto.tls-to-plaintext")
    assert f.detail["server_answer"] == "plaintext" and "SSH-2.0-OpenSSH_9.6" in f.message


def test_tls_to_plaintext_port_closed() -> None:
    conv = established(server=("10.0.0.9", 8080))
    conv.send("c2s", CLIENT_HELLO)
    conv.fin("s2c")
    f = only(analyze(conv), "proto.tls-to-plaintext")
    assert f.detail["server_answer"] == "closed"


def test_tls_server_closing_after_client_hello_is_not_a_mismatch() -> None:
    conv = established(server=("10.0.0.9", 443))
    conv.send("c2s", CLIENT_HELLO)
    conv.fin("s2c")
    assert codes(analyze(conv)) == []


def test_midstream_tls_data_does_not_trigger() -> None:
    conv = TcpConversation(server=("10.0.0.9", 8080))
    conv.c.nxt = conv.c.rcv_nxt = 1001
    conv.s.nxt = conv.s.rcv_nxt = 5001
    conv.send("c2s", bytes.fromhex("170303001000") + bytes(16))
    conv.send("s2c", bytes.fromhex("170303001000") + bytes(16))
    assert codes(analyze(conv)) == []


@pytest.mark.slow
@pytest.mark.parametrize("capture", [
    "zeek/tcp/miss_end_data.pcap",  # the server's data was not captured: its FIN comes at a later seq
    "suricata-verify/tls/tls-subjectaltname/input.pcap",  # real TLS on 443
    "pcapplusplus/example2.pcap",
])
def test_corpus_no_mismatch(corpus, capture: str) -> None:
    from pcapcheck.config import Options
    from pcapcheck.pipeline import Analysis
    from tests.test_rst import _Sink

    sink = _Sink()
    Analysis(Options(), sink).run([str(corpus / capture)])
    assert [f.code for r in sink.results for f in r.findings if f.code.startswith("proto.")] == []
