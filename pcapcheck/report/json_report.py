"""report.json (DESIGN 7): one versioned, deterministic JSON document for the whole run.

The pipeline hands over conversations as they are finalized, in finalization order, and a capture can hold
a million of them. So each conversation's JSON text goes to a temporary spool file as it arrives, and only
``(input, id, spool, offset, length)`` is kept per conversation, packed, in a ``records.Spill`` (in memory
up to records.CHUNK of them, the others in sorted runs on disk). ``finish`` writes the document with the
conversations in ``(input, id)`` order, copying their text from the spool.

The output is ``json.dumps(document, sort_keys=True, indent=1)`` except that each conversation is one line,
``json.dumps(conversation, sort_keys=True)`` (a test checks this): one line per conversation diffs well, and
it is written by the json module's C encoder, which ``indent`` would turn off (three times slower over a large
capture's 100 MB of report). Two runs over the same inputs give identical files. No wall-clock time is
written unless a ``timestamp`` is given.
"""

from __future__ import annotations

import enum
import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

from pcapcheck import __version__
from pcapcheck.findings import Severity
from pcapcheck.model import ConversationResult
from pcapcheck.report import records

FORMAT: Final = 1
_INDENT: Final = 1
_ITEM_PREFIX: Final = " " * (2 * _INDENT)  # a conversation is nested two levels deep: {"conversations": [ ... ]}
_ITEM_PREFIX_BYTES: Final = _ITEM_PREFIX.encode("ascii")
_SPOOL_BUFFER: Final = 1 << 20  # a conversation's line is ~20 KB: the default 8 KB buffer made a write call per line
# Where a conversation's line is: (input, id, spool, offset, length), packed: 32 bytes per conversation instead
# of about 190 as a tuple of ints. Big-endian, so the packed entries sort as the tuples do (input, id, then
# the spool and offset: the parts of a resumed conversation, which one shard wrote in order).
_ENTRY: Final = struct.Struct(">IQIQQ")
_PLACEHOLDER: Final = "\x00conversations\x00"  # encoded by json.dumps as "\u0000conversations\u0000"


def _default(value: Any) -> Any:
    """Values the model's to_json() may leave as they are: bytes as escaped text (as findings.to_json does)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1").encode("unicode_escape").decode("ascii")
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value, Severity) else value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"report.json cannot hold a {type(value).__name__}")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=_INDENT, default=_default)


def _dumps_line_slow(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_default)


def _line_encoder() -> Any:
    """``json.dumps(value, sort_keys=True, default=_default)`` with one C encoder made once, not one per call."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _dumps_line_slow
    try:  # the arguments json.JSONEncoder.iterencode gives it
        encode = make(None, _default, json.encoder.encode_basestring_ascii, None, ": ", ", ", True, False, True)

        def fast(value: Any) -> str:
            return "".join(encode(value, 0))

        probe = {"b": [1, 2.5, None, True], "a": b"\x00\xff\\", "\u00e9": {"z": (), "y": "\n"}}
        return fast if fast(probe) == _dumps_line_slow(probe) else _dumps_line_slow
    except Exception:
        return _dumps_line_slow


_dumps_line = _line_encoder()


def _copier(out: BinaryIO) -> Callable[[BinaryIO, int, int], None]:
    """``copy(src, offset, length)`` appends that part of ``src`` to ``out``: with sendfile(2) where the
    system has it (the kernel copies; report.json of a 1M-packet capture is ~150 MB), else read and write."""

    def plain(src: BinaryIO, offset: int, length: int) -> None:
        out.write(records.pread(src, length, offset))

    sendfile = getattr(os, "sendfile", None)
    if sendfile is None:
        return plain
    ofd = out.fileno()
    usable = [True]

    def kernel(src: BinaryIO, offset: int, length: int) -> None:
        if usable[0]:
            ifd = src.fileno()
            try:
                while length > 0:
                    sent = sendfile(ofd, ifd, offset, length)
                    if sent <= 0:
                        break
                    offset += sent
                    length -= sent
            except OSError:  # file-to-file sendfile refused (old kernel, unusual file system): read and write
                usable[0] = False
            if length <= 0:
                return
        plain(src, offset, length)

    return kernel


_BIG = 128 * 1024  # entries at least this long are copied by the kernel (_copier), the others through memory
_CHUNK: Final = 1 << 20  # output bytes gathered before a write


