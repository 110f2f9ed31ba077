"""View models for the HTML report: plain frozen data, built in one pass from a ConversationResult.

The report is made in three steps, as coverage.py's HTML report is: gather (the pipeline's results), build
views (this module), render templates (``html_report``). No markup is written here: these classes decide
*what* is shown, the templates decide how it looks.

The classes made many times a page (ladder rows, text runs and lines, hex rows, detail rows) are NamedTuples:
cheap to make, and the templates unpack them in their for loops (``{% for text, cls in runs %}``), which costs
no attribute lookup per item; their field order is part of the templates' contract.

Every byte of traffic is attacker-controlled. Here it only ever becomes *text*: bytes are shown with
printable ASCII kept and everything else as a visible escape (``\\x00``, ``\\r``); the template engine then
escapes that text. Anchors, file names, CSS classes and URLs are made from integers and fixed vocabularies
(severity labels, TCP flag letters, mark kinds) only, never from capture content.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any, Final, NamedTuple, TypeGuard

from pcapcheck import __version__
from pcapcheck.analyzers.http1 import PAGE_EXCHANGES_FIRST, PAGE_EXCHANGES_LAST, PAGE_EXCHANGES_MARKED
from pcapcheck.findings import Finding, Severity
from pcapcheck.http.model import JSON_BINARY_EXCERPT, JSON_BODY_EXCERPT, HttpExchange, is_binary
from pcapcheck.model import ConversationResult, ConversationSummary, InputSummary, PacketRow
from pcapcheck.tcp.events import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG

SEVERITIES: Final = tuple(s.label for s in sorted(Severity, reverse=True))  # ("error", "warning", "notice", "info")
BODY_TEXT_SHOWN: Final = JSON_BODY_EXCERPT  # body excerpt bytes shown in an HTTP message: all an ended message keeps
BODY_HEX_SHOWN: Final = JSON_BINARY_EXCERPT  # ... for a binary body (is_binary), as hex: as much as report.json gives
STREAM_HEX_LIMIT: Final = 1024  # a stream excerpt's hex view: the first KiB, then only the rows around marked bytes
GRAPH_POINTS: Final = 2000  # above this many I-bars per graph, unmarked segments are thinned per pixel column
INDEX_CODE_LINKS: Final = 30  # conversations linked per finding code in the index summary

# TCP flag bits' tcpdump letters, in tcpdump's printing order (print-tcp.c).
_FLAG_LETTERS: Final = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"), (ECE, "E"), (CWR, "W"))
_RETRANSMISSION: Final = frozenset({"tcp.retransmission", "tcp.fast-retransmission", "tcp.spurious-retransmission"})
DIRECTIONS: Final = ("c2s", "s2c")
DIRECTION_LABELS: Final = ("client → server", "server → client")  # by index, as DIRECTIONS
_DIRECTION_TEXT: Final = dict(zip(DIRECTIONS, DIRECTION_LABELS))


# -- names and anchors: integers only -------------------------------------------------------------------

def page_name(input_index: int, cid: int, part: int = 1) -> str:
    """The page's file name: from ids only (``conv-7.html``, ``in1-conv-7.html`` for the second input,
    ``conv-7-part2.html`` for the second part of a resumed conversation)."""
    k, c, p = int(input_index), int(cid), int(part)
    name = f"conv-{c}" if p == 1 else f"conv-{c}-part{p}"
    return f"{name}.html" if k == 0 else f"in{k}-{name}.html"


def row_anchor(input_index: int, cid: int, part: int = 1) -> str:
    """The index row's anchor: ``c7``, ``in1-c7`` for the second input, ``c7-part2`` for a second part."""
    k, c, p = int(input_index), int(cid), int(part)
    name = f"c{c}" if p == 1 else f"c{c}-part{p}"
    return name if k == 0 else f"in{k}-{name}"


# -- text from bytes ------------------------------------------------------------------------------------

_ESCAPES: Final = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_PIECES: Final = re.compile(rb"[\x20-\x7e]+|[^\x20-\x7e]")
# C0 and C1 controls, DEL, and the invisible characters that can disguise text (zero-width, bidi overrides).
_CONTROL_CHARS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")


def _escape_byte(b: int) -> str:
    return _ESCAPES.get(b) or f"\\x{b:02x}"


_ESC_TABLE: Final = [_escape_byte(b) for b in range(256)]


def visible(text: str) -> str:
    """A str with control and invisible characters shown as escapes, so nothing is hidden or reordered."""
    if text.isascii() and text.isprintable():  # the common case, tested in C: nothing to escape
        return text
    return _CONTROL_CHARS.sub(_escape_char, text)


def _escape_char(m: re.Match[str]) -> str:
    c = ord(m.group())
    if c < 0x100:
        return _escape_byte(c)
    return f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"


def as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        # Text that stands for bytes (a detail value given as str): code points < 256 are the bytes.
        return value.encode("latin-1", "backslashreplace")
    return str(value).encode("ascii", "backslashreplace")


def bytes_text(data: bytes) -> str:
    """Bytes as one line of text: printable ASCII as is, everything else escaped."""
    return "".join(m.group().decode("ascii") if len(m.group()) > 1 or 0x20 <= m.group()[0] <= 0x7E
                   else _escape_byte(m.group()[0]) for m in _PIECES.finditer(data))


def value_text(value: Any) -> str:
    """Any detail value as one line of text (scalars plainly, containers as compact JSON)."""
    if type(value) is str:  # the common cases first
        return visible(value)
    if type(value) is int:
        return str(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes_text(bytes(value))
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bytes)) for v in value):
        return ", ".join(value_text(v) for v in value)
    if isinstance(value, Mapping) and all(isinstance(v, (str, int, float, bool)) or v is None for v in value.values()):
        # a flat record such as a framing: {"type": "content-length", "length": 29} -> "content-length, length 29"
        # (only a text "type" or "kind" is the record's name: a number, such as an ICMP type, is a field)
        named = next((k for k in ("type", "kind") if isinstance(value.get(k), str)), None)
        parts = [value_text(value[named])] if named is not None else []
        parts += [f"{visible(str(k))} {value_text(v)}" for k, v in value.items() if k != named]
        return ", ".join(parts)
    return visible(json.dumps(_plain(value), sort_keys=True, ensure_ascii=False, default=str))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes_text(bytes(value))
    return value


_tuple_new = tuple.__new__  # _tuple_new(Run, (...)): a NamedTuple without its Python-level __new__ (a lambda)


class Run(NamedTuple):
    """A piece of text with one style: ``cls`` is "", "c" (escaped control/non-ASCII), "m" (marked), "m c"."""

    text: str
    cls: str


class HexRow(NamedTuple):
    """16 bytes: offset, hex column, ASCII column. The hex runs come with a ``Run(" ", "")`` between them (the
    template writes runs one after the other), so a row is written without a loop counter."""

    offset: str
    hex: tuple[Run, ...]
    ascii: tuple[Run, ...]


@dataclass(frozen=True, slots=True)
class BytesView:
    """Bytes shown twice: as text lines (control bytes escaped) and as hex+ASCII rows, marks highlighted."""

    start: int  # stream offset of the first byte
    size: int
    lines: tuple[Line, ...]  # () for binary data shown as hex only
    hex_rows: tuple[HexRow, ...]
    marked: int  # number of marked bytes


def _mask(n: int, spans: Iterable[tuple[int, int]]) -> bytearray:
    mask = bytearray(n)
    for s, e in spans:
        s, e = max(0, s), min(n, e)
        if s < e:
            mask[s:e] = b"\x01" * (e - s)
    return mask


def _partitions(mask: bytearray) -> list[tuple[int, int, bool]]:
    """[start, end, marked) runs covering the mask."""
    out: list[tuple[int, int, bool]] = []
    n, i = len(mask), 0
    while i < n:
        m = mask[i]
        j = mask.find(b"\x00" if m else b"\x01", i)
        j = n if j < 0 else j
        out.append((i, j, bool(m)))
        i = j
    return out


def _append(runs: list[Run], text: str, cls: str) -> None:
    if runs and runs[-1].cls == cls:
        runs[-1] = _tuple_new(Run, (runs[-1].text + text, cls))
    else:
        runs.append(_tuple_new(Run, (text, cls)))


class Line(NamedTuple):
    """A line of text from bytes. A CRLF or LF ending is a class (``end``), drawn by CSS as ``\\r\\n`` or ``\\n``,
    so the common case costs no extra element: "crlf", "lf", "crlf mk" / "lf mk" (marked) or "" (no ending, or
    an ending whose bytes are marked differently, then left in ``runs``)."""

    runs: tuple[Run, ...]
    end: str


_LINE_PIECES: Final = re.compile(rb"[\x20-\x7e]+|\n|[^\x20-\x7e\n]+")


BINARY_LINE_SHOWN: Final = 48  # bytes shown of a line that is binary data (the rest is summarized)


