"""Who sent a RST and what it did: the decision rules behind ``tcp.rst`` (DESIGN.md 6, REFERENCE.md 4.5-4.7).

:class:`RstRecord` is a snapshot of the conversation at the moment of one RST plus what the
analyzer observed afterwards (challenge ACK, further packets from either side). :func:`effect`
and :func:`origin` turn it into the finding's verdicts. Pure functions over plain data: the
per-packet bookkeeping that fills the record lives in :mod:`pcapcheck.analyzers.rst`.

The rules are heuristics about Linux peers (stated as such in every finding):

* passive reset (``tcp_v4_send_reset``): the kernel answers one segment it cannot deliver. Flags
  R alone with seq = that segment's ACK (or R|A, seq 0, ack = its end, when it had no ACK),
  window 0, no options, IPv4 ID 0 from the unconnected control socket.
* active reset (``tcp_send_active_reset``): the connection's own socket aborts. R|A, seq = its
  snd_nxt, ack = its rcv_nxt, its usual options, its IP ID series.
* anything that does not fit the sender's other packets (TTL, IP ID, options), or a "sender" that
  keeps talking after its reset, points at a third party: a middlebox or an attacker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pcapcheck import seq as sq
from pcapcheck.tcp.events import ACK, FIN, SYN

ORIGINS: Final = ("refused", "no-socket", "closed-socket", "rejected", "abort", "injected", "unknown")
EFFECTS: Final = ("accepted", "challenged", "ignored-out-of-window", "ignored", "unknown")

# TCP option kinds that make a receiver drop a segment unless it holds the key.
MD5_SIG: Final = 19
TCP_AO: Final = 29
TIMESTAMP: Final = 8

# Seconds of silence before the segment a passive reset answers that suggest the state was lost
# to an idle timeout (server, firewall or NAT table) rather than a crash or a NAT bypass.
IDLE_STATE_LOSS_NS: Final = 60 * 10**9
PAUSE_NS: Final = 10**9  # IP IDs further apart in time than this are not compared


class Seg:
    """A small copy of one segment kept in the bounded history (never the payload)."""

    __slots__ = ("frame", "ts", "seq", "ack", "flags", "seglen", "ip_id", "judgement", "index", "mask")

    def __init__(self, frame: int, ts: int, seq: int, ack: int, flags: int, seglen: int, ip_id: int | None,
                 judgement: object | None, index: int, mask: int = 0) -> None:
        self.frame = frame
        self.ts = ts
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.seglen = seglen
        self.ip_id = ip_id
        self.judgement = judgement  # a non-ACCEPT conntrack Judgement, else None
        self.index = index  # how many packets its sender had sent before it
        self.mask = mask  # Wireshark analysis flags

    @property
    def end(self) -> int:
        return (self.seq + self.seglen + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)) & sq.MASK


@dataclass
class SenderStats:
    """What the RST's sender looked like in its other (non-RST) packets, up to the RST."""

    packets: int = 0
    ttl_lo: int | None = None
    ttl_hi: int | None = None
    ipid_last: int | None = None
    ipid_mode: str = "none"  # none | ipv6 | single | zero | constant | per-connection | global | random
    ipid_const: int | None = None
    ipid_next: int | None = None  # the sender's first IP ID after the RST
    ipid_maxstep: int = 0  # largest forward step between the sender's consecutive packets
    ipid_next_ts: int | None = None
    with_options: int = 0  # non-SYN packets that carried TCP options
    without_options: int = 0
    timestamps: bool | None = None  # TS negotiated in the handshake (None: no handshake seen)


