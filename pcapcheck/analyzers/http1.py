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

import pickle
from collections.abc import Callable
from typing import Any

from pcapcheck.findings import C2S, S2C, Finding
from pcapcheck.http import codes, proxy
from pcapcheck.http.abnf import KNOWN_METHODS
from pcapcheck.http.codes import CODES
from pcapcheck.http.framing import Tunnel
from pcapcheck.http.issues import Issue
from pcapcheck.http.model import HttpExchange, MessageState, Pairing
from pcapcheck.http.peers import peers_for
from pcapcheck.http.proxy import recognize
from pcapcheck.http.reader import (
    AwaitRequest,
    AwaitResponse,
    DirectionReader,
    MessageBuilder,
    RequestInfo,
)
from pcapcheck.spool import Spool
from pcapcheck.tcp.events import Gap, StreamData, StreamEnd

__all__ = ["Http1Analyzer", "HttpExchange"]

# RequestInfo is immutable: one per well-known method serves every response (request_for runs for each one).
_REQUEST_INFO = {m: RequestInfo(m) for m in KNOWN_METHODS}

# Exchanges kept for the report: the first KEEP_FIRST, the last KEEP_LAST and every one with a finding. The
# others are dropped once KEEP_LAST more final responses have come (a keep-alive connection between a proxy and
# its backend can carry hundreds of thousands of requests: memory must not grow with them). An exchange with a
# finding is never dropped; ``dropped`` counts those that were.
KEEP_FIRST = 2000
KEEP_LAST = 64
# Findings of one code reported one by one per conversation; further ones are counted in one more finding of the
# code at finish (the same fault on every response of a long connection: each finding costs about 5 KB).
FINDINGS_PER_CODE = 1000
# In a reader's ``messages``: a message no longer held (of an exchange dropped, or spilled).
DROPPED = MessageBuilder.__new__(MessageBuilder)
# A conversation with an ExchangeSpill writes its settled exchanges there once it has had SPILL_AFTER final
# responses, while more than LONG_IN_MEMORY such long conversations are open: those SPILL_LAG final responses
# behind the last one (the point where _drop judges them, so nothing about them can change any more) are
# pickled, SPILL_CHUNK at a time, and only read back at finish. Memory then holds the last SPILL_LAG exchanges or
# so, not the KEEP_FIRST first ones (about 6 KB each with their heads: 12 MB a connection, and a proxy keeps
# hundreds of them open). Pickling and loading an exchange again costs about 30 us, as much as a seventh of
# analyzing it: a few long conversations stay in memory, and short ones never spill.
SPILL_AFTER = 128
LONG_IN_MEMORY = 4
SPILL_LAG = KEEP_LAST
SPILL_CHUNK = 64
_IN_PROGRESS = MessageState.IN_PROGRESS


class _Unanswered:
    """In the requests' ``messages``: a request spilled before any response to it came (the requests far ahead of
    the responses: a capture of the requests only, or deep pipelining). Its method frames the response if it
    comes; that response is then spilled on its own and joined to the request at finish (``exchanges``)."""

    __slots__ = ("method",)

    def __init__(self, method: bytes | None) -> None:
        self.method = method


_UNANSWERED = {m: _Unanswered(m) for m in KNOWN_METHODS}


class ExchangeSpill:
    """Where long conversations' settled exchanges wait for their report: a Spool (one per Analysis, shared by its
    conversations; the space is not reused: it grows as the exchanges report.json will list)."""

    def __init__(self) -> None:
        self._spool = Spool("pcapcheck-http-")
        self.long_open = 0  # conversations that have had SPILL_AFTER final responses, not finished yet

    def write(self, exchanges: list[HttpExchange]) -> tuple[int, int]:
        """Store ``exchanges``; returns where, for ``read``."""
        return self._spool.write(pickle.dumps(exchanges, pickle.HIGHEST_PROTOCOL))

    def read(self, where: tuple[int, int]) -> list[HttpExchange]:
        return pickle.loads(self._spool.read(where))

    def close(self) -> None:
        self._spool.close()


