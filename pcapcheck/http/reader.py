"""One direction of an HTTP/1.x connection, read incrementally from TCP stream events (sans-IO).

The reader finds message boundaries in the byte stream: detection (is this HTTP/1.x at all), heads (bounded
at 64 KiB), bodies by their framing (walked, never stored: Content-Length and chunk-data are skipped by length),
resynchronisation after a fault or capture loss, and the end of the stream. Each fault becomes an Issue that
is handed to the host (the analyzer) with its frames, an excerpt of the bytes around it and the index of the
message it belongs to.

Three different conclusions are kept apart (h11's rule, plus pcapcheck's fourth): malformed bytes
(a finding, then resynchronise), bytes never captured (``gap``: the message is incomplete, never malformed),
and the stream ending under a message (``end``: truncated by FIN/RST, or incomplete when the capture stopped).

The response side needs the request it answers (HEAD, CONNECT); the request side, after CONNECT or an
Upgrade request, needs the response (tunnel or not). A reader then pauses and queues its events until the
host resumes it, as h11 does; the queue is bounded, after which a default is assumed and said.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from itertools import accumulate, count
from operator import add
from typing import Any, Final, Protocol

from pcapcheck.findings import C2S
from pcapcheck.http import abnf, codes
from pcapcheck.http.chunked import ChunkedDecoder, ChunkPhase
from pcapcheck.http.framing import (
    BodyFraming,
    Chunked,
    ContentLength,
    HeaderFraming,
    NoBody,
    Tunnel,
    Unframed,
    UntilClose,
    analyze_headers,
    body_framing,
)
from pcapcheck.http.issues import Issue, plural, show
from pcapcheck.http.model import HttpMessage, MessageState
from pcapcheck.http.parser import (
    BadStartLine,
    HeaderField,
    Line,
    ParsedHead,
    RequestLine,
    StatusLine,
    parse_clean_fields,
    parse_field_lines,
    parse_head,
    parse_start_line,
)
from pcapcheck.http.streambuf import HISTORY, StreamBuffer
from pcapcheck.tcp.events import Gap, StreamData, StreamEnd

HEAD_LIMIT: Final = 64 * 1024  # a head longer than this is reported, not buffered further
BODY_KEEP: Final = 4 * 1024  # body excerpt kept per message while it is read (the analyzer keeps a KiB once it ended)
RAW_HEAD_KEEP: Final = 16 * 1024  # raw head bytes kept per message for the report
PAUSE_LIMIT = 256 * 1024  # bytes queued while waiting for the other direction
ASSUMED_KEEP: Final = 20  # defaults said one by one per direction; later ones are counted (assumed_more)
DETAILED_MESSAGES: Final = 2000  # per direction; later messages keep framing and findings, not headers or excerpts
RESYNC_KEEP: Final = 8 * 1024  # longest request line found when resynchronising
EXCERPT_BEFORE: Final = 24
EXCERPT_AFTER: Final = 24
EXCERPT_SPAN: Final = 16  # at most this much of the offending bytes themselves (64 bytes in all)
CR: Final = 0x0D
LF: Final = 0x0A
_HEAD_END: Final = re.compile(rb"\n\r?\n")
# Enum members as module globals for the hot paths: in CPython 3.11 ``Mode.BODY`` (an attribute of the enum
# class) costs ten times a global.
_CHUNK_DATA: Final = ChunkPhase.DATA
_CHUNK_DATA_CRLF: Final = ChunkPhase.DATA_CRLF


class Mode(enum.Enum):
    DETECT = "detect"  # before the first message: is this HTTP/1.x at all?
    HEAD = "head"
    BODY = "body"
    RESYNC = "resync"  # looking for the next message start
    TUNNEL = "tunnel"  # another protocol after CONNECT/101: not parsed
    NOT_HTTP = "not-http"  # the first bytes were not HTTP/1.x: not parsed, no findings
    ENDED = "ended"


_DETECT: Final = Mode.DETECT  # see _CHUNK_DATA
_HEAD: Final = Mode.HEAD
_BODY: Final = Mode.BODY
_RESYNC: Final = Mode.RESYNC
_TUNNEL: Final = Mode.TUNNEL
_NOT_HTTP: Final = Mode.NOT_HTTP
_ENDED: Final = Mode.ENDED
_COMPLETE: Final = MessageState.COMPLETE
_INCOMPLETE: Final = MessageState.INCOMPLETE
_MALFORMED: Final = MessageState.MALFORMED


@dataclass(frozen=True, slots=True)
class AwaitRequest:
    """A response needs the method of request ``exchange`` (HEAD and CONNECT change its framing)."""

    exchange: int


@dataclass(frozen=True, slots=True)
class AwaitResponse:
    """After a CONNECT or Upgrade request, the response decides whether the request side becomes a tunnel."""

    exchange: int
    connect: bool


@dataclass(frozen=True, slots=True)
class RequestInfo:
    method: bytes | None  # None: the request is not in the capture


Pause = AwaitRequest | AwaitResponse
_NO_REQUEST: Final = RequestInfo(None)


class Host(Protocol):
    """What a reader needs from the analyzer that owns both directions."""

    def reserve(self) -> int: ...

    def admit(self, reader: DirectionReader, code: str, frames: tuple[int, ...]) -> bool: ...

    def deliver(
        self,
        reader: DirectionReader,
        index: int,
        issue: Issue,
        frames: tuple[int, ...],
        message_index: int,
        excerpt: bytes,
        excerpt_offset: int,
    ) -> None: ...

    def head_parsed(self, reader: DirectionReader, msg: MessageBuilder) -> None: ...

    def request_for(self, reader: DirectionReader, msg: MessageBuilder) -> RequestInfo | AwaitRequest: ...

    def message_done(self, reader: DirectionReader, msg: MessageBuilder) -> AwaitResponse | None: ...

    def after_segment(self) -> None: ...


class _FinishedHost:
    """The host of a detached reader: no call can reach it (a detached reader has ended, has nothing pending)."""

    def __getattr__(self, name: str):
        raise RuntimeError(f"Http1Analyzer has finished: a reader called host.{name} after finish()")


_tnew: Final = tuple.__new__  # StreamData built without its generated __new__
_FINISHED: Final[Host] = _FinishedHost()  # type: ignore[assignment]


@dataclass(slots=True)
class MessageBuilder:
    """A message while it is being read; ``freeze`` gives the HttpMessage the report sees."""

    direction: str
    index: int
    start: RequestLine | StatusLine
    headers: tuple[HeaderField, ...]
    raw_head: bytes
    raw_head_truncated: bool
    header_framing: HeaderFraming
    offset: int
    head_end: int
    first_frame: int
    after_loss: bool
    elided: bool
    upgrade: bool = False  # a request with an Upgrade header (RFC 9110 §7.8): a 101 may switch protocols
    exchange: int = 0  # the request/response pair it belongs to (set by the host)
    interim: bool = False  # a 1xx other than 101
    framing: BodyFraming = NoBody()  # (immutable, so one instance serves every message)
    body_length: int = 0
    wire_body_length: int = 0
    body_missing: int = 0
    excerpt: bytearray = field(default_factory=bytearray)
    trailers: tuple[HeaderField, ...] = ()
    chunks: int = 0
    end_offset: int = 0
    last_frame: int = 0
    state: MessageState = MessageState.IN_PROGRESS
    end_reason: str = ""
    findings: list[int] = field(default_factory=list)

    @property
    def method(self) -> bytes | None:
        return self.start.method if isinstance(self.start, RequestLine) else None

    @property
    def status(self) -> int:
        return self.start.status if isinstance(self.start, StatusLine) else 0

    def keep(self, data: bytes | bytearray | memoryview, start: int, length: int) -> None:
        room = BODY_KEEP - len(self.excerpt)
        if room > 0 and not self.elided:
            self.excerpt += data[start : start + min(length, room)]

    def freeze(self) -> HttpMessage:
        return HttpMessage(
            direction=self.direction,
            index=self.index,
            start=self.start,
            headers=self.headers,
            raw_head=self.raw_head,
            raw_head_truncated=self.raw_head_truncated,
            framing=self.framing,
            body_length=self.body_length,
            wire_body_length=self.wire_body_length,
            body_missing=self.body_missing,
            body_excerpt=bytes(self.excerpt),
            trailers=self.trailers,
            chunks=self.chunks,
            first_frame=self.first_frame,
            last_frame=self.last_frame or self.first_frame,
            offset=self.offset,
            end_offset=self.end_offset or self.head_end,
            state=self.state,
            end_reason=self.end_reason,
            after_loss=self.after_loss,
            findings=tuple(self.findings),
            elided=self.elided,
        )


@dataclass(slots=True)
class _Pending:
    """A reserved finding waiting for the bytes after its offset (so excerpts do not depend on segmentation)."""

    index: int
    issue: Issue | None  # None while an unparseable region is still being skipped
    frames: tuple[int, ...]
    message_index: int
    start: int
    stop: int
    data: bytearray
    queued: bool = False
    unparsed: _Unparsed | None = None  # the finding is an unparseable region, built once the region ends

    @property
    def ready(self) -> bool:
        return self.issue is not None or (self.unparsed is not None and self.unparsed.closed)


@dataclass(slots=True)
class _Unparsed:
    """An unparseable region being skipped: reported when parsing resumes or the stream ends."""

    offset: int
    reason: str
    stop: int = 0
    resumed_at: int | None = None
    closed: bool = False


class DirectionReader:
    # (slots: a conversation has two readers for as long as it is open, and tens of thousands can be open at once
    # on a busy server; a dict of 37 attributes took about 800 bytes more per reader)
    __slots__ = (
        "direction", "is_request", "kind", "host", "mode", "is_http", "messages", "pause", "end_reason",
        "unparsed_bytes", "lost_bytes", "assumed", "assumed_more", "end_seen", "_last_offset", "_stream", "through",
        "_started", "_pos", "_queue", "_queued_bytes", "_pending", "_after_loss", "_msg_start", "_line_start",
        "_scan", "_start", "_start_line", "_msg", "_cl_remaining", "_chunk", "_trailers", "_waiting",
        "_requests_stalled", "unpaired", "_unparsed", "_boundary", "__weakref__",
    )

    def __init__(self, direction: str, host: Host) -> None:
        self.direction = direction
        self.is_request = direction == C2S
        self.kind = "request" if self.is_request else "response"
        self.host = host
        self.mode = Mode.DETECT
        self.is_http = False
        # the messages, in order; the host may put markers in the place of those it settled (analyzers.http1)
        self.messages: list[Any] = []
        self.pause: Pause | None = None
        self.end_reason = ""
        self.unparsed_bytes = 0  # bytes skipped while resynchronising
        self.lost_bytes = 0  # bytes never captured
        self.assumed: list[str] = []  # defaults taken when a pause overflowed (the first ASSUMED_KEEP)
        self.assumed_more = 0  # and how many more
        self.end_seen = False
        self._last_offset = 0  # end of the last data event (queued ones included)
        self._stream = StreamBuffer()
        # Set (to the stream buffer) once the direction is parsed no more (not HTTP, tunnel) and no finding
        # waits for its bytes: from then on nothing can read its bytes or frames, only where it ends (for
        # gaps, lost_bytes and ``offset``), so the host just advances ``through.base`` over an in-order segment.
        # Its history is dropped when set, as at a reset, so the buffer never claims bytes it does not hold.
        self.through: StreamBuffer | None = None
        self._started = False  # any data seen (the first offset sets the stream's origin)
        self._pos = 0  # buf index of the first unconsumed byte
        self._queue: list[StreamData | Gap | StreamEnd] = []
        self._queued_bytes = 0
        self._pending: list[_Pending] = []
        self._after_loss = False
        # head scanning (absolute stream offsets, so compaction does not move them)
        self._msg_start: int | None = None
        self._line_start = 0
        self._scan = 0
        self._start: RequestLine | StatusLine | None = None  # the start line, once complete and valid
        self._start_line = b""
        # body walking
        self._msg: MessageBuilder | None = None
        self._cl_remaining = 0
        self._chunk: ChunkedDecoder | None = None
        self._trailers: list[HeaderField] = []  # of the chunked body being walked
        self._waiting: MessageBuilder | None = None  # response head waiting for its request
        # Set when a wait for a request overflowed, cleared when a response finds its request: until then the
        # responses whose request has not come are framed at once, as if it were not HEAD or CONNECT. Waiting
        # for each of them would replay the whole queue every time (quadratic: a capture of one direction, or a
        # request side that stopped) and say the same thing once per response.
        self._requests_stalled = False
        self.unpaired = 0  # responses framed without waiting, their request not seen (see _requests_stalled)
        # resynchronisation
        self._unparsed: _Unparsed | None = None  # the region being skipped, if reported
        self._boundary = False  # the resync position is at a line start

    # --- events --------------------------------------------------------------------------------------------

    @property
    def can_produce(self) -> bool:
        """Could this direction still produce messages?"""
        if self.pause is not None or self._queue:
            return True
        return self.mode not in (Mode.ENDED, Mode.NOT_HTTP, Mode.TUNNEL)

    @property
    def offset(self) -> int:
        """Stream offset after the last byte delivered to this direction."""
        return max(self._stream.end, self._last_offset)

    def segment(self, offset: int, data: bytes, frame: int, ts: int) -> None:
        """The next in-order bytes of this direction (the host's data event, unpacked): the hot path, called for
        every segment. A direction that is not parsed (not HTTP, tunnel) only tracks where it ends; a segment
        inside a body is taken by ``fast_data`` without buffering or parsing, and neither can resume the other
        direction unless a message ended (then the host may resume a reader paused on this one)."""
        through = self.through
        if through is not None and offset == through.base:
            through.base += len(data)
            return
        if data:
            taken = self.fast_data(offset, data, frame)
            if taken != 1:
                if not taken:
                    self.data(_tnew(StreamData, (self.direction, offset, data, frame, ts)))
                host = self.host
                if host is not _FINISHED:  # (after finish, events are ignored: the reader has ended)
                    host.after_segment()

    def data(self, ev: StreamData) -> None:
        end = ev.offset + len(ev.data)
        if end > self._last_offset:
            self._last_offset = end
        if self.mode is _ENDED and not self._queue and self.pause is None:
            return
        if self.pause is not None:
            self._queue.append(ev)
            self._queued_bytes += len(ev.data)
            if self._queued_bytes > PAUSE_LIMIT:
                self._overflow()
            return
        self._data(ev.offset, ev.data, ev.frame)

    def fast_data(self, offset: int, data: bytes, frame: int) -> int:
        """The hot path: take a non-empty segment that needs no parsing. Returns 0 when not taken (the caller
        then hands the event to ``data``), 1 when taken, 2 when taken and it ended a message (the host must then
        check whether the other direction can resume, as after ``data``).

        Taken when nothing is buffered or waiting for later bytes (no pending finding), the segment follows on
        from the last one, and it lies inside a Content-Length body (possibly ending it), holds only chunk-data
        and plain chunk-size lines (ChunkedDecoder.skim), extends a body read until close, or holds no status-line
        while the direction looks for one (``_skim_resync``). The state after
        it is exactly what ``data`` would leave: counters, excerpt, history bytes and the offset->frame map
        (only its last entries: it stays bounded). Never taken while paused: a paused reader is in a head, and
        a body being walked has ``pause`` None. (A direction that is not parsed at all is cheaper still: see
        ``through``.)"""
        st = self._stream
        if offset != st.base or st.buf or self._pending:
            return 0
        n = len(data)
        remaining = self._cl_remaining
        if remaining >= n:  # inside a Content-Length body (only then is _cl_remaining non-zero; n > 0)
            ends = remaining == n  # this segment ends the body, and the message
            self._cl_remaining = remaining - n
            msg = self._msg
            assert msg is not None  # (a body has its message)
            msg.body_length += n
            msg.wire_body_length += n
            excerpt = msg.excerpt
            if len(excerpt) < BODY_KEEP and not msg.elided:
                excerpt += data[: BODY_KEEP - len(excerpt)]
        else:
            ends = False
            dec = self._chunk
            if dec is not None:  # inside a chunked body
                if dec.phase is _CHUNK_DATA and dec.remaining >= n:  # inside a chunk's data: skim, inlined
                    dec.remaining -= n
                    dec.decoded += n
                    dec.end = offset + n
                    if not dec.remaining:
                        dec.phase = _CHUNK_DATA_CRLF
                    kept = dec.kept
                    if len(kept) < dec.keep:
                        kept += data[: dec.keep - len(kept)]
                elif not dec.skim(data, offset):  # across chunk boundaries, if they are plain
                    return 0
            else:
                if self.mode is not _BODY:
                    if self.mode is _RESYNC and not self.is_request:
                        return self._skim_resync(offset, data, frame)
                    return 0
                msg = self._msg
                assert msg is not None  # (a body has its message)
                if remaining or not isinstance(msg.framing, UntilClose):
                    return 0
                msg.body_length += n
                msg.wire_body_length += n
                excerpt = msg.excerpt
                if len(excerpt) < BODY_KEEP and not msg.elided:
                    excerpt += data[: BODY_KEEP - len(excerpt)]
        end = offset + n
        seg_off = st.seg_off
        if n >= HISTORY and len(seg_off) == 1:
            # st.skip(offset, data, frame), inlined for its usual case (a segment that holds all the history
            # bytes, after one that did too): the same history and the same single segment start
            st.base = end
            history = data[-HISTORY:]
            # (bytes(history) for bytes data would be the same object, after a costly call)
            st.history = history if history.__class__ is bytes else bytes(history)
            seg_off[0] = offset
            st.seg_frame[0] = frame
        else:
            st.skip(offset, data, frame)
        if end > self._last_offset:
            self._last_offset = end
        if not ends:
            return 1
        assert msg is not None  # (ends only in a Content-Length body)
        self._message_done(msg, _INCOMPLETE if msg.body_missing else _COMPLETE)  # the body's last bytes
        return 2

    def _skim_resync(self, offset: int, data: bytes, frame: int) -> int:
        """``fast_data`` for a response direction looking for the next status-line (after a gap; in a capture cut
        by a snaplen, after every segment): a segment that holds no "HTTP/1." is taken as ``_step_resync`` takes
        it (the bytes skipped counted as unparsed, the last few kept in case a status-line starts there), without
        the calls of ``data``. 1 when taken, 0 when not (it may hold a status-line, or is too short to skip any
        byte: ``data`` then)."""
        n = len(data)
        keep = n - len(abnf.RESPONSE_PREFIX) + 1
        if keep <= 0 or self.pause is not None or data.find(abnf.RESPONSE_PREFIX) >= 0:
            return 0
        st = self._stream
        st.append(offset, data, frame)
        st.consume(keep)
        self.unparsed_bytes += keep  # (_boundary, which _step_resync also sets, is read for requests only)
        end = offset + n
        if end > self._last_offset:
            self._last_offset = end
        return 1

    def gap(self, ev: Gap) -> None:
        if self.pause is not None:
            self._queue.append(ev)
            return
        self._gap(ev.offset, ev.length, ev.frame, ev.reason)

    def gap_at(self, offset: int, length: int, frame: int, reason: str) -> None:
        """``gap`` with the event's fields (the host's gap sink: in a capture cut by a snaplen, every segment is
        followed by one); the Gap is made only to be queued."""
        if self.pause is not None:
            self._queue.append(Gap(self.direction, offset, length, frame, reason))
            return
        self._gap(offset, length, frame, reason)

    def end(self, ev: StreamEnd) -> None:
        self.end_seen = True
        if self.pause is not None:
            self._queue.append(ev)
            return
        self._end(ev.offset, ev.frame, ev.reason)

    def resume(self, decision: RequestInfo | bool) -> None:
        """The host answers a pause: RequestInfo for AwaitRequest, True (tunnel) / False for AwaitResponse."""
        pause, self.pause = self.pause, None
        if isinstance(pause, AwaitRequest) and isinstance(decision, RequestInfo):
            msg, self._waiting = self._waiting, None
            assert msg is not None
            self._start_body(
                msg,
                body_framing(msg.header_framing, is_request=False, status=msg.status, request_method=decision.method),
            )
        elif isinstance(pause, AwaitResponse) and decision is True:
            self._enter_tunnel()
        self._run()
        queue, self._queue, self._queued_bytes = self._queue, [], 0
        for ev in queue:
            if isinstance(ev, StreamData):
                self.data(ev)
            elif isinstance(ev, Gap):
                self.gap(ev)
            else:
                self.end(ev)

    def enter_tunnel(self) -> None:
        """The other direction switched protocols (101 / 2xx to CONNECT) without this side having paused."""
        if self.mode in (_HEAD, _DETECT, _RESYNC) and self.pause is None:
            self._enter_tunnel()

    def flush(self) -> None:
        """Deliver every finding still waiting for excerpt bytes (at finish)."""
        self._flush_pending()

    def detach(self) -> None:
        """The host is done with this reader (after ``flush``; it reads messages and counters only from now on).
        A reader and its host refer to each other: dropping this side of the cycle lets reference counting free
        a conversation's HTTP state as soon as the pipeline drops the conversation, instead of leaving it to the
        cyclic garbage collector (whose full collections walk the whole heap)."""
        self.host = _FINISHED

    # --- data ----------------------------------------------------------------------------------------------

    def _data(self, offset: int, data: bytes, frame: int) -> None:
        st = self._stream
        if not self._started:
            self._started = True
            st.reset(offset)
            self._line_start = self._scan = offset
        end = st.end
        if offset > end:
            self._gap(end, offset - end, frame, "lost")
            if self.mode is _ENDED:
                return
        elif offset < end:  # overlap with bytes already delivered: keep the first copy
            data = data[end - offset :]
            offset = end
        if not data:
            return
        if self._pending:
            self._feed_pending(offset, data)
        mode = self.mode
        if mode is _NOT_HTTP or mode is _TUNNEL or mode is _ENDED:
            st.consume(self._pos)
            self._pos = 0
            st.append(offset, data, frame)
            st.consume(len(st.buf))  # keep only the history (for a pending finding's excerpt) and offsets
            self._check_through()
            return
        st.append(offset, data, frame)
        self._run()

    def _run(self) -> None:
        while self.pause is None:
            mode = self.mode
            if mode is _HEAD or mode is _DETECT:
                if self._msg_start is None and self._pos >= len(self._stream.buf):
                    break  # between messages with nothing left: _step_head would find nothing either
                progressed = self._step_head()
            elif mode is _BODY:
                progressed = self._step_body()
            elif mode is _RESYNC:
                progressed = self._step_resync()
            else:
                self._pos = len(self._stream.buf)
                progressed = False
            if not progressed:
                break
        self._compact()

    def _compact(self) -> None:
        if self._pos:
            self._stream.consume(self._pos)
            self._pos = 0
        if self.mode is _NOT_HTTP or self.mode is _TUNNEL:
            self._check_through()

    def _check_through(self) -> None:
        """Pass the direction through (``through``) once it is parsed no more and nothing waits for its bytes."""
        st = self._stream
        if (
            self.through is None
            and (self.mode is _NOT_HTTP or self.mode is _TUNNEL)
            and self.pause is None
            and not self._pending
            and not st.buf
        ):
            st.reset(st.end)
            self.through = st

    # --- heads ---------------------------------------------------------------------------------------------

    def _step_head(self) -> bool:
        st = self._stream
        buf, base = st.buf, st.base
        n = len(buf)
        if self._msg_start is None:
            # RFC 9112 §2.2: "a server that is expecting to receive and parse a request-line SHOULD ignore at
            # least one empty line (CRLF) received prior to the request-line." Done for both directions.
            p = self._pos
            while p < n:
                if buf[p] == LF:
                    p += 1
                elif buf[p] == CR and p + 1 < n and buf[p + 1] == LF:
                    p += 2
                else:
                    break
            self._pos = p
            if p >= n or (buf[p] == CR and p + 1 == n):
                return False
            self._msg_start = self._line_start = self._scan = base + p
            self._start = None
        start_rel = self._msg_start - base
        if self._start is None:
            ls = start_rel
            lf = buf.find(b"\n", max(ls, self._scan - base))
            if lf >= 0 and lf + 1 - start_rel <= HEAD_LIMIT:
                # The usual case: the whole start line is here and valid. Then the prefix check below passes
                # too (a status-line starts with HTTP/1.; a request-line is token SP target SP HTTP/1.x), except
                # for a request method longer than MAX_METHOD_LENGTH, which goes the long way.
                data = bytes(buf[ls:lf])
                start = parse_start_line(data[:-1] if data.endswith(b"\r") else data, self.is_request)
                if not isinstance(start, BadStartLine) and (
                    not self.is_request or len(start.method) <= abnf.MAX_METHOD_LENGTH  # type: ignore[union-attr]
                ):
                    self._line_start = self._scan = base + lf + 1
                    self._start = start
                    self._start_line = data
                    if self.mode is _DETECT:
                        self._detected()
                    return self._step_head_end(start_rel)
            if not self._start_prefix_ok(bytes(buf[ls : min(ls + 64, n if lf < 0 else lf)])):
                # Judged on the first 64 bytes of the start line, whether or not its end has arrived, so the
                # verdict does not depend on how the stream was segmented.
                return self._bad_start(partial=True)
            if lf < 0:
                self._scan = base + n
                # The head must end (final LF included) within HEAD_LIMIT bytes; no LF yet and HEAD_LIMIT bytes
                # buffered means it cannot.
                if n - start_rel >= HEAD_LIMIT:
                    return self._head_too_long()
                return False
            if lf + 1 - start_rel > HEAD_LIMIT:
                return self._head_too_long()
            data = bytes(buf[ls:lf])
            self._line_start = self._scan = base + lf + 1
            start = parse_start_line(data[:-1] if data.endswith(b"\r") else data, self.is_request)
            if isinstance(start, BadStartLine):
                return self._bad_start(partial=False)
            self._start = start
            self._start_line = data
            if self.mode is _DETECT:
                self._detected()
        return self._step_head_end(start_rel)

    def _step_head_end(self, start_rel: int) -> bool:
        st = self._stream
        buf, base = st.buf, st.base
        n = len(buf)
        # The head ends at the first empty line: an LF followed by CRLF or LF (the start line's LF is the first).
        first_lf = self._line_start - base - 1
        m = _HEAD_END.search(buf, max(first_lf, self._scan - base - 2))
        if m is None:
            self._scan = base + n
            if n - start_rel >= HEAD_LIMIT:
                return self._head_too_long()
            return False
        if m.end() - start_rel > HEAD_LIMIT:
            return self._head_too_long()
        return self._head_complete(m.start(), m.end())

    def _start_prefix_ok(self, prefix: bytes) -> bool:
        if self.is_request:
            return abnf.request_line_prefix_ok(prefix)
        if self.mode is _DETECT and prefix[:7] == abnf.RESPONSE_PREFIX:
            self._detected()  # "s2c starts with HTTP/1.": HTTP, even if the status line turns out malformed
        return abnf.response_prefix_ok(prefix)

    def _detected(self) -> None:
        self.is_http = True
        self.mode = _HEAD

    def _bad_start(self, *, partial: bool) -> bool:
        """The start line is not one: ``partial`` when its first bytes already rule it out (then the next
        message start is searched from the next byte), else when the complete line failed (from the next line)."""
        assert self._msg_start is not None
        if self.mode is _DETECT:
            return self._not_http()
        start = self._msg_start
        resume = start + 1 if partial else self._line_start
        self._begin_resync(resume, boundary=not partial)
        self._unparsed_from(start, f"not a {'request-line' if self.is_request else 'status-line'}")
        return True

    def _not_http(self) -> bool:
        """Not HTTP/1.x from the first bytes: stop buffering this direction; no findings for it."""
        self.mode = _NOT_HTTP
        self._msg_start = None
        self._pos = len(self._stream.buf)
        return False

    def _head_too_long(self) -> bool:
        assert self._msg_start is not None
        if self.mode is _DETECT:
            return self._not_http()
        start = self._msg_start
        self._begin_resync(start + HEAD_LIMIT, boundary=False)
        self._unparsed_from(start, f"head too long: no empty line within {HEAD_LIMIT} bytes")
        return True

    def _head_complete(self, last_lf: int, end: int) -> bool:
        """The head is buf[msg_start:end]: start line, field lines up to ``last_lf``, then the empty line."""
        st = self._stream
        base = st.base
        assert self._msg_start is not None and self._start is not None
        start = self._msg_start
        head_end = base + end
        fields_at = self._line_start
        buf = st.buf
        seg_off = st.seg_off
        head_fields = None
        if last_lf > fields_at - base and end - last_lf == 3:
            # The usual head: with field lines, ended by CRLF CRLF; in one segment, or over several (cookies)
            block = bytes(buf[fields_at - base : last_lf + 1])
            if seg_off and seg_off[-1] <= start:
                first_frame = st.seg_frame[-1]
                head_fields = parse_clean_fields(self._start_line, fields_at, block, first_frame)
            else:
                first_frame = st.frames_at([start])[0]
                head_fields = parse_clean_fields(self._start_line, fields_at, block, first_frame, st.frames_at)
        if head_fields is not None:
            issues: tuple[Issue, ...] = ()
        else:
            # The head's lines as parallel lists: the start line, the field lines, the empty line that ends it.
            # Offsets: line k of the block starts at fields_at + (the lengths of the lines before it) + k.
            if last_lf > fields_at - base:
                datas = bytes(buf[fields_at - base : last_lf]).split(b"\n")
                offsets = [start, *map(add, accumulate(map(len, datas), initial=fields_at), count())]
                datas.insert(0, self._start_line)
            else:
                offsets = [start, base + last_lf + 1]
                datas = [self._start_line]
            datas.append(bytes(buf[last_lf + 1 : end - 1]))
            if seg_off and seg_off[-1] <= start:  # the whole head came in one segment
                frames = [st.seg_frame[-1]] * len(offsets)
            else:
                frames = st.frames_at(offsets)
            first_frame = frames[0]
            lines = [Line(o, d, f) for o, d, f in zip(offsets, datas, frames)]
            parsed = parse_head(lines[:-1], lines[-1], self.is_request, start=self._start)
            assert isinstance(parsed, ParsedHead)
            head_fields, issues = parsed.fields, parsed.issues
        start_line = self._start
        index = len(self.messages)
        elided = index >= DETAILED_MESSAGES
        raw_stop = min(head_end, start + RAW_HEAD_KEEP)
        hf = analyze_headers(head_fields, is_request=self.is_request, version=start_line.version)
        msg = MessageBuilder(
            direction=self.direction,
            index=index,
            start=start_line,
            headers=() if elided else head_fields,
            raw_head=b"" if elided else bytes(buf[start - base : raw_stop - base]),  # all of it is in buf
            raw_head_truncated=raw_stop < head_end,
            header_framing=hf,
            offset=start,
            head_end=head_end,
            first_frame=first_frame,
            after_loss=self._after_loss,
            elided=elided,
            upgrade=self.is_request and any(len(f.name) == 7 and f.lname == b"upgrade" for f in head_fields),
        )
        self.messages.append(msg)
        self._msg_start = None
        self._start = None
        self._pos = head_end - st.base
        self.host.head_parsed(self, msg)
        for issue in issues:
            self._issue(issue, msg)
        if self.is_request:
            for issue in hf.issues:
                self._issue(issue, msg)
            self._start_body(msg, body_framing(hf, is_request=True))
            return True
        info = self.host.request_for(self, msg)
        if isinstance(info, AwaitRequest):
            if self._requests_stalled:
                self.unpaired += 1
                info = _NO_REQUEST
            else:
                for issue in hf.issues:
                    self._issue(issue, msg)
                self._waiting = msg
                self.pause = info
                return False
        elif info.method is not None:
            self._requests_stalled = False  # the request side caught up
        framing = body_framing(hf, is_request=False, status=msg.status, request_method=info.method)
        for issue in hf.issues:
            # RFC 9112 §6.1: a response to HEAD, or a 304, MAY carry the Transfer-Encoding the body would have
            # had; 1xx/204/2xx-to-CONNECT have no body either: "not final" says nothing about framing there.
            if issue.code != codes.TE_CHUNKED_NOT_FINAL or not isinstance(framing, (NoBody, Tunnel)):
                self._issue(issue, msg)
        self._start_body(msg, framing)
        return True

    # --- bodies --------------------------------------------------------------------------------------------

    def _start_body(self, msg: MessageBuilder, framing: BodyFraming) -> None:
        msg.framing = framing
        self._msg = msg
        if isinstance(framing, ContentLength) and framing.length > 0:
            self._cl_remaining = framing.length
            self.mode = _BODY
        elif isinstance(framing, Chunked):
            self._chunk = ChunkedDecoder(msg.head_end, keep=0 if msg.elided else BODY_KEEP)
            self._trailers = []
            self.mode = _BODY
        elif isinstance(framing, UntilClose):
            self.mode = _BODY
        elif isinstance(framing, Unframed):
            # RFC 9112 §6.3 items 4/5: the recipient cannot tell where this message ends and must close;
            # the next message, if any, is searched for. The cause is already reported (TE/CL finding).
            self._message_done(msg, _MALFORMED)
            self._begin_resync(msg.head_end, boundary=True)
        elif isinstance(framing, Tunnel):
            self._message_done(msg, _COMPLETE)
            self._enter_tunnel()
        else:  # NoBody, ContentLength(0)
            self._message_done(msg, _COMPLETE)

    def _step_body(self) -> bool:
        msg = self._msg
        assert msg is not None
        st = self._stream
        buf = st.buf
        p = self._pos
        n = len(buf)
        framing = msg.framing
        if isinstance(framing, ContentLength):
            take = min(n - p, self._cl_remaining)
            if take <= 0:
                return False
            msg.keep(buf, p, take)
            self._pos = p + take
            self._cl_remaining -= take
            msg.body_length += take
            msg.wire_body_length += take
            if self._cl_remaining == 0:
                self._message_done(msg, _INCOMPLETE if msg.body_missing else _COMPLETE)
                return True
            return False
        if isinstance(framing, Chunked):
            dec = self._chunk
            assert dec is not None
            self._pos = dec.feed(buf, p, st.base)
            self._drain_chunk(dec, msg)
            if dec.done:
                self._chunk_done(dec, msg)
                return True
            if dec.failed:
                self._chunk_sync(dec, msg)
                self._message_done(msg, _MALFORMED)
                self._begin_resync(dec.end, boundary=False)
                return True
            return False
        # UntilClose: everything to the end of the stream
        take = n - p
        if take > 0:
            msg.keep(buf, p, take)
            msg.body_length += take
            msg.wire_body_length += take
            self._pos = n
        return False

    def _drain_chunk(self, dec: ChunkedDecoder, msg: MessageBuilder) -> None:
        """Report the decoder's issues and parse its complete trailer lines now, while their bytes and
        segments are still held (frames and excerpts then do not depend on segmentation). Everything a feed
        completes lies after what earlier feeds completed, so ordering each batch by offset gives the same
        order however the stream was segmented."""
        issues, dec.issues = dec.issues, []
        if dec.trailer_lines:
            new, dec.trailer_lines = dec.trailer_lines, []
            frames = self._stream.frames_at([o for o, _ in new])
            lines = [Line(off, data, frame) for (off, data), frame in zip(new, frames)]
            issues += parse_field_lines(lines, after_start_line=False, into=self._trailers)[1]
        for issue in sorted(issues, key=lambda i: i.offset):
            self._issue(issue, msg)

    def _chunk_sync(self, dec: ChunkedDecoder, msg: MessageBuilder) -> None:
        msg.body_length = dec.decoded
        msg.wire_body_length = dec.end - dec.start
        msg.body_missing = dec.missing
        msg.chunks = dec.chunks
        if not msg.elided:
            msg.excerpt = dec.kept

    def _chunk_done(self, dec: ChunkedDecoder, msg: MessageBuilder) -> None:
        self._chunk_sync(dec, msg)
        if not msg.elided:
            msg.trailers = tuple(self._trailers)
        self._message_done(msg, _INCOMPLETE if msg.body_missing else _COMPLETE)

    def _message_done(self, msg: MessageBuilder, state: MessageState, end: int | None = None) -> None:
        st = self._stream
        msg.state = state
        msg.end_offset = max(st.base + self._pos, msg.head_end) if end is None else end
        if self._chunk is not None:
            msg.end_offset = max(msg.end_offset, self._chunk.end)
        last = msg.end_offset - 1
        msg.last_frame = st.frame_at(last) if last >= st.available_from else msg.first_frame
        self._msg = None
        self._chunk = None
        self._cl_remaining = 0
        if self.mode is _BODY:
            self.mode = _HEAD
        pause = self.host.message_done(self, msg)
        if pause is not None:
            self.pause = pause

    def _enter_tunnel(self) -> None:
        if self.mode is _ENDED:
            return
        self.mode = _TUNNEL
        self._msg_start = None
        self._start = None

    # --- resynchronisation ---------------------------------------------------------------------------------

    def _begin_resync(self, resume_at: int, *, boundary: bool) -> None:
        self.mode = Mode.RESYNC
        self._msg_start = None
        self._start = None
        self._pos = max(resume_at - self._stream.base, self._pos)
        self._boundary = boundary

    def _unparsed_from(self, start: int, reason: str) -> None:
        """Start an unparseable region; its finding is built when parsing resumes or the stream ends."""
        index = self.host.reserve()
        pending = self._excerpt_for(index, None, start, EXCERPT_SPAN)
        pending.frames = self._stream.frames_for(start, 1)
        pending.unparsed = _Unparsed(start, reason)
        self._unparsed = pending.unparsed
        self._track(pending)

    def _step_resync(self) -> bool:
        buf = self._stream.buf
        p = self._pos
        n = len(buf)
        if self.is_request:
            found, keep = _find_request_start(buf, p, n, self._boundary)
        else:
            found, keep = _find_response_start(buf, p, n)
        if found >= 0:
            self.unparsed_bytes += found - p
            self._pos = found
            self._end_resync(self._stream.base + found)
            self.mode = Mode.HEAD
            self.is_http = True
            return True
        if keep > p:
            self.unparsed_bytes += keep - p
            self._boundary = buf[keep - 1] == LF
            self._pos = keep
        return False

    def _end_resync(self, resumed_at: int | None) -> None:
        u, self._unparsed = self._unparsed, None
        if u is None:
            return
        u.stop = resumed_at if resumed_at is not None else self._stream.end
        u.resumed_at = resumed_at
        u.closed = True
        for p in self._pending:
            if p.unparsed is u:
                self._track(p)
                break

    def _unparsed_issue(self, u: _Unparsed, excerpt: bytes, excerpt_at: int) -> Issue:
        """Built from the excerpt (complete by now), so the text is the same however the stream was segmented."""
        first = excerpt[u.offset - excerpt_at :]
        first = first[: first.find(b"\n") + 1 or len(first)]
        skipped = u.stop - u.offset
        tail = (
            f"parsing resumed at the next {self.kind} at offset {u.resumed_at}"
            if u.resumed_at is not None
            else "the rest of the stream was not parsed"
        )
        return Issue(
            codes.UNPARSEABLE,
            u.offset,
            max(skipped, 1),
            f"{plural(skipped, 'byte')} from offset {u.offset} are not an HTTP/1.x {self.kind} ({u.reason}; first "
            f"bytes {show(first)}); {tail}.",
            {"reason": u.reason, "first_bytes": first, "resumed_at": u.resumed_at, "skipped": skipped},
        )

    # --- capture loss and end of stream --------------------------------------------------------------------

    def _gap(self, offset: int, length: int, frame: int, reason: str) -> None:
        st = self._stream
        if self.mode is Mode.ENDED or length <= 0:
            return
        if not self._started:
            self._started = True
            st.reset(offset)
        self.lost_bytes += length
        mode = self.mode
        what = "not captured" if reason == "lost" else f"not captured ({reason})"
        after = offset + length
        if mode is Mode.BODY:
            msg = self._msg
            assert msg is not None
            self._gap_in_body(msg, offset, length, frame, what)
        elif mode is Mode.HEAD:
            if self._msg_start is not None:
                start = self._msg_start
                self._incomplete(
                    None,
                    offset,
                    length,
                    (frame,),
                    f"The head of {self.kind} {len(self.messages)} (from offset {start}) was cut by {length} bytes "
                    f"{what} at offset {offset} (frame {frame} follows the gap): it cannot be checked, and whole "
                    "messages may be missing, so pairing after this point is uncertain.",
                    {"reason": "capture-loss", "gap_offset": offset, "gap_length": length, "message_offset": start},
                )
            else:
                self._incomplete(
                    None,
                    offset,
                    length,
                    (frame,),
                    f"{length} bytes {what} at offset {offset} between {self.kind}s (frame {frame} follows the gap): "
                    "whole messages may be missing, so pairing after this point is uncertain.",
                    {"reason": "capture-loss", "gap_offset": offset, "gap_length": length},
                )
            self._begin_resync(after, boundary=False)
            self._after_loss = True
        elif mode is Mode.DETECT:
            # The direction starts (for us) after a gap: look for a message start instead of judging the
            # first bytes; no findings until one is found.
            self._begin_resync(after, boundary=False)
            self.mode = Mode.RESYNC
            self._after_loss = True
        elif mode is Mode.RESYNC:
            self._boundary = False
        self._flush_pending()
        st.reset(after)
        self._pos = 0
        self._msg_start = None
        self._line_start = self._scan = after

    def _gap_in_body(self, msg: MessageBuilder, offset: int, length: int, frame: int, what: str) -> None:
        framing = msg.framing
        detail = {"reason": "capture-loss", "gap_offset": offset, "gap_length": length, "framing_intact": True}
        frames = tuple(dict.fromkeys((frame, msg.first_frame)))
        label = f"{self.kind} {msg.index}"
        if isinstance(framing, ContentLength):
            inside = min(length, self._cl_remaining)
            msg.body_missing += inside
            msg.body_length += inside
            msg.wire_body_length += inside
            self._cl_remaining -= inside
            if length <= inside:
                self._incomplete(
                    msg,
                    offset,
                    length,
                    frames,
                    f"{length} bytes of the body of {label} were {what} at offset {offset} (frame {frame} follows the "
                    "gap); Content-Length still delimits the message, so parsing goes on.",
                    detail,
                )
                if self._cl_remaining == 0:
                    self._message_done(msg, MessageState.INCOMPLETE, end=offset + inside)
                return
            detail["framing_intact"] = False
            self._incomplete(
                msg,
                offset,
                length,
                frames,
                f"{length} bytes were {what} at offset {offset}, running {length - inside} bytes past the end of "
                f"the body of {label} (frame {frame} follows the gap): following messages may be missing, so parsing "
                "resynchronises and pairing after this point is uncertain.",
                detail,
            )
            msg.end_reason = "gap"
            self._message_done(msg, MessageState.INCOMPLETE, end=offset + inside)
        elif isinstance(framing, Chunked):
            dec = self._chunk
            assert dec is not None
            if dec.gap(length):
                self._chunk_sync(dec, msg)
                self._incomplete(
                    msg,
                    offset,
                    length,
                    frames,
                    f"{length} bytes of chunk-data of {label} were {what} at offset {offset} (frame {frame} follows "
                    "the gap); the chunk-size still delimits the chunk, so parsing goes on.",
                    detail,
                )
                return
            detail["framing_intact"] = False
            self._chunk_sync(dec, msg)
            self._incomplete(
                msg,
                offset,
                length,
                frames,
                f"{length} bytes of the chunked body of {label} were {what} at offset {offset}, {dec.describe()} "
                f"(frame {frame} follows the gap): the chunk framing is lost, so parsing resynchronises.",
                detail,
            )
            msg.end_reason = "gap"
            self._message_done(msg, MessageState.INCOMPLETE)
        else:  # UntilClose: the framing does not depend on the missing bytes
            msg.body_missing += length
            msg.body_length += length
            msg.wire_body_length += length
            self._incomplete(
                msg,
                offset,
                length,
                frames,
                f"{length} bytes of the body of {label} (read until close) were {what} at offset {offset} "
                f"(frame {frame} follows the gap).",
                detail,
            )
            return
        self._begin_resync(offset + length, boundary=False)
        self._after_loss = True

    def _end(self, offset: int, frame: int | None, reason: str) -> None:
        st = self._stream
        if self.mode is Mode.ENDED:
            return
        if self._started and offset > st.end:
            self._gap(st.end, offset - st.end, frame or 0, "lost")
        self.end_reason = reason
        mode = self.mode
        end_frames = (frame,) if frame is not None else ()
        how = {"fin": "FIN", "rst": "RST"}.get(reason, reason)
        at = f" at frame {frame}" if frame is not None else ""
        capture = reason == "capture-ended"
        if mode is Mode.HEAD and self._msg_start is not None:
            start = self._msg_start
            got = st.end - start
            first = self._start_line if self._start is not None else st.slice(start, start + 64)
            frames = tuple(dict.fromkeys((st.frame_at(max(st.end - 1, start)), *end_frames)))
            detail = {"end_reason": reason, "message_offset": start, "received": got}
            if capture:
                self._incomplete(
                    None,
                    st.end,
                    0,
                    frames,
                    f"The capture ended inside the head of {self.kind} {len(self.messages)} ({plural(got, 'byte')} from offset "
                    f"{start}, starting {show(first, 64)}).",
                    dict(detail, reason="capture-ended"),
                )
            else:
                self._issue(
                    Issue(
                        codes.HEAD_TRUNCATED,
                        st.end,
                        0,
                        f"The stream ended ({how}{at}) inside the head of {self.kind} {len(self.messages)}, after "
                        f"{plural(got, 'byte')} starting {show(first, 64)}: the peer closed before the empty line that ends "
                        "the head.",
                        detail,
                        frames=frames,
                    ),
                    None,
                )
        elif mode is Mode.BODY:
            msg = self._msg
            assert msg is not None
            self._end_in_body(msg, reason, how, at, end_frames)
        elif mode is Mode.RESYNC:
            self._end_resync(None)
        self._flush_pending()
        self.mode = Mode.ENDED
        self.through = None

    def _end_in_body(self, msg: MessageBuilder, reason: str, how: str, at: str, end_frames: tuple[int, ...]) -> None:
        st = self._stream
        framing = msg.framing
        capture = reason == "capture-ended"
        end = st.end
        frames = tuple(dict.fromkeys((st.frame_at(end - 1) if end > msg.offset else msg.first_frame, *end_frames)))
        label = f"{self.kind} {msg.index}"
        msg.end_reason = reason
        if isinstance(framing, UntilClose):
            if capture:
                self._incomplete(
                    msg,
                    end,
                    0,
                    frames,
                    f"The capture ended before the server closed the connection, so the body of {label} (read until "
                    f"close, {msg.body_length} bytes so far) may be incomplete.",
                    {"reason": "capture-ended", "body_length": msg.body_length},
                )
                self._message_done(msg, MessageState.INCOMPLETE)
            else:
                self._message_done(msg, MessageState.INCOMPLETE if msg.body_missing else MessageState.COMPLETE)
            return
        if isinstance(framing, ContentLength):
            missing = self._cl_remaining
            got = framing.length - missing
            if capture:
                self._incomplete(
                    msg,
                    end,
                    missing,
                    frames,
                    f"The capture ended {missing} bytes before the end of the body of {label} (Content-Length "
                    f"{framing.length}, {got} bytes captured).",
                    {"reason": "capture-ended", "content_length": framing.length, "received": got, "missing": missing},
                )
                self._message_done(msg, MessageState.INCOMPLETE)
            else:
                self._issue(
                    Issue(
                        codes.BODY_TRUNCATED,
                        end,
                        missing,
                        f"The body of {label} is cut short: Content-Length {framing.length}, but the stream ended "
                        f"({how}{at}) after {got} bytes, {missing} missing (RFC 9112 §8: an incomplete message).",
                        {"end_reason": reason, "content_length": framing.length, "received": got, "missing": missing},
                        frames=frames,
                    ),
                    msg,
                )
                self._message_done(msg, MessageState.TRUNCATED)
            return
        dec = self._chunk
        assert dec is not None
        self._chunk_sync(dec, msg)
        detail = {
            "end_reason": reason,
            "phase": dec.phase.name.lower(),
            "chunks": dec.chunks,
            "decoded": dec.decoded,
            "missing_in_chunk": dec.remaining if dec.phase is ChunkPhase.DATA else 0,
        }
        if capture:
            self._incomplete(
                msg,
                end,
                0,
                frames,
                f"The capture ended inside the chunked body of {label}, {dec.describe()}.",
                dict(detail, reason="capture-ended"),
            )
            self._message_done(msg, MessageState.INCOMPLETE)
        else:
            self._issue(
                Issue(
                    codes.CHUNK_TRUNCATED,
                    end,
                    dec.remaining if dec.phase is ChunkPhase.DATA else 0,
                    f"The chunked body of {label} was cut by the stream's end ({how}{at}) {dec.describe()}, before "
                    "the last-chunk (0 CRLF CRLF) and trailer section: an incomplete message (RFC 9112 §7.1, §8).",
                    detail,
                    frames=frames,
                ),
                msg,
            )
            self._message_done(msg, MessageState.TRUNCATED)

    def _incomplete(
        self, msg: MessageBuilder | None, offset: int, length: int, frames: tuple[int, ...], text: str, detail: dict
    ) -> None:
        self._issue(Issue(codes.INCOMPLETE, offset, length, text, detail, frames=frames), msg)

    def _overflow(self) -> None:
        """Too much queued while paused: take the default and say so."""
        pause = self.pause
        if isinstance(pause, AwaitRequest):
            self._assume(
                f"{self.kind} {pause.exchange}: its request was not seen within {PAUSE_LIMIT} bytes; framed as if it "
                "were not HEAD or CONNECT, and so were the responses after it until one found its request"
            )
            self._requests_stalled = True
            self.resume(_NO_REQUEST)
        elif isinstance(pause, AwaitResponse):
            # (a request side waiting after each CONNECT or Upgrade request that gets no response overflows once
            # per such request: hence the cap)
            self._assume(
                f"request {pause.exchange}: no response seen within {PAUSE_LIMIT} bytes; "
                + ("the CONNECT tunnel was assumed open" if pause.connect else "no protocol switch was assumed")
            )
            self.resume(pause.connect)

    def _assume(self, text: str) -> None:
        if len(self.assumed) < ASSUMED_KEEP:
            self.assumed.append(text)
        else:
            self.assumed_more += 1

    # --- findings ------------------------------------------------------------------------------------------

    def issue(self, issue: Issue, msg: MessageBuilder | None) -> None:
        """Report ``issue`` (for the host: e.g. a proxy-generated error response it recognised)."""
        self._issue(issue, msg)

    def _issue(self, issue: Issue, msg: MessageBuilder | None) -> None:
        frames = issue.frames or self._stream.frames_for(issue.offset, issue.length)
        if not self.host.admit(self, issue.code, frames):  # one more of a code repeated too often: counted only
            return
        index = self.host.reserve()
        if msg is not None:
            msg.findings.append(index)
        message_index = msg.index if msg is not None else len(self.messages)
        if issue.excerpt is not None:
            at, data = issue.excerpt
            self.host.deliver(self, index, issue, frames, message_index, data, at)
            return
        pending = self._excerpt_for(index, issue, issue.offset, issue.length)
        pending.frames = frames
        pending.message_index = message_index
        self._track(pending)

    def _excerpt_for(self, index: int, issue: Issue | None, offset: int, length: int) -> _Pending:
        """Up to 64 bytes around the offending ones: 24 before (back to the last discontinuity), 16 of them, 24
        after. Bytes after may not have arrived yet; the finding then waits for them (or for a gap / the end), so
        the excerpt is the same however the stream was segmented."""
        st = self._stream
        start = max(offset - EXCERPT_BEFORE, st.reset_at)
        stop = offset + min(max(length, 0), EXCERPT_SPAN) + EXCERPT_AFTER
        data = bytearray(st.slice(start, stop))
        start = max(start, st.available_from)
        return _Pending(index, issue, (), len(self.messages), start, stop, data)

    def _track(self, p: _Pending) -> None:
        if p.ready and p.start + len(p.data) >= p.stop:
            if p.queued:
                self._pending.remove(p)
            self._deliver(p)
        elif not p.queued:
            p.queued = True
            self._pending.append(p)

    def _feed_pending(self, offset: int, data: bytes) -> None:
        still = []
        for p in self._pending:
            have = p.start + len(p.data)
            if have < p.stop and offset <= have < offset + len(data):
                p.data += data[have - offset : p.stop - offset]
            if p.ready and p.start + len(p.data) >= p.stop:
                self._deliver(p)
            else:
                still.append(p)
        self._pending = still

    def _flush_pending(self) -> None:
        """No more contiguous bytes will come (gap, end): deliver what is ready with the excerpt it has."""
        still = []
        for p in self._pending:
            if p.ready:
                self._deliver(p)
            else:
                p.stop = p.start + len(p.data)  # an unparseable region still being skipped: its excerpt is final
                still.append(p)
        self._pending = still

    def _deliver(self, p: _Pending) -> None:
        p.queued = False
        data = bytes(p.data)
        issue = p.issue
        if issue is None:
            assert p.unparsed is not None
            issue = self._unparsed_issue(p.unparsed, data, p.start)
        self.host.deliver(self, p.index, issue, p.frames, p.message_index, data, p.start)


def _find_response_start(buf: bytearray, p: int, n: int) -> tuple[int, int]:
    """(start of the next status-line at or after p, or -1; where to keep bytes from when not found)."""
    i = buf.find(abnf.RESPONSE_PREFIX, p)
    while i >= 0:
        if n - i < 13:
            return -1, i
        if abnf.STATUS_LINE_START.match(buf, i):
            return i, i
        i = buf.find(abnf.RESPONSE_PREFIX, i + 1)
    return -1, max(p, n - len(abnf.RESPONSE_PREFIX) + 1)


def _find_request_start(buf: bytearray, p: int, n: int, boundary: bool) -> tuple[int, int]:
    """(start of the next request-line at or after p, or -1; where to keep bytes from when not found).

    A request-line is accepted at a line start; in the middle of a line (after binary body bytes whose end
    was lost) only when its method is a well-known one.
    """
    i = buf.find(b" HTTP/1.", p)
    while i >= 0:
        ls = buf.rfind(b"\n", p, i) + 1
        if ls == 0:
            ls = p
        lf = buf.find(b"\n", i)
        if lf < 0:
            if n - i >= 11:  # " HTTP/1.1\r\n" would have ended by now
                i = buf.find(b" HTTP/1.", i + 1)
                continue
            return -1, max(ls, n - RESYNC_KEEP)
        line = bytes(buf[ls:lf])
        if line.endswith(b"\r"):
            line = line[:-1]
        at_line_start = ls > p or boundary
        if at_line_start and abnf.REQUEST_LINE.fullmatch(line):
            return ls, ls
        target_sp = line.rfind(b" ", 0, i - ls)
        if target_sp > 0:
            before = line[:target_sp]
            for method in abnf.KNOWN_METHODS:
                if before.endswith(method):
                    cand = target_sp - len(method)
                    if abnf.REQUEST_LINE.fullmatch(line[cand:]):
                        return ls + cand, ls + cand
        i = buf.find(b" HTTP/1.", i + 1)
    keep = max(p, buf.rfind(b"\n", p, n) + 1, n - RESYNC_KEEP)
    return -1, keep
