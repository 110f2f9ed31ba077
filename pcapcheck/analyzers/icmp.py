"""ICMP and ICMPv6 errors about a conversation's segments: ``tcp.icmp.*`` findings.

A router, firewall or host that drops a segment may say so with an ICMP error quoting the start of it
(RFC 792, RFC 4443): destination unreachable (a firewall's reject, no route, a closed port), fragmentation
needed / packet too big (path MTU discovery, RFC 1191 and RFC 8201: larger packets are dropped on this
path), time exceeded (a routing loop or a TTL too small), parameter problem, source quench. The decoder
turns them into ``decode.IcmpError``; the pipeline attaches each to the conversation of the quoted 4-tuple
(``FlowTable.icmp``) and this module reports them per kind, with counts and frames, like the analysis flags.
ICMP errors are not authenticated: a host may ignore them (RFC 5927), and so the findings say what was
reported, not what the endpoint did about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, NamedTuple

from pcapcheck.decode import IcmpError, addr_text, endpoint_text
from pcapcheck.findings import Finding, Severity

MAX_FRAMES: Final = 20  # frames listed per kind

class IcmpMark(NamedTuple):
    """An ICMP error about one of the conversation's segments, for the report's packet ladder
    (``ConversationResult.icmp``; not in report.json: the ``tcp.icmp.*`` findings carry what it says)."""

    frame: int
    ts: int  # ns
    direction: int  # the ICMP message's: towards the sender of the quoted segment (0 = to the server)
    text: str  # "10.0.0.254: fragmentation needed and DF set (ICMP type 3 code 4), MTU 1400"


# kind -> (code, severity, rule)
KINDS: Final = {
    "unreachable": ("tcp.icmp.unreachable", Severity.WARNING, "RFC 792 (ICMP type 3), RFC 4443 3.1"),
    "frag-needed": ("tcp.icmp.frag-needed", Severity.WARNING, "RFC 1191 (ICMP type 3 code 4), RFC 8201 / RFC 4443 3.2"),
    "time-exceeded": ("tcp.icmp.time-exceeded", Severity.WARNING, "RFC 792 (ICMP type 11), RFC 4443 3.3"),
    "other": ("tcp.icmp.other", Severity.NOTICE, "RFC 792 (ICMP types 4, 12), RFC 4443 3.4"),
}

_UNREACH4: Final = {
    0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
    5: "source route failed", 6: "destination network unknown", 7: "destination host unknown",
    8: "source host isolated", 9: "network administratively prohibited", 10: "host administratively prohibited",
    11: "network unreachable for the type of service", 12: "host unreachable for the type of service",
    13: "communication administratively prohibited", 14: "host precedence violation",
    15: "precedence cutoff in effect",
}
_UNREACH6: Final = {
    0: "no route to destination", 1: "communication administratively prohibited",
    2: "beyond the scope of the source address", 3: "address unreachable", 4: "port unreachable",
    5: "source address failed ingress/egress policy", 6: "reject route to destination",
}
_EXCEEDED: Final = {0: "time to live exceeded in transit", 1: "fragment reassembly time exceeded"}
_EXCEEDED6: Final = {0: "hop limit exceeded in transit", 1: "fragment reassembly time exceeded"}
_PARAM4: Final = {0: "parameter problem (pointer indicates the error)", 1: "parameter problem (missing a required option)",
           2: "parameter problem (bad length)"}
_PARAM6: Final = {0: "parameter problem (erroneous header field)", 1: "parameter problem (unrecognized next header)",
           2: "parameter problem (unrecognized IPv6 option)"}
_FLAG_NAMES: Final = ((0x02, "SYN"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x20, "URG"))


def kind_of(ev: IcmpError) -> str:
    if ev.version == 4:
        if ev.type == 3:
            return "frag-needed" if ev.code == 4 else "unreachable"
        return "time-exceeded" if ev.type == 11 else "other"
    return {1: "unreachable", 2: "frag-needed", 3: "time-exceeded"}.get(ev.type, "other")


def reason_of(ev: IcmpError) -> str:
    """The message's type and code in words."""
    t, c = ev.type, ev.code
    if ev.version == 4:
        if t == 3:
            text = "fragmentation needed and DF set" if c == 4 else _UNREACH4.get(c, f"destination unreachable, code {c}")
        elif t == 11:
            text = _EXCEEDED.get(c, f"time exceeded, code {c}")
        elif t == 12:
            text = _PARAM4.get(c, f"parameter problem, code {c}")
        else:
            text = "source quench"
        return f"{text} (ICMP type {t} code {c})"
    if t == 1:
        text = _UNREACH6.get(c, f"destination unreachable, code {c}")
    elif t == 2:
        text = "packet too big"
    elif t == 3:
        text = _EXCEEDED6.get(c, f"time exceeded, code {c}")
    else:
        text = _PARAM6.get(c, f"parameter problem, code {c}")
    return f"{text} (ICMPv6 type {t} code {c})"


