"""Conversation identity: which packets form one TCP conversation, and its id.

The id equals Wireshark's ``tcp.stream`` (REFERENCE.md 1.4, tshark 4.0.17 as Debian
ships it): 0-based, in order of first appearance, direction-agnostic 4-tuple; a SYN
without ACK on a known 4-tuple opens a new conversation when its sequence number
differs from that direction's base sequence number (port reuse). A SYN with the same
ISN, even after FIN or RST, stays in the old conversation (a retransmitted SYN).

Finished conversations are evicted (their per-conversation state is dropped) after a
linger; a small tombstone keeps their id so late packets still get the right id.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from pcapcheck.decode import IcmpError, TcpPacket
from pcapcheck.tombstones import Tombstones

_tnew: Final = tuple.__new__

SYN: Final = 0x02
ACK: Final = 0x10
FIN: Final = 0x01
RST: Final = 0x04
_BARE = SYN | ACK | FIN | RST  # flags & _BARE == SYN: a bare SYN
# Evicted conversations remembered for late packets (one packed entry each); bounded memory.
MAX_TOMBSTONES = 200_000  # finished conversations whose id a late packet still finds
# A tombstone: key src + dst + ports (_PORTS) of its side a -> (id, base of a, base of b, part), -1 = no base.
# tombstones.Tombstones keeps them in about 43 bytes each for IPv4 (158 in a dict of packed bytes, 480 as tuples).
_PORTS: Final = struct.Struct(">HH")


class Conversation:
    """Identity and role facts of one conversation; ``state`` belongs to the pipeline."""

    __slots__ = (
        "id", "a", "aport", "b", "bport", "client_is_a", "guessed", "base", "closed_at",
        "saw_fin", "saw_rst", "state", "reuse_of", "reuse_frame", "part", "key_ab", "key_ba", "bare",
    )

    def __init__(self, cid: int, pkt: TcpPacket) -> None:
        self.id = cid
        self.a, self.aport, self.b, self.bport = pkt.src, pkt.sport, pkt.dst, pkt.dport
        self.key_ab = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        self.key_ba = (pkt.dst, pkt.dport, pkt.src, pkt.sport)
        flags = pkt.flags
        if flags & SYN and not flags & ACK:
            self.client_is_a, self.guessed = True, False
        elif flags & SYN and flags & ACK:
            self.client_is_a, self.guessed = False, False
        else:
            # No handshake: the side with the higher port is the client (ephemeral ports
            # are high); on a tie, the first sender. The report says this was a guess.
            self.client_is_a = pkt.sport > pkt.dport or (pkt.sport == pkt.dport)
            self.guessed = True
        # base sequence number per side (index 0 = a, 1 = b): Wireshark's base_seq
        self.base: list[int | None] = [None, None]
        self.closed_at: int | None = None
        self.saw_fin = False
        self.saw_rst = False
        self.state: Any = None  # the pipeline's state of it (pipeline.ConvState, SynOnly or Foreign) while open
        self.reuse_of: int | None = None
        self.reuse_frame: int | None = None
        # 1; 2, 3 ... for the parts of a conversation resumed after it was finalized (a late packet, its tombstone)
        self.part = 1
        # only bare SYNs (no ACK, FIN, RST or payload) so far, and no route yet: a connection attempt (FlowTable)
        self.bare = False

    def side(self, pkt: TcpPacket) -> int:
        """0 when the packet was sent by endpoint a, 1 when by b."""
        return 0 if (pkt.sport == self.aport and pkt.src == self.a) else 1

    def direction(self, pkt: TcpPacket) -> int:
        """0 = client to server, 1 = server to client."""
        from_a = pkt.sport == self.aport and pkt.src == self.a
        return 0 if from_a == self.client_is_a else 1

    @property
    def client(self) -> tuple[bytes, int]:
        return (self.a, self.aport) if self.client_is_a else (self.b, self.bport)

    @property
    def server(self) -> tuple[bytes, int]:
        return (self.b, self.bport) if self.client_is_a else (self.a, self.aport)


class FlowTable:
    """Maps packets to conversations. ``lookup`` returns (conversation, is_new), ``route`` also the direction.

    ``routes`` is the hot path's view of the table: 4-tuple -> (conversation, direction) for both senders of a
    conversation once both base sequence numbers are set. A packet whose 4-tuple is in ``routes`` and that is
    not a SYN needs nothing else from the table (``route`` would return the same without changing anything),
    so the pipeline reads ``routes`` directly and calls ``route`` only for the others.
    """

    def __init__(self) -> None:
        self._table: dict[tuple, Conversation] = {}
        self.routes: dict[tuple, tuple[Conversation, int]] = {}
        self._tombstones = Tombstones()
        self.next_id = 0
        self.reused: list[tuple[int, int, int]] = []  # (new id, old id, frame)
        self.replaced: list[Conversation] = []  # superseded by port reuse: the caller finalizes them
        self.bare_count = 0  # active conversations with Conversation.bare set

    def __len__(self) -> int:
        return len(self._table) // 2

    def active(self) -> list[Conversation]:
        seen: dict[int, Conversation] = {}
        for c in self._table.values():
            seen[id(c)] = c
        return sorted(seen.values(), key=lambda c: c.id)

    def lookup(self, pkt: TcpPacket) -> tuple[Conversation, bool]:
        conv, _d, new = self.route(pkt)
        return conv, new

    def route(self, pkt: TcpPacket) -> tuple[Conversation, int, bool]:
        """(conversation, direction, is_new): direction 0 = client to server, 1 = server to client."""
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        conv = self._table.get(key)
        flags = pkt.flags
        if conv is not None:
            if conv.bare and (flags & _BARE != SYN or pkt.seglen):
                self._unbare(conv)
            from_a = key == conv.key_ab
            s = 0 if from_a else 1
            if flags & SYN and not flags & ACK:
                mine = conv.base[s]
                if mine is not None and mine != pkt.seq:
                    # port reuse: a new ISN on a known 4-tuple (Wireshark's reused_ports)
                    old = conv
                    if old.bare:  # superseded: no longer in the table
                        self._unbare(old)
                    conv = self._new(pkt)
                    conv.reuse_of = old.id
                    conv.reuse_frame = pkt.frame
                    self.replaced.append(old)
                    self.reused.append((conv.id, old.id, pkt.frame))
                    return conv, 0 if conv.client_is_a else 1, True
            base = conv.base
            if base[s] is None or (base[1 - s] is None and flags & ACK):
                self._base(conv, s, pkt)
            return conv, 0 if from_a == conv.client_is_a else 1, False
        found = self._tomb(key) if self._tombstones else None
        if found is not None:
            tkey, side, (cid, base_a, base_b, part) = found
            isn = base_b if side else base_a
            self._tombstones.pop(tkey)
            if not (flags & SYN and not flags & ACK and isn >= 0 and isn != pkt.seq):
                # a late packet of an evicted conversation: resume it under the same id
                conv = Conversation(cid, pkt)
                conv.part = part + 1
                self._insert(conv, pkt)
                return conv, 0 if conv.client_is_a else 1, True
            # a new ISN on the 4-tuple of an evicted conversation: port reuse, as on a live one
            conv = self._new(pkt)
            conv.reuse_of = cid
            conv.reuse_frame = pkt.frame
            self.reused.append((conv.id, cid, pkt.frame))
            return conv, 0 if conv.client_is_a else 1, True
        conv = self._new(pkt)
        return conv, 0 if conv.client_is_a else 1, True

    def icmp(self, ev: IcmpError) -> tuple[Conversation, int, bool] | None:
        """(conversation, direction of the quoted segment, is_new) for an ICMP error about a TCP segment, or
        None. The conversation is the live one of the quoted 4-tuple; when there is none and the quote is long
        enough for Wireshark to number a stream (``ev.numbered``), one is opened as Wireshark 4.0 does (docs/
        crosscheck.md, "Stream numbering" 6), with no base sequence number set: the quote is not a packet of
        the conversation, so a later SYN of any ISN joins it. An evicted conversation's late ICMP error is
        not attached (None)."""
        key = ev.key
        conv = self._table.get(key)
        if conv is not None:
            if conv.bare:
                self._unbare(conv)
            return conv, 0 if (key == conv.key_ab) == conv.client_is_a else 1, False
        if not ev.numbered or (self._tombstones and self._tomb(key) is not None):
            return None
        quoted = _tnew(TcpPacket, (ev.frame, ev.ts, key[0], key[2], key[1], key[3], ev.seq, 0, ev.qflags or 0, 0, b"",
                                   b"", 0, 0, None, False))
        conv = Conversation(self.next_id, quoted)
        self.next_id += 1
        self._table[conv.key_ab] = conv
        self._table[conv.key_ba] = conv
        self.routes.pop(conv.key_ab, None)
        self.routes.pop(conv.key_ba, None)
        return conv, 0 if conv.client_is_a else 1, True

    def ended_id(self, key: tuple) -> int | None:
        """The id of the finalized conversation of 4-tuple ``key`` (either direction), while its tombstone
        lasts; None otherwise."""
        found = self._tomb(key) if self._tombstones else None
        return None if found is None else found[2][0]

    def _tomb(self, key: tuple) -> tuple[bytes, int, tuple[int, int, int, int]] | None:
        """The tombstone of 4-tuple ``key`` (src, sport, dst, dport): (its dict key, the side that sent ``key``:
        0 = a, its fields), or None."""
        src, sport, dst, dport = key
        tkey = src + dst + _PORTS.pack(sport, dport)
        tomb = self._tombstones.get(tkey)
        if tomb is not None:
            return tkey, 0, tomb
        tkey = dst + src + _PORTS.pack(dport, sport)
        tomb = self._tombstones.get(tkey)
        if tomb is not None:
            return tkey, 1, tomb
        return None

    def _new(self, pkt: TcpPacket) -> Conversation:
        conv = Conversation(self.next_id, pkt)
        self.next_id += 1
        self._insert(conv, pkt)
        return conv

    def _insert(self, conv: Conversation, pkt: TcpPacket) -> None:
        self._table[conv.key_ab] = conv
        self._table[conv.key_ba] = conv
        self.routes.pop(conv.key_ab, None)  # (a replaced conversation's)
        self.routes.pop(conv.key_ba, None)
        if pkt.flags & _BARE == SYN and not pkt.seglen:
            conv.bare = True
            self.bare_count += 1
        self._base(conv, 0, pkt)

    def _base(self, conv: Conversation, s: int, pkt: TcpPacket) -> None:
        """Wireshark's base_seq rule (docs/crosscheck.md, "Stream numbering" 2) for a packet sent by side s: the
        sender's base from its first packet, the peer's from the first packet with the ACK flag either way
        (ack - 1) unless the peer's own first packet came before. Both senders get their route once both bases
        are set (until then route() has work to do)."""
        base = conv.base
        if base[s] is None:
            base[s] = pkt.seq if pkt.flags & SYN else (pkt.seq - 1) & 0xFFFFFFFF
        if base[1 - s] is None and pkt.flags & ACK:
            base[1 - s] = (pkt.ack - 1) & 0xFFFFFFFF
        if base[1 - s] is not None:
            d = 0 if conv.client_is_a else 1  # direction of side a's packets
            self.routes[conv.key_ab] = (conv, d)
            self.routes[conv.key_ba] = (conv, 1 - d)
            if conv.bare:  # its packets may bypass route() from now on
                self._unbare(conv)

    def _unbare(self, conv: Conversation) -> None:
        conv.bare = False
        self.bare_count -= 1

    def evict(self, conv: Conversation) -> None:
        """Drop a finished conversation; remember its id and base sequence numbers."""
        if self._table.get(conv.key_ab) is conv:
            if conv.bare:
                self._unbare(conv)
            del self._table[conv.key_ab]
            del self._table[conv.key_ba]
            self.routes.pop(conv.key_ab, None)
            self.routes.pop(conv.key_ba, None)
            base_a, base_b = conv.base
            self._tombstones.put(conv.a + conv.b + _PORTS.pack(conv.aport, conv.bport), conv.id,
                                 -1 if base_a is None else base_a, -1 if base_b is None else base_b, conv.part,
                                 MAX_TOMBSTONES)  # the oldest go beyond it
