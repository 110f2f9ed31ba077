"""How a conversation ended, in one sentence (``conversation.end``, DESIGN.md 4).

``end`` is one of ``fin`` (both sides closed with FIN), ``rst`` (a reset ended it, or tried to),
``incomplete`` (the handshake never completed, or the conversation stopped without FIN/RST before
the end of the capture) and ``capture-ended`` (still open when the capture stopped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pcapcheck.findings import Finding, Severity
from pcapcheck.frozen import fast_frozen

PHASE_WORDS: Final = {
    "handshake": "during the handshake",
    "request": "during the request",
    "response": "during the response",
    "idle": "while the connection was idle",
    "after-fin": "after the close had begun",
}


@fast_frozen
@dataclass(frozen=True, slots=True)
class RstSummary:
    frame: int
    sender: str  # client | server
    origin: str
    effect: str
    phase: str
    superseded: bool = False  # its sender then sent a new SYN: it hit an older incarnation, not this one


@fast_frozen
@dataclass(frozen=True, slots=True)
class EndFacts:
    syn_frame: int | None  # client's SYN
    synack_frame: int | None
    established: bool
    midstream: bool
    fin_frames: tuple[int | None, int | None]  # (client, server)
    rsts: tuple[RstSummary, ...]
    capture_ended: bool
    packets: tuple[int, int]


def describe(f: EndFacts) -> tuple[str, str, dict]:
    """(end, sentence, detail)."""
    cfin, sfin = f.fin_frames
    detail: dict = {"fin_frames": {"client": cfin, "server": sfin}}
    effective = [r for r in f.rsts if r.effect in ("accepted", "unknown") and not r.superseded]
    if f.rsts:
        detail["rst_frames"] = [r.frame for r in f.rsts]
    if effective:
        r = effective[0]
        detail.update(by=r.sender, rst_frame=r.frame, origin=r.origin)
        if r.origin == "refused":
            return "rst", f"refused: the {r.sender} answered the SYN with RST (frame {r.frame})", detail
        who = f"a forged RST claiming to be the {r.sender}" if r.origin == "injected" else f"the {r.sender}"
        sentence = f"reset by {who} (frame {r.frame}) {PHASE_WORDS.get(r.phase, '')}".rstrip()
        closes = _fin_words(cfin, sfin)
        if closes:
            sentence += f" ({closes})"
        return "rst", sentence, detail
    ignored_note = ""
    if f.rsts:
        ignored_note = "; RST frame(s) " + ", ".join(str(r.frame) for r in f.rsts) + " had no effect"
    if cfin is not None and sfin is not None:
        first, second = (("client", cfin), ("server", sfin)) if cfin <= sfin else (("server", sfin), ("client", cfin))
        return "fin", (f"closed normally: the {first[0]} sent FIN (frame {first[1]}), the {second[0]} FIN "
                       f"(frame {second[1]}){ignored_note}"), detail
    if f.rsts and not f.established and cfin is None and sfin is None:
        r = f.rsts[0]
        return "rst", (f"reset attempt by the {r.sender} (frame {r.frame}) {PHASE_WORDS.get(r.phase, '')}, "
                       f"not accepted by the receiver"), detail
    if not f.midstream and not f.established:
        if f.syn_frame is not None and f.synack_frame is None:
            if f.packets[1] == 0:
                return "incomplete", f"incomplete: only a SYN was seen (frame {f.syn_frame}), never answered" \
                    + ignored_note, detail
            return "incomplete", "incomplete: the SYN was never answered with a SYN-ACK" + ignored_note, detail
        if f.synack_frame is not None and f.syn_frame is None and sum(f.packets) == 1:
            return "incomplete", f"incomplete: only a SYN-ACK was seen (frame {f.synack_frame})", detail
        return "incomplete", "incomplete: the handshake never completed" + ignored_note, detail
    half = _fin_words(cfin, sfin)
    if f.capture_ended:
        text = "the capture ended while the conversation was open"
        if half:
            text += f" (half-closed: {half})"
        return "capture-ended", text + ignored_note, detail
    text = "incomplete: neither FIN nor RST was seen before the conversation went idle"
    if half:
        text = f"incomplete: half-closed ({half}); the other side never closed"
    return "incomplete", text + ignored_note, detail


def _fin_words(cfin: int | None, sfin: int | None) -> str:
    parts = []
    if cfin is not None:
        parts.append(f"client FIN at frame {cfin}")
    if sfin is not None:
        parts.append(f"server FIN at frame {sfin}")
    return ", ".join(parts)


def finding(cid: int, end: str, sentence: str, detail: dict, frames: tuple[int, ...]) -> Finding:
    return Finding("conversation.end", Severity.INFO, sentence[0].upper() + sentence[1:], conversation=cid,
                   frames=frames, detail={"end": end, **detail}, rule="RFC 9293 3.6 (closing), 3.10.7 (reset)")