def flags_text(flags: int | None) -> str:
    if flags is None:
        return "flags not quoted"
    names = [n for bit, n in _FLAG_NAMES if flags & bit]
    return ",".join(names) if names else "no flags"


@dataclass(slots=True)
class _Kind:
    count: int = 0
    frames: list[int] = field(default_factory=list)
    first: IcmpError | None = None
    first_dir: int = 0
    reporters: dict[bytes, int] = field(default_factory=dict)  # reporter -> messages (first MAX_FRAMES kept)
    mtus: set[int] = field(default_factory=set)
    reasons: dict[str, int] = field(default_factory=dict)


class IcmpRecord:
    """The ICMP errors of one conversation, by kind: bounded (counts, the first frames, the first message), and
    the first MAX_FRAMES of each kind as ladder marks (``marks()``)."""

    __slots__ = ("kinds", "_marks")

    def __init__(self) -> None:
        self.kinds: dict[str, _Kind] = {}
        self._marks: list[IcmpMark] = []

    def marks(self) -> tuple[IcmpMark, ...]:
        return tuple(sorted(self._marks))

    def add(self, d: int, ev: IcmpError) -> None:
        kind = kind_of(ev)
        k = self.kinds.get(kind)
        if k is None:
            k = self.kinds[kind] = _Kind(first=ev, first_dir=d)
        k.count += 1
        if len(k.frames) < MAX_FRAMES:
            k.frames.append(ev.frame)
            k.reporters[ev.reporter] = k.reporters.get(ev.reporter, 0) + 1
            reason = reason_of(ev)
            k.reasons[reason] = k.reasons.get(reason, 0) + 1
            if ev.mtu is not None:
                k.mtus.add(ev.mtu)
            mtu = f", MTU {ev.mtu}" if ev.mtu is not None else ""
            self._marks.append(IcmpMark(ev.frame, ev.ts, 1 - d, f"{addr_text(ev.reporter)}: {reason}{mtu}"))