def text_lines(data: bytes, mask: bytearray) -> tuple[Line, ...]:
    """Lines of text: a new line after every LF byte; control bytes and non-ASCII shown escaped. A long line
    of binary data (a compressed or encrypted body) is cut after BINARY_LINE_SHOWN bytes unless a finding
    marks bytes in it: four escaped characters per byte would drown the text around it."""
    lines: list[Line] = []
    start, n = 0, len(data)
    marked = 1 in mask  # without marks (the common case) the mask need not be looked at again
    while start < n:
        nl = data.find(b"\n", start)
        stop = n if nl < 0 else nl + 1
        body_end, end = stop, ""
        if nl >= 0:
            cr = nl > start and data[nl - 1] == 0x0D
            first = nl - 1 if cr else nl
            if not marked:
                end, body_end = "crlf" if cr else "lf", first
            elif mask[first:stop].count(mask[nl]) == stop - first:  # the ending is marked (or not) as a whole
                end = ("crlf" if cr else "lf") + (" mk" if mask[nl] else "")
                body_end = first
        if not marked:
            if body_end - start > 2 * BINARY_LINE_SHOWN and is_binary(data[start:body_end]):
                cut = start + BINARY_LINE_SHOWN
                runs = _piece_runs(data, start, cut, "") + (
                    Run(f" ... {body_end - cut} more bytes of binary data", "c"),)
            else:
                runs = _piece_runs(data, start, body_end, "") if body_end > start else ()
            lines.append(_tuple_new(Line, (runs, end)))
        elif body_end - start > 2 * BINARY_LINE_SHOWN and is_binary(data[start:body_end]) \
                and not any(mask[start:body_end]):
            cut = start + BINARY_LINE_SHOWN
            runs = _runs(data, mask, start, cut) + (Run(f" ... {body_end - cut} more bytes of binary data", "c"),)
            lines.append(_tuple_new(Line, (runs, end)))
        else:
            lines.append(_tuple_new(Line, (_runs(data, mask, start, body_end), end)))
        start = stop
    return tuple(lines)


def _runs(data: bytes, mask: bytearray, start: int, stop: int) -> tuple[Run, ...]:
    if stop <= start:
        return ()
    if not any(mask[start:stop]):  # the common case: no marks
        return _piece_runs(data, start, stop, "")
    out: list[Run] = []
    for s, e, marked in _partitions(mask[start:stop]):
        for r in _piece_runs(data, start + s, start + e, "m" if marked else ""):
            _append(out, r.text, r.cls)
    return tuple(out)


_PRINTABLE: Final = re.compile(rb"[\x20-\x7e]+")


def _piece_runs(data: bytes, start: int, stop: int, m: str) -> tuple[Run, ...]:
    if _PRINTABLE.fullmatch(data, start, stop):  # the common case: one piece of plain text
        return (_tuple_new(Run, (data[start:stop].decode("ascii"), m)),)
    c = f"{m} c".strip()
    out: list[Run] = []
    for piece in _LINE_PIECES.finditer(data, start, stop):
        p = piece.group()
        if 0x20 <= p[0] <= 0x7E:
            out.append(_tuple_new(Run, (p.decode("ascii"), m)))
        else:
            out.append(_tuple_new(Run, ("".join([_ESC_TABLE[b] for b in p]), c)))
    return tuple(out)


_HEX_SPACE: Final = Run(" ", "")
_ASCII_PIECES: Final = re.compile(rb"[\x20-\x7e]+|[^\x20-\x7e]+")  # printable runs and the others, for the ASCII column
_ASCII_COLUMN: Final = bytes(b if 0x20 <= b <= 0x7E else 0x2E for b in range(256))  # "." for the rest
HEX_CONTEXT: Final = 32  # bytes shown around marked bytes beyond a hex view's limit


def _hex_wanted(mask: bytearray, limit: int | None) -> range | list[int]:
    """Row offsets to show: all, or those within ``limit`` plus the rows around marked bytes."""
    n = len(mask)
    if limit is None or n <= limit and limit:
        return range(0, n, 16)
    rows = set(range(0, limit, 16))
    i = mask.find(1, limit)
    while i >= 0:
        first = max(0, i - HEX_CONTEXT) // 16 * 16
        j = mask.find(0, i)
        j = n if j < 0 else j
        rows.update(range(first, min(n, j + HEX_CONTEXT), 16))
        i = mask.find(1, j)
    return sorted(rows)


def hex_rows(data: bytes, mask: bytearray, start: int, limit: int | None = None) -> tuple[HexRow, ...]:
    """16 bytes a row (a ``Run(" ", "")`` between two hex runs). With ``limit``, only the rows of the first
    ``limit`` bytes and those around marked bytes; an empty offset stands for rows left out."""
    rows = []
    prev = -16
    marked = 1 in mask
    for off in _hex_wanted(mask, limit):
        if off != prev + 16:
            rows.append(HexRow("", (Run(f"... {off - prev - 16} bytes not shown ...", "c"),), ()))
        prev = off
        chunk = data[off:off + 16]
        if not marked or not any(mask[off:off + 16]):  # the common case: one run per column
            asc = chunk.translate(_ASCII_COLUMN).decode("ascii")
            rows.append(_tuple_new(HexRow, (f"{start + off:08x}", (_tuple_new(Run, (chunk.hex(" "), "")),),
                                             (_tuple_new(Run, (asc, "")),))))
            continue
        # A run per stretch of equally marked bytes in the hex column; in the ASCII column, each stretch split
        # where bytes turn printable or not (classes m / "" and "m c" / "c"). Neighbouring runs always differ
        # in class, so none needs merging (a snaplen-cut capture's pages have thousands of such rows).
        hx: list[Run] = []
        asc_runs: list[Run] = []
        i, stop = off, off + len(chunk)
        while i < stop:
            m = mask[i]
            j = mask.find(0 if m else 1, i, stop)
            if j < 0:
                j = stop
            cls, esc = ("m", "m c") if m else ("", "c")
            if hx:
                hx.append(_HEX_SPACE)
            hx.append(_tuple_new(Run, (data[i:j].hex(" "), cls)))
            for piece in _ASCII_PIECES.finditer(data, i, j):
                p = piece.group()
                if 0x20 <= p[0] <= 0x7E:
                    asc_runs.append(_tuple_new(Run, (p.decode("ascii"), cls)))
                else:
                    asc_runs.append(_tuple_new(Run, ("." * len(p), esc)))
            i = j
        rows.append(_tuple_new(HexRow, (f"{start + off:08x}", tuple(hx), tuple(asc_runs))))
    if limit is not None and prev + 16 < len(data):
        rows.append(HexRow("", (Run(f"... {len(data) - prev - 16} bytes not shown ...", "c"),), ()))
    return tuple(rows)


def bytes_view(data: bytes, start: int = 0, spans: Iterable[tuple[int, int]] = (),
               hex_limit: int | None = None, text: bool = True) -> BytesView:
    """``spans`` are [start, end) in the same offsets as ``start`` (stream offsets). ``text=False``: hex only."""
    mask = _mask(len(data), ((s - start, e - start) for s, e in spans))
    return BytesView(start, len(data), text_lines(data, mask) if text else (),
                     hex_rows(data, mask, start, hex_limit), mask.count(1))