@dataclass
class RstRecord:
    frame: int
    ts: int
    d: int  # 0 = sent by the client, 1 = by the server
    sender: str  # "client" | "server"
    sender_addr: str
    receiver: str
    seq: int
    ack: int
    flags: int
    window: int
    seglen: int
    payload: bytes
    ttl: int
    ip_id: int | None
    option_kinds: tuple[int, ...]
    ts_val: int | None
    phase: str
    established: bool
    midstream: bool
    stats: SenderStats
    # sequence state (absolute numbers; None = unknown)
    sender_nxt: int | None  # highest seq+len the sender had sent (snd_nxt)
    sender_rcv_nxt: int | None  # what the sender had received contiguously from the receiver
    sender_last_ack: int | None  # the last ACK value the sender had sent before
    sender_ts_last: int | None  # the sender's last TSval before (None without timestamps)
    sender_fin: Seg | None
    sender_syn: Seg | None  # SYN or SYN-ACK the sender sent
    sender_prior_rst: int | None  # frame of the sender's previous RST
    sender_same_rst: int | None  # frame of an identical earlier RST from the sender
    sender_same_rst_trigger: int | None  # ... and the frame that one answered
    receiver_syn: Seg | None  # SYN (no ACK) the receiver sent
    receiver_fin: Seg | None
    receiver_got_synack: bool  # the receiver's SYN had been answered by a SYN-ACK before the RST
    receiver_pkts: int  # packets the receiver had sent before the RST
    rcv_nxt: int | None  # the receiver's rcv_nxt for the sender's stream (exactness test)
    rcv_wup: int | None  # the receiver's last ACK to the sender (left edge of its window)
    rcv_wnd: int | None  # the receiver's last advertised window in bytes (None: scale unknown)
    rcv_wnd_raw: int | None
    trigger: Seg | None
    trigger_kind: str  # syn | ack-match | ack-match-invalid | seq0-reply | last-segment | none
    idle_before_trigger_ns: int | None
    peer_ipid_mode: str  # IP ID series of the receiver (the side the trigger came from)
    rtt_ns: int | None
    # observed after the RST
    talk: list[int] = field(default_factory=list)  # sender's later non-RST frames (first few)
    talk_kinds: list[str] = field(default_factory=list)
    sender_data: list[int] = field(default_factory=list)  # sender's later frames with payload
    sender_data_n: int = 0
    sender_post_end: int | None = None
    later_rsts: list[tuple[int, int]] = field(default_factory=list)  # (frame, seq) of the sender's later RSTs
    challenge_frame: int | None = None
    challenge_ack: int | None = None
    answer_rst: int | None = None  # sender's RST with seq = the challenge ACK (a genuine peer)
    survived_frame: int | None = None  # receiver ACKed what the sender sent after the RST
    receiver_later: list[int] = field(default_factory=list)
    peer_data: list[tuple[int, int]] = field(default_factory=list)  # (frame, ts) of the receiver's later data
    peer_data_n: int = 0
    watch_left: int = 256
    sender_last_data: int | None = None  # the sender's last data frame before the RST
    sender_last_ts: int | None = None  # time of the sender's last non-RST packet before the RST
    sender_post_syn: bool = False  # the sender sent a SYN after the RST: a new attempt, not the same connection
    sender_retrans_tail: int = 0  # the sender's last packets before the RST that were retransmissions
    receiver_dead: tuple[int, str] | None = None  # (frame, origin) of the receiver's own earlier reset
    # decided at finish
    prior_reset_frame: int | None = None  # an earlier RST (either side) already ended the connection
    verdict: Verdict | None = None


@dataclass
class Verdict:
    origin: str
    effect: str
    effect_reason: str
    confidence: str
    evidence: list[str]
    shape: str  # how the RST looks, for the message
    explanation: str  # what that means, for the message
    abort_kind: str | None = None


# -- small helpers ---------------------------------------------------------------------------------

def _hex_id(v: int | None) -> str:
    return "none" if v is None else f"0x{v:04x}"


def options_text(kinds: tuple[int, ...]) -> str:
    names = {2: "MSS", 3: "WS", 4: "SACK_PERM", 5: "SACK", 8: "TS", 19: "MD5", 29: "TCP-AO", 34: "TFO"}
    return ",".join(names.get(k, str(k)) for k in kinds) or "none"


def _ttl_relation(rec: RstRecord) -> tuple[str, int]:
    """("same" | "plus1" | "foreign" | "unknown", distance) of the RST's TTL to the sender's usual."""
    st = rec.stats
    if st.ttl_lo is None or st.ttl_hi is None:
        return "unknown", 0
    if st.ttl_lo <= rec.ttl <= st.ttl_hi:
        return "same", 0
    dist = rec.ttl - st.ttl_hi if rec.ttl > st.ttl_hi else rec.ttl - st.ttl_lo
    return ("plus1" if abs(dist) == 1 else "foreign"), dist


