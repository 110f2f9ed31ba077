#!/usr/bin/env python3
"""The compiled build (make install) against the pure Python: the same reports? how much faster? its tests?

``make install`` installs pcapcheck into .venv with the modules listed in setup.cfg (``[pcapcheck:compiled]``)
compiled into C extensions by mypyc (setup.py; mypyc is part of mypy, as black is built): the same source, the rest
interpreted. This script takes that build's interpreter (``--compiled-python``, default .venv/bin/python), checks
that its pcapcheck is compiled (not the pure-Python fallback of a machine without a C compiler) and installed from the
source as it is now (a build older than the source is refused: make install again), then

1. checks that it writes the same report as the repository's code: ``pcapcheck analyze -j 1`` on the capture with
   each, every file compared byte for byte (a difference is reported and ends the run, status 1);
2. times both, alternately, in separate processes: ``pcapcheck analyze`` as ``make bench`` runs it (wall and CPU
   seconds, medians over the rounds); with ``--tshark`` (as ``make bench-compiled`` runs it) tshark as well, and the
   ratio ``make bench`` prints for each.

    make install                          # gcc and the Python headers needed; mypy is installed there to build it
    python bench/compiled.py              # the benchmark's 1M capture (bench/.cache, as make bench makes it)
    python bench/compiled.py --capture some.pcap --rounds 3
    python bench/compiled.py --tshark     # tshark -2 -q -z expert too, in the same rounds: make bench's ratio
    python bench/compiled.py --suite      # the test suite run against the compiled build (make test-compiled)

``--suite`` runs the test suite against the compiled build instead, after checking that the reports of every capture
in fixtures/ are the same byte for byte from both builds: tests/, fixtures/, docs/ and bench/ copied into a
temporary directory beside the installed package (../shared linked when it exists). The tests that need a module
interpreted (they patch, subclass or inspect it, or give it values its annotations exclude) skip themselves there
(tests.conftest.interpreted). Another set of modules, for a measurement: ``PCAPCHECK_COMPILE_MODULES="seq tcp/tracker"``
in the environment of a fresh ``make install`` (remove .venv/.built-compiled first).

mypyc trusts annotations: compiled with mypy's errors ignored, modules crashed the interpreter (setup.py fails the
build on them); where mypy narrows a type that the code then changes (an attribute tested, then set by a call), the
compiled code raises TypeError; a class pickled through __getstate__/__setstate__ does not load once compiled
(__reduce__ does); a compiled class does not clear the weak references to it when freed (mypyc/mypyc#1102), so
http/spill.py, whose registry is weak, stays interpreted. The header parser stays Python: its HeaderField is built
through frozen_builder, which a compiled class cannot use.

Exit status: 0 when both builds agree (whatever the times), 1 when they differ or a step failed, 2 on bad arguments;
with ``--suite``, pytest's.
"""

from __future__ import annotations

import argparse
import configparser
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
DEFAULT_PYTHON = ROOT / ".venv" / "bin" / "python"

# pcapcheck's command line from a given tree (argv[1]: the repository, or the compiled build's site-packages)
_FROM_TREE = """import sys
sys.path.insert(0, sys.argv[1])
import pcapcheck
assert pcapcheck.__file__.startswith(sys.argv[1]), pcapcheck.__file__
from pcapcheck.cli import main
"""
# ... run with the arguments after the tree
_RUNNER = _FROM_TREE + "main(sys.argv[2:])\n"

# Analyzes each capture (argv[3:]) into its own directory under argv[2], with the pcapcheck of tree argv[1], in one
# process: ``pcapcheck analyze CAPTURE -o DIR --fail-on never -j 1`` as the command line runs it.
_EACH = _FROM_TREE + """for i, capture in enumerate(sys.argv[3:]):
    try:
        main(["analyze", capture, "-o", f"{sys.argv[2]}/{i}", "--fail-on", "never", "-j", "1"])
    except SystemExit as e:
        if e.code not in (0, None, 3):  # (3: a capture nothing could be read from, as some fixtures are)
            raise
"""

# What the compiled build's interpreter says of its pcapcheck: where it is, and how it was built.
_PROBE = """import os, pcapcheck
from pcapcheck.cli import build_description
print(os.path.dirname(os.path.dirname(pcapcheck.__file__)))
print(build_description())
"""