class Http1Analyzer:
    def __init__(self, conversation: int, spill: ExchangeSpill | None = None) -> None:
        self.conversation = conversation
        self._spill = spill
        self._settled = 0  # exchanges below this one were spilled or dropped: no reader holds their messages
        self._spilled: list[tuple[int, int]] = []  # where in _spill, in exchange order
        self._unwritten: list[HttpExchange] = []  # settled, to be spilled with the next chunk
        self._long = False  # counted in _spill.long_open
        self._joins = False  # a response was spilled apart from its request (_Unanswered): exchanges joins them
        self._c2s = DirectionReader(C2S, self)
        self._s2c = DirectionReader(S2C, self)
        self._findings: dict[int, Finding] = {}
        self._reserved = 0
        self._finals: dict[int, MessageBuilder] = {}  # exchange index -> final response
        self._interim: dict[int, list[MessageBuilder]] = {}
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
            if self._long:
                self._long = False
                self._spill.long_open -= 1  # type: ignore[union-attr]
        return list(self._result)

    @property
    def is_http(self) -> bool:
        return self._c2s.is_http or self._s2c.is_http

    @property
    def exchanges(self) -> list[HttpExchange]:
        out: list[HttpExchange] = []
        for where in self._spilled:
            out += self._spill.read(where)  # type: ignore[union-attr]
        out += self._unwritten
        requests = self._c2s.messages
        count = max(len(requests), self._final_count, max(self._interim, default=-1) + 1)
        for k in range(self._settled, count):
            exchange = self._exchange(k)
            if exchange is not None:
                out.append(exchange)
        late = [k for k in self._interim if k < self._settled]  # behind the spilled ones, the final never came
        if late or self._joins:
            out += [self._exchange(k) for k in late]  # type: ignore[misc]
            out = _joined(out)
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
                "assumed": list(r.assumed),
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
        else:
            self._finals[msg.exchange] = msg
            self._final_count += 1

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
            if k >= SPILL_AFTER and k - SPILL_LAG >= self._final_count and self._long_and_crowded():
                # the requests far ahead of the responses: spill them without waiting for the responses (beyond
                # KEEP_FIRST, only those judged just above)
                stop = k - SPILL_LAG
                if stop >= KEEP_FIRST:  # (while responses come, those beyond spill with them)
                    stop = max(KEEP_FIRST - 1, min(stop, k - KEEP_LAST)) if unanswered else KEEP_FIRST - 1
                self._settle(stop)
            return None
        if not msg.interim:
            self._check_proxy_error(reader, msg)
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
            if k >= SPILL_AFTER and self._long_and_crowded():
                stop = k - SPILL_LAG
                if stop >= KEEP_FIRST:
                    stop = max(KEEP_FIRST - 1, min(stop, k - KEEP_LAST))
                self._settle(stop)
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

    def _long_and_crowded(self) -> bool:
        """Whether this conversation, long (SPILL_AFTER), is to spill: more than LONG_IN_MEMORY such are open."""
        spill = self._spill
        if spill is None:
            return False
        if not self._long:
            self._long = True
            spill.long_open += 1
        return spill.long_open > LONG_IN_MEMORY

    def _settle(self, stop: int) -> None:
        """Spill the exchanges up to ``stop`` not yet spilled: those SPILL_LAG final responses behind the last
        one, beyond KEEP_FIRST only those _drop has judged (and kept); or, when the requests are far ahead of the
        responses, SPILL_LAG requests behind the last one, without their responses (_Unanswered)."""
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
        if len(self._unwritten) >= SPILL_CHUNK:
            self._spilled.append(self._spill.write(self._unwritten))  # type: ignore[union-attr]
            self._unwritten = []

    def _forget_responses(self, k: int) -> None:
        """The responses of exchange ``k`` (interim and final) are no longer held."""
        responses = self._s2c.messages
        for m in self._interim.pop(k, ()):
            responses[m.index] = DROPPED
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


def _joined(exchanges: list[HttpExchange]) -> list[HttpExchange]:
    """``exchanges`` in order, each request spilled without its responses (_Unanswered) joined to them."""
    by_index: dict[int, HttpExchange] = {}
    for e in exchanges:
        first = by_index.get(e.index)
        if first is not None:
            uncertain = Pairing.UNCERTAIN in (first.pairing, e.pairing)
            e = HttpExchange(
                index=e.index,
                request=first.request,
                interim=first.interim + e.interim,
                response=e.response,
                pairing=Pairing.UNCERTAIN if uncertain else Pairing.IN_ORDER,
                tunnel=e.tunnel,
            )
        by_index[e.index] = e
    return [by_index[k] for k in sorted(by_index)]
