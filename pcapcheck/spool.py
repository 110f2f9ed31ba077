"""Bytes kept on disk instead of in memory until a run reads them back: an unnamed temporary file (nothing is left
behind however the run ends), created at the first write."""

from __future__ import annotations

import tempfile
from typing import Any


class Spool:
    """Append byte strings, read each back by the place ``write`` returned."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._file: Any = None

    def write(self, data: bytes) -> tuple[int, int]:
        """Store ``data``; returns (offset, length), for ``read``."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix=self.prefix)  # noqa: SIM115 (closed in close())
        offset = self._file.seek(0, 2)
        self._file.write(data)
        return offset, len(data)

    def read(self, where: tuple[int, int]) -> bytes:
        offset, length = where
        f = self._file
        f.flush()
        f.seek(offset)
        data = f.read(length)
        if len(data) != length:
            raise OSError(f"the spool file {self.prefix}* ended early ({len(data)} of {length} bytes at {offset})")
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