class _Gather:
    """Writes a sequence of spool entries to ``out``: big ones with ``copy`` (sendfile), small ones read with
    ``os.pread`` (no file offset moves, so it mixes with sendfile) and written in large pieces. With 25,000
    short conversations of about 1.5 KB, a sendfile call and a write call per conversation took 36 us each
    of the run's serial end. (Reading the spools in large chunks does not help: conversations are finalized
    in another order than their ids', so the chunks were read again and again.)"""

    def __init__(self, out: BinaryIO, spools: list[BinaryIO]) -> None:
        self.out = out
        self.copy = _copier(out)
        self.spools = spools
        self.pending: list[bytes] = []
        self.pending_len = 0

    def write(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_len += len(data)
        if self.pending_len >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.out.write(b"".join(self.pending))
            self.pending = []
            self.pending_len = 0

    def entry(self, k: int, offset: int, length: int) -> None:
        if length >= _BIG:
            self.flush()
            self.copy(self.spools[k], offset, length)
            return
        self.write(records.pread(self.spools[k], length, offset))


class JsonReport:
    """Sink writing ``report.json``: ``conversation(result)`` per conversation, then ``finish(totals)``."""

    def __init__(self, path: str | os.PathLike[str], *, timestamp: str | None = None) -> None:
        self.path = Path(path)
        self.timestamp = timestamp
        self._spool: BinaryIO | None = cast(BinaryIO, tempfile.TemporaryFile(  # noqa: SIM115 (closed in finish/close)
            prefix="pcapcheck-json-", buffering=_SPOOL_BUFFER))
        self._index = records.Spill(_ENTRY.size)  # _ENTRY per conversation
        self._pos = 0
        self._others: list[BinaryIO] = []  # spool files of other shards (absorb), spool number = position + 1

    @classmethod
    def shard_spool(cls, spool: BinaryIO) -> JsonReport:
        """A report that only spools, into the empty file ``spool``, through a handle of its own: a shard's,
        in a file its parent process opened before the fork and reads after ``export`` (``absorb``). The file
        needs no name, so nothing is left on disk whatever happens to either process."""
        self = cls(os.devnull)
        assert self._spool is not None
        self._spool.close()
        self._spool = os.fdopen(os.dup(spool.fileno()), "w+b", buffering=_SPOOL_BUFFER)
        return self

    def export(self) -> tuple[int, int]:
        """The index of what this report spooled, for ``absorb`` in another process: written to the spool after
        the lines, and (where it starts, its entries) returned. The spool is flushed and closed (here: the other
        process has the file open too). This report is done."""
        if self._spool is None:
            raise RuntimeError("JsonReport.export() after finish()")
        index, self._index = self._index, records.Spill(_ENTRY.size)
        write = self._spool.write
        for entry in index.records():
            write(entry)
        index.close()
        self._spool.close()  # flushes
        self._spool = None
        return self._pos, len(index)

    def absorb(self, spool: BinaryIO, index: tuple[int, int]) -> None:
        """Add another shard's conversations: ``index`` from its ``export()``, ``spool`` this process's handle
        of the file it spooled to. The file is closed by ``finish`` or ``close``."""
        self._others.append(spool)
        k = len(self._others)
        start, count = index
        add, unpack, pack = self._index.add, _ENTRY.unpack, _ENTRY.pack
        for entry in records.read(spool, start, count, _ENTRY.size):
            i, c, _, off, n = unpack(entry)
            add(pack(i, c, k, off, n))

    def conversation(self, result: ConversationResult) -> None:
        if self._spool is None:
            raise RuntimeError("JsonReport.conversation() after finish()")
        # json.dumps(result.to_json(), sort_keys=True, default=_default) as ASCII bytes, written without the dicts
        json_parts = getattr(result, "json_parts", None)
        if json_parts is not None:
            parts = json_parts(_dumps_line)
        else:  # json.dumps escapes non-ASCII (ensure_ascii), so this cannot fail
            parts = [json.dumps(result.to_json(), sort_keys=True, default=_default).encode("ascii")]
        write = self._spool.write
        write(_ITEM_PREFIX_BYTES)
        n = len(_ITEM_PREFIX_BYTES)
        for part in parts:  # the pieces as they are: joining them would copy the line once more
            write(part)
            n += len(part)
        self._index.add(_ENTRY.pack(result.input_index, result.id, 0, self._pos, n))
        self._pos += n

    def document_head(self, totals: Any) -> dict[str, Any]:
        """Everything but the conversations: inputs, capture-level findings, format and version."""
        findings = []
        for i in totals.inputs:
            for f in i.findings:
                d = f.to_json()
                d["input"] = i.index
                findings.append(d)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "pcapcheck": __version__,
            "inputs": [i.to_json() for i in totals.inputs],
            "findings": findings,
        }
        if self.timestamp is not None:
            doc["timestamp"] = self.timestamp
        return doc

    def finish(self, totals: Any) -> Path:
        """Write the document (atomically: a temporary file renamed over ``path``) and drop the spool."""
        if self._spool is None:
            raise RuntimeError("JsonReport.finish() called twice")
        doc = self.document_head(totals)
        doc["conversations"] = _PLACEHOLDER
        head, tail = _dumps(doc).split(json.dumps(_PLACEHOLDER), 1)  # "conversations" sorts first: no clash
        spool, self._spool = self._spool, None
        index, self._index = self._index, records.Spill(_ENTRY.size)
        entries = index.ordered()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        spools = [spool, *self._others]
        try:
            spool.flush()
            with open(tmp, "wb", buffering=0) as out:  # unbuffered: sendfile writes to the same descriptor
                out.write(head.encode("ascii"))
                if not index:
                    out.write(b"[]")
                else:
                    gather = _Gather(out, spools)
                    gather.write(b"[\n")
                    for n, entry in enumerate(entries):
                        _, _, k, offset, length = _ENTRY.unpack(entry)
                        if n:
                            gather.write(b",\n")
                        gather.entry(k, offset, length)
                    gather.write(b"\n" + b" " * _INDENT + b"]")
                    gather.flush()
                out.write(tail.encode("ascii"))
            os.replace(tmp, self.path)
        finally:
            index.close()
            for f in spools:
                f.close()
            self._others = []
            if tmp.exists():
                tmp.unlink()
        return self.path

    def close(self) -> None:
        """Drop the spools without writing (an aborted run)."""
        self._index.close()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        for f in self._others:
            f.close()
        self._others = []
