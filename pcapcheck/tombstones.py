"""The tombstones of finished conversations: dense, insertion-ordered tables.

A tombstone keeps an evicted conversation's id, base sequence numbers and part, so a late
packet still gets Wireshark's id (flows.py). A capture of many short connections leaves up
to ``limit`` of them in every process; as a dict of packed ``bytes`` keys and values they
took about 158 bytes each (two objects and a dict entry), 31 MiB at 200,000. Here an IPv4
tombstone takes about 43 bytes: a 33-byte record in a bytearray, in insertion order, and
its share of an open-addressing index of record numbers (linear probing, backward-shift
deletion, so no deleted markers) in an ``array`` of 4-byte slots at most half full.

Semantics are those of the dict it replaces, per address family: ``put`` keeps at most
``limit`` live entries by dropping the oldest, ``pop`` removes an entry anywhere, and only
live entries count. (With both families in one capture, each keeps up to ``limit``.)
"""

from __future__ import annotations

import struct
from array import array
from typing import Final

# record: flags (1: base a set, 2: base b set, 4: live), part, base a, base b, id; then the key
_HEAD: Final = struct.Struct(">BIIIQ")
_KEY_AT: Final = _HEAD.size
_LIVE: Final = 4
_MIN_SLOTS: Final = 1024
_COMPACT: Final = 4096  # dropped records at the buffer's front before it is cut (and at least half of it)


class Tombstones:
    """Tombstones keyed by a 4-tuple's ``bytes`` (src + dst + ports: 12 bytes for IPv4, 36 for IPv6) ->
    (id, base a, base b, part), -1 = no base. One table per key length."""

    __slots__ = ("_tables", "_live")

    def __init__(self) -> None:
        self._tables: dict[int, _Table] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def get(self, key: bytes) -> tuple[int, int, int, int] | None:
        table = self._tables.get(len(key))
        return None if table is None else table.get(key)

    def pop(self, key: bytes) -> None:
        """Remove ``key``'s entry (it must be there)."""
        self._tables[len(key)].pop(key)
        self._live -= 1

    def put(self, key: bytes, cid: int, base_a: int, base_b: int, part: int, limit: int) -> None:
        """Add an entry for ``key`` as the newest (an older entry of the same key goes), then drop the oldest
        entries of its length beyond ``limit``."""
        table = self._tables.get(len(key))
        if table is None:
            table = self._tables[len(key)] = _Table(len(key))
        self._live += table.put(key, cid, base_a, base_b, part, limit)


