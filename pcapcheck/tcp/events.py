"""What the TCP layer hands to the application analyzers (sans-IO events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

from pcapcheck.frozen import fast_frozen

# TCP flag bits (RFC 9293 §3.1)
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80


class StreamData(NamedTuple):
    """In-order bytes of one direction. ``offset`` counts from the first byte after the SYN (0).

    A NamedTuple rather than a frozen dataclass: one is built per in-order segment, and a
    frozen dataclass's ``__init__`` costs three times as much. Just as immutable.
    """

    direction: str  # "c2s" | "s2c"
    offset: int
    data: bytes
    frame: int  # the frame whose payload carried these bytes (first copy wins)
    ts: int  # packet time, integer nanoseconds


@fast_frozen
@dataclass(frozen=True, slots=True)
class Gap:
    """Bytes of the stream that were never captured; analyzers must not treat them as malformed."""

    direction: str
    offset: int
    length: int
    frame: int  # the first frame after the gap
    reason: str  # "lost" (never captured) | "snaplen" (cut by the capture's snaplen)


@fast_frozen
@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The direction will deliver no more bytes."""

    direction: str
    offset: int  # stream offset where it ended
    frame: int | None
    reason: str  # "fin" | "rst" | "capture-ended"