# -- times and numbers ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _utc_second(sec: int) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` of a second after the epoch (None out of range). Cached: formatting a datetime
    costs microseconds, and an index or a ladder names the same seconds over and over."""
    try:
        return f"{datetime.fromtimestamp(sec, tz=timezone.utc):%Y-%m-%d %H:%M:%S}"
    except (OverflowError, OSError, ValueError):
        return None


def utc(ns: int | None) -> str:
    """Packet time in UTC with nanosecond precision."""
    if ns is None:
        return "-"
    sec, frac = divmod(int(ns), 10**9)
    text = _utc_second(sec)
    return f"{ns} ns after the epoch" if text is None else f"{text}.{frac:09d} UTC"


def clock(ns: int) -> str:
    """Time of day to the microsecond (the index's start column; the date is in the title)."""
    sec, frac = divmod(int(ns), 10**9)
    text = _utc_second(sec)
    return str(ns) if text is None else f"{text[11:]}.{frac // 1000:06d}"


def duration(ns: int) -> str:
    ns = int(ns)
    if abs(ns) < 1000:
        return f"{ns} ns"
    if abs(ns) < 10**6:
        return f"{ns / 1e3:.3f} µs"
    if abs(ns) < 10**9:
        return f"{ns / 1e6:.3f} ms"
    return f"{ns / 1e9:.6f} s"


def number(n: int) -> str:
    return f"{int(n):,}"


def flag_text(flags: int) -> str:
    """tcpdump's notation: ``[S.]`` for SYN+ACK, ``[R]`` for a bare RST, ``[none]`` for no flags."""
    letters = "".join(c for bit, c in _FLAG_LETTERS if flags & bit)
    return f"[{letters or 'none'}]"


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


# -- findings ---------------------------------------------------------------------------------------------

class FrameRef(NamedTuple):
    frame: int
    linked: bool  # the frame is in the page's ladder (an ``#f<frame>`` anchor exists)


class DetailRow(NamedTuple):
    key: str
    text: str
    frames: tuple[FrameRef, ...] = ()  # non-empty when the value is a frame number or a list of them
    findings: tuple[tuple[int, str], ...] = ()  # (finding index, code): a "related" list naming other findings


@dataclass(frozen=True, slots=True)
class PeerRow:
    name: str
    text: str
    verdict: str  # "rejects" | "accepts" | "" (a CSS class, from a fixed set)


@dataclass(frozen=True, slots=True)
class LineRef:
    text: str
    frame: FrameRef | None


@dataclass(frozen=True, slots=True)
class FindingView:
    index: int  # ``#finding-<index>``
    code: str
    severity: str
    message: str
    direction: str  # "client → server" ...
    frames: tuple[FrameRef, ...]
    frames_more: int  # frames the finding lists beyond those shown
    rule: str
    details: tuple[DetailRow, ...]
    peers: tuple[PeerRow, ...]
    evidence: tuple[str, ...]
    lines: tuple[LineRef, ...]
    excerpt: BytesView | None
    brief: bool = False  # shown as one line (PAGE_FINDINGS_FULL)
    more: int = 0  # findings of the same code after this one that the page does not show


# A page shows the first PAGE_FINDINGS_FULL findings of each code in full, the next PAGE_FINDINGS_BRIEF as one line
# each, and counts the rest (a backend that sends a faulty header on every response of a long keep-alive
# connection gives thousands of identical findings; report.json lists them, analyzers.http1.FINDINGS_PER_CODE).
PAGE_FINDINGS_FULL = 50
PAGE_FINDINGS_BRIEF = 200

_SPECIAL_KEYS: Final = frozenset({"excerpt", "excerpt_offset", "peers", "evidence", "lines"})
FINDING_FRAMES_SHOWN: Final = 40


def _direction_text(direction: str | None) -> str:
    return _DIRECTION_TEXT.get(direction or "", "")


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _frame_refs(frames: Iterable[Any], shown: frozenset[int] | set[int]) -> tuple[FrameRef, ...]:
    """Frame numbers as links when the ladder has them; at most FINDING_FRAMES_SHOWN (the page says how many)."""
    out = []
    for f in frames:
        if _is_int(f):
            out.append(FrameRef(f, f in shown))
            if len(out) == FINDING_FRAMES_SHOWN:
                break
    return tuple(out)


def finding_view(i: int, f: Finding, shown: frozenset[int] | set[int],
                 codes: Mapping[str, list[int]] | None = None) -> FindingView:
    """``codes``: finding code -> indices of the conversation's findings, to link a "related" detail."""
    detail = f.detail or {}
    rows: list[DetailRow] = []
    for key, value in detail.items():
        key = str(key)
        if key in _SPECIAL_KEYS:
            continue
        related = _related(value, codes, i) if key == "related" else ()
        if related:
            rows.append(DetailRow(visible(key), value_text(value), (), related))
        else:
            rows.append(_detail_row(key, value, shown))
    peers = detail.get("peers")
    peer_rows: tuple[PeerRow, ...] = ()
    if isinstance(peers, Mapping):
        peer_rows = tuple(PeerRow(visible(str(k)), value_text(v), _peer_verdict(v)) for k, v in peers.items())
    elif peers is not None:
        rows.append(DetailRow("peers", value_text(peers), ()))
    evidence = detail.get("evidence")
    if evidence is None:
        ev: tuple[str, ...] = ()
    elif isinstance(evidence, (list, tuple)):
        ev = tuple(value_text(e) for e in evidence)
    else:
        ev = (value_text(evidence),)
    lines = tuple(_line_ref(x, shown) for x in _as_list(detail.get("lines")))
    excerpt = None
    if detail.get("excerpt") is not None:
        data = as_bytes(detail["excerpt"])
        start = detail.get("excerpt_offset")
        start = start if _is_int(start) else 0
        spans = _spans_of(detail)
        excerpt = bytes_view(data, start, spans)
    frames = f.frames[:FINDING_FRAMES_SHOWN]
    return FindingView(
        index=i, code=visible(f.code), severity=f.severity.label, message=visible(f.message),
        direction=_direction_text(f.direction), frames=_frame_refs(frames, shown),
        frames_more=max(0, len(f.frames) - len(frames)), rule=visible(f.rule),
        details=tuple(rows), peers=peer_rows, evidence=ev, lines=lines, excerpt=excerpt,
    )


def _related(value: Any, codes: Mapping[str, list[int]] | None, me: int) -> tuple[tuple[int, str], ...]:
    """Links for a detail naming other findings by code (``[{"code": ..., "frames": [...]}, ...]``)."""
    if not codes:
        return ()
    out: list[tuple[int, str]] = []
    for x in _as_list(value):
        code = x.get("code") if isinstance(x, Mapping) else x
        if isinstance(code, str):
            out += [(j, code) for j in codes.get(code, ()) if j != me]
    return tuple(dict.fromkeys(out))


def _peer_verdict(v: Any) -> str:
    text = v if isinstance(v, str) else ""
    if text.startswith("rejects"):
        return "rejects"
    if text.startswith("accepts"):
        return "accepts"
    return ""


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _line_ref(x: Any, shown: frozenset[int] | set[int]) -> LineRef:
    if isinstance(x, Mapping):
        frame = x.get("frame")
        text = next((x[k] for k in ("raw", "line", "text") if k in x), None)
        if text is None:
            rest = {k: v for k, v in x.items() if k != "frame"}
            text_s = value_text(rest)
        else:
            text_s = value_text(text)
        return LineRef(text_s, FrameRef(frame, frame in shown) if _is_int(frame) else None)
    if isinstance(x, (list, tuple)) and len(x) == 2 and _is_int(x[0]):
        return LineRef(value_text(x[1]), FrameRef(x[0], x[0] in shown))
    return LineRef(value_text(x), None)


def _spans_of(detail: Mapping[str, Any]) -> list[tuple[int, int]]:
    off, length = detail.get("offset"), detail.get("length")
    if _is_int(off) and _is_int(length):
        return [(off, off + max(1, length))]
    return []


# -- the ladder -------------------------------------------------------------------------------------------

class LadderRow(NamedTuple):
    """One packet of the ladder. Kept flat and pre-formatted: a page can hold thousands of these (the template
    unpacks each in this field order)."""

    frame: str  # the frame number, as text (the template only writes it, and text escapes faster than an int)
    t: str  # seconds since the conversation's first packet
    dir: int  # 0 client -> server, 1 server -> client
    flags: str  # "[S.]"
    label: str  # "seq 1:518 ack 1 win 64256 len 517" (numbers only)
    cls: str  # CSS classes from fixed words: "d<dir> k-<kind>" plus "s-<severity>" and "oow" when they apply
    kind: str  # "syn" | "fin" | "rst" | "data" | "ack"
    analysis: tuple[tuple[str, int], ...]  # Wireshark flags without "tcp.", with their finding's index or -1
    verdict: str
    severity: str  # worst finding naming this frame, "" when none
    findings: tuple[tuple[int, str, str], ...]  # (finding index, code, severity) of the other findings naming it
    notes: bool  # any of analysis, verdict, findings (one test in the template for the common empty case)


def _kind(flags: int, length: int) -> str:
    if flags & RST:
        return "rst"
    if flags & SYN:
        return "syn"
    if flags & FIN:
        return "fin"
    return "data" if length else "ack"


def _row_kind(direction: int, flags: int, length: int) -> tuple[str, str]:
    kind = _kind(flags, length)
    return kind, f"d{direction} k-{kind}"


# [direction][FIN|SYN|RST bits][has payload] -> (kind, CSS classes): made once, not per row
_ROW_KINDS: Final = tuple(tuple(tuple(_row_kind(d, f, n) for n in (0, 1)) for f in range(8)) for d in (0, 1))


# -- the time-sequence graph ------------------------------------------------------------------------------

class Tick(NamedTuple):
    pos: float
    label: str


class Mark(NamedTuple):
    kind: str  # "oow" | "rst" | "fin" | "syn" | "finding" (CSS class and shape)
    frame: int
    x: float
    y: float
    title: str


@dataclass(frozen=True, slots=True)
class Graph:
    direction: str  # "c2s" | "s2c"
    title: str
    width: int
    height: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    xticks: tuple[Tick, ...]
    yticks: tuple[Tick, ...]
    seg_path: str  # SVG path data (numbers only) for the ordinary I-bars
    retx_path: str  # ... for retransmitted segments
    oow_path: str  # ... for segments judged out of window
    ack_points: str  # polyline points: the receiver's cumulative ACK
    win_points: str  # polyline points: ACK + advertised window (the receive-window edge)
    rst_lines: tuple[Mark, ...]  # RSTs from the other direction: vertical lines
    marks: tuple[Mark, ...]
    segments: int  # I-bars drawn
    segments_total: int
    clipped: bool  # window line went above the plot


GW: Final = 1040  # viewBox size and margins
GH: Final = 330
GL: Final = 76
GT: Final = 12
GR: Final = 14
GB: Final = 34
GH_SMALL: Final = 210  # height for a conversation with a handful of segments


def _nice_step(span: float, target: int) -> float:
    raw = max(span, 1e-9) / target
    mag = 10 ** int(f"{raw:e}".split("e")[1])
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _si(v: float) -> str:
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _time_label(ns: float, step: float) -> str:
    """A time-axis label in the unit the tick step calls for."""
    for div, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if step >= div:
            return f"{round(ns / div, 6):g} {unit}"
    return f"{round(ns):g} ns"


def _ticks(lo: float, hi: float, target: int) -> list[float]:
    step = _nice_step(hi - lo, target)
    first = -(-lo // step) * step
    out: list[float] = []
    v = first
    while v <= hi + step * 1e-9 and len(out) < 50:
        out.append(v)
        v += step
    return out


_SEQ, _END = itemgetter(1), itemgetter(2)  # of the tuples below: sequence number (or ACK, or edge); segment end


class _Dir:
    """One direction's graph input, collected in the single pass over the timeline."""

    __slots__ = ("segs", "ctl", "acks", "wins", "rev_rsts")

    def __init__(self) -> None:
        self.segs: list[tuple[int, int, int, str, int]] = []  # (ts, seq, end, kind, frame)
        self.ctl: list[tuple[int, int, str, int]] = []  # (ts, seq, kind, frame): SYN/FIN/RST and findings
        self.acks: list[tuple[int, int, int]] = []  # (ts, ack, window) from the other direction
        self.wins: list[tuple[int, int]] = []  # (ts, right window edge): PacketRow.wnd_edge of this direction
        self.rev_rsts: list[tuple[int, int]] = []  # (ts, frame) RSTs sent by the other direction


def _graph(d: int, g: _Dir, start_ns: int, end_ns: int, total_segments: int) -> Graph | None:
    if not g.segs:
        return None
    ref = g.segs[0][1]
    half, mask = 1 << 31, 0xFFFFFFFF
    # the window line: the edge the pipeline judged each segment against (PacketRow.wnd_edge); when the rows
    # carry none, the receiver's ACK + advertised window (tcptrace's construction)
    wins = g.wins or [(ts, (a + w) & 0xFFFFFFFF) for ts, a, w in g.acks]
    segs, acks, ctl = g.segs, g.acks, g.ctl
    # sequence numbers unwrapped around the first segment (mod 2^32 safe): ref + signed32(v - ref); nothing
    # to do when all are within 2^31 of it (the common case: they are relative to the ISN)
    everything = (segs, acks, wins, ctl)
    if not (ref - half <= min(min(map(_SEQ, x), default=ref) for x in everything)
            and max(max(map(_SEQ, x), default=ref) for x in everything) < ref + half):
        segs = [(ts, ref + ((s - ref + half) & mask) - half, ref + ((s - ref + half) & mask) - half + (e - s),
                 kind, fr) for ts, s, e, kind, fr in segs]
        acks = [(ts, ref + ((a - ref + half) & mask) - half, w) for ts, a, w in acks]
        wins = [(ts, ref + ((w - ref + half) & mask) - half) for ts, w in wins]
        ctl = [(ts, ref + ((s - ref + half) & mask) - half, kind, fr) for ts, s, kind, fr in ctl]
    first = segs[0][1]
    lo = min(min(map(_SEQ, segs)), min(map(_SEQ, acks), default=first), min(map(_SEQ, ctl), default=first))
    hi = max(max(map(_END, segs)), max(map(_SEQ, acks), default=lo), max(map(_SEQ, ctl), default=lo))
    clipped = False
    top_win = max(map(_SEQ, wins), default=hi)
    if top_win > hi:
        limit = hi + max((hi - lo) * 0.5, 1)
        clipped = top_win > limit
        hi = min(top_win, limit)
    if hi <= lo:
        hi = lo + 1
    height = GH if total_segments >= 20 else GH_SMALL
    t0, t1 = start_ns, max(end_ns, start_ns + 1)
    t1 += (t1 - t0) // 50  # a little room right of the last packet, so marks there stay inside the plot
    pw, ph = GW - GL - GR, height - GT - GB

    def X(ts: int) -> float:
        return round(GL + (ts - t0) * pw / (t1 - t0), 1)

    def Y(v: float) -> float:
        return round(GT + ph - (v - lo) * ph / (hi - lo), 1)

    def ybar(v: float) -> float:  # clamp into the plot (clipped lines still show where they leave it)
        return min(max(Y(v), GT - 4), GT + ph + 4)

    plain = [s for s in segs if s[3] == "plain"]
    special = [s for s in segs if s[3] != "plain"]
    if len(plain) > GRAPH_POINTS:  # keep, per pixel column, the lowest start and the highest end
        lowest: dict[int, tuple] = {}
        highest: dict[int, tuple] = {}
        for seg in plain:
            col = int(X(seg[0]))
            if col not in lowest or seg[1] < lowest[col][1]:
                lowest[col] = seg
            if col not in highest or seg[2] > highest[col][2]:
                highest[col] = seg
        keep = {id(s) for s in lowest.values()} | {id(s) for s in highest.values()}
        plain = [s for s in plain if id(s) in keep]
    paths: dict[str, list[str]] = {"plain": [], "retx": [], "oow": []}
    sx, sy, base, bottom = pw / (t1 - t0), ph / (hi - lo), GT + ph, GT + ph + 4
    # the hot loop of a big graph, arithmetic inlined; segments lie within [lo, hi], so within the plot
    for ts, s, e, kind, _ in plain + special:
        y1, y2 = base - (s - lo) * sy, base - (e - lo) * sy
        # an I-bar: the vertical, then the ticks at both ends (relative moves keep the text short)
        paths[kind].append(_IBAR % (GL + (ts - t0) * sx, y1, y2, y1 - y2))
    marks: list[Mark] = []
    for ts, _, e, kind, fr in special:
        if kind == "oow":
            marks.append(Mark("oow", fr, X(ts), ybar(e), f"frame {fr}: outside the receiver's window"))
    for ts, s, kind, fr in ctl:
        marks.append(Mark(kind, fr, X(ts), ybar(s), f"frame {fr}: {_MARK_TEXT[kind]}"))
    rst_lines = tuple(Mark("rst", fr, X(ts), 0, f"frame {fr}: RST from the other side") for ts, fr in g.rev_rsts)
    xt = _ticks(0, t1 - t0, 8)
    step_x = xt[1] - xt[0] if len(xt) > 1 else float(t1 - t0)
    yt = _ticks(lo, hi, 6)
    name = DIRECTIONS[d]
    return Graph(
        direction=name,
        title=DIRECTION_LABELS[d],
        width=GW, height=height, left=GL, top=GT, plot_w=pw, plot_h=ph,
        # (a tick's offset from t0 as it is: t0 + v as a float would lose the nanoseconds of an epoch time)
        xticks=tuple(Tick(round(GL + v * pw / (t1 - t0), 1), _time_label(v, step_x)) for v in xt),
        yticks=tuple(Tick(Y(v), _si(v)) for v in yt),
        seg_path="".join(paths["plain"]), retx_path="".join(paths["retx"]), oow_path="".join(paths["oow"]),
        ack_points=_step_points(acks, t0, sx, lo, sy, base, GT - 40, bottom + 40),
        win_points=_step_points(wins, t0, sx, lo, sy, base, GT - 40, bottom + 40),
        rst_lines=rst_lines, marks=tuple(marks),
        segments=len(plain) + len(special), segments_total=total_segments, clipped=clipped,
    )


_IBAR: Final = "M%.1f %.1fV%.1fm-2 0h4m-4 %.1fh4"  # x, y1, y2, y1 - y2 (one % is cheaper than an f-string's four formats)
_MARK_TEXT: Final = {"rst": "RST", "fin": "FIN", "syn": "SYN", "finding": "has a finding", "oow": "outside the receiver's window"}


def _step_points(points: Sequence[tuple[int, ...]], t0: int, sx: float, lo: float, sy: float, base: float,
                 top: float, bottom: float) -> str:
    """A step line through (time, value) points, at most two vertices per pixel column. y is clamped to
    [top, bottom]: beyond the plot's clip path, so a line far above the data is cut, not drawn on the edge."""
    if not points:
        return ""
    out: list[str] = []
    last_col = last_y = None
    last_text = ""
    # of a run of points with the same value (repeated ACKs) only the first can draw: the rest have its y
    for v, run in groupby(sorted(points, key=itemgetter(0)), key=itemgetter(1)):
        ts = next(run)[0]
        y = base - (v - lo) * sy
        y = round(top if y < top else bottom if y > bottom else y, 1)
        if y == last_y:
            continue
        x = round(GL + (ts - t0) * sx, 1)
        col = int(x)
        x_text, y_text = f"{x:g},", f"{y:g}"  # a vertex is "x,y"; each number formatted once
        if col == last_col and len(out) >= 2:
            out[-1] = x_text + y_text  # same pixel column: move the column's last vertex
        else:
            if last_y is not None:
                out.append(x_text + last_text)
            out.append(x_text + y_text)
        last_col, last_y, last_text = col, y, y_text
    return " ".join(out)


# -- HTTP exchanges and stream heads ----------------------------------------------------------------------

class HeaderLineView(NamedTuple):
    text: str
    marked: bool
    findings: tuple[tuple[int, str], ...]  # (finding index, code) marking this line


@dataclass(frozen=True, slots=True)
class MessageView:
    kind: str  # "request" | "response" | "interim response"
    direction: str  # "c2s" | "s2c" (a CSS class)
    start_line: str
    head: tuple[Line, ...]  # the head as sent (raw bytes, offending bytes marked); () when not given
    headers: tuple[HeaderLineView, ...]  # parsed header lines, when the head's raw bytes are not given
    marked_codes: tuple[tuple[int, str], ...]  # findings whose bytes are marked in the head
    body: tuple[Line, ...]  # body excerpt as text lines (text bodies)
    body_hex: tuple[HexRow, ...]  # ... or as hex rows (binary bodies)
    body_note: str
    rows: tuple[DetailRow, ...]  # framing, frames, offsets, state and anything else the exchange reports


@dataclass(frozen=True, slots=True)
class ExchangeView:
    index: int
    summary: str
    messages: tuple[MessageView, ...]
    rows: tuple[DetailRow, ...]


@dataclass(frozen=True, slots=True)
class StreamView:
    direction: str  # "c2s" | "s2c"
    title: str
    total: int  # payload bytes the direction carried
    view: BytesView
    complete: bool  # the excerpt is the whole direction
    binary: bool  # mostly non-text bytes (TLS, ...): the hex view comes first


# Keys of an exchange's to_json() (pcapcheck.http.model) that the message view shows itself; the rest are rows.
_START_KEYS: Final = ("start_line", "line", "request_line", "status_line")
_BODY_KEYS: Final = ("body_excerpt", "body", "excerpt")
_ESCAPED_KEYS: Final = ("raw_head", "body_excerpt")  # bytes the model wrote as unicode_escape text
_CONSUMED: Final = frozenset(_START_KEYS + _BODY_KEYS + (
    "method", "target", "version", "status", "reason", "headers", "raw_head", "direction", "findings", "index",
    # in report.json; on the page they repeat what the head, the body note or the stream view already show
    "offset", "end_offset", "raw_head_truncated", "body_excerpt_truncated", "wire_body_length"))


_ODD_ESCAPE: Final = re.compile(r"\\(?![\\tnr]|x[0-9a-fA-F]{2})")  # a backslash not starting \\ \t \n \r \xhh


def unescape(text: str) -> bytes:
    """The bytes behind the model's escaped text (latin-1 + unicode_escape); text not in that form as is."""
    if text.isascii() and not _ODD_ESCAPE.search(text):  # the model's escapes only: nothing to warn about
        return text.encode("ascii").decode("unicode_escape").encode("latin-1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return text.encode("ascii").decode("unicode_escape").encode("latin-1")
    except (UnicodeError, DeprecationWarning):
        return as_bytes(text)


def _start_line(m: Mapping[str, Any], kind: str) -> str:
    for k in _START_KEYS:
        if m.get(k) is not None:
            return value_text(m[k])
    if kind == "request":
        parts = [m.get("method"), m.get("target"), m.get("version")]
    else:
        parts = [m.get("version"), m.get("status"), m.get("reason")]
    return " ".join(value_text(p) for p in parts if p is not None)


def _header_line(h: Any) -> tuple[str, int | None]:
    if isinstance(h, Mapping):
        off = h.get("offset")
        for k in ("raw", "line", "text"):
            if h.get(k) is not None:
                return value_text(h[k]), off if _is_int(off) else None
        name, value = h.get("name", ""), h.get("value", "")
        return f"{value_text(name)}: {value_text(value)}", off if _is_int(off) else None
    if isinstance(h, (list, tuple)) and len(h) == 2:
        return f"{value_text(h[0])}: {value_text(h[1])}", None
    return value_text(h), None


class _Marks:
    """Where the findings point in each direction's stream: offset spans and quoted lines."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.spans: dict[str, list[tuple[int, int, int, str]]] = {"c2s": [], "s2c": []}
        self.lines: dict[str, dict[str, list[tuple[int, str]]]] = {"c2s": {}, "s2c": {}}
        for i, f in enumerate(findings):
            if f.direction not in self.spans:
                continue
            detail = f.detail or {}
            for s, e in _spans_of(detail):
                self.spans[f.direction].append((s, e, i, f.code))
            for x in _as_list(detail.get("lines")):
                text = _line_ref(x, frozenset()).text
                self.lines[f.direction].setdefault(text, []).append((i, f.code))

    def header(self, direction: str, text: str, offset: int | None) -> tuple[tuple[int, str], ...]:
        hits = list(self.lines.get(direction, {}).get(text, ()))
        if offset is not None:
            hits += self.within(direction, offset, offset + max(1, len(text)))
        return tuple(sorted(set(hits)))

    def within(self, direction: str, start: int, end: int) -> list[tuple[int, str]]:
        return [(i, code) for s, e, i, code in self.spans.get(direction, ()) if s < end and start < e]


def _message_view(kind: str, m: Mapping[str, Any], direction: str, marks: _Marks,
                  shown: frozenset[int] | set[int]) -> MessageView:
    head: tuple[Line, ...] = ()
    headers: list[HeaderLineView] = []
    codes: tuple[tuple[int, str], ...] = ()
    raw = m.get("raw_head")
    offset = m.get("offset") if _is_int(m.get("offset")) else None
    if isinstance(raw, (str, bytes, bytearray)) and raw:
        data = unescape(raw) if isinstance(raw, str) else bytes(raw)
        start = offset or 0
        spans = marks.spans.get(direction, ()) if offset is not None else ()
        mask = _mask(len(data), ((s - start, e - start) for s, e, _, _ in spans))
        head = text_lines(data, mask)
        codes = tuple(sorted(set(marks.within(direction, start, start + len(data))))) if offset is not None else ()
    else:
        for h in _as_list(m.get("headers")):
            text, off = _header_line(h)
            hits = marks.header(direction, text, off)
            headers.append(HeaderLineView(text, bool(hits), hits))
    body: tuple[Line, ...] = ()
    body_hex: tuple[HexRow, ...] = ()
    note = ""
    for k in _BODY_KEYS:
        b = m.get(k)
        if isinstance(b, Mapping):  # {"excerpt": ..., "length": ...}
            b = next((b[x] for x in ("excerpt", "data", "text") if b.get(x) is not None), None)
        if b is not None and not isinstance(b, (int, bool)) and b != "" and b != b"":
            data = unescape(b) if isinstance(b, str) and k in _ESCAPED_KEYS else as_bytes(b)
            limit = BODY_HEX_SHOWN if is_binary(data) else BODY_TEXT_SHOWN
            shown_data = data[:limit]
            if limit == BODY_HEX_SHOWN:
                body_hex = hex_rows(shown_data, bytearray(len(shown_data)), 0)
            else:
                body = text_lines(shown_data, bytearray(len(shown_data)))
            decoded = ", decoded" if "chunk" in value_text(m.get("framing")) else ""
            length = m.get("body_length")
            total = length if _is_int(length) else len(data)
            cut = f", first {len(shown_data)} of {total} bytes" if len(shown_data) < max(total, len(data)) else ""
            note = f"body{decoded}{cut}"
            break
    rows = tuple(_detail_row(k, v, shown) for k, v in m.items() if k not in _CONSUMED and not _empty(v))
    return MessageView(kind, direction, _start_line(m, kind), head, tuple(headers), codes, body, body_hex, note,
                       rows)


def _empty(value: Any) -> bool:
    """Facts not worth a line in a message's summary: false flags, empty text and lists."""
    return value is None or value is False or (isinstance(value, (str, list, tuple, dict)) and not value)


_KEY_KINDS: Final[dict[str, tuple[str, int]]] = {}  # detail key -> (its text, 0 | 1 a frame | 2 frames): _key_kind's


def _key_kind(key: Any) -> tuple[str, int]:
    shown_key = visible(str(key))
    kind = (shown_key, 1 if shown_key == "frame" or shown_key.endswith("_frame")
            else 2 if shown_key.endswith("frames") else 0)
    if type(key) is str and len(_KEY_KINDS) < 4096:  # the analyzers' keys: a few hundred at most
        _KEY_KINDS[key] = kind
    return kind


def _detail_row(key: Any, value: Any, shown: frozenset[int] | set[int]) -> DetailRow:
    """A detail's row: a frame number (``frame``, ``*_frame``) or a list of them (``*frames``) as links, anything
    else as text. A dozen a message and a finding: what a key is, is looked up once per key."""
    kind = _KEY_KINDS.get(key) if type(key) is str else None
    if kind is None:
        kind = _key_kind(key)
    shown_key, frame_key = kind
    if frame_key:
        if frame_key == 1:
            if _is_int(value):
                return DetailRow(shown_key, str(value), _frame_refs((value,), shown))
        elif isinstance(value, (list, tuple)) and value and all(map(_is_int, value)):
            return DetailRow(shown_key, value_text(value), _frame_refs(value, shown))
    t = type(value)  # value_text's common cases inline
    text = str(value) if t is int else visible(value) if t is str else value_text(value)
    return _tuple_new(DetailRow, (shown_key, text, (), ()))  # DetailRow(key, text)


# A conversation page shows at most this many HTTP exchanges in full: the first ones, the last ones and those a
# finding points into (a keep-alive connection between a proxy and its backend can carry tens of thousands;
# report.json has more of them, analyzers.http1.KEEP_FIRST): PAGE_EXCHANGES_FIRST, _LAST and _MARKED, imported from
# the analyzer, which spills the others as their JSON text only (ExchangeJson).


def shown_exchanges(http: Sequence[Any]) -> list[int]:
    """Indices of the exchanges a page shows (all of them when there are few)."""
    n = len(http)
    if n <= PAGE_EXCHANGES_FIRST + PAGE_EXCHANGES_LAST + PAGE_EXCHANGES_MARKED:
        return list(range(n))
    keep = set(range(PAGE_EXCHANGES_FIRST)) | set(range(n - PAGE_EXCHANGES_LAST, n))
    places = getattr(http, "marked", None)  # (an ExchangeList knows them without reading its spilled exchanges)
    if places is not None:
        keep.update([i for i in places() if PAGE_EXCHANGES_FIRST <= i < n - PAGE_EXCHANGES_LAST][:PAGE_EXCHANGES_MARKED])
        return sorted(keep)
    marked = 0
    for i in range(PAGE_EXCHANGES_FIRST, n - PAGE_EXCHANGES_LAST):
        x = http[i]
        findings = x.get("findings") if isinstance(x, Mapping) else getattr(x, "findings", None)
        if findings:
            keep.add(i)
            marked += 1
            if marked == PAGE_EXCHANGES_MARKED:
                break
    return sorted(keep)


def _exchange_index(exchange: Any, default: int) -> int:
    """The exchange's number in its conversation (0-based; the report may not keep every exchange)."""
    k = exchange.get("index") if isinstance(exchange, Mapping) else getattr(exchange, "index", None)
    return k if type(k) is int and k >= 0 else default


def exchange_view(i: int, exchange: Any, marks: _Marks, shown: frozenset[int] | set[int]) -> ExchangeView:
    """One request/response exchange from its ``to_json()`` (pcapcheck.http.model), read defensively; an HttpExchange's
    with its messages' bytes as they are (``page=True``), the same view as from report.json's escaped text."""
    if type(exchange) is HttpExchange:
        data = exchange.to_json(page=True)  # (the raw heads and body excerpts as bytes, not escaped text)
    else:
        data = exchange.to_json() if hasattr(exchange, "to_json") else exchange
    data = data if isinstance(data, Mapping) else {"exchange": data}
    messages = []
    parts: list[tuple[str, Any, str]] = [("request", data.get("request"), "c2s")]
    parts += [("interim response", x, "s2c") for x in _as_list(data.get("interim"))]
    parts.append(("response", data.get("response"), "s2c"))
    for kind, m, direction in parts:
        if isinstance(m, Mapping):
            if m.get("direction") in DIRECTIONS:
                direction = m["direction"]
            messages.append(_message_view(kind, m, direction, marks, shown))
    skip = {"request", "response", "interim", "findings", "index"}
    rows = tuple(_detail_row(k, v, shown) for k, v in data.items() if k not in skip and not _empty(v))
    finals = [m.start_line for m in messages if m.kind != "interim response" and m.start_line]
    summary = " → ".join(finals) or f"exchange {i + 1}"
    return ExchangeView(i, summary, tuple(messages), rows)


# -- the conversation page --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DirStats:
    title: str
    packets: str
    bytes: str
    options: str  # SYN options, "" when no SYN was seen


@dataclass(frozen=True, slots=True)
class Nav:
    index: str  # "index.html#c7"
    prev: str | None
    prev_label: str
    next: str
    next_label: str


@dataclass(frozen=True, slots=True)
class ConversationView:
    id: int
    input_index: int
    input_path: str
    title: str
    client: str
    server: str
    client_guessed: bool
    part: int  # ConversationResult.part: 2, 3 ... for a resumed conversation's later parts
    first_part: str  # the index row of its first part
    reuse_of: str | None  # index anchor href of the conversation whose 4-tuple this one reuses
    reuse_of_id: int | None
    start: str
    end: str
    duration: str
    first_frame: int
    last_frame: int
    dirs: tuple[DirStats, DirStats]
    rtt: str
    end_kind: str
    end_sentence: str
    worst: str  # severity label, "" when no findings
    counts: tuple[tuple[str, int], ...]  # (severity, count), worst first, only non-zero
    wireshark_filter: str
    tshark_view: str
    tshark_extract: str
    findings: tuple[FindingView, ...]  # those shown (PAGE_FINDINGS_FULL)
    findings_total: int
    ladder: tuple[LadderRow, ...]
    icmp_rows: int  # rows of the ladder that are ICMP errors, not packets of the conversation
    timeline_total: int
    timeline_capped: bool
    graphs: tuple[Graph, ...]
    exchanges: tuple[ExchangeView, ...]  # those shown (shown_exchanges)
    exchanges_total: int  # in the conversation
    exchanges_kept: int  # in report.json (analyzers.http1.KEEP_FIRST)
    streams: tuple[StreamView, ...]
    streams_left_out: int  # directions of an HTTP conversation whose raw bytes are not repeated
    follow_cmd: str  # tshark's Follow TCP Stream for this conversation
    nav: Nav
    version: str
    timestamp: str | None


def _options_text(opts: Mapping[str, Any]) -> str:
    if not opts:
        return ""
    parts = []
    if "mss" in opts:
        parts.append(f"MSS {value_text(opts['mss'])}")
    if "wscale" in opts:
        parts.append(f"window scale {value_text(opts['wscale'])}")
    if opts.get("sack_perm"):
        parts.append("SACK permitted")
    if opts.get("timestamps"):
        parts.append("timestamps")
    if "window" in opts:
        parts.append(f"window {value_text(opts['window'])}")
    known = {"mss", "wscale", "sack_perm", "timestamps", "window"}
    parts += [f"{visible(str(k))} {value_text(v)}" for k, v in opts.items() if k not in known]
    return ", ".join(parts)


def build_conversation(r: ConversationResult, *, input_path: str | None = None,
                       timestamp: str | None = None) -> ConversationView:
    """The whole page's data, in one pass over the findings and one over the timeline."""
    shown = frozenset(map(_FRAME, r.timeline)) | {m.frame for m in r.icmp}
    # frames -> findings naming them (for ladder rows), and severity
    by_frame: dict[int, list[tuple[int, str, str]]] = {}
    frame_sev: dict[int, int] = {}
    counts: dict[str, int] = {}
    findings: list[FindingView] = []
    codes: dict[str, list[int]] = {}
    for i, f in enumerate(r.findings):
        codes.setdefault(f.code, []).append(i)
    last_shown: dict[str, int] = {}  # code -> position in findings of its last one shown
    seen: dict[str, int] = {}
    for i, f in enumerate(r.findings):
        rank = seen.get(f.code, 0)  # findings of this code before this one
        seen[f.code] = rank + 1
        if rank < PAGE_FINDINGS_FULL:
            findings.append(finding_view(i, f, shown, codes))
            last_shown[f.code] = len(findings) - 1
        elif rank < PAGE_FINDINGS_FULL + PAGE_FINDINGS_BRIEF:
            frames = f.frames[:FINDING_FRAMES_SHOWN]
            findings.append(FindingView(
                index=i, code=visible(f.code), severity=f.severity.label, message=visible(f.message),
                direction=_direction_text(f.direction), frames=_frame_refs(frames, shown),
                frames_more=max(0, len(f.frames) - len(frames)), rule="", details=(), peers=(), evidence=(),
                lines=(), excerpt=None, brief=True))
            last_shown[f.code] = len(findings) - 1
        counts[f.severity.label] = counts.get(f.severity.label, 0) + 1
        for fr in f.frames:
            if fr in shown:
                lst = by_frame.setdefault(fr, [])
                if not lst or lst[-1][0] != i:
                    lst.append((i, f.code, f.severity.label))
                frame_sev[fr] = max(frame_sev.get(fr, -1), int(f.severity))
    for code, pos in last_shown.items():
        more = len(codes[code]) - PAGE_FINDINGS_FULL - PAGE_FINDINGS_BRIEF
        if more > 0:
            findings[pos] = replace(findings[pos], more=more)
    marked_frames = {fr for fr, sev in frame_sev.items() if sev >= Severity.WARNING}

    ladder, dirs, seg_counts = _timeline(r, by_frame, frame_sev, marked_frames)
    if r.icmp:
        ladder = _with_icmp(ladder, r, by_frame, frame_sev)
    graphs = tuple(g for g in (_graph(d, dirs[d], r.start_ns, r.end_ns, seg_counts[d]) for d in (0, 1))
                   if g is not None)

    marks = _Marks(r.findings)
    exchanges = tuple(exchange_view(_exchange_index(r.http[i], i), r.http[i], marks, shown)
                      for i in shown_exchanges(r.http))
    streams = []
    for d, head in enumerate(r.stream_heads):
        if not head:
            continue
        name = DIRECTIONS[d]
        spans = [(s, e) for s, e, _, _ in marks.spans[name]]
        if exchanges and not any(s < len(head) for s, _ in spans):
            continue  # the exchanges above show this direction; the raw bytes only when a finding points there
        head = bytes(head)
        binary = is_binary(head)  # binary data (TLS...) reads better, and renders faster, as hex only
        # hex: the first KiB and the rows around highlighted bytes; for a text stream of an HTTP conversation
        # only the latter (the exchanges above show the rest)
        limit = 0 if exchanges and not binary else STREAM_HEX_LIMIT
        streams.append(StreamView(name, DIRECTION_LABELS[d], r.bytes[d],
                                  bytes_view(head, 0, spans, limit, text=not binary),
                                  len(head) >= r.bytes[d], binary))

    path = input_path if input_path is not None else "CAPTURE.pcap"
    fil = f"tcp.stream eq {int(r.id)}"
    ext = f"conv-{int(r.id)}.pcap" if r.input_index == 0 else f"in{int(r.input_index)}-conv-{int(r.id)}.pcap"
    hs = r.handshake
    k = r.input_index
    nav = Nav(
        index=f"index.html#{row_anchor(k, r.id, r.part)}",
        prev=f"index.html#{row_anchor(k, r.id - 1)}" if r.id > 0 else None,
        prev_label=f"conversation {r.id - 1}" if r.id > 0 else "",
        next=f"index.html#{row_anchor(k, r.id + 1)}",
        next_label=f"conversation {r.id + 1}",
    )
    worst = r.worst
    return ConversationView(
        id=r.id, input_index=k, input_path=path,
        title=f"conversation {r.id}: {r.client} → {r.server}",
        client=r.client, server=r.server, client_guessed=r.client_guessed, part=r.part,
        first_part=f"index.html#{row_anchor(k, r.id)}",
        reuse_of=f"index.html#{row_anchor(k, r.reuse_of)}" if r.reuse_of is not None else None,
        reuse_of_id=r.reuse_of,
        start=utc(r.start_ns), end=utc(r.end_ns), duration=duration(r.duration_ns),
        first_frame=r.first_frame, last_frame=r.last_frame,
        dirs=(DirStats(DIRECTION_LABELS[0], number(r.packets[0]), number(r.bytes[0]),
                       _options_text(hs.client_options)),
              DirStats(DIRECTION_LABELS[1], number(r.packets[1]), number(r.bytes[1]),
                       _options_text(hs.server_options))),
        rtt=duration(hs.rtt_ns) if hs.rtt_ns is not None else "",
        end_kind=visible(r.end), end_sentence=visible(r.end_sentence),
        worst=worst.label if worst is not None else "",
        counts=tuple((s, counts[s]) for s in SEVERITIES if s in counts),
        wireshark_filter=fil,
        tshark_view=f"tshark -r {shlex.quote(path)} -Y '{fil}'",
        tshark_extract=f"tshark -r {shlex.quote(path)} -Y '{fil}' -w {ext}",
        findings=tuple(findings), findings_total=len(r.findings), ladder=tuple(ladder), icmp_rows=len(r.icmp), timeline_total=r.timeline_total,
        timeline_capped=r.timeline_capped, graphs=graphs, exchanges=exchanges,
        exchanges_total=len(r.http) + r.http_omitted, exchanges_kept=len(r.http),
        streams=tuple(streams),
        streams_left_out=sum(1 for h in r.stream_heads if h) - len(streams),
        follow_cmd=f"tshark -r {shlex.quote(path)} -q -z follow,tcp,ascii,{int(r.id)}",
        nav=nav, version=__version__, timestamp=timestamp,
    )


_FRAME: Final = attrgetter("frame")
_FLAG_TEXT: Final = [flag_text(f) for f in range(256)]
_SEVERITY_LABEL: Final = {int(s): s.label for s in Severity}


def _timeline(r: ConversationResult, by_frame: Mapping[int, list[tuple[int, str, str]]],
              frame_sev: Mapping[int, int], marked: set[int]) -> tuple[list[LadderRow], tuple[_Dir, _Dir], list[int]]:
    """The one pass over the timeline: a ladder row per packet, and each direction's graph input (with the
    number of data segments). The hot loop of a page, so the common row is made inline."""
    dirs = (_Dir(), _Dir())
    seg_counts = [0, 0]
    ladder: list[LadderRow] = []
    start = r.start_ns
    for row in r.timeline:
        frame, ts, d, flags, seq, ack, length, window, analysis, verdict, wnd_edge = row  # (one unpack: not 11 lookups)
        # the ladder row
        if flags & ACK:
            if length:
                label = f"seq {seq}:{(seq + length) & 0xFFFFFFFF} ack {ack} win {window} len {length}"
            else:
                label = f"seq {seq} ack {ack} win {window}"
        elif length:
            label = f"seq {seq}:{(seq + length) & 0xFFFFFFFF} win {window} len {length}"
        else:
            label = f"seq {seq} win {window}"
        kind, cls = _ROW_KINDS[d][flags & (FIN | SYN | RST)][length > 0]
        t = f"{(ts - start) / 1e9:.6f}"
        if analysis or verdict or frame in by_frame:
            ladder.append(_noted_row(row, t, label, kind, cls, by_frame, frame_sev))
        else:  # the common row: no flag, no verdict, no finding (frame_sev has only frames that by_frame has)
            ladder.append(_tuple_new(LadderRow, (str(frame), t, d, _FLAG_TEXT[flags & 0xFF], label, cls, kind,
                                                 (), verdict, "", (), False)))
        # the graph's input
        mine, other = dirs[d], dirs[1 - d]
        if length:
            seg_counts[d] += 1
            if verdict:
                seg_kind = "oow"
            elif analysis and not _RETRANSMISSION.isdisjoint(analysis):
                seg_kind = "retx"
            else:
                seg_kind = "plain"
            mine.segs.append((ts, seq, seq + length, seg_kind, frame))
        if flags & (RST | SYN | FIN):
            if flags & RST:
                mine.ctl.append((ts, seq, "rst", frame))
                other.rev_rsts.append((ts, frame))
            elif flags & SYN:
                mine.ctl.append((ts, seq, "syn", frame))
            else:
                mine.ctl.append((ts, seq + length, "fin", frame))
        elif not length and (verdict or frame in marked):
            if frame in marked:
                mine.ctl.append((ts, seq, "finding", frame))
            if verdict:
                mine.ctl.append((ts, seq, "oow", frame))
        if flags & ACK and not flags & RST:
            other.acks.append((ts, ack, window))
        if wnd_edge >= 0:
            mine.wins.append((ts, wnd_edge))
    return ladder, dirs, seg_counts


def _with_icmp(ladder: list[LadderRow], r: ConversationResult, by_frame: Mapping[int, list[tuple[int, str, str]]],
               frame_sev: Mapping[int, int]) -> list[LadderRow]:
    """The ladder with a row per ICMP error (``r.icmp``) among the packets, in frame order: an arrow towards
    the sender of the segment it quotes, drawn as ICMP, with the findings that name its frame."""
    rows = []
    for m in r.icmp:
        sev = frame_sev.get(m.frame, -1)
        severity = _SEVERITY_LABEL[sev] if sev >= 0 else ""
        found = tuple(by_frame.get(m.frame, ()))
        cls = f"d{m.direction} k-icmp" + (f" s-{severity}" if severity else "")
        rows.append(LadderRow(str(m.frame), f"{(m.ts - r.start_ns) / 1e9:.6f}", m.direction, "ICMP", visible(m.text),
                              cls, "icmp", (), "", severity, found, bool(found)))
    merged = ladder + rows
    merged.sort(key=lambda row: int(row.frame))  # stable: frames are unique
    return merged


def _noted_row(row: PacketRow, t: str, label: str, kind: str, cls: str,
               by_frame: Mapping[int, list[tuple[int, str, str]]], frame_sev: Mapping[int, int]) -> LadderRow:
    """A ladder row with Wireshark flags, a conntrack verdict or findings."""
    frame, verdict = row.frame, row.verdict
    sev = frame_sev.get(frame, -1)
    severity = _SEVERITY_LABEL[sev] if sev >= 0 else ""
    if severity:
        cls = f"{cls} s-{severity}"
    if verdict:
        cls = f"{cls} oow"
    found = tuple(by_frame[frame]) if frame in by_frame else ()
    analysis: tuple[tuple[str, int], ...] = ()
    if row.analysis:  # a Wireshark flag links to the finding that counts it; that finding is not listed again
        index = {code: i for i, code, _ in found}
        analysis = tuple((a[4:] if a.startswith("tcp.") else a, index.get(a, -1)) for a in row.analysis)
        found = tuple(x for x in found if x[1] not in row.analysis)
    return LadderRow(
        str(frame), t, row.direction, _FLAG_TEXT[row.flags & 0xFF], label, cls, kind,
        analysis, verdict, severity, found, bool(analysis or verdict or found),
    )


# -- the index --------------------------------------------------------------------------------------------

class IndexRow(NamedTuple):
    """One conversation's row in the index. A tuple: the index_rows.html macro unpacks it once into locals (one
    row per conversation, and a template's ``r.field`` is a call to ``Environment.getattr`` each time); a test
    keeps the macro's list of names equal to these fields."""

    anchor: str
    id: int
    part: int
    input_index: int
    client: str
    server: str
    start: str
    start_title: str
    start_ns: int
    duration: str
    duration_ns: int
    packets: int
    bytes: int
    end: str
    end_sentence: str
    counts: tuple[int, int, int, int]  # error, warning, notice, info
    codes: str
    worst: str  # severity label or ""
    worst_n: int  # -1 when none (sort key)
    page: str | None


@dataclass(frozen=True, slots=True)
class CaptureFindingView:
    severity: str
    code: str
    message: str
    frames: str


@dataclass(frozen=True, slots=True)
class InputView:
    index: int
    path: str
    format: str
    compressed: bool
    readable: bool
    linktypes: tuple[str, ...]
    frames: str
    tcp_frames: str
    conversations: str
    conversations_n: int
    first: str
    last: str
    span: str
    findings: tuple[CaptureFindingView, ...]
    end_anchor: str  # anchor one past the last id: the "next" link of the last conversation's page


@dataclass(frozen=True, slots=True)
class ConvLink:
    href: str
    label: str


@dataclass(frozen=True, slots=True)
class CodeSummary:
    code: str
    severity: str
    findings: int
    conversations: tuple[ConvLink, ...]
    more: int  # conversations with the code beyond those linked


@dataclass(frozen=True, slots=True)
class IndexView:
    title: str
    inputs: tuple[InputView, ...]
    multi_input: bool
    severity_totals: tuple[tuple[str, int], ...]
    codes: tuple[CodeSummary, ...]
    rows: Iterable[Any]  # the rendered rows (markupsafe.Markup), worst first: a generator, read once by the template
    conversations: int
    pages: int
    without_page: int
    page_limit: int
    policy: str  # "auto" | "all"
    version: str
    timestamp: str | None


class CodeIndex:
    """Per finding code: worst severity, how many conversations have it, and the first of them by (input, id)
    (for the index summary). The same whatever order the conversations come in, so shards merge exactly."""

    def __init__(self) -> None:
        self.severity: dict[str, int] = {}
        self.convs: dict[str, list[tuple[int, int]]] = {}
        self.conv_count: dict[str, int] = {}

    def add(self, r: ConversationResult) -> None:
        seen: set[str] = set()
        for f in r.findings:
            self.severity[f.code] = max(self.severity.get(f.code, -1), int(f.severity))
            if f.code in seen:
                continue
            seen.add(f.code)
            self.conv_count[f.code] = self.conv_count.get(f.code, 0) + 1
            lst = self.convs.setdefault(f.code, [])
            lst.append((r.input_index, r.id))
            if len(lst) >= 2 * INDEX_CODE_LINKS:
                lst.sort()
                del lst[INDEX_CODE_LINKS:]

    def merge(self, other: CodeIndex) -> None:
        """Add another CodeIndex's conversations (another shard's)."""
        for code, sev in other.severity.items():
            self.severity[code] = max(self.severity.get(code, -1), sev)
        for code, n in other.conv_count.items():
            self.conv_count[code] = self.conv_count.get(code, 0) + n
        for code, lst in other.convs.items():
            mine = self.convs.setdefault(code, [])
            mine.extend(lst)
            mine.sort()
            del mine[INDEX_CODE_LINKS:]

    def first(self, code: str) -> list[tuple[int, int]]:
        return sorted(self.convs.get(code, ()))[:INDEX_CODE_LINKS]

    def add_capture(self, findings: Iterable[Finding]) -> None:
        for f in findings:
            self.severity[f.code] = max(self.severity.get(f.code, -1), int(f.severity))


def index_row(s: ConversationSummary) -> IndexRow:
    counts = dict(s.counts)
    return IndexRow(
        anchor=row_anchor(s.input_index, s.id, s.part), id=s.id, part=s.part, input_index=s.input_index,
        client=s.client, server=s.server, start=clock(s.start_ns), start_title=utc(s.start_ns),
        start_ns=s.start_ns, duration=duration(s.duration_ns), duration_ns=s.duration_ns,
        packets=s.packets, bytes=s.bytes, end=visible(s.end), end_sentence=visible(s.end_sentence),
        counts=(counts.get("error", 0), counts.get("warning", 0), counts.get("notice", 0), counts.get("info", 0)),
        codes=" ".join(s.codes), worst=Severity(s.worst).label if s.worst >= 0 else "", worst_n=s.worst,
        page=s.page,
    )


def input_view(i: InputSummary) -> InputView:
    span = duration(i.last_ns - i.first_ns) if i.first_ns is not None and i.last_ns is not None else "-"
    return InputView(
        index=i.index, path=i.path, format=i.format, compressed=i.compressed, readable=i.readable,
        linktypes=tuple(f"{name} ({lt}): {number(n)} frames" for lt, name, n in i.linktypes),
        frames=number(i.frames), tcp_frames=number(i.tcp_frames), conversations=number(i.conversations),
        conversations_n=i.conversations, first=utc(i.first_ns), last=utc(i.last_ns), span=span,
        findings=tuple(CaptureFindingView(f.severity.label, visible(f.code), visible(f.message),
                                          value_text(list(f.frames[:20])) + (" ..." if len(f.frames) > 20 else ""))
                       for f in i.findings),
        end_anchor=row_anchor(i.index, i.conversations),
    )


def build_index(rows: Iterable[Any], pages: Mapping[tuple[int, int], str], count: int,
                inputs: Sequence[InputSummary], severities: Mapping[Severity, int], codes: Mapping[str, int],
                code_index: CodeIndex, *, page_limit: int, policy: str, timestamp: str | None = None) -> IndexView:
    """``rows``: the ``count`` conversations' rows, rendered (index_rows.html, from ``index_row``), worst first,
    then by input and id (read as the template writes them: the index can list 100k of them); ``pages``:
    (input, id) -> page file."""
    code_index.add_capture(f for i in inputs for f in i.findings)
    code_views = []
    for code in sorted(codes, key=lambda c: (-code_index.severity.get(c, 0), c)):
        links = tuple(ConvLink(pages.get((k, c)) or f"#{row_anchor(k, c)}", f"{k}:{c}" if k else str(c))
                      for k, c in code_index.first(code))
        code_views.append(CodeSummary(
            code=code, severity=Severity(max(code_index.severity.get(code, 0), 0)).label, findings=codes[code],
            conversations=links, more=code_index.conv_count.get(code, 0) - len(links),
        ))
    names = ", ".join(i.path for i in inputs)
    return IndexView(
        title=f"pcapcheck: {names}" if names else "pcapcheck report",
        inputs=tuple(input_view(i) for i in inputs), multi_input=len(inputs) > 1,
        severity_totals=tuple((s.label, severities.get(s, 0)) for s in sorted(Severity, reverse=True)),
        codes=tuple(code_views), rows=rows, conversations=count, pages=len(pages),
        without_page=count - len(pages), page_limit=page_limit, policy=policy, version=__version__,
        timestamp=timestamp,
    )