def _ipid_relation(rec: RstRecord) -> str:
    """How the RST's IPv4 ID relates to the sender's series: zero | continues | foreign | copied | n/a."""
    st = rec.stats
    if rec.ip_id is None:
        return "n/a"
    trig = rec.trigger
    if (rec.ip_id != 0 and trig is not None and trig.ip_id == rec.ip_id
            and rec.peer_ipid_mode not in ("constant", "zero", "single")
            and not (st.ipid_mode == "constant" and st.ipid_const == rec.ip_id)):
        return "copied"
    if st.ipid_mode in ("none", "ipv6"):
        return "zero" if rec.ip_id == 0 else "n/a"
    if st.ipid_mode == "zero":
        return "continues" if rec.ip_id == 0 else "foreign-nonzero"
    if rec.ip_id == 0:
        return "zero"
    if st.ipid_mode == "constant":
        return "continues" if rec.ip_id == st.ipid_const else "foreign"
    if st.ipid_mode not in ("per-connection", "global"):
        return "random" if st.ipid_mode == "random" else "n/a"
    limit = 64 if st.ipid_mode == "per-connection" else max(2048, 2 * st.ipid_maxstep)
    # Only neighbours within a second count: over a pause a host-wide counter moves on with other traffic.
    ok = []
    if st.ipid_last is not None and rec.sender_last_ts is not None and rec.ts - rec.sender_last_ts <= PAUSE_NS:
        ok.append(1 <= (rec.ip_id - st.ipid_last) & 0xFFFF <= limit)
    if st.ipid_next is not None and st.ipid_next_ts is not None and st.ipid_next_ts - rec.ts <= PAUSE_NS:
        ok.append(1 <= (st.ipid_next - rec.ip_id) & 0xFFFF <= limit)
    if not ok:
        return "n/a"
    return "continues" if all(ok) else "foreign"


def _usual_options(rec: RstRecord) -> str:
    """"options" when the sender's other segments carry options, "none" when they never do, "" unknown."""
    st = rec.stats
    if st.with_options and not st.without_options:
        return "options"
    if st.without_options and not st.with_options:
        return "none"
    if st.with_options:
        return "options"
    if st.timestamps:
        return "options"
    return ""


# -- effect --------------------------------------------------------------------------------------

def effect(rec: RstRecord) -> tuple[str, str]:
    """What the receiver did with the RST (REFERENCE.md 4.5): (effect, reason)."""
    eff, reason = _sequence_effect(rec)
    if eff in ("accepted", "unknown") and rec.survived_frame is not None and not rec.sender_post_syn \
            and rec.prior_reset_frame is None and rec.receiver_dead is None:
        return "ignored", (f"the receiver later acknowledged what the sender sent after the RST (frame "
                           f"{rec.survived_frame}): the connection outlived the RST")
    return eff, reason


def _sequence_effect(rec: RstRecord) -> tuple[str, str]:
    if rec.prior_reset_frame is not None:
        return "ignored", f"the connection had already been reset by frame {rec.prior_reset_frame}"
    if rec.receiver_dead is not None:
        return "ignored", (f"the receiver had already reset the connection itself (frame {rec.receiver_dead[0]}), "
                           "so no connection was left to reset")
    # SYN-SENT receiver (RFC 9293 3.10.7.3): only an ACK of its SYN makes a RST acceptable; seq is not checked.
    rsyn = rec.receiver_syn
    if rsyn is not None and not rec.receiver_got_synack:
        if rec.flags & ACK and rec.ack == rsyn.end:
            return "accepted", "it acknowledges the receiver's SYN (RFC 9293 3.10.7.3: SYN-SENT)"
        why = "has no ACK flag" if not rec.flags & ACK else f"acknowledges {rec.ack}, not the SYN's {rsyn.end}"
        return "ignored", (f"the receiver was in SYN-SENT, where a RST counts only if it acknowledges the SYN; "
                           f"this one {why} (RFC 9293 3.10.7.3)")
    exp = rec.rcv_nxt
    if rec.receiver_pkts == 0:
        return "unknown", "the receiver had sent nothing, so its state (and whether it saw anything) is unknown"
    if exp is None:
        return "unknown", "the receiver's expected sequence number is unknown (too little of the conversation seen)"
    if rec.seq == exp:
        ch = rec.challenge_ack
        if (ch is not None and ch != rec.seq and rec.rcv_wup is not None and ch == rec.rcv_wup
                and sq.lt(ch, rec.seq)):
            return "challenged", (
                f"seq {rec.seq} counts bytes the receiver never got: its ACK right after the RST (frame "
                f"{rec.challenge_frame}) still says rcv_nxt = {ch}, {sq.diff(rec.seq, ch)} bytes short (lost after "
                "the capture point); RFC 5961 3.2 answers such an inexact RST with that challenge ACK"
                + (f", answered by a RST with that ACK as seq (frame {rec.answer_rst}): the real peer did reset"
                   if rec.answer_rst is not None else ""))
        return "accepted", f"seq {rec.seq} equals the receiver's rcv_nxt (RFC 5961 3.2: exact match)"
    if rec.rcv_wup is not None and rec.seq == rec.rcv_wup:
        return "accepted", (f"seq {rec.seq} equals the receiver's last ACK, i.e. its rcv_nxt as it announced it "
                            "(RFC 5961 3.2: exact match; bytes sent after that ACK had not reached it yet)")
    fin = rec.sender_fin
    if fin is not None and rec.seq == (exp - 1) & sq.MASK and exp == fin.end:
        return "accepted", ("seq = rcv_nxt - 1 after the sender's FIN: Linux accepts it in CLOSE_WAIT/LAST_ACK/"
                            "CLOSING (tcp_reset_check)")
    lo = rec.rcv_wup if rec.rcv_wup is not None else exp
    if sq.gt(lo, exp):
        lo = exp
    if rec.rcv_wnd is not None:
        hi = (exp + rec.rcv_wnd) & sq.MASK
        if sq.ge(rec.seq, lo) and sq.le(rec.seq, hi):
            return "challenged", _challenge_reason(rec, exp)
        return "ignored-out-of-window", (
            f"seq {rec.seq} is outside the receiver's window [{lo}, {hi}] (rcv_nxt {exp}, window {rec.rcv_wnd}): "
            "dropped silently (RFC 5961 3.2, tcp_validate_incoming)")
    raw = rec.rcv_wnd_raw or 0
    if sq.ge(rec.seq, lo) and sq.le(rec.seq, (exp + raw) & sq.MASK):
        return "challenged", _challenge_reason(rec, exp)
    if sq.ge(rec.seq, lo) and sq.le(rec.seq, (exp + (raw << 14)) & sq.MASK):
        return "unknown", (f"seq {rec.seq} is {sq.diff(rec.seq, exp)} bytes past rcv_nxt {exp}; whether that is "
                           "inside the window depends on the window scale, which was not seen")
    return "ignored-out-of-window", (f"seq {rec.seq} is outside any window the receiver could have (rcv_nxt "
                                     f"{exp}): dropped silently")