class Failed(Exception):
    """A step failed: reported in one line, exit status 1."""


def configured_modules(setup_cfg: Path = ROOT / "setup.cfg") -> list[str]:
    """The modules setup.py compiles (setup.cfg's ``[pcapcheck:compiled]``), as names under pcapcheck/."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    return cfg["pcapcheck:compiled"]["modules"].split()


def module_paths(modules: list[str]) -> list[str]:
    """``seq``, ``tcp/tracker`` -> the files under pcapcheck/ (checked to exist)."""
    paths = []
    for m in modules:
        rel = f"pcapcheck/{m.strip().removesuffix('.py')}.py"
        if not (ROOT / rel).is_file():
            raise Failed(f"no module {rel}")
        paths.append(rel)
    return paths


def stale_files(installed: Path, source: Path = ROOT / "pcapcheck") -> list[str]:
    """The files of the source package (``.py`` and templates) that the installed one lacks or has otherwise."""
    out = []
    for f in sorted(source.rglob("*")):
        if not f.is_file() or "__pycache__" in f.parts:
            continue
        rel = f.relative_to(source)
        other = installed / rel
        if not other.is_file() or not filecmp.cmp(f, other, shallow=False):
            out.append(str(rel))
    return out


def compiled_tree(python: Path) -> Path:
    """The directory holding the compiled build's ``pcapcheck`` package (``python``'s site-packages), once checked
    to be compiled and current."""
    if not python.exists():
        raise Failed(f"no compiled build at {python}: make install")
    proc = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode:
        raise Failed(f"{python} cannot import pcapcheck: {proc.stderr.strip()[-300:]}")
    where, build = proc.stdout.strip().splitlines()[-2:]
    tree = Path(where)
    if not build.startswith("compiled"):
        raise Failed(f"the pcapcheck of {python} is {build} ({tree}): make install (it falls back to pure Python "
                     "when it cannot compile: a C compiler and the Python headers are needed)")
    stale = stale_files(tree / "pcapcheck")
    if stale:
        raise Failed(f"the compiled build in {tree} is older than the source ({', '.join(stale[:3])}"
                     + (f" and {len(stale) - 3} more" if len(stale) > 3 else "") + " differ): make install")
    print(f"compiled build: {tree / 'pcapcheck'} ({build})", file=sys.stderr)
    return tree


def pytest_targets(pytest_args: list[str]) -> list[str]:
    """pytest's arguments for --suite: the whole of tests/ with the options given, or only the tests named (a path
    under the repository, with or without ``::test``)."""
    named = any(not a.startswith("-") and (ROOT / a.split("::")[0]).exists() for a in pytest_args)
    return pytest_args if named else ["tests", *pytest_args]


def fixture_differences(workdir: Path, python: Path, tree: Path, captures: list[Path]) -> list[str]:
    """The reports of ``captures`` written by the repository's code and by the compiled build (``python``, its package
    in ``tree``): the files that differ, as ``capture: file``."""
    outs = {}
    for name, interpreter, root in (("python", sys.executable, ROOT), ("compiled", str(python), tree)):
        outs[name] = workdir / f"fixtures-{name}"
        proc = subprocess.run([interpreter, "-c", _EACH, str(root), str(outs[name]), *map(str, captures)],
                              capture_output=True, text=True, cwd=workdir)
        if proc.returncode:
            raise Failed(f"analyzing the fixtures with the {name} build failed: {proc.stderr.strip()[-300:]}")
    return [f"{c.name}: {f}" for i, c in enumerate(captures)
            for f in differences(outs["python"] / str(i), outs["compiled"] / str(i))]


def suite(workdir: Path, python: Path, tree: Path, pytest_args: list[str]) -> int:
    """The test suite run by the compiled build's interpreter ``python`` against its package (in ``tree``); pytest's exit
    status. The tests and what they read are copied into ``workdir``/repo beside a link to the installed package, so
    that ``import pcapcheck`` there is the compiled build."""
    repo = workdir / "repo"
    for name in ("tests", "fixtures", "bench", "docs"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", ".cache"))
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "Makefile"):
        shutil.copy2(ROOT / name, repo / name)
    (repo / "pcapcheck").symlink_to(tree / "pcapcheck", target_is_directory=True)
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # (tests/conftest.py: the corpus beside the repository)
        (workdir / "shared").symlink_to(shared)
    argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_targets(pytest_args)]
    print(f"running the test suite against the compiled build ({repo}) ...", file=sys.stderr)
    return subprocess.run(argv, cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo))).returncode


def run(python: Path | str, tree: Path, capture: Path, out: Path, jobs: int | None) -> tuple[float, float]:
    """``pcapcheck analyze`` by ``python`` from ``tree``; (wall, CPU seconds of it and its children)."""
    argv = [str(python), "-c", _RUNNER, str(tree), "analyze", str(capture), "-o", str(out), "--fail-on", "never"]
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
    ap.add_argument("--compiled-python", type=Path, default=DEFAULT_PYTHON,
                    help=f"the interpreter of the compiled build (default {DEFAULT_PYTHON.relative_to(ROOT)}, "
                         "make install)")
    ap.add_argument("--capture", type=Path, help="capture to analyze (default: the benchmark's 1M-packet capture)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of each (default 3)")
    ap.add_argument("--jobs", type=int, default=None, help="pcapcheck's -j for the timed runs (default: its own)")
    ap.add_argument("--suite", action="store_true",
                    help="run the test suite against the compiled build instead of timing it (arguments after -- go "
                         "to pytest: options, or the tests to run instead of all)")
    ap.add_argument("--tshark", action="store_true",
                    help="time `tshark -2 -q -z expert` too, in the same rounds (as make bench runs it), for the ratios")
    argv = sys.argv[1:] if argv is None else argv
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    python = Path(os.path.abspath(args.compiled_python))  # (not resolved: a venv's python is a link to the base one)
    try:
        tree = compiled_tree(python)
        if args.suite:
            with tempfile.TemporaryDirectory(prefix="pcapcheck-compiled-") as tmp:
                # first the bundled captures' reports, byte for byte: the compiled build must write the same
                captures = sorted(p for p in (ROOT / "fixtures").iterdir() if p.suffix in (".pcap", ".pcapng", ".gz", ".bin"))
                print(f"comparing the reports of the {len(captures)} fixtures ...", file=sys.stderr)
                diff = fixture_differences(Path(tmp), python, tree, captures)
                if diff:
                    raise Failed(f"the compiled build's reports differ: {', '.join(diff[:5])}"
                                 + (f" and {len(diff) - 5} more" if len(diff) > 5 else ""))
                return suite(Path(tmp), python, tree, pytest_args)
        capture = args.capture or default_capture()
        if not capture.is_file():
            raise Failed(f"no capture {capture}")
        with tempfile.TemporaryDirectory(prefix="pcapcheck-compiled-") as tmp:
            work = Path(tmp)
            print("comparing the reports (-j 1) ...", file=sys.stderr)
            run(sys.executable, ROOT, capture, work / "out-python", 1)
            run(python, tree, capture, work / "out-compiled", 1)
            diff = differences(work / "out-python", work / "out-compiled")
            if diff:
                raise Failed(f"the compiled build's report differs: {', '.join(diff[:5])}"
                             + (f" and {len(diff) - 5} more" if len(diff) > 5 else ""))
            times: dict[str, list[tuple[float, float]]] = {"python": [], "compiled": []}
            order: list[tuple[str, Path | str | None, Path]] = [("python", sys.executable, ROOT),
                                                                ("compiled", python, tree)]
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
                order.append(("tshark", None, work))
            for i in range(args.rounds):
                for name, interpreter, root in order if i % 2 == 0 else order[::-1]:
                    if interpreter is None:
                        times[name].append(timed(tshark_argv, "tshark", env))
                    else:
                        times[name].append(run(interpreter, root, capture, work / f"t-{name}", args.jobs))
                        shutil.rmtree(work / f"t-{name}")
    except Failed as e:
        print(f"bench/compiled.py: {e}", file=sys.stderr)
        return 1
    print(f"capture: {capture}")
    print(f"compiled with mypyc: {', '.join(configured_modules())} (setup.cfg); the reports are identical")
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
