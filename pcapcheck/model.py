"""The analysis result: plain, frozen data built once, read by the JSON and HTML writers."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from pcapcheck.findings import Finding, Severity, aside_pieces, dumps_sorted, json_scalars, json_value, object_template
from pcapcheck.frozen import fast_frozen


class PacketRow(NamedTuple):
    """One packet in a conversation's timeline (the ladder and the time-sequence graph)."""

    frame: int
    ts: int  # ns
    direction: int  # 0 = client->server, 1 = server->client
    flags: int
    seq: int  # relative to the sender's ISN (as Wireshark shows it)
    ack: int  # relative to the receiver's ISN (0 when the ACK flag is clear)
    length: int  # TCP payload length on the wire
    window: int  # scaled receive window the sender advertises (raw when the scale is unknown)
    analysis: tuple[str, ...]  # Wireshark-compatible flags, e.g. ("tcp.retransmission",)
    verdict: str  # conntrack verdict when not ACCEPT: "INVALID", "IGNORE", "INVALID (<6.1)"; "" otherwise
    wnd_edge: int  # right edge of the receiver window the sender may send up to (relative), -1 unknown


@fast_frozen
@dataclass(frozen=True, slots=True)
class Handshake:
    syn_frame: int | None = None
    synack_frame: int | None = None
    ack_frame: int | None = None
    client_options: dict[str, Any] = field(default_factory=dict)
    server_options: dict[str, Any] = field(default_factory=dict)
    rtt_ns: int | None = None


@fast_frozen
@dataclass(frozen=True, slots=True)
class ConversationResult:
    id: int
    input_index: int
    client: str  # "ip:port"
    server: str
    client_guessed: bool
    ipv6: bool
    first_frame: int
    last_frame: int
    start_ns: int
    end_ns: int
    packets: tuple[int, int]  # (c2s, s2c)
    bytes: tuple[int, int]  # payload bytes on the wire (c2s, s2c)
    handshake: Handshake
    end: str  # "fin" | "rst" | "incomplete" | "capture-ended"
    end_sentence: str
    findings: tuple[Finding, ...]
    timeline: Sequence[PacketRow]  # a tuple, or the pipeline's Timeline (decoded when first read)
    timeline_total: int
    timeline_capped: bool
    http: Sequence[Any]  # HttpExchange objects (with .to_json()): a tuple, or an http.spill.ExchangeList
    stream_heads: tuple[builtins.bytes, builtins.bytes]  # first bytes of each direction (follow-stream excerpt)
    isn: tuple[int | None, int | None]
    part: int = 1  # 2, 3 ...: packets that came after the conversation's earlier part was finalized (resumed)
    http_omitted: int = 0  # exchanges not kept for the report (analyzers.http1.KEEP_FIRST); report.json says so
    reuse_of: int | None = None
    # ICMP errors about its segments, for the ladder (analyzers.icmp.IcmpMark), in frame order, at most 20 a kind
    icmp: tuple[Any, ...] = ()

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def resumed(self) -> bool:
        return self.part > 1

    def to_json(self) -> dict[str, Any]:
        # json_text() writes this as JSON without building it (report.json): a change here is a change there
        return {
            "id": self.id,
            "input": self.input_index,
            "client": self.client,
            "server": self.server,
            "client_guessed": self.client_guessed,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "packets": {"c2s": self.packets[0], "s2c": self.packets[1]},
            "bytes": {"c2s": self.bytes[0], "s2c": self.bytes[1]},
            "end": self.end,
            "end_sentence": self.end_sentence,
            "findings": [f.to_json() for f in self.findings],
            "http": [x.to_json() for x in self.http],
            **({"http_omitted": self.http_omitted} if self.http_omitted else {}),
            "wireshark_filter": f"tcp.stream eq {self.id}",
        }

    def json_text(self, dumps: Callable[[Any], str] | None = None, aside: list[builtins.bytes] | None = None) -> str:
        """``dumps(self.to_json())`` without building the dicts. Keep in step with to_json.

        ``dumps`` is ``json.dumps(value, sort_keys=True, default=...)`` (the report's), for the values this does
        not write itself (finding details, an exchange without ``json_text``). With ``aside``, long byte strings
        are kept there for ``aside_pieces`` (``json_parts`` does both).
        """
        dumps = dumps or dumps_sorted
        http = []
        for x in self.http:
            text = getattr(x, "json_text", None)
            http.append(text(dumps, aside) if text is not None else dumps(x.to_json()))
        return self._json_text(dumps, "[" + ", ".join(http) + "]")

    def _json_text(self, dumps: Callable[[Any], str], http: str) -> str:
        """``json_text`` with ``http`` (JSON text) for the exchanges."""
        v = json_value
        bytes_c2s, bytes_s2c, end_ns, first_frame, id_, input_index, last_frame, packets_c2s, packets_s2c, start_ns = (
            json_scalars((self.bytes[0], self.bytes[1], self.end_ns, self.first_frame, self.id, self.input_index,
                          self.last_frame, self.packets[0], self.packets[1], self.start_ns), dumps))
        template, omitted = (_CONVERSATION_TEXT, ()) if not self.http_omitted else (
            _CONVERSATION_OMITTED_TEXT, (json_value(self.http_omitted, dumps),))
        return template % (
            _PAIR_TEXT % (bytes_c2s, bytes_s2c),
            v(self.client, dumps),
            v(self.client_guessed, dumps),
            v(self.end, dumps),
            end_ns,
            v(self.end_sentence, dumps),
            "[" + ", ".join([f.json_text(dumps) for f in self.findings]) + "]",
            first_frame,
            http,
            *omitted,
            id_,
            input_index,
            last_frame,
            _PAIR_TEXT % (packets_c2s, packets_s2c),
            v(self.server, dumps),
            start_ns,
            v(f"tcp.stream eq {self.id}", dumps),
        )

    def json_parts(self, dumps: Callable[[Any], str] | None = None) -> Iterator[builtins.bytes]:
        """``json_text`` as ASCII bytes in pieces (``b"".join`` them), each long byte string copied once. The
        exchanges' pieces come one exchange at a time (a long keep-alive connection's can be tens of MB, and its
        exchanges may be read back from a spill as they are iterated)."""
        dumps = dumps or dumps_sorted
        if len(self.http) <= _EXCHANGES_AT_ONCE:
            aside: list[bytes] = []
            yield from aside_pieces(self.json_text(dumps, aside), aside)
            return
        before, after = self._json_text(dumps, _HTTP_MARK).split(_HTTP_MARK)  # (JSON text escapes "\0")
        yield before.encode("ascii")
        sep = b"["
        for x in self.http:
            yield sep
            sep = b", "
            text = getattr(x, "json_text", None)
            if text is None:
                yield dumps(x.to_json()).encode("ascii")
                continue
            aside = []
            yield from aside_pieces(text(dumps, aside), aside)
        yield b"]" + after.encode("ascii")

    def json_bytes(self, dumps: Callable[[Any], str] | None = None) -> builtins.bytes:
        """``json_text`` as ASCII bytes."""
        return b"".join(self.json_parts(dumps))


