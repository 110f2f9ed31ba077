"""Where long conversations' settled HTTP exchanges wait for their report (analyzers.http1.SPILL_AFTER): a spool
file shared by a run's conversations, and the sequence of a conversation's exchanges read back from it a chunk at a
time.

A module of its own, beside the analyzer that writes it: an ExchangeSpill knows the lists still reading from it
through weak references, which a class compiled with mypyc does not clear when it is freed (mypyc/mypyc#1102); so
this module is left interpreted in the compiled build (setup.cfg, make install).
"""

from __future__ import annotations

import bisect
import itertools
import pickle
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from pcapcheck.http.model import ExchangeJson, HttpExchange
from pcapcheck.spool import Spool


class ExchangeSpill:
    """Where long conversations' settled exchanges wait for their report: a Spool (one per Analysis, shared by its
    conversations; the space is not reused: it grows as the exchanges report.json will list)."""

    def __init__(self) -> None:
        self._spool = Spool("pcapcheck-http-")
        self.held = 0  # estimated bytes of the messages kept by the analyzers that do not spill (HELD_BUDGET)
        self._lists: weakref.WeakValueDictionary[int, ExchangeList] = weakref.WeakValueDictionary()  # reading from here

    def write(self, exchanges: list[HttpExchange | ExchangeJson]) -> tuple[int, int]:
        """Store ``exchanges``; returns where, for ``read``."""
        return self._spool.write(pickle.dumps(exchanges, pickle.HIGHEST_PROTOCOL))

    def read(self, where: tuple[int, int]) -> list[HttpExchange]:
        return pickle.loads(self._spool.read(where))

    def close(self) -> None:
        """Drop the file; an ExchangeList still reading from it (a result kept after its run) loads it all first."""
        for exchanges in list(self._lists.values()):
            exchanges.load()
        self._spool.close()


class ExchangeList(Sequence[HttpExchange]):
    """A conversation's exchanges, some still in the spill: read back a chunk at a time as they are iterated or
    indexed (a result's report.json line and page go through them in order), so a long keep-alive connection's
    2,064 kept exchanges are never all in memory at once. Equal to the tuple of them, and pickled as that tuple."""

    __slots__ = ("_spill", "_chunks", "_starts", "_marked", "_tail", "_cached", "__weakref__")

    def __init__(self, spill: ExchangeSpill, chunks: list[tuple[tuple[int, int], int, tuple[int, ...]]],
                 tail: list[HttpExchange]) -> None:
        self._spill: ExchangeSpill | None = spill
        self._chunks = [where for where, _, _ in chunks]  # where, in exchange order
        self._starts = list(itertools.accumulate((n for _, n, _ in chunks), initial=0))  # each chunk's first; the tail's
        self._marked = [i for _, _, marked in chunks for i in marked]
        self._tail = tail
        self._cached: tuple[int, list[HttpExchange]] = (-1, [])
        spill._lists[id(self)] = self  # (by identity: hashing would read every exchange back)

    def __len__(self) -> int:
        return self._starts[-1] + len(self._tail)

    def _chunk(self, c: int) -> list[HttpExchange]:
        if self._cached[0] != c:
            self._cached = (c, self._spill.read(self._chunks[c]))  # type: ignore[union-attr]
        return self._cached[1]

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return tuple(self[k] for k in range(*i.indices(len(self))))
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("exchange index out of range")
        first = self._starts[-1]
        if i >= first:
            return self._tail[i - first]
        c = bisect.bisect_right(self._starts, i) - 1
        return self._chunk(c)[i - self._starts[c]]

    def __iter__(self) -> Iterator[HttpExchange]:
        for c in range(len(self._chunks)):
            yield from self._chunk(c)
        yield from self._tail

    def marked(self) -> list[int]:
        """The places of the exchanges with a finding (without reading the spilled ones back)."""
        first = self._starts[-1]
        return self._marked + [first + i for i, x in enumerate(self._tail) if x.findings]

    def load(self) -> None:
        """Read every spilled exchange into memory (before the spill is closed)."""
        if self._chunks:
            self._tail = list(self)
            self._chunks, self._starts, self._marked, self._cached = [], [0], [], (-1, [])
        self._spill = None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, ExchangeList)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, (tuple(self),))

    def __repr__(self) -> str:
        return f"ExchangeList({len(self)} exchanges, {len(self._chunks)} chunks spilled)"
