"""Captures that each push one mechanism to its limit, at two sizes: does pcapcheck's time stay linear and its
memory flat? (`make bench-adversarial`; docs/performance.md, "Captures that push one mechanism").

Every pattern is one TCP conversation (or many, where that is the point) whose packets stress one thing: a
response in 1-byte segments, segments in reverse order, every other segment missing until the end, random
overlapping retransmissions, 1-byte chunks, 6.6 KB heads of 300 fields over five segments, heads that never end,
RST and SACK storms, one 4-tuple reused thousands of times, and so on. Each is written at N and at 4N units
(`--scale` changes the factor) and pcapcheck is timed on both (one process, `-j 1`, CPU seconds, peak RSS);
the start-up (an empty capture) is taken off before the growth is computed. Linear work grows by the factor
(4x); a quadratic one by its square (16x). A pattern whose growth is over 1.4 x the factor is flagged, and so
is one whose peak RSS grows by more than 20 MiB.

The captures are deterministic (a fixed seed) and built with the fixtures' builder; they are written to a
temporary directory, never kept unless --keep is given. No timing is asserted anywhere: this prints a table.

usage: adversarial.py [--only P,P] [--scale K] [--size-factor F] [--tshark] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import MIB, BenchError, ensure_time, measure  # noqa: E402

from fixtures import builder as b  # noqa: E402

T0 = 1_700_000_000_000_000_000
C, S, CP, SP = "10.0.0.1", "10.0.0.2", 40000, 80
CI, SI = 1000, 900000  # initial sequence numbers (+1 after the SYN)
REQ = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


class Capture:
    """One pcap (raw IPv4) being written; ``c2s``/``s2c`` send on the one conversation, relative sequence numbers
    (1 = the first byte after the SYN)."""

    def __init__(self, seed: int = 7) -> None:
        self.writer = b.PcapWriter(linktype=b.LINKTYPE_RAW)
        self.clock = 0
        self.rnd = random.Random(seed)

    def add(self, src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"",
            options: bytes = b"", window: int = 65535) -> None:
        self.clock += 1000  # 1 us apart
        segment = b.tcp(sport, dport, seq, ack, flags, window, payload, options, src_ip=src, dst_ip=dst)
        self.writer.add(T0 + self.clock, b.ipv4(src, dst, segment))

    def c2s(self, seq: int, ack: int, flags: int, payload: bytes = b"", **kw) -> None:  # type: ignore[no-untyped-def]
        self.add(C, S, CP, SP, CI + seq, SI + ack, flags, payload, **kw)

    def s2c(self, seq: int, ack: int, flags: int, payload: bytes = b"", **kw) -> None:  # type: ignore[no-untyped-def]
        self.add(S, C, SP, CP, SI + seq, CI + ack, flags, payload, **kw)

    def handshake(self) -> None:
        """SACK permitted and a window scale of 7 both ways: 8 MiB windows, so the patterns that send a lot before
        the receiver's ACK stay in the window (out-of-window segments take the window model's slow path, which
        would then be what is measured)."""
        options = b.opt_sack_perm() + b.opt_wscale(7)
        self.c2s(0, 0, 0x02, options=options)
        self.s2c(0, 1, 0x12, options=options)
        self.c2s(1, 1, 0x10)

    def response(self, pieces: list[tuple[int, bytes]], length: int) -> None:
        """The request, then the response's bytes as (offset, bytes) in the order given, then the client's ACK."""
        self.c2s(1, 1, 0x18, REQ)
        for off, data in pieces:
            self.s2c(1 + off, 1 + len(REQ), 0x18, data)
        self.c2s(1 + len(REQ), 1 + length, 0x10)


def _split(data: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(o, data[o:o + size]) for o in range(0, len(data), size)]


def _body_response(cap: Capture, n: int, seg: int = 100) -> tuple[list[tuple[int, bytes]], int]:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (n * seg)
    pattern = bytes(cap.rnd.getrandbits(8) for _ in range(64))
    resp = head + (pattern * (n * seg // 64 + 1))[:n * seg]
    return _split(resp, seg), len(resp)


def tiny(cap: Capture, n: int) -> None:
    """a response whose n-byte body comes 1 byte per segment"""
    cap.handshake()
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"x" * n
    cap.response(_split(resp, 1), len(resp))


def reverse(cap: Capture, n: int) -> None:
    """n 100-byte segments of a response, last first (each one a new hole before the rest)"""
    cap.handshake()
    pieces, length = _body_response(cap, n)
    cap.response(pieces[::-1], length)


def holes(cap: Capture, n: int) -> None:
    """every other segment missing until all the others came (n/2 holes open at once)"""
    cap.handshake()
    pieces, length = _body_response(cap, n)
    cap.response(pieces[::2] + pieces[1::2], length)


def gap_first(cap: Capture, n: int) -> None:
    """the response's first segment only after the n others"""
    cap.handshake()
    pieces, length = _body_response(cap, n)
    cap.response(pieces[1:] + pieces[:1], length)


