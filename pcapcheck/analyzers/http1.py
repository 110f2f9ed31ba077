"""HTTP/1.x analysis of one TCP conversation (sans-IO): framing faults, truncation, proxy error pages.

The pipeline calls ``data``/``gap``/``end`` with the events of both directions in capture order (the bytes
through ``sink(direction)``, which takes a data event's fields), then ``finish``. Two DirectionReaders
(pcapcheck.http.reader) find the messages; this class pairs responses with requests (pipelining, 1xx interim
responses, HEAD, CONNECT and 101 tunnels), turns the readers' issues into Findings (severity, rule, peers table)
and recognises proxy-generated error responses.

``finish()`` returns the findings in the order they were detected; ``HttpMessage.findings`` and
``HttpExchange.findings`` are indices into that list, and each finding carries its own index as
``detail.finding_index`` (so the link survives re-sorting). ``detail.message_index`` names its message within
the direction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from pcapcheck.findings import C2S, S2C, Finding
from pcapcheck.http import codes, proxy
from pcapcheck.http.abnf import KNOWN_METHODS
from pcapcheck.http.codes import CODES
from pcapcheck.http.framing import Tunnel, analyze_headers
from pcapcheck.http.issues import Issue
from pcapcheck.http.model import JSON_BODY_EXCERPT, ExchangeJson, HttpExchange, MessageState, Pairing
from pcapcheck.http.parser import RequestLine
from pcapcheck.http.peers import peers_for
from pcapcheck.http.proxy import recognize
from pcapcheck.http.reader import (
    AwaitRequest,
    AwaitResponse,
    DirectionReader,
    MessageBuilder,
    RequestInfo,
)
from pcapcheck.http.spill import ExchangeList, ExchangeSpill
from pcapcheck.tcp.events import Gap, StreamData, StreamEnd

__all__ = ["ExchangeJson", "Http1Analyzer", "HttpExchange"]

# RequestInfo is immutable: one per well-known method serves every response (request_for runs for each one).
_REQUEST_INFO: Final = {m: RequestInfo(m) for m in KNOWN_METHODS}

# Exchanges kept for the report: the first KEEP_FIRST, the last KEEP_LAST and every one with a finding. The
# others are dropped once KEEP_LAST more final responses have come (a keep-alive connection between a proxy and
# its backend can carry hundreds of thousands of requests: memory must not grow with them). An exchange with a
# finding is never dropped; ``dropped`` counts those that were.
KEEP_FIRST = 2000
KEEP_LAST = 64
# Interim (1xx) responses kept per exchange, besides those with a finding; later ones are counted
# (HttpExchange.interim_omitted).
INTERIM_KEPT = 16
# Findings of one code reported one by one per conversation; further ones are counted in one more finding of the
# code at finish (the same fault on every response of a long connection: each finding costs about 5 KB).
FINDINGS_PER_CODE = 1000
# In a reader's ``messages``: a message no longer held (of an exchange dropped, or spilled). Only ever compared by
# identity; a complete instance all the same (a class compiled for speed has no attributes until __init__ sets them).
DROPPED: Final = MessageBuilder(direction="", index=-1, start=RequestLine(b"", b"", b""), headers=(), raw_head=b"",
                         raw_head_truncated=False,
                         header_framing=analyze_headers((), is_request=True, version=b"HTTP/1.1"), offset=0,
                         head_end=0, first_frame=0, after_loss=False, elided=True)
# A conversation with an ExchangeSpill writes its settled exchanges there once it has had SPILL_AFTER final
# responses, while the messages the run's analyzers hold are estimated at more than HELD_BUDGET bytes: those
# SPILL_LAG final responses behind the last one (the point where _drop judges them, so nothing about them can
# change any more) are pickled, SPILL_CHUNK at a time, and only read back at finish. Memory then holds the last
# SPILL_LAG exchanges or so, not the KEEP_FIRST first ones (5 KB to 40 KB each with their heads: 10 to 80 MB a
# connection, and a proxy keeps hundreds of them open). Pickling and loading an exchange again costs about 30 us,
# as much as a seventh of analyzing it: a few long conversations stay in memory, and short ones never spill.
SPILL_AFTER = 128
HELD_BUDGET = 8 << 20
SPILL_LAG = KEEP_LAST
SPILL_CHUNK = 64
# A conversation page shows at most this many exchanges in full (report.views.shown_exchanges): the first ones, the
# last ones and those a finding points into; every one while there are at most PAGE_EXCHANGES_ALL. So an exchange
# spilled at place PAGE_EXCHANGES_ALL or later without a finding is never on a page, and only its report.json text
# is spilled (ExchangeJson; _write_chunk says why its place is known then): pickling it and loading it back was a
# fifth of the run of a capture of long keep-alive connections, and its text is written anyway.
PAGE_EXCHANGES_FIRST = 100
PAGE_EXCHANGES_LAST = 20
PAGE_EXCHANGES_MARKED = 200
PAGE_EXCHANGES_ALL = PAGE_EXCHANGES_FIRST + PAGE_EXCHANGES_LAST + PAGE_EXCHANGES_MARKED
_IN_PROGRESS: Final = MessageState.IN_PROGRESS
# The estimate of a message's memory, kept (tracemalloc: a bare exchange 2.7 KB; each byte of a head twice in its
# fields, and once more in the raw head, up to RAW_HEAD_KEEP; each field 200 bytes more).
_HELD_MESSAGE: Final = 1350
_HELD_PER_HEAD_BYTE: Final = 2
_HELD_PER_FIELD: Final = 200


class _Unanswered:
    """In the requests' ``messages``: a request spilled before any response to it came (the requests far ahead of
    the responses: a capture of the requests only, or deep pipelining). Its method frames the response if it
    comes; that response is then spilled on its own and joined to the request at finish (``exchanges``)."""

    __slots__ = ("method",)

    def __init__(self, method: bytes | None) -> None:
        self.method = method


_UNANSWERED: Final = {m: _Unanswered(m) for m in KNOWN_METHODS}


class Http1Analyzer:
    __slots__ = (  # (one per open conversation with data: see DirectionReader's)
        "conversation", "_spill", "_settled", "_spilled", "_spilled_count", "_unwritten", "_held", "_spilling",
        "_joins", "_c2s", "_s2c", "_findings", "_reserved", "_finals", "_interim", "_interim_omitted", "_interim_seen",
        "_final_count", "_result", "dropped", "_admitted", "_repeated", "__weakref__",
    )

    def __init__(self, conversation: int, spill: ExchangeSpill | None = None) -> None:
        self.conversation = conversation
        self._spill = spill
        self._settled = 0  # exchanges below this one were spilled or dropped: no reader holds their messages
        # where in _spill, how many, the places of those with a finding (ExchangeList.marked); in exchange order
        self._spilled: list[tuple[tuple[int, int], int, tuple[int, ...]]] = []
        self._spilled_count = 0
        self._unwritten: list[HttpExchange] = []  # settled, to be spilled with the next chunk
        self._held = 0  # this conversation's part of _spill.held
        self._spilling = False  # for good, once a long conversation found the budget exceeded
        self._joins = False  # a response was spilled apart from its request (_Unanswered): exchanges joins them
        self._c2s = DirectionReader(C2S, self)
        self._s2c = DirectionReader(S2C, self)
        self._findings: dict[int, Finding] = {}
        self._reserved = 0
        self._finals: dict[int, MessageBuilder] = {}  # exchange index -> final response
        self._interim: dict[int, list[MessageBuilder]] = {}
        self._interim_omitted: dict[int, int] = {}  # exchange -> 1xx responses done and not kept (INTERIM_KEPT)
        self._interim_seen = 0  # 1xx responses of the exchange awaiting its final response (_final_count)
        self._final_count = 0
        self._result: list[Finding] | None = None
        self.dropped = 0  # exchanges not kept for the report (KEEP_FIRST)
        self._admitted: dict[str, int] = {}  # code -> findings reported one by one (FINDINGS_PER_CODE)
        self._repeated: dict[str, list] = {}  # code -> [count, is_request, direction, frames] of those only counted

    # --- the pipeline's interface --------------------------------------------------------------------------

    def data(self, ev: StreamData) -> None:
        """One direction's next in-order bytes (``sink`` takes the same without the event)."""
        reader = self._reader(ev[0])
        if reader is not None:
            reader.segment(ev[1], ev[2], ev[3], ev[4])

    def sink(self, direction: str) -> Callable[[int, bytes, int, int], None]:
        """``data`` for one direction, called as a reassembler delivers, ``(offset, data, frame, ts)``: the
        pipeline's hot path (``DirectionReader.segment``, no StreamData built unless the segment needs parsing)."""
        reader = self._reader(direction)
        if reader is None:
            raise ValueError(f"not a direction: {direction!r}")
        return reader.segment

    def after_segment(self) -> None:
        """After a segment that was parsed or ended a message (``DirectionReader.segment``): a reader paused on
        the other direction may go on."""
        if self._c2s.pause is not None or self._s2c.pause is not None:  # else _pump has nothing to resume
            self._pump()

    def gap(self, ev: Gap) -> None:
        reader = self._reader(ev.direction)
        if reader is not None:
            reader.gap(ev)
            self._pump()

    def gap_sink(self, direction: str) -> Callable[[int, int, int, str], None]:
        """``gap`` for one direction, called as a reassembler reports a gap, ``(offset, length, frame, reason)``
        (after every segment of a capture cut by a snaplen): no Gap made, and no resuming unless a reader is
        paused (``_pump`` has nothing to do otherwise)."""
        reader = self._reader(direction)
        if reader is None:
            raise ValueError(f"not a direction: {direction!r}")
        gap_at, c2s, s2c = reader.gap_at, self._c2s, self._s2c

        def on_gap(offset: int, length: int, frame: int, reason: str) -> None:
            gap_at(offset, length, frame, reason)
            if c2s.pause is not None or s2c.pause is not None:
                self._pump()

        return on_gap

    def end(self, ev: StreamEnd) -> None:
        reader = self._reader(ev.direction)
        if reader is not None and not reader.end_seen:
            reader.end(ev)
            self._pump()

    def finish(self) -> list[Finding]:
        """All findings, in detection order. A direction without an end event is ended as "capture-ended"."""
        if self._result is None:
            for reader in (self._c2s, self._s2c):
                if not reader.end_seen:
                    reader.end(StreamEnd(reader.direction, reader.offset, None, "capture-ended"))
            self._pump(force=True)
            for reader in (self._c2s, self._s2c):
                reader.flush()
                reader.detach()
            for code, (count, is_request, direction, frames) in self._repeated.items():
                index = self.reserve()
                self._findings[index] = Finding(
                    code=code,
                    severity=CODES[code].severity(is_request),
                    message=(f"{count:,} more {code} fault(s) in this conversation after the first "
                             f"{FINDINGS_PER_CODE:,}, counted but not reported one by one: the same fault again "
                             "(the findings above show it)"),
                    conversation=self.conversation,
                    direction=direction,
                    frames=tuple(frames),
                    detail={"repeated": count, "reported": FINDINGS_PER_CODE, "finding_index": index},
                    rule=CODES[code].rule,
                )
            self._result = [self._findings[i] for i in sorted(self._findings)]
            if self._held:
                self._spill.held -= self._held  # type: ignore[union-attr]
                self._held = 0
        return list(self._result)

    @property
    def is_http(self) -> bool:
        return self._c2s.is_http or self._s2c.is_http

    @property
    def exchanges(self) -> Sequence[HttpExchange | ExchangeJson]:
        """The exchanges kept, in order: a list, or an ExchangeList when some were spilled (some of those kept as
        their JSON text only: ExchangeJson, never one a page shows)."""
        out: list[HttpExchange] = list(self._unwritten)
        requests = self._c2s.messages
        count = max(len(requests), self._final_count, max(self._interim, default=-1) + 1)
        for k in range(self._settled, count):
            exchange = self._exchange(k)
            if exchange is not None:
                out.append(exchange)
        late = [k for k in self._interim if k < self._settled]  # behind the spilled ones, the final never came
        if late or self._joins:  # (rare: requests far ahead of their responses) all read back to be put in order
            spilled = [x for where, _, _ in self._spilled for x in self._spill.read(where)]  # type: ignore[union-attr]
            return _joined(spilled + out + [self._exchange(k) for k in late])  # type: ignore[list-item]
        if self._spilled:
            return ExchangeList(self._spill, self._spilled, out)  # type: ignore[arg-type]
        return out

    def _exchange(self, k: int) -> HttpExchange | None:
        """Exchange ``k`` as the report sees it; None if it was dropped."""
        requests = self._c2s.messages
        req = requests[k] if k < len(requests) else None
        resp = self._finals.get(k)
        if req is DROPPED or req is None or type(req) is _Unanswered:
            if resp is None and k not in self._interim:  # dropped (_drop)
                return None
            req = None  # (an _Unanswered request is in the spill: exchanges joins them)
        uncertain = any(m.after_loss for m in (req, resp) if m is not None)
        return HttpExchange(
            index=k,
            request=req.freeze() if req is not None else None,
            interim=tuple(m.freeze() for m in self._interim.get(k, ())),
            interim_omitted=self._interim_omitted.get(k, 0),
            response=resp.freeze() if resp is not None else None,
            pairing=Pairing.UNCERTAIN if uncertain else Pairing.IN_ORDER,
            tunnel=resp is not None and isinstance(resp.framing, Tunnel),
        )

    def summary(self) -> dict[str, Any]:
        """Per direction: detected as HTTP, messages, bytes skipped unparsed, bytes lost, assumptions made."""
        return {
            r.direction: {
                "http": r.is_http,
                "messages": len(r.messages),
                "unparsed_bytes": r.unparsed_bytes,
                "lost_bytes": r.lost_bytes,
                "assumed": list(r.assumed) + ([f"and {r.assumed_more} more"] if r.assumed_more else []),
                "end": r.end_reason,
            }
            for r in (self._c2s, self._s2c)
        }

    # --- the readers' host interface ----------------------------------------------------------------------

    def admit(self, reader: DirectionReader, code: str, frames: tuple[int, ...]) -> bool:
        """Whether a finding of ``code`` is reported one by one (FINDINGS_PER_CODE); if not, it is counted (and
        its first frame kept, for the first 20 of them)."""
        n = self._admitted.get(code, 0)
        if n < FINDINGS_PER_CODE:
            self._admitted[code] = n + 1
            return True
        rep = self._repeated.get(code)
        if rep is None:
            rep = self._repeated[code] = [0, reader.is_request, reader.direction, []]
        elif rep[2] != reader.direction:
            rep[2] = None  # both directions
        rep[0] += 1
        first = next((f for f in frames if f), None)
        if first is not None and len(rep[3]) < 20 and first not in rep[3]:
            rep[3].append(first)
        return False

    def reserve(self) -> int:
        self._reserved += 1
        return self._reserved - 1

    def deliver(
        self,
        reader: DirectionReader,
        index: int,
        issue: Issue,
        frames: tuple[int, ...],
        message_index: int,
        excerpt: bytes,
        excerpt_offset: int,
    ) -> None:
        info = CODES[issue.code]
        detail = dict(issue.detail)
        detail.update(
            offset=issue.offset,
            length=issue.length,
            excerpt=excerpt,
            excerpt_offset=excerpt_offset,
            message_index=message_index,
            finding_index=index,
            peers=peers_for(issue.code, reader.is_request),
        )
        self._findings[index] = Finding(
            code=issue.code,
            severity=info.severity(reader.is_request),
            message=issue.message,
            conversation=self.conversation,
            direction=reader.direction,
            frames=tuple(dict.fromkeys(f for f in frames if f)),
            detail=detail,
            rule=issue.rule or info.rule,
        )

    def head_parsed(self, reader: DirectionReader, msg: MessageBuilder) -> None:
        if reader is self._c2s:
            msg.exchange = msg.index
            return
        status = msg.status
        msg.exchange = self._final_count
        if 100 <= status < 200 and status != 101:
            msg.interim = True  # RFC 9110 §15.2: interim, the final response follows
            self._interim.setdefault(msg.exchange, []).append(msg)
            self._interim_seen += 1
        else:
            self._finals[msg.exchange] = msg
            self._final_count += 1
            self._interim_seen = 0

    def request_for(self, reader: DirectionReader, msg: MessageBuilder) -> RequestInfo | AwaitRequest:
        k = msg.exchange
        requests = self._c2s.messages
        if k < len(requests):
            req = requests[k]
            if req is DROPPED:  # dropped while no response had come (message_done): its method is not known
                return RequestInfo(None)
            method = req.method
            return _REQUEST_INFO.get(method) or RequestInfo(method)  # type: ignore[arg-type]
        status = msg.status
        if 100 <= status < 200 or status in (204, 304):
            return RequestInfo(None)  # RFC 9112 §6.3 item 1: no body whatever the request was
        if self._c2s.can_produce:
            return AwaitRequest(k)
        return RequestInfo(None)

    def message_done(self, reader: DirectionReader, msg: MessageBuilder) -> AwaitResponse | None:
        if reader is self._s2c and not msg.interim:
            self._check_proxy_error(reader, msg)  # (on the BODY_KEEP bytes the reader kept)
        if len(msg.excerpt) > JSON_BODY_EXCERPT:
            # A whole message's outputs use its body's first KiB (report.json, the page): the rest of what the
            # reader kept was for recognising a proxy's error page, done. A kept exchange holds a KiB, not four.
            msg.excerpt = msg.excerpt[:JSON_BODY_EXCERPT]
        if self._spill is not None and not self._spilling and msg.index < KEEP_FIRST + KEEP_LAST:
            # (later messages are dropped or spilled as others come: the held ones no longer grow)
            held = (_HELD_MESSAGE + _HELD_PER_HEAD_BYTE * (msg.head_end - msg.offset) + len(msg.raw_head)
                    + len(msg.excerpt) + _HELD_PER_FIELD * (len(msg.headers) + len(msg.trailers)))
            self._held += held
            self._spill.held += held
        if reader is self._c2s:
            if msg.method == b"CONNECT":
                return AwaitResponse(msg.index, connect=True)
            if msg.upgrade:
                return AwaitResponse(msg.index, connect=False)
            k = msg.index
            unanswered = not self._s2c.messages
            if k >= KEEP_FIRST + KEEP_LAST and unanswered:
                # no response at all so far (a capture of the requests only, or a server that never answered):
                # the requests are dropped as exchanges are (a response that comes after all is dropped too)
                self._drop(k - KEEP_LAST)
            if k >= SPILL_AFTER and k - SPILL_LAG >= self._final_count and self._to_spill():
                # the requests far ahead of the responses: spill them without waiting for the responses (beyond
                # KEEP_FIRST, only those judged just above; while responses come, those spill with them)
                self._settle(k, judged=unanswered)
            return None
        if msg.interim:
            interim = self._interim.get(msg.exchange)
            # (counted over the exchange, not the list: the list may have been spilled and started again)
            if self._interim_seen > INTERIM_KEPT and interim and interim[-1] is msg and not msg.findings:
                # (a server may send 102 Processing every few seconds for an hour: each kept was a message more)
                interim.pop()
                reader.messages[msg.index] = DROPPED
                self._interim_omitted[msg.exchange] = self._interim_omitted.get(msg.exchange, 0) + 1
        else:
            k = msg.exchange
            if k >= KEEP_FIRST + KEEP_LAST:
                self._drop(k - KEEP_LAST)
            requests = self._c2s.messages
            req = requests[k] if k < len(requests) else None
            spilled = type(req) is _Unanswered
            if spilled or req is DROPPED:  # the request was spilled or dropped before this response came
                if spilled or msg.findings or any(m.findings for m in self._interim.get(k, ())):
                    if req is DROPPED:
                        self.dropped -= 1  # reported after all, without its request (exchanges)
                    if k < self._settled:  # spilled after the later exchanges, and put in order at finish
                        self._unwritten.append(self._exchange(k))  # type: ignore[arg-type]
                        self._joins = True
                        requests[k] = DROPPED
                        self._forget_responses(k)
                        self._write_chunk()
                else:
                    self._forget_responses(k)
            if k >= SPILL_AFTER and self._to_spill():
                self._settle(k)
            if (
                isinstance(msg.framing, Tunnel)
                and self._c2s.pause is None
                and len(self._c2s.messages) <= msg.exchange + 1
            ):
                self._c2s.enter_tunnel()
        return None

    # --- internals -----------------------------------------------------------------------------------------

    def _reader(self, direction: str) -> DirectionReader | None:
        if direction == C2S:
            return self._c2s
        if direction == S2C:
            return self._s2c
        return None

    def _pump(self, force: bool = False) -> None:
        """Resume a reader paused on the other direction once the answer is known (never re-entrantly)."""
        while True:
            if self._resume_ready():
                continue
            if not force:
                return
            paused = next((r for r in (self._c2s, self._s2c) if r.pause is not None), None)
            if paused is None:
                return
            pause = paused.pause
            paused.resume(RequestInfo(None) if isinstance(pause, AwaitRequest) else False)

    def _resume_ready(self) -> bool:
        c2s, s2c = self._c2s, self._s2c
        pause = s2c.pause
        if isinstance(pause, AwaitRequest):
            if pause.exchange < len(c2s.messages):
                s2c.resume(RequestInfo(c2s.messages[pause.exchange].method))
                return True
            if not c2s.can_produce:
                s2c.resume(RequestInfo(None))
                return True
        pause = c2s.pause
        if isinstance(pause, AwaitResponse):
            resp = self._finals.get(pause.exchange)
            if resp is not None:
                status = resp.status
                c2s.resume(status == 101 or (pause.connect and 200 <= status < 300))
                return True
            if not s2c.can_produce:
                c2s.resume(False)
                return True
        return False

    def _drop(self, k: int) -> None:
        """Drop exchange ``k`` from the report unless one of its messages has a finding (see KEEP_FIRST). Either
        side may be missing (a capture of one direction)."""
        requests = self._c2s.messages
        req = requests[k] if k < len(requests) else None
        resp = self._finals.get(k)
        if req is DROPPED or (req is None and resp is None):  # dropped already
            return
        interim = self._interim.get(k, ())
        if (req is not None and req.findings) or (resp is not None and resp.findings) or any(
                m.findings for m in interim):
            return
        if req is not None:
            requests[k] = DROPPED
        self._forget_responses(k)
        self.dropped += 1

    def _to_spill(self) -> bool:
        """Whether this conversation, long (SPILL_AFTER), is to spill: the held messages are over HELD_BUDGET. It
        spills from then on, and no longer counts as held."""
        if self._spilling:
            return True
        spill = self._spill
        if spill is None or spill.held <= HELD_BUDGET:
            return False
        self._spilling = True
        spill.held -= self._held
        self._held = 0
        return True

    def _settle(self, last: int, judged: bool = True) -> None:
        """Spill the exchanges not yet spilled up to SPILL_LAG behind ``last``, the final response just done (or,
        when the requests are far ahead of the responses, the request just done: then without their responses,
        _Unanswered). Beyond KEEP_FIRST only those _drop has judged (and kept), KEEP_LAST behind ``last``; none if
        not ``judged``."""
        stop = last - SPILL_LAG
        if stop >= KEEP_FIRST:
            stop = max(KEEP_FIRST - 1, min(stop, last - KEEP_LAST)) if judged else KEEP_FIRST - 1
        requests = self._c2s.messages
        finals = self._finals
        k = self._settled
        while k <= stop:
            req = requests[k] if k < len(requests) else None
            if req is None:
                if self._c2s.can_produce:
                    break  # the request may still come (a request side far behind, see _requests_stalled): wait
            elif req is not DROPPED and req.state is _IN_PROGRESS:
                break  # still being read: wait
            resp = finals.get(k)
            if resp is not None and resp.state is _IN_PROGRESS:
                break  # the same
            exchange = self._exchange(k)
            if exchange is not None:
                self._unwritten.append(exchange)
            if req is not None:
                requests[k] = DROPPED if req is DROPPED or k < self._final_count else (
                    _UNANSWERED.get(req.method) or _Unanswered(req.method))  # type: ignore[arg-type]
            self._forget_responses(k)
            k += 1
        self._settled = k
        self._write_chunk()

    def _write_chunk(self) -> None:
        """Spill the settled exchanges once there are SPILL_CHUNK of them.

        Those no page will show go as their JSON text only (ExchangeJson): exchange k with a request, a final
        response and no finding, k >= PAGE_EXCHANGES_ALL. Such an exchange is one of the first KEEP_FIRST (beyond
        them only those with a finding are spilled, _settle), which are all kept, and the requests before it came:
        so its place in the result is k, and the page takes the first, the last and the marked ones (there are more
        than PAGE_EXCHANGES_ALL). It is none of the first; not marked (its findings are settled); not one of the last
        PAGE_EXCHANGES_LAST, since the SPILL_LAG exchanges after it are kept, or the last KEEP_LAST of the
        conversation are. It is never joined to another piece (_joined): it is whole."""
        if len(self._unwritten) >= SPILL_CHUNK:
            settled, first = self._unwritten, self._spilled_count
            marked = tuple(first + i for i, x in enumerate(settled) if x.findings)
            chunk: list[HttpExchange | ExchangeJson]
            if min(SPILL_LAG, KEEP_LAST) >= PAGE_EXCHANGES_LAST:
                chunk = [ExchangeJson(x.index, x.json_text()) if (
                    x.index >= PAGE_EXCHANGES_ALL and x.request is not None and x.response is not None
                    and not x.findings) else x for x in settled]
            else:
                chunk = list(settled)
            self._spilled.append((self._spill.write(chunk), len(chunk), marked))  # type: ignore[union-attr]
            self._spilled_count += len(chunk)
            self._unwritten = []

    def _forget_responses(self, k: int) -> None:
        """The responses of exchange ``k`` (interim and final) are no longer held."""
        responses = self._s2c.messages
        for m in self._interim.pop(k, ()):
            responses[m.index] = DROPPED
        self._interim_omitted.pop(k, None)
        resp = self._finals.pop(k, None)
        if resp is not None:
            responses[resp.index] = DROPPED

    def _check_proxy_error(self, reader: DirectionReader, msg: MessageBuilder) -> None:
        if msg.elided or msg.status not in proxy.STATUSES:  # (before copying the excerpt for recognize)
            return
        found = recognize(msg.status, msg.headers, bytes(msg.excerpt))
        if found is None:
            return
        reader.issue(
            Issue(
                codes.PROXY_ERROR,
                msg.offset,
                max(msg.end_offset - msg.offset, 1),
                found.message,
                found.detail,
                frames=(msg.first_frame, msg.last_frame),
                excerpt=(msg.offset, msg.raw_head[:64]),
            ),
            msg,
        )


def _joined(exchanges: list[HttpExchange | ExchangeJson]) -> list[HttpExchange | ExchangeJson]:
    """``exchanges`` in order, each request spilled without its responses (_Unanswered) joined to them. Some may be
    spilled as their JSON text only (ExchangeJson: a request and its final response, so never one of a pair): they
    pass through as they are (annotated so, since the compiled build checks each item against the annotation)."""
    by_index: dict[int, HttpExchange | ExchangeJson] = {}
    for e in exchanges:
        first = by_index.get(e.index)
        if isinstance(first, HttpExchange) and isinstance(e, HttpExchange):
            uncertain = Pairing.UNCERTAIN in (first.pairing, e.pairing)
            e = HttpExchange(
                index=e.index,
                request=first.request,
                interim=first.interim + e.interim,
                response=e.response,
                pairing=Pairing.UNCERTAIN if uncertain else Pairing.IN_ORDER,
                tunnel=e.tunnel,
                interim_omitted=first.interim_omitted + e.interim_omitted,
            )
        by_index[e.index] = e
    return [by_index[k] for k in sorted(by_index)]
