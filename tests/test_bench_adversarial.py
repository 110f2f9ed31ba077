"""The adversarial captures (bench/adversarial.py): each is deterministic and stresses what it says it does.

No timing here: `make bench-adversarial` prints the growth table. These run every pattern small, through the
whole analysis, and check the mechanism it is named for was reached (the holes were holes, the chunks were
chunks, the connections reused the 4-tuple).
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from pcapcheck.config import Options
from pcapcheck.pipeline import Analysis

ROOT = Path(__file__).resolve().parents[1]


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_adversarial", ROOT / "bench" / "adversarial.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


adversarial = _load()
N = 40


class Keep:
    def __init__(self) -> None:
        self.results = []

    def conversation(self, result) -> None:  # type: ignore[no-untyped-def]
        self.results.append(result)


def analyze(name: str, n: int, tmp_path: Path) -> tuple[list, Counter]:
    path = adversarial.write(adversarial.BY_NAME[name], n, tmp_path / f"{name}.pcap")
    keep = Keep()
    Analysis(Options(), keep).run([str(path)])
    return keep.results, Counter(f.code for r in keep.results for f in r.findings)


@pytest.mark.parametrize("name", [p.name for p in adversarial.PATTERNS])
def test_each_pattern_is_deterministic_and_analyzed(name: str, tmp_path: Path) -> None:
    pattern = adversarial.BY_NAME[name]
    one = adversarial.write(pattern, N, tmp_path / "one.pcap").read_bytes()
    assert one == adversarial.write(pattern, N, tmp_path / "two.pcap").read_bytes()
    assert pattern.what and pattern.n > N
    results, codes = analyze(name, N, tmp_path)
    many = name in ("port-reuse", "open-conversations", "holes-everywhere")
    assert len(results) == (N if many else 1)
    assert codes["conversation.end"] == len(results)


@pytest.mark.parametrize("name", ["reverse-order", "holes", "gap-first", "overlaps"])
def test_reassembly_patterns_leave_holes_then_fill_them(name: str, tmp_path: Path) -> None:
    (result,), codes = analyze(name, N, tmp_path)
    assert codes["tcp.out-of-order"] and codes["tcp.lost-segment"]
    (exchange,) = result.http
    assert exchange.response.body_length == 100 * N and exchange.response.state.value == "complete"


def test_body_patterns_reach_the_body(tmp_path: Path) -> None:
    (tiny,), _ = analyze("tiny-segments", N, tmp_path)
    response = tiny.http[0].response
    assert response.body_length == N and tiny.packets[1] == 1 + response.end_offset  # the SYN-ACK, then 1 byte each
    (chunked,), _ = analyze("1-byte-chunks", N, tmp_path)
    assert chunked.http[0].response.chunks == N and chunked.http[0].response.body_length == N


def test_holes_everywhere_buffer_beyond_a_hole(tmp_path: Path) -> None:
    results, codes = analyze("holes-everywhere", 3, tmp_path)
    assert codes["tcp.lost-segment"] == 3 and all(r.packets == (401, 0) for r in results)


def test_fragments_are_reassembled(tmp_path: Path) -> None:
    (result,), codes = analyze("ip-fragments", N, tmp_path)
    assert result.packets == (3, 1) and result.bytes[0] == 8 * N - 20 and not set(codes) - {"conversation.end"}
    assert result.http[0].request.body_length == 8 * N - 20 - len(result.http[0].request.raw_head)


def test_head_patterns_reach_the_parser(tmp_path: Path) -> None:
    (fields,), codes = analyze("300-field-heads", 3, tmp_path)
    assert [len(x.request.headers) for x in fields.http] == [301] * 3 and not set(codes) - {"conversation.end"}
    spanned = -(-len(fields.http[0].request.raw_head) // 1448)
    assert spanned == 5 and len({f.frame for f in fields.http[0].request.headers}) == spanned  # 1,448-byte segments
    (pipelined,), _ = analyze("pipelined", N, tmp_path)
    assert len(pipelined.http) == N and all(x.response.status == 204 for x in pipelined.http)
    (interim,), _ = analyze("interim-responses", N, tmp_path)
    assert len(interim.http[0].interim) + interim.http[0].interim_omitted == N and interim.http[0].response.status == 200
    _, codes = analyze("garbage", 2, tmp_path)
    assert codes["http.unparseable"] == 1
    (open_head,), codes = analyze("open-head", 1200, tmp_path)  # 12,000 lines: past the 64 KiB head limit
    assert codes["http.unparseable"] == 1


def test_control_patterns_reach_the_tcp_analyzers(tmp_path: Path) -> None:
    _, codes = analyze("rst-storm", N, tmp_path)
    assert codes["tcp.rst"] == N
    _, codes = analyze("dup-acks", N, tmp_path)
    assert codes["tcp.dup-ack"] == 1  # one finding, counting them
    _, codes = analyze("zero-window", N, tmp_path)
    assert codes["tcp.zero-window"] == 1
    _, codes = analyze("port-reuse", N, tmp_path)
    assert codes["tcp.port-reuse"] == N - 1
    (sacked,), codes = analyze("sack-storm", N, tmp_path)
    assert codes["tcp.lost-segment"] == 1 and sacked.packets == (3 + N, 1 + N)  # an ACK with SACKs per segment
