"""bench/formats.py: the benchmark capture as pcapng, VLAN-tagged or over IPv6 is the same traffic, so pcapcheck finds
the same conversations, ends, findings and HTTP exchanges in every form (addresses aside). Also what the formats
comparison of bench/run.py stands on: a form that lost or changed segments would time something else."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcapcheck.config import Options
from pcapcheck.pipeline import Analysis
from tests.test_bench_gen import BUSY, _load, gen

formats = _load("formats")


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("formats") / "busy.pcap"
    gen.generate(str(path), 4000, seed=5, concurrency=20, profile=BUSY)
    return path


def _results(path: Path) -> tuple[list[tuple], tuple]:
    got = []

    class Sink:
        def conversation(self, r) -> None:
            got.append((r.id, r.first_frame, r.last_frame, r.packets, r.bytes, r.end,
                        sorted((f.code, f.severity, f.frames, f.direction) for f in r.findings),
                        [(x.index, x.request is not None, x.response is not None, x.findings) for x in r.http]))

    totals = Analysis(Options(), Sink()).run([str(path)])
    (summary,) = totals.inputs
    return sorted(got), (summary.frames, summary.tcp_frames, summary.readable, not summary.findings)


@pytest.mark.parametrize("form", formats.FORMS)
def test_every_form_is_the_same_traffic(capture: Path, tmp_path: Path, form: str) -> None:
    out = tmp_path / f"busy{formats.SUFFIX[form]}"
    formats.rewrite(capture, out, form)
    want, want_input = _results(capture)
    got, got_input = _results(out)
    assert len(want) > 15 and any(c[6] for c in want) and any(c[7] for c in want)
    assert got == want and got_input == want_input


def test_forms_are_what_they_say(capture: Path, tmp_path: Path) -> None:
    """pcapng with its blocks, one 802.1Q tag on every frame, IPv6 headers instead of IPv4 ones."""
    from pcapcheck.capture import CaptureReader

    original = list(CaptureReader(str(capture)))
    for form in formats.FORMS:
        out = tmp_path / f"f{formats.SUFFIX[form]}"
        formats.rewrite(capture, out, form)
        reader = CaptureReader(str(out))
        frames = list(reader)
        assert reader.format == ("pcapng" if form == "pcapng" else "pcap") and not reader.problems
        assert [(f.number, f.ts) for f in frames] == [(f.number, f.ts) for f in original]
        if form == "pcapng":
            assert [f.data for f in frames] == [f.data for f in original]
        elif form == "vlan":
            assert all(f.data[12:16] == b"\x81\x00\x00\x0a" and f.data[16:] == o.data[12:]
                       for f, o in zip(frames, original))
        else:
            assert all(f.data[12:14] == b"\x86\xdd" and f.data[54:] == o.data[34:] and f.wirelen == o.wirelen + 20
                       for f, o in zip(frames, original))