def _challenge_reason(rec: RstRecord, exp: int) -> str:
    text = (f"seq {rec.seq} is inside the receiver's window but not its rcv_nxt {exp} "
            f"({sq.diff(rec.seq, exp):+d} bytes): RFC 5961 3.2 answers with a challenge ACK and ignores the RST")
    if rec.challenge_frame is not None:
        text += f"; challenge ACK at frame {rec.challenge_frame}"
        if rec.answer_rst is not None:
            text += f", answered by a RST with that ACK as seq (frame {rec.answer_rst}): the real peer did reset"
    else:
        text += "; no challenge ACK seen in the capture"
    return text


# -- origin --------------------------------------------------------------------------------------

def origin(rec: RstRecord) -> Verdict:  # noqa: C901 - one decision table, read top to bottom
    ev: list[str] = []
    has_ack = bool(rec.flags & ACK)
    ev.append("ACK flag set" if has_ack else "no ACK flag")
    if rec.flags & FIN:
        ev.append("FIN flag set as well")
    trig = rec.trigger
    ttl_rel, ttl_dist = _ttl_relation(rec)
    ipid_rel = _ipid_relation(rec)
    usual = _usual_options(rec)
    kinds = rec.option_kinds
    st = rec.stats

    # --- shape -----------------------------------------------------------------------------------
    answers_syn = rec.trigger_kind == "syn"
    passive = False
    if trig is not None and not has_ack and rec.trigger_kind.startswith("ack-match"):
        passive = True
        ev.append(f"seq = the ACK of frame {trig.frame}")
    elif trig is not None and has_ack and rec.trigger_kind == "seq0-reply":
        passive = True
        ev.append(f"seq 0 and ack = the end of frame {trig.frame} (which had no ACK)")
    active = has_ack and rec.sender_nxt is not None and rec.seq == rec.sender_nxt
    if active:
        ev.append("seq = the sender's next sequence number (snd_nxt)")
    elif rec.sender_nxt is not None and not passive and not answers_syn:
        ev.append(f"seq is {sq.diff(rec.seq, rec.sender_nxt):+d} bytes from the sender's next sequence number")
    if has_ack and rec.sender_rcv_nxt is not None and not answers_syn and not passive:
        if rec.ack == rec.sender_rcv_nxt:
            ev.append("ack = all the sender had received")
        elif sq.gt(rec.ack, rec.sender_rcv_nxt):
            ev.append(f"ack is {sq.diff(rec.ack, rec.sender_rcv_nxt)} bytes beyond anything the receiver sent "
                      "(acknowledges data never sent)")
        else:
            ev.append(f"ack is {sq.diff(rec.sender_rcv_nxt, rec.ack)} bytes short of what the receiver had sent")
    if not has_ack and rec.ack:
        ev.append(f"ACK field {rec.ack} set although the ACK flag is clear (not a Linux kernel reset)")

    # --- markers ---------------------------------------------------------------------------------
    passive_marks = 0
    active_marks = 0
    foreign: list[tuple[str, str]] = []  # (kind, text): kinds ttl | ipid | ipid-copied | option | tsval
    if rec.window == 0:
        ev.append("window 0")
        passive_marks += 1
    else:
        ev.append(f"window {rec.window}")
        active_marks += 1
    if not kinds:
        if usual == "options":
            ev.append("no TCP options, although the sender's other segments carry them")
            passive_marks += 1
        else:
            ev.append("no TCP options")
    else:
        ev.append(f"TCP options: {options_text(kinds)}")
        if usual == "options":
            active_marks += 1
        if MD5_SIG in kinds or TCP_AO in kinds:
            name = "MD5 signature (RFC 2385)" if MD5_SIG in kinds else "TCP-AO (RFC 5925)"
            foreign.append(("option", f"it carries a {name} option the connection never used: a receiver "
                                      "without the key drops it, a classic IDS-evasion trick"))
        if TIMESTAMP in kinds and rec.ts_val == 0:
            ev.append("TSval 0 (some Linux versions sent resets with TSval 0; not a clock value)")
        elif TIMESTAMP in kinds and rec.ts_val is not None and rec.sender_ts_last is not None:
            back = sq.diff(rec.sender_ts_last, rec.ts_val)
            if back > 0x100000:
                foreign.append(("tsval", f"its TSval {rec.ts_val} does not follow the sender's timestamp clock "
                                         f"(last {rec.sender_ts_last})"))
    if ipid_rel == "continues" and st.ipid_mode == "zero":
        ev.append("IP ID 0, as in all the sender's packets (no series to compare)")
    elif ipid_rel == "continues" and st.ipid_mode == "constant":
        ev.append(f"IP ID {_hex_id(rec.ip_id)}, as in all the sender's packets (no series to compare)")
    elif ipid_rel == "zero":
        if st.ipid_mode in ("per-connection", "global", "random", "constant"):
            near = f"{_hex_id(st.ipid_last)} last" if st.ipid_last is not None else f"{_hex_id(st.ipid_next)} next"
            ev.append(f"IP ID 0 while the sender's other packets count ({near}): the kernel's unconnected control "
                      "socket")
        else:
            ev.append("IP ID 0")
        passive_marks += 1
    elif ipid_rel == "continues":
        near = f"last {_hex_id(st.ipid_last)}" if st.ipid_last is not None else f"next {_hex_id(st.ipid_next)}"
        ev.append(f"IP ID {_hex_id(rec.ip_id)} continues the sender's series ({near})")
        active_marks += 1
    elif ipid_rel == "copied":
        foreign.append(("ipid-copied", f"its IP ID {_hex_id(rec.ip_id)} copies that of frame "
                                       f"{trig.frame if trig else '?'}, the segment it answers: a packet forged "
                                       "from the captured one"))
    elif ipid_rel == "foreign":
        foreign.append(("ipid", f"its IP ID {_hex_id(rec.ip_id)} does not continue the sender's series "
                                f"(last {_hex_id(st.ipid_last)}, {st.ipid_mode})"))
    elif ipid_rel == "foreign-nonzero":
        ev.append(f"IP ID {_hex_id(rec.ip_id)} while the sender's other packets have ID 0")
    elif rec.ip_id is not None:
        ev.append(f"IP ID {_hex_id(rec.ip_id)} (sender's series: {st.ipid_mode})")
    if ttl_rel == "same":
        ev.append(f"TTL {rec.ttl} as in the sender's other packets")
    elif ttl_rel == "plus1":
        ev.append(f"TTL {rec.ttl}, {ttl_dist:+d} from the sender's usual {st.ttl_lo}"
                  f"{'' if st.ttl_lo == st.ttl_hi else '-' + str(st.ttl_hi)}: one routing hop fewer or more, e.g. "
                  "the node's network namespace answering for a pod's address")
    elif ttl_rel == "foreign":
        foreign.append(("ttl", f"its TTL {rec.ttl} differs from the sender's usual {st.ttl_lo}"
                               f"{'' if st.ttl_lo == st.ttl_hi else '-' + str(st.ttl_hi)} by {ttl_dist:+d}: it came "
                               "from a different place on the path"))
    if rec.talk:
        kinds_txt = ", ".join(f"{k} (frame {f})" for k, f in zip(rec.talk_kinds[:3], rec.talk[:3]))
        ev.append(f"the sender kept sending afterwards: {kinds_txt}")
    if rec.sender_same_rst is not None and rec.sender_same_rst_trigger == (trig.frame if trig else None):
        ev.append(f"identical to the sender's RST at frame {rec.sender_same_rst} (sent twice, or duplicated by "
                  "the capture)")
    if rec.idle_before_trigger_ns is not None and rec.idle_before_trigger_ns >= IDLE_STATE_LOSS_NS:
        ev.append(f"the conversation was idle for {rec.idle_before_trigger_ns / 1e9:.0f} s before frame "
                  f"{trig.frame if trig else '?'}")
    if passive and trig is not None and rec.ts >= trig.ts:
        ev.append(f"sent {(rec.ts - trig.ts) / 1e6:.3f} ms after frame {trig.frame}")
    if trig is not None and trig.judgement is not None and not has_ack:
        j = trig.judgement
        ev.append(f"frame {trig.frame} was out of conntrack's window (rule {getattr(j, 'rule', None) or getattr(j, 'rule_old', '?')}, "
                  f"{getattr(j, 'new', '?')} on >= 6.1, {getattr(j, 'old', '?')} on < 6.1)")
    if rec.payload:
        ev.append(f"carries {rec.seglen} bytes of data (a reason text, RFC 1122 4.2.2.12)")
    elif rec.seglen:
        ev.append(f"carries {rec.seglen} bytes of data (not captured)")

    # --- decision ----------------------------------------------------------------------------------
    talked = bool(rec.talk)
    shape = _shape(rec, passive, active, trig)

    # 1. Connection refused: a reset answering a SYN the sender never answered with a SYN-ACK.
    if answers_syn and trig is not None:
        syn_end = trig.end
        good_ack = has_ack and rec.ack == syn_end
        reasons = [text for _, text in foreign]
        if talked:
            k = rec.talk_kinds.index("SYN-ACK") if "SYN-ACK" in rec.talk_kinds else 0
            reasons.append(f"the {rec.sender} answered the same SYN normally afterwards "
                           f"({rec.talk_kinds[k]} at frame {rec.talk[k]})")
        if kinds and MD5_SIG not in kinds and TCP_AO not in kinds:
            reasons.append("a kernel refusal carries no TCP options")
        if reasons:
            if has_ack and not good_ack:
                reasons.append(f"ack {rec.ack} is not the SYN's sequence number + 1 ({syn_end})")
            return Verdict("injected", "", "", _confidence(len(reasons)), ev + reasons,
                           f"RST{'|ACK' if has_ack else ' without ACK'} answering the SYN (frame {trig.frame})",
                           f"a forged reset, not sent by the {rec.sender}'s TCP stack: " + "; ".join(reasons))
        if good_ack:
            marks = (rec.seq == 0) + (rec.window == 0) + (not kinds) + (rec.ip_id in (0, None))
            ev.insert(1, f"ack = SYN seq + 1 ({syn_end})")
            return Verdict("refused", "", "", "high" if marks >= 3 else "medium", ev,
                           f"RST|ACK answering the SYN (frame {trig.frame})",
                           f"connection refused: nothing listens on {rec.sender_addr} (or a firewall rejects "
                           "the connection with a reset)")
        return Verdict("refused", "", "", "low",
                       ev + ["not the form a TCP stack refuses with (RST|ACK, seq 0, ack = SYN seq + 1)"],
                       f"RST{'|ACK' if has_ack else ' without ACK'} answering the SYN (frame {trig.frame})",
                       "the SYN was answered with a reset, but not in the form a TCP stack sends (crafted, or a "
                       "middlebox)")

    # 2. Forged: unlike the sender's own packets, or the "sender" kept talking. A passive (kernel) reset is
    # judged on its own terms below: another host's stack answering for the address (NAT bypass, a node
    # answering for a service IP) legitimately has another TTL and IP ID, and the real socket goes on.
    reasons = [text for kind, text in foreign if not passive or kind not in ("ttl", "ipid")]
    if talked and not passive:
        reasons.append(f"the {rec.sender} kept talking after it ({rec.talk_kinds[0]} at frame {rec.talk[0]}): the "
                       "real host never sent this reset")
    if reasons:
        inexact = ""
        if not active and not passive and rec.sender_nxt is not None:
            inexact = "; its seq matches nothing the sender sent (a blind reset only has to land in the window)"
        return Verdict("injected", "", "", _confidence(len(reasons)), ev, shape,
                       f"a forged reset, not sent by the {rec.sender}'s TCP stack: " + "; ".join(reasons) + inexact)

    # 3. Passive (kernel) reset answering one segment.
    if passive and trig is not None:
        contra = active_marks + (1 if kinds and usual != "options" else 0)
        conf = "high" if passive_marks >= 2 and contra == 0 else "low" if contra >= 2 else "medium"
        if rec.window:
            ev.append("window non-zero: not Linux's passive-reset format (another stack, or a middlebox)")
        elsewhere = ""
        if ttl_rel == "foreign":
            elsewhere = (f"; its TTL ({rec.ttl}, usual {st.ttl_lo}) says it came from another host or namespace "
                         "than the connection's packets: a node answering for a NATed address, or a middlebox")
        if rec.sender_prior_rst is not None and rec.sender_prior_rst != rec.sender_same_rst:
            return Verdict("no-socket", "", "", conf, ev, shape,
                           f"a kernel reset: the {rec.sender} had already reset the connection (frame "
                           f"{rec.sender_prior_rst}), so frame {trig.frame} found no socket" + elsewhere)
        why, rule = _handshake_rejection(rec)
        if why or (talked and not rec.established):
            after = ""
            if rec.sender_post_syn and talked:
                k = rec.talk_kinds.index("SYN") if "SYN" in rec.talk_kinds else 0
                after = f"; the {rec.sender} then retried its SYN (frame {rec.talk[k]})"
            elif talked:
                after = "; the connection went on"
            return Verdict("rejected", "", "", conf, ev, shape,
                           f"the {rec.sender}'s own socket rejected frame {trig.frame} during the handshake"
                           + (f" ({why})" if why else "") + after + (f" ({rule})" if rule else ""))
        fin = rec.sender_fin
        if fin is not None and fin.frame < rec.frame:
            what = f"{trig.seglen} bytes of data" if trig.seglen else ("its FIN" if trig.flags & FIN else "an ACK")
            race = ""
            if trig.seglen:
                example = ""
                if rec.sender_last_data is not None and rec.sender == "server":
                    example = ", e.g. HTTP keep-alive reuse of a connection the server had just closed"
                race = (f" (a close race: the {rec.receiver} was still sending when the {rec.sender} closed"
                        f"{example}; Linux counts it as TCPAbortOnData)")
            if trig.frame > fin.frame:
                text = f"frame {trig.frame} brought {what} to a closed socket"
            else:
                text = f"it answers frame {trig.frame} ({what}), which the closing socket no longer accepted"
            return Verdict("closed-socket", "", "", conf, ev, shape,
                           f"a kernel reset from a socket that had already closed its side (its FIN: frame "
                           f"{fin.frame}): {text}" + race + elsewhere)
        text = (f"a kernel reset from a socket with no matching connection (LISTEN or closed), i.e. frame "
                f"{trig.frame} never reached the connection's socket")
        if talked:
            text += (f"; the connection's own socket kept sending (frame {rec.talk[0]}), so the reset came from "
                     "another socket on that address (NAT/redirect bypass) or was forged")
        if rec.idle_before_trigger_ns is not None and rec.idle_before_trigger_ns >= IDLE_STATE_LOSS_NS:
            text += (f"; after {rec.idle_before_trigger_ns / 1e9:.0f} s of silence the {rec.sender} (or a "
                     "firewall/NAT in between) had most likely dropped the idle connection")
        return Verdict("no-socket", "", "", conf, ev, shape, text + elsewhere)

    # 4. Active reset from the connection's own socket.
    fin = rec.sender_fin
    if active or (has_ack and fin is not None and rec.seq == fin.end):
        conf = "high" if active_marks >= 2 else "medium"
        shape = _shape(rec, passive, True, trig)
        if fin is not None:
            return Verdict("abort", "", "", conf, ev, shape,
                           f"an active reset from the connection's own socket after its FIN (frame {fin.frame}): "
                           "closed with unread data, or a FIN-then-RST abort", "after-fin")
        unread = 0
        if rec.sender_rcv_nxt is not None and rec.sender_last_ack is not None:
            unread = sq.diff(rec.sender_rcv_nxt, rec.sender_last_ack)
            if rec.receiver_fin is not None and rec.receiver_fin.end == rec.sender_rcv_nxt:
                unread -= 1  # the FIN is not data
        if unread > 0:
            n = unread
            ev.append(f"{n} bytes from the {rec.receiver} had arrived that the {rec.sender} never acknowledged")
            return Verdict("abort", "", "", conf, ev, shape,
                           f"an active reset from the connection's own socket with {n} unread bytes from the "
                           f"{rec.receiver} (close() with unread data: TCPAbortOnClose, RFC 2525 2.17)",
                           "unread-data")
        if rec.sender_retrans_tail >= 2:
            ev.append(f"its last {rec.sender_retrans_tail} segments before the RST were retransmissions")
            return Verdict("abort", "", "", conf, ev, shape,
                           "an active reset from the connection's own socket after retransmitting without an "
                           "answer: a retransmission or user timeout gave up (TCPAbortOnTimeout)", "timeout")
        during = {"response": " during the response", "request": " during the request",
                  "idle": " on an idle connection"}.get(rec.phase, "")
        if rec.receiver_fin is not None:
            during = (f" after the {rec.receiver}'s FIN (frame {rec.receiver_fin.frame}), instead of closing its own "
                      "side with FIN")
        return Verdict("abort", "", "", conf, ev, shape,
                       f"an active reset from the connection's own socket{during}: the application aborted it "
                       "(SO_LINGER 0, a proxy resetting the connection, or a timeout)", "linger")

    # 5. No ACK flag but the sender's own next sequence number: an abort by a non-Linux stack or a middlebox.
    if not has_ack and trig is None and rec.sender_nxt is not None and rec.seq == rec.sender_nxt:
        ev.append("seq = the sender's next sequence number, but no ACK flag (Linux's active reset sets ACK)")
        return Verdict("abort", "", "", "low", ev, "without ACK, seq = its next sequence number",
                       "most likely an abort by the connection's own socket from a non-Linux stack, or a middlebox "
                       "resetting on its behalf", "no-ack")

    # 6. A reason text that names its author.
    if rec.payload.startswith(b"BIG-IP:"):
        return Verdict("abort", "", "", "medium", ev, shape,
                       "generated by an F5 BIG-IP load balancer (its reason text says so): the load balancer, a full "
                       "proxy, reset this side of the connection", "proxy")

    # 7. Nothing fits.
    if rec.sender_nxt is None and trig is None:
        return Verdict("unknown", "", "", "low", ev, shape,
                       "origin unclear: nothing else from this conversation was captured to compare it with")
    if not has_ack and trig is None:
        return Verdict("unknown", "", "", "low", ev, shape,
                       "origin unclear: its seq matches no captured segment's ACK, so it answers nothing that "
                       "was captured")
    return Verdict("unknown", "", "", "low", ev, shape,
                   "origin unclear: it matches neither a kernel reset of a received segment nor the sender's own "
                   "sequence state")


