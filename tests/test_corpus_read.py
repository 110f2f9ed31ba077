"""Every real capture in ../shared/corpus is read without a crash, with the same frame
numbering as Wireshark, and with its problems reported (skipped without ../shared)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pcapcheck.capture import CaptureError, CaptureReader
from pcapcheck.decode import Decoder
from tests.conftest import CORPUS


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md")


def read_all(path: Path):
    r = CaptureReader(str(path))
    d = Decoder()
    frames = tcp = 0
    try:
        for f in r:
            frames += 1
            if d.decode(f) is not None:
                tcp += 1
    except CaptureError as e:
        return r, d, frames, tcp, str(e)
    return r, d, frames, tcp, None


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_capture_reads_like_wireshark(path: Path, corpus: Path, tshark: str) -> None:
    r, d, frames, tcp, error = read_all(path)
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.stream"],
                         capture_output=True, text=True, check=False).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    assert error is None, error
    assert frames == len(rows), f"{frames} frames read, tshark shows {len(rows)}"
    assert tcp == sum(1 for row in rows if len(row) > 1 and row[1].strip()), "TCP frames differ from tshark"
    # a file tshark calls damaged must give us a problem too (and vice versa for the known ones)
    if path.name in ("tls_DER-incomplete-header.pcap",) or "http-mime-truncated" in str(path):
        assert any(p.fatal for p in r.problems), "the damaged file's problem was not reported"


def test_corpus_is_not_silently_empty(corpus: Path) -> None:
    assert len(corpus_files()) > 100
