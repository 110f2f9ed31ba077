"""The compiled build's parts that need no compiler: frozen.py's handling of compiled classes, ``--version``'s build
description, and bench/compiled.py's checks (the module list, a build older than the source, a report that differs in
one file). make test-compiled runs this whole suite against the build itself."""

from __future__ import annotations

import importlib.machinery
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from pcapcheck import __version__, frozen
from pcapcheck.cli import build_description, cli
from tests.test_bench_gen import ROOT, _load

compiled = _load("compiled")


def test_the_builders_serve_python_classes_and_give_a_compiled_class_its_constructor() -> None:
    """A class compiled by mypyc (``__mypyc_attrs__`` in its dict) has no __slots__ to build through: frozen_maker
    gives the class itself, frozen_builder refuses it; a Python class gets the generated maker and builder."""

    @dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int

    make = frozen.frozen_maker(Point)
    assert make is not Point and make(1, 2) == Point(1, 2) and type(make(1, 2)) is Point
    assert not frozen.compiled_class(Point) and frozen.frozen_builder(Point) is not None

    @dataclass(frozen=True)
    class Native:  # what a compiled class looks like to the builders
        __mypyc_attrs__ = ("x",)
        x: int

    assert frozen.compiled_class(Native)
    assert frozen.frozen_maker(Native) is Native
    with pytest.raises(TypeError, match="compiled by mypyc"):
        frozen.frozen_builder(Native)


def test_build_description_counts_the_extension_modules(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "sub").mkdir()
    assert build_description(tmp_path) == "pure Python"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (tmp_path / f"a{suffix}").write_bytes(b"")
    assert build_description(tmp_path) == "compiled by mypyc: 1 module"
    (tmp_path / "sub" / f"b{suffix}").write_bytes(b"")
    assert build_description(tmp_path) == "compiled by mypyc: 2 modules"


def test_version_says_how_pcapcheck_was_built() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"pcapcheck {__version__} ({build_description()})\n"


def test_the_configured_modules_exist_and_leave_out_what_must_stay_interpreted() -> None:
    """setup.cfg's list (what setup.py compiles): every name a module; http/spill.py stays interpreted (its weak
    references: a compiled class does not clear them when freed), and so does the header parser (frozen_builder)."""
    modules = compiled.configured_modules()
    assert len(modules) == len(set(modules)) > 0
    compiled.module_paths(modules)  # each exists
    assert "http/spill" not in modules and "http/parser" not in modules and "frozen" not in modules


def test_module_paths() -> None:
    assert compiled.module_paths(["seq", "tcp/tracker.py"]) == ["pcapcheck/seq.py", "pcapcheck/tcp/tracker.py"]
    with pytest.raises(compiled.Failed, match="no module"):
        compiled.module_paths(["tcp/nothing"])


def test_suite_runs_the_tests_named_or_all_of_them() -> None:
    """``--suite -- ARGS``: options go to pytest with the whole suite; test paths (or node ids) replace it."""
    assert compiled.pytest_targets([]) == ["tests"]
    assert compiled.pytest_targets(["-x", "-k", "rst"]) == ["tests", "-x", "-k", "rst"]
    assert compiled.pytest_targets(["tests/test_rst.py", "-x"]) == ["tests/test_rst.py", "-x"]
    assert compiled.pytest_targets(["tests/test_seq.py::test_lt"]) == ["tests/test_seq.py::test_lt"]
    assert compiled.pytest_targets(["tests/no_such_test.py"]) == ["tests", "tests/no_such_test.py"]


def test_differences_names_every_file_that_differs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d in (a, b):
        (d / "index.html").write_text("same")
    (a / "report.json").write_text("1")
    (b / "report.json").write_text("2")
    (a / "conv-1.html").write_text("only here")
    assert compiled.differences(a, b) == ["conv-1.html", "report.json"]
    assert compiled.differences(a, a) == []


def test_a_build_older_than_the_source_is_found(tmp_path: Path) -> None:
    src, inst = tmp_path / "src", tmp_path / "inst"
    for d in (src, inst):
        (d / "templates").mkdir(parents=True)
        (d / "a.py").write_text("x = 1\n")
        (d / "templates" / "page.html").write_text("<p>")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"?")  # (never compared)
    assert compiled.stale_files(inst, src) == []
    (src / "a.py").write_text("x = 2\n")
    (src / "b.py").write_text("")
    (src / "templates" / "page.html").write_text("<p>!")
    assert compiled.stale_files(inst, src) == ["a.py", "b.py", "templates/page.html"]


