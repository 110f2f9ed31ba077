#!/usr/bin/env python3
"""What compiling part of pcapcheck with mypyc would buy: an experiment for the owner's decision on a compiled core.

pcapcheck is pure Python (the owner's choice) and ships no compiled code. mypyc (part of mypy, on PyPI) compiles
type-annotated Python modules into C extensions, as black is built; the source stays the same and runs without
it. This script measures that, without touching the repository or its environment beyond reading it:

    pip install mypy                      # not a pcapcheck dependency: only this experiment needs it
    python bench/compiled.py              # the benchmark's 1M capture (bench/.cache, as make bench makes it)
    python bench/compiled.py --capture some.pcap --modules seq,tcp/tracker --rounds 3
    python bench/compiled.py --tshark     # tshark -2 -q -z expert too, in the same rounds: make bench's ratio
    python bench/compiled.py --suite      # the test suite run against the compiled copy instead (no timing)

It copies ``pcapcheck/`` into a temporary directory, lets ``frozen.py`` there accept compiled classes (a compiled
class has no ``__slots__`` to reuse: its plain constructor is used instead, ``compat_source``), compiles the
modules asked for with mypyc (gcc and the Python headers needed), then

1. checks that the compiled copy writes the same report as the repository's code: ``pcapcheck analyze -j 1`` on
   the capture with each, every file compared byte for byte (a difference is reported and ends the run, status 1);
2. times both, alternately, in separate processes: ``pcapcheck analyze`` as ``make bench`` runs it (wall and CPU
   seconds, medians over the rounds); with ``--tshark`` (as ``make bench-compiled`` runs it) tshark as well, and the
   ratio ``make bench`` prints for each.

Measured on 2026-12-05 (docs/performance.md, "A compiled core, measured"): the default modules are the per-packet
path with the HTTP reader and analyzer, the models, report.json's writer and the pages' views (20). ``--suite`` runs
the test suite against the compiled copy instead (tests/, fixtures/, docs/ and bench/ copied beside it, ../shared
linked when it exists): what a compiled build would have to pass. The tests that need a module interpreted (they patch, subclass or inspect it, or give it values its
annotations exclude) skip themselves there (tests.conftest.interpreted).

mypyc trusts annotations: compiled with mypy's errors ignored, modules crashed the interpreter; where mypy narrows a
type that the code then changes (an attribute tested, then set by a call), the compiled code raises TypeError; a
class pickled through __getstate__/__setstate__ does not load once compiled (__reduce__ does); a compiled class does
not clear the weak references to it when freed (mypyc/mypyc#1102), so http/spill.py, whose registry is weak, stays
interpreted. The header parser stays Python: its HeaderField is built through frozen_builder, which a compiled class
cannot use.

Exit status: 0 when both runs agree (whatever the times), 1 when they differ or a step failed, 2 on bad arguments;
with ``--suite``, pytest's.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_MODULES = ("seq", "tcp/tracker", "tcp/window", "tcp/options", "tcp/reassembly", "analyzers/rst",
                   "analyzers/window", "decode", "flows", "pipeline", "http/chunked", "http/streambuf", "http/framing",
                   "http/reader", "analyzers/http1", "model", "http/model", "findings", "report/json_report",
                   "report/views")

# frozen.py's builders reuse a frozen dataclass's __slots__ (frozen_builder); a class compiled by mypyc has none.
_COMPAT = (
    ("    names = tuple(f.name for f in fields(cls))\n    assert cls.__slots__ == names",
     "    names = tuple(f.name for f in fields(cls))\n    if not hasattr(cls, '__slots__'):  # compiled\n"
     "        return None  # type: ignore[return-value]\n    assert cls.__slots__ == names"),
    ('    names = tuple(f.name for f in fields(cls))\n    env: dict[str, object] = {"_Builder"',
     "    names = tuple(f.name for f in fields(cls))\n    if not hasattr(cls, '__slots__'):  # compiled\n"
     '        return cls\n    env: dict[str, object] = {"_Builder"'),
)

# Runs pcapcheck's command line from a given source tree (argv[1]) rather than the installed one.
_RUNNER = """import sys
sys.path.insert(0, sys.argv[1])
import pcapcheck
assert pcapcheck.__file__.startswith(sys.argv[1]), pcapcheck.__file__
from pcapcheck.cli import main
main(sys.argv[2:])
"""


class Failed(Exception):
    """A step failed: reported in one line, exit status 1."""


def compat_source(text: str) -> str:
    """frozen.py's source with its builders falling back to the plain constructor for compiled classes."""
    for old, new in _COMPAT:
        if text.count(old) != 1:
            raise Failed("pcapcheck/frozen.py changed: this script's compatibility patch no longer applies")
        text = text.replace(old, new)
    return text