def icmp_findings(cid: int, record: IcmpRecord, endpoints: tuple[str, str],
                  bases: tuple[int | None, int | None] = (None, None)) -> list[Finding]:
    """One finding per kind of ICMP error, in KINDS order. ``endpoints``: client and server text; ``bases``:
    each direction's base sequence number (Wireshark's), for relative sequence numbers."""
    out = []
    for kind, (code, severity, rule) in KINDS.items():
        k = record.kinds.get(kind)
        if k is None:
            continue
        ev = k.first
        assert ev is not None
        d = k.first_dir
        sender = ("client", "server")[d]
        reporter = addr_text(ev.reporter)
        reason = reason_of(ev)
        base = bases[d]
        relative = (ev.seq - base) & 0xFFFFFFFF if base is not None else None
        seq_text = f"seq {relative} (raw {ev.seq})" if relative is not None else f"raw seq {ev.seq}"
        segment = f"{seq_text}, {flags_text(ev.qflags)}"
        more = f"; {k.count} such messages in all" if k.count > 1 else ""
        peer_host = endpoints[1 - d].rsplit(":", 1)[0].strip("[]")
        who = "the destination itself" if reporter == peer_host else reporter
        if kind == "frag-needed":
            mtu = f"MTU {ev.mtu}" if ev.mtu else "an unknown MTU (0: a router older than RFC 1191)"
            dropped = "larger packets with DF set are" if ev.version == 4 else "larger packets are"
            message = (f"{who} reported {reason} for a {ev.qlen}-byte packet from the {sender} ({segment}): the "
                       f"path carries at most {mtu}, and {dropped} dropped on it (path MTU discovery){more}")
        elif kind == "unreachable":
            message = (f"{who} reported {reason} for the {sender}'s segment ({segment}): the packet was dropped "
                       f"there, not delivered to {endpoints[1 - d]}{more}")
        elif kind == "time-exceeded":
            message = (f"{who} reported {reason} for the {sender}'s segment ({segment}): a routing loop, or a "
                       f"TTL / hop limit too small for the path{more}")
        else:
            message = f"{who} reported {reason} for the {sender}'s segment ({segment}){more}"
        detail: dict = {
            "count": k.count,
            "frames_listed": len(k.frames),
            "reporter": reporter,
            "icmp": {"version": ev.version, "type": ev.type, "code": ev.code},
            "reasons": dict(sorted(k.reasons.items())),
            "reporters": {addr_text(a): n for a, n in sorted(k.reporters.items())},
            "quoted": {"sender": sender, "seq": ev.seq, "relative_seq": relative, "flags": flags_text(ev.qflags),
                       "ip_length": ev.qlen},
        }
        if kind == "frag-needed":
            detail["mtu"] = ev.mtu
            detail["mtus"] = sorted(k.mtus)
        out.append(Finding(code, severity, message, conversation=cid, direction=("c2s", "s2c")[d],
                           frames=tuple(k.frames), detail=detail, rule=rule))
    return out


class UnattachedIcmp:
    """ICMP errors about TCP segments that no conversation takes (``FlowTable.icmp`` gave None): the quoted
    4-tuple is not in the capture (and the quote is too short for Wireshark to number a stream for it), or
    its conversation was finalized already. Reported once per input, not dropped silently."""

    __slots__ = ("count", "frames", "examples", "ended")

    def __init__(self) -> None:
        self.count = 0
        self.frames: list[int] = []
        self.examples: list[dict] = []
        self.ended: dict[int, int] = {}  # finalized conversation's id -> errors about it (at most MAX_FRAMES ids)

    def add(self, ev: IcmpError, ended: int | None = None) -> None:
        """``ended``: the id of the finalized conversation of the quoted 4-tuple, when the flow table still
        knows it (its tombstone)."""
        self.count += 1
        if len(self.frames) < MAX_FRAMES:
            self.frames.append(ev.frame)
        if ended is not None and (ended in self.ended or len(self.ended) < MAX_FRAMES):
            self.ended[ended] = self.ended.get(ended, 0) + 1
        if len(self.examples) < 5:
            src, sport, dst, dport = ev.key
            self.examples.append({"frame": ev.frame, "reporter": addr_text(ev.reporter), "reason": reason_of(ev),
                                  "quoted": f"{endpoint_text(src, sport)} -> {endpoint_text(dst, dport)}",
                                  "seq": ev.seq, "conversation": ended})

    def findings(self, path: str) -> list[Finding]:
        if not self.count:
            return []
        first = self.examples[0]
        whose = (f"conversation {first['conversation']}, finalized before the error came"
                 if first["conversation"] is not None else "no conversation of the report")
        ended = (f"; {sum(self.ended.values())} of them about conversation(s) already finalized: "
                 f"{', '.join(map(str, sorted(self.ended)))}" if self.ended else "")
        return [Finding(
            "tcp.icmp.unattached", Severity.NOTICE,
            f"{path}: {self.count} ICMP error(s) about TCP segments that no conversation took (the segment's "
            f"conversation is not in the capture, or had been finalized){ended}: first frame {first['frame']}, "
            f"{first['reporter']} reported {first['reason']} for {first['quoted']} ({whose})",
            frames=tuple(self.frames),
            detail={"count": self.count, "examples": self.examples, "ended_conversations": sorted(self.ended)},
            rule="RFC 792, RFC 4443 2.4",
        )]
