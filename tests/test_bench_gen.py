"""The benchmark capture generator (bench/gen.py) and a smoke run of the benchmark runner (bench/run.py).

No timings are asserted here: the benchmark itself is the measure. These tests check that the capture is
deterministic, well-formed, and that Wireshark counts the same frames, conversations, port reuses and
RSTs the generator says it wrote.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

ROOT = Path(__file__).resolve().parents[1]
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gen = _load("gen")

# Everything that is rare in the benchmark made common, so a small capture holds every kind.
BUSY = gen.Profile(loss=0.03, reorder=0.02, malformed=0.5, client_abort=0.15, server_abort=0.1, server_forgot=0.1,
                   port_reuse=0.3)


@pytest.fixture(scope="module")
def busy(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("gen") / "busy.pcap"
    stats = gen.generate(str(path), 6000, seed=3, concurrency=20, profile=BUSY)
    return path, stats


def _read(path: Path) -> list[tuple[float, bytes]]:
    with open(path, "rb") as f:
        return list(dpkt.pcap.Reader(f))


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    gen.generate(str(a), 3000, seed=7, concurrency=30)
    gen.generate(str(b), 3000, seed=7, concurrency=30)
    gen.generate(str(c), 3000, seed=8, concurrency=30)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_smaller_capture_is_a_prefix_of_a_larger_one(tmp_path):
    small, large = tmp_path / "small.pcap", tmp_path / "large.pcap"
    gen.generate(str(small), 1000, seed=7, concurrency=30)
    gen.generate(str(large), 3000, seed=7, concurrency=30)
    assert large.read_bytes().startswith(small.read_bytes())


def test_command_line_writes_capture_and_stats(tmp_path):
    out, stats = tmp_path / "cli.pcap", tmp_path / "cli.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gen.py"), str(out), "--packets", "500", "--seed",
                           "2", "--concurrency", "10", "--stats", str(stats)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "500 packets" in proc.stderr
    assert len(_read(out)) == 500
    assert '"packets": 500' in stats.read_text()


def test_exact_count_valid_headers_and_checksums(busy):
    path, stats = busy
    records = _read(path)
    assert len(records) == stats["packets"] == 6000
    assert stats["bytes"] == path.stat().st_size
    last_ts = 0.0
    syns = 0
    for ts, buf in records:
        assert ts >= last_ts
        last_ts = ts
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        assert isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP)
        assert ip.len == len(buf) - 14
        raw_ip = buf[14:34]
        assert dpkt.in_cksum(raw_ip) == 0
        segment = buf[34:]
        pseudo = ip.src + ip.dst + bytes((0, 6)) + len(segment).to_bytes(2, "big")
        assert dpkt.in_cksum(pseudo + segment) == 0
        tcp = ip.data
        if tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK:
            syns += 1
            assert {o for o, _ in dpkt.tcp.parse_opts(tcp.opts)} >= {dpkt.tcp.TCP_OPT_MSS, dpkt.tcp.TCP_OPT_SACKOK,
                                                                      dpkt.tcp.TCP_OPT_TIMESTAMP,
                                                                      dpkt.tcp.TCP_OPT_WSCALE}
        assert len(tcp.data) <= gen.MSS
    assert syns == stats["conversations"]


def test_mix_holds_every_kind(busy):
    counts = busy[1]["counts"]
    for kind in ("retransmission", "gap-retransmission", "out-of-order", "response-chunked", "response-length",
                 "rst:abort-client", "rst:abort-server", "rst:no-socket-client", "rst:no-socket-server",
                 "malformed:te-duplicate", "port-reuse", "fin"):
        assert counts.get(kind, 0) > 0, kind


def test_default_mix_is_http_heavy(tmp_path):
    stats = gen.generate(str(tmp_path / "d.pcap"), 20_000, seed=1)
    counts = stats["counts"]
    assert counts["request"] > 200
    assert counts["response-chunked"] > 50 and counts["response-length"] > 100
    assert 0 < counts["retransmission"] + counts["gap-retransmission"] < 0.02 * stats["packets"]


def test_short_profile_has_one_request_per_conversation(tmp_path):
    """--short: every conversation carries one request and a small response, so most packets are handshakes,
    heads and closes."""
    stats = gen.generate(str(tmp_path / "s.pcap"), 5_000, seed=1, profile=gen.SHORT_PROFILE)
    counts, conversations = stats["counts"], stats["conversations"]
    assert conversations > 300  # about a dozen packets each
    assert 0.9 * conversations <= counts["request"] <= conversations  # the last ones are cut off by the end
    assert counts["response-length"] + counts["response-chunked"] > 0.7 * counts["request"]
    default = gen.generate(str(tmp_path / "d.pcap"), 5_000, seed=1)
    assert default["conversations"] < conversations / 3


def test_long_profile_keeps_a_few_connections_busy(tmp_path):
    """--long: a few connections (the concurrency) carry thousands of requests each, as between a proxy and its
    backends; none ends within a capture this small, and hardly a response is malformed."""
    stats = gen.generate(str(tmp_path / "l.pcap"), 20_000, seed=1, concurrency=4, profile=gen.LONG_PROFILE)
    counts = stats["counts"]
    assert stats["conversations"] == 4
    assert counts["request"] > 4 * 150
    assert not [k for k in counts if k in ("fin", "port-reuse") or k.startswith("rst:")]
    assert sum(v for k, v in counts.items() if k.startswith("malformed:")) < 0.02 * counts["request"]
    with pytest.raises(SystemExit) as e:
        gen.main([str(tmp_path / "x.pcap"), "--short", "--long", "-q"])
    assert e.value.code == 2


def _tshark(path: Path, *args: str) -> list[str]:
    proc = subprocess.run([TSHARK, "-r", str(path), *args], capture_output=True, text=True,
                          env=dict(os.environ, WIRESHARK_CONFIG_DIR=str(path.parent)))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@needs_tshark
def test_tshark_sees_what_the_generator_wrote(busy):
    path, stats = busy
    counts = stats["counts"]
    fields = ("tcp.stream", "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.reset", "tcp.analysis.reused_ports",
              "tcp.analysis.ack_lost_segment", "tcp.checksum.status", "ip.checksum.status")
    rows = [line.split("\t") for line in _tshark(path, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                                                 "-T", "fields", *(a for f in fields for a in ("-e", f)))]
    assert len(rows) == stats["packets"]
    assert len({r[0] for r in rows}) == stats["conversations"]
    syn_reused = [r for r in rows if r[1] == "1" and r[2] == "0" and r[4]]
    assert len(syn_reused) == counts["port-reuse"]
    assert sum(r[3] == "1" for r in rows) == sum(v for k, v in counts.items() if k.startswith("rst:"))
    assert not [r for r in rows if r[5]]  # ACK numbers never run ahead of the data captured
    assert {(r[6], r[7]) for r in rows} == {("1", "1")}  # checksums verified good


# -- bench/run.py -------------------------------------------------------------------------------------

STANDIN = ("import os, sys; os.makedirs(sys.argv[2], exist_ok=True); "
           "open(os.path.join(sys.argv[2], 'report.json'), 'w').write('{}'); "
           "[open(os.path.join(sys.argv[2], f'conv-{i}.html'), 'w').close() for i in range(3)]; "
           "sys.exit(int(sys.argv[3]))")


def _run_bench(tmp_path: Path, exit_code: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(STANDIN)} {{capture}} {{out}} {exit_code}"
    rss = "auto" if os.access("/usr/bin/time", os.X_OK) else "resource"  # never apt-get from a test
    argv = [sys.executable, str(ROOT / "bench" / "run.py"), "--packets", "2000", "--rounds", "2", "--scaling",
            "1000,2000", "--short", "1500", "--keep", str(tmp_path), "--rss-via", rss, "--pcapcheck-cmd", cmd, *extra]
    return subprocess.run(argv, capture_output=True, text=True)


@needs_tshark
def test_runner_prints_tables_and_verdict(tmp_path):
    proc = _run_bench(tmp_path, 1)  # exit status 1 = findings: still a good run
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("pcapcheck analyze", "tshark -2 -q -z expert", "tshark -q -z expert", "tshark -q -z conv,tcp",
                 "us/packet", "(goal >= 3), peak", "many short connections (bench/gen.py --short): 1,500 packets"):
        assert text in out
    assert "long keep-alive" not in out  # --long is off by default
    tools = next(line for line in out.splitlines() if line.startswith("tools:"))
    assert "; pcapcheck (custom command: " in tools and "pcapcheck pcapcheck" not in tools
    # the scaling table counts the conversations and the pages written (the stand-in writes three)
    scaling = out[out.index("scaling"):].splitlines()
    assert scaling[1].split()[:4] == ["packets", "MiB", "conversations", "pages"]
    assert [row.split()[0] for row in scaling[2:4]] == ["1,000", "2,000"]
    assert all(row.split()[3] == "3" for row in scaling[2:4])
    assert "pages: a capture of at most 2,000 conversations gets a page for each" in out


def test_runner_knows_the_page_limit() -> None:
    """bench/run.py explains the scaling table with pcapcheck's page policy without importing pcapcheck."""
    from pcapcheck.report.html_report import PAGE_LIMIT

    assert _load("run").PAGE_LIMIT == PAGE_LIMIT


