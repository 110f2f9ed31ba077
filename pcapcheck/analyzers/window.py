"""``tcp.out-of-window``: segments Linux conntrack would not simply ACCEPT (DESIGN.md 5, REFERENCE.md 4.3-4.4).

The verdicts come from :class:`pcapcheck.tcp.window.ConntrackWindow`; this analyzer turns the
non-ACCEPT ones into findings that say which bound failed, by how many bytes, what each kernel
generation does with the packet and what that means for NAT: an INVALID packet loses its conntrack
entry, so iptables NAT does not translate it (``nf_nat_inet_fn``: "Can't track? ... return
NF_ACCEPT") and it reaches the host un-NATed.

One finding per segment, capped per conversation (:data:`MAX_FINDINGS`); the last one carries the
count and the first frames of the rest.
"""

from __future__ import annotations

from typing import Any, Final

from pcapcheck.findings import Finding, Severity
from pcapcheck.tcp.events import ACK, FIN, RST, SYN
from pcapcheck.tcp.tracker import ACK_LOST_SEGMENT, LOST_SEGMENT

MAX_FINDINGS: Final = 20
MORE_FRAMES: Final = 50  # frames of the suppressed rest listed in the last finding

KERNELS: Final = {"6.1+": "new", "pre-6.1": "old"}

# What each bound means, for people (the kernel's own log text goes in detail.log).
RULE_TEXT: Final = {
    "I": ("SEQ is over the upper bound (beyond the receiver's window)", "bytes over"),
    "II": ("SEQ is under the lower bound (already ACKed data retransmitted)", "bytes below"),
    "III": ("ACK is over the upper bound (acknowledges data not seen yet)", "bytes beyond"),
    "IV": ("ACK is under the lower bound (possible overly delayed ACK)", "bytes below"),
    "flags": ("invalid TCP flag combination (tcp_error)", ""),
    "state": ("invalid in conntrack's state table before the handshake completed", ""),
}


def rule_of(j: Any) -> tuple[str | None, int, int | None, str | None]:
    """(rule, bytes, bound, log) of the verdict that is not ACCEPT (6.1+ first, else < 6.1)."""
    if getattr(j, "new", "ACCEPT") != "ACCEPT":
        return j.rule, getattr(j, "bytes_over", 0), getattr(j, "bound", None), getattr(j, "log", None)
    return (getattr(j, "rule_old", None) or getattr(j, "rule", None), getattr(j, "bytes_over_old", 0),
            getattr(j, "bound_old", None), getattr(j, "log_old", None))


def rule_phrase(j: Any) -> str:
    """"rule II: SEQ is under the lower bound (...), 123456 bytes below"."""
    rule, nbytes, _bound, _log = rule_of(j)
    text, unit = RULE_TEXT.get(rule or "", (f"rule {rule}", ""))
    if rule in ("I", "II", "III", "IV"):
        return f"rule {rule}: {text}, {nbytes} {unit}" if nbytes else f"rule {rule}: {text}"
    return text


def generations(j: Any) -> str:
    """Which kernel generations do not ACCEPT it: "<6.1", ">=6.1" or "both"."""
    new_bad = getattr(j, "new", "ACCEPT") != "ACCEPT"
    old_bad = getattr(j, "old", "ACCEPT") != "ACCEPT"
    if new_bad and old_bad:
        return "both"
    return ">=6.1" if new_bad else "<6.1"


def consequence(j: Any) -> str:
    """What conntrack does on each generation, for the message."""
    new, old = getattr(j, "new", "ACCEPT"), getattr(j, "old", "ACCEPT")
    if new == "INVALID" and old == "INVALID":
        return ("conntrack marks it INVALID on every kernel, so iptables NAT would skip it (and an "
                "INVALID-drop rule would drop it)")
    if old == "INVALID" and new == "IGNORE":
        return "conntrack on kernels < 6.1 would mark it INVALID, so iptables NAT would skip it (6.1+: IGNORE, still NATed)"
    if old == "INVALID" and new == "ACCEPT":
        return "conntrack on kernels < 6.1 would mark it INVALID, so iptables NAT would skip it (6.1+: ACCEPT)"
    if new == "INVALID":
        return (f"conntrack on kernels >= 6.1 would mark it INVALID, so iptables NAT would skip it (< 6.1: {old})")
    if new == "IGNORE":
        return (f"conntrack on kernels >= 6.1 IGNOREs it (keeps the connection's entry, still NATed; < 6.1: {old})")
    return f"conntrack verdicts: {new} on >= 6.1, {old} on < 6.1"