def overlaps(cap: Capture, n: int) -> None:
    """n segments plus n retransmissions of random ranges (1-1400 bytes) at random places"""
    cap.handshake()
    pieces, length = _body_response(cap, n)
    resp = b"".join(p for _, p in pieces)
    order = list(pieces)
    for _ in range(n):
        off = cap.rnd.randrange(0, length - 10)
        order.insert(cap.rnd.randrange(0, len(order)), (off, resp[off:off + cap.rnd.randrange(1, 1400)]))
    cap.response(order, length)


def fragments(cap: Capture, n: int) -> None:
    """one TCP segment of 8n bytes sent as n 8-byte IPv4 fragments, the first and the last first (n <= 8,000)"""
    cap.handshake()
    size = 8 * n - 20  # a POST filling the segment: head and body
    body = 0
    while len(head := b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % body) + body != size:
        body = size - len(head)
    segment = b.tcp(CP, SP, CI + 1, SI + 1, 0x18, 65535, head + b"x" * body, src_ip=C, dst_ip=S)
    pieces = b.ipv4_fragments(C, S, segment, fragment_size=8, ip_id=7)
    for ip in [pieces[0], pieces[-1], *pieces[1:-1]]:
        cap.clock += 1000
        cap.writer.add(T0 + cap.clock, ip)


def chunks(cap: Capture, n: int) -> None:
    """a chunked body of n 1-byte chunks"""
    cap.handshake()
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * n + b"0\r\n\r\n"
    cap.response(_split(resp, 1400), len(resp))


def many_fields(cap: Capture, n: int) -> None:
    """n requests of 300 header fields each (6.6 KB heads over five segments), each answered"""
    cap.handshake()
    cs = ss = 1
    fields = b"".join(b"X-Field-%d: value %d\r\n" % (k, k) for k in range(300))
    for i in range(n):
        req = b"GET /%d HTTP/1.1\r\nHost: a\r\n" % i + fields + b"\r\n"
        for off, piece in _split(req, 1448):
            cap.c2s(cs + off, ss, 0x18, piece)
        cs += len(req)
        cap.s2c(ss, cs, 0x18, NO_CONTENT)
        ss += len(NO_CONTENT)


def interim(cap: Capture, n: int) -> None:
    """one request answered by n 102 Processing, then 200 OK"""
    cap.handshake()
    cap.c2s(1, 1, 0x18, REQ)
    data = b"HTTP/1.1 102 Processing\r\n\r\n" * n + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    for off, piece in _split(data, 1400):
        cap.s2c(1 + off, 1 + len(REQ), 0x18, piece)


def open_head(cap: Capture, n: int) -> None:
    """a request head that never ends: 10n header lines in 10-byte segments (past the head limit)"""
    cap.handshake()
    data = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (10 * n)
    for off, piece in _split(data, 10):
        cap.c2s(1 + off, 1, 0x18, piece)