def is_patched(text: str) -> bool:
    """Whether frozen.py's source ``text`` has compat_source's patch already (the compiled copy's)."""
    return all(new in text for _, new in _COMPAT)


def module_paths(modules: list[str]) -> list[str]:
    """``seq``, ``tcp/tracker`` -> the files under pcapcheck/ (checked to exist)."""
    paths = []
    for m in modules:
        rel = f"pcapcheck/{m.strip().removesuffix('.py')}.py"
        if not (ROOT / rel).is_file():
            raise Failed(f"no module {rel}")
        paths.append(rel)
    return paths


def build(workdir: Path, modules: list[str]) -> Path:
    """A copy of pcapcheck/ in ``workdir`` with ``modules`` compiled by mypyc; returns the tree's root."""
    tree = workdir / "compiled"
    shutil.copytree(ROOT / "pcapcheck", tree / "pcapcheck", ignore=shutil.ignore_patterns("__pycache__"))
    frozen = tree / "pcapcheck" / "frozen.py"
    frozen.write_text(compat_source(frozen.read_text()))
    files = module_paths(modules)
    print(f"compiling {', '.join(files)} with mypyc ...", file=sys.stderr)
    proc = subprocess.run([sys.executable, "-m", "mypyc", *files], cwd=tree, capture_output=True, text=True)
    if proc.returncode:
        errors = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if "error" in line]
        raise Failed("mypyc failed: " + (" / ".join(errors[:5]) or proc.stderr.strip()[-300:]))
    for rel in files:
        mod = rel.removesuffix(".py").replace("/", ".")
        probe = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); import {mod}; "
                                f"print({mod}.__file__)"], capture_output=True, text=True)
        if probe.returncode or not probe.stdout.strip().endswith(".so"):
            raise Failed(f"{mod} did not load compiled: {probe.stdout.strip() or probe.stderr.strip()[-200:]}")
    # both trees' bytecode compiled beforehand, as an installed package's is (make bench does the same)
    for root in (tree, ROOT):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "pcapcheck")], check=True)
    return tree


def pytest_targets(pytest_args: list[str]) -> list[str]:
    """pytest's arguments for --suite: the whole of tests/ with the options given, or only the tests named (a path
    under the repository, with or without ``::test``)."""
    named = any(not a.startswith("-") and (ROOT / a.split("::")[0]).exists() for a in pytest_args)
    return pytest_args if named else ["tests", *pytest_args]


def suite(workdir: Path, tree: Path, pytest_args: list[str]) -> int:
    """The test suite run against the compiled copy ``tree``; pytest's exit status."""
    for name in ("tests", "fixtures", "bench", "docs"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", ".cache"))
    for name in ("setup.cfg", "pyproject.toml", "README.md", "Makefile"):
        shutil.copy2(ROOT / name, tree / name)
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # (tests/conftest.py: the corpus beside the repository)
        (workdir / "shared").symlink_to(shared)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_targets(pytest_args)]
    print(f"running the test suite against the compiled copy ({tree}) ...", file=sys.stderr)
    return subprocess.run(argv, cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree))).returncode


def run(tree: Path, capture: Path, out: Path, jobs: int | None) -> tuple[float, float]:
    """``pcapcheck analyze`` from ``tree``; (wall, CPU seconds of it and its children)."""
    argv = [sys.executable, "-c", _RUNNER, str(tree), "analyze", str(capture), "-o", str(out), "--fail-on", "never"]
    if jobs:
        argv += ["-j", str(jobs)]
    return timed(argv, f"pcapcheck analyze from {tree}")


