#!/usr/bin/env python3
"""Benchmark pcapcheck against tshark on the same generated capture (what `make bench` runs).

    python bench/run.py                   # 1M packets, 3 rounds, scaling 100k/300k/1M, 300k short
                                          # connections: several minutes
    python bench/run.py --long 300k       # and 300k packets of long keep-alive connections
    python bench/run.py --quick           # 100k packets, 1 round, no scaling table
    python bench/run.py --pcapcheck-cmd "python3 my_standin.py analyze {capture} -o {out}"

Captures come from bench/gen.py (deterministic; cached in bench/.cache/ by packets, seed, concurrency and
a hash of gen.py, so a changed generator regenerates them). Each round runs pcapcheck and
`tshark -2 -q -z expert` alternately (the order flips every round) on the same file, each under
`/usr/bin/time -v`, recording wall time and peak RSS; the extra tshark modes (`-q -z expert`,
`-q -z conv,tcp`) run once, or every round with --all-modes. The file is read once beforehand so every
run starts with it in the page cache. tshark runs with an empty personal configuration directory, so
only its default preferences count. tshark and GNU time are installed from Debian packages when missing
(needs root or password-less sudo).

Peak RSS is the largest of: the peak of any single process (`time -v`, from the kernel's rusage) and the
sum over the process tree sampled every 0.2 s (so a tool that forks workers cannot look small).

Exit status: 0 when every run worked, whether or not the goals were met; 1 when a tool failed or could
not be set up; 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GEN = HERE / "gen.py"
DEFAULT_CACHE = HERE / ".cache"
# the install (make install: compiled where it could be, else pure Python; its --version says which)
DEFAULT_PCAPCHECK = f"{shlex.quote(str(ROOT / '.venv' / 'bin' / 'pcapcheck'))} analyze {{capture}} -o {{out}}"
# --pure: the development environment's, the source as pure Python (make dev)
PURE_PCAPCHECK = f"{shlex.quote(str(ROOT / '.venv-dev' / 'bin' / 'pcapcheck'))} analyze {{capture}} -o {{out}}"
MAIN_TSHARK = "-2 -q -z expert"
EXTRA_TSHARK = ("-q -z expert", "-q -z conv,tcp")
GOAL_RATIO = 3.0
GOAL_PEAK_MIB = 150
NOISY_CPUS = 0.25  # other processes' average CPU use during a run above which the numbers are suspect
PCAPCHECK_OK = (0, 1)  # 1 = findings at or above --fail-on: the run itself worked
MIB = 1024 * 1024
LONG_CONCURRENCY = 40  # --long: connections open at once (bench/gen.py --long --concurrency)
PAGE_LIMIT = 2000  # pcapcheck.report.html_report.PAGE_LIMIT (not imported: the runner does not need pcapcheck)


class BenchError(Exception):
    """A failure that makes the numbers meaningless: reported in one line, exit status 1."""


@dataclass
class Sample:
    wall: float  # seconds
    rss: int  # bytes, peak
    pss: int  # bytes, peak of the proportional set size summed over the process tree (0: not measured)
    cpu: float  # user + system seconds of the tool
    others: float  # CPUs kept busy by everything else meanwhile (0 on a quiet machine)
    pages: int | None = None  # conversation pages (conv-*.html) the run wrote; None: a tool without {out}


@dataclass
class Tool:
    label: str
    argv: list[str]  # may contain {capture} and {out}
    ok_codes: tuple[int, ...] = (0,)
    samples: dict[int, list[Sample]] = field(default_factory=dict)  # packets -> samples

    def median(self, packets: int) -> float:
        return statistics.median(s.wall for s in self.samples[packets])

    def best(self, packets: int) -> float:
        return min(s.wall for s in self.samples[packets])

    def cpu(self, packets: int) -> float:
        return statistics.median(s.cpu for s in self.samples[packets])

    def peak(self, packets: int) -> int:
        return max(s.rss for s in self.samples[packets])

    def peak_pss(self, packets: int) -> int:
        return max(s.pss for s in self.samples[packets])


@dataclass
class Workload:
    """A second kind of traffic, timed once with each tool after the rest: "short" connections or "long" ones."""

    kind: str
    packets: int
    pcapcheck: Tool | None
    tshark: Tool
    capture: tuple[Path, dict]  # (path, the generator's stats)


# -- setup ----------------------------------------------------------------------------------------------


def _apt_install(package: str) -> None:
    """Install a Debian package non-interactively, as root or through password-less sudo."""
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo") or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode:
            raise BenchError(f"{package} is missing and this user cannot install it: run "
                             f"'sudo apt-get install -y {package}' once, then try again")
        prefix = ["sudo", "-n"]
    if not shutil.which("apt-get"):
        raise BenchError(f"{package} is missing and there is no apt-get: install {package} by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"installing {package} (apt-get) ...", file=sys.stderr)
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", package]):
        proc = subprocess.run(prefix + argv, env=env, capture_output=True, text=True)
        if proc.returncode:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise BenchError(f"'{' '.join(argv)}' failed: {' / '.join(tail)}")


def ensure_tshark() -> str:
    path = shutil.which("tshark")
    if not path:
        _apt_install("tshark")
        path = shutil.which("tshark")
        if not path:
            raise BenchError("tshark still missing after installing the tshark package")
    return path


def ensure_time(mode: str) -> str | None:
    """Path of GNU time, or None to measure through a Python wrapper and RUSAGE_CHILDREN."""
    if mode == "resource":
        return None
    path = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    if not path:
        try:
            _apt_install("time")
            path = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
        except BenchError as e:
            if mode == "time":
                raise
            print(f"note: {e}; measuring peak RSS with resource.getrusage instead", file=sys.stderr)
    if not path and mode == "time":
        raise BenchError("/usr/bin/time is missing")
    return path


def gen_hash() -> str:
    return hashlib.sha256(GEN.read_bytes()).hexdigest()[:10]


def ensure_capture(directory: Path, packets: int, seed: int, concurrency: int,
                   kind: str = "") -> tuple[Path, dict]:
    """The capture for these parameters (``kind`` "short" or "long": bench/gen.py --short or --long), generated
    unless present; with the generator's stats."""
    directory.mkdir(parents=True, exist_ok=True)
    digest = gen_hash()
    name = f"bench-{kind + '-' if kind else ''}{packets}p-s{seed}-c{concurrency}-{digest}"
    pcap, stats_path = directory / f"{name}.pcap", directory / f"{name}.json"
    if pcap.exists() and stats_path.exists():
        return pcap, json.loads(stats_path.read_text())
    for old in directory.glob("bench-*.pcap*"):  # captures of an older generator are never used again
        if old.suffix in (".pcap", ".pcapng") and not old.stem.endswith(digest):  # (the forms' too, ensure_form)
            old.unlink()
            old.with_suffix(".json").unlink(missing_ok=True)
    print(f"generating {packets:,} packets (seed {seed}) -> {pcap}", file=sys.stderr)
    tmp, tmp_stats = (directory / f"{name}.{os.getpid()}.pcap.part", directory / f"{name}.{os.getpid()}.json.part")
    argv = [sys.executable, str(GEN), str(tmp), "--packets", str(packets), "--seed", str(seed),
            "--concurrency", str(concurrency), "--stats", str(tmp_stats), "--quiet", *([f"--{kind}"] if kind else [])]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode:
            raise BenchError(f"bench/gen.py failed: {' / '.join(proc.stderr.strip().splitlines()[-2:])}")
        tmp.replace(pcap)
        tmp_stats.replace(stats_path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_stats.unlink(missing_ok=True)
    return pcap, json.loads(stats_path.read_text())


def _load_formats():  # bench/formats.py (beside this file, not a package)
    spec = importlib.util.spec_from_file_location("bench_formats", HERE / "formats.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


FORMATS = _load_formats()
FORM_NAMES = {"pcapng": "what dumpcap writes", "vlan": "one 802.1Q tag", "ipv6": "IPv6 headers",
              "snaplen": "cut at 200 bytes", "loss": "1 record in 20 missing"}


def ensure_form(base: Path, form: str) -> Path:
    """``base`` (a cached capture) in ``form`` (bench/formats.py), beside it under a name that ends with the same
    generator hash (so ensure_capture deletes it with its capture); written unless present."""
    prefix, digest = base.stem.rsplit("-", 1)
    path = base.with_name(f"{prefix}-{form}-{digest}{FORMATS.SUFFIX[form]}")
    if not path.exists():
        print(f"writing {path}", file=sys.stderr)
        part = path.with_name(path.name + f".{os.getpid()}.part")
        try:
            FORMATS.rewrite(base, part, form)
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
    return path


def warm(path: Path) -> None:
    """Read the file once so that the first timed run does not pay for the disk."""
    with open(path, "rb", buffering=0) as f:
        while f.read(8 * MIB):
            pass


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kib / MIB:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs{mem}, Linux {platform.release()}, Python {platform.python_version()}"


def version_of(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0].rstrip(".") if proc.returncode == 0 and lines else "?"


# -- measuring ------------------------------------------------------------------------------------------

# Fallback without GNU time: a fresh intermediate process runs the command, so RUSAGE_CHILDREN covers only
# that command's process tree (ru_maxrss of children is the maximum over all children ever waited for).
_WRAPPER = """import json, resource, subprocess, sys
rc = subprocess.call(json.loads(sys.argv[1]))
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[2], "w") as f:
    f.write("User time (seconds): %.2f\\nSystem time (seconds): %.2f\\nMaximum resident set size (kbytes): %d\\n"
            % (ru.ru_utime, ru.ru_stime, ru.ru_maxrss))
sys.exit(rc)
"""


def cpu_ticks() -> int:
    """Busy clock ticks of all CPUs so far (/proc/stat: all but idle and iowait); 0 where unknown."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0
    return sum(values) - values[3] - values[4]


class TreeSampler(threading.Thread):
    """Sums the RSS of every process below ``pid`` every ``interval`` seconds; keeps the largest sum. Also the
    largest sum of their proportional set sizes (PSS, /proc/PID/smaps_rollup): a page shared by n processes
    counts 1/n in each, so a forked worker's pages shared with its parent count once, as the kernel's memory
    accounting (a cgroup's limit) counts them; the RSS sum counts them once per process."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak, self.peak_pss = pid, interval, 0, 0
        self.stopped = threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _children(self, pid: int) -> list[int]:
        out: list[int] = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            pass
        return out

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            total, pss, todo = 0, 0, self._children(self.pid)  # the measuring wrapper itself does not count
            while todo:
                pid = todo.pop()
                try:
                    with open(f"/proc/{pid}/statm") as f:
                        total += int(f.read().split()[1]) * self.page
                except (OSError, ValueError, IndexError):
                    continue
                pss += _pss(pid)
                todo.extend(self._children(pid))
            self.peak = max(self.peak, total)
            self.peak_pss = max(self.peak_pss, pss)


def _pss(pid: int) -> int:
    """The process's proportional set size in bytes, 0 where the kernel does not tell (no smaps_rollup)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def measure(argv: list[str], time_bin: str | None, work: Path, ok_codes: tuple[int, ...], label: str) -> Sample:
    report = work / "rusage.txt"
    report.unlink(missing_ok=True)
    if time_bin:
        full = [time_bin, "-v", "-o", str(report), *argv]
    else:
        full = [sys.executable, "-c", _WRAPPER, json.dumps(argv), str(report)]
    out, err = work / "stdout.txt", work / "stderr.txt"
    busy0 = cpu_ticks()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(full, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
        except OSError as e:
            raise BenchError(f"{label}: cannot start {argv[0]}: {e}") from None
        sampler = TreeSampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        wall = time.perf_counter() - start
        busy1 = cpu_ticks()
        sampler.stopped.set()
        sampler.join()
    if rc not in ok_codes:
        tail = err.read_text(errors="replace").strip().splitlines()
        tail = [t for t in tail if not t.startswith(("Running as user", "\t", "Command exited"))][-3:]
        raise BenchError(f"{label} exited with status {rc}: {' / '.join(tail) or '(no stderr)'}\n"
                         f"  command: {shlex.join(argv)}")
    text = report.read_text() if report.exists() else ""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if not match:
        raise BenchError(f"{label}: no peak RSS reported by {'GNU time' if time_bin else 'the wrapper'}")
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    others = max(0.0, (busy1 - busy0) / os.sysconf("SC_CLK_TCK") - cpu) / wall if busy0 else 0.0
    return Sample(wall, max(int(match.group(1)) * 1024, sampler.peak), sampler.peak_pss, cpu, others)


def expand(argv: list[str], capture: Path, out: Path) -> list[str]:
    return [a.replace("{capture}", str(capture)).replace("{out}", str(out)) for a in argv]


def run_tool(tool: Tool, capture: Path, packets: int, time_bin: str | None, work: Path,
             keep_out: Path | None = None) -> Sample:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    sample = measure(expand(tool.argv, capture, out), time_bin, work, tool.ok_codes, tool.label)
    if "{out}" in " ".join(tool.argv):
        if not (out / "report.json").is_file():
            raise BenchError(f"{tool.label} exited normally but wrote no {out / 'report.json'}")
        sample.pages = sum(1 for _ in out.glob("conv-*.html"))
        if keep_out:
            shutil.rmtree(keep_out, ignore_errors=True)
            shutil.copytree(out, keep_out)
        shutil.rmtree(out, ignore_errors=True)
    tool.samples.setdefault(packets, []).append(sample)
    print(f"  {tool.label:<34} {packets:>10,} packets {sample.wall:8.2f} s {sample.rss / MIB:8.1f} MiB"
          f" (PSS {sample.pss / MIB:.1f})"
          f"  (cpu {sample.cpu:.2f} s, other load {sample.others:.2f} CPUs)", file=sys.stderr)
    return sample


# -- the benchmark ----------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.replace("_", "").split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1_000_000 if part.endswith("m") else 1_000 if part.endswith("k") else 1
        sizes.append(int(float(part.rstrip("mk")) * mult))
    if any(s < 1 for s in sizes):
        raise ValueError("sizes must be positive")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter,
                                 epilog="example: python bench/run.py --quick")
    ap.add_argument("--packets", type=str, default="1000000", help="packets in the main capture (default 1000000; "
                    "100k and 1M also work)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the main comparison (default 3)")
    ap.add_argument("--scaling", default="100000,300000,1000000",
                    help="capture sizes for the scaling table, comma-separated; '' for none\n"
                         "(default 100000,300000,1000000)")
    ap.add_argument("--scaling-rounds", type=int, default=1,
                    help="pcapcheck runs per scaling size not already measured (default 1)")
    ap.add_argument("--scaling-tshark", action="store_true", help="also time tshark at every scaling size")
    ap.add_argument("--short", default="300000",
                    help="packets of a second capture of many short connections (bench/gen.py --short), on which\n"
                         "pcapcheck and tshark run once each after the rest; 0 for none (default 300000)")
    ap.add_argument("--long", default="0",
                    help="packets of a capture of a few dozen long keep-alive connections (bench/gen.py --long,\n"
                         f"concurrency {LONG_CONCURRENCY}: a proxy and its backends), pcapcheck and tshark once each; 0 for none\n"
                         "(default 0; 300k takes about a minute)")
    ap.add_argument("--formats", default="0",
                    help="packets of a capture timed again as pcapng, VLAN-tagged, over IPv6, cut by a snaplen and\n"
                         "with records missing (bench/formats.py), pcapcheck and tshark once each per form; 0 for none\n"
                         "(default 0; 300k takes about 3 minutes)")
    ap.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    ap.add_argument("--concurrency", type=int, default=200, help="generator concurrency (default 200)")
    ap.add_argument("--keep", metavar="DIR", type=Path,
                    help="put the captures in DIR and keep them, with the last pcapcheck output of each size\n"
                         "(default: captures cached in bench/.cache/, outputs deleted)")
    ap.add_argument("--no-cache", action="store_true", help="generate into a temporary directory, delete afterwards")
    ap.add_argument("--pcapcheck-cmd", default=DEFAULT_PCAPCHECK,
                    help="pcapcheck command; {capture} and {out} are replaced, and appended as\n"
                         "'{capture} -o {out}' when absent (default: .venv/bin/pcapcheck analyze ...)")
    ap.add_argument("--pure", action="store_true",
                    help="time the pure-Python source (.venv-dev, make dev) instead of the install (.venv)")
    ap.add_argument("--tshark-args", default=MAIN_TSHARK, help=f"the tshark run compared (default '{MAIN_TSHARK}')")
    ap.add_argument("--all-modes", action="store_true", help="run the extra tshark modes every round, not once")
    ap.add_argument("--no-extra-modes", action="store_true", help="skip the extra tshark modes")
    ap.add_argument("--tshark-only", action="store_true", help="measure tshark only (baselines, no pcapcheck)")
    ap.add_argument("--quick", action="store_true", help="100k packets, 1 round, no scaling table (overrides those)")
    ap.add_argument("--rss-via", choices=("auto", "time", "resource"), default="auto",
                    help="peak RSS from GNU time (installed if missing) or resource.getrusage (default auto)")
    ap.add_argument("--json", metavar="FILE", type=Path, help="also write every sample and the summary as JSON")
    args = ap.parse_args(argv)
    try:
        args.packets = parse_sizes(args.packets)[0]
        args.scaling = sorted(set(parse_sizes(args.scaling)))
        args.short = 0 if args.short.strip() == "0" else parse_sizes(args.short)[0]
        args.long = 0 if args.long.strip() == "0" else parse_sizes(args.long)[0]
        args.formats = 0 if args.formats.strip() == "0" else parse_sizes(args.formats)[0]
    except (ValueError, IndexError):
        ap.error("--packets, --scaling, --short, --long and --formats take positive numbers such as 100000, 300k or 1m")
    if args.pure:
        if args.pcapcheck_cmd != DEFAULT_PCAPCHECK:
            ap.error("--pure and --pcapcheck-cmd both name the command timed: give one")
        args.pcapcheck_cmd = PURE_PCAPCHECK
    if args.quick:
        args.packets, args.rounds, args.scaling, args.short, args.long, args.formats = 100_000, 1, [], 0, 0, 0
    if args.rounds < 1 or args.scaling_rounds < 1:
        ap.error("--rounds and --scaling-rounds must be at least 1")
    return args


def pcapcheck_argv(cmd: str) -> list[str]:
    argv = shlex.split(cmd)
    if not argv:
        raise BenchError("--pcapcheck-cmd is empty")
    if not any("{capture}" in a for a in argv):
        argv += ["{capture}", "-o", "{out}"]
    exe = argv[0]
    if not (shutil.which(exe) or os.access(exe, os.X_OK)):
        hint = {DEFAULT_PCAPCHECK: " (run 'make install' first)",
                PURE_PCAPCHECK: " (run 'make dev' first)"}.get(cmd, "")
        raise BenchError(f"pcapcheck command not found: {exe}{hint}; or pass --pcapcheck-cmd")
    return argv


def _fmt_ratio(tshark: float, pcapcheck: float | None) -> str:
    return f"{tshark / pcapcheck:.1f}x" if pcapcheck else "-"


def report(args: argparse.Namespace, pc: Tool | None, main: Tool, extras: list[Tool], captures: dict,
           info: dict, workloads: list[Workload] | None = None,
           forms: list[tuple[str, Path, Tool | None, Tool]] | None = None) -> list[str]:
    n = args.packets
    size = captures[n][1]["bytes"]
    pc_text = info["pcapcheck"]  # its --version line ("pcapcheck 0.1.0 (pure Python)"), or what stands for it
    if not pc_text.startswith("pcapcheck"):
        pc_text = f"pcapcheck {pc_text}"
    lines = [
        f"capture: {n:,} packets, {size / MIB:,.0f} MiB ({size / 1e6:,.0f} MB), "
        f"{captures[n][1]['conversations']:,} conversations, seed {args.seed}: {captures[n][0]}",
        f"machine: {info['machine']}",
        f"tools:   {info['tshark']}; {pc_text}",
        "",
        f"{'tool':<34} {'median s':>9} {'min s':>8} {'cpu s':>7} {'peak MiB':>9} {'PSS MiB':>8} {'runs':>5} "
        f"{'tshark/pcapcheck':>17}",
    ]
    pc_med = pc.median(n) if pc else None
    for tool in ([pc] if pc else []) + [main] + extras:
        ratio = "-" if tool is pc else _fmt_ratio(tool.median(n), pc_med)
        lines.append(f"{tool.label:<34} {tool.median(n):>9.2f} {tool.best(n):>8.2f} {tool.cpu(n):>7.2f} "
                     f"{tool.peak(n) / MIB:>9.1f} {tool.peak_pss(n) / MIB:>8.1f} {len(tool.samples[n]):>5} {ratio:>17}")
    if args.scaling:
        lines += ["", "scaling" + (" (pcapcheck)" if pc else " (tshark)")]
        head = (f"{'packets':>10} {'MiB':>6} {'conversations':>13} {'pages':>6} {'pcapcheck s':>12} {'us/packet':>10}"
                f" {'peak MiB':>9}")
        with_tshark = args.scaling_tshark or not pc
        if with_tshark:
            head += f" {'tshark s':>9} {'us/packet':>10} {'tshark MiB':>11}"
        lines.append(head)
        per_packet, peaks = [], []
        for k in args.scaling:
            pages = pc.samples[k][-1].pages if pc else None
            row = (f"{k:>10,} {captures[k][1]['bytes'] / MIB:>6.0f} {captures[k][1]['conversations']:>13,} "
                   f"{'-' if pages is None else f'{pages:,}':>6}")
            if pc:
                per_packet.append(pc.median(k) / k * 1e6)
                peaks.append(pc.peak(k) / MIB)
                row += f" {pc.median(k):>12.2f} {per_packet[-1]:>10.2f} {peaks[-1]:>9.1f}"
            else:
                row += f" {'-':>12} {'-':>10} {'-':>9}"
            if with_tshark:
                row += f" {main.median(k):>9.2f} {main.median(k) / k * 1e6:>10.2f} {main.peak(k) / MIB:>11.1f}"
            lines.append(row)
        if pc and len(args.scaling) > 1:
            spread = (max(per_packet) - min(per_packet)) / min(per_packet) * 100
            lines.append(f"time per packet {min(per_packet):.2f}-{max(per_packet):.2f} us (spread {spread:.0f}%); "
                         f"peak RSS {peaks[0]:.0f} MiB at {args.scaling[0]:,} -> {peaks[-1]:.0f} MiB at "
                         f"{args.scaling[-1]:,} packets")
            lines += [f"pages: a capture of at most {PAGE_LIMIT:,} conversations gets a page for each, a larger one only "
                      "for those",
                      "with a warning or an error, so a capture under that limit costs more per packet"]
    for w in workloads or []:
        spc, sts, (path, stats), k = w.pcapcheck, w.tshark, w.capture, w.packets
        if w.kind == "short":
            title = (f"many short connections (bench/gen.py --short): {k:,} packets, {stats['bytes'] / MIB:,.0f} MiB, "
                     f"{stats['conversations']:,} conversations, one request each: {path}")
        else:
            title = (f"long keep-alive connections (bench/gen.py --long --concurrency {LONG_CONCURRENCY}): {k:,} packets, "
                     f"{stats['bytes'] / MIB:,.0f} MiB, {stats['conversations']:,} conversations, "
                     f"{stats['counts'].get('request', 0):,} requests: {path}")
        lines += ["", title,
                  f"{'tool':<34} {'s':>9} {'cpu s':>7} {'peak MiB':>9} {'PSS MiB':>8} {'tshark/pcapcheck':>17}"]
        for tool in ([spc] if spc else []) + [sts]:
            ratio = "-" if tool is spc else _fmt_ratio(tool.median(k), spc.median(k) if spc else None)
            lines.append(f"{tool.label:<34} {tool.median(k):>9.2f} {tool.cpu(k):>7.2f} {tool.peak(k) / MIB:>9.1f} "
                         f"{tool.peak_pss(k) / MIB:>8.1f} {ratio:>17}")
    if forms:
        k = args.formats
        lines += ["", f"capture formats (bench/formats.py): the {k:,}-packet capture in the forms real captures come in",
                  f"{'form':<34} {'pcapcheck s':>12} {'tshark s':>9} {'tshark/pcapcheck':>17} {'pcapcheck/pcap':>15}"]
        base = forms[0][2].median(k) if forms[0][2] else None
        for form, _, fpc, fts in forms:
            pcs = fpc.median(k) if fpc else None
            lines.append(f"{form:<34} {'-' if pcs is None else f'{pcs:.2f}':>12} {fts.median(k):>9.2f} "
                         f"{_fmt_ratio(fts.median(k), pcs):>17} {'-' if not pcs else f'{pcs / base:.2f}':>15}")
    tools = ([pc] if pc else []) + [main] + extras + [t for w in workloads or [] for t in (w.pcapcheck, w.tshark) if t]
    tools += [t for f in forms or [] for t in f[2:] if t]
    noise = max(s.others for t in tools for v in t.samples.values() for s in v)
    lines += ["", f"other load during the runs: up to {noise:.2f} CPUs busy besides the tool"
              + (" -- NOT QUIET, the numbers are noisy" if noise > NOISY_CPUS else " (quiet)")]
    if pc:
        ratio = main.median(n) / pc.median(n)
        peak = max(s.rss for samples in pc.samples.values() for s in samples) / MIB
        met = ratio >= GOAL_RATIO and peak <= GOAL_PEAK_MIB
        lines.append(f"ratio {ratio:.1f} (goal >= {GOAL_RATIO:g}), peak {peak:.0f} MiB (goal <= {GOAL_PEAK_MIB})"
                     f" -- {'goals met' if met else 'goals NOT met'}")
    else:
        lines.append("no pcapcheck measurement (--tshark-only)")
    return lines


def _sample_json(s: Sample) -> dict:
    return {"wall_s": round(s.wall, 3), "peak_rss_mib": round(s.rss / MIB, 1), "peak_pss_mib": round(s.pss / MIB, 1),
            "cpu_s": round(s.cpu, 2), "other_cpus": round(s.others, 2), "pages": s.pages}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pcapcheck-bench-"))
    try:
        return _bench(args, tmp)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench(args: argparse.Namespace, tmp: Path) -> int:
    pc = None if args.tshark_only else Tool("pcapcheck analyze", pcapcheck_argv(args.pcapcheck_cmd), PCAPCHECK_OK)
    tshark = ensure_tshark()
    time_bin = ensure_time(args.rss_via)
    main_tool = Tool(f"tshark {args.tshark_args}", [tshark, "-r", "{capture}", *shlex.split(args.tshark_args)])
    extras = [] if args.no_extra_modes else [
        Tool(f"tshark {a}", [tshark, "-r", "{capture}", *shlex.split(a)]) for a in EXTRA_TSHARK if a != args.tshark_args]
    # tshark with default preferences only, whatever the user configured
    config = tmp / "wireshark-config"
    config.mkdir()
    os.environ["WIRESHARK_CONFIG_DIR"] = str(config)
    work = tmp / "work"
    work.mkdir()
    cache = args.keep or (tmp / "captures" if args.no_cache else DEFAULT_CACHE)
    sizes = sorted({args.packets, *args.scaling})
    captures = {k: ensure_capture(cache, k, args.seed, args.concurrency) for k in sizes}
    if not pc:
        pc_version = "-"
    elif args.pcapcheck_cmd in (DEFAULT_PCAPCHECK, PURE_PCAPCHECK):
        pc_version = version_of(pc.argv[:1] + ["--version"])  # (it names the build: pure Python or compiled)
    else:
        pc_version = f"(custom command: {args.pcapcheck_cmd})"
    info = {"machine": machine(), "tshark": version_of([tshark, "--version"]), "pcapcheck": pc_version}

    def keep_dir(k: int) -> Path | None:
        return args.keep / f"pcapcheck-out-{k}" if args.keep else None

    workloads = [Workload(kind, k, Tool(pc.label, pc.argv, pc.ok_codes) if pc else None,
                          Tool(main_tool.label, main_tool.argv),
                          ensure_capture(cache, k, args.seed, concurrency, kind=kind))
                 for kind, k, concurrency in (("short", args.short, args.concurrency),
                                              ("long", args.long, LONG_CONCURRENCY)) if k]
    n = args.packets
    capture = captures[n][0]
    warm(capture)
    print(f"main comparison: {n:,} packets, {args.rounds} round(s)", file=sys.stderr)
    for r in range(args.rounds):
        order = [t for t in (pc, main_tool) if t]
        for tool in order if r % 2 == 0 else order[::-1]:
            run_tool(tool, capture, n, time_bin, work, keep_dir(n))
        if r == 0 or args.all_modes:
            for tool in extras:
                run_tool(tool, capture, n, time_bin, work)
    if args.scaling:
        print("scaling", file=sys.stderr)
        for k in args.scaling:
            if k == n:
                continue
            warm(captures[k][0])
            for _ in range(args.scaling_rounds):
                if pc:
                    run_tool(pc, captures[k][0], k, time_bin, work, keep_dir(k))
                if args.scaling_tshark or not pc:
                    run_tool(main_tool, captures[k][0], k, time_bin, work)
    for w in workloads:
        print("many short connections" if w.kind == "short" else "long keep-alive connections", file=sys.stderr)
        warm(w.capture[0])
        for tool in (w.pcapcheck, w.tshark):
            if tool:
                run_tool(tool, w.capture[0], w.packets, time_bin, work)
    forms = None
    if args.formats:
        print("capture formats", file=sys.stderr)
        base, _ = captures[args.formats] if args.formats in captures else ensure_capture(
            cache, args.formats, args.seed, args.concurrency)
        forms = [("pcap (as generated)", base)] + [(f"{form} ({FORM_NAMES[form]})", ensure_form(base, form))
                                                    for form in FORMATS.FORMS]
        forms = [(name, path, Tool(pc.label, pc.argv, pc.ok_codes) if pc else None,
                  Tool(main_tool.label, main_tool.argv)) for name, path in forms]
        for _, path, fpc, fts in forms:
            warm(path)
            for tool in (fpc, fts):
                if tool:
                    run_tool(tool, path, args.formats, time_bin, work)
    lines = report(args, pc, main_tool, extras, captures, info, workloads, forms)
    print("\n".join(lines))
    if args.json:
        tools = [t for t in (pc, main_tool, *extras) if t]
        args.json.write_text(json.dumps({
            "packets": n, "seed": args.seed, "concurrency": args.concurrency, "rounds": args.rounds,
            "captures": {str(k): {"path": str(v[0]), **v[1]} for k, v in captures.items()},
            "info": info, "rss_via": "time" if time_bin else "resource",
            "short": None, "long": None,  # (the workloads run)
            **{w.kind: {"packets": w.packets, "capture": {"path": str(w.capture[0]), **w.capture[1]},
                        "tools": {t.label: [_sample_json(s) for s in t.samples.get(w.packets, [])]
                                  for t in (w.pcapcheck, w.tshark) if t}} for w in workloads},
            "tools": {t.label: {str(k): [_sample_json(s) for s in v] for k, v in t.samples.items()} for t in tools},
            "formats": ({name: {"capture": str(path), "tools": {
                t.label: [_sample_json(s) for s in t.samples.get(args.formats, [])] for t in (fpc, fts) if t}}
                for name, path, fpc, fts in forms} if forms else None),
            "summary": lines,
        }, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