def _handshake_rejection(rec: RstRecord) -> tuple[str, str]:
    """(why, rule) the sender's socket, still in its handshake, rejects the trigger; ("", "") if it would not."""
    trig = rec.trigger
    if trig is None or rec.established or not trig.flags & ACK:
        return "", ""
    syn = rec.sender_syn
    if syn is None:
        return "", ""
    if trig.ack != syn.end:
        why = f"its ACK {trig.ack} does not acknowledge the {rec.sender}'s SYN ({syn.end})"
        if not trig.flags & (SYN | FIN) and not trig.seglen:
            why += (": a bare ACK answering the SYN belongs to an older connection on the same ports (a challenge "
                    "ACK from a stale or TIME-WAIT connection, RFC 5961 4), which this reset clears")
        return why, "RFC 9293 3.10.7.3: an unacceptable ACK in SYN-SENT is answered with <SEQ=SEG.ACK><CTL=RST>"
    if not trig.flags & SYN and syn.flags & ACK == 0:
        return ("a segment without SYN while it waited for the SYN-ACK",
                "Linux tcp_rcv_synsent_state_process resets on such a segment when, e.g., its timestamp echo is not "
                "one it sent")
    return "", ""


def _shape(rec: RstRecord, passive: bool, active: bool, trig: Seg | None) -> str:
    has_ack = rec.flags & ACK
    if passive and trig is not None:
        if has_ack:
            return f"with ACK, seq 0, ack = the end of frame {trig.frame}"
        return f"without ACK, seq = the ACK of frame {trig.frame}"
    if active:
        return "with ACK, seq = its next sequence number"
    return ("with ACK" if has_ack else "without ACK") + f", seq {rec.seq}"


def _confidence(n: int) -> str:
    return "high" if n >= 2 else "medium"
