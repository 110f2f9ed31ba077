"""Cross-check pcapcheck's TCP stream numbering and analysis flags against tshark.

A development and test tool (docs/crosscheck.md): it runs ``tshark`` (the reference: 4.0.17, the
one Debian 12 installs) and pcapcheck on the same capture and compares, frame by frame, the
``tcp.stream`` number and every ``tcp.analysis.*`` flag of REFERENCE.md 1.3.

    python -m pcapcheck.crosscheck CAPTURE_OR_DIR...      # agreement table
    python -m pcapcheck.crosscheck --details CAPTURE      # plus the frames that differ

It calls tshark with :mod:`subprocess` and imports neither click nor jinja2: it is not part of
the analysis pipeline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pcapcheck.capture import CaptureReader
from pcapcheck.decode import ICMP_EVENT, Decoder
from pcapcheck.tcp.tracker import TSHARK_FIELDS, TcpTracker, tshark_fields

# Flag fields in a fixed order: the order of the flag bits.
FLAG_FIELDS: tuple[str, ...] = tuple(TSHARK_FIELDS[bit] for bit in sorted(TSHARK_FIELDS))
_BASE_FIELDS = ("frame.number", "tcp.stream", "frame.protocols")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")

_SYN, _ACK = 0x02, 0x10


class TsharkError(RuntimeError):
    """tshark is missing or produced nothing usable."""


# -- tshark side --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TsharkFrame:
    stream: int
    flags: frozenset[str]
    protocols: str  # frame.protocols, e.g. "eth:ethertype:ip:tcp:http"


def tshark_command(path: str) -> list[str]:
    cmd = ["tshark", "-n", "-r", path, "-T", "fields", "-E", "occurrence=f", "-E", "separator=/t"]
    for name in _BASE_FIELDS + FLAG_FIELDS:
        cmd += ["-e", name]
    return cmd


def run_tshark(path: str, timeout: float = 300.0) -> tuple[dict[int, TsharkFrame], str]:
    """Every frame tshark gives a ``tcp.stream``; also tshark's stderr (minus its root warning).

    tshark runs with an empty configuration directory, so a user's preferences cannot change
    the reference (REFERENCE.md 1.1 lists the defaults that matter).
    """
    if shutil.which("tshark") is None:
        raise TsharkError("tshark not found on PATH (Debian: apt-get install tshark)")
    with tempfile.TemporaryDirectory(prefix="pcapcheck-tshark-") as confdir:
        env = dict(os.environ, WIRESHARK_CONFIG_DIR=confdir)
        proc = subprocess.run(tshark_command(path), capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)
    frames: dict[int, TsharkFrame] = {}
    nflags = len(FLAG_FIELDS)
    for line in proc.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) < 3 or not cols[1]:
            continue
        cols += [""] * (3 + nflags - len(cols))
        flags = frozenset(FLAG_FIELDS[i] for i in range(nflags) if cols[3 + i])
        frames[int(cols[0])] = TsharkFrame(int(cols[1]), flags, cols[2])
    err = "\n".join(ln for ln in proc.stderr.splitlines() if "Running as user" not in ln and ln.strip())
    if proc.returncode and not frames:
        raise TsharkError(f"tshark failed on {path} (exit {proc.returncode}): {err}")
    return frames, err


def tshark_annotations(path: str) -> dict[int, tuple[int, set[str]]]:
    """frame -> (tcp.stream, set of ``tcp.analysis.*`` field names tshark shows on it)."""
    frames, _err = run_tshark(path)
    return {n: (f.stream, set(f.flags)) for n, f in frames.items()}


# -- pcapcheck side -------------------------------------------------------------------------------
def wire_seglen(frame, pkt) -> int:
    """The segment length Wireshark uses: the IP length, but never more than the frame had on the wire.

    A frame shorter on the wire than its IP header claims (``caplen == wirelen``, "IPv4 total
    length exceeds packet length") carries only what is there; a frame cut by the snaplen
    (``caplen < wirelen``) had the rest on the wire. decode.py reports the IP length in both cases.
    """
    return min(pkt.seglen, len(pkt.payload) + frame.wirelen - frame.caplen)


def own_annotations(path: str) -> Iterator[tuple[int, int, int]]:
    """(frame, stream, flags) from a minimal conversation table driving :class:`TcpTracker`.

    Stream numbering is tshark 4.0.17's (docs/crosscheck.md, "Stream numbering"): one stream per
    direction-agnostic address/port pair, numbered in order of first appearance; a SYN without
    ACK opens a new stream when its sequence number differs from the ``base_seq`` its sender's
    direction already has. Nothing else does: not a FIN or RST, not a SYN-ACK, not a repeated ISN.
    """
    reader = CaptureReader(path)
    decoder = Decoder()
    convs: dict[tuple, list] = {}  # key -> [stream, first sender (addr, port), tracker]
    count = 0
    try:
        for frame in reader:
            pkt = decoder.decode(frame)
            if pkt is None:
                continue
            if pkt.flags & ICMP_EVENT:  # rule 6: a numbered quote has its 4-tuple's stream, opening one if none
                if not pkt.numbered:  # type: ignore[union-attr]
                    continue
                a, b = (pkt.key[0], pkt.key[1]), (pkt.key[2], pkt.key[3])  # type: ignore[union-attr]
                key = (a, b) if a <= b else (b, a)
                conv = convs.get(key)
                if conv is None:
                    conv = convs[key] = [count, a, TcpTracker()]
                    count += 1
                yield frame.number, conv[0], 0
                continue
            if len(pkt.payload) < pkt.seglen:
                pkt = pkt._replace(seglen=wire_seglen(frame, pkt))
            a = (pkt.src, pkt.sport)
            b = (pkt.dst, pkt.dport)
            key = (a, b) if a <= b else (b, a)
            conv = convs.get(key)
            if conv is not None:
                d = 0 if a == conv[1] else 1
                if pkt.flags & (_SYN | _ACK) == _SYN:
                    base = conv[2].base_seq(d)
                    if base is not None and base != pkt.seq:
                        conv = None  # port reuse: a new ISN
            if conv is None:
                conv = convs[key] = [count, a, TcpTracker()]
                count += 1
                d = 0
            yield frame.number, conv[0], conv[2].analyze(d, pkt)
    finally:
        reader.close()


def pcapcheck_annotations(path: str, *, use_pipeline: bool = True) -> dict[int, tuple[int, int]]:
    """frame -> (conversation id, flag mask), from the pipeline when it exists, else :func:`own_annotations`."""
    rows: Iterable[tuple] | None = None
    if use_pipeline:
        try:
            from pcapcheck.pipeline import packet_annotations  # type: ignore[import-not-found]
        except ImportError:
            pass
        else:
            rows = packet_annotations(path)
    if rows is None:
        rows = own_annotations(path)
    out: dict[int, tuple[int, int]] = {}
    for frame, conv, mask in rows:
        out[getattr(frame, "number", frame)] = (conv, mask)
    return out


# -- comparison ---------------------------------------------------------------------------------
@dataclass(slots=True)
class FlagAgreement:
    field: str
    both: int = 0
    only_tshark: list[int] = field(default_factory=list)
    only_pcapcheck: list[int] = field(default_factory=list)

    @property
    def tshark(self) -> int:
        return self.both + len(self.only_tshark)

    @property
    def pcapcheck(self) -> int:
        return self.both + len(self.only_pcapcheck)

    @property
    def agreement(self) -> float:
        """Frames flagged by both / frames flagged by either (1.0 when neither flags any)."""
        union = self.both + len(self.only_tshark) + len(self.only_pcapcheck)
        return self.both / union if union else 1.0


@dataclass(slots=True)
class Report:
    path: str
    tshark_conversations: int = 0
    pcapcheck_conversations: int = 0
    frames: int = 0  # frames both tools put in a TCP stream
    # frames tshark puts in a stream but pcapcheck does not decode: frame -> tshark's frame.protocols
    missing: dict[int, str] = field(default_factory=dict)
    extra: list[int] = field(default_factory=list)  # frames only pcapcheck put in a stream
    stream_mismatches: list[tuple[int, int, int]] = field(default_factory=list)  # (frame, tshark, pcapcheck)
    # frames that break the one-to-one map between tshark streams and pcapcheck conversations:
    # empty means "same conversations", even when the numbering differs (an ICMP-created stream)
    partition_mismatches: list[int] = field(default_factory=list)
    flags: dict[str, FlagAgreement] = field(default_factory=dict)
    tshark_stderr: str = ""
    error: str = ""

    @property
    def streams_agree(self) -> bool:
        return not self.stream_mismatches and self.tshark_conversations == self.pcapcheck_conversations

    @property
    def flag_differences(self) -> int:
        return sum(len(a.only_tshark) + len(a.only_pcapcheck) for a in self.flags.values())


def compare(path: str, *, use_pipeline: bool = True,
            tshark: tuple[dict[int, TsharkFrame], str] | None = None) -> Report:
    """Run both tools on ``path`` (or reuse ``tshark``, a :func:`run_tshark` result) and compare
    stream numbers and flags frame by frame."""
    report = Report(path, flags={name: FlagAgreement(name) for name in FLAG_FIELDS})
    try:
        ts, report.tshark_stderr = run_tshark(path) if tshark is None else tshark
    except (TsharkError, subprocess.TimeoutExpired) as e:
        report.error = str(e)
        return report
    try:
        pc = pcapcheck_annotations(path, use_pipeline=use_pipeline)
    except Exception as e:  # noqa: BLE001 - a tool: report the failure in the table, keep going
        report.error = f"pcapcheck failed: {type(e).__name__}: {e}"
        return report
    report.tshark_conversations = len({f.stream for f in ts.values()})
    report.pcapcheck_conversations = len({conv for conv, _mask in pc.values()})
    to_pc: dict[int, int] = {}  # tshark stream -> pcapcheck conversation, for the partition check
    to_ts: dict[int, int] = {}
    for number, tf in ts.items():
        mine = pc.get(number)
        if mine is None:
            report.missing[number] = tf.protocols
            continue
        report.frames += 1
        conv, mask = mine
        if conv != tf.stream:
            report.stream_mismatches.append((number, tf.stream, conv))
        if to_pc.setdefault(tf.stream, conv) != conv or to_ts.setdefault(conv, tf.stream) != tf.stream:
            report.partition_mismatches.append(number)
        mine_fields = tshark_fields(mask)
        for name in tf.flags | mine_fields:
            agreement = report.flags[name]
            if name not in mine_fields:
                agreement.only_tshark.append(number)
            elif name not in tf.flags:
                agreement.only_pcapcheck.append(number)
            else:
                agreement.both += 1
    report.extra = sorted(set(pc) - set(ts))
    return report


def compare_many(paths: Iterable[str], *, jobs: int | None = None, use_pipeline: bool = True) -> list[Report]:
    """:func:`compare` over many captures, tshark runs in parallel (each costs ~0.3 s of startup)."""
    paths = list(paths)
    return [compare(p, use_pipeline=use_pipeline, tshark=t) for p, t in zip(paths, tshark_many(paths, jobs=jobs))]


def tshark_many(paths: Iterable[str], *, jobs: int | None = None) -> list[tuple[dict[int, TsharkFrame], str] | None]:
    """:func:`run_tshark` over many captures in parallel; None where tshark failed."""
    def one(p: str) -> tuple[dict[int, TsharkFrame], str] | None:
        try:
            return run_tshark(p)
        except (TsharkError, subprocess.TimeoutExpired):
            return None
    with ThreadPoolExecutor(max_workers=jobs or min(8, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(one, list(paths)))


def find_captures(args: Iterable[str]) -> list[str]:
    """Files given, plus the captures under the directories given (sorted)."""
    out: list[str] = []
    for arg in args:
        if os.path.isdir(arg):
            for root, _dirs, files in os.walk(arg):
                out += [os.path.join(root, f) for f in files if f.endswith(CAPTURE_SUFFIXES)]
        else:
            out.append(arg)
    return sorted(out)


# -- output -------------------------------------------------------------------------------------
def _totals(reports: list[Report]) -> dict[str, FlagAgreement]:
    totals = {name: FlagAgreement(name) for name in FLAG_FIELDS}
    for r in reports:
        for name, a in r.flags.items():
            t = totals[name]
            t.both += a.both
            t.only_tshark += a.only_tshark
            t.only_pcapcheck += a.only_pcapcheck
    return totals


def _rows(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "| " + " | ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths)) + " |"
    lines = [fmt.format(*header), "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2))
                                               for i, w in enumerate(widths)) + "|"]
    lines += [fmt.format(*row) for row in rows]
    return lines


def format_table(reports: list[Report], *, common_prefix: str | None = None, details: bool = False) -> str:
    """Markdown tables: streams per capture (those that differ), then per-flag agreement totals."""
    if common_prefix is None:
        common_prefix = os.path.commonpath([r.path for r in reports]) if len(reports) > 1 else ""
    strip = (lambda p: os.path.relpath(p, common_prefix)) if common_prefix else (lambda p: p)
    lines: list[str] = []
    frames = sum(r.frames for r in reports)
    ts_conv = sum(r.tshark_conversations for r in reports)
    pc_conv = sum(r.pcapcheck_conversations for r in reports)
    mismatched = sum(len(r.stream_mismatches) for r in reports)
    missing = sum(len(r.missing) for r in reports)
    lines.append(f"{len(reports)} captures, {frames} TCP frames compared, conversations tshark {ts_conv} / "
                 f"pcapcheck {pc_conv}, frames in a different stream: {mismatched}, TCP frames pcapcheck "
                 f"did not decode: {missing}")
    lines.append("")
    odd = [r for r in reports if r.error or not r.streams_agree or r.missing or r.extra or r.flag_differences]
    if odd:
        rows = []
        for r in odd:
            if r.error:
                rows.append([strip(r.path), "error", "", "", "", "", r.error[:80]])
                continue
            diffs = ", ".join(f"{name.rsplit('.', 1)[1]} {len(a.only_tshark)}/{len(a.only_pcapcheck)}"
                              for name, a in r.flags.items() if a.only_tshark or a.only_pcapcheck)
            rows.append([strip(r.path), str(r.frames), f"{r.tshark_conversations}/{r.pcapcheck_conversations}",
                         f"{len(r.stream_mismatches)}/{len(r.partition_mismatches)}", str(len(r.missing)),
                         str(len(r.extra)), diffs])
        lines += _rows(["capture", "frames", "conv ts/pc", "stream diff (id/partition)", "not decoded", "extra",
                        "flag differences (only tshark/only pcapcheck)"], rows)
        lines.append("")
    rows = []
    totals = _totals(reports)
    for name, a in totals.items():
        rows.append([name, str(a.tshark), str(a.pcapcheck), str(a.both), str(len(a.only_tshark)),
                     str(len(a.only_pcapcheck)), f"{100 * a.agreement:.1f}%"])
    lines += _rows(["flag", "tshark", "pcapcheck", "both", "only tshark", "only pcapcheck", "agreement"], rows)
    if details:
        for r in reports:
            if not (r.stream_mismatches or r.missing or r.extra or r.flag_differences):
                continue
            lines += ["", f"## {strip(r.path)}"]
            if r.stream_mismatches:
                lines.append("stream (frame tshark pcapcheck): "
                             + " ".join(f"{f}:{t}/{p}" for f, t, p in r.stream_mismatches[:50]))
            if r.missing:
                lines.append("not decoded: " + " ".join(f"{f}({p})" for f, p in list(r.missing.items())[:20]))
            if r.extra:
                lines.append("only pcapcheck: " + " ".join(map(str, r.extra[:50])))
            for name, a in r.flags.items():
                if a.only_tshark:
                    lines.append(f"{name} only tshark: {a.only_tshark[:50]}")
                if a.only_pcapcheck:
                    lines.append(f"{name} only pcapcheck: {a.only_pcapcheck[:50]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pcapcheck.crosscheck",
                                 description="Compare pcapcheck's tcp.stream numbers and tcp.analysis flags with tshark's.",
                                 epilog="example: python -m pcapcheck.crosscheck ../shared/corpus")
    ap.add_argument("captures", nargs="+", help="capture files or directories (searched recursively)")
    ap.add_argument("--details", action="store_true", help="list the frames that differ")
    ap.add_argument("--own", action="store_true",
                    help="use crosscheck's own stream table and TcpTracker, not pcapcheck.pipeline")
    ap.add_argument("-j", "--jobs", type=int, default=None, help="parallel tshark runs")
    args = ap.parse_args(argv)
    paths = find_captures(args.captures)
    if not paths:
        print("no capture files found", file=sys.stderr)
        return 2
    if shutil.which("tshark") is None:
        print("tshark not found on PATH: install it (Debian: apt-get install tshark)", file=sys.stderr)
        return 2
    reports = compare_many(paths, jobs=args.jobs, use_pipeline=not args.own)
    print(format_table(reports, details=args.details))
    bad = any(r.error or not r.streams_agree for r in reports)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
