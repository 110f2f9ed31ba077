"""Findings: the one result type every analyzer produces.

A finding is evidence a ticket can quote: a stable ``code``, a ``severity``, the
conversation and direction it concerns, the frames that prove it (the first is
the main one), one sentence, structured ``detail`` and the ``rule`` behind it.
Codes are documented in docs/findings.md and never reused.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered so that ``a >= b`` means "at least as bad as"."""

    INFO = 0
    NOTICE = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}: use error, warning, notice or info") from None


C2S = "c2s"
S2C = "s2c"


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str
    conversation: int | None = None
    direction: str | None = None  # "c2s" | "s2c" | None
    frames: tuple[int, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
    rule: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.label,
            "message": self.message,
            "conversation": self.conversation,
            "direction": self.direction,
            "frames": list(self.frames),
            "detail": _jsonable(self.detail),
            "rule": self.rule,
        }


def _jsonable(value: Any) -> Any:
    """Detail values are plain data; bytes become text with escapes (evidence, not markup)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1").encode("unicode_escape").decode("ascii")
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value, Severity) else value.value
    return value


def sort_key(f: Finding) -> tuple:
    """Worst first, then by main frame."""
    return (-int(f.severity), f.frames[0] if f.frames else 0, f.code)
