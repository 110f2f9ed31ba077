"""Packed fixed-size records, sorted without an object per record for all of them at once.

The report writers keep one packed record per conversation (the JSON writer's line index, the HTML
index's keys): 32 and 38 bytes. Sorting them with ``sorted()`` over ``bytes`` objects made a list of about
80 bytes per record on top: with a million conversations (a 64 MB capture of a SYN flood) 80 MB at the
end of the run, in each process, more than the records themselves. Here the buffer is sorted in place a
chunk of CHUNK records at a time (the objects of one chunk at a time), and read back in order by merging
the chunks (``heapq.merge``, one record of each chunk held at a time). Records compare as bytes: pack them
big-endian, so the bytes order is the tuples' order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

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