# json_parts: up to this many exchanges, the line is made at once
_EXCHANGES_AT_ONCE: Final = 64
_HTTP_MARK: Final = "\0http\0"
# to_json's keys, sorted (json_text passes the values in this order)
_CONVERSATION_TEXT: Final = object_template(
    "bytes", "client", "client_guessed", "end", "end_ns", "end_sentence", "findings", "first_frame", "http", "id",
    "input", "last_frame", "packets", "server", "start_ns", "wireshark_filter",
)
_CONVERSATION_OMITTED_TEXT: Final = object_template(  # ... with http_omitted (only when some exchanges were not kept)
    "bytes", "client", "client_guessed", "end", "end_ns", "end_sentence", "findings", "first_frame", "http",
    "http_omitted", "id", "input", "last_frame", "packets", "server", "start_ns", "wireshark_filter",
)
_PAIR_TEXT: Final = object_template("c2s", "s2c")  # packets and bytes per direction


@fast_frozen
@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """What the index keeps per conversation (small: the index lists every conversation)."""

    id: int
    input_index: int
    client: str
    server: str
    start_ns: int
    duration_ns: int
    packets: int
    bytes: int
    end: str
    end_sentence: str
    counts: tuple[tuple[str, int], ...]  # severity label -> count, worst first
    codes: tuple[str, ...]  # distinct finding codes, worst first
    worst: int  # Severity value, -1 when none
    part: int  # ConversationResult.part
    page: str | None  # file name of its page, None when no page was written

    @classmethod
    def of(cls, r: ConversationResult, page: str | None) -> ConversationSummary:
        counts: dict[Severity, int] = {}
        for f in r.findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
        codes: list[str] = []
        for f in sorted(r.findings, key=lambda f: -int(f.severity)):
            if f.code not in codes:
                codes.append(f.code)
        return cls(
            r.id, r.input_index, r.client, r.server, r.start_ns, r.duration_ns, sum(r.packets), sum(r.bytes),
            r.end, r.end_sentence,
            tuple((s.label, counts[s]) for s in sorted(counts, reverse=True)),
            tuple(codes), int(r.worst) if r.worst is not None else -1, r.part, page,
        )


@fast_frozen
@dataclass(frozen=True, slots=True)
class InputSummary:
    index: int
    path: str
    format: str  # "pcap" | "pcapng" | "unknown"
    compressed: bool
    linktypes: tuple[tuple[int, str, int], ...]  # (linktype, name, frames)
    frames: int
    tcp_frames: int
    conversations: int
    first_ns: int | None
    last_ns: int | None
    findings: tuple[Finding, ...]  # capture-level (capture.*)
    readable: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "path": self.path,
            "format": self.format,
            "compressed": self.compressed,
            "linktypes": [{"linktype": lt, "name": name, "frames": n} for lt, name, n in self.linktypes],
            "frames": self.frames,
            "tcp_frames": self.tcp_frames,
            "conversations": self.conversations,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "readable": self.readable,
        }
