"""Conversation-level TCP findings: Wireshark-compatible analysis flags as counts plus frame
lists (one finding per code, not one per packet), overlap mismatches, mid-stream pickup and
port reuse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from pcapcheck.findings import Finding, Severity
from pcapcheck.tcp.reassembly import MAX_BUFFERED, MAX_PENDING
from pcapcheck.tcp.tracker import FLAG_CODES

# Severity per flag. Wireshark marks several of these "Warn"; in a forensic summary a
# lost or reordered segment is usually capture loss or ordinary congestion, so they are
# notices, and only a zero window (the receiver stalled) is a warning.
FLAG_SEVERITY: Final = {
    "tcp.retransmission": Severity.NOTICE,
    "tcp.fast-retransmission": Severity.NOTICE,
    "tcp.spurious-retransmission": Severity.NOTICE,
    "tcp.out-of-order": Severity.NOTICE,
    "tcp.lost-segment": Severity.NOTICE,
    "tcp.ack-unseen": Severity.NOTICE,
    "tcp.dup-ack": Severity.INFO,
    "tcp.zero-window": Severity.WARNING,
    "tcp.zero-window-probe": Severity.INFO,
    "tcp.zero-window-probe-ack": Severity.INFO,
    "tcp.window-full": Severity.NOTICE,
    "tcp.keep-alive": Severity.INFO,
    "tcp.keep-alive-ack": Severity.INFO,
    "tcp.window-update": Severity.INFO,
}

FLAG_TEXT: Final = {
    "tcp.retransmission": "retransmission(s): the sender sent bytes again that it had sent before",
    "tcp.fast-retransmission": "fast retransmission(s) after duplicate ACKs or SACK (RFC 5681/6675)",
    "tcp.spurious-retransmission": "spurious retransmission(s): data resent that the receiver had already ACKed",
    "tcp.out-of-order": "out-of-order segment(s): sent before bytes that precede them arrived",
    "tcp.lost-segment": "segment(s) following bytes that were never captured (lost, or missed by the capture)",
    "tcp.ack-unseen": "ACK(s) of bytes that were never captured",
    "tcp.dup-ack": "duplicate ACK(s)",
    "tcp.zero-window": "zero-window advertisement(s): the receiver's buffer was full and the sender had to stop",
    "tcp.zero-window-probe": "zero-window probe(s)",
    "tcp.zero-window-probe-ack": "ACK(s) of zero-window probes",
    "tcp.window-full": "segment(s) that filled the receiver's advertised window",
    "tcp.keep-alive": "keep-alive probe(s)",
    "tcp.keep-alive-ack": "ACK(s) of keep-alive probes",
    "tcp.window-update": "window update(s)",
}


def tcp_findings(cid: int, flag_frames: dict[int, list], reasm: Sequence[Any], conv: Any) -> list[Finding]:
    out: list[Finding] = []
    for bit in sorted(flag_frames):
        count, *frames = flag_frames[bit]
        code = FLAG_CODES[bit]
        out.append(Finding(
            code, FLAG_SEVERITY.get(code, Severity.INFO),
            f"{count} {FLAG_TEXT.get(code, code)} (first: frame {frames[0]})",
            conversation=cid, frames=tuple(frames),
            detail={"count": count, "frames_listed": len(frames)},
            rule="Wireshark tcp.analysis (packet-tcp.c)",
        ))
    for d, r in enumerate(reasm):
        for m in r.mismatches:
            out.append(Finding(
                "tcp.overlap-mismatch", Severity.ERROR,
                f"frame {m.frame} resends stream bytes at offset {m.offset} with different content than frame "
                f"{m.first_frame} carried first ({m.first[:16]!r} vs {m.second[:16]!r}): injection, evasion or a "
                "broken middlebox; pcapcheck keeps the first copy",
                conversation=cid, direction=("c2s", "s2c")[d], frames=(m.frame, m.first_frame),
                detail={"offset": m.offset, "length": m.length, "first": m.first, "second": m.second,
                        "first_frame": m.first_frame, "policy": "first copy wins"},
                rule="RFC 9293 3.10.7.4 (a retransmission carries the same bytes)",
            ))
        # which cap the reassembler reached (bytes first): the finding says what was buffered
        capped = ((f"more than {MAX_BUFFERED / (1 << 20):g} MiB of out-of-order data was", {"cap_bytes": MAX_BUFFERED})
                  if r.overflowed
                  else (f"more than {MAX_PENDING:,} out-of-order segments were", {"cap_segments": MAX_PENDING})
                  if r.overflowed_segments else None)
        if capped is not None:
            what, detail = capped
            out.append(Finding(
                "tcp.reassembly-capped", Severity.NOTICE,
                f"{what} buffered in one direction; the oldest hole was declared a gap so analysis could continue",
                conversation=cid, direction=("c2s", "s2c")[d], detail=detail,
            ))
    if conv.reuse_of is not None:
        out.append(Finding(
            "tcp.port-reuse", Severity.NOTICE,
            f"this conversation reuses the 4-tuple of conversation {conv.reuse_of} with a new initial sequence "
            "number (a new SYN on the same addresses and ports)",
            conversation=cid, frames=(conv.reuse_frame,) if conv.reuse_frame else (),
            detail={"previous": conv.reuse_of},
            rule="Wireshark tcp.analysis.reused_ports",
        ))
    return out
