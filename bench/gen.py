#!/usr/bin/env python3
"""Deterministic benchmark capture: many interleaved HTTP/1.1 keep-alive conversations.

    python bench/gen.py OUT.pcap --packets 1000000 [--seed 1] [--concurrency 200] [--short | --long] [--stats OUT.json]

The capture is what a tap between clients and a few web servers would record (classic pcap, Ethernet,
IPv4, TCP, microsecond timestamps, valid IP and TCP checksums). About ``--concurrency`` conversations are
open at any time; each one does a full handshake (MSS, SACK-permitted, timestamps, window scale), 1-5
GET/POST/HEAD requests, responses framed by Content-Length or chunked (several chunk-size patterns), and
ends with FIN, or for a few percent with a RST: the client aborting mid-response (RST|ACK, then the
client kernel's RSTs answering the server's data still in flight), the server aborting mid-response, or
the server's kernel answering a request on a connection it forgot (RST without ACK, window 0, IP ID 0).
With ``--short``, every conversation carries one request and a response of at most 4 KB, half of them
closed by the server: many short connections, as health checks and clients without keep-alive make them.
With ``--long`` (and a small ``--concurrency``, such as 40), every conversation carries 1,500-3,000 requests with
responses of at most 4 KB: a proxy and its backends.

Each direction is simulated at the tap: data leaves the sender paced, the receiver ACKs every second
segment (delayed ACK after 40 ms otherwise, or piggybacked), sends an immediate duplicate ACK with SACK
blocks for anything out of order, and the sender retransmits a lost segment after three SACKing ACKs or
after an RTO. About 0.5% of all packets are retransmissions (most losses happen after the tap, so both
copies are captured; some before it, so the capture has a gap); about 0.3% are segments overtaken by the
next one (an out-of-order pair); about 3% of chunked responses are malformed (mostly duplicate
Transfer-Encoding lines) so analyzers have something to report. Senders are paced so that no segment
ever exceeds the receiver's advertised window.

Everything comes from one ``random.Random(seed)`` stream and integer microseconds, so the same arguments
give the same bytes. The file is written as it is produced: memory stays flat whatever ``--packets`` is.
Exactly ``--packets`` frames are written; conversations still open at that point are cut off, as in a
real capture. ``tcp.stream`` numbers in Wireshark equal the generator's conversation count.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

MSS = 1448  # payload per full segment: 1460 - 12 bytes of timestamp option
MASK = 0xFFFFFFFF
EPOCH = 1_700_000_000  # capture start, seconds (2023-11-14)
DELACK_US = 40_000  # Linux TCP_DELACK_MIN
SNAPLEN = 262_144

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1)
_REC = struct.Struct("<IIII")
_IPTCP = struct.Struct("!BBHHHBBHIIHHIIHHH")  # IPv4 header (20) + TCP header without urgent pointer (18)
_TS = struct.Struct("!BBBBII")  # NOP NOP TS(kind 8, len 10) val ecr
_SYN_OPTS = struct.Struct("!BBHBBBBIIBBBB")  # MSS, SACK-perm, TS, NOP, WS (Linux order, 20 bytes)
_EDGES = struct.Struct("!II")

# Segment fates (per data segment of a message)
NORMAL, LOST_AFTER, LOST_BEFORE = 0, 1, 2
# Event kinds of the per-message simulation
DATA, RCV_ACK, RCV_KERNEL_RST, RTO, RETX, RCV_ABORT, SND_KERNEL_RST = range(7)


@dataclass(frozen=True)
class Profile:
    """Rates of everything random; the defaults are the benchmark's."""

    loss: float = 0.008  # per data segment: lost once, retransmitted (about 0.5% of all packets)
    loss_before_tap: float = 0.3  # share of losses the tap never sees (a gap, then the retransmission)
    reorder: float = 0.0045  # per data segment: swapped with the next one (about 0.3% of all packets)
    chunked: float = 0.35  # share of bodied responses sent chunked
    malformed: float = 0.03  # share of chunked responses with a framing fault
    client_abort: float = 0.03  # conversations ending in a client RST|ACK mid-response
    server_abort: float = 0.01  # ... in a server RST|ACK mid-response
    server_forgot: float = 0.02  # ... in a kernel RST (no socket) answering a request after idle
    server_close: float = 0.3  # of FIN endings, share closed by the server (Connection: close)
    port_reuse: float = 0.003  # new conversations that reuse a finished conversation's 4-tuple
    requests_min: int = 1  # requests per conversation: this many ...
    requests_max: int = 5  # ... to this many
    body_max: int = 1_000_000  # the largest response body (aborted transfers aside)
    abort_body_max: int = 600_000  # the largest body of a transfer aborted with a RST (at least 64,000 else)