class _Table:
    """The tombstones of one key length: records in insertion order, an index of record numbers."""

    __slots__ = ("_keylen", "_rec", "_buf", "_first", "_head", "_next", "_live", "_dead", "_mask", "_slots")

    def __init__(self, keylen: int) -> None:
        self._keylen = keylen
        self._rec = _HEAD.size + keylen  # record size
        self._buf = bytearray()  # records _first, _first + 1, ... _next - 1
        self._first = 0  # number of the buffer's first record
        self._head = 0  # number of the oldest record that may still be live
        self._next = 0  # number of the next record
        self._live = 0
        self._dead = 0  # popped records between _head and _next
        self._mask = _MIN_SLOTS - 1
        self._slots = array("i", bytes(4 * _MIN_SLOTS))  # 0 = empty, else record number - _first + 1

    def _find(self, key: bytes) -> int:
        """The slot holding ``key``, or -1."""
        slots, buf, mask, rec, n = self._slots, self._buf, self._mask, self._rec, self._keylen
        i = hash(key) & mask
        while True:
            s = slots[i]
            if not s:
                return -1
            off = (s - 1) * rec + _KEY_AT
            if buf[off : off + n] == key:
                return i
            i = (i + 1) & mask

    def get(self, key: bytes) -> tuple[int, int, int, int] | None:
        i = self._find(key)
        if i < 0:
            return None
        flags, part, base_a, base_b, cid = _HEAD.unpack_from(self._buf, (self._slots[i] - 1) * self._rec)
        return cid, base_a if flags & 1 else -1, base_b if flags & 2 else -1, part

    def pop(self, key: bytes) -> None:
        i = self._find(key)
        self._buf[(self._slots[i] - 1) * self._rec] = 0  # the record is dead
        self._unslot(i)
        self._live -= 1
        self._dead += 1
        if self._dead > max(_COMPACT, self._live):  # (tombstones resumed again and again, never the oldest)
            self._compact()

    def put(self, key: bytes, cid: int, base_a: int, base_b: int, part: int, limit: int) -> int:
        """Add the entry; the change in the number of live entries."""
        before = self._live
        if self._live and self._find(key) >= 0:
            self.pop(key)
        if (self._live + 1) * 2 > self._mask + 1:
            self._resize((self._mask + 1) * 2)
        flags = _LIVE | (base_a >= 0) | (base_b >= 0) << 1
        self._buf += _HEAD.pack(flags, part, max(base_a, 0), max(base_b, 0), cid)
        self._buf += key
        slots, mask = self._slots, self._mask
        i = hash(key) & mask
        while slots[i]:
            i = (i + 1) & mask
        slots[i] = self._next - self._first + 1
        self._next += 1
        self._live += 1
        while self._live > limit:
            self._drop_oldest()
        return self._live - before

    def _drop_oldest(self) -> None:
        buf, rec, first = self._buf, self._rec, self._first
        head = self._head
        while not buf[(head - first) * rec]:  # dead records (popped) are skipped
            head += 1
            self._dead -= 1
        off = (head - first) * rec
        key = bytes(buf[off + _KEY_AT : off + rec])
        buf[off] = 0
        slots, mask, want = self._slots, self._mask, head - first + 1
        i = hash(key) & mask
        while slots[i] != want:
            i = (i + 1) & mask
        self._unslot(i)
        self._live -= 1
        self._head = head + 1
        gone = self._head - first
        if gone >= _COMPACT and gone * rec * 2 >= len(buf):  # keep the buffer to about twice the live records
            del buf[: gone * rec]
            self._first = self._head
            self._resize(self._mask + 1)  # the slots count from the buffer's first record

    def _compact(self) -> None:
        """Keep only the live records, in their order, numbered from 0."""
        buf, rec, first = self._buf, self._rec, self._first
        live = bytearray()
        for number in range(self._head, self._next):
            off = (number - first) * rec
            if buf[off]:
                live += buf[off : off + rec]
        self._buf = live
        self._first = self._head = 0
        self._next = self._live
        self._dead = 0
        self._resize(self._mask + 1)

    def _unslot(self, i: int) -> None:
        """Empty slot ``i`` and shift back the entries after it that probed past it (Knuth's algorithm R)."""
        slots, mask, buf, rec = self._slots, self._mask, self._buf, self._rec
        slots[i] = 0
        j = i
        while True:
            j = (j + 1) & mask
            s = slots[j]
            if not s:
                return
            off = (s - 1) * rec + _KEY_AT
            k = hash(bytes(buf[off : off + self._keylen])) & mask  # where the entry in j would like to be
            # it stays when k lies cyclically in (i, j]: its probe path does not cross i
            if (i < k <= j) if i < j else (k > i or k <= j):
                continue
            slots[i] = s
            slots[j] = 0
            i = j

    def _resize(self, size: int) -> None:
        slots = array("i", bytes(4 * size))
        mask = size - 1
        buf, first, rec = self._buf, self._first, self._rec
        for number in range(self._head, self._next):
            off = (number - first) * rec
            if buf[off]:
                i = hash(bytes(buf[off + _KEY_AT : off + rec])) & mask
                while slots[i]:
                    i = (i + 1) & mask
                slots[i] = number - first + 1
        self._slots, self._mask = slots, mask
