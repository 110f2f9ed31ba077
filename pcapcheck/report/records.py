"""Packed fixed-size records in bounded memory: kept in sorted runs on disk, read back in order.

The report writers keep one packed record per conversation (the JSON writer's line index, the HTML
index's keys): 32 and 38 bytes. In memory, with a million conversations (a 64 MB capture of a SYN flood),
that was 70 MB in each process, and sorting them with ``sorted()`` over ``bytes`` objects made a list of
about 80 bytes per record on top. A ``Spill`` keeps at most CHUNK records in memory: each full chunk is
sorted in place (the objects of one chunk at a time) and written to a temporary file as a run; reading them
in order merges the runs (``heapq.merge``, a block of each run at a time). Records compare as bytes: pack
them big-endian, so the bytes order is the tuples' order.
"""

from __future__ import annotations

import heapq
import os
import tempfile
from collections.abc import Iterator
from typing import Any

CHUNK = 65536  # records sorted at a time: about 5 MB of objects


def sort_in_chunks(buf: bytearray, size: int) -> None:
    """Sort every CHUNK records of ``buf`` (records of ``size`` bytes) in place; ``merged`` reads them in order."""
    if len(buf) % size:
        raise ValueError(f"{len(buf)} bytes are not records of {size}")
    step = CHUNK * size
    for start in range(0, len(buf), step):
        part = bytes(buf[start : start + step])
        buf[start : start + len(part)] = b"".join(sorted([part[i : i + size] for i in range(0, len(part), size)]))


def merged(buf: bytearray, size: int) -> Iterator[bytes]:
    """Every record of ``buf``, sorted by ``sort_in_chunks`` before, in order. ``buf`` must not change meanwhile."""
    step = CHUNK * size

    def chunk(start: int) -> Iterator[bytes]:
        for i in range(start, min(start + step, len(buf)), size):
            yield bytes(buf[i : i + size])

    chunks = [chunk(start) for start in range(0, len(buf), step)]
    if len(chunks) == 1:
        return chunks[0]
    return heapq.merge(*chunks)


def in_order(buf: bytearray, size: int) -> Iterator[bytes]:
    """``sort_in_chunks`` then ``merged``: the records in order (``buf`` is left sorted by chunks)."""
    sort_in_chunks(buf, size)
    return merged(buf, size)


BLOCK = 4096  # records read at a time from a spilled run


class Spill:
    """Packed records of ``size`` bytes, appended in any order and read back sorted (``ordered``) or all of them
    in no particular order (``records``), in bounded memory: at most CHUNK records are kept; each full chunk
    is sorted and written to a temporary file as a run. A record still in memory can be read and patched by
    its arrival number (``offset``) until the records are first read in order; while ``hold`` is set, none is
    written out (the caller bounds how many come meanwhile)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = bytearray()  # the records after the spilled ones, in arrival order (until ``ordered``)
        self.spilled = 0  # records in the runs
        self.sorted = False
        self.hold = False  # keep every record in memory for now (read or patched by arrival number)
        self._file: Any = None
        self._runs: list[tuple[int, int]] = []  # (byte offset, records) in _file, each run sorted

    def __len__(self) -> int:
        return self.spilled + len(self.buf) // self.size

    def add(self, record: bytes) -> None:
        self.buf += record
        if len(self.buf) >= CHUNK * self.size and not self.hold:
            self._spill()

    def _spill(self) -> None:
        """Write the records in memory out as sorted runs of at most CHUNK (more than one after a ``hold``)."""
        sort_in_chunks(self.buf, self.size)
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="pcapcheck-records-")  # noqa: SIM115 (closed in close())
        offset = self._file.seek(0, os.SEEK_END)
        self._file.write(self.buf)
        self._file.flush()
        step = CHUNK * self.size
        for start in range(0, len(self.buf), step):
            self._runs.append((offset + start, (min(start + step, len(self.buf)) - start) // self.size))
        self.spilled += len(self.buf) // self.size
        self.buf = bytearray()

    def offset(self, number: int) -> int:
        """Where the record that arrived ``number``-th (from 0) is in ``buf``: it must still be there."""
        if self.sorted:
            raise RuntimeError("the records were sorted: they are no longer found by arrival")
        if not self.spilled <= number < len(self):
            raise RuntimeError(f"record {number} is not in memory (records {self.spilled} to {len(self) - 1} are)")
        return (number - self.spilled) * self.size

    def _run(self, offset: int, count: int) -> Iterator[bytes]:
        return read(self._file, offset, count, self.size)

    def records(self) -> Iterator[bytes]:
        """Every record, in no particular order."""
        for offset, count in self._runs:
            yield from self._run(offset, count)
        buf, size = self.buf, self.size
        for i in range(0, len(buf), size):
            yield bytes(buf[i : i + size])

    def ordered(self) -> Iterator[bytes]:
        """Every record, in order (as bytes). The records in memory are left sorted by chunks."""
        self.sorted = True
        tail = in_order(self.buf, self.size)
        if not self._runs:
            return tail
        return heapq.merge(*(self._run(offset, count) for offset, count in self._runs), tail)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def pread(f: Any, length: int, offset: int) -> bytes:
    """``length`` bytes of file ``f`` from ``offset``, without moving its position (where ``os.pread`` is
    missing: read, then back to the end, where the writers append). A file that ends sooner is an error."""
    pread = getattr(os, "pread", None)
    if pread is not None:
        data = pread(f.fileno(), length, offset)
    else:
        f.seek(offset)
        data = f.read(length)
        f.seek(0, os.SEEK_END)
    if len(data) != length:
        raise OSError(f"a spool file ends {length - len(data)} bytes before the {length} asked for at {offset}")
    return data


def read(f: Any, offset: int, count: int, size: int) -> Iterator[bytes]:
    """``count`` records of ``size`` bytes packed back to back in file ``f`` from byte ``offset``, read a block at a
    time (without moving the file's position)."""
    for start in range(0, count, BLOCK):
        n = min(BLOCK, count - start)
        block = pread(f, n * size, offset + start * size)
        for i in range(0, n * size, size):
            yield block[i : i + size]