DEFAULT_PROFILE = Profile()
# --short: many short connections (health checks, clients without keep-alive): one request each, small
# responses, half of them closed by the server (Connection: close)
SHORT_PROFILE = Profile(requests_max=1, body_max=4_000, abort_body_max=16_000, server_forgot=0.0, server_close=0.5)
# --long: a few dozen long keep-alive connections (a proxy and its backends, incident 1's setting): thousands of
# requests each, small responses, hardly a malformed one
LONG_PROFILE = Profile(requests_min=1_500, requests_max=3_000, body_max=4_000, abort_body_max=16_000, malformed=0.002,
                       server_forgot=0.0, port_reuse=0.0)

# (kind, weight): the framing faults put in malformed chunked responses
MALFORMATIONS = (
    ("te-duplicate", 60),  # two "Transfer-Encoding: chunked" lines (chunked applied twice)
    ("te-cl", 10),  # Transfer-Encoding and Content-Length
    ("chunk-ext", 10),  # "2000;ext=1"
    ("chunk-space", 10),  # "2000 " before CRLF
    ("chunk-bare-lf", 5),  # chunk-size line ended by LF only
    ("space-before-colon", 5),  # "Transfer-Encoding : chunked"
)

SERVERS = (
    ((10, 0, 0, 10), 80, b"www.example.com"),
    ((10, 0, 0, 11), 80, b"api.example.com"),
    ((10, 0, 0, 12), 8080, b"static.example.net"),
    ((10, 0, 0, 13), 80, b"shop.example.org"),
)
N_CLIENTS = 2000
MAC_ROUTER = bytes.fromhex("020000000001")
MAC_SERVER = bytes.fromhex("020000000002")

PATHS = (b"/", b"/index.html", b"/api/v1/items/", b"/api/v1/users/", b"/static/app.", b"/img/photo-",
         b"/search?q=", b"/cart/", b"/download/file-", b"/feed.xml?page=")
AGENTS = (b"curl/7.88.1", b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
          b"python-requests/2.31.0", b"Go-http-client/1.1")
WORDS = (b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
         b"et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip "
         b"ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla "
         b"pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim "
         b"id est laborum").split()


def _ip(a: tuple[int, int, int, int]) -> int:
    return (a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]


class Blobs:
    """Body material, built once per run: sliced, never copied per packet."""

    def __init__(self, rng: random.Random) -> None:
        words = [rng.choice(WORDS) for _ in range(40_000)]
        text = b"<html><body>\n" + b"\n".join(b" ".join(words[i:i + 12]) for i in range(0, len(words), 12))
        while len(text) < 2_200_000:
            text += text
        self.text = text
        self.binary = rng.randbytes(2_200_000)

    def body(self, rng: random.Random, n: int, binary: bool) -> bytes:
        src = self.binary if binary else self.text
        start = rng.randrange(len(src) - n)
        return src[start:start + n]


class Endpoint:
    """One side of a conversation: addresses, sequence space, IP ID and timestamp clocks."""

    __slots__ = ("eth", "src", "dst", "sport", "dport", "ttl", "ip_sum", "tcp_sum", "isn", "nxt", "ipid",
                 "tsb", "win", "wscale", "rtt", "gap")

    def __init__(self, eth: bytes, src: int, dst: int, sport: int, dport: int, ttl: int, rng: random.Random):
        self.eth, self.src, self.dst, self.sport, self.dport, self.ttl = eth, src, dst, sport, dport, ttl
        # Checksums are one's-complement sums: precompute the constant words (version/IHL, DF, TTL/protocol,
        # addresses; pseudo-header addresses, protocol, ports) once per endpoint.
        addr = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
        self.ip_sum = 0x4500 + 0x4000 + ((ttl << 8) | 6) + addr
        self.tcp_sum = addr + 6 + sport + dport
        self.isn = rng.getrandbits(32)
        self.nxt = 0  # next stream offset to send (0 = first byte after the SYN)
        self.ipid = rng.getrandbits(16)
        self.tsb = rng.getrandbits(32)
        self.win = 0
        self.wscale = 7
        self.rtt = 0  # round trip tap -> this endpoint -> tap, microseconds
        self.gap = 0  # spacing of this endpoint's full segments at the tap, microseconds