def pipelined(cap: Capture, n: int) -> None:
    """n requests sent back to back (many per segment), then their n responses"""
    cap.handshake()
    reqs = REQ * n
    for off, piece in _split(reqs, 1400):
        cap.c2s(1 + off, 1, 0x18, piece)
    resps = NO_CONTENT * n
    for off, piece in _split(resps, 1400):
        cap.s2c(1 + off, 1 + len(reqs), 0x18, piece)


def garbage(cap: Capture, n: int) -> None:
    """one response, then n KB of random bytes on the same side (resynchronising)"""
    cap.handshake()
    cap.c2s(1, 1, 0x18, REQ)
    data = NO_CONTENT + bytes(cap.rnd.getrandbits(8) for _ in range(1024 * n))
    for off, piece in _split(data, 1400):
        cap.s2c(1 + off, 1 + len(REQ), 0x18, piece)


def near_requests(cap: Capture, n: int) -> None:
    """one request, then 50n lines that are almost request lines"""
    cap.handshake()
    data = REQ + b"".join(b"GXT /%d HTTP/1.1\r\n" % i for i in range(50 * n))
    for off, piece in _split(data, 1400):
        cap.c2s(1 + off, 1, 0x18, piece)


def both_tiny(cap: Capture, n: int) -> None:
    """pipelined requests and responses, 1 byte per segment, the two directions alternating (n each)"""
    cap.handshake()
    reqs = REQ * (n // len(REQ) + 1)
    resps = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * (n // 40 + 1)
    for i in range(n):
        cap.c2s(1 + i, 1 + i, 0x18, reqs[i:i + 1])
        cap.s2c(1 + i, 2 + i, 0x18, resps[i:i + 1])


def rst_storm(cap: Capture, n: int) -> None:
    """n RSTs from the client with sequence numbers up to 100,000 away, in and out of the window"""
    cap.handshake()
    for _ in range(n):
        cap.c2s(1 + cap.rnd.randrange(-100_000, 100_000), 1, 0x04)


def sack_storm(cap: Capture, n: int) -> None:
    """n data segments with a hole after each, every ACK with 4 SACK blocks"""
    cap.handshake()
    cap.c2s(1, 1, 0x18, REQ)
    off = 1
    for _ in range(n):
        cap.s2c(off, 1 + len(REQ), 0x10, b"y" * 1000)
        blocks = [((SI + off - k * 3000) % 2**32, (SI + off - k * 3000 + 1000) % 2**32) for k in range(4)]
        cap.c2s(1 + len(REQ), 1, 0x10, options=b.opt_sack(blocks))
        off += 2000


def dup_acks(cap: Capture, n: int) -> None:
    """n duplicate ACKs"""
    cap.handshake()
    cap.c2s(1, 1, 0x18, REQ)
    for _ in range(n):
        cap.s2c(1, 1 + len(REQ), 0x10)


def zero_window(cap: Capture, n: int) -> None:
    """a receiver's window closed: n 1-byte probes and their zero-window ACKs"""
    cap.handshake()
    cap.c2s(1, 1, 0x18, REQ)
    cap.s2c(1, 1 + len(REQ), 0x18, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000)
    for _ in range(n):
        cap.c2s(1 + len(REQ), 1 + 1040, 0x10, window=0)
        cap.s2c(1 + 1040, 1 + len(REQ), 0x10, b"z")


def port_reuse(cap: Capture, n: int) -> None:
    """one 4-tuple used by n short connections one after another (new ISNs each time)"""
    for i in range(n):
        ci, si = CI + i * 100_000, SI + i * 100_000
        cap.add(C, S, CP, SP, ci, 0, 0x02)
        cap.add(S, C, SP, CP, si, ci + 1, 0x12)
        cap.add(C, S, CP, SP, ci + 1, si + 1, 0x18, REQ)
        cap.add(S, C, SP, CP, si + 1, ci + 1 + len(REQ), 0x19, NO_CONTENT)
        cap.add(C, S, CP, SP, ci + 1 + len(REQ), si + 2 + len(NO_CONTENT), 0x11)
        cap.add(S, C, SP, CP, si + 2 + len(NO_CONTENT), ci + 2 + len(REQ), 0x10)


def holes_everywhere(cap: Capture, n: int) -> None:
    """n conversations of one direction, each missing its first data segment, then 400 KB each, interleaved"""
    clients = [(f"10.2.{i // 250}.{i % 250 + 1}", 2000 + i % 60000) for i in range(n)]
    for client, port in clients:
        cap.add(client, S, port, SP, 999, 0, 0x02, options=b.opt_wscale(7))
    for k in range(2, 402):
        for client, port in clients:
            cap.add(client, S, port, SP, 1000 + (k - 1) * 1000, 1, 0x10, b"h" * 1000)


def open_conversations(cap: Capture, n: int) -> None:
    """n conversations opened and left open, one request each"""
    for i in range(n):
        client, port = f"10.1.{i // 250}.{i % 250 + 1}", 1024 + i % 60000
        cap.add(client, S, port, SP, 5, 0, 0x02)
        cap.add(S, client, SP, port, 7, 6, 0x12)
        cap.add(client, S, port, SP, 6, 8, 0x18, REQ)


@dataclass(frozen=True)
class Pattern:
    name: str
    write: Callable[[Capture, int], None]
    n: int  # units at the first size: about 0.5-1 s of pcapcheck's work on this machine class
    holds_state: bool = False  # memory follows the units by design (conversations open at once): not flagged

    @property
    def what(self) -> str:
        return (self.write.__doc__ or "").strip()


PATTERNS = [
    Pattern("tiny-segments", tiny, 50_000),
    Pattern("reverse-order", reverse, 5_000),
    Pattern("holes", holes, 5_000),
    Pattern("gap-first", gap_first, 5_000),
    Pattern("overlaps", overlaps, 5_000),
    Pattern("ip-fragments", fragments, 2_000),
    Pattern("1-byte-chunks", chunks, 200_000),
    Pattern("300-field-heads", many_fields, 300),
    Pattern("open-head", open_head, 2_000),
    Pattern("interim-responses", interim, 20_000),
    Pattern("pipelined", pipelined, 20_000),
    Pattern("garbage", garbage, 16_000),
    Pattern("near-requests", near_requests, 10_000),
    Pattern("both-tiny", both_tiny, 10_000),
    Pattern("rst-storm", rst_storm, 100_000),
    Pattern("sack-storm", sack_storm, 10_000),
    Pattern("dup-acks", dup_acks, 50_000),
    Pattern("zero-window", zero_window, 10_000),
    Pattern("port-reuse", port_reuse, 3_000),
    Pattern("holes-everywhere", holes_everywhere, 50, holds_state=True),
    Pattern("open-conversations", open_conversations, 5_000, holds_state=True),
]
BY_NAME = {p.name: p for p in PATTERNS}


def write(pattern: Pattern, n: int, path: Path) -> Path:
    cap = Capture()
    pattern.write(cap, n)
    return cap.writer.write(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated pattern names (default: all): " + ", ".join(BY_NAME))
    ap.add_argument("--scale", type=int, default=4, help="the second size is this many times the first (4)")
    ap.add_argument("--size-factor", type=float, default=1.0, help="multiply every pattern's first size (1.0)")
    ap.add_argument("--tshark", action="store_true", help="also time `tshark -2 -q -z expert` at the larger size")
    ap.add_argument("--tshark-timeout", type=float, default=60.0, help="seconds before tshark is stopped (60)")
    ap.add_argument("--keep", type=Path, help="write the captures here and keep them")
    ap.add_argument("--pcapcheck", default=str(ROOT / ".venv" / "bin" / "pcapcheck"), help="the pcapcheck to run")
    args = ap.parse_args(argv)
    unknown = [n for n in args.only.split(",") if n and n not in BY_NAME]
    if unknown:
        ap.error(f"unknown pattern(s): {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [BY_NAME[n] for n in args.only.split(",") if n] or PATTERNS
    time_bin = ensure_time("auto")
    tshark = None
    if args.tshark:
        from run import ensure_tshark

        tshark = ensure_tshark()
    with tempfile.TemporaryDirectory(prefix="pcapcheck-adversarial-") as tmp:
        work = Path(tmp)
        where = args.keep or work
        where.mkdir(parents=True, exist_ok=True)

        def cpu_rss(path: Path, label: str) -> tuple[float, int]:
            out = work / "out"
            sample = measure([args.pcapcheck, "analyze", "-j", "1", "--fail-on", "never", str(path), "-o", str(out)],
                             time_bin, work, (0,), label)
            return sample.cpu, sample.rss

        empty = write(Pattern("empty", lambda cap, n: None, 0), 0, where / "empty.pcap")
        base, base_rss = min(cpu_rss(empty, "pcapcheck (empty capture)") for _ in range(3))
        print(f"start-up (an empty capture): {base:.2f} s CPU, {base_rss / MIB:.0f} MiB; growth = CPU above it at "
              f"{args.scale}N / at N (linear: {args.scale}, quadratic: {args.scale ** 2})\n")
        head = f"| pattern | N | packets at N | CPU s at N | at {args.scale}N | growth | peak MiB at N | at {args.scale}N |"
        head += " tshark s |" if tshark else ""
        print(head)
        print("|---" * (head.count("|") - 1) + "|")
        flagged = []
        for pattern in chosen:
            n = max(1, round(pattern.n * args.size_factor))
            small = write(pattern, n, where / f"{pattern.name}-{n}.pcap")
            large = write(pattern, n * args.scale, where / f"{pattern.name}-{n * args.scale}.pcap")
            cpu1, rss1 = cpu_rss(small, f"pcapcheck {pattern.name} N")
            cpu4, rss4 = cpu_rss(large, f"pcapcheck {pattern.name} {args.scale}N")
            growth = (cpu4 - base) / max(cpu1 - base, 0.01)
            mark = ""
            if growth > 1.4 * args.scale or (rss4 - rss1 > 20 * MIB and not pattern.holds_state):
                mark = " **!**"
                flagged.append(pattern.name)
            packets = _packets(small)
            row = (f"| {pattern.name} | {n:,} | {packets:,} | {cpu1:.2f} | {cpu4:.2f} | {growth:.1f}{mark} | "
                   f"{rss1 / MIB:.0f} | {rss4 / MIB:.0f} |")
            if tshark:
                row += f" {_tshark_cpu(tshark, large, args.tshark_timeout)} |"
            print(row, flush=True)
            if not args.keep:
                small.unlink()
                large.unlink()
        print()
        print("patterns:")
        for pattern in chosen:
            print(f"  {pattern.name}: {pattern.what}")
        print()
        print(f"flagged (growth over {1.4 * args.scale:.1f}, or peak RSS up by more than 20 MiB where memory is not "
              "meant to follow the pattern's size): " + (", ".join(flagged) if flagged else "none"))
        held = [p.name for p in chosen if p.holds_state]
        if held:
            print("memory follows the size by design (what is open at once is held until it ends): " + ", ".join(held))
    return 0


def _tshark_cpu(tshark: str, path: Path, timeout: float) -> str:
    """tshark's CPU seconds on ``path`` (its own reassembly is quadratic on some of these: stopped at ``timeout``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        subprocess.run([tshark, "-2", "-q", "-z", "expert", "-r", str(path)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} (stopped)"
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return f"{after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime:.2f}"


def _packets(path: Path) -> int:
    import dpkt

    with open(path, "rb") as f:
        return sum(1 for _ in dpkt.pcap.Reader(f))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"adversarial: {e}", file=sys.stderr)
        sys.exit(1)
