"""What the sans-IO HTTP parsers report: a fault at a stream offset, before it becomes a Finding.

The parsers know bytes and offsets only; the analyzer adds the conversation, direction, frames, excerpt,
severity, rule and peers (pcapcheck.analyzers.http1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    code: str
    offset: int  # stream offset of the offending bytes
    length: int
    message: str  # one sentence a ticket can quote
    detail: dict[str, Any] = field(default_factory=dict)
    frames: tuple[int, ...] = ()  # evidence frames when the parser knows them better than the offset does
    rule: str = ""  # overrides the code's default rule
    excerpt: tuple[int, bytes] | None = None  # (offset, bytes) when the bytes are no longer in the stream buffer


def show(value: bytes, limit: int = 80) -> str:
    """Bytes as a ticket should quote them: Python's escaped literal, cut after ``limit`` bytes."""
    if len(value) > limit:
        text = repr(bytes(value[:limit]))
        return text[:-1] + "..." + text[-1]
    return repr(bytes(value))


def plural(n: int, word: str) -> str:
    """``1 byte``, ``2 bytes``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")