def _frame(ep: Endpoint, flags: int, seq: int, ack: int, win: int, opts: bytes, payload: bytes, ipid: int) -> bytes:
    tcp_len = 20 + len(opts) + len(payload)
    offflags = ((5 + (len(opts) >> 2)) << 12) | flags
    s = ep.ip_sum + 20 + tcp_len + ipid
    ipck = -s % 0xFFFF  # ~sum, and 0 rather than 0xFFFF (a sum of non-zero words is never -0)
    s = (ep.tcp_sum + tcp_len + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF) + offflags + win
         + int.from_bytes(opts, "big"))
    if payload:
        # 2**16 == 1 (mod 0xFFFF): a big-endian integer is congruent to the sum of its 16-bit words.
        s += int.from_bytes(payload, "big") << 8 if len(payload) & 1 else int.from_bytes(payload, "big")
    tck = -s % 0xFFFF
    return ep.eth + _IPTCP.pack(0x45, 0, 20 + tcp_len, ipid, 0x4000, ep.ttl, 6, ipck, ep.src, ep.dst,
                                ep.sport, ep.dport, seq, ack, offflags, win, tck) + b"\0\0" + opts + payload


def _hex(n: int, upper: bool) -> bytes:
    return (b"%X" if upper else b"%x") % n


class Conversation:
    """One TCP connection carrying HTTP/1.1; ``run()`` yields ``(tap time us, frame, stat tag)`` in order."""

    def __init__(self, rng: random.Random, blobs: Blobs, prof: Profile, t0: int, cip: int, cport: int, ttl_c: int,
                 server: int) -> None:
        self.rng, self.blobs, self.prof, self.t0 = rng, blobs, prof, t0
        saddr, sport, self.host = SERVERS[server]
        sip = _ip(saddr)
        self.c = c = Endpoint(MAC_SERVER + MAC_ROUTER + b"\x08\x00", cip, sip, cport, sport, ttl_c, rng)
        self.s = s = Endpoint(MAC_ROUTER + MAC_SERVER + b"\x08\x00", sip, cip, sport, cport, 63, rng)
        # Round trips from the tap: servers are close, clients anywhere from the LAN to another continent.
        r = rng.randrange(10)
        c.rtt = rng.randint(100, 500) if r < 3 else rng.randint(2_000, 15_000) if r < 8 else rng.randint(20_000, 80_000)
        s.rtt = rng.randint(30, 400)
        c.wscale, s.wscale = 7, rng.choice((7, 9))
        c.win = rng.randint(1000, 4000)  # x 128: 128-512 KB receive window
        s.win = rng.randint(500, 1000)  # x 128 or 512
        both = c.rtt + s.rtt
        # Pace each sender so that the data in flight stays well inside the receiver's window even while
        # a loss is being recovered (about two round trips of data outstanding).
        s.gap = max(rng.randint(12, 300), 3 * both * MSS // ((c.win << c.wscale) - 4 * MSS) + 1)
        c.gap = max(rng.randint(12, 200), 3 * both * MSS // ((s.win << s.wscale) - 4 * MSS) + 1)
        self.requests = rng.randint(prof.requests_min, prof.requests_max)
        p = prof
        r = rng.random()
        if r < p.client_abort:
            self.end = "client-abort"
        elif r < p.client_abort + p.server_abort:
            self.end = "server-abort"
        elif r < p.client_abort + p.server_abort + p.server_forgot:
            self.end = "server-forgot"
            self.requests = max(self.requests, 2)
        else:
            self.end = "server-fin" if rng.random() < p.server_close else "client-fin"

    # -- packet helpers -------------------------------------------------------------------------------

    def _ts(self, ep: Endpoint, peer: Endpoint, t: int) -> tuple[int, int]:
        """TSval of a packet from ``ep`` passing the tap at ``t`` and the peer TSval it echoes (1 ms clocks)."""
        return (ep.tsb + (t - (ep.rtt >> 1)) // 1000) & MASK, (peer.tsb + (t - ep.rtt - (peer.rtt >> 1)) // 1000) & MASK

    def _pkt(self, ep: Endpoint, t: int, flags: int, seq_off: int, ack_off: int, payload: bytes = b"",
             sack: tuple = ()) -> bytes:
        """A segment from ``ep`` with timestamps (and SACK blocks); offsets are relative to each side's ISN+1."""
        peer = self.s if ep is self.c else self.c
        val, ecr = self._ts(ep, peer, t)
        opts = _TS.pack(1, 1, 8, 10, val, ecr)
        if sack:
            opts += bytes((1, 1, 5, 2 + 8 * len(sack)))
            base = peer.isn + 1
            for left, right in sack:
                opts += _EDGES.pack((base + left) & MASK, (base + right) & MASK)
        ep.ipid = (ep.ipid + 1) & 0xFFFF
        return _frame(ep, flags, (ep.isn + 1 + seq_off) & MASK, (peer.isn + 1 + ack_off) & MASK, ep.win, opts,
                      payload, ep.ipid)

    @staticmethod
    def _kernel_rst(ep: Endpoint, seq: int) -> bytes:
        """RST from a kernel with no socket: no ACK, seq = ACK of the segment answered, window 0, IP ID 0."""
        return _frame(ep, RST, seq, 0, 0, b"", b"", 0)

    # -- HTTP messages ----------------------------------------------------------------------------------

    def _request(self, last: bool) -> tuple[bytes, bytes]:
        rng = self.rng
        path = rng.choice(PATHS) + b"%d" % rng.randrange(100_000)
        r = rng.randrange(100)
        method = b"GET" if r < 75 else b"POST" if r < 97 else b"HEAD"
        lines = [b"%s %s HTTP/1.1" % (method, path), b"Host: " + self.host, b"User-Agent: " + rng.choice(AGENTS),
                 b"Accept: */*"]
        body = b""
        if method == b"POST":
            if rng.random() < 0.5:
                body = b'{"id": %d, "note": "%s"}' % (rng.randrange(10**6), self.blobs.body(rng, rng.randint(10, 3000),
                                                                                             False).replace(b"\n", b" "))
                lines.append(b"Content-Type: application/json")
            else:
                body = b"q=" + self.blobs.body(rng, rng.randint(10, 2000), False).replace(b" ", b"+").replace(b"\n", b"&")
                lines.append(b"Content-Type: application/x-www-form-urlencoded")
            lines.append(b"Content-Length: %d" % len(body))
        if last and self.end == "server-fin":
            lines.append(b"Connection: close")
        return method, b"\r\n".join(lines) + b"\r\n\r\n" + body

    def _response(self, method: bytes, t: int, size: int | None, close: bool) -> tuple[bytes, str]:
        """Response head and body; ``size`` forces a large 200 (aborted transfers). Returns (bytes, stat tag)."""
        rng, p = self.rng, self.prof
        r = rng.randrange(100)
        if size is None and method == b"GET" and r < 6:
            status = b"304 Not Modified"
        elif size is None and r < 10:
            status, size = b"404 Not Found", rng.randint(100, 1000)
        else:
            status = b"200 OK"
        if size is None:
            r = rng.randrange(100)
            size = min(rng.randint(100, 4000) if r < 45 else rng.randint(4_000, 48_000) if r < 80
                       else rng.randint(48_000, 256_000) if r < 97 else rng.randint(256_000, 1_000_000), p.body_max)
        date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(EPOCH + t // 1_000_000)).encode()
        head = [b"HTTP/1.1 " + status, b"Server: nginx/1.24.0", b"Date: " + date]
        body = b""
        if status[0] == 0x33:  # 304: no body, no framing headers
            tag = "response-empty"
        else:
            binary = rng.random() < 0.3
            head.append(b"Content-Type: " + (b"application/octet-stream" if binary else b"text/html; charset=utf-8"))
            data = self.blobs.body(rng, size, binary)
            if method != b"HEAD" and rng.random() < p.chunked:
                bad = ""
                if rng.random() < p.malformed:
                    bad = rng.choices([m for m, _ in MALFORMATIONS], [w for _, w in MALFORMATIONS])[0]
                head.append(b"Transfer-Encoding : chunked" if bad == "space-before-colon" else
                            b"Transfer-Encoding: chunked")
                if bad == "te-duplicate":
                    head.append(b"Transfer-Encoding: chunked")
                elif bad == "te-cl":
                    head.append(b"Content-Length: %d" % size)
                body = self._chunked(data, bad)
                tag = "malformed:" + bad if bad else "response-chunked"
            else:
                head.append(b"Content-Length: %d" % size)
                if method != b"HEAD":
                    body = data
                tag = "response-length"
        head.append(b"Connection: close" if close else b"Connection: keep-alive")
        return b"\r\n".join(head) + b"\r\n\r\n" + body, tag

    def _chunked(self, data: bytes, bad: str) -> bytes:
        rng = self.rng
        n = len(data)
        style = rng.randrange(5)
        upper = rng.random() < 0.2
        out = []
        pos = 0
        first = True
        while pos < n:
            if style == 0:
                k = 8192
            elif style == 1:
                k = 4096
            elif style == 2:
                k = 16_000
            elif style == 3 and n < 20_000:
                k = rng.randint(1, 200)
            else:
                k = rng.randint(1, 16_384)
            k = min(k, n - pos)
            size = _hex(k, upper)
            if first and bad == "chunk-ext":
                size += b";ext=1"
            elif first and bad == "chunk-space":
                size += b" "
            out.append(size + (b"\n" if first and bad == "chunk-bare-lf" else b"\r\n"))
            out.append(data[pos:pos + k])
            out.append(b"\r\n")
            pos += k
            first = False
        out.append(b"0\r\n\r\n")
        return b"".join(out)

    # -- TCP ------------------------------------------------------------------------------------------

    def _transfer(self, snd: Endpoint, rcv: Endpoint, data: bytes, t0: int, tag: str, abort: str = "") -> Iterator:
        """Send ``data`` from ``snd`` to ``rcv``, its first segment passing the tap at ``t0``.

        A discrete-event model in tap time: a data segment passes the tap at its send slot (unless lost
        before the tap), reaches the receiver (unless lost), and the receiver's ACK passes the tap one
        receiver round trip later; the sender sees an ACK one sender round trip before it can react.
        Yields ``(t, frame, stat tag)``; returns ``(t of the last packet, receiver still owes an ACK)``.
        ``abort``: "" | "receiver" (the receiver's application resets mid-transfer) | "sender".
        """
        rng, prof = self.rng, self.prof
        base = snd.nxt
        n = len(data)
        nseg = (n + MSS - 1) // MSS
        fate = [NORMAL] * nseg
        times = [t0 + i * snd.gap for i in range(nseg)]
        i = 1  # the first segment keeps its place: it carries the message's stat tag
        while i < nseg:
            x = rng.random()
            if x < prof.loss:
                fate[i] = LOST_BEFORE if rng.random() < prof.loss_before_tap else LOST_AFTER
            elif x < prof.loss + prof.reorder and i + 1 < nseg:
                times[i], times[i + 1] = times[i + 1], times[i]  # the tap and the receiver see i+1 first
                i += 1
            i += 1
        if nseg and rng.random() < prof.loss and fate[0] == NORMAL:
            fate[0] = LOST_AFTER
        # events: (tap time, tie-break, kind, argument)
        events: list = [(times[i], i, DATA, i) for i in range(nseg)]
        order = nseg
        heapq.heapify(events)
        abort_at = rng.randint(3, nseg - 4) if abort and nseg >= 8 else -1
        rcv_nxt = base  # the receiver's cumulative ACK (stream offset)
        ooo: list[list[int]] = []  # the receiver's out-of-order ranges [start, end), sorted
        unacked = 0  # in-order segments the receiver has not acknowledged yet
        lost: dict[int, int] = {}  # lost segment -> SACKing ACKs the sender has seen since
        retx: set[int] = set()
        rcv_closed = False
        snd_stop = -1  # tap time from which nothing the sender sends can appear (it got or sent a RST)
        snd_reset = False  # the sender reset the connection itself
        t_last = t0
        rto = 200_000 + snd.rtt + rcv.rtt
        side = "client" if snd is self.c else "server"
        other = "server" if snd is self.c else "client"
        while events:
            t, _, kind, arg = heapq.heappop(events)
            if kind in (DATA, RETX):
                i = arg
                if snd_stop >= 0 and t >= snd_stop:
                    continue
                start = base + i * MSS
                seg = data[i * MSS:(i + 1) * MSS]
                end = start + len(seg)
                if abort == "sender" and i == abort_at and kind == DATA:
                    # The sender's application aborts: RST|ACK at its next sequence number, nothing after it.
                    yield t, self._pkt(snd, t, RST | ACK, snd.nxt, rcv.nxt), "rst:abort-" + side
                    t_last, snd_stop, snd_reset = t, t, True
                    continue
                if end > snd.nxt:
                    snd.nxt = end
                f = fate[i] if kind == DATA else NORMAL
                if kind == RETX:
                    stat = "retransmission" if fate[i] == LOST_AFTER else "gap-retransmission"
                elif i == 0:
                    stat = tag
                elif i + 1 < nseg and times[i + 1] < times[i]:
                    stat = "out-of-order"
                else:
                    stat = ""
                if f != LOST_BEFORE:
                    yield t, self._pkt(snd, t, ACK | PSH if i == nseg - 1 else ACK, start, rcv.nxt, seg), stat
                    t_last = t
                if f != NORMAL:
                    lost[i] = 0
                    heapq.heappush(events, (t + rto, order, RTO, i))
                    order += 1
                    continue
                # -- the segment reaches the receiver --
                if rcv_closed:
                    # The receiver's socket is gone: its kernel answers each segment with a RST whose
                    # sequence number is the segment's ACK (tcp_v4_send_reset).
                    heapq.heappush(events, (t + rcv.rtt, order, RCV_KERNEL_RST, rcv.nxt))
                    order += 1
                    continue
                if start <= rcv_nxt < end:
                    rcv_nxt = end
                    if ooo:
                        immediate = True  # a filled hole is acknowledged at once (tcp_data_queue)
                        while ooo and ooo[0][0] <= rcv_nxt:
                            rcv_nxt = max(rcv_nxt, ooo.pop(0)[1])
                    else:
                        unacked += 1
                        immediate = unacked >= 2  # ACK every second full segment (__tcp_ack_snd_check)
                elif start > rcv_nxt:
                    for r in ooo:
                        if r[0] <= end and start <= r[1]:
                            r[0], r[1] = min(r[0], start), max(r[1], end)
                            break
                    else:
                        ooo.append([start, end])
                        ooo.sort()
                    immediate = True  # out of order: duplicate ACK with SACK at once
                else:
                    immediate = True  # an old duplicate: ACK at once
                if immediate:
                    unacked = 0
                    sack = ()
                    if ooo:  # the block holding the newest segment first (RFC 2018 4), at most 3 with timestamps
                        first = [r for r in ooo if r[0] <= start < r[1]]
                        rest = [r for r in reversed(ooo) if not (r[0] <= start < r[1])]
                        sack = tuple((r[0], r[1]) for r in (first + rest)[:3])
                    heapq.heappush(events, (t + rcv.rtt, order, RCV_ACK, (rcv_nxt, sack)))
                    order += 1
                if abort == "receiver" and i == abort_at:
                    # The receiver's application closes with unread data: RST|ACK; the sender stops once
                    # the RST reaches it, and what it sent meanwhile meets the receiver's kernel.
                    tk = t + rcv.rtt + rng.randint(20, 2000)
                    heapq.heappush(events, (tk, order, RCV_ABORT, rcv_nxt))
                    order += 1
                    rcv_closed = True
                    unacked = 0
                    snd_stop = tk + snd.rtt
            elif kind == RCV_ACK:
                ack_off, sack = arg
                if snd_reset and t > snd_stop + rcv.rtt:
                    continue  # the receiver had the sender's RST before it would have sent this
                yield t, self._pkt(rcv, t, ACK, rcv.nxt, ack_off, b"", sack), ""
                t_last = t
                if snd_reset:
                    if t > snd_stop - snd.rtt:  # reaches the sender after its reset: its kernel answers
                        heapq.heappush(events, (t + snd.rtt, order, SND_KERNEL_RST, ack_off))
                        order += 1
                    continue
                if sack and lost:
                    high = max(r[1] for r in sack)
                    for j in lost:
                        if j not in retx and base + (j + 1) * MSS <= high:
                            lost[j] += 1
                            if lost[j] == 3:  # marked lost once three SACKs cover data above it (RFC 6675)
                                retx.add(j)
                                heapq.heappush(events, (t + snd.rtt, order, RETX, j))
                                order += 1
            elif kind == RTO:  # a lost segment that no SACK recovered: retransmitted when the RTO fires
                if arg not in retx and not (snd_stop >= 0 and t >= snd_stop):
                    retx.add(arg)
                    heapq.heappush(events, (t, order, RETX, arg))
                    order += 1
            elif kind == RCV_KERNEL_RST:
                yield t, self._kernel_rst(rcv, (rcv.isn + 1 + arg) & MASK), "rst:no-socket-" + other
                t_last = t
            elif kind == RCV_ABORT:
                yield t, self._pkt(rcv, t, RST | ACK, rcv.nxt, arg), "rst:abort-" + other
                t_last = t
            else:  # SND_KERNEL_RST
                yield t, self._kernel_rst(snd, (snd.isn + 1 + arg) & MASK), "rst:no-socket-" + side
                t_last = t
        snd.nxt = max(snd.nxt, base + n)
        return t_last, unacked > 0

    def run(self) -> Iterator:
        rng, c, s = self.rng, self.c, self.s
        t = self.t0
        # Handshake: SYN and SYN-ACK carry MSS, SACK-permitted, timestamps and window scale (Linux layout);
        # a SYN-ACK has IP ID 0 (ip_build_and_send_pkt with DF).
        val, _ = self._ts(c, s, t)
        c.ipid = (c.ipid + 1) & 0xFFFF
        yield t, _frame(c, SYN, c.isn, 0, 64240, _SYN_OPTS.pack(2, 4, 1460, 4, 2, 8, 10, val, 0, 1, 3, 3, c.wscale),
                        b"", c.ipid), "syn"
        t += s.rtt
        val, ecr = self._ts(s, c, t)
        yield t, _frame(s, SYN | ACK, s.isn, (c.isn + 1) & MASK, 65160,
                        _SYN_OPTS.pack(2, 4, 1460, 4, 2, 8, 10, val, ecr, 1, 3, 3, s.wscale), b"", 0), ""
        t += c.rtt
        yield t, self._pkt(c, t, ACK, 0, 0), ""
        t += rng.randint(20, 300)
        for k in range(self.requests):
            last = k == self.requests - 1
            if last and self.end == "server-forgot":
                t += rng.randint(1_000_000, 6_000_000)  # idle; meanwhile the server dropped the connection
            method, req = self._request(last)
            t_end, owes = yield from self._transfer(c, s, req, t, "request")
            if last and self.end == "server-forgot":
                t = t_end + s.rtt
                yield t, self._kernel_rst(s, (s.isn + 1 + s.nxt) & MASK), "rst:no-socket-server"
                return
            think = rng.randint(100, 5_000) if rng.random() < 0.95 else rng.randint(40_000, 120_000)
            if owes and think > DELACK_US:
                ta = t_end + s.rtt + DELACK_US
                yield ta, self._pkt(s, ta, ACK, s.nxt, c.nxt), ""
            t = t_end + s.rtt + think
            abort = ""
            size = None
            if last and self.end in ("client-abort", "server-abort"):
                abort = "receiver" if self.end == "client-abort" else "sender"
                size = min(rng.randint(64_000, 600_000), self.prof.abort_body_max)
            close = last and self.end == "server-fin"
            resp, tag = self._response(method, t, size, close)
            t_end, owes = yield from self._transfer(s, c, resp, t, tag, abort)
            if abort:
                return
            if close:  # the server closes after the response; the client ACKs at once, then closes too
                t = t_end + rng.randint(5, 50)
                yield t, self._pkt(s, t, FIN | ACK, s.nxt, c.nxt), "fin"
                s.nxt += 1
                t += c.rtt
                yield t, self._pkt(c, t, ACK, c.nxt, s.nxt), ""
                t += rng.randint(50, 2_000)
                yield t, self._pkt(c, t, FIN | ACK, c.nxt, s.nxt), ""
                c.nxt += 1
                t += s.rtt
                yield t, self._pkt(s, t, ACK, s.nxt, c.nxt), ""
                return
            r = rng.randrange(10)
            think = (rng.randint(500, 5_000) if r < 4 else rng.randint(5_000, 100_000) if r < 8
                     else rng.randint(100_000, 1_000_000))
            if owes and think > DELACK_US:
                ta = t_end + c.rtt + DELACK_US
                yield ta, self._pkt(c, ta, ACK, c.nxt, s.nxt), ""
            t = t_end + c.rtt + think
        # The client closes the idle keep-alive connection (its FIN carries any ACK it still owed).
        yield t, self._pkt(c, t, FIN | ACK, c.nxt, s.nxt), "fin"
        c.nxt += 1
        t += s.rtt
        yield t, self._pkt(s, t, FIN | ACK, s.nxt, c.nxt), ""
        s.nxt += 1
        t += c.rtt
        yield t, self._pkt(c, t, ACK, c.nxt, s.nxt), ""


def generate(out: str, packets: int, seed: int = 1, concurrency: int = 200, profile: Profile = DEFAULT_PROFILE,
             progress: bool = False) -> dict:
    """Write exactly ``packets`` frames to the file ``out``; return what was written (counts by kind)."""
    if packets < 1 or concurrency < 1:
        raise ValueError("packets and concurrency must be positive")
    rng = random.Random(seed)
    blobs = Blobs(rng)
    ports = [rng.randint(32768, 60999) for _ in range(N_CLIENTS)]
    client_ttl = [rng.choice((64, 64, 64, 128)) - rng.randint(2, 20) for _ in range(N_CLIENTS)]
    finished: list[tuple[int, int, int]] = []  # (client, server, port) of ended conversations: port reuse
    counts: dict[str, int] = {}
    heap: list = []  # one entry per open conversation: (t, id, frame, tag, generator, 4-tuple key)
    next_id = 0

    def start(t: int) -> None:
        nonlocal next_id
        if finished and rng.random() < profile.port_reuse:
            ci, sidx, cport = finished.pop(0)
            counts["port-reuse"] = counts.get("port-reuse", 0) + 1
        else:
            ci, sidx = rng.randrange(N_CLIENTS), rng.randrange(len(SERVERS))
            cport = ports[ci]
            ports[ci] = cport + 1 if cport < 60999 else 32768
        cip = (10 << 24) | (1 << 16) | ((ci // 250) << 8) | (ci % 250 + 1)
        conv = Conversation(random.Random(rng.getrandbits(64)), blobs, profile, t, cip, cport, client_ttl[ci], sidx)
        gen = conv.run()
        t1, frame, tag = next(gen)
        heapq.heappush(heap, (t1, next_id, frame, tag, gen, (ci, sidx, cport)))
        next_id += 1

    for _ in range(concurrency):
        start(rng.randrange(1_000_000))
    written = 0
    rec = _REC.pack
    t_first = heap[0][0]
    t = t_first
    started = time.monotonic()
    with open(out, "wb", buffering=16 << 20) as f:
        f.write(_PCAP_HEADER)
        write = f.write
        while written < packets:
            t, cid, frame, tag, gen, key = heapq.heappop(heap)
            n = len(frame)
            write(rec(EPOCH + t // 1_000_000, t % 1_000_000, n, n) + frame)
            written += 1
            if tag:
                counts[tag] = counts.get(tag, 0) + 1
            nxt = next(gen, None)
            if nxt is None:
                finished.append(key)
                if len(finished) > 1000:
                    del finished[0]
                start(t + rng.randint(0, 20_000))
            else:
                heapq.heappush(heap, (nxt[0], cid, nxt[1], nxt[2], gen, key))
            if progress and written % 100_000 == 0:
                print(f"\r{written:,} / {packets:,} packets", end="", file=sys.stderr, flush=True)
        size = f.tell()
    if progress:
        print(file=sys.stderr)
    return {"packets": written, "conversations": counts.get("syn", 0), "bytes": size, "seed": seed,
            "concurrency": concurrency, "capture_seconds": round((t - t_first) / 1e6, 3),
            "generate_seconds": round(time.monotonic() - started, 2), "counts": dict(sorted(counts.items()))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: python bench/gen.py /tmp/bench.pcap --packets 100000 --seed 1")
    ap.add_argument("out", help="pcap file to write")
    ap.add_argument("--packets", type=int, default=1_000_000, help="frames to write (default 1000000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1): same seed, same bytes")
    ap.add_argument("--concurrency", type=int, default=200, help="conversations open at once (default 200)")
    ap.add_argument("--short", action="store_true",
                    help="many short connections: one request each, responses up to 4 KB (default: keep-alive "
                         "conversations of 1-5 requests, responses up to 1 MB)")
    ap.add_argument("--long", action="store_true",
                    help="long keep-alive connections: 1,500-3,000 requests each, responses up to 4 KB (use with a "
                         "small --concurrency, such as 40)")
    ap.add_argument("--stats", metavar="FILE", help="also write what was generated as JSON to FILE")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    args = ap.parse_args(argv)
    if args.packets < 1 or args.concurrency < 1:
        ap.error("--packets and --concurrency must be positive")
    if args.short and args.long:
        ap.error("--short and --long exclude each other")
    stats = generate(args.out, args.packets, args.seed, args.concurrency,
                     profile=SHORT_PROFILE if args.short else LONG_PROFILE if args.long else DEFAULT_PROFILE,
                     progress=not args.quiet and sys.stderr.isatty())
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(stats, f, indent=1, sort_keys=True)
            f.write("\n")
    if not args.quiet:
        print(f"{args.out}: {stats['packets']:,} packets, {stats['conversations']:,} conversations, "
              f"{stats['bytes'] / 2**20:,.1f} MiB in {stats['generate_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