def test_compiled_tree_takes_only_a_compiled_build(tmp_path: Path) -> None:
    """bench/compiled.py refuses a missing interpreter, and one whose pcapcheck is pure Python (as make test's is, and
    make install's where it cannot compile); in make test-compiled, where this runs on the compiled build, it takes
    that build."""
    with pytest.raises(compiled.Failed, match="make install"):
        compiled.compiled_tree(tmp_path / "no-python")
    if build_description() == "pure Python":
        with pytest.raises(compiled.Failed, match="is pure Python"):
            compiled.compiled_tree(Path(sys.executable))
    else:
        assert (compiled.compiled_tree(Path(sys.executable)) / "pcapcheck").resolve() == (ROOT / "pcapcheck").resolve()


def test_timed_measures_a_command_and_fails_on_its_exit_status() -> None:
    wall, cpu = compiled.timed([sys.executable, "-c", "sum(range(10**6))"], "a loop")
    assert wall > 0 and cpu > 0
    with pytest.raises(compiled.Failed, match="a failure failed: boom"):
        compiled.timed([sys.executable, "-c", "import sys; sys.exit('boom')"], "a failure")


def test_interpreted_skips_only_where_a_module_is_compiled() -> None:
    """tests.conftest.interpreted: what lets --suite leave out the tests that watch compiled code by patching it."""
    from types import ModuleType

    from tests.conftest import interpreted

    source, compiled_one = ModuleType("pcapcheck.x"), ModuleType("pcapcheck.y")
    source.__file__, compiled_one.__file__ = "/a/pcapcheck/x.py", "/a/pcapcheck/y.cpython-311-x86_64-linux-gnu.so"
    interpreted(source)  # nothing happens
    with pytest.raises(pytest.skip.Exception, match=r"needs pcapcheck\.y interpreted"):
        interpreted(source, compiled_one)


def test_the_modules_it_compiles_type_check(tmp_path: Path) -> None:
    """mypyc trusts the annotations of the modules it compiles: where mypy finds an error, the compiled code can
    raise TypeError or crash (docs/performance.md, "A compiled core, measured"); setup.py's build fails on them. mypy
    is no pcapcheck dependency: it is installed where the compiled build is (make install), and there this
    checks the modules setup.cfg lists."""
    try:
        import mypy.api
    except ImportError:
        pytest.skip("mypy is not installed (make install installs it where it builds): the compiled "
                    "modules' annotations are not checked here")
    files = [str(ROOT / f) for f in compiled.module_paths(compiled.configured_modules())]
    out, err, status = mypy.api.run(["--ignore-missing-imports", "--follow-imports=silent",
                                     "--cache-dir", str(tmp_path), *files])
    assert status == 0, out + err


def test_a_relative_compiled_python_is_taken_from_the_current_directory(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """make bench-compiled passes .venv/bin/python; the probe runs elsewhere, so the path is made absolute
    (and not resolved: a venv's python is a link to the base interpreter, which has no pcapcheck)."""
    seen = []

    def stop(python: Path) -> Path:
        seen.append(python)
        raise compiled.Failed("stop here")

    monkeypatch.setattr(compiled, "compiled_tree", stop)
    monkeypatch.chdir(tmp_path)
    assert compiled.main(["--compiled-python", "venv/bin/python"]) == 1
    assert seen == [tmp_path / "venv" / "bin" / "python"]


def test_fixture_reports_are_compared_file_by_file(tmp_path: Path) -> None:
    """--suite first compares the fixtures' reports of both builds: here the same interpreted code twice, so none
    differs, a capture nothing can be read from (exit status 3) included; a build whose pcapcheck is not where it is
    said to be fails."""
    captures = [ROOT / "fixtures" / "incident1-te-duplicate.pcap", ROOT / "fixtures" / "bad-garbage.bin"]
    assert compiled.fixture_differences(tmp_path, Path(sys.executable), ROOT, captures) == []
    assert (tmp_path / "fixtures-compiled" / "0" / "report.json").is_file()
    (tmp_path / "again").mkdir()
    with pytest.raises(compiled.Failed, match="analyzing the fixtures with the compiled build failed"):
        compiled.fixture_differences(tmp_path / "again", Path(sys.executable), tmp_path / "no-tree", captures[:1])