class WindowAnalyzer:
    """Collects non-ACCEPT conntrack verdicts of one conversation; ``finish`` returns the findings."""

    __slots__ = ("cid", "kernel", "_records", "_count", "_more_frames", "_lossy")

    def __init__(self, conversation_id: int, kernel: str = "6.1+") -> None:
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel generation {kernel!r}: use one of {', '.join(KERNELS)}")
        self.cid = conversation_id
        self.kernel = kernel
        self._records: list[tuple] = []
        self._count = 0
        self._more_frames: list[int] = []
        self._lossy = False  # a judged segment followed bytes the capture missed

    def judged(self, d: int, pkt: Any, judgement: Any, mask: int = 0) -> None:
        """One segment whose judgement is not ACCEPTED (any generation not ACCEPT). ``mask``: the packet's
        Wireshark analysis flags, when the caller has them (capture loss makes some verdicts artifacts)."""
        if getattr(judgement, "new", "ACCEPT") == "ACCEPT" and getattr(judgement, "old", "ACCEPT") == "ACCEPT":
            return
        self._count += 1
        if mask & (ACK_LOST_SEGMENT | LOST_SEGMENT):
            self._lossy = True
        if len(self._records) < MAX_FINDINGS:
            # After capture loss the model lacks bytes conntrack on the path saw: bounds I and III (seq beyond the
            # window, ACK of data not seen) can fail for that reason alone, for the rest of the conversation.
            rule = rule_of(judgement)[0]
            self._records.append((d, pkt.frame, pkt.seq, pkt.ack, pkt.flags, pkt.seglen, judgement,
                                  self._lossy and rule in ("I", "III")))
        elif len(self._more_frames) < MORE_FRAMES:
            self._more_frames.append(pkt.frame)

    @property
    def count(self) -> int:
        return self._count

    def finish(self) -> list[Finding]:
        out: list[Finding] = []
        key = KERNELS[self.kernel]
        for i, (d, frame, seq, ack, flags, seglen, j, lossy) in enumerate(self._records):
            verdict = getattr(j, key)
            other = getattr(j, "old" if key == "new" else "new")
            rule, nbytes, bound, log = rule_of(j)
            log_new = getattr(j, "log", None)
            log_old = getattr(j, "log_old", None)
            sev = Severity.ERROR if verdict == "INVALID" else Severity.WARNING
            what = _segment_kind(flags, seglen)
            msg = (f"frame {frame} ({what}) is outside the receiver's window by conntrack's rules ({rule_phrase(j)}): "
                   f"{consequence(j)}")
            if rule in ("flags", "state"):
                msg = f"frame {frame} ({what}) is not valid for conntrack ({rule_phrase(j)}): {consequence(j)}"
            if rule == "state":
                # Before the handshake completed: on a capture this is as often a handshake packet the
                # capture missed (asymmetric routing, capture started late) as a real stray packet.
                sev = min(sev, Severity.WARNING)
                msg += ("; check whether the capture missed part of the handshake (asymmetric capture point or "
                        "capture started late): a conntrack that saw it would accept this packet")
            if lossy:
                # The capture missed bytes next to this segment; conntrack on the path saw them.
                sev = min(sev, Severity.WARNING)
                msg += ("; the capture missed segments before it (Wireshark: previous segment not captured / ACKed "
                        "unseen segment), so this verdict may be an artifact of capture loss")
            detail: dict[str, Any] = {
                "rule": rule,
                "verdict": verdict,
                "verdict_new": j.new,
                "verdict_old": j.old,
                "kernel": generations(j),
                "selected_kernel": ">=6.1" if key == "new" else "<6.1",
                "other_verdict": other,
                "bytes_over": nbytes,
                "bound": bound,
                "log": f"nf_ct_proto_6: {log_new}" if log_new else None,
                "log_old": f"nf_ct_proto_6: {log_old}" if log_old else None,
                "seq": seq,
                "ack": ack if flags & ACK else None,
                "len": seglen,
                "flags": _flag_text(flags),
                "capture_loss": lossy,
            }
            for name in ("td_end", "td_maxend", "td_maxwin", "receiver_td_end", "receiver_td_maxwin", "sack"):
                v = getattr(j, name, None)
                if v is not None:
                    detail[name] = v
            if i == len(self._records) - 1 and self._count > len(self._records):
                rest = self._count - len(self._records)
                detail["more"] = rest
                detail["more_frames"] = list(self._more_frames)
                msg += f" ({rest} more such segments in this conversation, first: frame {self._more_frames[0]})"
            out.append(Finding(
                "tcp.out-of-window", sev, msg, conversation=self.cid, direction=("c2s", "s2c")[d],
                frames=(frame,), detail=detail,
                rule="Linux nf_conntrack_proto_tcp.c tcp_in_window() bound " + (rule or "?")
                + "; NAT skips INVALID packets (nf_nat_inet_fn)",
            ))
        return out


def _segment_kind(flags: int, seglen: int) -> str:
    parts = []
    if flags & SYN:
        parts.append("SYN")
    if flags & FIN:
        parts.append("FIN")
    if flags & RST:
        parts.append("RST")
    if seglen:
        parts.append(f"{seglen} bytes")
    elif not parts:
        parts.append("ACK")
    return ", ".join(parts)


def _flag_text(flags: int) -> str:
    names = ((FIN, "F"), (SYN, "S"), (RST, "R"), (0x08, "P"), (ACK, "A"), (0x20, "U"), (0x40, "E"), (0x80, "C"))
    return "".join(n for bit, n in names if flags & bit)