def timed(argv: list[str], what: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``argv``; (wall, CPU seconds of it and its children). A non-zero exit is a Failed."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = os.times()
    if proc.returncode:
        raise Failed(f"{what} failed: {proc.stderr.strip()[-300:]}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def differences(a: Path, b: Path) -> list[str]:
    """Files that are not byte for byte the same in the two report directories (or in one only)."""
    cmp = filecmp.dircmp(a, b)
    diff = list(cmp.left_only) + list(cmp.right_only)
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return sorted(diff + mismatch + errors)


def _bench_run():  # bench/run.py (beside this file, not a package)
    sys.path.insert(0, str(HERE))
    import run as bench_run

    return bench_run


def default_capture() -> Path:
    """The 1M-packet benchmark capture (bench/run.py's cache; generated when missing)."""
    bench_run = _bench_run()
    path, _ = bench_run.ensure_capture(bench_run.DEFAULT_CACHE, 1_000_000, 1, 200)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, help="capture to analyze (default: the benchmark's 1M-packet capture)")
    ap.add_argument("--modules", default=",".join(DEFAULT_MODULES),
                    help=f"modules under pcapcheck/ to compile, comma-separated (default {','.join(DEFAULT_MODULES)})")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of each (default 3)")
    ap.add_argument("--jobs", type=int, default=None, help="pcapcheck's -j for the timed runs (default: its own)")
    ap.add_argument("--suite", action="store_true",
                    help="run the test suite against the compiled copy instead of timing it (arguments after -- go "
                         "to pytest: options, or the tests to run instead of all)")
    ap.add_argument("--tshark", action="store_true",
                    help="time `tshark -2 -q -z expert` too, in the same rounds (as make bench runs it), for the ratios")
    argv = sys.argv[1:] if argv is None else argv
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    try:
        import mypyc  # noqa: F401
    except ImportError:
        print("mypyc is not installed: pip install mypy (only this experiment needs it)", file=sys.stderr)
        return 1
    if args.suite:
        try:
            with tempfile.TemporaryDirectory(prefix="pcapcheck-compiled-") as tmp:
                return suite(Path(tmp), build(Path(tmp), args.modules.split(",")), pytest_args)
        except Failed as e:
            print(f"bench/compiled.py: {e}", file=sys.stderr)
            return 1
    try:
        capture = args.capture or default_capture()
        if not capture.is_file():
            raise Failed(f"no capture {capture}")
        with tempfile.TemporaryDirectory(prefix="pcapcheck-compiled-") as tmp:
            work = Path(tmp)
            tree = build(work, args.modules.split(","))
            print("comparing the reports (-j 1) ...", file=sys.stderr)
            run(ROOT, capture, work / "out-python", 1)
            run(tree, capture, work / "out-compiled", 1)
            diff = differences(work / "out-python", work / "out-compiled")
            if diff:
                raise Failed(f"the compiled copy's report differs: {', '.join(diff[:5])}"
                             + (f" and {len(diff) - 5} more" if len(diff) > 5 else ""))
            times: dict[str, list[tuple[float, float]]] = {"python": [], "compiled": []}
            order: list[tuple[str, Path | None]] = [("python", ROOT), ("compiled", tree)]
            if args.tshark:
                bench_run = _bench_run()
                try:
                    tshark = bench_run.ensure_tshark()
                except bench_run.BenchError as e:
                    raise Failed(str(e)) from None
                (work / "wireshark-config").mkdir()  # tshark's default preferences only, as make bench runs it
                env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(work / "wireshark-config"))
                tshark_argv = [tshark, "-r", str(capture), *bench_run.MAIN_TSHARK.split()]
                times["tshark"] = []
                order.append(("tshark", None))
            for i in range(args.rounds):
                for name, root in order if i % 2 == 0 else order[::-1]:
                    if root is None:
                        times[name].append(timed(tshark_argv, "tshark", env))
                    else:
                        times[name].append(run(root, capture, work / f"t-{name}", args.jobs))
                        shutil.rmtree(work / f"t-{name}")
    except Failed as e:
        print(f"bench/compiled.py: {e}", file=sys.stderr)
        return 1
    print(f"capture: {capture}")
    print(f"compiled with mypyc: {', '.join(module_paths(args.modules.split(',')))}; the reports are identical")
    print(f"{'':10} {'wall s':>8} {'cpu s':>8}   (medians of {args.rounds})")
    medians = {}
    for name, samples in times.items():
        medians[name] = (statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples))
        print(f"{name:10} {medians[name][0]:8.2f} {medians[name][1]:8.2f}")
    print(f"compiled / python: wall {medians['compiled'][0] / medians['python'][0]:.2f}, "
          f"cpu {medians['compiled'][1] / medians['python'][1]:.2f}")
    if "tshark" in medians:
        print(f"tshark / pcapcheck (wall, make bench's ratio): python {medians['tshark'][0] / medians['python'][0]:.1f}x, "
              f"compiled {medians['tshark'][0] / medians['compiled'][0]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