@needs_tshark
def test_runner_times_long_connections_when_asked(tmp_path):
    import json

    out = tmp_path / "bench.json"
    proc = _run_bench(tmp_path, 0, "--no-extra-modes", "--rounds", "1", "--scaling", "", "--short", "0",
                      "--long", "3000", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "long keep-alive connections (bench/gen.py --long --concurrency 40): 3,000 packets" in proc.stdout
    assert "many short connections" not in proc.stdout
    data = json.loads(out.read_text())
    assert data["short"] is None
    assert data["long"]["capture"]["conversations"] == 40 and len(data["long"]["tools"]) == 2
    assert next(tmp_path.glob("bench-long-3000p-s1-c40-*.pcap"))
    assert (tmp_path / "pcapcheck-out-2000" / "report.json").is_file()


@needs_tshark
def test_runner_measures_through_resource_too(tmp_path):
    proc = _run_bench(tmp_path, 0, "--rss-via", "resource", "--no-extra-modes", "--rounds", "1", "--scaling", "",
                      "--short", "0")
    assert proc.returncode == 0, proc.stderr
    assert "ratio " in proc.stdout


@needs_tshark
def test_runner_fails_when_the_tool_fails(tmp_path):
    proc = _run_bench(tmp_path, 3)
    assert proc.returncode == 1
    assert "exited with status 3" in proc.stderr


@needs_tshark
def test_runner_times_every_capture_form(tmp_path):
    """--formats: the capture of that size as generated, as pcapng, VLAN-tagged, over IPv6, cut by a snaplen and
    with records missing (bench/formats.py), each timed once with both tools, in a table of its own and in the JSON;
    the forms cached beside the capture under names that end with its generator hash."""
    import json

    out = tmp_path / "bench.json"
    proc = _run_bench(tmp_path, 0, "--formats", "1000", "--no-extra-modes", "--rounds", "1", "--scaling", "",
                      "--short", "0", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.split("capture formats (bench/formats.py): the 1,000-packet capture")[1]
    rows = [line.split()[0] for line in table.splitlines()[2:8]]
    assert rows == ["pcap", "pcapng", "vlan", "ipv6", "snaplen", "loss"]
    digest = next(tmp_path.glob("bench-1000p-s1-c200-*.json")).stem.rsplit("-", 1)[1]
    assert sorted(p.name for p in tmp_path.glob(f"bench-1000p-*-{digest}.pcap*")) == [
        f"bench-1000p-s1-c200-{digest}.pcap", *(f"bench-1000p-s1-c200-{form}-{digest}{suffix}" for form, suffix in
                                                (("ipv6", ".pcap"), ("loss", ".pcap"), ("pcapng", ".pcapng"),
                                                 ("snaplen", ".pcap"), ("vlan", ".pcap")))]
    formats = json.loads(out.read_text())["formats"]
    assert len(formats) == 6 and all(len(v["tools"]) == 2 for v in formats.values())


def test_runner_times_the_pure_python_when_asked() -> None:
    """By default the install (.venv: make install, compiled where it could be); --pure: the development environment's
    pure Python (.venv-dev, make dev), named by its --version; the two ways of naming the command cannot be combined."""
    run = _load("run")
    args = run.parse_args(["--pure"])
    assert args.pcapcheck_cmd == run.PURE_PCAPCHECK and ".venv-dev" in args.pcapcheck_cmd
    default = run.parse_args([]).pcapcheck_cmd
    assert default == run.DEFAULT_PCAPCHECK and "/.venv/bin/pcapcheck" in default
    with pytest.raises(SystemExit):
        run.parse_args(["--pure", "--pcapcheck-cmd", "true"])
    elsewhere = run.PURE_PCAPCHECK.replace(shlex.quote(str(run.ROOT)), "/nonexistent")
    with pytest.raises(run.BenchError, match="not found") as missing:
        run.pcapcheck_argv(elsewhere)
    assert "make " not in str(missing.value)  # (the hint is for the default commands only)
    for cmd, hint in ((run.DEFAULT_PCAPCHECK, "make install"), (run.PURE_PCAPCHECK, "make dev")):
        if Path(shlex.split(cmd)[0]).exists():
            assert run.pcapcheck_argv(cmd)[1:] == ["analyze", "{capture}", "-o", "{out}"]
        else:
            with pytest.raises(run.BenchError, match=hint):
                run.pcapcheck_argv(cmd)
