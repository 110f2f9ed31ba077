"""bench/formats.py: the benchmark capture as pcapng, VLAN-tagged or over IPv6 is the same traffic, so pcapcheck finds
the same conversations, ends, findings and HTTP exchanges in every form (addresses aside). Also what the formats
comparison of bench/run.py stands on: a form that lost or changed segments would time something else. The degraded
forms (cut by a snaplen, records missing) are the same records cut or thinned, and pcapcheck sees the holes."""

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


@pytest.mark.parametrize("form", formats.SAME_TRAFFIC)
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
    for form in formats.SAME_TRAFFIC:
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


def test_degraded_forms_are_what_they_say(capture: Path, tmp_path: Path) -> None:
    """The snaplen form: every record cut to its first 200 bytes, its wire length kept. The loss form: about one
    record in 20 left out, the same ones every time, the others as they were."""
    from pcapcheck.capture import CaptureReader

    original = list(CaptureReader(str(capture)))
    cut = tmp_path / "cut.pcap"
    formats.rewrite(capture, cut, "snaplen")
    reader = CaptureReader(str(cut))
    frames = list(reader)
    assert reader.snaplen == formats.SNAPLEN and not reader.problems
    assert [(f.number, f.ts, f.wirelen, f.data) for f in frames] == \
        [(f.number, f.ts, f.wirelen, f.data[:formats.SNAPLEN]) for f in original]
    assert any(len(f.data) > formats.SNAPLEN for f in original)
    thin, again = tmp_path / "thin.pcap", tmp_path / "again.pcap"
    formats.rewrite(capture, thin, "loss")
    formats.rewrite(capture, again, "loss")
    assert thin.read_bytes() == again.read_bytes()
    kept = [(f.ts, f.wirelen, f.data) for f in CaptureReader(str(thin))]
    remaining = iter([(f.ts, f.wirelen, f.data) for f in original])
    assert all(k in remaining for k in kept)  # a subsequence: records left out, none changed or reordered
    assert 0.02 * len(original) < len(original) - len(kept) < 0.09 * len(original)


def test_pcapcheck_sees_the_holes_of_the_degraded_forms(capture: Path, tmp_path: Path) -> None:
    """Cut by a snaplen: the same conversations, packets and bytes, but HTTP messages incomplete where the payload
    was cut. Records missing: segments reported lost."""
    want, _ = _results(capture)
    cut, thin = tmp_path / "cut.pcap", tmp_path / "thin.pcap"
    formats.rewrite(capture, cut, "snaplen")
    formats.rewrite(capture, thin, "loss")
    got, _ = _results(cut)
    assert [c[:5] for c in got] == [c[:5] for c in want]
    incomplete = [sum(code == "http.incomplete" for c in r for code, *_ in c[6]) for r in (want, got)]
    assert incomplete[1] > incomplete[0] + len(got), incomplete
    got, _ = _results(thin)
    assert any(code == "tcp.lost-segment" for c in got for code, *_ in c[6])
